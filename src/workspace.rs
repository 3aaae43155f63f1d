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
    /// Never changed by a file node, even inside an allowed directory: pflow's cache (a
    /// path from a response must not plant or damage entries).
    closed: Vec<PathBuf>,
}

impl WriteRoots {
    /// The workspace, the directories given, and those in [`ALLOW_WRITE_ENV`].
    pub fn new(given: &[PathBuf]) -> WriteRoots {
        let mut extra: Vec<PathBuf> = given.to_vec();
        if let Some(list) = std::env::var_os(ALLOW_WRITE_ENV) {
            extra.extend(std::env::split_paths(&list).filter(|p| !p.as_os_str().is_empty()));
        }
        WriteRoots {
            extra,
            closed: Vec::new(),
        }
    }

    /// The same, with `dir` closed to file nodes (the cache directory).
    pub fn closing(mut self, dir: &Path) -> WriteRoots {
        self.closed.push(dir.to_path_buf());
        self
    }

    /// May a file node change `path` (as it will use it)? Why not, if not.
    pub fn check(&self, path: &Path) -> Result<(), String> {
        let here =
            std::env::current_dir().map_err(|e| format!("cannot tell the workspace: {e}"))?;
        let Some(target) = resolve(&here.join(path)) else {
            return Err(format!(
                "'{}' passes through more than {MAX_LINKS} symbolic links",
                path.display()
            ));
        };
        let inside = |root: &Path| resolve(&here.join(root)).is_some_and(|r| target.starts_with(r));
        // (A cache that holds the workspace itself closes nothing: `--cache-dir .`.)
        let holds_here =
            |root: &Path| resolve(&here.join(root)).is_some_and(|r| here.starts_with(r));
        if let Some(closed) = self.closed.iter().find(|r| inside(r) && !holds_here(r)) {
            return Err(format!(
                "'{}' is inside pflow's cache {}: file nodes do not write, move or delete there",
                path.display(),
                closed.display()
            ));
        }
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

/// Most symbolic links one path may pass through, as Linux allows (`ELOOP` past it).
const MAX_LINKS: usize = 40;

/// `path` (absolute) as the system will find it: each component in turn, a `..` taking
/// the parent of where the path has got to (of a link's target, not of the link: so
/// `link/..` under a link to `/tmp` is `/`), every link met followed, including the
/// last component's. A component that does not exist yet is taken as written. `None`
/// for a path through too many links.
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut todo: std::collections::VecDeque<std::ffi::OsString> =
        std::collections::VecDeque::new();
    let mut out = PathBuf::from("/");
    let push_all = |todo: &mut std::collections::VecDeque<_>, p: &Path, out: &mut PathBuf| {
        let mut front = Vec::new();
        for c in p.components() {
            match c {
                Component::RootDir | Component::Prefix(_) => {
                    front.clear();
                    *out = PathBuf::from("/");
                }
                Component::CurDir => {}
                Component::ParentDir => front.push(std::ffi::OsString::from("..")),
                Component::Normal(name) => front.push(name.to_os_string()),
            }
        }
        for name in front.into_iter().rev() {
            todo.push_front(name);
        }
    };
    push_all(&mut todo, path, &mut out);
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            out.pop();
            continue;
        }
        let next = out.join(&name);
        // Asked of every component, a missing one too: `missing/..` leads back to
        // folders that exist, and their links count.
        if let Ok(meta) = std::fs::symlink_metadata(&next) {
            if meta.file_type().is_symlink() {
                links += 1;
                if links > MAX_LINKS {
                    return None;
                }
                let target = std::fs::read_link(&next).ok()?;
                push_all(&mut todo, &target, &mut out);
                continue;
            }
        }
        out = next;
    }
    Some(out)
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
            closed: Vec::new(),
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
            closed: Vec::new(),
        };
        assert!(roots.check(&ws.path().join("link/x.txt")).is_err());
        assert!(roots.check(&ws.path().join("real/x.txt")).is_ok());
    }

    /// `link/..` is the parent of the link's target, as the system takes it, not the
    /// directory the link is in: a path that goes up through a link goes where it leads.
    #[test]
    fn going_up_through_a_link_goes_up_from_where_it_leads() {
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(outside.path().join("deep")).unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("deep"), ws.path().join("tmp")).unwrap();
        let roots = WriteRoots {
            extra: vec![ws.path().to_path_buf()],
            closed: Vec::new(),
        };
        let escape = ws.path().join("tmp/../x.txt");
        assert!(roots.check(&escape).is_err(), "{}", escape.display());
        assert_eq!(
            resolve(&escape).unwrap(),
            outside.path().canonicalize().unwrap().join("x.txt")
        );
        // Up from a folder that does not exist (which a write creates) and down through
        // the link: outside as well.
        assert!(roots.check(&ws.path().join("new/../tmp/x.txt")).is_err());
        // Through a link that stays inside, and up again: inside.
        std::fs::create_dir_all(ws.path().join("a/b")).unwrap();
        std::os::unix::fs::symlink(ws.path().join("a/b"), ws.path().join("in")).unwrap();
        assert!(roots.check(&ws.path().join("in/../c.txt")).is_ok());
    }

    /// The cache is closed, except when it holds the workspace (`--cache-dir .`), which
    /// would close everything.
    #[test]
    fn the_cache_is_closed_unless_it_holds_the_workspace() {
        let roots = WriteRoots::default().closing(Path::new(".pflow-cache"));
        assert!(roots.check(Path::new(".pflow-cache/x")).is_err());
        assert!(roots
            .check(Path::new("out/../.pflow-cache/packs/y"))
            .is_err());
        assert!(roots.check(Path::new(".pflow-cache-not/x")).is_ok());
        let roots = WriteRoots::default().closing(Path::new("."));
        assert!(roots.check(Path::new("out/a.txt")).is_ok());
    }

    /// A dangling link is followed too: writing through it creates its target.
    #[test]
    fn a_dangling_link_to_outside_is_outside() {
        let outside = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path().join("new.txt"), ws.path().join("log.txt"))
            .unwrap();
        let roots = WriteRoots {
            extra: vec![ws.path().to_path_buf()],
            closed: Vec::new(),
        };
        assert!(roots.check(&ws.path().join("log.txt")).is_err());
        // A relative link to a file beside it stays inside.
        std::os::unix::fs::symlink("real.txt", ws.path().join("alias.txt")).unwrap();
        assert!(roots.check(&ws.path().join("alias.txt")).is_ok());
    }

    #[test]
    fn a_loop_of_links_is_refused() {
        let ws = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(ws.path().join("b"), ws.path().join("a")).unwrap();
        std::os::unix::fs::symlink(ws.path().join("a"), ws.path().join("b")).unwrap();
        let roots = WriteRoots {
            extra: vec![ws.path().to_path_buf()],
            closed: Vec::new(),
        };
        let refused = roots.check(&ws.path().join("a/x")).unwrap_err();
        assert!(refused.contains("symbolic links"), "{refused}");
    }
}
