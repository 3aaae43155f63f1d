//! What a build shows on the terminal: steps' output (`--output-logs`, replayed from the
//! cache for reused steps), `pflow log`, `-v` live lines, `-q`, collapsed lines for
//! reused nodes of large builds, and colour.

use crate::common::Workspace;
use serde_json::{json, Value};

fn warner() -> Workspace {
    Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string", "required": false, "default": "tok-SECRET-9876"}},
        "nodes": [
            {"id": "warn", "type": "shell", "params": {
                "command": "echo \"warning: deprecated flag (token ${api_token})\" >&2; echo result"}},
            {"id": "still", "type": "shell", "params": {"command": "echo fine"}}
        ],
        "outputs": {"r": {"source": "${warn.stdout}"}}
    }))
}

#[test]
fn a_step_that_writes_to_stderr_shows_it_and_replays_it_from_the_cache() {
    let ws = warner();
    let first = ws.build_text(&[]);
    first.assert_ok();
    assert!(
        first
            .stderr
            .contains("    stderr:\n    | warning: deprecated flag (token <redacted>)"),
        "{first}"
    );
    assert!(
        !first.stderr.contains("| fine"),
        "stdout is not shown by default: {first}"
    );

    let second = ws.build_text(&[]);
    second.assert_ok();
    assert!(second.stderr.contains("cached   warn"), "{second}");
    assert!(
        second.stderr.contains(
            "stderr (from its cached run):\n    | warning: deprecated flag (token <redacted>)"
        ),
        "{second}"
    );
    assert!(
        !second.stderr.contains("tok-SECRET-9876") && !first.stderr.contains("tok-SECRET-9876")
    );

    let full = ws.build_text(&["--output-logs", "full"]);
    assert!(
        full.stderr
            .contains("stdout (from its cached run):\n    | fine"),
        "{full}"
    );
    let new = ws.build_text(&["--output-logs", "new"]);
    assert!(
        !new.stderr.contains("warning: deprecated"),
        "new shows only steps that ran: {new}"
    );
    let none = ws.build_text(&["--output-logs", "none", "--force"]);
    assert!(!none.stderr.contains("warning: deprecated"), "{none}");
}

#[test]
fn pflow_log_shows_a_nodes_last_output() {
    let ws = warner();
    ws.build(&[]).assert_ok();
    let out = ws
        .pflow()
        .args(["log", "workflow.json", "warn", "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("warn: ran"), "{text}");
    assert!(
        text.contains(
            "--- stdout\nresult\n--- stderr\nwarning: deprecated flag (token <redacted>)"
        ),
        "{text}"
    );
    let missing = ws
        .pflow()
        .args(["log", "workflow.json", "nope", "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    assert_eq!(missing.status.code(), Some(2));

    // A logs file edited by hand, a character of two bytes across the twelfth: the key
    // is shortened by characters, not cut inside one (which panicked).
    let state = ws.cache_dir().join("state");
    let logs = std::fs::read_dir(&state)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".logs.json"))
        .expect("a logs file");
    let mut doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&logs).unwrap()).unwrap();
    let mut keys = 0;
    let mut mark = |v: &mut serde_json::Value| {
        if let Some(k) = v.get_mut("key") {
            *k = serde_json::json!("abcdefghijké-rest");
            keys += 1;
        }
    };
    match doc.get_mut("nodes") {
        Some(serde_json::Value::Object(m)) => m.values_mut().for_each(&mut mark),
        _ => panic!("no nodes in {doc}"),
    }
    assert!(keys > 0, "no key to edit in {doc}");
    std::fs::write(&logs, doc.to_string()).unwrap();
    let edited = ws
        .pflow()
        .args(["log", "workflow.json", "warn", "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    let text = String::from_utf8_lossy(&edited.stdout);
    assert_eq!(
        edited.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&edited.stderr)
    );
    assert!(text.starts_with("warn: ran (key abcdefghijké)"), "{text}");
}

/// The name the MCP server gives an inline workflow's records (`PFLOW_RECORDS_AS`) is
/// the one `pflow log` finds them by, and the only one: the file's own name finds none.
#[test]
fn pflow_log_reads_records_by_the_name_their_build_was_given() {
    let ws = warner();
    ws.cmd()
        .env("PFLOW_RECORDS_AS", "inline-7")
        .run()
        .assert_ok();
    let log = |named: bool| {
        let mut p = ws
            .pflow()
            .args(["log", "workflow.json", "warn", "--cache-dir"])
            .arg(ws.cache_dir());
        if named {
            p = p.env("PFLOW_RECORDS_AS", "inline-7");
        }
        p.output()
    };
    let found = log(true);
    let text = String::from_utf8_lossy(&found.stdout);
    assert_eq!(
        found.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&found.stderr)
    );
    assert!(text.contains("--- stdout\nresult"), "{text}");
    let by_path = log(false);
    assert_eq!(
        by_path.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&by_path.stdout)
    );
}

#[test]
fn verbose_streams_each_line_with_its_node_and_quiet_prints_only_outputs() {
    let ws = warner();
    let v = ws.build_text(&["-v"]);
    v.assert_ok();
    assert!(v.stderr.contains("[warn]| result"), "{v}");
    assert!(
        v.stderr
            .contains("[warn]! warning: deprecated flag (token <redacted>)"),
        "{v}"
    );
    assert!(v.stderr.contains("[still]| fine"), "{v}");

    let q = ws.build_text(&["-q", "--force"]);
    q.assert_ok();
    assert_eq!(q.stdout.trim(), "result");
    assert_eq!(q.stderr.trim(), "", "{q}");

    ws.edit_workflow(|doc| doc["nodes"][1]["params"]["command"] = json!("echo broken >&2; exit 4"));
    let failed = ws.build_text(&["-q"]);
    assert_eq!(failed.code, 1);
    assert!(
        failed.stderr.contains("failed   still") && failed.stderr.contains("broken"),
        "{failed}"
    );
    assert!(!failed.stderr.contains("cached   warn"), "{failed}");
}

#[test]
fn a_large_build_collapses_reused_nodes_into_one_line() {
    let nodes: Vec<Value> = (0..40)
        .map(|i| json!({"id": format!("n{i}"), "type": "echo", "params": {"message": i}}))
        .collect();
    let ws = Workspace::new().workflow(json!({"nodes": nodes}));
    ws.build(&[]).assert_ok();
    let again = ws.build_text(&[]);
    again.assert_ok();
    assert_eq!(again.stderr.matches("cached   n").count(), 0, "{again}");
    assert!(
        again.stderr.contains("cached   40 nodes (-v lists them)"),
        "{again}"
    );
    assert!(again.stderr.contains("40 nodes: 40 cached"), "{again}");
    let verbose = ws.build_text(&["-v"]);
    assert_eq!(
        verbose.stderr.matches("cached   n").count(),
        40,
        "{verbose}"
    );
}

#[test]
fn colour_follows_the_flag_and_the_environment() {
    let ws = warner();
    ws.build(&[]).assert_ok();
    let esc = "\u{1b}[";
    let always = ws.build_text(&["--color", "always"]);
    assert!(
        always.stderr.contains(&format!("{esc}2mcached{esc}0m")),
        "{always}"
    );
    // Not a terminal: no colour, unless forced.
    assert!(!ws.build_text(&[]).stderr.contains(esc));
    let forced = ws.cmd().text().env("CLICOLOR_FORCE", "1").run();
    assert!(forced.stderr.contains(esc), "{forced}");
    let both = ws
        .cmd()
        .text()
        .env("CLICOLOR_FORCE", "1")
        .env("NO_COLOR", "1")
        .run();
    assert!(
        !both.stderr.contains(esc),
        "NO_COLOR wins over CLICOLOR_FORCE: {both}"
    );
    let never = ws
        .cmd()
        .text()
        .env("CLICOLOR_FORCE", "1")
        .arg("--color")
        .arg("never")
        .run();
    assert!(!never.stderr.contains(esc));
}

/// Logs are redacted whole, then cut to their tail: a cut first could keep most of a
/// secret that no longer matches; a secret of several lines is redacted line by line
/// in `-v`'s live output.
#[test]
fn logs_never_keep_part_of_a_secret() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "a", "type": "shell", "reads_env": ["ONE_TOKEN", "PEM_TOKEN"],
         "params": {"command": "printf %s \"$ONE_TOKEN\"; head -c 4080 /dev/zero | tr '\\0' z; echo; printf '%s\\n' \"$PEM_TOKEN\" >&2"}}
    ]}));
    let r = ws
        .cmd()
        .text()
        .args(&["-v"])
        .env("ONE_TOKEN", "SECRETVALUE123456")
        .env("PEM_TOKEN", "line1-abcdef\nline2-ghijkl")
        .run();
    r.assert_ok();
    let full = ws
        .cmd()
        .text()
        .args(&["--output-logs", "full"])
        .env("ONE_TOKEN", "SECRETVALUE123456")
        .env("PEM_TOKEN", "line1-abcdef\nline2-ghijkl")
        .run();
    let mut shown = format!("{}{}{}", r.stderr, full.stderr, full.stdout);
    // The kept logs (the node's own cached outputs hold what it printed: a later build
    // must get exactly that result).
    let logs: Vec<_> = crate::common::files_under(ws.cache_dir())
        .into_iter()
        .filter(|f| f.to_string_lossy().ends_with("logs.json"))
        .collect();
    assert!(!logs.is_empty(), "no logs kept");
    for f in logs {
        shown.push_str(&String::from_utf8_lossy(
            &std::fs::read(&f).unwrap_or_default(),
        ));
    }
    for part in ["ECRETVALUE12", "line1-abcdef", "line2-ghijkl"] {
        assert!(!shown.contains(part), "{part} shown:\n{shown}");
    }
}

#[test]
fn a_json_build_lists_the_validation_warnings_a_text_build_prints() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "a", "type": "shell", "params": {"command": "echo hi", "colour": "blue"}}]
    }));
    let text = ws.cmd().text().run();
    text.assert_ok();
    let line = text
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("warning: "))
        .expect("a warning line");
    assert!(line.contains("colour"), "{text}");
    let first = ws.build(&[]);
    first.assert_ok();
    assert_eq!(first.doc()["warnings"], json!([line]), "{first}");
    // The same from the no-op record.
    let again = crate::build_noop::debug_build(&ws, &[]);
    crate::build_noop::assert_served(&again);
    assert_eq!(again.doc()["warnings"], json!([line]), "{again}");
}
