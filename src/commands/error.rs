//! How a command ends: a typed exit code, and the one error type whose [`Error::code`]
//! decides it. [`super::finish`] is the only place that prints an [`Error`].

use crate::diagnostic::Diagnostic;
use crate::validate::Report;
use serde_json::Value;

/// pflow's exit codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Ok,
    /// The workflow ran and failed (or a check found problems).
    Failed,
    /// Bad input: arguments, a workflow, a file. Nothing ran.
    Invalid,
    /// Ctrl-C.
    Interrupted,
}

impl ExitCode {
    pub fn as_i32(self) -> i32 {
        match self {
            ExitCode::Ok => 0,
            ExitCode::Failed => 1,
            ExitCode::Invalid => 2,
            ExitCode::Interrupted => 130,
        }
    }
}

/// Why a command stopped short.
#[derive(Debug)]
pub enum Error {
    /// One line for stderr (`error: ...`), bad input.
    Invalid(String),
    /// One line for stderr, the command failed.
    Failed(String),
    /// A workflow's diagnostics (`file` as the user named it).
    Diagnostics { file: String, report: Report },
    /// A JSON document for stdout (commands asked for `--output-format json`).
    Document { json: Value, code: ExitCode },
}

impl Error {
    pub fn invalid(message: impl Into<String>) -> Error {
        Error::Invalid(message.into())
    }

    pub fn diagnostics(file: &str, report: Report) -> Error {
        Error::Diagnostics {
            file: file.to_string(),
            report,
        }
    }

    /// One diagnostic about `file`.
    pub fn diagnostic(file: &str, d: Diagnostic) -> Error {
        Error::diagnostics(
            file,
            Report {
                errors: vec![d],
                warnings: Vec::new(),
            },
        )
    }

    pub fn code(&self) -> ExitCode {
        match self {
            Error::Invalid(_) | Error::Diagnostics { .. } => ExitCode::Invalid,
            Error::Failed(_) => ExitCode::Failed,
            Error::Document { code, .. } => *code,
        }
    }
}

/// What a command returns: the exit code of a command that did its work (a failed build
/// is `Ok(ExitCode::Failed)`: it ran and reported), or the error that stopped it.
pub type Result<T = ExitCode> = std::result::Result<T, Error>;
