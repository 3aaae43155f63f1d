//! Corners of the build: cache max-age, duplicate batch items, files written by batches
//! and copies, non-UTF-8 output, empty piped stdin, concurrent builds sharing a cache.

use crate::common;

use common::{counted, Workspace};
use serde_json::json;
use std::time::Duration;

#[test]
fn cache_max_age_reruns_a_node_once_its_entry_is_too_old() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "fresh", "type": "shell", "cache": "1s",
             "params": {"command": counted("fresh", "echo v")}},
            {"id": "keep", "type": "shell", "params": {"command": counted("keep", "echo k")}}
        ]
    }));
    ws.build(&[]).assert_ok();
    let r = ws.build(&[]);
    assert_eq!(r.status_of("fresh"), "cached", "{r}");
    std::thread::sleep(Duration::from_millis(1300));
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("fresh"), "ran");
    assert!(r.reason_of("fresh").contains("older than"), "{r}");
    assert_eq!(r.status_of("keep"), "cached");
    assert_eq!((ws.count("fresh"), ws.count("keep")), (2, 1));
}

#[test]
fn equal_batch_items_execute_once_per_command() {
    for parallel in [false, true] {
        let ws = Workspace::new().workflow(json!({
            "nodes": [{
                "id": "each", "type": "shell",
                "batch": {"items": ["x", "x", "x", "y"], "parallel": parallel, "max_concurrent": 4},
                "params": {"command": "echo run >> item-${item}.count; sleep 0.2; echo ${item}"}
            }],
            "outputs": {"all": {"source": "${each.results}"}}
        }));
        let r = ws.build(&[]);
        r.assert_ok();
        let stdouts: Vec<&str> = r
            .output("all")
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["stdout"].as_str().unwrap())
            .collect();
        assert_eq!(stdouts, ["x", "x", "x", "y"]);
        assert_eq!(
            (ws.count("item-x"), ws.count("item-y")),
            (1, 1),
            "parallel: {parallel}"
        );
        assert_eq!(r.executions_of("each"), 2, "parallel: {parallel}");
    }
}

#[test]
fn files_written_by_batch_items_are_restored() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "up", "type": "shell", "params": {"command": counted("up", "echo '[\"a\",\"b\"]'")}},
            {"id": "save", "type": "write-file",
             "batch": {"items": "${up.stdout}"},
             "params": {"file_path": "out/${item}.txt", "content": "item ${item}"}}
        ]
    }));
    ws.build(&[]).assert_ok();
    ws.remove("out/b.txt");
    ws.write("out/a.txt", "tampered");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("save"), "restored");
    assert_eq!(r.status_of("up"), "cached");
    assert_eq!(ws.read("out/a.txt"), "item a");
    assert_eq!(ws.read("out/b.txt"), "item b");
    assert_eq!(ws.count("up"), 1);
}

/// A batch item's outputs name the digests of the files it wrote, as a node's do: new
/// content under the same outputs reaches the dependents (no early cutoff hides it).
#[test]
fn new_content_written_by_a_batch_item_reaches_its_dependents() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "gen", "type": "shell", "cache": false, "batch": {"items": ["a"]},
             "writes": ["out/a.txt"],
             "params": {"command": "mkdir -p out; n=$(cat n 2>/dev/null || echo 0); n=$((n+1)); echo $n > n; echo $n > out/a.txt"}},
            {"id": "show", "type": "shell",
             "params": {"command": "cat out/a.txt; true ${gen.count}"}}
        ],
        "outputs": {"shown": {"source": "${show.stdout}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("shown"), "1");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("show"), "ran", "{r}");
    assert_eq!(r.output("shown"), "2");
}

#[test]
fn copy_file_follows_its_source_and_restores_its_destination() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "copy", "type": "copy-file",
             "params": {"source_path": "src.txt", "dest_path": "dest/copy.txt", "overwrite": true}},
            {"id": "show", "type": "shell",
             "params": {"command": counted("show", "cat dest/copy.txt"), "stdin": "${copy.bytes}"}}
        ],
        "outputs": {"out": {"source": "${show.stdout}"}}
    }));
    ws.write("src.txt", "one");
    ws.build(&[]).assert_ok();

    ws.remove("dest/copy.txt");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("copy"), "restored");
    assert_eq!(ws.read("dest/copy.txt"), "one");

    ws.write("src.txt", "two!");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("copy"), "ran");
    assert_eq!(r.reason_of("copy"), "input file src.txt changed");
    assert_eq!(ws.read("dest/copy.txt"), "two!");
    assert_eq!(r.output("out"), "two!");
}

#[test]
fn non_utf8_shell_output_is_kept_byte_for_byte() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "bin", "type": "shell", "params": {"command": "printf 'a\\377\\376b'"}},
            {"id": "save", "type": "write-file", "params": {
                "file_path": "out.bin", "content": "${bin.stdout}",
                "content_is_binary": "${bin.stdout_is_binary}"}}
        ],
        "outputs": {"out": {"source": "${bin.stdout}"}, "binary": {"source": "${bin.stdout_is_binary}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    // Not silently replaced: base64 of the exact bytes, flagged.
    assert_eq!(r.output("out"), "Yf/+Yg==");
    assert_eq!(r.output("binary"), true);
    assert_eq!(
        std::fs::read(ws.file("out.bin")).expect("written"),
        b"a\xff\xfeb"
    );
    let again = ws.build(&[]);
    assert_eq!(again.status_of("bin"), "cached");
}

#[test]
fn empty_piped_stdin_does_not_count_as_a_value() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"data": {"type": "string", "stdin": true, "description": "the text"}},
        "nodes": [{"id": "n", "type": "shell", "params": {"command": "cat", "stdin": "${data}"}}]
    }));
    // The helper gives the build /dev/null as stdin: not a terminal, nothing piped.
    let r = ws.build(&[]);
    r.assert_code(2);
    let msg = r.errors()[0]["message"].as_str().unwrap();
    assert!(msg.contains("data") && msg.contains("the text"), "{msg}");
}

#[test]
fn concurrent_builds_sharing_a_cache_dir_all_succeed_and_fill_it() {
    let ws = Workspace::new().workflow(json!({
        "nodes": (0..6).map(|i| json!({
            "id": format!("n{i}"), "type": "shell",
            "params": {"command": format!("echo {i}")}
        })).chain(std::iter::once(json!({
            "id": "save", "type": "write-file",
            "params": {"file_path": "out.txt", "content": "${n0.stdout}${n5.stdout}"}
        }))).collect::<Vec<_>>()
    }));
    let folders: Vec<Workspace> = (0..4).map(|_| ws.another_folder()).collect();
    let running: Vec<_> = folders.iter().map(|f| f.cmd().start()).collect();
    for (f, run) in folders.iter().zip(running) {
        let r = run.wait(Duration::from_secs(30));
        r.assert_ok();
        assert_eq!(f.read("out.txt"), "05");
    }
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.stat("ran"), 0, "{r}");
    assert_eq!(r.status_of("save"), "restored");
}

#[test]
fn explain_says_why_a_node_was_reused() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "a", "type": "shell", "params": {"command": "echo a"}}]
    }));
    ws.build(&[]).assert_ok();
    let r = ws.build_text(&["--explain"]);
    r.assert_ok();
    let line = r.stderr.lines().find(|l| l.contains(" a (shell)")).unwrap();
    assert!(
        line.contains("cached") && line.contains("inputs unchanged"),
        "{line}"
    );
}

#[test]
fn env_values_change_the_key_and_rerun_the_node() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"who": {"type": "string"}},
        "nodes": [{"id": "hi", "type": "shell",
                   "params": {"command": counted("hi", "echo \"hi $WHO\""), "env": {"WHO": "${who}"}}}],
        "outputs": {"out": {"source": "${hi.stdout}"}}
    }));
    let r = ws.build(&["who=ada"]);
    assert_eq!(r.output("out"), "hi ada");
    let r = ws.build(&["who=bob"]);
    assert_eq!(r.output("out"), "hi bob");
    let r = ws.build(&["who=ada"]);
    assert_eq!(r.status_of("hi"), "cached");
    assert_eq!(r.output("out"), "hi ada");
    assert_eq!(ws.count("hi"), 2);
}

#[test]
fn home_relative_paths_do_not_make_keys_machine_specific() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "copy", "type": "copy-file",
             "params": {"source_path": "~/src.txt", "dest_path": "copy.txt", "overwrite": true}},
            {"id": "use", "type": "shell",
             "params": {"command": counted("use", "echo '${copy.source_path}' ${copy.dest_path}")}}
        ],
        "outputs": {"out": {"source": "${use.stdout}"}}
    }));
    let other = ws.another_folder();
    let mut results = Vec::new();
    for w in [&ws, &other] {
        w.write("home/src.txt", "same content");
        let r = w.cmd().env("HOME", w.file("home")).run();
        r.assert_ok();
        assert_eq!(w.read("copy.txt"), "same content");
        results.push(r);
    }
    assert_eq!(results[0].output("out"), "~/src.txt copy.txt");
    assert_eq!(results[1].status_of("use"), "cached", "{}", results[1]);
    assert_eq!(results[1].node("use")["key"], results[0].node("use")["key"]);
}

#[test]
fn files_the_workflow_itself_removes_stay_removed_on_a_rebuild() {
    // A temporary file written, used, then deleted or moved by later nodes: a no-op
    // rebuild must leave the disk as the first build did (no token file coming back).
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "w", "type": "write-file", "params": {"file_path": "secret.tmp", "content": "token=abc"}},
            {"id": "use", "type": "shell", "params": {"command": "wc -c < secret.tmp"}},
            {"id": "rm", "type": "delete-file", "params": {"file_path": "secret.tmp"}},
            {"id": "w2", "type": "write-file", "params": {"file_path": "draft.txt", "content": "d"}},
            {"id": "mv", "type": "move-file", "params": {"source_path": "draft.txt", "dest_path": "final.txt"}}
        ],
        "edges": [{"from": "w", "to": "use"}, {"from": "use", "to": "rm"}, {"from": "w2", "to": "mv"}]
    }));
    ws.build(&[]).assert_ok();
    assert!(!ws.exists("secret.tmp") && !ws.exists("draft.txt") && ws.exists("final.txt"));
    for _ in 0..2 {
        let r = ws.build(&[]);
        r.assert_ok();
        for id in ["w", "use", "rm", "w2", "mv"] {
            assert_eq!(r.status_of(id), "cached", "{id}: {r}");
        }
        assert!(!ws.exists("secret.tmp"), "the deleted file came back");
        assert!(!ws.exists("draft.txt"), "the moved file came back");
        assert_eq!(ws.read("final.txt"), "d");
    }
    // A file the workflow does not remove is still restored.
    ws.remove("final.txt");
    let r = ws.build(&[]);
    assert_eq!(r.status_of("mv"), "restored", "{r}");
    assert_eq!(ws.read("final.txt"), "d");
}

#[test]
fn a_copy_updates_its_own_previous_output_but_not_a_users_file() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "cp", "type": "copy-file",
                   "params": {"source_path": "src.txt", "dest_path": "copy/dst.txt"}}]
    }));
    ws.write("src.txt", "one");
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("copy/dst.txt"), "one");
    // The source changes: the copy is pflow's own output, so it is updated.
    ws.write("src.txt", "two, longer");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("cp"), "ran");
    assert_eq!(ws.read("copy/dst.txt"), "two, longer");
    // Someone edits the destination by hand, then the source changes: that file is not
    // pflow's to overwrite without "overwrite": true.
    ws.write("copy/dst.txt", "hand edit");
    ws.write("src.txt", "three");
    let r = ws.build(&[]);
    assert_eq!(r.code, 1, "{r}");
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("overwrite"),
        "{r}"
    );
    assert_eq!(ws.read("copy/dst.txt"), "hand edit");
}

/// A node that takes a file away (a move's source, a deletion) comes after the node that
/// writes it, as a reader does: listed first, with one job, it used to run first, and the
/// move failed or the deletion found nothing while the file was then written.
#[test]
fn a_node_taking_a_file_away_runs_after_its_writer() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "mv", "type": "move-file",
             "params": {"source_path": "draft.txt", "dest_path": "final.txt"}},
            {"id": "rm", "type": "delete-file", "params": {"file_path": "scratch.txt"}},
            {"id": "w", "type": "write-file", "params": {"file_path": "draft.txt", "content": "d"}},
            {"id": "s", "type": "write-file", "params": {"file_path": "scratch.txt", "content": "s"}}
        ]
    }));
    let r = ws.build(&["--jobs", "1"]);
    r.assert_ok();
    assert_eq!(ws.read("final.txt"), "d");
    assert!(!ws.exists("draft.txt"), "{r}");
    assert!(!ws.exists("scratch.txt"), "{r}");
}
