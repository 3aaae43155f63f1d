//! One repair at a time per workflow and cache: a build that may repair holds an
//! exclusive `flock` on `<cache>/repairs/locks/<workflow digest>.lock` from its first run
//! to its end, so concurrent builds of the same failing workflow wait for the first one's
//! repair and then replay it (one model call, each side effect once) instead of each
//! running the broken workflow and asking the model. Builds of other workflows, and
//! builds with repair off, never wait here.

use std::fs::File;
use std::path::Path;

/// The folder of `repairs/` the locks are in: not a patch, and every first build of a
/// workflow's new text adds a lock to it.
pub const LOCKS_DIR: &str = "locks";

/// A held lock; released when dropped (or when the process ends).
pub struct RepairLock {
    _file: File,
}

/// Take the lock of the workflow with `digest`, telling `on_wait` once before a wait.
/// `None` when the lock cannot be taken at all (a read-only cache): the build goes on
/// without it rather than failing.
pub fn acquire(cache_root: &Path, digest: &str, on_wait: &mut dyn FnMut()) -> Option<RepairLock> {
    use fs4::fs_std::FileExt;
    let dir = super::patch::repairs_dir(cache_root).join(LOCKS_DIR);
    std::fs::create_dir_all(&dir).ok()?;
    let name: String = digest.chars().take(32).collect();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(format!("{name}.lock")))
        .ok()?;
    if !FileExt::try_lock_exclusive(&file).ok()? {
        on_wait();
        FileExt::lock_exclusive(&file).ok()?;
    }
    Some(RepairLock { _file: file })
}
