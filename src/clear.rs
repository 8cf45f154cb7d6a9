//! `clear()`: every entry gone at once for readers, and crash-safe at every store.
//!
//! The usual way builds a new empty index, publishes it with one store of the descriptor, and
//! frees the old entries' blocks after (a writer killed before the publish leaves the old
//! index; after it, blocks no index references, which recovery frees).
//!
//! A full store has no room for a new index, and clearing must never need more room than the
//! store has. There the index is emptied where it is, with readers held off by the descriptor's
//! seqlock (odd epoch), and H_CLEARING as the commit point: a writer killed after setting it is
//! rolled forward by recovery (`finish_cut_short`), one killed before left the store as it was.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::Arena;
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::*;
use crate::region::Region;
use crate::store::Store;
use crate::table::{begin_descriptor, end_descriptor, Ref, Table, Tables};

impl Store {
    /// Deletes every entry; returns how many there were.
    pub fn clear(&self) -> Result<u64> {
        let r = self.region();
        let _guard = self.write_lock()?;
        // The index's growth ends first (bounded by its size, as clear is): one table left.
        self.rehash_all()?;
        let tables = Tables::load(r)?;
        let arena = Arena { r };
        for slot in tables.live_slots(r, 0, tables.cap()) {
            arena.check_block(slot?.1, true)?; // corrupted: fail before changing anything
        }
        // A new empty index first (NeedGrow here changes nothing); publishing it removes
        // every entry at once for readers. Then the old entries' blocks are freed.
        let fresh = match Table::empty(r, INITIAL_TABLE_CAP) {
            Ok(t) => t,
            Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                return self.clear_in_place(tables.t0)
            }
            Err(e) => return Err(e),
        };
        Tables::replace(r, fresh)?;
        r.u64(H_TOMBSTONES)?.store(0, Relaxed);
        r.u64(H_LIVE)?.store(0, Relaxed);
        self.log_store_event(Event::Clear); // the entries are gone for readers from here
        let mut removed = 0;
        for slot in tables.live_slots(r, 0, tables.cap()) {
            arena.free(slot?.1)?;
            removed += 1;
        }
        arena.free(tables.t0.block)?;
        Ok(removed)
    }

    /// `clear` where no new index fits: empties `t0` where it is (see the module comment).
    fn clear_in_place(&self, t0: Table) -> Result<u64> {
        let r = self.region();
        let epoch = r.u32(H_TABLE_EPOCH)?;
        begin_descriptor(epoch);
        r.u32(H_CLEARING)?.store(1, Release); // the commit point
        self.log_store_event(Event::Clear);
        let removed = empty_table(r, t0);
        if removed.is_err() {
            // Corrupted memory: still leave no reader waiting on the epoch. Every slot is
            // emptied (the blocks left in use are for check() to report).
            finish_cut_short(r)?;
        }
        r.u32(H_CLEARING)?.store(0, Release);
        end_descriptor(epoch);
        removed
    }
}

/// Empties `t0`, freeing the blocks of its entries, and zeroes the entry counts. Each slot is
/// emptied before its block is freed: killed in between, the block is one no slot references,
/// which recovery frees.
fn empty_table(r: &Region, t0: Table) -> Result<u64> {
    let arena = Arena { r };
    let mut removed = 0;
    for i in 0..t0.cap {
        let at = t0.off + i * SLOT_SIZE;
        match crate::table::load_ref(r, at)? {
            Ref::Empty => {}
            Ref::Tombstone => Table::publish_marked(r, at, Ref::Empty, 0)?,
            Ref::Live { block, .. } => {
                Table::publish_marked(r, at, Ref::Empty, 0)?;
                arena.free(block)?;
                removed += 1;
            }
        }
    }
    r.u64(H_TOMBSTONES)?.store(0, Relaxed);
    r.u64(H_LIVE)?.store(0, Relaxed);
    Ok(removed)
}

/// Recovery's part: a clear in place that was cut short after its commit point is finished
/// (the slots emptied; the blocks they referenced are freed by recovery's reclaim, which
/// frees every block no slot references). Call with the descriptor still as the writer left it.
pub(crate) fn finish_cut_short(r: &Region) -> Result<()> {
    if r.u32(H_CLEARING)?.load(Relaxed) == 0 {
        return Ok(());
    }
    if r.u64(H_T1)?.load(Relaxed) != 0 {
        return Err(Error::corrupted("a clear during the index's growth"));
    }
    let t0 = Table::at(r, r.u64(H_T0)?.load(Relaxed))?;
    Arena { r }.check_internal(t0.block)?;
    for i in 0..t0.cap {
        let at = t0.off + i * SLOT_SIZE;
        if crate::table::load_ref(r, at)? != Ref::Empty {
            Table::publish_marked(r, at, Ref::Empty, 0)?;
        }
    }
    r.u32(H_CLEARING)?.store(0, Release);
    Ok(())
}
