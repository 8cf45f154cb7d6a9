//! A store file truncated under an open store (src/fault.rs): no operation dies of SIGBUS,
//! every one returns, and the store reports itself lost (ERR_KV_LOST) naming the path and the
//! file's new size. A SIGBUS anywhere else still goes where it went before: to the handler
//! installed before ours, or to the default action.
#![cfg(all(unix, not(loom)))]

use std::os::unix::process::ExitStatusExt;
use std::process::Command;
use std::time::Duration;

use shared_kv_store::memory::{FileOptions, Memory};
use shared_kv_store::{Error, Store};

const MAX: u64 = 8 << 20;

fn path(name: &str) -> String {
    let p = std::env::temp_dir().join(format!("skv-fault-{name}-{}.kv", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p.to_str().unwrap().to_string()
}

/// How the tests open a store file of MAX bytes.
fn options(create: bool) -> FileOptions {
    FileOptions {
        create,
        ..FileOptions::new(MAX)
    }
}

/// A store file of MAX bytes holding 1,000 keys of 4 KiB (so its data spans most pages).
fn filled(path: &str) -> (Memory, Store) {
    let (m, _) = Memory::open_file(path, options(true)).unwrap();
    let mut s = Store::attach(m.region()).unwrap();
    s.wait_timeout = Duration::from_millis(200);
    for i in 0..1000u32 {
        s.set(format!("k{i}").as_bytes(), &[i as u8; 4096], false)
            .unwrap();
    }
    assert!(s.region().lost().is_ok());
    (m, s)
}

fn truncate(path: &str, len: u64) {
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

fn assert_lost(s: &Store, path: &str, len: u64) {
    match s.region().lost() {
        Err(Error::Lost(msg)) => {
            assert!(msg.contains(path), "{msg}");
            assert!(msg.contains(&format!("truncated to {len} bytes")), "{msg}");
        }
        other => panic!("{path}: not lost after a cut to {len}: {other:?}"),
    }
}

type Op = fn(&Store);

/// Every operation family, each run over the whole store.
const OPS: [(&str, Op); 8] = [
    ("get", |s| {
        let mut out = Vec::new();
        for i in 0..1000 {
            let _ = s.get(format!("k{i}").as_bytes(), &mut out);
        }
    }),
    ("set", |s| {
        for i in 0..1200 {
            let _ = s.set(format!("k{i}").as_bytes(), &[7; 5000], false);
        }
    }),
    ("delete", |s| {
        for i in 0..1000 {
            let _ = s.delete(format!("k{i}").as_bytes());
        }
    }),
    ("scan", |s| {
        let (mut epoch, mut from) = (0, Some(0));
        for _ in 0..100 {
            let Some(f) = from else { break };
            match s.scan(epoch, f, 64, |_, _| {}) {
                Ok((e, next)) => (epoch, from) = (e, next),
                Err(_) => break,
            }
        }
    }),
    ("check", |s| {
        let _ = s.check();
    }),
    ("stats", |s| {
        let _ = s.stats();
    }),
    ("clear", |s| {
        let _ = s.clear();
    }),
    ("log", |s| {
        let _ = s.read_changes(0, &mut Vec::new(), |_, _, _| {});
    }),
];

#[test]
fn every_operation_on_a_truncated_file_returns_and_the_store_is_lost() {
    for (name, op) in OPS {
        for cut in [0, 64 << 10, (64 << 10) + 100, MAX / 4] {
            let p = path(name);
            let (m, s) = filled(&p);
            truncate(&p, cut);
            op(&s);
            // Whatever the operation touched first, something past the cut: lost.
            if s.region().lost().is_ok() {
                // An operation that stayed below the cut (stats reads the header only) has
                // not met the loss yet; the next read of the data does.
                OPS[0].1(&s);
            }
            assert_lost(&s, &p, cut);
            // And it stays usable as memory: more calls still return.
            op(&s);
            OPS[1].1(&s);
            drop(s);
            drop(m);
            std::fs::remove_file(&p).unwrap();
        }
    }
}

#[test]
fn a_writer_thread_cut_off_mid_write_ends_with_the_store_lost() {
    let p = path("thread");
    let (m, s) = filled(&p);
    let s = std::sync::Arc::new(s);
    let go = std::sync::Arc::new(std::sync::Barrier::new(2));
    let writer = {
        let (s, go) = (s.clone(), go.clone());
        std::thread::spawn(move || {
            go.wait();
            // Until the loss is seen: a write after the cut touches the header's lock word.
            let mut n = 0u64;
            while s.region().lost().is_ok() {
                let _ = s.set(format!("w{}", n % 3000).as_bytes(), &[1; 3000], false);
                n += 1;
            }
            n
        })
    };
    go.wait();
    truncate(&p, 0);
    let writes = writer.join().unwrap();
    assert!(writes > 0);
    assert_lost(&s, &p, 0);
    drop(s);
    drop(m);
    std::fs::remove_file(&p).unwrap();
}

/// Runs test `name` of this binary in a child process, with `SKV_FAULT_CHILD` set.
fn child(name: &str) -> std::process::ExitStatus {
    Command::new(std::env::current_exe().unwrap())
        .args([name, "--exact", "--nocapture", "--test-threads=1"])
        .env("SKV_FAULT_CHILD", "1")
        .status()
        .unwrap()
}

/// Touches a page past the end of a mapped file that is not a store's: a real SIGBUS.
fn fault_elsewhere() {
    let p = path("other");
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.set_len(1 << 16).unwrap();
    use std::os::unix::io::AsRawFd;
    // SAFETY: a fresh shared mapping of our own file.
    let m = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            1 << 16,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(m, libc::MAP_FAILED);
    f.set_len(0).unwrap();
    std::fs::remove_file(&p).unwrap();
    // SAFETY: mapped; the read faults (the file was cut), which is the point.
    let v = unsafe { std::ptr::read_volatile(m.cast::<u8>().add(8192)) };
    println!("read {v} past the end: no fault");
}

#[test]
fn child_fault_elsewhere_default() {
    if std::env::var("SKV_FAULT_CHILD").is_err() {
        return;
    }
    // As in Node, which leaves SIGBUS at its default (the Rust runtime installs its own).
    // SAFETY: restoring the default action before anything else runs.
    unsafe { libc::signal(libc::SIGBUS, libc::SIG_DFL) };
    let p = path("child-default");
    let _store = filled(&p);
    std::fs::remove_file(&p).unwrap();
    fault_elsewhere();
}

extern "C" fn exit_42(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(42) };
}

#[test]
fn child_fault_elsewhere_chained() {
    if std::env::var("SKV_FAULT_CHILD").is_err() {
        return;
    }
    // SAFETY: installing a plain SA_SIGINFO handler before the store's.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = exit_42 as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        assert_eq!(libc::sigaction(libc::SIGBUS, &sa, std::ptr::null_mut()), 0);
    }
    // A fault in the store is still ours...
    a_cut_store_is_lost("child-chained");
    // ...and one elsewhere goes to the handler that was there first.
    fault_elsewhere();
}

#[test]
fn a_fault_outside_every_store_goes_where_it_went_before() {
    if std::env::var("SKV_FAULT_CHILD").is_ok() {
        return;
    }
    let st = child("child_fault_elsewhere_default");
    assert_eq!(st.signal(), Some(libc::SIGBUS), "{st:?}");
    let st = child("child_fault_elsewhere_chained");
    assert_eq!(st.code(), Some(42), "{st:?}");
}

/// Unmounts (lazily) a tmpfs mounted for a test, however the test ends.
struct Mounted(std::path::PathBuf);
impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// A page the file system cannot supply inside the file is not a truncation: the handler
/// leaves that fault alone (a writer carrying on with zeros would publish a torn entry). So
/// such pages must never be met: a store file whose used range has holes (a sparse copy) on a
/// full file system is refused when opened, with ENOSPC, rather than left to fault.
#[test]
fn a_store_file_with_holes_in_its_data_on_a_full_file_system_is_refused_at_open() {
    if std::env::var("SKV_FAULT_CHILD").is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("skv-fault-tmpfs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=12m", "tmpfs"])
        .arg(&dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: mount -t tmpfs was refused (it needs root)");
        let _ = std::fs::remove_dir(&dir);
        return;
    }
    let _mounted = Mounted(dir.clone());
    let p = dir.join("store.kv").to_str().unwrap().to_string();
    drop(filled(&p)); // unmapped: the next open maps it anew
    {
        use std::io::Write;
        use std::os::unix::io::AsRawFd;
        let f = std::fs::OpenOptions::new().write(true).open(&p).unwrap();
        // SAFETY: fallocate on our own descriptor: frees 256 KiB of the store's data.
        let rc = unsafe {
            libc::fallocate(
                f.as_raw_fd(),
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                1 << 20,
                256 << 10,
            )
        };
        assert_eq!(rc, 0);
        // Another file takes every page left.
        let mut filler = std::fs::File::create(dir.join("filler")).unwrap();
        while filler.write_all(&[1; 64 << 10]).is_ok() {}
    }
    let opts = options(false);
    match Memory::open_file(&p, opts) {
        Err(Error::Io { code, message }) => {
            assert_eq!(code, "ENOSPC");
            assert!(
                message.contains(&p) && message.contains("not allocated"),
                "{message}"
            );
        }
        other => panic!("opened: {:?}", other.map(|_| ())),
    }
    // Room again: it opens, and every entry is there (the hole reads as zeros only where the
    // test punched it; check() tells).
    std::fs::remove_file(dir.join("filler")).unwrap();
    let (m, _) = Memory::open_file(&p, opts).unwrap();
    drop(m);
}

#[test]
fn threads_faulting_at_once_keep_each_others_writes() {
    for round in 0..20 {
        let p = path(&format!("together-{round}"));
        let (m, s) = filled(&p);
        let base = m.base() as usize;
        truncate(&p, 0);
        let n = 6;
        let go = std::sync::Arc::new(std::sync::Barrier::new(n));
        let wrote = std::sync::Arc::new(std::sync::Barrier::new(n));
        let threads: Vec<_> = (0..n)
            .map(|i| {
                let (go, wrote) = (go.clone(), wrote.clone());
                std::thread::spawn(move || {
                    let at = (base + (1 << 20) + i * 65536) as *mut u64;
                    go.wait();
                    // SAFETY: inside the mapping; past the cut, so it faults and is replaced.
                    unsafe { std::ptr::write_volatile(at, 0xdead_0000 + i as u64) };
                    // Every thread's fault has been handled by now: none may undo this write.
                    wrote.wait();
                    // SAFETY: as above.
                    unsafe { std::ptr::read_volatile(at) }
                })
            })
            .collect();
        for (i, t) in threads.into_iter().enumerate() {
            assert_eq!(t.join().unwrap(), 0xdead_0000 + i as u64, "round {round}");
        }
        assert_lost(&s, &p, 0);
        drop((s, m));
        std::fs::remove_file(&p).unwrap();
    }
}

#[test]
fn slots_of_unmapped_files_are_reused() {
    // Far more mappings than the table has slots, each unmapped again...
    let p = path("many");
    drop(filled(&p));
    let opts = options(false);
    for _ in 0..shared_kv_store::fault::SLOTS * 2 {
        drop(Memory::open_file(&p, opts).unwrap());
    }
    std::fs::remove_file(&p).unwrap();
    // ...and a store mapped after them is still protected.
    a_cut_store_is_lost("after-many");
}

/// A filled store file, cut to 0 bytes and read: lost, as it should be.
fn a_cut_store_is_lost(name: &str) {
    let p = path(name);
    let (m, s) = filled(&p);
    truncate(&p, 0);
    OPS[0].1(&s);
    assert_lost(&s, &p, 0);
    drop((s, m));
    std::fs::remove_file(&p).unwrap();
}
