//! An `http` node follows redirects, and a redirect to another origin carries none of
//! the request's credentials: the next server was not the one they were meant for (as
//! curl and browsers do). The servers here are loopback ones that record what they got.

use crate::common::Workspace;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// A server answering `route(path) -> (status line, extra headers)`, recording each
/// request's head. Its base URL and the record.
fn server(
    route: impl Fn(&str) -> (&'static str, String) + Send + Sync + 'static,
) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let record = seen.clone();
    let route = Arc::new(route);
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut head = String::new();
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                head.push_str(&line);
                line.clear();
            }
            let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
            record.lock().unwrap().push(head);
            let (status, extra) = route(&path);
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: 2\r\nConnection: close\r\n\r\nok"
            );
        }
    });
    (base, seen)
}

fn request(url: &str) -> serde_json::Value {
    json!({
        "nodes": [{"id": "get", "type": "http", "params": {
            "url": url,
            "headers": {"X-Trace": "trace-1", "X-Session-Token": "tok-1111", "Cookie": "c=2222",
                        "X-API-Key": "key-4444"},
            "auth_token": "bearer-3333"
        }}],
        "outputs": {"body": {"source": "${get.response}"}}
    })
}

#[test]
fn a_redirect_to_another_origin_carries_no_credentials() {
    let (other, landed) = server(|_| ("200 OK", String::new()));
    let target = format!("{other}/landing");
    let (origin, first) = server(move |path| match path {
        "/start" => ("302 Found", format!("Location: {target}\r\n")),
        "/same" => ("302 Found", "Location: /here\r\n".to_string()),
        _ => ("200 OK", String::new()),
    });

    let ws = Workspace::new().workflow(request(&format!("{origin}/start")));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("body"), "ok");
    let got = landed.lock().unwrap().join("\n").to_lowercase();
    assert!(got.contains("x-trace: trace-1"), "{got}");
    for secret in ["tok-1111", "c=2222", "bearer-3333", "key-4444"] {
        assert!(
            !got.contains(secret),
            "{secret} reached the other origin:\n{got}"
        );
    }
    // The first server got them all: they were meant for it.
    let sent = first.lock().unwrap().join("\n");
    for secret in ["tok-1111", "c=2222", "bearer-3333", "key-4444"] {
        assert!(sent.contains(secret), "{secret} missing:\n{sent}");
    }

    // A redirect within the origin keeps them.
    first.lock().unwrap().clear();
    ws.set_workflow(&request(&format!("{origin}/same")));
    ws.build(&[]).assert_ok();
    let both = first.lock().unwrap().clone();
    assert_eq!(both.len(), 2, "{both:?}");
    for secret in ["tok-1111", "c=2222", "bearer-3333", "key-4444"] {
        assert!(
            both[1].contains(secret),
            "{secret} dropped within the origin:\n{}",
            both[1]
        );
    }
}
