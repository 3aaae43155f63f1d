//! Anthropic Messages API: `POST {ANTHROPIC_BASE_URL}/v1/messages`.

use super::{llm_output_error, Auth, LlmRequest, LlmResponse};
use crate::error::{ErrorCategory, NodeError};
use reqwest::Url;
use serde_json::{json, Map, Value};

pub(crate) const BASE_URL_ENV: &str = "ANTHROPIC_BASE_URL";
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
pub(crate) const API_KEY_ENV: &str = "ANTHROPIC_API_KEY";
/// A bearer token instead of a key (the SDKs and Ollama's Anthropic endpoint use it).
pub(crate) const AUTH_TOKEN_ENV: &str = "ANTHROPIC_AUTH_TOKEN";
pub(crate) const VERSION: &str = "2023-06-01";

/// The base URL (no `/v1`; the client adds `/v1/messages`, as the SDK does).
pub(crate) fn base_url() -> String {
    super::env_nonempty(BASE_URL_ENV).unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

pub(crate) fn endpoint(base: &str) -> Result<Url, String> {
    let url = format!("{}/v1/messages", base.trim().trim_end_matches('/'));
    crate::http::parse_http_url(&url, BASE_URL_ENV)
}

/// `x-api-key` from ANTHROPIC_API_KEY, else `Authorization: Bearer` from
/// ANTHROPIC_AUTH_TOKEN. Neither is a `missing_api_key` error naming the variable.
pub(crate) fn auth() -> Result<Auth, NodeError> {
    if let Some(key) = super::env_nonempty(API_KEY_ENV) {
        return Auth::header("x-api-key", key, API_KEY_ENV);
    }
    if let Some(token) = super::env_nonempty(AUTH_TOKEN_ENV) {
        return Auth::header("authorization", format!("Bearer {token}"), AUTH_TOKEN_ENV);
    }
    Err(NodeError::new(
        ErrorCategory::MissingApiKey,
        format!(
            "{API_KEY_ENV} is not set: export {API_KEY_ENV}=<your Anthropic API key> \
             (or set {AUTH_TOKEN_ENV} for a bearer token)"
        ),
    ))
}

/// The request body: `system` and `temperature` only when given.
pub(crate) fn body(req: &LlmRequest, model_id: &str) -> Value {
    let mut b = Map::new();
    b.insert("model".into(), json!(model_id));
    b.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        b.insert("system".into(), json!(system));
    }
    b.insert(
        "messages".into(),
        json!([{"role": "user", "content": req.prompt}]),
    );
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    Value::Object(b)
}

/// Join every `text` block (chosen by type: thinking models may put a `thinking` block
/// first); usage from `usage.input_tokens` / `usage.output_tokens`.
pub(crate) fn parse(
    body: &[u8],
    model_id: &str,
    max_tokens: u32,
) -> Result<LlmResponse, NodeError> {
    let v: Value = serde_json::from_slice(body).map_err(|_| llm_output_error("Anthropic", body))?;
    let blocks = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or_else(|| llm_output_error("Anthropic", body))?;
    let texts: Vec<&str> = blocks
        .iter()
        .filter(|b| b.get("type").and_then(Value::as_str) == Some("text"))
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .collect();
    let stop = v.get("stop_reason").and_then(Value::as_str).unwrap_or("");
    if texts.is_empty() {
        return Err(no_text_error(stop, max_tokens));
    }
    let usage = v.get("usage");
    let count = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LlmResponse {
        text: texts.concat(),
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model_id)
            .to_string(),
        input_tokens: count("input_tokens"),
        output_tokens: count("output_tokens"),
    })
}

fn no_text_error(stop_reason: &str, max_tokens: u32) -> NodeError {
    let message = match stop_reason {
        "refusal" => "the model refused to answer (stop_reason: refusal)".to_string(),
        "max_tokens" => format!(
            "the reply was cut off at max_tokens={max_tokens} before any text; raise max_tokens"
        ),
        "" => "the reply from Anthropic has no text block".to_string(),
        other => format!("the reply from Anthropic has no text block (stop_reason: {other})"),
    };
    NodeError::new(ErrorCategory::LlmOutput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(system: Option<&str>, temperature: Option<f64>) -> LlmRequest {
        LlmRequest {
            model: "anthropic/claude-haiku-4-5".into(),
            system: system.map(String::from),
            prompt: "hi".into(),
            max_tokens: 100,
            temperature,
        }
    }

    #[test]
    fn body_has_optional_fields_only_when_given() {
        let b = body(&req(None, None), "claude-haiku-4-5");
        assert_eq!(
            b,
            json!({"model": "claude-haiku-4-5", "max_tokens": 100,
                   "messages": [{"role": "user", "content": "hi"}]})
        );
        let b = body(&req(Some("be brief"), Some(0.0)), "m");
        assert_eq!(b["system"], "be brief");
        assert_eq!(b["temperature"], 0.0);
    }

    #[test]
    fn endpoint_joins_base() {
        assert_eq!(
            endpoint("http://127.0.0.1:9/").unwrap().as_str(),
            "http://127.0.0.1:9/v1/messages"
        );
        assert_eq!(
            endpoint(DEFAULT_BASE_URL).unwrap().as_str(),
            "https://api.anthropic.com/v1/messages"
        );
        assert!(endpoint("ftp://x").is_err());
    }

    #[test]
    fn text_blocks_by_type() {
        let body = json!({"model": "claude-haiku-4-5-20251001", "stop_reason": "end_turn",
            "content": [{"type": "thinking", "thinking": "hmm", "signature": "s"},
                        {"type": "text", "text": "Hello, "}, {"type": "tool_use", "id": "x"},
                        {"type": "text", "text": "world"}],
            "usage": {"input_tokens": 12, "output_tokens": 3, "cache_read_input_tokens": 0}});
        let r = parse(body.to_string().as_bytes(), "claude-haiku-4-5", 10).unwrap();
        assert_eq!(r.text, "Hello, world");
        assert_eq!(r.model, "claude-haiku-4-5-20251001");
        assert_eq!((r.input_tokens, r.output_tokens), (12, 3));
    }

    #[test]
    fn unusable_replies_are_llm_output_errors() {
        for body in [
            "not json".to_string(),
            json!({"content": "x"}).to_string(),
            json!({"content": [{"type": "thinking", "thinking": ""}], "stop_reason": "max_tokens"})
                .to_string(),
            json!({"content": [], "stop_reason": "refusal"}).to_string(),
        ] {
            let e = parse(body.as_bytes(), "m", 10).unwrap_err();
            assert_eq!(e.category, ErrorCategory::LlmOutput, "{body}");
        }
    }
}
