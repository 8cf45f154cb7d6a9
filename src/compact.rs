//! Consolidating free fragments in an evicting store, by moving entries.
//!
//! Windows of eviction (evict.rs) free exactly the room a write needs, but when sizes drift
//! each window leaves a remainder: a free fragment smaller than the blocks around it. In a
//! world of equal sizes such a fragment never serves anything, and nothing that only evicts
//! removes it (a block freed next to it merges, and its successor of the same size leaves the
//! same remainder). So after eviction made room, a write also moves a few entries that sit
//! right after a fragment into other free space (a fragment they fit, or the room made when
//! what they leave holds the write too), and each fragment merges with the space its
//! neighbour left: fragments are pushed along and merge with each other until they serve a
//! write. The entry evicted is still the one the hand chose.
//!
//! A move is a copy-on-write set of the same bytes: a new block is filled, the slot is
//! published to it under its seqlock (readers retry, then read the copy), the old block is
//! freed. A writer killed in between leaves one of the two blocks referenced, and recovery
//! frees the other (recover.rs), as for any set. It keeps the entry's version marks, and the
//! change log is not told: nothing changed.
//!
//! Moves are bounded: at most MOVES_PER_WRITE per eviction, only while free fragments hold more than
//! 1/FRAGMENTED_DIVISOR of maxBytes, and the search for an entry after a fragment looks at a
//! bounded number of slots from where it last stopped (H_ROOM_CURSOR).

use std::sync::atomic::Ordering::Relaxed;

use crate::arena::{data_size, Arena};
use crate::error::Result;
use crate::layout::*;
use crate::store::{count, Store};
use crate::table::{load_ref, Ref, Table, Tables};

/// Fragments count only while they hold more than maxBytes / this (about 1.6%).
const FRAGMENTED_DIVISOR: u64 = 64;
/// Slots one write looks at for entries right after a free fragment, and entries it moves.
const SEARCH_SLOTS: u64 = 64;
const MOVES_PER_WRITE: u32 = 4;

impl Store {
    /// After eviction made `room` (a free block, as (start, size)) for a block of `size`
    /// bytes (writer lock held): while free fragments are many, moves up to MOVES_PER_WRITE
    /// entries that follow a free fragment into other free space, never into `room` unless
    /// the space the entry leaves holds `size` too.
    pub(crate) fn consolidate(&self, room: (u64, u64), size: u64) -> Result<()> {
        let r = self.region();
        let arena = Arena { r };
        let tables = Tables::load(r)?;
        let cap = tables.cap();
        let cursor = r.u64(H_ROOM_CURSOR)?;
        let mut i = cursor.load(Relaxed) % cap;
        let (mut moves, mut budget) = (0, SEARCH_SLOTS.min(cap));
        while moves < MOVES_PER_WRITE && budget > 0 && self.fragmented()? {
            budget -= 1;
            let at = tables.slot(i);
            i = (i + 1) % cap;
            let Ref::Live { block, tag } = load_ref(r, at)? else {
                continue;
            };
            let h = arena.check_block(block, true)?;
            if !h.prev_free || self.pinned(block, &h)? {
                continue;
            }
            let (_, fragment) = arena.free_before(block)?;
            // The same reserved capacity, so an in-place rewrite that fitted still fits.
            let reserve = h.capacity() - h.key_len;
            let need = data_size(h.key_len + h.val_len.max(reserve), h.expires_at != 0)?;
            match arena.find_free(need)? {
                Some(b) if b != room.0 || fragment + h.size >= size => {}
                _ => continue, // only the room made, or past the top: nowhere to go
            }
            let (to, nh) = arena.alloc_data(h.key_len, h.val_len, reserve, h.expires_at)?;
            let mut bytes = vec![0; (h.key_len + h.val_len) as usize];
            r.read(key_offset(block, h.header_len), &mut bytes)?;
            r.write(key_offset(to, nh.header_len), &bytes)?;
            Table::publish(r, at, Ref::Live { block: to, tag })?;
            arena.free(block)?;
            count(r, H_MOVES)?;
            moves += 1;
        }
        cursor.store(i, Relaxed);
        Ok(())
    }

    /// Whether free blocks below the top hold more than maxBytes / FRAGMENTED_DIVISOR.
    pub(crate) fn fragmented(&self) -> Result<bool> {
        let r = self.region();
        let top = Arena { r }.top()?;
        let used = r.u64(H_BYTES_IN_USE)?.load(Relaxed);
        Ok((top - HEADER_SIZE).saturating_sub(used) > self.limits.max_bytes / FRAGMENTED_DIVISOR)
    }
}
