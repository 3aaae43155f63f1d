//! The value of a one-line `- key: value` item.
//!
//! As in the original pflow, a one-line value is not parsed as a YAML document: `: ` and
//! `#` are ordinary text in it (`- command: echo a: b # c` is that whole string). Quoted
//! values, `null`, YAML 1.1 booleans (`yes`, `off`), plain numbers and flow collections
//! (`[a, b]`, `{k: v}`) are what they look like; everything else is the text itself.

use serde_json::{Number, Value};

const TRUE: &[&str] = &[
    "true", "True", "TRUE", "yes", "Yes", "YES", "on", "On", "ON",
];
const FALSE: &[&str] = &[
    "false", "False", "FALSE", "no", "No", "NO", "off", "Off", "OFF",
];
const NULL: &[&str] = &["null", "Null", "NULL", "~"];

/// The value `text` (already trimmed) stands for; an error for a quote left open or a
/// flow collection that is not valid YAML.
pub fn coerce(text: &str) -> Result<Value, String> {
    if text.is_empty() || NULL.contains(&text) {
        return Ok(Value::Null);
    }
    let quoted = |q: char| text.len() >= 2 && text.starts_with(q) && text.ends_with(q);
    if quoted('"') {
        // YAML's double-quoted escapes (a superset of JSON's).
        return match serde_yaml_ng::from_str::<Value>(text) {
            Ok(v @ Value::String(_)) => Ok(v),
            _ => Err(format!("{text} is not a valid double-quoted string")),
        };
    }
    if quoted('\'') {
        return Ok(Value::String(text[1..text.len() - 1].replace("''", "'")));
    }
    if let Some(q) = text.chars().next().filter(|c| *c == '"' || *c == '\'') {
        return Err(format!("the quote {q} in {text} is never closed"));
    }
    if text.starts_with('[') || text.starts_with('{') {
        return serde_yaml_ng::from_str::<Value>(text)
            .map_err(|e| format!("{text} is not a valid YAML flow collection: {e}"));
    }
    if TRUE.contains(&text) {
        return Ok(Value::Bool(true));
    }
    if FALSE.contains(&text) {
        return Ok(Value::Bool(false));
    }
    Ok(number(text).unwrap_or_else(|| Value::String(text.to_string())))
}

/// `42`, `-7`, `0.5`, `.5`, `1.5e3`: digits with an optional sign, dot and exponent. Not
/// `1e5` (no dot), `inf` or `0x10`, which stay text as in the original.
fn number(text: &str) -> Option<Value> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return text
            .trim_start_matches('+')
            .parse::<i64>()
            .ok()
            .map(Value::from)
            .or_else(|| {
                digits
                    .parse::<u64>()
                    .ok()
                    .filter(|_| !text.starts_with('-'))
                    .map(Value::from)
            })
            .or_else(|| {
                text.parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
            });
    }
    let (mantissa, exponent) = match digits.find(['e', 'E']) {
        Some(i) => (&digits[..i], Some(&digits[i + 1..])),
        None => (digits, None),
    };
    let (whole, frac) = mantissa.split_once('.')?;
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok =
        all_digits(whole) && all_digits(frac) && !(whole.is_empty() && frac.is_empty());
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['+', '-']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    if !(mantissa_ok && exponent_ok) {
        return None;
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn values_are_what_they_look_like() {
        for (text, want) in [
            ("", json!(null)),
            ("~", json!(null)),
            ("yes", json!(true)),
            ("Off", json!(false)),
            ("42", json!(42)),
            ("-7", json!(-7)),
            ("0.7", json!(0.7)),
            (".5", json!(0.5)),
            ("1.5e3", json!(1500.0)),
            ("1e5", json!("1e5")),
            ("inf", json!("inf")),
            ("0x10", json!("0x10")),
            ("\"a\\nb\"", json!("a\nb")),
            ("\"\\u00e9\"", json!("é")),
            ("'it''s'", json!("it's")),
            ("[a, 1]", json!(["a", 1])),
            ("{k: v}", json!({"k": "v"})),
            ("echo a: b # c", json!("echo a: b # c")),
            ("${x.y}/z", json!("${x.y}/z")),
        ] {
            assert_eq!(coerce(text).unwrap(), want, "{text}");
        }
    }

    #[test]
    fn open_quotes_and_bad_flows_are_errors() {
        assert!(coerce("\"abc").unwrap_err().contains("never closed"));
        assert!(coerce("[a, b").is_err());
    }
}
