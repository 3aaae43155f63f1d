//! Saved workflows: `pflow workflow save|list|show|delete`, `pflow build NAME`, and the
//! run metadata kept in `$PFLOW_HOME/workflows/<name>.json`.

use crate::common::Pflow;
use serde_json::{json, Value};
use std::path::PathBuf;
use std::process::Output;

/// A temporary PFLOW_HOME and working directory.
struct Home {
    dir: tempfile::TempDir,
}

impl Home {
    fn new() -> Home {
        Home {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    fn home(&self) -> PathBuf {
        self.dir.path().join("pflow-home")
    }

    fn saved(&self, name: &str) -> PathBuf {
        self.home().join("workflows").join(format!("{name}.json"))
    }

    fn saved_doc(&self, name: &str) -> Value {
        let bytes = std::fs::read(self.saved(name)).expect("saved file");
        serde_json::from_slice(&bytes).expect("saved file is JSON")
    }

    fn write(&self, file: &str, doc: &Value) -> PathBuf {
        let p = self.dir.path().join(file);
        std::fs::write(&p, serde_json::to_string_pretty(doc).expect("encode")).expect("write");
        p
    }

    /// `pflow ARGS` in the working directory, with PFLOW_HOME and a cache.
    fn command(&self, args: &[&str]) -> Pflow {
        Pflow::new()
            .current_dir(self.dir.path())
            .args(args)
            .env("PFLOW_HOME", self.home())
            .env("PFLOW_CACHE_DIR", self.dir.path().join("cache"))
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output()
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn greeter() -> Value {
    json!({
        "ir_version": "0.1.0",
        "inputs": {
            "name": {"type": "string", "description": "who to greet"},
            "api_token": {"type": "string", "required": false, "default": "none"}
        },
        "nodes": [{"id": "greet", "type": "shell", "params": {"command": "echo Hello, ${name} ${api_token}"}}],
        "outputs": {"message": {"source": "${greet.stdout}"}}
    })
}

#[test]
fn save_list_show_build_by_name_and_delete() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    let save = h.run(&[
        "workflow",
        "save",
        "greet.json",
        "say-hello",
        "--description",
        "Greets someone",
    ]);
    assert!(save.status.success(), "{}", text(&save));
    let doc = h.saved_doc("say-hello");
    assert_eq!(doc["name"], "say-hello");
    assert_eq!(doc["description"], "Greets someone");
    assert_eq!(doc["ir"]["nodes"][0]["id"], "greet");
    assert!(doc["created_at"].is_string() && doc["updated_at"].is_string());
    assert_eq!(doc["rich_metadata"]["execution_count"], 0);

    let list = h.run(&["workflow", "list", "--output-format", "json"]);
    let items: Value = serde_json::from_slice(&list.stdout).expect("list json");
    assert_eq!(items[0]["name"], "say-hello");
    assert_eq!(items[0]["description"], "Greets someone");

    let show = h.run(&["workflow", "show", "say-hello"]);
    let shown: Value = serde_json::from_slice(&show.stdout).expect("show json");
    assert_eq!(shown["ir"], doc["ir"]);

    // Build by name from another directory: the name, not a file, is resolved.
    let elsewhere = h.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    let build = h
        .command(&["build", "say-hello", "name=Ada"])
        .current_dir(&elsewhere)
        .output();
    assert!(build.status.success(), "{}", text(&build));
    assert_eq!(
        String::from_utf8_lossy(&build.stdout).trim(),
        // The token's value (its default) is a secret: shown redacted.
        "Hello, Ada <redacted>"
    );
    let meta = &h.saved_doc("say-hello")["rich_metadata"];
    assert_eq!(meta["execution_count"], 1);
    assert_eq!(meta["last_execution_success"], true);
    assert_eq!(meta["last_execution_params"], json!({"name": "Ada"}));
    assert!(meta["last_execution_timestamp"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert!(meta["last_execution_duration_ms"].is_u64());

    let del = h.run(&["workflow", "delete", "say-hello"]);
    assert!(del.status.success(), "{}", text(&del));
    assert!(!h.saved("say-hello").exists());
    let gone = h.run(&["build", "say-hello", "name=Ada"]);
    assert_eq!(gone.status.code(), Some(2), "{}", text(&gone));
}

#[test]
fn a_failed_run_is_recorded_too() {
    let h = Home::new();
    h.write(
        "fail.json",
        &json!({"nodes": [{"id": "x", "type": "shell", "params": {"command": "exit 3"}}]}),
    );
    assert!(h
        .run(&["workflow", "save", "fail.json", "always-fails"])
        .status
        .success());
    let run = h.run(&["build", "always-fails", "--no-repair"]);
    assert_eq!(run.status.code(), Some(1));
    let meta = &h.saved_doc("always-fails")["rich_metadata"];
    assert_eq!(meta["execution_count"], 1);
    assert_eq!(meta["last_execution_success"], false);

    // The file is anyone's to edit: a count at the top of a u64 stays there (it wrapped
    // to 0, or panicked in a debug build).
    let path = h.saved("always-fails");
    let mut doc = h.saved_doc("always-fails");
    doc["rich_metadata"]["execution_count"] = json!(u64::MAX);
    std::fs::write(&path, doc.to_string()).unwrap();
    let run = h.run(&["build", "always-fails", "--no-repair"]);
    assert_eq!(run.status.code(), Some(1));
    let meta = &h.saved_doc("always-fails")["rich_metadata"];
    assert_eq!(meta["execution_count"], json!(u64::MAX));
}

#[test]
fn unknown_name_exits_2_with_the_closest_saved_names() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    let out = h.run(&["build", "say-helo", "name=x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("say-hello"), "{}", text(&out));
}

#[test]
fn bad_names_are_rejected_with_the_rule() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    for bad in ["Say_Hello", "x-", "a--b", &"a".repeat(51)] {
        let out = h.run(&["workflow", "save", "greet.json", bad]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            text(&out).contains("lowercase letters, digits and single hyphens"),
            "{}",
            text(&out)
        );
    }
    assert!(
        !h.home().join("workflows").exists()
            || std::fs::read_dir(h.home().join("workflows"))
                .map(|d| d.count())
                .unwrap_or(0)
                == 0
    );
}

#[test]
fn invalid_workflows_are_not_saved() {
    let h = Home::new();
    h.write("bad.json", &json!({"nodes": [{"id": "x", "type": "nope"}]}));
    let out = h.run(&["workflow", "save", "bad.json", "bad"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).contains("unknown node type 'nope'"));
    assert!(!h.saved("bad").exists());
}

#[test]
fn saving_over_an_existing_name_needs_force() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    let before = std::fs::read(h.saved("say-hello")).expect("read");

    let mut other = greeter();
    other["nodes"][0]["params"]["command"] = json!("echo Bye, ${name} ${api_token}");
    h.write("other.json", &other);
    let refused = h.run(&["workflow", "save", "other.json", "say-hello"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).contains("--force"), "{}", text(&refused));
    assert_eq!(std::fs::read(h.saved("say-hello")).expect("read"), before);

    let forced = h.run(&["workflow", "save", "other.json", "say-hello", "--force"]);
    assert!(forced.status.success(), "{}", text(&forced));
    assert!(
        h.saved_doc("say-hello")["ir"]["nodes"][0]["params"]["command"]
            .as_str()
            .is_some_and(|c| c.contains("Bye"))
    );
}

#[test]
fn secret_looking_params_never_reach_the_saved_file() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    let out = h.run(&[
        "build",
        "say-hello",
        "name=Ada",
        "api_token=tok-very-secret-9",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let raw = std::fs::read_to_string(h.saved("say-hello")).expect("read");
    assert!(!raw.contains("tok-very-secret-9"), "{raw}");
    let meta = &h.saved_doc("say-hello")["rich_metadata"];
    assert_eq!(meta["last_execution_params"]["api_token"], "<redacted>");
    assert_eq!(meta["last_execution_params"]["name"], "Ada");
}

/// Redacted by value too: a secret that arrives in an ordinary param (here pflow's own
/// API key, pasted into `name`) is scrubbed, and an input declared `"secret": true` is
/// redacted whatever it is named.
#[test]
fn secret_values_never_reach_the_saved_file_in_any_param() {
    let h = Home::new();
    let mut doc = greeter();
    doc["inputs"]["pin"] = json!({"type": "string", "required": false, "secret": true});
    h.write("greet.json", &doc);
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    let out = h
        .command(&[
            "build",
            "say-hello",
            "name=Ada sk-SECRET456",
            "pin=4711-2-9",
        ])
        .env("ANTHROPIC_API_KEY", "sk-SECRET456")
        .output();
    assert!(out.status.success(), "{}", text(&out));
    let raw = std::fs::read_to_string(h.saved("say-hello")).expect("read");
    assert!(
        !raw.contains("sk-SECRET456") && !raw.contains("4711-2-9"),
        "{raw}"
    );
    let meta = &h.saved_doc("say-hello")["rich_metadata"];
    assert_eq!(meta["last_execution_params"]["name"], "Ada <redacted>");
    assert_eq!(meta["last_execution_params"]["pin"], "<redacted>");
}

#[test]
fn six_concurrent_builds_count_six_runs() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    let children: Vec<_> = (0..6)
        .map(|i| {
            h.command(&["build", "say-hello", &format!("name=n{i}")])
                .spawn()
        })
        .collect();
    for c in children {
        let out = c.wait();
        assert!(out.status.success(), "{}", text(&out));
    }
    let doc = h.saved_doc("say-hello");
    assert_eq!(doc["rich_metadata"]["execution_count"], 6, "{doc}");
    // No temp files left beside it.
    let leftovers: Vec<_> = std::fs::read_dir(h.home().join("workflows"))
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".pflow-tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_directory_does_not_hide_a_saved_workflow_of_the_same_name() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    std::fs::create_dir_all(h.dir.path().join("say-hello")).expect("mkdir");
    let out = h.run(&["build", "say-hello", "name=Ada"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        // The token's value (its default) is a secret: shown redacted.
        "Hello, Ada <redacted>"
    );
}

#[test]
fn an_unknown_saved_name_suggests_the_closest() {
    let h = Home::new();
    h.write("greet.json", &greeter());
    assert!(h
        .run(&["workflow", "save", "greet.json", "say-hello"])
        .status
        .success());
    for args in [
        ["workflow", "show", "say-helo"],
        ["workflow", "delete", "say-helo"],
    ] {
        let out = h.run(&args);
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("no saved workflow named 'say-helo' (did you mean 'say-hello'?)"),
            "{err}"
        );
    }
}
