//! The integrity check: proves that the shared memory is a consistent store.
//!
//! Used by the stress run and the fault tests (after workers were killed mid-operation) and
//! offered to users as `store.check()`. It takes the writer lock, so a lock that stays held
//! shows up as a timeout, then walks every block of the arena, every free list and every slot
//! of the index and cross-checks them with the header's counters.

use std::sync::atomic::Ordering::Relaxed;

use serde::Serialize;

use crate::arena::{class_size, read_header, Arena};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::store::Store;
use crate::table::Table;

/// What a successful check counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Check {
    /// Live entries (expired ones not yet swept included).
    pub entries: u64,
    /// Bytes of blocks in use, index included: equal to `stats().bytesUsed`.
    pub bytes_used: u64,
    /// Bytes of the index block (all that is in use once every key is deleted, with the log).
    pub index_bytes: u64,
    /// Bytes of the change log's block (0 until someone watched).
    pub log_bytes: u64,
    /// Bytes of blocks on free lists.
    pub bytes_free: u64,
    /// Blocks carved from the arena (in use or free).
    pub blocks: u64,
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
        let table = Table::load(r)?;
        let index_block = table.off - BLOCK_HEADER;
        let top = r.u64(H_ARENA_TOP)?.load(Relaxed);
        if top < HEADER_SIZE || top > r.len() || top % BLOCK_ALIGN != 0 {
            return Err(bad(format!("arena top {top}")));
        }
        // Armed only within one write, under the lock we hold; recovery disarms it.
        if r.u64(U_SLOT)?.load(Relaxed) != 0 || r.u32(H_RECOVERING)?.load(Relaxed) != 0 {
            return Err(bad("an undo record or a recovery is left over".into()));
        }

        // 1. The arena is a sequence of blocks from the header to the top. Remember which
        //    blocks are in use (by offset / 8) to match them with the index below.
        let mut in_use = std::collections::HashSet::new();
        let (mut used, mut free, mut blocks, mut free_blocks, mut ttl) = (0, 0, 0, 0, 0);
        let mut at = HEADER_SIZE;
        while at < top {
            let h = read_header(r, at)?;
            if h.class >= NUM_CLASSES || at + class_size(h.class) > top {
                return Err(bad(format!("block at {at} has a bad size class")));
            }
            let size = class_size(h.class);
            if h.in_use() {
                if h.key_len + h.val_len > h.capacity() {
                    return Err(bad(format!("block at {at} holds more than fits")));
                }
                used += size;
                ttl += (h.flags == FLAGS_TTL) as u64;
                in_use.insert(at);
            } else if h.flags == FLAGS_FREE {
                free += size;
                free_blocks += 1;
            } else {
                return Err(bad(format!("block at {at} has bad flags")));
            }
            blocks += 1;
            at += size;
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

        // 2. Every free block is on exactly the free list of its class, and nothing else is.
        let mut listed = 0;
        for class in 0..NUM_CLASSES {
            let mut block = r.u64(H_FREE_HEADS + 8 * class as u64)?.load(Relaxed);
            while block != 0 {
                let h = arena.check_block(block, false)?;
                if h.class != class {
                    return Err(bad(format!(
                        "free list {class} holds a block of another class"
                    )));
                }
                listed += 1;
                if listed > free_blocks {
                    return Err(bad(
                        "free lists hold more blocks than are free (a cycle?)".into()
                    ));
                }
                block = r.u64(block + B_NEXT_FREE)?.load(Relaxed);
            }
        }
        if listed != free_blocks {
            return Err(bad(format!(
                "{free_blocks} blocks are free but the free lists hold {listed}"
            )));
        }

        // 3. Each live slot points to its own block in use; each block in use is the index or
        //    is pointed to by exactly one slot.
        if !in_use.remove(&index_block) {
            return Err(bad("the index block is not in use".into()));
        }
        let index_bytes = class_size(read_header(r, index_block)?.class);
        let log = self.log_block()?;
        if log != 0 && !in_use.remove(&log) {
            return Err(bad("the change log's block is not in use".into()));
        }
        let log_bytes = if log == 0 {
            0
        } else {
            class_size(read_header(r, log)?.class)
        };
        if log == 0 && r.u32(H_WATCHERS)?.load(Relaxed) != 0 {
            return Err(bad(
                "watchers are registered but there is no change log".into()
            ));
        }
        let (mut entries, mut tombstones) = (0, 0);
        for i in 0..table.cap {
            let slot = table.off + i * SLOT_SIZE;
            if r.u32(slot + S_SEQ)?.load(Relaxed) & 1 == 1 {
                return Err(bad(format!("slot {i} was left mid-write")));
            }
            match r.u32(slot + S_REF)?.load(Relaxed) {
                REF_EMPTY => {}
                REF_TOMBSTONE => tombstones += 1,
                rf => {
                    let block = crate::table::ref_to_block(rf);
                    if !in_use.remove(&block) {
                        return Err(bad(format!("slot {i} points to no block of its own")));
                    }
                    entries += 1;
                }
            }
        }
        if !in_use.is_empty() {
            return Err(bad(format!(
                "{} blocks in use are not in the index",
                in_use.len()
            )));
        }
        if r.u64(H_LIVE)?.load(Relaxed) != entries {
            return Err(bad("entry count".into()));
        }
        if r.u64(H_TOMBSTONES)?.load(Relaxed) != tombstones {
            return Err(bad("tombstone count".into()));
        }
        Ok(Check {
            entries,
            bytes_used: used,
            index_bytes,
            log_bytes,
            bytes_free: free,
            blocks,
        })
    }
}
