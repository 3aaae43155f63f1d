//! The real MCP servers the MCP tests start, installed by `.ci/run` into the project's
//! git-ignored `target/mcp-tools/` (npm packages under `node/`, PyPI ones in the venv
//! `py/`). Tests start with `let Some(tools) = common::mcp::tools() else { return };`.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// `pflow mcp ARGS` in the workspace (its home holds the servers file).
pub fn mcp(ws: &super::Workspace, args: &[&str]) -> std::process::Output {
    ws.pflow().arg("mcp").args(args).output()
}

/// The command's stdout, after checking it succeeded.
#[track_caller]
pub fn ok(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Configure `servers` (name → server) in the workspace's home.
pub fn add(ws: &super::Workspace, servers: Value) {
    ok(&mcp(ws, &["add", &servers.to_string()]));
}

pub struct Tools(PathBuf);

impl Tools {
    /// An npm package's executable.
    pub fn npm_bin(&self, name: &str) -> PathBuf {
        self.0.join("node/node_modules/.bin").join(name)
    }

    /// A PyPI package's executable, from the venv.
    pub fn py_bin(&self, name: &str) -> PathBuf {
        self.0.join("py/bin").join(name)
    }

    /// `{"command": BIN, "args": ARGS}`: a stdio server's configuration.
    pub fn stdio(&self, bin: &Path, args: &[&str]) -> Value {
        json!({"command": bin, "args": args})
    }

    /// server-filesystem confined to `dir`.
    pub fn filesystem(&self, dir: &Path) -> Value {
        self.stdio(
            &self.npm_bin("mcp-server-filesystem"),
            &[&dir.to_string_lossy()],
        )
    }

    /// server-everything over stdio.
    pub fn everything(&self) -> Value {
        self.stdio(&self.npm_bin("mcp-server-everything"), &[])
    }

    /// The same server, started through `sh`, which first appends a line to `log`: one
    /// line per server process.
    pub fn counting_starts(&self, server: &Value, log: &Path) -> Value {
        let mut words = vec![shell_quote(server["command"].as_str().unwrap_or(""))];
        for a in server["args"].as_array().into_iter().flatten() {
            words.push(shell_quote(a.as_str().unwrap_or("")));
        }
        let script = format!(
            "echo start >> {}; exec {}",
            shell_quote(&log.to_string_lossy()),
            words.join(" ")
        );
        json!({"command": "sh", "args": ["-c", script]})
    }
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The installed MCP servers, or `None` after a visible skip line when they are not
/// installed (run `.ci/run`). Under `CI=true` missing servers fail the test: CI
/// installs them, so a skip there would hide a broken set-up.
pub fn tools() -> Option<Tools> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/mcp-tools");
    let t = Tools(root.clone());
    let wanted = [
        t.npm_bin("mcp-server-filesystem"),
        t.npm_bin("mcp-server-everything"),
        t.npm_bin("mcp-inspector"),
        t.py_bin("mcp-server-time"),
    ];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|p| !p.exists())
        .map(|p| p.display().to_string())
        .collect();
    if missing.is_empty() {
        return Some(t);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!(
            "MCP test servers are missing (.ci/run installs them): {}",
            missing.join(", ")
        );
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("an MCP test")
        .to_string();
    // Past the harness's capture, as `common::corpus()` does: a silent skip is a pass.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "skipped {test}: MCP test servers not installed in target/mcp-tools (run .ci/run)"
    );
    None
}

/// `servers/http_tools.py` serving MCP over streamable HTTP on a free loopback port,
/// killed when dropped.
pub struct HttpServer {
    child: std::process::Child,
    pub url: String,
}

impl HttpServer {
    /// Start it with `env`; wait until it accepts connections.
    pub fn start(tools: &Tools, env: &[(&str, &str)]) -> HttpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let script =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/integration/servers/http_tools.py");
        let mut cmd = std::process::Command::new(tools.py_bin("python"));
        cmd.arg(script)
            .arg(port.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("start the HTTP MCP server");
        let server = HttpServer {
            child,
            url: format!("http://127.0.0.1:{port}/mcp"),
        };
        let up = super::wait_for(std::time::Duration::from_secs(30), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        assert!(up, "the HTTP MCP server did not start");
        server
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
