//! The undo record: how an in-place rewrite of a value in a process-shared store is made safe
//! against the writer being killed in the middle of it (see `recover.rs` for the whole story).
//!
//! The store arms it before rewriting and disarms it after; recovery puts the old bytes back
//! if the rewrite was cut short. Its own module, below both, so neither imports the other.

use std::sync::atomic::Ordering::{Relaxed, Release};

use crate::arena::{read_header, Arena};
use crate::error::{Error, Result};
use crate::layout::*;
use crate::region::Region;
use crate::table::{load_ref, load_slot, next_seq, Table, Tables};

/// Saves what an in-place rewrite of the value in `block` (slot at `at`) will overwrite, then
/// arms the undo record. The caller rewrites under the slot's seqlock, then calls `disarm`.
pub(crate) fn arm_undo(r: &Region, at: u64, block: u64) -> Result<()> {
    let h = read_header(r, block)?;
    let val = value_offset(block, h.header_len, h.key_len);
    if h.val_len > UNDO_MAX {
        return Err(Error::corrupted("value too long for the undo record"));
    }
    copy(r, val, U_BYTES, h.val_len)?;
    r.u32(U_WORD0)?
        .store(r.u32(block + B_WORD0)?.load(Relaxed), Relaxed);
    r.u32(U_VAL_LEN)?
        .store(r.u32(block + B_VAL_LEN)?.load(Relaxed), Relaxed);
    r.u64(U_EXPIRES)?.store(h.expires_at, Relaxed);
    r.u32(U_LEN)?.store(h.val_len as u32, Relaxed);
    r.u64(U_BLOCK)?.store(block, Relaxed);
    r.u64(U_SLOT)?.store(at, Release); // armed: everything above is in place
    Ok(())
}

pub(crate) fn disarm_undo(r: &Region) -> Result<()> {
    r.u64(U_SLOT)?.store(0, Release);
    Ok(())
}

/// If an in-place rewrite was cut short (its slot's SEQ still odd), puts the old value back.
/// The record is only trusted where it matches the index: a slot of a current table that
/// references the block it names.
pub(crate) fn undo_in_place_rewrite(r: &Region, tables: &Tables) -> Result<()> {
    let at = r.u64(U_SLOT)?.load(Relaxed);
    if at == 0 {
        return Ok(());
    }
    let block = r.u64(U_BLOCK)?.load(Relaxed);
    if !tables.holds(at) || load_ref(r, at)?.block() != Some(block) {
        return Err(Error::corrupted("the undo record does not match the index"));
    }
    let s = load_slot(r, at, Relaxed)?.0;
    if s & 1 == 1 {
        let len = r.u32(U_LEN)?.load(Relaxed) as u64;
        if len > UNDO_MAX {
            return Err(Error::corrupted("undo record length"));
        }
        let word0 = r.u32(U_WORD0)?.load(Relaxed);
        r.u32(block + B_WORD0)?.store(word0, Relaxed);
        r.u32(block + B_VAL_LEN)?
            .store(r.u32(U_VAL_LEN)?.load(Relaxed), Relaxed);
        let h = Arena { r }.check_block(block, true)?;
        if h.kind == KIND_TTL {
            Arena { r }.set_expiry(block, r.u64(U_EXPIRES)?.load(Relaxed))?;
        }
        if h.val_len != len || h.key_len + len > h.capacity() {
            return Err(Error::corrupted("undo record does not match its block"));
        }
        copy(
            r,
            U_BYTES,
            value_offset(block, h.header_len, h.key_len),
            len,
        )?;
        Table::set_seq(r, at, next_seq(s), false)?;
    }
    disarm_undo(r)
}

/// Copies `len` bytes within the region.
fn copy(r: &Region, from: u64, to: u64, len: u64) -> Result<()> {
    let mut buf = [0u8; 256];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(buf.len() as u64) as usize;
        r.read(from + done, &mut buf[..n])?;
        r.write(to + done, &buf[..n])?;
        done += n as u64;
    }
    Ok(())
}
