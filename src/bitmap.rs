//! A set of arena blocks as one bit per 8-byte boundary, for the passes that match every
//! block with the index: recovery (recover.rs) and `check()` (check.rs).
//!
//! (top / 64) bytes of address space, asked for fallibly: zeroed pages the allocator maps and
//! commits only where a block sets a bit, so a store of large values costs little, and a
//! process that cannot have it gets ENOMEM, not an abort (a hash set of a billion blocks would
//! take tens of GiB, allocated infallibly).

use crate::error::{Error, Result};
use crate::layout::{BLOCK_ALIGN, HEADER_SIZE};

pub struct BlockBits {
    words: Box<[u64]>,
    top: u64,
    len: u64,
}

impl BlockBits {
    /// An empty set for the blocks below `top`; `what` names the pass in an ENOMEM error.
    pub fn new(top: u64, what: &str) -> Result<BlockBits> {
        let words = (top.saturating_sub(HEADER_SIZE) / 8).div_ceil(64) as usize;
        Ok(BlockBits {
            words: zeroed_words(words, what)?,
            top,
            len: 0,
        })
    }

    /// The bit of `block`, or a corruption error for an offset no block can start at.
    fn bit(&self, block: u64) -> Result<(usize, u64)> {
        if block < HEADER_SIZE || block >= self.top || block % BLOCK_ALIGN != 0 {
            return Err(Error::corrupted("a block reference outside the arena"));
        }
        let bit = (block - HEADER_SIZE) / 8;
        Ok(((bit / 64) as usize, 1 << (bit % 64)))
    }

    /// Adds `block`; false if it was there already.
    pub fn insert(&mut self, block: u64) -> Result<bool> {
        let (i, mask) = self.bit(block)?;
        if self.words[i] & mask != 0 {
            return Ok(false);
        }
        self.words[i] |= mask;
        self.len += 1;
        Ok(true)
    }

    /// Removes `block`; false if it was not there.
    pub fn remove(&mut self, block: u64) -> Result<bool> {
        let (i, mask) = self.bit(block)?;
        if self.words[i] & mask == 0 {
            return Ok(false);
        }
        self.words[i] &= !mask;
        self.len -= 1;
        Ok(true)
    }

    pub fn contains(&self, block: u64) -> bool {
        self.bit(block)
            .is_ok_and(|(i, mask)| self.words[i] & mask != 0)
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// `words` zeroed u64s, or ENOMEM. `alloc_zeroed` gets fresh zero pages from the OS for a large
/// size, so only the pages written are committed (a `vec![0; n]` after `try_reserve` writes them
/// all: 64 MiB per recovery of a 4 GiB store).
fn zeroed_words(words: usize, what: &str) -> Result<Box<[u64]>> {
    let enomem = || Error::Io {
        code: "ENOMEM".into(),
        message: format!(
            "{what} needs {} bytes of memory, which this process cannot get",
            words.saturating_mul(8)
        ),
    };
    if words == 0 {
        return Ok(Box::new([]));
    }
    let layout = std::alloc::Layout::array::<u64>(words).map_err(|_| enomem())?;
    // SAFETY: the layout's size is non-zero (words > 0).
    let p = unsafe { std::alloc::alloc_zeroed(layout) }.cast::<u64>();
    if p.is_null() {
        return Err(enomem());
    }
    // SAFETY: `p` is a fresh, zeroed (valid u64s) allocation of the global allocator with the
    // layout of `[u64; words]`, which is what the Box frees it with.
    Ok(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(p, words)) })
}
