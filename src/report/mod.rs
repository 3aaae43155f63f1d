//! What a build tells the user: progress on stderr, outputs on stdout, or one JSON
//! document; and the `--trace` file.

pub mod color;
mod running;

use crate::executor::{NodeReport, Outcome, Status};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::io::IsTerminal;
use std::time::Duration;

/// Which steps' output a build shows (`--output-logs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputLogs {
    /// Every step's stdout and stderr tails, replayed from the cache for reused ones.
    Full,
    /// The output of steps that ran in this build.
    New,
    /// Failures, and the stderr of steps that wrote to it (replayed when reused): the
    /// warnings a step prints are not lost once it is cached.
    Errors,
    None,
}

/// How much a build says on stderr.
#[derive(Debug, Clone, Copy)]
pub struct View {
    /// JSON output: stderr stays clean for the caller.
    pub json: bool,
    /// `-q`: only errors (outputs still go to stdout).
    pub quiet: bool,
    pub explain: bool,
    /// `-v`: a line for every node, even on large builds.
    pub verbose: bool,
    pub logs: OutputLogs,
}

/// Builds with more nodes than this show reused nodes as one count, not a line each.
pub const COLLAPSE_ABOVE: usize = 30;

/// Live progress on stderr: a spinner on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    view: View,
    collapse: bool,
    collapsed: usize,
    replay: crate::cache::logs::Logs,
    /// For the bar's message (none without a bar).
    running: running::Running,
    /// Plain-mode lines not yet written: a large build writes them in a few syscalls.
    pending: String,
}

impl Progress {
    /// `replay`: what reused nodes printed when they ran.
    pub fn new(total: usize, view: View, replay: crate::cache::logs::Logs) -> Progress {
        let silent = view.json || view.quiet;
        let interactive = !silent
            && !view.verbose
            && std::io::stderr().is_terminal()
            && std::env::var_os("CI").is_none();
        let bar = interactive.then(|| {
            let bar = ProgressBar::new(total as u64);
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{pos}/{len}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        });
        Progress {
            bar,
            view,
            collapse: total > COLLAPSE_ABOVE && !view.verbose && !view.explain,
            collapsed: 0,
            replay,
            running: Default::default(),
            pending: String::new(),
        }
    }

    pub fn started(&mut self, id: &str) {
        if let Some(bar) = &self.bar {
            self.running.start(id);
            bar.set_message(self.running.message());
        }
    }

    pub fn finished(&mut self, r: &NodeReport) {
        if self.bar.is_some() {
            self.running.finish(&r.id);
        }
        if self.view.json {
            return;
        }
        let log = self.log_to_show(r);
        let line_wanted = match r.status {
            Status::Failed => true,
            _ if self.view.quiet => false,
            Status::Cached if self.collapse && log.is_none() => {
                self.collapsed += 1;
                false
            }
            _ => true,
        };
        if let Some(bar) = &self.bar {
            bar.inc(1);
            bar.set_message(self.running.message());
        }
        if !line_wanted {
            return;
        }
        let mut line = String::new();
        write_node_line(&mut line, r, self.view.explain);
        if let Some((log, replayed)) = &log {
            write_log(&mut line, log, *replayed);
        }
        match &self.bar {
            Some(bar) => bar.println(line),
            None => {
                self.pending.push_str(&line);
                self.pending.push('\n');
                if self.pending.len() > 64 * 1024 {
                    self.flush();
                }
            }
        }
    }

    /// The output to show under a node's line, and whether it is replayed from the
    /// cache, as `--output-logs` asks.
    fn log_to_show(&self, r: &NodeReport) -> Option<(crate::cache::logs::NodeLog, bool)> {
        use crate::cache::logs::NodeLog;
        let only_stderr = |l: &NodeLog| {
            (!l.stderr.is_empty()).then(|| NodeLog {
                stdout: String::new(),
                stderr: l.stderr.clone(),
            })
        };
        match (self.view.logs, r.status) {
            (OutputLogs::None, _) => None,
            // `-v` streamed it as it came.
            (_, Status::Ran | Status::Failed) if self.view.verbose && !r.unstreamed => None,
            // The error line already holds what a failed command wrote to stderr.
            (OutputLogs::Errors, Status::Failed) => None,
            (_, Status::Failed) => r.log.as_deref().map(|l| (l.clone(), false)),
            (OutputLogs::Errors, Status::Ran) => {
                r.log.as_deref().and_then(only_stderr).map(|l| (l, false))
            }
            (_, Status::Ran) => r.log.as_deref().map(|l| (l.clone(), false)),
            (OutputLogs::New, _) | (_, Status::Skipped) => None,
            (logs, Status::Cached | Status::Restored) => {
                let stored = self.replay.replay(&r.id, r.key.as_ref()?)?;
                let shown = match logs {
                    OutputLogs::Errors => only_stderr(stored)?,
                    _ => stored.clone(),
                };
                Some((shown, true))
            }
        }
    }

    /// Write buffered lines (the executor calls this whenever it is waiting).
    pub fn flush(&mut self) {
        if !self.pending.is_empty() {
            err_text(&self.pending);
            self.pending.clear();
        }
    }

    pub fn message(&mut self, text: &str) {
        if self.view.json || self.view.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(text),
            None => {
                self.flush();
                err_line(text)
            }
        }
    }

    pub fn done(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
        if self.collapsed > 0 {
            let n = self.collapsed;
            let mut line = String::new();
            write_status(&mut line, Status::Cached);
            line.push_str(&format!(
                "{} node{} (-v lists them)\n",
                thousands(n),
                if n == 1 { "" } else { "s" }
            ));
            self.pending.push_str(&line);
        }
        self.flush();
    }

    /// Give back what reused nodes printed (to update it for the next build).
    pub fn into_replay(self) -> crate::cache::logs::Logs {
        self.replay
    }
}

/// `9,998`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A node's output under its line: `    stderr | text`, each line.
fn write_log(out: &mut String, log: &crate::cache::logs::NodeLog, replayed: bool) {
    let from = if replayed {
        " (from its cached run)"
    } else {
        ""
    };
    for (name, text) in [("stdout", &log.stdout), ("stderr", &log.stderr)] {
        if text.is_empty() {
            continue;
        }
        out.push_str(&format!("\n    {name}{from}:"));
        for line in text.lines() {
            out.push_str("\n    | ");
            out.push_str(line);
        }
    }
}

pub fn format_duration(d: Duration) -> String {
    let mut s = String::new();
    write_duration(&mut s, d);
    s
}

fn write_duration(out: &mut String, d: Duration) {
    use std::fmt::Write;
    let ms = d.as_secs_f64() * 1000.0;
    let _ = if ms < 1000.0 {
        write!(out, "{}ms", ms.round() as u64)
    } else {
        write!(out, "{:.2}s", d.as_secs_f64())
    };
}

/// `  cached   fetch (http) 12ms`, with the reason or error when there is one to show.
fn write_node_line(out: &mut String, r: &NodeReport, explain: bool) {
    use std::fmt::Write;
    write_status(out, r.status);
    out.push_str(&r.id);
    out.push_str(" (");
    out.push_str(&r.node_type);
    out.push_str(") ");
    write_duration(out, r.duration);
    let show_reason = explain || matches!(r.status, Status::Skipped | Status::Restored);
    match (&r.error, r.status) {
        (Some(e), Status::Failed) => {
            let _ = write!(out, "\n    error [{}]: {}", e.category, e.message);
            if r.handled {
                out.push_str(" (handled by an error edge)");
            }
        }
        (_, Status::Failed) => {}
        _ if show_reason && !r.reason.is_empty() => {
            out.push_str(" — ");
            out.push_str(&r.reason);
        }
        _ => {}
    }
}

/// `  cached   `: the status, padded, coloured when colour is on.
fn write_status(out: &mut String, status: Status) {
    let text = status.as_str();
    out.push_str("  ");
    let (on, off) = match crate::report::color::enabled() {
        true => (color::of(status), color::RESET),
        false => ("", ""),
    };
    out.push_str(on);
    out.push_str(text);
    out.push_str(off);
    for _ in text.len()..9 {
        out.push(' ');
    }
}

#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    pub total: usize,
    pub ran: usize,
    pub cached: usize,
    pub restored: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Of the cached and restored nodes, how many came from the remote cache.
    pub remote: usize,
}

pub fn stats(o: &Outcome) -> Stats {
    let mut s = Stats {
        total: o.nodes.len(),
        ..Stats::default()
    };
    for n in &o.nodes {
        match n.status {
            Status::Ran => s.ran += 1,
            Status::Cached => s.cached += 1,
            Status::Restored => s.restored += 1,
            Status::Failed => s.failed += 1,
            Status::Skipped => s.skipped += 1,
        }
        if n.source == Some(crate::executor::HitSource::Remote) {
            s.remote += 1;
        }
    }
    s
}

pub fn summary_line(o: &Outcome) -> String {
    let s = stats(o);
    let mut parts = vec![format!("{} cached", s.cached), format!("{} ran", s.ran)];
    if s.restored > 0 {
        parts.push(format!("{} restored", s.restored));
    }
    parts.push(format!("{} failed", s.failed));
    if s.skipped > 0 {
        parts.push(format!("{} skipped", s.skipped));
    }
    let remote = match s.remote {
        0 => String::new(),
        n => format!("; {n} reused from the remote cache"),
    };
    format!(
        "{} node{}: {} in {}{remote}",
        s.total,
        if s.total == 1 { "" } else { "s" },
        parts.join(", "),
        format_duration(o.duration)
    )
}

/// Errors that decide the build's result (handled failures are not among them).
pub fn errors_json(o: &Outcome) -> Vec<Value> {
    o.nodes
        .iter()
        .filter(|n| n.status == Status::Failed && !n.handled)
        .filter_map(|n| {
            let e = n.error.as_ref()?;
            let mut m = Map::new();
            m.insert("node".into(), json!(n.id));
            m.insert("category".into(), json!(e.category.as_str()));
            m.insert("message".into(), json!(e.message));
            m.insert("repairable".into(), json!(e.repairable()));
            if let Some(code) = e.exit_code() {
                m.insert("exit_code".into(), json!(code));
            }
            if let Some(status) = e.status {
                m.insert("status_code".into(), json!(status));
            }
            Some(Value::Object(m))
        })
        .chain(o.output_errors.iter().map(|(name, e)| {
            json!({"node": null, "output": name, "category": e.category.as_str(),
                   "message": e.message, "repairable": e.repairable()})
        }))
        .collect()
}

/// One line per declared output that did not resolve (they fail the build).
pub fn output_error_lines(o: &Outcome) -> Vec<String> {
    o.output_errors
        .iter()
        .map(|(_, e)| format!("  error [{}]: {}", e.category, e.message))
        .collect()
}

pub fn nodes_json(o: &Outcome) -> Vec<Value> {
    o.nodes
        .iter()
        .map(|n| {
            let mut v = json!({
                "id": n.id,
                "type": n.node_type,
                "status": n.status.as_str(),
                "executions": n.executions,
                "duration_ms": n.duration.as_millis() as u64,
                "key": n.key.map(|k| k.hex()),
                "reason": n.reason,
            });
            if let Some(u) = &n.usage {
                v["llm_usage"] = u.to_json();
            }
            v
        })
        .collect()
}

/// The model tokens a command used, one total per model: its nodes that ran (in every
/// build of the command) and its repair calls.
pub fn token_use<'a>(
    nodes: impl IntoIterator<Item = &'a NodeReport>,
    repair: &[crate::llm::price::TokenUse],
) -> Vec<crate::llm::price::TokenUse> {
    let mut by_model: Vec<crate::llm::price::TokenUse> = Vec::new();
    let uses = nodes
        .into_iter()
        .filter_map(|n| n.usage.as_deref())
        .chain(repair);
    for u in uses {
        match by_model.iter_mut().find(|m| m.model == u.model) {
            Some(m) => m.add(u),
            None => by_model.push(u.clone()),
        }
    }
    by_model
}

/// `llm: 3 calls, 1,234 input + 567 output tokens, $0.0041` (the cost of the models
/// with a price; the others are named).
pub fn token_line(uses: &[crate::llm::price::TokenUse]) -> Option<String> {
    if uses.is_empty() {
        return None;
    }
    let total = |f: fn(&crate::llm::price::TokenUse) -> u64| {
        uses.iter().map(f).fold(0u64, u64::saturating_add)
    };
    let (calls, input, output) = (
        total(|u| u.calls),
        total(|u| u.input_tokens),
        total(|u| u.output_tokens),
    );
    let cost: f64 = uses.iter().filter_map(|u| u.cost_usd()).sum();
    let unpriced: Vec<&str> = uses
        .iter()
        .filter(|u| u.cost_usd().is_none())
        .map(|u| u.model.as_str())
        .collect();
    let mut line = format!(
        "llm: {} call{}, {} input + {} output tokens, {}",
        calls,
        if calls == 1 { "" } else { "s" },
        thousands(input as usize),
        thousands(output as usize),
        crate::llm::price::format_usd(cost)
    );
    if !unpriced.is_empty() {
        line.push_str(&format!(
            " (no price for {}: set PFLOW_LLM_PRICES)",
            unpriced.join(", ")
        ));
    }
    Some(line)
}

/// The stats of a whole command: the last build's, where a node that ran in any
/// earlier build (a repair attempt) counts as ran, and so does one only they had.
pub fn command_stats(o: &Outcome, earlier: &[Vec<NodeReport>]) -> Stats {
    let mut s = stats(o);
    let ran_before = |id: &str| {
        earlier
            .iter()
            .flatten()
            .any(|n| n.id == id && n.status == Status::Ran)
    };
    for n in &o.nodes {
        if matches!(n.status, Status::Cached | Status::Restored) && ran_before(&n.id) {
            s.ran += 1;
            match n.status {
                Status::Cached => s.cached -= 1,
                _ => s.restored -= 1,
            }
        }
    }
    let mut gone: Vec<&str> = earlier
        .iter()
        .flatten()
        .filter(|n| n.status == Status::Ran && !o.nodes.iter().any(|m| m.id == n.id))
        .map(|n| n.id.as_str())
        .collect();
    gone.sort_unstable();
    gone.dedup();
    s.total += gone.len();
    s.ran += gone.len();
    s
}

pub fn stats_json(o: &Outcome) -> Value {
    command_stats_json(o, &[])
}

pub fn command_stats_json(o: &Outcome, earlier: &[Vec<NodeReport>]) -> Value {
    let s = command_stats(o, earlier);
    json!({"total": s.total, "ran": s.ran, "cached": s.cached, "restored": s.restored,
           "failed": s.failed, "skipped": s.skipped})
}

/// The `--trace` document: every build of the command (the first, then each repair
/// attempt's), each node report marked with its build's number.
pub fn trace_json(o: &Outcome, earlier: &[Vec<NodeReport>], run_id: &str) -> Value {
    let builds = earlier
        .iter()
        .map(|n| n.as_slice())
        .chain([o.nodes.as_slice()]);
    let nodes: Vec<(usize, &NodeReport)> = builds
        .enumerate()
        .flat_map(|(b, nodes)| nodes.iter().map(move |n| (b + 1, n)))
        .collect();
    json!({
        "run_id": run_id,
        "success": o.success,
        "duration_ms": o.duration.as_millis() as u64,
        "builds": earlier.len() + 1,
        "stats": command_stats_json(o, earlier),
        "nodes": nodes.iter().map(|(b, n)| json!({
            "build": b,
            "id": n.id,
            "type": n.node_type,
            "status": n.status.as_str(),
            "start_ms": n.start_us / 1000,
            "end_ms": n.end_us / 1000,
            "key": n.key.map(|k| k.hex()),
            "digest": n.digest.map(|d| d.to_hex().to_string()),
            "executions": n.executions,
            "reason": n.reason,
        })).collect::<Vec<_>>(),
    })
}

/// Render an output value for stdout: text as is, anything else as JSON.
pub fn output_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

/// Print a line on stdout. A closed or full stdout (`pflow build wf.json | head -1`)
/// loses the text but is not a crash.
pub fn out_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{text}");
}

/// Like [`out_line`], without the newline: text that brings its own (a graph, a
/// converted workflow, completions), byte for byte.
pub fn out_text(text: &str) {
    use std::io::Write;
    let _ = write!(std::io::stdout().lock(), "{text}");
}

/// Print a line on stderr, ignoring a closed pipe like [`out_line`].
pub fn err_line(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// Like [`err_line`], without the newline.
pub fn err_text(text: &str) {
    use std::io::Write;
    let _ = write!(std::io::stderr().lock(), "{text}");
}

/// `-v`: commands' output as it arrives, a line at a time, each prefixed by its node's
/// id and redacted (a secret split across two reads is still whole in its line).
pub struct LiveLines {
    redactor: crate::secrets::Redactor,
    partial: std::sync::Mutex<std::collections::HashMap<(String, bool), Vec<u8>>>,
}

impl LiveLines {
    pub fn new(redactor: crate::secrets::Redactor) -> LiveLines {
        LiveLines {
            redactor,
            partial: Default::default(),
        }
    }

    pub fn push(&self, id: &str, bytes: &[u8], is_out: bool) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        let buf = partial.entry((id.to_string(), is_out)).or_default();
        buf.extend_from_slice(bytes);
        while let Some(end) = buf.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = buf.drain(..=end).collect();
            self.print(id, &line[..end], is_out);
        }
    }

    /// Print what is left without a final newline.
    pub fn finish(&self) {
        let Ok(mut partial) = self.partial.lock() else {
            return;
        };
        for ((id, is_out), rest) in partial.drain() {
            if !rest.is_empty() {
                self.print(&id, &rest, is_out);
            }
        }
    }

    fn print(&self, id: &str, line: &[u8], is_out: bool) {
        let text = self.redactor.scrub(&String::from_utf8_lossy(line));
        let mark = if is_out { "|" } else { "!" };
        err_line(&format!("[{id}]{mark} {text}"));
    }
}
