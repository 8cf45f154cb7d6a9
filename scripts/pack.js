#!/usr/bin/env node
// `npm run pack`: writes into dist/ every tarball a user of this machine's platform needs: the
// main package and the platform package of each binary built here (npm/<target>/, made by
// `napi create-npm-dirs`). Builds first if no binary is there.
//
// The main package's optionalDependencies list every platform package at the package's version,
// as `napi prepublish` adds them at publish time. They are added to a staged copy only: in the
// repository they would make `npm ci` fail until the platform packages are published.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

const root = path.join(__dirname, '..');
const dist = path.join(root, 'dist');
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const run = (cmd, args, cwd) => execFileSync(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'inherit'], encoding: 'utf8' });

const platformDirs = fs.readdirSync(path.join(root, 'npm')).sort();
const binaryOf = (dir) => `${pkg.napi.binaryName}.${dir}.node`;
if (!platformDirs.some((dir) => fs.existsSync(path.join(root, binaryOf(dir))))) {
  execFileSync(process.execPath, [path.join(__dirname, 'build.js')], { cwd: root, stdio: 'inherit' });
}

fs.rmSync(dist, { recursive: true, force: true });
fs.mkdirSync(dist);
const packed = [];
const optionalDependencies = {};
for (const dir of platformDirs) {
  const pkgDir = path.join(root, 'npm', dir);
  const platformPkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  if (platformPkg.version !== pkg.version) {
    throw new Error(`npm/${dir} is at ${platformPkg.version}, the package at ${pkg.version} (run \`napi version\`)`);
  }
  optionalDependencies[platformPkg.name] = pkg.version;
  const binary = path.join(root, binaryOf(dir));
  if (!fs.existsSync(binary)) continue; // built by the release workflow only
  fs.copyFileSync(binary, path.join(pkgDir, binaryOf(dir)));
  packed.push(JSON.parse(run(npm, ['pack', '--json', '--pack-destination', dist], pkgDir))[0].filename);
}

// The main package: the files `npm pack` would take, with the optional dependencies added.
const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'skv-pack-'));
try {
  const [{ files }] = JSON.parse(run(npm, ['pack', '--dry-run', '--json', '--ignore-scripts'], root));
  for (const { path: file } of files) {
    fs.mkdirSync(path.dirname(path.join(stage, file)), { recursive: true });
    fs.copyFileSync(path.join(root, file), path.join(stage, file));
  }
  const staged = { ...pkg, optionalDependencies };
  fs.writeFileSync(path.join(stage, 'package.json'), JSON.stringify(staged, null, 2) + '\n');
  packed.unshift(JSON.parse(run(npm, ['pack', '--json', '--pack-destination', dist], stage))[0].filename);
} finally {
  fs.rmSync(stage, { recursive: true, force: true });
}
for (const file of packed) console.log(`dist/${file}`);
