//! `pflow -C DIR …`: run as if started in DIR (as `make -C` and `git -C`): the workflow
//! argument, file params, the default cache directory, outputs and traces all resolve
//! against DIR.

use crate::common;

use common::{counted, files_under, CacheArg, Workspace};
use serde_json::{json, Value};
use std::path::Path;

fn report_workflow() -> Value {
    json!({
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "data/words.txt"}},
            {"id": "count", "type": "shell",
             "params": {"command": counted("count", "wc -w | tr -d ' '"), "stdin": "${read.content}"}},
            {"id": "save", "type": "write-file",
             "params": {"file_path": "out/report.txt", "content": "words: ${count.stdout}"}}
        ],
        "outputs": {"words": {"source": "${count.stdout}"}}
    })
}

fn project() -> Workspace {
    let ws = Workspace::new().workflow(report_workflow());
    ws.write("data/words.txt", "one two three four");
    ws
}

/// `pflow -C DIR build workflow.json` started in `from`, with the default cache dir.
fn build_from(ws: &Workspace, from: &Path, extra: &[&str]) -> Value {
    let out = ws
        .pflow()
        .current_dir(from)
        .arg("-C")
        .arg(ws.path())
        .args([
            "build",
            "workflow.json",
            "--no-repair",
            "--output-format",
            "json",
        ])
        .args(extra)
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

/// The files of a project outside its cache, with their content.
fn project_files(dir: &Path) -> Vec<(String, String)> {
    files_under(dir)
        .into_iter()
        .filter_map(|p| {
            let rel = p.strip_prefix(dir).ok()?.to_string_lossy().into_owned();
            if rel.starts_with(".pflow-cache") || rel == "trace.json" {
                return None;
            }
            Some((rel, std::fs::read_to_string(&p).unwrap_or_default()))
        })
        .collect()
}

#[test]
fn a_build_with_dash_c_from_elsewhere_equals_one_started_in_dir() {
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let moved = project();
    let doc = build_from(&moved, elsewhere.path(), &["--trace", "trace.json"]);
    assert_eq!(doc["success"], true, "{doc}");

    let in_place = project();
    let r = in_place
        .cmd()
        .cache_arg(CacheArg::Default)
        .args(&["--trace", "trace.json"])
        .run();
    r.assert_ok();

    assert_eq!(doc["outputs"], r.doc()["outputs"]);
    assert_eq!(doc["outputs"]["words"], "4");
    assert_eq!(project_files(moved.path()), project_files(in_place.path()));
    assert_eq!(moved.read("out/report.txt"), "words: 4");
    // The cache and the trace are in DIR, and nothing at all where the build started.
    assert!(moved.file(".pflow-cache").is_dir());
    assert!(moved.file("trace.json").is_file());
    assert_eq!(
        files_under(elsewhere.path()),
        Vec::<std::path::PathBuf>::new()
    );

    // A second build from inside DIR finds everything done.
    let again = moved.cmd().cache_arg(CacheArg::Default).run();
    again.assert_ok();
    assert_eq!(again.with_status("ran"), Vec::<String>::new(), "{again}");
    assert_eq!(moved.count("count"), 1);

    // And one more from elsewhere, after an edit in DIR, re-runs what the edit reaches.
    moved.write("data/words.txt", "one two");
    let doc = build_from(&moved, elsewhere.path(), &[]);
    assert_eq!(doc["outputs"]["words"], "2");
    assert_eq!(moved.count("count"), 2);
    assert_eq!(
        files_under(elsewhere.path()),
        Vec::<std::path::PathBuf>::new()
    );
}

#[test]
fn dash_c_to_a_missing_or_non_directory_path_is_an_argument_error() {
    let ws = project();
    let missing = ws.file("no-such-dir");
    let out = ws
        .pflow()
        .arg("-C")
        .arg(&missing)
        .args(["build", "workflow.json", "--no-repair"])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("-C") && err.contains("no-such-dir"), "{err}");

    let out = ws
        .pflow()
        .arg("-C")
        .arg(ws.file("workflow.json"))
        .args(["validate", "workflow.json", "--output-format", "json"])
        .output();
    assert_eq!(out.status.code(), Some(2));
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    let msg = doc["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("not a directory"), "{doc}");
    assert_eq!(ws.count("count"), 0);
}
