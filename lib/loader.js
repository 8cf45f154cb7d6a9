'use strict';
// getOrSet: one loader at a time for a missing key, across every thread and process that
// shares the store. The loader's turn is a lock() lease on the key, so what frees a lock frees
// it too: a release, the holder thread's exit or termination (Node-API cleanup hook), the
// holder process's death (its pid is checked), or, last, the lease's expiry. Waiters poll the
// key on timers, so their event loops keep running.

const LOADING = '\u0000load\u0000';
const DEFAULT_TIMEOUT_MS = 10_000;
const DEFAULT_LEASE_MS = 60_000;
const MAX_POLL_MS = 20;

function timeoutError(key, timeout) {
  const err = new Error(`getOrSet: '${key}' was neither stored nor free to load within ${timeout} ms`);
  err.code = 'ERR_KV_TIMEOUT';
  return err;
}

/**
 * `store.getOrSet(key, loader, { ttl, timeout, lease })`: the stored value if there is one;
 * else exactly one caller at a time runs `loader(key)` and stores what it resolves to (with
 * `ttl`), and the others wait for that value. A loader that throws or rejects makes its own
 * caller reject and stores nothing; a waiter then runs its own loader.
 */
async function getOrSet(store, key, loader, options = {}) {
  if (typeof loader !== 'function') throw new TypeError('getOrSet: loader must be a function');
  if (options === null || typeof options !== 'object') throw new TypeError('getOrSet: options must be an object');
  const { ttl, timeout = DEFAULT_TIMEOUT_MS, lease = DEFAULT_LEASE_MS } = options;
  if (typeof timeout !== 'number' || !(timeout >= 0)) throw new RangeError(`getOrSet: timeout must be a number of ms >= 0, got ${String(timeout)}`);
  if (ttl !== undefined && !(typeof ttl === 'number' && ttl > 0 && Number.isFinite(ttl))) {
    throw new RangeError(`getOrSet: ttl must be a positive number of seconds, got ${String(ttl)}`);
  }
  const setOptions = ttl === undefined ? undefined : { ttl };
  const turn = LOADING + key;
  const deadline = Date.now() + timeout;
  for (let poll = 1; ; poll = Math.min(poll * 2, MAX_POLL_MS)) {
    const found = store.get(key); // also checks the key
    if (found !== undefined) return found;
    if (store.lock(turn, 0, { lease })) {
      try {
        const now = store.get(key); // stored between our get and our turn
        if (now !== undefined) return now;
        const value = await loader(key);
        if (value !== undefined) store.set(key, value, setOptions);
        return value;
      } finally {
        if (!store.closed) store.release(turn);
      }
    }
    const left = deadline - Date.now();
    if (left <= 0) throw timeoutError(key, timeout);
    await new Promise((resolve) => setTimeout(resolve, Math.min(poll, left)));
  }
}

module.exports = { getOrSet };
