//! `lock()` leases whose holder is gone become free at once, not after the lease:
//!
//! - a worker thread that exits or is terminated: a Node-API env cleanup hook (which runs on
//!   both) deletes the leases the thread still holds;
//! - a process that died (SIGKILL, a crash): the next thread that wants the lock reads the
//!   holder's pid and start-time tag from the lease and asks `processAlive`.
//!
//! The lease's expiry stays as the last resort (a holder whose liveness cannot be known).

use std::cell::{Cell, RefCell};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use std::sync::atomic::Ordering::Relaxed;

use super::raw::{check, Raw};
use super::{bytes_of, with, ATTACHED};
use crate::holder::{process_liveness, this_process, Liveness};
use crate::layout::H_MIXED_NS;

/// A lease this thread holds: (store attachment id, lock key, the owner bytes stored).
type Held = (u32, Vec<u8>, Vec<u8>);

thread_local! {
    static HELD: RefCell<Vec<Held>> = const { RefCell::new(Vec::new()) };
    static HOOKED: Cell<bool> = const { Cell::new(false) };
}

/// `lock()`'s attempt: stores `owner` (encoded bytes) under `key` if absent, expiring at
/// `expires_at` (ms since the epoch), and if it did, remembers that this thread holds it, in
/// the same call, so a `terminate()` cannot fall between the two.
#[napi(js_name = "lockTake")]
pub fn lock_take(env: Env, id: u32, key: String, owner: Raw, expires_at: f64) -> Result<bool> {
    let env = env.raw();
    // SAFETY: the caller's Uint8Array outlives this call; it is copied before any JS runs.
    let owner = unsafe { bytes_of(env, owner.0)? }.to_vec();
    let key = key.into_bytes();
    let taken = with(env, id, |att| {
        att.run(env, |store, _| {
            store.compare_and_change(&key, None, Some(&owner), Some(expires_at.max(1.0) as u64))
        })
    })?;
    if taken {
        HELD.with(|h| h.borrow_mut().push((id, key, owner)));
        if !HOOKED.with(|c| c.replace(true)) {
            // SAFETY: a static function with no data, run once when this thread's env exits.
            check(env, unsafe {
                sys::napi_add_env_cleanup_hook(env, Some(release_held), ptr::null_mut())
            })?;
        }
    }
    Ok(taken)
}

/// `release()`: deletes `key` if it still holds `owner`; returns whether it did.
#[napi(js_name = "lockRelease")]
pub fn lock_release(env: Env, id: u32, key: String, owner: Raw) -> Result<bool> {
    let env = env.raw();
    // SAFETY: as in lock_take.
    let owner = unsafe { bytes_of(env, owner.0)? }.to_vec();
    let key = key.into_bytes();
    HELD.with(|h| h.borrow_mut().retain(|(i, k, _)| !(*i == id && *k == key)));
    with(env, id, |att| {
        att.run(env, |store, _| {
            store.compare_and_change(&key, Some(&owner), None, None)
        })
    })
}

/// Deletes the leases this thread holds in store `id` (its attachment is being released).
pub fn release_held_in(id: u32) {
    let mine = HELD
        .try_with(|h| {
            let mut h = h.borrow_mut();
            let (mine, rest) = std::mem::take(&mut *h)
                .into_iter()
                .partition(|(i, _, _)| *i == id);
            *h = rest;
            mine
        })
        .unwrap_or_default();
    release(mine);
}

/// Env cleanup hook: deletes every lease this thread still holds (if it still holds it).
///
/// # Safety
/// Called by Node-API on this thread while its env exits.
unsafe extern "C" fn release_held(_arg: *mut std::ffi::c_void) {
    release(
        HELD.try_with(|h| std::mem::take(&mut *h.borrow_mut()))
            .unwrap_or_default(),
    );
}

fn release(held: Vec<Held>) {
    let _ = ATTACHED.try_with(|a| {
        let Ok(a) = a.try_borrow() else { return };
        for (id, key, owner) in &held {
            if let Some(att) = a.get(*id as usize).and_then(Option::as_ref) {
                // A lost store (fault.rs) is not written to any more.
                if att.store.region().lost().is_err() {
                    continue;
                }
                // Only if still ours: a lease that expired may belong to someone else now.
                let _ = att.store.compare_and_change(key, Some(owner), None, None);
            }
        }
    });
}

/// This process's start-time tag, as lock words and lease owners carry it.
#[napi(js_name = "processStart")]
pub fn process_start() -> f64 {
    this_process().start as f64
}

/// Whether the process `pid` with start-time tag `start`, which holds a lease in store `id`,
/// lives: 1 yes, 0 no (dead, or its pid now names another process), -1 unknown (the store is
/// shared across pid namespaces, where a pid may name anyone: the lease decides).
#[napi(js_name = "processAlive")]
pub fn process_alive(env: Env, id: u32, pid: u32, start: f64) -> Result<i32> {
    let mixed = with(env.raw(), id, |att| {
        Ok(att
            .store
            .region()
            .u32(H_MIXED_NS)
            .map_or(true, |w| w.load(Relaxed) != 0))
    })?;
    Ok(match (mixed, process_liveness(pid, start as u64)) {
        (true, _) | (_, Liveness::Unknown) => -1,
        (false, Liveness::Alive) => 1,
        (false, Liveness::Dead) => 0,
    })
}
