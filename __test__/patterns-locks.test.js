'use strict';
// listKeys / delete patterns (as the JS package documents them) and advisory locks.
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { createManager, createStore, openStore } = require('..');
const { worker, exited } = require('./helpers');

test('glob and /regex/ patterns in listKeys and delete, with special characters in keys', () => {
  const { store } = createManager();
  const keys = ['users:1', 'users:22', 'session:a', 'session:ab', 'cache:12', 'cache:1', 'user_7', 'user_x',
    'test_abc', 'a*b', 'a?b', 'axb', 'a.b', 'a+b', '(x)', '[y]', '^z$', 'p|q', '{r}', 'back\\slash', '/s/', 'ünï'];
  for (const k of keys) store.set(k, k);
  const list = (p) => store.listKeys(p).sort();
  assert.deepEqual(list('users:*'), ['users:1', 'users:22']);
  assert.deepEqual(list('session:?'), ['session:a']);
  assert.deepEqual(list('cache:??'), ['cache:12']);
  assert.deepEqual(list('/^user_\\d+$/'), ['user_7']);
  assert.deepEqual(list('/test_.+/'), ['test_abc']);
  assert.deepEqual(list('a?b'), ['a*b', 'a+b', 'a.b', 'a?b', 'axb'], '? matches one character');
  assert.deepEqual(list('a\\*b'), ['a*b'], 'a backslash escapes * and ?');
  for (const special of ['a.b', 'a+b', '(x)', '[y]', '^z$', 'p|q', '{r}', 'back\\slash']) {
    assert.equal(store.listKeys(special).length, 1, `${special} matches only itself`);
  }
  assert.deepEqual(list('ü*'), ['ünï']);
  assert.equal(store.listKeys().length, keys.length);
  assert.throws(() => store.listKeys('/(unclosed/'), { name: 'SyntaxError', message: /\/\(unclosed\// });

  assert.equal(store.delete('users:*'), true);
  assert.equal(store.delete('users:*'), false, 'nothing left to match');
  assert.equal(store.get('users:1'), undefined);
  assert.equal(store.delete('a\\*b'), true, 'an escaped glob deletes the literal key');
  assert.equal(store.get('a*b'), undefined);
  assert.equal(store.get('a?b'), 'a?b');
  assert.equal(store.delete('/^cache:/'), true);
  assert.deepEqual(list('cache:*'), []);
  assert.equal(store.delete('plain-missing'), false);
  // As documented (and as the JS package did): a string in slashes is a regex, so '/s/'
  // deletes every key containing an "s", the key '/s/' among them.
  assert.equal(store.delete('/s/'), true);
  assert.equal(store.get('session:a'), undefined);
  assert.equal(store.get('/s/'), undefined);
  assert.equal(store.get('axb'), 'axb');
});

test('locks exclude other threads: a read-then-write under the lock never loses an update', async () => {
  const manager = createManager();
  manager.store.set('counter', 0);
  const ws = [0, 1].map(() => worker(`
    const store = kv.createStore(workerData.kv);
    for (let i = 0; i < 500; i++) {
      if (!store.lock('counter', 5000)) throw new Error('lock timed out');
      try {
        const x = store.get('counter', true);
        store.set('counter', x + 1, { skipLock: true });
      } finally {
        if (!store.release('counter')) throw new Error('release failed');
      }
    }
  `, { workerData: { kv: manager.handle } }));
  assert.deepEqual(await Promise.all(ws.map(exited)), [0, 0]);
  assert.equal(manager.store.get('counter'), 1000);
  assert.deepEqual(manager.store.listKeys(), ['counter'], 'lock entries are hidden');
});

test('a lock held by a terminated worker expires after its lease; only the holder can release', async () => {
  const manager = createManager();
  const { store } = manager;
  const held = new Int32Array(new SharedArrayBuffer(4));
  const w = worker(`
    const store = kv.createStore(workerData.kv);
    if (!store.lock('job', 0, { lease: 300 })) throw new Error('could not lock');
    Atomics.store(workerData.held, 0, 1);
    for (;;) {} // stuck until terminated, never releasing
  `, { workerData: { kv: manager.handle, held } });
  while (Atomics.load(held, 0) === 0) await new Promise((r) => setTimeout(r, 5));
  assert.equal(store.lock('job', 0), false, 'held by the worker');
  assert.equal(store.release('job'), false, 'a thread that does not hold it cannot release it');
  assert.equal(store.lock('job', 0), false, 'still held after the refused release');
  await w.terminate();
  assert.equal(store.lock('job', 5000), true, 'the lease ran out'); // false after 5 s
  assert.equal(store.release('job'), true);
});

test('lock arguments are checked', () => {
  const { store } = createManager();
  assert.throws(() => store.lock(1), TypeError);
  assert.throws(() => store.lock('k', -1), RangeError);
  assert.throws(() => store.lock('k', 10, { lease: 0 }), RangeError);
  assert.throws(() => store.release(null), TypeError);
});

test('patterns, setMany/getMany, TTL and clear work across main and two workers', async () => {
  const name = 'cross-thread:' + process.pid;
  const store = createStore(name);
  store.setMany([['user:1', 1], ['user:2', 2], ['tmp:a', 'a'], ['tmp:b', 'b'], ['keep', true]]);
  store.set('brief', 'x', { ttl: 0.1 });
  const first = worker(`
    const store = kv.createStore(${JSON.stringify(name)});
    const users = store.listKeys('user:*').sort();
    const removed = store.delete('tmp:*');
    store.setMany([['fromWorker:1', 'w1'], ['fromWorker:2', 'w2']]);
    parentPort.postMessage({ users, removed });
  `);
  const firstExit = exited(first);
  const got = await new Promise((r) => first.once('message', r));
  await firstExit;
  assert.deepEqual(got, { users: ['user:1', 'user:2'], removed: true });
  assert.deepEqual(store.listKeys('tmp:*'), []);
  assert.deepEqual(store.getMany(['fromWorker:1', 'fromWorker:2']), ['w1', 'w2']);
  await new Promise((r) => setTimeout(r, 150));
  const second = worker(`
    const store = kv.createStore(${JSON.stringify(name)});
    const sawBrief = store.has('brief') || store.listKeys('brief').length > 0;
    const count = store.clear();
    parentPort.postMessage({ sawBrief, count });
  `);
  const secondExit = exited(second);
  const after = await new Promise((r) => second.once('message', r));
  await secondExit;
  assert.equal(after.sawBrief, false, 'the expired key is gone in the other thread too');
  assert.ok(after.count >= 5);
  assert.equal(store.size, 0, 'clear in a worker empties it for main');
  assert.deepEqual(store.listKeys(), []);
});

test('clear() deletes keys, not locks: a held lock stays held, getOrSet runs one loader, and it counts only keys', async () => {
  for (const kind of ['manager', 'named', 'file']) {
    const store = kind === 'manager' ? createManager().store
      : kind === 'named' ? createStore(`clear-locks-${process.pid}`)
        : openStore(path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'skv-clear-')), 's.kv'));
    store.set('k', 1);
    assert.equal(store.lock('job', 0), true);
    assert.equal(store.clear(), 1, `${kind}: one key, the lock not counted`);
    assert.equal(store.get('k'), undefined);
    assert.equal(store.lock('job', 0), false, `${kind}: still held after clear()`);
    assert.equal(store.release('job'), true, `${kind}: its holder releases it`);
    // A clear() while a loader runs: a second getOrSet waits for it, never loads again.
    let loads = 0;
    let finish;
    const first = store.getOrSet('g', () => { loads++; return new Promise((r) => { finish = r; }); });
    await new Promise((r) => setImmediate(r));
    store.clear();
    const second = store.getOrSet('g', () => { loads++; return 'second'; }, { timeout: 5000 });
    finish('first');
    assert.equal(await first, 'first');
    assert.equal(await second, 'first');
    assert.equal(loads, 1, `${kind}: one loader`);
    assert.equal(store.check().entries, 1);
  }
});

/**
 * The documented rules, written independently of index.js: which keys of `keys` a pattern
 * string matches. `/…/flags`: a regex. Containing `*` or `?`: a glob (`*` any run, `?` one
 * character, a backslash takes the next character literally). Otherwise one key, backslashes
 * included.
 */
function modelMatches(pattern, keys) {
  const regexForm = /^\/([\s\S]+)\/([dgimsuvy]*)$/;
  if (!/[*?]/.test(pattern) && !regexForm.test(pattern)) return keys.filter((k) => k === pattern);
  const m = regexForm.exec(pattern);
  if (m) {
    let re;
    try { re = new RegExp(m[1], m[2]); } catch { return null; } // a SyntaxError expected
    return keys.filter((k) => { re.lastIndex = 0; return re.test(k); });
  }
  const tokens = [];
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i];
    if (c === '\\' && i + 1 < pattern.length) tokens.push({ lit: pattern[++i] });
    else if (c === '*') tokens.push({ any: true });
    else if (c === '?') tokens.push({ one: true });
    else tokens.push({ lit: c });
  }
  const match = (k, t = 0, i = 0) => {
    if (t === tokens.length) return i === k.length;
    const tok = tokens[t];
    if (tok.any) {
      for (let j = i; j <= k.length; j++) if (match(k, t + 1, j)) return true;
      return false;
    }
    if (i >= k.length) return false;
    return (tok.one || tok.lit === k[i]) && match(k, t + 1, i + 1);
  };
  return keys.filter((k) => match(k));
}

test('patterns follow the documented rules: keys with \\ * ? [ / . used as literal keys and as patterns (listKeys, delete, watch) against a model', async () => {
  const { rng } = require('./helpers');
  const random = rng(2026);
  const alphabet = ['a', 'b', '\\', '*', '?', '[', '/', '.'];
  const word = (max) => Array.from({ length: Math.floor(random() * (max + 1)) }, () => alphabet[Math.floor(random() * alphabet.length)]).join('');
  const { store } = createManager();
  for (let round = 0; round < 300; round++) {
    // The documented ways to name one key: itself, where it is no pattern; a glob's escapes
    // where it holds * or ? (and does not look like a regex); else an anchored regex.
    const regexForm = /^\/[\s\S]+\/[dgimsuvy]*$/;
    const escape = (k) => {
      if (!/[*?]/.test(k) && !regexForm.test(k)) return k;
      const glob = k.replace(/[\\*?]/g, '\\$&');
      if (!regexForm.test(glob)) return glob;
      return `/^${k.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}$/`;
    };
    for (const k of store.listKeys()) store.delete(escape(k));
    assert.equal(store.size, 0, `round ${round}: every key deleted through its escape: ${JSON.stringify(store.listKeys())}`);
    const keys = [...new Set(Array.from({ length: 8 }, () => word(4)).filter((k) => k.length > 0))];
    for (const k of keys) store.set(k, k);
    // Patterns: random words, and the keys themselves used as patterns.
    for (const pattern of [...Array.from({ length: 6 }, () => word(5)).filter((p) => p.length > 0), ...keys]) {
      const want = modelMatches(pattern, keys);
      if (want === null) {
        assert.throws(() => store.listKeys(pattern), SyntaxError, pattern);
        continue;
      }
      assert.deepEqual(store.listKeys(pattern).sort(), want.sort(), `listKeys(${JSON.stringify(pattern)}) over ${JSON.stringify(keys)}`);
    }
    // delete of one key written as itself: exactly that key goes, when it is not a pattern.
    const plain = keys.find((k) => !/[*?]/.test(k) && !regexForm.test(k));
    if (plain !== undefined) {
      assert.equal(store.delete(plain), true, `delete(${JSON.stringify(plain)})`);
      assert.deepEqual(store.listKeys().sort(), keys.filter((k) => k !== plain).sort(), `delete(${JSON.stringify(plain)}) deleted only it`);
    }
  }
  // The reported cases.
  store.set('C:\\temp', 1);
  store.set('C:temp', 2);
  assert.equal(store.delete('C:\\temp'), true);
  assert.equal(store.get('C:\\temp'), undefined);
  assert.equal(store.get('C:temp'), 2, 'the other key untouched');
  store.set('a\\b', 3);
  assert.deepEqual(store.listKeys('a\\b'), ['a\\b']);
  assert.equal(store.delete('a\\b'), true);
  const told = [];
  const w = store.watch('a\\b', (key) => told.push(key));
  store.set('ab', 1);
  store.set('a\\b', 2);
  await new Promise((r) => setTimeout(r, 100));
  for (let i = 0; i < 100 && told.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  w.close();
  assert.deepEqual(told, ['a\\b'], 'watch of a key with a backslash: that key only');
});

test('locks are not entries: size and stats().entries count keys, maxEntries neither counts nor refuses locks', async () => {
  const { store } = createManager();
  assert.equal(store.lock('L', 0), true);
  let finish;
  const loading = store.getOrSet('g', () => new Promise((r) => { finish = r; }));
  await new Promise((r) => setImmediate(r));
  assert.deepEqual([store.size, store.stats().entries, store.stats().locks, [...store.keys()].length], [0, 0, 2, 0]);
  finish('v');
  assert.equal(await loading, 'v');
  assert.deepEqual([store.size, store.stats().locks, store.check().entries, store.check().locks], [1, 1, 1, 1]);
  store.release('L');
  for (const onFull of ['evict', 'throw']) {
    const s = createManager({ onFull, maxEntries: 3 }).store;
    for (const k of ['a', 'b', 'c']) assert.equal(s.lock(k, 0), true);
    s.set('x', 1); // three locks leave room for three keys
    assert.equal(s.lock('d', 0), true, `${onFull}: a lock is never refused for maxEntries`);
    s.set('y', 2);
    s.set('z', 3);
    assert.equal(s.size, 3);
    if (onFull === 'throw') assert.throws(() => s.set('w', 4), { code: 'ERR_KV_FULL' });
    else s.set('w', 4);
    assert.equal(s.size, 3);
    assert.equal(s.stats().locks, 4);
    const one = createManager({ onFull, maxEntries: 1 }).store;
    assert.equal(await one.getOrSet('new', () => 'loaded'), 'loaded', `${onFull}: getOrSet with maxEntries 1`);
  }
});
