//! File primitives every layer shares: atomic writes, content digests, stat identity.
//!
//! They sit below storage and the node types alike, so neither has to import the other
//! for them.

use std::path::{Path, PathBuf};

/// How pflow's temp files begin: `.pflow-tmp-<pid>-<random>`, so that one left behind by
/// a killed process can be told from one being written right now.
pub const TMP_PREFIX: &str = ".pflow-tmp-";

/// Older temp files without a process id are taken for leftovers after this long.
const UNOWNED_TMP_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Write bytes to `path` atomically: a temp file in the same directory, then rename.
/// The first write into a directory also removes the temp files a killed pflow left
/// there.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

/// Like [`write_atomic`]; `durable: false` skips the fsync, for pflow's own records that
/// are only an optimisation (a torn one after a power cut is detected and ignored).
pub fn write_atomic_with(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    write_atomic_by(path, durable, |w| w.write_all(bytes))
}

/// Like [`write_atomic_with`], the content written by `fill` as it is made (a record of
/// a megabyte is not built in memory first).
pub fn write_atomic_by(
    path: &Path,
    durable: bool,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    write_atomic_as(path, durable, None, fill)
}

/// The permission bits a file is restored with unless it was made with others.
pub const PLAIN_MODE: u32 = 0o644;

/// A file's permission bits as pflow records them (no set-id or sticky bits).
pub fn permission_bits(meta: &std::fs::Metadata) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o777
}

/// Write a file as [`write_atomic`] does, with these permission bits (from the start:
/// a crash never leaves the content with other ones).
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    write_atomic_as(path, true, Some(mode & 0o777), |w| w.write_all(bytes))
}

fn write_atomic_as(
    path: &Path,
    durable: bool,
    mode: Option<u32>,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    sweep_once(dir);
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!("{TMP_PREFIX}{}-", std::process::id()))
        .tempfile_in(dir)?;
    {
        let mut w = std::io::BufWriter::with_capacity(64 * 1024, tmp.as_file_mut());
        fill(&mut w)?;
        w.flush()?;
    }
    if durable {
        tmp.as_file().sync_data()?;
    }
    // Keep the existing file's permissions, as an editor would.
    // Best effort, as before: some mounts refuse chmod, and the content is what counts.
    if let Some(mode) = mode {
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(mode));
    } else if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else {
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(PLAIN_MODE));
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A file's content as read by [`read_bytes`]: mapped, or in a buffer of its own.
pub enum Bytes {
    Owned(Vec<u8>),
    Mapped(memmap2::Mmap),
    /// Mapped, its file held open under a shared lock ([`read_bytes_held`]).
    Held(memmap2::Mmap, std::fs::File),
}

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(m) | Bytes::Held(m, _) => m,
        }
    }
}

impl Bytes {
    /// The bytes as a buffer of their own, to change (a mapped file's are copied first).
    pub fn to_mut(&mut self) -> &mut Vec<u8> {
        if let Bytes::Mapped(m) | Bytes::Held(m, _) = self {
            *self = Bytes::Owned(m.to_vec());
        }
        match self {
            Bytes::Owned(v) => v,
            Bytes::Mapped(_) | Bytes::Held(..) => unreachable!("made owned above"),
        }
    }
}

impl Clone for Bytes {
    fn clone(&self) -> Bytes {
        Bytes::Owned(self.to_vec())
    }
}

impl Default for Bytes {
    fn default() -> Bytes {
        Bytes::Owned(Vec::new())
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Bytes {
        Bytes::Owned(v)
    }
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({})", self.len())
    }
}

/// Files from this size on are mapped rather than read.
const MAP_FROM: u64 = 64 * 1024;

/// A file's content, for pflow's own records (a build record, the cache's index). A big
/// one is memory-mapped: read into a buffer, each of its pages cost the copy and a fresh,
/// zeroed page of memory, which made up a third of an edit build of 10,000 nodes.
/// Mapping is safe here because pflow never rewrites such a file in place: a new one is
/// renamed over it, and the mapping keeps the old file's pages (the no-op record is the
/// exception: written over as a spare, it is read by [`read_bytes_held`]). Only on a
/// local disk: on a network or FUSE file system another host's change can take a mapped
/// page away, and reading it then kills the process (SIGBUS) where a read would fail.
pub fn read_bytes(path: &Path) -> std::io::Result<Bytes> {
    read_mapped(path, Reading::Whole)
}

/// [`read_bytes`] for a file of which little is read (a table looked up in a few rows):
/// a mapped one's pages are left for the reads to fault in, rather than all mapped at
/// once.
pub fn read_bytes_sparsely(path: &Path) -> std::io::Result<Bytes> {
    read_mapped(path, Reading::Sparsely)
}

/// [`read_bytes`] for a record whose file may be written over once it is no longer
/// the record ([`crate::cache::spare`]): a mapped one is held under a shared `flock`
/// for as long as it is mapped, which keeps any writer off it. Taken before its size is
/// read, so what is mapped is a whole file, not one being written; not waited for (a
/// writer stopped while it holds the file must not stop this build): `WouldBlock`.
pub fn read_bytes_held(path: &Path) -> std::io::Result<Bytes> {
    read_mapped(path, Reading::Held)
}

/// How [`read_mapped`] reads a file.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    /// All of it: a mapping's pages mapped at once.
    Whole,
    /// A little of it: a mapping's pages left to fault in.
    Sparsely,
    /// All of it, under a shared lock held with the mapping ([`read_bytes_held`]).
    Held,
}

fn read_mapped(path: &Path, how: Reading) -> std::io::Result<Bytes> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    if how == Reading::Held {
        file.try_lock_shared()
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::WouldBlock))?;
    }
    let len = file.metadata()?.len();
    if len >= MAP_FROM && on_local_disk(&file) {
        let mut options = memmap2::MmapOptions::new();
        if how != Reading::Sparsely {
            // MAP_POPULATE maps its pages in one call rather than a fault each.
            options.populate();
        }
        // SAFETY: the file is one of pflow's own, only ever replaced by rename (see
        // above), or written over only under an exclusive lock that the shared one held
        // with a `Held` mapping excludes (advisory: every pflow that writes over a
        // record takes it; older ones used another name); the mapping is read-only.
        if let Ok(map) = unsafe { options.map(&file) } {
            return Ok(match how {
                Reading::Held => Bytes::Held(map, file),
                Reading::Whole | Reading::Sparsely => Bytes::Mapped(map),
            });
        }
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.read_to_end(&mut bytes)?;
    Ok(Bytes::Owned(bytes))
}

/// Put one of pflow's own records in place atomically, not synced (like
/// [`write_atomic_by`] with `durable: false`). The old one is moved aside first, under
/// a temp file's name, and removed by [`discard`]: renaming over an existing file makes
/// ext4 flush the new one's data at once (its `auto_da_alloc` safeguard for editors),
/// which cost milliseconds per record, and unlinking one written moments before took
/// 0.3-0.6 ms on the build's own thread. Until the new one is in place there is none,
/// which only costs a build that reads it then some time.
pub fn replace_record(
    path: &Path,
    fill: impl FnOnce(&mut std::io::BufWriter<&mut std::fs::File>) -> std::io::Result<()>,
) -> std::io::Result<()> {
    remove_record(path)?;
    write_atomic_by(path, false, fill)
}

/// Remove one of pflow's own records as [`replace_record`] removes the old one: moved
/// aside at once, unlinked by [`discard`]. None there is no error.
pub fn remove_record(path: &Path) -> std::io::Result<()> {
    let aside = path.with_file_name(format!(
        "{TMP_PREFIX}{}-old-{:016x}",
        std::process::id(),
        fastrand::u64(..)
    ));
    match std::fs::rename(path, &aside) {
        Ok(()) => discard(aside),
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    Ok(())
}

/// The way to the thread that removes what [`discard`] is given (never joined: see
/// [`finish_discards`]).
static DISCARDER: std::sync::Mutex<Option<std::sync::mpsc::Sender<PathBuf>>> =
    std::sync::Mutex::new(None);

/// Files given to [`discard`] and not yet removed, and the signal that none is left.
static DISCARDS_PENDING: std::sync::Mutex<usize> = std::sync::Mutex::new(0);
static DISCARDS_DONE: std::sync::Condvar = std::sync::Condvar::new();

/// One file given to [`discard`] is removed (or failed to be).
fn discarded() {
    let mut pending = DISCARDS_PENDING.lock().unwrap_or_else(|p| p.into_inner());
    *pending = pending.saturating_sub(1);
    if *pending == 0 {
        DISCARDS_DONE.notify_all();
    }
}

/// Remove the file at `path` (one of pflow's own, under a temp file's name) on a thread
/// of its own, so that the build does not wait for the file system to free it.
/// [`finish_discards`] waits for them; a process killed first leaves them to the next
/// write into their directory, which sweeps a dead process's temp files away.
pub fn discard(path: PathBuf) {
    let mut discarder = DISCARDER.lock().unwrap_or_else(|p| p.into_inner());
    if discarder.is_none() {
        let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
        let spawned = crate::memory::spawn_light(c"pflow-discard", move || {
            for path in rx {
                let _ = std::fs::remove_file(path);
                discarded();
            }
        });
        if spawned.is_ok() {
            *discarder = Some(tx);
        }
    }
    *DISCARDS_PENDING.lock().unwrap_or_else(|p| p.into_inner()) += 1;
    let unsent = match discarder.as_ref() {
        Some(tx) => tx.send(path).err().map(|e| e.0),
        None => Some(path),
    };
    if let Some(path) = unsent {
        let _ = std::fs::remove_file(path);
        discarded();
    }
}

/// Wait until every file given to [`discard`] is removed (before the process ends), at
/// most [`DISCARD_WAIT`] (what is left then, the next write into its directory sweeps
/// away). The thread is left waiting for more, not ended and joined: its end (its heap
/// handed back, its stack unmapped) took 0.5-0.7 ms at the end of every build that
/// replaced a record, and the process ends it as it exits.
pub fn finish_discards() {
    let pending = DISCARDS_PENDING.lock().unwrap_or_else(|p| p.into_inner());
    let _ = DISCARDS_DONE.wait_timeout_while(pending, DISCARD_WAIT, |p| *p > 0);
}

/// How long the end of a process waits for [`discard`]'s removals.
const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Is `file` on a file system of this machine's own (ext2/3/4, xfs, btrfs, tmpfs,
/// overlay, zfs, f2fs)? Anything else, or not Linux: no.
fn on_local_disk(file: &std::fs::File) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        const LOCAL: [i64; 7] = [
            0xEF53,
            0x5846_5342,
            0x9123_683E,
            0x0102_1994,
            0x794C_7630,
            0x2FC1_2FC1,
            0xF2F5_2010,
        ];
        // SAFETY: statfs is plain data, all zeros is a valid value of it.
        let mut s: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: fstatfs writes only into `s`, which we own; the descriptor is open.
        if unsafe { libc::fstatfs(file.as_raw_fd(), &mut s) } != 0 {
            return false;
        }
        #[allow(clippy::unnecessary_cast)]
        LOCAL.contains(&(s.f_type as i64))
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = file;
        false
    }
}

/// BLAKE3 of a file's content (memory-mapped and multi-threaded for large files).
pub fn file_digest(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let len = std::fs::metadata(path)?.len();
    if len >= 1 << 20 {
        h.update_mmap_rayon(path)?;
    } else {
        h.update(&std::fs::read(path)?);
    }
    Ok(h.finalize())
}

/// What tells a file apart without reading it, as git's index and Bazel's stat cache
/// see it: size and mtime, which `touch -r`, `cp -p`, `rsync -t` or untarring put back,
/// and the inode, device and change time, which they cannot. Equal identities mean the
/// same content, unless the file changed within the clock's resolution of being looked
/// at (callers re-hash recent files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct FileId {
    pub size: u64,
    pub mtime_ns: i128,
    pub ctime_ns: i128,
    pub ino: u64,
    pub dev: u64,
}

impl FileId {
    /// The later of its modification and change times.
    pub fn touched_ns(&self) -> i128 {
        self.mtime_ns.max(self.ctime_ns)
    }
}

/// The identity of the file at `path` (a symlink's target's), if there is one.
pub fn stat(path: &Path) -> Option<FileId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    let ns = |s: i64, n: i64| s as i128 * 1_000_000_000 + n as i128;
    Some(FileId {
        size: m.len(),
        mtime_ns: ns(m.mtime(), m.mtime_nsec()),
        ctime_ns: ns(m.ctime(), m.ctime_nsec()),
        ino: m.ino(),
        dev: m.dev(),
    })
}

/// Remove the temp files of dead pflow processes from `dir`, once per directory per
/// process (an output folder may hold many files, and a batch writes into it many times).
fn sweep_once(dir: &Path) {
    static SWEPT: std::sync::Mutex<Option<std::collections::HashSet<PathBuf>>> =
        std::sync::Mutex::new(None);
    {
        // A folder held open (`/proc/self/fd/N`, see `workspace::Held`) by where it is:
        // the number names other folders later.
        let key = if dir.starts_with("/proc/self/fd") {
            std::fs::read_link(dir).unwrap_or_else(|_| dir.to_path_buf())
        } else {
            dir.to_path_buf()
        };
        let mut swept = SWEPT.lock().unwrap_or_else(|p| p.into_inner());
        if !swept.get_or_insert_with(Default::default).insert(key) {
            return;
        }
    }
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(TMP_PREFIX)) else {
            continue;
        };
        let leftover = match rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<i32>().ok())
        {
            Some(pid) => pid > 0 && !process_alive(pid),
            None => e
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age > UNOWNED_TMP_AGE),
        };
        if leftover && e.file_type().is_ok_and(|t| t.is_file() || t.is_symlink()) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Is there a process with this id? (A process of another user counts as alive.)
fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    let r = unsafe { libc::kill(pid, 0) };
    r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// A path under the home directory as `~/…`, so that what names it (an output, a key)
/// is the same for every user; other paths as they are.
pub fn portable_path(path: &str) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let home = home.trim_end_matches('/');
    match path.strip_prefix(home).and_then(|r| r.strip_prefix('/')) {
        Some(rest) if !home.is_empty() => format!("~/{rest}"),
        _ => path.to_string(),
    }
}

/// The folder `path` is in (`.` for a bare name).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Where the symbolic link at `path` points, as bytes; `None` when `path` is no link.
pub fn link_target(path: &Path) -> Option<Vec<u8>> {
    use std::os::unix::ffi::OsStringExt;
    std::fs::read_link(path)
        .ok()
        .map(|t| t.into_os_string().into_vec())
}

/// The digest pflow records for a symbolic link a node made: of where it points, marked
/// as a link's, so it never equals that of a file holding the same text.
pub fn link_digest(target: &[u8]) -> blake3::Hash {
    let mut h = blake3::Hasher::new();
    h.update(b"pflow symbolic link\0");
    h.update(target);
    h.finalize()
}

/// Make a symbolic link at `path` to `target` atomically: made under a temp name beside
/// it, then renamed over whatever is there.
pub fn link_atomic(path: &Path, target: &[u8]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let dir = parent_dir(path);
    std::fs::create_dir_all(dir)?;
    let target = std::ffi::OsStr::from_bytes(target);
    for _ in 0..100 {
        let tmp = dir.join(format!(
            "{TMP_PREFIX}{}-{:016x}",
            std::process::id(),
            fastrand::u64(..)
        ));
        match std::os::unix::fs::symlink(target, &tmp) {
            Ok(()) => {
                return std::fs::rename(&tmp, path).inspect_err(|_| {
                    let _ = std::fs::remove_file(&tmp);
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free temp name for a link"))
}

/// `path` with `suffix` added, or with `.1`, `.2`, ... after it: the first that names
/// nothing yet.
pub fn free_name(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    let first = PathBuf::from(&name);
    if std::fs::symlink_metadata(&first).is_err() {
        return first;
    }
    (1u32..)
        .map(|n| {
            let mut other = name.clone();
            other.push(format!(".{n}"));
            PathBuf::from(other)
        })
        .find(|p| std::fs::symlink_metadata(p).is_err())
        .unwrap_or(first)
}

/// Rename `from` to `to` unless `to` exists (`AlreadyExists` then; `Unsupported` where
/// the system cannot refuse, `InvalidInput` where the file system cannot).
pub fn rename_new(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::ffi::OsStrExt;
        let c = |p: &Path| {
            std::ffi::CString::new(p.as_os_str().as_bytes())
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
        };
        let (from, to) = (c(from)?, c(to)?);
        // SAFETY: both are NUL-terminated paths that live across the call.
        let r = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (from, to);
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Move the file at `path` aside, to [`free_name`]'s name, without ever replacing a
/// file there ([`rename_new`]), so two builds keeping a hand edit at once each get their
/// own name. Where the file system cannot refuse, a plain rename.
pub fn move_aside(path: &Path, suffix: &str) -> std::io::Result<PathBuf> {
    use std::io::ErrorKind;
    for _ in 0..1000 {
        let aside = free_name(path, suffix);
        match rename_new(path, &aside) {
            Ok(()) => return Ok(aside),
            // Taken since it was found free: the next one.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e)
                if matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidInput)
                    || e.raw_os_error() == Some(libc::ENOSYS) =>
            {
                std::fs::rename(path, &aside)?;
                return Ok(aside);
            }
            Err(e) => return Err(e),
        }
    }
    Err(std::io::Error::other("no free name to move it to"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds that keep hand edits at the same time never keep one over another: every
    /// move that succeeded left its own file.
    #[test]
    fn moves_aside_at_once_never_replace_each_other() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.txt");
        let moved = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|s| {
            for t in 0..8 {
                let (path, moved) = (&path, &moved);
                s.spawn(move || {
                    for n in 0..100 {
                        let _ = write_atomic(path, format!("{t}-{n}").as_bytes());
                        if move_aside(path, ".pflow-kept").is_ok() {
                            moved.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        let kept = std::fs::read_dir(dir.path())
            .expect("read dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".pflow-kept"))
            .count();
        assert_eq!(kept, moved.load(std::sync::atomic::Ordering::SeqCst));
        assert!(kept > 0);
    }

    #[test]
    fn a_replaced_record_is_the_new_one_and_the_old_one_is_removed_before_the_end() {
        use std::io::Write;
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("wf.noop");
        for content in ["first", "second, longer", "third"] {
            replace_record(&path, |w| w.write_all(content.as_bytes())).expect("saved");
            assert_eq!(std::fs::read_to_string(&path).expect("read"), content);
        }
        finish_discards();
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["wf.noop"], "nothing else is left");
        // A file that is not there is simply written.
        let fresh = dir.path().join("fresh.bin");
        replace_record(&fresh, |w| w.write_all(b"x")).expect("saved");
        assert_eq!(std::fs::read(&fresh).expect("read"), b"x");
    }

    #[test]
    fn a_mapped_record_keeps_what_it_read_when_a_new_one_replaces_it() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("record");
        let old: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        write_atomic_with(&path, &old, false).expect("written");
        let read = read_bytes(&path).expect("read");
        assert!(matches!(read, Bytes::Mapped(_)), "a big file is mapped");
        // A save streams the new one to a temp file and renames it over the old.
        write_atomic_by(&path, false, |w| {
            use std::io::Write;
            for chunk in old.chunks(7000) {
                w.write_all(&chunk.iter().map(|b| b ^ 0xff).collect::<Vec<u8>>())?;
            }
            Ok(())
        })
        .expect("replaced");
        assert!(read[..] == old[..], "the mapping still shows the old file");
        let new = read_bytes(&path).expect("read again");
        assert_eq!(new.len(), old.len());
        assert!(new.iter().zip(&old).all(|(n, o)| *n == o ^ 0xff));
    }

    #[test]
    fn small_and_empty_files_are_read() {
        let dir = tempfile::tempdir().expect("temp dir");
        for content in [&b""[..], b"abc"] {
            let path = dir.path().join("small");
            write_atomic_with(&path, content, false).expect("written");
            let read = read_bytes(&path).expect("read");
            assert!(matches!(read, Bytes::Owned(_)));
            assert_eq!(&read[..], content);
        }
        assert!(read_bytes(&dir.path().join("missing")).is_err());
    }
}
