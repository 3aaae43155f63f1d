//! Node failures, classified by what happened.
//!
//! A node reports its failure with an [`ErrorCategory`] chosen where the failure is
//! observed (a shell exit code, an HTTP status, a missing file), never by matching message
//! text later. The category decides whether an LLM repair is worth trying.

/// How every message about a bug in pflow begins (the panic hook's, and a node's whose
/// run panicked). Tests look for it: a run that prints it has crashed.
pub const INTERNAL_ERROR: &str = "internal error in pflow";

use serde::Serialize;
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCategory {
    /// A template did not resolve, or resolved to a value of the wrong shape.
    Template,
    /// A param or the workflow itself is invalid.
    Validation,
    /// A shell command exited non-zero.
    Shell,
    /// A file the node reads does not exist.
    MissingFile,
    /// Another file problem (permission, destination exists, ...).
    File,
    /// An HTTP 4xx other than auth and rate limit.
    Http,
    Auth,
    RateLimit,
    Network,
    Timeout,
    Server,
    /// An LLM reply that could not be used.
    LlmOutput,
    MissingApiKey,
    Interrupted,
    /// A failure in pflow itself (cache I/O and the like).
    Internal,
}

impl ErrorCategory {
    /// Can a change to the workflow plausibly fix this?
    pub fn repairable(&self, status: Option<u16>) -> bool {
        match self {
            ErrorCategory::Template
            | ErrorCategory::Validation
            | ErrorCategory::Shell
            | ErrorCategory::MissingFile
            | ErrorCategory::File
            | ErrorCategory::LlmOutput => true,
            ErrorCategory::Http => matches!(status, Some(400 | 404 | 422) | None),
            ErrorCategory::Auth
            | ErrorCategory::RateLimit
            | ErrorCategory::Network
            | ErrorCategory::Timeout
            | ErrorCategory::Server
            | ErrorCategory::MissingApiKey
            | ErrorCategory::Interrupted
            | ErrorCategory::Internal => false,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCategory::Template => "template",
            ErrorCategory::Validation => "validation",
            ErrorCategory::Shell => "shell",
            ErrorCategory::MissingFile => "missing_file",
            ErrorCategory::File => "file",
            ErrorCategory::Http => "http",
            ErrorCategory::Auth => "auth",
            ErrorCategory::RateLimit => "rate_limit",
            ErrorCategory::Network => "network",
            ErrorCategory::Timeout => "timeout",
            ErrorCategory::Server => "server",
            ErrorCategory::LlmOutput => "llm_output",
            ErrorCategory::MissingApiKey => "missing_api_key",
            ErrorCategory::Interrupted => "interrupted",
            ErrorCategory::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A node that failed: why, and whatever partial outputs it produced (a failed shell
/// command still has stdout, stderr and an exit code, which an error handler may use).
#[derive(Debug, Clone, PartialEq)]
pub struct NodeError {
    pub category: ErrorCategory,
    pub message: String,
    pub outputs: Map<String, Value>,
    /// HTTP status, when the failure was an HTTP response.
    pub status: Option<u16>,
    /// For unresolved templates: the fields that exist at the deepest resolvable point.
    pub available: Vec<(String, String)>,
}

impl NodeError {
    pub fn new(category: ErrorCategory, message: impl Into<String>) -> Self {
        NodeError {
            category,
            message: message.into(),
            outputs: Map::new(),
            status: None,
            available: Vec::new(),
        }
    }

    pub fn with_outputs(mut self, outputs: Map<String, Value>) -> Self {
        self.outputs = outputs;
        self
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    pub fn repairable(&self) -> bool {
        self.category.repairable(self.status)
    }

    /// The tail of stderr, when the node produced one.
    pub fn stderr_tail(&self, max: usize) -> Option<String> {
        let s = self.outputs.get("stderr")?.as_str()?;
        if s.is_empty() {
            return None;
        }
        let start = s.len().saturating_sub(max);
        let start = (start..s.len())
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(s.len());
        Some(s[start..].to_string())
    }

    pub fn exit_code(&self) -> Option<i64> {
        self.outputs.get("exit_code")?.as_i64()
    }
}

impl fmt::Display for NodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for NodeError {}
