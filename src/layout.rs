//! Every byte offset and constant of the shared-memory format, in one place.
//!
//! The region is addressed by offsets from its start, never by pointers, so the same bytes
//! could live in a memory-mapped file shared by processes. All multi-byte fields are
//! naturally aligned and accessed with atomics in native byte order.
//!
//! ```text
//! [0, HEADER_SIZE)        header: magic, version, locks, table location, counters, free lists
//! [HEADER_SIZE, top)      arena: 16-byte aligned blocks (the hash index is one of them)
//! [top, len)              not yet carved; the region grows at its end
//! ```

/// "SKVSTOR1" read as a little-endian u64.
pub const MAGIC: u64 = u64::from_le_bytes(*b"SKVSTOR1");
/// Bumped whenever the meaning of any offset below changes.
pub const LAYOUT_VERSION: u32 = 2; // 2: 32-bit MurmurHash3 keys

// ---- header -------------------------------------------------------------------------------
pub const HEADER_SIZE: u64 = 4096;
pub const H_MAGIC: u64 = 0; // u64
pub const H_VERSION: u64 = 8; // u32
pub const H_HEADER_SIZE: u64 = 12; // u32
/// Writer lock word: 0 when free, else the holder's thread tag.
pub const H_WRITE_LOCK: u64 = 16; // u32
/// Bumped every time the index moves to a new block; readers retry when it changes.
pub const H_TABLE_EPOCH: u64 = 20; // u32
pub const H_HASH_SEED: u64 = 24; // u64
/// u64: where the index is, in one word so readers never pair one table's offset with another's
/// capacity: `(block offset / 16) << 6 | log2(slot count)`; the slots start BLOCK_HEADER into
/// the block.
pub const H_TABLE_LOC: u64 = 32;
pub const H_LIVE: u64 = 48; // u64: live entries
pub const H_TOMBSTONES: u64 = 56; // u64: deleted slots still in probe chains
pub const H_ARENA_TOP: u64 = 64; // u64: end of carved arena space
pub const H_BYTES_IN_USE: u64 = 72; // u64: sum of allocated block sizes
pub const H_FREE_HEADS: u64 = 128; // [u64; NUM_CLASSES]: head block of each free list

// ---- arena blocks ---------------------------------------------------------------------------
/// Blocks start on this boundary; payloads start BLOCK_HEADER bytes later (8-aligned).
pub const BLOCK_ALIGN: u64 = 16;
/// u32 tag (allocated / free) + u32 size class.
pub const BLOCK_HEADER: u64 = 8;
pub const B_TAG: u64 = 0; // u32
pub const B_CLASS: u64 = 4; // u32
/// In a free block: offset of the next free block of the same class (0 = end).
pub const B_NEXT_FREE: u64 = 8; // u64
pub const TAG_ALLOCATED: u32 = 0xA110_C8ED;
pub const TAG_FREE: u32 = 0xF4EE_B10C;

/// Size classes: 16-byte steps up to 256 bytes, then four classes per power of two
/// (at most 25% slack), up to 2^40 bytes.
pub const SMALL_STEP: u64 = 16;
pub const SMALL_LIMIT: u64 = 256;
pub const SMALL_CLASSES: u32 = (SMALL_LIMIT / SMALL_STEP) as u32; // 16
pub const LARGE_SHIFT_MAX: u32 = 40;
pub const NUM_CLASSES: u32 = SMALL_CLASSES + 4 * (LARGE_SHIFT_MAX - 8);

// ---- index slots ----------------------------------------------------------------------------
/// One slot of the open-addressing index. Its SEQ word is a seqlock (odd while a writer
/// changes the slot or the value it points to) and doubles as the entry's version.
pub const SLOT_SIZE: u64 = 32;
pub const S_SEQ: u64 = 0; // u32
pub const S_STATE: u64 = 4; // u32
pub const S_HASH: u64 = 8; // u64
pub const S_DATA: u64 = 16; // u64: data block offset
pub const S_KEY_LEN: u64 = 24; // u32
pub const S_VAL_LEN: u64 = 28; // u32
pub const STATE_EMPTY: u32 = 0;
pub const STATE_LIVE: u32 = 1;
pub const STATE_TOMBSTONE: u32 = 2;

pub const INITIAL_TABLE_CAP: u64 = 1024;
/// The index is rebuilt when live + tombstone slots would exceed this fraction.
pub const MAX_LOAD_NUM: u64 = 3;
pub const MAX_LOAD_DEN: u64 = 4;

// A data block's payload: key bytes, padding to 8, value bytes.

// ---- limits ---------------------------------------------------------------------------------
/// Longest key, in UTF-8 bytes.
pub const MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest encoded value (the slot stores lengths as u32).
pub const MAX_VALUE_BYTES: usize = u32::MAX as usize;

pub const fn align_up(n: u64, a: u64) -> u64 {
    (n + a - 1) & !(a - 1)
}

/// Where a data block's value starts, given its key length.
pub const fn value_offset(block: u64, key_len: u64) -> u64 {
    block + BLOCK_HEADER + align_up(key_len, 8)
}

const _: () = assert!(H_FREE_HEADS + 8 * NUM_CLASSES as u64 <= HEADER_SIZE);
