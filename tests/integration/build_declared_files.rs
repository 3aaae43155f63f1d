//! Files as build inputs and outputs: `reads` and `writes` declared on a node, the edges
//! their paths imply, and outputs that carry the content of the files a node wrote.

use crate::common;

use common::{counted, Workspace};
use serde_json::json;

/// A shell step counting the words of every declared document, one step using its
/// output, and one unrelated step.
fn word_count_workflow() -> serde_json::Value {
    json!({
        "nodes": [
            {"id": "count", "type": "shell", "reads": ["docs/*.md", "extra.txt"],
             "params": {"command": counted("count", "cat docs/*.md extra.txt | wc -w | tr -d ' '")}},
            {"id": "report", "type": "shell",
             "params": {"command": counted("report", "echo words: ${count.stdout}")}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo other")}}
        ],
        "outputs": {"report": {"source": "${report.stdout}"}}
    })
}

#[test]
fn editing_a_declared_file_reruns_the_step_and_only_what_depends_on_it() {
    let ws = Workspace::new().workflow(word_count_workflow());
    ws.write("docs/a.md", "one two three\n");
    ws.write("docs/b.md", "four\n");
    ws.write("extra.txt", "five\n");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("report"), "words: 5");

    // Nothing changed: nothing runs.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.stat("ran"), 0, "{r}");
    assert_eq!(
        (ws.count("count"), ws.count("report"), ws.count("other")),
        (1, 1, 1)
    );

    // An edit of a file the glob matches.
    ws.write("docs/b.md", "four and more\n");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.output("report"), "words: 7");
    assert_eq!(r.status_of("count"), "ran");
    assert!(r.reason_of("count").contains("docs/b.md"), "{r}");
    assert_eq!(r.status_of("report"), "ran");
    assert_eq!(r.status_of("other"), "cached");

    // An edit of a literal declared path.
    ws.write("extra.txt", "five six\n");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("report"), "words: 8");

    // A new file matching the glob.
    ws.write("docs/c.md", "seven\n");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.output("report"), "words: 9");
    assert_eq!(r.status_of("count"), "ran");
    assert!(r.reason_of("count").contains("docs/c.md"), "{r}");

    // And again nothing.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.stat("ran"), 0, "{r}");
    assert_eq!(
        (ws.count("count"), ws.count("report"), ws.count("other")),
        (4, 4, 1)
    );
}

#[test]
fn a_declared_read_that_does_not_change_output_stops_at_the_step() {
    // Early cutoff still holds: the edit re-runs the reader, whose output is the same.
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "lines", "type": "shell", "reads": ["data.txt"],
             "params": {"command": counted("lines", "wc -l < data.txt | tr -d ' '")}},
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo ${lines.stdout}")}}
        ]
    }));
    ws.write("data.txt", "a\nb\n");
    ws.build(&[]).assert_ok();
    ws.write("data.txt", "c\nd\n");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("lines"), "ran");
    assert_eq!(r.status_of("after"), "cached");
    assert_eq!((ws.count("lines"), ws.count("after")), (2, 1));
}

/// A writer listed after its reader, with no edge between them: only the paths say
/// which runs first.
/// A directory read, declared as the directory or as `dir/**`, names every file under
/// it: an edit inside it, at any depth, or a file added re-runs the node (the files were
/// not in the key: the old result was served forever).
#[test]
fn a_declared_directory_read_covers_every_file_under_it() {
    let cat = "cat src/a.txt src/sub/b.txt src/c.txt 2>/dev/null | tr '\\n' ' '";
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "glob", "type": "shell", "reads": ["src/**"], "params": {"command": cat}},
            {"id": "dir", "type": "shell", "reads": ["src"], "params": {"command": cat}}],
        "outputs": {"g": {"source": "${glob.stdout}"}, "d": {"source": "${dir.stdout}"}}
    }));
    ws.write("src/a.txt", "v1\n");
    ws.write("src/sub/b.txt", "s1\n");
    let r = ws.build(&[]);
    r.assert_ok();
    let both = |r: &common::BuildResult, want: &str| {
        assert_eq!(r.output("g"), want, "{r}");
        assert_eq!(r.output("d"), want, "{r}");
    };
    both(&r, "v1 s1 ");
    assert_eq!(ws.build(&[]).stat("ran"), 0, "nothing changed");
    ws.write("src/sub/b.txt", "s2\n");
    let r = ws.build(&[]);
    both(&r, "v1 s2 ");
    ws.write("src/c.txt", "new\n");
    let r = ws.build(&[]);
    both(&r, "v1 s2 new ");
    assert_eq!(ws.build(&[]).stat("ran"), 0, "nothing changed");
}

/// A declared read changed while its step ran (a checkout during the build): the step may
/// have read either content, so its result is used but not cached. Stored under the key
/// of the content before, it was served for that content ever after.
#[test]
fn a_declared_read_changed_while_its_step_runs_is_not_cached() {
    use std::time::Duration;
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "z", "type": "shell", "reads": ["data.txt"],
                   "params": {"command":
                       "touch started; while [ ! -f go ]; do sleep 0.02; done; cat data.txt"}}],
        "outputs": {"o": {"source": "${z.stdout}"}}
    }));
    ws.write("data.txt", "AAAA\n");
    let running = ws.cmd().text().start();
    assert!(common::wait_for(Duration::from_secs(20), || ws.exists("started")));
    ws.write("data.txt", "BBBB\n");
    ws.write("go", "");
    let r = running.wait(Duration::from_secs(30));
    assert_eq!(r.code, 0, "{r}");
    assert!(
        r.stderr
            .contains("'data.txt' changed while it was read; its result is not cached"),
        "{r}"
    );
    ws.write("data.txt", "AAAA\n");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(
        r.output("o"),
        "AAAA",
        "the result of BBBB served for AAAA: {r}"
    );
    assert_eq!(r.with_status("ran"), ["z"], "{r}");
}

/// A file whose name holds glob characters is the file of that name: an edit to it
/// re-runs the step (read as a glob only, it matched nothing and was never keyed).
#[test]
fn a_declared_file_named_like_a_glob_is_that_file() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "show", "type": "shell", "reads": ["report[1].txt"],
                   "params": {"command": "cat 'report[1].txt'"}}],
        "outputs": {"o": {"source": "${show.stdout}"}}
    }));
    ws.write("report[1].txt", "one\n");
    assert_eq!(ws.build(&[]).output("o"), "one");
    ws.write("report[1].txt", "two\n");
    let r = ws.build(&[]);
    assert_eq!(r.output("o"), "two", "{r}");
}

fn write_then_read(content: &str, slow_writer: bool) -> serde_json::Value {
    let writer = if slow_writer {
        json!({"id": "writer", "type": "shell", "writes": ["out.txt"],
               "params": {"command": format!("sleep 0.05; printf '%s' '{content}' > out.txt")}})
    } else {
        json!({"id": "writer", "type": "write-file",
               "params": {"file_path": "out.txt", "content": content}})
    };
    json!({
        "nodes": [
            {"id": "reader", "type": "shell", "reads": ["out.txt"],
             "params": {"command": counted("reader", "cat out.txt")}},
            writer
        ],
        "outputs": {"text": {"source": "${reader.stdout}"}}
    })
}

#[test]
fn a_reader_of_a_written_file_runs_after_its_writer_on_every_cold_build() {
    for slow_writer in [false, true] {
        for round in 0..20 {
            let content = format!("round {round}");
            let ws = Workspace::new().workflow(write_then_read(&content, slow_writer));
            let r = ws.build(&["--jobs", "4"]);
            r.assert_ok();
            assert_eq!(
                r.output("text"),
                content.as_str(),
                "slow writer {slow_writer}: {r}"
            );
        }
    }
}

#[test]
fn a_change_of_written_content_reruns_the_reader() {
    for slow_writer in [false, true] {
        let ws = Workspace::new().workflow(write_then_read("first", slow_writer));
        ws.build(&[]).assert_ok();
        let r = ws.build(&[]);
        assert_eq!(r.stat("ran"), 0, "{r}");
        ws.set_workflow(&write_then_read("other", slow_writer));
        let r = ws.build(&[]);
        r.assert_ok();
        assert_eq!(r.status_of("reader"), "ran", "{r}");
        assert_eq!(r.output("text"), "other");
        assert_eq!(ws.count("reader"), 2);
    }
}

#[test]
fn an_explicit_edge_sees_new_content_of_the_same_length() {
    // The reader declares nothing: only the writer's output digest tells it the file
    // changed ("first" and "other" have the same length, so `bytes` is the same).
    let wf = |content: &str| {
        json!({
            "nodes": [
                {"id": "writer", "type": "write-file",
                 "params": {"file_path": "out.txt", "content": content}},
                {"id": "reader", "type": "shell", "params": {"command": counted("reader", "cat out.txt")}}
            ],
            "edges": [{"from": "writer", "to": "reader"}],
            "outputs": {"text": {"source": "${reader.stdout}"}}
        })
    };
    let ws = Workspace::new().workflow(wf("first"));
    ws.build(&[]).assert_ok();
    ws.set_workflow(&wf("other"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("text"), "other", "{r}");
    assert_eq!(ws.count("reader"), 2);
}

#[test]
fn a_shell_step_declaring_writes_passes_new_content_to_its_dependents() {
    // stdout is empty every time; the declared file is what changes.
    let wf = |word: &str| {
        json!({
            "nodes": [
                {"id": "make", "type": "shell", "writes": ["gen/out.txt"],
                 "params": {"command": format!("mkdir -p gen; echo {word} > gen/out.txt")}},
                {"id": "use", "type": "shell", "params": {"command": counted("use", "cat gen/out.txt")}}
            ],
            "edges": [{"from": "make", "to": "use"}],
            "outputs": {"text": {"source": "${use.stdout}"}}
        })
    };
    let ws = Workspace::new().workflow(wf("alpha"));
    ws.build(&[]).assert_ok();
    ws.set_workflow(&wf("bravo"));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("text"), "bravo", "{r}");
    assert_eq!(ws.count("use"), 2);
}

#[test]
fn two_writers_of_one_path_are_a_validation_error_naming_both() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "first", "type": "write-file", "params": {"file_path": "out/x.txt", "content": "a"}},
            {"id": "second", "type": "shell", "writes": ["./out/x.txt"],
             "params": {"command": "echo b > out/x.txt"}}
        ]
    }));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'first'") && stderr.contains("'second'"),
        "{stderr}"
    );
    assert!(stderr.contains("out/x.txt"), "{stderr}");
    assert!(stderr.contains("nodes[1].writes[0]"), "{stderr}");
    // A build refuses it too, before running anything.
    let r = ws.build(&[]);
    r.assert_code(2);
    assert!(!ws.exists("out/x.txt"));
}

#[test]
fn a_glob_writer_and_a_literal_writer_of_one_path_conflict() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "plots", "type": "shell", "writes": ["out/*.png"], "params": {"command": "true"}},
            {"id": "one", "type": "write-file", "params": {"file_path": "out/a.png", "content": "x"}}
        ]
    }));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'plots'") && stderr.contains("'one'"),
        "{stderr}"
    );
}

#[test]
fn a_declared_output_the_step_did_not_produce_fails_it_naming_the_path() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "make", "type": "shell", "writes": ["made.txt", "forgot.txt"],
             "params": {"command": "echo x > made.txt"}},
            {"id": "after", "type": "shell", "params": {"command": "echo ${make.stdout}"}}
        ]
    }));
    let r = ws.build(&[]);
    r.assert_code(1);
    assert_eq!(r.status_of("make"), "failed");
    assert_eq!(r.status_of("after"), "skipped");
    let message = r.errors()[0]["message"].as_str().unwrap_or("");
    assert!(message.contains("forgot.txt"), "{r}");
    assert!(!message.contains("made.txt"), "{r}");
    // Not cached: the next build runs it again (and fails again).
    ws.build(&[]).assert_code(1);
}

#[test]
fn a_declared_glob_output_matching_nothing_fails_the_step() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "plots", "type": "shell", "writes": ["plots/*.png"],
                   "params": {"command": "mkdir -p plots"}}]
    }));
    let r = ws.build(&[]);
    r.assert_code(1);
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("plots/*.png"),
        "{r}"
    );
}

#[test]
fn a_declared_output_deleted_by_the_user_is_restored() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "plots", "type": "shell", "writes": ["plots/*.txt", "summary.txt"],
                   "params": {"command": counted("plots", "mkdir -p plots; echo a > plots/a.txt; echo b > plots/b.txt; echo s > summary.txt")}}]
    }));
    ws.build(&[]).assert_ok();
    ws.remove("summary.txt");
    ws.remove("plots/b.txt");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("plots"), "restored", "{r}");
    assert_eq!(ws.read("summary.txt"), "s\n");
    assert_eq!(ws.read("plots/b.txt"), "b\n");
    assert_eq!(ws.count("plots"), 1);
    // Restored files are the node's again: the next build is a plain hit.
    let r = ws.build(&[]);
    assert_eq!(r.status_of("plots"), "cached", "{r}");
}

/// A link that was there before the step (the user's) is written through: what the step
/// wrote is the file it leads to, kept and put back by its content.
#[test]
fn a_step_writing_through_a_users_link_is_kept_by_the_content() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "gen", "type": "shell", "writes": ["out.txt"],
                   "params": {"command": counted("gen", "echo hi > out.txt")}}]
    }));
    ws.write("store/out.txt", "");
    std::os::unix::fs::symlink("store/out.txt", ws.path().join("out.txt")).unwrap();
    ws.build(&[]).assert_ok();
    assert_eq!(ws.read("store/out.txt"), "hi\n");
    // The link left dangling: the file the step wrote comes back at its path.
    ws.remove("store/out.txt");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("gen"), "restored", "{r}");
    assert_eq!(ws.read("out.txt"), "hi\n");
    assert_eq!(ws.count("gen"), 1);
}

/// An entry of more files than the build may hold open at once is put back whole: each
/// file's folder is held while it is restored, not all of them first.
#[test]
fn an_entry_of_more_files_than_may_be_open_at_once_is_restored() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "gen", "type": "shell", "writes": ["out/*.txt"],
                   "params": {"command": counted("gen", "mkdir -p out; for i in $(seq 1 300); do echo $i > out/f$i.txt; done")}}]
    }));
    ws.cmd().fd_limit(128).run().assert_ok();
    std::fs::remove_dir_all(ws.path().join("out")).unwrap();
    let r = ws.cmd().fd_limit(128).args(&["--explain"]).run();
    r.assert_ok();
    assert_eq!(r.status_of("gen"), "restored", "{r}");
    assert_eq!(ws.count("gen"), 1);
    assert_eq!(ws.read("out/f300.txt"), "300\n");
}

/// A restored file has the permission bits the node made it with, as a fresh run gives:
/// a generated script stays executable, a private file stays private.
#[test]
fn a_restored_file_keeps_the_permission_bits_it_was_made_with() {
    use std::os::unix::fs::PermissionsExt;
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "gen", "type": "shell", "writes": ["run.sh", "key.pem", "plain.txt"],
                   "params": {"command": counted("gen", "printf 'echo ok' > run.sh; chmod 755 run.sh; echo k > key.pem; chmod 600 key.pem; echo p > plain.txt; chmod 644 plain.txt")}}]
    }));
    ws.build(&[]).assert_ok();
    let mode = |f: &str| {
        std::fs::metadata(ws.path().join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
    };
    let made: Vec<u32> = ["run.sh", "key.pem", "plain.txt"].map(mode).to_vec();
    assert_eq!(made, [0o755, 0o600, 0o644]);
    for f in ["run.sh", "key.pem", "plain.txt"] {
        ws.remove(f);
    }
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("gen"), "restored", "{r}");
    assert_eq!(ws.count("gen"), 1);
    assert_eq!(["run.sh", "key.pem", "plain.txt"].map(mode).to_vec(), made);
}

/// A symbolic link a step makes is kept as a link: put back as one when it is deleted,
/// and not taken for a hand edit when the file it points to is.
#[test]
fn a_link_a_step_writes_is_restored_as_a_link() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "gen", "type": "shell", "writes": ["a.txt", "latest"],
                   "params": {"command": counted("gen", "echo a > a.txt; ln -sf a.txt latest")}}]
    }));
    ws.build(&[]).assert_ok();
    let link = |ws: &Workspace| {
        let p = ws.path().join("latest");
        let meta = std::fs::symlink_metadata(&p).unwrap();
        assert!(meta.file_type().is_symlink(), "latest is no longer a link");
        std::fs::read_link(p).unwrap()
    };
    ws.remove("latest");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("gen"), "restored", "{r}");
    assert_eq!(link(&ws), std::path::PathBuf::from("a.txt"));
    // The file it points to edited by hand: that file is the edit, not the link.
    ws.write("a.txt", "mine\n");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(ws.read("a.txt"), "a\n");
    assert_eq!(ws.read("a.txt.pflow-kept"), "mine\n");
    assert!(!ws.path().join("latest.pflow-kept").exists(), "{r}");
    assert_eq!(link(&ws), std::path::PathBuf::from("a.txt"));
    // The link pointed elsewhere by hand: that is an edit of the link, kept.
    std::fs::remove_file(ws.path().join("latest")).unwrap();
    std::os::unix::fs::symlink("other.txt", ws.path().join("latest")).unwrap();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(link(&ws), std::path::PathBuf::from("a.txt"));
    assert_eq!(
        std::fs::read_link(ws.path().join("latest.pflow-kept")).unwrap(),
        std::path::PathBuf::from("other.txt")
    );
    assert_eq!(ws.count("gen"), 1);
}

#[test]
fn a_cycle_through_implied_edges_is_reported() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "a", "type": "shell", "reads": ["b.txt"], "writes": ["a.txt"],
             "params": {"command": "cat b.txt > a.txt"}},
            {"id": "b", "type": "shell", "reads": ["a.txt"], "writes": ["b.txt"],
             "params": {"command": "cat a.txt > b.txt"}}
        ]
    }));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cycle between nodes"), "{stderr}");
    assert!(stderr.contains("'a'") && stderr.contains("'b'"), "{stderr}");
}

#[test]
fn templates_in_declared_paths_are_rejected_with_their_json_path() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"dir": {"type": "string", "default": "docs"}},
        "nodes": [{"id": "a", "type": "shell", "reads": ["${dir}/x.md"], "params": {"command": "true"}}]
    }));
    let out = ws.pflow().args(["validate", "workflow.json"]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("nodes[0].reads[0]"), "{stderr}");
}

#[test]
fn the_graph_draws_implied_edges_apart_from_written_ones() {
    let ws = Workspace::new().workflow(write_then_read("x", false));
    let out = ws
        .pflow()
        .args(["graph", "workflow.json", "--format", "dot"])
        .output();
    let dot = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{dot}");
    // writer is n1, reader n0.
    assert!(dot.contains("n1 -> n0 [style=dotted"), "{dot}");
    let out = ws
        .pflow()
        .args(["graph", "workflow.json", "--format", "mermaid"])
        .output();
    let mermaid = String::from_utf8_lossy(&out.stdout);
    assert!(mermaid.contains("n1 -.->|file| n0"), "{mermaid}");
}

#[test]
fn a_batch_node_declaring_writes_gets_them_back_after_a_deletion() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "each", "type": "shell", "writes": ["out/*.txt"],
                   "batch": {"items": ["a", "b"]},
                   "params": {"command": counted("each", "mkdir -p out; echo ${item} > out/${item}.txt")}}]
    }));
    ws.build(&[]).assert_ok();
    ws.remove("out/b.txt");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("each"), "restored", "{r}");
    assert_eq!(ws.read("out/b.txt"), "b\n");
    assert_eq!(ws.count("each"), 2);
}

#[test]
fn changing_a_declaration_reruns_the_node_and_explain_says_so() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "n", "type": "shell", "reads": ["a.txt"],
                   "params": {"command": counted("n", "cat a.txt b.txt")}}]
    }));
    ws.write("a.txt", "a\n");
    ws.write("b.txt", "b\n");
    ws.build(&[]).assert_ok();
    ws.edit_workflow(|wf| wf["nodes"][0]["reads"] = json!(["a.txt", "b.txt"]));
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("n"), "ran");
    assert!(r.reason_of("n").contains("declared reads changed"), "{r}");
    // From now on an edit of b.txt is seen.
    ws.write("b.txt", "bb\n");
    let r = ws.build(&[]);
    assert_eq!(r.status_of("n"), "ran", "{r}");
    assert_eq!(ws.count("n"), 3);
}

/// cacache's sized writer cannot store 0 bytes: a node that wrote an empty file was
/// never cached (a warning and a re-run on every build).
#[test]
fn an_empty_written_file_is_cached_restored_and_verified() {
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "touch", "type": "shell", "writes": ["empty.txt"],
         "params": {"command": "echo run >> touch.count; : > empty.txt"}},
        {"id": "w", "type": "write-file", "params": {"file_path": "also-empty.txt", "content": ""}}
    ]}));
    let first = ws.build(&[]);
    first.assert_ok();
    assert_eq!(first.doc()["warnings"], json!([]), "{first}");
    let again = ws.build(&[]);
    assert_eq!(again.status_of("touch"), "cached", "{again}");
    assert_eq!(again.status_of("w"), "cached", "{again}");
    ws.remove("empty.txt");
    let back = ws.build(&[]);
    assert_eq!(back.status_of("touch"), "restored", "{back}");
    assert!(ws.exists("empty.txt"));
    assert_eq!(ws.read("empty.txt"), "");
    assert_eq!(ws.count("touch"), 1);
    let verify = ws
        .pflow()
        .args(["cache", "verify", "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
}
