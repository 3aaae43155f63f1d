//! Workflow inputs from the command line (`key=value`), piped stdin and defaults.

use crate::diagnostic::{suggestion, Diagnostic};
use crate::workflow::{InputType, Workflow};
use serde_json::{Map, Value};

/// Parse `key=value` arguments.
pub fn parse_assignments(args: &[String]) -> Result<Vec<(String, String)>, Diagnostic> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
            _ => Err(
                Diagnostic::error("arguments", format!("'{a}' is not a KEY=VALUE input"))
                    .with_hint("pass inputs as name=value, e.g. pflow build wf.json name=Ada"),
            ),
        })
        .collect()
}

/// Coerce command-line text to the declared type. A `secret` input's text is never
/// shown in the error (a malformed value still holds the secret).
pub fn coerce(
    name: &str,
    text: &str,
    ty: Option<InputType>,
    secret: bool,
) -> Result<Value, Diagnostic> {
    let bad = |what: &str| {
        let got = match secret {
            true => format!(
                "got a value of {} characters (not shown: a secret)",
                text.chars().count()
            ),
            false => format!("got '{text}'"),
        };
        Diagnostic::error(
            format!("inputs.{name}"),
            format!("input '{name}' must be {what}, {got}"),
        )
    };
    Ok(match ty {
        None | Some(InputType::String) => Value::String(text.to_string()),
        Some(InputType::Integer) => text
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("a whole number"))?,
        Some(InputType::Number) => {
            let t = text.trim();
            if let Ok(i) = t.parse::<i64>() {
                Value::from(i)
            } else {
                t.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| bad("a number"))?
            }
        }
        Some(InputType::Boolean) => match text.trim().to_lowercase().as_str() {
            "true" | "1" | "yes" => Value::Bool(true),
            "false" | "0" | "no" => Value::Bool(false),
            _ => return Err(bad("true or false")),
        },
        Some(InputType::Object) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Object(_)) => v,
            _ => return Err(bad("a JSON object")),
        },
        Some(InputType::Array) => match serde_json::from_str::<Value>(text) {
            Ok(v @ Value::Array(_)) => v,
            _ => return Err(bad("a JSON array")),
        },
    })
}

/// Every declared input's value: given, piped, default, or null for an optional input.
/// All problems are reported together.
pub fn resolve(
    wf: &Workflow,
    given: &[(String, String)],
    stdin: Option<String>,
) -> Result<Map<String, Value>, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut values = Map::new();
    for (k, _) in given {
        if !wf.inputs.contains_key(k) {
            let declared: Vec<&str> = wf.inputs.keys().map(|s| s.as_str()).collect();
            let hint = suggestion(k, declared.iter().copied()).unwrap_or_else(|| {
                if declared.is_empty() {
                    "this workflow declares no inputs".into()
                } else {
                    format!("declared inputs: {}", declared.join(", "))
                }
            });
            errors.push(
                Diagnostic::error("arguments", format!("unknown input '{k}'")).with_hint(hint),
            );
        }
    }
    let mut stdin = stdin;
    for (name, spec) in &wf.inputs {
        let text = given
            .iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .or_else(|| if spec.stdin { stdin.take() } else { None });
        let value = match text {
            Some(t) => match coerce(name, &t, spec.ty, wf.is_secret_input(name)) {
                Ok(v) => v,
                Err(d) => {
                    errors.push(d);
                    continue;
                }
            },
            None => match (&spec.default, spec.required) {
                (Some(d), _) => d.clone(),
                (None, false) => Value::Null,
                (None, true) => {
                    let desc = spec
                        .description
                        .clone()
                        .unwrap_or_else(|| "no description".into());
                    errors.push(
                        Diagnostic::error(
                            format!("inputs.{name}"),
                            format!("missing required input '{name}': {desc}"),
                        )
                        .with_hint(format!("pass it as {name}=VALUE")),
                    );
                    continue;
                }
            },
        };
        values.insert(name.clone(), value);
    }
    if errors.is_empty() {
        Ok(values)
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn wf(inputs: Value) -> Workflow {
        let (wf, d) =
            Workflow::from_json(&json!({"inputs": inputs, "nodes": [{"id": "a", "type": "echo"}]}));
        assert!(d.is_empty(), "{d:?}");
        wf.unwrap()
    }

    #[test]
    fn coerces_declared_types() {
        let w = wf(json!({
            "n": {"type": "number"}, "i": {"type": "integer"}, "b": {"type": "boolean"},
            "o": {"type": "object"}, "s": {"type": "string"}
        }));
        let given: Vec<(String, String)> = [
            ("n", "1.5"),
            ("i", "3"),
            ("b", "yes"),
            ("o", "{\"a\":1}"),
            ("s", "42"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let v = resolve(&w, &given, None).unwrap();
        assert_eq!(
            Value::Object(v),
            json!({"n": 1.5, "i": 3, "b": true, "o": {"a": 1}, "s": "42"})
        );
    }

    #[test]
    fn missing_required_names_it_with_description() {
        let w = wf(json!({"topic": {"description": "What to write about"}}));
        let e = resolve(&w, &[], None).unwrap_err();
        assert!(e[0].message.contains("'topic'") && e[0].message.contains("What to write about"));
    }

    #[test]
    fn defaults_stdin_and_unknown() {
        let w = wf(json!({"a": {"required": false, "default": "x"}, "data": {"stdin": true}}));
        let v = resolve(&w, &[], Some("piped".into())).unwrap();
        assert_eq!(v["a"], json!("x"));
        assert_eq!(v["data"], json!("piped"));
        let e = resolve(&w, &[("dta".into(), "1".into())], Some("p".into())).unwrap_err();
        assert_eq!(e[0].hint.as_deref(), Some("did you mean 'data'?"));
    }

    #[test]
    fn bad_values_are_errors() {
        let w = wf(json!({"n": {"type": "integer"}}));
        let e = resolve(&w, &[("n".into(), "x".into())], None).unwrap_err();
        assert!(e[0].message.contains("whole number"));
    }
}
