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

const fs = require('node:fs');
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
 * A dump read from its start, in order: from a Buffer, or from `{ fd, size }` (a file read with
 * positioned reads, a MiB at a time, so a dump larger than memory, or than the largest Buffer,
 * can be checked and restored). `take(n)` returns the next n bytes (a view valid until the next
 * take), or null past the end; every byte before the trailing CRC goes into `crc`.
 */
class Input {
  constructor(source, chunkBytes = CHUNK) {
    this.chunkBytes = chunkBytes;
    if (Buffer.isBuffer(source)) {
      this.fd = -1;
      this.size = source.length;
      this.chunk = source;
      this.chunkAt = 0;
    } else {
      this.fd = source.fd;
      this.size = source.size;
      this.chunk = Buffer.alloc(0);
      this.chunkAt = 0;
    }
    this.at = 0;
    this.crc = 0;
  }

  take(n) {
    if (this.at + n > this.size) return null;
    let out;
    const from = this.at - this.chunkAt;
    if (from + n <= this.chunk.length) {
      out = this.chunk.subarray(from, from + n);
    } else if (n <= this.chunkBytes) {
      const size = Math.min(this.chunkBytes, this.size - this.at);
      this.space ??= Buffer.allocUnsafeSlow(this.chunkBytes);
      this.chunk = this.read(size, this.space);
      this.chunkAt = this.at;
      out = this.chunk.subarray(0, n);
    } else {
      out = this.read(n); // one large value: read whole, the chunk left as it was
    }
    if (this.at + n <= this.size - 4) this.crc = zlib.crc32(out, this.crc);
    this.at += n;
    return out;
  }

  /** Whether the CRC of every byte before the last four is the last four (the rest read too). */
  crcHolds() {
    const body = this.size - 4;
    // Bytes already taken past the body were not added; go back to where the CRC stopped.
    let at = this.at;
    let crc = this.crc;
    if (at > body) {
      at = 0;
      crc = 0;
    }
    for (; at < body; at += this.chunkBytes) {
      const n = Math.min(this.chunkBytes, body - at);
      crc = zlib.crc32(this.fd < 0 ? this.chunk.subarray(at, at + n) : this.readAt(at, n), crc);
    }
    const last = this.fd < 0 ? this.chunk.subarray(body) : this.readAt(body, 4);
    return (crc >>> 0) === last.readUInt32LE(0);
  }

  readAt(at, n) {
    const saved = this.at;
    this.at = at;
    try {
      return this.read(n);
    } finally {
      this.at = saved;
    }
  }

  /** `n` bytes of the file from `this.at`, into `into` if given. */
  read(n, into = Buffer.allocUnsafe(n)) {
    for (let got = 0; got < n;) {
      const r = fs.readSync(this.fd, into, got, n - got, this.at + got);
      if (r === 0) throw dumpError('ERR_KV_DUMP_CHANGED', `the file ended at ${this.at + got} bytes while being read: it changed`);
      got += r;
    }
    return into.length === n ? into : into.subarray(0, n);
  }
}

const CHUNK = 1 << 20;

/**
 * Checks a whole dump (a Buffer, or `{ fd, size }` of a file), every entry included (its key,
 * its value's encoding, its expiry), so that a restore fails before it writes anything rather
 * than half way: `{ header, count }`, or an error with code ERR_KV_DUMP_VERSION (made by a
 * newer format) or ERR_KV_DUMP_FORMAT (not a dump, damaged or cut short, or an entry no store
 * could hold). `maxKeyBytes`: the store's key length limit; `chunkBytes`: how much a file is
 * read at a time (1 MiB; tests make it small).
 */
function checkDump(source, { maxKeyBytes = Infinity, maxValueBytes = Infinity, chunkBytes } = {}) {
  const input = new Input(source, chunkBytes);
  const header = readHeader(input); // not a dump, or another format: said as such
  try {
    let count = 0;
    for (const entry of records(input, maxKeyBytes, maxValueBytes)) checkEntry(entry, ++count);
    const end = input.take(8);
    if (end === null || end.readDoubleLE(0) !== count) throw cut('entry count');
    const crc = input.crc >>> 0;
    const stored = input.take(4);
    if (stored === null || input.at !== input.size) throw cut('end record');
    if (stored.readUInt32LE(0) !== crc) throw cut('checksum');
    return { header, count };
  } catch (err) {
    // Damage shows as a bad checksum first: a flipped byte may also make a record look cut or
    // an entry look made by a newer version, which would mislead.
    // (A RangeError: a damaged length asked for more memory than there is.)
    if ((err.code === 'ERR_KV_DUMP_FORMAT' || err instanceof RangeError) && input.size >= 4 && !input.crcHolds()) throw cut('checksum');
    throw err;
  }
}

function cut(what) {
  return dumpError('ERR_KV_DUMP_FORMAT', `the dump is damaged or cut short (${what}); nothing was restored`);
}

/** The magic, format version and JSON header at the dump's start. */
function readHeader(input) {
  const head = input.take(16);
  if (head === null || !head.subarray(0, 8).equals(MAGIC)) {
    throw dumpError('ERR_KV_DUMP_FORMAT', 'not a shared-kv-store dump (no SKVDUMP magic at its start)');
  }
  const version = head.readUInt32LE(8);
  if (version > FORMAT) {
    throw dumpError('ERR_KV_DUMP_VERSION', `this dump has format version ${version}; this version of shared-kv-store reads format ${FORMAT} and older: restore it with a newer shared-kv-store`);
  }
  if (version < 1) throw dumpError('ERR_KV_DUMP_FORMAT', `format version ${version} does not exist`);
  const json = input.take(head.readUInt32LE(12));
  try {
    return JSON.parse(json.toString('utf8'));
  } catch {
    // (Damage there is reported as such when the checksum says so.)
    throw input.size >= 4 && !input.crcHolds() ? cut('checksum') : cut('header');
  }
}

/**
 * The entry records from the input's position on, each bounds-checked against the input:
 * `{ key, value, expires }` (key and value: the raw bytes, valid until the next record).
 * Stops after the end record's tag.
 */
function* records(input, maxKeyBytes = Infinity, maxValueBytes = Infinity) {
  for (let n = 1; ; n++) {
    const tag = input.take(1);
    if (tag === null) throw cut('no end record');
    if (tag[0] === TAG_END) return;
    if (tag[0] !== TAG_ENTRY) throw cut(`record ${n}`);
    const klen = input.take(4)?.readUInt32LE(0);
    // Before the key is read: a damaged length is not worth a large allocation.
    if (klen > maxKeyBytes) throw entryError(n, `its key is ${klen} bytes long, more than the store's ${maxKeyBytes}`);
    // A copy: the value's read may refill the chunk the key is in.
    const key = klen === undefined ? null : input.take(klen);
    const keyCopy = key === null ? null : Buffer.from(key);
    const vlen = keyCopy === null ? null : input.take(4);
    // As for the key: a value longer than the store can hold is not read (nor allocated).
    if (vlen !== null && vlen.readUInt32LE(0) > maxValueBytes) {
      throw entryError(n, `its value is ${vlen.readUInt32LE(0)} bytes long, more than the store's ${maxValueBytes} bytes can hold (a damaged dump, or a store too small for it)`);
    }
    const view = vlen === null ? null : input.take(vlen.readUInt32LE(0));
    // A copy too if it lies in the reused chunk: reading the expiry may refill that chunk.
    const value = view !== null && view.buffer === input.space?.buffer ? Buffer.from(view) : view;
    const expires = value === null ? null : input.take(8);
    if (expires === null) throw cut(`record ${n}`);
    yield { key: keyCopy, value, expires: expires.readDoubleLE(0) };
  }
}

function entryError(n, what) {
  return dumpError('ERR_KV_DUMP_FORMAT', `entry ${n}: ${what}; nothing was restored`);
}

/** One entry of a dump, as a store would take it; ERR_KV_DUMP_FORMAT naming it if not. */
function checkEntry({ key: bytes, value, expires }, n) {
  const bad = (what) => entryError(n, what);
  const key = bytes.toString('utf8');
  if (!Buffer.from(key).equals(bytes)) throw bad('its key is not UTF-8');
  try {
    checkKey(key);
  } catch (err) {
    throw bad(err.message);
  }
  try {
    decode(value);
  } catch (err) {
    throw bad(`its value does not decode (${err.message}): made by a newer version of shared-kv-store?`);
  }
  if (!Number.isSafeInteger(expires) || expires < 0) throw bad(`its expiry ${expires} is not a time in ms`);
}

/**
 * Restores the dump (a Buffer, or `{ fd, size }`) into `store`: checks all of it first (unless
 * `checked`, what checkDump returned for it), then reads it again and sets every entry that has
 * not expired by now, with its expiry. Returns `{ restored, expired, header }`.
 */
function restoreDump(store, source, { onProgress, now = Date.now, maxKeyBytes, checked, chunkBytes } = {}) {
  const header = checked?.header ?? checkDump(source, { maxKeyBytes, chunkBytes }).header;
  const input = new Input(source, chunkBytes);
  readHeader(input);
  let restored = 0;
  let expired = 0;
  for (const { key: bytes, value, expires } of records(input, maxKeyBytes)) {
    if (expires !== 0 && expires <= now()) {
      expired++;
      continue;
    }
    const key = bytes.toString('utf8');
    try {
      store.set(key, decode(value), expires === 0 ? undefined : { expiresAt: expires });
    } catch (err) {
      err.message = `restore: ${restored} entries restored, then '${key}' failed: ${err.message}`;
      throw err;
    }
    if (++restored % 4096 === 0) onProgress?.(restored);
  }
  // What was read this time must be what was checked: the same CRC. (A change found here comes
  // after the entries were set: the CLI then links no new store file.)
  input.take(8); // the entry count
  const crc = input.crc >>> 0;
  if (input.take(4)?.readUInt32LE(0) !== crc || input.at !== input.size) {
    throw dumpError('ERR_KV_DUMP_CHANGED', `the dump changed while it was restored (${restored} entries set)`);
  }
  return { restored, expired, header };
}

function tool() {
  return `shared-kv-store ${require('../package.json').version}`;
}

module.exports = { writeDump, checkDump, restoreDump, FORMAT };
