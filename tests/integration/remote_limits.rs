//! A remote cache server cannot make pflow use unbounded memory or time: answers are
//! read only up to what they may be, and a server that drips bytes is dropped. The
//! server here is a small loopback one the test controls byte by byte.

use crate::common::Workspace;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// How the server answers `GET …/ac/<key>` and `GET …/cas/<sha>`.
#[derive(Clone, Copy)]
enum Behaviour {
    /// An action entry of 400 MB (zeros), written as fast as the client takes it.
    HugeEntry,
    /// A well-formed entry whose outputs blob then comes one byte per 100 ms.
    DrippingBlob,
}

/// Start the server; its base URL. It stops with the test process.
fn serve(how: Behaviour) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/pflow/", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || answer(conn, how));
        }
    });
    url
}

fn answer(mut conn: TcpStream, how: Behaviour) {
    let mut path = String::new();
    {
        let mut reader = BufReader::new(&conn);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            return;
        }
        path = line.split_whitespace().nth(1).unwrap_or("").to_string();
        // The rest of the request head.
        while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
            line.clear();
        }
    }
    let key = path.rsplit('/').next().unwrap_or("").to_string();
    match (how, path.contains("/ac/")) {
        (Behaviour::HugeEntry, true) => {
            let size: u64 = 400 << 20;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {size}\r\nConnection: close\r\n\r\n"
            );
            let zeros = vec![b'0'; 1 << 20];
            for _ in 0..400 {
                if conn.write_all(&zeros).is_err() {
                    return; // the client stopped reading, as it should
                }
            }
        }
        (Behaviour::DrippingBlob, true) => {
            let entry = json!({
                "format": "pflow-remote-v1", "key": key, "node": "n",
                "output_digest": "0".repeat(64),
                "outputs": {"sha256": "1".repeat(64), "size": 10_000_000},
                "files": [], "duration_ms": 1, "time_ms": 1, "run_id": "r"
            })
            .to_string();
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{entry}",
                entry.len()
            );
        }
        (Behaviour::DrippingBlob, false) => {
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\nConnection: close\r\n\r\n"
            );
            // Bounded: at most a minute of dripping.
            for _ in 0..600 {
                if conn.write_all(b"x").and_then(|_| conn.flush()).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        _ => {
            let _ = write!(
                conn,
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    }
}

fn workspace() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [{"id": "n", "type": "echo", "params": {"message": "hi"}}],
        "outputs": {"out": {"source": "${n.echo}"}}
    }))
}

#[test]
fn a_400_mb_entry_is_not_read_into_memory() {
    let url = serve(Behaviour::HugeEntry);
    let ws = workspace();
    let (out, peak_kb) = ws
        .cmd()
        .args(&["--remote-cache", &url, "--explain"])
        .pflow()
        .spawn()
        .wait_with_peak_rss();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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
    assert!(peak_kb < 100 * 1024, "peak memory {peak_kb} KB");
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
