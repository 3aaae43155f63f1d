//! Which records in the cache a command reads and writes for a workflow: the build,
//! its no-op and edit paths, `--watch`, `pflow log`, and the MCP server, which names
//! its inline workflows' records for its child builds.

use std::path::Path;

/// Set by the MCP server for its builds of inline workflows: the name their records go
/// by instead of the temporary file's path (a variable rather than a flag, which every
/// shell completion would offer).
pub(in crate::commands) const RECORDS_AS_ENV: &str = "PFLOW_RECORDS_AS";

/// The name a workflow's records go by in the cache at `root`: as [`RECORDS_AS_ENV`]
/// says, else from its path ([`crate::cache::layout::records_name`]).
pub(super) fn records_name(file: &Path, root: &Path) -> String {
    match std::env::var(RECORDS_AS_ENV) {
        Ok(name) if !name.is_empty() => name,
        _ => crate::cache::layout::records_name(file, root),
    }
}
