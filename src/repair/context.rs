//! What the repair model is told: the workflow, the errors, what ran — with secrets
//! removed. Secret values are also scrubbed *by value* from every message and stderr
//! tail, so a token a command echoed never reaches the model.

use crate::error::ErrorCategory;
use crate::executor::{Outcome, Status};
use crate::secrets::{is_secret_name, scrub, MIN_SECRET_LEN, REDACTED};
use serde_json::{Map, Value};

/// The workflow with secret-looking params, the params its node types declare secret
/// (shell `env` values) and secret inputs' defaults replaced by `<redacted>`; and the
/// secret values that were removed, with those of the secret variables nodes declare in
/// `reads_env` (a child may echo them; only their names are in the workflow).
pub fn redact_workflow(doc: &Value) -> (Value, Vec<String>) {
    let mut secrets = Vec::new();
    let mut out = doc.clone();
    if let Some(nodes) = out.get_mut("nodes").and_then(Value::as_array_mut) {
        for node in nodes {
            let spec = node
                .get("type")
                .and_then(Value::as_str)
                .and_then(crate::nodes::lookup);
            for name in node
                .get("reads_env")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
            {
                if let Some(v) = std::env::var_os(name) {
                    if crate::environment::is_secret(name, &v) && v.len() >= MIN_SECRET_LEN {
                        secrets.push(v.to_string_lossy().into_owned());
                    }
                }
            }
            if let Some(params) = node.get_mut("params").and_then(Value::as_object_mut) {
                redact_map(params, &mut secrets, false);
                for name in spec.map_or(&[][..], |s| s.secret_params) {
                    match params.get_mut(*name) {
                        Some(Value::Object(values)) => redact_map(values, &mut secrets, true),
                        Some(v) => take_secret(v, &mut secrets),
                        None => {}
                    }
                }
            }
        }
    }
    if let Some(inputs) = out.get_mut("inputs").and_then(Value::as_object_mut) {
        for (name, spec) in inputs.iter_mut() {
            if is_secret_name(name) {
                if let Some(d) = spec.get_mut("default") {
                    take_secret(d, &mut secrets);
                }
            }
        }
    }
    (out, secrets)
}

fn redact_map(map: &mut Map<String, Value>, secrets: &mut Vec<String>, all: bool) {
    for (k, v) in map.iter_mut() {
        if all || is_secret_name(k) {
            take_secret(v, secrets);
        } else if let Value::Object(inner) = v {
            // headers: {"Authorization": "..."} and the like
            redact_map(inner, secrets, false);
        }
    }
}

fn take_secret(v: &mut Value, secrets: &mut Vec<String>) {
    if v.is_null() {
        return;
    }
    let text = crate::template::render_text(v).into_owned();
    // A template is not a secret value; the value it resolves to may be, but the
    // template text itself is needed to repair the workflow.
    if text.contains("${") || text == REDACTED {
        return;
    }
    if text.len() >= MIN_SECRET_LEN {
        secrets.push(text);
    }
    *v = Value::String(REDACTED.into());
}

/// Secret values among the workflow inputs given for this run.
pub fn secret_inputs(inputs: &Map<String, Value>) -> Vec<String> {
    inputs
        .iter()
        .filter(|(k, _)| is_secret_name(k))
        .map(|(_, v)| crate::template::render_text(v).into_owned())
        .filter(|s| s.len() >= MIN_SECRET_LEN)
        .collect()
}

/// Put secret values back where the model kept `<redacted>`: same node id, same param.
pub fn restore_secrets(original: &Value, repaired: &mut Value) {
    let originals: Map<String, Value> = original
        .get("nodes")
        .and_then(Value::as_array)
        .map(|nodes| {
            nodes
                .iter()
                .filter_map(|n| {
                    Some((n.get("id")?.as_str()?.to_string(), n.get("params")?.clone()))
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(nodes) = repaired.get_mut("nodes").and_then(Value::as_array_mut) {
        for node in nodes {
            let Some(id) = node.get("id").and_then(Value::as_str).map(String::from) else {
                continue;
            };
            let (Some(orig), Some(params)) = (originals.get(&id), node.get_mut("params")) else {
                continue;
            };
            restore_in(orig, params);
        }
    }
    if let (Some(orig), Some(inputs)) = (original.get("inputs"), repaired.get_mut("inputs")) {
        restore_in(orig, inputs);
    }
}

fn restore_in(orig: &Value, repaired: &mut Value) {
    match repaired {
        Value::String(s) if s == REDACTED => *repaired = orig.clone(),
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if let Some(o) = orig.get(k) {
                    restore_in(o, v);
                }
            }
        }
        _ => {}
    }
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

/// Normalize a message so that volatile details (numbers, durations) do not make the
/// same error look new.
pub fn normalize(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut last_digit = false;
    for c in message.chars().take(300) {
        if c.is_ascii_digit() {
            if !last_digit {
                out.push('#');
            }
            last_digit = true;
        } else {
            last_digit = false;
            if c.is_whitespace() {
                if !out.ends_with(' ') {
                    out.push(' ');
                }
            } else {
                out.extend(c.to_lowercase());
            }
        }
    }
    out.trim().to_string()
}

pub fn signatures(outcome: &Outcome) -> Vec<Signature> {
    let mut sigs: Vec<Signature> = failures(outcome)
        .map(|(id, e)| Signature {
            node: id.to_string(),
            category: e.category.as_str().to_string(),
            message: normalize(&e.message),
        })
        .collect();
    sigs.sort();
    sigs
}

/// Unhandled failures: (node id, error).
pub fn failures(outcome: &Outcome) -> impl Iterator<Item = (&str, &crate::error::NodeError)> {
    outcome
        .nodes
        .iter()
        .filter(|n| n.status == Status::Failed && !n.handled)
        .filter_map(|n| n.error.as_ref().map(|e| (n.id.as_str(), e)))
}

/// The first failure no workflow edit can fix, if any.
pub fn blocking_failure(outcome: &Outcome) -> Option<(String, ErrorCategory, String)> {
    failures(outcome)
        .find(|(_, e)| !e.repairable())
        .map(|(id, e)| (id.to_string(), e.category, e.message.clone()))
}

/// The "Errors" section.
pub fn errors_text(outcome: &Outcome, secrets: &[String]) -> String {
    let mut out = String::new();
    for (id, e) in failures(outcome) {
        out.push_str(&format!(
            "- node `{id}`: category `{}`: {}\n",
            e.category,
            scrub(&e.message, secrets)
        ));
        if let Some(code) = e.exit_code() {
            out.push_str(&format!("  exit code: {code}\n"));
        }
        if let Some(tail) = e.stderr_tail(1500) {
            out.push_str("  stderr (end):\n");
            for line in scrub(&tail, secrets).lines() {
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
            out.push_str(&format!("  the tool's input schema: {schema}\n"));
        }
        if !e.available.is_empty() {
            out.push_str("  fields that do exist there:\n");
            for (name, preview) in &e.available {
                if preview.is_empty() {
                    out.push_str(&format!("    - {name}\n"));
                } else {
                    out.push_str(&format!("    - {name}: {}\n", scrub(preview, secrets)));
                }
            }
        }
    }
    out
}

/// The "What happened" section: which nodes ran, were reused, failed, did not run.
pub fn execution_text(outcome: &Outcome) -> String {
    let mut out = String::new();
    for n in &outcome.nodes {
        let what = match n.status {
            Status::Ran => "ran and succeeded",
            Status::Cached | Status::Restored => "succeeded (cached)",
            Status::Failed => "FAILED",
            Status::Skipped => "did not run",
        };
        out.push_str(&format!("- `{}` ({}): {what}\n", n.id, n.node_type));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn redacts_and_restores() {
        let doc = json!({
            "inputs": {"api_token": {"default": "tok-123456"}},
            "nodes": [{"id": "a", "type": "shell", "params": {
                "command": "curl -H \"$AUTH\"", "env": {"AUTH": "Bearer sekrit-value"},
                "api_key": "k-987654", "headers": {"Authorization": "Bearer zzz-111"}}}]
        });
        let (red, secrets) = redact_workflow(&doc);
        let text = red.to_string();
        for s in ["tok-123456", "sekrit-value", "k-987654", "zzz-111"] {
            assert!(!text.contains(s), "{s} leaked: {text}");
        }
        assert_eq!(secrets.len(), 4);
        let mut back = red.clone();
        back["nodes"][0]["params"]["command"] = json!("curl -sH \"$AUTH\"");
        restore_secrets(&doc, &mut back);
        assert_eq!(
            back["nodes"][0]["params"]["env"]["AUTH"],
            json!("Bearer sekrit-value")
        );
        assert_eq!(back["nodes"][0]["params"]["api_key"], json!("k-987654"));
        assert_eq!(back["inputs"]["api_token"]["default"], json!("tok-123456"));
        assert_eq!(
            scrub("got Bearer sekrit-value back", &secrets),
            "got <redacted> back"
        );
    }

    #[test]
    fn templates_are_not_secrets() {
        let doc = json!({"nodes": [{"id": "a", "type": "http", "params": {"url": "x", "auth_token": "${token}"}}]});
        let (red, secrets) = redact_workflow(&doc);
        assert!(secrets.is_empty());
        assert_eq!(red["nodes"][0]["params"]["auth_token"], json!("${token}"));
    }

    #[test]
    fn normalization_ignores_numbers() {
        assert_eq!(
            normalize("timed out after 30 s"),
            normalize("timed  out after 31 s")
        );
        assert_ne!(normalize("no such file a"), normalize("no such file b"));
    }

    /// Which values go, and in which order they are collected (scrubbing replaces them in
    /// that order): the node types' declared secret params plus secret-looking names.
    #[test]
    fn redaction_covers_declared_and_named_params() {
        let doc = json!({"nodes": [
            {"id": "h", "type": "http", "params": {"url": "https://x/secret-path", "auth_token": "tok-1111",
                "api_key": "k-2222", "headers": {"X-Trace": "trace-3333", "X-Api-Key": "hk-4444"}}},
            {"id": "s", "type": "shell", "params": {"command": "echo", "env": {"PLAIN": "plain-5555",
                "MY_TOKEN": "tok-6666", "N": 7, "T": "${x}"}}},
            {"id": "e", "type": "echo", "params": {"env": {"A": "echo-env-8888"}, "password": "pw-9999"}},
            {"id": "u", "type": "nope", "params": {"env": {"A": "unknown-env-0000"}}}
        ]});
        let (red, secrets) = redact_workflow(&doc);
        assert_eq!(
            secrets,
            [
                "tok-1111",
                "k-2222",
                "hk-4444",
                "tok-6666",
                "plain-5555",
                "pw-9999"
            ]
        );
        assert_eq!(red["nodes"][1]["params"]["env"]["N"], json!(REDACTED));
        assert_eq!(red["nodes"][1]["params"]["env"]["T"], json!("${x}"));
        assert_eq!(
            red["nodes"][0]["params"]["headers"]["X-Trace"],
            json!("trace-3333")
        );
        assert_eq!(
            red["nodes"][2]["params"]["env"]["A"],
            json!("echo-env-8888")
        );
        assert_eq!(
            red["nodes"][3]["params"]["env"]["A"],
            json!("unknown-env-0000")
        );
    }
}
