'use strict';
// Worker side of conformance.mjs (the modes it starts workers in). CommonJS and synchronous up to createStore(parentPort): on
// Deno a message that arrives while no listener is attached is dropped, so nothing may await
// before the hand-over starts.
const { parentPort, workerData } = require('node:worker_threads');
const kv = require(workerData.pkg);

const say = (x) => parentPort.postMessage(x);
const errOf = (e) => ({ name: e?.name, code: e?.code, message: String(e?.message ?? e) });

switch (workerData.mode) {
  case 'fork': {
    // registerFork in the same tick as new Worker (or later): createStore(parentPort) at once.
    let store;
    try {
      store = kv.createStore(parentPort, { handleTimeout: 5000 });
    } catch (e) {
      say({ threw: errOf(e) });
      break;
    }
    const attachedAtOnce = store.attached;
    if (workerData.late) say({ waiting: true });
    store.ready.then(
      () => {
        say({ attachedAtOnce, value: store.get('hello'), name: store.name });
        store.set('fromWorker', workerData.tag);
      },
      (e) => say({ readyRejected: errOf(e) }),
    );
    break;
  }
  case 'fork-listeners': {
    // The user's listener (added first, or after createStore) and the hand-over: what the user
    // sees, in order, until the parent's 'end' message.
    const seen = [];
    const label = (m) => (m && m.__sharedKVStore ? 'HANDLE' : m);
    let ended;
    const end = new Promise((resolve) => { ended = resolve; });
    const listener = (m) => (m === 'end' ? ended() : seen.push(label(m)));
    // A once listener, first: the handle must not spend it (Bun's and Deno's own once would).
    if (workerData.once) parentPort.once('message', (m) => seen.push(`once:${label(m)}`));
    if (workerData.listenerFirst) parentPort.on('message', listener);
    let store;
    try {
      store = kv.createStore(parentPort, { handleTimeout: 5000 });
    } catch (e) {
      parentPort.off('message', listener);
      say({ threw: errOf(e) });
      break;
    }
    if (!workerData.listenerFirst) parentPort.on('message', listener);
    if (workerData.late) say({ waiting: true });
    Promise.all([store.ready, end]).then(() => {
      parentPort.off('message', listener);
      say({ seen, value: store.get('hello') });
    }, (e) => {
      parentPort.off('message', listener);
      say({ readyRejected: errOf(e) });
    });
    break;
  }
  case 'no-handle': {
    let store;
    try {
      store = kv.createStore(parentPort, { handleTimeout: 300 });
    } catch (e) {
      say({ threw: errOf(e) });
      break;
    }
    let before;
    try {
      store.get('x');
    } catch (e) {
      before = e.code;
    }
    store.ready.then(
      () => say({ before, ready: 'resolved' }),
      (e) => say({ before, ready: e.code }),
    );
    break;
  }
  case 'handles': {
    const out = {};
    for (const [k, src] of Object.entries(workerData.sources)) {
      try {
        const s = kv.createStore(src);
        out[k] = s.get('hello');
        s.set('fromWorker', k);
      } catch (e) {
        out[k] = `ERR ${e.code ?? ''} ${e.message}`;
      }
    }
    say(out);
    break;
  }
  case 'write': {
    const s = kv.createStore(workerData.handle);
    for (const [k, v] of workerData.entries) s.set(k, v);
    say('written');
    break;
  }
  case 'lock-hold': {
    const s = kv.createStore(workerData.handle);
    say({ locked: s.lock(workerData.key, 0, { lease: 60_000 }) });
    if (workerData.stay) setInterval(() => {}, 1000); // idle until terminated
    break;
  }
  case 'lock-try': {
    const s = kv.createStore(workerData.handle);
    const t0 = Date.now();
    const got = s.lock(workerData.key, workerData.timeout);
    say({ got, waited: Date.now() - t0 });
    if (got) s.release(workerData.key);
    break;
  }
  case 'getorset': {
    const s = kv.createStore(workerData.handle);
    const flag = new Int32Array(workerData.calls);
    s.getOrSet(workerData.key, async () => {
      Atomics.add(flag, 0, 1);
      await new Promise((r) => setTimeout(r, 100));
      return 'from-worker';
    }).then((v) => say({ value: v }), (e) => say({ error: errOf(e) }));
    break;
  }
  case 'busy': {
    const c = new Int32Array(workerData.counter);
    const s = workerData.handle ? kv.createStore(workerData.handle) : undefined;
    for (let i = 0; ; i++) {
      if (s) s.set('busy:' + (i % 8), i);
      Atomics.add(c, 0, 1);
    }
  }
  default:
    throw new Error(`unknown mode ${workerData.mode}`);
}
