//! Iteration during an index growth (rehash.rs: two tables while entries move, a cursor, the
//! finish): a scan that runs while writes move entries from the old table to the new, and while
//! the growth finishes and another one starts, loses no key and returns none twice once the
//! caller drops the repeats a restart brings (as `entries()` and `listKeys` do).
#![cfg(not(loom))]
mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering::Relaxed;

use common::Mem;
use shared_kv_store::layout::{H_MIG_STATE, MIG_MOVING};
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
