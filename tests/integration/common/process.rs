//! The one place that starts `pflow` for the tests.
//!
//! Every run of the real binary is built with [`Pflow`] and ends in [`Process::wait`] (or
//! [`Pflow::output`]), which does two things no test can forget:
//!
//! - **A known environment.** The process starts from an empty environment
//!   ([`Command::env_clear`]); only the variables in [`PASSED_THROUGH`] are copied from the
//!   environment `cargo test` runs in, `HOME` is a temp dir, `CI=1`, and everything else is
//!   what the test sets with [`Pflow::env`]. A `PFLOW_REMOTE_CACHE`, `ANTHROPIC_API_KEY`,
//!   `PFLOW_CACHE_DIR`, `NO_COLOR`, ... in the developer's shell never reaches a build.
//! - **A crash check.** A run fails its test when pflow crashed ([`crash_of`]): exit code
//!   101 (an unhooked panic), death by a signal the test did not send, or the text
//!   [`CRASH_TEXT`] on stdout or stderr (the panic hook in `src/main.rs`, and the
//!   executor's report of a node that panicked). Tests that kill pflow on purpose send
//!   the signal with [`Process::signal`] (or [`Process::kill`], [`Process::interrupt`]),
//!   which tells the check that this death is expected.
//!
//! ```ignore
//! let out = Pflow::new()
//!     .args(["validate", "workflow.json"])
//!     .current_dir(dir)
//!     .env("PFLOW_MAX_WORKFLOW_BYTES", "4999")
//!     .output();
//! assert_eq!(out.status.code(), Some(2));
//!
//! let mut build = Pflow::new().args(["build", "slow.json"]).spawn();
//! build.interrupt();
//! let out = build.wait_at_most(Duration::from_secs(10));
//! ```
//!
//! The binary's path is private to this module: nothing else can start pflow.

use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_pflow");

/// The variables a pflow process gets from the environment the tests run in: what finds
/// programs, the locale, where temp files go, who the user is, and test tooling
/// (backtraces, coverage profiles). Nothing else is passed on.
pub const PASSED_THROUGH: &[&str] = &[
    "PATH",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "USER",
    "RUST_BACKTRACE",
    "LLVM_PROFILE_FILE",
];

/// What pflow prints when it has a bug: the panic hook's `error: internal error in pflow:
/// ...; please report it` (src/main.rs) and a node that panicked, `internal error in
/// pflow while running this node` (src/executor).
pub const CRASH_TEXT: &str = pflow::error::INTERNAL_ERROR;

/// What Rust's default panic hook prints, should pflow's own hook ever be gone.
const DEFAULT_HOOK_TEXT: &str = "panicked at";

/// The exit code of a process whose main thread panicked without a hook that exits.
const PANIC_EXIT_CODE: i32 = 101;

/// A pflow command line and its environment, not started yet.
#[must_use]
pub struct Pflow {
    program: PathBuf,
    args: Vec<OsString>,
    dir: Option<PathBuf>,
    home: Option<PathBuf>,
    /// In order; `None` removes a variable.
    env: Vec<(OsString, Option<OsString>)>,
    stdin: Option<Vec<u8>>,
    close_stdout: bool,
    on_a_terminal: bool,
    /// The test makes pflow fail inside on purpose (see [`Pflow::failing_inside_on_purpose`]).
    inside_on_purpose: bool,
}

impl Default for Pflow {
    fn default() -> Self {
        Self::new()
    }
}

impl Pflow {
    /// `pflow` with no arguments, in the tests' working directory, with the variables of
    /// [`PASSED_THROUGH`], `HOME` a fresh temp dir (see [`Pflow::home`]) and `CI=1` (no
    /// progress bar, even on a terminal).
    pub fn new() -> Pflow {
        Pflow::running(Path::new(BIN))
    }

    /// Another program in pflow's place, with the same environment and checks: only for
    /// the harness's own tests (`harness.rs`), which need a process that crashes.
    pub fn stand_in(program: &Path) -> Pflow {
        Pflow::running(program)
    }

    /// A copy of pflow at `path`, run from there: for tests of what pflow does when its
    /// own executable changes under it. (A process another test thread forks while the
    /// copy is open for writing holds it until that child starts its program, and
    /// starting the copy meanwhile fails as "text file busy": hence the pause.)
    pub fn copied_to(path: &Path) -> Pflow {
        std::fs::copy(BIN, path).expect("copy pflow");
        std::thread::sleep(Duration::from_millis(200));
        Pflow::running(path)
    }

    fn running(program: &Path) -> Pflow {
        Pflow {
            program: program.to_path_buf(),
            args: Vec::new(),
            dir: None,
            home: None,
            env: Vec::new(),
            stdin: None,
            close_stdout: false,
            on_a_terminal: false,
            inside_on_purpose: false,
        }
    }

    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Pflow {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Pflow
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args
            .extend(args.into_iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// The working directory (default: the one the tests run in).
    pub fn current_dir(mut self, dir: impl AsRef<Path>) -> Pflow {
        self.dir = Some(dir.as_ref().to_path_buf());
        self
    }

    /// `HOME` for this run (default: a temp dir of its own, removed after the run).
    pub fn home(mut self, dir: impl AsRef<Path>) -> Pflow {
        self.home = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Set a variable (this wins over the defaults and over an earlier `env`).
    pub fn env(mut self, name: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Pflow {
        self.env.push((
            name.as_ref().to_os_string(),
            Some(value.as_ref().to_os_string()),
        ));
        self
    }

    /// Leave a variable out, even one of the defaults (`CI`) or one passed through.
    pub fn env_remove(mut self, name: impl AsRef<OsStr>) -> Pflow {
        self.env.push((name.as_ref().to_os_string(), None));
        self
    }

    /// Pipe these bytes to stdin, then close it (default: stdin is `/dev/null`).
    pub fn stdin(mut self, input: impl AsRef<[u8]>) -> Pflow {
        self.stdin = Some(input.as_ref().to_vec());
        self
    }

    /// Close the reading end of stdout before pflow writes anything (`pflow ... | head -0`).
    pub fn close_stdout(mut self) -> Pflow {
        self.close_stdout = true;
        self
    }

    /// The test makes pflow fail inside on purpose (a debug build's hook): the internal
    /// error it then reports is what the test checks, not a crash. A panic nothing
    /// caught, or a death by a signal, still is one.
    pub fn failing_inside_on_purpose(mut self) -> Pflow {
        self.inside_on_purpose = true;
        self
    }

    /// Run on a pseudo-terminal: `script` (util-linux) runs the command line, and what the
    /// terminal showed (stdout and stderr together) is the run's stdout.
    pub fn on_a_terminal(mut self) -> Pflow {
        self.on_a_terminal = true;
        self
    }

    /// `LAUNCHER ARGS pflow ...`: pflow started by another program (an MCP client that
    /// spawns its server), with the same environment and crash checks.
    pub fn started_by(mut self, launcher: &Path, args: &[&str]) -> Pflow {
        let mut all: Vec<OsString> = args.iter().map(OsString::from).collect();
        all.push(self.program.into_os_string());
        all.append(&mut self.args);
        self.program = launcher.to_path_buf();
        self.args = all;
        self
    }

    /// The command line, quoted for a shell (for messages, and for `script`).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.as_os_str())
            .chain(self.args.iter().map(OsString::as_os_str))
            .map(|a| shell_quote(&a.to_string_lossy()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The process to start: the allow-listed environment, then the test's settings.
    fn command(&self, home: &Path) -> Command {
        let mut c = if self.on_a_terminal {
            let mut c = Command::new("script");
            c.args(["-qec", &self.command_line(), "/dev/null"]);
            c
        } else {
            let mut c = Command::new(&self.program);
            c.args(&self.args);
            c
        };
        c.env_clear();
        for name in PASSED_THROUGH {
            if let Some(value) = std::env::var_os(name) {
                c.env(name, value);
            }
        }
        c.env("HOME", home).env("CI", "1");
        for (name, value) in &self.env {
            match value {
                Some(v) => c.env(name, v),
                None => c.env_remove(name),
            };
        }
        if let Some(dir) = &self.dir {
            c.current_dir(dir);
        }
        c.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        c
    }

    /// Start the process. Its outputs are read as they come, so it never blocks on a full
    /// pipe; [`Process::wait`] collects them and checks the run.
    pub fn spawn(self) -> Process {
        let temp_home = match self.home {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temp home")),
        };
        let home = self
            .home
            .clone()
            .unwrap_or_else(|| temp_home.as_ref().expect("temp home").path().to_path_buf());
        let command_line = self.command_line();
        let mut child = self
            .command(&home)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command_line}: {e}"));
        let started = Instant::now();
        let stdin = match (child.stdin.take(), self.stdin) {
            (Some(mut pipe), Some(bytes)) => Some(std::thread::spawn(move || {
                // pflow may exit without reading everything: not the test's concern.
                let _ = pipe.write_all(&bytes);
            })),
            _ => None,
        };
        let stdout = child.stdout.take().expect("stdout pipe");
        let stdout = if self.close_stdout {
            drop(stdout);
            None
        } else {
            Some(read_all(stdout, Arc::default()))
        };
        let stderr_so_far: Arc<Mutex<Vec<u8>>> = Arc::default();
        let stderr = Some(read_all(
            child.stderr.take().expect("stderr pipe"),
            stderr_so_far.clone(),
        ));
        Process {
            child,
            command_line,
            started,
            stdin,
            stdout,
            stderr,
            stderr_so_far,
            sent: Vec::new(),
            inside_on_purpose: self.inside_on_purpose,
            _home: temp_home,
        }
    }

    /// Run to the end; the finished run, checked for a crash.
    pub fn output(self) -> Output {
        self.spawn().wait()
    }
}

/// Read a pipe to its end, keeping what came so far in `so_far` (for a test that
/// watches a long-running process's output).
fn read_all(
    mut from: impl Read + Send + 'static,
    so_far: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match from.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => so_far
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
        let buf = std::mem::take(&mut *so_far.lock().unwrap_or_else(|p| p.into_inner()));
        buf
    })
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,@%+".contains(&b))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// A started pflow process.
pub struct Process {
    child: Child,
    command_line: String,
    started: Instant,
    stdin: Option<JoinHandle<()>>,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    /// What stderr has shown so far (emptied when the process ends).
    stderr_so_far: Arc<Mutex<Vec<u8>>>,
    /// Signals the test sent: a death by one of them is not a crash.
    sent: Vec<i32>,
    /// Whether an internal error is the test's own doing.
    inside_on_purpose: bool,
    _home: Option<TempDir>,
}

impl Process {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// What the process has written to stderr so far.
    pub fn stderr_so_far(&self) -> String {
        String::from_utf8_lossy(&self.stderr_so_far.lock().unwrap_or_else(|p| p.into_inner()))
            .into_owned()
    }

    /// When the process started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Send a signal, and accept a death by it in the crash check.
    pub fn signal(&mut self, signal: i32) {
        self.sent.push(signal);
        // SAFETY: the pid is our own child, not yet waited for, so it cannot have been
        // reused by another process.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// Ctrl-C: SIGINT.
    pub fn interrupt(&mut self) {
        self.signal(libc::SIGINT);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        self.signal(libc::SIGKILL);
    }

    /// Is it still running?
    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Wait for the end; the finished run, checked for a crash.
    pub fn wait(mut self) -> Output {
        let status = self.child.wait().expect("wait for pflow");
        self.finish(status)
    }

    /// [`Process::wait`], but kill it and fail the test if it has not ended within `limit`.
    #[track_caller]
    pub fn wait_at_most(mut self, limit: Duration) -> Output {
        let deadline = Instant::now() + limit;
        while self.is_running() {
            if Instant::now() >= deadline {
                self.kill();
                let out = self.wait();
                panic!(
                    "pflow did not finish within {limit:?}\n{}",
                    describe(&out.status, &out.stdout, &out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.wait()
    }

    /// [`Process::wait`], with the process's peak resident set in KB. `wait4` reports the
    /// usage of this one child, not of every child the test process had.
    #[allow(clippy::zombie_processes)] // reaped by wait4, which std's wait cannot replace
    pub fn wait_with_peak_rss(self) -> (Output, i64) {
        let mut raw = 0;
        // SAFETY: `rusage` is plain data that wait4 fills in; the pid is our own child,
        // which nothing else waits for.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        let pid = unsafe { libc::wait4(self.pid(), &mut raw, 0, &mut usage) };
        assert_eq!(pid, self.pid(), "wait4 failed");
        let out = self.finish(ExitStatus::from_raw(raw));
        (out, usage.ru_maxrss)
    }

    fn finish(mut self, status: ExitStatus) -> Output {
        let join = |h: Option<JoinHandle<Vec<u8>>>| {
            h.map(|h| h.join().expect("output reader"))
                .unwrap_or_default()
        };
        let stdout = join(self.stdout.take());
        let stderr = join(self.stderr.take());
        if let Some(h) = self.stdin.take() {
            h.join().expect("stdin writer");
        }
        let markers: &[&str] = match self.inside_on_purpose {
            true => &[DEFAULT_HOOK_TEXT],
            false => &[CRASH_TEXT, DEFAULT_HOOK_TEXT],
        };
        if let Some(why) = crash_of(&status, &stdout, &stderr, &self.sent, markers) {
            panic!(
                "pflow crashed: {why}\ncommand: {}\n{}",
                self.command_line,
                describe(&status, &stdout, &stderr)
            );
        }
        Output {
            status,
            stdout,
            stderr,
        }
    }
}

/// A test that fails before it waits leaves no pflow behind (a `--watch` would run on
/// after the test run).
impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Why a finished run counts as a crash, or `None` when it does not. `sent` holds the
/// signals the test itself sent to the process; `markers`, the texts that tell a crash
/// on stdout or stderr.
fn crash_of(
    status: &ExitStatus,
    stdout: &[u8],
    stderr: &[u8],
    sent: &[i32],
    markers: &[&str],
) -> Option<String> {
    if status.code() == Some(PANIC_EXIT_CODE) {
        return Some(format!(
            "exit code {PANIC_EXIT_CODE}, the code of a panic that nothing caught"
        ));
    }
    if let Some(signal) = status.signal() {
        if !sent.contains(&signal) {
            return Some(format!(
                "killed by signal {signal}, which the test did not send"
            ));
        }
    }
    for (name, bytes) in [("stdout", stdout), ("stderr", stderr)] {
        let text = String::from_utf8_lossy(bytes);
        for marker in markers {
            if let Some(line) = text.lines().find(|l| l.contains(marker)) {
                return Some(format!("{name} says {line:?}"));
            }
        }
    }
    None
}

fn describe(status: &ExitStatus, stdout: &[u8], stderr: &[u8]) -> String {
    format!(
        "{status}\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(stdout),
        String::from_utf8_lossy(stderr)
    )
}
