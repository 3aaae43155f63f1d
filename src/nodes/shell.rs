//! `shell`: run a command with `sh -c`.

use super::{bool_param, opt, opt_str_param, out, ranged, ranged_param, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::interrupt;
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub static SPEC: NodeSpec = NodeSpec {
    name: "shell",
    summary: "Runs a command with `sh -c`; templated values reach it as variables, never as code.",
    version: 2,
    params: &[
        req("command", ParamKind::String)
        .doc("The shell command. `${...}` values are passed as variables (see README, Values in shell commands)."),
        opt("stdin", ParamKind::Any)
        .doc("Text written to the command's standard input (objects and arrays as JSON)."),
        opt("env", ParamKind::StringMap)
        .doc("Environment variables for the command, NAME: value. Their values count as secrets."),
        opt("cwd", ParamKind::String)
        .doc("Directory the command runs in (default: the workspace)."),
        // Up to a week: a longer wait is not a timeout (and overflows a Duration).
        ranged("timeout", ParamKind::Number, 0.001, 604_800.0)
        .doc("Seconds before the command's process group is killed (default 30)."),
        opt("ignore_errors", ParamKind::Bool)
        .doc("Succeed even when the command exits non-zero (default false)."),
        opt("strip_newline", ParamKind::Bool)
        .doc("Strip one trailing newline from stdout (default true)."),
        ranged(
            "max_output",
            ParamKind::Integer,
            0.0,
            9_007_199_254_740_992.0,
        )
        .doc("Bytes of stdout and of stderr kept (default 64 MiB); the rest is dropped and counted."),
    ],
    outputs: &[
        out("stdout", OutputKind::Text)
        .doc("Standard output, one trailing newline stripped; parsed as JSON when a template walks into it."),
        out("stderr", OutputKind::Text)
        .doc("Standard error."),
        out("exit_code", OutputKind::Scalar)
        .doc("The exit status."),
        out("stdout_is_binary", OutputKind::Scalar)
        .doc("true when stdout was not UTF-8 and is given as base64."),
    ],
    reads_files: &[],
    removes_files: &[],
    writes_files: &[],
    key_env: &[],
    shell_params: &["command"],
    env_param: Some("env"),
    untrusted_outputs: &[],
    secret_params: &["env"],
    secret_header_params: &[],
    announces_effects: false,
    repeats_effects: super::always,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: None,
    run,
};

pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
pub const DEFAULT_MAX_OUTPUT: u64 = 64 * 1024 * 1024;

fn stdin_bytes(v: Option<&Value>) -> Option<Vec<u8>> {
    match v {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone().into_bytes()),
        Some(other) => Some(
            crate::template::render_text(other)
                .into_owned()
                .into_bytes(),
        ),
    }
}

/// What a finished (or timed out) command left behind.
struct Collected {
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    out_dropped: u64,
    err_dropped: u64,
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
}

/// Read stdout and stderr on this thread with poll(2), keeping at most `cap` bytes of
/// each (the rest is drained and counted, so the child never blocks on a full pipe),
/// until the command exits or `timeout` passes (then its process group is killed).
/// No reader threads: spawning two per command doubled the cost of small commands.
fn collect(
    child: &mut std::process::Child,
    pgid: i32,
    timeout: Duration,
    cap: u64,
    live: Option<&super::Live>,
) -> std::io::Result<Collected> {
    use std::os::fd::AsRawFd;
    let deadline = Instant::now() + timeout;
    let mut out = Collected {
        stdout: Vec::new(),
        stderr: Vec::new(),
        out_dropped: 0,
        err_dropped: 0,
        status: None,
        timed_out: false,
    };
    let mut pipes: Vec<Pipe> = Vec::new();
    if let Some(p) = child.stdout.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, true));
    }
    if let Some(p) = child.stderr.take() {
        let fd = p.as_raw_fd();
        pipes.push((Box::new(p), fd, false));
    }
    let mut buf = vec![0u8; 64 * 1024];
    let mut open = [true; 2];
    // A pidfd becomes readable when the command exits, so one poll waits for output and
    // for the exit alike (Linux 5.3+; without it, exits are noticed by the 50 ms wake-up).
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, child.id() as libc::c_int, 0) } as i32;
    let result = poll_loop(
        child, pgid, deadline, cap, &mut pipes, &mut open, &mut buf, pidfd, &mut out, live,
    );
    if pidfd >= 0 {
        // SAFETY: closing the fd we opened above, exactly once.
        unsafe { libc::close(pidfd) };
    }
    result?;
    if out.timed_out {
        interrupt::kill_group(pgid);
        out.status = child.wait().ok();
    } else if out.status.is_none() {
        out.status = Some(child.wait()?);
    }
    Ok(out)
}

type Pipe = (Box<dyn Read>, i32, bool);

#[allow(clippy::too_many_arguments)]
fn poll_loop(
    child: &mut std::process::Child,
    pgid: i32,
    deadline: Instant,
    cap: u64,
    pipes: &mut [Pipe],
    open: &mut [bool; 2],
    buf: &mut [u8],
    pidfd: i32,
    out: &mut Collected,
    live: Option<&super::Live>,
) -> std::io::Result<()> {
    loop {
        if out.status.is_none() {
            out.status = child.try_wait()?;
            if out.status.is_some() {
                // The command is done; anything still holding its pipes is a leftover
                // background child, which must not keep the node waiting.
                interrupt::kill_group(pgid);
            }
        }
        let pipes_open = open.iter().take(pipes.len()).any(|o| *o);
        if !pipes_open && out.status.is_some() {
            return Ok(());
        }
        if !pipes_open && pidfd < 0 {
            // Pipes closed but the process lives on, and no pidfd: wait (bounded).
            out.status = wait_until(child, deadline)?;
            out.timed_out = out.status.is_none();
            return Ok(());
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            out.timed_out = true;
            return Ok(());
        }
        let mut fds: Vec<libc::pollfd> = pipes
            .iter()
            .zip(open.iter())
            .filter(|(_, o)| **o)
            .map(|((_, fd, _), _)| libc::pollfd {
                fd: *fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        if pidfd >= 0 && out.status.is_none() {
            fds.push(libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            });
        }
        // Wake at least every 50 ms to notice the command exiting while a background
        // child keeps a pipe open.
        let wait_ms = left.as_millis().min(50) as i32;
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, wait_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for pfd in fds.iter().filter(|p| p.revents != 0 && p.fd != pidfd) {
            let Some(idx) = pipes.iter().position(|(_, fd, _)| *fd == pfd.fd) else {
                continue;
            };
            let (reader, _, is_out) = &mut pipes[idx];
            match reader.read(buf) {
                Ok(0) => open[idx] = false,
                Ok(n) => {
                    if let Some(live) = live {
                        live(&buf[..n], *is_out);
                    }
                    let (kept, dropped) = if *is_out {
                        (&mut out.stdout, &mut out.out_dropped)
                    } else {
                        (&mut out.stderr, &mut out.err_dropped)
                    };
                    let room = cap.saturating_sub(kept.len() as u64) as usize;
                    let take = room.min(n);
                    kept.extend_from_slice(&buf[..take]);
                    *dropped += (n - take) as u64;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => open[idx] = false,
            }
        }
    }
}

/// Wait for the child until `deadline`; `None` when it is still running then.
fn wait_until(
    child: &mut std::process::Child,
    deadline: Instant,
) -> std::io::Result<Option<std::process::ExitStatus>> {
    let mut pause = Duration::from_micros(200);
    loop {
        if let Some(s) = child.try_wait()? {
            return Ok(Some(s));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        std::thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Output as text. Bytes that are not UTF-8 are kept exactly, base64-encoded (as the
/// original pflow does), and flagged, rather than silently replaced; `write-file` with
/// `content_is_binary` writes them back byte for byte.
fn text(bytes: Vec<u8>) -> (String, bool) {
    use base64::Engine;
    match String::from_utf8(bytes) {
        Ok(s) => (s, false),
        Err(e) => (
            base64::engine::general_purpose::STANDARD.encode(e.as_bytes()),
            true,
        ),
    }
}

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let command = str_param(params, "command")?;
    let timeout = ranged_param(&SPEC, params, "timeout")?.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(timeout > 0.0 && timeout.is_finite()) {
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!("param 'timeout' must be a positive number of seconds, got {timeout}"),
        ));
    }
    let ignore_errors = bool_param(params, "ignore_errors", false)?;
    let strip_newline = bool_param(params, "strip_newline", true)?;
    let max_output = ranged_param(&SPEC, params, "max_output")?
        .map(|n| n.max(0.0) as u64)
        .unwrap_or(DEFAULT_MAX_OUTPUT);

    let mut cmd = Command::new("/bin/sh");
    cmd.arg("-c").arg(command).process_group(0);
    // What the child inherits first; the node's own `env` bindings go on top.
    ctx.env.apply(&mut cmd);
    if let Some(cwd) = opt_str_param(params, "cwd")? {
        if !std::path::Path::new(cwd).is_dir() {
            return Err(NodeError::new(
                ErrorCategory::MissingFile,
                format!("working directory '{cwd}' does not exist"),
            ));
        }
        cmd.current_dir(cwd);
    }
    match params.get("env") {
        None | Some(Value::Null) => {}
        Some(Value::Object(env)) => {
            for (k, v) in env {
                cmd.env(k, crate::template::render_text(v).as_ref());
            }
        }
        Some(_) => {
            return Err(NodeError::new(
                ErrorCategory::Validation,
                "param 'env' must be an object of NAME: value pairs",
            ))
        }
    }
    let input = stdin_bytes(params.get("stdin"));
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());

    let mut child = cmd
        .spawn()
        .map_err(|e| NodeError::new(ErrorCategory::Internal, format!("cannot start 'sh': {e}")))?;
    let pgid = child.id() as i32;
    interrupt::register(pgid);

    let writer = match (input, child.stdin.take()) {
        (Some(bytes), Some(mut pipe)) => Some(std::thread::spawn(move || {
            // A command that does not read its stdin closes the pipe early; that is fine.
            let _ = pipe.write_all(&bytes);
        })),
        _ => None,
    };
    let run = collect(
        &mut child,
        pgid,
        Duration::from_secs_f64(timeout),
        max_output,
        ctx.live,
    );
    // Background children of the command may still hold the pipes; end the group.
    interrupt::kill_group(pgid);
    interrupt::unregister(pgid);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let Collected {
        stdout,
        stderr,
        out_dropped,
        err_dropped,
        status,
        timed_out,
    } = match run {
        Ok(c) => c,
        Err(e) => {
            let _ = child.wait();
            return Err(NodeError::new(
                ErrorCategory::Internal,
                format!("waiting for the command failed: {e}"),
            ));
        }
    };

    let (mut stdout, stdout_is_binary) = text(stdout);
    // stderr is for people and error messages: replacement characters are fine there.
    let mut stderr = String::from_utf8_lossy(&stderr).into_owned();
    if strip_newline && !stdout_is_binary && stdout.ends_with('\n') {
        stdout.pop();
    }
    if out_dropped > 0 || err_dropped > 0 {
        stderr.push_str(&format!(
            "\n[pflow: output over max_output={max_output} bytes was dropped: {out_dropped} bytes of stdout, {err_dropped} bytes of stderr]"
        ));
    }
    let exit_code: i64 = match status {
        Some(s) => match (s.code(), s.signal()) {
            (Some(c), _) => c as i64,
            (None, Some(sig)) => 128 + sig as i64,
            _ => -1,
        },
        None => -1,
    };
    let mut outputs = Map::new();
    outputs.insert("stdout".into(), Value::String(stdout));
    outputs.insert("stderr".into(), Value::String(stderr.clone()));
    outputs.insert("exit_code".into(), Value::from(exit_code));
    outputs.insert("stdout_is_binary".into(), Value::Bool(stdout_is_binary));

    if ctx.interrupted.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(NodeError::new(ErrorCategory::Interrupted, "interrupted").with_outputs(outputs));
    }
    if timed_out {
        return Err(NodeError::new(
            ErrorCategory::Timeout,
            format!("command timed out after {timeout} seconds"),
        )
        .with_outputs(outputs));
    }
    if exit_code != 0 && !ignore_errors {
        let mut msg = format!("command failed with exit code {exit_code}");
        let trimmed = stderr.trim();
        if !trimmed.is_empty() {
            let head: String = trimmed.chars().take(500).collect();
            msg.push_str(": ");
            msg.push_str(&head);
        }
        return Err(NodeError::new(ErrorCategory::Shell, msg).with_outputs(outputs));
    }
    Ok(NodeOutput::new(outputs))
}
