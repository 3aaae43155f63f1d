//! Nested workflows: a `workflow` node's child runs as part of the parent's graph, each
//! child node cached on its own (`run/step`), with early cutoff across the boundary.

use crate::common::{self, counted, Workspace};
use serde_json::{json, Value};

/// A child that upper-cases its `text` input, counts its runs, and has a node that reads
/// no input at all.
fn child() -> Value {
    json!({
        "inputs": {"text": {"type": "string"}, "suffix": {"type": "string", "default": "!"}},
        "outputs": {
            "result": {"source": "${shout.stdout}"},
            "fixed": {"source": "${fixed.stdout}"}
        },
        "nodes": [
            {"id": "shout", "type": "shell",
             "params": {"command": counted("shout", "printf '%s%s' \"$T\" \"$S\" | tr a-z A-Z"),
                        "env": {"T": "${text}", "S": "${suffix}"}}},
            {"id": "fixed", "type": "shell", "params": {"command": counted("fixed", "echo constant")}},
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo ${shout.stdout} > after.txt")}}
        ]
    })
}

fn parent() -> Value {
    json!({
        "inputs": {"name": {"type": "string", "default": "world"}},
        "nodes": [
            {"id": "greet", "type": "shell", "params": {"command": counted("greet", "echo hello ${name}")}},
            {"id": "run", "type": "workflow",
             "params": {"workflow_ref": "./child.json",
                        "param_mapping": {"text": "${greet.stdout}"},
                        "output_mapping": {"result": "loud"}}},
            {"id": "show", "type": "shell", "params": {"command": counted("show", "echo got ${run.loud}")}}
        ],
        "outputs": {"final": {"source": "${show.stdout}"}}
    })
}

fn workspace() -> Workspace {
    let ws = Workspace::new().workflow(parent());
    ws.write("child.json", &child().to_string());
    ws
}

fn edit_child(ws: &Workspace, f: impl FnOnce(&mut Value)) {
    let mut doc: Value = serde_json::from_str(&ws.read("child.json")).unwrap();
    f(&mut doc);
    ws.write("child.json", &doc.to_string());
}

#[test]
fn the_child_runs_inside_the_parent_graph_and_its_outputs_reach_the_parent() {
    let ws = workspace();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("final"), "got HELLO WORLD!");
    assert_eq!(ws.read("after.txt").trim(), "HELLO WORLD!");
    // Every child node is a node of the build, named parent/child.
    for id in ["run/@inputs", "run/shout", "run/fixed", "run/after", "run"] {
        assert_eq!(r.status_of(id), "ran", "{id}: {r}");
    }
    assert_eq!(r.node("run")["type"], "workflow");

    let again = ws.build(&[]);
    again.assert_ok();
    assert!(again.with_status("ran").is_empty(), "{again}");
    let counts: Vec<usize> = ["greet", "shout", "fixed", "after", "show"]
        .iter()
        .map(|n| ws.count(n))
        .collect();
    assert_eq!(counts, vec![1, 1, 1, 1, 1]);

    let text = ws.build_text(&[]);
    assert!(text.stderr.contains("run/shout"), "{}", text.stderr);
    let graph = ws.pflow().arg("graph").arg("workflow.json").output();
    let graph = String::from_utf8_lossy(&graph.stdout).into_owned();
    assert!(
        graph.contains("run/shout") && graph.contains("run/@inputs"),
        "{graph}"
    );
}

#[test]
fn editing_one_child_node_reruns_only_it_and_what_depends_on_it() {
    let ws = workspace();
    ws.build(&[]).assert_ok();

    // `after` depends on `shout` and nothing depends on `after`: only it runs (its
    // output, empty, is unchanged: the workflow node and `show` stay cached).
    edit_child(&ws, |c| {
        c["nodes"][2]["params"]["command"] =
            json!(counted("after", "echo ${shout.stdout} edited > after.txt"));
    });
    let r = ws.build(&[]);
    r.assert_ok();
    let mut ran = r.with_status("ran");
    ran.sort();
    assert_eq!(ran, vec!["run/after".to_string()], "{r}");
    assert_eq!(ws.read("after.txt").trim(), "HELLO WORLD! edited");

    // `shout` feeds the mapped output: it, `after` and the parent's `show` run again.
    edit_child(&ws, |c| {
        c["nodes"][0]["params"]["command"] = json!(counted(
            "shout",
            "printf '%s%s?' \"$T\" \"$S\" | tr a-z A-Z"
        ));
    });
    let r = ws.build(&[]);
    r.assert_ok();
    let mut ran = r.with_status("ran");
    ran.sort();
    assert_eq!(ran, vec!["run", "run/after", "run/shout", "show"], "{r}");
    assert_eq!(r.output("final"), "got HELLO WORLD!?");
    assert_eq!((ws.count("greet"), ws.count("fixed")), (1, 1));
}

#[test]
fn a_parent_input_reruns_only_the_child_nodes_that_read_it() {
    let ws = workspace();
    ws.build(&[]).assert_ok();
    let r = ws.build(&["name=pflow"]);
    r.assert_ok();
    assert_eq!(r.output("final"), "got HELLO PFLOW!");
    assert_eq!(r.status_of("run/fixed"), "cached", "{r}");
    assert_eq!(r.status_of("run/shout"), "ran", "{r}");
    assert_eq!(ws.count("fixed"), 1);
}

#[test]
fn a_mapped_value_reaches_the_child_shell_as_data_not_code() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"text": {"type": "string"}},
        "nodes": [{"id": "run", "type": "workflow",
                   "params": {"workflow_ref": "child.json", "param_mapping": {"text": "${text}"}}}]
    }));
    ws.write(
        "child.json",
        &json!({
            "inputs": {"text": {"type": "string"}},
            "outputs": {"echoed": {"source": "${say.stdout}"}},
            "nodes": [{"id": "say", "type": "shell", "params": {"command": "echo ${text}"}}]
        })
        .to_string(),
    );
    let r = ws.build(&["text=$(touch pwned) ; touch pwned2"]);
    r.assert_ok();
    assert!(!ws.exists("pwned") && !ws.exists("pwned2"), "{r}");
}

#[test]
fn inline_saved_and_markdown_children() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "inline", "type": "workflow",
             "params": {"workflow_ir": {
                 "inputs": {"n": {"type": "number"}},
                 "outputs": {"twice": {"source": "${calc.stdout}"}},
                 "nodes": [{"id": "calc", "type": "shell", "params": {"command": "echo $((${n|raw} * 2))"}}]},
                        "param_mapping": {"n": 21}}},
            {"id": "saved", "type": "workflow",
             "params": {"workflow_name": "shouter", "param_mapping": {"text": "${inline.twice}"}}},
            {"id": "md", "type": "workflow",
             "params": {"workflow_ref": "./sub/child.pflow.md", "param_mapping": {"text": "${saved.result}"}}}
        ],
        "outputs": {"all": {"source": "${md.wrapped}"}}
    }));
    ws.write("shouter.json", &child().to_string());
    let saved = ws
        .pflow()
        .args(["workflow", "save", "shouter.json", "shouter"])
        .output();
    assert!(
        saved.status.success(),
        "{}",
        String::from_utf8_lossy(&saved.stderr)
    );
    ws.write(
        "sub/child.pflow.md",
        "# Wrap\n\nWraps its text in brackets.\n\n## Inputs\n\n### text\n\nThe text.\n\n- type: string\n\n\
         ## Steps\n\n### wrap\n\nBrackets.\n\n- type: shell\n\n```shell command\necho \"[${text}]\"\n```\n\n\
         ## Outputs\n\n### wrapped\n\nThe wrapped text.\n\n- source: ${wrap.stdout}\n",
    );
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("all"), "[42!]");
    assert_eq!(r.status_of("md/wrap"), "ran");
    assert_eq!(r.status_of("saved/shout"), "ran");
}

#[test]
fn problems_in_a_child_are_named_with_the_child_file_and_line() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "run", "type": "workflow", "params": {"workflow_ref": "child.json"}}]
    }));
    ws.write(
        "child.json",
        "{\n  \"nodes\": [\n    {\"id\": \"a\", \"type\": \"claude-code\"}\n  ]\n}\n",
    );
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nodes[0].params.workflow_ref")
            && err.contains("in nested workflow child.json")
            && err.contains("(line 3)")
            && err.contains("unknown node type 'claude-code'"),
        "{err}"
    );
}

#[test]
fn wrong_mappings_missing_files_cycles_and_depth_are_refused() {
    let ws = Workspace::new();
    ws.write("child.json", &child().to_string());
    let cases = [
        (
            json!({"id": "run", "type": "workflow", "params": {"workflow_ref": "child.json"}}),
            "needs input(s) 'text'",
        ),
        (
            json!({"id": "run", "type": "workflow",
                   "params": {"workflow_ref": "child.json", "param_mapping": {"text": "x", "txet": "y"}}}),
            "'txet' is not an input of nested workflow child.json",
        ),
        (
            json!({"id": "run", "type": "workflow",
                   "params": {"workflow_ref": "child.json", "param_mapping": {"text": "x"},
                              "output_mapping": {"nope": "x"}}}),
            "'nope' is not an output of nested workflow child.json",
        ),
        (
            json!([{"id": "run", "type": "workflow",
                    "params": {"workflow_ref": "child.json", "param_mapping": {"text": "x"}}},
                   {"id": "show", "type": "shell", "params": {"command": "echo ${run.reslut}"}}]),
            "template ${run.reslut}: workflow node 'run' has no output 'reslut'",
        ),
        (
            json!({"id": "run", "type": "workflow", "params": {"workflow_ref": "./missing.json"}}),
            "nested workflow file './missing.json' does not exist",
        ),
        (
            json!({"id": "run", "type": "workflow", "params": {"workflow_ref": "a.json"}}),
            "nested workflows refer to each other in a circle",
        ),
        (
            json!({"id": "run", "type": "workflow", "params": {"workflow_ir": {
                "strict_env": true, "nodes": [{"id": "x", "type": "echo"}]}}}),
            "asks for \"strict_env\": true, which this workflow does not",
        ),
        (
            json!({"id": "run", "type": "workflow", "params": {"workflow_ref": "${x}"}}),
            "is a template",
        ),
        (
            json!({"id": "run", "type": "workflow", "batch": {"items": [1, 2]},
                   "params": {"workflow_ref": "child.json", "param_mapping": {"text": "x"}}}),
            "'batch' is not supported on a workflow node",
        ),
    ];
    let a =
        json!({"nodes": [{"id": "b", "type": "workflow", "params": {"workflow_ref": "b.json"}}]});
    let b =
        json!({"nodes": [{"id": "a", "type": "workflow", "params": {"workflow_ref": "a.json"}}]});
    ws.write("a.json", &a.to_string());
    ws.write("b.json", &b.to_string());
    for (node, expected) in cases {
        let nodes = if node.is_array() { node } else { json!([node]) };
        ws.set_workflow(&json!({ "nodes": nodes }));
        let out = ws.pflow().args(["validate", "workflow.json"]).output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{expected}: {err}");
        assert!(err.contains(expected), "expected {expected:?} in:\n{err}");
    }

    // Nesting deeper than max_depth stops.
    let mut deep = json!({"nodes": [{"id": "x", "type": "echo"}]});
    for _ in 0..3 {
        deep = json!({"nodes": [{"id": "w", "type": "workflow", "params": {"workflow_ir": deep}}]});
    }
    ws.set_workflow(&json!({"nodes": [{"id": "top", "type": "workflow",
                                       "params": {"workflow_ir": deep, "max_depth": 2}}]}));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("deeper than max_depth"), "{err}");
}

#[test]
fn a_failing_child_node_fails_the_build_by_its_nested_id() {
    let ws = workspace();
    edit_child(&ws, |c| {
        c["nodes"][1]["params"]["command"] = json!("echo broken >&2; exit 3");
    });
    let r = ws.build(&[]);
    assert_ne!(r.code, 0, "{r}");
    assert_eq!(r.status_of("run/fixed"), "failed", "{r}");
    assert_eq!(r.status_of("show"), "skipped", "{r}");
}

/// The original pflow's examples that use nested workflows, laid out as in its
/// repository (`examples/...`, which their `workflow_ref`s name from its root): a link,
/// not a copy.
fn compat_layout(corpus: &common::Corpus) -> Workspace {
    let ws = Workspace::new();
    std::os::unix::fs::symlink(corpus.example(""), ws.file("examples")).expect("symlink");
    ws
}

#[test]
fn compat_nested_examples_build_offline() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ws = compat_layout(&corpus);
    for (file, node, written, text) in [
        (
            "examples/interfaces/run_simple_text.json",
            "run/writer",
            "test_output.txt",
            "Hello from pflow! This demonstrates workflow input declarations.",
        ),
        (
            "examples/interfaces/run_demo_working.json",
            "demo/writer",
            "output.txt",
            "Hello from pflow! This demonstrates workflow input validation and template resolution.",
        ),
    ] {
        let out = ws.pflow().args(["validate", file]).output();
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let r = ws.cmd().workflow_file(file).run();
        r.assert_ok();
        assert_eq!(ws.read(written), text);
        assert_eq!(r.status_of(node), "ran", "{r}");
        let again = ws.cmd().workflow_file(file).run();
        assert!(again.with_status("ran").is_empty(), "{again}");
    }
}

#[test]
fn compat_nested_examples_that_cannot_run_say_why() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let ws = compat_layout(&corpus);
    for (file, expected) in [
        (
            "examples/interfaces/run_demo_missing_input.json",
            vec!["nodes[0].params.param_mapping", "needs input(s) 'message'"],
        ),
        (
            "examples/nested/main-workflow.json",
            vec![
                "in nested workflow ./process-text.json",
                "unknown node type 'test'",
            ],
        ),
        (
            "examples/interfaces/simple_wrapper.json",
            vec![
                "in nested workflow examples/interfaces/text_analyzer.json",
                "unknown node type 'test'",
            ],
        ),
        (
            "examples/nested/isolated-processing.json",
            vec![
                "storage_mode \"scoped\" is not supported",
                "'scope_prefix' is not a param of workflow nodes",
            ],
        ),
    ] {
        let out = ws.pflow().args(["validate", file]).output();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{file}: {err}");
        for e in expected {
            assert!(err.contains(e), "{file}: expected {e:?} in:\n{err}");
        }
    }
}

#[test]
fn repair_leaves_a_failure_inside_a_nested_workflow_to_its_file() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "run", "type": "workflow", "params": {"workflow_ir": {
            "nodes": [{"id": "bad", "type": "shell", "params": {"command": "exit 3"}}]}}}]
    }));
    let out = ws
        .pflow()
        .arg("build")
        .arg("workflow.json")
        .arg("--cache-dir")
        .arg(ws.cache_dir())
        .output();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("repair not tried: node 'run/bad' belongs to a nested workflow"),
        "{err}"
    );
}

#[test]
fn a_secret_input_given_literally_is_redacted_like_any_secret() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "run", "type": "workflow", "params": {
            "param_mapping": {"api_token": "s3cr3t-value-42", "pin": "p1n-value-77"},
            "workflow_ir": {
                "inputs": {"api_token": {"type": "string"},
                           "pin": {"type": "string", "secret": true}},
                "nodes": [{"id": "use", "type": "shell",
                           "params": {"command": "echo \"bad token $T $P\" >&2; exit 1",
                                      "env": {"T": "${api_token}", "P": "${pin}"}}}]}}}]
    }));
    let r = ws.build_text(&[]);
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("bad token"), "{}", r.stderr);
    for secret in ["s3cr3t-value-42", "p1n-value-77"] {
        assert!(!r.stderr.contains(secret), "{secret}: {}", r.stderr);
        let json = ws.build(&[]);
        assert!(!json.stdout.contains(secret), "{secret}: {}", json.stdout);
    }
}

#[test]
fn pflow_nodes_describes_the_workflow_type() {
    let out = Workspace::new()
        .pflow()
        .args(["nodes", "workflow"])
        .output();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    for expected in [
        "workflow_ref",
        "param_mapping",
        "output_mapping",
        "max_depth",
        "the nested workflow's declared outputs",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}
