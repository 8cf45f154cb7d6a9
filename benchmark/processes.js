'use strict';
// Cross-process scenarios for benchmark/run.js: a store file shared by processes against the
// same in threads, against Redis on localhost, and against lmdb-js opened by two processes.
// Each value is written by another process (or thread) and each timed get is its first read
// here, so nothing comes from this process's read cache.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { redisInstalled, startRedis } = require('../__test__/redis');
const { Worker } = require('node:worker_threads');
const { pack, unpack } = require('msgpackr');
const { createManager, openStore } = require('..');

const PKG = path.join(__dirname, '..');
const N = 50_000; // timed keys; as many again for warm-up
const seedLike = (i) => ({ id: i, name: `user${i}`, tags: ['a', 'b'] });
const tmp = () => fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-bench-'));

/** ns per op of fn(i) over n calls, warmed up on warm(i) first. */
function nsPerOp(n, fn, warm) {
  let sink;
  for (let i = 0; i < n; i++) sink = warm(i);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink = fn(i);
  const ns = Number(process.hrtime.bigint() - t) / n;
  if (sink === undefined) throw new Error('benchmark produced undefined');
  return ns;
}

/** The writer's code: keys k0.. and warm keys w0.. with seed-like values. */
const WRITE = `for (let i = 0; i < ${N}; i++) { store.set('k' + i, { id: i, name: 'user' + i, tags: ['a', 'b'] }); store.set('w' + i, { id: i, name: 'user' + i, tags: ['a', 'b'] }); }`;

/** get and set of values another thread wrote (SharedArrayBuffer store) vs another process (store file). */
async function crossProcess() {
  const { store: threads, handle } = createManager({ maxBytes: 256 << 20 });
  const w = new Worker(`const store = require(${JSON.stringify(PKG)}).createStore(require('node:worker_threads').workerData); ${WRITE}`, { eval: true, workerData: handle });
  await new Promise((r) => w.once('exit', r));
  const dir = tmp();
  const file = path.join(dir, 'bench.kv');
  const r = spawnSync(process.execPath, ['-e', `const store = require(${JSON.stringify(PKG)}).openStore(${JSON.stringify(file)}, { maxBytes: 256 << 20 }); ${WRITE}`]);
  if (r.status !== 0) throw new Error(String(r.stderr));
  const processes = openStore(file);
  const get = (s) => nsPerOp(N, (i) => s.get(`k${i}`), (i) => s.get(`w${i}`));
  const set = (s) => nsPerOp(N, (i) => s.set(`k${i}`, seedLike(i + 1)), (i) => s.set(`w${i}`, seedLike(i + 1)));
  const metrics = { threadGet: get(threads), processGet: get(processes), threadSet: set(threads), processSet: set(processes) };
  fs.rmSync(dir, { recursive: true, force: true });
  return metrics;
}

/** Redis on localhost (a baseline only): awaited and pipelined GET/SET of msgpack values. */
async function redis() {
  if (!redisInstalled()) return { skipped: 1 };
  const { client, stop } = await startRedis();
  try {
    const M = 10_000;
    const awaited = async (fn) => {
      for (let i = 0; i < 1000; i++) await fn(i);
      const t = process.hrtime.bigint();
      for (let i = 0; i < M; i++) await fn(i);
      return Number(process.hrtime.bigint() - t) / M;
    };
    const pipelined = async (add) => {
      const BATCH = 1000;
      const t = process.hrtime.bigint();
      for (let b = 0; b < M * 5; b += BATCH) {
        const p = client.pipeline();
        for (let i = b; i < b + BATCH; i++) add(p, i);
        const res = await p.exec();
        if (res.length !== BATCH) throw new Error('pipeline lost replies');
      }
      return Number(process.hrtime.bigint() - t) / (M * 5);
    };
    const setNs = await awaited((i) => client.set(`k${i}`, pack(seedLike(i))));
    const getNs = await awaited(async (i) => unpack(await client.getBuffer(`k${i}`)));
    const pipeSetNs = await pipelined((p, i) => p.set(`k${i % M}`, pack(seedLike(i))));
    const pipeGetNs = await pipelined((p, i) => p.getBuffer(`k${i % M}`));
    return { getNs, setNs, pipeGetNs, pipeSetNs };
  } finally {
    stop();
  }
}

/** lmdb-js opened by two processes: one writes, the other reads each key once and overwrites it. */
function lmdbProcesses() {
  const dir = tmp();
  const opening = `const { open } = require("lmdb"); const db = open({ path: ${JSON.stringify(dir)}, noSync: true });`;
  const r = spawnSync(process.execPath, ['-e', `${opening} for (let i = 0; i < ${N}; i++) { db.putSync('k' + i, { id: i, name: 'user' + i, tags: ['a', 'b'] }); db.putSync('w' + i, { id: i, name: 'user' + i, tags: ['a', 'b'] }); } db.close();`], { cwd: PKG });
  if (r.status !== 0) throw new Error(String(r.stderr));
  const { open } = require('lmdb');
  const db = open({ path: dir, noSync: true });
  const metrics = {
    get: nsPerOp(N, (i) => db.get(`k${i}`), (i) => db.get(`w${i}`)),
    setSync: nsPerOp(N / 5, (i) => db.putSync(`k${i}`, seedLike(i + 1)), (i) => db.putSync(`w${i}`, seedLike(i + 1))),
  };
  db.close();
  fs.rmSync(dir, { recursive: true, force: true });
  return metrics;
}

/**
 * The cost of one dependent DRAM miss: a walk of a random single-cycle permutation of 64 MiB
 * (Sattolo's shuffle), each step one load that depends on the last.
 */
function dramMissNs(bytes = 64 << 20) {
  const n = Math.floor(bytes / 4);
  const next = new Uint32Array(n);
  for (let i = 0; i < n; i++) next[i] = i;
  let seed = 12345;
  const rand = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 4294967296);
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rand() * i);
    const t = next[i];
    next[i] = next[j];
    next[j] = t;
  }
  let p = 0;
  for (let i = 0; i < 200_000; i++) p = next[p];
  const STEPS = 2_000_000;
  const t = process.hrtime.bigint();
  for (let i = 0; i < STEPS; i++) p = next[p];
  const ns = Number(process.hrtime.bigint() - t) / STEPS;
  if (p === -1) throw new Error('unreachable');
  return ns;
}

/** All of them in one process, so that every ratio compares numbers from the same run. */
async function processes() {
  const store = await crossProcess();
  const lmdb = lmdbProcesses();
  const r = await redis();
  return {
    ...store,
    lmdbGet: lmdb.get,
    lmdbPutSync: lmdb.setSync,
    ...(r.skipped ? { redisSkipped: 1 } : { redisGet: r.getNs, redisSet: r.setNs, redisPipeGet: r.pipeGetNs, redisPipeSet: r.pipeSetNs }),
  };
}

module.exports = { processes, dramMissNs };
