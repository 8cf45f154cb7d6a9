//! Named stores: `createStore('cache')` in any thread of the process reaches the same memory.
//!
//! A thread that never received a message cannot get another thread's SharedArrayBuffer, but
//! the addon is loaded once per process: a process-wide registry owns each named store's
//! memory, and every thread wraps that same memory in an external ArrayBuffer of its own.
//! The memory is allocated zeroed at its full size; the OS commits pages only as they are
//! touched, so the store never needs to grow and an untouched store costs address space only.
//! It lives for the rest of the process, as a name does.

#[cfg(not(unix))]
use std::alloc::{alloc_zeroed, Layout};
use std::collections::HashMap;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use parking_lot::Mutex;

use super::raw::{check, throw, Raw};
use crate::region::Region;
use crate::store::Store;

/// One named store's memory (never freed: a name lasts as long as the process).
struct Memory {
    base: *mut u8,
    len: usize,
}

// SAFETY: the memory is only accessed through the store's atomics (see region.rs).
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

/// `len` zeroed bytes that cost nothing until touched (never freed). Inside Node, a 1 GiB
/// `alloc_zeroed` measured 0.8 s and 1.1 GB of resident memory; an anonymous mapping is
/// committed page by page as the store fills.
fn zeroed_pages(len: usize) -> *mut u8 {
    #[cfg(unix)]
    {
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            ptr::null_mut()
        } else {
            p.cast()
        }
    }
    #[cfg(not(unix))]
    match Layout::from_size_align(len, 16) {
        // SAFETY: a non-zero size with a valid alignment; the caller checks for null.
        Ok(layout) => unsafe { alloc_zeroed(layout) },
        Err(_) => ptr::null_mut(),
    }
}

static REGISTRY: Mutex<Option<HashMap<String, Arc<Memory>>>> = parking_lot::const_mutex(None);

/// An ArrayBuffer over the named store's memory, creating and formatting the store the first
/// time the name is used in the process (with `max_bytes` of room).
#[napi(js_name = "namedBuffer")]
pub fn named_buffer(env: Env, name: String, max_bytes: f64) -> Result<Raw> {
    let env = env.raw();
    let memory = {
        let mut registry = REGISTRY.lock();
        let map = registry.get_or_insert_with(HashMap::new);
        match map.get(&name) {
            Some(m) => m.clone(),
            None => {
                let len = (max_bytes as usize).max(crate::store::MIN_REGION_BYTES as usize);
                let base = zeroed_pages(len);
                if base.is_null() {
                    return Err(throw(
                        env,
                        &crate::Error::Full {
                            needed: len as u64,
                            max: len as u64,
                        },
                    ));
                }
                let seed = std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    &name,
                );
                // SAFETY: `len` zeroed bytes at `base`, never freed (kept by the registry).
                Store::create(unsafe { Region::new(base, len) }, seed)
                    .map_err(|e| throw(env, &e))?;
                let m = Arc::new(Memory { base, len });
                map.insert(name, m.clone());
                m
            }
        }
    };
    let mut buf = ptr::null_mut();
    let hint = Box::into_raw(Box::new(memory.clone()));
    // SAFETY: the memory outlives the ArrayBuffer (the registry keeps it); the finalizer gets
    // back the Arc we leaked into `hint` and drops it.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env,
            memory.base.cast(),
            memory.len,
            Some(drop_hint),
            hint.cast(),
            &mut buf,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: the ArrayBuffer was not made, so the finalizer will not run: reclaim `hint`.
        drop(unsafe { Box::from_raw(hint) });
        check(env, status)?;
    }
    Ok(Raw(buf))
}

/// Finalizer of a named store's ArrayBuffer.
///
/// # Safety
/// Called once by Node-API with the `hint` given in `named_buffer`.
unsafe extern "C" fn drop_hint(
    _env: sys::napi_env,
    _data: *mut std::ffi::c_void,
    hint: *mut std::ffi::c_void,
) {
    // SAFETY: `hint` is the Box<Arc<Memory>> leaked in named_buffer, finalized exactly once.
    drop(unsafe { Box::from_raw(hint.cast::<Arc<Memory>>()) });
}
