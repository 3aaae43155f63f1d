//! Colour on the terminal: on when stderr is a terminal, unless `NO_COLOR` is set;
//! `CLICOLOR_FORCE` turns it on anywhere; `--color always|never` wins over both (as
//! cargo and ripgrep do). Decided once, before a build prints anything.

use crate::executor::Status;
use std::sync::atomic::{AtomicBool, Ordering};

static ON: AtomicBool = AtomicBool::new(false);

/// `--color`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum When {
    Auto,
    Always,
    Never,
}

/// Decide, from the flag, the environment and whether stderr is a terminal.
pub fn decide(when: When) {
    let env = |n: &str| std::env::var_os(n).filter(|v| !v.is_empty());
    let on = match when {
        When::Always => true,
        When::Never => false,
        When::Auto => {
            if env("NO_COLOR").is_some() {
                false
            } else if env("CLICOLOR_FORCE").is_some_and(|v| v != "0") {
                true
            } else {
                use std::io::IsTerminal;
                std::io::stderr().is_terminal() && env("TERM").is_none_or(|t| t != "dumb")
            }
        }
    };
    ON.store(on, Ordering::Relaxed);
}

pub fn enabled() -> bool {
    ON.load(Ordering::Relaxed)
}

pub const RESET: &str = "\x1b[0m";

/// The escape that starts a status's colour.
pub fn of(status: Status) -> &'static str {
    match status {
        Status::Ran => "\x1b[32m",      // green
        Status::Cached => "\x1b[2m",    // dim
        Status::Restored => "\x1b[36m", // cyan
        Status::Failed => "\x1b[1;31m", // bold red
        Status::Skipped => "\x1b[33m",  // yellow
    }
}

/// `text` in bold red when colour is on (`error:`).
pub fn error(text: &str) -> String {
    paint("\x1b[1;31m", text)
}

/// `text` in yellow when colour is on (`warning:`).
pub fn warning(text: &str) -> String {
    paint("\x1b[33m", text)
}

fn paint(on: &str, text: &str) -> String {
    if enabled() {
        format!("{on}{text}{RESET}")
    } else {
        text.to_string()
    }
}
