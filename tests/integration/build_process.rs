//! Processes: independent nodes run in parallel (`--jobs`), and Ctrl-C stops a build,
//! kills its children and leaves the cache usable.

use crate::common;

use common::{counted, live_processes_in_group, wait_for, Workspace};
use serde_json::{json, Value};
use std::time::Duration;

fn two_sleeps() -> Value {
    json!({
        "nodes": [
            {"id": "left", "type": "shell", "params": {"command": counted("left", "sleep 1")}},
            {"id": "right", "type": "shell", "params": {"command": counted("right", "sleep 1")}}
        ]
    })
}

fn interval(trace: &Value, id: &str) -> (u64, u64) {
    let n = trace["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == id)
        .unwrap();
    (
        n["start_ms"].as_u64().unwrap(),
        n["end_ms"].as_u64().unwrap(),
    )
}

#[test]
fn two_independent_sleeps_finish_in_well_under_two_seconds_with_two_jobs() {
    let ws = Workspace::new().workflow(two_sleeps());
    let r = ws.build(&["--jobs", "2", "--trace", "trace.json"]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), ["left", "right"]);
    assert!(
        r.elapsed < Duration::from_millis(1800),
        "two 1 s sleeps took {:?} with --jobs 2",
        r.elapsed
    );
    // They really overlapped.
    let trace: Value = serde_json::from_str(&ws.read("trace.json")).unwrap();
    let (l, r_) = (interval(&trace, "left"), interval(&trace, "right"));
    assert!(l.0 < r_.1 && r_.0 < l.1, "no overlap: {l:?} {r_:?}");
}

#[test]
fn one_job_runs_one_node_at_a_time() {
    let ws = Workspace::new().workflow(two_sleeps());
    let r = ws.build(&["--jobs", "1", "--trace", "trace.json"]);
    r.assert_ok();
    let trace: Value = serde_json::from_str(&ws.read("trace.json")).unwrap();
    let (l, r_) = (interval(&trace, "left"), interval(&trace, "right"));
    assert!(
        l.1 <= r_.0 || r_.1 <= l.0,
        "overlap with --jobs 1: {l:?} {r_:?}"
    );
}

#[test]
fn ctrl_c_kills_running_children_exits_130_and_the_next_build_reuses_finished_nodes() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "quick", "type": "shell", "params": {"command": counted("quick", "echo fast")}},
            {"id": "slow", "type": "shell", "params": {"command": counted("slow",
                "echo $$ > slow.pid; test -e go-fast || sleep 30 | cat; echo slow done")}},
            {"id": "after", "type": "shell",
             "params": {"command": counted("after", "echo ${slow.stdout} ${quick.stdout}")}}
        ],
        "outputs": {"out": {"source": "${after.stdout}"}}
    }));
    let mut running = ws.cmd().arg("--jobs").arg("2").start();
    assert!(
        wait_for(Duration::from_secs(10), || ws.exists("slow.pid")
            && ws.count("quick") == 1
            && ws.read("slow.pid").trim().parse::<i32>().is_ok()),
        "the slow node never started"
    );
    let pgid: i32 = ws.read("slow.pid").trim().parse().unwrap();
    // Give `quick` time to be recorded, and the pipeline time to start.
    assert!(wait_for(
        Duration::from_secs(5),
        || live_processes_in_group(pgid).len() >= 2
    ));
    std::thread::sleep(Duration::from_millis(200));

    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert!(r.elapsed < Duration::from_secs(10));
    assert_eq!(r.doc()["success"], false);
    assert_eq!(r.status_of("quick"), "ran");
    assert_eq!(r.status_of("slow"), "failed");
    assert_eq!(r.errors()[0]["category"], "interrupted");
    assert_eq!(r.errors()[0]["repairable"], false);
    assert_eq!(r.status_of("after"), "skipped");
    assert_eq!(ws.count("after"), 0);
    assert!(
        wait_for(Duration::from_secs(3), || live_processes_in_group(pgid)
            .is_empty()),
        "children survived the interrupt: {:?}",
        live_processes_in_group(pgid)
    );

    // The next build finishes; what finished before the interrupt is reused.
    ws.write("go-fast", "");
    let next = ws.build(&["--jobs", "2"]);
    next.assert_ok();
    assert_eq!(next.status_of("quick"), "cached");
    assert_eq!(next.status_of("slow"), "ran");
    assert_eq!(next.status_of("after"), "ran");
    assert_eq!(next.output("out"), "slow done fast");
    assert_eq!(ws.count("quick"), 1);
}

#[test]
fn ctrl_c_in_text_mode_also_exits_130() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "slow", "type": "shell",
                   "params": {"command": "echo $$ > slow.pid; exec sleep 30"}}]
    }));
    let mut running = ws.cmd().text().start();
    assert!(wait_for(Duration::from_secs(10), || ws.exists("slow.pid")));
    std::thread::sleep(Duration::from_millis(100));
    running.interrupt();
    let r = running.wait(Duration::from_secs(10));
    r.assert_code(130);
    assert!(r.stderr.contains("slow"), "{r}");
}

/// A command that prints the huge-page flag it inherited, and what it prints when they
/// are allowed and when not.
pub(crate) const SHOW_FLAG: &str = "grep THP_enabled /proc/self/status";
pub(crate) const HUGE: &str = "THP_enabled:\t1";
pub(crate) const SMALL: &str = "THP_enabled:\t0";

/// Does this kernel show the process's huge-page flag, and is it on for this test (so
/// that what pflow's steps inherit says what pflow set)?
pub(crate) fn huge_pages_shown() -> bool {
    let shown =
        std::fs::read_to_string("/proc/self/status").is_ok_and(|s| s.lines().any(|l| l == HUGE));
    if !shown {
        eprintln!("skipped: no transparent huge pages for this process (THP_enabled is not 1)");
    }
    shown
}

/// A one-step workflow whose output is the huge-page flag its command inherited.
fn inherited_flag() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [{"id": "thp", "type": "shell", "params": {"command": SHOW_FLAG}}],
        "outputs": {"thp": {"source": "${thp.stdout}"}}
    }))
}

/// What the build's `thp` step saw (its output `thp`).
pub(crate) fn flag_seen(r: &crate::common::BuildResult) -> Option<&str> {
    r.output("thp").as_str().map(str::trim)
}

/// A build that goes the normal way allows huge pages, and the commands it starts inherit
/// that: pflow begins with small pages (a short run would zero a whole 2 MiB page for its
/// first few KB), and a build that fills its memory turns them on. (The edit path keeps
/// small pages: `build_edit`.)
#[test]
fn a_normal_build_starts_its_commands_with_huge_pages_allowed() {
    if !huge_pages_shown() {
        return;
    }
    let r = inherited_flag().build(&[]);
    assert_eq!(flag_seen(&r), Some(HUGE), "{r}");
}

/// A process started with huge pages off keeps them off, whatever the build.
#[test]
fn a_process_started_without_huge_pages_never_turns_them_on() {
    if !huge_pages_shown() {
        return;
    }
    let r = inherited_flag().cmd().env("MIMALLOC_ALLOW_THP", "0").run();
    assert_eq!(flag_seen(&r), Some(SMALL), "{r}");
}
