//! A fault in a store file's mapping is caught, never fatal.
//!
//! Space is reserved before the store uses it (reserve.rs), so a full file system does not
//! fault. What remains is a file another process truncated under us (`: > file`, a cleanup
//! script): the kernel then raises SIGBUS at the next touch of a page past the new end, in
//! whatever thread touches it, in the middle of any read or write, native or JS.
//!
//! This module's SIGBUS handler looks the faulting address up in a table of the store files
//! this process maps. Inside one, and past the file's end (fstat), it replaces the lost range
//! (from the new end, rounded up to a page, to the end of the mapping) with private zero pages,
//! so the faulting instruction completes, and marks that mapping lost. Every operation on the
//! store then ends in ERR_KV_LOST (the binding checks [`lost`] before and after every call, and
//! the JS side reads the same flags through [`flags`] after the reads it makes without a
//! native call). Any other fault goes on to the action that was there before ours (Node's,
//! V8's, or the default, which ends the process as if we had never been there): among them a
//! page the file system refused inside the file, since a writer that carried on with zeros
//! there would publish a torn entry; reserve.rs keeps those from happening.
//!
//! Limits: a cut inside a page leaves the rest of that page reading as zeros with no fault (the
//! kernel zero-fills it), so nothing is noticed until an access past it; and a file truncated
//! and grown again before anyone faults reads as zeros, unnoticed.
//!
//! The table is lock-free for the handler. A slot's state word is `generation << 2 | state`;
//! its fields are written before the state turns LIVE (Release), and the handler reads the
//! state, the fields, then the state again, so it acts on one registration's fields, whole. A
//! mapping is marked DEAD before it is unmapped, and its slot is reused (a new generation) only
//! after. Slot 0 is never used: a store in memory has slot 0, whose flag stays 0.
//! `tests/loom.rs` models the table.

use crate::sync::{fence, AtomicU32, AtomicU64, AtomicUsize};
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed, Release, SeqCst};

/// Store files one process can have mapped at once (a slot is reused once its mapping goes).
pub const SLOTS: usize = 1024;

const FREE: u64 = 0;
const LIVE: u64 = 1;
const DEAD: u64 = 2;

pub struct Slot {
    /// `generation << 2 | FREE/LIVE/DEAD`: a reader that sees the same word before and after
    /// reading the fields read one registration's fields, whole.
    state: AtomicU64,
    base: AtomicUsize,
    len: AtomicUsize,
    fd: AtomicU32,
    /// The file's size the handler found at the fault (what the error names).
    size_found: AtomicU64,
    /// Where the pages replaced so far begin (usize::MAX: none): a range is replaced once,
    /// so a thread that wrote to a replaced page never has its write wiped by a second mmap.
    replaced: AtomicUsize,
}

pub struct Table {
    slots: Box<[Slot]>,
    /// Slots handed out so far (the handler scans `1..next`).
    next: AtomicUsize,
    /// One word per slot, non-zero once the mapping is lost: what JS reads.
    lost: Box<[AtomicU32]>,
}

/// A live mapping `find` found: its slot, state word, base, length and descriptor.
pub type Found = (usize, u64, usize, usize, u32);

impl Table {
    pub fn new(n: usize) -> Table {
        let slot = |_| Slot {
            state: AtomicU64::new(FREE),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fd: AtomicU32::new(0),
            size_found: AtomicU64::new(0),
            replaced: AtomicUsize::new(usize::MAX),
        };
        Table {
            slots: (0..n).map(slot).collect(),
            next: AtomicUsize::new(1),
            lost: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Enters a mapping; its slot, or 0 when every slot is live (the mapping then goes
    /// unprotected, as every mapped file does). One registrar at a time (the caller's lock).
    pub fn register(&self, base: usize, len: usize, fd: u32) -> usize {
        let n = self.next.load(Acquire).min(self.slots.len());
        // A slot whose mapping is gone, taken under a new generation; else a new one.
        let reused = (1..n).find_map(|i| {
            let st = self.slots[i].state.load(Acquire);
            (st & 3 == DEAD)
                .then(|| {
                    let next = ((st >> 2) + 1) << 2 | FREE;
                    self.slots[i]
                        .state
                        .compare_exchange(st, next, Relaxed, Relaxed)
                        .ok()
                        .map(|_| (i, next))
                })
                .flatten()
        });
        let (i, free) = match reused {
            Some(r) => r,
            None => {
                let i = self.next.fetch_add(1, Relaxed);
                if i >= self.slots.len() {
                    self.next.fetch_sub(1, Relaxed);
                    return 0;
                }
                (i, FREE)
            }
        };
        let s = &self.slots[i];
        // The state's change (off LIVE) is seen by any handler that sees a field changed.
        fence(Release);
        s.base.store(base, Relaxed);
        s.len.store(len, Relaxed);
        s.fd.store(fd, Relaxed);
        s.size_found.store(0, Relaxed);
        s.replaced.store(usize::MAX, Relaxed);
        self.lost[i].store(0, Relaxed);
        // Published: a handler that sees LIVE sees the fields above.
        s.state.store(free | LIVE, Release);
        i
    }

    /// The mapping at `base` is about to be unmapped: the handler must not touch it again.
    /// Returns its descriptor, which the handler no longer uses.
    pub fn unregister(&self, base: usize) -> Option<u32> {
        for s in self.slots.iter().take(self.next.load(Acquire)).skip(1) {
            let st = s.state.load(Acquire);
            if st & 3 == LIVE && s.base.load(Relaxed) == base {
                s.state.store(st & !3 | DEAD, Release);
                return Some(s.fd.load(Relaxed));
            }
        }
        None
    }

    /// The live slot of the mapping at `base` (0 if none).
    pub fn slot_of(&self, base: usize) -> usize {
        let n = self.next.load(Acquire).min(self.slots.len());
        (1..n)
            .find(|&i| {
                let s = &self.slots[i];
                s.state.load(Acquire) & 3 == LIVE && s.base.load(Relaxed) == base
            })
            .unwrap_or(0)
    }

    /// The live mapping containing `addr`. Async-signal-safe (atomics only).
    pub fn find(&self, addr: usize) -> Option<Found> {
        let n = self.next.load(Acquire).min(self.slots.len());
        for i in 1..n {
            let s = &self.slots[i];
            let st = s.state.load(Acquire);
            if st & 3 != LIVE {
                continue;
            }
            let (base, len, fd) = (
                s.base.load(Relaxed),
                s.len.load(Relaxed),
                s.fd.load(Relaxed),
            );
            // The fields read belong to the registration `st` names, or `st` changed.
            fence(Acquire);
            if s.state.load(Relaxed) != st {
                continue;
            }
            if addr >= base && addr - base < len {
                return Some((i, st, base, len, fd));
            }
        }
        None
    }

    /// Claims the replacement of slot `i`'s pages from `from` on: the end of the range to
    /// replace (what an earlier claim began at, or `end`), or None if `from` is replaced already.
    pub fn claim(&self, i: usize, from: usize, end: usize) -> Option<usize> {
        let r = &self.slots[i].replaced;
        let mut cur = r.load(Acquire);
        loop {
            if from >= cur {
                return None;
            }
            match r.compare_exchange(cur, from, AcqRel, Acquire) {
                Ok(_) => return Some(cur.min(end)),
                Err(now) => cur = now,
            }
        }
    }

    /// Marks slot `i` lost, the file found `size` bytes long. Before the pages are replaced:
    /// whoever reads a replaced page after that sees the flag.
    pub fn mark_lost(&self, i: usize, size: u64) {
        self.slots[i].size_found.store(size, Relaxed);
        self.lost[i].store(1, SeqCst);
    }

    /// Whether slot `i`'s mapping is lost, and the file's size found then.
    pub fn lost(&self, i: usize) -> Option<u64> {
        match self.lost.get(i) {
            Some(flag) if i != 0 && flag.load(SeqCst) != 0 => {
                Some(self.slots[i].size_found.load(Relaxed))
            }
            _ => None,
        }
    }
}

#[cfg(all(unix, not(loom)))]
pub use signal::*;

#[cfg(all(unix, not(loom)))]
mod signal {
    use super::*;
    use crate::error::Error;
    use std::ptr;
    use std::sync::atomic::AtomicPtr;
    use std::sync::OnceLock;

    static TABLE: OnceLock<Table> = OnceLock::new();
    /// The paths of the mappings, by slot (for error messages; never read by the handler).
    static PATHS: parking_lot::Mutex<Vec<(usize, String)>> = parking_lot::const_mutex(Vec::new());
    /// The SIGBUS action that was in place before ours: where other faults go.
    static PREVIOUS: AtomicPtr<libc::sigaction> = AtomicPtr::new(ptr::null_mut());
    static PAGE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(4096);

    fn table() -> &'static Table {
        TABLE.get_or_init(|| Table::new(SLOTS))
    }

    /// Enters the store file mapped at `base` and makes sure the handler is installed. The
    /// table keeps `file` open (the handler asks it for the file's size) until [`unregister`].
    pub(crate) fn register(base: usize, len: usize, file: std::fs::File, path: &str) -> usize {
        use std::os::unix::io::IntoRawFd;
        install();
        let fd = file.into_raw_fd();
        // One registrar at a time (Table::register), and the path goes with its slot.
        let mut paths = PATHS.lock();
        let slot = table().register(base, len, fd as u32);
        if slot == 0 {
            // SAFETY: our own descriptor, not stored anywhere.
            unsafe { libc::close(fd) };
        } else {
            paths.retain(|(s, _)| *s != slot);
            paths.push((slot, path.to_string()));
        }
        slot
    }

    pub(crate) fn unregister(base: usize) {
        if let Some(fd) = TABLE.get().and_then(|t| t.unregister(base)) {
            // SAFETY: the descriptor `register` took; the slot is DEAD, so no handler uses it.
            unsafe { libc::close(fd as i32) };
        }
    }

    pub(crate) fn slot_of(base: usize) -> usize {
        TABLE.get().map_or(0, |t| t.slot_of(base))
    }

    /// ERR_KV_LOST for slot `slot`, if its mapping was lost; `len`: the store's length.
    pub fn lost(slot: usize, len: u64) -> Option<Error> {
        if slot == 0 {
            return None;
        }
        let size = TABLE.get()?.lost(slot)?;
        let path = PATHS
            .lock()
            .iter()
            .find(|(s, _)| *s == slot)
            .map_or_else(String::new, |(_, p)| p.clone());
        let message = format!(
            "store file '{path}' was truncated to {size} bytes under this process (the store is {len} bytes long): what it held past {size} bytes is lost. Delete the file and open the path again"
        );
        Some(Error::Lost(message))
    }

    /// The lost flags, one u32 per slot, for the JS reader (an external ArrayBuffer over them).
    pub fn flags() -> (*mut u8, usize) {
        let t = table();
        (t.lost.as_ptr() as *mut u8, t.lost.len() * 4)
    }

    /// Installs the handler, once per process. Never again: a handler installed after ours
    /// that chains back to ours would otherwise call it, and be called by it, for ever.
    fn install() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: sysconf is safe to call; read here so the handler need not.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
            if page > 0 {
                PAGE.store(page as usize, Relaxed);
            }
            let _ = table();
            // SAFETY: a zeroed sigaction is a valid value; the fields set are the ones used.
            let mut ours: libc::sigaction = unsafe { std::mem::zeroed() };
            ours.sa_sigaction = on_sigbus as *const () as usize;
            ours.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
            // SAFETY: a valid out-pointer to a sigset_t inside `ours`.
            unsafe { libc::sigemptyset(&mut ours.sa_mask) };
            // SAFETY: as above.
            let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
            // SAFETY: valid action and out-pointer. Set before publishing `before`: a fault
            // in between finds PREVIOUS null and gets the default action, as it would anyway.
            if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut before) } == 0 {
                // Leaked on purpose: the handler may read it at any moment from now on.
                PREVIOUS.store(Box::into_raw(Box::new(before)), Release);
            }
        });
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        let errno = errno();
        // Only an access past the end of a mapped file (BUS_ADRERR) names a store's address:
        // `kill -BUS` carries a pid and a uid where si_addr would be.
        if let Some(t) = TABLE.get().filter(|_| is_past_end(code)) {
            if let Some(found) = t.find(addr) {
                if replace(t, addr, found) {
                    set_errno(errno);
                    return;
                }
            }
        }
        set_errno(errno);
        chain(sig, info, ctx);
        set_errno(errno);
    }

    #[cfg(target_os = "linux")]
    fn is_past_end(code: libc::c_int) -> bool {
        code == libc::BUS_ADRERR
    }
    #[cfg(not(target_os = "linux"))]
    fn is_past_end(code: libc::c_int) -> bool {
        code > 0
    }

    /// Replaces the lost part of a truncated store mapping with zero pages; false if the fault
    /// is not past the file's end (a page the file system refused: the writer must not carry
    /// on with a page of zeros its write would then publish, so that fault is not ours).
    /// Async-signal-safe: fstat and mmap are plain system calls (mmap is not on POSIX's list,
    /// but it takes no user-space lock in glibc or musl), and nothing here allocates or locks.
    fn replace(t: &Table, addr: usize, (i, _, base, len, fd): Found) -> bool {
        let page = PAGE.load(Relaxed);
        // SAFETY: fstat fills a plain struct for a descriptor the slot keeps open.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        if unsafe { libc::fstat(fd as i32, &mut st) } != 0 {
            return false;
        }
        let size = st.st_size.max(0) as u64;
        if ((addr - base) as u64) < size {
            return false;
        }
        // Everything past the new end is gone: replaced at once, so later touches need no
        // more faults (the last page's tail past the end reads as zeros without one).
        let from = base + (size as usize).div_ceil(page) * page;
        t.mark_lost(i, size);
        let Some(to) = t.claim(i, from, base + len) else {
            return true; // replaced already (or being replaced: the access is retried)
        };
        // SAFETY: [from, to) lies inside mapping `i`, which is live (a mapping is marked DEAD
        // before it is unmapped), and past the file's end: only the store's lost pages.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
                // NORESERVE: a store larger than RAM and swap must still be replaceable
                // (without it a 64 GiB replacement failed with ENOMEM here).
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        p != libc::MAP_FAILED
    }

    /// Hands a fault that is not ours to the action that was there before.
    fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        let prev = PREVIOUS.load(Acquire);
        // SAFETY: PREVIOUS is null or a leaked, never-freed sigaction.
        let prev = unsafe { prev.as_ref() };
        // SAFETY: as in on_sigbus.
        let sent = unsafe { (*info).si_code } <= 0;
        match prev {
            // A signal someone sent (not a fault) to a process that ignored SIGBUS: ignored.
            Some(p) if p.sa_sigaction == libc::SIG_IGN && sent => {}
            Some(p) if p.sa_sigaction != libc::SIG_DFL && p.sa_sigaction != libc::SIG_IGN => {
                if p.sa_flags & libc::SA_SIGINFO != 0 {
                    // SAFETY: an SA_SIGINFO action's field holds a three-argument handler.
                    let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig, info, ctx);
                } else {
                    // SAFETY: otherwise it holds a one-argument handler.
                    let f: extern "C" fn(libc::c_int) =
                        unsafe { std::mem::transmute(p.sa_sigaction) };
                    f(sig);
                }
            }
            _ => {
                // The default action, as if we had never been installed: restored, and the
                // signal raised again (pending until this handler returns; a real fault would
                // also simply happen again).
                // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask.
                let mut dfl: libc::sigaction = unsafe { std::mem::zeroed() };
                dfl.sa_sigaction = libc::SIG_DFL;
                // SAFETY: plain system calls on valid arguments.
                unsafe {
                    libc::sigaction(sig, &dfl, ptr::null_mut());
                    libc::raise(sig);
                }
            }
        }
    }

    fn errno() -> libc::c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[cfg(target_os = "linux")]
    fn set_errno(v: libc::c_int) {
        // SAFETY: the calling thread's errno.
        unsafe { *libc::__errno_location() = v };
    }
    #[cfg(target_os = "macos")]
    fn set_errno(v: libc::c_int) {
        // SAFETY: the calling thread's errno.
        unsafe { *libc::__error() = v };
    }
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    fn set_errno(_: libc::c_int) {}
}
