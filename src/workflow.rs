//! The workflow IR (pflow 0.1.0) and its structural decoding from JSON.
//!
//! Decoding is hand-written rather than derived so that it can report *every* problem
//! with its JSON path and keep going: a node with a bad field still yields a [`Node`] (with
//! a placeholder), so later checks can find the other problems in the same pass.

use crate::diagnostic::{suggestion, Diagnostic};
use indexmap::IndexMap;
use serde::Serialize;
use serde_json::{Map, Value};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub ir_version: String,
    pub inputs: IndexMap<String, InputSpec>,
    pub outputs: IndexMap<String, OutputSpec>,
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
    pub start_node: Option<String>,
    pub template_mode: TemplateMode,
    /// `"strict_env": true`: children see only the base variables and what their node
    /// declares (see [`crate::environment`]).
    pub strict_env: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateMode {
    Strict,
    Permissive,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Integer,
    Boolean,
    Object,
    Array,
}

impl InputType {
    fn parse(s: &str) -> Option<InputType> {
        Some(match s {
            "string" | "str" => InputType::String,
            "number" | "float" => InputType::Number,
            "integer" | "int" => InputType::Integer,
            "boolean" | "bool" => InputType::Boolean,
            "object" | "dict" => InputType::Object,
            "array" | "list" => InputType::Array,
            _ => return None,
        })
    }
    pub const NAMES: [&'static str; 6] =
        ["string", "number", "integer", "boolean", "object", "array"];
}

#[derive(Debug, Clone, PartialEq)]
pub struct InputSpec {
    pub ty: Option<InputType>,
    pub required: bool,
    pub default: Option<Value>,
    pub description: Option<String>,
    pub stdin: bool,
    /// `"secret": true`: the value is a credential whatever the input is named (see
    /// [`Workflow::is_secret_input`]).
    pub secret: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutputSpec {
    pub source: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub id: String,
    pub node_type: String,
    pub purpose: Option<String>,
    pub params: Map<String, Value>,
    pub batch: Option<BatchConfig>,
    pub cache: CachePolicy,
    /// Environment variables the node reads (`"reads_env"`): keyed, and passed on.
    pub reads_env: Vec<String>,
    /// Files the node reads, beyond what its type declares (paths or globs, as written).
    pub reads: Vec<String>,
    /// Files the node writes, beyond what its type declares (paths or globs, as written).
    pub writes: Vec<String>,
    /// Made by expanding a nested workflow ([`crate::nested`]), not written: its
    /// templates may name nodes inside nested workflows (`${run/step.stdout}`) and its
    /// type may be one of the internal ones that carry values across the boundary.
    pub scoped: bool,
}

/// When a node's cached result may be reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CachePolicy {
    /// Reuse whenever the inputs are unchanged (the default).
    Always,
    /// A volatile step: run on every build.
    Never,
    /// Reuse while younger than this.
    MaxAge(Duration),
}

impl CachePolicy {
    /// A stable text form, part of the node key.
    pub fn key_text(&self) -> String {
        match self {
            CachePolicy::Always => "true".into(),
            CachePolicy::Never => "false".into(),
            CachePolicy::MaxAge(d) => format!("max-age:{}", d.as_millis()),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct BatchConfig {
    pub items: BatchItems,
    pub alias: String,
    pub parallel: bool,
    pub max_concurrent: usize,
    pub error_handling: ErrorHandling,
    pub max_retries: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum BatchItems {
    /// A single `${...}` reference that resolves to an array.
    Template(String),
    Inline(Vec<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorHandling {
    FailFast,
    Continue,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Edge {
    pub from: String,
    pub to: String,
    pub action: EdgeAction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum EdgeAction {
    Default,
    Error,
}

/// The top-level fields. `$schema` names a JSON Schema for editors and is ignored.
pub const TOP_FIELDS: &[&str] = &[
    "$schema",
    "ir_version",
    "nodes",
    "edges",
    "inputs",
    "outputs",
    "start_node",
    "template_resolution_mode",
    "strict_env",
];
pub const NODE_FIELDS: &[&str] = &[
    "id",
    "type",
    "purpose",
    "params",
    "batch",
    "cache",
    "reads_env",
    "reads",
    "writes",
];
pub const EDGE_FIELDS: &[&str] = &["from", "to", "action"];
pub const INPUT_FIELDS: &[&str] = &[
    "type",
    "required",
    "default",
    "description",
    "stdin",
    "secret",
];
pub const OUTPUT_FIELDS: &[&str] = &["source", "description", "type"];
pub const BATCH_FIELDS: &[&str] = &[
    "items",
    "as",
    "parallel",
    "max_concurrent",
    "error_handling",
    "max_retries",
    "retry_wait",
];

/// Characters that may not appear in input and output names (they would break templates
/// and shells).
const BAD_NAME_CHARS: &[char] = &[
    '$', '|', '>', '<', '&', ';', '`', '"', '\'', '\\', ' ', '\t', '\r', '\n', '\0',
];

/// Does `s` match the template name grammar `[A-Za-z_][A-Za-z0-9_-]*`?
pub fn is_template_name(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn wrong_type(path: &str, expected: &str, got: &Value) -> Diagnostic {
    Diagnostic::error(
        path,
        match got {
            Value::Null => format!("expected {expected}, found null"),
            _ => format!(
                "expected {expected}, found {} {}",
                json_type(got),
                short_json(got)
            ),
        },
    )
}

fn short_json(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s
    }
}

fn unknown_fields(
    map: &Map<String, Value>,
    allowed: &[&str],
    path: &str,
    what: &str,
    out: &mut Vec<Diagnostic>,
) {
    for key in map.keys() {
        if !allowed.contains(&key.as_str()) {
            let hint = suggestion(key, allowed.iter().copied())
                .unwrap_or_else(|| format!("valid fields: {}", allowed.join(", ")));
            let sub = field_path(path, key);
            out.push(
                Diagnostic::error(sub, format!("unknown field '{key}' in {what}")).with_hint(hint),
            );
        }
    }
}

fn get_string(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    out: &mut Vec<Diagnostic>,
) -> Option<String> {
    match map.get(key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            out.push(wrong_type(&join(path, key), "a string", other));
            None
        }
    }
}

fn get_bool(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    default: bool,
    out: &mut Vec<Diagnostic>,
) -> bool {
    match map.get(key) {
        None | Some(Value::Null) => default,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            out.push(wrong_type(&join(path, key), "true or false", other));
            default
        }
    }
}

/// The path of member `key` under `path`: `path.key`, or `path["key"]` when the key is
/// empty or has characters that would make the dotted form ambiguous. Never empty.
pub fn field_path(path: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| !c.is_whitespace() && !c.is_control() && !".[]\"'".contains(c));
    match (plain, path.is_empty()) {
        (true, true) => key.to_string(),
        (true, false) => format!("{path}.{key}"),
        (false, _) => format!(
            "{path}[{}]",
            serde_json::to_string(key).unwrap_or_else(|_| "\"?\"".into())
        ),
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

impl Workflow {
    /// Is input `name` a credential: declared `"secret": true`, or named like one
    /// (key, token, secret, password, auth, credential)? Its value is then sealed in
    /// keys and redacted from everything pflow prints, stores or sends.
    pub fn is_secret_input(&self, name: &str) -> bool {
        crate::secrets::is_secret_name(name) || self.inputs.get(name).is_some_and(|i| i.secret)
    }

    /// Decode a workflow from a JSON document (the bare IR or the saved-workflow wrapper
    /// `{"name", "description", "ir": {...}}`). Returns the workflow when the document has
    /// a usable shape, and every structural problem found.
    pub fn from_json(doc: &Value) -> (Option<Workflow>, Vec<Diagnostic>) {
        Self::decode(doc, None)
    }

    /// [`Workflow::from_json`] with the nodes decoded already (each by [`decode_node`]
    /// or as compiled before: the edit path of `pflow build`): the document's own
    /// `"nodes"` are not read.
    pub fn with_nodes(doc: &Value, nodes: Vec<Node>) -> (Option<Workflow>, Vec<Diagnostic>) {
        Self::decode(doc, Some(nodes))
    }

    fn decode(doc: &Value, given: Option<Vec<Node>>) -> (Option<Workflow>, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let Value::Object(top) = doc else {
            diags.push(wrong_type(
                "root",
                "a JSON object with a \"nodes\" array",
                doc,
            ));
            return (None, diags);
        };
        // The saved-workflow wrapper keeps the IR under "ir" beside metadata.
        if let Some(ir) = top.get("ir") {
            if !top.contains_key("nodes") {
                return match ir {
                    Value::Object(_) => {
                        let (wf, inner) = Workflow::decode(ir, given);
                        let inner = inner
                            .into_iter()
                            .map(|mut d| {
                                d.path = if d.path == "root" {
                                    "ir".into()
                                } else {
                                    format!("ir.{}", d.path)
                                };
                                d
                            })
                            .collect();
                        (wf, inner)
                    }
                    other => (
                        None,
                        vec![wrong_type("ir", "an object holding the workflow", other)],
                    ),
                };
            }
        }
        unknown_fields(top, TOP_FIELDS, "", "the workflow", &mut diags);

        let ir_version = match top.get("ir_version") {
            None => "0.1.0".to_string(),
            Some(Value::String(s)) if is_semver(s) => s.clone(),
            Some(Value::String(s)) => {
                diags.push(
                    Diagnostic::error("ir_version", format!("'{s}' is not a version like '0.1.0'"))
                        .with_hint("use semantic versioning, e.g. \"0.1.0\""),
                );
                s.clone()
            }
            Some(other) => {
                diags.push(wrong_type(
                    "ir_version",
                    "a version string like \"0.1.0\"",
                    other,
                ));
                "0.1.0".into()
            }
        };

        let template_mode = match top.get("template_resolution_mode") {
            None | Some(Value::Null) => TemplateMode::Strict,
            Some(Value::String(s)) if s == "strict" => TemplateMode::Strict,
            Some(Value::String(s)) if s == "permissive" => TemplateMode::Permissive,
            Some(other) => {
                diags.push(
                    Diagnostic::error(
                        "template_resolution_mode",
                        format!("invalid mode {}", short_json(other)),
                    )
                    .with_hint("use \"strict\" or \"permissive\""),
                );
                TemplateMode::Strict
            }
        };

        let start_node = get_string(top, "start_node", "", &mut diags);
        let strict_env = get_bool(top, "strict_env", "", false, &mut diags);

        let nodes = match (given, top.get("nodes")) {
            (Some(nodes), _) => nodes,
            (None, None) => {
                diags.push(
                    Diagnostic::error("nodes", "missing required field 'nodes'")
                        .with_hint("a workflow needs a \"nodes\" array with at least one node"),
                );
                Vec::new()
            }
            (None, Some(Value::Array(items))) => {
                if items.is_empty() {
                    diags.push(
                        Diagnostic::error("nodes", "a workflow needs at least one node")
                            .with_hint("add a node such as {\"id\": \"hello\", \"type\": \"shell\", \"params\": {\"command\": \"echo hi\"}}"),
                    );
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| decode_node(v, &format!("nodes[{i}]"), &mut diags))
                    .collect()
            }
            (None, Some(other)) => {
                diags.push(wrong_type("nodes", "an array of node objects", other));
                Vec::new()
            }
        };

        let edges = match top.get("edges") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .filter_map(|(i, v)| decode_edge(v, &format!("edges[{i}]"), &mut diags))
                .collect(),
            Some(other) => {
                diags.push(wrong_type(
                    "edges",
                    "an array of {\"from\", \"to\"} objects",
                    other,
                ));
                Vec::new()
            }
        };

        let inputs = decode_named(top.get("inputs"), "inputs", &mut diags, decode_input);
        let outputs = decode_named(top.get("outputs"), "outputs", &mut diags, decode_output);

        let wf = Workflow {
            ir_version,
            inputs,
            outputs,
            nodes,
            edges,
            start_node,
            template_mode,
            strict_env,
        };
        (Some(wf), diags)
    }

    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// The workflow as canonical IR JSON (what a repaired workflow is written as).
    pub fn to_json(&self) -> Value {
        let mut top = Map::new();
        top.insert("ir_version".into(), Value::String(self.ir_version.clone()));
        if !self.inputs.is_empty() {
            let inputs = self
                .inputs
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect();
            top.insert("inputs".into(), Value::Object(inputs));
        }
        top.insert(
            "nodes".into(),
            Value::Array(self.nodes.iter().map(Node::to_json).collect()),
        );
        top.insert(
            "edges".into(),
            Value::Array(
                self.edges
                    .iter()
                    .map(|e| {
                        let mut m = Map::new();
                        m.insert("from".into(), Value::String(e.from.clone()));
                        m.insert("to".into(), Value::String(e.to.clone()));
                        if e.action == EdgeAction::Error {
                            m.insert("action".into(), Value::String("error".into()));
                        }
                        Value::Object(m)
                    })
                    .collect(),
            ),
        );
        if !self.outputs.is_empty() {
            let outputs = self
                .outputs
                .iter()
                .map(|(k, v)| {
                    let mut m = Map::new();
                    if let Some(d) = &v.description {
                        m.insert("description".into(), Value::String(d.clone()));
                    }
                    if let Some(s) = &v.source {
                        m.insert("source".into(), Value::String(s.clone()));
                    }
                    (k.clone(), Value::Object(m))
                })
                .collect();
            top.insert("outputs".into(), Value::Object(outputs));
        }
        if let Some(s) = &self.start_node {
            top.insert("start_node".into(), Value::String(s.clone()));
        }
        if self.template_mode == TemplateMode::Permissive {
            top.insert(
                "template_resolution_mode".into(),
                Value::String("permissive".into()),
            );
        }
        if self.strict_env {
            top.insert("strict_env".into(), Value::Bool(true));
        }
        Value::Object(top)
    }
}

impl InputSpec {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        if let Some(t) = self.ty {
            m.insert(
                "type".into(),
                serde_json::to_value(t).unwrap_or(Value::Null),
            );
        }
        m.insert("required".into(), Value::Bool(self.required));
        if let Some(d) = &self.default {
            m.insert("default".into(), d.clone());
        }
        if let Some(d) = &self.description {
            m.insert("description".into(), Value::String(d.clone()));
        }
        if self.stdin {
            m.insert("stdin".into(), Value::Bool(true));
        }
        if self.secret {
            m.insert("secret".into(), Value::Bool(true));
        }
        Value::Object(m)
    }
}

impl Node {
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), Value::String(self.id.clone()));
        m.insert("type".into(), Value::String(self.node_type.clone()));
        if let Some(p) = &self.purpose {
            m.insert("purpose".into(), Value::String(p.clone()));
        }
        m.insert("params".into(), Value::Object(self.params.clone()));
        if let Some(b) = &self.batch {
            let mut bm = Map::new();
            bm.insert(
                "items".into(),
                match &b.items {
                    BatchItems::Template(t) => Value::String(t.clone()),
                    BatchItems::Inline(items) => Value::Array(items.clone()),
                },
            );
            bm.insert("as".into(), Value::String(b.alias.clone()));
            bm.insert("parallel".into(), Value::Bool(b.parallel));
            bm.insert("max_concurrent".into(), Value::from(b.max_concurrent));
            if b.max_retries != 1 {
                bm.insert("max_retries".into(), Value::from(b.max_retries));
            }
            bm.insert(
                "error_handling".into(),
                Value::String(match b.error_handling {
                    ErrorHandling::FailFast => "fail_fast".into(),
                    ErrorHandling::Continue => "continue".into(),
                }),
            );
            m.insert("batch".into(), Value::Object(bm));
        }
        for (name, paths) in [("reads", &self.reads), ("writes", &self.writes)] {
            if !paths.is_empty() {
                let list = paths.iter().map(|p| Value::String(p.clone())).collect();
                m.insert(name.into(), Value::Array(list));
            }
        }
        match self.cache {
            CachePolicy::Always => {}
            CachePolicy::Never => {
                m.insert("cache".into(), Value::Bool(false));
            }
            CachePolicy::MaxAge(d) => {
                m.insert(
                    "cache".into(),
                    Value::String(humantime::format_duration(d).to_string()),
                );
            }
        }
        if !self.reads_env.is_empty() {
            let names = self.reads_env.iter().cloned().map(Value::String).collect();
            m.insert("reads_env".into(), Value::Array(names));
        }
        Value::Object(m)
    }
}

fn is_semver(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

/// Decode one node (`path` names it in diagnostics: `nodes[3]`).
pub fn decode_node(v: &Value, path: &str, diags: &mut Vec<Diagnostic>) -> Node {
    let Value::Object(map) = v else {
        diags.push(wrong_type(
            path,
            "a node object with \"id\" and \"type\"",
            v,
        ));
        return Node {
            id: String::new(),
            node_type: String::new(),
            purpose: None,
            params: Map::new(),
            batch: None,
            cache: CachePolicy::Always,
            reads_env: Vec::new(),
            reads: Vec::new(),
            writes: Vec::new(),
            scoped: false,
        };
    };
    unknown_fields(map, NODE_FIELDS, path, "a node", diags);
    let id = match map.get("id") {
        None => {
            diags.push(Diagnostic::error(
                join(path, "id"),
                "missing required field 'id'",
            ));
            String::new()
        }
        Some(Value::String(s)) => {
            if !is_template_name(s) {
                diags.push(
                    Diagnostic::error(join(path, "id"), format!("invalid node id '{s}'"))
                        .with_hint("ids start with a letter or '_' and contain only letters, digits, '_' and '-', so templates like ${id.stdout} can name them"),
                );
            }
            s.clone()
        }
        Some(other) => {
            diags.push(wrong_type(&join(path, "id"), "a string", other));
            String::new()
        }
    };
    let node_type = match map.get("type") {
        None => {
            let message = if id.is_empty() {
                "missing required field 'type'".to_string()
            } else {
                format!("node '{id}' is missing required field 'type'")
            };
            diags.push(
                Diagnostic::error(join(path, "type"), message).with_hint(format!(
                    "supported types: {}",
                    crate::nodes::type_names().collect::<Vec<_>>().join(", ")
                )),
            );
            String::new()
        }
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            diags.push(wrong_type(&join(path, "type"), "a node type name", other));
            String::new()
        }
    };
    let purpose = get_string(map, "purpose", path, diags);
    let params = match map.get("params") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(p)) => p.clone(),
        Some(other) => {
            diags.push(wrong_type(
                &join(path, "params"),
                "an object of parameters",
                other,
            ));
            Map::new()
        }
    };
    let batch = map
        .get("batch")
        .filter(|b| !b.is_null())
        .and_then(|b| decode_batch(b, &join(path, "batch"), diags));
    let cache = match map.get("cache") {
        None | Some(Value::Null) | Some(Value::Bool(true)) => CachePolicy::Always,
        Some(Value::Bool(false)) => CachePolicy::Never,
        Some(Value::String(s)) => match humantime::parse_duration(s.trim()) {
            Ok(d) if !d.is_zero() => CachePolicy::MaxAge(d),
            _ => {
                diags.push(
                    Diagnostic::error(join(path, "cache"), format!("invalid cache duration '{s}'"))
                        .with_hint(
                            "use true, false, or a maximum age such as \"30m\", \"1h\" or \"7d\"",
                        ),
                );
                CachePolicy::Always
            }
        },
        Some(other) => {
            diags.push(wrong_type(
                &join(path, "cache"),
                "true, false or a duration such as \"1h\"",
                other,
            ));
            CachePolicy::Always
        }
    };
    // Most nodes declare none: a look at their few keys is cheaper than three lookups,
    // and the JSON path is spelled out only when there is a declaration.
    let declares = map
        .keys()
        .any(|k| matches!(k.as_str(), "reads_env" | "reads" | "writes"));
    let (reads_env, reads, writes) = if declares {
        let reads_env = match map.get("reads_env") {
            None | Some(Value::Null) => Vec::new(),
            v => decode_reads_env(v, &join(path, "reads_env"), diags),
        };
        (
            reads_env,
            declared_paths(map, "reads", path, diags),
            declared_paths(map, "writes", path, diags),
        )
    } else {
        (Vec::new(), Vec::new(), Vec::new())
    };
    Node {
        id,
        node_type,
        purpose,
        params,
        batch,
        cache,
        reads_env,
        reads,
        writes,
        scoped: false,
    }
}

/// `"reads_env": ["TZ", "DATABASE_URL"]`: distinct variable names, no templates (which
/// variables a node reads is known before it runs, as its key needs).
fn decode_reads_env(v: Option<&Value>, path: &str, diags: &mut Vec<Diagnostic>) -> Vec<String> {
    let items = match v {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            diags.push(
                wrong_type(path, "an array of environment variable names", other)
                    .with_hint("write \"reads_env\": [\"TZ\", \"DATABASE_URL\"]"),
            );
            return Vec::new();
        }
    };
    let mut names: Vec<String> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("{path}[{i}]");
        match item {
            Value::String(name) if !crate::environment::is_valid_name(name) => diags.push(
                Diagnostic::error(at, format!("'{name}' is not an environment variable name"))
                    .with_hint("names are letters, digits and '_', not starting with a digit, such as \"TZ\" or \"DATABASE_URL\""),
            ),
            Value::String(name) if names.contains(name) => diags.push(Diagnostic::error(
                at,
                format!("environment variable '{name}' is listed twice"),
            )),
            Value::String(name) => names.push(name.clone()),
            other => diags.push(wrong_type(&at, "an environment variable name", other)),
        }
    }
    names
}

/// `"reads"` / `"writes"`: an array of literal paths or globs.
fn declared_paths(
    map: &Map<String, Value>,
    key: &str,
    path: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<String> {
    let items = match map.get(key) {
        None | Some(Value::Null) => return Vec::new(),
        Some(Value::Array(items)) => items,
        Some(other) => {
            diags.push(wrong_type(
                &join(path, key),
                "an array of file paths or globs",
                other,
            ));
            return Vec::new();
        }
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, item) in items.iter().enumerate() {
        let ipath = format!("{}[{k}]", join(path, key));
        match item {
            Value::String(s) => match crate::file_pattern::FilePattern::parse(s) {
                Ok(_) => out.push(s.clone()),
                Err(e) => diags.push(Diagnostic::error(ipath, format!("'{s}': {e}"))),
            },
            other => diags.push(wrong_type(&ipath, "a file path or glob", other)),
        }
    }
    out
}

fn decode_batch(v: &Value, path: &str, diags: &mut Vec<Diagnostic>) -> Option<BatchConfig> {
    let Value::Object(map) = v else {
        diags.push(wrong_type(path, "a batch object with \"items\"", v));
        return None;
    };
    unknown_fields(map, BATCH_FIELDS, path, "a batch", diags);
    let items = match map.get("items") {
        None => {
            diags.push(
                Diagnostic::error(join(path, "items"), "missing required field 'items'")
                    .with_hint("items is a template like \"${node.stdout}\" or an array"),
            );
            BatchItems::Inline(Vec::new())
        }
        Some(Value::String(s)) => {
            let t = s.trim();
            if !(t.starts_with("${") && t.ends_with('}')) {
                diags.push(
                    Diagnostic::error(
                        join(path, "items"),
                        format!("items '{s}' is not a single template"),
                    )
                    .with_hint(
                        "items is one reference like \"${node.stdout}\", or an inline array",
                    ),
                );
            }
            BatchItems::Template(s.clone())
        }
        Some(Value::Array(items)) => {
            if items.is_empty() {
                diags.push(Diagnostic::error(
                    join(path, "items"),
                    "inline items must not be empty",
                ));
            }
            BatchItems::Inline(items.clone())
        }
        Some(other) => {
            diags.push(wrong_type(
                &join(path, "items"),
                "a template string or an array",
                other,
            ));
            BatchItems::Inline(Vec::new())
        }
    };
    let alias = match map.get("as") {
        None | Some(Value::Null) => "item".to_string(),
        Some(Value::String(s)) => {
            let valid = {
                let mut c = s.chars();
                matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
                    && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
            };
            if !valid {
                diags.push(
                    Diagnostic::error(join(path, "as"), format!("invalid batch alias '{s}'"))
                        .with_hint("an alias is an identifier like \"item\" or \"user\""),
                );
            }
            s.clone()
        }
        Some(other) => {
            diags.push(wrong_type(&join(path, "as"), "an identifier string", other));
            "item".into()
        }
    };
    // Items run in parallel unless `"parallel": false` says otherwise (pflow's default
    // was sequential; an explicit false keeps that).
    let parallel = get_bool(map, "parallel", path, true, diags);
    let max_concurrent = match map.get("max_concurrent") {
        None | Some(Value::Null) => 10,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=100).contains(&n)) => {
            n.as_u64().unwrap_or(10) as usize
        }
        Some(other) => {
            diags.push(Diagnostic::error(
                join(path, "max_concurrent"),
                format!(
                    "max_concurrent must be a whole number from 1 to 100, found {}",
                    short_json(other)
                ),
            ));
            10
        }
    };
    let max_retries = match map.get("max_retries") {
        None | Some(Value::Null) => 1,
        Some(Value::Number(n)) if n.as_u64().is_some_and(|n| (1..=10).contains(&n)) => {
            n.as_u64().unwrap_or(1) as u32
        }
        Some(other) => {
            diags.push(Diagnostic::error(
                join(path, "max_retries"),
                format!(
                    "max_retries must be a whole number from 1 to 10, found {}",
                    short_json(other)
                ),
            ));
            1
        }
    };
    if let Some(w) = map.get("retry_wait") {
        if !w.as_f64().is_some_and(|w| w >= 0.0) {
            diags.push(wrong_type(
                &join(path, "retry_wait"),
                "a number of seconds ≥ 0",
                w,
            ));
        }
    }
    let error_handling = match map.get("error_handling") {
        None | Some(Value::Null) => ErrorHandling::FailFast,
        Some(Value::String(s)) if s == "fail_fast" => ErrorHandling::FailFast,
        Some(Value::String(s)) if s == "continue" => ErrorHandling::Continue,
        Some(other) => {
            diags.push(
                Diagnostic::error(
                    join(path, "error_handling"),
                    format!("invalid error_handling {}", short_json(other)),
                )
                .with_hint("use \"fail_fast\" or \"continue\""),
            );
            ErrorHandling::FailFast
        }
    };
    Some(BatchConfig {
        items,
        alias,
        parallel,
        max_concurrent,
        error_handling,
        max_retries,
    })
}

fn decode_edge(v: &Value, path: &str, diags: &mut Vec<Diagnostic>) -> Option<Edge> {
    let Value::Object(map) = v else {
        diags.push(wrong_type(path, "an edge object {\"from\", \"to\"}", v));
        return None;
    };
    unknown_fields(map, EDGE_FIELDS, path, "an edge", diags);
    let mut endpoint = |key: &str| match map.get(key) {
        Some(Value::String(s)) => Some(s.clone()),
        None => {
            diags.push(Diagnostic::error(
                join(path, key),
                format!("missing required field '{key}'"),
            ));
            None
        }
        Some(other) => {
            diags.push(wrong_type(&join(path, key), "a node id", other));
            None
        }
    };
    let from = endpoint("from");
    let to = endpoint("to");
    let action = match map.get("action") {
        None | Some(Value::Null) => EdgeAction::Default,
        Some(Value::String(s)) if s == "default" => EdgeAction::Default,
        Some(Value::String(s)) if s == "error" => EdgeAction::Error,
        Some(other) => {
            diags.push(
                Diagnostic::error(
                    join(path, "action"),
                    format!("invalid edge action {}", short_json(other)),
                )
                .with_hint("use \"default\" or \"error\""),
            );
            EdgeAction::Default
        }
    };
    Some(Edge {
        from: from?,
        to: to?,
        action,
    })
}

fn decode_named<T>(
    v: Option<&Value>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
    decode: fn(&Map<String, Value>, &str, &mut Vec<Diagnostic>) -> T,
) -> IndexMap<String, T> {
    let mut out = IndexMap::new();
    match v {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (name, spec) in map {
                let path = field_path(what, name);
                if name.is_empty() || name.contains(BAD_NAME_CHARS) {
                    diags.push(
                        Diagnostic::error(&path, format!("invalid name '{name}'"))
                            .with_hint("names may not be empty or contain spaces, quotes or any of $ | > < & ; ` \\"),
                    );
                }
                match spec {
                    Value::Object(m) => {
                        out.insert(name.clone(), decode(m, &path, diags));
                    }
                    other => diags.push(wrong_type(&path, "an object", other)),
                }
            }
        }
        Some(other) => diags.push(wrong_type(what, "an object of named declarations", other)),
    }
    out
}

fn decode_input(map: &Map<String, Value>, path: &str, diags: &mut Vec<Diagnostic>) -> InputSpec {
    unknown_fields(map, INPUT_FIELDS, path, "an input", diags);
    let ty = match map.get("type") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => match InputType::parse(s) {
            Some(t) => Some(t),
            None => {
                diags.push(
                    Diagnostic::error(join(path, "type"), format!("unknown input type '{s}'"))
                        .with_hint(format!("use one of: {}", InputType::NAMES.join(", "))),
                );
                None
            }
        },
        Some(other) => {
            diags.push(wrong_type(&join(path, "type"), "a type name", other));
            None
        }
    };
    InputSpec {
        ty,
        required: get_bool(map, "required", path, true, diags),
        default: map.get("default").cloned(),
        description: get_string(map, "description", path, diags),
        stdin: get_bool(map, "stdin", path, false, diags),
        secret: get_bool(map, "secret", path, false, diags),
    }
}

fn decode_output(map: &Map<String, Value>, path: &str, diags: &mut Vec<Diagnostic>) -> OutputSpec {
    for key in map.keys() {
        if !OUTPUT_FIELDS.contains(&key.as_str()) {
            let hint = if key == "value" || key == "from" {
                "did you mean 'source'? Write \"source\": \"${node.key}\"".to_string()
            } else {
                suggestion(key, OUTPUT_FIELDS.iter().copied())
                    .unwrap_or_else(|| format!("valid fields: {}", OUTPUT_FIELDS.join(", ")))
            };
            diags.push(
                Diagnostic::error(
                    field_path(path, key),
                    format!("unknown field '{key}' in an output"),
                )
                .with_hint(hint),
            );
        }
    }
    if let Some(t) = map.get("type") {
        let ok = matches!(t, Value::String(s) if InputType::parse(s).is_some() || s == "any");
        if !ok {
            diags.push(
                Diagnostic::error(
                    join(path, "type"),
                    format!("unknown output type {}", short_json(t)),
                )
                .with_hint(format!("use one of: {}", InputType::NAMES.join(", "))),
            );
        }
    }
    OutputSpec {
        source: get_string(map, "source", path, diags),
        description: get_string(map, "description", path, diags),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_a_full_workflow() {
        let doc = json!({
            "ir_version": "0.1.0",
            "inputs": {"name": {"type": "string", "required": false, "default": "world"}},
            "nodes": [
                {"id": "greet", "type": "shell", "params": {"command": "echo hi"}},
                {"id": "shout", "type": "shell", "params": {"command": "tr a-z A-Z"}, "cache": false,
                 "batch": {"items": [1, 2], "as": "n", "parallel": true}}
            ],
            "edges": [{"from": "greet", "to": "shout", "action": "error"}],
            "outputs": {"message": {"source": "${shout.stdout}"}}
        });
        let (wf, diags) = Workflow::from_json(&doc);
        assert!(diags.is_empty(), "{diags:?}");
        let wf = wf.unwrap();
        assert_eq!(wf.nodes.len(), 2);
        assert_eq!(wf.nodes[1].cache, CachePolicy::Never);
        assert_eq!(wf.edges[0].action, EdgeAction::Error);
        assert_eq!(wf.inputs["name"].default, Some(json!("world")));
        let b = wf.nodes[1].batch.as_ref().unwrap();
        assert_eq!(b.alias, "n");
        assert!(b.parallel);
    }

    #[test]
    fn collects_every_structural_problem() {
        let doc = json!({
            "ir_version": 1.0,
            "nodes": [{"id": "a", "type": 3, "parms": {}}],
            "edges": "nope",
            "extra": true
        });
        let (_, diags) = Workflow::from_json(&doc);
        let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
        assert!(paths.contains(&"ir_version"));
        assert!(paths.contains(&"nodes[0].type"));
        assert!(paths.contains(&"nodes[0].parms"));
        assert!(paths.contains(&"edges"));
        assert!(paths.contains(&"extra"));
        let parms = diags.iter().find(|d| d.path == "nodes[0].parms").unwrap();
        assert_eq!(parms.hint.as_deref(), Some("did you mean 'params'?"));
    }

    #[test]
    fn accepts_the_saved_workflow_wrapper() {
        let doc = json!({"name": "x", "description": "d", "ir": {"nodes": [{"id": "a", "type": "echo"}]},
                         "created_at": "2025-01-01"});
        let (wf, diags) = Workflow::from_json(&doc);
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(wf.unwrap().nodes[0].id, "a");
    }

    #[test]
    fn wrapper_errors_are_prefixed_with_ir() {
        let doc = json!({"name": "x", "ir": {"nodes": []}});
        let (_, diags) = Workflow::from_json(&doc);
        assert_eq!(diags[0].path, "ir.nodes");
    }

    #[test]
    fn cache_durations() {
        let doc = json!({"nodes": [
            {"id": "a", "type": "echo", "cache": "1h"},
            {"id": "b", "type": "echo", "cache": "soon"},
            {"id": "c", "type": "echo", "cache": 5}
        ]});
        let (wf, diags) = Workflow::from_json(&doc);
        assert_eq!(
            wf.unwrap().nodes[0].cache,
            CachePolicy::MaxAge(Duration::from_secs(3600))
        );
        assert_eq!(diags.len(), 2);
        assert_eq!(diags[0].path, "nodes[1].cache");
        assert_eq!(diags[1].path, "nodes[2].cache");
    }

    #[test]
    fn round_trips_through_to_json() {
        let doc = json!({
            "ir_version": "0.1.0",
            "nodes": [{"id": "a", "type": "echo", "params": {"message": "x"}, "cache": false}],
            "edges": []
        });
        let (wf, _) = Workflow::from_json(&doc);
        let wf = wf.unwrap();
        let (again, diags) = Workflow::from_json(&wf.to_json());
        assert!(diags.is_empty());
        assert_eq!(again.unwrap(), wf);
    }

    #[test]
    fn empty_and_odd_keys_have_a_path() {
        // Found by the workflow fuzz target: `{"": []}` gave an error with an empty path.
        let doc = json!({"": [], "nodes": [{"id": "a", "type": "echo", "": 1, "a.b": 2}],
                         "inputs": {"": {}, "x y": {}}, "outputs": {"o": {"": 1}}});
        let (_, diags) = Workflow::from_json(&doc);
        let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
        for p in [
            r#"[""]"#,
            r#"nodes[0][""]"#,
            r#"nodes[0]["a.b"]"#,
            r#"inputs[""]"#,
            r#"inputs["x y"]"#,
            r#"outputs.o[""]"#,
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
        assert!(diags.iter().all(|d| !d.path.is_empty()));
    }

    #[test]
    fn reads_env_and_strict_env_decode_check_and_survive_to_json() {
        let doc = json!({"strict_env": true, "nodes": [
            {"id": "a", "type": "shell", "params": {"command": "date"}, "reads_env": ["TZ", "LC_TIME"]}
        ]});
        let (wf, diags) = Workflow::from_json(&doc);
        assert!(diags.is_empty(), "{diags:?}");
        let wf = wf.unwrap();
        assert!(wf.strict_env);
        assert_eq!(wf.nodes[0].reads_env, ["TZ", "LC_TIME"]);
        assert_eq!(Workflow::from_json(&wf.to_json()).0.unwrap(), wf);

        let doc = json!({"nodes": [
            {"id": "a", "type": "echo", "reads_env": ["TZ", "TZ", "1X", 3]},
            {"id": "b", "type": "echo", "reads_env": {"TZ": true}}
        ]});
        let (_, diags) = Workflow::from_json(&doc);
        let paths: Vec<&str> = diags.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "nodes[0].reads_env[1]",
                "nodes[0].reads_env[2]",
                "nodes[0].reads_env[3]",
                "nodes[1].reads_env"
            ]
        );
        assert!(
            diags[0].message.contains("listed twice"),
            "{}",
            diags[0].message
        );
    }

    #[test]
    fn batch_retries_survive_to_json() {
        let doc = json!({"nodes": [{"id": "a", "type": "echo",
            "batch": {"items": [1], "max_retries": 3}}]});
        let (wf, diags) = Workflow::from_json(&doc);
        assert!(diags.is_empty(), "{diags:?}");
        let wf = wf.unwrap();
        assert_eq!(Workflow::from_json(&wf.to_json()).0.unwrap(), wf);
    }
}
