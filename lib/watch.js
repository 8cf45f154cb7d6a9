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
  /** @internal `start`: the log position of the first change this watcher is told of. */
  constructor(hub, start, match, listener, onStoreClose) {
    this.#hub = hub;
    this.start = start;
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
    this.#hub?.refChanged();
    return this;
  }

  hasRef() {
    return this.#timer.hasRef();
  }
}

/** After an error reading the log (corrupted memory), the next attempt waits this long. */
const RETRY_MS = 100;
/**
 * A SharedArrayBuffer watcher looks again after sleeping this long even if no write woke it:
 * the wake is a JS call (Atomics.notify) in the writing thread, after its write, which a
 * worker terminated at that moment never makes.
 */
const NAP_MS = 500;
/**
 * With only unref'd watchers, a hub that found nothing new looks again after this long, on an
 * unref'd timer, instead of sleeping until a writer wakes it. A wake-up (Atomics.waitAsync's
 * promise, the native waiter's call) is work Node runs even when nothing holds the thread any
 * more, so a busy store kept such a thread from exiting (one run in three on a loaded
 * machine); a timer runs only while something does.
 */
const UNREF_POLL_MS = 10;
/**
 * Records delivered per turn of the event loop at most: a store's log holds tens of thousands,
 * and one turn delivering them all to a slow listener starved the thread (a 1 ms listener:
 * 36 s without a turn, and an unref'd watcher's thread that could not exit meanwhile).
 */
const BATCH = 1024;

class Hub {
  #native;
  #id;
  #int32;
  #watchers = new Set();
  #slot;
  #cursor;
  #signalIndex;
  #nativeWaiter;
  #onEmpty;
  /** The unref'd timer of a hub with only unref'd watchers that is polling (see UNREF_POLL_MS). */
  #poll;

  /** `buffer`: the store's SharedArrayBuffer (or external ArrayBuffer); `onEmpty`: called when the last watcher closes. */
  constructor(native, id, buffer, onEmpty) {
    this.#native = native;
    this.#id = id;
    this.#onEmpty = onEmpty;
    const { slot, cursor, signalIndex, native: needsWaiter } = native.watchOpen(id);
    this.#slot = slot;
    this.#cursor = cursor;
    this.#signalIndex = signalIndex;
    this.#nativeWaiter = needsWaiter;
    if (needsWaiter) {
      // Named stores and store files: a native thread sleeps on the log and calls this back.
      try {
        native.watchWaiter(id, slot, cursor, () => this.#wake());
      } catch (err) {
        this.#close();
        throw err;
      }
    } else {
      this.#int32 = new Int32Array(buffer);
      // Never synchronously from watch(): a listener is always called asynchronously.
      queueMicrotask(() => this.#wake());
    }
  }

  /** A new watcher, told of changes from now on (not of those the hub has yet to read). */
  add(match, listener, onStoreClose) {
    const w = new Watcher(this, this.#native.watchHead(this.#id), match, listener, onStoreClose);
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
    try {
      for (const w of [...this.#watchers]) {
        try {
          w.close();
        } finally {
          w.onStoreClose?.();
        }
      }
    } finally {
      this.#close();
    }
  }

  get open() {
    return this.#slot !== undefined;
  }

  #close() {
    if (this.#slot === undefined) return;
    const slot = this.#slot;
    this.#slot = undefined;
    clearTimeout(this.#poll);
    this.#native.watchClose(this.#id, slot);
    // Ends this hub's pending Atomics.waitAsync (other sleepers on the word look and sleep again).
    if (this.#int32 !== undefined) Atomics.notify(this.#int32, this.#signalIndex);
  }

  /**
   * Reads one batch of the log and delivers it; reads again in the next turn of the event loop
   * while there was something to read, and sleeps until a writer signals once there was not.
   * One batch per turn: a writer that keeps pace does not starve this thread's event loop. And
   * a busy store is read in batches without sleeping in between: each sleep costs the writer
   * that ends it a wake-up call (measured: woken after every few writes, a watched set cost
   * 1.4x an unwatched one).
   */
  #wake() {
    if (this.#slot === undefined) return;
    try {
      const read = this.#drain();
      if (this.#slot === undefined) return; // a listener closed the last watcher
      if (read) {
        this.#soon();
        return;
      }
      if (!this.#anyRef()) {
        this.#poll = setTimeout(() => {
          this.#poll = undefined;
          this.#wake();
        }, UNREF_POLL_MS).unref();
        return;
      }
      if (this.#nativeWaiter) {
        this.#native.watchAck(this.#id, this.#slot, this.#cursor); // the waiter calls again if more came
        return;
      }
      const signal = this.#native.watchArm(this.#id, this.#cursor);
      if (signal === null) {
        this.#soon(); // more came meanwhile: read it in the next turn
        return;
      }
      const wait = Atomics.waitAsync(this.#int32, this.#signalIndex, signal, NAP_MS);
      if (wait.async) wait.value.then(() => this.#wake());
      else this.#soon();
    } catch (err) {
      if (err?.code === 'ERR_KV_LOST') return this.#lost(err);
      // Corrupted memory (the only way reading can fail): reported as uncaught, as a
      // listener's error is, and tried again a little later rather than in a loop.
      process.nextTick(() => {
        throw err;
      });
      setTimeout(() => {
        if (this.#nativeWaiter && this.#slot !== undefined) this.#native.watchAck(this.#id, this.#slot, this.#cursor);
        else this.#wake();
      }, RETRY_MS).unref();
    }
  }

  /**
   * The store file was truncated under this process (ERR_KV_LOST): every watcher is told
   * `'lost'` once and closed, and waitFor()s reject with the error. Nothing more can come.
   */
  #lost(err) {
    for (const w of [...this.#watchers]) {
      if (w.closed) continue;
      try {
        if (w.onStoreClose === undefined) w.listener(undefined, 'lost');
      } catch (e) {
        process.nextTick(() => {
          throw e;
        });
      }
      try {
        w.close();
      } finally {
        w.onStoreClose?.(err);
      }
    }
    this.#close();
    this.#onEmpty(this);
  }

  /**
   * Reads again in the next turn of the event loop. With only unref'd watchers, on an unref'd
   * timer instead: an unref'd watcher of a busy store must not keep the thread alive by always
   * having its next read scheduled (and an unref'd immediate would wait for other events).
   */
  #soon() {
    if (this.#anyRef()) return void setImmediate(() => this.#wake());
    setTimeout(() => this.#wake(), 1).unref();
  }

  #anyRef() {
    for (const w of this.#watchers) if (w.hasRef()) return true;
    return false;
  }

  /** A watcher was ref'd again: a polling hub goes back to sleeping until woken. */
  refChanged() {
    if (this.#poll === undefined) return;
    clearTimeout(this.#poll);
    this.#poll = undefined;
    this.#wake();
  }

  /** Reads and delivers what the log holds; whether there was anything. */
  #drain() {
    const batch = this.#native.watchRead(this.#id, this.#cursor, BATCH);
    this.#cursor = batch[0];
    // Told to the watchers that were watching before the newest record read: the ones the
    // lost records concern.
    if (batch[1]) this.#deliver(undefined, 'overflow', batch[0] - 1);
    for (let i = 2; i < batch.length && this.#slot !== undefined; i += 3) this.#deliver(batch[i + 1], batch[i], batch[i + 2]);
    return batch[1] || batch.length > 2;
  }

  #deliver(key, event, position) {
    // A snapshot: a watcher a listener adds now starts after this change anyway.
    for (const w of [...this.#watchers]) {
      // A watcher added after this change was made is not told of it.
      if (w.closed || position < w.start) continue;
      try {
        // Records without a key (clear, overflow) concern every watcher.
        if (key !== undefined && w.match !== undefined && !w.match(key)) continue;
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

const MAX_TIMEOUT_MS = 2 ** 31 - 1;

/**
 * The value of `key` once it has one: at once if it has one now (unless `next`), else at its
 * next set. With `next: true`, at the key's next change of any kind (undefined if that change
 * removed it; after an overflow, whatever it holds then). `watchKey(key, listener,
 * onStoreClose)` watches exactly one key.
 */
function waitFor(store, key, options, watchKey) {
  if (options === null || (options !== undefined && typeof options !== 'object')) {
    throw new TypeError('waitFor: options must be an object');
  }
  const { timeout, signal, next = false } = options ?? {};
  if (timeout !== undefined && (typeof timeout !== 'number' || !(timeout >= 0) || (timeout > MAX_TIMEOUT_MS && timeout !== Infinity))) {
    throw new RangeError(`waitFor: timeout must be a number of ms from 0 to ${MAX_TIMEOUT_MS} (or Infinity), got ${String(timeout)}`);
  }
  if (signal !== undefined && (signal === null || typeof signal.aborted !== 'boolean' || typeof signal.addEventListener !== 'function')) {
    throw new TypeError('waitFor: signal must be an AbortSignal');
  }
  if (typeof next !== 'boolean') throw new TypeError('waitFor: next must be a boolean');
  if (signal?.aborted) return Promise.reject(signal.reason);
  if (!next) {
    // Present already: no need to watch at all.
    const value = store.get(key);
    if (value !== undefined) return Promise.resolve(value);
  }
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
    function resolveWithValue(always) {
      let value;
      try {
        value = store.get(key);
      } catch (err) {
        return settle(reject, err);
      }
      if (value !== undefined || always) settle(resolve, value);
    }
    watcher = watchKey(key, (_key, event) => {
      // The value now (a later write may already have replaced it); after an overflow the
      // change may have been missed, so look.
      if (event === 'set' || event === 'overflow') resolveWithValue(next);
      else if (next) settle(resolve, undefined);
    }, (err) => settle(reject, err ?? closedError()));
    // Watching, then read again: a set between the first read and the watch is not lost.
    if (!next) resolveWithValue(false);
    if (watcher === undefined) return;
    if (timeout !== undefined && timeout !== Infinity) timer = setTimeout(() => settle(reject, timeoutError(key, timeout)), timeout);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

module.exports = { Hub, Watcher, waitFor };
