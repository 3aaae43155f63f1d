//! Spare record files: a record that is replaced on every build is written over the
//! blocks of one taken away before, not into a new file while the old one is freed.
//!
//! The no-op record of a 10,000-node workflow is a megabyte, replaced after each edit.
//! Freeing a replaced file's blocks is the file system's dearest step: on ext4 mounted
//! with `discard` (as cloud images often are) 1.2-1.5 ms for that megabyte once it has
//! been written out, paid by whichever process drops the file last, which for the edit
//! path (it maps the record to its end) was its own exit. So a record taken away is set
//! aside under one of two spare names ([`set_aside`]), and the next record is written
//! over a spare and renamed into place ([`replace`]): two files take turns, and no block
//! is freed or allocated.
//!
//! A process that maps a record holds a shared `flock` on it while it does
//! ([`crate::fsutil::read_bytes_held`]), and a spare is written only under an exclusive
//! one taken without waiting: one still mapped anywhere (this process's own mapping
//! included) is left as it is, and a fresh file is written instead. A record cut short
//! by a crash is refused by its trailing sum. One whose overwritten blocks a power loss
//! kept from the disk while the rename reached it holds an older record, whole, and is
//! checked as any record is ([`super::noop`]): it serves nothing unless the workflow,
//! the inputs, the files, the cache's generation and its build record are as it says.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

/// How a spare's name ends, after its record's.
const SPARE_NAMES: [&str; 2] = ["spare-a", "spare-b"];

/// The two names a record at `path` is set aside under.
fn spares(path: &Path) -> [PathBuf; 2] {
    SPARE_NAMES.map(|s| {
        let mut name = path.as_os_str().to_owned();
        name.push(".");
        name.push(s);
        PathBuf::from(name)
    })
}

/// Every spare in the cache at `root`, with its size (for `pflow cache gc`).
pub fn all(root: &Path) -> Vec<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(root.join(super::layout::RECORDS_DIR)) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            SPARE_NAMES.iter().any(|s| name.ends_with(&format!(".{s}")))
        })
        .filter_map(|e| Some((e.path(), e.metadata().ok()?.len())))
        .collect()
}

/// Take the record at `path` away, keeping its file as a spare when a spare name is
/// free (else it is removed as any record is, on the discard thread). None there is no
/// error.
pub fn set_aside(path: &Path) -> io::Result<()> {
    for spare in spares(path) {
        match crate::fsutil::rename_new(path, &spare) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(_) => break,
        }
    }
    crate::fsutil::remove_record(path)
}

/// Put a new record at `path`, its bytes written by `fill`: over a spare no process
/// maps, else into a new file (as [`crate::fsutil::replace_record`] does). A record
/// still there is set aside first.
pub fn replace(
    path: &Path,
    fill: impl FnOnce(&mut BufWriter<&mut File>) -> io::Result<()>,
) -> io::Result<()> {
    set_aside(path)?;
    for spare in spares(path) {
        let Ok(mut file) = OpenOptions::new().read(true).write(true).open(&spare) else {
            continue;
        };
        // Mapped somewhere, or being written: not this one. Locked, it must still be
        // the file of that name (another build may have renamed it since it was opened),
        // and nobody else writes it or renames it until the lock is let go.
        if file.try_lock().is_err() || !same_file(&file, &spare) {
            continue;
        }
        {
            let mut w = BufWriter::with_capacity(64 * 1024, &mut file);
            fill(&mut w)?;
            w.flush()?;
        }
        let end = file.stream_position()?;
        file.set_len(end)?;
        return std::fs::rename(&spare, path);
    }
    crate::fsutil::write_atomic_by(path, false, fill)
}

/// Is `file` the file at `path`?
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::symlink_metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn put(path: &Path, text: &str) {
        replace(path, |w| w.write_all(text.as_bytes())).expect("written");
    }

    fn ino(path: &Path) -> u64 {
        std::fs::metadata(path).expect("there").ino()
    }

    /// What a reader holding `f` open reads.
    fn contents(f: &File) -> String {
        let mut seen = String::new();
        io::Read::read_to_string(&mut &*f, &mut seen).expect("read");
        seen
    }

    fn spare_count(path: &Path) -> usize {
        spares(path).iter().filter(|p| p.exists()).count()
    }

    #[test]
    fn a_record_set_aside_is_written_over_by_the_next() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.noop");
        put(&path, "first, the longer of the two");
        let first = ino(&path);
        set_aside(&path).expect("set aside");
        assert!(!path.exists(), "taken away");
        put(&path, "second");
        assert_eq!(ino(&path), first, "the spare's file, not a new one");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "second");
        assert_eq!(spare_count(&path), 0);
    }

    #[test]
    fn a_fill_that_fails_puts_no_record_in_place_and_the_next_is_whole() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.noop");
        put(&path, "a record long enough to leave bytes behind");
        // Half written, then an error (a full disk): the old record is gone (a build
        // that may change anything takes it away first), and nothing half made is
        // where a reader looks.
        let failed = replace(&path, |w| {
            w.write_all(b"half")?;
            Err(io::Error::other("the disk is full"))
        });
        assert!(failed.is_err());
        assert!(!path.exists(), "no record after a failed write");
        // The next one is written over that spare, and nothing of it or of the record
        // before it is left past its end.
        put(&path, "short");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "short");
    }

    #[test]
    fn a_spare_someone_holds_is_never_written_over() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.noop");
        put(&path, "one");
        // A reader holds it, as a mapping does.
        let held = File::open(&path).expect("open");
        held.lock_shared().expect("locked");
        set_aside(&path).expect("set aside");
        put(&path, "two");
        assert_ne!(ino(&path), held.metadata().expect("meta").ino());
        assert_eq!(contents(&held), "one", "what the reader holds is as it was");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "two");
        // Let go, it is the next one's file; the two take turns.
        let one = held.metadata().expect("meta").ino();
        drop(held);
        set_aside(&path).expect("set aside");
        put(&path, "three");
        assert_eq!(ino(&path), one);
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "three");
        assert_eq!(spare_count(&path), 1);
    }

    #[test]
    fn a_mapped_record_keeps_its_bytes_while_the_next_is_written() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.noop");
        let big = "x".repeat(200_000);
        put(&path, &big);
        let mapped = crate::fsutil::read_bytes_held(&path).expect("read");
        assert!(
            matches!(mapped, crate::fsutil::Bytes::Held(..)),
            "mapped, under the lock"
        );
        assert_eq!(
            crate::fsutil::read_bytes_held(&path).map(|b| b.len()).ok(),
            Some(big.len()),
            "a second reader shares the lock"
        );
        set_aside(&path).expect("set aside");
        put(&path, "new");
        assert_eq!(&mapped[..], big.as_bytes());
        drop(mapped);
        set_aside(&path).expect("set aside");
        put(&path, "newer");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "newer");
    }

    #[test]
    fn with_both_spares_held_a_record_is_removed_and_a_new_one_written() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("w.noop");
        let mut held = Vec::new();
        for text in ["a", "b", "c"] {
            put(&path, text);
            let f = File::open(&path).expect("open");
            f.lock_shared().expect("locked");
            held.push(f);
            set_aside(&path).expect("set aside");
        }
        assert!(!path.exists());
        assert_eq!(spare_count(&path), 2);
        put(&path, "d");
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "d");
        for (f, text) in held.iter().zip(["a", "b", "c"]) {
            assert_eq!(contents(f), text);
        }
    }
}
