//! `mcp-<server>-<tool>`: a tool of a configured MCP server as a node type.
//!
//! Its params are the tool's input schema, its outputs the original pflow's: `result`
//! (structured content when the server sends it, else the text, parsed when it is
//! JSON), the same under `<server>_<tool>_result`, and an object result's top-level
//! fields. A tool marked `readOnlyHint` is a read pflow cannot see into: it runs on every
//! build and early cutoff spares what depends on it. Any other tool is an effect, run
//! once per key. The key holds the server's identity and version and the tool's schema
//! digest, never the server's `env` or `headers`.

use super::{NodeOutput, NodeSpec, OutputField, OutputKind, ParamKind, ParamSpec, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::mcp::client::{self, CallError};
use crate::mcp::tools::{self, Resolved, Unresolved};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

/// Bumped when how a tool's result becomes outputs changes.
const VERSION: u32 = 1;

struct Known {
    spec: &'static NodeSpec,
    resolved: Resolved,
}

/// Specs made so far, by the spelling asked for and by canonical name. Each is made
/// (and leaked: a command has a handful) once per process.
fn known() -> &'static Mutex<HashMap<String, Option<&'static Known>>> {
    static KNOWN: OnceLock<Mutex<HashMap<String, Option<&'static Known>>>> = OnceLock::new();
    KNOWN.get_or_init(Default::default)
}

/// The node type `t` names, if it names a tool of a configured server.
pub fn lookup(t: &str) -> Option<&'static NodeSpec> {
    find(t).map(|k| k.spec)
}

fn find(t: &str) -> Option<&'static Known> {
    let mut map = known().lock().ok()?;
    if let Some(k) = map.get(t) {
        return *k;
    }
    let made = tools::resolve(t).ok().map(|r| {
        let canonical = r.canonical.clone();
        if let Some(Some(k)) = map.get(&canonical) {
            return *k;
        }
        let k: &'static Known = Box::leak(Box::new(Known {
            spec: make_spec(&r),
            resolved: r,
        }));
        map.insert(canonical, Some(k));
        k
    });
    map.insert(t.to_string(), made);
    made
}

/// Why `t`, which looks like an MCP tool, is not a node type (for the unknown-type
/// error), or `None` when it does not look like one.
pub fn why_unknown(t: &str) -> Option<String> {
    match tools::resolve(t) {
        Ok(_) | Err(Unresolved::NotMcp) => None,
        Err(Unresolved::NoServer { configured }) => {
            let guess = t
                .strip_prefix("mcp-")
                .and_then(|r| r.split('-').next())
                .unwrap_or(t);
            let have = if configured.is_empty() {
                "none is".to_string()
            } else {
                format!("configured: {}", configured.join(", "))
            };
            Some(format!(
                "no MCP server '{guess}' is configured, {have}; add it with `pflow mcp add`"
            ))
        }
        Err(Unresolved::NoTool {
            server,
            tool,
            tools,
        }) => {
            let mut s = format!("MCP server '{server}' has no tool '{tool}'");
            if let Some(hint) =
                crate::diagnostic::did_you_mean(&tool, tools.iter().map(|x| x.as_str()))
            {
                s.push_str(&format!("; {hint}"));
            } else if !tools.is_empty() {
                s.push_str(&format!("; its tools: {}", tools.join(", ")));
            }
            Some(s)
        }
        Err(Unresolved::Unavailable(why)) => Some(why),
    }
}

/// The input schema of the tool `t` names (for a repair model), if it names one.
pub fn input_schema(t: &str) -> Option<&'static Value> {
    find(t).map(|k| &k.resolved.tool.input_schema)
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn kind_of(schema: &Value) -> ParamKind {
    let t = match schema.get("type") {
        Some(Value::String(t)) => t.as_str(),
        // ["string", "null"]: the one non-null type, else anything.
        Some(Value::Array(ts)) => {
            let mut non_null = ts.iter().filter_map(Value::as_str).filter(|t| *t != "null");
            match (non_null.next(), non_null.next()) {
                (Some(one), None) => one,
                _ => return ParamKind::Any,
            }
        }
        _ => return ParamKind::Any,
    };
    match t {
        "string" => ParamKind::String,
        "number" => ParamKind::Number,
        "integer" => ParamKind::Integer,
        "boolean" => ParamKind::Bool,
        "object" => ParamKind::Object,
        "array" => ParamKind::Array,
        _ => ParamKind::Any,
    }
}

fn make_spec(r: &Resolved) -> &'static NodeSpec {
    let params: Vec<ParamSpec> = r
        .tool
        .params()
        .into_iter()
        .map(|(name, schema, required)| ParamSpec {
            name: leak(name),
            required,
            kind: kind_of(schema),
            range: None,
            doc: leak(
                schema
                    .get("description")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string(),
            ),
            literal_check: None,
        })
        .collect();
    let mut outputs = vec![
        OutputField {
            name: "result",
            kind: OutputKind::Json,
            doc: "the tool's structured content, else its text (parsed when it is JSON)",
        },
        OutputField {
            name: leak(format!("{}_{}_result", r.server.name, r.tool.name)),
            kind: OutputKind::Json,
            doc: "the same as result",
        },
    ];
    // An output schema names the top-level fields; without one they are known only
    // when the tool answers (so other names are checked then, not by validation).
    if let Some(props) = r
        .tool
        .output_schema
        .as_ref()
        .and_then(|s| s.get("properties"))
        .and_then(Value::as_object)
    {
        for k in props.keys() {
            if k != "result" {
                outputs.push(OutputField {
                    name: leak(k.clone()),
                    kind: OutputKind::Json,
                    doc: "a field of the tool's result",
                });
            }
        }
    }
    let identity = format!(
        "mcp:{}|{}@{}|{}|{}",
        r.server.name,
        r.identity.name,
        r.identity.version,
        r.tool.name,
        r.tool.schema_digest()
    );
    let summary = r.tool.description.lines().next().unwrap_or("").trim();
    Box::leak(Box::new(NodeSpec {
        name: leak(r.canonical.clone()),
        summary: leak(
            format!(
                "MCP tool {} of server '{}'. {summary}",
                r.tool.name, r.server.name
            )
            .trim_end()
            .to_string(),
        ),
        version: VERSION,
        params: Box::leak(params.into_boxed_slice()),
        outputs: Box::leak(outputs.into_boxed_slice()),
        reads_files: &[],
        removes_files: &[],
        writes_files: &[],
        key_env: &[],
        shell_params: &[],
        env_param: None,
        untrusted_outputs: &["result"],
        secret_params: &[],
        secret_header_params: &[],
        announces_effects: false,
        // A read-only tool changes nothing; any other may act on the world.
        repeats_effects: if r.tool.read_only {
            super::never
        } else {
            super::always
        },
        volatile: r.tool.read_only,
        closed_params: true,
        open_outputs: r.tool.output_schema.is_none(),
        identity: leak(identity),
        start: None,
        run,
    }))
}

/// A param as the tool's schema wants it: a JSON text given for an object or array is
/// parsed, a number or flag spelled as text is read (what validation admitted).
fn coerce(kind: ParamKind, v: Value) -> Value {
    match (kind, &v) {
        (ParamKind::Object | ParamKind::Array, Value::String(s)) => {
            match crate::template::parse_json_container(s) {
                Some(parsed) if kind.accepts(&parsed) => parsed,
                _ => v,
            }
        }
        (ParamKind::Integer, Value::String(s)) => {
            s.trim().parse::<i64>().map(Value::from).unwrap_or(v)
        }
        (ParamKind::Integer, Value::Number(n)) if !n.is_i64() && !n.is_u64() => n
            .as_f64()
            .filter(|f| f.fract() == 0.0)
            .map(|f| Value::from(f as i64))
            .unwrap_or(v),
        (ParamKind::Number, Value::String(s)) => s
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(v),
        (ParamKind::Bool, Value::String(s)) => super::bool_text(s).map(Value::Bool).unwrap_or(v),
        _ => v,
    }
}

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let Some(known) = find(ctx.node_type) else {
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!(
                "'{}' is not a tool of a configured MCP server",
                ctx.node_type
            ),
        ));
    };
    let (spec, r) = (known.spec, &known.resolved);
    let mut args = Map::new();
    for (name, value) in params {
        if value.is_null() {
            continue;
        }
        let value = match spec.param(name) {
            Some(p) => coerce(p.kind, value.clone()),
            None => value.clone(),
        };
        args.insert(name.clone(), value);
    }
    let answer = client::call(&r.server, &r.tool.name, args).map_err(|e| match e {
        CallError::Connect(m) => NodeError::new(ErrorCategory::Network, m),
        CallError::Timeout(s) => NodeError::new(
            ErrorCategory::Timeout,
            format!("MCP tool {} gave no answer within {s} s", spec.name),
        ),
        CallError::Protocol {
            invalid_params: true,
            message,
        } => NodeError::new(
            ErrorCategory::Validation,
            format!("MCP tool {} refused its params: {message}", spec.name),
        ),
        CallError::Protocol { message, .. } => NodeError::new(
            ErrorCategory::Server,
            format!("MCP tool {} failed: {message}", spec.name),
        ),
        CallError::Interrupted => NodeError::new(ErrorCategory::Interrupted, "interrupted"),
    })?;
    let text = content_text(&answer);
    if answer.get("isError").and_then(Value::as_bool) == Some(true) {
        let message = if text.trim().is_empty() {
            "the tool reported an error".to_string()
        } else {
            text.trim().to_string()
        };
        // The tool ran and refused: what it says (a bad path, a wrong value) is about the
        // call, which a workflow edit can change.
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!("MCP tool {}: {message}", spec.name),
        ));
    }
    let result = match answer.get("structuredContent") {
        Some(v) if !v.is_null() => v.clone(),
        _ => crate::template::parse_json_container(&text).unwrap_or(Value::String(text)),
    };
    let mut outputs = Map::new();
    if let Value::Object(fields) = &result {
        for (k, v) in fields {
            outputs.insert(k.clone(), v.clone());
        }
    }
    outputs.insert(
        format!("{}_{}_result", r.server.name, r.tool.name),
        result.clone(),
    );
    outputs.insert("result".into(), result);
    Ok(NodeOutput::new(outputs))
}

/// The text blocks of a tool result, joined (other content, such as images, is named).
fn content_text(answer: &Value) -> String {
    let Some(blocks) = answer.get("content").and_then(Value::as_array) else {
        return String::new();
    };
    let parts: Vec<String> = blocks
        .iter()
        .map(|b| match b.get("type").and_then(Value::as_str) {
            Some("text") => b
                .get("text")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            Some(other) => format!("[{other} content]"),
            None => String::new(),
        })
        .collect();
    parts.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn schema_types_become_param_kinds() {
        assert_eq!(kind_of(&json!({"type": "string"})), ParamKind::String);
        assert_eq!(
            kind_of(&json!({"type": ["integer", "null"]})),
            ParamKind::Integer
        );
        assert_eq!(kind_of(&json!({"type": "array"})), ParamKind::Array);
        assert_eq!(kind_of(&json!({})), ParamKind::Any);
    }

    #[test]
    fn json_text_for_an_array_or_object_is_parsed() {
        assert_eq!(coerce(ParamKind::Array, json!("[1, 2]")), json!([1, 2]));
        assert_eq!(
            coerce(ParamKind::Object, json!("{\"a\": 1}")),
            json!({"a": 1})
        );
        assert_eq!(coerce(ParamKind::Integer, json!("7")), json!(7));
        assert_eq!(coerce(ParamKind::String, json!("[1]")), json!("[1]"));
    }

    #[test]
    fn text_blocks_are_joined() {
        let answer =
            json!({"content": [{"type": "text", "text": "a"}, {"type": "image", "data": ""}]});
        assert_eq!(content_text(&answer), "a\n[image content]");
    }
}
