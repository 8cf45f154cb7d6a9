//! The memory a store lives in. Three kinds, one format:
//!
//! - a SharedArrayBuffer, which V8 allocates (the binding makes it and passes its address to
//!   [`Region::new`]; nothing here);
//! - [`Memory::anonymous`]: zeroed pages for a named store, shared by the threads of one
//!   process, committed by the OS only as they are touched;
//! - [`Memory::open_file`]: a file mapped shared, so every process that opens the same path
//!   maps the same pages (on tmpfs such as `/dev/shm`, RAM; on a disk, the page cache).
//!
//! The binding never drops a `Memory` it gave out (JS may hold views of it until they are
//! collected, and a store name or path lasts as long as the process uses it): the registries
//! keep them. Dropping a `Memory` unmaps it, so no `Region` of it may outlive it.

use std::ptr;
use std::sync::atomic::Ordering::Relaxed;

use crate::error::{Error, Result};
use crate::layout::{HEADER_SIZE, MAX_REGION_BYTES};
use crate::region::Region;
use crate::store::{Store, MIN_REGION_BYTES};

/// Mapped memory a store lives in (unmapped when dropped; see the module comment).
#[derive(Debug)]
pub struct Memory {
    base: *mut u8,
    len: usize,
    /// For a file: the identity (device, inode) of the file mapped.
    pub file_id: Option<(u64, u64)>,
}

// SAFETY: the memory is only accessed through a Region's atomics (see region.rs), and it is
// never unmapped, so the pointer stays valid in every thread.
unsafe impl Send for Memory {}
// SAFETY: as above.
unsafe impl Sync for Memory {}

/// How `open_file` opens or creates a store file.
#[derive(Debug, Clone, Copy)]
pub struct FileOptions {
    /// The file's size when this call creates it (a later open uses the file's own size).
    pub max_bytes: u64,
    /// Permission bits of a new file, applied exactly (not filtered by the umask).
    pub mode: u32,
    /// Create the file if it does not exist.
    pub create: bool,
    /// Whether a new store evicts when full, and its entry limit (`max_bytes` is the file size).
    pub evict: bool,
    pub max_entries: u64,
    /// The keys a new store's index is sized for (0: none; see `Limits::expected_keys`).
    pub expected_keys: u64,
    /// The longest file the caller can use (the binding: the largest ArrayBuffer Node makes,
    /// at most `MAX_REGION_BYTES`); a longer file is refused as not a store.
    pub max_file_bytes: u64,
}

impl FileOptions {
    /// A new private (0600) store file of `max_bytes` that does not evict, created if missing:
    /// the other fields set with `..FileOptions::new(n)`.
    pub const fn new(max_bytes: u64) -> FileOptions {
        FileOptions {
            max_bytes,
            mode: 0o600,
            create: true,
            evict: false,
            max_entries: 0,
            expected_keys: 0,
            max_file_bytes: MAX_REGION_BYTES,
        }
    }
}

impl Memory {
    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// A view of the whole memory. The caller keeps `self` alive as long as the view is used.
    pub fn region(&self) -> Region {
        // SAFETY: `len` bytes at `base` stay mapped until `self` is dropped, which the caller
        // defers past the region's use (see the module comment); page-aligned, so 8-aligned.
        unsafe { Region::new(self.base, self.len) }
    }

    /// `len` zeroed bytes that cost nothing until touched. Inside Node, a 1 GiB `alloc_zeroed`
    /// measured 0.8 s and 1.1 GB of resident memory; an anonymous mapping is committed page by
    /// page as the store fills.
    pub fn anonymous(len: usize) -> Result<Memory> {
        #[cfg(unix)]
        {
            // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
            let p = unsafe {
                libc::mmap(
                    ptr::null_mut(),
                    len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                // Not the store being full: the OS would not give the address space.
                let e = std::io::Error::last_os_error();
                return Err(Error::Io {
                    code: "ENOMEM".into(),
                    message: format!(
                        "ENOMEM: the OS refused {len} bytes of address space for a store in memory ({e}); a smaller maxBytes fits, or raise the limit (ulimit -v, vm.overcommit_memory)"
                    ),
                });
            }
            Ok(Memory {
                base: p.cast(),
                len,
                file_id: None,
            })
        }
        #[cfg(not(unix))]
        {
            let layout =
                std::alloc::Layout::from_size_align(len.max(8), 4096).map_err(|_| Error::Full {
                    needed: len as u64,
                    max: len as u64,
                })?;
            // SAFETY: a non-zero size with a valid alignment; null is checked below.
            let p = unsafe { std::alloc::alloc_zeroed(layout) };
            if p.is_null() {
                return Err(Error::Full {
                    needed: len as u64,
                    max: len as u64,
                });
            }
            Ok(Memory {
                base: p,
                len,
                file_id: None,
            })
        }
    }

    /// Opens the store file at `path`, creating and formatting it first if it does not exist
    /// and `opts.create`. Returns the mapping and whether this call created the store.
    ///
    /// A new store is formatted in a temporary file beside `path` and linked into place, which
    /// fails if anything (a racing creator's store, a planted symlink) is already there: so a
    /// file at `path` is always a whole store, two racing creators end up with one store, and
    /// a symlink at `path` is never followed to create or format anything.
    #[cfg(unix)]
    pub fn open_file(path: &str, opts: FileOptions) -> Result<(Memory, bool)> {
        for _ in 0..100 {
            match open_existing(path, &opts) {
                Ok(m) => return Ok((m, false)),
                Err(Error::Io { code, .. }) if code == "ENOENT" && opts.create => {}
                Err(e) => return Err(e),
            }
            if let Some(m) = create_new(path, opts)? {
                return Ok((m, true));
            }
            // Another process linked its store first: open that one.
        }
        Err(io_error(
            path,
            "open",
            std::io::Error::other("the file keeps vanishing"),
        ))
    }

    #[cfg(not(unix))]
    pub fn open_file(path: &str, _opts: FileOptions) -> Result<(Memory, bool)> {
        Err(Error::Io {
            code: "ENOTSUP".into(),
            message: format!("openStore('{path}'): store files are supported on Unix only"),
        })
    }
}

/// Writes the changes of a shared file mapping at `base` to its file and waits for the disk
/// (msync). Memory that is not a file mapping is left alone.
///
/// # Safety
/// `len` bytes at `base` must be mapped (any mapping: msync of anonymous memory is a no-op).
pub unsafe fn flush(base: *mut u8, len: usize) -> Result<()> {
    #[cfg(unix)]
    {
        // msync wants a page-aligned start; SharedArrayBuffers need not be.
        let page = 4096usize;
        let start = base as usize & !(page - 1);
        let len = len + (base as usize - start);
        // SAFETY: the range covers mapped memory only (the caller's, rounded down to its page).
        if unsafe { libc::msync(start as *mut libc::c_void, len, libc::MS_SYNC) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ENOMEM) {
                return Err(io_error("(mapped)", "flush", e));
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (base, len);
    Ok(())
}

impl Drop for Memory {
    fn drop(&mut self) {
        #[cfg(unix)]
        if self.file_id.is_some() {
            crate::fault::unregister(self.base as usize);
            crate::reserve::unregister(self.base as usize);
        }
        #[cfg(unix)]
        // SAFETY: our own mapping of `len` bytes, which nothing uses any more (see `region`).
        unsafe {
            libc::munmap(self.base.cast(), self.len);
        }
        #[cfg(not(unix))]
        if let Ok(layout) = std::alloc::Layout::from_size_align(self.len.max(8), 4096) {
            // SAFETY: allocated in `anonymous` with this very layout.
            unsafe { std::alloc::dealloc(self.base, layout) };
        }
    }
}

fn io_error(path: &str, what: &str, e: std::io::Error) -> Error {
    let code = match e.raw_os_error() {
        #[cfg(unix)]
        Some(libc::ENOENT) => "ENOENT",
        #[cfg(unix)]
        Some(libc::EACCES) => "EACCES",
        #[cfg(unix)]
        Some(libc::EPERM) => "EPERM",
        #[cfg(unix)]
        Some(libc::EEXIST) => "EEXIST",
        #[cfg(unix)]
        Some(libc::ELOOP) => "ELOOP",
        #[cfg(unix)]
        Some(libc::ENOSPC) => "ENOSPC",
        #[cfg(unix)]
        Some(libc::EISDIR) => "EISDIR",
        #[cfg(unix)]
        Some(libc::ENOTDIR) => "ENOTDIR",
        #[cfg(unix)]
        Some(libc::EROFS) => "EROFS",
        #[cfg(unix)]
        Some(libc::ENAMETOOLONG) => "ENAMETOOLONG",
        #[cfg(unix)]
        Some(libc::EMFILE) => "EMFILE",
        #[cfg(unix)]
        Some(libc::ENFILE) => "ENFILE",
        #[cfg(unix)]
        Some(libc::ENODEV) => "ENODEV",
        #[cfg(unix)]
        Some(libc::ENOMEM) => "ENOMEM",
        #[cfg(unix)]
        Some(libc::EXDEV) => "EXDEV",
        #[cfg(unix)]
        Some(libc::EINVAL) => "EINVAL",
        #[cfg(unix)]
        Some(libc::EBUSY) => "EBUSY",
        _ => "EIO",
    };
    let hint = if code == "ELOOP" {
        " (the path is a symbolic link; store files are opened without following one)"
    } else {
        ""
    };
    Error::Io {
        code: code.into(),
        message: format!("{code}: cannot {what} store file '{path}': {e}{hint}"),
    }
}

/// Maps the open store file `file` (all of it) shared.
#[cfg(unix)]
fn map_file(path: &str, file: &std::fs::File, max_len: u64) -> Result<Memory> {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::io::AsRawFd;
    let meta = file.metadata().map_err(|e| io_error(path, "stat", e))?;
    let max_len = max_len.min(MAX_REGION_BYTES);
    if meta.is_file() && meta.len() < MIN_REGION_BYTES {
        // Too short to map as a store: a store's header cut short is still told as such.
        use std::os::unix::fs::FileExt;
        let (mut magic, mut made) = ([0u8; 8], [0u8; 8]);
        if file
            .read_exact_at(&mut magic, crate::layout::H_MAGIC)
            .is_ok()
            && file
                .read_exact_at(&mut made, crate::layout::H_MAX_BYTES)
                .is_ok()
            && u64::from_le_bytes(magic) == crate::layout::MAGIC
        {
            return Err(truncated(path, meta.len(), u64::from_le_bytes(made)));
        }
    }
    if !meta.is_file() || meta.len() < MIN_REGION_BYTES || meta.len() > max_len {
        return Err(Error::NotAStore(format!(
            "'{path}' is {} bytes long; a store file is {MIN_REGION_BYTES} to {max_len} bytes here",
            meta.len()
        )));
    }
    let len = meta.len() as usize;
    // SAFETY: maps `len` bytes of an open regular file of that size; the kernel keeps the
    // mapping valid after the descriptor closes. (A file truncated by another process under a
    // mapping faults on access: fault.rs catches it.)
    let p = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if p == libc::MAP_FAILED {
        return Err(io_error(path, "map", std::io::Error::last_os_error()));
    }
    // Before any Region of it exists: every one finds the file to reserve space in.
    let dup = file.try_clone().map_err(|e| io_error(path, "open", e))?;
    crate::reserve::register(p as usize, dup, len as u64);
    let dup = file.try_clone().map_err(|e| io_error(path, "open", e))?;
    crate::fault::register(p as usize, len, dup, path);
    Ok(Memory {
        base: p.cast(),
        len,
        file_id: Some((meta.dev(), meta.ino())),
    })
}

/// Opens an existing store file; checks it is a store of this layout before anything writes.
#[cfg(unix)]
fn open_existing(path: &str, opts: &FileOptions) -> Result<Memory> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| io_error(path, "open", e))?;
    // Trusted before a byte of it is read: a planted file is refused untouched.
    crate::trust::check_dir(path, opts.mode)?;
    let meta = file.metadata().map_err(|e| io_error(path, "stat", e))?;
    crate::trust::check_file(path, &meta, opts.mode)?;
    let memory = map_file(path, &file, opts.max_file_bytes)?;
    let region = memory.region();
    if region.len() < HEADER_SIZE {
        return Err(Error::NotAStore(format!("'{path}' is too short")));
    }
    // A store file is as long as its maxBytes from its creation on: shorter, someone cut it
    // (its end, and whatever the store kept there, is gone).
    let made = region.u64(crate::layout::H_MAX_BYTES)?.load(Relaxed);
    if region.u64(crate::layout::H_MAGIC)?.load(Relaxed) == crate::layout::MAGIC
        && meta.len() < made
    {
        return Err(truncated(path, meta.len(), made));
    }
    // Read-only checks first: a file that is not a store is left exactly as it was.
    if let Err(e) = Store::attach(memory.region()) {
        return Err(match e {
            Error::NotAStore(_) => {
                Error::NotAStore(format!("'{path}' does not start with a store header"))
            }
            e => e,
        });
    }
    // What the store already uses must be allocated too (a file copied sparse has holes
    // there): a page the file system cannot give inside the file would kill the writer that
    // touches it (fault.rs leaves such faults alone), so a full file system refuses the open.
    let top = region.u64(crate::layout::H_ARENA_TOP)?.load(Relaxed);
    if let Err(Error::NoSpace { .. }) = region.reserve_to(top.min(region.len())) {
        return Err(Error::Io {
            code: "ENOSPC".into(),
            message: format!(
                "ENOSPC: store file '{path}' has pages its store uses that are not allocated (a sparse copy?), and its file system has no room for them; free space and open it again"
            ),
        });
    }
    Ok(memory)
}

fn truncated(path: &str, len: u64, made: u64) -> Error {
    Error::Truncated(format!(
        "'{path}' is {len} bytes long, but the store in it was made {made} bytes long: it was truncated, and what it held past {len} bytes is lost; delete it to start again"
    ))
}

/// Formats a store in a temporary file and links it at `path`. None if `path` exists by then.
#[cfg(unix)]
fn create_new(path: &str, opts: FileOptions) -> Result<Option<Memory>> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let size = opts.max_bytes.max(MIN_REGION_BYTES);
    if size > MAX_REGION_BYTES {
        return Err(Error::Full {
            needed: size,
            max: MAX_REGION_BYTES,
        });
    }
    // A store created where others could replace it would not stay ours.
    crate::trust::check_dir(path, opts.mode)?;
    // Unique among the threads of this process (the counter) and across processes (the pid).
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let tmp = format!(
        "{path}.{}.{}.{:x}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        crate::hash::hash_key(now_nanos(), path.as_bytes())
    );
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true) // O_EXCL: never follows a symlink, never reuses a file
        .mode(opts.mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&tmp)
        .map_err(|e| io_error(path, "create", e))?;
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&tmp);
        e
    };
    file.set_permissions(std::fs::Permissions::from_mode(opts.mode))
        .map_err(|e| cleanup(io_error(path, "chmod", e)))?;
    // A sparse file gets its pages as they are first written; one the file system cannot give
    // would kill the writer (SIGBUS) in the middle of a write. Refuse a size past what is free.
    let free = free_bytes(&file);
    if free.is_some_and(|free| size > free) {
        return Err(cleanup(Error::Io {
            code: "ENOSPC".into(),
            message: format!(
                "ENOSPC: store file '{path}' would be {size} bytes (maxBytes) but its file system has {} bytes free; choose a smaller maxBytes or another file system",
                free.unwrap_or(0)
            ),
        }));
    }
    file.set_len(size) // sparse: pages cost memory only once touched
        .map_err(|e| cleanup(io_error(path, "size", e)))?;
    let memory = map_file(path, &file, opts.max_file_bytes).map_err(cleanup)?;
    // The header and the first index, allocated before they are written.
    memory
        .region()
        .reserve_to(MIN_REGION_BYTES)
        .map_err(cleanup)?;
    let seed = crate::hash::hash_key(now_nanos(), path.as_bytes()) as u64
        | (std::process::id() as u64) << 32;
    let limits = crate::store::Limits {
        evict: opts.evict,
        max_entries: opts.max_entries,
        max_bytes: size,
        expected_keys: opts.expected_keys,
    };
    Store::create_with(
        memory.region(),
        seed,
        crate::layout::STORE_PROCESS_SHARED,
        limits,
    )
    .map_err(cleanup)?;
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(memory)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None), // unmapped on drop
        Err(e) => Err(io_error(path, "create", e)),
    }
}

/// Bytes free for unprivileged users on the file system of `file` (None if unknown).
#[cfg(unix)]
fn free_bytes(file: &std::fs::File) -> Option<u64> {
    use std::os::unix::io::AsRawFd;
    // SAFETY: statvfs is plain old data; fstatvfs fills it for an open descriptor.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid descriptor and a valid out-pointer.
    if unsafe { libc::fstatvfs(file.as_raw_fd(), &mut st) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(all(test, unix, not(loom)))]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_pointer_width = "64")]
    fn address_space_the_os_refuses_is_enomem_not_a_full_store() {
        // 2^62 bytes: more than any 64-bit platform's user address space.
        match Memory::anonymous(1 << 62) {
            Err(Error::Io { code, message }) => {
                assert_eq!(code, "ENOMEM");
                assert!(message.contains("address space"), "{message}");
            }
            other => panic!("{:?}", other.map(|m| m.len())),
        }
    }
    use std::os::unix::fs::PermissionsExt;

    fn dir() -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("skv-mem-{}-{}", std::process::id(), now_nanos()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    const OPTS: FileOptions = FileOptions::new(1 << 20);

    #[test]
    fn creates_formats_and_reopens_a_store_file() {
        let d = dir();
        let path = d.join("a.kv");
        let p = path.to_str().unwrap();
        let (m, created) = Memory::open_file(p, OPTS).unwrap();
        assert!(created);
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 1 << 20);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let s = Store::attach(m.region()).unwrap();
        assert!(s.process_shared());
        s.set(b"k", b"v", false).unwrap();
        let opts = FileOptions {
            max_bytes: 1 << 30, // ignored: the file exists
            ..OPTS
        };
        let (m2, created) = Memory::open_file(p, opts).unwrap();
        assert!(!created);
        assert_eq!(m2.len(), 1 << 20);
        let mut out = Vec::new();
        assert!(Store::attach(m2.region())
            .unwrap()
            .get(b"k", &mut out)
            .unwrap()
            .is_some());
        assert_eq!(out, b"v");
        assert_eq!(
            std::fs::read_dir(&d).unwrap().count(),
            1,
            "no temporary file left"
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn refuses_missing_foreign_symlinked_and_other_version_files_untouched() {
        let d = dir();
        let missing = d.join("missing.kv");
        let err = Memory::open_file(
            missing.to_str().unwrap(),
            FileOptions {
                create: false,
                ..OPTS
            },
        )
        .unwrap_err();
        assert!(
            matches!(err, Error::Io { ref code, .. } if code == "ENOENT"),
            "{err:?}"
        );
        assert!(!missing.exists());

        let foreign = d.join("foreign.kv");
        let junk: Vec<u8> = (0..(MIN_REGION_BYTES as usize + 100))
            .map(|i| i as u8)
            .collect();
        std::fs::write(&foreign, &junk).unwrap();
        let err = Memory::open_file(foreign.to_str().unwrap(), OPTS).unwrap_err();
        assert!(matches!(err, Error::NotAStore(_)), "{err:?}");
        assert_eq!(std::fs::read(&foreign).unwrap(), junk, "left unchanged");
        std::fs::write(&foreign, b"short").unwrap();
        let err = Memory::open_file(foreign.to_str().unwrap(), OPTS).unwrap_err();
        assert!(matches!(err, Error::NotAStore(_)), "{err:?}");

        // A whole store, but longer than the caller can use: refused by name, with the limit.
        let long = d.join("long.kv");
        let long = long.to_str().unwrap();
        Memory::open_file(long, OPTS).unwrap();
        let small = FileOptions {
            max_file_bytes: OPTS.max_bytes - 1,
            ..OPTS
        };
        let err = Memory::open_file(long, small).unwrap_err();
        let limit = format!("to {} bytes here", OPTS.max_bytes - 1);
        assert!(
            matches!(err, Error::NotAStore(ref m) if m.contains(&limit)),
            "{err:?}"
        );

        let target = d.join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = d.join("link.kv");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let err = Memory::open_file(link.to_str().unwrap(), OPTS).unwrap_err();
        assert!(
            matches!(err, Error::Io { ref code, .. } if code == "ELOOP"),
            "{err:?}"
        );
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");

        let old = d.join("old.kv");
        let (m, _) = Memory::open_file(old.to_str().unwrap(), OPTS).unwrap();
        m.region()
            .u32(crate::layout::H_VERSION)
            .unwrap()
            .store(5, std::sync::atomic::Ordering::Relaxed);
        let err = Memory::open_file(old.to_str().unwrap(), OPTS).unwrap_err();
        assert_eq!(
            err,
            Error::Layout {
                found: 5,
                expected: crate::layout::LAYOUT_VERSION
            }
        );
        std::fs::remove_dir_all(d).unwrap();
    }

    #[test]
    fn racing_creators_get_one_store() {
        let d = dir();
        let path = d.join("race.kv");
        let p = path.to_str().unwrap().to_string();
        let created: Vec<bool> = (0..4)
            .map(|i| {
                let p = p.clone();
                std::thread::spawn(move || {
                    let (m, created) = Memory::open_file(&p, OPTS).unwrap();
                    let s = Store::attach(m.region()).unwrap();
                    s.set(format!("k{i}").as_bytes(), b"x", false).unwrap();
                    std::mem::forget(m);
                    created
                })
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(created.iter().filter(|c| **c).count(), 1);
        let (m, _) = Memory::open_file(&p, OPTS).unwrap();
        assert_eq!(
            Store::attach(m.region()).unwrap().stats().unwrap().entries,
            4
        );
        std::fs::remove_dir_all(d).unwrap();
    }
}
