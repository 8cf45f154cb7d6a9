//! A store filled to maxBytes: every operation that frees space or changes nothing in size
//! still succeeds, on stores that refuse writes when full and on stores that evict, in a
//! thread's memory and in a process-shared one (with its undo record).
#![cfg(not(loom))]
mod common;

use common::{Mem, Rng};
use shared_kv_store::layout::{STORE_PROCESS_SHARED, UNDO_MAX};
use shared_kv_store::{Error, Limits, Store};

const MAX: usize = 4 << 20;
const SIZES: [usize; 5] = [100, 3000, 40_000, 700, 10_000];

fn key(i: u64) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

/// A store of MAX bytes, filled with drifting value sizes until a write is refused (or, when
/// it evicts, until it has evicted). Returns the keys it holds.
fn full(mem: &Mem, evict: bool, flags: u32) -> (Store, Vec<u64>) {
    let limits = Limits {
        evict,
        max_entries: 0,
        max_bytes: MAX as u64,
        expected_keys: 0,
    };
    let s = Store::create_with(mem.region(MAX), 3, flags, limits).unwrap();
    let mut rng = Rng(9);
    let mut i = 0u64;
    'fill: for size in SIZES {
        for _ in 0..MAX / size / 2 {
            let len = size + rng.below(size as u64 / 4) as usize;
            match s.set(&key(i), &vec![i as u8; len], false) {
                Ok(()) => i += 1,
                Err(Error::Full { .. }) if !evict => break 'fill,
                Err(e) => panic!("{e}"),
            }
        }
    }
    if evict {
        // Past maxBytes many times over: every later write evicts.
        for _ in 0..200 {
            s.set(&key(i), &vec![1; 20_000], false).unwrap();
            i += 1;
        }
        assert!(s.stats().unwrap().evictions > 0);
    } else {
        assert!(s.set(b"one more", &[0; 50_000], false).is_err(), "not full");
    }
    let mut out = Vec::new();
    let held = (0..i)
        .filter(|&k| s.get(&key(k), &mut out).unwrap().is_some())
        .collect();
    s.check().unwrap();
    (s, held)
}

/// An evicting store of `max` bytes in `mem`, in a thread's memory.
fn evicting(mem: &Mem, max: usize, seed: u64) -> Store {
    let limits = Limits {
        evict: true,
        max_entries: 0,
        max_bytes: max as u64,
        expected_keys: 0,
    };
    Store::create_with(mem.region(max), seed, 0, limits).unwrap()
}

fn every_kind(f: impl Fn(bool, u32)) {
    for evict in [false, true] {
        for flags in [0, STORE_PROCESS_SHARED] {
            f(evict, flags);
        }
    }
}

/// Locks' leases are not keys: clear() keeps them (a held lock must not get a second holder)
/// and counts only the keys, whether it builds a new index or, on a full store, empties the
/// old one in place.
#[test]
fn clear_keeps_locks_leases_and_counts_only_keys() {
    every_kind(|evict, flags| {
        for full_store in [false, true] {
            let mem = Mem::new(MAX);
            let limits = Limits {
                evict,
                max_entries: 0,
                max_bytes: MAX as u64,
                expected_keys: 0,
            };
            let s = Store::create_with(mem.region(MAX), 3, flags, limits).unwrap();
            let lease = b"\0lock\0job";
            assert!(s
                .compare_and_change(lease, None, Some(b"me"), Some(u64::MAX / 4))
                .unwrap());
            let mut n = 0;
            if full_store {
                while n < 100_000 {
                    match s.set(&key(n), &vec![1; 3000], false) {
                        Ok(()) => n += 1,
                        Err(Error::Full { .. }) => break,
                        Err(e) => panic!("{e}"),
                    }
                    if evict && s.stats().unwrap().evictions > 0 {
                        break;
                    }
                }
            } else {
                for i in 0..10 {
                    s.set(&key(i), b"v", false).unwrap();
                }
                n = 10;
            }
            let keys = s.stats().unwrap().entries; // keys only: the lease is counted apart
            assert_eq!(s.stats().unwrap().locks, 1);
            assert!(keys > 0 && keys <= n);
            assert_eq!(
                s.clear().unwrap(),
                keys,
                "evict {evict} flags {flags} full {full_store}"
            );
            let mut out = Vec::new();
            assert!(
                s.get(lease, &mut out).unwrap().is_some(),
                "the lease survives"
            );
            assert_eq!(out, b"me");
            assert!(
                !s.compare_and_change(lease, None, Some(b"other"), Some(u64::MAX / 4))
                    .unwrap(),
                "still held"
            );
            assert!(
                s.compare_and_change(lease, Some(b"me"), None, None)
                    .unwrap(),
                "released by its holder"
            );
            assert_eq!(s.check().unwrap().entries, 0);
        }
    });
}

#[test]
fn clear_empties_a_full_store_and_it_fills_again() {
    every_kind(|evict, flags| {
        let mem = Mem::new(MAX);
        let (s, held) = full(&mem, evict, flags);
        assert_eq!(
            s.clear().unwrap(),
            held.len() as u64,
            "evict {evict} flags {flags}"
        );
        let c = s.check().unwrap();
        assert_eq!(c.entries, 0);
        let mut out = Vec::new();
        assert!(held
            .iter()
            .all(|&k| s.get(&key(k), &mut out).unwrap().is_none()));
        // All of it is usable again.
        for i in 0..100 {
            s.set(&key(i), &[7; 30_000], false).unwrap();
        }
        assert_eq!(s.check().unwrap().entries, 100);
    });
}

#[test]
fn deletes_reads_and_rewrites_that_keep_the_size_succeed_on_a_full_store() {
    every_kind(|evict, flags| {
        let mem = Mem::new(MAX);
        let (s, held) = full(&mem, evict, flags);
        let what = format!("evict {evict} flags {flags}");
        let mut out = Vec::new();
        let evictions = s.stats().unwrap().evictions;
        // Rewrites in place: the same length, and a shorter one (values up to the undo
        // record's size in a process-shared store; any size elsewhere).
        let mut rewritten = 0;
        for &k in &held {
            s.get(&key(k), &mut out).unwrap().unwrap();
            if out.len() as u64 > UNDO_MAX && flags != 0 {
                continue;
            }
            let len = out.len();
            s.set(&key(k), &vec![0xAB; len], false)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            s.set(&key(k), &vec![0xCD; len / 2], false)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            s.get(&key(k), &mut out).unwrap().unwrap();
            assert_eq!(out, vec![0xCD; len / 2]);
            rewritten += 1;
        }
        assert!(rewritten > 10, "{what}: {rewritten} rewritten");
        assert_eq!(
            s.stats().unwrap().evictions,
            evictions,
            "{what}: a rewrite evicted"
        );
        // Scans, stats and check read.
        let mut seen = 0;
        let (mut epoch, mut from) = (0, Some(0));
        while let Some(f) = from {
            (epoch, from) = s.scan(epoch, f, 1000, |_, _| seen += 1).unwrap();
        }
        assert!(seen >= held.len());
        s.stats().unwrap();
        // Deletes.
        for &k in held.iter().step_by(2) {
            assert!(s.delete(&key(k)).unwrap(), "{what}");
        }
        let c = s.check().unwrap();
        assert_eq!(
            c.entries,
            (held.len() - held.len().div_ceil(2)) as u64,
            "{what}"
        );
    });
}

static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
fn fake_now() -> u64 {
    NOW.load(std::sync::atomic::Ordering::Relaxed)
}

/// Expired entries are absent: a store that refuses writes when full reclaims them before it
/// refuses one (bytes and maxEntries alike), in a thread's memory and a process-shared one.
#[test]
fn expired_entries_never_keep_a_write_out_of_a_full_store() {
    use shared_kv_store::SetOptions;
    for flags in [0, STORE_PROCESS_SHARED] {
        for size in [3000, 5000, 20_000] {
            let len = 256 << 10;
            let mem = Mem::new(len);
            let limits = Limits {
                evict: false,
                max_entries: 0,
                max_bytes: len as u64,
                expected_keys: 0,
            };
            let mut s = Store::create_with(mem.region(len), 3, flags, limits).unwrap();
            s.clock = fake_now;
            let ttl = SetOptions {
                expires_at: fake_now() + 1000,
                ..SetOptions::default()
            };
            let mut n = 0;
            while s.set_with(&key(n), &vec![7; size], &ttl).is_ok() {
                n += 1;
            }
            assert!(n > 5);
            // Every entry expires; none has been swept yet.
            let mut s2 = Store::attach(mem.region(len)).unwrap();
            s2.clock = || fake_now() + 2000;
            let mut out = Vec::new();
            assert!((0..n).all(|i| s2.get(&key(i), &mut out).unwrap().is_none()));
            // As many as fitted before (the issue: 34 of 50 threw ERR_KV_FULL).
            for i in 0..n {
                s2.set(&key(10_000 + i), &vec![8; size], false)
                    .unwrap_or_else(|e| {
                        panic!("flags {flags} size {size}: set {i} after expiry: {e}")
                    });
            }
            assert!(s2.stats().unwrap().expired > 0);
            s2.check().unwrap();
            drop(s);
        }
    }
    // maxEntries: two expired keys leave room for a third.
    let len = 1 << 20;
    let mem = Mem::new(len);
    let limits = Limits {
        evict: false,
        max_entries: 2,
        max_bytes: len as u64,
        expected_keys: 0,
    };
    let mut s = Store::create_with(mem.region(len), 3, 0, limits).unwrap();
    s.clock = fake_now;
    let ttl = SetOptions {
        expires_at: fake_now() + 10,
        ..SetOptions::default()
    };
    s.set_with(b"a", b"1", &ttl).unwrap();
    s.set_with(b"b", b"2", &ttl).unwrap();
    assert!(matches!(
        s.set(b"c", b"3", false),
        Err(Error::AtCapacity { .. })
    ));
    s.clock = || fake_now() + 20;
    s.set(b"c", b"3", false).unwrap();
    assert_eq!(s.stats().unwrap().entries, 1);
}

/// An evicting store of tiny entries: the index would outgrow what the pinned old table and
/// the log leave free (a 256 KiB store refused writes with 0 entries left, for some hash
/// seeds). The store evicts entries instead of refusing a write, and stays consistent.
#[test]
fn an_evicting_store_of_tiny_entries_never_refuses_a_write() {
    const MAX: usize = 256 << 10;
    for seed in [8u64, 10, 11, 16, 19, 20] {
        let mem = Mem::new(MAX);
        let s = evicting(&mem, MAX, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        for i in 0..30_000u64 {
            if let Err(e) = s.set(format!("f{i}").as_bytes(), &[7; 12], false) {
                panic!("seed {seed}, set {i}: {e} ({:?})", s.stats().unwrap());
            }
        }
        let st = s.stats().unwrap();
        assert!(st.evictions > 0 && st.entries > 0, "{st:?}");
        s.check().unwrap();
    }
}

/// An evicting store, filled, then a value of a large share of maxBytes: it gets in, or is
/// refused at once with nothing evicted, never refused after the store was emptied for it.
#[test]
fn a_large_value_in_a_full_evicting_store_gets_in_or_evicts_nothing() {
    const MAX: usize = 1 << 20;
    let mut refused = 0;
    // Seed 2 once evicted half the store and then refused: the growth its evictions started
    // pinned a new table in the window. Seeds 14 and 15 have no stretch for half of maxBytes.
    // (Seeds 0..40 were checked; these keep npm test short.)
    for (seed, value_len, share) in [
        (2u64, 50usize, 3u64),
        (14, 50, 2),
        (15, 50, 2),
        (3, 2000, 2),
    ] {
        {
            let mem = Mem::new(MAX);
            let s = evicting(&mem, MAX, seed.wrapping_mul(0x9e37_79b9_7f4a_7c15));
            for i in 0..(MAX / value_len * 3 / 2) as u64 {
                s.set(format!("f{i}").as_bytes(), &vec![7; value_len], false)
                    .unwrap();
            }
            let before = s.stats().unwrap();
            let big = vec![1; MAX / share as usize];
            match s.set(b"big", &big, false) {
                Ok(()) => {}
                Err(Error::NoWindow { .. }) => {
                    refused += 1;
                    let after = s.stats().unwrap();
                    assert_eq!(
                        (after.entries, after.evictions),
                        (before.entries, before.evictions),
                        "seed {seed}: refused after evicting"
                    );
                }
                Err(e) => panic!("seed {seed}, {value_len} B values, 1/{share}: {e}"),
            }
            s.check().unwrap();
        }
    }
    assert!(
        refused > 0,
        "no layout refused half of maxBytes: the test lost its edge"
    );
}

/// Leases cut an evicting store into short stretches. A value that fits only in the long one
/// gets in (windows where the hand points fail, then the store evicts where it fits), and one
/// that fits nowhere is refused after a few windows, not after the whole store was evicted.
#[test]
fn leases_in_the_way_never_empty_the_store_for_nothing() {
    use shared_kv_store::layout::PINNED_KEY_PREFIX;
    const MAX: usize = 4 << 20;
    let lease = |i: u64| [PINNED_KEY_PREFIX, format!("l{i}").as_bytes()].concat();
    for fits in [true, false] {
        let mem = Mem::new(MAX);
        let s = evicting(&mem, MAX, 11);
        // An entry of 2,000 bytes, then a lease, over and over: stretches of about 2 KB.
        let (mut i, mut n) = (0u64, 0u64);
        // Half the store so, or all of it (until the pattern itself evicts).
        let more = |s: &Store| {
            let st = s.stats().unwrap();
            if fits {
                st.bytes_reserved < MAX as u64 / 2
            } else {
                st.evictions < 20
            }
        };
        while more(&s) {
            s.set(&key(n), &[1; 2000], false).unwrap();
            n += 1;
            // As large as the entries, so that both fill the same free blocks in turn.
            s.set(&lease(i), &[0; 2000], false).unwrap();
            i += 1;
        }
        if fits {
            // A long stretch at the end, filled with entries the hand does not point at first.
            while s.stats().unwrap().evictions == 0 {
                s.set(&key(n), &[2; 1000], false).unwrap();
                n += 1;
            }
        }
        let before = s.stats().unwrap();
        let value = vec![3; 60 << 10]; // under maxBytes / 64: not measured before evicting
        match s.set(b"v", &value, false) {
            Ok(()) => assert!(fits, "it cannot fit between two leases"),
            Err(Error::NoWindow { .. }) => {
                assert!(!fits, "the long stretch holds it");
                let evicted = s.stats().unwrap().evictions - before.evictions;
                assert!(evicted <= 100, "{evicted} evicted before refusing");
            }
            Err(e) => panic!("{e}"),
        }
        assert_eq!(s.stats().unwrap().locks, i, "no lease evicted");
        s.check().unwrap();
    }
}
