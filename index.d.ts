/// <reference types="node" />
import type { MessagePort, Worker } from 'node:worker_threads';

/**
 * What a store holds: everything JSON carries, plus NaN, ±Infinity, -0, `undefined` inside
 * arrays and objects, BigInt (64-bit), Date, Buffer/Uint8Array, Map and Set. Class instances
 * are stored as their own enumerable fields, as JSON does.
 */
export type StorableValue =
  | null
  | undefined
  | boolean
  | number
  | bigint
  | string
  | Date
  | Uint8Array
  | StorableValue[]
  | Map<StorableValue, StorableValue>
  | Set<StorableValue>
  | { [key: string]: StorableValue };

/** Rejects, at compile time, values that can never be stored (they throw a TypeError). */
export type Storable<V> = V extends (...args: any[]) => any ? never : V extends symbol ? never : V;

/** set()'s options (the third argument may also be `resizeBuffer`, a boolean). */
export interface SetOptions {
  /** Seconds until the key expires: from then on no thread gets, has or iterates it. */
  ttl?: number;
  /**
   * When the key expires, absolute: a Date or ms since the Unix epoch (what `expiresAt()` and
   * `entries({ withExpiry: true })` report; a restore keeps each entry's). Not with `ttl`.
   */
  expiresAt?: Date | number;
  /** Reserve room for a value of this many bytes, so a growing value is rewritten in place. */
  minBufferSize?: number;
  /** Always write the value to new space. */
  immutable?: boolean;
  /** Re-fit the value's space instead of reusing a larger one. */
  resizeBuffer?: boolean;
  /** Accepted for compatibility: every set is atomic anyway. */
  skipLock?: boolean;
}

export interface StoreOptions {
  /**
   * `'js'` (default): values are encoded in JS, the fast path. `'native'`: encoded by the
   * Rust codec. Both write identical bytes, so threads may differ.
   */
  codec?: 'js' | 'native';
  /**
   * `createStore(parentPort)` only: how long to wait for the handle `registerFork` sends, in
   * milliseconds (default 10,000). Then `ready` rejects with `ERR_KV_NO_HANDLE`, every use
   * throws it, and nothing of the store keeps the thread alive. Before that, use throws
   * `ERR_KV_NOT_READY`.
   */
  handleTimeout?: number;
}

/** What a full store does, and what its index is sized for: fixed when the store is created (kept in its memory, so every thread and process agrees). */
export interface EvictionOptions {
  /**
   * `'throw'` (default): a write that finds the store full (at `maxBytes` or `maxEntries`)
   * throws a RangeError with code ERR_KV_FULL. `'evict'`: it removes entries to make room,
   * approximately least recently used first (reads count, from any thread's read cache too);
   * expired entries first.
   */
  onFull?: 'throw' | 'evict';
  /** The most entries the store holds (default: no limit). */
  maxEntries?: number;
  /**
   * The keys to size the index for (default 0: it grows as keys come). The first new key makes
   * an index for this many (16 bytes a key, at most a quarter of `maxBytes`), so growth to that
   * many moves no entries; deletes never shrink it below. Fixed at creation, like `onFull`.
   */
  expectedKeys?: number;
}

export interface ManagerOptions extends StoreOptions, EvictionOptions {
  /** Make (or join) the named store `name` instead of an unnamed one (see createStore(name)). */
  name?: string;
  /** Initial buffer size in bytes. Default 1 MiB; at least ~37 KiB. */
  initialBytes?: number;
  /** The buffer grows in place up to this many bytes. Default 1 GiB; at most 1 TiB (a thread store is one SharedArrayBuffer: 4 GiB on Node 20 and on Bun). */
  maxBytes?: number;
}

/** Structured-cloneable: pass it in `workerData` and call `createStore(handle)` there. */
export type StoreHandle =
  | { readonly __sharedKVStore: 1; readonly buffer: SharedArrayBuffer }
  | { readonly __sharedKVStore: 1; readonly name: string }
  | { readonly __sharedKVStore: 1; readonly path: string; readonly mode?: number; readonly fileId?: string };

/** `openStore(path, options)`: a store file shared by the processes of the machine. */
export interface OpenStoreOptions extends StoreOptions, EvictionOptions {
  /** The file's size when this call creates it (sparse: pages cost memory once touched). Default 1 GiB, at most 1 TiB. */
  maxBytes?: number;
  /**
   * Permission bits of a new file, applied exactly (not filtered by the umask). Default 0o600.
   * An existing file writable by group or others beyond these bits is refused
   * (ERR_KV_UNSAFE_FILE): `0o660` shares a store with a group.
   */
  mode?: number;
  /** Create (and format) the file if it does not exist. Default true (false with `readOnly`): an ENOENT error instead. */
  create?: boolean;
  /**
   * Open for reading only: every write (set, delete, clear, increment, compareAndSet, update,
   * getOrSet, lock, release) throws ERR_KV_READ_ONLY, and reads leave no trace in the store
   * (no eviction marks, no help to an index growth; watch() still registers and check() still
   * takes the writer lock). Never creates a file; its handle opens read-only stores elsewhere.
   * Default false.
   */
  readOnly?: boolean;
}

export interface NamedStoreOptions extends StoreOptions, EvictionOptions {
  /** Room for the store, if this call creates it (the first use of the name in the process). */
  maxBytes?: number;
}

export interface StoreStats {
  /** Live keys (what `size` says; locks are counted apart, in `locks`). */
  entries: number;
  /** Locks held (`lock()`) and `getOrSet` loads under way: not keys, and not limited by `maxEntries`. */
  locks: number;
  /** Bytes in allocated blocks (index included). */
  bytesUsed: number;
  /** Bytes carved from the buffer so far (in use, free for reuse, and the header). */
  bytesReserved: number;
  /** Current size of the SharedArrayBuffer. */
  bufferBytes: number;
  /** Slots in the hash index. */
  indexSlots: number;
  /** The index is growing (or being rebuilt): each write moves a slice of entries to the new table, and `indexSlots` counts both tables until the move ends. */
  growing: boolean;
  /** Times a writer killed holding the store's lock (SIGKILL, a crash) was taken over and its write recovered. */
  recoveries: number;
  /** Index slots a recovery found with a tag that is not their key's, and repaired (a backstop: 0 is expected). */
  repairs: number;
  /** Entries evicted to make room (onFull: 'evict'). */
  evictions: number;
  /** Expired entries reclaimed. */
  expired: number;
  /** Entries moved (copied, unchanged) so that free fragments merge and serve a write (onFull: 'evict'). */
  moves: number;
  /** Threads (of any process) with an open watcher or a pending waitFor on the store. */
  watchers: number;
  /** This thread's read cache: gets served from it, */
  hits: number;
  /** gets that read the shared memory, */
  misses: number;
  /** and what it holds (bounded: 10,000 entries, 16 MiB). */
  cachedEntries: number;
  cachedBytes: number;
  /**
   * Store files only: whether the path still names the file this thread mapped (false once
   * another process deleted or replaced it; the store goes on in the old file, see README).
   */
  linked?: boolean;
}

/**
 * What happened to a watched key: `'set'` (set, increment, compareAndSet, update, setMany,
 * getOrSet), `'delete'`, `'evict'` (removed to make room, `onFull: 'evict'`), `'expire'` (an
 * expired entry reclaimed by a later write: not at the instant it expired), `'clear'` (key
 * undefined), `'overflow'` (key undefined: this watcher fell behind by more than the change log
 * holds, or a writer process died mid-write, so changes may be missing; delivery goes on),
 * `'lost'` (key undefined: the store file was truncated under this process; told once, then
 * the watcher is closed, and every operation on the store throws ERR_KV_LOST).
 */
export type WatchEvent = 'set' | 'delete' | 'evict' | 'expire' | 'clear' | 'overflow' | 'lost';

/** `(key, event)`: key is undefined for 'clear', 'overflow' and 'lost'. */
export type WatchListener = (key: string | undefined, event: WatchEvent) => void;

/** An open `store.watch()`. */
export interface Watcher {
  /** Stops delivery at once: the listener is not called after this returns. Idempotent. */
  close(): void;
  /** Lets the thread (or program) exit while this watcher is open, like `timer.unref()`. */
  unref(): this;
  /** Keeps the thread alive while this watcher is open (the default), like a port listener. */
  ref(): this;
  hasRef(): boolean;
  readonly closed: boolean;
}

export interface WaitForOptions {
  /** Reject with an Error of code `'ERR_KV_TIMEOUT'` after this many ms (default: wait forever). */
  timeout?: number;
  /** Reject with `signal.reason` when it aborts (at once if it already has). */
  signal?: AbortSignal;
  /**
   * Wait for the key's next change even if it has a value now; resolves with the value it then
   * has (undefined if the change removed it). Default false: an existing value resolves at once.
   */
  next?: boolean;
}

/** What `check()` counted in a consistent store. */
export interface StoreCheck {
  /** Live keys (expired ones not yet reclaimed included; locks apart, in `locks`). */
  entries: number;
  /** Locks held and `getOrSet` loads under way. */
  locks: number;
  /** Bytes of blocks in use, index included (equals `stats().bytesUsed`). */
  bytesUsed: number;
  /** Bytes of the index block: all that stays in use once every key is deleted (with the log). */
  indexBytes: number;
  /** Bytes of the change log's block (0 until anyone called `watch` or `waitFor`). */
  logBytes: number;
  /** Bytes of freed blocks, kept for reuse. */
  bytesFree: number;
  /** Blocks carved from the buffer, in use or free. */
  blocks: number;
  /** The largest free block: the biggest entry that fits without growing or evicting. */
  largestFree: number;
}

export declare class SharedKVStore<V = any> {
  /** The store of this thread (set by `createManager` and `createStore`). */
  static instance: SharedKVStore | undefined;
  private constructor();
  /** Resolves once the store is attached (at once unless a worker awaits its handle). */
  readonly ready: Promise<this>;
  readonly attached: boolean;
  readonly handle: StoreHandle;
  /** A store file's absolute path (openStore); undefined for a store in memory. */
  readonly path: string | undefined;
  /** Writes a store file's changes to its disk and waits (msync); a no-op for stores in memory. */
  flush(): void;
  /**
   * A fresh copy of the value, or undefined. Throws TypeError for a non-string key.
   * `skipLock` is accepted for compatibility: reads never wait for anything.
   */
  get<T extends V = V>(key: string, skipLock?: boolean): T | undefined;
  /**
   * Stores a copy of `value`: true; `undefined` is not stored: false (the old value stays).
   * `resizeBuffer: true` re-fits the value's space instead of reusing a larger one.
   * Throws TypeError for a bad key or a value that cannot be stored, RangeError for a key
   * over 16 KiB of UTF-8, nesting deeper than 256, or a full store; the store is then unchanged.
   */
  set<T extends V = V>(key: string, value: Storable<T>, options?: boolean | SetOptions): boolean;
  /**
   * Deletes `key`; returns whether it existed. A glob (`*`, `?`; backslash escapes) or a
   * `/regex/flags` string deletes every matching key and returns whether any was deleted.
   */
  delete(keyOrPattern: string): boolean;
  /** All keys, or those matching a glob, a `/regex/flags` string, or a RegExp. */
  listKeys(pattern?: string | RegExp): string[];
  /**
   * Takes the advisory lock on `key`, waiting up to `timeout` ms (default 1000); false on
   * timeout. A lease (default 30 s): a holder that never releases (exited, terminated) loses it.
   */
  lock(key: string, timeout?: number, options?: { lease?: number }): boolean;
  /** Releases this thread's lock on `key`; false if this thread does not hold it. */
  release(key: string): boolean;
  /**
   * The value of `key`; if absent, what `loader(key)` resolves to, stored with `ttl`. Among all
   * threads (and processes, for a store file) one caller at a time runs its loader; the others
   * wait for its value without blocking their event loop. A loader that throws or rejects makes
   * its own caller reject and stores nothing; a waiter then runs its own loader. A loader whose
   * thread or process dies is taken over at once. Rejects with ERR_KV_TIMEOUT after `timeout`
   * ms (default 10,000) of waiting; `lease` (default 60,000 ms) bounds a turn whose holder's
   * liveness cannot be known.
   */
  getOrSet<T extends V = V>(
    key: string,
    loader: (key: string) => Storable<T> | undefined | Promise<Storable<T> | undefined>,
    options?: { ttl?: number; timeout?: number; lease?: number },
  ): Promise<T | undefined>;
  stats(): StoreStats;
  /**
   * Verifies the whole shared memory under the writer lock (every block, free list and index
   * slot against the counters). Throws an Error with `code: 'ERR_KV_CORRUPTED'` naming the
   * first inconsistency. Walks the whole store: for tests and diagnostics, not hot paths.
   */
  check(): StoreCheck;
  /**
   * Calls `listener(key, event)` for every change to the store made after this call, by any
   * thread or process, asynchronously in this thread, in the one order the store applied
   * them (every watcher sees the same order). A write that was refused produces no event.
   */
  watch(listener: WatchListener): Watcher;
  /** `watch` for keys matching a glob (`user:*`), a `/regex/flags` string or a RegExp, as `listKeys`. */
  watch(pattern: string | RegExp, listener: WatchListener): Watcher;
  /**
   * Resolves with `key`'s value: at once if it has one (unless `next`), else once a write gives
   * it one. Rejects on timeout (ERR_KV_TIMEOUT), abort (the signal's reason) or close (ERR_KV_CLOSED).
   */
  waitFor<T extends V = V>(key: string, options?: WaitForOptions): Promise<T | undefined>;
  /** Whether `key` has a value (as costly as a get). */
  has(key: string): boolean;
  /** The number of keys. */
  readonly size: number;
  /** Adds `delta` (default 1) to the number under `key` (absent: 0), atomically; returns the sum. */
  increment(key: string, delta?: number): number;
  /** Stores `next` only if the stored value equals `expected` (`undefined`: absent). Atomic. */
  compareAndSet<T extends V = V>(key: string, expected: T | undefined, next: Storable<T>): boolean;
  /**
   * Writes `fn(current)` with no other write in between (`fn` may rerun if another thread
   * changed the key). `undefined` from `fn` writes nothing. Returns what was written.
   */
  update<T extends V = V>(key: string, fn: (current: T | undefined) => T | undefined): T | undefined;
  /** Deletes every key; returns how many there were. */
  clear(): number;
  /** A named store's name (undefined for a manager's unnamed store). */
  readonly name: string | undefined;
  /** Releases this thread's hold on the store; idempotent. Later calls throw ERR_KV_CLOSED. */
  close(): void;
  readonly closed: boolean;
  /** Each key at most once, every value whole, under concurrent writes. */
  entries(): IterableIterator<[string, V]>;
  /**
   * With each entry's expiry (ms since the Unix epoch, null if none), read with its value from
   * the same version of the entry.
   */
  entries(options: { withExpiry: true }): IterableIterator<[string, V, number | null]>;
  entries(options?: { withExpiry?: boolean }): IterableIterator<[string, V] | [string, V, number | null]>;
  /** When `key` expires: ms since the Unix epoch; null if it never does; undefined if absent. */
  expiresAt(key: string): number | null | undefined;
  keys(): IterableIterator<string>;
  values(): IterableIterator<V>;
  [Symbol.iterator](): IterableIterator<[string, V]>;
  getMany<T extends V = V>(keys: Iterable<string>): Array<T | undefined>;
  /** Returns how many were stored (`undefined` values are not). */
  setMany(entries: Iterable<readonly [string, V]>): number;
}

export declare class Manager<V = any> {
  private constructor();
  readonly store: SharedKVStore<V>;
  readonly handle: StoreHandle;
  /** Sends the handle to the worker; its `createStore(parentPort)` attaches. Returns true. */
  registerFork(worker: Pick<Worker, 'postMessage'>): true;
  /** true if the worker was registered (once), else false. */
  unregisterFork(worker: object): boolean;
}

/** Main thread: creates the store and sets `globalThis.SharedKVStore.instance`. */
export declare function createManager<V = any>(options?: ManagerOptions): Manager<V>;

/** In a worker: attach through the parent port (see README for timing). */
export declare function createStore<V = any>(port: MessagePort, options?: StoreOptions): SharedKVStore<V>;
/** Anywhere: attach through a handle (e.g. `workerData.kv`). */
export declare function createStore<V = any>(handle: StoreHandle, options?: StoreOptions): SharedKVStore<V>;
/** Any thread: the named store `name`, the same memory everywhere in the process. */
export declare function createStore<V = any>(name: string, options?: NamedStoreOptions): SharedKVStore<V>;
/** The manager's store in this thread, else the named store 'default'. */
export declare function createStore<V = any>(): SharedKVStore<V>;

/**
 * The store in the file at `path`, shared by every thread of every process that opens it: the
 * first open creates and formats it. Throws ERR_KV_NOT_A_STORE for a file that is not a store,
 * ERR_KV_TRUNCATED for a store file shorter than the store made in it,
 * ERR_KV_UNSAFE_FILE for one owned by another user, writable beyond `mode`, or in a directory
 * others may write to without the sticky bit, ERR_KV_LAYOUT for a store of another layout version, ENOENT (`create: false`), ELOOP (a
 * symbolic link), EACCES and other OS errors with the path in the message. If the file is
 * truncated later, under this process, every operation on the store throws ERR_KV_LOST (naming
 * the path and the new size): delete the file and open the path again.
 */
export declare function openStore<V = any>(path: string, options?: OpenStoreOptions): SharedKVStore<V>;

/** The value codecs (both write the same bytes). */
export declare const codec: {
  Encoder: new (size?: number) => { buf: Buffer; encode(value: unknown): number };
  decode(bytes: Uint8Array, start?: number, end?: number): unknown;
  nativeEncode(value: unknown): Buffer;
  nativeDecode(bytes: Uint8Array): unknown;
};

declare global {
  // eslint-disable-next-line no-var
  var SharedKVStore: typeof import('./index').SharedKVStore | undefined;
}
