//! `delete-file`: remove a file; a file that is already gone is not an error.

use super::read_file::expand_path;
use super::{file_error, opt, out, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "delete-file",
    summary: "Deletes a file (an effect: reused only while the file is still gone).",
    version: 1,
    params: &[
        req("file_path", ParamKind::String)
            .doc("The file to delete, inside the workspace (or an --allow-write directory)."),
        opt("confirm_delete", ParamKind::Bool).doc("Must not be false (default true)."),
    ],
    outputs: &[
        out("deleted", OutputKind::Scalar).doc("true."),
        out("existed", OutputKind::Scalar).doc("Whether the file was there."),
        out("file_path", OutputKind::Text).doc("The path as given."),
    ],
    reads_files: &[],
    removes_files: &["file_path"],
    writes_files: &[],
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
    let given = str_param(params, "file_path")?;
    // Read as validation reads it: "false" refuses as `false` does.
    if !super::bool_param(params, "confirm_delete", true)? {
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!("deletion of '{given}' not confirmed (confirm_delete is false)"),
        ));
    }
    let path = expand_path(given);
    let existed = match ctx.hold_existing(&path, false)? {
        None => false,
        Some(held) if held.at().is_dir() => {
            return Err(NodeError::new(
                ErrorCategory::File,
                format!("'{given}' is a directory; delete-file removes files only"),
            ))
        }
        Some(held) => match std::fs::remove_file(held.at()) {
            Ok(()) => true,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
            Err(e) => return Err(file_error("delete", &path, &e)),
        },
    };
    let mut outputs = Map::new();
    outputs.insert("deleted".into(), Value::Bool(true));
    outputs.insert("existed".into(), Value::Bool(existed));
    outputs.insert("file_path".into(), Value::String(given.to_string()));
    let mut out = NodeOutput::new(outputs);
    out.files_removed.push(path);
    Ok(out)
}
