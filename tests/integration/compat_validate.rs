//! `pflow validate` on every workflow of the compatibility corpus
//! (`../shared/compat/pflow-examples`, written for the original Python pflow), with the
//! result `../shared/compat/README.md` asks for:
//!
//! - the listed good files validate (exit 0);
//! - `invalid/*` exit 2 naming the problem;
//! - `core/simple-pipeline.json` and `output_validation_demo.json` exit 2 naming the
//!   param or template that is wrong;
//! - every other file exits 2 naming its unsupported node type(s) and listing the
//!   supported ones.
//!
//! The corpus is read in place, never copied. A missing corpus fails the test.

use crate::common::{self, Corpus, Pflow};
use serde_json::Value;
use std::process::Output;

/// Node types pflow runs (DESIGN.md §1).
const SUPPORTED: &[&str] = &[
    "shell",
    "read-file",
    "write-file",
    "copy-file",
    "move-file",
    "delete-file",
    "http",
    "llm",
    "echo",
    "workflow",
];

/// Files with nested workflows whose children's node types are all supported: they
/// validate (in the original's repository layout, see [`validate`]), or name what is
/// wrong with the mapping.
const NESTED_VALID: &[&str] = &[
    "interfaces/run_simple_text.json",
    "interfaces/run_demo_working.json",
];
const NESTED_REJECTED: &[(&str, &[&str])] = &[(
    "interfaces/run_demo_missing_input.json",
    &["nodes[0].params.param_mapping", "needs input(s) 'message'"],
)];

const VALID: &[&str] = &[
    "simple-workflow.json",
    "core/minimal.json",
    "test-nested-index.json",
    "interfaces/demo_working.json",
    "interfaces/simple_text_workflow.json",
    "test_llm_templates.json",
    "batch-test.json",
    "batch-test-parallel.json",
    "real-workflows/webpage-to-markdown.json",
    "real-workflows/webpage-to-markdown-parallel.json",
    "real-workflows/webpage-to-markdown/workflow.json",
    "real-workflows/generate-changelog/workflow.json",
    "real-workflows/generate-changelog-simple/workflow.json",
    "test-worktree.json",
];

/// `invalid/*`: the problem each one must be reported with.
const INVALID: &[(&str, &[&str])] = &[
    (
        "invalid/bad-edge-ref.json",
        &["edges[0].to", "'middle'", "does not exist"],
    ),
    (
        "invalid/duplicate-ids.json",
        &["nodes[1].id", "duplicate node id 'processor'"],
    ),
    (
        "invalid/missing-version.json",
        &["nodes[0].type", "'test-node'", "supported types:"],
    ),
    (
        "invalid/wrong-types.json",
        &[
            "ir_version",
            "nodes: expected an array",
            "edges: expected an array",
        ],
    ),
];

/// Files that need the old implicit shared store: the wrong param or template is named.
const SHARED_STORE: &[(&str, &[&str])] = &[
    (
        "core/simple-pipeline.json",
        &[
            "nodes[1].params.source_path",
            "missing required param 'source_path'",
            "nodes[1].params.dest_path",
            "nodes[2].params.content",
            "missing required param 'content'",
        ],
    ),
    (
        "output_validation_demo.json",
        &[
            "nodes[0].params.file_path",
            "missing required param 'file_path'",
            "rename 'path' to 'file_path'",
            "nodes[1].params.prompt",
            "${content}",
        ],
    ),
];

/// Every `.json` file under the corpus, as paths relative to it, sorted.
fn corpus_files(corpus: &Corpus) -> Vec<String> {
    let root = corpus.example("");
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read corpus dir") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                let rel = path.strip_prefix(&root).expect("under root");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    out.sort();
    out
}

/// `pflow validate` from a directory laid out as the original's repository, where the
/// examples' `workflow_ref`s (`examples/interfaces/...`) resolve: a link, not a copy.
fn validate(corpus: &Corpus, rel: &str) -> Output {
    let dir = tempfile::tempdir().expect("temp dir");
    std::os::unix::fs::symlink(corpus.example(""), dir.path().join("examples")).expect("link");
    Pflow::new()
        .current_dir(dir.path())
        .arg("validate")
        .arg(corpus.example(rel))
        .output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn describe(rel: &str, out: &Output, problem: &str) -> String {
    format!(
        "{rel}: {problem}\n--- stdout:\n{}--- stderr:\n{}",
        text(&out.stdout),
        text(&out.stderr)
    )
}

/// Exit 2 and each substring on stderr (a crash fails the run in the harness).
fn expect_rejected(corpus: &Corpus, rel: &str, expected: &[String], failures: &mut Vec<String>) {
    let out = validate(corpus, rel);
    let stderr = text(&out.stderr);
    if out.status.code() != Some(2) {
        failures.push(describe(
            rel,
            &out,
            &format!("exit {:?}, expected 2", out.status.code()),
        ));
        return;
    }
    let missing: Vec<&String> = expected.iter().filter(|w| !stderr.contains(*w)).collect();
    if !missing.is_empty() {
        failures.push(describe(rel, &out, &format!("stderr lacks {missing:?}")));
    }
}

/// The node types in a workflow document (bare IR or the saved-workflow wrapper) and in
/// the workflows it nests (`rel` is where it is in the corpus).
fn node_types(corpus: &Corpus, rel: &str, doc: &Value) -> Vec<String> {
    let mut types = own_node_types(doc);
    for node in nodes_of(doc) {
        if node.get("type").and_then(Value::as_str) != Some("workflow") {
            continue;
        }
        let params = &node["params"];
        if params["workflow_ir"].is_object() {
            types.extend(own_node_types(&params["workflow_ir"]));
        } else if let Some(r) = params["workflow_ref"].as_str() {
            let child = match r.strip_prefix("examples/") {
                Some(from_root) => from_root.to_string(),
                None => std::path::Path::new(rel)
                    .parent()
                    .unwrap_or(std::path::Path::new(""))
                    .join(r.trim_start_matches("./"))
                    .to_string_lossy()
                    .into_owned(),
            };
            if let Some(doc) = std::fs::read(corpus.example(&child))
                .ok()
                .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
            {
                types.extend(node_types(corpus, &child, &doc));
            }
        }
    }
    types
}

fn nodes_of(doc: &Value) -> Vec<&Value> {
    let ir = match doc.get("ir") {
        Some(ir) if doc.get("nodes").is_none() => ir,
        _ => doc,
    };
    match ir.get("nodes") {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(Value::Object(m)) => m.values().collect(),
        _ => Vec::new(),
    }
}

fn own_node_types(doc: &Value) -> Vec<String> {
    nodes_of(doc)
        .iter()
        .filter_map(|n| n.get("type").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

#[test]
fn corpus_is_present_and_complete() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let files = corpus_files(&corpus);
    let listed = VALID
        .iter()
        .chain(NESTED_VALID)
        .chain(NESTED_REJECTED.iter().map(|(f, _)| f))
        .chain(INVALID.iter().map(|(f, _)| f))
        .chain(SHARED_STORE.iter().map(|(f, _)| f));
    for f in listed {
        assert!(
            files.iter().any(|x| x == f),
            "{f} is listed in ../shared/compat/README.md but missing from the corpus"
        );
    }
    let invalid_in_corpus = files.iter().filter(|f| f.starts_with("invalid/")).count();
    assert_eq!(
        invalid_in_corpus,
        INVALID.len(),
        "the corpus has invalid/* files this test does not check"
    );
    assert!(
        files.len() >= 40,
        "only {} files in the corpus",
        files.len()
    );
}

#[test]
fn listed_good_files_validate() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let mut failures = Vec::new();
    for rel in VALID.iter().chain(NESTED_VALID) {
        let out = validate(&corpus, rel);
        if out.status.code() != Some(0) {
            failures.push(describe(
                rel,
                &out,
                &format!("exit {:?}, expected 0", out.status.code()),
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn outputs_without_source_are_a_warning() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    for (rel, output) in [
        ("interfaces/demo_working.json", "outputs.status"),
        ("interfaces/simple_text_workflow.json", "outputs.success"),
    ] {
        let out = validate(&corpus, rel);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            describe(rel, &out, "not valid")
        );
        let stderr = text(&out.stderr);
        assert!(
            stderr.contains("warning:") && stderr.contains(output) && stderr.contains("no source"),
            "{}",
            describe(rel, &out, "no warning about the output without a source")
        );
    }
}

#[test]
fn invalid_files_name_the_problem() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let mut failures = Vec::new();
    for (rel, expected) in INVALID {
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expect_rejected(&corpus, rel, &expected, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn shared_store_workflows_name_the_param_or_template() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let mut failures = Vec::new();
    for (rel, expected) in SHARED_STORE.iter().chain(NESTED_REJECTED) {
        let expected: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        expect_rejected(&corpus, rel, &expected, &mut failures);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn everything_else_names_the_unsupported_types() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let special: Vec<&str> = VALID
        .iter()
        .chain(NESTED_VALID)
        .chain(NESTED_REJECTED.iter().map(|(f, _)| f))
        .copied()
        .chain(INVALID.iter().map(|(f, _)| *f))
        .chain(SHARED_STORE.iter().map(|(f, _)| *f))
        .collect();
    let mut failures = Vec::new();
    let mut checked = 0;
    for rel in corpus_files(&corpus) {
        if special.contains(&rel.as_str()) {
            continue;
        }
        checked += 1;
        let path = corpus.example(&rel);
        let doc: Value = match std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
        {
            Some(v) => v,
            None => {
                failures.push(format!("{rel}: not readable JSON"));
                continue;
            }
        };
        let mut unsupported: Vec<String> = node_types(&corpus, &rel, &doc)
            .into_iter()
            .filter(|t| !SUPPORTED.contains(&t.as_str()))
            .collect();
        unsupported.sort();
        unsupported.dedup();
        if unsupported.is_empty() {
            failures.push(format!(
                "{rel}: uses only supported node types, so it should be listed as valid or as a special case"
            ));
            continue;
        }
        let mut expected: Vec<String> = unsupported
            .iter()
            .map(|t| format!("unknown node type '{t}'"))
            .collect();
        expected.push(format!("supported types: {}", SUPPORTED.join(", ")));
        expect_rejected(&corpus, &rel, &expected, &mut failures);
    }
    assert!(
        checked >= 25,
        "only {checked} files fell under 'everything else'"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
