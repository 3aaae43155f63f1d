//! Shared helpers for integration tests that run the real `pflow` binary.
//!
//! A [`Workspace`] is a temporary folder (the build's working directory) with its own
//! cache directory. Tests write a workflow into it, run builds, and look at what
//! happened through a [`BuildResult`]:
//!
//! ```ignore
//! let ws = Workspace::new().workflow(json!({"nodes": [...]}));
//! let r = ws.build(&["name=x"]);
//! r.assert_ok();
//! assert_eq!(r.status_of("greet"), "cached");
//! assert_eq!(ws.count("greet"), 1);
//! ```
//!
//! Executions are counted with side-effect files: [`counted`] wraps a shell command so
//! that each run appends a line to `<name>.count` in the workspace, and
//! [`Workspace::count`] reads the number of lines back.
//!
//! Every build starts through [`Pflow`] ([`process`]), from a cleared environment, and is
//! checked there for a crash, so no test can pass over one.

#![allow(dead_code)]

pub mod bad_remote;
pub mod mcp;
pub mod process;

pub use process::{Pflow, Process};

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::rc::Rc;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// The default workflow file name inside a workspace.
pub const WORKFLOW: &str = "workflow.json";

/// A shell command that records its own execution in `<name>.count`, then runs `cmd`.
pub fn counted(name: &str, cmd: &str) -> String {
    format!("echo run >> {name}.count; {cmd}")
}

/// `cmd`, also writing more than [`pflow::cache::INLINE_MAX`] bytes to stderr, so that
/// its node's outputs are kept as a blob of their own rather than inline in its record.
pub fn padded(cmd: &str) -> String {
    let n = pflow::cache::INLINE_MAX + 100;
    format!("{cmd}; head -c {n} /dev/zero | tr '\\0' x >&2")
}

/// The compat corpus: `../shared/compat`, beside the checkout on the project's own
/// machines and in CI, absent from a fresh clone.
pub struct Corpus(PathBuf);

impl Corpus {
    /// A file under `pflow-examples/`.
    pub fn example(&self, rel: &str) -> PathBuf {
        self.0.join("pflow-examples").join(rel)
    }

    /// A file under `pflow-md-examples/`.
    pub fn md_example(&self, rel: &str) -> PathBuf {
        self.0.join("pflow-md-examples").join(rel)
    }

    /// A JSON file under `pflow-examples/`, parsed.
    pub fn read(&self, rel: &str) -> Value {
        let path = self.example(rel);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
    }
}

/// The compat corpus, or `None` after a visible skip line when this checkout has none
/// beside it. Under `CI=true` a missing corpus fails the test instead: CI provides it,
/// so a skip there would hide a broken set-up.
///
/// Tests start with `let Some(corpus) = common::corpus() else { return };`.
pub fn corpus() -> Option<Corpus> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/compat");
    if root.is_dir() {
        return Some(Corpus(root));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "the compat corpus is missing: {} (CI must provide ../shared/compat beside the checkout)",
            root.display()
        );
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("a compat test")
        .to_string();
    // Written to the process's stderr directly: the test harness captures `eprintln!` of
    // passing tests, and a skip nobody sees is the silent pass this exists to avoid.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: no compat corpus at ../shared/compat beside this checkout"
    );
    None
}

pub struct Workspace {
    dir: TempDir,
    cache: Rc<TempDir>,
    home: Rc<TempDir>,
    workflow_file: String,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            cache: Rc::new(tempfile::tempdir().expect("temp cache dir")),
            home: Rc::new(tempfile::tempdir().expect("temp home dir")),
            workflow_file: WORKFLOW.to_string(),
        }
    }

    /// Write the workflow (to `workflow.json`) and return the workspace.
    pub fn workflow(self, doc: Value) -> Workspace {
        self.set_workflow(&doc);
        self
    }

    /// Replace the workflow (an edit between builds).
    pub fn set_workflow(&self, doc: &Value) {
        self.write(
            &self.workflow_file,
            &serde_json::to_string_pretty(doc).expect("encode workflow"),
        );
    }

    /// The workflow as it is on disk now.
    pub fn current_workflow(&self) -> Value {
        serde_json::from_str(&self.read(&self.workflow_file)).expect("workflow is JSON")
    }

    /// Edit the workflow in place.
    pub fn edit_workflow(&self, f: impl FnOnce(&mut Value)) {
        let mut doc = self.current_workflow();
        f(&mut doc);
        self.set_workflow(&doc);
    }

    /// A different, empty folder that shares this workspace's cache directory, with a
    /// copy of the workflow file (another checkout of the same project).
    pub fn another_folder(&self) -> Workspace {
        let other = Workspace {
            dir: tempfile::tempdir().expect("temp dir"),
            cache: self.cache.clone(),
            home: self.home.clone(),
            workflow_file: self.workflow_file.clone(),
        };
        other.write(&self.workflow_file, &self.read(&self.workflow_file));
        other
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn cache_dir(&self) -> &Path {
        self.cache.path()
    }

    /// The workspace's home: `HOME` and `PFLOW_HOME` of its builds.
    pub fn home_dir(&self) -> &Path {
        self.home.path()
    }

    /// `pflow ARGS` in this workspace, with its home; nothing about the cache.
    pub fn pflow(&self) -> Pflow {
        self.in_here(Pflow::new())
    }

    /// [`Workspace::pflow`] run from a copy of the binary at `rel` in this workspace:
    /// another executable, with an identity of its own.
    pub fn pflow_copied_to(&self, rel: &str) -> Pflow {
        self.in_here(Pflow::copied_to(&self.file(rel)))
    }

    fn in_here(&self, p: Pflow) -> Pflow {
        p.current_dir(self.path())
            .home(self.home_dir())
            .env("PFLOW_HOME", self.home_dir())
    }

    pub fn file(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) {
        let p = self.file(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).expect("create dir");
        }
        std::fs::write(&p, content).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    }

    pub fn read(&self, rel: &str) -> String {
        let p = self.file(rel);
        std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.file(rel).exists()
    }

    pub fn remove(&self, rel: &str) {
        std::fs::remove_file(self.file(rel)).expect("remove file");
    }

    /// How many times a [`counted`] command ran (lines in `<name>.count`).
    pub fn count(&self, name: &str) -> usize {
        std::fs::read_to_string(self.file(&format!("{name}.count")))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    /// `pflow build workflow.json ARGS --output-format json` in this workspace.
    pub fn build(&self, args: &[&str]) -> BuildResult {
        self.cmd().args(args).run()
    }

    /// `pflow build workflow.json ARGS` in text mode.
    pub fn build_text(&self, args: &[&str]) -> BuildResult {
        self.cmd().text().args(args).run()
    }

    /// A build command to customize before running.
    pub fn cmd(&self) -> BuildCmd<'_> {
        BuildCmd {
            ws: self,
            workflow: self.workflow_file.clone(),
            args: Vec::new(),
            json: true,
            stdin: None,
            cache: CacheArg::Flag,
            env: Vec::new(),
            inside_on_purpose: false,
            fd_limit: None,
        }
    }
}

pub struct BuildCmd<'a> {
    ws: &'a Workspace,
    workflow: String,
    args: Vec<String>,
    json: bool,
    stdin: Option<String>,
    cache: CacheArg,
    env: Vec<(std::ffi::OsString, std::ffi::OsString)>,
    inside_on_purpose: bool,
    /// Most files the build may hold open (`ulimit -n`).
    fd_limit: Option<u32>,
}

/// How a build is told where the workspace's cache is.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum CacheArg {
    /// `--cache-dir DIR`
    Flag,
    /// `PFLOW_CACHE_DIR=DIR`
    Env,
    /// Neither: the default `./.pflow-cache`.
    Default,
}

impl BuildCmd<'_> {
    pub fn cache_arg(mut self, how: CacheArg) -> Self {
        self.cache = how;
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|s| s.to_string()));
        self
    }

    pub fn arg(mut self, a: impl AsRef<str>) -> Self {
        self.args.push(a.as_ref().to_string());
        self
    }

    /// Build this workflow file (a path, absolute or relative to the workspace).
    pub fn workflow_file(mut self, path: impl AsRef<str>) -> Self {
        self.workflow = path.as_ref().to_string();
        self
    }

    /// Text output instead of `--output-format json`.
    pub fn text(mut self) -> Self {
        self.json = false;
        self
    }

    /// See [`Pflow::failing_inside_on_purpose`].
    pub fn failing_inside_on_purpose(mut self) -> Self {
        self.inside_on_purpose = true;
        self
    }

    /// Run the build allowed at most `n` open files, as `ulimit -n n` does.
    pub fn fd_limit(mut self, n: u32) -> Self {
        self.fd_limit = Some(n);
        self
    }

    /// Pipe this text to the build's stdin.
    pub fn stdin(mut self, text: &str) -> Self {
        self.stdin = Some(text.to_string());
        self
    }

    /// Set an environment variable for the build.
    pub fn env(mut self, name: &str, value: impl AsRef<std::ffi::OsStr>) -> Self {
        self.env.push((name.into(), value.as_ref().to_os_string()));
        self
    }

    /// The `pflow build` command, not started.
    pub fn pflow(&self) -> Pflow {
        let mut p = self
            .ws
            .pflow()
            .arg("build")
            .arg(&self.workflow)
            .arg("--no-repair");
        if self.cache == CacheArg::Flag {
            p = p.arg("--cache-dir").arg(self.ws.cache_dir());
        }
        if self.json {
            p = p.args(["--output-format", "json"]);
        }
        p = p.args(&self.args);
        if self.cache == CacheArg::Env {
            p = p.env("PFLOW_CACHE_DIR", self.ws.cache_dir());
        }
        if let Some(text) = &self.stdin {
            p = p.stdin(text);
        }
        for (k, v) in &self.env {
            p = p.env(k, v);
        }
        if self.inside_on_purpose {
            p = p.failing_inside_on_purpose();
        }
        if let Some(n) = self.fd_limit {
            let limit = format!("ulimit -n {n} && exec \"$@\"");
            p = p.started_by(Path::new("/bin/sh"), &["-c", &limit, "sh"]);
        }
        p
    }

    /// Start the build in JSON or text mode as configured, without waiting.
    pub fn start(self) -> Running {
        Running {
            process: self.pflow().spawn(),
            json: self.json,
        }
    }

    pub fn run(self) -> BuildResult {
        self.start().finish()
    }
}

/// A build started with [`BuildCmd::start`].
pub struct Running {
    process: Process,
    json: bool,
}

impl Running {
    pub fn pid(&self) -> i32 {
        self.process.pid()
    }

    /// What the build has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        self.process.stderr_so_far()
    }

    /// Ctrl-C.
    pub fn interrupt(&mut self) {
        self.process.interrupt();
    }

    /// SIGKILL (a death the crash check then accepts).
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// Wait at most `limit` for the build to end; kill it (and fail) if it does not.
    #[track_caller]
    pub fn wait(self, limit: Duration) -> BuildResult {
        let started = self.process.started();
        let out = self.process.wait_at_most(limit);
        BuildResult::new(out, started.elapsed(), self.json)
    }

    fn finish(self) -> BuildResult {
        let started = self.process.started();
        let out = self.process.wait();
        BuildResult::new(out, started.elapsed(), self.json)
    }
}

/// Where text output tells a node's end (`  ran      first (shell) 205ms`): the index
/// of the line with `status` and `id`, if there is one.
pub fn node_line(text: &str, status: &str, id: &str) -> Option<usize> {
    text.lines().position(|l| {
        let mut words = l.split_whitespace();
        (words.next(), words.next()) == (Some(status), Some(id))
    })
}

/// The ids of the nodes text output says ended with `status`, in order.
pub fn nodes_with_line(text: &str, status: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            (words.next() == Some(status)).then(|| words.next().map(str::to_string))?
        })
        .collect()
}

/// Wait until `cond` holds, polling; false if it did not within `limit`.
pub fn wait_for(limit: Duration, cond: impl FnMut() -> bool) -> bool {
    wait_for_every(limit, Duration::from_millis(20), cond)
}

/// [`wait_for`], looking every `every`: for a test that must act the moment `cond`
/// holds.
pub fn wait_for_every(limit: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(every);
    }
    cond()
}

/// The non-zombie processes whose process group is `pgid`.
pub fn live_processes_in_group(pgid: i32) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid pgrp ...
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if fields.len() > 2 && fields[2] == pgid.to_string() && fields[0] != "Z" {
            found.push(stat[..close + 1].to_string());
        }
    }
    found
}

#[derive(Debug)]
pub struct BuildResult {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    /// The `--output-format json` document (None in text mode).
    pub json: Option<Value>,
    pub elapsed: Duration,
}

impl BuildResult {
    /// A run of [`Pflow`] (which has checked it for a crash), its stdout parsed in JSON mode.
    fn new(out: Output, elapsed: Duration, json_mode: bool) -> BuildResult {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let code = out.status.code().unwrap_or(-1);
        let json = json_mode.then(|| {
            serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| {
                panic!(
                    "stdout is not exactly one JSON document ({e}); exit {code}\nstdout: {stdout}\nstderr: {stderr}"
                )
            })
        });
        BuildResult {
            code,
            stdout,
            stderr,
            json,
            elapsed,
        }
    }

    pub fn doc(&self) -> &Value {
        self.json.as_ref().expect("not a JSON-mode build")
    }

    #[track_caller]
    pub fn assert_ok(&self) -> &Self {
        assert_eq!(self.code, 0, "build failed: {self}");
        if let Some(doc) = &self.json {
            assert_eq!(doc["success"], Value::Bool(true), "{self}");
        }
        self
    }

    #[track_caller]
    pub fn assert_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, code, "unexpected exit code: {self}");
        self
    }

    /// The node's entry in the JSON document's `nodes`.
    #[track_caller]
    pub fn node(&self, id: &str) -> &Value {
        self.doc()["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id))
            .unwrap_or_else(|| panic!("no node {id} in the report: {self}"))
    }

    #[track_caller]
    pub fn status_of(&self, id: &str) -> String {
        self.node(id)["status"]
            .as_str()
            .unwrap_or_else(|| panic!("node {id} has no status: {self}"))
            .to_string()
    }

    #[track_caller]
    pub fn executions_of(&self, id: &str) -> u64 {
        self.node(id)["executions"]
            .as_u64()
            .unwrap_or_else(|| panic!("node {id} has no executions: {self}"))
    }

    #[track_caller]
    pub fn reason_of(&self, id: &str) -> String {
        self.node(id)["reason"].as_str().unwrap_or("").to_string()
    }

    /// `id → status` for every node, in report order.
    pub fn statuses(&self) -> Vec<(String, String)> {
        self.doc()["nodes"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|n| {
                        (
                            n["id"].as_str().unwrap_or("").to_string(),
                            n["status"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Ids of the nodes with this status.
    pub fn with_status(&self, status: &str) -> Vec<String> {
        self.statuses()
            .into_iter()
            .filter(|(_, s)| s == status)
            .map(|(id, _)| id)
            .collect()
    }

    pub fn output(&self, name: &str) -> &Value {
        &self.doc()["outputs"][name]
    }

    pub fn errors(&self) -> &Vec<Value> {
        self.doc()["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {self}"))
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.doc()["stats"][name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stats.{name}: {self}"))
    }
}

impl std::fmt::Display for BuildResult {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Every file below `dir`, sorted (empty when `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// gen → upper → save (a file), plus an independent `side` node.
/// [`pipeline`] with outputs too big to be inline: every shell node's result is a blob.
pub fn big_pipeline() -> Value {
    let mut doc = pipeline();
    if let Some(nodes) = doc["nodes"].as_array_mut() {
        for node in nodes.iter_mut().filter(|n| n["type"] == "shell") {
            let cmd = node["params"]["command"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            node["params"]["command"] = Value::String(padded(&cmd));
        }
    }
    doc
}

pub fn pipeline() -> Value {
    json!({
        "nodes": [
            {"id": "gen", "type": "shell",
             "params": {"command": counted("gen", "echo hello")}},
            {"id": "upper", "type": "shell",
             "params": {"command": counted("upper", "tr a-z A-Z"), "stdin": "${gen.stdout}"}},
            {"id": "save", "type": "write-file",
             "params": {"file_path": "out/result.txt", "content": "${upper.stdout}"}},
            {"id": "side", "type": "shell",
             "params": {"command": counted("side", "echo side")}}
        ],
        "outputs": {"result": {"source": "${upper.stdout}"}}
    })
}
