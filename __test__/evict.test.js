'use strict';
// Eviction: a store made with onFull: 'evict' makes room instead of throwing ERR_KV_FULL.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { once } = require('node:events');
const { createManager, createStore, openStore } = require('..');
const { worker } = require('./helpers');

const value = (i) => ({ i, pad: 'v'.repeat(40 + (i % 60)) });

test('maxBytes and maxEntries hold while writing 10 times the capacity, in every kind of store', () => {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-evict-'));
  const stores = [
    createManager({ initialBytes: 256 << 10, maxBytes: 512 << 10, onFull: 'evict' }).store,
    createStore('evict:named', { maxBytes: 512 << 10, onFull: 'evict' }),
    openStore(path.join(dir, 'e.kv'), { maxBytes: 512 << 10, onFull: 'evict' }),
  ];
  for (const store of stores) {
    let i = 0;
    for (let written = 0; written < 10 * (512 << 10); i++) {
      const v = value(i);
      written += v.pad.length + 20;
      store.set(`k${i}`, v);
    }
    const st = store.stats();
    assert.ok(st.bufferBytes <= 512 << 10 && st.bytesReserved <= 512 << 10, JSON.stringify(st));
    assert.ok(st.evictions > 0, 'it evicted');
    assert.deepEqual(store.get(`k${i - 1}`), value(i - 1), 'the latest write is there');
    assert.equal(store.check().entries, st.entries);
  }
  const capped = createStore('evict:entries', { onFull: 'evict', maxEntries: 500 });
  for (let i = 0; i < 5000; i++) {
    capped.set(`k${i}`, value(i));
    assert.ok(capped.size <= 500);
  }
  assert.equal(capped.stats().evictions, 4500);
  assert.equal(capped.check().entries, 500);
  fs.rmSync(dir, { recursive: true, force: true });
});

test('keys a worker reads (from its own read cache too) survive while another thread writes cold keys', async () => {
  const name = 'evict:hot';
  const store = createStore(name, { onFull: 'evict', maxEntries: 300 });
  for (let i = 0; i < 20; i++) store.set(`hot${i}`, { hot: i });
  // [stop, passes]: the worker counts its passes over the hot keys.
  const shared = new Int32Array(new SharedArrayBuffer(8));
  const w = worker(`
    const store = kv.createStore(${JSON.stringify(name)});
    const shared = new Int32Array(workerData);
    let reads = 0, missing = 0;
    parentPort.postMessage('reading');
    while (Atomics.load(shared, 0) === 0) {
      for (let i = 0; i < 20; i++, reads++) if (store.get('hot' + i) === undefined) missing++;
      Atomics.add(shared, 1, 1);
    }
    parentPort.postMessage({ reads, missing, cacheHits: store.stats().hits });
  `, { workerData: shared.buffer });
  await once(w, 'message');
  // 13 times the capacity in cold keys. After every 20 (every 20 evictions) the writer waits
  // until the worker has made 30 more passes (600 reads: it hands its reads over every 512, with
  // the writer lock free), so the hot keys are marked between any two passes of the hand
  // whatever the machine's load: counted, not timed (a timed pause failed under load).
  for (let i = 0; i < 4000; i++) {
    store.set(`cold${i}`, value(i));
    if (i % 20 === 19) {
      const target = Atomics.load(shared, 1) + 30;
      while (Atomics.load(shared, 1) < target) await new Promise((r) => setTimeout(r, 1));
    }
  }
  Atomics.store(shared, 0, 1);
  const [{ reads, missing, cacheHits }] = await once(w, 'message');
  assert.ok(store.stats().evictions >= 3700, JSON.stringify(store.stats()));
  assert.ok(cacheHits > reads / 2, `most reads came from the worker's read cache: ${cacheHits} of ${reads}`);
  for (let i = 0; i < 20; i++) assert.deepEqual(store.get(`hot${i}`), { hot: i }, `hot${i} survived (${reads} reads, ${missing} missing, ${JSON.stringify(store.stats())})`);
  assert.equal(missing, 0);
  store.check();
});

test('TTL and eviction together: expired entries go first, entries in use survive; stats count both', async () => {
  const store = createStore('evict:ttl', { onFull: 'evict', maxEntries: 100 });
  for (let i = 0; i < 50; i++) store.set(`t${i}`, i, { ttl: 0.02 });
  for (let i = 0; i < 50; i++) store.set(`live${i}`, i);
  await new Promise((r) => setTimeout(r, 40));
  for (let i = 0; i < 50; i++) {
    if (i % 5 === 0) for (let j = 0; j < 50; j++) assert.equal(store.get(`live${j}`), j, 'in use: kept');
    store.set(`new${i}`, i);
  }
  const st = store.stats();
  assert.equal(st.expired + st.evictions, 50, JSON.stringify(st));
  // The hand looks a few dozen entries past its victim for an expired one: most go first.
  assert.ok(st.expired >= 45, JSON.stringify(st));
  for (let i = 0; i < 50; i++) assert.equal(store.get(`live${i}`), i);
});

test('onFull: throw (the default) refuses past maxEntries with ERR_KV_FULL and changes nothing; bad options', () => {
  const store = createStore('evict:throw', { maxEntries: 3 });
  for (let i = 0; i < 3; i++) store.set(`k${i}`, i);
  assert.throws(() => store.set('k3', 3), { name: 'RangeError', code: 'ERR_KV_FULL' });
  store.set('k0', 'overwrite');
  assert.equal(store.size, 3);
  assert.equal(store.get('k3'), undefined);
  assert.throws(() => createStore('evict:bad1', { onFull: 'drop' }), TypeError);
  assert.throws(() => createStore('evict:bad2', { maxEntries: -1 }), RangeError);
  assert.throws(() => createManager({ onFull: 'lru' }), TypeError);
});

test('the native codec marks its reads too', () => {
  const store = createStore('evict:native', { onFull: 'evict', maxEntries: 200, codec: 'native' });
  for (let i = 0; i < 20; i++) store.set(`hot${i}`, i);
  for (let round = 0; round < 40; round++) {
    for (let r = 0; r < 30; r++) for (let i = 0; i < 20; i++) assert.equal(store.get(`hot${i}`), i);
    for (let i = 0; i < 100; i++) store.set(`cold${round}:${i}`, i);
  }
  for (let i = 0; i < 20; i++) assert.equal(store.get(`hot${i}`), i, `hot${i} survived`);
});

test('the native codec hands the mark of a read over before the next set, not after 128 reads', () => {
  // One read of the hot key per 50 cold writes into 200 entries: the hand passes every entry
  // each 4 rounds, so a mark held back for a batch of 128 reads would come too late.
  const store = createStore('evict:native-lag', { onFull: 'evict', maxEntries: 200, codec: 'native' });
  store.set('hot', 1);
  for (let round = 0; round < 100; round++) {
    assert.equal(store.get('hot'), 1, `hot in round ${round}`);
    for (let i = 0; i < 50; i++) store.set(`c${round}:${i}`, i);
  }
  assert.ok(store.stats().evictions >= 4000);
});

test('a full evicting store never refuses a small write, and a large value gets in or is refused with nothing evicted', (t) => {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-evict-'));
  t.after(() => fs.rmSync(dir, { recursive: true, force: true }));
  // Tiny entries: the index is a large share of a 256 KiB store and must sometimes give way.
  for (const [i, store] of [
    createStore('evict:tiny', { maxBytes: 256 << 10, onFull: 'evict' }),
    openStore(path.join(dir, 'tiny.kv'), { maxBytes: 256 << 10, onFull: 'evict' }),
  ].entries()) {
    for (let k = 0; k < 30_000; k++) store.set(`f${k}`, 'x'.repeat(10)); // throws if refused
    assert.ok(store.stats().evictions > 0 && store.stats().entries > 0, `store ${i}`);
    store.check(); // throws ERR_KV_CORRUPTED if anything is off
    if (i === 1) store.close();
  }
  let refused = 0;
  for (let round = 0; round < 6; round++) {
    const max = 1 << 20;
    const store = createStore(`evict:large${round}`, { maxBytes: max, onFull: 'evict' });
    for (let k = 0; k < 30_000; k++) store.set(`f${k}`, 'x'.repeat(50));
    const before = store.stats();
    try {
      store.set('big', Buffer.alloc(max / 2 - 8)); // within half of maxBytes: not refused at once
      assert.equal(store.get('big').length, max / 2 - 8);
    } catch (e) {
      refused++;
      assert.equal(e.code, 'ERR_KV_FULL');
      assert.match(e.message, /longest stretch eviction can free is \d+ bytes/);
      const after = store.stats();
      assert.deepEqual([after.entries, after.evictions], [before.entries, before.evictions], 'nothing evicted');
    }
    assert.throws(() => store.set('huge', Buffer.alloc(max / 2 + 1)), { code: 'ERR_KV_FULL' });
    store.check(); // throws ERR_KV_CORRUPTED if anything is off
  }
  console.log(`# half of maxBytes refused in ${refused} of 6 layouts`);
});
