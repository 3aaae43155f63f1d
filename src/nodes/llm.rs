//! `llm`: one prompt to a language model, through [`crate::llm::complete`].
//!
//! Params: `prompt` (text; an object or array is sent as its JSON text), `system`,
//! `model` (default [`crate::llm::default_model`]), `max_tokens` (default 4096),
//! `temperature` (sent only when given). Outputs: `response` (the reply's text; a reply
//! that is one fenced code block loses its fences, as in pflow) and `llm_usage`
//! (`model`, `input_tokens`, `output_tokens`).

use super::{num_param, opt, opt_str_param, out, ranged, req};
use super::{NodeOutput, NodeSpec, OutputKind, ParamKind, RunContext};
use crate::error::{ErrorCategory, NodeError};
use crate::llm::{LlmRequest, LlmResponse};
use serde_json::{json, Map, Value};
use std::sync::atomic::Ordering;

pub static SPEC: NodeSpec = NodeSpec {
    name: "llm",
    summary: "Sends one prompt to a language model (Anthropic, or OpenAI-compatible with `openai/<model>`).",
    version: 1,
    params: &[
        req("prompt", ParamKind::Any)
        .doc("The prompt (objects and arrays as their JSON text)."),
        opt("system", ParamKind::String)
        .doc("A system prompt."),
        opt("model", ParamKind::String)
        .doc("The model (default anthropic/claude-haiku-4-5, or PFLOW_LLM_MODEL)."),
        ranged("max_tokens", ParamKind::Integer, 1.0, 4_294_967_295.0)
        .doc("Longest reply in tokens (default 4096)."),
        ranged("temperature", ParamKind::Number, 0.0, 2.0)
        .doc("Sampling temperature, sent only when given."),
        opt("images", ParamKind::Any)
        .doc("Not supported: a workflow that gives images is refused."),
    ],
    outputs: &[
        out("response", OutputKind::Text)
        .doc("The reply's text (one fenced code block loses its fences)."),
        out("llm_usage", OutputKind::Json)
        .doc("model, input_tokens and output_tokens."),
    ],
    reads_files: &[],
    // The default model, and which server answers, change the result.
    removes_files: &[],
    writes_files: &[],
    key_env: &[
        crate::llm::MODEL_ENV,
        crate::llm::ENDPOINT_ENV[0],
        crate::llm::ENDPOINT_ENV[1],
    ],
    shell_params: &[],
    env_param: None,
    untrusted_outputs: &["response"],
    secret_params: &[],
    secret_header_params: &[],
    announces_effects: false,
    repeats_effects: super::never,
    volatile: false,
    closed_params: false,
    open_outputs: false,
    identity: "",
    start: None,
    run,
};

pub const DEFAULT_MAX_TOKENS: u32 = 4096;

fn run(params: &Map<String, Value>, ctx: &RunContext) -> Result<NodeOutput, NodeError> {
    let request = request(params)?;
    if ctx.interrupted.load(Ordering::SeqCst) {
        return Err(NodeError::new(ErrorCategory::Interrupted, "interrupted"));
    }
    let reply = crate::llm::complete(&request)?;
    Ok(NodeOutput::new(outputs(reply)))
}

fn request(params: &Map<String, Value>) -> Result<LlmRequest, NodeError> {
    if params.get("images").is_some_and(has_images) {
        return Err(invalid(
            "param 'images' is not supported by this pflow yet; remove it",
        ));
    }
    let model = match opt_str_param(params, "model")?.map(str::trim) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => crate::llm::default_model(),
    };
    Ok(LlmRequest {
        model,
        system: opt_str_param(params, "system")?.map(str::to_string),
        prompt: prompt(params)?,
        max_tokens: max_tokens(params)?,
        temperature: temperature(params)?,
    })
}

fn has_images(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.trim().is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    }
}

/// Text as is; any other value as its JSON text. An empty prompt is an error (the APIs
/// reject empty messages).
fn prompt(params: &Map<String, Value>) -> Result<String, NodeError> {
    let text = match params.get("prompt") {
        None | Some(Value::Null) => return Err(invalid("missing required param 'prompt'")),
        Some(v) => crate::template::render_text(v).into_owned(),
    };
    if text.trim().is_empty() {
        return Err(invalid("param 'prompt' is empty"));
    }
    Ok(text)
}

fn max_tokens(params: &Map<String, Value>) -> Result<u32, NodeError> {
    match num_param(params, "max_tokens")? {
        None => Ok(DEFAULT_MAX_TOKENS),
        Some(n) if n >= 1.0 && n.fract() == 0.0 && n <= u32::MAX as f64 => Ok(n as u32),
        Some(n) => Err(invalid(format!(
            "param 'max_tokens' must be a whole number of at least 1, got {n}"
        ))),
    }
}

fn temperature(params: &Map<String, Value>) -> Result<Option<f64>, NodeError> {
    match num_param(params, "temperature")? {
        Some(t) if !(t.is_finite() && t >= 0.0) => Err(invalid(format!(
            "param 'temperature' must be a number of at least 0, got {t}"
        ))),
        t => Ok(t),
    }
}

fn outputs(reply: LlmResponse) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(
        "response".into(),
        Value::String(strip_single_fence(&reply.text).to_string()),
    );
    o.insert(
        "llm_usage".into(),
        json!({
            "model": reply.model,
            "input_tokens": reply.input_tokens,
            "output_tokens": reply.output_tokens,
        }),
    );
    o
}

/// The inside of a reply that is exactly one fenced code block (```` ```json ... ``` ````),
/// so `${node.response.field}` can parse it; any other reply unchanged.
fn strip_single_fence(text: &str) -> &str {
    let t = text.trim();
    let Some(rest) = t.strip_prefix("```") else {
        return text;
    };
    let Some(inner) = rest.strip_suffix("```") else {
        return text;
    };
    // The opening line holds the language tag; the block must span more than one line.
    let Some((_tag, body)) = inner.split_once('\n') else {
        return text;
    };
    if body.contains("```") {
        return text;
    }
    body.strip_suffix('\n').unwrap_or(body)
}

fn invalid(message: impl Into<String>) -> NodeError {
    NodeError::new(ErrorCategory::Validation, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn request_from_params() {
        let r = request(&params(
            json!({"prompt": "hi", "model": "openai/x", "max_tokens": 10,
            "temperature": 0.5, "system": "s"}),
        ))
        .unwrap();
        assert_eq!(r.model, "openai/x");
        assert_eq!((r.max_tokens, r.temperature), (10, Some(0.5)));
        assert_eq!(r.system.as_deref(), Some("s"));

        let r = request(&params(json!({"prompt": {"a": [1, 2]}}))).unwrap();
        assert_eq!(r.prompt, r#"{"a":[1,2]}"#);
        assert_eq!((r.max_tokens, r.temperature), (DEFAULT_MAX_TOKENS, None));
        assert!(r.system.is_none());
    }

    #[test]
    fn bad_params_are_validation_errors() {
        for p in [
            json!({"prompt": "  "}),
            json!({"prompt": null}),
            json!({"prompt": "x", "max_tokens": 0}),
            json!({"prompt": "x", "max_tokens": 1.5}),
            json!({"prompt": "x", "temperature": -1}),
            json!({"prompt": "x", "images": ["a.png"]}),
        ] {
            let e = request(&params(p.clone())).unwrap_err();
            assert_eq!(e.category, ErrorCategory::Validation, "{p}");
        }
    }

    #[test]
    fn fences() {
        assert_eq!(strip_single_fence("```json\n{\"a\": 1}\n```"), "{\"a\": 1}");
        assert_eq!(strip_single_fence("  ```\nx\ny\n```\n"), "x\ny");
        assert_eq!(strip_single_fence("text ```x```"), "text ```x```");
        assert_eq!(
            strip_single_fence("```a\n```\nmid\n```b\n```"),
            "```a\n```\nmid\n```b\n```"
        );
        assert_eq!(strip_single_fence("plain"), "plain");
    }
}
