//! Growth to many keys with two writer processes, SIGKILLed during the index's migrations.
//!
//! Two children (this test binary again, `SKV_GROWTH_CHILD` set: `growth_writer` plays them)
//! insert keys of their own into one store file, each counting in a shared log the inserts it
//! began and the ones that returned. The parent kills one of them (SIGKILL) once it has begun a
//! number of inserts the round's seed picks and the index is migrating (two tables), checks the
//! store while the other writer goes on, then starts the victim again from its last returned
//! insert. At the end every returned insert of both writers is there with its value, and
//! `check()` passes.
//!
//! `SKV_GROWTH_KEYS=4000000 SKV_GROWTH_KILLS=200 cargo test --release --no-default-features
//! --test growth_kill` runs the long version (millions of keys, a growth every doubling).
#![cfg(all(unix, not(loom)))]
mod common;

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Rng;
use shared_kv_store::layout::{H_MIG_STATE, MIG_NONE};
use shared_kv_store::memory::{FileOptions, Memory};
use shared_kv_store::{Region, Store};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn open_store(path: &str, keys: u64) -> Store {
    // About 48 bytes an entry, two tables of 16 bytes a slot at most, and room to spare.
    let opts = FileOptions::new((keys * 160).max(64 << 20));
    let (m, _) = Memory::open_file(path, opts).unwrap();
    let mut s = Store::attach(m.region()).unwrap();
    // (Mappings are never unmapped while a Region may use them.)
    std::mem::forget(m);
    // A dead holder of the writer lock is found by its process being gone, not by this
    // timeout; it bounds waits for live holders, such as the parent's check() walking the whole
    // store (a second or more at millions of keys): generous, so a slow machine fails nothing.
    s.wait_timeout = Duration::from_secs(120);
    s
}

/// The log: a plain mapped file of 4 KiB.
fn open_log(path: &str) -> Region {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .unwrap();
    file.set_len(4096).unwrap();
    use std::os::unix::io::AsRawFd;
    // SAFETY: a shared mapping of the whole (4 KiB) file, never unmapped during the test.
    let p = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    assert_ne!(p, libc::MAP_FAILED);
    // SAFETY: 4096 bytes at p stay mapped until the process exits.
    unsafe { Region::new(p.cast(), 4096) }
}

fn key(writer: u64, i: u64) -> Vec<u8> {
    format!("w{writer}:{i}").into_bytes()
}

fn value(writer: u64, i: u64) -> Vec<u8> {
    let mut v = (i * 2 + writer).to_le_bytes().to_vec();
    v.extend_from_slice(&[writer as u8; 8]);
    v
}

/// A writer: inserts its keys from the given start up to its end, logging each.
#[test]
fn growth_writer() {
    let Ok(spec) = std::env::var("SKV_GROWTH_CHILD") else {
        return; // only when run as a writer
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let (store_path, log_path) = (parts[0], parts[1]);
    let writer: u64 = parts[2].parse().unwrap();
    let (start, end, keys): (u64, u64, u64) = (
        parts[3].parse().unwrap(),
        parts[4].parse().unwrap(),
        parts[5].parse().unwrap(),
    );
    let store = open_store(store_path, keys);
    let log = open_log(log_path);
    // Per writer, three words of the log: inserts begun, inserts returned, failed.
    let w = |i: usize| log.u64(8 * (3 * writer as usize + i) as u64).unwrap();
    for i in start..end {
        w(0).store(i + 1, Ordering::Release); // begun
        if let Err(e) = store.set(&key(writer, i), &value(writer, i), false) {
            w(2).store(1, Ordering::Release);
            panic!("writer {writer}, insert {i}: {e}");
        }
        w(1).store(i + 1, Ordering::Release); // returned
    }
}

fn spawn(store: &str, log: &str, writer: u64, start: u64, end: u64, keys: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "growth_writer",
            "--test-threads=1",
            "--nocapture",
        ])
        .env(
            "SKV_GROWTH_CHILD",
            format!("{store},{log},{writer},{start},{end},{keys}"),
        )
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn writers_killed_during_migrations_lose_no_returned_insert() {
    if std::env::var("SKV_GROWTH_CHILD").is_ok() {
        return;
    }
    let keys = env("SKV_GROWTH_KEYS", 200_000);
    let kills = env("SKV_GROWTH_KILLS", 16);
    let per_writer = keys / 2;
    let dir = std::env::temp_dir().join(format!("skv-growth-kill-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store_path = dir.join("store.kv").to_str().unwrap().to_string();
    let log_path = dir.join("log").to_str().unwrap().to_string();
    let store = open_store(&store_path, keys);
    let log = open_log(&log_path);
    let w = |writer: u64, i: usize| log.u64(8 * (3 * writer as usize + i) as u64).unwrap();
    let state = store.region().u32(H_MIG_STATE).unwrap();
    let mut rng = Rng(0x6b17);
    let mut children = [
        spawn(&store_path, &log_path, 0, 0, per_writer, keys),
        spawn(&store_path, &log_path, 1, 0, per_writer, keys),
    ];
    let mut killed = 0;
    // Kill points spread over the run: the k-th kill once its victim has begun about
    // k/(kills+1) of its inserts (plus a seeded jitter) and the index is migrating. (The keys
    // double several times after the first target, so growths come; a victim that finishes
    // first is not killed.)
    for k in 0..kills {
        let victim = (k % 2) as usize;
        let jitter = rng.below((per_writer / (4 * kills + 4)).max(1));
        let target = per_writer * (k + 1) / (kills + 1) + jitter;
        loop {
            let begun = w(victim as u64, 0).load(Ordering::Acquire);
            if begun >= target && state.load(Ordering::Relaxed) != MIG_NONE {
                break;
            }
            if begun >= per_writer {
                break; // it finished first
            }
            for (writer, child) in children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().unwrap() {
                    let done = w(writer as u64, 1).load(Ordering::Acquire);
                    assert!(
                        status.success() && done == per_writer,
                        "writer {writer} ended ({status:?}) after {done} inserts"
                    );
                }
            }
            std::hint::spin_loop();
        }
        if children[victim].try_wait().unwrap().is_some() {
            continue; // finished: nothing to kill
        }
        children[victim].kill().unwrap(); // SIGKILL
        let status = children[victim].wait().unwrap();
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "kill {k}: writer {victim} failed first ({status:?})"
        );
        killed += 1;
        // The other writer goes on meanwhile; the parent takes the lock over if the victim
        // died holding it, and the whole store checks.
        store
            .check()
            .unwrap_or_else(|e| panic!("kill {k}: check after the kill: {e}"));
        let (begun, done) = (
            w(victim as u64, 0).load(Ordering::Acquire),
            w(victim as u64, 1).load(Ordering::Acquire),
        );
        assert!(
            begun == done || begun == done + 1,
            "kill {k}: log {begun}/{done}"
        );
        for i in done.saturating_sub(1000)..done {
            let mut out = Vec::new();
            assert!(
                store
                    .get(&key(victim as u64, i), &mut out)
                    .unwrap()
                    .is_some()
                    && out == value(victim as u64, i),
                "kill {k}: writer {victim}'s returned insert {i} is lost or wrong"
            );
        }
        // Started again from its last returned insert (the interrupted one is written again).
        children[victim] = spawn(
            &store_path,
            &log_path,
            victim as u64,
            done,
            per_writer,
            keys,
        );
    }
    for (writer, child) in children.iter_mut().enumerate() {
        let status = child.wait().unwrap();
        assert!(status.success(), "writer {writer} failed: {status:?}");
        assert_eq!(w(writer as u64, 1).load(Ordering::Acquire), per_writer);
    }
    let report = store.check().unwrap();
    assert_eq!(report.entries, 2 * per_writer);
    let mut out = Vec::new();
    for writer in 0..2 {
        for i in 0..per_writer {
            assert!(
                store.get(&key(writer, i), &mut out).unwrap().is_some() && out == value(writer, i),
                "writer {writer}'s insert {i} is lost or wrong at the end"
            );
        }
    }
    let recoveries = store.stats().unwrap().recoveries;
    eprintln!("{keys} keys, {killed} writers killed during migrations, {recoveries} recoveries");
    // The first kill's target comes before several doublings of the keys: it cannot miss them.
    assert!(killed >= 1, "no writer was killed during a migration");
    let _ = std::fs::remove_dir_all(&dir);
}
