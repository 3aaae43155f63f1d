//! Workflows written for the original pflow that call the network, built against
//! loopback servers. The files are read from `../shared/compat/pflow-examples` at test
//! time; the batch tests build a copy whose URL points at the stub.

use crate::common;
use crate::stub;

use serde_json::{json, Value};
use stub::{anthropic_server, user_prompt, Project, Reply, Stub};

#[test]
fn test_llm_templates_builds_against_a_loopback_anthropic_server() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    let stub = Stub::start(anthropic_server(|req| {
        format!("A short answer to: {}", user_prompt(req))
    }));
    let p = Project::new()
        .env("ANTHROPIC_BASE_URL", stub.url())
        .env("ANTHROPIC_API_KEY", "sk-ant-compat-test");
    let file = p.write(
        "test_llm_templates.json",
        &corpus.read("test_llm_templates.json"),
    );
    let r = p.build(&file, &["topic=build caches"]);
    r.assert_ok();

    let req = stub.single();
    let body = req.json();
    // The old pflow model name is sent as an Anthropic model id, unchanged.
    assert_eq!(body["model"], "claude-3.5-haiku");
    assert_eq!(body["max_tokens"], 200);
    assert_eq!(body["temperature"], 0.7);
    let prompt = user_prompt(&req);
    assert_eq!(
        prompt,
        "Write a professional explanation about build caches in exactly 50 words. Be concise and clear."
    );
    assert_eq!(
        r.output("response"),
        &Value::String(format!("A short answer to: {prompt}"))
    );
    assert_eq!(r.output("llm_usage")["input_tokens"], 11);
    assert_eq!(r.output("llm_usage")["output_tokens"], 7);
}

fn users() -> Value {
    json!([
        {"id": 1, "name": "Leanne Graham", "username": "Bret"},
        {"id": 2, "name": "Ervin Howell", "username": "Antonette"},
        {"id": 3, "name": "Clementine Bauch", "username": "Samantha"}
    ])
}

/// Build a copy of a batch example whose `fetch_users` URL points at a stub serving
/// users, with an output added to see the greetings.
fn build_batch_example(corpus: &common::Corpus, file: &str) {
    let stub = Stub::start(|req, _| match req.path() {
        "/users" => Reply::json(200, &users()),
        _ => Reply::json(404, &json!({})),
    });
    let mut doc = corpus.read(file);
    let fetch = doc["nodes"]
        .as_array_mut()
        .and_then(|nodes| nodes.iter_mut().find(|n| n["id"] == "fetch_users"))
        .unwrap_or_else(|| panic!("{file} has no fetch_users node"));
    assert_eq!(
        fetch["params"]["url"],
        "https://jsonplaceholder.typicode.com/users"
    );
    fetch["params"]["url"] = json!(format!("{}/users", stub.url()));
    doc["outputs"] = json!({"greetings": {"source": "${greet_users.results}"}});

    let p = Project::new();
    let path = p.write(file, &doc);
    let r = p.build(&path, &[]);
    r.assert_ok();
    let req = stub.single();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("GET", "/users")
    );
    let greetings: Vec<String> = r
        .output("greetings")
        .as_array()
        .map(|a| {
            a.iter()
                .map(|g| g["stdout"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        greetings,
        [
            "Hello, Leanne Graham!",
            "Hello, Ervin Howell!",
            "Hello, Clementine Bauch!"
        ],
        "{r}"
    );

    // Nothing changed: no request, nothing runs.
    let r = p.build(&path, &[]);
    r.assert_ok();
    assert_eq!(stub.count(), 1, "{r}");
    assert_eq!(r.status_of("greet_users"), "cached", "{r}");
}

#[test]
fn batch_test_builds_against_a_loopback_server() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    build_batch_example(&corpus, "batch-test.json");
}

#[test]
fn batch_test_parallel_builds_against_a_loopback_server() {
    let Some(corpus) = common::corpus() else {
        return;
    };
    build_batch_example(&corpus, "batch-test-parallel.json");
}
