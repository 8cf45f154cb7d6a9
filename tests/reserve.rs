//! A store file's pages are reserved in the file system before the store uses them
//! (src/reserve.rs), and ahead of a coming index growth, a slice per write: the write that
//! starts a growth finds its new table's room already allocated, instead of reserving the
//! whole table at once (~30 ms for the 320 MB table of a 20M-key store on tmpfs).
#![cfg(all(target_os = "linux", not(loom)))]

use std::os::unix::fs::MetadataExt;

use shared_kv_store::memory::{FileOptions, Memory};
use shared_kv_store::Store;

const MAX: u64 = 64 << 20;
/// reserve.rs's step for a file of MAX bytes (1/64 of it, at least 1 MiB).
const STEP: u64 = 1 << 20;

fn allocated(path: &str) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

#[test]
fn the_write_that_starts_a_growth_allocates_nothing() {
    let p = std::env::temp_dir().join(format!("skv-reserve-{}.kv", std::process::id()));
    let path = p.to_str().unwrap().to_string();
    let _ = std::fs::remove_file(&p);
    let opts = FileOptions::new(MAX);
    let (m, _) = Memory::open_file(&path, opts).unwrap();
    let s = Store::attach(m.region()).unwrap();
    s.set(b"first", b"1", false).unwrap();
    if allocated(&path) == 0 {
        eprintln!("skipped: this file system allocates nothing with fallocate");
        return;
    }
    let mut large_growths = 0;
    for i in 0..300_000u32 {
        let before = s.stats().unwrap();
        let blocks = allocated(&path);
        s.set(format!("key:{i}").as_bytes(), &i.to_le_bytes(), false)
            .unwrap();
        let after = s.stats().unwrap();
        if before.growing || !after.growing {
            continue;
        }
        // This write started a growth, to a table of 2 slots of 8 bytes a live entry.
        let table = after.entries * 16;
        if table <= 2 * STEP {
            continue; // small enough that the regular step may hold it anyway
        }
        large_growths += 1;
        assert_eq!(
            allocated(&path),
            blocks,
            "key {i} started a growth to a {table}-byte table and allocated it then"
        );
        assert!(
            blocks >= after.bytes_reserved,
            "{blocks} < {}",
            after.bytes_reserved
        );
    }
    assert!(large_growths >= 1, "no growth to a table past two steps");
    s.check().unwrap();
    drop(s);
    drop(m);
    let _ = std::fs::remove_file(&p);
}
