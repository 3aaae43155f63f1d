//! A remote cache server that misbehaves byte by byte, on loopback: for the tests that
//! pflow bounds what a server can cost it (memory, time).

use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// How the server answers `GET …/ac/<key>` and `GET …/cas/<sha>`.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// An action entry of 400 MB (zeros), written as fast as the client takes it.
    HugeEntry,
    /// A well-formed entry whose outputs blob then comes one byte per 100 ms.
    DrippingBlob,
}

/// Start the server; its base URL. It stops with the test process.
pub fn serve(how: Behaviour) -> String {
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
    let path;
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
