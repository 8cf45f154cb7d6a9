//! Bounds-checked, atomic access to the shared bytes.
//!
//! Other threads (and any JS code holding the buffer) may write these bytes at any time, so
//! every access is an atomic operation (no data race in Rust's memory model) and every offset
//! is checked against a length this process trusts, never against one read from the region.

use std::sync::atomic::Ordering::Relaxed;

use crate::error::{Error, Result};
#[cfg(loom)]
use crate::sync::{sub::Sub, AtomicU64};
#[cfg(not(loom))]
use crate::sync::{AtomicU16, AtomicU32, AtomicU64, AtomicU8};

/// Handles on the region's words, as the `u16`/`u32`/`u64` accessors return them (under loom,
/// a view of part of a modelled word, see `sync`; with the `crashpoints` feature, one whose
/// stores are counted, see `crashpoint`).
#[cfg(all(not(loom), not(feature = "crashpoints")))]
pub type Word16<'a> = &'a AtomicU16;
#[cfg(all(not(loom), not(feature = "crashpoints")))]
pub type Word32<'a> = &'a AtomicU32;
#[cfg(all(not(loom), not(feature = "crashpoints")))]
pub type Word64<'a> = &'a AtomicU64;
#[cfg(all(not(loom), not(feature = "crashpoints")))]
type Word8<'a> = &'a AtomicU8;
#[cfg(loom)]
pub type Word16<'a> = Sub<'a, u16>;
#[cfg(loom)]
pub type Word32<'a> = Sub<'a, u32>;
#[cfg(loom)]
pub type Word64<'a> = &'a AtomicU64;
#[cfg(loom)]
type Word8<'a> = Sub<'a, u8>;
#[cfg(all(not(loom), feature = "crashpoints"))]
pub type Word16<'a> = Counted<'a, AtomicU16>;
#[cfg(all(not(loom), feature = "crashpoints"))]
pub type Word32<'a> = Counted<'a, AtomicU32>;
#[cfg(all(not(loom), feature = "crashpoints"))]
pub type Word64<'a> = Counted<'a, AtomicU64>;
#[cfg(all(not(loom), feature = "crashpoints"))]
type Word8<'a> = Counted<'a, AtomicU8>;
#[cfg(all(not(loom), feature = "crashpoints"))]
use crate::crashpoint::Counted;

/// Wraps a raw atomic as the word type (counting its stores with `crashpoints`).
#[cfg(all(not(loom), feature = "crashpoints"))]
macro_rules! word {
    ($e:expr) => {
        Counted($e)
    };
}
#[cfg(not(all(not(loom), feature = "crashpoints")))]
macro_rules! word {
    ($e:expr) => {
        $e
    };
}

/// A view of `len` bytes at `base`.
#[derive(Debug)]
pub struct Region {
    #[cfg(not(loom))]
    base: *mut u8,
    /// Under loom the bytes are modelled atomics owned by the region.
    #[cfg(loom)]
    words: Box<[AtomicU64]>,
    len: u64,
    /// A store file's reservation in its file system (reserve.rs); None for other memory.
    #[cfg(all(unix, not(loom)))]
    reservation: Option<std::sync::Arc<crate::reserve::Reservation>>,
    /// A store file's slot in the fault table (fault.rs); 0 for other memory.
    #[cfg(all(unix, not(loom)))]
    fault_slot: usize,
}

// SAFETY: all access goes through atomics; the owner guarantees the memory outlives the Region.
#[cfg(not(loom))]
unsafe impl Send for Region {}
// SAFETY: as above; shared access is the whole point and is race-free by construction.
#[cfg(not(loom))]
unsafe impl Sync for Region {}

#[cfg(all(loom, target_endian = "big"))]
compile_error!("the loom model of the region assumes little-endian words");

impl Region {
    /// # Safety
    /// `base` must be 8-byte aligned, and `len` bytes from it must stay readable and writable
    /// for the lifetime of the Region (the binding keeps the SharedArrayBuffer alive).
    #[cfg(not(loom))]
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        debug_assert!(base as usize % 8 == 0);
        Region {
            base,
            len: len as u64,
            #[cfg(unix)]
            reservation: crate::reserve::lookup(base as usize),
            #[cfg(unix)]
            fault_slot: crate::fault::slot_of(base as usize),
        }
    }

    /// ERR_KV_LOST if this is a store file's mapping that was truncated under this process
    /// (fault.rs): whatever was read or written since may be zeros, not the store.
    #[inline]
    pub fn lost(&self) -> Result<()> {
        #[cfg(all(unix, not(loom)))]
        if let Some(e) = crate::fault::lost(self.fault_slot, self.len) {
            return Err(e);
        }
        Ok(())
    }

    /// The fault table slot whose lost flag the JS reader checks (0: never lost).
    pub fn fault_slot(&self) -> usize {
        #[cfg(all(unix, not(loom)))]
        return self.fault_slot;
        #[cfg(not(all(unix, not(loom))))]
        0
    }

    /// Before the arena's top moves to `end`: the bytes below it are allocated in the file
    /// system of a store file (`NoSpace` if they cannot be). Nothing to do for other memory.
    #[inline]
    pub(crate) fn reserve_to(&self, end: u64) -> Result<()> {
        #[cfg(feature = "crashpoints")]
        if let Some(reserved) = crate::crashpoint::refused(end) {
            return Err(Error::NoSpace { end, reserved });
        }
        #[cfg(all(unix, not(loom)))]
        if let Some(r) = &self.reservation {
            if end > r.reserved() {
                return r.reserve(end);
            }
        }
        let _ = end;
        Ok(())
    }

    /// A store file's mapping (whose pages `reserve_to` allocates first).
    #[inline]
    pub(crate) fn is_reserved_file(&self) -> bool {
        #[cfg(all(unix, not(loom)))]
        return self.reservation.is_some();
        #[cfg(not(all(unix, not(loom))))]
        false
    }

    /// Reserves a slice of a store file ahead of the arena's `top` (best effort, see
    /// `Reservation::reserve_ahead`); nothing for other memory.
    pub(crate) fn reserve_ahead(&self, top: u64, table: u64) {
        #[cfg(all(unix, not(loom)))]
        if let Some(r) = &self.reservation {
            r.reserve_ahead(top, table);
        }
        let _ = (top, table);
    }

    /// A zeroed region of `len` modelled bytes, for the loom models.
    #[cfg(loom)]
    pub fn model(len: usize) -> Self {
        Region {
            words: (0..len.div_ceil(8)).map(|_| AtomicU64::new(0)).collect(),
            len: len as u64,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Asks the CPU to bring the cache line at `off` in, so that a later read of it does not
    /// wait for memory: several such misses then overlap. A hint only: it reads nothing the
    /// program sees, cannot fault, and does nothing out of bounds or off x86-64.
    #[inline]
    pub fn prefetch(&self, off: u64) {
        #[cfg(all(target_arch = "x86_64", not(loom)))]
        if off < self.len {
            // SAFETY: the pointer stays inside the region (off < len, which the owner keeps
            // mapped), and PREFETCHT0 neither reads into the program nor writes anything.
            unsafe {
                use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
                _mm_prefetch::<_MM_HINT_T0>(self.base.add(off as usize).cast::<i8>());
            }
        }
        #[cfg(not(all(target_arch = "x86_64", not(loom))))]
        let _ = off;
    }

    /// Adds `delta` to the u64 counter at `at` (writer lock held: no other writer races it).
    pub(crate) fn add(&self, at: u64, delta: i64) -> Result<()> {
        let w = self.u64(at)?;
        w.store(w.load(Relaxed).saturating_add_signed(delta), Relaxed);
        Ok(())
    }

    /// Extends the view after the memory behind it grew in place.
    ///
    /// # Safety
    /// `len` bytes from the same base must now be valid, as for [`Region::new`].
    pub unsafe fn set_len(&mut self, len: usize) {
        #[cfg(loom)]
        assert!(len <= self.words.len() * 8);
        self.len = len as u64;
    }

    #[inline]
    fn check(&self, off: u64, size: u64) -> Result<usize> {
        match off.checked_add(size) {
            Some(end) if end <= self.len => Ok(off as usize),
            _ => Err(Error::OutOfBounds { off, size }),
        }
    }

    #[inline]
    fn aligned(&self, off: u64, size: u64, what: &str) -> Result<usize> {
        let o = self.check(off, size)?;
        if off % size != 0 {
            return Err(Error::Corrupted(format!("misaligned {what} offset")));
        }
        Ok(o)
    }

    #[inline]
    pub fn u16(&self, off: u64) -> Result<Word16<'_>> {
        let o = self.aligned(off, 2, "u16")?;
        #[cfg(not(loom))]
        // SAFETY: in bounds and 2-aligned (base is 8-aligned); valid for &self's lifetime.
        return Ok(word!(unsafe {
            AtomicU16::from_ptr(self.base.add(o).cast())
        }));
        #[cfg(loom)]
        return Ok(self.sub(o));
    }

    #[inline]
    pub fn u32(&self, off: u64) -> Result<Word32<'_>> {
        let o = self.aligned(off, 4, "u32")?;
        #[cfg(not(loom))]
        // SAFETY: in bounds and 4-aligned (base is 8-aligned); valid for &self's lifetime.
        return Ok(word!(unsafe {
            AtomicU32::from_ptr(self.base.add(o).cast())
        }));
        #[cfg(loom)]
        return Ok(self.sub(o));
    }

    #[inline]
    pub fn u64(&self, off: u64) -> Result<Word64<'_>> {
        let o = self.aligned(off, 8, "u64")?;
        Ok(word!(self.word(o)))
    }

    #[cfg(loom)]
    fn sub<T>(&self, o: usize) -> Sub<'_, T> {
        Sub {
            word: &self.words[o / 8],
            shift: (o % 8) as u32 * 8,
            _t: std::marker::PhantomData,
        }
    }

    #[inline]
    fn byte(&self, o: usize) -> Word8<'_> {
        #[cfg(not(loom))]
        // SAFETY: callers pass an index already checked to be < len.
        return word!(unsafe { AtomicU8::from_ptr(self.base.add(o)) });
        #[cfg(loom)]
        return self.sub(o);
    }

    #[inline]
    fn word(&self, o: usize) -> &AtomicU64 {
        #[cfg(not(loom))]
        // SAFETY: callers pass an 8-aligned index with o + 8 <= len, already checked.
        return unsafe { AtomicU64::from_ptr(self.base.add(o).cast()) };
        #[cfg(loom)]
        return &self.words[o / 8];
    }

    /// Copies `out.len()` bytes from `off`, 8 bytes per atomic load where aligned.
    pub fn read(&self, off: u64, out: &mut [u8]) -> Result<()> {
        let mut o = self.check(off, out.len() as u64)?;
        let mut i = 0;
        while i < out.len() && o % 8 != 0 {
            out[i] = self.byte(o).load(Relaxed);
            i += 1;
            o += 1;
        }
        while out.len() - i >= 8 {
            out[i..i + 8].copy_from_slice(&self.word(o).load(Relaxed).to_ne_bytes());
            i += 8;
            o += 8;
        }
        while i < out.len() {
            out[i] = self.byte(o).load(Relaxed);
            i += 1;
            o += 1;
        }
        Ok(())
    }

    /// Writes `data` at `off`, 8 bytes per atomic store where aligned.
    pub fn write(&self, off: u64, data: &[u8]) -> Result<()> {
        let mut o = self.check(off, data.len() as u64)?;
        let mut i = 0;
        while i < data.len() && o % 8 != 0 {
            self.byte(o).store(data[i], Relaxed);
            i += 1;
            o += 1;
        }
        while data.len() - i >= 8 {
            let w = u64::from_ne_bytes(data[i..i + 8].try_into().unwrap());
            self.word(o).store(w, Relaxed);
            crate::crashpoint::hit();
            i += 8;
            o += 8;
        }
        while i < data.len() {
            self.byte(o).store(data[i], Relaxed);
            i += 1;
            o += 1;
        }
        Ok(())
    }

    /// Zero-fills `size` bytes at the 8-aligned offset `off`.
    pub fn zero(&self, off: u64, size: u64) -> Result<()> {
        let o = self.check(off, size)?;
        if off % 8 != 0 || size % 8 != 0 {
            return Err(Error::corrupted("misaligned zero fill"));
        }
        for w in (o..o + size as usize).step_by(8) {
            self.word(w).store(0, Relaxed);
            crate::crashpoint::hit();
        }
        Ok(())
    }

    /// Whether the bytes at `off` equal `data`.
    pub fn eq(&self, off: u64, data: &[u8]) -> Result<bool> {
        let mut o = self.check(off, data.len() as u64)?;
        let mut i = 0;
        while i < data.len() && o % 8 != 0 {
            if self.byte(o).load(Relaxed) != data[i] {
                return Ok(false);
            }
            i += 1;
            o += 1;
        }
        while data.len() - i >= 8 {
            if self.word(o).load(Relaxed).to_ne_bytes() != data[i..i + 8] {
                return Ok(false);
            }
            i += 8;
            o += 8;
        }
        while i < data.len() {
            if self.byte(o).load(Relaxed) != data[i] {
                return Ok(false);
            }
            i += 1;
            o += 1;
        }
        Ok(true)
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn copies_round_trip_at_every_alignment() {
        let mut mem = vec![0u64; 64];
        // SAFETY: mem outlives region and is 8-aligned.
        let region = unsafe { Region::new(mem.as_mut_ptr().cast(), 512) };
        for off in 0..16u64 {
            for len in 0..40usize {
                let data: Vec<u8> = (0..len)
                    .map(|i| (i as u8).wrapping_mul(7) ^ off as u8)
                    .collect();
                region.write(off, &data).unwrap();
                let mut out = vec![0; len];
                region.read(off, &mut out).unwrap();
                assert_eq!(out, data);
                assert!(region.eq(off, &data).unwrap());
            }
        }
    }

    #[test]
    fn rejects_out_of_bounds_and_overflowing_offsets() {
        let mut mem = vec![0u64; 4];
        // SAFETY: mem outlives region.
        let region = unsafe { Region::new(mem.as_mut_ptr().cast(), 32) };
        assert!(region.u64(32).is_err());
        assert!(region.u64(24).is_ok());
        assert!(region.u32(3).is_err());
        assert!(region.read(u64::MAX - 2, &mut [0; 8]).is_err());
        assert!(region.write(30, &[0; 3]).is_err());
    }
}
