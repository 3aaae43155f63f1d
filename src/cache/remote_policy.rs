//! When the remote cache gives up: it can only make a build faster, never fail it.
//!
//! A transport failure (cannot connect, timeout) or refused credentials switch the remote
//! off for the rest of the process at once; other error answers (5xx, unexpected
//! statuses) do so after [`MAX_FAILURES`]. Either way there is exactly one warning about
//! the server. Corrupt downloads are a miss each, with one warning per process.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;

/// Error answers (other than refused credentials) tolerated before the remote is dropped.
pub const MAX_FAILURES: u32 = 3;

/// What went wrong with one request or download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// No usable connection (refused, timed out, TLS, client set-up): off at once.
    Transport(String),
    /// Credentials refused: off at once.
    Refused(String),
    /// An unexpected answer: off after [`MAX_FAILURES`].
    Answer(String),
    /// A download that does not match what it claims: this entry is a miss.
    Corrupt(String),
}

/// The remote's health over one process, shared by every worker.
#[derive(Debug)]
pub struct FailurePolicy {
    /// What the warnings call the server (its URL without credentials).
    server: String,
    off: AtomicBool,
    failures: AtomicU32,
    warned_corrupt: AtomicBool,
    warnings: Mutex<Vec<String>>,
}

impl FailurePolicy {
    pub fn new(server: String) -> FailurePolicy {
        FailurePolicy {
            server,
            off: AtomicBool::new(false),
            failures: AtomicU32::new(0),
            warned_corrupt: AtomicBool::new(false),
            warnings: Mutex::new(Vec::new()),
        }
    }

    /// Still in use.
    pub fn active(&self) -> bool {
        !self.off.load(Ordering::Relaxed)
    }

    /// Take one problem into account; returns whether the remote is still in use.
    pub fn record(&self, problem: Problem) -> bool {
        match problem {
            Problem::Transport(why) | Problem::Refused(why) => self.switch_off(&why),
            Problem::Answer(why) => {
                let n = self.failures.fetch_add(1, Ordering::SeqCst) + 1;
                if n >= MAX_FAILURES {
                    self.switch_off(&format!("{why} ({n} failed requests)"));
                }
            }
            Problem::Corrupt(what) => {
                if !self.warned_corrupt.swap(true, Ordering::SeqCst) {
                    self.warn(format!(
                        "remote cache {}: {what}; not using that entry (the node runs here instead)",
                        self.server
                    ));
                }
            }
        }
        self.active()
    }

    /// The warnings produced since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        std::mem::take(&mut *self.warnings.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn switch_off(&self, why: &str) {
        if !self.off.swap(true, Ordering::SeqCst) {
            self.warn(format!(
                "remote cache {}: {why}; using the local cache only for the rest of this build",
                self.server
            ));
        }
    }

    fn warn(&self, text: String) {
        self.warnings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> FailurePolicy {
        FailurePolicy::new("http://cache/".into())
    }

    #[test]
    fn a_transport_failure_switches_off_at_once_with_one_warning() {
        let p = policy();
        assert!(!p.record(Problem::Transport("cannot connect".into())));
        assert!(!p.record(Problem::Transport("cannot connect".into())));
        let w = p.take_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("cannot connect; using the local cache only"));
    }

    #[test]
    fn refused_credentials_switch_off_at_once() {
        let p = policy();
        assert!(!p.record(Problem::Refused("GET ac/x was refused (HTTP 401)".into())));
        assert_eq!(p.take_warnings().len(), 1);
    }

    #[test]
    fn error_answers_are_tolerated_until_the_limit() {
        let p = policy();
        for _ in 1..MAX_FAILURES {
            assert!(p.record(Problem::Answer("GET answered HTTP 500".into())));
        }
        assert!(p.take_warnings().is_empty());
        assert!(!p.record(Problem::Answer("GET answered HTTP 500".into())));
        let w = p.take_warnings();
        assert_eq!(w.len(), 1);
        assert!(
            w[0].contains(&format!("({MAX_FAILURES} failed requests)")),
            "{w:?}"
        );
    }

    #[test]
    fn corrupt_downloads_warn_once_and_keep_the_remote() {
        let p = policy();
        assert!(p.record(Problem::Corrupt("blob a is corrupt".into())));
        assert!(p.record(Problem::Corrupt("blob b is corrupt".into())));
        let w = p.take_warnings();
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("blob a is corrupt; not using that entry"));
        assert!(p.active());
    }
}
