//! The store: get / set / delete over one region, composed from the lock, arena and index.

use std::sync::atomic::{Ordering::Acquire, Ordering::Relaxed, Ordering::Release};

use crate::sync::fence;

use serde::{de::DeserializeOwned, Serialize};

use crate::arena::{data_size, Arena};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::hash::hash_key;
use crate::layout::*;
use crate::lock::{lock, Backoff, LockWords, WriteGuard, WAIT_TIMEOUT};
use crate::region::Region;
use crate::table::{load_ref, Find, Read, Ref, Room, Table, Tables};
use crate::undo::{arm_undo, disarm_undo};
use std::time::Duration;

/// One thread's handle on a store region. Cheap; each thread attaches its own.
pub struct Store {
    region: Region,
    /// Copied at attach time: a seed overwritten later in shared memory cannot redirect us.
    seed: u64,
    /// How long an operation waits for the writer lock or a slot being written.
    pub wait_timeout: Duration,
    /// The time expiry is judged by (replaceable in tests).
    pub clock: fn() -> u64,
    /// STORE_PROCESS_SHARED: a writer may be killed mid-write (in-place rewrites keep an undo).
    process_shared: bool,
    /// The eviction settings, copied at attach time (fixed when the store was formatted).
    pub(crate) limits: Limits,
    /// SLEEP_* bits of watchers a write of this handle must wake (see changelog.rs): futex
    /// sleepers are woken when the writer lock is released, JS ones by the binding.
    wake: std::sync::atomic::AtomicU32,
    /// Reads this handle made while the index grew (see `rehash::read_during_growth`).
    pub(crate) growth_reads: std::sync::atomic::AtomicU32,
    /// Reads through this handle leave no trace: no help to an index growth (openStore's
    /// `readOnly`; the binding also skips eviction marks).
    pub read_only: bool,
}

/// The writer lock, held by one of this store's operations: releasing it wakes the watchers
/// that operation's writes must wake.
pub struct StoreGuard<'a> {
    lock: Option<WriteGuard<'a>>,
    store: &'a Store,
}

impl StoreGuard<'_> {
    /// Leaves the lock held, as a process killed at this point would (for tests).
    pub fn abandon(mut self) {
        if let Some(lock) = self.lock.take() {
            lock.abandon();
        }
    }
}

impl Drop for StoreGuard<'_> {
    fn drop(&mut self) {
        drop(self.lock.take());
        self.store.wake_futex_sleepers();
    }
}

/// What a full store does, fixed when it is formatted (kept in the header, so every thread and
/// process agrees).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Evict entries to make room (approximately least recently used first), instead of
    /// refusing the write with `Full`.
    pub evict: bool,
    /// The most entries (0: no limit).
    pub max_entries: u64,
    /// The most bytes the region may grow to.
    pub max_bytes: u64,
    /// The keys the index is sized for from the first new key on (`expectedKeys`; 0: none):
    /// growth to that many runs no migration, and no rebuild goes below it.
    pub expected_keys: u64,
}

impl Limits {
    /// The fewest index slots a rebuild makes (0: as many as the live entries need).
    pub fn index_floor_slots(&self) -> u64 {
        let evicting = if self.evict && self.max_entries != 0 {
            self.max_entries.saturating_add(1).saturating_mul(4)
        } else {
            0
        };
        self.capped(evicting).max(self.expected_index_slots())
    }

    /// The slots of the table sized for `expected_keys` (what a growth to that many makes).
    pub fn expected_index_slots(&self) -> u64 {
        match self.expected_keys {
            0 => 0,
            keys => self.capped(keys.saturating_add(1).saturating_mul(2)),
        }
    }

    /// At most a quarter of maxBytes: a size the bytes cannot hold anyway must not ask for an
    /// index larger than the store.
    fn capped(&self, slots: u64) -> u64 {
        slots
            .min(self.max_bytes / 4 / SLOT_SIZE)
            .min(u32::MAX as u64) // T_CAP is 32 bits
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            evict: false,
            max_entries: 0,
            max_bytes: MAX_REGION_BYTES,
            expected_keys: 0,
        }
    }
}

/// What `modify`'s closure does with the entry.
pub enum Change {
    Keep,
    /// Store these bytes, with this expiry (None: keep the entry's).
    Set(Vec<u8>, Option<u64>),
    Delete,
}

/// How `set_with` writes.
#[derive(Debug, Clone, Copy, Default)]
pub struct SetOptions {
    /// Move the value to a block of its own size class instead of reusing a larger one.
    pub refit: bool,
    /// Always write new space (readers holding the old version's location see it change).
    pub immutable: bool,
    /// Room for at least this many value bytes, so a growing value stays in place.
    pub reserve: u64,
    /// Expiry time in ms since the Unix epoch; 0: never.
    pub expires_at: u64,
}

/// Milliseconds since the Unix epoch (the default clock; JS's Date.now() on the same machine).
pub fn system_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A snapshot of the store's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Keys (locks' leases and getOrSet's turns are counted apart, in `locks`).
    pub entries: u64,
    /// Locks held (`lock()` leases) and getOrSet loads under way.
    pub locks: u64,
    /// Bytes in allocated blocks (index included).
    pub bytes_used: u64,
    /// Bytes carved from the region so far (used + free blocks + header).
    pub bytes_reserved: u64,
    pub buffer_bytes: u64,
    pub index_slots: u64,
    /// Times a writer killed holding the lock was taken over and its work recovered.
    pub recoveries: u64,
    /// Entries evicted to make room.
    pub evictions: u64,
    /// Expired entries reclaimed.
    pub expired: u64,
    /// Entries moved to merge free fragments (see compact.rs).
    pub moves: u64,
    /// Threads (of any process) watching the store.
    pub watchers: u64,
    /// Index slots whose tag recovery found wrong and repaired (none expected).
    pub repairs: u64,
    /// The index is growing (or being rebuilt): entries move to the new table a slice per
    /// write, and `index_slots` counts both tables.
    pub growing: bool,
}

/// Live entries that are keys: all of them but locks' leases and getOrSet's turns.
fn key_count(r: &Region) -> Result<u64> {
    Ok(r.u64(H_LIVE)?
        .load(Relaxed)
        .saturating_sub(r.u64(H_LOCKS)?.load(Relaxed)))
}

/// Adds one to the u64 counter at `at` (writer lock held).
pub(crate) fn count(r: &Region, at: u64) -> Result<()> {
    let w = r.u64(at)?;
    w.store(w.load(Relaxed).wrapping_add(1), Relaxed);
    Ok(())
}

/// Identifies one version of one entry: it changes whenever the entry is written or deleted,
/// or the index moves. A reader that cached a value can check it is still current by reading
/// two words: the u32 at `seq_offset` must still be `seq`, then the header's table epoch must
/// still be `epoch` (in that order: the epoch changes before an old index block is reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub epoch: u32,
    pub seq: u32,
    pub seq_offset: u64,
    /// When the entry expires (ms since the Unix epoch; 0: never): a cached copy is only
    /// current before then.
    pub expires_at: u64,
}

/// Smallest region [`Store::create`] accepts: the header plus the initial index.
pub const MIN_REGION_BYTES: u64 = HEADER_SIZE + INTERNAL_HEADER + INITIAL_TABLE_CAP * SLOT_SIZE;

impl Store {
    /// Formats `region` as an empty store.
    pub fn create(region: Region, seed: u64) -> Result<Store> {
        Self::create_with(region, seed, 0, Limits::default())
    }

    /// Formats `region` as an empty store with STORE_* `flags`.
    pub fn create_with_flags(region: Region, seed: u64, flags: u32) -> Result<Store> {
        Self::create_with(region, seed, flags, Limits::default())
    }

    /// Formats `region` as an empty store with STORE_* `flags` and eviction `limits`.
    pub fn create_with(region: Region, seed: u64, flags: u32, limits: Limits) -> Result<Store> {
        if region.len() < MIN_REGION_BYTES {
            return Err(Error::NeedGrow {
                needed: MIN_REGION_BYTES,
            });
        }
        let r = &region;
        r.zero(0, HEADER_SIZE)?;
        r.u32(H_VERSION)?.store(LAYOUT_VERSION, Relaxed);
        r.u32(H_HEADER_SIZE)?.store(HEADER_SIZE as u32, Relaxed);
        r.u64(H_HASH_SEED)?.store(seed, Relaxed);
        r.u32(H_FLAGS)?.store(flags, Relaxed);
        let on_full = if limits.evict {
            ON_FULL_EVICT
        } else {
            ON_FULL_THROW
        };
        r.u32(H_ON_FULL)?.store(on_full, Relaxed);
        r.u64(H_MAX_ENTRIES)?.store(limits.max_entries, Relaxed);
        r.u64(H_EXPECTED_KEYS)?.store(limits.expected_keys, Relaxed);
        r.u64(H_MAX_BYTES)?
            .store(limits.max_bytes.min(MAX_REGION_BYTES), Relaxed);
        r.u64(H_PID_NS)?
            .store(crate::holder::this_process().pid_ns, Relaxed);
        Arena::init(r)?;
        let table = Table::empty(r, INITIAL_TABLE_CAP)?;
        r.u64(H_T0)?.store(table.block, Relaxed);
        // Magic last, with release: a thread that sees it sees a formatted store.
        r.u64(H_MAGIC)?
            .store(MAGIC, std::sync::atomic::Ordering::Release);
        Ok(Store {
            region,
            seed,
            wait_timeout: WAIT_TIMEOUT,
            clock: system_now_ms,
            process_shared: flags & STORE_PROCESS_SHARED != 0,
            limits: Limits {
                max_bytes: limits.max_bytes.min(MAX_REGION_BYTES),
                ..limits
            },
            wake: Default::default(),
            growth_reads: Default::default(),
            read_only: false,
        })
    }

    /// The settings fixed when the store was formatted (read from its header).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Attaches to a region some thread or process formatted with [`Store::create`].
    pub fn attach(region: Region) -> Result<Store> {
        let r = &region;
        if r.u64(H_MAGIC)?.load(Acquire) != MAGIC {
            return Err(Error::NotAStore("bad magic".into()));
        }
        let version = r.u32(H_VERSION)?.load(Relaxed);
        if version != LAYOUT_VERSION || r.u32(H_HEADER_SIZE)?.load(Relaxed) != HEADER_SIZE as u32 {
            return Err(Error::Layout {
                found: version,
                expected: LAYOUT_VERSION,
            });
        }
        let seed = r.u64(H_HASH_SEED)?.load(Relaxed);
        let process_shared = r.u32(H_FLAGS)?.load(Relaxed) & STORE_PROCESS_SHARED != 0;
        if process_shared {
            // Another pid namespace: pids no longer tell whether a lock holder lives. (Where
            // namespaces are unknown, 0, pids are all there is.)
            let (ns, theirs) = (
                crate::holder::this_process().pid_ns,
                r.u64(H_PID_NS)?.load(Relaxed),
            );
            if ns != theirs && ns != 0 && theirs != 0 {
                r.u32(H_MIXED_NS)?.store(1, Relaxed);
            }
        }
        let limits = Limits {
            evict: r.u32(H_ON_FULL)?.load(Relaxed) == ON_FULL_EVICT,
            max_entries: r.u64(H_MAX_ENTRIES)?.load(Relaxed),
            max_bytes: r.u64(H_MAX_BYTES)?.load(Relaxed).min(MAX_REGION_BYTES),
            // Zero in files made before the option: no hint.
            expected_keys: r.u64(H_EXPECTED_KEYS)?.load(Relaxed),
        };
        Ok(Store {
            region,
            seed,
            wait_timeout: WAIT_TIMEOUT,
            clock: system_now_ms,
            process_shared,
            limits,
            wake: Default::default(),
            growth_reads: Default::default(),
            read_only: false,
        })
    }

    /// The header words of the writer lock.
    fn lock_words(&self) -> Result<LockWords<'_>> {
        let r = &self.region;
        Ok(LockWords {
            word: r.u64(H_WRITE_LOCK)?,
            wake: r.u32(H_LOCK_WAKE)?,
            gen: r.u32(H_LOCK_GEN)?,
            mixed: r.u32(H_MIXED_NS)?,
            lease: crate::lock::LEASE,
        })
    }

    /// Takes the writer lock. If it was taken over from a dead holder, first finishes or
    /// undoes what that holder left (see recover.rs).
    pub fn write_lock(&self) -> Result<StoreGuard<'_>> {
        let guard = lock(self.lock_words()?, self.wait_timeout)?;
        let pending = self.region.u32(H_RECOVERING)?;
        if guard.took_over {
            pending.store(1, Relaxed);
        }
        let guard = StoreGuard {
            lock: Some(guard),
            store: self,
        };
        if pending.load(Relaxed) != 0 {
            self.recover()?;
            pending.store(0, Release);
        }
        self.check_log()?;
        Ok(guard)
    }

    /// Notes that watchers of kinds `bits` (SLEEP_*) sleep and must be woken once this
    /// operation releases the lock.
    pub(crate) fn wake_after_unlock(&self, bits: u32) {
        self.wake.fetch_or(bits, Relaxed);
    }

    fn wake_futex_sleepers(&self) {
        if self.wake.load(Relaxed) & SLEEP_FUTEX != 0 {
            self.wake.fetch_and(!SLEEP_FUTEX, Relaxed);
            #[cfg(not(loom))]
            let _ = self.wake_waiters();
        }
    }

    /// Whether a write of this handle found watchers asleep in `Atomics.waitAsync`, which
    /// only JS can wake (`Atomics.notify`); the binding does, and this forgets them.
    pub fn take_js_sleepers(&self) -> bool {
        self.wake.load(Relaxed) & SLEEP_JS != 0
            && self.wake.fetch_and(!SLEEP_JS, Relaxed) & SLEEP_JS != 0
    }

    /// The writer lock if it is free now (see `lock::try_lock`); a pending recovery is run
    /// first, as by `write_lock`.
    pub fn try_write_lock(&self) -> Result<Option<StoreGuard<'_>>> {
        let Some(guard) = crate::lock::try_lock(self.lock_words()?) else {
            return Ok(None);
        };
        let guard = StoreGuard {
            lock: Some(guard),
            store: self,
        };
        let pending = self.region.u32(H_RECOVERING)?;
        if pending.load(Relaxed) != 0 {
            self.recover()?;
            pending.store(0, Release);
        }
        self.check_log()?;
        Ok(Some(guard))
    }

    /// A reader that keeps finding an entry mid-write: if the writer died, take its lock over
    /// (recovering its write); if it lives, this waits until it is done.
    pub(crate) fn unblock_reader(&self, backoff: &Backoff) -> Result<()> {
        if backoff.is_long() {
            drop(self.write_lock()?);
        }
        Ok(())
    }

    /// Whether writes must survive the writer's process being killed (a file store).
    pub fn process_shared(&self) -> bool {
        self.process_shared
    }

    /// The key-hash seed this handle copied at attach time.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The hash of the key in data block `block` (its header checked), read into `key`.
    pub(crate) fn key_hash_of(&self, block: u64, key: &mut Vec<u8>) -> Result<u32> {
        let r = &self.region;
        let h = Arena { r }.check_block(block, true)?;
        key.resize(h.key_len as usize, 0);
        r.read(key_offset(block, h.header_len), key)?;
        Ok(hash_key(self.seed, key) as u32)
    }

    pub fn region(&self) -> &Region {
        &self.region
    }

    /// Tells the store the region now has `len` valid bytes (after it grew in place).
    ///
    /// # Safety
    /// As [`Region::set_len`].
    pub unsafe fn set_region_len(&mut self, len: usize) {
        // SAFETY: forwarded to the caller.
        unsafe { self.region.set_len(len) }
    }

    fn check_key(key: &[u8]) -> Result<()> {
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::KeyTooLong {
                len: key.len(),
                max: MAX_KEY_BYTES,
            });
        }
        Ok(())
    }

    /// Copies the value of `key` into `out`. Returns the entry's version, or None if the key
    /// is absent. Takes no lock.
    pub fn get(&self, key: &[u8], out: &mut Vec<u8>) -> Result<Option<Version>> {
        Self::check_key(key)?;
        let r = &self.region;
        let hash = hash_key(self.seed, key) as u32;
        let epoch_word = r.u32(H_TABLE_EPOCH)?;
        let mut backoff = Backoff::new("entry being written", self.wait_timeout);
        loop {
            let epoch = epoch_word.load(Acquire);
            if epoch & 1 == 1 {
                // A writer is changing where the tables are: wait for it (or take over from
                // a dead one).
                self.unblock_reader(&backoff)?;
                backoff.snooze()?;
                continue;
            }
            let mut growing = false;
            let attempt = Tables::load(r).and_then(|t| {
                growing = t.t1.is_some();
                t.read(r, key, hash, self.clock, out)
            });
            fence(Acquire);
            let moved = epoch_word.load(Relaxed) != epoch;
            if growing && !moved {
                self.read_during_growth()?;
            }
            match attempt {
                // The index may have moved (and its old block been reused) while we read it.
                _ if moved => {}
                Ok(Read::Hit(seq, at, expires_at)) => {
                    return Ok(Some(Version {
                        epoch,
                        seq,
                        seq_offset: at + S_SEQ,
                        expires_at,
                    }))
                }
                Ok(Read::Miss) => return Ok(None),
                Ok(Read::Retry) => self.unblock_reader(&backoff)?,
                Err(e) => return Err(e),
            }
            backoff.snooze()?;
        }
    }

    /// Stores `value` under `key`. The value is rewritten in place when it fits its block
    /// (unless `refit`, which moves it to a block of its own size class).
    ///
    /// Fails with `NeedGrow` when the region must grow first; the store is then unchanged
    /// apart from a possibly rebuilt (larger) index, and the caller retries after growing.
    pub fn set(&self, key: &[u8], value: &[u8], refit: bool) -> Result<()> {
        self.set_with(
            key,
            value,
            &SetOptions {
                refit,
                ..SetOptions::default()
            },
        )
    }

    /// `set` with every option.
    pub fn set_with(&self, key: &[u8], value: &[u8], opts: &SetOptions) -> Result<()> {
        Self::check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: MAX_VALUE_BYTES,
            });
        }
        let hash = hash_key(self.seed, key) as u32;
        // The key's slot is a cache miss in a large store: asked for now, it comes in while
        // the lock is taken and the write's maintenance step runs (measured at 20M keys in the
        // core: set 866 -> 815 ns, medians of 4 alternating rounds). Read before the lock, the
        // tables may be changing: a hint only, whatever it reads. (Not in the loom models,
        // where a prefetch is nothing and these loads would only add interleavings.)
        #[cfg(not(loom))]
        if let Ok(t) = Tables::load(&self.region) {
            self.region.prefetch(t.t0.first_slot(hash));
        }
        let _guard = self.write_lock()?;
        self.maintain()?;
        self.set_making_room(key, hash, value, opts)
    }

    /// `set` for a caller that holds the writer lock. Fails with `AtCapacity` (changing
    /// nothing) for a new key when the store holds `max_entries` already.
    pub(crate) fn set_locked(
        &self,
        key: &[u8],
        hash: u32,
        value: &[u8],
        opts: &SetOptions,
    ) -> Result<()> {
        let r = &self.region;
        let arena = Arena { r };
        let payload = (key.len() + value.len()) as u64;
        let wanted = (key.len() + value.len().max(opts.reserve as usize)) as u64;
        loop {
            let tables = Tables::load(r)?;
            let vacant = match tables.find(r, key, hash)? {
                Find::Found(s) => {
                    let h = s.header;
                    let same_kind = (h.kind == KIND_TTL) == (opts.expires_at != 0);
                    let fits = payload <= h.capacity() && wanted <= h.capacity();
                    let refit_ok =
                        !opts.refit || data_size(wanted, opts.expires_at != 0)? == h.size;
                    // A process-shared store saves the old value first (a writer may be killed
                    // mid-rewrite); one too long for the undo record goes to a new block instead.
                    let undo = self.process_shared;
                    if !opts.immutable
                        && same_kind
                        && fits
                        && refit_ok
                        && !(undo && h.val_len > UNDO_MAX)
                    {
                        if undo {
                            arm_undo(r, s.at, s.block)?;
                        }
                        let odd = Table::begin_write(r, s.at)?;
                        r.write(value_offset(s.block, h.header_len, key.len() as u64), value)?;
                        arena.set_lengths(s.block, key.len() as u64, value.len() as u64)?;
                        if opts.expires_at != 0 {
                            arena.set_expiry(s.block, opts.expires_at)?;
                        }
                        Table::end_write(r, s.at, odd)?;
                        return if undo { disarm_undo(r) } else { Ok(()) };
                    }
                    let block = self.write_block(key, value, opts)?;
                    Table::publish(r, s.at, Ref::live(block, hash))?;
                    return arena.free(s.block);
                }
                Find::Vacant(v) => v,
            };
            // Locks' leases are not entries: maxEntries neither counts nor refuses them.
            let lease = key.starts_with(PINNED_KEY_PREFIX);
            let keys = key_count(r)?;
            if self.limits.max_entries != 0 && !lease && keys >= self.limits.max_entries {
                return Err(Error::AtCapacity {
                    max_entries: self.limits.max_entries,
                });
            }
            if let Room::Again = self.index_room(&tables, vacant)? {
                continue;
            }
            let Some(at) = vacant else {
                return Err(Error::corrupted("an index table has no vacant slot"));
            };
            let block = self.write_block(key, value, opts)?;
            let was_tombstone = load_ref(r, at)? == Ref::Tombstone;
            Table::publish(r, at, Ref::live(block, hash))?;
            r.add(H_LIVE, 1)?;
            if lease {
                r.add(H_LOCKS, 1)?;
            }
            let in_t1 = tables.t1.is_some_and(|t| t.holds(at));
            if in_t1 {
                r.add(H_T1_LIVE, 1)?;
            }
            if was_tombstone {
                r.add(if in_t1 { H_T1_TOMBSTONES } else { H_TOMBSTONES }, -1)?;
            }
            return Ok(());
        }
    }

    /// Allocates a block and fills it with key and value; not yet reachable by readers.
    fn write_block(&self, key: &[u8], value: &[u8], opts: &SetOptions) -> Result<u64> {
        let r = &self.region;
        let (block, h) = Arena { r }.alloc_data(
            key.len() as u64,
            value.len() as u64,
            opts.reserve,
            opts.expires_at,
        )?;
        r.write(key_offset(block, h.header_len), key)?;
        r.write(value_offset(block, h.header_len, key.len() as u64), value)?;
        Ok(block)
    }

    /// Removes `key`; returns whether it was present (an expired entry is removed, but was
    /// not present).
    pub fn delete(&self, key: &[u8]) -> Result<bool> {
        Self::check_key(key)?;
        let r = &self.region;
        let hash = hash_key(self.seed, key) as u32;
        let _guard = self.write_lock()?;
        self.maintain()?;
        let Find::Found(s) = Tables::load(r)?.find(r, key, hash)? else {
            return Ok(false);
        };
        let expired = s.header.expired((self.clock)());
        let event = if expired {
            Event::Expire
        } else {
            Event::Delete
        };
        self.remove_locked(s.at, s.block, event)?;
        if expired {
            count(r, H_EXPIRED)?;
        }
        Ok(!expired)
    }

    /// Tombstones slot `at` and frees `block` (writer lock held); watchers are told `event`.
    pub(crate) fn remove_locked(&self, at: u64, block: u64, event: Event) -> Result<()> {
        self.remove_merged(at, block, event).map(|_| ())
    }

    /// `remove_locked`, returning the free block the entry's block became part of (None: it
    /// went back to the uncarved space).
    pub(crate) fn remove_merged(
        &self,
        at: u64,
        block: u64,
        event: Event,
    ) -> Result<Option<(u64, u64)>> {
        let r = &self.region;
        let lease = crate::arena::is_pinned(r, block, &Arena { r }.check_block(block, true)?)?;
        // Logged while the block still holds the key.
        self.log_removal(event, block);
        // The marks of reads were the removed entry's: a key written into this slot later
        // starts unmarked.
        Table::publish_marked(r, at, Ref::Tombstone, 0)?;
        r.add(H_LIVE, -1)?;
        if lease {
            r.add(H_LOCKS, -1)?;
        }
        let in_t1 = Tables::load(r)?.t1.is_some_and(|t| t.holds(at));
        if in_t1 {
            r.add(H_T1_LIVE, -1)?;
        }
        r.add(if in_t1 { H_T1_TOMBSTONES } else { H_TOMBSTONES }, 1)?;
        Arena { r }.free_merged(block)
    }

    /// What every write does first (writer lock held): a bounded sweep of expired entries and
    /// a bounded step of the index's growth, if one is under way.
    fn maintain(&self) -> Result<()> {
        self.sweep()?;
        self.rehash_step()
    }

    /// Reclaims expired entries among the next SWEEP_SLOTS slots (writer lock held): bounded
    /// work per write, so expired space comes back without any timer.
    fn sweep(&self) -> Result<()> {
        self.expire_slots(SWEEP_SLOTS).map(drop)
    }

    /// Reclaims every expired entry (writer lock held): what a write that found no room does
    /// before it gives up, since an expired entry is absent and must not keep a live one out.
    /// Bounded by the index's size; nothing at all while no entry has a TTL. Returns how many.
    pub(crate) fn reclaim_expired(&self) -> Result<u64> {
        let cap = Tables::load(&self.region)?.cap();
        self.expire_slots(cap)
    }

    /// Reclaims expired entries among `slots` slots from the sweep cursor on; returns how many.
    pub(crate) fn expire_slots(&self, slots: u64) -> Result<u64> {
        let r = &self.region;
        if r.u64(H_TTL_BLOCKS)?.load(Relaxed) == 0 {
            return Ok(0); // nothing can expire: keep plain writes free of this work
        }
        let table = Tables::load(r)?;
        let cursor = r.u64(H_SWEEP_CURSOR)?;
        let start = cursor.load(Relaxed) % table.cap();
        let now = (self.clock)();
        let arena = Arena { r };
        let mut reclaimed = 0;
        for slot in table.live_slots(r, start, slots) {
            let (at, block) = slot?;
            if arena.check_block(block, true)?.expired(now) {
                self.remove_locked(at, block, Event::Expire)?;
                count(r, H_EXPIRED)?;
                reclaimed += 1;
            }
        }
        cursor.store((start + slots.min(table.cap())) % table.cap(), Relaxed);
        Ok(reclaimed)
    }

    /// Reads the current value of `key` (None if absent or expired) and, if `f` returns bytes,
    /// stores them (keeping the entry's expiry), with no other writer in between; returns what
    /// `f` returns beside them. `f` may run again if the region had to grow first, so it must
    /// depend only on its argument.
    pub fn modify<T>(
        &self,
        key: &[u8],
        f: impl FnOnce(Option<&[u8]>) -> Result<(Change, T)>,
    ) -> Result<T> {
        Self::check_key(key)?;
        let r = &self.region;
        let hash = hash_key(self.seed, key) as u32;
        let _guard = self.write_lock()?;
        self.maintain()?;
        let mut opts = SetOptions::default();
        let mut found = None;
        let current = match Tables::load(r)?.find(r, key, hash)? {
            Find::Found(s) if !s.header.expired((self.clock)()) => {
                if s.header.key_len + s.header.val_len > s.header.capacity() {
                    return Err(Error::corrupted("value length exceeds its block"));
                }
                let mut buf = vec![0; s.header.val_len as usize];
                r.read(
                    value_offset(s.block, s.header.header_len, s.header.key_len),
                    &mut buf,
                )?;
                opts.expires_at = s.header.expires_at;
                found = Some((s.at, s.block));
                Some(buf)
            }
            _ => None,
        };
        let (change, result) = f(current.as_deref())?;
        match change {
            Change::Keep => {}
            Change::Set(bytes, expires_at) => {
                if let Some(at) = expires_at {
                    opts.expires_at = at;
                }
                self.set_making_room(key, hash, &bytes, &opts)?
            }
            Change::Delete => {
                if let Some((at, block)) = found {
                    self.remove_locked(at, block, Event::Delete)?
                }
            }
        }
        Ok(result)
    }

    /// Adds `delta` to the number stored under `key` (absent counts as 0); returns the sum.
    pub fn increment(&self, key: &[u8], delta: f64) -> Result<f64> {
        self.modify(key, |current| {
            let base = match current.map(crate::codec::decode).transpose()? {
                None => 0.0,
                Some(crate::Value::Number(n)) => n,
                Some(_) => {
                    return Err(Error::Type(
                        "increment: the stored value is not a number".into(),
                    ))
                }
            };
            let sum = base + delta;
            Ok((
                Change::Set(crate::codec::encode(&crate::Value::Number(sum))?, None),
                sum,
            ))
        })
    }

    /// Stores `next` if the current encoded value equals `expected` (None: the key is absent).
    pub fn compare_and_set(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        next: &[u8],
    ) -> Result<bool> {
        self.compare_and_change(key, expected, Some(next), None)
    }

    /// If the current encoded value equals `expected` (None: absent), stores `next` (with
    /// expiry `expires_at` if given, else keeping the entry's) or, if `next` is None, deletes
    /// the key. Returns whether it changed anything.
    pub fn compare_and_change(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        next: Option<&[u8]>,
        expires_at: Option<u64>,
    ) -> Result<bool> {
        self.modify(key, |current| {
            if current != expected {
                return Ok((Change::Keep, false));
            }
            Ok(match next {
                Some(bytes) => (Change::Set(bytes.to_vec(), expires_at), true),
                None => (Change::Delete, current.is_some()),
            })
        })
    }

    pub fn stats(&self) -> Result<Stats> {
        let r = &self.region;
        Ok(Stats {
            entries: key_count(r)?,
            locks: r.u64(H_LOCKS)?.load(Relaxed),
            bytes_used: r.u64(H_BYTES_IN_USE)?.load(Relaxed),
            bytes_reserved: r.u64(H_ARENA_TOP)?.load(Relaxed),
            buffer_bytes: r.len(),
            index_slots: Tables::load(r)?.cap(),
            recoveries: r.u32(H_RECOVERIES)?.load(Relaxed) as u64,
            evictions: r.u64(H_EVICTIONS)?.load(Relaxed),
            expired: r.u64(H_EXPIRED)?.load(Relaxed),
            moves: r.u64(H_MOVES)?.load(Relaxed),
            watchers: r.u32(H_WATCHERS)?.load(Relaxed) as u64,
            repairs: r.u64(H_REPAIRS)?.load(Relaxed),
            growing: r.u32(H_MIG_STATE)?.load(Relaxed) != MIG_NONE,
        })
    }

    /// Typed access for Rust callers: the value encoded with rmp-serde (msgpack, structs as maps).
    pub fn get_as<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let mut buf = Vec::new();
        match self.get(key.as_bytes(), &mut buf)? {
            None => Ok(None),
            Some(_) => rmp_serde::from_slice(&buf)
                .map(Some)
                .map_err(|e| Error::Decode(e.to_string())),
        }
    }

    pub fn set_as<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<()> {
        let bytes = rmp_serde::to_vec_named(value).map_err(|e| Error::Encode(e.to_string()))?;
        self.set(key.as_bytes(), &bytes, false)
    }
}
