//! `echo`: a pure, in-process node for tests and benchmarks.

use super::{bool_param, num_param, opt, out, ranged};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::NodeError;
use crate::template::render_text;
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "echo",
    summary: "A pure, in-process node for tests and benchmarks: repeats a message.",
    version: 1,
    params: &[
        opt("message", ParamKind::Any).doc("The message (default \"Hello, World!\")."),
        ranged("count", ParamKind::Integer, 1.0, 10_000.0)
            .doc("How many times to repeat it, joined by spaces (default 1)."),
        opt("data", ParamKind::Any).doc("Any value, passed through to the data output."),
        opt("prefix", ParamKind::String).doc("Text put before the result."),
        opt("suffix", ParamKind::String).doc("Text put after the result."),
        opt("uppercase", ParamKind::Bool).doc("Upper-case the result (default false)."),
    ],
    outputs: &[
        out("echo", OutputKind::Text).doc("The result."),
        out("metadata", OutputKind::Json)
            .doc("original_message, count and whether the message was modified."),
        out("data", OutputKind::Json).doc("The data param, unchanged."),
    ],
    reads_files: &[],
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

fn run(params: &Map<String, Value>, _ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let original = params
        .get("message")
        .map(|m| render_text(m).into_owned())
        .unwrap_or_else(|| "Hello, World!".to_string());
    let count = num_param(params, "count")?
        .unwrap_or(1.0)
        .clamp(1.0, 10_000.0) as usize;
    let mut message = vec![original.as_str(); count].join(" ");
    if let Some(Value::String(p)) = params.get("prefix") {
        message = format!("{p}{message}");
    }
    if let Some(Value::String(s)) = params.get("suffix") {
        message.push_str(s);
    }
    if bool_param(params, "uppercase", false)? {
        message = message.to_uppercase();
    }
    let mut outputs = Map::new();
    let modified = message != original;
    outputs.insert("echo".into(), Value::String(message));
    let mut meta = Map::new();
    meta.insert("original_message".into(), Value::String(original));
    meta.insert("count".into(), Value::from(count));
    meta.insert("modified".into(), Value::Bool(modified));
    outputs.insert("metadata".into(), Value::Object(meta));
    if let Some(d) = params.get("data") {
        outputs.insert("data".into(), d.clone());
    }
    Ok(NodeOutput::new(outputs))
}
