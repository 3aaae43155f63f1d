//! OpenAI-compatible chat completions: `POST {OPENAI_BASE_URL}/chat/completions`.
//! OpenAI, Ollama, llama.cpp `llama-server`, vLLM, LM Studio and most gateways serve it.

use super::{llm_output_error, Auth, LlmRequest, LlmResponse};
use crate::error::{ErrorCategory, NodeError};
use reqwest::Url;
use serde_json::{json, Map, Value};

pub(crate) const BASE_URL_ENV: &str = "OPENAI_BASE_URL";
/// Unlike Anthropic's, this base includes `/v1`.
pub(crate) const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";
pub(crate) const API_KEY_ENV: &str = "OPENAI_API_KEY";

pub(crate) fn base_url() -> String {
    super::env_nonempty(BASE_URL_ENV).unwrap_or_else(|| DEFAULT_BASE_URL.to_string())
}

pub(crate) fn endpoint(base: &str) -> Result<Url, String> {
    let url = format!("{}/chat/completions", base.trim().trim_end_matches('/'));
    crate::http::parse_http_url(&url, BASE_URL_ENV)
}

/// Bearer OPENAI_API_KEY. Local servers (a loopback base URL) need no key: Ollama and
/// llama.cpp accept requests without one.
pub(crate) fn auth(endpoint: &Url) -> Result<Auth, NodeError> {
    match super::env_nonempty(API_KEY_ENV) {
        Some(key) => Auth::header("authorization", format!("Bearer {key}"), API_KEY_ENV),
        None if crate::http::is_loopback_url(endpoint) => Ok(Auth::none(API_KEY_ENV)),
        None => Err(NodeError::new(
            ErrorCategory::MissingApiKey,
            format!(
                "{API_KEY_ENV} is not set: export {API_KEY_ENV}=<your key> \
                 (a local server on {BASE_URL_ENV}=http://127.0.0.1:... needs none)"
            ),
        )),
    }
}

/// The request body: a system message first when given; `temperature` only when given.
pub(crate) fn body(req: &LlmRequest, model_id: &str) -> Value {
    let mut messages = Vec::new();
    if let Some(system) = req.system.as_deref().filter(|s| !s.is_empty()) {
        messages.push(json!({"role": "system", "content": system}));
    }
    messages.push(json!({"role": "user", "content": req.prompt}));
    let mut b = Map::new();
    b.insert("model".into(), json!(model_id));
    b.insert("messages".into(), Value::Array(messages));
    b.insert("max_tokens".into(), json!(req.max_tokens));
    if let Some(t) = req.temperature {
        b.insert("temperature".into(), json!(t));
    }
    Value::Object(b)
}

/// `choices[0].message.content` (a string, or a list of text parts); usage from
/// `prompt_tokens` / `completion_tokens`. Reasoning fields are ignored.
pub(crate) fn parse(
    body: &[u8],
    model_id: &str,
    max_tokens: u32,
) -> Result<LlmResponse, NodeError> {
    const WHO: &str = "the OpenAI-compatible server";
    let v: Value = serde_json::from_slice(body).map_err(|_| llm_output_error(WHO, body))?;
    let choice = v
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| llm_output_error(WHO, body))?;
    let text = choice
        .get("message")
        .and_then(|m| m.get("content"))
        .and_then(content_text);
    let finish = choice
        .get("finish_reason")
        .and_then(Value::as_str)
        .unwrap_or("");
    let text = text.ok_or_else(|| no_text_error(finish, max_tokens))?;
    let usage = v.get("usage");
    let count = |name: &str| {
        usage
            .and_then(|u| u.get(name))
            .and_then(Value::as_u64)
            .unwrap_or(0)
    };
    Ok(LlmResponse {
        text,
        model: v
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or(model_id)
            .to_string(),
        input_tokens: count("prompt_tokens"),
        output_tokens: count("completion_tokens"),
    })
}

fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => {
            let texts: Vec<&str> = parts
                .iter()
                .filter(|p| p.get("type").and_then(Value::as_str) == Some("text"))
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect();
            (!texts.is_empty()).then(|| texts.concat())
        }
        _ => None,
    }
}

fn no_text_error(finish_reason: &str, max_tokens: u32) -> NodeError {
    let message = match finish_reason {
        "length" => format!(
            "the reply was cut off at max_tokens={max_tokens} before any text; raise max_tokens"
        ),
        "" => "the reply has no message content".to_string(),
        other => format!("the reply has no message content (finish_reason: {other})"),
    };
    NodeError::new(ErrorCategory::LlmOutput, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let r = LlmRequest {
            model: "openai/qwen3".into(),
            system: Some("sys".into()),
            prompt: "hi".into(),
            max_tokens: 5,
            temperature: None,
        };
        assert_eq!(
            body(&r, "qwen3"),
            json!({"model": "qwen3", "messages": [{"role": "system", "content": "sys"},
                   {"role": "user", "content": "hi"}], "max_tokens": 5})
        );
    }

    #[test]
    fn endpoint_keeps_v1_from_base() {
        assert_eq!(
            endpoint("http://localhost:11434/v1/").unwrap().as_str(),
            "http://localhost:11434/v1/chat/completions"
        );
    }

    #[test]
    fn parses_choices() {
        let b = json!({"model": "qwen3", "choices": [{"index": 0,
            "message": {"role": "assistant", "content": "ok", "reasoning": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2}});
        let r = parse(b.to_string().as_bytes(), "m", 5).unwrap();
        assert_eq!(
            (
                r.text.as_str(),
                r.model.as_str(),
                r.input_tokens,
                r.output_tokens
            ),
            ("ok", "qwen3", 7, 2)
        );
        for bad in [
            json!({"choices": []}),
            json!({"choices": [{"message": {"content": null}, "finish_reason": "length"}]}),
        ] {
            let e = parse(bad.to_string().as_bytes(), "m", 5).unwrap_err();
            assert_eq!(e.category, ErrorCategory::LlmOutput);
        }
    }
}
