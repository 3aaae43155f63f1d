//! `pflow mcp serve`, driven by the official MCP Inspector in CLI mode.

use crate::common::{self, counted, Pflow, Workspace};
use serde_json::{json, Value};

/// `mcp-inspector --cli pflow mcp serve ARGS`, in the workspace; its JSON answer.
fn inspect(ws: &Workspace, inspector: &std::path::Path, args: &[&str]) -> Value {
    inspect_from(ws.pflow(), inspector, args)
}

/// [`inspect`] with `pflow` as the test set it up (its environment, say).
fn inspect_from(pflow: Pflow, inspector: &std::path::Path, args: &[&str]) -> Value {
    let out = pflow
        .args(["mcp", "serve"])
        .args(args)
        .started_by(inspector, &["--cli"])
        .output();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
}

fn call(ws: &Workspace, inspector: &std::path::Path, tool: &str, args: &[String]) -> Value {
    call_from(ws.pflow(), inspector, tool, args)
}

/// [`call`] with `pflow` as the test set it up.
fn call_from(pflow: Pflow, inspector: &std::path::Path, tool: &str, args: &[String]) -> Value {
    let mut all = vec!["--method", "tools/call", "--tool-name", tool];
    for a in args {
        all.push("--tool-arg");
        all.push(a);
    }
    inspect_from(pflow, inspector, &all)
}

#[test]
fn the_inspector_lists_validates_and_builds_through_pflow() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let inspector = tools.npm_bin("mcp-inspector");
    let ws = Workspace::new();

    let listed = inspect(&ws, &inspector, &["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    for want in [
        "list_node_types",
        "describe_node_type",
        "list_workflows",
        "validate_workflow",
        "build_workflow",
        "save_workflow",
    ] {
        assert!(names.contains(&want), "{want} missing: {listed}");
    }

    ws.write(
        "invalid.json",
        &json!({"nodes": [
            {"id": "a", "type": "shell", "params": {"command": "echo hi"}},
            {"id": "b", "type": "echo", "params": {"message": "${a.stdot}"}}
        ]})
        .to_string(),
    );
    let checked = call(
        &ws,
        &inspector,
        "validate_workflow",
        &["workflow=invalid.json".into()],
    );
    let report = &checked["structuredContent"];
    assert_eq!(report["valid"], json!(false), "{checked}");
    assert_eq!(
        report["errors"][0]["path"],
        json!("nodes[1].params.message"),
        "{checked}"
    );
    assert!(
        report["errors"][0]["hint"]
            .as_str()
            .unwrap_or("")
            .contains("stdout"),
        "{checked}"
    );

    ws.write(
        "good.json",
        &json!({"nodes": [
            {"id": "greet", "type": "shell", "params": {"command": counted("greet", "echo hello")}},
            {"id": "shout", "type": "shell",
             "params": {"command": "tr a-z A-Z", "stdin": "${greet.stdout}"}}
        ], "outputs": {"loud": {"source": "${shout.stdout}"}}})
        .to_string(),
    );
    let args = [
        "workflow=good.json".to_string(),
        "no_repair=true".to_string(),
    ];
    let first = call(&ws, &inspector, "build_workflow", &args);
    let doc = &first["structuredContent"];
    assert_eq!(doc["success"], json!(true), "{first}");
    assert_eq!(doc["outputs"]["loud"], json!("HELLO"), "{first}");
    assert_eq!(doc["stats"]["ran"], json!(2), "{first}");
    let second = call(&ws, &inspector, "build_workflow", &args);
    let doc = &second["structuredContent"];
    assert_eq!(
        doc["stats"]["cached"],
        json!(2),
        "every node cached: {second}"
    );
    assert_eq!(doc["stats"]["ran"], json!(0), "{second}");
    assert_eq!(ws.count("greet"), 1);

    // The same cache as the command line: a build there reuses everything too.
    let cli = ws
        .cmd()
        .workflow_file("good.json")
        .cache_arg(common::CacheArg::Default)
        .run();
    cli.assert_ok();
    assert_eq!(cli.status_of("greet"), "cached", "{cli}");

    // Inline workflows, each build's written to a temporary folder of its own, keep
    // records by their text: the same workflow built twice has one set, another its
    // own (named by their paths, each build left a set no build read again).
    let record_sets = || {
        std::fs::read_dir(ws.file(".pflow-cache/state"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().ends_with(".explain.bin")
            })
            .count()
    };
    let before = record_sets();
    for word in ["one", "one", "two"] {
        let inline = json!({"nodes": [
            {"id": "say", "type": "shell", "params": {"command": format!("echo {word}")}}
        ]});
        let built = call(
            &ws,
            &inspector,
            "build_workflow",
            &[format!("workflow={inline}"), "no_repair=true".into()],
        );
        assert_eq!(
            built["structuredContent"]["success"],
            json!(true),
            "{built}"
        );
    }
    assert_eq!(record_sets(), before + 2);
}

/// The records name is the server's to set, for inline workflows only: a file
/// workflow's build keeps its records by its path whatever the server's environment
/// holds, so `pflow log` on the command line finds them.
#[test]
fn a_file_workflow_built_through_the_server_keeps_its_records_by_its_path() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let inspector = tools.npm_bin("mcp-inspector");
    let ws = Workspace::new();
    ws.write(
        "wf.json",
        &json!({"nodes": [
            {"id": "say", "type": "shell", "params": {"command": "echo from-the-file"}}
        ]})
        .to_string(),
    );
    let built = call_from(
        ws.pflow().env("PFLOW_RECORDS_AS", "inherited"),
        &inspector,
        "build_workflow",
        &["workflow=wf.json".into(), "no_repair=true".into()],
    );
    assert_eq!(
        built["structuredContent"]["success"],
        json!(true),
        "{built}"
    );
    let log = ws.pflow().args(["log", "wf.json", "say"]).output();
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(
        text.contains("from-the-file"),
        "{text}{}",
        String::from_utf8_lossy(&log.stderr)
    );
}

#[test]
fn the_inspector_saves_a_workflow_and_builds_it_by_name_with_params() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let inspector = tools.npm_bin("mcp-inspector");
    let ws = Workspace::new();
    ws.write(
        "greet.json",
        &json!({"inputs": {"who": {"type": "string"},
                           "api_token": {"type": "string", "required": false, "default": "tok-DEFAULT-42"}},
                "nodes": [{"id": "g", "type": "shell", "params": {"command": "echo hello ${who}"}}],
                "outputs": {"msg": {"source": "${g.stdout}"}}})
        .to_string(),
    );
    let saved = call(
        &ws,
        &inspector,
        "save_workflow",
        &["workflow=greet.json".into(), "name=greeter".into()],
    );
    assert_eq!(
        saved["structuredContent"]["saved"],
        json!("greeter"),
        "{saved}"
    );
    let listed = call(&ws, &inspector, "list_workflows", &[]);
    assert_eq!(
        listed["structuredContent"]["workflows"][0]["name"],
        json!("greeter"),
        "{listed}"
    );
    // A secret input's default is not shown to the agent (nor to its model).
    let inputs = &listed["structuredContent"]["workflows"][0]["inputs"];
    assert_eq!(
        inputs["api_token"]["default"],
        json!("<redacted>"),
        "{listed}"
    );
    assert!(!listed.to_string().contains("tok-DEFAULT-42"), "{listed}");
    assert_eq!(inputs["who"]["type"], json!("string"), "{listed}");
    let built = call(
        &ws,
        &inspector,
        "build_workflow",
        &[
            "workflow=greeter".into(),
            r#"params={"who": "Ada"}"#.into(),
            "no_repair=true".into(),
        ],
    );
    assert_eq!(
        built["structuredContent"]["outputs"]["msg"],
        json!("hello Ada"),
        "{built}"
    );

    let shell = call(
        &ws,
        &inspector,
        "describe_node_type",
        &["type=shell".into()],
    );
    let params = shell["structuredContent"]["params"].to_string();
    assert!(params.contains("\"command\""), "{shell}");
    let types = call(&ws, &inspector, "list_node_types", &[]);
    assert!(
        types["structuredContent"]["node_types"]
            .as_array()
            .is_some_and(|a| a.iter().any(|t| t["type"] == "read-file")),
        "{types}"
    );
}

/// An agent's inputs reach the build through a file of its own, never its command line
/// (which every user of the machine can read in `/proc`): the build's own argv, as its
/// shell step reads it, does not hold them.
#[test]
fn build_workflow_keeps_inputs_off_the_builds_command_line() {
    let Some(tools) = common::mcp::tools() else {
        return;
    };
    let inspector = tools.npm_bin("mcp-inspector");
    let ws = Workspace::new();
    ws.write(
        "argv.json",
        &json!({"inputs": {"who": {"type": "string"}},
                "nodes": [{"id": "argv", "type": "shell",
                           "params": {"command": "tr '\\0' ' ' < /proc/$PPID/cmdline; echo; echo \"hi ${who}\""}}],
                "outputs": {"said": {"source": "${argv.stdout}"}}})
        .to_string(),
    );
    let built = call(
        &ws,
        &inspector,
        "build_workflow",
        &[
            "workflow=argv.json".into(),
            r#"params={"who": "Ada-PRIVATE-1"}"#.into(),
            "no_repair=true".into(),
        ],
    );
    let said = built["structuredContent"]["outputs"]["said"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (argv, greeting) = said.split_once('\n').unwrap_or_default();
    assert!(argv.contains("build"), "not the build's argv: {built}");
    assert!(
        !argv.contains("Ada-PRIVATE-1"),
        "on the command line: {argv}"
    );
    assert_eq!(greeting.trim(), "hi Ada-PRIVATE-1", "{built}");
}
