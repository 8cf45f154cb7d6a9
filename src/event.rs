//! What happened to a key: the event a change-log record carries and `watch` listeners get.
//! Below the store, so the store, eviction and the change log all name it without importing
//! each other.

/// What a record says happened to its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Event {
    Set = 1,
    Delete = 2,
    /// Removed to make room (an evicting store).
    Evict = 3,
    /// An expired entry reclaimed by a later write (not at the instant it expired).
    Expire = 4,
    /// `clear()`: one record, no key.
    Clear = 5,
    /// Records may be missing here: a watcher that fell behind, or a writer that died.
    Overflow = 6,
}

impl Event {
    pub(crate) fn from_u8(b: u8) -> Option<Event> {
        Some(match b {
            1 => Event::Set,
            2 => Event::Delete,
            3 => Event::Evict,
            4 => Event::Expire,
            5 => Event::Clear,
            6 => Event::Overflow,
            _ => return None,
        })
    }

    /// The name JS listeners get.
    pub fn name(self) -> &'static str {
        match self {
            Event::Set => "set",
            Event::Delete => "delete",
            Event::Evict => "evict",
            Event::Expire => "expire",
            Event::Clear => "clear",
            Event::Overflow => "overflow",
        }
    }
}
