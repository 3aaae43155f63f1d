//! What the last build of a workflow saw, so a no-op build needs no per-node cache I/O.
//!
//! After a build, pflow writes (only when something changed) a small binary record per
//! workflow: for each node whose result came from the cache, its key and the cache
//! entry it maps to, and the size and mtime of the files it wrote; and for each file a
//! node read, its size, mtime and digest. The next build trusts a node's recorded entry
//! when its key is unchanged, the cache's generation (bumped by gc, verify --fix and
//! clear) is the same, the record is less than an hour old (so LRU recency is refreshed
//! at least hourly by a full lookup), and the files it wrote still have the recorded size
//! and mtime. Anything else falls back to the normal index lookup. The record is an
//! optimisation only: losing it, or it being stale, costs time, never correctness, since
//! entries are content-addressed and every blob is still verified when its value is read.

use crate::cache::{Entry, Manifest};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

/// How long a record may stand in for index lookups.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
const FORMAT: u32 = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStat {
    pub size: u64,
    pub mtime_ns: i128,
    /// BLAKE3 hex of the content (for files read).
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub key: [u8; 32],
    /// The output digest (what dependents' keys are built from).
    pub digest: [u8; 32],
    pub integrity: String,
    pub time_ms: u64,
    /// How long the node took when it ran (for "time saved").
    pub duration_ms: u64,
    pub manifest_json: Vec<u8>,
    /// (path, size, mtime) of each file the node wrote.
    pub written: Vec<(String, u64, i128)>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BuildState {
    pub format: u32,
    pub generation: u64,
    pub written_ms: u64,
    pub nodes: HashMap<String, NodeRecord>,
    pub reads: HashMap<String, FileStat>,
}

fn now_ms() -> u64 {
    crate::cache::now_ms() as u64
}

use crate::cache::generation;

fn path_for(cache_root: &Path, workflow_name: &str) -> PathBuf {
    let h = blake3::hash(workflow_name.as_bytes()).to_hex();
    cache_root.join("state").join(format!("{}.bin", &h[..32]))
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

impl BuildState {
    /// The usable state of this workflow, or an empty one.
    pub fn load(cache_root: &Path, workflow_name: &str) -> BuildState {
        let fresh = std::fs::read(path_for(cache_root, workflow_name))
            .ok()
            .and_then(|b| bincode::deserialize::<BuildState>(&b).ok())
            .filter(|s| s.format == FORMAT)
            .filter(|s| s.generation == generation(cache_root))
            .filter(|s| now_ms().saturating_sub(s.written_ms) < MAX_AGE.as_millis() as u64);
        fresh.unwrap_or_default()
    }

    pub fn save(&mut self, cache_root: &Path, workflow_name: &str) {
        self.format = FORMAT;
        self.generation = generation(cache_root);
        self.written_ms = now_ms();
        if let Ok(bytes) = bincode::serialize(self) {
            let _ = crate::nodes::write_atomic_with(
                &path_for(cache_root, workflow_name),
                &bytes,
                false,
            );
        }
    }

    /// The fast path: node `id` with `key` was a hit last time and the files it wrote
    /// have the recorded size and mtime. Returns its output digest and entry time.
    pub fn fast_hit(&self, id: &str, key: &[u8; 32]) -> Option<([u8; 32], u64, u64)> {
        let rec = self.nodes.get(id).filter(|r| &r.key == key)?;
        for (path, size, mtime) in &rec.written {
            if stat(Path::new(path)) != Some((*size, *mtime)) {
                return None;
            }
        }
        Some((rec.digest, rec.time_ms, rec.duration_ms))
    }

    /// Files node `id` wrote in its recorded build, as (path, BLAKE3 hex).
    pub fn own_files(&self, id: &str) -> Vec<(String, String)> {
        self.nodes
            .get(id)
            .and_then(|r| serde_json::from_slice::<Manifest>(&r.manifest_json).ok())
            .map(|m| m.files.into_iter().map(|f| (f.path, f.digest)).collect())
            .unwrap_or_default()
    }

    /// The full cache entry behind a recorded node (decoded only when its value is needed).
    pub fn entry(&self, id: &str, key: &[u8; 32]) -> Option<Entry> {
        let rec = self.nodes.get(id).filter(|r| &r.key == key)?;
        let manifest: Manifest = serde_json::from_slice(&rec.manifest_json).ok()?;
        Some(Entry {
            manifest,
            integrity: rec.integrity.parse().ok()?,
            time_ms: rec.time_ms as u128,
        })
    }

    /// A digest for a file read, reused when its size and mtime are unchanged and it was
    /// not modified around the time it was recorded (the "racy" case re-hashes).
    pub fn read_digest(&self, path: &str, now_stat: Option<(u64, i128)>) -> Option<String> {
        let (size, mtime) = now_stat?;
        let rec = self.reads.get(path)?;
        let recorded_at_ns = self.written_ms as i128 * 1_000_000;
        let settled = mtime < recorded_at_ns - 2_000_000_000;
        (rec.size == size && rec.mtime_ns == mtime && settled).then(|| rec.digest.clone())
    }
}

/// A record for a node from a cache entry (the written files as they are now).
pub fn record_of(key: &[u8; 32], entry: &Entry) -> Option<NodeRecord> {
    // A file that is gone was taken away by a later node (the executor restores any
    // other); it is not part of what the fast path checks.
    let written = entry
        .manifest
        .files
        .iter()
        .filter_map(|f| stat(Path::new(&f.path)).map(|(size, mtime)| (f.path.clone(), size, mtime)))
        .collect::<Vec<_>>();
    let digest = blake3::Hash::from_hex(&entry.manifest.output_digest).ok()?;
    Some(NodeRecord {
        key: *key,
        digest: *digest.as_bytes(),
        integrity: entry.integrity.to_string(),
        time_ms: entry.time_ms as u64,
        duration_ms: entry.manifest.duration_ms,
        manifest_json: serde_json::to_vec(&entry.manifest).ok()?,
        written,
    })
}

/// `--explain` records: each node's key preimage from the last build that decided it,
/// with digests shortened to 64 bits (enough to tell that a component changed). Read only
/// when a node misses; written only when something changed.
pub fn load_explain(
    cache_root: &Path,
    workflow_name: &str,
) -> std::collections::BTreeMap<String, crate::key::Preimage> {
    std::fs::read(explain_path(cache_root, workflow_name))
        .ok()
        .and_then(|b| bincode::deserialize(&b).ok())
        .unwrap_or_default()
}

pub fn save_explain(
    cache_root: &Path,
    workflow_name: &str,
    records: &std::collections::BTreeMap<String, crate::key::Preimage>,
) {
    if let Ok(bytes) = bincode::serialize(records) {
        let _ = crate::nodes::write_atomic_with(
            &explain_path(cache_root, workflow_name),
            &bytes,
            false,
        );
    }
}

fn explain_path(cache_root: &Path, workflow_name: &str) -> PathBuf {
    let h = blake3::hash(workflow_name.as_bytes()).to_hex();
    cache_root
        .join("state")
        .join(format!("{}.explain.bin", &h[..32]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::bump_generation;

    fn record(path: &Path, key: [u8; 32]) -> NodeRecord {
        let (size, mtime) = stat(path).expect("file exists");
        NodeRecord {
            key,
            digest: [7; 32],
            integrity: "sha256-AAAA".into(),
            time_ms: 1,
            duration_ms: 5,
            manifest_json: b"{}".to_vec(),
            written: vec![(path.to_string_lossy().into_owned(), size, mtime)],
        }
    }

    #[test]
    fn fast_hit_needs_the_same_key_and_untouched_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        std::fs::write(&out, "hello").unwrap();
        let mut state = BuildState::default();
        state.nodes.insert("a".into(), record(&out, [1; 32]));
        assert_eq!(state.fast_hit("a", &[1; 32]), Some(([7; 32], 1, 5)));
        assert_eq!(state.fast_hit("a", &[2; 32]), None, "another key");
        assert_eq!(state.fast_hit("b", &[1; 32]), None, "another node");
        std::fs::write(&out, "hello, world").unwrap();
        assert_eq!(state.fast_hit("a", &[1; 32]), None, "file changed");
        std::fs::remove_file(&out).unwrap();
        assert_eq!(state.fast_hit("a", &[1; 32]), None, "file gone");
    }

    #[test]
    fn saved_state_is_dropped_when_the_generation_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = BuildState::default();
        state
            .nodes
            .insert("a".into(), record(&dir.path().join("."), [1; 32]));
        state.save(dir.path(), "wf.json");
        assert_eq!(BuildState::load(dir.path(), "wf.json").nodes.len(), 1);
        bump_generation(dir.path()).unwrap();
        assert!(BuildState::load(dir.path(), "wf.json").nodes.is_empty());
        assert!(BuildState::load(dir.path(), "other.json").nodes.is_empty());
    }

    #[test]
    fn recent_files_are_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.txt");
        std::fs::write(&f, "x").unwrap();
        let now = stat(&f);
        let (size, mtime_ns) = now.unwrap();
        let mut state = BuildState {
            written_ms: now_ms(),
            ..BuildState::default()
        };
        state.reads.insert(
            "in.txt".into(),
            FileStat {
                size,
                mtime_ns,
                digest: "d".into(),
            },
        );
        assert_eq!(
            state.read_digest("in.txt", now),
            None,
            "modified just now: racy"
        );
        state.written_ms += 10_000;
        assert_eq!(state.read_digest("in.txt", now), Some("d".into()));
        assert_eq!(
            state.read_digest("in.txt", Some((size + 1, mtime_ns))),
            None
        );
    }
}
