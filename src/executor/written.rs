//! What a node wrote. Its declared `writes` must exist after it ran (a declared output it
//! did not produce fails it, naming the path) and join the files it reported, which are
//! stored with its entry and restored on a hit. The content digest of every written file
//! goes into its outputs ([`FILE_DIGESTS`]), so its output digest, which dependents' keys
//! are built from, changes whenever a written file does, even under the same name.

use super::*;
use crate::file_pattern::FilePattern;
use std::path::PathBuf;

/// The output field that maps each file a node wrote to the BLAKE3 of its content. Only
/// nodes that wrote files have it, so other nodes' outputs (and digests) are unchanged.
pub const FILE_DIGESTS: &str = "file_digests";

/// A symbolic link by identity (inode and change time): one made again is another.
type LinkId = (PathBuf, u64, i64, i64);

fn link_id(path: PathBuf) -> Option<LinkId> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(&path).ok()?;
    m.file_type()
        .is_symlink()
        .then(|| (path, m.ino(), m.ctime(), m.ctime_nsec()))
}

impl Shared<'_> {
    /// The symbolic links among node `i`'s declared writes before it runs. A step that
    /// writes through a link that was there (the user's) writes the file it leads to,
    /// which is kept by its content; a link the step made is kept as a link.
    pub(super) fn links_before(&self, i: usize) -> Vec<LinkId> {
        self.v.nodes[i]
            .writes
            .iter()
            .filter_map(|pattern| pattern.expand().ok())
            .flatten()
            .filter_map(|p| link_id(FilePattern::local_path(&p)))
            .collect()
    }

    /// Node `i`'s declared outputs after it ran ([`Shared::declared_writes`]), and which
    /// of them are links it made (not there, as they are, in `before`).
    pub(super) fn declared_writes_and_links(
        &self,
        i: usize,
        files: &mut Vec<PathBuf>,
        before: &[LinkId],
    ) -> Result<Vec<PathBuf>, NodeError> {
        self.declared_writes(i, files)?;
        Ok(files
            .iter()
            .filter_map(|p| link_id(p.clone()))
            .filter(|id| !before.contains(id))
            .map(|(p, ..)| p)
            .collect())
    }

    /// Check node `i`'s declared outputs after it ran, adding them to `files`.
    pub(super) fn declared_writes(
        &self,
        i: usize,
        files: &mut Vec<PathBuf>,
    ) -> Result<(), NodeError> {
        let mut missing = Vec::new();
        for pattern in &self.v.nodes[i].writes {
            let found = pattern
                .expand()
                .map_err(|e| NodeError::new(ErrorCategory::File, e))?;
            if pattern.is_glob() && found.is_empty() {
                missing.push(format!("'{}' (matched no file)", pattern.as_str()));
            }
            for p in found {
                let local = FilePattern::local_path(&p);
                if !local.is_file() {
                    let what = if local.is_dir() {
                        "a directory; declare its files, e.g. with a glob"
                    } else {
                        "no such file"
                    };
                    missing.push(format!("'{p}' ({what})"));
                } else if !files.contains(&local) {
                    files.push(local);
                }
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(NodeError::new(
                ErrorCategory::File,
                format!(
                    "the step did not produce {} it declares in \"writes\": {}",
                    if missing.len() == 1 {
                        "a file"
                    } else {
                        "files"
                    },
                    missing.join(", ")
                ),
            ))
        }
    }
}

/// Add the content digests of `files` to `outputs` under [`FILE_DIGESTS`] (paths under
/// the home directory as `~/…`, so the digest is the same on every machine).
pub(super) fn add_file_digests(
    outputs: &mut Map<String, Value>,
    files: &[PathBuf],
    links: &[PathBuf],
) -> Result<(), NodeError> {
    if files.is_empty() {
        return Ok(());
    }
    let mut digests = BTreeMap::new();
    for path in files {
        let digest = match links.contains(path) {
            true => crate::fsutil::link_target(path)
                .map(|t| crate::fsutil::link_digest(&t))
                .ok_or_else(|| std::io::Error::other("the link went away")),
            false => crate::fsutil::file_digest(path),
        }
        .map_err(|e| crate::nodes::file_error("read the written file", path, &e))?;
        let shown = crate::fsutil::portable_path(&path.to_string_lossy());
        digests.insert(shown, Value::String(digest.to_hex().to_string()));
    }
    outputs.insert(
        FILE_DIGESTS.into(),
        Value::Object(digests.into_iter().collect()),
    );
    Ok(())
}
