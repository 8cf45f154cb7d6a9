//! The core's fuzz target, driven by proptest (runs on stable Rust, no cargo-fuzz needed):
//!
//! - random operation sequences against a model (a HashMap), on a region that starts small and
//!   grows on demand, with the integrity check after each sequence;
//! - random bytes written over a populated store (anywhere, or in one area), then random
//!   operations: each returns Ok or Err, none panics, hangs or reads outside the region.
//!
//! `cargo test` runs a bounded number of cases; for a longer run:
//! `PROPTEST_CASES=20000 cargo test --release --no-default-features --test fuzz`
mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::Mem;
use proptest::prelude::*;
use shared_kv_store::{layout, Change, Error, SetOptions, Store};

const MAX: usize = 4 << 20;

#[derive(Debug, Clone)]
enum Op {
    Set {
        key: u8,
        len: u16,
        fill: u8,
        refit: bool,
        immutable: bool,
        reserve: u16,
    },
    Delete(u8),
    Get(u8),
    Increment(u8, i8),
    CompareAndSet {
        key: u8,
        expect_current: bool,
        fill: u8,
    },
    Clear,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (any::<u8>(), 0..3000u16, any::<u8>(), any::<bool>(), any::<bool>(), prop_oneof![Just(0u16), 0..5000u16])
            .prop_map(|(key, len, fill, refit, immutable, reserve)| Op::Set { key, len, fill, refit, immutable, reserve }),
        3 => any::<u8>().prop_map(Op::Delete),
        3 => any::<u8>().prop_map(Op::Get),
        1 => (any::<u8>(), any::<i8>()).prop_map(|(k, d)| Op::Increment(k, d)),
        1 => (any::<u8>(), any::<bool>(), any::<u8>())
            .prop_map(|(key, expect_current, fill)| Op::CompareAndSet { key, expect_current, fill }),
        1 => Just(Op::Clear),
    ]
}

fn key(k: u8) -> Vec<u8> {
    // Short and long keys, so entries take short and long headers and many size classes.
    format!("key{k}-{}", "x".repeat(k as usize % 40)).into_bytes()
}

/// Runs `f`, growing the region (as the binding does) whenever the store asks.
fn grow_on_demand<T>(
    s: &mut Store,
    f: impl Fn(&Store) -> shared_kv_store::Result<T>,
) -> shared_kv_store::Result<T> {
    loop {
        match f(s) {
            Err(Error::NeedGrow { needed }) if needed as usize <= MAX => {
                let len = (needed as usize).next_multiple_of(65536).min(MAX);
                // SAFETY: Mem holds MAX bytes that outlive the store.
                unsafe { s.set_region_len(len) };
            }
            other => return other,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn operations_match_a_model(ops in prop::collection::vec(op(), 1..300)) {
        let mem = Mem::new(MAX);
        let mut s = Store::create(mem.region(layout::HEADER_SIZE as usize + 65536), 99).unwrap();
        let mut model: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
        let mut out = Vec::new();
        for op in ops {
            match op {
                Op::Set { key: k, len, fill, refit, immutable, reserve } => {
                    let value = vec![fill; len as usize];
                    let opts = SetOptions { refit, immutable, reserve: reserve as u64, expires_at: 0 };
                    grow_on_demand(&mut s, |s| s.set_with(&key(k), &value, &opts)).unwrap();
                    model.insert(key(k), value);
                }
                Op::Delete(k) => {
                    let gone = grow_on_demand(&mut s, |s| s.delete(&key(k))).unwrap();
                    prop_assert_eq!(gone, model.remove(&key(k)).is_some());
                }
                Op::Get(k) => {
                    let found = s.get(&key(k), &mut out).unwrap().is_some();
                    prop_assert_eq!(found.then_some(&out), model.get(&key(k)));
                }
                Op::Increment(k, d) => {
                    let k = format!("n{}", k % 4).into_bytes();
                    let r = grow_on_demand(&mut s, |s| s.increment(&k, d as f64));
                    match model.get(&k).map(|v| shared_kv_store::codec::decode(v)) {
                        None | Some(Ok(shared_kv_store::Value::Number(_))) => {
                            let sum = r.unwrap();
                            model.insert(k, shared_kv_store::codec::encode(&shared_kv_store::Value::Number(sum)).unwrap());
                        }
                        _ => prop_assert!(matches!(r, Err(Error::Type(_)))),
                    }
                }
                Op::CompareAndSet { key: k, expect_current, fill } => {
                    let current = model.get(&key(k)).cloned();
                    let expected = if expect_current { current.clone() } else { Some(vec![fill ^ 1; 3]) };
                    let next = vec![fill; 7];
                    let swapped = grow_on_demand(&mut s, |s| s.compare_and_set(&key(k), expected.as_deref(), &next)).unwrap();
                    prop_assert_eq!(swapped, expected == current);
                    if swapped {
                        model.insert(key(k), next);
                    }
                }
                Op::Clear => {
                    prop_assert_eq!(grow_on_demand(&mut s, |s| s.clear()).unwrap(), model.len() as u64);
                    model.clear();
                }
            }
        }
        for (k, v) in &model {
            prop_assert!(s.get(k, &mut out).unwrap().is_some());
            prop_assert_eq!(&out, v);
        }
        let check = s.check().unwrap();
        prop_assert_eq!(check.entries, model.len() as u64);
        prop_assert_eq!(check.bytes_used, s.stats().unwrap().bytes_used);
        // Deleting everything leaves the index alone in use.
        for k in model.keys() {
            prop_assert!(s.delete(k).unwrap());
        }
        let empty = s.check().unwrap();
        prop_assert_eq!((empty.entries, empty.bytes_used), (0, empty.index_bytes));
    }

    #[test]
    fn random_bytes_over_a_store_give_errors_never_panics(
        area in 0..4usize,
        writes in prop::collection::vec((any::<u32>(), any::<u64>()), 1..40),
        ops in prop::collection::vec(op(), 1..60),
    ) {
        const LEN: usize = 1 << 20;
        let mut mem = Mem::new(LEN);
        {
            let s = mem.create(LEN);
            for i in 0..200u32 {
                s.set(&key(i as u8), &i.to_le_bytes().repeat(i as usize % 50), i % 3 == 0).unwrap();
            }
            for i in (0..200u32).step_by(5) {
                s.delete(&key(i as u8)).unwrap();
            }
        }
        // Areas: anywhere; the header; the index; the data blocks.
        let (lo, hi) = [(0, 200_000), (0, 4096), (4096, 4096 + 8200), (12_296, 200_000)][area];
        let bytes = mem.as_mut_bytes();
        for (at, word) in writes {
            let at = lo + at as usize % (hi - lo);
            let n = (LEN - at).min(8);
            bytes[at..at + n].copy_from_slice(&word.to_ne_bytes()[..n]);
        }
        let Ok(mut s) = Store::attach(mem.region(LEN)) else { return Ok(()) };
        s.wait_timeout = Duration::from_millis(5);
        let mut out = Vec::new();
        for op in ops {
            let _ = match op {
                Op::Set { key: k, len, fill, refit, immutable, reserve } => {
                    let opts = SetOptions { refit, immutable, reserve: reserve as u64, expires_at: 0 };
                    s.set_with(&key(k), &vec![fill; len as usize], &opts).map(drop)
                }
                Op::Delete(k) => s.delete(&key(k)).map(drop),
                Op::Get(k) => s.get(&key(k), &mut out).map(drop),
                Op::Increment(k, d) => s.increment(&key(k), d as f64).map(drop),
                Op::CompareAndSet { key: k, fill, .. } => s
                    .modify(&key(k), |cur| Ok((if cur.is_some() { Change::Delete } else { Change::Set(vec![fill], None) }, ())))
                    .map(drop),
                Op::Clear => s.clear().map(drop),
            };
            let _ = s.scan(0, 0, 1000, |_, _| {});
            let _ = s.stats();
        }
        let _ = s.check();
    }
}
