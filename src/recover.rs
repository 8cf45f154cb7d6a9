//! Recovery: what the writer that takes over a dead holder's lock does before anything else.
//!
//! A store in a file outlives the processes that write it, and SIGKILL or the OOM killer stop
//! a process at any instruction, also inside a write. The write paths are ordered so that the
//! shared memory is always one of a few states recovery can finish or undo:
//!
//! - A new value goes into a fresh block, which becomes visible by one atomic store of its
//!   slot's REF (under the slot's seqlock); the old block is freed after. An index rebuild and
//!   `clear()` build a whole new index block, published by one store of the table location.
//!   Killed before the publishing store: the new block is referenced by nothing. Killed after:
//!   the old block is. Either way the index is whole, and recovery frees every block in use
//!   that the index does not reference.
//! - A block's header is written before the arena top moves past it, and a freed block is
//!   marked free before it is linked, so the arena is always a walkable run of blocks; the free
//!   lists and the counters are rebuilt from it.
//! - A value rewritten in place (the fast path for a same-size overwrite) is first saved in the
//!   header's undo record (`U_*` in layout.rs). If its slot's SEQ is still odd, the rewrite was
//!   cut short: the old bytes go back. If SEQ is even, it either had not begun or had finished,
//!   and the value is whole as it is.
//! - A SEQ left odd is made even (a new version), so no reader waits on it.
//! - The index's growth (rehash.rs) changes where the tables are under the descriptor's
//!   seqlock; a change cut short (epoch odd) is finished from what the words say. An entry
//!   moved to the new table but not yet tombstoned in the old one (killed between the two
//!   stores) keeps its new slot.
//!
//! So an interrupted operation happened wholly or not at all, every operation that returned
//! before the kill is kept, and `check()` passes afterwards. Recovery itself only writes what
//! it can write again: a recoverer killed in turn is recovered by the next one.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::{read_header, Arena};
use crate::bitmap::BlockBits;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::store::Store;
use crate::table::{load_slot, next_seq, Ref, Table, Tables};
use crate::undo::undo_in_place_rewrite;

impl Store {
    /// Finishes or undoes what a dead writer left (writer lock held, taken over).
    pub(crate) fn recover(&self) -> Result<()> {
        let r = self.region();
        let tables = settle_descriptor(r)?;
        undo_in_place_rewrite(r, &tables)?;
        let top = r.u64(H_ARENA_TOP)?.load(Relaxed);
        if top < HEADER_SIZE || top % BLOCK_ALIGN != 0 {
            return Err(Error::corrupted("arena top"));
        }
        if top > r.len() {
            // Maybe a buffer another thread grew: the caller catches up and retries.
            return Err(Error::OutOfBounds {
                off: HEADER_SIZE,
                size: top - HEADER_SIZE,
            });
        }
        // The blocks the index references (bitmap.rs: committed only where a bit is set, and
        // ENOMEM, not an abort, for a process that cannot have it).
        let mut referenced = BlockBits::new(top, "recovering the store")?;
        let mut mark = |block: u64| -> Result<bool> {
            referenced
                .insert(block)
                .map_err(|_| Error::corrupted("index references a block outside the arena"))
        };
        let prep = match r.u32(H_MIG_STATE)?.load(Relaxed) {
            MIG_PREPARING => r.u64(H_PREP)?.load(Relaxed),
            _ => 0,
        };
        for block in [
            tables.t0.block,
            tables.t1.map_or(0, |t| t.block),
            prep,
            self.log_block()?,
        ] {
            if block != 0 && !mark(block)? {
                return Err(Error::corrupted("two internal blocks in one place"));
            }
        }
        // The new table first: an entry both tables reference keeps its new slot.
        let mut counts = [(0u64, 0u64); 2]; // (live, tombstones) of T0 and T1
        let (mut key, mut repaired, mut locks) = (Vec::new(), 0u64, 0u64);
        let order = [(1, tables.t1), (0, Some(tables.t0))];
        for (which, table) in order {
            let Some(table) = table else { continue };
            for i in 0..table.cap {
                let at = table.off + i * SLOT_SIZE;
                let (s, lo) = load_slot(r, at, Relaxed)?;
                if s & 1 == 1 {
                    // A slot changes in one store, so it is whole; only the odd phase of an
                    // in-place rewrite (undone above, or never begun) is left to end.
                    Table::set_seq(r, at, next_seq(s), false)?;
                }
                match Ref::of(s, lo) {
                    Ref::Empty => {}
                    Ref::Tombstone => counts[which].1 += 1,
                    Ref::Live { block, tag } => {
                        if !mark(block)? {
                            if which == 1 {
                                return Err(Error::corrupted(
                                    "two index slots reference one block",
                                ));
                            }
                            // A move cut short: the old slot goes.
                            Table::publish(r, at, Ref::Tombstone)?;
                            counts[0].1 += 1;
                            continue;
                        }
                        if !read_header(r, block)?.in_use() {
                            return Err(Error::corrupted("index references a free block"));
                        }
                        // The backstop: a slot whose tag is not its key's is skipped by every
                        // lookup, a ghost the next growth would bring back.
                        let want = self.key_hash_of(block, &mut key)? & 7;
                        locks += key.starts_with(PINNED_KEY_PREFIX) as u64;
                        if tag != want {
                            Table::publish(r, at, Ref::Live { block, tag: want })?;
                            repaired += 1;
                        }
                        counts[which].0 += 1;
                    }
                }
            }
        }
        // Every referenced block must be one the walk finds (not the middle of another).
        let kept = Arena { r }.reclaim(top, |block| referenced.contains(block))?;
        if kept != referenced.len() {
            return Err(Error::corrupted("index references the middle of a block"));
        }
        r.u64(H_LIVE)?.store(counts[0].0 + counts[1].0, Relaxed);
        r.u64(H_LOCKS)?.store(locks, Relaxed);
        r.u64(H_TOMBSTONES)?.store(counts[0].1, Relaxed);
        r.u64(H_T1_LIVE)?.store(counts[1].0, Relaxed);
        r.u64(H_T1_TOMBSTONES)?.store(counts[1].1, Relaxed);
        // Readers holding an offset into a block freed here see the index "move" and retry;
        // their read caches drop what they held.
        r.u32(H_TABLE_EPOCH)?.fetch_add(2, Release);
        r.u32(H_RECOVERIES)?.fetch_add(1, Relaxed);
        if repaired > 0 {
            let w = r.u64(H_REPAIRS)?;
            w.store(w.load(Relaxed).saturating_add(repaired), Relaxed);
        }
        self.recover_log()
    }
}

/// Finishes a change of the index descriptor that a dead writer cut short, from what its
/// words say (see rehash.rs for the orders they are written in), and returns the tables.
fn settle_descriptor(r: &crate::region::Region) -> Result<Tables> {
    let epoch = r.u32(H_TABLE_EPOCH)?;
    crate::clear::finish_cut_short(r)?;
    let state = r.u32(H_MIG_STATE)?;
    let (t0, t1) = (r.u64(H_T0)?, r.u64(H_T1)?);
    if t1.load(Relaxed) != 0 && t1.load(Relaxed) == t0.load(Relaxed) {
        t1.store(0, Relaxed); // the move's end, cut short after T0 became the new table
    }
    match (state.load(Relaxed), t1.load(Relaxed)) {
        (MIG_PREPARING, b) if b != 0 => {
            // Publishing the prepared table, cut short after T1 was set.
            state.store(MIG_MOVING, Relaxed);
            r.u64(H_PREP)?.store(0, Relaxed);
        }
        (MIG_MOVING, 0) => {
            state.store(MIG_NONE, Relaxed);
            r.u64(H_MIG_CURSOR)?.store(0, Relaxed);
        }
        (MIG_NONE, b) if b != 0 => return Err(Error::corrupted("index growth state")),
        (MIG_NONE | MIG_PREPARING | MIG_MOVING, _) => {}
        _ => return Err(Error::corrupted("index growth state")),
    }
    if state.load(Relaxed) != MIG_PREPARING {
        r.u64(H_PREP)?.store(0, Relaxed); // a table being allocated when the writer died
    }
    if state.load(Relaxed) == MIG_NONE {
        r.u64(H_MIG_CURSOR)?.store(0, Relaxed);
    }
    let tables = Tables::load(r)?;
    let arena = Arena { r };
    arena.check_internal(tables.t0.block)?;
    if let Some(t1) = tables.t1 {
        arena.check_internal(t1.block)?;
        if r.u64(H_MIG_CURSOR)?.load(Relaxed) > tables.t0.cap {
            return Err(Error::corrupted("index growth cursor"));
        }
    }
    if state.load(Relaxed) == MIG_PREPARING {
        let prep = Table::at(r, r.u64(H_PREP)?.load(Relaxed))?;
        arena.check_internal(prep.block)?;
        if r.u64(H_MIG_CURSOR)?.load(Relaxed) > prep.cap * SLOT_SIZE {
            return Err(Error::corrupted("index growth cursor"));
        }
    }
    let e = epoch.load(Relaxed);
    if e & 1 == 1 {
        epoch.store(e.wrapping_add(1), Release);
    }
    Ok(tables)
}
