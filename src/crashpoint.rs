//! Crash points: with the `crashpoints` feature (tests only), every store to shared memory
//! goes through a counter, and a process can be stopped dead right after store N (`_exit`: no
//! unwinding, the writer lock held, exactly as SIGKILL leaves it). `tests/crashpoints.rs` forks
//! a writer per N and recovers what each left, so every window between two stores is tried,
//! not sampled. Without the feature, `hit` is an empty inline function and the word types are
//! the plain atomics.

/// The exit status of a process stopped at its crash point.
pub const CRASHED: i32 = 86;

#[cfg(feature = "crashpoints")]
mod counting {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    static COUNT: AtomicU64 = AtomicU64::new(0);
    static LIMIT: AtomicU64 = AtomicU64::new(u64::MAX);

    /// From now on, stop the process dead right after the `n`th store (counting from 1).
    pub fn arm(n: u64) {
        COUNT.store(0, Relaxed);
        LIMIT.store(n, Relaxed);
    }

    /// Stores counted since `arm` (or since the process started).
    pub fn stores() -> u64 {
        COUNT.load(Relaxed)
    }

    /// Counts one store to shared memory, made just now.
    #[inline]
    pub fn hit() {
        if COUNT.fetch_add(1, Relaxed) + 1 == LIMIT.load(Relaxed) {
            // SAFETY: _exit ends the process at once; nothing of it is used afterwards.
            unsafe { libc::_exit(super::CRASHED) };
        }
    }
}

#[cfg(feature = "crashpoints")]
pub use counting::{arm, hit, stores};

/// A full file system, for stores in any memory: reserving space past `end` is refused as
/// reserve.rs refuses it (NoSpace), so the crash-point test can stop a writer at every store of
/// a write the file system turned down (its families run in anonymous shared memory).
#[cfg(feature = "crashpoints")]
mod refusing {
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    static REFUSE_PAST: AtomicU64 = AtomicU64::new(u64::MAX);

    /// From now on, refuse to reserve past `end` (u64::MAX: never refuse).
    pub fn refuse_reservations_past(end: u64) {
        REFUSE_PAST.store(end, Relaxed);
    }

    /// What is reserved, if reserving up to `end` is refused.
    pub fn refused(end: u64) -> Option<u64> {
        let past = REFUSE_PAST.load(Relaxed);
        (end > past).then_some(past)
    }
}

#[cfg(feature = "crashpoints")]
pub use refusing::{refuse_reservations_past, refused};

/// Counts one store to shared memory (nothing without the `crashpoints` feature).
#[cfg(not(feature = "crashpoints"))]
#[inline(always)]
pub fn hit() {}

/// A word of the region whose every store, read-modify-write included, is counted.
#[cfg(feature = "crashpoints")]
pub struct Counted<'a, A>(pub &'a A);

// By hand: a derive would ask the atomic itself to be Clone.
#[cfg(feature = "crashpoints")]
impl<A> Clone for Counted<'_, A> {
    fn clone(&self) -> Self {
        *self
    }
}
#[cfg(feature = "crashpoints")]
impl<A> Copy for Counted<'_, A> {}

#[cfg(feature = "crashpoints")]
macro_rules! counted {
    ($a:ty, $t:ty) => {
        impl Counted<'_, $a> {
            pub fn load(&self, o: std::sync::atomic::Ordering) -> $t {
                self.0.load(o)
            }
            pub fn as_ptr(&self) -> *mut $t {
                self.0.as_ptr()
            }
            pub fn store(&self, v: $t, o: std::sync::atomic::Ordering) {
                self.0.store(v, o);
                hit();
            }
            pub fn fetch_add(&self, v: $t, o: std::sync::atomic::Ordering) -> $t {
                let r = self.0.fetch_add(v, o);
                hit();
                r
            }
            pub fn fetch_and(&self, v: $t, o: std::sync::atomic::Ordering) -> $t {
                let r = self.0.fetch_and(v, o);
                hit();
                r
            }
            pub fn fetch_or(&self, v: $t, o: std::sync::atomic::Ordering) -> $t {
                let r = self.0.fetch_or(v, o);
                hit();
                r
            }
            pub fn fetch_update<F: FnMut($t) -> Option<$t>>(
                &self,
                set: std::sync::atomic::Ordering,
                fetch: std::sync::atomic::Ordering,
                f: F,
            ) -> Result<$t, $t> {
                let r = self.0.fetch_update(set, fetch, f);
                if r.is_ok() {
                    hit();
                }
                r
            }
            pub fn compare_exchange(
                &self,
                current: $t,
                new: $t,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<$t, $t> {
                let r = self.0.compare_exchange(current, new, success, failure);
                if r.is_ok() {
                    hit();
                }
                r
            }
            /// The strong exchange (a weak one may always succeed where a strong one would).
            pub fn compare_exchange_weak(
                &self,
                current: $t,
                new: $t,
                success: std::sync::atomic::Ordering,
                failure: std::sync::atomic::Ordering,
            ) -> Result<$t, $t> {
                self.compare_exchange(current, new, success, failure)
            }
        }
    };
}

#[cfg(feature = "crashpoints")]
counted!(std::sync::atomic::AtomicU8, u8);
#[cfg(feature = "crashpoints")]
counted!(std::sync::atomic::AtomicU16, u16);
#[cfg(feature = "crashpoints")]
counted!(std::sync::atomic::AtomicU32, u32);
#[cfg(feature = "crashpoints")]
counted!(std::sync::atomic::AtomicU64, u64);
