'use strict';
// The per-thread read cache. A hit costs two Atomics.loads (is the entry's version still the
// one we decoded?) and a copy made by a cloner compiled for the value's shape: no call into
// native code and no decoding. Measured on the seed benchmark: ~440 ns per get without it.

const MAX_ENTRIES = 10_000;
/** Values larger than this (encoded) are not cached: copying them costs about what decoding does. */
const MAX_VALUE_BYTES = 64 * 1024;
const MAX_TOTAL_BYTES = 16 * 1024 * 1024;
/** The table that remembers versions read once: 2^SEEN_BITS sets of two ways. */
const SEEN_BITS = 12;
const SEEN_SLOTS = 2 << SEEN_BITS;
/** Shapes with more fields than this get the generic cloner (generated code stays small). */
const MAX_COMPILED_FIELDS = 32;

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/**
 * Returns a function that deep-copies values of `value`'s shape. Plain objects whose keys are
 * fixed are copied by generated code (`v => ({ a: v.a, b: copy(v.b) })`), the fastest copy V8
 * makes; anything else by `cloneAny`.
 */
function clonerFor(value) {
  if (value === null || typeof value !== 'object') return identity;
  if (Object.getPrototypeOf(value) !== Object.prototype) return cloneAny;
  const keys = Object.keys(value);
  if (keys.length > MAX_COMPILED_FIELDS || keys.includes('__proto__')) return cloneAny;
  const parts = [];
  const nested = [];
  for (const k of keys) {
    const access = IDENTIFIER.test(k) ? `v.${k}` : `v[${JSON.stringify(k)}]`;
    const field = value[k];
    if (field === null || typeof field !== 'object') parts.push(`${JSON.stringify(k)}: ${access}`);
    else {
      nested.push(clonerFor(field));
      parts.push(`${JSON.stringify(k)}: c[${nested.length - 1}](${access})`);
    }
  }
  // The shape is checked on use, so a copy never silently drops or invents a field.
  // eslint-disable-next-line no-new-func
  return new Function('c', 'cloneAny', `return (v) => ({ ${parts.join(', ')} });`)(nested, cloneAny);
}

function identity(v) {
  return v;
}

/** A deep copy of any decoded value (plain data: objects, arrays, Map, Set, Date, Buffer). */
function cloneAny(v) {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) {
    const out = new Array(v.length);
    for (let i = 0; i < v.length; i++) out[i] = cloneAny(v[i]);
    return out;
  }
  if (v instanceof Uint8Array) return Buffer.from(v);
  if (v instanceof Date) return new Date(v.getTime());
  if (v instanceof Map) {
    const out = new Map();
    for (const [k, x] of v) out.set(cloneAny(k), cloneAny(x));
    return out;
  }
  if (v instanceof Set) {
    const out = new Set();
    for (const x of v) out.add(cloneAny(x));
    return out;
  }
  const out = {};
  for (const k of Object.keys(v)) {
    if (k === '__proto__') Object.defineProperty(out, k, { value: cloneAny(v[k]), writable: true, enumerable: true, configurable: true });
    else out[k] = cloneAny(v[k]);
  }
  return out;
}

/** Compiled cloners by shape, shared by every key of that shape in this thread. */
const clonersByShape = new Map();
const MAX_SHAPES = 1000;
/** A cached value is copied generically until it has been hit this often, then compiled. */
const COMPILE_AFTER_HITS = 4;

function shapeOf(v) {
  if (v === null || typeof v !== 'object') return '';
  if (Object.getPrototypeOf(v) !== Object.prototype) return '*';
  return `{${Object.keys(v).map((k) => `${JSON.stringify(k)}:${shapeOf(v[k])}`).join(',')}}`;
}

function compiledCloner(value) {
  const shape = shapeOf(value);
  let clone = clonersByShape.get(shape);
  if (clone === undefined) {
    clone = clonerFor(value);
    if (clone !== identity && clone !== cloneAny && !sameShape(value, clone)) clone = cloneAny;
    if (clonersByShape.size >= MAX_SHAPES) clonersByShape.clear();
    clonersByShape.set(shape, clone);
  }
  return clone;
}

class ReadCache {
  /** `sab`: the store's buffer; `epochIndex`: the table epoch's index in it as Int32 words. */
  constructor(sab, epochIndex, window) {
    this.sab = sab;
    // Versions past the JS window (the first 4 GiB; see lib/reader.js) come as offset 0 and are
    // not kept: the words below cannot reach their SEQ.
    this.window = window;
    // A fixed-length view: Atomics.load through a length-tracking view of a growable buffer
    // measured ~20 ns here, through a fixed-length one ~8 ns. Re-made when the buffer grew.
    this.words = this.view();
    this.epochIndex = epochIndex;
    this.entries = new Map();
    this.bytes = 0;
    this.hits = 0;
    this.misses = 0;
    this.lastOffset = 0;
    this.lastSeq = 0;
    // Versions read once, by slot: (seq word offset, seq, epoch) identifies one version of one
    // entry, whatever its key, so a collision can only forget, never confuse. Remembering a
    // read this way costs three stores; a Map entry per read cost ~350 ns on cold reads.
    this.seenOffset = new Uint32Array(SEEN_SLOTS);
    this.seenSeq = new Int32Array(SEEN_SLOTS);
    this.seenEpoch = new Int32Array(SEEN_SLOTS);
  }

  view() {
    return new Int32Array(this.sab, 0, Math.floor(Math.min(this.sab.byteLength, this.window) / 4));
  }

  /**
   * A fresh copy of the cached value of `key` if the entry is still at the version it was
   * decoded from; else undefined (the caller reads it from the store).
   */
  get(key) {
    const e = this.entries.get(key);
    // SEQ first, then the epoch: the epoch changes before an old index block is reused, so
    // an unchanged epoch proves the SEQ word we read was the entry's.
    if (e !== undefined && e.value !== undefined && Atomics.load(this.words, e.seqIndex) === e.seq &&
        Atomics.load(this.words, this.epochIndex) === e.epoch && (e.expires === 0 || Date.now() < e.expires)) {
      this.hits++;
      // The version of the hit, for eviction's read marks (`* 4`: `<< 2` went negative for a
      // SEQ word past 2 GiB, and the marks' dedupe never matched).
      this.lastOffset = e.seqIndex * 4;
      this.lastSeq = e.seq;
      if (++e.hits === COMPILE_AFTER_HITS) e.clone = compiledCloner(e.value);
      return e.clone(e.value);
    }
    this.misses++;
    return undefined;
  }

  /**
   * Notes that `key` was read at `version` ([seqOffset, seq, epoch, expiry lo, hi]) as `value` (`size` bytes
   * encoded). The value is kept only when the same version is read a second time, so values
   * that change between reads cost no copy. Returns true if it kept `value`: the caller must
   * then hand out a copy.
   */
  note(key, version, value, size) {
    const offset = version[0], seq = version[1] | 0, epoch = version[2] | 0;
    if (offset === 0) return false; // past the window: nothing this cache could check
    // Two ways per set, found by a multiplicative hash of the slot offset (slots are a few
    // bytes apart); a direct-mapped table lost ~4% of 1,000 hot keys to collisions.
    const set = (Math.imul(offset >>> 2, 0x9e3779b1) >>> (32 - SEEN_BITS)) << 1;
    const { seenOffset, seenSeq, seenEpoch } = this;
    let way = -1;
    if (seenOffset[set] === offset) way = set;
    else if (seenOffset[set + 1] === offset) way = set + 1;
    if (way < 0 || seenSeq[way] !== seq || seenEpoch[way] !== epoch) {
      if (way < 0) {
        // A new slot: it goes first, the previous first way moves to second.
        seenOffset[set + 1] = seenOffset[set];
        seenSeq[set + 1] = seenSeq[set];
        seenEpoch[set + 1] = seenEpoch[set];
        way = set;
      }
      seenOffset[way] = offset;
      seenSeq[way] = seq;
      seenEpoch[way] = epoch;
      return false; // first read of this version: nothing kept, nothing to copy
    }
    if (size > MAX_VALUE_BYTES) return false;
    this.forget(key);
    if (this.entries.size >= MAX_ENTRIES || this.bytes + size > MAX_TOTAL_BYTES) this.evictOldestHalf();
    if (offset / 4 >= this.words.length) this.words = this.view();
    const expires = version[3] + version[4] * 4294967296; // 0: never
    this.entries.set(key, { seqIndex: offset >>> 2, seq, epoch, expires, value, clone: cloneAny, size, hits: 0 });
    this.bytes += size;
    return true;
  }

  /**
   * Drops the older half (Map iteration is insertion order). In one pass: deleting the oldest
   * entry one at a time measured ~9 us per insert at 10,000 entries, as V8 walks the holes
   * left at the front of the table.
   */
  evictOldestHalf() {
    let n = this.entries.size >>> 1;
    for (const [key, e] of this.entries) {
      if (n-- === 0) break;
      this.entries.delete(key);
      this.bytes -= e.size;
    }
    // The byte limit may need more than half to go (a few large values).
    if (this.bytes > MAX_TOTAL_BYTES / 2) this.clear();
  }

  clear() {
    this.entries.clear();
    this.bytes = 0;
  }

  forget(key) {
    const e = this.entries.get(key);
    if (e !== undefined) {
      this.entries.delete(key);
      this.bytes -= e.size;
    }
  }

  stats() {
    return { hits: this.hits, misses: this.misses, cachedEntries: this.entries.size, cachedBytes: this.bytes };
  }
}

/** Whether the compiled cloner reproduces `value` exactly (same keys, in order). */
function sameShape(value, clone) {
  const copy = clone(value);
  const a = Object.keys(value);
  const b = Object.keys(copy);
  return a.length === b.length && a.every((k, i) => k === b[i]);
}

module.exports = { ReadCache, clonerFor, cloneAny, MAX_ENTRIES, MAX_VALUE_BYTES, MAX_TOTAL_BYTES };

