//! Node types: what each one accepts and produces, and how it runs.
//!
//! Each node type declares its params and outputs once, in a [`NodeSpec`]; the validator
//! checks workflows against the same table the executor runs from, so a reference to an
//! output a type does not produce is caught before anything runs.

use crate::error::{ErrorCategory, NodeError};
use crate::workspace::Held;
use serde_json::{Map, Value};
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;

pub mod copy_file;
pub mod delete_file;
pub mod echo;
pub mod http;
pub mod llm;
pub mod mcp;
pub mod move_file;
pub mod nested;
pub mod read_file;
pub mod shell;
pub mod write_file;

/// The JSON type a param accepts (checked for literal values; templates are checked when
/// they resolve).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    String,
    Number,
    Integer,
    Bool,
    Object,
    Array,
    /// An object whose values are strings (shell `env`, http `headers`).
    StringMap,
    Any,
}

impl ParamKind {
    pub fn accepts(&self, v: &Value) -> bool {
        match self {
            ParamKind::String => v.is_string(),
            ParamKind::Number => v.is_number(),
            ParamKind::Integer => v.is_i64() || v.is_u64(),
            ParamKind::Bool => v.is_boolean(),
            ParamKind::Object => v.is_object(),
            ParamKind::Array => v.is_array(),
            ParamKind::StringMap => v.as_object().is_some_and(|m| {
                m.values()
                    .all(|x| x.is_string() || x.is_number() || x.is_boolean())
            }),
            ParamKind::Any => true,
        }
    }

    /// Does a literal value have this kind, in any spelling the param readers below take
    /// (`num_param` reads "30", `bool_param` reads "yes", http's objects may be JSON
    /// text)? The validator checks literal params with it, so what it passes runs.
    pub fn admits(&self, v: &Value) -> bool {
        if self.accepts(v) {
            return true;
        }
        match (self, v) {
            (ParamKind::Number, Value::String(s)) => s.trim().parse::<f64>().is_ok(),
            (ParamKind::Integer, Value::Number(n)) => n.as_f64().is_some_and(|f| f.fract() == 0.0),
            (ParamKind::Integer, Value::String(s)) => {
                s.trim().parse::<f64>().is_ok_and(|f| f.fract() == 0.0)
            }
            (ParamKind::Bool, Value::String(s)) => bool_text(s).is_some(),
            (ParamKind::Object, Value::String(s)) => {
                s.trim().is_empty()
                    || matches!(
                        crate::template::parse_json_container(s),
                        Some(Value::Object(_))
                    )
            }
            (ParamKind::Array, Value::String(s)) => matches!(
                crate::template::parse_json_container(s),
                Some(Value::Array(_))
            ),
            _ => false,
        }
    }

    pub fn describe(&self) -> &'static str {
        match self {
            ParamKind::String => "a string",
            ParamKind::Number => "a number",
            ParamKind::Integer => "a whole number",
            ParamKind::Bool => "true or false",
            ParamKind::Object => "an object",
            ParamKind::Array => "an array",
            ParamKind::StringMap => "an object of string values",
            ParamKind::Any => "any value",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct ParamSpec {
    pub name: &'static str,
    pub required: bool,
    pub kind: ParamKind,
    /// The smallest and largest value a number may have (inclusive): checked by
    /// `pflow validate` for a literal and by the node when a template gives it.
    pub range: Option<(f64, f64)>,
    /// One line for `pflow nodes TYPE`, the schema and the format reference.
    pub doc: &'static str,
    /// What is wrong with a literal value beyond its kind (a URL that does not parse),
    /// so `pflow validate` says it before anything runs.
    pub literal_check: Option<fn(&Value) -> Option<String>>,
}

impl ParamSpec {
    /// The same param, with a check of literal values.
    const fn checked(self, check: fn(&Value) -> Option<String>) -> ParamSpec {
        ParamSpec {
            literal_check: Some(check),
            ..self
        }
    }

    /// The same param, described.
    const fn doc(self, doc: &'static str) -> ParamSpec {
        ParamSpec { doc, ..self }
    }

    /// Why `x` is out of this param's range, if it is.
    pub fn out_of_range(&self, x: f64) -> Option<String> {
        let (lo, hi) = self.range?;
        (!(x >= lo && x <= hi)).then(|| {
            format!(
                "param '{}' must be between {lo} and {hi}, got {x}",
                self.name
            )
        })
    }
}

const fn req(name: &'static str, kind: ParamKind) -> ParamSpec {
    ParamSpec {
        name,
        required: true,
        kind,
        range: None,
        doc: "",
        literal_check: None,
    }
}

const fn opt(name: &'static str, kind: ParamKind) -> ParamSpec {
    ParamSpec {
        name,
        required: false,
        kind,
        range: None,
        doc: "",
        literal_check: None,
    }
}

/// An optional number within `lo..=hi`.
const fn ranged(name: &'static str, kind: ParamKind, lo: f64, hi: f64) -> ParamSpec {
    ParamSpec {
        name,
        required: false,
        kind,
        range: Some((lo, hi)),
        doc: "",
        literal_check: None,
    }
}

/// A number param as given, checked against its declared range.
pub(crate) fn ranged_param(
    spec: &NodeSpec,
    params: &Map<String, Value>,
    name: &str,
) -> Result<Option<f64>, NodeError> {
    let value = num_param(params, name)?;
    if let (Some(x), Some(p)) = (value, spec.param(name)) {
        if let Some(why) = p.out_of_range(x) {
            return Err(NodeError::new(ErrorCategory::Validation, why));
        }
    }
    Ok(value)
}

/// What a path below an output may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// Text; a deeper path parses it as JSON at run time.
    Text,
    /// Any JSON value; deeper paths are checked at run time.
    Json,
    /// A number or boolean: nothing below it.
    Scalar,
}

#[derive(Debug, Clone, Copy)]
pub struct OutputField {
    pub name: &'static str,
    pub kind: OutputKind,
    /// One line for `pflow nodes TYPE` and the format reference.
    pub doc: &'static str,
}

impl OutputField {
    /// The same output, described.
    const fn doc(self, doc: &'static str) -> OutputField {
        OutputField { doc, ..self }
    }
}

const fn out(name: &'static str, kind: OutputKind) -> OutputField {
    OutputField {
        name,
        kind,
        doc: "",
    }
}

/// Everything the engine knows about a node type.
#[derive(Debug)]
pub struct NodeSpec {
    pub name: &'static str,
    /// What the type does, in one sentence (`pflow nodes`).
    pub summary: &'static str,
    /// Bumped when the type's behaviour changes, so old cache entries stop matching.
    pub version: u32,
    pub params: &'static [ParamSpec],
    pub outputs: &'static [OutputField],
    /// Params naming files whose content is an input (hashed into the node key).
    pub reads_files: &'static [&'static str],
    /// Params naming files the node takes away (deleted, moved): a cached writer of such
    /// a file must not restore it.
    pub removes_files: &'static [&'static str],
    /// Params naming files the node writes: with the node's declared `writes`, what
    /// implies edges to readers of those paths and what two nodes may not share.
    pub writes_files: &'static [&'static str],
    /// Environment variables whose values change results (e.g. a default model). Their
    /// values go into the node key; secrets (API keys) never belong here.
    pub key_env: &'static [&'static str],
    /// Params whose text a shell runs: untrusted text templated into them could inject
    /// code, and a bare `${NAME}` in the node is probably meant for the shell.
    pub shell_params: &'static [&'static str],
    /// The param whose map becomes the process environment: the safe way to get a
    /// value into shell text, which validation hints point to.
    pub env_param: Option<&'static str>,
    /// Outputs holding text a server or a model wrote, not the workflow's author:
    /// validation warns when one is templated into a shell param.
    pub untrusted_outputs: &'static [&'static str],
    /// Params that hold credentials whatever they are named: every value of a map
    /// param (an environment commonly carries tokens), else the value itself. Redacted,
    /// with the params [`crate::secrets::is_secret_name`] picks out, before a repair
    /// model sees the workflow.
    pub secret_params: &'static [&'static str],
    /// Object params of HTTP headers: a field named like a credential header
    /// ([`crate::secrets::is_secret_header`], `Authorization`) holds a secret.
    pub secret_header_params: &'static [&'static str],
    /// Its runs may announce an effect before doing it ([`RunContext::intent`]), so the
    /// executor gives them a place to, and clears it once the result is recorded.
    pub announces_effects: bool,
    /// Would running it again with these params repeat an effect outside pflow (a
    /// command, a write, a request that is not GET or HEAD)? A repair may not change a
    /// node that already succeeded when this says yes: its effect would happen twice.
    pub repeats_effects: fn(&Map<String, Value>) -> bool,
    /// A read pflow cannot see into (an MCP tool marked read-only): it runs on every
    /// build unless the node gives a `cache` maximum age, and early cutoff spares its
    /// dependents when the result is unchanged.
    pub volatile: bool,
    /// An unknown param is an error, not ignored (an MCP tool's schema is its contract).
    pub closed_params: bool,
    /// Outputs beyond `outputs` appear when the node runs (an MCP tool's object
    /// result): validation lets references to other names through.
    pub open_outputs: bool,
    /// What else identifies the implementation in the key (an MCP server's identity
    /// and version, the tool's schema digest); empty for built-in types.
    pub identity: &'static str,
    pub run: fn(&Map<String, Value>, &RunContext) -> Result<NodeOutput, NodeError>,
    /// A run that waits on a server, as a future the HTTP runtime drives: a batch of
    /// such nodes keeps many in flight on one thread instead of a thread each. Bad
    /// params fail here, before anything is sent.
    pub start: Option<Start>,
}

/// How a run that waits on a server starts ([`NodeSpec::start`]).
pub type Start = fn(&Map<String, Value>) -> Result<Started, NodeError>;

/// A run handed to the HTTP runtime ([`NodeSpec::start`]).
pub type Started =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<NodeOutput, NodeError>> + Send>>;

/// The literal text values of `params` (and of objects in them) whose names look secret.
fn named_secrets<'p>(params: &'p Map<String, Value>, out: &mut Vec<&'p str>) {
    for (name, value) in params {
        match value {
            Value::String(s) if crate::secrets::is_secret_name(name) && !s.contains("${") => {
                out.push(s)
            }
            Value::Object(inner) => named_secrets(inner, out),
            _ => {}
        }
    }
}

/// A header name as a workflow spells it, in any case.
pub fn is_secret_header_name(name: &str) -> bool {
    crate::secrets::is_secret_header(&name.to_ascii_lowercase())
}

impl NodeSpec {
    /// Does the node hand some of its params to a shell?
    pub fn runs_shell(&self) -> bool {
        !self.shell_params.is_empty()
    }

    /// The literal values a node of this type holds in its secret params (a value with a
    /// template in it is the template's: its input is the secret): what the redactor
    /// must be told.
    pub fn literal_secrets<'p>(&self, params: &'p Map<String, Value>) -> Vec<&'p str> {
        let literal = |v: &'p Value| v.as_str().filter(|s| !s.contains("${"));
        let mut out = Vec::new();
        for value in self.secret_params.iter().filter_map(|p| params.get(*p)) {
            match value {
                Value::Object(m) => out.extend(m.values().filter_map(literal)),
                other => out.extend(literal(other)),
            }
        }
        // Params named like secrets (an MCP tool's `token`), in objects too: what a
        // repair model is shown as placeholders is what the build redacts.
        // A built-in type's own params are secret as it declares (`max_tokens` is none).
        for (name, value) in params {
            match value {
                Value::String(_) if !self.secret_by_name(name) => {}
                Value::String(s) if !s.contains("${") => out.push(s),
                Value::Object(inner) => named_secrets(inner, &mut out),
                _ => {}
            }
        }
        for value in self
            .secret_header_params
            .iter()
            .filter_map(|p| params.get(*p))
        {
            let Value::Object(m) = value else { continue };
            for (name, v) in m {
                if let Some(v) = literal(v).filter(|_| is_secret_header_name(name)) {
                    out.push(v);
                    // `Bearer <token>`: the token alone too.
                    out.extend(v.split_once(' ').map(|(_, rest)| rest.trim()));
                }
            }
        }
        out
    }

    /// Is param `name` secret by its name: one this type does not declare itself (a
    /// nested workflow's input) or an MCP tool's, named like a credential?
    pub fn secret_by_name(&self, name: &str) -> bool {
        (self.closed_params || self.param(name).is_none()) && crate::secrets::is_secret_name(name)
    }

    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
    pub fn output(&self, name: &str) -> Option<&OutputField> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// What a node gets besides its params.
pub struct RunContext<'a> {
    pub node_id: &'a str,
    /// The node's type as the workflow spells it (one run function serves many MCP tools).
    pub node_type: &'a str,
    /// Set when the user interrupts; long-running nodes stop early.
    pub interrupted: &'a AtomicBool,
    /// Files this node wrote in its last recorded build, as (path, BLAKE3 hex): a file
    /// that still holds exactly that is the node's own output, not the user's.
    pub own_files: &'a [(String, String)],
    /// What a child process may see of pflow's environment.
    pub env: crate::environment::ChildEnv<'a>,
    /// Where the node may write, move and delete files.
    pub write_roots: &'a crate::workspace::WriteRoots,
    /// Where an effect announces itself before it happens (absent: nothing is cached).
    pub intent: Option<&'a crate::cache::intents::Intent>,
    /// `-v`: output as it arrives (bytes, is stdout), besides what the node collects.
    pub live: Option<&'a Live>,
}

/// Where a node hands output as it arrives: (bytes, is stdout).
pub type Live = dyn Fn(&[u8], bool) + Sync;

impl RunContext<'_> {
    /// Refuse to change a file outside the workspace (and the allowed directories);
    /// else hold its directory, made if missing, for the change to go through.
    pub fn hold(&self, path: &std::path::Path) -> Result<Held, NodeError> {
        self.hold_existing(path, true)?.ok_or_else(|| {
            NodeError::new(
                ErrorCategory::File,
                format!("the directory of '{}' went away", path.display()),
            )
        })
    }

    /// Like [`RunContext::hold`]; `None` when the directory does not exist and
    /// `make_parents` is false (the file cannot be there either).
    pub fn hold_existing(
        &self,
        path: &std::path::Path,
        make_parents: bool,
    ) -> Result<Option<Held>, NodeError> {
        self.write_roots
            .hold(path, make_parents)
            .map_err(|why| NodeError::new(ErrorCategory::File, why))
    }

    /// Before writing `content` to the `held` file: a file this node wrote last time and someone
    /// changed since is moved aside (to `PATH.pflow-kept`, as a restore does), never
    /// overwritten. Returns where it went. A file the node did not write last time is
    /// the workflow's to replace, as it says.
    pub fn keep_hand_edit(
        &self,
        held: &Held,
        content: &[u8],
    ) -> Result<Option<(String, PathBuf)>, NodeError> {
        let shown = held.given().to_string_lossy();
        let Some((_, wrote)) = self.own_files.iter().find(|(p, _)| p == shown.as_ref()) else {
            return Ok(None);
        };
        let Ok(now) = crate::fsutil::file_digest(held.at()) else {
            return Ok(None);
        };
        if now.to_hex().as_str() == wrote || now == blake3::hash(content) {
            return Ok(None);
        }
        let aside = crate::fsutil::move_aside(held.at(), ".pflow-kept").map_err(|e| {
            NodeError::new(
                ErrorCategory::File,
                format!("cannot move the hand-edited '{shown}' aside: {e}"),
            )
        })?;
        Ok(Some((shown.into_owned(), held.shown(&aside))))
    }

    /// Is the `held` file still exactly what this node wrote last time?
    pub fn is_own_output(&self, held: &Held) -> bool {
        let shown = held.given().to_string_lossy();
        self.own_files.iter().any(|(p, digest)| {
            p == shown.as_ref()
                && crate::fsutil::file_digest(held.at())
                    .is_ok_and(|d| d.to_hex().as_str() == digest)
        })
    }
}

/// A successful run: the outputs, and the files the node wrote (restored from the cache
/// when they go missing).
#[derive(Debug, Default)]
pub struct NodeOutput {
    pub outputs: Map<String, Value>,
    pub files_written: Vec<PathBuf>,
    /// Files the node took away (deleted, or moved elsewhere): the effect a rebuild
    /// checks still holds before it reuses the result.
    pub files_removed: Vec<PathBuf>,
    /// Each file the node read, with the BLAKE3 of the bytes it used: the executor stores
    /// the result only if that is the content its key was made from.
    pub files_read: Vec<(PathBuf, blake3::Hash)>,
    /// Files the node wrote last time that were changed by hand since, moved aside
    /// before it wrote them again: (path, where the hand-edited version is).
    pub kept: Vec<(String, PathBuf)>,
}

impl NodeOutput {
    pub fn new(outputs: Map<String, Value>) -> Self {
        NodeOutput {
            outputs,
            ..Default::default()
        }
    }
}

pub static REGISTRY: &[&NodeSpec] = &[
    &shell::SPEC,
    &read_file::SPEC,
    &write_file::SPEC,
    &copy_file::SPEC,
    &move_file::SPEC,
    &delete_file::SPEC,
    &http::SPEC,
    &llm::SPEC,
    &echo::SPEC,
    &nested::WORKFLOW,
];

/// A built-in type, else a tool of a configured MCP server.
pub fn lookup(name: &str) -> Option<&'static NodeSpec> {
    REGISTRY
        .iter()
        .copied()
        .find(|s| s.name == name)
        .or_else(|| mcp::lookup(name))
}

pub fn type_names() -> impl Iterator<Item = &'static str> {
    REGISTRY.iter().map(|s| s.name)
}

/// For the unknown-type error: a note on why a type the original pflow had is not
/// here (such as MCP tools), or "" for any other name.
pub fn unsupported_note(t: &str) -> std::borrow::Cow<'static, str> {
    if let Some(why) = mcp::why_unknown(t) {
        format!(" ({why})").into()
    } else if t.starts_with("git-") || t.starts_with("github-") {
        " (git and GitHub nodes are not supported; use a shell node)".into()
    } else if t == "workflow" {
        " (a nested workflow is expanded when its file is loaded; this one was not)".into()
    } else if t == "claude-code" || t == "code" {
        " (this node type of the original pflow is not supported)".into()
    } else {
        "".into()
    }
}

// ---- helpers shared by node implementations ----

/// `repeats_effects` of a type whose every run acts on the world.
pub(crate) fn always(_: &Map<String, Value>) -> bool {
    true
}

/// `repeats_effects` of a type that only computes.
pub(crate) fn never(_: &Map<String, Value>) -> bool {
    false
}

pub(crate) fn str_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<&'a str, NodeError> {
    match params.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(NodeError::new(
            ErrorCategory::Validation,
            format!(
                "param '{name}' must be a string, got {}",
                crate::template::type_name(other)
            ),
        )),
        None => Err(NodeError::new(
            ErrorCategory::Validation,
            format!("missing required param '{name}'"),
        )),
    }
}

pub(crate) fn opt_str_param<'a>(
    params: &'a Map<String, Value>,
    name: &str,
) -> Result<Option<&'a str>, NodeError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => str_param(params, name).map(Some),
    }
}

pub(crate) fn bool_param(
    params: &Map<String, Value>,
    name: &str,
    default: bool,
) -> Result<bool, NodeError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => other.as_str().and_then(bool_text).ok_or_else(|| {
            NodeError::new(
                ErrorCategory::Validation,
                format!("param '{name}' must be true or false, got {other}"),
            )
        }),
    }
}

/// A boolean spelled as text, as `bool_param` reads it.
pub fn bool_text(s: &str) -> Option<bool> {
    match s.to_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" | "" => Some(false),
        _ => None,
    }
}

pub(crate) fn num_param(params: &Map<String, Value>, name: &str) -> Result<Option<f64>, NodeError> {
    match params.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            NodeError::new(
                ErrorCategory::Validation,
                format!("param '{name}' must be a number, got '{s}'"),
            )
        }),
        Some(other) => Err(NodeError::new(
            ErrorCategory::Validation,
            format!("param '{name}' must be a number, got {other}"),
        )),
    }
}

/// Map an I/O error on a user file to a node error with the right category.
pub(crate) fn file_error(what: &str, path: &std::path::Path, e: &std::io::Error) -> NodeError {
    let category = if e.kind() == std::io::ErrorKind::NotFound {
        ErrorCategory::MissingFile
    } else {
        ErrorCategory::File
    };
    let reason = match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".to_string(),
        std::io::ErrorKind::PermissionDenied => "permission denied".to_string(),
        _ => e.to_string(),
    };
    NodeError::new(
        category,
        format!("cannot {what} '{}': {reason}", path.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_secrets_are_the_values_written_in_secret_params_without_a_template() {
        let params = serde_json::json!({
            "command": "echo not-a-secret",
            "env": {"A": "literal-a", "B": "${token}", "C": 3}
        });
        let Value::Object(params) = params else {
            unreachable!()
        };
        assert_eq!(shell::SPEC.literal_secrets(&params), vec!["literal-a"]);
        let named = serde_json::json!({"query": "q", "auth": {"api_token": "tok-1", "user": "u"},
                                       "password": "${pw}"});
        let Value::Object(named) = named else {
            unreachable!()
        };
        assert_eq!(echo::SPEC.literal_secrets(&named), vec!["tok-1"]);
        assert!(
            echo::SPEC.literal_secrets(&params).is_empty(),
            "echo has none"
        );
    }

    /// The facts a type declares name its own params and outputs, so a renamed param
    /// cannot silently turn a warning or a redaction off.
    #[test]
    fn declared_facts_name_real_params_and_outputs() {
        for spec in REGISTRY {
            let params = spec
                .shell_params
                .iter()
                .chain(spec.env_param.iter())
                .chain(spec.secret_params)
                .chain(spec.reads_files)
                .chain(spec.writes_files)
                .chain(spec.removes_files);
            for p in params {
                assert!(spec.param(p).is_some(), "{}: no param '{p}'", spec.name);
            }
            for o in spec.untrusted_outputs {
                assert!(spec.output(o).is_some(), "{}: no output '{o}'", spec.name);
            }
            assert!(
                spec.env_param.is_none() || spec.runs_shell(),
                "{}",
                spec.name
            );
        }
    }
}
