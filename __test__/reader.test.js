'use strict';
// lib/reader.js reads the shared index from JS; these check it against the native reader.
const test = require('node:test');
const assert = require('node:assert/strict');
const native = require('../binding.js');
const { createManager, codec } = require('..');
const { Reader, hashAscii, startSlot, HIT, MISS, FALLBACK } = require('../lib/reader');
const { worker, exited, rng } = require('./helpers');

function setup(options) {
  const manager = createManager(options);
  const att = native.attach(manager.handle.buffer);
  const reader = new Reader(manager.handle.buffer, native.layout(), native.hashSeed(att.id));
  const scratch = Buffer.alloc(1 << 20);
  const version = new Uint32Array(5);
  const nativeRead = (key) => {
    const n = native.get(att.id, key, scratch, version);
    return n < 0 ? MISS : codec.decode(scratch, 0, n);
  };
  return { manager, att, reader, nativeRead };
}

test('the JS hash is the core hash for ASCII keys', () => {
  const { att, reader } = setup();
  const r = rng(11);
  for (let i = 0; i < 5000; i++) {
    const key = Array.from({ length: Math.floor(r() * 70) }, () => String.fromCharCode(Math.floor(r() * 128))).join('');
    assert.equal(hashAscii(key, reader.seed), native.hashKey(att.id, key), JSON.stringify(key));
  }
  assert.equal(hashAscii('caf\u00e9', reader.seed), -1, 'non-ASCII keys go to the native reader');
});

test('the first probe slot is exactly floor(hash * cap / 2^32), as in the core', () => {
  const r = rng(3);
  for (let i = 0; i < 20_000; i++) {
    const h = Math.floor(r() * 2 ** 32);
    const cap = 1 + Math.floor(r() * 2 ** (1 + Math.floor(r() * 31)));
    assert.equal(startSlot(h, cap), Number((BigInt(h) * BigInt(cap)) >> 32n), `${h} ${cap}`);
  }
  assert.equal(startSlot(2 ** 32 - 1, 2 ** 31), 2 ** 31 - 1);
});

test('the JS reader agrees with the native reader through sets, deletes, rebuilds and growth', () => {
  const { manager, reader, nativeRead } = setup({ maxBytes: 256 * 1024 * 1024 });
  const { store } = manager;
  const r = rng(5);
  const keyOf = (i) => (i % 97 === 0 ? `clé-${i}` : i % 89 === 0 ? 'long'.repeat(300) + i : `key:${i}`);
  for (let round = 0; round < 30; round++) {
    for (let op = 0; op < 1000; op++) {
      const key = keyOf(Math.floor(r() * 3000));
      if (r() < 0.3) store.delete(key);
      else {
        // Mostly small values; some near the 64 KiB boundary between short and long block headers.
        const size = r() < 0.01 ? 60_000 + Math.floor(r() * 10_000) : Math.floor(r() * (round % 5 === 0 ? 5000 : 50));
        store.set(key, { round, op, pad: 'p'.repeat(size) }, r() < 0.1);
      }
    }
    for (let i = 0; i < 3000; i++) {
      const key = keyOf(i);
      const expected = nativeRead(key);
      const got = reader.read(key);
      if (got === FALLBACK) {
        assert.ok(/[^\x00-\x7f]/.test(key) || key.length > 1024, `unexpected fallback for ${key}`);
        continue;
      }
      if (expected === MISS) assert.equal(got, MISS, key);
      else {
        assert.equal(got, HIT, key);
        assert.deepStrictEqual(reader.value, expected, key);
      }
    }
  }
  assert.ok(store.stats().bufferBytes > 1024 * 1024, 'the buffer grew during the test');
});

test('keys that exist throughout are never missed while another thread churns the index', async () => {
  const { manager, reader } = setup();
  const { store } = manager;
  for (let i = 0; i < 100; i++) store.set(`stable:${i}`, i);
  let direct = 0, fallbacks = 0;
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    for (let round = 0; Atomics.load(workerData.stop, 0) === 0; round++) {
      for (let i = 0; i < 2000; i++) store.set('churn:' + round + ':' + i, i); // index rebuilds
      for (let i = 0; i < 2000; i++) store.delete('churn:' + round + ':' + i); // tombstones
    }
  `, { workerData: { kv: manager.handle, stop } });
  let reads = 0, missed = 0, wrong = 0;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    for (let k = 0; k < 1000; k++, reads++) {
      const i = k % 100;
      const v = store.get(`stable:${i}`); // mostly the read cache
      if (v === undefined) missed++;
      else if (v !== i) wrong++;
      const r = reader.read(`stable:${i}`); // always a probe of the shared index
      if (r === MISS) missed++;
      else if (r === HIT) { direct++; if (reader.value !== i) wrong++; } else fallbacks++;
    }
    await new Promise((res) => setImmediate(res));
  }
  Atomics.store(stop, 0, 1);
  await exited(w);
  assert.ok(reads > 10_000);
  assert.ok(direct > reads / 2, `${direct} direct reads, ${fallbacks} fallbacks`);
  assert.equal(missed, 0, `${missed} false misses in ${reads} reads`);
  assert.equal(wrong, 0);
});
