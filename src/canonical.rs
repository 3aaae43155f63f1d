//! Canonical JSON and the digests built on it.
//!
//! Equal JSON values must hash equally however they were produced: object keys are
//! sorted, there is no whitespace, strings use serde_json's escaping, and a float with an
//! integral value (`1.0`) is written as the integer (`1`).

use serde_json::Value;
use std::io::Write;

/// Write `v` in canonical form.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    let _ = write!(out, "{}", f as i64);
                    return;
                }
            }
            let _ = write!(out, "{n}");
        }
        Value::String(s) => {
            let _ = serde_json::to_writer(&mut *out, s);
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Members sorted by key, not keys looked up again: a lookup hashes the key
            // (SipHash), which was a tenth of writing a node's outputs.
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_unstable_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_canonical(v, out);
            }
            out.push(b'}');
        }
    }
}

pub fn to_canonical(v: &Value) -> Vec<u8> {
    // Room for a typical node's outputs or a param: grown from empty, the buffer was
    // moved five or six times for each (110,000 moves in a cold build of 10,000 nodes).
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    out
}

/// Digest of a node's outputs: what dependents' keys are built from (early cutoff).
pub fn output_digest(v: &Value) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("pflow 2026-11 node output digest v1");
    h.update(&to_canonical(v));
    h.finalize()
}

/// Digest of one value as a key component.
pub fn value_digest(v: &Value) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key("pflow 2026-11 key component v1");
    h.update(&to_canonical(v));
    h.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_order_and_whitespace_do_not_matter() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": [1, 2, {"y": null, "x": "s"}]}"#).unwrap();
        let b: Value = serde_json::from_str(r#"{"a":[1,2,{"x":"s","y":null}],"b":1}"#).unwrap();
        assert_eq!(to_canonical(&a), to_canonical(&b));
        assert_eq!(output_digest(&a), output_digest(&b));
    }

    #[test]
    fn objects_are_written_in_key_order_without_space() {
        // The bytes keys are made of: a change here changes every key in every cache.
        let v = json!({"b": 1, "é": true, "a": [1, {"y": null, "x": "s"}], "B": {}});
        assert_eq!(
            to_canonical(&v),
            r#"{"B":{},"a":[1,{"x":"s","y":null}],"b":1,"é":true}"#.as_bytes()
        );
    }

    #[test]
    fn integral_floats_equal_integers() {
        assert_eq!(to_canonical(&json!(1.0)), to_canonical(&json!(1)));
        assert_eq!(to_canonical(&json!(1.5)), b"1.5");
        assert_ne!(output_digest(&json!(1)), output_digest(&json!("1")));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_canonical(&json!("a\"b\n")), br#""a\"b\n""#);
    }
}
