//! A value templated into a shell command reaches it as text and never as code: pflow
//! passes it in a variable and quotes the reference for its spot. Checked through every
//! route a value takes (an input, a file `read-file` read, an upstream stdout, a batch
//! item, an HTTP response), in plain text, double quotes and single quotes; the unsafe
//! spelling (`|raw`) is warned about, refused under `--strict`, and really does run code,
//! which shows that these tests would catch an injection.

use crate::common::{self, Workspace};
use crate::stub::{Reply, Stub};
use serde_json::{json, Value};

/// Values that would run `touch` or split into words if pasted into the command.
const HOSTILE: &[&str] = &[
    "Ada; touch pwned1",
    "$(touch pwned2)",
    "`touch pwned3`",
    "it's \"quoted\" && touch pwned4 | cat",
    "my file with spaces.txt",
    "${HOME} $HOME \\ \\n * ~",
];

/// A command printing `value` three ways, one line each: plain, in double quotes, in
/// single quotes.
fn three_ways(value: &str) -> String {
    format!("printf '%s\\n' {value} \"{value}\" '{value}'")
}

fn assert_nothing_ran(ws: &Workspace) {
    for n in 1..=4 {
        assert!(
            !ws.exists(&format!("pwned{n}")),
            "a value ran: pwned{n} exists"
        );
    }
}

fn assert_three_lines(out: &Value, value: &str) {
    let text = out.as_str().expect("text output");
    assert_eq!(text, format!("{value}\n{value}\n{value}"), "{text}");
}

#[test]
fn an_input_reaches_the_command_as_text() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string"}},
        "nodes": [{"id": "show", "type": "shell", "params": {"command": three_ways("${name}")}}],
        "outputs": {"shown": {"source": "${show.stdout}"}}
    }));
    for value in HOSTILE {
        let r = ws.build(&[&format!("name={value}")]);
        r.assert_ok();
        assert_three_lines(r.output("shown"), value);
        assert_nothing_ran(&ws);
    }
}

#[test]
fn file_contents_stdout_and_batch_items_reach_the_command_as_text() {
    let ws = Workspace::new();
    ws.write("data.json", &serde_json::to_string(HOSTILE).unwrap());
    ws.write("evil.txt", "Ada; touch pwned1 $(touch pwned2)");
    ws.set_workflow(&json!({
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "evil.txt"}},
            {"id": "from_file", "type": "shell", "params": {"command": three_ways("${read.content}")}},
            {"id": "list", "type": "shell", "params": {"command": "cat data.json"}},
            {"id": "first", "type": "shell", "params": {"command": "echo 'Ada; touch pwned3'"}},
            {"id": "from_stdout", "type": "shell", "params": {"command": three_ways("${first.stdout}")}},
            {"id": "each", "type": "shell", "batch": {"items": "${list.stdout}"},
             "params": {"command": three_ways("${item}")}}
        ],
        "outputs": {
            "from_file": {"source": "${from_file.stdout}"},
            "from_stdout": {"source": "${from_stdout.stdout}"},
            "each": {"source": "${each.results}"}
        }
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_nothing_ran(&ws);
    assert_three_lines(r.output("from_file"), "Ada; touch pwned1 $(touch pwned2)");
    assert_three_lines(r.output("from_stdout"), "Ada; touch pwned3");
    let items = r.output("each").as_array().expect("batch results");
    assert_eq!(items.len(), HOSTILE.len());
    for (item, value) in items.iter().zip(HOSTILE) {
        assert_three_lines(&item["stdout"], value);
    }
}

#[test]
fn an_http_response_reaches_the_command_as_text() {
    let stub =
        Stub::start(|_, _| Reply::text(200, "text/plain", "hi $(touch pwned1); touch pwned2"));
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "get", "type": "http", "params": {"url": format!("{}/page", stub.url())}},
            {"id": "show", "type": "shell", "params": {"command": three_ways("${get.response}")}}
        ],
        "outputs": {"shown": {"source": "${show.stdout}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_nothing_ran(&ws);
    assert_three_lines(r.output("shown"), "hi $(touch pwned1); touch pwned2");
}

#[test]
fn a_path_with_spaces_names_one_file() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"path": {"type": "string"}},
        "nodes": [{"id": "count", "type": "shell", "params": {"command": "wc -c < ${path} && cat ${path}"}}],
        "outputs": {"out": {"source": "${count.stdout}"}}
    }));
    ws.write("my notes.txt", "hello");
    let r = ws.build(&["path=my notes.txt"]);
    r.assert_ok();
    assert_eq!(r.output("out"), "5\nhello");
}

#[test]
fn the_bundled_example_greets_a_hostile_name_without_running_it() {
    let ws = Workspace::new();
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/hello.json");
    let r = ws
        .cmd()
        .workflow_file(fixture.to_str().unwrap())
        .arg("name=Ada; touch pwned1")
        .run();
    r.assert_ok();
    assert_eq!(r.output("message"), "HELLO, ADA; TOUCH PWNED1");
    assert_nothing_ran(&ws);
}

#[test]
fn raw_is_warned_refused_under_strict_and_really_pastes_code() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"name": {"type": "string"}},
        "nodes": [{"id": "greet", "type": "shell", "params": {"command": "echo Hello, ${name|raw}"}}],
        "outputs": {"said": {"source": "${greet.stdout}"}}
    }));
    let validate = ws
        .pflow()
        .arg("validate")
        .arg(ws.file(common::WORKFLOW))
        .output();
    assert_eq!(validate.status.code(), Some(0));
    let warned = String::from_utf8_lossy(&validate.stderr).into_owned();
    assert!(
        warned.contains("nodes[0].params.command")
            && warned.contains("${name|raw}")
            && warned.contains("the input 'name'")
            && warned.contains("write ${name}"),
        "{warned}"
    );

    let strict = ws
        .pflow()
        .args(["validate", "--strict"])
        .arg(ws.file(common::WORKFLOW))
        .output();
    assert_eq!(strict.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&strict.stderr).contains("error:"));

    let refused = ws.build(&["--strict", "name=Ada; touch pwned1"]);
    refused.assert_code(2);
    assert!(!ws.exists("pwned1"));

    // Without --strict the workflow asked for code, and gets it: this is what every test
    // above would see if a value were pasted.
    let r = ws.build(&["name=Ada; touch pwned1"]);
    r.assert_ok();
    assert_eq!(r.output("said"), "Hello, Ada");
    assert!(ws.exists("pwned1"));
}

/// A value in a here-document with a quoted delimiter cannot be a variable there; it is
/// refused instead of pasted (a line `EOF` in it would end the document and run the
/// rest), also when the scanner could misread a spot as such a body.
#[test]
fn a_quoted_here_document_is_refused_not_pasted() {
    let ws = Workspace::new().workflow(json!({
        "inputs": {"x": {"type": "string"}},
        "nodes": [{"id": "a", "type": "shell", "params": {"command": "cat <<'EOF'\n${x}\nEOF"}}]
    }));
    let r = ws.build(&["x=hi\nEOF\ntouch pwned1"]);
    r.assert_code(2);
    assert!(
        r.errors()[0]["message"]
            .as_str()
            .unwrap()
            .contains("quoted delimiter"),
        "{r}"
    );
    assert_nothing_ran(&ws);
    // A delimiter with a `$` in it is read whole: what follows the document is plain text.
    let ws = Workspace::new().workflow(json!({
        "inputs": {"x": {"type": "string"}},
        "nodes": [{"id": "a", "type": "shell", "params": {"command": "cat <<'E'$\nhello\nE$\necho ${x}"}}],
        "outputs": {"o": {"source": "${a.stdout}"}}
    }));
    let r = ws.build(&["x=hi;touch pwned1"]);
    r.assert_ok();
    assert_eq!(r.output("o"), "hello\nhi;touch pwned1");
    assert_nothing_ran(&ws);
}
