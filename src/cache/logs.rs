//! What each node of a workflow last printed: the tails of its stdout and stderr, with
//! the key of the run that printed them. `--output-logs` replays a tail for a node
//! reused from the cache (a warning a step printed is not lost once it is cached, as
//! Turborepo replays logs), and `pflow log` shows a node's last output. Kept per
//! workflow beside the build records, redacted before it is written, bounded per node.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::Path;

/// Lines and bytes kept of each stream.
pub const TAIL_LINES: usize = 20;
pub const TAIL_BYTES: usize = 4096;

/// The tails of one run's output.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeLog {
    pub stdout: String,
    pub stderr: String,
}

impl NodeLog {
    /// The tails of a node's `stdout` and `stderr` outputs, if it has any text there,
    /// after `scrub` ran over the whole of each (a tail cut first could keep part of a
    /// secret that `scrub` would no longer recognise).
    pub fn of(outputs: &Map<String, Value>, scrub: impl Fn(&str) -> String) -> Option<NodeLog> {
        let text = |name: &str| {
            outputs
                .get(name)
                .and_then(Value::as_str)
                .map(|s| tail(&scrub(s)))
        };
        let log = NodeLog {
            stdout: text("stdout").unwrap_or_default(),
            stderr: text("stderr").unwrap_or_default(),
        };
        (!log.stdout.is_empty() || !log.stderr.is_empty()).then_some(log)
    }
}

/// The last [`TAIL_LINES`] lines of `text`, at most [`TAIL_BYTES`] bytes (cut at a
/// character boundary), without a trailing newline.
pub fn tail(text: &str) -> String {
    let text = text.trim_end_matches('\n');
    let mut start = text.len();
    for _ in 0..TAIL_LINES {
        match text[..start].rfind('\n') {
            Some(i) => start = i,
            None => {
                start = 0;
                break;
            }
        }
    }
    let mut t = text[start..].trim_start_matches('\n');
    if t.len() > TAIL_BYTES {
        let mut cut = t.len() - TAIL_BYTES;
        while !t.is_char_boundary(cut) {
            cut += 1;
        }
        t = &t[cut..];
    }
    t.to_string()
}

/// One node's last run: its key (hex), how it ended, what it printed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logged {
    pub key: Option<String>,
    pub status: String,
    pub log: NodeLog,
}

/// Every node's last output, for one workflow.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Logs {
    nodes: BTreeMap<String, Logged>,
}

impl Logs {
    pub fn load(cache_root: &Path, workflow_name: &str) -> Logs {
        std::fs::read(path(cache_root, workflow_name))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn get(&self, id: &str) -> Option<&Logged> {
        self.nodes.get(id)
    }

    /// What node `id` printed when it ran with `key`, if that is what was recorded.
    /// Asked for every reused node of a build: the key is spelled out only for the few
    /// nodes that printed something.
    pub fn replay(&self, id: &str, key: &crate::key::Key) -> Option<&NodeLog> {
        let logged = self.nodes.get(id)?;
        (logged.key.as_deref() == Some(key.hex().as_str())).then_some(&logged.log)
    }

    /// Node `id` ran (or failed) and printed `log`; a node that printed nothing leaves
    /// no record. Says whether anything changed (a no-op build writes nothing).
    pub fn record(
        &mut self,
        id: &str,
        key: Option<String>,
        status: &str,
        log: Option<NodeLog>,
    ) -> bool {
        match log {
            Some(log) => {
                let new = Logged {
                    key,
                    status: status.to_string(),
                    log,
                };
                self.nodes.insert(id.to_string(), new.clone()) != Some(new)
            }
            None => self.nodes.remove(id).is_some(),
        }
    }

    /// Write atomically (best effort: logs are a convenience, never a result).
    pub fn save(&self, cache_root: &Path, workflow_name: &str) {
        if let Ok(bytes) = serde_json::to_vec(self) {
            let _ = crate::fsutil::write_atomic(&path(cache_root, workflow_name), &bytes);
        }
    }
}

fn path(cache_root: &Path, workflow_name: &str) -> std::path::PathBuf {
    super::layout::record_path(cache_root, workflow_name, super::layout::Record::Logs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tail_keeps_the_last_lines_and_bytes() {
        let many: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let t = tail(&many);
        assert!(t.starts_with("line 80\n") && t.ends_with("line 99"), "{t}");
        assert_eq!(tail("one\ntwo\n"), "one\ntwo");
        let wide = "é".repeat(5000);
        let t = tail(&wide);
        assert!(t.len() <= TAIL_BYTES && t.chars().all(|c| c == 'é'));
    }

    #[test]
    fn a_record_replays_only_for_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = Logs::default();
        let outputs = serde_json::json!({"stderr": "warning: x\n"});
        let log = NodeLog::of(outputs.as_object().unwrap(), str::to_string);
        let (k1, k2) = (crate::key::Key([1; 32]), crate::key::Key([2; 32]));
        logs.record("a", Some(k1.hex()), "ran", log.clone());
        logs.save(dir.path(), "wf.json");
        let back = Logs::load(dir.path(), "wf.json");
        assert_eq!(back.replay("a", &k1), log.as_ref());
        assert_eq!(back.replay("a", &k2), None);
    }
}
