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
    closed: Vec<Closed>,
}

/// A directory closed to file nodes, and the names pflow keeps in it: what stays closed
/// when the directory holds the workspace itself.
#[derive(Debug, Clone)]
struct Closed {
    dir: PathBuf,
    names: Vec<PathBuf>,
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

    /// The same, with `dir` closed to file nodes (the cache directory). When `dir`
    /// holds the workspace (`--cache-dir .`), closing it would close everything: then
    /// the `names` pflow keeps in it are closed instead.
    pub fn closing(mut self, dir: &Path, names: &[&str]) -> WriteRoots {
        self.closed.push(Closed {
            dir: dir.to_path_buf(),
            names: names.iter().map(|n| dir.join(n)).collect(),
        });
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
        let holds_here =
            |root: &Path| resolve(&here.join(root)).is_some_and(|r| here.starts_with(r));
        let in_closed = |c: &Closed| match holds_here(&c.dir) {
            true => c.names.iter().any(|n| inside(n)),
            false => inside(&c.dir),
        };
        if let Some(closed) = self.closed.iter().find(|c| in_closed(c)) {
            return Err(format!(
                "'{}' is inside pflow's cache {}: file nodes do not write, move or delete there",
                path.display(),
                closed.dir.display()
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

/// A file a node is about to change, its directory opened and checked: every change
/// goes through the open directory (`/proc/self/fd/N/name`), so a link swapped into the
/// path after the check (by someone who can change the workspace while the build runs)
/// cannot lead the change out of it. The last name is not followed by a rename or an
/// unlink; an append checks the file it opened ([`WriteRoots::check_open`]).
#[derive(Debug)]
pub struct Held {
    /// Keeps `at` naming the directory that was checked.
    _dir: std::fs::File,
    at: PathBuf,
    given: PathBuf,
}

impl Held {
    /// The spelling to change the file by.
    pub fn at(&self) -> &Path {
        &self.at
    }

    /// The path as the node was given it (for messages, and to know it by).
    pub fn given(&self) -> &Path {
        &self.given
    }

    /// A path made beside [`Held::at`] (a file moved aside) as the user names it.
    pub fn shown(&self, made: &Path) -> PathBuf {
        match (made.file_name(), self.given.parent()) {
            (Some(name), Some(dir)) if made.parent() == self.at.parent() => dir.join(name),
            _ => made.to_path_buf(),
        }
    }
}

impl WriteRoots {
    /// [`WriteRoots::check`], then hold the path's directory (made first when
    /// `make_parents`; `None` when it does not exist and was not to be made).
    pub fn hold(&self, path: &Path, make_parents: bool) -> Result<Option<Held>, String> {
        self.check(path)?;
        let shown = path.display();
        // `Path` drops a final `/` (and `/.`): `keep.txt/` would become the file itself.
        let text = path.as_os_str().as_encoded_bytes();
        let name = path
            .file_name()
            .filter(|_| !text.ends_with(b"/") && !text.ends_with(b"/."))
            .ok_or_else(|| format!("'{shown}' names a directory, not a file"))?;
        let dir = crate::fsutil::parent_dir(path);
        if make_parents {
            self.make_folders(dir)
                .map_err(|e| format!("cannot create the directory '{}': {e}", dir.display()))?;
        }
        let open = open_folder(dir);
        let held = match open {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !make_parents => return Ok(None),
            Err(e) => return Err(format!("cannot open the directory of '{shown}': {e}")),
        };
        // No /proc: the path as given, checked but not held.
        let at = match self.check_where(&held, Some(name), path)? {
            Some(fd_path) => fd_path.join(name),
            None => path.to_path_buf(),
        };
        Ok(Some(Held {
            _dir: held,
            at,
            given: path.to_path_buf(),
        }))
    }

    /// Check `open` (with `name` in it) where it really is now; its `/proc/self/fd/N`
    /// name, or `None` where the system has none (nothing to check by).
    fn check_where(
        &self,
        open: &std::fs::File,
        name: Option<&std::ffi::OsStr>,
        given: &Path,
    ) -> Result<Option<PathBuf>, String> {
        let Some(fd_path) = proc_path(open) else {
            return Ok(None);
        };
        let shown = given.display();
        let real = std::fs::read_link(&fd_path)
            .map_err(|e| format!("cannot tell where '{shown}' is: {e}"))?;
        let real = match name {
            Some(n) => real.join(n),
            None => real,
        };
        self.check(&real)
            .map_err(|why| format!("'{shown}' changed while pflow was about to write it: {why}"))?;
        Ok(Some(fd_path))
    }

    /// Make `dir` and the folders above it that are missing, each inside the one above
    /// it, held: a folder is made only where the roots allow, checked where its parent
    /// really is (a link swapped in meanwhile leads nothing out).
    fn make_folders(&self, dir: &Path) -> Result<(), String> {
        if dir.is_dir() {
            return Ok(());
        }
        let start = if dir.is_absolute() { "/" } else { "." };
        let mut at = open_folder(Path::new(start)).map_err(|e| e.to_string())?;
        for part in dir.components() {
            let name = match part {
                Component::Normal(n) => n,
                Component::ParentDir => std::ffi::OsStr::new(".."),
                _ => continue,
            };
            let Some(here) = proc_path(&at) else {
                // No /proc: as before, made by name.
                return std::fs::create_dir_all(dir).map_err(|e| e.to_string());
            };
            let next = here.join(name);
            if std::fs::symlink_metadata(&next).is_err() {
                let real = std::fs::read_link(&here).map_err(|e| e.to_string())?;
                self.check(&real.join(name))?;
                match std::fs::create_dir(&next) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e.to_string()),
                }
            }
            at = open_folder(&next).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// May a node change the file it opened as `given`? Asked of the open file, where
    /// it is now: a link put in the path after the check is seen.
    pub fn check_open(&self, file: &std::fs::File, given: &Path) -> Result<(), String> {
        self.check_where(file, None, given).map(|_| ())
    }
}

#[cfg(target_os = "linux")]
const O_PATH: i32 = libc::O_PATH;
#[cfg(not(target_os = "linux"))]
const O_PATH: i32 = 0;

/// `dir` opened to be named through `/proc/self/fd/N`, not to be read.
fn open_folder(dir: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_PATH | libc::O_DIRECTORY)
        .open(dir)
}

/// The name the system gives an open file (`/proc/self/fd/N`), where the system has one.
fn proc_path(file: &std::fs::File) -> Option<PathBuf> {
    use std::os::fd::AsRawFd;
    let p = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    (cfg!(target_os = "linux") && std::fs::symlink_metadata(&p).is_ok()).then_some(p)
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

    /// The cache is closed; when it holds the workspace (`--cache-dir .`), which would
    /// close everything, the names it keeps there are.
    #[test]
    fn the_cache_is_closed_and_its_names_when_it_holds_the_workspace() {
        let roots = WriteRoots::default().closing(Path::new(".pflow-cache"), &["packs"]);
        assert!(roots.check(Path::new(".pflow-cache/x")).is_err());
        assert!(roots
            .check(Path::new("out/../.pflow-cache/packs/y"))
            .is_err());
        assert!(roots.check(Path::new(".pflow-cache-not/x")).is_ok());
        let roots = WriteRoots::default().closing(Path::new("."), &["packs", "state"]);
        assert!(roots.check(Path::new("out/a.txt")).is_ok());
        assert!(roots.check(Path::new("packs/x")).is_err());
        assert!(roots.check(Path::new("out/../state/y")).is_err());
        assert!(roots.check(Path::new("packs-not/x")).is_ok());
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

    /// A workspace `ws` with a folder `out`, a folder outside it, and roots that allow
    /// only `ws`.
    fn swap_setup() -> (tempfile::TempDir, tempfile::TempDir, WriteRoots) {
        let outside = tempfile::tempdir().unwrap();
        let ws = tempfile::tempdir().unwrap();
        std::fs::create_dir(ws.path().join("out")).unwrap();
        let roots = WriteRoots {
            extra: vec![ws.path().to_path_buf()],
            closed: Vec::new(),
        };
        (ws, outside, roots)
    }

    /// `out` becomes a link to the folder outside (the checked folder kept as `old`).
    fn swap(ws: &Path, outside: &Path) {
        std::fs::rename(ws.join("out"), ws.join("old")).unwrap();
        std::os::unix::fs::symlink(outside, ws.join("out")).unwrap();
    }

    /// The race a check alone loses: `out/` is checked, then swapped for a link to a
    /// folder outside before the write. Through the held folder the write, a move
    /// aside and a removal all stay where the check looked.
    #[test]
    fn a_link_swapped_in_after_the_check_does_not_lead_a_change_out() {
        let (ws, outside, roots) = swap_setup();
        let path = ws.path().join("out/x.txt");
        std::fs::write(&path, "before").unwrap();
        let held = roots.hold(&path, true).unwrap().unwrap();
        swap(ws.path(), outside.path());
        std::fs::write(outside.path().join("x.txt"), "theirs").unwrap();

        crate::fsutil::write_atomic(held.at(), b"mine").unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.path().join("old/x.txt")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(outside.path().join("x.txt")).unwrap(),
            "theirs"
        );
        let aside = crate::fsutil::move_aside(held.at(), ".pflow-kept").unwrap();
        assert_eq!(held.shown(&aside), ws.path().join("out/x.txt.pflow-kept"));
        assert!(ws.path().join("old/x.txt.pflow-kept").exists());
        crate::fsutil::write_atomic(held.at(), b"again").unwrap();
        std::fs::remove_file(held.at()).unwrap();
        assert!(!ws.path().join("old/x.txt").exists());
        assert_eq!(
            std::fs::read_to_string(outside.path().join("x.txt")).unwrap(),
            "theirs"
        );

        // What the check alone would have done: the path now leads outside.
        std::fs::remove_file(outside.path().join("x.txt")).unwrap();
        crate::fsutil::write_atomic(&path, b"escaped").unwrap();
        assert!(outside.path().join("x.txt").exists());
    }

    /// A folder already swapped when the path is held is refused; one that does not
    /// exist is not made unless asked.
    #[test]
    fn a_held_folder_is_checked_and_made_only_when_asked() {
        let (ws, outside, roots) = swap_setup();
        let path = ws.path().join("out/x.txt");
        swap(ws.path(), outside.path());
        assert!(roots.hold(&path, true).is_err());
        assert!(roots.hold(&ws.path().join("old/x.txt"), true).is_ok());
        assert!(roots
            .hold(&ws.path().join("new/x.txt"), false)
            .unwrap()
            .is_none());
        assert!(!ws.path().join("new").exists());
    }

    /// An append follows a link at the last name: the file it opened is asked where it
    /// is.
    #[test]
    fn an_open_file_is_checked_where_it_is() {
        let (ws, outside, roots) = swap_setup();
        std::fs::write(outside.path().join("log"), "").unwrap();
        std::fs::write(ws.path().join("out/log"), "").unwrap();
        let inside = std::fs::File::open(ws.path().join("out/log")).unwrap();
        assert!(roots.check_open(&inside, Path::new("out/log")).is_ok());
        std::os::unix::fs::symlink(outside.path().join("log"), ws.path().join("out/link")).unwrap();
        let through = std::fs::File::open(ws.path().join("out/link")).unwrap();
        let refused = roots
            .check_open(&through, Path::new("out/link"))
            .unwrap_err();
        assert!(refused.contains("out/link"), "{refused}");
    }

    /// Folders are made one inside the other, each where the roots allow: a link swapped
    /// in after the path's check leads no folder out (`create_dir_all` followed it).
    #[test]
    fn folders_are_made_only_where_the_roots_allow() {
        let (ws, outside, roots) = swap_setup();
        swap(ws.path(), outside.path());
        let refused = roots.make_folders(&ws.path().join("out/new/deep"));
        assert!(refused.is_err(), "{refused:?}");
        assert!(!outside.path().join("new").exists());
        roots.make_folders(&ws.path().join("old/new/deep")).unwrap();
        assert!(ws.path().join("old/new/deep").is_dir());
        // Relative to the workspace, and through `..`.
        let rel = roots.make_folders(Path::new("../outside-made-by-test"));
        assert!(rel.is_err(), "{rel:?}");
    }

    /// `keep.txt/` names a folder: held as `keep.txt`, a removal would take the file.
    #[test]
    fn a_path_ending_in_a_slash_is_no_file_to_hold() {
        let (ws, _outside, roots) = swap_setup();
        std::fs::write(ws.path().join("keep.txt"), "kept").unwrap();
        for given in ["keep.txt/", "keep.txt/.", "out/"] {
            let refused = roots.hold(&ws.path().join(given), false).unwrap_err();
            assert!(refused.contains("names a directory"), "{given}: {refused}");
        }
        assert!(roots.hold(&ws.path().join("keep.txt"), false).is_ok());
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
