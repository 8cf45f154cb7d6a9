'use strict';
// The hand-over of a store's handle on a MessagePort: `manager.registerFork(worker)` posts it,
// `createStore(parentPort)` in the worker receives it. Handles are internal messages: no
// listener of the user's ('message', `onmessage`, addEventListener) may ever see one, however
// the user's listener, registerFork and createStore are ordered, and however often the handle
// is sent (registerFork again after unregisterFork).

const { receiveMessageOnPort, isMainThread, parentPort, MessagePort } = require('node:worker_threads');

/** Marks the handle object, so it is recognised among other messages on a port. */
const HANDLE = '__sharedKVStore';

function isHandle(x) {
  return x !== null && typeof x === 'object' && x[HANDLE] === 1 &&
    (x.buffer instanceof SharedArrayBuffer || typeof x.name === 'string' || typeof x.path === 'string');
}

/**
 * What registerFork posts: a handle marked as the hand-over. Only these are taken out before
 * the user's listeners; a handle the user posts (`worker.postMessage(manager.handle)`) is the
 * user's message, delivered like any other.
 */
function forkMessage(handle) {
  return { ...handle, fork: true };
}

function isFork(x) {
  return isHandle(x) && x.fork === true;
}

// Node (20 and 24) hands every message a port receives to this method of the port
// (lib/internal/per_context/messageport.js), which dispatches it to every kind of listener.
// A registered symbol, so an own property of the port shadows it: handles are taken out
// before any listener runs. Bun and Deno have no such method: there every way of adding a
// 'message' listener is wrapped instead (filterListeners).
const kHybridDispatch = Symbol.for('nodejs.internal.kHybridDispatch');

/**
 * Per port: the last handle it carried, who waits for the next one, and the port's own
 * `on`/`off` as they were before any wrapping (ours must not count as the user's listener).
 * Shared by every copy of this package in the thread (a dependency may bundle its own): the
 * first guards the port, and the others find its state here instead of taking the handle
 * from each other.
 */
const guards = (globalThis[Symbol.for('shared-kv-store.port-guards')] ??= new WeakMap());

function guard(port) {
  let g = guards.get(port);
  if (g !== undefined) {
    // Made by an older copy of this package, which kept no methods.
    g.on ??= Object.getPrototypeOf(port)?.on ?? port.on;
    g.off ??= Object.getPrototypeOf(port)?.off ?? port.off;
    return g;
  }
  g = { latest: undefined, waiters: new Set(), on: port.on, off: port.off };
  guards.set(port, g);
  const dispatch = port[kHybridDispatch];
  if (typeof dispatch === 'function') {
    Object.defineProperty(port, kHybridDispatch, {
      configurable: true,
      writable: true,
      value(data, type, event) {
        if (type === 'message' && isFork(data)) return take(g, data);
        return dispatch.call(this, data, type, event);
      },
    });
  } else {
    filterListeners(port, g);
  }
  return g;
}

/**
 * Where the port has no dispatch method to shadow (Bun, Deno), each 'message' listener the
 * user adds, in any way, is added wrapped: a handle goes to the hand-over, anything else to
 * the listener. Adds no listener itself, so the thread's exit is unchanged.
 */
function filterListeners(port, g) {
  // The user's listener -> ours around it, per kind: called with the message or with an event,
  // and once or not. A once listener is added as a lasting one that removes itself when a
  // message of the user's comes: the runtime's own `once` would be spent on a handle.
  const kinds = { data: new WeakMap(), event: new WeakMap(), dataOnce: new WeakMap(), eventOnce: new WeakMap() };
  const originals = {};
  const wrap = (fn, kind) => {
    if (typeof fn !== 'function' && typeof fn?.handleEvent !== 'function') return fn;
    let w = kinds[kind].get(fn);
    if (w !== undefined) return w;
    const ofEvent = kind.startsWith('event');
    w = function (arg, ...rest) {
      const data = ofEvent ? arg?.data : arg;
      if (isFork(data)) return take(g, data);
      if (kind === 'dataOnce') originals.off?.call(port, 'message', w);
      if (kind === 'eventOnce') originals.removeEventListener?.call(port, 'message', w);
      if (kind.endsWith('Once')) kinds[kind].delete(fn);
      return typeof fn === 'function' ? fn.call(this, arg, ...rest) : fn.handleEvent(arg);
    };
    kinds[kind].set(fn, w);
    return w;
  };
  const unwrap = (fn, ...of) => {
    for (const kind of of) {
      const w = fn == null ? undefined : kinds[kind].get(fn);
      if (w !== undefined) {
        kinds[kind].delete(fn);
        return w;
      }
    }
    return fn;
  };
  const onceOption = (options) => options === true || options?.once === true;
  // [name, how it is called instead: (original, fn, rest) => result]
  const methods = {
    on: (o, fn, rest) => o.call(port, 'message', wrap(fn, 'data'), ...rest),
    addListener: (o, fn, rest) => o.call(port, 'message', wrap(fn, 'data'), ...rest),
    prependListener: (o, fn, rest) => o.call(port, 'message', wrap(fn, 'data'), ...rest),
    once: (o, fn, rest) => (originals.on ?? o).call(port, 'message', wrap(fn, originals.off ? 'dataOnce' : 'data'), ...rest),
    prependOnceListener: (o, fn, rest) =>
      (originals.prependListener ?? o).call(port, 'message', wrap(fn, originals.off ? 'dataOnce' : 'data'), ...rest),
    off: (o, fn, rest) => o.call(port, 'message', unwrap(fn, 'data', 'dataOnce'), ...rest),
    removeListener: (o, fn, rest) => o.call(port, 'message', unwrap(fn, 'data', 'dataOnce'), ...rest),
    addEventListener: (o, fn, [options, ...rest]) => onceOption(options) && originals.removeEventListener
      ? o.call(port, 'message', wrap(fn, 'eventOnce'), { ...(typeof options === 'object' ? options : {}), once: false }, ...rest)
      : o.call(port, 'message', wrap(fn, 'event'), options, ...rest),
    removeEventListener: (o, fn, rest) => o.call(port, 'message', unwrap(fn, 'event', 'eventOnce'), ...rest),
  };
  for (const [name, instead] of Object.entries(methods)) {
    const original = port[name];
    if (typeof original !== 'function') continue;
    originals[name] = original;
    Object.defineProperty(port, name, {
      configurable: true,
      writable: true,
      value(event, fn, ...rest) {
        return event === 'message' ? instead(original, fn, rest) : original.call(this, event, fn, ...rest);
      },
    });
  }
  const onmessage = findAccessor(port, 'onmessage');
  if (onmessage?.set) {
    let user = onmessage.get?.call(port) ?? null;
    Object.defineProperty(port, 'onmessage', {
      configurable: true,
      get: () => user,
      set: (fn) => {
        user = fn;
        onmessage.set.call(port, typeof fn === 'function' ? wrap(fn, 'event') : fn);
      },
    });
  }
}

function take(g, handle) {
  g.latest = handle;
  const waiters = [...g.waiters];
  g.waiters.clear();
  for (const w of waiters) w(handle);
}

/**
 * The store handle `port` carries: returned at once if one is queued (registerFork in the same
 * tick as `new Worker`) or already came; otherwise undefined, and `onHandle(handle)` runs when
 * it arrives, or `onTimeout()` after `timeout` ms. Messages of the user's taken out of the queue
 * on the way are handed back to the user's listener, in order.
 */
function receiveHandle(port, timeout, onHandle, onTimeout) {
  // receiveMessageOnPort takes only a MessagePort: Deno's parentPort is a plain object, whose
  // messages only a listener receives (one that arrives while none is added is dropped). On
  // Node (whose MessagePort has the dispatch method), anything else is the caller's mistake.
  const drainable = typeof MessagePort === 'function' && port instanceof MessagePort;
  if (!drainable && typeof MessagePort?.prototype?.[kHybridDispatch] === 'function') {
    throw new TypeError('createStore expects the parentPort (a MessagePort) or a handle from manager.handle');
  }
  const g = guard(port);
  const early = [];
  for (let m; drainable && (m = receiveMessageOnPort(port)) !== undefined;) {
    if (isFork(m.message)) {
      g.latest = m.message;
      break;
    }
    early.push(m.message);
  }
  const users = typeof port.listenerCount === 'function' ? port.listenerCount('message') : 0;
  if (g.latest !== undefined) {
    if (early.length) redeliver(port, early, users);
    return g.latest;
  }
  // Not sent yet: listen until it comes (a listener starts the port's delivery and keeps the
  // thread alive), then stop listening so the thread can exit; after `timeout` at most.
  const listener = (message) => {
    if (isFork(message)) take(g, message); // only where the dispatch is not shadowed
  };
  const timer = setTimeout(() => {
    g.waiters.delete(waiter);
    g.off.call(port, 'message', listener);
    onTimeout();
  }, timeout);
  timer.unref();
  const waiter = (handle) => {
    clearTimeout(timer);
    g.off.call(port, 'message', listener);
    onHandle(handle);
  };
  g.waiters.add(waiter);
  // The port's own `on`, as it was, and before redeliver hooks the port's methods: ours is not
  // the user's first listener.
  g.on.call(port, 'message', listener);
  if (early.length) redeliver(port, early, users);
  return undefined;
}

/** Hands `messages` to the user's listeners: at once if there are `users`, else to the first. */
function redeliver(port, messages, users) {
  // A microtask runs before the port dispatches anything still queued (that needs an event
  // loop turn), so the user sees these first, in order.
  const emitAll = () => queueMicrotask(() => messages.forEach((m) => deliver(port, m)));
  if (users > 0) return emitAll();
  // MessagePort emits no 'newListener' for user listeners: wait for the first one, of any
  // kind, by wrapping this port's methods and its onmessage setter, put back as they were as
  // soon as one is added.
  const methods = ['on', 'addListener', 'once', 'prependListener', 'addEventListener'];
  const saved = [...methods, 'onmessage'].map((name) => [name, Object.getOwnPropertyDescriptor(port, name)]);
  const restore = () => {
    for (const [name, d] of saved) {
      if (d === undefined) delete port[name];
      else Object.defineProperty(port, name, d);
    }
  };
  for (const name of methods) {
    const original = port[name];
    if (typeof original !== 'function') continue;
    port[name] = function (event, ...rest) {
      // Unwrapped first: `on` adds through `addEventListener`, which must not count twice.
      if (event !== 'message') return original.call(port, event, ...rest);
      restore();
      const result = original.call(port, event, ...rest);
      emitAll();
      return result;
    };
  }
  const onmessage = findAccessor(port, 'onmessage');
  if (onmessage?.set) {
    Object.defineProperty(port, 'onmessage', {
      configurable: true,
      get: () => onmessage.get?.call(port),
      set: (fn) => {
        restore();
        port.onmessage = fn; // through the setter as it was (filterListeners' where it wraps)
        emitAll();
      },
    });
  }
}

/**
 * Hands `m` to the port's 'message' listeners of every kind. Node's `port.emit` does; Bun's
 * takes its second argument as a MessageEventInit (a string throws, an object arrives as its
 * `.data`), so there the message goes in a MessageEvent.
 */
function deliver(port, m) {
  if (typeof port[kHybridDispatch] === 'function' || typeof port.dispatchEvent !== 'function' ||
    typeof MessageEvent !== 'function') {
    return port.emit('message', m);
  }
  port.dispatchEvent(new MessageEvent('message', { data: m }));
}

/** The accessor `name` on `obj`'s prototype chain. */
function findAccessor(obj, name) {
  for (let o = obj; o !== null; o = Object.getPrototypeOf(o)) {
    const d = Object.getOwnPropertyDescriptor(o, name);
    if (d !== undefined) return d;
  }
  return undefined;
}

// A worker's parentPort is guarded as soon as this package loads: a handle that arrives before
// createStore(parentPort) is called (or again, after it) is kept for it, not shown to the user.
if (!isMainThread && parentPort) guard(parentPort);

module.exports = { HANDLE, isHandle, forkMessage, receiveHandle };
