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
pub mod file_edit;
pub mod lock;
pub mod patch;
pub mod placeholder;
pub mod reply;
pub mod report;

use crate::executor::{NodeReport, Outcome, Status};
use crate::secrets::Redactor;
use crate::validate::Validated;
use context::Signature;
use placeholder::Placeholders;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

/// The built-in prompt (front matter: model, max_tokens).
pub const DEFAULT_PROMPT: &str = include_str!("../../prompts/repair.md");

/// The variable that turns repair off, or limits it to replaying proven patches.
pub const MODE_ENV: &str = "PFLOW_REPAIR";
/// The repair model, when no flag names one.
pub const MODEL_ENV: &str = "PFLOW_REPAIR_MODEL";

/// How much repair a build may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// No repair at all: no replay, no model.
    Off,
    /// Replay proven patches; never send anything to a model.
    Replay,
    /// Replay, else ask the model.
    On,
}

impl Mode {
    /// `--no-repair` wins; else `PFLOW_REPAIR=off|replay|on`; else on.
    pub fn choose(no_repair: bool) -> Result<Mode, String> {
        if no_repair {
            return Ok(Mode::Off);
        }
        match std::env::var(MODE_ENV) {
            Err(_) => Ok(Mode::On),
            Ok(v) => match v.trim().to_ascii_lowercase().as_str() {
                "" | "on" => Ok(Mode::On),
                "off" => Ok(Mode::Off),
                "replay" => Ok(Mode::Replay),
                _ => Err(format!(
                    "{MODE_ENV} must be off, replay or on, found {:?}",
                    v.chars().take(40).collect::<String>()
                )),
            },
        }
    }
}

#[derive(Debug, Clone)]
pub struct RepairConfig {
    pub mode: Mode,
    /// Model calls allowed for the whole command.
    pub max_attempts: u32,
    /// `--repair-model`, else `PFLOW_REPAIR_MODEL`, else the prompt's front matter.
    pub model: Option<String>,
    /// `--repair-prompt`: a replacement for the built-in prompt.
    pub prompt_file: Option<PathBuf>,
    pub cache_root: PathBuf,
    /// The workflow argument as given (recorded in patch files).
    pub workflow_name: String,
    /// The build's secret values: scrubbed from the diffs and explanations it prints.
    pub redactor: Redactor,
    /// Where the marker of the first-use notice lives (`$PFLOW_HOME`).
    pub home: PathBuf,
    /// The workflow file's directory, where its nested workflows are found.
    pub workflow_dir: PathBuf,
}

/// One step of the repair loop: a replayed patch, or one model call.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// `replay` or `model`.
    pub kind: &'static str,
    pub model: Option<String>,
    /// The model's one-line explanation of its change.
    pub explanation: Option<String>,
    /// What the attempt changed (a unified diff, secrets as placeholders).
    pub diff: Option<String>,
    /// Why its reply was not used (the validator's messages, the guards' reasons).
    pub rejected: Vec<String>,
    /// The patch replayed or recorded.
    pub patch: Option<PathBuf>,
    /// How the build with it ended: `succeeded`, `failed`, or absent when it was not built.
    pub result: Option<&'static str>,
}

impl Attempt {
    fn to_json(&self) -> Value {
        json!({
            "kind": self.kind,
            "model": self.model,
            "explanation": self.explanation,
            "diff": self.diff,
            "rejected": self.rejected,
            "patch": self.patch.as_ref().map(|p| p.display().to_string()),
            "result": self.result,
        })
    }
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
    /// Every step, in order.
    pub history: Vec<Attempt>,
    /// The errors of the workflow as written (the first build's), as in the JSON `errors`.
    pub original_errors: Vec<Value>,
    /// The node reports of the builds before the last one (stats and traces cover them).
    pub earlier: Vec<Vec<NodeReport>>,
    /// The workflow argument, for the command that applies the repair.
    pub workflow: String,
    /// The tokens each model call used.
    pub usage: Vec<crate::llm::price::TokenUse>,
}

impl RepairSummary {
    /// The command that writes a successful repair into the workflow file.
    pub fn apply_command(&self) -> Option<String> {
        let patch = self.patches.last().filter(|_| self.succeeded)?;
        Some(format!(
            "pflow repair apply {} {}",
            shell_quote(&patch.display().to_string()),
            shell_quote(&self.workflow)
        ))
    }

    pub fn to_json(&self) -> Value {
        json!({
            "attempts": self.attempts,
            "succeeded": self.succeeded,
            "repaired": self.succeeded,
            "patches": self.patches.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "llm_calls": self.llm_calls,
            "stopped": self.stopped,
            "apply": self.apply_command(),
            "original_errors": self.original_errors,
            "history": self.history.iter().map(Attempt::to_json).collect::<Vec<_>>(),
            "usage": self.usage.iter().map(crate::llm::price::TokenUse::to_json).collect::<Vec<_>>(),
        })
    }
}

/// Write a repair into a `.pflow.md` file, changing only the text of the values that
/// changed ([`crate::markdown::edit`]). A repair that adds or removes parts, or a file
/// edited since it was loaded, is refused: rewriting it would lose its prose.
fn apply_to_markdown(path: &Path, original_ir: &Value, repaired_ir: &Value) -> std::io::Result<()> {
    let text = std::fs::read_to_string(path)?;
    match crate::markdown::edit::edit(&text, original_ir, repaired_ir) {
        Some(edited) => crate::fsutil::write_atomic(path, edited.as_bytes()),
        None => Err(std::io::Error::other(
            "the repair changes more than values (or the file changed since it was read), which a Markdown workflow cannot take without losing its text; the patch is recorded (pflow repair list)",
        )),
    }
}

/// `text` as one shell word.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:@%+=,".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
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
            std::env::var(MODEL_ENV)
                .ok()
                .filter(|m| !m.trim().is_empty())
        })
        .or_else(|| prompt.model.clone())
        .unwrap_or_else(|| crate::llm::DEFAULT_MODEL.to_string())
}

/// A node's definition as its key takes it: canonical, and its params and batch settings
/// by name, each value as written (see [`crate::canonical::to_key_bytes_by_name`]).
fn as_keyed(node: &Value) -> Vec<u8> {
    let mut out = crate::canonical::to_canonical(node);
    for field in ["params", "batch"].iter().filter_map(|f| node.get(*f)) {
        out.push(0);
        out.extend_from_slice(&crate::canonical::to_key_bytes_by_name(field));
    }
    out
}

/// Check a candidate: the validator, then the interface rule (inputs unchanged; the
/// same output names, each unchanged but for its `source`).
fn check_candidate(base: &Value, candidate: &Value, dir: &Path) -> Result<Validated, Vec<String>> {
    let mut problems = Vec::new();
    let canon = crate::canonical::to_canonical;
    let before = base.get("inputs").cloned().unwrap_or(json!({}));
    let after = candidate.get("inputs").cloned().unwrap_or(json!({}));
    if canon(&before) != canon(&after) {
        problems.push(format!(
            "inputs: the declared inputs must stay exactly as they were: {}",
            serde_json::to_string(&before).unwrap_or_default()
        ));
    }
    let outputs = |doc: &Value| -> Value {
        let mut o = doc.get("outputs").cloned().unwrap_or(json!({}));
        if let Some(map) = o.as_object_mut() {
            for spec in map.values_mut() {
                if let Some(spec) = spec.as_object_mut() {
                    spec.remove("source");
                }
            }
        }
        o
    };
    if canon(&outputs(base)) != canon(&outputs(candidate)) {
        problems.push(format!(
            "outputs: the declared outputs must keep their names and everything but their source exactly as they were: {}",
            serde_json::to_string(&base.get("outputs").cloned().unwrap_or(json!({})))
                .unwrap_or_default()
        ));
    }
    problems.extend(environment_widened(base, candidate));
    let origin = crate::nested::Origin {
        dir: dir.to_path_buf(),
        saved: &crate::store::resolve,
    };
    match crate::nested::validate(candidate, &origin) {
        Ok(v) if problems.is_empty() => Ok(v),
        Ok(_) => Err(problems),
        Err(report) => {
            problems.extend(report.errors.iter().map(|d| d.to_string()));
            Err(problems)
        }
    }
}

/// The side-effect guard: nodes that already succeeded in this command (`done`) whose
/// rerun would repeat an effect, and that the candidate changes, removes, or makes run
/// again by changing a node they depend on.
fn effects_repeated(
    base: &Value,
    candidate: &Value,
    v: &Validated,
    done: &BTreeSet<String>,
) -> Vec<String> {
    let node_of = |doc: &Value, id: &str| -> Option<Value> {
        doc.get("nodes")?
            .as_array()?
            .iter()
            .find(|n| n.get("id").and_then(Value::as_str) == Some(id))
            .cloned()
    };
    // A node of a nested workflow (`run/step`) is defined by its workflow node (`run`):
    // the nested file is not the model's to change. Changed as its key sees it: a param's
    // members put in another order run it again.
    let changed = |id: &str| {
        let id = crate::nested::owner(id);
        match (node_of(base, id), node_of(candidate, id)) {
            (Some(a), Some(b)) => as_keyed(&a) != as_keyed(&b),
            _ => true,
        }
    };
    let effectful = |node: &Value| {
        let spec = node
            .get("type")
            .and_then(Value::as_str)
            .and_then(|t| crate::nodes::lookup(t).or_else(|| crate::nodes::nested::lookup(t)));
        let empty = serde_json::Map::new();
        let params = node
            .get("params")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        spec.is_none_or(|s| (s.repeats_effects)(params))
    };
    let mut problems = Vec::new();
    for id in done {
        let before = match node_of(base, id) {
            Some(before) => before,
            // As expanded (the same file the build ran); unknown: take it to have effects.
            None if crate::nested::is_nested(id) => v
                .workflow
                .node(id)
                .map(|n| n.to_json())
                .unwrap_or_else(|| json!({})),
            None => continue,
        };
        if !effectful(&before) {
            continue;
        }
        let kind = before.get("type").and_then(Value::as_str).unwrap_or("?");
        if changed(id) {
            problems.push(format!(
                "node '{id}' ({kind}) already succeeded and running it again would repeat its side effect; leave it exactly as it was (change only nodes that failed or did not run, or nodes without side effects)"
            ));
            continue;
        }
        // Its own definition stands, but a changed node upstream would make it run again.
        let Some(i) = v.graph.position(id) else {
            continue;
        };
        let mut stack = vec![i];
        let mut seen = HashSet::new();
        while let Some(j) = stack.pop() {
            for (d, _) in v.graph.dependencies(j) {
                if !seen.insert(d) {
                    continue;
                }
                let up = v.graph.id(d);
                if changed(up) {
                    problems.push(format!(
                        "node '{id}' ({kind}) already succeeded and changing '{up}', which it depends on, would run it and repeat its side effect; leave '{up}' as it was"
                    ));
                    stack.clear();
                    break;
                }
                stack.push(d);
            }
        }
    }
    problems
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

/// Nodes that succeeded in a build (ran, or were reused).
fn succeeded(outcome: &Outcome, into: &mut BTreeSet<String>) {
    for n in &outcome.nodes {
        if matches!(n.status, Status::Ran | Status::Cached | Status::Restored) {
            into.insert(n.id.clone());
        }
    }
}

/// What the loop keeps while it works.
struct Loop<'a> {
    cfg: &'a RepairConfig,
    secrets: Placeholders,
    summary: RepairSummary,
    /// Nodes that succeeded in any build of this command.
    done: BTreeSet<String>,
}

impl Loop<'_> {
    /// Run one build, keeping what the earlier ones did for the stats and the guard.
    fn build(
        &mut self,
        execute: &mut dyn FnMut(&Validated) -> Outcome,
        v: &Validated,
        last: Option<Outcome>,
    ) -> Outcome {
        if let Some(o) = last {
            self.summary.earlier.push(o.nodes);
        }
        let outcome = execute(v);
        succeeded(&outcome, &mut self.done);
        outcome
    }

    /// Text with the run's secrets as placeholders and any other secret redacted.
    fn clean(&self, text: &str) -> String {
        self.cfg.redactor.scrub(&self.secrets.hide_text(text))
    }

    fn diff(&self, old: &Value, new: &Value) -> String {
        self.cfg.redactor.scrub(&patch::unified_diff(
            &self.secrets.hide(old),
            &self.secrets.hide(new),
        ))
    }
}

/// Build, and repair while it helps. `doc` is the workflow document as loaded; `execute`
/// runs one build (sharing the cache and the session across calls).
///
/// A proven patch recorded for this exact workflow is replayed before anything runs, so
/// a broken node is not run (and its effect not repeated) on every build; if the build
/// with it fails, the patch is demoted and the workflow as written is built and repaired.
pub fn build_with_repair(
    doc: &Value,
    validated: &Validated,
    inputs: &serde_json::Map<String, Value>,
    cfg: &RepairConfig,
    execute: &mut dyn FnMut(&Validated) -> Outcome,
    narrator: &mut dyn Narrator,
) -> (Outcome, Option<RepairSummary>) {
    if cfg.mode == Mode::Off {
        return (execute(validated), None);
    }
    // Borrowed, not copied: a build that succeeds (most do) needs only the digest of the
    // workflow with its secrets hidden, and a copy of a big document is megabytes.
    let base = ir_ref(doc);
    let secrets = Placeholders::collect(base, inputs);
    let hidden_base = secrets.hidden(base);
    let base_digest = patch::workflow_digest(&hidden_base);
    let _lock = lock::acquire(&cfg.cache_root, &base_digest, &mut || {
        narrator.say("repair: waiting for another build of this workflow (one repair at a time)…")
    });
    let mut lp = Loop {
        cfg,
        secrets,
        summary: RepairSummary {
            workflow: cfg.workflow_name.clone(),
            ..RepairSummary::default()
        },
        done: BTreeSet::new(),
    };
    let mut last: Option<Outcome> = None;

    if let Some((path, record)) = patch::find_replay(&cfg.cache_root, &base_digest) {
        let replayed = patch::apply(&record, &hidden_base).and_then(|mut c| {
            lp.secrets.reveal(&mut c)?;
            let v = check_candidate(base, &c, &lp.cfg.workflow_dir).map_err(|p| p.join("; "))?;
            Ok((c, v))
        });
        let fixed = describe(&record.errors);
        match replayed {
            Ok((candidate, v)) => {
                let diff = lp.diff(base, &candidate);
                narrator.say(&format!(
                    "repair: replaying proven patch {} (it fixed {fixed}; no model call):",
                    path.display()
                ));
                narrator.say(diff.trim_end());
                lp.summary.attempts += 1;
                lp.summary.patches.push(path.clone());
                let outcome = lp.build(execute, &v, None);
                let ok = outcome.success;
                lp.summary.history.push(Attempt {
                    kind: "replay",
                    model: Some(record.model.clone()),
                    diff: Some(diff),
                    patch: Some(path.clone()),
                    result: Some(if ok { "succeeded" } else { "failed" }),
                    ..Attempt::default()
                });
                if ok || outcome.interrupted {
                    lp.summary.succeeded = ok;
                    lp.summary.repaired = Some(candidate);
                    return (outcome, Some(lp.summary));
                }
                // A failure no edit can fix (a server down, a bad key) says nothing
                // about the patch: it stays proven.
                if let Some((node, category, message)) = context::blocking_failure(&outcome) {
                    lp.summary.stopped = Some(format!(
                        "node '{node}' failed with a {category} error, which changing the workflow cannot fix: {message}"
                    ));
                    return (outcome, Some(lp.summary));
                }
                let why = format!(
                    "the build with it failed: {}",
                    describe(&context::signatures(&outcome))
                );
                narrator.say(&format!(
                    "repair: patch {} no longer works ({why}); demoted, building the workflow as written",
                    path.display()
                ));
                if let Err(e) = patch::demote(&record, &why) {
                    narrator.say(&format!("warning: cannot demote {}: {e}", path.display()));
                }
                lp.summary.patches.pop();
                last = Some(outcome);
            }
            Err(why) => {
                narrator.say(&format!(
                    "repair: patch {} no longer applies ({why}); demoted",
                    path.display()
                ));
                if let Err(e) = patch::demote(&record, &why) {
                    narrator.say(&format!("warning: cannot demote {}: {e}", path.display()));
                }
            }
        }
    }

    // Freed before the build, whose memory then reuses its pages.
    drop(hidden_base);
    let mut outcome = lp.build(execute, validated, last);
    let original_at = lp.summary.earlier.len();
    let tried_replay = !lp.summary.history.is_empty();
    if outcome.success || outcome.interrupted {
        return (outcome, tried_replay.then_some(lp.summary));
    }
    lp.summary.original_errors = crate::report::errors_json(&outcome);
    let original = outcome.clone();
    repair_loop(&mut lp, base, inputs, &mut outcome, execute, narrator);
    let mut summary = lp.summary;
    if summary.succeeded || outcome.interrupted {
        return (outcome, Some(summary));
    }
    // The failure to report is the user's own, not that of a candidate that did not
    // work (whose fields are not in the user's file); every build counts in the stats.
    if summary.earlier.len() > original_at {
        summary.earlier.push(std::mem::take(&mut outcome.nodes));
        summary.earlier.remove(original_at);
        let mut reported = original;
        for n in &mut reported.nodes {
            n.executions = summary
                .earlier
                .iter()
                .flatten()
                .filter(|e| e.id == n.id)
                .map(|e| e.executions)
                .max()
                .unwrap_or(n.executions);
        }
        return (reported, Some(summary));
    }
    (outcome, Some(summary))
}

/// Ask the model while it helps; `outcome` is the failed build of the workflow as written.
fn repair_loop(
    lp: &mut Loop<'_>,
    base: &Value,
    inputs: &serde_json::Map<String, Value>,
    outcome: &mut Outcome,
    execute: &mut dyn FnMut(&Validated) -> Outcome,
    narrator: &mut dyn Narrator,
) {
    let cfg = lp.cfg;
    if let Some((node, category, message)) = context::blocking_failure(outcome) {
        lp.summary.stopped = Some(format!(
            "repair not tried: node '{node}' failed with a {category} error, which changing the workflow cannot fix: {message}"
        ));
        return;
    }
    if let Some(node) = context::nested_failure(outcome) {
        lp.summary.stopped = Some(format!(
            "repair not tried: node '{node}' belongs to a nested workflow, and repair edits only the workflow it was given; fix the nested workflow's file"
        ));
        return;
    }
    if cfg.mode == Mode::Replay {
        lp.summary.stopped = Some(format!(
            "repair not tried: {MODE_ENV}=replay replays proven patches only, and none is recorded for this workflow"
        ));
        return;
    }
    let prompt = match &cfg.prompt_file {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(text) => Prompt::parse(&text),
            Err(e) => {
                lp.summary.stopped = Some(format!(
                    "cannot read the repair prompt '{}': {e}",
                    path.display()
                ));
                return;
            }
        },
        None => Prompt::parse(DEFAULT_PROMPT),
    };
    let model = choose_model(cfg.model.as_deref(), &prompt);
    let destination = match crate::llm::destination(&model) {
        Ok(d) => d,
        Err(e) => {
            // No key (or no usable model): nothing is sent, and the build's own error
            // stays the one that matters.
            lp.summary.stopped = Some(format!(
                "skipped: {} (set {MODE_ENV}=off to silence this)",
                cfg.redactor.scrub(&e.message)
            ));
            return;
        }
    };
    first_use_notice(&cfg.home, &model, &destination);

    let first_sigs = context::signatures(outcome);
    let mut current = base.clone();
    let mut seen: HashSet<Vec<Signature>> = HashSet::new();
    loop {
        let sigs = context::signatures(outcome);
        if sigs.is_empty() {
            return;
        }
        if let Some((node, category, message)) = context::blocking_failure(outcome) {
            lp.summary.stopped = Some(format!(
                "repair stopped: node '{node}' failed with a {category} error, which changing the workflow cannot fix: {message}"
            ));
            return;
        }
        if !seen.insert(sigs.clone()) {
            lp.summary.stopped =
                Some("the same error came back after a repair; stopping (no progress)".into());
            return;
        }
        let hidden = lp.secrets.hide(&current);
        let request_text =
            context::Context::new(&hidden, outcome, inputs, &lp.secrets, &cfg.redactor);
        let mut feedback = String::new();
        let mut rejected_last: Option<String> = None;
        let (candidate, v, attempt_index) = loop {
            if lp.summary.llm_calls >= cfg.max_attempts {
                lp.summary.stopped = Some(format!(
                    "gave up after {} repair attempt{}{}",
                    lp.summary.llm_calls,
                    if lp.summary.llm_calls == 1 { "" } else { "s" },
                    rejected_last
                        .map(|r| format!("; the last reply was rejected: {r}"))
                        .unwrap_or_default()
                ));
                return;
            }
            let text = request_text.render(&prompt, &feedback);
            let request = crate::llm::LlmRequest {
                model: model.clone(),
                system: None,
                prompt: text,
                max_tokens: prompt.max_tokens,
                temperature: None,
            };
            lp.summary.llm_calls += 1;
            lp.summary.attempts += 1;
            narrator.say(&format!(
                "repair: attempt {}: asking {model} to fix {}",
                lp.summary.llm_calls,
                describe(&sigs)
            ));
            let mut attempt = Attempt {
                kind: "model",
                model: Some(model.clone()),
                ..Attempt::default()
            };
            let reply = match crate::llm::complete(&request) {
                Ok(r) => {
                    lp.summary.usage.push(crate::llm::price::TokenUse {
                        model: r.model.clone(),
                        calls: 1,
                        input_tokens: r.input_tokens,
                        output_tokens: r.output_tokens,
                    });
                    r
                }
                Err(e) => {
                    if e.category == crate::error::ErrorCategory::MissingApiKey {
                        // Nothing was sent: not a model call.
                        lp.summary.llm_calls -= 1;
                        lp.summary.attempts -= 1;
                    } else {
                        attempt
                            .rejected
                            .push(format!("the model could not be used: {}", e.message));
                        lp.summary.history.push(attempt);
                    }
                    lp.summary.stopped = Some(format!(
                        "the repair model could not be used ({}): {}",
                        e.category,
                        cfg.redactor.scrub(&e.message)
                    ));
                    return;
                }
            };
            attempt.explanation = reply::explanation(&reply.text).map(|e| lp.clean(&e));
            if let Some(e) = &attempt.explanation {
                narrator.say(&format!("repair: {model} says: {e}"));
            }
            let problems: Vec<String> = match reply::extract_workflow(&reply.text) {
                None => vec!["the reply contained no JSON workflow; reply with the whole corrected workflow in one ```json block".into()],
                Some(reply_doc) => {
                    let merged = request_text.restore_cuts(reply_doc);
                    match accept(lp, &current, &hidden, merged) {
                        Ok((candidate, v, diff)) => {
                            attempt.diff = Some(diff);
                            lp.summary.history.push(attempt);
                            break (candidate, v, lp.summary.history.len() - 1);
                        }
                        Err(Stop(why)) => {
                            attempt.rejected.push(why.clone());
                            lp.summary.history.push(attempt);
                            lp.summary.stopped = Some(why);
                            return;
                        }
                        Err(Reject(problems)) => problems,
                    }
                }
            };
            // The validator quotes the candidate, whose secrets are back in it.
            let problems: Vec<String> = problems.iter().map(|p| lp.clean(p)).collect();
            for p in &problems {
                narrator.say(&format!("repair: rejected: {p}"));
            }
            feedback = format!(
                "\n## Your previous reply was rejected\n\n{}\nFix these problems and reply with the whole workflow again.\n",
                problems.iter().map(|p| format!("- {p}")).collect::<Vec<_>>().join("\n")
            );
            rejected_last = Some(problems.join("; "));
            attempt.rejected = problems;
            lp.summary.history.push(attempt);
        };
        if let Some(diff) = &lp.summary.history[attempt_index].diff {
            narrator.say(diff.trim_end());
        }
        current = candidate;
        lp.summary.repaired = Some(current.clone());
        let next = lp.build(execute, &v, None);
        let last = std::mem::replace(outcome, next);
        lp.summary.earlier.push(last.nodes);
        let ok = outcome.success;
        lp.summary.history[attempt_index].result = Some(if ok { "succeeded" } else { "failed" });
        if ok {
            lp.summary.succeeded = true;
            // Proven: the build with it succeeded. Recorded from the workflow as written,
            // with secrets as placeholders.
            match patch::record(
                &cfg.cache_root,
                &cfg.workflow_name,
                &lp.secrets.hide(base),
                &lp.secrets.hide(&current),
                &first_sigs
                    .iter()
                    .map(|s| Signature {
                        message: lp.clean(&s.message),
                        ..s.clone()
                    })
                    .collect::<Vec<_>>(),
                &model,
            ) {
                Ok(path) => {
                    narrator.say(&format!("repair: recorded proven patch {}", path.display()));
                    lp.summary.history[attempt_index].patch = Some(path.clone());
                    lp.summary.patches.push(path);
                }
                Err(e) => narrator.say(&format!("warning: cannot record the repair: {e}")),
            }
            return;
        }
        if outcome.interrupted {
            lp.summary.stopped = Some("interrupted".into());
            return;
        }
    }
}

enum Verdict {
    /// Not usable; tell the model why and ask again.
    Reject(Vec<String>),
    /// Asking again will not help.
    Stop(String),
}
use Verdict::{Reject, Stop};

/// Check a reply (secrets as placeholders, cuts restored) against the workflow it is
/// meant to fix; the workflow with its secrets back, its validation, and the diff.
fn accept(
    lp: &Loop<'_>,
    current: &Value,
    hidden: &Value,
    mut candidate: Value,
) -> Result<(Value, Validated, String), Verdict> {
    let canon = crate::canonical::to_canonical;
    if canon(&candidate) == canon(hidden) {
        return Err(Stop(
            "the repair model returned the workflow unchanged; stopping".into(),
        ));
    }
    let moved = placeholder::moved(hidden, &candidate);
    if !moved.is_empty() {
        return Err(Reject(moved));
    }
    // A model used to the old convention may write "<redacted>" for a secret: that would
    // become the value. (A workflow that holds the text itself keeps it.)
    let redacted = crate::secrets::REDACTED;
    if candidate.to_string().contains(redacted) && !hidden.to_string().contains(redacted) {
        return Err(Reject(vec![format!(
            "the reply holds \"{redacted}\"; secrets appear as <secret:NAME> placeholders: keep each where it was"
        )]));
    }
    let diff = lp
        .cfg
        .redactor
        .scrub(&patch::unified_diff(hidden, &candidate));
    lp.secrets
        .reveal(&mut candidate)
        .map_err(|e| Reject(vec![e]))?;
    let v = check_candidate(current, &candidate, &lp.cfg.workflow_dir).map_err(Reject)?;
    let repeated = effects_repeated(current, &candidate, &v, &lp.done);
    if !repeated.is_empty() {
        return Err(Reject(repeated));
    }
    Ok((candidate, v, diff))
}

/// Say once per machine (per `$PFLOW_HOME`) who receives what when a repair asks a model;
/// on stderr in every output format, since it is about privacy.
fn first_use_notice(home: &Path, model: &str, destination: &str) {
    let marker = home.join("repair-notice-shown");
    if marker.exists() {
        return;
    }
    crate::report::err_line(&format!(
        "repair: notice (shown once): to repair this failure pflow sends the workflow, its errors, stdout/stderr tails and input values to {model} ({destination}); secrets are replaced by <secret:NAME> placeholders. Set {MODE_ENV}=off or pass --no-repair to keep everything local."
    ));
    let _ = std::fs::create_dir_all(home);
    let _ = crate::fsutil::write_atomic(&marker, b"shown\n");
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
    if crate::markdown::is_markdown_path(path) {
        return apply_to_markdown(path, original_doc, repaired_ir);
    }
    let doc = match original_doc {
        Value::Object(top) if top.contains_key("ir") && !top.contains_key("nodes") => {
            let mut top = top.clone();
            top.insert("ir".into(), repaired_ir.clone());
            Value::Object(top)
        }
        _ => repaired_ir.clone(),
    };
    // Only the changed values' text, when the file still holds what was loaded.
    if let Ok(text) = std::fs::read_to_string(path) {
        let on_disk = crate::source::parse_json_text(&text).ok();
        if on_disk.as_ref() == Some(original_doc) {
            if let Some(edited) = file_edit::edit(&text, original_doc, &doc) {
                return crate::fsutil::write_atomic(path, edited.as_bytes());
            }
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&doc).map_err(std::io::Error::other)?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(path, &bytes)
}

/// The IR inside a loaded document (unwrapping a saved-workflow wrapper).
pub fn ir_of(doc: &Value) -> Value {
    ir_ref(doc).clone()
}

/// [`ir_of`], borrowed.
pub fn ir_ref(doc: &Value) -> &Value {
    match doc {
        Value::Object(top) if !top.contains_key("nodes") => top.get("ir").unwrap_or(doc),
        _ => doc,
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
    fn apply_commands_quote_what_a_shell_would_split() {
        assert_eq!(shell_quote("a/b-1.json"), "a/b-1.json");
        assert_eq!(shell_quote("my flow.json"), "'my flow.json'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn interface_changes_are_rejected() {
        let base = json!({"inputs": {"a": {"type": "string"}}, "nodes": [{"id": "x", "type": "echo", "params": {"message": "${a}"}}],
                          "outputs": {"o": {"source": "${x.echo}"}}});
        let mut dropped = base.clone();
        dropped["outputs"] = json!({});
        let problems = check_candidate(&base, &dropped, Path::new("")).unwrap_err();
        assert!(problems[0].starts_with("outputs:"), "{problems:?}");
        assert!(check_candidate(&base, &base, Path::new("")).is_ok());
    }

    #[test]
    fn a_repair_may_not_widen_the_environment() {
        let base = json!({"strict_env": true, "nodes": [{"id": "x", "type": "shell",
            "params": {"command": "date"}, "reads_env": ["TZ", "DB_PASSWORD"]}]});
        let mut grab = base.clone();
        grab["nodes"][0]["reads_env"] = json!(["TZ", "DB_PASSWORD", "ANTHROPIC_API_KEY", "LANG"]);
        let problems = check_candidate(&base, &grab, Path::new("")).unwrap_err();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("'ANTHROPIC_API_KEY'"), "{problems:?}");
        let mut loose = base.clone();
        loose["strict_env"] = json!(false);
        assert!(
            check_candidate(&base, &loose, Path::new("")).unwrap_err()[0].starts_with("strict_env")
        );
        // Dropping declarations, or adding ordinary ones, is fine.
        let mut fewer = base.clone();
        fewer["nodes"][0]["reads_env"] = json!(["LANG"]);
        assert!(check_candidate(&base, &fewer, Path::new("")).is_ok());
    }
}
