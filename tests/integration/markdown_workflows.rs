//! `.pflow.md` workflows: built, validated, graphed and saved like JSON ones, cached on
//! their IR (so prose and formatting are free to change), with every problem shown at
//! its Markdown line.

use crate::common::{counted, Workspace};
use serde_json::{json, Value};

const FILE: &str = "flow.pflow.md";

/// Two steps: `greet` echoes the input, `shout` upper-cases it; both counted.
fn flow(greeting: &str, prose: &str) -> String {
    format!(
        r#"# Greeting

{prose}

## Inputs

### name

Who to greet.

- type: string
- required: false
- default: world

## Steps

### greet

Say hello to the name.

- type: shell

```shell command
{greet}
```

### shout

Upper-case the greeting.

- type: shell
- stdin: ${{greet.stdout}}
- command: {shout}

## Outputs

### message

The loud greeting.

- source: ${{shout.stdout}}
"#,
        greet = counted("greet", &format!("echo \"{greeting}, ${{name}}\"")),
        shout = counted("shout", "tr a-z A-Z"),
    )
}

fn ws(md: &str) -> Workspace {
    let ws = Workspace::new();
    ws.write(FILE, md);
    ws
}

#[test]
fn a_markdown_workflow_builds_and_a_second_build_does_nothing() {
    let ws = ws(&flow("hello", "Greets someone."));
    let r = ws.cmd().workflow_file(FILE).arg("name=ada").run();
    r.assert_ok();
    assert_eq!(r.output("message"), &json!("HELLO, ADA"));
    let r = ws.cmd().workflow_file(FILE).arg("name=ada").run();
    r.assert_ok();
    assert_eq!(r.with_status("cached").len(), 2, "{:?}", r.statuses());
    assert_eq!((ws.count("greet"), ws.count("shout")), (1, 1));
}

#[test]
fn editing_only_prose_and_formatting_runs_nothing_again() {
    let ws = ws(&flow("hello", "Greets someone."));
    ws.cmd().workflow_file(FILE).run().assert_ok();
    // New title text, description, purposes, notes and blank lines; a param moved from
    // an item to a code block: the IR is the same.
    let edited = flow("hello", "Greets someone, loudly.\n\n* a note for readers")
        .replace("# Greeting", "# Greeting, revised")
        .replace(
            "Say hello to the name.",
            "Say hello to the name,\nin one line of shell.",
        )
        .replace(
            "Upper-case the greeting.",
            "Shout it.\n\n* tr does the work",
        )
        .replace(
            &format!("- command: {}\n", counted("shout", "tr a-z A-Z")),
            &format!("\n```sh command\n{}\n```\n", counted("shout", "tr a-z A-Z")),
        );
    assert_ne!(edited, flow("hello", "Greets someone."));
    ws.write(FILE, &edited);
    let r = ws.cmd().workflow_file(FILE).arg("--explain").run();
    r.assert_ok();
    assert_eq!(
        r.with_status("ran"),
        Vec::<String>::new(),
        "{:?}",
        r.statuses()
    );
    assert_eq!((ws.count("greet"), ws.count("shout")), (1, 1));

    // A changed value does run its node (and what its output reaches).
    ws.write(FILE, &flow("good day", "Greets someone."));
    let r = ws.cmd().workflow_file(FILE).run();
    r.assert_ok();
    assert_eq!(r.output("message"), &json!("GOOD DAY, WORLD"));
    assert_eq!((ws.count("greet"), ws.count("shout")), (2, 2));
}

#[test]
fn the_json_form_of_a_markdown_workflow_shares_its_cache() {
    let ws = ws(&flow("hello", "Greets someone."));
    ws.cmd().workflow_file(FILE).run().assert_ok();
    let out = ws
        .pflow()
        .args(["convert", FILE, "--to", "json", "-o", "flow.json"])
        .output();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r = ws.cmd().workflow_file("flow.json").run();
    r.assert_ok();
    assert_eq!(r.with_status("cached").len(), 2, "{:?}", r.statuses());
    assert_eq!(ws.count("greet"), 1);
}

fn stderr_of(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn validation_problems_point_at_markdown_lines() {
    // Line 14: the command block's first line; 17: `### second`; 22: `- cache: sometimes`.
    let md = "# Broken\n\nTwo problems.\n\n## Steps\n\n### first\n\nPrint something.\n\n- type: shell\n\n```shell command\necho ${nowhere.stdout}\n```\n\n### second\n\nRead a file.\n\n- type: read-file\n- cache: sometimes\n";
    let ws = ws(md);
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("flow.pflow.md:14:1: nodes[0].params.command: template ${nowhere.stdout}"),
        "{stderr}"
    );
    assert!(
        stderr.contains("flow.pflow.md:22:10: nodes[1].cache: invalid cache duration 'sometimes'"),
        "{stderr}"
    );
    // A missing param is shown at its step's heading.
    assert!(
        stderr.contains("flow.pflow.md:17:1: nodes[1].params.file_path: node 'second' (read-file) is missing required param 'file_path'"),
        "{stderr}"
    );

    // The same places in JSON, for validate and for build.
    let out = ws
        .pflow()
        .args(["validate", FILE, "--output-format", "json"])
        .output();
    let doc: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let lines: Vec<(String, u64)> = doc["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| {
            (
                e["path"].as_str().unwrap_or("").to_string(),
                e["line"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert!(
        lines.contains(&("nodes[0].params.command".into(), 14)),
        "{lines:?}"
    );
    assert!(lines.contains(&("nodes[1].cache".into(), 22)), "{lines:?}");
    let r = ws.cmd().workflow_file(FILE).run();
    r.assert_code(2);
    assert!(
        r.errors()
            .iter()
            .any(|e| e["path"] == "nodes[1].cache" && e["line"] == 22),
        "{:?}",
        r.errors()
    );
}

#[test]
fn front_end_problems_are_all_reported_with_their_lines() {
    let md = "# Bad\n\nSeveral problems.\n\n## Steps\n\n### a\n\nFirst.\n\n- type: shell\n- command: echo a\n\n```shell command\necho again\n```\n\n### b\n\n- type: shell\n- not an item\n\n### c\n\nThird.\n\n- type: shell\n- timeout: \"30\n";
    let ws = ws(md);
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for want in [
        "flow.pflow.md:14:1: nodes[0]: 'command' is set twice: here and by an item at line 12",
        "flow.pflow.md:18:1: nodes[1]: step 'b' has no description",
        "flow.pflow.md:21:1: nodes[1]: '- not an item' is not a 'key: value' item",
        "flow.pflow.md:28:1: nodes[2]: 'timeout': the quote \" in \"30 is never closed",
    ] {
        assert!(stderr.contains(want), "no '{want}' in:\n{stderr}");
    }
}

#[test]
fn next_and_on_error_set_the_edges() {
    // `first` fails; its error handler runs; `independent` has no edge from `handler`.
    let md = format!(
        "# Routes\n\nEdges.\n\n## Steps\n\n### first\n\nFails.\n\n- type: shell\n- command: exit 3\n- next: end\n- on-error: handler\n\n### handler\n\nHandles it.\n\n- type: shell\n- command: {}\n- next: end\n\n### independent\n\nRuns anyway.\n\n- type: shell\n- command: {}\n",
        counted("handler", "echo handled"),
        counted("independent", "echo free"),
    );
    let ws = ws(&md);
    let out = ws.pflow().args(["convert", FILE, "--to", "json"]).output();
    let ir: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(
        ir["edges"],
        json!([{"from": "first", "to": "handler", "action": "error"}])
    );
    let r = ws.cmd().workflow_file(FILE).run();
    assert_eq!(ws.count("handler"), 1, "{}", r.stderr);
    assert_eq!(ws.count("independent"), 1, "{}", r.stderr);

    // A `next` to a step that does not exist is shown at its item.
    ws.write(
        FILE,
        &md.replace("- next: end\n- on-error", "- next: nowhere\n- on-error"),
    );
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("flow.pflow.md:13:9: edges[0].to"),
        "{stderr}"
    );
}

#[test]
fn graph_directory_and_saved_workflows_take_markdown() {
    let ws = ws(&flow("hello", "Greets someone."));
    let out = ws.pflow().args(["graph", FILE]).output();
    let graph = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(
        graph.contains("greet") && graph.contains("shout"),
        "{graph}"
    );

    // -C DIR: the Markdown file is found there, and its build is the same build.
    let r = ws
        .cmd()
        .workflow_file(FILE)
        .arg("-C")
        .arg(ws.path().to_string_lossy())
        .run();
    r.assert_ok();
    assert_eq!(ws.count("greet"), 1);

    // Saved from Markdown, run by name: the same IR, so the same keys.
    let out = ws
        .pflow()
        .args(["workflow", "save", FILE, "greeting"])
        .output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let out = ws.pflow().args(["workflow", "show", "greeting"]).output();
    let saved: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(saved["description"], json!("Greets someone."));
    let r = ws.cmd().workflow_file("greeting").run();
    r.assert_ok();
    assert_eq!(r.with_status("cached").len(), 2, "{:?}", r.statuses());
    assert_eq!(ws.count("greet"), 1);
}

#[test]
fn apply_repairs_changes_only_the_repaired_value_of_a_markdown_workflow() {
    use crate::stub::{anthropic_check, anthropic_message, Reply, Request, Stub};
    let md = "# Fails\n\nA failing step.\n\n## Steps\n\n### bad\n\nFails until fixed.\n\n- type: shell\n- command: exit 4\n";
    let build = |fixed: Value| {
        let reply = format!("```json\n{fixed}\n```");
        let stub = Stub::start(move |req: &Request, _| {
            anthropic_check(req)
                .unwrap_or_else(|| Reply::json(200, &anthropic_message("claude-haiku-4-5", &reply)))
        });
        let ws = ws(md);
        let out = ws
            .pflow()
            .args(["build", FILE, "--apply-repairs", "--cache-dir"])
            .arg(ws.cache_dir())
            .env("ANTHROPIC_BASE_URL", stub.url())
            .env("ANTHROPIC_API_KEY", "sk-ant-test-0123456789")
            .output();
        (ws, out)
    };
    // A fixed value: written into its own place, the rest of the text as it was.
    let (ws, out) = build(
        json!({"nodes": [{"id": "bad", "type": "shell", "purpose": "Fails until fixed.",
                                            "params": {"command": "echo fixed"}}], "edges": []}),
    );
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("wrote the repaired workflow"), "{stderr}");
    assert_eq!(
        ws.read(FILE),
        md.replace("- command: exit 4", "- command: echo fixed")
    );

    // A repair that adds a node cannot be written without losing the file's text: the
    // file stays, never JSON over Markdown, and the patch is kept.
    let (ws, out) = build(json!({"nodes": [
        {"id": "bad", "type": "shell", "purpose": "Fails until fixed.", "params": {"command": "echo fixed"}},
        {"id": "extra", "type": "shell", "purpose": "More.", "params": {"command": "echo more"}}], "edges": []}));
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("changes more than values"), "{stderr}");
    assert_eq!(ws.read(FILE), md);
}

#[test]
fn front_matter_fields_typo_sections_and_crlf_lines() {
    // CRLF line endings; IR fields in the front matter (other keys are metadata); a
    // '## Step' section is ignored with a warning at its line.
    let md = "---\r\nstrict_env: true\r\nauthor: someone\r\n---\r\n# T\r\n\r\nAbout.\r\n\r\n## Step\r\n\r\n## Steps\r\n\r\n### a\r\n\r\nPrints.\r\n\r\n- type: shell\r\n- env:\r\n    A: one\r\n\r\n```shell command\r\necho $A\r\necho two\r\n```\r\n";
    let ws = ws(md);
    let out = ws.pflow().args(["convert", FILE, "--to", "json"]).output();
    let ir: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(ir["strict_env"], json!(true), "{ir}");
    assert!(ir.get("author").is_none(), "{ir}");
    assert_eq!(
        ir["nodes"][0]["params"]["command"],
        json!("echo $A\necho two")
    );
    assert_eq!(ir["nodes"][0]["params"]["env"], json!({"A": "one"}));
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(
            "warning: flow.pflow.md:9:1: root: '## Step' looks like a typo for '## Steps'"
        ),
        "{stderr}"
    );
    ws.cmd().workflow_file(FILE).run().assert_ok();

    // A YAML block that does not parse is shown at (or just after) its lines.
    ws.write(
        FILE,
        &md.replace(
            "- env:\r\n    A: one\r\n",
            "\r\n```yaml env\r\nA: [one\r\n```\r\n",
        ),
    );
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("flow.pflow.md:21:1: nodes[0]: invalid YAML in the 'yaml env' block"),
        "{stderr}"
    );
}

#[test]
fn the_format_reference_markdown_example_is_its_json_example() {
    // docs/workflow-format.md shows its first JSON workflow again as Markdown: the two
    // must be the same IR (prose aside, which JSON leaves out), and the Markdown builds.
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/workflow-format.md"
    ))
    .expect("the reference");
    // The first block opened by `open`, up to the line `close`.
    let block = |open: &str, close: &str| -> String {
        let start = text.find(open).unwrap_or_else(|| panic!("no {open} block")) + open.len();
        let body = &text[start..];
        let end = body.find(&format!("\n{close}\n")).expect("a closed block");
        body[..end + 1].to_string()
    };
    let json_example: Value = serde_json::from_str(&block("```json\n", "```")).expect("JSON");
    let md = block("````markdown\n", "````");
    let ws = ws(&md);
    let out = ws.pflow().args(["convert", FILE, "--to", "json"]).output();
    let mut ir: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    for n in ir["nodes"].as_array_mut().expect("nodes") {
        n.as_object_mut().map(|n| n.remove("purpose"));
    }
    for (k, spec) in [("inputs", "name"), ("outputs", "message")] {
        ir[k][spec].as_object_mut().map(|s| s.remove("description"));
    }
    let mut want = json_example.clone();
    for k in ["$schema", "ir_version"] {
        want.as_object_mut().map(|m| m.remove(k));
    }
    for (k, spec) in [("inputs", "name"), ("outputs", "message")] {
        want[k][spec]
            .as_object_mut()
            .map(|s| s.remove("description"));
    }
    want["edges"] = json!([{"from": "greet", "to": "shout"}]);
    assert_eq!(ir, want);
    let r = ws.cmd().workflow_file(FILE).arg("name=Ada").run();
    r.assert_ok();
    assert_eq!(r.output("message"), &json!("HELLO, ADA"));
    assert_eq!(r.doc()["warnings"], json!([]), "{r}");
}

#[test]
fn a_bad_front_matter_field_is_shown_at_its_line() {
    let md = "---\nauthor: someone\ntemplate_resolution_mode: lenient\n---\n# T\n\nAbout.\n\n## Steps\n\n### a\n\nSays hi.\n\n- type: echo\n- message: hi\n";
    let ws = ws(md);
    let out = ws.pflow().args(["validate", FILE]).output();
    let stderr = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("flow.pflow.md:3:1: template_resolution_mode: invalid mode \"lenient\""),
        "{stderr}"
    );
}

#[test]
fn a_pflow_md_in_the_saved_workflows_folder_runs_by_name() {
    // Where the original pflow saves workflows: $PFLOW_HOME/workflows/NAME.pflow.md.
    let ws = Workspace::new();
    let saved = ws.home_dir().join("workflows");
    std::fs::create_dir_all(&saved).expect("mkdir");
    let md = format!(
        "---\ncreated_at: '2026-01-01T00:00:00'\nexecution_count: 3\n---\n\n{}",
        flow("hi", "Greets, from the saved folder.")
    );
    std::fs::write(saved.join("greeter.pflow.md"), &md).expect("write");
    let r = ws.cmd().workflow_file("greeter").arg("name=bo").run();
    r.assert_ok();
    assert_eq!(r.output("message"), &json!("HI, BO"));
    // Its file is left as it is (no run metadata is written into the user's Markdown).
    assert_eq!(
        std::fs::read_to_string(saved.join("greeter.pflow.md")).unwrap(),
        md
    );

    let out = ws
        .pflow()
        .args(["workflow", "list", "--output-format", "json"])
        .output();
    let list: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(list[0]["name"], json!("greeter"), "{list}");
    assert_eq!(
        list[0]["description"],
        json!("Greets, from the saved folder."),
        "{list}"
    );
    let out = ws.pflow().args(["workflow", "show", "greeter"]).output();
    let shown: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown["ir"]["nodes"][1]["id"], json!("shout"), "{shown}");
    let out = ws.pflow().args(["workflow", "delete", "greeter"]).output();
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    assert!(!saved.join("greeter.pflow.md").exists());
}
