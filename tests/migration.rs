//! Iteration during an index growth (rehash.rs: two tables while entries move, a cursor, the
//! finish): a scan that runs while writes move entries from the old table to the new, and while
//! the growth finishes and another one starts, loses no key and returns none twice once the
//! caller drops the repeats a restart brings (as `entries()` and `listKeys` do).
#![cfg(not(loom))]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;

use common::Mem;
use shared_kv_store::layout::{
    H_HIGH_WATER, H_MIG_CURSOR, H_MIG_STATE, H_PREP, H_T0, MIGRATE_SCAN_FACTOR, MIGRATE_SLOTS,
    MIG_MOVING, MIG_NONE, MIG_PREPARING, SLOT_SIZE, T_CAP, ZERO_BYTES,
};
use shared_kv_store::Store;

fn key(i: u64) -> Vec<u8> {
    format!("key:{i}").into_bytes()
}

fn moving(s: &Store) -> bool {
    s.region().u32(H_MIG_STATE).unwrap().load(Relaxed) == MIG_MOVING
}

#[test]
fn a_scan_across_growths_loses_no_key_and_repeats_none() {
    for (initial, batch, writes_per_batch) in [(300, 5, 1), (3000, 17, 3), (20_000, 64, 8)] {
        let mem = Mem::new(64 << 20);
        let s = mem.create(64 << 20);
        // Stop while a growth is under way: the scan starts in the middle of one.
        let mut n = 0u64;
        while n < initial || !moving(&s) {
            s.set(&key(n), &n.to_le_bytes(), false).unwrap();
            n += 1;
        }
        let before: HashMap<Vec<u8>, Vec<u8>> =
            (0..n).map(|i| (key(i), i.to_le_bytes().to_vec())).collect();
        let (mut epoch, mut from) = (0u32, Some(0u64));
        let (mut seen, mut restarts, mut during_growth) = (HashSet::new(), 0, 0);
        let mut next_new = 1_000_000u64;
        while let Some(f) = from {
            let (e, next) = s
                .scan(epoch, f, batch, |k, v| {
                    if let Some(want) = before.get(k) {
                        assert_eq!(v, &want[..], "a torn or wrong value");
                    }
                    seen.insert(k.to_vec());
                })
                .unwrap();
            if e != epoch && f != 0 {
                restarts += 1;
            }
            (epoch, from) = (e, next);
            if moving(&s) {
                during_growth += 1;
            }
            // New keys between batches: each write moves the growth on (and starts new ones).
            for _ in 0..writes_per_batch {
                s.set(&key(next_new), b"new", false).unwrap();
                next_new += 1;
            }
        }
        let lost: Vec<_> = before.keys().filter(|k| !seen.contains(*k)).collect();
        assert!(
            lost.is_empty(),
            "{initial}: {} keys lost, e.g. {:?}",
            lost.len(),
            String::from_utf8_lossy(lost[0])
        );
        assert!(during_growth > 0, "{initial}: no batch ran during a growth");
        eprintln!("{initial} keys, batches of {batch}: {during_growth} batches during a growth, {restarts} restarts");
        s.check().unwrap();
    }
}

/// Where a growth stands: (state, cursor, T0's slots, the prepared block, its slots, T0).
fn growth(s: &Store) -> (u32, u64, u64, u64, u64, u64) {
    let r = s.region();
    let state = r.u32(H_MIG_STATE).unwrap().load(Relaxed);
    let prep = r.u64(H_PREP).unwrap().load(Relaxed);
    let t0 = r.u64(H_T0).unwrap().load(Relaxed);
    let prep_cap = if state == MIG_PREPARING {
        cap(s, prep)
    } else {
        0
    };
    let cursor = r.u64(H_MIG_CURSOR).unwrap().load(Relaxed);
    (state, cursor, cap(s, t0), prep, prep_cap, t0)
}

/// The slots of the table at `block` (T_CAP, the u32 after the block's internal header word).
fn cap(s: &Store, block: u64) -> u64 {
    s.region()
        .u32(block + shared_kv_store::layout::T_CAP)
        .unwrap()
        .load(Relaxed) as u64
}

/// "No write waits for a whole rebuild": across growths from empty to 200,000 keys, and in a
/// mix of sets and deletes that grows and shrinks the index, every write moves the growth on by
/// one bounded slice at most: ZERO_BYTES of the new table zeroed, or MIGRATE_SLOTS entries
/// moved (scanning at most MIGRATE_SLOTS * MIGRATE_SCAN_FACTOR slots). A write that finished
/// the rest at once (rehash_all's catch-up) would fail here.
#[test]
fn no_write_waits_for_a_whole_rebuild() {
    let scan = MIGRATE_SLOTS * MIGRATE_SCAN_FACTOR;
    let mem = Mem::new(256 << 20);
    let s = mem.create(256 << 20);
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (mut growths, mut steps) = (0u64, 0u64);
    for i in 0..400_000u64 {
        let before = growth(&s);
        let high_water = s.region().u64(H_HIGH_WATER).unwrap().load(Relaxed);
        if i < 200_000 {
            s.set(&key(i), &i.to_le_bytes(), false).unwrap();
        } else {
            // Deletes outrun sets: the index shrinks (a rebuild to a smaller table) as well.
            let k = key(next() % 200_000);
            if next() % 4 == 0 {
                s.set(&k, b"again", false).unwrap();
            } else {
                s.delete(&k).unwrap();
            }
        }
        let after = growth(&s);
        // (Caps read before the write: a finished growth frees the old table's block.)
        let (state, cursor, t0_cap, prep, prep_cap, t0) = before;
        let work = match (state, after.0) {
            // No growth before or after: unless one began and ended in this write.
            (MIG_NONE, MIG_NONE) => {
                assert_eq!(t0, after.5, "write {i}: a whole growth in one write");
                0
            }
            (MIG_NONE, MIG_PREPARING) => {
                growths += 1;
                if after.3 >= high_water && after.1 == after.4 * SLOT_SIZE {
                    0 // a block past the high water was never written: nothing to zero
                } else {
                    after.1.div_ceil(ZERO_BYTES)
                }
            }
            (MIG_PREPARING, MIG_PREPARING) => {
                assert_eq!(prep, after.3, "write {i}: the prepared table changed");
                (after.1 - cursor).div_ceil(ZERO_BYTES)
            }
            // The last slice of zeroing, then the table is published.
            (MIG_PREPARING, MIG_MOVING) => {
                assert_eq!(
                    after.1, 0,
                    "write {i}: entries moved as the table was published"
                );
                (prep_cap * SLOT_SIZE - cursor).div_ceil(ZERO_BYTES)
            }
            (MIG_MOVING, MIG_MOVING) => (after.1 - cursor).div_ceil(scan),
            // The last slice of moving, then the new table is the main one.
            (MIG_MOVING, MIG_NONE) => (t0_cap - cursor).div_ceil(scan),
            (a, b) => panic!("write {i}: growth state went from {a} to {b} in one write"),
        };
        assert!(
            work <= 1,
            "write {i}: {work} slices of growth work in one write ({before:?} -> {after:?})"
        );
        steps += work;
    }
    assert!(growths >= 8, "{growths} growths");
    assert!(steps > 1000, "{steps} steps");
}

/// The main table's slots.
fn t0_cap(s: &Store) -> u64 {
    let r = s.region();
    let block = r.u64(H_T0).unwrap().load(Relaxed);
    r.u32(block + T_CAP).unwrap().load(Relaxed) as u64
}

/// Inserts keys `range`, counting the growths started (MIG_NONE left) along the way.
fn insert_counting_growths(s: &Store, range: std::ops::Range<u64>) -> u32 {
    let mut growths = 0;
    for i in range {
        let before = s.region().u32(H_MIG_STATE).unwrap().load(Relaxed);
        s.set(&key(i), b"v", false).unwrap();
        let after = s.region().u32(H_MIG_STATE).unwrap().load(Relaxed);
        growths += (before == MIG_NONE && after != MIG_NONE) as u32;
    }
    growths
}

#[test]
fn a_store_sized_for_expected_keys_grows_once_at_its_first_key_and_never_shrinks_below() {
    const KEYS: u64 = 100_000;
    const LEN: usize = 32 << 20;
    let sized = |expected_keys| shared_kv_store::Limits {
        max_bytes: LEN as u64,
        expected_keys,
        ..Default::default()
    };
    // The control: without the hint, growth to KEYS runs a migration many times.
    let mem = Mem::new(LEN);
    let plain = Store::create_with(mem.region(LEN), 1, 0, sized(0)).unwrap();
    assert!(insert_counting_growths(&plain, 0..KEYS) >= 6);

    let mem = Mem::new(LEN);
    let s = Store::create_with(mem.region(LEN), 1, 0, sized(KEYS)).unwrap();
    let want = (KEYS + 1) * 2;
    // The first key starts the one growth, while there is nothing to move.
    assert_eq!(insert_counting_growths(&s, 0..1), 1);
    assert_eq!(insert_counting_growths(&s, 1..KEYS), 0);
    assert_eq!(t0_cap(&s), want);
    assert_eq!(s.region().u32(H_MIG_STATE).unwrap().load(Relaxed), MIG_NONE);
    // Another attachment reads the hint from the header.
    assert_eq!(mem.attach(LEN).limits().expected_keys, KEYS);

    // Emptied by deletes, the index is not rebuilt below the size asked for.
    for i in 10..KEYS {
        assert!(s.delete(&key(i)).unwrap());
    }
    insert_counting_growths(&s, KEYS..KEYS + 5_000);
    assert!(t0_cap(&s) >= want, "shrunk to {} slots", t0_cap(&s));

    // clear() makes a small table; the next new key sizes it again.
    s.clear().unwrap();
    assert!(t0_cap(&s) < want);
    assert_eq!(insert_counting_growths(&s, 0..KEYS), 1);
    assert_eq!(t0_cap(&s), want);

    // A hint the bytes cannot hold is capped at a quarter of maxBytes; the store still works.
    let mem = Mem::new(LEN);
    let s = Store::create_with(mem.region(LEN), 1, 0, sized(1 << 40)).unwrap();
    insert_counting_growths(&s, 0..KEYS);
    assert_eq!(t0_cap(&s), LEN as u64 / 4 / SLOT_SIZE);
    for i in (0..KEYS).step_by(997) {
        assert!(s.get(&key(i), &mut Vec::new()).unwrap().is_some());
    }
}
