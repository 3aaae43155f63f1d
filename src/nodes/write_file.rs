//! `write-file`: write text to a file atomically (or append to it).

use super::read_file::expand_path;
use super::{bool_param, file_error, opt, out, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::fsutil::write_atomic;
use serde_json::{Map, Value};
use std::io::Write;

pub static SPEC: NodeSpec = NodeSpec {
    name: "write-file",
    version: 2,
    params: &[
        req("file_path", ParamKind::String),
        req("content", ParamKind::Any),
        opt("append", ParamKind::Bool),
        opt("encoding", ParamKind::String),
        opt("content_is_binary", ParamKind::Bool),
    ],
    outputs: &[
        out("written", OutputKind::Scalar),
        out("file_path", OutputKind::Text),
        out("bytes", OutputKind::Scalar),
    ],
    reads_files: &[],
    removes_files: &[],
    writes_files: &["file_path"],
    key_env: &[],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &[],
    secret_params: &[],
    run,
};

fn content_text(v: &Value) -> Result<String, NodeError> {
    Ok(match v {
        Value::Null => {
            return Err(NodeError::new(
                ErrorCategory::Validation,
                "param 'content' is null; there is nothing to write",
            ))
        }
        Value::String(s) => s.clone(),
        Value::Object(_) | Value::Array(_) => serde_json::to_string_pretty(v).unwrap_or_default(),
        other => crate::template::render_text(other).into_owned(),
    })
}

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let given = str_param(params, "file_path")?;
    let path = expand_path(given);
    let text = content_text(params.get("content").unwrap_or(&Value::Null))?;
    // Base64 content (from a binary read-file or shell output) is written as its bytes.
    let content: Vec<u8> = if bool_param(params, "content_is_binary", false)? {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| {
                NodeError::new(
                    ErrorCategory::Validation,
                    format!("content_is_binary is true but 'content' is not base64: {e}"),
                )
            })?
    } else {
        text.into_bytes()
    };
    ctx.may_change(&path)?;
    let append = bool_param(params, "append", false)?;
    if append {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| file_error("create directory", dir, &e))?;
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| file_error("open", &path, &e))?;
        f.write_all(&content)
            .map_err(|e| file_error("append to", &path, &e))?;
    } else {
        if path.is_dir() {
            return Err(NodeError::new(
                ErrorCategory::File,
                format!("cannot write '{given}': it is a directory"),
            ));
        }
        write_atomic(&path, &content).map_err(|e| file_error("write", &path, &e))?;
    }
    let mut outputs = Map::new();
    outputs.insert("written".into(), Value::Bool(true));
    outputs.insert("file_path".into(), Value::String(given.to_string()));
    outputs.insert("bytes".into(), Value::from(content.len()));
    Ok(NodeOutput {
        outputs,
        // An append is an effect on a file others may write too (a log): done once per
        // key, never snapshotted, restored or rewritten.
        files_written: if append { Vec::new() } else { vec![path] },
        files_removed: Vec::new(),
        files_read: Vec::new(),
    })
}
