#!/usr/bin/env node
// Builds the native addon with @napi-rs/cli: `napi build --platform --release`, which names the
// binary by its target (shared-kv-store.linux-x64-gnu.node) in the package root. Then it writes
// binding.js, the loader napi-rs generates (it tries that local file, then the platform package
// shared-kv-store-<target>), with @napi-rs/cli's own writeJsBinding.
//
// Why not `napi build --js binding.js`: napi only writes the loader when napi-derive's type-def
// feature is on, and its d.ts step rejects this binding (it exports a function named `delete`,
// a reserved word in a declaration), so type-def is off in Cargo.toml. The loader is the same
// template; its list of re-exported names is read from the binary just built.
//
// `node scripts/build.js --debug` builds without optimisations. Other arguments go to
// `napi build` (e.g. `--target aarch64-unknown-linux-gnu`); a build for another target leaves
// binding.js as it is (it covers every target; only the names come from the build).
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const args = process.argv.slice(2);
const debug = args.includes('--debug');
const passThrough = args.filter((a) => a !== '--debug');
const cli = path.join(path.dirname(require.resolve('@napi-rs/cli/package.json')), require('@napi-rs/cli/package.json').bin.napi);

execFileSync(process.execPath, [cli, 'build', '--platform', ...(debug ? [] : ['--release']), ...passThrough], {
  cwd: root,
  stdio: 'inherit',
});

async function writeLoader() {
  const { writeJsBinding, parseTriple, readNapiConfig } = await import('@napi-rs/cli');
  const pkg = require('../package.json');
  const config = await readNapiConfig(path.join(root, 'package.json'));
  const targetIndex = passThrough.findIndex((a) => a === '--target' || a === '-t');
  const host = /^host: (.+)$/m.exec(execFileSync('rustc', ['-vV'], { encoding: 'utf8' }))[1];
  const triple = targetIndex >= 0 ? passThrough[targetIndex + 1] : host;
  if (triple !== host) {
    console.log(`built for ${triple}; binding.js left as it is`);
    return;
  }
  const file = path.join(root, `${config.binaryName}.${parseTriple(triple).platformArchABI}.node`);
  const idents = Object.keys(require(file)).sort();
  const out = await writeJsBinding({
    platform: true,
    jsBinding: 'binding.js',
    idents,
    binaryName: config.binaryName,
    packageName: config.packageName,
    version: pkg.version,
    outputDir: root,
  });
  console.log(`built ${path.basename(file)}; wrote ${path.relative(root, out.path)}`);
}

writeLoader().catch((err) => {
  console.error(err);
  process.exit(1);
});
