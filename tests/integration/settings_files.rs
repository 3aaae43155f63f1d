//! Settings files: `pflow.toml` found upwards from where pflow runs, the user's
//! `config.toml`, and the precedence flag > environment > project > user > default,
//! shown by `pflow config`.

use crate::common::{counted, CacheArg, Workspace};
use serde_json::{json, Value};

fn workspace() -> Workspace {
    Workspace::new().workflow(json!({"nodes": [
        {"id": "a", "type": "shell", "params": {"command": counted("a", "echo hi")}}
    ]}))
}

fn user_file(ws: &Workspace, text: &str) {
    let dir = ws.home_dir().join(".config/pflow");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.toml"), text).unwrap();
}

fn config(ws: &Workspace) -> Value {
    let out = ws
        .pflow()
        .args(["config", "--output-format", "json"])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn setting<'v>(doc: &'v Value, key: &str) -> &'v Value {
    doc.as_array()
        .unwrap()
        .iter()
        .find(|s| s["key"] == key)
        .unwrap()
}

#[test]
fn the_project_file_sets_the_cache_dir_and_a_flag_overrides_it() {
    let ws = workspace();
    ws.write("pflow.toml", "cache_dir = \"shared/cache\"\n");
    let r = ws.cmd().cache_arg(CacheArg::Default).run();
    r.assert_ok();
    assert!(
        ws.file("shared/cache").is_dir(),
        "the project's cache dir was not used"
    );
    assert!(!ws.exists(".pflow-cache"));
    // From a subfolder, the same file is found, and with it the same cache.
    std::fs::create_dir_all(ws.file("sub")).unwrap();
    let out = ws
        .pflow()
        .current_dir(ws.file("sub"))
        .args(["config", "--output-format", "json"])
        .output();
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        setting(&doc, "cache_dir")["value"],
        ws.file("shared/cache").display().to_string()
    );
    let flag = ws.cmd().cache_arg(CacheArg::Flag).run();
    flag.assert_ok();
    assert_eq!(
        flag.status_of("a"),
        "ran",
        "--cache-dir must win over the file: {flag}"
    );
    let env = ws
        .cmd()
        .cache_arg(CacheArg::Default)
        .env("PFLOW_CACHE_DIR", ws.file("from-env"))
        .run();
    env.assert_ok();
    assert!(
        ws.file("from-env").is_dir(),
        "the environment must win over the file"
    );
}

#[test]
fn the_project_file_wins_over_the_user_file_and_config_says_where_each_came_from() {
    let ws = workspace();
    user_file(
        &ws,
        "jobs = 3\nllm_model = \"openai/from-user\"\nremote_cache_token = \"user-t0ken-secret\"\n",
    );
    ws.write("pflow.toml", "jobs = 2\n");
    let doc = config(&ws);
    assert_eq!(setting(&doc, "jobs")["value"], "2");
    assert!(setting(&doc, "jobs")["source"]
        .as_str()
        .unwrap()
        .ends_with("pflow.toml"));
    assert_eq!(setting(&doc, "llm_model")["value"], "openai/from-user");
    assert!(setting(&doc, "llm_model")["source"]
        .as_str()
        .unwrap()
        .ends_with("config.toml"));
    assert_eq!(setting(&doc, "remote_cache_token")["value"], "<redacted>");
    assert_eq!(setting(&doc, "cache_dir")["source"], "default");
    assert!(!doc.to_string().contains("user-t0ken-secret"));
}

#[test]
fn a_bad_settings_file_is_exit_2_naming_its_line_and_a_secret_in_the_project_file_is_refused() {
    let ws = workspace();
    // Exit 2, and the message ends with `said`.
    let refused = |settings: &str, said: &str| {
        ws.write("pflow.toml", settings);
        let r = ws.cmd().run();
        r.assert_code(2);
        let message = r.errors()[0]["message"].as_str().unwrap().to_string();
        assert!(message.ends_with(said), "{r}");
    };
    refused(
        "jobs = 2\ncache_dri = \"x\"\n",
        "pflow.toml:2: unknown setting 'cache_dri' (did you mean 'cache_dir'?)",
    );
    assert_eq!(ws.count("a"), 0);
    // TOML can spell a NUL, which no variable holds (setting it panicked).
    refused(
        "repair = \"on\\u0000\"\n",
        "pflow.toml:1: 'repair' must not hold a NUL character",
    );
    ws.write("pflow.toml", "remote_cache_token = \"t0k3n-in-git\"\n");
    let r = ws.cmd().text().run();
    r.assert_code(2);
    assert!(
        r.stderr.contains("is a secret") && !r.stderr.contains("t0k3n-in-git"),
        "{r}"
    );
}

/// A variable the user set wins over the files, also when its value is not UTF-8 (it
/// counted as unset, and the project file's value replaced it).
#[cfg(unix)]
#[test]
fn a_variable_not_in_utf8_still_wins_over_the_files() {
    use std::os::unix::ffi::OsStrExt;
    let ws = workspace();
    ws.write("pflow.toml", "cache_dir = \"from-the-file\"\n");
    let mine = ws
        .file("caches")
        .join(std::ffi::OsStr::from_bytes(b"c\xe4che"));
    let out = ws
        .pflow()
        .env("PFLOW_CACHE_DIR", &mine)
        .args(["build", "workflow.json", "--no-repair"])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !ws.file("from-the-file").exists(),
        "the file's value was used"
    );
    assert!(mine.is_dir(), "the variable's cache was not used");
}

#[test]
fn a_setting_without_an_env_twin_takes_effect_too() {
    // max_repair_attempts has a flag and a variable; a bad value in the file is caught
    // as the variable's.
    let ws = workspace();
    ws.write("pflow.toml", "max_repair_attempts = 2\njobs = 1\n");
    let r = ws.cmd().run();
    r.assert_ok();
    let r = ws.cmd().env("PFLOW_JOBS", "zero").run();
    r.assert_code(2);
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("PFLOW_JOBS must be a whole number"),
        "{r}"
    );
}

/// A cloned project's pflow.toml may name any remote: the user's token is not sent there
/// unless the user's own settings name the same remote.
#[test]
fn a_remote_named_by_the_project_gets_no_token_from_elsewhere() {
    use crate::stub::{Reply, Stub};
    let remote = Stub::start(|_, _| Reply::text(404, "text/plain", ""));
    let ws = workspace();
    ws.write(
        "pflow.toml",
        &format!("remote_cache = \"{}\"\n", remote.url()),
    );
    let r = ws
        .cmd()
        .text()
        .env("PFLOW_REMOTE_CACHE_TOKEN", "tok-SECRET-remote")
        .run();
    r.assert_ok();
    assert!(
        r.stderr.contains("not sending the remote cache token"),
        "{r}"
    );
    assert!(remote.count() > 0, "the remote was not asked at all");
    assert!(remote
        .requests()
        .iter()
        .all(|q| q.header("authorization").is_none()));

    // The user's own config names it: the token goes.
    user_file(&ws, &format!("remote_cache = \"{}\"\n", remote.url()));
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["command"] = json!("echo changed"));
    let before = remote.count();
    let r = ws
        .cmd()
        .text()
        .env("PFLOW_REMOTE_CACHE_TOKEN", "tok-SECRET-remote")
        .run();
    r.assert_ok();
    let asked: Vec<_> = remote.requests().into_iter().skip(before).collect();
    assert!(
        !asked.is_empty()
            && asked
                .iter()
                .all(|q| q.header("authorization") == Some("Bearer tok-SECRET-remote"))
    );
}

/// Every setting the README's example file shows is one pflow takes, and takes effect:
/// `repair = "off"` turns repair off as PFLOW_REPAIR=off does.
#[test]
fn the_readme_example_settings_are_all_accepted() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```toml\n").expect("a toml example") + 8;
    let end = start + readme[start..].find("```").unwrap();
    let ws = workspace();
    ws.write("pflow.toml", &readme[start..end]);
    let doc = config(&ws);
    for key in ["repair", "llm_prices", "jobs", "cache_dir"] {
        assert!(
            setting(&doc, key)["source"]
                .as_str()
                .unwrap()
                .ends_with("pflow.toml"),
            "{key}: {doc}"
        );
    }
    ws.write("pflow.toml", "repair = \"off\"\n");
    ws.edit_workflow(|doc| doc["nodes"][0]["params"]["command"] = json!("exit 3"));
    let r = ws
        .pflow()
        .args(["build", "workflow.json", "--output-format", "json"])
        .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
        .env("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")
        .output();
    let out: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(r.status.code(), Some(1), "{out}");
    assert_eq!(out["repair"]["llm_calls"].as_u64().unwrap_or(0), 0, "{out}");
}
