//! What a lookup's two cache misses cost in a large store file, and what the store adds to
//! them: the core alone (no Node).
//!
//! The floor of a set or get of a key not touched for a while is its cost at 1k keys plus two
//! dependent misses: the index slot, then the entry's block. A pointer chase over anonymous
//! memory of the same size measures less than this store file's own memory costs (here, at
//! 20M keys: two random loads 700 ns in anonymous arrays, 950 ns at the store's addresses), so
//! the misses are measured where they happen: for each key, the slot's word and the block's
//! first word, loaded at the store's own addresses and nothing else (`raw`), at N keys and at
//! 1k keys; their difference is what the two misses add.
//!
//!   N=20000000 cargo run --release --no-default-features --example scale_probe
//!       fills a store file of N small entries in /dev/shm (SKV_PROBE_DIR for another
//!       directory; about N x 50 bytes), then compares sets and gets at N and at 1k keys;
//!   SKV_PROBE_FILE=path N=... (the same example)
//!       measures only the loads, in a store file that already holds `key:0`..`key:<N-1>`
//!       (benchmark/scale.js, after its fill), and prints them as JSON.
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use shared_kv_store::hash::hash_key;
use shared_kv_store::memory::{FileOptions, Memory};
use shared_kv_store::table::{load_ref, load_slot, Tables};
use shared_kv_store::Store;

fn open(path: &str, max_bytes: u64, create: bool) -> (Memory, Store) {
    let opts = FileOptions {
        create,
        ..FileOptions::new(max_bytes)
    };
    let (m, _) = Memory::open_file(path, opts).expect("open the store file");
    let s = Store::attach(m.region()).expect("attach");
    (m, s)
}

/// `{ i }` as msgpack, as the JS benchmark stores it.
fn value(i: u64) -> Vec<u8> {
    let mut v = vec![0x81, 0xa1, b'i', 0xce];
    v.extend_from_slice(&(i as u32).to_be_bytes());
    v
}

/// `count` keys spread over `key:0`..`key:<n-1>`, none twice (as benchmark/scale.js).
fn keys(n: u64, salt: u64, count: u64) -> Vec<Vec<u8>> {
    (0..count)
        .map(|i| format!("key:{}", (i * 48271 + salt) % n).into_bytes())
        .collect()
}

fn ns_per(count: usize, f: impl FnOnce()) -> f64 {
    let t = Instant::now();
    f();
    t.elapsed().as_nanos() as f64 / count as f64
}

/// ns per key for the loads a lookup cannot avoid: the key's first slot, then the first word
/// of the block it names (hashing and the table header included; at 1k keys that is all).
/// Each key's loads wait for the last key's, as consecutive calls do: a loop of independent
/// lookups would let the CPU overlap the misses of several.
fn raw_loads(s: &Store, keys: &[Vec<u8>]) -> f64 {
    let r = s.region();
    let zero = std::hint::black_box(0usize); // 0, but the compiler cannot know it
    let mut last = 0usize;
    let ns = ns_per(keys.len(), || {
        for i in 0..keys.len() {
            let k = &keys[i ^ (last & zero)];
            let t = Tables::load(r).expect("tables");
            let at = t.t0.first_slot(hash_key(s.seed(), k) as u32);
            // The chain goes on through an empty first slot too (its word is all there is).
            last = match load_ref(r, at).expect("slot").block() {
                Some(b) => r.u32(b).expect("block").load(Relaxed) as usize,
                None => load_slot(r, at, Relaxed).expect("slot").1 as usize,
            };
        }
    });
    std::hint::black_box(last);
    ns
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

fn main() {
    let n: u64 = std::env::var("N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000_000);
    let dir = std::env::var("SKV_PROBE_DIR").unwrap_or_else(|_| "/dev/shm".into());
    let pid = std::process::id();
    let small_path = format!("{dir}/skv-probe-{pid}-1k.kv");
    let (_sm, small) = open(&small_path, 64 << 20, true);
    for i in 0..1000 {
        small
            .set(format!("key:{i}").as_bytes(), &value(i), false)
            .unwrap();
    }
    let existing = std::env::var("SKV_PROBE_FILE").ok();
    let big_path = existing
        .clone()
        .unwrap_or_else(|| format!("{dir}/skv-probe-{pid}.kv"));
    let big_len = std::fs::metadata(&big_path).map(|m| m.len()).unwrap_or(0);
    let (_bm, big) = open(
        &big_path,
        big_len.max((n * 128).max(1 << 30)),
        existing.is_none(),
    );
    if existing.is_none() {
        let t = Instant::now();
        for i in 0..n {
            big.set(format!("key:{i}").as_bytes(), &value(i), false)
                .unwrap();
        }
        // Finish a growth the fill started, with overwrites.
        let mut i = 0;
        while big.stats().unwrap().growing {
            big.set(format!("key:{i}").as_bytes(), &value(i), false)
                .unwrap();
            i += 1;
        }
        println!("fill of {n} keys: {:.1} s", t.elapsed().as_secs_f64());
    }
    if existing.is_some() {
        // This process has not touched the file yet: its first load of each page would take a
        // page fault, which the process that filled it never paid. One load a page first.
        let r = big.region();
        let top = shared_kv_store::arena::Arena { r: &r }.top().expect("top");
        let mut sum = 0u64;
        for off in (0..top.min(r.len())).step_by(4096) {
            sum = sum.wrapping_add(r.u64(off).expect("page").load(Relaxed));
        }
        std::hint::black_box(sum);
    }
    let (mut raw1k, mut raw_n) = (Vec::new(), Vec::new());
    let mut out = Vec::new();
    for round in 0..6u64 {
        raw1k.push(raw_loads(&small, &keys(1000, round, 20_000)));
        raw_n.push(raw_loads(&big, &keys(n, 13 + round * 1_000_003, 40_000)));
        if existing.is_some() {
            continue;
        }
        let k1 = keys(1000, round, 20_000);
        let set1k = ns_per(k1.len(), || {
            for (i, k) in k1.iter().enumerate() {
                small.set(k, &value(i as u64 + 1), false).unwrap();
            }
        });
        let ks = keys(n, 7 + round * 1_000_003, 40_000);
        let set_n = ns_per(ks.len(), || {
            for (i, k) in ks.iter().enumerate() {
                big.set(k, &value(i as u64 + 1), false).unwrap();
            }
        });
        let kg = keys(n, 11 + round * 1_000_003, 40_000);
        let get_n = ns_per(kg.len(), || {
            for k in &kg {
                big.get(k, &mut out).unwrap();
            }
        });
        let misses = raw_n[raw_n.len() - 1] - raw1k[raw1k.len() - 1];
        println!(
            "set at 1k {set1k:.0} ns; at {n}: set {set_n:.0}, get {get_n:.0} ns; the two misses \
             {misses:.0} ns; set / (set at 1k + misses) {:.2}",
            set_n / (set1k + misses)
        );
    }
    if existing.is_some() {
        println!(
            "{{\"rawLoads1k\":{:.1},\"rawLoadsN\":{:.1}}}",
            median(raw1k),
            median(raw_n)
        );
    } else {
        let _ = std::fs::remove_file(&big_path);
    }
    let _ = std::fs::remove_file(&small_path);
}
