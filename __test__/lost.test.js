'use strict';
// A store file truncated under running processes (src/fault.rs): no process dies of SIGBUS;
// every operation family, in the main thread and in a worker, ends in ERR_KV_LOST naming the
// path and the new size, and no read returns a wrong value. The cut comes while the child
// loops: the moment varies, the outcome may not.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { once } = require('node:events');
const { openStore } = require('..');

const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const dir = fs.mkdtempSync(path.join(base, 'skv-lost-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
const CHILD = path.join(__dirname, 'fixtures', 'cut.js');
const MAX = 4 << 20;
let files = 0;

/** A store file of 4 MiB holding k0..k1999 (values of ~1 KB: the data reaches past 1 MiB). */
function filled() {
  const file = path.join(dir, `store-${files++}.kv`);
  const s = openStore(file, { maxBytes: MAX });
  for (let i = 0; i < 2000; i++) s.set(`k${i}`, { i, key: `k${i}`, pad: 'x'.repeat(900) });
  s.close();
  return file;
}

async function cutUnder(family, codec, cut) {
  const file = filled();
  const child = spawn(process.execPath, [CHILD, file, family, codec], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exit = once(child, 'exit');
  let out = '';
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (d) => {
    out += d;
    if (out === 'ready\n') fs.truncateSync(file, cut); // both threads are looping
  });
  const [code, signal] = await exit;
  assert.equal(signal, null, `the child died of ${signal}`);
  assert.equal(code, 0, out);
  const lines = out.trim().split('\n');
  assert.equal(lines[0], 'ready');
  const result = JSON.parse(lines[1]);
  for (const thread of ['main', 'worker']) {
    const r = result[thread];
    assert.equal(r.error.code, 'ERR_KV_LOST', `${thread}: ${r.error.message}`);
    assert.ok(r.error.message.includes(file) && r.error.message.includes(`truncated to ${cut} bytes`), r.error.message);
    assert.equal(r.wrong, 0, `${thread} read wrong values`);
    assert.equal(r.after, 'ERR_KV_LOST', `${thread}: later calls`);
    if (family === 'watch') {
      assert.equal(r.told.lost, 1, `${thread}: the watcher is told 'lost' once`);
      assert.equal(r.told.waitFor, 'ERR_KV_LOST', `${thread}: waitFor rejects`);
    }
  }
  // The file is left as the cut left it; opening it says so.
  assert.equal(fs.statSync(file).size, cut);
  if (cut > 0) assert.throws(() => openStore(file), { code: 'ERR_KV_TRUNCATED' });
  fs.unlinkSync(file);
}

const CASES = [
  ['get', 'js', 0], ['get', 'js', 1 << 20], ['get', 'native', 0], ['get', 'native', 1 << 20],
  ['set', 'js', 0], ['set', 'js', 1 << 20],
  ['iterate', 'js', 0], ['iterate', 'js', 1 << 20],
  ['lock', 'js', 0],
  ['getOrSet', 'js', 0],
  ['watch', 'js', 0],
];
for (const [family, codec, cut] of CASES) {
  test(`${family} (${codec} codec) in two threads, file cut to ${cut} bytes mid-loop: ERR_KV_LOST, no signal`, () =>
    cutUnder(family, codec, cut));
}

test('a lost store is replaced by deleting the file and opening the path again', () => {
  const file = filled();
  const s = openStore(file);
  fs.truncateSync(file, 0);
  assert.throws(() => s.get('k1'), { code: 'ERR_KV_LOST' });
  fs.unlinkSync(file);
  const again = openStore(file, { maxBytes: MAX });
  assert.notEqual(again, s);
  again.set('k1', 'new');
  assert.equal(again.get('k1'), 'new');
  assert.throws(() => s.get('k1'), { code: 'ERR_KV_LOST' }, 'the old object stays lost');
  s.close();
  again.close();
});

test('the JS reader (no native call) ends in ERR_KV_LOST, never in a value or a miss', () => {
  const file = filled();
  const s = openStore(file); // nothing read yet: no read cache, every get goes to the JS reader
  // The header stays; the index and the values go: the reader would find empty slots, a miss.
  fs.truncateSync(file, 16384);
  assert.throws(() => s.get('k1999'), (e) => e.code === 'ERR_KV_LOST' && e.message.includes('truncated to 16384 bytes'));
  assert.throws(() => s.get('k0'), { code: 'ERR_KV_LOST' }, 'and so does every later read');
  s.close();
  fs.unlinkSync(file);
});

test('a value this thread cached throws ERR_KV_LOST too once the store is lost (its version words survived the cut)', () => {
  const file = path.join(dir, `store-${files++}.kv`);
  const s = openStore(file, { maxBytes: 1 << 20 });
  // Few keys: the index stays in the first 16 KiB, the values lie past it.
  for (let i = 0; i < 20; i++) s.set(`k${i}`, 'v'.repeat(10_000) + i);
  for (let round = 0; round < 3; round++) assert.equal(s.get('k0').slice(-1), '0'); // cached
  fs.truncateSync(file, 20480); // the header and the index stay
  assert.throws(() => s.get('k19'), { code: 'ERR_KV_LOST' }); // faults: the store is lost
  assert.throws(() => s.get('k0'), { code: 'ERR_KV_LOST' }, 'a cached value after the loss');
  // openStore(path) does not hand back the lost object: the file is refused as truncated.
  assert.throws(() => openStore(file), { code: 'ERR_KV_TRUNCATED' });
  s.close();
  fs.unlinkSync(file);
});
