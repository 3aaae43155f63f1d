//! Every path inside a cache directory, and where cacache keeps a blob.
//!
//! A cache directory holds:
//!
//! | path | what |
//! |---|---|
//! | `packs/*.pack` | node entries, appended to a segment per writing process ([`super::pack`]) |
//! | `content-v2/<algo>/<aa>/<bb>/<rest>` | cacache blobs (large outputs, written files), named by their integrity |
//! | `tmp/` | cacache's blobs being written, and segments maintenance is writing |
//! | `index-v5/` | the per-entry index of older versions: no longer read, removed by `gc` and `clear` |
//! | `records/` (named `state/` on disk) | per-workflow build, explain and no-op records ([`super::records`], [`super::noop`]); the segments' indexes and the kept key map (`packs.map`, [`super::index_map`]) |
//! | `repairs/` | recorded repair patches |
//! | `timings/` | `--timings` pages written without a path |
//! | `intents/` | effects announced and not yet recorded ([`super::intents`]) |
//! | `build-stats.jsonl` | one line per build ([`super::stats`]) |
//! | `generation` | bumped whenever maintenance removes entries |
//! | `.pflow-lock` | the lock builds share and maintenance holds alone ([`super::lock`]) |

use crate::key::Key;
use std::path::{Path, PathBuf};

/// The index directory of older versions (cacache buckets, one file per entry).
pub const LEGACY_INDEX_DIR: &str = "index-v5";
/// The segments entries are appended to.
pub const PACKS_DIR: &str = "packs";
/// cacache's content directory (blobs, by integrity).
pub const CONTENT_DIR: &str = "content-v2";
/// cacache's directory for content being written.
pub const TMP_DIR: &str = "tmp";
/// The lock file builds share and maintenance holds exclusively.
pub const LOCK_FILE: &str = ".pflow-lock";
/// Append-only JSON lines, one per build run.
pub const STATS_FILE: &str = "build-stats.jsonl";
/// Where older versions kept `--explain` preimages (now in [`RECORDS_DIR`]); `clear`
/// still removes it.
pub const LEGACY_EXPLAIN_DIR: &str = "explain";
/// A number bumped whenever maintenance removes entries (see [`bump_generation`]).
pub const GENERATION_FILE: &str = "generation";
/// Per-workflow records of the last build and its key preimages.
pub const RECORDS_DIR: &str = "state";
/// Recorded repair patches.
pub const REPAIRS_DIR: &str = "repairs";
/// Effects announced and not yet recorded ([`super::intents`]).
pub const INTENTS_DIR: &str = "intents";
/// `--timings` pages written without a path.
pub const TIMINGS_DIR: &str = "timings";
/// pflow's own names in a cache directory besides cacache's: what maintenance may read
/// and what it must never take for cacache's.
pub const OWN_DIRS: [&str; 5] = [
    RECORDS_DIR,
    LEGACY_EXPLAIN_DIR,
    REPAIRS_DIR,
    INTENTS_DIR,
    TIMINGS_DIR,
];
/// The mark of a cache directory (the Cache Directory Tagging convention, which backup
/// tools honour): maintenance removes things only where pflow wrote it.
pub const TAG_FILE: &str = "CACHEDIR.TAG";
const TAG_SIGNATURE: &str = "Signature: 8a477f597d28d172789f06886806bc55";
const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n\
# This file is a cache directory tag created by pflow.\n\
# For information about cache directory tags, see https://bford.info/cachedir/\n";

/// Every name pflow (and cacache under it) puts in a cache directory.
pub const CACHE_NAMES: [&str; 13] = [
    INTENTS_DIR,
    TIMINGS_DIR,
    PACKS_DIR,
    LEGACY_INDEX_DIR,
    CONTENT_DIR,
    TMP_DIR,
    LOCK_FILE,
    STATS_FILE,
    LEGACY_EXPLAIN_DIR,
    GENERATION_FILE,
    RECORDS_DIR,
    REPAIRS_DIR,
    TAG_FILE,
];

/// Did pflow mark `root` as its cache?
pub fn is_pflow_cache(root: &Path) -> bool {
    std::fs::read_to_string(root.join(TAG_FILE))
        .is_ok_and(|t| t.starts_with(TAG_SIGNATURE) && t.contains("pflow"))
}

/// Is there nothing in `root` (or no `root`) but, perhaps, a lock file?
pub fn holds_nothing(root: &Path) -> bool {
    std::fs::read_dir(root).map_or(true, |entries| {
        entries.flatten().all(|e| e.file_name() == LOCK_FILE)
    })
}

/// Mark `root` as a pflow cache, unless it holds anything but pflow's own names (a
/// project folder given as `--cache-dir` is used, never marked, so maintenance will not
/// delete its `tmp/` or `state/`). Best effort.
pub fn mark(root: &Path) {
    if is_pflow_cache(root) {
        return;
    }
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    let foreign = entries
        .flatten()
        .any(|e| !CACHE_NAMES.iter().any(|n| e.file_name() == *n));
    if !foreign {
        let _ = crate::fsutil::write_atomic_with(&root.join(TAG_FILE), TAG.as_bytes(), false);
    }
}

/// The records pflow keeps per workflow, each in its own file beside the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record {
    /// The last build's record (see [`super::records::BuildState`]).
    Build,
    /// The delta over the last build's record (see [`super::delta`]).
    BuildDelta,
    /// Each node's last key preimage, to tell what changed.
    Explain,
    /// The delta over the key preimages.
    ExplainDelta,
    /// The no-op record (see [`super::noop`]).
    Noop,
    /// The copy of the workflow's text the edit path compares with (see
    /// [`super::kept_text`]).
    Text,
    /// The splice over that copy an edit made.
    TextSplice,
    /// The compiled forms of the nodes (see [`super::node_forms`]).
    Forms,
    /// What the nodes last printed (see [`super::logs`]).
    Logs,
}

impl Record {
    const ALL: [Record; 9] = [
        Record::Build,
        Record::BuildDelta,
        Record::Explain,
        Record::ExplainDelta,
        Record::Noop,
        Record::Text,
        Record::TextSplice,
        Record::Forms,
        Record::Logs,
    ];

    /// The file name's extension (fixed: a changed one would orphan every record).
    fn extension(self) -> &'static str {
        match self {
            Record::Build => "bin",
            Record::BuildDelta => "delta.bin",
            Record::Explain => "explain.bin",
            Record::ExplainDelta => "explain.delta.bin",
            // Not "noop": pflow before spares mapped that one without a lock, and a
            // record it maps must never be written over (see `super::spare`).
            Record::Noop => "noop2",
            Record::Text => "text",
            Record::TextSplice => "text.delta",
            Record::Forms => "forms",
            Record::Logs => "logs.json",
        }
    }
}

/// Whose record a file in the records folder is, by its name: the hash of the
/// workflow's records name it starts with ([`record_path`]); `None` for any other file
/// there (segment indexes, the key map, spares, temporary files). The no-op record as
/// pflow before spares named it (`.noop`, never read now) counts as one.
pub fn record_owner(file_name: &str) -> Option<&str> {
    let (stem, extension) = file_name.split_once('.')?;
    let hashed =
        stem.len() == RECORD_STEM && stem.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let known = extension == LEGACY_NOOP || Record::ALL.iter().any(|r| r.extension() == extension);
    (hashed && known).then_some(stem)
}

/// How many hex digits of the records name's hash name a workflow's record files.
const RECORD_STEM: usize = 32;

/// The no-op record's extension before spares ([`Record::Noop`]).
pub const LEGACY_NOOP: &str = "noop";

/// The name a workflow's records go by in the cache at `root` (their files are named by
/// its hash, [`record_path`]): the workflow file's path from the folder that holds the
/// cache (`wf.json` for one beside `.pflow-cache`, `svc/wf.json` for one below it), else
/// its absolute path. Its file name alone made workflows of one name in different
/// folders share a cache's records: each build took the other's last build for its own
/// (`pflow log` showed the other's output, `--explain` compared against it) and threw
/// its no-op record away. Taken from the cache's folder, the name stays the same when a
/// project is moved, or its cache restored into another checkout, with the cache in it;
/// and a workflow beside its cache keeps the name (its file name) it had before.
pub fn records_name(workflow: &Path, root: &Path) -> String {
    // The folder the file is in, as the system finds it, and the file's own name: two
    // links of different names to one file are two workflows (each resolves what it
    // refers to from its own folder).
    let file = workflow
        .file_name()
        .and_then(|name| {
            let dir = workflow.parent().filter(|d| !d.as_os_str().is_empty());
            let dir = dir.unwrap_or(Path::new(".")).canonicalize().ok()?;
            Some(dir.join(name))
        })
        .or_else(|| std::path::absolute(workflow).ok())
        .unwrap_or_else(|| workflow.to_path_buf());
    // The folder that holds the cache: where it is, when it exists (a cache linked to
    // from several projects names each one's workflows by their whole path); else where
    // its path says it will be.
    let holder = match root.canonicalize() {
        Ok(cache) => cache.parent().map(Path::to_path_buf),
        Err(_) => std::path::absolute(root)
            .ok()
            .and_then(|r| r.parent().and_then(|p| p.canonicalize().ok())),
    };
    let inside = holder.as_deref().and_then(|h| file.strip_prefix(h).ok());
    let (named, name) = match inside {
        Some(inside) => (
            inside,
            inside
                .components()
                .map(|c| c.as_os_str().to_string_lossy())
                .collect::<Vec<_>>()
                .join("/"),
        ),
        None => (file.as_path(), file.to_string_lossy().into_owned()),
    };
    // A name that is not UTF-8 keeps its bytes apart from another one's.
    match named.to_str() {
        Some(_) => name,
        None => {
            use std::os::unix::ffi::OsStrExt;
            let raw = blake3::hash(named.as_os_str().as_bytes()).to_hex();
            format!("{name} ({})", &raw[..16])
        }
    }
}

/// The file of one of a workflow's records.
pub fn record_path(root: &Path, workflow_name: &str, record: Record) -> PathBuf {
    let h = blake3::hash(workflow_name.as_bytes()).to_hex();
    root.join(RECORDS_DIR)
        .join(format!("{}.{}", &h[..RECORD_STEM], record.extension()))
}

/// The index of a finished pack segment (see [`super::pack`]): beside the records, by
/// the segment's file name (segment names are never reused).
pub fn pack_index_path(root: &Path, segment: &Path) -> PathBuf {
    let name = segment
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    root.join(RECORDS_DIR).join(format!("{name}.index"))
}

/// The key map of the finished segments' indexes a build keeps for later ones (see
/// [`super::index_map`]).
pub fn pack_map_path(root: &Path) -> PathBuf {
    root.join(RECORDS_DIR).join("packs.map")
}

/// The intent file of a node key.
pub fn intent_path(root: &Path, key: &Key) -> PathBuf {
    root.join(INTENTS_DIR).join(key.hex())
}

pub fn repairs_dir(root: &Path) -> PathBuf {
    root.join(REPAIRS_DIR)
}

pub fn timings_dir(root: &Path) -> PathBuf {
    root.join(TIMINGS_DIR)
}

pub fn lock_path(root: &Path) -> PathBuf {
    root.join(LOCK_FILE)
}

pub fn stats_path(root: &Path) -> PathBuf {
    root.join(STATS_FILE)
}

/// The cache's generation: a decimal number in `<cache>/generation`, 0 when absent.
pub fn generation(root: &Path) -> u64 {
    std::fs::read_to_string(root.join(GENERATION_FILE))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Mark that entries are being removed, so that anything remembering entries outside the
/// index (the per-workflow build records) stops trusting them. Maintenance calls this
/// before it removes anything.
pub fn bump_generation(root: &Path) -> std::io::Result<()> {
    let next = generation(root).wrapping_add(1);
    crate::fsutil::write_atomic(&root.join(GENERATION_FILE), next.to_string().as_bytes())
}

/// Where cacache keeps the content for `sri`; None when the integrity is malformed (cacache
/// itself would panic on it).
pub fn content_path(root: &Path, sri: &cacache::Integrity) -> Option<PathBuf> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let (algorithm, digest) = blob_digest(sri)?;
    // Each byte formatted with `format!` was an allocation: a quarter of the instructions
    // of a build whose every node was a hit, when every entry read made its path.
    let mut hex = String::with_capacity(2 * digest.len());
    for b in digest {
        hex.push(char::from(HEX[usize::from(b >> 4)]));
        hex.push(char::from(HEX[usize::from(b & 0xf)]));
    }
    // At least 6 hex digits (3 bytes): every slice below is in bounds.
    Some(
        root.join(CONTENT_DIR)
            .join(algorithm.to_string())
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex[4..]),
    )
}

/// Does `sri` name a blob cacache could hold ([`content_path`] is `Some`)? Asked of every
/// entry a build reads, most of which hold their outputs inline: the path is not made.
pub fn names_blob(sri: &cacache::Integrity) -> bool {
    blob_digest(sri).is_some()
}

/// `sri`'s first hash: its algorithm and its digest, decoded (at least 3 bytes), which
/// a blob's path is made of.
fn blob_digest(sri: &cacache::Integrity) -> Option<(cacache::Algorithm, Vec<u8>)> {
    use base64::Engine;
    let first = sri.hashes.first()?;
    let digest = base64::engine::general_purpose::STANDARD
        .decode(&first.digest)
        .ok()?;
    (digest.len() >= 3).then_some((first.algorithm, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_paths_match_cacache() {
        let dir = tempfile::tempdir().unwrap();
        let sri = cacache::write_hash_sync(dir.path(), b"hello").unwrap();
        assert!(content_path(dir.path(), &sri).unwrap().is_file());
        assert!(names_blob(&sri));
        for algorithm in [
            cacache::Algorithm::Sha1,
            cacache::Algorithm::Sha512,
            cacache::Algorithm::Xxh3,
        ] {
            let mut w = cacache::WriteOpts::new()
                .algorithm(algorithm)
                .open_hash_sync(dir.path())
                .unwrap();
            std::io::Write::write_all(&mut w, b"hello").unwrap();
            let sri = w.commit().unwrap();
            let path = content_path(dir.path(), &sri).unwrap();
            assert!(path.is_file(), "{algorithm}: {}", path.display());
            assert!(names_blob(&sri));
        }
    }

    #[test]
    fn a_workflows_records_are_named_by_its_path_from_the_caches_folder() {
        let project = tempfile::tempdir().unwrap();
        let root = project.path().canonicalize().unwrap();
        for rel in ["wf.json", "svc/wf.json", "svc/deep/wf.json"] {
            let file = root.join(rel);
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, "{}").unwrap();
        }
        // The cache need not exist yet.
        let cache = root.join(".pflow-cache");
        assert_eq!(records_name(&root.join("wf.json"), &cache), "wf.json");
        assert_eq!(
            records_name(&root.join("svc/wf.json"), &cache),
            "svc/wf.json"
        );
        // However the file is named: through `..`, or from the cache's side.
        let roundabout = root.join("svc/deep/../wf.json");
        assert_eq!(records_name(&roundabout, &cache), "svc/wf.json");
        let below = root.join("svc/.pflow-cache");
        assert_eq!(
            records_name(&root.join("svc/deep/wf.json"), &below),
            "deep/wf.json"
        );
        // Outside the cache's folder: the whole path, which differs for each file.
        let outside = records_name(&root.join("wf.json"), &below);
        assert_eq!(outside, root.join("wf.json").to_string_lossy());
        assert_ne!(
            records_name(&root.join("svc/wf.json"), Path::new("/nowhere/cache")),
            records_name(&root.join("wf.json"), Path::new("/nowhere/cache"))
        );

        // Links of one name in two folders to one file: two workflows.
        for side in ["a", "b"] {
            std::fs::create_dir_all(root.join(side)).unwrap();
            std::os::unix::fs::symlink(root.join("wf.json"), root.join(side).join("wf.json"))
                .unwrap();
        }
        assert_eq!(records_name(&root.join("a/wf.json"), &cache), "a/wf.json");
        assert_eq!(records_name(&root.join("b/wf.json"), &cache), "b/wf.json");
        // A cache that links to one elsewhere (shared by projects, or worktrees): the
        // whole path, which the projects do not share.
        let shared = tempfile::tempdir().unwrap();
        let target = shared.path().join("caches/one");
        std::fs::create_dir_all(&target).unwrap();
        std::os::unix::fs::symlink(&target, root.join("linked")).unwrap();
        assert_eq!(
            records_name(&root.join("wf.json"), &root.join("linked")),
            root.join("wf.json").to_string_lossy()
        );
        // A cache named through `..`: the folder it is really in.
        let up = root.join("svc/deep/../../.pflow-cache");
        std::fs::create_dir_all(&up).unwrap();
        assert_eq!(records_name(&root.join("svc/wf.json"), &up), "svc/wf.json");
    }

    #[test]
    fn every_record_file_is_known_by_its_owner_and_nothing_else_is() {
        let root = Path::new("/c");
        for record in Record::ALL {
            let path = record_path(root, "svc/wf.json", record);
            let name = path.file_name().unwrap().to_str().unwrap();
            let owner = blake3::hash(b"svc/wf.json").to_hex();
            assert_eq!(record_owner(name), Some(&owner[..32]), "{name}");
        }
        assert!(record_owner("0123456789abcdef0123456789abcdef.noop").is_some());
        for other in [
            "packs.map",
            "1796121399951-14977-606dfcc8.pack.index",
            ".pflow-tmp-1-abc",
            "0123456789abcdef0123456789abcdef.noop2.spare-a",
            "0123456789abcdef0123456789abcdef.other",
            "0123456789ABCDEF0123456789ABCDEF.bin",
            "0123456789abcdef.bin",
        ] {
            assert_eq!(record_owner(other), None, "{other}");
        }
    }

    #[test]
    fn malformed_integrity_has_no_content_path() {
        let bad: cacache::Integrity = "sha256-@@@".parse().unwrap();
        assert!(content_path(Path::new("/c"), &bad).is_none());
        let empty: cacache::Integrity = "".parse().unwrap();
        assert!(content_path(Path::new("/c"), &empty).is_none());
        let short: cacache::Integrity = "sha256-AAA=".parse().unwrap();
        assert!(content_path(Path::new("/c"), &short).is_none());
        for sri in [bad, empty, short] {
            assert!(!names_blob(&sri));
        }
    }
}
