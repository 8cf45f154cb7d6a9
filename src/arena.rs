//! The arena: blocks of any size (multiples of 8 bytes) carved from the region, split when a
//! smaller one is needed and merged with free neighbours when freed, so freed memory serves
//! any later size.
//!
//! - **Segregated free lists** (as TLSF): one doubly linked list per size below 256 bytes
//!   (8-byte steps), then eight per power of two; a bitmap says which lists hold blocks. An
//!   allocation takes the head of its own list if it fits, else the head of the first non-empty
//!   larger list (every block there fits), and splits off the rest: O(1), no search.
//! - **Boundary tags**: every free block ends with its size (its footer), and the block after a
//!   free block has PREV_FREE set in word 0. So `free` finds both neighbours in O(1) and merges
//!   them: two free blocks are never adjacent (but where a merge would pass MAX_BLOCK). A free
//!   block at the arena's end goes back to the uncarved space instead.
//! - **Crash safety**: a process may die at any instruction, and recovery rebuilds the free
//!   state from the blocks themselves (`reclaim`). So the arena stays a walkable run of blocks
//!   at every step: a block's size only ever changes by one store of the word the walk reads
//!   (word 0 for small blocks; for big ones a size word, which a block in use keeps at
//!   B_BIG_SIZE and a free one at F_BIG_SIZE, so that one becoming the other never overwrites
//!   the size the walk still reads), and whatever a split or merge writes beyond lies inside a
//!   block the walk skips. Lists, bitmap, footers and PREV_FREE bits are rebuilt by recovery.
//!
//! Only the writer-lock holder calls these. Every offset taken from the region (links, block
//! headers, footers) is validated before use, so a corrupted arena yields `Error::Corrupted`,
//! never a wild access.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;

/// A block header, decoded.
#[derive(Clone, Copy, Debug)]
pub struct Header {
    pub kind: u32,
    /// The block's size in bytes, header included.
    pub size: u64,
    /// The block before this one is free.
    pub prev_free: bool,
    /// Bytes before the key (a data block) or the payload (an internal block).
    pub header_len: u64,
    pub key_len: u64,
    pub val_len: u64,
    /// Expiry time in ms since the Unix epoch; 0: never.
    pub expires_at: u64,
}

/// Whether the entry in `block` (header `h`) is a lock's lease or a getOrSet turn (its key is
/// under PINNED_KEY_PREFIX): never evicted, and not a key (`clear()`, key listings, `size` and
/// `maxEntries` leave it out).
pub(crate) fn is_pinned(r: &Region, block: u64, h: &Header) -> Result<bool> {
    Ok(h.key_len >= PINNED_KEY_PREFIX.len() as u64
        && r.eq(key_offset(block, h.header_len), PINNED_KEY_PREFIX)?)
}

impl Header {
    /// Bytes this block holds after its header.
    pub fn capacity(&self) -> u64 {
        self.size - self.header_len
    }

    pub fn expired(&self, now_ms: u64) -> bool {
        self.expires_at != 0 && self.expires_at <= now_ms
    }

    /// `expired`, asking `clock` only for an entry that expires at all: a read of an entry
    /// without a TTL then costs no clock_gettime (a tenth of a get).
    pub fn expired_by(&self, clock: fn() -> u64) -> bool {
        self.expires_at != 0 && self.expires_at <= clock()
    }

    /// A data block: an entry's key and value.
    pub fn in_use(&self) -> bool {
        matches!(self.kind, KIND_SHORT | KIND_LONG | KIND_TTL)
    }

    pub fn is_free(&self) -> bool {
        self.kind == KIND_FREE
    }

    pub fn is_internal(&self) -> bool {
        self.kind == KIND_INTERNAL
    }
}

/// The free list a block of `size` bytes goes on (`size` >= MIN_BLOCK, a multiple of 8).
pub fn list_of(size: u64) -> u32 {
    if size < SMALL_LIMIT {
        return (size / BLOCK_ALIGN) as u32;
    }
    let fl = 63 - size.leading_zeros();
    let sl = (size >> (fl - LIST_STEPS_LOG2)) as u32 & ((1 << LIST_STEPS_LOG2) - 1);
    SMALL_LISTS + (fl - 8) * (1 << LIST_STEPS_LOG2) + sl
}

/// The size a data block for `payload` bytes of key and value needs, and whether it expires:
/// the header (short, long or TTL, small or big) plus the payload, in 8-byte units.
pub fn data_size(payload: u64, expires: bool) -> Result<u64> {
    let fit = |header: u64| align_up((header + payload).max(MIN_BLOCK), BLOCK_ALIGN);
    let (small, big) = if expires {
        (TTL_HEADER, TTL_BIG_HEADER)
    } else {
        (SHORT_HEADER, LONG_BIG_HEADER)
    };
    let size = match fit(small) {
        s if s <= SMALL_BLOCK_MAX => s,
        _ => fit(big),
    };
    if size > MAX_BLOCK {
        return Err(Error::ValueTooLarge {
            len: payload as usize,
            max: MAX_VALUE_BYTES,
        });
    }
    Ok(size)
}

/// The kind of data block of `size` bytes: TTL if it expires, else short while word 0 can hold
/// its size, long (big) past that.
fn data_kind(size: u64, expires: bool) -> u32 {
    match (expires, size <= SMALL_BLOCK_MAX) {
        (true, _) => KIND_TTL,
        (false, true) => KIND_SHORT,
        (false, false) => KIND_LONG,
    }
}

/// The block size word 0 and the size words say, checked to be a possible block size.
pub fn block_size(r: &Region, block: u64) -> Result<u64> {
    let w0 = r.u32(block + B_WORD0)?.load(Relaxed);
    let code = (w0 & 0xff) as u64;
    let kind = (w0 >> 8) & 0x7f;
    let size = if code != 0 && kind != KIND_INTERNAL && kind != KIND_LONG {
        code * BLOCK_ALIGN
    } else {
        match kind {
            KIND_FREE => r.u32(block + F_BIG_SIZE)?.load(Relaxed) as u64 * BLOCK_ALIGN,
            KIND_LONG | KIND_TTL | KIND_INTERNAL if code == 0 => {
                r.u32(block + B_BIG_SIZE)?.load(Relaxed) as u64 * BLOCK_ALIGN
            }
            _ => return Err(Error::corrupted("block kind")),
        }
    };
    if size < MIN_BLOCK {
        return Err(Error::corrupted("block size"));
    }
    Ok(size)
}

pub fn read_header(r: &Region, block: u64) -> Result<Header> {
    let w0 = r.u32(block + B_WORD0)?.load(Relaxed);
    let kind = (w0 >> 8) & 0x7f;
    let big = w0 & 0xff == 0;
    let size = block_size(r, block)?;
    let u32_at = |off: u64| r.u32(block + off).map(|w| w.load(Relaxed) as u64);
    let (header_len, val_len, expires_at) = match kind {
        KIND_SHORT => (
            SHORT_HEADER,
            r.u16(block + B_VAL_LEN)?.load(Relaxed) as u64,
            0,
        ),
        KIND_LONG => (LONG_BIG_HEADER, u32_at(B_VAL_LEN)?, 0),
        KIND_TTL if big => (
            TTL_BIG_HEADER,
            u32_at(B_VAL_LEN)?,
            r.u64(block + B_EXPIRES_BIG)?.load(Relaxed),
        ),
        KIND_TTL => (
            TTL_HEADER,
            u32_at(B_VAL_LEN)?,
            r.u64(block + B_EXPIRES)?.load(Relaxed),
        ),
        KIND_INTERNAL => (INTERNAL_HEADER, 0, 0),
        _ => (0, 0, 0),
    };
    if header_len > size {
        return Err(Error::corrupted("block header longer than its block"));
    }
    let in_use = matches!(kind, KIND_SHORT | KIND_LONG | KIND_TTL);
    Ok(Header {
        kind,
        size,
        prev_free: w0 & WORD0_PREV_FREE != 0,
        header_len,
        key_len: if in_use { (w0 >> 16) as u64 } else { 0 },
        val_len,
        expires_at,
    })
}

/// The arena of a region whose header is initialised.
pub struct Arena<'r> {
    pub r: &'r Region,
}

/// Which link of a free block.
#[derive(Clone, Copy)]
enum Link {
    Next,
    Prev,
}

impl<'r> Arena<'r> {
    pub fn init(r: &Region) -> Result<()> {
        r.u64(H_ARENA_TOP)?.store(HEADER_SIZE, Relaxed);
        r.u64(H_HIGH_WATER)?.store(HEADER_SIZE, Relaxed);
        r.u64(H_BYTES_IN_USE)?.store(0, Relaxed);
        r.u64(H_ROOM_CURSOR)?.store(0, Relaxed);
        Self::clear_lists(r)
    }

    fn clear_lists(r: &Region) -> Result<()> {
        for i in 0..4 {
            r.u64(H_FREE_MAP + 8 * i)?.store(0, Relaxed);
        }
        for l in 0..NUM_LISTS as u64 {
            r.u64(H_FREE_HEADS + 8 * l)?.store(0, Relaxed);
        }
        Ok(())
    }

    pub fn top(&self) -> Result<u64> {
        let top = self.r.u64(H_ARENA_TOP)?.load(Relaxed);
        if top < HEADER_SIZE || top % BLOCK_ALIGN != 0 || top > MAX_REGION_BYTES {
            return Err(Error::corrupted("arena top"));
        }
        Ok(top)
    }

    /// Checks that `block` is a block boundary below the arena top whose size keeps it below
    /// the top, and returns its header.
    pub fn header_at(&self, block: u64) -> Result<Header> {
        let top = self.top()?;
        if block < HEADER_SIZE || block % BLOCK_ALIGN != 0 || block >= top {
            return Err(Error::corrupted("block offset"));
        }
        let h = read_header(self.r, block)?;
        if h.size > top - block {
            return Err(Error::corrupted("block size"));
        }
        Ok(h)
    }

    /// `header_at` for a data block in use (or, `in_use` false, a free one).
    pub fn check_block(&self, block: u64, in_use: bool) -> Result<Header> {
        let h = self.header_at(block)?;
        if (in_use && !h.in_use()) || (!in_use && !h.is_free()) {
            return Err(Error::corrupted("block kind"));
        }
        Ok(h)
    }

    /// `header_at` for an internal block (an index table, the change log).
    pub fn check_internal(&self, block: u64) -> Result<Header> {
        let h = self.header_at(block)?;
        if !h.is_internal() {
            return Err(Error::corrupted("block kind"));
        }
        Ok(h)
    }

    /// Allocates an internal block with `payload` bytes at +INTERNAL_HEADER.
    pub fn alloc_internal(&self, payload: u64) -> Result<u64> {
        let need = align_up(INTERNAL_HEADER + payload, BLOCK_ALIGN).max(MIN_BLOCK);
        if need > MAX_BLOCK {
            return Err(Error::Full {
                needed: need,
                max: MAX_BLOCK,
            });
        }
        Ok(self.take(need, |_| KIND_INTERNAL)?.0)
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
        let expires = expires_at != 0;
        let need = data_size(key_len + val_len.max(reserve), expires)?;
        let (block, _) = self.take(need, |size| data_kind(size, expires))?;
        self.set_lengths(block, key_len, val_len)?;
        if expires {
            self.set_expiry(block, expires_at)?;
            let n = self.r.u64(H_TTL_BLOCKS)?;
            n.store(n.load(Relaxed) + 1, Relaxed);
        }
        Ok((block, read_header(self.r, block)?))
    }

    /// Sets an expiring block's expiry time.
    pub fn set_expiry(&self, block: u64, expires_at: u64) -> Result<()> {
        let h = read_header(self.r, block)?;
        let at = if h.header_len == TTL_BIG_HEADER {
            B_EXPIRES_BIG
        } else {
            B_EXPIRES
        };
        self.r.u64(block + at)?.store(expires_at, Relaxed);
        Ok(())
    }

    /// The bytes free in blocks and past the top up to `max` (the region's limit).
    pub fn free_bytes(&self, max: u64) -> Result<u64> {
        let top = self.top()?;
        let used = self.r.u64(H_BYTES_IN_USE)?.load(Relaxed);
        Ok((top - HEADER_SIZE).saturating_sub(used) + max.saturating_sub(top))
    }

    /// Takes a block of at least `need` bytes (a multiple of 8) from a free list, or carves it
    /// from the uncarved space, and writes its header as in use with the kind `kind(size)`
    /// picks (key and value lengths 0). Fails with `NeedGrow` (changing nothing) when the
    /// region must grow first, or `Full` past the format's limit. Returns block and size.
    pub fn take(&self, need: u64, kind: impl Fn(u64) -> u32) -> Result<(u64, u64)> {
        if let Some(block) = self.find_free(need)? {
            let h = self.check_block(block, false)?;
            self.unlink(block)?;
            let rest = h.size - need;
            let size = if rest >= MIN_BLOCK {
                // The rest first, inside the block the walk still sees whole.
                let tail = block + need;
                self.write_free(tail, rest, false)?;
                self.write_used(block, need, kind(need), h.prev_free)?;
                self.link_in(tail)?;
                need
            } else {
                self.write_used(block, h.size, kind(h.size), h.prev_free)?;
                self.set_prev_free(block + h.size, false)?;
                h.size
            };
            self.count_used(size as i64)?;
            return Ok((block, size));
        }
        let top = self.top()?;
        let end = top + need;
        if end > MAX_REGION_BYTES {
            return Err(Error::Full {
                needed: end,
                max: MAX_REGION_BYTES,
            });
        }
        if end > self.r.len() {
            return Err(Error::NeedGrow { needed: end });
        }
        // A store file's pages are allocated before a byte of them is written (reserve.rs).
        self.r.reserve_to(end)?;
        // Bytes past the high water were never written: moved first, so that it never claims
        // a byte clean that a killed writer wrote.
        let hw = self.r.u64(H_HIGH_WATER)?;
        if hw.load(Relaxed) < end {
            hw.store(end, Relaxed);
        }
        // The header before the top: a writer killed in between leaves no block without one
        // inside the arena (recovery walks the blocks by their headers). Release keeps the
        // compiler from reordering the two stores (a killed process's issued stores all land;
        // only their program order matters).
        let prev_free = false; // a free block at the top is given back, never left there
        self.write_used(top, need, kind(need), prev_free)?;
        self.r.u64(H_ARENA_TOP)?.store(end, Release);
        self.count_used(need as i64)?;
        Ok((top, need))
    }

    fn count_used(&self, delta: i64) -> Result<()> {
        let used = self.r.u64(H_BYTES_IN_USE)?;
        used.store(used.load(Relaxed).saturating_add_signed(delta), Relaxed);
        Ok(())
    }

    /// The head of a list whose blocks all hold `need` bytes, or of `need`'s own list if its
    /// head does: no search. The free block `take` would split (None: the uncarved space).
    pub fn find_free(&self, need: u64) -> Result<Option<u64>> {
        let own = list_of(need);
        let head = self.head(own)?;
        if head != 0 && self.check_block(head, false)?.size >= need {
            return Ok(Some(head));
        }
        let Some(list) = self.first_list_from(own + 1)? else {
            return Ok(None);
        };
        match self.head(list)? {
            0 => Err(Error::corrupted("free-list bitmap names an empty list")),
            b => Ok(Some(b)),
        }
    }

    fn head(&self, list: u32) -> Result<u64> {
        self.r
            .u64(H_FREE_HEADS + 8 * list as u64)
            .map(|w| w.load(Relaxed))
    }

    fn set_head(&self, list: u32, block: u64) -> Result<()> {
        self.r
            .u64(H_FREE_HEADS + 8 * list as u64)?
            .store(block, Relaxed);
        let map = self.r.u64(H_FREE_MAP + 8 * (list as u64 / 64))?;
        let bit = 1u64 << (list % 64);
        let m = map.load(Relaxed);
        map.store(if block == 0 { m & !bit } else { m | bit }, Relaxed);
        Ok(())
    }

    /// Up to `most` free blocks, as (block, size), from the largest size class that has one
    /// down: the largest free blocks, within their classes' spread.
    pub fn largest_free(&self, most: usize) -> Result<Vec<(u64, u64)>> {
        let mut found = Vec::new();
        for w in (0..NUM_LISTS.div_ceil(64)).rev() {
            let mut word = self.r.u64(H_FREE_MAP + 8 * w as u64)?.load(Relaxed);
            while word != 0 {
                let bit = 63 - word.leading_zeros();
                word &= !(1u64 << bit);
                let mut b = self.head(w * 64 + bit)?;
                while b != 0 {
                    if found.len() == most {
                        return Ok(found);
                    }
                    found.push((b, self.check_block(b, false)?.size));
                    b = self.link(b, Link::Next)?;
                }
            }
        }
        Ok(found)
    }

    /// The first non-empty list at or after `from`, by the bitmap.
    fn first_list_from(&self, from: u32) -> Result<Option<u32>> {
        let mut i = from;
        while i < NUM_LISTS {
            let word = self.r.u64(H_FREE_MAP + 8 * (i as u64 / 64))?.load(Relaxed);
            let masked = word & (!0u64 << (i % 64));
            if masked != 0 {
                return Ok(Some((i / 64) * 64 + masked.trailing_zeros()));
            }
            i = (i / 64 + 1) * 64;
        }
        Ok(None)
    }

    fn link(&self, block: u64, which: Link) -> Result<u64> {
        let w0 = self.r.u32(block + B_WORD0)?.load(Relaxed);
        let (lo_at, hi) = match which {
            Link::Next => (F_NEXT, (w0 >> 16) & 0xff),
            Link::Prev => (F_PREV, w0 >> 24),
        };
        let lo = self.r.u32(block + lo_at)?.load(Relaxed);
        Ok(((hi as u64) << 32 | lo as u64) * BLOCK_ALIGN)
    }

    fn set_link(&self, block: u64, which: Link, to: u64) -> Result<()> {
        let units = to / BLOCK_ALIGN;
        let w = self.r.u32(block + B_WORD0)?;
        let w0 = w.load(Relaxed);
        let hi = (units >> 32) as u32 & 0xff;
        let (lo_at, w0) = match which {
            Link::Next => (F_NEXT, (w0 & !(0xff << 16)) | hi << 16),
            Link::Prev => (F_PREV, (w0 & !(0xff << 24)) | hi << 24),
        };
        self.r.u32(block + lo_at)?.store(units as u32, Relaxed);
        w.store(w0, Relaxed);
        Ok(())
    }

    /// Puts the free block `block` at the head of its list.
    fn link_in(&self, block: u64) -> Result<()> {
        let list = list_of(block_size(self.r, block)?);
        let head = self.head(list)?;
        self.set_link(block, Link::Next, head)?;
        self.set_link(block, Link::Prev, 0)?;
        if head != 0 {
            self.check_block(head, false)?;
            self.set_link(head, Link::Prev, block)?;
        }
        self.set_head(list, block)
    }

    /// Takes the free block `block` off its list.
    fn unlink(&self, block: u64) -> Result<()> {
        let list = list_of(block_size(self.r, block)?);
        let (next, prev) = (self.link(block, Link::Next)?, self.link(block, Link::Prev)?);
        if next != 0 {
            self.check_block(next, false)?;
            if self.link(next, Link::Prev)? != block {
                return Err(Error::corrupted("free list links disagree"));
            }
            self.set_link(next, Link::Prev, prev)?;
        }
        if prev != 0 {
            self.check_block(prev, false)?;
            if self.link(prev, Link::Next)? != block {
                return Err(Error::corrupted("free list links disagree"));
            }
            self.set_link(prev, Link::Next, next)?;
        } else {
            if self.head(list)? != block {
                return Err(Error::corrupted("a free block is not where its list says"));
            }
            self.set_head(list, next)?;
        }
        Ok(())
    }

    /// Writes the header of a block in use of `size` bytes (lengths 0). A big one gets its
    /// size word before word 0 says it is big.
    fn write_used(&self, block: u64, size: u64, kind: u32, prev_free: bool) -> Result<()> {
        let pf = if prev_free { WORD0_PREV_FREE } else { 0 };
        let code = if size <= SMALL_BLOCK_MAX && kind != KIND_INTERNAL && kind != KIND_LONG {
            (size / BLOCK_ALIGN) as u32
        } else {
            self.r
                .u32(block + B_BIG_SIZE)?
                .store((size / BLOCK_ALIGN) as u32, Relaxed);
            0
        };
        self.r.u32(block + B_VAL_LEN)?.store(0, Relaxed);
        self.r
            .u32(block + B_WORD0)?
            .store(code | kind << 8 | pf, Relaxed);
        Ok(())
    }

    /// Writes the header and footer of a free block of `size` bytes (links not set). Its size
    /// word (a big one's) before word 0.
    fn write_free(&self, block: u64, size: u64, prev_free: bool) -> Result<()> {
        let units = (size / BLOCK_ALIGN) as u32;
        let code = if size <= SMALL_BLOCK_MAX {
            units
        } else {
            self.r.u32(block + F_BIG_SIZE)?.store(units, Relaxed);
            0
        };
        let pf = if prev_free { WORD0_PREV_FREE } else { 0 };
        self.r
            .u32(block + B_WORD0)?
            .store(code | KIND_FREE << 8 | pf, Relaxed);
        self.r.u32(block + size - 4)?.store(units, Relaxed);
        Ok(())
    }

    /// Sets or clears PREV_FREE in the block at `block` (nothing at the top).
    fn set_prev_free(&self, block: u64, on: bool) -> Result<()> {
        if block >= self.top()? {
            return Ok(());
        }
        self.write_prev_free(block, on)
    }

    fn write_prev_free(&self, block: u64, on: bool) -> Result<()> {
        let w = self.r.u32(block + B_WORD0)?;
        let w0 = w.load(Relaxed);
        let bit = if on { WORD0_PREV_FREE } else { 0 };
        w.store(w0 & !WORD0_PREV_FREE | bit, Relaxed);
        Ok(())
    }

    /// Records a data block's key and value lengths (the block must be in use and hold them).
    pub fn set_lengths(&self, block: u64, key_len: u64, val_len: u64) -> Result<()> {
        let h = read_header(self.r, block)?;
        if !h.in_use() || key_len + val_len > h.capacity() {
            return Err(Error::corrupted("value does not fit its block"));
        }
        let w = self.r.u32(block + B_WORD0)?;
        w.store(w.load(Relaxed) & 0xffff | (key_len as u32) << 16, Relaxed);
        match h.kind {
            KIND_SHORT => self
                .r
                .u16(block + B_VAL_LEN)?
                .store(val_len as u16, Relaxed),
            _ => self
                .r
                .u32(block + B_VAL_LEN)?
                .store(val_len as u32, Relaxed),
        }
        Ok(())
    }

    /// Frees a block in use (data or internal), merging it with free neighbours; a free block
    /// reaching the top goes back to the uncarved space.
    pub fn free(&self, block: u64) -> Result<()> {
        self.free_merged(block).map(|_| ())
    }

    /// `free`, returning the free block it became part of, as (start, size), or None if
    /// that went back to the uncarved space.
    pub fn free_merged(&self, block: u64) -> Result<Option<(u64, u64)>> {
        // Nothing of the free may be moved before what the caller did to stop referencing the
        // block (a writer killed in between must leave it referenced and in use, or neither).
        std::sync::atomic::compiler_fence(Release);
        let h = self.header_at(block)?;
        if !h.in_use() && !h.is_internal() {
            return Err(Error::corrupted("freeing a block that is not in use"));
        }
        if h.kind == KIND_TTL {
            let n = self.r.u64(H_TTL_BLOCKS)?;
            n.store(n.load(Relaxed).saturating_sub(1), Relaxed);
        }
        self.count_used(-(h.size as i64))?;
        self.release(block, h.size, h.prev_free)
    }

    /// The free block right before `block` (whose PREV_FREE is set), as (start, size), by its
    /// footer.
    pub fn free_before(&self, block: u64) -> Result<(u64, u64)> {
        let units = self.r.u32(block.saturating_sub(4))?.load(Relaxed) as u64;
        let p = block.checked_sub(units * BLOCK_ALIGN).unwrap_or(0);
        let ph = self.header_at(p)?;
        if !ph.is_free() || ph.size != units * BLOCK_ALIGN {
            return Err(Error::corrupted("a free block's footer disagrees with it"));
        }
        Ok((p, ph.size))
    }

    /// Makes `[block, block + size)`, a block the walk sees (in use or free, off every list),
    /// free: merged with the free blocks beside it, put on its list or given back to the top.
    fn release(&self, block: u64, size: u64, prev_free: bool) -> Result<Option<(u64, u64)>> {
        let top = self.top()?;
        let (mut start, mut end) = (block, block + size);
        if end < top {
            let next = self.header_at(end)?;
            if next.is_free() && end - start + next.size <= MAX_BLOCK {
                self.unlink(end)?;
                end += next.size;
            }
        }
        let mut merged_prev = false;
        if prev_free {
            let (p, _) = self.free_before(block)?;
            if end - p <= MAX_BLOCK {
                self.unlink(p)?;
                start = p;
                merged_prev = true;
            }
        }
        if end == top {
            // Given back: the walk ends at `start` from this store on.
            self.r.u64(H_ARENA_TOP)?.store(start, Relaxed);
            return Ok(None);
        }
        let size = end - start;
        let keep_pf = if merged_prev {
            read_header(self.r, start)?.prev_free
        } else {
            prev_free && !merged_prev
        };
        // One store of the word the walk reads makes [start, end) one block; a big size word
        // first (at F_BIG_SIZE, which no block in use keeps its size in).
        self.write_free(start, size, keep_pf)?;
        self.link_in(start)?;
        self.set_prev_free(end, true)?;
        Ok(Some((start, size)))
    }

    /// Rebuilds every free list from the blocks' own headers, after a writer died mid-change
    /// (writer lock held, taken over). Blocks in use that `keep` rejects (a dead writer's new
    /// block not yet published, or an old one not yet freed) are freed; runs of free blocks
    /// are merged; footers and PREV_FREE bits are rewritten; a free run at the end goes back
    /// to the uncarved space. Safe to cut short and run again: it only ever frees unreferenced
    /// blocks, and every size change is one store of the word the walk reads. `top`: the
    /// arena top the caller sized `keep` for. Returns how many blocks `keep` kept.
    pub fn reclaim(&self, top: u64, keep: impl Fn(u64) -> bool) -> Result<u64> {
        if top != self.top()? || top > self.r.len() {
            return Err(Error::corrupted("arena top moved or lies past the region"));
        }
        Self::clear_lists(self.r)?;
        let (mut used, mut ttl, mut kept) = (0u64, 0u64, 0u64);
        let mut at = HEADER_SIZE;
        // The free run being gathered: its start, its end, and whether a free block (a run
        // that reached MAX_BLOCK) lies before it.
        let mut run: Option<(u64, u64, bool)> = None;
        let mut prev_free = false;
        while at < top {
            let h = read_header(self.r, at)?;
            if h.size > top - at {
                return Err(Error::corrupted("block size"));
            }
            let next = at + h.size;
            let keeps = (h.in_use() || h.is_internal()) && keep(at);
            if keeps {
                if let Some((s, e, pf)) = run.take() {
                    self.write_free(s, e - s, pf)?;
                    self.link_in(s)?;
                    prev_free = true;
                }
                self.write_prev_free(at, prev_free)?;
                prev_free = false;
                used += h.size;
                ttl += (h.kind == KIND_TTL) as u64;
                kept += 1;
            } else if h.in_use() || h.is_internal() || h.is_free() {
                run = match run {
                    Some((s, _, pf)) if next - s <= MAX_BLOCK => {
                        // One store of the run's size word swallows this block.
                        self.write_free(s, next - s, pf)?;
                        Some((s, next, pf))
                    }
                    Some((s, e, pf)) => {
                        self.write_free(s, e - s, pf)?;
                        self.link_in(s)?;
                        self.write_free(at, h.size, true)?;
                        Some((at, next, true))
                    }
                    None => {
                        self.write_free(at, h.size, prev_free)?;
                        Some((at, next, prev_free))
                    }
                };
            } else {
                return Err(Error::corrupted("block kind"));
            }
            at = next;
        }
        if let Some((s, _, _)) = run {
            self.r.u64(H_ARENA_TOP)?.store(s, Relaxed);
        }
        self.r.u64(H_BYTES_IN_USE)?.store(used, Relaxed);
        self.r.u64(H_TTL_BLOCKS)?.store(ttl, Relaxed);
        Ok(kept)
    }

    /// Every block from the header to the top, as (offset, header), for the integrity check
    /// and for windows of eviction and compaction. Stops at the first error.
    pub fn walk(&self, from: u64) -> impl Iterator<Item = Result<(u64, Header)>> + '_ {
        let mut at = from;
        let mut failed = false;
        std::iter::from_fn(move || {
            if failed {
                return None;
            }
            let top = match self.top() {
                Ok(t) => t,
                Err(e) => {
                    failed = true;
                    return Some(Err(e));
                }
            };
            if at >= top {
                return None;
            }
            match self.header_at(at) {
                Ok(h) => {
                    let here = at;
                    at += h.size;
                    Some(Ok((here, h)))
                }
                Err(e) => {
                    failed = true;
                    Some(Err(e))
                }
            }
        })
    }

    /// Verifies the free lists against the walk: every free block is on the list of its size
    /// exactly once, links agree both ways, the bitmap matches, footers and PREV_FREE bits are
    /// right, and no two free blocks are adjacent unless merging them would pass MAX_BLOCK.
    /// Returns (free blocks, free bytes).
    pub fn check_free(&self) -> Result<(u64, u64)> {
        let bad = |what: String| Err(Error::Corrupted(what));
        let (mut free_blocks, mut free_bytes) = (0u64, 0u64);
        let mut prev: Option<Header> = None;
        let mut expected_free = std::collections::HashSet::new();
        for item in self.walk(HEADER_SIZE) {
            let (at, h) = item?;
            let prev_is_free = prev.is_some_and(|p| p.is_free());
            if h.prev_free != prev_is_free {
                return bad(format!(
                    "block at {at} says the block before it is {}free",
                    if h.prev_free { "" } else { "not " }
                ));
            }
            if h.is_free() {
                if let Some(p) = prev.filter(|p| p.is_free()) {
                    if p.size + h.size <= MAX_BLOCK {
                        return bad(format!("free blocks before {at} were not merged"));
                    }
                }
                let footer = self.r.u32(at + h.size - 4)?.load(Relaxed) as u64;
                if footer * BLOCK_ALIGN != h.size {
                    return bad(format!("free block at {at} has a wrong footer"));
                }
                free_blocks += 1;
                free_bytes += h.size;
                expected_free.insert(at);
            } else if !h.in_use() && !h.is_internal() {
                return bad(format!("block at {at} has a bad kind"));
            }
            prev = Some(h);
        }
        if prev.is_some_and(|p| p.is_free()) {
            return bad("a free block was left at the arena's end".into());
        }
        let mut listed = 0u64;
        for list in 0..NUM_LISTS {
            let head = self.head(list)?;
            let bit = self
                .r
                .u64(H_FREE_MAP + 8 * (list as u64 / 64))?
                .load(Relaxed)
                & (1 << (list % 64))
                != 0;
            if bit != (head != 0) {
                return bad(format!("the free-list bitmap is wrong for list {list}"));
            }
            let (mut block, mut back) = (head, 0u64);
            while block != 0 {
                if !expected_free.remove(&block) {
                    return bad(format!("free list {list} holds {block}, which is not a free block or is listed twice"));
                }
                let h = self.check_block(block, false)?;
                if list_of(h.size) != list {
                    return bad(format!("free list {list} holds a block of another size"));
                }
                if self.link(block, Link::Prev)? != back {
                    return bad(format!("free list {list}: links disagree at {block}"));
                }
                listed += 1;
                back = block;
                block = self.link(block, Link::Next)?;
            }
        }
        if listed != free_blocks {
            return bad(format!(
                "{free_blocks} blocks are free but the free lists hold {listed}"
            ));
        }
        Ok((free_blocks, free_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_partition_the_sizes_and_every_block_of_a_later_list_fits() {
        let mut prev = 0;
        for size in (MIN_BLOCK..1 << 20).step_by(8) {
            let l = list_of(size);
            assert!(l >= prev && l < NUM_LISTS, "{size}");
            prev = l;
        }
        assert!(list_of(MAX_BLOCK) < NUM_LISTS);
        // A block of the smallest size of list l + 1 is larger than any size of list l.
        for size in (MIN_BLOCK..1 << 16).step_by(8) {
            let l = list_of(size);
            let smallest_next = (size..).step_by(8).find(|s| list_of(*s) > l).unwrap();
            assert!(smallest_next > size);
        }
    }

    #[test]
    fn data_sizes_fit_their_header_exactly() {
        for payload in 0..5000u64 {
            for expires in [false, true] {
                let size = data_size(payload, expires).unwrap();
                let header = match (expires, size <= SMALL_BLOCK_MAX) {
                    (false, true) => SHORT_HEADER,
                    (false, false) => LONG_BIG_HEADER,
                    (true, true) => TTL_HEADER,
                    (true, false) => TTL_BIG_HEADER,
                };
                assert!(size >= header + payload && size % 8 == 0 && size >= MIN_BLOCK);
                assert!(
                    size < header + payload + 8 || size == MIN_BLOCK,
                    "{payload}"
                );
                // Eight more bytes (a split that left too little) still fit the header then.
                let bigger = size + 8;
                let header = match (expires, bigger <= SMALL_BLOCK_MAX) {
                    (false, true) => SHORT_HEADER,
                    (false, false) => LONG_BIG_HEADER,
                    (true, true) => TTL_HEADER,
                    (true, false) => TTL_BIG_HEADER,
                };
                assert!(bigger >= header + payload, "{payload} {expires}");
            }
        }
    }

    fn region(words: &mut Vec<u64>) -> Region {
        // SAFETY: the vector outlives the region in each test.
        let r = unsafe { Region::new(words.as_mut_ptr().cast(), words.len() * 8) };
        Arena::init(&r).unwrap();
        r
    }

    #[test]
    fn freed_neighbours_merge_and_serve_a_larger_block() {
        let mut mem = vec![0u64; (HEADER_SIZE as usize + 8192) / 8];
        let r = region(&mut mem);
        let a = Arena { r: &r };
        let blocks: Vec<u64> = (0..6)
            .map(|_| a.alloc_data(4, 100, 0, 0).unwrap().0)
            .collect();
        assert!(matches!(
            a.alloc_data(4, 8000, 0, 0),
            Err(Error::NeedGrow { .. })
        ));
        for &b in &blocks[1..4] {
            a.free(b).unwrap();
        }
        a.check_free().unwrap();
        // Three 112-byte blocks merged into one: a 300-byte value fits where they were.
        let (big, _) = a.alloc_data(4, 300, 0, 0).unwrap();
        assert_eq!(big, blocks[1]);
        a.check_free().unwrap();
        for b in [blocks[0], big, blocks[4], blocks[5]] {
            a.free(b).unwrap();
        }
        assert_eq!(a.top().unwrap(), HEADER_SIZE, "all given back to the top");
        assert_eq!(r.u64(H_BYTES_IN_USE).unwrap().load(Relaxed), 0);
        assert!(a.free(blocks[0]).is_err(), "double free is detected");
    }

    #[test]
    fn corrupted_free_list_is_an_error() {
        let mut mem = vec![0u64; (HEADER_SIZE as usize + 4096) / 8];
        let r = region(&mut mem);
        let a = Arena { r: &r };
        let b1 = a.alloc_data(1, 10, 0, 0).unwrap().0;
        let _b2 = a.alloc_data(1, 10, 0, 0).unwrap().0;
        a.free(b1).unwrap();
        r.u32(b1 + F_NEXT).unwrap().store(u32::MAX - 3, Relaxed);
        assert!(matches!(
            a.alloc_data(1, 10, 0, 0),
            Err(Error::Corrupted(_))
        ));
    }
}
