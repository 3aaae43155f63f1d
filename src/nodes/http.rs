//! `http`: one HTTP request.
//!
//! Params: `url`, `method` (GET, or POST when a body is given), `headers`, `body` (an
//! object or array is sent as JSON with `content-type: application/json`; text is sent
//! as is), `params` (query string), `timeout` (seconds, default 30), `auth_token` (sent
//! as `Authorization: Bearer`), `api_key` with `api_key_header` (default `X-API-Key`).
//! Outputs: `response` (parsed when the content type says JSON, base64 text for binary
//! types, text otherwise), `status_code`, `response_headers` (lower-case names; the
//! `date` header is left out so an unchanged response has an unchanged digest).
//!
//! A non-2xx status fails the node with a category by status (401/403 `auth`, 429
//! `rate_limit`, 5xx `server`, other statuses `http`) and the outputs attached; no
//! response at all (refused, timed out) is `network`. The request is not retried: it
//! may have side effects. Credentials never appear in outputs or messages.

use super::{opt, opt_str_param, out, ranged, req, str_param};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::http;
use crate::secrets::is_secret_header;
use base64::Engine;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, Url};
use serde_json::{Map, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub static SPEC: NodeSpec = NodeSpec {
    name: "http",
    summary: "Sends one HTTP request; credentials never follow a redirect to another origin.",
    version: 1,
    params: &[
        req("url", ParamKind::String)
            .doc("The URL.")
            .checked(literal_url_problem),
        opt("method", ParamKind::String).doc("GET, or POST when a body is given."),
        opt("headers", ParamKind::StringMap).doc("Request headers, Name: value."),
        opt("body", ParamKind::Any)
            .doc("The body: objects and arrays are sent as JSON, text as is."),
        opt("params", ParamKind::Object).doc("Query parameters added to the URL."),
        ranged(
            "timeout",
            ParamKind::Number,
            0.001,
            crate::http::MAX_REQUEST_SECS,
        )
        .doc("Seconds before the request is abandoned (default 30)."),
        opt("auth_token", ParamKind::String).doc("Sent as `Authorization: Bearer`; a secret."),
        opt("api_key", ParamKind::String).doc("Sent in the api_key_header; a secret."),
        opt("api_key_header", ParamKind::String)
            .doc("The header api_key goes in (default X-API-Key)."),
    ],
    outputs: &[
        out("response", OutputKind::Json)
            .doc("The body: parsed when JSON, base64 for binary types, else text."),
        out("status_code", OutputKind::Scalar).doc("The HTTP status."),
        out("response_headers", OutputKind::Json)
            .doc("Response headers, lower-case names (without `date`)."),
    ],
    reads_files: &[],
    removes_files: &[],
    writes_files: &[],
    key_env: &[],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &["response"],
    secret_params: &["auth_token", "api_key"],
    secret_header_params: &["headers"],
    announces_effects: false,
    repeats_effects,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: Some(start),
    run,
};

pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
/// Redirects followed before a request fails, as reqwest's default policy does.
const MAX_REDIRECTS: usize = 10;
const METHODS: &[&str] = &["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
/// Response headers left out of the outputs: they change on every response.
const VOLATILE_HEADERS: &[&str] = &["date"];

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let request = Request::from_params(params)?;
    if ctx.interrupted.load(Ordering::SeqCst) {
        return Err(NodeError::new(ErrorCategory::Interrupted, "interrupted"));
    }
    match http::block_on(request.run()) {
        Ok(r) => r,
        Err(e) => Err(request.redacted(e.into_node_error(&request.what(), request.timeout))),
    }
}

/// One run of the node as a future that owns all it needs, for a caller that keeps many
/// in flight on the HTTP runtime instead of a thread each (a batch's items). Bad params
/// fail here, before anything is sent.
fn start(params: &Map<String, Value>) -> Result<super::Started, NodeError> {
    let request = Request::from_params(params)?;
    Ok(Box::pin(async move { request.run().await }))
}

struct Request {
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<Vec<u8>>,
    timeout: Duration,
    /// Credential values to keep out of messages.
    secrets: Vec<String>,
}

struct Response {
    status: u16,
    reason: &'static str,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl Request {
    fn from_params(params: &Map<String, Value>) -> Result<Request, NodeError> {
        let body = body(params.get("body"));
        let mut url = http::parse_http_url(str_param(params, "url")?, "url").map_err(invalid)?;
        add_query(&mut url, params.get("params"))?;
        let mut headers = headers(params.get("headers"))?;
        let mut secrets = sensitive_values(&headers);
        add_credentials(params, &mut headers, &mut secrets)?;
        if let Some((_, json)) = &body {
            if *json && !headers.contains_key(CONTENT_TYPE) {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        Ok(Request {
            method: method(params, body.is_some())?,
            url,
            headers,
            body: body.map(|(bytes, _)| bytes),
            timeout: timeout(params)?,
            secrets,
        })
    }

    /// Send it and turn the response into the node's outputs (a non-2xx status fails).
    async fn run(&self) -> Result<NodeOutput, NodeError> {
        let response = self.send().await?;
        let status = response.status;
        let outputs = response.outputs();
        if (200..300).contains(&status) {
            return Ok(NodeOutput::new(outputs));
        }
        Err(self.status_error(&response).with_outputs(outputs))
    }

    fn what(&self) -> String {
        format!("{} {}", self.method, http::display_url(&self.url))
    }

    /// Send the request, following redirects by hand (as a browser does): when one
    /// leaves the origin, every credential header (`Authorization`, `Cookie`, the
    /// api-key header, any header named like a secret or holding a secret value) is
    /// dropped, since the next server was not the one they were meant for.
    async fn send(&self) -> Result<Response, NodeError> {
        let (mut url, mut method) = (self.url.clone(), self.method.clone());
        let (mut headers, mut body) = (self.headers.clone(), self.body.clone());
        for _ in 0..=MAX_REDIRECTS {
            let client = http::client_without_redirects(&url)?;
            let mut rb = client
                .request(method.clone(), url.clone())
                .headers(headers.clone())
                .timeout(self.timeout);
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let resp = http::fetch_async(rb)
                .await
                .map_err(|e| self.redacted(e.into_node_error(&self.what(), self.timeout)))?;
            let next = resp
                .status
                .is_redirection()
                .then(|| resp.headers.get(LOCATION)?.to_str().ok())
                .flatten()
                .and_then(|loc| url.join(loc).ok());
            let Some(next) = next else {
                return Ok(Response {
                    status: resp.status.as_u16(),
                    reason: resp.status.canonical_reason().unwrap_or(""),
                    headers: resp.headers,
                    body: resp.body,
                });
            };
            if next.origin() != url.origin() {
                headers = self.without_credentials(&headers);
            }
            let code = resp.status.as_u16();
            if code == 303 || (matches!(code, 301 | 302) && method == Method::POST) {
                method = Method::GET;
                body = None;
                headers.remove(CONTENT_TYPE);
            }
            url = next;
        }
        Err(self.redacted(NodeError::new(
            ErrorCategory::Network,
            format!("{}: more than {MAX_REDIRECTS} redirects", self.what()),
        )))
    }

    /// `headers` without any that carry a credential.
    fn without_credentials(&self, headers: &HeaderMap) -> HeaderMap {
        headers
            .iter()
            .filter(|(name, value)| {
                let secret_value = value.to_str().is_ok_and(|v| {
                    self.secrets
                        .iter()
                        .any(|s| !s.is_empty() && v.contains(s.as_str()))
                });
                !is_secret_header(name.as_str()) && !secret_value
            })
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect()
    }

    fn status_error(&self, r: &Response) -> NodeError {
        let message = format!(
            "HTTP {} {} from {}: {}",
            r.status,
            r.reason,
            self.what(),
            http::error_text(&r.body)
        );
        let category = http::status_category(r.status);
        self.redacted(NodeError::new(category, message).with_status(r.status))
    }

    fn redacted(&self, mut e: NodeError) -> NodeError {
        let secrets: Vec<&str> = self.secrets.iter().map(String::as_str).collect();
        e.message = http::redact(&e.message, &secrets);
        e
    }
}

impl Response {
    fn outputs(&self) -> Map<String, Value> {
        let mut o = Map::new();
        o.insert("response".into(), decode_body(&self.headers, &self.body));
        o.insert("status_code".into(), Value::from(self.status));
        o.insert(
            "response_headers".into(),
            Value::Object(header_map(&self.headers)),
        );
        o
    }
}

fn invalid(message: impl Into<String>) -> NodeError {
    NodeError::new(ErrorCategory::Validation, message)
}

/// Only GET and HEAD are safe to send twice; a method given by a template may be anything.
fn repeats_effects(params: &Map<String, Value>) -> bool {
    let has_body = params.get("body").is_some_and(|b| !b.is_null());
    match params.get("method") {
        Some(Value::String(m)) if m.contains("${") => true,
        _ => method(params, has_body).map_or(true, |m| m != Method::GET && m != Method::HEAD),
    }
}

fn method(params: &Map<String, Value>, has_body: bool) -> Result<Method, NodeError> {
    let given = opt_str_param(params, "method")?.map(str::trim);
    let name = match given {
        Some(m) if !m.is_empty() => m.to_ascii_uppercase(),
        _ if has_body => "POST".to_string(),
        _ => "GET".to_string(),
    };
    if !METHODS.contains(&name.as_str()) {
        // As given, not upper-cased: a secret put there is found in the message as is.
        let given = given.unwrap_or_default();
        return Err(invalid(format!(
            "param 'method' must be one of {}, got '{given}'",
            METHODS.join(", ")
        )));
    }
    Method::from_bytes(name.as_bytes()).map_err(|_| invalid(format!("bad method '{name}'")))
}

fn timeout(params: &Map<String, Value>) -> Result<Duration, NodeError> {
    let secs = super::ranged_param(&SPEC, params, "timeout")?.unwrap_or(DEFAULT_TIMEOUT_SECS);
    if !(secs > 0.0 && secs.is_finite() && secs <= crate::http::MAX_REQUEST_SECS) {
        return Err(invalid(format!(
            "param 'timeout' must be a positive number of seconds, got {secs}"
        )));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The body bytes, and whether they are JSON. Absent or null: no body.
fn body(v: Option<&Value>) -> Option<(Vec<u8>, bool)> {
    match v? {
        Value::Null => None,
        Value::String(s) => Some((s.clone().into_bytes(), false)),
        other => Some((serde_json::to_vec(other).unwrap_or_default(), true)),
    }
}

/// An object param, or text that holds a JSON object (a template fed by a shell step).
fn object_param<'a>(
    v: Option<&'a Value>,
    name: &str,
) -> Result<Option<std::borrow::Cow<'a, Map<String, Value>>>, NodeError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(std::borrow::Cow::Borrowed(m))),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => match crate::template::parse_json_container(s) {
            Some(Value::Object(m)) => Ok(Some(std::borrow::Cow::Owned(m))),
            _ => Err(invalid(format!("param '{name}' must be an object"))),
        },
        Some(other) => Err(invalid(format!(
            "param '{name}' must be an object, got {}",
            crate::template::type_name(other)
        ))),
    }
}

/// `params` as query pairs; an array value repeats the name (`?tag=a&tag=b`).
fn add_query(url: &mut Url, v: Option<&Value>) -> Result<(), NodeError> {
    let Some(map) = object_param(v, "params")? else {
        return Ok(());
    };
    let mut pairs = url.query_pairs_mut();
    for (k, v) in map.iter() {
        match v {
            Value::Null => {}
            Value::Array(items) => {
                for item in items {
                    pairs.append_pair(k, &crate::template::render_text(item));
                }
            }
            other => {
                pairs.append_pair(k, &crate::template::render_text(other));
            }
        }
    }
    drop(pairs);
    Ok(())
}

fn headers(v: Option<&Value>) -> Result<HeaderMap, NodeError> {
    let mut out = HeaderMap::new();
    let Some(map) = object_param(v, "headers")? else {
        return Ok(out);
    };
    for (k, v) in map.iter() {
        if v.is_null() {
            continue;
        }
        let name = HeaderName::from_bytes(k.trim().as_bytes())
            .map_err(|_| invalid(format!("'{k}' is not a valid HTTP header name")))?;
        let text = crate::template::render_text(v);
        let value = HeaderValue::from_str(&text).map_err(|_| {
            invalid(format!(
                "the value of header '{k}' cannot be sent (it holds a newline or control character)"
            ))
        })?;
        out.append(name, value);
    }
    Ok(out)
}

/// Header values that are credentials, by the header's name.
fn sensitive_values(headers: &HeaderMap) -> Vec<String> {
    let mut out = Vec::new();
    for (name, value) in headers {
        if let (true, Ok(v)) = (is_secret_header(name.as_str()), value.to_str()) {
            out.push(v.to_string());
            if let Some((_, rest)) = v.split_once(' ') {
                out.push(rest.to_string());
            }
        }
    }
    out
}

/// `auth_token` → `Authorization: Bearer`; `api_key` → `api_key_header` (X-API-Key).
fn add_credentials(
    params: &Map<String, Value>,
    headers: &mut HeaderMap,
    secrets: &mut Vec<String>,
) -> Result<(), NodeError> {
    let token = opt_str_param(params, "auth_token")?.filter(|s| !s.trim().is_empty());
    let key = opt_str_param(params, "api_key")?.filter(|s| !s.trim().is_empty());
    if token.is_some() && key.is_some() {
        return Err(invalid(
            "params 'auth_token' and 'api_key' cannot both be set: use one",
        ));
    }
    if let Some(token) = token {
        let token = token.trim();
        headers.insert(
            AUTHORIZATION,
            secret_value(&format!("Bearer {token}"), "auth_token")?,
        );
        secrets.push(token.to_string());
    }
    if let Some(key) = key {
        let key = key.trim();
        let header = opt_str_param(params, "api_key_header")?
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .unwrap_or("X-API-Key");
        let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
            invalid(format!(
                "param 'api_key_header': '{header}' is not a valid HTTP header name"
            ))
        })?;
        headers.insert(name, secret_value(key, "api_key")?);
        secrets.push(key.to_string());
    }
    Ok(())
}

fn secret_value(text: &str, param: &str) -> Result<HeaderValue, NodeError> {
    let mut v = HeaderValue::from_str(text).map_err(|_| {
        invalid(format!(
            "param '{param}' cannot be sent in a header (it holds a newline or control character)"
        ))
    })?;
    v.set_sensitive(true);
    Ok(v)
}

fn header_map(headers: &HeaderMap) -> Map<String, Value> {
    let mut out = Map::new();
    for name in headers.keys() {
        if VOLATILE_HEADERS.contains(&name.as_str()) {
            continue;
        }
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    out
}

/// JSON content types are parsed (text when the body is not valid JSON); binary types
/// become base64 text; everything else is text.
fn decode_body(headers: &HeaderMap, body: &[u8]) -> Value {
    let ct = http::header_str(headers, CONTENT_TYPE.as_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.contains("json") {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            return v;
        }
    }
    if is_binary(&ct) {
        return Value::String(base64::engine::general_purpose::STANDARD.encode(body));
    }
    match std::str::from_utf8(body) {
        Ok(s) => Value::String(s.to_string()),
        Err(_) if ct.starts_with("text/") || ct.contains("json") => {
            Value::String(String::from_utf8_lossy(body).into_owned())
        }
        Err(_) => Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
    }
}

fn is_binary(ct: &str) -> bool {
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.ends_with("+xml") || mime.ends_with("+json") {
        return false;
    }
    let (top, sub) = mime.split_once('/').unwrap_or((mime, ""));
    match top {
        "image" | "audio" | "video" | "font" => true,
        "application" => {
            matches!(
                sub,
                "octet-stream"
                    | "pdf"
                    | "zip"
                    | "gzip"
                    | "x-gzip"
                    | "x-tar"
                    | "x-bzip2"
                    | "x-7z-compressed"
                    | "x-rar-compressed"
                    | "wasm"
                    | "msword"
                    | "x-protobuf"
                    | "protobuf"
                    | "vnd.ms-excel"
            ) || sub.starts_with("vnd.openxmlformats")
        }
        _ => false,
    }
}

/// A literal `url` that is no http(s) URL is an error before the build, not after
/// the nodes before it ran.
fn literal_url_problem(v: &Value) -> Option<String> {
    let text = v.as_str()?;
    http::parse_http_url(text, "url").err()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_get_and_head_may_run_twice() {
        let effect = |p: Value| repeats_effects(p.as_object().expect("object"));
        assert!(!effect(json!({"url": "http://x"})));
        assert!(!effect(json!({"url": "http://x", "method": "head"})));
        assert!(effect(json!({"url": "http://x", "method": "POST"})));
        assert!(effect(json!({"url": "http://x", "body": {"a": 1}})));
        assert!(effect(json!({"url": "http://x", "method": "${m}"})));
    }

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn request_building() {
        let r = Request::from_params(&params(json!({
            "url": "http://127.0.0.1:9/a?x=1", "body": {"k": 1}, "params": {"q": "a b", "t": ["1", 2]},
            "headers": {"X-N": 5}, "auth_token": "tok-123"}))).unwrap();
        assert_eq!(r.method, Method::POST);
        assert_eq!(r.url.as_str(), "http://127.0.0.1:9/a?x=1&q=a+b&t=1&t=2");
        assert_eq!(r.headers["content-type"], "application/json");
        assert_eq!(r.headers["x-n"], "5");
        assert_eq!(r.headers["authorization"], "Bearer tok-123");
        assert!(r.headers["authorization"].is_sensitive());
        assert_eq!(r.body.as_deref(), Some(&br#"{"k":1}"#[..]));
        assert_eq!(r.timeout, Duration::from_secs(30));

        let r = Request::from_params(&params(json!({"url": "https://x.test", "body": "raw",
            "api_key": "k-1234", "method": "put", "timeout": 1.5})))
        .unwrap();
        assert_eq!(r.method, Method::PUT);
        assert!(!r.headers.contains_key("content-type"));
        assert_eq!(r.headers["x-api-key"], "k-1234");
        assert_eq!(r.timeout, Duration::from_millis(1500));
    }

    #[test]
    fn bad_params() {
        for p in [
            json!({"url": "ftp://x"}),
            json!({"url": "not a url"}),
            json!({"url": "http://x", "method": "FETCH"}),
            json!({"url": "http://x", "timeout": 0}),
            json!({"url": "http://x", "auth_token": "a", "api_key": "b"}),
            json!({"url": "http://x", "headers": {"bad name": "v"}}),
            json!({"url": "http://x", "params": [1]}),
        ] {
            let e = Request::from_params(&params(p.clone())).err().unwrap();
            assert_eq!(e.category, ErrorCategory::Validation, "{p}");
        }
    }

    #[test]
    fn bodies_by_content_type() {
        let h = |ct: &str| {
            let mut m = HeaderMap::new();
            m.insert(CONTENT_TYPE, HeaderValue::from_str(ct).unwrap());
            m
        };
        assert_eq!(
            decode_body(&h("application/json; charset=utf-8"), b"{\"a\":1}"),
            json!({"a": 1})
        );
        assert_eq!(
            decode_body(&h("application/vnd.api+json"), b"[1]"),
            json!([1])
        );
        assert_eq!(decode_body(&h("application/json"), b"oops"), json!("oops"));
        assert_eq!(decode_body(&h("text/plain"), b"hi"), json!("hi"));
        assert_eq!(decode_body(&h("image/png"), &[0x89, 0x50]), json!("iVA="));
        assert_eq!(decode_body(&h("image/svg+xml"), b"<svg/>"), json!("<svg/>"));
        assert_eq!(decode_body(&HeaderMap::new(), &[0xff, 0x00]), json!("/wA="));
    }

    #[test]
    fn response_headers_are_lower_case_without_date() {
        let mut m = HeaderMap::new();
        m.insert("X-Thing", HeaderValue::from_static("1"));
        m.append("set-cookie", HeaderValue::from_static("a=1"));
        m.append("set-cookie", HeaderValue::from_static("b=2"));
        m.insert(
            "date",
            HeaderValue::from_static("Mon, 01 Jan 2024 00:00:00 GMT"),
        );
        assert_eq!(
            Value::Object(header_map(&m)),
            json!({"x-thing": "1", "set-cookie": "a=1, b=2"})
        );
    }
}
