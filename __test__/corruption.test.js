'use strict';
// The shared memory is writable from JS. Overwrite random bytes of each area and run every
// operation (through the JS reader, the cache and the native paths): each must work or throw
// an Error, never crash the process, hang, or allocate without bound. Runs in a child process
// so that a crash would fail this test instead of the runner.
const test = require('node:test');
const assert = require('node:assert/strict');
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const script = `
const { createManager, createStore } = require(${JSON.stringify(path.join(__dirname, '..'))});
const native = require(${JSON.stringify(path.join(__dirname, '..', 'binding.js'))});
let seed = 12345;
const rand = (n) => { seed = (seed * 1103515245 + 12345) >>> 0; return seed % n; };
// 'locks': the entries of lock() leases (the writer lock word has a test of its own below: a
// forged one makes each write wait out the 10 s lock timeout).
const areas = { header: [0, 4096], index: [4096, 4096 + 12000], arena: [4096 + 12000, 600000], locks: undefined };
const outcomes = { ok: 0, errors: 0 };
const messages = new Set();
for (const [area, [lo, hi] = []] of Object.entries(areas)) {
  for (let round = 0; round < 40; round++) {
    const manager = createManager({ maxBytes: 8 * 1024 * 1024 });
    const store = manager.store;
    const other = createStore(manager.handle, { codec: 'native' });
    for (let i = 0; i < 400; i++) store.set('key' + i, i % 3 ? { i, s: 'v'.repeat(i % 40) } : i);
    for (let i = 0; i < 50; i++) store.get('key' + i), store.get('key' + i); // some cached
    for (let i = 0; i < 20; i++) store.lock('key' + i);
    const bytes = new Uint8Array(manager.handle.buffer);
    if (area === 'locks') {
      const buf = Buffer.from(bytes.buffer);
      const at = [];
      for (let i = buf.indexOf('\\0lock\\0'); i >= 0; i = buf.indexOf('\\0lock\\0', i + 1)) at.push(i);
      for (let k = 1 + rand(40); k > 0; k--) bytes[at[rand(at.length)] - 8 + rand(40)] = rand(256);
    } else {
      for (let k = 1 + rand(40); k > 0; k--) bytes[lo + rand(hi - lo)] = rand(256);
    }
    const ops = [
      (k) => store.get(k), (k) => other.get(k), (k) => store.set(k, { x: 1 }), (k) => other.set(k, [1, 2]),
      (k) => store.delete(k), (k) => store.has(k), (k) => store.increment('n'), (k) => store.compareAndSet(k, undefined, 1),
      (k) => store.update(k, (v) => v), () => [...store.keys()].length, () => store.size, () => store.stats(),
      (k) => store.lock(k, 0), (k) => store.release(k), () => store.check(), () => store.clear(),
      (k) => store.set(k, 'x', { ttl: 50 }), (k) => other.set(k, 'y', { immutable: true }), () => store.listKeys('key1*'),
      (k) => store.getMany([k, 'key1']), (k) => store.setMany([[k, 1], ['key2', 2]]), () => [...other.values()].length,
      (k) => store.delete('key3*'),
    ];
    for (let j = 0; j < 60; j++) {
      const key = 'key' + rand(450);
      try { ops[rand(ops.length)](key); outcomes.ok++; } catch (e) {
        if (!(e instanceof Error)) throw new Error('threw a non-Error: ' + String(e));
        outcomes.errors++; messages.add(e.code || e.name);
      }
    }
    store.close(); other.close();
  }
}
console.log(JSON.stringify({ outcomes, codes: [...messages] }));
`;

test('random bytes written into the header, index, arena or lock entries from JS: every operation returns or throws', () => {
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 240_000 });
  assert.equal(run.signal, null, `killed (${run.signal}): a hang or a crash`);
  assert.equal(run.status, 0, run.stderr);
  const { outcomes, codes } = JSON.parse(run.stdout.trim().split('\n').pop());
  assert.ok(outcomes.ok > 1000, JSON.stringify(outcomes));
  assert.ok(outcomes.errors > 0, 'corruption was noticed at least sometimes');
  for (const code of codes) assert.match(code, /^(ERR_KV_|TypeError|RangeError|Error)/, code);
});

/** Low and high u32 of a lock word naming process `pid` (layout: pid, start-time tag, thread). */
function holderWord(pid, thread) {
  const stat = require('node:fs').readFileSync(`/proc/${pid}/stat`, 'utf8');
  const start = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]);
  return [pid, (start & 0x7fff) | (thread << 15)];
}

test('a forged writer lock word naming a live process: reads go on, writes throw ERR_KV_TIMEOUT, not a hang', { skip: process.platform !== 'linux' }, () => {
  const { createManager } = require('..');
  const manager = createManager();
  const { store } = manager;
  store.set('a', 1);
  const words = new Uint32Array(manager.handle.buffer, 0, 8);
  const LOCK_WORD = 16 / 4; // layout.rs H_WRITE_LOCK (u64)
  const [lo, hi] = holderWord(1, 7); // "held" by init, which lives, and never releases
  Atomics.store(words, LOCK_WORD + 1, hi);
  Atomics.store(words, LOCK_WORD, lo);
  assert.equal(store.get('a'), 1);
  assert.throws(() => store.set('b', 2), { code: 'ERR_KV_TIMEOUT', message: /write lock.*corrupted/ });
  assert.equal(store.get('b'), undefined);
  Atomics.store(words, LOCK_WORD, 0);
  Atomics.store(words, LOCK_WORD + 1, 0);
  store.set('b', 2);
  assert.equal(store.check().entries, 2);
});

test('a writer lock word naming a dead process is taken over at once, and the store recovered', () => {
  const { createManager } = require('..');
  const manager = createManager();
  const { store } = manager;
  store.set('a', 1);
  const words = new Uint32Array(manager.handle.buffer, 0, 8);
  const LOCK_WORD = 16 / 4;
  Atomics.store(words, LOCK_WORD + 1, 0x7fff);
  Atomics.store(words, LOCK_WORD, 0x3ffffff0); // a pid no process has
  store.set('b', 2);
  assert.deepEqual([store.get('a'), store.get('b')], [1, 2]);
  assert.equal(store.stats().recoveries, 1);
  assert.equal(store.check().entries, 2);
});

test('update() of a value stored in a valid but non-canonical encoding succeeds (compares the bytes read)', () => {
  const { createManager } = require('..');
  const manager = createManager();
  const { store } = manager;
  store.set('unique-key-for-update', 300); // canonical: cd 01 2c (uint16)
  const bytes = new Uint8Array(manager.handle.buffer);
  const key = Buffer.from('unique-key-for-update');
  const at = Buffer.from(bytes.buffer).indexOf(Buffer.concat([key, Buffer.from([0xcd, 0x01, 0x2c])]));
  assert.ok(at > 0);
  bytes[at + key.length] = 0xd1; // int16 300: the same number, other bytes
  const other = require('..').createStore(manager.handle); // a thread that never cached it
  assert.equal(other.get('unique-key-for-update'), 300);
  assert.equal(other.update('unique-key-for-update', (v) => v + 1), 301);
  assert.equal(store.get('unique-key-for-update'), 301);
});
