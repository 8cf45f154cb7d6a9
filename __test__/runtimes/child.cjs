'use strict';
// Child-process side of conformance.mjs: `child.cjs PKG MODE FILE`.
const [pkg, mode, file] = process.argv.slice(2);
const kv = require(pkg);

switch (mode) {
  case 'writer': {
    const s = kv.openStore(file);
    s.set('cp1', 1);
    s.set('cp2', 2);
    for (let i = 0; i < 100; i++) s.increment('hits');
    break;
  }
  case 'lock-hold': {
    const s = kv.openStore(file);
    process.stdout.write(`${s.lock('proc-lock', 0, { lease: 60_000 })}\n`);
    setInterval(() => {}, 1000); // until SIGKILL
    break;
  }
  case 'ipc': {
    const s = kv.openStore(file);
    s.set('fromChild', process.pid);
    process.send({ pid: process.pid, seen: s.get('fromParent') });
    process.on('message', (m) => {
      if (m === 'bye') process.disconnect();
    });
    break;
  }
  case 'exits': {
    // Every kind of store used, a watcher opened and closed, a worker handed a store through
    // parentPort and by handle: the process must end by itself when this code is done.
    const { Worker } = require('node:worker_threads');
    const m = kv.createManager();
    m.store.set('a', 1);
    kv.createStore('exit-named').set('a', 1);
    const f = kv.openStore(file);
    f.set('a', 1);
    const w1 = f.watch(() => {});
    const w2 = m.store.watch(() => {});
    f.set('b', 2);
    m.store.set('b', 2);
    setTimeout(() => { w1.close(); w2.close(); }, 50);
    const path = require('node:path');
    const w = new Worker(path.join(__dirname, 'worker.cjs'), { workerData: { pkg, mode: 'handles', sources: { thread: m.handle, file: f.handle, named: 'exit-named' } } });
    w.on('message', () => {});
    process.stdout.write('done\n');
    break;
  }
  case 'watch-ref':
  case 'watch-unref': {
    const s = kv.openStore(file);
    const w = s.watch(() => {});
    if (mode === 'watch-unref') w.unref();
    s.set('x', 1);
    process.stdout.write('done\n');
    break;
  }
  default:
    throw new Error(`unknown mode ${mode}`);
}
