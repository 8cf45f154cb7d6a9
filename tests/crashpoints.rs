//! Crash points enumerated, not sampled: for each family of writes, and for every N from 1 to
//! the operation's last store to shared memory, a forked writer runs the operation and stops
//! dead right after its Nth store (`_exit`: no unwinding, the writer lock held, as SIGKILL
//! leaves it; see src/crashpoint.rs). The parent then takes the dead writer's lock over, which
//! recovers, and requires: `check()` passes, the store is as it was before the operation or
//! after it (or, for a sequence of writes, after a prefix of it; in an evicting store, entries
//! may have gone, never changed), and a new write goes through. For a few N of each family the
//! recoverer is crashed in turn at every store of its recovery, then recovered again.
//!
//! `cargo test --profile crashpoints --no-default-features --features crashpoints --test
//! crashpoints` (in npm test, about 30 s); with `SKV_CRASHPOINTS_DEEP=1` the recoverer is
//! crashed after every N of every family, and the families start from a larger, fragmented
//! store (300 entries, every third deleted): minutes.
#![cfg(all(target_os = "linux", not(loom), feature = "crashpoints"))]

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use shared_kv_store::crashpoint::{self, CRASHED};
use shared_kv_store::layout::*;
use shared_kv_store::{Error, Limits, Region, SetOptions, Store};

const LEN: usize = 1 << 20;
/// Stores past 4 GiB: a padding entry reserves [PAD_FROM, ~4 GiB), which no write touches, so
/// only the bytes around it are saved and restored (BIG_LEN is reserved, not committed).
const BIG_LEN: usize = (1 << 32) + (2 << 20);
const PAD_FROM: usize = 1 << 20;
const PAD_TO: usize = 1 << 32;
/// The exit status of a writer whose operation returned before its crash point.
const FINISHED: i32 = 87;

/// Memory shared with forked children (MAP_SHARED | MAP_ANONYMOUS), never unmapped; a store
/// uses its first `len` bytes.
struct Shm {
    base: *mut u8,
    len: usize,
    /// A range never written (a padded store's reserve): left out of save and restore.
    hole: Option<(usize, usize)>,
}

impl Shm {
    fn new() -> Shm {
        Shm::sized(LEN)
    }
    fn sized(size: usize) -> Shm {
        // SAFETY: a fresh anonymous shared mapping; checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                size,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Shm {
            base: p.cast(),
            len: size,
            hole: None,
        }
    }
    /// The ranges save and restore copy.
    fn ranges(&self) -> Vec<(usize, usize)> {
        match self.hole {
            None => vec![(0, self.len)],
            Some((from, to)) => vec![(0, from), (to, self.len)],
        }
    }
    fn region(&self) -> Region {
        // SAFETY: LEN >= len bytes at base stay mapped for the whole test (never unmapped).
        unsafe { Region::new(self.base, self.len) }
    }
    /// The bytes (but a hole's), copied while no other process runs.
    fn save(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for (from, to) in self.ranges() {
            // SAFETY: no child runs and no Region is used meanwhile; [from, to) is mapped.
            b.extend_from_slice(unsafe {
                std::slice::from_raw_parts(self.base.add(from), to - from)
            });
        }
        b
    }
    /// Puts back what `save` copied (or, from a shorter `bytes`, that many bytes from the start).
    fn restore(&self, bytes: &[u8]) {
        let mut at = 0;
        for (from, to) in self.ranges() {
            let n = (to - from).min(bytes.len() - at);
            // SAFETY: no child runs and no Region is used meanwhile; [from, from + n) is mapped.
            unsafe { std::ptr::copy_nonoverlapping(bytes[at..].as_ptr(), self.base.add(from), n) };
            at += n;
        }
    }
    /// Zeroes what save and restore copy.
    fn zero(&self) {
        for (from, to) in self.ranges() {
            // SAFETY: no child runs and no Region is used meanwhile; [from, to) is mapped.
            unsafe { std::ptr::write_bytes(self.base.add(from), 0, to - from) };
        }
    }
}

type Snapshot = BTreeMap<Vec<u8>, Vec<u8>>;

fn snapshot(s: &Store) -> Snapshot {
    let mut all = Snapshot::new();
    let (mut epoch, mut from) = (0, Some(0));
    while let Some(f) = from {
        (epoch, from) = s
            .scan(epoch, f, usize::MAX, |k, v| {
                all.insert(k.to_vec(), v.to_vec());
            })
            .unwrap();
    }
    all
}

fn attach(shm: &Shm) -> Store {
    Store::attach(shm.region()).unwrap()
}

type Op = Box<dyn Fn(&Store)>;

struct Family {
    name: String,
    limits: Limits,
    setup: Box<dyn Fn(&Store)>,
    /// The writes (each must succeed); a crash may leave any prefix of them done.
    ops: Vec<Op>,
    /// What the uninterrupted run must show (that the family exercises what it names).
    expect: Box<dyn Fn(&Store, &Snapshot, &Snapshot)>,
}

fn limits(evict: bool, max_bytes: usize) -> Limits {
    Limits {
        evict,
        max_entries: 0,
        max_bytes: max_bytes as u64,
        expected_keys: 0,
    }
}

fn key(i: u64) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

fn val(i: u64, len: usize) -> Vec<u8> {
    (0..len)
        .map(|j| (j as u64 ^ i.wrapping_mul(31)) as u8)
        .collect()
}

fn set(s: &Store, k: &[u8], v: &[u8]) {
    s.set(k, v, false)
        .unwrap_or_else(|e| panic!("set {:?}: {e}", String::from_utf8_lossy(k)))
}

fn fill(s: &Store, n: u64, len: usize) {
    for i in 0..n {
        set(s, &key(i), &val(i, len));
    }
}

fn mig_state(s: &Store) -> u32 {
    s.region().u32(H_MIG_STATE).unwrap().load(Relaxed)
}

/// Runs `f` with the file system refusing to reserve past the arena's top now.
fn with_full_file_system<T>(s: &Store, f: impl FnOnce() -> T) -> T {
    crashpoint::refuse_reservations_past(s.stats().unwrap().bytes_reserved);
    let r = f();
    crashpoint::refuse_reservations_past(u64::MAX);
    r
}

/// How many sets of new keys (`key:{base+i}`, 24-byte values) after `setup` until `reached`
/// holds: found on a scratch store, so that a family can stop one short of it.
fn inserts_until(lim: Limits, setup: &dyn Fn(&Store), reached: &dyn Fn(&Store) -> bool) -> u64 {
    let mut shm = Shm::new();
    shm.len = lim.max_bytes as usize;
    let s = Store::create_with(shm.region(), 11, STORE_PROCESS_SHARED, lim).unwrap();
    setup(&s);
    for n in 0..100_000 {
        if reached(&s) {
            return n;
        }
        set(&s, &key(50_000 + n), &val(n, 24));
    }
    panic!("never reached");
}

fn families(deep: bool) -> Vec<Family> {
    let base: u64 = if deep { 300 } else { 40 };
    let plain = limits(false, LEN);
    let mut f: Vec<Family> = Vec::new();
    let no_expect = || -> Box<dyn Fn(&Store, &Snapshot, &Snapshot)> { Box::new(|_, _, _| {}) };
    let mut add = |name: &str,
                   limits: Limits,
                   setup: Box<dyn Fn(&Store)>,
                   ops: Vec<Op>,
                   expect: Box<dyn Fn(&Store, &Snapshot, &Snapshot)>| {
        f.push(Family {
            name: name.to_string(),
            limits,
            setup,
            ops,
            expect,
        })
    };
    let shape = move |s: &Store| {
        fill(s, base, 40);
        if deep {
            // A fragmented arena: every third entry deleted.
            for i in (0..base).step_by(3) {
                s.delete(&key(i)).unwrap();
            }
        }
    };

    add(
        "set of a new key",
        plain,
        Box::new(shape),
        vec![Box::new(|s| set(s, b"new", &val(1, 100)))],
        Box::new(|_, b, a| assert_eq!(a.len(), b.len() + 1)),
    );
    add(
        "overwrite in place with the undo record",
        plain,
        Box::new(move |s| {
            shape(s);
            set(s, b"k", &val(2, 300));
        }),
        vec![Box::new(|s| set(s, b"k", &val(3, 300)))],
        Box::new(|_, _, a| assert_eq!(a[&b"k".to_vec()], val(3, 300))),
    );
    add(
        "copy-on-write overwrite (longer than the undo record)",
        plain,
        Box::new(move |s| {
            shape(s);
            set(s, b"k", &val(2, UNDO_MAX as usize + 100));
        }),
        vec![Box::new(|s| set(s, b"k", &val(3, UNDO_MAX as usize + 100)))],
        no_expect(),
    );
    add(
        "copy-on-write overwrite (a value that outgrew its block)",
        plain,
        Box::new(move |s| {
            shape(s);
            set(s, b"k", &val(2, 20));
        }),
        vec![Box::new(|s| set(s, b"k", &val(3, 900)))],
        no_expect(),
    );
    add(
        "delete",
        plain,
        Box::new(shape),
        vec![Box::new(move |s| {
            assert!(s.delete(&key(base - 1)).unwrap())
        })],
        Box::new(|_, b, a| assert_eq!(a.len() + 1, b.len())),
    );
    add(
        "clear",
        plain,
        Box::new(shape),
        vec![Box::new(|s| {
            s.clear().unwrap();
        })],
        Box::new(|_, _, a| assert!(a.is_empty())),
    );
    add(
        "clear of a full store (in place)",
        limits(false, 64 << 10),
        Box::new(|s| {
            for i in 0.. {
                if s.set(&key(i), &val(i, 900), false).is_err() {
                    break;
                }
            }
        }),
        vec![Box::new(|s| {
            s.clear().unwrap();
        })],
        Box::new(|_, _, a| assert!(a.is_empty())),
    );
    let lease = |s: &Store| {
        s.compare_and_change(b"\0lock\0held", None, Some(b"owner"), Some(u64::MAX / 4))
            .unwrap();
    };
    add(
        "clear with a lock's lease kept",
        plain,
        Box::new(move |s| {
            shape(s);
            lease(s);
        }),
        vec![Box::new(|s| {
            s.clear().unwrap();
        })],
        Box::new(|_, _, a| assert_eq!(a.len(), 1, "only the lease")),
    );
    add(
        "clear of a full store with a lock's lease kept (in place)",
        limits(false, 64 << 10),
        Box::new(move |s| {
            lease(s);
            for i in 0.. {
                if s.set(&key(i), &val(i, 900), false).is_err() {
                    break;
                }
            }
        }),
        vec![Box::new(|s| {
            s.clear().unwrap();
        })],
        Box::new(|_, _, a| assert_eq!(a.len(), 1, "only the lease")),
    );
    add(
        "increment",
        plain,
        Box::new(move |s| {
            shape(s);
            s.increment(b"n", 1.0).unwrap();
        }),
        vec![Box::new(|s| {
            assert_eq!(s.increment(b"n", 1.0).unwrap(), 2.0)
        })],
        no_expect(),
    );
    add(
        "setMany (three sets)",
        plain,
        Box::new(shape),
        vec![
            Box::new(|s| set(s, b"m1", &val(1, 50))),
            Box::new(|s| set(s, b"m2", &val(2, 3000))),
            Box::new(|s| set(s, &key(1), &val(9, 60))),
        ],
        no_expect(),
    );
    add(
        "an eviction window",
        limits(true, 128 << 10),
        Box::new(|s| {
            for i in 0..200 {
                set(s, &key(i), &val(i, 1500));
            }
        }),
        vec![Box::new(|s| set(s, b"big", &val(5, 12_000)))],
        Box::new(|s, _, _| assert!(s.stats().unwrap().evictions > 0)),
    );
    // The file system refuses space (a full tmpfs; reserve.rs): every crash point of a write
    // it turned down, and of the eviction or the smaller index that make do instead.
    add(
        "a set refused by a full file system (throwing store)",
        plain,
        Box::new(shape),
        vec![Box::new(|s| {
            let r = with_full_file_system(s, || s.set(b"new", &val(1, 5000), false));
            assert!(matches!(r, Err(Error::NoSpace { .. })), "{r:?}");
        })],
        Box::new(|_, b, a| assert_eq!(a, b)),
    );
    add(
        "room made by eviction below a full file system",
        limits(true, 128 << 10),
        Box::new(|s| {
            for i in 0..40 {
                set(s, &key(i), &val(i, 1500));
            }
        }),
        vec![Box::new(|s| {
            with_full_file_system(s, || set(s, b"big", &val(5, 12_000)));
        })],
        Box::new(|s, _, a| {
            assert!(s.stats().unwrap().evictions > 0);
            assert!(a.contains_key(&b"big".to_vec()));
        }),
    );
    let at_growth = move |s: &Store| {
        shape(s);
        let n = inserts_until(plain, &shape, &|s| mig_state(s) != 0);
        for i in 0..n - 1 {
            set(s, &key(50_000 + i), &val(i, 24));
        }
        // A free block for the next new key: only the index needs the file system.
        s.delete(&key(1)).unwrap();
    };
    add(
        "an index growth refused by a full file system: the set goes on in the old table",
        plain,
        Box::new(at_growth),
        vec![Box::new(|s| {
            with_full_file_system(s, || set(s, &key(60_000), &val(7, 24)));
            assert_eq!(mig_state(s), 0, "the growth was not refused");
        })],
        Box::new(|s, b, a| {
            assert_eq!(a.len(), b.len() + 1);
            // Room again: the growth the refusal put off starts with the next new key.
            set(s, &key(60_001), &val(8, 24));
            assert_ne!(mig_state(s), 0, "no growth was due");
        }),
    );
    add(
        "a compaction move",
        limits(true, 128 << 10),
        Box::new(|s| {
            for i in 0..300 {
                set(s, &key(i), &val(i, 1000));
            }
            // Pairs of neighbours deleted: fragments of two blocks, which an entry that
            // follows a fragment can move into.
            for i in (0..300).filter(|i| i % 4 < 2) {
                let _ = s.delete(&key(i)).unwrap();
            }
        }),
        vec![Box::new(|s| set(s, b"big", &val(5, 30_000)))],
        Box::new(|s, _, _| assert!(s.stats().unwrap().moves > 0, "nothing moved")),
    );
    let growth = |from: u32,
                  to: u32,
                  name: &str,
                  add: &mut dyn FnMut(
        &str,
        Limits,
        Box<dyn Fn(&Store)>,
        Vec<Op>,
        Box<dyn Fn(&Store, &Snapshot, &Snapshot)>,
    )| {
        // The insert at which the index's growth goes from `from` to `to` (after `base` keys).
        let before = inserts_until(plain, &shape, &|s| mig_state(s) == from);
        let n = before
            + inserts_until(
                plain,
                &move |s| {
                    shape(s);
                    for i in 0..before {
                        set(s, &key(50_000 + i), &val(i, 24));
                    }
                },
                &|s| mig_state(s) == to,
            );
        assert!(n > 0);
        add(
            name,
            plain,
            Box::new(move |s| {
                shape(s);
                for i in 0..n - 1 {
                    set(s, &key(50_000 + i), &val(i, 24));
                }
            }),
            vec![Box::new(move |s| {
                set(s, &key(50_000 + n - 1), &val(n - 1, 24))
            })],
            Box::new(move |s, _, _| assert_eq!(mig_state(s), to)),
        );
    };
    growth(
        MIG_NONE,
        MIG_PREPARING,
        "the start of a migration (a new table prepared)",
        &mut add,
    );
    growth(
        MIG_PREPARING,
        MIG_MOVING,
        "a migration's table published (moving begins)",
        &mut add,
    );
    growth(MIG_MOVING, MIG_NONE, "the end of a migration", &mut add);
    // A migration step: one insert while entries move (16 of them move with it).
    let moving = inserts_until(plain, &shape, &|s| mig_state(s) == MIG_MOVING);
    add(
        "a migration step",
        plain,
        Box::new(move |s| {
            shape(s);
            for i in 0..moving {
                set(s, &key(50_000 + i), &val(i, 24));
            }
        }),
        vec![Box::new(|s| set(s, b"during", &val(7, 24)))],
        Box::new(|s, _, _| assert_eq!(mig_state(s), MIG_MOVING)),
    );
    // Shrinking: 3000 keys, the growth finished, then deletes until one starts a rebuild to a
    // smaller table (found on a scratch store; the family's delete is that one).
    let grown = |s: &Store| {
        fill(s, 3000, 8);
        while mig_state(s) != MIG_NONE {
            set(s, b"pad", b"x");
        }
    };
    let shrinks_at = {
        let mut scratch = Shm::new();
        scratch.len = LEN;
        let s = Store::create_with(scratch.region(), 11, STORE_PROCESS_SHARED, plain).unwrap();
        grown(&s);
        (0..3000)
            .find(|&i| {
                s.delete(&key(i)).unwrap();
                mig_state(&s) == MIG_PREPARING
            })
            .expect("no delete shrinks the index")
    };
    add(
        "shrinking (the index rebuilt smaller)",
        plain,
        Box::new(move |s| {
            grown(s);
            for i in 0..shrinks_at {
                s.delete(&key(i)).unwrap();
            }
        }),
        vec![Box::new(move |s| {
            s.delete(&key(shrinks_at)).unwrap();
        })],
        Box::new(|s, _, _| assert_eq!(mig_state(s), MIG_PREPARING, "no shrink began")),
    );
    add(
        "the arena's merge (a freed block joins free neighbours)",
        plain,
        Box::new(|s| {
            for i in 0..6 {
                set(s, &key(i), &val(i, 200));
            }
            s.delete(&key(1)).unwrap();
            s.delete(&key(3)).unwrap();
        }),
        vec![Box::new(|s| {
            s.delete(&key(2)).unwrap();
        })],
        no_expect(),
    );
    add(
        "the arena's split (a free block serves a smaller one)",
        plain,
        Box::new(|s| {
            for i in 0..6 {
                set(s, &key(i), &val(i, 2000));
            }
            s.delete(&key(2)).unwrap();
        }),
        vec![Box::new(|s| set(s, b"small", &val(3, 100)))],
        no_expect(),
    );
    add(
        "a change-log append",
        plain,
        Box::new(move |s| {
            shape(s);
            s.watch_register().unwrap();
        }),
        vec![Box::new(|s| set(s, b"watched", &val(4, 64)))],
        no_expect(),
    );
    let lock_key = b"\0lock\0job".to_vec();
    let lk = lock_key.clone();
    add(
        "a lock lease taken",
        plain,
        Box::new(shape),
        vec![Box::new(move |s| {
            assert!(s
                .compare_and_change(&lk, None, Some(b"owner"), Some(u64::MAX / 4))
                .unwrap())
        })],
        no_expect(),
    );
    let lk = lock_key.clone();
    add(
        "a lock lease released",
        plain,
        Box::new(move |s| {
            shape(s);
            s.compare_and_change(&lock_key, None, Some(b"owner"), Some(u64::MAX / 4))
                .unwrap();
        }),
        vec![Box::new(move |s| {
            assert!(s
                .compare_and_change(&lk, Some(b"owner"), None, None)
                .unwrap())
        })],
        no_expect(),
    );
    add(
        "an expiring set",
        plain,
        Box::new(shape),
        vec![Box::new(|s| {
            let opts = SetOptions {
                expires_at: u64::MAX / 4,
                ..SetOptions::default()
            };
            s.set_with(b"ttl", &val(8, 70), &opts).unwrap()
        })],
        no_expect(),
    );
    f
}

/// Runs `work` in a forked child stopped dead after its `n`th store; returns whether it
/// stopped there (false: `work` returned first).
fn crash_after(n: u64, work: &dyn Fn()) -> bool {
    // SAFETY: the child only runs the store's code on the shared mapping and _exits; the test
    // binary runs this one test (required-features), so no other thread holds a lock at fork.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        crashpoint::arm(n);
        work();
        // SAFETY: ends the child without running the parent's exit handlers.
        unsafe { libc::_exit(FINISHED) };
    }
    let mut status = 0;
    // SAFETY: waits for the child just forked.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(
        libc::WIFEXITED(status),
        "the writer died of a signal: {status}"
    );
    match libc::WEXITSTATUS(status) {
        CRASHED => true,
        FINISHED => false,
        other => panic!("the writer failed (exit {other})"),
    }
}

/// Recovers what a dead writer left (its lock is taken over) and checks the store: whole, in
/// an allowed state, and writable.
fn recover_and_verify(shm: &Shm, fam: &Family, states: &[Snapshot], at: &str) {
    let s = attach(shm);
    s.check()
        .unwrap_or_else(|e| panic!("{}: {at}: check after recovery: {e}", fam.name));
    // The tag backstop found nothing to repair: every slot was whole by construction.
    let repairs = s.stats().unwrap().repairs;
    assert_eq!(
        repairs, 0,
        "{}: {at}: recovery repaired {repairs} slots",
        fam.name
    );
    let now = snapshot(&s);
    let ok = if fam.limits.evict {
        // Entries may have been evicted; none may hold a value no state had.
        now.iter()
            .all(|(k, v)| states.iter().any(|st| st.get(k) == Some(v)))
    } else {
        states.contains(&now)
    };
    if !ok {
        let before = &states[0];
        let after = states.last().unwrap();
        for (k, v) in &now {
            if before.get(k) != Some(v) && after.get(k) != Some(v) {
                eprintln!(
                    "  {:?}: {} bytes, neither before nor after",
                    String::from_utf8_lossy(k),
                    v.len()
                );
            }
        }
        for k in before.keys().chain(after.keys()) {
            if !now.contains_key(k) {
                eprintln!("  {:?}: absent", String::from_utf8_lossy(k));
            }
        }
        panic!(
            "{}: {at}: the store is in none of the states the writes allow",
            fam.name
        );
    }
    s.set(b"\0probe", b"written after recovery", false)
        .unwrap_or_else(|e| panic!("{}: {at}: a write after recovery: {e}", fam.name));
    s.delete(b"\0probe").unwrap();
}

/// Crashes the recoverer of the state in `crashed` at every store of its recovery.
fn crash_recovery(shm: &Shm, fam: &Family, states: &[Snapshot], crashed: &[u8], n: u64) -> u64 {
    let mut m = 1;
    loop {
        shm.restore(crashed);
        let stopped = crash_after(m, &|| {
            let _ = attach(shm).check();
        });
        if !stopped {
            return m - 1;
        }
        recover_and_verify(
            shm,
            fam,
            states,
            &format!("writer crashed after store {n}, its recoverer after store {m}"),
        );
        m += 1;
    }
}

#[test]
fn every_crash_point_of_every_write_family_recovers_to_before_or_after() {
    let deep = std::env::var("SKV_CRASHPOINTS_DEEP").is_ok();
    let mut shm = Shm::new();
    let (points, recoverer_points) = run_families(&mut shm, families(deep), deep, false);
    eprintln!("{points} crash points of writers, {recoverer_points} of recoverers");
}

/// The same families in a store past 4 GiB: a padding entry of 4 GiB first, so that every block
/// the family writes (and the index it grows) lies past the 4 GiB mark, where offsets need the
/// slot's high bits.
#[test]
fn crash_points_past_4_gib_recover_too() {
    const PAST: [&str; 5] = [
        "set of a new key",
        "overwrite in place with the undo record",
        "copy-on-write overwrite (longer than the undo record)",
        "delete",
        "an expiring set",
    ];
    let mut shm = Shm::sized(BIG_LEN);
    shm.hole = Some((PAD_FROM, PAD_TO));
    let big: Vec<Family> = families(false)
        .into_iter()
        .filter(|f| PAST.iter().any(|p| f.name.starts_with(p)))
        .map(|mut f| {
            let setup = f.setup;
            f.setup = Box::new(move |s: &Store| {
                let pad = SetOptions {
                    reserve: PAD_TO as u64 - 1, // its block ends past the mark
                    ..SetOptions::default()
                };
                s.set_with(b"\0pad", b"x", &pad).unwrap();
                assert!(s.stats().unwrap().bytes_used > PAD_TO as u64);
                setup(s);
            });
            f.name = format!("{} (past 4 GiB)", f.name);
            f.limits.max_bytes = BIG_LEN as u64;
            f
        })
        .collect();
    assert_eq!(big.len(), PAST.len());
    let (points, recoverer_points) = run_families(&mut shm, big, false, true);
    eprintln!("past 4 GiB: {points} crash points of writers, {recoverer_points} of recoverers");
}

/// Enumerates every crash point of each family; returns (writer points, recoverer points).
fn run_families(shm: &mut Shm, families: Vec<Family>, deep: bool, padded: bool) -> (u64, u64) {
    let (mut points, mut recoverer_points) = (0, 0);
    for fam in families {
        // The store is maxBytes long, so that full means full; and zeroed, as new memory is
        // (the format trusts that bytes past the high water were never written).
        shm.len = fam.limits.max_bytes as usize;
        if padded {
            shm.zero();
        } else {
            shm.restore(&vec![0; LEN]);
        }
        // The state before, and after each write, uninterrupted (in this process).
        let s = Store::create_with(shm.region(), 11, STORE_PROCESS_SHARED, fam.limits).unwrap();
        (fam.setup)(&s);
        s.check().unwrap();
        let pristine = shm.save();
        let mut states = vec![snapshot(&s)];
        for op in &fam.ops {
            op(&s);
            states.push(snapshot(&s));
        }
        s.check().unwrap();
        (fam.expect)(&s, &states[0], states.last().unwrap());
        drop(s);

        let run = || {
            let s = attach(&shm);
            for op in &fam.ops {
                op(&s);
            }
        };
        let mut n = 1;
        let mut last = 0;
        let mut last_crashed = Vec::new();
        loop {
            shm.restore(&pristine);
            if !crash_after(n, &run) {
                break;
            }
            let crashed = shm.save();
            recover_and_verify(
                &shm,
                &fam,
                &states,
                &format!("writer crashed after store {n}"),
            );
            // The recoverer crashed in turn: for every N in deep runs, else for the first, the
            // 100th, the 1000th and the last (below).
            if deep || n == 1 || n == 100 || n == 1000 {
                recoverer_points += crash_recovery(&shm, &fam, &states, &crashed, n);
            }
            last_crashed = crashed;
            last = n;
            n += 1;
        }
        // (A write the file system refused takes and gives back the lock: 3 stores.)
        assert!(last >= 3, "{}: only {last} stores", fam.name);
        if !deep {
            recoverer_points += crash_recovery(&shm, &fam, &states, &last_crashed, last);
        }
        points += last;
        eprintln!("{}: {last} crash points", fam.name);
    }
    (points, recoverer_points)
}
