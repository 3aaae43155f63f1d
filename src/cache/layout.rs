//! Every path inside a cache directory, and cacache's on-disk format as pflow reads it.
//!
//! A cache directory holds:
//!
//! | path | what |
//! |---|---|
//! | `index-v5/<aa>/<bb>/<rest of sha1(key)>` | cacache index buckets, one JSON line per write |
//! | `content-v2/<algo>/<aa>/<bb>/<rest>` | blobs, named by their integrity |
//! | `tmp/` | cacache's blobs being written |
//! | `records/` (named `state/` on disk) | per-workflow build, explain and no-op records ([`super::records`], [`super::noop`]) |
//! | `repairs/` | recorded repair patches |
//! | `timings/` | `--timings` pages written without a path |
//! | `intents/` | effects announced and not yet recorded ([`super::intents`]) |
//! | `build-stats.jsonl` | one line per build ([`super::stats`]) |
//! | `generation` | bumped whenever maintenance removes entries |
//! | `.pflow-lock` | the lock builds share and maintenance holds alone ([`super::lock`]) |
//!
//! Index lines are read here rather than through `cacache::index::find`, so that a damaged
//! bucket line, an unparseable manifest or a malformed integrity string is a miss and
//! never an error that could panic deeper in cacache.

use crate::key::Key;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// cacache's index directory (buckets).
pub const INDEX_DIR: &str = "index-v5";
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
const CACHE_NAMES: [&str; 12] = [
    INTENTS_DIR,
    TIMINGS_DIR,
    INDEX_DIR,
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

/// The file of a workflow's build record (`kind` "bin"), explain record ("explain.bin")
/// or no-op record ("noop").
pub fn record_path(root: &Path, workflow_name: &str, kind: &str) -> PathBuf {
    let h = blake3::hash(workflow_name.as_bytes()).to_hex();
    root.join(RECORDS_DIR).join(format!("{}.{kind}", &h[..32]))
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

/// The index key of a node key.
pub fn index_key(key: &Key) -> String {
    format!("pflow/node/{}", key.hex())
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

/// One index line as cacache writes it (`\n<sha256 of json>\t<json>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct IndexRecord {
    pub key: String,
    /// None: a removal tombstone.
    pub integrity: Option<String>,
    pub time: u128,
    pub size: usize,
    pub metadata: Value,
    #[serde(default)]
    pub raw_metadata: Option<Vec<u8>>,
}

/// A line of an index bucket.
#[derive(Debug, Clone)]
pub enum BucketLine {
    /// The hash matches and the JSON parses. `raw` is the line as stored (without the
    /// newline), so a rewritten bucket keeps it byte for byte.
    Valid { raw: Vec<u8>, record: IndexRecord },
    /// A torn or damaged line (hash mismatch, not UTF-8, not an index record).
    Corrupt { raw: Vec<u8>, line: usize },
}

/// Read every line of a bucket file. Each line is checked on its own, so a damaged line
/// does not hide the lines after it.
pub fn read_bucket(path: &Path) -> std::io::Result<Vec<BucketLine>> {
    let bytes = std::fs::read(path)?;
    Ok(parse_bucket(&bytes))
}

pub fn parse_bucket(bytes: &[u8]) -> Vec<BucketLine> {
    let mut out = Vec::new();
    for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
        if raw.is_empty() {
            continue;
        }
        match parse_line(raw) {
            Some(record) => out.push(BucketLine::Valid {
                raw: raw.to_vec(),
                record,
            }),
            None => out.push(BucketLine::Corrupt {
                raw: raw.to_vec(),
                line: n + 1,
            }),
        }
    }
    out
}

fn parse_line(raw: &[u8]) -> Option<IndexRecord> {
    let text = std::str::from_utf8(raw).ok()?;
    let (hash, json) = text.split_once('\t')?;
    if json.contains('\t') || hash != line_hash(json) {
        return None;
    }
    serde_json::from_str(json).ok()
}

/// The hash cacache puts before each index line: SHA-256 of the JSON, in hex.
pub fn line_hash(json: &str) -> String {
    cacache::Integrity::from(json.as_bytes()).to_hex().1
}

/// Where cacache keeps the bucket of `key`: `index-v5/<aa>/<bb>/<rest of sha1(key)>`.
pub fn bucket_path(root: &Path, key: &str) -> PathBuf {
    use sha1::Digest;
    let h: String = sha1::Sha1::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    root.join(INDEX_DIR)
        .join(&h[0..2])
        .join(&h[2..4])
        .join(&h[4..])
}

/// Where cacache keeps the content for `sri`; None when the integrity is malformed (cacache
/// itself would panic on it).
pub fn content_path(root: &Path, sri: &cacache::Integrity) -> Option<PathBuf> {
    use base64::Engine;
    let text = sri.to_string();
    let first = text.split_whitespace().next()?;
    let (algo, b64) = first.split_once('-')?;
    algo.parse::<cacache::Algorithm>().ok()?;
    let digest = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    if digest.len() < 3 {
        return None;
    }
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    Some(
        root.join(CONTENT_DIR)
            .join(algo)
            .join(&hex[0..2])
            .join(&hex[2..4])
            .join(&hex[4..]),
    )
}

/// Set a file's modification time to now (the recency mark of a hit). Errors are ignored:
/// a read-only cache still serves hits.
pub fn touch(path: &Path) {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return;
    };
    let times = [
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_OMIT,
        },
        libc::timespec {
            tv_sec: 0,
            tv_nsec: libc::UTIME_NOW,
        },
    ];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two valid timespecs.
    unsafe {
        libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_path_is_the_sha1_of_the_key() {
        // sha1("abc") = a9993e364706816aba3e25717850c26c9cd0d89d
        assert_eq!(
            bucket_path(Path::new("/c"), "abc"),
            Path::new("/c/index-v5/a9/99/3e364706816aba3e25717850c26c9cd0d89d")
        );
    }

    #[test]
    fn bucket_and_content_paths_match_cacache() {
        let dir = tempfile::tempdir().unwrap();
        let key = "pflow/node/abc";
        let sri = cacache::write_sync(dir.path(), key, b"hello").unwrap();
        assert!(bucket_path(dir.path(), key).is_file());
        assert!(content_path(dir.path(), &sri).unwrap().is_file());
        let lines = read_bucket(&bucket_path(dir.path(), key)).unwrap();
        assert!(matches!(&lines[..], [BucketLine::Valid { record, .. }] if record.key == key));
    }

    #[test]
    fn damaged_lines_are_reported_and_do_not_hide_later_lines() {
        let good = {
            let json = r#"{"key":"k","integrity":"sha256-x","time":1,"size":0,"metadata":null}"#;
            format!("{}\t{json}", line_hash(json))
        };
        let text = format!("\n{good}x\n\u{1}\u{2}\n{good}");
        let mut bytes = text.into_bytes();
        bytes.insert(0, 0xff);
        let lines = parse_bucket(&bytes);
        assert_eq!(lines.len(), 4);
        assert!(matches!(lines[0], BucketLine::Corrupt { .. }));
        assert!(matches!(lines[1], BucketLine::Corrupt { .. }));
        assert!(matches!(lines[2], BucketLine::Corrupt { .. }));
        assert!(matches!(lines[3], BucketLine::Valid { .. }));
    }

    #[test]
    fn malformed_integrity_has_no_content_path() {
        let bad: cacache::Integrity = "sha256-@@@".parse().unwrap();
        assert!(content_path(Path::new("/c"), &bad).is_none());
        let empty: cacache::Integrity = "".parse().unwrap();
        assert!(content_path(Path::new("/c"), &empty).is_none());
    }
}
