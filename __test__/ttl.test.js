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
    parentPort.postMessage(seen);
  `, { workerData: { kv: manager.handle } });
  store.set('main', 'expires', { ttl: 0.3 });
  const exit = exited(w); // listening before the worker can exit
  const [seen] = await new Promise((r) => w.once('message', (m) => r([m])));
  assert.equal(await exit, 0, 'the worker exits: no timer keeps it alive');
  assert.deepEqual(seen.slice(-1), [undefined]);
  assert.ok(seen.length <= 2, `never came back: ${JSON.stringify(seen)}`);
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
