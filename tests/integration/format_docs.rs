//! The format reference (`docs/workflow-format.md`), `pflow nodes`, `pflow schema`,
//! `pflow completions` and `pflow man` tell the truth: every example in the reference is
//! valid, matches the schema and builds; the schema accepts every bundled workflow and
//! rejects the malformed ones; completions load in bash.

use crate::common::{Pflow, Workspace};
use serde_json::Value;
use std::path::Path;

fn repo(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn stdout_of(args: &[&str]) -> String {
    let out = Pflow::new().args(args).output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn schema() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(&stdout_of(&["schema"])).expect("schema is JSON");
    jsonschema::draft7::new(&schema).expect("a valid draft-07 schema")
}

/// The JSON examples of the reference, in order.
fn doc_examples() -> Vec<String> {
    let text = std::fs::read_to_string(repo("docs/workflow-format.md")).expect("the reference");
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("```json\n") {
        let body = &rest[start + 8..];
        let end = body.find("```").expect("a closed code block");
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

#[test]
fn every_example_in_the_reference_is_valid_matches_the_schema_and_builds() {
    let examples = doc_examples();
    assert!(examples.len() >= 6, "only {} examples", examples.len());
    let schema = schema();
    for (i, text) in examples.iter().enumerate() {
        let doc: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("example {i} is not JSON: {e}\n{text}"));
        let problems: Vec<String> = schema.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(
            problems.is_empty(),
            "example {i} breaks the schema: {problems:?}\n{text}"
        );
        let ws = Workspace::new().workflow(doc);
        let r = ws.build(&[]);
        r.assert_ok();
        assert_eq!(
            r.doc()["warnings"],
            serde_json::json!([]),
            "example {i}: {r}"
        );
        let again = ws.build(&[]);
        assert_eq!(again.stat("ran"), 0, "example {i} ran again: {again}");
    }
}

#[test]
fn the_reference_and_pflow_nodes_cover_every_node_type_and_param() {
    let reference = std::fs::read_to_string(repo("docs/workflow-format.md")).unwrap();
    let all: Value =
        serde_json::from_str(&stdout_of(&["nodes", "--output-format", "json"])).unwrap();
    let types = all.as_array().expect("a list of types");
    assert!(types.len() >= 9);
    let listing = stdout_of(&["nodes"]);
    for t in types {
        let name = t["type"].as_str().unwrap();
        assert!(
            reference.contains(&format!("| `{name}` |")),
            "{name} is not in the reference's table"
        );
        assert!(
            listing.lines().any(|l| l.starts_with(name)),
            "{name} not listed:\n{listing}"
        );
        let one = stdout_of(&["nodes", name]);
        for p in t["params"].as_array().unwrap() {
            let param = p["name"].as_str().unwrap();
            assert!(one.contains(param), "pflow nodes {name} lacks {param}");
            assert!(
                !p["description"].as_str().unwrap().is_empty(),
                "{name}.{param}"
            );
        }
    }
    let shell: Value =
        serde_json::from_str(&stdout_of(&["nodes", "shell", "--output-format", "json"])).unwrap();
    let command = &shell["params"][0];
    assert_eq!(
        (command["name"].as_str(), command["required"].as_bool()),
        (Some("command"), Some(true))
    );

    let out = Pflow::new().args(["nodes", "shel"]).output();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("did you mean 'shell'?"));
}

#[test]
fn the_schema_accepts_every_bundled_workflow_and_rejects_the_malformed_ones() {
    let schema = schema();
    for rel in [
        "fixtures/hello.json",
        "fixtures/pipeline.json",
        "fixtures/network/fetch-and-summarize.json",
    ] {
        let doc: Value =
            serde_json::from_str(&std::fs::read_to_string(repo(rel)).unwrap()).unwrap();
        let problems: Vec<String> = schema.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(problems.is_empty(), "{rel}: {problems:?}");
    }
    // What a schema can see: shapes. References, cycles, duplicate ids and templates are
    // `pflow validate`'s (listed, so that a new fixture must be placed on one side).
    let semantic = [
        "cycle-edges",
        "cycle-templates",
        "dangling-edge",
        "duplicate-ids",
        "item-outside-batch",
        "malformed-template",
        "node-without-field",
        "output-missing-node",
        "self-reference",
        "shell-variable",
        "start-node-missing",
        "two-stdin-inputs",
        "unknown-input-ref",
        "unknown-node-ref",
        "unknown-output-field",
    ];
    // Not JSON a schema can be given (deep-nesting is deeper than serde_json parses).
    let not_json = ["empty", "non-utf8", "syntax-error", "deep-nesting"];
    let mut rejected = 0;
    for entry in std::fs::read_dir(repo("fixtures/invalid")).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if not_json.contains(&stem.as_str()) {
            continue;
        }
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{stem}: {e}"));
        let valid = schema.is_valid(&doc);
        if semantic.contains(&stem.as_str()) {
            assert!(
                valid,
                "{stem} is listed as semantic but the schema rejects it"
            );
        } else {
            assert!(!valid, "the schema accepts fixtures/invalid/{stem}.json");
            rejected += 1;
        }
    }
    assert!(rejected >= 20, "{rejected}");
}

#[test]
fn a_workflow_naming_its_schema_is_valid() {
    let ws = Workspace::new();
    ws.write("pflow.schema.json", &stdout_of(&["schema"]));
    let mut doc: Value =
        serde_json::from_str(&std::fs::read_to_string(repo("fixtures/hello.json")).unwrap())
            .unwrap();
    doc["$schema"] = "./pflow.schema.json".into();
    let ws = ws.workflow(doc);
    ws.build(&[]).assert_ok();
}

#[test]
fn bash_completion_completes_subcommands_and_the_man_page_renders() {
    let script = stdout_of(&["completions", "bash"]);
    let ws = Workspace::new();
    ws.write("pflow.bash", &script);
    // Bash calls a completion function with the command, the word being completed and
    // the word before it.
    let complete = |words: &str, cword: usize, cur: &str, prev: &str| -> String {
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source ./pflow.bash; COMP_WORDS=({words}); COMP_CWORD={cword}; COMP_LINE='{words}'; COMP_POINT=${{#COMP_LINE}}; _pflow pflow '{cur}' '{prev}'; printf '%s\\n' \"${{COMPREPLY[@]}}\""
            ))
            .current_dir(ws.path())
            .output()
            .expect("bash runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let first = complete("pflow va", 1, "va", "pflow");
    assert_eq!(first.trim(), "validate", "{first}");
    let sub = complete("pflow cache ''", 2, "", "cache");
    for action in ["stats", "verify", "gc", "clear"] {
        assert!(
            sub.lines().any(|l| l == action),
            "{action} not offered: {sub}"
        );
    }

    let man = stdout_of(&["man"]);
    assert!(
        man.starts_with(".ie") || man.starts_with(".TH"),
        "{}",
        &man[..man.len().min(200)]
    );
    assert!(man.contains("pflow") && man.contains("build"));
}
