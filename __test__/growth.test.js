'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createManager, createStore, openStore } = require('..');
const { once } = require('node:events');
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

test('growing under load up to maxBytes: RangeError at the limit, every earlier value intact, deletes make room', async () => {
  const maxBytes = 48 * MIB;
  const manager = createManager({ initialBytes: MIB, maxBytes });
  // Each thread writes its own keys until the store is full and reports what it stored.
  const body = `
    const store = kv.createStore(workerData.kv);
    const stored = [];
    let error;
    parentPort.postMessage('ready');
    Atomics.wait(new Int32Array(workerData.gate), 0, 0); // all threads start together
    for (let i = 0; ; i++) {
      const key = workerData.prefix + i;
      try {
        store.set(key, { key, blob: Buffer.alloc(5000 + (i % 7) * 3000, i % 256) });
        stored.push(key);
      } catch (e) {
        error = { name: e.name, message: e.message };
        break;
      }
    }
    parentPort.postMessage({ stored, error });
  `;
  const gate = new SharedArrayBuffer(4);
  const ws = ['a', 'b'].map((prefix) => worker(body, { workerData: { kv: manager.handle, prefix, gate } }));
  const exits = ws.map(exited);
  await Promise.all(ws.map((w) => once(w, 'message')));
  const results = ws.map((w) => once(w, 'message').then(([m]) => m));
  Atomics.store(new Int32Array(gate), 0, 1);
  Atomics.notify(new Int32Array(gate), 0);
  const { store } = manager;
  const mine = [];
  let mainError;
  for (let i = 0; ; i++) {
    try {
      store.set('m' + i, { key: 'm' + i, blob: Buffer.alloc(5000 + (i % 7) * 3000, i % 256) });
      mine.push('m' + i);
    } catch (e) {
      mainError = e;
      break;
    }
  }
  const done = await Promise.all(results);
  assert.deepEqual(await Promise.all(exits), [0, 0]);
  assert.ok(mainError instanceof RangeError, String(mainError));
  assert.match(mainError.message, /maxBytes/);
  for (const { error } of done) assert.equal(error.name, 'RangeError', error.message);
  const all = [...mine, ...done.flatMap((d) => d.stored)];
  assert.ok(all.length > 2000, `${all.length} values fit`);
  assert.ok(store.stats().bufferBytes <= maxBytes);
  for (const key of all) {
    const i = Number(key.slice(1));
    const v = store.get(key);
    assert.equal(v?.key, key, `${key} survived`);
    assert.equal(v.blob.length, 5000 + (i % 7) * 3000);
    assert.ok(v.blob.every((b) => b === i % 256), `${key} intact`);
  }
  assert.equal(store.check().entries, all.length);
  // Deleting makes room for new values of the same sizes; the limit still holds.
  for (const key of all.slice(0, 500)) assert.equal(store.delete(key), true);
  for (let i = 0; i < 400; i++) store.set('again' + i, { blob: Buffer.alloc(5000 + (i % 7) * 3000) });
  assert.equal(store.check().entries, all.length - 100);
  assert.throws(() => store.set('huge', Buffer.alloc(maxBytes)), RangeError);
});

test('reads alone finish a growth of the index that the writes left half done (the JS reader helps it on)', () => {
  const { store } = createManager({ maxBytes: 64 * MIB });
  const single = store.stats().indexSlots;
  assert.equal(store.stats().growing, false);
  let n = 0;
  // Insert until the index is two tables (moving: indexSlots counts both), then only read.
  while (store.stats().indexSlots === single) store.set(`k${n}`, n++);
  const both = store.stats().indexSlots;
  assert.ok(both > 2 * single, `two tables: ${both}`);
  assert.equal(store.stats().growing, true);
  let reads = 0;
  while (store.stats().indexSlots === both) {
    assert.equal(store.get(`k${reads % n}`), reads % n);
    reads++;
    assert.ok(reads < 100_000, 'reads never finished the growth');
  }
  assert.ok(store.stats().indexSlots < both && store.stats().indexSlots > single, 'one, larger table');
  assert.equal(store.stats().growing, false);
  assert.equal(store.check().entries, n);
});

test('entries() while this thread\'s writes grow the index: every key once, none lost', () => {
  const { store } = createManager({ maxBytes: 64 * MIB });
  const N = 5000;
  for (let i = 0; i < N; i++) store.set(`k${i}`, i);
  const slotsBefore = store.stats().indexSlots;
  const seen = new Map();
  let added = 0;
  for (const [k, v] of store.entries()) {
    seen.set(k, (seen.get(k) ?? 0) + 1);
    if (k.startsWith('k')) assert.equal(v, Number(k.slice(1)), k);
    // Growths start, move and finish meanwhile (20,000 new keys: the index grows twice).
    for (let j = 0; j < 4 && added < 4 * N; j++) store.set(`new${added++}`, 0);
  }
  assert.ok(store.stats().indexSlots >= 4 * slotsBefore, 'the index grew during the iteration');
  for (let i = 0; i < N; i++) assert.equal(seen.get(`k${i}`), 1, `k${i}`);
  for (const [k, c] of seen) assert.equal(c, 1, `${k} came ${c} times`);
});

test('listKeys() while a worker\'s writes grow the index: every key once, none lost', async () => {
  const manager = createManager({ maxBytes: 64 * MIB });
  const { store } = manager;
  const N = 3000;
  for (let i = 0; i < N; i++) store.set(`k${i}`, i);
  const flags = new Int32Array(new SharedArrayBuffer(8)); // [listing, done]
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    const flags = new Int32Array(workerData.flags);
    while (Atomics.load(flags, 0) === 0) Atomics.wait(flags, 0, 0, 10);
    for (let i = 0; i < 30000; i++) store.set('new' + i, i); // the index grows three times
    Atomics.store(flags, 1, 1);
  `, { workerData: { kv: manager.handle, flags: flags.buffer } });
  const exit = exited(w);
  const want = Array.from({ length: N }, (_, i) => `k${i}`).sort();
  const slotsBefore = store.stats().indexSlots;
  // Listing from before the worker's first write until after its last one.
  Atomics.store(flags, 0, 1);
  Atomics.notify(flags, 0);
  let rounds = 0;
  do {
    assert.deepEqual(store.listKeys('k*').sort(), want);
    rounds++;
  } while (Atomics.load(flags, 1) === 0);
  assert.equal(await exit, 0);
  assert.ok(store.stats().indexSlots >= 8 * slotsBefore, 'the index grew');
  assert.ok(rounds > 1);
});

test('expectedKeys sizes the index at the first key, in every kind of store: growth to that many moves nothing', () => {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-expected-'));
  try {
    const KEYS = 50_000;
    const kinds = {
      thread: (o) => createManager({ maxBytes: 64 * MIB, ...o }).store,
      named: (o) => createStore(`expected:${o.expectedKeys ?? 0}`, { maxBytes: 64 * MIB, ...o }),
      file: (o) => openStore(path.join(dir, `e${o.expectedKeys ?? 0}.kv`), { maxBytes: 64 * MIB, ...o }),
    };
    for (const [kind, make] of Object.entries(kinds)) {
      const sized = make({ expectedKeys: KEYS });
      const plain = make({});
      const sizes = (store) => {
        const seen = new Set();
        for (let i = 0; i < KEYS; i++) {
          store.set(`k${i}`, i);
          if (i >= 2000) seen.add(store.stats().indexSlots); // past the first (tiny) move
        }
        return seen;
      };
      const sizedIndex = sizes(sized);
      assert.equal(sizedIndex.size, 1, `${kind}: the sized index never changed size`);
      assert.ok([...sizedIndex][0] >= (KEYS + 1) * 2, `${kind}: an index for ${KEYS} keys`);
      assert.ok(sizes(plain).size > 1, `${kind}: without expectedKeys the index grows`);
      for (let i = 0; i < KEYS; i += 997) assert.equal(sized.get(`k${i}`), i);
      // Emptied, it stays the size asked for.
      for (let i = 100; i < KEYS; i++) sized.delete(`k${i}`);
      for (let i = 0; i < 3000; i++) sized.set(`n${i}`, i);
      assert.equal(sized.stats().indexSlots, [...sizedIndex][0], `${kind}: deletes did not shrink it`);
      sized.check();
    }
    for (const bad of [-1, 1.5, '10', Infinity]) {
      assert.throws(() => createManager({ expectedKeys: bad }), { name: 'RangeError', message: /expectedKeys must be a whole number/ });
      assert.throws(() => openStore(path.join(dir, 'bad.kv'), { expectedKeys: bad }), RangeError);
      assert.throws(() => createStore('expected:bad', { expectedKeys: bad }), RangeError);
    }
    assert.equal(fs.existsSync(path.join(dir, 'bad.kv')), false, 'no file made for bad options');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
