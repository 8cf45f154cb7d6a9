#!/usr/bin/env node
'use strict';
// The operator's command line (lib/cli.js): `npx shared-kv-store --help`.
require('../lib/cli')
  .main(process.argv.slice(2))
  .then((code) => {
    process.exitCode = code;
  });
