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
//!
//! So an interrupted operation happened wholly or not at all, every operation that returned
//! before the kill is kept, and `check()` passes afterwards. Recovery itself only writes what
//! it can write again: a recoverer killed in turn is recovered by the next one.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::{read_header, Arena};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::store::Store;
use crate::table::{next_seq, ref_to_block, Table};
use crate::undo::undo_in_place_rewrite;

impl Store {
    /// Finishes or undoes what a dead writer left (writer lock held, taken over).
    pub(crate) fn recover(&self) -> Result<()> {
        let r = self.region();
        let table = Table::load(r)?;
        undo_in_place_rewrite(r, &table)?;
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
        // One bit per 8-byte boundary of the arena: the blocks the index references.
        let mut referenced = vec![0u64; ((top - HEADER_SIZE) / 8).div_ceil(64) as usize];
        let mut marked = 0u64;
        let mut mark = |block: u64| -> Result<()> {
            if block < HEADER_SIZE || block >= top || block % BLOCK_ALIGN != 0 {
                return Err(Error::corrupted(
                    "index references a block outside the arena",
                ));
            }
            let bit = (block - HEADER_SIZE) / 8;
            let word = &mut referenced[(bit / 64) as usize];
            if *word & (1 << (bit % 64)) != 0 {
                return Err(Error::corrupted("two index slots reference one block"));
            }
            *word |= 1 << (bit % 64);
            marked += 1;
            Ok(())
        };
        mark(table.block())?;
        let log = self.log_block()?;
        if log != 0 {
            mark(log)?;
        }
        let (mut live, mut tombstones) = (0, 0);
        for i in 0..table.cap {
            let at = table.off + i * SLOT_SIZE;
            let seq = r.u32(at + S_SEQ)?;
            let s = seq.load(Relaxed);
            if s & 1 == 1 {
                seq.store(next_seq(s), Release); // whatever REF holds now is whole
            }
            match r.u32(at + S_REF)?.load(Relaxed) {
                REF_EMPTY => {}
                REF_TOMBSTONE => tombstones += 1,
                rf => {
                    let block = ref_to_block(rf);
                    mark(block)?;
                    if !read_header(r, block)?.in_use() {
                        return Err(Error::corrupted("index references a free block"));
                    }
                    live += 1;
                }
            }
        }
        let keep = |block: u64| {
            let bit = (block - HEADER_SIZE) / 8;
            referenced
                .get((bit / 64) as usize)
                .is_some_and(|w| w & (1 << (bit % 64)) != 0)
        };
        // Every referenced block must be one the walk finds (not the middle of another).
        let kept = Arena { r }.reclaim(top, keep)?;
        if kept != marked {
            return Err(Error::corrupted("index references the middle of a block"));
        }
        r.u64(H_LIVE)?.store(live, Relaxed);
        r.u64(H_TOMBSTONES)?.store(tombstones, Relaxed);
        // Readers holding an offset into a block freed here see the index "move" and retry;
        // their read caches drop what they held.
        r.u32(H_TABLE_EPOCH)?.fetch_add(1, Release);
        r.u32(H_RECOVERIES)?.fetch_add(1, Relaxed);
        self.recover_log()
    }
}
