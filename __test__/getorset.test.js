'use strict';
// getOrSet: one loader at a time across threads (and processes, on a store file).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { once } = require('node:events');
const { createStore, openStore } = require('..');
const { worker } = require('./helpers');

test('a present key resolves at once, and the loader is not called', async () => {
  const store = createStore('getorset:present');
  store.set('k', { a: 1 });
  let called = 0;
  const v = await store.getOrSet('k', () => { called++; return 'other'; });
  assert.deepEqual(v, { a: 1 });
  assert.equal(called, 0);
});

test('4 threads ask for a missing key at once: the loader runs once, all get its value', async () => {
  const name = 'getorset:herd';
  const store = createStore(name);
  const code = `
    const store = kv.createStore(${JSON.stringify(name)});
    const go = new Int32Array(workerData);
    Atomics.wait(go, 0, 0); // all start together
    store.getOrSet('page', async () => {
      store.increment('loads');
      await new Promise((r) => setTimeout(r, 150));
      return { html: 'rendered', by: require('node:worker_threads').threadId };
    }, { ttl: 60 }).then((v) => parentPort.postMessage(v), (e) => parentPort.postMessage({ error: e.message }));
  `;
  const go = new SharedArrayBuffer(4);
  const ws = Array.from({ length: 4 }, () => worker(code, { workerData: go }));
  const results = ws.map((w) => once(w, 'message').then(([m]) => m));
  await new Promise((r) => setTimeout(r, 100));
  Atomics.store(new Int32Array(go), 0, 1);
  Atomics.notify(new Int32Array(go), 0);
  const values = await Promise.all(results);
  assert.equal(store.get('loads'), 1, 'one loader ran');
  assert.equal(new Set(values.map((v) => JSON.stringify(v))).size, 1, 'all got the same value');
  assert.equal(values[0].html, 'rendered');
  assert.equal(store.stats().entries, 2, 'the value and the counter; the turn is released');
  await Promise.all(ws.map((w) => w.terminate()));
});

test('a loader that throws rejects its own caller and stores nothing; a waiter then loads', async () => {
  const store = createStore('getorset:throws');
  const first = store.getOrSet('k', async () => {
    await new Promise((r) => setTimeout(r, 50));
    throw new Error('backend down');
  });
  const second = store.getOrSet('k', async () => 'second loader');
  await assert.rejects(first, /backend down/);
  assert.equal(await second, 'second loader');
  assert.equal(store.get('k'), 'second loader');
});

test('a loader whose thread is terminated is taken over by a waiter at once', async () => {
  const name = 'getorset:terminated';
  const store = createStore(name);
  const w = worker(`
    const store = kv.createStore(${JSON.stringify(name)});
    store.getOrSet('k', () => { parentPort.postMessage('loading'); return new Promise(() => {}); }, { lease: 600000 });
  `);
  await once(w, 'message');
  // Its 5 s timeout, not the 600 s lease: only a takeover can make it load.
  const mine = store.getOrSet('k', () => 'taken over', { timeout: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  await w.terminate();
  assert.equal(await mine, 'taken over');
});

test('a loader whose process dies is taken over; getOrSet works on a store file across processes', async () => {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-gos-'));
  const file = path.join(dir, 's.kv');
  const store = openStore(file, { maxBytes: 4 << 20 });
  const { fork } = require('node:child_process');
  const child = fork(path.join(__dirname, 'fixtures', 'peer.js'), [file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  await once(child, 'message');
  child.send({ id: 1, code: `store.getOrSet('k', () => { process.send({ id: 1, result: 'loading' }); return new Promise(() => {}); }, { lease: 600000 });` });
  await once(child, 'message');
  const mine = store.getOrSet('k', () => 'from the survivor', { timeout: 5000 });
  await new Promise((r) => setTimeout(r, 50));
  child.kill('SIGKILL');
  assert.equal(await mine, 'from the survivor');
  fs.rmSync(dir, { recursive: true, force: true });
});

test('timeout bounds the wait; bad arguments are refused', async () => {
  const store = createStore('getorset:timeout');
  let release;
  const slow = store.getOrSet('k', () => new Promise((r) => { release = r; }));
  await new Promise((r) => setTimeout(r, 10));
  await assert.rejects(store.getOrSet('k', () => 'never', { timeout: 50 }), { code: 'ERR_KV_TIMEOUT' });
  release('late');
  assert.equal(await slow, 'late');
  await assert.rejects(store.getOrSet('k', 'not a function'), TypeError);
  await assert.rejects(store.getOrSet(42, () => 1), TypeError);
  await assert.rejects(store.getOrSet('k2', () => 1, { timeout: -1 }), RangeError);
  await assert.rejects(store.getOrSet('k2', () => 1, { ttl: -5 }), RangeError);
  assert.equal(store.get('k2'), undefined);
});

test('closing the store while its loader runs gives the turn up at once', async () => {
  const name = 'getorset:closed';
  const w = worker(`
    const store = kv.createStore(${JSON.stringify(name)});
    store.getOrSet('k', () => { parentPort.postMessage('loading'); return new Promise(() => {}); }, { lease: 600000 });
    parentPort.once('message', () => { store.close(); parentPort.postMessage('closed'); });
  `);
  await once(w, 'message');
  w.postMessage('close');
  await once(w, 'message');
  const store = createStore(name);
  assert.equal(await store.getOrSet('k', () => 'mine', { timeout: 1000 }), 'mine');
  await w.terminate();
});
