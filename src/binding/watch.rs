//! `store.watch()` and `store.waitFor()` in JS (lib/watch.js): registering a watching thread,
//! reading the change log, and waking the watcher when records arrive (see changelog.rs).
//!
//! - A SharedArrayBuffer store: the watcher sleeps in `Atomics.waitAsync` on the log's signal
//!   word; a write that found it asleep wakes it with `Atomics.notify`, from the writing
//!   thread (`Attached::notify_watchers`, after the operation).
//! - A named store or store file (memory wrapped in an external ArrayBuffer, which
//!   `Atomics.waitAsync` refuses): a native waiter thread sleeps on the signal word as a futex,
//!   which writers of any process wake, and calls the watcher's JS through a thread-safe
//!   function. It waits for the JS side to read (`watchAck`) before it sleeps again, so a busy
//!   writer wakes it once per batch.
//!
//! A registration ends with `watchClose`, with the store's `close()` (`detach`), or when its
//! thread exits or is terminated (an env cleanup hook, which also stops the waiter thread
//! before Node-API tears the thread-safe function down).

use std::cell::RefCell;
use std::ptr;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use napi::bindgen_prelude::*;
use napi::sys;
use napi_derive::napi;

use super::raw::{self, check, Raw};
use super::{with, ATTACHED};
use crate::layout::SLEEP_FUTEX;
use crate::region::Region;
use crate::store::Store;

/// How long a waiter thread sleeps before it looks at its stop flag by itself (closing wakes
/// it at once; this bounds a missed wake).
const WAITER_NAP: Duration = Duration::from_millis(500);

/// One watching registration of this thread.
struct Watching {
    id: u32,
    slot: u32,
    waiter: Option<Waiter>,
}

/// A native waiter thread and what it shares with the JS thread.
struct Waiter {
    shared: Arc<WaiterState>,
    thread: Option<JoinHandle<()>>,
    tsfn: Tsfn,
    memory: (*mut u8, usize),
}

struct WaiterState {
    stop: AtomicBool,
    /// The JS side was called and has not read yet: do not call it again, do not sleep.
    pending: AtomicBool,
    /// Where the JS side's reading got to (the log position it read up to).
    cursor: AtomicU64,
}

/// A thread-safe function handle, moved to the waiter thread.
#[derive(Clone, Copy)]
struct Tsfn(sys::napi_threadsafe_function);
// SAFETY: Node-API thread-safe functions are made to be called from any thread.
unsafe impl Send for Tsfn {}

/// The store memory's base and length, moved to the waiter thread.
struct Memory(*mut u8, usize);
// SAFETY: named stores' and store files' memory is never unmapped while the process runs
// (named.rs keeps every mapping in its registry), and the store only touches it atomically.
unsafe impl Send for Memory {}

// Boxed: each registration's env cleanup hook holds a pointer to it, which must not move.
#[allow(clippy::vec_box)]
type Registrations = Vec<Box<Watching>>;

thread_local! {
    /// This thread's registrations.
    static WATCHING: RefCell<Registrations> = const { RefCell::new(Vec::new()) };
}

/// Registers this thread as a watcher of store `id`: `{ slot, cursor, signalIndex, native }`.
/// `cursor`: where its reading starts (writes after this call); `signalIndex`: the Int32Array
/// index of the word to `Atomics.waitAsync` on; `native`: the memory is not a
/// SharedArrayBuffer, so call `watchWaiter` to be woken.
#[napi(js_name = "watchOpen")]
pub fn watch_open(env: Env, id: u32) -> Result<Raw> {
    let env = env.raw();
    let (reg, native) = with(env, id, |att| {
        let reg = att.run(env, |store, _| store.watch_register())?;
        Ok((reg, !att.is_sab))
    })?;
    let mut watching = Box::new(Watching {
        id,
        slot: reg.slot,
        waiter: None,
    });
    let arg: *mut Watching = &mut *watching;
    // SAFETY: `arg` points into the Box kept in WATCHING until the hook is removed (close)
    // or has run (thread exit); the hook runs on this thread.
    check(env, unsafe {
        sys::napi_add_env_cleanup_hook(env, Some(thread_exits), arg.cast())
    })?;
    WATCHING.with(|w| w.borrow_mut().push(watching));
    let json = serde_json::json!({
        "slot": reg.slot,
        "cursor": reg.cursor as f64,
        "signalIndex": reg.signal_offset / 4,
        "native": native,
    });
    super::convert::json_to_js(env, &json).map(Raw)
}

/// Ends registration `slot` of store `id` (stops its waiter thread); false if it was not open.
#[napi(js_name = "watchClose")]
pub fn watch_close(env: Env, id: u32, slot: u32) -> Result<bool> {
    let env = env.raw();
    let Some(mut watching) = take(|w| w.id == id && w.slot == slot).pop() else {
        return Ok(false);
    };
    let arg: *mut Watching = &mut *watching;
    // SAFETY: the hook registered in watch_open with this same pointer.
    unsafe { sys::napi_remove_env_cleanup_hook(env, Some(thread_exits), arg.cast()) };
    if let Some(waiter) = watching.waiter.take() {
        let tsfn = waiter.tsfn;
        stop(waiter);
        release_tsfn(tsfn);
    }
    // A lost store's registration went with its pages: nothing to give back.
    if super::is_lost(id) {
        return Ok(true);
    }
    let result = with(env, id, |att| {
        att.run(env, |store, _| store.watch_unregister(slot))
    });
    if result.is_err() {
        // Not given back (the writer lock timed out, or corrupted memory): kept, so that the
        // store's close() or the thread's exit tries again; meanwhile writes are logged.
        // SAFETY: as in watch_open; the Box goes back into WATCHING.
        unsafe { sys::napi_add_env_cleanup_hook(env, Some(thread_exits), arg.cast()) };
        WATCHING.with(|w| w.borrow_mut().push(watching));
    }
    result
}

fn release_tsfn(tsfn: Tsfn) {
    // SAFETY: the waiter thread is joined (or never started): this was the function's last
    // user.
    unsafe {
        sys::napi_release_threadsafe_function(tsfn.0, sys::ThreadsafeFunctionReleaseMode::release)
    };
}

/// Ends every registration of store `id` in this thread (its attachment is released).
pub fn close_all_in(env: sys::napi_env, id: u32) {
    let slots: Vec<u32> = WATCHING
        .try_with(|w| {
            w.borrow()
                .iter()
                .filter(|w| w.id == id)
                .map(|w| w.slot)
                .collect()
        })
        .unwrap_or_default();
    for slot in slots {
        let _ = watch_close(Env::from_raw(env), id, slot);
    }
}

/// Removes and returns this thread's registrations matching `f`.
fn take(f: impl Fn(&Watching) -> bool) -> Registrations {
    WATCHING
        .try_with(|w| {
            let mut w = w.borrow_mut();
            let (taken, kept) = std::mem::take(&mut *w).into_iter().partition(|x| f(x));
            *w = kept;
            taken
        })
        .unwrap_or_default()
}

/// Env cleanup hook of one registration: its thread exits or is terminated.
///
/// # Safety
/// Called by Node-API on the registering thread with the pointer given in watch_open.
unsafe extern "C" fn thread_exits(arg: *mut std::ffi::c_void) {
    let target = arg as *const Watching;
    let Some(mut watching) = take(|w| ptr::eq(w, target)).pop() else {
        return;
    };
    // Stopped and joined before Node-API closes the thread-safe function (this hook was added
    // again after the function was made, see watch_waiter); not released: the env's teardown
    // finalizes it.
    if let Some(waiter) = watching.waiter.take() {
        stop(waiter);
    }
    let _ = ATTACHED.try_with(|a| {
        let Ok(a) = a.try_borrow() else { return };
        if let Some(att) = a.get(watching.id as usize).and_then(Option::as_ref) {
            // A lost store's registration went with its pages (fault.rs).
            if att.store.region().lost().is_ok() {
                let _ = att.store.watch_unregister(watching.slot);
            }
        }
    });
}

fn stop(mut waiter: Waiter) {
    waiter.shared.stop.store(true, Release);
    if let Some(thread) = waiter.thread.take() {
        thread.thread().unpark();
        let (base, len) = waiter.memory;
        // SAFETY: see `Memory`.
        let region = unsafe { Region::new(base, len) };
        if let Some(store) = Store::attach(region)
            .ok()
            .filter(|s| s.region().lost().is_ok())
        {
            // Moves the signal and wakes its futex sleepers: this waiter finds its stop flag
            // even if it was about to sleep; the others look again and sleep again.
            let _ = store.poke_waiters();
        }
        let _ = thread.join();
    }
}

/// Starts the native waiter of registration `slot` of store `id`: `callback()` runs in this
/// thread whenever records may be waiting; call `watchAck` once they are read.
#[napi(js_name = "watchWaiter")]
pub fn watch_waiter(env: Env, id: u32, slot: u32, cursor: f64, callback: Raw) -> Result<()> {
    let env = env.raw();
    let (base, len) = with(env, id, |att| {
        Ok((att.base, att.store.region().len() as usize))
    })?;
    let mut name = ptr::null_mut();
    let mut tsfn = ptr::null_mut();
    // SAFETY: plain Node-API calls on this env; `call_js` matches the expected signature.
    unsafe {
        check(
            env,
            sys::napi_create_string_utf8(env, c"shared-kv-store watch".as_ptr(), -1, &mut name),
        )?;
        check(
            env,
            sys::napi_create_threadsafe_function(
                env,
                callback.0,
                ptr::null_mut(),
                name,
                0,
                1,
                ptr::null_mut(),
                None,
                ptr::null_mut(),
                Some(call_js),
                &mut tsfn,
            ),
        )?;
        // The watcher's own ref()/unref() (a timer in lib/watch.js) decides whether it keeps
        // the thread alive.
        check(env, sys::napi_unref_threadsafe_function(env, tsfn))?;
    }
    let tsfn = Tsfn(tsfn);
    // The registration's cleanup hook again, now after the thread-safe function's own: hooks
    // run last added first, so at the thread's exit the waiter is stopped and joined before
    // Node-API closes the function it calls.
    let arg = WATCHING.with(|w| {
        w.borrow_mut()
            .iter_mut()
            .find(|w| w.id == id && w.slot == slot)
            .map(|w| &mut **w as *mut Watching)
    });
    if let Some(arg) = arg {
        // SAFETY: the same hook and pointer as registered in watch_open (still in WATCHING).
        unsafe {
            sys::napi_remove_env_cleanup_hook(env, Some(thread_exits), arg.cast());
            check(
                env,
                sys::napi_add_env_cleanup_hook(env, Some(thread_exits), arg.cast()),
            )?;
        }
    }
    let shared = Arc::new(WaiterState {
        stop: AtomicBool::new(false),
        pending: AtomicBool::new(false),
        cursor: AtomicU64::new(cursor as u64),
    });
    let memory = Memory(base, len);
    let state = shared.clone();
    let thread = match std::thread::Builder::new()
        .name("skv-watch".into())
        .spawn(move || wait_loop(memory, state, tsfn))
    {
        Ok(thread) => thread,
        Err(e) => {
            release_tsfn(tsfn);
            return Err(Error::from_reason(format!(
                "cannot start the watch thread: {e}"
            )));
        }
    };
    let waiter = Waiter {
        shared,
        thread: Some(thread),
        tsfn,
        memory: (base, len),
    };
    WATCHING.with(|w| {
        match w
            .borrow_mut()
            .iter_mut()
            .find(|w| w.id == id && w.slot == slot)
        {
            Some(watching) => {
                watching.waiter = Some(waiter);
                Ok(())
            }
            None => {
                stop(waiter);
                release_tsfn(tsfn);
                Err(Error::from_reason("watchWaiter: no such registration"))
            }
        }
    })
}

/// The native waiter's JS side read up to `cursor`: the waiter may sleep again.
#[napi(js_name = "watchAck")]
pub fn watch_ack(id: u32, slot: u32, cursor: f64) {
    let _ = WATCHING.try_with(|w| {
        if let Some(waiter) = w
            .borrow()
            .iter()
            .find(|w| w.id == id && w.slot == slot)
            .and_then(|w| w.waiter.as_ref())
        {
            waiter.shared.cursor.store(cursor as u64, Relaxed);
            waiter.shared.pending.store(false, Release);
            if let Some(t) = &waiter.thread {
                t.thread().unpark();
            }
        }
    });
}

fn wait_loop(memory: Memory, state: Arc<WaiterState>, tsfn: Tsfn) {
    // SAFETY: see `Memory`.
    let Ok(store) = Store::attach(unsafe { Region::new(memory.0, memory.1) }) else {
        // Lost (or corrupted) before this thread began: the JS side's read tells which.
        call_back(&tsfn);
        return;
    };
    while !state.stop.load(Acquire) {
        if store.region().lost().is_err() {
            // Truncated under us (fault.rs): the JS side's next read reports ERR_KV_LOST.
            call_back(&tsfn);
            return;
        }
        if state.pending.load(Acquire) {
            std::thread::park_timeout(WAITER_NAP);
            continue;
        }
        match store.arm_sleep(SLEEP_FUTEX, state.cursor.load(Relaxed)) {
            Ok(None) => {
                state.pending.store(true, Release);
                if !call_back(&tsfn) {
                    return; // closing: the thread's env is going away
                }
            }
            Ok(Some(signal)) => {
                let _ = store.wait_changes(signal, WAITER_NAP);
            }
            // Corrupted memory: do not spin on it; the JS side's reads report the error.
            Err(_) => std::thread::park_timeout(WAITER_NAP),
        }
    }
}

/// Queues a call of the watcher's JS callback on its thread; false if the function is closing.
fn call_back(tsfn: &Tsfn) -> bool {
    // SAFETY: the function lives until this waiter thread is joined (see thread_exits).
    let status = unsafe {
        sys::napi_call_threadsafe_function(
            tsfn.0,
            ptr::null_mut(),
            sys::ThreadsafeFunctionCallMode::nonblocking,
        )
    };
    status == sys::Status::napi_ok
}

/// Calls the watcher's JS callback (on its thread).
///
/// # Safety
/// Called by Node-API with the callback the function was made with; `env` is null while
/// the function is torn down.
unsafe extern "C" fn call_js(
    env: sys::napi_env,
    callback: sys::napi_value,
    _context: *mut std::ffi::c_void,
    _data: *mut std::ffi::c_void,
) {
    if env.is_null() || callback.is_null() {
        return;
    }
    let mut undefined = ptr::null_mut();
    let mut result = ptr::null_mut();
    // SAFETY: valid env and callback; an exception it throws stays pending for Node to report.
    unsafe {
        sys::napi_get_undefined(env, &mut undefined);
        sys::napi_call_function(env, undefined, callback, 0, ptr::null(), &mut result);
    }
}

/// Reads at most `max` records of store `id` from `cursor`: `[next, overflow, event, key, position,
/// event, key, position, ...]` (events by name; clear and overflow records have an undefined
/// key; a record's position is its place in the log, as `watchHead` counts).
#[napi(js_name = "watchRead")]
pub fn watch_read(env: Env, id: u32, cursor: f64, max: u32) -> Result<Raw> {
    let env = env.raw();
    let mut records: Vec<(&'static str, Vec<u8>, u64)> = Vec::new();
    let outcome = with(env, id, |att| {
        let mut buf = std::mem::take(&mut att.buf);
        let result = att.run(env, |store, _| {
            records.clear();
            store.read_changes_max(cursor as u64, max as usize, &mut buf, |event, key, pos| {
                records.push((event.name(), key.to_vec(), pos))
            })
        });
        att.buf = buf;
        result
    })?;
    let mut out = ptr::null_mut();
    // SAFETY: plain Node-API array and string creation on this env.
    unsafe {
        check(
            env,
            sys::napi_create_array_with_length(env, 2 + 3 * records.len(), &mut out),
        )?;
        check(
            env,
            sys::napi_set_element(env, out, 0, raw::number(env, outcome.next as f64)?),
        )?;
        let mut flag = ptr::null_mut();
        check(env, sys::napi_get_boolean(env, outcome.overflow, &mut flag))?;
        check(env, sys::napi_set_element(env, out, 1, flag))?;
        let mut i = 2;
        for (event, key, pos) in &records {
            let e = raw::string(env, event.as_bytes())?;
            let k = if key.is_empty() && matches!(*event, "clear" | "overflow") {
                raw::undefined(env)?
            } else {
                raw::string(env, key)?
            };
            check(env, sys::napi_set_element(env, out, i, e))?;
            check(env, sys::napi_set_element(env, out, i + 1, k))?;
            let p = raw::number(env, *pos as f64)?;
            check(env, sys::napi_set_element(env, out, i + 2, p))?;
            i += 3;
        }
    }
    Ok(Raw(out))
}

/// Before a SharedArrayBuffer watcher that read up to `cursor` sleeps in `Atomics.waitAsync`:
/// marks it asleep and returns the Int32 value to wait on, or null if records came meanwhile.
#[napi(js_name = "watchArm")]
pub fn watch_arm(env: Env, id: u32, cursor: f64) -> Result<Option<i32>> {
    let env = env.raw();
    with(env, id, |att| {
        att.run(env, |store, _| {
            store.arm_sleep(crate::layout::SLEEP_JS, cursor as u64)
        })
    })
    .map(|s| s.map(|s| s as i32))
}

/// The log position the next record of store `id` will have (where a new watcher starts).
#[napi(js_name = "watchHead")]
pub fn watch_head(env: Env, id: u32) -> Result<f64> {
    let env = env.raw();
    with(env, id, |att| att.run(env, |store, _| store.log_head())).map(|h| h as f64)
}

/// Wakes the watchers of store `id` asleep in `Atomics.waitAsync` (a write of this thread found
/// them asleep; futex sleepers were woken by the core when the lock was released). Called
/// with no attachment borrowed. An exception the operation left pending is thrown again after.
pub(super) fn notify_watchers(env: sys::napi_env, id: u32) {
    let mut pending = false;
    // SAFETY: valid env and out-pointer.
    unsafe { sys::napi_is_exception_pending(env, &mut pending) };
    let thrown = if pending {
        raw::clear_exception(env).ok()
    } else {
        None
    };
    if notify(env, id).is_err() {
        let _ = raw::clear_exception(env); // a wake is best effort; the write happened
    }
    if let Some(e) = thrown {
        // SAFETY: rethrowing the value just taken from this env.
        unsafe { sys::napi_throw(env, e) };
    }
}

fn notify(env: sys::napi_env, id: u32) -> Result<()> {
    let found = ATTACHED.with(|a| {
        a.borrow()
            .get(id as usize)
            .and_then(Option::as_ref)
            .filter(|att| att.is_sab)
            .map(|att| (att.i32_view, att.sab, att.store.signal_offset()))
    });
    let Some((view_ref, sab, Ok(Some(signal)))) = found else {
        return Ok(());
    };
    let view = match view_ref {
        Some(r) => raw::deref(env, r)?,
        None => {
            let view = raw::new_instance(
                env,
                raw::global(env, "Int32Array")?,
                &[raw::deref(env, sab)?],
            )?;
            let mut r = ptr::null_mut();
            // SAFETY: a strong reference to a live value of this env, deleted in drop_refs.
            check(env, unsafe {
                sys::napi_create_reference(env, view, 1, &mut r)
            })?;
            ATTACHED.with(|a| {
                match a.borrow_mut().get_mut(id as usize).and_then(Option::as_mut) {
                    Some(att) if att.i32_view.is_none() => att.i32_view = Some(r),
                    // SAFETY: created above on this env, unused elsewhere.
                    _ => unsafe {
                        sys::napi_delete_reference(env, r);
                    },
                }
            });
            view
        }
    };
    let index = raw::number(env, (signal / 4) as f64)?;
    let notify = match NOTIFY.get() {
        Some(r) => raw::deref(env, r)?,
        None => {
            let f = raw::get(env, raw::global(env, "Atomics")?, c"notify")?;
            let mut r = ptr::null_mut();
            // SAFETY: a strong reference to a live function of this env, kept for the thread.
            check(env, unsafe {
                sys::napi_create_reference(env, f, 1, &mut r)
            })?;
            NOTIFY.set(Some(r));
            f
        }
    };
    raw::call(env, raw::undefined(env)?, notify, &[view, index])?;
    Ok(())
}

thread_local! {
    /// `Atomics.notify`, looked up once per thread (a writer may wake watchers often).
    static NOTIFY: std::cell::Cell<Option<sys::napi_ref>> = const { std::cell::Cell::new(None) };
}
