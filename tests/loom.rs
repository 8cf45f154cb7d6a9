//! Loom models of the core's concurrency protocols, run on the real code (see `src/sync.rs`):
//! loom explores the interleavings of two threads (and the weak-memory outcomes of their
//! atomics) and fails on any execution where a reader saw a torn, invented or lost value.
//!
//! `node scripts/loom.js` (part of `npm test`) runs them with at most 1 preemption per
//! execution; `LOOM_MAX_PREEMPTIONS=2 node scripts/loom.js` explores more (minutes).
//! Each model was seen to fail when the protocol it checks was broken on purpose: without the
//! reader's acquire fence the first one reads a torn value; with a release that does not wake
//! sleepers the increments one deadlocks.
#![cfg(loom)]

use loom::sync::Arc;
use loom::thread;
use shared_kv_store::arena::Arena;
use shared_kv_store::table::{Find, Table, Tables};
use shared_kv_store::{holder, lock, Region, SetOptions, Store};

const LEN: usize = 12288;

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = Some(1); // ~45 s here; LOOM_MAX_PREEMPTIONS=2 takes ~4 min
    }
    // Every atomic access is a branch point, and formatting a store touches the whole header.
    b.max_branches = b.max_branches.max(100_000);
    b.check(f);
}

fn store() -> Arc<Store> {
    Arc::new(Store::create(Region::model(LEN), 1).unwrap())
}

/// Runs `f` on the store in a second modelled thread.
fn in_thread<T: Send + 'static>(
    s: &Arc<Store>,
    f: impl FnOnce(&Store) -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let s = s.clone();
    thread::spawn(move || f(&s))
}

fn get(s: &Store, k: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    s.get(k, &mut out).unwrap().map(|_| out)
}

/// Seqlock: a value rewritten in place is read whole, old or new.
#[test]
fn a_reader_never_sees_a_value_rewritten_in_place_torn() {
    model(|| {
        let s = store();
        s.set(b"k", &[1; 16], false).unwrap();
        let w = in_thread(&s, move |s| s.set(b"k", &[2; 16], false).unwrap());
        let v = get(&s, b"k").unwrap();
        assert!(v == [1; 16] || v == [2; 16], "torn: {v:?}");
        w.join().unwrap();
        assert_eq!(get(&s, b"k").unwrap(), [2; 16]);
    });
}

/// Allocation and reuse: a value moved to a new block, its old block freed and filled with
/// another key's value, is still read as the old or the new value, never the other key's.
#[test]
fn a_reader_never_sees_a_freed_and_reused_block() {
    model(|| {
        let s = store();
        s.set(b"k", &[1; 16], false).unwrap();
        let w = in_thread(&s, move |s| {
            let moved = SetOptions {
                immutable: true,
                ..SetOptions::default()
            };
            s.set_with(b"k", &[2; 16], &moved).unwrap();
            s.set(b"j", &[3; 16], false).unwrap(); // same size class: takes k's old block
        });
        let v = get(&s, b"k").unwrap();
        assert!(v == [1; 16] || v == [2; 16], "read {v:?}");
        w.join().unwrap();
        assert_eq!(s.check().unwrap().entries, 2);
    });
}

/// The writer lock excludes, and what one holder wrote is visible to the next. Under loom a
/// waiter sleeps at once (no spinning) and with no timeout, so this also checks that the
/// PARKED protocol never loses a wakeup: a lost one is a deadlock, and loom fails on it.
#[test]
fn increments_under_the_writer_lock_are_never_lost() {
    model(|| {
        let s = store();
        let w = in_thread(&s, move |s| s.increment(b"n", 1.0).unwrap());
        let mine = s.increment(b"n", 1.0).unwrap();
        let theirs = w.join().unwrap();
        assert_eq!(mine + theirs, 3.0, "one saw 1, the other 2");
        assert_eq!(s.increment(b"n", 0.0).unwrap(), 2.0);
    });
}

/// A delete (and a clear, which replaces the index) is seen whole: old value or absent.
#[test]
fn delete_and_clear_are_seen_whole() {
    model(|| {
        let s = store();
        s.set(b"a", &[1; 8], false).unwrap();
        s.set(b"b", &[2; 8], false).unwrap();
        let w = in_thread(&s, move |s| {
            s.delete(b"a").unwrap();
            s.clear().unwrap();
        });
        let a = get(&s, b"a");
        assert!(a.is_none() || a == Some(vec![1; 8]), "a: {a:?}");
        let b = get(&s, b"b");
        assert!(b.is_none() || b == Some(vec![2; 8]), "b: {b:?}");
        w.join().unwrap();
        assert_eq!((get(&s, b"a"), get(&s, b"b")), (None, None));
        let c = s.check().unwrap();
        assert_eq!((c.entries, c.bytes_used), (0, c.index_bytes));
    });
}

/// Two writers allocating at once (new keys, the index filling up) leave a consistent arena.
#[test]
fn concurrent_writers_leave_a_consistent_arena() {
    model(|| {
        let s = store();
        let w = in_thread(&s, move |s| {
            s.set(b"x", &[7; 24], false).unwrap();
            s.delete(b"x").unwrap();
        });
        s.set(b"y", &[8; 40], false).unwrap();
        w.join().unwrap();
        assert_eq!(get(&s, b"y").unwrap(), [8; 40]);
        let c = s.check().unwrap();
        assert_eq!(c.entries, 1);
    });
}

/// Takeover: a writer dies holding the lock, mid-change (a block allocated and never
/// published, a slot left mid-seqlock). The other thread's write still completes, whether it
/// ran before the death or finds the holder dead and takes the lock over; the store is then
/// whole again (recovered), and the interrupted change happened not at all.
#[test]
fn a_dead_writers_lock_is_taken_over_and_its_change_undone() {
    model(|| {
        let s = store();
        s.set(b"k", &[1; 16], false).unwrap();
        let dying = in_thread(&s, move |s| {
            let guard = s.write_lock().unwrap();
            let r = s.region();
            Arena { r }.alloc_data(1, 30, 0, 0).unwrap();
            let hash = shared_kv_store::hash::hash_key(s.seed(), b"k") as u32;
            let Find::Found(slot) = Tables::load(r).unwrap().find(r, b"k", hash).unwrap() else {
                panic!("k is stored");
            };
            Table::begin_write(r, slot.at).unwrap();
            // Killed here: it never releases the lock, and nobody is woken but by timeouts.
            holder::loom_dead::die();
            guard.abandon();
            lock::timeout_elapses();
        });
        assert_eq!(s.increment(b"n", 1.0).unwrap(), 1.0);
        dying.join().unwrap();
        assert_eq!(get(&s, b"k").unwrap(), [1; 16]);
        let c = s.check().unwrap(); // takes the lock over if nobody did yet
        assert_eq!(c.entries, 2, "k and n");
        let stats = s.stats().unwrap();
        assert_eq!(stats.recoveries, 1);
        // The dying writer's unpublished block was reclaimed: only k, n and the index in use.
        let mut k = Vec::new();
        let mut n = Vec::new();
        s.get(b"k", &mut k).unwrap();
        s.get(b"n", &mut n).unwrap();
        let block = |key: &[u8], v: &[u8]| {
            shared_kv_store::arena::data_size((key.len() + v.len()) as u64, false).unwrap()
        };
        assert_eq!(
            c.bytes_used,
            c.index_bytes + block(b"k", &k) + block(b"n", &n)
        );
    });
}

/// The index's migration (rehash.rs): a write moves the entries of the old table to the new
/// one (each published in T1, then tombstoned in T0), advances the cursor, and finishes (T1
/// becomes T0 under the descriptor's seqlock, the old table's block freed and reused by the
/// write's own value). A reader meanwhile finds every key, in whichever table holds it, with its
/// value: never absent, never another's. (Under loom the first table has 16 slots: a growth
/// starts at 12 keys, and one write moves a whole table.) About 80 s: `.ci/run` runs it
/// (`node scripts/loom.js readers_find -- --ignored`), `npm test` does not. Seen to fail (a
/// reader finding the key absent) with the move's two stores swapped.
#[test]
#[ignore = "about 80 s: node scripts/loom.js readers_find -- --ignored (run by .ci/run)"]
fn readers_find_every_key_while_a_migration_moves_and_finishes() {
    use shared_kv_store::layout::{H_MIG_STATE, MIG_MOVING, MIG_NONE};
    model(|| {
        let s = store();
        let state = |s: &Store| {
            s.region()
                .u32(H_MIG_STATE)
                .unwrap()
                .load(std::sync::atomic::Ordering::Relaxed)
        };
        let mut n = 0u8;
        while state(&s) != MIG_MOVING {
            s.set(&[b'k', n], &[n; 8], false).unwrap();
            n += 1;
        }
        // The reader is the second thread, so that one preemption puts it between any two
        // stores of the write. The first key is in T0 until the write moves it.
        let reader = in_thread(&s, move |s| get(s, &[b'k', 0]));
        s.set(b"new", &[99; 40], false).unwrap(); // moves all of T0, then finishes
        assert_eq!(state(&s), MIG_NONE, "one write finished the growth");
        let seen = reader.join().unwrap();
        assert_eq!(
            seen,
            Some(vec![0; 8]),
            "the first key, read during the move"
        );
        for i in 0..n {
            assert_eq!(get(&s, &[b'k', i]), Some(vec![i; 8]));
        }
        assert_eq!(s.check().unwrap().entries, n as u64 + 1);
    });
}

/// The SIGBUS handler's table of store mappings (src/fault.rs), read by a handler that may run
/// at any instruction of any thread while another thread unmaps a store and maps another into
/// the same slot (a new generation) at the same address: a handler that finds a mapping finds
/// one registration's fields, whole (never the old length with the new descriptor: it would
/// replace pages by the wrong file's size), and two claims of one range replace it once.
#[test]
fn fault_table_handler_sees_whole_mappings_only() {
    use shared_kv_store::fault::Table;
    model(|| {
        let t = Arc::new(Table::new(4));
        let first = t.register(0x10000, 0x4000, 5);
        let registrar = {
            let t = t.clone();
            thread::spawn(move || {
                t.unregister(0x10000);
                // The same address and slot, reused by a larger mapping.
                let second = t.register(0x10000, 0x8000, 6);
                t.mark_lost(second, 123);
                let claimed = t.claim(second, 0x12000, 0x18000);
                (second, claimed)
            })
        };
        // A fault past the first mapping's end is inside the second one only.
        if let Some((_, _, base, len, fd)) = t.find(0x16000) {
            assert_eq!((base, len, fd), (0x10000, 0x8000, 6));
        }
        let mine = t.find(0x11000).map(|(i, _, base, len, fd)| {
            assert_eq!(base, 0x10000);
            assert!(
                (len, fd) == (0x4000, 5) || (len, fd) == (0x8000, 6),
                "{len} {fd}"
            );
            if let Some(size) = t.lost(i) {
                assert_eq!(size, 123);
            }
            (i, len)
        });
        // This thread's claim (if it found the second mapping) and the registrar's: one wins.
        let claimed_here = match mine {
            Some((i, 0x8000)) => t.claim(i, 0x12000, 0x18000),
            _ => None,
        };
        let (second, claimed_there) = registrar.join().unwrap();
        assert_eq!(first, second, "the slot is reused");
        assert!(
            !(claimed_here.is_some() && claimed_there.is_some()),
            "replaced twice"
        );
        assert_eq!(t.slot_of(0x10000), second);
        assert_eq!(t.lost(second), Some(123));
    });
}
