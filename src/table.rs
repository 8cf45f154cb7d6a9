//! The hash index: open addressing with linear probing over 8-byte slots.
//!
//! Concurrency protocol:
//! - Writers hold the writer lock. A writer changing a slot (or the value bytes its data block
//!   holds in place) makes the slot's SEQ odd, writes, then makes it even again.
//! - Readers take no lock. They read SEQ (waiting while odd), read the slot and the key/value
//!   bytes it points to, then re-read SEQ; a change means a writer interfered and they retry.
//!   A data block is freed only after its slot stopped pointing to it (SEQ changed), so a reader
//!   that copied freed bytes always notices.
//! - Deleting leaves a tombstone, so entries never move within a table and a probing reader
//!   cannot miss a key that stays put. When the table fills up it is rebuilt in a new block;
//!   the header's TABLE_EPOCH is bumped before the old block is freed, and readers re-check the
//!   epoch before trusting what they read.
//! - SEQ is never reset, so (epoch, SEQ) identifies one version of one entry.
//!
//! A slot holds no hash, only 3 bits of it (the REF tag): a rebuild rehashes the stored keys.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};

use crate::sync::fence;

use crate::arena::{read_header, Arena, Header};
use crate::error::{Error, Result};
use crate::hash::hash_key;
use crate::layout::*;
use crate::region::{Region, Word32};

/// Where the index is, as read from the header.
#[derive(Clone, Copy, Debug)]
pub struct Table {
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
    /// The key is absent; it would go into this slot (the first tombstone or empty one).
    Vacant(Option<u64>),
}

/// What one lock-free read attempt saw.
pub enum Read {
    /// Found: the slot's SEQ, the slot's offset and the entry's expiry (0: never).
    Hit(u32, u64, u64),
    Miss,
    Retry,
}

/// The next version of a SEQ word: the count (all bits but SEQ_VISITED) plus one, wrapping
/// within itself; the VISITED bits kept.
pub fn next_seq(seq: u32) -> u32 {
    (seq & SEQ_VISITED) | (seq & !SEQ_VISITED).wrapping_add(1) & !SEQ_VISITED
}

/// REF of a live entry in `block` whose key hashes to `hash`.
pub fn make_ref(block: u64, hash: u32) -> u32 {
    (hash & 7) << REF_BLOCK_BITS | (block >> 3) as u32
}

/// The block a live REF points to.
pub fn ref_to_block(r: u32) -> u64 {
    ((r & ((1 << REF_BLOCK_BITS) - 1)) as u64) << 3
}

/// The block a live REF points to, if its tag matches `hash`.
fn ref_block(r: u32, hash: u32) -> Option<u64> {
    (r >> REF_BLOCK_BITS == hash & 7).then(|| ref_to_block(r))
}

impl Table {
    pub fn load(r: &Region) -> Result<Table> {
        // Acquire pairs with `publish_location`: seeing the new location means seeing its slots.
        let loc = r.u64(H_TABLE_LOC)?.load(Acquire);
        let (block, cap) = ((loc >> 32) << 3, loc & 0xffff_ffff);
        let off = block + BLOCK_HEADER;
        if cap == 0 || block < HEADER_SIZE {
            return Err(Error::corrupted("index location"));
        }
        // Past our length may just mean another thread grew the region: OutOfBounds lets
        // the caller catch up before concluding anything.
        if off + cap * SLOT_SIZE > r.len() {
            return Err(Error::OutOfBounds {
                off,
                size: cap * SLOT_SIZE,
            });
        }
        Ok(Table { off, cap })
    }

    /// The live slots from slot `from` on, wrapping, up to `count` slots examined, as
    /// (slot offset, block offset) — for a writer, who holds the lock.
    pub fn live_slots<'r>(
        &self,
        r: &'r Region,
        from: u64,
        count: u64,
    ) -> impl Iterator<Item = Result<(u64, u64)>> + 'r {
        let (off, cap) = (self.off, self.cap);
        (0..count.min(cap)).filter_map(move |i| {
            let at = off + ((from + i) % cap) * SLOT_SIZE;
            match r.u32(at + S_REF).map(|w| w.load(Relaxed)) {
                Err(e) => Some(Err(e)),
                Ok(REF_EMPTY | REF_TOMBSTONE) => None,
                Ok(rf) => Some(Ok((at, ref_to_block(rf)))),
            }
        })
    }

    /// Makes the table in `block` (with `cap` slots) the index.
    pub fn publish_location(r: &Region, block: u64, cap: u64) -> Result<()> {
        r.u64(H_TABLE_LOC)?.store((block >> 3) << 32 | cap, Release);
        Ok(())
    }

    fn slot_at(&self, hash: u32, probe: u64) -> u64 {
        self.off + ((start_slot(hash, self.cap) + probe) % self.cap) * SLOT_SIZE
    }

    /// Writer-side lookup (caller holds the writer lock).
    pub fn find(&self, r: &Region, key: &[u8], hash: u32) -> Result<Find> {
        let arena = Arena { r };
        let mut vacant = None;
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            match r.u32(at + S_REF)?.load(Relaxed) {
                REF_EMPTY => return Ok(Find::Vacant(vacant.or(Some(at)))),
                REF_TOMBSTONE => vacant = vacant.or(Some(at)),
                rf => {
                    let Some(block) = ref_block(rf, hash) else {
                        continue;
                    };
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

    /// One lock-free lookup attempt: on a hit, `out` holds the value bytes.
    /// Entries that expired by `now_ms` count as absent.
    pub fn read(
        &self,
        r: &Region,
        key: &[u8],
        hash: u32,
        now_ms: u64,
        out: &mut Vec<u8>,
    ) -> Result<Read> {
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            let seq_word = r.u32(at + S_SEQ)?;
            let seq = seq_word.load(Acquire);
            if seq & 1 == 1 {
                Self::check_writer_at_work(r, seq_word, seq)?;
                return Ok(Read::Retry);
            }
            let mut expires_at = 0;
            let outcome = Self::read_entry(r, at, key, hash, now_ms, out, &mut expires_at);
            fence(Acquire);
            if seq_word.load(Relaxed) != seq {
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
    fn read_entry(
        r: &Region,
        at: u64,
        key: &[u8],
        hash: u32,
        now_ms: u64,
        out: &mut Vec<u8>,
        expires_at: &mut u64,
    ) -> Result<Option<bool>> {
        let block = match r.u32(at + S_REF)?.load(Relaxed) {
            REF_EMPTY => return Ok(None),
            REF_TOMBSTONE => return Ok(Some(false)),
            rf => match ref_block(rf, hash) {
                Some(block) => block,
                None => return Ok(Some(false)),
            },
        };
        let h = read_header(r, block)?;
        if !h.in_use() {
            return Err(Error::corrupted(
                "index points to a block that is not in use",
            ));
        }
        if h.key_len != key.len() as u64 || !r.eq(key_offset(block, h.header_len), key)? {
            return Ok(Some(false));
        }
        if h.expired(now_ms) {
            return Ok(None); // keys are unique: an expired one is absent
        }
        let val = value_offset(block, h.header_len, h.key_len);
        if val.checked_add(h.val_len).is_none_or(|end| end > r.len()) {
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

    /// A reader saw `seq`, odd, in `seq_word`: a writer is mid-write, and holds the writer lock
    /// all the while. If the lock is free and SEQ unchanged, no writer is at work: the memory
    /// is corrupted (a forged odd SEQ), which is an error now rather than a wait that times
    /// out. Sound because the odd store is a release after the lock was taken: a reader that
    /// saw it sees the lock taken, or released later, after SEQ became even again.
    pub fn check_writer_at_work(r: &Region, seq_word: Word32<'_>, seq: u32) -> Result<()> {
        if r.u32(H_WRITE_LOCK)?.load(Acquire) == 0 && seq_word.load(Acquire) == seq {
            return Err(Error::corrupted(
                "an entry is marked mid-write but no writer is at work",
            ));
        }
        Ok(())
    }

    /// Begins a seqlock write of the slot at `at`; returns the odd SEQ to pass to `end_write`.
    pub fn begin_write(r: &Region, at: u64) -> Result<u32> {
        let w = r.u32(at + S_SEQ)?;
        // Even -> odd; an odd (forged) value skips to the next odd so readers keep waiting.
        let odd = next_seq(w.load(Relaxed)) | 1;
        // Release: orders the lock acquisition before it (see `check_writer_at_work`); the
        // fence orders it before the data writes that follow.
        w.store(odd, Release);
        fence(Release);
        Ok(odd)
    }

    pub fn end_write(r: &Region, at: u64, odd: u32) -> Result<()> {
        r.u32(at + S_SEQ)?.store(next_seq(odd), Release);
        Ok(())
    }

    /// Sets slot `at`'s REF (seqlocked).
    pub fn publish(r: &Region, at: u64, rf: u32) -> Result<()> {
        let odd = Self::begin_write(r, at)?;
        r.u32(at + S_REF)?.store(rf, Relaxed);
        Self::end_write(r, at, odd)
    }

    /// Rebuilds the index in a new block sized for `live` entries, dropping tombstones.
    /// Fails with `NeedGrow` (changing nothing) if the new block does not fit yet.
    /// `min_cap`: at least this many slots (an evicting store sizes for its maxEntries).
    pub fn rebuild(&self, r: &Region, seed: u64, live: u64, min_cap: u64) -> Result<()> {
        if live > self.cap {
            return Err(Error::corrupted("entry count exceeds the index size"));
        }
        let arena = Arena { r };
        let new = Table::empty(r, ((live + 1) * 2).max(min_cap).max(INITIAL_TABLE_CAP))?;
        let mut key = Vec::new();
        for slot in self.live_slots(r, 0, self.cap) {
            let (at, data) = slot?;
            let header = arena.check_block(data, true)?;
            key.resize(header.key_len as usize, 0);
            r.read(key_offset(data, header.header_len), &mut key)?;
            let hash = hash_key(seed, &key) as u32;
            let to = (0..new.cap)
                .map(|p| new.slot_at(hash, p))
                .find(|&to| r.u32(to + S_REF).map(|w| w.load(Relaxed)) == Ok(REF_EMPTY))
                .ok_or(Error::corrupted("more live slots than the count says"))?;
            // Keep the entry's SEQ: versions stay monotonic across rebuilds.
            let seq = r.u32(at + S_SEQ)?.load(Relaxed);
            r.u32(to + S_SEQ)?.store(seq & !1, Relaxed);
            r.u32(to + S_REF)?.store(make_ref(data, hash), Relaxed);
        }
        self.replace_with(r, new)?;
        Arena { r }.free(self.block())
    }

    /// The block holding this table.
    pub fn block(&self) -> u64 {
        self.off - BLOCK_HEADER
    }

    /// A new, empty, unpublished table with `cap` slots. Fails with `NeedGrow` (changing
    /// nothing) if its block does not fit yet.
    pub fn empty(r: &Region, cap: u64) -> Result<Table> {
        let bytes = cap * SLOT_SIZE;
        let block = Arena { r }.alloc(bytes)?;
        let new = Table {
            off: block + BLOCK_HEADER,
            cap,
        };
        r.zero(new.off, bytes)?;
        Ok(new)
    }

    /// Makes `new` the index in place of this one. The caller frees this one's block after,
    /// not before: readers learn of the move from the epoch, bumped here.
    pub fn replace_with(&self, r: &Region, new: Table) -> Result<()> {
        r.u64(H_TOMBSTONES)?.store(0, Relaxed);
        Self::publish_location(r, new.block(), new.cap)?;
        r.u32(H_TABLE_EPOCH)?.fetch_add(1, Release);
        fence(Release);
        Ok(())
    }
}
