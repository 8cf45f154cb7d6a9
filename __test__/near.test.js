'use strict';
// The near cache in front of Redis (lib/redis.js), against a redis-server each test starts on
// 127.0.0.1 and stops. Two "machines" are two store files; several processes share one.
// Waits are for states (an invalidation counted, the listener role taken), never for time.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { redisInstalled, startRedis } = require('./redis');
const { createNearCache } = require('../lib/redis');

const skip = redisInstalled() ? false : 'redis-server is not installed (apt-get install redis-server)';
const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const ROOT = path.join(__dirname, '..');

/** Resolves once `check()` is true, polling every 5 ms (a bound only against a hang). */
async function until(check, what, limit = 20_000) {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > limit) throw new Error(`never: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function withRedis(fn) {
  const redis = await startRedis();
  const dir = fs.mkdtempSync(path.join(base, 'skv-near-'));
  try {
    await fn(redis, dir);
  } finally {
    redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** Server-side count of a command since the server started (INFO commandstats). */
async function calls(redis, command) {
  const info = await redis.client.info('commandstats');
  const m = new RegExp(`cmdstat_${command}:calls=(\\d+)`).exec(info);
  return m ? Number(m[1]) : 0;
}

/**
 * A child process running `body` with `cache` made from `options` (JSON, and `afterRead`: the
 * source of an `_afterRead` hook); its stdout lines.
 */
function child(options, body, afterRead = 'undefined') {
  const p = spawn(process.execPath, ['-e', `
    const { createNearCache } = require(${JSON.stringify(path.join(ROOT, 'lib/redis.js'))});
    const { openStore } = require(${JSON.stringify(ROOT)});
    (async () => {
      const cache = await createNearCache({ ...${JSON.stringify(options)}, _afterRead: ${afterRead} });
      const say = (x) => process.stdout.write(JSON.stringify(x) + '\\n');
      ${body}
    })().catch((e) => { console.error(e); process.exit(1); });
  `], { stdio: ['pipe', 'pipe', 'inherit'] });
  const lines = [];
  let buffered = '';
  p.stdout.on('data', (d) => {
    buffered += d;
    let nl;
    while ((nl = buffered.indexOf('\n')) >= 0) {
      lines.push(JSON.parse(buffered.slice(0, nl)));
      buffered = buffered.slice(nl + 1);
    }
  });
  p.exited = new Promise((resolve) => p.once('exit', (code, signal) => resolve({ code, signal })));
  p.lines = lines;
  return p;
}

/** Resolves once `cache`'s machine has received `n` invalidations in all (a count, not a time). */
const told = (cache, n, what) => until(() => cache.stats().invalidations >= n, what);

test('a write on machine B reaches machine A: A never serves the old value after the invalidation arrived', { skip }, () => withRedis(async (redis, dir) => {
  const options = { redis: redis.url, prefix: 'app:', maxBytes: 8 << 20 };
  const a = await createNearCache({ ...options, path: path.join(dir, 'a.kv') });
  const b = await createNearCache({ ...options, path: path.join(dir, 'b.kv') });
  try {
    assert.equal(a.stats().listener, true);
    let n = a.stats().invalidations;
    assert.equal(await a.get('user:1'), undefined);
    await b.set('user:1', { name: 'ada', tags: new Set(['x']) });
    await told(a, ++n, "A told of B's first write");
    assert.deepEqual(await a.get('user:1'), { name: 'ada', tags: new Set(['x']) });
    const reads = a.stats().redisReads;
    assert.deepEqual(await a.get('user:1'), { name: 'ada', tags: new Set(['x']) });
    assert.equal(a.stats().redisReads, reads, 'the second get is a local hit');
    assert.ok(a.stats().localHits >= 1);

    await b.set('user:1', { name: 'grace' });
    await told(a, ++n, "A told of B's second write");
    assert.deepEqual(await a.get('user:1'), { name: 'grace' });
    await b.delete('user:1');
    await told(a, ++n, "A told of B's delete");
    assert.equal(await a.get('user:1'), undefined);
    assert.equal(await redis.client.exists('app:user:1'), 0);
  } finally {
    await a.close();
    await b.close();
  }
}));

test("foreign writes and deletes (codec 'string', a raw Redis client) remove the local copy", { skip }, () => withRedis(async (redis, dir) => {
  const cache = await createNearCache({ redis: redis.url, path: path.join(dir, 'a.kv'), prefix: 'svc:', codec: 'string' });
  try {
    let n = cache.stats().invalidations;
    await redis.client.set('svc:greeting', 'hello');
    await told(cache, ++n, 'told of the first SET');
    assert.equal(await cache.get('greeting'), 'hello');
    assert.equal(await cache.get('greeting'), 'hello');
    const reads = cache.stats().redisReads;
    await redis.client.set('svc:greeting', 'bonjour');
    await told(cache, ++n, 'told of the foreign SET');
    assert.equal(await cache.get('greeting'), 'bonjour');
    assert.equal(cache.stats().redisReads, reads + 1);
    await redis.client.del('svc:greeting');
    await told(cache, ++n, 'told of the foreign DEL');
    assert.equal(await cache.get('greeting'), undefined);
    await assert.rejects(cache.set('greeting', 42), TypeError);
    await cache.set('greeting', 'hi');
    assert.equal(await redis.client.get('svc:greeting'), 'hi', 'other services read plain strings');
    // A key that expires in Redis expires locally no later.
    await redis.client.set('svc:brief', 'x', 'PX', 150);
    await told(cache, n + 2, 'told of the SET of brief');
    assert.equal(await cache.get('brief'), 'x');
    await until(async () => (await cache.get('brief')) === undefined, 'brief expired locally too');
  } finally {
    await cache.close();
  }
}));

test('FLUSHALL fences everything local: nothing from before it is served', { skip }, () => withRedis(async (redis, dir) => {
  const cache = await createNearCache({ redis: redis.url, path: path.join(dir, 'a.kv'), codec: 'string' });
  try {
    const n = cache.stats().invalidations;
    await redis.client.set('k', 'v');
    await told(cache, n + 1, 'told of the SET');
    assert.equal(await cache.get('k'), 'v');
    const flushes = cache.stats().flushes;
    await redis.client.flushall();
    await until(() => cache.stats().flushes > flushes && cache.stats().serving, 'a new generation');
    assert.equal(await cache.get('k'), undefined);
  } finally {
    await cache.close();
  }
}));

test('the fill race: a value read before a write whose invalidation came first is not stored', { skip }, () => withRedis(async (redis, dir) => {
  let race = true;
  let cache;
  const options = {
    redis: redis.url, path: path.join(dir, 'a.kv'), prefix: 'r:', codec: 'string',
    // Between the miss's GET (v1) and its store: the key changes, and its invalidation arrives.
    async _afterRead() {
      if (!race) return;
      race = false;
      const seen = cache.stats().invalidations;
      await redis.client.set('r:k', 'v2');
      await told(cache, seen + 1, 'the invalidation of v2 arrived');
    },
  };
  cache = await createNearCache(options);
  try {
    const n = cache.stats().invalidations;
    await redis.client.set('r:k', 'v1');
    await told(cache, n + 1, 'the invalidation of v1 arrived'); // not mistaken for v2's below
    assert.equal(await cache.get('k'), 'v1', 'the read itself returns what it read');
    assert.equal(await cache.get('k'), 'v2', 'v1 was not stored: the next get reads again');
    assert.equal(await cache.get('k'), 'v2');
    assert.equal(cache.stats().redisReads, 2);
  } finally {
    await cache.close();
  }
}));

test('getOrSet: one loader across machines, the other machine waits for its value', { skip }, () => withRedis(async (redis, dir) => {
  const options = { redis: redis.url, prefix: 'g:' };
  const a = await createNearCache({ ...options, path: path.join(dir, 'a.kv') });
  const b = await createNearCache({ ...options, path: path.join(dir, 'b.kv') });
  try {
    let open;
    const gate = new Promise((r) => (open = r));
    const calls = { a: 0, b: 0 };
    const fromA = a.getOrSet('report', async () => {
      calls.a++;
      await gate;
      return { rows: 3 };
    }, { ttl: 60 });
    await until(async () => (await redis.client.exists('skv-near-lock:g:report')) === 1, "A holds the machines' lock");
    const fromB = b.getOrSet('report', async () => {
      calls.b++;
      return { rows: -1 };
    });
    // B missed, found the lock taken, and read again while waiting: only then A finishes.
    await until(() => b.stats().redisReads >= 2, 'B waits on the lock');
    open();
    assert.deepEqual(await fromA, { rows: 3 });
    assert.deepEqual(await fromB, { rows: 3 });
    assert.deepEqual(calls, { a: 1, b: 0 });
    assert.ok((await redis.client.pttl('g:report')) > 0, 'stored in Redis with its ttl');
    assert.equal(await redis.client.exists('skv-near-lock:g:report'), 0, 'the lock is released');
  } finally {
    await a.close();
    await b.close();
  }
}));

test("a listener's close() hands its role over; another configuration shares the local tier apart", { skip }, () => withRedis(async (redis, dir) => {
  const file = path.join(dir, 'h.kv');
  const first = await createNearCache({ redis: redis.url, path: file, codec: 'string' });
  const second = await createNearCache({ redis: redis.url, path: file, codec: 'string' });
  try {
    assert.equal(first.stats().listener, true);
    assert.equal(second.stats().listener, false);
    await first.close();
    await until(() => second.stats().listener && second.stats().serving, 'the second took over');
    const n = second.stats().invalidations;
    await redis.client.set('k', 'v');
    await told(second, n + 1, 'invalidations reach the new listener');
    assert.equal(await second.get('k'), 'v');
    // Another prefix on the same store: a listener of its own, keys of its own.
    const other = await createNearCache({ redis: redis.url, path: file, codec: 'string', prefix: 'o:' });
    try {
      assert.equal(other.stats().listener, true);
      await other.set('k', 'w');
      assert.equal(await other.get('k'), 'w');
      assert.equal(await second.get('k'), 'v');
      assert.equal(await redis.client.get('o:k'), 'w');
    } finally {
      await other.close();
    }
  } finally {
    await first.close();
    await second.close();
  }
}));

test('concurrent misses for one key from several processes of a machine make one Redis read', { skip }, () => withRedis(async (redis, dir) => {
  const file = path.join(dir, 'm.kv');
  await redis.client.set('p:hot', Buffer.from([0x92, 0x01, 0x02])); // [1, 2] in msgpack
  const gets = await calls(redis, 'get');
  const N = 4;
  // Each child says it is ready, waits for the go, gets the key. The one that reads Redis
  // holds its store until every child has asked (the others then wait on its placeholder).
  // Every child counts itself in a side store before its get; the one that reads Redis waits
  // (in the hook, between its read and its store) until all have asked: the misses overlap.
  const side = path.join(dir, 'side.kv');
  const hook = `async () => { const s = openStore(${JSON.stringify(side)}); while ((s.get('asked') ?? 0) < ${N}) await new Promise((r) => setTimeout(r, 2)); }`;
  const kids = Array.from({ length: N }, () => child({ redis: redis.url, path: file, prefix: 'p:' }, `
    say('ready');
    const next = () => new Promise((r) => process.stdin.once('data', r));
    await next(); // go
    openStore(${JSON.stringify(side)}).increment('asked');
    say(await cache.get('hot'));
    await next(); // all have answered: close (a listener that closes fences the machine)
    process.stdin.destroy(); // else it keeps the process alive
    await cache.close();
  `, hook));
  await until(() => kids.every((k) => k.lines.length === 1), 'children ready');
  for (const k of kids) k.stdin.write('go\n');
  await until(() => kids.every((k) => k.lines.length === 2), 'every child has the value');
  for (const k of kids) k.stdin.write('bye\n');
  const results = await Promise.all(kids.map(async (k) => {
    assert.deepEqual(await k.exited, { code: 0, signal: null });
    return k.lines[1];
  }));
  assert.deepEqual(results, Array(N).fill([1, 2]));
  assert.equal(await calls(redis, 'get') - gets, 1, 'one GET for the machine');
}));

test('Redis killed and restarted empty: nothing stale is served, and get rejects while it is down', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(base, 'skv-near-'));
  let redis = await startRedis();
  const port = redis.port;
  const cache = await createNearCache({ redis: { url: redis.url, socket: { reconnectStrategy: () => 20 } }, path: path.join(dir, 'a.kv'), prefix: 'x:', codec: 'string' });
  try {
    await redis.client.set('x:k', 'old');
    assert.equal(await cache.get('k'), 'old');
    assert.equal(await cache.get('k'), 'old');
    await redis.kill();
    await until(() => !cache.stats().serving, 'the local tier fenced');
    await assert.rejects(cache.get('k'), { code: 'ERR_KV_REDIS' });
    redis = await startRedis([], port);
    await until(() => cache.stats().serving, 'subscribed again');
    assert.equal(await cache.get('k'), undefined, 'the restarted Redis has no k: the old local copy is not served');
  } finally {
    await cache.close();
    redis.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('serveStale: while Redis is down, a get answers with the last local value instead', { skip }, async () => {
  const dir = fs.mkdtempSync(path.join(base, 'skv-near-'));
  const redis = await startRedis();
  const cache = await createNearCache({ redis: { url: redis.url, socket: { reconnectStrategy: () => 20 } }, path: path.join(dir, 'a.kv'), codec: 'string', serveStale: true });
  try {
    const n = cache.stats().invalidations;
    await redis.client.set('k', 'v');
    await told(cache, n + 1, 'told of the SET'); // so that it cannot delete the copy below
    assert.equal(await cache.get('k'), 'v');
    await redis.kill();
    await until(() => !cache.stats().serving, 'the local tier fenced');
    assert.equal(await cache.get('k'), 'v');
    assert.equal(await cache.get('k'), 'v', 'and again');
    await assert.rejects(cache.get('absent'), { code: 'ERR_KV_REDIS' }, 'a key never read still rejects');
  } finally {
    await cache.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the listener SIGKILLed: another process takes its role, and invalidations go on', { skip }, (t) => withRedis(async (redis, dir) => {
  const file = path.join(dir, 'm.kv');
  const options = { redis: redis.url, path: file, prefix: 'l:', codec: 'string' };
  const first = child(options, `say(cache.stats().listener); setInterval(() => {}, 1000);`);
  await until(() => first.lines.length === 1, 'the first process started');
  assert.equal(first.lines[0], true, 'the first process listens');
  const cache = await createNearCache(options);
  try {
    assert.equal(cache.stats().listener, false);
    await redis.client.set('l:k', 'v1');
    assert.equal(await cache.get('k'), 'v1');
    const generation = cache.stats().flushes;
    first.kill('SIGKILL');
    await first.exited;
    const killed = Date.now();
    // Subscribed: a new generation, with a live heartbeat.
    await until(() => cache.stats().listener && cache.stats().serving && cache.stats().flushes > generation, 'this process listens');
    const took = Date.now() - killed;
    const seen = cache.stats().invalidations;
    await redis.client.set('l:k', 'v2');
    await until(() => cache.stats().invalidations > seen, 'invalidations reach the new listener');
    assert.equal(await cache.get('k'), 'v2');
    t.diagnostic(`takeover (subscribed again) ${took} ms after the kill`);
  } finally {
    await cache.close();
  }
}));

test('close() leaves no connection or timer behind: the process exits by itself', { skip }, () => withRedis(async (redis, dir) => {
  const p = child({ redis: redis.url, path: path.join(dir, 'c.kv') }, `
    await cache.set('a', 1);
    say(await cache.get('a'));
    await cache.close();
    say(await cache.get('a').catch((e) => e.code));
  `);
  const { code, signal } = await p.exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
  assert.deepEqual(p.lines, [1, 'ERR_KV_CLOSED']);
}));

test('a named store as the local tier (the threads of one process): cached, then invalidated', { skip }, () => withRedis(async (redis) => {
  const cache = await createNearCache({ redis: redis.url, name: `near-named-${redis.port}`, codec: 'string' });
  try {
    let n = cache.stats().invalidations;
    await redis.client.set('t', 'one');
    await told(cache, ++n, 'told of the SET');
    assert.equal(await cache.get('t'), 'one');
    const reads = cache.stats().redisReads;
    assert.equal(await cache.get('t'), 'one');
    assert.equal(cache.stats().redisReads, reads, 'a local hit');
    await redis.client.set('t', 'two');
    await told(cache, ++n, 'told of the second SET');
    assert.equal(await cache.get('t'), 'two');
  } finally {
    await cache.close();
  }
}));

test('bad options are TypeErrors, and no connection is left open', async () => {
  await assert.rejects(createNearCache(), TypeError);
  await assert.rejects(createNearCache({ redis: 'redis://127.0.0.1:1' }), /either path .* or name/);
  await assert.rejects(createNearCache({ redis: 'redis://127.0.0.1:1', name: 'n', codec: 'json' }), TypeError);
  await assert.rejects(createNearCache({ redis: 'redis://127.0.0.1:1', name: 'n', ttl: -1 }), RangeError);
  await assert.rejects(createNearCache({ redis: { url: 'redis://127.0.0.1:1', socket: { reconnectStrategy: false } }, name: 'n' }), { code: 'ERR_KV_REDIS' });
});

test("CommonJS and ESM entries: require('shared-kv-store/redis') and import() give the same function", async () => {
  const esm = await import('shared-kv-store/redis');
  const cjs = require('shared-kv-store/redis');
  assert.equal(esm.createNearCache, cjs.createNearCache);
  assert.equal(esm.default, cjs.createNearCache);
  assert.equal(typeof esm.NearCache, 'function');
});
