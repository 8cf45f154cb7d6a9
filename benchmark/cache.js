'use strict';
// Cache scenarios for benchmark/run.js: the hit ratio of an evicting store against lru-cache
// (exact LRU) holding the same number of entries, on Zipf traces and a scan-plus-Zipf mix; and
// what eviction costs a get and a set.
const { LRUCache } = require('lru-cache');
const { createStore } = require('..');

const KEYS = 100_000;
const REQUESTS = 600_000;

/** A deterministic Zipf(alpha) sampler over 0..n-1 (inverse CDF by binary search). */
function zipf(n, alpha, seed) {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) cdf[i] = sum += 1 / (i + 1) ** alpha;
  for (let i = 0; i < n; i++) cdf[i] /= sum;
  let s = seed >>> 0;
  const rand = () => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0) / 4294967296);
  return () => {
    const u = rand();
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid] < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** A trace of key numbers: Zipf, or Zipf with a scan of 5,000 one-off keys every 20,000 requests. */
function trace(alpha, scans) {
  const next = zipf(KEYS, alpha, 42);
  const out = new Int32Array(REQUESTS);
  let scanKey = KEYS;
  for (let i = 0; i < REQUESTS; i++) {
    out[i] = scans && i % 20_000 >= 15_000 ? scanKey++ : next();
  }
  return out;
}

/** Hits of `get`/`set` over the trace, as a cache would use them (a miss loads and stores). */
function hitRatio(t, get, set) {
  let hits = 0;
  for (let i = 0; i < t.length; i++) {
    const k = `k${t[i]}`;
    if (get(k) !== undefined) hits++;
    else set(k, { k: t[i] });
  }
  return hits / t.length;
}

let stores = 0;
function hitRatios() {
  const metrics = {};
  for (const [label, alpha, scans] of [['zipf08', 0.8, false], ['zipf10', 1.0, false], ['scan', 0.9, true]]) {
    const t = trace(alpha, scans);
    for (const pct of [1, 10]) {
      const capacity = (KEYS * pct) / 100;
      const store = createStore(`bench-hit-${stores++}`, { onFull: 'evict', maxEntries: capacity, maxBytes: 256 << 20 });
      const lru = new LRUCache({ max: capacity });
      metrics[`${label}_${pct}_store`] = hitRatio(t, (k) => store.get(k), (k, v) => store.set(k, v));
      metrics[`${label}_${pct}_lru`] = hitRatio(t, (k) => lru.get(k), (k, v) => lru.set(k, v));
    }
  }
  return metrics;
}

/**
 * Hit ratios with varied value sizes, a cache capped in bytes: an evicting store of maxBytes
 * against lru-cache with the same budget as its maxSize (sizeCalculation: key and value length;
 * the store's budget also pays for its index and headers, lru-cache's for nothing of its own).
 * Each key's value is 100 B to 12.8 KB, fixed by the key (a power of two times 100 B).
 */
function hitRatiosSized() {
  const metrics = {};
  const sizeOf = (k) => 100 << (Math.imul(k, 0x9e3779b1) >>> 29);
  const values = new Map();
  const valueOf = (k) => {
    let v = values.get(k);
    if (v === undefined) values.set(k, (v = 'v'.repeat(sizeOf(k))));
    return v;
  };
  let total = 0;
  for (let k = 0; k < KEYS; k++) total += sizeOf(k) + 8;
  for (const [label, alpha] of [['zipf08', 0.8], ['zipf10', 1.0]]) {
    const t = trace(alpha, false);
    for (const pct of [1, 10]) {
      const budget = Math.max(1 << 20, Math.round((total * pct) / 100));
      const store = createStore(`bench-hit-sized-${stores++}`, { onFull: 'evict', maxBytes: budget });
      const lru = new LRUCache({ maxSize: budget, sizeCalculation: (v, k) => v.length + k.length });
      const run = (get, set) => {
        let hits = 0;
        for (let i = 0; i < t.length; i++) {
          const k = `k${t[i]}`;
          if (get(k) !== undefined) hits++;
          else set(k, valueOf(t[i]));
        }
        return hits / t.length;
      };
      metrics[`${label}_${pct}_store`] = run((k) => store.get(k), (k, v) => store.set(k, v));
      metrics[`${label}_${pct}_lru`] = run((k) => lru.get(k), (k, v) => lru.set(k, v));
    }
  }
  return metrics;
}

function nsPerOp(n, fn) {
  let sink;
  for (let i = 0; i < Math.min(n, 50_000); i++) sink = fn(i);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) sink = fn(i);
  if (sink === undefined) throw new Error('benchmark produced undefined');
  return Number(process.hrtime.bigint() - t) / n;
}

/**
 * Medians of `rounds` alternating runs of each function (n calls each), the order flipped every
 * round: a ratio of two such medians compares like with like, where two long runs one after
 * the other swung from 0.86x to 1.71x with the machine's load.
 */
function alternating(rounds, n, fns) {
  const names = Object.keys(fns);
  const samples = Object.fromEntries(names.map((k) => [k, []]));
  for (let r = 0; r < rounds; r++) {
    for (const k of r % 2 ? [...names].reverse() : names) samples[k].push(nsPerOp(n, fns[k]));
  }
  const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
  return Object.fromEntries(names.map((k) => [k, median(samples[k])]));
}

/** get of 10,000 keys read in turn, in a store that evicts (with room to spare) and one that does not. */
function evictGet() {
  const on = createStore(`bench-evict-get-on`, { onFull: 'evict', maxEntries: 20_000 });
  const off = createStore(`bench-evict-get-off`);
  for (let i = 0; i < 10_000; i++) {
    on.set(`k${i}`, { id: i, name: `user${i}`, tags: ['a', 'b'] });
    off.set(`k${i}`, { id: i, name: `user${i}`, tags: ['a', 'b'] });
  }
  return alternating(15, 300_000, {
    on: (i) => on.get(`k${i % 10_000}`),
    off: (i) => off.get(`k${i % 10_000}`),
    // 100 keys: every get from the read cache.
    hotOn: (i) => on.get(`k${i % 100}`),
    hotOff: (i) => off.get(`k${i % 100}`),
  });
}

/** set of new keys into a full evicting store (every set evicts one) vs into a store with room. */
function evictSet() {
  const full = createStore(`bench-evict-set-full`, { onFull: 'evict', maxEntries: 10_000 });
  const room = createStore(`bench-evict-set-room`, { maxEntries: 0 });
  for (let i = 0; i < 10_000; i++) full.set(`fill${i}`, { id: i, name: `user${i}`, tags: ['a', 'b'] });
  const N = 300_000;
  const value = (i) => ({ id: i, name: `user${i}`, tags: ['a', 'b'] });
  const metrics = {
    evicting: nsPerOp(N, (i) => full.set(`k${i}`, value(i))),
    room: nsPerOp(N, (i) => room.set(`k${i}`, value(i))),
  };
  metrics.evictions = full.stats().evictions;
  return metrics;
}

module.exports = { scenarios: { 'hit-ratio': hitRatios, 'hit-ratio-sized': hitRatiosSized, 'evict-get': evictGet, 'evict-set': evictSet } };
