//! The Node binding: the only code that knows about napi.
//!
//! Node 20 has no Node-API call for SharedArrayBuffer, so the buffer is made by calling the JS
//! constructor (growable, with `maxByteLength`), and its address comes from a length-tracking
//! `Uint8Array` over it (`napi_get_typedarray_info`). V8 reserves `maxByteLength` up front, so
//! the address never changes when the buffer grows; the length this thread trusts is the one
//! that view reports, never one read from the shared bytes.

mod convert;
mod locks;
mod named;
mod raw;
mod watch;

use std::cell::RefCell;
use std::hash::{BuildHasher, Hasher};
use std::ptr;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use crate::error::Error as CoreError;
use crate::region::Region;
use crate::store::{SetOptions, Store};
use raw::{check, global, new_instance, throw, Raw};

/// Grow in steps of at least this much, so many small sets do not each call `grow`.
const GROW_STEP: u64 = 1 << 20;

/// The settings a new store gets: `on_full` 1 evicts, 0 throws (see evict.rs); `sizes` is
/// `[maxEntries, expectedKeys]` (whole numbers >= 0, checked by the caller).
fn limits(on_full: u32, sizes: [f64; 2], max_bytes: u64) -> crate::store::Limits {
    crate::store::Limits {
        evict: on_full == crate::layout::ON_FULL_EVICT,
        max_entries: sizes[0].max(0.0) as u64,
        max_bytes,
        expected_keys: sizes[1].max(0.0) as u64,
    }
}

/// Creates the store's SharedArrayBuffer (`initial` bytes, growable to `max`) and formats it.
#[napi(js_name = "createBuffer")]
pub fn create_buffer(
    env: Env,
    initial: f64,
    max: f64,
    on_full: u32,
    max_entries: f64,
    expected_keys: f64,
) -> Result<Raw> {
    let env = env.raw();
    let sab = new_shared_buffer(env, initial, max)?;
    let (base, len) = typed_view(env, sab)?.1;
    advise_huge_pages(base, max as usize);
    let seed = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    // SAFETY: base/len describe the live buffer we just created; `sab` keeps it alive until
    // the caller stores it, and every attachment holds its own reference.
    let region = unsafe { Region::new(base, len) };
    match Store::create_with(
        region,
        seed,
        0,
        limits(on_full, [max_entries, expected_keys], max as u64),
    ) {
        Ok(_) => Ok(Raw(sab)),
        Err(CoreError::NeedGrow { needed }) => {
            let msg = format!("initialBytes must be at least {needed} (room for the header and the initial index)");
            Err(raw::throw_msg(env, b'R', c"ERR_KV_OPTIONS", &msg))
        }
        Err(e) => Err(throw(env, &e)),
    }
}

/// Asks Linux to back the buffer's whole reservation with transparent huge pages (where THP is
/// in `madvise` mode), so random access over a large store misses the TLB less. Checked: with
/// 1M entries the buffer is then mostly huge pages (AnonHugePages); the effect on the scale
/// benchmark was within its noise here, as most of the cost is cache misses, not TLB misses.
/// Advice only: an error changes nothing.
fn advise_huge_pages(base: *mut u8, reserved: usize) {
    #[cfg(target_os = "linux")]
    // SAFETY: madvise only gives the kernel advice about this mapping (V8 reserved `reserved`
    // bytes from `base` for the growable buffer); it never changes the memory's contents.
    unsafe {
        libc::madvise(base.cast(), reserved, libc::MADV_HUGEPAGE);
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (base, reserved);
}

fn new_shared_buffer(env: sys::napi_env, initial: f64, max: f64) -> Result<sys::napi_value> {
    let ctor = global(env, "SharedArrayBuffer")?;
    let mut opts = ptr::null_mut();
    let mut max_v = ptr::null_mut();
    let mut initial_v = ptr::null_mut();
    // SAFETY: plain Node-API calls on this thread's env with valid out-pointers.
    unsafe {
        check(env, sys::napi_create_object(env, &mut opts))?;
        check(env, sys::napi_create_double(env, max, &mut max_v))?;
        check(
            env,
            sys::napi_set_named_property(env, opts, c"maxByteLength".as_ptr(), max_v),
        )?;
        check(env, sys::napi_create_double(env, initial, &mut initial_v))?;
    }
    new_instance(env, ctor, &[initial_v, opts])
}

/// A length-tracking Uint8Array over `sab`, with its data pointer and current length.
fn typed_view(
    env: sys::napi_env,
    sab: sys::napi_value,
) -> Result<(sys::napi_value, (*mut u8, usize))> {
    let view = new_instance(env, global(env, "Uint8Array")?, &[sab])?;
    Ok((view, view_info(env, view)?))
}

fn view_info(env: sys::napi_env, view: sys::napi_value) -> Result<(*mut u8, usize)> {
    typed_array(env, view, sys::TypedarrayType::uint8_array, "a Uint8Array")
}

/// Data pointer and element count of a typed array argument of type `ty`.
fn typed_array(
    env: sys::napi_env,
    view: sys::napi_value,
    ty: sys::napi_typedarray_type,
    what: &str,
) -> Result<(*mut u8, usize)> {
    let (mut found, mut len, mut data, mut ab, mut offset) =
        (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
    // SAFETY: out-pointers are valid; a non-typed-array argument yields an error status.
    check(env, unsafe {
        sys::napi_get_typedarray_info(
            env,
            view,
            &mut found,
            &mut len,
            &mut data,
            &mut ab,
            &mut offset,
        )
    })?;
    if found != ty {
        return Err(Error::new(Status::InvalidArg, format!("expected {what}")));
    }
    Ok((data.cast(), len))
}

/// The bytes of a Uint8Array argument.
///
/// # Safety
/// The array must stay alive and unresized for the returned lifetime (one native call).
unsafe fn bytes_of<'a>(env: sys::napi_env, view: sys::napi_value) -> Result<&'a [u8]> {
    let (data, len) = view_info(env, view)?;
    if len == 0 {
        return Ok(&[]); // data may be null for an empty array
    }
    // SAFETY: V8 reports `len` readable bytes at `data`; the caller keeps them alive.
    Ok(unsafe { std::slice::from_raw_parts(data, len) })
}

/// The words of a Uint32Array argument.
///
/// # Safety
/// As `bytes_of`.
unsafe fn words_of<'a>(env: sys::napi_env, view: sys::napi_value) -> Result<&'a [u32]> {
    let (data, len) = typed_array(
        env,
        view,
        sys::TypedarrayType::uint32_array,
        "a Uint32Array",
    )?;
    if len == 0 {
        return Ok(&[]);
    }
    // SAFETY: V8 reports `len` aligned u32 elements at `data`; the caller keeps them alive.
    Ok(unsafe { std::slice::from_raw_parts(data.cast::<u32>(), len) })
}

/// One thread's attachment to a store buffer.
struct Attached {
    store: Store,
    /// Keeps the SharedArrayBuffer alive and lets us call its `grow`.
    sab: sys::napi_ref,
    /// The length-tracking view whose length is the trusted region length (None: a named
    /// store or store file, whose length never changes).
    view: Option<sys::napi_ref>,
    base: *mut u8,
    max: u64,
    /// Reused between gets, so a get allocates nothing once warm.
    buf: Vec<u8>,
    /// Reads of an evicting store through the native codec, not yet marked (see evict.rs).
    visits: Vec<(u64, u32)>,
    /// The memory is a SharedArrayBuffer (not a named store's or store file's mapping).
    is_sab: bool,
    /// An Int32Array over the SharedArrayBuffer, for `Atomics.notify` (made on first use).
    i32_view: Option<sys::napi_ref>,
    /// Watchers in `Atomics.waitAsync` must be notified once the current call is done.
    notify: bool,
    /// Which of this thread's attachments this is (ids are reused, serials never).
    serial: u64,
}

thread_local! {
    /// This thread's attached stores, by id. Hot calls find their store by a number rather
    /// than by unwrapping a class instance: measured here, a napi-rs class method with a
    /// string argument costs ~425 ns per call, a plain `#[napi]` function ~160 ns.
    static ATTACHED: RefCell<Vec<Option<Attached>>> = const { RefCell::new(Vec::new()) };
    /// Attachments whose owner was collected while the table was busy; reaped by `attach`.
    static RELEASED: RefCell<Vec<Owner>> = const { RefCell::new(Vec::new()) };
    /// Counts attachments made in this thread: an id is reused after `detach`, so an owner
    /// names its attachment by id and this number.
    static ATTACHMENTS: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Attaches this thread to a buffer made by `createBuffer` (here or in another thread).
/// Returns `{ id, owner }`: pass `id` to the other calls and keep `owner` alive as long as
/// the store is used; when `owner` is collected the attachment is released.
#[napi]
pub fn attach(env: Env, sab: Raw) -> Result<Raw> {
    let env = env.raw();
    let mut plain = false;
    // SAFETY: valid env, value and out-pointer. A SharedArrayBuffer is not an ArrayBuffer here.
    check(env, unsafe {
        sys::napi_is_arraybuffer(env, sab.0, &mut plain)
    })?;
    let (view, base, len, max) = if plain {
        // A named store or store file: its length never changes, and past 4 GiB JS holds only
        // a window of it (named::JS_WINDOW_BYTES): the registry knows the whole mapping.
        let (mut data, mut len) = (ptr::null_mut(), 0usize);
        // SAFETY: valid env, value and out-pointers.
        check(env, unsafe {
            sys::napi_get_arraybuffer_info(env, sab.0, &mut data, &mut len)
        })?;
        let base = data.cast::<u8>();
        let len = named::mapped_len(base).unwrap_or(len);
        (None, base, len, len as u64)
    } else {
        let (view, (base, len)) = typed_view(env, sab.0)?;
        let max = raw::get_number(env, sab.0, c"maxByteLength")? as u64;
        (Some(view), base, len, max)
    };
    // SAFETY: base/len describe the live buffer; the references taken below keep it alive
    // until the attachment is released.
    let region = unsafe { Region::new(base, len) };
    region.lost().map_err(|e| throw(env, &e))?;
    let store = Store::attach(region).map_err(|e| {
        // Cut under us while attaching: that, not what the zeros looked like.
        // SAFETY: as above.
        let e = unsafe { Region::new(base, len) }.lost().err().unwrap_or(e);
        throw(env, &e)
    })?;
    let fault_slot = store.region().fault_slot();
    let (mut sab_ref, mut view_ref) = (ptr::null_mut(), None);
    // SAFETY: creating strong references to live values of this env.
    unsafe {
        check(env, sys::napi_create_reference(env, sab.0, 1, &mut sab_ref))?;
        if let Some(view) = view {
            let mut r = ptr::null_mut();
            check(env, sys::napi_create_reference(env, view, 1, &mut r))?;
            view_ref = Some(r);
        }
    }
    let attached = Attached {
        store,
        sab: sab_ref,
        view: view_ref,
        base,
        max,
        buf: Vec::new(),
        visits: Vec::new(),
        is_sab: !plain,
        i32_view: None,
        notify: false,
        serial: ATTACHMENTS.with(|n| {
            n.set(n.get() + 1);
            n.get()
        }),
    };
    let serial = attached.serial;
    let id = ATTACHED.with(|a| {
        let mut a = a.borrow_mut();
        for owner in RELEASED.with(|r| std::mem::take(&mut *r.borrow_mut())) {
            owner.release_in(&mut a, env);
        }
        match a.iter().position(Option::is_none) {
            Some(i) => {
                a[i] = Some(attached);
                i
            }
            None => {
                a.push(Some(attached));
                a.len() - 1
            }
        }
    });
    let mut owner = ptr::null_mut();
    let data = Box::into_raw(Box::new(Owner { id, serial }));
    // SAFETY: the finalizer receives `data` back and runs once, on this thread.
    let status = unsafe {
        sys::napi_create_external(env, data.cast(), Some(release), ptr::null_mut(), &mut owner)
    };
    if status != sys::Status::napi_ok {
        // SAFETY: not handed to any External: reclaimed here, once.
        drop(unsafe { Box::from_raw(data) });
        check(env, status)?;
    }
    let mut out = ptr::null_mut();
    // SAFETY: plain object creation and property sets on this env.
    unsafe {
        check(env, sys::napi_create_object(env, &mut out))?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"id".as_ptr(), raw::number(env, id as f64)?),
        )?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"owner".as_ptr(), owner),
        )?;
        check(
            env,
            sys::napi_set_named_property(
                env,
                out,
                c"lostSlot".as_ptr(),
                raw::number(env, fault_slot as f64)?,
            ),
        )?;
    }
    Ok(Raw(out))
}

/// The lost flags of every store file this process maps (fault.rs), one Uint32 per slot, as an
/// ArrayBuffer: the JS reader checks its store's (`attach().lostSlot`) after every read it makes
/// without a native call. Slot 0 is never lost.
#[napi(js_name = "lostFlags")]
pub fn lost_flags(env: Env) -> Result<Raw> {
    let env = env.raw();
    #[cfg(unix)]
    let (base, len) = crate::fault::flags();
    #[cfg(not(unix))]
    let (base, len) = (ptr::null_mut(), 0usize);
    // SAFETY: the flags are a static table that lives as long as the process.
    unsafe { named::external_arraybuffer(env, base, len) }
}

/// Makes attachment `id` read-only: its reads leave no trace in the store (no eviction marks,
/// no help to an index growth). The JS side refuses its writes.
#[napi(js_name = "setReadOnly")]
pub fn set_read_only(env: Env, id: u32) -> Result<()> {
    with(env.raw(), id, |att| {
        att.store.read_only = true;
        Ok(())
    })
}

/// Throws ERR_KV_LOST if store `id`'s file was truncated under this process (what the JS
/// reader calls when it finds its flag set); otherwise does nothing.
#[napi(js_name = "checkLost")]
pub fn check_lost(env: Env, id: u32) -> Result<()> {
    with(env.raw(), id, |_| Ok(()))
}

/// What an `owner` External names: attachment `id`, made as this thread's `serial`th.
struct Owner {
    id: usize,
    serial: u64,
}

impl Owner {
    /// Releases the attachment, if `id` still holds the one this owner was made for (after a
    /// `close()` the id may belong to a newer attachment, which must not go with it).
    fn release_in(&self, table: &mut [Option<Attached>], env: sys::napi_env) {
        let slot = table.get_mut(self.id);
        if let Some(slot) = slot.filter(|s| s.as_ref().is_some_and(|a| a.serial == self.serial)) {
            if let Some(att) = slot.take() {
                att.drop_refs(env);
            }
        }
    }
}

/// Finalizer of the `owner` External: releases its attachment.
///
/// # Safety
/// Called once by Node-API on this thread, with the env the attachment was made in and the
/// `Owner` leaked in `attach`.
unsafe extern "C" fn release(
    env: sys::napi_env,
    data: *mut std::ffi::c_void,
    _hint: *mut std::ffi::c_void,
) {
    // SAFETY: the Box leaked in `attach`, finalized exactly once.
    let owner = unsafe { Box::from_raw(data.cast::<Owner>()) };
    // try_with: during thread teardown the table may already be gone (and the env with it).
    let _ = ATTACHED.try_with(|a| {
        // If a store call is running (a finalizer run from a GC inside it), the table is
        // borrowed: leave the slot for the next `attach` to reap rather than panic.
        let Ok(mut a) = a.try_borrow_mut() else {
            let _ = RELEASED.try_with(|r| r.borrow_mut().push(*owner));
            return;
        };
        owner.release_in(&mut a, env);
    });
}

impl Attached {
    fn drop_refs(self, env: sys::napi_env) {
        // SAFETY: references created in `attach` on this env, deleted exactly once (the
        // attachment is consumed).
        unsafe {
            sys::napi_delete_reference(env, self.sab);
            if let Some(r) = self.view {
                sys::napi_delete_reference(env, r);
            }
            if let Some(r) = self.i32_view {
                sys::napi_delete_reference(env, r);
            }
        }
    }
}

/// Releases attachment `id` now (the store's `close()`); later calls with `id` fail with
/// ERR_KV_CLOSED. Releasing twice is harmless.
#[napi]
pub fn detach(env: Env, id: u32) -> Result<()> {
    let env = env.raw();
    // Leases this thread holds in the store go with the attachment (as at the thread's exit),
    // and so do its watchers.
    locks::release_held_in(id);
    watch::close_all_in(env, id);
    // Marks of reads not yet handed over go first (best effort: a lost or already detached
    // store takes none, and its error is not this call's).
    if with(env, id, |att| att.flush_visits(env)).is_err() {
        raw::clear_exception(env)?;
    }
    let att = ATTACHED.with(|a| a.borrow_mut().get_mut(id as usize).and_then(Option::take));
    if let Some(att) = att {
        att.drop_refs(env);
    }
    Ok(())
}

/// Whether attachment `id` is a store file truncated under this process (fault.rs).
fn is_lost(id: u32) -> bool {
    ATTACHED.with(|a| {
        a.borrow()
            .get(id as usize)
            .and_then(Option::as_ref)
            .is_some_and(|att| att.store.region().lost().is_err())
    })
}

/// Runs `f` on attachment `id`. `f` must not call user JS (it could re-enter the store).
fn with<T>(env: sys::napi_env, id: u32, f: impl FnOnce(&mut Attached) -> Result<T>) -> Result<T> {
    let (result, notify) =
        ATTACHED.with(
            |a| match a.borrow_mut().get_mut(id as usize).and_then(Option::as_mut) {
                Some(att) => {
                    // A store file truncated under this process (fault.rs): whatever the call
                    // read may be zeros, and nothing it wrote reaches the file. Checked before
                    // and after, so no result of a lost store is ever returned.
                    let lost =
                        |att: &Attached| att.store.region().lost().map_err(|e| throw(env, &e));
                    let mut result = lost(att).and_then(|()| f(att));
                    if let Err(e) = att.store.region().lost() {
                        if result.is_err() {
                            // What the call made of the zeros (ERR_KV_CORRUPTED) is not the news.
                            let _ = raw::clear_exception(env);
                        }
                        result = Err(throw(env, &e));
                    }
                    (result, std::mem::take(&mut att.notify))
                }
                None => (
                    Err(raw::throw_msg(
                        env,
                        b'E',
                        c"ERR_KV_CLOSED",
                        "this store is not attached in this thread",
                    )),
                    false,
                ),
            },
        );
    if notify {
        // Outside the borrow: it calls JS (Atomics.notify).
        watch::notify_watchers(env, id);
    }
    result
}

/// Copies the encoded value of `key` into `out`. Returns its length (when larger than
/// `out`, nothing was copied: call again with a buffer that size), or -1 if absent. On a hit,
/// `version` (a Uint32Array of 5) receives the entry's version: the byte offset of its SEQ
/// word, SEQ, the table epoch (which the JS read cache checks with two `Atomics.load`s) and
/// the expiry. A SEQ word past the JS window (named::JS_WINDOW_BYTES) is reported as offset 0,
/// which no SEQ word has: JS neither caches nor marks that version, and its eviction mark is
/// made here.
#[napi]
pub fn get(env: Env, id: u32, key: String, out: Raw, version: Raw) -> Result<f64> {
    let env = env.raw();
    with(env, id, |att| {
        let Some(v) = att.run(env, |store, buf| store.get(key.as_bytes(), buf))? else {
            return Ok(-1.0);
        };
        let (dst, cap) = view_info(env, out.0)?;
        if !att.buf.is_empty() && att.buf.len() <= cap {
            // SAFETY: dst holds cap >= buf.len() bytes of a private (non-shared) Uint8Array.
            unsafe { ptr::copy_nonoverlapping(att.buf.as_ptr(), dst, att.buf.len()) };
        }
        let v = if v.seq_offset >= named::JS_WINDOW_BYTES {
            att.visited(env, v)?;
            crate::store::Version { seq_offset: 0, ..v }
        } else {
            v
        };
        write_version(env, version.0, v)?;
        Ok(att.buf.len() as f64)
    })
}

fn write_version(
    env: sys::napi_env,
    target: sys::napi_value,
    v: crate::store::Version,
) -> Result<()> {
    let (mut ty, mut len, mut data, mut ab, mut off) =
        (0, 0usize, ptr::null_mut(), ptr::null_mut(), 0usize);
    // SAFETY: out-pointers are valid; a non-typed-array argument yields an error status.
    check(env, unsafe {
        sys::napi_get_typedarray_info(env, target, &mut ty, &mut len, &mut data, &mut ab, &mut off)
    })?;
    if ty != sys::TypedarrayType::uint32_array || len < 5 {
        return Err(Error::new(
            Status::InvalidArg,
            "expected a Uint32Array of 5".to_string(),
        ));
    }
    let words = [
        v.seq_offset as u32,
        v.seq,
        v.epoch,
        v.expires_at as u32,
        (v.expires_at >> 32) as u32,
    ];
    // SAFETY: a private Uint32Array with room for 5 aligned u32s.
    unsafe { ptr::copy_nonoverlapping(words.as_ptr(), data.cast::<u32>(), 5) };
    Ok(())
}

/// The layout facts `lib/reader.js` and the read cache need, straight from `layout.rs`, so
/// JS hard-codes no offset.
#[napi]
pub fn layout(env: Env) -> Result<Raw> {
    use crate::layout::*;
    let fields = [
        ("maxKeyBytes", MAX_KEY_BYTES as u64),
        ("tableEpoch", H_TABLE_EPOCH),
        ("writeLock", H_WRITE_LOCK),
        ("t0", H_T0),
        ("t1", H_T1),
        ("tableCap", T_CAP),
        ("internalHeader", INTERNAL_HEADER),
        ("slotSize", SLOT_SIZE),
        ("slotSeq", S_SEQ),
        ("slotRef", S_REF),
        ("seqHiShift", SEQ_HI_SHIFT as u64),
        ("seqHiBits", SEQ_HI_BITS as u64),
        ("seqTagShift", SEQ_TAG_SHIFT as u64),
        ("refEmpty", REF_EMPTY),
        ("refTombstone", REF_TOMBSTONE),
        ("blockWord0", B_WORD0),
        ("blockValLen", B_VAL_LEN),
        ("kindShort", KIND_SHORT as u64),
        ("kindLong", KIND_LONG as u64),
        ("kindTtl", KIND_TTL as u64),
        ("shortHeader", SHORT_HEADER),
        ("longHeader", LONG_BIG_HEADER),
        ("ttlHeader", TTL_HEADER),
        ("ttlBigHeader", TTL_BIG_HEADER),
        ("blockExpires", B_EXPIRES),
        ("blockExpiresBig", B_EXPIRES_BIG),
        ("layoutVersion", LAYOUT_VERSION as u64),
        ("helpEvery", crate::rehash::HELP_EVERY as u64),
        ("maxRegionBytes", MAX_REGION_BYTES),
        ("jsWindowBytes", named::JS_WINDOW_BYTES),
    ];
    let map = fields
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    convert::json_to_js(env.raw(), &serde_json::Value::Object(map)).map(Raw)
}

/// The store's key-hash seed, as this thread's attachment copied it (for `lib/reader.js`).
#[napi(js_name = "hashSeed")]
pub fn hash_seed(env: Env, id: u32) -> Result<u32> {
    with(env.raw(), id, |att| Ok(att.store.seed() as u32))
}

/// The core's hash of `key` with the store's seed (tests check the JS reader's hash against it).
#[napi(js_name = "hashKey")]
pub fn hash_key(env: Env, id: u32, key: String) -> Result<u32> {
    with(env.raw(), id, |att| {
        Ok(crate::hash::hash_key(att.store.seed(), key.as_bytes()) as u32)
    })
}

/// `set` with the key's UTF-8 bytes in the same buffer as the value: `all[0, key_len)` is the
/// key, `all[key_len, end)` the encoded value.
fn set_from(
    env: sys::napi_env,
    id: u32,
    all: &[u8],
    key_len: u32,
    end: u32,
    opts: SetOptions,
) -> Result<()> {
    let end = (end as usize).min(all.len());
    let (key, value) = all[..end].split_at((key_len as usize).min(end));
    with(env, id, |att| {
        att.flush_visits(env)?;
        att.run(env, |store, _| store.set_with(key, value, &opts))
    })
}

/// Set options as the JS facade passes them: `mode` bit 0 refit, bit 1 immutable; `reserve`
/// value bytes; `expires_at` ms since the Unix epoch (0: never).
fn set_options(mode: u32, reserve: u32, expires_at: f64) -> SetOptions {
    SetOptions {
        refit: mode & 1 != 0,
        immutable: mode & 2 != 0,
        reserve: reserve as u64,
        expires_at: expires_at.max(0.0) as u64,
    }
}

thread_local! {
    /// The JS encoder's buffer (one per thread), registered once so the hot set call passes
    /// only numbers: (reference keeping it alive, data, length).
    static ENCODE_BUFFER: std::cell::Cell<(sys::napi_ref, *const u8, usize)> =
        const { std::cell::Cell::new((ptr::null_mut(), ptr::null(), 0)) };
}

/// Registers `buf` (a Uint8Array) as this thread's encode buffer for `rawSetEntry`.
#[napi(js_name = "setEncodeBuffer")]
pub fn set_encode_buffer(env: Env, buf: Raw) -> Result<()> {
    let env = env.raw();
    let (data, len) = view_info(env, buf.0)?;
    let mut r = ptr::null_mut();
    // SAFETY: a strong reference keeps the array (and its memory) alive until replaced.
    check(env, unsafe {
        sys::napi_create_reference(env, buf.0, 1, &mut r)
    })?;
    let (old, _, _) = ENCODE_BUFFER.with(|c| c.replace((r, data, len)));
    if !old.is_null() {
        // SAFETY: the previous reference was created here on this env.
        unsafe { sys::napi_delete_reference(env, old) };
    }
    Ok(())
}

/// Returns `rawSetEntry(id, keyLen, end, mode, reserve, expiresAt)`: a set from the registered
/// encode buffer, as a plain Node-API callback. Measured: a napi-rs wrapper of it (five arguments,
/// one typed array) costs ~145 ns per call before any work; the store's set itself ~65 ns.
#[napi(js_name = "makeRawSetEntry")]
pub fn make_raw_set_entry(env: Env) -> Result<Raw> {
    let env = env.raw();
    let mut f = ptr::null_mut();
    // SAFETY: a static callback with no data; the name is a valid C string.
    check(env, unsafe {
        sys::napi_create_function(
            env,
            c"rawSetEntry".as_ptr(),
            -1,
            Some(raw_set_entry),
            ptr::null_mut(),
            &mut f,
        )
    })?;
    Ok(Raw(f))
}

/// # Safety
/// Called by Node-API on the JS thread with a valid env and callback info.
unsafe extern "C" fn raw_set_entry(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    let result = std::panic::catch_unwind(|| {
        let mut argc = 6usize;
        let mut argv = [ptr::null_mut(); 6];
        let (mut id, mut key_len, mut end, mut mode, mut reserve, mut expires_at) =
            (0u32, 0u32, 0u32, 0u32, 0u32, 0f64);
        // SAFETY: valid env/info; argv has room for argc values; out-pointers are valid.
        let ok = unsafe {
            sys::napi_get_cb_info(
                env,
                info,
                &mut argc,
                argv.as_mut_ptr(),
                ptr::null_mut(),
                ptr::null_mut(),
            ) == sys::Status::napi_ok
                && argc >= 6
                && sys::napi_get_value_uint32(env, argv[0], &mut id) == sys::Status::napi_ok
                && sys::napi_get_value_uint32(env, argv[1], &mut key_len) == sys::Status::napi_ok
                && sys::napi_get_value_uint32(env, argv[2], &mut end) == sys::Status::napi_ok
                && sys::napi_get_value_uint32(env, argv[3], &mut mode) == sys::Status::napi_ok
                && sys::napi_get_value_uint32(env, argv[4], &mut reserve) == sys::Status::napi_ok
                && sys::napi_get_value_double(env, argv[5], &mut expires_at) == sys::Status::napi_ok
        };
        if !ok {
            raw::throw_msg(
                env,
                b'T',
                c"ERR_INVALID_ARG_TYPE",
                "rawSetEntry(id, keyLen, end, mode, reserve, expiresAt)",
            );
            return;
        }
        let (_, data, len) = ENCODE_BUFFER.with(|c| c.get());
        if data.is_null() || len == 0 {
            raw::throw_msg(env, b'E', c"ERR_KV_STATE", "no encode buffer registered");
            return;
        }
        // SAFETY: the registered array is kept alive by its reference and never resized
        // (the JS encoder replaces it, and re-registers, when it needs more room).
        let all = unsafe { std::slice::from_raw_parts(data, len) };
        // Errors are thrown into JS inside (pending exception); nothing to return.
        let _ = set_from(
            env,
            id,
            all,
            key_len,
            end,
            set_options(mode, reserve, expires_at),
        );
    });
    if result.is_err() {
        raw::throw_msg(
            env,
            b'E',
            c"ERR_KV_PANIC",
            "shared-kv-store: internal error in set",
        );
    }
    ptr::null_mut()
}

/// Adds `delta` to the number under `key` (absent: 0) atomically; returns the new number.
#[napi]
pub fn increment(env: Env, id: u32, key: String, delta: f64) -> Result<f64> {
    let env = env.raw();
    with(env, id, |att| {
        att.run(env, |store, _| store.increment(key.as_bytes(), delta))
    })
}

/// Stores `next[0, next_len)` if the stored encoded value equals `expected[0, expected_len)`,
/// or, when `expected` is null, if the key is absent.
#[napi(js_name = "compareAndSet")]
#[allow(clippy::too_many_arguments)]
pub fn compare_and_set(
    env: Env,
    id: u32,
    key: String,
    expected: Raw,
    expected_len: u32,
    next: Raw,
    next_len: u32,
    expires_at: f64,
) -> Result<bool> {
    let env = env.raw();
    // SAFETY (both): the caller's Uint8Arrays outlive this call.
    let expected = optional_bytes(env, expected.0, expected_len)?;
    let next = optional_bytes(env, next.0, next_len)?;
    let expires_at = (expires_at > 0.0).then_some(expires_at as u64);
    with(env, id, |att| {
        att.run(env, |store, _| {
            store.compare_and_change(key.as_bytes(), expected, next, expires_at)
        })
    })
}

/// The first `len` bytes of a Uint8Array argument, or None for null/undefined.
fn optional_bytes<'a>(
    env: sys::napi_env,
    v: sys::napi_value,
    len: u32,
) -> Result<Option<&'a [u8]>> {
    if raw::is_null(env, v)? {
        return Ok(None);
    }
    // SAFETY: the caller's Uint8Array outlives the native call this is used in.
    let all = unsafe { bytes_of(env, v)? };
    Ok(Some(&all[..(len as usize).min(all.len())]))
}

/// Deletes every entry; returns how many there were.
#[napi]
pub fn clear(env: Env, id: u32) -> Result<f64> {
    let env = env.raw();
    with(env, id, |att| att.run(env, |store, _| store.clear())).map(|n| n as f64)
}

/// The number of live entries.
#[napi]
pub fn count(env: Env, id: u32) -> Result<f64> {
    let env = env.raw();
    with(env, id, |att| att.run(env, |store, _| store.stats())).map(|s| s.entries as f64)
}

/// One batch of iteration: `{ epoch, next, keys, values }` with up to `max` entries from slot
/// `from` (values as Buffers of encoded bytes; without `with_values`, `values` is empty and no
/// value is copied); `next` is -1 when done. If the index moved since `epoch`, the batch starts
/// over at slot 0 (the caller drops repeated keys). With `with_expiry`, also `expires`: each
/// entry's expiry in ms since the Unix epoch (0: never), of the same version as its value.
#[napi]
pub fn scan(
    env: Env,
    id: u32,
    epoch: u32,
    from: f64,
    max: u32,
    with_values: Option<bool>,
    with_expiry: Option<bool>,
) -> Result<Raw> {
    let env = env.raw();
    let with_values = with_values.unwrap_or(true);
    let mut entries: Vec<(Vec<u8>, Vec<u8>, u64)> = Vec::new();
    let (epoch, next) = with(env, id, |att| {
        entries.clear();
        att.run(env, |store, _| {
            entries.clear();
            store.scan_entries(epoch, from as u64, max as usize, with_values, |k, v, e| {
                entries.push((k.to_vec(), v.to_vec(), e))
            })
        })
    })?;
    let values_len = if with_values { entries.len() } else { 0 };
    let (mut keys, mut values, mut out) = (ptr::null_mut(), ptr::null_mut(), ptr::null_mut());
    // SAFETY: plain Node-API object/array/buffer creation on this env.
    unsafe {
        check(
            env,
            sys::napi_create_array_with_length(env, entries.len(), &mut keys),
        )?;
        check(
            env,
            sys::napi_create_array_with_length(env, values_len, &mut values),
        )?;
        for (i, (k, v, _)) in entries.iter().enumerate() {
            let ks = raw::string(env, k)?;
            check(env, sys::napi_set_element(env, keys, i as u32, ks))?;
            if with_values {
                let (mut vb, mut data) = (ptr::null_mut(), ptr::null_mut());
                check(
                    env,
                    sys::napi_create_buffer_copy(
                        env,
                        v.len(),
                        v.as_ptr().cast(),
                        &mut data,
                        &mut vb,
                    ),
                )?;
                check(env, sys::napi_set_element(env, values, i as u32, vb))?;
            }
        }
        check(env, sys::napi_create_object(env, &mut out))?;
        check(
            env,
            sys::napi_set_named_property(
                env,
                out,
                c"epoch".as_ptr(),
                raw::number(env, epoch as f64)?,
            ),
        )?;
        let next = next.map_or(-1.0, |n| n as f64);
        check(
            env,
            sys::napi_set_named_property(env, out, c"next".as_ptr(), raw::number(env, next)?),
        )?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"keys".as_ptr(), keys),
        )?;
        check(
            env,
            sys::napi_set_named_property(env, out, c"values".as_ptr(), values),
        )?;
        if with_expiry == Some(true) {
            let mut expires = ptr::null_mut();
            check(
                env,
                sys::napi_create_array_with_length(env, entries.len(), &mut expires),
            )?;
            for (i, (_, _, e)) in entries.iter().enumerate() {
                let n = raw::number(env, *e as f64)?;
                check(env, sys::napi_set_element(env, expires, i as u32, n))?;
            }
            check(
                env,
                sys::napi_set_named_property(env, out, c"expires".as_ptr(), expires),
            )?;
        }
    }
    Ok(Raw(out))
}

#[napi]
pub fn delete(env: Env, id: u32, key: String) -> Result<bool> {
    let env = env.raw();
    with(env, id, |att| {
        att.run(env, |store, _| store.delete(key.as_bytes()))
    })
}

/// `get` with the Rust codec: decodes natively and builds the JS value.
#[napi(js_name = "getValue")]
pub fn get_value(env: Env, id: u32, key: String) -> Result<Raw> {
    let env = env.raw();
    // Copy out first: building the value may run user JS (e.g. a patched Map.prototype.set).
    let bytes = with(env, id, |att| {
        let found = att.run(env, |store, buf| store.get(key.as_bytes(), buf))?;
        if let Some(v) = found {
            att.visited(env, v)?;
        }
        Ok(found.map(|_| att.buf.clone()))
    })?;
    match bytes {
        None => raw::undefined(env).map(Raw),
        Some(bytes) => convert::decode_to_js(env, &bytes).map(Raw),
    }
}

/// `set` with the Rust codec: walks the JS value natively and encodes it.
#[napi(js_name = "setValue")]
pub fn set_value(
    env: Env,
    id: u32,
    key: String,
    value: Raw,
    mode: u32,
    reserve: u32,
    expires_at: f64,
) -> Result<()> {
    let env = env.raw();
    // Encode first: walking the value runs user getters, which may use the store.
    let bytes = convert::encode_from_js(env, value.0)?;
    let opts = set_options(mode, reserve, expires_at);
    with(env, id, |att| {
        att.flush_visits(env)?;
        att.run(env, |store, _| {
            store.set_with(key.as_bytes(), &bytes, &opts)
        })
    })
}

#[napi]
pub fn stats(env: Env, id: u32) -> Result<Raw> {
    let env = env.raw();
    let stats = with(env, id, |att| att.run(env, |store, _| store.stats()))?;
    let json = serde_json::to_value(stats).map_err(|e| Error::from_reason(e.to_string()))?;
    convert::json_to_js(env, &json).map(Raw)
}

/// The integrity check (`store.check()`): counts, or a "store memory is corrupted" error.
#[napi(js_name = "check")]
pub fn check_store(env: Env, id: u32) -> Result<Raw> {
    let env = env.raw();
    let report = with(env, id, |att| att.run(env, |store, _| store.check()))?;
    let json = serde_json::to_value(report).map_err(|e| Error::from_reason(e.to_string()))?;
    convert::json_to_js(env, &json).map(Raw)
}

impl Attached {
    /// Notes a hit of the native codec's get for eviction; marks a batch at a time.
    fn visited(&mut self, env: sys::napi_env, v: crate::store::Version) -> Result<()> {
        if !self.store.limits.evict
            || self.store.read_only
            || v.seq & crate::layout::SEQ_VISITED == crate::layout::SEQ_VISITED
        {
            return Ok(());
        }
        self.visits.push((v.seq_offset, v.seq));
        if self.visits.len() >= 128 {
            self.flush_visits(env)?;
        }
        Ok(())
    }

    /// Hands the marks held here to the core: at 128, before this thread's sets (whose
    /// evictions they should steer), with the JS marks, and at `close()`.
    fn flush_visits(&mut self, env: sys::napi_env) -> Result<()> {
        if self.visits.is_empty() {
            return Ok(());
        }
        let seen = std::mem::take(&mut self.visits);
        self.run(env, |store, _| store.mark_visited(&seen))
            .map(drop)
    }

    /// Runs a core operation, growing the buffer or catching up with growth done by another
    /// thread as the core asks, and turning core errors into JS exceptions.
    fn run<T>(
        &mut self,
        env: sys::napi_env,
        mut op: impl FnMut(&Store, &mut Vec<u8>) -> std::result::Result<T, CoreError>,
    ) -> Result<T> {
        for _ in 0..16 {
            let result = op(&self.store, &mut self.buf);
            // Watchers in Atomics.waitAsync this operation's writes found asleep (also when it
            // failed after some writes, such as evictions): `with` wakes them.
            self.notify |= self.store.take_js_sleepers();
            match result {
                Ok(v) => return Ok(v),
                Err(CoreError::NeedGrow { needed }) => self.grow(env, needed)?,
                // Another thread may have grown the buffer: catch up and retry. Out of bounds
                // at a length that did not change is corruption.
                Err(e @ CoreError::OutOfBounds { .. }) => {
                    let before = self.store.region().len();
                    if self.refresh(env)? == before {
                        return Err(throw(env, &e));
                    }
                }
                Err(e) => return Err(throw(env, &e)),
            }
        }
        Err(throw(
            env,
            &CoreError::corrupted(
                "operation kept asking for more memory or catching up with growth",
            ),
        ))
    }

    /// Re-reads the buffer's current length from our view.
    fn refresh(&mut self, env: sys::napi_env) -> Result<u64> {
        let Some(view) = self.view else {
            return Ok(self.store.region().len());
        };
        let view = raw::deref(env, view)?;
        let (base, len) = view_info(env, view)?;
        if base != self.base {
            return Err(throw(env, &CoreError::corrupted("the buffer moved")));
        }
        // SAFETY: V8 reports `len` valid bytes at the unchanged base.
        unsafe { self.store.set_region_len(len) };
        Ok(len as u64)
    }

    /// Grows the buffer to at least `needed` bytes (doubling, capped at maxByteLength).
    fn grow(&mut self, env: sys::napi_env, needed: u64) -> Result<()> {
        if needed > self.max {
            return Err(throw(
                env,
                &CoreError::Full {
                    needed,
                    max: self.max,
                },
            ));
        }
        let len = self.refresh(env)?;
        if len >= needed {
            return Ok(()); // another thread grew it
        }
        let target = needed.max(len * 2).max(len + GROW_STEP).min(self.max);
        let sab = raw::deref(env, self.sab)?;
        // Another thread may grow it concurrently; `grow` then throws if we ask for less than
        // it now has, which the refresh below settles.
        raw::call_method(env, sab, c"grow", &[raw::number(env, target as f64)?])
            .or_else(|_| raw::clear_exception(env))?;
        if self.refresh(env)? < needed {
            return Err(throw(
                env,
                &CoreError::Full {
                    needed,
                    max: self.max,
                },
            ));
        }
        Ok(())
    }
}

/// Marks entries read (`store.get` hits), given as `n` pairs (SEQ word offset, SEQ) in
/// `pairs` (a Uint32Array): see evict.rs.
#[napi(js_name = "markVisited")]
pub fn mark_visited(env: Env, id: u32, pairs: Raw, n: u32) -> Result<bool> {
    let env = env.raw();
    // SAFETY: the caller's Uint32Array outlives this call; it is copied at once.
    let words = unsafe { words_of(env, pairs.0)? };
    let seen: Vec<(u64, u32)> = words
        .chunks_exact(2)
        .take(n as usize)
        .map(|p| (p[0] as u64, p[1]))
        .collect();
    with(env, id, |att| {
        // With the marks the native get holds (reads past the JS window, or of the native
        // codec): handed over at the same moments as this thread's JS marks.
        let mut seen = seen;
        seen.append(&mut att.visits);
        att.run(env, |store, _| store.mark_visited(&seen))
    })
}

/// One read in `helpEvery` of `lib/reader.js` that found the index growing helps it on:
/// see `Store::read_during_growth`.
#[napi(js_name = "helpGrowth")]
pub fn help_growth(env: Env, id: u32) -> Result<()> {
    let env = env.raw();
    with(env, id, |att| att.run(env, |store, _| store.help_growth()))
}

/// The store's settings fixed at creation: `{ evict, maxEntries, maxBytes, expectedKeys }`.
#[napi(js_name = "limits")]
pub fn limits_of(env: Env, id: u32) -> Result<Raw> {
    let env = env.raw();
    let l = with(env, id, |att| Ok(att.store.limits))?;
    let json = serde_json::json!({ "evict": l.evict, "maxEntries": l.max_entries, "maxBytes": l.max_bytes, "expectedKeys": l.expected_keys });
    convert::json_to_js(env, &json).map(Raw)
}

/// Writes a store file's changes to its disk (`store.flush()`); a no-op for memory that is
/// not a file.
#[napi]
pub fn flush(env: Env, id: u32) -> Result<()> {
    let env = env.raw();
    with(env, id, |att| {
        let len = att.store.region().len() as usize;
        // SAFETY: base/len describe this attachment's live mapping (or buffer).
        unsafe { crate::memory::flush(att.base, len) }.map_err(|e| throw(env, &e))
    })
}

/// Encodes a JS value with the Rust codec (used to check both codecs write the same bytes).
#[napi]
pub fn encode(env: Env, value: Raw) -> Result<Buffer> {
    convert::encode_from_js(env.raw(), value.0).map(Buffer::from)
}

/// Decodes bytes with the Rust codec into a JS value.
#[napi]
pub fn decode(env: Env, bytes: Raw) -> Result<Raw> {
    let env = env.raw();
    // SAFETY: the caller's Uint8Array outlives this call.
    let bytes = unsafe { bytes_of(env, bytes.0)? };
    convert::decode_to_js(env, bytes).map(Raw)
}
