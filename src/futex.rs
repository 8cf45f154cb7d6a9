//! Sleeping on a u32 of the shared memory until another thread or process changes it: a futex
//! on Linux (not FUTEX_PRIVATE: sleepers and wakers may be processes mapping the same file),
//! elsewhere a short bounded sleep (the callers re-check what they wait for after any wait).

use std::time::Duration;

use crate::region::Word32;

/// Sleeps while `word` holds `expected`, for at most `max` (maybe less: callers re-check).
pub fn wait(word: Word32<'_>, expected: u32, max: Duration) {
    #[cfg(target_os = "linux")]
    {
        let ts = libc::timespec {
            tv_sec: max.as_secs() as libc::time_t,
            tv_nsec: max.subsec_nanos() as libc::c_long,
        };
        // SAFETY: `word` is a live, aligned u32 for the whole call (the region outlives the
        // borrow); FUTEX_WAIT only reads it, and returns at once if it no longer holds
        // `expected`.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                word.as_ptr(),
                libc::FUTEX_WAIT,
                expected,
                &ts as *const libc::timespec,
                std::ptr::null::<u32>(),
                0,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        if word.load(std::sync::atomic::Ordering::Acquire) == expected {
            std::thread::sleep(max.min(Duration::from_millis(2)));
        }
    }
}

/// Wakes every thread sleeping on `word` in `wait` (the caller changed it first).
pub fn wake_all(word: Word32<'_>) {
    #[cfg(target_os = "linux")]
    // SAFETY: as in `wait`; FUTEX_WAKE only looks up sleepers on the address.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0,
        );
    }
    #[cfg(not(target_os = "linux"))]
    let _ = word;
}
