//! `pflow validate` on invalid workflows: every file in `fixtures/invalid/` has exactly one
//! problem, and the real binary must reject it with exit code 2 and a message on stderr
//! that names the offending field, node or template. No input may crash the validator.
//!
//! [`EXPECTED`] maps each fixture to the substrings its report must contain. A fixture
//! without an entry (or an entry without a fixture) fails the test, so new fixtures cannot
//! go unchecked.

use crate::common::Pflow;
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

/// File name in `fixtures/invalid/` → substrings that must all appear on stderr.
const EXPECTED: &[(&str, &[&str])] = &[
    // Reading and parsing.
    ("syntax-error.json", &["line 3, column 33", "invalid JSON"]),
    ("empty.json", &["root", "empty"]),
    ("non-utf8.json", &["line 2, column", "not valid UTF-8"]),
    ("deep-nesting.json", &["nested too deeply"]),
    // Structure.
    (
        "root-not-object.json",
        &["root", "expected a JSON object", "found array"],
    ),
    (
        "unknown-top-field.json",
        &["edge: ", "unknown field 'edge'", "did you mean 'edges'?"],
    ),
    (
        "missing-nodes.json",
        &["nodes: ", "missing required field 'nodes'"],
    ),
    ("empty-nodes.json", &["nodes: ", "at least one node"]),
    (
        "nodes-not-array.json",
        &["nodes: ", "expected an array", "found object"],
    ),
    (
        "node-missing-id.json",
        &["nodes[1].id", "missing required field 'id'"],
    ),
    (
        "node-missing-type.json",
        &[
            "nodes[0].type",
            "node 'greet'",
            "missing required field 'type'",
            "supported types:",
        ],
    ),
    (
        "unknown-node-field.json",
        &[
            "nodes[0].purpse",
            "unknown field 'purpse'",
            "did you mean 'purpose'?",
        ],
    ),
    (
        "params-not-object.json",
        &["nodes[0].params", "expected an object", "\"hello\""],
    ),
    (
        "unknown-input-type.json",
        &["inputs.name.type", "unknown input type 'text'", "string"],
    ),
    (
        "two-stdin-inputs.json",
        &["inputs.data.stdin", "'text', 'data'"],
    ),
    ("bad-ir-version.json", &["ir_version", "'1.0'", "0.1.0"]),
    (
        "bad-template-mode.json",
        &["template_resolution_mode", "\"lenient\"", "strict"],
    ),
    ("bad-cache.json", &["nodes[0].cache", "'sometimes'", "1h"]),
    // Environment declarations.
    (
        "reads-env-bad-name.json",
        &[
            "nodes[0].reads_env[1]",
            "'${tz}' is not an environment variable name",
        ],
    ),
    (
        "reads-env-not-array.json",
        &["nodes[0].reads_env", "expected an array", "\"TZ\""],
    ),
    (
        "strict-env-not-bool.json",
        &["strict_env", "expected true or false", "\"yes\""],
    ),
    // Ids, edges and the graph.
    (
        "duplicate-ids.json",
        &["nodes[1].id", "duplicate node id 'fetch'", "nodes[0]"],
    ),
    (
        "dangling-edge.json",
        &["edges[0].to", "'deploy'", "does not exist", "build"],
    ),
    (
        "edge-missing-to.json",
        &["edges[0].to", "missing required field 'to'"],
    ),
    (
        "bad-edge-action.json",
        &["edges[0].action", "\"on_failure\"", "\"error\""],
    ),
    (
        "cycle-edges.json",
        &[
            "cycle",
            "'first' → 'second' (edge)",
            "'second' → 'first' (edge)",
        ],
    ),
    (
        "cycle-templates.json",
        &[
            "cycle",
            "'left' → 'right' (template)",
            "'right' → 'left' (template)",
        ],
    ),
    (
        "self-reference.json",
        &["node 'loop' depends on itself", "(template)"],
    ),
    (
        "start-node-missing.json",
        &["start_node", "'begin'", "start"],
    ),
    // Node types and params.
    (
        "unknown-node-type.json",
        &[
            "nodes[0].type",
            "'mcp-github-x'",
            "'issues'",
            "supported types:",
            "shell",
        ],
    ),
    (
        "missing-required-param.json",
        &[
            "nodes[0].params.command",
            "'run'",
            "missing required param 'command'",
        ],
    ),
    (
        "wrong-param-type.json",
        &[
            "nodes[0].params.timeout",
            "'slow'",
            "must be a number",
            "array",
        ],
    ),
    // Templates.
    (
        "unknown-node-ref.json",
        &[
            "nodes[1].params.command",
            "${fetchh.stdout}",
            "did you mean 'fetch'?",
        ],
    ),
    (
        "unknown-input-ref.json",
        &["nodes[0].params.content", "${nme}", "did you mean 'name'?"],
    ),
    (
        "unknown-output-field.json",
        &[
            "nodes[1].params.command",
            "${a.stdot}",
            "does not output 'stdot'",
            "did you mean 'stdout'?",
        ],
    ),
    (
        "malformed-template.json",
        &["nodes[1].params.command", "${a.stdout", "closing '}'"],
    ),
    (
        "shell-variable.json",
        &["nodes[0].params.command", "${HOME}", "$${HOME}"],
    ),
    (
        "node-without-field.json",
        &["nodes[1].params.command", "${a}", "${a.stdout}"],
    ),
    (
        "item-outside-batch.json",
        &[
            "nodes[0].params.command",
            "${item}",
            "only defined inside a batch",
        ],
    ),
    (
        "output-missing-node.json",
        &["outputs.result.source", "${summary.stdout}", "'summary'"],
    ),
    // Batch.
    (
        "batch-max-concurrent.json",
        &["nodes[0].batch.max_concurrent", "1 to 100", "found 0"],
    ),
    (
        "batch-items-not-template.json",
        &["nodes[0].batch.items", "'a,b,c'", "not a single template"],
    ),
    (
        "batch-error-handling.json",
        &["nodes[0].batch.error_handling", "\"ignore\"", "fail_fast"],
    ),
];

fn manifest_dir() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn invalid_dir() -> PathBuf {
    manifest_dir().join("fixtures/invalid")
}

fn pflow(args: &[&str]) -> Output {
    Pflow::new().args(args).current_dir(manifest_dir()).output()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Exit 2, no crash, and every expected substring on stderr. Returns a description of
/// what is wrong, if anything.
fn check_rejected(label: &str, out: &Output, expected: &[&str]) -> Option<String> {
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    let mut problems = Vec::new();
    if out.status.code() != Some(2) {
        problems.push(format!("exit code {:?}, expected 2", out.status.code()));
    }
    for want in expected {
        if !stderr.contains(want) {
            problems.push(format!("stderr lacks {want:?}"));
        }
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "{label}: {}\n--- stdout:\n{stdout}--- stderr:\n{stderr}",
            problems.join("; ")
        ))
    }
}

fn fixture_names() -> BTreeSet<String> {
    std::fs::read_dir(invalid_dir())
        .expect("fixtures/invalid exists")
        .map(|e| {
            e.expect("dir entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect()
}

#[test]
fn every_invalid_fixture_has_an_expectation() {
    let files = fixture_names();
    let table: BTreeSet<String> = EXPECTED.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(table.len(), EXPECTED.len(), "duplicate entries in EXPECTED");
    let untested: Vec<_> = files.difference(&table).collect();
    let missing: Vec<_> = table.difference(&files).collect();
    assert!(
        untested.is_empty(),
        "fixtures/invalid has files without an entry in EXPECTED: {untested:?}"
    );
    assert!(
        missing.is_empty(),
        "EXPECTED names files that are not in fixtures/invalid: {missing:?}"
    );
    assert!(files.len() >= 32, "only {} invalid fixtures", files.len());
}

#[test]
fn every_invalid_fixture_is_rejected_with_a_precise_message() {
    let mut failures = Vec::new();
    for (file, expected) in EXPECTED {
        let path = format!("fixtures/invalid/{file}");
        if !invalid_dir().join(file).exists() {
            continue; // reported by every_invalid_fixture_has_an_expectation
        }
        let out = pflow(&["validate", &path]);
        if let Some(p) = check_rejected(file, &out, expected) {
            failures.push(p);
        }
        // The file name is named too, so a user running it on many files can tell them apart.
        if !text(&out.stderr).contains(&path) {
            failures.push(format!("{file}: stderr does not name the file {path}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures failed:\n\n{}",
        failures.len(),
        EXPECTED.len(),
        failures.join("\n\n")
    );
}

#[test]
fn fixtures_hold_one_problem_each() {
    // One problem per file keeps each fixture a test of one rule.
    let mut failures = Vec::new();
    for (file, _) in EXPECTED {
        let out = pflow(&[
            "validate",
            &format!("fixtures/invalid/{file}"),
            "--output-format",
            "json",
        ]);
        let doc: Value = match serde_json::from_slice(&out.stdout) {
            Ok(v) => v,
            Err(e) => {
                failures.push(format!("{file}: stdout is not JSON: {e}"));
                continue;
            }
        };
        let n = doc["errors"].as_array().map_or(0, |a| a.len());
        if n != 1 {
            failures.push(format!("{file}: {n} errors: {}", doc["errors"]));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_directory_is_rejected() {
    let out = pflow(&["validate", "fixtures/invalid"]);
    if let Some(p) = check_rejected(
        "directory",
        &out,
        &["fixtures/invalid", "is a directory", "root"],
    ) {
        panic!("{p}");
    }
}

#[test]
fn a_missing_path_is_rejected() {
    let out = pflow(&["validate", "fixtures/no-such-workflow.json"]);
    if let Some(p) = check_rejected(
        "missing path",
        &out,
        &["fixtures/no-such-workflow.json", "does not exist"],
    ) {
        panic!("{p}");
    }
}

#[test]
fn binary_garbage_is_rejected_without_a_crash() {
    let dir = tempfile::tempdir().expect("temp dir");
    let cases: &[(&str, &[u8], &str)] = &[
        ("nul.json", b"\0\0\0\0", "invalid JSON"),
        (
            "latin1.json",
            b"{\"nodes\": \"caf\xe9\"}",
            "not valid UTF-8",
        ),
        (
            "truncated.json",
            b"{\"nodes\": [{\"id\": \"a\"",
            "invalid JSON",
        ),
        ("bom-only.json", b"\xef\xbb\xbf", "invalid JSON"),
    ];
    let mut failures = Vec::new();
    for (name, bytes, want) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        let out = pflow(&["validate", path.to_str().expect("utf-8 temp path")]);
        if let Some(p) = check_rejected(name, &out, &[want]) {
            failures.push(p);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn json_output_lists_errors_with_paths() {
    let out = pflow(&[
        "validate",
        "fixtures/invalid/unknown-output-field.json",
        "--output-format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let doc: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{stdout}"));
    assert_eq!(doc["valid"], Value::Bool(false), "{doc}");
    let errors = doc["errors"].as_array().expect("errors is an array");
    assert_eq!(errors.len(), 1, "{doc}");
    let e = &errors[0];
    assert_eq!(e["path"], "nodes[1].params.command", "{doc}");
    let message = e["message"].as_str().expect("message is a string");
    assert!(message.contains("stdot"), "{message}");
    assert!(
        e["hint"].as_str().is_some_and(|h| h.contains("stdout")),
        "{doc}"
    );
    assert!(doc["warnings"].is_array(), "{doc}");
}

#[test]
fn json_output_for_unreadable_input_is_still_json() {
    for arg in [
        "fixtures/invalid/syntax-error.json",
        "fixtures/invalid/non-utf8.json",
        "fixtures/invalid",
        "fixtures/no-such-workflow.json",
    ] {
        let out = pflow(&["validate", arg, "--output-format", "json"]);
        assert_eq!(out.status.code(), Some(2), "{arg}");
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{arg}: stdout is not JSON ({e}): {}", text(&out.stdout)));
        assert_eq!(doc["valid"], Value::Bool(false), "{arg}: {doc}");
        let errors = doc["errors"].as_array().expect("errors array");
        assert!(!errors.is_empty(), "{arg}: {doc}");
        for e in errors {
            assert!(
                e["path"].is_string() && e["message"].is_string(),
                "{arg}: {doc}"
            );
        }
    }
}

#[test]
fn json_output_for_a_valid_workflow() {
    for file in ["fixtures/hello.json", "fixtures/pipeline.json"] {
        let out = pflow(&["validate", file, "--output-format", "json"]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{file}: stdout is not JSON ({e})"));
        assert_eq!(doc["valid"], Value::Bool(true), "{file}: {doc}");
        assert_eq!(doc["errors"], serde_json::json!([]), "{file}: {doc}");
        assert_eq!(doc["warnings"], serde_json::json!([]), "{file}: {doc}");
    }
}

#[test]
fn warnings_appear_in_json_output() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("w.json");
    std::fs::write(
        &path,
        r#"{"nodes": [{"id": "a", "type": "shell", "params": {"command": "echo hi", "comand": "x"}}]}"#,
    )
    .expect("write");
    let out = pflow(&[
        "validate",
        path.to_str().expect("utf-8"),
        "--output-format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["valid"], Value::Bool(true));
    let warnings = doc["warnings"].as_array().expect("warnings array");
    assert_eq!(warnings.len(), 1, "{doc}");
    assert_eq!(warnings[0]["path"], "nodes[0].params.comand", "{doc}");
}

#[test]
fn text_output_for_valid_fixtures() {
    for file in ["fixtures/hello.json", "fixtures/pipeline.json"] {
        let out = pflow(&["validate", file]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("valid"), "{file}");
        assert!(
            !text(&out.stderr).contains("warning"),
            "{file}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn all_errors_are_reported_together() {
    // Several problems in one file: each is reported, each with its own path.
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("many.json");
    std::fs::write(
        &path,
        r#"{
  "nodes": [
    {"id": "a", "type": "shell", "params": {"command": "echo ${b.stdot}"}},
    {"id": "b", "type": "mcp-x", "params": {}},
    {"id": "a", "type": "shell"}
  ],
  "edges": [{"from": "a", "to": "zz"}]
}"#,
    )
    .expect("write");
    let out = pflow(&["validate", path.to_str().expect("utf-8")]);
    let expected = [
        "nodes[1].type",
        "nodes[2].id",
        "nodes[2].params.command",
        "edges[0].to",
    ];
    if let Some(p) = check_rejected("many", &out, &expected) {
        panic!("{p}");
    }
}

#[test]
fn json_workflow_problems_are_placed_on_their_lines() {
    // The same source map the Markdown front end gives: the line and column of the value
    // at the diagnostic's path (or of the nearest value around it).
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("wf.json");
    let text = "{\n  \"nodes\": [\n    {\"id\": \"a\", \"type\": \"shell\",\n     \"params\": {\"command\": \"echo ${nope.x}\"}},\n    {\"id\": \"b\", \"type\": \"read-file\"}\n  ]\n}\n";
    std::fs::write(&file, text).expect("write");
    let out = Pflow::new()
        .arg("validate")
        .arg(&file)
        .current_dir(dir.path())
        .output();
    let stderr = text_of(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("wf.json:4:28: nodes[0].params.command: template ${nope.x}"),
        "{stderr}"
    );
    assert!(stderr.contains("wf.json:5:5: nodes[1].params.file_path: node 'b' (read-file) is missing required param 'file_path'"), "{stderr}");
    let out = Pflow::new()
        .args(["validate", "wf.json", "--output-format", "json"])
        .current_dir(dir.path())
        .output();
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(doc["errors"][0]["line"], 4, "{doc}");
    assert_eq!(doc["errors"][0]["column"], 28, "{doc}");
}

fn text_of(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
