//! A remote cache server cannot make pflow wait without bound: a server that drips
//! bytes is dropped. (That it cannot make pflow use unbounded memory is in
//! `tests/memory.rs`, which measures peak memory with nothing running beside it.)

use crate::common::bad_remote::{serve, Behaviour};
use crate::common::Workspace;
use serde_json::json;
use std::time::Duration;

fn workspace() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [{"id": "n", "type": "echo", "params": {"message": "hi"}}],
        "outputs": {"out": {"source": "${n.echo}"}}
    }))
}

#[test]
fn a_server_that_drips_a_blob_is_dropped_and_the_build_goes_on() {
    let url = serve(Behaviour::DrippingBlob);
    let ws = workspace();
    // Unbounded, the claimed 10 MB at one byte per 100 ms would take 11 days; the test
    // only guards against a hang.
    let out = ws
        .cmd()
        .args(&["--remote-cache", &url])
        .env("PFLOW_REMOTE_CACHE_TIMEOUT_MS", "500")
        .pflow()
        .spawn()
        .wait_at_most(Duration::from_secs(60));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.status.code(), Some(0), "{doc:#}");
    assert_eq!(doc["outputs"]["out"], "hi");
    assert_eq!(doc["nodes"][0]["status"], "ran", "{doc:#}");
    let warnings = doc["warnings"].to_string();
    assert!(warnings.contains("too slow"), "{warnings}");
}
