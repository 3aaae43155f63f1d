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

/// A remote cache that stores nothing: every GET misses, every PUT is accepted.
fn accepting_remote() -> crate::stub::Stub {
    use crate::stub::{Reply, Stub};
    Stub::start(|req, _| match req.method.as_str() {
        "PUT" => Reply::text(201, "text/plain", ""),
        _ => Reply::text(404, "text/plain", ""),
    })
}

#[test]
fn a_result_holding_a_secret_stays_off_the_remote_and_the_build_says_so_once() {
    let remote = accepting_remote();
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

/// A value given for a typed secret input that is not of its type is refused without
/// being shown: a malformed object of credentials still holds them.
#[test]
fn a_malformed_secret_input_is_refused_without_its_value() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"credentials": {"type": "object", "secret": true},
                   "count": {"type": "integer"}},
        "nodes": [{"id": "a", "type": "echo", "params": {"message": "hi"}}]
    }));
    let r = ws.build(&["credentials={\"password\":\"hunter22-pw\"", "count=x1"]);
    assert_eq!(r.code, 2, "{r}");
    let all = r.to_string();
    assert!(!all.contains("hunter22"), "{all}");
    assert!(
        all.contains("input 'credentials' must be a JSON object"),
        "{all}"
    );
    // Another input's text is shown, as it helps.
    assert!(all.contains("got 'x1'"), "{all}");
}

/// A secret with a quote in it is escaped in the JSON a result is uploaded as: it is
/// looked for in the values themselves, so such a result stays local too.
#[test]
fn a_result_holding_a_secret_that_json_escapes_stays_off_the_remote() {
    let remote = accepting_remote();
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [
            {"id": "public", "type": "shell", "params": {"command": "echo nothing to hide"}},
            {"id": "echo_token", "type": "shell", "params": {"command": "echo token=${api_token}"}}
        ]
    }));
    let r = ws
        .cmd()
        .args(&[
            "api_token=SEC\"RET-quoted",
            "--remote-cache",
            &remote.url(),
            "--remote-cache-write",
        ])
        .run();
    r.assert_ok();
    assert!(
        remote.requests().iter().any(|q| q.method == "PUT"),
        "nothing was uploaded at all: {r}"
    );
    for q in remote.requests() {
        let seen = q.raw_text();
        assert!(
            !seen.contains("RET-quoted"),
            "the secret was sent to the remote:\n{seen}"
        );
    }
    assert!(r.to_string().contains("not uploaded"), "{r}");
}

/// Issue 17's whole scenario: a secret input, a shell `env` secret and pflow's own API
/// key; the step prints all three and fails; a model repairs it; results go to a remote.
/// None of the secrets is in anything pflow printed, wrote under the cache directory or
/// sent, except the key in the provider's own auth header.
#[test]
fn a_failing_step_repaired_through_a_model_leaks_no_secret_anywhere() {
    use crate::common::Pflow;
    use crate::repair::{fenced, model};
    use crate::stub::{Reply, Stub};
    let doc = |command: &str| {
        json!({
            "inputs": {"api_token": {"type": "string"}},
            "nodes": [
                {"id": "public", "type": "shell", "params": {"command": "echo nothing to hide"}},
                {"id": "call", "type": "shell", "reads_env": ["ANTHROPIC_API_KEY"],
                 "params": {"command": command, "env": {"T": "${api_token}", "P": "hunter2-literal"}}}
            ],
            "outputs": {"said": {"source": "${call.stdout}"}}
        })
    };
    let leaky = "echo \"token=$T key=$ANTHROPIC_API_KEY pw=$P\"; echo \"token=$T key=$ANTHROPIC_API_KEY pw=$P\" >&2; exit 3";
    let fixed = json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [
            {"id": "public", "type": "shell", "params": {"command": "echo nothing to hide"}},
            {"id": "call", "type": "shell", "params": {"command": "echo fixed", "env": {"T": "${api_token}"}}}
        ],
        "outputs": {"said": {"source": "${call.stdout}"}}
    });
    for json_mode in [true, false] {
        let stub = model(vec![fenced(&fixed)]);
        let remote = Stub::start(|req, _| match req.method.as_str() {
            "PUT" => Reply::text(201, "text/plain", ""),
            _ => Reply::text(404, "text/plain", ""),
        });
        let ws = Workspace::new().workflow(doc(leaky));
        let mut cmd = Pflow::new()
            .current_dir(ws.path())
            .home(ws.home_dir())
            .env("PFLOW_HOME", ws.home_dir())
            .env("ANTHROPIC_API_KEY", "sk-SECRET456")
            .env("ANTHROPIC_BASE_URL", stub.url())
            .args([
                "build",
                "workflow.json",
                "api_token=SECRET123-input",
                "--explain",
            ])
            .args(["--trace", "trace.json", "--cache-dir"])
            .arg(ws.cache_dir())
            .args(["--remote-cache", &remote.url(), "--remote-cache-write"]);
        if json_mode {
            cmd = cmd.args(["--output-format", "json"]);
        }
        let out = cmd.output();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(0),
            "repair failed:\n{stdout}\n{stderr}"
        );
        assert_eq!(stub.count(), 1, "{stdout}\n{stderr}");
        let mut places = vec![
            ("stdout".to_string(), stdout.clone()),
            ("stderr".to_string(), stderr.clone()),
            ("trace".to_string(), ws.read("trace.json")),
        ];
        for f in files_under(ws.cache_dir()) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            places.push((
                f.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
        for req in stub.requests() {
            assert_eq!(
                req.header("x-api-key"),
                Some("sk-SECRET456"),
                "the key goes in its header"
            );
            places.push((
                "a model request body".into(),
                String::from_utf8_lossy(&req.body).into_owned(),
            ));
        }
        let puts = remote.requests();
        assert!(
            puts.iter().any(|q| q.method == "PUT"),
            "nothing reached the remote"
        );
        for req in puts {
            places.push(("a remote request".into(), req.raw_text()));
        }
        for (place, text) in &places {
            for s in SECRETS {
                assert!(!text.contains(s), "{s} in {place}:\n{text}");
            }
        }
        // The repair is shown (its diff too), just without the values.
        assert!(
            stderr.contains("echo fixed") || stdout.contains("echo fixed"),
            "{stdout}\n{stderr}"
        );
    }
}

/// A step that succeeds and prints a secret it was given: the workflow's output shows it
/// redacted, in the JSON document and on the terminal, in the build that ran the step and
/// in every build after it (which find nothing to do); the node after it got the value
/// itself.
#[test]
fn an_output_holding_a_secret_is_shown_redacted_by_every_build() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [
            {"id": "show", "type": "shell",
             "params": {"command": "echo token $T", "env": {"T": "${api_token}"}}},
            {"id": "check", "type": "shell",
             "params": {"command": "echo \"${show.stdout}\" | grep -q 'token SECRET123-input' && echo same"}}
        ],
        "outputs": {"said": {"source": "${show.stdout}"}, "checked": {"source": "${check.stdout}"}}
    }));
    for round in ["ran", "reused", "reused again"] {
        let r = ws.build(&["api_token=SECRET123-input"]);
        r.assert_ok();
        let said = r.doc()["outputs"]["said"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(said.contains("token <redacted>"), "{round}: {said}");
        assert_eq!(
            r.doc()["outputs"]["checked"].as_str().map(str::trim),
            Some("same"),
            "{round}: the next node got the value itself"
        );
        assert!(!r.stdout.contains("SECRET123-input"), "{round}: {r}");
        let t = ws.cmd().args(&["api_token=SECRET123-input"]).text().run();
        assert_eq!(t.code, 0, "{t}");
        assert!(t.stdout.contains("token <redacted>"), "{round}: {t}");
        assert!(
            !t.stdout.contains("SECRET123-input") && !t.stderr.contains("SECRET123-input"),
            "{round}: {t}"
        );
    }
}

/// A value a step produces and another binds into its `env` is a secret from the moment
/// it is bound: the failing step's error, `-v` lines and the trace show it redacted.
#[test]
fn a_value_bound_into_env_from_another_step_is_redacted_from_a_failure() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "mint", "type": "shell", "params": {"command": "echo runtime-SECRET789"}},
            {"id": "use", "type": "shell",
             "params": {"command": "echo \"denied for $T\" >&2; exit 3",
                        "env": {"T": "${mint.stdout}"}}}
        ]
    }));
    // `-v` first, while `mint` runs (and would stream what it prints).
    for json_mode in [false, true] {
        let mut cmd = ws.cmd().args(&["--trace", "trace.json"]);
        if !json_mode {
            cmd = cmd.text().arg("-v");
        }
        let r = cmd.run();
        assert_eq!(r.code, 1, "{r}");
        let shown = format!("{}\n{}\n{}", r.stdout, r.stderr, ws.read("trace.json"));
        assert!(shown.contains("denied for <redacted>"), "{shown}");
        assert!(!shown.contains("SECRET789"), "shown:\n{shown}");
        if !json_mode {
            // Not streamed, but still shown: under its line, once the secret is known.
            assert!(r.stderr.contains("| <redacted>"), "{r}");
        }
    }
}

/// The same value, printed by the step it was bound into and shown as an output, is
/// redacted by every build (the first, which ran it, and those that reuse it), and the
/// result that produced it stays off a shared remote.
#[test]
fn a_value_bound_into_env_from_another_step_is_redacted_by_every_build() {
    let remote = accepting_remote();
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "public", "type": "shell", "params": {"command": "echo nothing to hide"}},
            {"id": "mint", "type": "shell", "params": {"command": "echo runtime-SECRET789"}},
            {"id": "use", "type": "shell",
             "params": {"command": "echo \"using $T\"", "env": {"T": "${mint.stdout}"}}}
        ],
        "outputs": {"said": {"source": "${use.stdout}"}}
    }));
    for round in ["ran", "reused", "reused again"] {
        let r = ws
            .cmd()
            .args(&["--remote-cache", &remote.url(), "--remote-cache-write"])
            .run();
        r.assert_ok();
        assert_eq!(
            r.output("said").as_str().map(str::trim),
            Some("using <redacted>"),
            "{round}: {r}"
        );
        assert!(!r.to_string().contains("SECRET789"), "{round}: {r}");
        let t = ws.cmd().text().run();
        assert_eq!(t.code, 0, "{t}");
        assert!(t.stdout.contains("using <redacted>"), "{round}: {t}");
        assert!(!t.to_string().contains("SECRET789"), "{round}: {t}");
    }
    assert!(
        remote.requests().iter().any(|q| q.method == "PUT"),
        "nothing was uploaded at all"
    );
    for q in remote.requests() {
        assert!(
            !q.raw_text().contains("SECRET789"),
            "sent to the remote:\n{}",
            q.raw_text()
        );
    }
}

/// A batch binds each item into its `env`: every item's value is redacted from what the
/// batch reports, the items that ran and those its next build reuses.
#[test]
fn each_batch_item_bound_into_env_is_redacted() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "mint", "type": "shell",
             "params": {"command": "echo '[\"tok-AAAA1111\", \"tok-BBBB2222\"]'"}},
            {"id": "use", "type": "shell", "batch": {"items": "${mint.stdout}", "as": "t"},
             "params": {"command": "echo \"using $T\"", "env": {"T": "${t}"}}}
        ],
        "outputs": {"said": {"source": "${use.results}"}}
    }));
    // `-v` first, while `mint` runs: what it prints is every item.
    let v = ws.cmd().text().arg("-v").run();
    assert_eq!(v.code, 0, "{v}");
    assert!(!v.to_string().contains("AAAA1111"), "{v}");
    let remote = accepting_remote();
    for round in ["reused", "reused again"] {
        let r = ws
            .cmd()
            .args(&["--remote-cache", &remote.url(), "--remote-cache-write"])
            .run();
        r.assert_ok();
        let said = r.output("said").to_string();
        assert!(said.contains("using <redacted>"), "{round}: {said}");
        assert!(
            !said.contains("AAAA1111") && !said.contains("BBBB2222"),
            "{round}: {said}"
        );
    }
    // Nothing was stored there by the reusing builds; a cold one uploads what it can.
    ws.pflow().args(["cache", "clear"]).output();
    let cold = ws
        .cmd()
        .args(&["--remote-cache", &remote.url(), "--remote-cache-write"])
        .run();
    cold.assert_ok();
    for q in remote.requests() {
        assert!(!q.raw_text().contains("AAAA1111"), "{}", q.raw_text());
    }
}

/// A workflow input that is no secret by name, bound into a step's `env`, is one from
/// the start: a step that printed it before (and failed, so the binding step never ran)
/// shows it redacted too.
#[test]
fn an_input_bound_into_env_is_a_secret_from_the_start() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"session": {"type": "string"}},
        "nodes": [
            {"id": "early", "type": "shell",
             "params": {"command": "echo \"session is ${session}\" >&2; exit 3"}},
            {"id": "use", "type": "shell",
             "params": {"command": "echo ${early.exit_code}", "env": {"S": "${session}"}}}
        ]
    }));
    let r = ws.cmd().text().arg("session=plain-named-SESSION-99").run();
    assert_eq!(r.code, 1, "{r}");
    assert!(r.stderr.contains("session is <redacted>"), "{r}");
    assert!(!r.to_string().contains("SESSION-99"), "{r}");
}

/// A long secret shown cut (an error's 60-character value preview, the first 500
/// characters of a failed command's stderr) is still redacted: the piece shown is not
/// the whole value a search by value looks for.
#[test]
fn a_long_secret_shown_cut_short_is_redacted() {
    const TOKEN: &str = "tok-0123456789abcdefghijklmnopqrstuvwxyz0123456789abcdefghijklmnop-END";
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [
            {"id": "preview", "type": "shell", "params": {"command": "echo ${api_token.user}"}},
            {"id": "head", "type": "shell",
             "params": {"command": "printf '%480s' '' | tr ' ' x >&2; echo \"$T\" >&2; exit 3",
                        "env": {"T": "${api_token}"}}}
        ]
    }));
    let r = ws.cmd().text().arg(format!("api_token={TOKEN}")).run();
    assert_eq!(r.code, 1, "{r}");
    let shown = r.to_string();
    assert!(shown.contains("(value: \"<redacted>"), "{shown}");
    assert!(shown.contains("xxxx<redacted>"), "{shown}");
    assert!(
        !shown.contains("tok-0123456789ab"),
        "a piece of it shown:\n{shown}"
    );
}

/// A secret object input's fields, each used alone, are redacted as the whole is.
#[test]
fn a_field_of_a_secret_object_input_is_redacted() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"credentials": {"type": "object", "secret": true}},
        "nodes": [{"id": "login", "type": "shell",
                   "params": {"command": "echo \"login ${credentials.user} with ${credentials.password}\" >&2; exit 3"}}]
    }));
    let r = ws
        .cmd()
        .text()
        .arg("credentials={\"user\": \"admin-user\", \"password\": \"hunter22-pw\"}")
        .run();
    assert_eq!(r.code, 1, "{r}");
    let shown = r.to_string();
    assert!(
        shown.contains("login <redacted> with <redacted>"),
        "{shown}"
    );
    assert!(!shown.contains("hunter22"), "{shown}");
}

/// A declared variable holding a URL with a password (its name is no secret's) is
/// redacted whole, and its password wherever it appears alone.
#[test]
fn a_declared_url_with_a_password_is_redacted() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "connect", "type": "shell", "reads_env": ["DATABASE_URL"],
                   "params": {"command": "echo \"to $DATABASE_URL as pw=hunter2-db-pw\" >&2; exit 3"}}]
    }));
    let r = ws
        .cmd()
        .text()
        .env("DATABASE_URL", "postgres://app:hunter2-db-pw@db:5432/app")
        .run();
    assert_eq!(r.code, 1, "{r}");
    let shown = r.to_string();
    assert!(shown.contains("to <redacted> as pw=<redacted>"), "{shown}");
    assert!(!shown.contains("hunter2-db-pw"), "{shown}");
}

/// A credential written into an HTTP node's headers (`Authorization: Bearer …`), or
/// bound there from another step, is a secret: a server that echoes it back shows it
/// redacted, and the node's result stays off a remote.
#[test]
fn a_credential_in_http_headers_is_redacted_from_what_the_server_echoes() {
    use crate::stub::{Reply, Stub};
    let server = Stub::start(|req, _| {
        let auth = req.header("authorization").unwrap_or("").to_string();
        let key = req.header("x-session-token").unwrap_or("").to_string();
        Reply::json(200, &json!({"you_sent": auth, "and": key}))
    });
    let remote = accepting_remote();
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "login", "type": "shell", "params": {"command": "echo minted-SESSION-4242"}},
            {"id": "call", "type": "http",
             "params": {"url": format!("{}/me", server.url()),
                        "headers": {"Authorization": "Bearer literal-BEARER-7777",
                                    "X-Session-Token": "${login.stdout}"}}}
        ],
        "outputs": {"echoed": {"source": "${call.response}"}}
    }));
    let r = ws
        .cmd()
        .args(&["--remote-cache", &remote.url(), "--remote-cache-write"])
        .run();
    r.assert_ok();
    let echoed = r.output("echoed").to_string();
    assert!(
        echoed.contains("\"you_sent\":\"<redacted>\"") && echoed.contains("\"and\":\"<redacted>\""),
        "{echoed}"
    );
    let all = r.to_string();
    assert!(
        !all.contains("BEARER-7777") && !all.contains("SESSION-4242"),
        "{all}"
    );
    for q in remote.requests() {
        let seen = q.raw_text();
        assert!(
            !seen.contains("BEARER-7777") && !seen.contains("SESSION-4242"),
            "sent to the remote:\n{seen}"
        );
    }
}

/// A secret that went into a URL is found in a message that names the URL as pflow
/// spells it: percent-encoded in the path, lower-cased in the host; and one put in the
/// method is shown as given, not upper-cased.
#[test]
fn a_secret_in_a_url_is_redacted_as_the_url_spells_it() {
    use crate::stub::{Reply, Stub};
    let server = Stub::start(|_, _| Reply::json(404, &json!({"error": "no such thing"})));
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}, "host_secret": {"type": "string"},
                   "method_token": {"type": "string"}},
        "nodes": [
            {"id": "path", "type": "http",
             "params": {"url": format!("{}/v1/${{api_token}}", server.url())}},
            {"id": "host", "type": "http",
             "params": {"url": "http://${host_secret}.invalid/x", "timeout": 5}},
            {"id": "method", "type": "http",
             "params": {"url": server.url(), "method": "${method_token}"}}]
    }));
    let secrets = [
        "correct horse Battery staple",
        "SuperSecretHostToken42",
        "weird token value",
    ];
    let r = ws
        .cmd()
        .args(&[
            &format!("api_token={}", secrets[0]),
            &format!("host_secret={}", secrets[1]),
            &format!("method_token={}", secrets[2]),
            "--trace",
            "trace.json",
        ])
        .text()
        .run();
    assert_eq!(r.code, 1, "{r}");
    let shown = format!("{}\n{}\n{}", r.stdout, r.stderr, ws.read("trace.json"));
    assert_eq!(
        shown.matches("error [").count(),
        3,
        "every node failed: {shown}"
    );
    for s in secrets {
        for spelled in [
            s.to_string(),
            s.replace(' ', "%20"),
            s.to_lowercase(),
            s.to_uppercase(),
        ] {
            assert!(!shown.contains(&spelled), "{spelled} shown:\n{shown}");
        }
    }
}
