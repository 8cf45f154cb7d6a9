'use strict';
// set() options: ttl (expiry seen by every thread), minBufferSize, immutable.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createManager, createStore } = require('..');
const { worker, exited } = require('./helpers');

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

for (const codec of ['js', 'native']) {
  test(`[${codec} codec] an expired key is gone for get, has, iteration and the read cache, in this thread`, async () => {
    const manager = createManager();
    const store = codec === 'js' ? manager.store : createStore(manager.handle, { codec });
    store.set('short', { v: 1 }, { ttl: 0.15 });
    store.set('long', { v: 2 }, { ttl: 60 });
    store.set('forever', { v: 3 });
    for (let i = 0; i < 5; i++) assert.deepEqual(store.get('short'), { v: 1 }); // cached, in the js codec
    await sleep(200);
    assert.equal(store.get('short'), undefined);
    assert.equal(store.has('short'), false);
    assert.deepEqual([...store.keys()].sort(), ['forever', 'long']);
    assert.deepEqual(store.get('long'), { v: 2 });
    assert.equal(store.delete('short'), false, 'an expired key was not there to delete');
    assert.equal(store.increment('short'), 1, 'an expired value counts as absent');
  });
}

test('expiry is seen by another thread from the moment it expires, with no timer', async () => {
  const manager = createManager();
  const { store } = manager;
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    store.set('fromWorker', 'soon gone', { ttl: 0.2 });
    const expires = store.expiresAt('fromWorker');
    const until = Date.now() + 5000;
    const seen = [];
    // Poll in the worker too: it must flip to undefined once expired, never come back.
    let last = store.get('main');
    seen.push(last);
    while (Date.now() < until) {
      const v = store.get('main');
      if (v !== last) { seen.push(v); last = v; }
      if (v === undefined) break;
    }
    parentPort.postMessage({ seen, expires });
  `, { workerData: { kv: manager.handle } });
  store.set('main', 'expires', { ttl: 0.3 });
  const exit = exited(w); // listening before the worker can exit
  const [{ seen, expires }] = await new Promise((r) => w.once('message', (m) => r([m])));
  assert.equal(await exit, 0, 'the worker exits: no timer keeps it alive');
  assert.deepEqual(seen.slice(-1), [undefined]);
  assert.ok(seen.length <= 2, `never came back: ${JSON.stringify(seen)}`);
  // The worker may have started after 'main' expired: wait for its key's own moment.
  while (Date.now() <= expires) await sleep(expires - Date.now() + 1);
  assert.equal(store.get('fromWorker'), undefined, "the worker's key expired here too");
});

test('set options are checked, and minBufferSize / immutable / resizeBuffer do their job', () => {
  const { store } = createManager();
  store.set('k', 'old');
  assert.throws(() => store.set('k', 1, { ttl: 0 }), RangeError);
  assert.throws(() => store.set('k', 1, { ttl: -1 }), RangeError);
  assert.throws(() => store.set('k', 1, { ttl: 'soon' }), RangeError);
  assert.throws(() => store.set('k', 1, { minBufferSize: 1.5 }), RangeError);
  assert.throws(() => store.set('k', 1, 'yes'), TypeError);
  assert.equal(store.get('k'), 'old', 'refused sets change nothing');

  store.set('grow', 'x', { minBufferSize: 4000 });
  const used = store.stats().bytesUsed;
  store.set('grow', 'y'.repeat(3900));
  assert.equal(store.stats().bytesUsed, used, 'the grown value fit the reserved space');
  assert.equal(store.get('grow'), 'y'.repeat(3900));

  store.set('imm', 'one');
  const reserved = store.stats().bytesReserved;
  store.set('imm', 'two', { immutable: true });
  assert.ok(store.stats().bytesReserved > reserved, 'written to new space');
  assert.equal(store.get('imm'), 'two');

  store.set('fit', 'z'.repeat(50_000));
  const big = store.stats().bytesUsed;
  store.set('fit', 'small', { resizeBuffer: true, skipLock: true });
  assert.ok(store.stats().bytesUsed < big - 40_000);
  assert.equal(store.get('fit'), 'small');
});

test('expired entries never keep a write out of a full store (bytes and maxEntries), in every kind of store', async () => {
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const { openStore } = require('..');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-ttl-full-'));
  const kinds = {
    manager: (o) => createManager({ initialBytes: o.maxBytes, ...o }).store,
    named: (o) => createStore(`ttl-full-${process.pid}-${Math.random()}`, o),
    file: (o) => openStore(path.join(dir, `${Math.random()}.kv`), o),
  };
  try {
    for (const [kind, open] of Object.entries(kinds)) {
      for (const size of [3000, 5000, 20000]) {
        const store = open({ maxBytes: 256 * 1024 });
        let n = 0;
        try {
          for (;;) { store.set(`old${n}`, Buffer.alloc(size, 1), { ttl: 0.05 }); n++; }
        } catch (e) {
          assert.equal(e.code, 'ERR_KV_FULL');
        }
        assert.ok(n > 5, `${kind}: ${n} entries fitted`);
        // Until every one has expired (a condition, not a time).
        while (Array.from({ length: n }, (_, i) => store.has(`old${i}`)).some(Boolean)) await sleep(20);
        for (let i = 0; i < n; i++) store.set(`new${i}`, Buffer.alloc(size, 2)); // as many as fitted
        assert.equal(store.check().entries, n, `${kind} ${size}`);
      }
      const store = open({ maxBytes: 1024 * 1024, maxEntries: 2 });
      store.set('a', 1, { ttl: 0.05 });
      store.set('b', 2, { ttl: 0.05 });
      assert.throws(() => store.set('c', 3), { code: 'ERR_KV_FULL' });
      while (store.has('a') || store.has('b')) await sleep(20);
      store.set('c', 3);
      assert.equal(store.get('c'), 3);
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

for (const codec of ['js', 'native']) {
  test(`[${codec} codec] expiresAt(key), set({ expiresAt }) and entries({ withExpiry: true }) agree`, () => {
    const manager = createManager();
    const store = codec === 'js' ? manager.store : createStore(manager.handle, { codec });
    const at = Date.now() + 3_600_000;
    store.set('abs', 1, { expiresAt: at });
    store.set('date', 2, { expiresAt: new Date(at + 1) });
    const before = Date.now();
    store.set('rel', 3, { ttl: 60 });
    store.set('none', 4);
    assert.equal(store.expiresAt('abs'), at);
    assert.equal(store.expiresAt('date'), at + 1);
    const rel = store.expiresAt('rel');
    assert.ok(rel >= before + 60_000 && rel <= Date.now() + 60_000);
    assert.equal(store.expiresAt('none'), null);
    assert.equal(store.expiresAt('absent'), undefined);
    const got = Object.fromEntries([...store.entries({ withExpiry: true })].map(([k, v, e]) => [k, [v, e]]));
    assert.deepEqual(got, { abs: [1, at], date: [2, at + 1], rel: [3, rel], none: [4, null] });
    // Plain entries() stay pairs.
    assert.ok([...store.entries()].every((e) => e.length === 2));
    // An expiry already past: stored, and absent at once.
    store.set('past', 5, { expiresAt: Date.now() - 1000 });
    assert.equal(store.get('past'), undefined);
    assert.equal(store.expiresAt('past'), undefined);
    for (const bad of [0, -5, 1.5, NaN, 'soon', new Date(NaN)]) {
      assert.throws(() => store.set('x', 1, { expiresAt: bad }), RangeError, String(bad));
    }
    assert.throws(() => store.set('x', 1, { expiresAt: at, ttl: 5 }), TypeError);
    assert.throws(() => store.entries(null).next(), TypeError);
    assert.equal(store.get('x'), undefined, 'refused writes changed nothing');
    manager.close?.();
  });
}
