//! Loopback stub servers for integration tests, and a [`Project`] whose builds of the real
//! binary start through [`Pflow`] (`common/process.rs`).
//!
//! A [`Stub`] listens on `127.0.0.1:0` and speaks plain HTTP/1.1: it parses the request
//! line, headers and a `Content-Length` body, records every request, and answers each one
//! from a script ([`Stub::script`], served first, in order) or else from its handler. Each
//! connection carries one request (`Connection: close`). A reply can be delayed
//! ([`Reply::after`]) to make a client time out. The server stops when the `Stub` is
//! dropped, and after [`LIFETIME`] at the latest.
//!
//! Protocol helpers build the replies of the Anthropic Messages API and of OpenAI chat
//! completions, and check requests the way the real APIs do (a request that breaks the
//! protocol gets the 400 the API would send, naming the field).
//!
//! ```ignore
//! let stub = Stub::start(anthropic_server(|_req| "hello".to_string()));
//! let p = Project::new().env("ANTHROPIC_BASE_URL", stub.url()).env("ANTHROPIC_API_KEY", "k");
//! p.build_value(&workflow, &[]).assert_ok();
//! assert_eq!(stub.count(), 1);
//! ```

#![allow(dead_code)]

use crate::common::Pflow;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a stub keeps accepting connections.
pub const LIFETIME: Duration = Duration::from_secs(120);
/// The longest a stub waits for a request's bytes.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEAD: usize = 64 * 1024;

/// One request as the stub received it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// The request target: path and query (`/v1/messages`, `/users?x=1`).
    pub target: String,
    /// Header names in lower case, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// When the request had fully arrived.
    pub received: Instant,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn query(&self) -> &str {
        self.target.split_once('?').map(|(_, q)| q).unwrap_or("")
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (`Value::Null` when it is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }

    /// Everything the client sent, as text (to look for leaked or missing strings).
    pub fn raw_text(&self) -> String {
        let mut s = format!("{} {}\n", self.method, self.target);
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\n"));
        }
        s.push_str(&self.text());
        s
    }
}

/// What the stub answers.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Wait this long before answering.
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &Value) -> Reply {
        Reply::text(status, "application/json", &body.to_string())
    }

    pub fn text(status: u16, content_type: &str, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn after(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }
}

type Handler = dyn Fn(&Request, usize) -> Reply + Send + Sync;

struct Shared {
    requests: Mutex<Vec<Request>>,
    script: Mutex<VecDeque<Reply>>,
    handler: Box<Handler>,
    stop: AtomicBool,
}

/// A loopback HTTP server on its own thread.
pub struct Stub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Stub {
    /// Start a server whose handler gets each request and its 0-based number.
    pub fn start(handler: impl Fn(&Request, usize) -> Reply + Send + Sync + 'static) -> Stub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            requests: Mutex::new(Vec::new()),
            script: Mutex::new(VecDeque::new()),
            handler: Box::new(handler),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, s));
        Stub {
            addr,
            shared,
            thread: Some(thread),
        }
    }

    /// Serve these replies first, one per request, in order; then the handler.
    pub fn script(self, replies: Vec<Reply>) -> Stub {
        lock(&self.shared.script).extend(replies);
        self
    }

    /// `http://127.0.0.1:<port>`
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Request> {
        lock(&self.shared.requests).clone()
    }

    pub fn count(&self) -> usize {
        lock(&self.shared.requests).len()
    }

    /// The only request received (panics unless exactly one arrived).
    #[track_caller]
    pub fn single(&self) -> Request {
        let reqs = self.requests();
        assert_eq!(reqs.len(), 1, "expected exactly one request, got {reqs:#?}");
        reqs.into_iter().next().expect("one request")
    }
}

impl Drop for Stub {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let started = Instant::now();
    while !shared.stop.load(Ordering::SeqCst) && started.elapsed() < LIFETIME {
        match listener.accept() {
            Ok((stream, _)) => {
                let s = shared.clone();
                std::thread::spawn(move || serve(stream, &s));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn serve(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let Some(req) = read_request(&mut reader) else {
        return;
    };
    let index = {
        let mut reqs = lock(&shared.requests);
        reqs.push(req.clone());
        reqs.len() - 1
    };
    let scripted = lock(&shared.script).pop_front();
    let reply = scripted.unwrap_or_else(|| (shared.handler)(&req, index));
    if !wait(reply.delay, &shared.stop) {
        return;
    }
    let _ = write_reply(stream, &reply);
}

/// Sleep, returning false when the stub is stopping.
fn wait(d: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    true
}

fn read_request(r: &mut impl BufRead) -> Option<Request> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    let mut head_len = line.len();
    loop {
        let mut h = String::new();
        let n = r.read_line(&mut h).ok()?;
        head_len += n;
        if n == 0 || head_len > MAX_HEAD {
            return None;
        }
        let h = h.trim_end_matches(['\r', '\n']);
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':')?;
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
        received: Instant::now(),
    })
}

fn write_reply(mut stream: TcpStream, reply: &Reply) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {}\r\nconnection: close\r\n",
        reply.status,
        reason(reply.status),
        reply.body.len()
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(&reply.body)?;
    stream.flush()
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

// ---- Anthropic Messages API ----

/// A 200 Messages reply holding `text` in one text block.
pub fn anthropic_message(model: &str, text: &str) -> Value {
    json!({
        "id": "msg_stub", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn", "stop_sequence": null,
        "usage": {"input_tokens": 11, "output_tokens": 7}
    })
}

pub fn anthropic_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"type": "error", "error": {"type": kind, "message": message}, "request_id": "req_stub"}),
    )
    .header("request-id", "req_stub")
}

/// What the real API checks before anything else (§1.7 of the reference): the 400 it
/// would send, naming the field, or `None` when the request is well formed.
pub fn anthropic_check(req: &Request) -> Option<Reply> {
    let bad = |m: &str| Some(anthropic_error(400, "invalid_request_error", m));
    if req.method != "POST" || req.path() != "/v1/messages" {
        return Some(anthropic_error(404, "not_found_error", "Not found"));
    }
    if req.header("x-api-key").is_none() && req.header("authorization").is_none() {
        return Some(anthropic_error(
            401,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if req.header("anthropic-version") != Some("2023-06-01") {
        return bad("anthropic-version: header is required and must be 2023-06-01");
    }
    if !req
        .header("content-type")
        .is_some_and(|c| c.starts_with("application/json"))
    {
        return bad("content-type must be application/json");
    }
    let b = req.json();
    if !b["model"].is_string() {
        return bad("model: Field required");
    }
    if b["max_tokens"].as_u64().is_none_or(|n| n == 0) {
        return bad("max_tokens: Field required");
    }
    if b["messages"].as_array().is_none_or(|m| m.is_empty()) {
        return bad("messages: Field required");
    }
    None
}

/// A Messages API server: checks each request, then answers with `text(request)`.
pub fn anthropic_server(
    text: impl Fn(&Request) -> String + Send + Sync + 'static,
) -> impl Fn(&Request, usize) -> Reply + Send + Sync + 'static {
    move |req, _| {
        if let Some(err) = anthropic_check(req) {
            return err;
        }
        let model = req.json()["model"].as_str().unwrap_or("").to_string();
        Reply::json(200, &anthropic_message(&model, &text(req)))
    }
}

/// The text of the (first) user message of an Anthropic or OpenAI request.
pub fn user_prompt(req: &Request) -> String {
    req.json()["messages"]
        .as_array()
        .and_then(|m| m.iter().find(|x| x["role"] == "user"))
        .and_then(|m| m["content"].as_str())
        .unwrap_or("")
        .to_string()
}

// ---- OpenAI chat completions ----

pub fn openai_completion(model: &str, text: &str) -> Value {
    json!({
        "id": "chatcmpl-stub", "object": "chat.completion", "created": 1732400000, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 13, "completion_tokens": 5, "total_tokens": 18}
    })
}

pub fn openai_error(status: u16, kind: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"message": message, "type": kind, "param": null, "code": null}}),
    )
}

/// A chat completions server under `/v1`: checks the request shape, then answers.
pub fn openai_server(
    text: impl Fn(&Request) -> String + Send + Sync + 'static,
) -> impl Fn(&Request, usize) -> Reply + Send + Sync + 'static {
    move |req, _| {
        if req.method != "POST" || req.path() != "/v1/chat/completions" {
            return openai_error(404, "not_found_error", "not found");
        }
        let b = req.json();
        if !b["model"].is_string() || b["messages"].as_array().is_none_or(|m| m.is_empty()) {
            return openai_error(
                400,
                "invalid_request_error",
                "model and messages are required",
            );
        }
        let model = b["model"].as_str().unwrap_or("").to_string();
        Reply::json(200, &openai_completion(&model, &text(req)))
    }
}

// ---- running the binary ----

/// A temporary working directory with its own cache, and the environment for builds.
pub struct Project {
    dir: tempfile::TempDir,
    cache: tempfile::TempDir,
    home: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl Default for Project {
    fn default() -> Self {
        Self::new()
    }
}

impl Project {
    pub fn new() -> Project {
        Project {
            dir: tempfile::tempdir().expect("temp dir"),
            cache: tempfile::tempdir().expect("temp cache dir"),
            home: tempfile::tempdir().expect("temp home"),
            env: Vec::new(),
        }
    }

    pub fn env(mut self, name: &str, value: impl Into<String>) -> Project {
        self.set_env(name, value);
        self
    }

    pub fn set_env(&mut self, name: &str, value: impl Into<String>) {
        self.env.retain(|(k, _)| k != name);
        self.env.push((name.to_string(), value.into()));
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, name: &str, doc: &Value) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, serde_json::to_string_pretty(doc).expect("encode")).expect("write");
        p
    }

    /// The `pflow build FILE ARGS --output-format json --no-repair` command, with a temp
    /// cache, home and the environment of this project (and nothing else), not started.
    pub fn command(&self, file: &Path, args: &[&str]) -> Pflow {
        let mut p = Pflow::new()
            .current_dir(self.dir.path())
            .home(self.home.path())
            .env("PFLOW_HOME", self.home.path())
            .arg("build")
            .arg(file)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .args(["--no-repair", "--output-format", "json"])
            .args(args);
        for (k, v) in &self.env {
            p = p.env(k, v);
        }
        p
    }

    /// Run [`Project::command`] to the end.
    pub fn build(&self, file: &Path, args: &[&str]) -> Run {
        let started = Instant::now();
        let out = self.command(file, args).output();
        Run::new(out, started.elapsed())
    }

    /// Write `doc` to `workflow.json` and build it.
    pub fn build_value(&self, doc: &Value, args: &[&str]) -> Run {
        let p = self.write("workflow.json", doc);
        self.build(&p, args)
    }
}

/// One finished build.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub json: Value,
    pub elapsed: Duration,
}

impl Run {
    /// A run of [`Pflow`] (which has checked it for a crash); stdout must be one JSON document.
    pub fn new(out: std::process::Output, elapsed: Duration) -> Run {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}); exit {code}\n{stdout}\n{stderr}")
        });
        Run {
            code,
            stdout,
            stderr,
            json,
            elapsed,
        }
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Run {
        assert_eq!(self.code, 0, "build failed: {self}");
        assert_eq!(self.json["success"], true, "{self}");
        self
    }

    /// The first error's category (panics unless the build failed with exit 1).
    #[track_caller]
    pub fn failed_with(&self) -> (String, String) {
        assert_eq!(self.code, 1, "expected a failed build: {self}");
        let e = &self.json["errors"][0];
        (
            e["category"].as_str().unwrap_or("").to_string(),
            e["message"].as_str().unwrap_or("").to_string(),
        )
    }

    pub fn output(&self, name: &str) -> &Value {
        &self.json["outputs"][name]
    }

    pub fn status_of(&self, id: &str) -> String {
        self.json["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id))
            .and_then(|n| n["status"].as_str())
            .unwrap_or("")
            .to_string()
    }

    /// Does `needle` appear anywhere in stdout or stderr?
    pub fn mentions(&self, needle: &str) -> bool {
        self.stdout.contains(needle) || self.stderr.contains(needle)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {} after {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.elapsed, self.stdout, self.stderr
        )
    }
}
