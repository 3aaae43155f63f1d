//! Results stored off the nodes' path.
//!
//! Storing a result (its entry encoded, hashed and appended to the cache's segment, and
//! pushed to a remote) took about a sixth of a cold build of a 10,000-node chain, and a
//! chain's next node waited for it. So a node whose result touches no file hands it to
//! one storer thread, and its dependents start at once: they take its values from
//! memory, never from the cache. A node that wrote or took away files stores them
//! itself, before anything later can change them (the entry keeps their digests), and so
//! does a node that announces its effects (its intent is settled only once the entry is
//! stored). The build ends only after the storer has stored everything handed to it.

use crate::key::Key;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// A node's result to store: what `Shared::store` needs besides the files (there are
/// none).
pub(super) struct StoreJob {
    pub i: usize,
    pub key: Key,
    pub values: Arc<Value>,
    pub digest: blake3::Hash,
    pub took: Duration,
}
