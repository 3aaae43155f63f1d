//! Repair you can trust: only proven patches replay (before the broken node runs again),
//! side effects are guarded, concurrent builds repair once, outputs fail and repair,
//! secrets travel as placeholders, prompts stay within budget, every attempt is visible,
//! CI can turn repair off or make it strict, and applying a repair keeps the file's text.
//! A scripted loopback model speaks the real Anthropic Messages API in each test.

use crate::repair::{fenced, model, user_workflow, Repair};
use crate::stub::{anthropic_check, anthropic_message, user_prompt, Reply, Request, Stub};
use serde_json::{json, Value};
use std::path::PathBuf;

/// The patch files in the cache (records only, not the lock directory).
fn patch_files(r: &Repair) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(r.cache.join("repairs"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn explained(text: &str, doc: &Value) -> String {
    format!("Explanation: {text}\n{}", fenced(doc))
}

#[test]
fn a_wrong_fix_is_never_recorded_and_the_next_build_asks_again() {
    // Plausible but wrong: validates, and fails when it runs.
    let stub = model(vec![
        fenced(&user_workflow("username")),
        fenced(&user_workflow("name")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let first = r.build(&["--max-repair-attempts", "1"]);
    assert_eq!(first.code, 1, "{first}");
    assert_eq!(stub.count(), 1);
    assert!(patch_files(&r).is_empty(), "an unproven patch was recorded");
    // The error reported is the user's own, not the candidate's.
    let message = first.json["errors"][0]["message"].as_str().unwrap_or("");
    assert!(
        message.contains("fullname") && !message.contains("username"),
        "{first}"
    );

    let second = r.build(&[]);
    assert_eq!(second.code, 0, "{second}");
    assert_eq!(stub.count(), 2, "the second build must ask the model");
    assert_eq!(second.json["outputs"]["greeting"], "Hello Ada");
    assert_eq!(patch_files(&r).len(), 1);

    // The proven patch replays; the wrong one never existed to replay.
    let third = r.build(&[]);
    assert_eq!(third.code, 0, "{third}");
    assert_eq!(stub.count(), 2);
    assert_eq!(third.repair()["history"][0]["kind"], "replay");
}

#[test]
fn a_replay_runs_before_the_broken_node_so_its_effect_is_not_repeated() {
    let doc = |command: &str| {
        json!({"nodes": [{"id": "post", "type": "shell", "params": {"command": command}}],
               "outputs": {"r": {"source": "${post.stdout}"}}})
    };
    let broken = doc("echo sent >> post.count; exit 3");
    let fixed = doc("echo sent >> post.count; echo ok");
    let stub = model(vec![fenced(&fixed)]);
    let r = Repair::new().model(&stub);
    r.write(&broken);
    let first = r.build(&[]);
    assert_eq!(first.code, 0, "{first}");
    let after_repair = r.lines("post.count");
    assert_eq!(after_repair, 2, "the broken run and the fixed one");

    for _ in 0..2 {
        let again = r.build(&[]);
        assert_eq!(again.code, 0, "{again}");
        assert_eq!(again.json["outputs"]["r"], "ok");
        assert_eq!(again.llm_calls(), 0);
        assert_eq!(r.lines("post.count"), after_repair, "{again}");
    }
    assert_eq!(stub.count(), 1);
}

#[test]
fn a_replayed_patch_that_no_longer_works_is_demoted_and_the_model_asked() {
    let doc = |command: &str| json!({"nodes": [{"id": "step", "type": "shell", "params": {"command": command}}]});
    let stub = model(vec![
        fenced(&doc("test -f flag")),
        fenced(&doc("echo fine")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&doc("exit 7"));
    std::fs::write(r.path().join("flag"), "").expect("flag");
    let first = r.build(&[]);
    assert_eq!(first.code, 0, "{first}");
    // The world changes: the recorded fix stops working.
    std::fs::remove_file(r.path().join("flag")).expect("rm flag");
    let second = r.build(&["--force"]);
    assert_eq!(second.code, 0, "{second}");
    assert_eq!(stub.count(), 2);
    let history = second.repair()["history"].as_array().expect("history");
    assert_eq!(history[0]["kind"], "replay");
    assert_eq!(history[0]["result"], "failed");
    assert_eq!(history[1]["kind"], "model");
    let demoted: Vec<Value> = patch_files(&r)
        .iter()
        .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json"))
        .filter(|v: &Value| v["demoted"].is_string())
        .collect();
    assert_eq!(demoted.len(), 1, "one demoted record");
    assert_eq!(demoted[0]["proven"], false);
}

#[test]
fn a_reply_that_changes_a_node_with_a_side_effect_that_succeeded_is_rejected() {
    let mut tidied = user_workflow("name");
    tidied["nodes"][0]["params"]["command"] = json!(tidied["nodes"][0]["params"]["command"]
        .as_str()
        .expect("command")
        .replace("echo run >> get.count", "echo run >>get.count"));
    let stub = model(vec![fenced(&tidied), fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(stub.count(), 2);
    assert_eq!(r.lines("get.count"), 1, "the side effect ran again");
    // The failing node's input is described by its shape, not its values.
    let first = user_prompt(&stub.requests()[0]);
    assert!(
        first.contains("- get: {")
            && first.contains(r#""user":{"name":"string (3 chars)","id":"number"}"#),
        "{first}"
    );
    let second = user_prompt(&stub.requests()[1]);
    assert!(
        second.contains("node 'get' (shell) already succeeded and running it again would repeat its side effect"),
        "{second}"
    );
    let rejected = &run.repair()["history"][0]["rejected"][0];
    assert!(
        rejected.as_str().unwrap_or("").contains("node 'get'"),
        "{run}"
    );
}

/// Members of a param put in another order are a change too: the node's key sees them
/// (the value is used as written), so it would run again.
#[test]
fn a_reply_that_reorders_a_param_of_a_node_with_a_side_effect_is_rejected() {
    let doc = |stdin: Value, field: &str| {
        json!({"nodes": [
            {"id": "post", "type": "shell",
             "params": {"command": "echo run >> post.count; cat", "stdin": stdin}},
            {"id": "show", "type": "shell",
             "params": {"command": format!("echo ${{post.stdout.{field}}}")}}]})
    };
    let stub = model(vec![
        fenced(&doc(json!({"a": 2, "b": 1}), "b")),
        fenced(&doc(json!({"b": 1, "a": 2}), "b")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&doc(json!({"b": 1, "a": 2}), "c"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(stub.count(), 2, "{run}");
    assert_eq!(r.lines("post.count"), 1, "the side effect ran again");
    let second = user_prompt(&stub.requests()[1]);
    assert!(
        second.contains("node 'post' (shell) already succeeded and running it again would repeat its side effect"),
        "{second}"
    );
}

#[test]
fn a_pure_node_that_succeeded_may_change() {
    let doc = |message: &str, field: &str| {
        json!({"nodes": [
            {"id": "data", "type": "echo", "params": {"message": message}},
            {"id": "show", "type": "shell", "params": {"command": format!("echo ${{data.echo.{field}}}")}}]})
    };
    let stub = model(vec![fenced(&doc("{\"name\": \"Ada\"}", "name"))]);
    let r = Repair::new().model(&stub);
    r.write(&doc("{\"nom\": \"Ada\"}", "name"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(stub.count(), 1);
}

#[test]
fn six_concurrent_builds_of_one_failing_workflow_repair_once() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let outs: Vec<std::process::Output> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|_| {
                s.spawn(|| {
                    r.command("workflow.json")
                        .args(["--output-format", "json"])
                        .output()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for out in &outs {
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let doc: Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(doc["outputs"]["greeting"], "Hello Ada");
    }
    assert_eq!(stub.count(), 1, "one model call");
    assert_eq!(r.lines("get.count"), 1, "the side effect ran once");
    assert_eq!(patch_files(&r).len(), 1);
}

fn output_workflow(field: &str) -> Value {
    json!({"nodes": [{"id": "get", "type": "shell", "params": {
                "command": "echo '{\"user\": {\"name\": \"Ada\", \"id\": 7}}'"}}],
           "outputs": {"who": {"source": format!("${{get.stdout.user.{field}}}"), "description": "name"}}})
}

#[test]
fn an_output_that_cannot_be_resolved_fails_and_is_repaired_through_its_source() {
    let stub = model(vec![fenced(&output_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&output_workflow("fullname"));
    let plain = r.build(&["--no-repair"]);
    assert_eq!(plain.code, 1, "{plain}");
    assert_eq!(plain.json["success"], false);
    assert_eq!(plain.json["errors"][0]["output"], "who");
    assert_eq!(plain.json["errors"][0]["category"], "template");
    assert!(plain.json["errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("fullname"));

    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["who"], "Ada");
    assert_eq!(stub.count(), 1);
    let prompt = user_prompt(&stub.single());
    assert!(prompt.contains("declared output who"), "{prompt}");
    assert!(prompt.contains("- name:"), "{prompt}");

    // Renaming an output is still refused.
    let mut renamed = output_workflow("name");
    renamed["outputs"] =
        json!({"whom": {"source": "${get.stdout.user.name}", "description": "name"}});
    let stub = model(vec![fenced(&renamed)]);
    let r = Repair::new().model(&stub);
    r.write(&output_workflow("fullname"));
    let run = r.build(&["--max-repair-attempts", "1"]);
    assert_eq!(run.code, 1, "{run}");
    assert!(run.repair()["history"][0]["rejected"][0]
        .as_str()
        .unwrap_or("")
        .starts_with("outputs:"));
}

#[test]
fn a_password_also_used_as_a_user_name_is_repaired_in_one_call() {
    let doc = |field: &str, secret: &str| {
        json!({"nodes": [
            {"id": "dump", "type": "shell", "params": {
                "command": format!("echo \"dumping as {secret}\" >&2; echo '{{\"rows\": 3}}'"),
                "env": {"PGPASSWORD": secret}}},
            {"id": "count", "type": "shell", "params": {"command": format!("echo ${{dump.stdout.{field}}}")}}],
            "outputs": {"n": {"source": "${count.stdout}"}}})
    };
    // The model answers with what it was shown: placeholders kept where they were.
    let stub = model(vec![fenced(&doc("rows", "<secret:PGPASSWORD>"))]);
    let r = Repair::new().model(&stub);
    r.write(&doc("row", "postgres"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(stub.count(), 1);
    assert_eq!(run.json["outputs"]["n"], "3");
    let raw = stub.requests()[0].raw_text();
    assert!(
        !raw.contains("postgres"),
        "secret sent to the model:\n{raw}"
    );
    assert!(raw.contains("dumping as <secret:PGPASSWORD>"), "{raw}");
    for p in patch_files(&r) {
        let text = std::fs::read_to_string(&p).expect("patch");
        assert!(
            !text.contains("postgres"),
            "secret in {}:\n{text}",
            p.display()
        );
    }
    // The text run's diff on stderr keeps it out too; the replay still works.
    let out = r.command("workflow.json").arg("--force").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("postgres"), "{stderr}");
}

#[test]
fn the_diff_and_patch_never_hold_pflow_credentials_or_secret_inputs() {
    let doc = |field: &str| {
        json!({"inputs": {"api_token": {"type": "string", "required": true}},
               "nodes": [
                {"id": "get", "type": "shell", "params": {"command": "echo '{\"a\": 1}'"}},
                {"id": "use", "type": "shell", "params": {"command": format!("echo ${{get.stdout.{field}}} tok-input-secret-99")}}]})
    };
    let stub = model(vec![fenced(
        &doc("a")
            .to_string()
            .replace("tok-input-secret-99", "<secret:api_token>")
            .parse::<Value>()
            .expect("json"),
    )]);
    let r = Repair::new().model(&stub);
    r.write(&doc("b"));
    let out = r
        .command("workflow.json")
        .arg("api_token=tok-input-secret-99")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("<secret:api_token>") || stderr.contains("<redacted>"),
        "{stderr}"
    );
    for leak in ["tok-input-secret-99", "sk-ant-test-0123456789"] {
        assert!(!stderr.contains(leak), "{leak} on stderr:\n{stderr}");
        assert!(!stub.requests()[0].text().contains(leak), "{leak} sent");
        for p in patch_files(&r) {
            assert!(!std::fs::read_to_string(&p).expect("patch").contains(leak));
        }
    }
}

/// A model that answers with the prompt's own workflow, one string replaced.
fn editing_model(from: &'static str, to: &'static str) -> Stub {
    Stub::start(move |req: &Request, _| {
        if let Some(err) = anthropic_check(req) {
            return err;
        }
        let prompt = user_prompt(req);
        let start = prompt.find("```json\n").map(|i| i + 8).unwrap_or(0);
        let end = prompt[start..]
            .find("\n```")
            .map(|i| start + i)
            .unwrap_or(start);
        let workflow = prompt[start..end].replace(from, to);
        let text = format!("Explanation: {from} is {to}\n```json\n{workflow}\n```");
        Reply::json(200, &anthropic_message("claude-haiku-4-5", &text))
    })
}

#[test]
fn a_huge_literal_stays_within_the_budget_and_the_36th_field_is_shown() {
    let mut fields = serde_json::Map::new();
    for i in 0..40 {
        let name = if i == 35 {
            "user_name".to_string()
        } else {
            format!("field_{i:02}")
        };
        fields.insert(name, json!(i));
    }
    let get = format!("echo '{}'", Value::Object(fields));
    let doc = json!({"nodes": [
        {"id": "blob", "type": "echo", "params": {"message": "x".repeat(300_000)}},
        {"id": "get", "type": "shell", "params": {"command": get}},
        {"id": "show", "type": "shell", "params": {"command": "echo ${get.stdout.username}"}}],
        "outputs": {"o": {"source": "${show.stdout}"}}});
    let stub = editing_model("get.stdout.username", "get.stdout.user_name");
    let r = Repair::new().model(&stub);
    r.write(&doc);
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["o"], "35");
    let prompt = user_prompt(&stub.single());
    assert!(prompt.len() < 100_000, "prompt of {} bytes", prompt.len());
    assert!(
        prompt.contains("- user_name: 35"),
        "{}",
        &prompt[prompt.len().saturating_sub(3000)..]
    );
    // The most similar field comes first.
    let first_field = prompt
        .split("most similar first):\n")
        .nth(1)
        .and_then(|s| s.lines().next())
        .unwrap_or("");
    assert!(first_field.contains("user_name"), "{first_field}");
    assert!(prompt.contains("<cut:1 xxxx"), "the cut is marked");
    // The literal came back whole: the build with it reused the blob node.
    assert_eq!(run.node("blob")["status"], "cached", "{run}");
}

#[test]
fn a_three_thousand_node_workflow_stays_within_the_budget_and_repairs() {
    let mut nodes: Vec<Value> = (0..3_000)
        .map(|i| json!({"id": format!("n{i}"), "type": "echo", "params": {"message": format!("{{\"value\": {i}}}")}}))
        .collect();
    nodes.push(
        json!({"id": "show", "type": "shell", "params": {"command": "echo ${n7.echo.valu}"}}),
    );
    let doc = json!({"nodes": nodes, "outputs": {"o": {"source": "${show.stdout}"}}});
    let stub = editing_model("n7.echo.valu}", "n7.echo.value}");
    let r = Repair::new().model(&stub);
    r.write(&doc);
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["o"], "7");
    assert_eq!(run.json["stats"]["total"], 3_001);
    let prompt = user_prompt(&stub.single());
    assert!(prompt.len() < 100_000, "prompt of {} bytes", prompt.len());
    assert!(
        prompt.contains("far from the failure are left out"),
        "the cut is marked"
    );
}

#[test]
fn json_lists_every_attempt_and_stats_cover_the_whole_command() {
    let invalid: Value = serde_json::from_str(
        &user_workflow("name")
            .to_string()
            .replace("get.stdout.user.name", "got.stdout.user.name"),
    )
    .expect("json");
    let stub = model(vec![
        fenced(&invalid),
        explained("the field is called name", &user_workflow("name")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let trace = r.path().join("trace.json");
    let run = r.build(&["--trace", trace.to_str().expect("utf8")]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["repaired"], true);
    let repair = run.repair();
    let patch = repair["patches"][0].as_str().expect("patch");
    assert_eq!(
        repair["apply"].as_str().unwrap_or(""),
        format!("pflow repair apply {patch} workflow.json")
    );
    assert_eq!(repair["original_errors"][0]["node"], "show");
    assert!(repair["original_errors"][0]["message"]
        .as_str()
        .unwrap_or("")
        .contains("fullname"));
    let history = repair["history"].as_array().expect("history");
    assert_eq!(history.len(), 2);
    for a in history {
        assert_eq!(a["model"], "anthropic/claude-haiku-4-5");
    }
    assert!(history[0]["rejected"][0]
        .as_str()
        .unwrap_or("")
        .contains("'got' is not a workflow input or a node id"));
    assert_eq!(history[1]["explanation"], "the field is called name");
    let diff = history[1]["diff"].as_str().unwrap_or("");
    assert!(diff.contains("+") && diff.contains("user.name}"), "{diff}");
    assert_eq!(history[1]["result"], "succeeded");
    // get ran in the first build, show in the second: both ran in this command.
    assert_eq!(run.json["stats"]["ran"], 2, "{run}");
    assert_eq!(run.json["stats"]["cached"], 0, "{run}");
    let t: Value = serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
    assert_eq!(t["builds"], 2);
    assert_eq!(t["stats"]["ran"], 2);
    assert!(t["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .any(|n| n["id"] == "show" && n["build"] == 1 && n["status"] == "failed"));
}

#[test]
fn text_output_shows_each_attempt_and_says_loudly_that_the_file_is_broken() {
    let invalid: Value = serde_json::from_str(
        &user_workflow("name")
            .to_string()
            .replace("get.stdout.user.name", "got.stdout.user.name"),
    )
    .expect("json");
    let stub = model(vec![
        fenced(&invalid),
        explained("the field is called name", &user_workflow("name")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let out = r.command("workflow.json").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("asking anthropic/claude-haiku-4-5"),
        "{stderr}"
    );
    assert!(stderr.contains("rejected: nodes[1]"), "{stderr}");
    assert!(stderr.contains("'got' is not a workflow input"), "{stderr}");
    assert!(
        stderr.contains("says: the field is called name"),
        "{stderr}"
    );
    assert!(
        stderr.contains("REPAIRED:") && stderr.contains("still broken"),
        "{stderr}"
    );
    assert!(stderr.contains("pflow repair apply "), "{stderr}");
    assert!(stderr.contains("notice (shown once)"), "{stderr}");
    // The notice is shown once per machine.
    let again = r.command("workflow.json").arg("--force").output();
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!stderr.contains("notice (shown once)"), "{stderr}");
}

#[test]
fn pflow_repair_off_and_replay_make_no_model_call() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let off = r
        .command("workflow.json")
        .env("PFLOW_REPAIR", "off")
        .output();
    assert_eq!(off.status.code(), Some(1));
    let replay = r
        .command("workflow.json")
        .env("PFLOW_REPAIR", "replay")
        .output();
    assert_eq!(replay.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&replay.stderr).contains("PFLOW_REPAIR=replay"));
    assert_eq!(stub.count(), 0);
    let bad = r
        .command("workflow.json")
        .env("PFLOW_REPAIR", "maybe")
        .output();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("PFLOW_REPAIR must be off, replay or on"));
    assert_eq!(stub.count(), 0);

    // Once a patch is proven, replay mode uses it without a model.
    let on = r.build(&[]);
    assert_eq!(on.code, 0, "{on}");
    let replayed = r
        .command("workflow.json")
        .env("PFLOW_REPAIR", "replay")
        .output();
    assert_eq!(replayed.status.code(), Some(0));
    assert_eq!(stub.count(), 1);
}

#[test]
fn without_a_key_repair_is_skipped_in_one_line_and_the_original_error_stands() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub).without_api_key();
    r.write(&user_workflow("fullname"));
    let out = r.command("workflow.json").output();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let repair_lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("repair:"))
        .collect();
    assert_eq!(repair_lines.len(), 1, "{stderr}");
    assert!(
        repair_lines[0].contains("skipped") && repair_lines[0].contains("ANTHROPIC_API_KEY"),
        "{stderr}"
    );
    assert!(stderr.contains("fullname"), "the original error: {stderr}");
    assert!(!stderr.contains("error [missing_api_key]"), "{stderr}");
    assert_eq!(stub.count(), 0);
}

#[test]
fn strict_makes_a_repaired_build_exit_1() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&["--strict"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(run.json["success"], true);
    assert_eq!(run.json["repaired"], true);
    // A build that needs no repair is not affected.
    r.write(&user_workflow("name"));
    let clean = r.build(&["--strict"]);
    assert_eq!(clean.code, 0, "{clean}");
    assert_eq!(clean.json["repaired"], false);
}

#[test]
fn apply_repairs_changes_only_the_repaired_value_in_a_hand_formatted_file() {
    let hand = "{\n  \"ir_version\": \"0.1.0\",\n  \"nodes\": [\n    {\"id\": \"get\", \"type\": \"shell\",\n     \"params\": {\"command\": \"echo run >> get.count; echo '{\\\"user\\\": {\\\"name\\\": \\\"Ada\\\", \\\"id\\\": 7}}'\"}},\n\n    {\"id\": \"show\",   \"type\": \"shell\", \"params\": {\"command\": \"echo Hello ${get.stdout.user.fullname}\"}}\n  ],\n  \"outputs\": {\"greeting\": {\"source\": \"${show.stdout}\", \"description\": \"the greeting\"}}\n}\n";
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    let file = r.path().join("workflow.json");
    std::fs::write(&file, hand).expect("write");
    let run = r.build(&["--apply-repairs"]);
    assert_eq!(run.code, 0, "{run}");
    let after = std::fs::read_to_string(&file).expect("read");
    assert_eq!(after, hand.replace("user.fullname}", "user.name}"));

    // `repair apply` of the same patch now says it is already applied.
    let patch = run.repair()["patches"][0]
        .as_str()
        .expect("patch")
        .to_string();
    let again = r
        .pflow()
        .args([
            "repair",
            "apply",
            &patch,
            file.to_str().expect("utf8"),
            "--cache-dir",
        ])
        .arg(&r.cache)
        .output();
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already applied"));
    assert_eq!(std::fs::read_to_string(&file).expect("read"), after);
}

/// `run` nests a workflow whose `get` has a side effect (it counts its runs) and reads the
/// input `word`; the parent's `show` reads a field of its output.
fn nested_user_workflow(field: &str, word: &str) -> Value {
    json!({
        "ir_version": "0.1.0",
        "nodes": [
            {"id": "run", "type": "workflow", "params": {
                "workflow_ir": {
                    "inputs": {"word": {"type": "string"}},
                    "outputs": {"out": {"source": "${get.stdout}"}},
                    "nodes": [{"id": "get", "type": "shell", "params": {"command":
                        "echo run >> get.count; echo ${word} > /dev/null; echo '{\"user\": {\"name\": \"Ada\"}}'"}}]
                },
                "param_mapping": {"word": word}}},
            {"id": "show", "type": "shell",
             "params": {"command": format!("echo Hello ${{run.out.user.{field}}}")}}
        ],
        "outputs": {"greeting": {"source": "${show.stdout}", "description": "the greeting"}}
    })
}

#[test]
fn a_reply_that_would_rerun_a_nested_node_with_a_side_effect_is_rejected() {
    let stub = model(vec![
        fenced(&nested_user_workflow("name", "changed")),
        fenced(&nested_user_workflow("name", "hi")),
    ]);
    let r = Repair::new().model(&stub);
    r.write(&nested_user_workflow("fullname", "hi"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["greeting"], "Hello Ada");
    assert_eq!(stub.count(), 2);
    assert_eq!(r.lines("get.count"), 1, "the nested side effect ran again");
    let second = user_prompt(&stub.requests()[1]);
    assert!(
        second.contains("node 'run/get' (shell) already succeeded and running it again would repeat its side effect"),
        "{second}"
    );
}

/// The model sees no secret: not a short one an input declared secret holds (a PIN is
/// its placeholder in the list of input values, however short), not one that went into
/// a URL an error names (percent-encoded there).
#[test]
fn a_short_secret_input_and_a_secret_in_a_url_reach_the_model_as_placeholders() {
    let server = Stub::start(|_, _| Reply::json(404, &json!({"error": "no such thing"})));
    let doc = |path: &str| {
        json!({
            "inputs": {"pin": {"type": "string", "secret": true},
                       "api_token": {"type": "string"}},
            "nodes": [{"id": "call", "type": "http",
                       "params": {"url": format!("{}/{path}/${{api_token}}", server.url())}}]})
    };
    let stub = model(vec![fenced(&doc("v2"))]);
    let r = Repair::new().model(&stub);
    r.write(&doc("v1"));
    let run = r.build(&["pin=739", "api_token=correct horse battery staple"]);
    assert_eq!(run.code, 1, "the fix fails too: {run}");
    assert!(stub.count() >= 1, "{run}");
    let prompt = user_prompt(&stub.requests()[0]);
    assert!(prompt.contains("/v1/"), "the error names the URL: {prompt}");
    assert!(prompt.contains("- pin = <secret:pin>"), "{prompt}");
    for shown in ["739", "correct horse", "correct%20horse"] {
        assert!(
            !prompt.contains(&format!("= \"{shown}")),
            "{shown}: {prompt}"
        );
        assert!(!prompt.contains(&format!("/{shown}")), "{shown}: {prompt}");
    }
    assert!(!prompt.contains("correct%20horse"), "{prompt}");
}
