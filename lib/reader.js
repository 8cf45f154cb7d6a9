'use strict';
// Reads the shared index from JS, so that a get whose value is not in the read cache still
// makes no call into native code. It duplicates the lookup half of src/table.rs and the key
// hash of src/hash.rs on purpose: measured on 200,000 cold small gets, the native call alone
// cost ~540 ns (string conversion, typed-array lookups, copying into a scratch buffer), while
// Map + msgpackr unpack, the baseline, cost ~1,100-1,400 ns in all. Writes stay in Rust.
//
// Protocol (as Table::read): read the table epoch, the index location, then probe. For every
// slot: read its SEQ (odd: a writer is in it, retry), read the slot and the key/value bytes,
// then re-read SEQ; any change means retry. An empty slot ends the probe as a miss once SEQ and
// the epoch are confirmed. A hit is decoded straight from the shared bytes and kept only if SEQ
// and the epoch are still unchanged afterwards. Anything this reader does not handle (a
// non-ASCII or over-long key, offsets past its view, bytes that do not decode, a writer that
// stays in the way) returns FALLBACK, and the caller asks the native reader, which reports
// real corruption as an error.
const { decode } = require('./codec');

const HIT = 1;
const MISS = 0;
const FALLBACK = -1;
const RETRY = -2;
const ATTEMPTS = 8;
/** Longer keys go to the native reader (which also enforces the key length limit). */
const MAX_KEY = 1024;
const TWO_32 = 4294967296;

const C1 = 0xcc9e2d51 | 0;
const C2 = 0x1b873593 | 0;

/** MurmurHash3 x86_32 of an ASCII key (as src/hash.rs over its UTF-8 bytes), or -1 if not ASCII. */
function hashAscii(s, seed) {
  const n = s.length;
  let h = seed | 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const c0 = s.charCodeAt(i), c1 = s.charCodeAt(i + 1), c2 = s.charCodeAt(i + 2), c3 = s.charCodeAt(i + 3);
    if ((c0 | c1 | c2 | c3) > 0x7f) return -1;
    let k = c0 | (c1 << 8) | (c2 << 16) | (c3 << 24);
    k = Math.imul(k, C1); k = (k << 15) | (k >>> 17); k = Math.imul(k, C2);
    h ^= k; h = (h << 13) | (h >>> 19); h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  if (i < n) {
    let k = 0;
    for (let j = 0; i + j < n; j++) {
      const c = s.charCodeAt(i + j);
      if (c > 0x7f) return -1;
      k |= c << (8 * j);
    }
    k = Math.imul(k, C1); k = (k << 15) | (k >>> 17); k = Math.imul(k, C2);
    h ^= k;
  }
  h ^= n;
  h ^= h >>> 16; h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13; h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** The first slot a probe visits: floor(hash * cap / 2^32), as layout::start_slot, exactly. */
function startSlot(h, cap) {
  // hash * cap can exceed 2^53: split the hash so every product stays exact.
  return Math.floor(((h >>> 16) * cap + Math.floor(((h & 0xffff) * cap) / 65536)) / 65536);
}

class Reader {
  /** `layout`: native.layout(); `seed`: native.hashSeed(id). */
  constructor(sab, layout, seed) {
    this.sab = sab;
    this.seed = seed;
    this.epochIndex = layout.tableEpoch >>> 2;
    this.locIndex = layout.tableLoc >>> 2;
    this.slotSize = layout.slotSize;
    this.seqWord = layout.slotSeq >>> 2;
    this.refWord = layout.slotRef >>> 2;
    this.refEmpty = layout.refEmpty;
    this.refTombstone = layout.refTombstone;
    this.refBits = layout.refBlockBits;
    this.refMask = 2 ** layout.refBlockBits - 1;
    this.blockHeader = layout.blockHeader;
    this.word0 = layout.blockWord0 >>> 2;
    this.valLenWord = layout.blockValLen >>> 2;
    this.valLenHalf = layout.blockValLen >>> 1;
    this.short = layout.flagsShort;
    this.long = layout.flagsLong;
    this.ttl = layout.flagsTtl;
    this.ttlHeader = layout.ttlHeader;
    this.expiresWord = layout.blockExpires >>> 2;
    this.shortHeader = layout.shortHeader;
    this.longHeader = layout.longHeader;
    /** After a HIT: the value, its encoded size, and its version [seq offset, seq, epoch]. */
    this.value = undefined;
    this.size = 0;
    this.version = new Uint32Array(5); // [seq offset, seq, epoch, expiry low, expiry high]
    this.remap();
  }

  /** Fixed-length views (Atomics on them are much cheaper than on length-tracking ones). */
  remap() {
    const len = this.sab.byteLength;
    this.len = len;
    this.u8 = Buffer.from(this.sab, 0, len);
    this.i32 = new Int32Array(this.sab, 0, len >>> 2);
    this.u32 = new Uint32Array(this.sab, 0, len >>> 2);
    this.u16 = new Uint16Array(this.sab, 0, len >>> 1);
    this.view = new DataView(this.sab, 0, len);
  }

  /** HIT (value in this.value), MISS, or FALLBACK (ask the native reader). */
  read(key) {
    if (key.length > MAX_KEY) return FALLBACK;
    const h = hashAscii(key, this.seed);
    if (h < 0) return FALLBACK;
    for (let attempt = 0; attempt < ATTEMPTS; attempt++) {
      const r = this.attempt(key, h);
      if (r !== RETRY) return r;
    }
    return FALLBACK;
  }

  /** Past our view: the buffer may have grown (remap and retry) or the bytes are bad. */
  outside() {
    if (this.sab.byteLength > this.len) {
      this.remap();
      return RETRY;
    }
    return FALLBACK;
  }

  attempt(key, h) {
    const { i32, u32, u8, epochIndex } = this;
    const epoch = Atomics.load(i32, epochIndex);
    const cap = Atomics.load(i32, this.locIndex) >>> 0;
    const off = (Atomics.load(i32, this.locIndex + 1) >>> 0) * 8 + this.blockHeader;
    if (cap === 0 || off + cap * this.slotSize > this.len) {
      return Atomics.load(i32, epochIndex) !== epoch ? RETRY : cap === 0 ? FALLBACK : this.outside();
    }
    const klen = key.length;
    const tag = h & 7;
    const start = startSlot(h, cap);
    for (let p = 0; p < cap; p++) {
      const idx = start + p < cap ? start + p : start + p - cap;
      const slot = off + idx * this.slotSize;
      const w = slot >>> 2;
      const seq = Atomics.load(i32, w + this.seqWord);
      if (seq & 1) return RETRY;
      const ref = u32[w + this.refWord];
      if (ref !== this.refEmpty && ref !== this.refTombstone && ref >>> this.refBits === tag) {
        const block = (ref & this.refMask) * 8;
        const bw = block >>> 2;
        // Every block is at least TTL_HEADER (16) bytes, so this covers any header's fields.
        if (block + this.ttlHeader > this.len) {
          if (Atomics.load(i32, w + this.seqWord) !== seq || Atomics.load(i32, epochIndex) !== epoch) return RETRY;
          return this.outside();
        }
        const word0 = u32[bw + this.word0];
        const flags = (word0 >>> 8) & 0xff;
        let keyAt, valLen;
        let expires = 0;
        if (flags === this.short) {
          keyAt = block + this.shortHeader;
          valLen = this.u16[(block >>> 1) + this.valLenHalf];
        } else if (flags === this.long) {
          keyAt = block + this.longHeader;
          valLen = u32[bw + this.valLenWord];
        } else if (flags === this.ttl) {
          keyAt = block + this.ttlHeader;
          valLen = u32[bw + this.valLenWord];
          expires = u32[bw + this.expiresWord] + u32[bw + this.expiresWord + 1] * TWO_32;
        } else {
          return Atomics.load(i32, w + this.seqWord) !== seq ? RETRY : FALLBACK;
        }
        if (word0 >>> 16 === klen) {
          const valAt = keyAt + klen;
          const valEnd = valAt + valLen;
          if (valEnd > this.len) {
            if (Atomics.load(i32, w + this.seqWord) !== seq || Atomics.load(i32, epochIndex) !== epoch) return RETRY;
            return this.outside();
          }
          let found = true;
          for (let j = 0; j < klen; j++) {
            if (u8[keyAt + j] !== key.charCodeAt(j)) {
              found = false;
              break;
            }
          }
          if (found) {
            if (expires !== 0 && Date.now() >= expires) {
              // Expired from that moment: absent (keys are unique), if the slot held still.
              if (Atomics.load(i32, w + this.seqWord) !== seq) return RETRY;
              return Atomics.load(i32, epochIndex) === epoch ? MISS : RETRY;
            }
            return this.decodeHit(w, seq, epoch, valAt, valEnd, slot, expires);
          }
        }
      }
      // What we saw counts only if the slot did not change while we looked.
      if (Atomics.load(i32, w + this.seqWord) !== seq) return RETRY;
      if (ref === this.refEmpty) return Atomics.load(i32, epochIndex) === epoch ? MISS : RETRY;
    }
    return Atomics.load(i32, epochIndex) === epoch ? MISS : RETRY;
  }

  decodeHit(w, seq, epoch, valAt, valEnd, slot, expires) {
    let value;
    let decoded = true;
    try {
      value = decode(this.u8, valAt, valEnd, this.view);
    } catch {
      decoded = false; // torn by a writer (retry) or really bad bytes (native reports them)
    }
    if (Atomics.load(this.i32, w + this.seqWord) !== seq || Atomics.load(this.i32, this.epochIndex) !== epoch) return RETRY;
    if (!decoded) return FALLBACK;
    this.value = value;
    this.size = valEnd - valAt;
    this.version[0] = slot + this.seqWord * 4;
    this.version[1] = seq;
    this.version[2] = epoch;
    this.version[3] = expires % TWO_32;
    this.version[4] = Math.floor(expires / TWO_32);
    return HIT;
  }
}

module.exports = { Reader, hashAscii, startSlot, HIT, MISS, FALLBACK };
