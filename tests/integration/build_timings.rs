//! `--timings` (a self-contained HTML page, opened here in headless Chromium) and
//! `--profile` (Chrome's trace event format).

use crate::common;

use common::{counted, Workspace};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Command;

/// 1,000 nodes: a chain of echo nodes with fan-out, a batch of 12 shell items, a shell
/// node that fails and one that depends on it (skipped).
fn thousand_nodes() -> Value {
    let mut nodes = Vec::new();
    for i in 0..996 {
        let message = if i == 0 {
            json!("start")
        } else {
            json!(format!("${{e{}.echo}}-{i}", (i - 1) / 2))
        };
        nodes.push(json!({"id": format!("e{i}"), "type": "echo", "params": {"message": message}}));
    }
    nodes.push(json!({"id": "items", "type": "shell",
        "batch": {"items": (0..12).collect::<Vec<u32>>(), "parallel": true, "max_concurrent": 4},
        "params": {"command": "echo item ${item}"}}));
    nodes.push(
        json!({"id": "slow", "type": "shell", "params": {"command": "sleep 0.2; echo slow"}}),
    );
    nodes.push(
        json!({"id": "broken", "type": "shell", "params": {"command": "echo no >&2; exit 3"}}),
    );
    nodes.push(json!({"id": "after_broken", "type": "shell",
        "params": {"command": "echo ${broken.stdout}"}}));
    json!({ "nodes": nodes })
}

/// Where screenshots are kept for people to look at.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/test-artifacts");
    std::fs::create_dir_all(&dir).expect("create target/test-artifacts");
    dir
}

/// Run headless Chromium on `page` with `args`; its stdout and stderr.
fn chromium(page: &Path, args: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().expect("chromium profile dir");
    let out = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .env("HOME", profile.path())
        .output()
        .expect("chromium runs (Debian's `chromium` package; .ci/run installs it)");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value of attribute `name` in the first tag that opens with `tag`.
fn attribute(dom: &str, tag: &str, name: &str) -> Option<String> {
    let start = dom.find(tag)?;
    let end = start + dom[start..].find('>')?;
    let open = &dom[start..end];
    let at = open.find(&format!(" {name}=\""))? + name.len() + 3;
    let len = open[at..].find('"')?;
    Some(open[at..at + len].to_string())
}

#[test]
fn a_thousand_node_build_with_a_batch_and_a_failure_renders_in_chromium() {
    let ws = Workspace::new().workflow(thousand_nodes());
    let r = ws.build_text(&["--timings=timings.html", "--jobs", "2"]);
    r.assert_code(1);
    assert!(r.stderr.contains("timings: timings.html"), "{r}");
    let page = ws.file("timings.html");
    let html = ws.read("timings.html");
    assert!(html.len() < 2 * 1024 * 1024, "{} bytes", html.len());
    // Self-contained: nothing is fetched.
    for outside in ["src=\"http", "href=\"http", "<link", "@import", "src=\"//"] {
        assert!(!html.contains(outside), "the page loads {outside}");
    }
    assert_eq!(html.matches("class=\"bar node ").count(), 1000);
    assert_eq!(html.matches("class=\"bar item ").count(), 12);
    assert!(html.contains("class=\"bar node s-failed\" data-id=\"broken\""));
    assert!(html.contains("class=\"bar node s-skipped\" data-id=\"after_broken\""));
    assert!(html.contains("<th>cache hit rate</th><td>0.0% (0 of 999)</td>"));

    let (dom, log) = chromium(&page, &["--dump-dom"]);
    assert_eq!(
        attribute(&dom, "<body", "data-ready").as_deref(),
        Some("1"),
        "the page's script did not run to its end\n{log}"
    );
    assert_eq!(attribute(&dom, "<html", "data-errors"), None, "{log}");
    assert_eq!(
        attribute(&dom, "<body", "data-bars").as_deref(),
        Some("1000")
    );
    assert_eq!(
        attribute(&dom, "<body", "data-items").as_deref(),
        Some("12")
    );
    for line in log.lines().filter(|l| l.contains("CONSOLE")) {
        assert!(!line.contains("Uncaught"), "console error: {line}");
    }

    let shot = artifacts().join("timings-1000-nodes.png");
    let _ = std::fs::remove_file(&shot);
    let (_, log) = chromium(
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1300,1600",
        ],
    );
    let size = std::fs::metadata(&shot)
        .map(|m| m.len())
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{log}", shot.display()));
    assert!(size > 10_000, "a {size}-byte screenshot is blank");
}

#[test]
fn without_a_file_the_page_goes_under_the_cache_directory_and_shows_the_hits() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "a", "type": "shell", "params": {"command": counted("a", "sleep 0.1; echo a")}},
            {"id": "b", "type": "shell", "params": {"command": "echo ${a.stdout} b"}}
        ]
    }));
    ws.build(&[]).assert_ok();
    let r = ws.build_text(&["--timings"]);
    r.assert_ok();
    let shown = r
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("timings: "))
        .unwrap_or_else(|| panic!("no timings path printed: {r}"));
    let path = PathBuf::from(shown);
    assert!(
        path.starts_with(ws.cache_dir().join("timings")),
        "{}",
        path.display()
    );
    let html = std::fs::read_to_string(&path).expect("the page is where it says");
    assert!(
        html.contains("<th>cache hit rate</th><td>100.0% (2 of 2)</td>"),
        "{html}"
    );
    // `a` took at least 100 ms when it ran; the cache saved that.
    let saved = html
        .split("<th>time saved by the cache</th><td>")
        .nth(1)
        .and_then(|rest| rest.split("ms</td>").next())
        .and_then(|ms| ms.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("no saved time in ms: {html}"));
    assert!(saved >= 100, "saved {saved} ms");
    assert_eq!(ws.count("a"), 1);
}

/// The events of a Chrome trace, each checked for the format's required fields.
fn complete_events(doc: &Value) -> Vec<&Value> {
    let events = doc["traceEvents"].as_array().expect("traceEvents array");
    for e in events {
        let ph = e["ph"].as_str().expect("every event has ph");
        assert!(e["pid"].is_u64() && e["tid"].is_u64(), "pid/tid: {e}");
        assert!(e["name"].is_string(), "name: {e}");
        if ph == "X" {
            assert!(e["ts"].is_u64(), "ts: {e}");
            assert!(e["dur"].is_u64(), "dur: {e}");
        } else {
            assert_eq!(ph, "M", "only complete and metadata events: {e}");
            assert!(e["args"]["name"].is_string(), "{e}");
        }
    }
    events.iter().filter(|e| e["ph"] == "X").collect()
}

#[test]
fn the_profile_has_one_complete_event_per_node_that_ran() {
    let doc = json!({
        "nodes": [
            {"id": "gen", "type": "shell", "params": {"command": "echo ${word}"}},
            {"id": "upper", "type": "shell", "params": {"command": "tr a-z A-Z", "stdin": "${gen.stdout}"}},
            {"id": "side", "type": "shell", "params": {"command": "echo side"}},
            {"id": "each", "type": "shell", "batch": {"items": ["x", "y"]},
             "params": {"command": "echo ${item}"}}
        ],
        "inputs": {"word": {"type": "string"}}
    });
    let ws = Workspace::new().workflow(doc);
    ws.build(&["word=hi", "--profile", "first.json"])
        .assert_ok();
    let first: Value = serde_json::from_str(&ws.read("first.json")).unwrap();
    let nodes = |doc: &Value, status: &str| -> Vec<String> {
        let mut ids: Vec<String> = complete_events(doc)
            .into_iter()
            .filter(|e| e["cat"] == "node" && e["args"]["status"] == status)
            .map(|e| e["name"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    assert_eq!(nodes(&first, "ran"), ["each", "gen", "side", "upper"]);
    let items: Vec<&Value> = complete_events(&first)
        .into_iter()
        .filter(|e| e["cat"] == "item")
        .collect();
    assert_eq!(items.len(), 2);
    // Complete events on one lane never overlap (the viewers need them to nest).
    let mut by_lane: std::collections::BTreeMap<u64, Vec<(u64, u64)>> = Default::default();
    for e in complete_events(&first)
        .into_iter()
        .filter(|e| e["cat"] != "attempt")
    {
        let (ts, dur) = (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap());
        by_lane
            .entry(e["tid"].as_u64().unwrap())
            .or_default()
            .push((ts, ts + dur));
    }
    for spans in by_lane.values_mut() {
        spans.sort();
        assert!(spans.windows(2).all(|w| w[0].1 <= w[1].0), "{spans:?}");
    }

    // A new input: only what reads it, and what depends on that, ran.
    ws.build(&["word=ho", "--profile", "second.json"])
        .assert_ok();
    let second: Value = serde_json::from_str(&ws.read("second.json")).unwrap();
    assert_eq!(nodes(&second, "ran"), ["gen", "upper"]);
    assert_eq!(nodes(&second, "cached"), ["each", "side"]);
}

#[test]
fn the_page_shows_the_tokens_of_llm_nodes_as_their_usage_reports_them() {
    use crate::stub::{anthropic_check, anthropic_message, Reply, Request, Stub};
    let stub = Stub::start(|req: &Request, _| {
        anthropic_check(req)
            .unwrap_or_else(|| Reply::json(200, &anthropic_message("claude-haiku-4-5", "hi")))
    });
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "ask", "type": "llm", "params": {"prompt": "say hi"}},
            {"id": "each", "type": "llm", "batch": {"items": ["a", "b"]},
             "params": {"prompt": "say ${item}"}},
            {"id": "plain", "type": "shell", "params": {"command": "echo plain"}}
        ]
    }));
    let r = ws
        .cmd()
        .text()
        .arg("--timings=t.html")
        .env("ANTHROPIC_BASE_URL", stub.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        .run();
    r.assert_ok();
    assert_eq!(stub.count(), 3);
    let html = ws.read("t.html");
    // The stub reports 11 tokens in and 7 out per call, from claude-haiku-4-5 ($1 / $5
    // per million): $0.000046 a call.
    assert!(
        html.contains("<th>LLM tokens</th><td>33 in, 21 out, $0.0001</td>"),
        "{html}"
    );
    assert!(html.contains("<th>tokens in</th><th>tokens out</th><th>cost</th>"));
    let row = |id: &str| {
        html.split(&format!("<tr data-id=\"{id}\">"))
            .nth(1)
            .and_then(|rest| rest.split("</tr>").next())
            .unwrap_or_else(|| panic!("no row for {id}"))
            .to_string()
    };
    assert!(
        row("ask").contains("<td>11</td><td>7</td><td>$0.000046</td>"),
        "{}",
        row("ask")
    );
    assert!(
        row("each").contains("<td>22</td><td>14</td><td>$0.000092</td>"),
        "{}",
        row("each")
    );
    assert!(
        row("plain").contains("<td></td><td></td><td></td>"),
        "{}",
        row("plain")
    );
}

#[test]
fn a_repaired_build_shows_every_attempt_and_what_the_repair_fixed() {
    use crate::stub::{anthropic_check, anthropic_message, Reply, Request, Stub};
    let workflow = |field: &str| {
        json!({
            "nodes": [
                {"id": "get", "type": "shell",
                 "params": {"command": "echo '{\"user\": {\"name\": \"Ada\"}}'"}},
                {"id": "show", "type": "shell",
                 "params": {"command": format!("echo Hello ${{get.stdout.user.{field}}}")}}
            ]
        })
    };
    let reply = format!("```json\n{}\n```", workflow("name"));
    let stub = Stub::start(move |req: &Request, _| {
        anthropic_check(req)
            .unwrap_or_else(|| Reply::json(200, &anthropic_message("claude-haiku-4-5", &reply)))
    });
    let ws = Workspace::new().workflow(workflow("fullname"));
    let out = ws
        .pflow()
        .args([
            "build",
            "workflow.json",
            "--timings=t.html",
            "--profile",
            "p.json",
        ])
        .arg("--cache-dir")
        .arg(ws.cache_dir())
        .env("ANTHROPIC_BASE_URL", stub.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        .output();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(stub.count(), 1);
    let html = ws.read("t.html");
    assert!(html.contains("attempt 1 (failed)"), "{html}");
    assert!(html.contains("attempt 2 (succeeded)"), "{html}");
    assert!(html.contains("<title>repair between attempts 1 and 2: "));
    assert!(html.contains("class=\"bar node s-failed"));
    let second = html
        .split("data-id=\"show\" data-attempt=\"2\"")
        .next()
        .and_then(|before| before.rsplit("<rect ").next())
        .unwrap_or_default();
    assert!(second.contains("s-repaired"), "{second}");
    assert!(
        html.contains("<th>attempts</th><td>2 (repaired: show)</td>"),
        "{html}"
    );
    // The profile has both attempts too, the second after the first.
    let profile: Value = serde_json::from_str(&ws.read("p.json")).unwrap();
    let attempts: Vec<(u64, u64)> = complete_events(&profile)
        .into_iter()
        .filter(|e| e["cat"] == "attempt")
        .map(|e| (e["ts"].as_u64().unwrap(), e["dur"].as_u64().unwrap()))
        .collect();
    assert_eq!(attempts.len(), 2, "{profile}");
    assert!(
        attempts[0].0 + attempts[0].1 <= attempts[1].0,
        "{attempts:?}"
    );
}

#[test]
fn a_profile_or_page_into_a_missing_folder_is_refused_before_the_build() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "a", "type": "shell", "params": {"command": counted("a", "echo a")}}]
    }));
    let r = ws.build_text(&["--profile", "no/such/p.json", "--timings=gone/t.html"]);
    r.assert_code(2);
    assert!(
        r.stderr
            .contains("--profile no/such/p.json: the folder no/such does not exist"),
        "{r}"
    );
    assert!(
        r.stderr
            .contains("--timings gone/t.html: the folder gone does not exist"),
        "{r}"
    );
    assert_eq!(ws.count("a"), 0);
    assert!(!ws.exists("no") && !ws.exists("gone"));
}
