//! `pflow log WORKFLOW NODE`: what a node printed when it last ran or failed in a
//! build of the workflow ([`crate::cache::logs`]), redacted as it was stored.

use super::{Error, ExitCode, Result};
use crate::cache::logs::Logs;
use crate::report::out_line;
use std::path::Path;

pub fn run(workflow: &str, node: &str, cache_dir: &Path) -> Result {
    let path = super::resolve_workflow_path(workflow).map_err(|d| Error::invalid(d.message))?;
    let logs = Logs::load(
        cache_dir,
        &super::records_name::records_name(&path, cache_dir),
    );
    let Some(logged) = logs.get(node) else {
        return Err(Error::invalid(format!(
            "no output of node '{node}' is recorded for {workflow} in {}: it printed nothing when it last ran, or it has not run with this cache",
            cache_dir.display()
        )));
    };
    out_line(&format!(
        "{node}: {}{}",
        logged.status,
        logged
            .key
            .as_deref()
            // The file may have been edited by hand: cut by characters, not bytes.
            .map(|k| format!(" (key {})", k.chars().take(12).collect::<String>()))
            .unwrap_or_default()
    ));
    for (stream, text) in [
        ("stdout", &logged.log.stdout),
        ("stderr", &logged.log.stderr),
    ] {
        if !text.is_empty() {
            out_line(&format!("--- {stream}"));
            out_line(text);
        }
    }
    Ok(ExitCode::Ok)
}
