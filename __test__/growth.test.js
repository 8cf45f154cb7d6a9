'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createManager } = require('..');
const { worker, exited } = require('./helpers');

const MIB = 1024 * 1024;

test('the buffer grows in place to hundreds of MiB; a worker attached at 1 MiB sees it all', async () => {
  const manager = createManager({ maxBytes: 512 * MIB });
  const { store } = manager;
  assert.equal(store.stats().bufferBytes, MIB);
  const early = worker(`
    const store = kv.createStore(workerData.kv);
    parentPort.once('message', (count) => {
      let ok = 0;
      for (let i = 0; i < count; i++) {
        const b = store.get('big:' + i);
        if (b && b.length === ${MIB} && b[0] === i % 251 && b[${MIB} - 1] === i % 251) ok++;
      }
      // It can write into the grown memory too.
      store.set('fromWorker', Buffer.alloc(${2 * MIB}, 9));
      parentPort.postMessage(ok);
    });
  `, { workerData: { kv: manager.handle } });
  await new Promise((r) => early.once('online', r));

  const COUNT = 300;
  for (let i = 0; i < COUNT; i++) store.set('big:' + i, Buffer.alloc(MIB, i % 251));
  const grown = store.stats().bufferBytes;
  assert.ok(grown > 300 * MIB && grown <= 512 * MIB, `buffer is ${grown} bytes`);

  early.postMessage(COUNT);
  const [ok] = await new Promise((r) => early.once('message', (m) => r([m])));
  assert.equal(ok, COUNT, 'the early worker read every value');
  await early.terminate();
  assert.deepEqual(store.get('fromWorker'), Buffer.alloc(2 * MIB, 9));
  for (let i = 0; i < COUNT; i += 37) assert.deepEqual(store.get('big:' + i), Buffer.alloc(MIB, i % 251));
});

test('growth while several workers write keeps every value', async () => {
  const manager = createManager({ maxBytes: 256 * MIB });
  const ws = [0, 1, 2].map((id) => worker(`
    const store = kv.createStore(workerData.kv);
    for (let i = 0; i < 400; i++) store.set('g${id}:' + i, { id: ${id}, i, blob: Buffer.alloc(50_000 + i, i % 256) });
  `, { workerData: { kv: manager.handle } }));
  assert.deepEqual(await Promise.all(ws.map(exited)), [0, 0, 0]);
  const { store } = manager;
  assert.ok(store.stats().bufferBytes > 50 * MIB);
  for (let id = 0; id < 3; id++) {
    for (let i = 0; i < 400; i++) {
      const v = store.get(`g${id}:${i}`);
      assert.equal(v.i, i);
      assert.equal(v.blob.length, 50_000 + i);
      assert.equal(v.blob[v.blob.length - 1], i % 256);
    }
  }
});
