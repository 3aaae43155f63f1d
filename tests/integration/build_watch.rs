//! `--watch`: a build, then another whenever a file the workflow reads changes; what an
//! edit reaches runs again, an invalid edit shows its diagnostics and waits, a change
//! during a build cancels it cleanly, and Ctrl-C ends it with exit 130.

use crate::common;

use common::{counted, files_under, live_processes_in_group, wait_for, Running, Workspace};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Five nodes: `src` reads input.txt, `up` and `len` depend on it; `other` and
/// `other2` do not. `len` sleeps (in a pipeline, in its own process group) while
/// input.txt says "slow".
fn five_nodes() -> Value {
    json!({
        "nodes": [
            {"id": "src", "type": "shell", "reads": ["input.txt"],
             "params": {"command": counted("src", "cat input.txt")}},
            {"id": "up", "type": "shell",
             "params": {"command": counted("up", "tr a-z A-Z"), "stdin": "${src.stdout}"}},
            {"id": "len", "type": "shell",
             "params": {"command": counted("len",
                "echo $$ > len.pid; if grep -q slow input.txt; then sleep 30 | cat; fi; printf %s \"$UP\" | wc -c"),
                "env": {"UP": "${up.stdout}"}}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo other")}},
            {"id": "other2", "type": "shell",
             "params": {"command": counted("other2", "echo ${other.stdout} too")}}
        ],
        "outputs": {"shout": {"source": "${up.stdout}"}}
    })
}

/// Save a file as editors do: the whole new content at once (a new file renamed over
/// the old one), so no watcher can see it half written.
fn save(ws: &Workspace, rel: &str, content: &str) {
    let temp = format!("{rel}.saving");
    ws.write(&temp, content);
    std::fs::rename(ws.file(&temp), ws.file(rel)).expect("rename into place");
}

/// Has the node whose process group is `pgid` reached its `sleep`?
fn sleeping(pgid: i32) -> bool {
    live_processes_in_group(pgid)
        .iter()
        .any(|p| p.ends_with("(sleep)"))
}

/// How many `[build N]` status lines there are so far.
fn builds(running: &Running) -> usize {
    running
        .stderr_so_far()
        .lines()
        .filter(|l| l.starts_with("watch: ") && l.contains("[build "))
        .count()
}

#[track_caller]
fn wait_for_build(running: &Running, n: usize) {
    assert!(
        wait_for(Duration::from_secs(30), || builds(running) >= n),
        "build {n} never finished; stderr so far:\n{}",
        running.stderr_so_far()
    );
}

fn trace(ws: &Workspace) -> Value {
    serde_json::from_str(&ws.read("trace.json")).expect("trace is JSON")
}

fn statuses(trace: &Value) -> Vec<(String, String)> {
    trace["nodes"]
        .as_array()
        .expect("trace nodes")
        .iter()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or("").to_string(),
                n["status"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn ids_with(trace: &Value, status: &str) -> Vec<String> {
    statuses(trace)
        .into_iter()
        .filter(|(_, s)| s == status)
        .map(|(id, _)| id)
        .collect()
}

/// No temp file of pflow's, in the workspace or the cache (cacache's `tmp/` included).
#[track_caller]
fn assert_no_temp_files(ws: &Workspace) {
    let leftovers: Vec<_> = files_under(ws.path())
        .into_iter()
        .chain(files_under(ws.cache_dir()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".pflow-tmp-"))
                || p.starts_with(ws.cache_dir().join("tmp"))
        })
        .collect();
    assert!(leftovers.is_empty(), "temp files left: {leftovers:?}");
}

#[test]
fn an_edit_reruns_what_it_reaches_an_invalid_edit_waits_and_ctrl_c_exits_130() {
    let ws = Workspace::new().workflow(five_nodes());
    ws.write("input.txt", "hello");
    let mut running = ws
        .cmd()
        .text()
        .args(&["--watch", "--trace", "trace.json"])
        .start();
    wait_for_build(&running, 1);
    assert_eq!(ids_with(&trace(&ws), "ran").len(), 5, "{}", trace(&ws));
    let first_run = trace(&ws)["run_id"].clone();

    // An edit of the file `src` reads: `src` and what depends on it run, within 2 s.
    let edited = Instant::now();
    save(&ws, "input.txt", "hello again");
    assert!(
        wait_for(Duration::from_secs(30), || ws.exists("trace.json")
            && trace(&ws)["run_id"] != first_run),
        "no build after the edit; stderr:\n{}",
        running.stderr_so_far()
    );
    let took = edited.elapsed();
    assert!(
        took < Duration::from_secs(2),
        "the rebuild took {took:?} after the edit"
    );
    let second = trace(&ws);
    assert_eq!(second["success"], true, "{second}");
    assert_eq!(ids_with(&second, "ran"), ["src", "up", "len"], "{second}");
    assert_eq!(ids_with(&second, "cached"), ["other", "other2"], "{second}");
    for (node, runs) in [
        ("src", 2),
        ("up", 2),
        ("len", 2),
        ("other", 1),
        ("other2", 1),
    ] {
        assert_eq!(ws.count(node), runs, "{node}");
    }
    wait_for_build(&running, 2);
    assert!(
        running
            .stderr_so_far()
            .contains("input.txt changed; building again"),
        "{}",
        running.stderr_so_far()
    );

    // An invalid workflow: its diagnostics, then a wait; saved back, a correct build.
    let valid = ws.read("workflow.json");
    let mut broken = five_nodes();
    broken["nodes"][1]["params"]["stdin"] = json!("${nope.stdout}");
    save(&ws, "workflow.json", &broken.to_string());
    wait_for_build(&running, 3);
    let so_far = running.stderr_so_far();
    assert!(
        so_far.contains("error: workflow.json:") && so_far.contains(" nodes[1].params.stdin: "),
        "{so_far}"
    );
    assert!(
        so_far.contains("the workflow is invalid; waiting for it to change"),
        "{so_far}"
    );
    let before_fix = trace(&ws)["run_id"].clone();
    save(&ws, "workflow.json", &valid);
    wait_for_build(&running, 4);
    let fixed = trace(&ws);
    assert_ne!(fixed["run_id"], before_fix);
    assert_eq!(fixed["success"], true, "{fixed}");
    assert_eq!(ids_with(&fixed, "cached").len(), 5, "{fixed}");
    assert_eq!(ws.count("src"), 2);

    // Ctrl-C while `len` runs a pipeline: exit 130, its processes gone, no temp files.
    ws.remove("len.pid");
    save(&ws, "input.txt", "slow please");
    assert!(
        wait_for(Duration::from_secs(30), || ws.exists("len.pid")
            && ws.read("len.pid").trim().parse::<i32>().is_ok()),
        "len never started; stderr:\n{}",
        running.stderr_so_far()
    );
    let pgid: i32 = ws.read("len.pid").trim().parse().unwrap();
    assert!(wait_for(Duration::from_secs(10), || sleeping(pgid)));
    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert!(r.stderr.contains("watch: interrupted; stopping"), "{r}");
    assert!(
        wait_for(Duration::from_secs(3), || live_processes_in_group(pgid)
            .is_empty()),
        "children survived Ctrl-C: {:?}",
        live_processes_in_group(pgid)
    );
    assert_no_temp_files(&ws);
}

#[test]
fn a_change_during_a_build_cancels_it_and_the_next_build_leaves_nothing_to_do() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "slow", "type": "shell", "reads": ["input.txt"],
             "params": {"command": counted("slow",
                "echo $$ > slow.pid; cat input.txt; test -e go-fast || sleep 30 | cat")}},
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo done: ${slow.stdout}")}},
            {"id": "side", "type": "shell", "params": {"command": counted("side", "echo side")}}
        ],
        "outputs": {"out": {"source": "${after.stdout}"}}
    }));
    ws.write("input.txt", "one");
    let mut running = ws
        .cmd()
        .text()
        .args(&["--watch", "--trace", "trace.json", "--jobs", "2"])
        .start();
    assert!(
        wait_for(Duration::from_secs(30), || ws.exists("slow.pid")
            && ws.read("slow.pid").trim().parse::<i32>().is_ok()),
        "slow never started"
    );
    let pgid: i32 = ws.read("slow.pid").trim().parse().unwrap();
    assert!(wait_for(Duration::from_secs(10), || sleeping(pgid)));

    // The change cancels the running build; the next one runs to the end.
    ws.write("go-fast", "");
    save(&ws, "input.txt", "two");
    wait_for_build(&running, 2);
    let so_far = running.stderr_so_far();
    assert!(
        so_far.contains("input.txt changed; cancelling the build in progress"),
        "{so_far}"
    );
    assert!(so_far.contains("build cancelled by a change"), "{so_far}");
    assert!(
        wait_for(Duration::from_secs(3), || live_processes_in_group(pgid)
            .is_empty()),
        "the cancelled build's children survived: {:?}",
        live_processes_in_group(pgid)
    );
    let t = trace(&ws);
    assert_eq!(t["success"], true, "{t}");
    assert_eq!(ids_with(&t, "ran"), ["slow", "after"], "{t}");
    assert_eq!(ids_with(&t, "cached"), ["side"], "{t}");

    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert!(r.stdout.contains("done: two"), "{r}");
    assert_no_temp_files(&ws);

    // Nothing partial was kept: a plain build now runs nothing.
    let next = ws.build(&[]);
    next.assert_ok();
    assert_eq!(next.with_status("ran"), Vec::<String>::new(), "{next}");
    assert_eq!(next.output("out"), "done: two");
    assert_eq!(ws.count("slow"), 2, "one cancelled run, one complete");
    assert_eq!(ws.count("after"), 1);
    assert_eq!(ws.count("side"), 1);
}

#[test]
fn polling_sees_an_edit_and_a_touch_without_an_edit_builds_nothing() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "notes.txt"}},
            {"id": "shout", "type": "shell",
             "params": {"command": counted("shout", "tr a-z A-Z"), "stdin": "${read.content}"}}
        ],
        "outputs": {"out": {"source": "${shout.stdout}"}}
    }));
    ws.write("notes.txt", "quiet");
    let mut running = ws
        .cmd()
        .text()
        .args(&["--watch"])
        .env("PFLOW_WATCH_POLL", "100")
        .start();
    wait_for_build(&running, 1);
    assert!(
        running.stderr_so_far().contains("polling every 100 ms"),
        "{}",
        running.stderr_so_far()
    );

    // Same bytes, new mtime: not a change.
    let same = std::fs::File::options()
        .write(true)
        .open(ws.file("notes.txt"))
        .unwrap();
    same.set_modified(std::time::SystemTime::now() + Duration::from_secs(5))
        .unwrap();
    drop(same);
    // Several polls see the new mtime; had it counted, a second build would start now.
    std::thread::sleep(Duration::from_millis(600));
    save(&ws, "notes.txt", "loud");
    wait_for_build(&running, 2);
    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert_eq!(ws.count("shout"), 2);
    assert!(
        r.stdout.contains("QUIET") && r.stdout.contains("LOUD"),
        "{r}"
    );
    assert_eq!(
        r.stderr.matches("building again").count(),
        1,
        "only the edit is a change: {r}"
    );
}

/// `get` prints JSON about a user; `show` reads field `field` of it.
fn user_workflow(field: &str) -> Value {
    json!({
        "nodes": [
            {"id": "get", "type": "shell", "params": {
                "command": "echo '{\"user\": {\"name\": \"Ada\", \"id\": 7}}'"}},
            {"id": "show", "type": "shell",
             "params": {"command": format!("echo Hello ${{get.stdout.user.{field}}}")}}
        ],
        "outputs": {"greeting": {"source": "${show.stdout}"}}
    })
}

#[test]
fn watch_mode_replays_recorded_repairs_and_asks_the_model_only_when_told_to() {
    use crate::stub::{anthropic_check, anthropic_message, Reply, Request, Stub};
    let fixed = user_workflow("name");
    let reply = format!(
        "```json\n{}\n```",
        serde_json::to_string_pretty(&fixed).unwrap()
    );
    let stub = Stub::start(move |req: &Request, _| {
        anthropic_check(req)
            .unwrap_or_else(|| Reply::json(200, &anthropic_message("claude-haiku-4-5", &reply)))
    });
    let ws = Workspace::new().workflow(user_workflow("fullname"));
    let build = |extra: &[&str]| {
        ws.pflow()
            .args(["build", "workflow.json", "--cache-dir"])
            .arg(ws.cache_dir())
            .args(extra)
            .env("ANTHROPIC_BASE_URL", stub.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
    };
    // A plain build repairs it with one model call, and records the repair.
    let first = build(&["--output-format", "json"]).output();
    assert_eq!(first.status.code(), Some(0), "{first:?}");
    assert_eq!(stub.count(), 1);

    // Watching the same broken workflow replays that repair, without the model.
    let mut watching = build(&["--watch"]).spawn();
    let status_lines = |p: &common::Process| {
        p.stderr_so_far()
            .lines()
            .filter(|l| l.starts_with("watch: ") && l.contains("[build "))
            .count()
    };
    assert!(
        wait_for(Duration::from_secs(30), || status_lines(&watching) >= 1),
        "{}",
        watching.stderr_so_far()
    );
    let so_far = watching.stderr_so_far();
    assert!(
        so_far.contains("repair: replaying proven patch"),
        "{so_far}"
    );
    assert!(so_far.contains("build done"), "{so_far}");
    assert_eq!(stub.count(), 1);

    // A failure no recorded repair fits: the model is not asked without --watch-repair.
    save(&ws, "workflow.json", &user_workflow("nickname").to_string());
    assert!(
        wait_for(Duration::from_secs(30), || status_lines(&watching) >= 2),
        "{}",
        watching.stderr_so_far()
    );
    let so_far = watching.stderr_so_far();
    assert!(
        so_far.contains("repair: in watch mode the model is asked only with --watch-repair"),
        "{so_far}"
    );
    assert!(
        so_far.contains("build failed; waiting for changes"),
        "{so_far}"
    );
    assert_eq!(stub.count(), 1);
    watching.interrupt();
    let out = watching.wait_at_most(Duration::from_secs(10));
    assert_eq!(out.status.code(), Some(130));

    // With --watch-repair the model is asked.
    let mut asking = build(&["--watch", "--watch-repair"]).spawn();
    assert!(
        wait_for(Duration::from_secs(30), || status_lines(&asking) >= 1),
        "{}",
        asking.stderr_so_far()
    );
    assert!(
        asking.stderr_so_far().contains("build done"),
        "{}",
        asking.stderr_so_far()
    );
    assert_eq!(stub.count(), 2);
    asking.interrupt();
    assert_eq!(
        asking.wait_at_most(Duration::from_secs(10)).status.code(),
        Some(130)
    );
}

#[test]
fn a_path_a_template_builds_is_watched_once_a_build_read_it_and_written_files_are_not() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string"}},
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "${name}.txt"}},
            {"id": "copy", "type": "write-file",
             "params": {"file_path": "out.txt", "content": "${read.content}"}}
        ]
    }));
    ws.write("notes.txt", "one");
    let mut running = ws.cmd().text().args(&["--watch", "name=notes"]).start();
    wait_for_build(&running, 1);
    assert_eq!(ws.read("out.txt"), "one");

    save(&ws, "notes.txt", "two");
    wait_for_build(&running, 2);
    assert_eq!(ws.read("out.txt"), "two");
    // Writing out.txt set off nothing; an edit of it by hand does not either.
    save(&ws, "out.txt", "by hand");
    std::thread::sleep(Duration::from_millis(500));
    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert_eq!(r.stderr.matches("building again").count(), 1, "{r}");
    assert!(
        r.stderr.contains("notes.txt changed; building again"),
        "{r}"
    );
}

#[test]
fn a_file_a_template_named_that_changed_during_the_build_that_read_it_is_built_again() {
    // `read` reads notes.txt, a path only the build knows; `slow` keeps the build going.
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string"}},
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "${name}.txt"}},
            {"id": "slow", "type": "shell",
             "params": {"command": counted("slow", "touch slow.started; sleep 1; cat"),
                        "stdin": "${read.content}"}},
            {"id": "copy", "type": "write-file",
             "params": {"file_path": "out.txt", "content": "${slow.stdout}"}}
        ]
    }));
    ws.write("notes.txt", "one");
    let mut running = ws.cmd().text().args(&["--watch", "name=notes"]).start();
    // Changed after it was read, while the build still runs and before anything
    // watches it: no event will tell.
    assert!(wait_for(Duration::from_secs(30), || ws.exists("slow.started")));
    save(&ws, "notes.txt", "two");
    wait_for_build(&running, 1);
    // The first build made out.txt from what it read; the change is built next.
    assert!(
        wait_for(Duration::from_secs(20), || ws.exists("out.txt")
            && ws.read("out.txt") == "two"),
        "the change was never built; stderr so far:\n{}",
        running.stderr_so_far()
    );
    wait_for_build(&running, 2);
    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert!(
        r.stderr.contains("notes.txt changed; building again"),
        "{r}"
    );
    assert_eq!(ws.count("slow"), 2, "{r}");
}

#[test]
fn a_glob_whose_directory_does_not_exist_yet_sees_files_once_it_does() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "count", "type": "shell", "reads": ["data/*.csv"],
             "params": {"command": counted("count", "ls data 2>/dev/null | wc -l")}}
        ]
    }));
    let running = ws.cmd().text().args(&["--watch"]).start();
    wait_for_build(&running, 1);
    save(&ws, "data/a.csv", "1");
    wait_for_build(&running, 2);
    save(&ws, "data/b.csv", "2");
    wait_for_build(&running, 3);
    let mut running = running;
    running.interrupt();
    running.wait(Duration::from_secs(10)).assert_code(130);
    assert_eq!(ws.count("count"), 3);
}

#[test]
fn an_edit_of_a_nested_workflow_file_rebuilds_what_it_reaches() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "run", "type": "workflow", "params": {"workflow_ref": "child.json"}},
            {"id": "other", "type": "shell", "params": {"command": counted("other", "echo other")}}
        ]
    }));
    let child = |word: &str| {
        json!({"nodes": [{"id": "say", "type": "shell",
                          "params": {"command": counted("say", &format!("echo {word}"))}}]})
        .to_string()
    };
    ws.write("child.json", &child("one"));
    let mut running = ws
        .cmd()
        .text()
        .args(&["--watch", "--trace", "trace.json"])
        .start();
    wait_for_build(&running, 1);
    save(&ws, "child.json", &child("two"));
    wait_for_build(&running, 2);
    let second = trace(&ws);
    assert_eq!(ids_with(&second, "ran"), ["run", "run/say"], "{second}");
    assert_eq!((ws.count("say"), ws.count("other")), (2, 1));
    running.interrupt();
}

/// A batch of many workers turns huge pages off (each worker's heap would pin whole
/// 2 MiB pages), and so it does in every build of `--watch`, not only the first: each
/// build goes the normal way, which turns them on again. The items' commands inherit
/// the flag as it is when they start.
#[test]
fn every_build_of_a_watch_gives_a_wide_batch_small_pages() {
    use crate::build_process::{huge_pages_shown, SHOW_FLAG, SMALL};
    if !huge_pages_shown() {
        return;
    }
    // Enough items that the batch grows past 16 workers however fast each takes one.
    let items: Vec<u32> = (0..48).collect();
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "each", "type": "shell", "reads": ["input.txt"],
             "batch": {"items": items, "parallel": true, "max_concurrent": 48},
             "params": {"command": format!("{SHOW_FLAG} > thp-${{item}}.txt; sleep 0.2")}}
        ]
    }));
    ws.write("input.txt", "1");
    // What the items that started last saw (those after the batch turned pages off).
    let small_pages_seen = |ws: &Workspace| {
        let seen: Vec<String> = items
            .iter()
            .map(|i| ws.read(&format!("thp-{i}.txt")).trim().to_string())
            .collect();
        for i in &items {
            let _ = std::fs::remove_file(ws.file(&format!("thp-{i}.txt")));
        }
        seen.iter().any(|s| s == SMALL)
    };
    let mut running = ws.cmd().text().args(&["--watch"]).start();
    wait_for_build(&running, 1);
    assert!(small_pages_seen(&ws), "{}", running.stderr_so_far());
    save(&ws, "input.txt", "2");
    wait_for_build(&running, 2);
    assert!(small_pages_seen(&ws), "{}", running.stderr_so_far());
    running.interrupt();
    running.wait(Duration::from_secs(10)).assert_code(130);
}
