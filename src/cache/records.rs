//! What the last build of a workflow saw, so a no-op build needs no per-node cache I/O.
//!
//! After a build, pflow writes (only when something changed) a small binary record per
//! workflow: for each node whose result came from the cache, its key, output digest and
//! entry time, and the identity (size, mtime, ctime, inode, device: [`FileId`]) of the
//! files it wrote; and for each file a node read, its identity and digest. The next
//! build trusts a node's recorded entry
//! when its key is unchanged, the cache's generation (bumped by gc, verify --fix and
//! clear) is the same, the record is less than an hour old (so LRU recency is refreshed
//! at least hourly by a full lookup), and the files it wrote still have the recorded
//! identity. Anything else falls back to the normal index lookup. The record is an
//! optimisation only: losing it, or it being stale, costs time, never correctness, since
//! entries are content-addressed and every value is still read from the index and
//! verified when it is needed (a dependent runs, or the workflow declares it an output).
//!
//! The node records sit in a [`Table`] sorted by node id: a lookup decodes one record,
//! and a save re-encodes only the nodes this build looked up or ran, copying the rest.

use super::table::{Reader, Table};
use super::Entry;
use crate::fsutil::{stat, FileId};
use crate::key::{Preimage, Short};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many bytes a [`FileId`] takes in a record.
const ID_BYTES: usize = 8 + 16 + 16 + 8 + 8;

/// The size recorded for a written file that was gone when the record was made.
pub const GONE: u64 = u64::MAX;

/// How long a record may stand in for index lookups.
pub const MAX_AGE: Duration = Duration::from_secs(3600);
const FORMAT: u32 = 9;
const EXPLAIN_FORMAT: u32 = 4;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FileStat {
    pub id: FileId,
    /// BLAKE3 hex of the content (for files read).
    pub digest: String,
}

/// One node's record: what deciding a hit and building dependents' keys need, nothing
/// more (a value, when one is needed, is read from the cache index by the key).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeRecord {
    /// The key first: a lookup rejects another key before decoding anything else.
    pub key: [u8; 32],
    /// The output digest (what dependents' keys are built from).
    pub digest: [u8; 32],
    /// When the entry was written (unix ms), for `"cache": "<duration>"`.
    pub time_ms: u64,
    /// How long the node took when it ran (for "time saved").
    pub duration_ms: u64,
    /// Each file the node wrote and its identity; [`GONE`] as the size of one that a
    /// later node of the workflow took away.
    pub written: Vec<(String, FileId)>,
    /// Each file the node took away (the fast path needs it still absent).
    pub removed: Vec<String>,
}

/// `--explain` records are many and small: varint lengths and numbers keep them so.
/// The format is bincode's (`DefaultOptions`: a number below 251 is one byte; otherwise
/// a tag byte, 251, 252 or 253, then the number as 2, 4 or 8 little-endian bytes), for
/// a sequence of (name, 64-bit digest): the count, then each name's length, its bytes,
/// and the digest. Written and read by hand: an edit decodes one record per node, and
/// serde's generic path cost ten times as much.
fn put_varint(out: &mut Vec<u8>, n: u64) {
    if n < 251 {
        out.push(n as u8);
    } else if n <= u16::MAX as u64 {
        out.push(251);
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= u32::MAX as u64 {
        out.push(252);
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        out.push(253);
        out.extend_from_slice(&n.to_le_bytes());
    }
}

fn varint(r: &mut Reader<'_>) -> Option<u64> {
    match r.array::<1>()?[0] {
        n @ 0..=250 => Some(n as u64),
        251 => r.array().map(u16::from_le_bytes).map(u64::from),
        252 => r.u32().map(u64::from),
        253 => r.u64(),
        _ => None,
    }
}

/// Encoded by hand (a no-op build decodes one per node, and serde's generic decoding of
/// two 32-byte arrays cost more than everything else about a hit): key, digest, time_ms,
/// duration_ms, the number of written files, then each file's path length, path and
/// identity (size, mtime, ctime, inode, device), then the number of removed files and each one's path length and path;
/// little-endian.
impl NodeRecord {
    pub fn encode(&self) -> Vec<u8> {
        let paths: usize = self
            .written
            .iter()
            .map(|(p, _)| 4 + p.len() + ID_BYTES)
            .sum();
        let mut out = Vec::with_capacity(84 + paths);
        out.extend_from_slice(&self.key);
        out.extend_from_slice(&self.digest);
        out.extend_from_slice(&self.time_ms.to_le_bytes());
        out.extend_from_slice(&self.duration_ms.to_le_bytes());
        out.extend_from_slice(&(self.written.len() as u32).to_le_bytes());
        for (path, id) in &self.written {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
            out.extend_from_slice(&id.size.to_le_bytes());
            out.extend_from_slice(&id.mtime_ns.to_le_bytes());
            out.extend_from_slice(&id.ctime_ns.to_le_bytes());
            out.extend_from_slice(&id.ino.to_le_bytes());
            out.extend_from_slice(&id.dev.to_le_bytes());
        }
        out.extend_from_slice(&(self.removed.len() as u32).to_le_bytes());
        for path in &self.removed {
            out.extend_from_slice(&(path.len() as u32).to_le_bytes());
            out.extend_from_slice(path.as_bytes());
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<NodeRecord> {
        let mut r = Reader::new(bytes, 0);
        let key = r.array()?;
        let digest = r.array()?;
        let time_ms = r.u64()?;
        let duration_ms = r.u64()?;
        let count = r.u32()? as usize;
        // Each file takes at least 4 + ID_BYTES bytes: a bigger count is a damaged record.
        if count > r.remaining() / (4 + ID_BYTES) {
            return None;
        }
        let mut written = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32()? as usize;
            let path = std::str::from_utf8(r.take(len)?).ok()?.to_string();
            let id = FileId {
                size: r.u64()?,
                mtime_ns: r.i128()?,
                ctime_ns: r.i128()?,
                ino: r.u64()?,
                dev: r.u64()?,
            };
            written.push((path, id));
        }
        let count = r.u32()? as usize;
        if count > r.remaining() / 4 {
            return None;
        }
        let mut removed = Vec::with_capacity(count);
        for _ in 0..count {
            let len = r.u32()? as usize;
            removed.push(std::str::from_utf8(r.take(len)?).ok()?.to_string());
        }
        (r.remaining() == 0).then_some(NodeRecord {
            key,
            digest,
            time_ms,
            duration_ms,
            written,
            removed,
        })
    }
}

/// The record of a workflow's last build, as loaded.
#[derive(Debug, Default)]
pub struct BuildState {
    pub written_ms: u64,
    pub reads: HashMap<String, FileStat>,
    nodes: Table,
}

/// What a build learned, merged into the record when it is saved: the records of the
/// nodes it looked up or ran (encoded), and every file it read.
#[derive(Debug, Default)]
pub struct StateUpdate {
    pub nodes: BTreeMap<String, Vec<u8>>,
    pub reads: HashMap<String, FileStat>,
}

fn now_ms() -> u64 {
    crate::cache::now_ms() as u64
}

use super::layout::{generation, record_path, Record};

fn path_for(cache_root: &Path, workflow_name: &str) -> PathBuf {
    record_path(cache_root, workflow_name, Record::Build)
}

impl BuildState {
    /// The usable state of this workflow, or an empty one.
    pub fn load(cache_root: &Path, workflow_name: &str) -> BuildState {
        crate::fsutil::read_bytes(&path_for(cache_root, workflow_name))
            .ok()
            .and_then(|b| BuildState::decode(b, generation(cache_root)))
            .filter(|s| now_ms().saturating_sub(s.written_ms) < MAX_AGE.as_millis() as u64)
            .unwrap_or_default()
    }

    /// The generation and `written_ms` of the record on disk (its first bytes only),
    /// whatever its age: what tells one save of it from another.
    pub fn header(cache_root: &Path, workflow_name: &str) -> Option<(u64, u64)> {
        use std::io::Read;
        let mut head = [0u8; 20];
        std::fs::File::open(path_for(cache_root, workflow_name))
            .and_then(|mut f| f.read_exact(&mut head))
            .ok()?;
        let mut r = Reader::new(&head, 0);
        if r.u32()? != FORMAT {
            return None;
        }
        Some((r.u64()?, r.u64()?))
    }

    fn decode(bytes: crate::fsutil::Bytes, generation: u64) -> Option<BuildState> {
        let mut r = Reader::new(&bytes, 0);
        if r.u32()? != FORMAT || r.u64()? != generation {
            return None;
        }
        let written_ms = r.u64()?;
        let reads_len = r.u32()? as usize;
        let reads = bincode::deserialize(r.take(reads_len)?).ok()?;
        let start = r.offset();
        let nodes = Table::parse(bytes, start)?;
        Some(BuildState {
            written_ms,
            reads,
            nodes,
        })
    }

    /// Write the record of this build: `update`'s node records replace or join the
    /// loaded ones, a loaded record survives when `keep` says so, and the reads are
    /// `update`'s.
    pub fn save(
        &self,
        cache_root: &Path,
        workflow_name: &str,
        update: &StateUpdate,
        keep: impl Fn(&[u8]) -> bool,
    ) {
        let Ok(reads) = bincode::serialize(&update.reads) else {
            return;
        };
        // Best effort, as every record: without it the next build does more work.
        let _ = crate::fsutil::replace_record(&path_for(cache_root, workflow_name), |w| {
            w.write_all(&FORMAT.to_le_bytes())?;
            w.write_all(&generation(cache_root).to_le_bytes())?;
            w.write_all(&now_ms().to_le_bytes())?;
            w.write_all(&(reads.len() as u32).to_le_bytes())?;
            w.write_all(&reads)?;
            self.nodes.merged_into(w, &update.nodes, keep)
        });
    }

    /// How many node records there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `id`'s record, if it is for `key`.
    pub fn record(&self, id: &str, key: &[u8; 32]) -> Option<NodeRecord> {
        // A record for another key (every node of an edit near the start) is passed
        // over by its first 8 bytes, without reading it.
        let (lead, _) = key.split_first_chunk::<8>()?;
        let payload = self.nodes.get_leading(id, lead)?;
        if payload.get(..32)? != key {
            return None;
        }
        NodeRecord::decode(payload)
    }

    /// The key node `id` had in the recorded build.
    pub fn previous_key(&self, id: &str) -> Option<[u8; 32]> {
        self.nodes.get(id)?.get(..32)?.try_into().ok()
    }

    /// Is `encoded` exactly what is recorded for `id`?
    pub fn has(&self, id: &str, encoded: &[u8]) -> bool {
        self.nodes.get(id) == Some(encoded)
    }

    /// The fast path: node `id` with `key` was a hit last time and the files it wrote
    /// have the recorded size and mtime (or, those that were gone, are still gone and
    /// still `consumed` by a node of the workflow). Returns its output digest, entry time
    /// and run time.
    pub fn fast_hit(
        &self,
        id: &str,
        key: &[u8; 32],
        consumed: &std::collections::HashSet<String>,
    ) -> Option<([u8; 32], u64, u64)> {
        let rec = self.record(id, key)?;
        for (path, id) in &rec.written {
            let now = stat(Path::new(path));
            let same = match id.size {
                GONE => now.is_none() && consumed.contains(path),
                _ => now == Some(*id),
            };
            if !same {
                return None;
            }
        }
        if rec
            .removed
            .iter()
            .any(|p| std::fs::symlink_metadata(p).is_ok())
        {
            return None;
        }
        Some((rec.digest, rec.time_ms, rec.duration_ms))
    }

    /// A digest for a file read, reused when its identity is unchanged and it was not
    /// modified or changed around the time it was recorded (the "racy" case re-hashes,
    /// as git's index does).
    pub fn read_digest(&self, path: &str, now: Option<FileId>) -> Option<String> {
        let now = now?;
        let rec = self.reads.get(path)?;
        let recorded_at_ns = self.written_ms as i128 * 1_000_000;
        let settled = now.touched_ns() < recorded_at_ns - 2_000_000_000;
        (rec.id == now && settled).then(|| rec.digest.clone())
    }
}

/// A record for a node from a cache entry (the written files as they are now).
pub fn record_of(key: &[u8; 32], entry: &Entry) -> Option<NodeRecord> {
    // A file that is gone was taken away by a later node (the executor restores any
    // other): the fast path checks that it stays so.
    let written = entry
        .manifest
        .files
        .iter()
        .map(|f| match stat(Path::new(&f.path)) {
            Some(id) => (f.path.clone(), id),
            None => (
                f.path.clone(),
                FileId {
                    size: GONE,
                    ..FileId::default()
                },
            ),
        })
        .collect::<Vec<_>>();
    let digest = blake3::Hash::from_hex(&entry.manifest.output_digest).ok()?;
    Some(NodeRecord {
        key: *key,
        digest: *digest.as_bytes(),
        time_ms: entry.time_ms as u64,
        duration_ms: entry.manifest.duration_ms,
        written,
        removed: entry.manifest.removed.clone(),
    })
}

/// `--explain` records: each node's key preimage from the last build that decided it,
/// with digests shortened to 64 bits (enough to tell that a component changed). Read only
/// when a node misses, decoded one node at a time, borrowing its names; a save encodes
/// only the nodes that were decided anew (a node that was a fast hit has the same key,
/// hence the same preimage, as recorded).
#[derive(Debug, Default)]
pub struct ExplainRecords {
    table: Table,
}

/// One node's explain record: its components, in name order.
pub fn encode_explain(parts: &[Short<'_>]) -> Vec<u8> {
    let names: usize = parts.iter().map(|(name, _)| name.len()).sum();
    let mut out = Vec::with_capacity(9 + names + parts.len() * 12);
    put_varint(&mut out, parts.len() as u64);
    for (name, digest) in parts {
        put_varint(&mut out, name.len() as u64);
        out.extend_from_slice(name.as_bytes());
        put_varint(&mut out, *digest);
    }
    out
}

/// The components of an explain record, borrowed from its bytes; `None` for a damaged
/// one (torn, longer, or not in strict name order).
pub fn decode_explain(bytes: &[u8]) -> Option<Vec<Short<'_>>> {
    let mut r = Reader::new(bytes, 0);
    let count = varint(&mut r)? as usize;
    // Each component takes at least two bytes: a bigger count is a damaged record.
    if count > r.remaining() / 2 {
        return None;
    }
    let mut parts: Vec<Short<'_>> = Vec::with_capacity(count);
    for _ in 0..count {
        let len = varint(&mut r)? as usize;
        let name = std::str::from_utf8(r.take(len)?).ok()?;
        if parts.last().is_some_and(|(prev, _)| *prev >= name) {
            return None;
        }
        parts.push((name, varint(&mut r)?));
    }
    (r.remaining() == 0).then_some(parts)
}

impl ExplainRecords {
    pub fn load(cache_root: &Path, workflow_name: &str) -> ExplainRecords {
        let table = crate::fsutil::read_bytes(&explain_path(cache_root, workflow_name))
            .ok()
            .filter(|b| b.get(..4) == Some(&EXPLAIN_FORMAT.to_le_bytes()[..]))
            .and_then(|b| Table::parse(b, 4))
            .unwrap_or_default();
        ExplainRecords { table }
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Node `id`'s record, as stored (see [`decode_explain`]).
    pub fn raw(&self, id: &str) -> Option<&[u8]> {
        self.table.get(id)
    }

    pub fn get(&self, id: &str) -> Option<Preimage> {
        Some(
            decode_explain(self.raw(id)?)?
                .into_iter()
                .map(|(name, d)| (name.to_string(), format!("{d:016x}")))
                .collect(),
        )
    }

    /// Write these records with `new` ones (encoded: [`encode_explain`]) replacing or
    /// joining them; an old record survives when `keep` says so.
    pub fn save(
        &self,
        cache_root: &Path,
        workflow_name: &str,
        new: &BTreeMap<String, Vec<u8>>,
        keep: impl Fn(&[u8]) -> bool,
    ) {
        let _ = crate::fsutil::replace_record(&explain_path(cache_root, workflow_name), |w| {
            w.write_all(&EXPLAIN_FORMAT.to_le_bytes())?;
            self.table.merged_into(w, new, keep)
        });
    }
}

fn explain_path(cache_root: &Path, workflow_name: &str) -> PathBuf {
    record_path(cache_root, workflow_name, Record::Explain)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::layout::bump_generation;

    fn none() -> std::collections::HashSet<String> {
        Default::default()
    }

    fn record(path: &Path, key: [u8; 32]) -> Vec<u8> {
        let id = stat(path).expect("file exists");
        NodeRecord {
            key,
            digest: [7; 32],
            time_ms: 1,
            duration_ms: 5,
            written: vec![(path.to_string_lossy().into_owned(), id)],
            removed: Vec::new(),
        }
        .encode()
    }

    /// Save `update` over `base` and load the result back.
    fn saved(dir: &Path, base: &BuildState, update: StateUpdate, keep: &[&str]) -> BuildState {
        base.save(dir, "wf.json", &update, |id| {
            keep.iter().any(|k| k.as_bytes() == id)
        });
        BuildState::load(dir, "wf.json")
    }

    #[test]
    fn records_decode_to_what_was_encoded_and_damage_is_refused() {
        let rec = NodeRecord {
            key: [1; 32],
            digest: [2; 32],
            time_ms: 3,
            duration_ms: 4,
            written: vec![
                (
                    "out/a.txt".into(),
                    FileId {
                        size: 5,
                        mtime_ns: -6,
                        ctime_ns: 7,
                        ino: 8,
                        dev: 9,
                    },
                ),
                (
                    "b".into(),
                    FileId {
                        size: 7,
                        mtime_ns: 1 << 70,
                        ..FileId::default()
                    },
                ),
            ],
            removed: vec!["gone.tmp".into()],
        };
        let bytes = rec.encode();
        assert_eq!(NodeRecord::decode(&bytes), Some(rec));
        for cut in 0..bytes.len() {
            assert_eq!(NodeRecord::decode(&bytes[..cut]), None, "torn at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(NodeRecord::decode(&longer), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_as_a_record_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            if let Some(rec) = NodeRecord::decode(&bytes) {
                proptest::prop_assert_eq!(rec.encode(), bytes);
            }
        }
    }

    #[test]
    fn fast_hit_needs_the_same_key_and_untouched_files() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.txt");
        std::fs::write(&out, "hello").unwrap();
        let mut update = StateUpdate::default();
        update.nodes.insert("a".into(), record(&out, [1; 32]));
        let state = saved(dir.path(), &BuildState::default(), update, &[]);
        assert_eq!(
            state.fast_hit("a", &[1; 32], &none()),
            Some(([7; 32], 1, 5))
        );
        assert_eq!(state.fast_hit("a", &[2; 32], &none()), None, "another key");
        assert_eq!(state.fast_hit("b", &[1; 32], &none()), None, "another node");
        std::fs::write(&out, "hello, world").unwrap();
        assert_eq!(state.fast_hit("a", &[1; 32], &none()), None, "file changed");
        std::fs::remove_file(&out).unwrap();
        assert_eq!(state.fast_hit("a", &[1; 32], &none()), None, "file gone");
    }

    #[test]
    fn a_save_keeps_unchanged_records_and_replaces_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let here = dir.path().join("w.txt");
        std::fs::write(&here, "w").unwrap();
        let mut first = StateUpdate::default();
        for id in ["a", "b", "c"] {
            first.nodes.insert(id.into(), record(&here, [1; 32]));
        }
        let state = saved(dir.path(), &BuildState::default(), first, &[]);
        let mut second = StateUpdate::default();
        second.nodes.insert("b".into(), record(&here, [2; 32]));
        second.nodes.insert("d".into(), record(&here, [3; 32]));
        let state = saved(dir.path(), &state, second, &["a"]);
        assert!(
            state.fast_hit("a", &[1; 32], &none()).is_some(),
            "kept as it was"
        );
        assert!(state.fast_hit("b", &[1; 32], &none()).is_none(), "replaced");
        assert!(state.fast_hit("b", &[2; 32], &none()).is_some(), "replaced");
        assert!(state.fast_hit("c", &[1; 32], &none()).is_none(), "not kept");
        assert!(state.fast_hit("d", &[3; 32], &none()).is_some(), "added");
        assert!(state.has("d", &record(&here, [3; 32])));
    }

    #[test]
    fn saved_state_is_dropped_when_the_generation_changes_or_the_file_is_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("w.txt");
        std::fs::write(&written, "w").unwrap();
        let mut update = StateUpdate::default();
        update.nodes.insert("a".into(), record(&written, [1; 32]));
        let state = saved(dir.path(), &BuildState::default(), update, &[]);
        assert!(state.fast_hit("a", &[1; 32], &none()).is_some());
        assert!(BuildState::load(dir.path(), "other.json").nodes.is_empty());
        let path = path_for(dir.path(), "wf.json");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert!(
            BuildState::load(dir.path(), "wf.json").nodes.is_empty(),
            "torn"
        );
        std::fs::write(&path, &bytes).unwrap();
        assert_eq!(BuildState::load(dir.path(), "wf.json").nodes.len(), 1);
        bump_generation(dir.path()).unwrap();
        assert!(BuildState::load(dir.path(), "wf.json").nodes.is_empty());
    }

    #[test]
    fn explain_records_merge_by_node() {
        let dir = tempfile::tempdir().unwrap();
        let pre = |d: u64| encode_explain(&[("param:x", d)]);
        let hex = |d: &str| -> Preimage { [("param:x".to_string(), format!("{d:0>16}"))].into() };
        let first: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), pre(1)), ("b".to_string(), pre(1))].into();
        ExplainRecords::default().save(dir.path(), "wf.json", &first, |_| true);
        let loaded = ExplainRecords::load(dir.path(), "wf.json");
        assert_eq!(loaded.get("a"), Some(hex("1")));
        let second: BTreeMap<String, Vec<u8>> = [("b".to_string(), pre(0x2f))].into();
        loaded.save(dir.path(), "wf.json", &second, |id| id == b"a");
        let loaded = ExplainRecords::load(dir.path(), "wf.json");
        assert_eq!(loaded.get("a"), Some(hex("1")));
        assert_eq!(loaded.get("b"), Some(hex("2f")));
        assert_eq!(
            decode_explain(loaded.raw("b").unwrap()),
            Some(vec![("param:x", 0x2f)])
        );
        assert_eq!(loaded.get("c"), None);
    }

    #[test]
    fn explain_records_are_bincode_as_earlier_versions_wrote_them() {
        use bincode::Options;
        let long = "n".repeat(300);
        let many: Vec<(String, u64)> = (0..260).map(|i| (format!("p{i:03}"), i)).collect();
        let many: Vec<Short<'_>> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
        let cases: Vec<Vec<Short<'_>>> = vec![
            vec![],
            vec![("engine", 0), ("id", 250), ("param:a", 251)],
            vec![
                ("dep:x", 65_535),
                ("dep:y", 65_536),
                ("param:z", u32::MAX as u64),
            ],
            vec![(long.as_str(), 1 << 32), ("p", u64::MAX)],
            many,
        ];
        for parts in cases {
            let bytes = encode_explain(&parts);
            let theirs = bincode::DefaultOptions::new().serialize(&parts).unwrap();
            assert_eq!(bytes, theirs);
            assert_eq!(decode_explain(&bytes), Some(parts));
        }
    }

    #[test]
    fn a_damaged_explain_record_is_refused() {
        let parts = [("param:a", 1), ("param:b", 1 << 40)];
        let bytes = encode_explain(&parts);
        for cut in 0..bytes.len() {
            assert_eq!(decode_explain(&bytes[..cut]), None, "torn at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode_explain(&longer), None);
        let swapped = encode_explain(&[("param:b", 2), ("param:a", 1)]);
        assert_eq!(decode_explain(&swapped), None, "out of name order");
        let twice = encode_explain(&[("param:a", 2), ("param:a", 1)]);
        assert_eq!(decode_explain(&twice), None, "a name twice");
        assert_eq!(decode_explain(&[255]), None);
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_decode_as_an_explain_record_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            if let Some(parts) = decode_explain(&bytes) {
                // Bincode reads a number in more bytes than it needs; this writes the shortest.
                proptest::prop_assert!(encode_explain(&parts).len() <= bytes.len());
            }
        }
    }

    #[test]
    fn recent_files_are_rehashed() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("in.txt");
        std::fs::write(&f, "x").unwrap();
        let now = stat(&f);
        let id = now.unwrap();
        let mut state = BuildState {
            written_ms: now_ms(),
            ..BuildState::default()
        };
        state.reads.insert(
            "in.txt".into(),
            FileStat {
                id,
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
            state.read_digest(
                "in.txt",
                Some(FileId {
                    size: id.size + 1,
                    ..id
                })
            ),
            None
        );
        for other in [
            FileId {
                ino: id.ino + 1,
                ..id
            },
            FileId {
                ctime_ns: id.ctime_ns + 1,
                ..id
            },
            FileId {
                dev: id.dev + 1,
                ..id
            },
        ] {
            assert_eq!(state.read_digest("in.txt", Some(other)), None, "{other:?}");
        }
    }

    #[test]
    fn a_file_recorded_gone_must_stay_gone_and_still_be_taken_away() {
        let dir = tempfile::tempdir().unwrap();
        let tmp = dir.path().join("tmp.txt");
        let name = tmp.to_string_lossy().into_owned();
        let rec = NodeRecord {
            key: [1; 32],
            digest: [7; 32],
            time_ms: 1,
            duration_ms: 5,
            written: vec![(
                name.clone(),
                FileId {
                    size: GONE,
                    ..FileId::default()
                },
            )],
            removed: Vec::new(),
        };
        let mut update = StateUpdate::default();
        update.nodes.insert("w".into(), rec.encode());
        let state = saved(dir.path(), &BuildState::default(), update, &[]);
        let consumed: std::collections::HashSet<String> = [name].into();
        assert!(state.fast_hit("w", &[1; 32], &consumed).is_some());
        assert!(
            state.fast_hit("w", &[1; 32], &none()).is_none(),
            "no node takes it away now: it must be restored"
        );
        std::fs::write(&tmp, "back").unwrap();
        assert!(
            state.fast_hit("w", &[1; 32], &consumed).is_none(),
            "it came back"
        );
    }

    #[test]
    fn a_removed_file_that_came_back_is_no_fast_hit() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.txt");
        let rec = NodeRecord {
            key: [1; 32],
            digest: [7; 32],
            time_ms: 1,
            duration_ms: 5,
            written: Vec::new(),
            removed: vec![junk.to_string_lossy().into_owned()],
        };
        let mut update = StateUpdate::default();
        update.nodes.insert("rm".into(), rec.encode());
        let state = saved(dir.path(), &BuildState::default(), update, &[]);
        assert!(state.fast_hit("rm", &[1; 32], &none()).is_some());
        std::fs::write(&junk, "again").unwrap();
        assert!(state.fast_hit("rm", &[1; 32], &none()).is_none());
    }
}
