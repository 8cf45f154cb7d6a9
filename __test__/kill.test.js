'use strict';
// Kill rounds: a process writing to a store file is killed with SIGKILL inside a random
// operation (in-place rewrites, index and arena growth, deletes, 40 KiB+ values, locks), again
// and again. After each round: the survivor's operations complete (a dead holder's lock is
// taken over, not waited out), the integrity check passes, every write the victim saw return
// is there, the interrupted one happened wholly or not at all, no value is torn, and a lock the
// victim held is free. A victim's error fails the round.
// The same again in an evicting store whose value sizes drift (kills land in eviction windows,
// compaction's moves, index growth and shrinking): there every entry present must be the last
// one written to its key (or the interrupted one), and absent ones were evicted. That store is
// filled past maxBytes first, so the victims' writes evict whatever the machine's speed.
// Each victim is killed once it has begun a number of operations the round's seed picks, not
// after a time.
// `KILL_ROUNDS=1000 node --test __test__/kill.test.js` runs longer (npm test runs 100 of each).
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawn } = require('node:child_process');
const { openStore } = require('..');
const { rng } = require('./helpers');

const ROUNDS = Number(process.env.KILL_ROUNDS ?? 100);
/** A victim is killed once it has begun 1 to this many operations. */
const MAX_OPS = 300;
const DRIFT = [100, 3000, 40000, 700, 200000, 10000];
/** The writer lock word's offset in a store file. */
const LOCK_WORD_AT = require('../binding.js').layout().writeLock;
const VICTIM = path.join(__dirname, 'fixtures', 'victim.js');

/** The victim's value for (key, seq, len) (as fixtures/victim.js): what a whole read equals. */
function expected(key, seq, len) {
  return { key, seq, body: Buffer.alloc(len, (seq * 31 + key.length) & 255) };
}

test(`${ROUNDS} rounds of SIGKILL inside random operations leave a store with every returned write and no torn value`, { timeout: 600_000 }, () => killRounds(false));

test(`${ROUNDS} rounds of SIGKILL in an evicting store whose value sizes drift leave only last-written, whole values`, { timeout: 600_000 }, () => killRounds(true));

async function killRounds(evict) {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-kill-'));
  const file = path.join(dir, 'store.kv');
  const store = openStore(file, evict ? { maxBytes: 8 << 20, onFull: 'evict' } : { maxBytes: 64 << 20 });
  const random = rng(42);
  const fd = fs.openSync(file, 'r');
  const lockWord = Buffer.alloc(8);
  /** key -> { seq, len } of the last returned set; the counter; whether the victim held L. */
  const model = new Map();
  let increments = 0;
  let interruptedInside = 0;
  let prefilled = 0;
  if (evict) {
    // Past maxBytes with the victims' drifting sizes: every round's writes then evict.
    let seq = 0;
    for (const size of DRIFT) {
      for (let written = 0; written < 8 << 20; written += size) {
        const key = `key:${seq % 600}`;
        seq++;
        store.set(key, expected(key, seq, size));
        model.set(key, { seq, len: size });
      }
    }
    prefilled = store.stats().evictions;
    assert.ok(prefilled > 0, 'the prefill evicted');
  }
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const victim = spawn(process.execPath, [VICTIM, file, String(round + 1), evict ? 'evict' : 'throw'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      victim.stdout.setEncoding('latin1').on('data', (d) => { out += d; });
      // Kill it once it has begun `ops` operations, wherever it then is.
      const ops = 1 + Math.floor(random() * MAX_OPS);
      while ((out.match(/^B /gm)?.length ?? 0) < ops && !/^X /m.test(out)) {
        await new Promise((r) => setImmediate(r));
        assert.equal(victim.exitCode, null, 'the victim exited early');
      }
      // On odd rounds, also wait (a bounded number of looks) until it holds the writer lock,
      // so that most of those kills land inside a write: the file's page is the mapping's.
      for (let look = 0; round % 2 === 1 && look < 100_000; look++) {
        fs.readSync(fd, lockWord, 0, 8, LOCK_WORD_AT);
        if (lockWord.readBigUInt64LE(0) !== 0n) break;
      }
      victim.kill('SIGKILL');
      const [code, signal] = await new Promise((r) => victim.on('close', (c, s) => r([c, s])));
      const failed = out.split('\n').find((line) => line.startsWith('X '));
      assert.equal(failed, undefined, `round ${round}: the victim's operation failed`);
      assert.equal(signal, 'SIGKILL', `round ${round}: the victim failed (exit ${code})`);

      // The survivor: a dead holder's lock is taken over (waiting it out would throw
      // ERR_KV_TIMEOUT), and a lock the victim held is free.
      store.set('survivor', round);
      assert.ok(store.lock('L', 0), `round ${round}: a lock the dead victim held is free`);
      store.release('L');
      store.check();

      // Replay what returned; the last begun operation may be cut short.
      const lines = out.split('\n');
      lines.pop(); // a partial last line is not a report
      let inflight;
      for (const line of lines) {
        if (line.startsWith('B ')) inflight = line.slice(2).split(' ');
        else if (line === 'E') {
          apply(inflight);
          inflight = undefined;
        }
      }
      const matches = () => {
        if (evict) {
          return store.listKeys().every((key) => {
            if (key === 'survivor') return true;
            const v = store.get(key);
            return v !== undefined && model.get(key)?.seq === v.seq && model.get(key).len === v.body.length;
          });
        }
        if ((store.get('n') ?? 0) !== increments) return false;
        for (const [key, { seq, len }] of model) {
          const v = store.get(key);
          if (v === undefined || v.seq !== seq || v.body.length !== len) return false;
        }
        return store.listKeys().filter((k) => k !== 'survivor' && k !== 'n').length === model.size;
      };
      if (!matches()) {
        assert.ok(inflight !== undefined, `round ${round}: a write that returned is lost`);
        apply(inflight);
        interruptedInside++;
        assert.ok(matches(), `round ${round}: after an interrupted ${inflight.join(' ')}, the store is neither before nor after it`);
      }
      // No value is torn: every stored value is exactly what its writer wrote.
      for (const [key, v] of store.entries()) {
        if (key === 'survivor' || key === 'n') continue;
        assert.deepEqual(v, expected(key, v.seq, v.body.length), `round ${round}: torn value under ${key}`);
      }
    }
  } finally {
    fs.closeSync(fd);
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const c = store.check();
  const st = store.stats();
  if (evict) {
    assert.ok(c.entries <= model.size + 1, 'no entry the model does not know');
    assert.ok(st.evictions > prefilled && st.moves > 0, `the victims evicted, and entries moved: ${JSON.stringify(st)}`);
  } else {
    assert.equal(c.entries, model.size + 1 + (increments > 0 ? 1 : 0));
  }
  assert.ok(st.recoveries > 0, 'no kill landed inside a write: the test proved nothing');
  console.log(`# ${ROUNDS} kills${evict ? ' (evicting, drifting sizes)' : ''}; ${interruptedInside} cut an operation short and it happened wholly; ${st.recoveries} lock takeovers with recovery; ${st.evictions} evictions, ${st.moves} moves`);

  function apply(op) {
    if (op === undefined) return;
    const [kind, key, seq, len] = op;
    if (kind === 'set') model.set(key, { seq: Number(seq), len: Number(len) });
    else if (kind === 'del') model.delete(key);
    else if (kind === 'inc') increments++;
    else if (kind === 'clear') {
      model.clear();
      increments = 0;
    }
  }
}
