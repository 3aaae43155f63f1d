//! Auto-repair: execution and repair as one flow.
//!
//! After a failed build, if every failure is one a workflow edit can fix (classified by
//! the node that failed, see [`crate::error::ErrorCategory::repairable`]), the loop first
//! looks for a recorded repair of this exact workflow and failure and replays it; else it
//! asks the repair model for the whole corrected workflow, checks it with the same
//! validator as `pflow validate` (plus: declared inputs and outputs unchanged), records
//! it as a JSON Patch and builds again with the same cache and session, so only what the
//! repair changed runs and nothing that succeeded runs twice. It stops on success, when
//! the same failure comes back (no progress), when the model's budget is spent, or on a
//! failure no edit can fix.

pub mod context;
pub mod patch;
pub mod reply;

use crate::executor::Outcome;
use crate::secrets::REDACTED;
use crate::validate::{self, Validated};
use context::Signature;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// The built-in prompt (front matter: model, max_tokens).
pub const DEFAULT_PROMPT: &str = include_str!("../../prompts/repair.md");

#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub enabled: bool,
    /// Model calls allowed for the whole command.
    pub max_attempts: u32,
    /// `--repair-model`, else `PFLOW_REPAIR_MODEL`, else the prompt's front matter.
    pub model: Option<String>,
    /// `--repair-prompt`: a replacement for the built-in prompt.
    pub prompt_file: Option<PathBuf>,
    pub cache_root: PathBuf,
    /// The workflow argument as given (recorded in patch files).
    pub workflow_name: String,
}

#[derive(Debug, Clone, Default)]
pub struct RepairSummary {
    pub attempts: u32,
    pub succeeded: bool,
    pub patches: Vec<PathBuf>,
    pub llm_calls: u32,
    /// Why the loop stopped without success, or why repair was not tried.
    pub stopped: Option<String>,
    /// The repaired workflow IR, when a repair was accepted.
    pub repaired: Option<Value>,
}

impl RepairSummary {
    pub fn to_json(&self) -> Value {
        json!({
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "patches": self.patches.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "llm_calls": self.llm_calls,
            "stopped": self.stopped,
        })
    }
}

/// A prompt template with its front matter.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub model: Option<String>,
    pub max_tokens: u32,
    pub body: String,
}

impl Prompt {
    pub fn parse(text: &str) -> Prompt {
        let mut model = None;
        let mut max_tokens = 8192;
        let mut body = text;
        if let Some(rest) = text.strip_prefix("---\n") {
            if let Some(end) = rest.find("\n---\n") {
                for line in rest[..end].lines() {
                    if let Some((k, v)) = line.split_once(':') {
                        let v = v.trim().trim_matches('"');
                        match k.trim() {
                            "model" if !v.is_empty() => model = Some(v.to_string()),
                            "max_tokens" => max_tokens = v.parse().unwrap_or(max_tokens),
                            _ => {}
                        }
                    }
                }
                body = &rest[end + 5..];
            }
        }
        Prompt {
            model,
            max_tokens,
            body: body.to_string(),
        }
    }

    pub fn render(&self, workflow: &str, execution: &str, errors: &str, feedback: &str) -> String {
        self.body
            .replace("{{workflow}}", workflow)
            .replace("{{execution}}", execution)
            .replace("{{errors}}", errors)
            .replace("{{feedback}}", feedback)
    }
}

/// The model to ask: flag, then environment, then the prompt's front matter.
pub fn choose_model(flag: Option<&str>, prompt: &Prompt) -> String {
    flag.map(String::from)
        .or_else(|| {
            std::env::var("PFLOW_REPAIR_MODEL")
                .ok()
                .filter(|m| !m.trim().is_empty())
        })
        .or_else(|| prompt.model.clone())
        .unwrap_or_else(|| crate::llm::DEFAULT_MODEL.to_string())
}

/// Check a candidate: the validator, then the interface rule.
fn check_candidate(base: &Value, candidate: &Value) -> Result<Validated, Vec<String>> {
    let mut problems = Vec::new();
    for field in ["inputs", "outputs"] {
        let before = base.get(field).cloned().unwrap_or(json!({}));
        let after = candidate.get(field).cloned().unwrap_or(json!({}));
        if crate::canonical::to_canonical(&before) != crate::canonical::to_canonical(&after) {
            problems.push(format!(
                "{field}: the declared {field} must stay exactly as they were: {}",
                serde_json::to_string(&before).unwrap_or_default()
            ));
        }
    }
    problems.extend(environment_widened(base, candidate));
    match validate::validate(candidate) {
        Ok(v) if problems.is_empty() => Ok(v),
        Ok(_) => Err(problems),
        Err(report) => {
            problems.extend(report.errors.iter().map(|d| d.to_string()));
            Err(problems)
        }
    }
}

/// A repair may not give a step more of pflow's environment than its author did: no
/// newly declared credential (pflow's own variables, or any secret-looking name), and
/// strict mode stays on. Otherwise a model could hand itself the API key it runs with.
fn environment_widened(base: &Value, candidate: &Value) -> Vec<String> {
    let declared = |doc: &Value, id: &str| -> Vec<String> {
        doc.get("nodes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter(|n| n.get("id").and_then(Value::as_str) == Some(id))
            .filter_map(|n| n.get("reads_env").and_then(Value::as_array))
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect()
    };
    let mut problems = Vec::new();
    let nodes = candidate.get("nodes").and_then(Value::as_array);
    for (i, node) in nodes.into_iter().flatten().enumerate() {
        let id = node.get("id").and_then(Value::as_str).unwrap_or("");
        let before = declared(base, id);
        for name in declared(candidate, id) {
            let sensitive =
                crate::environment::is_withheld(&name) || crate::secrets::is_secret_name(&name);
            if sensitive && !before.contains(&name) {
                problems.push(format!(
                    "nodes[{i}].reads_env: a repair may not declare '{name}' (a credential); leave reads_env as the author wrote it"
                ));
            }
        }
    }
    let strict = |doc: &Value| doc.get("strict_env") == Some(&Value::Bool(true));
    if strict(base) && !strict(candidate) {
        problems.push("strict_env: a repair may not turn strict mode off".into());
    }
    problems
}

/// Messages for the person watching (stderr in text mode).
pub trait Narrator {
    fn say(&mut self, text: &str);
}

impl<F: FnMut(&str)> Narrator for F {
    fn say(&mut self, text: &str) {
        self(text)
    }
}

/// Build, and repair while it helps. `doc` is the workflow document as loaded (its IR is
/// taken only if a repair is needed); `execute` runs one build (sharing the cache and the
/// session across calls).
pub fn build_with_repair(
    doc: &Value,
    validated: &Validated,
    inputs: &serde_json::Map<String, Value>,
    cfg: &RepairConfig,
    execute: &mut dyn FnMut(&Validated) -> Outcome,
    narrator: &mut dyn Narrator,
) -> (Outcome, Option<RepairSummary>) {
    let mut outcome = execute(validated);
    if outcome.success || outcome.interrupted || !cfg.enabled {
        return (outcome, None);
    }
    let base = ir_of(doc);
    let mut summary = RepairSummary::default();
    let prompt = match &cfg.prompt_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Prompt::parse(&text),
            Err(e) => {
                summary.stopped = Some(format!(
                    "cannot read the repair prompt '{}': {e}",
                    path.display()
                ));
                return (outcome, Some(summary));
            }
        },
        None => Prompt::parse(DEFAULT_PROMPT),
    };
    let model = choose_model(cfg.model.as_deref(), &prompt);
    let mut current = base;
    let mut seen: HashSet<Vec<Signature>> = HashSet::new();

    'outer: loop {
        if outcome.interrupted {
            summary.stopped = Some("interrupted".into());
            break;
        }
        if let Some((node, category, message)) = context::blocking_failure(&outcome) {
            summary.stopped = Some(format!(
                "repair not tried: node '{node}' failed with a {category} error, which changing the workflow cannot fix: {message}"
            ));
            break;
        }
        let sigs = context::signatures(&outcome);
        if sigs.is_empty() {
            break;
        }
        if !seen.insert(sigs.clone()) {
            summary.stopped =
                Some("the same error came back after a repair; stopping (no progress)".into());
            break;
        }

        // A recorded repair of this exact workflow and failure needs no model.
        if let Some((path, record)) = patch::find_replay(&cfg.cache_root, &current, &sigs) {
            if let Ok(candidate) = patch::apply(&record, &current) {
                if let Ok(v) = check_candidate(&current, &candidate) {
                    narrator.say(&format!(
                        "repair: replaying recorded repair {}",
                        path.display()
                    ));
                    summary.attempts += 1;
                    summary.patches.push(path);
                    current = candidate;
                    summary.repaired = Some(current.clone());
                    outcome = execute(&v);
                    if outcome.success {
                        summary.succeeded = true;
                        break;
                    }
                    continue;
                }
            }
        }

        let (redacted, mut secrets) = context::redact_workflow(&current);
        secrets.extend(context::secret_inputs(inputs));
        let workflow_text = serde_json::to_string_pretty(&redacted).unwrap_or_default();
        let errors_text = context::errors_text(&outcome, &secrets);
        let execution_text = context::execution_text(&outcome);
        let mut feedback = String::new();
        // Why the last reply was not usable, for the message when the budget runs out.
        let mut rejected: Option<&str> = None;
        let accepted = loop {
            if summary.llm_calls >= cfg.max_attempts {
                summary.stopped = Some(format!(
                    "gave up after {} repair attempt{}{}",
                    summary.llm_calls,
                    if summary.llm_calls == 1 { "" } else { "s" },
                    rejected.map(|r| format!(": {r}")).unwrap_or_default()
                ));
                break 'outer;
            }
            let text = prompt.render(&workflow_text, &execution_text, &errors_text, &feedback);
            let request = crate::llm::LlmRequest {
                model: model.clone(),
                system: None,
                prompt: crate::secrets::scrub(&text, &secrets),
                max_tokens: prompt.max_tokens,
                temperature: None,
            };
            summary.llm_calls += 1;
            summary.attempts += 1;
            let reply = match crate::llm::complete(&request) {
                Ok(r) => r,
                Err(e) => {
                    if e.category == crate::error::ErrorCategory::MissingApiKey {
                        // Nothing was sent: not a model call.
                        summary.llm_calls -= 1;
                        summary.attempts -= 1;
                    }
                    summary.stopped = Some(format!(
                        "the repair model could not be used ({}): {}",
                        e.category, e.message
                    ));
                    break 'outer;
                }
            };
            narrator.say(&format!("repair: asked {model} to fix {}", describe(&sigs)));
            let Some(mut candidate) = reply::extract_workflow(&reply.text) else {
                narrator.say("repair: the reply contained no JSON workflow");
                feedback = "\n## Your previous reply\n\nIt contained no JSON workflow. Reply with the whole corrected workflow in one ```json block.\n".into();
                rejected = Some("the model's replies contained no JSON workflow");
                continue;
            };
            context::restore_secrets(&current, &mut candidate);
            let proposed = crate::canonical::to_canonical(&candidate);
            if proposed == crate::canonical::to_canonical(&current)
                || proposed == crate::canonical::to_canonical(&redacted)
            {
                summary.stopped =
                    Some("the repair model returned the workflow unchanged; stopping".into());
                break 'outer;
            }
            if candidate.to_string().contains(REDACTED) {
                feedback = format!("\n## Your previous reply\n\nIt moved or invented a \"{REDACTED}\" value. Keep secret values where they were.\n");
                rejected = Some("the proposed workflow moved a secret value");
                continue;
            }
            match check_candidate(&current, &candidate) {
                Ok(v) => break (candidate, v),
                Err(problems) => {
                    narrator.say(&format!(
                        "repair: the proposed workflow is invalid ({} problem(s))",
                        problems.len()
                    ));
                    feedback = format!(
                        "\n## Your previous reply was rejected\n\nThe workflow you returned is invalid:\n{}\nFix these problems and reply with the whole workflow again.\n",
                        problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
                    );
                    rejected = Some("the proposed workflow was invalid");
                }
            }
        };
        let (candidate, v) = accepted;
        narrator.say(&patch::unified_diff(&current, &candidate));
        match patch::record(
            &cfg.cache_root,
            &cfg.workflow_name,
            &current,
            &candidate,
            &sigs,
            &model,
        ) {
            Ok(path) => {
                narrator.say(&format!("repair: recorded {}", path.display()));
                summary.patches.push(path);
            }
            Err(e) => narrator.say(&format!("warning: cannot record the repair: {e}")),
        }
        current = candidate;
        summary.repaired = Some(current.clone());
        outcome = execute(&v);
        if outcome.success {
            summary.succeeded = true;
            break;
        }
    }
    (outcome, Some(summary))
}

fn describe(sigs: &[Signature]) -> String {
    sigs.iter()
        .map(|s| format!("{} ({})", s.node, s.category))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Write the repaired workflow back over the user's file (atomically), keeping a saved
/// workflow's wrapper around it.
pub fn apply_to_file(
    path: &Path,
    original_doc: &Value,
    repaired_ir: &Value,
) -> std::io::Result<()> {
    let doc = match original_doc {
        Value::Object(top) if top.contains_key("ir") && !top.contains_key("nodes") => {
            let mut top = top.clone();
            top.insert("ir".into(), repaired_ir.clone());
            Value::Object(top)
        }
        _ => repaired_ir.clone(),
    };
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(path, &bytes)
}

/// The IR inside a loaded document (unwrapping a saved-workflow wrapper).
pub fn ir_of(doc: &Value) -> Value {
    match doc {
        Value::Object(top) if !top.contains_key("nodes") => {
            top.get("ir").cloned().unwrap_or_else(|| doc.clone())
        }
        _ => doc.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_prompt_has_front_matter() {
        let p = Prompt::parse(DEFAULT_PROMPT);
        assert_eq!(p.model.as_deref(), Some("anthropic/claude-haiku-4-5"));
        assert_eq!(p.max_tokens, 8192);
        assert!(p.body.contains("{{workflow}}") && !p.body.starts_with("---"));
    }

    #[test]
    fn interface_changes_are_rejected() {
        let base = json!({"inputs": {"a": {"type": "string"}}, "nodes": [{"id": "x", "type": "echo", "params": {"message": "${a}"}}],
                          "outputs": {"o": {"source": "${x.echo}"}}});
        let mut dropped = base.clone();
        dropped["outputs"] = json!({});
        let problems = check_candidate(&base, &dropped).unwrap_err();
        assert!(problems[0].starts_with("outputs:"), "{problems:?}");
        assert!(check_candidate(&base, &base).is_ok());
    }

    #[test]
    fn a_repair_may_not_widen_the_environment() {
        let base = json!({"strict_env": true, "nodes": [{"id": "x", "type": "shell",
            "params": {"command": "date"}, "reads_env": ["TZ", "DB_PASSWORD"]}]});
        let mut grab = base.clone();
        grab["nodes"][0]["reads_env"] = json!(["TZ", "DB_PASSWORD", "ANTHROPIC_API_KEY", "LANG"]);
        let problems = check_candidate(&base, &grab).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("'ANTHROPIC_API_KEY'"), "{problems:?}");
        let mut loose = base.clone();
        loose["strict_env"] = json!(false);
        assert!(check_candidate(&base, &loose).unwrap_err()[0].starts_with("strict_env"));
        // Dropping declarations, or adding ordinary ones, is fine.
        let mut fewer = base.clone();
        fewer["nodes"][0]["reads_env"] = json!(["LANG"]);
        assert!(check_candidate(&base, &fewer).is_ok());
    }
}
