//! The end of a build, shared by a full build ([`super::build`]) and one its no-op
//! record serves ([`super::noop`]): what it says on stderr, its outputs or JSON
//! document and exit code, its stats line; and what both name a run by.

use super::ExitCode;
use crate::cache::layered::Layered;
use crate::cache::stats::{BuildStats, Tally};
use crate::cli::{BuildArgs, OutputFormat};
use crate::diagnostic::Diagnostic;
use crate::executor;
use crate::report;
use serde_json::{json, Value};
use std::time::Instant;

/// The most nodes run at once: each is a thread (with its stack) and perhaps a child
/// process; far more than that only costs memory (`--jobs 100000` took 3.8 GB).
pub(super) const MAX_JOBS: usize = 256;

/// A whole number of at least 1 from the environment variable `name`, if set (a
/// settings file may have set it); a bad one is an argument error naming it.
pub(super) fn count_from_env(name: &str) -> Result<Option<usize>, Diagnostic> {
    let Some(text) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match text.trim().parse::<usize>() {
        Ok(n) if n >= 1 => Ok(Some(n)),
        _ => Err(Diagnostic::error(
            name,
            format!("{name} must be a whole number of at least 1, found '{text}'"),
        )),
    }
}

/// `--jobs`, else `PFLOW_JOBS`; `None` when neither is given.
pub(super) fn jobs_given(args: &BuildArgs) -> Result<Option<usize>, Diagnostic> {
    match args.jobs {
        Some(n) => Ok(Some(n)),
        None => count_from_env(crate::config::JOBS_ENV),
    }
}

/// Worker threads: those given, else one per core.
pub(super) fn jobs_or_cores(given: Option<usize>) -> usize {
    given.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    })
}

pub(super) fn run_id() -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{ms:x}-{}", std::process::id())
}

/// When a build explains its misses: only where a reason is shown.
pub(super) fn miss_reasons(args: &BuildArgs) -> executor::MissReasons {
    let reported = args.output_format == OutputFormat::Json
        || args.trace.is_some()
        || args.timings.is_some()
        || args.profile.is_some();
    match (args.explain, reported) {
        (true, _) => executor::MissReasons::Live,
        (false, true) => executor::MissReasons::Reported,
        (false, false) => executor::MissReasons::Unread,
    }
}

/// How much a build says on stderr, from its flags.
pub(super) fn view(args: &BuildArgs) -> report::View {
    report::View {
        json: args.output_format == OutputFormat::Json,
        quiet: args.quiet,
        explain: args.explain,
        verbose: args.verbose,
        logs: match (args.verbose, args.output_logs) {
            (true, _) | (_, crate::cli::OutputLogs::Full) => report::OutputLogs::Full,
            (_, crate::cli::OutputLogs::New) => report::OutputLogs::New,
            (_, crate::cli::OutputLogs::Errors) => report::OutputLogs::Errors,
            (_, crate::cli::OutputLogs::None) => report::OutputLogs::None,
        },
    }
}

/// What a text build prints when an attempt is done: its warnings, the declared outputs
/// that did not resolve, and the summary line.
pub(super) fn attempt_lines(args: &BuildArgs, outcome: &executor::Outcome) {
    if args.output_format == OutputFormat::Json {
        return;
    }
    if !args.quiet {
        for w in &outcome.warnings {
            report::err_line(&format!("{} {w}", report::color::warning("warning:")));
        }
    }
    for line in report::output_error_lines(outcome) {
        report::err_line(&line);
    }
    if !args.quiet {
        report::err_line(&report::summary_line(outcome));
    }
}

/// How a text build begins a validation warning's line (the JSON document lists the rest).
pub(super) const WARNING: &str = "warning: ";

/// The end of a build: the model tokens it used, its outputs (or its JSON document), and
/// its exit code. `validation_warnings`: the lines a text build printed before it started
/// (`warning: …`), which the JSON document lists first among its warnings. The outputs
/// are shown with every secret `redactor` knows replaced, as everything else a build
/// reports (the nodes after them still got the values themselves).
pub(super) fn conclude(
    args: &BuildArgs,
    mut outcome: executor::Outcome,
    repair: Option<crate::repair::RepairSummary>,
    validation_warnings: &[String],
    redactor: &crate::secrets::Redactor,
    started: Instant,
    then: super::then::Then,
) -> ExitCode {
    if !redactor.is_empty() {
        for value in outcome.outputs.values_mut() {
            *value = redactor.scrub_value(value);
        }
    }
    let json_mode = args.output_format == OutputFormat::Json;
    let earlier: &[_] = repair.as_ref().map_or(&[], |r| r.earlier.as_slice());
    let repaired = repair.as_ref().is_some_and(|r| r.succeeded);
    let repair_usage: &[_] = repair.as_ref().map_or(&[], |r| r.usage.as_slice());
    let tokens = report::token_use(
        earlier.iter().flatten().chain(outcome.nodes.iter()),
        repair_usage,
    );
    if !json_mode && !args.quiet {
        if let Some(line) = report::token_line(&tokens) {
            report::err_line(&line);
        }
    }
    if json_mode {
        let outputs = match &args.output_key {
            Some(k) => {
                let mut m = serde_json::Map::new();
                if let Some(v) = outcome.outputs.get(k) {
                    m.insert(k.clone(), v.clone());
                }
                m
            }
            None => outcome.outputs.clone(),
        };
        let doc = json!({
            "success": outcome.success,
            "outputs": outputs,
            "nodes": report::nodes_json(&outcome),
            "errors": report::errors_json(&outcome),
            "warnings": validation_warnings
                .iter()
                .map(|w| w.strip_prefix(WARNING).unwrap_or(w))
                .chain(outcome.warnings.iter().map(String::as_str))
                .collect::<Vec<&str>>(),
            "repaired": repaired,
            "repair": repair.as_ref().map(|r| r.to_json()),
            "stats": report::command_stats_json(&outcome, earlier),
            "llm_usage": tokens.iter().map(|u| u.to_json()).collect::<Vec<_>>(),
            "duration_ms": started.elapsed().as_millis() as u64,
        });
        report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        if outcome.success {
            match &args.output_key {
                Some(k) => {
                    if let Some(v) = outcome.outputs.get(k) {
                        report::out_line(&report::output_text(v));
                    }
                }
                None if outcome.outputs.len() == 1 => {
                    if let Some(v) = outcome.outputs.values().next() {
                        report::out_line(&report::output_text(v));
                    }
                }
                None => {
                    for (k, v) in &outcome.outputs {
                        report::out_line(&format!("{k}: {}", report::output_text(v)));
                    }
                }
            }
        }
    }
    let code = if outcome.interrupted || crate::interrupt::is_interrupted() {
        ExitCode::Interrupted
    } else if outcome.success && repaired && args.strict {
        // --strict: a build that works only through a patch fails until the file is fixed.
        ExitCode::Failed
    } else if outcome.success {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    };
    // A large build's reports, freed one by one, cost time for nothing when the
    // process exits right after this.
    then.leave((outcome, repair));
    code
}

/// Append this run's figures to the cache's stats (best effort: a failure to record is
/// ignored).
pub(super) fn append_stats(
    cache: &Layered,
    o: &executor::Outcome,
    tallies: impl IntoIterator<Item = Tally>,
    run_id: &str,
) {
    let stats = BuildStats::tally(run_id, o.duration.as_millis() as u64, o.success, tallies)
        .with_remote(cache.take_remote_counts());
    let _ = crate::cache::stats::append(cache.local().root(), &stats);
}

/// The values a build must never show: secret inputs (declared or named so), and the
/// literal values of every node's secret params (shell `env` bindings, http
/// credentials). [`crate::secrets::Redactor`] adds pflow's own secret-named variables.
pub(super) fn secret_values(
    v: &crate::validate::Validated,
    inputs: &serde_json::Map<String, Value>,
) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for (_, value) in inputs
        .iter()
        .filter(|(name, value)| v.workflow.is_secret_input(name) && !value.is_null())
    {
        out.push(crate::template::render_text(value).into_owned());
        // A secret object's fields are read one by one (`${credentials.password}`).
        if value.is_object() || value.is_array() {
            leaves(value, &mut out);
        }
    }
    out.extend(v.nested_secrets.iter().cloned());
    // A declared variable that holds a URL with a password (`DATABASE_URL`): the URL and
    // its password (those named like secrets the redactor finds itself).
    let declared: std::collections::BTreeSet<&String> =
        v.workflow.nodes.iter().flat_map(|n| &n.reads_env).collect();
    for name in declared {
        let Some(value) = std::env::var_os(name) else {
            continue;
        };
        let value = value.to_string_lossy();
        if let Some(pw) = crate::environment::url_password(&value) {
            out.push(pw.to_string());
            out.push(value.into_owned());
        }
    }
    for (node, cn) in v.workflow.nodes.iter().zip(&v.nodes) {
        out.extend(
            cn.spec
                .literal_secrets(&node.params)
                .into_iter()
                .map(str::to_string),
        );
    }
    out
}

/// Every string inside `value` (a number or a boolean, `5432` or `true`, would redact
/// every occurrence of ordinary text).
fn leaves(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Array(items) => items.iter().for_each(|v| leaves(v, out)),
        Value::Object(map) => map.values().for_each(|v| leaves(v, out)),
        Value::String(s) => out.push(s.clone()),
        _ => {}
    }
}

/// How each node of an attempt ended, as the stats count it. `seen`: the recorded run
/// time of each entry the attempt found (what the cache saved).
pub(super) fn tallies<'o>(
    v: &'o crate::validate::Validated,
    o: &'o executor::Outcome,
    seen: &'o crate::key::KeyMap<u64>,
) -> impl Iterator<Item = Tally> + 'o {
    use executor::Status;
    // The reports cover the nodes this build did (all, unless --target): by position.
    let mut ran = vec![false; v.graph.len()];
    for r in &o.nodes {
        if let (Some(slot), Status::Ran) = (ran.get_mut(r.index), r.status) {
            *slot = true;
        }
    }
    o.nodes.iter().map(move |r| match (r.status, r.source) {
        (_, Some(executor::HitSource::Memo)) => Tally::Memo,
        (Status::Cached | Status::Restored, _) => Tally::Hit {
            saved_ms: r.key.and_then(|k| seen.get(&k).copied()),
            restored: r.status == Status::Restored,
            upstream_ran: r.index < v.graph.len()
                && v.graph
                    .dependencies(r.index)
                    .iter()
                    .any(|(j, _)| ran.get(*j).copied().unwrap_or(false)),
        },
        (Status::Ran, _) => Tally::Ran,
        (Status::Failed, _) => Tally::Failed,
        (Status::Skipped, _) => Tally::Skipped,
    })
}

/// `-v` in text mode: commands' output printed as it arrives (redacted), through the
/// sink the executor is given. `None` (and no sink) otherwise.
pub(super) fn live_lines(
    args: &BuildArgs,
    redactor: &crate::secrets::Redactor,
) -> (
    Option<std::sync::Arc<report::LiveLines>>,
    executor::LiveOutput,
) {
    if !args.verbose || args.output_format == OutputFormat::Json {
        return (None, executor::LiveOutput::default());
    }
    let lines = std::sync::Arc::new(report::LiveLines::new(redactor.clone()));
    let sink = std::sync::Arc::clone(&lines);
    let live = executor::LiveOutput(Some(std::sync::Arc::new(move |id, bytes, is_out| {
        sink.push(id, bytes, is_out)
    })));
    (Some(lines), live)
}

/// What each node that ran printed, kept for the next build to replay (written only
/// when it changed: a no-op build writes nothing).
pub(super) fn keep_printed(
    progress: report::Progress,
    outcome: &executor::Outcome,
    root: &std::path::Path,
    workflow_name: &str,
) -> crate::cache::logs::Logs {
    let mut printed = progress.into_replay();
    let mut changed = false;
    for r in outcome
        .nodes
        .iter()
        .filter(|r| matches!(r.status, executor::Status::Ran | executor::Status::Failed))
    {
        let key = r.key.map(|k| k.hex());
        changed |= printed.record(&r.id, key, r.status.as_str(), r.log.as_deref().cloned());
    }
    if changed {
        printed.save(root, workflow_name);
    }
    printed
}
