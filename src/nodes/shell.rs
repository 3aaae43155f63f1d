//! `shell`: run a command with `sh -c`.

use super::{bool_param, num_param, opt, opt_str_param, out, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::interrupt;
use serde_json::{Map, Value};
use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};
use std::time::Duration;
use wait_timeout::ChildExt;

pub static SPEC: NodeSpec = NodeSpec {
    name: "shell",
    version: 1,
    params: &[
        req("command", ParamKind::String),
        opt("stdin", ParamKind::Any),
        opt("env", ParamKind::StringMap),
        opt("cwd", ParamKind::String),
        opt("timeout", ParamKind::Number),
        opt("ignore_errors", ParamKind::Bool),
        opt("strip_newline", ParamKind::Bool),
        opt("max_output", ParamKind::Integer),
    ],
    outputs: &[
        out("stdout", OutputKind::Text),
        out("stderr", OutputKind::Text),
        out("exit_code", OutputKind::Scalar),
    ],
    reads_files: &[],
    key_env: &[],
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

/// Read a stream up to `cap` bytes, then keep draining (so the child never blocks on a
/// full pipe) without keeping the excess. Returns the bytes and how many were dropped.
fn read_capped(mut r: impl Read, cap: u64) -> (Vec<u8>, u64) {
    let mut kept = Vec::new();
    let mut dropped = 0u64;
    let mut buf = [0u8; 64 * 1024];
    loop {
        match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                let room = cap.saturating_sub(kept.len() as u64) as usize;
                let take = room.min(n);
                kept.extend_from_slice(&buf[..take]);
                dropped += (n - take) as u64;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    (kept, dropped)
}

fn text(bytes: Vec<u8>) -> String {
    match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let command = str_param(params, "command")?;
    let timeout = num_param(params, "timeout")?.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(timeout > 0.0 && timeout.is_finite()) {
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!("param 'timeout' must be a positive number of seconds, got {timeout}"),
        ));
    }
    let ignore_errors = bool_param(params, "ignore_errors", false)?;
    let strip_newline = bool_param(params, "strip_newline", true)?;
    let max_output = num_param(params, "max_output")?
        .map(|n| n.max(0.0) as u64)
        .unwrap_or(DEFAULT_MAX_OUTPUT);

    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(command).process_group(0);
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
    let out_reader = child
        .stdout
        .take()
        .map(|s| std::thread::spawn(move || read_capped(s, max_output)));
    let err_reader = child
        .stderr
        .take()
        .map(|s| std::thread::spawn(move || read_capped(s, max_output)));

    let waited = child.wait_timeout(Duration::from_secs_f64(timeout));
    let (status, timed_out) = match waited {
        Ok(Some(status)) => (Some(status), false),
        Ok(None) => {
            interrupt::kill_group(pgid);
            (child.wait().ok(), true)
        }
        Err(e) => {
            interrupt::kill_group(pgid);
            let _ = child.wait();
            interrupt::unregister(pgid);
            return Err(NodeError::new(
                ErrorCategory::Internal,
                format!("waiting for the command failed: {e}"),
            ));
        }
    };
    // Background children of the command may hold the pipes open; end the group.
    interrupt::kill_group(pgid);
    interrupt::unregister(pgid);
    if let Some(w) = writer {
        let _ = w.join();
    }
    let (stdout, out_dropped) = out_reader.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stderr, err_dropped) = err_reader.and_then(|h| h.join().ok()).unwrap_or_default();

    let mut stdout = text(stdout);
    let mut stderr = text(stderr);
    if strip_newline && stdout.ends_with('\n') {
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
