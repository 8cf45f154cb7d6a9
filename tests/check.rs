//! `check()` sees every lost or hidden entry, and recovery repairs a slot whose tag is not its
//! key's: each corruption is made by hand, in a store that was whole.
#![cfg(not(loom))]
mod common;

use common::Mem;
use shared_kv_store::hash::hash_key;
use shared_kv_store::layout::*;
use shared_kv_store::table::{load_ref, Find, Ref, Table, Tables};
use shared_kv_store::Store;

const LEN: usize = 1 << 20;

fn filled(mem: &Mem) -> Store {
    let s = mem.create(LEN);
    for i in 0..200 {
        s.set(format!("key{i}").as_bytes(), &[i as u8; 20], false)
            .unwrap();
    }
    s.check().unwrap();
    s
}

/// The slot and block of `key`.
fn slot_of(s: &Store, key: &[u8]) -> (u64, u64) {
    let r = s.region();
    let hash = hash_key(s.seed(), key) as u32;
    match Tables::load(r).unwrap().find(r, key, hash).unwrap() {
        Find::Found(slot) => (slot.at, slot.block),
        Find::Vacant(_) => panic!("{key:?} is stored"),
    }
}

fn tag(s: &Store, key: &[u8]) -> u32 {
    hash_key(s.seed(), key) as u32 & 7
}

fn check_error(s: &Store) -> String {
    match s.check() {
        Ok(c) => panic!("check passed: {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_slot_with_another_keys_tag_is_named() {
    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let (at, block) = slot_of(&s, b"key7");
    let wrong = (tag(&s, b"key7") + 1) % 8;
    Table::publish(s.region(), at, Ref::Live { block, tag: wrong }).unwrap();
    let e = check_error(&s);
    assert!(e.contains("tag") && e.contains("key7"), "{e}");
}

#[test]
fn a_key_past_an_empty_slot_of_its_probe_is_named_unreachable() {
    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let r = s.region();
    let (at, block) = slot_of(&s, b"key9");
    let t0 = Tables::load(r).unwrap().t0;
    // An empty slot where the probe begins, the entry moved past it: every lookup stops there.
    let start = t0.off + start_slot(hash_key(s.seed(), b"key9") as u32, t0.cap) * SLOT_SIZE;
    let mut to = start;
    while load_ref(r, to).unwrap() != Ref::Empty {
        to = t0.off + ((to - t0.off) / SLOT_SIZE + 1) % t0.cap * SLOT_SIZE;
    }
    let after = t0.off + ((to - t0.off) / SLOT_SIZE + 1) % t0.cap * SLOT_SIZE;
    assert_eq!(load_ref(r, after).unwrap(), Ref::Empty, "a sparse table");
    Table::publish(r, at, Ref::Empty).unwrap();
    Table::publish(
        r,
        after,
        Ref::live(block, hash_key(s.seed(), b"key9") as u32),
    )
    .unwrap();
    // (The moved-from slot may have been the empty one's predecessor: the count is unchanged.)
    let e = check_error(&s);
    assert!(e.contains("unreachable") && e.contains("key9"), "{e}");
}

#[test]
fn a_key_live_twice_is_named() {
    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let r = s.region();
    // key3's block rewritten to hold key5 (same length), with key5's tag: two live key5s.
    let (at, block) = slot_of(&s, b"key3");
    let h = shared_kv_store::arena::read_header(r, block).unwrap();
    r.write(block + h.header_len, b"key5").unwrap();
    Table::publish(r, at, Ref::live(block, hash_key(s.seed(), b"key5") as u32)).unwrap();
    let e = check_error(&s);
    assert!(e.contains("live twice") && e.contains("key5"), "{e}");
}

#[test]
fn a_block_no_slot_references_and_one_two_slots_reference_are_named() {
    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let (at, _) = slot_of(&s, b"key11");
    Table::publish(s.region(), at, Ref::Tombstone).unwrap();
    let e = check_error(&s);
    assert!(e.contains("not in the index"), "{e}");

    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let r = s.region();
    let (_, block) = slot_of(&s, b"key12");
    let t0 = Tables::load(r).unwrap().t0;
    let empty = (0..t0.cap)
        .map(|i| t0.off + i * SLOT_SIZE)
        .find(|&at| load_ref(r, at).unwrap() == Ref::Empty)
        .unwrap();
    Table::publish(
        r,
        empty,
        Ref::live(block, hash_key(s.seed(), b"key12") as u32),
    )
    .unwrap();
    // Whichever slot the check meets first: its block is another's, or its key is.
    let e = check_error(&s);
    assert!(
        e.contains("no block of its own") || e.contains("live twice"),
        "{e}"
    );
}

#[test]
fn recovery_repairs_a_wrong_tag_and_counts_it() {
    let mem = Mem::new(LEN);
    let s = filled(&mem);
    let r = s.region();
    let (at, block) = slot_of(&s, b"key21");
    let wrong = (tag(&s, b"key21") + 3) % 8;
    Table::publish(r, at, Ref::Live { block, tag: wrong }).unwrap();
    let mut out = Vec::new();
    assert!(
        s.get(b"key21", &mut out).unwrap().is_none(),
        "hidden by its tag"
    );
    // A writer of another process died holding the lock: the next write recovers.
    let dead = shared_kv_store::holder::me() ^ (1 << 40);
    r.u64(H_WRITE_LOCK)
        .unwrap()
        .store(dead, std::sync::atomic::Ordering::Relaxed);
    s.set(b"after", b"x", false).unwrap();
    let st = s.stats().unwrap();
    assert_eq!((st.recoveries, st.repairs), (1, 1));
    s.check().unwrap();
    assert!(s.get(b"key21", &mut out).unwrap().is_some());
    assert_eq!(out, [21; 20]);
}
