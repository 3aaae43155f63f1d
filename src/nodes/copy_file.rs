//! `copy-file`: copy a file (atomically at the destination).

use super::read_file::expand_path;
use super::{bool_param, file_error, opt, out, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::fsutil::write_atomic;
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "copy-file",
    summary: "Copies a file, atomically at the destination.",
    version: 1,
    params: &[
        req("source_path", ParamKind::String)
            .doc("The file to copy; its content is part of the key."),
        req("dest_path", ParamKind::String)
            .doc("Where the copy goes, inside the workspace (or an --allow-write directory)."),
        opt("overwrite", ParamKind::Bool)
            .doc("Replace a destination that holds other content (default false)."),
    ],
    outputs: &[
        out("copied", OutputKind::Scalar).doc("true."),
        out("source_path", OutputKind::Text).doc("The source as given."),
        out("dest_path", OutputKind::Text).doc("The destination as given."),
        out("bytes", OutputKind::Scalar).doc("Bytes copied."),
    ],
    reads_files: &["source_path"],
    removes_files: &[],
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

/// Read the source and check the destination, shared by copy-file and move-file.
pub(crate) fn prepare(
    params: &Map<String, Value>,
    ctx: &RunContext,
) -> Result<Prepared, NodeError> {
    let src = expand_path(str_param(params, "source_path")?);
    let dest = expand_path(str_param(params, "dest_path")?);
    if src.is_dir() {
        return Err(NodeError::new(
            ErrorCategory::File,
            format!("source '{}' is a directory, not a file", src.display()),
        ));
    }
    // Refused before the source is read; folders made only once it was.
    let held = ctx.hold_existing(&dest, false)?;
    let bytes = std::fs::read(&src).map_err(|e| file_error("read", &src, &e))?;
    let held = match held {
        Some(held) => held,
        None => ctx.hold(&dest)?,
    };
    let overwrite = bool_param(params, "overwrite", false)?;
    if !overwrite {
        if let Ok(existing) = std::fs::read(held.at()) {
            // Re-running a copy whose result is already there is not a conflict, and
            // neither is replacing what this node itself wrote last time (a build tool
            // updates its own outputs); anything else is the user's file.
            if existing != bytes && !ctx.is_own_output(&held) {
                return Err(NodeError::new(
                    ErrorCategory::File,
                    format!(
                        "destination '{}' already exists with other content; set \"overwrite\": true to replace it",
                        dest.display()
                    ),
                ));
            }
        }
    }
    Ok(Prepared {
        src,
        dest,
        held,
        bytes,
    })
}

/// A copy's source and content, and its destination as given and held.
pub(crate) struct Prepared {
    pub src: std::path::PathBuf,
    pub dest: std::path::PathBuf,
    pub held: crate::workspace::Held,
    pub bytes: Vec<u8>,
}

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let Prepared {
        src,
        dest,
        held,
        bytes,
    } = prepare(params, ctx)?;
    let kept = ctx.keep_hand_edit(&held, &bytes)?;
    write_atomic(held.at(), &bytes).map_err(|e| file_error("write", &dest, &e))?;
    let mut out = finish("copied", params, dest, bytes.len())?;
    out.kept.extend(kept);
    out.files_read.push((src, blake3::hash(&bytes)));
    Ok(out)
}

/// The outputs of copy-file and move-file: paths as given (not expanded, so they are
/// the same on every machine), the byte count, and the destination as a written file.
pub(crate) fn finish(
    verb: &str,
    params: &Map<String, Value>,
    dest: std::path::PathBuf,
    bytes: usize,
) -> Result<NodeOutput, NodeError> {
    let mut outputs = Map::new();
    outputs.insert(verb.into(), Value::Bool(true));
    for p in ["source_path", "dest_path"] {
        outputs.insert(p.into(), Value::String(str_param(params, p)?.to_string()));
    }
    outputs.insert("bytes".into(), Value::from(bytes));
    Ok(NodeOutput {
        outputs,
        files_written: vec![dest],
        ..Default::default()
    })
}
