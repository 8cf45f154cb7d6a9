'use strict';
// The JS codec: the same bytes as src/codec.rs (see the table there), checked against it by
// __test__/vectors.json. It exists because the hot path must not cross into native once per
// property (measured: walking a small object through Node-API ~900 ns, packing it here
// ~250 ns), and because msgpackr, which is as fast, cannot round-trip Map or -0, renames
// `__proto__` keys and registers extensions process-wide.

const MAX_DEPTH = 256; // as codec::MAX_DEPTH
const CYCLE_CHECK_DEPTH = 32; // as binding/convert.rs
const EXT_UNDEFINED = 0x00;
const EXT_TIMESTAMP = 0xff; // -1
const EXT_SET = 0x73;
const EXT_MAP = 0x6d;
const TWO_32 = 4294967296;

function valueError(Type, code, message, path, cause) {
  const at = path.length ? ` (at value${path.join('')})` : '';
  const err = new Type(message + at, cause === undefined ? undefined : { cause });
  err.code = code;
  return err;
}

/** A path segment is prepended to an error as it unwinds out of a container. */
class PathedError extends Error {}

/**
 * What the value's own code threw (a getter, a proxy trap), as a PathedError that becomes a
 * TypeError with the original as its `cause` (the native codec does the same).
 */
function userThrew(thrown) {
  let what = 'an exception';
  try {
    if (thrown instanceof Error) what = String(thrown.message);
  } catch {} // a revoked proxy or a throwing message getter: keep the generic words
  const err = new PathedError(`reading the value threw: ${what}`);
  err.Type = TypeError;
  err.code = 'ERR_KV_VALUE_THREW';
  err.path = [];
  err.thrown = thrown;
  return err;
}

function isPathed(err) {
  try {
    return err instanceof PathedError;
  } catch {
    return false; // a revoked proxy was thrown
  }
}

const UNSUPPORTED = [
  [ArrayBuffer, 'ArrayBuffer, DataView and Promise values cannot be stored'],
  [DataView, 'ArrayBuffer, DataView and Promise values cannot be stored'],
  [Promise, 'ArrayBuffer, DataView and Promise values cannot be stored'],
  [RegExp, 'RegExp values cannot be stored'],
  [Error, 'Error values cannot be stored'],
  [WeakMap, 'WeakMap values cannot be stored'],
  [WeakSet, 'WeakSet values cannot be stored'],
  [SharedArrayBuffer, 'SharedArrayBuffer values cannot be stored'],
  [WeakRef, 'WeakRef values cannot be stored'],
  // Boxed primitives: as objects they would lose their value ({} and {0:'x',1:'y'}).
  [Number, 'boxed Number objects cannot be stored: store the primitive (valueOf())'],
  [Boolean, 'boxed Boolean objects cannot be stored: store the primitive (valueOf())'],
  [String, 'boxed String objects cannot be stored: store the primitive (valueOf())'],
];

/** The longest encoded value the store takes (layout: a u32 length). */
const MAX_ENCODED_BYTES = 2 ** 32 - 1;

class Encoder {
  constructor(size = 8192) {
    this.buf = Buffer.allocUnsafeSlow(size);
    this.view = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
    this.pos = 0;
    this.ancestors = [];
  }

  /** Encodes `value` into `this.buf`; returns the byte length. Throws TypeError/RangeError. */
  encode(value) {
    return this.encodeAt(0, value);
  }

  /**
   * Writes `key`'s UTF-8 bytes, then `value` encoded, into `this.buf`, so one native call can
   * take both from one buffer (a string argument costs a conversion per call). Returns the
   * end of the value; the key is `buf[0, keyLength)`. The key must be well-formed.
   */
  encodeEntry(key, value) {
    this.pos = 0;
    const n = key.length;
    this.ensure(n);
    const buf = this.buf;
    let i = 0;
    for (; i < n; i++) {
      const c = key.charCodeAt(i);
      if (c > 0x7f) break;
      buf[i] = c;
    }
    if (i < n) {
      this.ensure(n * 3);
      i = this.buf.utf8Write(key, 0);
    }
    this.keyLength = i;
    return this.encodeAt(i, value);
  }

  encodeAt(start, value) {
    this.pos = start;
    this.ancestors.length = 0;
    try {
      this.write(value);
    } catch (err) {
      this.ancestors.length = 0;
      const e = isPathed(err) ? err : userThrew(err);
      throw valueError(e.Type, e.code, e.message, e.path, e.thrown);
    }
    return this.pos;
  }

  ensure(n) {
    if (this.pos + n <= this.buf.length) return;
    const bigger = Buffer.allocUnsafeSlow(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(bigger, 0, 0, this.pos);
    this.buf = bigger;
    this.view = new DataView(bigger.buffer, bigger.byteOffset, bigger.length);
  }

  fail(Type, code, message) {
    const err = new PathedError(message);
    err.Type = Type;
    err.code = code;
    err.path = [];
    return err;
  }

  loneSurrogate() {
    // UTF-8 cannot carry it: refusing beats silently storing U+FFFD instead.
    return this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'strings must be well-formed UTF-16 (this one has a lone surrogate)');
  }

  write(v) {
    switch (typeof v) {
      case 'string': return this.writeString(v);
      case 'number': return this.writeNumber(v);
      case 'boolean': this.ensure(1); this.buf[this.pos++] = v ? 0xc3 : 0xc2; return;
      case 'undefined': this.ensure(3); this.buf[this.pos++] = 0xd4; this.buf[this.pos++] = EXT_UNDEFINED; this.buf[this.pos++] = 0; return;
      case 'object':
        if (v === null) { this.ensure(1); this.buf[this.pos++] = 0xc0; return; }
        return this.writeObject(v);
      case 'bigint': return this.writeBigInt(v);
      case 'function': throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'functions cannot be stored');
      default: throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'symbols cannot be stored');
    }
  }

  writeNumber(v) {
    this.ensure(9); // before taking this.buf: ensure() may replace it
    const buf = this.buf;
    if (v >>> 0 === v && !(v === 0 && 1 / v < 0)) {
      if (v < 0x80) buf[this.pos++] = v;
      else if (v < 0x100) { buf[this.pos++] = 0xcc; buf[this.pos++] = v; }
      else if (v < 0x10000) { buf[this.pos++] = 0xcd; this.view.setUint16(this.pos, v); this.pos += 2; }
      else { buf[this.pos++] = 0xce; this.view.setUint32(this.pos, v); this.pos += 4; }
    } else if ((v | 0) === v && v !== 0) {
      if (v >= -32) buf[this.pos++] = v & 0xff;
      else if (v >= -128) { buf[this.pos++] = 0xd0; buf[this.pos++] = v & 0xff; }
      else if (v >= -32768) { buf[this.pos++] = 0xd1; this.view.setInt16(this.pos, v); this.pos += 2; }
      else { buf[this.pos++] = 0xd2; this.view.setInt32(this.pos, v); this.pos += 4; }
    } else {
      buf[this.pos++] = 0xcb; this.view.setFloat64(this.pos, v); this.pos += 8;
    }
  }

  writeBigInt(v) {
    this.ensure(9);
    if (v >= -(2n ** 63n) && v < 2n ** 63n) {
      this.buf[this.pos++] = 0xd3; this.view.setBigInt64(this.pos, v);
    } else if (v >= 0n && v < 2n ** 64n) {
      this.buf[this.pos++] = 0xcf; this.view.setBigUint64(this.pos, v);
    } else {
      throw this.fail(RangeError, 'ERR_KV_UNSUPPORTED_VALUE', 'BigInt values must fit in 64 bits');
    }
    this.pos += 8;
  }

  writeString(s) {
    const n = s.length;
    if (n < 32 && this.writeShortAscii(s, n)) return;
    if (n < 32) {
      // At most 96 bytes: reserve a 2-byte header, encode by hand, shift if it fits fixstr.
      this.ensure(2 + n * 3);
      const buf = this.buf;
      const start = this.pos + 2;
      let p = start;
      for (let i = 0; i < n; i++) {
        let c = s.charCodeAt(i);
        if (c < 0x80) buf[p++] = c;
        else if (c < 0x800) { buf[p++] = 0xc0 | (c >> 6); buf[p++] = 0x80 | (c & 0x3f); }
        else if ((c & 0xfc00) === 0xd800 && i + 1 < n && (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
          c = 0x10000 + ((c & 0x3ff) << 10) + (s.charCodeAt(++i) & 0x3ff);
          buf[p++] = 0xf0 | (c >> 18); buf[p++] = 0x80 | ((c >> 12) & 0x3f);
          buf[p++] = 0x80 | ((c >> 6) & 0x3f); buf[p++] = 0x80 | (c & 0x3f);
        } else {
          if ((c & 0xf800) === 0xd800) throw this.loneSurrogate();
          buf[p++] = 0xe0 | (c >> 12); buf[p++] = 0x80 | ((c >> 6) & 0x3f); buf[p++] = 0x80 | (c & 0x3f);
        }
      }
      const len = p - start;
      if (len < 32) {
        buf.copyWithin(this.pos + 1, start, p);
        buf[this.pos] = 0xa0 | len;
        this.pos += 1 + len;
      } else {
        buf[this.pos] = 0xd9; buf[this.pos + 1] = len;
        this.pos = p;
      }
      return;
    }
    if (!s.isWellFormed()) throw this.loneSurrogate();
    this.ensure(5 + n * 3);
    const len = this.buf.utf8Write(s, this.pos + 5);
    const h = len < 0x100 ? 2 : len < 0x10000 ? 3 : 5;
    this.buf.copyWithin(this.pos + h, this.pos + 5, this.pos + 5 + len);
    this.writeHeader(0xd9, len, h);
    this.pos += len;
  }

  /**
   * An ASCII string under 32 chars: its byte length is its length, so the fixstr header goes
   * first and nothing is shifted (the common case; a copyWithin per string cost ~15 ns).
   * Returns false, having written nothing that counts, at the first non-ASCII char.
   */
  writeShortAscii(s, n) {
    this.ensure(1 + n);
    const buf = this.buf;
    const start = this.pos + 1;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) return false;
      buf[start + i] = c;
    }
    buf[this.pos] = 0xa0 | n;
    this.pos = start + n;
    return true;
  }

  /** A str/bin/array/map header of `h` bytes (2, 3 or 5) starting with marker `m8`. */
  writeHeader(m8, len, h) {
    const buf = this.buf;
    if (h === 2) { buf[this.pos++] = m8; buf[this.pos++] = len; }
    else if (h === 3) { buf[this.pos++] = m8 + 1; this.view.setUint16(this.pos, len); this.pos += 2; }
    else { buf[this.pos++] = m8 + 2; this.view.setUint32(this.pos, len); this.pos += 4; }
  }

  /** fixarray/fixmap (`fix` | len) below 16, else the 16/32-bit form (`m16`, `m16 + 1`). */
  writeCount(fix, m16, len) {
    this.ensure(5);
    if (len < 16) this.buf[this.pos++] = fix | len;
    else if (len < 0x10000) { this.buf[this.pos++] = m16; this.view.setUint16(this.pos, len); this.pos += 2; }
    else { this.buf[this.pos++] = m16 + 1; this.view.setUint32(this.pos, len); this.pos += 4; }
  }

  writeObject(v) {
    const c = v.constructor;
    if (c === Object) return this.writeContainer(v);
    if (c !== undefined && !Array.isArray(v)) {
      if (v instanceof Uint8Array) return this.writeBytes(v);
      if (ArrayBuffer.isView(v) && !(v instanceof DataView)) {
        throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'typed arrays other than Uint8Array cannot be stored');
      }
      if (v instanceof Date) return this.writeDate(v.getTime());
      for (const [Class, message] of UNSUPPORTED) {
        if (v instanceof Class) throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', message);
      }
    }
    const ancestors = this.ancestors;
    if (ancestors.length >= CYCLE_CHECK_DEPTH && ancestors.includes(v)) {
      throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'value contains a circular reference');
    }
    ancestors.push(v);
    if (Array.isArray(v)) this.writeItems(v, v.length);
    else if (v instanceof Map) this.writeMap(v);
    else if (v instanceof Set) {
      this.writeTag(EXT_SET);
      this.writeItems(Array.from(v), v.size);
    } else this.writeFields(v);
    ancestors.pop();
  }

  /** A plain object (the common case), with the same cycle check as writeObject. */
  writeContainer(v) {
    const ancestors = this.ancestors;
    if (ancestors.length >= CYCLE_CHECK_DEPTH && ancestors.includes(v)) {
      throw this.fail(TypeError, 'ERR_KV_UNSUPPORTED_VALUE', 'value contains a circular reference');
    }
    ancestors.push(v);
    this.writeFields(v);
    ancestors.pop();
  }

  writeItems(items, n) {
    // Every item takes a byte at least: an array longer than a value may be fails at once,
    // not after walking 2^32 holes (over 40 s).
    if (this.pos + 5 + n > MAX_ENCODED_BYTES) {
      throw this.fail(RangeError, 'ERR_KV_VALUE_TOO_LARGE', `an array of ${n} items is larger than the largest value (${MAX_ENCODED_BYTES} bytes)`);
    }
    this.writeCount(0x90, 0xdc, n);
    let i = 0;
    try {
      for (; i < n; i++) this.writeChild(items[i]);
    } catch (err) {
      throw prependPath(err, `[${i}]`);
    }
  }

  writeFields(v) {
    const keys = Object.keys(v);
    this.writeCount(0x80, 0xde, keys.length);
    let key;
    try {
      for (key of keys) {
        this.writeString(key);
        this.writeChild(v[key]);
      }
    } catch (err) {
      throw prependPath(err, `.${key}`);
    }
  }

  writeMap(m) {
    this.writeTag(EXT_MAP);
    this.writeCount(0x80, 0xde, m.size);
    let i = 0;
    try {
      for (const [k, item] of m) {
        this.writeChild(k);
        this.writeChild(item);
        i++;
      }
    } catch (err) {
      throw prependPath(err, `.<map entry ${i}>`);
    }
  }

  /** A value one level down: scalars there count towards the depth limit too. */
  writeChild(v) {
    if (this.ancestors.length > MAX_DEPTH) {
      throw this.fail(RangeError, 'ERR_KV_TOO_DEEP', `value is nested more than ${MAX_DEPTH} levels deep`);
    }
    this.write(v);
  }

  writeTag(type) {
    this.ensure(3);
    this.buf[this.pos++] = 0xd4; this.buf[this.pos++] = type; this.buf[this.pos++] = 0;
  }

  writeBytes(b) {
    const len = b.length;
    this.ensure(5 + len);
    if (len < 0x100) this.writeHeader(0xc4, len, 2);
    else this.writeHeader(0xc4, len, len < 0x10000 ? 3 : 5);
    this.buf.set(b, this.pos);
    this.pos += len;
  }

  writeDate(ms) {
    this.ensure(15);
    const buf = this.buf;
    if (!Number.isFinite(ms)) { buf[this.pos++] = 0xd4; buf[this.pos++] = EXT_TIMESTAMP; buf[this.pos++] = 0xff; return; }
    const sec = Math.floor(ms / 1000);
    const nsec = (ms - sec * 1000) * 1e6;
    if (nsec === 0 && sec >= 0 && sec < TWO_32) {
      buf[this.pos++] = 0xd6; buf[this.pos++] = EXT_TIMESTAMP;
      this.view.setUint32(this.pos, sec); this.pos += 4;
    } else if (sec >= 0 && sec < 2 ** 34) {
      buf[this.pos++] = 0xd7; buf[this.pos++] = EXT_TIMESTAMP;
      this.view.setUint32(this.pos, nsec * 4 + Math.floor(sec / TWO_32)); // nsec << 2 | sec >> 32
      this.view.setUint32(this.pos + 4, sec >>> 0); this.pos += 8;
    } else {
      buf[this.pos++] = 0xc7; buf[this.pos++] = 12; buf[this.pos++] = EXT_TIMESTAMP;
      this.view.setUint32(this.pos, nsec);
      this.view.setBigInt64(this.pos + 4, BigInt(sec)); this.pos += 12;
    }
  }
}

function prependPath(err, segment) {
  const e = isPathed(err) ? err : userThrew(err);
  e.path.unshift(segment);
  return e;
}

// ---- decoding --------------------------------------------------------------------------------

const textDecoder = new TextDecoder();
let src, view, pos, end;

function decodeError(message) {
  const err = new Error(`cannot decode stored value: ${message}`);
  err.code = 'ERR_KV_DECODE';
  return err;
}

/**
 * Decodes the value in `bytes[start, stop)`. Strings and bytes are copied out. `dataView`, if
 * given, is a DataView over the same memory as `bytes` (callers that decode from one buffer
 * again and again keep one, instead of one being made per call).
 */
function decode(bytes, start = 0, stop = bytes.length, dataView = undefined) {
  src = bytes; pos = start; end = stop;
  view = dataView; // else made on first use: small values often need none (saves ~60 ns)
  try {
    const v = read(0);
    if (pos !== end) throw decodeError(`${end - pos} bytes after the value`);
    return v;
  } finally {
    src = view = undefined; // do not pin the caller's buffer
  }
}

function dv() {
  return view ??= new DataView(src.buffer, src.byteOffset, src.length);
}
// A caller's DataView must start where `bytes` starts, as dv() assumes.

function need(n) {
  if (pos + n > end) throw decodeError('value is truncated');
}

function read(depth) {
  if (depth > MAX_DEPTH) throw decodeError(`value is nested more than ${MAX_DEPTH} levels deep`);
  need(1);
  const b = src[pos++];
  if (b < 0x80) return b;
  if (b < 0x90) return readMap(b & 0x0f, depth, false);
  if (b < 0xa0) return readArray(b & 0x0f, depth);
  if (b < 0xc0) return readString(b & 0x1f);
  if (b >= 0xe0) return b - 0x100;
  let v;
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return readBytes(readLen(1));
    case 0xc5: return readBytes(readLen(2));
    case 0xc6: return readBytes(readLen(4));
    case 0xc7: return readExt(readLen(1), depth);
    case 0xc8: return readExt(readLen(2), depth);
    case 0xc9: return readExt(readLen(4), depth);
    case 0xca: need(4); v = dv().getFloat32(pos); pos += 4; return v;
    case 0xcb: need(8); v = dv().getFloat64(pos); pos += 8; return v;
    case 0xcc: return readLen(1);
    case 0xcd: return readLen(2);
    case 0xce: return readLen(4);
    case 0xcf: need(8); v = dv().getBigUint64(pos); pos += 8; return v;
    case 0xd0: need(1); v = dv().getInt8(pos); pos += 1; return v;
    case 0xd1: need(2); v = dv().getInt16(pos); pos += 2; return v;
    case 0xd2: need(4); v = dv().getInt32(pos); pos += 4; return v;
    case 0xd3: need(8); v = dv().getBigInt64(pos); pos += 8; return v;
    case 0xd4: return readExt(1, depth);
    case 0xd5: return readExt(2, depth);
    case 0xd6: return readExt(4, depth);
    case 0xd7: return readExt(8, depth);
    case 0xd8: return readExt(16, depth);
    case 0xd9: return readString(readLen(1));
    case 0xda: return readString(readLen(2));
    case 0xdb: return readString(readLen(4));
    case 0xdc: return readArray(readLen(2), depth);
    case 0xdd: return readArray(readLen(4), depth);
    case 0xde: return readMap(readLen(2), depth, false);
    case 0xdf: return readMap(readLen(4), depth, false);
    default: throw decodeError('reserved byte 0xc1');
  }
}

function readLen(bytes) {
  need(bytes);
  let v;
  if (bytes === 1) v = src[pos];
  else if (bytes === 2) v = dv().getUint16(pos);
  else v = dv().getUint32(pos);
  pos += bytes;
  return v;
}

/** A count can't exceed the bytes left: checked before allocating (as the Rust decoder). */
function checkCount(n) {
  if (n > end - pos) throw decodeError('value is truncated');
}

function readString(n) {
  need(n);
  const start = pos;
  pos += n;
  if (n <= 16) {
    const s = shortAscii(start, n);
    if (s !== undefined) return s;
  }
  return utf8(start, pos);
}

const fcc = String.fromCharCode;

/** An ASCII string of up to 16 bytes, decoded in JS: a call into the UTF-8 decoder costs more. */
function shortAscii(i, n) {
  const b = src;
  if (n > 8) {
    const head = shortAscii(i, 8);
    const tail = head === undefined ? undefined : shortAscii(i + 8, n - 8);
    return tail === undefined ? undefined : head + tail;
  }
  const c0 = b[i], c1 = b[i + 1], c2 = b[i + 2], c3 = b[i + 3];
  const c4 = b[i + 4], c5 = b[i + 5], c6 = b[i + 6], c7 = b[i + 7];
  switch (n) {
    case 0: return '';
    case 1: return c0 < 0x80 ? fcc(c0) : undefined;
    case 2: return (c0 | c1) < 0x80 ? fcc(c0, c1) : undefined;
    case 3: return (c0 | c1 | c2) < 0x80 ? fcc(c0, c1, c2) : undefined;
    case 4: return (c0 | c1 | c2 | c3) < 0x80 ? fcc(c0, c1, c2, c3) : undefined;
    case 5: return (c0 | c1 | c2 | c3 | c4) < 0x80 ? fcc(c0, c1, c2, c3, c4) : undefined;
    case 6: return (c0 | c1 | c2 | c3 | c4 | c5) < 0x80 ? fcc(c0, c1, c2, c3, c4, c5) : undefined;
    case 7: return (c0 | c1 | c2 | c3 | c4 | c5 | c6) < 0x80 ? fcc(c0, c1, c2, c3, c4, c5, c6) : undefined;
    default: return (c0 | c1 | c2 | c3 | c4 | c5 | c6 | c7) < 0x80 ? fcc(c0, c1, c2, c3, c4, c5, c6, c7) : undefined;
  }
}

function utf8(a, b) {
  return src.utf8Slice ? src.utf8Slice(a, b) : textDecoder.decode(src.subarray(a, b));
}

function readBytes(n) {
  need(n);
  const out = Buffer.allocUnsafe(n);
  out.set(src.subarray(pos, pos + n));
  pos += n;
  return out;
}

function readArray(n, depth) {
  checkCount(n);
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = read(depth + 1);
  return out;
}

function readMap(n, depth, asMap) {
  checkCount(n);
  if (asMap) return readMapEntries(new Map(), n, depth);
  const out = {};
  for (let i = 0; i < n; i++) {
    const b = pos < end ? src[pos] : 0;
    const k = b >= 0xa0 && b < 0xc0 && depth < MAX_DEPTH ? (pos++, readKey(b & 0x1f)) : read(depth + 1);
    if (typeof k !== 'string') {
      // A non-string key: this map is a Map after all (as the Rust decoder decides).
      const m = new Map(Object.entries(out));
      m.set(k, read(depth + 1));
      return readMapEntries(m, n - i - 1, depth);
    }
    const v = read(depth + 1);
    if (k === '__proto__') Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
    else out[k] = v;
  }
  return out;
}

// Object keys repeat (every row of a table has the same ones): short ASCII keys are looked up
// here instead of allocated again. Measured on 1,000 rows of { r, s, f }: decode 155 -> see
// the benchmark; msgpackr keeps a similar cache.
const KEY_CACHE_SIZE = 4096;
const keyCache = new Array(KEY_CACHE_SIZE).fill('');

function readKey(n) {
  if (n > 16 || pos + n > end) return readString(n);
  let h = n;
  for (let i = 0; i < n; i++) h = (Math.imul(h, 31) + src[pos + i]) | 0;
  const slot = (h ^ (h >>> 12)) & (KEY_CACHE_SIZE - 1);
  const cached = keyCache[slot];
  if (cached.length === n) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (cached.charCodeAt(i) !== src[pos + i]) {
        same = false;
        break;
      }
    }
    if (same) {
      pos += n;
      return cached;
    }
  }
  const s = readString(n);
  if (s.length === n) keyCache[slot] = s; // ASCII only: one char per byte
  return s;
}

function readMapEntries(m, n, depth) {
  for (let i = 0; i < n; i++) {
    const k = read(depth + 1);
    m.set(k, read(depth + 1));
  }
  return m;
}

function readTagged(depth, marker, fix16) {
  // The tagged container counts as one level, as in the Rust decoder.
  need(1);
  const b = src[pos++];
  if ((b & 0xf0) === marker) return b & 0x0f;
  if (b === fix16) return readLen(2);
  if (b === fix16 + 1) return readLen(4);
  return -1;
}

function readExt(n, depth) {
  need(1 + n);
  const type = src[pos];
  const data = pos + 1;
  pos += 1 + n;
  if (type === EXT_UNDEFINED) return undefined;
  if (type === EXT_SET && n === 1) {
    const count = readTagged(depth, 0x90, 0xdc);
    if (count < 0) throw decodeError('Set tag not followed by an array');
    return new Set(readArray(count, depth));
  }
  if (type === EXT_MAP && n === 1) {
    const count = readTagged(depth, 0x80, 0xde);
    if (count < 0) throw decodeError('Map tag not followed by a map');
    return readMap(count, depth, true);
  }
  if (type === EXT_TIMESTAMP) {
    if (n === 1) return new Date(NaN);
    if (n === 4) return new Date(dv().getUint32(data) * 1000);
    if (n === 8) {
      const hi = dv().getUint32(data);
      const sec = (hi & 3) * TWO_32 + dv().getUint32(data + 4);
      return new Date(sec * 1000 + Math.floor((hi >>> 2) / 1e6));
    }
    if (n === 12) {
      const sec = dv().getInt32(data + 4) * TWO_32 + dv().getUint32(data + 8);
      return new Date(sec * 1000 + Math.floor(dv().getUint32(data) / 1e6));
    }
  }
  throw decodeError(`unknown extension type ${(type << 24) >> 24} with ${n} bytes`);
}

module.exports = { Encoder, decode, MAX_DEPTH };
