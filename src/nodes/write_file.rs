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
    summary: "Writes text to a file atomically, or appends to it (an effect, done once).",
    version: 2,
    params: &[
        req("file_path", ParamKind::String)
            .doc("The file to write, inside the workspace (or an --allow-write directory)."),
        req("content", ParamKind::Any).doc("What to write (objects and arrays as JSON)."),
        opt("append", ParamKind::Bool).doc(
            "Append instead of replacing (default false); appends happen exactly once per key.",
        ),
        opt("encoding", ParamKind::String)
            .doc("Accepted for pflow compatibility; text is written as UTF-8."),
        opt("content_is_binary", ParamKind::Bool)
            .doc("content is base64 to decode before writing (default false)."),
    ],
    outputs: &[
        out("written", OutputKind::Scalar).doc("true."),
        out("file_path", OutputKind::Text).doc("The path as given."),
        out("bytes", OutputKind::Scalar).doc("Bytes written."),
    ],
    reads_files: &[],
    removes_files: &[],
    writes_files: &["file_path"],
    key_env: &[],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &[],
    secret_params: &[],
    secret_header_params: &[],
    // An append is announced before it happens (see `append_once`).
    announces_effects: true,
    repeats_effects: super::always,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: None,
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
    let held = ctx.hold(&path)?;
    let append = bool_param(params, "append", false)?;
    let mut kept = Vec::new();
    if append {
        append_once(&path, &held, &content, ctx)?;
    } else {
        if held.at().is_dir() {
            return Err(NodeError::new(
                ErrorCategory::File,
                format!("cannot write '{given}': it is a directory"),
            ));
        }
        kept.extend(ctx.keep_hand_edit(&held, &content)?);
        write_atomic(held.at(), &content).map_err(|e| file_error("write", &path, &e))?;
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
        kept,
    })
}

/// Append `content` to `path`, exactly once per key: the append is announced first, so a
/// run after a crash between the append and its cache record finds it done.
fn append_once(
    path: &std::path::Path,
    held: &crate::workspace::Held,
    content: &[u8],
    ctx: &RunContext,
) -> Result<(), NodeError> {
    use crate::cache::intents::Append;
    let shown = path.to_string_lossy().into_owned();
    if let Some(earlier) = ctx.intent.and_then(|i| i.previous()) {
        if earlier.path == shown && earlier.len == content.len() as u64 && earlier.done() {
            return Ok(());
        }
    }
    // A link at the last name is followed, to a file that exists (nothing is created
    // where it leads), and where it led is asked of the open file.
    let mut f = {
        use std::os::unix::fs::OpenOptionsExt;
        let mut how = std::fs::OpenOptions::new();
        how.append(true);
        match how
            .clone()
            .create(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(held.at())
        {
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => how.open(held.at()),
            opened => opened,
        }
    }
    .map_err(|e| file_error("open", path, &e))?;
    ctx.write_roots
        .check_open(&f, path)
        .map_err(|why| NodeError::new(ErrorCategory::File, why))?;
    let offset = f
        .metadata()
        .map_err(|e| file_error("read the size of", path, &e))?
        .len();
    if let Some(intent) = ctx.intent {
        let announced = Append {
            path: shown,
            offset,
            len: content.len() as u64,
            digest: blake3::hash(content).to_hex().to_string(),
        };
        intent.announce(&announced).map_err(|e| {
            NodeError::new(
                ErrorCategory::File,
                format!(
                    "cannot record the append to '{}' before doing it: {e}",
                    path.display()
                ),
            )
        })?;
    }
    f.write_all(content)
        .map_err(|e| file_error("append to", path, &e))?;
    // A crash here, before the result is recorded, must not append twice (tests kill the
    // process at this point; debug builds only).
    if cfg!(debug_assertions) && std::env::var_os("PFLOW_TEST_EXIT_AFTER_APPEND").is_some() {
        std::process::exit(99);
    }
    Ok(())
}
