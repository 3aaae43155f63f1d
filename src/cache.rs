//! The on-disk, content-addressed node cache (cacache under the cache directory).
//!
//! Each successful node result is one index entry, keyed by the node [`Key`], whose
//! content is the node's outputs as JSON and whose metadata is a [`Manifest`]: the output
//! digest (so a hit is decided and dependents' keys are computed without reading any
//! blob), the run time, and the files the node wrote with their digests and blobs (so a
//! deleted or edited output file can be restored). Blobs are verified on every read: a
//! corrupt or missing blob is reported as an error the caller treats as a miss.
//!
//! Small outputs (up to [`INLINE_MAX`] bytes of JSON, most nodes' results) are kept in
//! the manifest itself instead of a blob of their own ([`Manifest::inline`]): a result
//! then costs one file in the cache instead of two, and the directories blobs need.
//! Creating inodes is most of what storing a small result costs; the entry's integrity
//! is still that of the outputs' bytes and is checked on every read, as a blob's is.
//!
//! The index is read by this module itself (not through `cacache::index::find`), so that
//! a damaged bucket line, an unparseable manifest or a malformed integrity string is a
//! miss and never an error that could panic deeper in cacache.
//!
//! Recency for `pflow cache gc` (LRU): a lookup hit sets the modification time of the
//! entry's index bucket file to now (one `utimensat` call, no extra file, no write to
//! the index). Buckets are per key (named by the SHA-1 of the key), so a bucket's mtime
//! is the last time its entry was written or used. Maintenance preserves the mtime when
//! it rewrites a bucket.
//!
//! Locking: builds hold a shared `flock` on `<cache>/.pflow-lock` ([`Cache::lock_shared`]),
//! `pflow cache gc | verify | clear` an exclusive one ([`Cache::lock_exclusive`]). A process
//! that has to wait says so once on stderr and waits.
//!
//! Remote cache: a cache may carry a [`crate::remote::Remote`] ([`Cache::with_remote`]).
//! [`Cache::lookup_with_remote`] then asks it on a local miss and keeps what it downloads
//! as an ordinary local entry; [`Cache::push_remote`] uploads a stored result.

use crate::key::Key;
use crate::remote::{Fetch, Remote};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// cacache's index directory (buckets).
pub const INDEX_DIR: &str = "index-v5";
/// cacache's content directory (blobs, by integrity).
pub const CONTENT_DIR: &str = "content-v2";
/// cacache's directory for content being written.
pub const TMP_DIR: &str = "tmp";
/// The lock file builds share and maintenance holds exclusively.
pub const LOCK_FILE: &str = ".pflow-lock";
/// Append-only JSON lines, one per build run ([`Cache::record_build`]).
pub const STATS_FILE: &str = "build-stats.jsonl";
/// Where `--explain` preimages are kept.
pub const EXPLAIN_DIR: &str = "explain";
/// A number bumped whenever maintenance removes entries (see [`bump_generation`]).
pub const GENERATION_FILE: &str = "generation";
/// Per-workflow records of the last build (`crate::state`), keyed to the generation.
pub const STATE_DIR: &str = "state";
/// Outputs whose JSON is at most this long are kept inline in the index (see the module
/// docs); bigger ones get a blob.
pub const INLINE_MAX: usize = 1024;
/// The stats file is trimmed to its newer half when it grows past this.
const STATS_MAX_BYTES: u64 = 256 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// The path as the node wrote it (relative paths stay relative).
    pub path: String,
    /// BLAKE3 of the content.
    pub digest: String,
    /// Where the content is in the cache.
    pub integrity: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub node: String,
    pub output_digest: String,
    pub duration_ms: u64,
    #[serde(default)]
    pub files: Vec<FileRecord>,
    pub run_id: String,
    /// The outputs' JSON text, when it is small enough to live here rather than in a blob.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub integrity: cacache::Integrity,
    /// When the entry was written (unix ms).
    pub time_ms: u128,
}

/// A successful node result to store.
pub struct NewEntry<'a> {
    pub key: &'a Key,
    pub node: &'a str,
    pub outputs: &'a Value,
    pub output_digest: &'a blake3::Hash,
    pub files: &'a [PathBuf],
    pub duration_ms: u64,
    pub run_id: &'a str,
}

#[derive(Debug)]
pub struct CacheError(pub String);

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CacheError {}

fn err(what: &str, e: impl fmt::Display) -> CacheError {
    CacheError(format!("{what}: {e}"))
}

/// The state of a file a cached node wrote, compared with the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileState {
    Intact,
    Missing,
    Changed,
}

#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    /// Recorded durations of the entries this process found (key hex → ms), for the
    /// "time saved" figure of [`Cache::record_build`].
    seen: Arc<Mutex<crate::key::KeyMap<u64>>>,
    /// The shared remote cache, if one is configured.
    remote: Option<Arc<Remote>>,
}

/// What the remote cache contributed to a [`Cache::lookup_with_remote`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RemoteLookup {
    /// The entry returned was downloaded from the remote cache.
    pub hit: bool,
    /// The remote had an entry that could not be used, and why (for `--explain`).
    pub note: Option<String>,
}

pub fn index_key(key: &Key) -> String {
    format!("pflow/node/{}", key.hex())
}

/// BLAKE3 of a file's content (memory-mapped and multi-threaded for large files).
pub fn file_digest(path: &Path) -> std::io::Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    let len = std::fs::metadata(path)?.len();
    if len >= 1 << 20 {
        h.update_mmap_rayon(path)?;
    } else {
        h.update(&std::fs::read(path)?);
    }
    Ok(h.finalize())
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache {
            root: root.into(),
            seen: Arc::new(Mutex::new(Default::default())),
            remote: None,
        }
    }

    /// Use a remote cache on local misses (and for uploads when it writes).
    pub fn with_remote(mut self, remote: Option<Arc<Remote>>) -> Cache {
        self.remote = remote;
        self
    }

    pub fn remote(&self) -> Option<&Remote> {
        self.remote.as_deref()
    }

    /// The warnings the remote cache produced since the last call.
    pub fn take_remote_warnings(&self) -> Vec<String> {
        self.remote
            .as_ref()
            .map(|r| r.take_warnings())
            .unwrap_or_default()
    }

    /// [`Cache::lookup`], then, on a local miss (or a damaged local entry), the remote
    /// cache. A remote hit is verified, written to the local cache (keeping the time it
    /// was produced, so `"cache": "<duration>"` ages stay right) and returned as a local
    /// entry.
    pub fn lookup_with_remote(
        &self,
        key: &Key,
    ) -> (Result<Option<Entry>, CacheError>, RemoteLookup) {
        let local = self.lookup(key);
        let Some(remote) = self.remote.as_ref() else {
            return (local, RemoteLookup::default());
        };
        if matches!(local, Ok(Some(_))) || !remote.active() {
            return (local, RemoteLookup::default());
        }
        match remote.fetch(key) {
            Fetch::Hit(dl) => match self.store_download(key, *dl) {
                Ok(Some(entry)) => (
                    Ok(Some(entry)),
                    RemoteLookup {
                        hit: true,
                        note: None,
                    },
                ),
                Ok(None) | Err(_) => (local, RemoteLookup::default()),
            },
            Fetch::Miss => (local, RemoteLookup::default()),
            Fetch::Unusable(why) => (
                local,
                RemoteLookup {
                    hit: false,
                    note: Some(why),
                },
            ),
        }
    }

    /// Keep a verified remote result as a local entry, and read it back.
    fn store_download(
        &self,
        key: &Key,
        dl: crate::remote::Download,
    ) -> Result<Option<Entry>, CacheError> {
        let mut records = Vec::with_capacity(dl.files.len());
        for (f, bytes) in &dl.files {
            let integrity = cacache::write_hash_sync(&self.root, bytes)
                .map_err(|e| err("cannot write to the cache", e))?;
            records.push(FileRecord {
                path: f.path.clone(),
                digest: f.digest.clone(),
                integrity: integrity.to_string(),
                size: bytes.len() as u64,
            });
        }
        let manifest = Manifest {
            node: dl.entry.node.clone(),
            output_digest: dl.entry.output_digest.clone(),
            duration_ms: dl.entry.duration_ms,
            files: records,
            run_id: dl.entry.run_id.clone(),
            inline: None,
        };
        let (sri, manifest) = self.put_outputs(&dl.outputs, manifest)?;
        let meta = serde_json::to_value(&manifest).map_err(|e| err("cannot encode manifest", e))?;
        // The writer's clock may run ahead of ours: never record a time in the future.
        let time = (dl.entry.time_ms as u128).min(now_ms());
        cacache::index::insert(
            &self.root,
            &index_key(key),
            cacache::WriteOpts::new()
                .integrity(sri)
                .size(dl.outputs.len())
                .metadata(meta)
                .time(time),
        )
        .map_err(|e| err("cannot write the cache index", e))?;
        self.lookup(key)
    }

    /// Upload a stored result to the remote cache, when one is configured for writing.
    /// `outputs` are the values given to [`Cache::store`]; the files' content is read back
    /// from the local cache (verified). Best effort: problems end up as remote warnings.
    pub fn push_remote(&self, key: &Key, manifest: &Manifest, outputs: &Value) {
        let Some(remote) = self.remote.as_ref().filter(|r| r.writes() && r.active()) else {
            return;
        };
        let Ok(bytes) = serde_json::to_vec(outputs) else {
            return;
        };
        let mut files = Vec::with_capacity(manifest.files.len());
        for rec in &manifest.files {
            let Ok(sri) = rec.integrity.parse::<cacache::Integrity>() else {
                return;
            };
            if content_path(&self.root, &sri).is_none() {
                return;
            }
            match cacache::read_hash_sync(&self.root, &sri) {
                Ok(b) => files.push(b),
                Err(_) => return,
            }
        }
        remote.upload(key, manifest, bytes, files);
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index entry for `key`, if there is a readable one.
    ///
    /// The newest intact line for the key wins (a torn or damaged newer line falls back to
    /// an older intact one: keys are content-addressed, so any intact entry is right).
    /// When the bucket only holds damaged lines, the result is an error, which callers
    /// treat as a miss ("corrupt entry"). A hit refreshes the entry's recency.
    pub fn lookup(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        let found = self.find(key)?;
        if let Some((entry, bucket)) = &found {
            touch(bucket);
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(*key, entry.manifest.duration_ms);
            }
        }
        Ok(found.map(|(entry, _)| entry))
    }

    /// The entry for `key`, if there is a usable one, without counting it as a use
    /// (no recency mark, no "time saved").
    pub fn peek(&self, key: &Key) -> Option<Entry> {
        self.find(key).ok().flatten().map(|(entry, _)| entry)
    }

    /// The newest intact entry for `key`, and its bucket.
    fn find(&self, key: &Key) -> Result<Option<(Entry, PathBuf)>, CacheError> {
        let ikey = index_key(key);
        let bucket = bucket_path(&self.root, &ikey);
        let lines = match read_bucket(&bucket) {
            Ok(lines) => lines,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(err("cannot read the cache index", e)),
        };
        let mut damaged = false;
        for line in lines.iter().rev() {
            match line {
                BucketLine::Corrupt { .. } => damaged = true,
                BucketLine::Valid { record, .. } if record.key == ikey => {
                    if record.integrity.is_none() {
                        // A removal tombstone.
                        return Ok(None);
                    }
                    match entry_of(&self.root, record) {
                        Some(entry) => return Ok(Some((entry, bucket))),
                        None => damaged = true,
                    }
                }
                BucketLine::Valid { .. } => {}
            }
        }
        if damaged {
            Err(CacheError("corrupt cache index entry".into()))
        } else {
            Ok(None)
        }
    }

    /// Are the entry's outputs at hand (inline, or a blob that exists)? Cheap: the blob
    /// is verified when its value is read.
    pub fn has_outputs(&self, entry: &Entry) -> bool {
        entry.manifest.inline.is_some() || cacache::exists_sync(&self.root, &entry.integrity)
    }

    /// Read and verify a cached node's outputs.
    pub fn load_outputs(&self, entry: &Entry) -> Result<Value, CacheError> {
        let bytes = match &entry.manifest.inline {
            Some(text) => {
                if !inline_intact(&entry.integrity, text) {
                    return Err(CacheError("cached outputs are corrupt".into()));
                }
                std::borrow::Cow::Borrowed(text.as_bytes())
            }
            None => {
                if content_path(&self.root, &entry.integrity).is_none() {
                    return Err(CacheError("corrupt cache entry (bad integrity)".into()));
                }
                let bytes = cacache::read_hash_sync(&self.root, &entry.integrity)
                    .map_err(|e| err("cached outputs are missing or corrupt", e))?;
                std::borrow::Cow::Owned(bytes)
            }
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| err("cached outputs are not JSON", e))?;
        let digest = crate::canonical::output_digest(&value).to_hex().to_string();
        if digest != entry.manifest.output_digest {
            return Err(CacheError(
                "cached outputs do not match their recorded digest".into(),
            ));
        }
        Ok(value)
    }

    /// Store a successful result. Content is written before the index entry, so a crash
    /// in between leaves at worst an unreferenced blob, never an entry without content.
    pub fn store(&self, new: NewEntry<'_>) -> Result<Entry, CacheError> {
        let NewEntry {
            key,
            node,
            outputs,
            output_digest,
            files,
            duration_ms,
            run_id,
        } = new;
        let mut records = Vec::with_capacity(files.len());
        for path in files {
            let bytes = std::fs::read(path)
                .map_err(|e| err(&format!("cannot read written file '{}'", path.display()), e))?;
            let digest = blake3::hash(&bytes).to_hex().to_string();
            let integrity = cacache::write_hash_sync(&self.root, &bytes)
                .map_err(|e| err("cannot write to the cache", e))?;
            records.push(FileRecord {
                path: path.to_string_lossy().into_owned(),
                digest,
                integrity: integrity.to_string(),
                size: bytes.len() as u64,
            });
        }
        let manifest = Manifest {
            node: node.to_string(),
            output_digest: output_digest.to_hex().to_string(),
            duration_ms,
            files: records,
            run_id: run_id.to_string(),
            inline: None,
        };
        let bytes = serde_json::to_vec(outputs).map_err(|e| err("cannot encode outputs", e))?;
        let (sri, manifest) = self.put_outputs(&bytes, manifest)?;
        let meta = serde_json::to_value(&manifest).map_err(|e| err("cannot encode manifest", e))?;
        let time_ms = now_ms();
        cacache::index::insert(
            &self.root,
            &index_key(key),
            cacache::WriteOpts::new()
                .integrity(sri.clone())
                .size(bytes.len())
                .time(time_ms)
                .metadata(meta),
        )
        .map_err(|e| err("cannot write the cache index", e))?;
        Ok(Entry {
            manifest,
            integrity: sri,
            time_ms,
        })
    }

    /// Keep the outputs' bytes: inline in the manifest when small, else as a blob.
    /// Returns their integrity and the manifest that goes with it.
    fn put_outputs(
        &self,
        bytes: &[u8],
        mut manifest: Manifest,
    ) -> Result<(cacache::Integrity, Manifest), CacheError> {
        if bytes.len() <= INLINE_MAX {
            if let Ok(text) = std::str::from_utf8(bytes) {
                manifest.inline = Some(text.to_string());
                return Ok((cacache::Integrity::from(bytes), manifest));
            }
        }
        let sri = cacache::write_hash_sync(&self.root, bytes)
            .map_err(|e| err("cannot write to the cache", e))?;
        Ok((sri, manifest))
    }

    pub fn file_state(&self, rec: &FileRecord) -> FileState {
        let path = Path::new(&rec.path);
        match std::fs::metadata(path) {
            Err(_) => FileState::Missing,
            Ok(m) if m.len() != rec.size => FileState::Changed,
            Ok(_) => match file_digest(path) {
                Ok(d) if d.to_hex().as_str() == rec.digest => FileState::Intact,
                _ => FileState::Changed,
            },
        }
    }

    /// Put a file a node wrote back in place from the cache (atomically).
    pub fn restore_file(&self, rec: &FileRecord) -> Result<(), CacheError> {
        let sri: cacache::Integrity = rec
            .integrity
            .parse()
            .map_err(|e| err("corrupt file record", e))?;
        if content_path(&self.root, &sri).is_none() {
            return Err(CacheError(format!(
                "corrupt file record for '{}'",
                rec.path
            )));
        }
        let bytes = cacache::read_hash_sync(&self.root, &sri).map_err(|e| {
            err(
                &format!("cached copy of '{}' is missing or corrupt", rec.path),
                e,
            )
        })?;
        if blake3::hash(&bytes).to_hex().as_str() != rec.digest {
            return Err(CacheError(format!(
                "cached copy of '{}' does not match its digest",
                rec.path
            )));
        }
        crate::nodes::write_atomic(Path::new(&rec.path), &bytes)
            .map_err(|e| err(&format!("cannot restore '{}'", rec.path), e))
    }

    /// Note a hit decided without a lookup (the build state's fast path), with the
    /// recorded run time of its entry, for the "time saved" figure.
    pub fn note_hit(&self, key: &Key, duration_ms: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(*key, duration_ms);
        }
    }

    /// Hold a shared lock on the cache directory for the duration of a build, so that
    /// `pflow cache gc | verify | clear` (which take it exclusively) never run under it.
    /// Waits, saying so once on stderr, while maintenance holds the cache.
    pub fn lock_shared(&self) -> Result<CacheLock, CacheError> {
        self.lock(false)
    }

    /// The exclusive lock maintenance commands hold. Waits, saying so once on stderr,
    /// while builds (or other maintenance) hold the cache.
    pub fn lock_exclusive(&self) -> Result<CacheLock, CacheError> {
        self.lock(true)
    }

    fn lock(&self, exclusive: bool) -> Result<CacheLock, CacheError> {
        use fs4::fs_std::FileExt;
        std::fs::create_dir_all(&self.root).map_err(|e| {
            err(
                &format!("cannot create the cache directory {}", self.root.display()),
                e,
            )
        })?;
        let path = self.root.join(LOCK_FILE);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| err(&format!("cannot open the lock {}", path.display()), e))?;
        let got = if exclusive {
            FileExt::try_lock_exclusive(&file)
        } else {
            FileExt::try_lock_shared(&file)
        }
        .map_err(|e| err(&format!("cannot lock {}", path.display()), e))?;
        if !got {
            crate::report::err_line(&if exclusive {
                format!(
                    "waiting for other pflow processes using the cache {} to finish…",
                    self.root.display()
                )
            } else {
                format!(
                    "waiting for cache maintenance on {} to finish…",
                    self.root.display()
                )
            });
            if exclusive {
                FileExt::lock_exclusive(&file)
            } else {
                FileExt::lock_shared(&file)
            }
            .map_err(|e| err(&format!("cannot lock {}", path.display()), e))?;
        }
        Ok(CacheLock { _file: file })
    }

    /// Append this build run's figures to the stats file (`pflow cache stats` sums them).
    /// Best effort: a failure to record is ignored.
    pub fn record_build(
        &self,
        v: &crate::validate::Validated,
        outcome: &crate::executor::Outcome,
        run_id: &str,
    ) {
        let seen = self
            .seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default();
        let mut stats = BuildStats::from_outcome(v, outcome, run_id, &seen);
        if let Some(remote) = &self.remote {
            let c = remote.take_counts();
            stats.remote_hits = c.hits;
            stats.remote_misses = c.misses;
            stats.remote_bytes_down = c.bytes_down;
            stats.remote_bytes_up = c.bytes_up;
            stats.remote_uploads = c.uploads;
            stats.remote_errors = c.errors;
        }
        let _ = self.append_stats(&stats);
    }

    /// Append one record to the stats file, trimming it to its newer half when it has
    /// grown past a bound. Writers serialize on an exclusive lock of the file itself.
    pub fn append_stats(&self, stats: &BuildStats) -> std::io::Result<()> {
        use fs4::fs_std::FileExt;
        std::fs::create_dir_all(&self.root)?;
        let mut line = serde_json::to_vec(stats)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(self.root.join(STATS_FILE))?;
        FileExt::lock_exclusive(&file)?;
        let len = file.seek(SeekFrom::End(0))?;
        if len + line.len() as u64 > STATS_MAX_BYTES {
            let mut all = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut all)?;
            let half = all.len() / 2;
            let cut = all[half..]
                .iter()
                .position(|b| *b == b'\n')
                .map(|p| half + p + 1)
                .unwrap_or(all.len());
            let mut kept = all[cut..].to_vec();
            kept.extend_from_slice(&line);
            file.set_len(0)?;
            file.seek(SeekFrom::Start(0))?;
            file.write_all(&kept)?;
        } else {
            // A torn last line (a killed writer) must not swallow this one.
            if len > 0 {
                let mut last = [0u8; 1];
                file.seek(SeekFrom::End(-1))?;
                file.read_exact(&mut last)?;
                if last[0] != b'\n' {
                    file.write_all(b"\n")?;
                }
            }
            file.write_all(&line)?;
        }
        file.flush()?;
        let _ = FileExt::unlock(&file);
        Ok(())
    }

    /// The build records in the stats file, oldest first (damaged lines are skipped).
    pub fn recorded_builds(&self) -> Vec<BuildStats> {
        std::fs::read(self.root.join(STATS_FILE))
            .map(|bytes| {
                bytes
                    .split(|b| *b == b'\n')
                    .filter_map(|l| serde_json::from_slice(l).ok())
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// A held lock on the cache directory; released when dropped (or when the process dies).
#[derive(Debug)]
pub struct CacheLock {
    _file: File,
}

/// The figures of one build run, as appended to the stats file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildStats {
    pub run_id: String,
    /// When the run ended (unix ms).
    pub time_ms: u64,
    pub nodes: u64,
    /// Nodes reused from the cache (`cached` or `restored`).
    pub hits: u64,
    /// Nodes that ran.
    pub misses: u64,
    /// Hits with at least one dependency that ran: reused because the upstream's output
    /// did not change.
    pub early_cutoffs: u64,
    /// Hits for which written files had to be restored.
    pub restored: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Sum of the recorded run times of the hits.
    pub time_saved_ms: u64,
    pub duration_ms: u64,
    pub success: bool,
    /// Remote cache figures (zero when no remote cache was used): entries downloaded,
    /// lookups that found nothing usable, bytes moved, entries uploaded, failed requests
    /// and corrupt downloads.
    #[serde(default)]
    pub remote_hits: u64,
    #[serde(default)]
    pub remote_misses: u64,
    #[serde(default)]
    pub remote_bytes_down: u64,
    #[serde(default)]
    pub remote_bytes_up: u64,
    #[serde(default)]
    pub remote_uploads: u64,
    #[serde(default)]
    pub remote_errors: u64,
}

impl BuildStats {
    /// `seen`: the recorded duration of each entry found in the cache (key → ms).
    pub fn from_outcome(
        v: &crate::validate::Validated,
        outcome: &crate::executor::Outcome,
        run_id: &str,
        seen: &crate::key::KeyMap<u64>,
    ) -> BuildStats {
        use crate::executor::Status;
        // `outcome.nodes[i]` is node i's report (see `Outcome::nodes`).
        let ran = |j: usize| outcome.nodes.get(j).map(|r| r.status) == Some(Status::Ran);
        let mut s = BuildStats {
            run_id: run_id.to_string(),
            time_ms: now_ms() as u64,
            nodes: outcome.nodes.len() as u64,
            duration_ms: outcome.duration.as_millis() as u64,
            success: outcome.success,
            ..BuildStats::default()
        };
        for (i, r) in outcome.nodes.iter().enumerate() {
            match r.status {
                // Reused from this command's memory (a repair attempt), not the cache.
                Status::Cached | Status::Restored if r.reason == "already ran in this command" => {}
                Status::Cached | Status::Restored => {
                    s.hits += 1;
                    if r.status == Status::Restored {
                        s.restored += 1;
                    }
                    if let Some(ms) = r.key.and_then(|k| seen.get(&k)) {
                        s.time_saved_ms += ms;
                    }
                    let upstream_ran =
                        i < v.graph.len() && v.graph.dependencies(i).iter().any(|(j, _)| ran(*j));
                    if upstream_ran {
                        s.early_cutoffs += 1;
                    }
                }
                Status::Ran => s.misses += 1,
                Status::Failed => s.failed += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        s
    }
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
    crate::nodes::write_atomic(&root.join(GENERATION_FILE), next.to_string().as_bytes())
}

/// Now, in unix milliseconds (the unit of cacache's entry times).
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
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
    let h = sha1_hex(key.as_bytes());
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

/// Do inline outputs match the integrity recorded for them? (An integrity without any
/// hash matches nothing; ssri's own check would index into its empty list.)
pub fn inline_intact(sri: &cacache::Integrity, text: &str) -> bool {
    !sri.hashes.is_empty() && sri.check(text).is_ok()
}

/// The entry a record describes, if it is usable (integrity well-formed, manifest readable).
fn entry_of(root: &Path, record: &IndexRecord) -> Option<Entry> {
    let integrity: cacache::Integrity = record.integrity.as_ref()?.parse().ok()?;
    content_path(root, &integrity)?;
    let manifest: Manifest = serde_json::from_value(record.metadata.clone()).ok()?;
    blake3::Hash::from_hex(&manifest.output_digest).ok()?;
    for f in &manifest.files {
        let sri: cacache::Integrity = f.integrity.parse().ok()?;
        content_path(root, &sri)?;
    }
    Some(Entry {
        manifest,
        integrity,
        time_ms: record.time,
    })
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

/// SHA-1 in hex (only to find cacache's bucket of a key; not used for integrity).
fn sha1_hex(data: &[u8]) -> String {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bits = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bits.to_be_bytes());
    for chunk in msg.chunks(64) {
        let mut w = [0u32; 80];
        for i in 0..16 {
            w[i] = u32::from_be_bytes([
                chunk[4 * i],
                chunk[4 * i + 1],
                chunk[4 * i + 2],
                chunk[4 * i + 3],
            ]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let (mut a, mut b, mut c, mut d, mut e) = (h[0], h[1], h[2], h[3], h[4]);
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    h.iter().map(|x| format!("{x:08x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha1_known_vectors() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
        assert_eq!(sha1_hex(b""), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            sha1_hex(&[b'a'; 1000]),
            "291e9a6c66994949b57ba5e650361e98fc36b1ba"
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
