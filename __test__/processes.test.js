'use strict';
// One store across processes: openStore(path) from child_process.fork and cluster workers.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');
const { once } = require('node:events');
const { openStore, createStore } = require('..');
const { worker, exited, peer } = require('./helpers');

const PKG = path.join(__dirname, '..');
const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-proc-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newPath = () => path.join(dir, `store-${files++}.kv`);


test('a write in one process is visible in another as soon as it returns', async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 8 << 20 });
  assert.equal(openStore(file), store, 'one object per path in a thread');
  const p = await peer(file);
  try {
    for (let i = 0; i < 300; i++) {
      store.set('ping', { i, from: 'parent' });
      assert.deepEqual(await p.run(`const v = store.get('ping'); store.set('pong', { i: v.i, from: 'peer' }); return v;`), { i, from: 'parent' });
      assert.deepEqual(store.get('pong'), { i, from: 'peer' }, `round ${i}: the peer's write is here at once`);
    }
  } finally {
    await p.stop();
  }
});

test('2 processes x 20,000 increments make exactly 40,000', async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 8 << 20 });
  const peers = await Promise.all([peer(file), peer(file)]);
  try {
    const runs = peers.map((p) => p.run(`for (let i = 0; i < 20000; i++) store.increment('n'); return store.get('n');`));
    const seen = await Promise.all(runs);
    assert.ok(seen.every((n) => n >= 20000 && n <= 40000));
    assert.equal(store.get('n'), 40000);
    assert.equal(store.check().entries, 1);
  } finally {
    await Promise.all(peers.map((p) => p.stop()));
  }
});

test('every operation family works across processes: TTL, patterns, locks, update, iteration, clear', async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 8 << 20 });
  const p = await peer(file);
  try {
    await p.run(`
      store.set('user:1', { name: 'a' }); store.set('user:2', { name: 'b' }); store.set('other', 1);
      store.set('short', 'lived', { ttl: 0.05 });
      store.update('doc', (d) => ({ n: (d?.n ?? 0) + 1 }));
    `);
    assert.deepEqual(store.listKeys('user:*').sort(), ['user:1', 'user:2']);
    assert.equal(store.get('short'), 'lived');
    assert.deepEqual(store.update('doc', (d) => ({ n: d.n + 1 })), { n: 2 });
    assert.deepEqual(await p.run(`return store.get('doc');`), { n: 2 });
    assert.ok(store.lock('job', 0));
    assert.equal(await p.run(`return store.lock('job', 0);`), false, 'held by the parent');
    assert.equal(await p.run(`return store.release('job');`), false, 'not the holder');
    assert.ok(store.release('job'));
    assert.equal(await p.run(`return store.lock('job', 0) && store.release('job');`), true);
    assert.equal(await p.run(`return store.delete('user:*');`), true);
    assert.deepEqual([...store.keys()].sort(), ['doc', 'other', 'short']);
    assert.deepEqual(Object.fromEntries(await p.run(`return [...store.entries()].filter(([k]) => k !== 'short');`)), { doc: { n: 2 }, other: 1 });
    await new Promise((r) => setTimeout(r, 80));
    assert.equal(await p.run(`return store.get('short');`), undefined, 'expired for every process');
    assert.equal(store.delete('short'), false, 'expired: removed, but was not present');
    assert.equal(await p.run(`return store.clear();`), 2);
    assert.equal(store.size, 0);
    assert.equal(store.check().entries, 0);
  } finally {
    await p.stop();
  }
});

test('cluster workers share the store; a worker thread reaches it through store.handle', async () => {
  const file = newPath();
  const script = path.join(dir, 'cluster.js');
  fs.writeFileSync(script, `
    const cluster = require('node:cluster');
    const { openStore, createStore } = require(${JSON.stringify(PKG)});
    const store = openStore(${JSON.stringify(file)}, { maxBytes: 8 << 20 });
    if (cluster.isPrimary) {
      let exited = 0;
      for (let i = 0; i < 2; i++) cluster.fork().on('exit', (code) => {
        if (code !== 0) process.exit(1);
        if (++exited === 2) {
          const w = new (require('node:worker_threads').Worker)(
            'const { createStore } = require(' + JSON.stringify(${JSON.stringify(PKG)}) + ');' +
            'const s = createStore(require("node:worker_threads").workerData); s.increment("hits", 100);',
            { eval: true, workerData: store.handle });
          w.on('exit', () => { console.log(JSON.stringify({ hits: store.get('hits'), ids: store.listKeys('worker:*').sort() })); });
        }
      });
    } else {
      for (let i = 0; i < 1000; i++) store.increment('hits');
      store.set('worker:' + cluster.worker.id, process.pid);
      process.exit(0);
    }
  `);
  const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { hits: 2100, ids: ['worker:1', 'worker:2'] });
});

test('reopened after every process exited, all data is there; the file is 0600', async () => {
  const file = newPath();
  const code = (body) => spawnSync(process.execPath, ['-e', `const { openStore } = require(${JSON.stringify(PKG)}); const s = openStore(${JSON.stringify(file)}, { maxBytes: 4 << 20 }); ${body}`], { encoding: 'utf8' });
  const w = code(`for (let i = 0; i < 1000; i++) s.set('k' + i, { i, big: 'x'.repeat(i) }); s.flush();`);
  assert.equal(w.status, 0, w.stderr);
  assert.equal(fs.statSync(file).mode & 0o777, 0o600);
  assert.equal(fs.statSync(file).size, 4 << 20);
  const r = code(`let bad = 0; for (let i = 0; i < 1000; i++) { const v = s.get('k' + i); if (v.i !== i || v.big.length !== i) bad++; } console.log(bad, s.size, s.check().entries);`);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout.trim(), '0 1000 1000');
  const grown = openStore(file, { maxBytes: 64 << 20 });
  assert.equal(grown.stats().bufferBytes, 4 << 20, 'a later open uses the file\'s own size');
});

test('mode, create: false, a file that is not a store, a symlink and bad options', () => {
  const shared = newPath();
  openStore(shared, { mode: 0o640, maxBytes: 1 << 20 });
  assert.equal(fs.statSync(shared).mode & 0o777, 0o640, 'mode applied exactly');
  const missing = newPath();
  assert.throws(() => openStore(missing, { create: false }), (e) => e.code === 'ENOENT' && e.message.includes(missing));
  assert.equal(fs.existsSync(missing), false);
  const foreign = newPath();
  const bytes = Buffer.alloc(1 << 20, 0xab);
  fs.writeFileSync(foreign, bytes);
  assert.throws(() => openStore(foreign), { code: 'ERR_KV_NOT_A_STORE' });
  assert.ok(fs.readFileSync(foreign).equals(bytes), 'left unchanged');
  // A store file longer than the layout addresses (1 TiB; sparse: no disk used) is refused by
  // name, with the limit that applies.
  const long = newPath();
  const first = openStore(long, { maxBytes: 1 << 20 });
  first.set('k', 1);
  first.close(); // so that the next openStore maps the file again
  fs.truncateSync(long, 2 ** 40 + 4096);
  assert.throws(() => openStore(long),
    (e) => e.code === 'ERR_KV_NOT_A_STORE' && e.message.includes(`${2 ** 40 + 4096} bytes long`) && e.message.includes(`to ${2 ** 40} bytes`));
  assert.equal(fs.statSync(long).size, 2 ** 40 + 4096, 'left as it was');
  fs.rmSync(long);
  const target = path.join(dir, 'precious.txt');
  fs.writeFileSync(target, 'precious');
  const link = newPath();
  fs.symlinkSync(target, link);
  assert.throws(() => openStore(link), { code: 'ELOOP' });
  assert.equal(fs.readFileSync(target, 'utf8'), 'precious');
  const noDir = path.join(dir, 'no-such-dir', 'x.kv');
  assert.throws(() => openStore(noDir), (e) => e.code === 'ENOENT' && e.message.includes(noDir));
  if (process.getuid?.() !== 0) {
    const ro = path.join(dir, 'ro');
    fs.mkdirSync(ro, { mode: 0o500 });
    assert.throws(() => openStore(path.join(ro, 'x.kv')), { code: 'EACCES' });
  }
  assert.throws(() => openStore(''), TypeError);
  assert.throws(() => openStore(42), TypeError);
  assert.throws(() => openStore(newPath(), { maxBytes: -1 }), RangeError);
  assert.throws(() => openStore(newPath(), { maxBytes: 2 ** 40 + 1 }), RangeError);
  assert.throws(() => openStore(newPath(), { mode: 'rw' }), RangeError);
  assert.throws(() => openStore(newPath(), { create: 'yes' }), TypeError);
});

test('a store of another layout version is refused, naming both versions, and left unchanged', () => {
  const file = newPath();
  openStore(file, { maxBytes: 1 << 20 }).close();
  const fd = fs.openSync(file, 'r+');
  const v = Buffer.alloc(4);
  v.writeUInt32LE(5);
  fs.writeSync(fd, v, 0, 4, 8); // layout.rs H_VERSION
  fs.closeSync(fd);
  const before = fs.readFileSync(file);
  const other = path.join(dir, 'other-name-same-file.kv');
  fs.linkSync(file, other); // this process has the file mapped: open it under a new path
  const current = require('../binding.js').layout().layoutVersion;
  assert.throws(() => spawnOpen(other), new RegExp(`ERR_KV_LAYOUT.*version 5.*version ${current}`, 's'));
  assert.ok(fs.readFileSync(file).equals(before));
});

function spawnOpen(file) {
  const r = spawnSync(process.execPath, ['-e', `try { require(${JSON.stringify(PKG)}).openStore(${JSON.stringify(file)}) } catch (e) { console.error(e.code, e.message); process.exit(3) }`], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return r;
}

test('processes racing to create the same new file get one store', async () => {
  const { spawn } = require('node:child_process');
  for (let round = 0; round < 5; round++) {
    const file = newPath();
    // Every racer is loaded and waiting before the same instant, then all open at once.
    const at = Date.now() + 400;
    const racers = Array.from({ length: 4 }, (_, i) => spawn(process.execPath, ['-e', `
      const { openStore } = require(${JSON.stringify(PKG)});
      while (Date.now() < ${at});
      openStore(${JSON.stringify(file)}, { maxBytes: 1 << 20 }).set('racer${i}', ${i});
    `], { stdio: 'inherit' }));
    const codes = await Promise.all(racers.map((r) => once(r, 'exit').then(([c]) => c)));
    assert.deepEqual(codes, [0, 0, 0, 0]);
    const store = openStore(file);
    assert.deepEqual(store.listKeys('racer*').sort(), ['racer0', 'racer1', 'racer2', 'racer3']);
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
  }
});

test('a lock held by a killed process or by a terminated worker thread is free at once', async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 4 << 20 });
  const p = await peer(file);
  assert.equal(await p.run(`return store.lock('job', 0, { lease: 600000 });`), true);
  assert.equal(store.lock('job', 0), false);
  p.kill('SIGKILL');
  await once(p, 'exit');
  assert.equal(store.lock('job', 0), true, 'the dead holder\'s lease is taken at once');
  assert.ok(store.release('job'));

  for (const how of ['terminate', 'exit']) {
    const w = worker(`
      const s = kv.createStore(workerData);
      s.lock('job', 0, { lease: 600000 });
      parentPort.postMessage('locked');
      ${how === 'exit' ? '' : 'setInterval(() => {}, 1000);'}
    `, { workerData: store.handle });
    await once(w, 'message');
    if (how === 'terminate') await w.terminate();
    else await exited(w);
    assert.equal(store.lock('job', 0), true, `free after the worker's ${how}`);
    assert.ok(store.release('job'));
  }
  // The same for a thread store.
  const mem = createStore('processes:locks');
  const w = worker(`
    const s = kv.createStore('processes:locks');
    s.lock('job', 0, { lease: 600000 });
    parentPort.postMessage('locked');
    setInterval(() => {}, 1000);
  `);
  await once(w, 'message');
  assert.equal(mem.lock('job', 0), false);
  await w.terminate();
  assert.equal(mem.lock('job', 0), true);
});

test('openStore(path) after another process deleted and re-created the file opens the new store, never the deleted one', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-deleted-'));
  const file = path.join(dir, 'store.kv');
  try {
    const old = openStore(file);
    old.set('a', 1);
    assert.equal(openStore(file), old, 'the same file: the same object');
    fs.unlinkSync(file);
    assert.throws(() => openStore(file, { create: false }), { code: 'ENOENT' });
    const run = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)}).set('b', 2)`], { encoding: 'utf8' });
    assert.equal(run.status, 0, run.stderr);
    const now = openStore(file, { create: false });
    assert.notEqual(now, old);
    assert.equal(now.get('b'), 2, 'the new store, as the other process made it');
    assert.equal(now.get('a'), undefined);
    assert.equal(old.get('a'), 1, 'the old object still works on its (deleted) file');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
