'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createManager, createStore, openStore, SharedKVStore } = require('..');
const { fromTagged } = require('./tagged');
const vectors = require('./vectors.json');

const manager = createManager();
const stores = {
  js: globalThis.SharedKVStore.instance,
  native: createStore(manager.handle, { codec: 'native' }),
};

test('createManager sets globalThis.SharedKVStore.instance to its store', () => {
  assert.equal(globalThis.SharedKVStore.instance, manager.store);
  assert.ok(manager.store instanceof SharedKVStore);
  assert.equal(createStore(), manager.store, 'createStore() in the main thread returns it');
});

for (const [codec, store] of Object.entries(stores)) {
  test(`[${codec} codec] the README example`, () => {
    assert.equal(store.set('exampleKey', { value: 'Hello from Main!' }), true);
    assert.deepEqual(store.get('exampleKey'), { value: 'Hello from Main!' });
    assert.equal(store.get('missing'), undefined);
  });

  test(`[${codec} codec] get returns a fresh copy every time`, () => {
    store.set('fresh', { list: [1, 2], inner: { a: 1 } });
    const a = store.get('fresh');
    a.list.push(3);
    a.inner.a = 99;
    const b = store.get('fresh');
    assert.notEqual(a, b);
    assert.deepEqual(b, { list: [1, 2], inner: { a: 1 } });
  });

  test(`[${codec} codec] set(key, undefined) returns false and keeps the old value`, () => {
    store.set('u', 1);
    assert.equal(store.set('u', undefined), false);
    assert.equal(store.get('u'), 1);
  });

  test(`[${codec} codec] delete returns whether the key existed`, () => {
    store.set('d', 'x');
    assert.equal(store.delete('d'), true);
    assert.equal(store.delete('d'), false);
    assert.equal(store.get('d'), undefined);
  });

  test(`[${codec} codec] every supported value round-trips`, () => {
    for (const v of vectors) {
      const value = fromTagged(v.value);
      if (value === undefined) continue; // set(k, undefined) is refused, tested above
      store.set(`rt:${v.name}`, value);
      const back = store.get(`rt:${v.name}`);
      if (value instanceof Date && Number.isNaN(value.getTime())) {
        // deepStrictEqual finds two Invalid Dates unequal (NaN !== NaN).
        assert.ok(back instanceof Date && Number.isNaN(back.getTime()), v.name);
      } else {
        assert.deepStrictEqual(back, value, v.name);
      }
    }
    // Also typed as the user wrote them: a Uint8Array comes back as a Buffer (a Uint8Array).
    store.set('u8', new Uint8Array([1, 2, 3]));
    const u8 = store.get('u8');
    assert.ok(u8 instanceof Uint8Array);
    assert.deepEqual([...u8], [1, 2, 3]);
    store.set('sparse', [1, , 3]); // eslint-disable-line no-sparse-arrays
    assert.deepStrictEqual(store.get('sparse'), [1, undefined, 3]);
    class Point { constructor() { this.x = 1; this.y = 2; } }
    store.set('class', new Point());
    assert.deepStrictEqual(store.get('class'), { x: 1, y: 2 }, 'class instances store their own fields, as JSON');
  });

  test(`[${codec} codec] a __proto__ key comes back as data and never changes a prototype`, () => {
    store.set('proto', JSON.parse('{"__proto__": {"polluted": true}, "a": 1}'));
    const back = store.get('proto');
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.keys(back), ['__proto__', 'a']);
    assert.equal(back.polluted, undefined);
    assert.equal({}.polluted, undefined);
  });

  test(`[${codec} codec] bad keys throw TypeError / RangeError and change nothing`, () => {
    store.set('keep', 'kept');
    const before = store.stats().entries;
    for (const key of [1, null, undefined, {}, Symbol('k'), ['a']]) {
      assert.throws(() => store.set(key, 1), TypeError);
      assert.throws(() => store.get(key), TypeError);
      assert.throws(() => store.delete(key), TypeError);
    }
    assert.throws(() => store.set('a\uD800b', 1), { name: 'TypeError', message: /lone surrogate/ });
    assert.throws(() => store.set('k'.repeat(16 * 1024 + 1), 1), { name: 'RangeError', code: 'ERR_KV_KEY_TOO_LONG' });
    assert.throws(() => store.set('é'.repeat(8193), 1), RangeError, 'the limit counts UTF-8 bytes');
    assert.equal(store.set('k'.repeat(16 * 1024), 'longest'), true);
    assert.equal(store.get('k'.repeat(16 * 1024)), 'longest');
    store.delete('k'.repeat(16 * 1024));
    assert.equal(store.stats().entries, before);
    assert.equal(store.get('keep'), 'kept');
  });

  test(`[${codec} codec] values that cannot be stored throw a TypeError naming the problem`, () => {
    store.set('bad', 'old');
    const cyclic = { a: {} };
    cyclic.a.back = cyclic;
    const cases = [
      [() => 1, /functions cannot be stored/],
      [{ a: { b: [0, () => 1] } }, /functions cannot be stored \(at value\.a\.b\[1\]\)/],
      [Symbol('s'), /symbols cannot be stored/],
      [cyclic, /circular reference/],
      [new Float32Array(2), /typed arrays other than Uint8Array/],
      [/re/, /RegExp/],
      [new Error('e'), /Error values/],
      [new WeakMap(), /WeakMap/],
      [new ArrayBuffer(4), /ArrayBuffer/],
      [new Map([[1, () => 1]]), /functions cannot be stored \(at value\.<map entry 0>\)/],
    ];
    for (const [value, message] of cases) {
      assert.throws(() => store.set('bad', value), { name: 'TypeError', message }, String(message));
      assert.equal(store.get('bad'), 'old', 'a refused set leaves the old value');
    }
    assert.throws(() => store.set('bad', 2n ** 64n), RangeError);
    const boom = new Error('getter failed');
    assert.throws(() => store.set('bad', { get x() { throw boom; } }),
      (e) => e instanceof TypeError && e.code === 'ERR_KV_VALUE_THREW' && e.cause === boom);
    assert.equal(store.get('bad'), 'old');
  });

  test(`[${codec} codec] nesting: 256 levels store, 257 are a RangeError`, () => {
    const nest = (n) => { let v = 0; for (let i = 0; i < n; i++) v = [v]; return v; };
    store.set('deep', nest(256));
    assert.deepEqual(store.get('deep'), nest(256));
    assert.throws(() => store.set('deep', nest(257)), { name: 'RangeError', message: /nested more than 256/ });
    assert.throws(() => store.set('deep', nest(100_000)), RangeError);
    assert.deepEqual(store.get('deep'), nest(256));
  });

  test(`[${codec} codec] resizeBuffer re-fits a shrunk value's space`, () => {
    store.set('fit', 'x'.repeat(100_000));
    const big = store.stats().bytesUsed;
    store.set('fit', 'small');
    assert.equal(store.stats().bytesUsed, big, 'without it, the larger space is reused');
    assert.equal(store.set('fit', 'small', true), true);
    assert.ok(store.stats().bytesUsed < big - 90_000);
    assert.equal(store.get('fit'), 'small');
  });
}

test('both codecs share one store: what one writes the other reads', () => {
  const value = { n: -0, m: new Map([[1, new Set(['a'])]]), d: new Date(1234), b: Buffer.from('hi') };
  stores.js.set('both', value);
  assert.deepStrictEqual(stores.native.get('both'), value);
  stores.native.set('both2', value);
  assert.deepStrictEqual(stores.js.get('both2'), value);
});

test('stats reports entries and bytes', () => {
  const m = createManager();
  const s = m.store;
  const empty = s.stats();
  assert.equal(empty.entries, 0);
  s.set('a', 'x'.repeat(1000));
  const st = s.stats();
  assert.equal(st.entries, 1);
  assert.ok(st.bytesUsed >= empty.bytesUsed + 1000);
  assert.ok(st.bytesReserved >= st.bytesUsed);
  assert.equal(st.bufferBytes, 1024 * 1024, 'starts at about 1 MiB');
  createManager(); // leave the shared instance pointing at a fresh store
});

test('createManager validates its options', () => {
  assert.throws(() => createManager(5), TypeError);
  assert.throws(() => createManager({ maxBytes: -1 }), RangeError);
  assert.throws(() => createManager({ initialBytes: 2 ** 20, maxBytes: 2 ** 19 }), RangeError);
  assert.throws(() => createManager({ initialBytes: 1000 }), RangeError, 'too small for the header and index');
  assert.throws(() => createManager({ codec: 'bson' }), TypeError);
  assert.throws(() => createStore(42), TypeError);
  assert.throws(() => createStore({ buffer: new ArrayBuffer(8) }), TypeError);
});

test('a full store throws RangeError, keeps every earlier value, and deletes make room', () => {
  const { store } = createManager({ maxBytes: 4 * 1024 * 1024 });
  const chunk = Buffer.alloc(100_000, 7);
  let n = 0;
  assert.throws(() => { for (;;) { store.set(`k${n}`, chunk); n++; } }, { name: 'RangeError', code: 'ERR_KV_FULL', message: /store is full/ });
  assert.ok(n > 20, `stored ${n} values before filling up`);
  assert.equal(store.get(`k${n}`), undefined, 'the failed set stored nothing');
  for (let i = 0; i < n; i++) assert.deepEqual(store.get(`k${i}`), chunk);
  assert.equal(store.stats().bufferBytes, 4 * 1024 * 1024);
  for (let i = 0; i < 5; i++) store.delete(`k${i}`);
  for (let i = 0; i < 5; i++) store.set(`again${i}`, chunk);
  assert.deepEqual(store.get('again4'), chunk);
  createManager();
});

test('a store that is no longer referenced lets its buffer be collected', () => {
  const { spawnSync } = require('node:child_process');
  const script = `
    const { createManager, createStore } = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
    let collected = false;
    const registry = new FinalizationRegistry(() => { collected = true; });
    (() => {
      const m = createManager();
      m.store.set('k', 'v');
      for (let i = 0; i < 10; i++) createStore(m.handle).get('k'); // extra attachments
      registry.register(m.handle.buffer, 'buffer');
      globalThis.SharedKVStore.instance = undefined;
    })();
    (async () => {
      for (let i = 0; i < 50 && !collected; i++) { gc(); await new Promise((r) => setTimeout(r, 10)); }
      createManager(); // attaching again reaps anything released while busy
      process.exit(collected ? 0 : 3);
    })();`;
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr || 'the buffer was never collected: an attachment leaked it');
});

test('a closed store object being collected does not release the attachment that reused its id', () => {
  const { spawnSync } = require('node:child_process');
  const script = `
    const { createManager, createStore, openStore } = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
    const file = require('node:path').join(require('node:os').tmpdir(), 'skv-reuse-' + process.pid + '.kv');
    (async () => {
      for (const open of [() => createStore('reuse'), () => openStore(file), () => createStore(createManager().handle)]) {
        let a = open(); a.set('k', 1); a.close(); a = undefined;
        const b = open();                 // takes the id the closed one had
        for (let i = 0; i < 5; i++) { gc(); await new Promise((r) => setTimeout(r, 5)); }
        b.set('k', 2);                     // threw ERR_KV_CLOSED once the closed object was collected
        if (b.get('k') !== 2) process.exit(4);
      }
      require('node:fs').rmSync(file);
    })().catch((e) => { console.error(e); process.exit(3); });`;
  const run = spawnSync(process.execPath, ['--expose-gc', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.status, 0, run.stderr);
});

test('bad input is a TypeError or RangeError, and the store is unchanged: boxed primitives (both codecs), getMany/setMany/lock arguments, a 2^32-1-long array', { timeout: 60_000 }, () => {
  const manager = createManager();
  for (const store of [manager.store, createStore(manager.handle, { codec: 'native' })]) {
    for (const boxed of [new Number(5), new Boolean(false), new String('xy')]) {
      assert.throws(() => store.set('boxed', boxed), { name: 'TypeError', code: 'ERR_KV_UNSUPPORTED_VALUE', message: /boxed .* primitive/ });
      assert.throws(() => store.set('boxed', { inside: [boxed] }), { name: 'TypeError', code: 'ERR_KV_UNSUPPORTED_VALUE' });
    }
    assert.equal(store.has('boxed'), false);
  }
  const { store } = manager;
  store.set('a', 1);
  assert.throws(() => store.getMany(5), TypeError);
  assert.throws(() => store.getMany('ab'), TypeError);
  assert.throws(() => store.setMany(['ab']), TypeError);
  assert.throws(() => store.setMany(5), TypeError);
  assert.equal(store.get('b'), undefined, 'setMany stored nothing of a bad entry');
  assert.throws(() => store.lock('k', 0, null), { name: 'TypeError', message: /options must be an object/ });
  // Refused from its length, before walking 2^32 holes (that took over 40 s).
  const huge = [];
  huge.length = 2 ** 32 - 1;
  assert.throws(() => store.set('huge', huge), { name: 'RangeError', code: 'ERR_KV_VALUE_TOO_LARGE' });
  assert.throws(() => createStore(manager.handle, { codec: 'native' }).set('huge', huge), { name: 'RangeError', code: 'ERR_KV_VALUE_TOO_LARGE' });
  assert.equal(store.has('huge'), false);
  assert.deepEqual(store.getMany(['a', 'b']), [1, undefined]);
  assert.equal(store.setMany([['b', 2], ['c', 3]]), 2);
});

test('a maxBytes too small to hold anything is a RangeError naming the minimum (64 KiB), in every kind of store', () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'skv-min-')), 's.kv');
  for (const make of [
    () => createManager({ initialBytes: 16400, maxBytes: 16400 }),
    () => createStore(`tiny-${process.pid}`, { maxBytes: 16 * 1024 }),
    () => openStore(file, { maxBytes: 16 * 1024 }),
  ]) {
    assert.throws(make, { name: 'RangeError', message: /at least 65536/ });
  }
  assert.equal(fs.existsSync(file), false, 'no file made');
  // The minimum itself holds entries.
  const s = createStore(`min-${process.pid}`, { maxBytes: 64 * 1024 });
  for (let i = 0; i < 20; i++) s.set(`k${i}`, 'x'.repeat(100));
  assert.equal(s.size, 20);
});
