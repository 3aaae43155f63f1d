//! What model calls cost: tokens in and out, priced per million tokens from a small table
//! of list prices (USD), which `PFLOW_LLM_PRICES` (or `llm_prices` in a settings file)
//! extends or overrides: `model=INPUT/OUTPUT;model2=INPUT/OUTPUT`, per million tokens.
//! A model with no price has its tokens counted and no cost shown.

use serde_json::{json, Value};

/// List prices per million tokens (input, output), by model id without provider prefix.
const PRICES: &[(&str, f64, f64)] = &[
    ("claude-haiku-4-5", 1.0, 5.0),
    ("claude-sonnet-4-5", 3.0, 15.0),
    ("claude-sonnet-4", 3.0, 15.0),
    ("claude-opus-4-1", 15.0, 75.0),
    ("claude-opus-4", 15.0, 75.0),
    ("claude-3-5-haiku", 0.8, 4.0),
    ("claude-3.5-haiku", 0.8, 4.0),
    ("gpt-4o", 2.5, 10.0),
    ("gpt-4o-mini", 0.15, 0.6),
    ("gpt-4.1", 2.0, 8.0),
    ("gpt-4.1-mini", 0.4, 1.6),
];

pub const PRICES_ENV: &str = "PFLOW_LLM_PRICES";

/// The tokens one call (or several, summed) used.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TokenUse {
    pub model: String,
    pub calls: u64,
    pub input_tokens: u64,
    pub output_tokens: u64,
}

impl TokenUse {
    /// The `llm_usage` an `llm` node outputs (`model`, `input_tokens`,
    /// `output_tokens`), or the sum over a batch's `results`.
    pub fn of_outputs(outputs: &Value) -> Option<TokenUse> {
        let one = |u: &Value| TokenUse {
            model: u
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            calls: 1,
            input_tokens: u.get("input_tokens").and_then(Value::as_u64).unwrap_or(0),
            output_tokens: u.get("output_tokens").and_then(Value::as_u64).unwrap_or(0),
        };
        if let Some(u) = outputs.get("llm_usage").filter(|u| u.is_object()) {
            return Some(one(u));
        }
        let mut sum: Option<TokenUse> = None;
        for u in outputs
            .get("results")?
            .as_array()?
            .iter()
            .filter_map(|r| r.get("llm_usage"))
        {
            sum.get_or_insert_with(TokenUse::default).add(&one(u));
        }
        sum
    }

    /// Add another call's use (the model stays when it is the same, else becomes mixed).
    pub fn add(&mut self, other: &TokenUse) {
        if self.calls == 0 {
            self.model = other.model.clone();
        } else if self.model != other.model {
            self.model = "several models".into();
        }
        self.calls = self.calls.saturating_add(other.calls);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }

    /// USD, when the model has a price (a mix of models is priced only when each call
    /// was; callers sum per-model uses instead).
    pub fn cost_usd(&self) -> Option<f64> {
        let (input, output) = price_of(&self.model)?;
        Some((self.input_tokens as f64 * input + self.output_tokens as f64 * output) / 1e6)
    }

    pub fn to_json(&self) -> Value {
        json!({"model": self.model, "calls": self.calls, "input_tokens": self.input_tokens,
               "output_tokens": self.output_tokens, "cost_usd": self.cost_usd()})
    }
}

/// (input, output) USD per million tokens for `model` (with or without its provider
/// prefix, with or without a date suffix), the environment's prices first.
pub fn price_of(model: &str) -> Option<(f64, f64)> {
    let bare = model.rsplit('/').next().unwrap_or(model);
    let from_env = std::env::var(PRICES_ENV).ok().and_then(|text| {
        text.split(';').find_map(|entry| {
            let (name, prices) = entry.split_once('=')?;
            let name = name.trim();
            if name != model && name != bare {
                return None;
            }
            let (i, o) = prices.split_once('/')?;
            Some((i.trim().parse().ok()?, o.trim().parse().ok()?))
        })
    });
    from_env.or_else(|| {
        // Longest match first: "gpt-4o-mini" before "gpt-4o"; a dated id
        // ("claude-haiku-4-5-20251001") is priced as its family.
        PRICES
            .iter()
            .filter(|(name, _, _)| bare == *name || bare.starts_with(&format!("{name}-")))
            .max_by_key(|(name, _, _)| name.len())
            .map(|(_, i, o)| (*i, *o))
    })
}

/// `$0.0123`: four decimals, six below a hundredth of a cent (one small call).
pub fn format_usd(usd: f64) -> String {
    if usd > 0.0 && usd < 0.0001 {
        format!("${usd:.6}")
    } else {
        format!("${usd:.4}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prices_follow_the_model_family() {
        assert_eq!(price_of("anthropic/claude-haiku-4-5"), Some((1.0, 5.0)));
        assert_eq!(price_of("claude-haiku-4-5-20251001"), Some((1.0, 5.0)));
        assert_eq!(price_of("openai/gpt-4o-mini"), Some((0.15, 0.6)));
        assert_eq!(price_of("llama3"), None);
        let u = TokenUse {
            model: "claude-haiku-4-5".into(),
            calls: 1,
            input_tokens: 1_000_000,
            output_tokens: 200_000,
        };
        assert_eq!(u.cost_usd(), Some(2.0));
    }
}
