//! Space for a store file is reserved in the file system before the store first uses it.
//!
//! A store file is sparse: its pages come from the file system as they are first written.
//! When the file system is full (a tmpfs that other programs filled: Docker's 64 MiB
//! `/dev/shm`), a write to a page it cannot supply kills the writer with SIGBUS in the middle
//! of a write. So every range the arena's top moves over (entries, index tables, the change
//! log all live below it) is first allocated with `fallocate`, under the writer lock, before
//! the top moves: a refusal is an error (`NoSpace`) with nothing changed, and the store throws
//! ERR_KV_FULL or evicts. Reserved in steps of 1/64 of the file (1–64 MiB), so the cost is one
//! system call per step, not per write; the file stays sparse beyond the top.
//!
//! Writes also reserve ahead, best effort, one slice of 2 MiB at a time: a step past the top, and
//! the room of the next index growth's table once it is near (rehash.rs). So the write that
//! crosses the mark, or starts a growth, finds its pages reserved instead of paying for a whole
//! step or table at once (64 MiB, or 320 MB at 20M keys: tens of ms of zeroing on tmpfs).
//!
//! Regions find their file's reservation by the mapping's base address (a registry the
//! file mappings fill, memory.rs), so that every way of attaching a store file gets it.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use crate::error::{Error, Result};

#[derive(Debug)]
pub struct Reservation {
    file: std::fs::File,
    len: u64,
    /// Bytes from the start of the file allocated by this process's calls (fallocate is
    /// idempotent, so each process keeps its own mark).
    reserved: AtomicU64,
    /// The mark at which a reservation ahead was last refused (u64::MAX: none): not asked
    /// again, one system call per write on a full file system, until the mark moves.
    ahead_refused: AtomicU64,
    /// Calls of `reserve_ahead`, to pace the reservation of a coming table (see there).
    ahead_calls: AtomicU64,
}

/// The most a reservation ahead (`reserve_ahead`) allocates in one call. tmpfs zeroes what it
/// allocates: 2 MiB take 0.2 ms of memory the machine used before, 5.7 ms where the VM first
/// touches it (measured here). Larger than needed for the tail: 20M keys take ~1,700 slices,
/// under the 2,000 sets past the p99.99.
const AHEAD_SLICE: u64 = 2 << 20;
/// A coming table's slices are one in this many writes: 320 MB are 160 slices, 10,240 writes,
/// of the 3.3 million between the 5/8 mark and the growth at 20M keys.
const PACE: u64 = 64;

static REGISTRY: parking_lot::RwLock<Vec<(usize, Arc<Reservation>)>> =
    parking_lot::const_rwlock(Vec::new());

/// Registers the reservation of the file mapped at `base` (`len` bytes).
pub(crate) fn register(base: usize, file: std::fs::File, len: u64) {
    let r = Arc::new(Reservation {
        file,
        len,
        reserved: AtomicU64::new(0),
        ahead_refused: AtomicU64::new(u64::MAX),
        ahead_calls: AtomicU64::new(0),
    });
    REGISTRY.write().push((base, r));
}

/// Forgets the mapping at `base` (unmapped).
pub(crate) fn unregister(base: usize) {
    REGISTRY.write().retain(|(b, _)| *b != base);
}

/// The reservation of the file mapped at `base`, if that is a store file's mapping.
pub(crate) fn lookup(base: usize) -> Option<Arc<Reservation>> {
    REGISTRY
        .read()
        .iter()
        .find(|(b, _)| *b == base)
        .map(|(_, r)| r.clone())
}

impl Reservation {
    /// Makes sure bytes `[0, end)` of the file are allocated in the file system.
    pub(crate) fn reserve(&self, end: u64) -> Result<()> {
        let from = self.reserved.load(Relaxed);
        if end <= from {
            return Ok(());
        }
        let step = self.step();
        let to = end
            .div_ceil(step)
            .saturating_mul(step)
            .min(self.len)
            .max(end);
        // A step the file system cannot give in full may still hold what is needed now.
        for want in [to, end] {
            match allocate(&self.file, from, want - from) {
                Ok(()) => {
                    self.reserved.store(want, Relaxed);
                    return Ok(());
                }
                // No fallocate on this file system: nothing can be reserved; it is left to
                // behave as it does for every mapped file.
                Err(e) if is_unsupported(&e) => {
                    self.reserved.store(self.len, Relaxed);
                    return Ok(());
                }
                // Full, or any other refusal (a memory cgroup's ENOMEM, EIO): not reserved,
                // so not used; asked again at the next step.
                Err(_) => continue,
            }
        }
        Err(Error::NoSpace {
            end,
            reserved: from,
        })
    }

    /// The steps `reserve` takes: 1/64 of the file, 1-64 MiB.
    fn step(&self) -> u64 {
        (self.len / 64).clamp(1 << 20, 64 << 20)
    }

    /// Best effort, a slice per call: keeps the file reserved a step past the arena's `top`,
    /// and past that the room a coming index growth's new table (`table` bytes) will take.
    /// Without it the write that crosses the mark reserves a whole step (64 MiB: ~9 ms on
    /// tmpfs), and the write that starts a growth the whole new table (320 MB at 20M keys:
    /// ~30 ms); with it, writes before them each reserve at most AHEAD_SLICE. A refusal (a
    /// full file system) changes nothing: `reserve` reports it where the space is needed.
    pub(crate) fn reserve_ahead(&self, top: u64, table: u64) {
        let from = self.reserved.load(Relaxed);
        let slice = AHEAD_SLICE.min(self.step());
        // Half a slice of margin past what is needed: a slice is added each time the top has
        // moved over one (a few system calls per growth, not one per write), and the mark
        // never falls behind the need while the writes come.
        let target = top
            .saturating_add(self.step())
            .saturating_add(table)
            .saturating_add(slice / 2)
            .min(self.len);
        if from >= target {
            return;
        }
        // A coming table is reserved a slice every PACE writes, not in one burst of hundreds of
        // consecutive slow writes (measured: a burst at the 5/8 mark made sets of 16-22 ms while
        // another process wrote); the step past the top, which the next writes need, at once.
        let urgent = from < top.saturating_add(self.step()).min(self.len);
        if !urgent && self.ahead_calls.fetch_add(1, Relaxed) % PACE != 0 {
            return;
        }
        if self.ahead_refused.load(Relaxed) == from {
            return;
        }
        let to = (from + slice).min(self.len);
        match allocate(&self.file, from, to - from) {
            Ok(()) => self.reserved.store(to, Relaxed),
            Err(e) if is_unsupported(&e) => self.reserved.store(self.len, Relaxed),
            Err(_) => self.ahead_refused.store(from, Relaxed),
        }
    }

    /// How far the file is reserved (the arena's top may move this far without a call).
    pub(crate) fn reserved(&self) -> u64 {
        self.reserved.load(Relaxed)
    }
}

fn is_unsupported(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            e.raw_os_error(),
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS)
        )
}

#[cfg(target_os = "linux")]
fn allocate(file: &std::fs::File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::unix::io::AsRawFd;
    loop {
        // SAFETY: fallocate on an open descriptor of ours. KEEP_SIZE: a file another process
        // truncated stays truncated (its faults tell us, fault.rs), never silently re-grown
        // with zeros.
        let rc = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                libc::FALLOC_FL_KEEP_SIZE,
                off as i64,
                len as i64,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(_file: &std::fs::File, _off: u64, _len: u64) -> std::io::Result<()> {
    Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    const MIB: u64 = 1 << 20;

    #[test]
    fn ahead_a_slice_a_call_until_a_step_past_the_top() {
        let dir = std::path::Path::new("/dev/shm");
        let dir = if dir.is_dir() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        let p = dir.join(format!("skv-reserve-ahead-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)
            .unwrap();
        file.set_len(64 * MIB).unwrap();
        let r = Reservation {
            file,
            len: 64 * MIB,
            reserved: AtomicU64::new(0),
            ahead_refused: AtomicU64::new(u64::MAX),
            ahead_calls: AtomicU64::new(0),
        };
        let allocated = || r.file.metadata().unwrap().blocks() * 512;
        r.reserve(3 * MIB).unwrap();
        if allocated() == 0 {
            eprintln!("skipped: this file system allocates nothing with fallocate");
            return;
        }
        let mark = r.reserved();
        assert_eq!(mark, 3 * MIB, "steps of 1 MiB (1/64 of the file)");
        // A step (1 MiB) and half a slice past the top: nothing to do yet.
        let slice = AHEAD_SLICE.min(r.step());
        r.reserve_ahead(mark - MIB - slice / 2, 0);
        assert_eq!(r.reserved(), mark);
        // Behind: one slice, not all the way.
        r.reserve_ahead(mark + 10 * MIB, 0);
        assert_eq!(r.reserved(), mark + slice);
        assert!(allocated() >= mark + slice);
        // A coming table widens the window, paced: one slice in PACE calls.
        let before = r.reserved();
        for _ in 0..PACE {
            r.reserve_ahead(before - MIB, 20 * MIB);
        }
        assert_eq!(r.reserved(), before + slice);
        // Never past the file.
        for _ in 0..100 * PACE {
            r.reserve_ahead(60 * MIB, 20 * MIB);
        }
        assert_eq!(r.reserved(), 64 * MIB);
        assert!(allocated() >= 64 * MIB);
        let _ = std::fs::remove_file(p);
    }
}
