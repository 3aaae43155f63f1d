//! `http`: one HTTP request.

use super::{opt, out, req};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use serde_json::{Map, Value};

pub static SPEC: NodeSpec = NodeSpec {
    name: "http",
    version: 1,
    params: &[
        req("url", ParamKind::String),
        opt("method", ParamKind::String),
        opt("headers", ParamKind::StringMap),
        opt("body", ParamKind::Any),
        opt("params", ParamKind::Object),
        opt("timeout", ParamKind::Number),
        opt("auth_token", ParamKind::String),
        opt("api_key", ParamKind::String),
        opt("api_key_header", ParamKind::String),
    ],
    outputs: &[
        out("response", OutputKind::Json),
        out("status_code", OutputKind::Scalar),
        out("response_headers", OutputKind::Json),
    ],
    reads_files: &[],
    key_env: &[],
    run,
};

fn run(_params: &Map<String, Value>, _ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    Err(NodeError::new(
        ErrorCategory::Internal,
        "the http node is not available in this build yet",
    ))
}
