//! Random bytes anywhere in the region: every operation returns (Ok or Err), none panics,
//! hangs or reads outside the region.
mod common;

use common::{Mem, Rng};
use shared_kv_store::{layout, Store};
use std::time::Duration;

const LEN: usize = 1 << 20;

fn populated() -> Mem {
    let mem = Mem::new(LEN);
    let s = mem.create(LEN);
    for i in 0..300 {
        s.set(format!("key{i}").as_bytes(), &vec![i as u8; i * 3], false)
            .unwrap();
    }
    for i in (0..300).step_by(7) {
        s.delete(format!("key{i}").as_bytes()).unwrap();
    }
    mem
}

fn exercise(s: &mut Store, rng: &mut Rng) {
    s.wait_timeout = Duration::from_millis(2);
    let mut out = Vec::new();
    for _ in 0..100 {
        let key = format!("key{}", rng.below(400));
        let _ = match rng.below(4) {
            0 => s
                .set(
                    key.as_bytes(),
                    &vec![1; rng.below(500) as usize],
                    rng.below(2) == 0,
                )
                .map(|_| ()),
            1 => s.delete(key.as_bytes()).map(|_| ()),
            2 => s.stats().map(|_| ()),
            _ => s.get(key.as_bytes(), &mut out).map(|_| ()),
        };
    }
}

#[test]
fn random_bytes_in_each_area_give_errors_not_crashes() {
    let pristine = populated();
    let index_end = layout::HEADER_SIZE as usize + 64 * 1024;
    // (area start, area end): header, the first index, the data arena.
    let areas = [
        (0, layout::HEADER_SIZE as usize),
        (layout::HEADER_SIZE as usize, index_end),
        (index_end, 200_000),
    ];
    let mut rng = Rng(42);
    for round in 0..150 {
        let mut mem = Mem::new(LEN);
        mem.as_mut_bytes().copy_from_slice(&{
            let p = &pristine;
            let r = p.region(LEN);
            let mut b = vec![0; LEN];
            r.read(0, &mut b).unwrap();
            b
        });
        let (lo, hi) = areas[round % areas.len()];
        let bytes = mem.as_mut_bytes();
        for _ in 0..1 + rng.below(64) {
            let at = lo + rng.below((hi - lo) as u64) as usize;
            bytes[at] = rng.next() as u8;
        }
        if let Ok(mut s) = Store::attach(mem.region(LEN)) {
            exercise(&mut s, &mut rng);
        }
    }
}

#[test]
fn a_region_of_random_bytes_with_a_valid_header_gives_errors_not_crashes() {
    let mut rng = Rng(7);
    for _ in 0..100 {
        let mut mem = Mem::new(LEN);
        let seed = rng.next();
        let mut fill = Rng(seed | 1);
        mem.as_mut_bytes()
            .iter_mut()
            .for_each(|b| *b = fill.next() as u8);
        // Keep the magic and version so that attach succeeds and the operations run.
        let b = mem.as_mut_bytes();
        b[..8].copy_from_slice(&layout::MAGIC.to_ne_bytes());
        b[8..12].copy_from_slice(&layout::LAYOUT_VERSION.to_ne_bytes());
        b[12..16].copy_from_slice(&(layout::HEADER_SIZE as u32).to_ne_bytes());
        if rng.below(2) == 0 {
            b[16..20].fill(0); // a free write lock, so writers get past it half of the time
        }
        let mut s = Store::attach(mem.region(LEN)).unwrap();
        exercise(&mut s, &mut rng);
    }
}
