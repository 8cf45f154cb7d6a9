//! Growing (or rebuilding) the index without stopping writes: every step here is a bounded
//! slice of work done by a write that holds the writer lock anyway.
//!
//! When an insert would take the main table T0 past 3/4 of its slots (live entries plus
//! tombstones), a new table sized for twice the live entries is allocated and the growth goes
//! through three states (H_MIG_STATE):
//!
//! 1. **Preparing.** The new table's block (H_PREP) must read as empty slots. Each write zeroes
//!    ZERO_BYTES of it (none at all where the block lies past the region's high water, which
//!    was never written). Readers do not look at it; inserts still go to T0 (up to 15/16).
//! 2. **Moving.** The table is published as T1 (under the descriptor's seqlock). New keys go to
//!    T1; each write moves the next MIGRATE_SLOTS entries of T0: an entry there is rehashed into
//!    T1 (its SEQ's VISITED marks kept), then its T0 slot becomes a tombstone. Tombstones keep
//!    T0's probe chains as long as they were, and T0 takes no new keys, so a lookup in T0
//!    never gets longer while it drains. Readers look in T0, then T1 (see table.rs).
//! 3. **Done.** When the cursor reaches T0's end, T1 becomes T0 (seqlocked) and the old block
//!    is freed.
//!
//! The numbers: T1 has 2x the live entries' slots and fills to 3/4 only after 0.375x more
//! inserts, while moving all of T0 at 16 entries a write (scanning at most 256 slots) takes
//! at most 1/16x of them. A write that finds T1 too full anyway (deletes and sets mixed oddly)
//! finishes the move at once: bounded by the table, and not seen in practice.
//!
//! A writer killed at any point leaves a state recovery finishes or undoes (recover.rs): an
//! entry referenced from both tables (killed between its two stores) keeps its T1 slot; a
//! descriptor change cut short is completed from what the words say.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::Arena;
use crate::error::{Error, Result};
use crate::layout::*;
use crate::store::Store;
use crate::table::{
    begin_descriptor, end_descriptor, load_ref, load_slot, Ref, Room, Table, Tables,
};

/// The main table is rebuilt smaller when live entries fill less than 1/SHRINK_BELOW of it.
const SHRINK_BELOW: u64 = 8;
/// One read in HELP_EVERY that finds the index growing helps it on, by HELP_SLOTS entries.
pub const HELP_EVERY: u32 = 32;
const HELP_SLOTS: u64 = 128;
/// Entries whose blocks a move step fetches from memory together (see `move_step`).
const PREFETCH_BATCH: usize = 16;

impl Store {
    /// Before a new key goes into slot `vacant` of `tables` (writer lock held): starts a growth
    /// when the table is 3/4 full, or makes the one under way catch up when it must.
    /// Fails with `NeedGrow` (changing nothing) when a new table does not fit yet, and with
    /// `IndexNeedsRoom` when it cannot fit below maxBytes and the old one is 15/16 full.
    pub(crate) fn index_room(&self, tables: &Tables, vacant: Option<u64>) -> Result<Room> {
        let r = self.region();
        let reuses = match vacant {
            Some(at) => load_ref(r, at)? == Ref::Tombstone,
            None => false,
        };
        let live = r.u64(H_LIVE)?.load(Relaxed);
        if let Some(t1) = tables.t1 {
            let used = r.u64(H_T1_LIVE)?.load(Relaxed) + r.u64(H_T1_TOMBSTONES)?.load(Relaxed);
            if vacant.is_some() && (reuses || (used + 1) * MAX_LOAD_DEN <= t1.cap * MAX_LOAD_NUM) {
                return Ok(Room::Yes);
            }
            self.rehash_all()?;
            return Ok(Room::Again);
        }
        let t0 = tables.t0;
        let tombstones = r.u64(H_TOMBSTONES)?.load(Relaxed);
        if live > t0.cap || tombstones > t0.cap {
            return Err(Error::corrupted("entry counts exceed the index size"));
        }
        let used = live + tombstones;
        let under =
            |num: u64, den: u64| vacant.is_some() && (reuses || (used + 1) * den <= t0.cap * num);
        if t0.cap < self.limits.expected_index_slots()
            && r.u32(H_MIG_STATE)?.load(Relaxed) == MIG_NONE
        {
            // Sized for `expectedKeys`: the first new key (and the first after a clear()) starts
            // the growth to that table while there is next to nothing to move. Where it does
            // not fit below maxBytes or on the file system, the store grows as it would have.
            match self.prepare_growth(live) {
                Ok(()) | Err(Error::NoSpace { .. } | Error::Full { .. }) => {}
                Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {}
                Err(e) => return Err(e),
            }
        }
        if under(MAX_LOAD_NUM, MAX_LOAD_DEN) {
            return Ok(Room::Yes);
        }
        match r.u32(H_MIG_STATE)?.load(Relaxed) {
            MIG_NONE => match self.prepare_growth(live) {
                Ok(()) => {}
                // Past maxBytes the new table cannot be had now: the old one fills further
                // meanwhile (to 15/16), then the caller must make room for the new one.
                Err(Error::NeedGrow { needed }) if needed > self.limits.max_bytes => {
                    if under(15, 16) {
                        return Ok(Room::Yes);
                    }
                    let size = needed - Arena { r }.top()?;
                    return Err(Error::IndexNeedsRoom { needed: size });
                }
                // The file system cannot give the new table now: the same, below what it gave.
                Err(Error::NoSpace { end, reserved }) => {
                    if under(15, 16) {
                        return Ok(Room::Yes);
                    }
                    return Err(Error::NoSpace { end, reserved });
                }
                Err(e) => return Err(e),
            },
            MIG_PREPARING => {}
            _ => return Err(Error::corrupted("index growth state")),
        }
        if under(15, 16) {
            return Ok(Room::Yes);
        }
        // Preparing, and T0 is nearly full: finish preparing now, then new keys go to T1.
        self.rehash_all()?;
        Ok(Room::Again)
    }

    /// Starts a rebuild to a smaller table when live entries fill less than 1/8 of the main
    /// one (it grew for many small entries, and larger ones replaced them): an index that
    /// only grew would keep a quarter of an evicting store whose value sizes drift. Only
    /// where the smaller table fits without growing the region: it is an optimisation.
    fn maybe_shrink(&self) -> Result<()> {
        let r = self.region();
        let t0 = Tables::load(r)?.t0;
        let live = r.u64(H_LIVE)?.load(Relaxed);
        let floor = self.limits.index_floor_slots().max(INITIAL_TABLE_CAP);
        if t0.cap <= floor || live * SHRINK_BELOW >= t0.cap || (live + 1) * 2 >= t0.cap {
            return Ok(());
        }
        match self.prepare_growth(live) {
            // No room now (maxBytes, or a full file system): the shrink waits.
            Err(Error::NeedGrow { .. } | Error::Full { .. } | Error::NoSpace { .. }) => Ok(()),
            other => other,
        }
    }

    /// A store file's pages are reserved in the file system a step ahead of the arena's top, a
    /// slice per write (reserve.rs); once the main table is 5/8 full, also those of the next
    /// growth's table, a slice every 64 writes (growth starts at 3/4, 1/8 of its slots of
    /// inserts later: at 20M keys 3.3 million writes for 160 slices). Else the write that
    /// crosses the mark reserves a whole step at once, and the one that starts a growth its
    /// whole table.
    fn reserve_ahead(&self, state: u32) -> Result<()> {
        let r = self.region();
        if !r.is_reserved_file() {
            return Ok(());
        }
        let t0 = Tables::load(r)?.t0;
        let live = r.u64(H_LIVE)?.load(Relaxed);
        let tombstones = r.u64(H_TOMBSTONES)?.load(Relaxed);
        // Shared memory: counts past the table's size are corruption, which the write's own
        // index_room reports; nothing to reserve for them here.
        if live > t0.cap || tombstones > t0.cap {
            return Ok(());
        }
        let table = if state == MIG_NONE && (live + tombstones) * 8 >= t0.cap * 5 {
            INTERNAL_HEADER + self.growth_cap(t0.cap * MAX_LOAD_NUM / MAX_LOAD_DEN) * SLOT_SIZE
        } else {
            0
        };
        r.reserve_ahead(Arena { r }.top()?, table);
        Ok(())
    }

    /// The slots of the table a growth (or rebuild) for `live` entries makes.
    fn growth_cap(&self, live: u64) -> u64 {
        ((live + 1) * 2)
            .max(self.limits.index_floor_slots())
            .max(INITIAL_TABLE_CAP)
            // A table counts its slots in 32 bits (T_CAP): past 2^31 live entries the last
            // table is the largest one, filled further (to 3/4 of 2^32: ~3.2 billion keys).
            .min(u32::MAX as u64)
    }

    /// Bytes of the table the next new key would start a growth for (its table 3/4 full, and
    /// no growth under way), else 0. An eviction that frees one window for a large entry
    /// counts them in: freed, the window is where that table would go first.
    pub(crate) fn growth_due(&self) -> Result<u64> {
        let r = self.region();
        if r.u32(H_MIG_STATE)?.load(Relaxed) != MIG_NONE {
            return Ok(0);
        }
        let t0 = Tables::load(r)?.t0;
        let live = r.u64(H_LIVE)?.load(Relaxed);
        let tombstones = r.u64(H_TOMBSTONES)?.load(Relaxed);
        // Shared memory: counts past the table's size are corruption, not arithmetic.
        if live > t0.cap || tombstones > t0.cap {
            return Err(Error::corrupted("entry counts exceed the index size"));
        }
        if (live + tombstones + 1) * MAX_LOAD_DEN <= t0.cap * MAX_LOAD_NUM {
            return Ok(0);
        }
        Ok(INTERNAL_HEADER + self.growth_cap(live) * SLOT_SIZE)
    }

    /// Allocates the new table (state NONE -> PREPARING).
    fn prepare_growth(&self, live: u64) -> Result<()> {
        let r = self.region();
        let cap = self.growth_cap(live);
        let clean = r.u64(H_HIGH_WATER)?.load(Relaxed);
        let t = Table::alloc(r, cap)?;
        // A block wholly past the high water was never written: its slots are empty already.
        let zeroed = if t.block >= clean { cap * SLOT_SIZE } else { 0 };
        r.u64(H_MIG_CURSOR)?.store(zeroed, Relaxed);
        r.u64(H_PREP)?.store(t.block, Release);
        r.u32(H_MIG_STATE)?.store(MIG_PREPARING, Release);
        Ok(())
    }

    /// Called by reads that found two tables. Writes move the growth on, so a growth that the
    /// last writes left half done would stay so while only reads come, and every read of a
    /// key already moved would probe both tables (cold gets 1.2-1.3x slower after a bulk
    /// load). So one such read in HELP_EVERY takes the writer lock if it is free at once (as
    /// marking reads does) and moves HELP_SLOTS entries: a few microseconds, and the growth
    /// ends within a few thousand reads. Never waits, never allocates.
    pub fn read_during_growth(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let n = self.growth_reads.fetch_add(1, Relaxed);
        if n % HELP_EVERY != 0 {
            return Ok(());
        }
        self.help_growth()
    }

    /// The help itself (the JS reader counts its reads on its side, see index.js).
    pub fn help_growth(&self) -> Result<()> {
        let Some(_guard) = self.try_write_lock()? else {
            return Ok(()); // a writer is at work: it moves the growth on itself
        };
        match self.region().u32(H_MIG_STATE)?.load(Relaxed) {
            MIG_MOVING => self.move_step(HELP_SLOTS),
            _ => Ok(()),
        }
    }

    /// One bounded step of the growth under way (writer lock held): every write does one.
    pub(crate) fn rehash_step(&self) -> Result<()> {
        let state = self.region().u32(H_MIG_STATE)?.load(Relaxed);
        match state {
            MIG_NONE => self.maybe_shrink()?,
            MIG_PREPARING => self.zero_step(ZERO_BYTES)?,
            MIG_MOVING => self.move_step(MIGRATE_SLOTS)?,
            _ => return Err(Error::corrupted("index growth state")),
        }
        self.reserve_ahead(state)
    }

    /// Finishes the growth under way (bounded by the size of the tables).
    pub(crate) fn rehash_all(&self) -> Result<()> {
        let r = self.region();
        loop {
            match r.u32(H_MIG_STATE)?.load(Relaxed) {
                MIG_NONE => return Ok(()),
                MIG_PREPARING => self.zero_step(u64::MAX)?,
                MIG_MOVING => self.move_step(u64::MAX)?,
                _ => return Err(Error::corrupted("index growth state")),
            }
        }
    }

    /// Zeroes up to `budget` bytes of the table being prepared; publishes it once all are.
    fn zero_step(&self, budget: u64) -> Result<()> {
        let r = self.region();
        let t = Table::at(r, r.u64(H_PREP)?.load(Relaxed))?;
        Arena { r }.check_internal(t.block)?;
        let cursor = r.u64(H_MIG_CURSOR)?;
        let done = cursor.load(Relaxed);
        let total = t.cap * SLOT_SIZE;
        if done % BLOCK_ALIGN != 0 || done > total {
            return Err(Error::corrupted("index growth cursor"));
        }
        let n = (total - done).min(budget);
        r.zero(t.off + done, n)?;
        cursor.store(done + n, Relaxed);
        if done + n == total {
            self.start_moving(t)?;
        }
        Ok(())
    }

    /// Publishes the prepared table as T1 (PREPARING -> MOVING). The order lets recovery
    /// finish it from any prefix: T1 set while the state still says PREPARING means this.
    fn start_moving(&self, t1: Table) -> Result<()> {
        let r = self.region();
        r.u64(H_MIG_CURSOR)?.store(0, Relaxed);
        r.u64(H_T1_LIVE)?.store(0, Relaxed);
        r.u64(H_T1_TOMBSTONES)?.store(0, Relaxed);
        let epoch = r.u32(H_TABLE_EPOCH)?;
        begin_descriptor(epoch);
        r.u64(H_T1)?.store(t1.block, Release);
        r.u32(H_MIG_STATE)?.store(MIG_MOVING, Release);
        r.u64(H_PREP)?.store(0, Release);
        end_descriptor(epoch);
        Ok(())
    }

    /// Moves up to `budget` slots of T0 to T1; finishes once T0 is drained.
    fn move_step(&self, budget: u64) -> Result<()> {
        let r = self.region();
        let tables = Tables::load(r)?;
        let Some(t1) = tables.t1 else {
            return Err(Error::corrupted("index growth state"));
        };
        let t0 = tables.t0;
        let cursor = r.u64(H_MIG_CURSOR)?;
        let start = cursor.load(Relaxed);
        if start > t0.cap {
            return Err(Error::corrupted("index growth cursor"));
        }
        // Budgeted by entries moved, so a sparse table (a shrink) drains as fast as a full
        // one; empty slots are cheap, but bounded too, so one write never scans a whole table.
        let end = start
            .saturating_add(budget.saturating_mul(MIGRATE_SCAN_FACTOR))
            .min(t0.cap);
        let mut key = Vec::new();
        let mut moved = 0;
        let mut i = start;
        while i < end && moved < budget {
            // A batch of the next live entries: their blocks are fetched from memory at once
            // (each move reads its key to hash it, and at a hundred million keys every one is a
            // cache miss: one after another they made a write during a growth 10x slower), then
            // their new slots, then each moves in slot order as before. Only reads run ahead;
            // the stores below are the same, in the same order.
            let mut batch = [(0u64, 0u64, 0u32); PREFETCH_BATCH];
            let mut n = 0;
            let mut j = i;
            while j < end && n < PREFETCH_BATCH && moved + (n as u64) < budget {
                if let Ref::Live { block, .. } = load_ref(r, t0.off + j * SLOT_SIZE)? {
                    r.prefetch(block);
                    r.prefetch(block + 64);
                    batch[n] = (j, block, 0);
                    n += 1;
                }
                j += 1;
            }
            for entry in &mut batch[..n] {
                entry.2 = self.key_hash_of(entry.1, &mut key)?;
                r.prefetch(t1.first_slot(entry.2));
            }
            let mut next = 0;
            while i < j {
                let at = t0.off + i * SLOT_SIZE;
                if next < n && batch[next].0 == i {
                    let (_, block, hash) = batch[next];
                    next += 1;
                    moved += 1;
                    let to = t1.vacant_for(r, hash)?;
                    let reused = load_ref(r, to)? == Ref::Tombstone;
                    // The entry's read marks go with it: a move is not a new version for eviction.
                    let visited = load_slot(r, at, Relaxed)?.0 & SEQ_VISITED;
                    Table::publish_marked(r, to, Ref::live(block, hash), visited)?;
                    // Then gone from T0: killed in between, recovery keeps the T1 slot.
                    Table::publish(r, at, Ref::Tombstone)?;
                    r.add(H_T1_LIVE, 1)?;
                    if reused {
                        r.add(H_T1_TOMBSTONES, -1)?;
                    }
                    r.add(H_TOMBSTONES, 1)?;
                }
                i += 1;
                cursor.store(i, Relaxed);
            }
        }
        if i == t0.cap {
            self.finish_moving(t0, t1)?;
        }
        Ok(())
    }

    /// T1 becomes T0 (MOVING -> NONE), then the drained table's block is freed.
    fn finish_moving(&self, t0: Table, t1: Table) -> Result<()> {
        let r = self.region();
        let live = r.u64(H_T1_LIVE)?.load(Relaxed);
        let tombstones = r.u64(H_T1_TOMBSTONES)?.load(Relaxed);
        if live != r.u64(H_LIVE)?.load(Relaxed) {
            return Err(Error::corrupted(
                "entries left behind by the index's growth",
            ));
        }
        let epoch = r.u32(H_TABLE_EPOCH)?;
        begin_descriptor(epoch);
        r.u64(H_T0)?.store(t1.block, Release);
        r.u64(H_T1)?.store(0, Release);
        r.u32(H_MIG_STATE)?.store(MIG_NONE, Release);
        r.u64(H_MIG_CURSOR)?.store(0, Release);
        r.u64(H_TOMBSTONES)?.store(tombstones, Relaxed);
        r.u64(H_T1_LIVE)?.store(0, Relaxed);
        r.u64(H_T1_TOMBSTONES)?.store(0, Relaxed);
        end_descriptor(epoch);
        Arena { r }.free(t0.block)
    }
}
