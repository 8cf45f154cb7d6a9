'use strict';
// The growth stall, for benchmark/run.js: how long a set waits while the index grows under it
// (rehash.rs moves the old table a slice per write, so no set should pay for a whole rebuild).
//  - `growing`: N sets of new keys into a store file growing from empty, each timed;
//  - `sized`: the same N sets into a store file made with `expectedKeys: N`, whose index never
//    grows (the baseline: what those inserts cost without a growth). Its first key makes the
//    index, once; a set of another key before the timed ones pays for that;
//  - `other`: the sets of another process into the same file during each fill, timed apart.
// Reported: the slowest set and p99.99 of each fill, growing against sized.
//   SKV_BENCH_GROWTH_KEYS=20000000 npm run bench -- --only growth   (the 20M keys;
//   default 2M, as a 20M run takes minutes and ~2 GB of /dev/shm at a time)
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { openStore } = require('..');

const N = Number(process.env.SKV_BENCH_GROWTH_KEYS ?? 2_000_000);

function tail(ns) {
  const sorted = Float64Array.from(ns).sort();
  return {
    max: sorted[sorted.length - 1],
    p9999: sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * 0.9999))],
    p50: sorted[sorted.length >> 1],
  };
}

/** Another process setting one key of `file` in a loop, timing each set, until told to stop. */
async function contender(file) {
  const child = spawn(process.execPath, ['-e', `
    const s = require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)});
    const ns = [];
    const parent = process.ppid;
    process.stdout.write('ready\\n');
    for (let i = 0; process.ppid === parent; i++) {
      const t = process.hrtime.bigint();
      s.set('other', i);
      ns.push(Number(process.hrtime.bigint() - t));
      if (i % 64 === 0 && s.get('stop') === 1) break;
    }
    ns.sort((a, b) => a - b);
    process.stdout.write(JSON.stringify({ max: ns[ns.length - 1], p9999: ns[Math.floor(ns.length * 0.9999)], n: ns.length }) + '\\n');
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  await new Promise((resolve) => child.stdout.once('data', resolve));
  const exited = new Promise((resolve) => child.once('exit', resolve));
  return async () => {
    await exited;
    return JSON.parse(out.trim().split('\n').pop());
  };
}

/** N timed inserts into a new store file made with `options`, another process writing beside. */
async function fill(dir, name, options) {
  const file = path.join(dir, name);
  try {
    const store = openStore(file, { maxBytes: Math.min(2 ** 36, Math.max(64 << 20, N * 160)), ...options });
    store.set('warm', 0); // a sized store makes its index here
    const done = await contender(file);
    const ns = new Float64Array(N);
    for (let i = 0; i < N; i++) {
      const key = `key:${i}`;
      const t = process.hrtime.bigint();
      store.set(key, { i });
      ns[i] = Number(process.hrtime.bigint() - t);
    }
    store.set('stop', 1);
    const other = await done();
    const slots = store.stats().indexSlots;
    store.close();
    return { ...tail(ns), total: ns.reduce((a, b) => a + b, 0), other, slots };
  } finally {
    fs.rmSync(file, { force: true });
  }
}

async function growth() {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-growth-'));
  try {
    const growing = await fill(dir, 'growing.kv', {});
    const sized = await fill(dir, 'sized.kv', { expectedKeys: N });
    return {
      keys: N,
      fillMax: growing.max, fillP9999: growing.p9999, fillP50: growing.p50, fillTotal: growing.total,
      sizedMax: sized.max, sizedP9999: sized.p9999, sizedP50: sized.p50, sizedTotal: sized.total,
      otherMax: growing.other.max, otherP9999: growing.other.p9999, otherSets: growing.other.n,
      otherSizedMax: sized.other.max, otherSizedP9999: sized.other.p9999,
      growingSlots: growing.slots, sizedSlots: sized.slots,
    };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

module.exports = { scenarios: { growth } };
