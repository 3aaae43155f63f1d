//! What a build learns for the next one: each node's key, digest and written files (the
//! fast path), each file read with its digest, and each key's preimage (`--explain`).
//! Loaded at the start, saved at the end, and only when something differs, so a no-op
//! build writes nothing.

use crate::cache::delta::Keep;
use crate::cache::records::{record_of, BuildState, ExplainRecords, FileStat, StateUpdate};
use crate::cache::Entry;
use crate::key::{Key, Preimage};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

pub(super) struct Recorder {
    root: PathBuf,
    workflow_name: String,
    /// What the last build of this workflow saw.
    last: BuildState,
    /// What this build saw so far.
    next: Mutex<StateUpdate>,
    /// Something differs from the last build: records must be written at the end.
    changed: AtomicBool,
    /// The explain records of the last build, read only when a node misses.
    explain: OnceLock<ExplainRecords>,
}

impl Recorder {
    pub fn load(root: PathBuf, workflow_name: String) -> Recorder {
        Recorder {
            last: BuildState::load(&root, &workflow_name),
            root,
            workflow_name,
            next: Mutex::new(StateUpdate::default()),
            changed: AtomicBool::new(false),
            explain: OnceLock::new(),
        }
    }

    /// The last build's record (the fast path reads it).
    pub fn last(&self) -> &BuildState {
        &self.last
    }

    /// This build decided something anew: the records will be saved.
    pub fn changed(&self) {
        self.changed.store(true, Ordering::Relaxed);
    }

    /// Keep what a hit on `entry` means for the next build's fast path.
    /// `digest`: the entry's output digest.
    pub fn entry(&self, id: &str, key: &Key, digest: &blake3::Hash, entry: &Entry) {
        let encoded = record_of(&key.0, digest, entry).encode();
        // Once something changed, whether this did too no longer matters.
        if !self.changed.load(Ordering::Relaxed) && !self.last.has(id, &encoded) {
            self.changed();
        }
        lock(&self.next).nodes.insert(id.to_string(), encoded);
    }

    /// Keep a file read, with the digest its key used.
    pub fn read(&self, path: &str, stat: FileStat) {
        if self.last.reads.get(path) != Some(&stat) {
            self.changed();
        }
        lock(&self.next).reads.insert(path.to_string(), stat);
    }

    /// The digest recorded for a file read, when its stat data proves it unchanged.
    pub fn read_digest(&self, path: &str, now: Option<crate::fsutil::FileId>) -> Option<String> {
        self.last.read_digest(path, now)
    }

    /// The key node `id` had in the last build.
    pub fn previous_key(&self, id: &str) -> Option<Key> {
        self.last.previous_key(id).map(Key)
    }

    /// Node `id`'s key preimage in the last build that decided it.
    pub fn previous_preimage(&self, id: &str) -> Option<Preimage> {
        self.explain().get(id)
    }

    /// Node `id`'s explain record from the last build that decided it, as stored
    /// (`records::decode_explain` reads it).
    pub fn previous_explain(&self, id: &str) -> Option<&[u8]> {
        self.explain().raw(id)
    }

    /// Load the explain records now, on the calling thread, if they are not yet.
    pub fn load_explain(&self) {
        self.explain();
    }

    fn explain(&self) -> &ExplainRecords {
        self.explain
            .get_or_init(|| ExplainRecords::load(&self.root, &self.workflow_name))
    }

    /// Write the records, if anything changed. `decided`: the explain records of the
    /// nodes decided anew (`records::encode_explain`; the rest are copied byte for byte). Old records stay as they are
    /// (each is checked against the key it was made for, so an outdated one is only
    /// unused), and are not even looked at: only when a table has grown well past the
    /// workflow's `nodes` (nodes renamed or removed) are the records of nodes no longer
    /// in it (`in_workflow` says no) dropped, and when this build has a record of every
    /// one of its `nodes` (an edit near the start) only those are written. Both tables
    /// are by node id, each id a node's of the workflow (unique): as many as `nodes`
    /// is every one.
    pub fn save(
        &self,
        decided: impl FnOnce() -> BTreeMap<String, Vec<u8>>,
        nodes: usize,
        in_workflow: impl Fn(&[u8]) -> bool,
    ) {
        if !self.changed.load(Ordering::Relaxed) {
            return;
        }
        let (root, name) = (&self.root, &self.workflow_name);
        let in_workflow: &dyn Fn(&[u8]) -> bool = &in_workflow;
        // Records of nodes no longer in the workflow are dropped once they are many.
        let keep = |new: usize, old: usize| {
            if nodes > 0 && new >= nodes {
                Keep::Nothing
            } else if old > 2 * nodes + 64 {
                Keep::If(in_workflow)
            } else {
                Keep::All
            }
        };
        let explain = self.explain();
        let decided = decided();
        explain.save(root, name, &decided, keep(decided.len(), explain.len()));
        let next = lock(&self.next);
        self.last
            .save(root, name, &next, keep(next.nodes.len(), self.last.len()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
