//! What the repair model is told: the workflow, the errors, what ran and the run's
//! inputs, with every secret as a `<secret:NAME>` placeholder ([`Placeholders`]), kept
//! within a size budget.
//!
//! The budget ([`BUDGET_ENV`], default [`DEFAULT_BUDGET`] bytes) never cuts the failing
//! nodes, their errors, the stdout/stderr tails, or the list of fields that do exist
//! where a template stopped (all of them, most similar to the missing one first). It
//! cuts, in this order and each time with a marker the model is told about: long
//! strings outside the failing nodes, then whitespace, then the params of nodes far from
//! the failure, then those nodes altogether, then the list of what ran. Whatever was cut
//! is put back into the reply unchanged ([`Context::restore_cuts`]).

use super::placeholder::Placeholders;
use super::Prompt;
use crate::error::ErrorCategory;
use crate::executor::{Outcome, Status};
use crate::secrets::Redactor;
use serde_json::{json, Map, Value};
use std::collections::BTreeSet;

pub const BUDGET_ENV: &str = "PFLOW_REPAIR_PROMPT_BYTES";
pub const DEFAULT_BUDGET: usize = 100_000;

/// Strings longer than this (outside the failing nodes) are the first thing cut.
const LONG_STRING: usize = 2_000;
/// How much of a cut string stays, so the model sees what it was.
const KEPT_HEAD: usize = 120;
/// Tails of a failing command's output.
const TAIL: usize = 1_500;
/// Field previews shown; past this, the names alone.
const PREVIEWED_FIELDS: usize = 60;

pub fn budget() -> usize {
    std::env::var(BUDGET_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .filter(|&n: &usize| n >= 4_000)
        .unwrap_or(DEFAULT_BUDGET)
}

/// One prompt's sections, and what was cut from its workflow.
pub struct Context {
    workflow: String,
    execution: String,
    errors: String,
    /// (marker, original value): a string or node cut from the workflow.
    cuts: Vec<(String, Value)>,
    /// Nodes left out altogether: (position, id, node).
    omitted: Vec<(usize, String, Value)>,
}

impl Context {
    /// `hidden`: the workflow with its secrets as placeholders.
    pub fn new(
        hidden: &Value,
        outcome: &Outcome,
        inputs: &Map<String, Value>,
        secrets: &Placeholders,
        redactor: &Redactor,
    ) -> Context {
        let clean = |text: &str| redactor.scrub(&secrets.hide_text(text));
        let budget = budget();
        let errors = errors_text(outcome, &clean);
        let mut execution = clean(&execution_text(outcome, usize::MAX));
        execution.push_str(&inputs_text(inputs, secrets, &clean));
        let failing: BTreeSet<String> = failures(outcome).map(|(id, _)| id).collect();
        let near = near_nodes(hidden, &failing);
        // The prompt's own text, the errors and the inputs are never cut.
        let fixed = 6_000 + errors.len();
        let mut cx = Context {
            workflow: String::new(),
            execution,
            errors,
            cuts: Vec::new(),
            omitted: Vec::new(),
        };
        let mut doc = hidden.clone();
        let fits = |cx: &Context, wf: &str| fixed + cx.execution.len() + wf.len() <= budget;
        let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if fits(&cx, &text) {
            cx.workflow = text;
            return cx;
        }
        // 1. Long strings outside the failing nodes.
        cx.cut_long_strings(&mut doc, &failing);
        text = serde_json::to_string_pretty(&doc).unwrap_or_default();
        if !fits(&cx, &text) {
            // 2. Whitespace.
            text = serde_json::to_string(&doc).unwrap_or_default();
        }
        if !fits(&cx, &text) {
            // 3. The params of nodes far from the failure.
            cx.stub_far_nodes(&mut doc, &near);
            text = serde_json::to_string(&doc).unwrap_or_default();
        }
        if !fits(&cx, &text) {
            // 4. Those nodes altogether, and the list of what ran beyond the failure.
            cx.omit_far_nodes(&mut doc, &near);
            cx.execution = clean(&execution_text(outcome, 200));
            cx.execution.push_str(&inputs_text(inputs, secrets, &clean));
            text = serde_json::to_string(&doc).unwrap_or_default();
        }
        if !fits(&cx, &text) {
            // 5. Long strings of the failing nodes too (the error keeps its own copy).
            cx.cut_long_strings(&mut doc, &BTreeSet::new());
            text = serde_json::to_string(&doc).unwrap_or_default();
        }
        cx.workflow = text;
        cx
    }

    /// The prompt text, with a note on the cuts when there are any.
    pub fn render(&self, prompt: &Prompt, feedback: &str) -> String {
        let mut execution = String::new();
        if !self.cuts.is_empty() || !self.omitted.is_empty() {
            execution.push_str("Note: the workflow above was shortened to fit:");
            if !self.cuts.is_empty() {
                execution.push_str(&format!(
                    " {} value(s) are shown as \"<cut:N …>\" markers (a node whose params were cut holds \"cut\": \"<cut:N>\");",
                    self.cuts.len()
                ));
            }
            if !self.omitted.is_empty() {
                let mut ids: Vec<&str> =
                    self.omitted.iter().map(|(_, id, _)| id.as_str()).collect();
                let more = ids.len().saturating_sub(30);
                ids.truncate(30);
                execution.push_str(&format!(
                    " {} node(s) far from the failure are left out ({}{});",
                    self.omitted.len(),
                    ids.join(", "),
                    if more > 0 {
                        format!(" and {more} more")
                    } else {
                        String::new()
                    }
                ));
            }
            execution.push_str(" return markers and cut nodes exactly as shown, and leave omitted nodes out: pflow keeps them unchanged.\n\n");
        }
        execution.push_str(&self.execution);
        prompt.render(&self.workflow, &execution, &self.errors, feedback)
    }

    /// Put what was cut back into a reply: a marker string or a cut node becomes its
    /// original, and an omitted node the reply leaves out goes back where it was.
    pub fn restore_cuts(&self, mut reply: Value) -> Value {
        if self.cuts.is_empty() && self.omitted.is_empty() {
            return reply;
        }
        self.restore_in(&mut reply);
        if let Some(nodes) = reply.get_mut("nodes").and_then(Value::as_array_mut) {
            for (at, id, node) in &self.omitted {
                let present = nodes
                    .iter()
                    .any(|n| n.get("id").and_then(Value::as_str) == Some(id.as_str()));
                if !present {
                    let at = (*at).min(nodes.len());
                    nodes.insert(at, node.clone());
                }
            }
        }
        reply
    }

    fn restore_in(&self, v: &mut Value) {
        match v {
            Value::String(s) if s.starts_with("<cut:") => {
                if let Some((_, orig)) = self.cuts.iter().find(|(m, _)| m == s) {
                    *v = orig.clone();
                    // A cut node may hold strings cut before it.
                    self.restore_in(v);
                }
            }
            Value::Object(map) => {
                if let Some(Value::String(m)) = map.get("cut") {
                    if let Some((_, orig)) = self.cuts.iter().find(|(k, _)| k == m) {
                        *v = orig.clone();
                        self.restore_in(v);
                        return;
                    }
                }
                map.values_mut().for_each(|x| self.restore_in(x));
            }
            Value::Array(items) => items.iter_mut().for_each(|x| self.restore_in(x)),
            _ => {}
        }
    }

    fn marker(&mut self, head: &str, rest: usize, original: Value) -> String {
        let m = if head.is_empty() {
            format!("<cut:{}>", self.cuts.len() + 1)
        } else {
            format!("<cut:{} {head}… ({rest} more bytes)>", self.cuts.len() + 1)
        };
        self.cuts.push((m.clone(), original));
        m
    }

    fn cut_long_strings(&mut self, doc: &mut Value, keep: &BTreeSet<String>) {
        fn walk(cx: &mut Context, v: &mut Value) {
            match v {
                Value::String(s) if s.len() > LONG_STRING && !s.starts_with("<cut:") => {
                    let head: String = s
                        .chars()
                        .take(KEPT_HEAD)
                        .collect::<String>()
                        .replace('>', "›");
                    let rest = s.len() - head.len();
                    let original = Value::String(std::mem::take(s));
                    *s = cx.marker(&head, rest, original);
                }
                Value::Array(items) => items.iter_mut().for_each(|x| walk(cx, x)),
                Value::Object(map) => map.values_mut().for_each(|x| walk(cx, x)),
                _ => {}
            }
        }
        let Value::Object(top) = doc else { return };
        for (k, v) in top.iter_mut() {
            if k == "nodes" {
                for node in v.as_array_mut().into_iter().flatten() {
                    let id = node.get("id").and_then(Value::as_str).unwrap_or("");
                    if !keep.contains(id) {
                        walk(self, node);
                    }
                }
            } else {
                walk(self, v);
            }
        }
    }

    fn stub_far_nodes(&mut self, doc: &mut Value, near: &BTreeSet<String>) {
        for node in doc
            .get_mut("nodes")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let id = node
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if near.contains(&id) || node.get("cut").is_some() {
                continue;
            }
            let kind = node.get("type").cloned().unwrap_or(Value::Null);
            let original = std::mem::take(node);
            let m = self.marker("", 0, original);
            *node = json!({"id": id, "type": kind, "cut": m});
        }
    }

    fn omit_far_nodes(&mut self, doc: &mut Value, near: &BTreeSet<String>) {
        let Some(nodes) = doc.get_mut("nodes").and_then(Value::as_array_mut) else {
            return;
        };
        let mut kept = Vec::new();
        for (i, mut node) in std::mem::take(nodes).into_iter().enumerate() {
            let id = node
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if near.contains(&id) {
                kept.push(node);
                continue;
            }
            // A stub's original, from its marker.
            self.restore_in(&mut node);
            self.omitted.push((i, id, node));
        }
        *nodes = kept;
    }
}

/// The failing nodes, the nodes their templates read, and the nodes that read them.
fn near_nodes(doc: &Value, failing: &BTreeSet<String>) -> BTreeSet<String> {
    let nodes: Vec<(&str, String)> = doc
        .get("nodes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| Some((n.get("id")?.as_str()?, n.to_string())))
        .collect();
    let refers = |text: &str, id: &str| {
        text.contains(&format!("${{{id}.")) || text.contains(&format!("${{{id}}}"))
    };
    let mut near: BTreeSet<String> = failing.clone();
    for (id, text) in &nodes {
        if failing.contains(*id) {
            near.extend(
                nodes
                    .iter()
                    .filter(|(u, _)| refers(text, u))
                    .map(|(u, _)| u.to_string()),
            );
        } else if failing.iter().any(|f| refers(text, f)) {
            near.insert(id.to_string());
        }
    }
    near
}

/// One failure, as the model and the loop detector see it.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct Signature {
    pub node: String,
    pub category: String,
    pub message: String,
}

pub fn signatures(outcome: &Outcome) -> Vec<Signature> {
    let mut sigs: Vec<Signature> = failures(outcome)
        .map(|(id, e)| Signature {
            node: id,
            category: e.category.as_str().to_string(),
            message: normalize(&e.message),
        })
        .collect();
    sigs.sort();
    sigs
}

/// Unhandled failures: (node id, error), then the declared outputs that did not
/// resolve as (`output NAME`, error).
pub fn failures(outcome: &Outcome) -> impl Iterator<Item = (String, &crate::error::NodeError)> {
    outcome
        .nodes
        .iter()
        .filter(|n| n.status == Status::Failed && !n.handled)
        .filter_map(|n| n.error.as_deref().map(|e| (n.id.clone(), e)))
        .chain(
            outcome
                .output_errors
                .iter()
                .map(|(name, e)| (format!("output {name}"), e)),
        )
}

/// The first failure no workflow edit can fix, if any.
pub fn blocking_failure(outcome: &Outcome) -> Option<(String, ErrorCategory, String)> {
    failures(outcome)
        .find(|(_, e)| !e.repairable())
        .map(|(id, e)| (id, e.category, e.message.clone()))
}

/// The first failed node that belongs to a nested workflow (`run/step`): repair edits
/// the workflow file it was given, which does not hold that node.
pub fn nested_failure(outcome: &Outcome) -> Option<String> {
    failures(outcome)
        .map(|(id, _)| id)
        .find(|id| crate::nested::is_nested(id) && !id.starts_with("output "))
}

/// Longest shape shown per upstream node.
const SHAPE_CHARS: usize = 2_000;

/// The shape of a value: its keys and the types below them, never its text (a JSON text
/// is shown as the shape of what it holds).
fn shape(v: &Value, depth: usize) -> Value {
    if depth > 6 {
        return json!("…");
    }
    match v {
        Value::Object(map) => {
            let mut out = Map::new();
            for (k, x) in map.iter().take(50) {
                out.insert(k.clone(), shape(x, depth + 1));
            }
            if map.len() > 50 {
                out.insert("…".into(), json!(format!("{} more fields", map.len() - 50)));
            }
            Value::Object(out)
        }
        Value::Array(items) => match items.first() {
            Some(first) => json!([shape(first, depth + 1), format!("{} items", items.len())]),
            None => json!([]),
        },
        Value::String(s) => match crate::template::parse_json_container(s) {
            Some(inner) => json!({"json text": shape(&inner, depth + 1)}),
            None => json!(format!("string ({} chars)", s.chars().count())),
        },
        Value::Number(_) => json!("number"),
        Value::Bool(_) => json!("boolean"),
        Value::Null => json!("null"),
    }
}

/// How similar a field name is to the one a template asked for (1 = the same).
fn similarity(a: &str, b: &str) -> f64 {
    let (a, b) = (a.to_lowercase(), b.to_lowercase());
    let mut score = strsim::normalized_damerau_levenshtein(&a, &b);
    if a.len() >= 3 && b.len() >= 3 && (a.contains(&b) || b.contains(&a)) {
        score = score.max(0.8);
    }
    score
}

/// The field a template error says is missing (`... has no field 'fullname'`).
fn missing_field(message: &str) -> Option<&str> {
    let (_, rest) = message.rsplit_once("has no field '")?;
    rest.split('\'').next()
}

/// The stderr a shell error's message repeats, taken off it (the tail is shown anyway).
fn without_stderr(e: &crate::error::NodeError) -> String {
    let stderr = e
        .outputs
        .get("stderr")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim();
    let head: String = stderr.chars().take(500).collect();
    if !head.is_empty() {
        if let Some(cut) = e.message.strip_suffix(head.as_str()) {
            return cut.trim_end_matches([':', ' ']).to_string();
        }
    }
    e.message.clone()
}

fn tail(text: &str, max: usize) -> &str {
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    &text[start..]
}

/// The "Errors" section: each failure with its category, message, exit code, the tails
/// of its output, and for a template every field that does exist there (most similar to
/// the missing one first). `clean` puts placeholders in for secrets.
fn errors_text(outcome: &Outcome, clean: &dyn Fn(&str) -> String) -> String {
    let mut out = String::new();
    for (id, e) in failures(outcome) {
        let message = without_stderr(e);
        let message: String = message.chars().take(4_000).collect();
        let what = if id.starts_with("output ") {
            format!("- declared {id}")
        } else {
            format!("- node `{id}`")
        };
        out.push_str(&format!(
            "{what}: category `{}`: {}\n",
            e.category,
            clean(&message)
        ));
        if let Some(code) = e.exit_code() {
            out.push_str(&format!("  exit code: {code}\n"));
        }
        for stream in ["stdout", "stderr"] {
            let text = e.outputs.get(stream).and_then(Value::as_str).unwrap_or("");
            if text.trim().is_empty() {
                continue;
            }
            let t = tail(text, TAIL);
            let cut = if t.len() < text.len() {
                format!(" (last {} of {} bytes)", t.len(), text.len())
            } else {
                String::new()
            };
            out.push_str(&format!("  {stream}{cut}:\n"));
            for line in clean(t).lines() {
                out.push_str(&format!("    {line}\n"));
            }
        }
        // An MCP tool's error is about its arguments: what the tool accepts makes it
        // repairable (a wrong name, a wrong type).
        if let Some(schema) = outcome
            .nodes
            .iter()
            .find(|n| n.id == id)
            .and_then(|n| crate::nodes::mcp::input_schema(&n.node_type))
        {
            out.push_str(&format!(
                "  the tool's input schema: {}\n",
                clean(&schema.to_string())
            ));
        }
        let mut read = outcome
            .upstream
            .iter()
            .filter(|(f, _, _)| *f == id)
            .peekable();
        if read.peek().is_some() {
            out.push_str("  shapes of the outputs of the nodes it reads:\n");
            for (_, dep, values) in read {
                let text = serde_json::to_string(&shape(values, 0)).unwrap_or_default();
                let text: String = text.chars().take(SHAPE_CHARS).collect();
                out.push_str(&format!("    - {dep}: {}\n", clean(&text)));
            }
        }
        if !e.available.is_empty() {
            let mut fields: Vec<&(String, String)> = e.available.iter().collect();
            if let Some(missing) = missing_field(&e.message) {
                fields.sort_by(|a, b| {
                    similarity(&b.0, missing)
                        .partial_cmp(&similarity(&a.0, missing))
                        .unwrap_or(std::cmp::Ordering::Equal)
                });
            }
            out.push_str(&format!(
                "  fields that do exist there ({}, most similar first):\n",
                fields.len()
            ));
            for (i, (name, preview)) in fields.iter().enumerate() {
                if preview.is_empty() || i >= PREVIEWED_FIELDS {
                    out.push_str(&format!("    - {name}\n"));
                } else {
                    out.push_str(&format!("    - {name}: {}\n", clean(preview)));
                }
            }
        }
    }
    out
}

/// The "What happened" section: which nodes ran, were reused, failed, did not run; past
/// `limit` lines, the failures and a count of the rest.
fn execution_text(outcome: &Outcome, limit: usize) -> String {
    let mut out = String::new();
    let mut left_out = 0usize;
    for (i, n) in outcome.nodes.iter().enumerate() {
        let what = match n.status {
            Status::Ran => "ran and succeeded",
            Status::Cached | Status::Restored => "succeeded (cached)",
            Status::Failed => "FAILED",
            Status::Skipped => "did not run",
        };
        if i >= limit && n.status != Status::Failed {
            left_out += 1;
            continue;
        }
        out.push_str(&format!("- `{}` ({}): {what}\n", n.id, n.node_type));
    }
    if left_out > 0 {
        out.push_str(&format!(
            "- [cut: {left_out} more nodes, none of them failed]\n"
        ));
    }
    out
}

/// The run's input values (secrets as placeholders, long values shortened).
fn inputs_text(
    inputs: &Map<String, Value>,
    secrets: &Placeholders,
    clean: &dyn Fn(&str) -> String,
) -> String {
    if inputs.is_empty() {
        return String::new();
    }
    let mut out = String::from("\nInput values of this run:\n");
    for (name, value) in inputs {
        // A secret input's value, however short (a PIN), is its placeholder here.
        if let Some(ph) = secrets.placeholder_of(value) {
            out.push_str(&format!("- {name} = {ph}\n"));
            continue;
        }
        let shown = secrets.hide(&json!({"inputs": {name: {"default": value}}}));
        let v = &shown["inputs"][name]["default"];
        let text = clean(&crate::template::value_preview(v, 300));
        out.push_str(&format!("- {name} = {text}\n"));
    }
    out
}

/// Normalize a message so that noise (timestamps, temporary paths, durations) does not
/// make the same error look new, while any other difference (another number, another
/// name) does.
pub fn normalize(message: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let lowered: String = message.chars().take(600).collect::<String>().to_lowercase();
    let mut tokens = lowered.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        let word = if is_timestamp(token) {
            "<time>".to_string()
        } else if is_temp_path(token) {
            "<tmp>".to_string()
        } else if is_duration(token) {
            "<duration>".to_string()
        } else if is_number(token)
            && tokens
                .peek()
                .is_some_and(|u| DURATION_UNITS.contains(&u.trim_end_matches([',', '.', ';', ')'])))
        {
            tokens.next();
            "<duration>".to_string()
        } else {
            token.to_string()
        };
        words.push(word);
    }
    words.join(" ")
}

const DURATION_UNITS: [&str; 12] = [
    "ms", "s", "sec", "secs", "second", "seconds", "m", "min", "mins", "minutes", "h", "hours",
];

fn trimmed(token: &str) -> &str {
    token.trim_matches(|c: char| matches!(c, ',' | ';' | '(' | ')' | '[' | ']' | '"' | '\'' | '.'))
}

fn is_number(token: &str) -> bool {
    let t = trimmed(token);
    !t.is_empty()
        && t.chars().all(|c| c.is_ascii_digit() || c == '.')
        && t.chars().any(|c| c.is_ascii_digit())
}

/// `12ms`, `1.5s`, `3m`, `2h`, `0:00:03`.
fn is_duration(token: &str) -> bool {
    let t = trimmed(token);
    let digits = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    if digits == 0 {
        return false;
    }
    let unit = &t[digits..];
    (!unit.is_empty() && DURATION_UNITS.contains(&unit))
        || (t.contains(':')
            && t.split(':')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.')))
}

/// `2026-11-28T21:13:44Z`, `2026-11-28`, `21:13:44.123`.
fn is_timestamp(token: &str) -> bool {
    let t = trimmed(token);
    let b = t.as_bytes();
    let date = b.len() >= 10
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[5..7].iter().all(u8::is_ascii_digit)
        && b[7] == b'-'
        && b[8..10].iter().all(u8::is_ascii_digit);
    let time = b.len() >= 8
        && b[..2].iter().all(u8::is_ascii_digit)
        && b[2] == b':'
        && b[3..5].iter().all(u8::is_ascii_digit)
        && b[5] == b':';
    date || time
}

/// A path under a temporary directory, or a temporary file's name.
fn is_temp_path(token: &str) -> bool {
    let t = trimmed(token);
    let tmp = std::env::temp_dir();
    let tmp = tmp.to_string_lossy().to_lowercase();
    t.contains("/tmp/")
        || t.contains("/var/folders/")
        || (tmp.len() > 1 && t.contains(tmp.trim_end_matches('/')))
        || t.split('/')
            .any(|part| part.starts_with(".tmp") && part.len() > 4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_different_number_is_a_different_error_but_noise_is_not() {
        assert_ne!(
            normalize("expected 3 columns, got 2"),
            normalize("expected 3 columns, got 5")
        );
        assert_ne!(
            normalize("HTTP 404 from /v1/users/7"),
            normalize("HTTP 404 from /v1/users/8")
        );
        assert_eq!(
            normalize("timed out after 30 s at 2026-11-28T21:13:44Z"),
            normalize("timed  out after 31 s at 2026-11-29T01:02:03Z")
        );
        assert_eq!(
            normalize("took 12ms, wrote /tmp/.tmpAbC123/out.csv"),
            normalize("took 950ms, wrote /tmp/.tmpXyZ789/out.csv")
        );
        assert_eq!(
            normalize("done in 1.5s (00:00:02)"),
            normalize("done in 2.25s (00:00:09)")
        );
        assert_ne!(normalize("no such file a"), normalize("no such file b"));
    }

    #[test]
    fn shapes_show_keys_and_types_not_values() {
        let v =
            json!({"stdout": "{\"user\": {\"name\": \"Ada\"}, \"ids\": [1, 2]}", "exit_code": 0});
        assert_eq!(
            shape(&v, 0),
            json!({"stdout": {"json text": {"user": {"name": "string (3 chars)"}, "ids": ["number", "2 items"]}},
                   "exit_code": "number"})
        );
    }

    #[test]
    fn fields_are_ordered_by_similarity_to_the_missing_one() {
        let mut names: Vec<&str> = vec!["id", "email", "full_name", "created", "name"];
        names.sort_by(|a, b| {
            similarity(b, "fullname")
                .partial_cmp(&similarity(a, "fullname"))
                .unwrap()
        });
        assert_eq!(names[0], "full_name");
        assert_eq!(
            missing_field("cannot resolve ${a.b}: 'a' has no field 'b'; available"),
            Some("b")
        );
    }

    fn doc(n: usize, long: usize) -> Value {
        let mut nodes: Vec<Value> = (0..n)
            .map(|i| json!({"id": format!("n{i}"), "type": "echo", "params": {"message": format!("hello number {i} from a node")}}))
            .collect();
        nodes.push(json!({"id": "big", "type": "echo", "params": {"message": "x".repeat(long)}}));
        nodes.push(
            json!({"id": "bad", "type": "shell", "params": {"command": "echo ${n1.echo.nope}"}}),
        );
        json!({"nodes": nodes})
    }

    #[test]
    fn cuts_fit_the_budget_and_come_back() {
        let d = doc(3_000, 300_000);
        let mut cx = Context {
            workflow: String::new(),
            execution: String::new(),
            errors: String::new(),
            cuts: Vec::new(),
            omitted: Vec::new(),
        };
        let failing: BTreeSet<String> = ["bad".to_string()].into();
        let near = near_nodes(&d, &failing);
        assert_eq!(near, ["bad".to_string(), "n1".to_string()].into());
        let mut cut = d.clone();
        cx.cut_long_strings(&mut cut, &failing);
        cx.stub_far_nodes(&mut cut, &near);
        cx.omit_far_nodes(&mut cut, &near);
        let text = serde_json::to_string(&cut).unwrap();
        assert!(text.len() < 2_000, "{}", text.len());
        // A reply that changes the failing node and leaves the rest out.
        let mut reply = cut.clone();
        reply["nodes"][1]["params"]["command"] = json!("echo ${n1.echo}");
        let back = cx.restore_cuts(reply);
        let mut want = d.clone();
        want["nodes"][3_001]["params"]["command"] = json!("echo ${n1.echo}");
        assert!(back == want, "the restored workflow differs");
    }
}
