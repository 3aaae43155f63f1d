//! What a build tells the user: progress on stderr, outputs on stdout, or one JSON
//! document; and the `--trace` file.

use crate::executor::{NodeReport, Outcome, Status};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use std::io::IsTerminal;
use std::time::Duration;

/// Live progress on stderr: a spinner on a terminal, plain lines otherwise.
pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    explain: bool,
    running: Vec<String>,
    /// Plain-mode lines not yet written: a large build writes them in a few syscalls.
    pending: String,
}

impl Progress {
    /// `quiet` for JSON output (stderr stays clean for the caller).
    pub fn new(total: usize, quiet: bool, explain: bool) -> Progress {
        let interactive =
            !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none();
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
            quiet,
            explain,
            running: Vec::new(),
            pending: String::new(),
        }
    }

    pub fn started(&mut self, id: &str) {
        self.running.push(id.to_string());
        if let Some(bar) = &self.bar {
            bar.set_message(format!("running {}", self.running.join(", ")));
        }
    }

    pub fn finished(&mut self, r: &NodeReport) {
        self.running.retain(|x| x != &r.id);
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => {
                let mut line = String::new();
                write_node_line(&mut line, r, self.explain);
                bar.inc(1);
                bar.set_message(format!("running {}", self.running.join(", ")));
                bar.println(line);
            }
            None => {
                // Straight into the buffer: a no-op build of 10,000 nodes prints 10,000
                // lines, and a string per line was a measurable part of it.
                write_node_line(&mut self.pending, r, self.explain);
                self.pending.push('\n');
                if self.pending.len() > 64 * 1024 {
                    self.flush();
                }
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
        if self.quiet {
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
        self.flush();
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
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
    let status = r.status.as_str();
    out.push_str("  ");
    out.push_str(status);
    for _ in status.len()..9 {
        out.push(' ');
    }
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
            json!({
                "id": n.id,
                "type": n.node_type,
                "status": n.status.as_str(),
                "executions": n.executions,
                "duration_ms": n.duration.as_millis() as u64,
                "key": n.key.map(|k| k.hex()),
                "reason": n.reason,
            })
        })
        .collect()
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
            "start_ms": n.start_ms,
            "end_ms": n.end_ms,
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
