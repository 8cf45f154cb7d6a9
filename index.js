'use strict';
// The JS facade: argument checks, the value codec, and handing the buffer to workers.
// Everything about the memory (layout, hashing, locking, allocation, growth) is in Rust.

const { isMainThread, parentPort } = require('node:worker_threads');
const { Encoder, decode } = require('./lib/codec');
const { ReadCache, cloneAny } = require('./lib/cache');
const { Reader, HIT, MISS } = require('./lib/reader');
const { fileOptions, MIN_MAX_BYTES, DEFAULT_MAX_BYTES } = require('./lib/file');
const { getOrSet } = require('./lib/loader');
const { evictionOptions, Visits } = require('./lib/evict');
const { Hub, waitFor } = require('./lib/watch');
const { HANDLE, isHandle, forkMessage, receiveHandle } = require('./lib/port');
const { Link, fileIdOf } = require('./lib/linked');
const { checkKey, compilePattern, LOCK_PREFIX } = require('./lib/keys');
const { setOptions } = require('./lib/set-options');

let native;
try {
  // The loader @napi-rs/cli generates: the local build (shared-kv-store.<target>.node), then the
  // platform package (shared-kv-store-<target>, an optional dependency).
  native = require('./binding.js');
} catch (err) {
  const libc = process.platform !== 'linux' ? ''
    : process.report?.getReport?.().header?.glibcVersionRuntime ? ', libc glibc' : ', libc musl';
  throw new Error(
    `shared-kv-store: no native addon for this platform (${process.platform}, arch ${process.arch}${libc}). ` +
      'Install it with optional dependencies enabled (not --omit=optional or --no-optional), so that npm adds ' +
      'the shared-kv-store-<platform> package; if none is published for this platform, build from source: ' +
      'clone the repository and run `npm install && npm run build` (needs Rust/cargo).',
    { cause: err },
  );
}

const MIB = 1024 * 1024;
const DEFAULTS = { initialBytes: 1 * MIB, maxBytes: DEFAULT_MAX_BYTES, codec: 'js' };

// One encoder and one read buffer per thread: calls are synchronous, so they never overlap.
const encoder = new Encoder();
let scratch = Buffer.allocUnsafeSlow(64 * 1024);
/** Filled by native.get with the entry's version: [seq word offset, seq, epoch, expiry lo, hi]. */
const version = new Uint32Array(5);
const LAYOUT = native.layout();
const EPOCH_INDEX = LAYOUT.tableEpoch >>> 2;
/** setEntry as a plain Node-API callback on the registered encode buffer (see the binding). */
const rawSetEntry = native.makeRawSetEntry();
let registeredBuffer;
/**
 * One flag per store file this process maps, set when the file was truncated under it
 * (src/fault.rs). Reads that make no native call (the read cache, the JS reader) check their
 * store's flag after reading, so a lost store's zeros are never returned as a value.
 */
const LOST = lostFlags();
function lostFlags() {
  try {
    return new Uint32Array(native.lostFlags());
  } catch {
    // A runtime that refuses external buffers cannot map store files either: nothing to flag
    // (zeros for more slots than src/fault.rs has).
    return new Uint32Array(1 << 16);
  }
}
const EMPTY_CACHE = { stats: () => ({ hits: 0, misses: 0, cachedEntries: 0, cachedBytes: 0 }) };

/** Copies `key`'s stored bytes into `scratch` (growing it); their length, or -1 if absent. */
function readRaw(id, key) {
  let n = native.get(id, key, scratch, version);
  while (n > scratch.length) {
    scratch = Buffer.allocUnsafeSlow(Math.ceil(n * 1.25));
    n = native.get(id, key, scratch, version);
  }
  return n;
}


const MAX_UPDATE_ATTEMPTS = 10_000;

const DEFAULT_LEASE_MS = 30_000;
/**
 * Identifies this thread as a lock holder (unique across threads and processes): the pid and
 * the process's start-time tag come first, so a waiter can tell that the holder's process died.
 */
const LOCK_OWNER = `${process.pid}:${native.processStart()}:${require('node:worker_threads').threadId}:${Math.random().toString(36).slice(2)}`;
const SLEEPER = new Int32Array(new SharedArrayBuffer(4));

function closedError() {
  const err = new Error('shared-kv-store: this store was closed in this thread');
  err.code = 'ERR_KV_CLOSED';
  return err;
}

/** An iterable that is not a string (a string would iterate its characters as keys). */
function checkIterable(v, method, what) {
  if (v === null || typeof v !== 'object' || typeof v[Symbol.iterator] !== 'function') {
    throw new TypeError(`${method}: ${what} must be an array or another iterable (not a string), got ${typeof v}`);
  }
}

function codedError(code, message) {
  const err = new Error(`shared-kv-store: ${message}`);
  err.code = code;
  return err;
}

/** The JavaScript runtime and its version, for error messages (Bun and Deno also report a Node version). */
function runtime() {
  if (typeof globalThis.Bun !== 'undefined') return `Bun ${globalThis.Bun.version}`;
  if (typeof globalThis.Deno !== 'undefined') return `Deno ${globalThis.Deno.version?.deno}`;
  return `Node ${process.versions.node}`;
}

/** How long `createStore(parentPort)` waits for its handle by default (option handleTimeout). */
const HANDLE_TIMEOUT = 10_000;

/** `value` encoded, as its own Buffer (the encoder's buffer is reused by the next encode). */
function encodedCopy(value) {
  const n = encoder.encode(value);
  return Buffer.from(encoder.buf.subarray(0, n));
}

function checkCodec(codec) {
  if (codec !== 'js' && codec !== 'native') {
    throw new TypeError(`codec must be 'js' or 'native', got ${String(codec)}`);
  }
  return codec;
}

class SharedKVStore {
  /** This thread's attachment: `id` for native calls, `owner` releases it when collected. */
  #att;
  #buffer;
  #jsCodec;
  #ready;
  #cache;
  #reader;
  #growthReads = 0;
  #readOnly = false;
  /** This store's index in LOST (0, never set, for stores in memory). */
  #lostSlot = 0;
  #failure;
  #closed = false;

  #name;
  #path;
  /** A store file's `mode` option: workers open the file with the same trust (src/trust.rs). */
  #mode;
  /** A store file's check that its path still names it (lib/linked.js), and its device:inode. */
  #link;
  #fileId;
  /** Reads not yet handed to the core (evicting stores only). */
  #visits;
  /** This thread's watchers of the store (lib/watch.js), while there are any. */
  #hub;

  /**
   * @internal Use createManager(), createStore() or openStore(). `name`: a named store's name;
   * `file`: a store file's absolute path, `mode` the permission bits it was opened with.
   */
  constructor(buffer, codec, name, file, mode, fileId) {
    this.#jsCodec = checkCodec(codec) === 'js';
    this.#name = name;
    this.#path = file;
    this.#mode = mode;
    this.#ready = new Promise((resolve, reject) => {
      /** @internal No handle will come: `ready` rejects with `err` (see createStore and lib/port.js). */
      this._fail = (err) => {
        if (this.#att !== undefined) return;
        this.#failure = err;
        delete this._attach;
        reject(err);
      };
      this._attach = (sab, name, file, mode, fileId) => {
        if (this.#closed) return; // closed before its handle arrived
        this.#buffer = sab;
        this.#name ??= name;
        this.#path ??= file;
        this.#mode ??= mode;
        if (this.#path !== undefined && fileId !== undefined) {
          this.#fileId = fileId;
          this.#link = new Link(this.#path, fileId);
        }
        this.#att = native.attach(sab);
        this.#lostSlot = this.#att.lostSlot;
        if (native.limits(this.#att.id).evict) this.#visits = new Visits(native, this.#att.id);
        // The native codec path builds values in Rust and does not use the read cache.
        if (this.#jsCodec) {
          this.#cache = new ReadCache(sab, EPOCH_INDEX, LAYOUT.jsWindowBytes);
          this.#reader = new Reader(sab, LAYOUT, native.hashSeed(this.#att.id));
        }
        delete this._attach;
        delete this._fail;
        resolve(this);
      };
    });
    // A rejection nobody awaited must not take the thread down; `ready` still rejects.
    this.#ready.catch(() => {});
    if (buffer) this._attach(buffer, undefined, undefined, undefined, fileId);
  }

  /** Resolves with the store once it is attached to the shared memory. */
  get ready() {
    return this.#ready;
  }

  /** Whether the store is attached (a worker's store may still await its handle). */
  get attached() {
    return this.#att !== undefined;
  }

  /** A structured-cloneable handle: pass it in `workerData` and call `createStore(handle)`. */
  get handle() {
    this.#id();
    // A named store travels by name, a store file by path: every thread reaches its memory
    // through the addon.
    if (this.#path !== undefined) {
      const handle = { [HANDLE]: 1, path: this.#path, mode: this.#mode, fileId: this.#fileId };
      return this.#readOnly ? { ...handle, readOnly: true } : handle;
    }
    return this.#name === undefined ? { [HANDLE]: 1, buffer: this.#buffer } : { [HANDLE]: 1, name: this.#name };
  }

  /** Before every write: a read-only store refuses it; a store file checks its path. */
  #writing() {
    if (this.#readOnly) throw codedError('ERR_KV_READ_ONLY', 'this store was opened with readOnly: true');
    this.#link?.wrote();
  }

  /** @internal Whether the store file was truncated under this process (src/fault.rs). */
  _lost() {
    return LOST[this.#lostSlot] !== 0;
  }

  /** @internal openStore's readOnly: no writes, and reads leave no trace (no eviction marks). */
  _readOnly() {
    this.#readOnly = true;
    this.#visits = undefined;
    native.setReadOnly(this.#id());
    return this;
  }

  #id() {
    if (this.#att === undefined) {
      if (this.#closed) throw closedError();
      if (this.#failure !== undefined) throw this.#failure;
      throw codedError('ERR_KV_NOT_READY', 'this store has not received its handle yet; await store.ready');
    }
    return this.#att.id;
  }

  /**
   * Releases this thread's hold on the store (other threads keep using it). Idempotent; any
   * later call on this object throws an Error with code ERR_KV_CLOSED.
   */
  close() {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#att !== undefined) {
      try {
        this.#hub?.closeAll();
        this.#visits?.flush();
      } catch (err) {
        // A lost store (its file truncated under us) closes all the same.
        if (err?.code !== 'ERR_KV_LOST') throw err;
      } finally {
        native.detach(this.#att.id);
      }
    }
    this.#hub = undefined;
    this.#att = this.#cache = this.#reader = this.#buffer = this.#visits = undefined;
    if (SharedKVStore.instance === this) SharedKVStore.instance = undefined;
    if (this.#name !== undefined && namedStores.get(this.#name) === this) namedStores.delete(this.#name);
    const key = fileKey(this.#path, this.#readOnly);
    if (this.#path !== undefined && fileStores.get(key)?.store === this) fileStores.delete(key);
  }

  get closed() {
    return this.#closed;
  }

  /** A named store's name (undefined for a manager's unnamed store). */
  get name() {
    return this.#name;
  }

  /** A store file's absolute path (undefined for a store in memory). */
  get path() {
    return this.#path;
  }

  /**
   * Writes a store file's changes to its disk and waits for it (msync), so they survive a
   * crash of the machine too. A no-op for stores in memory (and on tmpfs there is no disk).
   */
  flush() {
    native.flush(this.#id());
  }

  get(key) {
    // Hot path first: a cached key was fully checked when it was first read.
    const cache = this.#cache;
    if (typeof key === 'string' && cache !== undefined) {
      const hit = cache.get(key);
      if (hit !== undefined) {
        if (LOST[this.#lostSlot] !== 0) native.checkLost(this.#id()); // throws ERR_KV_LOST
        // A read from this thread's cache counts as a read for eviction too.
        if (this.#visits !== undefined) this.#visits.record(cache.lastOffset, cache.lastSeq);
        return hit;
      }
    }
    checkKey(key);
    const id = this.#id();
    if (!this.#jsCodec) return native.getValue(id, key); // marks its hits itself
    const reader = this.#reader;
    const found = reader.read(key);
    if (LOST[this.#lostSlot] !== 0) native.checkLost(id); // throws ERR_KV_LOST
    // A growth of the index that writes left half done is moved on by reads too (see
    // Store::read_during_growth): one in LAYOUT.helpEvery.
    if (reader.growing && !this.#readOnly && ++this.#growthReads % LAYOUT.helpEvery === 0) native.helpGrowth(id);
    if (found === HIT) {
      const value = reader.value;
      reader.value = undefined;
      this.#visits?.record(reader.version[0], reader.version[1]);
      return this.#cache.note(key, reader.version, value, reader.size) ? cloneAny(value) : value;
    }
    if (found === MISS) {
      this.#cache.forget(key);
      return undefined;
    }
    // The JS reader passed (see lib/reader.js): the native reader decides.
    const n = readRaw(id, key);
    if (n < 0) {
      cache.forget(key);
      return undefined;
    }
    this.#visits?.record(version[0], version[1]);
    const value = decode(scratch, 0, n);
    return cache.note(key, version, value, n) ? cloneAny(value) : value;
  }

  /**
   * Stores a copy of `value`. The third argument is `resizeBuffer` (boolean), or options
   * `{ ttl, minBufferSize, immutable, resizeBuffer, skipLock }` (see README).
   */
  set(key, value, options) {
    checkKey(key);
    const id = this.#id();
    this.#writing();
    if (this.#visits !== undefined) this.#visits.flush(); // marks before the write may evict
    if (value === undefined) return false;
    let mode = 0, reserve = 0, expiresAt = 0;
    if (options === true) mode = 1;
    else if (options !== undefined && options !== false && options !== null) ({ mode, reserve, expiresAt } = setOptions(options));
    if (!this.#jsCodec) {
      native.setValue(id, key, value, mode, reserve, expiresAt);
      return true;
    }
    const end = encoder.encodeEntry(key, value);
    if (encoder.buf !== registeredBuffer) {
      native.setEncodeBuffer(encoder.buf); // once, and again only when the encoder grew it
      registeredBuffer = encoder.buf;
    }
    rawSetEntry(id, encoder.keyLength, end, mode, reserve, expiresAt);
    return true;
  }

  /**
   * Deletes `key`; returns whether it existed. A glob (`*`, `?`; `\\` escapes) or a
   * `/regex/flags` string deletes every matching key instead, and returns whether any did.
   */
  delete(key) {
    checkKey(key);
    const id = this.#id();
    this.#writing();
    const pattern = compilePattern(key);
    if (pattern === undefined) return native.delete(id, key);
    let any = false;
    for (const k of this.listKeys(pattern)) any = native.delete(id, k) || any;
    return any;
  }

  /** All keys, or those matching a glob or `/regex/flags` pattern (see delete). */
  listKeys(pattern) {
    const re = pattern === undefined ? undefined : pattern instanceof RegExp ? pattern : compilePattern(pattern, true);
    const keys = [];
    for (const key of this.keys()) {
      if (re !== undefined) {
        re.lastIndex = 0; // a g or y flag would otherwise carry state between keys
        if (!re.test(key)) continue;
      }
      keys.push(key);
    }
    return keys;
  }

  /**
   * Takes the advisory lock on `key` for this thread, waiting up to `timeout` ms; returns
   * whether it got it. The lock is a lease: if its holder does not release it (the thread
   * exited or was terminated), it expires after `lease` ms. Only the holder can release it.
   * Locks do not block get/set: they coordinate threads that take them.
   */
  lock(key, timeout = 1000, options = {}) {
    checkKey(key);
    if (options === null || typeof options !== 'object') throw new TypeError(`lock: options must be an object, got ${options === null ? 'null' : typeof options}`);
    const { lease = DEFAULT_LEASE_MS } = options;
    if (typeof timeout !== 'number' || !(timeout >= 0)) throw new RangeError(`lock: timeout must be a number of ms >= 0, got ${String(timeout)}`);
    if (!(lease > 0) || !Number.isFinite(lease)) throw new RangeError(`lock: lease must be a positive number of ms, got ${String(lease)}`);
    const id = this.#id();
    this.#writing();
    const name = LOCK_PREFIX + key;
    const deadline = Date.now() + timeout;
    const owner = encodedCopy(LOCK_OWNER);
    for (let wait = 0.05; ; wait = Math.min(wait * 2, 5)) {
      // Also released by this thread's exit or termination, if not before.
      if (native.lockTake(id, name, owner, Date.now() + lease)) return true;
      if (this.#freeIfHolderDied(id, name)) continue;
      const left = deadline - Date.now();
      if (left <= 0) return false;
      Atomics.wait(SLEEPER, 0, 0, Math.min(wait, left)); // a short sleep: locks are polled
    }
  }

  /** Deletes lease `name` if its holder's process died; returns whether it did. */
  #freeIfHolderDied(id, name) {
    const n = readRaw(id, name);
    if (n < 0) return true; // released meanwhile: try again at once
    const held = Buffer.from(scratch.subarray(0, n));
    const [pid, start] = String(decode(held, 0, n)).split(':').map(Number);
    if (!Number.isSafeInteger(pid) || !Number.isSafeInteger(start) || native.processAlive(id, pid, start) !== 0) return false;
    return native.compareAndSet(id, name, held, n, null, 0, 0);
  }

  /** Releases this thread's lock on `key`; false if this thread does not hold it. */
  release(key) {
    checkKey(key);
    const id = this.#id();
    this.#writing();
    return native.lockRelease(id, LOCK_PREFIX + key, encodedCopy(LOCK_OWNER));
  }

  /**
   * The value of `key`; if absent, `loader(key)`'s, stored with `{ ttl }`, where only one
   * caller among all threads and processes runs its loader at a time (the others wait for
   * its value without blocking their event loop). See lib/loader.js and the README.
   */
  getOrSet(key, loader, options) {
    if (this.#readOnly) this.#writing(); // throws
    return getOrSet(this, key, loader, options);
  }

  /**
   * Calls `listener(key, event)` for every change to the store (or to keys matching
   * `pattern`, as in listKeys), made by any thread or process, asynchronously, in the order
   * the store applied them. Events: 'set', 'delete', 'evict', 'expire', 'clear' and
   * 'overflow' (the last two with key undefined). Returns a Watcher: close(), ref(), unref().
   */
  watch(pattern, listener) {
    if (typeof pattern === 'function' && listener === undefined) [pattern, listener] = [undefined, pattern];
    if (typeof listener !== 'function') throw new TypeError('watch: the listener must be a function');
    let match;
    if (pattern !== undefined) {
      const re = pattern instanceof RegExp ? pattern : compilePattern(pattern, true);
      match = (key) => {
        re.lastIndex = 0; // a g or y flag would otherwise carry state between keys
        return re.test(key);
      };
    }
    return this.#watchers().add(match, listener);
  }

  /**
   * Resolves with `key`'s value: at once if it has one (unless `{ next: true }`), else at
   * its next set; with `next`, at its next change of any kind. Rejects after `timeout` ms
   * (code ERR_KV_TIMEOUT) or when `signal` aborts.
   */
  waitFor(key, options) {
    checkKey(key);
    this.#id();
    return waitFor(this, key, options, (k, listener, onStoreClose) => this.#watchers().add((x) => x === k, listener, onStoreClose));
  }

  #watchers() {
    const id = this.#id();
    if (this.#hub === undefined || !this.#hub.open) {
      this.#hub = new Hub(native, id, this.#buffer, (hub) => {
        if (this.#hub === hub) this.#hub = undefined;
      });
    }
    return this.#hub;
  }

  /** Whether `key` has a value (reads it, so it is as cheap as a get). */
  has(key) {
    return this.get(key) !== undefined;
  }

  /** The number of keys. */
  get size() {
    return native.count(this.#id());
  }

  /** Adds `delta` to the number under `key` (absent counts as 0), atomically; returns the sum. */
  increment(key, delta = 1) {
    checkKey(key);
    if (typeof delta !== 'number' || !Number.isFinite(delta)) {
      throw new TypeError(`increment: delta must be a finite number, got ${String(delta)}`);
    }
    const id = this.#id();
    this.#writing();
    return native.increment(id, key, delta);
  }

  /**
   * Stores `next` only if the stored value equals `expected` (same encoded bytes; `undefined`:
   * the key is absent). Atomic. Returns whether it stored.
   */
  compareAndSet(key, expected, next) {
    checkKey(key);
    const id = this.#id();
    this.#writing();
    if (next === undefined) throw new TypeError('compareAndSet: the new value must not be undefined');
    const old = expected === undefined ? null : encodedCopy(expected);
    const n = encoder.encode(next);
    return native.compareAndSet(id, key, old, old === null ? 0 : old.length, encoder.buf, n, 0);
  }

  /**
   * Writes `fn(current)` with no other write to `key` in between: if another thread changes
   * the key meanwhile, `fn` runs again on the new value (so it may run more than once, and
   * should not have side effects). `fn` returning `undefined` writes nothing. Returns what
   * was written. No lock is held while `fn` runs, so a thread stopped inside it blocks nobody.
   */
  update(key, fn) {
    checkKey(key);
    if (typeof fn !== 'function') throw new TypeError('update: expects a function');
    const id = this.#id();
    this.#writing();
    for (let attempt = 0; attempt < MAX_UPDATE_ATTEMPTS; attempt++) {
      // The stored bytes themselves are the expected value (not a re-encoding of what they
      // decode to), so the swap fails only if another thread wrote in between.
      const len = readRaw(id, key);
      const old = len < 0 ? null : Buffer.from(scratch.subarray(0, len));
      const current = old === null ? undefined : decode(old, 0, len);
      const next = fn(current);
      if (next === undefined) return undefined;
      const n = encoder.encode(next);
      if (native.compareAndSet(id, key, old, old === null ? 0 : old.length, encoder.buf, n, 0)) return next;
    }
    const err = new Error(`update: '${key}' kept changing under ${MAX_UPDATE_ATTEMPTS} attempts`);
    err.code = 'ERR_KV_CONTENDED';
    throw err;
  }

  /** Deletes every key; returns how many there were. */
  clear() {
    const id = this.#id();
    this.#writing();
    return native.clear(id);
  }

  /**
   * [key, value] pairs. Consistent under concurrent writes: each key at most once, every
   * value whole (one that some write stored). Keys written during the iteration may or may
   * not appear.
   */
  *entries(options) {
    if (options !== undefined && (options === null || typeof options !== 'object')) throw new TypeError('entries: options must be an object');
    yield* this.#scan(true, options?.withExpiry === true);
  }

  /**
   * When `key` expires: ms since the Unix epoch, null if it never does, undefined if it is
   * absent (or expired).
   */
  expiresAt(key) {
    checkKey(key);
    if (readRaw(this.#id(), key) < 0) return undefined;
    const at = version[3] + version[4] * 4294967296;
    return at === 0 ? null : at;
  }

  /** Keys only: no value is copied or decoded (listKeys, delete(pattern) and size go here). */
  *keys() {
    for (const [key] of this.#scan(false)) yield key;
  }

  *#scan(values, withExpiry = false) {
    const id = this.#id();
    const seen = new Set();
    let epoch = 0;
    let from = 0;
    while (from >= 0) {
      const batch = native.scan(id, epoch, from, 256, values, withExpiry);
      ({ epoch, next: from } = batch);
      for (let i = 0; i < batch.keys.length; i++) {
        const key = batch.keys[i];
        if (seen.has(key) || key.startsWith(LOCK_PREFIX)) continue; // repeat after a move, or a lock
        seen.add(key);
        const value = values ? decode(batch.values[i]) : undefined;
        yield withExpiry ? [key, value, batch.expires[i] || null] : [key, value];
      }
    }
  }

  *values() {
    for (const [, value] of this.entries()) yield value;
  }

  [Symbol.iterator]() {
    return this.entries();
  }

  /** get() for each key, in order. */
  getMany(keys) {
    checkIterable(keys, 'getMany', 'keys');
    return Array.from(keys, (key) => this.get(key));
  }

  /** set() for each [key, value]; returns how many were stored (undefined values are not). */
  setMany(entries) {
    checkIterable(entries, 'setMany', 'entries');
    let stored = 0;
    for (const entry of entries) {
      if (entry === null || typeof entry !== 'object' || typeof entry[Symbol.iterator] !== 'function') {
        throw new TypeError(`setMany: each entry must be a [key, value] pair, got ${typeof entry === 'string' ? JSON.stringify(entry) : typeof entry}`);
      }
      const [key, value] = entry;
      if (this.set(key, value)) stored++;
    }
    return stored;
  }

  /**
   * Verifies the shared memory (under the writer lock): every block, free list and index slot
   * agrees with the counters. Returns { entries, bytesUsed, bytesFree, blocks }; throws
   * "store memory is corrupted: ..." if not. Costs a walk of the whole store.
   */
  check() {
    return native.check(this.#id());
  }

  /**
   * Entries, bytes used/reserved, buffer size and index size (shared), and this thread's read
   * cache: hits, misses, cachedEntries, cachedBytes.
   */
  stats() {
    const id = this.#id();
    const linked = this.#link === undefined ? {} : { linked: this.#link.check() };
    return { ...native.stats(id), ...(this.#cache ?? EMPTY_CACHE).stats(), ...linked };
  }
}

class Manager {
  #workers = new Set();

  constructor(options) {
    const opts = { ...DEFAULTS, ...options };
    for (const name of ['initialBytes', 'maxBytes']) {
      const v = opts[name];
      if (!Number.isSafeInteger(v) || v <= 0) throw new RangeError(`${name} must be a positive integer, got ${v}`);
    }
    if (opts.maxBytes < MIN_MAX_BYTES) {
      throw new RangeError(`maxBytes is at least ${MIN_MAX_BYTES} (64 KiB: the header and the first index take 16 KiB), got ${opts.maxBytes}`);
    }
    if (opts.maxBytes < opts.initialBytes) {
      throw new RangeError(`maxBytes (${opts.maxBytes}) must be at least initialBytes (${opts.initialBytes})`);
    }
    if (opts.maxBytes > LAYOUT.maxRegionBytes) {
      throw new RangeError(`maxBytes is at most ${LAYOUT.maxRegionBytes} (1 TiB), got ${opts.maxBytes}`);
    }
    if (opts.name !== undefined) {
      /** The store itself, also at `globalThis.SharedKVStore.instance`. */
      this.store = namedStore(opts.name, opts);
      return;
    }
    const { onFull, maxEntries, expectedKeys } = evictionOptions(opts, 'createManager');
    let buffer;
    try {
      buffer = native.createBuffer(opts.initialBytes, opts.maxBytes, onFull, maxEntries, expectedKeys);
    } catch (err) {
      if (err instanceof RangeError) {
        // V8 sets the largest SharedArrayBuffer: 4 GiB on Node 20, far more on Node 24.
        throw new RangeError(`cannot create a store of ${opts.initialBytes} to ${opts.maxBytes} bytes: ${err.message} ` +
          `(a thread store is one SharedArrayBuffer, which ${runtime()} may limit; a named store or a store file goes to 1 TiB)`);
      }
      throw err;
    }
    /** The store itself, also at `globalThis.SharedKVStore.instance`. */
    this.store = new SharedKVStore(buffer, checkCodec(opts.codec));
  }

  /** A structured-cloneable handle for `workerData` (pools such as piscina). */
  get handle() {
    return this.store.handle;
  }

  /** Sends the store's handle to `worker`; its `createStore(parentPort)` attaches to it. */
  registerFork(worker) {
    if (!worker || typeof worker.postMessage !== 'function') {
      throw new TypeError('registerFork expects a Worker (something with postMessage)');
    }
    if (!this.#workers.has(worker)) {
      worker.postMessage(forkMessage(this.handle));
      this.#workers.add(worker);
    }
    return true;
  }

  /** Forgets `worker`: true if it was registered. Its store keeps working (the memory is shared). */
  unregisterFork(worker) {
    return this.#workers.delete(worker);
  }
}

function createManager(options) {
  if (options !== undefined && (options === null || typeof options !== 'object')) {
    throw new TypeError('createManager options must be an object');
  }
  const manager = new Manager(options);
  SharedKVStore.instance = manager.store;
  globalThis.SharedKVStore = SharedKVStore;
  return manager;
}

/** This thread's store for each store file path: openStore(path) returns the same object. */
const fileStores = new Map();
/** A read-only store of a path is another object than the writable one. */
const fileKey = (file, readOnly) => (readOnly ? `${file}\0readOnly` : file);

/**
 * The store in the file at `path`, shared by every thread of every process that opens it
 * (created and formatted first unless it exists; see README "Sharing between processes").
 * Options: `{ maxBytes, mode = 0o600, create = true, codec }`.
 */
function openStore(path, options = {}) {
  const { file, maxBytes, mode, create, readOnly } = fileOptions(path, options, DEFAULTS.maxBytes, LAYOUT.maxRegionBytes);
  const { onFull, maxEntries, expectedKeys } = evictionOptions(options, 'openStore');
  const codec = checkCodec(options.codec ?? DEFAULTS.codec);
  const cacheKey = fileKey(file, readOnly);
  const cached = fileStores.get(cacheKey);
  // Reused only while the path still names the file it mapped: a file deleted (or replaced)
  // by another process is another store now, and this process must not go on in the old one.
  if (cached !== undefined && !cached.store.closed && !cached.store._lost() && fileIdOf(file) === cached.fileId) return cached.store;
  const { buffer, fileId } = native.fileBuffer(file, maxBytes, mode, create, onFull, maxEntries, expectedKeys);
  const store = new SharedKVStore(buffer, codec, undefined, file, mode, fileId);
  if (readOnly) store._readOnly();
  fileStores.set(cacheKey, { store, fileId });
  return store;
}

/** This thread's store for each name: createStore(name) returns the same object each time. */
const namedStores = new Map();

/** The named store `name` (created in the process on first use, with `options.maxBytes`). */
function namedStore(name, options = {}) {
  if (typeof name !== 'string' || name === '') throw new TypeError('a store name must be a non-empty string');
  const codec = checkCodec(options.codec ?? DEFAULTS.codec);
  let store = namedStores.get(name);
  if (store === undefined || store.closed) {
    const maxBytes = options.maxBytes ?? DEFAULTS.maxBytes;
    if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`maxBytes must be a positive integer, got ${maxBytes}`);
    // As for store files: the memory is one external ArrayBuffer, at most 4 GiB on Node 20.
    if (maxBytes > LAYOUT.maxRegionBytes) throw new RangeError(`createStore: maxBytes is at most ${LAYOUT.maxRegionBytes} (1 TiB) for a named store, got ${maxBytes}`);
    if (maxBytes < MIN_MAX_BYTES) throw new RangeError(`createStore: maxBytes is at least ${MIN_MAX_BYTES} (64 KiB: the header and the first index take 16 KiB), got ${maxBytes}`);
    const { onFull, maxEntries, expectedKeys } = evictionOptions(options, 'createStore');
    store = new SharedKVStore(native.namedBuffer(name, maxBytes, onFull, maxEntries, expectedKeys), codec, name);
    namedStores.set(name, store);
  }
  return store;
}

/** Attaches `store` to what a handle names: a buffer, or a named store's memory. */
function attachHandle(store, handle) {
  if (handle.path !== undefined) {
    const mode = handle.mode ?? 0o600;
    const { buffer, fileId } = native.fileBuffer(handle.path, DEFAULTS.maxBytes, mode, false, 0, 0, 0);
    checkSameFile(handle, fileId);
    store._attach(buffer, undefined, handle.path, mode, fileId);
    if (handle.readOnly === true) store._readOnly();
    return;
  }
  store._attach(handle.buffer ?? native.namedBuffer(handle.name, DEFAULTS.maxBytes, 0, 0, 0), handle.name);
}

/** A store file's handle names the file its sender had open: not another one now at the path. */
function checkSameFile(handle, fileId) {
  if (handle.fileId !== undefined && fileId !== handle.fileId) {
    throw codedError('ERR_KV_UNLINKED', `the store file '${handle.path}' was deleted or replaced since this handle was made: ` +
      'the path now names another store than its sender\'s; have the sender reopen it and send a new handle');
  }
}

/**
 * In a worker: `createStore(parentPort)` or `createStore(handle)`.
 * With a port, a handle already queued (registerFork in the same tick as `new Worker`) is
 * taken at once; otherwise the store attaches when it arrives (`await store.ready`).
 */
function createStore(source, options = {}) {
  const codec = checkCodec(options.codec ?? DEFAULTS.codec);
  let store;
  if (typeof source === 'string') {
    return namedStore(source, options);
  } else if (isHandle(source) && source.name !== undefined) {
    return namedStore(source.name, options);
  } else if (isHandle(source) && source.path !== undefined) {
    const readOnly = source.readOnly === true ? { readOnly: true } : {};
    const store = openStore(source.path, { mode: source.mode, ...options, ...readOnly, create: false });
    checkSameFile(source, fileStores.get(fileKey(store.path, source.readOnly === true))?.fileId);
    return store;
  } else if (isHandle(source)) {
    store = new SharedKVStore(source.buffer, codec);
  } else if (source && typeof source.postMessage === 'function' && typeof source.on === 'function') {
    const { handleTimeout = HANDLE_TIMEOUT } = options;
    if (!(typeof handleTimeout === 'number' && handleTimeout >= 0 && handleTimeout <= 2 ** 31 - 1)) {
      throw new RangeError(`createStore: handleTimeout must be a number of milliseconds, got ${String(handleTimeout)}`);
    }
    store = new SharedKVStore(undefined, codec);
    const attach = (h) => {
      try {
        attachHandle(store, h);
      } catch (err) {
        store._fail?.(err); // `ready` rejects with it (this runs from the port's dispatch)
      }
    };
    const handle = receiveHandle(source, handleTimeout, attach, () =>
      store._fail?.(codedError('ERR_KV_NO_HANDLE', `no store handle arrived on the port within ${handleTimeout} ms: ` +
        'call manager.registerFork(worker) in the thread that made the worker, or pass manager.handle in workerData' +
        // Deno's parentPort drops a message no listener is there for (lib/port.js).
        (typeof globalThis.Deno !== 'undefined' && source === parentPort
          ? ` (on ${runtime()}, a handle that arrives before createStore(parentPort) is called is lost: call it before the worker's first await)`
          : ''))));
    if (handle !== undefined) attachHandle(store, handle);
  } else if (source == null) {
    // The manager's store in this thread if there is one, else the default named store.
    return SharedKVStore.instance && !SharedKVStore.instance.closed ? SharedKVStore.instance : namedStore('default', options);
  } else {
    throw new TypeError('createStore expects the parentPort or a handle from manager.handle');
  }
  if (!isMainThread || !SharedKVStore.instance) {
    SharedKVStore.instance = store;
    globalThis.SharedKVStore = SharedKVStore;
  }
  return store;
}

module.exports = {
  createManager,
  createStore,
  openStore,
  SharedKVStore,
  Manager,
  /** The value codecs, exposed for tests and for tools that read dumps of the store. */
  codec: { Encoder, decode, nativeEncode: native.encode, nativeDecode: native.decode },
};
