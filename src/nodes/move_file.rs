//! `move-file`: move a file; across file systems, copy then delete.

use super::{file_error, opt, out, req};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::fsutil::write_atomic;
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "move-file",
    summary: "Moves a file (an effect: reused only while the source is still gone).",
    version: 1,
    params: &[
        req("source_path", ParamKind::String).doc("The file to move."),
        req("dest_path", ParamKind::String)
            .doc("Where it goes, inside the workspace (or an --allow-write directory)."),
        opt("overwrite", ParamKind::Bool)
            .doc("Replace a destination that holds other content (default false)."),
    ],
    outputs: &[
        out("moved", OutputKind::Scalar).doc("true."),
        out("source_path", OutputKind::Text).doc("The source as given."),
        out("dest_path", OutputKind::Text).doc("The destination as given."),
        out("bytes", OutputKind::Scalar).doc("Bytes moved."),
    ],
    // The source is gone after a move, so its content is not part of the key: a rebuild
    // reuses the result and restores the destination if it goes missing.
    reads_files: &[],
    removes_files: &["source_path"],
    writes_files: &["dest_path"],
    key_env: &[],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &[],
    secret_params: &[],
    secret_header_params: &[],
    announces_effects: false,
    repeats_effects: super::always,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: None,
    run,
};

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    // A move takes the source away: it changes both places.
    let from = ctx.hold_existing(
        &super::read_file::expand_path(super::str_param(params, "source_path")?),
        false,
    )?;
    let super::copy_file::Prepared {
        src,
        dest,
        held,
        bytes,
    } = super::copy_file::prepare(params, ctx)?;
    // The source was read, so its directory exists: held unless it went away since.
    let from = from.ok_or_else(|| {
        NodeError::new(
            ErrorCategory::File,
            format!("the directory of '{}' went away", src.display()),
        )
    })?;
    let kept = ctx.keep_hand_edit(&held, &bytes)?;
    if std::fs::rename(from.at(), held.at()).is_err() {
        write_atomic(held.at(), &bytes).map_err(|e| file_error("write", &dest, &e))?;
        std::fs::remove_file(from.at()).map_err(|e| file_error("remove", &src, &e))?;
    }
    let mut out = super::copy_file::finish("moved", params, dest, bytes.len())?;
    out.files_removed.push(src);
    out.kept.extend(kept);
    Ok(out)
}
