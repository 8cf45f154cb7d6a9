//! Writers killed with SIGKILL inside random operations on a store file, then recovery by the
//! survivor: its operations finish within 1 s, `check()` passes, every write that returned
//! before the kill is there, the interrupted one happened wholly or not at all, and no value
//! is torn.
//!
//! The victim is this test binary run again as a child (`SKV_CRASH_CHILD` set: the
//! `child_writer` test then plays the victim). It logs each operation in a second mapped file
//! before starting it and after it returns: two atomic stores, no system call, so the kills
//! land inside the store's code, not in a pipe write. A victim's error (anything but a full
//! store refusing a set, where the model allows it) is written there too, and fails the test.
//!
//! Each round kills its victim once it has begun a number of operations the round's seed
//! picks (on odd rounds, also only while it holds the writer lock), never after a time: what
//! a round does is the same on a fast machine and a slow one.
//!
//! `SKV_CRASH_ROUNDS=20000 cargo test --release --no-default-features --test crash` runs longer.
#![cfg(all(unix, not(loom)))]
mod common;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::Rng;
use shared_kv_store::memory::{FileOptions, Memory};
use shared_kv_store::{Region, SetOptions, Store, Value};

const STORE_BYTES: u64 = 16 << 20;
const KEYS: u64 = 4000;
const BIG_KEYS: u64 = 16;
const LOG_WORDS: usize = 2 + 2 * 4_000_000 + ERR_WORDS;
/// The victim's error, at the log's end: its length in bytes, then its text.
const ERR_WORDS: usize = 64;
const ERR_AT: usize = LOG_WORDS - ERR_WORDS;
/// A victim is killed after beginning 1 to this many operations.
const MAX_OPS: u64 = 400;
/// Value sizes of the evicting victim's phases.
const DRIFT: [u64; 6] = [100, 3000, 40_000, 700, 200_000, 10_000];

/// One logged operation: kind, key, sequence number, length.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Set {
        key: u64,
        seq: u64,
        len: u64,
    },
    Delete {
        key: u64,
    },
    Increment,
    Clear,
    /// A value under `ttl:<key>` that expires within milliseconds (so later writes sweep it);
    /// outside the model: only its wholeness is checked.
    Expiring {
        key: u64,
        seq: u64,
    },
}

impl Op {
    fn encode(self) -> [u64; 2] {
        match self {
            Op::Set { key, seq, len } => [1 | key << 8 | len << 32, seq],
            Op::Delete { key } => [2 | key << 8, 0],
            Op::Increment => [3, 0],
            Op::Clear => [4, 0],
            Op::Expiring { key, seq } => [5 | key << 8, seq],
        }
    }
    fn decode([a, b]: [u64; 2]) -> Op {
        let key = (a >> 8) & 0xff_ffff;
        match a & 0xff {
            1 => Op::Set {
                key,
                seq: b,
                len: a >> 32,
            },
            2 => Op::Delete { key },
            3 => Op::Increment,
            5 => Op::Expiring { key, seq: b },
            _ => Op::Clear,
        }
    }
}

fn key_name(key: u64) -> Vec<u8> {
    if key < BIG_KEYS {
        format!("big:{key}").into_bytes()
    } else {
        format!("key:{key}").into_bytes()
    }
}

/// A self-checking value: its key, its sequence number, then bytes derived from both.
fn value(key: u64, seq: u64, len: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(len as usize);
    v.extend_from_slice(&key.to_le_bytes());
    v.extend_from_slice(&seq.to_le_bytes());
    v.extend((16..len).map(|i| (i as u8) ^ (seq as u8) ^ (key as u8).rotate_left(3)));
    v
}

/// (seq, len) of a stored value, after checking every byte of it.
fn parse(key: u64, v: &[u8]) -> (u64, u64) {
    assert!(v.len() >= 16, "torn value for key {key}: {} bytes", v.len());
    let k = u64::from_le_bytes(v[..8].try_into().unwrap());
    let seq = u64::from_le_bytes(v[8..16].try_into().unwrap());
    assert_eq!(k, key, "value of another key");
    assert_eq!(
        v,
        value(key, seq, v.len() as u64),
        "torn value for key {key}"
    );
    (seq, v.len() as u64)
}

/// The operation log shared with the victim: [begun, done, records...].
struct Log {
    region: Region,
}

impl Log {
    fn word(&self, i: usize) -> shared_kv_store::region::Word64<'_> {
        self.region.u64(8 * i as u64).unwrap()
    }
    fn record(&self, i: u64) -> [u64; 2] {
        let i = i as usize;
        [
            self.word(2 + 2 * i).load(Ordering::Relaxed),
            self.word(3 + 2 * i).load(Ordering::Relaxed),
        ]
    }
    fn open(path: &str, create: bool) -> Log {
        use std::os::unix::io::AsRawFd;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(create)
            .open(path)
            .unwrap();
        file.set_len((LOG_WORDS * 8) as u64).unwrap();
        // SAFETY: a shared mapping of the whole file, never unmapped during the test.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                LOG_WORDS * 8,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        // SAFETY: LOG_WORDS * 8 bytes at p stay mapped until the process exits.
        Log {
            region: unsafe { Region::new(p.cast(), LOG_WORDS * 8) },
        }
    }
}

fn open_store(path: &str, evict: bool) -> Store {
    let opts = FileOptions {
        evict,
        // Small when evicting, so that even a debug build's victims fill it.
        ..FileOptions::new(if evict { STORE_BYTES / 4 } else { STORE_BYTES })
    };
    let (m, _) = Memory::open_file(path, opts).unwrap();
    let mut s = Store::attach(m.region()).unwrap();
    std::mem::forget(m); // mappings are never unmapped while a Region may use them
                         // "No operation waits more than about 1 s for the dead process's writer lock."
    s.wait_timeout = Duration::from_secs(1);
    s
}

/// The victim: random operations until killed, each logged before and after.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var("SKV_CRASH_CHILD") else {
        return; // only when run as the victim
    };
    let mut parts = spec.split(',');
    let (store_path, log_path) = (parts.next().unwrap(), parts.next().unwrap());
    let seed: u64 = parts.next().unwrap().parse().unwrap();
    let evict = parts.next() == Some("evict");
    let store = open_store(store_path, evict);
    let log = Log::open(log_path, false);
    let w = |i| log.word(i);
    let mut rng = Rng(seed | 1);
    let mut seq = seed << 32; // unique across victims
    let mut i = w(1).load(Ordering::Relaxed) as usize;
    w(0).store(i as u64, Ordering::Relaxed);
    loop {
        seq += 1;
        let key = rng.below(KEYS);
        let op = match rng.below(1000) {
            0 => Op::Clear,
            // An evicting store may evict the counter: the model could not follow.
            1..=60 if evict => Op::Delete { key },
            1..=60 => Op::Increment,
            61..=120 => Op::Expiring {
                key: key % 500,
                seq,
            },
            121..=260 => Op::Delete { key },
            // Evicting: sizes drift from phase to phase (a few hundred writes each, so that
            // victims die in every phase and in the windows, moves and index growths and
            // shrinks between them).
            _ if evict => {
                let size = DRIFT[((seq & 0xffff_ffff) / 300 + seed) as usize % DRIFT.len()];
                let len = size + rng.below(size / 4);
                Op::Set { key, seq, len }
            }
            _ => {
                let len = if key < BIG_KEYS {
                    40_000 + rng.below(20_000)
                } else if rng.below(10) == 0 {
                    1000 + rng.below(2000) // around the undo record's limit
                } else {
                    16 + rng.below(150)
                };
                Op::Set { key, seq, len }
            }
        };
        let [a, b] = op.encode();
        w(2 + 2 * i).store(a, Ordering::Relaxed);
        w(3 + 2 * i).store(b, Ordering::Relaxed);
        w(0).store(i as u64 + 1, Ordering::Release); // begun
        let ok = match op {
            Op::Set { key, seq, len } => {
                let opts = SetOptions {
                    expires_at: if seq % 7 == 0 { u64::MAX / 2 } else { 0 },
                    immutable: seq % 11 == 0,
                    ..SetOptions::default()
                };
                store.set_with(&key_name(key), &value(key, seq, len), &opts)
            }
            Op::Delete { key } => store.delete(&key_name(key)).map(drop),
            Op::Increment => store.increment(b"n", 1.0).map(drop),
            Op::Clear => store.clear().map(drop),
            Op::Expiring { key, seq } => {
                let opts = SetOptions {
                    expires_at: shared_kv_store::store::system_now_ms() + 1 + seq % 5,
                    ..SetOptions::default()
                };
                store.set_with(format!("ttl:{key}").as_bytes(), &value(key, seq, 40), &opts)
            }
        };
        match ok {
            Ok(()) => {}
            // An evicting store refuses a set only if no eviction can serve it, and then
            // changes nothing: log it as not done.
            Err(shared_kv_store::Error::Full { .. })
                if evict && matches!(op, Op::Set { .. } | Op::Expiring { .. }) =>
            {
                w(2 + 2 * i).store(0, Ordering::Relaxed);
                w(3 + 2 * i).store(0, Ordering::Relaxed);
            }
            Err(e) => {
                // Told through the log (a panic could be cut short by the kill), then wait
                // to be killed.
                let text = format!("victim, {op:?}: {e}");
                let bytes = &text.as_bytes()[..text.len().min((ERR_WORDS - 1) * 8)];
                log.region.write((ERR_AT as u64 + 1) * 8, bytes).unwrap();
                w(ERR_AT).store(bytes.len() as u64, Ordering::Release);
                std::thread::sleep(Duration::from_secs(60));
            }
        }
        i += 1;
        w(1).store(i as u64, Ordering::Release); // done
        if i + 1 >= (ERR_AT - 2) / 2 {
            std::thread::sleep(Duration::from_secs(60)); // log full: wait to be killed
        }
    }
}

/// Fills an evicting store past maxBytes with drifting value sizes (what the victims write),
/// so that every round's writes evict, and fragments are there for compaction to merge.
fn prefill(store: &Store, model: &mut Model) {
    let mut seq = u64::MAX / 2; // apart from every victim's
    let max = STORE_BYTES / 4;
    for size in DRIFT {
        let mut written = 0;
        let mut key = 0;
        while written < max {
            seq += 1;
            let len = size + (seq % 1009 * 7919) % (size / 4);
            store
                .set(&key_name(key), &value(key, seq, len), false)
                .unwrap();
            model.apply(Op::Set { key, seq, len });
            written += len;
            key = (key + 1) % KEYS;
        }
    }
}

#[derive(Default)]
struct Model {
    values: HashMap<u64, (u64, u64)>,
    increments: u64,
}

impl Model {
    fn apply(&mut self, op: Op) {
        match op {
            Op::Set { key, seq, len } => {
                self.values.insert(key, (seq, len));
            }
            Op::Delete { key } => {
                self.values.remove(&key);
            }
            Op::Increment => self.increments += 1,
            Op::Clear => {
                self.values.clear();
                self.increments = 0;
            }
            Op::Expiring { .. } => {}
        }
    }
}

/// What the store holds: key -> (seq, len), and the counter (None: absent).
fn snapshot(s: &Store) -> (HashMap<u64, (u64, u64)>, Option<u64>) {
    let mut values = HashMap::new();
    let mut out = Vec::new();
    for key in 0..KEYS {
        if s.get(&key_name(key), &mut out).unwrap().is_some() {
            values.insert(key, parse(key, &out));
        }
    }
    for key in 0..500 {
        if s.get(format!("ttl:{key}").as_bytes(), &mut out)
            .unwrap()
            .is_some()
        {
            parse(key, &out); // whole, if not yet expired
        }
    }
    let n = match s.get(b"n", &mut out).unwrap() {
        None => None,
        Some(_) => match shared_kv_store::codec::decode(&out).unwrap() {
            Value::Number(n) => Some(n as u64),
            v => panic!("counter holds {v:?}"),
        },
    };
    (values, n)
}

fn diff(values: &HashMap<u64, (u64, u64)>, model: &HashMap<u64, (u64, u64)>) {
    for (k, v) in values {
        if model.get(k) != Some(v) {
            eprintln!("key {k}: store {v:?}, model {:?}", model.get(k));
        }
    }
    for (k, v) in model {
        if !values.contains_key(k) {
            eprintln!("key {k}: store absent, model {v:?}");
        }
    }
}

#[test]
fn killed_writers_leave_a_recoverable_store() {
    kill_rounds(false);
}

/// The same in an evicting store whose value sizes drift: kills land in eviction windows,
/// compaction's moves and the index's growth and shrinking. Entries may be evicted, so the
/// store must hold a subset of the model, each value the last one written (or the
/// interrupted one).
#[test]
fn killed_evicting_writers_with_drifting_sizes_leave_a_recoverable_store() {
    kill_rounds(true);
}

fn kill_rounds(evict: bool) {
    if std::env::var("SKV_CRASH_CHILD").is_ok() {
        return;
    }
    let rounds: u64 = std::env::var("SKV_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(60);
    let dir = std::env::temp_dir().join(format!("skv-crash-{}-{evict}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let store_path = dir.join("store.kv").to_str().unwrap().to_string();
    let log_path = dir.join("log").to_str().unwrap().to_string();
    let store = open_store(&store_path, evict);
    let log = Log::open(&log_path, true);
    let w = |i| log.word(i);
    let mut model = Model::default();
    let mut rng = Rng(0xC0FFEE);
    let mut recoveries = 0;
    // The survivor watches: the victims' writes are logged too, and the log must stay
    // readable, with an overflow record wherever a killed writer's record may be missing.
    let mut cursor = store.watch_register().unwrap().cursor;
    let mut buf = Vec::new();
    let mut evictions = 0;
    if evict {
        prefill(&store, &mut model);
        evictions = store.stats().unwrap().evictions;
        assert!(evictions > 0, "the prefill evicted nothing");
    }
    for round in 0..rounds {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "child_writer", "--test-threads=1", "--nocapture"])
            .env(
                "SKV_CRASH_CHILD",
                format!(
                    "{store_path},{log_path},{},{}",
                    round + 1,
                    if evict { "evict" } else { "throw" }
                ),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Kill it once it has begun `ops` operations (on odd rounds, once it also holds the
        // writer lock, so that most kills land inside a write). Each victim logs from record
        // 0: the log is reset after every round.
        let start = 0;
        let ops = 1 + rng.below(MAX_OPS);
        let lock = store
            .region()
            .u64(shared_kv_store::layout::H_WRITE_LOCK)
            .unwrap();
        loop {
            let begun = w(0).load(Ordering::Acquire);
            if begun >= ops && (round % 2 == 0 || lock.load(Ordering::Relaxed) != 0) {
                break;
            }
            // Past `ops` the lock may be missed: only so far (it is taken every operation).
            if begun >= ops + 1000 || w(ERR_AT).load(Ordering::Acquire) != 0 {
                break;
            }
            assert!(child.try_wait().unwrap().is_none(), "victim exited early");
            std::hint::spin_loop();
        }
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(libc::SIGKILL),
            "round {round}: the victim failed"
        );
        let err_len = w(ERR_AT).load(Ordering::Acquire) as usize;
        if err_len != 0 {
            let mut text = vec![0; err_len];
            log.region.read((ERR_AT as u64 + 1) * 8, &mut text).unwrap();
            panic!("round {round}: {}", String::from_utf8_lossy(&text));
        }

        // The survivor: on odd rounds it reads first (a reader that finds an entry left
        // mid-write takes the dead writer's lock over), then a write must get through.
        if round % 2 == 1 {
            snapshot(&store);
        }
        store
            .set(b"survivor", &round.to_le_bytes(), false)
            .unwrap_or_else(|e| panic!("round {round}: survivor write: {e}"));
        let report = store
            .check()
            .unwrap_or_else(|e| panic!("round {round}: check after the kill: {e}"));
        let (begun, done) = (w(0).load(Ordering::Acquire), w(1).load(Ordering::Acquire));
        for i in start..done {
            let record = log.record(i);
            if record[0] != 0 {
                model.apply(Op::decode(record));
            }
        }
        let (values, counter) = snapshot(&store);
        let n = counter.unwrap_or(0);
        // Evicting: every entry present holds what the model says (absent ones were evicted).
        let matches = |values: &HashMap<u64, (u64, u64)>, model: &Model| {
            if evict {
                values.iter().all(|(k, v)| model.values.get(k) == Some(v))
            } else {
                *values == model.values && n == model.increments
            }
        };
        let as_model = matches(&values, &model);
        if !as_model {
            // Only the interrupted operation may differ, and then it happened wholly.
            assert_eq!(
                begun,
                done + 1,
                "round {round}: the store lost a returned write"
            );
            let op = Op::decode(log.record(done));
            model.apply(op);
            if !matches(&values, &model) {
                diff(&values, &model.values);
            }
            assert!(
                matches(&values, &model),
                "round {round}: after {op:?} was interrupted, the store is neither before nor after it (counter {n}, model {})", model.increments
            );
        }
        // The model now holds all this victim did: the next one logs from the start.
        w(1).store(0, Ordering::Release);
        w(0).store(0, Ordering::Release);
        // Besides the model's keys, the survivor and the counter: only expiring keys.
        let expiring = report.entries - values.len() as u64 - 1 - counter.is_some() as u64;
        assert!(
            expiring <= 500,
            "round {round}: {expiring} entries the model does not know"
        );
        let mut told = false;
        let read = store
            .read_changes(cursor, &mut buf, |e, _, _| {
                told |= e == shared_kv_store::changelog::Event::Overflow
            })
            .unwrap_or_else(|e| panic!("round {round}: change log unreadable: {e}"));
        cursor = read.next;
        let now = store.stats().unwrap().recoveries;
        assert!(
            now == recoveries || told || read.overflow,
            "round {round}: a writer was recovered, and watchers were not told"
        );
        recoveries = now;
    }
    let st = store.stats().unwrap();
    eprintln!(
        "{rounds} kills, {recoveries} recoveries of a writer killed holding the lock; {} evictions ({} by victims), {} moves, {} repairs",
        st.evictions, st.evictions - evictions, st.moves, st.repairs
    );
    assert_eq!(st.repairs, 0, "recovery found slots with a wrong tag");
    if evict {
        assert!(
            st.evictions > evictions && st.moves > 0,
            "nothing evicted by the victims, or nothing moved: {st:?}"
        );
    }
    assert!(
        recoveries > 0,
        "no kill landed inside a write: the test proves nothing"
    );
    std::fs::remove_dir_all(dir).unwrap();
}
