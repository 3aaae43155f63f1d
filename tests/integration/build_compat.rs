//! Workflows written for the original Python pflow (`../shared/compat/pflow-examples`,
//! read in place, never copied into the project) build and give the results listed in
//! `../shared/compat/README.md`. Builds run with a temp dir as the working directory, so
//! files they write land there.

use crate::common;

use common::{Corpus, Workspace};
use serde_json::json;

fn build_compat(corpus: &Corpus, ws: &Workspace, rel: &str, args: &[&str]) -> common::BuildResult {
    let path = corpus.example(rel);
    ws.cmd()
        .workflow_file(path.to_str().unwrap())
        .args(args)
        .run()
}

#[test]
fn test_nested_index_gives_the_documented_results() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    // The file declares no outputs; add them in memory to read the node results back.
    let mut doc = corpus.read("test-nested-index.json");
    doc["outputs"] = json!({
        "processed": {"source": "${process-batch.results}"},
        "first": {"source": "${correlate-batch.results[0].stdout}"},
        "correlated": {"source": "${correlate-batch.results}"}
    });
    let ws = Workspace::new().workflow(doc);
    let r = ws.build(&[]);
    r.assert_ok();
    let stdouts: Vec<&str> = r
        .output("processed")
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(
        stdouts,
        [
            "Processing user alice (index 0) with score 85",
            "Processing user bob (index 1) with score 92",
            "Processing user charlie (index 2) with score 78",
        ]
    );
    assert_eq!(
        r.output("first"),
        "First user: Processing user alice (index 0) with score 85 (VIP)"
    );
    let correlated: Vec<&str> = r
        .output("correlated")
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(
        correlated[2],
        "Third user: Processing user charlie (index 2) with score 78 (New)"
    );

    // And the unmodified file builds as is.
    let plain = build_compat(&corpus, &ws, "test-nested-index.json", &[]);
    plain.assert_ok();
    assert_eq!(plain.status_of("generate-data"), "cached", "{plain}");
}

#[test]
fn simple_workflow_builds_offline() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ws = Workspace::new();
    let r = build_compat(&corpus, &ws, "simple-workflow.json", &[]);
    r.assert_ok();
    assert_eq!(r.status_of("greeting"), "ran");
    let again = build_compat(&corpus, &ws, "simple-workflow.json", &[]);
    assert_eq!(again.status_of("greeting"), "cached", "{again}");
}

#[test]
fn core_minimal_writes_its_file_in_the_working_directory() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ws = Workspace::new();
    let r = build_compat(&corpus, &ws, "core/minimal.json", &[]);
    r.assert_ok();
    assert_eq!(r.status_of("hello"), "ran");
    assert_eq!(ws.read("hello.txt"), "Hello, pflow!");
    assert!(!corpus.example("core/hello.txt").exists());
}

#[test]
fn demo_working_writes_the_message_to_output_txt() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ws = Workspace::new();
    let r = build_compat(
        &corpus,
        &ws,
        "interfaces/demo_working.json",
        &["message=hi"],
    );
    r.assert_ok();
    assert_eq!(ws.read("output.txt"), "hi");

    let missing = build_compat(&corpus, &ws, "interfaces/demo_working.json", &[]);
    missing.assert_code(2);
    let msg = missing.errors()[0]["message"].as_str().unwrap();
    assert!(
        msg.contains("message") && msg.contains("Message to write to file"),
        "{msg}"
    );

    let text = ws
        .cmd()
        .text()
        .workflow_file(
            corpus
                .example("interfaces/demo_working.json")
                .to_str()
                .unwrap(),
        )
        .arg("message=bye")
        .run();
    text.assert_ok();
    assert_eq!(ws.read("output.txt"), "bye");
}
