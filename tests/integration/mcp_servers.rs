//! Several MCP servers in one workflow, the streamable HTTP transport with `${VAR}`
//! headers, and the compat corpus's MCP examples, against real servers.

use crate::common::mcp::{add, mcp, ok, HttpServer};
use crate::common::{self, Workspace};
use serde_json::json;

#[test]
fn two_different_servers_in_one_workflow() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    // The Python time server and the Node.js everything server, in Claude Desktop's shape.
    add(
        &ws,
        json!({"mcpServers": {
            "time": tools.stdio(&tools.py_bin("mcp-server-time"), &["--local-timezone", "UTC"]),
            "ev": tools.everything(),
        }}),
    );
    let ws = ws.workflow(json!({
        "nodes": [
            {"id": "conv", "type": "mcp-time-convert_time",
             "params": {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Tokyo"}},
            {"id": "say", "type": "mcp-ev-echo", "params": {"message": "Tokyo: ${conv.target.datetime}"}}
        ],
        "outputs": {"said": {"source": "${say.result}"}, "diff": {"source": "${conv.time_difference}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    let said = r.doc()["outputs"]["said"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(said.starts_with("Echo: Tokyo: "), "{r}");
    assert!(said.ends_with("T21:00:00+09:00"), "{said}");
    assert_eq!(r.doc()["outputs"]["diff"], json!("+9.0h"), "{r}");

    // Listed, described and drawn like built-in types.
    let listed = ok(&ws.pflow().arg("nodes").output());
    assert!(listed.lines().any(|l| l.starts_with("shell ")), "{listed}");
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("mcp-time-convert_time ")
                && l.contains("Convert time between timezones")),
        "{listed}"
    );
    let one = ok(&ws.pflow().args(["nodes", "mcp-ev-echo"]).output());
    assert!(one.contains("message") && one.contains("required"), "{one}");
    assert!(one.contains("ev_echo_result"), "{one}");
    let graph = ok(&ws.pflow().args(["graph", common::WORKFLOW]).output());
    assert!(
        graph.contains("mcp-time-convert_time") && graph.contains("mcp-ev-echo"),
        "{graph}"
    );
}

#[test]
fn http_servers_get_their_headers_from_the_environment_at_run_time() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let server = HttpServer::start(&tools, &[("EXPECTED_AUTH", "Bearer s3cret-value")]);
    let ws = Workspace::new();
    add(
        &ws,
        json!({"web": {"type": "http", "url": server.url,
                       "headers": {"Authorization": "Bearer ${WEB_TOKEN:-anonymous}"}}}),
    );
    let ws = ws.workflow(json!({
        "nodes": [{"id": "auth", "type": "mcp-web-auth_ok", "params": {}},
                  {"id": "sum", "type": "mcp-web-add_numbers", "params": {"a": 40, "b": 2}}],
        "outputs": {"auth": {"source": "${auth.result.result}"}, "sum": {"source": "${sum.result.result}"}}
    }));
    let r = ws.cmd().env("WEB_TOKEN", "s3cret-value").run();
    r.assert_ok();
    assert_eq!(r.doc()["outputs"]["auth"], json!("yes"), "{r}");
    assert_eq!(r.doc()["outputs"]["sum"], json!(42), "{r}");

    // The token is in no file pflow wrote and in nothing it shows.
    let config = std::fs::read_to_string(ws.home_dir().join("mcp-servers.json")).unwrap();
    assert!(config.contains("${WEB_TOKEN:-anonymous}") && !config.contains("s3cret"));
    let listed = ok(&mcp(&ws, &["list", "--json"]));
    assert!(
        !listed.contains("s3cret") && !listed.contains("Bearer"),
        "{listed}"
    );

    // Another token is not another key (headers never are): the effect stays done...
    let again = ws.build(&[]);
    assert_eq!(again.status_of("auth"), "cached", "{again}");
    // ...and when it does run, the default applies.
    let rerun = ws.build(&["--rerun", "auth"]);
    assert_eq!(rerun.doc()["outputs"]["auth"], json!("no"), "{rerun}");
}

#[test]
fn corpus_mcp_examples_name_the_missing_server_then_validate() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let ws = Workspace::new();
    let validate = |rel: &str| ws.pflow().arg("validate").arg(corpus.example(rel)).output();
    let out = validate("mcp-filesystem.json");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("no MCP server 'filesystem' is configured"),
        "{stderr}"
    );
    let out = validate("mcp-http/example-workflow.json");
    assert_eq!(out.status.code(), Some(2));

    let server = HttpServer::start(&tools, &[]);
    let root = ws.path().canonicalize().unwrap();
    add(
        &ws,
        json!({"filesystem": tools.filesystem(&root),
               "test-http": {"type": "http", "url": server.url}}),
    );
    for rel in ["mcp-filesystem.json", "mcp-http/example-workflow.json"] {
        let out = validate(rel);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{rel}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // And the HTTP example builds.
    let r = ws
        .cmd()
        .workflow_file(
            corpus
                .example("mcp-http/example-workflow.json")
                .to_string_lossy(),
        )
        .run();
    r.assert_ok();
    assert_eq!(r.status_of("math_test"), "ran", "{r}");
}
