'use strict';
// `node benchmark/window.js`: the cost of a get past a store's first 4 GiB (the native reader)
// against one inside it (the JS reader). Two store files of 4.25 GiB in the OS temp directory
// (sparse; ~4 GiB reserved on disk by the padding entry of the second), removed at the end.
// Every key is rewritten between rounds, so every read is the first of its version and none is
// served by the read cache. Prints the median of 7 rounds of 20,000 gets for each, twice.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const kv = require('..');

const N = 20000;
const ROUNDS = 7;

function rewrite(store, keys) {
  for (let i = 0; i < N; i++) store.set(keys[i], { i, s: 'value' + i });
}

function median(store) {
  const keys = Array.from({ length: N }, (_, i) => 'k' + i);
  rewrite(store, keys);
  const times = [];
  for (let r = 0; r < ROUNDS; r++) {
    const t0 = process.hrtime.bigint();
    let sum = 0;
    for (let i = 0; i < N; i++) sum += store.get(keys[i]).i;
    times.push(Number(process.hrtime.bigint() - t0) / N);
    if (sum !== (N * (N - 1)) / 2) throw new Error('wrong values read');
    rewrite(store, keys);
  }
  return times.sort((a, b) => a - b)[ROUNDS >> 1];
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-window-'));
try {
  const inside = kv.openStore(path.join(dir, 'inside.kv'), { maxBytes: 2 ** 32 + 2 ** 28 });
  const past = kv.openStore(path.join(dir, 'past.kv'), { maxBytes: 2 ** 32 + 2 ** 28 });
  past.set('pad', 'x', { minBufferSize: 2 ** 32 - 1 }); // everything after it lies past 4 GiB
  for (let run = 0; run < 2; run++) {
    const a = median(inside);
    const b = median(past);
    console.log(`get inside 4 GiB ${a.toFixed(1)} ns, past 4 GiB ${b.toFixed(1)} ns: ${(b / a).toFixed(2)}x`);
  }
} finally {
  fs.rmSync(dir, { recursive: true, force: true });
}
