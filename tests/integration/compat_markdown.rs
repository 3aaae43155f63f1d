//! The original pflow's Markdown examples (`../shared/compat/pflow-md-examples`), read in
//! place, and `pflow convert` over both corpora:
//!
//! - every valid example validates, or exits 2 naming what this pflow lacks (an
//!   unsupported node type; for the two that rely on the old shared store, the param or
//!   template), every error placed on a Markdown line;
//! - the IR of a handful of them is what the format says it is, written out by hand here
//!   from the format description (§1.3 of the reference), not produced by pflow;
//! - every `invalid/` example exits 2 with its problem and its line;
//! - converting round-trips: JSON → Markdown → JSON and Markdown → JSON → Markdown →
//!   JSON give the same IR.

use crate::common::{self, Pflow};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

/// Markdown examples that validate as they are.
const VALID: &[&str] = &[
    "simple-workflow.pflow.md",
    "core/minimal.pflow.md",
    "test_llm_templates.pflow.md",
    "batch-test.pflow.md",
    "batch-test-parallel.pflow.md",
    "test-worktree.pflow.md",
];

/// Examples that need the old implicit shared store: the wrong param or template.
const SHARED_STORE: &[(&str, &[&str])] = &[
    (
        "core/simple-pipeline.pflow.md",
        &[
            "simple-pipeline.pflow.md:19:1: nodes[1].params.source_path: node 'copier' (copy-file) is missing required param 'source_path'",
            "simple-pipeline.pflow.md:26:1: nodes[2].params.content: node 'writer' (write-file) is missing required param 'content'",
        ],
    ),
    (
        "output_validation_demo.pflow.md",
        &[
            "output_validation_demo.pflow.md:8:1: nodes[0].params.file_path:",
            "rename 'path' to 'file_path'",
            "output_validation_demo.pflow.md:22:1: nodes[1].params.prompt: template ${content}",
        ],
    ),
];

/// `invalid/*`: the problem and the `FILE:LINE:` it must be reported at.
const INVALID: &[(&str, &[&str])] = &[
    (
        "invalid/bare-code-block.pflow.md",
        &["bare-code-block.pflow.md:13:1:", "code block has no tag"],
    ),
    (
        "invalid/duplicate-ids.pflow.md",
        &["duplicate-ids.pflow.md:14:5: nodes[1].id: duplicate node id 'fetch'"],
    ),
    (
        "invalid/missing-description.pflow.md",
        &[
            "missing-description.pflow.md:7:1:",
            "step 'fetch' has no description",
        ],
    ),
    (
        "invalid/missing-steps.pflow.md",
        &["missing-steps.pflow.md:1:1:", "no '## Steps' section"],
    ),
    (
        "invalid/missing-type.pflow.md",
        &[
            "missing-type.pflow.md:7:1:",
            "node 'fetch' is missing required field 'type'",
        ],
    ),
    (
        "invalid/unclosed-fence.pflow.md",
        &[
            "unclosed-fence.pflow.md:13:1:",
            "code block is never closed",
        ],
    ),
];

/// JSON examples `convert --to md` refuses: they are not IR Markdown can hold (legacy
/// formats, `nodes` that is no array, an edge from a node that does not exist).
const NO_MARKDOWN_FORM: &[&str] = &[
    "invalid/bad-edge-ref.json",
    "invalid/wrong-types.json",
    "legacy/fix_issue_workflow.json",
    "legacy/git_status_example.json",
    "legacy/list_and_get_issue.json",
];

/// `pflow ARGS`, started in an empty temp directory.
fn run(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Output {
    let cwd = tempfile::tempdir().expect("temp dir");
    let mut p = Pflow::new().current_dir(cwd.path());
    for a in args {
        p = p.arg(a);
    }
    p.output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Files under `root` with this suffix, relative, sorted.
fn files(root: &Path, suffix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.to_string_lossy().ends_with(suffix) {
                let rel = path.strip_prefix(root).expect("under root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

fn validate(path: &Path) -> (Option<i32>, String) {
    let out = run(&[&"validate", &path]);
    (out.status.code(), text(&out.stderr))
}

#[test]
fn every_valid_markdown_example_validates_or_names_what_is_missing() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let all = files(&corpus.md_example(""), ".pflow.md");
    assert!(all.len() >= 25, "{all:?}");
    for rel in all.iter().filter(|r| !r.starts_with("invalid/")) {
        let (code, stderr) = validate(&corpus.md_example(rel));
        if VALID.contains(&rel.as_str()) {
            assert_eq!(code, Some(0), "{rel}:\n{stderr}");
            continue;
        }
        assert_eq!(code, Some(2), "{rel}:\n{stderr}");
        if let Some((_, want)) = SHARED_STORE.iter().find(|(f, _)| f == rel) {
            for w in *want {
                assert!(stderr.contains(w), "{rel}: no '{w}' in:\n{stderr}");
            }
        } else {
            assert!(
                stderr.contains("unknown node type") && stderr.contains("supported types: shell"),
                "{rel}:\n{stderr}"
            );
        }
        // Every error is placed on a line of the Markdown file.
        let name = rel.rsplit('/').next().unwrap_or(rel);
        for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
            let after = line.split_once(&format!("{name}:")).map(|(_, a)| a);
            let placed = after.is_some_and(|a| {
                a.split(':')
                    .next()
                    .is_some_and(|n| n.parse::<usize>().is_ok())
            });
            assert!(placed, "{rel}: an error without a line: {line}");
        }
    }
}

#[test]
fn unsupported_types_are_named_at_their_type_item() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let (code, stderr) =
        validate(&corpus.md_example("nodes/claude-code/claude-code-basic.pflow.md"));
    assert_eq!(code, Some(2), "{stderr}");
    // `- type: claude-code` is line 12, its value at column 9.
    assert!(
        stderr.contains(
            "claude-code-basic.pflow.md:12:9: nodes[0].type: unknown node type 'claude-code'"
        ),
        "{stderr}"
    );
}

#[test]
fn invalid_markdown_examples_exit_2_with_the_problem_and_its_line() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let listed: Vec<&str> = INVALID.iter().map(|(f, _)| *f).collect();
    let present: Vec<String> = files(&corpus.md_example("invalid"), ".pflow.md")
        .into_iter()
        .map(|f| format!("invalid/{f}"))
        .collect();
    assert_eq!(present, listed, "the invalid examples changed");
    for (rel, want) in INVALID {
        let cache = tempfile::tempdir().expect("temp dir");
        let path = corpus.md_example(rel);
        let runs = [
            ("validate", run(&[&"validate", &path])),
            (
                "build",
                run(&[
                    &"build",
                    &path,
                    &"--no-repair",
                    &"--cache-dir",
                    &cache.path(),
                ]),
            ),
        ];
        for (cmd, out) in runs {
            let stderr = text(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{cmd} {rel}:\n{stderr}");
            for w in *want {
                assert!(stderr.contains(w), "{cmd} {rel}: no '{w}' in:\n{stderr}");
            }
            // One problem, reported once: no knock-on errors.
            assert_eq!(
                stderr.matches("error: ").count(),
                1,
                "{cmd} {rel}:\n{stderr}"
            );
        }
    }
}

fn to_json(path: &Path) -> Value {
    let out = run(&[&"convert", &path, &"--to", &"json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "convert {}:\n{}",
        path.display(),
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("convert prints JSON")
}

/// What the format description says a few examples mean, written out by hand.
#[test]
fn the_ir_of_markdown_examples_is_what_the_format_says() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let cases = [
        (
            "core/minimal.pflow.md",
            json!({
                "nodes": [{"id": "hello", "type": "write-file",
                           "purpose": "Write a greeting message to a file on disk.",
                           "params": {"content": "Hello, pflow!", "file_path": "hello.txt"}}],
                "edges": []
            }),
        ),
        (
            "batch-test.pflow.md",
            json!({
                "nodes": [
                    {"id": "fetch_users", "type": "http",
                     "purpose": "Fetch a list of users from JSONPlaceholder API.",
                     "params": {"url": "https://jsonplaceholder.typicode.com/users", "method": "GET"}},
                    {"id": "greet_users", "type": "shell",
                     "purpose": "Greet each user by name.",
                     "batch": {"items": "${fetch_users.response}", "as": "user"},
                     "params": {"command": "echo \"Hello, ${user.name}!\""}}
                ],
                "edges": [{"from": "fetch_users", "to": "greet_users"}]
            }),
        ),
        (
            "test_llm_templates.pflow.md",
            json!({
                "inputs": {
                    "topic": {"description": "Topic to write about.", "type": "string", "required": true},
                    "style": {"description": "Writing style.", "type": "string", "required": false,
                              "default": "professional"},
                    "max_words": {"description": "Maximum word count.", "type": "number", "required": false,
                                  "default": 50}
                },
                "nodes": [{"id": "generate", "type": "llm",
                           "purpose": "Generate text about a topic in the specified style and word count.",
                           "params": {"model": "claude-3.5-haiku", "temperature": 0.7, "max_tokens": 200,
                                      "prompt": "Write a ${style} explanation about ${topic} in exactly ${max_words} words. Be concise and clear."}}],
                "edges": [],
                "outputs": {
                    "response": {"description": "The LLM's response.", "type": "string"},
                    "llm_usage": {"description": "Token usage information.", "type": "object"}
                }
            }),
        ),
        (
            "nested/main-workflow.pflow.md",
            json!({
                "nodes": [
                    {"id": "process_title", "type": "workflow",
                     "purpose": "Process the document title using the text normalization sub-workflow.",
                     "params": {"workflow_ref": "./process-text.pflow.md",
                                "param_mapping": {"text": "${document_title}", "mode": "title"},
                                "output_mapping": {"normalized_text": "processed_title"}}},
                    {"id": "process_body", "type": "workflow",
                     "purpose": "Process the document body with scoped storage mode.",
                     "params": {"workflow_ref": "./process-text.pflow.md", "storage_mode": "mapped",
                                "param_mapping": {"text": "${document_body}", "mode": "lower"},
                                "output_mapping": {"normalized_text": "processed_body"}}}
                ],
                "edges": [{"from": "process_title", "to": "process_body"}]
            }),
        ),
        (
            "advanced/file-migration.pflow.md",
            json!({
                "nodes": [
                    {"id": "read_manifest", "type": "read-file",
                     "purpose": "Read the migration manifest describing which files to move.",
                     "params": {"file_path": "${migration_dir}/manifest.json"}},
                    {"id": "backup_destination", "type": "copy-file",
                     "purpose": "Back up the destination directory before overwriting anything.",
                     "params": {"source": "${destination_dir}", "destination": "${backup_dir}/${timestamp_destination}"}},
                    {"id": "process_files", "type": "test",
                     "purpose": "Process the file list from the manifest."},
                    {"id": "copy_new_files", "type": "copy-file",
                     "purpose": "Copy each new file to the destination directory.",
                     "params": {"source": "${source_dir}/${current_file}",
                                "destination": "${destination_dir}/${current_file}"}},
                    {"id": "move_old_files", "type": "move-file",
                     "purpose": "Move superseded files to the archive directory.",
                     "params": {"source": "${destination_dir}/${old_file}",
                                "destination": "${archive_dir}/${old_file}"}},
                    {"id": "cleanup_temp", "type": "delete-file",
                     "purpose": "Remove temporary files created during the migration.",
                     "params": {"file_path": "${temp_dir}/${temp_file}"}},
                    {"id": "write_report", "type": "write-file",
                     "purpose": "Write a summary report of the migration results.",
                     "params": {"file_path": "${reports_dir}/migration_${timestamp.log}",
                                "content": "Migration completed at ${timestamp}\nFiles copied: ${copied_count}\nFiles moved: ${moved_count}\nErrors: ${error_count}"}},
                    {"id": "handle_error", "type": "write-file",
                     "purpose": "Log errors that occur during migration for later investigation.",
                     "params": {"file_path": "${logs_dir}/error_${timestamp.log}",
                                "content": "Error during migration: ${error_message}\nTimestamp: ${timestamp}\nCurrent operation: ${current_operation}",
                                "append": true}}
                ],
                "edges": [
                    {"from": "read_manifest", "to": "backup_destination"},
                    {"from": "backup_destination", "to": "process_files"},
                    {"from": "process_files", "to": "copy_new_files"},
                    {"from": "copy_new_files", "to": "move_old_files"},
                    {"from": "move_old_files", "to": "cleanup_temp"},
                    {"from": "cleanup_temp", "to": "write_report"},
                    {"from": "write_report", "to": "handle_error"}
                ]
            }),
        ),
    ];
    for (rel, want) in cases {
        assert_eq!(to_json(&corpus.md_example(rel)), want, "{rel}");
    }
    // A multi-line item is YAML, and an item may follow the code blocks.
    let ir = to_json(&corpus.md_example("nodes/claude-code/claude-code-git-workflow.pflow.md"));
    let analyze = &ir["nodes"][2]["params"];
    assert_eq!(
        analyze["context"],
        json!({"diff": "${git_diff.diff}", "commits": "${git_log.commits}"})
    );
    assert_eq!(
        analyze["output_schema"]["breaking_changes"],
        json!({"type": "bool", "description": "Whether there are breaking changes"})
    );
    assert_eq!(
        analyze["task"],
        json!("Analyze these git changes and commit history to understand what was implemented")
    );
    let ir = to_json(&corpus.md_example("real-workflows/generate-changelog/workflow.pflow.md"));
    assert_eq!(
        ir["nodes"][1]["params"]["inputs"],
        json!({"since_tag": "${since_tag}", "latest_tag": "${get-latest-tag.stdout}"})
    );
    assert_eq!(ir["inputs"]["since_tag"]["default"], json!(""));
    assert_eq!(
        ir["nodes"][4]["batch"],
        json!({"items": "${gather-commit-data.result}", "parallel": true, "max_concurrent": 90, "error_handling": "continue"})
    );
    // Four-backtick fences hold ``` lines; the block is its lines, exactly.
    let prompt = ir["nodes"][4]["params"]["prompt"]
        .as_str()
        .unwrap_or_default();
    assert!(
        prompt
            .starts_with("Analyze this change for a user-facing changelog entry.\n\n## Context\n"),
        "{prompt}"
    );
    assert!(
        prompt.ends_with("Output ONLY the changelog line or SKIP line. Nothing else."),
        "{prompt}"
    );
}

/// The IR with what Markdown adds or cannot tell apart made equal: the placeholder prose
/// written for entries without any, empty params, no edges and `[]`, edge order and an
/// explicit default action.
fn comparable(ir: &Value) -> Value {
    let mut ir = match ir {
        Value::Object(m) if !m.contains_key("nodes") && m.contains_key("ir") => m["ir"].clone(),
        other => other.clone(),
    };
    let placeholder = json!("No description.");
    if let Some(nodes) = ir.get_mut("nodes").and_then(Value::as_array_mut) {
        for n in nodes.iter_mut().filter_map(Value::as_object_mut) {
            if n.get("purpose") == Some(&placeholder) {
                n.remove("purpose");
            }
            if n.get("params") == Some(&json!({})) {
                n.remove("params");
            }
        }
    }
    for k in ["inputs", "outputs"] {
        if let Some(m) = ir.get_mut(k).and_then(Value::as_object_mut) {
            for spec in m.values_mut().filter_map(Value::as_object_mut) {
                if spec.get("description") == Some(&placeholder) {
                    spec.remove("description");
                }
            }
        }
    }
    if let Some(top) = ir.as_object_mut() {
        top.entry("edges").or_insert_with(|| json!([]));
    }
    if let Some(edges) = ir.get_mut("edges").and_then(Value::as_array_mut) {
        for e in edges.iter_mut().filter_map(Value::as_object_mut) {
            if e.get("action") == Some(&json!("default")) {
                e.remove("action");
            }
        }
        edges.sort_by_key(|e| e.to_string());
    }
    ir
}

fn convert_to_file(from: &Path, to: &str, out: &Path) -> Output {
    run(&[&"convert", &from, &"--to", &to, &"-o", &out])
}

#[test]
fn json_examples_round_trip_through_markdown() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let md = dir.path().join("x.pflow.md");
    let back = dir.path().join("x.json");
    let all = files(&corpus.example(""), ".json");
    assert!(all.len() >= 50, "{all:?}");
    let mut converted = 0;
    for rel in &all {
        let out = convert_to_file(&corpus.example(rel), "md", &md);
        if NO_MARKDOWN_FORM.contains(&rel.as_str()) {
            assert_eq!(out.status.code(), Some(2), "{rel}");
            assert!(
                text(&out.stderr).contains("cannot be written as Markdown"),
                "{rel}: {}",
                text(&out.stderr)
            );
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{rel}:\n{}", text(&out.stderr));
        let out = convert_to_file(&md, "json", &back);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rel} back:\n{}\n{}",
            text(&out.stderr),
            read(&md)
        );
        let original: Value = corpus.read(rel);
        let again: Value = serde_json::from_str(&read(&back)).expect("JSON");
        assert_eq!(
            comparable(&again),
            comparable(&original),
            "{rel} via:\n{}",
            read(&md)
        );
        converted += 1;
    }
    assert_eq!(converted, all.len() - NO_MARKDOWN_FORM.len());
}

#[test]
fn markdown_examples_round_trip_through_json() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let md = dir.path().join("again.pflow.md");
    let all = files(&corpus.md_example(""), ".pflow.md");
    let refused = [
        "invalid/bare-code-block.pflow.md",
        "invalid/missing-description.pflow.md",
        "invalid/missing-steps.pflow.md",
        "invalid/unclosed-fence.pflow.md",
    ];
    for rel in &all {
        let src = corpus.md_example(rel);
        if refused.contains(&rel.as_str()) {
            let out = run(&[&"convert", &src, &"--to", &"json"]);
            assert_eq!(out.status.code(), Some(2), "{rel}");
            continue;
        }
        let first = to_json(&src);
        let out = convert_to_file(&src, "md", &md);
        assert_eq!(out.status.code(), Some(0), "{rel}:\n{}", text(&out.stderr));
        assert_eq!(to_json(&md), first, "{rel} via:\n{}", read(&md));
        // The JSON written back out converts to the same Markdown-born IR too.
        let json_file = dir.path().join("again.json");
        std::fs::write(&json_file, serde_json::to_string(&first).expect("JSON")).expect("write");
        let out = convert_to_file(&json_file, "md", &md);
        assert_eq!(out.status.code(), Some(0), "{rel}:\n{}", text(&out.stderr));
        assert_eq!(to_json(&md), first, "{rel} from JSON via:\n{}", read(&md));
    }
}

fn read(p: &PathBuf) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}
