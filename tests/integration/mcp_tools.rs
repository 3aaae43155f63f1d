//! MCP tools as nodes, against real servers (`common::mcp`): server-filesystem confined
//! to the test's folder and server-everything, over stdio.

use crate::common::mcp::{add, mcp, ok};
use crate::common::{self, counted, Workspace};
use crate::stub::{anthropic_server, Stub};
use serde_json::{json, Value};

#[test]
fn filesystem_tools_build_and_only_the_reads_run_again() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    ws.write("data/notes.txt", "first draft\n");
    let root = ws.path().canonicalize().unwrap();
    add(&ws, json!({"fs": tools.filesystem(&root)}));
    assert!(ok(&mcp(&ws, &["sync", "fs"])).contains("synced 'fs'"));
    let listed = ok(&mcp(&ws, &["tools", "fs"]));
    assert!(
        listed.contains("mcp-fs-read_text_file [read-only]"),
        "{listed}"
    );
    assert!(listed.contains("mcp-fs-write_file "), "{listed}");

    let data = root.join("data");
    let out = root.join("out/summary.txt");
    std::fs::create_dir_all(root.join("out")).unwrap();
    let ws = ws.workflow(json!({"nodes": [
        {"id": "ls", "type": "mcp-fs-list_directory", "params": {"path": data}},
        {"id": "read", "type": "mcp-fs-read_text_file", "params": {"path": data.join("notes.txt")}},
        {"id": "shout", "type": "shell",
         "params": {"command": counted("shout", "tr a-z A-Z"), "stdin": "${read.content}"}},
        {"id": "files", "type": "shell",
         "params": {"command": counted("files", "cat"), "stdin": "${ls.result}"}},
        {"id": "save", "type": "mcp-fs-write_file",
         "params": {"path": out, "content": "${shout.stdout} / ${files.stdout}"}}
    ]}));

    let first = ws.build(&[]);
    first.assert_ok();
    for id in ["ls", "read", "shout", "files", "save"] {
        assert_eq!(first.status_of(id), "ran", "{first}");
    }
    let written = std::fs::read_to_string(&out).unwrap();
    assert!(written.starts_with("FIRST DRAFT"), "{written}");
    assert!(written.contains("[FILE] notes.txt"), "{written}");

    // Nothing changed: the reads run (pflow cannot see what they read), their results
    // are the same, and nothing downstream runs.
    let second = ws.build(&[]);
    second.assert_ok();
    assert_eq!(second.status_of("ls"), "ran", "{second}");
    assert_eq!(second.status_of("read"), "ran", "{second}");
    for id in ["shout", "files", "save"] {
        assert_eq!(second.status_of(id), "cached", "{second}");
    }
    assert_eq!((ws.count("shout"), ws.count("files")), (1, 1));

    // The file changes: the read and what depends on it run; the listing's branch not.
    ws.write("data/notes.txt", "second draft\n");
    let third = ws.build(&[]);
    third.assert_ok();
    assert_eq!(third.status_of("shout"), "ran", "{third}");
    assert_eq!(third.status_of("save"), "ran", "{third}");
    assert_eq!(third.status_of("files"), "cached", "{third}");
    assert!(std::fs::read_to_string(&out)
        .unwrap()
        .starts_with("SECOND DRAFT"));
}

#[test]
fn a_tool_error_fails_the_node_with_the_tools_message() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    add(&ws, json!({"ev": tools.everything()}));
    let ws = ws.workflow(json!({
        "inputs": {"a": {"type": "string"}},
        "nodes": [{"id": "sum", "type": "mcp-ev-get-sum", "params": {"a": "${a}", "b": 2}},
                  {"id": "after", "type": "shell", "params": {"command": "echo ${sum.result}"}}]
    }));
    let good = ws.build(&["a=40"]);
    good.assert_ok();
    assert!(good.doc()["nodes"].to_string().contains("after"));
    let bad = ws.build(&["a=forty"]);
    bad.assert_code(1);
    assert_eq!(bad.status_of("sum"), "failed", "{bad}");
    let message = bad.doc()["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(message.contains("mcp-ev-get-sum"), "{message}");
    assert!(
        message.contains("expected number"),
        "the server's own words: {message}"
    );
}

#[test]
fn validate_catches_a_wrong_param_name_with_a_suggestion() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    add(&ws, json!({"ev": tools.everything()}));
    let ws = ws.workflow(json!({"nodes": [
        {"id": "say", "type": "mcp-ev-echo", "params": {"mesage": "hi"}}
    ]}));
    let out = ws.pflow().args(["validate", common::WORKFLOW]).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("'mesage' is not a param of mcp-ev-echo"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'message'"), "{stderr}");
    assert!(
        stderr.contains("missing required param 'message'"),
        "{stderr}"
    );
}

#[test]
fn an_effect_tool_runs_once_across_builds_and_repairs() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    add(&ws, json!({"ev": tools.everything()}));
    // toggle-simulated-logging is not read-only: an effect.
    let ws = ws.workflow(json!({"nodes": [
        {"id": "toggle", "type": "mcp-ev-toggle-simulated-logging", "params": {}},
        {"id": "after", "type": "shell",
         "params": {"command": "echo '${toggle.result}'; exit 3"}}
    ]}));
    let first = ws.build(&[]);
    assert_eq!(first.status_of("toggle"), "ran", "{first}");
    assert_eq!(first.status_of("after"), "failed", "{first}");
    let second = ws.build(&[]);
    assert_eq!(second.status_of("toggle"), "cached", "{second}");
    assert_eq!(second.executions_of("toggle"), 0);

    // A repair of the downstream node: the repaired build does not call the tool again.
    let fixed = json!({"nodes": [
        {"id": "toggle", "type": "mcp-ev-toggle-simulated-logging", "params": {}},
        {"id": "after", "type": "shell", "params": {"command": "echo '${toggle.result}'"}}
    ]});
    let model = Stub::start(anthropic_server(move |_| {
        format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(&fixed).unwrap()
        )
    }));
    let out = ws
        .pflow()
        .args([
            "build",
            common::WORKFLOW,
            "--output-format",
            "json",
            "--cache-dir",
        ])
        .arg(ws.cache_dir())
        .env("ANTHROPIC_BASE_URL", model.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        .output();
    let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(out.status.code(), Some(0), "{doc}");
    assert_eq!(doc["repair"]["succeeded"], json!(true), "{doc}");
    let node = |id: &str| {
        doc["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id))
            .cloned()
            .unwrap_or(Value::Null)
    };
    assert_eq!(node("toggle")["executions"], json!(0), "{doc}");
    assert_eq!(node("after")["status"], json!("ran"), "{doc}");
}

#[test]
fn fifty_parallel_calls_share_one_server_process() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    let log = ws.file("starts.log");
    add(
        &ws,
        json!({"ev": tools.counting_starts(&tools.everything(), &log)}),
    );
    ok(&mcp(&ws, &["sync", "ev"]));
    std::fs::remove_file(&log).unwrap();
    let items: Vec<Value> = (0..50).map(|i| json!(i)).collect();
    let ws = ws.workflow(json!({
        "nodes": [
            {"id": "sums", "type": "mcp-ev-get-sum", "params": {"a": "${n}", "b": 1000},
             "batch": {"items": items, "as": "n", "parallel": true, "max_concurrent": 50}}
        ],
        "outputs": {"sums": {"source": "${sums.results}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    let results = r.doc()["outputs"]["sums"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(results.len(), 50, "{r}");
    for (i, item) in results.iter().enumerate() {
        assert_eq!(
            item["item"],
            json!(i),
            "results keep their items' order: {item}"
        );
        let text = item["result"].to_string();
        assert!(text.contains(&format!("{}", i + 1000)), "item {i}: {text}");
    }
    let starts = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(starts.lines().count(), 1, "one server process for 50 calls");
}

#[test]
fn repair_sees_the_tools_schema_and_a_connection_failure_is_not_repaired() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    add(
        &ws,
        json!({"ev": tools.everything(), "gone": {"command": ws.file("no-such-server")}}),
    );
    let broken = json!({
        "inputs": {"a": {"type": "string", "default": "forty"}},
        "nodes": [{"id": "sum", "type": "mcp-ev-get-sum", "params": {"a": "${a}", "b": 2}}],
        "outputs": {"sum": {"source": "${sum.result}"}}
    });
    let fixed = json!({
        "inputs": {"a": {"type": "string", "default": "forty"}},
        "nodes": [{"id": "sum", "type": "mcp-ev-get-sum", "params": {"a": 40, "b": 2}}],
        "outputs": {"sum": {"source": "${sum.result}"}}
    });
    let ws = ws.workflow(broken);
    let model = Stub::start(anthropic_server(move |_| {
        format!(
            "```json\n{}\n```",
            serde_json::to_string_pretty(&fixed).unwrap()
        )
    }));
    let repair = |ws: &Workspace| {
        let out = ws
            .pflow()
            .args([
                "build",
                common::WORKFLOW,
                "--output-format",
                "json",
                "--cache-dir",
            ])
            .arg(ws.cache_dir())
            .env("ANTHROPIC_BASE_URL", model.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
            .output();
        let doc: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        (out.status.code(), doc)
    };
    let (code, doc) = repair(&ws);
    assert_eq!(code, Some(0), "{doc}");
    assert!(doc["outputs"]["sum"].to_string().contains("42"), "{doc}");
    let prompt = crate::stub::user_prompt(&model.single());
    assert!(prompt.contains("the tool's input schema"), "{prompt}");
    assert!(prompt.contains("\"required\":[\"a\",\"b\"]"), "{prompt}");

    // A server that answered once (its tools are synced) and is gone at build time:
    // no edit fixes that, so no model is asked.
    let once = ws.file("served-once");
    let ev = tools.everything();
    let script = format!(
        "[ -e '{m}' ] && {{ echo 'server unavailable' >&2; exit 1; }}; touch '{m}'; exec '{bin}'",
        m = once.display(),
        bin = ev["command"].as_str().unwrap()
    );
    add(
        &ws,
        json!({"flaky": {"command": "sh", "args": ["-c", script]}}),
    );
    ok(&mcp(&ws, &["sync", "flaky"]));
    ws.set_workflow(&json!({"nodes": [
        {"id": "x", "type": "mcp-flaky-echo", "params": {"message": "hi"}}
    ]}));
    let (code, doc) = repair(&ws);
    assert_eq!(code, Some(1), "{doc}");
    assert_eq!(doc["errors"][0]["category"], json!("network"), "{doc}");
    assert_eq!(doc["errors"][0]["repairable"], json!(false), "{doc}");
    let message = doc["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("server unavailable"),
        "the server's stderr: {message}"
    );
    assert_eq!(model.count(), 1, "no model call for a connection failure");
}

/// Is process `pid` gone (or a zombie nobody has reaped yet)?
fn gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[test]
fn servers_stop_with_the_build_on_failure_and_on_ctrl_c() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    let pid_file = ws.file("server.pid");
    let ev = tools.everything();
    let script = format!(
        "echo $$ > '{}'; exec '{}'",
        pid_file.display(),
        ev["command"].as_str().unwrap()
    );
    add(
        &ws,
        json!({"ev": {"command": "sh", "args": ["-c", script]}}),
    );
    let server_pid = || -> i32 {
        std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };

    // A failed build: the server it started is gone when pflow is.
    let ws = ws.workflow(json!({"nodes": [
        {"id": "say", "type": "mcp-ev-echo", "params": {"message": "hi"}},
        {"id": "fail", "type": "shell", "params": {"command": "exit 1"}}
    ]}));
    let r = ws.build(&[]);
    r.assert_code(1);
    let pid = server_pid();
    assert!(pid > 0, "{r}");
    assert!(common::wait_for(std::time::Duration::from_secs(10), || {
        gone(pid)
    }));

    // Ctrl-C during a long call: the build stops, and so does the server.
    std::fs::remove_file(&pid_file).unwrap();
    ws.set_workflow(&json!({"nodes": [
        {"id": "slow", "type": "mcp-ev-trigger-long-running-operation",
         "params": {"duration": 60, "steps": 60}}
    ]}));
    let mut running = ws.cmd().start();
    assert!(common::wait_for(
        std::time::Duration::from_secs(30),
        || server_pid() > 0
    ));
    let pid = server_pid();
    std::thread::sleep(std::time::Duration::from_millis(500));
    running.interrupt();
    let r = running.wait(std::time::Duration::from_secs(20));
    r.assert_code(130);
    assert!(
        common::wait_for(std::time::Duration::from_secs(10), || gone(pid)),
        "the server outlived the build"
    );
}

#[test]
fn a_call_past_the_servers_timeout_fails_the_node() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    let mut ev = tools.everything();
    ev["timeout"] = json!(1);
    add(&ws, json!({"ev": ev}));
    let ws = ws.workflow(json!({"nodes": [
        {"id": "slow", "type": "mcp-ev-trigger-long-running-operation",
         "params": {"duration": 30, "steps": 30}}
    ]}));
    let r = ws.build(&[]);
    r.assert_code(1);
    assert_eq!(r.doc()["errors"][0]["category"], json!("timeout"), "{r}");
    let message = r.doc()["errors"][0]["message"].as_str().unwrap_or("");
    assert!(message.contains("no answer within 1 s"), "{message}");
}

#[test]
fn tool_lists_sync_on_first_use_and_again_when_the_config_changes() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    let log = ws.file("starts.log");
    let counted_ev = tools.counting_starts(&tools.everything(), &log);
    add(&ws, json!({"ev": counted_ev}));
    assert!(ok(&mcp(&ws, &["list"])).contains("(not synced)"));
    let ws = ws.workflow(json!({"nodes": [
        {"id": "say", "type": "mcp-ev-echo", "params": {"message": "hi"}}
    ]}));
    // Validation needs the tools: the list is synced then, once.
    ok(&ws.pflow().args(["validate", common::WORKFLOW]).output());
    ok(&ws.pflow().args(["validate", common::WORKFLOW]).output());
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count(),
        1
    );
    assert!(ok(&mcp(&ws, &["list"])).contains("tools)"));

    // Another configuration of the server: its list is stale, and synced again.
    let mut changed = counted_ev.clone();
    changed["env"] = json!({"SOME_SETTING": "2"});
    let refused = mcp(&ws, &["add", &json!({"ev": changed}).to_string()]);
    assert_eq!(
        refused.status.code(),
        Some(2),
        "a different config needs --force"
    );
    ok(&mcp(
        &ws,
        &["add", "--force", &json!({"ev": changed}).to_string()],
    ));
    assert!(ok(&mcp(&ws, &["list"])).contains("(not synced)"));
    ok(&ws.pflow().args(["validate", common::WORKFLOW]).output());
    assert_eq!(
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .count(),
        2
    );

    ok(&mcp(&ws, &["remove", "ev"]));
    assert!(ok(&mcp(&ws, &["list"])).contains("no MCP servers configured"));
    let missing = mcp(&ws, &["remove", "ev"]);
    assert_eq!(missing.status.code(), Some(2));
    ok(&mcp(&ws, &["remove", "ev", "--force"]));
}

#[test]
fn a_cache_max_age_keeps_a_read_only_tools_result() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    add(&ws, json!({"ev": tools.everything()}));
    let ws = ws.workflow(json!({"nodes": [
        {"id": "fresh", "type": "mcp-ev-echo", "params": {"message": "a"}},
        {"id": "kept", "type": "mcp-ev-echo", "params": {"message": "b"}, "cache": "1h"}
    ]}));
    ws.build(&[]).assert_ok();
    let second = ws.build(&[]);
    second.assert_ok();
    assert_eq!(second.status_of("fresh"), "ran", "{second}");
    assert_eq!(second.status_of("kept"), "cached", "{second}");
}
