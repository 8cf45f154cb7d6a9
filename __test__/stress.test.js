'use strict';
const test = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFile } = require('node:child_process');
const { makeValue, tornReason, checkKey } = require('../stress/model');

/** Runs stress/run.js with `args`; resolves with what it printed, rejects if it failed. */
function stress(...args) {
  const script = path.join(__dirname, '..', 'stress', 'run.js');
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [script, ...args], (err, stdout, stderr) => {
      if (err) reject(new Error(`stress failed (${err.code}):\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

const ABSENT = [{ w: -1, n: 0, start: 0, end: 0 }];
const w = (writer, n, start, end) => ({ w: writer, n, start, end });

test('the model accepts what a correct store may return', () => {
  const writes = [w(1, 1, 1, 2), w(2, 1, 3, 4)];
  const reads = [
    w(2, 1, 5, 6), // the latest
    w(1, 1, 3.5, 6), // overlaps the write that replaced it
    w(2, 1, 2.5, 3.5), // overlaps its own write
    w(-1, 0, 0.5, 1.5), // absent before the first write ended
  ];
  assert.deepStrictEqual(checkKey('a', writes, reads, ABSENT).errors, []);
});

test('the model catches stale, early, invented and wrongly absent reads', () => {
  const writes = [w(1, 1, 1, 2), w(2, 1, 3, 4), w(-1, 7, 10, 11)];
  const bad = [
    [w(1, 1, 5, 6), /overwritten/],
    [w(2, 1, 0.2, 0.5), /before it began/],
    [w(3, 9, 5, 6), /no thread made/],
    [w(-1, 0, 5, 6), /returned nothing/],
    [w(2, 1, 12, 13), /overwritten/], // deleted at 10..11
  ];
  for (const [read, message] of bad) {
    const { errors } = checkKey('a', writes, [read], ABSENT);
    assert.strictEqual(errors.length, 1, JSON.stringify(read));
    assert.match(errors[0], message);
  }
  // After the delete, absent is right; with absentAllowed (TTL keys) it always is.
  assert.deepStrictEqual(checkKey('a', writes, [w(-1, 0, 12, 13)], ABSENT).errors, []);
  assert.deepStrictEqual(checkKey('a', writes, [w(-1, 0, 5, 6)], ABSENT, { absentAllowed: true }).errors, []);
});

test('the model carries only writes that later rounds may still read', () => {
  const { carried } = checkKey('a', [w(1, 1, 1, 4), w(2, 1, 2, 3), w(3, 1, 5, 6)], [], ABSENT);
  assert.deepStrictEqual(carried, [w(3, 1, 5, 6)]);
  const overlap = checkKey('a', [w(1, 1, 1, 4), w(2, 1, 2, 3)], [], ABSENT).carried;
  assert.deepStrictEqual(overlap.map((x) => x.w).sort(), [1, 2]); // either may have landed last
});

test('the model spots torn and misplaced values', () => {
  const v = makeValue(2, 5, 'k1', 30);
  assert.strictEqual(tornReason(v, 'k1'), null);
  assert.match(tornReason(v, 'k2'), /holds key/);
  assert.match(tornReason({ ...v, body: v.body.slice(1) }, 'k1'), /body/);
  assert.match(tornReason({ ...v, body: makeValue(3, 5, 'k1', 30).body }, 'k1'), /body/);
  assert.match(tornReason(7, 'k1'), /not an object/);
});

test('a short stress run: two workers and the main thread, no error, accounting back to the index', async () => {
  const out = await stress('--seconds', '3', '--workers', '2', '--seed', '7');
  assert.match(out, /^errors: 0$/m);
  const ops = Number(/^ops: (\d+)/m.exec(out)[1]);
  assert.ok(ops > 10_000, `the run did work: ${out}`);
  assert.match(out, /after: 0 entries, (\d+) bytes in use = index \1,/);
});

test('a short stress run across processes: a worker, two processes and the main thread on a store file', async () => {
  const out = await stress('--seconds', '3', '--workers', '1', '--processes', '2', '--seed', '11');
  assert.match(out, /^stress: 1 workers \+ 2 processes/m);
  assert.match(out, /^errors: 0$/m);
  assert.ok(Number(/^ops: (\d+)/m.exec(out)[1]) > 10_000, `the run did work: ${out}`);
  assert.match(out, /after: 0 entries, (\d+) bytes in use = index \1,/);
});

test('a short stress run with eviction (half the keys fit): no stale, torn or invented value, accounting back to the index', async () => {
  const out = await stress('--seconds', '3', '--workers', '1', '--processes', '1', '--evict', '--seed', '5');
  assert.match(out, /^errors: 0$/m);
  assert.ok(Number(/^evictions: (\d+)/m.exec(out)[1]) > 1000, out);
  assert.match(out, /after: 0 entries, (\d+) bytes in use = index \1,/);
});

test('a short stress run with eviction and value sizes drifting every round (4 MiB): nothing refused, stale, torn or invented', async () => {
  const out = await stress('--seconds', '4', '--workers', '1', '--processes', '1', '--evict', '--drift', '--seed', '3');
  assert.match(out, /^errors: 0$/m); // a refused write is an error too
  assert.match(out, /^stress: .* 4 rounds/m);
  // (64 keys into 32 entries: any machine evicts from the first round on.)
  assert.ok(Number(/^evictions: (\d+)/m.exec(out)[1]) > 100, out);
  assert.match(out, /after: 0 entries, (\d+) bytes in use = index \1,/);
});

test('a short stress run watched by another thread: every event of a key the run wrote, each counter\'s sets told exactly once', async () => {
  const out = await stress('--seconds', '3', '--workers', '1', '--processes', '1', '--watch', '--seed', '13');
  assert.match(out, /^errors: 0$/m);
  assert.ok(Number(/^watch: (\d+) events told/m.exec(out)[1]) > 10_000, out);
  assert.match(out, /after: 0 entries, (\d+) bytes in use = index (\d+) \+ change log (\d+),/);
});
