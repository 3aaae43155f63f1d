//! The build cache, seen from the command line: what runs, what is reused, what is
//! restored. Executions are counted with side-effect files (see `common::counted`).

use crate::common;

use common::{big_pipeline, counted, files_under, pipeline, Workspace};
use serde_json::{json, Value};

fn set_command(doc: &mut Value, node: &str, command: &str) {
    let nodes = doc["nodes"].as_array_mut().unwrap();
    let n = nodes.iter_mut().find(|n| n["id"] == node).unwrap();
    n["params"]["command"] = json!(command);
}

#[test]
fn second_build_runs_nothing_and_reports_everything_cached() {
    let ws = Workspace::new().workflow(pipeline());
    let first = ws.build(&[]);
    first.assert_ok();
    assert_eq!(first.with_status("ran"), ["gen", "upper", "save", "side"]);
    assert_eq!(first.output("result"), "HELLO");
    assert_eq!(ws.read("out/result.txt"), "HELLO");

    let second = ws.build(&[]);
    second.assert_ok();
    assert_eq!(
        second.with_status("cached"),
        ["gen", "upper", "save", "side"]
    );
    for id in ["gen", "upper", "save", "side"] {
        assert_eq!(second.executions_of(id), 0, "{id}");
    }
    assert_eq!(second.stat("ran"), 0);
    assert_eq!(second.stat("cached"), 4);
    // Outputs come from the cache, unchanged.
    assert_eq!(second.output("result"), "HELLO");
    for counter in ["gen", "upper", "side"] {
        assert_eq!(ws.count(counter), 1, "{counter} ran again");
    }
}

/// A result made in permissive mode (a reference that does not resolve kept as its
/// text) is not served once the workflow is strict, where that reference fails.
#[test]
fn a_result_of_permissive_templates_is_not_served_to_a_strict_build() {
    let ws = Workspace::new().workflow(json!({
        "template_resolution_mode": "permissive",
        "nodes": [
            {"id": "a", "type": "echo", "params": {"message": "hi"}},
            {"id": "b", "type": "echo", "params": {"message": "v=${a.metadata.nope}"}}
        ]
    }));
    ws.build(&[]).assert_ok();
    ws.edit_workflow(|doc| {
        doc.as_object_mut()
            .unwrap()
            .remove("template_resolution_mode");
    });
    let strict = ws.build(&[]);
    assert_eq!(strict.code, 1, "{strict}");
    assert_eq!(strict.status_of("b"), "failed", "{strict}");
    assert_eq!(strict.status_of("a"), "cached", "{strict}");
}

/// Another workflow with the same step stores a new result under its key (a step whose
/// output varies, run again): this workflow's next build is told, caches nothing made
/// from the mismatched pair, and the build after it is consistent again.
#[test]
fn a_result_stored_since_by_another_workflow_is_told_and_never_mixed_into_the_cache() {
    let stamp = json!({"id": "stamp", "type": "shell", "params": {"command": "date +%s%N"}});
    let ws = Workspace::new().workflow(json!({
        "nodes": [stamp.clone(),
                  {"id": "use", "type": "shell", "params": {"command": "echo got ${stamp.stdout}"}}],
        "outputs": {"s": {"source": "${stamp.stdout}"}, "u": {"source": "${use.stdout}"}}
    }));
    ws.write("other.json", &json!({"nodes": [stamp]}).to_string());
    let first = ws.build(&[]);
    first.assert_ok();
    let t1 = first.output("s").as_str().unwrap().to_string();
    assert_eq!(first.output("u"), &json!(format!("got {t1}")));
    let rerun = ws
        .pflow()
        .args([
            "build",
            "other.json",
            "--no-repair",
            "--rerun",
            "stamp",
            "--cache-dir",
        ])
        .arg(ws.cache_dir())
        .output();
    assert!(rerun.status.success(), "{rerun:?}");

    let next = ws.build(&[]);
    next.assert_ok();
    let s = next.output("s").as_str().unwrap().to_string();
    if s != t1 {
        assert!(
            next.to_string().contains("holds another result"),
            "a mismatched pair served without a word: {next}"
        );
    }
    // Whatever was served, the build after it pairs them as a fresh run would.
    let last = ws.build(&[]);
    last.assert_ok();
    let s = last.output("s").as_str().unwrap();
    assert_eq!(last.output("u"), &json!(format!("got {s}")), "{last}");
}

#[test]
fn editing_a_command_reruns_it_and_only_dependents_whose_inputs_changed() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();

    ws.edit_workflow(|d| set_command(d, "gen", &counted("gen", "echo goodbye")));
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("gen"), "ran");
    assert_eq!(r.reason_of("gen"), "param command changed");
    assert_eq!(r.status_of("upper"), "ran");
    assert_eq!(r.reason_of("upper"), "upstream gen changed");
    assert_eq!(r.status_of("save"), "ran");
    assert_eq!(r.status_of("side"), "cached");
    assert_eq!(
        (ws.count("gen"), ws.count("upper"), ws.count("side")),
        (2, 2, 1)
    );
    assert_eq!(ws.read("out/result.txt"), "GOODBYE");
}

#[test]
fn an_edit_that_prints_the_same_output_stops_at_the_edited_node() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();

    // Different command, same stdout: early cutoff.
    ws.edit_workflow(|d| set_command(d, "gen", &counted("gen", "printf 'hello\\n'")));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["gen"]);
    assert_eq!(r.with_status("cached"), ["upper", "save", "side"]);
    assert_eq!((ws.count("gen"), ws.count("upper")), (2, 1));
    assert_eq!(r.output("result"), "HELLO");
}

#[test]
fn cache_false_runs_every_build_and_unchanged_output_keeps_dependents_cached() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "clock", "type": "shell", "cache": false,
             "params": {"command": counted("clock", "echo same-every-time")}},
            {"id": "use", "type": "shell",
             "params": {"command": counted("use", "echo got ${clock.stdout}")}}
        ],
        "outputs": {"out": {"source": "${use.stdout}"}}
    }));
    ws.build(&[]).assert_ok();
    for n in 2..=3 {
        let r = ws.build(&["--explain"]);
        r.assert_ok();
        assert_eq!(r.status_of("clock"), "ran");
        assert_eq!(r.reason_of("clock"), "cache: false");
        assert_eq!(r.executions_of("clock"), 1);
        assert_eq!(r.status_of("use"), "cached");
        assert_eq!(r.output("out"), "got same-every-time");
        assert_eq!((ws.count("clock"), ws.count("use")), (n, 1));
    }
}

#[test]
fn cache_false_with_changed_output_reruns_dependents() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "tick", "type": "shell", "cache": false,
             "params": {"command": counted("tick", "wc -l < tick.count")}},
            {"id": "use", "type": "shell",
             "params": {"command": counted("use", "echo ${tick.stdout}")}}
        ]
    }));
    ws.build(&[]).assert_ok();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["tick", "use"]);
    assert_eq!((ws.count("tick"), ws.count("use")), (2, 2));
}

#[test]
fn a_deleted_output_file_is_restored_without_running_anything() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    ws.remove("out/result.txt");

    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("save"), "restored");
    assert_eq!(r.with_status("cached"), ["gen", "upper", "side"]);
    assert_eq!(r.executions_of("save"), 0);
    assert_eq!(r.stat("restored"), 1);
    assert_eq!(ws.read("out/result.txt"), "HELLO");
    assert_eq!((ws.count("gen"), ws.count("upper")), (1, 1));

    // Once restored, the next build has nothing to do.
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 4, "{again}");
}

#[test]
fn a_hand_edited_output_file_is_restored_and_the_edit_is_kept_beside_it() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    ws.write("out/result.txt", "edited by hand");

    let r = ws.build_text(&[]);
    r.assert_ok();
    assert!(r.stderr.contains("restored save"), "{r}");
    assert_eq!(ws.read("out/result.txt"), "HELLO");
    assert_eq!((ws.count("gen"), ws.count("upper")), (1, 1));
    // Nothing the user wrote is lost, and they are told where it is.
    assert_eq!(ws.read("out/result.txt.pflow-kept"), "edited by hand");
    assert!(
        r.stderr.contains("out/result.txt was changed by hand")
            && r.stderr.contains("out/result.txt.pflow-kept"),
        "{r}"
    );
    // A second edit does not overwrite the first one kept.
    ws.write("out/result.txt", "edited again");
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out/result.txt.pflow-kept"), "edited by hand");
    assert_eq!(ws.read("out/result.txt.pflow-kept.1"), "edited again");
    assert_eq!(ws.read("out/result.txt"), "HELLO");
}

#[test]
fn changing_a_file_read_by_read_file_reruns_it_and_its_dependents() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "load", "type": "read-file", "params": {"file_path": "data.txt"}},
            {"id": "count", "type": "shell",
             "params": {"command": counted("count", "wc -w"), "stdin": "${load.content}"}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo x")}}
        ],
        "outputs": {"words": {"source": "${count.stdout}"}}
    }));
    ws.write("data.txt", "one two");
    let first = ws.build(&[]);
    first.assert_ok();
    assert_eq!(first.output("words").as_str().map(str::trim), Some("2"));

    ws.write("data.txt", "one two three");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("load"), "ran");
    assert_eq!(r.reason_of("load"), "input file data.txt changed");
    assert_eq!(r.status_of("count"), "ran");
    assert_eq!(r.status_of("other"), "cached");
    assert_eq!(r.output("words").as_str().map(str::trim), Some("3"));
    assert_eq!((ws.count("count"), ws.count("other")), (2, 1));

    // The text --explain line names the file too.
    ws.write("data.txt", "four");
    let t = ws.build_text(&["--explain"]);
    t.assert_ok();
    assert!(t.stderr.contains("input file data.txt changed"), "{t}");
}

#[test]
fn one_changed_batch_item_runs_one_item() {
    let batch = |items: Value| {
        json!({
            "nodes": [{
                "id": "each", "type": "shell",
                "batch": {"items": items},
                "params": {"command": "echo run >> item-${item}.count; echo got ${item}"}
            }],
            "outputs": {"all": {"source": "${each.results}"}}
        })
    };
    let ws = Workspace::new().workflow(batch(json!(["a", "b", "c"])));
    let first = ws.build(&[]);
    first.assert_ok();
    assert_eq!(first.executions_of("each"), 3);

    ws.set_workflow(&batch(json!(["a", "B", "c"])));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("each"), "ran");
    assert_eq!(r.executions_of("each"), 1);
    assert_eq!(
        (
            ws.count("item-a"),
            ws.count("item-b"),
            ws.count("item-B"),
            ws.count("item-c")
        ),
        (1, 1, 1, 1)
    );
    let stdouts: Vec<&str> = r
        .output("all")
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["stdout"].as_str().unwrap())
        .collect();
    assert_eq!(stdouts, ["got a", "got B", "got c"]);

    // Nothing changed: the whole batch node is cached.
    let again = ws.build(&[]);
    assert_eq!(again.status_of("each"), "cached", "{again}");
    assert_eq!(again.executions_of("each"), 0);
}

#[test]
fn batch_items_from_upstream_output_are_cached_per_item() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "list", "type": "shell", "params": {"command": "cat list.json"}},
            {"id": "each", "type": "shell",
             "batch": {"items": "${list.stdout}", "as": "x"},
             "params": {"command": "echo run >> item-${x}.count; echo ${x}"}}
        ]
    }));
    ws.write("list.json", r#"["a","b","c"]"#);
    ws.build(&[]).assert_ok();
    // `list` is cached (its command did not change) even though the file did; force it.
    ws.write("list.json", r#"["a","b","d"]"#);
    let r = ws.build(&["--rerun", "list"]);
    r.assert_ok();
    assert_eq!(r.executions_of("each"), 1, "{r}");
    assert_eq!(
        (ws.count("item-a"), ws.count("item-b"), ws.count("item-d")),
        (1, 1, 1)
    );
}

#[test]
fn a_copy_in_another_folder_sharing_the_cache_runs_nothing() {
    let ws = Workspace::new().workflow(pipeline());
    ws.write("data.txt", "shared input");
    ws.edit_workflow(|d| {
        d["nodes"]
            .as_array_mut()
            .unwrap()
            .push(json!({"id": "load", "type": "read-file", "params": {"file_path": "data.txt"}}));
    });
    let first = ws.build(&[]);
    first.assert_ok();

    let other = ws.another_folder();
    other.write("data.txt", "shared input");
    let r = other.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), Vec::<String>::new(), "{r}");
    // Same keys as in the first folder: nothing machine- or path-specific in them.
    for id in ["gen", "upper", "save", "side", "load"] {
        assert_eq!(r.node(id)["key"], first.node(id)["key"], "{id}");
    }
    // The written file is put in place in the new folder from the cache.
    assert_eq!(r.status_of("save"), "restored");
    assert_eq!(other.read("out/result.txt"), "HELLO");
    assert_eq!(
        other.count("gen") + other.count("upper") + other.count("side"),
        0
    );
}

#[test]
fn dry_run_lists_the_plan_and_runs_nothing() {
    let ws = Workspace::new().workflow(pipeline());
    let plan = ws.build(&["--dry-run"]);
    plan.assert_code(0);
    let steps = plan.doc()["nodes"].as_array().unwrap();
    let actions: Vec<(&str, &str)> = steps
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["action"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("gen", "run"),
            ("upper", "run"),
            ("save", "run"),
            ("side", "run")
        ]
    );
    assert_eq!(ws.count("gen") + ws.count("upper") + ws.count("side"), 0);
    assert!(!ws.exists("out/result.txt"));

    ws.build(&[]).assert_ok();
    ws.edit_workflow(|d| set_command(d, "side", &counted("side", "echo changed")));
    let plan = ws.cmd().text().arg("--dry-run").run();
    plan.assert_code(0);
    assert!(
        plan.stderr
            .contains("4 nodes: 1 would run, 3 would be reused"),
        "{plan}"
    );
    let side_line = plan.stderr.lines().find(|l| l.contains(" side ")).unwrap();
    assert!(
        side_line.contains("run") && side_line.contains("param command changed"),
        "{plan}"
    );
    assert_eq!(ws.count("side"), 1);
}

#[test]
fn rerun_reruns_one_node_and_dependents_only_if_its_output_changed() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();

    let r = ws.build(&["--rerun", "gen", "--explain"]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["gen"]);
    assert_eq!(r.reason_of("gen"), "--rerun");
    assert_eq!(r.with_status("cached"), ["upper", "save", "side"]);
    assert_eq!((ws.count("gen"), ws.count("upper")), (2, 1));

    // A volatile command whose output changes: dependents follow.
    ws.edit_workflow(|d| set_command(d, "side", &counted("side", "wc -l < side.count")));
    ws.edit_workflow(|d| {
        d["nodes"].as_array_mut().unwrap().push(json!(
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo ${side.stdout}")}}
        ));
    });
    ws.build(&[]).assert_ok();
    let r = ws.build(&["--rerun", "side"]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["side", "after"]);
    assert_eq!(ws.count("after"), 2);

    let unknown = ws.build(&["--rerun", "nope"]);
    unknown.assert_code(2);
    assert!(unknown.errors()[0]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
}

#[test]
fn force_runs_everything() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let r = ws.build(&["--force"]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["gen", "upper", "save", "side"]);
    assert_eq!(
        (ws.count("gen"), ws.count("upper"), ws.count("side")),
        (2, 2, 2)
    );
    // A forced build still stores its results.
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 4, "{again}");
}

#[test]
fn a_corrupt_cache_is_a_miss_not_a_wrong_result() {
    let ws = Workspace::new().workflow(big_pipeline());
    ws.build(&[]).assert_ok();
    // Damage every content blob in the cache.
    let blobs = files_under(&ws.cache_dir().join("content-v2"));
    for p in &blobs {
        std::fs::write(p, b"garbage").unwrap();
    }
    assert!(!blobs.is_empty());
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    assert_eq!(ws.read("out/result.txt"), "HELLO");
    assert!(ws.count("gen") >= 2, "{r}");
}

#[test]
fn a_damaged_cache_index_is_a_miss() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let segments = files_under(&ws.cache_dir().join("packs"));
    for p in &segments {
        std::fs::write(p, b"not a segment\n{\"broken\n").unwrap();
    }
    assert!(!segments.is_empty());
    // With the last build's record, hits are decided without the index; but the value
    // of the declared output is read from it, so `upper` (and `gen`, which it needs)
    // run again rather than give a wrong or missing result.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    assert_eq!(r.with_status("cached"), ["save", "side"], "{r}");
    assert_eq!((ws.count("gen"), ws.count("upper")), (2, 2));
    // Without the record, the damaged index is a miss for the other nodes too.
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["save", "side"], "{r}");
    assert_eq!(r.output("result"), "HELLO");
    // The rebuilt entries are usable again.
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 4, "{again}");
}

#[test]
fn a_no_op_build_neither_touches_the_index_nor_rewrites_records() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    ws.build(&[]).assert_ok();
    let mtimes = |dir: &str| -> Vec<(std::path::PathBuf, std::time::SystemTime)> {
        files_under(&ws.cache_dir().join(dir))
            .into_iter()
            .map(|p| {
                let t = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, t)
            })
            .collect()
    };
    let (records, segments) = (mtimes("state"), mtimes("packs"));
    assert!(!records.is_empty() && !segments.is_empty());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let r = ws.build(&[]);
    assert_eq!(r.with_status("cached").len(), 4, "{r}");
    assert_eq!(r.output("result"), "HELLO");
    // A lookup would have appended a use (LRU), in a new segment; a changed record
    // would have been rewritten. Neither happened: hits were decided from the record,
    // and the one value needed (the declared output's) was read without marking a use.
    assert_eq!(mtimes("state"), records);
    assert_eq!(mtimes("packs"), segments);
}

/// 50 `echo` nodes named `{prefix}0` to `{prefix}49`, then `extra`.
fn echo_nodes_named(prefix: &str, extra: &[Value]) -> Value {
    let nodes: Vec<Value> = (0..50)
        .map(|i| json!({"id": format!("{prefix}{i}"), "type": "echo", "params": {"message": "x"}}))
        .chain(extra.iter().cloned())
        .collect();
    json!({ "nodes": nodes })
}

/// The bytes of the records under the cache's `state/` (the segments' indexes aside).
fn record_bytes(ws: &Workspace) -> u64 {
    // Not the nodes' compiled forms either: one file, of the workflow as it is now,
    // written over by each build that keeps them.
    files_under(&ws.cache_dir().join("state"))
        .iter()
        .filter(|p| !p.to_string_lossy().ends_with(".index"))
        .filter(|p| !p.to_string_lossy().ends_with(".forms"))
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn records_of_nodes_no_longer_in_the_workflow_are_dropped_once_they_pile_up() {
    // One node stays as it is (reused from the record): not every node is decided anew.
    let stays = [json!({"id": "stays", "type": "echo", "params": {"message": "y"}})];
    let named = |prefix: &str| echo_nodes_named(prefix, &stays);
    let ws = Workspace::new().workflow(named("a"));
    ws.build(&[]).assert_ok();
    let mut grown = record_bytes(&ws);
    // Every rename leaves the old records behind (they are only unused)...
    for prefix in ["b", "c", "d"] {
        ws.edit_workflow(|doc| *doc = named(prefix));
        ws.build(&[]).assert_ok();
        let now = record_bytes(&ws);
        assert!(now > grown, "{prefix}: {now} <= {grown}");
        grown = now;
    }
    // ...until they outnumber the workflow's nodes by far: then only its own stay.
    ws.edit_workflow(|doc| *doc = named("e"));
    let r = ws.build(&[]);
    r.assert_ok();
    let pruned = record_bytes(&ws);
    assert!(pruned < grown / 2, "{pruned} vs {grown}");
    // And what is left still serves the next build.
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 51, "{again}");
}

#[test]
fn a_build_that_decides_every_node_anew_keeps_only_their_records() {
    let ws = Workspace::new().workflow(echo_nodes_named("a", &[]));
    // The build and --explain records (bases and deltas), not the no-op record.
    let tables = || -> Vec<(String, u64)> {
        let mut t: Vec<(String, u64)> = files_under(&ws.cache_dir().join("state"))
            .iter()
            .filter_map(|p| {
                let name = p.file_name()?.to_str()?;
                let kind = name.strip_suffix(".bin").map(|_| name.split_once('.'))??.1;
                Some((kind.to_string(), std::fs::metadata(p).unwrap().len()))
            })
            .collect();
        t.sort();
        t
    };
    ws.build(&[]).assert_ok();
    let first = tables();
    assert_eq!(first.len(), 2, "{first:?}");
    // Every node renamed, so every one is decided anew: the old ones' records go at
    // once, each table a base as big as the first build's (no delta over the old rows).
    ws.edit_workflow(|doc| *doc = echo_nodes_named("b", &[]));
    ws.build(&[]).assert_ok();
    assert_eq!(tables(), first);
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 50, "{again}");
    // An edit of the first of them explains itself against the record just written.
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["message"] = json!("z"));
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.reason_of("b0"), "param message changed");
    assert_eq!(r.status_of("b1"), "cached");
}

#[test]
fn every_result_is_in_the_cache_when_the_build_ends_also_those_stored_off_the_nodes_path() {
    // A chain of results that touch no file (handed to the offload thread) and a shell
    // step that writes one (stored by its own worker), then a step that reads it.
    let mut nodes: Vec<Value> = (0..300)
        .map(|i| match i {
            0 => json!({"id": "n0", "type": "echo", "params": {"message": "start"}}),
            _ => json!({"id": format!("n{i}"), "type": "echo",
                        "params": {"message": format!("${{n{}.echo}}+", i - 1)}}),
        })
        .collect();
    nodes.push(
        json!({"id": "write", "type": "shell", "writes": ["out.txt"],
        "params": {"command": counted("write", "cat > out.txt"), "stdin": "${n299.echo}"}}),
    );
    nodes.push(json!({"id": "last", "type": "shell",
        "params": {"command": counted("last", "wc -c < out.txt"), "stdin": "${write.stdout}"}}));
    let ws = Workspace::new().workflow(json!({ "nodes": nodes }));
    ws.build(&[]).assert_ok();
    // Without the last build's record, every hit must come from the cache's entries.
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), Vec::<String>::new(), "{r}");
    assert_eq!(r.with_status("cached").len(), 302, "{r}");
    assert_eq!((ws.count("write"), ws.count("last")), (1, 1));
}

/// A write that runs again (its content changed) over a file it wrote last time and
/// someone edited since moves the edit aside first, as a restore does; a file nobody
/// touched is simply replaced.
#[test]
fn a_rewrite_over_a_hand_edited_output_keeps_the_edit_beside_it() {
    let writing = |content: &str| {
        json!({"nodes": [{"id": "save", "type": "write-file",
                          "params": {"file_path": "out/report.txt", "content": content}}]})
    };
    let ws = Workspace::new().workflow(writing("version one"));
    ws.build(&[]).assert_ok();
    ws.set_workflow(&writing("version two"));
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out/report.txt"), "version two");
    assert!(
        !ws.exists("out/report.txt.pflow-kept"),
        "nothing was edited"
    );

    ws.write("out/report.txt", "my notes");
    ws.set_workflow(&writing("version three"));
    let r = ws.build_text(&[]);
    r.assert_ok();
    assert_eq!(ws.read("out/report.txt"), "version three");
    assert_eq!(ws.read("out/report.txt.pflow-kept"), "my notes");
    assert!(
        r.stderr.contains("out/report.txt was changed by hand")
            && r.stderr.contains("out/report.txt.pflow-kept"),
        "{r}"
    );
}

/// The same for the items of a batch: each item's file was the batch's last time.
#[test]
fn a_batch_rewrite_over_a_hand_edited_output_keeps_the_edit_beside_it() {
    let writing = |version: &str| {
        json!({"nodes": [{"id": "save", "type": "write-file",
                          "batch": {"items": ["a", "b"]},
                          "params": {"file_path": "out/${item}.txt",
                                     "content": format!("{version} ${{item}}")}}]})
    };
    let ws = Workspace::new().workflow(writing("one"));
    ws.build(&[]).assert_ok();
    ws.write("out/a.txt", "my notes");
    ws.set_workflow(&writing("two"));
    let r = ws.build_text(&[]);
    r.assert_ok();
    assert_eq!(ws.read("out/a.txt"), "two a");
    assert_eq!(ws.read("out/b.txt"), "two b");
    assert_eq!(ws.read("out/a.txt.pflow-kept"), "my notes", "{r}");
    assert!(!ws.exists("out/b.txt.pflow-kept"), "b was not edited");
    assert!(
        r.stderr.contains("out/a.txt was changed by hand")
            && r.stderr.contains("out/a.txt.pflow-kept"),
        "{r}"
    );

    // An item that was a hit in the last build (only the new item ran) still owns its
    // file.
    let items = |version: &str, items: Value| {
        let mut doc = writing(version);
        doc["nodes"][0]["batch"]["items"] = items;
        doc
    };
    ws.set_workflow(&items("two", json!(["a", "b", "c"])));
    let r = ws.build(&[]);
    assert_eq!(r.doc()["nodes"][0]["executions"], 1, "only c ran: {r}");
    ws.write("out/b.txt", "more notes");
    ws.set_workflow(&items("three", json!(["a", "b", "c"])));
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out/b.txt"), "three b");
    assert_eq!(ws.read("out/b.txt.pflow-kept"), "more notes");
}

/// The same under the home directory: an item's files are named there as `~/…` (so its
/// output is the same on every machine); a hand edit to one written by an item that was a
/// hit in the last build is still found, not overwritten.
#[test]
fn a_hand_edit_under_the_home_directory_is_kept_from_a_batch_rewrite() {
    let writing = |version: &str, items: Value| {
        json!({"nodes": [{"id": "save", "type": "write-file",
                          "batch": {"items": items},
                          "params": {"file_path": "~/out/${item}.txt",
                                     "content": format!("{version} ${{item}}")}}]})
    };
    let ws = Workspace::new().workflow(writing("one", json!(["a", "b"])));
    let home = ws.home_dir().to_path_buf();
    let allow = ["--allow-write", home.to_str().unwrap_or_default()];
    ws.build(&allow).assert_ok();
    ws.set_workflow(&writing("one", json!(["a", "b", "c"])));
    let r = ws.build(&allow);
    assert_eq!(r.doc()["nodes"][0]["executions"], 1, "only c ran: {r}");
    std::fs::write(home.join("out/a.txt"), "my notes").unwrap();
    ws.set_workflow(&writing("two", json!(["a", "b", "c"])));
    let r = ws.build_text(&allow);
    r.assert_ok();
    let read = |name: &str| std::fs::read_to_string(home.join("out").join(name)).ok();
    for item in ["a", "b", "c"] {
        assert_eq!(read(&format!("{item}.txt")), Some(format!("two {item}")));
    }
    assert_eq!(read("a.txt.pflow-kept").as_deref(), Some("my notes"), "{r}");
    assert_eq!(read("b.txt.pflow-kept"), None, "b was not edited: {r}");
    assert!(r.stderr.contains("out/a.txt was changed by hand"), "{r}");
}

/// Items that write one path (the last one's content stays) do not take each other's
/// content for a hand edit.
#[test]
fn batch_items_writing_one_path_are_not_taken_for_hand_edits() {
    let writing = |version: &str| {
        json!({"nodes": [{"id": "save", "type": "write-file",
                          "batch": {"items": ["a", "b"], "parallel": false},
                          "params": {"file_path": "out/last.txt",
                                     "content": format!("{version} ${{item}}")}}]})
    };
    let ws = Workspace::new().workflow(writing("one"));
    ws.build(&[]).assert_ok();
    for version in ["two", "three"] {
        ws.set_workflow(&writing(version));
        let r = ws.build_text(&[]);
        r.assert_ok();
        assert_eq!(ws.read("out/last.txt"), format!("{version} b"));
        assert!(!ws.exists("out/last.txt.pflow-kept"), "{r}");
        assert!(!r.stderr.contains("changed by hand"), "{r}");
    }
}

/// A node uses a value as written: `write-file` keeps an object's members in their order
/// and `1.0` as `1.0`. A key that sorted members and wrote `1.0` as `1` served the file
/// of the first spelling after an edit to the second.
#[test]
fn a_value_written_otherwise_is_not_served_the_old_result() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "save", "type": "write-file",
         "params": {"file_path": "out.json", "content": {"b": 1, "a": 2}}}
    ]}));
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out.json"), "{\n  \"b\": 1,\n  \"a\": 2\n}");
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["content"] = json!({"a": 2, "b": 1}));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["save"], "{r}");
    assert_eq!(ws.read("out.json"), "{\n  \"a\": 2,\n  \"b\": 1\n}");
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["content"] = json!({"a": 2, "b": 1.0}));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["save"], "{r}");
    assert_eq!(ws.read("out.json"), "{\n  \"a\": 2,\n  \"b\": 1.0\n}");
    // The same value again is a hit: the order counts, not a new key each build.
    assert_eq!(ws.build(&[]).with_status("cached"), ["save"]);
}

/// The same for a value a dependency produced: a response whose members came back in
/// another order reaches the file made from it (early cutoff must not hide it).
#[test]
fn an_output_whose_members_changed_order_reaches_its_dependents() {
    use crate::stub::{Reply, Stub};
    let stub = Stub::start(|_, n| {
        let body = if n == 0 {
            json!({"b": 1, "a": 2})
        } else {
            json!({"a": 2, "b": 1})
        };
        Reply::json(200, &body)
    });
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "get", "type": "http", "cache": false, "params": {"url": stub.url()}},
        {"id": "save", "type": "write-file",
         "params": {"file_path": "out.json", "content": "${get.response}"}}
    ]}));
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out.json"), "{\n  \"b\": 1,\n  \"a\": 2\n}");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["get", "save"], "{r}");
    assert_eq!(ws.read("out.json"), "{\n  \"a\": 2,\n  \"b\": 1\n}");
    let r = ws.build(&[]);
    assert_eq!(r.with_status("cached"), ["save"], "{r}");
}
