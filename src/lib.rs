//! shared-kv-store: a key-value store living in one shared memory region.
//!
//! The core (everything but `binding`) knows nothing of Node: it works on a [`Region`] of
//! bytes that several threads map at once, and is tested with `cargo test --no-default-features`.
//! The `binding` module adapts it to JS with napi-rs.
//!
//! - [`layout`]: every offset and constant of the memory format
//! - [`region`]: bounds-checked atomic access to the bytes
//! - [`lock`]: the writer lock and bounded waiting
//! - [`holder`]: who holds the lock, and whether that process is alive
//! - [`recover`]: repairing what a writer killed mid-write left
//! - [`undo`]: the undo record of an in-place rewrite
//! - [`event`]: what happened to a key (the change log's record kinds)
//! - [`memory`]: the memory a store lives in (anonymous pages, a shared file)
//! - [`fault`]: a store file truncated under us: its SIGBUS caught, the store marked lost
//! - [`sync`]: the atomics and spinning they use (loom's under `--cfg loom`)
//! - [`arena`]: blocks of any size that split and merge (segregated free lists, boundary tags)
//! - [`evict`]: making room in a full store (CLOCK over the index, windows of the arena)
//! - [`table`]: the hash index and its seqlock protocol
//! - [`rehash`]: growing the index incrementally (two tables while entries move)
//! - [`store`]: get / set / delete
//! - [`scan`]: lock-free iteration over every entry (keys only, or keys and values)
//! - [`changelog`]: the log of changes that `watch` and `waitFor` read, and waking watchers
//! - [`check`]: the integrity check of a whole store
//! - [`crashpoint`]: counting stores to stop a writer dead after any one of them (tests)
//! - [`clear`]: removing every entry at once, also from a full store
//! - [`value`], [`codec`]: the value model and its msgpack encoding (shared with the JS codec)

pub mod arena;
mod bitmap;
pub mod changelog;
pub mod check;
pub mod clear;
pub mod codec;
pub mod compact;
pub mod crashpoint;
pub mod error;
pub mod event;
pub mod evict;
pub mod fault;
#[cfg(not(loom))]
mod futex;
pub mod hash;
pub mod holder;
pub mod layout;
pub mod lock;
#[cfg(not(loom))]
pub mod memory;
pub mod recover;
pub mod region;
pub mod rehash;
#[cfg(all(unix, not(loom)))]
pub(crate) mod reserve;
pub mod scan;
pub mod store;
pub mod sync;
pub mod table;
#[cfg(all(unix, not(loom)))]
mod trust;
pub mod undo;
pub mod value;

#[cfg(feature = "node")]
mod binding;

pub use check::Check;
pub use error::{Error, Result};
pub use region::Region;
pub use store::{Change, Limits, SetOptions, Stats, Store, Version};
pub use value::Value;
