'use strict';
// `npm run bench`: runs every scenario of benchmark/scenarios.js in fresh processes (5 each by
// default), takes medians, and prints one table of results, baselines measured in the same
// runs, and each ratio against its target. Writes benchmark/results.json and
// benchmark/results.svg (the chart the README shows).
//   node benchmark/run.js [--runs 5] [--only hot-get,set-small]
// Run it alone: on 2 cores a parallel build or test run skews every number.
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { scenarios } = require('./scenarios');
const { SIZES } = require('./drift');
const { LONG } = require('./scale');

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i < 0 ? fallback : process.argv[i + 1];
};
const RUNS = Number(arg('runs', 5));
// Long scenarios (minutes, gigabytes) run only when named: --only scale-100m.
const ONLY = arg('only', '') ? arg('only', '').split(',') : Object.keys(scenarios).filter((s) => !LONG.includes(s));

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];

/** What each scenario is judged on: [label, value from medians, target, 'max' | 'min' | 'report', unit]. */
const CHECKS = {
  'hot-get': (m) => [
    ['hot get vs Map+msgpackr unpack', m.store / m.mapUnpack, 0.25, 'max', `${fmt(m.store)} vs ${fmt(m.mapUnpack)} ns`],
    ['hot get vs structuredClone', m.store / m.structuredClone, null, 'report', `${fmt(m.structuredClone)} ns`],
    ['hot get vs lmdb-js get', m.store / m.lmdb, null, 'report', `${fmt(m.lmdb)} ns`],
    ['hot get vs Map floor (result used)', m.store / m.mapFloor, null, 'report', `${fmt(m.mapFloor)} ns`],
  ],
  'cold-get-small': (m) => [['cold get, small value', m.store / m.mapUnpack, 1.2, 'max', `${fmt(m.store)} vs ${fmt(m.mapUnpack)} ns`]],
  'cold-get-1k': (m) => [['cold get, 1 KiB value', m.store / m.mapUnpack, 1.2, 'max', `${fmt(m.store)} vs ${fmt(m.mapUnpack)} ns`]],
  'cold-get-64k': (m) => [
    ['cold get, 64 KiB value', m.store / m.mapUnpack, 1.2, 'max', `${fmt(m.store)} vs ${fmt(m.mapUnpack)} ns`],
    ['cold get 64 KiB vs lmdb-js', m.store / m.lmdb, null, 'report', `${fmt(m.lmdb)} ns`],
  ],
  'cold-set-get': (m) => [['set then get of one key (cold), vs Map+msgpackr', m.store / m.mapPack, 1.2, 'max', `${fmt(m.store)} vs ${fmt(m.mapPack)} ns`]],
  'set-small': (m) => [['set, seed-like value', m.store / m.mapPack, 1.3, 'max', `${fmt(m.store)} vs ${fmt(m.mapPack)} ns`]],
  'set-1k': (m) => [['set, 1 KiB value', m.store / m.mapPack, 1.3, 'max', `${fmt(m.store)} vs ${fmt(m.mapPack)} ns`]],
  'two-readers': (m) => [['2 readers vs 1 (throughput)', m.twoThreadsOpsPerSec / m.oneThreadOpsPerSec, 1.8, 'min', `${fmtOps(m.twoThreadsOpsPerSec)} vs ${fmtOps(m.oneThreadOpsPerSec)}`]],
  'mixed-90-10': (m) => [['2 threads 90/10 vs 1 (throughput)', m.twoThreadsOpsPerSec / m.oneThreadOpsPerSec, null, 'report', `${fmtOps(m.twoThreadsOpsPerSec)} vs ${fmtOps(m.oneThreadOpsPerSec)}`]],
  scale: (m) => [
    ['get at 1M keys vs 1k keys', m.get1000000 / m.get1000, 1.5, 'max', `${fmt(m.get1000000)} vs ${fmt(m.get1000)} ns`],
    ['set at 1M keys vs 1k keys (target retired)', m.set1000000 / m.set1000, null, 'report', `${fmt(m.set1000000)} vs ${fmt(m.set1000)} ns`],
    ['set at 1M keys vs 1k keys + 2 DRAM misses', m.set1000000 / (m.set1000 + 2 * m.dramMissNs), 1, 'max', `${fmt(m.set1000000)} vs ${fmt(m.set1000)} + 2 x ${fmt(m.dramMissNs)} ns (pointer-chasing probe)`],
    ['Map+msgpackr get at 1M vs 1k (context)', m.mapGet1000000 / m.mapGet1000, null, 'report', `${fmt(m.mapGet1000000)} vs ${fmt(m.mapGet1000)} ns`],
    ['Map+msgpackr set at 1M vs 1k (context)', m.mapSet1000000 / m.mapSet1000, null, 'report', `${fmt(m.mapSet1000000)} vs ${fmt(m.mapSet1000)} ns`],
    ['memory at 1M small entries vs raw bytes', m.usedBytes / m.rawBytes, 2, 'max', `${(m.usedBytes / 2 ** 20).toFixed(0)} MiB vs ${(m.rawBytes / 2 ** 20).toFixed(0)} MiB raw`],
  ],
  processes: (m) => [
    ['get of another process\'s writes vs another thread\'s', m.processGet / m.threadGet, 1.1, 'max', `${fmt(m.processGet)} vs ${fmt(m.threadGet)} ns`],
    ['set in a store file vs a thread store', m.processSet / m.threadSet, 1.1, 'max', `${fmt(m.processSet)} vs ${fmt(m.threadSet)} ns`],
    ['lmdb-js (2 processes) get vs store file get', m.lmdbGet / m.processGet, null, 'report', `${fmt(m.lmdbGet)} ns`],
    ['lmdb-js (2 processes) putSync vs store file set', m.lmdbPutSync / m.processSet, null, 'report', `${fmt(m.lmdbPutSync)} ns`],
    ...(m.redisSkipped ? [['Redis on localhost (baseline only)', NaN, null, 'report', 'skipped: redis-server is not installed']] : [
      ['Redis GET, awaited, vs store file get (baseline only)', m.redisGet / m.processGet, null, 'report', `${fmt(m.redisGet)} ns`],
      ['Redis SET, awaited, vs store file set', m.redisSet / m.processSet, null, 'report', `${fmt(m.redisSet)} ns`],
      ['Redis GET, pipelined by 1000, vs store file get', m.redisPipeGet / m.processGet, null, 'report', `${fmt(m.redisPipeGet)} ns`],
      ['Redis SET, pipelined by 1000, vs store file set', m.redisPipeSet / m.processSet, null, 'report', `${fmt(m.redisPipeSet)} ns`],
    ]),
  ],
  'hit-ratio': (m) => ['zipf08', 'zipf10', 'scan'].flatMap((t) => [1, 10].map((pct) => [
    `hit ratio, ${{ zipf08: 'Zipf 0.8', zipf10: 'Zipf 1.0', scan: 'scans + Zipf 0.9' }[t]}, ${pct}% capacity, vs lru-cache`,
    m[`${t}_${pct}_store`] / m[`${t}_${pct}_lru`], 1, 'min',
    `${(100 * m[`${t}_${pct}_store`]).toFixed(1)}% vs ${(100 * m[`${t}_${pct}_lru`]).toFixed(1)}%`,
  ])),
  'hit-ratio-sized': (m) => ['zipf08', 'zipf10'].flatMap((t) => [1, 10].map((pct) => [
    `hit ratio, values of 100 B to 12.8 KB, ${{ zipf08: 'Zipf 0.8', zipf10: 'Zipf 1.0' }[t]}, ${pct}% of the bytes, vs lru-cache maxSize`,
    m[`${t}_${pct}_store`] / m[`${t}_${pct}_lru`], null, 'report',
    `${(100 * m[`${t}_${pct}_store`]).toFixed(1)}% vs ${(100 * m[`${t}_${pct}_lru`]).toFixed(1)}%`,
  ])),
  'evict-get': (m) => [
    ['get of 10,000 keys, eviction on vs off', m.on / m.off, 1.1, 'max', `${fmt(m.on)} vs ${fmt(m.off)} ns`],
    ['get from the read cache, eviction on vs off', m.hotOn / m.hotOff, 1.1, 'max', `${fmt(m.hotOn)} vs ${fmt(m.hotOff)} ns`],
  ],
  growth: (m) => {
    const ms = (ns) => `${(ns / 1e6).toFixed(2)} ms`;
    const keys = `${(m.keys / 1e6).toFixed(0)}M keys`;
    return [
      [`growth stall: slowest set growing from empty to ${keys} vs into a store sized for them (expectedKeys)`, m.fillMax / m.sizedMax, 2, 'max', `${ms(m.fillMax)} vs ${ms(m.sizedMax)}`],
      ['growth stall: p99.99 set while growing vs into the sized store', m.fillP9999 / m.sizedP9999, 2, 'max', `${fmt(m.fillP9999)} vs ${fmt(m.sizedP9999)} ns (p50 ${fmt(m.fillP50)} vs ${fmt(m.sizedP50)} ns)`],
      ['growth: the whole fill, growing vs sized', m.fillTotal / m.sizedTotal, null, 'report', `${(m.fillTotal / 1e9).toFixed(2)} vs ${(m.sizedTotal / 1e9).toFixed(2)} s of sets`],
      ["growth stall: another process's slowest set during the growth vs during the sized fill", m.otherMax / m.otherSizedMax, null, 'report', `${ms(m.otherMax)} vs ${ms(m.otherSizedMax)} (p99.99 ${fmt(m.otherP9999)} vs ${fmt(m.otherSizedP9999)} ns, ${m.otherSets} sets while growing)`],
    ];
  },
  drift: (m) => {
    const pct = (x) => `${(100 * x).toFixed(0)}%`;
    const others = (k) => [['lru-cache', 'lru'], ['Redis', 'redis'], ['memcached', 'memcached']]
      .map(([label, name]) => `${label} ${m[`${name}Skipped`] ? 'skipped (not installed)' : pct(m[`${name}_${k}`])}`).join(', ');
    return [
      ...SIZES.map((size, i) => [`drifting sizes, phase ${i + 1} (${size} B values): live bytes / 24 MiB budget`, m[`store_${i}`], null, 'report', `this store ${pct(m[`store_${i}`])}; ${others(i)}`]),
      ['drifting sizes: the lowest phase, this store vs Redis allkeys-lru', m.redisSkipped ? NaN : m.store_min / m.redis_min, null, 'report', `${pct(m.store_min)}; ${others('min')}`],
      ['drifting sizes: writes refused (this store)', m.store_refused, 0, 'max', `lru-cache ${m.lru_refused}, Redis ${m.redisSkipped ? '-' : m.redis_refused}, memcached ${m.memcachedSkipped ? '-' : m.memcached_refused}`],
    ];
  },
  'scale-100m': (m) => {
    const misses = m.rawLoadsN - m.rawLoads1k;
    const keys = `${(m.keys / 1e6).toFixed(0)}M keys`;
    const floor = (k) => m[`${k}1k`] + 2 * m.dramMissNs;
    return [
      [`fill: ${keys} of small entries into a store file from empty, a set vs a set at 1k keys`, (m.fillSeconds * 1e9) / m.keys / m.set1k, null, 'report', `${m.fillSeconds.toFixed(0)} s, ${fmt((m.fillSeconds * 1e9) / m.keys)} ns a set`],
      [`get at ${keys} vs 1k keys + 2 DRAM misses (64 MiB walk)`, m.getN / floor('get'), null, 'report', `${fmt(m.getN)} vs ${fmt(m.get1k)} + 2 x ${fmt(m.dramMissNs)} ns`],
      [`set at ${keys} vs 1k keys + 2 DRAM misses (64 MiB walk)`, m.setN / floor('set'), null, 'report', `${fmt(m.setN)} vs ${fmt(m.set1k)} + 2 x ${fmt(m.dramMissNs)} ns`],
      ...(m.rawLoadsN === undefined ? [['two misses at the store\'s own addresses', NaN, null, 'report', 'skipped: examples/scale_probe.rs did not run (cargo missing, or see its error above)']] : [
        [`get at ${keys} vs 1k keys + its two misses at the store's own addresses`, m.getN / (m.get1k + misses), null, 'report', `${fmt(m.getN)} vs ${fmt(m.get1k)} + ${fmt(misses)} ns`],
        [`set at ${keys} vs 1k keys + its two misses at the store's own addresses`, m.setN / (m.set1k + misses), 1.05, 'max', `${fmt(m.setN)} vs ${fmt(m.set1k)} + ${fmt(misses)} ns (slot and block loads: ${fmt(m.rawLoadsN)} ns at ${keys}, ${fmt(m.rawLoads1k)} at 1k)`],
      ]),
      ...(m.getGrowing === undefined ? [] : [
        [`get at ${keys} while the fill's last growth runs vs at rest`, m.getGrowing / m.getN, null, 'report', `${fmt(m.getGrowing)} vs ${fmt(m.getN)} ns`],
        [`set at ${keys} while the fill's last growth runs vs at rest`, m.setGrowing / m.setN, null, 'report', `${fmt(m.setGrowing)} vs ${fmt(m.setN)} ns (each moves a slice of it)`],
      ]),
      [`memory at ${keys} vs raw bytes`, m.usedBytes / m.rawBytes, null, 'report', `${(m.usedBytes / m.keys).toFixed(1)} vs ${(m.rawBytes / m.keys).toFixed(1)} bytes an entry`],
      m.redisSkipped
        ? ['bytes an entry vs Redis', NaN, null, 'report', 'skipped: redis-server is not installed']
        : [`bytes an entry at ${keys} vs Redis on the same data`, m.usedBytes / m.keys / m.redisBytesPerKey, null, 'report', `${(m.usedBytes / m.keys).toFixed(1)} vs ${m.redisBytesPerKey.toFixed(1)} bytes`],
    ];
  },
  near: (m) => {
    if (m.skipped) return [['near cache in front of Redis', NaN, null, 'report', 'skipped: redis-server is not installed']];
    const us = (ns) => `${(ns / 1000).toFixed(1)} µs`;
    const ms = (ns) => `${(ns / 1e6).toFixed(0)} ms`;
    return [
      ['near cache: an awaited GET (node-redis) vs a local hit', m.nodeRedisGet / m.localHit, null, 'report', `${fmt(m.nodeRedisGet)} vs ${fmt(m.localHit)} ns`],
      ['near cache: an awaited GET (ioredis) vs a local hit', m.ioredisGet / m.localHit, null, 'report', `${fmt(m.ioredisGet)} vs ${fmt(m.localHit)} ns`],
      ["near cache: local hit vs node-redis clientSideCache's hit (one process)", m.localHit / m.cscHit, null, 'report', `${fmt(m.localHit)} vs ${fmt(m.cscHit)} ns`],
      ['staleness p50, a write on machine B until A serves it, vs node-redis clientSideCache', m.staleP50 / m.cscStaleP50, null, 'report', `${us(m.staleP50)} vs ${us(m.cscStaleP50)}`],
      ['staleness p99, vs node-redis clientSideCache', m.staleP99 / m.cscStaleP99, null, 'report', `${us(m.staleP99)} vs ${us(m.cscStaleP99)}`],
      [`Redis reads, ${m.processes} processes x ${m.keys} keys read twice, vs clientSideCache per process`, m.nearReads / m.cscReads, null, 'report', `${m.nearReads} vs ${m.cscReads} GETs`],
      ['Redis restart: until the local tier serves again, vs until Redis accepts', m.restartServing / m.restartRedisUp, null, 'report', `${ms(m.restartServing)} vs ${ms(m.restartRedisUp)}`],
    ];
  },
  'evict-set': (m) => [['set evicting at steady state vs set with room', m.evicting / m.room, 1.3, 'max', `${fmt(m.evicting)} vs ${fmt(m.room)} ns`]],
  watch: (m) => {
    const us = (ns) => `${(ns / 1000).toFixed(1)} µs`;
    return [
      ['set, watchers all closed vs never watched', m.setClosed / m.setNever, 1.02, 'max', `${fmt(m.setClosed)} vs ${fmt(m.setNever)} ns (stats().watchers ${m.closedWatchers})`],
      ['set, watched by another thread vs no watcher', m.setWatched / m.setNever, 1.2, 'max', `${fmt(m.setWatched)} vs ${fmt(m.setNever)} ns (stats().watchers ${m.watchedWatchers})`],
      ['watcher thread told of every write during the sets above', m.watchedDelivered, 1, 'min', `${m.watchedEvents} events of ${m.setWrites} writes, ${m.watchedOverflows} overflows`],
      ['set, two never-watched stores (A/A: noise of the rows above)', m.setNever2 / m.setNever, null, 'report', `${fmt(m.setNever2)} vs ${fmt(m.setNever)} ns`],
      ...(m.setPrewatch === undefined ? [] : [['set, never watched vs pre-watch build (SKV_BENCH_BASELINE)', m.setNever / m.setPrewatch, 1.02, 'max', `${fmt(m.setNever)} vs ${fmt(m.setPrewatch)} ns`]]),
      ['watch delivery p50, another process vs another thread', m.processP50 / m.threadP50, null, 'report', `${us(m.processP50)} vs ${us(m.threadP50)}`],
      ['watch delivery p99, another process vs another thread', m.processP99 / m.threadP99, null, 'report', `${us(m.processP99)} vs ${us(m.threadP99)}`],
      ...(m.redisSkipped ? [['Redis notifications on localhost (baseline only)', NaN, null, 'report', 'skipped: redis-server is not installed']] : [
        ['Redis keyspace event of SET, p50, vs watch in another process', m.redisKeyspaceP50 / m.processP50, null, 'report', `${us(m.redisKeyspaceP50)}`],
        ['Redis keyspace event of SET, p99, vs watch in another process', m.redisKeyspaceP99 / m.processP99, null, 'report', `${us(m.redisKeyspaceP99)}`],
        ['Redis PUBLISH to a subscriber, p50, vs watch in another process', m.redisPublishP50 / m.processP50, null, 'report', `${us(m.redisPublishP50)}`],
        ['Redis PUBLISH to a subscriber, p99, vs watch in another process', m.redisPublishP99 / m.processP99, null, 'report', `${us(m.redisPublishP99)}`],
      ]),
    ];
  },
};

function fmt(ns) {
  return ns >= 1000 ? `${(ns / 1000).toFixed(1)}k` : ns.toFixed(1);
}
function fmtOps(x) {
  return `${(x / 1e6).toFixed(1)}M ops/s`;
}

const results = [];
for (const name of ONLY) {
  const runs = [];
  for (let r = 0; r < RUNS; r++) {
    const out = execFileSync(process.execPath, [path.join(__dirname, 'scenarios.js'), name], { encoding: 'utf8', maxBuffer: 1 << 24 });
    runs.push(JSON.parse(out.trim().split('\n').pop()).metrics);
    process.stderr.write('.');
  }
  const medians = Object.fromEntries(Object.keys(runs[0]).map((k) => [k, median(runs.map((m) => m[k]))]));
  for (const [label, ratio, target, kind, detail] of CHECKS[name](medians)) {
    const met = kind === 'report' ? null : kind === 'max' ? ratio <= target : ratio >= target;
    results.push({ scenario: name, label, ratio, target, kind, met, detail, medians });
  }
}
process.stderr.write('\n');

const machine = `${os.cpus().length} x ${os.cpus()[0].model.trim()}, ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, ${os.platform()}`;
console.log(`shared-kv-store benchmarks: medians of ${RUNS} fresh processes each (${machine})\n`);
console.log('| measure | ratio | target | met | detail |\n|---|---:|---:|:---:|---|');
for (const r of results) {
  const target = r.target === null ? 'report' : `${r.kind === 'max' ? '<=' : '>='} ${r.target}`;
  console.log(`| ${r.label} | ${r.ratio.toFixed(2)}x | ${target} | ${r.met === null ? '' : r.met ? 'yes' : 'NO'} | ${r.detail} |`);
}

fs.writeFileSync(path.join(__dirname, 'results.json'), JSON.stringify({ machine, runs: RUNS, date: new Date().toISOString(), results }, null, 2) + '\n');
fs.writeFileSync(path.join(__dirname, 'results.svg'), chart(results.filter((r) => r.target !== null)));
console.log('\nwrote benchmark/results.json and benchmark/results.svg');

/** A horizontal bar per target: the measured ratio, with the target as a tick. */
function chart(rows) {
  const W = 720, rowH = 28, left = 290, top = 30, scaleMax = Math.max(2.5, ...rows.map((r) => Math.max(r.ratio, r.target))) * 1.05;
  const x = (v) => left + (v / scaleMax) * (W - left - 60);
  const esc = (s) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const bars = rows.map((r, i) => {
    const y = top + i * rowH;
    const color = r.met ? '#2e7d32' : '#c62828';
    return `<text x="${left - 8}" y="${y + 17}" text-anchor="end">${esc(r.label)}</text>` +
      `<rect x="${left}" y="${y + 5}" width="${Math.max(1, x(r.ratio) - left)}" height="16" fill="${color}"/>` +
      `<line x1="${x(r.target)}" x2="${x(r.target)}" y1="${y + 1}" y2="${y + 25}" stroke="#000" stroke-width="2"/>` +
      `<text x="${x(r.ratio) + 6}" y="${y + 17}">${r.ratio.toFixed(2)}x</text>`;
  }).join('\n');
  const h = top + rows.length * rowH + 30;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${h}" font-family="sans-serif" font-size="12">
<text x="10" y="18" font-weight="bold">Ratio to baseline measured in the same run (black tick: target; green: met)</text>
${bars}
<text x="10" y="${h - 8}" fill="#555">${esc(machine)}; medians of ${RUNS} processes</text>
</svg>
`;
}
