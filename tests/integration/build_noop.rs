//! The no-op record: a build that would find nothing to do says so without parsing the
//! workflow, prints exactly what the normal build prints, and is never taken when
//! anything it depends on changed.
//!
//! `PFLOW_DEBUG=1` is the observable: it prints `debug: parsing FILE` whenever a workflow
//! file is parsed, and whether the record was used or written (and why not).

use crate::common::{counted, BuildResult, CacheArg, Workspace};
use serde_json::{json, Value};
use std::time::{Duration, SystemTime};

/// Long enough for every file a build wrote to be older than the record's granularity
/// (2 s) when the next build starts.
pub(crate) fn settle() {
    std::thread::sleep(Duration::from_millis(2100));
}

/// A JSON build with `PFLOW_DEBUG=1`.
pub(crate) fn debug_build(ws: &Workspace, args: &[&str]) -> BuildResult {
    ws.cmd().args(args).env("PFLOW_DEBUG", "1").run()
}

pub(crate) fn parsed(r: &BuildResult) -> bool {
    r.stderr.contains("debug: parsing")
}

#[track_caller]
pub(crate) fn assert_served(r: &BuildResult) {
    r.assert_ok();
    assert!(
        r.stderr.contains("debug: no-op record used") && !parsed(r),
        "not served from the record: {r}"
    );
}

#[track_caller]
pub(crate) fn assert_not_served(r: &BuildResult) {
    assert!(
        parsed(r) && !r.stderr.contains("no-op record used"),
        "served from the record: {r}"
    );
}

/// Build until the record holds: the first build runs what it must (and writes the
/// record when what ran worked on no file); once its files are settled, a no-op writes
/// the record or is served from it, and the next build is served from it.
#[track_caller]
pub(crate) fn prime(ws: &Workspace, args: &[&str]) {
    ws.build(args).assert_ok();
    settle();
    let r = debug_build(ws, args);
    r.assert_ok();
    assert_recorded(&r);
    assert_served(&debug_build(ws, args));
}

/// The record holds after this build: it wrote it, or was served from it.
#[track_caller]
pub(crate) fn assert_recorded(r: &BuildResult) {
    assert!(
        r.stderr.contains("no-op record written") || r.stderr.contains("no-op record used"),
        "{r}"
    );
}

/// A chain (one order of lines, whatever the scheduling): a command that counts its
/// runs and warns, a file it gates, a file written from both, an error handler the
/// last node does not need; declared outputs with and without a source.
fn chain() -> Workspace {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string", "required": false, "default": "world"}},
        "nodes": [
            {"id": "greet", "type": "shell",
             "params": {"command": counted("greet", "echo hello ${name}; echo careful >&2")}},
            {"id": "read", "type": "read-file", "params": {"file_path": "in.txt"}},
            {"id": "write", "type": "write-file",
             "params": {"file_path": "out.txt", "content": "${read.content}/${greet.stdout}"}},
            {"id": "rescue", "type": "shell", "params": {"command": "echo rescued"}}
        ],
        "edges": [
            {"from": "greet", "to": "read"},
            {"from": "write", "to": "rescue", "action": "error"}
        ],
        "outputs": {
            "written": {"source": "${write.file_path}: ${greet.stdout}"},
            "bytes": {"description": "no source: the field of that name"}
        }
    }));
    ws.write("in.txt", "data");
    ws.write("pflow.toml", "");
    ws
}

/// Text with every duration (`12ms`, `1.50s`) made the same.
pub(crate) fn timeless(text: &str) -> String {
    text.split('\n')
        .map(|line| {
            line.split(' ')
                .map(|w| {
                    let digits = w.trim_end_matches("ms").trim_end_matches('s');
                    if (w.ends_with("ms") || w.ends_with('s'))
                        && !digits.is_empty()
                        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
                    {
                        "T"
                    } else {
                        w
                    }
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A JSON document without its timings.
pub(crate) fn without_durations(mut v: Value) -> Value {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(m) => {
                m.remove("duration_ms");
                m.values_mut().for_each(strip);
            }
            Value::Array(a) => a.iter_mut().for_each(strip),
            _ => {}
        }
    }
    strip(&mut v);
    v
}

/// The last `n` lines of the cache's stats, each without its run id, time and duration.
fn last_stats(ws: &Workspace, n: usize) -> Vec<Value> {
    let text = std::fs::read_to_string(ws.cache_dir().join("build-stats.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len() - n..]
        .iter()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            for k in ["run_id", "time_ms", "duration_ms"] {
                v.as_object_mut().unwrap().remove(k);
            }
            v
        })
        .collect()
}

fn log_of(ws: &Workspace, node: &str) -> String {
    let out = ws
        .pflow()
        .args(["log", "workflow.json", node, "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn nothing_changed_is_served_without_parsing_and_prints_what_the_normal_build_prints() {
    let ws = chain();
    ws.build(&["name=Ada"]).assert_ok();
    settle();
    let text = |ws: &Workspace| {
        ws.cmd()
            .text()
            .args(&["name=Ada"])
            .env("PFLOW_DEBUG", "1")
            .run()
    };
    let (slow, fast) = (text(&ws), text(&ws));
    assert_not_served(&slow);
    assert_served(&fast);
    let shown = |r: &BuildResult| {
        timeless(
            &r.stderr
                .lines()
                .filter(|l| !l.starts_with("debug: "))
                .collect::<Vec<_>>()
                .join("\n"),
        )
    };
    assert_eq!(shown(&slow), shown(&fast));
    assert!(shown(&fast).contains("| careful"), "{fast}");
    assert_eq!(slow.stdout, fast.stdout);
    assert_eq!(fast.stdout, "written: out.txt: hello Ada\nbytes: 14\n");
    assert_eq!(last_stats(&ws, 2)[0], last_stats(&ws, 2)[1]);
    assert_eq!(last_stats(&ws, 1)[0]["hits"], 3);
    assert_eq!(last_stats(&ws, 1)[0]["skipped"], 1);
    let log = log_of(&ws, "greet");
    assert!(log.contains("careful"), "{log}");

    // The same bytes written another way: the normal build (which reuses everything),
    // then the record again; the JSON documents match too.
    let doc = ws.current_workflow();
    ws.write("workflow.json", &serde_json::to_string(&doc).unwrap());
    let slow = debug_build(&ws, &["name=Ada"]);
    assert_not_served(&slow);
    let fast = debug_build(&ws, &["name=Ada"]);
    assert_served(&fast);
    assert_eq!(
        without_durations(slow.doc().clone()),
        without_durations(fast.doc().clone())
    );
    assert_eq!(fast.status_of("rescue"), "skipped");
    assert_eq!(fast.output("written"), "out.txt: hello Ada");
    assert_eq!(ws.count("greet"), 1);
    assert_eq!(log_of(&ws, "greet"), log);

    // One output, quietly; one output named: from the record too.
    let r = ws
        .cmd()
        .text()
        .args(&["name=Ada", "-q", "-o", "written"])
        .env("PFLOW_DEBUG", "1")
        .run();
    assert_served(&r);
    assert_eq!(r.stdout, "out.txt: hello Ada\n");
    // Flags that ask for more than the outcome take the normal build.
    let r = debug_build(&ws, &["name=Ada", "--explain"]);
    assert_not_served(&r);
    assert!(r.stderr.contains("no-op record not used: --explain"), "{r}");
    let r = debug_build(&ws, &["name=Ada", "-o", "nothing"]);
    assert_not_served(&r);
    r.assert_code(2);
}

#[test]
fn an_edited_workflow_is_parsed_and_what_the_edit_reaches_runs() {
    let ws = chain();
    prime(&ws, &[]);
    ws.edit_workflow(|d| {
        d["nodes"][0]["params"]["command"] = json!(counted("greet", "echo goodbye"));
    });
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
    assert_eq!(r.output("written"), "out.txt: goodbye");
    assert_eq!(ws.read("out.txt"), "data/goodbye");
}

#[test]
fn another_input_value_is_seen() {
    let ws = chain();
    prime(&ws, &["name=Ada"]);
    let r = debug_build(&ws, &["name=Bob"]);
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
    assert_eq!(r.output("written"), "out.txt: hello Bob");
    // The same value given another way is another invocation too.
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.output("written"), "out.txt: hello world");
}

#[test]
fn a_declared_variable_or_one_of_pflows_own_changing_is_seen() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "greet", "type": "shell", "reads_env": ["GREETING"],
                   "params": {"command": counted("greet", "echo $GREETING")}}],
        "outputs": {"said": {"source": "${greet.stdout}"}}
    }));
    let with = |value: &str, strict: &str| {
        ws.cmd()
            .env("GREETING", value)
            .env("PFLOW_STRICT_ENV", strict)
            .env("PFLOW_DEBUG", "1")
            .run()
    };
    with("hi", "0").assert_ok();
    settle();
    assert_recorded(&with("hi", "0"));
    assert_served(&with("hi", "0"));

    let r = with("ho", "0");
    assert_not_served(&r);
    assert_eq!(r.output("said"), "ho");
    assert_eq!(ws.count("greet"), 2);
    // Strict mode changes what a command sees, so its key.
    let r = with("ho", "1");
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
}

#[test]
fn a_settings_file_change_is_seen() {
    let ws = chain();
    prime(&ws, &[]);
    // Strict child environments change every shell node's key.
    ws.write("pflow.toml", "strict_env = true\n");
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
    assert_eq!(ws.count("greet"), 2);
}

/// A declared read under a home folder whose name is not UTF-8: the record cannot name
/// the file (a stand-in character would name another, whose absence vouched for this
/// one's), so none is written, and the file's appearance re-runs the node.
#[cfg(unix)]
#[test]
fn a_read_under_a_home_folder_not_named_in_utf8_is_never_vouched_for() {
    use std::os::unix::ffi::OsStrExt;
    let ws = Workspace::new().workflow(json!({"nodes": [
        {"id": "n", "type": "shell", "reads": ["~/.tool.cfg"],
         "params": {"command": counted("n", "echo n")}}
    ]}));
    let home = ws
        .file("homes")
        .join(std::ffi::OsStr::from_bytes(b"j\xf6rg"));
    std::fs::create_dir_all(&home).unwrap();
    let build = || ws.cmd().env("HOME", &home).env("PFLOW_DEBUG", "1").run();
    build().assert_ok();
    settle();
    let r = build();
    r.assert_ok();
    assert!(r.stderr.contains("no-op record not written"), "{r}");
    std::fs::write(home.join(".tool.cfg"), "set").unwrap();
    let r = build();
    r.assert_ok();
    assert_eq!(r.status_of("n"), "ran", "{r}");
    assert_eq!(ws.count("n"), 2);
}

fn set_mtime(ws: &Workspace, rel: &str, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(ws.file(rel))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_read_file_edited_with_its_size_and_mtime_put_back_is_seen() {
    let ws = chain();
    let then = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&ws, "in.txt", then);
    prime(&ws, &[]);
    // Same size, same mtime: only its change time tells.
    ws.write("in.txt", "DATA");
    set_mtime(&ws, "in.txt", then);
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("read"), "ran", "{r}");
    assert_eq!(ws.read("out.txt"), "DATA/hello world");
}

#[test]
fn a_file_changed_just_before_a_no_op_keeps_it_from_writing_a_record() {
    let ws = chain();
    ws.build(&[]).assert_ok();
    settle();
    // Rewritten with the same bytes: the no-op reuses everything, but the file changed
    // within the granularity of its start, so its identity vouches for nothing.
    ws.write("in.txt", "data");
    let r = debug_build(&ws, &[]);
    r.assert_ok();
    assert_eq!(r.status_of("read"), "cached");
    assert!(
        r.stderr.contains("no-op record not written: '") && r.stderr.contains("in.txt"),
        "{r}"
    );
    // Then edited again within the same second, keeping its size.
    ws.write("in.txt", "dat2");
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("read"), "ran", "{r}");
    assert_eq!(ws.read("out.txt"), "dat2/hello world");
}

#[test]
fn a_deleted_output_file_is_put_back() {
    let ws = chain();
    prime(&ws, &[]);
    ws.remove("out.txt");
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("write"), "restored", "{r}");
    assert_eq!(ws.read("out.txt"), "data/hello world");
}

#[test]
fn an_edited_output_file_is_put_back() {
    let ws = chain();
    prime(&ws, &[]);
    ws.write("out.txt", "mine");
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("write"), "restored", "{r}");
    assert_eq!(ws.read("out.txt"), "data/hello world");
}

pub(crate) fn cache_cmd(ws: &Workspace, args: &[&str]) {
    let out = ws
        .pflow()
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(ws.cache_dir())
        .output();
    assert!(out.status.success(), "pflow cache {args:?}: {out:?}");
}

#[test]
fn a_cleared_cache_is_seen() {
    let ws = chain();
    prime(&ws, &[]);
    cache_cmd(&ws, &["clear"]);
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
    assert_eq!(ws.count("greet"), 2);
}

#[test]
fn a_collected_cache_is_seen() {
    let ws = chain();
    // No outputs to load: nothing but the cache's generation tells that entries are gone.
    ws.edit_workflow(|d| {
        d.as_object_mut().unwrap().remove("outputs");
    });
    prime(&ws, &[]);
    // Every entry is older than a millisecond.
    std::thread::sleep(Duration::from_millis(5));
    cache_cmd(&ws, &["gc", "--max-age", "1ms"]);
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("greet"), "ran", "{r}");
}

/// An output with no source takes the field from the last node that has one; a node
/// whose entry is gone is not passed over for an earlier one's (the normal build runs
/// it), and the value is the one the record names.
#[test]
fn an_output_without_a_source_never_falls_back_to_an_earlier_node() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "first", "type": "shell", "params": {"command": "echo one"}},
            // Large enough to be kept as a blob of its own, apart from the segments.
            {"id": "second", "type": "shell", "params": {"command": "yes two | head -c 70000"}}
        ],
        "outputs": {"stdout": {}}
    }));
    prime(&ws, &[]);
    let blobs = ws.cache_dir().join("content-v2");
    assert!(blobs.is_dir(), "no blob store at {}", blobs.display());
    std::fs::remove_dir_all(&blobs).unwrap();
    let r = debug_build(&ws, &[]);
    r.assert_ok();
    assert_not_served(&r);
    let out = r.output("stdout").as_str().unwrap_or_default();
    // (Its last newline trimmed, as a step's stdout is.)
    assert!(
        out.starts_with("two\ntwo") && out.len() == 69_999,
        "{}",
        &out[..out.len().min(40)]
    );
}

/// A JSON build with `PFLOW_DEBUG=1` and repair on: it replays proven patches (and asks
/// no model).
fn replaying(ws: &Workspace) -> std::process::Output {
    ws.pflow()
        .args([
            "build",
            "workflow.json",
            "--output-format",
            "json",
            "--cache-dir",
        ])
        .arg(ws.cache_dir())
        .env("PFLOW_REPAIR", "replay")
        .env("PFLOW_DEBUG", "1")
        .output()
}

#[test]
fn a_proven_patch_recorded_for_the_workflow_is_replayed() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "greet", "type": "shell",
                   "params": {"command": counted("greet", "echo as written")}}],
        "outputs": {"said": {"source": "${greet.stdout}"}}
    }));
    let build = || replaying(&ws);
    assert!(build().status.success());
    settle();
    let out = build();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-op record written"));
    let out = build();
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-op record used"));

    let digest = pflow::repair::patch::workflow_digest(&ws.current_workflow());
    let patch = json!({"version": 1, "base_digest": digest, "repaired_digest": "0".repeat(64),
        "workflow": "workflow.json", "model": "m", "created_at": "2026-01-01T00:00:00Z",
        "errors": [], "proven": true,
        "patch": [{"op": "replace", "path": "/nodes/0/params/command",
                   "value": counted("greet", "echo patched")}]});
    let dir = ws.cache_dir().join("repairs");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("greet-1.json"), patch.to_string()).unwrap();
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("debug: parsing"), "{stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["repair"]["history"][0]["kind"], "replay", "{doc}");
    assert_eq!(doc["outputs"]["said"], "patched", "{doc}");
}

#[test]
fn a_build_with_other_inputs_in_between_leaves_no_record_to_trust() {
    let ws = chain();
    prime(&ws, &["name=Ada"]);
    debug_build(&ws, &["name=Bob"]).assert_ok();
    assert_eq!(ws.read("out.txt"), "data/hello Bob");
    let r = debug_build(&ws, &["name=Ada"]);
    assert_not_served(&r);
    assert_eq!(r.status_of("write"), "restored", "{r}");
    assert_eq!(ws.read("out.txt"), "data/hello Ada");
}

#[test]
fn a_killed_build_leaves_no_record() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"seconds": {"type": "string"}},
        "nodes": [{"id": "nap", "type": "shell",
                   "params": {"command": counted("nap", "sleep ${seconds}")}}]
    }));
    prime(&ws, &["seconds=0"]);
    let mut slow = ws.cmd().text().args(&["seconds=30"]).start();
    assert!(
        crate::common::wait_for(Duration::from_secs(20), || ws.count("nap") == 2),
        "the slow build did not start its node"
    );
    slow.kill();
    let _ = slow.wait(Duration::from_secs(10));
    let r = debug_build(&ws, &["seconds=0"]);
    assert!(r.stderr.contains("no-op record not used: no record"), "{r}");
    assert_eq!(r.status_of("nap"), "cached", "{r}");
}

#[test]
fn a_build_that_ran_steps_on_no_file_leaves_the_record_for_the_next() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "greet", "type": "shell", "params": {"command": counted("greet", "echo hello")}},
            {"id": "shout", "type": "shell",
             "params": {"command": counted("shout", "echo ${greet.stdout} there")}}
        ],
        "outputs": {"said": {"source": "${shout.stdout}"}}
    }));
    let r = debug_build(&ws, &[]);
    r.assert_ok();
    assert_eq!(r.status_of("greet"), "ran", "{r}");
    assert!(r.stderr.contains("no-op record written"), "{r}");
    let r = debug_build(&ws, &[]);
    assert_served(&r);
    assert_eq!(r.output("said"), "hello there");
    assert_eq!((ws.count("greet"), ws.count("shout")), (1, 1));
    // An edit runs what it changed, and the record it leaves serves the new result.
    ws.edit_workflow(|doc| {
        doc["nodes"][0]["params"]["command"] = json!(counted("greet", "echo howdy"));
    });
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.output("said"), "howdy there");
    assert!(r.stderr.contains("no-op record written"), "{r}");
    let r = debug_build(&ws, &[]);
    assert_served(&r);
    assert_eq!(r.output("said"), "howdy there");
    assert_eq!((ws.count("greet"), ws.count("shout")), (2, 2));
}

#[test]
fn with_repair_on_a_build_of_a_new_text_leaves_the_record_too() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "greet", "type": "shell",
                   "params": {"command": counted("greet", "echo as written")}}]
    }));
    let build = || replaying(&ws);
    assert!(build().status.success());
    settle();
    assert!(build().status.success());
    // A new text takes a repair lock of its own in `repairs/`: not a patch, so the
    // folder's change does not keep the build from leaving the record.
    ws.edit_workflow(|doc| {
        doc["nodes"][0]["params"]["command"] = json!(counted("greet", "echo edited"));
    });
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-op record written"), "{stderr}");
    let out = build();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no-op record used"), "{stderr}");
    assert_eq!(ws.count("greet"), 2);
}

#[test]
fn a_step_that_wrote_a_file_when_it_ran_leaves_no_record() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "save", "type": "write-file",
                   "params": {"file_path": "out.txt", "content": "saved"}}]
    }));
    // The file is as new as the build: its identity cannot vouch for it yet.
    let r = debug_build(&ws, &[]);
    r.assert_ok();
    assert!(
        r.stderr.contains("no-op record not written: node 'save'"),
        "{r}"
    );
    let r = debug_build(&ws, &[]);
    assert_not_served(&r);
    assert_eq!(r.status_of("save"), "cached", "{r}");
}

#[test]
fn a_node_that_runs_on_every_build_keeps_the_workflow_off_the_record() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "clock", "type": "shell", "cache": false,
             "params": {"command": counted("clock", "echo tick")}},
            {"id": "after", "type": "shell", "params": {"command": "echo ${clock.stdout}"}}
        ]
    }));
    for n in 1..=3 {
        let r = debug_build(&ws, &[]);
        assert_not_served(&r);
        assert_eq!(r.status_of("clock"), "ran", "{r}");
        assert!(
            r.stderr
                .contains("no-op record not written: node 'clock' ran"),
            "{r}"
        );
        assert_eq!(ws.count("clock"), n);
    }
}

#[test]
fn secrets_are_not_in_the_record() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"api_token": {"type": "string"}},
        "nodes": [{"id": "call", "type": "shell", "reads_env": ["PGPASSWORD"],
                   "params": {"command": "echo ${api_token} | wc -c"}}]
    }));
    let args = ["api_token=tok-3f9a7c1e55"];
    let build = || {
        ws.cmd()
            .args(&args)
            .env("PGPASSWORD", "pw-8d2b6e0a41")
            .env("PFLOW_DEBUG", "1")
            .run()
    };
    build().assert_ok();
    settle();
    assert_recorded(&build());
    assert_served(&build());
    let state = ws.cache_dir().join("state");
    let mut records = 0;
    for entry in std::fs::read_dir(&state).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        for secret in ["tok-3f9a7c1e55", "pw-8d2b6e0a41"] {
            assert!(
                !text.contains(secret),
                "{} holds {secret}",
                entry.path().display()
            );
        }
        records += usize::from(entry.path().extension().is_some_and(|e| e == "noop2"));
    }
    assert_eq!(records, 1);
}

#[test]
fn a_step_that_changes_pflows_own_executable_leaves_no_record() {
    // A workflow that installs pflow: the record must not carry the new executable's
    // identity for what the old one built.
    let ws = Workspace::new().workflow(json!({
        "nodes": [{"id": "install", "type": "shell",
                   "params": {"command": "touch -m -d @1000000000 pflow-copy"}}]
    }));
    let out = ws
        .pflow_copied_to("pflow-copy")
        .args(["build", "workflow.json", "--no-repair"])
        .env("PFLOW_DEBUG", "1")
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("no-op record not written: pflow's executable changed during the build"),
        "{stderr}"
    );
}

/// Two workflows of one file name in different folders of a project, built with its
/// cache: each keeps its own records. They once shared them (by file name), so each
/// build took the other's for its own: `pflow log` showed the other's output and a
/// build of either after the other was never a no-op.
#[test]
fn workflows_of_one_name_in_two_folders_keep_their_own_records() {
    let ws = Workspace::new();
    for side in ["a", "b"] {
        let doc = json!({"ir_version": "0.1.0", "nodes": [
            {"id": "x", "type": "shell", "params": {"command": format!("echo from-{side}")}}
        ]});
        ws.write(&format!("{side}/wf.json"), &doc.to_string());
    }
    let build = |side: &str| {
        ws.cmd()
            .workflow_file(format!("{side}/wf.json"))
            .cache_arg(CacheArg::Default)
            .env("PFLOW_DEBUG", "1")
            .run()
    };
    build("a").assert_ok();
    build("b").assert_ok();
    settle();
    // Each records its no-op, then is served from it, whichever was built last.
    for side in ["a", "b", "a", "b"] {
        let r = build(side);
        r.assert_ok();
        assert_recorded(&r);
    }
    assert_served(&build("a"));
    assert_served(&build("b"));
    for side in ["a", "b"] {
        let out = ws
            .pflow()
            .args(["log", &format!("{side}/wf.json"), "x"])
            .output();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&format!("from-{side}")), "{side}: {text}");
    }
}
