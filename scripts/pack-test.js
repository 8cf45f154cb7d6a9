#!/usr/bin/env node
// Installs the tarballs of `npm run pack` (dist/*.tgz) the way a user does, in a fresh project
// with no Rust toolchain on PATH, and checks the package works there: from the main thread and
// from a worker, by require and by import. Then installs again without optional dependencies
// and checks the error names the platform and says what to do. Exits non-zero on any failure.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');
const tarballs = fs.existsSync(dist) ? fs.readdirSync(dist).filter((f) => f.endsWith('.tgz')).map((f) => path.join(dist, f)) : [];
const results = [];
function check(name, fn) {
  try {
    fn();
    results.push(true);
    console.log(`ok - ${name}`);
  } catch (err) {
    results.push(false);
    console.log(`not ok - ${name}\n  ${String(err.stack || err).split('\n').join('\n  ')}`);
  }
}

// A user's environment: no cargo or rustc on PATH, no npm_* variables from an enclosing `npm run`.
const isExe = (file) => { try { fs.accessSync(file, fs.constants.X_OK); return true; } catch { return false; } };
const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
env.PATH = (process.env.PATH || '').split(path.delimiter)
  .filter((dir) => dir && !isExe(path.join(dir, 'cargo')) && !isExe(path.join(dir, 'rustc'))).join(path.delimiter);
// Node itself stays reachable even if it lived next to cargo.
env.PATH = [path.dirname(process.execPath), env.PATH].join(path.delimiter);
const npmCli = process.env.npm_execpath && fs.existsSync(process.env.npm_execpath) ? process.env.npm_execpath : null;
const npm = (args, cwd) => npmCli
  ? execFileSync(process.execPath, [npmCli, ...args], { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  : execFileSync('npm', args, { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const node = (file, cwd) => execFileSync(process.execPath, [file], { cwd, env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], timeout: 60_000 });

function project(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `skv-${name}-`));
  fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: `skv-${name}`, version: '1.0.0', private: true }));
  return dir;
}

const FILES = {
  'main.cjs': `
const assert = require('node:assert/strict');
const { Worker } = require('node:worker_threads');
const { createManager } = require('shared-kv-store');
const manager = createManager();
const store = manager.store;
assert.equal(store.set('fromMain', { n: 1, s: 'main' }), true);
assert.deepEqual(store.get('fromMain'), { n: 1, s: 'main' });
const worker = new Worker(require('node:path').join(__dirname, 'worker.cjs'));
manager.registerFork(worker);
worker.once('message', (seen) => {
  assert.deepEqual(seen, { n: 1, s: 'main' });
  assert.deepEqual(store.get('fromWorker'), { via: 'require' });
  console.log('cjs ok');
});
worker.once('error', (e) => { console.error(e); process.exitCode = 1; });
`,
  'worker.cjs': `
const { parentPort } = require('node:worker_threads');
const { createStore } = require('shared-kv-store');
const store = createStore(parentPort);
store.set('fromWorker', { via: 'require' });
parentPort.postMessage(store.get('fromMain'));
`,
  'main.mjs': `
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import kv, { createManager, createStore, openStore, SharedKVStore, Manager, codec } from 'shared-kv-store';
import { createRequire } from 'node:module';
const cjs = createRequire(import.meta.url)('shared-kv-store');
assert.equal(createManager, cjs.createManager, 'one instance for import and require');
assert.equal(kv, cjs);
for (const f of [createStore, openStore, SharedKVStore, Manager]) assert.equal(typeof f, 'function');
assert.equal(typeof codec.decode, 'function');
const manager = createManager();
const store = manager.store;
store.set('fromMain', [1, 2, 3]);
assert.deepEqual(store.get('fromMain'), [1, 2, 3]);
const worker = new Worker(new URL('./worker.mjs', import.meta.url));
manager.registerFork(worker);
const [seen] = await new Promise((resolve, reject) => {
  worker.once('message', (m) => resolve([m]));
  worker.once('error', reject);
});
assert.deepEqual(seen, [1, 2, 3]);
assert.deepEqual(store.get('fromWorker'), { via: 'import' });
console.log('esm ok');
`,
  'worker.mjs': `
import { parentPort } from 'node:worker_threads';
import { createStore } from 'shared-kv-store';
const store = createStore(parentPort);
store.set('fromWorker', { via: 'import' });
parentPort.postMessage(store.get('fromMain'));
`,
};

const host = `${process.platform}-${process.arch}`;
const mainTgz = tarballs.find((f) => /shared-kv-store-\d[^/]*\.tgz$/.test(path.basename(f)));
check('dist/ has the main package and a platform package for this platform', () => {
  if (!mainTgz) throw new Error(`no dist/shared-kv-store-<version>.tgz (run \`npm run pack\`); found ${tarballs.map((f) => path.basename(f))}`);
  if (!tarballs.some((f) => path.basename(f).startsWith(`shared-kv-store-${host}`))) {
    throw new Error(`no platform package for ${host} in dist/`);
  }
});
check('cargo is not on the PATH the install uses', () => {
  for (const dir of env.PATH.split(path.delimiter)) {
    if (isExe(path.join(dir, 'cargo'))) throw new Error(`cargo in ${dir}`);
  }
});

let installed;
if (mainTgz) {
  installed = project('install');
  check('npm install dist/*.tgz succeeds (the other platforms\' optional packages are skipped)', () => {
    npm(['install', '--no-audit', '--no-fund', ...tarballs], installed);
  });
  const modules = path.join(installed, 'node_modules');
  check('the main package holds no binary and no Rust source; the platform package holds the binary', () => {
    const files = fs.readdirSync(path.join(modules, 'shared-kv-store'), { recursive: true });
    const bad = files.filter((f) => f.endsWith('.node') || f.startsWith('src') || f.endsWith('.rs'));
    if (bad.length) throw new Error(`unexpected in the main package: ${bad}`);
    const platform = fs.readdirSync(modules).filter((d) => d.startsWith(`shared-kv-store-${host}`));
    if (platform.length !== 1) throw new Error(`expected one shared-kv-store-${host}* package, found ${platform}`);
    if (!fs.readdirSync(path.join(modules, platform[0])).some((f) => f.endsWith('.node'))) throw new Error('no .node in it');
  });
  for (const [file, text] of Object.entries(FILES)) fs.writeFileSync(path.join(installed, file), text);
  check('require: main thread and a worker share the store', () => {
    const out = node('main.cjs', installed);
    if (!out.includes('cjs ok')) throw new Error(`output: ${out}`);
  });
  check('import: named exports, default export; main thread and a worker share the store', () => {
    const out = node('main.mjs', installed);
    if (!out.includes('esm ok')) throw new Error(`output: ${out}`);
  });
  check('the command line: `npx shared-kv-store` sets, gets and dumps a store file', () => {
    const file = path.join(installed, 'cli.kv');
    const npx = (...args) => npm(['exec', '--no', '--', 'shared-kv-store', ...args], installed);
    if (!npx('--help').includes('shared-kv-store dump FILE')) throw new Error('no usage');
    const { openStore } = require(path.join(modules, 'shared-kv-store'));
    openStore(file, { maxBytes: 1 << 20 }).close();
    npx('set', file, 'k', '{"a":1}');
    const got = npx('get', file, 'k');
    if (got !== '{"a":1}\n') throw new Error(`get printed ${JSON.stringify(got)}`);
    npx('dump', file, path.join(installed, 'cli.dump'));
  });

  const bare = project('no-optional');
  check('without optional dependencies, loading fails with an error naming platform, arch and libc', () => {
    npm(['install', '--no-audit', '--no-fund', '--omit=optional', mainTgz], bare);
    fs.writeFileSync(path.join(bare, 'load.cjs'), `
try { require('shared-kv-store'); console.log('loaded'); } catch (e) { console.log(e.message); }`);
    const out = node('load.cjs', bare);
    const libc = process.platform !== 'linux' ? '' : process.report.getReport().header.glibcVersionRuntime ? 'glibc' : 'musl';
    for (const word of [process.platform, process.arch, libc, 'optional dependencies', 'npm run build']) {
      if (!out.includes(word)) throw new Error(`"${word}" missing from: ${out}`);
    }
  });
  for (const dir of [installed, bare]) fs.rmSync(dir, { recursive: true, force: true });
}

const passed = results.filter(Boolean).length;
console.log(`pack-test (node ${process.version}): ${passed} passed, ${results.length - passed} failed`);
process.exitCode = passed === results.length ? 0 : 1;
