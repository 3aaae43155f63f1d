//! Peak memory of a no-op build of a big workflow (the performance issue asks for under
//! 100 MB at 10,000 nodes). Its own test binary, so that nothing else runs beside it.

#[path = "integration/common/mod.rs"]
mod common;

use common::Workspace;
use serde_json::{json, Value};

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

/// Run the build to its end and return its peak resident set (KB) and exit code.
fn peak_kb(ws: &Workspace) -> (i64, Option<i32>) {
    let (out, kb) = ws.cmd().pflow().spawn().wait_with_peak_rss();
    (kb, out.status.code())
}

#[test]
fn a_no_op_build_of_10000_nodes_stays_under_100_mb() {
    let ws = Workspace::new().workflow(layered(10_000));
    let first = ws.build(&[]);
    first.assert_ok();
    let (kb, code) = peak_kb(&ws);
    assert_eq!(code, Some(0), "the no-op build failed");
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
