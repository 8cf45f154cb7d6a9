'use strict';
// Workers terminated at random points of random operations: the store stays usable and
// consistent (the integrity check passes: no slot half-written, no lock held, bytes in use
// match the live keys), and nothing the main thread wrote is lost.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createManager } = require('..');
const { worker, rng } = require('./helpers');

const ROUNDS = 100;

// Values describe themselves ({ k, n, body: n repeated }), so a half-written one is visible.
const WORKER = `
  const store = kv.createStore(workerData.name);
  const random = require(workerData.helpers).rng(workerData.seed);
  const value = (k, n, len) => ({ k, n, body: String(n % 10).repeat(len) });
  parentPort.postMessage('running');
  for (let n = 0; ; n++) {
    const k = 'w' + Math.floor(random() * 200);
    const r = random();
    const len = r < 0.9 ? Math.floor(random() * 100) : 20000 + Math.floor(random() * 200000);
    if (r < 0.35) store.set(k, value(k, n, len), random() < 0.3 ? { immutable: true } : random() < 0.5);
    else if (r < 0.45) store.set(k, value(k, n, len), { ttl: 1 + Math.floor(random() * 5) });
    else if (r < 0.6) store.delete(k);
    else if (r < 0.7) store.get(k);
    else if (r < 0.8) store.increment('counter');
    else if (r < 0.87) store.update('updated', (x) => (x ?? 0) + 1);
    else if (r < 0.94) { if (store.lock('L', 5, { lease: 30 })) { store.set('underLock', n); store.release('L'); } }
    else if (r < 0.97) store.setMany([[k, value(k, n, len)], ['w' + (n % 7), value('w' + (n % 7), n, 5)]]);
    else if (r < 0.99) store.delete('w1*');
    else store.clear();
  }
`;

function checkValues(store) {
  for (const key of store.keys()) {
    const v = store.get(key);
    if (v === undefined || !key.startsWith('w')) continue; // expired since listed, or a counter
    assert.equal(v.k, key, `value under ${key} belongs to ${v.k}`);
    assert.equal(v.body, String(v.n % 10).repeat(v.body.length), `${key} is half-written`);
  }
}

test(`${ROUNDS} rounds of workers terminated at random moments leave a consistent store`, async () => {
  const name = `faults-${process.pid}`;
  const manager = createManager({ name, maxBytes: 256 * 1024 * 1024 });
  const { store } = manager;
  const mine = new Map();
  for (let i = 0; i < 100; i++) mine.set(`main${i}`, { i, blob: 'm'.repeat(i * 10) });
  const random = rng(99);
  for (let round = 0; round < ROUNDS; round++) {
    const workers = Array.from({ length: 1 + (round % 2) }, (_, i) =>
      worker(WORKER, { workerData: { name, seed: round * 7 + i, helpers: require.resolve('./helpers') } }));
    await Promise.all(workers.map((w) => new Promise((resolve) => w.once('message', resolve))));
    // The main thread writes its own keys meanwhile, contending for the writer lock; a
    // worker's clear() may wipe them, so they are set again after each round.
    const until = Date.now() + random() * 15;
    for (let i = 0; Date.now() < until; i++) store.set(`main${i % 100}`, mine.get(`main${i % 100}`));
    await Promise.all(workers.map((w) => w.terminate()));

    const report = store.check(); // throws if anything is half-done or miscounted
    assert.equal(report.entries, store.size, `round ${round}`);
    checkValues(store);
    for (const [k, v] of mine) store.set(k, v);
    for (const [k, v] of mine) assert.deepEqual(store.get(k), v);
    assert.ok(store.lock('L', 2000, { lease: 30 }), `round ${round}: a dead worker's lease expired`);
    assert.ok(store.release('L'));
  }
  // Memory in use is exactly the live keys plus the index: deleting them all leaves the index.
  store.clear();
  const empty = store.check();
  assert.equal(empty.entries, 0);
  assert.equal(empty.bytesUsed, empty.indexBytes);
});
