//! Several OS threads on one region: no torn value, no lost write, no stale read going back.
mod common;

use common::{Mem, Rng};
use std::sync::atomic::{AtomicBool, Ordering};

/// A self-checking value: writer id, sequence number, then a body every byte of which is
/// derived from both. Its length varies so that writes go both in place and to new blocks.
fn make(writer: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut v = vec![writer];
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((0..len).map(|i| (seq as u8) ^ writer ^ (i as u8)));
    v
}

fn check(v: &[u8]) -> (u8, u32) {
    assert!(v.len() >= 5, "torn value: {v:?}");
    let (w, seq) = (v[0], u32::from_le_bytes(v[1..5].try_into().unwrap()));
    for (i, b) in v[5..].iter().enumerate() {
        assert_eq!(
            *b,
            (seq as u8) ^ w ^ (i as u8),
            "torn value from writer {w} seq {seq}"
        );
    }
    (w, seq)
}

#[test]
fn writers_and_readers_never_see_torn_lost_or_backward_values() {
    const WRITERS: u8 = 3;
    const READERS: usize = 3;
    const OWN_KEYS: u32 = 200;
    const SHARED_KEYS: u32 = 50;
    const WRITES: u32 = 30_000;
    let mem = Mem::new(64 << 20);
    let len = mem.bytes();
    mem.create(len);
    let done = AtomicBool::new(false);

    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|r| {
                let (mem, done) = (&mem, &done);
                scope.spawn(move || {
                    let s = mem.attach(len);
                    let mut rng = Rng(100 + r as u64);
                    let mut last = vec![0u32; WRITERS as usize * OWN_KEYS as usize];
                    let mut out = Vec::new();
                    let mut reads = 0u64;
                    while !done.load(Ordering::Relaxed) {
                        let w = rng.below(WRITERS as u64) as u8;
                        let k = rng.below(OWN_KEYS as u64) as u32;
                        if s.get(format!("own:{w}:{k}").as_bytes(), &mut out)
                            .unwrap()
                            .is_some()
                        {
                            let (ww, seq) = check(&out);
                            assert_eq!(ww, w);
                            let slot = &mut last[(w as u32 * OWN_KEYS + k) as usize];
                            assert!(
                                seq >= *slot,
                                "key own:{w}:{k} went back from {slot} to {seq}"
                            );
                            *slot = seq;
                        }
                        if s.get(
                            format!("shared:{}", rng.below(SHARED_KEYS as u64)).as_bytes(),
                            &mut out,
                        )
                        .unwrap()
                        .is_some()
                        {
                            check(&out);
                        }
                        reads += 1;
                    }
                    reads
                })
            })
            .collect();

        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let mem = &mem;
                scope.spawn(move || {
                    let s = mem.attach(len);
                    let mut rng = Rng(1 + w as u64);
                    let mut last = vec![None; OWN_KEYS as usize];
                    for seq in 1..=WRITES {
                        let k = rng.below(OWN_KEYS as u64) as u32;
                        let key = format!("own:{w}:{k}");
                        if rng.below(10) == 0 {
                            s.delete(key.as_bytes()).unwrap();
                            last[k as usize] = None;
                        } else {
                            let v = make(w, seq, rng.below(200) as usize);
                            s.set(key.as_bytes(), &v, rng.below(4) == 0).unwrap();
                            last[k as usize] = Some(v);
                        }
                        let shared = format!("shared:{}", rng.below(SHARED_KEYS as u64));
                        s.set(
                            shared.as_bytes(),
                            &make(w, seq, rng.below(100) as usize),
                            false,
                        )
                        .unwrap();
                    }
                    last
                })
            })
            .collect();

        let finals: Vec<_> = writers.into_iter().map(|h| h.join().unwrap()).collect();
        done.store(true, Ordering::Relaxed);
        let reads: u64 = readers.into_iter().map(|h| h.join().unwrap()).sum();
        assert!(reads > 1000, "readers ran concurrently ({reads} reads)");

        // No lost write: every key holds exactly its writer's last write.
        let s = mem.attach(len);
        let mut out = Vec::new();
        let mut live = 0;
        for (w, last) in finals.iter().enumerate() {
            for (k, v) in last.iter().enumerate() {
                let got = s
                    .get(format!("own:{w}:{k}").as_bytes(), &mut out)
                    .unwrap()
                    .map(|_| out.clone());
                assert_eq!(&got, v, "own:{w}:{k}");
                live += v.is_some() as u64;
            }
        }
        for k in 0..SHARED_KEYS {
            if s.get(format!("shared:{k}").as_bytes(), &mut out)
                .unwrap()
                .is_some()
            {
                check(&out);
                live += 1;
            }
        }
        assert_eq!(s.stats().unwrap().entries, live);
    });
}
