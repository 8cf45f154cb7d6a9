#!/usr/bin/env node
// Bun and Deno (README, "Bun and Deno"), run by `.ci/run`:
//  1. the conformance suite (__test__/runtimes/conformance.mjs: every API family) under Node,
//     Bun and Deno, against this checkout;
//  2. the tarballs `npm run pack` made, installed in a fresh project as a user does, then used by
//     name under Bun and Deno: import and require, the sub-paths, Deno's `npm:` specifier, a
//     worker handed the store, and the CLI through `bun x` and `deno run npm:`, with no `node`
//     on the PATH (so that nothing falls back to Node).
// The runtimes come from their npm packages (`.ci/run` installs them outside the repository):
// SKV_RUNTIMES_PREFIX (default ~/.cache/skv-runtimes), or SKV_BUN / SKV_DENO for the binaries.
'use strict';
const { spawnSync, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const prefix = process.env.SKV_RUNTIMES_PREFIX ?? path.join(os.homedir(), '.cache', 'skv-runtimes');
const BUN = process.env.SKV_BUN ?? path.join(prefix, 'node_modules/@oven/bun-linux-x64/bin/bun');
const DENO = process.env.SKV_DENO ?? path.join(prefix, 'node_modules/@deno/linux-x64-glibc/deno');
const env = { ...process.env, DENO_NO_UPDATE_CHECK: '1', NO_COLOR: '1' };

for (const bin of [BUN, DENO]) {
  if (!fs.existsSync(bin)) {
    console.error(`runtimes-test: ${bin} is missing. Install the runtimes with\n` +
      `  npm install --no-save --prefix ${prefix} @oven/bun-linux-x64@1.4.5 @deno/linux-x64-glibc@2.9.6`);
    process.exit(1);
  }
}

let failures = 0;
function step(name, fn) {
  try {
    fn();
    console.log(`ok - ${name}`);
  } catch (err) {
    failures++;
    console.log(`not ok - ${name}\n  ${String(err.stack || err).split('\n').join('\n  ')}`);
  }
}

/** Runs `cmd args` (inheriting the output) and throws unless it exits 0 within `ms`. */
function run(cmd, args, { cwd = root, ms = 300_000, envs = env, capture = false } = {}) {
  const r = spawnSync(cmd, args, { cwd, env: envs, stdio: capture ? 'pipe' : 'inherit', encoding: 'utf8', timeout: ms });
  if (r.error) throw r.error;
  if (r.status !== 0) {
    throw new Error(`${path.basename(cmd)} ${args.join(' ')}: exit ${r.status} ${r.signal ?? ''}\n${r.stdout ?? ''}${r.stderr ?? ''}`);
  }
  return r.stdout;
}

const version = (bin) => execFileSync(bin, ['--version'], { env, encoding: 'utf8' }).split('\n')[0].trim();
console.log(`# bun ${version(BUN)}, ${version(DENO)}`);

// 1. The conformance suite.
const suite = path.join(root, '__test__', 'runtimes', 'conformance.mjs');
step('conformance suite under Node', () => run(process.execPath, [suite, root]));
step('conformance suite under Bun', () => run(BUN, [suite, root]));
step('conformance suite under Deno', () => run(DENO, ['run', '-A', suite, root]));

// 2. The installed tarballs, by name.
const dist = path.join(root, 'dist');
const tarballs = fs.existsSync(dist) ? fs.readdirSync(dist).filter((f) => f.endsWith('.tgz')).map((f) => path.join(dist, f)) : [];
if (!tarballs.some((f) => /shared-kv-store-\d[^/]*\.tgz$/.test(f))) {
  console.log('not ok - no dist/shared-kv-store-<version>.tgz: run `npm run pack` first');
  process.exit(1);
}
const project = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-runtimes-'));
fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'skv-runtimes', version: '1.0.0', private: true }));
step('npm install dist/*.tgz keyv in a fresh project', () => {
  run('npm', ['install', '--no-audit', '--no-fund', ...tarballs, 'keyv@^5.6.0'], { cwd: project, capture: true });
});

const FILES = {
  // Everything by name: ESM and CJS one instance, the sub-paths, a worker handed the store both
  // ways (`await store.ready`: on Deno the store attaches at the port's first dispatch).
  'main.mjs': `
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import kv, { createManager, openStore } from 'SPECIFIER';
import { KeyvSharedKVStore } from 'SPECIFIER/keyv';
import { createNearCache } from 'SPECIFIER/redis';
import Keyv from 'keyv';
const require = createRequire(import.meta.url);
assert.equal(require('shared-kv-store'), kv, 'import and require: one instance');
assert.equal(typeof require('shared-kv-store/keyv').KeyvSharedKVStore, 'function');
assert.equal(typeof createNearCache, 'function');
const manager = createManager();
manager.store.set('fromMain', [1, 2]);
for (const how of ['registerFork', 'workerData']) {
  const worker = new Worker(new URL('./worker.mjs', import.meta.url), { workerData: { how, kv: manager.handle } });
  if (how === 'registerFork') manager.registerFork(worker);
  const [seen] = await new Promise((resolve, reject) => {
    worker.once('message', (m) => resolve([m]));
    worker.once('error', reject);
  });
  assert.deepEqual(seen, [1, 2], how);
  assert.equal(manager.store.get('fromWorker:' + how), how);
}
const keyv = new Keyv({ store: new KeyvSharedKVStore({ name: 'by-name' }) });
await keyv.set('k', { v: 1 });
assert.deepEqual(await keyv.get('k'), { v: 1 });
const f = openStore(process.argv[2]);
f.set('runtime', process.argv[3]);
console.log('by name ok');
`,
  'worker.mjs': `
import { parentPort, workerData } from 'node:worker_threads';
import { createStore } from 'SPECIFIER';
const store = createStore(workerData.how === 'registerFork' ? parentPort : workerData.kv);
await store.ready;
store.set('fromWorker:' + workerData.how, workerData.how);
parentPort.postMessage(store.get('fromMain'));
`,
};
const write = (specifier) => {
  for (const [file, text] of Object.entries(FILES)) fs.writeFileSync(path.join(project, file), text.replaceAll('SPECIFIER', specifier));
};
// No node on the PATH: neither runtime may hand anything to Node.
const noNode = { ...env, PATH: (env.PATH || '').split(path.delimiter).filter((d) => !fs.existsSync(path.join(d, 'node'))).join(path.delimiter) };
const file = path.join(project, 'by-name.kv');
const cli = (argv) => run(argv[0], [...argv.slice(1)], { cwd: project, envs: noNode, capture: true, ms: 60_000 }).trim();
const bunCli = [BUN, 'x', '--bun', 'shared-kv-store'];
const denoCli = [DENO, 'run', '-A', 'npm:shared-kv-store'];

step('Bun: import and require by name, sub-paths, workers, Keyv', () => {
  write('shared-kv-store');
  run(BUN, ['main.mjs', file, 'bun'], { cwd: project, envs: noNode });
});
step('Bun: the CLI through bun x', () => {
  if (cli([...bunCli, 'get', file, 'runtime']) !== '"bun"') throw new Error('get');
  cli([...bunCli, 'set', file, 'cli', '"bun x"']);
  const dump = path.join(project, 'bun.dump');
  cli([...bunCli, 'dump', file, dump]);
  cli([...bunCli, 'restore', path.join(project, 'bun-restored.kv'), dump, '--max-bytes', String(1 << 20)]);
  if (cli([...bunCli, 'get', path.join(project, 'bun-restored.kv'), 'cli']) !== '"bun x"') throw new Error('restore');
});
step('Deno: the npm: specifier, require by name, sub-paths, workers, Keyv', () => {
  write('npm:shared-kv-store');
  run(DENO, ['run', '-A', 'main.mjs', file, 'deno'], { cwd: project, envs: noNode });
});
step('Deno: the CLI through deno run npm:shared-kv-store', () => {
  if (cli([...denoCli, 'get', file, 'runtime']) !== '"deno"') throw new Error('get');
  if (!/^ok: /.test(cli([...denoCli, 'check', file]))) throw new Error('check');
  const dump = path.join(project, 'deno.dump');
  cli([...denoCli, 'dump', file, dump]);
  cli([...denoCli, 'restore', path.join(project, 'deno-restored.kv'), dump, '--max-bytes', String(1 << 20)]);
  if (cli([...denoCli, 'get', path.join(project, 'deno-restored.kv'), 'cli']) !== '"bun x"') throw new Error('restore');
});

fs.rmSync(project, { recursive: true, force: true });
console.log(failures ? `${failures} failed` : 'all ok');
process.exit(failures ? 1 : 0);
