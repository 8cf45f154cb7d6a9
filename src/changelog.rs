//! The change log: what `store.watch()` and `store.waitFor()` are told, by every writer of the
//! store, in every thread and process.
//!
//! - A ring of records in one arena block (made by the first `watch`, then kept): each write
//!   appends `[event][0][key length u16][key]` inside the writer lock, so the log's order is
//!   the order the store applied its writes: one total order per store.
//! - Writers append only while `H_WATCHERS` is nonzero: a store nobody watches pays one load.
//! - A watcher keeps its own cursor (bytes of the log it has read) and copies records without
//!   any lock: a seqlock-like check (`L_RESERVED`, written before the bytes) tells it when a
//!   writer lapped it while it copied; one lapped by more than the ring holds is told
//!   "overflow" and goes on from the newest record.
//! - Waking: a watcher about to sleep sets its kind's bit in the signal word `L_SIGNAL`
//!   (SLEEP_FUTEX: a native waiter thread sleeping on a futex; SLEEP_JS: `Atomics.waitAsync` in
//!   a thread of the SharedArrayBuffer's process), then checks for records once more, then
//!   sleeps on the value it set. Every append bumps the word's count, then clears its bits, and
//!   the writer wakes every kind whose bit it saw or cleared once it releases the lock. So a
//!   sleeper's bit is only cleared by a writer that changed the value it sleeps on and wakes
//!   it (no lost wake), and a busy writer wakes a watcher once per batch the watcher reads,
//!   not per write. (JS sleepers also look again every 500 ms: their wake is a JS call in the
//!   writing thread, which a thread terminated mid-write never makes.)
//! - The log is checked when the writer lock is taken (`check_log`), before anything changes:
//!   appending after the change cannot fail halfway (a store whose log became unreadable
//!   meanwhile, which only corrupted memory can do, goes unlogged rather than half-applied).
//! - Registration: a watching thread holds one of `WATCH_SLOTS` slots (its holder word, see
//!   holder.rs), under the writer lock. A thread that exits or is terminated gives it back
//!   (the binding's env cleanup hook); a dead process's slots are reclaimed by the next
//!   registration, and by writers once per lap of the ring.
//! - A writer killed between its write and its record cannot be told apart from one killed
//!   before the write, so the lock's taker-over appends an OVERFLOW record: watchers are told
//!   they may have missed something, never left to miss it silently.

use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

use crate::arena::{read_header, Arena};
use crate::error::{Error, Result};
use crate::holder::{self, Liveness};
use crate::layout::*;
use crate::region::{Region, Word32, Word64};
use crate::store::Store;
use crate::sync::fence;

pub use crate::event::Event;

/// The log block's payload offset and ring size, checked against the region.
#[derive(Clone, Copy)]
struct Log {
    off: u64,
    cap: u64,
}

impl Log {
    /// The store's log, if one was made. Everything read from the header is checked: the
    /// shared memory is writable from JS.
    fn find(r: &Region) -> Result<Option<Log>> {
        let block = r.u64(H_LOG)?.load(Acquire);
        if block == 0 {
            return Ok(None);
        }
        let bad = || Error::corrupted("change log location");
        if block < HEADER_SIZE || block % BLOCK_ALIGN != 0 || block > MAX_REGION_BYTES {
            return Err(bad());
        }
        let off = block + INTERNAL_HEADER;
        // The smallest log must lie within the region before its size is read from it.
        if off + L_RING + LOG_MIN > r.len() {
            return Err(Error::OutOfBounds {
                off: block,
                size: L_RING + LOG_MIN,
            });
        }
        let cap = r.u32(off + L_CAP)?.load(Relaxed) as u64;
        if !cap.is_power_of_two() || !(LOG_MIN..=LOG_MAX).contains(&cap) {
            return Err(Error::corrupted("change log size"));
        }
        if off + L_RING + cap > r.len() {
            return Err(Error::OutOfBounds {
                off: block,
                size: L_RING + cap,
            });
        }
        Ok(Some(Log { off, cap }))
    }

    fn head<'r>(&self, r: &'r Region) -> Result<Word64<'r>> {
        r.u64(self.off + L_HEAD)
    }

    fn signal<'r>(&self, r: &'r Region) -> Result<Word32<'r>> {
        r.u32(self.off + L_SIGNAL)
    }

    fn slot<'r>(&self, r: &'r Region, i: u64) -> Result<Word64<'r>> {
        r.u64(self.off + L_SLOTS + 8 * i)
    }

    /// Copies `data` into the ring at log position `pos`, wrapping at its end.
    fn write(&self, r: &Region, pos: u64, data: &[u8]) -> Result<()> {
        let at = pos & (self.cap - 1);
        let first = ((self.cap - at) as usize).min(data.len());
        r.write(self.off + L_RING + at, &data[..first])?;
        r.write(self.off + L_RING, &data[first..])
    }

    /// Copies `out.len()` bytes of the ring from log position `pos`.
    fn read(&self, r: &Region, pos: u64, out: &mut [u8]) -> Result<()> {
        let at = pos & (self.cap - 1);
        let first = ((self.cap - at) as usize).min(out.len());
        let (a, b) = out.split_at_mut(first);
        r.read(self.off + L_RING + at, a)?;
        r.read(self.off + L_RING, b)
    }
}

/// Bytes a record of a key of `key_len` bytes takes in the ring (whole words).
fn record_len(key_len: usize) -> usize {
    (LOG_RECORD_HEADER as usize + key_len).next_multiple_of(RECORD_ALIGN as usize)
}

/// A watching thread's registration: its slot, and where its reading starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Registration {
    pub slot: u32,
    /// The log position of the next record: events of writes after the registration.
    pub cursor: u64,
    /// Byte offset of the u32 watchers sleep on (for `Atomics.waitAsync`).
    pub signal_offset: u64,
}

/// What `read_changes` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOutcome {
    /// The cursor to read from next time.
    pub next: u64,
    /// Records were lost to this reader (it fell a lap behind): it skipped to the newest.
    pub overflow: bool,
}

impl Store {
    /// Checks the log (writer lock just taken), before the operation changes anything: a log
    /// past this thread's view of a grown buffer is `OutOfBounds` now (the caller catches up
    /// and retries), not after the write was applied.
    pub(crate) fn check_log(&self) -> Result<()> {
        if self.region().u32(H_WATCHERS)?.load(Relaxed) != 0 {
            Log::find(self.region())?;
        }
        Ok(())
    }

    /// Appends `event` for `key` (writer lock held) if anyone watches. Keys of locks and
    /// getOrSet turns are internal, and not told. Never fails: the change it tells of is
    /// already made (and the log was checked before it, see `check_log`).
    pub(crate) fn log_change(&self, event: Event, key: &[u8]) {
        let r = self.region();
        if r.u32(H_WATCHERS).map_or(true, |w| w.load(Relaxed) == 0)
            || key.starts_with(PINNED_KEY_PREFIX)
        {
            return;
        }
        let _ = self.append(event, key);
    }

    fn append(&self, event: Event, key: &[u8]) -> Result<()> {
        let r = self.region();
        // A watcher count without a log is corrupted memory (check() reports it).
        let Some(log) = Log::find(r)? else {
            return Ok(());
        };
        let head = log.head(r)?.load(Relaxed);
        let len = record_len(key.len());
        if head % RECORD_ALIGN != 0 {
            return Err(Error::corrupted("change log position"));
        }
        let end = head
            .checked_add(len as u64)
            .ok_or(Error::corrupted("change log position"))?;
        // Reserved first: a reader that sees any byte of this record sees the reservation.
        // Never moved back (a writer that died may have reserved further and written there).
        let reserved = r.u64(log.off + L_RESERVED)?;
        reserved.store(end.max(reserved.load(Relaxed)), Relaxed);
        fence(Release);
        // One aligned copy of header, key and padding: word stores, not byte stores.
        let mut small = [0u8; 128];
        let mut large = Vec::new();
        let record = if len <= small.len() {
            &mut small[..len]
        } else {
            large.resize(len, 0);
            &mut large[..]
        };
        let key_len = (key.len() as u16).to_le_bytes();
        record[..4].copy_from_slice(&[event as u8, 0, key_len[0], key_len[1]]);
        record[4..4 + key.len()].copy_from_slice(key);
        log.write(r, head, record)?;
        log.head(r)?.store(end, Release);
        // The count moves on (see the top). Sleepers' bits, rarely set, are then cleared in a
        // second step; a sleeper that set its bit in between sleeps on a value this clearing
        // changes, or is asleep already and woken with the others after the lock is released.
        let signal = log.signal(r)?;
        let old = signal.fetch_add(SIGNAL_STEP, SeqCst);
        if old & SLEEP_BITS != 0 {
            let mut cur = old.wrapping_add(SIGNAL_STEP);
            while cur & SLEEP_BITS != 0 {
                match signal.compare_exchange(cur, cur & !SLEEP_BITS, SeqCst, SeqCst) {
                    Ok(_) => break,
                    Err(now) => cur = now,
                }
            }
            // Every kind whose bit it saw or cleared: one that set its bit in between sleeps on
            // a value the clearing changed, and may already be asleep.
            self.wake_after_unlock((old | cur) & SLEEP_BITS);
        }
        if head / log.cap != end / log.cap {
            self.reclaim_dead_watchers(&log)?; // once per lap: cheap, and bounded
        }
        Ok(())
    }

    /// `log_change` for an entry about to be removed: its key is read from its block, and only
    /// when someone watches.
    pub(crate) fn log_removal(&self, event: Event, block: u64) {
        let r = self.region();
        if r.u32(H_WATCHERS).map_or(true, |w| w.load(Relaxed) == 0) {
            return;
        }
        let Ok(h) = read_header(r, block) else { return };
        let mut key = vec![0; h.key_len.min(MAX_KEY_BYTES as u64) as usize];
        if r.read(crate::layout::key_offset(block, h.header_len), &mut key)
            .is_ok()
        {
            self.log_change(event, &key)
        }
    }

    /// `log_change` for records without a key (clear, overflow): told to every watcher.
    pub(crate) fn log_store_event(&self, event: Event) {
        self.log_change(event, b"")
    }

    /// Registers the calling thread as a watcher (making the log first if there is none):
    /// from now on every write is logged until `watch_unregister`.
    pub fn watch_register(&self) -> Result<Registration> {
        let r = self.region();
        let _guard = self.write_lock()?;
        let log = match Log::find(r)? {
            Some(log) => log,
            None => self.make_log()?,
        };
        self.reclaim_dead_watchers(&log)?;
        let me = holder::me();
        for i in 0..WATCH_SLOTS {
            let slot = log.slot(r, i)?;
            if slot.load(Relaxed) == 0 {
                slot.store(me, Relaxed);
                let n = r.u32(H_WATCHERS)?;
                n.store(n.load(Relaxed).saturating_add(1), Relaxed);
                return Ok(Registration {
                    slot: i as u32,
                    cursor: log.head(r)?.load(Relaxed),
                    signal_offset: log.off + L_SIGNAL,
                });
            }
        }
        Err(Error::Type(format!(
            "watch: {WATCH_SLOTS} threads already watch this store"
        )))
    }

    /// Gives registration `slot` back (if this thread holds it); returns whether it did.
    pub fn watch_unregister(&self, slot: u32) -> Result<bool> {
        let r = self.region();
        let _guard = self.write_lock()?;
        let Some(log) = Log::find(r)? else {
            return Ok(false);
        };
        if slot as u64 >= WATCH_SLOTS {
            return Ok(false);
        }
        let word = log.slot(r, slot as u64)?;
        if word.load(Relaxed) != holder::me() {
            return Ok(false);
        }
        word.store(0, Relaxed);
        let n = r.u32(H_WATCHERS)?;
        n.store(n.load(Relaxed).saturating_sub(1), Relaxed);
        Ok(true)
    }

    /// How many threads watch the store.
    pub fn watchers(&self) -> Result<u64> {
        Ok(self.region().u32(H_WATCHERS)?.load(Relaxed) as u64)
    }

    /// Allocates and publishes the log (writer lock held). Its size follows the store's
    /// maxBytes: 1/64 of it, within LOG_MIN..=LOG_MAX. Made once, never freed, never moved.
    fn make_log(&self) -> Result<Log> {
        let r = self.region();
        let cap = (self.limits.max_bytes / 64)
            .clamp(LOG_MIN, LOG_MAX)
            .next_power_of_two()
            .min(LOG_MAX);
        let arena = Arena { r };
        let block = loop {
            match arena.alloc_internal(L_RING + cap) {
                // Past maxBytes: an evicting store frees a run of entries the log fits in.
                Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                    let size = align_up(INTERNAL_HEADER + L_RING + cap, BLOCK_ALIGN);
                    if !self.limits.evict || !self.make_room(size, self.limits.max_bytes)? {
                        return Err(Error::Full {
                            needed,
                            max: self.limits.max_bytes,
                        });
                    }
                }
                // The file system is full: room below what it gave, the same way.
                Err(Error::NoSpace { reserved, .. }) => {
                    let size = align_up(INTERNAL_HEADER + L_RING + cap, BLOCK_ALIGN);
                    if !self.limits.evict || !self.make_room(size, reserved)? {
                        return Err(Error::NoSpace {
                            end: arena.top()? + size,
                            reserved,
                        });
                    }
                }
                other => break other?,
            }
        };
        let off = block + INTERNAL_HEADER;
        r.zero(off, L_RING)?;
        r.u32(off + L_CAP)?.store(cap as u32, Relaxed);
        // Published last: recovery frees a block it finds unpublished.
        r.u64(H_LOG)?.store(block, Release);
        Ok(Log { off, cap })
    }

    /// Frees the slots of watchers whose process died (writer lock held).
    fn reclaim_dead_watchers(&self, log: &Log) -> Result<()> {
        let r = self.region();
        let mixed = r.u32(H_MIXED_NS)?.load(Relaxed) != 0;
        let mut live = 0;
        for i in 0..WATCH_SLOTS {
            let slot = log.slot(r, i)?;
            let word = slot.load(Relaxed);
            if word == 0 {
                continue;
            }
            if holder::liveness(word & !holder::PARKED, mixed) == Liveness::Dead {
                slot.store(0, Relaxed);
            } else {
                live += 1;
            }
        }
        // Recounted, not decremented: a process killed between a slot and the count left
        // them disagreeing.
        r.u32(H_WATCHERS)?.store(live, Relaxed);
        Ok(())
    }

    /// After a takeover (writer lock held): recounts the watchers and tells them a record may
    /// be missing (the dead writer may have changed the store without logging it).
    pub(crate) fn recover_log(&self) -> Result<()> {
        if let Some(log) = Log::find(self.region())? {
            self.reclaim_dead_watchers(&log)?;
            self.log_store_event(Event::Overflow);
        }
        Ok(())
    }

    /// Where the next record will be appended (0 if there is no log yet).
    pub fn log_head(&self) -> Result<u64> {
        let r = self.region();
        Ok(match Log::find(r)? {
            Some(log) => log.head(r)?.load(Acquire),
            None => 0,
        })
    }

    /// Byte offset of the word watchers sleep on (None: no log yet, so nobody watches).
    pub fn signal_offset(&self) -> Result<Option<u64>> {
        Ok(Log::find(self.region())?.map(|log| log.off + L_SIGNAL))
    }

    /// The log's block, for recovery and the integrity check (0: none).
    pub(crate) fn log_block(&self) -> Result<u64> {
        Ok(match Log::find(self.region())? {
            Some(log) => log.off - INTERNAL_HEADER,
            None => 0,
        })
    }

    /// Reads the records from `cursor` on, calling `f(event, key, position)` for each, without
    /// a lock (`position`: the record's place in the log, as `log_head` counts).
    /// `buf` is scratch space (reused between calls).
    pub fn read_changes(
        &self,
        cursor: u64,
        buf: &mut Vec<u8>,
        f: impl FnMut(Event, &[u8], u64),
    ) -> Result<ReadOutcome> {
        self.read_changes_max(cursor, usize::MAX, buf, f)
    }

    /// `read_changes`, stopping after `max` records: `next` is then the position after the
    /// last one read, and the rest waits for the next call. A watcher delivers one bounded
    /// batch per turn of its event loop (a 64 MiB store's log holds ~36,000 records).
    pub fn read_changes_max(
        &self,
        cursor: u64,
        max: usize,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(Event, &[u8], u64),
    ) -> Result<ReadOutcome> {
        let r = self.region();
        let Some(log) = Log::find(r)? else {
            return Ok(ReadOutcome {
                next: cursor,
                overflow: false,
            });
        };
        let head = log.head(r)?.load(Acquire);
        // A cursor off the records' alignment (JS passes it in) is as lost as a lapped one.
        let lapped =
            |pos: u64| pos < cursor || pos - cursor > log.cap || cursor % RECORD_ALIGN != 0;
        if lapped(head) {
            return Ok(ReadOutcome {
                next: head,
                overflow: true,
            });
        }
        buf.resize((head - cursor) as usize, 0);
        log.read(r, cursor, buf)?;
        fence(Acquire);
        // A writer that overwrote any byte we copied reserved past cursor + cap first.
        if lapped(r.u64(log.off + L_RESERVED)?.load(Relaxed)) {
            return Ok(ReadOutcome {
                next: head,
                overflow: true,
            });
        }
        let (mut i, mut n) = (0, 0);
        while i < buf.len() {
            if n == max {
                return Ok(ReadOutcome {
                    next: cursor + i as u64,
                    overflow: false,
                });
            }
            n += 1;
            let header = buf
                .get(i..i + LOG_RECORD_HEADER as usize)
                .ok_or(Error::corrupted("change log record cut short"))?;
            let event =
                Event::from_u8(header[0]).ok_or(Error::corrupted("change log record kind"))?;
            let len = u16::from_le_bytes([header[2], header[3]]) as usize;
            let start = i + LOG_RECORD_HEADER as usize;
            let key = buf
                .get(start..start + len)
                .filter(|_| len <= MAX_KEY_BYTES)
                .ok_or(Error::corrupted("change log record length"))?;
            f(event, key, cursor + i as u64);
            i += record_len(len);
        }
        Ok(ReadOutcome {
            next: head,
            overflow: false,
        })
    }

    /// Before a watcher that read up to `cursor` sleeps: sets its kind's bit (`kind`: SLEEP_*)
    /// in the signal and returns the value to sleep on, or None if records came (read them).
    pub fn arm_sleep(&self, kind: u32, cursor: u64) -> Result<Option<u32>> {
        let r = self.region();
        let Some(log) = Log::find(r)? else {
            return Err(Error::corrupted("watching a store that has no change log"));
        };
        let signal = log.signal(r)?;
        let mut cur = signal.load(SeqCst);
        while cur & kind != kind {
            match signal.compare_exchange(cur, cur | kind, SeqCst, SeqCst) {
                Ok(_) => cur |= kind,
                Err(now) => cur = now,
            }
        }
        // After the bit: an append from now on clears it (changing the value slept on) and
        // wakes; one before it published its record before the value this read saw.
        if log.head(r)?.load(SeqCst) != cursor {
            return Ok(None);
        }
        Ok(Some(cur))
    }

    /// Sleeps (a native waiter thread) until the log's signal moves from `signal` (from
    /// `arm_sleep(SLEEP_FUTEX, ..)`), or for at most `max`.
    #[cfg(not(loom))]
    pub fn wait_changes(&self, signal: u32, max: std::time::Duration) -> Result<()> {
        let r = self.region();
        if let Some(log) = Log::find(r)? {
            crate::futex::wait(log.signal(r)?, signal, max);
        }
        Ok(())
    }

    /// Wakes every native waiter of the log (after an append that found one asleep).
    #[cfg(not(loom))]
    pub fn wake_waiters(&self) -> Result<()> {
        let r = self.region();
        if let Some(log) = Log::find(r)? {
            crate::futex::wake_all(log.signal(r)?);
        }
        Ok(())
    }

    /// Moves the signal on without appending (its bits kept, so no sleeper loses its turn to
    /// be woken) and wakes every native waiter: one that is stopping finds its stop flag,
    /// even if it was just about to sleep; the others look again and sleep again.
    #[cfg(not(loom))]
    pub fn poke_waiters(&self) -> Result<()> {
        let r = self.region();
        if let Some(log) = Log::find(r)? {
            let signal = log.signal(r)?;
            signal.fetch_add(SIGNAL_STEP, SeqCst);
            crate::futex::wake_all(signal);
        }
        Ok(())
    }
}
