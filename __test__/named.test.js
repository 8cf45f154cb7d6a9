'use strict';
// Named stores: createStore(name) / createManager({ name }) reach the same memory in every
// thread of the process, with no ports wired by the user.
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { createManager, createStore } = require('..');
const { worker, exited } = require('./helpers');

test('the same name is the same store in every thread, usable at once; other names are isolated', async () => {
  const store = createStore('named:shared');
  assert.equal(createStore('named:shared'), store, 'one object per name in a thread');
  store.set('fromMain', { n: 1 });
  createStore('named:other').set('fromMain', 'other');
  const ws = [0, 1].map((id) => worker(`
    const store = kv.createStore('named:shared');
    if (!store.attached) throw new Error('not usable at once');
    parentPort.postMessage(store.get('fromMain'));
    store.set('fromWorker${id}', ${id});
    store.increment('count');
  `));
  const exits = Promise.all(ws.map(exited)); // listen before they can exit
  const seen = await Promise.all(ws.map((w) => new Promise((r) => w.once('message', r))));
  assert.deepEqual(await exits, [0, 0], 'workers exit on their own');
  assert.deepEqual(seen, [{ n: 1 }, { n: 1 }]);
  assert.equal(store.get('fromWorker0'), 0);
  assert.equal(store.get('fromWorker1'), 1);
  assert.equal(store.get('count'), 2);
  assert.equal(createStore('named:other').get('fromMain'), 'other');
  assert.equal(createStore('named:other').get('fromWorker0'), undefined, 'isolated');
});

test('createManager({ name }), registerFork, handles and the default store', async () => {
  const manager = createManager({ name: 'named:managed' });
  assert.equal(manager.store, createStore('named:managed'));
  assert.equal(globalThis.SharedKVStore.instance, manager.store);
  manager.store.set('k', 'v');
  assert.deepEqual(manager.handle, { __sharedKVStore: 1, name: 'named:managed' });
  const viaPort = worker(`
    const store = kv.createStore(parentPort);
    parentPort.postMessage([store.name, store.get('k')]);
  `);
  manager.registerFork(viaPort);
  const viaData = worker(`parentPort.postMessage(kv.createStore(workerData.kv).get('k'));`, { workerData: { kv: manager.handle } });
  const exits = Promise.all([viaPort, viaData].map(exited));
  const [a, b] = await Promise.all([viaPort, viaData].map((w) => new Promise((r) => w.once('message', r))));
  assert.deepEqual(a, ['named:managed', 'v']);
  assert.equal(b, 'v');
  await exits;

  const dflt = worker(`kv.createStore().set('inDefault', true); parentPort.postMessage(kv.createStore().name);`);
  const dfltExit = exited(dflt);
  const [name] = await new Promise((r) => dflt.once('message', (m) => r([m])));
  await dfltExit;
  assert.equal(name, 'default', 'createStore() with no manager is the default named store');
  assert.equal(createStore('default').get('inDefault'), true);
  assert.throws(() => createStore(''), TypeError);
});

test("a named store's memory outlives any one thread's use of it", async () => {
  const store = createStore('named:lasting');
  store.set('big', Buffer.alloc(5 * 1024 * 1024, 7));
  store.close();
  const w = worker(`
    const store = kv.createStore('named:lasting');
    const b = store.get('big');
    parentPort.postMessage(b.length === 5 * 1024 * 1024 && b[0] === 7 && b[b.length - 1] === 7);
  `);
  const wExit = exited(w);
  const [ok] = await new Promise((r) => w.once('message', (m) => r([m])));
  await wExit;
  assert.equal(ok, true);
  assert.notEqual(createStore('named:lasting'), store, 'a closed store is replaced by a fresh one');
  assert.equal(createStore('named:lasting').get('big').length, 5 * 1024 * 1024);
});

test('a named store is full at its maxBytes (set by the first createStore of the name)', () => {
  const store = createStore('named:small', { maxBytes: 2 * 1024 * 1024 });
  let n = 0;
  assert.throws(() => { for (;;) store.set(`k${n++}`, Buffer.alloc(100_000)); }, { name: 'RangeError', code: 'ERR_KV_FULL' });
  assert.ok(n > 5);
  assert.equal(store.get('k0').length, 100_000, 'earlier values intact');
});

test('a process using named stores in main and a worker exits on its own', () => {
  const script = `
    const { Worker } = require('node:worker_threads');
    const { createStore } = require(${JSON.stringify(path.join(__dirname, '..'))});
    createStore('exit-test').set('a', 1);
    new Worker(${JSON.stringify(`require(${JSON.stringify(path.join(__dirname, '..'))}).createStore('exit-test').set('b', 2)`)}, { eval: true })
      .on('exit', () => console.log(createStore('exit-test').get('b')));`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.signal, null, 'killed by the timeout: something kept the process alive');
  assert.equal(run.status, 0, run.stderr);
  assert.equal(run.stdout.trim(), '2');
});

test('a named store above 1 TiB is a RangeError, not a crash (createStore, a named manager, the Keyv adapter); 4 GiB and 5 GiB work', () => {
  const root = JSON.stringify(path.join(__dirname, '..'));
  const script = `
    const { createStore, createManager } = require(${root});
    const KeyvSharedKV = require('shared-kv-store/keyv');
    const Adapter = KeyvSharedKV.KeyvSharedKVStore;
    const tries = [
      () => createStore('big', { maxBytes: 2 ** 40 + 1 }),
      () => createManager({ name: 'big-manager', maxBytes: 2 ** 41 }),
      () => new Adapter({ name: 'big-keyv', maxBytes: 2 ** 42 }),
    ];
    for (const t of tries) {
      try { t(); console.log('no error'); } catch (e) { console.log(e.name, /1 TiB/.test(e.message)); }
    }
    for (const maxBytes of [2 ** 32, 5 * 2 ** 30]) {
      const s = createStore('edge' + maxBytes, { maxBytes });
      s.set('a', { x: 1 });
      console.log(s.get('a').x, s.stats().bufferBytes);
    }`;
  const run = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(run.signal, null, `died of ${run.signal}: ${run.stderr}`);
  assert.equal(run.status, 0, run.stderr);
  assert.deepEqual(run.stdout.trim().split('\n'), ['RangeError true', 'RangeError true', 'RangeError true', `1 ${2 ** 32}`, `1 ${5 * 2 ** 30}`]);
});
