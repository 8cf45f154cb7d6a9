//! Who holds the writer lock, and whether that holder is still alive.
//!
//! A store in a file is shared by processes, and a process can be killed (SIGKILL, the OOM
//! killer) at any instruction, also while it holds the writer lock. So the lock word names its
//! holder well enough for a waiter to tell a dead one from a slow one:
//!
//! ```text
//! bits  0-31  pid
//! bits 32-46  the process's start time (clock ticks since boot, low 15 bits): a pid reused by
//!             a later process names someone else
//! bits 47-62  a thread tag, unique among the process's threads (a lock word that claims to be
//!             held by the calling thread is forged)
//! bit  63     PARKED (the lock's: a waiter sleeps)
//! ```
//!
//! A thread cannot die holding the lock on its own: the lock is only held inside one native
//! call, and `worker.terminate()` cannot interrupt native code. So liveness is a question about
//! processes. On Linux it is answered from `/proc/<pid>/stat` (gone, a zombie, or another start
//! time: dead). Where pids say nothing (processes in different pid namespaces, or a system
//! without `/proc`), the answer is `Unknown`, and the lock's lease decides.

use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::{AcqRel, Acquire, Relaxed};

/// Set in the lock word while a waiter sleeps (see `lock.rs`).
pub const PARKED: u64 = 1 << 63;
const START_SHIFT: u32 = 32;
const START_MASK: u64 = 0x7fff;
const THREAD_SHIFT: u32 = 47;
const THREAD_MASK: u64 = 0xffff;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    Alive,
    Dead,
    /// Nothing this process can see tells (another pid namespace, no /proc).
    Unknown,
}

/// This process, as lock words name it.
#[derive(Debug)]
pub struct Process {
    pub pid: u32,
    /// Low 15 bits of the start time (or random bits where the start time is unknown).
    pub start: u64,
    /// The pid namespace's inode (0 where unknown): processes of different namespaces cannot
    /// judge each other by pid.
    pub pid_ns: u64,
}

/// This process, once known (a leaked Box, never freed); null again in a child `fork()` made,
/// which is a process of its own: were it to lock as its parent, a dead child's lock would
/// look held by the live parent (the crash-point tests fork writers).
static ME: AtomicPtr<Process> = AtomicPtr::new(std::ptr::null_mut());

pub fn this_process() -> &'static Process {
    let p = ME.load(Acquire);
    if !p.is_null() {
        // SAFETY: a non-null ME is a leaked Box, valid for the rest of the process.
        return unsafe { &*p };
    }
    #[cfg(all(unix, not(loom)))]
    {
        extern "C" fn forked() {
            ME.store(std::ptr::null_mut(), Relaxed);
        }
        static HOOK: std::sync::Once = std::sync::Once::new();
        // SAFETY: registers a handler that only stores to an atomic, in the child after fork.
        HOOK.call_once(|| unsafe {
            libc::pthread_atfork(None, None, Some(forked));
        });
    }
    let pid = std::process::id();
    let start = proc_stat(pid)
        .map(|(_, ticks)| ticks)
        .unwrap_or_else(random_bits)
        & START_MASK;
    let fresh: &'static Process = Box::leak(Box::new(Process {
        pid,
        start,
        pid_ns: pid_namespace(),
    }));
    match ME.compare_exchange(
        std::ptr::null_mut(),
        fresh as *const Process as *mut Process,
        AcqRel,
        Acquire,
    ) {
        Ok(_) => fresh,
        // Another thread was first (ours leaks: a few bytes, once).
        // SAFETY: as above.
        Err(first) => unsafe { &*first },
    }
}

fn random_bits() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// The lock word this thread writes when it takes the lock (never 0, never with PARKED).
pub fn me() -> u64 {
    let p = this_process();
    p.pid as u64 | p.start << START_SHIFT | thread_tag() << THREAD_SHIFT
}

/// A tag for the calling thread, nonzero, distinct among this process's live threads.
fn thread_tag() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    // Starts at a random tag: after 65,535 threads the tags wrap, and two live threads with
    // one tag are then unlikely, not certain, in every process.
    static NEXT: AtomicU64 = AtomicU64::new(0);
    fn next() -> u64 {
        let _ = NEXT.compare_exchange(0, random_bits() | 1, Ordering::Relaxed, Ordering::Relaxed);
        (NEXT.fetch_add(1, Ordering::Relaxed) & THREAD_MASK).max(1)
    }
    #[cfg(not(loom))]
    thread_local!(static TAG: u64 = next());
    // loom runs its threads on one OS thread: a std thread-local would be shared.
    #[cfg(loom)]
    loom::thread_local!(static TAG: u64 = next());
    TAG.with(|t| *t)
}

/// The pid a lock word names.
pub fn pid_of(holder: u64) -> u32 {
    holder as u32
}

/// Whether the process that wrote `holder` (a lock word without PARKED) is alive. `mixed`:
/// processes of several pid namespaces use the store, so another process's pid means nothing.
pub fn liveness(holder: u64, mixed: bool) -> Liveness {
    #[cfg(loom)]
    {
        let _ = mixed;
        return loom_dead::liveness(holder);
    }
    #[cfg(not(loom))]
    {
        let me = this_process();
        let (pid, start) = (pid_of(holder), (holder >> START_SHIFT) & START_MASK);
        if pid == me.pid && start == me.start {
            return Liveness::Alive; // a thread of this process (a dead one never holds it)
        }
        if mixed || pid == 0 {
            // Another namespace's process may have our pid, or any other: pids tell nothing.
            return Liveness::Unknown;
        }
        process_liveness(pid, start)
    }
}

/// Whether process `pid`, started at tick tag `start`, is alive, for processes of one pid
/// namespace (the caller checks that: see `liveness`).
pub fn process_liveness(pid: u32, start: u64) -> Liveness {
    let me = this_process();
    if pid == me.pid {
        // Our pid with another start time: an earlier process that had our pid.
        return if start & START_MASK == me.start {
            Liveness::Alive
        } else {
            Liveness::Dead
        };
    }
    #[cfg(target_os = "linux")]
    {
        match proc_stat(pid) {
            Some((state, ticks)) => {
                if state == 'Z' || state == 'X' || ticks & START_MASK != start & START_MASK {
                    Liveness::Dead
                } else {
                    Liveness::Alive
                }
            }
            None => signal_zero(pid),
        }
    }
    #[cfg(all(unix, not(target_os = "linux")))]
    {
        match signal_zero(pid) {
            Liveness::Dead => Liveness::Dead,
            _ => Liveness::Unknown, // alive, or a reused pid: the lease decides
        }
    }
    #[cfg(not(unix))]
    {
        let _ = start;
        Liveness::Unknown
    }
}

/// `kill(pid, 0)`: no such process is dead; anything else tells nothing certain.
#[cfg(unix)]
fn signal_zero(pid: u32) -> Liveness {
    if pid > i32::MAX as u32 {
        return Liveness::Unknown;
    }
    // SAFETY: signal 0 sends nothing; it only checks that the process exists.
    let rc = unsafe { libc::kill(pid as libc::pid_t, 0) };
    if rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
        Liveness::Dead
    } else {
        Liveness::Unknown
    }
}

/// State letter and start time (field 22) of `/proc/<pid>/stat`.
fn proc_stat(pid: u32) -> Option<(char, u64)> {
    if !cfg!(target_os = "linux") {
        return None;
    }
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces or ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace(); // field 3 onwards
    let state = fields.next()?.chars().next()?;
    let ticks = fields.nth(22 - 4)?.parse().ok()?;
    Some((state, ticks))
}

fn pid_namespace() -> u64 {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self/ns/pid").map_or(0, |m| m.ino())
    }
    #[cfg(not(target_os = "linux"))]
    0
}

/// Under loom, a model marks a thread dead (it stops holding the lock without releasing it),
/// and the lock's waiters see that through `liveness`.
#[cfg(loom)]
pub mod loom_dead {
    use super::Liveness;
    use loom::sync::atomic::{AtomicU64, Ordering};

    loom::lazy_static! {
        static ref DEAD: AtomicU64 = AtomicU64::new(0);
    }

    /// Declares the calling thread dead (call it instead of releasing the lock).
    pub fn die() {
        DEAD.store(super::me(), Ordering::Relaxed);
    }

    pub fn liveness(holder: u64) -> Liveness {
        if DEAD.load(Ordering::Relaxed) == holder {
            Liveness::Dead
        } else {
            Liveness::Alive
        }
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn this_process_and_its_threads_are_alive_and_a_reused_pid_is_not() {
        let me = me();
        assert_ne!(me, 0);
        assert_eq!(me & PARKED, 0);
        assert_eq!(liveness(me, false), Liveness::Alive);
        let other_thread = std::thread::spawn(super::me).join().unwrap();
        assert_ne!(other_thread, me, "threads have their own tags");
        assert_eq!(liveness(other_thread, false), Liveness::Alive);
        // Our pid with another start time is an earlier process that had our pid...
        let earlier = me ^ (1 << START_SHIFT);
        assert_eq!(liveness(earlier, false), Liveness::Dead);
        // ...unless several pid namespaces share the store: then it may be anyone.
        assert_eq!(liveness(earlier, true), Liveness::Unknown);
        assert_eq!(liveness(me, true), Liveness::Alive);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_dead_or_reused_pid_is_dead_a_live_one_alive() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        let pid = child.id();
        let (_, ticks) = proc_stat(pid).unwrap();
        assert_eq!(process_liveness(pid, ticks), Liveness::Alive);
        assert_eq!(
            process_liveness(pid, ticks + 1),
            Liveness::Dead,
            "pid reused"
        );
        let word = pid as u64 | (ticks & START_MASK) << START_SHIFT | 5 << THREAD_SHIFT;
        assert_eq!(liveness(word, false), Liveness::Alive);
        assert_eq!(liveness(word, true), Liveness::Unknown, "mixed namespaces");
        child.kill().unwrap();
        // A zombie until reaped: already dead.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while liveness(word, false) != Liveness::Dead {
            assert!(
                std::time::Instant::now() < deadline,
                "zombie not seen as dead"
            );
            std::thread::yield_now();
        }
        child.wait().unwrap();
        assert_eq!(liveness(word, false), Liveness::Dead);
    }
}
