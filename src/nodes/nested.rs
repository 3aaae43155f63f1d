//! The two internal types a nested workflow expands into (see [`crate::nested`]): one
//! node hands the parent's values to the child's inputs, one gathers the child's outputs
//! for the parent. Both only pass their resolved params on; no workflow can name them.

use super::{opt, NodeOutput, NodeSpec, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use serde_json::{Map, Value};

/// `workflow` as written: what `pflow nodes` and the schema say about it. Loading the
/// file expands every such node, so this one never runs.
pub static WORKFLOW: NodeSpec = NodeSpec {
    name: "workflow",
    summary: "Runs another workflow as part of this one: its nodes join the build graph as NODE/STEP, each cached on its own.",
    params: &[
        opt("workflow_ref", ParamKind::String)
            .doc("The workflow file to run (JSON or .pflow.md), relative to this file."),
        opt("workflow_name", ParamKind::String).doc("A saved workflow to run, by name."),
        opt("workflow_ir", ParamKind::Object).doc("The workflow to run, written inline."),
        opt("workflow", ParamKind::String)
            .doc("A file path or a saved workflow's name (pflow 0.16's spelling)."),
        opt("param_mapping", ParamKind::Object)
            .doc("The nested workflow's inputs: name → value or template of this workflow."),
        opt("inputs", ParamKind::Object).doc("The same as param_mapping (pflow 0.16's spelling)."),
        opt("output_mapping", ParamKind::Object).doc(
            "Its declared outputs this node exposes: output name → field name (default: all, as named).",
        ),
        opt("storage_mode", ParamKind::String)
            .doc("\"mapped\" (default) or \"isolated\": the nested workflow sees only its inputs."),
        opt("max_depth", ParamKind::Integer)
            .doc("How deep workflows may nest below this node (default 10)."),
        opt("error_action", ParamKind::String).doc("Only \"error\" (the default)."),
    ],
    run: not_expanded,
    ..PASS
};

fn not_expanded(_: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    Err(NodeError::new(
        ErrorCategory::Validation,
        format!("workflow node '{}' was not expanded", ctx.node_id),
    ))
}

/// `run/@inputs`: each param is one of the child's inputs, resolved in the parent.
pub static INPUTS: NodeSpec = NodeSpec {
    name: "workflow-inputs",
    summary: "The inputs of a nested workflow, resolved in the workflow that runs it.",
    ..PASS
};

/// `run`: each param is one output of the nested workflow, as the parent names it. It
/// keeps the type the workflow gave the node.
pub static OUTPUTS: NodeSpec = NodeSpec {
    name: "workflow",
    summary: "The outputs of a nested workflow, named as the workflow that runs it maps them.",
    ..PASS
};

const PASS: NodeSpec = NodeSpec {
    name: "",
    summary: "",
    version: 1,
    params: &[],
    outputs: &[],
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
    open_outputs: true,
    identity: "",
    start: None,
    run,
};

/// An internal type, for a node that expansion made.
pub fn lookup(name: &str) -> Option<&'static NodeSpec> {
    [&INPUTS, &OUTPUTS].into_iter().find(|s| s.name == name)
}

/// Is `spec` one of the internal types?
pub fn is_internal(spec: &NodeSpec) -> bool {
    std::ptr::eq(spec, &INPUTS) || std::ptr::eq(spec, &OUTPUTS)
}

fn run(params: &Map<String, Value>, _ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    Ok(NodeOutput::new(params.clone()))
}
