'use strict';
// The store file at the machine's edges: files that must not be trusted.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { once } = require('node:events');
const { openStore, createStore } = require('..');
const { worker, exited } = require('./helpers');

const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const dir = fs.mkdtempSync(path.join(base, 'skv-files-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newPath = (d = dir) => path.join(d, `store-${files++}.kv`);
const isRoot = process.getuid?.() === 0;

/** A store file made by this process, then closed so the next openStore maps it again. */
function made(file, options) {
  const s = openStore(file, { maxBytes: 1 << 20, ...options });
  s.set('k', 'ours');
  s.close();
  return fs.readFileSync(file);
}

test('a store file owned by another user is refused untouched, root included', { skip: !isRoot && 'chown needs root' }, () => {
  const file = newPath();
  const bytes = made(file);
  fs.chownSync(file, 65534, 65534);
  assert.throws(() => openStore(file), (e) => e.code === 'ERR_KV_UNSAFE_FILE' &&
    e.message.includes('uid 65534') && e.message.includes(file));
  assert.throws(() => openStore(file, { mode: 0o666 }), { code: 'ERR_KV_UNSAFE_FILE' }, 'no mode makes a foreign file ours');
  assert.ok(fs.readFileSync(file).equals(bytes), 'left untouched');
  // Another user's file in our group, shared with the group (mode 0o660): accepted.
  fs.chownSync(file, 65534, process.getegid());
  fs.chmodSync(file, 0o660);
  assert.equal(openStore(file, { mode: 0o660 }).get('k'), 'ours');
  openStore(file).close();
  fs.chownSync(file, 0, 0);
  fs.chmodSync(file, 0o600);
  assert.equal(openStore(file).get('k'), 'ours');
  // A directory another user owns: they may replace any file in it, sticky bit or not.
  const theirs = fs.mkdtempSync(path.join(dir, 'theirs-'));
  const inTheirs = newPath(theirs);
  made(inTheirs);
  fs.chownSync(theirs, 65534, 65534);
  fs.chmodSync(theirs, 0o1755);
  assert.throws(() => openStore(inTheirs), (e) => e.code === 'ERR_KV_UNSAFE_FILE' && /directory .* is owned by uid 65534/.test(e.message));
});

test('a store file writable by more users than the mode option grants is refused; a mode that grants it is accepted', () => {
  const file = newPath();
  const bytes = made(file);
  fs.chmodSync(file, 0o666);
  assert.throws(() => openStore(file), (e) => e.code === 'ERR_KV_UNSAFE_FILE' &&
    e.message.includes('0666') && e.message.includes('0600') && e.message.includes('chmod 644'));
  assert.throws(() => openStore(file, { mode: 0o660 }), (e) => e.code === 'ERR_KV_UNSAFE_FILE' && /writable by others/.test(e.message));
  assert.ok(fs.readFileSync(file).equals(bytes), 'left untouched');
  fs.chmodSync(file, 0o644); // readable by others is not writable by them
  assert.equal(openStore(file).get('k'), 'ours');
  openStore(file).close();
  fs.chmodSync(file, 0o666);
  assert.equal(openStore(file, { mode: 0o666 }).get('k'), 'ours');
});

test('a store shared with a group (mode 0o660) opens in workers given its handle, or the path with the mode', async () => {
  const file = newPath();
  const store = openStore(file, { maxBytes: 1 << 20, mode: 0o660 });
  assert.equal(fs.statSync(file).mode & 0o777, 0o660);
  store.set('k', 'group');
  assert.deepEqual(store.handle.mode, 0o660);
  // In a worker: from the handle (its mode travels with it), and by path with the mode.
  const w = worker(`
    let plain; // first: once this thread has the store open, openStore(file) returns it
    try { kv.openStore(workerData.file); } catch (e) { plain = e.code; }
    const a = kv.createStore(workerData.handle);
    parentPort.postMessage([a.get('k'), kv.openStore(workerData.file, { mode: 0o660 }).get('k'), plain]);
  `, { workerData: { handle: store.handle, file } });
  const [got] = await once(w, 'message');
  assert.equal(await exited(w), 0);
  assert.deepEqual(got, ['group', 'group', 'ERR_KV_UNSAFE_FILE']);
});

test('a store file in a directory others may write to without the sticky bit is refused, to create or to open', () => {
  const open = fs.mkdtempSync(path.join(dir, 'open-'));
  const existing = newPath(open);
  made(existing);
  fs.chmodSync(open, 0o777);
  const fresh = newPath(open);
  for (const file of [existing, fresh]) {
    assert.throws(() => openStore(file), (e) => e.code === 'ERR_KV_UNSAFE_FILE' &&
      e.message.includes(open) && e.message.includes('0777') && /sticky/.test(e.message));
  }
  assert.equal(fs.existsSync(fresh), false, 'nothing created');
  fs.chmodSync(open, 0o1777); // like /tmp and /dev/shm: only a file's owner may replace it
  assert.equal(openStore(existing).get('k'), 'ours');
  openStore(fresh, { maxBytes: 1 << 20 }).set('x', 1);
  const group = fs.mkdtempSync(path.join(dir, 'group-'));
  fs.chmodSync(group, 0o770);
  assert.throws(() => openStore(newPath(group), { maxBytes: 1 << 20 }), (e) => e.code === 'ERR_KV_UNSAFE_FILE' && /its group/.test(e.message));
  openStore(newPath(group), { maxBytes: 1 << 20, mode: 0o660 }).set('x', 1); // shared with the group anyway
});

test('named stores are not files: no check applies', () => {
  const s = createStore('files:named', { maxBytes: 1 << 20 });
  s.set('k', 1);
  assert.equal(s.get('k'), 1);
});

test('a deleted or replaced store file: stats().linked turns false, one ERR_KV_UNLINKED warning, and the store goes on', async () => {
  const warnings = [];
  const onWarning = (w) => { if (w.code === 'ERR_KV_UNLINKED') warnings.push(w); };
  process.on('warning', onWarning);
  try {
    for (const how of ['delete', 'replace']) {
      warnings.length = 0;
      const file = newPath();
      const store = openStore(file, { maxBytes: 1 << 20 });
      store.set('k', 1);
      if (how === 'delete') {
        fs.rmSync(file);
        // No stats() before: writes alone find it (they look once in 16 writes, at most once a
        // second, and this store has not looked yet).
        for (let i = 0; i < 16; i++) store.set(`w${i}`, i);
      } else {
        assert.equal(store.stats().linked, true);
        fs.rmSync(file);
        made(file); // another store under the same name
        assert.equal(store.stats().linked, false, 'stats() looks at once');
        for (let i = 0; i < 64; i++) store.set(`w${i}`, i);
      }
      await new Promise((r) => setImmediate(r)); // warnings are emitted on the next tick
      assert.equal(warnings.length, 1, `${how}: one warning`);
      assert.ok(warnings[0].message.includes(`'${file}' was deleted or replaced`), warnings[0].message);
      assert.equal(store.stats().linked, false);
      assert.equal(store.get('w15'), 15, 'the open store keeps working');
      // openStore(path) now opens what the path names, not the old store.
      const again = openStore(file, { maxBytes: 1 << 20 });
      assert.notEqual(again, store);
      assert.equal(again.get('w15'), undefined);
      assert.equal(again.stats().linked, true);
    }
    await new Promise((r) => setImmediate(r));
    assert.equal(warnings.length, 1, 'no more warnings');
  } finally {
    process.off('warning', onWarning);
  }
});

test('opening a truncated store file is ERR_KV_TRUNCATED naming both sizes, and leaves it untouched', () => {
  for (const size of [512 << 10, 20 << 10, 4096]) {
    const file = newPath();
    made(file);
    fs.truncateSync(file, size);
    const bytes = fs.readFileSync(file);
    assert.throws(() => openStore(file), (e) => e.code === 'ERR_KV_TRUNCATED' &&
      e.message.includes(`${size} bytes long`) && e.message.includes(`${1 << 20} bytes long`));
    assert.ok(fs.readFileSync(file).equals(bytes), 'left untouched');
  }
});

/** A tmpfs of `size` mounted for the test (root only), or undefined with the reason. */
function tmpfs(size) {
  const { execFileSync } = require('node:child_process');
  const at = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=700`, 'tmpfs', at], { stdio: 'pipe' });
  } catch (e) {
    fs.rmdirSync(at);
    return { skip: `cannot mount a tmpfs here (${String(e.stderr ?? e.message).trim()})` };
  }
  // Lazy: this process keeps its mappings of the files until it exits.
  return { at, done: () => { execFileSync('umount', ['-l', at]); fs.rmdirSync(at); } };
}

test('two store files filling a small tmpfs: refusals are ERR_KV_FULL or eviction, no process dies, nothing written is lost', { timeout: 120_000 }, async (t) => {
  const fsys = tmpfs('8m');
  if (fsys.skip) return t.skip(fsys.skip);
  try {
    // Each fits the free space when it is created; together they are 12 MiB on 8 MiB.
    const throwing = path.join(fsys.at, 'throw.kv');
    const evicting = path.join(fsys.at, 'evict.kv');
    const a = openStore(throwing, { maxBytes: 6 << 20 });
    const b = openStore(evicting, { maxBytes: 6 << 20, onFull: 'evict' });
    const value = (tag, i) => Buffer.alloc(48 << 10, (tag * 31 + i) & 0xff);
    // A worker thread and a child process write into both while this thread does.
    const code = (tag) => `
      const lib = require(${JSON.stringify(path.join(__dirname, '..'))});
      const a = lib.openStore(${JSON.stringify(throwing)}), b = lib.openStore(${JSON.stringify(evicting)});
      const stored = [], codes = new Set();
      for (let i = 0; i < 150; i++) {
        try { a.set('t${tag}:' + i, Buffer.alloc(48 << 10, (${tag} * 31 + i) & 0xff)); stored.push(i); } catch (e) { codes.add(e.code); }
        b.set('e${tag}:' + i, Buffer.alloc(48 << 10, i & 0xff)); // evicts: never throws
      }
      const out = JSON.stringify({ stored, codes: [...codes] });`;
    const w = worker(`${code(1)} parentPort.postMessage(out);`);
    const { spawn } = require('node:child_process');
    const child = spawn(process.execPath, ['-e', `${code(2)} process.stdout.write(out);`], { stdio: ['ignore', 'pipe', 'inherit'] });
    const childExit = once(child, 'exit');
    let childOut = '';
    child.stdout.on('data', (d) => { childOut += d; });
    const mine = { stored: [], codes: new Set() };
    for (let i = 0; i < 150; i++) {
      try { a.set(`t0:${i}`, value(0, i)); mine.stored.push(i); } catch (e) { mine.codes.add(e.code); }
      b.set(`e0:${i}`, value(0, i));
    }
    const [fromWorker] = await once(w, 'message');
    const [exitCode, signal] = await childExit;
    assert.deepEqual([exitCode, signal], [0, null], 'the child process did not die');
    assert.equal(await exited(w), 0);
    const results = [{ stored: mine.stored, codes: [...mine.codes] }, JSON.parse(fromWorker), JSON.parse(childOut)];
    let refused = 0;
    for (const [tag, r] of results.entries()) {
      for (const c of r.codes) assert.equal(c, 'ERR_KV_FULL', `writer ${tag}`);
      if (r.codes.length) refused++;
      for (const i of r.stored) assert.ok(a.get(`t${tag}:${i}`).equals(value(tag, i)), `t${tag}:${i} intact`);
    }
    assert.ok(refused > 0, 'the file system filled up: some write was refused');
    assert.ok(b.stats().evictions > 0, 'the evicting store made room instead');
    a.check();
    b.check();
    assert.match((() => { try { a.set('one more', value(0, 0)); } catch (e) { return e.message; } })() ?? '', /file system|maxBytes/);
  } finally {
    fsys.done();
  }
});

test('SIGKILL rounds while the file system is full: the store recovers and takes writes again', { timeout: 120_000 }, async (t) => {
  const fsys = tmpfs('6m');
  if (fsys.skip) return t.skip(fsys.skip);
  try {
    const file = path.join(fsys.at, 'k.kv');
    const store = openStore(file, { maxBytes: 4 << 20, onFull: 'evict' });
    // Another program takes half the file system after the store was made.
    fs.writeFileSync(path.join(fsys.at, 'other'), Buffer.alloc(3 << 20, 7));
    for (let i = 0; store.stats().evictions === 0; i++) store.set(`fill:${i}`, Buffer.alloc(32 << 10, 1));
    const { spawn } = require('node:child_process');
    for (let round = 0; round < 6; round++) {
      // The victim reports each write; killed after a number of them its round picks.
      const child = spawn(process.execPath, ['-e', `
        const s = require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)});
        for (let i = 0; ; i++) { s.set('v:' + (i % 50), Buffer.alloc((8 + (i % 7) * 9) << 10, i & 0xff)); process.stdout.write('.'); }
      `], { stdio: ['ignore', 'pipe', 'inherit'] });
      const exit = once(child, 'exit');
      const killAt = 20 + round * 37;
      let seen = 0;
      await new Promise((resolve) => child.stdout.on('data', (d) => {
        seen += d.length;
        if (seen >= killAt && child.exitCode === null && !child.killed) { child.kill('SIGKILL'); resolve(); }
      }));
      const [, signal] = await exit;
      assert.equal(signal, 'SIGKILL', `round ${round}: killed by us, not by a fault`);
      store.set(`after:${round}`, Buffer.alloc(16 << 10, round)); // takes over the lock if held
      store.check();
      assert.equal(store.get(`after:${round}`).length, 16 << 10);
    }
  } finally {
    fsys.done();
  }
});

test('deletes and sets on a full file system while the index would shrink: they work, and an evicting store evicts', { timeout: 120_000 }, async (t) => {
  for (const onFull of ['evict', 'throw']) {
    const fsys = tmpfs('8m'); // one each: this process keeps its mappings of a deleted file
    if (fsys.skip) return t.skip(fsys.skip);
    try {
      const s = openStore(path.join(fsys.at, 's.kv'), { maxBytes: 6 << 20, onFull });
      fs.writeFileSync(path.join(fsys.at, 'filler'), Buffer.alloc(4 << 20, 1)); // another program's
      const n = 124_900;
      for (let i = 0; i < n; i++) s.set(`k${i}`, 'v');
      // The top just under what the file system gave: the index's shrink cannot get a table.
      s.set(`k${n - 1}`, Buffer.alloc(4194304 - s.stats().bytesReserved - (100 << 10)));
      for (let i = 0; i < n - 200; i++) if (i % 16 !== 15) assert.equal(s.delete(`k${i}`), true);
      for (let i = 0; i < 100; i++) {
        s.set('k15', `w${i}`);
        try { s.set(`new${i}`, `w${i}`); } catch (e) { assert.equal(onFull, 'throw', e.message); assert.equal(e.code, 'ERR_KV_FULL'); }
      }
      assert.equal(s.get('k15'), 'w99');
      s.check();
    } finally {
      fsys.done();
    }
  }
});

test('a store file handle after the file was replaced: ERR_KV_UNLINKED, not another store', async () => {
  const file = newPath();
  const s = openStore(file, { maxBytes: 1 << 20 });
  s.set('who', 'old');
  const handle = s.handle;
  fs.renameSync(file, `${file}.old`); // a cleanup script replaces the file
  made(file);
  const w = worker(`
    try { kv.createStore(workerData); parentPort.postMessage('attached'); } catch (e) { parentPort.postMessage(e.code); }
  `, { workerData: handle });
  const [got] = await once(w, 'message');
  assert.equal(await exited(w), 0);
  assert.equal(got, 'ERR_KV_UNLINKED');
});

test('readOnly: writes throw ERR_KV_READ_ONLY, reads work and leave the file unchanged, no file is made', () => {
  const file = newPath();
  const w = openStore(file, { maxBytes: 1 << 20, onFull: 'evict' });
  for (let i = 0; i < 100; i++) w.set(`k${i}`, { i });
  const r = openStore(file, { readOnly: true });
  assert.notEqual(r, w, 'a read-only store is its own object');
  assert.equal(openStore(file, { readOnly: true }), r, 'and one per path, as writable ones');
  const before = fs.readFileSync(file);
  for (let round = 0; round < 3; round++) for (let i = 0; i < 100; i++) assert.deepEqual(r.get(`k${i}`), { i });
  assert.equal(r.size, 100);
  assert.equal([...r.entries()].length, 100);
  assert.ok(fs.readFileSync(file).equals(before), 'reads left a trace (eviction marks)');
  // The native codec's reads, expiresAt and a worker given the handle leave none either.
  const { spawnSync } = require('node:child_process');
  const other = spawnSync(process.execPath, ['-e', `
    const { openStore, createStore } = require(${JSON.stringify(path.join(__dirname, '..'))});
    const { Worker } = require('node:worker_threads');
    const s = openStore(${JSON.stringify(file)}, { readOnly: true, codec: 'native' });
    for (let round = 0; round < 3; round++) for (let i = 0; i < 100; i++) if (s.get('k' + i).i !== i || s.expiresAt('k' + i) !== null) process.exit(3);
    const w = new Worker('const { workerData } = require("node:worker_threads"); const s = require(' + JSON.stringify(${JSON.stringify(path.join(__dirname, '..'))}) + ').createStore(workerData); try { s.set("x", 1); process.exit(4) } catch (e) { process.exit(e.code === "ERR_KV_READ_ONLY" ? 0 : 5) }', { eval: true, workerData: s.handle });
    w.on('exit', (c) => process.exit(c));
  `]);
  assert.equal(other.status, 0, other.stderr.toString());
  assert.ok(fs.readFileSync(file).equals(before), 'the native codec, expiresAt or a worker left a trace');
  for (const write of [() => r.set('a', 1), () => r.delete('k1'), () => r.clear(), () => r.increment('n'),
    () => r.compareAndSet('k1', { i: 1 }, 2), () => r.update('k1', () => 2), () => r.getOrSet('g', () => 1),
    () => r.lock('l'), () => r.release('l')]) {
    assert.throws(write, { code: 'ERR_KV_READ_ONLY' });
  }
  assert.ok(fs.readFileSync(file).equals(before), 'a refused write changed the file');
  // Writes by others are seen.
  w.set('k1', 'new');
  assert.equal(r.get('k1'), 'new');
  assert.throws(() => openStore(newPath(), { readOnly: true }), { code: 'ENOENT' });
  assert.throws(() => openStore(file, { readOnly: true, create: true }), TypeError);
  assert.throws(() => openStore(file, { readOnly: 1 }), TypeError);
  r.close();
  w.close();
});
