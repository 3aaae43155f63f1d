//! The end of a repair in text mode: why it stopped, or — loudly — that the build
//! succeeded only through a patch the workflow file does not have yet, and how to apply it.

use super::RepairSummary;
use crate::report::err_line;

pub fn print(summary: &RepairSummary, applied: bool, strict: bool) {
    if let Some(why) = &summary.stopped {
        err_line(&format!("repair: {why}"));
        return;
    }
    if !summary.succeeded {
        return;
    }
    let patches: Vec<String> = summary
        .patches
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    if summary.llm_calls == 0 {
        err_line(&format!(
            "repair: fixed by replaying proven patch {} (no model call)",
            patches.join(", ")
        ));
    } else {
        err_line(&format!(
            "repair: fixed after {} attempt{} ({} model call{}); patch{}: {}",
            summary.attempts,
            if summary.attempts == 1 { "" } else { "s" },
            summary.llm_calls,
            if summary.llm_calls == 1 { "" } else { "s" },
            if patches.len() == 1 { "" } else { "es" },
            patches.join(", ")
        ));
    }
    if applied {
        return;
    }
    err_line(&format!(
        "REPAIRED: this build succeeded only because pflow patched the workflow; {} itself is still broken{}.",
        summary.workflow,
        if strict { " (--strict: exit 1)" } else { "" }
    ));
    if let Some(command) = summary.apply_command() {
        err_line(&format!(
            "REPAIRED: to fix the file, run: {command}   (or build with --apply-repairs)"
        ));
    }
}
