'use strict';
// A Keyv storage adapter (`require('shared-kv-store/keyv')`): Keyv, and what is built on it
// (cache-manager, cacheable), over a store shared by threads, or by processes (`{ path }`).
// Keyv serializes values and prefixes keys with `<namespace>:` itself; this adapter stores
// what it is given, with Keyv's ttl (ms) as the store's native expiry.
const { EventEmitter } = require('node:events');
const { SharedKVStore, createStore, openStore } = require('..');

/** `key` as a pattern that matches only itself (delete() reads `*`, `?`, `\` and /re/ as patterns). */
function exact(key) {
  const escaped = key.replace(/[\\*?]/g, '\\$&');
  return escaped.startsWith('/') ? '\\' + escaped : escaped;
}

class KeyvSharedKVStore extends EventEmitter {
  /**
   * `storeOrOptions`: a SharedKVStore, or `{ name = 'keyv', maxBytes, onFull, maxEntries,
   * codec }` for a named store (the same memory in every thread), or `{ path, ... , mode }` for
   * a store file shared by processes (openStore).
   */
  constructor(storeOrOptions = {}) {
    super();
    if (storeOrOptions instanceof SharedKVStore) {
      this.store = storeOrOptions;
    } else if (storeOrOptions !== null && typeof storeOrOptions === 'object') {
      const { name = 'keyv', path, ...options } = storeOrOptions; // onFull, maxEntries, maxBytes, ...
      this.store = path === undefined ? createStore(name, options) : openStore(path, options);
    } else {
      throw new TypeError('KeyvSharedKVStore expects a SharedKVStore or an options object');
    }
    // Keyv 5 offers keyv.iterator() only for adapters whose `dialect` it lists as iterable;
    // this one iterates as those do (raw values, filtered by namespace), so it says 'redis'.
    this.opts = { dialect: 'redis', url: this.store.path ?? `shared-kv-store:${this.store.name ?? 'store'}` };
    // No `namespace` property until Keyv 5 sets one (it then prefixes keys itself): Keyv 6 takes
    // a store that has one for a store that prefixes keys itself, and prefixes them otherwise.
  }

  /** Runs `fn`, turning a throw into an 'error' event (if anyone listens) and a rejection. */
  #run(fn) {
    try {
      return Promise.resolve(fn());
    } catch (err) {
      if (this.listenerCount('error') > 0) this.emit('error', err);
      return Promise.reject(err);
    }
  }

  get(key) {
    return this.#run(() => this.store.get(key));
  }

  getMany(keys) {
    return this.#run(() => keys.map((key) => this.store.get(key)));
  }

  /** `ttl` in milliseconds, as Keyv gives it; none or 0: no expiry. */
  set(key, value, ttl) {
    return this.#run(() => this.store.set(key, value, typeof ttl === 'number' && ttl > 0 ? { ttl: ttl / 1000 } : undefined));
  }

  setMany(entries) {
    return this.#run(() => entries.map(({ key, value, ttl }) => this.store.set(key, value, typeof ttl === 'number' && ttl > 0 ? { ttl: ttl / 1000 } : undefined)));
  }

  delete(key) {
    return this.#run(() => this.store.delete(exact(key)));
  }

  /**
   * Whether each key existed (as keyv 6 expects); under keyv 5, which sets `namespace` on its
   * store (keyv 6 never does, on a store without one), whether every key existed, as keyv 5's
   * own deleteMany answers.
   */
  deleteMany(keys) {
    return this.#run(() => {
      const deleted = keys.map((key) => this.store.delete(exact(key)));
      return 'namespace' in this ? deleted.every(Boolean) : deleted;
    });
  }

  has(key) {
    return this.#run(() => this.store.has(key));
  }

  hasMany(keys) {
    return this.#run(() => keys.map((key) => this.store.has(key)));
  }

  /**
   * Deletes this adapter's namespace (or, with none, every key of the store), never the
   * store's lock() leases.
   */
  clear() {
    return this.#run(() => {
      this.store.delete(this.namespace ? `${exact(this.namespace)}:*` : '*');
    });
  }

  /** [key, value] of every key in `namespace` (Keyv strips the prefix and checks expiry). */
  async *iterator(namespace = this.namespace) {
    const prefix = namespace ? `${namespace}:` : undefined;
    for (const [key, value] of this.store.entries()) {
      if (prefix === undefined || key.startsWith(prefix)) yield [key, value];
    }
  }

  /** Nothing to disconnect: the store stays usable by the rest of the thread. */
  async disconnect() {}
}

module.exports = { KeyvSharedKVStore, default: KeyvSharedKVStore };
