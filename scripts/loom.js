'use strict';
// Runs the loom models (tests/loom.rs): the core rebuilt with `--cfg loom`, in a target
// directory of its own so that it does not invalidate the normal build.
const { spawnSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const env = {
  ...process.env,
  RUSTFLAGS: `${process.env.RUSTFLAGS ?? ''} --cfg loom`.trim(),
  CARGO_TARGET_DIR: path.join(root, 'target', 'loom'),
};
const run = spawnSync('cargo', ['test', '--release', '--no-default-features', '--test', 'loom', ...process.argv.slice(2)], {
  cwd: root, env, stdio: 'inherit',
});
process.exit(run.status ?? 1);
