//! The on-disk, content-addressed node cache (cacache under the cache directory).
//!
//! Each successful node result is one index entry, keyed by the node [`Key`], whose
//! content is the node's outputs as JSON and whose metadata is a [`Manifest`]: the output
//! digest (so a hit is decided and dependents' keys are computed without reading any
//! blob), the run time, and the files the node wrote with their digests and blobs (so a
//! deleted or edited output file can be restored). Blobs are verified on every read: a
//! corrupt or missing blob is reported as an error the caller treats as a miss.

use crate::key::{Key, Preimage};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

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
}

#[derive(Debug, Clone)]
pub struct Entry {
    pub manifest: Manifest,
    pub integrity: cacache::Integrity,
    /// When the entry was written (unix ms).
    pub time_ms: u128,
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
        Cache { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The index entry for `key`, if there is a readable one.
    pub fn lookup(&self, key: &Key) -> Result<Option<Entry>, CacheError> {
        if !self.root.exists() {
            return Ok(None);
        }
        let found = cacache::index::find(&self.root, &index_key(key))
            .map_err(|e| err("cannot read the cache index", e))?;
        let Some(meta) = found else { return Ok(None) };
        let manifest: Manifest =
            serde_json::from_value(meta.metadata).map_err(|e| err("corrupt cache manifest", e))?;
        Ok(Some(Entry {
            manifest,
            integrity: meta.integrity,
            time_ms: meta.time,
        }))
    }

    /// Read and verify a cached node's outputs.
    pub fn load_outputs(&self, entry: &Entry) -> Result<Value, CacheError> {
        let bytes = cacache::read_hash_sync(&self.root, &entry.integrity)
            .map_err(|e| err("cached outputs are missing or corrupt", e))?;
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
    pub fn store(
        &self,
        key: &Key,
        node: &str,
        outputs: &Value,
        output_digest: &blake3::Hash,
        files: &[PathBuf],
        duration_ms: u64,
        run_id: &str,
    ) -> Result<Manifest, CacheError> {
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
        };
        let bytes = serde_json::to_vec(outputs).map_err(|e| err("cannot encode outputs", e))?;
        let meta = serde_json::to_value(&manifest).map_err(|e| err("cannot encode manifest", e))?;
        let sri = cacache::write_hash_sync(&self.root, &bytes)
            .map_err(|e| err("cannot write to the cache", e))?;
        cacache::index::insert(
            &self.root,
            &index_key(key),
            cacache::WriteOpts::new()
                .integrity(sri)
                .size(bytes.len())
                .metadata(meta),
        )
        .map_err(|e| err("cannot write the cache index", e))?;
        Ok(manifest)
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

    fn explain_path(&self, workflow_name: &str) -> PathBuf {
        let h = blake3::hash(workflow_name.as_bytes()).to_hex();
        self.root.join("explain").join(format!("{}.json", &h[..32]))
    }

    /// The key preimages recorded by the last build of this workflow, by node id.
    pub fn load_preimages(&self, workflow_name: &str) -> BTreeMap<String, Preimage> {
        std::fs::read(self.explain_path(workflow_name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn save_preimages(&self, workflow_name: &str, records: &BTreeMap<String, Preimage>) {
        if let Ok(bytes) = serde_json::to_vec(records) {
            let _ = crate::nodes::write_atomic(&self.explain_path(workflow_name), &bytes);
        }
    }
}
