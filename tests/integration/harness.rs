//! The harness's own promises (`common/process.rs`): its crash check fails a run that
//! crashed, pflow sees only the allow-listed environment, and nothing else starts pflow.
//!
//! The crash checks run a stand-in for pflow (`/bin/sh`) through the same [`Pflow`]
//! builder, since the real binary has no way to crash on request.

use crate::common::process::{CRASH_TEXT, PASSED_THROUGH};
use crate::common::{wait_for, Pflow, Workspace};
use serde_json::json;
use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

/// `sh -c SCRIPT` run through the harness in pflow's place.
fn stand_in(script: &str) -> Pflow {
    Pflow::stand_in(Path::new("/bin/sh")).args(["-c", script])
}

/// The harness's verdict on a run: the finished run, or the message it failed the test with.
fn verdict(run: impl FnOnce() -> Output) -> Result<Output, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default()
    })
}

#[track_caller]
fn assert_crash(run: impl FnOnce() -> Output, why: &str) {
    match verdict(run) {
        Ok(out) => panic!("the crash check let this run pass: {out:?}"),
        Err(message) => {
            assert!(message.starts_with("pflow crashed: "), "{message}");
            assert!(message.contains(why), "{message}");
        }
    }
}

#[test]
fn a_run_that_fails_cleanly_is_not_a_crash() {
    let out = verdict(|| stand_in("echo out; echo err >&2; exit 3").output())
        .unwrap_or_else(|m| panic!("a clean failure was taken for a crash: {m}"));
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(out.stdout, b"out\n");
    assert_eq!(out.stderr, b"err\n");
}

#[test]
fn exit_code_101_is_a_crash() {
    assert_crash(|| stand_in("exit 101").output(), "exit code 101");
}

#[test]
fn the_panic_hook_message_is_a_crash() {
    // What src/main.rs's hook prints; pflow then goes on and exits 1 or 0.
    let script = "echo 'error: internal error in pflow: index out of bounds (src/x.rs:1); \
                  please report it' >&2; exit 0";
    assert_crash(|| stand_in(script).output(), CRASH_TEXT);
}

#[test]
fn a_node_that_panicked_is_a_crash() {
    // The executor catches the panic and fails the node; the build's JSON says so.
    let script = r#"echo '{"success": false, "errors": [{"category": "internal", "message": "internal error in pflow while running this node (please report it)"}]}'; exit 1"#;
    assert_crash(|| stand_in(script).output(), "stdout says");
}

#[test]
fn the_default_panic_message_is_a_crash() {
    let script = "echo \"thread 'main' panicked at src/main.rs:3:5:\" >&2; exit 1";
    assert_crash(|| stand_in(script).output(), "panicked at");
}

#[test]
fn death_by_a_signal_the_test_did_not_send_is_a_crash() {
    // (Signals that dump no core: nothing is left behind.)
    assert_crash(|| stand_in("kill -TERM $$").output(), "signal 15");
    // Also when the process is waited for with a deadline, and for SIGKILL (the OOM killer).
    assert_crash(
        || {
            stand_in("kill -KILL $$")
                .spawn()
                .wait_at_most(Duration::from_secs(10))
        },
        "signal 9",
    );
}

#[test]
fn death_by_a_signal_the_test_sent_is_not_a_crash() {
    let mut p = stand_in("echo started; exec sleep 30").spawn();
    p.kill();
    let out = verdict(move || p.wait()).unwrap_or_else(|m| panic!("{m}"));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGKILL)
    );
    // A test's kill does not excuse a crash message printed before it.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut p = stand_in("echo 'error: internal error in pflow: x' >&2; touch said; exec sleep 30")
        .current_dir(dir.path())
        .spawn();
    assert!(wait_for(Duration::from_secs(10), || dir
        .path()
        .join("said")
        .exists()));
    p.kill();
    assert_crash(move || p.wait(), CRASH_TEXT);
}

/// The variables a shell node of a Workspace build sees, `NAME → value`. pflow keeps its
/// own variables (`PFLOW_*`, API keys) from a child unless its node declares them, so the
/// node declares the ones these tests look for.
fn environment_of_a_build(ws: &Workspace, build: crate::common::BuildCmd) -> Vec<(String, String)> {
    // To a file: outputs are shown with secrets (the remote's token) redacted.
    ws.set_workflow(&json!({
        "nodes": [{"id": "env", "type": "shell", "params": {"command": "env -0 > env.out"},
                   "reads_env": ["PFLOW_HOME", "PFLOW_REMOTE_CACHE_TOKEN"]}]
    }));
    let r = build.run();
    r.assert_ok();
    ws.read("env.out")
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn pflow_sees_only_the_allow_listed_environment() {
    let ws = Workspace::new();
    let env = environment_of_a_build(&ws, ws.cmd());
    let names: BTreeSet<&str> = env.iter().map(|(k, _)| k.as_str()).collect();
    // What the harness passes on or sets, and what `sh` adds for itself.
    let allowed: BTreeSet<&str> = PASSED_THROUGH
        .iter()
        .copied()
        .chain(["HOME", "CI", "PFLOW_HOME"])
        .chain(["PWD", "OLDPWD", "SHLVL", "_"])
        .collect();
    let extra: Vec<&&str> = names.difference(&allowed).collect();
    assert!(extra.is_empty(), "not allow-listed: {extra:?} in {env:#?}");
    let value = |name: &str| env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(value("HOME"), ws.home_dir().to_str());
    assert_eq!(value("PFLOW_HOME"), ws.home_dir().to_str());
    assert_eq!(value("CI"), Some("1"));
    assert!(value("PATH").is_some_and(|p| !p.is_empty()), "{env:#?}");
}

#[test]
fn a_test_sets_and_removes_variables_explicitly() {
    let ws = Workspace::new();
    let build = ws
        .cmd()
        .env("PFLOW_REMOTE_CACHE_TOKEN", "set-by-the-test")
        .env("CI", "0");
    let env = environment_of_a_build(&ws, build);
    assert!(
        env.contains(&("PFLOW_REMOTE_CACHE_TOKEN".into(), "set-by-the-test".into())),
        "{env:#?}"
    );
    assert!(env.contains(&("CI".into(), "0".into())), "{env:#?}");

    // Removing wins over the defaults too.
    let out = stand_in("env")
        .env("FROM_THE_TEST", "1")
        .env_remove("CI")
        .env_remove("HOME")
        .output();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(shown.lines().any(|l| l == "FROM_THE_TEST=1"), "{shown}");
    assert!(
        !shown
            .lines()
            .any(|l| l.starts_with("CI=") || l.starts_with("HOME=")),
        "{shown}"
    );
}

/// Every file below `dir` with the extension `rs`.
fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read tests dir").flatten() {
        let p = entry.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn only_the_harness_knows_where_the_binary_is() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let harness = tests.join("integration/common/process.rs");
    let mut files = Vec::new();
    rust_files(&tests, &mut files);
    assert!(files.contains(&harness), "{files:?}");
    // Spelled in two halves so that this file does not name it.
    let needle = concat!("CARGO_BIN", "_EXE_");
    let others: Vec<_> = files
        .iter()
        .filter(|f| **f != harness)
        .filter(|f| {
            std::fs::read_to_string(f)
                .unwrap_or_default()
                .contains(needle)
        })
        .collect();
    assert!(
        others.is_empty(),
        "start pflow with common::Pflow (tests/integration/common/process.rs), not from {others:?}"
    );
}
