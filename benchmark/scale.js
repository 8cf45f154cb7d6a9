'use strict';
// 100 million keys, for benchmark/run.js (long: not in the default run; see the README):
//   node benchmark/run.js --only scale-100m --runs 1        (SKV_BENCH_SCALE_KEYS=N for fewer)
// - fill: N sets of small entries (`key:<i>` -> { i }) into a store file growing from empty;
// - get and set at N keys, each of a key not touched since the fill (so neither the read cache
//   nor the CPU caches hold it), against the same at 1k keys plus two DRAM misses (the index
//   slot, then the entry's block), the floor a random access to a large table cannot beat:
//   measured by a pointer chase over 64 MiB (as the 1M-key row), and where they happen: the
//   slot's word and the block's first word of each key, loaded at the store file's own
//   addresses and nothing else, at N keys less at 1k keys (examples/scale_probe.rs, run on
//   the filled file through cargo; skipped where cargo is missing). Random loads into this
//   file's memory cost more than a chase over anonymous memory of the same size measures;
// - bytes per entry (stats().bytesUsed / N, index included) against the raw bytes, and against
//   Redis holding the same keys and values (used_memory grown by the fill / N). Redis comes
//   from the OS packages (skipped where missing) and is filled through `redis-cli --pipe`.
// Needs about 6 GB of /dev/shm for the store, then ~11 GB of memory for Redis (one at a time).
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn, spawnSync } = require('node:child_process');
const { pack } = require('msgpackr');
const { openStore } = require('..');
const { redisInstalled, startRedis } = require('../__test__/redis');
const { dramMissNs } = require('./processes');

const N = Number(process.env.SKV_BENCH_SCALE_KEYS ?? 100_000_000);
const OPS = 200_000;

/** The value stored for key i, as bytes: `{ i }` packed by msgpackr, as the 1M-key scale row counts it. */
const valueOf = (i) => pack({ i });

/** The keys touched by the timed passes: spread over the whole store, none twice. */
const spread = (n, count, salt) => (i) => `key:${(i * 48271 + salt) % n}`;

/** ns per get and per set of `count` keys of `store` (holding `n`), as the header says. */
function access(store, n, count, salt = 0) {
  const gets = spread(n, count, salt);
  const sets = spread(n, count, salt + 7);
  if (n < 100_000) {
    // A small store stays in the CPU caches: each timed get reads a version written since
    // the last pass (untimed), so that the read cache does not serve it.
    for (let i = 0; i < count; i++) store.set(gets(i), { i, v: 1 });
  }
  let sink;
  let t = process.hrtime.bigint();
  for (let i = 0; i < count; i++) sink = store.get(gets(i));
  const get = Number(process.hrtime.bigint() - t) / count;
  t = process.hrtime.bigint();
  for (let i = 0; i < count; i++) store.set(sets(i), { i: i + 1 });
  const set = Number(process.hrtime.bigint() - t) / count;
  if (sink === undefined) throw new Error('read nothing');
  return { get, set };
}

async function scale100m() {
  // SKV_BENCH_DIR: where the store files go (default /dev/shm), e.g. a tmpfs mounted with
  // huge=within_size, whose huge pages spare a large store most of its TLB misses.
  const dir = fs.mkdtempSync(path.join(process.env.SKV_BENCH_DIR ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir()), 'skv-scale-'));
  const metrics = { keys: N };
  try {
    // The baseline first, at 1k keys, in a store file of its own (JIT warmed on it).
    const small = openStore(path.join(dir, 'small.kv'), { maxBytes: 64 << 20 });
    for (let i = 0; i < 1000; i++) small.set(`key:${i}`, { i });
    for (let w = 0; w < 10; w++) access(small, 1000, 1000);
    const base = { get: [], set: [] };
    for (let w = 0; w < 20; w++) {
      const r = access(small, 1000, OPS / 20);
      base.get.push(r.get);
      base.set.push(r.set);
    }
    const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];
    metrics.get1k = median(base.get);
    metrics.set1k = median(base.set);
    small.close();

    const store = openStore(path.join(dir, 'big.kv'), { maxBytes: Math.min(2 ** 40, Math.max(1 << 30, N * 128)) });
    let raw = 0;
    const t = process.hrtime.bigint();
    for (let i = 0; i < N; i++) {
      const key = `key:${i}`;
      store.set(key, { i });
      raw += key.length + valueOf(i).length;
    }
    metrics.fillSeconds = Number(process.hrtime.bigint() - t) / 1e9;
    metrics.rawBytes = raw;
    // A growth the fill started may be under way: timed apart (each write moves a slice of
    // it), then finished by overwrites of keys the timed passes do not touch.
    if (store.stats().growing) {
      const during = access(store, N, OPS / 4, 3);
      metrics.getGrowing = during.get;
      metrics.setGrowing = during.set;
      for (let i = 0; store.stats().growing; i++) store.set(`key:${i}`, { i });
    }
    metrics.usedBytes = store.stats().bytesUsed;
    const big = access(store, N, OPS);
    metrics.getN = big.get;
    metrics.setN = big.set;
    store.close();
    Object.assign(metrics, rawLoads(path.join(dir, 'big.kv')));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  metrics.dramMissNs = dramMissNs();
  if (redisInstalled()) Object.assign(metrics, await redisBytes());
  else metrics.redisSkipped = 1;
  return metrics;
}

/**
 * The two loads a lookup cannot avoid, at the store file's own addresses: the core's probe
 * (examples/scale_probe.rs) on the file just filled, at N keys and at 1k keys.
 */
function rawLoads(file) {
  const root = path.join(__dirname, '..');
  const r = spawnSync('cargo', ['run', '--quiet', '--release', '--no-default-features', '--example', 'scale_probe'], {
    cwd: root,
    env: { ...process.env, SKV_PROBE_FILE: file, N: String(N) },
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  try {
    if (r.error) throw r.error;
    if (r.status !== 0) throw new Error(`exit ${r.status ?? r.signal}`);
    return JSON.parse(r.stdout.trim().split('\n').pop());
  } catch (e) {
    console.error(`# the probe of the store's loads did not run: ${e.message}`);
    return { rawLoadsSkipped: 1 };
  }
}

/** Redis's used_memory grown by the same N keys and values, per key. */
async function redisBytes() {
  const redis = await startRedis();
  try {
    const usedMemory = async () => Number(/used_memory:(\d+)/.exec(await redis.client.info('memory'))[1]);
    const before = await usedMemory();
    const pipe = spawn('redis-cli', ['-p', String(redis.port), '--pipe'], { stdio: ['pipe', 'ignore', 'inherit'] });
    const exited = new Promise((resolve) => pipe.once('exit', resolve));
    const chunk = Buffer.alloc(1 << 20);
    for (let i = 0; i < N;) {
      let off = 0;
      for (; i < N && off < chunk.length - 128; i++) {
        const key = `key:${i}`;
        const value = valueOf(i);
        off += chunk.write(`*3\r\n$3\r\nSET\r\n$${key.length}\r\n${key}\r\n$${value.length}\r\n`, off, 'latin1');
        off += value.copy(chunk, off);
        off += chunk.write('\r\n', off, 'latin1');
      }
      if (!pipe.stdin.write(Buffer.from(chunk.subarray(0, off)))) await new Promise((r) => pipe.stdin.once('drain', r));
    }
    pipe.stdin.end();
    if ((await exited) !== 0) throw new Error('redis-cli --pipe failed');
    const keys = await redis.client.dbsize();
    if (keys !== N) throw new Error(`Redis holds ${keys} keys, not ${N}`);
    return { redisBytesPerKey: ((await usedMemory()) - before) / N };
  } finally {
    redis.stop();
  }
}

module.exports = { scenarios: { 'scale-100m': scale100m }, LONG: ['scale-100m'] };
