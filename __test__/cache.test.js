'use strict';
// The per-thread read cache: a hit skips native code and decoding, so these check that it
// never returns anything a fresh read would not.
const test = require('node:test');
const assert = require('node:assert/strict');
const { once } = require('node:events');
const { createManager } = require('..');
const { MAX_ENTRIES, MAX_TOTAL_BYTES } = require('../lib/cache');
const { fromTagged } = require('./tagged');
const { worker, exited } = require('./helpers');
const vectors = require('./vectors.json');

test('repeated gets of an unchanged value are served from the cache', () => {
  const { store } = createManager();
  store.set('k', { a: 1 });
  const before = store.stats();
  for (let i = 0; i < 10; i++) assert.deepEqual(store.get('k'), { a: 1 });
  const after = store.stats();
  assert.ok(after.hits - before.hits >= 8, `hits went ${before.hits} -> ${after.hits}`);
  assert.equal(after.cachedEntries, 1);
});

test('with a thousand keys read over and over, nearly every read is a cache hit', () => {
  const { store } = createManager();
  for (let i = 0; i < 1000; i++) store.set(`many:${i}`, { i });
  for (let pass = 0; pass < 3; pass++) for (let i = 0; i < 1000; i++) store.get(`many:${i}`); // warm up
  const before = store.stats();
  for (let pass = 0; pass < 10; pass++) for (let i = 0; i < 1000; i++) assert.equal(store.get(`many:${i}`).i, i);
  const after = store.stats();
  const hits = after.hits - before.hits;
  assert.ok(hits >= 9_900, `${hits} of 10,000 reads were hits`);
});

test('a value another thread changes is never served stale (concurrent writer)', async () => {
  const manager = createManager();
  const { store } = manager;
  const done = new Int32Array(new SharedArrayBuffer(8)); // [last completed write, stop]
  store.set('counter', { n: 0, pad: '' }); // pad is always 'x'.repeat(n % 40)
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    const done = workerData.done;
    for (let n = 1; Atomics.load(done, 1) === 0; n++) {
      store.set('counter', { n, pad: 'x'.repeat(n % 40) });
      Atomics.store(done, 0, n); // n is complete: any get starting now must see >= n
      if (n % 64 === 0) for (let i = 0; i < 2000; i++); // let readers hit the cache in between
    }
  `, { workerData: { kv: manager.handle, done } });
  let reads = 0, stale = 0, hitsBefore = store.stats().hits;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    for (let i = 0; i < 500; i++, reads++) {
      const floor = Atomics.load(done, 0);
      const v = store.get('counter');
      if (v.n < floor || v.pad !== 'x'.repeat(v.n % 40)) stale++;
    }
    await new Promise((r) => setImmediate(r));
  }
  Atomics.store(done, 1, 1);
  await exited(w);
  const hits = store.stats().hits - hitsBefore;
  assert.ok(reads > 10_000, `${reads} reads`);
  assert.ok(hits > 0, 'some reads were cache hits, so the cache was exercised');
  assert.equal(stale, 0, `${stale} stale or torn values in ${reads} reads (${hits} cache hits)`);
});

test('a deleted key is never served from the cache, whichever thread deletes it', async () => {
  const manager = createManager();
  const { store } = manager;
  store.set('gone', [1, 2, 3]);
  store.get('gone');
  store.get('gone'); // cached now
  const w = worker(`kv.createStore(workerData.kv).delete('gone');`, { workerData: { kv: manager.handle } });
  await exited(w);
  assert.equal(store.get('gone'), undefined);
  store.set('local', 'x');
  store.get('local');
  store.get('local');
  store.delete('local');
  assert.equal(store.get('local'), undefined);
  store.set('local', 'again'); // may reuse the same slot
  assert.equal(store.get('local'), 'again');
});

test('mutating a value returned from the cache never changes the next get', () => {
  const { store } = createManager();
  const original = { list: [1, { deep: true }], map: new Map([['k', new Set([1])]]), when: new Date(5), bytes: Buffer.from('ab') };
  store.set('m', original);
  for (let i = 0; i < 8; i++) {
    const v = store.get('m'); // later ones are cache hits, with the compiled cloner after a few
    assert.deepStrictEqual(v, original);
    v.list[1].deep = false;
    v.list.push(9);
    v.map.get('k').add(2);
    v.when.setTime(0);
    v.bytes[0] = 0;
    v.extra = 1;
  }
  assert.deepStrictEqual(store.get('m'), original);
});

test('every supported value comes back equal through the cache', () => {
  const { store } = createManager();
  for (const v of vectors) {
    const value = fromTagged(v.value);
    if (value === undefined || (value instanceof Date && Number.isNaN(value.getTime()))) continue;
    store.set(v.name, value);
    for (let i = 0; i < 6; i++) assert.deepStrictEqual(store.get(v.name), value, `${v.name} read ${i}`);
  }
  store.set('proto', JSON.parse('{"__proto__": {"x": 1}}'));
  for (let i = 0; i < 6; i++) {
    const back = store.get('proto');
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.keys(back), ['__proto__']);
  }
});

test('the cache is bounded in entries and bytes', () => {
  const { store } = createManager({ maxBytes: 256 * 1024 * 1024 });
  for (let i = 0; i < MAX_ENTRIES + 2000; i++) {
    store.set(`k${i}`, i);
    store.get(`k${i}`);
    store.get(`k${i}`);
  }
  assert.ok(store.stats().cachedEntries <= MAX_ENTRIES);
  const big = 'y'.repeat(60_000);
  for (let i = 0; i < 400; i++) {
    store.set(`big${i}`, big);
    store.get(`big${i}`);
    store.get(`big${i}`);
  }
  const st = store.stats();
  assert.ok(st.cachedBytes <= MAX_TOTAL_BYTES, `${st.cachedBytes} cached bytes`);
  store.set('huge', 'z'.repeat(200_000));
  store.get('huge');
  assert.equal(store.get('huge').length, 200_000, 'values over the size limit are read, not cached');
});

test('cached entries stay correct across buffer growth and index rebuilds', () => {
  const { store } = createManager({ maxBytes: 128 * 1024 * 1024 });
  store.set('early', { v: 1 });
  store.get('early');
  store.get('early');
  for (let i = 0; i < 20_000; i++) store.set(`fill${i}`, 'f'.repeat(100)); // rebuilds and growth
  assert.ok(store.stats().bufferBytes > 1024 * 1024);
  assert.deepEqual(store.get('early'), { v: 1 });
  store.set('late', Buffer.alloc(5_000_000, 1)); // far into the grown buffer
  store.set('early', { v: 2 });
  for (let i = 0; i < 3; i++) assert.deepEqual(store.get('early'), { v: 2 });
});
