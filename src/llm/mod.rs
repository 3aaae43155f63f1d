//! The LLM client used by `llm` nodes and by repair: one blocking call, one reply.
//!
//! The provider comes from the model string: `anthropic/<model>` (or a bare name) speaks
//! the Anthropic Messages API at `ANTHROPIC_BASE_URL` (default
//! `https://api.anthropic.com`); `openai/<model>` speaks OpenAI-compatible chat
//! completions at `OPENAI_BASE_URL` (default `https://api.openai.com/v1`, which includes
//! `/v1`; Ollama, llama.cpp and vLLM serve it). Retries follow the official SDKs
//! (`retry.rs`). Failures are [`NodeError`]s with a category chosen from what happened: a
//! missing key is `missing_api_key` naming the variable, 401/403 `auth`, 429
//! `rate_limit`, 5xx `server`, other 4xx `http`, no response at all (refused, timed out)
//! `network`, an unusable 200 reply `llm_output`. No API key ever appears in a message.
//!
//! Model names are passed through as given: old pflow names such as `claude-3.5-haiku`
//! become Anthropic model ids verbatim (and fail there with a 404 that names them).

mod anthropic;
mod openai;
pub mod price;
pub(crate) mod retry;

use crate::error::{ErrorCategory, NodeError};
use crate::http;
use reqwest::header::{HeaderName, HeaderValue, CONTENT_TYPE};
use reqwest::Client;
use reqwest::Url;
use retry::Outcome;
use std::time::{Duration, SystemTime};

/// The model used when a workflow names none.
pub const DEFAULT_MODEL: &str = "anthropic/claude-haiku-4-5";
/// Overrides [`DEFAULT_MODEL`].
pub const MODEL_ENV: &str = "PFLOW_LLM_MODEL";
/// Seconds one LLM request may take (default [`DEFAULT_TIMEOUT_SECS`]).
pub const TIMEOUT_ENV: &str = "PFLOW_LLM_TIMEOUT_SECS";
pub const DEFAULT_TIMEOUT_SECS: f64 = 120.0;

/// Environment variables that choose which server answers (part of `llm` node keys).
pub const ENDPOINT_ENV: [&str; 2] = [anthropic::BASE_URL_ENV, openai::BASE_URL_ENV];

#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    /// `anthropic/<id>`, `openai/<id>`, or a bare Anthropic id.
    pub model: String,
    pub system: Option<String>,
    pub prompt: String,
    pub max_tokens: u32,
    /// Sent only when set (newer Claude models reject sampling parameters).
    pub temperature: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LlmResponse {
    /// The text blocks of the reply, joined.
    pub text: String,
    /// The model id the server reported (else the one requested, without its prefix).
    pub model: String,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// `PFLOW_LLM_MODEL`, or `anthropic/claude-haiku-4-5`.
pub fn default_model() -> String {
    env_nonempty(MODEL_ENV).unwrap_or_else(|| DEFAULT_MODEL.to_string())
}

/// Send one prompt and return the reply, retrying transient failures.
pub fn complete(req: &LlmRequest) -> Result<LlmResponse, NodeError> {
    let call = Call::prepare(req)?;
    let client = http::client_for(&call.url)?;
    let timeout = request_timeout();
    let body = retry::run(|_| call.attempt(client, timeout), http::sleep_interruptible)?;
    call.parse(&body)
}

/// Where a prompt for `model` would be sent ("Anthropic at https://…/v1/messages"),
/// checked the way a call is (model string, base URL, API key) without sending anything.
pub fn destination(model: &str) -> Result<String, NodeError> {
    let req = LlmRequest {
        model: model.to_string(),
        system: None,
        prompt: String::new(),
        max_tokens: 1,
        temperature: None,
    };
    let call = Call::prepare(&req)?;
    Ok(format!(
        "{} at {}",
        call.provider.name(),
        http::display_url(&call.url)
    ))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Anthropic,
    OpenAi,
}

impl Provider {
    fn name(self) -> &'static str {
        match self {
            Provider::Anthropic => "Anthropic",
            Provider::OpenAi => "the OpenAI-compatible server",
        }
    }
}

/// Split a model string into its provider and the id the server expects.
pub(crate) fn resolve_model(model: &str) -> Result<(Provider, &str), NodeError> {
    let m = model.trim();
    let (provider, id) = match m.split_once('/') {
        Some(("anthropic", id)) => (Provider::Anthropic, id),
        Some(("openai", id)) => (Provider::OpenAi, id),
        Some((other, _)) => {
            return Err(NodeError::new(
                ErrorCategory::Validation,
                format!(
                    "unknown provider '{other}' in model '{m}': use anthropic/<model> or \
                     openai/<model> (a name without a provider means anthropic)"
                ),
            ))
        }
        None => (Provider::Anthropic, m),
    };
    if id.trim().is_empty() {
        return Err(NodeError::new(
            ErrorCategory::Validation,
            format!("model '{m}' names no model"),
        ));
    }
    Ok((provider, id.trim()))
}

/// The credential header for a call, and what to redact from server text.
pub(crate) struct Auth {
    header: Option<(HeaderName, HeaderValue)>,
    env_var: &'static str,
    secret: Option<String>,
}

impl Auth {
    /// `value` is the full header value; `env_var` names where the secret came from.
    fn header(name: &'static str, value: String, env_var: &'static str) -> Result<Auth, NodeError> {
        let mut hv = HeaderValue::from_str(&value).map_err(|_| {
            NodeError::new(
                ErrorCategory::MissingApiKey,
                format!("{env_var} holds characters that cannot be sent in an HTTP header (a stray newline?)"),
            )
        })?;
        hv.set_sensitive(true);
        let secret = value.strip_prefix("Bearer ").unwrap_or(&value).to_string();
        Ok(Auth {
            header: Some((HeaderName::from_static(name), hv)),
            env_var,
            secret: Some(secret),
        })
    }

    fn none(env_var: &'static str) -> Auth {
        Auth {
            header: None,
            env_var,
            secret: None,
        }
    }

    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(s) => http::redact(text, &[s]),
            None => text.to_string(),
        }
    }
}

/// One prepared request: where it goes, how it authenticates, what it sends.
struct Call {
    provider: Provider,
    model_id: String,
    base: String,
    url: Url,
    auth: Auth,
    body: Vec<u8>,
    max_tokens: u32,
}

impl Call {
    /// Everything that can fail before a request is sent (bad model string, bad base
    /// URL, missing key) fails here, so nothing is sent.
    fn prepare(req: &LlmRequest) -> Result<Call, NodeError> {
        let (provider, model_id) = resolve_model(&req.model)?;
        let (base, endpoint, body) = match provider {
            Provider::Anthropic => {
                let base = anthropic::base_url();
                let url = anthropic::endpoint(&base);
                (base, url, anthropic::body(req, model_id))
            }
            Provider::OpenAi => {
                let base = openai::base_url();
                let url = openai::endpoint(&base);
                (base, url, openai::body(req, model_id))
            }
        };
        let url = endpoint.map_err(|m| NodeError::new(ErrorCategory::Network, m))?;
        let auth = match provider {
            Provider::Anthropic => anthropic::auth()?,
            Provider::OpenAi => openai::auth(&url)?,
        };
        let body = serde_json::to_vec(&body).map_err(|e| {
            NodeError::new(
                ErrorCategory::Internal,
                format!("cannot encode the request: {e}"),
            )
        })?;
        Ok(Call {
            provider,
            model_id: model_id.to_string(),
            base,
            url,
            auth,
            body,
            max_tokens: req.max_tokens,
        })
    }

    fn attempt(&self, client: &Client, timeout: Duration) -> Outcome<Vec<u8>> {
        let mut rb = client
            .post(self.url.clone())
            .timeout(timeout)
            .header(CONTENT_TYPE, "application/json")
            .body(self.body.clone());
        if self.provider == Provider::Anthropic {
            rb = rb.header("anthropic-version", anthropic::VERSION);
        }
        if let Some((name, value)) = &self.auth.header {
            rb = rb.header(name.clone(), value.clone());
        }
        let what = format!("POST {}", http::display_url(&self.url));
        let resp = match http::fetch(rb) {
            Ok(r) => r,
            Err(http::FetchError::Transport(e)) if e.is_builder() => {
                return Outcome::Fail(NodeError::new(
                    ErrorCategory::Internal,
                    format!("{what}: cannot build the request: {}", http::root_cause(&e)),
                ))
            }
            // A request that timed out is not tried again: the server took the whole
            // budget once already, and retrying would multiply a hang (DESIGN §4 lists
            // timeouts as final). Refused or reset connections are worth another try.
            Err(http::FetchError::Transport(e)) if e.is_timeout() => {
                return Outcome::Fail(
                    http::FetchError::Transport(e).into_node_error(&what, timeout),
                )
            }
            Err(e @ http::FetchError::Transport(_)) => {
                return Outcome::Retry {
                    error: e.into_node_error(&what, timeout),
                    after: None,
                }
            }
            Err(e) => return Outcome::Fail(e.into_node_error(&what, timeout)),
        };
        let (status, headers, body) = (resp.status.as_u16(), resp.headers, resp.body);
        if (200..300).contains(&status) {
            return Outcome::Done(body);
        }
        let error = self.status_error(status, &headers, &body);
        if retry::should_retry(status, &headers) {
            let after = retry::server_delay(&headers, SystemTime::now());
            Outcome::Retry { error, after }
        } else {
            Outcome::Fail(error)
        }
    }

    fn status_error(
        &self,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &[u8],
    ) -> NodeError {
        let detail = self.auth.redact(&http::error_text(body));
        let who = self.provider.name();
        let env = self.auth.env_var;
        let mut message = match status {
            401 if self.auth.header.is_none() => format!(
                "{who} at {} wants an API key (HTTP 401): set {env}. Server said: {detail}",
                http::display_url(&self.url)
            ),
            401 => format!("the API key in {env} was rejected (HTTP 401): {detail}"),
            403 => format!("the API key in {env} is not allowed to do this (HTTP 403): {detail}"),
            404 => format!(
                "model '{}' was not found at {} (HTTP 404): {detail}; check the model id{}",
                self.model_id,
                http::display_url(&self.url),
                self.not_found_hint()
            ),
            429 => format!("rate limited by {who} (HTTP 429): {detail}"),
            500..=599 => format!("{who} server error (HTTP {status}): {detail}"),
            _ => format!(
                "{who} rejected the request for model '{}' (HTTP {status}): {detail}",
                self.model_id
            ),
        };
        if let Some(id) =
            http::header_str(headers, "request-id").or(http::header_str(headers, "x-request-id"))
        {
            message.push_str(&format!(" [request-id {}]", http::truncate_chars(id, 80)));
        }
        NodeError::new(http::status_category(status), message).with_status(status)
    }

    fn not_found_hint(&self) -> String {
        let mut hint = String::new();
        if self.provider == Provider::Anthropic && self.base.trim_end_matches('/').ends_with("/v1")
        {
            hint.push_str(&format!(
                "; {} should not include /v1 (the client adds /v1/messages)",
                anthropic::BASE_URL_ENV
            ));
        }
        if self.provider == Provider::Anthropic && self.model_id.starts_with("claude-3") {
            hint.push_str("; Claude 3.x Haiku models were retired in 2026: try claude-haiku-4-5");
        }
        hint
    }

    fn parse(&self, body: &[u8]) -> Result<LlmResponse, NodeError> {
        match self.provider {
            Provider::Anthropic => anthropic::parse(body, &self.model_id, self.max_tokens),
            Provider::OpenAi => openai::parse(body, &self.model_id, self.max_tokens),
        }
    }
}

/// A 200 reply that is not the expected JSON.
pub(crate) fn llm_output_error(who: &str, body: &[u8]) -> NodeError {
    NodeError::new(
        ErrorCategory::LlmOutput,
        format!(
            "the reply from {who} is not a message it should send: {}",
            http::error_text(body)
        ),
    )
}

fn request_timeout() -> Duration {
    timeout_from(env_nonempty(TIMEOUT_ENV).as_deref())
}

/// The timeout [`TIMEOUT_ENV`]'s text asks for: at most [`http::MAX_REQUEST_SECS`] (a
/// larger number is no limit in practice, and past 584 billion years no `Duration`).
fn timeout_from(text: Option<&str>) -> Duration {
    text.and_then(|v| v.parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(http::MAX_REQUEST_SECS)))
        .unwrap_or(Duration::from_secs_f64(DEFAULT_TIMEOUT_SECS))
}

pub(crate) fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A timeout past what a `Duration` holds panicked; it is a day, as any above one.
    #[test]
    fn a_timeout_is_at_most_a_day_and_nonsense_is_the_default() {
        let day = Duration::from_secs(86_400);
        for (text, want) in [
            (Some("1e20"), day),
            (Some("1e300"), day),
            (Some("90000"), day),
            (Some("2.5"), Duration::from_millis(2500)),
            (Some("-1"), Duration::from_secs(120)),
            (Some("inf"), Duration::from_secs(120)),
            (Some("NaN"), Duration::from_secs(120)),
            (Some("soon"), Duration::from_secs(120)),
            (None, Duration::from_secs(120)),
        ] {
            assert_eq!(timeout_from(text), want, "{text:?}");
        }
    }

    /// Every credential the LLM client reads is withheld from children that did not
    /// declare it.
    #[test]
    fn provider_credentials_never_reach_children() {
        for name in [
            anthropic::API_KEY_ENV,
            anthropic::AUTH_TOKEN_ENV,
            openai::API_KEY_ENV,
            MODEL_ENV,
        ] {
            assert!(crate::environment::is_withheld(name), "{name}");
        }
    }

    #[test]
    fn model_strings() {
        assert_eq!(
            resolve_model("anthropic/claude-haiku-4-5").unwrap(),
            (Provider::Anthropic, "claude-haiku-4-5")
        );
        assert_eq!(
            resolve_model("claude-3.5-haiku").unwrap(),
            (Provider::Anthropic, "claude-3.5-haiku")
        );
        assert_eq!(
            resolve_model("gemini-2.5-flash-lite").unwrap(),
            (Provider::Anthropic, "gemini-2.5-flash-lite")
        );
        assert_eq!(
            resolve_model("openai/meta-llama/Llama-3-8B").unwrap(),
            (Provider::OpenAi, "meta-llama/Llama-3-8B")
        );
        assert_eq!(
            resolve_model("openai/llama3.2:3b").unwrap(),
            (Provider::OpenAi, "llama3.2:3b")
        );
        let e = resolve_model("gemini/gemini-2.5").unwrap_err();
        assert_eq!(e.category, ErrorCategory::Validation);
        assert!(
            e.message.contains("unknown provider 'gemini'"),
            "{}",
            e.message
        );
        assert!(resolve_model("anthropic/").is_err());
    }

    #[test]
    fn auth_header_is_sensitive_and_redacts_the_bare_token() {
        let a = Auth::header(
            "authorization",
            "Bearer sk-test-123".into(),
            "OPENAI_API_KEY",
        )
        .unwrap();
        assert!(a.header.as_ref().is_some_and(|(_, v)| v.is_sensitive()));
        assert_eq!(a.redact("bad key sk-test-123"), "bad key [redacted]");
        let e = Auth::header("x-api-key", "bad\nkey".into(), "ANTHROPIC_API_KEY")
            .err()
            .unwrap();
        assert_eq!(e.category, ErrorCategory::MissingApiKey);
        assert!(!e.message.contains("bad"), "{}", e.message);
    }
}
