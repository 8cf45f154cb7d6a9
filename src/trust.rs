//! Whether a store file may be trusted before anything of it is read or mapped. A store file
//! is read and written by every process that opens it: one owned by another user, or one that
//! group or others may write when the opener did not ask to share it that far, could have been
//! planted (`/dev/shm/app.kv` created by anyone before the service starts) to read or poison
//! the cache. A directory that others may write to without the sticky bit lets anyone replace
//! the file under its name, and so does the directory's owner. Root gets no exemption: a file
//! another user owns is refused too. A store shared with a group (`mode` grants the group
//! write) accepts a file of another user whose group is one of this process's groups.

use std::os::unix::fs::MetadataExt;

use crate::error::{Error, Result};

/// Group- and other-write permission bits.
const WRITE_BY_OTHERS: u32 = 0o022;
const STICKY: u32 = 0o1000;

/// Checks the open store file `meta` (at `path`) against the `mode` its opener asked for.
pub(crate) fn check_file(path: &str, meta: &std::fs::Metadata, mode: u32) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let group_shared = mode & 0o020 != 0 && in_my_groups(meta.gid());
    if meta.uid() != me && !group_shared {
        return Err(Error::UnsafeFile(format!(
            "'{path}' is owned by {}, not by this process's user ({}): another user may have planted it; delete it (or chown it to uid {me}) and open again",
            user(meta.uid()),
            user(me)
        )));
    }
    let found = meta.mode() & 0o7777;
    let extra = found & WRITE_BY_OTHERS & !mode;
    if extra != 0 {
        let who = match (extra & 0o020 != 0, extra & 0o002 != 0) {
            (true, true) => "group and others",
            (true, false) => "its group",
            _ => "others",
        };
        return Err(Error::UnsafeFile(format!(
            "'{path}' has mode {found:04o}, writable by {who}, but the mode option is {mode:04o}: `chmod {:o} '{path}'`, or pass a mode that grants it (e.g. mode: 0o{:o}) if sharing it that far is meant",
            found & !extra,
            mode | extra
        )));
    }
    Ok(())
}

/// Checks the directory that holds `path`: others must not be able to replace the file
/// (write without the sticky bit), nor its group unless `mode` shares the file with it.
pub(crate) fn check_dir(path: &str, mode: u32) -> Result<()> {
    let dir = match std::path::Path::new(path).parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    // A missing directory is reported by the open that follows, with its errno.
    let Ok(meta) = std::fs::metadata(dir) else {
        return Ok(());
    };
    // Its owner may rename or remove any file in it, sticky bit or not: it must be this
    // user, root, or (for a store shared with a group) the group.
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let shared = mode & 0o020 != 0 && in_my_groups(meta.gid());
    if meta.uid() != me && meta.uid() != 0 && !shared {
        return Err(Error::UnsafeFile(format!(
            "the directory '{}' of '{path}' is owned by {}, who may replace any file in it; use a directory owned by this user ({}) or root",
            dir.display(),
            user(meta.uid()),
            user(me)
        )));
    }
    let found = meta.mode() & 0o7777;
    if found & STICKY != 0 {
        return Ok(()); // /tmp, /dev/shm: only a file's owner may remove or rename it
    }
    let open_to = found & WRITE_BY_OTHERS & !(mode & 0o020);
    if open_to != 0 {
        return Err(Error::UnsafeFile(format!(
            "the directory '{}' of '{path}' has mode {found:04o}: {} may write to it without the sticky bit, so anyone there could replace the store file; use a directory only you can write to, or set its sticky bit (chmod +t)",
            dir.display(),
            if open_to & 0o002 != 0 { "others" } else { "its group" }
        )));
    }
    Ok(())
}

/// Whether `gid` is this process's effective group or one of its supplementary groups.
fn in_my_groups(gid: u32) -> bool {
    // SAFETY: getegid has no preconditions; getgroups with a zero count only counts, then
    // fills at most `n` entries of a buffer of that many.
    unsafe {
        if libc::getegid() == gid {
            return true;
        }
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return false;
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        n > 0 && groups[..n as usize].contains(&gid)
    }
}

/// "uid 65534 (nobody)", or "uid 65534" when the name is unknown.
fn user(uid: u32) -> String {
    let mut pw: libc::passwd = unsafe_zeroed();
    let mut buf = [0 as libc::c_char; 1024];
    let mut out: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into `pw` and `buf` (its length given) and sets `out` to
    // `&pw` or null; nothing outlives this call but the copied name.
    let rc = unsafe { libc::getpwuid_r(uid, &mut pw, buf.as_mut_ptr(), buf.len(), &mut out) };
    if rc != 0 || out.is_null() || pw.pw_name.is_null() {
        return format!("uid {uid}");
    }
    // SAFETY: on success pw_name points to a NUL-terminated string inside `buf`.
    let name = unsafe { std::ffi::CStr::from_ptr(pw.pw_name) };
    format!("uid {uid} ({})", name.to_string_lossy())
}

fn unsafe_zeroed() -> libc::passwd {
    // SAFETY: passwd is plain old data (integers and pointers); all-zero is a valid value
    // that getpwuid_r overwrites.
    unsafe { std::mem::zeroed() }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn temp_dir(mode: u32) -> std::path::PathBuf {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let d = std::env::temp_dir().join(format!(
            "skv-trust-{}-{}",
            std::process::id(),
            N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(mode)).unwrap();
        d
    }

    #[test]
    fn modes_and_directories() {
        let d = temp_dir(0o700);
        let f = d.join("a.kv");
        let p = f.to_str().unwrap();
        std::fs::write(&f, b"x").unwrap();
        for (file_mode, opt, ok) in [
            (0o600, 0o600, true),
            (0o644, 0o600, true), // readable is not writable
            (0o660, 0o600, false),
            (0o660, 0o660, true),
            (0o666, 0o660, false),
            (0o666, 0o666, true),
            (0o602, 0o600, false),
        ] {
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(file_mode)).unwrap();
            let r = check_file(p, &std::fs::metadata(&f).unwrap(), opt);
            assert_eq!(r.is_ok(), ok, "file {file_mode:o}, mode {opt:o}: {r:?}");
            if let Err(Error::UnsafeFile(m)) = r {
                assert!(m.contains(&format!("{file_mode:04o}")), "{m}");
            }
        }
        for (dir_mode, opt, ok) in [
            (0o700, 0o600, true),
            (0o755, 0o600, true),
            (0o777, 0o600, false),
            (0o1777, 0o600, true),
            (0o770, 0o600, false),
            (0o770, 0o660, true),
            (0o777, 0o666, false), // sharing the file does not make a replaceable name safe
        ] {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(dir_mode)).unwrap();
            assert_eq!(
                check_dir(p, opt).is_ok(),
                ok,
                "dir {dir_mode:o}, mode {opt:o}"
            );
        }
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700)).unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        // Owned by another user: refused, root included. Needs chown (root).
        let c = std::ffi::CString::new(p).unwrap();
        // SAFETY: chown of a file this test made; the path is NUL-terminated.
        if unsafe { libc::chown(c.as_ptr(), 65534, 65534) } == 0 {
            let r = check_file(p, &std::fs::metadata(&f).unwrap(), 0o600);
            assert!(
                matches!(r, Err(Error::UnsafeFile(ref m)) if m.contains("uid 65534")),
                "{r:?}"
            );
            // Another user's file in one of our groups: accepted only when shared with it.
            // SAFETY: as above; getegid cannot fail.
            unsafe { libc::chown(c.as_ptr(), 65534, libc::getegid()) };
            std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o660)).unwrap();
            let meta = std::fs::metadata(&f).unwrap();
            assert!(check_file(p, &meta, 0o660).is_ok());
            assert!(check_file(p, &meta, 0o600).is_err());
            // A directory another user owns: they could replace the file, sticky bit or not.
            let dc = std::ffi::CString::new(d.to_str().unwrap()).unwrap();
            // SAFETY: as above.
            unsafe { libc::chown(dc.as_ptr(), 65534, 65534) };
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1755)).unwrap();
            let r = check_dir(p, 0o600);
            assert!(
                matches!(r, Err(Error::UnsafeFile(ref m)) if m.contains("owned by uid 65534")),
                "{r:?}"
            );
        } else {
            eprintln!("skipped the owner case: chown needs root");
        }
        std::fs::remove_dir_all(d).unwrap();
    }
}
