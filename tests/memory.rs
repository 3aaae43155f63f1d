//! Peak memory of a no-op build of a big workflow (the performance issue asks for under
//! 100 MB at 10,000 nodes). Its own test binary, so that nothing else runs beside it.

#[path = "integration/common/mod.rs"]
mod common;

use common::Workspace;
use serde_json::{json, Value};
use std::process::Stdio;

const LIMIT_KB: i64 = 100 * 1024;

/// The layered DAG of the benchmarks: node i reads nodes i-1 and i/2.
fn layered(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let message = if i == 0 {
                "root".to_string()
            } else {
                format!(
                    "{i}:${{n{}.metadata.count}}:${{n{}.metadata.count}}",
                    i - 1,
                    i / 2
                )
            };
            json!({"id": format!("n{i}"), "type": "echo", "params": {"message": message}})
        })
        .collect();
    json!({ "nodes": nodes })
}

/// Run the build to its end and return its peak resident set (KB) and exit status.
/// `wait4` reports the usage of that one child, not of every child this process had.
#[allow(clippy::zombie_processes)] // reaped by wait4, which std's wait cannot replace here
fn peak_kb(ws: &Workspace) -> (i64, i32) {
    let child = ws
        .cmd()
        .command()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start pflow");
    let mut status = 0;
    // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child,
    // which nothing else waits for.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let pid = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as i32, "wait4 failed");
    (usage.ru_maxrss, status)
}

#[test]
fn a_no_op_build_of_10000_nodes_stays_under_100_mb() {
    let ws = Workspace::new().workflow(layered(10_000));
    let first = ws.build(&[]);
    first.assert_ok();
    let (kb, status) = peak_kb(&ws);
    assert_eq!(status, 0, "the no-op build failed");
    assert!(kb > 0, "no usage reported");
    assert!(
        kb < LIMIT_KB,
        "peak resident set {} MB, limit {} MB",
        kb / 1024,
        LIMIT_KB / 1024
    );
    // And it was a no-op.
    let again = ws.build(&[]);
    assert_eq!(again.with_status("cached").len(), 10_000);
}
