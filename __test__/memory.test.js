'use strict';
// Memory that never strands (issue 16): freed space serves any later size, in every kind of
// store, and an evicting store whose value sizes drift stays full of live data.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createManager, createStore, openStore } = require('..');
const { rng } = require('./helpers');

const MAX = 8 << 20;
const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-memory-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));

let made = 0;
const kinds = {
  thread: (opts) => createManager({ maxBytes: MAX, ...opts }).store,
  named: (opts) => createStore(`memory:${made++}`, { maxBytes: MAX, ...opts }),
  file: (opts) => openStore(path.join(dir, `${made++}.kv`), { maxBytes: MAX, ...opts }),
};

/** Sets `prefix<i>` to `size`-byte values until the store is full; how many fit. */
function fill(store, prefix, size) {
  const v = Buffer.alloc(size, 7);
  for (let n = 0; ; n++) {
    try {
      store.set(`${prefix}${n}`, v);
    } catch (e) {
      assert.equal(e.code, 'ERR_KV_FULL', e.message);
      return n;
    }
  }
}

function empty(store, prefix, n) {
  for (let i = 0; i < n; i++) assert.equal(store.delete(`${prefix}${i}`), true);
}

for (const [kind, make] of Object.entries(kinds)) {
  test(`${kind} store: emptied of one size, it holds >= 90% of what a fresh one holds of another`, () => {
    for (const [before, after] of [[3000, 40_000], [40_000, 700], [700, 200_000]]) {
      const fresh = fill(make(), 'f', after);
      const store = make();
      empty(store, 'a', fill(store, 'a', before));
      const n = fill(store, 'b', after);
      assert.ok(n >= fresh * 0.9, `after ${before}-byte values ${n} of ${after} bytes fit; a fresh store holds ${fresh}`);
      store.check();
      empty(store, 'b', n);
      const c = store.check();
      assert.equal(c.entries, 0);
    }
  });
}

test('an evicting store whose value sizes drift refuses nothing and stays >= 90% live data', () => {
  const store = kinds.thread({ onFull: 'evict' });
  const random = rng(7);
  for (const size of [100, 3000, 40_000, 700, 200_000, 10_000]) {
    const v = Buffer.alloc(size, size & 255);
    const sets = Math.min(20_000, Math.max(2000, Math.floor((3 * MAX) / size)));
    for (let i = 0; i < sets; i++) store.set(`key${Math.floor(random() * 20_000)}`, v); // throws if refused
    let live = 0;
    for (const [key, value] of store.entries()) live += key.length + value.length;
    const share = live / MAX;
    if (size >= 1000) assert.ok(share >= 0.9, `${size}-byte values: ${(share * 100).toFixed(1)}% of maxBytes is live data`);
    store.check();
  }
  assert.ok(store.stats().evictions > 0);
});
