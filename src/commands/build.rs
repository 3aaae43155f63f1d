//! `pflow build`: load → validate → inputs → execute (with the cache) → report.

use super::conclusion::{
    append_stats, attempt_lines, conclude, count_from_env, jobs_given, jobs_or_cores, miss_reasons,
    run_id, secret_values, tallies, view, MAX_JOBS,
};
use super::noop::Look;
use super::{diagnostics_json, Error, ExitCode, Result};
use crate::cache::layered::Layered;
use crate::cache::lock::Mode;
use crate::cache::logs::Logs;
use crate::cache::remote::{Config as RemoteConfig, Remote};
use crate::cache::Cache;
use crate::cli::{BuildArgs, OutputFormat};
use crate::diagnostic::Diagnostic;
use crate::executor::{self, Options, Session};
use crate::repair::RepairConfig;
use crate::report::{self, Progress};
use crate::validate::Report;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::io::{IsTerminal, Read};
use std::time::Instant;

/// `--trace FILE` (and `--profile FILE`, `--timings=FILE`) must be writable where it
/// is: a missing folder is a typo to report before the build, not one to create.
fn trace_path_problem(flag: &str, path: &std::path::Path) -> Option<String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if path.is_dir() {
        return Some(format!(
            "{flag} {}: is a directory; give a file path",
            path.display()
        ));
    }
    (!dir.is_dir()).then(|| {
        format!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        )
    })
}

/// Problems that stop a build before it starts (exit 2), as the output format wants them.
fn invalid(args: &BuildArgs, report: Report, started: Instant) -> Error {
    match args.output_format {
        OutputFormat::Json => {
            let errors: Vec<Value> = report
                .errors
                .iter()
                .map(|d| {
                    let mut e = json!({"node": null, "category": "validation", "path": d.path,
                           "message": diagnostic_text(d), "repairable": false});
                    if let (Some(line), Some(map)) = (d.line, e.as_object_mut()) {
                        map.insert("line".into(), json!(line));
                        map.insert("column".into(), json!(d.column));
                    }
                    e
                })
                .collect();
            let doc = json!({
                "success": false, "outputs": {}, "nodes": [], "errors": errors,
                "warnings": diagnostics_json(&report.warnings),
                "repair": null,
                "stats": {"total": 0, "ran": 0, "cached": 0, "restored": 0, "failed": 0, "skipped": 0},
                "duration_ms": started.elapsed().as_millis() as u64,
            });
            Error::Document {
                json: doc,
                code: ExitCode::Invalid,
            }
        }
        OutputFormat::Text => Error::diagnostics(&args.workflow, report),
    }
}

fn diagnostic_text(d: &Diagnostic) -> String {
    match &d.hint {
        Some(h) => format!("{} ({h})", d.message),
        None => d.message.clone(),
    }
}

fn errors_only(errors: Vec<Diagnostic>) -> Report {
    Report {
        errors,
        warnings: Vec::new(),
    }
}

pub use super::then::Then;

/// One build (each of `--watch`'s builds is one: `commands::run` sends `--watch` to
/// [`super::watch`], which calls this with [`Then::Continue`]).
pub fn once(args: &BuildArgs, then: Then) -> Result {
    let started = Instant::now();
    crate::interrupt::install_handler();
    let files = [
        ("--trace", args.trace.as_deref()),
        ("--profile", args.profile.as_deref()),
        (
            "--timings",
            args.timings.as_ref().and_then(|t| t.as_deref()),
        ),
    ];
    let problems: Vec<Diagnostic> = files
        .iter()
        .filter_map(|(flag, path)| trace_path_problem(flag, (*path)?))
        .map(|why| Diagnostic::error("arguments", why))
        .collect();
    if !problems.is_empty() {
        return Err(invalid(args, errors_only(problems), started));
    }
    // Nothing changed since a build that found nothing to do: say so from its record.
    let start = match super::noop::serve(args, Look::Identity, started, then) {
        Ok(code) => return Ok(code),
        Err(start) => start,
    };
    // Only the text of a few nodes changed since then: build what the edit reaches.
    let start = match super::edit::serve(args, start, started, then) {
        Ok(code) => return Ok(code),
        // Sent there because the file was written since, which it turned away: the
        // bytes may be the same (a save without an edit).
        Err(start) if start.by_identity => {
            super::noop::debug(|| "no-op record: comparing the workflow's bytes".into());
            match super::noop::serve(args, Look::Bytes, started, then) {
                Ok(code) => return Ok(code),
                // Not for the edit path again: the record would stay mapped, and its
                // spare unused, through the normal build.
                Err(mut start) => {
                    start.edited = None;
                    start
                }
            }
        }
        Err(start) => start,
    }
    .normal();
    let local = Cache::new(super::cache_dir_of(args.cache_dir.as_ref()));
    let warm_lock = warm(args, &local);
    let (workflow_file, document, validated) = super::load_document(&args.workflow)
        .and_then(|(path, doc, v)| match args.strict {
            true => v.strict().map(|v| (path, doc, v)),
            false => Ok((path, doc, v)),
        })
        .map_err(|report| invalid(args, report, started))?;
    // What the no-op record is made from: the very bytes this build reads.
    let crate::source::Document { doc, text, .. } = document;
    let workflow_digest = start.may_record().then(|| blake3::hash(text.as_bytes()));
    drop(text);

    let assignments = match crate::inputs::parse_assignments(&args.params) {
        Ok(a) => a,
        Err(d) => return Err(invalid(args, errors_only(vec![d]), started)),
    };
    let wants_stdin = validated
        .workflow
        .inputs
        .iter()
        .any(|(name, spec)| spec.stdin && !assignments.iter().any(|(k, _)| k == name));
    let piped = if wants_stdin && !std::io::stdin().is_terminal() {
        let mut s = String::new();
        match std::io::stdin().read_to_string(&mut s) {
            // Nothing piped (e.g. stdin is /dev/null under CI) is not a value.
            Ok(0) => None,
            Ok(_) => Some(s),
            Err(e) => {
                let d = Diagnostic::error("stdin", format!("cannot read piped stdin: {e}"));
                return Err(invalid(args, errors_only(vec![d]), started));
            }
        }
    } else {
        None
    };
    let inputs = match crate::inputs::resolve(&validated.workflow, &assignments, piped) {
        Ok(i) => i,
        Err(errors) => return Err(invalid(args, errors_only(errors), started)),
    };

    let mut arg_errors = Vec::new();
    for (flag, ids) in [("--rerun", &args.rerun), ("--target", &args.target)] {
        for id in ids {
            if validated.graph.position(id).is_none() {
                arg_errors.push(
                    Diagnostic::error(flag, format!("no node '{id}' in this workflow"))
                        .with_hint_opt(crate::diagnostic::suggestion(
                            id,
                            validated.workflow.nodes.iter().map(|n| n.id.as_str()),
                        )),
                );
            }
        }
    }
    let selection = executor::selected(&validated, &args.target);
    if let Some(key) = &args.output_key {
        if !validated.workflow.outputs.contains_key(key) {
            let names: Vec<&str> = validated
                .workflow
                .outputs
                .keys()
                .map(|k| k.as_str())
                .collect();
            arg_errors.push(
                Diagnostic::error(
                    "--output-key",
                    format!("the workflow declares no output '{key}'"),
                )
                .with_hint(format!(
                    "declared outputs: {}",
                    if names.is_empty() {
                        "none".into()
                    } else {
                        names.join(", ")
                    }
                )),
            );
        } else if let Some(missing) = unbuilt_source(&validated, selection.as_deref(), key) {
            arg_errors.push(
                Diagnostic::error(
                    "--output-key",
                    format!("output '{key}' needs node '{missing}', which the --target nodes do not need"),
                )
                .with_hint(format!("add --target {missing}")),
            );
        }
    }
    let mut arg_error = |d: Diagnostic| {
        arg_errors.push(d);
        None
    };
    let jobs = jobs_given(args).unwrap_or_else(&mut arg_error);
    let max_repair_attempts = match args.max_repair_attempts {
        Some(n) => n,
        None => count_from_env(crate::config::MAX_REPAIR_ATTEMPTS_ENV)
            .unwrap_or_else(&mut arg_error)
            .map_or(3, |n| n.min(u32::MAX as usize) as u32),
    };
    // Watch mode replays proven patches; a model is asked only with --watch-repair.
    let mut replay_for_watch = false;
    let repair_mode = match crate::repair::Mode::choose(args.no_repair) {
        Ok(crate::repair::Mode::On) if args.watch && !args.watch_repair => {
            replay_for_watch = true;
            crate::repair::Mode::Replay
        }
        Ok(m) => m,
        Err(e) => {
            arg_errors.push(Diagnostic::error(crate::repair::MODE_ENV, e));
            crate::repair::Mode::Off
        }
    };
    if jobs == Some(0) {
        arg_errors.push(Diagnostic::error("--jobs", "--jobs must be at least 1"));
    }
    let remote =
        match RemoteConfig::from_args(args.remote_cache.as_deref(), args.remote_cache_write) {
            Ok(cfg) => cfg.map(|c| std::sync::Arc::new(Remote::new(c))),
            Err(e) => {
                arg_errors.push(Diagnostic::error("--remote-cache", e));
                None
            }
        };
    if !arg_errors.is_empty() {
        return Err(invalid(args, errors_only(arg_errors), started));
    }

    let jobs_given = jobs.is_some();
    let jobs = match jobs {
        Some(n) if n > MAX_JOBS => {
            report::err_line(&format!(
                "warning: --jobs {n} is more than pflow runs at once; using {MAX_JOBS}"
            ));
            MAX_JOBS
        }
        Some(n) => n,
        None => jobs_or_cores(None),
    };
    let mut opts = Options {
        jobs,
        jobs_given,
        force: args.force,
        rerun: args.rerun.iter().cloned().collect::<HashSet<_>>(),
        run_id: run_id(),
        workflow_name: super::records_name::records_name(&workflow_file, local.root()),
        strict_env: args.strict_env || crate::environment::strict_from_env(),
        targets: args.target.clone(),
        write_roots: crate::workspace::WriteRoots::new(&args.allow_write)
            .closing(local.root(), &crate::cache::layout::CACHE_NAMES),
        redactor: crate::secrets::Redactor::new(secret_values(&validated, &inputs)),
        live: executor::LiveOutput::default(),
        reasons: miss_reasons(args),
        known: Vec::new(),
        parts: Vec::new(),
    };
    let cache = Layered::new(local, remote);
    let say_wait = &mut |w: &crate::cache::lock::Waiting| report::err_line(&w.to_string());
    let json_mode = args.output_format == OutputFormat::Json;
    // Builds share the cache; gc, verify and clear wait for them (and they for those).
    let _cache_lock = warm_lock.or_else(|| {
        cache
            .local()
            .lock(Mode::Shared, say_wait)
            .map_err(|e| report::err_line(&format!("warning: {e}")))
            .ok()
    });

    if args.dry_run {
        // Read under the shared lock, as a build would: maintenance never runs under it.
        let steps = executor::plan(&validated, &inputs, &cache, &opts);
        if json_mode {
            report::out_line(
                &serde_json::to_string_pretty(&json!({"dry_run": true, "nodes": steps}))
                    .unwrap_or_default(),
            );
        } else {
            for s in &steps {
                let action = match s.action {
                    executor::Action::Run => "run",
                    executor::Action::Reuse => "reuse",
                    executor::Action::Skip => "skip",
                    executor::Action::IfFailed => "if failed",
                };
                report::err_line(&format!(
                    "  {:<6} {} ({}) — {}",
                    action, s.id, s.node_type, s.reason
                ));
            }
            let count = |a: executor::Action| steps.iter().filter(|s| s.action == a).count();
            let mut summary = format!(
                "{} nodes: {} would run, {} would be reused",
                steps.len(),
                count(executor::Action::Run),
                count(executor::Action::Reuse)
            );
            for (a, what) in [
                (executor::Action::IfFailed, "would run only on a failure"),
                (executor::Action::Skip, "would be skipped"),
            ] {
                if count(a) > 0 {
                    summary.push_str(&format!(", {} {what}", count(a)));
                }
            }
            report::err_line(&summary);
        }
        return Ok(ExitCode::Ok);
    }

    let warning_lines = warning_lines(args, &validated);
    if !json_mode {
        for line in &warning_lines {
            report::err_line(line);
        }
    }
    // This build may change what the record vouches for: until it is done, there is none.
    crate::cache::noop::forget(cache.local().root(), &opts.workflow_name);
    // What it compiles may differ: the forms it leaves (if any) are of this build.
    crate::cache::node_forms::forget(cache.local().root(), &opts.workflow_name);
    let session = Session::default();
    let repair_cfg = RepairConfig {
        mode: repair_mode,
        redactor: opts.redactor.clone(),
        home: crate::store::home(),
        max_attempts: max_repair_attempts,
        model: args.repair_model.clone(),
        prompt_file: args.repair_prompt.clone(),
        cache_root: cache.local().root().to_path_buf(),
        workflow_name: args.workflow.clone(),
        workflow_dir: workflow_file
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default(),
    };
    let (live, sink) = super::conclusion::live_lines(args, &opts.redactor);
    opts.live = sink;
    let view = view(args);
    let mut logs = Some(Logs::load(cache.local().root(), &opts.workflow_name));
    let wants_timeline = args.timings.is_some() || args.profile.is_some();
    let mut timeline = crate::timeline::Timeline::new(&opts.run_id);
    let mut run_once = |v: &crate::validate::Validated| {
        let offset = started.elapsed();
        let covered = executor::selected_count(v, executor::selected(v, &opts.targets).as_deref());
        let mut progress = Progress::new(covered, view, logs.take().unwrap_or_default());
        let outcome = executor::execute(v, &inputs, &cache, &opts, &session, &mut |ev| match ev {
            executor::Event::Started(i) => progress.started(v.graph.id(i)),
            executor::Event::Finished(r) => progress.finished(r),
            executor::Event::Idle => progress.flush(),
        });
        if let Some(sink) = &live {
            sink.finish();
        }
        progress.done();
        logs = Some(super::conclusion::keep_printed(
            progress,
            &outcome,
            cache.local().root(),
            &opts.workflow_name,
        ));
        let seen = cache.local().take_seen();
        append_stats(&cache, &outcome, tallies(v, &outcome, &seen), &opts.run_id);
        if wants_timeline {
            timeline.record(offset, v, &outcome, &seen);
        }
        // One summary per attempt: a repaired build shows the failed one too.
        attempt_lines(args, &outcome);
        outcome
    };
    let mut narrator = |text: &str| {
        if !json_mode {
            report::err_line(text);
        }
    };
    let (outcome, repair) = crate::repair::build_with_repair(
        &doc,
        &validated,
        &inputs,
        &repair_cfg,
        &mut run_once,
        &mut narrator,
    );

    if let Some(summary) = &repair {
        if !json_mode {
            crate::repair::report::print(summary, args.apply_repairs, args.strict);
            if replay_for_watch && !summary.succeeded {
                report::err_line(
                    "repair: in watch mode the model is asked only with --watch-repair",
                );
            }
        }
        if args.apply_repairs && summary.succeeded {
            if let Some(ir) = &summary.repaired {
                let written = match crate::store::saved_name(&workflow_file) {
                    Some(name) => crate::store::update_ir(&name, ir),
                    None => crate::repair::apply_to_file(&workflow_file, &doc, ir)
                        .map_err(|e| e.to_string()),
                };
                match written {
                    Ok(()) if !json_mode => report::err_line(&format!(
                        "repair: wrote the repaired workflow to {}",
                        workflow_file.display()
                    )),
                    Ok(()) => {}
                    Err(e) => report::err_line(&format!(
                        "warning: cannot write the repaired workflow: {e}"
                    )),
                }
            }
        }
    }
    if let Some(name) = crate::store::saved_name(&workflow_file) {
        if let Err(e) = crate::store::record_run(
            &name,
            &assignments,
            &|k| validated.workflow.is_secret_input(k),
            &opts.redactor,
            outcome.success,
            started.elapsed().as_millis() as u64,
        ) {
            report::err_line(&format!("warning: cannot record the run of '{name}': {e}"));
        }
    }

    let earlier: &[_] = repair.as_ref().map_or(&[], |r| r.earlier.as_slice());
    if let Some(path) = &args.trace {
        let doc = report::trace_json(&outcome, earlier, &opts.run_id);
        let bytes = serde_json::to_vec_pretty(&doc).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_atomic(path, &bytes) {
            report::err_line(&format!(
                "warning: cannot write trace '{}': {e}",
                path.display()
            ));
        }
    }
    write_timeline(args, &timeline, cache.local());

    if let Some(digest) = &workflow_digest {
        super::noop::record(
            args,
            &start,
            &validated,
            digest,
            &warning_lines,
            &opts.redactor,
            &outcome,
            repair.is_some(),
            super::edit::base,
        );
    }
    let code = conclude(
        args,
        outcome,
        repair,
        &warning_lines,
        &opts.redactor,
        started,
        then,
    );
    then.leave((validated, doc, session));
    Ok(code)
}

/// A workflow file this big holds enough nodes for [`Packs::warm`] to map the cache's
/// indexes (a build of fewer looks up a few dozen keys, searched where they lie).
///
/// [`Packs::warm`]: crate::cache::pack::Packs::warm
const WARM_MAP_FROM: u64 = 16 * 1024;

/// A cache that holds earlier builds is read on a thread of its own while this one
/// reads and checks the workflow, when the other cores have nothing to do
/// ([`Cache::warm`]); it is read under the build's shared lock, taken here for the
/// build. An absent cache has nothing to read (and is not created for a workflow that
/// may turn out invalid).
fn warm(args: &BuildArgs, local: &Cache) -> Option<crate::cache::lock::CacheLock> {
    if !local.root().is_dir() {
        return None;
    }
    let say_wait = &mut |w: &crate::cache::lock::Waiting| report::err_line(&w.to_string());
    let lock = local.lock(Mode::Shared, say_wait).ok()?;
    let map = std::fs::metadata(&args.workflow).is_ok_and(|m| m.len() >= WARM_MAP_FROM);
    local.warm_aside(map);
    Some(lock)
}

/// Validation warnings, each as a text build prints it before it starts.
fn warning_lines(args: &BuildArgs, v: &crate::validate::Validated) -> Vec<String> {
    v.warnings
        .iter()
        .map(|w| {
            let at = match w.line {
                Some(_) => format!("{}:{} ", args.workflow, w.place()),
                None => String::new(),
            };
            format!(
                "{}{at}{}: {}",
                super::conclusion::WARNING,
                w.path,
                w.message
            )
        })
        .collect()
}

/// The first node that declared output `key` reads and the selection does not build.
fn unbuilt_source(
    v: &crate::validate::Validated,
    selection: Option<&[bool]>,
    key: &str,
) -> Option<String> {
    let selection = selection?;
    let built = |i: usize| selection.get(i).copied().unwrap_or(false);
    let (_, source) = v.outputs.iter().find(|(name, _)| name == key)?;
    match source {
        Some(t) => t
            .refs()
            .find(|r| v.graph.position(&r.root).is_some_and(|i| !built(i)))
            .map(|r| r.root.clone()),
        // No source: the last node producing a field of that name, if it is built.
        None => {
            let producers: Vec<usize> = v
                .order
                .iter()
                .copied()
                .filter(|&i| v.nodes[i].spec.output(key).is_some())
                .collect();
            match producers.iter().any(|&i| built(i)) {
                true => None,
                false => producers.last().map(|&i| v.graph.id(i).to_string()),
            }
        }
    }
}

/// `--timings` and `--profile`: the timeline, two ways. A file that cannot be written
/// is a warning (the build itself is done).
fn write_timeline(args: &BuildArgs, timeline: &crate::timeline::Timeline, cache: &Cache) {
    let warn = |what: &str, path: &std::path::Path, e: &dyn std::fmt::Display| {
        report::err_line(&format!(
            "warning: cannot write {what} '{}': {e}",
            path.display()
        ))
    };
    let json_file = |what: &str, path: &std::path::Path, doc: &Value| {
        let bytes = serde_json::to_vec_pretty(doc).unwrap_or_default();
        if let Err(e) = crate::fsutil::write_atomic(path, &bytes) {
            warn(what, path, &e);
        }
    };
    if let Some(path) = &args.profile {
        json_file(
            "profile",
            path,
            &crate::profile::trace(timeline, &args.workflow),
        );
    }
    if let Some(choice) = &args.timings {
        let path = match choice {
            Some(p) => p.clone(),
            None => crate::timings::default_path(cache.root(), &timeline.run_id),
        };
        let tokens = crate::timings::tokens_from_cache(timeline, cache);
        let page = crate::timings::page(timeline, &args.workflow, &tokens);
        match crate::timings::write(&path, &page, cache.root()) {
            Ok(()) => report::err_line(&format!("timings: {}", path.display())),
            Err(e) => warn("timings", &path, &e),
        }
    }
}
