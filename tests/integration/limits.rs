//! Resource limits: each one is hit through the real binary and fails with a message that
//! says which limit and how to change it.
//!
//! - workflow files over `PFLOW_MAX_WORKFLOW_BYTES` (default 64 MB);
//! - more than 100,000 nodes;
//! - template expansions over `PFLOW_MAX_TEMPLATE_BYTES` (default 256 MB);
//! - shell output over the node's `max_output` (default 64 MB): the excess is dropped and
//!   noted on stderr.

use crate::common::Pflow;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::Output;

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        Dir {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn write(&self, name: &str, text: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    /// Run pflow in this folder with extra environment variables.
    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Pflow::new()
            .args(args)
            .current_dir(self.path())
            .env("PFLOW_HOME", self.path().join("home"))
            .env("PFLOW_CACHE_DIR", self.path().join("cache"));
        for (k, v) in env {
            cmd = cmd.env(k, v);
        }
        cmd.output()
    }

    /// `pflow build --output-format json --no-repair` of `wf`; the one JSON document.
    fn build_json(&self, wf: &Value, env: &[(&str, &str)]) -> (i32, Value) {
        self.write("wf.json", &wf.to_string());
        let out = self.run(
            &["build", "wf.json", "--no-repair", "--output-format", "json"],
            env,
        );
        let doc: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}):\n{}", text(&out)));
        (out.status.code().unwrap_or(-1), doc)
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

// ---------------------------------------------------------------------------------------
// Workflow file size
// ---------------------------------------------------------------------------------------

fn padded_workflow(bytes: usize) -> String {
    let base =
        json!({"nodes": [{"id": "a", "type": "echo", "purpose": "", "params": {"message": "hi"}}]})
            .to_string();
    let pad = bytes.saturating_sub(base.len());
    base.replacen(
        "\"purpose\":\"\"",
        &format!("\"purpose\":\"{}\"", "p".repeat(pad)),
        1,
    )
}

#[test]
fn workflow_file_over_the_size_limit_is_refused() {
    let d = Dir::new();
    let wf = padded_workflow(5_000);
    assert_eq!(wf.len(), 5_000);
    d.write("big.json", &wf);

    for cmd in ["validate", "build"] {
        let out = d.run(&[cmd, "big.json"], &[("PFLOW_MAX_WORKFLOW_BYTES", "4999")]);
        let all = text(&out);
        assert_eq!(out.status.code(), Some(2), "{cmd}: {all}");
        assert!(
            all.contains("'big.json' is 5000 bytes, over the limit of 4999 bytes"),
            "{cmd}: {all}"
        );
        assert!(all.contains("PFLOW_MAX_WORKFLOW_BYTES"), "{cmd}: {all}");
    }

    // At the limit it is accepted.
    let out = d.run(
        &["validate", "big.json"],
        &[("PFLOW_MAX_WORKFLOW_BYTES", "5000")],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn default_workflow_size_limit_is_64_mb() {
    assert_eq!(pflow::source::DEFAULT_MAX_WORKFLOW_BYTES, 64 * 1024 * 1024);
}

// ---------------------------------------------------------------------------------------
// Node count
// ---------------------------------------------------------------------------------------

#[test]
fn more_than_100_000_nodes_is_refused() {
    let d = Dir::new();
    let n = pflow::validate::MAX_NODES + 1;
    assert_eq!(n, 100_001);
    let mut wf = String::with_capacity(n * 40);
    wf.push_str("{\"nodes\": [");
    for i in 0..n {
        if i > 0 {
            wf.push(',');
        }
        wf.push_str(&format!("{{\"id\":\"n{i}\",\"type\":\"echo\"}}"));
    }
    wf.push_str("]}");
    d.write("many.json", &wf);
    let out = d.run(&["validate", "many.json"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(2), "{all}");
    assert!(
        all.contains("the workflow has 100001 nodes, over the limit of 100000"),
        "{all}"
    );
}

// ---------------------------------------------------------------------------------------
// Template expansion
// ---------------------------------------------------------------------------------------

fn first_error(doc: &Value) -> (&str, &str) {
    let e = &doc["errors"][0];
    (
        e["category"].as_str().unwrap_or(""),
        e["message"].as_str().unwrap_or(""),
    )
}

#[test]
fn template_expansion_over_the_cap_fails_and_names_the_template() {
    let d = Dir::new();
    // 1,000 bytes repeated 20 times: 20,000 bytes of text.
    let wf = json!({"nodes": [
        {"id": "a", "type": "echo", "params": {"message": "x".repeat(1000)}},
        {"id": "b", "type": "echo", "params": {"message": "${a.echo}".repeat(20)}}
    ]});
    let env = [("PFLOW_MAX_TEMPLATE_BYTES", "10000")];
    let (code, doc) = d.build_json(&wf, &env);
    assert_eq!(code, 1, "{doc:#}");
    let (category, message) = first_error(&doc);
    assert_eq!(category, "template", "{doc:#}");
    assert!(
        message.contains("param 'message': cannot resolve ${a.echo}${a.echo}"),
        "{message}"
    );
    assert!(
        message.contains("more than 10000 bytes of text"),
        "{message}"
    );
    assert!(message.contains("PFLOW_MAX_TEMPLATE_BYTES"), "{message}");
    assert_eq!(doc["errors"][0]["node"], json!("b"));

    // Under a cap that fits, the same workflow builds.
    let (code, doc) = d.build_json(&wf, &[("PFLOW_MAX_TEMPLATE_BYTES", "20000")]);
    assert_eq!(code, 0, "{doc:#}");
}

#[test]
fn template_expansion_cap_applies_to_each_batch_item() {
    let d = Dir::new();
    let batch = |handling: &str| {
        json!({"nodes": [
            {"id": "a", "type": "echo", "params": {"message": "y".repeat(3000)}},
            {"id": "b", "type": "echo", "batch": {"items": [1, 2, 3], "error_handling": handling},
             "params": {"message": "${item}: ${a.echo} ${a.echo} ${a.echo} ${a.echo}"}}
        ], "outputs": {"errors": {"source": "${b.errors}"}}})
    };
    let env = [("PFLOW_MAX_TEMPLATE_BYTES", "10000")];

    // fail_fast: the node fails with the template error.
    let (code, doc) = d.build_json(&batch("fail_fast"), &env);
    assert_eq!(code, 1, "{doc:#}");
    let (category, message) = first_error(&doc);
    assert_eq!(category, "template", "{doc:#}");
    assert!(
        message.contains("cannot resolve ${item}: ${a.echo}"),
        "{message}"
    );
    assert!(
        message.contains("more than 10000 bytes of text"),
        "{message}"
    );

    // continue: every item records the error.
    let (code, doc) = d.build_json(&batch("continue"), &env);
    assert_eq!(code, 0, "{doc:#}");
    let errors = doc["outputs"]["errors"].to_string();
    assert_eq!(
        errors.matches("more than 10000 bytes of text").count(),
        3,
        "{errors}"
    );
}

#[test]
fn text_rendering_of_a_large_object_stops_at_the_cap() {
    let d = Dir::new();
    let data: Vec<Value> = (0..2000).map(|i| json!({"i": i, "s": "zzzz"})).collect();
    let wf = json!({"nodes": [
        {"id": "a", "type": "echo", "params": {"data": data}},
        {"id": "b", "type": "shell", "params": {"command": "printf %s '${a.data}' | wc -c"}}
    ]});
    let (code, doc) = d.build_json(&wf, &[("PFLOW_MAX_TEMPLATE_BYTES", "5000")]);
    assert_eq!(code, 1, "{doc:#}");
    let (category, message) = first_error(&doc);
    assert_eq!(category, "template");
    assert!(
        message.contains("cannot resolve printf %s '${a.data}'"),
        "{message}"
    );
    assert!(message.contains("more than 5000 bytes"), "{message}");
}

#[test]
fn template_expansion_cap_holds_in_permissive_mode() {
    let d = Dir::new();
    let wf = json!({"template_resolution_mode": "permissive", "nodes": [
        {"id": "a", "type": "echo", "params": {"message": "x".repeat(1000)}},
        {"id": "b", "type": "echo", "params": {"message": "${a.echo}".repeat(20)}}
    ]});
    let (code, doc) = d.build_json(&wf, &[("PFLOW_MAX_TEMPLATE_BYTES", "10000")]);
    assert_eq!(code, 1, "{doc:#}");
}

#[test]
fn default_template_cap_is_256_mb() {
    assert_eq!(
        pflow::template::DEFAULT_MAX_TEMPLATE_BYTES,
        256 * 1024 * 1024
    );
}

// ---------------------------------------------------------------------------------------
// Shell output
// ---------------------------------------------------------------------------------------

#[test]
fn shell_output_over_max_output_is_dropped_and_noted() {
    let d = Dir::new();
    let wf = json!({"nodes": [
        {"id": "big", "type": "shell", "params": {
            "command": "head -c 200000 /dev/zero | tr '\\0' x; head -c 5000 /dev/zero | tr '\\0' e >&2",
            "max_output": 1000
        }}
    ], "outputs": {
        "out": {"source": "${big.stdout}"},
        "err": {"source": "${big.stderr}"}
    }});
    let (code, doc) = d.build_json(&wf, &[]);
    assert_eq!(code, 0, "{doc:#}");
    let out = doc["outputs"]["out"].as_str().unwrap();
    assert_eq!(out, "x".repeat(1000));
    let err = doc["outputs"]["err"].as_str().unwrap();
    assert!(err.starts_with(&"e".repeat(1000)), "{}", &err[..50]);
    assert!(
        err.ends_with(
            "[pflow: output over max_output=1000 bytes was dropped: 199000 bytes of stdout, 4000 bytes of stderr]"
        ),
        "{err}"
    );
}

#[test]
fn default_shell_max_output_is_64_mb() {
    assert_eq!(pflow::nodes::shell::DEFAULT_MAX_OUTPUT, 64 * 1024 * 1024);
}
