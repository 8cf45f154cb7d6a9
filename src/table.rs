//! The hash index: open addressing with linear probing over fixed-size slots.
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

use std::sync::atomic::{
    fence,
    Ordering::{Acquire, Relaxed, Release},
};

use crate::arena::Arena;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;

/// Where the index is, as read from the header.
#[derive(Clone, Copy, Debug)]
pub struct Table {
    pub off: u64,
    pub cap: u64,
}

/// A slot as a writer reads it (writers are alone, so plain loads are consistent).
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub at: u64,
    pub state: u32,
    pub hash: u64,
    pub data: u64,
    pub key_len: u64,
    pub val_len: u64,
}

pub enum Find {
    Found(Slot),
    /// The key is absent; it would go into this slot (the first tombstone or empty one).
    Vacant(Option<u64>),
}

/// What one lock-free read attempt saw.
pub enum Read {
    /// Found: the slot's SEQ and the slot's offset.
    Hit(u32, u64),
    Miss,
    Retry,
}

impl Table {
    pub fn load(r: &Region) -> Result<Table> {
        // Acquire pairs with `publish_location`: seeing the new location means seeing its slots.
        let loc = r.u64(H_TABLE_LOC)?.load(Acquire);
        let (log2, block) = (loc & 63, (loc >> 6) << 4);
        let (off, cap) = (block + BLOCK_HEADER, 1u64 << log2.min(62));
        if log2 > 40 || block < HEADER_SIZE {
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

    /// Makes the table in `block` (with `cap` slots) the index.
    pub fn publish_location(r: &Region, block: u64, cap: u64) -> Result<()> {
        let loc = (block >> 4) << 6 | cap.trailing_zeros() as u64;
        r.u64(H_TABLE_LOC)?.store(loc, Release);
        Ok(())
    }

    fn slot_at(&self, hash: u64, probe: u64) -> u64 {
        self.off + ((hash.wrapping_add(probe)) & (self.cap - 1)) * SLOT_SIZE
    }

    pub fn read_slot(r: &Region, at: u64) -> Result<Slot> {
        Ok(Slot {
            at,
            state: r.u32(at + S_STATE)?.load(Relaxed),
            hash: r.u64(at + S_HASH)?.load(Relaxed),
            data: r.u64(at + S_DATA)?.load(Relaxed),
            key_len: r.u32(at + S_KEY_LEN)?.load(Relaxed) as u64,
            val_len: r.u32(at + S_VAL_LEN)?.load(Relaxed) as u64,
        })
    }

    /// Writer-side lookup (caller holds the writer lock).
    pub fn find(&self, r: &Region, key: &[u8], hash: u64) -> Result<Find> {
        let mut vacant = None;
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            let s = Self::read_slot(r, at)?;
            match s.state {
                STATE_EMPTY => return Ok(Find::Vacant(vacant.or(Some(at)))),
                STATE_TOMBSTONE => {
                    vacant = vacant.or(Some(at));
                }
                STATE_LIVE => {
                    if s.hash == hash
                        && s.key_len == key.len() as u64
                        && r.eq(s.data + BLOCK_HEADER, key)?
                    {
                        return Ok(Find::Found(s));
                    }
                }
                _ => return Err(Error::corrupted("slot state")),
            }
        }
        Ok(Find::Vacant(vacant))
    }

    /// One lock-free lookup attempt: on a hit, `out` holds the value bytes.
    pub fn read(&self, r: &Region, key: &[u8], hash: u64, out: &mut Vec<u8>) -> Result<Read> {
        for probe in 0..self.cap {
            let at = self.slot_at(hash, probe);
            let seq_word = r.u32(at + S_SEQ)?;
            let seq = seq_word.load(Acquire);
            if seq & 1 == 1 {
                return Ok(Read::Retry);
            }
            let outcome = Self::read_entry(r, at, key, hash, out);
            fence(Acquire);
            if seq_word.load(Relaxed) != seq {
                return Ok(Read::Retry);
            }
            // The slot was stable while we read it, so what we saw is what a writer wrote.
            match outcome? {
                Some(true) => return Ok(Read::Hit(seq, at)),
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
        hash: u64,
        out: &mut Vec<u8>,
    ) -> Result<Option<bool>> {
        let s = Self::read_slot(r, at)?;
        match s.state {
            STATE_EMPTY => return Ok(None),
            STATE_TOMBSTONE => return Ok(Some(false)),
            STATE_LIVE => {}
            _ => return Err(Error::corrupted("slot state")),
        }
        if s.hash != hash || s.key_len != key.len() as u64 || !r.eq(s.data + BLOCK_HEADER, key)? {
            return Ok(Some(false));
        }
        let val = value_offset(s.data, s.key_len);
        if val.checked_add(s.val_len).is_none_or(|end| end > r.len()) {
            // Checked before allocating: a forged length must not make us allocate 4 GiB.
            return Err(Error::OutOfBounds {
                off: val,
                size: s.val_len,
            });
        }
        out.resize(s.val_len as usize, 0);
        r.read(val, out)?;
        Ok(Some(true))
    }

    /// Begins a seqlock write of the slot at `at`; returns the odd SEQ to pass to `end_write`.
    pub fn begin_write(r: &Region, at: u64) -> Result<u32> {
        let w = r.u32(at + S_SEQ)?;
        // Even -> odd; an odd (forged) value skips to the next odd so readers keep waiting.
        let odd = w.load(Relaxed).wrapping_add(1) | 1;
        w.store(odd, Relaxed);
        fence(Release);
        Ok(odd)
    }

    pub fn end_write(r: &Region, at: u64, odd: u32) -> Result<()> {
        r.u32(at + S_SEQ)?.store(odd.wrapping_add(1), Release);
        Ok(())
    }

    /// Fills slot `at` with a live entry (seqlocked).
    pub fn publish(
        r: &Region,
        at: u64,
        hash: u64,
        data: u64,
        key_len: u64,
        val_len: u64,
    ) -> Result<()> {
        let odd = Self::begin_write(r, at)?;
        r.u64(at + S_HASH)?.store(hash, Relaxed);
        r.u64(at + S_DATA)?.store(data, Relaxed);
        r.u32(at + S_KEY_LEN)?.store(key_len as u32, Relaxed);
        r.u32(at + S_VAL_LEN)?.store(val_len as u32, Relaxed);
        r.u32(at + S_STATE)?.store(STATE_LIVE, Relaxed);
        Self::end_write(r, at, odd)
    }

    /// Rebuilds the index in a new block sized for `live` entries, dropping tombstones.
    /// Fails with `NeedGrow` (changing nothing) if the new block does not fit yet.
    pub fn rebuild(&self, r: &Region, live: u64) -> Result<()> {
        if live > self.cap {
            return Err(Error::corrupted("entry count exceeds the index size"));
        }
        let arena = Arena { r };
        let cap = ((live + 1) * 2).next_power_of_two().max(INITIAL_TABLE_CAP);
        let bytes = cap
            .checked_mul(SLOT_SIZE)
            .ok_or(Error::corrupted("entry count"))?;
        let block = arena.alloc(bytes)?;
        let new = Table {
            off: block + BLOCK_HEADER,
            cap,
        };
        r.zero(new.off, bytes)?;
        for i in 0..self.cap {
            let s = Self::read_slot(r, self.off + i * SLOT_SIZE)?;
            if s.state != STATE_LIVE {
                continue;
            }
            let at = (0..new.cap)
                .map(|p| new.slot_at(s.hash, p))
                .find(|&at| r.u32(at + S_STATE).map(|w| w.load(Relaxed)) == Ok(STATE_EMPTY))
                .ok_or(Error::corrupted("more live slots than the count says"))?;
            // Keep the entry's SEQ: versions stay monotonic across rebuilds.
            let seq = r.u32(s.at + S_SEQ)?.load(Relaxed);
            r.u32(at + S_SEQ)?.store(seq & !1, Relaxed);
            r.u64(at + S_HASH)?.store(s.hash, Relaxed);
            r.u64(at + S_DATA)?.store(s.data, Relaxed);
            r.u32(at + S_KEY_LEN)?.store(s.key_len as u32, Relaxed);
            r.u32(at + S_VAL_LEN)?.store(s.val_len as u32, Relaxed);
            r.u32(at + S_STATE)?.store(STATE_LIVE, Relaxed);
        }
        Self::publish_location(r, block, cap)?;
        r.u64(H_TOMBSTONES)?.store(0, Relaxed);
        // Publish the new location before the old block can be reused.
        r.u32(H_TABLE_EPOCH)?.fetch_add(1, Release);
        fence(Release);
        arena.free(self.off - BLOCK_HEADER)
    }
}
