'use strict';
// Store files: one store shared by the processes of a machine (cluster, pm2, child processes).
// The file is mapped shared by every process that opens it; Rust creates, formats, checks and
// maps it (src/memory.rs), and recovers what a writer killed mid-write left (src/recover.rs).
// This module only checks openStore()'s arguments.

const path = require('node:path');

/**
 * The smallest maxBytes of any store: the header and the first index take 16,400 bytes, and a
 * store with no room past them refuses every set.
 */
const MIN_MAX_BYTES = 64 * 1024;
/** maxBytes when none is given (every kind of store, and the command line's new files). */
const DEFAULT_MAX_BYTES = 1024 * 1024 * 1024;

/** openStore()'s options, checked; `maxBytes` defaults to the other stores' default. */
function fileOptions(file, options, defaultMaxBytes, maxRegionBytes) {
  if (typeof file !== 'string' || file === '' || file.includes('\0')) {
    throw new TypeError('openStore: path must be a non-empty string without NUL characters');
  }
  if (options === null || typeof options !== 'object') throw new TypeError('openStore: options must be an object');
  const { maxBytes = defaultMaxBytes, mode = 0o600, readOnly = false } = options;
  if (typeof readOnly !== 'boolean') throw new TypeError('openStore: readOnly must be a boolean');
  // A read-only open never creates a store.
  const { create = !readOnly } = options;
  if (!Number.isSafeInteger(maxBytes) || maxBytes <= 0) {
    throw new RangeError(`openStore: maxBytes must be a positive integer, got ${String(maxBytes)}`);
  }
  if (maxBytes > maxRegionBytes) throw new RangeError(`openStore: maxBytes is at most ${maxRegionBytes} (1 TiB), got ${maxBytes}`);
  if (maxBytes < MIN_MAX_BYTES) throw new RangeError(`openStore: maxBytes is at least ${MIN_MAX_BYTES} (64 KiB: the header and the first index take 16 KiB), got ${maxBytes}`);
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) {
    throw new RangeError(`openStore: mode must be permission bits such as 0o600, got ${String(mode)}`);
  }
  if (typeof create !== 'boolean') throw new TypeError('openStore: create must be a boolean');
  if (readOnly && create) throw new TypeError('openStore: readOnly and create: true do not go together');
  return { file: path.resolve(file), maxBytes, mode, create, readOnly };
}

module.exports = { fileOptions, MIN_MAX_BYTES, DEFAULT_MAX_BYTES };
