//! `pflow build WF --target NODE`: build those nodes and what they need, nothing else
//! (as `ninja target` or `just recipe`).

use crate::common;

use common::{counted, Workspace};
use serde_json::{json, Value};

/// a → b → c through templates; e after a through an edge; d on its own.
fn chain() -> Value {
    json!({
        "nodes": [
            {"id": "a", "type": "shell", "params": {"command": counted("a", "echo A")}},
            {"id": "b", "type": "shell", "params": {"command": counted("b", "cat; echo B"), "stdin": "${a.stdout}"}},
            {"id": "c", "type": "shell", "params": {"command": counted("c", "cat; echo C"), "stdin": "${b.stdout}"}},
            {"id": "d", "type": "shell", "params": {"command": counted("d", "echo D")}},
            {"id": "e", "type": "shell", "params": {"command": counted("e", "echo E")}}
        ],
        "edges": [{"from": "a", "to": "e"}],
        "outputs": {
            "from_b": {"source": "${b.stdout}"},
            "from_c": {"source": "${c.stdout}"}
        }
    })
}

fn ids(r: &common::BuildResult) -> Vec<String> {
    r.statuses().into_iter().map(|(id, _)| id).collect()
}

fn counts(ws: &Workspace) -> [usize; 5] {
    ["a", "b", "c", "d", "e"].map(|n| ws.count(n))
}

#[test]
fn a_target_builds_exactly_the_node_and_its_upstream() {
    let ws = Workspace::new().workflow(chain());
    let r = ws.build(&["--target", "b"]);
    r.assert_ok();
    assert_eq!(counts(&ws), [1, 1, 0, 0, 0]);
    assert_eq!(ids(&r), ["a", "b"], "{r}");
    // Outputs whose nodes were not built are left out; the others are there.
    assert_eq!(r.output("from_b"), "AB");
    assert!(r.doc()["outputs"].get("from_c").is_none(), "{r}");

    // Repeatable; what is already built is reused.
    let r = ws.build(&["--target", "c", "--target", "e"]);
    r.assert_ok();
    assert_eq!(counts(&ws), [1, 1, 1, 0, 1]);
    assert_eq!(ids(&r), ["a", "b", "c", "e"], "{r}");
    assert_eq!(r.status_of("b"), "cached");

    // The whole build then runs only what no target reached.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(counts(&ws), [1, 1, 1, 1, 1]);
    assert_eq!(r.with_status("ran"), ["d"]);
}

#[test]
fn dry_run_and_explain_honour_targets() {
    let ws = Workspace::new().workflow(chain());
    let r = ws.build(&["--dry-run", "--target", "b"]);
    r.assert_code(0);
    let planned: Vec<&str> = r.doc()["nodes"]
        .as_array()
        .expect("plan")
        .iter()
        .map(|s| s["id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(planned, ["a", "b"]);
    assert_eq!(counts(&ws), [0, 0, 0, 0, 0]);

    let r = ws.build_text(&["--dry-run", "--target", "c"]);
    r.assert_ok();
    assert!(r.stderr.contains("3 nodes: 3 would run"), "{r}");
    assert!(!r.stderr.contains(" d (shell)"), "{r}");

    let r = ws.build_text(&["--explain", "--target", "a"]);
    r.assert_ok();
    assert!(r.stderr.contains("1 node: 0 cached, 1 ran"), "{r}");
    assert_eq!(counts(&ws), [1, 0, 0, 0, 0]);
}

#[test]
fn an_unknown_target_is_an_argument_error_with_a_suggestion() {
    let ws = Workspace::new().workflow(chain());
    let r = ws.build(&["--target", "bb"]);
    r.assert_code(2);
    let msg = r.errors()[0].to_string();
    assert!(
        msg.contains("--target") && msg.contains("'bb'") && msg.contains("b"),
        "{msg}"
    );
    assert_eq!(counts(&ws), [0, 0, 0, 0, 0]);
}

#[test]
fn an_output_key_that_the_targets_do_not_build_is_an_argument_error() {
    let ws = Workspace::new().workflow(chain());
    let r = ws.build(&["--target", "b", "-o", "from_c"]);
    r.assert_code(2);
    let msg = r.errors()[0].to_string();
    assert!(msg.contains("from_c") && msg.contains("c"), "{msg}");
    assert_eq!(counts(&ws), [0, 0, 0, 0, 0]);
}

#[test]
fn a_target_brings_its_error_handler() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "risky", "type": "shell", "params": {"command": counted("risky", "exit 3")}},
            {"id": "recover", "type": "shell", "params": {"command": counted("recover", "echo ok")}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo other")}}
        ],
        "edges": [{"from": "risky", "to": "recover", "action": "error"}]
    }));
    let r = ws.build(&["--target", "risky"]);
    r.assert_ok();
    assert_eq!(r.status_of("risky"), "failed");
    assert_eq!(r.status_of("recover"), "ran");
    assert_eq!(
        (ws.count("risky"), ws.count("recover"), ws.count("other")),
        (1, 1, 0)
    );
}
