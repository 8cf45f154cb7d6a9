//! Eviction: a full store (at `maxBytes` or `maxEntries`) that was formatted with
//! `onFull: 'evict'` makes room for a write by removing entries, approximately least recently
//! used first (CLOCK, a second chance per read):
//!
//! - Reads mark an entry VISITED (the top two bits of its slot's SEQ; a pass of the hand clears
//!   one, so a marked entry survives two passes). Readers never write to the shared
//!   memory themselves: a thread collects the versions it read and hands them over in batches
//!   (`mark_visited`), which sets the bit under the writer lock, only on an entry still at the
//!   version read, and only if it is not set yet. So a hot key costs one mark per pass of the
//!   hand, and a reader never writes into memory that may have been freed meanwhile.
//! - The hand walks the index from where it stopped. An expired entry is removed at once; a
//!   VISITED one loses its bit and is passed over; the first other one is evicted. Blocks come in
//!   size classes that are not merged, so the hand looks a little further for a victim whose
//!   block serves the write that needs room (same class, or the last block before the arena's
//!   top), and takes the first unvisited one otherwise.
//! - `lock()` leases are never evicted (a full store must not release a lock).
//! - Eviction is a delete (a tombstone under the slot's seqlock, then the block freed): readers
//!   see the old value or none, never a torn one, and `check()` stays true.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::{class_size, data_class, Arena};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::*;
use crate::store::{count, SetOptions, Store};
use crate::table::{next_seq, ref_to_block, Table};

/// Unvisited entries of another class the hand passes over before it takes the first of them.
const CLASS_SEARCH: u32 = 256;
/// Live entries the hand looks at past its victim for an expired one to take instead.
const EXPIRED_SEARCH: u32 = 64;
/// Evictions one write may make of blocks that do not serve it, before it gives up (`Full`).
const MAX_UNHELPFUL: u32 = 256;

/// What `evict_one` removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evicted {
    /// An expired entry, or one whose block serves the write (its class, or the arena's top).
    Serving,
    /// An entry whose block does not.
    Other,
    /// Nothing: the store holds no evictable entry.
    Nothing,
}

impl Store {
    /// `set_locked`, evicting entries when the store is full and formatted to evict.
    pub(crate) fn set_making_room(
        &self,
        key: &[u8],
        hash: u32,
        value: &[u8],
        opts: &SetOptions,
    ) -> Result<()> {
        let wanted = (key.len() + value.len().max(opts.reserve as usize)) as u64;
        let class = data_class(wanted, opts.expires_at != 0)?.0;
        // Blocks are not merged: evicting entries of other classes frees room only where it
        // happens to be at the arena's top. Past a few of those, more would only empty the
        // store for a write that still would not fit.
        let mut unhelpful = 0;
        loop {
            match self.set_locked(key, hash, value, opts) {
                // Past maxBytes: the region cannot grow, so room must come from entries.
                Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                    let full = Error::Full {
                        needed,
                        max: self.limits.max_bytes,
                    };
                    if !self.limits.evict || class_size(class) > self.limits.max_bytes / 2 {
                        return Err(full);
                    }
                    match self.evict_one(Some(class))? {
                        Evicted::Serving => {}
                        Evicted::Other if unhelpful < MAX_UNHELPFUL => unhelpful += 1,
                        _ => return Err(full),
                    }
                }
                // Each eviction makes the index a rebuild needs smaller: no cap here.
                Err(Error::IndexNeedsRoom { needed }) => {
                    if self.evict_one(None)? == Evicted::Nothing {
                        return Err(Error::Full {
                            needed,
                            max: self.limits.max_bytes,
                        });
                    }
                }
                Err(Error::AtCapacity { max_entries }) => {
                    if !self.limits.evict || self.evict_one(None)? == Evicted::Nothing {
                        return Err(Error::AtCapacity { max_entries });
                    }
                }
                Ok(()) => {
                    self.log_change(Event::Set, key);
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Removes one entry to make room (writer lock held): expired first, then the first not
    /// read since the hand last passed it. `class`: the size class a write needs.
    pub(crate) fn evict_one(&self, class: Option<u32>) -> Result<Evicted> {
        let r = self.region();
        let table = Table::load(r)?;
        let arena = Arena { r };
        let hand = r.u64(H_HAND)?;
        let mut at_slot = hand.load(Relaxed) % table.cap;
        let now = (self.clock)();
        let top = r.u64(H_ARENA_TOP)?.load(Relaxed);
        // Expired entries go first: with any entry that can expire, the hand looks a little
        // past its victim for one.
        let may_expire = r.u64(H_TTL_BLOCKS)?.load(Relaxed) != 0;
        let (mut victim, mut fallback, mut passed, mut looked) = (None, None, 0, 0);
        let mut victim_serves = false;
        // Three turns: after two, every entry has lost both its VISITED bits.
        for _ in 0..3 * table.cap {
            let at = table.off + at_slot * SLOT_SIZE;
            at_slot = (at_slot + 1) % table.cap;
            let rf = r.u32(at + S_REF)?.load(Relaxed);
            if rf == REF_EMPTY || rf == REF_TOMBSTONE {
                continue;
            }
            let block = ref_to_block(rf);
            let h = arena.check_block(block, true)?;
            if h.expired(now) {
                self.remove_locked(at, block, Event::Expire)?;
                count(r, H_EXPIRED)?;
                // The hand moves on past what it passed, up to a victim it found first (which
                // it reconsiders next time): entries whose second chance it took stay behind.
                let next = match victim {
                    Some((_, _, after_victim)) => (after_victim + table.cap - 1) % table.cap,
                    None => at_slot,
                };
                hand.store(next, Relaxed);
                // Freed space of another class still counts as room made for the entry count.
                return Ok(Evicted::Serving);
            }
            if h.key_len >= PINNED_KEY_PREFIX.len() as u64
                && r.eq(key_offset(block, h.header_len), PINNED_KEY_PREFIX)?
            {
                continue; // a lock: never evicted
            }
            if victim.is_some() {
                looked += 1;
                if looked >= EXPIRED_SEARCH {
                    break;
                }
                continue;
            }
            let seq = r.u32(at + S_SEQ)?;
            let s = seq.load(Relaxed);
            if s & SEQ_VISITED != 0 {
                // Another chance: one mark bit less. And a new version (the count moves on by
                // two, staying even), not the one before the mark: a reader that read that one
                // must see its next read as new, and hand it over again.
                let left = if s & SEQ_VISITED_RECENT != 0 {
                    s & SEQ_VISITED & !SEQ_VISITED_RECENT
                } else {
                    0
                };
                seq.store(next_seq(next_seq(s & !SEQ_VISITED)) | left, Release);
                continue;
            }
            let serves = class.is_none_or(|c| h.class == c || block + class_size(h.class) == top);
            if !serves && passed < CLASS_SEARCH {
                passed += 1;
                fallback.get_or_insert((at, block, at_slot));
                continue;
            }
            victim = Some((at, block, at_slot));
            victim_serves = serves;
            if !may_expire {
                break;
            }
        }
        let how = if victim_serves {
            Evicted::Serving
        } else {
            Evicted::Other
        };
        match (victim, fallback) {
            (Some((at, block, next)), _) => self.evict(at, block, next).map(|_| how),
            (None, Some((at, block, next))) => self.evict(at, block, next).map(|_| Evicted::Other),
            (None, None) => Ok(Evicted::Nothing),
        }
    }

    fn evict(&self, at: u64, block: u64, next_slot: u64) -> Result<()> {
        let r = self.region();
        self.remove_locked(at, block, Event::Evict)?;
        count(r, H_EVICTIONS)?;
        r.u64(H_HAND)?.store(next_slot, Relaxed);
        Ok(())
    }

    /// Marks entries read: each `(SEQ word offset, SEQ)` a reader saw on a hit. Only an entry
    /// still at that version, in the current index, and not fully marked gets the VISITED bits.
    /// A no-op for a store that does not evict.
    /// Returns false if the writer lock was busy and nothing was marked.
    pub fn mark_visited(&self, seen: &[(u64, u32)]) -> Result<bool> {
        if !self.limits.evict || seen.is_empty() {
            return Ok(true);
        }
        let r = self.region();
        // Readers never wait for a writer: if the lock is busy, the marks are dropped (they
        // are hints; the reader hands over the next ones).
        let Some(_guard) = self.try_write_lock()? else {
            return Ok(false);
        };
        let table = Table::load(r)?;
        let end = table.off + table.cap * SLOT_SIZE;
        for &(off, seen_seq) in seen {
            let slot = off.wrapping_sub(S_SEQ);
            if slot < table.off || slot >= end || (slot - table.off) % SLOT_SIZE != 0 {
                continue; // an older index's slot (it moved since): nothing to mark
            }
            let seq = r.u32(off)?;
            let s = seq.load(Relaxed);
            let live = !matches!(
                r.u32(slot + S_REF)?.load(Relaxed),
                REF_EMPTY | REF_TOMBSTONE
            );
            if live && s == seen_seq && s & 1 == 0 && s & SEQ_VISITED != SEQ_VISITED {
                seq.store(s | SEQ_VISITED, Release);
            }
        }
        Ok(true)
    }
}
