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

use super::delta::{Keep, Overlay};
use super::table::{Reader, Table};
use super::Entry;
use crate::fsutil::{stat, FileId};
use crate::key::{Preimage, Short};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How many bytes a [`FileId`] takes in a record.
const ID_BYTES: usize = 8 + 16 + 16 + 8 + 8;

/// The size recorded for a written file that was gone when the record was made.
pub const GONE: u64 = u64::MAX;

/// How long a record may stand in for index lookups.
pub const MAX_AGE: Duration = Duration::from_secs(3600);

const FORMAT: u32 = 11;
const EXPLAIN_FORMAT: u32 = 6;
/// Bytes before a build record's reads: format, generation, written_ms and tag.
const HEADER_LEN: usize = 4 + 8 + 8 + 8;

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

/// The record of a workflow's last build, as loaded: its base and the delta over it
/// (see [`super::delta`]), the delta's time and reads being the last save's.
#[derive(Debug, Default)]
pub struct BuildState {
    pub written_ms: u64,
    pub reads: HashMap<String, FileStat>,
    nodes: Overlay,
}

/// One layer of a build record as decoded: its header, reads and rows.
struct Layer {
    generation: u64,
    written_ms: u64,
    tag: u64,
    reads: HashMap<String, FileStat>,
    nodes: Table,
}

impl Layer {
    fn decode(bytes: crate::fsutil::Bytes) -> Option<Layer> {
        let mut r = Reader::new(&bytes, 0);
        if r.u32()? != FORMAT {
            return None;
        }
        let (generation, written_ms, tag) = (r.u64()?, r.u64()?, r.u64()?);
        let reads_len = r.u32()? as usize;
        let reads = bincode::deserialize(r.take(reads_len)?).ok()?;
        let start = r.offset();
        Some(Layer {
            generation,
            written_ms,
            tag,
            reads,
            nodes: Table::parse(bytes, start)?,
        })
    }

    /// The generation, written_ms and tag at the start of the file at `path`.
    fn header(path: &Path) -> Option<(u64, u64, u64)> {
        use std::io::Read;
        let mut head = [0u8; HEADER_LEN];
        std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut head))
            .ok()?;
        let mut r = Reader::new(&head, 0);
        if r.u32()? != FORMAT {
            return None;
        }
        Some((r.u64()?, r.u64()?, r.u64()?))
    }
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

fn delta_path(cache_root: &Path, workflow_name: &str) -> PathBuf {
    record_path(cache_root, workflow_name, Record::BuildDelta)
}

impl BuildState {
    /// The usable state of this workflow, or an empty one.
    pub fn load(cache_root: &Path, workflow_name: &str) -> BuildState {
        let layer = |path: PathBuf| {
            crate::fsutil::read_bytes_sparsely(&path)
                .ok()
                .and_then(Layer::decode)
        };
        let generation = generation(cache_root);
        let Some(base) =
            layer(path_for(cache_root, workflow_name)).filter(|b| b.generation == generation)
        else {
            return BuildState::default();
        };
        let delta = layer(delta_path(cache_root, workflow_name))
            .filter(|d| d.generation == generation && d.tag == base.tag);
        let (written_ms, reads, delta) = match delta {
            Some(d) => (d.written_ms, d.reads, d.nodes),
            None => (base.written_ms, base.reads, Table::default()),
        };
        if now_ms().saturating_sub(written_ms) >= MAX_AGE.as_millis() as u64 {
            return BuildState::default();
        }
        BuildState {
            written_ms,
            reads,
            nodes: Overlay::new(base.nodes, base.tag, delta),
        }
    }

    /// The generation and `written_ms` of the record on disk (the first bytes of its
    /// base and delta only), whatever its age: what tells one save of it from another.
    pub fn header(cache_root: &Path, workflow_name: &str) -> Option<(u64, u64)> {
        let (generation, written_ms, tag) = Layer::header(&path_for(cache_root, workflow_name))?;
        match Layer::header(&delta_path(cache_root, workflow_name)) {
            Some((g, w, t)) if g == generation && t == tag => Some((generation, w)),
            _ => Some((generation, written_ms)),
        }
    }

    /// Write the record of this build: `update`'s node records replace or join the
    /// loaded ones, a loaded record survives as `keep` says, and
    /// the reads are `update`'s. A save of a few records writes only the delta.
    pub fn save(
        &self,
        cache_root: &Path,
        workflow_name: &str,
        update: &StateUpdate,
        keep: Keep<'_>,
    ) {
        let Ok(reads) = bincode::serialize(&update.reads) else {
            return;
        };
        let files = (
            path_for(cache_root, workflow_name),
            delta_path(cache_root, workflow_name),
        );
        // Best effort, as every record: without it the next build does more work.
        let _ = self
            .nodes
            .save(&files.0, &files.1, &update.nodes, keep, |w, tag| {
                w.write_all(&FORMAT.to_le_bytes())?;
                w.write_all(&generation(cache_root).to_le_bytes())?;
                w.write_all(&now_ms().to_le_bytes())?;
                w.write_all(&tag.to_le_bytes())?;
                w.write_all(&(reads.len() as u32).to_le_bytes())?;
                w.write_all(&reads)
            });
    }

    /// How many node records there are.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Ready the node records for `lookups` to come (see [`Table::hash_ahead`]).
    ///
    /// [`Table::hash_ahead`]: crate::cache::table::Table::hash_ahead
    pub fn hash_ahead(&self, lookups: usize) {
        self.nodes.hash_ahead(lookups);
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
/// `digest` is the entry's output digest, which the caller holds as bytes (parsing the
/// manifest's hex again was a few ms of a 10,000-node build).
pub fn record_of(key: &[u8; 32], digest: &blake3::Hash, entry: &Entry) -> NodeRecord {
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
    NodeRecord {
        key: *key,
        digest: *digest.as_bytes(),
        time_ms: entry.time_ms as u64,
        duration_ms: entry.manifest.duration_ms,
        written,
        removed: entry.manifest.removed.clone(),
    }
}

/// `--explain` records: each node's key preimage from the last build that decided it,
/// with digests shortened to 64 bits (enough to tell that a component changed). Read only
/// when a node misses, decoded one node at a time, borrowing its names; a save encodes
/// only the nodes that were decided anew (a node that was a fast hit has the same key,
/// hence the same preimage, as recorded).
#[derive(Debug, Default)]
pub struct ExplainRecords {
    table: Overlay,
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
        // A layer: the format, the base's tag, then the table.
        let layer = |path: PathBuf| {
            let bytes = crate::fsutil::read_bytes_sparsely(&path).ok()?;
            let mut r = Reader::new(&bytes, 0);
            if r.u32()? != EXPLAIN_FORMAT {
                return None;
            }
            let tag = r.u64()?;
            Some((tag, Table::parse(bytes, 12)?))
        };
        let Some((tag, base)) = layer(explain_path(cache_root, workflow_name)) else {
            return ExplainRecords::default();
        };
        let delta = layer(explain_delta_path(cache_root, workflow_name))
            .filter(|(t, _)| *t == tag)
            .map(|(_, d)| d)
            .unwrap_or_default();
        ExplainRecords {
            table: Overlay::new(base, tag, delta),
        }
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
    /// joining them; an old record survives as `keep` says. A
    /// save of a few records writes only the delta.
    pub fn save(
        &self,
        cache_root: &Path,
        workflow_name: &str,
        new: &BTreeMap<String, Vec<u8>>,
        keep: Keep<'_>,
    ) {
        let files = (
            explain_path(cache_root, workflow_name),
            explain_delta_path(cache_root, workflow_name),
        );
        let _ = self.table.save(&files.0, &files.1, new, keep, |w, tag| {
            w.write_all(&EXPLAIN_FORMAT.to_le_bytes())?;
            w.write_all(&tag.to_le_bytes())
        });
    }
}

fn explain_path(cache_root: &Path, workflow_name: &str) -> PathBuf {
    record_path(cache_root, workflow_name, Record::Explain)
}

fn explain_delta_path(cache_root: &Path, workflow_name: &str) -> PathBuf {
    record_path(cache_root, workflow_name, Record::ExplainDelta)
}

/// Remove the records of every workflow whose records no build has written for
/// `older_than` (as of `now`): the workflows of projects no longer built, moved, or
/// renamed. Their newest file tells when one was last written, so a workflow's records
/// go together or not at all. Maintenance only, under the cache's exclusive lock.
/// Returns how many workflows' records went and their bytes.
pub fn remove_unbuilt(
    cache_root: &Path,
    older_than: Duration,
    now: std::time::SystemTime,
) -> (usize, u64) {
    let Ok(entries) = std::fs::read_dir(cache_root.join(super::layout::RECORDS_DIR)) else {
        return (0, 0);
    };
    // Each workflow's files: path, size and when it was written.
    let mut owners: HashMap<String, Vec<(PathBuf, u64, std::time::SystemTime)>> = HashMap::new();
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(owner) = name.to_str().and_then(super::layout::record_owner) else {
            continue;
        };
        let Ok(meta) = e.metadata() else { continue };
        let written = meta.modified().unwrap_or(now);
        let files = owners.entry(owner.to_string()).or_default();
        files.push((e.path(), meta.len(), written));
    }
    let (mut removed, mut bytes) = (0, 0);
    for files in owners.into_values() {
        let newest = files.iter().map(|f| f.2).max().unwrap_or(now);
        if !now.duration_since(newest).is_ok_and(|age| age > older_than) {
            continue;
        }
        let mut any = false;
        for (path, size, _) in files {
            if std::fs::remove_file(&path).is_ok() {
                bytes += size;
                any = true;
            }
        }
        removed += usize::from(any);
    }
    (removed, bytes)
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
        let keep = |id: &[u8]| keep.iter().any(|k| k.as_bytes() == id);
        base.save(dir, "wf.json", &update, Keep::If(&keep));
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

    /// A state of `n` nodes "n0".."n{n-1}", each with key [1; 32], saved whole.
    fn many(dir: &Path, written: &Path, n: usize) -> BuildState {
        let mut update = StateUpdate::default();
        for i in 0..n {
            update
                .nodes
                .insert(format!("n{i}"), record(written, [1; 32]));
        }
        saved(dir, &BuildState::default(), update, &[])
    }

    #[test]
    fn a_save_of_a_few_records_writes_a_delta_that_loads_over_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("w.txt");
        std::fs::write(&written, "w").unwrap();
        let state = many(dir.path(), &written, 100);
        let base = std::fs::read(path_for(dir.path(), "wf.json")).unwrap();
        let mut update = StateUpdate::default();
        update.nodes.insert("n5".into(), record(&written, [2; 32]));
        update
            .nodes
            .insert("extra".into(), record(&written, [3; 32]));
        std::thread::sleep(Duration::from_millis(2));
        state.save(dir.path(), "wf.json", &update, Keep::All);
        assert_eq!(
            std::fs::read(path_for(dir.path(), "wf.json")).unwrap(),
            base,
            "the base is left as it was"
        );
        assert!(delta_path(dir.path(), "wf.json").exists());
        let back = BuildState::load(dir.path(), "wf.json");
        assert!(
            back.fast_hit("n5", &[2; 32], &none()).is_some(),
            "the delta's record"
        );
        assert!(
            back.fast_hit("n5", &[1; 32], &none()).is_none(),
            "the base's record of n5 is hidden"
        );
        assert!(
            back.fast_hit("n6", &[1; 32], &none()).is_some(),
            "the base's"
        );
        assert!(back.fast_hit("extra", &[3; 32], &none()).is_some());
        assert!(back.written_ms > state.written_ms);
        assert_eq!(
            BuildState::header(dir.path(), "wf.json"),
            Some((generation(dir.path()), back.written_ms)),
            "the header is the last save's"
        );

        // Dropping records (or a delta grown too big) rewrites the base, and the delta
        // goes.
        let mut update = StateUpdate::default();
        update.nodes.insert("n7".into(), record(&written, [4; 32]));
        back.save(
            dir.path(),
            "wf.json",
            &update,
            Keep::If(&|id: &[u8]| id != b"n8"),
        );
        assert!(!delta_path(dir.path(), "wf.json").exists());
        let whole = BuildState::load(dir.path(), "wf.json");
        assert!(
            whole.fast_hit("n5", &[2; 32], &none()).is_some(),
            "merged into the base"
        );
        assert!(whole.fast_hit("n7", &[4; 32], &none()).is_some());
        assert!(whole.fast_hit("n8", &[1; 32], &none()).is_none(), "dropped");
        assert_eq!(whole.len(), 100);
    }

    #[test]
    fn a_delta_left_over_a_base_rewritten_since_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let written = dir.path().join("w.txt");
        std::fs::write(&written, "w").unwrap();
        let state = many(dir.path(), &written, 100);
        let mut update = StateUpdate::default();
        update.nodes.insert("n5".into(), record(&written, [2; 32]));
        state.save(dir.path(), "wf.json", &update, Keep::All);
        let delta = std::fs::read(delta_path(dir.path(), "wf.json")).unwrap();
        // Another build rewrites the base whole (n5 back at key 1); as if a crash came
        // before the delta's removal, the old delta is put back.
        let other = many(dir.path(), &written, 100);
        std::fs::write(delta_path(dir.path(), "wf.json"), &delta).unwrap();
        let back = BuildState::load(dir.path(), "wf.json");
        assert!(back.fast_hit("n5", &[1; 32], &none()).is_some());
        assert!(back.fast_hit("n5", &[2; 32], &none()).is_none());
        assert_eq!(back.written_ms, other.written_ms);
        assert_eq!(
            BuildState::header(dir.path(), "wf.json"),
            Some((generation(dir.path()), other.written_ms))
        );
        // A torn delta is no delta either.
        state.save(dir.path(), "wf.json", &update, Keep::All);
        let fresh = std::fs::read(delta_path(dir.path(), "wf.json")).unwrap();
        std::fs::write(delta_path(dir.path(), "wf.json"), &fresh[..fresh.len() - 3]).unwrap();
        assert!(BuildState::load(dir.path(), "wf.json")
            .fast_hit("n5", &[1; 32], &none())
            .is_some());
    }

    #[test]
    fn explain_records_of_a_few_nodes_go_to_the_delta_over_their_base() {
        let dir = tempfile::tempdir().unwrap();
        let pre = |d: u64| encode_explain(&[("param:x", d)]);
        let all: BTreeMap<String, Vec<u8>> = (0..100).map(|i| (format!("n{i}"), pre(1))).collect();
        ExplainRecords::default().save(dir.path(), "wf.json", &all, Keep::All);
        let base = std::fs::read(explain_path(dir.path(), "wf.json")).unwrap();
        let loaded = ExplainRecords::load(dir.path(), "wf.json");
        let few: BTreeMap<String, Vec<u8>> = [("n3".to_string(), pre(7))].into();
        loaded.save(dir.path(), "wf.json", &few, Keep::All);
        assert_eq!(
            std::fs::read(explain_path(dir.path(), "wf.json")).unwrap(),
            base
        );
        let back = ExplainRecords::load(dir.path(), "wf.json");
        assert_eq!(
            decode_explain(back.raw("n3").unwrap()),
            Some(vec![("param:x", 7)])
        );
        assert_eq!(
            decode_explain(back.raw("n4").unwrap()),
            Some(vec![("param:x", 1)])
        );
        // A base written whole since: the delta does not apply to it.
        let delta = std::fs::read(explain_delta_path(dir.path(), "wf.json")).unwrap();
        ExplainRecords::default().save(dir.path(), "wf.json", &all, Keep::All);
        std::fs::write(explain_delta_path(dir.path(), "wf.json"), &delta).unwrap();
        let back = ExplainRecords::load(dir.path(), "wf.json");
        assert_eq!(
            decode_explain(back.raw("n3").unwrap()),
            Some(vec![("param:x", 1)])
        );
    }

    #[test]
    fn explain_records_merge_by_node() {
        let dir = tempfile::tempdir().unwrap();
        let pre = |d: u64| encode_explain(&[("param:x", d)]);
        let hex = |d: &str| -> Preimage { [("param:x".to_string(), format!("{d:0>16}"))].into() };
        let first: BTreeMap<String, Vec<u8>> =
            [("a".to_string(), pre(1)), ("b".to_string(), pre(1))].into();
        ExplainRecords::default().save(dir.path(), "wf.json", &first, Keep::All);
        let loaded = ExplainRecords::load(dir.path(), "wf.json");
        assert_eq!(loaded.get("a"), Some(hex("1")));
        let second: BTreeMap<String, Vec<u8>> = [("b".to_string(), pre(0x2f))].into();
        loaded.save(
            dir.path(),
            "wf.json",
            &second,
            Keep::If(&|id: &[u8]| id == b"a"),
        );
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
