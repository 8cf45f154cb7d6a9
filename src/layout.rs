//! Every byte offset and constant of the shared-memory format, in one place.
//!
//! The region is addressed by offsets from its start, never by pointers, so the same bytes
//! could live in a memory-mapped file shared by processes. All multi-byte fields are
//! naturally aligned and accessed with atomics in native byte order.
//!
//! ```text
//! [0, HEADER_SIZE)        header: magic, version, locks, table location, counters, free lists
//! [HEADER_SIZE, top)      arena: 8-byte aligned blocks (the hash index is one of them)
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
pub const LAYOUT_VERSION: u32 = 8;
/// Offsets are stored as u32 multiples of 8 (with 3 bits to spare): the region stays below 4 GiB.
pub const MAX_REGION_BYTES: u64 = 1 << 32;

// ---- header -------------------------------------------------------------------------------
pub const HEADER_SIZE: u64 = 4096;
pub const H_MAGIC: u64 = 0; // u64
pub const H_VERSION: u64 = 8; // u32
pub const H_HEADER_SIZE: u64 = 12; // u32
/// Writer lock word (u64): 0 when free, else the holder (see `holder.rs`: pid, process start
/// tag, thread tag) plus the PARKED bit while a waiter sleeps.
pub const H_WRITE_LOCK: u64 = 16; // u64
pub const H_HASH_SEED: u64 = 24; // u64
/// u64: where the index is, in one word so readers never pair one table's block with another's
/// size: `(block offset / 8) << 32 | slot count`; the slots start BLOCK_HEADER into the block.
pub const H_TABLE_LOC: u64 = 32;
/// Bumped every time the index moves to a new block; readers retry when it changes.
pub const H_TABLE_EPOCH: u64 = 40; // u32
/// Futex word (u32) waiters of the writer lock sleep on; a release that saw PARKED bumps it.
pub const H_LOCK_WAKE: u64 = 44;
pub const H_LIVE: u64 = 48; // u64: live entries
pub const H_TOMBSTONES: u64 = 56; // u64: deleted slots still in probe chains
pub const H_ARENA_TOP: u64 = 64; // u64: end of carved arena space
pub const H_BYTES_IN_USE: u64 = 72; // u64: sum of allocated block sizes
/// u64: the next slot the bounded expiry sweep looks at.
pub const H_SWEEP_CURSOR: u64 = 80;
/// u64: blocks with a TTL header in use (the sweep is skipped while there are none).
pub const H_TTL_BLOCKS: u64 = 88;
/// u32: STORE_* flags, fixed when the store is formatted.
pub const H_FLAGS: u64 = 96;
/// u32: bumped by every writer-lock acquisition, so a waiter that judges a holder by a lease
/// can tell one long hold from many short ones by the same thread.
pub const H_LOCK_GEN: u64 = 100;
/// u64: the pid namespace of the process that created the store (0: unknown).
pub const H_PID_NS: u64 = 104;
/// u32: set once a process of another pid namespace opened the store: pids then say nothing
/// about liveness, and a dead holder is only recognised by the lease.
pub const H_MIXED_NS: u64 = 112;
/// u32: how many times a dead writer's lock was taken over and its work recovered.
pub const H_RECOVERIES: u64 = 116;
/// u32: nonzero from a takeover until its recovery finished: a recovery that failed or was
/// cut short is run again by the next holder, whoever it is.
pub const H_RECOVERING: u64 = 120;
pub const H_FREE_HEADS: u64 = 128; // [u64; NUM_CLASSES]: head block of each free list

// ---- eviction (see evict.rs) ---------------------------------------------------------------
/// u32: what a write does when the store is full: ON_FULL_THROW or ON_FULL_EVICT.
pub const H_ON_FULL: u64 = 1920;
pub const ON_FULL_THROW: u32 = 0;
pub const ON_FULL_EVICT: u32 = 1;
/// u64: the most entries the store holds (0: no limit).
pub const H_MAX_ENTRIES: u64 = 1928;
/// u64: the most bytes the region may grow to; an allocation past it evicts (or is refused).
pub const H_MAX_BYTES: u64 = 1936;
/// u64: the eviction hand, a slot index of the index.
pub const H_HAND: u64 = 1944;
/// u64: entries evicted to make room.
pub const H_EVICTIONS: u64 = 1952;
/// u64: expired entries reclaimed (by sweeps, deletes and eviction).
pub const H_EXPIRED: u64 = 1960;

// ---- change log (see changelog.rs) ----------------------------------------------------------
/// u64: the change log's block (0: none yet; made by the first `watch`, then kept).
pub const H_LOG: u64 = 1968;
/// u32: watcher slots in use. Writers append to the log only while it is nonzero.
pub const H_WATCHERS: u64 = 1976;
/// The log block, from its payload (+BLOCK_HEADER): u64 bytes ever appended and published;
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

/// Entries whose key starts with this are never evicted: `lock()` leases (and getOrSet's turns)
/// must not be released by a full store.
pub const PINNED_KEY_PREFIX: &[u8] = b"\0lock\0";
/// In a slot's SEQ, the top two bits: how recently the entry was read, by the hand's passes. A
/// read marks both (set under the writer lock only, see evict.rs); each pass of the hand clears
/// one, and an entry with neither is a victim. Two passes, not one: reads are marked in batches,
/// a little after they happen, and entries change slots when the index is rebuilt, so an entry
/// read all the time must not be evicted in the moment between a pass and its next mark. A
/// write keeps the bits. The rest of SEQ counts versions, odd while written.
pub const SEQ_VISITED: u32 = 0b11 << 30;
/// The bit a pass of the hand clears first.
pub const SEQ_VISITED_RECENT: u32 = 1 << 31;

/// A store shared by processes through a file: a writer may die at any instruction, so a value
/// rewritten in place is first saved in the undo record (see `recover.rs`).
pub const STORE_PROCESS_SHARED: u32 = 1;

/// The undo record of an in-place rewrite in a process-shared store: while U_SLOT is nonzero,
/// the slot there is being rewritten, and the old header words and value bytes are here.
pub const U_SLOT: u64 = 1984; // u64: slot offset (0: no rewrite in progress)
pub const U_ODD: u64 = 1992; // u32: the odd SEQ the rewrite set
pub const U_WORD0: u64 = 1996; // u32: the block's old word 0
pub const U_BLOCK: u64 = 2000; // u64: the block rewritten
pub const U_VAL_LEN: u64 = 2008; // u32: the old u32 at B_VAL_LEN
pub const U_LEN: u64 = 2012; // u32: how many old value bytes follow
pub const U_EXPIRES: u64 = 2016; // u64: the old expiry (TTL blocks)
pub const U_BYTES: u64 = 2048;
/// Longest value rewritten in place in a process-shared store; a longer one is written to a
/// new block and published by one store (copy-on-write), which needs no undo.
pub const UNDO_MAX: u64 = HEADER_SIZE - U_BYTES;

// ---- arena blocks ---------------------------------------------------------------------------
/// Blocks start on this boundary (and are multiples of it in size).
pub const BLOCK_ALIGN: u64 = 8;
/// Word 0 of every block (u32): size class (bits 0-7), flags (8-15), key length (16-31).
/// The flags say what follows. A data block with a short header (class up to
/// SHORT_HEADER_MAX_CLASS) has a u16 value length at B_VAL_LEN and its key at +6; a long one
/// has a u32 value length and its key at +8. The value follows the key. An index block keeps
/// its slots at +BLOCK_HEADER. A free block links to the next free one at B_NEXT_FREE.
pub const B_WORD0: u64 = 0; // u32
pub const B_VAL_LEN: u64 = 4; // u16 (short) or u32 (long)
pub const SHORT_HEADER: u64 = 6;
pub const LONG_HEADER: u64 = 8;
/// An expiring entry's header: word 0, u32 value length, then the expiry time (u64,
/// milliseconds since the Unix epoch) at B_EXPIRES; its key starts at +16.
pub const TTL_HEADER: u64 = 16;
pub const B_EXPIRES: u64 = 8; // u64
pub const SHORT_HEADER_MAX_CLASS: u64 = 1 << 16;
/// Where an index block's slots start.
pub const BLOCK_HEADER: u64 = LONG_HEADER;
pub const FLAGS_SHORT: u32 = 0xA5;
pub const FLAGS_LONG: u32 = 0xA6;
pub const FLAGS_TTL: u32 = 0xA7;
/// Slots the expiry sweep examines per write (bounded work, no timers).
pub const SWEEP_SLOTS: u64 = 8;
pub const FLAGS_FREE: u32 = 0x5A;
/// In a free block: offset of the next free block of the same class (0 = end).
pub const B_NEXT_FREE: u64 = 8; // u64
/// The smallest block: a free one must hold its header and the next-free link.
pub const MIN_BLOCK: u64 = 16;

/// Size classes: 8-byte steps up to 256 bytes, then eight classes per power of two
/// (at most 12.5% slack), up to 4 GiB.
pub const SMALL_STEP: u64 = 8;
pub const SMALL_LIMIT: u64 = 256;
pub const SMALL_CLASSES: u32 = (SMALL_LIMIT / SMALL_STEP) as u32; // 32
pub const LARGE_STEPS: u32 = 8;
pub const LARGE_SHIFT_MAX: u32 = 32;
pub const NUM_CLASSES: u32 = SMALL_CLASSES + LARGE_STEPS * (LARGE_SHIFT_MAX - 8);

// ---- index slots ----------------------------------------------------------------------------
/// One slot of the open-addressing index: SEQ (a seqlock word, odd while a writer changes the
/// slot or the value it points to; it doubles as the entry's version) and REF.
pub const SLOT_SIZE: u64 = 8;
pub const S_SEQ: u64 = 0; // u32
pub const S_REF: u64 = 4; // u32
/// REF: 0 empty, 1 deleted (a tombstone), else `tag << 29 | block offset / 8`, where the tag is
/// the key hash's low 3 bits (it rules out most other keys without reading their block).
pub const REF_EMPTY: u32 = 0;
pub const REF_TOMBSTONE: u32 = 1;
pub const REF_BLOCK_BITS: u32 = 29;

pub const INITIAL_TABLE_CAP: u64 = if cfg!(loom) { 16 } else { 1024 }; // small under loom: fewer modelled bytes
/// The index is rebuilt when live + tombstone slots would exceed this fraction; a rebuild
/// sizes it for twice the live entries (so it grows by about 1.5x).
pub const MAX_LOAD_NUM: u64 = 3;
pub const MAX_LOAD_DEN: u64 = 4;

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

const _: () = assert!(H_FREE_HEADS + 8 * NUM_CLASSES as u64 <= H_ON_FULL);
const _: () = assert!(H_EXPIRED + 8 <= H_LOG && H_WATCHERS + 4 <= U_SLOT);
const _: () = assert!(LOG_RECORD_HEADER + MAX_KEY_BYTES as u64 <= LOG_MIN / 2);
const _: () = assert!(NUM_CLASSES <= 256, "the class is stored in 8 bits");
const _: () = assert!(
    (MAX_KEY_BYTES as u64) < (1 << 16),
    "the key length is stored in 16 bits"
);
const _: () = assert!(MAX_REGION_BYTES >> 3 <= 1 << REF_BLOCK_BITS);
