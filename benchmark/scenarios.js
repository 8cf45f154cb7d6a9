'use strict';
// One benchmark scenario per process: `node benchmark/scenarios.js <name>` prints one JSON
// line { name, metrics } (ns per op unless the metric says otherwise). benchmark/run.js runs
// each in fresh processes and compares them. Every baseline is measured in the same process.
const path = require('node:path');
const os = require('node:os');
const fs = require('node:fs');
const { Worker } = require('node:worker_threads');
const { pack, unpack } = require('msgpackr');
const { createManager } = require('..');
const processes = require('./processes');
const cache = require('./cache');
const growth = require('./growth');
const drift = require('./drift');
const scale = require('./scale');
const near = require('./near');
const watch = require('./watch');

const MIB = 1024 * 1024;

/**
 * ns per op of `fn(i)` over `n` calls, after warming up on `warm(i)` (by default `fn`; cold
 * reads warm up on other keys, so that the timed reads are first reads).
 */
function nsPerOp(n, fn, warm = fn) {
  let sink;
  for (let i = 0; i < Math.min(n, 20_000); i++) sink = warm(i);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink = fn(i);
  const ns = Number(process.hrtime.bigint() - t) / n;
  if (sink === undefined) throw new Error('benchmark produced undefined');
  return ns;
}

function lmdb() {
  const { open } = require('lmdb');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-bench-'));
  const db = open({ path: dir, noSync: true });
  return { db, close: () => { db.close(); fs.rmSync(dir, { recursive: true, force: true }); } };
}

const seedLike = (i) => ({ id: i, name: `user${i}`, tags: ['a', 'b'] });
const kib = (i) => ({ id: i, text: 'k'.repeat(1000) });
const big = (i) => ({ id: i, rows: Array.from({ length: 1000 }, (_, r) => ({ r, s: 'row value ' + r, f: r / 3 })) });

/** Every key read exactly once: the store's cache never has the value (what "cold" means). */
function coldGet(makeValue, count, withLmdb) {
  const { store } = createManager({ maxBytes: 1024 * MIB });
  const map = new Map();
  const l = withLmdb ? lmdb() : undefined;
  const warmKeys = Math.min(count, 20_000);
  for (let i = 0; i < count + warmKeys; i++) {
    const key = i < count ? `k${i}` : `w${i - count}`;
    const v = makeValue(i);
    store.set(key, v);
    map.set(key, pack(v));
    l?.db.putSync(key, v);
  }
  const metrics = {
    store: nsPerOp(count, (i) => store.get(`k${i}`), (i) => store.get(`w${i}`)),
    mapUnpack: nsPerOp(count, (i) => unpack(map.get(`k${i}`)), (i) => unpack(map.get(`w${i}`))),
  };
  if (l) {
    metrics.lmdb = nsPerOp(count, (i) => l.db.get(`k${i}`), (i) => l.db.get(`w${i}`));
    l.close();
  }
  return metrics;
}

function setBench(makeValue) {
  const { store } = createManager({ maxBytes: 1024 * MIB });
  const map = new Map();
  const KEYS = 10_000, N = 200_000;
  return {
    store: nsPerOp(N, (i) => store.set(`k${i % KEYS}`, makeValue(i))),
    mapPack: nsPerOp(N, (i) => map.set(`k${i % KEYS}`, pack(makeValue(i)))),
  };
}

/** Ops per second over `ms` in each of `threads` workers running `body` (with `store`, `i`). */
async function throughput(handle, threads, body, ms = 1000) {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const code = `
    const { parentPort, workerData } = require('node:worker_threads');
    const store = require(${JSON.stringify(path.join(__dirname, '..'))}).createStore(workerData.kv);
    let ops = 0, sink;
    parentPort.postMessage('ready');
    parentPort.once('message', () => {
      const t = process.hrtime.bigint();
      while (Atomics.load(workerData.stop, 0) === 0) {
        for (let k = 0; k < 1000; k++, ops++) { const i = ops; ${body} }
      }
      parentPort.postMessage(ops / (Number(process.hrtime.bigint() - t) / 1e9));
    });`;
  const ws = Array.from({ length: threads }, () => new Worker(code, { eval: true, workerData: { kv: handle, stop } }));
  await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
  const results = ws.map((w) => new Promise((r) => w.once('message', r)));
  ws.forEach((w) => w.postMessage('go'));
  await new Promise((r) => setTimeout(r, ms));
  Atomics.store(stop, 0, 1);
  const rates = await Promise.all(results);
  await Promise.all(ws.map((w) => w.terminate()));
  return rates.reduce((a, b) => a + b, 0);
}

/** Throughput of `body` over 1,000 shared keys: one worker, then two at once. */
async function scaling(body) {
  const manager = createManager();
  for (let i = 0; i < 1000; i++) manager.store.set(`k${i}`, seedLike(i));
  const one = await throughput(manager.handle, 1, body);
  const two = await throughput(manager.handle, 2, body);
  return { oneThreadOpsPerSec: one, twoThreadsOpsPerSec: two };
}

const scenarios = {
  'hot-get'() {
    const value = { value: 'Benchmark' };
    const { store } = createManager();
    store.set('test', value);
    const objects = new Map([['test', value]]);
    const bytes = new Map([['test', pack(value)]]);
    const l = lmdb();
    l.db.putSync('test', value);
    const N = 2_000_000;
    const metrics = {
      store: nsPerOp(N, () => store.get('test')),
      mapFloor: nsPerOp(N, () => objects.get('test')),
      mapUnpack: nsPerOp(N, () => unpack(bytes.get('test'))),
      structuredClone: nsPerOp(N / 4, () => structuredClone(objects.get('test'))),
      lmdb: nsPerOp(N / 4, () => l.db.get('test')),
    };
    l.close();
    return metrics;
  },
  'cold-get-small': () => coldGet(seedLike, 200_000),
  'cold-get-1k': () => coldGet(kib, 50_000),
  'cold-get-64k': () => coldGet(big, 1_000, true),
  'cold-set-get': () => {
    // set then get of one key, 64 values in turn: every get is the first read of a new version.
    const { store } = createManager({ maxBytes: 64 * MIB });
    const map = new Map();
    const values = Array.from({ length: 64 }, (_, i) => seedLike(i));
    return {
      store: nsPerOp(500_000, (i) => { store.set('k', values[i & 63]); return store.get('k'); }),
      mapPack: nsPerOp(500_000, (i) => { map.set('k', pack(values[i & 63])); return unpack(map.get('k')); }),
    };
  },
  'set-small': () => setBench(seedLike),
  'set-1k': () => setBench(kib),
  'two-readers': () => scaling('sink = store.get("k" + (i % 1000));'),
  'mixed-90-10': () =>
    scaling('if (i % 10 === 0) store.set("k" + (i % 1000), { id: i, name: "n", tags: ["a"] }); else sink = store.get("k" + ((i * 7) % 1000));'),
  scale() {
    // At both sizes ~200,000 timed operations; each timed get is the first read of its key's
    // current version (keys are rewritten, untimed, between passes), so the read cache does not
    // turn the small case into a cache benchmark.
    const result = {};
    const OPS = 200_000;
    for (const count of [1_000, 1_000_000]) {
      const { store } = createManager({ maxBytes: 2048 * MIB });
      const map = new Map(); // the baseline, for context: Map + msgpackr at the same sizes
      let raw = 0;
      for (let i = 0; i < count; i++) {
        const key = `key:${i}`;
        const value = { i };
        store.set(key, value);
        map.set(key, pack(value));
        raw += Buffer.byteLength(key) + pack(value).length;
      }
      if (count === 1_000_000) {
        result.rawBytes = raw;
        result.usedBytes = store.stats().bytesUsed;
      }
      for (let i = 0; i < 20_000; i++) store.get(`key:${i % count}`), store.set(`warm:${i}`, { i }); // JIT warm-up
      const perPass = Math.min(count, OPS);
      const passes = Math.ceil(OPS / perPass);
      const order = (i) => `key:${(i * 7919) % count}`;
      let getNs = 0, setNs = 0, mapGetNs = 0, mapSetNs = 0, sink;
      for (let pass = 0; pass < passes; pass++) {
        let m = process.hrtime.bigint();
        for (let i = 0; i < perPass; i++) sink = unpack(map.get(order(i)));
        mapGetNs += Number(process.hrtime.bigint() - m);
        m = process.hrtime.bigint();
        for (let i = 0; i < perPass; i++) map.set(order(i), pack({ i: i + 1 }));
        mapSetNs += Number(process.hrtime.bigint() - m);
        for (let i = 0; i < perPass; i++) store.set(order(i), { i, pass }); // untimed: new versions
        let t = process.hrtime.bigint();
        for (let i = 0; i < perPass; i++) sink = store.get(order(i));
        getNs += Number(process.hrtime.bigint() - t);
        t = process.hrtime.bigint();
        for (let i = 0; i < perPass; i++) store.set(order(i), { i: i + 1 });
        setNs += Number(process.hrtime.bigint() - t);
      }
      if (sink === undefined) throw new Error('scale read nothing');
      result[`get${count}`] = getNs / (passes * perPass);
      result[`set${count}`] = setNs / (passes * perPass);
      result[`mapGet${count}`] = mapGetNs / (passes * perPass);
      result[`mapSet${count}`] = mapSetNs / (passes * perPass);
    }
    // The floor an overwrite at 1M keys cannot go below: the 1k-key cost plus two dependent
    // DRAM misses (the index slot, then the entry's block), measured in this same run.
    result.dramMissNs = processes.dramMissNs();
    return result;
  },
  processes: processes.processes,
  ...cache.scenarios,
  ...watch.scenarios,
  ...growth.scenarios,
  ...drift.scenarios,
  ...scale.scenarios,
  ...near.scenarios,
};

if (require.main === module) {
  const name = process.argv[2];
  if (!scenarios[name]) {
    console.error(`unknown scenario ${name}; one of: ${Object.keys(scenarios).join(', ')}`);
    process.exit(2);
  }
  Promise.resolve(scenarios[name]()).then((metrics) => {
    console.log(JSON.stringify({ name, metrics }));
    process.exit(0);
  });
}

module.exports = { scenarios };
