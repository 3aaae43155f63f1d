//! The on-disk, content-addressed node cache under the cache directory.
//!
//! Each successful node result is one entry, keyed by the node [`Key`]: a [`Manifest`]
//! with the output digest (so a hit is decided and dependents' keys are computed without
//! reading any blob), the run time, the files the node wrote with their digests and
//! blobs (so a deleted or edited output file can be restored), and the outputs' JSON
//! when it is small. Entries are records appended to a few segment files ([`pack`]):
//! storing a result creates no file of its own. Outputs over [`INLINE_MAX`] bytes and
//! the content of written files are cacache blobs (`content-v2/`), named by their
//! integrity. Everything is verified on every read: a damaged record, a corrupt or
//! missing blob is reported as an error the caller treats as a miss.
//!
//! Caches written by older versions kept one cacache index bucket per entry
//! (`index-v5/`). Those entries are no longer read (a miss, so their nodes run once
//! more); `pflow cache gc` and `clear` remove them.
//!
//! Recency for `pflow cache gc` (LRU): a lookup hit appends a small "use" record for
//! the key to this process's segment; an entry's recency is its newest use or its
//! write.
//!
//! Storage knows nothing of workflows, the executor or the terminal: it takes and gives
//! plain records, and reports problems as values for the caller to print. The pieces:
//!
//! - this module: the local node cache ([`Cache`]);
//! - [`layout`]: every path inside a cache directory, and cacache's content paths;
//! - [`pack`]: the segment files entries are appended to, and the index of them
//!   (looked up through [`key_slots`] once a build looks up many keys, a map
//!   [`index_map`] keeps for later builds);
//! - [`lock`]: the lock builds share and maintenance holds alone;
//! - [`records`] (with [`table`]): what the last build of a workflow saw, for the fast
//!   path and `--explain`;
//! - [`noop`]: what a build that did nothing needs to say so again without parsing;
//! - [`stats`]: one line of figures per build run;
//! - [`remote`]: the shared remote cache client, and [`remote_policy`], when it gives up;
//! - [`layered`]: local and remote composed, a hit telling where it came from.

pub mod checksum;
pub mod delta;
pub mod index_map;
pub mod intents;
pub mod kept_text;
pub mod key_slots;
pub mod layered;
pub mod layout;
pub mod lock;
pub mod logs;
pub mod node_forms;
pub mod noop;
pub mod pack;
pub mod records;
pub mod remote;
pub mod remote_policy;
pub mod spare;
pub mod stats;
pub mod table;

use crate::fsutil::file_digest;
use crate::key::Key;
use pack::{Got, Kind, Packs};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

/// Outputs whose JSON is at most this long are kept inline in the entry's record (see
/// the module docs); bigger ones get a blob.
pub const INLINE_MAX: usize = 64 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FileRecord {
    /// The path as the node wrote it (relative paths stay relative).
    pub path: String,
    /// BLAKE3 of the content; for a link, [`crate::fsutil::link_digest`] of its target.
    pub digest: String,
    /// Where the content is in the cache.
    pub integrity: String,
    pub size: u64,
    /// Its permission bits when the node made it with others than
    /// [`crate::fsutil::PLAIN_MODE`] (an executable script, a private key file).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
    /// The node made a symbolic link here: the content is where it points.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub link: bool,
}

/// How a file's permission bits are recorded: only when they are not the plain ones.
pub fn recorded_mode(bits: u32) -> Option<u32> {
    let bits = bits & 0o777;
    (bits != crate::fsutil::PLAIN_MODE).then_some(bits)
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
    /// Files the node took away (as it named them): reusing the result needs them still
    /// absent.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// What an entry record holds (its payload, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Packed {
    /// The integrity of the outputs' JSON bytes (inline or a blob's).
    pub integrity: String,
    pub manifest: Manifest,
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub integrity: cacache::Integrity,
    /// The outputs' digest, the manifest's `output_digest` read once: what the nodes after
    /// a hit put in their keys.
    pub output: blake3::Hash,
    /// When the entry was written (unix ms).
    pub time_ms: u128,
}

/// A result produced elsewhere, to keep as a local entry ([`Cache::import`]).
pub struct Imported {
    pub node: String,
    pub output_digest: String,
    pub duration_ms: u64,
    pub run_id: String,
    /// When it was produced (unix ms).
    pub time_ms: u64,
    /// The outputs' JSON bytes.
    pub outputs: Vec<u8>,
    pub files: Vec<ImportedFile>,
    /// Files the node took away.
    pub removed: Vec<String>,
}

pub struct ImportedFile {
    pub path: String,
    /// BLAKE3 hex of `bytes`.
    pub digest: String,
    pub bytes: Vec<u8>,
    pub mode: Option<u32>,
}

/// A successful node result to store.
pub struct NewEntry<'a> {
    pub key: &'a Key,
    pub node: &'a str,
    pub outputs: &'a Value,
    pub output_digest: &'a blake3::Hash,
    pub files: &'a [PathBuf],
    /// Those of `files` that are symbolic links the node made: kept as links, where the
    /// others (a link the node wrote through included) are kept by their content.
    pub links: &'a [PathBuf],
    /// Files the node took away.
    pub removed: &'a [PathBuf],
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
    packs: Arc<Packs>,
    /// Recorded durations of the entries this process found (key hex → ms), for the
    /// "time saved" figure of [`Cache::record_build`].
    seen: Arc<Mutex<crate::key::KeyMap<u64>>>,
}

impl Cache {
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        let root = root.into();
        Cache {
            packs: Arc::new(Packs::new(&root)),
            root,
            seen: Arc::new(Mutex::new(Default::default())),
        }
    }

    /// Keep a result that was produced elsewhere (and verified by whoever brought it) as
    /// a local entry, and read it back.
    pub fn import(&self, key: &Key, new: Imported) -> Result<Option<Entry>, CacheError> {
        let mut records = Vec::with_capacity(new.files.len());
        for f in &new.files {
            let integrity = write_blob(&self.root, &f.bytes)
                .map_err(|e| err("cannot write to the cache", e))?;
            records.push(FileRecord {
                path: f.path.clone(),
                digest: f.digest.clone(),
                integrity: integrity.to_string(),
                size: f.bytes.len() as u64,
                mode: f.mode.and_then(recorded_mode),
                // A remote never holds links (see `written_files`).
                link: false,
            });
        }
        let manifest = Manifest {
            node: new.node,
            output_digest: new.output_digest,
            duration_ms: new.duration_ms,
            files: records,
            run_id: new.run_id,
            inline: None,
            removed: new.removed,
        };
        let output = blake3::Hash::from_hex(&manifest.output_digest)
            .map_err(|_| CacheError("the result's output digest is not a digest".into()))?;
        let (sri, manifest) = self.put_outputs(&new.outputs, manifest)?;
        // The writer's clock may run ahead of ours: never record a time in the future.
        let time = (new.time_ms as u128).min(now_ms());
        self.append_entry(key, sri, manifest, output, time)?;
        self.lookup(key)
    }

    /// The content of every file an entry recorded, verified; None if any is unreadable,
    /// or is a symbolic link: a link's target is not taken from a remote (it could point
    /// anywhere), so an entry with one is not sent there.
    pub fn written_files(&self, manifest: &Manifest) -> Option<Vec<Vec<u8>>> {
        let mut files = Vec::with_capacity(manifest.files.len());
        for rec in &manifest.files {
            if rec.link {
                return None;
            }
            let sri = rec.integrity.parse::<cacache::Integrity>().ok()?;
            if !layout::names_blob(&sri) {
                return None;
            }
            files.push(cacache::read_hash_sync(&self.root, &sri).ok()?);
        }
        Some(files)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The entry for `key`, if there is a readable one.
    ///
    /// The newest record for the key wins. When it does not read back intact (a damaged
    /// record, an unparseable manifest, a malformed integrity), the result is an error,
    /// which callers treat as a miss ("corrupt entry"). A hit refreshes the entry's
    /// recency.
    pub fn lookup(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        let found = self.find(key)?;
        if let Some(entry) = &found {
            // Best effort: a cache we cannot write to still serves hits.
            let _ = self.packs.append(Kind::Use, key, now_ms() as u64, &[]);
            if let Ok(mut seen) = self.seen.lock() {
                seen.insert(*key, entry.manifest.duration_ms);
            }
        }
        Ok(found)
    }

    /// This build may store up to `n` entries (see [`pack::Packs::expect_entries`]).
    pub fn expect_entries(&self, n: usize) {
        self.packs.expect_entries(n);
    }

    /// Write the marks of recency this process's hits left waiting (see
    /// [`Packs::flush_uses`]); best effort, as the marks themselves. A build calls it
    /// once its nodes are done.
    ///
    /// [`Packs::flush_uses`]: pack::Packs::flush_uses
    pub fn flush_uses(&self) {
        let _ = self.packs.flush_uses();
    }

    /// The entry for `key`, if there is a usable one, without counting it as a use
    /// (no recency mark, no "time saved").
    pub fn peek(&self, key: &Key) -> Option<Entry> {
        self.probe(key).ok().flatten()
    }

    /// Like [`Cache::lookup`], but marks nothing: no recency, no "time saved" (what a
    /// `--dry-run` may do).
    pub fn probe(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        self.find(key)
    }

    /// The newest entry for `key`.
    fn find(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        match self.packs.get(key) {
            Got::Missing => Ok(None),
            Got::Found { payload, time } => entry_of(&payload, time as u128)
                .map(Some)
                .ok_or_else(|| CacheError("corrupt cache entry".into())),
            Got::Damaged => Err(CacheError("corrupt cache entry".into())),
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
                if !layout::names_blob(&entry.integrity) {
                    return Err(CacheError("corrupt cache entry (bad integrity)".into()));
                }
                let bytes = cacache::read_hash_sync(&self.root, &entry.integrity)
                    .map_err(|e| err("cached outputs are missing or corrupt", e))?;
                std::borrow::Cow::Owned(bytes)
            }
        };
        let value: Value =
            serde_json::from_slice(&bytes).map_err(|e| err("cached outputs are not JSON", e))?;
        if !crate::canonical::output_digest_matches(&value, &entry.manifest.output_digest) {
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
            links,
            removed,
            duration_ms,
            run_id,
        } = new;
        let mut records = Vec::with_capacity(files.len());
        for path in files {
            let link = links
                .contains(path)
                .then(|| crate::fsutil::link_target(path))
                .flatten();
            if let Some(target) = link {
                let integrity = write_blob(&self.root, &target)
                    .map_err(|e| err("cannot write to the cache", e))?;
                records.push(FileRecord {
                    path: path.to_string_lossy().into_owned(),
                    digest: crate::fsutil::link_digest(&target).to_hex().to_string(),
                    integrity: integrity.to_string(),
                    size: target.len() as u64,
                    mode: None,
                    link: true,
                });
                continue;
            }
            let cannot = |e| err(&format!("cannot read written file '{}'", path.display()), e);
            // The bits from the file whose bytes are read: not another put there since.
            let mut file = std::fs::File::open(path).map_err(cannot)?;
            let mode = file.metadata().map_err(cannot)?;
            let mode = recorded_mode(crate::fsutil::permission_bits(&mode));
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut file, &mut bytes).map_err(cannot)?;
            let digest = blake3::hash(&bytes).to_hex().to_string();
            let integrity =
                write_blob(&self.root, &bytes).map_err(|e| err("cannot write to the cache", e))?;
            records.push(FileRecord {
                path: path.to_string_lossy().into_owned(),
                digest,
                integrity: integrity.to_string(),
                size: bytes.len() as u64,
                mode,
                link: false,
            });
        }
        let manifest = Manifest {
            node: node.to_string(),
            output_digest: output_digest.to_hex().to_string(),
            duration_ms,
            files: records,
            run_id: run_id.to_string(),
            inline: None,
            removed: removed
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        };
        let bytes = encode(outputs).map_err(|e| err("cannot encode outputs", e))?;
        let (sri, manifest) = self.put_outputs(&bytes, manifest)?;
        let time_ms = now_ms();
        self.append_entry(key, sri, manifest, *output_digest, time_ms)
    }

    /// Append the entry's record (after its blobs, which are written first: a crash in
    /// between leaves at worst an unreferenced blob, never an entry without content).
    fn append_entry(
        &self,
        key: &Key,
        integrity: cacache::Integrity,
        manifest: Manifest,
        output: blake3::Hash,
        time_ms: u128,
    ) -> Result<Entry, CacheError> {
        let packed = Packed {
            integrity: integrity.to_string(),
            manifest,
        };
        let payload = encode(&packed).map_err(|e| err("cannot encode the cache entry", e))?;
        self.packs
            .append(Kind::Entry, key, time_ms as u64, &payload)
            .map_err(|e| err("cannot write to the cache", e))?;
        Ok(Entry {
            manifest: packed.manifest,
            integrity,
            output,
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
        let sri = write_blob(&self.root, bytes).map_err(|e| err("cannot write to the cache", e))?;
        Ok((sri, manifest))
    }

    pub fn file_state(&self, rec: &FileRecord) -> FileState {
        let path = Path::new(&rec.path);
        if rec.link {
            return match crate::fsutil::link_target(path) {
                Some(t) if crate::fsutil::link_digest(&t).to_hex().as_str() == rec.digest => {
                    FileState::Intact
                }
                Some(_) => FileState::Changed,
                None if std::fs::symlink_metadata(path).is_ok() => FileState::Changed,
                None => FileState::Missing,
            };
        }
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
    /// A file that is there with other content (a hand edit) is first moved aside, never
    /// overwritten: the path it was kept under is returned.
    /// `at` is where to write it: `rec.path`, or a spelling of it that holds its
    /// directory (see `workspace::Held`). A file moved aside is returned as made beside
    /// `at`.
    pub fn restore_file(&self, rec: &FileRecord, at: &Path) -> Result<Option<PathBuf>, CacheError> {
        let sri: cacache::Integrity = rec
            .integrity
            .parse()
            .map_err(|e| err("corrupt file record", e))?;
        if !layout::names_blob(&sri) {
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
        let digest = if rec.link {
            crate::fsutil::link_digest(&bytes)
        } else {
            blake3::hash(&bytes)
        };
        if digest.to_hex().as_str() != rec.digest {
            return Err(CacheError(format!(
                "cached copy of '{}' does not match its digest",
                rec.path
            )));
        }
        let path = at;
        let kept = match std::fs::symlink_metadata(path) {
            Ok(_) => {
                let aside = crate::fsutil::move_aside(path, ".pflow-kept")
                    .map_err(|e| err(&format!("cannot move the edited '{}' aside", rec.path), e))?;
                Some(aside)
            }
            Err(_) => None,
        };
        let mode = rec.mode.unwrap_or(crate::fsutil::PLAIN_MODE);
        if rec.link {
            crate::fsutil::link_atomic(path, &bytes)
        } else {
            crate::fsutil::write_atomic_mode(path, &bytes, mode)
        }
        .map_err(|e| err(&format!("cannot restore '{}'", rec.path), e))?;
        Ok(kept)
    }

    /// Read the segment indexes now (see [`pack::Packs::warm`]).
    pub fn warm(&self, map: bool) {
        self.packs.warm(map);
    }

    /// [`Cache::warm`] on a thread of its own, not joined: a build that ends first (or
    /// an invalid workflow) does not wait for it. It holds a shared lock of its own
    /// (shared locks do not exclude each other), as `--watch` goes on after an invalid
    /// workflow while the thread may still read.
    pub fn warm_aside(&self, map: bool) {
        let cache = self.clone();
        let _ = crate::memory::spawn_light(c"pflow-warm", move || {
            let _held = cache.lock(lock::Mode::Shared, &mut |_| {}).ok();
            cache.warm(map);
        });
    }

    /// Hold the cache directory's lock (see [`lock`]): builds share it, maintenance holds
    /// it alone. `on_wait` is told once if another process makes this one wait.
    pub fn lock(
        &self,
        mode: lock::Mode,
        on_wait: &mut dyn FnMut(&lock::Waiting),
    ) -> Result<lock::CacheLock, CacheError> {
        lock::acquire(&self.root, mode, on_wait)
    }

    /// The recorded run time of each entry this process found (for the "time saved"
    /// figure of [`stats::BuildStats::tally`]), emptied.
    pub fn take_seen(&self) -> crate::key::KeyMap<u64> {
        self.seen
            .lock()
            .map(|mut s| std::mem::take(&mut *s))
            .unwrap_or_default()
    }

    /// Note a hit decided without a lookup (the build state's fast path), with the
    /// recorded run time of its entry, for the "time saved" figure.
    pub fn note_hit(&self, key: &Key, duration_ms: u64) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.insert(*key, duration_ms);
        }
    }
}

/// Now, in unix milliseconds (the unit of cacache's entry times).
pub fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Do inline outputs match the integrity recorded for them? (An integrity without any
/// hash matches nothing; ssri's own check would index into its empty list.)
pub fn inline_intact(sri: &cacache::Integrity, text: &str) -> bool {
    !sri.hashes.is_empty() && sri.check(text).is_ok()
}

/// `value` as JSON (as `serde_json::to_vec`) into a buffer with room for a typical
/// node's outputs or entry: grown from empty, it moved five or six times for each.
fn encode<T: Serialize + ?Sized>(value: &T) -> serde_json::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(512);
    serde_json::to_writer(&mut out, value)?;
    Ok(out)
}

/// The entry a record's payload describes, if it is usable (integrity well-formed,
/// manifest readable).
pub fn entry_of(payload: &[u8], time_ms: u128) -> Option<Entry> {
    let packed: Packed = serde_json::from_slice(payload).ok()?;
    let integrity: cacache::Integrity = packed.integrity.parse().ok()?;
    if !layout::names_blob(&integrity) {
        return None;
    }
    let manifest = packed.manifest;
    let output = blake3::Hash::from_hex(&manifest.output_digest).ok()?;
    for f in &manifest.files {
        let sri: cacache::Integrity = f.integrity.parse().ok()?;
        if !layout::names_blob(&sri) {
            return None;
        }
    }
    Some(Entry {
        manifest,
        integrity,
        output,
        time_ms,
    })
}

/// Store `bytes` as a content-addressed blob. Empty content skips cacache's sized
/// (mmap) writer, whose `posix_fallocate` of 0 bytes fails: a node that wrote an empty
/// file could never be cached.
fn write_blob(root: &Path, bytes: &[u8]) -> Result<cacache::Integrity, cacache::Error> {
    if !bytes.is_empty() {
        return cacache::write_hash_sync(root, bytes);
    }
    cacache::WriteOpts::new()
        .algorithm(cacache::Algorithm::Sha256)
        .open_hash_sync(root)?
        .commit()
}
