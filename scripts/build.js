#!/usr/bin/env node
// Builds the native addon with cargo and copies it to ./shared-kv-store.node, where index.js
// loads it. `node scripts/build.js --debug` builds without optimisations.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.join(__dirname, '..');
const debug = process.argv.includes('--debug');
execFileSync('cargo', ['build', ...(debug ? [] : ['--release'])], { cwd: root, stdio: 'inherit' });

const lib = { darwin: 'libshared_kv_store.dylib', win32: 'shared_kv_store.dll' }[process.platform] ||
  'libshared_kv_store.so';
const target = process.env.CARGO_TARGET_DIR || path.join(root, 'target');
fs.copyFileSync(path.join(target, debug ? 'debug' : 'release', lib), path.join(root, 'shared-kv-store.node'));
console.log('built shared-kv-store.node');
