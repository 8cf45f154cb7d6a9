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
const FLUSHES = 'm:flushes';
const CONFIG = 'm:config';
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
/** `e` is an entry of generation `gen` that has not expired. */
const fresh = (e, gen) => gen !== null && isEntry(e) && e[0] === gen && (e[1] === 0 || e[1] > Date.now());
const newGeneration = () => randomBytes(6).readUIntBE(0, 6);
const isPlaceholder = (e) => e !== null && typeof e === 'object' && !Array.isArray(e) && typeof e.p === 'string';

class NearCache {
  #opts;
  #store;
  #client; // commands: GET, SET, DEL, the getOrSet lock
  #binary; // the same client, replies as Buffers
  #tracker = null; // the listener's tracking connection, while this process is the listener
  #heartbeat = null;
  #pingSent = 0; // when the PING in flight was sent (0: none)
  #generation = null; // the generation this listener made last
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
    this.#elector = setInterval(() => this.#guard(() => this.#elect()), ELECT_MS);
    this.#elector.unref();
  }

  /** Runs `fn` from a timer or an event: a failure fences rather than crashing the process. */
  #guard(fn) {
    try {
      const r = fn();
      if (r instanceof Promise) r.catch(() => this.#fence());
    } catch {
      this.#fence();
    }
  }

  // ---- the listener --------------------------------------------------------------------------

  async #elect() {
    if (this.#closed || this.#tracker !== null) return;
    // A lock whose holder's process died is free at once; a live holder keeps it.
    if (!this.#store.lock(LISTENER, 0, { lease: 2 ** 31 - 1 })) return;
    let tracker;
    try {
      // Whatever was stored under the last listener may have missed invalidations since it
      // died: fenced until this one is subscribed.
      this.#bump(false);
      const { createClient } = loadClientLibrary();
      tracker = createClient({ ...this.#clientOptions(), RESP: 3, emitInvalidate: true });
    } catch (err) {
      this.#store.release(LISTENER);
      throw err;
    }
    this.#tracker = tracker;
    tracker.on('error', () => this.#fence());
    tracker.on('end', () => this.#fence());
    tracker.on('reconnecting', () => this.#fence());
    tracker.on('invalidate', (key) => this.#guard(() => this.#invalidate(key)));
    tracker.on('ready', () => {
      this.#subscribe(tracker).catch(() => this.#resign(tracker));
    });
    // Resolved by the first subscription, or the first connection error: a cache that just
    // became the listener starts serving at once, and Redis being away does not hold it up
    // (the client keeps reconnecting, and 'ready' subscribes).
    const first = new Promise((resolve) => {
      this.#subscribed = resolve;
      tracker.once('error', resolve);
    });
    tracker.connect().catch(() => this.#resign(tracker));
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
    this.#heartbeat = setInterval(() => this.#guard(() => this.#ping(tracker)), HEARTBEAT_MS);
    this.#heartbeat.unref();
    this.#subscribed();
  }

  /**
   * The heartbeat is a PING's round trip on the tracking connection: its reply comes after
   * every invalidation Redis sent before it (one stream, read in order), so stamping the time
   * the PING was sent vouches that all writes before then were applied here. A connection
   * that died without a word, a backlog of invalidations, or a stalled event loop all stop the
   * stamps, and after STALE_MS nothing local is served. A PING unanswered for that long ends
   * the connection (and the role: the next election makes a new one).
   */
  #ping(tracker) {
    if (this.#pingSent !== 0) {
      if (Date.now() - this.#pingSent > STALE_MS) this.#resign(tracker);
      return;
    }
    const sent = Date.now();
    this.#pingSent = sent;
    tracker.sendCommand(['PING']).then(() => {
      this.#pingSent = 0;
      if (this.#tracker === tracker && this.#heartbeat !== null) this.#guard(() => this.#stamp(sent));
    }, () => {
      this.#pingSent = 0;
    });
  }

  /** Gives up the listener role and its connection; another election follows. */
  #resign(tracker) {
    if (this.#tracker !== tracker) return;
    this.#fence();
    this.#tracker = null;
    this.#pingSent = 0;
    try {
      tracker.destroy();
    } catch {
      // never opened, or closed already
    }
    this.#store.release(LISTENER);
    this.#subscribed(); // a start() waiting for this subscription goes on (serving nothing)
  }

  /** Nothing local is served until the subscription is made again. */
  #fence() {
    clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    if (this.#tracker !== null) {
      try {
        this.#bump(false);
      } catch {
        // the store refused (closed, lost): it serves nothing then either
      }
    }
  }

  /**
   * A new generation, live (stamped now) or fenced (stamp 0). Generations are random, compared
   * for equality: one that started again from a number (its entry evicted, say) could match
   * entries stored long ago.
   */
  #bump(live) {
    this.#generation = newGeneration();
    this.#store.set(STATE, [this.#generation, live ? Date.now() : 0]);
    this.#store.increment(FLUSHES);
  }

  /** The heartbeat's stamp, for this listener's live generation (rebuilt if it was evicted). */
  #stamp(sent) {
    const s = this.#store.get(STATE);
    if (!isState(s) || s[0] !== this.#generation) {
      this.#bump(true); // evicted, or overwritten: a new generation, nothing old trusted
      return;
    }
    if (s[1] !== 0 && sent > s[1]) this.#store.compareAndSet(STATE, s, [s[0], sent]);
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

  /** The generation local entries must carry to be served now, or null if none may be. */
  #servable() {
    const s = this.#store.get(STATE);
    if (!isState(s) || s[1] === 0) return null;
    const age = Date.now() - s[1];
    // A stamp from the future: the wall clock stepped back; trusted no more than an old one.
    return age > STALE_MS || age < -STALE_MS ? null : s[0];
  }

  async get(key) {
    checkKey(key);
    this.#open();
    const k = 'k:' + key;
    const gen = this.#servable();
    if (gen !== null) {
      const e = this.#store.get(k);
      if (fresh(e, gen)) {
        this.#stats.localHits++;
        return e[2];
      }
    }
    this.#stats.localMisses++;
    return this.#load(key, k);
  }

  /**
   * One Redis read per key for the machine; stored unless an invalidation came meanwhile.
   * Its result also goes to the misses that waited on it, as `{ p, t: 0, v }` (or `absent`):
   * compare-and-set against the placeholder, so no invalidation came between the read and
   * them, which is all a waiter needs, even where nothing may be stored for later gets.
   */
  async #load(key, k) {
    const deadline = Date.now() + PLACEHOLDER_MS;
    let waitedOn = null;
    for (let wait = 1; ; wait = Math.min(wait * 2, 20)) {
      const gen = this.#servable();
      const cur = this.#store.get(k);
      if (fresh(cur, gen)) return cur[2];
      if (isPlaceholder(cur)) {
        if (cur.p === waitedOn && cur.t === 0 && ('v' in cur || cur.absent === true)) return cur.v;
        if (cur.t !== 0 && Date.now() - cur.t < PLACEHOLDER_MS && Date.now() < deadline) {
          // Another process (or call) is reading it: wait for its result. Polled (1 to 20
          // ms): watching would make every write of the store log.
          waitedOn = cur.p;
          await new Promise((r) => setTimeout(r, wait));
          continue;
        }
      }
      const mine = { p: randomBytes(9).toString('base64'), t: Date.now() };
      if (!this.#store.compareAndSet(k, cur, mine)) {
        await new Promise((r) => setImmediate(r)); // changed meanwhile: look again
        continue;
      }
      let read;
      try {
        read = await this.#read(key);
        if (this.#opts._afterRead) await this.#opts._afterRead(key); // tests: the fill race
      } catch (err) {
        // The old entry back (its generation decides whether it may be served), or abandoned.
        this.#settle(k, mine, isEntry(cur) ? cur : { p: mine.p, t: 0 });
        if (this.#opts.serveStale && isEntry(cur)) return cur[2];
        throw err;
      }
      const { value, expiresAt } = read;
      // Stored only under the generation that was live before the read, and only if no
      // invalidation (or flush) came since the placeholder went in.
      const stored = value !== undefined && gen !== null
        ? [gen, expiresAt, value]
        : value === undefined ? { p: mine.p, t: 0, absent: true } : { p: mine.p, t: 0, v: value };
      this.#settle(k, mine, stored);
      return value;
    }
  }

  /** Replaces placeholder `mine` by `next` if it is still there; a refusal leaves it abandoned. */
  #settle(k, mine, next) {
    try {
      this.#store.compareAndSet(k, mine, next);
    } catch {
      // Too large for the local tier, say: the next miss reads again.
      try {
        this.#store.compareAndSet(k, mine, { p: mine.p, t: 0 });
      } catch {
        // the store is gone: nothing to leave behind
      }
    }
  }

  /** The value of `key` in Redis (undefined if absent), and when the local copy must expire. */
  async #read(key) {
    this.#stats.redisReads++;
    const client = this.#opts.codec === 'string' ? this.#client : this.#binary;
    const name = this.#opts.prefix + key;
    let raw, pttl;
    try {
      // One round trip (node-redis pipelines commands sent together). Not atomic, and need
      // not be: a change between the two invalidates the placeholder, so nothing is stored.
      [raw, pttl] = await Promise.all([client.get(name), client.pTTL(name)]);
    } catch (err) {
      throw redisError(`Redis cannot be read: ${err.message}`, err);
    }
    if (raw === null) return { value: undefined, expiresAt: 0 };
    // The local copy expires no later than the key does in Redis, nor than the default ttl.
    const now = Date.now();
    const limits = [this.#opts.ttl > 0 ? now + this.#opts.ttl * 1000 : Infinity, pttl >= 0 ? now + pttl : Infinity];
    const expiresAt = Math.min(...limits);
    return { value: this.#opts.codec === 'string' ? raw : decode(raw), expiresAt: expiresAt === Infinity ? 0 : expiresAt };
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
    return {
      ...this.#stats,
      invalidations: this.#store.get(INVALIDATIONS) ?? 0,
      flushes: this.#store.get(FLUSHES) ?? 0,
      listener: this.#tracker !== null,
      serving: this.#servable() !== null,
    };
  }

  /**
   * Closes the connections and timers; a listener hands its role over (another process takes
   * it). The store stays open: it is the thread's one object for its path (openStore).
   */
  async close() {
    if (this.#closed) return;
    this.#closed = true;
    clearInterval(this.#elector);
    clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    const tracker = this.#tracker;
    if (tracker !== null) {
      try {
        this.#bump(false); // nothing served until another process subscribes
      } catch {
        // the store refused: it serves nothing then either
      }
      this.#tracker = null;
      this.#store.release(LISTENER);
      try {
        tracker.destroy(); // nothing of it to flush, and a PING in flight must not hold it
      } catch {
        // never opened, or closed already
      }
    }
    // Commands in flight may finish; a connection that does not answer is cut.
    const closing = Promise.resolve().then(() => this.#client.close()).catch(() => {});
    const cut = new Promise((r) => setTimeout(r, 1000).unref()).then(() => {
      try {
        this.#client.destroy();
      } catch {
        // closed already
      }
    });
    await Promise.race([closing, cut]);
  }

  #open() {
    if (this.#closed) throw Object.assign(new Error('the near cache is closed'), { code: 'ERR_KV_CLOSED' });
  }

  #clientOptions() {
    const r = this.#opts.redis;
    return typeof r === 'string' ? { url: r } : { ...r };
  }
}

function sameConfig(a, b) {
  return a !== null && typeof a === 'object' && a.prefix === b.prefix && a.codec === b.codec;
}

function isState(s) {
  return Array.isArray(s) && s.length === 2 && Number.isSafeInteger(s[0]) && Number.isSafeInteger(s[1]);
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
  // One near cache per local tier: its keys carry neither the prefix nor the codec, so a
  // second configuration would read the first one's values.
  const config = { prefix: opts.prefix, codec: opts.codec };
  const had = store.get(CONFIG);
  if (had === undefined ? !store.compareAndSet(CONFIG, undefined, config) && !sameConfig(store.get(CONFIG), config) : !sameConfig(had, config)) {
    await client.close().catch(() => {});
    const err = new Error(`this local tier is used with ${JSON.stringify(store.get(CONFIG))}, not ${JSON.stringify(config)}: give each configuration a store of its own`);
    err.code = 'ERR_KV_OPTIONS';
    throw err;
  }
  const cache = new NearCache(opts, store, client);
  await cache.start();
  return cache;
}

module.exports = { createNearCache, NearCache };
