'use strict';
// The growth stall, for benchmark/run.js: how long a set waits while the index grows under it
// (rehash.rs moves the old table a slice per write, so no set should pay for a whole rebuild).
//  - `fill`: N sets of new keys into a store file growing from empty, each timed;
//  - `steady`: the same N sets again, now overwrites of keys the store holds: the index is at
//    its final size, and no growth runs (the baseline: what a set costs without one);
//  - `other`: the sets of another process into the same file, through both phases (each phase
//    meets the same contention), timed apart.
// Reported: the slowest set and p99.99 of each, and the fill against the steady sets.
//   SKV_BENCH_GROWTH_KEYS=20000000 npm run bench -- --only growth   (the 20M keys;
//   default 2M, as a 20M run takes minutes and ~2 GB of /dev/shm per process)
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { openStore } = require('..');

const N = Number(process.env.SKV_BENCH_GROWTH_KEYS ?? 2_000_000);

/** Times `fn(i)` for i in [0, n): the latencies in ns. */
function timed(n, fn) {
  const ns = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    fn(i);
    ns[i] = Number(process.hrtime.bigint() - t);
  }
  return ns;
}

function tail(ns) {
  const sorted = Float64Array.from(ns).sort();
  return {
    max: sorted[sorted.length - 1],
    p9999: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9999))],
    p50: sorted[sorted.length >> 1],
  };
}

async function growth() {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-growth-'));
  const file = path.join(dir, 'growth.kv');
  try {
    const store = openStore(file, { maxBytes: Math.min(2 ** 32, Math.max(64 << 20, N * 160)) });
    // Another process sets one key in a loop, timing each, through both phases (so that
    // both meet the same contention), until told the steady phase is over.
    const other = spawn(process.execPath, ['-e', `
      const s = require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)});
      const ns = { 1: [], 2: [] };
      const parent = process.ppid;
      process.stdout.write('ready\\n');
      for (let i = 0, phase = 1; phase !== 3 && process.ppid === parent; i++) {
        const t = process.hrtime.bigint();
        s.set('other', i);
        ns[phase].push(Number(process.hrtime.bigint() - t));
        if (i % 64 === 0) phase = s.get('phase') ?? 1;
      }
      const tail = (xs) => (xs.sort((a, b) => a - b), { max: xs[xs.length - 1], p9999: xs[Math.floor(xs.length * 0.9999)], n: xs.length });
      process.stdout.write(JSON.stringify({ fill: tail(ns[1]), steady: tail(ns[2]) }) + '\\n');
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    other.stdout.on('data', (d) => (out += d));
    await new Promise((resolve) => other.stdout.once('data', resolve));
    const key = (i) => `key:${i}`;
    const fill = tail(timed(N, (i) => store.set(key(i), { i })));
    store.set('phase', 2);
    const steady = tail(timed(N, (i) => store.set(key(i), { i: i + 1 })));
    store.set('phase', 3);
    await new Promise((resolve) => other.once('exit', resolve));
    const others = JSON.parse(out.trim().split('\n').pop());
    store.close();
    return {
      keys: N,
      fillMax: fill.max, fillP9999: fill.p9999, fillP50: fill.p50,
      steadyMax: steady.max, steadyP9999: steady.p9999, steadyP50: steady.p50,
      otherMax: others.fill.max, otherP9999: others.fill.p9999, otherSets: others.fill.n,
      otherSteadyMax: others.steady.max, otherSteadyP9999: others.steady.p9999,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { scenarios: { growth } };
