'use strict';
// Atomic read-modify-write, iteration and the other whole-store operations.
const test = require('node:test');
const assert = require('node:assert/strict');
const { createManager, createStore } = require('..');
const { worker, exited } = require('./helpers');

for (const codec of ['js', 'native']) {
  test(`[${codec} codec] increment, compareAndSet, update: semantics and bad input`, () => {
    const manager = createManager();
    const store = codec === 'js' ? manager.store : createStore(manager.handle, { codec });
    assert.equal(store.increment('n'), 1, 'absent counts as 0, delta defaults to 1');
    assert.equal(store.increment('n', 2.5), 3.5);
    assert.equal(store.increment('n', -3.5), 0);
    assert.throws(() => store.increment('n', NaN), TypeError);
    assert.throws(() => store.increment('n', '1'), TypeError);
    store.set('s', 'text');
    assert.throws(() => store.increment('s'), { name: 'TypeError', code: 'ERR_KV_WRONG_TYPE' });
    assert.equal(store.get('s'), 'text', 'a refused increment changes nothing');

    assert.equal(store.compareAndSet('c', undefined, { v: 1 }), true, 'insert if absent');
    assert.equal(store.compareAndSet('c', undefined, { v: 2 }), false);
    assert.equal(store.compareAndSet('c', { v: 9 }, { v: 2 }), false);
    assert.deepEqual(store.get('c'), { v: 1 });
    assert.equal(store.compareAndSet('c', { v: 1 }, new Map([[1, 2]])), true);
    assert.deepEqual(store.get('c'), new Map([[1, 2]]));
    assert.throws(() => store.compareAndSet('c', undefined, undefined), TypeError);
    assert.throws(() => store.compareAndSet(1, 1, 2), TypeError);

    assert.deepEqual(store.update('u', (old) => ({ n: (old?.n ?? 0) + 1 })), { n: 1 });
    assert.deepEqual(store.update('u', (old) => { old.n += 1; return old; }), { n: 2 }, 'fn may mutate its copy');
    assert.equal(store.update('u', () => undefined), undefined, 'undefined writes nothing');
    assert.deepEqual(store.get('u'), { n: 2 });
    assert.throws(() => store.update('u', 5), TypeError);
  });
}

test('two workers incrementing a counter 100,000 times each give exactly 200,000', async () => {
  const manager = createManager();
  const ws = [0, 1].map(() => worker(`
    const store = kv.createStore(workerData.kv);
    for (let i = 0; i < 100000; i++) store.increment('counter');
  `, { workerData: { kv: manager.handle } }));
  assert.deepEqual(await Promise.all(ws.map(exited)), [0, 0]);
  assert.equal(manager.store.get('counter'), 200_000);
});

test('updates from two workers never lose one another', async () => {
  const manager = createManager();
  manager.store.set('doc', { n: 0, log: [] });
  const ws = [0, 1].map((id) => worker(`
    const store = kv.createStore(workerData.kv);
    for (let i = 0; i < 3000; i++) store.update('doc', (d) => ({ n: d.n + 1, log: [...d.log.slice(-9), ${id}] }));
  `, { workerData: { kv: manager.handle } }));
  assert.deepEqual(await Promise.all(ws.map(exited)), [0, 0]);
  assert.equal(manager.store.get('doc').n, 6000);
});

test('has, size, clear, getMany, setMany', () => {
  const { store } = createManager();
  assert.equal(store.setMany([['a', 1], ['b', { x: 2 }], ['skip', undefined]]), 2);
  assert.deepEqual(store.getMany(['a', 'b', 'missing']), [1, { x: 2 }, undefined]);
  assert.equal(store.has('a'), true);
  assert.equal(store.has('skip'), false);
  assert.equal(store.size, 2);
  for (let i = 0; i < 3000; i++) store.set(`k${i}`, i);
  assert.equal(store.size, 3002);
  const used = store.stats().bytesUsed;
  assert.equal(store.clear(), 3002);
  assert.equal(store.size, 0);
  assert.equal(store.get('a'), undefined);
  assert.ok(store.stats().bytesUsed < used / 10, 'space returned');
  store.set('again', true);
  assert.equal(store.get('again'), true);
});

test('iteration yields every key once with its value', () => {
  const { store } = createManager();
  const expected = new Map();
  for (let i = 0; i < 2000; i++) {
    const v = i % 3 === 0 ? { i, s: 'x'.repeat(i % 50) } : i;
    store.set(`key:${i}`, v);
    expected.set(`key:${i}`, v);
  }
  for (let i = 0; i < 2000; i += 7) {
    store.delete(`key:${i}`);
    expected.delete(`key:${i}`);
  }
  const seen = new Map(store.entries());
  assert.deepStrictEqual(seen, expected);
  assert.deepEqual([...store.keys()].sort(), [...expected.keys()].sort());
  assert.equal([...store.values()].length, expected.size);
  assert.equal([...store].length, expected.size, '[Symbol.iterator] is entries()');
});

test('iteration under concurrent writes: each key at most once, stable keys all present, no torn values', async () => {
  const manager = createManager();
  const { store } = manager;
  for (let i = 0; i < 500; i++) store.set(`stable:${i}`, { i, pad: 'p'.repeat(i % 100) });
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    for (let r = 0; Atomics.load(workerData.stop, 0) === 0; r++) {
      for (let i = 0; i < 1500; i++) store.set('churn:' + r + ':' + i, { r, i }); // index rebuilds
      for (let i = 0; i < 1500; i++) store.delete('churn:' + r + ':' + i);
      for (let i = 0; i < 500; i += 5) store.set('stable:' + i, { i, pad: 'p'.repeat(i % 100) }); // rewrites
    }
  `, { workerData: { kv: manager.handle, stop } });
  await new Promise((r) => setTimeout(r, 50));
  try {
    for (let round = 0; round < 20; round++) {
      const keys = new Set();
      let stable = 0;
      for (const [key, value] of store) {
        assert.ok(!keys.has(key), `${key} yielded twice`);
        keys.add(key);
        if (key.startsWith('stable:')) {
          stable++;
          assert.equal(value.pad, 'p'.repeat(value.i % 100), `torn value for ${key}`);
        }
      }
      assert.equal(stable, 500, 'every stable key present');
    }
  } finally {
    Atomics.store(stop, 0, 1); // a failure must not leave the writer running (the file would hang)
  }
  await exited(w);
});

test('close() is idempotent, later calls throw ERR_KV_CLOSED, other threads carry on', async () => {
  const manager = createManager();
  const { store } = manager;
  store.set('k', 'v');
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    store.get('k'); store.get('k'); // cached in this thread
    store.close();
    store.close();
    const errors = [];
    for (const call of [() => store.get('k'), () => store.set('k', 1), () => store.delete('k'), () => store.size,
      () => store.stats(), () => [...store.keys()], () => store.increment('n'), () => store.handle]) {
      try { call(); errors.push('no error'); } catch (e) { errors.push(e.code); }
    }
    parentPort.postMessage({ errors, closed: store.closed });
  `, { workerData: { kv: manager.handle } });
  const exit = exited(w); // listening before the worker can exit
  const [{ errors, closed }] = await new Promise((r) => w.once('message', (m) => r([m])));
  assert.equal(await exit, 0, 'the worker exits normally after close');
  assert.equal(closed, true);
  assert.deepEqual(new Set(errors), new Set(['ERR_KV_CLOSED']), errors.join());
  assert.equal(store.get('k'), 'v', 'the store itself is untouched');
  store.close();
  assert.throws(() => store.get('k'), { code: 'ERR_KV_CLOSED' });
  assert.equal(globalThis.SharedKVStore.instance, undefined, 'the closed instance is no longer the global one');
});

test('listKeys, keys() and delete(pattern) read keys only: no value is copied or decoded', () => {
  const native = require('../binding.js');
  const { store } = createManager({ maxBytes: 256 * 1024 * 1024 });
  for (let i = 0; i < 12; i++) store.set(`user:${i}`, Buffer.alloc(8 * 1024 * 1024, i));
  store.set('other', 1);
  const scan = native.scan;
  const asked = [];
  native.scan = (...args) => {
    const batch = scan(...args);
    asked.push({ values: args[4], copied: batch.values.length });
    return batch;
  };
  try {
    assert.equal(store.listKeys('user:*').length, 12);
    assert.equal([...store.keys()].length, 13);
    assert.equal(store.delete('user:1*'), true); // user:1, user:10, user:11
    assert.ok(asked.length > 0);
    assert.deepEqual(asked.filter((a) => a.values !== false || a.copied !== 0), [], 'a value was copied');
    asked.length = 0;
    assert.equal([...store.entries()].length, 10, 'entries() still reads values');
    assert.ok(asked.every((a) => a.copied > 0 || a.values === true));
  } finally {
    native.scan = scan;
  }
});
