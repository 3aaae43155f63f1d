//! One command's build events on one clock: every attempt (a repaired build has several)
//! with each node's interval, status and batch items, as the executor reported them, and
//! when each attempt started. `--timings` and `--profile` are two renderings of it; the
//! `--trace` file reads the same node reports.

use crate::executor::{NodeReport, Outcome, Status};
use crate::key::KeyMap;
use crate::validate::Validated;
use std::collections::HashMap;
use std::time::Duration;

/// Every attempt of one command, in order.
#[derive(Debug, Clone, Default)]
pub struct Timeline {
    pub run_id: String,
    pub attempts: Vec<Attempt>,
}

/// One run of the executor.
#[derive(Debug, Clone)]
pub struct Attempt {
    /// When it started, in microseconds since the command started (node times are
    /// relative to this).
    pub offset_us: u64,
    pub duration_us: u64,
    pub success: bool,
    pub nodes: Vec<NodeReport>,
    /// Each node's dependencies, as positions in `nodes` (those the build covered).
    pub deps: Vec<Vec<usize>>,
    /// For each node, the run time its reused results took when they were made (a
    /// batch's: its reused items'), in microseconds: what the cache saved.
    pub saved_us: Vec<u64>,
}

impl Timeline {
    pub fn new(run_id: &str) -> Timeline {
        Timeline {
            run_id: run_id.to_string(),
            attempts: Vec::new(),
        }
    }

    /// Keep one attempt, which started `offset` after the command did. `seen`: the
    /// recorded run time (ms) of each cache entry the attempt reused, by key.
    pub fn record(&mut self, offset: Duration, v: &Validated, o: &Outcome, seen: &KeyMap<u64>) {
        let position: HashMap<usize, usize> = o
            .nodes
            .iter()
            .enumerate()
            .map(|(pos, r)| (r.index, pos))
            .collect();
        let deps = o
            .nodes
            .iter()
            .map(|r| {
                let mut d: Vec<usize> = if r.index < v.graph.len() {
                    v.graph
                        .dependencies(r.index)
                        .iter()
                        .filter_map(|(j, _)| position.get(j).copied())
                        .collect()
                } else {
                    Vec::new()
                };
                d.sort_unstable();
                d.dedup();
                d
            })
            .collect();
        let saved_ms = |key: &Option<crate::key::Key>| key.and_then(|k| seen.get(&k)).copied();
        let saved_us = o
            .nodes
            .iter()
            .map(|r| {
                let ms = match r.status {
                    Status::Cached | Status::Restored if r.items.is_empty() => {
                        saved_ms(&r.key).unwrap_or(0)
                    }
                    _ => r
                        .items
                        .iter()
                        .filter(|i| matches!(i.status, Status::Cached | Status::Restored))
                        .filter_map(|i| saved_ms(&Some(i.key)))
                        .fold(0u64, u64::saturating_add),
                };
                // Run times come from entries a remote may have sent.
                ms.saturating_mul(1000)
            })
            .collect();
        self.attempts.push(Attempt {
            offset_us: offset.as_micros() as u64,
            duration_us: o.duration.as_micros() as u64,
            success: o.success,
            nodes: o.nodes.clone(),
            deps,
            saved_us,
        });
    }

    pub fn last(&self) -> Option<&Attempt> {
        self.attempts.last()
    }

    /// The end of the last attempt, in microseconds since the command started.
    pub fn end_us(&self) -> u64 {
        self.attempts
            .iter()
            .map(|a| a.offset_us + a.duration_us)
            .max()
            .unwrap_or(0)
    }

    /// Nodes that failed in an earlier attempt and succeeded in the last one: what the
    /// repair fixed.
    pub fn repaired(&self) -> Vec<&str> {
        let Some((last, earlier)) = self.attempts.split_last() else {
            return Vec::new();
        };
        last.nodes
            .iter()
            .filter(|n| matches!(n.status, Status::Ran | Status::Cached | Status::Restored))
            .filter(|n| {
                earlier.iter().any(|a| {
                    a.nodes
                        .iter()
                        .any(|m| m.id == n.id && m.status == Status::Failed)
                })
            })
            .map(|n| n.id.as_str())
            .collect()
    }
}

impl Attempt {
    /// The chain of nodes that decided how long this attempt took: from the node that
    /// ended last, back through the dependency of each that ended last (positions in
    /// `nodes`, first to last).
    pub fn critical_path(&self) -> Vec<usize> {
        let ended = |i: &usize| self.nodes.get(*i).map(|n| n.end_us).unwrap_or(0);
        let took_part = |i: &usize| {
            self.nodes
                .get(*i)
                .is_some_and(|n| n.status != Status::Skipped)
        };
        let mut at = (0..self.nodes.len()).filter(took_part).max_by_key(ended);
        let mut path = Vec::new();
        while let Some(i) = at {
            path.push(i);
            at = self
                .deps
                .get(i)
                .into_iter()
                .flatten()
                .copied()
                .filter(took_part)
                .max_by_key(ended);
            // A dependency always ends before its dependent starts; a path longer than
            // the graph would mean a cycle in the reports, which must not hang the page.
            if path.len() > self.nodes.len() {
                break;
            }
        }
        path.reverse();
        path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(index: usize, id: &str, status: Status, start: u64, end: u64) -> NodeReport {
        NodeReport {
            executions: 1,
            duration: Duration::from_micros(end - start),
            end_us: end,
            ..NodeReport::new(index, id, "shell", status, start)
        }
    }

    #[test]
    fn the_critical_path_follows_the_dependency_that_ended_last() {
        // a → c, b → c, c → d; b ends after a, so the path is b, c, d.
        let attempt = Attempt {
            offset_us: 0,
            duration_us: 100,
            success: true,
            nodes: vec![
                report(0, "a", Status::Ran, 0, 10),
                report(1, "b", Status::Ran, 0, 40),
                report(2, "c", Status::Ran, 40, 60),
                report(3, "d", Status::Ran, 60, 90),
                report(4, "e", Status::Skipped, 95, 95),
            ],
            deps: vec![vec![], vec![], vec![0, 1], vec![2], vec![3]],
            saved_us: vec![0; 5],
        };
        assert_eq!(attempt.critical_path(), vec![1, 2, 3]);
    }
}
