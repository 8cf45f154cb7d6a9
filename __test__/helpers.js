'use strict';
const path = require('node:path');
const { Worker } = require('node:worker_threads');
const { once } = require('node:events');

const PKG = path.join(__dirname, '..');

/** Starts a worker running `body`, with `kv` = require('shared-kv-store') in scope. */
function worker(body, options = {}) {
  const code = `'use strict';
const kv = require(${JSON.stringify(PKG)});
const { parentPort, workerData } = require('node:worker_threads');
${body}`;
  const w = new Worker(code, { eval: true, ...options });
  // Listen from the start, so exited(w) works even if the worker exits before it is called.
  w[EXIT] = exitOf(w);
  w[EXIT].catch(() => {}); // reported to whoever awaits exited(w)
  return w;
}

const EXIT = Symbol('exit');

function exitOf(w) {
  return Promise.race([once(w, 'exit'), once(w, 'error').then(([e]) => { throw e; })]).then(([code]) => code);
}

/** Resolves with the worker's exit code; rejects on an uncaught error in it. */
function exited(w) {
  return w[EXIT] ?? exitOf(w);
}

/** Deterministic PRNG (mulberry32) so failures reproduce. */
function rng(seed) {
  return () => {
    seed |= 0; seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A forked process that runs code against the store file at `file` (fixtures/peer.js):
 * `await child.run(code)` returns what the code returns; `await child.stop()` kills it (with
 * `signal`). `wait(promise, what)` wraps each wait for a message (a test's deadline).
 */
async function peer(file, { signal = 'SIGTERM', wait = (p) => p } = {}) {
  const { fork } = require('node:child_process');
  const child = fork(path.join(__dirname, 'fixtures', 'peer.js'), [file], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [first] = await wait(once(child, 'message'), 'the peer to start');
  if (first?.ready !== true) throw new Error(`peer: unexpected first message ${JSON.stringify(first)}`);
  let next = 0;
  child.run = async (code) => {
    const id = next++;
    child.send({ id, code });
    for (;;) {
      const [m] = await wait(once(child, 'message'), `the peer to run ${code}`);
      if (m.id !== id) continue;
      if (m.error !== undefined) throw new Error(`peer: ${m.error}`);
      return m.result;
    }
  };
  child.stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = once(child, 'exit');
      child.kill(signal);
      await gone;
    }
  };
  return child;
}

module.exports = { PKG, worker, exited, rng, peer };
