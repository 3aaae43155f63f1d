//! The nodes a build has started and not yet told finished: the progress bar's message.
//!
//! A node is told finished only once its result is stored, which the offload thread does
//! behind the workers, so on a long chain hundreds or thousands are "running" at once. A
//! list searched and joined at every event made the reporting thread quadratic: on the
//! 10,000-node chain 0.1 to 1.8 million string comparisons a build, and its lag fed
//! itself.
//! Here a start and a finish cost a hash and a tree step, and the message names the
//! first few.

use std::collections::{BTreeMap, HashMap};

/// Names shown in the message; the rest are counted.
const SHOWN: usize = 3;

#[derive(Debug, Default)]
pub struct Running {
    /// By the order they started in.
    by_start: BTreeMap<u64, String>,
    started: HashMap<String, u64>,
    next: u64,
}

impl Running {
    pub fn start(&mut self, id: &str) {
        let n = self.next;
        self.next += 1;
        if let Some(old) = self.started.insert(id.to_string(), n) {
            self.by_start.remove(&old);
        }
        self.by_start.insert(n, id.to_string());
    }

    pub fn finish(&mut self, id: &str) {
        if let Some(n) = self.started.remove(id) {
            self.by_start.remove(&n);
        }
    }

    fn len(&self) -> usize {
        self.started.len()
    }

    /// `running a, b, c and 4 more`: the longest-running first.
    pub fn message(&self) -> String {
        let names: Vec<&str> = self
            .by_start
            .values()
            .take(SHOWN)
            .map(String::as_str)
            .collect();
        let mut m = format!("running {}", names.join(", "));
        if let Some(more) = self.len().checked_sub(SHOWN).filter(|m| *m > 0) {
            m.push_str(&format!(" and {more} more"));
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_first_started_of_those_not_finished_and_counts_the_rest() {
        let mut r = Running::default();
        for id in ["a", "b", "c", "d", "e"] {
            r.start(id);
        }
        assert_eq!(r.message(), "running a, b, c and 2 more");
        r.finish("b");
        r.finish("a");
        assert_eq!(r.message(), "running c, d, e");
        r.finish("d");
        r.finish("unknown");
        assert_eq!((r.len(), r.message()), (2, "running c, e".to_string()));
        // Started again (a retried node): it moves to the end, counted once.
        r.start("c");
        assert_eq!((r.len(), r.message()), (2, "running e, c".to_string()));
        r.finish("c");
        r.finish("e");
        assert_eq!(r.len(), 0);
        assert_eq!(r.message(), "running ");
    }
}
