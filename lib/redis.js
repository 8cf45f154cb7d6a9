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
/** How long the listener role's lease lasts; renewed every RENEW_MS (see `#ping`). */
const LEASE_MS = 10_000;
const RENEW_MS = 1000;
/** A listener whose connection has not been ready again for this long gives the role up. */
const RESIGN_AFTER_MS = 5000;

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
  #heartbeat = null; // the listener's watchdog and heartbeat timer
  #live = false; // the tracking connection is subscribed
  #pingSent = 0; // when the heartbeat's check in flight was sent (0: none)
  #renewed = 0; // when the listener's lease was last renewed
  #unready = 0; // since when the listener's connection has not been subscribed (0: it is)
  #keyPrefix;
  #STATE;
  #INVALIDATIONS;
  #FLUSHES;
  #LISTENER;
  #LOADING;
  #generation = null; // the generation this listener made last
  #subscribed = () => {};
  #elector = null;
  #closed = false;
  #encoder = new Encoder();
  #stats = { localHits: 0, localMisses: 0, redisReads: 0 };

  constructor(opts, store, client) {
    this.#opts = opts;
    // Every key of this configuration in the local tier carries it (the prefix's length makes
    // it unambiguous), so that caches of other prefixes or codecs can share one store, each
    // with its own listener, and never read each other's values.
    const ns = `${opts.codec === 'string' ? 's' : 'm'}${opts.prefix.length}:${opts.prefix}`;
    this.#keyPrefix = `k${ns}`;
    this.#STATE = `m${ns}:state`; // [generation, heartbeat stamp ms]
    this.#INVALIDATIONS = `m${ns}:invalidations`;
    this.#FLUSHES = `m${ns}:flushes`;
    this.#LISTENER = `m${ns}:listener`;
    this.#LOADING = `m${ns}:load:`;
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
    // A lock whose holder's process died is free at once; a live holder renews its lease
    // (which only decides where liveness cannot be judged: another pid namespace).
    if (!this.#store.lock(this.#LISTENER, 0, { lease: LEASE_MS })) return;
    this.#renewed = Date.now();
    let tracker;
    try {
      // Whatever was stored under the last listener may have missed invalidations since it
      // died: fenced until this one is subscribed.
      this.#bump(false);
      const { createClient } = loadClientLibrary();
      tracker = createClient({
        ...this.#clientOptions(),
        RESP: 3,
        emitInvalidate: true,
        // Redis Enterprise's maintenance moves would hand the connection over to a new socket
        // (tracking in the default mode) without a 'ready': never for the tracker.
        maintNotifications: 'disabled',
      });
    } catch (err) {
      this.#store.release(this.#LISTENER);
      throw err;
    }
    this.#tracker = tracker;
    this.#unready = Date.now();
    tracker.on('error', () => this.#fence());
    tracker.on('end', () => this.#fence());
    tracker.on('reconnecting', () => this.#fence());
    tracker.on('invalidate', (key) => this.#guard(() => this.#invalidate(key)));
    tracker.on('ready', () => {
      if (this.#tracker !== tracker) return this.#destroy(tracker); // resigned or closed meanwhile
      this.#subscribe(tracker).catch(() => this.#resign(tracker));
    });
    // The watchdog and heartbeat, for as long as this process holds the role.
    clearInterval(this.#heartbeat);
    this.#heartbeat = setInterval(() => this.#guard(() => this.#ping(tracker)), HEARTBEAT_MS);
    this.#heartbeat.unref();
    // Resolved by the first subscription, the first connection error or the role's end: a
    // cache that just became the listener starts serving at once, and Redis being away does
    // not hold it up (the client keeps reconnecting, and 'ready' subscribes).
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
    this.#live = true;
    this.#unready = 0;
    this.#subscribed();
  }

  /**
   * Every HEARTBEAT_MS while this process holds the role. The heartbeat is a round trip on
   * the tracking connection: its reply comes after every invalidation Redis sent before it
   * (one stream, read in order), so stamping the time it was sent vouches that every write
   * before then was applied here. The command is CLIENT TRACKINGINFO, so the reply also shows
   * the subscription is still BCAST on the prefix (not turned off, not replaced). A connection
   * that died without a word, a backlog of invalidations or a stalled event loop stop the
   * stamps, and after STALE_MS nothing local is served; a check unanswered for that long, a
   * subscription gone wrong, or a connection not ready again for RESIGN_AFTER_MS end the role
   * (the next election makes a new connection).
   */
  #ping(tracker) {
    if (this.#tracker !== tracker) return;
    const now = Date.now();
    if (now - this.#renewed >= RENEW_MS) {
      this.#store.release(this.#LISTENER);
      if (!this.#store.lock(this.#LISTENER, 0, { lease: LEASE_MS })) return this.#resign(tracker);
      this.#renewed = now;
    }
    if (!this.#live) {
      if (this.#unready !== 0 && now - this.#unready > RESIGN_AFTER_MS) this.#resign(tracker);
      return;
    }
    if (this.#pingSent !== 0) {
      if (now - this.#pingSent > STALE_MS) this.#resign(tracker);
      return;
    }
    this.#pingSent = now;
    tracker.sendCommand(['CLIENT', 'TRACKINGINFO']).then((info) => {
      this.#pingSent = 0;
      if (this.#tracker !== tracker || !this.#live) return;
      if (!this.#tracking(info)) return this.#resign(tracker);
      this.#guard(() => this.#stamp(now));
    }, () => {
      this.#pingSent = 0;
    });
  }

  /** Whether CLIENT TRACKINGINFO's reply shows BCAST tracking of exactly this prefix. */
  #tracking(info) {
    const get = (k) => (info instanceof Map ? info.get(k) : info?.[k]);
    const flags = (get('flags') ?? []).map(String);
    const prefixes = (get('prefixes') ?? []).map(String);
    return flags.includes('bcast') && (this.#opts.prefix === '' ? prefixes.length <= 1 && (prefixes[0] ?? '') === '' : prefixes.length === 1 && prefixes[0] === this.#opts.prefix);
  }

  /** Gives up the listener role and its connection; another election follows. */
  #resign(tracker) {
    if (this.#tracker !== tracker) return;
    this.#fence();
    clearInterval(this.#heartbeat);
    this.#heartbeat = null;
    this.#tracker = null;
    this.#pingSent = 0;
    this.#destroy(tracker);
    try {
      this.#store.release(this.#LISTENER);
    } catch {
      // the store is closed or lost: the lock goes with it
    }
    this.#subscribed(); // a start() waiting for this subscription goes on (serving nothing)
  }

  #destroy(client) {
    try {
      client.destroy();
    } catch {
      // never opened, or closed already
    }
  }

  /** Nothing local is served until the subscription is made again. */
  #fence() {
    if (this.#live) this.#unready = Date.now();
    this.#live = false;
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
    this.#store.set(this.#STATE, [this.#generation, live ? Date.now() : 0]);
    this.#store.increment(this.#FLUSHES);
  }

  /** The heartbeat's stamp, for this listener's live generation (rebuilt if it was evicted). */
  #stamp(sent) {
    const s = this.#store.get(this.#STATE);
    if (!isState(s) || s[0] !== this.#generation) {
      this.#bump(true); // evicted, or overwritten: a new generation, nothing old trusted
      return;
    }
    if (s[1] === 0) return;
    // The wall clock stepped back: a stamp from "the future" would stop serving for that long.
    if (sent < s[1] - STALE_MS) return this.#bump(true);
    if (sent > s[1]) this.#store.compareAndSet(this.#STATE, s, [s[0], sent]);
  }

  #invalidate(key) {
    if (key === null) {
      // Redis flushed, or dropped what it tracked: everything local is suspect.
      this.#bump(this.#live);
      return;
    }
    const k = String(key);
    if (k.startsWith(this.#opts.prefix)) {
      try {
        this.#store.delete(this.#keyPrefix + k.slice(this.#opts.prefix.length));
      } catch (err) {
        // A key too long for the local tier was never stored in it; anything else fences.
        if (!(err instanceof RangeError || err instanceof TypeError)) throw err;
      }
    }
    this.#store.increment(this.#INVALIDATIONS);
  }

  // ---- reads ---------------------------------------------------------------------------------

  /** The generation local entries must carry to be served now, or null if none may be. */
  #servable() {
    const s = this.#store.get(this.#STATE);
    if (!isState(s) || s[1] === 0) return null;
    const age = Date.now() - s[1];
    // A stamp from the future: the wall clock stepped back; trusted no more than an old one.
    return age > STALE_MS || age < -STALE_MS ? null : s[0];
  }

  async get(key) {
    checkKey(key);
    this.#open();
    const k = this.#keyPrefix + key;
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
        // The result of the read it waited on, if that read is recent enough to vouch for.
        if (cur.p === waitedOn && cur.t === 0 && typeof cur.r === 'number' && Date.now() - cur.r <= STALE_MS && ('v' in cur || cur.absent === true)) return cur.v;
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
      const readAt = Date.now();
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
        : value === undefined ? { p: mine.p, t: 0, r: readAt, absent: true } : { p: mine.p, t: 0, r: readAt, v: value };
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
    this.#store.delete(this.#keyPrefix + key);
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
    this.#store.delete(this.#keyPrefix + key);
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
    const local = this.#LOADING + key;
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
      invalidations: this.#store.get(this.#INVALIDATIONS) ?? 0,
      flushes: this.#store.get(this.#FLUSHES) ?? 0,
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
    const tracker = this.#tracker;
    if (tracker !== null) {
      this.#resign(tracker); // fenced: nothing served until another process subscribes
    }
    // Cut, not closed gracefully: every command of ours is awaited by its caller (which then
    // rejects), and a graceful close waits on a server that may not answer.
    this.#destroy(this.#client);
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
  const cache = new NearCache(opts, store, client);
  try {
    // A server that accepts the connection and never answers must not hold this up forever.
    await Promise.race([cache.start(), new Promise((r) => setTimeout(r, 5000).unref())]);
  } catch (err) {
    await cache.close();
    throw err;
  }
  return cache;
}

module.exports = { createNearCache, NearCache };
