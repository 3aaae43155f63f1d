//! A failing step that prints secrets (an input named like a token, a value bound into
//! its `env`, pflow's own API key from the environment) shows none of them: not on the
//! terminal, not in the JSON document, not in the trace, not under the cache directory.

use crate::common::{files_under, Workspace};
use serde_json::json;

const SECRETS: [&str; 3] = ["SECRET123-input", "sk-SECRET456", "hunter2-literal"];

#[test]
fn secrets_a_failing_step_prints_are_redacted_everywhere() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [{"id": "leak", "type": "shell", "reads_env": ["ANTHROPIC_API_KEY"],
                   "params": {
                       "command": "echo \"token $T key $ANTHROPIC_API_KEY pw $P\" >&2; exit 3",
                       "env": {"T": "${api_token}", "P": "hunter2-literal"}}}]
    }));
    for json_mode in [true, false] {
        let mut cmd = ws
            .cmd()
            .args(&["api_token=SECRET123-input", "--trace", "trace.json"])
            .env("ANTHROPIC_API_KEY", "sk-SECRET456");
        if !json_mode {
            cmd = cmd.text();
        }
        let r = cmd.run();
        assert_eq!(r.code, 1, "{r}");
        let shown = format!("{}\n{}\n{}", r.stdout, r.stderr, ws.read("trace.json"));
        assert!(
            shown.contains("<redacted>"),
            "the error was not shown at all: {shown}"
        );
        for s in SECRETS {
            assert!(!shown.contains(s), "{s} shown:\n{shown}");
        }
    }
    for f in files_under(ws.cache_dir()) {
        let bytes = std::fs::read(&f).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        for s in SECRETS {
            assert!(!text.contains(s), "{s} stored in {}", f.display());
        }
    }
}

#[test]
fn a_secret_input_is_keyed_but_no_record_holds_a_digest_of_it() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [{"id": "call", "type": "shell",
                   "params": {"command": "echo called", "env": {"T": "${api_token}"}}}]
    }));
    ws.build(&["api_token=first-secret"]).assert_ok();
    let r = ws.build(&["api_token=second-secret", "--explain"]);
    r.assert_ok();
    assert_eq!(r.status_of("call"), "ran", "{r}");
    // The explain records could only tell that a sealed value moved, not compare it.
    let why = r.reason_of("call");
    assert!(
        why.contains("input api_token") && why.contains("not recorded"),
        "{why}"
    );
}

#[test]
fn an_input_declared_secret_is_redacted_and_sealed_whatever_its_name() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"who": {"type": "string", "secret": true}},
        "nodes": [{"id": "leak", "type": "shell",
                   "params": {"command": "echo \"we have ${who}\" >&2; exit 3"}}]
    }));
    let r = ws.cmd().text().arg("who=plain-name-secret").run();
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("we have <redacted>"), "{r}");
    assert!(!r.stdout.contains("plain-name-secret") && !r.stderr.contains("plain-name-secret"));
    for f in files_under(ws.cache_dir()) {
        let text = String::from_utf8_lossy(&std::fs::read(&f).unwrap_or_default()).into_owned();
        assert!(
            !text.contains("plain-name-secret"),
            "stored in {}",
            f.display()
        );
    }
}

#[test]
fn a_result_holding_a_secret_stays_off_the_remote_and_the_build_says_so_once() {
    use crate::stub::{Reply, Stub};
    // A remote cache that stores nothing: every GET misses, every PUT is accepted.
    let remote = Stub::start(|req, _| match req.method.as_str() {
        "PUT" => Reply::text(201, "text/plain", ""),
        _ => Reply::text(404, "text/plain", ""),
    });
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [
            {"id": "public", "type": "shell", "params": {"command": "echo nothing to hide"}},
            {"id": "echo_token", "type": "shell", "params": {"command": "echo token=${api_token}"}},
            {"id": "env_dump", "type": "shell", "reads_env": ["ANTHROPIC_API_KEY"],
             "params": {"command": "echo key=$ANTHROPIC_API_KEY"}}
        ]
    }));
    let r = ws
        .cmd()
        .args(&[
            "api_token=SECRET123-input",
            "--remote-cache",
            &remote.url(),
            "--remote-cache-write",
        ])
        .env("ANTHROPIC_API_KEY", "sk-SECRET456")
        .run();
    r.assert_ok();
    let puts: Vec<_> = remote
        .requests()
        .into_iter()
        .filter(|q| q.method == "PUT")
        .collect();
    assert!(!puts.is_empty(), "nothing was uploaded at all: {r}");
    for q in remote.requests() {
        let seen = q.raw_text();
        for s in SECRETS {
            assert!(!seen.contains(s), "{s} sent to the remote:\n{seen}");
        }
    }
    let said: Vec<&serde_json::Value> = r.doc()["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w.as_str().unwrap_or("").contains("not uploaded"))
        .collect();
    assert_eq!(said.len(), 1, "{r}");
    let said = said[0].as_str().unwrap();
    assert!(
        said.contains("echo_token") && said.contains("env_dump") && !said.contains("public"),
        "{said}"
    );
}
