//! `llm`: one prompt to a language model.

use super::{opt, out, req};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "llm",
    version: 1,
    params: &[
        req("prompt", ParamKind::Any),
        opt("system", ParamKind::String),
        opt("model", ParamKind::String),
        opt("max_tokens", ParamKind::Integer),
        opt("temperature", ParamKind::Number),
        opt("images", ParamKind::Any),
    ],
    outputs: &[
        out("response", OutputKind::Text),
        out("llm_usage", OutputKind::Json),
    ],
    reads_files: &[],
    key_env: &[],
    run,
};

fn run(_params: &Map<String, Value>, _ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    Err(NodeError::new(
        ErrorCategory::Internal,
        "the llm node is not available in this build yet",
    ))
}
