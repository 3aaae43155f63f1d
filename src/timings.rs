//! `--timings`: a self-contained HTML page of where a build's time went, in the spirit
//! of `cargo build --timings`.
//!
//! One bar per node (and, grouped under a batch node, one per item) on a time axis,
//! coloured by status (ran, cached, restored, failed, repaired, skipped); the critical
//! path outlined; the number of nodes in progress over time; the cache hit rate and the
//! time the cache saved; LLM tokens per node; and for a repaired build every attempt on
//! the same axis. Everything is inline (CSS, SVG, a little script): no network, no
//! external file, so the page opens anywhere and can be attached to a CI run.

use crate::cache::Cache;
use crate::executor::{NodeReport, Status};
use crate::timeline::{Attempt, Timeline};
use serde_json::Value;
use std::collections::HashSet;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// Where the chart's time axis starts, after the labels (px).
const LABEL_W: f64 = 280.0;
/// The time axis's width (px).
const CHART_W: f64 = 960.0;
const NODE_ROW: f64 = 16.0;
const ITEM_ROW: f64 = 10.0;
const AXIS_H: f64 = 24.0;
/// How many pages `<cache>/timings/` keeps (the oldest go first).
const KEPT_PAGES: usize = 20;

/// LLM usage of one node (summed over a batch's items), and its cost in USD where the
/// model has a price ([`crate::llm::price`]; 0 otherwise).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cost: f64,
}

/// The default page for run `run_id`: `<cache>/timings/<run_id>.html`.
pub fn default_path(cache_root: &Path, run_id: &str) -> PathBuf {
    crate::cache::layout::timings_dir(cache_root).join(format!("{run_id}.html"))
}

/// Write the page atomically. In the default directory (made when missing), keep only
/// the newest pages; a path the user gave must be in a folder that exists.
pub fn write(path: &Path, page: &str, cache_root: &Path) -> std::io::Result<()> {
    let dir = crate::cache::layout::timings_dir(cache_root);
    let default = path.parent() == Some(dir.as_path());
    if default {
        std::fs::create_dir_all(&dir)?;
    }
    crate::fsutil::write_atomic(path, page.as_bytes())?;
    if default {
        prune(&dir);
    }
    Ok(())
}

/// Drop the oldest pages beyond [`KEPT_PAGES`] (run ids start with the time in hex, so
/// names sort by age).
fn prune(dir: &Path) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    let mut pages: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "html"))
        .collect();
    if pages.len() <= KEPT_PAGES {
        return;
    }
    pages.sort_by_key(|p| {
        let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
        let name = name.unwrap_or_default();
        (name.len(), name)
    });
    for old in &pages[..pages.len() - KEPT_PAGES] {
        let _ = std::fs::remove_file(old);
    }
}

/// Tokens of each node of the last attempt whose type reports `llm_usage`, read from its
/// cached outputs; nodes without usage get none.
pub fn tokens_from_cache(t: &Timeline, cache: &Cache) -> Vec<Option<Tokens>> {
    let Some(last) = t.last() else {
        return Vec::new();
    };
    last.nodes
        .iter()
        .map(|n| {
            // Only types that report usage: loading every node's outputs would cost.
            let reports_usage = crate::nodes::lookup(&n.node_type)
                .is_some_and(|spec| spec.output("llm_usage").is_some());
            if !reports_usage {
                return None;
            }
            let entry = cache.peek(&n.key?)?;
            let outputs = cache.load_outputs(&entry).ok()?;
            usage_of(&outputs)
        })
        .collect()
}

/// `llm_usage` of a node's outputs, or the sum over a batch's `results`.
fn usage_of(outputs: &Value) -> Option<Tokens> {
    let u = crate::llm::price::TokenUse::of_outputs(outputs)?;
    Some(Tokens {
        input: u.input_tokens,
        output: u.output_tokens,
        cost: u.cost_usd().unwrap_or(0.0),
    })
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn ms(us: u64) -> String {
    crate::report::format_duration(std::time::Duration::from_micros(us))
}

/// The class a node's bar gets: its status, or `repaired`.
fn status_class(n: &NodeReport, repaired: &HashSet<&str>, last: bool) -> &'static str {
    if last && repaired.contains(n.id.as_str()) {
        return "repaired";
    }
    n.status.as_str()
}

/// The page.
pub fn page(t: &Timeline, workflow: &str, tokens: &[Option<Tokens>]) -> String {
    let total_us = t.end_us().max(1);
    let x = |us: u64| LABEL_W + us as f64 / total_us as f64 * CHART_W;
    let repaired: HashSet<&str> = t.repaired().into_iter().collect();
    let last = t.last();

    // Summary figures, from the final attempt.
    let count = |s: Status| last.map_or(0, |a| a.nodes.iter().filter(|n| n.status == s).count());
    let (ran, cached, restored, failed, skipped) = (
        count(Status::Ran),
        count(Status::Cached),
        count(Status::Restored),
        count(Status::Failed),
        count(Status::Skipped),
    );
    let decided = ran + cached + restored + failed;
    let hit_rate = if decided == 0 {
        0.0
    } else {
        (cached + restored) as f64 * 100.0 / decided as f64
    };
    let saved: u64 = last.map_or(0, |a| a.saved_us.iter().sum());
    let total_tokens = tokens
        .iter()
        .flatten()
        .fold(Tokens::default(), |a, t| Tokens {
            input: a.input + t.input,
            output: a.output + t.output,
            cost: a.cost + t.cost,
        });
    let has_tokens = tokens.iter().any(Option::is_some);
    let success = last.is_some_and(|a| a.success);

    let mut h = String::with_capacity(64 * 1024);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    let _ = writeln!(h, "<title>pflow timings: {}</title>", esc(workflow));
    // First, so that an error anywhere below is recorded where a reader (or a test
    // driving a headless browser) sees it.
    h.push_str(concat!(
        "<script>window.pflowErrors=[];window.onerror=function(m,s,l,c){",
        "window.pflowErrors.push(m+' at '+l+':'+c);",
        "document.documentElement.setAttribute('data-errors',String(window.pflowErrors.length));};</script>\n"
    ));
    h.push_str(STYLE);
    h.push_str("</head>\n<body data-ready=\"0\">\n");
    let _ = writeln!(
        h,
        "<h1>pflow build timings: {}</h1>\n<p class=\"sub\">run {} · {} · {}</p>",
        esc(workflow),
        esc(&t.run_id),
        if success { "succeeded" } else { "failed" },
        ms(total_us)
    );

    // Figures.
    h.push_str("<table class=\"figures\">\n");
    let mut figure = |name: &str, value: String| {
        let _ = writeln!(h, "<tr><th>{name}</th><td>{value}</td></tr>");
    };
    figure("wall time", ms(total_us));
    figure(
        "nodes",
        format!(
            "{} ({ran} ran, {cached} cached, {restored} restored, {failed} failed, {skipped} skipped)",
            last.map_or(0, |a| a.nodes.len())
        ),
    );
    figure(
        "cache hit rate",
        format!("{hit_rate:.1}% ({} of {decided})", cached + restored),
    );
    figure("time saved by the cache", ms(saved));
    if t.attempts.len() > 1 {
        figure(
            "attempts",
            format!(
                "{} (repaired: {})",
                t.attempts.len(),
                if repaired.is_empty() {
                    "none".to_string()
                } else {
                    let mut r: Vec<&str> = repaired.iter().copied().collect();
                    r.sort_unstable();
                    esc(&r.join(", "))
                }
            ),
        );
    }
    if has_tokens {
        figure(
            "LLM tokens",
            format!(
                "{} in, {} out, {}",
                total_tokens.input,
                total_tokens.output,
                crate::llm::price::format_usd(total_tokens.cost)
            ),
        );
    }
    let critical: Vec<String> = last
        .map(|a| {
            a.critical_path()
                .iter()
                .filter_map(|&i| a.nodes.get(i))
                .map(|n| esc(&n.id))
                .collect()
        })
        .unwrap_or_default();
    figure(
        "critical path",
        if critical.is_empty() {
            "none".into()
        } else {
            critical.join(" → ")
        },
    );
    h.push_str("</table>\n");

    // Legend.
    h.push_str("<p class=\"legend\">");
    for s in ["ran", "cached", "restored", "failed", "repaired", "skipped"] {
        let _ = write!(h, "<span><i class=\"sw s-{s}\"></i>{s}</span>");
    }
    h.push_str("<span><i class=\"sw crit\"></i>critical path</span></p>\n");

    concurrency(&mut h, t, total_us, &x);
    gantt(&mut h, t, total_us, &x, &repaired);
    table(&mut h, t, tokens, has_tokens, &repaired);

    h.push_str(SCRIPT);
    h.push_str("</body></html>\n");
    h
}

/// Ticks for an axis over `total_us`: about eight round steps.
fn ticks(total_us: u64) -> Vec<u64> {
    let raw = (total_us / 8).max(1);
    let mag = 10u64.pow(raw.ilog10());
    let step = [1, 2, 5, 10]
        .iter()
        .map(|m| m * mag)
        .find(|s| *s >= raw)
        .unwrap_or(10 * mag);
    (0..=total_us / step).map(|k| k * step).collect()
}

fn axis(h: &mut String, total_us: u64, x: &dyn Fn(u64) -> f64, y: f64, height: f64) {
    for tick in ticks(total_us) {
        let _ = write!(
            h,
            "<line class=\"grid\" x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{y:.1}\" y2=\"{1:.1}\"/><text class=\"tick\" x=\"{0:.1}\" y=\"{2:.1}\">{3}</text>",
            x(tick),
            y + height,
            y + 14.0,
            ms(tick)
        );
    }
    h.push('\n');
}

/// How many nodes were in progress over time (all attempts on one axis), as a step
/// chart.
fn concurrency(h: &mut String, t: &Timeline, total_us: u64, x: &dyn Fn(u64) -> f64) {
    let mut edges: Vec<(u64, i64)> = Vec::new();
    for a in &t.attempts {
        for n in a.nodes.iter().filter(|n| n.status != Status::Skipped) {
            let (s, e) = (
                a.offset_us + n.start_us,
                a.offset_us + n.end_us.max(n.start_us),
            );
            edges.push((s, 1));
            edges.push((e, -1));
        }
    }
    // Ends before starts at one instant: a node handing over to its dependent is not
    // two in progress.
    edges.sort_unstable_by_key(|&(at, d)| (at, d));
    let mut level = 0i64;
    let mut peak = 0i64;
    let mut steps: Vec<(u64, i64)> = vec![(0, 0)];
    for (at, d) in edges {
        level += d;
        peak = peak.max(level);
        match steps.last_mut() {
            Some(last) if last.0 == at => last.1 = level,
            _ => steps.push((at, level)),
        }
    }
    let height = 90.0;
    let top = 8.0;
    let scale = if peak > 0 { height / peak as f64 } else { 0.0 };
    let y = |level: i64| top + height - level as f64 * scale;
    let _ = writeln!(
        h,
        "<h2>Nodes in progress</h2>\n<p class=\"sub\">at most {peak} at once</p>\n<svg id=\"concurrency\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{:.0}\">",
        LABEL_W + CHART_W + 20.0,
        top + height + AXIS_H
    );
    axis(h, total_us, x, top, height);
    let mut d = format!("M{:.1},{:.1}", x(0), y(0));
    let mut prev = 0i64;
    for &(at, level) in &steps {
        let _ = write!(d, " H{:.1} V{:.1}", x(at), y(prev));
        let _ = write!(d, " V{:.1}", y(level));
        prev = level;
    }
    let _ = write!(d, " H{:.1} V{:.1} Z", x(total_us), y(0));
    let _ = writeln!(
        h,
        "<path class=\"level\" d=\"{d}\"/><text class=\"label\" x=\"4\" y=\"{:.1}\">{peak} max</text></svg>",
        top + 12.0
    );
}

/// The chart: per attempt, one row per node and one per batch item.
fn gantt(
    h: &mut String,
    t: &Timeline,
    total_us: u64,
    x: &dyn Fn(u64) -> f64,
    repaired: &HashSet<&str>,
) {
    let rows: f64 = t
        .attempts
        .iter()
        .map(|a| {
            NODE_ROW * (a.nodes.len() + usize::from(t.attempts.len() > 1)) as f64
                + a.nodes
                    .iter()
                    .map(|n| n.items.len() as f64 * ITEM_ROW)
                    .sum::<f64>()
        })
        .sum();
    let height = AXIS_H + rows + 8.0;
    let _ = writeln!(
        h,
        "<h2>Nodes</h2>\n<p class=\"sub\">filter: <input id=\"filter\" placeholder=\"node id\"> <span id=\"shown\"></span></p>\n<svg id=\"gantt\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{:.0}\" height=\"{height:.0}\">",
        LABEL_W + CHART_W + 20.0
    );
    axis(h, total_us, x, 0.0, height);
    let mut y = AXIS_H;
    let count = t.attempts.len();
    for (k, a) in t.attempts.iter().enumerate() {
        let is_last = k + 1 == count;
        if count > 1 {
            let _ = writeln!(
                h,
                "<text class=\"attempt\" x=\"4\" y=\"{:.1}\">attempt {} ({})</text><rect class=\"span-attempt\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\"/>",
                y + 12.0,
                k + 1,
                if a.success { "succeeded" } else { "failed" },
                x(a.offset_us),
                y + 6.0,
                (x(a.offset_us + a.duration_us) - x(a.offset_us)).max(1.0)
            );
            if let Some(next) = t.attempts.get(k + 1) {
                let end = a.offset_us + a.duration_us;
                let _ = writeln!(
                    h,
                    "<rect class=\"repair\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"4\"><title>repair between attempts {} and {}: {}</title></rect>",
                    x(end),
                    y + 6.0,
                    (x(next.offset_us) - x(end)).max(1.0),
                    k + 1,
                    k + 2,
                    ms(next.offset_us.saturating_sub(end))
                );
            }
            y += NODE_ROW;
        }
        let critical: HashSet<usize> = a.critical_path().into_iter().collect();
        for (pos, n) in a.nodes.iter().enumerate() {
            node_row(
                h,
                a,
                n,
                y,
                x,
                status_class(n, repaired, is_last),
                critical.contains(&pos),
                k + 1,
            );
            y += NODE_ROW;
            for item in &n.items {
                let (s, e) = (
                    a.offset_us + item.start_us,
                    a.offset_us + item.end_us.max(item.start_us),
                );
                let _ = writeln!(
                    h,
                    "<g class=\"row item\" data-id=\"{id}\"><text class=\"label item\" x=\"16\" y=\"{ty:.1}\">{id}[{idx}]</text><rect class=\"bar item s-{st}\" x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\"><title>{id}[{idx}] {st} {dur}</title></rect></g>",
                    id = esc(&n.id),
                    idx = item.index,
                    st = item.status.as_str(),
                    ty = y + ITEM_ROW - 1.5,
                    bx = x(s),
                    by = y + 1.0,
                    bw = (x(e) - x(s)).max(1.0),
                    bh = ITEM_ROW - 2.0,
                    dur = ms(e - s),
                );
                y += ITEM_ROW;
            }
        }
    }
    h.push_str("</svg>\n");
}

#[allow(clippy::too_many_arguments)]
fn node_row(
    h: &mut String,
    a: &Attempt,
    n: &NodeReport,
    y: f64,
    x: &dyn Fn(u64) -> f64,
    class: &str,
    critical: bool,
    attempt: usize,
) {
    let (s, e) = (
        a.offset_us + n.start_us,
        a.offset_us + n.end_us.max(n.start_us),
    );
    let label: String = n.id.chars().take(38).collect();
    let why = match &n.error {
        Some(err) => format!("[{}] {}", err.category, err.message),
        None => n.reason.to_string(),
    };
    let why: String = why.chars().take(300).collect();
    let _ = writeln!(
        h,
        "<g class=\"row\" data-id=\"{id}\"><text class=\"label\" x=\"4\" y=\"{ty:.1}\">{lab}</text><rect class=\"bar node s-{class}{crit}\" data-id=\"{id}\" data-attempt=\"{attempt}\" x=\"{bx:.1}\" y=\"{by:.1}\" width=\"{bw:.1}\" height=\"{bh:.1}\"><title>{id} ({ty_}) {class} {dur}{sep}{why}</title></rect></g>",
        id = esc(&n.id),
        lab = esc(&label),
        ty = y + NODE_ROW - 4.0,
        crit = if critical { " crit" } else { "" },
        bx = x(s),
        by = y + 2.0,
        bw = (x(e) - x(s)).max(1.0),
        bh = NODE_ROW - 4.0,
        ty_ = esc(&n.node_type),
        dur = ms(e - s),
        sep = if why.is_empty() { "" } else { " — " },
        why = esc(&why),
    );
}

/// The final attempt's nodes as a table.
fn table(
    h: &mut String,
    t: &Timeline,
    tokens: &[Option<Tokens>],
    has_tokens: bool,
    repaired: &HashSet<&str>,
) {
    let Some(a) = t.last() else {
        return;
    };
    h.push_str("<h2>Details</h2>\n<table id=\"details\"><thead><tr><th>node</th><th>type</th><th>status</th><th>start</th><th>duration</th><th>saved</th>");
    if has_tokens {
        h.push_str("<th>tokens in</th><th>tokens out</th><th>cost</th>");
    }
    h.push_str("<th>reason</th></tr></thead><tbody>\n");
    for (pos, n) in a.nodes.iter().enumerate() {
        let class = status_class(n, repaired, true);
        let why = match &n.error {
            Some(err) => format!("[{}] {}", err.category, err.message),
            None => n.reason.to_string(),
        };
        let why: String = why.chars().take(300).collect();
        let _ = write!(
            h,
            "<tr data-id=\"{id}\"><td>{id}</td><td>{ty}</td><td><i class=\"sw s-{class}\"></i>{class}</td><td>{start}</td><td>{dur}</td><td>{saved}</td>",
            id = esc(&n.id),
            ty = esc(&n.node_type),
            start = ms(a.offset_us + n.start_us),
            dur = ms(n.end_us.saturating_sub(n.start_us)),
            saved = match a.saved_us.get(pos).copied().unwrap_or(0) {
                0 => String::new(),
                us => ms(us),
            },
        );
        if has_tokens {
            match tokens.get(pos).copied().flatten() {
                Some(tk) => {
                    let _ = write!(
                        h,
                        "<td>{}</td><td>{}</td><td>{}</td>",
                        tk.input,
                        tk.output,
                        crate::llm::price::format_usd(tk.cost)
                    );
                }
                None => h.push_str("<td></td><td></td><td></td>"),
            }
        }
        let _ = writeln!(h, "<td>{}</td></tr>", esc(&why));
    }
    h.push_str("</tbody></table>\n");
}

const STYLE: &str = r#"<style>
body{font:13px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:16px 24px;color:#222;background:#fff}
h1{font-size:20px;margin:0 0 2px}h2{font-size:16px;margin:20px 0 2px}.sub{color:#666;margin:0 0 8px}
table.figures th{text-align:left;font-weight:600;padding:1px 16px 1px 0}
.legend span{margin-right:14px}.sw{display:inline-block;width:12px;height:10px;margin-right:4px;vertical-align:-1px;border-radius:2px}
.sw.crit{background:#fff;border:2px solid #000;width:8px;height:6px}
.s-ran{fill:#4a86e8;background:#4a86e8}.s-cached{fill:#9ccc65;background:#9ccc65}.s-restored{fill:#26a69a;background:#26a69a}
.s-failed{fill:#e53935;background:#e53935}.s-repaired{fill:#fb8c00;background:#fb8c00}.s-skipped{fill:#bdbdbd;background:#bdbdbd}
svg{display:block;margin:4px 0}svg text{font-size:11px;fill:#333}text.tick{fill:#888;font-size:10px}text.label.item{fill:#777;font-size:9px}
text.attempt{font-weight:600}line.grid{stroke:#eee}path.level{fill:#c5d9f7;stroke:#4a86e8}
rect.crit{stroke:#000;stroke-width:1.5}rect.span-attempt{fill:#999}rect.repair{fill:#fb8c00}
g.row.dim{opacity:.15}g.row.sel rect{stroke:#000;stroke-width:2}
#details{border-collapse:collapse;margin-top:4px}#details td,#details th{border-bottom:1px solid #eee;padding:2px 10px 2px 0;text-align:left;vertical-align:top}
#details tr.sel{background:#fff3c4}#details tr.hidden{display:none}
</style>
"#;

const SCRIPT: &str = r#"<script>
(function(){
  var rows=document.querySelectorAll('#gantt g.row');
  var trs=document.querySelectorAll('#details tbody tr');
  var shown=document.getElementById('shown');
  function filter(q){
    var n=0;
    rows.forEach(function(g){var hit=!q||g.getAttribute('data-id').indexOf(q)>=0;g.classList.toggle('dim',!hit);if(hit&&!g.classList.contains('item'))n++;});
    trs.forEach(function(tr){tr.classList.toggle('hidden',!!q&&tr.getAttribute('data-id').indexOf(q)<0);});
    shown.textContent=q?(n+' matching'):'';
  }
  document.getElementById('filter').addEventListener('input',function(e){filter(e.target.value);});
  rows.forEach(function(g){g.addEventListener('click',function(){
    var id=g.getAttribute('data-id');
    rows.forEach(function(o){o.classList.toggle('sel',o.getAttribute('data-id')===id);});
    trs.forEach(function(tr){var hit=tr.getAttribute('data-id')===id;tr.classList.toggle('sel',hit);if(hit)tr.scrollIntoView({block:'nearest'});});
  });});
  document.body.setAttribute('data-bars',String(document.querySelectorAll('#gantt rect.bar.node').length));
  document.body.setAttribute('data-items',String(document.querySelectorAll('#gantt rect.bar.item').length));
  document.body.setAttribute('data-ready','1');
})();
</script>
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn usage_is_read_from_a_node_or_summed_over_a_batch() {
        let one = json!({"response": "x", "llm_usage": {"model": "m", "input_tokens": 7, "output_tokens": 2}});
        assert_eq!(
            usage_of(&one),
            Some(Tokens {
                input: 7,
                output: 2,
                cost: 0.0
            })
        );
        let batch = json!({"results": [
            {"llm_usage": {"input_tokens": 1, "output_tokens": 2}},
            {"llm_usage": {"input_tokens": 3, "output_tokens": 4}}]});
        assert_eq!(
            usage_of(&batch),
            Some(Tokens {
                input: 4,
                output: 6,
                cost: 0.0
            })
        );
        assert_eq!(usage_of(&json!({"stdout": "x"})), None);
    }

    #[test]
    fn ticks_are_round_and_cover_the_axis() {
        let t = ticks(1_000_000);
        assert_eq!(t.first(), Some(&0));
        assert!(t.len() >= 5 && t.len() <= 11, "{t:?}");
        assert!(t.windows(2).all(|w| w[1] - w[0] == 200_000), "{t:?}");
    }

    fn report(id: &str, status: Status, start_us: u64, end_us: u64) -> NodeReport {
        NodeReport {
            executions: 1,
            duration: std::time::Duration::from_micros(end_us - start_us),
            end_us,
            ..NodeReport::new(0, id, "shell", status, start_us)
        }
    }

    #[test]
    fn a_repaired_build_shows_both_attempts_and_the_node_the_repair_fixed() {
        let attempt = |offset_us: u64, success: bool, status: Status| Attempt {
            offset_us,
            duration_us: 1_000,
            success,
            nodes: vec![
                report(
                    "get",
                    if offset_us == 0 {
                        Status::Ran
                    } else {
                        Status::Cached
                    },
                    0,
                    500,
                ),
                report("show", status, 500, 900),
            ],
            deps: vec![vec![], vec![0]],
            saved_us: vec![0, 0],
        };
        let t = Timeline {
            run_id: "r".into(),
            attempts: vec![
                attempt(0, false, Status::Failed),
                attempt(5_000, true, Status::Ran),
            ],
        };
        let html = page(&t, "wf.json", &[None, None]);
        assert!(html.contains("attempt 1 (failed)") && html.contains("attempt 2 (succeeded)"));
        assert!(html.contains("<title>repair between attempts 1 and 2: 4ms</title>"));
        assert!(
            html.contains("class=\"bar node s-failed crit\" data-id=\"show\" data-attempt=\"1\"")
        );
        assert!(
            html.contains("class=\"bar node s-repaired crit\" data-id=\"show\" data-attempt=\"2\"")
        );
        assert!(html.contains("<th>attempts</th><td>2 (repaired: show)</td>"));
        // One bar per node per attempt.
        assert_eq!(html.matches("class=\"bar node ").count(), 4);
    }

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
    }
}
