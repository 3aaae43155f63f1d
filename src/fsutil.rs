//! File primitives every layer shares: atomic writes, content digests, stat identity.
//!
//! They sit below storage and the node types alike, so neither has to import the other
//! for them.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

/// Write bytes to `path` atomically: a temp file in the same directory, then rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_with(path, bytes, true)
}

/// Like [`write_atomic`]; `durable: false` skips the fsync, for pflow's own records that
/// are only an optimisation (a torn one after a power cut is detected and ignored).
pub fn write_atomic_with(path: &Path, bytes: &[u8], durable: bool) -> std::io::Result<()> {
    use std::io::Write;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".pflow-tmp-")
        .tempfile_in(&dir)?;
    tmp.write_all(bytes)?;
    if durable {
        tmp.as_file().sync_data()?;
    }
    // Keep the existing file's permissions, as an editor would.
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    } else {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644));
    }
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
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

/// (size, mtime in ns) of a file, if it exists.
pub fn stat(path: &Path) -> Option<(u64, i128)> {
    let m = std::fs::metadata(path).ok()?;
    let mtime = m.modified().ok()?;
    let ns = match mtime.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(e) => -(e.duration().as_nanos() as i128),
    };
    Some((m.len(), ns))
}
