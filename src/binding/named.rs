//! Named stores: `createStore('cache')` in any thread of the process reaches the same memory.
//!
//! A thread that never received a message cannot get another thread's SharedArrayBuffer, but
//! the addon is loaded once per process: a process-wide registry owns each named store's
//! memory, and every thread wraps that same memory in an external ArrayBuffer of its own.
//! The memory is allocated zeroed at its full size; the OS commits pages only as they are
//! touched, so the store never needs to grow and an untouched store costs address space only.
//! It lives for the rest of the process, as a name does.
//!
//! Store files (`openStore(path)`) work the same way: one shared mapping of the file per
//! process (see `memory.rs`), wrapped in an external ArrayBuffer in every thread.

use std::collections::HashMap;
use std::ptr;
use std::sync::Arc;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;
use parking_lot::Mutex;

use super::raw::{self, check, throw, Raw};
use crate::layout::MAX_REGION_BYTES;
use crate::memory::{FileOptions, Memory};
use crate::store::Store;

/// The bytes of a store JS sees: the largest external ArrayBuffer Node 20 makes (it refuses
/// "a Buffer larger than 0x100000000 bytes"; Node 24 makes larger ones), and the most a JS
/// offset computed with `>>> 2` can address. A store past it is still one mapping: JS is handed
/// an ArrayBuffer over its first 4 GiB, which the JS reader and read cache read directly, and
/// `attach` finds the whole mapping in the registries below, so the core sees every byte and
/// reads past the window go through it (`lib/reader.js` falls back to the native reader).
pub(super) const JS_WINDOW_BYTES: u64 = 1 << 32;

static REGISTRY: Mutex<Option<HashMap<String, Arc<Memory>>>> = parking_lot::const_mutex(None);
/// Store files this process has mapped, by (device, inode): every thread, and every path that
/// names the same file, shares one mapping.
static FILES: Mutex<Option<HashMap<(u64, u64), Arc<Memory>>>> = parking_lot::const_mutex(None);

/// An ArrayBuffer over the named store's memory, creating and formatting the store the first
/// time the name is used in the process (with `max_bytes` of room).
#[napi(js_name = "namedBuffer")]
pub fn named_buffer(
    env: Env,
    name: String,
    max_bytes: f64,
    on_full: u32,
    max_entries: f64,
    expected_keys: f64,
) -> Result<Raw> {
    let env = env.raw();
    let memory = {
        let mut registry = REGISTRY.lock();
        let map = registry.get_or_insert_with(HashMap::new);
        match map.get(&name) {
            Some(m) => m.clone(),
            None => {
                if max_bytes > MAX_REGION_BYTES as f64 {
                    return Err(Error::new(
                        Status::InvalidArg,
                        format!("maxBytes is at most {MAX_REGION_BYTES} (1 TiB) for a named store, got {max_bytes}"),
                    ));
                }
                let len = (max_bytes as usize).max(crate::store::MIN_REGION_BYTES as usize);
                let memory = Memory::anonymous(len).map_err(|e| throw(env, &e))?;
                let seed = std::hash::BuildHasher::hash_one(
                    &std::collections::hash_map::RandomState::new(),
                    &name,
                );
                let limits = super::limits(on_full, [max_entries, expected_keys], len as u64);
                Store::create_with(memory.region(), seed, 0, limits).map_err(|e| throw(env, &e))?;
                let m = Arc::new(memory);
                map.insert(name, m.clone());
                m
            }
        }
    };
    external_buffer(env, memory)
}

/// An ArrayBuffer over the store file at `path`, opening (or, with `create`, creating and
/// formatting) it: `{ buffer, created, fileId }` (`fileId`: "device:inode" of the file mapped).
#[napi(js_name = "fileBuffer")]
#[allow(clippy::too_many_arguments)]
pub fn file_buffer(
    env: Env,
    path: String,
    max_bytes: f64,
    mode: u32,
    create: bool,
    on_full: u32,
    max_entries: f64,
    expected_keys: f64,
) -> Result<Raw> {
    let env = env.raw();
    let opts = FileOptions {
        max_bytes: max_bytes as u64,
        mode,
        create,
        evict: on_full == crate::layout::ON_FULL_EVICT,
        max_entries: max_entries.max(0.0) as u64,
        expected_keys: expected_keys.max(0.0) as u64,
        max_file_bytes: MAX_REGION_BYTES,
    };
    let (memory, created) = Memory::open_file(&path, opts).map_err(|e| throw(env, &e))?;
    let (dev, ino) = memory.file_id.expect("a file mapping has a file id");
    let memory = {
        let mut files = FILES.lock();
        let files = files.get_or_insert_with(HashMap::new);
        let id = memory.file_id.expect("a file mapping has a file id");
        // Already mapped here: keep the first mapping (a second one is left unused).
        files.entry(id).or_insert_with(|| Arc::new(memory)).clone()
    };
    let buffer = external_buffer(env, memory)?;
    let mut out = ptr::null_mut();
    // SAFETY: plain object creation and property sets on this env.
    unsafe {
        check(env, sys::napi_create_object(env, &mut out))?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"buffer".as_ptr(), buffer.0),
        )?;
        let mut flag = ptr::null_mut();
        check(env, sys::napi_get_boolean(env, created, &mut flag))?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"created".as_ptr(), flag),
        )?;
        let id = raw::string(env, format!("{dev}:{ino}").as_bytes())?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"fileId".as_ptr(), id),
        )?;
    }
    Ok(Raw(out))
}

/// The whole length of the named store or store file mapped at `base`, which JS holds as a
/// window of at most JS_WINDOW_BYTES (see `attach`); None for memory of neither registry.
pub(super) fn mapped_len(base: *mut u8) -> Option<usize> {
    fn find<K>(map: Option<&HashMap<K, Arc<Memory>>>, base: *mut u8) -> Option<usize> {
        map?.values().find(|m| m.base() == base).map(|m| m.len())
    }
    find(REGISTRY.lock().as_ref(), base).or_else(|| find(FILES.lock().as_ref(), base))
}

/// An external ArrayBuffer over `memory`'s first JS_WINDOW_BYTES at most. No finalizer: the registry (REGISTRY or FILES)
/// keeps every store's memory for the rest of the process, so there is nothing to release, and
/// nothing a failed creation could release twice (Node-API may run the finalizer of a buffer
/// it failed to make, and a hint freed on that path too was a double free: SIGABRT for a
/// named store above 4 GiB).
fn external_buffer(env: sys::napi_env, memory: Arc<Memory>) -> Result<Raw> {
    // SAFETY: the memory outlives the ArrayBuffer: it is never unmapped, and the registry
    // holds it (`memory` is one of its Arcs).
    unsafe {
        external_arraybuffer(
            env,
            memory.base(),
            memory.len().min(JS_WINDOW_BYTES as usize),
        )
    }
}

/// An ArrayBuffer over `len` bytes at `base`, with no finalizer.
///
/// # Safety
/// The bytes must stay valid for the rest of the process (nothing frees them).
pub(super) unsafe fn external_arraybuffer(
    env: sys::napi_env,
    base: *mut u8,
    len: usize,
) -> Result<Raw> {
    let mut buf = ptr::null_mut();
    // SAFETY: valid env and out-pointer; the caller keeps the bytes alive for good.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env,
            base.cast(),
            len,
            None,
            ptr::null_mut(),
            &mut buf,
        )
    };
    check(env, status)?;
    Ok(Raw(buf))
}
