//! Canonical JSON and the digests built on it.
//!
//! Equal JSON values must hash equally however they were produced: object keys are
//! sorted, there is no whitespace, strings use serde_json's escaping, and a float with an
//! integral value (`1.0`) is written as the integer (`1`).
//!
//! That form says when two workflows mean the same thing (the repair's checks, a
//! workflow's digest). Keys and output digests need more: nodes use a value as written
//! (`write-file` writes an object's members in their order, an HTTP body sends `1.0`), so
//! two values with one canonical form can give different results. [`to_key_bytes`] adds
//! the value as written whenever that differs from the canonical form, so the keys of
//! every other value stay as they were.

use serde_json::Value;
use std::io::Write;

/// Write `v` in canonical form.
pub fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    write_noting(v, out, true, None);
}

/// Write `v` in canonical form. With `notes`, also note there where serde_json writes it
/// otherwise, each at the offset in `out` where the canonical form has it: an integral
/// float (`f`), and an object whose members are out of order (`o`, then each sorted
/// member's place in the object as written); at the top only if `top_order_counts`.
/// The canonical form and the notes together give the value as written.
fn write_noting(
    v: &Value,
    out: &mut Vec<u8>,
    top_order_counts: bool,
    mut notes: Option<&mut Vec<u8>>,
) {
    match v {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64()) {
                if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
                    if let Some(notes) = notes {
                        note(notes, b'f', out.len());
                    }
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
                write_noting(item, out, true, notes.as_deref_mut());
            }
            out.push(b']');
        }
        Value::Object(map) => {
            // Members sorted by key, not keys looked up again: a lookup hashes the key
            // (SipHash), which was a tenth of writing a node's outputs.
            let mut members: Vec<(usize, &String, &Value)> = map
                .iter()
                .enumerate()
                .map(|(i, (k, v))| (i, k, v))
                .collect();
            if !members.is_sorted_by(|a, b| a.1 <= b.1) {
                members.sort_unstable_by(|a, b| a.1.cmp(b.1));
                if let Some(notes) = notes.as_deref_mut().filter(|_| top_order_counts) {
                    note(notes, b'o', out.len());
                    for (i, _, _) in &members {
                        notes.extend_from_slice(&(*i as u32).to_le_bytes());
                    }
                }
            }
            out.push(b'{');
            for (i, (_, k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, k);
                out.push(b':');
                write_noting(v, out, true, notes.as_deref_mut());
            }
            out.push(b'}');
        }
    }
}

fn note(notes: &mut Vec<u8>, kind: u8, at: usize) {
    notes.push(kind);
    notes.extend_from_slice(&(at as u64).to_le_bytes());
}

pub fn to_canonical(v: &Value) -> Vec<u8> {
    // Room for a typical node's outputs or a param: grown from empty, the buffer was
    // moved five or six times for each (110,000 moves in a cold build of 10,000 nodes).
    let mut out = Vec::with_capacity(256);
    write_canonical(v, &mut out);
    out
}

/// The bytes a key holds for `v`: its canonical form, and after it, only when serde_json
/// writes the value otherwise, what tells the value as written (after a NUL, which
/// canonical JSON never holds). Values that hash equal then render equal wherever a
/// node uses them.
pub fn to_key_bytes(v: &Value) -> Vec<u8> {
    key_bytes(v, true)
}

/// [`to_key_bytes`] for values taken by name (a node's outputs, its params): the order
/// of the names does not count, each value as written does.
pub fn to_key_bytes_by_name(v: &Value) -> Vec<u8> {
    key_bytes(v, false)
}

fn key_bytes(v: &Value, top_order_counts: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    let mut notes = Vec::new();
    write_noting(v, &mut out, top_order_counts, Some(&mut notes));
    if !notes.is_empty() {
        out.push(0);
        out.extend_from_slice(&notes);
    }
    out
}

const OUTPUT_DIGEST: &str = "pflow 2026-11 node output digest v1";

/// Digest of a node's outputs: what dependents' keys are built from (early cutoff).
pub fn output_digest(v: &Value) -> blake3::Hash {
    let mut h = blake3::Hasher::new_derive_key(OUTPUT_DIGEST);
    h.update(&to_key_bytes_by_name(v));
    h.finalize()
}

/// Does `hex` name `v`'s output digest? Entries stored before the digest took a value
/// as written have its canonical form's: still the digest of these outputs, so they are
/// not corrupt.
pub fn output_digest_matches(v: &Value, hex: &str) -> bool {
    let bytes = to_key_bytes_by_name(v);
    let digest = |b: &[u8]| {
        let mut h = blake3::Hasher::new_derive_key(OUTPUT_DIGEST);
        h.update(b);
        h.finalize()
    };
    if digest(&bytes).to_hex().as_str() == hex {
        return true;
    }
    match bytes.iter().position(|&b| b == 0) {
        Some(end) => bytes
            .get(..end)
            .is_some_and(|c| digest(c).to_hex().as_str() == hex),
        None => false,
    }
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
    fn key_bytes_add_the_value_as_written_only_where_it_differs() {
        // Sorted members and no integral floats: the canonical form alone, so such
        // values keep the keys they had.
        let plain = json!({"a": [1, 1.5, {"x": "s", "y": 0}], "b": null});
        assert_eq!(to_key_bytes(&plain), to_canonical(&plain));
        let reordered = json!({"a": [1, 1.5, {"y": 0, "x": "s"}], "b": null});
        let float = json!({"a": [1.0, 1.5, {"x": "s", "y": 0}], "b": null});
        for other in [&reordered, &float] {
            assert_eq!(to_canonical(other), to_canonical(&plain));
            assert_ne!(to_key_bytes(other), to_key_bytes(&plain), "{other}");
            assert_ne!(output_digest(other), output_digest(&plain), "{other}");
        }
    }

    #[test]
    fn output_names_order_does_not_count_but_their_values_do() {
        let a = json!({"stdout": "x", "exit_code": 0});
        let b = json!({"exit_code": 0, "stdout": "x"});
        assert_eq!(output_digest(&a), output_digest(&b));
        let c = json!({"exit_code": 0, "response": {"b": 1, "a": 2}});
        let d = json!({"exit_code": 0, "response": {"a": 2, "b": 1}});
        assert_ne!(output_digest(&c), output_digest(&d));
    }

    #[test]
    fn an_entry_recorded_with_the_canonical_digest_still_matches() {
        let v = json!({"response": {"b": 1, "a": 2}});
        let mut h = blake3::Hasher::new_derive_key(OUTPUT_DIGEST);
        h.update(&to_canonical(&v));
        let legacy = h.finalize().to_hex();
        assert_ne!(output_digest(&v).to_hex(), legacy);
        assert!(output_digest_matches(&v, &legacy));
        assert!(output_digest_matches(&v, &output_digest(&v).to_hex()));
        let other = json!({"response": {"b": 2, "a": 1}});
        assert!(!output_digest_matches(&other, &legacy));
    }

    #[test]
    fn strings_are_escaped() {
        assert_eq!(to_canonical(&json!("a\"b\n")), br#""a\"b\n""#);
    }
}
