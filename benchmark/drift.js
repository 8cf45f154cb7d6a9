'use strict';
// Drifting value sizes, for benchmark/run.js: a cache of 24 MiB whose values change size every
// phase (6 KB, 400 B, 90 KB, 1.2 KB, 25 KB, 700 B, 180 KB, 3.5 KB; each phase writes three
// times the cache's size in new keys). After each phase: the live bytes (key + value of every
// entry still held) over the cache's budget, and the writes refused, for
//  - this store: a store file, onFull 'evict', maxBytes 24 MiB (its budget pays for its index
//    and block headers too);
//  - lru-cache: maxSize 24 MiB, sizeCalculation key + value length (nothing else counted: the
//    ideal an exact LRU over the same bytes reaches);
//  - Redis: maxmemory 24mb, allkeys-lru (its used_memory counts its own overhead);
//  - memcached: -m 24 (its slabs count item headers; pages assigned to a slab class move to
//    another only as its automover sees fit).
// Redis and memcached come from the OS packages; where missing, their rows say so.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { LRUCache } = require('lru-cache');
const { openStore } = require('..');
const { redisInstalled, startRedis } = require('../__test__/redis');
const { memcachedInstalled, startMemcached } = require('./memcached');

const MAX = 24 * 1024 * 1024;
const SIZES = [6000, 400, 90_000, 1200, 25_000, 700, 180_000, 3500];
const BATCH = 500;

/** Every phase's keys, in write order, with the size of their values. */
function plan() {
  return SIZES.map((size, phase) => {
    const keys = [];
    for (let i = 0; i * size < 3 * MAX; i++) keys.push(`d${phase}:${i}`);
    return { size, keys };
  });
}

/** Runs the phases against one cache: `{ fractions: [live / MAX after each phase], refused }`. */
async function drive(phases, cache) {
  const written = [];
  const fractions = [];
  let refused = 0;
  for (const { size, keys } of phases) {
    const value = Buffer.alloc(size, 0x61);
    for (let i = 0; i < keys.length; i += BATCH) {
      refused += await cache.set(keys.slice(i, i + BATCH), value);
    }
    written.push({ size, keys });
    let live = 0;
    for (const w of written) {
      for (let i = 0; i < w.keys.length; i += BATCH) {
        const batch = w.keys.slice(i, i + BATCH);
        const held = await cache.has(batch);
        held.forEach((h, j) => { if (h) live += batch[j].length + w.size; });
      }
    }
    fractions.push(live / MAX);
  }
  return { fractions, refused };
}

async function drift() {
  const phases = plan();
  const metrics = {};
  const record = (name, { fractions, refused }) => {
    fractions.forEach((f, i) => (metrics[`${name}_${i}`] = f));
    metrics[`${name}_min`] = Math.min(...fractions);
    metrics[`${name}_refused`] = refused;
  };

  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-drift-'));
  try {
    const store = openStore(path.join(dir, 'drift.kv'), { maxBytes: MAX, onFull: 'evict' });
    record('store', await drive(phases, {
      set(keys, value) {
        let refused = 0;
        for (const k of keys) {
          try {
            store.set(k, value);
          } catch {
            refused++;
          }
        }
        return refused;
      },
      has: (keys) => keys.map((k) => store.has(k)),
    }));
    store.close();
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }

  const lru = new LRUCache({ maxSize: MAX, sizeCalculation: (v, k) => v.length + k.length });
  record('lru', await drive(phases, {
    set(keys, value) {
      let refused = 0;
      for (const k of keys) refused += lru.set(k, value).has(k) ? 0 : 1;
      return refused;
    },
    has: (keys) => keys.map((k) => lru.has(k)),
  }));

  if (redisInstalled()) {
    const redis = await startRedis(['--maxmemory', String(MAX), '--maxmemory-policy', 'allkeys-lru']);
    try {
      record('redis', await drive(phases, {
        async set(keys, value) {
          const replies = await keys.reduce((p, k) => p.set(k, value), redis.client.pipeline()).exec();
          return replies.filter(([err]) => err).length;
        },
        async has(keys) {
          const replies = await keys.reduce((p, k) => p.exists(k), redis.client.pipeline()).exec();
          return replies.map(([, n]) => n === 1);
        },
      }));
    } finally {
      redis.stop();
    }
  } else {
    metrics.redisSkipped = 1;
  }

  if (memcachedInstalled()) {
    const mc = await startMemcached(MAX >> 20);
    try {
      record('memcached', await drive(phases, {
        set: (keys, value) => mc.set(keys.map((k) => [k, value])),
        has: (keys) => mc.has(keys),
      }));
    } finally {
      mc.stop();
    }
  } else {
    metrics.memcachedSkipped = 1;
  }
  return metrics;
}

module.exports = { scenarios: { drift }, SIZES };
