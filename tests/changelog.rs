//! The change log that `watch` and `waitFor` read (src/changelog.rs): order, completeness,
//! every kind of event, being lapped, sleeping and waking, and registrations.
mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::Mem;
use shared_kv_store::changelog::{Event, ReadOutcome};
use shared_kv_store::layout::{H_LOG, INTERNAL_HEADER, L_SLOTS, SLEEP_FUTEX};
use shared_kv_store::{Error, Limits, SetOptions, Store};

/// Reads everything from `cursor`: the events (with their keys as strings) and the outcome.
fn read(s: &Store, cursor: u64) -> (Vec<(Event, String)>, ReadOutcome) {
    let mut events = Vec::new();
    let out = s
        .read_changes(cursor, &mut Vec::new(), |e, k, _| {
            events.push((e, String::from_utf8(k.to_vec()).unwrap()))
        })
        .unwrap();
    (events, out)
}

fn set(s: &Store, key: &str) {
    s.set(key.as_bytes(), b"\x01", false).unwrap();
}

#[test]
fn nothing_is_logged_until_someone_watches_then_every_write_in_order() {
    let mem = Mem::new(8 << 20);
    let s = mem.create(mem.bytes());
    set(&s, "before");
    assert_eq!(s.stats().unwrap().watchers, 0);
    assert_eq!(
        s.signal_offset().unwrap(),
        None,
        "no log before the first watch"
    );
    let reg = s.watch_register().unwrap();
    assert_eq!(s.stats().unwrap().watchers, 1);
    set(&s, "a");
    s.increment(b"n", 1.0).unwrap();
    assert!(s.delete(b"a").unwrap());
    assert!(
        !s.delete(b"absent").unwrap(),
        "deleting nothing is not a change"
    );
    assert!(!s.compare_and_set(b"n", Some(b"nope"), b"x").unwrap());
    s.clear().unwrap();
    let (events, out) = read(&s, reg.cursor);
    assert!(!out.overflow);
    let want = [
        (Event::Set, "a"),
        (Event::Set, "n"),
        (Event::Delete, "a"),
        (Event::Clear, ""),
    ];
    let got: Vec<(Event, &str)> = events.iter().map(|(e, k)| (*e, k.as_str())).collect();
    assert_eq!(got, want);
    // Read again from where it stopped: nothing new.
    assert!(read(&s, out.next).0.is_empty());
    assert!(s.watch_unregister(reg.slot).unwrap());
    assert_eq!(s.stats().unwrap().watchers, 0);
    set(&s, "after");
    assert!(
        read(&s, out.next).0.is_empty(),
        "unwatched writes are not logged"
    );
    s.check().unwrap();
}

#[test]
fn refused_writes_and_lock_keys_are_not_logged() {
    let len = 1 << 20;
    let mem = Mem::new(len);
    let s = Store::create_with(
        mem.region(len),
        1,
        0,
        Limits {
            max_bytes: len as u64,
            ..Limits::default()
        },
    )
    .unwrap();
    let reg = s.watch_register().unwrap();
    let big = vec![7u8; len];
    assert!(matches!(
        s.set(b"big", &big, false),
        Err(Error::Full { .. } | Error::NeedGrow { .. })
    ));
    assert!(
        s.set(&vec![b'k'; 20_000], b"v", false).is_err(),
        "key too long"
    );
    s.set(b"\0lock\0x", b"owner", false).unwrap();
    assert!(read(&s, reg.cursor).0.is_empty());
}

#[test]
fn evictions_and_expiries_are_logged_with_their_keys() {
    let mem = Mem::new(8 << 20);
    let limits = Limits {
        evict: true,
        max_entries: 4,
        max_bytes: mem.bytes() as u64,
        expected_keys: 0,
    };
    let mut s = Store::create_with(mem.region(mem.bytes()), 3, 0, limits).unwrap();
    let reg = s.watch_register().unwrap();
    for k in ["a", "b", "c", "d", "e"] {
        set(&s, k);
    }
    let (events, _) = read(&s, reg.cursor);
    let evicted: Vec<&str> = events
        .iter()
        .filter(|(e, _)| *e == Event::Evict)
        .map(|(_, k)| k.as_str())
        .collect();
    assert_eq!(evicted.len(), 1, "{events:?}");
    // The eviction is logged before the set that needed the room.
    assert_eq!(events.last().unwrap(), &(Event::Set, "e".to_string()));
    assert!(!evicted.contains(&"e"));

    let cursor = read(&s, reg.cursor).1.next;
    s.set_with(
        b"t",
        b"v",
        &SetOptions {
            expires_at: 1000,
            ..SetOptions::default()
        },
    )
    .unwrap();
    s.clock = || 2000; // t has expired: deleting it reclaims it, as an expiry
    assert!(!s.delete(b"t").unwrap());
    let (events, _) = read(&s, cursor);
    assert!(
        events.contains(&(Event::Expire, "t".to_string())),
        "{events:?}"
    );
    assert!(!events.iter().any(|(e, _)| *e == Event::Delete));
}

#[test]
fn three_writers_one_total_order_every_reader_sees() {
    let mem = Arc::new(Mem::new(32 << 20));
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    const N: u64 = 2000;
    std::thread::scope(|scope| {
        for w in 0..3 {
            let mem = mem.clone();
            scope.spawn(move || {
                let s = mem.attach(mem.bytes());
                for i in 0..N {
                    set(&s, &format!("w{w}:{i}"));
                }
            });
        }
        // A reader reading while they write, batch by batch.
        let mut cursor = reg.cursor;
        let mut seen = Vec::new();
        while seen.len() < 3 * N as usize {
            let (events, out) = read(&s, cursor);
            assert!(!out.overflow, "the log holds 6000 small records");
            cursor = out.next;
            seen.extend(events.into_iter().map(|(_, k)| k));
        }
        let mut next = [0u64; 3];
        for k in &seen {
            let (w, i) = k[1..].split_once(':').unwrap();
            let (w, i): (usize, u64) = (w.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[w], "writer {w}'s writes out of order or lost");
            next[w] += 1;
        }
        // Read again from the start: the same sequence (one order for every reader).
        let (again, _) = read(&s, reg.cursor);
        let again: Vec<String> = again.into_iter().map(|(_, k)| k).collect();
        assert_eq!(again, seen);
    });
}

#[test]
fn a_reader_lapped_is_told_overflow_and_goes_on_from_the_newest() {
    let mem = Mem::new(64 << 20);
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    // Far more than a 1 MiB log holds.
    for i in 0..200_000 {
        set(&s, &format!("key number {i}"));
    }
    let (events, out) = read(&s, reg.cursor);
    assert!(out.overflow && events.is_empty());
    set(&s, "later");
    let (events, out) = read(&s, out.next);
    assert!(!out.overflow);
    assert_eq!(events, vec![(Event::Set, "later".to_string())]);
    // A cursor from nowhere (JS passes it in) is an overflow, not a crash.
    assert!(read(&s, u64::MAX / 2).1.overflow);
}

#[test]
fn a_lapping_writer_during_a_read_is_detected() {
    let mem = Arc::new(Mem::new(64 << 20));
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let s = mem.attach(mem.bytes());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                set(&s, &format!("k{i:08}"));
                i += 1;
            }
        });
        // Every read either is a run of well-formed records in order, or says overflow.
        let mut cursor = reg.cursor;
        let mut last = None;
        let mut overflows = 0;
        for _ in 0..3000 {
            let (events, out) = read(&s, cursor);
            if out.overflow {
                overflows += 1;
                last = None;
            }
            for (e, k) in events {
                assert_eq!(e, Event::Set);
                let n: u64 = k[1..].parse().unwrap();
                if let Some(prev) = last {
                    assert_eq!(n, prev + 1, "a record torn or skipped without overflow");
                }
                last = Some(n);
            }
            cursor = out.next;
        }
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        eprintln!("{overflows} overflows in 3000 reads");
    });
}

#[test]
fn a_sleeping_waiter_is_woken_by_a_write_in_another_thread() {
    let mem = Arc::new(Mem::new(8 << 20));
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    for round in 0..50 {
        let cursor = read(&s, reg.cursor).1.next;
        let woke = std::thread::scope(|scope| {
            let sleeper = scope.spawn(|| {
                let s = mem.attach(mem.bytes());
                let start = Instant::now();
                // Sleeps until the signal moves (a lost wake would sleep the whole minute).
                while let Some(signal) = s.arm_sleep(SLEEP_FUTEX, cursor).unwrap() {
                    s.wait_changes(signal, Duration::from_secs(60)).unwrap();
                }
                start.elapsed()
            });
            std::thread::sleep(Duration::from_micros(round * 40));
            set(&s, &format!("wake {round}"));
            sleeper.join().unwrap()
        });
        assert!(woke < Duration::from_secs(30), "round {round}: not woken");
    }
}

#[test]
fn a_dead_processs_registration_is_reclaimed() {
    let mem = Mem::new(8 << 20);
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    // Forge a slot held by a process that has exited (its pid is free, or someone else's).
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let pid = child.id() as u64;
    child.wait().unwrap();
    let r = s.region();
    let log = r.u64(H_LOG).unwrap().load(Ordering::Relaxed) + INTERNAL_HEADER;
    r.u64(log + L_SLOTS + 8 * 100)
        .unwrap()
        .store(pid | 1 << 47, Ordering::Relaxed);
    r.u32(shared_kv_store::layout::H_WATCHERS)
        .unwrap()
        .store(2, Ordering::Relaxed);
    assert_eq!(s.stats().unwrap().watchers, 2);
    // The next registration reclaims it.
    let second = s.watch_register().unwrap();
    assert_eq!(
        s.stats().unwrap().watchers,
        2,
        "this thread's two, the dead one gone"
    );
    s.watch_unregister(second.slot).unwrap();
    s.watch_unregister(reg.slot).unwrap();
    assert_eq!(s.stats().unwrap().watchers, 0);
    s.check().unwrap();
}

#[test]
fn a_waiter_that_keeps_reading_and_sleeping_never_misses_a_wake() {
    // The waiter re-arms with its bit maybe still set from an arm that found records: an
    // append must never clear a bit without changing the value the waiter then sleeps on.
    let mem = Arc::new(Mem::new(16 << 20));
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    const N: usize = 20_000;
    std::thread::scope(|scope| {
        let reader = scope.spawn(|| {
            let s = mem.attach(mem.bytes());
            let (mut cursor, mut seen, mut longest) = (reg.cursor, 0, Duration::ZERO);
            while seen < N {
                let (events, out) = read(&s, cursor);
                assert!(!out.overflow);
                seen += events.len();
                cursor = out.next;
                if seen == N {
                    break;
                }
                if let Some(signal) = s.arm_sleep(SLEEP_FUTEX, cursor).unwrap() {
                    let t = Instant::now();
                    s.wait_changes(signal, Duration::from_secs(60)).unwrap();
                    longest = longest.max(t.elapsed());
                }
            }
            longest
        });
        let mut rng = common::Rng(42);
        for i in 0..N {
            set(&s, &format!("k{i}"));
            if rng.below(64) == 0 {
                std::thread::sleep(Duration::from_micros(rng.below(200)));
            }
        }
        let longest = reader.join().unwrap();
        assert!(
            longest < Duration::from_secs(30),
            "a wake was lost: slept {longest:?}"
        );
    });
}

/// A bounded read returns the first `max` records and the position after them; reading on
/// from there gives the rest, in order, with nothing lost or repeated.
#[test]
fn a_bounded_read_resumes_where_it_stopped() {
    let mem = Mem::new(8 << 20);
    let s = mem.create(mem.bytes());
    let reg = s.watch_register().unwrap();
    for i in 0..10 {
        set(&s, &format!("k{i}"));
    }
    let (mut cursor, mut keys) = (reg.cursor, Vec::new());
    let mut calls = 0;
    loop {
        let mut n = 0;
        let out = s
            .read_changes_max(cursor, 3, &mut Vec::new(), |_, k, _| {
                n += 1;
                keys.push(String::from_utf8(k.to_vec()).unwrap());
            })
            .unwrap();
        assert!(n <= 3 && !out.overflow);
        calls += 1;
        if out.next == cursor {
            break;
        }
        cursor = out.next;
    }
    assert_eq!(keys, (0..10).map(|i| format!("k{i}")).collect::<Vec<_>>());
    assert_eq!(calls, 5, "3 + 3 + 3 + 1, then an empty read");
    assert_eq!(
        cursor,
        s.read_changes(reg.cursor, &mut Vec::new(), |_, _, _| {})
            .unwrap()
            .next
    );
}
