//! Work a node hands off: its result stored, its miss explained, off the nodes' path.
//!
//! Storing a result (its entry encoded, hashed and appended to the cache's segment, and
//! pushed to a remote) took about a sixth of a cold build of a 10,000-node chain, and a
//! chain's next node waited for it; after an edit near the start, telling what changed
//! for each node that misses (the last build's explain record read and compared) took
//! as much again. Neither is needed by the nodes that follow: they take a node's values
//! from memory, never from the cache, and its reason only goes into the build's report.
//! So one thread does both while the workers go on, and the build ends only after it
//! has done everything handed to it.
//!
//! Not handed off: the result of a node that wrote or took away files (its entry keeps
//! their digests, taken before anything later can change them) or that announces its
//! effects (its intent is settled only once the entry is stored); any result while a
//! remote cache takes uploads (each is a few blocking requests, which the workers send
//! in parallel and one thread would send one at a time); and the reason of a miss that
//! `--explain` shows as the node finishes, or that a batch's reason is built on.

use crate::key::Key;
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Work for the offload thread.
pub(super) enum Offload {
    /// Store node `i`'s result, which touches no file, and record it.
    Store {
        i: usize,
        key: Key,
        values: Arc<Value>,
        digest: blake3::Hash,
        took: Duration,
    },
    /// Tell what changed since the last build for node `i`, which missed with `key`;
    /// `now`: its explain record (`records::encode_explain`).
    Explain { i: usize, key: Key, now: Vec<u8> },
}

/// A node's reason, when telling it was handed off.
#[derive(Debug, Default)]
pub(super) enum LateReason {
    /// Not handed off (or no longer wanted: the node failed inside pflow, and says so).
    #[default]
    None,
    /// Handed off; the report shows a placeholder until the build ends.
    Awaited,
    /// Told by the offload thread: the report's reason when the build ends.
    Told(String),
}
