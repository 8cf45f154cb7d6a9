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
  fs.chownSync(file, 0, 0);
  assert.equal(openStore(file).get('k'), 'ours');
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
  for (const size of [512 << 10, 20 << 10]) {
    const file = newPath();
    made(file);
    fs.truncateSync(file, size);
    const bytes = fs.readFileSync(file);
    assert.throws(() => openStore(file), (e) => e.code === 'ERR_KV_TRUNCATED' &&
      e.message.includes(`${size} bytes long`) && e.message.includes(`${1 << 20} bytes long`));
    assert.ok(fs.readFileSync(file).equals(bytes), 'left untouched');
  }
});
