//! The arena: size-classed blocks carved from the region, with one free list per class.
//!
//! Only the writer-lock holder calls these. Every offset taken from the region (free-list
//! links, block headers) is validated before use, so a corrupted arena yields
//! `Error::Corrupted`, never a wild access.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;

/// The size class holding `size` bytes (header included) and that class's block size.
pub fn class_for(size: u64) -> Result<(u32, u64)> {
    let size = size.max(MIN_BLOCK);
    if size <= SMALL_LIMIT {
        let class = (align_up(size, SMALL_STEP) / SMALL_STEP - 1) as u32;
        return Ok((class, class_size(class)));
    }
    // size lies in (2^k, 2^(k+1)]; classes there are 2^k * (1 + i/8), i = 1..=8.
    let k = 63 - (size - 1).leading_zeros();
    if k >= LARGE_SHIFT_MAX {
        return Err(Error::ValueTooLarge {
            len: size as usize,
            max: MAX_VALUE_BYTES,
        });
    }
    let step_size = 1u64 << (k - 3);
    let step = (size - (1u64 << k)).div_ceil(step_size); // 1..=8
    let class = SMALL_CLASSES + LARGE_STEPS * (k - 8) + (step as u32 - 1);
    Ok((class, class_size(class)))
}

pub fn class_size(class: u32) -> u64 {
    if class < SMALL_CLASSES {
        (class as u64 + 1) * SMALL_STEP
    } else {
        let c = class - SMALL_CLASSES;
        let k = 8 + c / LARGE_STEPS;
        (1u64 << k) + (c as u64 % LARGE_STEPS as u64 + 1) * (1u64 << (k - 3))
    }
}

fn free_head(class: u32) -> u64 {
    H_FREE_HEADS + 8 * class as u64
}

/// A block header, decoded.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub class: u32,
    pub flags: u32,
    /// Bytes before the key: SHORT_HEADER, LONG_HEADER or TTL_HEADER.
    pub header_len: u64,
    pub key_len: u64,
    pub val_len: u64,
    /// Expiry time in ms since the Unix epoch; 0: never.
    pub expires_at: u64,
}

impl Header {
    /// Bytes this block holds after its header.
    pub fn capacity(&self) -> u64 {
        class_size(self.class) - self.header_len
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now_ms
    }

    pub fn in_use(&self) -> bool {
        matches!(self.flags, FLAGS_SHORT | FLAGS_LONG | FLAGS_TTL)
    }
}

pub fn read_header(r: &Region, block: u64) -> Result<Header> {
    let w0 = r.u32(block + B_WORD0)?.load(Relaxed);
    let flags = (w0 >> 8) & 0xff;
    let (header_len, val_len, expires_at) = match flags {
        FLAGS_SHORT => (
            SHORT_HEADER,
            r.u16(block + B_VAL_LEN)?.load(Relaxed) as u64,
            0,
        ),
        FLAGS_LONG => (
            LONG_HEADER,
            r.u32(block + B_VAL_LEN)?.load(Relaxed) as u64,
            0,
        ),
        FLAGS_TTL => (
            TTL_HEADER,
            r.u32(block + B_VAL_LEN)?.load(Relaxed) as u64,
            r.u64(block + B_EXPIRES)?.load(Relaxed),
        ),
        _ => (LONG_HEADER, 0, 0),
    };
    Ok(Header {
        class: w0 & 0xff,
        flags,
        header_len,
        key_len: (w0 >> 16) as u64,
        val_len,
        expires_at,
    })
}

fn write_word0(r: &Region, block: u64, class: u32, flags: u32, key_len: u64) -> Result<()> {
    r.u32(block + B_WORD0)?
        .store(class | flags << 8 | (key_len as u32) << 16, Relaxed);
    Ok(())
}

/// The class (and its header kind) a data block with `payload` bytes of key and value gets:
/// a TTL header if it expires, else a short header when the class is small enough for a
/// 16-bit value length.
pub fn data_class(payload: u64, expires: bool) -> Result<(u32, u32)> {
    if expires {
        return Ok((class_for(payload + TTL_HEADER)?.0, FLAGS_TTL));
    }
    let (class, size) = class_for(payload + SHORT_HEADER)?;
    if size <= SHORT_HEADER_MAX_CLASS {
        return Ok((class, FLAGS_SHORT));
    }
    Ok((class_for(payload + LONG_HEADER)?.0, FLAGS_LONG))
}

/// The arena of a region whose header is initialised.
pub struct Arena<'r> {
    pub r: &'r Region,
}

impl<'r> Arena<'r> {
    pub fn init(r: &Region) -> Result<()> {
        r.u64(H_ARENA_TOP)?.store(HEADER_SIZE, Relaxed);
        r.u64(H_BYTES_IN_USE)?.store(0, Relaxed);
        for c in 0..NUM_CLASSES {
            r.u64(free_head(c))?.store(0, Relaxed);
        }
        Ok(())
    }

    fn top(&self) -> Result<u64> {
        let top = self.r.u64(H_ARENA_TOP)?.load(Relaxed);
        if top < HEADER_SIZE || top % BLOCK_ALIGN != 0 || top > MAX_REGION_BYTES {
            return Err(Error::corrupted("arena top"));
        }
        Ok(top)
    }

    /// Checks that `block` is a block boundary below the arena top, in use (or free, if not
    /// `in_use`), and returns its header.
    pub fn check_block(&self, block: u64, in_use: bool) -> Result<Header> {
        if block < HEADER_SIZE || block % BLOCK_ALIGN != 0 || block >= self.top()? {
            return Err(Error::corrupted("block offset"));
        }
        let h = read_header(self.r, block)?;
        let ok = if in_use {
            h.in_use()
        } else {
            h.flags == FLAGS_FREE
        };
        if !ok {
            return Err(Error::corrupted("block flags"));
        }
        if h.class >= NUM_CLASSES || block + class_size(h.class) > self.top()? {
            return Err(Error::corrupted("block size class"));
        }
        Ok(h)
    }

    /// Allocates a long-header block with `payload` bytes at +BLOCK_HEADER (for the index).
    pub fn alloc(&self, payload: u64) -> Result<u64> {
        self.alloc_class(class_for(payload + LONG_HEADER)?.0, FLAGS_LONG)
    }

    /// Allocates a data block for a key and value of these lengths (with room for `reserve`
    /// value bytes if more), with its lengths and expiry set. Returns the block's header.
    pub fn alloc_data(
        &self,
        key_len: u64,
        val_len: u64,
        reserve: u64,
        expires_at: u64,
    ) -> Result<(u64, Header)> {
        let (class, flags) = data_class(key_len + val_len.max(reserve), expires_at != 0)?;
        let block = self.alloc_class(class, flags)?;
        self.set_lengths(block, key_len, val_len)?;
        if flags == FLAGS_TTL {
            self.set_expiry(block, expires_at)?;
            let n = self.r.u64(H_TTL_BLOCKS)?;
            n.store(n.load(Relaxed) + 1, Relaxed);
        }
        Ok((block, read_header(self.r, block)?))
    }

    /// Sets an expiring block's expiry time.
    pub fn set_expiry(&self, block: u64, expires_at: u64) -> Result<()> {
        self.r.u64(block + B_EXPIRES)?.store(expires_at, Relaxed);
        Ok(())
    }

    /// Takes a block of `class` from its free list or the uncarved space. Fails with
    /// `NeedGrow` (changing nothing) when the region must grow first, or `Full` past the
    /// format's 4 GiB.
    fn alloc_class(&self, class: u32, flags: u32) -> Result<u64> {
        let size = class_size(class);
        let head_word = self.r.u64(free_head(class))?;
        let head = head_word.load(Relaxed);
        let block = if head != 0 {
            if self.check_block(head, false)?.class != class {
                return Err(Error::corrupted("free list holds a block of another class"));
            }
            let next = self.r.u64(head + B_NEXT_FREE)?.load(Relaxed);
            if next != 0 {
                self.check_block(next, false)?;
            }
            head_word.store(next, Relaxed);
            head
        } else {
            let top = self.top()?;
            let end = top + size;
            if end > MAX_REGION_BYTES {
                return Err(Error::Full {
                    needed: end,
                    max: MAX_REGION_BYTES,
                });
            }
            if end > self.r.len() {
                return Err(Error::NeedGrow { needed: end });
            }
            // The header before the top: a writer killed in between leaves no block without
            // one inside the arena (recovery walks the blocks by their headers). Release keeps
            // the compiler from reordering the two stores (a killed process's issued stores
            // all land; only their program order matters).
            write_word0(self.r, top, class, flags, 0)?;
            self.r.u64(H_ARENA_TOP)?.store(end, Release);
            top
        };
        write_word0(self.r, block, class, flags, 0)?;
        self.r.u32(block + B_VAL_LEN)?.store(0, Relaxed);
        let used = self.r.u64(H_BYTES_IN_USE)?;
        used.store(used.load(Relaxed) + size, Relaxed);
        Ok(block)
    }

    /// Records a data block's key and value lengths (the block must be in use and hold them).
    pub fn set_lengths(&self, block: u64, key_len: u64, val_len: u64) -> Result<()> {
        let h = read_header(self.r, block)?;
        if key_len + val_len > h.capacity() {
            return Err(Error::corrupted("value does not fit its block"));
        }
        write_word0(self.r, block, h.class, h.flags, key_len)?;
        match h.flags {
            FLAGS_SHORT => self
                .r
                .u16(block + B_VAL_LEN)?
                .store(val_len as u16, Relaxed),
            FLAGS_LONG | FLAGS_TTL => self
                .r
                .u32(block + B_VAL_LEN)?
                .store(val_len as u32, Relaxed),
            _ => return Err(Error::corrupted("block flags")),
        }
        Ok(())
    }

    /// Returns a block to its free list (or to the uncarved space if it is the last block).
    pub fn free(&self, block: u64) -> Result<()> {
        // Nothing of the free may be moved before what the caller did to stop referencing the
        // block (a writer killed in between must leave it referenced and in use, or neither).
        std::sync::atomic::compiler_fence(Release);
        let h = self.check_block(block, true)?;
        let class = h.class;
        if h.flags == FLAGS_TTL {
            let n = self.r.u64(H_TTL_BLOCKS)?;
            n.store(n.load(Relaxed).saturating_sub(1), Relaxed);
        }
        let size = class_size(class);
        let used = self.r.u64(H_BYTES_IN_USE)?;
        used.store(used.load(Relaxed).saturating_sub(size), Relaxed);
        write_word0(self.r, block, class, FLAGS_FREE, 0)?;
        if block + size == self.top()? {
            self.r.u64(H_ARENA_TOP)?.store(block, Relaxed);
            return Ok(());
        }
        let head_word = self.r.u64(free_head(class))?;
        self.r
            .u64(block + B_NEXT_FREE)?
            .store(head_word.load(Relaxed), Relaxed);
        head_word.store(block, Relaxed);
        Ok(())
    }

    /// Rebuilds every free list from the blocks' own headers, after a writer died mid-change
    /// (writer lock held, taken over). Blocks in use that `keep` rejects (a dead writer's new
    /// block not yet published, or an old one not yet freed) are freed. Returns the bytes and
    /// the TTL blocks in use. Safe to cut short and run again: it only ever frees unreferenced
    /// blocks, and every block keeps a valid header throughout. `top`: the arena top the caller
    /// sized `keep` for. Returns how many blocks `keep` kept.
    pub fn reclaim(&self, top: u64, keep: impl Fn(u64) -> bool) -> Result<u64> {
        if top != self.top()? || top > self.r.len() {
            return Err(Error::corrupted("arena top moved or lies past the region"));
        }
        for c in 0..NUM_CLASSES {
            self.r.u64(free_head(c))?.store(0, Relaxed);
        }
        let (mut used, mut ttl, mut kept) = (0, 0, 0);
        let mut at = HEADER_SIZE;
        while at < top {
            let h = read_header(self.r, at)?;
            if h.class >= NUM_CLASSES || at + class_size(h.class) > top {
                return Err(Error::corrupted("block size class"));
            }
            let size = class_size(h.class);
            if h.in_use() && keep(at) {
                used += size;
                ttl += (h.flags == FLAGS_TTL) as u64;
                kept += 1;
            } else if h.in_use() || h.flags == FLAGS_FREE {
                write_word0(self.r, at, h.class, FLAGS_FREE, 0)?;
                let head_word = self.r.u64(free_head(h.class))?;
                self.r
                    .u64(at + B_NEXT_FREE)?
                    .store(head_word.load(Relaxed), Relaxed);
                head_word.store(at, Relaxed);
            } else {
                return Err(Error::corrupted("block flags"));
            }
            at += size;
        }
        self.r.u64(H_BYTES_IN_USE)?.store(used, Relaxed);
        self.r.u64(H_TTL_BLOCKS)?.store(ttl, Relaxed);
        Ok(kept)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_cover_every_size_with_at_most_an_eighth_slack() {
        let mut prev = 0;
        for class in 0..NUM_CLASSES {
            let size = class_size(class);
            assert!(size > prev && size % BLOCK_ALIGN == 0, "class {class}");
            prev = size;
        }
        for size in (1..5000u64).chain((12..32).map(|k| (1u64 << k) + 3)) {
            let (class, csize) = class_for(size).unwrap();
            assert!(csize >= size, "{size}");
            assert!(
                csize <= (size * 9 / 8).max(MIN_BLOCK) + SMALL_STEP,
                "{size} -> {csize}"
            );
            assert_eq!(class_size(class), csize);
            if class > 1 {
                assert!(
                    class_size(class - 1) < size.max(MIN_BLOCK),
                    "{size} not in the smallest class"
                );
            }
        }
        assert!(
            class_for(1 << 32).is_ok() && class_for((1 << 32) + 1).is_err(),
            "past the format's 4 GiB"
        );
    }

    fn region(words: &mut Vec<u64>) -> Region {
        // SAFETY: the vector outlives the region in each test.
        let r = unsafe { Region::new(words.as_mut_ptr().cast(), words.len() * 8) };
        Arena::init(&r).unwrap();
        r
    }

    #[test]
    fn reuses_freed_blocks_and_asks_to_grow_when_out_of_room() {
        let mut mem = vec![0u64; (HEADER_SIZE as usize + 4096) / 8];
        let r = region(&mut mem);
        let a = Arena { r: &r };
        let b1 = a.alloc(100).unwrap();
        let b2 = a.alloc(100).unwrap();
        a.free(b1).unwrap();
        assert_eq!(
            a.alloc(99).unwrap(),
            b1,
            "same class reuses the freed block"
        );
        assert!(matches!(a.alloc(8000), Err(Error::NeedGrow { .. })));
        a.free(b2).unwrap();
        a.free(b1).unwrap();
        assert_eq!(r.u64(H_BYTES_IN_USE).unwrap().load(Relaxed), 0);
        assert!(a.free(b1).is_err(), "double free is detected");
    }

    #[test]
    fn corrupted_free_list_is_an_error() {
        let mut mem = vec![0u64; (HEADER_SIZE as usize + 4096) / 8];
        let r = region(&mut mem);
        let a = Arena { r: &r };
        let b1 = a.alloc(10).unwrap();
        let _b2 = a.alloc(10).unwrap();
        a.free(b1).unwrap();
        r.u64(b1 + B_NEXT_FREE)
            .unwrap()
            .store(u64::MAX - 3, Relaxed);
        assert!(matches!(a.alloc(10), Err(Error::Corrupted(_))));
    }
}
