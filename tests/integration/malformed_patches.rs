//! `pflow repair show` and `pflow repair apply` on patch files that are not well-formed
//! records: each is refused with exit 2 and a message naming the file and the problem,
//! never a crash, and the workflow is left as it was.

use crate::common::{Workspace, WORKFLOW};
use serde_json::{json, Value};

fn workspace() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [{"id": "greet", "type": "echo", "params": {"message": "hi"}}]
    }))
}

/// A record of `ops` made for the workspace's workflow, as text.
fn record_for(ws: &Workspace, ops: Value) -> String {
    let digest = pflow::repair::patch::workflow_digest(&ws.current_workflow());
    json!({"version": 1, "base_digest": digest, "repaired_digest": "0".repeat(64),
           "workflow": WORKFLOW, "model": "m", "created_at": "2026-01-01T00:00:00Z",
           "errors": [], "patch": ops})
    .to_string()
}

/// Run `pflow repair ARGS` in the workspace; (exit code, stdout + stderr).
fn repair(ws: &Workspace, args: &[&str]) -> (i32, String) {
    let out = ws
        .pflow()
        .arg("repair")
        .args(args)
        .arg("--cache-dir")
        .arg(ws.cache_dir())
        .output();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // A crash fails the test in the harness itself.
    (out.status.code().unwrap_or(-1), text)
}

#[track_caller]
fn refused(ws: &Workspace, args: &[&str], expected: &[&str]) {
    let (code, text) = repair(ws, args);
    assert_eq!(code, 2, "{args:?}: {text}");
    for e in expected {
        assert!(text.contains(e), "{args:?}: {e:?} not in: {text}");
    }
}

#[test]
fn malformed_patch_files_are_refused_with_exit_2() {
    let ws = workspace();
    let original = ws.read(WORKFLOW);
    let good = record_for(&ws, json!([]));
    let digest = pflow::repair::patch::workflow_digest(&ws.current_workflow());
    let files: &[(&str, Vec<u8>, &str)] = &[
        // Used to panic: a multi-byte character across the 12th byte of the digest.
        (
            "multibyte.json",
            good.replace(&digest, &format!("a{}", "é".repeat(20)))
                .into_bytes(),
            "'base_digest': must be 64 lowercase hex digits",
        ),
        ("binary.json", b"\xff\xfe\x00{".to_vec(), "not UTF-8 text"),
        (
            "truncated.json",
            good.as_bytes()[..good.len() / 2].to_vec(),
            "cut short",
        ),
        (
            "wrong-type.json",
            good.replace("\"version\":1", "\"version\":\"one\"")
                .into_bytes(),
            "'version': invalid type",
        ),
        (
            "huge.json",
            good.replace("\"version\":1", "\"version\":1e300")
                .into_bytes(),
            "'version': invalid type: floating point",
        ),
        (
            "missing.json",
            good.replace("\"model\":\"m\",", "").into_bytes(),
            "'model': missing",
        ),
        (
            "bad-pointer.json",
            record_for(&ws, json!([{"op": "remove", "path": "nodes/0"}])).into_bytes(),
            "'patch[0]': json pointer",
        ),
    ];
    for (name, bytes, problem) in files {
        std::fs::write(ws.file(name), bytes).expect("write patch");
        let shown = format!("'{name}' is not a pflow repair patch");
        refused(&ws, &["show", name], &[&shown, problem]);
        refused(&ws, &["apply", name, WORKFLOW], &[&shown, problem]);
    }
    assert_eq!(ws.read(WORKFLOW), original, "the workflow was changed");

    // Malformed records in the repairs directory are skipped by `repair list`.
    for (name, bytes, _) in files {
        std::fs::create_dir_all(ws.cache_dir().join("repairs")).expect("mkdir");
        std::fs::write(ws.cache_dir().join("repairs").join(name), bytes).expect("write");
    }
    let (code, text) = repair(&ws, &["list"]);
    assert_eq!(code, 0, "{text}");
}

#[test]
fn operations_that_do_not_fit_the_workflow_are_refused_naming_the_patch() {
    let ws = workspace();
    let original = ws.read(WORKFLOW);
    let cases = [
        (
            json!([{"op": "remove", "path": "/nodes/7"}]),
            "operation 0 (remove at '/nodes/7'): path is invalid",
        ),
        // json_patch's own all-or-nothing apply panics undoing this pair.
        (
            json!([{"op": "move", "from": "/nodes/0/params", "path": "/nodes/0"},
                   {"op": "remove", "path": "/nope"}]),
            "operation 1 (remove at '/nope')",
        ),
        (
            Value::Array(
                (0..64)
                    .map(|i| json!({"op": "copy", "from": "", "path": format!("/c{i}")}))
                    .collect(),
            ),
            "copies or moves more than",
        ),
    ];
    for (i, (ops, problem)) in cases.into_iter().enumerate() {
        let name = format!("p{i}.json");
        ws.write(&name, &record_for(&ws, ops));
        let shown = format!("the patch '{name}' does not apply");
        refused(&ws, &["apply", &name, WORKFLOW], &[&shown, problem]);
        assert_eq!(ws.read(WORKFLOW), original, "the workflow was changed");
    }
}

#[test]
fn an_endless_patch_file_is_read_only_up_to_the_limit() {
    let ws = workspace();
    let out = ws
        .pflow()
        .args(["repair", "show", "/dev/zero", "--cache-dir"])
        .arg(ws.cache_dir())
        .env("PFLOW_MAX_WORKFLOW_BYTES", "1000")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("patch '/dev/zero' is over the limit of 2000 bytes"),
        "{stderr}"
    );
}
