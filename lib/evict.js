'use strict';
// Eviction, the JS half (the core's is src/evict.rs): the options a store is formatted with,
// and the reads a thread hands to the core in batches, which marks those entries VISITED
// under the writer lock. A read never writes shared memory itself.

const BATCH = 128;
/** Reads after which pending marks are handed over even if the batch is not full. */
const FLUSH_READS = 512;
/** Both VISITED bits of SEQ (layout.rs SEQ_VISITED): a read of a fully marked version is not reported. */
const VISITED = 0xc0000000 | 0;
const RECENT_BITS = 8;

/** `{ onFull, maxEntries, expectedKeys }` of createManager / createStore(name) / openStore, checked. */
function evictionOptions(options, what) {
  const { onFull = 'throw', maxEntries = 0, expectedKeys = 0 } = options;
  if (onFull !== 'throw' && onFull !== 'evict') {
    throw new TypeError(`${what}: onFull must be 'throw' or 'evict', got ${String(onFull)}`);
  }
  if (!Number.isSafeInteger(maxEntries) || maxEntries < 0) {
    throw new RangeError(`${what}: maxEntries must be a whole number >= 0 (0: no limit), got ${String(maxEntries)}`);
  }
  if (!Number.isSafeInteger(expectedKeys) || expectedKeys < 0) {
    throw new RangeError(`${what}: expectedKeys must be a whole number >= 0 (0: grow as keys come), got ${String(expectedKeys)}`);
  }
  return { onFull: onFull === 'evict' ? 1 : 0, maxEntries, expectedKeys };
}

/** One thread's reads of one evicting store, not yet handed over. */
class Visits {
  constructor(native, id) {
    this.native = native;
    this.id = id;
    this.pairs = new Uint32Array(BATCH * 2);
    this.n = 0;
    this.nativePending = false;
    this.reads = 0;
    // The last version recorded per slot (direct-mapped), so a hot key is recorded once.
    this.recentOffset = new Uint32Array(1 << RECENT_BITS);
    this.recentSeq = new Int32Array(1 << RECENT_BITS);
  }

  /** A hit on the version (SEQ word offset, SEQ). */
  record(offset, seq) {
    if (++this.reads >= FLUSH_READS && (this.n !== 0 || this.nativePending)) this.flush();
    seq |= 0;
    if ((seq & VISITED) === VISITED) return; // marked already
    if (offset === 0) {
      // Past the JS window: the native get holds this mark; the next flush hands it over.
      this.nativePending = true;
      return;
    }
    const r = (Math.imul(offset >>> 3, 0x9e3779b1) >>> (32 - RECENT_BITS));
    if (this.recentOffset[r] === offset && this.recentSeq[r] === seq) return;
    this.recentOffset[r] = offset;
    this.recentSeq[r] = seq;
    const i = this.n * 2;
    this.pairs[i] = offset;
    this.pairs[i + 1] = seq;
    if (++this.n === BATCH) this.flush();
  }

  flush() {
    this.reads = 0;
    if (this.n === 0 && !this.nativePending) return;
    const n = this.n;
    this.n = 0;
    this.nativePending = false;
    // Not marked if a writer held the lock at that moment: reads never wait for writers.
    this.native.markVisited(this.id, this.pairs, n);
  }
}

module.exports = { evictionOptions, Visits };
