//! Secrets as named placeholders: what the repair model sees, and what patch files keep.
//!
//! Each secret value becomes `<secret:NAME>` (NAME: the param, env binding, input or
//! variable that holds it), in the workflow's secret params and, by value, in every other
//! string (a password `postgres` also used in `pg_dump -U postgres`). The model's reply
//! gets the values back wherever it kept a placeholder, so a correct fix that keeps such
//! text is not rejected; a placeholder it moved somewhere the secret was not, or one it
//! invented, is refused (a model must not route a credential into a URL or an `echo`).

use crate::secrets::{is_secret_name, MIN_SECRET_LEN, REDACTED};
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet};

const OPEN: &str = "<secret:";

/// The secrets of one workflow run, by name.
#[derive(Clone, Default)]
pub struct Placeholders {
    /// (name, value): every secret, including short ones replaced only where they stand.
    named: Vec<(String, Value)>,
    /// (value, placeholder) replaced by value in any text, longest value first.
    by_value: Vec<(String, String)>,
}

impl std::fmt::Debug for Placeholders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Placeholders({} names)", self.named.len())
    }
}

pub fn placeholder(name: &str) -> String {
    format!("{OPEN}{name}>")
}

/// A name as it may stand in a placeholder: letters, digits, `_`, `-`, `.`.
fn clean(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() {
        "value".into()
    } else {
        s
    }
}

impl Placeholders {
    /// The secrets of `doc` (its secret params, shell `env` values, secret inputs'
    /// defaults), of the run's `inputs` named like secrets, of the variables nodes declare
    /// in `reads_env` that hold secrets, and of pflow's own environment named like secrets
    /// (an API key).
    pub fn collect(doc: &Value, inputs: &Map<String, Value>) -> Placeholders {
        let mut p = Placeholders::default();
        for node in doc
            .get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let spec = node
                .get("type")
                .and_then(Value::as_str)
                .and_then(crate::nodes::lookup);
            if let Some(params) = node.get("params").and_then(Value::as_object) {
                // A built-in type's own params are secret as it declares (the loop
                // below), the others by name, as the build's redactor has them.
                for (k, v) in params {
                    if spec.map_or(is_secret_name(k), |s| s.secret_by_name(k)) {
                        p.add(k, v);
                    } else if let Value::Object(inner) = v {
                        p.params(inner, false);
                    }
                }
                for name in spec.map_or(&[][..], |s| s.secret_params) {
                    match params.get(*name) {
                        Some(Value::Object(values)) => p.params(values, true),
                        Some(v) => p.add(name, v),
                        None => {}
                    }
                }
            }
            for name in node
                .get("reads_env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Some(v) = std::env::var_os(name) {
                    if crate::environment::is_secret(name, &v) {
                        p.add(name, &Value::String(v.to_string_lossy().into_owned()));
                    }
                }
            }
        }
        if let Some(declared) = doc.get("inputs").and_then(Value::as_object) {
            for (name, spec) in declared {
                if secret_input(doc, name) {
                    if let Some(d) = spec.get("default") {
                        p.add(name, d);
                    }
                }
            }
        }
        for (name, v) in inputs {
            if secret_input(doc, name) {
                p.add(name, v);
            }
        }
        for (name, v) in crate::secrets::secret_variables() {
            p.add(&name, &Value::String(v));
        }
        p.by_value.sort_by_key(|(v, _)| std::cmp::Reverse(v.len()));
        p
    }

    fn params(&mut self, params: &Map<String, Value>, all: bool) {
        for (k, v) in params {
            if all || is_secret_name(k) {
                self.add(k, v);
            } else if let Value::Object(inner) = v {
                // headers: {"Authorization": "..."} and the like
                self.params(inner, false);
            }
        }
    }

    /// Register a secret under `name` (made unique if another value holds it).
    fn add(&mut self, name: &str, value: &Value) {
        if value.is_null() {
            return;
        }
        let text = crate::template::render_text(value).into_owned();
        // A template is not a secret value; the value it resolves to may be, but the
        // template text itself is needed to repair the workflow.
        if text.contains("${") || text.is_empty() || text == REDACTED || text.contains(OPEN) {
            return;
        }
        if self.named.iter().any(|(_, v)| v == value) {
            return;
        }
        let base = clean(name);
        let mut name = base.clone();
        let mut n = 2;
        while self.named.iter().any(|(k, _)| *k == name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        if text.chars().count() >= MIN_SECRET_LEN {
            // Also as an error naming a URL the value went into spells it.
            for spelling in crate::secrets::url_spellings(&text) {
                self.by_value.push((spelling, placeholder(&name)));
            }
            self.by_value.push((text, placeholder(&name)));
        }
        self.named.push((name, value.clone()));
    }

    pub fn is_empty(&self) -> bool {
        self.named.is_empty()
    }

    /// `text` with every secret value replaced by its placeholder.
    pub fn hide_text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (value, ph) in &self.by_value {
            if out.contains(value.as_str()) {
                out = out.replace(value.as_str(), ph);
            }
        }
        out
    }

    /// [`Placeholders::hide`], borrowing `doc` when there is nothing to hide.
    pub fn hidden<'d>(&self, doc: &'d Value) -> std::borrow::Cow<'d, Value> {
        match self.is_empty() {
            true => std::borrow::Cow::Borrowed(doc),
            false => std::borrow::Cow::Owned(self.hide(doc)),
        }
    }

    /// `doc` with secret params replaced whole and other strings scrubbed by value.
    pub fn hide(&self, doc: &Value) -> Value {
        let mut out = doc.clone();
        if let Some(nodes) = out.get_mut("nodes").and_then(Value::as_array_mut) {
            for node in nodes {
                let spec = node
                    .get("type")
                    .and_then(Value::as_str)
                    .and_then(crate::nodes::lookup);
                if let Some(params) = node.get_mut("params").and_then(Value::as_object_mut) {
                    self.hide_params(params, false);
                    for name in spec.map_or(&[][..], |s| s.secret_params) {
                        match params.get_mut(*name) {
                            Some(Value::Object(values)) => self.hide_params(values, true),
                            Some(v) => self.hide_whole(v),
                            None => {}
                        }
                    }
                }
            }
        }
        let declared_secret: Vec<String> = out
            .get("inputs")
            .and_then(Value::as_object)
            .map(|m| {
                m.keys()
                    .filter(|n| secret_input(&out, n))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        if let Some(inputs) = out.get_mut("inputs").and_then(Value::as_object_mut) {
            for (name, spec) in inputs.iter_mut() {
                if declared_secret.contains(name) {
                    if let Some(d) = spec.get_mut("default") {
                        self.hide_whole(d);
                    }
                }
            }
        }
        self.hide_strings(&mut out);
        out
    }

    fn hide_params(&self, map: &mut Map<String, Value>, all: bool) {
        for (k, v) in map.iter_mut() {
            if all || is_secret_name(k) {
                self.hide_whole(v);
            } else if let Value::Object(inner) = v {
                self.hide_params(inner, false);
            }
        }
    }

    /// The placeholder of the secret `v` is, whole (a short one too).
    pub fn placeholder_of(&self, v: &Value) -> Option<String> {
        let (name, _) = self.named.iter().find(|(_, s)| s == v)?;
        Some(placeholder(name))
    }

    fn hide_whole(&self, v: &mut Value) {
        if let Some((name, _)) = self.named.iter().find(|(_, s)| s == v) {
            *v = Value::String(placeholder(name));
        }
    }

    fn hide_strings(&self, v: &mut Value) {
        match v {
            Value::String(s) => {
                let hidden = self.hide_text(s);
                if hidden != *s {
                    *s = hidden;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|i| self.hide_strings(i)),
            Value::Object(map) => map.values_mut().for_each(|i| self.hide_strings(i)),
            _ => {}
        }
    }

    /// Put the secrets back where `doc` holds their placeholders. Refuses a placeholder
    /// naming no secret of this run.
    pub fn reveal(&self, doc: &mut Value) -> Result<(), String> {
        self.reveal_at(doc, &mut String::new())
    }

    fn reveal_at(&self, v: &mut Value, path: &mut String) -> Result<(), String> {
        match v {
            Value::String(s) => {
                if !s.contains(OPEN) {
                    return Ok(());
                }
                let names = names_in(s);
                // A placeholder that is the whole string gives back the value as it was
                // (a number stays a number).
                if names.len() == 1 && *s == placeholder(&names[0]) {
                    let value = self
                        .value_of(&names[0])
                        .ok_or_else(|| unknown(path, &names[0]))?;
                    *v = value.clone();
                    return Ok(());
                }
                let mut out = s.clone();
                for name in names {
                    let value = self.value_of(&name).ok_or_else(|| unknown(path, &name))?;
                    out = out.replace(&placeholder(&name), &crate::template::render_text(value));
                }
                *s = out;
                Ok(())
            }
            Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("/{i}"));
                    self.reveal_at(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            Value::Object(map) => {
                for (k, item) in map.iter_mut() {
                    let len = path.len();
                    path.push('/');
                    path.push_str(k);
                    self.reveal_at(item, path)?;
                    path.truncate(len);
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    fn value_of(&self, name: &str) -> Option<&Value> {
        self.named.iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }
}

fn shown(path: &str) -> String {
    if path.is_empty() {
        "the workflow".into()
    } else {
        path.to_string()
    }
}

fn unknown(path: &str, name: &str) -> String {
    format!(
        "{}: <secret:{name}> names no secret of this workflow; use only the placeholders it holds",
        shown(path)
    )
}

/// The placeholder names in `s`, in order.
pub fn names_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find(OPEN) {
        let after = &rest[i + OPEN.len()..];
        match after.find('>') {
            Some(end)
                if after[..end]
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    && end > 0 =>
            {
                out.push(after[..end].to_string());
                rest = &after[end + 1..];
            }
            _ => rest = after,
        }
    }
    out
}

/// Where each placeholder stands in a hidden workflow: node values by node id (so nodes
/// added or removed before it do not move it), anything else by its JSON pointer.
fn locations(doc: &Value) -> BTreeMap<String, BTreeSet<String>> {
    fn walk(v: &Value, at: String, out: &mut BTreeMap<String, BTreeSet<String>>) {
        match v {
            Value::String(s) if s.contains(OPEN) => {
                out.entry(at).or_default().extend(names_in(s));
            }
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    walk(item, format!("{at}/{i}"), out);
                }
            }
            Value::Object(map) => {
                for (k, item) in map {
                    walk(item, format!("{at}/{k}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = BTreeMap::new();
    if let Value::Object(top) = doc {
        for (k, v) in top {
            match (k.as_str(), v) {
                ("nodes", Value::Array(nodes)) => {
                    for (i, node) in nodes.iter().enumerate() {
                        let id = node
                            .get("id")
                            .and_then(Value::as_str)
                            .map(|id| format!("node {id}"))
                            .unwrap_or_else(|| format!("nodes/{i}"));
                        walk(node, id, &mut out);
                    }
                }
                _ => walk(v, format!("/{k}"), &mut out),
            }
        }
    }
    out
}

/// Placeholders a (hidden) candidate put where the (hidden) original did not have them.
pub fn moved(original: &Value, candidate: &Value) -> Vec<String> {
    let before = locations(original);
    let mut problems = Vec::new();
    for (at, names) in locations(candidate) {
        for name in names {
            if !before.get(&at).is_some_and(|b| b.contains(&name)) {
                problems.push(format!(
                    "{at}: <secret:{name}> was moved there; a secret may stay only where it already was"
                ));
            }
        }
    }
    problems
}

/// Is input `name` of workflow document `doc` a secret: named like one, or declared
/// `"secret": true` (as [`crate::workflow::Workflow::is_secret_input`] says for the IR).
fn secret_input(doc: &Value, name: &str) -> bool {
    is_secret_name(name) || doc["inputs"][name]["secret"] == Value::Bool(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "inputs": {"api_token": {"default": "tok-123456"}},
            "nodes": [{"id": "dump", "type": "shell", "params": {
                "command": "pg_dump -U postgres db", "env": {"PGPASSWORD": "postgres"},
                "headers": {"Authorization": "Bearer zzz-111"}}},
                {"id": "h", "type": "http", "params": {"url": "https://x", "auth_token": "${api_token}"}}]
        })
    }

    #[test]
    fn hides_by_name_and_value_and_reveals_where_kept() {
        let p = Placeholders::collect(&doc(), &Map::new());
        let hidden = p.hide(&doc());
        let text = hidden.to_string();
        for s in ["tok-123456", "postgres", "zzz-111"] {
            assert!(!text.contains(s), "{s} leaked: {text}");
        }
        assert_eq!(
            hidden["nodes"][0]["params"]["command"],
            json!("pg_dump -U <secret:PGPASSWORD> db")
        );
        assert_eq!(
            hidden["nodes"][1]["params"]["auth_token"],
            json!("${api_token}")
        );
        let mut fixed = hidden.clone();
        fixed["nodes"][0]["params"]["command"] = json!("pg_dump -U <secret:PGPASSWORD> -d db");
        assert!(moved(&hidden, &fixed).is_empty());
        p.reveal(&mut fixed).unwrap();
        assert_eq!(
            fixed["nodes"][0]["params"]["command"],
            json!("pg_dump -U postgres -d db")
        );
        assert_eq!(
            fixed["nodes"][0]["params"]["env"]["PGPASSWORD"],
            json!("postgres")
        );
        assert_eq!(fixed["inputs"]["api_token"]["default"], json!("tok-123456"));
    }

    #[test]
    fn a_built_in_types_own_params_are_secret_as_it_declares_the_others_by_name() {
        let doc = json!({"nodes": [
            {"id": "ask", "type": "llm", "params": {"prompt": "hi", "max_tokens": "4096"}},
            {"id": "tool", "type": "mcp-srv-login", "params": {"session_token": "tok-AB12"}}
        ]});
        let p = Placeholders::collect(&doc, &Map::new());
        let text = p.hide_text("max 4096 with tok-AB12");
        assert!(text.starts_with("max 4096 with <secret:"), "{text}");
    }

    #[test]
    fn hidden_is_a_copy_with_secrets_hidden_and_borrows_only_when_there_are_none() {
        let plain = json!({"nodes": [{"id": "a", "type": "echo", "params": {"message": "hi"}}]});
        let none = Placeholders::default();
        assert!(matches!(none.hidden(&plain), std::borrow::Cow::Borrowed(_)));
        let d = doc();
        let p = Placeholders::collect(&d, &Map::new());
        let hidden = p.hidden(&d);
        assert!(matches!(hidden, std::borrow::Cow::Owned(_)));
        assert_eq!(*hidden, p.hide(&d));
        assert!(!hidden.to_string().contains("tok-123456"));
    }

    #[test]
    fn moved_invented_and_redacted_placeholders_are_refused() {
        let p = Placeholders::collect(&doc(), &Map::new());
        let hidden = p.hide(&doc());
        let mut leak = hidden.clone();
        leak["nodes"][1]["params"]["url"] = json!("https://x/?t=<secret:api_token>");
        let problems = moved(&hidden, &leak);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("node h/params/url"), "{problems:?}");
        let mut invented = hidden.clone();
        invented["nodes"][0]["params"]["command"] = json!("echo <secret:nope>");
        assert!(p
            .reveal(&mut invented)
            .unwrap_err()
            .contains("<secret:nope>"));
    }

    #[test]
    fn names_are_unique_and_clean() {
        let d = json!({"nodes": [
            {"id": "a", "type": "http", "params": {"url": "u", "api_key": "k-1111"}},
            {"id": "b", "type": "http", "params": {"url": "u", "api_key": "k-2222", "x": {"my token!": "t-3333"}}}]});
        let p = Placeholders::collect(&d, &Map::new());
        let h = p.hide(&d);
        assert_eq!(
            h["nodes"][0]["params"]["api_key"],
            json!("<secret:api_key>")
        );
        assert_eq!(
            h["nodes"][1]["params"]["api_key"],
            json!("<secret:api_key_2>")
        );
        assert_eq!(
            h["nodes"][1]["params"]["x"]["my token!"],
            json!("<secret:my_token_>")
        );
        assert_eq!(
            names_in("a <secret:x.y> <secret:> <secret:bad name> <secret:z>"),
            ["x.y", "z"]
        );
    }
}
