'use strict';
// Change notifications: store.watch(pattern?, listener) and store.waitFor(key, opts).
// Every wait here waits for an event (or polls a condition) with a generous deadline; the only
// fixed sleep asserts that a process is still alive. "Nothing was delivered" is proven with a
// barrier: a later marker write that the watcher does see (delivery is in the total order of
// writes, so anything written before the marker came before it).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const { createManager, createStore, openStore } = require('..');
const helpers = require('./helpers');

const { PKG, exited } = helpers;

/** How long any wait for an event may take before the test fails (a slow 2-core machine). */
const TIMEOUT = 30_000;
const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-watch-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newPath = () => path.join(dir, `store-${files++}.kv`);
let names = 0;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
/** A full garbage collection (finalizers then run on a later turn), without --expose-gc. */
function gc() {
  require('node:v8').setFlagsFromString('--expose-gc');
  require('node:vm').runInNewContext('gc')();
}
const tick = () => new Promise((r) => setImmediate(r));

/** The three kinds of store; `open(options)` makes a fresh one. */
const KINDS = [
  { name: 'createManager', open: (o = {}) => createManager({ maxBytes: 16 << 20, ...o }).store },
  { name: 'createStore(name)', open: (o = {}) => createStore(`watch-test:${names++}`, { maxBytes: 16 << 20, ...o }) },
  { name: 'openStore(path)', open: (o = {}) => openStore(newPath(), { maxBytes: 16 << 20, ...o }) },
];

/** Watchers, workers and processes a test started: closed or ended after it, pass or fail. */
const opened = new Set();
const threads = new Set();
const children = new Set();
test.afterEach(async () => {
  for (const w of opened) w.close();
  opened.clear();
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  children.clear();
  await Promise.all([...threads].map((w) => w.terminate()));
  threads.clear();
});

/** helpers.worker, ended after the test if it is still running. */
function worker(body, options) {
  const w = helpers.worker(body, options);
  threads.add(w);
  return w;
}

const show = (k) => (k === undefined ? '<undefined>' : k);
const fmt = (events) => events.map(([k, e]) => `${show(k)}:${e}`).join(' ');

/** Rejects after `ms` with a message naming `what`, unless `promise` settles first. */
function within(promise, what, ms = TIMEOUT) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `fn` until it returns true (every 10 ms, up to `ms`). */
async function eventually(fn, what, ms = TIMEOUT) {
  const end = Date.now() + ms;
  while (!fn()) {
    if (Date.now() > end) assert.fail(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

/**
 * Watches `store` (with `pattern` if given) and records every [key, event]. `until(pred)` waits
 * for pred(events) to hold; `untilSet(key)` for a 'set' of `key`.
 */
function collect(store, pattern) {
  const events = [];
  const checks = new Set();
  const listener = (key, event) => {
    events.push([key, event]);
    for (const check of checks) check();
  };
  const watcher = pattern === undefined ? store.watch(listener) : store.watch(pattern, listener);
  opened.add(watcher);
  const c = {
    events,
    watcher,
    until(pred, what = 'the expected events', ms = TIMEOUT) {
      return new Promise((resolve, reject) => {
        let timer;
        const check = () => {
          if (!pred(events)) return;
          checks.delete(check);
          clearTimeout(timer);
          resolve(events);
        };
        timer = setTimeout(() => {
          checks.delete(check);
          reject(new Error(`timed out after ${ms} ms waiting for ${what}; ${events.length} events, the last: ${fmt(events.slice(-8))}`));
        }, ms);
        checks.add(check);
        check();
      });
    },
    /** Waits until the events include `event` ('set' by default) of `key` (from the first event on). */
    untilSet(key, event = 'set') {
      let i = 0;
      return c.until((ev) => {
        for (; i < ev.length; i++) if (ev[i][0] === key && ev[i][1] === event) return true;
        return false;
      }, `'${event}' of ${show(key)}`);
    },
    /** The events so far, without barrier markers. */
    real() {
      return events.filter(([k]) => !(typeof k === 'string' && k.startsWith('#barrier')));
    },
  };
  return c;
}

let barriers = 0;
/** Writes a marker and waits until every collector (watching all keys) has seen it. */
async function barrier(store, ...collectors) {
  const key = `#barrier${barriers++}`;
  const waits = collectors.map((c) => c.untilSet(key));
  store.set(key, 0);
  await Promise.all(waits);
}

/** A worker's messages, in order: `next()` resolves with the next one (fails if it exits). */
function inbox(w) {
  const queue = [];
  const waiters = [];
  w.on('message', (m) => (waiters.length ? waiters.shift()(m) : queue.push(m)));
  const gone = exited(w).then((code) => { throw new Error(`the worker exited (${code}) before its next message`); });
  gone.catch(() => {});
  return (what = 'a message from the worker') => within(Promise.race([
    queue.length ? Promise.resolve(queue.shift()) : new Promise((r) => waiters.push(r)),
    gone,
  ]), what);
}

/** helpers.peer, killed after the test, each wait bounded by the test's deadline. */
async function peer(file) {
  const child = await helpers.peer(file, { signal: 'SIGKILL', wait: within });
  children.add(child);
  return child;
}

/** A node process running `body` with `kv` in scope; `child.done` resolves with { code, signal }. */
function spawnScript(body) {
  const child = spawn(process.execPath, ['-e', `'use strict';\nconst kv = require(${JSON.stringify(PKG)});\n${body}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.out = '';
  child.err = '';
  child.stdout.setEncoding('utf8').on('data', (d) => { child.out += d; child.emit('out'); });
  child.stderr.setEncoding('utf8').on('data', (d) => { child.err += d; });
  child.done = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  child.waitOut = (text) => within(new Promise((resolve, reject) => {
    const check = () => {
      if (child.out.includes(text)) resolve();
      else if (child.exitCode !== null || child.signalCode !== null) reject(new Error(`the child exited before printing ${text}: ${child.err}`));
    };
    child.on('out', check);
    child.on('exit', check);
    check();
  }), `the child to print ${text}`);
  return child;
}

// ---------------------------------------------------------------------------------------------
// 1. Order and completeness.

for (const kind of KINDS) {
  test(`[${kind.name}] two workers and the main thread write at once: every write is seen exactly once, in per-writer order, and watchers in two threads see one identical sequence`, { timeout: 120_000 }, async () => {
    const N = 2000;
    const store = kind.open({ maxBytes: 64 << 20 }); // a change log of 1 MiB: no overflow
    const h = store.handle;
    const main = collect(store);
    const watcherThread = worker(`
      const store = kv.createStore(workerData.h);
      const seq = [];
      const w = store.watch((k, e) => {
        seq.push([k, e]);
        if (k === 'end') { w.close(); parentPort.postMessage(seq); }
      });
      parentPort.postMessage('watching');
    `, { workerData: { h } });
    const fromWatcher = inbox(watcherThread);
    assert.equal(await fromWatcher('the watcher thread to watch'), 'watching');

    const go = new Int32Array(new SharedArrayBuffer(4));
    const writers = ['w1', 'w2'].map((name) => worker(`
      const store = kv.createStore(workerData.h);
      const go = new Int32Array(workerData.go);
      parentPort.postMessage('ready');
      Atomics.wait(go, 0, 0);
      for (let i = 1; i <= ${N}; i++) store.set('${name}:' + i, i);
    `, { workerData: { h, go: go.buffer } }));
    const ready = writers.map((w) => inbox(w));
    await Promise.all(ready.map((next) => next('a writer to start')));
    Atomics.store(go, 0, 1);
    Atomics.notify(go, 0);
    for (let i = 1; i <= N; i++) {
      store.set(`m:${i}`, i);
      if (i % 100 === 0) await tick(); // lets this thread's own watcher keep up
    }
    assert.deepEqual(await within(Promise.all(writers.map(exited)), 'the writers to finish'), [0, 0]);
    store.set('end', true);
    const seq = await fromWatcher('the watcher thread\'s sequence');
    await main.untilSet('end');
    assert.equal(await within(exited(watcherThread), 'the watcher thread to exit once its watcher closed'), 0);

    const mine = main.events;
    assert.equal(mine.filter(([, e]) => e === 'overflow').length, 0, 'no overflow: the log holds every write');
    assert.equal(mine.length, 3 * N + 1, 'every write exactly once, nothing else');
    for (const prefix of ['w1', 'w2', 'm']) {
      const keys = mine.filter(([k]) => k.startsWith(`${prefix}:`)).map(([k, e]) => `${k}:${e}`);
      assert.deepEqual(keys, Array.from({ length: N }, (_, i) => `${prefix}:${i + 1}:set`), `${prefix}'s writes, each once, in its order`);
    }
    assert.deepEqual(mine.at(-1), ['end', 'set']);
    assert.equal(seq.length, mine.length);
    const firstDiff = seq.findIndex(([k, e], i) => mine[i][0] !== k || mine[i][1] !== e);
    assert.equal(firstDiff, -1, `one total order: the two threads' sequences differ at ${firstDiff}: ${fmt(mine.slice(firstDiff, firstDiff + 3))} vs ${fmt(seq.slice(firstDiff, firstDiff + 3))}`);
  });
}

// ---------------------------------------------------------------------------------------------
// 2. Patterns; basics (asynchronous delivery, writes before watch(), stats().watchers).

for (const kind of KINDS) {
  test(`[${kind.name}] patterns: a glob, a /re/ string, a RegExp (with g flag too), an escaped glob and a plain key get only their keys; 'clear' goes to every watcher`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const all = collect(store);
    const glob = collect(store, 'user:*');
    const q = collect(store, 'id?');
    const reString = collect(store, '/^re\\d+$/');
    const reObject = collect(store, /^rx:/);
    const reGlobal = collect(store, /^rx:/g);
    const escaped = collect(store, 'lit\\*');
    const plain = collect(store, 'plain');
    const pat = [glob, q, reString, reObject, reGlobal, escaped, plain];
    const writes = ['user:1', 'user:22', 'user', 'xuser:1', 'id1', 'id', 'id12', 're1', 're12', 'reX', 'xre1', 'rx:a', 'rx:b', 'rx:c', 'xrx:a',
      'lit*', 'litx', 'lit', 'plain', 'plainer', 'xplain', 'Plain'];
    for (const k of writes) store.set(k, 1);
    store.delete('user:1');
    store.delete('plain');
    store.increment('re12');
    store.clear();
    await Promise.all([all, ...pat].map((c) => c.untilSet(undefined, 'clear')));
    const set = (...keys) => keys.map((k) => [k, 'set']);
    const clear = [undefined, 'clear'];
    assert.deepEqual(glob.events, [...set('user:1', 'user:22'), ['user:1', 'delete'], clear]);
    assert.deepEqual(q.events, [...set('id1'), clear]);
    assert.deepEqual(reString.events, [...set('re1', 're12'), ['re12', 'set'], clear]);
    assert.deepEqual(reObject.events, [...set('rx:a', 'rx:b', 'rx:c'), clear]);
    assert.deepEqual(reGlobal.events, [...set('rx:a', 'rx:b', 'rx:c'), clear], 'a g-flag RegExp matches every key (no lastIndex carried over)');
    assert.deepEqual(escaped.events, [...set('lit*'), clear]);
    assert.deepEqual(plain.events, [...set('plain'), ['plain', 'delete'], clear]);
    assert.deepEqual(all.events, [...set(...writes), ['user:1', 'delete'], ['plain', 'delete'], ['re12', 'set'], clear]);
  });

  test(`[${kind.name}] delivery is asynchronous, only of writes after watch() returned; stats().watchers counts threads; bad arguments throw`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    assert.equal(store.stats().watchers, 0, 'a new store has no watchers');
    store.set('before', 1);
    const c = collect(store);
    assert.equal(typeof c.watcher.close, 'function');
    assert.equal(c.watcher.closed, false);
    assert.equal(c.watcher.unref(), c.watcher, 'unref() returns the watcher');
    assert.equal(c.watcher.ref(), c.watcher, 'ref() returns the watcher');
    store.set('after', 1);
    assert.deepEqual(c.events, [], 'the listener is not called synchronously inside the write');
    await c.untilSet('after');
    assert.deepEqual(c.real(), [['after', 'set']], 'a write before watch() is not delivered');

    assert.equal(store.stats().watchers, 1);
    const second = collect(store, 'x*');
    assert.equal(store.stats().watchers, 1, 'two watchers in one thread: one thread');
    second.watcher.close();
    assert.equal(store.stats().watchers, 1);
    c.watcher.close();
    assert.equal(store.stats().watchers, 0, 'no open watcher left in this thread');

    const w = worker(`
      const store = kv.createStore(workerData.h);
      const watcher = store.watch(() => {});
      parentPort.postMessage(store.stats().watchers);
      parentPort.once('message', () => watcher.close());
    `, { workerData: { h: store.handle } });
    const next = inbox(w);
    assert.equal(await next(), 1, 'the worker\'s watcher, counted in the worker');
    assert.equal(store.stats().watchers, 1, 'and seen from here');
    w.postMessage('close');
    assert.equal(await within(exited(w), 'the worker to exit once its watcher closed'), 0);
    await eventually(() => store.stats().watchers === 0, 'watchers to come back to 0');

    const noop = () => {};
    assert.throws(() => store.watch(), TypeError);
    assert.throws(() => store.watch('k'), TypeError, 'a pattern and no listener');
    assert.throws(() => store.watch(42, noop), TypeError);
    assert.throws(() => store.watch('k', 'not a function'), TypeError);
    assert.throws(() => store.watch('/[/', noop), SyntaxError, 'an invalid regex, as listKeys');
    assert.equal(store.stats().watchers, 0, 'a refused watch() registers nothing');
  });
}

for (const kind of KINDS) {
  test(`[${kind.name}] a watcher added while this thread's other watchers have events still to deliver gets only the writes after its watch()`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const first = collect(store);
    store.set('a', 1); // not delivered yet (delivery is asynchronous)
    const second = collect(store);
    const third = collect(store, 'a*');
    store.set('b', 2);
    store.set('a2', 3);
    await barrier(store, first, second);
    await third.untilSet('a2');
    assert.deepEqual(first.real(), [['a', 'set'], ['b', 'set'], ['a2', 'set']]);
    assert.deepEqual(second.real(), [['b', 'set'], ['a2', 'set']], 'a write made before watch() returned is not delivered to it');
    assert.deepEqual(third.events, [['a2', 'set']]);
    // The same with a waitFor({ next: true }) (a watcher of one key).
    store.set('n', 1);
    let settled = false;
    const next = store.waitFor('n', { next: true, timeout: TIMEOUT }).finally(() => { settled = true; });
    await barrier(store, first);
    assert.equal(settled, false, 'the set before waitFor() is not its next change');
    store.set('n', 2);
    assert.equal(await next, 2);
  });
}

// ---------------------------------------------------------------------------------------------
// 3. Each kind of event; refused writes produce none.

for (const kind of KINDS) {
  test(`[${kind.name}] events: set (set, increment, compareAndSet, update, setMany, getOrSet), delete, delete by pattern, clear`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    store.set('cas', 1);
    for (const k of ['p:1', 'p:2', 'p:3', 'q:1', 'other']) store.set(k, k);
    store.set('gos-present', 'here');
    const c = collect(store);
    store.set('a', 1);
    assert.equal(store.increment('n'), 1);
    assert.equal(store.increment('n', 5), 6);
    assert.equal(store.compareAndSet('cas', 1, 2), true);
    assert.equal(store.compareAndSet('new', undefined, 'x'), true);
    assert.equal(store.update('a', (v) => v + 1), 2);
    assert.equal(store.setMany([['m1', 1], ['m2', 2]]), 2);
    assert.equal(await store.getOrSet('gos', async () => 'loaded'), 'loaded');
    assert.equal(await store.getOrSet('gos-present', async () => 'not called'), 'here');
    assert.equal(store.delete('a'), true);
    assert.equal(store.delete('p:*'), true);
    const n = store.size;
    assert.ok(n > 3);
    assert.equal(store.clear(), n);
    store.set('z', 1);
    await c.untilSet('z');
    const ev = c.events;
    const expectedHead = [['a', 'set'], ['n', 'set'], ['n', 'set'], ['cas', 'set'], ['new', 'set'], ['a', 'set'], ['m1', 'set'], ['m2', 'set'], ['gos', 'set'], ['a', 'delete']];
    assert.deepEqual(ev.slice(0, expectedHead.length), expectedHead, fmt(ev));
    const byPattern = ev.slice(expectedHead.length, expectedHead.length + 3);
    assert.deepEqual(byPattern.map(([k, e]) => `${k}:${e}`).sort(), ['p:1:delete', 'p:2:delete', 'p:3:delete'], `one 'delete' per key of a pattern delete: ${fmt(ev)}`);
    assert.deepEqual(ev.slice(expectedHead.length + 3), [[undefined, 'clear'], ['z', 'set']], `clear is one event with no key: ${fmt(ev)}`);
  });

  test(`[${kind.name}] refused writes, failed compareAndSet, lock()/release() and no-op calls produce no event`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    store.set('str', 'text');
    store.set('cas', 1);
    const c = collect(store);
    const fail = (fn, err, what) => assert.throws(fn, err, what);
    fail(() => store.set(42, 1), TypeError, 'a key that is not a string');
    fail(() => store.set('\u0000lock\u0000x', 1), TypeError, 'a reserved key');
    fail(() => store.set('x'.repeat(17 * 1024), 1), { code: 'ERR_KV_KEY_TOO_LONG' });
    fail(() => store.set('f', () => {}), TypeError, 'a function value');
    fail(() => store.set('c', (() => { const o = {}; o.o = o; return o; })()), TypeError, 'a cycle');
    fail(() => store.set('t', 1, { ttl: -1 }), RangeError);
    fail(() => store.set('big', Buffer.alloc((16 << 20) + 1)), { code: 'ERR_KV_FULL' }, 'larger than the store');
    assert.equal(store.set('u', undefined), false);
    fail(() => store.increment('str'), TypeError, 'not a number');
    fail(() => store.increment('n', NaN), TypeError);
    assert.equal(store.compareAndSet('cas', 'wrong', 2), false);
    assert.equal(store.compareAndSet('str', undefined, 2), false, 'present, not absent');
    fail(() => store.compareAndSet('cas', 1, undefined), TypeError);
    assert.equal(store.update('cas', () => undefined), undefined);
    fail(() => store.update('cas', 'nope'), TypeError);
    fail(() => store.delete(42), TypeError);
    fail(() => store.delete('/[/'), SyntaxError);
    assert.equal(store.delete('no:*'), false, 'a pattern that matches nothing');
    assert.equal(store.lock('L', 0), true);
    assert.equal(store.lock('L', 0), false);
    assert.equal(store.release('L'), true);
    assert.equal(store.release('L'), false);
    assert.equal(store.get('str'), 'text');
    assert.equal(store.has('cas'), true);
    assert.equal(await store.getOrSet('str', () => 'no'), 'text');
    await barrier(store, c);
    assert.deepEqual(c.real(), [], `no event: ${fmt(c.real())}`);
    assert.equal(store.get('cas'), 1);
    assert.equal(store.check().entries, 3, 'str, cas and the barrier marker');
  });

  test(`[${kind.name}] a store that fills up: every stored value is one 'set', the refused one (ERR_KV_FULL) none`, { timeout: 60_000 }, async () => {
    const store = kind.open({ maxBytes: 2 << 20 });
    const c = collect(store);
    let stored = 0;
    for (;;) {
      try {
        store.set(`fill:${stored}`, Buffer.alloc(64 << 10, stored & 255));
      } catch (err) {
        assert.equal(err.code, 'ERR_KV_FULL');
        break;
      }
      stored++;
      assert.ok(stored < 1000, 'the store never filled');
    }
    assert.ok(stored > 0);
    store.delete(`fill:${stored - 1}`); // room for the barrier
    await barrier(store, c);
    assert.deepEqual(c.real(), [
      ...Array.from({ length: stored }, (_, i) => [`fill:${i}`, 'set']),
      [`fill:${stored - 1}`, 'delete'],
    ]);
  });

  test(`[${kind.name}] evict: a store of 10 entries that evicts reports each evicted key once`, { timeout: 60_000 }, async () => {
    const store = kind.open({ maxEntries: 10, onFull: 'evict' });
    const c = collect(store);
    for (let i = 0; i < 20; i++) store.set(`e${i}`, i);
    const present = store.listKeys().sort();
    assert.equal(present.length, 10);
    assert.equal(store.stats().evictions, 10);
    store.clear(); // the barrier (a marker write could evict)
    await c.untilSet(undefined, 'clear');
    const ev = c.events;
    assert.deepEqual(ev.filter(([, e]) => e === 'set').map(([k]) => k), Array.from({ length: 20 }, (_, i) => `e${i}`));
    const evicted = ev.filter(([, e]) => e === 'evict').map(([k]) => k);
    assert.equal(evicted.length, 10, fmt(ev));
    assert.equal(new Set(evicted).size, 10, 'each evicted key once');
    assert.deepEqual([...evicted, ...present].sort(), Array.from({ length: 20 }, (_, i) => `e${i}`).sort(), 'evicted and present: all 20, none twice');
    for (const k of evicted) {
      assert.ok(ev.findIndex(([key, e]) => key === k && e === 'set') < ev.findIndex(([key, e]) => key === k && e === 'evict'), `${k} was set before it was evicted`);
    }
    assert.deepEqual(ev.filter(([, e]) => !['set', 'evict'].includes(e)), [[undefined, 'clear']]);
    assert.deepEqual(ev.at(-1), [undefined, 'clear']);
  });

  test(`[${kind.name}] expire: an expired key reclaimed by a delete, and one reclaimed lazily by later writes, each report 'expire' once`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const c = collect(store);
    store.set('t1', 1, { ttl: 0.05 });
    store.set('t2', 2, { ttl: 0.05 });
    await c.untilSet('t2');
    // Reads do not reclaim, so no write happens between the expiry and the delete below.
    await eventually(() => store.get('t1') === undefined && store.get('t2') === undefined, 'the keys to expire');
    assert.deepEqual(c.events, [['t1', 'set'], ['t2', 'set']], 'expiry itself is no event: reclaiming is');
    assert.equal(store.delete('t1'), false, 'expired: it was not there');
    await barrier(store, c);
    assert.deepEqual(c.real().filter(([k]) => k === 't1'), [['t1', 'set'], ['t1', 'expire']], 'the delete of an expired key reports expire (not delete)');
    // Writes sweep a few slots each: write (in rounds, so the log never overflows) until t2 goes.
    const t2 = () => c.events.filter(([k]) => k === 't2');
    let rounds = 0;
    for (; rounds < 500 && t2().length < 2; rounds++) {
      for (let i = 0; i < 100; i++) store.set(`f${i % 37}`, rounds);
      await barrier(store, c);
    }
    assert.deepEqual(t2(), [['t2', 'set'], ['t2', 'expire']], `t2 reclaimed by later writes (${rounds} rounds of 100)`);
    assert.equal(c.events.filter(([, e]) => e === 'overflow').length, 0);
    assert.ok(store.stats().expired >= 2);
  });
}

// ---------------------------------------------------------------------------------------------
// 4. close().

for (const kind of KINDS) {
  test(`[${kind.name}] close(): no listener call after it returns, even for writes already made; idempotent; closed by a listener`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const c = collect(store);
    let calls = 0;
    const w = store.watch(() => calls++);
    for (let i = 0; i < 50; i++) store.set(`in-flight:${i}`, i);
    w.close();
    assert.equal(w.closed, true);
    w.close();
    assert.equal(w.closed, true, 'close() is idempotent');
    store.set('after-close', 1);
    await barrier(store, c);
    assert.equal(calls, 0, 'the closed listener was never called, not even for writes made before close()');

    // Closed from inside its own listener: no further call for events already queued.
    const seenBySelf = [];
    const self = store.watch((k) => { seenBySelf.push(k); self.close(); });
    // Closed by another watcher's listener (same thread): at most the call already made.
    const seenByOther = [];
    const other = store.watch((k) => seenByOther.push(k));
    const closer = store.watch(() => other.close());
    for (let i = 0; i < 20; i++) store.set(`x${i}`, i);
    await barrier(store, c);
    assert.deepEqual(seenBySelf, ['x0']);
    assert.ok(seenByOther.length <= 1 && (seenByOther.length === 0 || seenByOther[0] === 'x0'), `closed by another listener: ${seenByOther}`);
    closer.close();
    assert.deepEqual(c.real().length, 71);
    c.watcher.close();
    assert.equal(store.stats().watchers, 0);
  });

  test(`[${kind.name}] store.close() closes this thread's watchers of the store; a store object opened again in the thread watches anew`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const handle = store.handle;
    let callsAfterStoreClose = 0;
    const w1 = store.watch(() => callsAfterStoreClose++);
    const w2 = store.watch('p*', () => callsAfterStoreClose++);
    store.set('p1', 1);
    store.close();
    assert.equal(w1.closed, true);
    assert.equal(w2.closed, true);
    w1.close(); // still fine
    assert.throws(() => store.watch(() => {}), { code: 'ERR_KV_CLOSED' });
    const again = createStore(handle);
    assert.notEqual(again, store);
    assert.equal(again.stats().watchers, 0, 'the closed store\'s watchers are gone');
    const c2 = collect(again);
    again.set('p2', 2);
    await c2.untilSet('p2');
    assert.equal(callsAfterStoreClose, 0);
    // Whatever the closed object left to the garbage collector must not touch the new one.
    gc();
    await sleep(20);
    again.set('p3', 3);
    await c2.untilSet('p3');
    assert.equal(again.stats().watchers, 1);
    assert.equal(callsAfterStoreClose, 0);
  });
}

// ---------------------------------------------------------------------------------------------
// 5. A watcher and the process's exit.

for (const kind of KINDS) {
  test(`[${kind.name}] exit: unref'd or closed watchers let a process exit; a ref'd one (or unref().ref()) keeps it alive`, { timeout: 120_000 }, async () => {
    const openCode = () => {
      if (kind.name === 'createManager') return 'const s = kv.createManager({ maxBytes: 16 << 20 }).store;';
      if (kind.name === 'createStore(name)') return 'const s = kv.createStore("exit", { maxBytes: 16 << 20 });';
      return `const s = kv.openStore(${JSON.stringify(newPath())}, { maxBytes: 16 << 20 });`;
    };
    const exits = {
      'an unref\'d watcher': 's.watch(() => {}).unref(); s.set("k", 1);',
      'an unref\'d watcher with a pattern': 's.watch("k*", () => {}).unref(); s.set("k", 1);',
      'a closed watcher': 'const w = s.watch(() => {}); s.set("k", 1); w.close();',
      'a watcher closed by its listener': 'const w = s.watch(() => w.close()); s.set("k", 1);',
      'a watcher of a closed store': 's.watch(() => {}); s.set("k", 1); s.close();',
      'a settled waitFor with a long timeout': 's.waitFor("k", { timeout: 600000 }).then((v) => { if (v !== 1) process.exit(9); }); s.set("k", 1);',
      'a waitFor resolved at once': 's.set("k", 1); s.waitFor("k", { timeout: 600000 }).then((v) => { if (v !== 1) process.exit(9); });',
      'an unref\'d watcher that still gets events while the process lives': `
        const got = []; s.watch((k) => got.push(k)).unref();
        const t = setInterval(() => { s.set("tick", got.length); if (got.length >= 3) clearInterval(t); }, 5);`,
    };
    const alive = {
      'a ref\'d watcher': 's.watch(() => {});',
      'a ref\'d watcher with a pattern': 's.watch("nothing:*", () => {});',
      'unref().ref()': 's.watch(() => {}).unref().ref();',
    };
    const runs = [];
    for (const [what, body] of Object.entries(exits)) {
      runs.push((async () => {
        const child = spawnScript(`${openCode()}\n${body}`);
        let result;
        try {
          result = await within(child.done, `the process with ${what} to exit on its own`);
        } catch (err) {
          child.kill('SIGKILL');
          throw err;
        }
        assert.deepEqual(result, { code: 0, signal: null }, `${what}: ${child.err}`);
      })());
    }
    for (const [what, body] of Object.entries(alive)) {
      runs.push((async () => {
        const child = spawnScript(`${openCode()}\n${body}\ns.set("k", 1);\nconsole.log("watching");`);
        try {
          await child.waitOut('watching\n');
          await sleep(1500); // the one fixed wait: the process must still be there after it
          assert.equal(child.exitCode, null, `the process with ${what} exited: ${child.err}`);
          assert.equal(child.signalCode, null);
        } finally {
          child.kill('SIGKILL');
        }
        assert.deepEqual(await within(child.done, 'the kill'), { code: null, signal: 'SIGKILL' });
      })());
    }
    const results = await Promise.allSettled(runs);
    const failed = results.filter((r) => r.status === 'rejected').map((r) => r.reason.message);
    assert.deepEqual(failed, []);
  });
}

test('exit: a worker thread with an unref\'d watcher exits on its own; with a ref\'d one it stays until terminated', { timeout: 60_000 }, async () => {
  const store = createStore(`watch-test:${names++}`, { maxBytes: 16 << 20 });
  const h = store.handle;
  const quits = worker(`
    const store = kv.createStore(workerData.h);
    store.watch(() => {}).unref();
    store.set('from-worker', 1);
  `, { workerData: { h } });
  assert.equal(await within(exited(quits), 'the worker to exit'), 0);
  const stays = worker(`
    const store = kv.createStore(workerData.h);
    store.watch(() => {});
    parentPort.postMessage('watching');
  `, { workerData: { h } });
  await inbox(stays)();
  let gone = false;
  exited(stays).then(() => { gone = true; }, () => { gone = true; });
  await sleep(1000);
  assert.equal(gone, false, 'a ref\'d watcher keeps its worker alive');
  await stays.terminate();
  await eventually(() => store.stats().watchers === 0, 'the terminated worker to leave no watcher');
});

for (const kind of KINDS) {
  // Failed one run in three on a loaded machine (for every kind) until a hub with only unref'd
  // watchers polled on an unref'd timer instead of being woken (lib/watch.js, UNREF_POLL_MS).
  test(`[${kind.name}] exit: a worker whose only thing left is an unref'd watcher exits while another thread keeps writing`, { timeout: 60_000 }, async () => {
    const store = kind.open({ maxBytes: 64 << 20 });
    const h = store.handle;
    const stop = new Int32Array(new SharedArrayBuffer(4));
    const writer = worker(`
      const s = kv.createStore(workerData.h);
      const stop = new Int32Array(workerData.stop);
      parentPort.postMessage('writing');
      for (let i = 0; Atomics.load(stop, 0) === 0; i++) s.set('busy', i);
    `, { workerData: { h, stop: stop.buffer } });
    await inbox(writer)('the writer to start');
    try {
      // Its watcher always has events to read (a slow listener, a fast writer); once it was
      // told of one, the interval that kept the thread alive is cleared: nothing ref'd is left.
      const quits = worker(`
        const s = kv.createStore(workerData.h);
        let told = 0;
        const keep = setInterval(() => {}, 1000);
        s.watch(() => {
          if (++told === 1) clearInterval(keep);
          const t = Date.now(); while (Date.now() - t < 1);
        }).unref();
      `, { workerData: { h } });
      assert.equal(await within(exited(quits), 'the watching worker to exit'), 0);
    } finally {
      Atomics.store(stop, 0, 1);
    }
    assert.equal(await within(exited(writer), 'the writer'), 0);
  });
}

// ---------------------------------------------------------------------------------------------
// 6. Overflow.

test('overflow: a watcher whose thread is blocked while 100k writes pass gets one (undefined, \'overflow\') first, then the later events; so does a pattern watcher', { timeout: 120_000 }, async () => {
  const manager = createManager({ maxBytes: 64 << 20 }); // change log: at most 1 MiB
  const { store } = manager;
  const flag = new Int32Array(new SharedArrayBuffer(4));
  const w = worker(`
    const store = kv.createStore(workerData.h);
    const flag = new Int32Array(workerData.flag);
    const all = [], pat = [];
    let done = 0;
    const finish = () => { if (++done === 2) { a.close(); b.close(); parentPort.postMessage({ all, pat }); } };
    const a = store.watch((k, e) => {
      all.push([k, e]);
      if (e === 'overflow') parentPort.postMessage('overflow delivered');
      if (k === 'p:final') finish();
    });
    const b = store.watch('p:*', (k, e) => { pat.push([k, e]); if (k === 'p:final') finish(); });
    parentPort.postMessage('watching');
    Atomics.wait(flag, 0, 0); // blocked: no delivery while the writes pass
    parentPort.postMessage('unblocked');
  `, { workerData: { h: manager.handle, flag: flag.buffer } });
  const next = inbox(w);
  assert.equal(await next(), 'watching');
  const N = 100_000;
  const key = (i) => `k:${i}:`.padEnd(40, 'x');
  for (let i = 0; i < N; i++) store.set(key(i), i);
  Atomics.store(flag, 0, 1);
  Atomics.notify(flag, 0);
  assert.equal(await next(), 'unblocked');
  // Written once the watcher has read past the gap: a write made between its unblocking and its
  // reading would fall in the gap it skips (it goes on from the newest record).
  assert.equal(await next('the overflow to be delivered'), 'overflow delivered');
  store.set('final', 1);
  store.set('p:final', 1);
  const { all, pat } = await next('the blocked watcher\'s events');
  assert.equal(await within(exited(w), 'the worker to exit'), 0);

  assert.deepEqual(all[0], [undefined, 'overflow'], `the first event is the overflow: ${fmt(all.slice(0, 3))}`);
  assert.equal(all.filter(([, e]) => e === 'overflow').length, 1, 'exactly one overflow');
  assert.deepEqual(all.slice(-2), [['final', 'set'], ['p:final', 'set']], 'events written after it unblocked arrive');
  const tail = all.slice(1, -2);
  assert.ok(tail.length < N - 1000, 'events were missed');
  // What it got between the overflow and the final writes: the latest writes, in order, none missing.
  tail.forEach(([k, e], j) => {
    assert.equal(e, 'set');
    assert.equal(k, key(N - tail.length + j), `a contiguous run of the last writes, at ${j}`);
  });
  assert.deepEqual(pat, [[undefined, 'overflow'], ['p:final', 'set']], 'a pattern watcher gets the overflow too');
  await eventually(() => store.stats().watchers === 0, 'the worker to leave no watcher');
});

// ---------------------------------------------------------------------------------------------
// 7. Across processes.

test('across processes (openStore): a writer process, a watcher process and this process: one identical sequence, complete and in order; waitFor across processes', { timeout: 120_000 }, async () => {
  const N = 2000;
  const file = newPath();
  const store = openStore(file, { maxBytes: 64 << 20 });
  const main = collect(store);
  const watcherProcess = await peer(file);
  try {
    assert.equal(await watcherProcess.run(`
      globalThis.seq = [];
      globalThis.done = new Promise((resolve) => {
        const w = store.watch((k, e) => { seq.push([k ?? null, e]); if (k === 'end') { w.close(); resolve(seq); } });
      });
      return store.stats().watchers;
    `), 2, 'this process\'s thread and the peer\'s');
    const writer = spawnScript(`
      const s = kv.openStore(${JSON.stringify(file)});
      for (let i = 1; i <= ${N}; i++) s.set('c:' + i, i);
    `);
    for (let i = 1; i <= N; i++) {
      store.set(`m:${i}`, i);
      if (i % 50 === 0) await tick();
    }
    assert.deepEqual(await within(writer.done, 'the writer process'), { code: 0, signal: null }, writer.err);
    const fromPeer = store.waitFor('from-peer', { timeout: TIMEOUT });
    await watcherProcess.run(`store.set('from-peer', { pid: process.pid }); return true;`);
    assert.deepEqual(await fromPeer, { pid: watcherProcess.pid }, 'waitFor resolves with another process\'s write');
    store.set('end', true);
    await main.untilSet('end');
    const seq = (await watcherProcess.run('return await globalThis.done;')).map(([k, e]) => [k ?? undefined, e]);
    const mine = main.events;
    assert.equal(mine.filter(([, e]) => e === 'overflow').length, 0, 'no overflow');
    for (const prefix of ['c', 'm']) {
      assert.deepEqual(mine.filter(([k]) => k.startsWith(`${prefix}:`)).map(([k]) => k), Array.from({ length: N }, (_, i) => `${prefix}:${i + 1}`), `${prefix}: complete, in order`);
    }
    assert.equal(mine.length, 2 * N + 2);
    assert.deepEqual(seq, mine, 'the watcher process saw the same sequence');
  } finally {
    await watcherProcess.stop();
  }
});

test('across processes: writer processes killed with SIGKILL mid-stream; the watcher keeps getting every later event (an overflow after recovery is allowed)', { timeout: 120_000 }, async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 64 << 20 });
  const c = collect(store);
  const ks = collect(store, 'k*');
  let overflows = 0;
  for (let round = 0; round < 4; round++) {
    const from = c.events.length;
    const victim = spawnScript(`
      const s = kv.openStore(${JSON.stringify(file)});
      for (let i = 1; ; i++) s.set('k${round}:' + i, i);
    `);
    let seen = 0;
    let scanned = from;
    await c.until((ev) => {
      for (; scanned < ev.length; scanned++) if (ev[scanned][0]?.startsWith(`k${round}:`)) seen++;
      return seen >= 200;
    }, `the victim's writes (round ${round})`);
    await sleep(Math.random() * 20); // let it run on a random while
    victim.kill('SIGKILL');
    assert.deepEqual(await within(victim.done, 'the victim to die'), { code: null, signal: 'SIGKILL' }, victim.err);
    // Catch up first: this thread's watcher may lag the victim's flood by more than the log
    // holds, and then it skips to the newest record (an overflow), which could pass over writes
    // made meanwhile. A marker it sees proves it has caught up.
    for (let m = 0; ; m++) {
      const key = `#barrier:caught-up:${round}:${m}`;
      const scannedFrom = c.events.length;
      store.set(key, m);
      let at = scannedFrom;
      const caught = await c.until((events) => {
        for (; at < events.length; at++) {
          if (events[at][0] === key) return 'marker';
          if (events[at][1] === 'overflow') return 'overflow';
        }
        return false;
      }, `this thread's watcher to catch up (round ${round})`).then((events) => events.slice(scannedFrom).some(([k]) => k === key));
      if (caught) break;
      assert.ok(m < 100, 'the watcher never caught up');
    }
    const wait = c.untilSet(`after${round}:99`);
    for (let i = 0; i < 100; i++) store.set(`after${round}:${i}`, i);
    await wait;
    const ev = c.events.slice(from);
    overflows += ev.filter(([, e]) => e === 'overflow').length;
    // The victim's writes: strictly in its order; contiguous except across an overflow.
    let prev = 0;
    let gap = false;
    for (const [k, e] of ev) {
      if (e === 'overflow') {
        assert.equal(k, undefined);
        gap = true;
        continue;
      }
      if (!k.startsWith(`k${round}:`)) continue;
      const i = Number(k.split(':')[1]);
      if (gap) assert.ok(i > prev, `round ${round}: the victim's writes in order across an overflow`);
      else assert.equal(i, prev + 1, `round ${round}: the victim's writes in order, none missing (no overflow in between)`);
      prev = i;
      gap = false;
    }
    assert.deepEqual(ev.filter(([k]) => k?.startsWith(`after${round}:`)).map(([k]) => k), Array.from({ length: 100 }, (_, i) => `after${round}:${i}`), `round ${round}: every write after the kill was delivered`);
    store.check();
  }
  await barrier(store, c);
  assert.ok(ks.events.length > 0);
  assert.ok(ks.events.every(([k, e]) => e === 'overflow' ? k === undefined : k.startsWith('k')), 'the pattern watcher got only its keys (and overflows)');
  console.log(`# ${store.stats().recoveries} recoveries, ${overflows} overflows delivered`);
});

// ---------------------------------------------------------------------------------------------
// 8, 9. Dead watcher threads and processes leave nothing behind.

test('a watcher thread terminated mid-delivery (or exiting) leaves nothing behind: stats().watchers comes back, this thread\'s watcher gets every later event, writes work', { timeout: 120_000 }, async () => {
  const manager = createManager({ maxBytes: 64 << 20 });
  const { store } = manager;
  const h = manager.handle;
  const c = collect(store);
  assert.equal(store.stats().watchers, 1);
  const written = [];
  const write = (k) => { store.set(k, written.length); written.push(k); };
  const variants = {
    'terminated inside a slow listener': [`
      let n = 0;
      store.watch(() => {
        if (n++ === 0) parentPort.postMessage('delivering');
        const until = Date.now() + 20; while (Date.now() < until); // heavy work per event
      });
    `, 'terminate'],
    'terminated with a pending waitFor and a watcher': [`
      store.waitFor('never', { timeout: 600000 }).catch(() => {});
      store.watch('t*', () => { parentPort.postMessage('delivering'); });
      setInterval(() => {}, 1000);
    `, 'terminate'],
    'process.exit() inside its listener': [`
      store.watch(() => { parentPort.postMessage('delivering'); process.exit(0); });
    `, 'exit'],
    'terminated while blocked (Atomics.wait) with events pending': [`
      store.watch(() => {});
      store.waitFor('t:x:0', { next: true }).then(() => {}, () => {});
      setTimeout(() => { parentPort.postMessage('delivering'); Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 60000); }, 0);
    `, 'terminate'],
  };
  let v = 0;
  for (const [what, [body, how]] of Object.entries(variants)) {
    const w = worker(`
      const store = kv.createStore(workerData.h);
      ${body}
      parentPort.postMessage('watching');
    `, { workerData: { h } });
    const next = inbox(w);
    assert.equal(await next(`${what}: watching`), 'watching');
    assert.equal(store.stats().watchers, 2, `${what}: the worker is counted`);
    for (let i = 0; i < 200; i++) write(`t:${v}:${i}`);
    if (how === 'terminate') {
      assert.equal(await next(`${what}: delivering`), 'delivering');
      await w.terminate();
    } else {
      assert.equal(await within(exited(w), `${what}: exit`), 0);
    }
    await eventually(() => store.stats().watchers === 1, `${what}: stats().watchers to come back to 1`);
    for (let i = 0; i < 100; i++) write(`after:${v}:${i}`);
    await c.untilSet(`after:${v}:99`);
    v++;
  }
  assert.deepEqual(c.events.map(([k, e]) => `${k}:${e}`), written.map((k) => `${k}:set`), 'every event, once, in order, no overflow');
  store.set('still', 'works');
  assert.equal(store.get('still'), 'works');
  store.check();
});

test('a dead watcher process (SIGKILL) is reclaimed by the next watch() registration, or by writers lapping the log', { timeout: 120_000 }, async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 16 << 20 });
  assert.equal(store.stats().watchers, 0);

  // Reclaimed by a registration in this process.
  let p = await peer(file);
  assert.equal(await p.run(`globalThis.w = store.watch(() => {}); globalThis.wf = store.waitFor('never', { timeout: 600000 }).catch(() => {}); return store.stats().watchers;`), 1);
  assert.equal(store.stats().watchers, 1);
  store.set('k', 1); // an event on its way to the peer
  await p.stop();
  const c = collect(store);
  assert.equal(store.stats().watchers, 1, 'this thread only: the dead process was reclaimed by the registration');
  c.watcher.close();
  assert.equal(store.stats().watchers, 0);

  // Reclaimed by a registration in another process.
  p = await peer(file);
  assert.equal(await p.run(`globalThis.w = store.watch(() => {}); return store.stats().watchers;`), 1);
  await p.stop();
  const other = await peer(file);
  try {
    assert.equal(await other.run(`globalThis.w = store.watch(() => {}); return store.stats().watchers;`), 1, 'the other process only');
    assert.equal(store.stats().watchers, 1);
    assert.equal(await other.run(`globalThis.w.close(); return store.stats().watchers;`), 0);
  } finally {
    await other.stop();
  }
  assert.equal(store.stats().watchers, 0);

  // Reclaimed by writers lapping the change log (no registration at all).
  p = await peer(file);
  assert.equal(await p.run(`globalThis.w = store.watch(() => {}); return store.stats().watchers;`), 1);
  await p.stop();
  let writes = 0;
  const key = (i) => `lap:${i % 1000}:`.padEnd(40, 'x');
  while (store.stats().watchers !== 0) {
    assert.ok(writes < 2_000_000, `stats().watchers still ${store.stats().watchers} after ${writes} writes`);
    for (let i = 0; i < 1000; i++) store.set(key(writes++), 1);
  }
  store.check();
});

// ---------------------------------------------------------------------------------------------
// 10. waitFor.

for (const kind of KINDS) {
  test(`[${kind.name}] waitFor: present value, a later set by another thread, next: true, timeout, abort, bad arguments`, { timeout: 60_000 }, async () => {
    const store = kind.open();
    const c = collect(store);
    assert.equal(store.stats().watchers, 1);
    c.watcher.close();
    assert.equal(store.stats().watchers, 0);

    store.set('here', { v: 1 });
    assert.deepEqual(await store.waitFor('here', { timeout: TIMEOUT }), { v: 1 }, 'a present value at once');
    assert.deepEqual(await store.waitFor('here', {}), { v: 1 });
    assert.deepEqual(await store.waitFor('here'), { v: 1 }, 'options are optional');

    // Set later by another thread.
    const w = worker(`
      const store = kv.createStore(workerData.h);
      parentPort.once('message', ({ key, value }) => { store.set(key, value); parentPort.close(); });
    `, { workerData: { h: store.handle } });
    const later = store.waitFor('later', { timeout: TIMEOUT });
    assert.equal(store.stats().watchers, 1, 'a pending waitFor counts its thread');
    w.postMessage({ key: 'later', value: { from: 'worker' } });
    assert.deepEqual(await later, { from: 'worker' });
    assert.equal(await within(exited(w), 'the worker'), 0);
    await eventually(() => store.stats().watchers === 0, 'the settled waitFor to unregister');

    // increment is a set.
    const counted = store.waitFor('cnt', { timeout: TIMEOUT });
    store.increment('cnt', 5);
    assert.equal(await counted, 5);

    // Other keys do not resolve it; a key that is absent does not resolve with undefined.
    const b = collect(store);
    let settled = false;
    const pending = store.waitFor('absent', { timeout: TIMEOUT }).finally(() => { settled = true; });
    store.set('absent2', 1);
    store.delete('absent2');
    await barrier(store, b);
    assert.equal(settled, false, 'still waiting');
    store.set('absent', 'now');
    assert.equal(await pending, 'now');

    // next: true waits for the next change even if a value is present.
    store.set('n', 1);
    settled = false;
    const nextSet = store.waitFor('n', { next: true, timeout: TIMEOUT }).finally(() => { settled = true; });
    await barrier(store, b);
    assert.equal(settled, false, 'next: true does not resolve with the present value');
    store.set('n', 2);
    assert.equal(await nextSet, 2);
    const nextDelete = store.waitFor('n', { next: true, timeout: TIMEOUT });
    store.delete('n');
    assert.equal(await nextDelete, undefined, 'next: true and a delete: undefined');
    store.set('n', 3);
    const nextClear = store.waitFor('n', { next: true, timeout: TIMEOUT });
    store.clear();
    assert.equal(await nextClear, undefined, 'next: true and a clear: undefined');

    // Timeout.
    await assert.rejects(store.waitFor('never', { timeout: 30 }), (err) => err instanceof Error && err.code === 'ERR_KV_TIMEOUT');
    await assert.rejects(store.waitFor('never', { timeout: 0 }), { code: 'ERR_KV_TIMEOUT' });
    await assert.rejects(store.waitFor('n', { next: true, timeout: 30 }), { code: 'ERR_KV_TIMEOUT' });

    // Abort.
    const ac = new AbortController();
    const reason = new Error('stop waiting');
    const aborted = store.waitFor('never', { signal: ac.signal, timeout: TIMEOUT });
    ac.abort(reason);
    await assert.rejects(aborted, (err) => err === reason);
    const ac2 = new AbortController();
    const aborted2 = store.waitFor('never', { signal: ac2.signal });
    ac2.abort();
    await assert.rejects(aborted2, (err) => err === ac2.signal.reason && err.name === 'AbortError');
    const early = new Error('already');
    await assert.rejects(store.waitFor('never', { signal: AbortSignal.abort(early) }), (err) => err === early);
    store.set('present', 1);
    await assert.rejects(store.waitFor('present', { signal: AbortSignal.abort(early), next: true }), (err) => err === early);

    // Bad arguments throw synchronously.
    assert.throws(() => store.waitFor(42), TypeError);
    assert.throws(() => store.waitFor(undefined), TypeError);
    assert.throws(() => store.waitFor('k', { timeout: -1 }), RangeError);
    const typeOrRange = (err) => err instanceof TypeError || err instanceof RangeError;
    assert.throws(() => store.waitFor('k', { timeout: 'soon' }), typeOrRange);
    assert.throws(() => store.waitFor('k', { timeout: NaN }), typeOrRange);
    assert.throws(() => store.waitFor('k', { signal: 'nope' }), typeOrRange);
    b.watcher.close();
    await eventually(() => store.stats().watchers === 0, 'every waitFor to be settled and unregistered');
  });
}
