//! `pflow build` on the command line: output formats, `-o`, `--trace`, inputs and stdin,
//! exit codes.

use crate::common;

use common::{counted, CacheArg, Workspace};
use serde_json::{json, Value};

fn greeting() -> Value {
    json!({
        "inputs": {
            "name": {"type": "string", "required": false, "default": "world",
                     "description": "Who to greet"}
        },
        "nodes": [
            {"id": "greet", "type": "shell",
             "params": {"command": counted("greet", "echo Hello, ${name}")}},
            {"id": "shout", "type": "shell",
             "params": {"command": counted("shout", "tr a-z A-Z"), "stdin": "${greet.stdout}"}},
            {"id": "count", "type": "shell",
             "params": {"command": "printf %s \"${shout.stdout}\" | wc -c"}}
        ],
        "outputs": {
            "message": {"source": "${shout.stdout}", "description": "the greeting"},
            "length": {"source": "${count.stdout} chars"}
        }
    })
}

#[test]
fn text_mode_prints_node_lines_and_summary_on_stderr_and_outputs_on_stdout() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build_text(&["name=bob"]);
    r.assert_ok();
    for id in ["greet", "shout", "count"] {
        let line = r
            .stderr
            .lines()
            .find(|l| l.contains(&format!(" {id} (shell)")))
            .unwrap_or_else(|| panic!("no line for {id}: {r}"));
        assert!(line.trim_start().starts_with("ran"), "{line}");
    }
    let summary = r.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("3 nodes: 0 cached, 3 ran, 0 failed in "),
        "{summary}"
    );
    assert!(r.stdout.contains("message: HELLO, BOB"), "{r}");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("length: ") && l.ends_with("10 chars")),
        "{r}"
    );
    assert!(!r.stdout.contains("ran"), "progress leaked to stdout: {r}");

    // Change one node's downstream only: mixed summary.
    ws.edit_workflow(|d| d["nodes"][2]["params"]["command"] = json!("echo 1"));
    let r = ws.build_text(&["name=bob"]);
    r.assert_ok();
    let summary = r.stderr.lines().last().unwrap();
    assert!(
        summary.starts_with("3 nodes: 2 cached, 1 ran, 0 failed in "),
        "{summary}"
    );
}

#[test]
fn output_key_prints_only_that_output() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build_text(&["-o", "message", "name=ada"]);
    r.assert_ok();
    assert_eq!(r.stdout, "HELLO, ADA\n");

    let j = ws.build(&["--output-key", "message", "name=ada"]);
    j.assert_ok();
    assert_eq!(j.doc()["outputs"], json!({"message": "HELLO, ADA"}));

    let bad = ws.build(&["-o", "mesage"]);
    bad.assert_code(2);
    assert!(
        bad.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("mesage"),
        "{bad}"
    );
}

#[test]
fn json_document_has_the_documented_shape() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build(&["name=bob"]);
    r.assert_ok();
    let doc = r.doc();
    assert_eq!(doc["outputs"]["message"], "HELLO, BOB");
    assert_eq!(doc["repair"], Value::Null);
    assert!(doc["duration_ms"].is_u64());
    assert_eq!(
        doc["stats"],
        json!({"total": 3, "ran": 3, "cached": 0, "restored": 0, "failed": 0, "skipped": 0})
    );
    let node = r.node("greet");
    assert_eq!(node["type"], "shell");
    assert_eq!(node["executions"], 1);
    assert!(node["duration_ms"].is_u64());
    assert_eq!(node["key"].as_str().unwrap().len(), 64);
    assert!(node["reason"].is_string());
    assert_eq!(r.stderr, "", "JSON mode keeps stderr clean");
}

#[test]
fn json_mode_prints_one_document_on_failure_and_on_invalid_input() {
    // Failure: exit 1, still one document (the helper parses stdout as one JSON value).
    let failing = Workspace::new().workflow(json!({
        "nodes": [{"id": "boom", "type": "shell", "params": {"command": "echo oops >&2; exit 4"}}]
    }));
    let r = failing.build(&[]);
    r.assert_code(1);
    assert_eq!(r.doc()["success"], false);
    assert_eq!(r.errors()[0]["category"], "shell");
    assert_eq!(r.errors()[0]["exit_code"], 4);
    assert!(r.errors()[0]["message"].as_str().unwrap().contains("oops"));

    // Invalid workflow: exit 2, one document, validation errors.
    let invalid = Workspace::new().workflow(json!({
        "nodes": [{"id": "x", "type": "shell", "params": {"command": "echo ${nowhere.stdout}"}}]
    }));
    let r = invalid.build(&[]);
    r.assert_code(2);
    assert_eq!(r.doc()["success"], false);
    assert!(!r.errors().is_empty());
    assert!(r.stdout.contains("nowhere"), "{r}");

    // Not JSON at all.
    let broken = Workspace::new();
    broken.write(common::WORKFLOW, "{ \"nodes\": [ ");
    let r = broken.build(&[]);
    r.assert_code(2);
    assert_eq!(r.doc()["success"], false);

    // Missing workflow file, bad arguments.
    let r = broken.cmd().workflow_file("does-not-exist.json").run();
    r.assert_code(2);
    assert_eq!(r.doc()["success"], false);
    let r = Workspace::new()
        .workflow(greeting())
        .build(&["not-an-assignment"]);
    r.assert_code(2);
    assert_eq!(r.doc()["success"], false);
}

#[test]
fn trace_file_has_per_node_times_status_key_and_digest() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build(&["--trace", "trace.json"]);
    r.assert_ok();
    let trace: Value = serde_json::from_str(&ws.read("trace.json")).unwrap();
    let nodes = trace["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 3);
    for n in nodes {
        let id = n["id"].as_str().unwrap();
        assert_eq!(n["status"], "ran", "{id}");
        let (start, end) = (
            n["start_ms"].as_u64().unwrap(),
            n["end_ms"].as_u64().unwrap(),
        );
        assert!(start <= end, "{id}: {start} > {end}");
        assert_eq!(n["key"], r.node(id)["key"], "{id}");
        assert_eq!(n["digest"].as_str().unwrap().len(), 64, "{id}");
    }
    // Dependencies start after their upstream ended.
    let at = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap();
    assert!(at("shout")["start_ms"].as_u64() >= at("greet")["end_ms"].as_u64());

    // A cached rebuild traces the same keys and digests.
    ws.build(&["--trace", "trace2.json"]).assert_ok();
    let trace2: Value = serde_json::from_str(&ws.read("trace2.json")).unwrap();
    for (a, b) in nodes.iter().zip(trace2["nodes"].as_array().unwrap()) {
        assert_eq!(b["status"], "cached");
        assert_eq!(a["key"], b["key"]);
        assert_eq!(a["digest"], b["digest"]);
    }
}

#[test]
fn inputs_are_coerced_to_their_declared_types() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {
            "n": {"type": "integer"}, "x": {"type": "number"}, "flag": {"type": "boolean"},
            "obj": {"type": "object"}, "list": {"type": "array"}, "s": {"type": "string"}
        },
        "nodes": [{"id": "e", "type": "echo", "params": {"data": {
            "n": "${n}", "x": "${x}", "flag": "${flag}", "obj": "${obj}", "list": "${list}",
            "s": "${s}"
        }}}],
        "outputs": {"all": {"source": "${e.data}"}}
    }));
    let r = ws.build(&[
        "n=42",
        "x=2.5",
        "flag=true",
        r#"obj={"a":1}"#,
        "list=[1,2]",
        "s=007",
    ]);
    r.assert_ok();
    assert_eq!(
        r.doc()["outputs"]["all"],
        json!({"n": 42, "x": 2.5, "flag": true, "obj": {"a": 1}, "list": [1, 2], "s": "007"})
    );

    let bad = ws.build(&["n=forty", "x=1", "flag=1", "obj={}", "list=[]", "s=a"]);
    bad.assert_code(2);
    let msg = bad.errors()[0]["message"].as_str().unwrap();
    assert!(msg.contains("'n'") && msg.contains("forty"), "{msg}");
}

/// `--inputs-file`: a JSON object's values as inputs (typed as on the command line), a
/// KEY=VALUE given too wins, and a file that is not an object is an argument error that
/// names it.
#[test]
fn inputs_come_from_a_file_and_the_command_line_wins() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"n": {"type": "integer"}, "obj": {"type": "object"}, "s": {"type": "string"}},
        "nodes": [{"id": "e", "type": "echo",
                   "params": {"data": {"n": "${n}", "obj": "${obj}", "s": "${s}"}}}],
        "outputs": {"all": {"source": "${e.data}"}}
    }));
    ws.write(
        "in.json",
        r#"{"n": 42, "obj": {"a": [1]}, "s": "from the file"}"#,
    );
    let r = ws.build(&["--inputs-file", "in.json", "s=given"]);
    r.assert_ok();
    assert_eq!(
        r.doc()["outputs"]["all"],
        json!({"n": 42, "obj": {"a": [1]}, "s": "given"})
    );
    ws.write("bad.json", "[1, 2]");
    let bad = ws.build(&["--inputs-file", "bad.json"]);
    bad.assert_code(2);
    assert!(bad.to_string().contains("bad.json"), "{bad}");
    let missing = ws.build(&["--inputs-file", "nowhere.json"]);
    missing.assert_code(2);
    assert!(missing.to_string().contains("nowhere.json"), "{missing}");
}

#[test]
fn a_missing_required_input_is_named_with_its_description() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"topic": {"type": "string", "description": "What to write about"}},
        "nodes": [{"id": "e", "type": "shell", "params": {"command": counted("e", "echo ${topic}")}}]
    }));
    let r = ws.build(&[]);
    r.assert_code(2);
    let msg = r.errors()[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("topic") && msg.contains("What to write about"),
        "{msg}"
    );
    assert_eq!(ws.count("e"), 0);

    let t = ws.build_text(&[]);
    t.assert_code(2);
    assert!(
        t.stderr.contains("topic") && t.stderr.contains("What to write about"),
        "{t}"
    );
}

#[test]
fn piped_stdin_goes_to_the_stdin_input() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {
            "data": {"type": "string", "stdin": true, "description": "text to count"},
            "label": {"type": "string", "required": false, "default": "lines"}
        },
        "nodes": [{"id": "wc", "type": "shell",
                   "params": {"command": "wc -l", "stdin": "${data}"}}],
        "outputs": {"out": {"source": "${wc.stdout} ${label}"}}
    }));
    let r = ws.cmd().stdin("a\nb\nc\n").run();
    r.assert_ok();
    assert_eq!(r.output("out").as_str().unwrap().trim(), "3 lines");

    // An explicit value wins over stdin.
    let r = ws.cmd().stdin("ignored\n").arg("data=x\ny\n").run();
    r.assert_ok();
    assert_eq!(r.output("out").as_str().unwrap().trim(), "2 lines");

    // Different piped content is a different input: the node runs again.
    let r = ws.cmd().stdin("a\n").arg("--explain").run();
    r.assert_ok();
    assert_eq!(r.status_of("wc"), "ran");
    assert_eq!(r.reason_of("wc"), "input data changed");
}

#[test]
fn jobs_zero_is_an_argument_error() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build(&["--jobs", "0"]);
    r.assert_code(2);
    assert_eq!(ws.count("greet"), 0);
}

#[test]
fn a_huge_jobs_count_is_capped_with_a_warning() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build(&["--jobs", "100000"]);
    r.assert_ok();
    assert!(
        r.stderr
            .contains("--jobs 100000 is more than pflow runs at once; using 256"),
        "{r}"
    );
    assert_eq!(ws.count("greet"), 1);
}

#[test]
fn a_closed_stdout_is_not_a_crash() {
    let ws = Workspace::new().workflow(greeting());
    for json in [true, false] {
        let mut cmd = ws.cmd();
        if !json {
            cmd = cmd.text();
        }
        // Close the reading end before pflow prints (`pflow build ... | head -0`). A crash
        // (a panic on the broken pipe) fails the run in the harness.
        let out = cmd.pflow().close_stdout().output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "json: {json}: {stderr}");
    }
}

/// Every command that prints a document tolerates a reader that went away (`| head`):
/// completions, a graph and a converted workflow were written in ways that panicked.
#[test]
fn no_command_crashes_on_a_closed_stdout() {
    let ws = Workspace::new().workflow(greeting());
    for args in [
        &["completions", "bash"][..],
        &["completions", "zsh"],
        &["graph", "workflow.json"],
        &["graph", "workflow.json", "--format", "dot"],
        &["convert", "workflow.json", "--to", "md"],
        &["convert", "workflow.json", "--to", "json"],
        &["man"],
    ] {
        let out = ws.pflow().args(args).close_stdout().output();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("internal error"), "{args:?}: {stderr}");
    }
}

#[test]
fn the_cache_dir_comes_from_the_flag_the_environment_or_the_default() {
    let ws = Workspace::new().workflow(greeting());
    ws.cmd().cache_arg(CacheArg::Env).run().assert_ok();
    assert!(
        ws.cache_dir().join("packs").exists(),
        "PFLOW_CACHE_DIR was not used"
    );
    let r = ws.build(&[]);
    assert_eq!(
        r.stat("cached"),
        3,
        "--cache-dir and PFLOW_CACHE_DIR differ: {r}"
    );

    let r = ws.cmd().cache_arg(CacheArg::Default).run();
    r.assert_ok();
    assert_eq!(r.stat("ran"), 3);
    assert!(ws.file(".pflow-cache").join("packs").exists());
    let r = ws.cmd().cache_arg(CacheArg::Default).run();
    assert_eq!(r.stat("cached"), 3, "{r}");
}

#[test]
fn an_unknown_input_is_an_error_with_a_suggestion() {
    let ws = Workspace::new().workflow(greeting());
    let r = ws.build(&["nme=bob"]);
    r.assert_code(2);
    let e = &r.errors()[0];
    assert!(e["message"].as_str().unwrap().contains("nme"), "{r}");
    assert!(r.stdout.contains("did you mean 'name'"), "{r}");
    assert_eq!(ws.count("greet"), 0);
}

/// An argument that is not UTF-8 is bad input like any other (reading the arguments
/// to tell whether JSON was asked for panicked at it).
#[cfg(unix)]
#[test]
fn json_mode_reports_an_argument_not_in_utf8_as_one_json_document() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::new().workflow(json!({"nodes": [{"id": "a", "type": "echo"}]}));
    let out = ws
        .pflow()
        .arg("build")
        .arg(std::ffi::OsStr::from_bytes(b"\xff.json"))
        .args(["--output-format", "json"])
        .output();
    assert_rejected_arguments(&out, "UTF-8");
}

#[test]
fn json_mode_reports_a_bad_flag_as_one_json_document() {
    let ws = Workspace::new().workflow(json!({"nodes": [{"id": "a", "type": "echo"}]}));
    let out = ws
        .pflow()
        .args([
            "build",
            "workflow.json",
            "--bogus",
            "--output-format",
            "json",
        ])
        .output();
    assert_rejected_arguments(&out, "--bogus");
}

/// Exit 2 and one JSON document whose first error's message holds `said`.
#[track_caller]
fn assert_rejected_arguments(out: &std::process::Output, said: &str) {
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(doc["success"], false);
    let message = doc["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains(said), "{doc}");
}

#[test]
fn a_terminal_gets_a_progress_bar_and_a_pipe_gets_plain_lines() {
    let ws = Workspace::new().workflow(greeting());
    // `script` (util-linux) runs the build on a pseudo-terminal; without CI=1, which
    // keeps the progress bar off.
    let tty = ws
        .pflow()
        .args(["build", "workflow.json", "name=bob", "--cache-dir"])
        .arg(ws.cache_dir())
        .env_remove("CI")
        .on_a_terminal()
        .output();
    let shown = String::from_utf8_lossy(&tty.stdout);
    assert!(tty.status.success(), "{shown}");
    assert!(
        shown.contains("[3/3]"),
        "no progress bar on a terminal: {shown}"
    );
    assert!(
        shown.contains("3 nodes: 0 cached, 3 ran, 0 failed"),
        "{shown}"
    );
    assert!(shown.contains("HELLO, BOB"), "{shown}");

    let plain = ws.build_text(&["name=bob", "--force"]);
    assert!(!plain.stderr.contains("[3/3]"), "{plain}");
    assert!(plain.stderr.contains("ran      greet"), "{plain}");
}

#[test]
fn a_trace_into_a_missing_folder_is_refused_before_the_build() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "a", "type": "shell", "params": {"command": counted("a", "echo hi")}}
    ]}));
    let r = ws.build(&["--trace", "no/such/dir/t.json"]);
    r.assert_code(2);
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("the folder no/such/dir does not exist"),
        "{r}"
    );
    assert!(!ws.exists("no"));
    assert_eq!(ws.count("a"), 0);
}

#[test]
fn a_dry_run_says_when_an_error_handler_runs() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "fetch", "type": "shell", "params": {"command": "echo ok"}},
            {"id": "fallback", "type": "echo", "params": {"message": "fb"}}
        ],
        "edges": [{"from": "fetch", "to": "fallback", "action": "error"}]
    }));
    let plan = |ws: &Workspace| -> Vec<(String, String)> {
        let r = ws.build(&["--dry-run"]);
        r.doc()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| {
                (
                    n["id"].as_str().unwrap().to_string(),
                    n["action"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert_eq!(
        plan(&ws),
        [
            ("fetch".into(), "run".into()),
            ("fallback".into(), "if_failed".into())
        ]
    );
    ws.build(&[]).assert_ok();
    assert_eq!(
        plan(&ws),
        [
            ("fetch".into(), "reuse".into()),
            ("fallback".into(), "skip".into())
        ]
    );
}
