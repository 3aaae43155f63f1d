//! The cache directory's lock: builds hold a shared `flock` on `<cache>/.pflow-lock`,
//! `pflow cache gc | verify | clear` an exclusive one, so maintenance never rewrites a
//! bucket or deletes a blob under a running build. The lock is released when the
//! [`CacheLock`] is dropped, or when the process dies.

use super::layout;
use super::CacheError;
use std::fs::File;
use std::path::Path;

/// A held lock on the cache directory.
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// Shared (builds) or exclusive (maintenance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Shared,
    Exclusive,
}

/// Why a lock is not granted at once: whoever holds it the other way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub mode: Mode,
    pub root: std::path::PathBuf,
}

impl std::fmt::Display for Waiting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.mode {
            Mode::Exclusive => write!(
                f,
                "waiting for other pflow processes using the cache {} to finish…",
                self.root.display()
            ),
            Mode::Shared => write!(
                f,
                "waiting for cache maintenance on {} to finish…",
                self.root.display()
            ),
        }
    }
}

/// Take the lock of the cache at `root` (creating the directory), waiting while another
/// process holds it the other way. `on_wait` is told once, before the wait, so the
/// caller can say why nothing happens.
pub fn acquire(
    root: &Path,
    mode: Mode,
    on_wait: &mut dyn FnMut(&Waiting),
) -> Result<CacheLock, CacheError> {
    use fs4::fs_std::FileExt;
    let err = |what: String, e: std::io::Error| CacheError(format!("{what}: {e}"));
    std::fs::create_dir_all(root).map_err(|e| {
        err(
            format!("cannot create the cache directory {}", root.display()),
            e,
        )
    })?;
    let path = layout::lock_path(root);
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| err(format!("cannot open the lock {}", path.display()), e))?;
    let exclusive = mode == Mode::Exclusive;
    let got = if exclusive {
        FileExt::try_lock_exclusive(&file)
    } else {
        FileExt::try_lock_shared(&file)
    }
    .map_err(|e| err(format!("cannot lock {}", path.display()), e))?;
    if !got {
        on_wait(&Waiting {
            mode,
            root: root.to_path_buf(),
        });
        if exclusive {
            FileExt::lock_exclusive(&file)
        } else {
            FileExt::lock_shared(&file)
        }
        .map_err(|e| err(format!("cannot lock {}", path.display()), e))?;
    }
    if mode == Mode::Shared {
        // A build's cache: maintenance may then work on it.
        layout::mark(root);
    }
    Ok(CacheLock { _file: file })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shared_locks_coexist_and_exclusive_waits_for_them() {
        let dir = tempfile::tempdir().unwrap();
        let mut never = |_: &Waiting| panic!("a shared lock must not wait for another");
        let a = acquire(dir.path(), Mode::Shared, &mut never).unwrap();
        let _b = acquire(dir.path(), Mode::Shared, &mut never).unwrap();
        let root = dir.path().to_path_buf();
        let (tx, rx) = std::sync::mpsc::channel();
        let t = std::thread::spawn(move || {
            acquire(&root, Mode::Exclusive, &mut |w| {
                let _ = tx.send(w.clone());
            })
            .map(|_| ())
        });
        // The shared locks are held until the exclusive one has said it waits.
        let waited = rx.recv().expect("the exclusive lock had to wait");
        drop(a);
        drop(_b);
        t.join().unwrap().unwrap();
        assert_eq!(waited.mode, Mode::Exclusive);
        assert!(waited
            .to_string()
            .contains("waiting for other pflow processes"));
    }
}
