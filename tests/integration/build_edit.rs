//! The edit path: after an edit to a few nodes of a workflow the no-op record holds,
//! only what the edit reaches is parsed, validated and built, and the build reports
//! exactly what a full build of the edited workflow reports. Anything it cannot vouch
//! for takes the normal path.
//!
//! `PFLOW_DEBUG=1` is the observable: `debug: edit path used: N node(s) changed, M to
//! build`, and `debug: parsing FILE` when the whole workflow is parsed.

use crate::build_noop::{
    assert_served, cache_cmd, debug_build, parsed, prime, settle, timeless, without_durations,
};
use crate::common::{counted, node_line, wait_for, BuildResult, Workspace};
use serde_json::{json, Value};
use std::time::Duration;

/// Two independent branches joined at the end; shell steps count their runs.
fn branches() -> Value {
    json!({
        "inputs": {"who": {"type": "string", "required": false, "default": "world"}},
        "nodes": [
            {"id": "a", "type": "shell", "params": {"command": counted("a", "echo a-${who}")}},
            {"id": "b", "type": "echo", "params": {"message": "b:${a.stdout}"}},
            {"id": "c", "type": "shell", "params": {"command": counted("c", "echo c")}},
            {"id": "d", "type": "shell", "params": {"command": counted("d", "echo d:${b.echo}")}},
            {"id": "e", "type": "echo", "params": {"message": "e:${c.stdout}"}},
            {"id": "f", "type": "echo", "params": {"message": "f:${d.stdout}+${e.echo}"}}
        ],
        "outputs": {"out": {"source": "${f.echo}"}}
    })
}

fn used_edit_path(r: &BuildResult) -> bool {
    r.stderr.contains("debug: edit path used")
}

#[track_caller]
fn assert_edit_path(r: &BuildResult, changed: usize, reached: usize) {
    let line = format!("debug: edit path used: {changed} node(s) changed, {reached} to build");
    assert!(
        r.stderr.contains(&line) && !parsed(r),
        "not the edit path ({line}): {r}"
    );
}

#[track_caller]
fn assert_normal_path(r: &BuildResult) {
    assert!(parsed(r) && !used_edit_path(r), "not the normal path: {r}");
}

/// Take the normal path next time: no record.
fn forget_record(ws: &Workspace) {
    let state = ws.cache_dir().join("state");
    for entry in std::fs::read_dir(&state).expect("state folder") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "noop2") {
            std::fs::remove_file(path).expect("remove the record");
        }
    }
}

/// The same edit in two primed workspaces, one built by the edit path and one by the
/// normal path: `(edit path, normal path)` results, JSON and text.
fn both_ways(
    doc: &Value,
    edit: impl Fn(&mut Value),
    args: &[&str],
) -> (BuildResult, BuildResult, Workspace, Workspace) {
    let fast = Workspace::new().workflow(doc.clone());
    let full = Workspace::new().workflow(doc.clone());
    prime(&fast, args);
    prime(&full, args);
    fast.edit_workflow(&edit);
    full.edit_workflow(&edit);
    forget_record(&full);
    let a = debug_build(&fast, args);
    let b = debug_build(&full, args);
    (a, b, fast, full)
}

#[test]
fn an_edit_builds_only_what_it_reaches_and_reports_what_a_full_build_reports() {
    let edit = |d: &mut Value| d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}");
    let (fast, full, fws, nws) = both_ways(&branches(), edit, &[]);
    assert_edit_path(&fast, 1, 3);
    assert_normal_path(&full);
    fast.assert_ok();
    assert_eq!(fast.output("out"), "f:d:B:a-world+e:c", "{fast}");
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
    // b ran, d (its reader) ran again, c and a did not.
    for (ws, path) in [(&fws, "edit"), (&nws, "normal")] {
        let runs: Vec<usize> = ["a", "c", "d"].iter().map(|n| ws.count(n)).collect();
        assert_eq!(runs, vec![1, 1, 2], "{path} path");
    }
    assert_eq!(fast.status_of("d"), "ran");
    assert_eq!(fast.status_of("c"), "cached");
    // And the stats count it as the full build does: 3 ran (b, d, f), 3 reused.
    let counts = last_stats(&fws);
    assert_eq!(counts, last_stats(&nws));
    assert_eq!(
        (&counts["hits"], &counts["misses"]),
        (&json!(3), &json!(3)),
        "{counts}"
    );
}

#[test]
fn a_workflow_written_again_unchanged_is_built_by_the_edit_path_as_a_no_op_then_served() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    let served = debug_build(&ws, &[]);
    assert_served(&served);
    // The same bytes written again: another identity (the no-op path no longer hashes
    // a file written since its record), nothing changed.
    let doc = ws.current_workflow();
    ws.set_workflow(&doc);
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 0, 0);
    assert_eq!(
        without_durations(r.doc().clone()),
        without_durations(served.doc().clone())
    );
    assert_eq!(["a", "c", "d"].map(|n| ws.count(n)), [1, 1, 1]);
    assert_served(&debug_build(&ws, &[]));
    // And an edit is still found, by bytes.
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert_eq!(r.output("out"), "f:d:b:a-world+E:c", "{r}");
}

/// The no-op path's second look at a file the edit path turned away.
const COMPARING: &str = "debug: no-op record: comparing the workflow's bytes";

#[test]
fn a_workflow_written_again_unchanged_that_the_edit_path_turns_away_is_still_a_no_op() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    assert_served(&debug_build(&ws, &[]));
    // Without the kept copy of the text, the edit path cannot compare: it turns the
    // file, written again since the record, away without looking at its bytes.
    let copies = state_files(&ws, ".text");
    assert!(!copies.is_empty(), "no kept copy to take away");
    for p in copies {
        std::fs::remove_file(p).expect("remove the kept copy");
    }
    let doc = ws.current_workflow();
    ws.set_workflow(&doc);
    // So the no-op path looks again, at the bytes: the same, a no-op.
    let r = debug_build(&ws, &[]);
    assert_served(&r);
    assert!(
        r.stderr
            .contains("edit path is not for it: no copy of the recorded workflow"),
        "{r}"
    );
    assert!(r.stderr.contains(COMPARING), "{r}");
    assert_eq!(["a", "c", "d"].map(|n| ws.count(n)), [1, 1, 1]);
    assert_eq!(r.output("out"), "f:d:b:a-world+e:c", "{r}");
}

#[test]
fn a_replaced_record_is_kept_as_a_spare_written_over_next_and_gc_removes_it() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    let spares = |ws: &Workspace| {
        let mut s = state_files(ws, ".noop2.spare-a");
        s.extend(state_files(ws, ".noop2.spare-b"));
        s
    };
    let mut files = std::collections::BTreeSet::new();
    for k in 0..4 {
        let message = format!("b{k}:${{a.stdout}}");
        ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!(message));
        let r = debug_build(&ws, &[]);
        assert_edit_path(&r, 1, 3);
        assert_eq!(
            r.output("out"),
            &json!(format!("f:d:b{k}:a-world+e:c")),
            "{r}"
        );
        // The record and its spares take turns: a few files, not a new one each build.
        let kept = spares(&ws);
        assert!(kept.len() <= 2, "{kept:?}");
        use std::os::unix::fs::MetadataExt;
        for p in kept.iter().chain(&state_files(&ws, ".noop2")) {
            files.insert(std::fs::metadata(p).expect("there").ino());
        }
    }
    assert!(files.len() <= 3, "{files:?}");
    assert_served(&debug_build(&ws, &[]));
    // A build that fails takes the record away and writes none: it stays a spare.
    ws.edit_workflow(|d| d["nodes"][2]["params"]["command"] = json!(counted("c", "exit 3")));
    debug_build(&ws, &[]).assert_code(1);
    assert!(state_files(&ws, ".noop2").is_empty());
    assert!(!spares(&ws).is_empty());
    cache_cmd(&ws, &["gc"]);
    assert_eq!(spares(&ws), Vec::<std::path::PathBuf>::new());
    ws.edit_workflow(|d| d["nodes"][2]["params"]["command"] = json!(counted("c", "echo c")));
    let r = debug_build(&ws, &[]);
    r.assert_ok();
    assert_eq!(r.output("out"), "f:d:b3:a-world+e:c", "{r}");
}

/// The files of the cache's `state` folder whose names end with `suffix`.
fn state_files(ws: &Workspace, suffix: &str) -> Vec<std::path::PathBuf> {
    walkdir(&ws.cache_dir().join("state"))
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// The counts of the last build's line in the cache's stats (what `pflow cache stats`
/// sums), without its times and ids.
fn last_stats(ws: &Workspace) -> Value {
    let text = std::fs::read_to_string(ws.cache_dir().join("build-stats.jsonl"))
        .expect("the cache's stats");
    let mut line: Value =
        serde_json::from_str(text.lines().last().expect("a line")).expect("a JSON line");
    let obj = line.as_object_mut().expect("an object");
    for volatile in ["run_id", "time_ms", "duration_ms", "time_saved_ms"] {
        obj.remove(volatile);
    }
    line
}

#[test]
fn the_text_report_is_the_full_builds() {
    // d is a command: -v shows what it prints as it prints it.
    let edit = |d: &mut Value| {
        d["nodes"][3]["params"]["command"] =
            json!(counted("d", "echo D:${b.echo}; echo warned >&2"))
    };
    let fast = Workspace::new().workflow(branches());
    let full = Workspace::new().workflow(branches());
    prime(&fast, &[]);
    prime(&full, &[]);
    fast.edit_workflow(edit);
    full.edit_workflow(edit);
    forget_record(&full);
    let text = |ws: &Workspace| ws.cmd().text().arg("-v").env("PFLOW_DEBUG", "1").run();
    let (a, b) = (text(&fast), text(&full));
    assert_edit_path(&a, 1, 2);
    assert_normal_path(&b);
    assert!(
        a.stderr.contains("D:b:a-world") && a.stderr.contains("warned"),
        "{a}"
    );
    let lines = |r: &BuildResult| {
        let mut out: Vec<String> = timeless(&r.stderr)
            .lines()
            .filter(|l| !l.starts_with("debug:"))
            .map(str::to_string)
            .collect();
        // Lines come in the order nodes finished.
        out.sort();
        (out, r.stdout.clone())
    };
    assert_eq!(lines(&a), lines(&b));
}

#[test]
fn while_an_edited_step_runs_the_other_nodes_lines_are_already_shown() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| {
        d["nodes"][3]["params"]["command"] =
            json!(counted("d", "touch d.started; sleep 3; echo D:${b.echo}"))
    });
    let running = ws.cmd().text().arg("-v").env("PFLOW_DEBUG", "1").start();
    let said = |who: &str| node_line(&running.stderr_so_far(), "cached", who).is_some();
    assert!(wait_for(Duration::from_secs(20), || ws.exists("d.started")));
    // d sleeps for 3 s: the lines of c and e, which the edit did not reach, are out.
    let shown = wait_for(Duration::from_secs(2), || said("c") && said("e"));
    let r = running.wait(Duration::from_secs(20));
    assert!(shown, "nothing shown while d ran: {r}");
    assert_edit_path(&r, 1, 2);
    r.assert_ok();
}

#[test]
fn after_an_edit_the_next_build_is_a_no_op_and_another_edit_takes_the_edit_path() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert!(r.stderr.contains("no-op record written"), "{r}");
    settle();
    assert_served(&debug_build(&ws, &[]));
    // Put back: its old result is still in the cache.
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("e:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert_eq!(r.with_status("ran"), Vec::<String>::new(), "{r}");
    assert_eq!(r.output("out"), "f:d:b:a-world+e:c");
}

#[test]
fn an_edit_whose_first_changed_node_reaches_more_than_half_is_turned_away_there_and_built_whole() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // a reaches a, b, d and f: four of six, known from the first byte that differs
    // (the rest of the file is not compared).
    ws.edit_workflow(|d| d["nodes"][0]["params"]["command"] = json!(counted("a", "echo A-${who}")));
    let r = debug_build(&ws, &[]);
    assert!(
        r.stderr.contains("the edit reaches at least 4 of 6 nodes"),
        "{r}"
    );
    assert_normal_path(&r);
    r.assert_ok();
    assert_eq!(r.output("out"), "f:d:b:A-world+e:c");
    assert_eq!((ws.count("a"), ws.count("c"), ws.count("d")), (2, 1, 2));
}

/// What a build prints when its record found the nodes by reading the file as an edit
/// of the kept copy, not by cutting the whole text.
const FROM_STRETCH: &str = "debug: edit base: the nodes found from the edit's stretch";

#[test]
fn an_edit_turned_away_leaves_a_record_made_from_its_stretch_that_the_next_edit_uses() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // a's text grows: every node after it moves, and the record must say where to.
    ws.edit_workflow(|d| {
        d["nodes"][0]["params"]["command"] = json!(counted("a", "echo A-longer-${who}"))
    });
    let r = debug_build(&ws, &[]);
    assert!(r.stderr.contains("the edit reaches at least 4 of 6"), "{r}");
    assert_normal_path(&r);
    assert!(r.stderr.contains(FROM_STRETCH), "{r}");
    // The new text is kept as a splice over the copy the edit was compared with, not
    // as a copy of all of it.
    assert_eq!(state_files(&ws, ".text.delta").len(), 1);
    settle();
    assert_served(&debug_build(&ws, &[]));
    // A later edit after a: found where the record says, built as a full build would.
    let edit = |d: &mut Value| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}");
    ws.edit_workflow(edit);
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert_eq!(r.with_status("ran"), ["e", "f"], "{r}");
    assert_eq!(r.output("out"), "f:d:b:A-longer-world+E:c");
    let full = Workspace::new().workflow(ws.current_workflow());
    assert_eq!(full.build(&[]).output("out"), r.output("out"));
    assert_eq!((ws.count("a"), ws.count("c"), ws.count("d")), (2, 1, 2));
}

#[test]
fn a_build_with_other_inputs_finds_its_nodes_from_the_kept_copy_and_the_next_edit_uses_them() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // Another input: the no-op record does not hold, but its copy of the text (the
    // same text) and where its nodes are make the new record's.
    let r = debug_build(&ws, &["who=ada"]);
    assert!(
        r.stderr
            .contains("inputs, flags, environment or pflow changed"),
        "{r}"
    );
    assert_normal_path(&r);
    assert!(r.stderr.contains(FROM_STRETCH), "{r}");
    assert_eq!(r.output("out"), "f:d:b:a-ada+e:c");
    // The same text: its copy is kept as it was, no splice written.
    assert!(state_files(&ws, ".text.delta").is_empty());
    settle();
    assert_served(&debug_build(&ws, &["who=ada"]));
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    let r = debug_build(&ws, &["who=ada"]);
    assert_edit_path(&r, 1, 2);
    assert_eq!(r.output("out"), "f:d:b:a-ada+E:c", "{r}");
    // No edit reached far: no build kept compiled forms (they are for such edits).
    assert!(state_files(&ws, ".forms").is_empty());
}

#[test]
fn a_build_after_the_cache_was_collected_makes_its_record_from_the_kept_copy() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // Every entry evicted (by size: an age would take the records too): the cache's
    // generation moves, the records and the copy stay.
    cache_cmd(&ws, &["gc", "--max-size", "0"]);
    let r = debug_build(&ws, &[]);
    assert!(
        r.stderr
            .contains("the cache was cleared, collected or fixed"),
        "{r}"
    );
    assert!(r.stderr.contains(FROM_STRETCH), "{r}");
    assert_eq!(r.output("out"), "f:d:b:a-world+e:c");
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    assert_edit_path(&debug_build(&ws, &[]), 1, 2);
}

#[test]
fn another_pflows_record_does_not_tell_this_one_where_the_nodes_are() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // Another executable (a copy: its own identity) finds the nodes itself.
    let out = ws
        .pflow_copied_to("pflow-other")
        .args(["build", "workflow.json", "--no-repair", "--cache-dir"])
        .arg(ws.cache_dir())
        .env("PFLOW_DEBUG", "1")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("inputs, flags, environment or pflow changed"),
        "{stderr}"
    );
    assert!(stderr.contains("no-op record written"), "{stderr}");
    assert!(!stderr.contains(FROM_STRETCH), "{stderr}");
}

#[test]
fn an_edit_turned_away_after_the_whole_text_was_compared_leaves_a_record_from_its_stretch() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // b (the first that differs) reaches three of six, not more than half; with c the
    // edit reaches five, known only once the whole text is compared.
    ws.edit_workflow(|d| {
        d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}");
        d["nodes"][2]["params"]["command"] = json!(counted("c", "echo C-longer"));
    });
    let r = debug_build(&ws, &[]);
    assert!(r.stderr.contains("the edit reaches 5 of 6 nodes"), "{r}");
    assert!(r.stderr.contains(FROM_STRETCH), "{r}");
    assert_eq!(r.output("out"), "f:d:B:a-world+e:C-longer");
    ws.edit_workflow(|d| {
        d["nodes"][3]["params"]["command"] = json!(counted("d", "echo D:${b.echo}"))
    });
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert_eq!(r.output("out"), "f:D:B:a-world+e:C-longer", "{r}");
}

#[test]
fn an_edit_turned_away_that_adds_a_node_leaves_a_record_of_the_whole_text() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // a changed and a node added after f: the stretch from a to the end is no longer
    // as many nodes, so the record cuts the whole text into nodes again.
    ws.edit_workflow(|d| {
        d["nodes"][0]["params"]["command"] = json!(counted("a", "echo A-${who}"));
        d["nodes"].as_array_mut().expect("nodes").push(
            json!({"id": "g", "type": "shell", "params": {"command": counted("g", "echo g")}}),
        );
    });
    let r = debug_build(&ws, &[]);
    assert!(r.stderr.contains("the edit reaches at least"), "{r}");
    assert_normal_path(&r);
    r.assert_ok();
    assert!(!r.stderr.contains(FROM_STRETCH), "{r}");
    assert!(r.stderr.contains("no-op record written"), "{r}");
    assert!(
        state_files(&ws, ".text.delta").is_empty(),
        "a whole copy, no splice"
    );
    assert_eq!(ws.count("g"), 1);
    // The record holds g where it is: an edit of g alone is found and built.
    ws.edit_workflow(|d| d["nodes"][6]["params"]["command"] = json!(counted("g", "echo G")));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 1);
    assert_eq!(r.with_status("ran"), ["g"], "{r}");
    assert_eq!(ws.count("g"), 2);
}

#[test]
fn space_put_before_a_node_that_reaches_more_than_half_is_not_taken_for_a_change_to_it() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // The first byte that differs is a's opening brace: a's own text did not change.
    let text = ws.read(crate::common::WORKFLOW);
    let nodes = text.find("\"nodes\"").expect("a nodes member");
    let a = nodes + text[nodes..].find('{').expect("a first node");
    ws.write(
        crate::common::WORKFLOW,
        &format!("{} {}", &text[..a], &text[a..]),
    );
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 0, 0);
    assert_eq!(["a", "c", "d"].map(|n| ws.count(n)), [1, 1, 1]);
}

#[test]
fn a_text_build_that_shows_no_reasons_still_records_what_the_next_one_explains_against() {
    // A text build without --explain works out no miss's reason (it shows none), but
    // keeps each node's explain record: the next build that reports reasons compares
    // with that build, not the one before it. On the edit path and the normal path.
    for normal in [false, true] {
        let ws = Workspace::new().workflow(branches());
        prime(&ws, &[]);
        ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}"));
        if normal {
            forget_record(&ws);
        }
        let r = ws.cmd().text().env("PFLOW_DEBUG", "1").run();
        r.assert_ok();
        assert_eq!(used_edit_path(&r), !normal, "{r}");
        let b = r
            .stderr
            .lines()
            .find(|l| l.split_whitespace().take(2).eq(["ran", "b"]));
        assert!(
            b.is_some_and(|l| !l.contains('—')),
            "b ran, no reason shown: {r}"
        );
        // Since then only a changed: b's message is as that build recorded it.
        ws.edit_workflow(|d| {
            d["nodes"][0]["params"]["command"] = json!(counted("a", "echo A-${who}"))
        });
        let r = ws.build(&[]);
        r.assert_ok();
        assert_eq!(r.reason_of("a"), "param command changed", "{r}");
        assert_eq!(r.status_of("b"), "ran");
        assert_eq!(
            r.reason_of("b"),
            "upstream a changed",
            "normal path: {normal}; {r}"
        );
    }
}

#[test]
fn the_next_build_compares_with_what_an_edit_recorded_not_with_the_build_before_it() {
    // The edit path saves what it decided as deltas beside the build records (see
    // `cache::delta`): the next build must read them over the older rows.
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}"));
    assert_edit_path(&debug_build(&ws, &[]), 1, 3);
    let deltas = state_files(&ws, ".delta.bin").len();
    assert_eq!(deltas, 2, "the build and explain records' deltas");
    // Since the edit, only a changed: b's message is as that build recorded it.
    ws.edit_workflow(|d| d["nodes"][0]["params"]["command"] = json!(counted("a", "echo A-${who}")));
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.reason_of("a"), "param command changed");
    assert_eq!(r.status_of("b"), "ran");
    assert_eq!(r.reason_of("b"), "upstream a changed", "{r}");
    assert_eq!(r.output("out"), "f:d:B:A-world+e:c");
    assert_eq!((ws.count("a"), ws.count("c"), ws.count("d")), (2, 1, 3));
}

#[test]
fn edits_one_after_another_are_each_found_against_the_text_the_one_before_kept() {
    // After an edit, the copy of the workflow's text is kept as a splice over the copy
    // before it (see `cache::kept_text`): each next edit is compared with that.
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    assert_edit_path(&debug_build(&ws, &[]), 1, 2);
    let splices = || state_files(&ws, ".text.delta");
    assert_eq!(splices().len(), 1, "the edit is kept as a splice");
    ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 3);
    assert_eq!(r.with_status("ran"), ["b", "d", "f"], "{r}");
    assert_eq!(r.output("out"), "f:d:B:a-world+E:c");
    // Put back: both earlier results are still in the cache.
    ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!("b:${a.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 3);
    assert_eq!(r.with_status("ran"), Vec::<String>::new(), "{r}");
    assert_eq!(r.output("out"), "f:d:b:a-world+E:c");
    // A damaged splice is not compared with: the normal path, and still right.
    let splice = &splices()[0];
    let mut bytes = std::fs::read(splice).expect("splice");
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(splice, bytes).expect("damage it");
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("e:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_normal_path(&r);
    assert!(r.stderr.contains("no copy of the recorded workflow"), "{r}");
    assert_eq!(r.output("out"), "f:d:b:a-world+e:c");
    assert_eq!((ws.count("a"), ws.count("c"), ws.count("d")), (1, 1, 2));
}

#[test]
fn an_edit_that_breaks_a_reference_gets_the_normal_builds_error() {
    let edit = |d: &mut Value| d["nodes"][1]["params"]["message"] = json!("${nope.stdout}");
    let (fast, full, _, _) = both_ways(&branches(), edit, &[]);
    fast.assert_code(2);
    assert_normal_path(&fast);
    assert_eq!(fast.doc()["errors"], full.doc()["errors"]);
    assert!(
        fast.errors()[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("'nope' is not a workflow input or a node id")),
        "{fast}"
    );
}

#[test]
fn an_edit_that_closes_a_cycle_is_refused() {
    // a now reads f, which reads (through d and b) a.
    let edit = |d: &mut Value| d["nodes"][0]["params"]["command"] = json!("echo ${f.echo}");
    let (fast, full, _, _) = both_ways(&branches(), edit, &[]);
    fast.assert_code(2);
    assert_eq!(fast.doc()["errors"], full.doc()["errors"]);
    assert!(fast.to_string().contains("cycle"), "{fast}");
}

#[test]
fn an_edit_that_warns_is_built_and_warned_about_as_a_full_build_does() {
    let edit = |d: &mut Value| d["nodes"][4]["params"]["mesage"] = json!("typo");
    let (fast, full, ws, _) = both_ways(&branches(), edit, &[]);
    assert_normal_path(&fast);
    fast.assert_ok();
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
    let r = ws.cmd().text().env("PFLOW_DEBUG", "1").run();
    assert!(
        r.stderr.contains("warning:") && r.stderr.contains("mesage"),
        "{r}"
    );
}

#[test]
fn an_edit_that_reads_another_node_is_built_with_it() {
    // e now reads a too: a is not downstream of the edit, its result is known.
    let edit = |d: &mut Value| d["nodes"][4]["params"]["message"] = json!("${a.stdout}${c.stdout}");
    let (fast, full, _, _) = both_ways(&branches(), edit, &[]);
    assert_edit_path(&fast, 1, 2);
    fast.assert_ok();
    assert_eq!(fast.output("out"), "f:d:b:a-world+a-worldc");
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
}

#[test]
fn a_failing_edit_fails_the_build_as_a_full_build_does_and_runs_again() {
    let edit = |d: &mut Value| d["nodes"][2]["params"]["command"] = json!(counted("c", "exit 3"));
    let (fast, full, ws, _) = both_ways(&branches(), edit, &[]);
    assert_edit_path(&fast, 1, 3);
    fast.assert_code(1);
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
    assert_eq!(fast.status_of("c"), "failed");
    assert_eq!(fast.status_of("f"), "skipped");
    // A failure is not a result: the next build runs it again (and takes the normal
    // path, as no record vouches for a failed build).
    let r = debug_build(&ws, &[]);
    r.assert_code(1);
    assert_normal_path(&r);
    assert_eq!(ws.count("c"), 3);
}

#[test]
fn edits_outside_the_nodes_or_to_ids_and_types_take_the_normal_path() {
    type Edit = Box<dyn Fn(&mut Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "output",
            Box::new(|d: &mut Value| d["outputs"]["out"]["source"] = json!("${e.echo}")),
        ),
        (
            "input default",
            Box::new(|d: &mut Value| d["inputs"]["who"]["default"] = json!("you")),
        ),
        (
            "type",
            Box::new(|d: &mut Value| {
                d["nodes"][4] = json!({"id": "e", "type": "shell",
                                       "params": {"command": "echo ${c.stdout}"}});
                d["nodes"][5]["params"]["message"] = json!("f:${d.stdout}+${e.stdout}");
            }),
        ),
        (
            "node added",
            Box::new(|d: &mut Value| {
                d["nodes"]
                    .as_array_mut()
                    .unwrap()
                    .push(json!({"id": "g", "type": "echo", "params": {"message": "g"}}))
            }),
        ),
    ];
    for (what, edit) in edits {
        let (fast, full, _, _) = both_ways(&branches(), edit, &[]);
        assert_normal_path(&fast);
        // The edit path found the bytes changed: the no-op path does not hash them again.
        assert!(!fast.stderr.contains(COMPARING), "{what}: {fast}");
        fast.assert_ok();
        assert_eq!(
            without_durations(fast.doc().clone()),
            without_durations(full.doc().clone()),
            "{what}"
        );
    }
}

#[test]
fn a_secret_written_into_an_edited_node_is_never_shown_or_kept() {
    let secret = "s3cr3t-edit-value";
    let edit = move |d: &mut Value| {
        d["nodes"][2]["params"] = json!({"command": "test -n \"$API_TOKEN\" && echo c",
                                         "env": {"API_TOKEN": secret}})
    };
    let (fast, _, ws, _) = both_ways(&branches(), edit, &[]);
    assert_normal_path(&fast);
    fast.assert_ok();
    assert!(!fast.to_string().contains(secret), "{fast}");
    let r = debug_build(&ws, &[]);
    assert!(!r.to_string().contains(secret), "{r}");
    assert_no_file_holds(ws.cache_dir(), secret);
}

#[test]
fn a_workflow_whose_text_holds_a_secret_is_not_copied_into_the_cache() {
    let secret = "s3cr3t-default-value";
    let mut doc = branches();
    doc["inputs"]["api_token"] = json!({"type": "string", "required": false, "default": secret});
    doc["nodes"][2]["params"] = json!({"command": counted("c", "test -n \"$T\" && echo c"),
                                       "env": {"T": "${api_token}"}});
    let ws = Workspace::new().workflow(doc);
    prime(&ws, &[]);
    assert_no_file_holds(ws.cache_dir(), secret);
    // Without the copy an edit takes the normal path, and is right.
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_normal_path(&r);
    r.assert_ok();
    assert_eq!(r.output("out"), "f:d:b:a-world+E:c");
}

/// However the default is spelled in the file, and whatever value the build gives the
/// input, a secret input's default is never copied into the cache: overridden on the
/// command line (the build knows only the other value), escaped in the JSON (the file
/// holds another spelling of it), not a string (the file's spacing and key order).
#[test]
fn a_secret_inputs_default_is_never_copied_whatever_its_spelling_or_value() {
    let marker = "s3cr3t-marker";
    let cases: [(Value, &[&str]); 3] = [
        (json!(format!("{marker}-default")), &["api_token=other"]),
        (json!(format!("{marker}\\with\"escapes")), &[]),
        (
            json!({"user": "app", "password": format!("{marker}-9")}),
            &[],
        ),
    ];
    for (default, args) in cases {
        let mut doc = branches();
        doc["inputs"]["api_token"] = json!({"required": false, "default": default});
        doc["nodes"][2]["params"] = json!({"command": "test -n \"$T\" && echo c",
                                           "env": {"T": "${api_token}"}});
        let ws = Workspace::new().workflow(doc);
        prime(&ws, args);
        assert!(
            std::fs::read_to_string(ws.file("workflow.json"))
                .unwrap()
                .contains(marker),
            "the file holds it"
        );
        assert_no_file_holds(ws.cache_dir(), marker);
    }
}

#[track_caller]
fn assert_no_file_holds(dir: &std::path::Path, secret: &str) {
    for entry in walkdir(dir) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(secret),
            "{} holds the secret",
            entry.display()
        );
    }
}

fn walkdir(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walkdir(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn a_workflow_with_edges_or_file_steps_is_not_recorded_for_edits() {
    let mut doc = branches();
    doc["edges"] = json!([{"from": "a", "to": "e"}]);
    let edit = |d: &mut Value| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}");
    let (fast, full, _, _) = both_ways(&doc, edit, &[]);
    assert_normal_path(&fast);
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
    let mut doc = branches();
    doc["nodes"][4] = json!({"id": "e", "type": "write-file",
                              "params": {"file_path": "e.txt", "content": "${c.stdout}"}});
    doc["nodes"][5]["params"]["message"] = json!("f:${d.stdout}+${e.file_path}");
    let edit = |d: &mut Value| d["nodes"][4]["params"]["content"] = json!("E${c.stdout}");
    let (fast, _, ws, _) = both_ways(&doc, edit, &[]);
    assert_normal_path(&fast);
    fast.assert_ok();
    assert_eq!(ws.read("e.txt"), "Ec");
}

#[test]
fn a_known_node_whose_entry_is_gone_sends_the_build_to_the_normal_path() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // e reads c, whose result the edit path would take from the cache.
    for entry in walkdir(&ws.cache_dir().join("packs")) {
        std::fs::remove_file(entry).expect("remove a pack");
    }
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_normal_path(&r);
    assert!(r.stderr.contains("a known node's entry is gone"), "{r}");
    r.assert_ok();
    assert_eq!(r.output("out"), "f:d:b:a-world+E:c");
    assert_eq!(ws.count("c"), 2, "c ran again: its result was lost");
}

#[test]
fn a_kept_copy_of_the_workflow_other_than_the_recorded_one_is_not_compared_with() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E:${c.stdout}"));
    // The copy the edit is found against already holds the edit (another build's copy,
    // or one damaged into it): compared with it, nothing would have changed.
    let edited = ws.read("workflow.json");
    let copies = state_files(&ws, ".text");
    assert_eq!(copies.len(), 1, "one kept copy");
    std::fs::write(&copies[0], &edited).expect("replace the copy");
    let r = debug_build(&ws, &[]);
    assert_normal_path(&r);
    assert!(r.stderr.contains("no copy of the recorded workflow"), "{r}");
    r.assert_ok();
    assert_eq!(r.output("out"), "f:d:b:a-world+E:c");
}

#[test]
fn an_edited_node_with_a_maximum_age_keeps_the_next_no_op_from_outliving_it() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(|d| d["nodes"][4]["cache"] = json!("2s"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert!(r.stderr.contains("no-op record written"), "{r}");
    settle();
    // Older than its two seconds: a full build runs it again, and so must this one.
    let r = debug_build(&ws, &[]);
    assert!(!r.stderr.contains("no-op record used"), "{r}");
    assert_eq!(r.status_of("e"), "ran", "{r}");
}

#[test]
fn after_an_edit_that_reorders_the_graph_the_no_op_prints_a_possible_order() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "x", "type": "echo", "params": {"message": "x"}},
            {"id": "y", "type": "echo", "params": {"message": "y"}},
            {"id": "z", "type": "echo", "params": {"message": "${x.echo}"}},
            {"id": "p", "type": "echo", "params": {"message": "p"}},
            {"id": "q", "type": "echo", "params": {"message": "q"}}
        ],
        "outputs": {"out": {"source": "${z.echo}"}}
    }));
    prime(&ws, &[]);
    // x, first so far, now reads y.
    ws.edit_workflow(|d| d["nodes"][0]["params"]["message"] = json!("${y.echo}!"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 2);
    assert!(r.stderr.contains("no-op record written"), "{r}");
    settle();
    let r = ws.cmd().text().arg("-v").env("PFLOW_DEBUG", "1").run();
    assert_served(&r);
    assert_eq!(r.stdout.trim(), "y!");
    let at = |id: &str| {
        r.stderr
            .lines()
            .position(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no line for {id}: {r}"))
    };
    assert!(at("y") < at("x") && at("x") < at("z"), "{r}");
}

#[test]
fn an_edit_past_the_size_limit_is_refused_as_a_full_build_refuses_it() {
    let ws = Workspace::new().workflow(branches());
    let limit = (ws.read("workflow.json").len() + 40).to_string();
    let args: &[&str] = &[];
    ws.build(args).assert_ok();
    settle();
    let with_limit = |ws: &Workspace| {
        ws.cmd()
            .env("PFLOW_DEBUG", "1")
            .env("PFLOW_MAX_WORKFLOW_BYTES", &limit)
            .run()
    };
    with_limit(&ws).assert_ok();
    assert_served(&with_limit(&ws));
    ws.edit_workflow(|d| d["nodes"][4]["params"]["message"] = json!("E".repeat(100)));
    let r = with_limit(&ws);
    r.assert_code(2);
    assert!(r.to_string().contains("over the limit"), "{r}");
}

#[test]
fn a_bad_repair_attempts_variable_is_refused_whatever_the_record_says() {
    let ws = Workspace::new().workflow(branches());
    let build = |ws: &Workspace, flag: bool| {
        let mut cmd = ws
            .cmd()
            .env("PFLOW_DEBUG", "1")
            .env("PFLOW_MAX_REPAIR_ATTEMPTS", "many");
        if flag {
            cmd = cmd.args(&["--max-repair-attempts", "2"]);
        }
        cmd.run()
    };
    build(&ws, true).assert_ok();
    settle();
    build(&ws, true).assert_ok();
    assert_served(&build(&ws, true));
    // Without the flag, the variable counts, and a full build refuses it.
    let r = build(&ws, false);
    r.assert_code(2);
    assert!(r.to_string().contains("PFLOW_MAX_REPAIR_ATTEMPTS"), "{r}");
}

/// The edit path keeps the small pages pflow begins with (it touches a little of many
/// regions), and the steps it runs inherit them.
#[test]
fn the_edit_path_runs_its_steps_with_small_pages() {
    use crate::build_process::{flag_seen, huge_pages_shown, SHOW_FLAG, SMALL};
    if !huge_pages_shown() {
        return;
    }
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "a", "type": "echo", "params": {"message": "a"}},
            {"id": "b", "type": "echo", "params": {"message": "b:${a.echo}"}},
            {"id": "c", "type": "echo", "params": {"message": "c"}},
            {"id": "thp", "type": "shell", "params": {"command": SHOW_FLAG}}
        ],
        "outputs": {"thp": {"source": "${thp.stdout}"}}
    }));
    prime(&ws, &[]);
    ws.edit_workflow(|d| {
        d["nodes"][3]["params"]["command"] = json!(format!("{SHOW_FLAG} # again"))
    });
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 1);
    assert_eq!(flag_seen(&r), Some(SMALL), "{r}");
}

/// The number after `marker` on an edit path build's debug line (`edit path used: N
/// node(s) changed, M to build, K of them as compiled before (J with their key
/// components)`).
fn edit_path_number(r: &BuildResult, marker: &str) -> Option<usize> {
    let line = r
        .stderr
        .lines()
        .find(|l| l.contains("debug: edit path used"))?;
    let (_, tail) = line.split_once(marker)?;
    tail.split(' ').next()?.parse().ok()
}

/// How many of the nodes an edit path build took as compiled before (0 when none).
fn from_forms(r: &BuildResult) -> Option<usize> {
    edit_path_number(r, " to build, ")
}

/// How many of those kept what their definitions put in their keys.
fn with_key_parts(r: &BuildResult) -> Option<usize> {
    edit_path_number(r, " as compiled before (")
}

/// An edit to node a (which reaches four of the six nodes of [`branches`]).
fn edit_a(text: &'static str) -> impl Fn(&mut Value) {
    move |d: &mut Value| d["nodes"][0]["params"]["command"] = json!(counted("a", text))
}

/// [`branches`] built, then built again after an edit of a that reaches too far for the
/// edit path: the build that keeps compiled forms.
fn with_forms() -> Workspace {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    ws.edit_workflow(edit_a("echo A-${who}"));
    assert_normal_path(&debug_build(&ws, &[]));
    settle();
    ws
}

#[test]
fn an_edit_turned_away_for_its_reach_leaves_compiled_forms_that_the_next_one_is_built_with() {
    let ws = Workspace::new().workflow(branches());
    prime(&ws, &[]);
    // A build that no edit turned away keeps no forms: it pays nothing for them.
    assert_eq!(state_files(&ws, ".forms").len(), 0);
    ws.edit_workflow(edit_a("echo A-${who}"));
    let r = debug_build(&ws, &[]);
    assert!(r.stderr.contains("the edit reaches at least 4 of 6"), "{r}");
    assert_normal_path(&r);
    assert!(r.stderr.contains("debug: node forms written"), "{r}");
    assert_eq!(state_files(&ws, ".forms").len(), 1);
    settle();
    // The next edit like it takes the edit path: a is parsed, b, d and f are taken as
    // compiled (c and e, known, are not built).
    let (fast, full, fws, nws) = {
        let full = Workspace::new().workflow(ws.current_workflow());
        prime(&full, &[]);
        ws.edit_workflow(edit_a("echo AA-${who}"));
        full.edit_workflow(edit_a("echo AA-${who}"));
        forget_record(&full);
        (debug_build(&ws, &[]), debug_build(&full, &[]), ws, full)
    };
    assert_edit_path(&fast, 1, 4);
    assert_eq!(from_forms(&fast), Some(3), "{fast}");
    assert_normal_path(&full);
    fast.assert_ok();
    assert_eq!(fast.output("out"), "f:d:b:AA-world+e:c", "{fast}");
    assert_eq!(
        without_durations(fast.doc().clone()),
        without_durations(full.doc().clone())
    );
    assert_eq!(last_stats(&fws), last_stats(&nws));
    assert_eq!((fws.count("a"), fws.count("c"), fws.count("d")), (3, 1, 3));
}

#[test]
fn a_node_edited_since_its_form_was_kept_is_built_from_its_text() {
    let ws = with_forms();
    // b changes by a small edit (the edit path, which keeps the forms as they are) ...
    ws.edit_workflow(|d| d["nodes"][1]["params"]["message"] = json!("B:${a.stdout}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 3);
    settle();
    // ... so the next edit of a takes d and f as compiled, and b as it is now written.
    ws.edit_workflow(edit_a("echo AA-${who}"));
    let r = debug_build(&ws, &[]);
    assert_edit_path(&r, 1, 4);
    assert_eq!(from_forms(&r), Some(2), "{r}");
    assert_eq!(r.output("out"), "f:d:B:AA-world+e:c", "{r}");
    let full = Workspace::new().workflow(ws.current_workflow());
    assert_eq!(full.build(&[]).output("out"), r.output("out"));
}

#[test]
fn an_edit_that_reaches_every_node_is_built_with_the_forms_as_a_full_build_is() {
    let chain = json!({"nodes": [
        {"id": "a", "type": "echo", "params": {"message": "a0"}},
        {"id": "b", "type": "echo",
         "params": {"message": "b:${a.echo}", "data": {"n": [1, 2.5], "s": "${a.echo}"}}},
        {"id": "c", "type": "shell", "params": {"command": counted("c", "echo c:${b.echo}")}}
    ], "outputs": {"out": {"source": "${c.stdout}"}}});
    let edit =
        |text: &'static str| move |d: &mut Value| d["nodes"][0]["params"]["message"] = json!(text);
    let fast = Workspace::new().workflow(chain.clone());
    let full = Workspace::new().workflow(chain);
    for ws in [&fast, &full] {
        prime(ws, &[]);
        ws.edit_workflow(edit("a1"));
        assert_normal_path(&debug_build(ws, &[]));
        settle();
        ws.edit_workflow(edit("a2"));
    }
    forget_record(&full);
    let (a, b) = (debug_build(&fast, &[]), debug_build(&full, &[]));
    assert_edit_path(&a, 1, 3);
    assert_eq!(from_forms(&a), Some(2), "{a}");
    assert_eq!(with_key_parts(&a), Some(2), "{a}");
    assert_normal_path(&b);
    assert_eq!(a.output("out"), "c:b:a2", "{a}");
    // What b's and c's definitions put in their keys is kept with their forms: the
    // keys are the ones a full build works out.
    let keys = |r: &BuildResult| -> Vec<Value> {
        let nodes = r.doc()["nodes"].as_array().expect("nodes").clone();
        nodes.iter().map(|n| n["key"].clone()).collect()
    };
    assert!(keys(&a).iter().all(Value::is_string), "{a}");
    assert_eq!(keys(&a), keys(&b));
    assert_eq!(
        without_durations(a.doc().clone()),
        without_durations(b.doc().clone())
    );
    assert_eq!(last_stats(&fast), last_stats(&full));
    // And the build after it is a no-op.
    settle();
    assert_served(&debug_build(&fast, &[]));
}

#[test]
fn damaged_forms_are_not_used_and_the_edit_is_built_whole() {
    let ws = with_forms();
    let forms = state_files(&ws, ".forms");
    assert_eq!(forms.len(), 1);
    let mut bytes = std::fs::read(&forms[0]).expect("the forms");
    // A byte inside the forms (past the header), changed.
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&forms[0], &bytes).expect("write");
    ws.edit_workflow(edit_a("echo AA-${who}"));
    let r = debug_build(&ws, &[]);
    assert_normal_path(&r);
    assert_eq!(r.output("out"), "f:d:b:AA-world+e:c", "{r}");
}

#[test]
fn an_edit_read_on_for_the_forms_but_refused_still_leaves_a_record_from_its_stretch() {
    let ws = with_forms();
    // Read to its end (the forms are kept), then refused: a reads a new variable.
    ws.edit_workflow(|d| d["nodes"][0]["reads_env"] = json!(["HOME"]));
    let r = debug_build(&ws, &[]);
    assert!(r.stderr.contains("node 'a' reads another variable"), "{r}");
    assert_normal_path(&r);
    assert!(r.stderr.contains(FROM_STRETCH), "{r}");
    assert!(r.stderr.contains("debug: node forms written"), "{r}");
    r.assert_ok();
}
