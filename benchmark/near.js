'use strict';
// The near cache in front of Redis (lib/redis.js), for benchmark/run.js, against a redis-server
// it starts on 127.0.0.1 (from the OS packages; skipped, and said so, where missing):
//  - a local hit against an awaited GET through node-redis and through ioredis;
//  - staleness: from a write on machine B (its set resolved) until machine A's get returns the
//    new value, p50 and p99, against node-redis's own client-side cache (RESP3, one per process);
//  - Redis reads when N processes each read the same K keys twice: one machine-wide tier
//    against node-redis's client-side cache in each process;
//  - a Redis restart: from the new server's start until the local tier serves again.
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { redisInstalled, startRedis } = require('../__test__/redis');
const { createNearCache } = require('../lib/redis');

const tick = () => new Promise((r) => setImmediate(r));
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

/** ns per awaited call of `fn(i)`, over `n` calls after `n / 10` to warm up. */
async function awaitedNs(n, fn) {
  for (let i = 0; i < n / 10; i++) await fn(i);
  const t = process.hrtime.bigint();
  for (let i = 0; i < n; i++) await fn(i);
  return Number(process.hrtime.bigint() - t) / n;
}

/** Until `get()` returns `want` (polled once per event-loop turn, so invalidations get in): ns. */
async function until(get, want, since) {
  while ((await get()) !== want) await tick();
  return Number(process.hrtime.bigint() - since);
}

/** Redis GET calls so far (INFO commandstats). */
async function gets(redis) {
  const m = /cmdstat_get:calls=(\d+)/.exec(await redis.client.info('commandstats'));
  return m ? Number(m[1]) : 0;
}

/**
 * Runs `n` processes, each reading keys 0..k-1 twice through `kind`; resolves when all exit.
 * They close only once all have read: a listener that closes fences the machine's tier (the
 * next listener cannot vouch for what was stored before it), which would cost re-reads.
 */
function readers(kind, url, file, n, k) {
  const root = path.join(__dirname, '..');
  const body = kind === 'near'
    ? `const c = await require(${JSON.stringify(path.join(root, 'lib/redis.js'))}).createNearCache({ redis: '${url}', path: ${JSON.stringify(file)}, prefix: 'b:', codec: 'string' });
       const get = (key) => c.get(key);`
    : `const c = require('@redis/client').createClient({ url: '${url}', RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } }); await c.connect();
       const get = (key) => c.get('b:' + key);`;
  let done = 0;
  const kids = [];
  return Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const p = spawn(process.execPath, ['-e', `(async () => {
      ${body}
      for (let pass = 0; pass < 2; pass++) for (let i = 0; i < ${k}; i++) if ((await get('k' + i)) !== 'v' + i) throw new Error('wrong value');
      process.stdout.write('done\\n');
      await new Promise((r) => process.stdin.once('data', r));
      process.stdin.destroy();
      await c.close();
    })().catch((e) => { console.error(e); process.exit(1); });`], { stdio: ['pipe', 'pipe', 'inherit'] });
    kids.push(p);
    p.stdout.once('data', () => {
      if (++done === n) for (const kid of kids) kid.stdin.write('bye\n');
    });
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`reader exited ${code}`))));
  })));
}

async function near() {
  if (!redisInstalled()) return { skipped: 1 };
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-near-'));
  let redis = await startRedis();
  const metrics = {};
  const { createClient } = require('@redis/client');
  const Redis = require('ioredis');
  try {
    const options = { redis: redis.url, prefix: 'b:', codec: 'string' };
    const a = await createNearCache({ ...options, path: path.join(dir, 'a.kv') });
    const b = await createNearCache({ ...options, path: path.join(dir, 'b.kv') });
    const nodeRedis = createClient({ url: redis.url, RESP: 3 });
    await nodeRedis.connect();
    const csc = createClient({ url: redis.url, RESP: 3, clientSideCache: { ttl: 0, maxEntries: 0 } });
    await csc.connect();
    const io = new Redis({ port: redis.port, host: '127.0.0.1' });
    await redis.client.set('b:hot', 'value');
    await a.get('hot');
    metrics.localHit = await awaitedNs(200_000, () => a.get('hot'));
    metrics.nodeRedisGet = await awaitedNs(20_000, () => nodeRedis.get('b:hot'));
    metrics.ioredisGet = await awaitedNs(20_000, () => io.get('b:hot'));
    metrics.cscHit = await awaitedNs(200_000, () => csc.get('b:hot'));

    // Staleness: 500 writes on B, each timed until A, and node-redis's cache, see it.
    const near = [], own = [];
    for (let i = 0; i < 500; i++) {
      await a.get('s');
      await csc.get('b:s');
      await b.set('s', `v${i}`);
      const since = process.hrtime.bigint();
      near.push(await until(() => a.get('s'), `v${i}`, since));
      own.push(await until(() => csc.get('b:s'), `v${i}`, since));
    }
    metrics.staleP50 = pct(near, 0.5);
    metrics.staleP99 = pct(near, 0.99);
    metrics.cscStaleP50 = pct(own, 0.5);
    metrics.cscStaleP99 = pct(own, 0.99);
    await Promise.all([a.close(), b.close(), nodeRedis.close(), csc.close()]);
    io.disconnect();

    // N processes x K keys, each read twice.
    const N = 4, K = 1000;
    for (let i = 0; i < K; i++) await redis.client.set(`b:k${i}`, `v${i}`);
    let before = await gets(redis);
    await readers('near', redis.url, path.join(dir, 'm.kv'), N, K);
    metrics.nearReads = (await gets(redis)) - before;
    before = await gets(redis);
    await readers('csc', redis.url, null, N, K);
    metrics.cscReads = (await gets(redis)) - before;
    metrics.processes = N;
    metrics.keys = K;

    // A Redis restart: SIGKILL, a new server on the same port, until the tier serves again.
    const c = await createNearCache({ ...options, redis: { url: redis.url, socket: { reconnectStrategy: () => 10 } }, path: path.join(dir, 'r.kv') });
    const port = redis.port;
    await redis.kill();
    while (c.stats().serving) await new Promise((r) => setTimeout(r, 1));
    const started = process.hrtime.bigint();
    redis = await startRedis([], port);
    const up = Number(process.hrtime.bigint() - started);
    while (!c.stats().serving) await new Promise((r) => setTimeout(r, 1));
    metrics.restartServing = Number(process.hrtime.bigint() - started);
    metrics.restartRedisUp = up;
    await c.close();
  } finally {
    redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return metrics;
}

module.exports = { scenarios: { near } };
