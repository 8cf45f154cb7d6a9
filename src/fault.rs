//! A fault in a store file's mapping is caught, never fatal.
//!
//! Space is reserved before the store uses it (reserve.rs), so a full file system does not
//! fault. What remains is a file another process truncated under us (`: > file`, a cleanup
//! script): the kernel then raises SIGBUS at the next touch of a page past the new end, in
//! whatever thread touches it, in the middle of any read or write, native or JS.
//!
//! This module's SIGBUS handler looks the faulting address up in a table of the store files
//! this process maps. Inside one, it replaces the lost range (from the file's new end, rounded
//! to a page, to the end of the mapping) with private zero pages, so the faulting instruction
//! completes, and marks that mapping lost. Every operation on the store then ends in
//! ERR_KV_LOST (the binding checks [`lost`] after every call, and the JS reader reads the same
//! flags through [`flags`] after every read). Any other address goes on to the handler that was
//! there before ours (Node's, V8's, or the default action, which ends the process as if we had
//! never been there).
//!
//! The table is lock-free for the handler: slots are written once (len and fd, then state
//! LIVE with Release) and only ever go LIVE → DEAD, and a mapping is marked DEAD before it is
//! unmapped. So the handler never acts on an address that is not a store mapping's now, and
//! never replaces memory outside one. Slot 0 is never used: a store in memory has slot 0, whose
//! flag stays 0. `tests/loom.rs` models the table.

use crate::sync::{AtomicU32, AtomicU64, AtomicUsize};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

/// Store files one process can map in its lifetime (the binding keeps each for good).
pub const SLOTS: usize = 1024;

const FREE: u32 = 0;
const LIVE: u32 = 1;
const DEAD: u32 = 2;

pub struct Slot {
    state: AtomicU32,
    base: AtomicUsize,
    len: AtomicUsize,
    fd: AtomicU32,
    /// The file's size the handler found at the fault (what the error names).
    size_found: AtomicU64,
}

pub struct Table {
    slots: Box<[Slot]>,
    /// Slots handed out so far (the handler scans `1..next`).
    next: AtomicUsize,
    /// One word per slot, non-zero once the mapping is lost: what JS reads.
    lost: Box<[AtomicU32]>,
}

impl Table {
    pub fn new(n: usize) -> Table {
        let slot = |_| Slot {
            state: AtomicU32::new(FREE),
            base: AtomicUsize::new(0),
            len: AtomicUsize::new(0),
            fd: AtomicU32::new(0),
            size_found: AtomicU64::new(0),
        };
        Table {
            slots: (0..n).map(slot).collect(),
            next: AtomicUsize::new(1),
            lost: (0..n).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    /// Enters a mapping; its slot, or 0 when the table is full (the mapping then goes
    /// unprotected, as every mapped file does).
    pub fn register(&self, base: usize, len: usize, fd: u32) -> usize {
        let i = self.next.fetch_add(1, Relaxed);
        let Some(s) = self.slots.get(i) else {
            self.next.fetch_sub(1, Relaxed);
            return 0;
        };
        s.base.store(base, Relaxed);
        s.len.store(len, Relaxed);
        s.fd.store(fd, Relaxed);
        // Published: a handler that sees LIVE sees the fields above.
        s.state.store(LIVE, Release);
        i
    }

    /// The mapping at `base` is about to be unmapped: the handler must not touch it again.
    /// Returns its descriptor, which the handler no longer uses.
    pub fn unregister(&self, base: usize) -> Option<u32> {
        for s in self.slots.iter().take(self.next.load(Acquire)).skip(1) {
            if s.state.load(Acquire) == LIVE && s.base.load(Relaxed) == base {
                s.state.store(DEAD, Release);
                return Some(s.fd.load(Relaxed));
            }
        }
        None
    }

    /// The live slot of the mapping at `base` (0 if none).
    pub fn slot_of(&self, base: usize) -> usize {
        let n = self.next.load(Acquire).min(self.slots.len());
        (1..n)
            .rev()
            .find(|&i| {
                let s = &self.slots[i];
                s.state.load(Acquire) == LIVE && s.base.load(Relaxed) == base
            })
            .unwrap_or(0)
    }

    /// The live mapping containing `addr`: (slot, base, len, fd). Async-signal-safe.
    pub fn find(&self, addr: usize) -> Option<(usize, usize, usize, u32)> {
        let n = self.next.load(Acquire).min(self.slots.len());
        for i in 1..n {
            let s = &self.slots[i];
            if s.state.load(Acquire) != LIVE {
                continue;
            }
            let (base, len) = (s.base.load(Relaxed), s.len.load(Relaxed));
            if addr >= base && addr - base < len {
                return Some((i, base, len, s.fd.load(Relaxed)));
            }
        }
        None
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
        let slot = table().register(base, len, fd as u32);
        if slot == 0 {
            // SAFETY: our own descriptor, not stored anywhere.
            unsafe { libc::close(fd) };
        } else {
            PATHS.lock().push((slot, path.to_string()));
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
        let message = if size < len {
            format!(
                "store file '{path}' was truncated to {size} bytes under this process (the store is {len} bytes long): what it held past {size} bytes is lost. Delete the file and open the store again"
            )
        } else {
            format!(
                "store file '{path}' ({size} bytes) could not supply a page this process touched (its file system refused it): the store is no longer usable here. Free space, then open the store again"
            )
        };
        Some(Error::Lost(message))
    }

    /// The lost flags, one u32 per slot, for the JS reader (an external ArrayBuffer over them).
    pub fn flags() -> (*mut u8, usize) {
        let t = table();
        (t.lost.as_ptr() as *mut u8, t.lost.len() * 4)
    }

    /// Test hook: marks the mapping at `base` lost as a fault in it would, without one.
    pub fn mark_lost_for_test(base: usize, size: u64) {
        let t = table();
        let i = t.slot_of(base);
        if i != 0 {
            t.mark_lost(i, size);
        }
    }

    /// Installs the handler, once, and again if something replaced it since (it then chains to
    /// that one).
    fn install() {
        // SAFETY: sigaction with a null new action only reads the current one into `cur`.
        let mut cur: libc::sigaction = unsafe { std::mem::zeroed() };
        if unsafe { libc::sigaction(libc::SIGBUS, ptr::null(), &mut cur) } != 0 {
            return;
        }
        if cur.sa_sigaction == on_sigbus as *const () as usize {
            return;
        }
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
        let mut before: libc::sigaction = unsafe { std::mem::zeroed() };
        // SAFETY: valid action and out-pointer. Set before publishing `before`: a fault in
        // between finds PREVIOUS null and gets the default action, which is what it got anyway.
        if unsafe { libc::sigaction(libc::SIGBUS, &ours, &mut before) } == 0 {
            // Leaked on purpose: the handler may read it at any moment from now on.
            PREVIOUS.store(Box::into_raw(Box::new(before)), Release);
        }
    }

    extern "C" fn on_sigbus(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
        // SAFETY: the kernel passes a valid siginfo for an SA_SIGINFO handler.
        let (code, addr) = unsafe { ((*info).si_code, (*info).si_addr() as usize) };
        let errno = errno();
        // Only a fault the kernel raised names an address (`kill -BUS` sends si_code <= 0,
        // and what sits where si_addr would be is a pid and a uid).
        if let Some(t) = TABLE.get().filter(|_| code > 0) {
            if let Some((i, base, len, fd)) = t.find(addr) {
                if replace(t, i, addr, base, len, fd) {
                    set_errno(errno);
                    return;
                }
            }
        }
        set_errno(errno);
        chain(sig, info, ctx);
    }

    /// Replaces the lost part of mapping `i` with zero pages. Async-signal-safe: fstat and
    /// mmap are plain system calls (mmap is not on POSIX's list, but it takes no user-space
    /// lock in glibc or musl), and nothing here allocates or locks.
    fn replace(t: &Table, i: usize, addr: usize, base: usize, len: usize, fd: u32) -> bool {
        let page = PAGE.load(Relaxed);
        // SAFETY: fstat fills a plain struct for a descriptor (a closed one fails: EBADF).
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        let size = if unsafe { libc::fstat(fd as i32, &mut st) } == 0 {
            st.st_size.max(0) as u64
        } else {
            0
        };
        let fault_page = addr & !(page - 1);
        // Truncated: everything past the new end is gone (later touches need no more faults).
        // Not truncated (a page the file system refused): that page only.
        let (from, to) = if (size as usize) < len {
            let cut = base + (size as usize).div_ceil(page) * page;
            (cut.min(fault_page), base + len)
        } else {
            (fault_page, (fault_page + page).min(base + len))
        };
        t.mark_lost(i, size);
        // SAFETY: [from, to) lies inside mapping `i`, which is live (a mapping is marked DEAD
        // before it is unmapped), so this replaces only the store's own lost pages.
        let p = unsafe {
            libc::mmap(
                from as *mut libc::c_void,
                to - from,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_FIXED,
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
        match prev {
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
