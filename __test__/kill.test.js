'use strict';
// Kill rounds: a process writing to a store file is killed with SIGKILL at a random instant
// of a random operation (in-place rewrites, index and arena growth, deletes, 40 KiB+ values,
// locks), again and again. After each round: the survivor's operations finish within 1 s, the
// integrity check passes, every write the victim saw return is there, the interrupted one
// happened wholly or not at all, no value is torn, and a lock the victim held is free.
// The same again in an evicting store whose value sizes drift (kills land in eviction windows,
// compaction's moves, index growth and shrinking): there every entry present must be the last
// one written to its key (or the interrupted one), and absent ones were evicted.
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
const VICTIM = path.join(__dirname, 'fixtures', 'victim.js');

/** The victim's value for (key, seq, len) (as fixtures/victim.js): what a whole read equals. */
function expected(key, seq, len) {
  return { key, seq, body: Buffer.alloc(len, (seq * 31 + key.length) & 255) };
}

test(`${ROUNDS} rounds of SIGKILL at random instants leave a store with every returned write and no torn value`, { timeout: 600_000 }, () => killRounds(false));

test(`${ROUNDS} rounds of SIGKILL in an evicting store whose value sizes drift leave only last-written, whole values`, { timeout: 600_000 }, () => killRounds(true));

async function killRounds(evict) {
  const dir = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'skv-kill-'));
  const file = path.join(dir, 'store.kv');
  const store = openStore(file, evict ? { maxBytes: 8 << 20, onFull: 'evict' } : { maxBytes: 64 << 20 });
  const random = rng(42);
  /** key -> { seq, len } of the last returned set; the counter; whether the victim held L. */
  const model = new Map();
  let increments = 0;
  let interruptedInside = 0;
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const victim = spawn(process.execPath, [VICTIM, file, String(round + 1), evict ? 'evict' : 'throw'], { stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      victim.stdout.setEncoding('latin1').on('data', (d) => { out += d; });
      // Let it run a random while after its first operation, then kill it wherever it is.
      while (!out.includes('\n')) {
        await new Promise((r) => setTimeout(r, 1));
        assert.equal(victim.exitCode, null, 'the victim exited early');
      }
      await new Promise((r) => setTimeout(r, random() * 30));
      victim.kill('SIGKILL');
      const [code, signal] = await new Promise((r) => victim.on('close', (c, s) => r([c, s])));
      assert.equal(signal, 'SIGKILL', `round ${round}: the victim failed (exit ${code})`);

      // The survivor.
      const started = performance.now();
      store.set('survivor', round);
      assert.ok(store.lock('L', 0), `round ${round}: a lock the dead victim held is free`);
      store.release('L');
      const survived = performance.now() - started;
      assert.ok(survived < 1000, `round ${round}: the survivor waited ${survived} ms`);
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
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const c = store.check();
  const st = store.stats();
  if (evict) {
    assert.ok(c.entries <= model.size + 1, 'no entry the model does not know');
    assert.ok(st.evictions > 0 && st.moves > 0, `it evicted and moved entries: ${JSON.stringify(st)}`);
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
