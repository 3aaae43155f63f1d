//! Work a node hands off: its result stored, its miss explained, off the nodes' path.
//!
//! Storing a result (its entry encoded, hashed and appended to the cache's segment, and
//! pushed to a remote) took about a sixth of a cold build of a 10,000-node chain, and a
//! chain's next node waited for it; after an edit near the start, telling what changed
//! for each node that misses (the last build's explain record read and compared) took
//! as much again (a build that shows no reason skips that: `MissReasons`). Neither is
//! needed by the nodes that follow: they take a node's values from memory, never from
//! the cache, and its reason only goes into the build's report.
//! So one thread does both while the workers go on, and the build ends only after it
//! has done everything handed to it. Work reaches it through a [`Queue`] it empties on
//! a tick, not through a channel that wakes it for each piece. A node whose result
//! waits here is not reported as run until it is stored: a build killed after saying
//! so must not run it again.
//!
//! Not handed off: the result of a node that wrote or took away files (its entry keeps
//! their digests, taken before anything later can change them) or that announces its
//! effects (its intent is settled only once the entry is stored); any result while a
//! remote cache takes uploads (each is a few blocking requests, which the workers send
//! in parallel and one thread would send one at a time); and the reason of a miss that
//! `--explain` shows as the node finishes, or that a batch's reason is built on.

use crate::key::Key;
use serde_json::Value;
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::Thread;
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

impl Offload {
    /// The node the work is for.
    pub(super) fn node(&self) -> usize {
        match self {
            Offload::Store { i, .. } | Offload::Explain { i, .. } => *i,
        }
    }
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

/// Where the workers leave work for the offload thread, which takes it all at once.
///
/// A worker does not wake the thread for each piece: when it kept up with a chain, each
/// of the 10,000 nodes' hand-offs woke it (up to 9,000 context switches a build, on 2
/// cores, each taken from the worker). It looks on a short tick instead, longer while
/// nothing comes, and is woken only when much is waiting or the build ends.
#[derive(Default)]
pub(super) struct Queue {
    state: Mutex<State>,
    /// The offload thread, once it has started.
    taker: OnceLock<Thread>,
}

#[derive(Default)]
struct State {
    /// Work is taken (until the queue is opened, just before the thread starts, and
    /// once it is closed, a node does its own).
    open: bool,
    work: Vec<Offload>,
}

/// Waiting work that wakes the thread at once.
const WAKE_AT: usize = 256;
/// How long the thread first sleeps when it finds nothing, and at most.
const TICK: Duration = Duration::from_millis(1);
const MAX_TICK: Duration = Duration::from_millis(32);

impl Queue {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Take work from now on.
    pub(super) fn open(&self) {
        self.state().open = true;
    }

    /// Closes the queue when dropped, even by a panic (so that the thread, which the
    /// caller joins, does not wait for more work forever).
    pub(super) fn closing(&self) -> Closing<'_> {
        Closing(self)
    }

    /// Take no more; the thread does what it holds and returns.
    pub(super) fn close(&self) {
        self.state().open = false;
        if let Some(t) = self.taker.get() {
            t.unpark();
        }
    }

    /// Leave `work`; given back while the queue takes none.
    pub(super) fn hand_off(&self, work: Offload) -> Result<(), Offload> {
        let mut state = self.state();
        if !state.open {
            return Err(work);
        }
        state.work.push(work);
        if state.work.len() >= WAKE_AT {
            drop(state);
            if let Some(t) = self.taker.get() {
                t.unpark();
            }
        }
        Ok(())
    }

    /// On the offload thread: `each` piece of work, in the order handed off, until the
    /// queue is closed and empty.
    pub(super) fn take_all(&self, mut each: impl FnMut(Offload)) {
        let _ = self.taker.set(std::thread::current());
        // Should `each` ever unwind, what is handed off later goes back to the nodes
        // rather than to a thread that is gone.
        let _closing = self.closing();
        let mut tick = TICK;
        loop {
            let (work, open) = {
                let mut state = self.state();
                (std::mem::take(&mut state.work), state.open)
            };
            if work.is_empty() {
                if !open {
                    return;
                }
                std::thread::park_timeout(tick);
                tick = (tick * 2).min(MAX_TICK);
                continue;
            }
            tick = TICK;
            work.into_iter().for_each(&mut each);
        }
    }
}

/// See [`Queue::closing`].
pub(super) struct Closing<'q>(&'q Queue);

impl Drop for Closing<'_> {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work(i: usize) -> Offload {
        Offload::Explain {
            i,
            key: Key([0; 32]),
            now: Vec::new(),
        }
    }

    #[test]
    fn work_is_given_back_before_the_queue_opens_and_after_it_closes() {
        let q = Queue::default();
        assert!(q.hand_off(work(1)).is_err());
        q.open();
        assert!(q.hand_off(work(2)).is_ok());
        q.close();
        let back = q.hand_off(work(3)).map_err(|w| w.node());
        assert_eq!(back, Err(3));
    }

    #[test]
    fn the_thread_does_everything_handed_off_in_order_and_returns_once_closed() {
        let q = Queue::default();
        q.open();
        let done = std::thread::scope(|s| {
            let taker = s.spawn(|| {
                let mut seen = Vec::new();
                q.take_all(|w| seen.push(w.node()));
                seen
            });
            // Some while the thread sleeps on its tick.
            for i in 0..(2 * WAKE_AT + 7) {
                assert!(q.hand_off(work(i)).is_ok());
                if i % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
            q.close();
            taker.join().expect("the taker returns")
        });
        assert_eq!(done, (0..(2 * WAKE_AT + 7)).collect::<Vec<_>>());
    }

    #[test]
    fn work_left_when_the_queue_closes_before_the_thread_starts_is_still_done() {
        let q = Queue::default();
        q.open();
        for i in 0..300 {
            assert!(q.hand_off(work(i)).is_ok());
        }
        q.close();
        let mut seen = Vec::new();
        q.take_all(|w| seen.push(w.node()));
        assert_eq!(seen, (0..300).collect::<Vec<_>>());
    }

    #[test]
    fn work_goes_back_to_the_nodes_once_the_thread_has_unwound() {
        let q = Queue::default();
        q.open();
        assert!(q.hand_off(work(1)).is_ok());
        let unwound = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            q.take_all(|_| panic!("a bug in the offload thread"))
        }));
        assert!(unwound.is_err());
        assert!(q.hand_off(work(2)).is_err());
    }
}
