//! The writer lock and the bounded waiting used by every spin in the store.
//!
//! The lock is one u64 in the shared header: 0 when free, else its holder (a process and a
//! thread, see `holder.rs`), plus the PARKED bit when a waiter sleeps. It is only ever held
//! inside a single native call that runs no JS, so `worker.terminate()` (which interrupts JS,
//! not native code) cannot leave it held; a killed process can. A waiter spins briefly, then
//! sleeps on the header's wake word (a futex on Linux, so waiters in other processes are woken
//! too; elsewhere a bounded sleep) until the holder's release wakes it. While it waits it
//! checks, every few milliseconds, whether the holder is still alive. A dead holder's lock is
//! taken over (`WriteGuard::took_over`), and the new holder repairs what the dead one left
//! half-done before anything else (`recover.rs`). Where liveness cannot be known, a holder that
//! kept the lock for LEASE without any other acquisition in between is judged dead. Waiting is
//! bounded: a lock word that never clears (corrupted memory) becomes an error, not a hang.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::holder::{self, Liveness, PARKED};
use crate::region::{Word32, Word64};
use crate::sync::spin_loop;

/// How long a wait in the store may last, by default, before it reports an error.
pub const WAIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Spin, then yield, then sleep, until a deadline.
pub struct Backoff {
    spins: u32,
    start: Option<Instant>,
    timeout: Duration,
    what: &'static str,
}

impl Backoff {
    pub fn new(what: &'static str, timeout: Duration) -> Self {
        Backoff {
            spins: 0,
            start: None,
            timeout,
            what,
        }
    }

    /// Whether this wait has gone on for longer than any live writer takes (2 ms; under loom,
    /// which has no clock, a couple of retries).
    pub fn is_long(&self) -> bool {
        if cfg!(loom) {
            return self.spins > 2;
        }
        self.start
            .is_some_and(|s| s.elapsed() >= Duration::from_millis(2))
    }

    /// Waits a little; errors once the total wait exceeds the timeout.
    pub fn snooze(&mut self) -> Result<()> {
        self.spins += 1;
        if self.spins < 64 || cfg!(loom) {
            spin_loop(); // loom has no clock: its threads only ever spin
            return Ok(());
        }
        let start = *self.start.get_or_insert_with(Instant::now);
        let waited = start.elapsed();
        if waited > self.timeout {
            return Err(Error::Timeout(self.what));
        }
        if waited < Duration::from_millis(1) {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }
}

/// A waiter re-checks the lock at least this often, even if nobody wakes it.
/// (With the `crashpoints` feature, at once: the crash-point tests take a dead writer's lock
/// over thousands of times.)
const MAX_SLEEP: Duration = if cfg!(feature = "crashpoints") {
    Duration::from_micros(50)
} else {
    Duration::from_millis(10)
};

/// A waiter first asks whether the holder is alive after waiting this long (a live holder
/// releases within microseconds), then after every sleep.
const JUDGE_AFTER: Duration = if cfg!(feature = "crashpoints") {
    Duration::ZERO
} else {
    Duration::from_millis(2)
};

/// Where liveness cannot be known: a holder that kept the lock this long, with no other
/// acquisition in between, is taken to be dead. Longer than any operation holds the lock.
pub const LEASE: Duration = Duration::from_secs(5);

/// Spins before a waiter sleeps (under loom none, so that the models reach the sleeping path
/// within their preemption bound).
const SPINS: u32 = if cfg!(loom) { 0 } else { 100 };
/// ... and `lock` then yields while the lock has been held this long at most. A sleep and
/// its wake cost 50-500 us on a loaded 2-core machine, far more than most critical sections
/// (a write that also moves a slice of an index growth takes a few microseconds): with only
/// the 100 spins (~5 us), writers beside a growth slept so often that their p99.99 was 2.56x
/// a store that was not growing (benchmark/growth.js); yielding this long brought it to 1.9x.
const SPIN_FOR: Duration = Duration::from_micros(50);

/// The header words the lock uses.
#[derive(Clone, Copy)]
pub struct LockWords<'a> {
    /// The lock: 0 or the holder, with PARKED.
    pub word: Word64<'a>,
    /// Bumped by a release that saw PARKED; sleepers wait for it to change.
    pub wake: Word32<'a>,
    /// Bumped by every acquisition (the lease's witness of progress).
    pub gen: Word32<'a>,
    /// Nonzero once processes of several pid namespaces use the store.
    pub mixed: Word32<'a>,
    /// How long a holder whose liveness is unknown may keep the lock (LEASE; shorter in tests).
    pub lease: Duration,
}

/// Sets PARKED in a held lock word; false if the word is free (nothing to wait for).
fn mark_parked(word: Word64<'_>) -> bool {
    let cur = word.load(Ordering::Relaxed);
    cur != 0
        && (cur & PARKED != 0
            || word
                .compare_exchange(cur, cur | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok())
}

/// Sleeping on the wake word: a futex on Linux, shared by every process that maps the store.
/// The waiter reads the wake word before it marks the lock PARKED, and the kernel compares it
/// again before sleeping, so a release in between (which bumps it) cannot be missed.
#[cfg(all(target_os = "linux", not(loom)))]
mod park {
    use super::*;

    pub fn sleep(w: LockWords<'_>, max: Duration) -> bool {
        let seen = w.wake.load(Ordering::Acquire);
        if !mark_parked(w.word) {
            return false;
        }
        crate::futex::wait(w.wake, seen, max);
        true
    }

    pub fn wake_all(w: LockWords<'_>) {
        w.wake.fetch_add(1, Ordering::Release);
        crate::futex::wake_all(w.wake);
    }
}

/// Without a futex: waiters of this process sleep on a process-wide condvar (the PARKED bit is
/// set under its mutex and the releaser takes it before notifying, so a wakeup within the
/// process cannot be lost); a waiter in another process re-checks after MAX_SLEEP at most.
#[cfg(all(not(target_os = "linux"), not(loom)))]
mod park {
    use super::*;

    static PARK_LOCK: parking_lot::Mutex<()> = parking_lot::const_mutex(());
    static PARK_WAKE: parking_lot::Condvar = parking_lot::Condvar::new();

    pub fn sleep(w: LockWords<'_>, max: Duration) -> bool {
        let mut guard = PARK_LOCK.lock();
        if !mark_parked(w.word) {
            return false;
        }
        PARK_WAKE.wait_for(&mut guard, max.min(MAX_SLEEP));
        true
    }

    pub fn wake_all(w: LockWords<'_>) {
        w.wake.fetch_add(1, Ordering::Release);
        let _guard = PARK_LOCK.lock();
        PARK_WAKE.notify_all();
    }
}

/// The same protocol on loom's mutex and condvar. A sleeper waits with no timeout here, so a
/// lost wakeup would leave it asleep for ever, which loom reports as a deadlock. A holder that dies wakes
/// nobody; a model lets the sleepers' timeout elapse with `timeout_elapses`.
#[cfg(loom)]
mod park {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref PARK: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub fn sleep(w: LockWords<'_>, _max: Duration) -> bool {
        let guard = PARK.0.lock().unwrap();
        // A holder that died wakes nobody: its death is seen under the mutex that
        // `timeout_elapses` takes, so it is seen here or wakes this sleeper.
        let cur = w.word.load(Ordering::Relaxed);
        if holder::liveness(cur & !PARKED, false) == Liveness::Dead || !mark_parked(w.word) {
            return false;
        }
        drop(PARK.1.wait(guard).unwrap());
        true
    }

    pub fn wake_all(w: LockWords<'_>) {
        w.wake.fetch_add(1, Ordering::Release);
        timeout_elapses();
    }

    /// Wakes every sleeper, as their bounded sleep ending would.
    pub fn timeout_elapses() {
        let _guard = PARK.0.lock().unwrap();
        PARK.1.notify_all();
    }
}

/// Under loom: the sleepers' bounded waits end (what lets them see a holder that died).
#[cfg(loom)]
pub use park::timeout_elapses;

/// Holds the writer lock until dropped.
pub struct WriteGuard<'a> {
    words: LockWords<'a>,
    me: u64,
    /// The lock was taken over from a dead holder: its work must be recovered first.
    pub took_over: bool,
}

/// How a waiter judges the holder it keeps seeing.
struct Judge {
    /// (holder, acquisition count) when first seen, and since when.
    seen: Option<(u64, u32, Instant)>,
    last: Option<Instant>,
}

impl Judge {
    /// Whether `holder` (without PARKED) should be taken to be dead now.
    fn dead(&mut self, w: LockWords<'_>, holder: u64, start: Instant) -> bool {
        let now = Instant::now();
        if cfg!(not(loom)) {
            if now.duration_since(start) < JUDGE_AFTER
                || self.last.is_some_and(|t| now.duration_since(t) < MAX_SLEEP)
            {
                return false;
            }
        }
        self.last = Some(now);
        let mixed = w.mixed.load(Ordering::Relaxed) != 0;
        match holder::liveness(holder, mixed) {
            Liveness::Alive => false,
            Liveness::Dead => true,
            Liveness::Unknown => {
                let gen = w.gen.load(Ordering::Relaxed);
                match self.seen {
                    Some((h, g, since)) if h == holder && g == gen => {
                        now.duration_since(since) >= w.lease
                    }
                    _ => {
                        self.seen = Some((holder, gen, now));
                        false
                    }
                }
            }
        }
    }
}

pub fn lock(w: LockWords<'_>, timeout: Duration) -> Result<WriteGuard<'_>> {
    let me = holder::me();
    // The clock is read once the lock is found held: a free lock costs no clock_gettime.
    let mut started: Option<Instant> = None;
    // Once this thread has slept, others may be asleep too: it keeps the PARKED bit when it
    // takes the lock, so that its release wakes them.
    let mut mark = 0;
    let mut spins = 0u32;
    let mut judge = Judge {
        seen: None,
        last: None,
    };
    // Swaps `cur` for this thread's word (with `parked`): the lock is then ours.
    let take = |cur: u64, parked: u64, took_over: bool| {
        w.word
            .compare_exchange(cur, me | parked, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| {
                w.gen.fetch_add(1, Ordering::Relaxed);
                WriteGuard {
                    words: w,
                    me,
                    took_over,
                }
            })
    };
    loop {
        let cur = w.word.load(Ordering::Relaxed);
        if cur == 0 {
            if let Some(guard) = take(0, mark, false) {
                return Ok(guard);
            }
            continue;
        }
        let holder = cur & !PARKED;
        if holder == me {
            // Only reachable if the lock word was forged: this thread never re-enters.
            return Err(Error::corrupted(
                "write lock claims to be held by this thread",
            ));
        }
        let start = *started.get_or_insert_with(Instant::now);
        if spins < SPINS {
            spins += 1;
            spin_loop();
            continue;
        }
        if !cfg!(loom) && start.elapsed() < SPIN_FOR {
            // Yielding, not spinning: where threads outnumber cores, the holder may be the
            // one waiting for this core.
            std::thread::yield_now();
            continue;
        }
        if judge.dead(w, holder, start) {
            // Take it over, keeping PARKED for whoever sleeps. Acquire: what the dead holder
            // wrote before it died is visible (its process is gone, its stores are all done).
            if let Some(guard) = take(cur, cur & PARKED, true) {
                return Ok(guard);
            }
            continue;
        }
        let remaining = timeout
            .checked_sub(start.elapsed())
            .ok_or(Error::Timeout("store write lock"))?;
        if park::sleep(w, remaining.min(MAX_SLEEP)) {
            mark = PARKED;
        }
    }
}

/// Takes the lock if it is free now (a few spins), without waiting, judging or taking over a
/// holder: for work that may be skipped, such as marking reads.
pub fn try_lock(w: LockWords<'_>) -> Option<WriteGuard<'_>> {
    let me = holder::me();
    for _ in 0..SPINS.max(1) {
        if w.word.load(Ordering::Relaxed) == 0
            && w.word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            w.gen.fetch_add(1, Ordering::Relaxed);
            return Some(WriteGuard {
                words: w,
                me,
                took_over: false,
            });
        }
        spin_loop();
    }
    None
}

impl WriteGuard<'_> {
    /// Leaves the lock held, as a process killed at this point would (for tests).
    pub fn abandon(self) {
        std::mem::forget(self);
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        loop {
            let cur = self.words.word.load(Ordering::Relaxed);
            if cur & !PARKED != self.me {
                return; // not ours (forged, or judged dead): left for the next locker
            }
            if self
                .words
                .word
                .compare_exchange_weak(cur, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                if cur & PARKED != 0 {
                    park::wake_all(self.words);
                }
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom), not(feature = "crashpoints")))]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, AtomicU64};
    use std::sync::Arc;

    /// The lock's header words, on the heap.
    #[derive(Default)]
    struct Words {
        word: AtomicU64,
        wake: AtomicU32,
        gen: AtomicU32,
        mixed: AtomicU32,
    }

    impl Words {
        fn words(&self) -> LockWords<'_> {
            LockWords {
                word: &self.word,
                wake: &self.wake,
                gen: &self.gen,
                mixed: &self.mixed,
                lease: Duration::from_millis(100),
            }
        }
    }

    #[test]
    fn excludes_other_threads() {
        let w = Arc::new(Words::default());
        let counter = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (w, counter) = (w.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _g = lock(w.words(), WAIT_TIMEOUT).unwrap();
                        // Non-atomic read-modify-write: loses updates unless the lock excludes.
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
        assert_eq!(w.word.load(Ordering::Relaxed), 0);
        assert_eq!(w.gen.load(Ordering::Relaxed), 80_000);
    }

    #[test]
    fn forged_self_owned_word_is_an_error_not_a_deadlock() {
        let w = Words::default();
        w.word.store(holder::me(), Ordering::Relaxed);
        assert!(matches!(
            lock(w.words(), WAIT_TIMEOUT),
            Err(Error::Corrupted(_))
        ));
    }

    #[test]
    fn a_waiter_sleeps_and_the_release_wakes_it() {
        let w = Arc::new(Words::default());
        let guard = lock(w.words(), WAIT_TIMEOUT).unwrap();
        let waiter = {
            let w = w.clone();
            std::thread::spawn(move || {
                let g = lock(w.words(), WAIT_TIMEOUT).unwrap();
                assert!(!g.took_over, "a live holder is waited for");
                holder::me()
            })
        };
        // The waiter gives up spinning and marks the word before it sleeps.
        while w.word.load(Ordering::Relaxed) & PARKED == 0 {
            std::thread::yield_now();
        }
        drop(guard);
        let waiter_me = waiter.join().unwrap();
        assert_ne!(waiter_me, holder::me());
        assert_eq!(
            w.word.load(Ordering::Relaxed),
            0,
            "released, PARKED cleared"
        );
        assert!(
            w.wake.load(Ordering::Relaxed) >= 1,
            "the release woke the sleeper"
        );
    }

    #[test]
    fn a_live_holder_that_never_releases_times_out() {
        let w = Words::default();
        let other = std::thread::spawn(holder::me).join().unwrap(); // alive: our process
        w.word.store(other, Ordering::Relaxed);
        let err = lock(w.words(), Duration::from_millis(30)).err();
        assert_eq!(err, Some(Error::Timeout("store write lock")));
    }

    #[test]
    fn where_liveness_is_unknown_the_lease_decides() {
        let w = Words::default();
        w.mixed.store(1, Ordering::Relaxed); // several pid namespaces: pids tell nothing
        let stranger = holder::me() ^ (1 << 40); // our pid, another start: maybe anyone
        w.word.store(stranger, Ordering::Relaxed);
        // A holder that keeps acquiring (gen moves) is never judged by the lease...
        let err = std::thread::scope(|s| {
            let t = s.spawn(|| lock(w.words(), Duration::from_millis(400)).err());
            for _ in 0..40 {
                w.gen.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(10));
            }
            t.join().unwrap()
        });
        assert_eq!(err, Some(Error::Timeout("store write lock")));
        // ...one that holds it past the lease with no other acquisition is taken over.
        let g = lock(w.words(), WAIT_TIMEOUT).unwrap();
        assert!(g.took_over);
    }

    #[test]
    fn a_dead_processs_lock_is_taken_over_at_once() {
        let w = Words::default();
        // Our pid with another start time: a process that had our pid and died.
        let dead = holder::me() ^ (1 << 40);
        w.word.store(dead | PARKED, Ordering::Relaxed);
        let started = Instant::now();
        let g = lock(w.words(), WAIT_TIMEOUT).unwrap();
        assert!(g.took_over);
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(w.word.load(Ordering::Relaxed), holder::me() | PARKED);
        drop(g);
        assert_eq!(w.word.load(Ordering::Relaxed), 0);
    }
}
