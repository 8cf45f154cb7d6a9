'use strict';
// Reads the shared index from JS, so that a get whose value is not in the read cache still
// makes no call into native code. It duplicates the lookup half of src/table.rs and the key
// hash of src/hash.rs on purpose: measured on 200,000 cold small gets, the native call alone
// cost ~540 ns (string conversion, typed-array lookups, copying into a scratch buffer), while
// Map + msgpackr unpack, the baseline, cost ~1,100-1,400 ns in all. Writes stay in Rust.
//
// Protocol (as Store::get and Table::read): read the table epoch (odd: the tables are being
// moved, retry), the tables' blocks (T0, and T1 while the index grows), then probe T0 and,
// on a miss, T1. For every
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
    this.t0Word = layout.t0 >>> 2;
    this.t1Word = layout.t1 >>> 2;
    this.capWord = layout.tableCap >>> 2;
    this.internalHeader = layout.internalHeader;
    this.slotSize = layout.slotSize;
    this.seqWord = layout.slotSeq >>> 2;
    this.refWord = layout.slotRef >>> 2;
    this.hiShift = layout.seqHiShift;
    this.hiMask = 2 ** layout.seqHiBits - 1;
    this.tagShift = layout.seqTagShift;
    this.refEmpty = layout.refEmpty;
    this.refTombstone = layout.refTombstone;
    this.word0 = layout.blockWord0 >>> 2;
    this.valLenWord = layout.blockValLen >>> 2;
    this.valLenHalf = layout.blockValLen >>> 1;
    this.short = layout.kindShort;
    this.long = layout.kindLong;
    this.ttl = layout.kindTtl;
    this.ttlHeader = layout.ttlHeader;
    this.ttlBigHeader = layout.ttlBigHeader;
    this.expiresWord = layout.blockExpires >>> 2;
    this.expiresBigWord = layout.blockExpiresBig >>> 2;
    this.shortHeader = layout.shortHeader;
    this.longHeader = layout.longHeader;
    /** After a HIT: the value, its encoded size, and its version [seq offset, seq, epoch]. */
    this.value = undefined;
    this.growing = false;
    this.size = 0;
    this.version = new Uint32Array(5); // [seq offset, seq, epoch, expiry low, expiry high]
    // What this reader reads directly: the first 4 GiB at most, where every offset is a u32 and
    // `>>> 2` is exact; an entry past it is left to the native reader (FALLBACK).
    this.window = layout.jsWindowBytes;
    this.remap();
  }

  /** Fixed-length views (Atomics on them are much cheaper than on length-tracking ones). */
  remap() {
    const len = Math.min(this.sab.byteLength, this.window);
    this.len = len;
    this.u8 = Buffer.from(this.sab, 0, len);
    // (Divisions, not shifts: a 4 GiB buffer has 2^32 bytes, which `>>>` would wrap to 0.)
    this.i32 = new Int32Array(this.sab, 0, Math.floor(len / 4));
    this.u32 = new Uint32Array(this.sab, 0, Math.floor(len / 4));
    this.u16 = new Uint16Array(this.sab, 0, Math.floor(len / 2));
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
    if (Math.min(this.sab.byteLength, this.window) > this.len) {
      this.remap();
      return RETRY;
    }
    return FALLBACK;
  }

  attempt(key, h) {
    const { i32, epochIndex } = this;
    const epoch = Atomics.load(i32, epochIndex);
    if (epoch & 1) return RETRY; // the tables are being changed
    const t0 = this.u64At(this.t0Word);
    const t1 = this.u64At(this.t1Word);
    this.growing = t1 !== 0; // the caller helps the growth on now and then (native.helpGrowth)
    let r = this.probe(key, h, epoch, t0);
    if (r === MISS && t1 !== 0) r = this.probe(key, h, epoch, t1);
    if (r === MISS) return Atomics.load(i32, epochIndex) === epoch ? MISS : RETRY;
    return r;
  }

  /** The u64 at word `w` (a block offset: below 2^53). */
  u64At(w) {
    const lo = Atomics.load(this.i32, w) >>> 0;
    const hi = Atomics.load(this.i32, w + 1) >>> 0;
    // Below 4 GiB without a multiplication by 2^32: V8 would make every offset derived from
    // it a double, and the probe and the decoder's indexing slower (cold gets 1.2-1.3x).
    return hi === 0 ? lo : lo + hi * TWO_32;
  }

  /** One table's probe: HIT, MISS (the table has no such key), RETRY or FALLBACK. */
  probe(key, h, epoch, block) {
    const { i32, u32, u8, epochIndex } = this;
    if (block === 0) return FALLBACK; // corrupted: the native reader reports it
    if (block + this.internalHeader > this.len) {
      return Atomics.load(i32, epochIndex) !== epoch ? RETRY : this.outside();
    }
    const cap = Atomics.load(i32, (block >>> 2) + this.capWord) >>> 0;
    const off = block + this.internalHeader;
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
      const hi = (seq >>> this.hiShift) & this.hiMask;
      const empty = hi === 0 && ref === this.refEmpty;
      if (!empty && !(hi === 0 && ref === this.refTombstone) && ((seq >>> this.tagShift) & 7) === tag) {
        const block = hi === 0 ? ref * 8 : (hi * TWO_32 + ref) * 8; // (as u64At: stays an integer)
        // Every data block is at least TTL_HEADER (16) bytes; a big TTL header is checked below.
        if (block + this.ttlHeader > this.len) {
          if (Atomics.load(i32, w + this.seqWord) !== seq || Atomics.load(i32, epochIndex) !== epoch) return RETRY;
          return this.outside();
        }
        const bw = block >>> 2;
        const word0 = u32[bw + this.word0];
        const kind = (word0 >>> 8) & 0x7f;
        let keyAt, valLen;
        let expires = 0;
        if (kind === this.short) {
          keyAt = block + this.shortHeader;
          valLen = this.u16[(block >>> 1) + this.valLenHalf];
        } else if (kind === this.long) {
          keyAt = block + this.longHeader;
          valLen = u32[bw + this.valLenWord];
        } else if (kind === this.ttl) {
          valLen = u32[bw + this.valLenWord];
          const ew = (word0 & 0xff) === 0 ? this.expiresBigWord : this.expiresWord;
          keyAt = block + ((word0 & 0xff) === 0 ? this.ttlBigHeader : this.ttlHeader);
          expires = keyAt > this.len ? 0 : u32[bw + ew] + u32[bw + ew + 1] * TWO_32;
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
      if (empty) return MISS;
    }
    return MISS;
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
