//! Every byte offset and constant of the shared-memory format, in one place.
//!
//! The region is addressed by offsets from its start, never by pointers, so the same bytes
//! can live in a memory-mapped file shared by processes. All multi-byte fields are naturally
//! aligned and accessed with atomics in native byte order.
//!
//! ```text
//! [0, HEADER_SIZE)        header: magic, version, locks, index descriptor, counters, free lists
//! [HEADER_SIZE, top)      arena: 8-byte aligned blocks of any size (the index tables are blocks)
//! [top, len)              not yet carved; the region grows at its end
//! ```

/// "SKVSTOR1" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SKVSTOR1");
/// Bumped whenever the meaning of any offset below changes.
/// 2: 32-bit MurmurHash3 keys. 3: 8-byte slots, lengths in the block header, any index size.
/// 4: short block headers. 5: expiring entries (TTL header). 6: a 64-bit writer lock naming
/// its holder process, the futex wake word, the undo record and the store flags.
/// 7: eviction (its settings, hand and counters; the VISITED bits of SEQ).
/// 8: the change log (H_LOG, H_WATCHERS and the log block).
/// 9: blocks of any size that split and merge (boundary tags, segregated free lists), 37-bit
/// block offsets (stores up to 1 TiB), two index tables while the index grows incrementally,
/// the move record of compaction, an 8 KiB header.
pub const LAYOUT_VERSION: u32 = 9;
/// The first layout whose stores `npx shared-kv-store dump` reads (the command came with it):
/// a store of an older layout cannot be carried over.
pub const FIRST_DUMPABLE_LAYOUT: u32 = 9;
/// Block offsets are 37 bits of 8-byte units in a slot: a region is at most 1 TiB.
pub const MAX_REGION_BYTES: u64 = 1 << 40;

// ---- header -------------------------------------------------------------------------------
pub const HEADER_SIZE: u64 = 8192;
pub const H_MAGIC: u64 = 0; // u64
pub const H_VERSION: u64 = 8; // u32
pub const H_HEADER_SIZE: u64 = 12; // u32
/// Writer lock word (u64): 0 when free, else the holder (see `holder.rs`: pid, process start
/// tag, thread tag) plus the PARKED bit while a waiter sleeps.
pub const H_WRITE_LOCK: u64 = 16; // u64
pub const H_HASH_SEED: u64 = 24; // u64
/// u32: the index descriptor's seqlock. Odd while a writer changes where the index tables are
/// (H_T0..H_T1_CAP); moved on by two when every reader must drop what it holds (a recovery,
/// a slot's version count wrapping). Readers retry while it is odd or when it changed.
pub const H_TABLE_EPOCH: u64 = 32;
/// Futex word (u32) waiters of the writer lock sleep on; a release that saw PARKED bumps it.
pub const H_LOCK_WAKE: u64 = 36;
pub const H_LIVE: u64 = 40; // u64: live entries (both tables)
pub const H_TOMBSTONES: u64 = 48; // u64: deleted slots still in the main table's probe chains
pub const H_ARENA_TOP: u64 = 56; // u64: end of carved arena space
pub const H_BYTES_IN_USE: u64 = 64; // u64: sum of the sizes of blocks in use
/// u64: the next slot the bounded expiry sweep looks at (of both tables, see `table.rs`).
pub const H_SWEEP_CURSOR: u64 = 72;
/// u64: blocks with a TTL header in use (the sweep is skipped while there are none).
pub const H_TTL_BLOCKS: u64 = 80;
/// u32: STORE_* flags, fixed when the store is formatted.
pub const H_FLAGS: u64 = 88;
/// u32: bumped by every writer-lock acquisition, so a waiter that judges a holder by a lease
/// can tell one long hold from many short ones by the same thread.
pub const H_LOCK_GEN: u64 = 92;
/// u64: the pid namespace of the process that created the store (0: unknown).
pub const H_PID_NS: u64 = 96;
/// u32: set once a process of another pid namespace opened the store: pids then say nothing
/// about liveness, and a dead holder is only recognised by the lease.
pub const H_MIXED_NS: u64 = 104;
/// u32: how many times a dead writer's lock was taken over and its work recovered.
pub const H_RECOVERIES: u64 = 108;
/// u32: nonzero from a takeover until its recovery finished: a recovery that failed or was
/// cut short is run again by the next holder, whoever it is.
pub const H_RECOVERING: u64 = 112;
/// u32: where the index's growth stands: MIG_NONE, MIG_PREPARING (a new table is being
/// zeroed, readers do not see it) or MIG_MOVING (entries move to it; readers look in both).
pub const H_MIG_STATE: u64 = 116;
pub const MIG_NONE: u32 = 0;
pub const MIG_PREPARING: u32 = 1;
pub const MIG_MOVING: u32 = 2;

// ---- the index descriptor (see table.rs, rehash.rs) -----------------------------------------
/// u64: the main table's block (its slot count is in the block, at T_CAP).
pub const H_T0: u64 = 120;
/// u64: while MIG_MOVING, the table entries move to (0 otherwise).
pub const H_T1: u64 = 128;
/// u64: live entries and tombstones in the new table (H_LIVE counts both tables).
pub const H_T1_LIVE: u64 = 136;
pub const H_T1_TOMBSTONES: u64 = 144;
/// u64: MIG_PREPARING: bytes of the new table zeroed; MIG_MOVING: main-table slots moved.
pub const H_MIG_CURSOR: u64 = 152;
/// u64: MIG_PREPARING: the new table's block (readers do not look at it).
pub const H_PREP: u64 = 160;
/// u64: no byte of the region at or past this offset was ever written (it reads as zero):
/// a new table there needs no zeroing.
pub const H_HIGH_WATER: u64 = 168;

// ---- eviction (see evict.rs) ---------------------------------------------------------------
/// u32: what a write does when the store is full: ON_FULL_THROW or ON_FULL_EVICT.
pub const H_ON_FULL: u64 = 200;
pub const ON_FULL_THROW: u32 = 0;
pub const ON_FULL_EVICT: u32 = 1;
/// u64: the most entries the store holds (0: no limit).
pub const H_MAX_ENTRIES: u64 = 208;
/// u64: the most bytes the region may grow to; an allocation past it evicts (or is refused).
pub const H_MAX_BYTES: u64 = 216;
/// u64: the eviction hand, a slot of both tables (see table.rs, `Tables::slot`).
pub const H_HAND: u64 = 224;
/// u64: entries evicted to make room.
pub const H_EVICTIONS: u64 = 232;
/// u64: expired entries reclaimed (by sweeps, deletes and eviction).
pub const H_EXPIRED: u64 = 240;
/// u64: where compaction next looks for an entry after a free fragment (a slot of both
/// tables, as H_HAND; see compact.rs).
pub const H_ROOM_CURSOR: u64 = 248;
/// u64: entries moved by compaction (see compact.rs).
pub const H_MOVES: u64 = 256;

// ---- change log (see changelog.rs) ----------------------------------------------------------
/// u64: the change log's block (0: none yet; made by the first `watch`, then kept).
pub const H_LOG: u64 = 264;
/// u32: watcher slots in use. Writers append to the log only while it is nonzero.
pub const H_WATCHERS: u64 = 272;

/// u64: index slots recovery found with a tag that is not their key's, and repaired (a
/// backstop: every slot changes in one store, so none is expected).
pub const H_REPAIRS: u64 = 280;

/// u32: nonzero while `clear()` empties a full store's index in place (see clear.rs): its
/// commit point; recovery finishes a clear cut short after it.
pub const H_CLEARING: u64 = 288;

/// u64: live entries that are locks' leases or getOrSet's turns (keys under
/// PINNED_KEY_PREFIX): they are not keys, so `stats().entries` and `maxEntries` leave them out.
pub const H_LOCKS: u64 = 296;

/// u64: the keys the index is sized for (`expectedKeys`; 0: none). Fixed at creation. Zero in
/// files made before it was kept, which read as "none": no layout change.
pub const H_EXPECTED_KEYS: u64 = 304;

// (Bytes 292..296 and 312..320 are unused.)

// ---- the undo record (see undo.rs) ----------------------------------------------------------
/// The undo record of an in-place rewrite in a process-shared store: while U_SLOT is nonzero,
/// the slot there is being rewritten, and the old header words and value bytes are here.
pub const U_SLOT: u64 = 320; // u64: slot offset (0: no rewrite in progress)
pub const U_ODD: u64 = 328; // u32: the odd SEQ the rewrite set
pub const U_WORD0: u64 = 332; // u32: the block's old word 0
pub const U_BLOCK: u64 = 336; // u64: the block rewritten
pub const U_VAL_LEN: u64 = 344; // u32: the old u32 at B_VAL_LEN
pub const U_LEN: u64 = 348; // u32: how many old value bytes follow
pub const U_EXPIRES: u64 = 352; // u64: the old expiry (TTL blocks)
pub const U_BYTES: u64 = 4096;
/// Longest value rewritten in place in a process-shared store; a longer one is written to a
/// new block and published by one store (copy-on-write), which needs no undo.
pub const UNDO_MAX: u64 = HEADER_SIZE - U_BYTES;

// ---- free lists (see arena.rs) --------------------------------------------------------------
/// [u64; 4]: bit `i` set while free list `i` is not empty.
pub const H_FREE_MAP: u64 = 384;
/// [u64; NUM_LISTS]: the first block of each free list (0: empty).
pub const H_FREE_HEADS: u64 = 512;
/// Free lists: one per size below SMALL_LIMIT (8-byte steps), then eight per power of two.
pub const NUM_LISTS: u32 = 256;
pub const SMALL_LIMIT: u64 = 256;
pub const SMALL_LISTS: u32 = (SMALL_LIMIT / BLOCK_ALIGN) as u32; // 32
pub const LIST_STEPS_LOG2: u32 = 3;

// ---- arena blocks ---------------------------------------------------------------------------
/// Blocks start on this boundary and are multiples of it in size.
pub const BLOCK_ALIGN: u64 = 8;
/// The smallest block: a free one holds its header, two links and its footer.
pub const MIN_BLOCK: u64 = 16;
/// Word 0 of every block (u32): bits 0-7 the size in 8-byte units (0: a "big" block, whose
/// size is kept further on), bits 8-14 its kind, bit 15 PREV_FREE (the block before it is
/// free: its footer tells where it starts), bits 16-31 the key length (a block in use) or the
/// high bytes of the free-list links (a free block).
pub const B_WORD0: u64 = 0;
pub const SIZE_CODE_MAX: u64 = 255;
/// The largest block whose size word 0 holds.
pub const SMALL_BLOCK_MAX: u64 = SIZE_CODE_MAX * BLOCK_ALIGN; // 2040
/// The largest block: sizes are kept as u32 counts of 8-byte units.
pub const MAX_BLOCK: u64 = u32::MAX as u64 * BLOCK_ALIGN;
pub const WORD0_PREV_FREE: u32 = 1 << 15;
/// Kinds (7 bits, values a stray write is unlikely to make).
pub const KIND_SHORT: u32 = 0x25;
pub const KIND_LONG: u32 = 0x26;
pub const KIND_TTL: u32 = 0x27;
/// An index table or the change log: a big header, payload at +INTERNAL_HEADER.
pub const KIND_INTERNAL: u32 = 0x28;
pub const KIND_FREE: u32 = 0x5A;
/// A block in use: the value length, u16 (KIND_SHORT) or u32.
pub const B_VAL_LEN: u64 = 4;
/// A big block in use: its size in 8-byte units (u32). (A free big block keeps it at
/// F_BIG_SIZE, so that turning one into the other never overwrites the size the arena's walk
/// reads before word 0 says which it is.)
pub const B_BIG_SIZE: u64 = 8;
/// Bytes before the key. KIND_SHORT is always small (its size in word 0); KIND_LONG and
/// KIND_TTL may be big, which adds the size word.
pub const SHORT_HEADER: u64 = 6;
pub const LONG_HEADER: u64 = 8;
pub const LONG_BIG_HEADER: u64 = 12;
/// An expiring entry: the expiry (u64, ms since the Unix epoch) after the value length (and
/// the size word of a big block).
pub const TTL_HEADER: u64 = 16;
pub const TTL_BIG_HEADER: u64 = 24;
pub const B_EXPIRES: u64 = 8;
pub const B_EXPIRES_BIG: u64 = 16;
/// Where an internal block's payload (an index table's slots, the change log) starts.
pub const INTERNAL_HEADER: u64 = 16;
/// u32 of an index table's block: its slot count.
pub const T_CAP: u64 = 4;
/// A free block: the low 32 bits of the next and previous free blocks' offsets in 8-byte units
/// (their high 8 bits in word 0: bits 16-23 next, 24-31 previous), the size of a big one, and
/// its footer: the last u32 of every free block is its size in 8-byte units.
pub const F_NEXT: u64 = 4;
pub const F_PREV: u64 = 8;
pub const F_BIG_SIZE: u64 = 12;
/// Slots the expiry sweep examines per write (bounded work, no timers).
pub const SWEEP_SLOTS: u64 = 8;

// ---- index slots ----------------------------------------------------------------------------
/// One slot of the open-addressing index: SEQ (a seqlock word, odd while a writer changes the
/// slot or the value it points to; it doubles as the entry's version) and REF.
pub const SLOT_SIZE: u64 = 8;
pub const S_SEQ: u64 = 0; // u32
pub const S_REF: u64 = 4; // u32
/// SEQ: bits 0-21 count versions (odd while written), bits 22-26 the high bits of the block
/// offset (in 8-byte units) REF holds the low 32 bits of, bits 27-29 the key hash's low 3 bits
/// (the tag: it rules out most other keys without reading their block), bits 30-31 VISITED.
/// The offset bits and the tag change only under the seqlock, with REF.
pub const SEQ_COUNT_BITS: u32 = 22;
pub const SEQ_COUNT: u32 = (1 << SEQ_COUNT_BITS) - 1;
pub const SEQ_HI_SHIFT: u32 = 22;
pub const SEQ_HI_BITS: u32 = 5;
pub const SEQ_TAG_SHIFT: u32 = 27;
/// REF with the high bits: 0 empty, 1 deleted (a tombstone), else a block offset / 8.
pub const REF_EMPTY: u64 = 0;
pub const REF_TOMBSTONE: u64 = 1;
/// In a slot's SEQ, the top two bits: how recently the entry was read, by the hand's passes. A
/// read marks both (set under the writer lock only, see evict.rs); each pass of the hand clears
/// one, and an entry with neither is a victim. Two passes, not one: reads are marked in batches,
/// a little after they happen, and entries change slots when the index grows, so an entry read
/// all the time must not be evicted in the moment between a pass and its next mark. A write
/// keeps the bits.
pub const SEQ_VISITED: u32 = 0b11 << 30;
/// The bit a pass of the hand clears first.
pub const SEQ_VISITED_RECENT: u32 = 1 << 31;

pub const INITIAL_TABLE_CAP: u64 = if cfg!(loom) { 16 } else { 1024 }; // small under loom: fewer modelled bytes
/// The index grows when live + tombstone slots would exceed this fraction: a new table sized
/// for twice the live entries is filled while writes go on (see table.rs).
pub const MAX_LOAD_NUM: u64 = 3;
pub const MAX_LOAD_DEN: u64 = 4;
/// Entries each write moves from the main table to the new one while the index grows; and
/// bytes of a new table each write zeroes before it is used. Bounded work per write, and enough that the
/// move ends long before the new table fills (it must take 0.375x its live entries first).
pub const MIGRATE_SLOTS: u64 = 16;
/// ... and scans at most this many times as many slots for them (empty slots are cheap).
pub const MIGRATE_SCAN_FACTOR: u64 = 16;
pub const ZERO_BYTES: u64 = 16 * 1024;

/// Entries whose key starts with this are never evicted: `lock()` leases (and getOrSet's turns)
/// must not be released by a full store.
pub const PINNED_KEY_PREFIX: &[u8] = b"\0lock\0";

/// A store shared by processes through a file: a writer may die at any instruction, so a value
/// rewritten in place is first saved in the undo record (see `undo.rs`).
pub const STORE_PROCESS_SHARED: u32 = 1;

// ---- limits ---------------------------------------------------------------------------------
/// Longest key, in UTF-8 bytes (fits the header's 16 bits).
pub const MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest encoded value (a long header stores it as u32).
pub const MAX_VALUE_BYTES: usize = u32::MAX as usize;

pub const fn align_up(n: u64, a: u64) -> u64 {
    (n + a - 1) & !(a - 1)
}

/// Where a data block's key starts, given its header length.
pub const fn key_offset(block: u64, header_len: u64) -> u64 {
    block + header_len
}

/// Where a data block's value starts, given its header and key lengths.
pub const fn value_offset(block: u64, header_len: u64, key_len: u64) -> u64 {
    block + header_len + key_len
}

/// The first slot a key's probe visits: the hash scaled to the table size (any size works).
pub const fn start_slot(hash: u32, cap: u64) -> u64 {
    (hash as u64 * cap) >> 32
}

const _: () = assert!(
    H_WATCHERS + 4 <= H_REPAIRS
        && H_REPAIRS + 8 <= H_CLEARING
        && H_CLEARING + 4 <= H_LOCKS
        && H_LOCKS + 8 <= U_SLOT
);
const _: () = assert!(U_EXPIRES + 8 <= H_FREE_MAP && H_FREE_MAP + 32 <= H_FREE_HEADS);
const _: () = assert!(H_FREE_HEADS + 8 * NUM_LISTS as u64 <= U_BYTES);
const _: () = assert!(
    SMALL_LISTS + (34 - 8 + 1) * (1 << LIST_STEPS_LOG2) <= NUM_LISTS,
    "a list for every free block size below MAX_BLOCK (2^35)"
);
const _: () = assert!(LOG_RECORD_HEADER + MAX_KEY_BYTES as u64 <= LOG_MIN / 2);
const _: () = assert!(
    (MAX_KEY_BYTES as u64) < (1 << 16),
    "the key length is stored in 16 bits"
);
const _: () = assert!(MAX_REGION_BYTES >> 3 <= 1 << (32 + SEQ_HI_BITS));
const _: () = assert!(SEQ_TAG_SHIFT + 3 <= 30 && SEQ_HI_SHIFT + SEQ_HI_BITS <= SEQ_TAG_SHIFT);
const _: () = assert!(MAX_VALUE_BYTES as u64 + TTL_BIG_HEADER + MAX_KEY_BYTES as u64 <= MAX_BLOCK);

// ---- change log (see changelog.rs) ----------------------------------------------------------
/// The log block, from its payload (+INTERNAL_HEADER): u64 bytes ever appended and published;
pub const L_HEAD: u64 = 0;
/// u64: the end of the record being written (ahead of L_HEAD while a writer copies it in):
/// a reader whose copy overlaps bytes a later record overwrote finds it past its cursor + cap.
pub const L_RESERVED: u64 = 8;
/// u32: the signal watchers sleep on (a futex, or Atomics.waitAsync): `count << 2 | SLEEP_*`.
/// A watcher about to sleep sets its SLEEP_* bit in it; every append adds one to the count,
/// then clears the bits, and wakes the kinds of sleepers it saw or cleared. One word, so a
/// sleeper's bit is only cleared by a writer that changed the value it sleeps on.
pub const L_SIGNAL: u64 = 16;
/// What one append adds to L_SIGNAL (the count sits above the SLEEP_* bits).
pub const SIGNAL_STEP: u32 = 4;
pub const SLEEP_BITS: u32 = 3;
/// u32: the ring's size in bytes (a power of two, LOG_MIN..=LOG_MAX).
pub const L_CAP: u64 = 24;
/// [u64; WATCH_SLOTS]: a watching thread's holder word (see holder.rs), or 0.
pub const L_SLOTS: u64 = 32;
pub const WATCH_SLOTS: u64 = 256;
/// The ring of records: `[event u8][0 u8][key length u16][key bytes]`, padded to RECORD_ALIGN
/// (so a writer copies whole words), wrapping at L_CAP.
pub const L_RING: u64 = L_SLOTS + 8 * WATCH_SLOTS;
pub const LOG_MIN: u64 = 64 * 1024;
pub const LOG_MAX: u64 = 1024 * 1024;
pub const LOG_RECORD_HEADER: u64 = 4;
pub const RECORD_ALIGN: u64 = 8;
/// In L_SIGNAL: a sleeper woken by a futex (a native waiter thread, any process).
pub const SLEEP_FUTEX: u32 = 1;
/// In L_SIGNAL: a sleeper in `Atomics.waitAsync` (a thread of the SharedArrayBuffer's process).
pub const SLEEP_JS: u32 = 2;
