//! The `http` node against a loopback server started by each test.

use crate::stub;

use serde_json::{json, Value};
use std::time::Duration;
use stub::{Project, Reply, Stub};

fn fetch(url: &str, extra: Value) -> Value {
    let mut params = json!({"url": url});
    if let (Some(p), Some(e)) = (params.as_object_mut(), extra.as_object()) {
        p.extend(e.clone());
    }
    json!({"nodes": [{"id": "fetch", "type": "http", "params": params}],
           "outputs": {"response": {"source": "${fetch.response}"},
                       "status": {"source": "${fetch.status_code}"},
                       "headers": {"source": "${fetch.response_headers}"}}})
}

#[test]
fn json_response_resolves_through_templates() {
    let stub = Stub::start(|_, _| {
        Reply::json(
            200,
            &json!({"items": [{"name": "widget"}, {"name": "gadget"}]}),
        )
        .header("X-Custom", "yes")
    });
    let wf = json!({
        "nodes": [
            {"id": "fetch", "type": "http", "params": {"url": format!("{}/items", stub.url())}},
            {"id": "show", "type": "shell", "params": {"command": "echo first=${fetch.response.items[0].name}"}}
        ],
        "outputs": {"first": {"source": "${show.stdout}"},
                    "status": {"source": "${fetch.status_code}"},
                    "headers": {"source": "${fetch.response_headers}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("first"), "first=widget", "{r}");
    assert_eq!(r.output("status"), 200);
    assert_eq!(r.output("headers")["x-custom"], "yes", "{r}");
    assert_eq!(r.output("headers")["content-type"], "application/json");
    let req = stub.single();
    assert_eq!(
        (req.method.as_str(), req.target.as_str()),
        ("GET", "/items")
    );
    assert!(req.body.is_empty());
}

#[test]
fn request_carries_method_body_query_headers_and_bearer_token() {
    let stub = Stub::start(|_, _| Reply::json(201, &json!({"ok": true})));
    let wf = fetch(
        &format!("{}/things?fixed=1", stub.url()),
        json!({"body": {"name": "n", "tags": [1, 2]}, "params": {"q": "a b", "n": 3},
               "headers": {"X-Trace": "t1"}, "auth_token": "tok-SECRET-1234"}),
    );
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), &json!({"ok": true}));
    assert_eq!(r.output("status"), 201);
    let req = stub.single();
    assert_eq!(req.method, "POST", "a body makes the default method POST");
    assert_eq!(req.target, "/things?fixed=1&q=a+b&n=3");
    assert_eq!(req.header("content-type"), Some("application/json"));
    assert_eq!(req.json(), json!({"name": "n", "tags": [1, 2]}));
    assert_eq!(req.header("x-trace"), Some("t1"));
    assert_eq!(req.header("authorization"), Some("Bearer tok-SECRET-1234"));
    assert!(!r.mentions("tok-SECRET-1234"), "the token leaked: {r}");
}

#[test]
fn api_key_header_and_raw_text_body() {
    let stub = Stub::start(|_, _| Reply::text(200, "text/plain; charset=utf-8", "stored"));
    let wf = fetch(
        &stub.url(),
        json!({"method": "put", "body": "raw text", "api_key": "key-SECRET-5678",
               "api_key_header": "X-Token"}),
    );
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), "stored", "text bodies stay text");
    let req = stub.single();
    assert_eq!(req.method, "PUT");
    assert_eq!(req.text(), "raw text");
    assert_eq!(
        req.header("content-type"),
        None,
        "a text body gets no JSON content type"
    );
    assert_eq!(req.header("x-token"), Some("key-SECRET-5678"));
    assert!(!r.mentions("key-SECRET-5678"), "the key leaked: {r}");
}

#[test]
fn binary_responses_become_base64_text() {
    let stub = Stub::start(|_, _| Reply {
        status: 200,
        headers: vec![("content-type".into(), "image/png".into())],
        body: vec![0x89, b'P', b'N', b'G'],
        delay: Duration::ZERO,
    });
    let r = Project::new().build_value(&fetch(&stub.url(), json!({})), &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), "iVBORw==");
}

#[test]
fn statuses_map_to_categories_without_leaking_the_token() {
    // The server echoes the Authorization header back in its error bodies.
    let stub = Stub::start(|req, _| {
        let status: u16 = req.path().trim_start_matches('/').parse().unwrap_or(500);
        let echo = req.header("authorization").unwrap_or("").to_string();
        Reply::json(
            status,
            &json!({"error": {"message": format!("no: {echo}")}}),
        )
    });
    let node = |id: &str, status: u16| {
        json!({"id": id, "type": "http",
               "params": {"url": format!("{}/{status}", stub.url()), "auth_token": "tok-SECRET-9999"}})
    };
    let wf = json!({"nodes": [node("unauthorized", 401), node("forbidden", 403),
                              node("limited", 429), node("missing", 404),
                              node("unprocessable", 422), node("broken", 503)]});
    let r = Project::new().build_value(&wf, &[]);
    assert_eq!(r.code, 1, "{r}");
    let errors = r.json["errors"].as_array().cloned().unwrap_or_default();
    let got = |id: &str| {
        errors
            .iter()
            .find(|e| e["node"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no error for {id}: {r}"))
    };
    for (id, category, status) in [
        ("unauthorized", "auth", 401),
        ("forbidden", "auth", 403),
        ("limited", "rate_limit", 429),
        ("missing", "http", 404),
        ("unprocessable", "http", 422),
        ("broken", "server", 503),
    ] {
        let e = got(id);
        assert_eq!(e["category"], category, "{id}: {e}");
        assert_eq!(e["status_code"], status, "{id}: {e}");
        let msg = e["message"].as_str().unwrap_or("");
        assert!(msg.contains(&format!("HTTP {status}")), "{id}: {msg}");
    }
    assert_eq!(got("missing")["repairable"], true);
    assert_eq!(got("unauthorized")["repairable"], false);
    assert_eq!(stub.count(), 6, "no http request is retried");
    assert!(!r.mentions("tok-SECRET-9999"), "the token leaked: {r}");
}

#[test]
fn error_handlers_see_the_partial_outputs() {
    let stub = Stub::start(|_, _| Reply::json(404, &json!({"error": "no such user"})));
    let wf = json!({
        "nodes": [
            {"id": "fetch", "type": "http", "params": {"url": format!("{}/users/9", stub.url())}},
            {"id": "handle", "type": "shell",
             "params": {"command": "echo got ${fetch.status_code}: ${fetch.response.error}"}}
        ],
        "edges": [{"from": "fetch", "to": "handle", "action": "error"}],
        "outputs": {"handled": {"source": "${handle.stdout}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("handled"), "got 404: no such user", "{r}");
}

#[test]
fn a_timeout_fails_with_category_network() {
    let stub = Stub::start(|_, _| Reply::json(200, &json!({})).after(Duration::from_secs(5)));
    let r = Project::new().build_value(&fetch(&stub.url(), json!({"timeout": 0.5})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "network", "{r}");
    assert!(message.contains("timed out after 0.5s"), "{message}");
    assert_eq!(stub.count(), 1);
    assert!(r.elapsed < Duration::from_secs(4), "took {:?}", r.elapsed);
}

#[test]
fn a_refused_connection_fails_with_category_network() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let url = format!("http://127.0.0.1:{port}/x?api_key=QUERY-SECRET");
    let r = Project::new().build_value(&fetch(&url, json!({})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "network", "{r}");
    assert!(message.contains("cannot connect"), "{message}");
    assert!(
        message.contains(&format!("127.0.0.1:{port}/x")),
        "{message}"
    );
    assert!(!r.mentions("QUERY-SECRET"), "the query string leaked: {r}");
}

#[test]
fn cached_requests_are_not_sent_again() {
    let stub = Stub::start(|req, _| Reply::json(200, &json!({"path": req.path()})));
    let p = Project::new();
    let wf = |path: &str| fetch(&format!("{}/{path}", stub.url()), json!({}));
    p.build_value(&wf("a"), &[]).assert_ok();
    let r = p.build_value(&wf("a"), &[]);
    r.assert_ok();
    assert_eq!(r.status_of("fetch"), "cached", "{r}");
    assert_eq!(stub.count(), 1, "a cached build sends nothing");
    let r = p.build_value(&wf("b"), &[]);
    r.assert_ok();
    assert_eq!(r.output("response"), &json!({"path": "/b"}));
    assert_eq!(stub.count(), 2, "a changed url sends one request");
}

#[test]
fn a_live_get_with_the_same_body_spares_its_dependents() {
    // Every response carries a different `date` header; it is not part of the outputs,
    // so an unchanged body gives an unchanged digest and the dependent stays cached.
    let stub = Stub::start(|_, n| {
        let date = httpdate::fmt_http_date(
            std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + n as u64),
        );
        Reply::json(200, &json!({"v": 1})).header("date", &date)
    });
    let wf = json!({
        "nodes": [
            {"id": "fetch", "type": "http", "cache": false, "params": {"url": stub.url()}},
            {"id": "use", "type": "shell", "params": {"command": "echo ${fetch.response.v}"}}
        ]
    });
    let p = Project::new();
    p.build_value(&wf, &[]).assert_ok();
    let r = p.build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(stub.count(), 2, "cache: false runs every build");
    assert_eq!(r.status_of("fetch"), "ran", "{r}");
    assert_eq!(r.status_of("use"), "cached", "{r}");
}

#[test]
fn loopback_requests_bypass_proxies() {
    let stub = Stub::start(|_, _| Reply::json(200, &json!({"ok": 1})));
    let mut p = Project::new();
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
    let r = p.build_value(&fetch(&stub.url(), json!({})), &[]);
    r.assert_ok();
    assert_eq!(stub.count(), 1);
}

#[test]
fn bad_params_fail_before_any_request() {
    let stub = Stub::start(|_, _| Reply::json(200, &json!({})));
    let r = Project::new().build_value(&fetch(&stub.url(), json!({"method": "FETCH"})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "validation", "{r}");
    assert!(message.contains("GET, POST"), "{message}");
    assert_eq!(stub.count(), 0);
}

#[test]
fn a_response_over_the_size_limit_is_an_error_not_unbounded_memory() {
    let big = "x".repeat(50_000);
    let stub = Stub::start(move |_, _| Reply::text(200, "text/plain", &big));
    let p = Project::new().env("PFLOW_MAX_RESPONSE_BYTES", "10000");
    let r = p.build_value(&fetch(&stub.url(), json!({})), &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "network", "{r}");
    assert!(message.contains("larger than 10000 bytes"), "{message}");
    assert!(message.contains("PFLOW_MAX_RESPONSE_BYTES"), "{message}");
    // At the limit it is fine.
    let p = Project::new().env("PFLOW_MAX_RESPONSE_BYTES", "50000");
    p.build_value(&fetch(&stub.url(), json!({})), &[])
        .assert_ok();
}
