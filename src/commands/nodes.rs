//! `pflow nodes [--json]`: the node types a workflow can use, built-in ones and the
//! tools of configured MCP servers (from their synced lists: listing starts no server).

use super::{ExitCode, Result};
use crate::nodes::{self, NodeSpec, ParamKind};
use crate::report::out_line;
use serde_json::{json, Value};

pub fn run(as_json: bool) -> Result {
    let all = all();
    if as_json {
        out_line(&serde_json::to_string_pretty(&json!({ "node_types": all })).unwrap_or_default());
        return Ok(ExitCode::Ok);
    }
    for t in &all {
        let params: Vec<String> = t["params"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| {
                let name = p["name"].as_str().unwrap_or("");
                if p["required"] == json!(true) {
                    name.to_string()
                } else {
                    format!("[{name}]")
                }
            })
            .collect();
        out_line(&format!(
            "{}  ({}) → {}",
            t["type"].as_str().unwrap_or(""),
            params.join(", "),
            t["outputs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    Ok(ExitCode::Ok)
}

fn kind_name(k: ParamKind) -> &'static str {
    match k {
        ParamKind::String => "string",
        ParamKind::Number => "number",
        ParamKind::Integer => "integer",
        ParamKind::Bool => "boolean",
        ParamKind::Object | ParamKind::StringMap => "object",
        ParamKind::Array => "array",
        ParamKind::Any => "any",
    }
}

/// A node type's params (name, type, required) and outputs.
pub fn describe(spec: &NodeSpec) -> Value {
    let params: Vec<Value> = spec
        .params
        .iter()
        .map(|p| json!({"name": p.name, "type": kind_name(p.kind), "required": p.required}))
        .collect();
    let outputs: Vec<&str> = spec.outputs.iter().map(|o| o.name).collect();
    json!({"type": spec.name, "params": params, "outputs": outputs,
           "runs_every_build": spec.volatile, "open_outputs": spec.open_outputs})
}

/// Every node type: the built-in ones, then each synced MCP tool.
pub fn all() -> Vec<Value> {
    let mut out: Vec<Value> = nodes::REGISTRY.iter().map(|s| describe(s)).collect();
    if let Ok(servers) = crate::mcp::tools::all() {
        for (server, (_, list)) in servers {
            for t in list.map(|l| l.tools).unwrap_or_default() {
                if let Some(spec) = nodes::lookup(&format!("mcp-{server}-{}", t.name)) {
                    out.push(describe(spec));
                }
            }
        }
    }
    out
}
