//! `pflow validate` checks the type of every literal param against its node type, as
//! the build's param readers do: what validate accepts runs, and what the build would
//! reject is an error (exit 2) at its JSON path, all of them listed together.

use crate::common;

use common::{counted, Workspace};
use serde_json::{json, Value};

fn validate_json(ws: &Workspace) -> (i32, Value) {
    let out = ws
        .pflow()
        .args(["validate", "workflow.json", "--output-format", "json"])
        .output();
    let doc = serde_json::from_slice(&out.stdout).expect("one JSON document");
    (out.status.code().unwrap_or(-1), doc)
}

fn error_paths(doc: &Value) -> Vec<String> {
    doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["path"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn a_number_as_shell_command_is_rejected_with_its_path() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "n", "type": "shell", "params": {"command": 42}}]
    }));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes[0].params.command") && err.contains("must be a string"),
        "{err}"
    );
    // The build refuses it the same way, before anything runs.
    let r = ws.build(&[]);
    r.assert_code(2);
    assert_eq!(r.errors()[0]["path"], "nodes[0].params.command", "{r}");
}

#[test]
fn every_wrongly_typed_literal_param_is_listed() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "sh", "type": "shell", "params": {
                "command": true, "timeout": "soon", "ignore_errors": "maybe", "env": "A=1"}},
            {"id": "w", "type": "write-file", "params": {"file_path": 7, "content": "x"}},
            {"id": "r", "type": "read-file", "params": {"file_path": ["a.txt"]}},
            {"id": "e", "type": "echo", "params": {"count": "2.5", "prefix": 5}},
            {"id": "l", "type": "llm", "params": {"prompt": "hi", "max_tokens": 2.5}},
            {"id": "d", "type": "delete-file", "params": {"file_path": "x", "confirm_delete": "nope"}},
            {"id": "h", "type": "http", "params": {"url": "http://127.0.0.1:9", "headers": ["a"]}}
        ]
    }));
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 2, "{doc}");
    let mut paths = error_paths(&doc);
    paths.sort();
    let mut expected = vec![
        "nodes[0].params.command",
        "nodes[0].params.timeout",
        "nodes[0].params.ignore_errors",
        "nodes[0].params.env",
        "nodes[1].params.file_path",
        "nodes[2].params.file_path",
        "nodes[3].params.count",
        "nodes[3].params.prefix",
        "nodes[4].params.max_tokens",
        "nodes[5].params.confirm_delete",
        "nodes[6].params.headers",
    ];
    expected.sort();
    assert_eq!(paths, expected, "{doc}");
}

/// The spellings the build's readers accept (numbers as text, yes/no) pass validation
/// and run; templates are checked when they resolve.
#[test]
fn what_validate_accepts_the_build_runs() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "sh", "type": "shell", "params": {
                "command": counted("sh", "echo \"$N\""), "timeout": "30",
                "ignore_errors": "no", "strip_newline": "yes", "env": {"N": 5}}},
            {"id": "e", "type": "echo", "params": {"message": "${sh.stdout}", "count": "2"}},
            {"id": "save", "type": "write-file", "params": {
                "file_path": "out.txt", "content": "${e.echo}", "append": ""}},
            {"id": "gone", "type": "delete-file", "params": {"file_path": "out.txt", "confirm_delete": "false"}}
        ],
        "edges": [{"from": "save", "to": "gone"}],
        "outputs": {"echo": {"source": "${e.echo}"}}
    }));
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 0, "{doc}");
    let r = ws.build(&[]);
    // `confirm_delete: "false"` refuses the deletion, as `false` does.
    assert_eq!(r.status_of("gone"), "failed", "{r}");
    assert_eq!(ws.read("out.txt"), "5 5");
    assert_eq!(r.status_of("e"), "ran");
    assert_eq!(ws.count("sh"), 1);
}

#[test]
fn numbers_outside_their_range_are_rejected_and_never_crash_a_build() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "s", "type": "shell", "params": {"command": "echo", "timeout": 1e19}},
            {"id": "h", "type": "http", "params": {"url": "http://127.0.0.1:9", "timeout": -1}},
            {"id": "e", "type": "echo", "params": {"count": "100000"}},
            {"id": "l", "type": "llm", "params": {"prompt": "p", "max_tokens": 0}}
        ]
    }));
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 2, "{doc:#}");
    assert_eq!(
        error_paths(&doc),
        [
            "nodes[0].params.timeout",
            "nodes[1].params.timeout",
            "nodes[2].params.count",
            "nodes[3].params.max_tokens"
        ],
        "{doc:#}"
    );
    assert!(
        doc.to_string()
            .contains("param 'timeout' must be between 0.001 and 604800, got 10000000000000000000"),
        "{doc:#}"
    );
    // The same value through a template fails the node with that message (it used to
    // panic inside pflow).
    ws.set_workflow(&json!({
        "inputs": {"t": {"type": "number"}},
        "nodes": [{"id": "s", "type": "shell", "params": {"command": "echo", "timeout": "${t}"}}]
    }));
    let r = ws.build(&["t=1e19"]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("must be between"),
        "{r}"
    );
}

#[test]
fn a_malformed_literal_url_is_an_error_before_anything_runs() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "first", "type": "shell", "params": {"command": counted("first", "echo hi")}},
        {"id": "get", "type": "http", "params": {"url": "htp//example.com/${first.stdout}x"}},
        {"id": "bad", "type": "http", "params": {"url": "ftp://example.com/file"}},
        {"id": "fine", "type": "http", "params": {"url": "${first.stdout}"}}
    ]}));
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 2, "{doc}");
    assert_eq!(error_paths(&doc), ["nodes[2].params.url"], "{doc}");
    assert!(doc["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("http:// or https://"));
    ws.build(&[]).assert_code(2);
    assert_eq!(ws.count("first"), 0);
}

#[test]
fn a_boolean_written_as_text_is_a_warning_that_names_the_value() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "a", "type": "shell", "params": {"command": "exit 1", "ignore_errors": "yes"}}
    ]}));
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 0, "{doc}");
    let w = &doc["warnings"][0];
    assert_eq!(w["path"], "nodes[0].params.ignore_errors");
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("\"yes\", read as true"),
        "{w}"
    );
    assert_eq!(w["hint"], "write true without quotes");
}

#[test]
fn a_key_written_twice_is_an_error_at_its_line() {
    let ws = Workspace::new();
    ws.write(
        "workflow.json",
        "{\"nodes\": [\n  {\"id\": \"a\", \"type\": \"shell\",\n   \"params\": {\"command\": \"echo one\"},\n   \"params\": {\"command\": \"echo two\"}}\n]}",
    );
    let (code, doc) = validate_json(&ws);
    assert_eq!(code, 2, "{doc}");
    let e = &doc["errors"][0];
    assert!(
        e["path"].as_str().unwrap().starts_with("line 4, column"),
        "{e}"
    );
    assert!(
        e["message"]
            .as_str()
            .unwrap()
            .contains("\"params\" appears twice"),
        "{e}"
    );
}
