//! Memory that never strands (issue 16): freed space serves any later size, and an evicting
//! store whose value sizes drift stays full of live data and refuses no write.
mod common;

use std::collections::HashMap;

use common::{Mem, Rng};
use shared_kv_store::{Error, Limits, Store};

const SIZES: [usize; 6] = [100, 3000, 40_000, 700, 200_000, 10_000];

fn store(mem: &Mem, evict: bool) -> Store {
    let limits = Limits {
        evict,
        max_entries: 0,
        max_bytes: mem.bytes() as u64,
        expected_keys: 0,
    };
    Store::create_with(mem.region(mem.bytes()), 7, 0, limits).unwrap()
}

/// Sets `prefix{i}` to values of `size` bytes until the store is full; returns how many fit.
fn fill(s: &Store, prefix: &str, size: usize) -> u64 {
    let v = vec![0xA5u8; size];
    let mut n = 0u64;
    loop {
        match s.set(format!("{prefix}{n}").as_bytes(), &v, false) {
            Ok(()) => n += 1,
            Err(Error::Full { .. }) => return n,
            Err(e) => panic!("{prefix}{n}: {e}"),
        }
    }
}

fn empty(s: &Store, prefix: &str, n: u64) {
    for i in 0..n {
        assert!(s.delete(format!("{prefix}{i}").as_bytes()).unwrap());
    }
}

/// The key and value bytes of every live entry.
fn live_bytes(s: &Store) -> u64 {
    let (mut epoch, mut from, mut total) = (0, 0, 0u64);
    let mut seen = std::collections::HashSet::new();
    loop {
        let (e, next) = s
            .scan(epoch, from, 1 << 20, |k, v| {
                if seen.insert(k.to_vec()) {
                    total += (k.len() + v.len()) as u64;
                }
            })
            .unwrap();
        epoch = e;
        match next {
            Some(n) => from = n,
            None => return total,
        }
    }
}

#[test]
#[ignore = "88% today: the last index growth needs one contiguous block (compaction, issue 16)"]
fn an_emptied_store_holds_as_much_of_any_other_size_as_a_fresh_one() {
    let len = 8 << 20;
    let fresh: Vec<u64> = SIZES
        .iter()
        .map(|&size| fill(&store(&Mem::new(len), false), "f", size))
        .collect();
    for (i, &before) in SIZES.iter().enumerate() {
        let mem = Mem::new(len);
        let s = store(&mem, false);
        let n = fill(&s, "a", before);
        empty(&s, "a", n);
        s.check().unwrap();
        for (j, &after) in SIZES.iter().enumerate() {
            if i == j {
                continue;
            }
            let m = fill(&s, "b", after);
            assert!(
                m * 10 >= fresh[j] * 9,
                "after {before}-byte values, {m} of {after} bytes fit; a fresh store holds {}",
                fresh[j]
            );
            s.check().unwrap();
            empty(&s, "b", m);
        }
        // All of it back: only the index is in use.
        let c = s.check().unwrap();
        assert_eq!(c.bytes_used, c.index_bytes, "{c:?}");
    }
}

#[test]
fn a_refused_set_changes_nothing() {
    let mem = Mem::new(1 << 20);
    let s = store(&mem, false);
    let n = fill(&s, "k", 5000);
    let mut out = Vec::new();
    // Too large to fit anywhere: refused, and the old value stays.
    assert!(matches!(
        s.set(b"k0", &vec![1u8; 600_000], false),
        Err(Error::Full { .. })
    ));
    s.get(b"k0", &mut out).unwrap().unwrap();
    assert_eq!(out, vec![0xA5u8; 5000]);
    assert_eq!(s.check().unwrap().entries, n);
}

/// Phases of value sizes over many keys, in an evicting store: no set refused, and after each
/// phase of values of 1 KB or more the live key and value bytes are >= 90% of maxBytes.
#[test]

fn an_evicting_store_stays_full_of_live_data_while_sizes_drift() {
    let len = 8u64 << 20;
    let mem = Mem::new(len as usize);
    let s = store(&mem, true);
    let mut rng = Rng(0xD81F7);
    let keys = 20_000;
    for round in 0..2 {
        for &size in &SIZES {
            let sets = (3 * len / size as u64).clamp(2000, 100_000);
            let v = vec![size as u8; size];
            for _ in 0..sets {
                let k = rng.below(keys);
                s.set(format!("key{k}").as_bytes(), &v, false)
                    .unwrap_or_else(|e| panic!("round {round}, {size}-byte values: {e}"));
            }
            let c = s.check().unwrap();
            let live = live_bytes(&s);
            let share = live as f64 / len as f64;
            eprintln!(
                "round {round}, {size:>6}-byte values: {:.1}% live data, {} entries, index {} KiB",
                share * 100.0,
                c.entries,
                c.index_bytes >> 10
            );
            if size >= 1000 {
                assert!(
                    share >= 0.9,
                    "{size}-byte values: {:.1}% of maxBytes is live data ({c:?})",
                    share * 100.0
                );
            }
        }
    }
}

/// Phases of new keys whose values drift from small to large and back (benchmark/drift.js at a
/// sixth of its scale): after each phase of values of 1000 bytes or more, the live bytes are at least
/// 86% of maxBytes (88.5% today: the index the small phase grew is 9% of this store), also for
/// values of 1/280 and 1/140 of it written after small ones. A window of eviction from the
/// hand's victim ran over small entries into a large one and left most of it free, a fragment
/// just too small for the next value: 80% live after the 15 KB phase before.
#[test]
fn new_keys_of_drifting_sizes_leave_few_fragments() {
    let len = 4u64 << 20;
    let mem = Mem::new(len as usize);
    let s = store(&mem, true);
    for (phase, size) in [1000u64, 130, 15_000, 400, 4000, 230, 30_000, 1200]
        .into_iter()
        .enumerate()
    {
        let v = vec![phase as u8; size as usize];
        // Large values three times the store over; small ones once and a half (what makes the
        // next large phase start among small entries; and a debug build's minute).
        let writes = if size >= 1000 {
            3 * len / size
        } else {
            3 * len / size / 2
        };
        for i in 0..writes {
            s.set(format!("d{phase}:{i}").as_bytes(), &v, false)
                .unwrap_or_else(|e| panic!("phase {phase}, set {i} of {size} bytes: {e}"));
        }
        let c = s.check().unwrap();
        let share = live_bytes(&s) as f64 / len as f64;
        eprintln!(
            "phase {phase}, {size:>6}-byte values: {:.1}% live, {:.1}% free in blocks",
            share * 100.0,
            c.bytes_free as f64 * 100.0 / len as f64
        );
        if size >= 1000 {
            assert!(
                share >= 0.86,
                "phase {phase}, {size}-byte values: {:.1}% of maxBytes is live data ({c:?})",
                share * 100.0
            );
        }
    }
}

/// Any value up to maxBytes / 8 gets in, whatever the sizes already there.
#[test]
fn an_evicting_store_never_refuses_for_fragmentation() {
    let len = 4u64 << 20;
    let mem = Mem::new(len as usize);
    let s = store(&mem, true);
    let mut rng = Rng(42);
    for i in 0..30_000u64 {
        let size = match rng.below(10) {
            0 => rng.below(len / 8 - 64) as usize,
            1..=3 => 1000 + rng.below(9000) as usize,
            _ => rng.below(400) as usize,
        };
        s.set(
            format!("k{}", rng.below(5000)).as_bytes(),
            &vec![i as u8; size],
            false,
        )
        .unwrap_or_else(|e| panic!("set {i} of {size} bytes: {e}"));
        if i % 5000 == 0 {
            s.check().unwrap();
        }
    }
    s.check().unwrap();
}

/// A model of the store under random sets, deletes and drifting sizes (throwing when full):
/// every refused set leaves the store unchanged, every returned one is there, and the
/// arena stays consistent (free blocks merged, lists exact).
#[test]
fn random_sizes_keep_the_store_equal_to_a_model() {
    for seed in 1..=4u64 {
        let mem = Mem::new(2 << 20);
        let s = store(&mem, false);
        let mut rng = Rng(seed * 0x9E37_79B9);
        let mut model: HashMap<u64, Vec<u8>> = HashMap::new();
        let mut out = Vec::new();
        for i in 0..20_000u64 {
            let k = rng.below(3000);
            let key = format!("m{k}");
            let phase = i / 2500 % 4;
            if rng.below(4) == 0 {
                assert_eq!(
                    s.delete(key.as_bytes()).unwrap(),
                    model.remove(&k).is_some()
                );
                continue;
            }
            let size = match phase {
                0 => rng.below(64),
                1 => 500 + rng.below(3000),
                2 => rng.below(20_000),
                _ => 8 * rng.below(40),
            } as usize;
            let v: Vec<u8> = (0..size).map(|j| (i as u8) ^ (j as u8)).collect();
            match s.set(key.as_bytes(), &v, false) {
                Ok(()) => {
                    model.insert(k, v);
                }
                Err(Error::Full { .. }) => {}
                Err(e) => panic!("{e}"),
            }
            match s.get(key.as_bytes(), &mut out).unwrap() {
                Some(_) => assert_eq!(Some(&out), model.get(&k), "{key}"),
                None => assert!(!model.contains_key(&k)),
            }
            if i % 1000 == 0 {
                assert_eq!(s.check().unwrap().entries, model.len() as u64);
            }
        }
        for (k, v) in &model {
            s.get(format!("m{k}").as_bytes(), &mut out)
                .unwrap()
                .unwrap();
            assert_eq!(&out, v);
        }
        assert_eq!(s.check().unwrap().entries, model.len() as u64);
    }
}
