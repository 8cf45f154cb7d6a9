'use strict';
// The near cache (`require('shared-kv-store/redis')`): Redis is the truth, and one evicting
// store per machine (a store file, or a named store for the threads of one process) holds what
// its processes read. Redis's own invalidation keeps it coherent: one process of the machine,
// the listener (elected by a lock in the store), holds a RESP3 connection with
// `CLIENT TRACKING ON BCAST PREFIX <prefix>`, and deletes each key Redis says changed, for
// every process at once. README "Many machines" tells the whole design; in short:
//  - a local entry is [generation, expiresAt, value]. The listener bumps the generation (the
//    fence) whenever its subscription is (re)made or lost, and stamps a heartbeat next to it
//    every HEARTBEAT_MS. A reader serves a local entry only of the current generation, and
//    only while the heartbeat is fresh: with no listener subscribed, nothing local is served;
//  - a miss installs a placeholder before it reads Redis, and stores what it read only by
//    compareAndSet against that placeholder: an invalidation that arrived in between deleted
//    the placeholder, so the value read before it is never cached (the fill race). Other
//    misses of the key, in any process of the machine, wait for that one read;
//  - getOrSet runs one loader per key for the machine (a lock in the store), and across
//    machines (a lock in Redis, SET NX PX).
// The client library is node-redis v5 (`@redis/client`): it speaks RESP3 and hands over its
// invalidation pushes. (ioredis drops pub/sub messages whose payload is an array, which every
// RESP2 invalidation message is.) It is an optional peer dependency: loaded on first use.
const { randomBytes } = require('node:crypto');
const { createStore, openStore } = require('..');
const { Encoder, decode } = require('./codec');

const HEARTBEAT_MS = 100;
/** A heartbeat older than this: the listener is gone or stalled, and nothing local is served. */
const STALE_MS = 500;
/** How often a process that is not the listener tries to become it. */
const ELECT_MS = 200;
/** A placeholder older than this was left by a loader that died: the next miss replaces it. */
const PLACEHOLDER_MS = 5000;
const STATE = 'm:state'; // [generation, heartbeat ms]
const INVALIDATIONS = 'm:invalidations';
const LISTENER = 'm:listener';

function redisError(message, cause) {
  const err = new Error(message, cause === undefined ? undefined : { cause });
  err.code = 'ERR_KV_REDIS';
  return err;
}

function loadClientLibrary() {
  try {
    return require('@redis/client');
  } catch (e) {
    if (e.code !== 'MODULE_NOT_FOUND') throw e;
    throw redisError("shared-kv-store/redis needs node-redis v5: npm install @redis/client (or redis@5)", e);
  }
}

function checkOptions(options) {
  if (options === null || typeof options !== 'object') throw new TypeError('createNearCache expects an options object');
  const { redis, path, name, maxBytes = 256 * 1024 * 1024, prefix = '', codec = 'msgpack', ttl = 0, serveStale = false } = options;
  if (typeof redis !== 'string' && (redis === null || typeof redis !== 'object')) {
    throw new TypeError('createNearCache: redis must be a URL or node-redis client options');
  }
  if ((path === undefined) === (name === undefined)) {
    throw new TypeError('createNearCache: give either path (a store file, for every process of the machine) or name (a named store, for the threads of one process)');
  }
  if (typeof prefix !== 'string') throw new TypeError('createNearCache: prefix must be a string');
  if (codec !== 'msgpack' && codec !== 'string') throw new TypeError(`createNearCache: codec must be 'msgpack' or 'string', got ${String(codec)}`);
  checkTtl(ttl, 'createNearCache');
  // `_afterRead(key)`: awaited between a miss's Redis read and its store (tests only).
  return { redis, path, name, maxBytes, prefix, codec, ttl, serveStale: Boolean(serveStale), _afterRead: options._afterRead };
}

function checkTtl(ttl, what) {
  if (typeof ttl !== 'number' || !(ttl >= 0) || !Number.isFinite(ttl)) {
    throw new RangeError(`${what}: ttl must be a number of seconds >= 0 (0: none), got ${String(ttl)}`);
  }
}

function checkKey(key) {
  if (typeof key !== 'string' || key === '') throw new TypeError('a near cache key must be a non-empty string');
}

const isEntry = (e) => Array.isArray(e) && e.length === 3;
const isPlaceholder = (e) => e !== null && typeof e === 'object' && !Array.isArray(e) && typeof e.p === 'string';

class NearCache {
  #opts;
  #store;
  #client; // commands: GET, SET, DEL, the getOrSet lock
  #binary; // the same client, replies as Buffers
  #tracker = null; // the listener's tracking connection, while this process is the listener
  #heartbeat = null;
  #subscribed = () => {};
  #elector = null;
  #closed = false;
  #encoder = new Encoder();
  #stats = { localHits: 0, localMisses: 0, redisReads: 0 };

  constructor(opts, store, client) {
    this.#opts = opts;
    this.#store = store;
    this.#client = client;
    const { RESP_TYPES } = loadClientLibrary();
    this.#binary = client.withTypeMapping({ [RESP_TYPES.BLOB_STRING]: Buffer });
  }

  /** Starts electing: this process listens now if no one does, else keeps asking. */
  async start() {
    await this.#elect();
    this.#elector = setInterval(() => this.#elect().catch(() => {}), ELECT_MS);
    this.#elector.unref();
  }

  // ---- the listener --------------------------------------------------------------------------

  async #elect() {
    if (this.#closed || this.#tracker !== null) return;
    // A lock whose holder's process died is free at once; a live holder keeps it (no lease
    // to renew: 2^31 ms).
    if (!this.#store.lock(LISTENER, 0, { lease: 2 ** 31 - 1 })) return;
    const { createClient } = loadClientLibrary();
    // A PING a second: a connection that died without a word is noticed (and fenced) too.
    const tracker = createClient({ ...this.#clientOptions(), RESP: 3, emitInvalidate: true, pingInterval: 1000 });
    this.#tracker = tracker;
    tracker.on('error', () => this.#fence());
    tracker.on('end', () => this.#fence());
    tracker.on('reconnecting', () => this.#fence());
    tracker.on('invalidate', (key) => this.#invalidate(key));
    tracker.on('ready', () => {
      this.#subscribe(tracker).catch(() => this.#fence());
    });
    // Resolved by the first subscription, or the first connection error: a cache that just
    // became the listener starts serving at once, and Redis being away does not hold it up
    // (the client keeps reconnecting, and 'ready' subscribes).
    const first = new Promise((resolve) => {
      this.#subscribed = resolve;
      tracker.once('error', resolve);
    });
    tracker.connect().catch(() => this.#fence());
    return first;
  }

  /** On every (re)connection: tracking in BCAST mode for the prefix, then a new generation. */
  async #subscribe(tracker) {
    // The handshake turned tracking on in the default mode; BCAST needs it off first.
    await tracker.sendCommand(['CLIENT', 'TRACKING', 'OFF']);
    const args = ['CLIENT', 'TRACKING', 'ON', 'BCAST'];
    if (this.#opts.prefix !== '') args.push('PREFIX', this.#opts.prefix);
    await tracker.sendCommand(args);
    if (this.#tracker !== tracker) return;
    // Subscribed: what was stored before may have changed unseen. A new generation fences it.
    this.#bump(true);
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#beat(), HEARTBEAT_MS);
    this.#heartbeat.unref();
    this.#subscribed();
  }

  /** Nothing local is served until the subscription is made again. */
  #fence() {
    clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    if (this.#tracker !== null) this.#bump(false);
  }

  /** A new generation, live (heartbeat now) or fenced (heartbeat 0). */
  #bump(live) {
    this.#store.update(STATE, (s) => [(isState(s) ? s[0] : 0) + 1, live ? Date.now() : 0]);
  }

  #beat() {
    this.#store.update(STATE, (s) => (isState(s) ? [s[0], s[1] === 0 ? 0 : Date.now()] : s));
  }

  #invalidate(key) {
    if (key === null) {
      // Redis flushed, or dropped what it tracked: everything local is suspect.
      this.#bump(this.#heartbeat !== null);
      return;
    }
    const k = String(key);
    if (k.startsWith(this.#opts.prefix)) this.#store.delete('k:' + k.slice(this.#opts.prefix.length));
    this.#store.increment(INVALIDATIONS);
  }

  // ---- reads ---------------------------------------------------------------------------------

  /** The generation local entries must carry to be served now, or -1 if none may be. */
  #servable() {
    const s = this.#store.get(STATE);
    if (!isState(s) || s[1] === 0 || Date.now() - s[1] > STALE_MS) return -1;
    return s[0];
  }

  async get(key) {
    checkKey(key);
    this.#open();
    const k = 'k:' + key;
    const gen = this.#servable();
    if (gen >= 0) {
      const e = this.#store.get(k);
      if (isEntry(e) && e[0] === gen && (e[1] === 0 || e[1] > Date.now())) {
        this.#stats.localHits++;
        return e[2];
      }
    }
    this.#stats.localMisses++;
    return this.#load(key, k);
  }

  /** One Redis read per key for the machine; stores what it read unless invalidated meanwhile. */
  async #load(key, k) {
    const deadline = Date.now() + PLACEHOLDER_MS;
    for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
      const gen = this.#servable();
      const cur = this.#store.get(k);
      if (gen >= 0 && isEntry(cur) && cur[0] === gen && (cur[1] === 0 || cur[1] > Date.now())) return cur[2];
      if (isPlaceholder(cur) && Date.now() - cur.t < PLACEHOLDER_MS && Date.now() < deadline) {
        // Another process (or call) is reading it: wait for its result (or the placeholder's
        // end). Polled (1 to 20 ms): watching would make every write of the store log.
        await new Promise((r) => setTimeout(r, wait));
        continue;
      }
      const mine = { p: randomBytes(9).toString('base64'), t: Date.now() };
      if (!this.#store.compareAndSet(k, cur, mine)) continue;
      let value;
      try {
        value = await this.#read(key);
        if (this.#opts._afterRead) await this.#opts._afterRead(key); // tests: the fill race
      } catch (err) {
        this.#store.compareAndSet(k, mine, { p: mine.p, t: 0 }); // abandoned: the next one reads
        if (this.#opts.serveStale && isEntry(cur)) return cur[2];
        throw err;
      }
      // Stored only if no invalidation (or flush) came since the placeholder went in, and only
      // under the generation that was live before the read.
      const stored = value === undefined || gen < 0
        ? { p: mine.p, t: 0 }
        : [gen, this.#opts.ttl > 0 ? Date.now() + this.#opts.ttl * 1000 : 0, value];
      this.#store.compareAndSet(k, mine, stored);
      return value;
    }
  }

  /** The value of `key` in Redis (undefined if absent). */
  async #read(key) {
    this.#stats.redisReads++;
    let raw;
    try {
      raw = await (this.#opts.codec === 'string' ? this.#client : this.#binary).get(this.#opts.prefix + key);
    } catch (err) {
      throw redisError(`Redis cannot be read: ${err.message}`, err);
    }
    if (raw === null) return undefined;
    return this.#opts.codec === 'string' ? raw : decode(raw);
  }

  // ---- writes --------------------------------------------------------------------------------

  async set(key, value, options = {}) {
    checkKey(key);
    this.#open();
    const ttl = options.ttl ?? this.#opts.ttl;
    checkTtl(ttl, 'set');
    let bytes;
    if (this.#opts.codec === 'string') {
      if (typeof value !== 'string') throw new TypeError("set: with codec 'string' the value must be a string");
      bytes = value;
    } else {
      if (value === undefined) throw new TypeError('set: the value must not be undefined');
      bytes = Buffer.from(this.#encoder.buf.subarray(0, this.#encoder.encode(value)));
    }
    try {
      await this.#client.set(this.#opts.prefix + key, bytes, ttl > 0 ? { expiration: { type: 'PX', value: Math.round(ttl * 1000) } } : undefined);
    } catch (err) {
      throw redisError(`Redis cannot be written: ${err.message}`, err);
    }
    // This machine's copy goes now; every machine's (this one's too) when the invalidation
    // comes. A miss that read the old value before this write had its placeholder in: it is
    // deleted here, so that value is not stored.
    this.#store.delete('k:' + key);
    return true;
  }

  async delete(key) {
    checkKey(key);
    this.#open();
    let n;
    try {
      n = await this.#client.del(this.#opts.prefix + key);
    } catch (err) {
      throw redisError(`Redis cannot be written: ${err.message}`, err);
    }
    this.#store.delete('k:' + key);
    return n > 0;
  }

  /**
   * The cached value, or one loader's: one per key for the machine (a lock in the store), and
   * across machines (a lock in Redis), the others waiting for its value.
   */
  async getOrSet(key, loader, options = {}) {
    checkKey(key);
    if (typeof loader !== 'function') throw new TypeError('getOrSet: loader must be a function');
    const { ttl = this.#opts.ttl, timeout = 10_000 } = options;
    checkTtl(ttl, 'getOrSet');
    const deadline = Date.now() + timeout;
    let value = await this.get(key);
    if (value !== undefined) return value;
    // One process of the machine goes on; the others wait for the lock, then read.
    const local = 'm:load:' + key;
    while (!this.#store.lock(local, 0, { lease: timeout })) {
      if (Date.now() >= deadline) throw Object.assign(new Error(`getOrSet: no value for ${JSON.stringify(key)} within ${timeout} ms`), { code: 'ERR_KV_TIMEOUT' });
      await new Promise((r) => setTimeout(r, 10));
      value = await this.get(key);
      if (value !== undefined) return value;
    }
    try {
      const lockKey = `skv-near-lock:${this.#opts.prefix}${key}`; // outside the tracked prefix
      const token = randomBytes(9).toString('base64');
      for (;;) {
        const got = await this.#client.set(lockKey, token, { condition: 'NX', expiration: { type: 'PX', value: timeout } }).catch((err) => {
          throw redisError(`Redis cannot be written: ${err.message}`, err);
        });
        if (got === 'OK') {
          try {
            value = await this.get(key);
            if (value === undefined) {
              value = await loader(key);
              if (value !== undefined) await this.set(key, value, { ttl });
            }
            return value;
          } finally {
            // Only our own lock (it may have expired and been taken since).
            await this.#client.eval("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end", { keys: [lockKey], arguments: [token] }).catch(() => {});
          }
        }
        // Another machine loads it: wait for its value (or its lock's end).
        if (Date.now() >= deadline) throw Object.assign(new Error(`getOrSet: no value for ${JSON.stringify(key)} within ${timeout} ms`), { code: 'ERR_KV_TIMEOUT' });
        await new Promise((r) => setTimeout(r, 20));
        value = await this.get(key);
        if (value !== undefined) return value;
      }
    } finally {
      this.#store.release(local);
    }
  }

  /** This process's counts, and the machine's invalidations and flushes (generations). */
  stats() {
    const s = this.#store.get(STATE);
    return {
      ...this.#stats,
      invalidations: this.#store.get(INVALIDATIONS) ?? 0,
      flushes: isState(s) ? s[0] : 0,
      listener: this.#tracker !== null,
      serving: this.#servable() >= 0,
    };
  }

  /** Closes the connections and timers; a listener hands its role over (another process takes it). */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#elector);
    clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    const tracker = this.#tracker;
    if (tracker !== null) {
      this.#bump(false); // no heartbeat until another process subscribes
      this.#tracker = null;
      this.#store.release(LISTENER);
      await tracker.close().catch(() => tracker.destroy());
    }
    await this.#client.close().catch(() => this.#client.destroy());
  }

  #open() {
    if (this.#closed) throw Object.assign(new Error('the near cache is closed'), { code: 'ERR_KV_CLOSED' });
  }

  #clientOptions() {
    const r = this.#opts.redis;
    return typeof r === 'string' ? { url: r } : { ...r };
  }
}

function isState(s) {
  return Array.isArray(s) && s.length === 2 && Number.isSafeInteger(s[0]);
}

/** The near cache: see README "Many machines". */
async function createNearCache(options) {
  const opts = checkOptions(options);
  const { createClient } = loadClientLibrary();
  const storeOptions = { maxBytes: opts.maxBytes, onFull: 'evict' };
  const store = opts.path !== undefined ? openStore(opts.path, storeOptions) : createStore(opts.name, storeOptions);
  const base = typeof opts.redis === 'string' ? { url: opts.redis } : { ...opts.redis };
  // Commands fail at once while Redis is unreachable (no queue): get rejects, or serves stale.
  const client = createClient({ ...base, RESP: 3, disableOfflineQueue: true });
  client.on('error', () => {}); // each command reports its own failure
  try {
    await client.connect();
  } catch (err) {
    try {
      client.destroy();
    } catch {
      // never connected: nothing to close
    }
    throw redisError(`cannot connect to Redis: ${err.message}`, err);
  }
  const cache = new NearCache(opts, store, client);
  await cache.start();
  return cache;
}

module.exports = { createNearCache, NearCache };
