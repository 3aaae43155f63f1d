//! The `llm` node and the LLM client against loopback servers speaking the Anthropic
//! Messages and OpenAI chat-completions protocols.

use crate::stub;

use serde_json::{json, Value};
use std::time::Duration;
use stub::{anthropic_error, anthropic_server, openai_server, user_prompt, Project, Reply, Stub};

const KEY: &str = "sk-ant-test-KEY-0123456789";

fn anthropic_project(stub: &Stub) -> Project {
    Project::new()
        .env("ANTHROPIC_BASE_URL", stub.url())
        .env("ANTHROPIC_API_KEY", KEY)
}

fn echo_stub() -> Stub {
    Stub::start(anthropic_server(|req| {
        format!("echo: {}", user_prompt(req))
    }))
}

/// One llm node with these params, exposing its outputs.
fn llm(params: Value) -> Value {
    json!({
        "inputs": {"name": {"type": "string", "required": false, "default": "Bob"}},
        "nodes": [{"id": "ask", "type": "llm", "params": params}],
        "outputs": {"response": {"source": "${ask.response}"},
                    "usage": {"source": "${ask.llm_usage}"}}
    })
}

#[test]
fn anthropic_request_follows_the_messages_protocol() {
    let stub = echo_stub();
    let wf = llm(
        json!({"model": "anthropic/claude-haiku-4-5", "prompt": "Say hi to ${name}",
                        "system": "Be brief.", "max_tokens": 50}),
    );
    let r = anthropic_project(&stub).build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), "echo: Say hi to Bob");
    assert_eq!(
        r.output("usage"),
        &json!({"model": "claude-haiku-4-5", "input_tokens": 11, "output_tokens": 7})
    );
    let req = stub.single();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/messages")
    );
    assert_eq!(req.header("x-api-key"), Some(KEY));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({"model": "claude-haiku-4-5", "max_tokens": 50, "system": "Be brief.",
               "messages": [{"role": "user", "content": "Say hi to Bob"}]}),
        "no temperature unless set; system at the top level"
    );
}

#[test]
fn anthropic_defaults_and_temperature_when_set() {
    let stub = echo_stub();
    let wf = llm(json!({"prompt": {"task": "sum", "n": [1, 2]}, "temperature": 0.2}));
    let r = anthropic_project(&stub).build_value(&wf, &[]);
    r.assert_ok();
    let body = stub.single().json();
    assert_eq!(
        body,
        json!({"model": "claude-haiku-4-5", "max_tokens": 4096, "temperature": 0.2,
               "messages": [{"role": "user", "content": "{\"n\":[1,2],\"task\":\"sum\"}"}]}),
        "default model without its prefix, max_tokens 4096, an object prompt as canonical JSON text"
    );
}

#[test]
fn openai_request_follows_the_chat_completions_protocol() {
    let stub = Stub::start(openai_server(|req| format!("echo: {}", user_prompt(req))));
    let p = Project::new()
        .env("OPENAI_BASE_URL", format!("{}/v1", stub.url()))
        .env("OPENAI_API_KEY", "sk-openai-KEY-42");
    let wf = llm(
        json!({"model": "openai/qwen3-coder", "prompt": "Hi ${name}",
                        "system": "Be brief.", "max_tokens": 64, "temperature": 0}),
    );
    let r = p.build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), "echo: Hi Bob");
    assert_eq!(
        r.output("usage"),
        &json!({"model": "qwen3-coder", "input_tokens": 13, "output_tokens": 5})
    );
    let req = stub.single();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("POST", "/v1/chat/completions")
    );
    assert_eq!(req.header("authorization"), Some("Bearer sk-openai-KEY-42"));
    assert_eq!(req.header("x-api-key"), None);
    assert_eq!(req.header("anthropic-version"), None);
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(
        req.json(),
        json!({"model": "qwen3-coder",
               "messages": [{"role": "system", "content": "Be brief."},
                            {"role": "user", "content": "Hi Bob"}],
               "max_tokens": 64, "temperature": 0.0})
    );
}

#[test]
fn a_local_openai_server_needs_no_key() {
    let stub = Stub::start(openai_server(|_| "local".into()));
    let p = Project::new().env("OPENAI_BASE_URL", format!("{}/v1", stub.url()));
    let r = p.build_value(
        &llm(json!({"model": "openai/llama3.2:3b", "prompt": "x"})),
        &[],
    );
    r.assert_ok();
    assert_eq!(r.output("response"), "local");
    let req = stub.single();
    assert_eq!(req.header("authorization"), None);
    assert_eq!(req.json()["model"], "llama3.2:3b");
    assert!(req.json().get("temperature").is_none());
}

#[test]
fn the_default_model_comes_from_pflow_llm_model_and_is_part_of_the_key() {
    let anthropic = echo_stub();
    let openai = Stub::start(openai_server(|_| "from openai".into()));
    let mut p = anthropic_project(&anthropic)
        .env("OPENAI_BASE_URL", format!("{}/v1", openai.url()))
        .env("PFLOW_LLM_MODEL", "anthropic/claude-haiku-5-5");
    let wf = llm(json!({"prompt": "same prompt"}));
    p.build_value(&wf, &[]).assert_ok();
    assert_eq!(anthropic.single().json()["model"], "claude-haiku-5-5");

    p.set_env("PFLOW_LLM_MODEL", "openai/qwen3");
    let r = p.build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(
        r.status_of("ask"),
        "ran",
        "a new default model re-runs the node: {r}"
    );
    assert_eq!(r.output("response"), "from openai");
    assert_eq!(openai.single().json()["model"], "qwen3");
    assert_eq!(anthropic.count(), 1);
}

#[test]
fn a_second_build_sends_nothing_and_a_changed_input_sends_one_request() {
    let stub = echo_stub();
    let p = anthropic_project(&stub);
    let wf = llm(json!({"prompt": "Say hi to ${name}"}));
    p.build_value(&wf, &[]).assert_ok();
    assert_eq!(stub.count(), 1);

    let r = p.build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.status_of("ask"), "cached", "{r}");
    assert_eq!(r.output("response"), "echo: Say hi to Bob");
    assert_eq!(stub.count(), 1, "the same prompt is not sent again");

    let r = p.build_value(&wf, &["name=Alice"]);
    r.assert_ok();
    assert_eq!(r.output("response"), "echo: Say hi to Alice");
    assert_eq!(stub.count(), 2, "a changed input sends exactly one request");
}

#[test]
fn overloaded_529_with_retry_after_is_retried_once() {
    let stub = echo_stub().script(vec![
        anthropic_error(529, "overloaded_error", "Overloaded").header("retry-after", "1")
    ]);
    let r = anthropic_project(&stub).build_value(&llm(json!({"prompt": "hello"})), &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), "echo: hello");
    assert_eq!(stub.count(), 2, "exactly two requests");
    let reqs = stub.requests();
    let gap = reqs[1].received - reqs[0].received;
    assert!(
        gap >= Duration::from_secs(1),
        "retry-after: 1 was not honoured ({gap:?})"
    );
    assert!(gap < Duration::from_secs(3), "waited too long ({gap:?})");
    assert_eq!(
        reqs[0].body, reqs[1].body,
        "the retry sends the same request"
    );
}

#[test]
fn rate_limit_honours_retry_after_ms() {
    let stub =
        echo_stub()
            .script(vec![anthropic_error(429, "rate_limit_error", "slow down")
                .header("retry-after-ms", "50")]);
    let r = anthropic_project(&stub).build_value(&llm(json!({"prompt": "hello"})), &[]);
    r.assert_ok();
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2);
    let gap = reqs[1].received - reqs[0].received;
    assert!(
        gap >= Duration::from_millis(50),
        "retried too early ({gap:?})"
    );
    assert!(
        gap < Duration::from_millis(300),
        "waited the backoff, not 50 ms ({gap:?})"
    );
}

#[test]
fn a_rejected_key_fails_after_one_request_without_showing_the_key() {
    // The server quotes the key back, as some APIs do.
    let stub = Stub::start(|req, _| {
        let got = req.header("x-api-key").unwrap_or("").to_string();
        anthropic_error(
            401,
            "authentication_error",
            &format!("invalid x-api-key: {got}"),
        )
    });
    let r = anthropic_project(&stub).build_value(&llm(json!({"prompt": "hello"})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "auth", "{r}");
    assert!(
        message.contains("ANTHROPIC_API_KEY was rejected"),
        "{message}"
    );
    assert_eq!(r.json["errors"][0]["repairable"], false);
    assert_eq!(stub.count(), 1, "401 is not retried");
    assert!(!r.mentions(KEY), "the key leaked: {r}");
}

#[test]
fn a_missing_key_names_the_variable_and_sends_nothing() {
    let stub = echo_stub();
    let p = Project::new().env("ANTHROPIC_BASE_URL", stub.url());
    let r = p.build_value(&llm(json!({"prompt": "hello"})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "missing_api_key", "{r}");
    assert!(message.contains("ANTHROPIC_API_KEY"), "{message}");
    assert_eq!(stub.count(), 0);
}

#[test]
fn an_unknown_model_is_named_and_not_retried() {
    let stub = Stub::start(|req, _| {
        let model = req.json()["model"].as_str().unwrap_or("").to_string();
        anthropic_error(404, "not_found_error", &format!("model: {model}"))
    });
    let r = anthropic_project(&stub).build_value(
        &llm(json!({"prompt": "x", "model": "claude-3-haiku-20240307"})),
        &[],
    );
    let (category, message) = r.failed_with();
    assert_eq!(category, "http", "{r}");
    assert_eq!(r.json["errors"][0]["status_code"], 404);
    assert!(
        message.contains("model 'claude-3-haiku-20240307' was not found"),
        "{message}"
    );
    assert!(
        message.contains("req_stub"),
        "the request id helps support: {message}"
    );
    assert_eq!(stub.count(), 1);
}

#[test]
fn a_non_json_error_body_still_gives_a_clear_message() {
    let stub = Stub::start(|_, _| {
        Reply::text(
            502,
            "text/html",
            "<html><body><h1>502 Bad Gateway</h1></body></html>",
        )
        .header("x-should-retry", "false")
    });
    let r = anthropic_project(&stub).build_value(&llm(json!({"prompt": "x"})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "server", "{r}");
    assert!(
        message.contains("HTTP 502") && message.contains("502 Bad Gateway"),
        "{message}"
    );
    assert_eq!(stub.count(), 1, "x-should-retry: false is obeyed");
}

#[test]
fn text_blocks_are_chosen_by_type() {
    let stub = Stub::start(|_, _| {
        Reply::json(
            200,
            &json!({
            "type": "message", "role": "assistant", "model": "claude-haiku-5-5",
            "content": [{"type": "thinking", "thinking": "", "signature": "sig"},
                        {"type": "text", "text": "{\"a\": "}, {"type": "text", "text": "1}"}],
            "stop_reason": "end_turn", "usage": {"input_tokens": 3, "output_tokens": 4}}),
        )
    });
    let wf = json!({
        "nodes": [{"id": "ask", "type": "llm", "params": {"prompt": "json please"}}],
        "outputs": {"a": {"source": "${ask.response.a}"}}
    });
    let r = anthropic_project(&stub).build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("a"), 1, "{r}");
}

#[test]
fn an_unusable_reply_is_llm_output() {
    let stub = Stub::start(|_, _| Reply::text(200, "text/html", "<html>captive portal</html>"));
    let r = anthropic_project(&stub).build_value(&llm(json!({"prompt": "x"})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "llm_output", "{r}");
    assert!(message.contains("captive portal"), "{message}");
}

#[test]
fn an_unknown_provider_fails_before_any_request() {
    let stub = echo_stub();
    let r = anthropic_project(&stub).build_value(
        &llm(json!({"prompt": "x", "model": "gemini/gemini-2.5-flash"})),
        &[],
    );
    let (category, message) = r.failed_with();
    assert_eq!(category, "validation", "{r}");
    assert!(message.contains("unknown provider 'gemini'"), "{message}");
    assert_eq!(stub.count(), 0);
}

#[test]
fn llm_calls_to_loopback_bypass_proxies() {
    let stub = echo_stub();
    let mut p = anthropic_project(&stub);
    for var in [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ] {
        p.set_env(var, "http://127.0.0.1:9");
    }
    p.set_env("NO_PROXY", "");
    p.set_env("no_proxy", "");
    p.build_value(&llm(json!({"prompt": "x"})), &[]).assert_ok();
    assert_eq!(stub.count(), 1);
}

#[test]
fn fixture_fetch_and_summarize_chains_http_into_llm() {
    let anthropic = anthropic_server(|req| format!("Summary of: {}", user_prompt(req)));
    let stub = Stub::start(move |req, n| match req.path() {
        "/items" => Reply::json(
            200,
            &json!({"items": [{"name": "widget"}, {"name": "gadget"}]}),
        ),
        _ => anthropic(req, n),
    });
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/network/fetch-and-summarize.json");
    let url = format!("url={}/items", stub.url());
    let r = anthropic_project(&stub).build(&fixture, &[url.as_str()]);
    r.assert_ok();
    assert_eq!(r.output("first"), "widget");
    let prompt = r#"Summarize these items in one sentence: [{"name":"widget"},{"name":"gadget"}]"#;
    assert_eq!(
        r.output("summary"),
        &Value::String(format!("Summary of: {prompt}"))
    );
    let reqs = stub.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    assert_eq!(
        reqs[1].json()["system"],
        "You write one-sentence summaries."
    );
}

#[test]
fn ctrl_c_ends_a_slow_llm_call_at_once() {
    let stub = Stub::start(anthropic_server(|_| "late".into()));
    let stub = stub.script(vec![
        Reply::json(200, &json!({})).after(Duration::from_secs(30))
    ]);
    let p = anthropic_project(&stub).env("PFLOW_LLM_TIMEOUT_SECS", "20");
    let file = p.write("workflow.json", &llm(json!({"prompt": "x"})));
    let mut child = p.command(&file, &[]).spawn();
    let started = child.started();
    while stub.count() == 0 && started.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stub.count(), 1, "the request never arrived");
    child.interrupt();
    let out = child.wait();
    let r = stub::Run::new(out, started.elapsed());
    assert_eq!(r.code, 130, "{r}");
    assert!(
        r.elapsed < Duration::from_secs(5),
        "Ctrl-C waited for the request: {r}"
    );
}

/// Tokens and cost: per node in JSON, one line in text, priced from the list (or
/// `PFLOW_LLM_PRICES`); a reused node costs nothing.
#[test]
fn tokens_and_cost_are_reported_per_node_and_in_total() {
    let stub = echo_stub();
    let p = anthropic_project(&stub);
    let doc = llm(json!({"prompt": "hi ${name}", "model": "anthropic/claude-haiku-4-5"}));
    let r = p.build_value(&doc, &[]);
    r.assert_ok();
    let ask = r.json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == "ask")
        .unwrap()
        .clone();
    // The stub reports 11 input and 7 output tokens; haiku is $1 / $5 per million.
    assert_eq!(ask["llm_usage"]["input_tokens"], 11);
    assert_eq!(ask["llm_usage"]["output_tokens"], 7);
    let cost = ask["llm_usage"]["cost_usd"].as_f64().unwrap();
    assert!(
        (cost - (11.0 * 1.0 + 7.0 * 5.0) / 1e6).abs() < 1e-12,
        "{cost}"
    );
    assert_eq!(r.json["llm_usage"][0]["calls"], 1);

    let again = p.build_value(&doc, &[]);
    assert_eq!(
        again.json["llm_usage"],
        json!([]),
        "a reused node costs nothing"
    );

    let file = p.write("workflow.json", &doc);
    let out = crate::common::Pflow::new()
        .current_dir(p.path())
        .env("ANTHROPIC_BASE_URL", stub.url())
        .env("ANTHROPIC_API_KEY", KEY)
        .env("PFLOW_LLM_PRICES", "claude-haiku-4-5=1000/0")
        .arg("build")
        .arg(&file)
        .args(["--no-repair", "--force", "--cache-dir"])
        .arg(p.path().join("text-cache"))
        .output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("llm: 1 call, 11 input + 7 output tokens, $0.0110"),
        "{stderr}"
    );
}

/// A batch counts the calls of its items that ran, not of those served from the cache.
#[test]
fn a_batch_counts_only_the_items_that_ran() {
    let stub = echo_stub();
    let p = anthropic_project(&stub);
    let doc = |items: Value| {
        json!({"nodes": [{"id": "ask", "type": "llm", "batch": {"items": items},
                          "params": {"prompt": "say ${item}", "model": "anthropic/claude-haiku-4-5"}}]})
    };
    let r = p.build_value(&doc(json!(["a", "b"])), &[]);
    r.assert_ok();
    assert_eq!(r.json["llm_usage"][0]["calls"], 2);
    let again = p.build_value(&doc(json!(["a", "b", "c"])), &[]);
    again.assert_ok();
    assert_eq!(stub.count(), 3);
    assert_eq!(
        again.json["llm_usage"][0]["calls"], 1,
        "{}",
        again.json["llm_usage"]
    );
    assert_eq!(again.json["llm_usage"][0]["input_tokens"], 11);
}
