//! `delete-file` and `move-file` are effects on files: a rebuild reuses one only while
//! its effect still holds. A file deleted by the workflow that is created again is
//! deleted again; a new file at a move's source is moved; and a file the workflow
//! removes stays removed on no-op builds, however its path was spelled.

use crate::common::Workspace;
use serde_json::json;
use std::io::Write;

#[test]
fn a_recreated_file_is_deleted_again() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "rm", "type": "delete-file", "params": {"file_path": "junk.txt"}}]
    }));
    ws.write("junk.txt", "old");
    ws.build(&[]).assert_ok();
    assert!(!ws.exists("junk.txt"));

    let r = ws.build(&[]);
    assert_eq!(r.status_of("rm"), "cached", "{r}");

    ws.write("junk.txt", "made again");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("rm"), "ran", "{r}");
    assert!(r.reason_of("rm").contains("junk.txt"), "{r}");
    assert!(
        !ws.exists("junk.txt"),
        "the re-created file was not deleted"
    );
    assert_eq!(ws.build(&[]).status_of("rm"), "cached");
}

#[test]
fn a_new_file_at_a_moves_source_is_moved() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "mv", "type": "move-file",
                   "params": {"source_path": "inbox/report.txt", "dest_path": "done/report.txt",
                              "overwrite": true}}]
    }));
    ws.write("inbox/report.txt", "first");
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("done/report.txt"), "first");
    assert_eq!(ws.build(&[]).status_of("mv"), "cached");

    ws.write("inbox/report.txt", "second");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("mv"), "ran", "{r}");
    assert!(
        !ws.exists("inbox/report.txt"),
        "the new source was left behind"
    );
    assert_eq!(ws.read("done/report.txt"), "second");
    let r = ws.build(&[]);
    assert_eq!(r.status_of("mv"), "cached", "{r}");
    assert_eq!(ws.read("done/report.txt"), "second");
}

#[test]
fn an_intermediate_file_removed_through_a_template_stays_removed() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string", "default": "work.tmp"}},
        "nodes": [
            {"id": "w", "type": "write-file", "params": {"file_path": "${name}", "content": "token=abc"}},
            {"id": "use", "type": "shell", "params": {"command": "wc -c < ${w.file_path}"}},
            {"id": "rm", "type": "delete-file", "params": {"file_path": "${w.file_path}"}},
            {"id": "w2", "type": "write-file", "params": {"file_path": "draft-${name}", "content": "d"}},
            {"id": "mv", "type": "move-file", "params": {"source_path": "${w2.file_path}", "dest_path": "final.txt"}}
        ],
        "edges": [{"from": "use", "to": "rm"}]
    }));
    ws.build(&[]).assert_ok();
    assert!(!ws.exists("work.tmp") && !ws.exists("draft-work.tmp") && ws.exists("final.txt"));
    for _ in 0..2 {
        let r = ws.build(&[]);
        r.assert_ok();
        for id in ["w", "use", "rm", "w2", "mv"] {
            assert_eq!(r.status_of(id), "cached", "{id}: {r}");
        }
        assert!(!ws.exists("work.tmp"), "the deleted file came back");
        assert!(!ws.exists("draft-work.tmp"), "the moved file came back");
        assert_eq!(ws.read("final.txt"), "d");
    }
    // Deleting another file now: the old one is the writer's again, and comes back when
    // the writer's result is reused.
    ws.edit_workflow(|doc| doc["nodes"][2]["params"]["file_path"] = json!("other.tmp"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("w"), "restored", "{r}");
    assert_eq!(ws.read("work.tmp"), "token=abc");
}

#[test]
fn temp_files_a_killed_build_left_in_an_output_folder_are_removed_by_the_next_write_there() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "w", "type": "write-file", "params": {"file_path": "out/report.txt", "content": "r"}}]
    }));
    // A process that has exited: its id names no live process.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    let dead = gone.id();
    gone.wait().unwrap();
    let leftover = format!("out/.pflow-tmp-{dead}-a1b2c3");
    ws.write(&leftover, &"x".repeat(1 << 20));
    // A temp file of a process that is still running (this test) is someone's write in
    // progress, and stays.
    let live = format!("out/.pflow-tmp-{}-d4e5f6", std::process::id());
    ws.write(&live, "in progress");
    ws.write(
        "out/.pflow-tmp-notes.txt",
        "a user's file that only looks like one (new)",
    );

    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("out/report.txt"), "r");
    assert!(
        !ws.exists(&leftover),
        "the dead build's temp file is still there"
    );
    assert!(ws.exists(&live), "a live writer's temp file was removed");
    assert!(ws.exists("out/.pflow-tmp-notes.txt"));
}

#[test]
fn an_append_is_an_effect_never_a_snapshot_to_restore() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "log", "type": "write-file",
                   "params": {"file_path": "run.log", "content": "built\n", "append": true}}]
    }));
    ws.write("run.log", "started\n");
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("run.log"), "started\nbuilt\n");
    // Another tool appends too: a rebuild keeps its lines and appends nothing again.
    std::fs::OpenOptions::new()
        .append(true)
        .open(ws.file("run.log"))
        .unwrap()
        .write_all(b"deployed\n")
        .unwrap();
    let r = ws.build(&[]);
    assert_eq!(r.status_of("log"), "cached", "{r}");
    assert_eq!(ws.read("run.log"), "started\nbuilt\ndeployed\n");
    assert!(!ws.exists("run.log.pflow-kept"));
}

#[test]
fn file_nodes_change_files_only_inside_the_workspace_unless_allowed() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("outside.txt");
    let ws = Workspace::new().workflow(json!({
        "inputs": {"where": {"type": "string"}},
        "nodes": [{"id": "w", "type": "write-file", "params": {"file_path": "${where}", "content": "x"}}]
    }));
    // A relative escape and an absolute one, as a template could give them; one up
    // through a link in the workspace (`tmp/..` is the parent of where `tmp` leads);
    // and a link whose target does not exist yet (writing through it creates that).
    std::fs::create_dir(outside.path().join("deep")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("deep"), ws.file("tmp")).unwrap();
    std::os::unix::fs::symlink(&target, ws.file("dangling.txt")).unwrap();
    let escapes = [
        "../outside.txt".to_string(),
        target.to_string_lossy().into_owned(),
        "tmp/../outside.txt".to_string(),
        // Up from a folder the write would create, then through the link.
        "new/../tmp/../outside.txt".to_string(),
        "dangling.txt".to_string(),
    ];
    for path in &escapes {
        let r = ws.build(&[&format!("where={path}")]);
        assert_eq!(r.code, 1, "{path}: {r}");
        let message = r.errors()[0]["message"].as_str().unwrap_or("").to_string();
        assert!(
            message.contains("is outside the workspace") && message.contains("--allow-write"),
            "{message}"
        );
    }
    assert!(!target.exists() && !ws.path().join("../outside.txt").exists());
    // Deleting or moving out is refused the same way.
    std::fs::write(&target, "keep me").unwrap();
    ws.set_workflow(&json!({
        "nodes": [{"id": "rm", "type": "delete-file", "params": {"file_path": target.to_string_lossy()}}]
    }));
    assert_eq!(ws.build(&[]).code, 1);
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "keep me");
    // Allowed by the flag, or by the variable.
    let r = ws.build(&["--allow-write", &outside.path().to_string_lossy()]);
    r.assert_ok();
    assert!(!target.exists());
    ws.set_workflow(&json!({
        "nodes": [{"id": "w", "type": "write-file", "params": {"file_path": target.to_string_lossy(), "content": "x"}}]
    }));
    let r = ws
        .cmd()
        .env(
            "PFLOW_ALLOW_WRITE",
            outside.path().to_string_lossy().as_ref(),
        )
        .run();
    r.assert_ok();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");
}

/// A file is put back from the cache only where the node itself may write it: not
/// outside the workspace when the build no longer allows it, and not through a link
/// put where its folder was (the node runs instead, and is refused as it would be).
#[test]
fn a_restore_writes_only_where_the_node_may_write() {
    let outside = tempfile::tempdir().unwrap();
    let target = outside.path().join("x.txt");
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "w", "type": "write-file",
                   "params": {"file_path": target.to_string_lossy(), "content": "x"}}]
    }));
    let allow = outside.path().to_string_lossy().into_owned();
    ws.build(&["--allow-write", &allow]).assert_ok();
    std::fs::remove_file(&target).unwrap();
    let r = ws.build(&[]);
    assert_eq!(r.code, 1, "{r}");
    assert!(!target.exists(), "restored outside the workspace: {r}");
    let message = r.errors()[0]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("is outside the workspace"), "{message}");
    // Allowed again: put back.
    let r = ws.build(&["--allow-write", &allow]);
    r.assert_ok();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "x");

    // The folder a node wrote into, replaced by a link to a folder outside.
    ws.set_workflow(&json!({
        "nodes": [{"id": "w", "type": "write-file",
                   "params": {"file_path": "out/a.txt", "content": "a"}}]
    }));
    ws.build(&[]).assert_ok();
    std::fs::remove_dir_all(ws.file("out")).unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.file("out")).unwrap();
    let r = ws.build(&[]);
    assert_eq!(r.code, 1, "{r}");
    assert!(!outside.path().join("a.txt").exists(), "{r}");
}

#[test]
fn an_append_killed_before_its_record_is_done_once() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "log", "type": "write-file",
                   "params": {"file_path": "run.log", "content": "built\n", "append": true}}]
    }));
    ws.write("run.log", "started\n");
    // Dies right after the append, before the result is recorded (a kill -9 there).
    let out = ws
        .cmd()
        .env("PFLOW_TEST_EXIT_AFTER_APPEND", "1")
        .pflow()
        .output();
    assert_eq!(out.status.code(), Some(99));
    assert_eq!(ws.read("run.log"), "started\nbuilt\n");
    // The next build finds the append done: it records it and appends nothing.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(ws.read("run.log"), "started\nbuilt\n");
    assert_eq!(ws.build(&[]).status_of("log"), "cached");
    assert_eq!(ws.read("run.log"), "started\nbuilt\n");
    // A new append of the same content (another key) is appended, once.
    ws.edit_workflow(|doc| doc["nodes"][0]["purpose"] = json!("second run"));
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["content"] = json!("built again\n"));
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("run.log"), "started\nbuilt\nbuilt again\n");
}

/// pflow's cache is not a place file nodes change, even inside the workspace or an
/// allowed directory: a path from a response must not plant or damage entries.
#[test]
fn file_nodes_do_not_write_into_the_cache() {
    use crate::common::CacheArg;
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "w", "type": "write-file",
                   "params": {"file_path": ".pflow-cache/planted", "content": "x"}}]
    }));
    let r = ws.cmd().cache_arg(CacheArg::Default).run();
    assert_eq!(r.code, 1, "{r}");
    assert!(!ws.exists(".pflow-cache/planted"), "{r}");
    let message = r.errors()[0]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("is inside pflow's cache"), "{message}");

    // An allowed directory that holds the cache, and a link into it.
    let cache = ws.cache_dir().to_string_lossy().into_owned();
    std::os::unix::fs::symlink(ws.cache_dir(), ws.file("c")).unwrap();
    for path in [format!("{cache}/planted"), "c/planted".to_string()] {
        ws.set_workflow(&json!({
            "nodes": [{"id": "d", "type": "delete-file", "params": {"file_path": path}},
                      {"id": "w", "type": "write-file",
                       "params": {"file_path": path, "content": "x"}}]
        }));
        std::fs::write(ws.cache_dir().join("planted"), "kept").unwrap();
        let r = ws
            .cmd()
            .cache_arg(CacheArg::Flag)
            .args(&["--allow-write", &cache])
            .run();
        assert_eq!(r.code, 1, "{r}");
        assert_eq!(
            std::fs::read_to_string(ws.cache_dir().join("planted")).unwrap(),
            "kept",
            "{path}: {r}"
        );
    }
}

/// A cache that holds the workspace (`--cache-dir .`) cannot be closed whole, or no file
/// node could write anywhere; the names pflow keeps there are closed instead. They used
/// to be open: a path from a response could plant an entry.
#[test]
fn with_the_cache_in_the_workspace_its_own_folders_are_closed() {
    use crate::common::CacheArg;
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "w", "type": "write-file",
                   "params": {"file_path": "out/../packs/planted", "content": "x"}}]
    }));
    let build = || {
        ws.cmd()
            .cache_arg(CacheArg::Default)
            .args(&["--cache-dir", "."])
            .run()
    };
    let r = build();
    assert_eq!(r.code, 1, "{r}");
    assert!(!ws.exists("packs/planted"), "{r}");
    let message = r.errors()[0]["message"].as_str().unwrap_or("").to_string();
    assert!(message.contains("is inside pflow's cache"), "{message}");
    // Anywhere else in the workspace is the workflow's.
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["file_path"] = json!("out/a.txt"));
    let r = build();
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(ws.read("out/a.txt"), "x");
}

/// A temporary file one node writes, a second reads and a third deletes: every build
/// gives what a fresh one does. Reused, the writer puts the file back for the reader
/// (the remover takes it away again); it used to leave it gone, and from the second
/// build on the reader failed.
#[test]
fn a_temporary_file_read_between_its_writer_and_its_remover_is_there_for_the_reader() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "w", "type": "write-file", "params": {"file_path": "tmp.txt", "content": "temp data"}},
            {"id": "r", "type": "read-file", "params": {"file_path": "tmp.txt"}},
            {"id": "d", "type": "delete-file", "params": {"file_path": "tmp.txt"}}],
        "edges": [{"from": "w", "to": "r"}, {"from": "r", "to": "d"}],
        "outputs": {"o": {"source": "${r.content}"}}
    }));
    for build in 1..=3 {
        let r = ws.build(&[]);
        assert_eq!(r.code, 0, "build {build}: {r}");
        assert_eq!(r.output("o"), "temp data", "build {build}: {r}");
        assert!(!ws.exists("tmp.txt"), "build {build}: the remover ran last");
    }
    // The reader's own edit makes it run: the file is there for it.
    ws.edit_workflow(|doc| doc["nodes"][1]["params"]["encoding"] = json!("utf-8"));
    let r = ws.build(&[]);
    assert_eq!(r.code, 0, "{r}");
    assert_eq!(r.output("o"), "temp data", "{r}");
    assert!(!ws.exists("tmp.txt"));
}
