//! Eviction in a full store formatted with `evict` (see src/evict.rs).
mod common;

use common::Mem;
use shared_kv_store::{Error, Limits, SetOptions, Store};

fn evicting(mem: &Mem, len: usize, max_entries: u64) -> Store {
    let limits = Limits {
        evict: true,
        max_entries,
        max_bytes: len as u64,
        expected_keys: 0,
    };
    Store::create_with(mem.region(len), 7, 0, limits).unwrap()
}

fn value(i: u64) -> Vec<u8> {
    format!("value of {i} {}", "x".repeat((i % 40) as usize)).into_bytes()
}

#[test]
fn max_entries_holds_while_writing_ten_times_as_many() {
    let mem = Mem::new(4 << 20);
    let s = evicting(&mem, mem.bytes(), 100);
    for i in 0..1000u64 {
        s.set(format!("k{i}").as_bytes(), &value(i), false).unwrap();
        assert!(s.stats().unwrap().entries <= 100);
    }
    let st = s.stats().unwrap();
    assert_eq!(st.entries, 100);
    assert_eq!(st.evictions, 900);
    assert_eq!(s.check().unwrap().entries, 100);
    // The most recent writes are there (nothing read: the hand evicts in its order).
    let mut out = Vec::new();
    assert!(s.get(b"k999", &mut out).unwrap().is_some());
}

#[test]
fn max_bytes_holds_while_writing_ten_times_as_much() {
    let len = 256 << 10;
    let mem = Mem::new(len);
    let s = evicting(&mem, len, 0);
    let mut written = 0u64;
    let mut i = 0u64;
    while written < 10 * len as u64 {
        let v = value(i);
        written += v.len() as u64;
        s.set(format!("k{i}").as_bytes(), &v, false)
            .unwrap_or_else(|e| panic!("write {i}: {e}"));
        i += 1;
    }
    let st = s.stats().unwrap();
    assert!(st.bytes_reserved <= len as u64);
    assert!(st.evictions > 0 && st.entries > 100, "{st:?}");
    let c = s.check().unwrap();
    assert_eq!(c.entries, st.entries);
    let mut out = Vec::new();
    for k in i - 20..i {
        assert!(
            s.get(format!("k{k}").as_bytes(), &mut out)
                .unwrap()
                .is_some(),
            "recent k{k} evicted"
        );
        assert_eq!(out, value(k));
    }
}

#[test]
fn entries_read_survive_a_stream_of_cold_writes() {
    let mem = Mem::new(4 << 20);
    let s = evicting(&mem, mem.bytes(), 200);
    let hot: Vec<Vec<u8>> = (0..20).map(|i| format!("hot{i}").into_bytes()).collect();
    for k in &hot {
        s.set(k, b"hot value", false).unwrap();
    }
    let mut out = Vec::new();
    for round in 0..50u64 {
        // Reads, marked in a batch as a thread would hand them over.
        let seen: Vec<(u64, u32)> = hot
            .iter()
            .filter_map(|k| s.get(k, &mut out).unwrap())
            .map(|v| (v.seq_offset, v.seq))
            .collect();
        assert_eq!(
            seen.len(),
            hot.len(),
            "round {round}: a read key was evicted"
        );
        s.mark_visited(&seen).unwrap();
        for i in 0..100u64 {
            s.set(format!("cold{round}:{i}").as_bytes(), b"cold value", false)
                .unwrap();
        }
    }
    assert!(s.stats().unwrap().evictions >= 4000);
    s.check().unwrap();
}

#[test]
fn expired_entries_go_first_and_throw_mode_refuses() {
    let mem = Mem::new(4 << 20);
    let mut s = evicting(&mem, mem.bytes(), 10);
    s.clock = || 1_000;
    for i in 0..5u64 {
        let opts = SetOptions {
            expires_at: 500,
            ..SetOptions::default()
        }; // already expired
        s.set_with(format!("old{i}").as_bytes(), b"x", &opts)
            .unwrap();
    }
    for i in 0..10u64 {
        s.set(format!("live{i}").as_bytes(), b"y", false).unwrap();
    }
    let st = s.stats().unwrap();
    assert_eq!((st.entries, st.expired, st.evictions), (10, 5, 0), "{st:?}");

    let mem2 = Mem::new(4 << 20);
    let limits = Limits {
        evict: false,
        max_entries: 3,
        max_bytes: mem2.bytes() as u64,
        expected_keys: 0,
    };
    let t = Store::create_with(mem2.region(mem2.bytes()), 7, 0, limits).unwrap();
    for i in 0..3u64 {
        t.set(format!("k{i}").as_bytes(), b"v", false).unwrap();
    }
    assert_eq!(
        t.set(b"k3", b"v", false),
        Err(Error::AtCapacity { max_entries: 3 })
    );
    t.set(b"k0", b"overwrite is fine", false).unwrap();
    assert_eq!(t.stats().unwrap().entries, 3);
    t.check().unwrap();
}

#[test]
fn locks_are_never_evicted() {
    let mem = Mem::new(4 << 20);
    let s = evicting(&mem, mem.bytes(), 20);
    for i in 0..10u64 {
        s.set(format!("\0lock\0job{i}").as_bytes(), b"owner", false)
            .unwrap();
    }
    for i in 0..1000u64 {
        s.set(format!("k{i}").as_bytes(), &value(i), false).unwrap();
    }
    let mut out = Vec::new();
    for i in 0..10u64 {
        assert!(
            s.get(format!("\0lock\0job{i}").as_bytes(), &mut out)
                .unwrap()
                .is_some(),
            "lock {i} evicted"
        );
    }
    assert_eq!(s.stats().unwrap().entries, 20);
}

#[test]
fn a_store_whose_every_entry_was_read_still_makes_room() {
    let mem = Mem::new(4 << 20);
    let s = evicting(&mem, mem.bytes(), 50);
    let mut out = Vec::new();
    for i in 0..50u64 {
        s.set(format!("k{i}").as_bytes(), &value(i), false).unwrap();
    }
    let seen: Vec<(u64, u32)> = (0..50u64)
        .filter_map(|i| s.get(format!("k{i}").as_bytes(), &mut out).unwrap())
        .map(|v| (v.seq_offset, v.seq))
        .collect();
    s.mark_visited(&seen).unwrap(); // every entry fully marked
    s.set(b"new", b"value", false).unwrap();
    assert_eq!(s.stats().unwrap().evictions, 1);
    s.check().unwrap();
}

#[test]
fn a_write_that_cannot_fit_gives_up_without_emptying_the_store() {
    let len = 256 << 10;
    let mem = Mem::new(len);
    let s = evicting(&mem, len, 0);
    let mut i = 0u64;
    while s.stats().unwrap().evictions == 0 {
        s.set(format!("k{i}").as_bytes(), &value(i), false).unwrap();
        i += 1;
    }
    let before = s.stats().unwrap().entries;
    // A value of a size class no entry has, larger than any free space at the top.
    let big = vec![7u8; 40 << 10];
    match s.set(b"big", &big, false) {
        Err(Error::Full { .. }) => {
            let after = s.stats().unwrap().entries;
            assert!(
                before - after <= 300,
                "evicted {} entries for nothing",
                before - after
            );
        }
        Ok(()) => {} // room was made at the top: fine too
        Err(e) => panic!("{e}"),
    }
    // Larger than half the store: refused at once.
    let huge = vec![7u8; 200 << 10];
    let entries = s.stats().unwrap().entries;
    assert!(matches!(
        s.set(b"huge", &huge, false),
        Err(Error::Full { .. })
    ));
    assert_eq!(s.stats().unwrap().entries, entries);
    s.check().unwrap();
}

#[test]
fn a_max_entries_the_bytes_cannot_hold_does_not_block_inserts() {
    let len = 1 << 20;
    let mem = Mem::new(len);
    let s = evicting(&mem, len, 10_000_000);
    for i in 0..20_000u64 {
        s.set(format!("k{i}").as_bytes(), &value(i), false)
            .unwrap_or_else(|e| panic!("insert {i}: {e}"));
    }
    assert!(s.stats().unwrap().entries > 1000);
    s.check().unwrap();
}

#[test]
fn untrusted_marks_never_write_outside_live_slots() {
    let mem = Mem::new(4 << 20);
    let s = evicting(&mem, mem.bytes(), 100);
    s.set(b"a", b"1", false).unwrap();
    let marks: Vec<(u64, u32)> = (0..2000u64)
        .map(|i| {
            (
                i.wrapping_mul(0x9e37_79b9_7f4a_7c15) % (8 << 20),
                (i as u32) << 1,
            )
        })
        .chain([(u64::MAX, 0), (0, 0), (4096, 0)])
        .collect();
    assert!(s.mark_visited(&marks).unwrap());
    s.check().unwrap();
    let mut out = Vec::new();
    assert!(s.get(b"a", &mut out).unwrap().is_some());
}

/// While free fragments hold more than 1/64 of maxBytes, a write that must evict starts its
/// window at one of the largest fragments (evict.rs) but stops short of an entry read since
/// the hand last passed it: the entry right after the largest fragment survives, and the write
/// goes where a smaller fragment and an entry nobody read make room.
#[test]
fn a_window_from_a_fragment_spares_an_entry_just_read() {
    let len = 1 << 20;
    let mem = Mem::new(len);
    let s = evicting(&mem, len, 0);
    let v = vec![7u8; 8000];
    let mut n = 0u64;
    while s.stats().unwrap().evictions == 0 {
        s.set(format!("e{n}").as_bytes(), &v, false).unwrap();
        n += 1;
    }
    let mut out = Vec::new();
    let held = |k: &str, out: &mut Vec<u8>| s.get(k.as_bytes(), out).unwrap();
    for i in 40..58 {
        assert!(
            held(&format!("e{i}"), &mut out).is_some(),
            "e{i} was the first victim"
        );
    }
    // One fragment of two entries, then the entry read; four fragments of one entry each.
    for k in ["e40", "e41", "e50", "e52", "e54", "e56"] {
        assert!(s.delete(k.as_bytes()).unwrap());
    }
    assert!(
        s.check().unwrap().largest_free >= 16_000,
        "e40 and e41 were not neighbours"
    );
    let read = held("e42", &mut out).unwrap();
    s.mark_visited(&[(read.seq_offset, read.seq)]).unwrap();
    let evictions = s.stats().unwrap().evictions;
    s.set(b"big", &vec![9u8; 20_000], false).unwrap();
    assert!(held("big", &mut out).is_some());
    assert!(
        held("e42", &mut out).is_some(),
        "the entry just read was evicted"
    );
    assert!(
        s.stats().unwrap().evictions > evictions,
        "the write evicted nothing"
    );
    s.check().unwrap();
}
