//! The integrity check: proves that the shared memory is a consistent store.
//!
//! Used by the stress run and the fault tests (after workers were killed mid-operation) and
//! offered to users as `store.check()`. It takes the writer lock, so a lock that stays held
//! shows up as a timeout, then walks every block of the arena, every free list and every slot
//! of the index and cross-checks them with the header's counters.

use std::collections::HashSet;
use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::arena::Arena;
use crate::bitmap::BlockBits;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::store::Store;
use crate::table::{load_slot, Find, Ref, Table, Tables};

/// What a successful check counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Live keys (expired ones not yet swept included; locks' leases apart, in `locks`).
    pub entries: u64,
    /// Locks' leases and getOrSet's turns.
    pub locks: u64,
    /// Bytes of blocks in use, index included: equal to `stats().bytesUsed`.
    pub bytes_used: u64,
    /// Bytes of the index's blocks (all that is in use once every key is deleted, with the
    /// log): one table, or two (three while a new one is prepared) while the index grows.
    pub index_bytes: u64,
    /// Bytes of the change log's block (0 until someone watched).
    pub log_bytes: u64,
    /// Bytes of free blocks (not counting the uncarved space past the arena's top).
    pub bytes_free: u64,
    /// Blocks carved from the arena (in use or free).
    pub blocks: u64,
    /// The largest free block (what the biggest new entry could take without growing).
    pub largest_free: u64,
}

fn bad(what: String) -> Error {
    Error::Corrupted(what)
}

impl Store {
    /// Verifies the whole store under the writer lock; an inconsistency is `Corrupted`.
    pub fn check(&self) -> Result<Check> {
        let r = self.region();
        let _guard = self.write_lock()?;
        let arena = Arena { r };
        let top = arena.top()?;
        if top > r.len() {
            return Err(bad(format!("arena top {top}")));
        }
        // Armed only within one write, under the lock we hold; recovery disarms it.
        if r.u64(U_SLOT)?.load(Relaxed) != 0 || r.u32(H_RECOVERING)?.load(Relaxed) != 0 {
            return Err(bad("an undo record or a recovery is left over".into()));
        }
        if r.u32(H_TABLE_EPOCH)?.load(Relaxed) & 1 == 1 {
            return Err(bad("the index descriptor was left mid-change".into()));
        }

        // 1. The arena is a run of blocks from the header to the top; the free lists hold
        //    exactly its free blocks. Remember the blocks in use to match them with the index.
        let (_, free) = arena.check_free()?;
        // One bit a block (bitmap.rs): a billion entries cost 1/64 of the arena, asked for
        // fallibly, where a hash set of them would take tens of GiB.
        let mut in_use = BlockBits::new(top, "check()")?;
        let mut internal = HashSet::new();
        let (mut used, mut blocks, mut ttl, mut largest_free) = (0, 0, 0, 0);
        for item in arena.walk(HEADER_SIZE) {
            let (at, h) = item?;
            if h.in_use() {
                if h.key_len + h.val_len > h.capacity() {
                    return Err(bad(format!("block at {at} holds more than fits")));
                }
                used += h.size;
                ttl += (h.kind == KIND_TTL) as u64;
                in_use.insert(at)?;
            } else if h.is_internal() {
                used += h.size;
                internal.insert(at);
            } else {
                largest_free = largest_free.max(h.size);
            }
            blocks += 1;
        }
        let counted_used = r.u64(H_BYTES_IN_USE)?.load(Relaxed);
        if used != counted_used {
            return Err(bad(format!(
                "blocks in use hold {used} bytes but the header counts {counted_used}"
            )));
        }
        if r.u64(H_TTL_BLOCKS)?.load(Relaxed) != ttl {
            return Err(bad("count of expiring blocks".into()));
        }
        if r.u64(H_HIGH_WATER)?.load(Relaxed) < top {
            return Err(bad("the high water is below the arena's top".into()));
        }

        // 2. The internal blocks are the tables the descriptor names and the log.
        let tables = Tables::load(r)?;
        let state = r.u32(H_MIG_STATE)?.load(Relaxed);
        let prep = r.u64(H_PREP)?.load(Relaxed);
        match (state, tables.t1.is_some(), prep != 0) {
            (MIG_NONE, false, false) | (MIG_PREPARING, false, true) | (MIG_MOVING, true, false) => {
            }
            _ => return Err(bad(format!("index growth state {state}"))),
        }
        let mut index_bytes = 0;
        let prep_table = if prep != 0 {
            Some(Table::at(r, prep)?)
        } else {
            None
        };
        for t in [Some(tables.t0), tables.t1, prep_table]
            .into_iter()
            .flatten()
        {
            if !internal.remove(&t.block) {
                return Err(bad(format!(
                    "the index table at {} is not a block of its own",
                    t.block
                )));
            }
            index_bytes += arena.header_at(t.block)?.size;
            if arena.header_at(t.block)?.size < INTERNAL_HEADER + t.cap * SLOT_SIZE {
                return Err(bad("an index table is larger than its block".into()));
            }
        }
        let log = self.log_block()?;
        if log != 0 && !internal.remove(&log) {
            return Err(bad("the change log's block is not in use".into()));
        }
        let log_bytes = if log == 0 {
            0
        } else {
            arena.header_at(log)?.size
        };
        if log == 0 && r.u32(H_WATCHERS)?.load(Relaxed) != 0 {
            return Err(bad(
                "watchers are registered but there is no change log".into()
            ));
        }
        if !internal.is_empty() {
            return Err(bad(format!(
                "{} internal blocks are not the index or the log",
                internal.len()
            )));
        }

        // 3. Each live slot points to its own block in use; each block in use is pointed to
        //    by exactly one slot. While entries move, the main table's slots before the cursor
        //    hold none. Each live slot's tag is its key's, and a lookup of its key (in T0,
        //    then T1, as readers look) finds this slot: not unreachable past an empty slot,
        //    not shadowed by the same key live elsewhere.
        let cursor = r.u64(H_MIG_CURSOR)?.load(Relaxed);
        if r.u32(H_CLEARING)?.load(Relaxed) != 0 {
            return Err(bad("a clear was left mid-way".into()));
        }
        let mut counts = [(0u64, 0u64); 2];
        let mut key = Vec::new();
        let mut locks = 0;
        for (which, table) in [(0, Some(tables.t0)), (1, tables.t1)] {
            let Some(table) = table else { continue };
            for i in 0..table.cap {
                let slot = table.off + i * SLOT_SIZE;
                let (seq, lo) = load_slot(r, slot, Relaxed)?;
                if seq & 1 == 1 {
                    return Err(bad(format!("slot {i} was left mid-write")));
                }
                match Ref::of(seq, lo) {
                    Ref::Empty => {}
                    Ref::Tombstone => counts[which].1 += 1,
                    Ref::Live { block, tag } => {
                        if !in_use.remove(block).unwrap_or(false) {
                            return Err(bad(format!("slot {i} points to no block of its own")));
                        }
                        let hash = self.key_hash_of(block, &mut key)?;
                        locks += key.starts_with(PINNED_KEY_PREFIX) as u64;
                        let name = String::from_utf8_lossy(&key);
                        if tag != hash & 7 {
                            return Err(bad(format!(
                                "slot {i} of table {which} has the tag {tag}, but its key {name:?} has {}",
                                hash & 7
                            )));
                        }
                        match tables.find(r, &key, hash)? {
                            Find::Found(s) if s.at == slot => {}
                            Find::Found(s) => {
                                return Err(bad(format!(
                                    "the key {name:?} is live twice (slot {i} of table {which}, and at offset {})",
                                    s.at
                                )))
                            }
                            Find::Vacant(_) => {
                                return Err(bad(format!(
                                    "the key {name:?} in slot {i} of table {which} is unreachable from its probe start"
                                )))
                            }
                        }
                        if which == 0 && tables.t1.is_some() && i < cursor {
                            return Err(bad(format!(
                                "slot {i} was passed by the move but holds an entry"
                            )));
                        }
                        counts[which].0 += 1;
                    }
                }
            }
        }
        if !in_use.is_empty() {
            return Err(bad(format!(
                "{} blocks in use are not in the index",
                in_use.len()
            )));
        }
        let entries = counts[0].0 + counts[1].0;
        if r.u64(H_LIVE)?.load(Relaxed) != entries {
            return Err(bad("entry count".into()));
        }
        if r.u64(H_LOCKS)?.load(Relaxed) != locks {
            return Err(bad("lock count".into()));
        }
        if r.u64(H_TOMBSTONES)?.load(Relaxed) != counts[0].1 {
            return Err(bad("tombstone count".into()));
        }
        if r.u64(H_T1_LIVE)?.load(Relaxed) != counts[1].0
            || r.u64(H_T1_TOMBSTONES)?.load(Relaxed) != counts[1].1
        {
            return Err(bad("the new table's counts".into()));
        }
        Ok(Check {
            entries: entries - locks,
            locks,
            bytes_used: used,
            index_bytes,
            log_bytes,
            bytes_free: free,
            blocks,
            largest_free,
        })
    }
}
