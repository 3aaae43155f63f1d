//! HTTP plumbing shared by the LLM client and the `http` node: one reqwest client per
//! proxy policy, loopback detection, and turning transport failures and error responses
//! into node errors a person can act on.
//!
//! Requests run on one small tokio runtime: a caller either blocks on its request (a
//! request costs its caller's thread and no other, no thread is started per request, and
//! Ctrl-C drops it at once) or, keeping many in flight (a batch of `http` items), spawns
//! them onto the runtime and waits for them to report back, with no thread per request.
//! `TCP_NODELAY` is set on every connection (reqwest's default too, stated so that it
//! stays): a request is never held back waiting for the ACK of an earlier write.
//!
//! Nothing here ever formats a secret: URLs are shown without their query string or user
//! info, and text that came back from a server goes through `redact` first.

use crate::error::{ErrorCategory, NodeError};
use reqwest::header::HeaderMap;
use reqwest::Client;
use reqwest::Url;
use serde_json::Value;
use std::sync::OnceLock;
use std::time::Duration;

/// How long a TCP/TLS connect may take, whatever the request timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest any request to a server may be given, in seconds (a day): an `http`
/// node's `timeout`, an MCP server's, `PFLOW_LLM_TIMEOUT_SECS`.
pub const MAX_REQUEST_SECS: f64 = 86_400.0;

/// How much of a server's error text goes into a message.
pub(crate) const ERROR_TEXT_CHARS: usize = 200;

/// `localhost`, `*.localhost`, `127.0.0.0/8`, `::1` (with or without brackets).
pub(crate) fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let lower = h.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return true;
    }
    h.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

pub(crate) fn is_loopback_url(url: &Url) -> bool {
    url.host_str().is_some_and(is_loopback_host)
}

/// Parse an http(s) URL; `what` names where it came from for the error message.
pub(crate) fn parse_http_url(text: &str, what: &str) -> Result<Url, String> {
    let url = Url::parse(text.trim()).map_err(|e| format!("{what} '{text}' is not a URL: {e}"))?;
    match url.scheme() {
        "http" | "https" if url.host_str().is_some() => Ok(url),
        "http" | "https" => Err(format!("{what} '{text}' has no host")),
        other => Err(format!(
            "{what} '{text}' must start with http:// or https:// (got scheme '{other}')"
        )),
    }
}

/// The URL as it may appear in messages: no user info, no query, no fragment.
pub(crate) fn display_url(url: &Url) -> String {
    let host = url.host_str().unwrap_or("");
    match url.port() {
        Some(port) => format!("{}://{host}:{port}{}", url.scheme(), url.path()),
        None => format!("{}://{host}{}", url.scheme(), url.path()),
    }
}

/// The shared client for this URL: loopback hosts never go through a proxy (reqwest
/// would send `127.0.0.1` through `HTTP_PROXY`/`ALL_PROXY`); other hosts use the
/// system proxy settings.
pub(crate) fn client_for(url: &Url) -> Result<&'static Client, NodeError> {
    static DIRECT: OnceLock<Result<Client, String>> = OnceLock::new();
    static SYSTEM: OnceLock<Result<Client, String>> = OnceLock::new();
    let direct = is_loopback_url(url);
    let slot = if direct { &DIRECT } else { &SYSTEM };
    let built = slot.get_or_init(|| build_client(direct));
    built.as_ref().map_err(|e| {
        NodeError::new(
            ErrorCategory::Internal,
            format!("cannot set up the HTTP client: {e}"),
        )
    })
}

/// Like [`client_for`], but it never follows a redirect: the caller does, deciding what
/// goes to the next origin.
pub(crate) fn client_without_redirects(url: &Url) -> Result<&'static Client, NodeError> {
    static DIRECT: OnceLock<Result<Client, String>> = OnceLock::new();
    static SYSTEM: OnceLock<Result<Client, String>> = OnceLock::new();
    let direct = is_loopback_url(url);
    let slot = if direct { &DIRECT } else { &SYSTEM };
    let built = slot.get_or_init(|| {
        let mut builder = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("pflow/", env!("CARGO_PKG_VERSION")));
        if direct {
            builder = builder.no_proxy();
        }
        builder.build().map_err(|e| root_cause(&e))
    });
    built.as_ref().map_err(|e| {
        NodeError::new(
            ErrorCategory::Internal,
            format!("cannot set up the HTTP client: {e}"),
        )
    })
}

fn build_client(direct: bool) -> Result<Client, String> {
    let mut builder = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .tcp_nodelay(true)
        .user_agent(concat!("pflow/", env!("CARGO_PKG_VERSION")));
    if direct {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| root_cause(&e))
}

/// The innermost cause of an error chain ("Connection refused (os error 111)"), which is
/// what a person needs; reqwest's own top-level text repeats the URL.
pub(crate) fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur: &(dyn std::error::Error + 'static) = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A request that got no response: refused, reset, DNS, TLS, or timed out. All are
/// category `network` (not repairable by editing the workflow).
pub(crate) fn send_error(e: &reqwest::Error, what: &str, timeout: Duration) -> NodeError {
    let message = if e.is_timeout() {
        format!("{what} timed out after {}", secs_text(timeout))
    } else if e.is_connect() {
        format!("{what}: cannot connect: {}", root_cause(e))
    } else if e.is_redirect() {
        format!("{what}: too many redirects")
    } else {
        format!("{what} failed: {}", root_cause(e))
    };
    NodeError::new(ErrorCategory::Network, message)
}

pub(crate) fn secs_text(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0}s")
    } else {
        format!("{s}s")
    }
}

/// The category of a non-2xx response: 401/403 `auth`, 429 `rate_limit`, 5xx `server`,
/// any other status `http`.
pub(crate) fn status_category(status: u16) -> ErrorCategory {
    match status {
        401 | 403 => ErrorCategory::Auth,
        429 => ErrorCategory::RateLimit,
        500..=599 => ErrorCategory::Server,
        _ => ErrorCategory::Http,
    }
}

/// The human part of an error body, whatever its shape: `error.message`, `error` as a
/// string, `message`, `detail`, else the raw text. Cut to [`ERROR_TEXT_CHARS`].
pub(crate) fn error_text(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let from_json = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| json_error_message(&v));
    let raw = from_json.unwrap_or_else(|| text.into_owned());
    let one_line = raw.split_whitespace().collect::<Vec<_>>().join(" ");
    if one_line.is_empty() {
        return "(empty body)".to_string();
    }
    truncate_chars(&one_line, ERROR_TEXT_CHARS)
}

fn json_error_message(v: &Value) -> Option<String> {
    let err = v.get("error");
    err.and_then(|e| e.get("message"))
        .and_then(Value::as_str)
        .or_else(|| err.and_then(Value::as_str))
        .or_else(|| v.get("message").and_then(Value::as_str))
        .or_else(|| v.get("detail").and_then(Value::as_str))
        .map(str::to_string)
}

pub(crate) fn truncate_chars(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// Replace every occurrence of each secret with `[redacted]`. Secrets shorter than 4
/// characters are left alone (they would blank out ordinary words).
pub(crate) fn redact(text: &str, secrets: &[&str]) -> String {
    let mut out = text.to_string();
    for s in secrets.iter().map(|s| s.trim()).filter(|s| s.len() >= 4) {
        if out.contains(s) {
            out = out.replace(s, "[redacted]");
        }
    }
    out
}

/// A header's value as text, when present and readable.
pub(crate) fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// A response, read in full.
pub(crate) struct Fetched {
    pub status: reqwest::StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// Why no response came back.
pub(crate) enum FetchError {
    Transport(reqwest::Error),
    Interrupted,
    /// The runtime requests run on could not be started.
    NoRuntime(String),
    /// The body is larger than [`max_response_bytes`].
    TooLarge(u64),
    /// The connection failed while the body was being read.
    Broken(String),
}

/// Largest response body read into memory: `PFLOW_MAX_RESPONSE_BYTES`, default 64 MB.
pub(crate) fn max_response_bytes() -> u64 {
    std::env::var("PFLOW_MAX_RESPONSE_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(64 * 1024 * 1024)
}

/// The runtime every request runs on (two threads drive the connections; each caller
/// drives its own request).
fn runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    static RT: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pflow-http")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| e.clone())
}

/// Send a request and read its body, on the calling thread; Ctrl-C ends the wait at once
/// instead of after the request's timeout (the request is dropped).
pub(crate) fn fetch(rb: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
    block_on(read(rb))?
}

/// Run `fut` to its end on the calling thread (the runtime's threads drive the
/// connections); Ctrl-C drops it at once and gives `Interrupted`.
pub(crate) fn block_on<F: std::future::Future>(fut: F) -> Result<F::Output, FetchError> {
    let rt = runtime().map_err(FetchError::NoRuntime)?;
    rt.block_on(async {
        tokio::select! {
            r = fut => Ok(r),
            _ = async {
                while !crate::interrupt::is_interrupted() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => Err(FetchError::Interrupted),
        }
    })
}

/// Start `fut` on the runtime and return at once: many requests in flight without a
/// thread each (a batch's items). Aborting the handle drops the request.
pub(crate) fn spawn<F>(fut: F) -> Result<tokio::task::AbortHandle, String>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    Ok(runtime()?.spawn(fut).abort_handle())
}

/// Send a request and read its body, for a caller that is itself a future.
pub(crate) async fn fetch_async(rb: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
    read(rb).await
}

async fn read(rb: reqwest::RequestBuilder) -> Result<Fetched, FetchError> {
    let mut resp = rb.send().await.map_err(FetchError::Transport)?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let cap = max_response_bytes();
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                // A body larger than the cap is an error, not unbounded memory.
                if body.len() as u64 + chunk.len() as u64 > cap {
                    return Err(FetchError::TooLarge(cap));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            // The request's timeout covers reading the body too.
            Err(e) if e.is_timeout() => return Err(FetchError::Transport(e)),
            Err(e) => return Err(FetchError::Broken(root_cause(&e))),
        }
    }
    Ok(Fetched {
        status,
        headers,
        body,
    })
}

impl FetchError {
    /// The node error for `what` ("GET http://host/path"), sent with `timeout`.
    pub(crate) fn into_node_error(self, what: &str, timeout: Duration) -> NodeError {
        match self {
            FetchError::Transport(e) => send_error(&e, what, timeout),
            FetchError::Interrupted => NodeError::new(ErrorCategory::Interrupted, "interrupted"),
            FetchError::NoRuntime(e) => NodeError::new(
                ErrorCategory::Internal,
                format!("{what}: cannot start the HTTP runtime: {e}"),
            ),
            FetchError::Broken(e) => NodeError::new(
                ErrorCategory::Network,
                format!("{what}: the connection failed while reading the response: {e}"),
            ),
            FetchError::TooLarge(cap) => NodeError::new(
                ErrorCategory::Network,
                format!(
                    "{what}: the response is larger than {cap} bytes (set PFLOW_MAX_RESPONSE_BYTES to raise the limit)"
                ),
            ),
        }
    }
}

/// Sleep for `d`, waking early (and returning false) when the user interrupts.
pub(crate) fn sleep_interruptible(d: Duration) -> bool {
    let deadline = std::time::Instant::now() + d;
    loop {
        if crate::interrupt::is_interrupted() {
            return false;
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return true;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(50)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1", "localhost.example.com", "[::2]"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn urls_are_shown_without_query_or_user_info() {
        let u = Url::parse("https://user:pw@api.example.com:8443/v1/x?api_key=SECRET#f").unwrap();
        assert_eq!(display_url(&u), "https://api.example.com:8443/v1/x");
    }

    #[test]
    fn error_text_shapes() {
        let anthropic =
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#;
        assert_eq!(error_text(anthropic), "Overloaded");
        assert_eq!(
            error_text(br#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(
            error_text(br#"{"object":"error","message":"flat"}"#),
            "flat"
        );
        assert_eq!(
            error_text(b"<html>\n<h1>502 Bad Gateway</h1></html>"),
            "<html> <h1>502 Bad Gateway</h1></html>"
        );
        assert_eq!(error_text(b""), "(empty body)");
        let long = "x".repeat(500);
        assert_eq!(
            error_text(long.as_bytes()).chars().count(),
            ERROR_TEXT_CHARS + 1
        );
    }

    #[test]
    fn redaction() {
        assert_eq!(
            redact("bad key sk-123456 given", &["sk-123456"]),
            "bad key [redacted] given"
        );
        assert_eq!(redact("a b c", &["", "b"]), "a b c");
    }

    #[test]
    fn categories() {
        assert_eq!(status_category(401), ErrorCategory::Auth);
        assert_eq!(status_category(403), ErrorCategory::Auth);
        assert_eq!(status_category(429), ErrorCategory::RateLimit);
        assert_eq!(status_category(529), ErrorCategory::Server);
        assert_eq!(status_category(404), ErrorCategory::Http);
        assert_eq!(status_category(422), ErrorCategory::Http);
    }
}
