'use strict';
// The dump format: every entry of a store, with its exact value and its expiry, in a file that
// does not depend on the store's memory layout. `dump` writes one, `restore` reads one into a
// store of any layout version: the upgrade path across layout changes, and a backup.
//
// Format version 1 (integers little-endian):
//   magic     8 bytes   "SKVDUMP\0"
//   version   u32       1
//   hlen      u32       length of the header
//   header    hlen bytes of UTF-8 JSON: { format, created, tool, source: { path, layout, ... } }
//   entries, each:
//     tag     u8        1
//     klen    u32       key length, then the key's UTF-8 bytes
//     vlen    u32       value length, then the value: the store's own msgpack encoding
//                       (lib/codec.js, the same bytes the store keeps: every type it holds)
//     expires f64       expiry in ms since the Unix epoch, 0 if none (absolute, so a key that
//                       expires between dump and restore stays expired)
//   end:
//     tag     u8        0
//     count   f64       entries written
//     crc     u32       CRC-32 (zlib's) of every byte before it
// A reader refuses a newer version, and checks the whole file (structure, count, CRC) before
// it restores anything: a damaged or cut dump is never half restored.

const zlib = require('node:zlib');
const { Encoder, decode } = require('./codec');
const { checkKey } = require('./keys');

const MAGIC = Buffer.from('SKVDUMP\0', 'latin1');
const FORMAT = 1;
const TAG_ENTRY = 1;
const TAG_END = 0;

function dumpError(code, message) {
  const err = new Error(`dump: ${message}`);
  err.code = code;
  return err;
}

/**
 * Writes every entry of `store` with `write(buffer)` (called in order, with buffers it may
 * keep). Each entry is consistent (its value and expiry from one version of it, as entries()
 * reads them), so a store in use by other processes dumps key by key. `source` goes into the
 * header; `onProgress(n)` is called every 4,096 entries. Returns the number of entries.
 */
function writeDump(store, write, { source = {}, onProgress } = {}) {
  let crc = 0;
  const out = (buf) => {
    crc = zlib.crc32(buf, crc);
    write(buf);
  };
  const header = Buffer.from(JSON.stringify({ format: FORMAT, created: new Date().toISOString(), tool: tool(), source }));
  const head = Buffer.alloc(16);
  MAGIC.copy(head, 0);
  head.writeUInt32LE(FORMAT, 8);
  head.writeUInt32LE(header.length, 12);
  out(head);
  out(header);
  const encoder = new Encoder();
  let count = 0;
  for (const [key, value, expires] of store.entries({ withExpiry: true })) {
    const k = Buffer.from(key);
    const n = encoder.encode(value);
    const rec = Buffer.allocUnsafe(1 + 4 + k.length + 4 + n + 8);
    let at = rec.writeUInt8(TAG_ENTRY, 0);
    at = rec.writeUInt32LE(k.length, at);
    at += k.copy(rec, at);
    at = rec.writeUInt32LE(n, at);
    at += encoder.buf.copy(rec, at, 0, n);
    rec.writeDoubleLE(expires ?? 0, at);
    out(rec);
    if (++count % 4096 === 0) onProgress?.(count);
  }
  const end = Buffer.alloc(9);
  end.writeUInt8(TAG_END, 0);
  end.writeDoubleLE(count, 1);
  out(end);
  const sum = Buffer.alloc(4);
  sum.writeUInt32LE(crc >>> 0, 0);
  write(sum);
  return count;
}

/**
 * Checks a whole dump in `buf`, every entry included (its key, its value's encoding, its
 * expiry), so that a restore fails before it writes anything rather than half way:
 * `{ header, count }`, or an error with code ERR_KV_DUMP_VERSION (made by a newer format) or
 * ERR_KV_DUMP_FORMAT (not a dump, damaged or cut short, or an entry no store could hold).
 * `maxKeyBytes`: the store's key length limit.
 */
function checkDump(buf, { maxKeyBytes = Infinity } = {}) {
  if (buf.length < 16 || !buf.subarray(0, 8).equals(MAGIC)) {
    throw dumpError('ERR_KV_DUMP_FORMAT', 'not a shared-kv-store dump (no SKVDUMP magic at its start)');
  }
  const version = buf.readUInt32LE(8);
  if (version > FORMAT) {
    throw dumpError('ERR_KV_DUMP_VERSION', `this dump has format version ${version}; this version of shared-kv-store reads format ${FORMAT} and older: restore it with a newer shared-kv-store`);
  }
  if (version < 1) throw dumpError('ERR_KV_DUMP_FORMAT', `format version ${version} does not exist`);
  const cut = (what) => dumpError('ERR_KV_DUMP_FORMAT', `the dump is damaged or cut short (${what}); nothing was restored`);
  const hlen = buf.readUInt32LE(12);
  if (16 + hlen > buf.length) throw cut('header');
  let header;
  try {
    header = JSON.parse(buf.toString('utf8', 16, 16 + hlen));
  } catch {
    throw cut('header');
  }
  const body = buf.length - 4;
  if ((zlib.crc32(buf.subarray(0, body)) >>> 0) !== buf.readUInt32LE(body)) throw cut('checksum');
  const walk = records(buf, 16 + hlen, cut);
  let count = 0;
  for (let r = walk.next(); ; r = walk.next()) {
    if (r.done) {
      const at = r.value; // the end record
      if (at + 9 !== body || buf.readDoubleLE(at + 1) !== count) throw cut('entry count');
      return { header, count };
    }
    checkEntry(buf, r.value, ++count, maxKeyBytes);
  }
}

/**
 * The entry records of a dump from `at` on, each bounds-checked against its body (`cut(what)`
 * makes the error): `{ kAt, klen, vAt, vlen, expires }`. Returns the end record's offset.
 */
function* records(buf, at, cut) {
  const body = buf.length - 4;
  for (let n = 1; ; n++) {
    if (at >= body) throw cut('no end record');
    if (buf[at] === TAG_END) return at;
    if (buf[at] !== TAG_ENTRY || at + 5 > body) throw cut(`record ${n}`);
    const klen = buf.readUInt32LE(at + 1);
    const vlenAt = at + 5 + klen;
    if (vlenAt + 4 > body) throw cut(`record ${n}`);
    const vlen = buf.readUInt32LE(vlenAt);
    const end = vlenAt + 4 + vlen + 8;
    if (end > body) throw cut(`record ${n}`);
    yield { kAt: at + 5, klen, vAt: vlenAt + 4, vlen, expires: buf.readDoubleLE(end - 8) };
    at = end;
  }
}

/** One entry of a dump, as a store would take it; ERR_KV_DUMP_FORMAT naming it if not. */
function checkEntry(buf, { kAt, klen, vAt, vlen, expires }, n, maxKeyBytes) {
  const bad = (what) => dumpError('ERR_KV_DUMP_FORMAT', `entry ${n}: ${what}; nothing was restored`);
  const key = buf.toString('utf8', kAt, kAt + klen);
  if (!Buffer.from(key).equals(buf.subarray(kAt, kAt + klen))) throw bad('its key is not UTF-8');
  if (klen > maxKeyBytes) throw bad(`its key is ${klen} bytes long, more than the store's ${maxKeyBytes}`);
  try {
    checkKey(key);
  } catch (err) {
    throw bad(err.message);
  }
  try {
    decode(buf.subarray(vAt, vAt + vlen));
  } catch (err) {
    throw bad(`its value does not decode (${err.message}): made by a newer version of shared-kv-store?`);
  }
  if (!Number.isSafeInteger(expires) || expires < 0) throw bad(`its expiry ${expires} is not a time in ms`);
}

/** The entries of a dump `checkDump` accepted: [key, value bytes, expires (0: never)]. */
function* dumpEntries(buf) {
  const never = () => new Error('unreachable: the dump was checked');
  for (const { kAt, klen, vAt, vlen, expires } of records(buf, 16 + buf.readUInt32LE(12), never)) {
    yield [buf.toString('utf8', kAt, kAt + klen), buf.subarray(vAt, vAt + vlen), expires];
  }
}

/**
 * Restores the dump in `buf` into `store`: checks all of it first (unless `checked`, what
 * checkDump returned for it), then sets every entry that has not expired by now, with its
 * expiry. Returns `{ restored, expired, header }`.
 */
function restoreDump(store, buf, { onProgress, now = Date.now, maxKeyBytes, checked } = {}) {
  const header = checked?.header ?? checkDump(buf, { maxKeyBytes }).header;
  let restored = 0;
  let expired = 0;
  for (const [key, bytes, expires] of dumpEntries(buf)) {
    if (expires !== 0 && expires <= now()) {
      expired++;
      continue;
    }
    try {
      store.set(key, decode(bytes), expires === 0 ? undefined : { expiresAt: expires });
    } catch (err) {
      err.message = `restore: ${restored} entries restored, then '${key}' failed: ${err.message}`;
      throw err;
    }
    if (++restored % 4096 === 0) onProgress?.(restored);
  }
  return { restored, expired, header };
}

function tool() {
  return `shared-kv-store ${require('../package.json').version}`;
}

module.exports = { writeDump, checkDump, restoreDump, FORMAT };
