'use strict';
// Change-notification scenario for benchmark/run.js (`store.watch`):
//  - delivery latency, from `set` returning in one thread to the listener running in another
//    thread (a thread store), and in another process (a store file, watcher in a child process);
//  - the same for Redis on localhost, the baseline: a keyspace notification of SET, and a plain
//    PUBLISH, each to a subscriber in another process (skipped, and said so, without redis-server);
//  - what watching costs a writer: `set` on a store that never had a watcher, on one whose
//    watchers all closed, and on one watched by another thread, interleaved in this process.
//
// Latency is measured ping-pong: one write, then the listener's receipt (a message carrying the
// listener's clock) before the next write, so that no queue builds up. Both ends read
// process.hrtime.bigint(), CLOCK_MONOTONIC on Linux: one clock for every thread and process of
// the machine. The receipt's own way back is not timed.
//
//   node benchmark/watch.js [latency|redis|set]   one part alone, for development
//   SKV_BENCH_BASELINE=/path/to/a/pre-watch/copy  also times `set` of that copy of the package
//                                                 (today's code), interleaved with the rest
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { Worker } = require('node:worker_threads');
const { redisInstalled, startRedis } = require('../__test__/redis');

const PKG = path.join(__dirname, '..');
const MIB = 1024 * 1024;
const WARM = 500; // untimed round trips first
const SAMPLES = 5_000; // timed round trips
const tmp = () => fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-bench-'));

const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
const summary = (samples) => {
  const s = Float64Array.from(samples).sort();
  return { p50: quantile(s, 0.5), p99: quantile(s, 0.99) };
};

/** A promise of the next message `subscribe` hands on, rejected after `ms` (a lost event must not hang the run). */
function receipt(subscribe, what, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`watch benchmark: no ${what} within ${ms} ms`)), ms);
    subscribe((msg) => {
      clearTimeout(timer);
      resolve(msg);
    });
  });
}

/**
 * Ping-pong latency: `send(i)` makes one write and returns the writer's timestamp (bigint);
 * `next()` resolves with the receipt [listenerTimestamp (bigint or its string), payload];
 * `check(i, payload)` throws if the receipt is not for write i.
 */
async function pingPong(send, next, check) {
  const samples = [];
  for (let i = 0; i < WARM + SAMPLES; i++) {
    const got = next();
    const t1 = await send(i);
    const [t2, payload] = await got;
    check(i, payload);
    if (i >= WARM) samples.push(Number(BigInt(t2) - t1));
  }
  return summary(samples);
}

const checkValue = (what) => (i, v) => {
  if (v !== i) throw new Error(`watch benchmark (${what}): write ${i} delivered ${JSON.stringify(v)}`);
};

/** Delivery to a watcher in a worker thread of the same store. */
/** The write each round trip times: a set, and the clock when it returned. */
const timedSet = (store) => (i) => {
  store.set('lat', i);
  return process.hrtime.bigint();
};

async function threadLatency() {
  const { createManager } = require('..');
  const { store, handle } = createManager({ maxBytes: 64 * MIB });
  const w = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const store = require(${JSON.stringify(PKG)}).createStore(workerData);
    store.watch('lat', (key, event) => {
      const t = process.hrtime.bigint();
      parentPort.postMessage([t, event === 'set' ? store.get('lat') : event]);
    });
    parentPort.postMessage('ready');`, { eval: true, workerData: handle });
  await receipt((r) => w.once('message', r), 'ready from the watcher thread');
  try {
    return await pingPong(timedSet(store), () => receipt((r) => w.once('message', r), 'event in the watcher thread'), checkValue('thread'));
  } finally {
    await w.terminate();
  }
}

/** A child process running `code` with an IPC channel; resolves once it sends 'ready'. */
async function child(code) {
  const proc = spawn(process.execPath, ['-e', code], { cwd: PKG, stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise((_, reject) => proc.once('exit', (c, s) => reject(new Error(`watch benchmark: child exited (${c ?? s})`))));
  exited.catch(() => {});
  await Promise.race([receipt((r) => proc.once('message', r), 'ready from the child process', 30_000), exited]);
  return proc;
}

/** Delivery to a watcher in another process of the same store file. */
async function processLatency() {
  const { openStore } = require('..');
  const dir = tmp();
  const file = path.join(dir, 'watch.kv');
  const store = openStore(file, { maxBytes: 64 * MIB });
  const proc = await child(`
    const store = require(${JSON.stringify(PKG)}).openStore(${JSON.stringify(file)});
    store.watch('lat', (key, event) => {
      const t = process.hrtime.bigint();
      process.send([String(t), event === 'set' ? store.get('lat') : event]);
    });
    process.send('ready');`);
  try {
    return await pingPong(timedSet(store), () => receipt((r) => proc.once('message', r), 'event in the watcher process'), checkValue('process'));
  } finally {
    proc.kill();
    store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Redis on localhost, a subscriber in another process: a keyspace notification of SET
 * (notify-keyspace-events KEA, channel __keyspace@0__:lat) and a plain PUBLISH. Timed from
 * issuing the command (its reply may come before or after the subscriber's message).
 */
async function redisLatency() {
  if (!redisInstalled()) return { skipped: 1 };
  const { client, port, stop } = await startRedis();
  let proc;
  try {
    await client.config('SET', 'notify-keyspace-events', 'KEA');
    proc = await child(`
      const Redis = require(${JSON.stringify(require.resolve('ioredis'))});
      const sub = new Redis({ port: ${port}, host: '127.0.0.1' });
      sub.on('message', (channel, message) => {
        const t = process.hrtime.bigint();
        process.send([String(t), channel + ' ' + message]);
      });
      sub.subscribe('__keyspace@0__:lat', 'latch').then(() => process.send('ready'));`);
    const next = () => receipt((r) => proc.once('message', r), 'Redis message in the subscriber process');
    /** Round trips of `command(i)` (timed from issuing it), each message checked by `expect(i)`. */
    const redisRounds = (command, expect, what) => pingPong(
      async (i) => {
        const t = process.hrtime.bigint();
        await command(i);
        return t;
      },
      next,
      (i, m) => {
        if (m !== expect(i)) throw new Error(`watch benchmark (Redis ${what}): write ${i} delivered ${m}`);
      },
    );
    const keyspace = await redisRounds((i) => client.set('lat', String(i)), () => '__keyspace@0__:lat set', 'keyspace');
    const publish = await redisRounds((i) => client.publish('latch', String(i)), (i) => `latch ${i}`, 'PUBLISH');
    return { keyspace, publish };
  } finally {
    proc?.kill();
    stop();
  }
}

/**
 * ns per `set` of a seed-like value over 10,000 keys (as set-small) for each variant, in
 * ROUNDS rounds (more operations than set-small: the targets here are a few percent), each round timing every variant in turn (in a rotating order), so that drift
 * over the run falls on all of them alike. Each variant gets its own compiled loop (new
 * Function), so that no call site sees more than one store.
 */
function interleavedSets(variants, { N = 1_000_000, ROUNDS = 50, KEYS = 10_000 } = {}) {
  const names = Object.keys(variants);
  const loops = Object.fromEntries(names.map((name) => [name, new Function('store', 'from', 'to', `
    let r;
    for (let i = from; i < to; i++) r = store.set('k' + (i % ${KEYS}), { id: i, name: 'user' + i, tags: ['a', 'b'] });
    return r;`)]));
  for (const name of names) loops[name](variants[name], 0, 20_000); // warm-up, as nsPerOp
  const ns = Object.fromEntries(names.map((n) => [n, 0]));
  const per = N / ROUNDS;
  for (let round = 0; round < ROUNDS; round++) {
    for (let k = 0; k < names.length; k++) {
      const name = names[(round + k) % names.length];
      const t = process.hrtime.bigint();
      loops[name](variants[name], round * per, (round + 1) * per);
      ns[name] += Number(process.hrtime.bigint() - t);
    }
  }
  for (const n of names) ns[n] /= N;
  return ns;
}

/** `set` with no watcher (never had one / all closed) and with a watcher in another thread. */
async function setCost() {
  const { createManager } = require('..');
  const never = createManager({ maxBytes: 1024 * MIB }).store;
  // A second store that never had a watcher: never2 / never is the noise of this method (A/A).
  const never2 = createManager({ maxBytes: 1024 * MIB }).store;
  const closed = createManager({ maxBytes: 1024 * MIB }).store;
  const watchedManager = createManager({ maxBytes: 1024 * MIB });

  // Closed: watched (and an event delivered), then every watcher closed: the log exists, count 0.
  const w = closed.watch(() => {});
  const seen = receipt((r) => { const x = closed.watch('first', () => { x.close(); r(); }); }, 'event on the store watched here');
  closed.set('first', 1);
  await seen;
  w.close();
  const closedWatchers = closed.stats().watchers ?? -1; // -1: stats() has no watchers count

  // Watched: one watcher of every key in another thread, counting what it receives.
  const worker = new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    const store = require(${JSON.stringify(PKG)}).createStore(workerData);
    let events = 0, overflows = 0;
    const w = store.watch((key, event) => { events++; if (event === 'overflow') overflows++; });
    parentPort.on('message', (m) => {
      if (m === 'stop') w.close();
      parentPort.postMessage({ events, overflows });
      if (m === 'stop') parentPort.close();
    });
    parentPort.postMessage('ready');`, { eval: true, workerData: watchedManager.handle });
  await receipt((r) => worker.once('message', r), 'ready from the watcher thread');
  const watchedWatchers = watchedManager.store.stats().watchers ?? -1;

  const variants = { never, never2, closed, watched: watchedManager.store };
  if (process.env.SKV_BENCH_BASELINE) {
    // Today's code: a copy of the package from before watch (its own binding), as a baseline.
    variants.prewatch = require(path.resolve(process.env.SKV_BENCH_BASELINE)).createManager({ maxBytes: 1024 * MIB }).store;
  }
  const N = 1_000_000;
  const ns = interleavedSets(variants, { N });
  const writes = 20_000 + N; // warm-up included: the watcher is told of every write

  // Every write must reach the watcher (or an overflow tell it some did not): asked until its
  // count stops moving (it may still be reading), for up to a second.
  const counts = async (m) => {
    const got = receipt((r) => worker.once('message', r), 'counts from the watcher thread', 60_000);
    worker.postMessage(m);
    return got;
  };
  let c = await counts('count');
  for (let i = 0; i < 20 && c.events < writes && !c.overflows; i++) {
    await new Promise((r) => setTimeout(r, 50));
    const again = await counts('count');
    if (again.events === c.events) break;
    c = again;
  }
  const { events, overflows } = await counts('stop');
  await worker.terminate();
  if (!overflows && events !== writes) {
    console.error(`watch benchmark: the watcher thread was told of ${events} of ${writes} writes, and of no overflow (a lost wake-up?)`);
  }
  return { ...ns, closedWatchers, watchedWatchers, events, overflows, writes };
}

/** Everything in one process, so that every ratio compares numbers from the same run. */
async function watch() {
  const set = await setCost();
  const thread = await threadLatency();
  const proc = await processLatency();
  const redis = await redisLatency();
  return {
    setNever: set.never,
    setNever2: set.never2,
    setClosed: set.closed,
    setWatched: set.watched,
    ...(set.prewatch === undefined ? {} : { setPrewatch: set.prewatch }),
    closedWatchers: set.closedWatchers, // stats().watchers of the closed store: expected 0
    watchedWatchers: set.watchedWatchers, // of the watched one: expected 1
    setWrites: set.writes,
    watchedEvents: set.events, // events the watcher thread received during the timed sets
    watchedOverflows: set.overflows,
    // 1: every write reached the watcher (or an overflow said some did not); below: some were lost.
    watchedDelivered: set.overflows ? 1 : set.events / set.writes,
    threadP50: thread.p50,
    threadP99: thread.p99,
    processP50: proc.p50,
    processP99: proc.p99,
    ...(redis.skipped ? { redisSkipped: 1 } : {
      redisKeyspaceP50: redis.keyspace.p50,
      redisKeyspaceP99: redis.keyspace.p99,
      redisPublishP50: redis.publish.p50,
      redisPublishP99: redis.publish.p99,
    }),
  };
}

if (require.main === module) {
  const parts = { latency: async () => ({ thread: await threadLatency(), process: await processLatency() }), redis: redisLatency, set: setCost };
  const part = process.argv[2];
  if (part && !parts[part]) {
    console.error(`unknown part ${part}; one of: ${Object.keys(parts).join(', ')}`);
    process.exit(2);
  }
  (part ? parts[part]() : watch()).then((m) => {
    console.log(JSON.stringify(m));
    process.exit(0);
  }, (e) => {
    console.error(e);
    process.exit(1);
  });
}

module.exports = { scenarios: { watch }, interleavedSets };
