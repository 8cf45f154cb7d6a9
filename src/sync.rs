//! The synchronisation primitives the core uses, swapped for loom's under `--cfg loom`, so the
//! loom models in `tests/loom.rs` check this very code (the seqlock, the writer lock and
//! allocation), not a copy of it. Run them with `node scripts/loom.js`.

#[cfg(not(loom))]
pub use std::sync::atomic::{fence, AtomicU16, AtomicU32, AtomicU64, AtomicU8, AtomicUsize};

#[cfg(loom)]
pub use loom::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicUsize};

/// Waits a moment in a spin loop (under loom: lets another thread run).
#[inline]
pub fn spin_loop() {
    #[cfg(not(loom))]
    std::hint::spin_loop();
    #[cfg(loom)]
    loom::thread::yield_now();
}

/// Under loom, a narrower atomic inside one modelled 64-bit word: loom tracks whole objects,
/// and the region's words are accessed at several widths. Every access is a single atomic
/// operation on the word (a store is a read-modify-write that keeps the other bytes), so each
/// access stays as atomic, and as ordered, as on the real memory.
#[cfg(loom)]
pub mod sub {
    use loom::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering;

    #[derive(Clone, Copy)]
    pub struct Sub<'a, T> {
        pub word: &'a AtomicU64,
        pub shift: u32,
        pub _t: std::marker::PhantomData<T>,
    }

    macro_rules! sub {
        ($t:ty) => {
            impl Sub<'_, $t> {
                const MASK: u64 = <$t>::MAX as u64;

                fn get(&self, w: u64) -> $t {
                    (w >> self.shift) as $t
                }

                fn put(&self, w: u64, v: $t) -> u64 {
                    w & !(Self::MASK << self.shift) | (v as u64) << self.shift
                }

                pub fn load(&self, order: Ordering) -> $t {
                    self.get(self.word.load(order))
                }

                pub fn store(&self, v: $t, order: Ordering) {
                    let _ = self
                        .word
                        .fetch_update(order, Ordering::Relaxed, |w| Some(self.put(w, v)));
                }

                pub fn fetch_add(&self, v: $t, order: Ordering) -> $t {
                    let old = self.word.fetch_update(order, Ordering::Relaxed, |w| {
                        Some(self.put(w, self.get(w).wrapping_add(v)))
                    });
                    self.get(old.unwrap_or_else(|w| w))
                }

                pub fn compare_exchange(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$t, $t> {
                    loop {
                        let w = self.word.load(failure);
                        if self.get(w) != current {
                            return Err(self.get(w));
                        }
                        // Fails only if the word changed meanwhile (maybe another part of it).
                        if self
                            .word
                            .compare_exchange(w, self.put(w, new), success, failure)
                            .is_ok()
                        {
                            return Ok(current);
                        }
                    }
                }

                pub fn compare_exchange_weak(
                    &self,
                    current: $t,
                    new: $t,
                    success: Ordering,
                    failure: Ordering,
                ) -> Result<$t, $t> {
                    self.compare_exchange(current, new, success, failure)
                }
            }
        };
    }
    sub!(u8);
    sub!(u16);
    sub!(u32);
}
