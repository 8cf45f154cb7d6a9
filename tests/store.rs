mod common;

use common::{Mem, Rng};
use shared_kv_store::{layout, Error, Store};

const MIB: usize = 1 << 20;

fn get(s: &Store, k: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    s.get(k.as_bytes(), &mut out).unwrap().map(|_| out)
}

#[test]
fn set_get_overwrite_delete() {
    let mem = Mem::new(MIB);
    let s = mem.create(MIB);
    assert_eq!(get(&s, "a"), None);
    s.set(b"a", b"one", false).unwrap();
    assert_eq!(get(&s, "a").as_deref(), Some(&b"one"[..]));
    s.set(b"a", b"a longer value that needs a new block", false)
        .unwrap();
    assert_eq!(
        get(&s, "a").as_deref(),
        Some(&b"a longer value that needs a new block"[..])
    );
    s.set(b"a", b"", false).unwrap();
    assert_eq!(get(&s, "a").as_deref(), Some(&b""[..]));
    s.set(b"", b"empty key", false).unwrap();
    assert_eq!(get(&s, "").as_deref(), Some(&b"empty key"[..]));
    assert!(s.delete(b"a").unwrap());
    assert!(!s.delete(b"a").unwrap());
    assert_eq!(get(&s, "a"), None);
    assert_eq!(s.stats().unwrap().entries, 1);
}

#[test]
fn versions_change_on_every_write() {
    let mem = Mem::new(MIB);
    let s = mem.create(MIB);
    let mut out = Vec::new();
    s.set(b"k", b"1", false).unwrap();
    let v1 = s.get(b"k", &mut out).unwrap().unwrap();
    assert_eq!(
        s.get(b"k", &mut out).unwrap(),
        Some(v1),
        "reads do not change the version"
    );
    s.set(b"k", b"2", false).unwrap();
    let v2 = s.get(b"k", &mut out).unwrap().unwrap();
    s.set(b"k", &[7; 300], false).unwrap();
    let v3 = s.get(b"k", &mut out).unwrap().unwrap();
    assert!(v1 != v2 && v2 != v3 && v1 != v3);
}

#[test]
fn refit_moves_a_shrunk_value_to_a_smaller_block() {
    let mem = Mem::new(MIB);
    let s = mem.create(MIB);
    s.set(b"k", &[1; 10_000], false).unwrap();
    let big = s.stats().unwrap().bytes_used;
    s.set(b"k", b"small", false).unwrap();
    assert_eq!(
        s.stats().unwrap().bytes_used,
        big,
        "reuses the larger block in place"
    );
    s.set(b"k", b"small", true).unwrap();
    assert!(
        s.stats().unwrap().bytes_used < big - 9_000,
        "refit releases the slack"
    );
    assert_eq!(get(&s, "k").as_deref(), Some(&b"small"[..]));
}

#[test]
fn space_is_reused_and_accounting_returns_to_the_index_alone() {
    let mem = Mem::new(8 * MIB);
    let s = mem.create(8 * MIB);
    let empty = s.stats().unwrap().bytes_used;
    for round in 0..5 {
        for i in 0..2000 {
            s.set(
                format!("key{i}").as_bytes(),
                &vec![round as u8; i % 300],
                false,
            )
            .unwrap();
        }
        for i in 0..2000 {
            assert!(s.delete(format!("key{i}").as_bytes()).unwrap());
        }
    }
    let st = s.stats().unwrap();
    assert_eq!(st.entries, 0);
    // Only the (grown) index block is left in use.
    let index_block = shared_kv_store::layout::align_up(
        st.index_slots * shared_kv_store::layout::SLOT_SIZE
            + shared_kv_store::layout::INTERNAL_HEADER,
        8,
    );
    assert_eq!(st.bytes_used, index_block);
    assert!(index_block >= empty);
    assert!(
        st.bytes_reserved < 4 * MIB as u64,
        "freed blocks were reused: {st:?}"
    );
}

#[test]
fn asks_to_grow_then_succeeds_after_growing_and_keeps_everything() {
    let mem = Mem::new(64 * MIB);
    let mut len = MIB;
    let mut s = mem.create(len);
    let value = vec![42u8; 5000];
    for i in 0..10_000 {
        let key = format!("k{i}");
        loop {
            match s.set(key.as_bytes(), &value, false) {
                Ok(()) => break,
                Err(Error::NeedGrow { needed }) => {
                    assert!(needed as usize > len);
                    len = (needed as usize).max(len * 2).min(mem.bytes());
                    // SAFETY: mem holds 64 MiB that stays put.
                    unsafe { s.set_region_len(len) };
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert!(len > 32 * MIB);
    for i in 0..10_000 {
        assert_eq!(get(&s, &format!("k{i}")).unwrap(), value);
    }
    // Another thread's view with the old length reports OutOfBounds (so its binding refreshes
    // the length and retries), never garbage and never "corrupted".
    let mut stale = mem.attach(MIB);
    let mut out = Vec::new();
    for i in 0..100 {
        match stale.get(format!("k{i}").as_bytes(), &mut out) {
            Ok(Some(_)) => assert_eq!(out, value),
            Ok(None) => panic!("stale view lost a key"),
            Err(Error::OutOfBounds { .. }) => {}
            Err(e) => panic!("stale view: {e}"),
        }
        assert!(matches!(
            stale.set(b"x", b"y", false),
            Ok(()) | Err(Error::OutOfBounds { .. }) | Err(Error::NeedGrow { .. })
        ));
    }
    // After catching up, it sees everything.
    // SAFETY: len bytes of mem are valid.
    unsafe { stale.set_region_len(len) };
    for i in 0..10_000 {
        assert_eq!(get(&stale, &format!("k{i}")).unwrap(), value);
    }
}

#[test]
fn key_length_limit() {
    let mem = Mem::new(MIB);
    let s = mem.create(MIB);
    let long = vec![b'k'; shared_kv_store::layout::MAX_KEY_BYTES + 1];
    assert!(matches!(
        s.set(&long, b"v", false),
        Err(Error::KeyTooLong { .. })
    ));
    s.set(&long[1..], b"v", false).unwrap();
}

#[test]
fn typed_access_through_rmp_serde() {
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct User {
        id: u32,
        name: String,
        tags: Vec<String>,
    }
    let mem = Mem::new(MIB);
    let s = mem.create(MIB);
    let u = User {
        id: 7,
        name: "Ada".into(),
        tags: vec!["a".into(), "b".into()],
    };
    s.set_as("user", &u).unwrap();
    assert_eq!(s.get_as::<User>("user").unwrap(), Some(u));
    // The bytes are the store's own value format: the Rust codec reads them as a plain object.
    let mut out = Vec::new();
    s.get(b"user", &mut out).unwrap();
    let v = shared_kv_store::codec::decode(&out).unwrap();
    assert!(matches!(v, shared_kv_store::Value::Object(ref f) if f.len() == 3 && f[1].0 == "name"));
}

#[test]
fn many_keys_force_index_rebuilds_without_losing_any() {
    let mem = Mem::new(64 * MIB);
    let s = mem.create(64 * MIB);
    let mut rng = Rng(1);
    let mut model = std::collections::HashMap::new();
    for step in 0..60_000u32 {
        let key = format!("k{}", rng.below(20_000));
        if rng.below(4) == 0 {
            assert_eq!(
                s.delete(key.as_bytes()).unwrap(),
                model.remove(&key).is_some()
            );
        } else {
            let val = step.to_le_bytes().repeat(rng.below(40) as usize);
            s.set(key.as_bytes(), &val, rng.below(8) == 0).unwrap();
            model.insert(key, val);
        }
    }
    assert_eq!(s.stats().unwrap().entries, model.len() as u64);
    for (k, v) in &model {
        assert_eq!(get(&s, k).as_ref(), Some(v), "{k}");
    }
    let check = s.check().unwrap();
    assert_eq!(check.entries, model.len() as u64);
    assert_eq!(check.bytes_used, s.stats().unwrap().bytes_used);
}

/// The byte offset of the first slot of the index that holds an entry.
fn first_live_slot(b: &[u8]) -> usize {
    let at = layout::H_T0 as usize;
    let t0 = u64::from_ne_bytes(b[at..at + 8].try_into().unwrap());
    let slots = (t0 + layout::INTERNAL_HEADER) as usize;
    (0..1024)
        .map(|i| slots + i * 8)
        .find(|&at| {
            u64::from(u32::from_ne_bytes(b[at + 4..at + 8].try_into().unwrap()))
                > layout::REF_TOMBSTONE
        })
        .unwrap()
}

#[test]
fn the_integrity_check_finds_each_kind_of_damage() {
    let mut mem = Mem::new(MIB);
    {
        let s = mem.create(MIB);
        for i in 0..50 {
            s.set(format!("key{i}").as_bytes(), &[i as u8; 40], false)
                .unwrap();
        }
        for i in 0..10 {
            s.delete(format!("key{i}").as_bytes()).unwrap();
        }
        let c = s.check().unwrap();
        assert_eq!(
            (c.entries, c.bytes_used),
            (40, s.stats().unwrap().bytes_used)
        );
        assert!(c.bytes_free > 0, "deleted blocks are on free lists: {c:?}");
    }
    let pristine = mem.as_mut_bytes().to_vec();
    let damage: [(&str, fn(&mut [u8])); 4] = [
        ("header", |b| b[layout::H_BYTES_IN_USE as usize] ^= 8),
        ("entry count", |b| b[layout::H_LIVE as usize] ^= 1),
        ("slot mid-write", |b| {
            // Make the first live slot's SEQ odd, as a writer killed mid-write would leave it.
            b[first_live_slot(b)] |= 1;
        }),
        ("lost block", |b| {
            let at = first_live_slot(b);
            b[at + 4..at + 8].copy_from_slice(&[0; 4]);
        }),
    ];
    for (what, f) in damage {
        mem.as_mut_bytes().copy_from_slice(&pristine);
        f(mem.as_mut_bytes());
        let s = mem.attach(MIB);
        assert!(
            matches!(s.check(), Err(shared_kv_store::Error::Corrupted(_))),
            "{what}: {:?}",
            s.check()
        );
    }
}

/// The check the JS read cache makes: SEQ word still equal, then the epoch still equal.
fn still_current(s: &Store, v: shared_kv_store::Version) -> bool {
    use std::sync::atomic::Ordering::SeqCst;
    let r = s.region();
    r.u32(v.seq_offset).unwrap().load(SeqCst) == v.seq
        && r.u32(shared_kv_store::layout::H_TABLE_EPOCH)
            .unwrap()
            .load(SeqCst)
            == v.epoch
}

#[test]
fn a_version_stays_current_until_its_entry_changes_or_the_index_moves() {
    let mem = Mem::new(16 * MIB);
    let s = mem.create(16 * MIB);
    let mut out = Vec::new();
    s.set(b"k", b"1", false).unwrap();
    let v = s.get(b"k", &mut out).unwrap().unwrap();
    s.set(b"other", b"x", false).unwrap();
    s.delete(b"other").unwrap();
    assert!(
        still_current(&s, v),
        "writes to other keys leave it current"
    );

    s.set(b"k", b"2", false).unwrap(); // in place
    assert!(!still_current(&s, v));
    let v = s.get(b"k", &mut out).unwrap().unwrap();
    s.set(b"k", &[9; 500], false).unwrap(); // moved to a new block
    assert!(!still_current(&s, v));
    let v = s.get(b"k", &mut out).unwrap().unwrap();
    s.delete(b"k").unwrap();
    assert!(!still_current(&s, v));
    s.set(b"k", b"1", false).unwrap(); // same bytes again, possibly in the same slot
    assert!(
        !still_current(&s, v),
        "re-inserting the same value is a new version"
    );

    let v = s.get(b"k", &mut out).unwrap().unwrap();
    for i in 0..5000 {
        s.set(format!("fill{i}").as_bytes(), b"x", false).unwrap(); // forces index rebuilds
    }
    assert!(!still_current(&s, v), "the index moved");
    let v2 = s.get(b"k", &mut out).unwrap().unwrap();
    assert!(still_current(&s, v2));
    assert_eq!(out, b"1");
}

#[test]
fn values_cross_between_short_and_long_headed_blocks() {
    let mem = Mem::new(16 * MIB);
    let s = mem.create(16 * MIB);
    let mut out = Vec::new();
    // Around the largest short-header class (64 KiB), in place and not, with and without refit.
    for (i, len) in [
        10, 65_500, 65_524, 65_530, 65_536, 70_000, 65_520, 3, 200_000, 65_529,
    ]
    .into_iter()
    .enumerate()
    {
        let value: Vec<u8> = (0..len).map(|j| (j * 7 + i) as u8).collect();
        s.set(b"edge", &value, i % 3 == 0).unwrap();
        s.get(b"edge", &mut out).unwrap().unwrap();
        assert_eq!(out, value, "length {len}");
    }
    assert!(s.delete(b"edge").unwrap());
    assert_eq!(s.stats().unwrap().entries, 0);
}

#[test]
fn increment_compare_and_set_clear_and_scan() {
    use shared_kv_store::{codec, Value};
    let mem = Mem::new(4 * MIB);
    let s = mem.create(4 * MIB);
    assert_eq!(s.increment(b"n", 5.0).unwrap(), 5.0, "absent counts as 0");
    assert_eq!(s.increment(b"n", -1.5).unwrap(), 3.5);
    s.set(
        b"str",
        &codec::encode(&Value::String("x".into())).unwrap(),
        false,
    )
    .unwrap();
    assert!(matches!(s.increment(b"str", 1.0), Err(Error::Type(_))));

    let one = codec::encode(&Value::Number(1.0)).unwrap();
    let two = codec::encode(&Value::Number(2.0)).unwrap();
    assert!(
        s.compare_and_set(b"c", None, &one).unwrap(),
        "insert if absent"
    );
    assert!(!s.compare_and_set(b"c", None, &two).unwrap());
    assert!(!s.compare_and_set(b"c", Some(&two), &two).unwrap());
    assert!(s.compare_and_set(b"c", Some(&one), &two).unwrap());
    assert_eq!(get(&s, "c").unwrap(), two);

    for i in 0..3000 {
        s.set(format!("k{i}").as_bytes(), &[i as u8; 20], false)
            .unwrap();
    }
    let (mut seen, mut epoch, mut at) = (std::collections::HashSet::new(), 0, Some(0));
    while let Some(from) = at {
        let (e, next) = s
            .scan(epoch, from, 500, |k, v| {
                assert!(seen.insert(k.to_vec()), "each key once when nothing moves");
                assert!(!v.is_empty());
            })
            .unwrap();
        (epoch, at) = (e, next);
    }
    assert_eq!(seen.len() as u64, s.stats().unwrap().entries);
    let used_before = s.stats().unwrap().bytes_used;
    assert_eq!(s.clear().unwrap(), 3003);
    let st = s.stats().unwrap();
    assert_eq!(st.entries, 0);
    assert!(st.bytes_used < used_before / 10, "blocks freed: {st:?}");
    assert_eq!(get(&s, "k5"), None);
    s.set(b"after", b"1", false).unwrap();
    assert_eq!(get(&s, "after").as_deref(), Some(&b"1"[..]));
}

#[test]
fn increments_from_several_threads_add_up_exactly() {
    let mem = Mem::new(4 * MIB);
    let len = mem.bytes();
    mem.create(len);
    std::thread::scope(|scope| {
        for _ in 0..4 {
            scope.spawn(|| {
                let s = mem.attach(len);
                for _ in 0..10_000 {
                    s.increment(b"counter", 1.0).unwrap();
                }
            });
        }
    });
    assert_eq!(
        mem.attach(len).increment(b"counter", 0.0).unwrap(),
        40_000.0
    );
}

static NOW: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1_000_000);
fn test_clock() -> u64 {
    NOW.load(std::sync::atomic::Ordering::SeqCst)
}

#[test]
fn expired_entries_are_absent_everywhere_and_reclaimed() {
    use shared_kv_store::SetOptions;
    use std::sync::atomic::Ordering::SeqCst;
    let mem = Mem::new(4 * MIB);
    let mut s = mem.create(4 * MIB);
    s.clock = test_clock;
    let t0 = NOW.load(SeqCst);
    let ttl = |ms| SetOptions {
        expires_at: t0 + ms,
        ..SetOptions::default()
    };
    s.set_with(b"t", b"short-lived", &ttl(100)).unwrap();
    s.set(b"plain", b"stays", false).unwrap();
    assert_eq!(get(&s, "t").as_deref(), Some(&b"short-lived"[..]));
    NOW.store(t0 + 99, SeqCst);
    assert!(get(&s, "t").is_some(), "not yet");
    NOW.store(t0 + 100, SeqCst);
    assert_eq!(get(&s, "t"), None, "expired from that moment");
    let mut keys = Vec::new();
    let _ = s.scan(0, 0, 100, |k, _| keys.push(k.to_vec())).unwrap();
    assert_eq!(keys, vec![b"plain".to_vec()], "iteration skips it");
    assert_eq!(
        s.increment(b"t", 1.0).unwrap(),
        1.0,
        "an expired value counts as absent"
    );
    assert!(get(&s, "t").is_some());

    // Expiry survives increments; a plain set removes it.
    NOW.store(t0, SeqCst);
    s.set_with(
        b"c",
        &shared_kv_store::codec::encode(&shared_kv_store::Value::Number(1.0)).unwrap(),
        &ttl(50),
    )
    .unwrap();
    s.increment(b"c", 1.0).unwrap();
    NOW.store(t0 + 60, SeqCst);
    assert_eq!(get(&s, "c"), None, "increment kept the expiry");
    NOW.store(t0, SeqCst);
    s.set_with(b"c", b"x", &ttl(50)).unwrap();
    s.set(b"c", b"y", false).unwrap();
    NOW.store(t0 + 1_000_000, SeqCst);
    assert_eq!(
        get(&s, "c").as_deref(),
        Some(&b"y"[..]),
        "a plain set made it permanent"
    );

    // delete of an expired key says absent but reclaims; writes sweep expired entries.
    NOW.store(t0, SeqCst);
    for i in 0..200 {
        s.set_with(format!("e{i}").as_bytes(), b"v", &ttl(10))
            .unwrap();
    }
    let before = s.stats().unwrap().entries;
    NOW.store(t0 + 20, SeqCst);
    assert!(!s.delete(b"e0").unwrap());
    for i in 0..2000 {
        s.set(b"writer", &[i as u8], false).unwrap();
    }
    assert!(
        s.stats().unwrap().entries < before - 150,
        "the bounded sweep reclaimed them"
    );
}

#[test]
fn reserve_keeps_growing_values_in_place_and_immutable_always_moves() {
    use shared_kv_store::SetOptions;
    let mem = Mem::new(4 * MIB);
    let s = mem.create(4 * MIB);
    let reserve = SetOptions {
        reserve: 2000,
        ..SetOptions::default()
    };
    s.set_with(b"r", b"small", &reserve).unwrap();
    let used = s.stats().unwrap().bytes_used;
    let mut out = Vec::new();
    let v1 = s.get(b"r", &mut out).unwrap().unwrap();
    s.set(b"r", &[7; 1900], false).unwrap();
    let v2 = s.get(b"r", &mut out).unwrap().unwrap();
    assert_eq!(
        s.stats().unwrap().bytes_used,
        used,
        "rewritten in the reserved space"
    );
    assert_eq!(v1.seq_offset, v2.seq_offset);
    assert_eq!(out, vec![7; 1900]);
    let immutable = SetOptions {
        immutable: true,
        ..SetOptions::default()
    };
    s.set(b"i", b"one", false).unwrap();
    let top = s.stats().unwrap().bytes_reserved;
    s.set_with(b"i", b"two", &immutable).unwrap();
    assert!(
        s.stats().unwrap().bytes_reserved > top,
        "written to new space"
    );
    assert_eq!(get(&s, "i").as_deref(), Some(&b"two"[..]));
}

/// Found by the fuzz target: clear() used to free every entry and then fail to allocate its
/// new index (NeedGrow), so the retry after growing returned 0 and left tombstones uncounted.
#[test]
fn clear_that_needs_to_grow_changes_nothing_until_it_can() {
    let mem = Mem::new(MIB);
    let len = layout::HEADER_SIZE as usize + 24 * 1024;
    let mut s = Store::create(mem.region(len), 3).unwrap();
    let mut n = 0;
    while s.set(format!("k{n}").as_bytes(), &[1; 100], false).is_ok() {
        n += 1;
    }
    assert!(matches!(s.clear(), Err(Error::NeedGrow { .. })));
    assert_eq!(s.stats().unwrap().entries, n, "nothing was removed");
    assert_eq!(get(&s, "k0"), Some(vec![1; 100]));
    s.check().unwrap();
    // SAFETY: mem holds a MiB that outlives the store.
    unsafe { s.set_region_len(MIB) };
    assert_eq!(s.clear().unwrap(), n);
    let c = s.check().unwrap();
    assert_eq!((c.entries, c.bytes_used), (0, c.index_bytes));
}

/// Found by the fuzz target: forged entry counts overflowed the load-factor arithmetic.
#[test]
fn forged_entry_counts_are_an_error_not_an_overflow() {
    let mut mem = Mem::new(MIB);
    mem.create(MIB).set(b"a", b"1", false).unwrap();
    let at = layout::H_LIVE as usize;
    mem.as_mut_bytes()[at..at + 8].copy_from_slice(&u64::MAX.to_ne_bytes());
    let s = mem.attach(MIB);
    assert!(matches!(s.set(b"b", b"2", false), Err(Error::Corrupted(_))));
    assert_eq!(get(&s, "a"), Some(b"1".to_vec()));
}

/// A forged odd SEQ looks like a write in progress; with the writer lock free it cannot be
/// one, so readers report corruption at once instead of waiting out their timeout.
#[test]
fn a_slot_marked_mid_write_with_no_writer_is_corruption_not_a_wait() {
    let mut mem = Mem::new(MIB);
    mem.create(MIB).set(b"a", b"1", false).unwrap();
    let at = first_live_slot(mem.as_mut_bytes());
    mem.as_mut_bytes()[at] |= 1;
    let s = mem.attach(MIB); // default 10 s wait timeout: a wait would show as a slow test
    let mut out = Vec::new();
    assert!(matches!(s.get(b"a", &mut out), Err(Error::Corrupted(_))));
    assert!(matches!(
        s.scan(0, 0, 10, |_, _| {}),
        Err(Error::Corrupted(_))
    ));
    // Writers are not stuck: rewriting the entry makes its SEQ even again.
    s.set(b"a", b"2", false).unwrap();
    assert_eq!(get(&s, "a"), Some(b"2".to_vec()));
}

/// A growth of the index that the last writes left half done is finished by reads alone: one
/// read in HELP_EVERY that finds two tables moves entries (as a write would), so a read-only
/// phase after a bulk load stops probing both tables.
#[test]
fn reads_alone_finish_a_growth_the_writes_left_half_done() {
    let mem = Mem::new(16 * MIB);
    let s = mem.create(16 * MIB);
    let state = |s: &Store| {
        s.region()
            .u32(layout::H_MIG_STATE)
            .unwrap()
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut n = 0;
    while state(&s) != layout::MIG_MOVING {
        s.set(format!("k{n}").as_bytes(), &[n as u8; 16], false)
            .unwrap();
        n += 1;
    }
    let slots = s.stats().unwrap().index_slots;
    let mut out = Vec::new();
    let mut reads = 0;
    while state(&s) != layout::MIG_NONE {
        let k = reads % n;
        assert!(s
            .get(format!("k{k}").as_bytes(), &mut out)
            .unwrap()
            .is_some());
        reads += 1;
        assert!(reads < 100_000, "reads never finished the growth");
    }
    // Bounded help: 128 entries per 32 reads, so about a read per entry moved / 4.
    assert!(
        reads <= n / 4 + 2 * shared_kv_store::rehash::HELP_EVERY as u64,
        "{reads} reads for {n} entries"
    );
    assert!(s.stats().unwrap().index_slots < slots, "one table left");
    assert_eq!(s.check().unwrap().entries, n);
    for k in 0..n {
        assert!(s
            .get(format!("k{k}").as_bytes(), &mut out)
            .unwrap()
            .is_some());
    }
}

#[test]
fn an_evicting_index_is_never_asked_for_more_slots_than_a_table_counts() {
    // 2^31 entries in a store of 1 TiB: 4 slots an entry would be 2^33 slots; T_CAP is 32 bits.
    let limits = shared_kv_store::Limits {
        evict: true,
        max_entries: 1 << 31,
        max_bytes: 1 << 40,
        expected_keys: 0,
    };
    assert_eq!(limits.index_floor_slots(), u32::MAX as u64);
}
