'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { once } = require('node:events');
const { createManager } = require('..');
const { worker, exited, rng } = require('./helpers');

test('registerFork in the same tick as new Worker: the store works at once in the worker', async () => {
  const manager = createManager();
  manager.store.set('exampleKey', { value: 'Hello from Main!' });
  const w = worker(`
    const store = kv.createStore(parentPort);
    if (!store.attached) throw new Error('not attached synchronously');
    parentPort.postMessage(store.get('exampleKey'));
    store.set('workerKey', { from: 'worker' });
    store.set('gone', 1);
    parentPort.postMessage(store.delete('gone'));
  `);
  // Listening from the start: a worker that posts and exits at once has its last messages
  // emitted in one go as it exits, before an await of the first could listen for the next.
  const got = [];
  w.on('message', (m) => got.push(m));
  assert.equal(manager.registerFork(w), true);
  assert.equal(await exited(w), 0, 'the worker exits on its own: the store holds nothing open');
  const [first, deleted] = got;
  assert.deepEqual(first, { value: 'Hello from Main!' });
  assert.equal(deleted, true);
  assert.deepEqual(manager.store.get('workerKey'), { from: 'worker' });
  assert.equal(manager.store.get('gone'), undefined);
  assert.equal(manager.unregisterFork(w), true);
  assert.equal(manager.unregisterFork(w), false);
});

test('registerFork later: the store attaches when the handle arrives, user messages keep their order', async () => {
  const manager = createManager();
  manager.store.set('k', 'v');
  const w = worker(`
    const store = kv.createStore(parentPort);
    const seen = [];
    parentPort.on('message', (m) => {
      seen.push(m);
      if (m === 'last') { parentPort.postMessage({ seen, attached: store.attached }); parentPort.close(); }
    });
    store.ready.then((s) => parentPort.postMessage({ got: s.get('k') }));
  `);
  w.postMessage('first');
  w.postMessage('second');
  await new Promise((r) => setTimeout(r, 50)); // the worker is running and listening by now
  manager.registerFork(w);
  w.postMessage('last');
  const messages = [];
  w.on('message', (m) => messages.push(m));
  await exited(w);
  assert.deepEqual(messages.find((m) => m.got), { got: 'v' });
  const { seen, attached } = messages.find((m) => m.seen);
  assert.equal(attached, true);
  assert.deepEqual(seen.filter((m) => typeof m === 'string'), ['first', 'second', 'last']);
});

test('no user listener ever sees a handle: listeners before or after createStore, registerFork late, and again after unregisterFork', { timeout: 30_000 }, async () => {
  const manager = createManager();
  manager.store.set('k', 'v');
  // Every kind of listener, one added before createStore (and before the handle), the others
  // after; the worker says when they are all in place, so registerFork surely comes after them.
  const w = worker(`
    const seen = [];
    const record = (how) => (m) => {
      seen.push([how, m]);
      if (m === 'end' && how === 'on') parentPort.postMessage({ seen, attached: store.attached, got: store.get('k') });
      if (m === 'close' && how === 'on') parentPort.close();
    };
    parentPort.on('message', record('on'));
    const store = kv.createStore(parentPort);
    parentPort.addEventListener('message', (e) => record('event')(e.data));
    parentPort.onmessage = (e) => record('onmessage')(e.data);
    parentPort.once('message', record('once'));
    parentPort.postMessage('listening');
    store.ready.then(() => parentPort.postMessage('attached'));
  `);
  const messages = [];
  const next = () => once(w, 'message').then(([m]) => { messages.push(m); return m; });
  assert.equal(await next(), 'listening');
  manager.registerFork(w);
  assert.equal(await next(), 'attached');
  manager.unregisterFork(w);
  manager.registerFork(w); // a second handle: the store is attached already, it must go nowhere
  w.postMessage('user');
  w.postMessage('end');
  const report = await next();
  w.postMessage('close');
  assert.equal(await exited(w), 0);
  assert.equal(report.attached, true);
  assert.equal(report.got, 'v');
  // The report goes out from the first listener's 'end', before the others see it.
  assert.deepEqual(report.seen.map(([how, m]) => `${how}:${m}`).sort(),
    ['event:user', 'on:end', 'on:user', 'once:user', 'onmessage:user'], 'once() is spent on the first user message, not on a handle');
});

test('a handle that arrives before createStore(parentPort) is called is kept for it, not shown to the user', async () => {
  const manager = createManager();
  manager.store.set('k', 'early');
  const w = worker(`
    const seen = [];
    parentPort.on('message', (m) => {
      seen.push(m);
      if (m === 'now') {
        const store = kv.createStore(parentPort); // the handle was dispatched before this call
        parentPort.postMessage({ seen, attached: store.attached, got: store.attached && store.get('k') });
        parentPort.close();
      }
    });
    parentPort.postMessage('listening');
  `);
  assert.deepEqual(await once(w, 'message'), ['listening']);
  manager.registerFork(w);
  w.postMessage('now');
  const [report] = await once(w, 'message');
  assert.equal(await exited(w), 0);
  assert.deepEqual(report, { seen: ['now'], attached: true, got: 'early' });
});

test('messages queued before createStore(parentPort) reach onmessage and addEventListener listeners too', { timeout: 30_000 }, async () => {
  for (const how of ['onmessage', 'addEventListener']) {
    const manager = createManager();
    const flag = new SharedArrayBuffer(4);
    const w = worker(`
      Atomics.wait(new Int32Array(workerData.flag), 0, 0); // until 'a' and 'b' are queued
      const store = kv.createStore(parentPort);
      const seen = [];
      const on = (m) => { seen.push(m); if (m === 'end') { parentPort.postMessage({ seen, attached: store.attached }); parentPort.close(); } };
      if (workerData.how === 'onmessage') parentPort.onmessage = (e) => on(e.data);
      else parentPort.addEventListener('message', (e) => on(e.data));
    `, { workerData: { how, flag } });
    w.postMessage('a');
    w.postMessage('b');
    manager.registerFork(w);
    w.postMessage('end');
    Atomics.store(new Int32Array(flag), 0, 1);
    Atomics.notify(new Int32Array(flag), 0);
    const [report] = await once(w, 'message');
    assert.equal(await exited(w), 0);
    assert.deepEqual(report, { seen: ['a', 'b', 'end'], attached: true }, how);
  }
});

test('a handle the user posts is the user\'s message; two copies of the package in a worker share the hand-over', { timeout: 30_000 }, async () => {
  const manager = createManager();
  manager.store.set('k', 'v');
  const w = worker(`
    // A second copy of the package (a dependency may bundle its own), loaded after this one.
    const dir = require('node:path').dirname(require.resolve(${JSON.stringify(require.resolve('..'))}));
    for (const k of Object.keys(require.cache)) if (k.startsWith(dir) && !k.endsWith('.node')) delete require.cache[k];
    const copy = require(dir);
    const store = kv.createStore(parentPort); // the first copy waits for registerFork's handle
    store.ready.then(() => parentPort.postMessage(['attached', kv !== copy, store.get('k')]));
    parentPort.once('message', (h) => {
      parentPort.postMessage(['mine', copy.createStore(h).get('k')]); // the user's own handle
      parentPort.close();
    });
    parentPort.postMessage(['listening']);
  `);
  const next = async () => (await once(w, 'message'))[0];
  assert.deepEqual(await next(), ['listening']);
  manager.registerFork(w);
  assert.deepEqual(await next(), ['attached', true, 'v']);
  w.postMessage(manager.handle);
  assert.deepEqual(await next(), ['mine', 'v']);
  assert.equal(await exited(w), 0);
});

test('user messages queued before a late handle reach a listener added after createStore(parentPort), in order', async () => {
  // Found by review: our own listener, added after the port's methods were hooked to wait for
  // the user's first one, took that place, and the early messages went to it alone.
  const manager = createManager();
  const w = worker(`
    const store = kv.createStore(parentPort); // takes 'a' and 'b' off the queue: no handle yet
    parentPort.postMessage('waiting');
    store.ready.then(() => {
      parentPort.on('message', (m) => {
        parentPort.postMessage(m);
        if (m === 'c') parentPort.close();
      });
      parentPort.postMessage('listening');
    });
  `);
  w.postMessage('a');
  w.postMessage('b');
  const next = async () => (await once(w, 'message'))[0];
  assert.equal(await next(), 'waiting');
  manager.registerFork(w);
  assert.equal(await next(), 'listening');
  w.postMessage('c');
  assert.deepEqual([await next(), await next(), await next()], ['a', 'b', 'c']);
  assert.equal(await exited(w), 0);
});

test('createStore with a Worker instead of its parentPort is a TypeError', () => {
  const w = worker('');
  assert.throws(() => require('..').createStore(w), TypeError);
  return exited(w);
});

test('user messages sent before registerFork in the same tick reach the user, in order', async () => {
  const manager = createManager();
  const w = worker(`
    const store = kv.createStore(parentPort);
    const attachedAtOnce = store.attached;
    parentPort.on('message', (m) => {
      parentPort.postMessage({ m, attachedAtOnce });
      if (m === 'c') parentPort.close();
    });
  `);
  w.postMessage('a');
  manager.registerFork(w);
  w.postMessage('b');
  w.postMessage('c');
  const got = [];
  w.on('message', (x) => got.push(x));
  assert.equal(await exited(w), 0);
  assert.deepEqual(got.map((x) => x.m), ['a', 'b', 'c']);
  assert.ok(got.every((x) => x.attachedAtOnce));
});

test('the handle in workerData (no Worker object needed, e.g. for pools)', async () => {
  const manager = createManager();
  manager.store.set('fromMain', [1, 2, 3]);
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    store.set('fromWorker', store.get('fromMain').map((x) => x * 2));
  `, { workerData: { kv: manager.handle } });
  assert.equal(await exited(w), 0);
  assert.deepEqual(manager.store.get('fromWorker'), [2, 4, 6]);
});

test('a write in one thread is visible in another at once, with no message or event-loop turn', async () => {
  const manager = createManager();
  const N = 2000;
  const signal = new Int32Array(new SharedArrayBuffer(8)); // [written, acknowledged]
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    const signal = workerData.signal;
    for (let i = 0; i < ${N}; i++) {
      store.set('vis:' + i, { i });
      Atomics.store(signal, 0, i + 1);
      Atomics.notify(signal, 0);
      Atomics.wait(signal, 1, i); // until main has read it
    }
  `, { workerData: { kv: manager.handle, signal } });
  let visible = 0;
  for (let i = 0; i < N; i++) {
    while (Atomics.load(signal, 0) < i + 1) Atomics.wait(signal, 0, i, 5000);
    // Synchronously, in the same turn of main's event loop as the signal:
    if (manager.store.get('vis:' + i)?.i === i) visible++;
    Atomics.store(signal, 1, i + 1);
    Atomics.notify(signal, 1);
  }
  assert.equal(await exited(w), 0);
  assert.equal(visible, N, '100% of new keys visible immediately');
});

test('readers never see a torn value while writers rewrite it (several threads)', async () => {
  const manager = createManager();
  const stop = new Int32Array(new SharedArrayBuffer(4));
  // Each value is self-checking: every field derives from seq; sizes vary so writes go both
  // in place and to new space.
  const check = `
    function check(v) {
      if (v === undefined) return true;
      const { seq, list, text, nested } = v;
      return list.length === seq % 50 && list.every((x) => x === seq) && text === 'x'.repeat(seq % 300) + seq &&
        nested.seq === seq && nested.map.get('seq') === seq;
    }`;
  const make = `(seq) => ({ seq, list: Array(seq % 50).fill(seq), text: 'x'.repeat(seq % 300) + seq, nested: { seq, map: new Map([['seq', seq]]) } })`;
  const writers = [1, 2].map((id) => worker(`
    const store = kv.createStore(workerData.kv);
    const make = ${make};
    let seq = ${id};
    while (Atomics.load(workerData.stop, 0) === 0) {
      store.set('torn:' + (seq % 4), make(seq), seq % 7 === 0);
      seq += 2;
    }
    parentPort.postMessage(seq);
  `, { workerData: { kv: manager.handle, stop } }));
  const readers = [1, 2].map(() => worker(`
    ${check}
    const store = kv.createStore(workerData.kv);
    let reads = 0, torn = 0;
    while (Atomics.load(workerData.stop, 0) === 0) {
      if (!check(store.get('torn:' + (reads % 4)))) torn++;
      reads++;
    }
    parentPort.postMessage({ reads, torn });
  `, { workerData: { kv: manager.handle, stop } }));
  const results = [...writers, ...readers].map((w) => once(w, 'message').then(([m]) => m));
  // Main reads too, in short bursts so its event loop can take the workers' messages.
  const checkFn = new Function(`${check}; return check;`)();
  let mainReads = 0, mainTorn = 0;
  const deadline = Date.now() + 1500;
  while (Date.now() < deadline) {
    for (let i = 0; i < 200; i++, mainReads++) if (!checkFn(manager.store.get('torn:' + (i % 4)))) mainTorn++;
    await new Promise((r) => setImmediate(r));
  }
  Atomics.store(stop, 0, 1);
  const [w1, w2, ...readStats] = await Promise.all(results);
  assert.ok(w1 > 100 && w2 > 100, `writers wrote (${w1}, ${w2})`);
  const reads = readStats.reduce((a, r) => a + r.reads, mainReads);
  const torn = readStats.reduce((a, r) => a + r.torn, mainTorn);
  assert.ok(reads > 1000, `${reads} reads`);
  assert.equal(torn, 0, `${torn} torn values in ${reads} reads`);
});

test('workers terminated mid-write leave no lock held and no entry half-written', async () => {
  const manager = createManager();
  const r = rng(7);
  const store = manager.store;
  for (let round = 0; round < 12; round++) {
    const started = new Int32Array(new SharedArrayBuffer(4));
    const ws = [0, 1, 2].map((id) => worker(`
      const store = kv.createStore(workerData.kv);
      Atomics.store(workerData.started, 0, 1);
      for (let i = 0; ; i++) {
        const key = 'term:' + (i % 50);
        const v = { id: ${id}, i, pad: 'p'.repeat(i % 2000), list: Array(i % 100).fill(i) };
        store.set(key, v, i % 5 === 0);
        if (i % 3 === 0) store.delete('term:' + ((i * 7) % 50));
      }
    `, { workerData: { kv: manager.handle, started } }));
    while (Atomics.load(started, 0) === 0) await new Promise((res) => setTimeout(res, 1));
    await new Promise((res) => setTimeout(res, 1 + Math.floor(r() * 30)));
    await Promise.all(ws.map((w) => w.terminate()));
    // Every entry is whole, the lock is free (a set completes), and the count matches.
    let live = 0;
    for (let k = 0; k < 50; k++) {
      const v = store.get('term:' + k);
      if (v === undefined) continue;
      live++;
      assert.equal(v.pad, 'p'.repeat(v.i % 2000));
      assert.deepEqual(v.list, Array(v.i % 100).fill(v.i));
    }
    assert.equal(store.stats().entries, live + (round > 0 ? 1 : 0));
    assert.equal(store.set('after-terminate', round), true);
    assert.equal(store.get('after-terminate'), round);
  }
});

test('several workers write disjoint keys at once; nothing is lost', async () => {
  const manager = createManager();
  const W = 4, N = 3000;
  const ws = Array.from({ length: W }, (_, id) => worker(`
    const store = kv.createStore(workerData.kv);
    for (let i = 0; i < ${N}; i++) store.set('w${id}:' + i, { id: ${id}, i, s: 'v'.repeat(i % 64) });
  `, { workerData: { kv: manager.handle } }));
  await Promise.all(ws.map(exited));
  for (let id = 0; id < W; id++) {
    for (let i = 0; i < N; i++) assert.deepEqual(manager.store.get(`w${id}:${i}`), { id, i, s: 'v'.repeat(i % 64) });
  }
  assert.equal(manager.store.stats().entries, W * N);
});

test('a process using the store exits on its own when its code is done', () => {
  const example = path.join(__dirname, '..', 'example', 'main.js');
  const run = spawnSync(process.execPath, [example], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.signal, null, 'not killed by the timeout');
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stdout, /Hello from Main!/);
  assert.match(run.stdout, /Hello from Worker!/);
});

test('a worker whose createStore(parentPort) never gets a handle exits: ready rejects with ERR_KV_NO_HANDLE after handleTimeout, and use before it is ERR_KV_NOT_READY', async () => {
  const { Worker } = require('node:worker_threads');
  const w = new Worker(`
    const { parentPort } = require('node:worker_threads');
    const kv = require(${JSON.stringify(require('node:path').join(__dirname, '..'))});
    const store = kv.createStore(parentPort, { handleTimeout: 200 });
    let early;
    try { store.get('k'); } catch (e) { early = e.code; }
    store.ready.catch((e) => parentPort.postMessage([early, e.code, (() => { try { store.get('k'); } catch (e2) { return e2.code; } })()]));
  `, { eval: true });
  const exit = once(w, 'exit'); // from the start: it may come in the same turn as the message
  const [message] = await once(w, 'message');
  assert.deepEqual(message, ['ERR_KV_NOT_READY', 'ERR_KV_NO_HANDLE', 'ERR_KV_NO_HANDLE']);
  // Nothing of the store keeps the thread: it ends on its own (no terminate()).
  const [code] = await exit;
  assert.equal(code, 0);
});
