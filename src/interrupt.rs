//! Ctrl-C: stop running children, let the build finish its bookkeeping, exit 130.
//!
//! `--watch` stops a build the same way when a file changes under it ([`cancel`]), then
//! clears the flag for the next build ([`reset`]); only a real Ctrl-C ([`signalled`])
//! ends the process.
//!
//! Shell nodes run in their own process groups and register them here, so an interrupt
//! kills whole pipelines (`sleep 10 | cat`), not just the `sh` at their head. The cache
//! stays consistent because every cache write is atomic and interrupted nodes are never
//! recorded.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Ctrl-C or SIGTERM arrived (a [`cancel`] does not set it).
static SIGNALLED: AtomicBool = AtomicBool::new(false);

fn groups() -> &'static Mutex<HashSet<i32>> {
    static GROUPS: OnceLock<Mutex<HashSet<i32>>> = OnceLock::new();
    GROUPS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// Install the Ctrl-C / SIGTERM handler (once per process).
pub fn install_handler() {
    let _ = ctrlc::set_handler(|| {
        SIGNALLED.store(true, Ordering::SeqCst);
        INTERRUPTED.store(true, Ordering::SeqCst);
        kill_all();
    });
}

/// Did the user interrupt the process (not just a build)?
pub fn signalled() -> bool {
    SIGNALLED.load(Ordering::SeqCst)
}

/// Stop the build in progress as Ctrl-C would (children killed, nothing interrupted
/// recorded), without ending the process.
pub fn cancel() {
    INTERRUPTED.store(true, Ordering::SeqCst);
    kill_all();
}

/// Let the next build run after a [`cancel`]; after Ctrl-C the flag stays.
pub fn reset() {
    if !signalled() {
        INTERRUPTED.store(false, Ordering::SeqCst);
    }
}

pub fn is_interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

pub fn register(pgid: i32) {
    if let Ok(mut g) = groups().lock() {
        g.insert(pgid);
    }
    // An interrupt that arrived while this child was starting must still reach it.
    if is_interrupted() {
        kill_group(pgid);
    }
}

pub fn unregister(pgid: i32) {
    if let Ok(mut g) = groups().lock() {
        g.remove(&pgid);
    }
}

pub fn kill_group(pgid: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

fn kill_all() {
    if let Ok(g) = groups().lock() {
        for &pgid in g.iter() {
            kill_group(pgid);
        }
    }
}
