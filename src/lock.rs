//! The writer lock and the bounded waiting used by every spin in the store.
//!
//! The lock is one u32 in the shared header: 0 when free, else the holder's thread tag, plus
//! the PARKED bit when a waiter sleeps. It is only ever held inside a single native call that
//! runs no JS, so `worker.terminate()` (which interrupts JS, not native code) cannot leave it
//! held. A waiter spins briefly, then sleeps on a process-wide parking_lot condvar (all threads
//! of a Node process share the region's address) until the holder's release wakes it. Waiting
//! is bounded: a lock word that never clears (corrupted memory) becomes an error, not a hang.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::region::Word32;
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

/// Set in the lock word while some thread sleeps waiting for it.
const PARKED: u32 = 1 << 31;

/// A waiter re-checks the lock at least this often, even if nobody wakes it.
const MAX_SLEEP: Duration = Duration::from_millis(10);

/// Spins before a waiter sleeps (under loom none, so that the models reach the sleeping path
/// within their preemption bound).
const SPINS: u32 = if cfg!(loom) { 0 } else { 100 };

/// Sets PARKED in a held lock word; false if the word is free (nothing to wait for).
fn mark_parked(word: Word32<'_>) -> bool {
    let cur = word.load(Ordering::Relaxed);
    cur != 0
        && (cur & PARKED != 0
            || word
                .compare_exchange(cur, cur | PARKED, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok())
}

/// Sleeping waiters of every store in the process. The PARKED bit is set under this mutex and
/// the releaser takes it before notifying, so a wakeup cannot be lost.
#[cfg(not(loom))]
mod park {
    use super::*;

    static PARK_LOCK: parking_lot::Mutex<()> = parking_lot::const_mutex(());
    static PARK_WAKE: parking_lot::Condvar = parking_lot::Condvar::new();

    /// Marks the held `word` PARKED and sleeps until a release wakes it, or `max` passes.
    /// Returns false, at once, if the word was free.
    pub fn sleep(word: Word32<'_>, max: Duration) -> bool {
        let mut guard = PARK_LOCK.lock();
        if !mark_parked(word) {
            return false;
        }
        PARK_WAKE.wait_for(&mut guard, max);
        true
    }

    pub fn wake_all() {
        let _guard = PARK_LOCK.lock();
        PARK_WAKE.notify_all();
    }
}

/// The same protocol on loom's mutex and condvar. A sleeper waits with no timeout here, so a
/// lost wakeup would leave it asleep for ever, which loom reports as a deadlock.
#[cfg(loom)]
mod park {
    use super::*;
    use loom::sync::{Condvar, Mutex};

    loom::lazy_static! {
        static ref PARK: (Mutex<()>, Condvar) = (Mutex::new(()), Condvar::new());
    }

    pub fn sleep(word: Word32<'_>, _max: Duration) -> bool {
        let guard = PARK.0.lock().unwrap();
        if !mark_parked(word) {
            return false;
        }
        drop(PARK.1.wait(guard).unwrap());
        true
    }

    pub fn wake_all() {
        let _guard = PARK.0.lock().unwrap();
        PARK.1.notify_all();
    }
}

/// A nonzero tag unique to the calling thread (without the PARKED bit), stored in lock words
/// it holds.
pub fn thread_tag() -> u32 {
    use std::sync::atomic::AtomicU32 as Counter;
    static NEXT: Counter = Counter::new(1);
    #[cfg(not(loom))]
    thread_local!(static TAG: u32 = (NEXT.fetch_add(1, Ordering::Relaxed) & !PARKED).max(1));
    // loom runs its threads on one OS thread: a std thread-local would be shared.
    #[cfg(loom)]
    loom::thread_local!(static TAG: u32 = (NEXT.fetch_add(1, Ordering::Relaxed) & !PARKED).max(1));
    TAG.with(|t| *t)
}

/// Holds the writer lock until dropped.
pub struct WriteGuard<'a> {
    word: Word32<'a>,
    tag: u32,
}

pub fn lock(word: Word32<'_>, timeout: Duration) -> Result<WriteGuard<'_>> {
    let tag = thread_tag();
    let start = Instant::now();
    // Once this thread has slept, others may be asleep too: it keeps the PARKED bit when it
    // takes the lock, so that its release wakes them.
    let mut mark = 0;
    let mut spins = 0u32;
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0 {
            if word
                .compare_exchange_weak(0, tag | mark, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return Ok(WriteGuard { word, tag });
            }
            continue;
        }
        if cur & !PARKED == tag {
            // Only reachable if the lock word was forged: this thread never re-enters.
            return Err(Error::corrupted(
                "write lock claims to be held by this thread",
            ));
        }
        if spins < SPINS {
            spins += 1;
            spin_loop();
            continue;
        }
        let remaining = timeout
            .checked_sub(start.elapsed())
            .ok_or(Error::Timeout("store write lock"))?;
        if park::sleep(word, remaining.min(MAX_SLEEP)) {
            mark = PARKED;
        }
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        loop {
            let cur = self.word.load(Ordering::Relaxed);
            if cur & !PARKED != self.tag {
                return; // not ours (forged): left for the next locker to diagnose
            }
            if self
                .word
                .compare_exchange_weak(cur, 0, Ordering::Release, Ordering::Relaxed)
                .is_ok()
            {
                if cur & PARKED != 0 {
                    park::wake_all();
                }
                return;
            }
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;
    use std::sync::Arc;

    #[test]
    fn excludes_other_threads() {
        let word = Arc::new(AtomicU32::new(0));
        let counter = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (word, counter) = (word.clone(), counter.clone());
                std::thread::spawn(move || {
                    for _ in 0..20_000 {
                        let _g = lock(&word, WAIT_TIMEOUT).unwrap();
                        // Non-atomic read-modify-write: loses updates unless the lock excludes.
                        let v = counter.load(Ordering::Relaxed);
                        counter.store(v + 1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        assert_eq!(counter.load(Ordering::Relaxed), 80_000);
        assert_eq!(word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn forged_self_owned_word_is_an_error_not_a_deadlock() {
        let word = AtomicU32::new(thread_tag());
        assert!(matches!(
            lock(&word, WAIT_TIMEOUT),
            Err(Error::Corrupted(_))
        ));
    }

    #[test]
    fn a_waiter_sleeps_and_the_release_wakes_it() {
        let word = Arc::new(AtomicU32::new(0));
        let guard = lock(&word, WAIT_TIMEOUT).unwrap();
        let waiter = {
            let word = word.clone();
            std::thread::spawn(move || {
                let _g = lock(&word, WAIT_TIMEOUT).unwrap();
                thread_tag()
            })
        };
        // The waiter gives up spinning and marks the word before it sleeps.
        while word.load(Ordering::Relaxed) & PARKED == 0 {
            std::thread::yield_now();
        }
        drop(guard);
        let waiter_tag = waiter.join().unwrap();
        assert_ne!(waiter_tag, thread_tag());
        assert_eq!(
            word.load(Ordering::Relaxed),
            0,
            "released, PARKED bit cleared"
        );
    }

    #[test]
    fn a_lock_that_never_clears_times_out() {
        let word = AtomicU32::new(thread_tag() + 1);
        let err = lock(&word, Duration::from_millis(20)).err();
        assert_eq!(err, Some(Error::Timeout("store write lock")));
    }
}
