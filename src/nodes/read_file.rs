//! `read-file`: a file's content as raw text (not line-numbered).

use super::{file_error, opt, out, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::NodeError;
use base64::Engine;
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "read-file",
    summary: "Reads a file's content as text; the file's content is part of the node's key.",
    version: 1,
    params: &[
        req("file_path", ParamKind::String)
            .doc("The file to read (relative to the workspace; `~` expands)."),
        opt("encoding", ParamKind::String)
            .doc("Accepted for pflow compatibility; text is read as UTF-8, other bytes as base64."),
    ],
    outputs: &[
        out("content", OutputKind::Text).doc("The file's text (base64 when it is not UTF-8)."),
        out("file_path", OutputKind::Text).doc("The path as given."),
        out("content_is_binary", OutputKind::Scalar).doc("true when content is base64."),
    ],
    reads_files: &["file_path"],
    removes_files: &[],
    writes_files: &[],
    key_env: &[],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &[],
    secret_params: &[],
    secret_header_params: &[],
    announces_effects: false,
    repeats_effects: super::never,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: None,
    run,
};

/// Expand a leading `~/` to the home directory, as a shell would.
pub fn expand_path(p: &str) -> std::path::PathBuf {
    if let Some(rest) = p.strip_prefix("~/") {
        if let Some(home) = std::env::var_os("HOME") {
            return std::path::Path::new(&home).join(rest);
        }
    }
    std::path::PathBuf::from(p)
}

fn run(params: &Map<String, Value>, _ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let given = str_param(params, "file_path")?;
    let path = expand_path(given);
    if path.is_dir() {
        return Err(NodeError::new(
            crate::error::ErrorCategory::File,
            format!("cannot read '{given}': it is a directory"),
        ));
    }
    let bytes = std::fs::read(&path).map_err(|e| file_error("read", &path, &e))?;
    let used = blake3::hash(&bytes);
    let mut outputs = Map::new();
    match String::from_utf8(bytes) {
        Ok(text) => {
            outputs.insert("content".into(), Value::String(text));
            outputs.insert("content_is_binary".into(), Value::Bool(false));
        }
        Err(e) => {
            let b64 = base64::engine::general_purpose::STANDARD.encode(e.as_bytes());
            outputs.insert("content".into(), Value::String(b64));
            outputs.insert("content_is_binary".into(), Value::Bool(true));
        }
    }
    outputs.insert("file_path".into(), Value::String(given.to_string()));
    let mut out = NodeOutput::new(outputs);
    out.files_read.push((path, used));
    Ok(out)
}
