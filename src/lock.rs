//! The writer lock and the bounded waiting used by every spin in the store.
//!
//! The lock is one u32 in the shared header: 0 when free, else the holder's thread tag. It is
//! only ever held inside a single native call that runs no JS, so `worker.terminate()` (which
//! interrupts JS, not native code) cannot leave it held. Waiting is bounded: a lock word that
//! never clears (corrupted memory) becomes an error, not a hang.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

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
        if self.spins < 64 {
            std::hint::spin_loop();
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

/// A nonzero tag unique to the calling thread, stored in lock words it holds.
pub fn thread_tag() -> u32 {
    use std::sync::atomic::AtomicU32 as Counter;
    static NEXT: Counter = Counter::new(1);
    thread_local!(static TAG: u32 = NEXT.fetch_add(1, Ordering::Relaxed).max(1));
    TAG.with(|t| *t)
}

/// Holds the writer lock until dropped.
pub struct WriteGuard<'a> {
    word: &'a AtomicU32,
    tag: u32,
}

pub fn lock(word: &AtomicU32, timeout: Duration) -> Result<WriteGuard<'_>> {
    let tag = thread_tag();
    let mut backoff = Backoff::new("store write lock", timeout);
    loop {
        let cur = word.load(Ordering::Relaxed);
        if cur == 0
            && word
                .compare_exchange_weak(0, tag, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return Ok(WriteGuard { word, tag });
        }
        if cur == tag {
            // Only reachable if the lock word was forged: this thread never re-enters.
            return Err(Error::corrupted(
                "write lock claims to be held by this thread",
            ));
        }
        backoff.snooze()?;
    }
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        // Release only what we hold: a forged word is left for the next locker to diagnose.
        let _ = self
            .word
            .compare_exchange(self.tag, 0, Ordering::Release, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn a_lock_that_never_clears_times_out() {
        let word = AtomicU32::new(thread_tag() + 1);
        let err = lock(&word, Duration::from_millis(20)).err();
        assert_eq!(err, Some(Error::Timeout("store write lock")));
    }
}
