//! Auto-repair, end to end: the real binary, a real cache directory, and a loopback
//! server speaking the Anthropic Messages API whose replies each test scripts.

use crate::common::Pflow;
use crate::stub;

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use stub::{
    anthropic_check, anthropic_error, anthropic_message, user_prompt, Reply, Request, Stub,
};

/// A workspace for repair runs: a temp dir, its own cache dir, and a model server.
pub(crate) struct Repair {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) cache: PathBuf,
    model_url: Option<String>,
    api_key: Option<String>,
}

/// One `pflow build` run with repair on.
pub(crate) struct Run {
    pub(crate) code: i32,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) json: Value,
}

impl Run {
    pub(crate) fn repair(&self) -> &Value {
        &self.json["repair"]
    }
    pub(crate) fn llm_calls(&self) -> u64 {
        self.repair()["llm_calls"].as_u64().unwrap_or(0)
    }
    pub(crate) fn node(&self, id: &str) -> &Value {
        self.json["nodes"]
            .as_array()
            .and_then(|a| a.iter().find(|n| n["id"] == id))
            .unwrap_or(&Value::Null)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Repair {
    pub(crate) fn new() -> Repair {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = dir.path().join("cache");
        Repair {
            dir,
            cache,
            model_url: None,
            api_key: Some("sk-ant-test-0123456789".into()),
        }
    }

    pub(crate) fn model(mut self, stub: &Stub) -> Repair {
        self.model_url = Some(stub.url());
        self
    }

    pub(crate) fn without_api_key(mut self) -> Repair {
        self.api_key = None;
        self
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn write(&self, doc: &Value) -> PathBuf {
        let p = self.path().join("workflow.json");
        std::fs::write(&p, serde_json::to_string_pretty(doc).expect("encode")).expect("write");
        p
    }

    pub(crate) fn build(&self, extra: &[&str]) -> Run {
        self.build_target("workflow.json", extra)
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.path().join("home")
    }

    /// `pflow ARGS` in this workspace, with its home (`HOME` and `PFLOW_HOME`).
    pub(crate) fn pflow(&self) -> Pflow {
        Pflow::new()
            .current_dir(self.path())
            .home(self.home())
            .env("PFLOW_HOME", self.home())
    }

    /// `pflow build TARGET` with this workspace's cache, model server and key.
    pub(crate) fn command(&self, target: &str) -> Pflow {
        let mut c = self
            .pflow()
            .args(["build", target, "--cache-dir"])
            .arg(&self.cache)
            .env("PFLOW_LLM_TIMEOUT_SECS", "10");
        if let Some(url) = &self.model_url {
            c = c.env("ANTHROPIC_BASE_URL", url);
        }
        if let Some(key) = &self.api_key {
            c = c.env("ANTHROPIC_API_KEY", key);
        }
        c
    }

    pub(crate) fn build_target(&self, target: &str, extra: &[&str]) -> Run {
        let out = self
            .command(target)
            .args(["--output-format", "json"])
            .args(extra)
            .output();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let json = serde_json::from_str(&stdout).unwrap_or_else(|e| {
            panic!("stdout is not one JSON document ({e}):\n{stdout}\n{stderr}")
        });
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout,
            stderr,
            json,
        }
    }

    pub(crate) fn lines(&self, file: &str) -> usize {
        std::fs::read_to_string(self.path().join(file))
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }
}

/// A model server that answers the n-th repair request with `replies[n]` (the last one
/// repeats), after checking each request the way the real API does.
pub(crate) fn model(replies: Vec<String>) -> Stub {
    Stub::start(move |req: &Request, n| {
        if let Some(err) = anthropic_check(req) {
            return err;
        }
        let text = replies
            .get(n)
            .or(replies.last())
            .cloned()
            .unwrap_or_default();
        Reply::json(200, &anthropic_message("claude-haiku-4-5", &text))
    })
}

pub(crate) fn fenced(doc: &Value) -> String {
    format!(
        "Here is the corrected workflow:\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(doc).expect("encode")
    )
}

/// `get` prints JSON about a user and counts its runs; `show` reads a field of it.
pub(crate) fn user_workflow(field: &str) -> Value {
    json!({
        "ir_version": "0.1.0",
        "nodes": [
            {"id": "get", "type": "shell", "params": {
                "command": "echo run >> get.count; echo '{\"user\": {\"name\": \"Ada\", \"id\": 7}}'"}},
            {"id": "show", "type": "shell", "params": {"command": format!("echo Hello ${{get.stdout.user.{field}}}")}}
        ],
        "outputs": {"greeting": {"source": "${show.stdout}", "description": "the greeting"}}
    })
}

#[test]
fn wrong_template_field_is_repaired_in_one_call_without_rerunning_upstream() {
    let broken = user_workflow("fullname");
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    let file = r.write(&broken);
    let before = std::fs::read(&file).expect("read workflow");

    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["greeting"], "Hello Ada");
    assert_eq!(run.llm_calls(), 1, "{run}");
    assert_eq!(run.repair()["succeeded"], true);

    // The prompt named the fields that do exist where the template stopped resolving.
    let prompt = user_prompt(&stub.single());
    assert!(prompt.contains("fullname"), "{prompt}");
    assert!(
        prompt.contains("- name:"),
        "existing fields missing from the prompt:\n{prompt}"
    );
    assert!(prompt.contains("- id:"), "{prompt}");

    // The upstream node's body ran exactly once over the whole command.
    assert_eq!(r.lines("get.count"), 1);
    assert_eq!(run.node("get")["executions"], 1, "{run}");

    // The patch file exists and holds an RFC 6902 patch; the workflow file is untouched.
    let patch = PathBuf::from(run.repair()["patches"][0].as_str().expect("a patch path"));
    assert!(
        patch.starts_with(r.cache.join("repairs")),
        "{}",
        patch.display()
    );
    let record: Value =
        serde_json::from_slice(&std::fs::read(&patch).expect("patch file")).expect("json");
    let ops = record["patch"].as_array().expect("patch ops");
    assert!(
        ops.iter().any(|op| op["op"] == "replace"
            && op["value"]
                .as_str()
                .is_some_and(|v| v.contains("user.name"))),
        "{record}"
    );
    assert_eq!(record["model"], "anthropic/claude-haiku-4-5");
    assert_eq!(std::fs::read(&file).expect("read workflow"), before);
    // The diff was shown.
    let text_run = r.build(&["--force"]);
    assert_eq!(text_run.code, 0, "{text_run}");
}

#[test]
fn shell_syntax_error_is_repaired_with_stderr_in_the_prompt() {
    let doc = |command: &str| {
        json!({"nodes": [{"id": "count", "type": "shell", "params": {"command": command}}],
               "outputs": {"n": {"source": "${count.stdout}"}}})
    };
    let stub = model(vec![fenced(&doc("echo 3"))]);
    let r = Repair::new().model(&stub);
    r.write(&doc("if then echo 3; fi"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.json["outputs"]["n"], "3");
    let prompt = user_prompt(&stub.single());
    assert!(
        prompt.to_lowercase().contains("syntax error"),
        "stderr not in prompt:\n{prompt}"
    );
    assert!(prompt.contains("exit code: 2"), "{prompt}");
}

#[test]
fn an_invalid_reply_is_followed_by_a_call_with_the_validation_errors() {
    let invalid = user_workflow("name")
        .to_string()
        .replace("get.stdout.user.name", "got.stdout.user.name");
    let invalid: Value = serde_json::from_str(&invalid).expect("json");
    let stub = model(vec![fenced(&invalid), fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.llm_calls(), 2);
    let reqs = stub.requests();
    let second = user_prompt(&reqs[1]);
    assert!(second.contains("rejected"), "{second}");
    assert!(
        second.contains("'got' is not a workflow input or a node id"),
        "{second}"
    );
    assert!(!user_prompt(&reqs[0]).contains("rejected"));
}

#[test]
fn a_reply_that_drops_a_declared_output_is_rejected() {
    let mut dropped = user_workflow("name");
    dropped["outputs"] = json!({});
    let stub = model(vec![fenced(&dropped), fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    assert_eq!(run.llm_calls(), 2);
    let second = user_prompt(&stub.requests()[1]);
    assert!(
        second.contains("outputs: the declared outputs must keep their names"),
        "{second}"
    );
    assert_eq!(run.json["outputs"]["greeting"], "Hello Ada");
}

#[test]
fn replies_without_json_stop_after_three_calls() {
    let stub = model(vec!["I am not sure how to fix this, sorry.".into()]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(stub.count(), 3);
    assert_eq!(run.llm_calls(), 3);
    let why = run.repair()["stopped"].as_str().unwrap_or("");
    assert!(why.contains("no JSON workflow"), "{run}");
}

#[test]
fn a_reply_identical_to_the_broken_workflow_stops_quickly() {
    let broken = user_workflow("fullname");
    let stub = model(vec![fenced(&broken)]);
    let r = Repair::new().model(&stub);
    r.write(&broken);
    let run = r.build(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert!(stub.count() <= 2, "{} calls", stub.count());
    assert!(
        run.repair()["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("unchanged"),
        "{run}"
    );
}

#[test]
fn a_fix_that_fails_the_same_way_stops_for_lack_of_progress() {
    // The "fix" changes the command but the same node fails with the same error.
    let mut other = user_workflow("fullname");
    other["nodes"][1]["params"]["command"] = json!("echo Hi ${get.stdout.user.fullname}");
    let stub = model(vec![fenced(&other)]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(stub.count(), 1);
    assert!(
        run.repair()["stopped"]
            .as_str()
            .unwrap_or("")
            .contains("no progress"),
        "{run}"
    );
}

#[test]
fn http_401_from_a_node_is_not_repaired() {
    let api = Stub::start(|_: &Request, _| {
        anthropic_error(401, "authentication_error", "invalid x-api-key")
    });
    let llm = model(vec!["unused".into()]);
    let r = Repair::new().model(&llm);
    r.write(&json!({"nodes": [{"id": "fetch", "type": "http", "params": {"url": format!("{}/data", api.url())}}]}));
    let run = r.build(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(llm.count(), 0, "the model must not be called");
    assert_eq!(run.json["errors"][0]["category"], "auth");
    assert_eq!(run.json["errors"][0]["repairable"], false);
    let why = run.repair()["stopped"].as_str().unwrap_or("");
    assert!(
        why.contains("repair not tried") && why.contains("auth"),
        "{run}"
    );
    assert_eq!(run.llm_calls(), 0);
}

#[test]
fn missing_api_key_makes_no_call_and_says_why() {
    let llm = model(vec!["unused".into()]);
    let r = Repair::new().model(&llm).without_api_key();
    r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(llm.count(), 0);
    assert_eq!(run.llm_calls(), 0);
    let why = run.repair()["stopped"].as_str().unwrap_or("");
    assert!(why.contains("ANTHROPIC_API_KEY"), "{run}");
}

#[test]
fn the_same_broken_workflow_replays_its_patch_without_a_model() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let first = r.build(&[]);
    assert_eq!(first.code, 0, "{first}");
    assert_eq!(stub.count(), 1);

    let again = r.build(&[]);
    assert_eq!(again.code, 0, "{again}");
    assert_eq!(stub.count(), 1, "the replay must not call the model");
    assert_eq!(again.llm_calls(), 0);
    assert_eq!(again.repair()["attempts"], 1);
    assert_eq!(again.json["outputs"]["greeting"], "Hello Ada");
    // Nothing that already succeeded ran again.
    assert_eq!(r.lines("get.count"), 1);
}

#[test]
fn no_repair_makes_no_call() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let run = r.build(&["--no-repair"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(stub.count(), 0);
    assert!(run.repair().is_null());
    assert_eq!(run.json["errors"][0]["category"], "template");
}

#[test]
fn apply_repairs_writes_a_valid_repaired_workflow() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    let file = r.write(&user_workflow("fullname"));
    let run = r.build(&["--apply-repairs"]);
    assert_eq!(run.code, 0, "{run}");
    let text = std::fs::read_to_string(&file).expect("read");
    assert!(
        text.contains("get.stdout.user.name}") && !text.contains("fullname"),
        "{text}"
    );
    let status = r.pflow().arg("validate").arg(&file).output();
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    // The repaired file builds without any repair.
    let next = r.build(&["--no-repair"]);
    assert_eq!(next.code, 0, "{next}");
}

#[test]
fn secrets_never_reach_the_model() {
    let broken = json!({"nodes": [
        {"id": "get", "type": "shell", "params": {
            "command": "echo \"{\\\"token\\\": \\\"$TOKEN\\\"}\"; echo $TOKEN >&2",
            "env": {"TOKEN": "tok-super-secret-42"}}},
        {"id": "show", "type": "shell", "params": {"command": "echo ${get.stdout.nope}; exit 1"}}
    ]});
    let stub = model(vec!["no idea".into()]);
    let r = Repair::new().model(&stub);
    r.write(&broken);
    let run = r.build(&["--max-repair-attempts", "1"]);
    assert_eq!(run.code, 1, "{run}");
    assert_eq!(stub.count(), 1);
    let raw = stub.requests()[0].raw_text();
    assert!(
        !raw.contains("tok-super-secret-42"),
        "secret sent to the model:\n{raw}"
    );
    assert!(
        !stub.requests()[0].text().contains("sk-ant-test-0123456789"),
        "API key in the body"
    );
    assert!(
        !run.stdout.contains("tok-super-secret-42") && !run.stderr.contains("sk-ant-test"),
        "{run}"
    );
    assert!(user_prompt(&stub.requests()[0]).contains("<secret:TOKEN>"));
}

#[test]
fn declared_secret_variables_never_reach_the_model() {
    // The workflow holds only the variable's name; the value a command echoes is
    // scrubbed from what the model is shown.
    let broken = json!({"nodes": [
        {"id": "get", "type": "shell", "reads_env": ["DB_PASSWORD"],
         "params": {"command": "echo \"password is $DB_PASSWORD\" >&2; exit 3"}}
    ]});
    let stub = model(vec!["no idea".into()]);
    let r = Repair::new().model(&stub);
    r.write(&broken);
    let out = r
        .command("workflow.json")
        .args(["--max-repair-attempts", "1"])
        .env("DB_PASSWORD", "pw-super-secret-77")
        .output();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stub.count(), 1);
    let raw = stub.requests()[0].raw_text();
    assert!(
        raw.contains("password is"),
        "the stderr tail is shown:\n{raw}"
    );
    assert!(
        !raw.contains("pw-super-secret-77"),
        "secret sent to the model:\n{raw}"
    );
}

#[test]
fn repair_list_show_and_apply() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    let file = r.write(&user_workflow("fullname"));
    let run = r.build(&[]);
    assert_eq!(run.code, 0, "{run}");
    let patch = run.repair()["patches"][0]
        .as_str()
        .expect("patch")
        .to_string();

    let cli = |args: &[&str]| {
        r.pflow()
            .args(args)
            .arg("--cache-dir")
            .arg(&r.cache)
            .output()
    };
    let list = cli(&["repair", "list"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("show (template)"),
        "{list:?}"
    );
    let show = cli(&["repair", "show", &patch]);
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show prints the record");
    assert_eq!(shown["errors"][0]["node"], "show");

    // A patch for another version of the workflow is refused, and the file is unchanged.
    let other = r.path().join("other.json");
    std::fs::write(&other, user_workflow("id").to_string()).expect("write");
    let refused = cli(&["repair", "apply", &patch, other.to_str().expect("utf8")]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("different version"));
    assert_eq!(
        std::fs::read_to_string(&other).expect("read"),
        user_workflow("id").to_string()
    );

    let applied = cli(&["repair", "apply", &patch, file.to_str().expect("utf8")]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert!(std::fs::read_to_string(&file)
        .expect("read")
        .contains("get.stdout.user.name}"));
}

#[test]
fn apply_repairs_updates_a_saved_workflow() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let save = r
        .pflow()
        .args(["workflow", "save", "workflow.json", "greeter"])
        .output();
    assert!(
        save.status.success(),
        "{}",
        String::from_utf8_lossy(&save.stderr)
    );
    let run = r.build_target("greeter", &["--apply-repairs"]);
    assert_eq!(run.code, 0, "{run}");
    let saved: Value = serde_json::from_slice(
        &std::fs::read(r.path().join("home/workflows/greeter.json")).expect("saved file"),
    )
    .expect("json");
    let command = saved["ir"]["nodes"][1]["params"]["command"]
        .as_str()
        .unwrap_or("");
    assert!(command.contains("user.name}"), "{saved}");
    assert_eq!(saved["name"], "greeter");
    assert_eq!(saved["rich_metadata"]["execution_count"], 1);
    assert_eq!(saved["rich_metadata"]["last_execution_success"], true);
}

#[test]
fn text_output_shows_the_diff_and_where_the_patch_is() {
    let stub = model(vec![fenced(&user_workflow("name"))]);
    let r = Repair::new().model(&stub);
    r.write(&user_workflow("fullname"));
    let out = r.command("workflow.json").output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("-        \"command\": \"echo Hello ${get.stdout.user.fullname}\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("+        \"command\": \"echo Hello ${get.stdout.user.name}\""),
        "{stderr}"
    );
    // The folder also holds `locks/`: the patch is its one JSON file.
    let patch = std::fs::read_dir(r.cache.join("repairs"))
        .expect("repairs dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "json"))
        .expect("a patch file");
    assert!(stderr.contains("repair: fixed after 1 attempt"), "{stderr}");
    assert!(stderr.contains(&patch.display().to_string()), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "Hello Ada");
}
