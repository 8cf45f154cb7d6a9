//! `clear()`: every key gone at once for readers, and crash-safe at every store. Locks'
//! leases and getOrSet's turns (keys under PINNED_KEY_PREFIX) are not keys: they stay, as they
//! do for `keys()` and `delete('*')`, so that a clear never hands a held lock to a second
//! holder.
//!
//! The usual way builds a new index holding only those leases (the same blocks), publishes it
//! with one store of the descriptor, and frees the other entries' blocks after (a writer
//! killed before the publish leaves the old index; after it, blocks no index references, which
//! recovery frees).
//!
//! A full store has no room for a new index, and clearing must never need more room than the
//! store has. There the index is emptied where it is, with readers held off by the descriptor's
//! seqlock (odd epoch), and H_CLEARING as the commit point: a writer killed after setting it is
//! rolled forward by recovery (`finish_cut_short`), one killed before left the store as it was.
//! With leases to keep, the other slots become tombstones (an empty slot would cut a lease's
//! probe chain); without, every slot becomes empty.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::{is_pinned, Arena};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::*;
use crate::region::Region;
use crate::store::Store;
use crate::table::{begin_descriptor, end_descriptor, load_ref, Ref, Table, Tables};

/// H_CLEARING: emptying every slot (no leases to keep).
const CLEARING_ALL: u32 = 1;
/// H_CLEARING: tombstoning every slot but the leases'.
const CLEARING_KEYS: u32 = 2;

impl Store {
    /// Deletes every key (not locks' leases); returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        let r = self.region();
        let _guard = self.write_lock()?;
        // The index's growth ends first (bounded by its size, as clear is): one table left.
        self.rehash_all()?;
        let tables = Tables::load(r)?;
        let arena = Arena { r };
        let mut leases = Vec::new();
        for slot in tables.live_slots(r, 0, tables.cap()) {
            // Corrupted: fail before changing anything.
            let block = slot?.1;
            if is_pinned(r, block, &arena.check_block(block, true)?)? {
                leases.push(block);
            }
        }
        // A new index with the leases first (NeedGrow here changes nothing); publishing it
        // removes every key at once for readers. Then the keys' blocks are freed.
        let cap = ((leases.len() as u64 + 1) * 2).max(INITIAL_TABLE_CAP);
        let fresh = match Table::empty(r, cap) {
            Ok(t) => t,
            Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                return self.clear_in_place(tables.t0, !leases.is_empty())
            }
            // The file system is full: the same, in place.
            Err(Error::NoSpace { .. }) => {
                return self.clear_in_place(tables.t0, !leases.is_empty())
            }
            Err(e) => return Err(e),
        };
        let mut key = Vec::new();
        for &block in &leases {
            let hash = self.key_hash_of(block, &mut key)?;
            Table::publish(r, fresh.vacant_for(r, hash)?, Ref::live(block, hash))?;
        }
        Tables::replace(r, fresh)?;
        r.u64(H_TOMBSTONES)?.store(0, Relaxed);
        r.u64(H_LIVE)?.store(leases.len() as u64, Relaxed);
        r.u64(H_LOCKS)?.store(leases.len() as u64, Relaxed);
        self.log_store_event(Event::Clear); // the keys are gone for readers from here
        let mut removed = 0;
        for slot in tables.live_slots(r, 0, tables.cap()) {
            let block = slot?.1;
            if !is_pinned(r, block, &arena.check_block(block, true)?)? {
                arena.free(block)?;
                removed += 1;
            }
        }
        arena.free(tables.t0.block)?;
        Ok(removed)
    }

    /// `clear` where no new index fits: empties `t0` where it is (see the module comment).
    fn clear_in_place(&self, t0: Table, leases: bool) -> Result<u64> {
        let r = self.region();
        let epoch = r.u32(H_TABLE_EPOCH)?;
        begin_descriptor(epoch);
        let mode = if leases { CLEARING_KEYS } else { CLEARING_ALL };
        r.u32(H_CLEARING)?.store(mode, Release); // the commit point
        self.log_store_event(Event::Clear);
        let removed = empty_table(r, t0, mode, true);
        if removed.is_err() {
            // Corrupted memory: still leave no reader waiting on the epoch. Every slot is
            // emptied (the blocks left in use are for check() to report).
            let _ = empty_table(r, t0, mode, false);
        }
        r.u32(H_CLEARING)?.store(0, Release);
        end_descriptor(epoch);
        removed
    }
}

/// Empties (CLEARING_ALL) or tombstones (CLEARING_KEYS) `t0`'s slots of keys, freeing their
/// blocks if `free`, and sets the entry counts. Each slot changes before its block is freed:
/// killed in between, the block is one no slot references, which recovery frees.
fn empty_table(r: &Region, t0: Table, mode: u32, free: bool) -> Result<u64> {
    let arena = Arena { r };
    let (mut removed, mut live, mut tombstones) = (0, 0, 0);
    for i in 0..t0.cap {
        let at = t0.off + i * SLOT_SIZE;
        match load_ref(r, at)? {
            Ref::Empty => {}
            Ref::Tombstone if mode == CLEARING_KEYS => tombstones += 1,
            Ref::Tombstone => Table::publish_marked(r, at, Ref::Empty, 0)?,
            Ref::Live { block, .. } => {
                if mode == CLEARING_KEYS && is_pinned(r, block, &arena.check_block(block, true)?)? {
                    live += 1;
                    continue;
                }
                let gone = if mode == CLEARING_KEYS {
                    tombstones += 1;
                    Ref::Tombstone
                } else {
                    Ref::Empty
                };
                Table::publish_marked(r, at, gone, 0)?;
                if free {
                    arena.free(block)?;
                }
                removed += 1;
            }
        }
    }
    r.u64(H_TOMBSTONES)?.store(tombstones, Relaxed);
    r.u64(H_LIVE)?.store(live, Relaxed);
    r.u64(H_LOCKS)?.store(live, Relaxed); // what stays are leases
    Ok(removed)
}

/// Recovery's part: a clear in place that was cut short after its commit point is finished
/// (the slots of keys emptied or tombstoned; the blocks they referenced are freed by
/// recovery's reclaim, which frees every block no slot references, and recovery recounts).
/// Call with the descriptor still as the writer left it.
pub(crate) fn finish_cut_short(r: &Region) -> Result<()> {
    let mode = r.u32(H_CLEARING)?.load(Relaxed);
    if mode == 0 {
        return Ok(());
    }
    if mode != CLEARING_ALL && mode != CLEARING_KEYS {
        return Err(Error::corrupted("clear state"));
    }
    if r.u64(H_T1)?.load(Relaxed) != 0 {
        return Err(Error::corrupted("a clear during the index's growth"));
    }
    let t0 = Table::at(r, r.u64(H_T0)?.load(Relaxed))?;
    Arena { r }.check_internal(t0.block)?;
    empty_table(r, t0, mode, false)?;
    r.u32(H_CLEARING)?.store(0, Release);
    Ok(())
}
