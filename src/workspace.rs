//! Where file nodes may change files: inside the workspace (the directory pflow runs in,
//! or `-C DIR`), and in the directories the user allows besides (`--allow-write DIR`,
//! `PFLOW_ALLOW_WRITE=DIR:DIR`). A path from a template can come from an HTTP response
//! or a model's reply; `../../.ssh/authorized_keys` must not be a place a workflow
//! writes to unless someone said so.

use std::path::{Component, Path, PathBuf};

/// The variable that lists more directories file nodes may write to, `:`-separated.
pub const ALLOW_WRITE_ENV: &str = "PFLOW_ALLOW_WRITE";

/// The directories file nodes may write, move and delete in, besides the workspace.
#[derive(Debug, Clone, Default)]
pub struct WriteRoots {
    extra: Vec<PathBuf>,
}

impl WriteRoots {
    /// The workspace, the directories given, and those in [`ALLOW_WRITE_ENV`].
    pub fn new(given: &[PathBuf]) -> WriteRoots {
        let mut extra: Vec<PathBuf> = given.to_vec();
        if let Some(list) = std::env::var_os(ALLOW_WRITE_ENV) {
            extra.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
        }
        WriteRoots { extra }
    }

    /// May a file node change `path` (as it will use it)? Why not, if not.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let here =
            std::env::current_dir().map_err(|e| format!("cannot tell the workspace: {e}"))?;
        let target = resolve(&here.join(path));
        let inside = |root: &Path| target.starts_with(resolve(&here.join(root)));
        if inside(&here) || self.extra.iter().any(|r| inside(r)) {
            return Ok(());
        }
        Err(format!(
            "'{}' is outside the workspace {}: file nodes write, move and delete only inside it \
             (allow a directory with --allow-write DIR or {ALLOW_WRITE_ENV}=DIR)",
            path.display(),
            here.display()
        ))
    }
}

/// `path` made absolute without `.` or `..`, with the symlinks of the part that exists
/// resolved (a link inside the workspace to a directory outside is outside).
fn resolve(path: &Path) -> PathBuf {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                clean.pop();
            }
            Component::CurDir => {}
            other => clean.push(other),
        }
    }
    // The deepest part that exists, with its links resolved, then the rest as written.
    let mut existing = clean.as_path();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            let mut out = real;
            out.extend(rest.iter().rev());
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                rest.push(name.to_os_string());
                existing = parent;
            }
            _ => return clean,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inside_outside_and_allowed() {
        let roots = WriteRoots::default();
        assert!(roots.check(Path::new("out/a.txt")).is_ok());
        assert!(roots.check(Path::new("./a/../b.txt")).is_ok());
        assert!(roots.check(Path::new("../outside.txt")).is_err());
        assert!(roots.check(Path::new("a/../../outside.txt")).is_err());
        assert!(roots.check(Path::new("/etc/passwd")).is_err());
        let tmp = tempfile::tempdir().unwrap();
        let allowed = WriteRoots {
            extra: vec![tmp.path().to_path_buf()],
        };
        assert!(allowed.check(&tmp.path().join("x/y.txt")).is_ok());
        assert!(allowed.check(Path::new("/etc/passwd")).is_err());
    }

    #[test]
    fn a_link_to_a_directory_outside_is_outside() {
        let outside = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), ws.path().join("link")).unwrap();
        let roots = WriteRoots {
            extra: vec![ws.path().to_path_buf()],
        };
        assert!(roots.check(&ws.path().join("link/x.txt")).is_err());
        assert!(roots.check(&ws.path().join("real/x.txt")).is_ok());
    }
}
