//! The job budget: with `--jobs N` given, at most N things run at once, node runs and
//! batch item workers alike, all taking tokens from one pool.
//!
//! A node takes a token before it runs (waiting for one when none is free) and gives it
//! back when it ends; a batch node's own thread runs items on that token. Each further
//! item worker a batch starts holds one more token, taken only when one is free at that
//! moment and never waited for, and gives it back when the batch has no items left for
//! it. So a batch grows into tokens as they free up and shrinks when it runs out of
//! work, and nothing ever waits while holding a token: no deadlock, however batches and
//! nodes interleave.
//!
//! Without `--jobs` there is no pool: nodes run one per core (the worker threads), and
//! each batch runs up to its `max_concurrent` items, since batch items are mostly calls
//! that wait on a server (HTTP, LLM, MCP) and should not be throttled to the core count.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

pub(super) struct Budget {
    /// `None`: no pool (no `--jobs`).
    cap: Option<usize>,
    used: AtomicUsize,
    /// Node runs waiting for a token.
    waiting: AtomicUsize,
    gate: Mutex<()>,
    freed: Condvar,
}

/// A token from the pool, given back when dropped.
pub(super) struct Token<'b>(Option<&'b Budget>);

impl Drop for Token<'_> {
    fn drop(&mut self) {
        if let Some(b) = self.0 {
            b.give();
        }
    }
}

impl Budget {
    pub(super) fn new(cap: Option<usize>) -> Budget {
        Budget {
            cap: cap.map(|n| n.max(1)),
            used: AtomicUsize::new(0),
            waiting: AtomicUsize::new(0),
            gate: Mutex::new(()),
            freed: Condvar::new(),
        }
    }

    /// A token for a node run, waiting until one is free.
    pub(super) fn take(&self) -> Token<'_> {
        if self.cap.is_none() {
            return Token(None);
        }
        if self.grab() {
            return Token(Some(self));
        }
        let mut g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
        // Counted before the last look, so a token given back after it wakes this one.
        self.waiting.fetch_add(1, Ordering::SeqCst);
        while !self.grab() {
            g = self.freed.wait(g).unwrap_or_else(|p| p.into_inner());
        }
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        Token(Some(self))
    }

    /// A token for one more item worker, only if one is free now (`Token(None)` without
    /// a pool).
    pub(super) fn try_take(&self) -> Option<Token<'_>> {
        match self.cap {
            None => Some(Token(None)),
            // `then`, not `then_some`: a token built and dropped would give one back.
            Some(_) => self.grab().then(|| Token(Some(self))),
        }
    }

    fn grab(&self) -> bool {
        let cap = self.cap.unwrap_or(usize::MAX);
        self.used
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |u| {
                (u < cap).then_some(u + 1)
            })
            .is_ok()
    }

    fn give(&self) {
        self.used.fetch_sub(1, Ordering::SeqCst);
        if self.waiting.load(Ordering::SeqCst) > 0 {
            let _g = self.gate.lock().unwrap_or_else(|p| p.into_inner());
            self.freed.notify_one();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_hands_out_at_most_its_size() {
        let b = Budget::new(Some(2));
        let one = b.take();
        let two = b.try_take();
        assert!(two.is_some());
        assert!(b.try_take().is_none());
        assert!(b.try_take().is_none());
        // A refused try takes nothing and gives nothing back.
        assert_eq!(b.used.load(Ordering::SeqCst), 2);
        drop(one);
        assert!(b.try_take().is_some());
    }

    #[test]
    fn a_waiting_node_gets_the_token_given_back() {
        let b = Budget::new(Some(1));
        let held = b.take();
        std::thread::scope(|s| {
            let waiter = s.spawn(|| {
                let _t = b.take();
                b.used.load(Ordering::SeqCst)
            });
            while b.waiting.load(Ordering::SeqCst) == 0 {
                std::thread::yield_now();
            }
            drop(held);
            assert_eq!(waiter.join().ok(), Some(1));
        });
        assert_eq!(b.used.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn without_a_pool_nothing_is_counted() {
        let b = Budget::new(None);
        let _t: Vec<_> = (0..1000).filter_map(|_| b.try_take()).collect();
        assert_eq!(b.used.load(Ordering::SeqCst), 0);
    }
}
