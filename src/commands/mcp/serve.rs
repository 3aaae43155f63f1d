//! `pflow mcp serve`: pflow as an MCP server over stdio, so an agent can discover node
//! types and saved workflows, validate a workflow (diagnostics come back as structured
//! content), build one (the same JSON document `pflow build --output-format json`
//! prints, with cache statistics and repair details) and save one.
//!
//! A build runs as `pflow build` in a child process of this one, in this server's
//! working directory and with its environment: the same cache as the command line, the
//! same repair, and no state shared between builds. Everything else runs in-process.

use super::super::{Error, ExitCode, Result};
use crate::nodes;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, Implementation,
    ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};
use serde_json::{json, Map, Value};
use std::sync::Arc;

pub fn run() -> Result {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Failed(format!("cannot start the MCP server: {e}")))?;
    rt.block_on(async {
        let service = Pflow
            .serve(rmcp::transport::stdio())
            .await
            .map_err(|e| Error::Failed(format!("MCP session did not start: {e}")))?;
        let _ = service.waiting().await;
        Ok(ExitCode::Ok)
    })
}

#[derive(Clone, Copy)]
struct Pflow;

fn schema(v: Value) -> Arc<Map<String, Value>> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

const WORKFLOW_ARG: &str =
    "the workflow: a JSON object, JSON text, a .json path, or a saved workflow's name";

fn tools() -> Vec<Tool> {
    vec![
        Tool::new(
            "list_node_types",
            "The node types workflows can use: built-in ones and the tools of configured MCP servers",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "describe_node_type",
            "A node type's params (type, required) and outputs",
            schema(json!({"type": "object", "properties": {"type": {"type": "string"}},
                          "required": ["type"]})),
        ),
        Tool::new(
            "list_workflows",
            "The saved workflows, with their descriptions and last runs",
            schema(json!({"type": "object", "properties": {}})),
        ),
        Tool::new(
            "validate_workflow",
            "Check a workflow without running it; the diagnostics, each with its JSON path",
            schema(json!({"type": "object",
                          "properties": {"workflow": {"description": WORKFLOW_ARG}},
                          "required": ["workflow"]})),
        ),
        Tool::new(
            "build_workflow",
            "Build a workflow (cached nodes are reused); the result document with outputs, node statuses, cache statistics and repair details",
            schema(json!({"type": "object",
                          "properties": {
                              "workflow": {"description": WORKFLOW_ARG},
                              "params": {"type": "object", "description": "workflow inputs"},
                              "cache_dir": {"type": "string"},
                              "no_repair": {"type": "boolean"}},
                          "required": ["workflow"]})),
        ),
        Tool::new(
            "save_workflow",
            "Validate a workflow and save it under a name",
            schema(json!({"type": "object",
                          "properties": {
                              "workflow": {"description": WORKFLOW_ARG},
                              "name": {"type": "string"},
                              "description": {"type": "string"},
                              "force": {"type": "boolean"}},
                          "required": ["workflow", "name"]})),
        ),
    ]
}

impl ServerHandler for Pflow {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("pflow", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Build workflows of shell, file, HTTP, LLM and MCP nodes with a cache: \
                 validate_workflow before build_workflow; a second build reuses what did not change.",
            )
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> std::result::Result<CallToolResponse, ErrorData> {
        let name = request.name.to_string();
        let args = request.arguments.unwrap_or_default();
        // Validation may start MCP servers and builds wait for a child: off the async
        // threads.
        let answer = tokio::task::spawn_blocking(move || call(&name, &args))
            .await
            .map_err(|e| ErrorData::internal_error(e.to_string(), None))??;
        Ok(CallToolResponse::Complete(answer))
    }
}

fn invalid(message: impl Into<String>) -> ErrorData {
    ErrorData::invalid_params(message.into(), None)
}

/// A structured answer (with its text, for clients that only read text).
fn answer(value: Value, is_error: bool) -> CallToolResult {
    let text = serde_json::to_string_pretty(&value).unwrap_or_default();
    let mut r = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    r.structured_content = Some(value);
    r
}

fn call(name: &str, args: &Map<String, Value>) -> std::result::Result<CallToolResult, ErrorData> {
    let out = match name {
        "list_node_types" => answer(
            json!({ "node_types": super::super::nodes::all().into_iter().map(super::super::nodes::describe).collect::<Vec<_>>() }),
            false,
        ),
        "describe_node_type" => {
            let t = args
                .get("type")
                .and_then(Value::as_str)
                .ok_or_else(|| invalid("'type' must be a node type's name"))?;
            let spec = nodes::lookup(t).ok_or_else(|| {
                invalid(format!(
                    "unknown node type '{t}'{}",
                    nodes::unsupported_note(t)
                ))
            })?;
            answer(super::super::nodes::describe(spec), false)
        }
        "list_workflows" => {
            let items: Vec<Value> = crate::store::names()
                .into_iter()
                .filter_map(|n| crate::store::load(&n).ok())
                .map(|d| {
                    json!({"name": d.get("name"), "description": d.get("description"),
                           "inputs": listed_inputs(d.pointer("/ir/inputs")),
                           "execution_count": d.pointer("/rich_metadata/execution_count"),
                           "last_execution_success": d.pointer("/rich_metadata/last_execution_success")})
                })
                .collect();
            answer(json!({ "workflows": items }), false)
        }
        "validate_workflow" => {
            let (doc, file) = workflow_arg(args)?;
            // An inline workflow's nested workflows are found from the current directory.
            let file = file.unwrap_or_else(|| std::path::PathBuf::from("workflow.json"));
            let v = validate(&doc, &file);
            answer(v, false)
        }
        "build_workflow" => build(args)?,
        "save_workflow" => save(args)?,
        other => return Err(invalid(format!("no tool '{other}'"))),
    };
    Ok(out)
}

/// The workflow an argument gives, and the file it is in (written for an inline one).
fn workflow_arg(
    args: &Map<String, Value>,
) -> std::result::Result<(Value, Option<std::path::PathBuf>), ErrorData> {
    match args.get("workflow") {
        Some(Value::Object(_)) => Ok((args["workflow"].clone(), None)),
        Some(Value::String(s)) if s.trim_start().starts_with('{') => serde_json::from_str(s)
            .map(|v| (v, None))
            .map_err(|e| invalid(format!("'workflow' is not valid JSON: {e}"))),
        Some(Value::String(s)) => {
            let path = super::super::resolve_workflow_path(s).map_err(|d| invalid(d.message))?;
            let doc = crate::source::read_json_file(&path).map_err(|d| invalid(d.message))?;
            Ok((doc, Some(path)))
        }
        _ => Err(invalid(format!("'workflow' must be {WORKFLOW_ARG}"))),
    }
}

fn validate(doc: &Value, file: &std::path::Path) -> Value {
    match crate::nested::validate(doc, &super::super::origin_of(file)) {
        Ok(v) => json!({"valid": true, "nodes": v.workflow.nodes.len(), "errors": [],
                        "warnings": super::super::diagnostics_json(&v.warnings)}),
        Err(report) => json!({"valid": false,
                              "errors": super::super::diagnostics_json(&report.errors),
                              "warnings": super::super::diagnostics_json(&report.warnings)}),
    }
}

fn build(args: &Map<String, Value>) -> std::result::Result<CallToolResult, ErrorData> {
    let (doc, file) = workflow_arg(args)?;
    // An inline workflow goes to a temporary file; keys hold no workflow path, so its
    // results are the command line's.
    let tmp = tempfile::tempdir().map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    // Named by its path in a temporary folder of its own, an inline workflow's build
    // would leave records no build reads again: they go by the workflow's text instead
    // (one workflow built again finds its own; two never read each other's).
    let (file, records_as) = match file {
        Some(f) => (f, None),
        None => {
            let f = tmp.path().join("workflow.json");
            let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
            crate::fsutil::write_atomic(&f, text.as_bytes())
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            let digest = blake3::hash(text.as_bytes()).to_hex();
            (
                f,
                Some(format!("pflow mcp: inline workflow {}", &digest[..32])),
            )
        }
    };
    let exe =
        std::env::current_exe().map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.arg("build")
        .arg(&file)
        .args(["--output-format", "json"]);
    // A file workflow's records go by its path, whatever this server's environment
    // says (the command line's `pflow log` finds them there).
    match records_as {
        Some(name) => cmd.env(super::super::records_name::RECORDS_AS_ENV, name),
        None => cmd.env_remove(super::super::records_name::RECORDS_AS_ENV),
    };
    if let Some(dir) = args.get("cache_dir").and_then(Value::as_str) {
        cmd.arg("--cache-dir").arg(dir);
    }
    if args.get("no_repair").and_then(Value::as_bool) == Some(true) {
        cmd.arg("--no-repair");
    }
    // Inputs go in a file of the build's own temporary folder (readable by this user
    // alone), never on its command line, which every user of the machine can read.
    match args.get("params") {
        None | Some(Value::Null) => {}
        Some(params @ Value::Object(_)) => {
            let f = tmp.path().join("inputs.json");
            crate::fsutil::write_atomic(&f, params.to_string().as_bytes())
                .map_err(|e| ErrorData::internal_error(e.to_string(), None))?;
            cmd.arg("--inputs-file").arg(&f);
        }
        Some(_) => return Err(invalid("'params' must be an object of workflow inputs")),
    }
    // The child's stdout is this session's transport: it must go to a pipe, never ours.
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let out = cmd
        .output()
        .map_err(|e| ErrorData::internal_error(format!("cannot start a build: {e}"), None))?;
    let result: Value = serde_json::from_slice(&out.stdout).map_err(|_| {
        ErrorData::internal_error(
            format!(
                "the build printed no result document: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            None,
        )
    })?;
    let failed = result.get("success") != Some(&Value::Bool(true));
    Ok(answer(result, failed))
}

fn save(args: &Map<String, Value>) -> std::result::Result<CallToolResult, ErrorData> {
    let name = args
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid("'name' must be a string"))?;
    if !crate::store::is_valid_name(name) {
        let d = crate::store::name_error(name);
        return Err(invalid(format!(
            "{} ({})",
            d.message,
            d.hint.unwrap_or_default()
        )));
    }
    let (doc, file) = workflow_arg(args)?;
    let file = file.unwrap_or_else(|| std::path::PathBuf::from("workflow.json"));
    let checked = validate(&doc, &file);
    if checked["valid"] != json!(true) {
        return Ok(answer(checked, true));
    }
    let description = args
        .get("description")
        .and_then(Value::as_str)
        .or_else(|| doc.get("description").and_then(Value::as_str));
    let force = args.get("force").and_then(Value::as_bool).unwrap_or(false);
    match crate::store::save(name, &crate::repair::ir_of(&doc), description, force) {
        Ok(path) => Ok(answer(json!({"saved": name, "path": path}), false)),
        Err(e) => Ok(answer(json!({"saved": null, "error": e}), true)),
    }
}

/// A saved workflow's inputs as `list_workflows` shows them to an agent (and so to its
/// model): a secret input's default (named like one, or declared `"secret": true`) is
/// replaced by a marker.
fn listed_inputs(inputs: Option<&Value>) -> Option<Value> {
    let mut inputs = inputs?.clone();
    if let Value::Object(map) = &mut inputs {
        for (name, spec) in map.iter_mut() {
            let declared = spec.get("secret").and_then(Value::as_bool) == Some(true);
            if !(declared || crate::secrets::is_secret_name(name)) {
                continue;
            }
            if let Some(default) = spec.get_mut("default").filter(|d| !d.is_null()) {
                *default = Value::String("<redacted>".into());
            }
        }
    }
    Some(inputs)
}
