//! Failed nodes: what is reported, what keeps running, what a rebuild after the fix runs;
//! `error` edges to handlers.

use crate::common;

use common::{counted, live_processes_in_group, wait_for, BuildResult, Workspace};
use serde_json::json;
use std::time::Duration;

/// `needs` reads a file that does not exist yet; `after` depends on it; `free` is an
/// independent branch.
fn workspace_with_a_failing_node() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [
            {"id": "start", "type": "shell", "params": {"command": counted("start", "echo go")}},
            {"id": "needs", "type": "shell",
             "params": {"command": counted("needs", "cat input.txt"), "stdin": "${start.stdout}"}},
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo after ${needs.stdout}")}},
            {"id": "free", "type": "shell", "params": {"command": counted("free", "echo free")}}
        ],
        "outputs": {"out": {"source": "${after.stdout}"}}
    }))
}

#[test]
fn a_failed_node_fails_the_build_with_a_categorized_error() {
    let ws = workspace_with_a_failing_node();
    let r = ws.build(&[]);
    r.assert_code(1);
    assert_eq!(r.doc()["success"], false);
    assert_eq!(r.status_of("start"), "ran");
    assert_eq!(r.status_of("needs"), "failed");
    assert_eq!(r.status_of("after"), "skipped");
    assert_eq!(r.status_of("free"), "ran");
    assert_eq!(ws.count("after"), 0);

    let errors = r.errors();
    assert_eq!(errors.len(), 1, "{r}");
    let e = &errors[0];
    assert_eq!(e["node"], "needs");
    assert_eq!(e["category"], "shell");
    assert_eq!(e["repairable"], true);
    let msg = e["message"].as_str().unwrap();
    assert!(
        msg.contains("exit code 1") && msg.contains("input.txt"),
        "{msg}"
    );
    assert_eq!(r.stat("failed"), 1);
    assert_eq!(r.stat("skipped"), 1);
}

#[test]
fn after_fixing_the_cause_only_the_failed_node_and_its_dependents_run() {
    let ws = workspace_with_a_failing_node();
    ws.build(&[]).assert_code(1);

    ws.write("input.txt", "fixed");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["needs", "after"]);
    assert_eq!(r.with_status("cached"), ["start", "free"]);
    assert_eq!(r.output("out"), "after fixed");
    assert_eq!(
        (
            ws.count("start"),
            ws.count("needs"),
            ws.count("after"),
            ws.count("free")
        ),
        (1, 2, 1, 1)
    );
}

#[test]
fn a_failure_is_never_cached() {
    let ws = workspace_with_a_failing_node();
    ws.build(&[]).assert_code(1);
    let r = ws.build(&[]);
    r.assert_code(1);
    assert_eq!(r.status_of("needs"), "failed");
    assert_eq!(ws.count("needs"), 2);
}

#[test]
fn text_mode_failure_names_the_node_and_error_on_stderr() {
    let ws = workspace_with_a_failing_node();
    let r = ws.build_text(&[]);
    r.assert_code(1);
    assert!(r.stderr.contains("failed   needs"), "{r}");
    assert!(r.stderr.contains("error [shell]"), "{r}");
    assert!(
        r.stderr.contains("4 nodes: 0 cached, 2 ran, 1 failed"),
        "{r}"
    );
    assert_eq!(r.stdout, "", "no outputs on failure");
}

fn with_error_edge(command: &str) -> serde_json::Value {
    json!({
        "nodes": [
            {"id": "risky", "type": "shell", "params": {"command": counted("risky", command)}},
            {"id": "handler", "type": "shell",
             "params": {"command": counted("handler", "echo handled: ${risky.exit_code}")}}
        ],
        "edges": [{"from": "risky", "to": "handler", "action": "error"}]
    })
}

#[test]
fn an_error_edge_runs_the_handler_and_the_build_succeeds() {
    let ws = Workspace::new().workflow(with_error_edge("exit 3"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("risky"), "failed");
    assert_eq!(r.status_of("handler"), "ran");
    assert_eq!(
        r.errors().len(),
        0,
        "a handled failure is not a build error: {r}"
    );
    assert_eq!((ws.count("risky"), ws.count("handler")), (1, 1));
}

#[test]
fn an_error_handler_is_skipped_when_its_source_succeeds() {
    let ws = Workspace::new().workflow(with_error_edge("echo fine"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("risky"), "ran");
    assert_eq!(r.status_of("handler"), "skipped");
    assert_eq!(ws.count("handler"), 0);
    // And stays skipped (not failed, not run) on a cached rebuild.
    let again = ws.build(&[]);
    again.assert_ok();
    assert_eq!(again.status_of("risky"), "cached");
    assert_eq!(again.status_of("handler"), "skipped");
}

#[test]
fn a_failing_batch_item_reports_which_item() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{
            "id": "each", "type": "shell",
            "batch": {"items": ["ok", "bad", "ok2"]},
            "params": {"command": "test ${item} != bad"}
        }]
    }));
    let r = ws.build(&[]);
    r.assert_code(1);
    let e = &r.errors()[0];
    assert_eq!(e["node"], "each");
    assert_eq!(e["category"], "shell");
    assert!(e["message"].as_str().unwrap().contains("[1]"), "{r}");
}

#[test]
fn a_batch_with_continue_caches_its_good_items() {
    let batch = json!({
        "nodes": [{
            "id": "each", "type": "shell",
            "batch": {"items": ["a", "b", "c"], "error_handling": "continue"},
            "params": {"command": "echo run >> item-${item}.count; test ! -e block-${item}"}
        }]
    });
    let ws = Workspace::new().workflow(batch);
    ws.write("block-b", "");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.executions_of("each"), 3);
    assert!(r.reason_of("each").contains("1 item(s) failed"), "{r}");
    assert_eq!(
        ws.count("item-a") + ws.count("item-b") + ws.count("item-c"),
        3,
        "{r}"
    );

    // The failed item is not reused: the next build retries it, and only it.
    ws.remove("block-b");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("each"), "ran");
    assert_eq!(r.executions_of("each"), 1);
    assert_eq!(
        (ws.count("item-a"), ws.count("item-b"), ws.count("item-c")),
        (1, 2, 1)
    );
    let again = ws.build(&[]);
    assert_eq!(again.status_of("each"), "cached", "{again}");
}

#[test]
fn a_missing_file_for_read_file_is_a_missing_file_error() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "load", "type": "read-file", "params": {"file_path": "nope.txt"}}]
    }));
    let r = ws.build(&[]);
    r.assert_code(1);
    let e = &r.errors()[0];
    assert_eq!(e["category"], "missing_file");
    assert_eq!(e["repairable"], true);
    assert!(e["message"].as_str().unwrap().contains("nope.txt"), "{r}");

    ws.write("nope.txt", "here now");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("load"), "ran");
}

#[test]
fn a_timeout_kills_the_command_and_is_not_repairable() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "hang", "type": "shell",
                   "params": {"command": "echo $$ > hang.pid; sleep 20 | cat", "timeout": 0.5}}]
    }));
    let r = ws.build(&[]);
    r.assert_code(1);
    assert!(r.elapsed.as_secs_f64() < 10.0, "{:?}", r.elapsed);
    let e = &r.errors()[0];
    assert_eq!(e["category"], "timeout");
    assert_eq!(e["repairable"], false);
    assert!(e["message"].as_str().unwrap().contains("0.5"), "{r}");
    // The whole pipeline is gone, not just `sh`.
    let pgid: i32 = ws.read("hang.pid").trim().parse().unwrap();
    assert!(
        wait_for(Duration::from_secs(3), || live_processes_in_group(pgid)
            .is_empty()),
        "processes left: {:?}",
        live_processes_in_group(pgid)
    );
}

#[test]
fn a_handled_failure_on_rebuild_still_succeeds() {
    let ws = Workspace::new().workflow(with_error_edge("exit 3"));
    ws.build(&[]).assert_ok();
    let r = ws.build(&[]);
    r.assert_ok();
    // A failure is never cached, so the source runs again; the handler's input (the
    // failure it handles) is the same, so its result is reused.
    assert_eq!(r.status_of("risky"), "failed");
    assert_eq!(r.status_of("handler"), "cached");
    assert_eq!((ws.count("risky"), ws.count("handler")), (2, 1));
}

#[test]
fn after_a_fail_fast_batch_is_fixed_only_the_items_that_did_not_succeed_run() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{
            "id": "each", "type": "shell",
            // One at a time, so that fail-fast leaves item c unstarted.
            "batch": {"items": ["a", "b", "c"], "parallel": false},
            "params": {"command": "echo run >> item-${item}.count; test ! -e block-${item}"}
        }]
    }));
    ws.write("block-b", "");
    let r = ws.build(&[]);
    r.assert_code(1);
    assert_eq!(
        (ws.count("item-a"), ws.count("item-b"), ws.count("item-c")),
        (1, 1, 0)
    );

    ws.remove("block-b");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.executions_of("each"), 2);
    assert_eq!(
        (ws.count("item-a"), ws.count("item-b"), ws.count("item-c")),
        (1, 2, 1)
    );
}

/// A bug in pflow while the offload thread explains a miss (the debug build's hook
/// panics there) costs that node's reason in this build, not its explain record: the
/// next build tells what changed since this one, not since the build before.
#[test]
fn a_miss_whose_explanation_failed_inside_pflow_is_explained_against_it_next_time() {
    // `first` changes, so `second` misses, and explaining that fails inside pflow.
    let (ws, r) = second_missed_after_an_edit_with_a_bug_in("PFLOW_TEST_PANIC_IN_EXPLAIN");
    r.assert_ok();
    assert_eq!(r.status_of("second"), "ran", "{r}");
    let warned = r.doc()["warnings"].to_string();
    assert!(
        warned.contains("could not cache or explain the result of second: an internal error"),
        "{r}"
    );
    // Now only `second`'s own parameters change.
    ws.edit_workflow(|d| d["nodes"][1]["params"]["data"] = json!("x"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("first"), "cached", "{r}");
    assert_eq!(r.reason_of("second"), "param data added", "{r}");
}

/// A bug in pflow while a node runs (the debug build's hook panics there) fails that node
/// as an internal error, also when the reason of its miss was handed to the offload
/// thread first: the reason it tells later must not cover the failure.
#[test]
fn a_node_that_fails_inside_pflow_says_so_even_when_its_miss_is_explained_late() {
    // An edit: `second` misses, and what changed is told by the offload thread.
    let (_ws, r) = second_missed_after_an_edit_with_a_bug_in("PFLOW_TEST_PANIC_IN_NODE");
    r.assert_code(1);
    assert_eq!(r.status_of("first"), "ran", "{r}");
    assert_eq!(r.reason_of("first"), "param message changed", "{r}");
    assert_eq!(r.status_of("second"), "failed", "{r}");
    assert_eq!(r.reason_of("second"), "internal error", "{r}");
}

/// Two echoes built, then `first`'s message edited so that `second` misses, and built
/// again with the debug build's `hook` set to make pflow fail on `second`.
fn second_missed_after_an_edit_with_a_bug_in(hook: &str) -> (Workspace, BuildResult) {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "first", "type": "echo", "params": {"message": "one"}},
            {"id": "second", "type": "echo", "params": {"message": "${first.echo}"}}
        ]
    }));
    ws.build(&[]).assert_ok();
    ws.edit_workflow(|d| d["nodes"][0]["params"]["message"] = json!("two"));
    let r = ws
        .cmd()
        .env(hook, "second")
        .failing_inside_on_purpose()
        .run();
    (ws, r)
}
