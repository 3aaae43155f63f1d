//! `pflow nodes [TYPE]`: the node types, or one type's params and outputs, from the
//! same [`crate::nodes::NodeSpec`] table the validator checks against: the built-in
//! types, then the tools of configured MCP servers (from their synced lists, so
//! listing starts no server).

use super::{ExitCode, Result};
use crate::cli::OutputFormat;
use crate::nodes::{self, NodeSpec};
use crate::report::out_line;
use serde_json::{json, Value};

pub fn run(node_type: Option<&str>, format: OutputFormat) -> Result {
    let Some(name) = node_type else {
        match format {
            OutputFormat::Json => {
                let all: Vec<Value> = all().into_iter().map(describe).collect();
                out_line(&serde_json::to_string_pretty(&all).unwrap_or_default());
            }
            OutputFormat::Text => {
                let all = all();
                let width = all.iter().map(|s| s.name.len()).max().unwrap_or(0);
                for spec in all {
                    out_line(&format!("{:<width$}  {}", spec.name, spec.summary));
                }
            }
        }
        return Ok(ExitCode::Ok);
    };
    let Some(spec) = nodes::lookup(name) else {
        let hint = crate::diagnostic::suggestion(name, nodes::type_names())
            .map(|s| format!(" ({s})"))
            .unwrap_or_default();
        return Err(super::Error::invalid(format!(
            "unknown node type '{name}'{hint}; the types are: {}",
            nodes::type_names().collect::<Vec<_>>().join(", ")
        )));
    };
    match format {
        OutputFormat::Json => {
            out_line(&serde_json::to_string_pretty(&describe(spec)).unwrap_or_default())
        }
        OutputFormat::Text => print_text(spec),
    }
    Ok(ExitCode::Ok)
}

/// Every node type: the built-in ones, then each synced MCP tool.
pub fn all() -> Vec<&'static NodeSpec> {
    let mut out: Vec<&'static NodeSpec> = nodes::REGISTRY.to_vec();
    if let Ok(servers) = crate::mcp::tools::all() {
        for (server, (_, list)) in servers {
            for t in list.map(|l| l.tools).unwrap_or_default() {
                out.extend(nodes::lookup(&format!("mcp-{server}-{}", t.name)));
            }
        }
    }
    out
}

/// A node type's params and outputs, as `pflow nodes TYPE --output-format json` and
/// `pflow mcp serve` show them.
pub fn describe(spec: &NodeSpec) -> Value {
    let params: Vec<Value> = spec
        .params
        .iter()
        .map(|p| {
            let mut v = json!({"name": p.name, "required": p.required,
                               "type": p.kind.describe(), "description": p.doc});
            if let Some((lo, hi)) = p.range {
                v["range"] = json!([lo, hi]);
            }
            v
        })
        .collect();
    let outputs: Vec<Value> = spec
        .outputs
        .iter()
        .map(|o| {
            json!({"name": o.name, "type": crate::schema::output_kind_text(o.kind),
                   "description": o.doc})
        })
        .collect();
    json!({
        "type": spec.name,
        "summary": spec.summary,
        "params": params,
        "outputs": outputs,
        "reads_files": spec.reads_files,
        "writes_files": spec.writes_files,
        "removes_files": spec.removes_files,
        "runs_every_build": spec.volatile,
    })
}

fn print_text(spec: &NodeSpec) {
    out_line(&format!("{}: {}", spec.name, spec.summary));
    out_line("");
    out_line("params:");
    let width = spec.params.iter().map(|p| p.name.len()).max().unwrap_or(0);
    for p in spec.params {
        let need = if p.required { "required" } else { "optional" };
        let range = p
            .range
            .map(|(lo, hi)| format!(", {lo} to {hi}"))
            .unwrap_or_default();
        out_line(&format!(
            "  {:<width$}  {} ({need}{range}): {}",
            p.name,
            p.kind.describe(),
            p.doc
        ));
    }
    out_line("");
    out_line("outputs:");
    let width = spec.outputs.iter().map(|o| o.name.len()).max().unwrap_or(0);
    for o in spec.outputs {
        out_line(&format!(
            "  {:<width$}  {}: {}",
            o.name,
            crate::schema::output_kind_text(o.kind),
            o.doc
        ));
    }
    if spec.open_outputs {
        out_line(&format!(
            "  {}",
            match std::ptr::eq(spec, &crate::nodes::nested::WORKFLOW) {
                true => "the nested workflow's declared outputs, as output_mapping names them",
                false => "and the fields the node's result has when it runs",
            }
        ));
    }
    for (what, params) in [
        ("reads the files in", spec.reads_files),
        ("writes the files in", spec.writes_files),
        ("removes the files in", spec.removes_files),
    ] {
        if !params.is_empty() {
            out_line("");
            out_line(&format!("{what}: {}", params.join(", ")));
        }
    }
}
