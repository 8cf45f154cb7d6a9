//! Bounds-checked, atomic access to the shared bytes.
//!
//! Other threads (and any JS code holding the buffer) may write these bytes at any time, so
//! every access is an atomic operation (no data race in Rust's memory model) and every offset
//! is checked against a length this process trusts, never against one read from the region.

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};

use crate::error::{Error, Result};

/// A view of `len` bytes at `base`.
#[derive(Debug)]
pub struct Region {
    base: *mut u8,
    len: u64,
}

// SAFETY: all access goes through atomics; the owner guarantees the memory outlives the Region.
unsafe impl Send for Region {}
// SAFETY: as above; shared access is the whole point and is race-free by construction.
unsafe impl Sync for Region {}

impl Region {
    /// # Safety
    /// `base` must be 8-byte aligned, and `len` bytes from it must stay readable and writable
    /// for the lifetime of the Region (the binding keeps the SharedArrayBuffer alive).
    pub unsafe fn new(base: *mut u8, len: usize) -> Self {
        debug_assert!(base as usize % 8 == 0);
        Region {
            base,
            len: len as u64,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    /// Extends the view after the memory behind it grew in place.
    ///
    /// # Safety
    /// `len` bytes from the same base must now be valid, as for [`Region::new`].
    pub unsafe fn set_len(&mut self, len: usize) {
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
    pub fn u16(&self, off: u64) -> Result<&AtomicU16> {
        let o = self.check(off, 2)?;
        if off % 2 != 0 {
            return Err(Error::corrupted("misaligned u16 offset"));
        }
        // SAFETY: in bounds and 2-aligned (base is 8-aligned); valid for &self's lifetime.
        Ok(unsafe { AtomicU16::from_ptr(self.base.add(o).cast()) })
    }

    #[inline]
    pub fn u32(&self, off: u64) -> Result<&AtomicU32> {
        let o = self.check(off, 4)?;
        if off % 4 != 0 {
            return Err(Error::corrupted("misaligned u32 offset"));
        }
        // SAFETY: in bounds and 4-aligned (base is 8-aligned); valid for &self's lifetime.
        Ok(unsafe { AtomicU32::from_ptr(self.base.add(o).cast()) })
    }

    #[inline]
    pub fn u64(&self, off: u64) -> Result<&AtomicU64> {
        let o = self.check(off, 8)?;
        if off % 8 != 0 {
            return Err(Error::corrupted("misaligned u64 offset"));
        }
        // SAFETY: in bounds and 8-aligned; valid for &self's lifetime.
        Ok(unsafe { AtomicU64::from_ptr(self.base.add(o).cast()) })
    }

    #[inline]
    fn byte(&self, o: usize) -> &AtomicU8 {
        // SAFETY: callers pass an index already checked to be < len.
        unsafe { AtomicU8::from_ptr(self.base.add(o)) }
    }

    #[inline]
    fn word(&self, o: usize) -> &AtomicU64 {
        // SAFETY: callers pass an 8-aligned index with o + 8 <= len, already checked.
        unsafe { AtomicU64::from_ptr(self.base.add(o).cast()) }
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

#[cfg(test)]
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
