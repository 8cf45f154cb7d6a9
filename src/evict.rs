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
//! - The hand walks the index (both tables while it grows) from where it stopped. An expired
//!   entry is removed at once; a VISITED one loses a bit and is passed over; the first other
//!   one is the victim.
//! - Room for a write is a free block of its size, so the victim is only where a **window**
//!   starts: its block is freed (merging with free neighbours), then the blocks right after
//!   it are evicted too, whatever their recency, until the merged free block holds the write.
//!   A window that meets a block it may not evict (an index table, the change log, a lock)
//!   ends there, its space kept free, and the hand picks the next victim. So evicting frees
//!   space the incoming value can use, whatever the sizes of what was there: an evicting store
//!   never refuses a write for fragmentation, and stays full of live data while sizes drift.
//! - Except where free fragments hold more than 1/64 of maxBytes: the window then starts at one
//!   of the largest, if the blocks after it reach the size before a block it may not evict.
//!   A window from the hand's victim ends where the write fits, and when it runs over small
//!   entries into a large one, most of the large one stays free, a fragment just too small
//!   for the next value (large values after small ones kept 75% of maxBytes live, 20% in such
//!   fragments). A window from a fragment takes it in, and whatever it evicts merges with the
//!   fragment after it: fragments merge until one holds a write (94-95%, benchmark/drift.js).
//! - `lock()` leases are never evicted (a full store must not release a lock).
//! - Eviction is a delete (a tombstone under the slot's seqlock, then the block freed): readers
//!   see the old value or none, never a torn one, and `check()` stays true.

use std::sync::atomic::Ordering::Relaxed;

use crate::arena::{data_size, is_pinned, Arena, Header};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::layout::*;
use crate::store::{count, SetOptions, Store};
use crate::table::{advance_seq, load_ref, load_slot, Find, Ref, Table, Tables};

/// Live entries the hand looks at past its victim for an expired one to take instead.
const EXPIRED_SEARCH: u32 = 64;
/// Windows one write may open that end at a block they may not evict, before it gives up.
/// Windows tried where eviction's hand points before looking for where one can succeed.
const WINDOWS: u32 = 8;
/// The largest free fragments a write that must evict tries to start its window at.
const FRAGMENT_STARTS: usize = 8;
/// Entries the dry runs of those windows may look up in the index, in all (a 180 KB value
/// among 700-byte entries takes about 260).
const WINDOW_LOOKUPS: u32 = 1024;
/// An entry larger than maxBytes / WALK_ABOVE is checked against the longest stretch eviction
/// can free before anything is evicted (a walk of every block; smaller ones always fit).
const WALK_ABOVE: u64 = 64;

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
        let size = data_size(wanted, opts.expires_at != 0)?;
        // A store that refuses writes when full first reclaims its expired entries, once: they
        // are absent, and must not keep a live write out. (An evicting store's hand takes
        // expired entries before live ones as it goes.)
        let mut expired_reclaimed = self.limits.evict;
        let mut reclaim = || -> Result<bool> {
            if expired_reclaimed {
                return Ok(false);
            }
            expired_reclaimed = true;
            Ok(self.reclaim_expired()? > 0)
        };
        loop {
            match self.set_locked(key, hash, value, opts) {
                // Past maxBytes: the region cannot grow, so room must come from entries.
                Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                    if reclaim()? {
                        continue;
                    }
                    let full = Error::Full {
                        needed,
                        max: self.limits.max_bytes,
                    };
                    // A value larger than half the store would empty it: refused at once.
                    if !self.limits.evict || value.len() as u64 > self.limits.max_bytes / 2 {
                        return Err(full);
                    }
                    // Windows stop at blocks eviction never moves: where no stretch between
                    // them holds the entry, evicting would empty the store in vain.
                    let mut room = size;
                    if size > self.limits.max_bytes / WALK_ABOVE {
                        // A growth under way pins two tables; finished, the old one is free.
                        self.rehash_all()?;
                        // A new key (an overwrite never grows the index).
                        if !matches!(
                            Tables::load(self.region())?.find(self.region(), key, hash)?,
                            Find::Found(_)
                        ) {
                            room += self.growth_due()?;
                        }
                        let (_, largest) = self.largest_stretch(self.limits.max_bytes)?;
                        if largest < room {
                            return Err(Error::NoWindow {
                                needed: room,
                                largest,
                            });
                        }
                    }
                    if !self.make_room(room, self.limits.max_bytes)? {
                        let (_, largest) = self.largest_stretch(self.limits.max_bytes)?;
                        return Err(if largest < room {
                            Error::NoWindow {
                                needed: room,
                                largest,
                            }
                        } else {
                            full
                        });
                    }
                }
                // The index must grow and its new table does not fit below maxBytes.
                Err(Error::IndexNeedsRoom { needed }) => {
                    if reclaim()? {
                        continue;
                    }
                    let live = || -> Result<u64> { Ok(self.region().u64(H_LIVE)?.load(Relaxed)) };
                    let before = live()?;
                    // Where no window holds the new table (the old table and the log are pinned
                    // in the way), the windows tried were evicted anyway: fewer live entries
                    // ask for a smaller table next time round, down to the initial one.
                    if !self.limits.evict
                        || !(self.make_room(needed, self.limits.max_bytes)?
                            || live()? < before
                            || self.evict_one()?.is_some())
                    {
                        return Err(Error::Full {
                            needed,
                            max: self.limits.max_bytes,
                        });
                    }
                }
                // The file system holding a store file has no room for the top to move: a
                // store that throws refuses (nothing changed); one that evicts makes room
                // below what the file system gave, as it does below maxBytes.
                Err(Error::NoSpace { end, reserved }) => {
                    if reclaim()? {
                        continue;
                    }
                    let need = end.saturating_sub(Arena { r: self.region() }.top()?);
                    if !self.limits.evict || !self.make_room(need, reserved)? {
                        return Err(Error::NoSpace { end, reserved });
                    }
                }
                Err(Error::AtCapacity { max_entries }) => {
                    if reclaim()? {
                        continue;
                    }
                    if !self.limits.evict || self.evict_one()?.is_none() {
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

    /// Evicts windows of entries until a free block of `size` bytes exists or fits below
    /// maxBytes past the arena's top (writer lock held). False if no more can be evicted.
    ///
    /// While free fragments are many, the first window starts at one of the largest (see the
    /// module's comment). Otherwise, or if none can be used, a window starts where eviction's
    /// hand points; one that runs into a block eviction never moves (a lease, an index table,
    /// the log) ends there. After WINDOWS such windows failed, the store looks for the longest
    /// stretch between those blocks and evicts there, so room that exists is found without
    /// evicting the whole store first.
    pub(crate) fn make_room(&self, size: u64, limit: u64) -> Result<bool> {
        let r = self.region();
        let arena = Arena { r };
        if self.fragmented()? && arena.top()? + size > limit {
            // Room `take` will find.
            let room = |arena: &Arena| -> Result<bool> {
                Ok(arena.find_free(size)?.is_some() || arena.top()? + size <= limit)
            };
            // Expired entries still go before live ones: the sweep's next slots first.
            if r.u64(H_TTL_BLOCKS)?.load(Relaxed) != 0
                && self.expire_slots(EXPIRED_SEARCH as u64)? > 0
                && room(&arena)?
            {
                return Ok(true);
            }
            // Dry runs look each entry up in the index: bounded, for a large write among tiny
            // entries (past the budget, the hand's windows as before).
            let mut lookups = WINDOW_LOOKUPS;
            for (start, len) in arena.largest_free(FRAGMENT_STARTS)? {
                // (A free block of `size` already is one `take` passed over: the head of a
                // list is all it looks at in the list of the size needed.)
                if len >= size || !self.window_reaches(start + len, size - len, &mut lookups)? {
                    continue;
                }
                // The window can still fall short: its last eviction may give space back past
                // the top. The windows below go on from there.
                if self.extend_window(Some((start, len)), size)? && room(&arena)? {
                    return Ok(true);
                }
                break;
            }
        }
        for _ in 0..WINDOWS {
            if arena.top()? + size <= limit {
                return Ok(true);
            }
            let Some((at, block)) = self.victim()? else {
                return Ok(false);
            };
            let free = self.evict(at, block)?;
            if self.extend_window(free, size)? {
                return Ok(true);
            }
        }
        if arena.top()? + size <= limit {
            return Ok(true);
        }
        let (start, len) = self.largest_stretch(limit)?;
        if len < size {
            return Ok(false);
        }
        // Evict the stretch from its start (a block boundary: the arena's first block, or the
        // one after a block eviction never moves); its blocks are free or evictable entries.
        let h = arena.header_at(start)?;
        let free = if h.is_free() {
            Some((start, h.size))
        } else {
            let Some(slot) = self.slot_of(start)? else {
                return Err(Error::corrupted("a block in use is not in the index"));
            };
            self.evict(slot, start)?
        };
        // The last stretch runs on past the top: evicted to its end, it is given back to it.
        if self.extend_window(free, size)? || arena.top()? + size <= limit {
            return Ok(true);
        }
        Err(Error::corrupted(
            "a stretch measured long enough ends early",
        ))
    }

    /// Evicts the blocks right after the free block `free` (as (start, size); None: given
    /// back to the top) until it holds `size`, and consolidates; false where a block eviction
    /// never moves, or the top, ends the window first.
    fn extend_window(&self, mut free: Option<(u64, u64)>, size: u64) -> Result<bool> {
        let arena = Arena { r: self.region() };
        while let Some((start, len)) = free {
            if len >= size {
                self.consolidate((start, len), size)?;
                return Ok(true);
            }
            let next = start + len;
            if next >= arena.top()? {
                break;
            }
            let h = arena.header_at(next)?;
            if !h.in_use() || self.pinned(next, &h)? {
                break; // an index table, the log or a lock: the window ends here
            }
            let Some(slot) = self.slot_of(next)? else {
                return Err(Error::corrupted("a block in use is not in the index"));
            };
            free = self.evict(slot, next)?;
        }
        Ok(false)
    }

    /// Whether the blocks from `at` on hold `more` bytes before the top, a block eviction never
    /// moves, or an entry read since the hand last passed it (a window from a fragment keeps
    /// the hand's second chances). A dry run of `extend_window`: nothing is evicted.
    fn window_reaches(&self, mut at: u64, mut more: u64, lookups: &mut u32) -> Result<bool> {
        let r = self.region();
        let arena = Arena { r };
        let top = arena.top()?;
        while more > 0 {
            if at >= top {
                return Ok(false);
            }
            let h = arena.header_at(at)?;
            if h.in_use() {
                if self.pinned(at, &h)? || *lookups == 0 {
                    return Ok(false);
                }
                *lookups -= 1;
                let Some(slot) = self.slot_of(at)? else {
                    return Err(Error::corrupted("a block in use is not in the index"));
                };
                if load_slot(r, slot, Relaxed)?.0 & SEQ_VISITED != 0 {
                    return Ok(false);
                }
            } else if !h.is_free() {
                return Ok(false); // an index table or the log
            }
            more = more.saturating_sub(h.size);
            at += h.size;
        }
        Ok(true)
    }

    /// The longest run of blocks that eviction can free into one (free blocks and entries
    /// other than leases, up to maxBytes past the top), between the blocks it never moves:
    /// index tables, the change log, leases. Walks every block (writer lock held).
    /// Returns it as (start, length).
    fn largest_stretch(&self, limit: u64) -> Result<(u64, u64)> {
        let r = self.region();
        let arena = Arena { r };
        let (mut best, mut start) = ((HEADER_SIZE, 0), HEADER_SIZE);
        for item in arena.walk(HEADER_SIZE) {
            let (at, h) = item?;
            if h.is_internal() || (h.in_use() && self.pinned(at, &h)?) {
                if at - start > best.1 {
                    best = (start, at - start);
                }
                start = at + h.size;
            }
        }
        let tail = limit.saturating_sub(start);
        Ok(if tail > best.1 { (start, tail) } else { best })
    }

    /// Evicts one entry, for the entry count (writer lock held). None if none can be.
    pub(crate) fn evict_one(&self) -> Result<Option<()>> {
        match self.victim()? {
            Some((at, block)) => self.evict(at, block).map(|_| Some(())),
            None => Ok(None),
        }
    }

    /// Removes the entry at slot `at` (block `block`) to make room, as an expiry if it has
    /// expired; returns the free block its block became part of (None: the uncarved space).
    fn evict(&self, at: u64, block: u64) -> Result<Option<(u64, u64)>> {
        let r = self.region();
        let expired = Arena { r }
            .check_block(block, true)?
            .expired((self.clock)());
        let (event, counter) = if expired {
            (Event::Expire, H_EXPIRED)
        } else {
            (Event::Evict, H_EVICTIONS)
        };
        let free = self.remove_merged(at, block, event)?;
        count(r, counter)?;
        Ok(free)
    }

    /// Whether the entry in `block` may never be evicted (a lock's lease).
    pub(crate) fn pinned(&self, block: u64, h: &Header) -> Result<bool> {
        is_pinned(self.region(), block, h)
    }

    /// The slot that references the data block `block` (writer lock held).
    fn slot_of(&self, block: u64) -> Result<Option<u64>> {
        let r = self.region();
        let mut key = Vec::new();
        let hash = self.key_hash_of(block, &mut key)?;
        Ok(match Tables::load(r)?.find(r, &key, hash)? {
            Find::Found(s) if s.block == block => Some(s.at),
            _ => None,
        })
    }

    /// The next victim of the hand (writer lock held): an expired entry, or the first not read
    /// since the hand last passed it. Moves the hand past it. None: nothing can be evicted.
    fn victim(&self) -> Result<Option<(u64, u64)>> {
        let r = self.region();
        let tables = Tables::load(r)?;
        let cap = tables.cap();
        let arena = Arena { r };
        let hand = r.u64(H_HAND)?;
        let mut i = hand.load(Relaxed) % cap;
        let now = (self.clock)();
        // Expired entries go first: with any entry that can expire, the hand looks a little
        // past its victim for one.
        let may_expire = r.u64(H_TTL_BLOCKS)?.load(Relaxed) != 0;
        let (mut victim, mut looked) = (None, 0);
        // Three turns: after two, every entry has lost both its VISITED bits.
        for _ in 0..3 * cap {
            let at = tables.slot(i);
            i = (i + 1) % cap;
            let Ref::Live { block, .. } = load_ref(r, at)? else {
                continue;
            };
            let h = arena.check_block(block, true)?;
            if h.expired(now) {
                // The hand moves on past what it passed, up to a victim it found first (which
                // it reconsiders next time): entries whose second chance it took stay behind.
                if victim.is_none() {
                    hand.store(i, Relaxed);
                }
                return Ok(Some((at, block)));
            }
            if self.pinned(block, &h)? {
                continue; // a lock: never evicted
            }
            if victim.is_some() {
                looked += 1;
                if looked >= EXPIRED_SEARCH {
                    break;
                }
                continue;
            }
            let s = load_slot(r, at, Relaxed)?.0;
            if s & SEQ_VISITED != 0 {
                // Another chance: one mark bit less. And a new version (the count moves on by
                // two, staying even), not the one before the mark: a reader that read that one
                // must see its next read as new, and hand it over again.
                let left = if s & SEQ_VISITED_RECENT != 0 {
                    s & SEQ_VISITED & !SEQ_VISITED_RECENT
                } else {
                    0
                };
                let (next, wrapped) = advance_seq(s & !SEQ_VISITED, 2);
                Table::set_seq(r, at, next | left, wrapped)?;
                continue;
            }
            victim = Some((at, block));
            hand.store(i, Relaxed);
            if !may_expire {
                break;
            }
        }
        Ok(victim)
    }

    /// Marks entries read: each `(SEQ word offset, SEQ)` a reader saw on a hit. Only an entry
    /// still at that version, in a current table, and not fully marked gets the VISITED bits.
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
        let tables = Tables::load(r)?;
        for &(off, seen_seq) in seen {
            let slot = off.wrapping_sub(S_SEQ);
            if !tables.holds(slot) {
                continue; // an older index's slot (it moved since): nothing to mark
            }
            let (s, lo) = load_slot(r, slot, Relaxed)?;
            let live = matches!(Ref::of(s, lo), Ref::Live { .. });
            if live && s == seen_seq && s & 1 == 0 && s & SEQ_VISITED != SEQ_VISITED {
                Table::set_seq(r, slot, s | SEQ_VISITED, false)?;
            }
        }
        Ok(true)
    }
}
