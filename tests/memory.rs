//! Peak memory of pflow in the cases where it must stay bounded: a no-op build of a big
//! workflow (under 110 MB at 10,000 nodes, debug build), a workflow far over the node limit, and a
//! remote cache that sends a huge answer. Its own test binary, and one test at a time
//! ([`one_at_a_time`]): a child's peak includes what it shares with this process until
//! it starts pflow, so nothing big may be alive here meanwhile.

#[path = "integration/common/mod.rs"]
mod common;

use common::bad_remote::{serve, Behaviour};
use common::Workspace;
use serde_json::{json, Value};
use std::io::Write;
use std::sync::{Mutex, MutexGuard};

/// The debug build's bound. A 10,000-node no-op peaked at 87 MB at the start of the
/// session that added Markdown, MCP, watch and step logs, and at 94-98 MB after it;
/// bringing it down is the performance issue's work, and this guards against more.
const LIMIT_KB: i64 = 110 * 1024;

fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|p| p.into_inner())
}

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
fn a_no_op_build_of_10000_nodes_stays_under_110_mb() {
    let _one = one_at_a_time();
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

/// The debug build's bound for a no-op the no-op record serves (text output, as the
/// benchmark runs it): about 34 MB at 10,000 nodes when it was added, against 95 for the
/// normal no-op above.
const RECORDED_LIMIT_KB: i64 = 50 * 1024;

#[test]
fn a_no_op_served_from_its_record_stays_under_50_mb() {
    let _one = one_at_a_time();
    let ws = Workspace::new().workflow(layered(10_000));
    ws.build(&[]).assert_ok();
    // The first build (its echo steps work on no file) or this one writes the record the
    // next one is served from.
    let r = ws.cmd().text().env("PFLOW_DEBUG", "1").run();
    assert!(
        r.stderr.contains("no-op record written") || r.stderr.contains("no-op record used"),
        "{r}"
    );
    let (out, kb) = ws
        .cmd()
        .text()
        .env("PFLOW_DEBUG", "1")
        .pflow()
        .spawn()
        .wait_with_peak_rss();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("no-op record used"), "{stderr}");
    assert!(stderr.contains("10000 nodes: 10000 cached"), "{stderr}");
    assert!(
        kb < RECORDED_LIMIT_KB,
        "peak resident set {} MB, limit {} MB",
        kb / 1024,
        RECORDED_LIMIT_KB / 1024
    );
}

#[test]
fn a_million_node_workflow_is_refused_before_it_costs_memory() {
    let _one = one_at_a_time();
    let ws = Workspace::new();
    // Written as it is made: the test itself holds no 30 MB string.
    let mut f = std::io::BufWriter::new(std::fs::File::create(ws.file("huge.json")).unwrap());
    f.write_all(b"{\"nodes\": [").unwrap();
    for i in 0..1_000_000 {
        if i > 0 {
            f.write_all(b",").unwrap();
        }
        write!(f, "{{\"id\":\"n{i}\",\"type\":\"echo\"}}").unwrap();
    }
    f.write_all(b"]}").unwrap();
    f.flush().unwrap();
    drop(f);
    let (out, kb) = ws
        .pflow()
        .args(["validate", "huge.json"])
        .spawn()
        .wait_with_peak_rss();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("the workflow has 1000000 nodes, over the limit of 100000"),
        "{stderr}"
    );
    // Parsed into a JSON tree first, it took 1.5 GB.
    assert!(kb < 300 * 1024, "peak resident set {} MB", kb / 1024);
}

#[test]
fn a_400_mb_remote_entry_is_not_read_into_memory() {
    let _one = one_at_a_time();
    let url = serve(Behaviour::HugeEntry);
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "n", "type": "echo", "params": {"message": "hi"}}],
        "outputs": {"out": {"source": "${n.echo}"}}
    }));
    let (out, kb) = ws
        .cmd()
        .args(&["--remote-cache", &url, "--explain"])
        .pflow()
        .spawn()
        .wait_with_peak_rss();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["outputs"]["out"], "hi");
    assert_eq!(doc["nodes"][0]["status"], "ran", "{doc:#}");
    assert!(
        doc["nodes"][0]["reason"]
            .as_str()
            .unwrap_or("")
            .contains("too large"),
        "{doc:#}"
    );
    // The entry alone took 1.24 GB before.
    assert!(kb < LIMIT_KB, "peak resident set {} MB", kb / 1024);
}
