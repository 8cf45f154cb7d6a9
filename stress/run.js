'use strict';
// The stress run: `npm run stress -- --seconds N --workers W [--processes P] [--keys K] [--seed S] [--evict] [--watch]`.
// With --watch a worker thread watches every key meanwhile: each event must be of a key the run
// writes, and the 'set' events of the counters (c0..c3, locked, updated, swapped) must number
// exactly their final values (a write is told once, a refused one never), or at most them if
// the watcher was told it fell behind ('overflow').
// With --drift (and --evict) the value sizes change every round, in a 4 MiB store that evicts
// by bytes too.
// With --evict the store holds only half the keys (onFull: 'evict', maxEntries): any read may
// then find its key evicted, but never a stale, torn or invented value, and counters may lose
// counts with their evicted keys but never gain one.
//
// W workers (and, with --processes, P child processes on a store file) and the main thread do random set / get / delete / increment / TTL sets / locks /
// update / compareAndSet / iteration on an overlapping key set, in rounds of about a second. Between
// rounds every thread hands its history to the main thread, which checks it with the model
// (stress/model.js): no stale, torn, misplaced or invented value; counters, lock-protected
// and update()-protected counts exact. At the end all keys are deleted and the integrity
// check must find the store back to its index alone. Exits 1 if any error was found.
const { once } = require('node:events');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { fork } = require('node:child_process');
const { Worker, isMainThread, parentPort, workerData } = require('node:worker_threads');
const { makeValue, tornReason, checkKey } = require('./model');
const kv = require('..');
const { rng } = require('../__test__/helpers'); // mulberry32: reproducible per thread

const ROUND_MS = 1000;
/**
 * --drift: the value sizes of each round in turn ([least, spread] in bytes of body), the
 * extremes first, so that a short run (npm test's 4 rounds) has the largest and smallest.
 */
const DRIFT = [[150_000, 50_000], [10, 40], [60_000, 40_000], [300, 200], [20_000, 10_000], [900, 400], [5000, 2000], [2500, 1500]];
/** --drift: a store of this many bytes, so that the large phases evict by bytes. */
const DRIFT_MAX_BYTES = 4 << 20;
const COUNTERS = 4;

function parseArgs(argv) {
  const opts = { seconds: 10, workers: 2, processes: 0, keys: 64, seed: Date.now() % 1e9, evict: 0, watch: 0, drift: 0 };
  argv = argv.flatMap((a) => (['--evict', '--watch', '--drift'].includes(a) ? [a, '1'] : [a])); // flags
  for (let i = 0; i < argv.length; i += 2) {
    const name = argv[i].replace(/^--/, '');
    const value = Number(argv[i + 1]);
    if (!(name in opts) || !Number.isFinite(value) || value < 0) {
      throw new RangeError(`stress: unknown or bad option ${argv[i]} ${argv[i + 1] ?? ''}; use --seconds N --workers W --processes P --keys K --seed S --evict --watch --drift`);
    }
    opts[name] = value;
  }
  if (opts.drift && !opts.evict) throw new RangeError('stress: --drift goes with --evict');
  return opts;
}

/** One thread's side of the run: random operations for `ms`, recording what it saw. */
class Actor {
  constructor(id, store, ticks, seed, keys, drift = false) {
    Object.assign(this, { id, store, ticks, keys, drift, random: rng(seed) });
    this.rounds = 0;
    this.written = 0;
    this.counts = { increments: new Array(COUNTERS).fill(0), locked: 0, updated: 0, swapped: 0 };
    this.ops = 0;
  }

  tick() {
    return Atomics.add(this.ticks, 0, 1);
  }

  pick(n) {
    return Math.floor(this.random() * n);
  }

  /**
   * A value length: mostly small, some around 1 KiB, a few large (other size classes). With
   * --drift, every round has sizes of its own (every actor is in the same round): the freed
   * blocks of one phase must serve the next, in a store evicting by bytes.
   */
  length() {
    if (this.drift) {
      const [min, spread] = DRIFT[(this.rounds - 1) % DRIFT.length]; // round 1: the first phase
      return min + this.pick(spread);
    }
    const r = this.random();
    return r < 0.7 ? this.pick(40) : r < 0.95 ? 900 + this.pick(300) : 20000 + this.pick(20000);
  }

  round(ms) {
    this.rounds++;
    const history = { writes: [], reads: [], ttlWrites: [], ttlReads: [], errors: [] };
    const until = Date.now() + ms;
    while (Date.now() < until) {
      for (let i = 0; i < 64; i++) {
        try {
          this.step(history);
        } catch (e) {
          history.errors.push(`thread ${this.id}: ${e.stack}`);
        }
        this.ops++;
      }
    }
    return history;
  }

  step(h) {
    const { store } = this;
    const r = this.random();
    const ttl = r >= 0.8 && r < 0.88;
    const k = this.pick(this.keys);
    const key = ttl ? `t${k}` : `k${k}`;
    if (r < 0.4 || (ttl && r < 0.84)) {
      const start = this.tick();
      const v = store.get(key);
      const end = this.tick();
      if (v !== undefined) {
        const torn = tornReason(v, key);
        if (torn) return h.errors.push(`thread ${this.id}: get('${key}') gave a torn value (${torn})`);
        v.body += '!'; // the caller may mutate what get returned: the next get must not see it
      }
      (ttl ? h.ttlReads : h.reads).push(key, v ? v.w : -1, v ? v.n : 0, start, end);
    } else if (r < 0.65 || ttl) {
      const n = ++this.written;
      const value = makeValue(this.id, n, key, this.length());
      const c = this.pick(4);
      const options = ttl ? { ttl: 1 + this.pick(20) } : c === 0 ? true : c === 1 ? { immutable: true } : undefined;
      const start = this.tick();
      store.set(key, value, options);
      const end = this.tick();
      (ttl ? h.ttlWrites : h.writes).push(key, this.id, n, start, end);
    } else if (r < 0.73) {
      const n = ++this.written;
      const start = this.tick();
      store.delete(key);
      const end = this.tick();
      h.writes.push(key, -1, this.id * 1e9 + n, start, end);
    } else if (r < 0.8) {
      const c = this.pick(COUNTERS);
      store.increment(`c${c}`);
      this.counts.increments[c]++;
    } else if (r < 0.92) {
      // Counting under the lease lock, non-atomically: lost counts mean the lock failed.
      if (!store.lock('L', 10_000)) throw new Error('lock(L) timed out after 10 s');
      store.set('locked', (store.get('locked') ?? 0) + 1);
      if (!store.release('L')) throw new Error('release(L) refused by the holder');
      this.counts.locked++;
    } else if (r < 0.96) {
      store.update('updated', (x) => (x ?? 0) + 1);
      this.counts.updated++;
    } else if (r < 0.998) {
      for (;;) {
        const cur = store.get('swapped');
        if (store.compareAndSet('swapped', cur, (cur ?? 0) + 1)) break;
      }
      this.counts.swapped++;
    } else {
      // Iteration under concurrent writes: each key at most once, every value whole.
      const seen = new Set();
      for (const [key, v] of store.entries()) {
        if (seen.has(key)) h.errors.push(`thread ${this.id}: iteration yielded '${key}' twice`);
        seen.add(key);
        const torn = /^[kt]\d/.test(key) && tornReason(v, key);
        if (torn) h.errors.push(`thread ${this.id}: iteration gave a torn value for '${key}' (${torn})`);
      }
    }
  }
}

/** Per key, this round's records: flat arrays of [key, w, n, start, end] into objects. */
function byKey(flatLists, into) {
  for (const flat of flatLists) {
    for (let i = 0; i < flat.length; i += 5) {
      const key = flat[i];
      let list = into.get(key);
      if (!list) into.set(key, (list = []));
      list.push({ w: flat[i + 1], n: flat[i + 2], start: flat[i + 3], end: flat[i + 4] });
    }
  }
  return into;
}

/** Checks one round's histories; updates `carried` (per key) for the next round. */
function checkRound(histories, carried, errors, evicting) {
  for (const [writesOf, readsOf, absentAllowed] of [
    ['writes', 'reads', evicting],
    ['ttlWrites', 'ttlReads', true],
  ]) {
    const writes = byKey(histories.map((h) => h[writesOf]), new Map());
    const reads = byKey(histories.map((h) => h[readsOf]), new Map());
    for (const key of new Set([...writes.keys(), ...reads.keys()])) {
      const before = carried.get(key) ?? [{ w: -1, n: 0, start: 0, end: 0 }];
      const res = checkKey(key, writes.get(key) ?? [], reads.get(key) ?? [], before, { absentAllowed });
      errors.push(...res.errors);
      carried.set(key, res.carried);
    }
  }
  for (const h of histories) errors.push(...h.errors);
}

/** The store a worker or child process uses: the named store, or the store file. */
function openShared({ name, file, id }) {
  // Even-numbered actors use the native codec: both paths write the same shared entries.
  const codec = id % 2 === 0 ? 'native' : 'js';
  return file ? kv.openStore(file, { codec }) : kv.createStore(name, { codec });
}

/**
 * The real-time clock of the run: one Int32 every actor bumps around each operation. Across
 * processes it lives in a file mapped by every process (the last word of a small store file,
 * past anything its arena holds), through the binding's own mapping call.
 */
function tickWords({ ticks, ticksFile }) {
  if (ticks) return new Int32Array(ticks);
  const { buffer } = require('../binding.js').fileBuffer(ticksFile, 1 << 20, 0o600, true, 0, 0, 0);
  return new Int32Array(buffer, buffer.byteLength - 8, 1);
}

const COUNTED = ['c0', 'c1', 'c2', 'c3', 'locked', 'updated', 'swapped'];
const END = '#end';

/**
 * The --watch thread: counts 'set' events per counted key, checks every event, and once it is
 * told of END (written after every actor stopped) sends what it saw and stops watching.
 */
function watcherMain(data) {
  const store = openShared(data);
  const seen = { sets: Object.fromEntries(COUNTED.map((k) => [k, 0])), events: 0, overflows: 0, errors: [] };
  const w = store.watch((key, event) => {
    seen.events++;
    if (event === 'overflow') return void seen.overflows++;
    if (!['set', 'delete', 'expire', 'evict'].includes(event)) seen.errors.push(`watch: unexpected event ${event} of ${key}`);
    else if (typeof key !== 'string' || !/^([kt]\d+|c\d|locked|updated|swapped|#end)$/.test(key)) seen.errors.push(`watch: a ${event} of a key nobody wrote: ${key}`);
    if (event === 'set' && key in seen.sets) seen.sets[key]++;
    if (key === END) {
      w.close();
      parentPort.postMessage(seen);
    }
  });
  parentPort.postMessage('watching');
}

/** A worker thread or child process: rounds on request, its counts on 'stop'. */
function actorMain(data, send, onMessage, close) {
  const actor = new Actor(data.id, openShared(data), tickWords(data), data.seed, data.keys, data.drift);
  onMessage((msg) => {
    if (msg === 'stop') {
      send({ counts: actor.counts, ops: actor.ops });
      return close();
    }
    send({ history: actor.round(msg) });
  });
}

async function main(opts) {
  const name = `stress-${process.pid}`;
  const limits = opts.evict ? { onFull: 'evict', maxEntries: Math.max(8, opts.keys >> 1) } : {};
  const maxBytes = opts.drift ? DRIFT_MAX_BYTES : 512 << 20;
  let file, ticksFile, store, ticks;
  if (opts.processes > 0) {
    const dir = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
    file = path.join(dir, `${name}.kv`);
    ticksFile = path.join(dir, `${name}.ticks`);
    store = kv.openStore(file, { maxBytes, ...limits });
  } else {
    kv.createManager({ name, initialBytes: 1 << 20, maxBytes, ...limits });
    store = kv.createStore(name);
    ticks = new SharedArrayBuffer(4);
  }
  const words = tickWords({ ticks, ticksFile });
  Atomics.store(words, 0, 1);
  const me = new Actor(0, store, words, opts.seed, opts.keys, opts.drift === 1);
  const shared = { name, file, ticks, ticksFile, keys: opts.keys, drift: opts.drift === 1 };
  const workers = Array.from({ length: opts.workers }, (_, i) => new Worker(__filename, {
    workerData: { ...shared, id: i + 1, seed: opts.seed + i + 1 },
  }));
  const children = Array.from({ length: opts.processes }, (_, i) => {
    const id = opts.workers + i + 1;
    const data = { ...shared, id, seed: opts.seed + id };
    delete data.ticks;
    const child = fork(__filename, ['--child', JSON.stringify(data)]);
    // As a Worker: 'message' events, postMessage, and 'error' if it dies.
    child.postMessage = (m) => child.send(m);
    child.on('exit', (code) => code !== 0 && child.emit('error', new Error(`stress process ${id} exited with ${code}`)));
    return child;
  });
  const actors = [...workers, ...children];
  let watcher;
  if (opts.watch) {
    watcher = new Worker(__filename, { workerData: { ...shared, id: 0, watcher: true } });
    await once(watcher, 'message'); // 'watching'
  }
  // The worker's next message (events.once rejects if the worker fails instead).
  const next = (w) => once(w, 'message').then(([m]) => m);
  const errors = [];
  const carried = new Map();
  const rounds = Math.max(1, Math.round((opts.seconds * 1000) / ROUND_MS));
  for (let round = 0; round < rounds; round++) {
    const replies = actors.map(next);
    actors.forEach((w) => w.postMessage(ROUND_MS));
    const mine = me.round(ROUND_MS);
    const histories = [mine, ...(await Promise.all(replies)).map((m) => m.history)];
    checkRound(histories, carried, errors, opts.evict === 1);
  }
  const finals = await Promise.all(actors.map((w) => {
    const p = next(w);
    w.postMessage('stop');
    return p;
  }));
  const all = [{ counts: me.counts, ops: me.ops }, ...finals];
  const sum = (f) => all.reduce((s, x) => s + f(x.counts), 0);
  // Exact, unless evicted with their keys (then never more than counted).
  const wrong = (got, want) => (opts.evict ? got > want : got !== want);
  for (let c = 0; c < COUNTERS; c++) {
    const want = sum((x) => x.increments[c]);
    if (wrong(store.get(`c${c}`) ?? 0, want)) errors.push(`counter c${c} is ${store.get(`c${c}`)}, expected ${want}`);
  }
  for (const key of ['locked', 'updated', 'swapped']) {
    const want = sum((x) => x[key]);
    if (wrong(store.get(key) ?? 0, want)) errors.push(`'${key}' is ${store.get(key)}, expected ${want} (lost updates)`);
  }
  if (opts.evict) console.log(`evictions: ${store.stats().evictions}, expired: ${store.stats().expired}`);
  if (watcher) {
    const told = once(watcher, 'message');
    store.set(END, true);
    const [seen] = await told;
    errors.push(...seen.errors);
    for (const key of COUNTED) {
      const value = store.get(key) ?? 0;
      // Exact, unless the watcher fell behind (then at most); an evicted counter starts again
      // from nothing, so with eviction there is nothing to compare.
      const ok = opts.evict || (seen.overflows > 0 ? seen.sets[key] <= value : seen.sets[key] === value);
      if (!ok) errors.push(`watch: ${seen.sets[key]} sets of '${key}' told, but it holds ${value}`);
    }
    console.log(`watch: ${seen.events} events told, ${seen.overflows} overflows`);
  }

  // Accounting: with every key deleted, only the index is left in use.
  const before = store.check();
  for (const key of [...store.keys()]) store.delete(key);
  const after = store.check();
  if (after.entries !== 0 || store.size !== 0) errors.push(`${after.entries} entries left after deleting every key`);
  if (after.bytesUsed !== after.indexBytes + after.logBytes) {
    errors.push(`${after.bytesUsed} bytes in use after deleting every key; the index and the change log alone are ${after.indexBytes + after.logBytes}`);
  }
  const ops = all.reduce((s, x) => s + x.ops, 0);
  console.log(`stress: ${opts.workers} workers + ${opts.processes} processes (even-numbered ones with the native codec) + main, ${rounds} rounds, seed ${opts.seed}`);
  console.log(`ops: ${ops} (${Math.round(ops / (rounds * ROUND_MS / 1000))}/s)`);
  console.log(`errors: ${errors.length}`);
  for (const e of errors.slice(0, 20)) console.log(`  ${e}`);
  console.log(`accounting: ${before.entries} entries in ${before.bytesUsed} bytes before deleting; ` +
    `after: ${after.entries} entries, ${after.bytesUsed} bytes in use = index ${after.indexBytes}${after.logBytes ? ` + change log ${after.logBytes}` : ''}, ${after.bytesFree} bytes free`);
  await Promise.all([...workers, ...(watcher ? [watcher] : [])].map((w) => new Promise((resolve) => (w.threadId === -1 ? resolve() : w.once('exit', resolve)))));
  await Promise.all(children.map((c) => (c.exitCode !== null ? undefined : once(c, 'exit'))));
  for (const f of [file, ticksFile]) if (f) fs.rmSync(f, { force: true });
  return errors.length === 0;
}

if (!isMainThread && workerData.watcher) {
  watcherMain(workerData);
} else if (!isMainThread) {
  actorMain(workerData, (m) => parentPort.postMessage(m), (f) => parentPort.on('message', f), () => parentPort.close());
} else if (process.argv[2] === '--child') {
  actorMain(JSON.parse(process.argv[3]), (m) => process.send(m), (f) => process.on('message', f), () => process.disconnect());
} else {
  main(parseArgs(process.argv.slice(2))).then((ok) => process.exit(ok ? 0 : 1), (e) => {
    console.error(e);
    process.exit(2);
  });
}
