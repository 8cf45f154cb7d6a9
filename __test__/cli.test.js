'use strict';
// The operator's command line, run as a subprocess on real store files (lib/cli.js).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const util = require('node:util');
const { spawn, spawnSync } = require('node:child_process');
const { once } = require('node:events');
const { openStore } = require('..');
const { fromTagged } = require('./tagged');

const BIN = path.join(__dirname, '..', 'bin', 'shared-kv-store.js');
const base = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
const dir = fs.mkdtempSync(path.join(base, 'skv-cli-'));
test.after(() => fs.rmSync(dir, { recursive: true, force: true }));
let files = 0;
const newPath = (ext = 'kv') => path.join(dir, `f-${files++}.${ext}`);

function cli(args, input) {
  const r = spawnSync(process.execPath, [BIN, ...args], { input, maxBuffer: 1 << 28 });
  assert.equal(r.signal, null);
  return { status: r.status, out: r.stdout.toString(), err: r.stderr.toString(), raw: r.stdout };
}

/** A store file holding `entries`, closed again (this process keeps no view of it). */
function made(entries, options) {
  const file = newPath();
  const s = openStore(file, { maxBytes: 1 << 20, ...options });
  for (const [k, v, o] of entries) s.set(k, v, o);
  s.close();
  return file;
}

test('--help, per-command help, and usage errors (exit 2 with the usage)', () => {
  const all = cli(['--help']);
  assert.equal(all.status, 0);
  for (const c of ['keys', 'get', 'set', 'delete', 'stats', 'check', 'watch', 'dump', 'restore']) {
    assert.match(all.out, new RegExp(`shared-kv-store ${c} FILE`));
    const one = cli([c, '--help']);
    assert.equal(one.status, 0, c);
    assert.match(one.out, new RegExp(`^Usage: shared-kv-store ${c} FILE`));
  }
  const none = cli([]);
  assert.equal(none.status, 2);
  assert.match(none.err, /Usage:/);
  const unknown = cli(['frobnicate']);
  assert.equal(unknown.status, 2);
  assert.match(unknown.err, /^shared-kv-store: ERR_KV_USAGE: unknown command 'frobnicate'\n/);
  assert.match(unknown.err, /shared-kv-store dump FILE/);
  const missing = cli(['get', 'only-a-file']);
  assert.equal(missing.status, 2);
  assert.match(missing.err, /^shared-kv-store: ERR_KV_USAGE: get takes 2 arguments, got 1\n/);
  const badFlag = cli(['set', 'f', 'k', '1', '--ttl', 'soon']);
  assert.equal(badFlag.status, 2);
  assert.match(badFlag.err, /--ttl takes a positive number/);
  assert.equal(cli(['--version']).out.trim(), require('../package.json').version);
});

test('an error is one line on stderr with its code, and exit 1', () => {
  const r = cli(['keys', path.join(dir, 'no-such.kv')]);
  assert.equal(r.status, 1);
  assert.match(r.err, /^shared-kv-store: ENOENT: .*no-such\.kv.*\n$/);
  const file = newPath();
  fs.writeFileSync(file, Buffer.alloc(1 << 16, 7));
  const notStore = cli(['stats', file]);
  assert.equal(notStore.status, 1);
  assert.match(notStore.err, /^shared-kv-store: ERR_KV_NOT_A_STORE: [^\n]*\n$/);
});

test('keys, get, set, delete and stats', () => {
  const file = made([['user:1', { name: 'a' }], ['user:2', [1, 2]], ['order:1', 'x'], ['m', new Map([[1, 2]])], ['n', 10n]]);
  assert.deepEqual(cli(['keys', file]).out.trim().split('\n').sort(), ['m', 'n', 'order:1', 'user:1', 'user:2']);
  assert.deepEqual(cli(['keys', file, 'user:*']).out.trim().split('\n').sort(), ['user:1', 'user:2']);
  assert.equal(cli(['get', file, 'user:1']).out, '{"name":"a"}\n');
  assert.equal(cli(['get', file, 'm']).out, `${util.inspect(new Map([[1, 2]]))}\n`);
  assert.equal(cli(['get', file, 'n']).out, '10n\n');
  const absent = cli(['get', file, 'nope']);
  assert.equal(absent.status, 1);
  assert.equal(absent.out, '');
  assert.match(absent.err, /^shared-kv-store: ERR_KV_NOT_FOUND: no key 'nope'/);

  assert.equal(cli(['set', file, 'cfg', '{"on":true,"n":[1,2.5]}']).status, 0);
  const before = Date.now();
  assert.equal(cli(['set', file, 'tmp', '"soon"', '--ttl', '60']).status, 0);
  const s = openStore(file);
  assert.deepEqual(s.get('cfg'), { on: true, n: [1, 2.5] });
  assert.equal(s.get('tmp'), 'soon');
  const at = s.expiresAt('tmp');
  assert.ok(at >= before + 60_000 && at <= Date.now() + 60_000, String(at - before));
  assert.equal(s.expiresAt('cfg'), null);
  const badJson = cli(['set', file, 'k', '{nope']);
  assert.equal(badJson.status, 2);
  assert.match(badJson.err, /ERR_KV_USAGE: the value is not JSON/);
  assert.equal(s.get('k'), undefined);

  assert.equal(cli(['delete', file, 'user:*']).out, '2\n');
  assert.equal(cli(['delete', file, 'order:1']).out, '1\n');
  assert.equal(cli(['delete', file, 'order:1']).out, '0\n');
  assert.equal(s.get('user:1'), undefined);
  const stats = JSON.parse(cli(['stats', file]).out);
  assert.equal(stats.entries, 4); // m, n, cfg, tmp
  assert.equal(stats.path, file);
  assert.equal(stats.hits, undefined, "this process's read cache is not reported");
  s.close();
});

test('commands that only read leave the file byte for byte as it was (an evicting store too)', () => {
  const entries = Array.from({ length: 300 }, (_, i) => [`k${i}`, { i, pad: 'x'.repeat(i) }]);
  const file = made(entries, { onFull: 'evict' });
  const before = fs.readFileSync(file);
  for (const args of [['keys', file], ['keys', file, 'k1*'], ['get', file, 'k7'], ['get', file, 'k7'], ['stats', file], ['dump', file, newPath('dump')]]) {
    assert.equal(cli(args).status, 0, args.join(' '));
  }
  assert.ok(fs.readFileSync(file).equals(before), 'the store file changed');
});

test('check: exit 0 with a summary; exit 1 naming the inconsistency of a corrupted file', () => {
  const file = made(Array.from({ length: 50 }, (_, i) => [`k${i}`, i]));
  const ok = cli(['check', file]);
  assert.equal(ok.status, 0);
  assert.match(ok.out, /^ok: 50 entries, \d+ bytes used/);
  // The live-entry counter (layout.rs H_LIVE, offset 40) no longer agrees with the index.
  const fd = fs.openSync(file, 'r+');
  fs.writeSync(fd, Buffer.from([49]), 0, 1, 40);
  fs.closeSync(fd);
  const bad = cli(['check', file]);
  assert.equal(bad.status, 1);
  assert.match(bad.err, /^shared-kv-store: ERR_KV_CORRUPTED: [^\n]+\n$/);
});

const VALUES = require('./vectors.json')
  .map((v) => fromTagged(v.value))
  .filter((v) => v !== undefined);

test('dump then restore keeps every value type exactly, and every expiry', () => {
  const now = Date.now();
  const entries = VALUES.map((v, i) => [`v${i}`, v, i % 3 === 0 ? { expiresAt: now + 3_600_000 + i } : undefined]);
  entries.push(['unicode ключ ✓', 'é'], ['', 'empty key']);
  const file = made(entries);
  const out = newPath('dump');
  const d = cli(['dump', file, out]);
  assert.equal(d.status, 0, d.err);
  // stdout is the default target: the same bytes but for the header's time.
  assert.ok(cli(['dump', file]).raw.length === fs.statSync(out).size);
  const target = newPath();
  const r = cli(['restore', target, out, '--max-bytes', String(1 << 20)]);
  assert.equal(r.status, 0, r.err);
  assert.match(r.err, new RegExp(`restored ${entries.length} entries`));
  const a = openStore(file);
  const b = openStore(target);
  assert.equal(b.size, entries.length);
  for (const [k] of entries) {
    const [x, y] = [b.get(k), a.get(k)];
    // (deepEqual tells no invalid Date from another: inspect does.)
    if (x instanceof Date && Number.isNaN(x.getTime())) assert.equal(util.inspect(x), util.inspect(y), k);
    else assert.deepEqual(x, y, k);
    assert.equal(b.expiresAt(k), a.expiresAt(k), k);
  }
  a.close();
  b.close();
  // From stdin too, into an existing store.
  const again = newPath();
  openStore(again, { maxBytes: 1 << 20 }).close();
  assert.equal(cli(['restore', again], fs.readFileSync(out)).status, 0);
  assert.equal(openStore(again).size, entries.length);
});

test('a key that expires between the dump and the restore stays expired', () => {
  // A dump made while 'short' was alive, restored after its moment: built directly, so that no
  // timer has to reach that moment (a slow machine would see it expire before the dump).
  const one = Buffer.from([0x01]);
  const dump = newPath('dump');
  fs.writeFileSync(dump, craft([['short', one, Date.now() - 1], ['long', one, Date.now() + 3_600_000], ['none', one, 0]]));
  const target = newPath();
  const r = cli(['restore', target, dump]);
  assert.equal(r.status, 0, r.err);
  assert.match(r.err, /restored 2 entries \(1 had expired since the dump\)/);
  const s = openStore(target);
  assert.equal(s.get('short'), undefined);
  assert.equal(s.get('long'), 1);
  assert.equal(s.get('none'), 1);
  s.close();
});

test('a dump of a newer format, or a damaged one, is refused and restores nothing', () => {
  const file = made([['a', 1], ['b', 2]]);
  const out = newPath('dump');
  cli(['dump', file, out]);
  const good = fs.readFileSync(out);
  const newer = Buffer.from(good);
  newer.writeUInt32LE(2, 8);
  const cases = [
    [newer, 'ERR_KV_DUMP_VERSION', /format version 2.*reads format 1/],
    [good.subarray(0, good.length - 10), 'ERR_KV_DUMP_FORMAT', /damaged or cut short/],
    [Buffer.concat([good.subarray(0, 40), Buffer.from([1]), good.subarray(41)]), 'ERR_KV_DUMP_FORMAT', /damaged/],
    [Buffer.from('not a dump at all'), 'ERR_KV_DUMP_FORMAT', /not a shared-kv-store dump/],
  ];
  for (const [bytes, code, message] of cases) {
    const target = newPath();
    const bad = newPath('dump');
    fs.writeFileSync(bad, bytes);
    const r = cli(['restore', target, bad]);
    assert.equal(r.status, 1);
    assert.match(r.err, new RegExp(`^shared-kv-store: ${code}: `));
    assert.match(r.err, message);
    assert.equal(fs.existsSync(target), false, 'no store was made for a refused dump');
  }
});

test('a dump of a store another process is writing is consistent key by key', async () => {
  const file = made([]);
  const writer = spawn(process.execPath, ['-e', `
    const s = require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)});
    let n = 0;
    for (let i = 0; i < 500; i++) s.set('k' + i, { i, n, pad: 'p'.repeat(i % 97) });
    process.stdout.write('ready\\n');
    const parent = process.ppid;
    for (;;) {
      n++; const i = n % 500; s.set('k' + i, { i, n, pad: 'p'.repeat((i + n) % 97) });
      if (n % 1000 === 0) {
        s.delete('k' + ((n / 1000) % 500));
        if (process.ppid !== parent) process.exit(1); // the test is gone: never loop on alone
      }
    }
  `], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = once(writer, 'exit');
  let d;
  try {
    await once(writer.stdout, 'data');
    const out = newPath('dump');
    d = await new Promise((resolve) => {
      const c = spawn(process.execPath, [BIN, 'dump', file, out], { stdio: 'inherit' });
      c.on('exit', resolve);
    });
    d = [d, out];
  } finally {
    writer.kill('SIGKILL');
    await exited;
  }
  const [code, out] = d;
  assert.equal(code, 0);
  const target = newPath();
  assert.equal(cli(['restore', target, out]).status, 0);
  const s = openStore(target);
  assert.ok(s.size > 400, String(s.size));
  for (const [k, v] of s.entries()) {
    const i = Number(k.slice(1));
    assert.equal(v.i, i, k);
    assert.equal(v.pad, 'p'.repeat(v.n === 0 ? i % 97 : (i + v.n) % 97), `${k}: a torn value`);
  }
  s.close();
});

test('watch prints another process\'s writes as they happen, and stops on SIGINT', async () => {
  const file = made([]);
  const w = spawn(process.execPath, [BIN, 'watch', file, 'job:*'], { stdio: ['ignore', 'pipe', 'pipe'] });
  const exited = once(w, 'exit');
  let out = '';
  w.stdout.setEncoding('utf8');
  await once(w.stderr, 'data'); // "watching …": the watcher is registered
  const seen = new Promise((resolve) => w.stdout.on('data', (d) => {
    out += d;
    if (out.includes('delete job:1\n')) resolve();
  }));
  try {
    const writer = spawnSync(process.execPath, ['-e', `
      const s = require(${JSON.stringify(path.join(__dirname, '..'))}).openStore(${JSON.stringify(file)});
      s.set('job:1', 1); s.set('other', 2); s.set('job:2', 3); s.delete('job:1');
    `]);
    assert.equal(writer.status, 0);
    await seen;
    assert.equal(out, 'set job:1\nset job:2\ndelete job:1\n');
  } catch (err) {
    w.kill('SIGKILL'); // never left running behind a failed test
    throw err;
  }
  w.kill('SIGINT');
  const [code, signal] = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0);
});

test('ERR_KV_LAYOUT names both versions and the commands that carry the data over', () => {
  for (const [version, advice] of [[10, /layout version 10.*dump FILE backup\.skvdump.*restore NEWFILE backup\.skvdump/], [5, /layout version 5.*made before stores could be dumped.*delete the file/]]) {
    const file = made([['a', 1]]);
    const fd = fs.openSync(file, 'r+');
    const v = Buffer.alloc(4);
    v.writeUInt32LE(version);
    fs.writeSync(fd, v, 0, 4, 8); // layout.rs H_VERSION
    fs.closeSync(fd);
    const r = cli(['keys', file]);
    assert.equal(r.status, 1);
    assert.match(r.err, /^shared-kv-store: ERR_KV_LAYOUT: /);
    assert.match(r.err, advice);
  }
});

test('delete removes what the pattern names and nothing more, and counts it', () => {
  const file = made([['a*b', 1], ['axb', 2], ['ayyb', 3], ['ab', 4], ['/x/', 5], ['box', 6]]);
  assert.equal(cli(['delete', file, 'a\\*b']).out, '1\n');
  assert.equal(cli(['delete', file, '/^\\/x\\/$/']).out, '1\n');
  assert.deepEqual(cli(['keys', file]).out.trim().split('\n').sort(), ['ab', 'axb', 'ayyb', 'box']);
  assert.equal(cli(['delete', file, 'a*b']).out, '3\n');
  assert.deepEqual(cli(['keys', file]).out.trim().split('\n'), ['box']);
});

test('keys with line breaks print as JSON strings; get shows big values whole', () => {
  const big = new Map(Array.from({ length: 300 }, (_, i) => [i, 'x'.repeat(i)]));
  const file = made([['two\nlines', 1], ['plain', 2], ['big', big]]);
  assert.deepEqual(cli(['keys', file]).out.trim().split('\n').sort(), ['"two\\nlines"', 'big', 'plain']);
  assert.equal(cli(['get', file, 'big']).out, `${util.inspect(big, { depth: null, breakLength: Infinity, maxArrayLength: Infinity, maxStringLength: Infinity })}\n`);
  assert.doesNotMatch(cli(['get', file, 'big']).out, /more items/);
});

test('--mode opens a store shared with a group; without it the file is refused', () => {
  const file = made([['k', 1]], { mode: 0o660 });
  const refused = cli(['keys', file]);
  assert.equal(refused.status, 1);
  assert.match(refused.err, /ERR_KV_UNSAFE_FILE/);
  assert.equal(cli(['keys', file, '--mode', '660']).out, 'k\n');
  assert.equal(cli(['keys', file, '--mode', 'rw']).status, 2);
});

/** A dump in format 1 holding `entries` ([key, value bytes, expires]), with a valid CRC. */
function craft(entries) {
  const zlib = require('node:zlib');
  const header = Buffer.from('{"format":1}');
  const parts = [Buffer.from('SKVDUMP\0', 'latin1'), Buffer.alloc(8)];
  parts[1].writeUInt32LE(1, 0);
  parts[1].writeUInt32LE(header.length, 4);
  parts.push(header);
  for (const [key, value, expires] of entries) {
    const k = Buffer.from(key);
    const r = Buffer.alloc(1 + 4 + k.length + 4 + value.length + 8);
    let at = r.writeUInt8(1, 0);
    at = r.writeUInt32LE(k.length, at);
    at += k.copy(r, at);
    at = r.writeUInt32LE(value.length, at);
    at += value.copy(r, at);
    r.writeDoubleLE(expires, at);
    parts.push(r);
  }
  const end = Buffer.alloc(9);
  end.writeDoubleLE(entries.length, 1);
  parts.push(end);
  const body = Buffer.concat(parts);
  const crc = Buffer.alloc(4);
  crc.writeUInt32LE(zlib.crc32(body) >>> 0);
  return Buffer.concat([body, crc]);
}

test('a dump with an entry no store could hold restores nothing, into a new store or an existing one', () => {
  const one = Buffer.from([0x01]); // msgpack 1
  const good = [['a', one, 0], ['b', one, 0]];
  const cases = [
    [[...good, ['c', Buffer.from([0xd4, 0x7f, 0x00]), 0]], /entry 3: its value does not decode/], // an extension no version knows
    [[...good, ['\u0000lock\u0000x', one, 0]], /entry 3: keys starting with/],
    [[...good, ['k'.repeat(20_000), one, 0]], /entry 3: its key is 20000 bytes long/],
    [[...good, ['c', one, 1.5]], /entry 3: its expiry 1.5/],
  ];
  const existing = made([['kept', 'as it was']]);
  const before = fs.readFileSync(existing);
  for (const [entries, message] of cases) {
    const dump = newPath('dump');
    fs.writeFileSync(dump, craft(entries));
    const target = newPath();
    const r = cli(['restore', target, dump]);
    assert.equal(r.status, 1, r.err);
    assert.match(r.err, /^shared-kv-store: ERR_KV_DUMP_FORMAT: /);
    assert.match(r.err, message);
    assert.equal(fs.existsSync(target), false);
    assert.equal(cli(['restore', existing, dump]).status, 1);
    assert.ok(fs.readFileSync(existing).equals(before), 'the existing store was written to');
  }
  // The crafted format itself is right: the good entries restore.
  const dump = newPath('dump');
  fs.writeFileSync(dump, craft(good));
  const target = newPath();
  assert.equal(cli(['restore', target, dump]).status, 0);
  assert.equal(cli(['get', target, 'b']).out, '1\n');
});

test('a restore a new store is too small for leaves no file; into an evicting store that must evict, it fails', () => {
  const file = made(Array.from({ length: 300 }, (_, i) => [`k${i}`, 'v'.repeat(2000)]));
  const dump = newPath('dump');
  assert.equal(cli(['dump', file, dump]).status, 0);
  const target = newPath();
  const small = cli(['restore', target, dump, '--max-bytes', String(1 << 16)]);
  assert.equal(small.status, 1);
  assert.match(small.err, /ERR_KV_FULL/);
  assert.equal(fs.existsSync(target), false, 'a half-restored store was left');
  assert.deepEqual(fs.readdirSync(dir).filter((f) => f.includes('.restore.tmp')), []);
  // A value longer than the whole new store: refused while checking, before it is read.
  const huge = made([['big', Buffer.alloc(100_000, 7)]]);
  const hugeDump = newPath('dump');
  assert.equal(cli(['dump', huge, hugeDump]).status, 0);
  const tinyTarget = newPath();
  const tiny = cli(['restore', tinyTarget, hugeDump, '--max-bytes', String(1 << 16)]);
  assert.equal(tiny.status, 1);
  assert.match(tiny.err, /ERR_KV_DUMP_FORMAT: dump: entry 1: its value is \d+ bytes long, more than the store's 65536 bytes can hold/);
  assert.equal(fs.existsSync(tinyTarget), false);
  const evicting = made([['important', 1]], { maxBytes: 1 << 18, onFull: 'evict' });
  const r = cli(['restore', evicting, dump]);
  assert.equal(r.status, 1);
  assert.match(r.err, /ERR_KV_FULL: the store evicted \d+ entries/);
});

test('dump never writes over the store itself, and replaces OUT only once complete', () => {
  const file = made([['a', 1]]);
  const before = fs.readFileSync(file);
  const r = cli(['dump', file, file]);
  assert.equal(r.status, 2);
  assert.match(r.err, /OUT is the store file itself/);
  assert.ok(fs.readFileSync(file).equals(before));
  const out = newPath('dump');
  fs.writeFileSync(out, 'the last good backup');
  assert.equal(cli(['dump', path.join(dir, 'missing.kv'), out]).status, 1);
  assert.equal(fs.readFileSync(out, 'utf8'), 'the last good backup');
  assert.equal(cli(['dump', file, out]).status, 0);
  assert.ok(fs.readFileSync(out).subarray(0, 7).equals(Buffer.from('SKVDUMP')));
});

test('progress goes to stderr when it is a terminal, and not otherwise', { skip: spawnSync('script', ['--version']).status !== 0 && 'no script(1) to give the command a terminal' }, () => {
  const file = made([['a', 1], ['b', 2]]);
  const out = newPath('dump');
  assert.equal(cli(['dump', file, out]).err, '', 'no progress into a pipe');
  // script(1) runs the command on a pseudo-terminal and copies what it writes there.
  const r = spawnSync('script', ['-qec', `${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} dump ${JSON.stringify(file)} ${JSON.stringify(out)}`, '/dev/null'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /\rdumped 2 entries\r?\n/);
});

test('restore reads a dump a chunk at a time: values across chunks and larger than one, damage anywhere caught', () => {
  // The CLI reads a MiB at a time (a dump of a store past 4 GiB is larger than any Buffer);
  // 7-byte chunks put every boundary inside some record here.
  const { checkDump, restoreDump } = require('../lib/dump');
  const { Encoder } = require('../lib/codec');
  const encoder = new Encoder();
  const entries = [['a', 'x'.repeat(100), 0], ['bb', { n: 1, s: 'y'.repeat(30) }, 0], ['', [1, 2, 3], Date.now() + 3_600_000], ['long', 'z'.repeat(5000), 0]];
  // Many small records, so that every field, the expiry included, straddles some chunk's end,
  // and some values are exactly a chunk long (61 encodes 'x' * 61 in 63 bytes, 64 with 62).
  for (let i = 0; i < 400; i++) entries.push([`n${i}`, i % 5 === 0 ? 'x'.repeat(i % 70) : i, i % 3 === 0 ? Date.now() + 3_600_000 + i : 0]);
  const encoded = (v) => {
    const n = encoder.encode(v); // (it may replace encoder.buf)
    return Buffer.from(encoder.buf.subarray(0, n));
  };
  const bytes = craft(entries.map(([k, v, e]) => [k, encoded(v), e]));
  const file = newPath('dump');
  fs.writeFileSync(file, bytes);
  const fd = fs.openSync(file, 'r');
  try {
    const source = { fd, size: bytes.length };
    for (const chunkBytes of [7, 13, 64, 100, 1 << 20]) {
      assert.equal(checkDump(source, { chunkBytes }).count, entries.length);
      const got = new Map();
      const store = { set: (k, v, o) => got.set(k, [v, o?.expiresAt ?? 0]) };
      assert.equal(restoreDump(store, source, { chunkBytes }).restored, entries.length);
      for (const [k, v, e] of entries) assert.deepEqual(got.get(k), [v, e], `${k} with chunks of ${chunkBytes}`);
    }
  } finally {
    fs.closeSync(fd);
  }
  // A byte flipped anywhere past the magic is a checksum error, read from a file or a Buffer.
  for (let at = 8; at < bytes.length; at += 97) {
    const bad = Buffer.from(bytes);
    bad[at] ^= 0x40;
    fs.writeFileSync(file, bad);
    const fd2 = fs.openSync(file, 'r');
    try {
      for (const source of [{ fd: fd2, size: bad.length }, bad]) {
        assert.throws(() => checkDump(source, { chunkBytes: 7 }),
          (e) => (e.code === 'ERR_KV_DUMP_FORMAT' && /checksum/.test(e.message)) || (at < 12 && e.code === 'ERR_KV_DUMP_VERSION'), `byte ${at}`);
      }
    } finally {
      fs.closeSync(fd2);
    }
  }
});

test('a dump that changes between the check and the restore restores nothing: noticed by its size, times, or its end', () => {
  const { openDump } = require('../lib/cli');
  const { checkDump, restoreDump } = require('../lib/dump');
  const one = Buffer.from([0x01]);
  const bytes = craft(Array.from({ length: 50 }, (_, i) => [`k${i}`, one, 0]));
  const file = newPath('dump');
  fs.writeFileSync(file, bytes);
  const dump = openDump(file);
  try {
    assert.equal(checkDump(dump).count, 50);
    assert.equal(dump.changed(), false);
    fs.appendFileSync(file, 'x');
    assert.equal(dump.changed(), true); // the CLI refuses here, before it writes anything
    // Cut under a restore already running: it stops with a coded error where the file ends.
    fs.truncateSync(file, 200);
    const set = [];
    assert.throws(() => restoreDump({ set: (k) => set.push(k) }, dump, { checked: { header: {} } }), { code: 'ERR_KV_DUMP_CHANGED' });
    assert.ok(set.length < 50);
  } finally {
    dump.close();
  }
  // Rewritten in place, same size and a value that still decodes: found by the CRC at the end.
  fs.writeFileSync(file, bytes);
  const again = openDump(file);
  try {
    checkDump(again);
    const changed = Buffer.from(bytes);
    changed[16 + 12 + 1 + 4 + 2 + 4] = 0x41; // k0's value: 1 becomes 65
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, changed, 0, changed.length, 0);
    fs.closeSync(fd);
    const got = new Map();
    assert.throws(() => restoreDump({ set: (k, v) => got.set(k, v) }, again, { checked: { header: {} } }), { code: 'ERR_KV_DUMP_CHANGED' });
    assert.equal(got.get('k0'), 65, 'the changed byte was what it read');
  } finally {
    again.close();
  }
  // A key length past the store's limit is refused before the key is read.
  const long = craft([['k'.repeat(100), one, 0]]);
  assert.throws(() => checkDump(long, { maxKeyBytes: 10 }), { code: 'ERR_KV_DUMP_FORMAT', message: /entry 1: its key is 100 bytes long, more than the store's 10/ });
  // So is a value length past what the store can hold (before the value is read).
  const big = craft([['k', Buffer.alloc(1000, 0xc0), 0]]);
  assert.throws(() => checkDump(big, { maxValueBytes: 999 }), { code: 'ERR_KV_DUMP_FORMAT', message: /entry 1: its value is 1000 bytes long, more than the store's 999 bytes/ });
  assert.throws(() => checkDump(big, { maxValueBytes: 1000 }), { code: 'ERR_KV_DUMP_FORMAT', message: /does not decode/ }, 'at the bound it is read (and checked)');
});
