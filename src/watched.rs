//! The files a workflow's build depends on, as `--watch` watches them: the workflow file
//! (a saved workflow's too), every file its nodes declare in `reads` (globs included),
//! the literal paths of the file params that read (`read-file`, `copy-file` sources), and
//! every file the last build actually read (so paths a template or a batch item built
//! are known from the build's records). Files the workflow itself writes are left out:
//! a build must not set off the next one.
//!
//! A change counts only when a file's content differs from what it was when the build
//! started ([`Snapshot`]): saving without an edit, or a `touch`, builds nothing.

use crate::cache::records::BuildState;
use crate::file_pattern::FilePattern;
use crate::validate::Validated;
use std::collections::{BTreeSet, HashMap};
use std::path::{Component, Path, PathBuf};

/// What to watch, as absolute paths.
#[derive(Debug, Clone, Default)]
pub struct WatchSet {
    files: BTreeSet<PathBuf>,
    /// Declared globs: a new file they match is a change too. Each with the directory
    /// to watch and whether below it.
    globs: Vec<Glob>,
    /// The content the last build read from each file its records name: a file first
    /// watched after that build is taken in as the build saw it, not as it is by then.
    seen: HashMap<PathBuf, blake3::Hash>,
}

#[derive(Debug, Clone)]
struct Glob {
    /// The pattern, made absolute.
    pattern: glob::Pattern,
    base: PathBuf,
    recursive: bool,
}

impl Glob {
    /// As declared globs match (see [`crate::file_pattern`]).
    fn matches(&self, path: &Path) -> bool {
        self.pattern.matches_path_with(
            path,
            glob::MatchOptions {
                case_sensitive: true,
                require_literal_separator: true,
                require_literal_leading_dot: true,
            },
        )
    }
}

/// A directory to watch.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dir {
    pub path: PathBuf,
    pub recursive: bool,
}

/// Each watched file's content digest (`None`: missing) when a build started.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    digests: HashMap<PathBuf, Option<blake3::Hash>>,
}

impl WatchSet {
    /// The set for a workflow file and, when it is valid, what it reads. `records`: the
    /// last build's, for paths only a build could know.
    pub fn of(
        workflow_file: &Path,
        v: Option<&Validated>,
        records: Option<&BuildState>,
    ) -> WatchSet {
        let cwd = std::env::current_dir().unwrap_or_default();
        let abs = |p: &Path| absolute(&cwd, p);
        let mut set = WatchSet::default();
        set.files.insert(abs(workflow_file));
        let Some(v) = v else {
            return set;
        };
        set.files.extend(v.nested_files.iter().map(|f| abs(f)));
        let mut writes: Vec<FilePattern> = Vec::new();
        for (node, cn) in v.workflow.nodes.iter().zip(&v.nodes) {
            writes.extend(cn.writes.iter().cloned());
            for p in cn.spec.writes_files {
                if let Some(text) = node.params.get(*p).and_then(|x| x.as_str()) {
                    if let Ok(fp) = FilePattern::parse(text) {
                        writes.push(fp);
                    }
                }
            }
        }
        let written = |text: &str| {
            let clean = crate::file_pattern::normalize(text);
            writes.iter().any(|w| w.matches(&clean))
        };
        // The path watched for `text`, if it is one.
        let add = |set: &mut WatchSet, text: &str| {
            if text.contains("${") || written(text) {
                return None;
            }
            let path = abs(&crate::nodes::read_file::expand_path(text));
            set.files.insert(path.clone());
            Some(path)
        };
        for (node, cn) in v.workflow.nodes.iter().zip(&v.nodes) {
            for pattern in &cn.reads {
                let text = pattern.as_str();
                // A directory read (`src`, `src/**`) names every file under it.
                if let Some(tree) = pattern.tree_glob() {
                    set.add_glob(&cwd, &tree);
                } else if pattern.is_glob() {
                    set.add_glob(&cwd, text);
                } else {
                    add(&mut set, text);
                }
            }
            for p in cn.spec.reads_files {
                if let Some(text) = node.params.get(*p).and_then(|x| x.as_str()) {
                    add(&mut set, text);
                }
            }
        }
        if let Some(records) = records {
            for (path, stat) in &records.reads {
                let watched = add(&mut set, path);
                if let (Some(path), Ok(d)) = (watched, blake3::Hash::from_hex(&stat.digest)) {
                    set.seen.insert(path, d);
                }
            }
        }
        // A file a glob covers is watched through it.
        let covered: Vec<PathBuf> = set
            .files
            .iter()
            .filter(|f| set.globs.iter().any(|g| g.matches(f)))
            .cloned()
            .collect();
        for f in covered {
            set.files.remove(&f);
        }
        set
    }

    fn add_glob(&mut self, cwd: &Path, text: &str) {
        let expanded = crate::nodes::read_file::expand_path(text);
        let full = absolute(cwd, &expanded);
        let Ok(pattern) = glob::Pattern::new(&full.to_string_lossy()) else {
            return;
        };
        // The literal directories before the first component with a glob character.
        let mut base = PathBuf::new();
        let mut rest = 0;
        let comps: Vec<Component> = full.components().collect();
        for (n, c) in comps.iter().enumerate() {
            let s = c.as_os_str().to_string_lossy();
            if s.contains(['*', '?', '[']) {
                rest = comps.len() - n;
                break;
            }
            base.push(c);
        }
        self.globs.push(Glob {
            pattern,
            base,
            // `dir/*.csv` needs only `dir`; `dir/*/x` or `dir/**/x` need what is below.
            recursive: rest > 1,
        });
    }

    pub fn len(&self) -> usize {
        self.files.len() + self.globs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Is `path` (absolute, as the watcher reports it) one of the files, or matched by a
    /// glob?
    pub fn covers(&self, path: &Path) -> bool {
        self.files.contains(path) || self.globs.iter().any(|g| g.matches(path))
    }

    /// Is `path` a directory on the way to something watched (one that did not exist
    /// when the watches were placed may just have been made)?
    pub fn leads_to(&self, path: &Path) -> bool {
        self.files
            .iter()
            .filter_map(|f| f.parent())
            .chain(self.globs.iter().map(|g| g.base.as_path()))
            .any(|dir| dir.starts_with(path))
    }

    /// The directories to watch: each file's (an editor that saves by renaming a new
    /// file over the old one replaces the file, not its directory), each glob's base.
    /// A directory that does not exist yet is watched through its nearest ancestor.
    pub fn dirs(&self) -> BTreeSet<Dir> {
        let mut out = BTreeSet::new();
        let existing = |p: &Path| -> Option<PathBuf> {
            p.ancestors().find(|a| a.is_dir()).map(Path::to_path_buf)
        };
        for f in &self.files {
            if let Some(dir) = f.parent().and_then(existing) {
                out.insert(Dir {
                    path: dir,
                    recursive: false,
                });
            }
        }
        for g in &self.globs {
            if let Some(dir) = existing(&g.base) {
                let recursive = g.recursive && dir == g.base;
                out.insert(Dir {
                    path: dir,
                    recursive,
                });
            }
        }
        out
    }

    /// Every file now: the files, and what the globs match.
    fn paths(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self.files.iter().cloned().collect();
        for g in &self.globs {
            if let Ok(found) = glob::glob(g.pattern.as_str()) {
                out.extend(found.flatten().filter(|p| p.is_file()));
            }
        }
        out
    }

    /// The digests of every file now (a glob's matches included).
    pub fn snapshot(&self) -> Snapshot {
        let digests = self
            .paths()
            .into_iter()
            .map(|p| {
                let d = digest(&p);
                (p, d)
            })
            .collect();
        Snapshot { digests }
    }
}

impl Snapshot {
    /// Add the files of `set` this snapshot does not have yet: as the last build read
    /// them when its records say, else as they are now. The files added as the build
    /// read them that are not so now (changed since, with no watch to tell).
    pub fn add_missing(&mut self, set: &WatchSet) -> Vec<PathBuf> {
        let mut since = Vec::new();
        for path in set.paths() {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.digests.entry(path) {
                let now = digest(slot.key());
                let d = match set.seen.get(slot.key()) {
                    Some(seen) => {
                        if now != Some(*seen) {
                            since.push(slot.key().clone());
                        }
                        Some(*seen)
                    }
                    None => now,
                };
                slot.insert(d);
            }
        }
        since
    }

    /// After the watches were placed again for `set` (a directory on the way to a
    /// watched file came or went): the files that changed since the snapshot or that
    /// `set` covers now and it did not have (looked at only now that they are watched,
    /// so that one made before its watch was placed is not missed). Those are then taken
    /// in as they are, and the other new ones as [`Snapshot::add_missing`] does.
    pub fn take_in(&mut self, set: &WatchSet) -> Vec<PathBuf> {
        let mut fresh = self.changed(set);
        for p in &fresh {
            self.digests.insert(p.clone(), digest(p));
        }
        fresh.extend(self.add_missing(set));
        fresh.sort();
        fresh.dedup();
        fresh
    }

    /// Does `path` hold other content than it did (or exist, or not, where it did not)?
    pub fn differs(&self, path: &Path) -> bool {
        let then = self.digests.get(path).copied().flatten();
        then != digest(path)
    }

    /// The files whose content is not what it was, and those `set` covers now that
    /// the snapshot did not have (a glob's new matches).
    pub fn changed(&self, set: &WatchSet) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = self
            .digests
            .iter()
            .filter(|(p, then)| **then != digest(p))
            .map(|(p, _)| p.clone())
            .collect();
        out.extend(
            set.paths()
                .into_iter()
                .filter(|p| !self.digests.contains_key(p) && digest(p).is_some()),
        );
        out.sort();
        out.dedup();
        out
    }
}

fn digest(p: &Path) -> Option<blake3::Hash> {
    if !p.is_file() {
        return None;
    }
    crate::fsutil::file_digest(p).ok()
}

/// `p` made absolute against `cwd`, `.` and `..` taken out as text (links are not
/// followed: the watcher reports paths under the directory as it was given).
fn absolute(cwd: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    let mut out = PathBuf::new();
    for c in joined.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_made_absolute_as_text() {
        let cwd = Path::new("/w/p");
        assert_eq!(
            absolute(cwd, Path::new("./a//b/../c")),
            PathBuf::from("/w/p/a/c")
        );
        assert_eq!(absolute(cwd, Path::new("/x/./y")), PathBuf::from("/x/y"));
    }

    #[test]
    fn a_file_that_appears_in_a_new_directory_before_its_watch_is_seen() {
        let dir = tempfile::tempdir().expect("dir");
        let mut set = WatchSet::default();
        set.add_glob(dir.path(), "data/*.txt");
        set.files.insert(dir.path().join("later/input.txt"));
        let mut snapshot = set.snapshot();
        // The folders appear, and files in them before the watches are placed there.
        std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("later")).expect("mkdir");
        std::fs::write(dir.path().join("data/a.txt"), "a").expect("write");
        std::fs::write(dir.path().join("later/input.txt"), "i").expect("write");
        assert_eq!(
            snapshot.take_in(&set),
            vec![
                dir.path().join("data/a.txt"),
                dir.path().join("later/input.txt")
            ]
        );
        // Taken in, they are no news; a later change is.
        assert_eq!(snapshot.take_in(&set), Vec::<PathBuf>::new());
        std::fs::write(dir.path().join("data/a.txt"), "b").expect("write");
        assert!(snapshot.differs(&dir.path().join("data/a.txt")));
    }

    #[test]
    fn a_glob_watches_its_literal_base_and_below_it_only_when_it_must() {
        let mut set = WatchSet::default();
        set.add_glob(Path::new("/w"), "data/*.csv");
        set.add_glob(Path::new("/w"), "src/**/*.rs");
        assert_eq!(set.globs[0].base, PathBuf::from("/w/data"));
        assert!(!set.globs[0].recursive);
        assert_eq!(set.globs[1].base, PathBuf::from("/w/src"));
        assert!(set.globs[1].recursive);
        assert!(set.covers(Path::new("/w/data/a.csv")));
        assert!(!set.covers(Path::new("/w/data/sub/a.csv")));
        assert!(set.covers(Path::new("/w/src/x/y.rs")));
        assert!(set.leads_to(Path::new("/w/src")));
        assert!(!set.leads_to(Path::new("/w/other")));
    }
}
