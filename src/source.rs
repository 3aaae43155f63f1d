//! Reading a workflow document from disk into JSON, with errors that say where.
//!
//! This is the first step of every command: bytes → UTF-8 text → a JSON value. Problems
//! here (missing file, a directory, non-UTF-8 bytes, a syntax error, nesting too deep,
//! a file too large) become one [`Diagnostic`] whose path gives the line and column.

use crate::diagnostic::Diagnostic;
use serde_json::Value;
use std::fs;
use std::io::Read;
use std::path::Path;

/// The most nodes a workflow may have.
pub const MAX_NODES: usize = 100_000;

/// Below this size a file cannot hold more than [`MAX_NODES`] nodes (a node takes at
/// least 16 bytes of JSON), so it is not counted before it is parsed.
const COUNT_FROM_BYTES: usize = MAX_NODES * 16;

/// Default largest workflow file accepted; `PFLOW_MAX_WORKFLOW_BYTES` overrides it.
pub const DEFAULT_MAX_WORKFLOW_BYTES: u64 = 64 * 1024 * 1024;

pub fn max_workflow_bytes() -> u64 {
    std::env::var("PFLOW_MAX_WORKFLOW_BYTES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_WORKFLOW_BYTES)
}

/// Read and parse a workflow file.
pub fn read_json_file(path: &Path) -> Result<Value, Diagnostic> {
    let shown = path.display();
    let meta = fs::metadata(path).map_err(|e| {
        let msg = match e.kind() {
            std::io::ErrorKind::NotFound => format!("workflow file '{shown}' does not exist"),
            std::io::ErrorKind::PermissionDenied => {
                format!("workflow file '{shown}' cannot be read: permission denied")
            }
            _ => format!("workflow file '{shown}' cannot be read: {e}"),
        };
        Diagnostic::error("root", msg)
    })?;
    if meta.is_dir() {
        return Err(Diagnostic::error(
            "root",
            format!("'{shown}' is a directory, not a workflow file"),
        )
        .with_hint("pass the path of a .json workflow file"));
    }
    let limit = max_workflow_bytes();
    if meta.len() > limit {
        return Err(Diagnostic::error(
            "root",
            format!(
                "workflow file '{shown}' is {} bytes, over the limit of {limit} bytes",
                meta.len()
            ),
        )
        .with_hint("set PFLOW_MAX_WORKFLOW_BYTES to raise the limit"));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    fs::File::open(path)
        .and_then(|f| f.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            Diagnostic::error(
                "root",
                format!("workflow file '{shown}' cannot be read: {e}"),
            )
        })?;
    if bytes.len() as u64 > limit {
        return Err(Diagnostic::error(
            "root",
            format!("workflow file '{shown}' is over the limit of {limit} bytes"),
        ));
    }
    // A JSON tree costs about fifty times the file: a file with too many nodes is refused
    // after a scan that keeps nothing, before it is parsed.
    if bytes.len() > COUNT_FROM_BYTES {
        if let Some(n) = count_nodes(&bytes).filter(|n| *n > MAX_NODES) {
            return Err(too_many_nodes(n));
        }
    }
    parse_json_bytes(&bytes)
}

/// The error for a workflow of `n` nodes, over [`MAX_NODES`].
pub fn too_many_nodes(n: usize) -> Diagnostic {
    Diagnostic::error(
        "nodes",
        format!("the workflow has {n} nodes, over the limit of {MAX_NODES}"),
    )
}

/// How many elements the top-level `"nodes"` array has, read without building anything;
/// None when the text is not such a document (parsing then says what is wrong).
fn count_nodes(bytes: &[u8]) -> Option<usize> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
    struct Doc;
    struct Count;
    impl<'de> Visitor<'de> for Count {
        type Value = usize;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an array")
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
            let mut n = 0;
            while seq.next_element::<IgnoredAny>()?.is_some() {
                n += 1;
            }
            Ok(n)
        }
    }
    struct Nodes(usize);
    impl<'de> serde::Deserialize<'de> for Nodes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_seq(Count).map(Nodes)
        }
    }
    impl<'de> Visitor<'de> for Doc {
        type Value = Option<usize>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<usize>, A::Error> {
            let mut found = None;
            while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                if key == "nodes" {
                    found = Some(map.next_value::<Nodes>()?.0);
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            Ok(found)
        }
    }
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut de = serde_json::Deserializer::from_str(text);
    de.deserialize_map(Doc).ok().flatten()
}

/// Parse workflow bytes (from a file, stdin or an LLM reply).
pub fn parse_json_bytes(bytes: &[u8]) -> Result<Value, Diagnostic> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, col) = line_col(&bytes[..e.valid_up_to()]);
        Diagnostic::error(
            format!("line {line}, column {col}"),
            format!(
                "the file is not valid UTF-8 text (bad byte at offset {})",
                e.valid_up_to()
            ),
        )
        .with_hint("save the workflow as UTF-8 JSON")
    })?;
    parse_json_text(text)
}

pub fn parse_json_text(text: &str) -> Result<Value, Diagnostic> {
    if text.trim().is_empty() {
        return Err(Diagnostic::error("root", "the workflow file is empty")
            .with_hint("a workflow is a JSON object with a \"nodes\" array"));
    }
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    serde_json::from_str::<UniqueKeys>(text)
        .map(|u| u.0)
        .map_err(|e| {
            let what = if e.to_string().contains("recursion limit") {
                "the JSON is nested too deeply (more than 128 levels)".to_string()
            } else {
                let msg = e.to_string();
                // serde_json appends " at line L column C"; we give the position separately.
                let msg = msg.split(" at line ").next().unwrap_or(&msg).to_string();
                format!("invalid JSON: {msg}")
            };
            Diagnostic::error(format!("line {}, column {}", e.line(), e.column()), what)
        })
}

/// A JSON value whose objects have no key twice. serde_json keeps the last of two equal
/// keys silently, so a node's second `"params"` would hide its first without a word;
/// this builds the same value in the same single pass and refuses a repeated key, at
/// its line and column.
struct UniqueKeys(Value);

impl<'de> serde::Deserialize<'de> for UniqueKeys {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor).map(UniqueKeys)
    }
}

struct UniqueVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(UniqueKeys(v)) = seq.next_element()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "the key \"{key}\" appears twice in one object (the second would silently replace the first)"
                )));
            }
            let UniqueKeys(v) = map.next_value()?;
            out.insert(key, v);
        }
        Ok(Value::Object(out))
    }
}

fn line_col(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|&&b| b == b'\n').count() + 1;
    let col = prefix.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_have_line_and_column() {
        let e = parse_json_text("{\n  \"nodes\": [,]\n}").unwrap_err();
        assert_eq!(e.path, "line 2, column 13");
        assert!(e.message.starts_with("invalid JSON"), "{}", e.message);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = parse_json_text(&deep).unwrap_err();
        assert!(e.message.contains("nested too deeply"), "{}", e.message);
    }

    #[test]
    fn non_utf8_names_the_offset() {
        let e = parse_json_bytes(b"{\"a\":\n \"\xff\"}").unwrap_err();
        assert_eq!(e.path, "line 2, column 3");
        assert!(e.message.contains("UTF-8"));
    }

    #[test]
    fn a_key_given_twice_is_an_error_at_its_place() {
        let e = parse_json_text("{\"nodes\": [{\"id\": \"a\",\n \"id\": \"b\"}]}").unwrap_err();
        assert!(e.message.contains("\"id\" appears twice"), "{}", e.message);
        assert!(e.path.starts_with("line 2, column"), "{}", e.path);
        // Equal keys in different objects are fine, and values come out as serde_json's.
        let v = parse_json_text(
            "{\"a\": {\"x\": 1.5}, \"b\": {\"x\": [true, null, \"s\", -3, 18446744073709551615]}}",
        )
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({"a": {"x": 1.5}, "b": {"x": [true, null, "s", -3, 18446744073709551615u64]}})
        );
    }

    #[test]
    fn empty_is_an_error() {
        assert!(parse_json_text("  \n")
            .unwrap_err()
            .message
            .contains("empty"));
    }
}
