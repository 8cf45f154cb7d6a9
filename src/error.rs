//! Errors of the core. The binding maps them to JS `TypeError` / `RangeError` / `Error`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// An access fell outside the region as this thread knows it. Either the region grew in
    /// another thread (refresh the length and retry) or the store memory is corrupted.
    OutOfBounds {
        off: u64,
        size: u64,
    },
    /// The arena needs the region to be at least `needed` bytes long.
    NeedGrow {
        needed: u64,
    },
    /// The region cannot grow to `needed` bytes: the store's `maxBytes` limit is reached.
    Full {
        needed: u64,
        max: u64,
    },
    /// The store memory holds something no correct writer could have written.
    Corrupted(String),
    /// A lock or a seqlock did not become free within the timeout.
    Timeout(&'static str),
    KeyTooLong {
        len: usize,
        max: usize,
    },
    ValueTooLarge {
        len: usize,
        max: usize,
    },
    /// The bytes are not a value this store can decode (see `codec`).
    Decode(String),
    /// A value that cannot be encoded.
    Encode(String),
    /// An operation does not apply to the stored value (e.g. incrementing a string).
    Type(String),
    /// The memory (or file) is not a store: it does not start with the store's magic.
    NotAStore(String),
    /// An evicting store at maxBytes has no room for a larger index: fewer entries must make
    /// do (the write changed nothing; the caller evicts and retries).
    IndexNeedsRoom {
        needed: u64,
    },
    /// An evicting store cannot free `needed` bytes in one piece: `largest` is the longest
    /// stretch between the blocks eviction never moves (for an entry over maxBytes/64 nothing
    /// was evicted; for a smaller one, at most a few windows).
    NoWindow {
        needed: u64,
        largest: u64,
    },
    /// A new key while the store holds its `maxEntries` (the write changed nothing).
    AtCapacity {
        max_entries: u64,
    },
    /// The file system holding a store file cannot supply the bytes up to `end` (ENOSPC,
    /// EDQUOT); `[0, reserved)` is allocated. Nothing was changed.
    NoSpace {
        end: u64,
        reserved: u64,
    },
    /// A store file shorter than the store made in it: another process truncated it.
    Truncated(String),
    /// A store file this process had open was truncated under it (or its file system refused a
    /// page): the lost pages were replaced (fault.rs), and the store is no longer usable here.
    Lost(String),
    /// A store file this process must not trust: owned by another user, writable by more
    /// users than its opener's `mode` grants, or in a directory others may write to.
    UnsafeFile(String),
    /// A store of another layout version (made by another version of this package).
    Layout {
        found: u32,
        expected: u32,
    },
    /// An operating-system error on a store file: the errno's name (`ENOENT`), and a message
    /// naming the path.
    Io {
        code: String,
        message: String,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn corrupted(what: &str) -> Error {
        Error::Corrupted(what.to_string())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutOfBounds { off, size } => write!(
                f,
                "store memory is corrupted: {size} bytes at offset {off} lie outside the buffer"
            ),
            Error::NeedGrow { needed } => write!(f, "the store needs {needed} bytes"),
            Error::Full { needed, max } => write!(
                f,
                "store is full: it needs {needed} bytes but maxBytes is {max}; delete keys or use a larger maxBytes"
            ),
            Error::Corrupted(what) => write!(f, "store memory is corrupted: {what}"),
            Error::Timeout(what) => write!(
                f,
                "timed out waiting for the {what}; the store memory may be corrupted"
            ),
            Error::KeyTooLong { len, max } => {
                write!(f, "key is {len} bytes long in UTF-8; the limit is {max}")
            }
            Error::ValueTooLarge { len, max } => {
                write!(f, "encoded value is {len} bytes; the limit is {max}")
            }
            Error::Decode(what) => write!(f, "cannot decode stored value: {what}"),
            Error::Encode(what) => write!(f, "{what}"),
            Error::Type(what) => write!(f, "{what}"),
            Error::IndexNeedsRoom { needed } => write!(
                f,
                "store is full: its index needs {needed} bytes"
            ),
            Error::NoWindow { needed, largest } => write!(
                f,
                "store is full: the entry (and the index growth it would start, if any) needs {needed} bytes in one piece, but the longest stretch eviction can free is {largest} bytes (the index, the change log and held locks are never moved)"
            ),
            Error::AtCapacity { max_entries } => write!(
                f,
                "store is full: it holds its maxEntries ({max_entries}) entries; delete keys, or create it with onFull: 'evict'"
            ),
            Error::NotAStore(what) => write!(f, "not a shared-kv-store store ({what})"),
            Error::UnsafeFile(what) => write!(f, "refusing an unsafe store file: {what}"),
            Error::Truncated(what) => write!(f, "truncated store file: {what}"),
            Error::Lost(what) => write!(f, "store lost: {what}"),
            Error::NoSpace { end, reserved } => write!(
                f,
                "store is full: the file system holding the store file has no room for it to grow past {reserved} bytes (it needs {end}; ENOSPC): free space there, or size it for every store file on it (Docker: --shm-size)"
            ),
            Error::Layout { found, expected } if *found < crate::layout::FIRST_DUMPABLE_LAYOUT => write!(
                f,
                "the store has layout version {found}, this build reads version {expected}; it was made before stores could be dumped, so its data cannot be carried over: delete the file to start again"
            ),
            Error::Layout { found, expected } => write!(
                f,
                "the store has layout version {found}, this build reads version {expected}. Carry its data over with a dump: `npx shared-kv-store@<the version that made it> dump FILE backup.skvdump`, then `npx shared-kv-store restore NEWFILE backup.skvdump` with this one (README: Operating a store file)"
            ),
            Error::Io { message, .. } => write!(f, "{message}"),
        }
    }
}

impl std::error::Error for Error {}
