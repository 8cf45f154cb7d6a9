'use strict';
// store.watch() and store.waitFor(): listeners told of every change to the store, by any thread
// or process, in the one order the store applied them. The log, its order and the waking are
// Rust's (src/changelog.rs, src/binding/watch.rs); this module only delivers what it reads.
//
// One Hub per store per thread: one registration and one read of the log per wake-up, shared by
// all of the thread's watchers of that store.

const noop = () => {};
/** Longest interval a timer accepts: the keep-alive timer never fires in practice. */
const KEEP_ALIVE_MS = 2 ** 31 - 1;

class Watcher {
  #hub;
  #timer;
  /** @internal */
  constructor(hub, match, listener, onStoreClose) {
    this.#hub = hub;
    this.match = match;
    this.listener = listener;
    this.onStoreClose = onStoreClose;
    // Keeps the thread alive the way a port listener does; unref() lets it exit.
    this.#timer = setInterval(noop, KEEP_ALIVE_MS);
  }

  get closed() {
    return this.#hub === undefined;
  }

  /** Stops delivery at once: the listener is not called again. Idempotent. */
  close() {
    if (this.#hub === undefined) return;
    const hub = this.#hub;
    this.#hub = undefined;
    clearInterval(this.#timer);
    hub.remove(this);
  }

  /** Lets the program exit while this watcher is open (like timer.unref()). */
  unref() {
    this.#timer.unref();
    return this;
  }

  /** Keeps the program alive while this watcher is open (the default). */
  ref() {
    this.#timer.ref();
    return this;
  }

  hasRef() {
    return this.#timer.hasRef();
  }
}

class Hub {
  #native;
  #id;
  #int32;
  #watchers = new Set();
  #slot;
  #cursor;
  #signalIndex;
  #native_waiter;
  #onEmpty;

  /** `buffer`: the store's SharedArrayBuffer (or external ArrayBuffer); `onEmpty`: called when the last watcher closes. */
  constructor(native, id, buffer, onEmpty) {
    this.#native = native;
    this.#id = id;
    this.#onEmpty = onEmpty;
    const { slot, cursor, signalIndex, native: needsWaiter } = native.watchOpen(id);
    this.#slot = slot;
    this.#cursor = cursor;
    this.#signalIndex = signalIndex;
    this.#native_waiter = needsWaiter;
    if (needsWaiter) {
      // Named stores and store files: a native thread sleeps on the log and calls this back.
      native.watchWaiter(id, slot, cursor, () => this.#wake());
    } else {
      this.#int32 = new Int32Array(buffer);
      // Never synchronously from watch(): a listener is always called asynchronously.
      queueMicrotask(() => this.#wake());
    }
  }

  add(match, listener, onStoreClose) {
    const w = new Watcher(this, match, listener, onStoreClose);
    this.#watchers.add(w);
    return w;
  }

  remove(watcher) {
    if (!this.#watchers.delete(watcher) || this.#watchers.size > 0) return;
    this.#close();
    this.#onEmpty(this);
  }

  /** The store is closing in this thread: every watcher closes, waitFor()s reject. */
  closeAll() {
    for (const w of [...this.#watchers]) {
      w.close();
      w.onStoreClose?.();
    }
    this.#close();
  }

  get open() {
    return this.#slot !== undefined;
  }

  #close() {
    if (this.#slot === undefined) return;
    const slot = this.#slot;
    this.#slot = undefined;
    this.#native.watchClose(this.#id, slot);
  }

  /** Reads and delivers what the log holds, then sleeps until a writer signals more. */
  #wake() {
    if (this.#slot === undefined) return;
    this.#drain();
    if (this.#slot === undefined) return; // a listener closed the last watcher
    if (this.#native_waiter) {
      this.#native.watchAck(this.#id, this.#slot, this.#cursor);
      return;
    }
    for (;;) {
      const signal = this.#native.watchArm(this.#id, this.#cursor);
      if (signal !== -1) {
        const wait = Atomics.waitAsync(this.#int32, this.#signalIndex, signal);
        if (wait.async) {
          wait.value.then(() => this.#wake());
          return;
        }
      }
      this.#drain(); // records came (or the signal moved) meanwhile
      if (this.#slot === undefined) return;
    }
  }

  #drain() {
    for (;;) {
      const batch = this.#native.watchRead(this.#id, this.#cursor);
      this.#cursor = batch[0];
      if (batch[1]) this.#deliver(undefined, 'overflow');
      for (let i = 2; i < batch.length && this.#slot !== undefined; i += 2) this.#deliver(batch[i + 1], batch[i]);
      if (!batch[1] && batch.length === 2) return;
      if (this.#slot === undefined) return;
    }
  }

  #deliver(key, event) {
    for (const w of this.#watchers) {
      if (w.closed) continue;
      // Records without a key (clear, overflow) concern every watcher.
      if (key !== undefined && w.match !== undefined && !w.match(key)) continue;
      try {
        w.listener(key, event);
      } catch (err) {
        // Like an EventEmitter listener's: reported as uncaught, and delivery goes on.
        process.nextTick(() => {
          throw err;
        });
      }
    }
  }
}

function timeoutError(key, ms) {
  const err = new Error(`waitFor: '${key}' did not change within ${ms} ms`);
  err.code = 'ERR_KV_TIMEOUT';
  return err;
}

function closedError() {
  const err = new Error('shared-kv-store: the store was closed while waitFor() waited');
  err.code = 'ERR_KV_CLOSED';
  return err;
}

/**
 * The value of `key` once it has one: at once if it has one now (unless `next`), else at its
 * next set. With `next: true`, at the key's next change of any kind (undefined if that change
 * removed it). `watchKey(key, listener, onStoreClose)` watches exactly one key.
 */
function waitFor(store, key, options, watchKey) {
  if (options === null || (options !== undefined && typeof options !== 'object')) {
    throw new TypeError('waitFor: options must be an object');
  }
  const { timeout, signal, next = false } = options ?? {};
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0))) {
    throw new RangeError(`waitFor: timeout must be a number of ms >= 0, got ${String(timeout)}`);
  }
  if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
    throw new TypeError('waitFor: signal must be an AbortSignal');
  }
  if (typeof next !== 'boolean') throw new TypeError('waitFor: next must be a boolean');
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    let timer;
    let watcher;
    const onAbort = () => settle(reject, signal.reason);
    function settle(how, value) {
      if (watcher === undefined) return;
      watcher.close();
      watcher = undefined;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      how(value);
    }
    watcher = watchKey(key, (_key, event) => {
      if (event === 'set' || event === 'overflow') {
        // The value now (a later write may already have replaced it): after an overflow the
        // change may have been missed, so look.
        const value = store.get(key);
        if (value !== undefined || next) settle(resolve, value);
      } else if (next) {
        settle(resolve, undefined);
      }
    }, () => settle(reject, closedError()));
    // Registered first, then read: a set between the two is an event, not lost.
    if (!next) {
      const value = store.get(key);
      if (value !== undefined) return settle(resolve, value);
    }
    if (timeout !== undefined && timeout !== Infinity) timer = setTimeout(() => settle(reject, timeoutError(key, timeout)), timeout);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

module.exports = { Hub, Watcher, waitFor };
