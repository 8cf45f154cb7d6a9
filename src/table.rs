//! The hash index: open addressing with linear probing over 8-byte slots, in one table, or in
//! two while the index grows (see rehash.rs).
//!
//! Concurrency protocol:
//! - Writers hold the writer lock. A writer changing a slot (or the value bytes its data block
//!   holds in place) makes the slot's SEQ odd, writes, then makes it even again.
//! - Readers take no lock. They read SEQ (waiting while odd), read the slot and the key/value
//!   bytes it points to, then re-read SEQ; a change means a writer interfered and they retry.
//!   A data block is freed only after its slot stopped pointing to it (SEQ changed), so a reader
//!   that copied freed bytes always notices.
//! - Deleting leaves a tombstone, so entries never move within a table and a probing reader
//!   cannot miss a key that stays put.
//! - Where the tables are (the descriptor: H_T0, H_T1) is guarded by the header's TABLE_EPOCH,
//!   a seqlock: odd while a writer changes the descriptor, moved on before an old table's block
//!   is freed. Readers read it before (retrying while odd) and after they read anything, and
//!   trust what they read only if it did not change.
//! - While the index grows, entries move from the main table T0 to the new table T1, never
//!   back, and a key is in exactly one of them. Readers look in T0, then in T1: an entry that
//!   moves after they passed its T0 slot is in T1 by the time they look there.
//! - SEQ is never reset, so (epoch, SEQ) identifies one version of one entry. Its count has 22
//!   bits (the rest of SEQ holds the block offset's high bits and the tag); when a count wraps,
//!   the epoch moves on first, so no reader or read cache can mistake the wrapped version for
//!   the one it saw.
//!
//! A slot holds no hash, only 3 bits of it (the tag): a move to a new table rehashes the key.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::fence;

use crate::arena::{read_header, Arena, Header};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::{Region, Word32};

/// Whether a new key may go into the vacant slot the index offers (`Store::index_room`, in
/// rehash.rs: the growth decides; the store's writes act on the answer).
pub(crate) enum Room {
    /// Yes.
    Yes,
    /// Not before the growth under way moved on (done now): look again.
    Again,
}

/// What a slot holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ref {
    Empty,
    Tombstone,
    /// An entry: its block and its key's tag (the hash's low 3 bits).
    Live {
        block: u64,
        tag: u32,
    },
}

impl Ref {
    /// The entry's block, if the slot holds one.
    pub fn block(self) -> Option<u64> {
        match self {
            Ref::Live { block, .. } => Some(block),
            _ => None,
        }
    }

    /// The Ref of `block` holding a key whose hash is `hash`.
    pub fn live(block: u64, hash: u32) -> Ref {
        Ref::Live {
            block,
            tag: hash & 7,
        }
    }

    /// Decodes a slot's SEQ and REF words.
    pub fn of(seq: u32, lo: u32) -> Ref {
        let units = ((seq >> SEQ_HI_SHIFT) as u64 & ((1 << SEQ_HI_BITS) - 1)) << 32 | lo as u64;
        match units {
            REF_EMPTY => Ref::Empty,
            REF_TOMBSTONE => Ref::Tombstone,
            u => Ref::Live {
                block: u * BLOCK_ALIGN,
                tag: (seq >> SEQ_TAG_SHIFT) & 7,
            },
        }
    }

    /// The REF word, and the SEQ bits (offset's high bits and tag) that go with it.
    fn words(self) -> (u32, u32) {
        let (units, tag) = match self {
            Ref::Empty => (REF_EMPTY, 0),
            Ref::Tombstone => (REF_TOMBSTONE, 0),
            Ref::Live { block, tag } => (block / BLOCK_ALIGN, tag & 7),
        };
        let hi = (units >> 32) as u32 & ((1 << SEQ_HI_BITS) - 1);
        (units as u32, hi << SEQ_HI_SHIFT | tag << SEQ_TAG_SHIFT)
    }
}

/// A SEQ word `by` versions on: the count moves (wrapping within its bits), the rest is kept.
/// Also says whether it wrapped.
pub fn advance_seq(seq: u32, by: u32) -> (u32, bool) {
    let count = (seq & SEQ_COUNT).wrapping_add(by);
    ((seq & !SEQ_COUNT) | count & SEQ_COUNT, count > SEQ_COUNT)
}

/// The next version of a SEQ word.
pub fn next_seq(seq: u32) -> u32 {
    advance_seq(seq, 1).0
}

const _: () = assert!(S_SEQ == 0 && S_REF == 4 && SLOT_SIZE == 8);

/// A slot's SEQ and REF words as the one u64 the slot is (S_SEQ first, native byte order).
fn pack(seq: u32, lo: u32) -> u64 {
    let mut b = [0u8; 8];
    b[..4].copy_from_slice(&seq.to_ne_bytes());
    b[4..].copy_from_slice(&lo.to_ne_bytes());
    u64::from_ne_bytes(b)
}

/// The SEQ and REF words of a slot read as one u64.
pub fn unpack(w: u64) -> (u32, u32) {
    let b = w.to_ne_bytes();
    (
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
        u32::from_ne_bytes([b[4], b[5], b[6], b[7]]),
    )
}

/// Every change of a slot is this one 8-byte store: SEQ (count, tag, offset's high bits,
/// VISITED) and REF land together, so a writer killed at any instruction leaves the slot as
/// it was or as it was meant to be, never a mix (the tag of one entry over the block of
/// another). If the count wrapped, the epoch moves on first, so a reader that saw the old
/// SEQ a wrap ago cannot take the new one for it.
fn store_slot(r: &Region, at: u64, seq: u32, lo: u32, wrapped: bool) -> Result<()> {
    let word = r.u64(at)?;
    if wrapped {
        r.u32(H_TABLE_EPOCH)?.fetch_add(2, Release);
        fence(Release);
    }
    word.store(pack(seq, lo), Release);
    // And before every store after it: a writer frees or reuses the old block next, and a
    // reader that sees those bytes must see the slot changed when it checks SEQ again (a
    // release store orders only what came before it; this matters on ARM, not x86).
    fence(Release);
    Ok(())
}

/// A slot's (SEQ, REF) words in one load (`Acquire` for a lock-free reader).
pub fn load_slot(r: &Region, at: u64, order: std::sync::atomic::Ordering) -> Result<(u32, u32)> {
    Ok(unpack(r.u64(at)?.load(order)))
}

/// One table, where the descriptor says it is.
/// One table, where the descriptor says it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Table {
    /// Its block, and where its slots start.
    pub block: u64,
    pub off: u64,
    pub cap: u64,
}

/// A live slot as a writer reads it (writers are alone, so plain loads are consistent).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub at: u64,
    pub block: u64,
    pub header: Header,
}

pub enum Find {
    Found(Slot),
    /// The key is absent; it would go into this slot (the first tombstone or empty one of the
    /// table new keys go to), if the table has one.
    Vacant(Option<u64>),
}

/// What one lock-free read attempt saw.
pub enum Read {
    /// Found: the slot's SEQ, the slot's offset and the entry's expiry (0: never).
    Hit(u32, u64, u64),
    Miss,
    Retry,
}

/// The slot's Ref as the writer-lock holder reads it.
pub fn load_ref(r: &Region, at: u64) -> Result<Ref> {
    let (seq, lo) = load_slot(r, at, Relaxed)?;
    Ok(Ref::of(seq, lo))
}

impl Table {
    /// The table in `block`, its slot count read from the block. Past our length may just
    /// mean another thread grew the region: OutOfBounds lets the caller catch up before
    /// concluding anything.
    pub fn at(r: &Region, block: u64) -> Result<Table> {
        if block < HEADER_SIZE || block % BLOCK_ALIGN != 0 {
            return Err(Error::corrupted("index location"));
        }
        let cap = r.u32(block + T_CAP)?.load(Relaxed) as u64;
        let off = block + INTERNAL_HEADER;
        if cap == 0 {
            return Err(Error::corrupted("index size"));
        }
        if off + cap * SLOT_SIZE > r.len() {
            return Err(Error::OutOfBounds {
                off,
                size: cap * SLOT_SIZE,
            });
        }
        Ok(Table { block, off, cap })
    }

    /// Whether `at` is the offset of one of this table's slots.
    pub fn holds(&self, at: u64) -> bool {
        at >= self.off && at < self.off + self.cap * SLOT_SIZE && (at - self.off) % SLOT_SIZE == 0
    }

    fn slot_at(&self, hash: u32, probe: u64) -> u64 {
        self.off + ((start_slot(hash, self.cap) + probe) % self.cap) * SLOT_SIZE
    }

    /// Where a lookup of `hash` starts.
    pub fn first_slot(&self, hash: u32) -> u64 {
        self.slot_at(hash, 0)
    }

    /// Writer-side lookup (caller holds the writer lock).
    pub fn find(&self, r: &Region, key: &[u8], hash: u32) -> Result<Find> {
        let arena = Arena { r };
        let mut vacant = None;
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            match load_ref(r, at)? {
                Ref::Empty => return Ok(Find::Vacant(vacant.or(Some(at)))),
                Ref::Tombstone => vacant = vacant.or(Some(at)),
                Ref::Live { block, tag } => {
                    if tag != hash & 7 {
                        continue;
                    }
                    prefetch_entry(r, block);
                    let header = arena.check_block(block, true)?;
                    if header.key_len == key.len() as u64
                        && r.eq(key_offset(block, header.header_len), key)?
                    {
                        return Ok(Find::Found(Slot { at, block, header }));
                    }
                }
            }
        }
        Ok(Find::Vacant(vacant))
    }

    /// The first vacant (empty or tombstone) slot of `hash`'s probe, for a key the caller knows
    /// is in no table.
    pub fn vacant_for(&self, r: &Region, hash: u32) -> Result<u64> {
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            if matches!(load_ref(r, at)?, Ref::Empty | Ref::Tombstone) {
                return Ok(at);
            }
        }
        Err(Error::corrupted("an index table has no vacant slot"))
    }

    /// One lock-free lookup attempt: on a hit, `out` holds the value bytes.
    /// Entries that expired by `clock()` count as absent.
    pub fn read(
        &self,
        r: &Region,
        key: &[u8],
        hash: u32,
        clock: fn() -> u64,
        out: &mut Vec<u8>,
    ) -> Result<Read> {
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            let (seq, lo) = load_slot(r, at, Acquire)?;
            if seq & 1 == 1 {
                Self::check_writer_at_work(r, at, seq)?;
                return Ok(Read::Retry);
            }
            let mut expires_at = 0;
            let outcome =
                Self::read_entry(r, Ref::of(seq, lo), key, hash, clock, out, &mut expires_at);
            fence(Acquire);
            if load_slot(r, at, Relaxed)?.0 != seq {
                return Ok(Read::Retry);
            }
            // The slot was stable while we read it, so what we saw is what a writer wrote.
            match outcome? {
                Some(true) => return Ok(Read::Hit(seq, at, expires_at)),
                Some(false) => {}
                None => return Ok(Read::Miss),
            }
        }
        Ok(Read::Miss)
    }

    /// Some(true): the key, value copied; Some(false): another key or a tombstone; None: empty.
    #[allow(clippy::too_many_arguments)]
    fn read_entry(
        r: &Region,
        rf: Ref,
        key: &[u8],
        hash: u32,
        clock: fn() -> u64,
        out: &mut Vec<u8>,
        expires_at: &mut u64,
    ) -> Result<Option<bool>> {
        let block = match rf {
            Ref::Empty => return Ok(None),
            Ref::Tombstone => return Ok(Some(false)),
            Ref::Live { tag, .. } if tag != hash & 7 => return Ok(Some(false)),
            Ref::Live { block, .. } => block,
        };
        prefetch_entry(r, block);
        let h = read_header(r, block)?;
        if !h.in_use() {
            return Err(Error::corrupted(
                "index points to a block that is not in use",
            ));
        }
        if h.key_len != key.len() as u64 || !r.eq(key_offset(block, h.header_len), key)? {
            return Ok(Some(false));
        }
        if h.expired_by(clock) {
            return Ok(None); // keys are unique: an expired one is absent
        }
        let val = value_offset(block, h.header_len, h.key_len);
        if h.key_len + h.val_len > h.capacity()
            || val.checked_add(h.val_len).is_none_or(|end| end > r.len())
        {
            // Checked before allocating: a forged length must not make us allocate 4 GiB.
            return Err(Error::OutOfBounds {
                off: val,
                size: h.val_len,
            });
        }
        out.resize(h.val_len as usize, 0);
        r.read(val, out)?;
        *expires_at = h.expires_at;
        Ok(Some(true))
    }

    /// A reader saw `seq`, odd, in slot `at`: a writer is mid-write, and holds the writer lock
    /// all the while. If the lock is free and SEQ unchanged, no writer is at work: the memory
    /// is corrupted (a forged odd SEQ), which is an error now rather than a wait that times
    /// out. Sound because the odd store is a release after the lock was taken: a reader that
    /// saw it sees the lock taken, or released later, after SEQ became even again.
    pub fn check_writer_at_work(r: &Region, at: u64, seq: u32) -> Result<()> {
        if r.u64(H_WRITE_LOCK)?.load(Acquire) == 0 && load_slot(r, at, Acquire)?.0 == seq {
            return Err(Error::corrupted(
                "an entry is marked mid-write but no writer is at work",
            ));
        }
        Ok(())
    }

    /// Begins a seqlock write of the value bytes slot `at` points to (an in-place rewrite; the
    /// slot's REF does not change); returns the odd SEQ to pass to `end_write`.
    pub fn begin_write(r: &Region, at: u64) -> Result<u32> {
        let (s, lo) = load_slot(r, at, Relaxed)?;
        // Even -> odd; an odd (forged) value skips to the next odd so readers keep waiting.
        let (odd, wrapped) = advance_seq(s, 1 + (s & 1));
        // Release: orders the lock acquisition before it (see `check_writer_at_work`); the
        // fence orders it before the data writes that follow.
        store_slot(r, at, odd, lo, wrapped)?;
        fence(Release);
        Ok(odd)
    }

    /// Ends the write `begin_write` began (its odd SEQ `odd`): the next, even, version.
    pub fn end_write(r: &Region, at: u64, odd: u32) -> Result<()> {
        let lo = load_slot(r, at, Relaxed)?.1;
        let (even, wrapped) = advance_seq(odd, 1);
        store_slot(r, at, even, lo, wrapped)
    }

    /// Gives slot `at` a new SEQ (its REF unchanged): a new version, or other VISITED marks.
    /// An odd `seq` is a writer at work (see `begin_write`).
    pub fn set_seq(r: &Region, at: u64, seq: u32, wrapped: bool) -> Result<()> {
        let lo = load_slot(r, at, Relaxed)?.1;
        store_slot(r, at, seq, lo, wrapped)
    }

    /// Sets slot `at` to `rf`, keeping its VISITED marks: see `publish_marked`.
    pub fn publish(r: &Region, at: u64, rf: Ref) -> Result<()> {
        let visited = load_slot(r, at, Relaxed)?.0 & SEQ_VISITED;
        Self::publish_marked(r, at, rf, visited)
    }

    /// Sets slot `at` to `rf` with the VISITED marks `visited`, in one store: the next even
    /// version, the REF with its tag and high bits. No odd phase: a reader that read the old
    /// REF (or bytes of its block) sees SEQ changed when it checks again, and retries.
    pub fn publish_marked(r: &Region, at: u64, rf: Ref, visited: u32) -> Result<()> {
        let s = load_slot(r, at, Relaxed)?.0;
        let (even, wrapped) = advance_seq(s, 2 - (s & 1));
        let (lo, bits) = rf.words();
        let seq = (even & SEQ_COUNT) | (visited & SEQ_VISITED) | bits;
        store_slot(r, at, seq, lo, wrapped)
    }

    /// A new, empty, unpublished table with `cap` slots. Fails with `NeedGrow` (changing
    /// nothing) if its block does not fit yet.
    pub fn empty(r: &Region, cap: u64) -> Result<Table> {
        let t = Self::alloc(r, cap)?;
        r.zero(t.off, cap * SLOT_SIZE)?;
        Ok(t)
    }

    /// A table block of `cap` slots, not zeroed.
    pub fn alloc(r: &Region, cap: u64) -> Result<Table> {
        if cap > u32::MAX as u64 {
            return Err(Error::Full {
                needed: cap * SLOT_SIZE,
                max: u32::MAX as u64 * SLOT_SIZE,
            });
        }
        let block = Arena { r }.alloc_internal(cap * SLOT_SIZE)?;
        r.u32(block + T_CAP)?.store(cap as u32, Relaxed);
        Ok(Table {
            block,
            off: block + INTERNAL_HEADER,
            cap,
        })
    }
}

/// The tables the descriptor names: the main one, and while the index grows the new one.
#[derive(Clone, Copy, Debug)]
pub struct Tables {
    pub t0: Table,
    pub t1: Option<Table>,
}

impl Tables {
    /// Reads the descriptor. A reader checks the epoch around it (see the module comment).
    pub fn load(r: &Region) -> Result<Tables> {
        let t1 = r.u64(H_T1)?.load(Acquire);
        let t0 = Table::at(r, r.u64(H_T0)?.load(Acquire))?;
        let t1 = match t1 {
            0 => None,
            b => Some(Table::at(r, b)?),
        };
        Ok(Tables { t0, t1 })
    }

    /// Slots of both tables: T0's, then T1's.
    pub fn cap(&self) -> u64 {
        self.t0.cap + self.t1.map_or(0, |t| t.cap)
    }

    /// The offset of slot `i` of both tables (T0's first), `i` < `cap()`.
    pub fn slot(&self, i: u64) -> u64 {
        match self.t1 {
            Some(t1) if i >= self.t0.cap => t1.off + (i - self.t0.cap) * SLOT_SIZE,
            _ => self.t0.off + i * SLOT_SIZE,
        }
    }

    /// Whether `at` is a slot of either table.
    pub fn holds(&self, at: u64) -> bool {
        self.t0.holds(at) || self.t1.is_some_and(|t| t.holds(at))
    }

    /// The table new keys go to: T1 while entries move to it.
    pub fn newest(&self) -> Table {
        self.t1.unwrap_or(self.t0)
    }

    /// Writer-side lookup in both tables; a vacant slot is in the table new keys go to.
    pub fn find(&self, r: &Region, key: &[u8], hash: u32) -> Result<Find> {
        let first = self.t0.find(r, key, hash)?;
        match (first, self.t1) {
            (Find::Found(s), _) => Ok(Find::Found(s)),
            (vacant, None) => Ok(vacant),
            (Find::Vacant(_), Some(t1)) => t1.find(r, key, hash),
        }
    }

    /// One lock-free lookup attempt in T0, then T1.
    pub fn read(
        &self,
        r: &Region,
        key: &[u8],
        hash: u32,
        clock: fn() -> u64,
        out: &mut Vec<u8>,
    ) -> Result<Read> {
        match (self.t0.read(r, key, hash, clock, out)?, self.t1) {
            (Read::Miss, Some(t1)) => t1.read(r, key, hash, clock, out),
            (outcome, _) => Ok(outcome),
        }
    }

    /// The live slots of both tables from slot `from` on, wrapping, up to `count` slots
    /// examined, as (slot offset, block offset), for a writer, who holds the lock.
    pub fn live_slots<'r>(
        &self,
        r: &'r Region,
        from: u64,
        count: u64,
    ) -> impl Iterator<Item = Result<(u64, u64)>> + 'r {
        let tables = *self;
        let cap = self.cap();
        (0..count.min(cap)).filter_map(move |i| {
            let at = tables.slot((from + i) % cap);
            match load_ref(r, at) {
                Err(e) => Some(Err(e)),
                Ok(Ref::Live { block, .. }) => Some(Ok((at, block))),
                Ok(_) => None,
            }
        })
    }

    /// Makes `t0` the only table, under the descriptor's seqlock (no growth may be under way:
    /// `clear` finishes it first). The caller frees the old block after, not before: readers
    /// learn of the change from the epoch.
    pub fn replace(r: &Region, t0: Table) -> Result<()> {
        if r.u32(H_MIG_STATE)?.load(Relaxed) != MIG_NONE {
            return Err(Error::corrupted("index growth state"));
        }
        let epoch = r.u32(H_TABLE_EPOCH)?;
        begin_descriptor(epoch);
        r.u64(H_T0)?.store(t0.block, Release);
        end_descriptor(epoch);
        Ok(())
    }
}

/// Makes the descriptor's epoch odd: readers wait (or retry) until `end_descriptor`.
pub fn begin_descriptor(epoch: Word32<'_>) {
    let e = epoch.load(Relaxed);
    epoch.store(e | 1, Relaxed);
    fence(Release);
}

/// Makes the epoch even again, a new value: readers that read anything since `begin` retry.
pub fn end_descriptor(epoch: Word32<'_>) {
    let e = epoch.load(Relaxed);
    epoch.store((e | 1).wrapping_add(1), Release);
}

/// A small entry's block (about 32 bytes, 8-aligned) crosses a cache line about half the time:
/// its header's line, then the rest of the key and the value, two misses where the second waits
/// on the first. Asking for the second line before the header is read overlaps them. Measured
/// in the core at 20M keys (examples/scale_probe.rs, rounds alternating with and without):
/// set 1186 -> 1132 ns, get 1017 -> 980 ns, medians of 4.
#[inline]
fn prefetch_entry(r: &Region, block: u64) {
    r.prefetch(block.saturating_add(31));
}
