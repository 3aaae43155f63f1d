//! Reading a workflow document from disk into JSON, with errors that say where.
//!
//! This is the first step of every command: bytes → UTF-8 text → a JSON value. Problems
//! here (missing file, a directory, non-UTF-8 bytes, a syntax error, nesting too deep,
//! a file too large) become one [`Diagnostic`] whose path gives the line and column.
//! A `.pflow.md` file goes through the Markdown front end ([`crate::markdown`]) to the
//! same IR, with a [`SourceMap`] that places later diagnostics on its lines.

use crate::diagnostic::Diagnostic;
use crate::source_map::{LineIndex, SourceMap};
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

/// How a workflow file is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Markdown,
}

/// A workflow file read into the IR.
#[derive(Debug, Clone)]
pub struct Document {
    /// The JSON document (the IR, or a saved workflow's wrapper around it).
    pub doc: Value,
    pub format: Format,
    /// Where the IR's parts are in the file (Markdown files).
    pub map: Option<SourceMap>,
    /// A Markdown file's `# Title` and description.
    pub title: Option<String>,
    pub description: Option<String>,
    /// What the front end noticed but accepted.
    pub warnings: Vec<Diagnostic>,
    /// The file's text.
    pub text: String,
}

impl Document {
    /// Give diagnostics about this document the line and column of their path. A JSON
    /// file is scanned for its positions only here, when there is something to place.
    pub fn place(&self, errors: &mut [Diagnostic], warnings: &mut [Diagnostic]) {
        if errors
            .iter()
            .chain(warnings.iter())
            .all(|d| d.line.is_some())
        {
            return;
        }
        let scanned;
        let map = match &self.map {
            Some(map) => map,
            None => {
                scanned = json_source_map(&self.text);
                &scanned
            }
        };
        map.place(errors);
        map.place(warnings);
    }
}

/// Where each value of a JSON document is: its JSON path, spelled as diagnostics spell
/// it (`nodes[0].params.command`), → its span. For text that parsed as JSON.
pub fn json_source_map(text: &str) -> SourceMap {
    let mut scan = JsonScan {
        bytes: text.as_bytes(),
        pos: text.len() - text.trim_start_matches('\u{feff}').len(),
        index: LineIndex::new(text),
        map: SourceMap::new(),
    };
    scan.value("", 0);
    scan.map
}

struct JsonScan<'a> {
    bytes: &'a [u8],
    pos: usize,
    index: LineIndex<'a>,
    map: SourceMap,
}

impl JsonScan<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn blank(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// A string, from its opening quote to past its closing one.
    fn string(&mut self) {
        self.pos += 1;
        while let Some(b) = self.peek() {
            self.pos += if b == b'\\' { 2 } else { 1 };
            if b == b'"' {
                return;
            }
        }
    }

    fn value(&mut self, path: &str, depth: usize) {
        // serde_json stops at 128 levels; text deeper than that was never a workflow.
        if depth > 200 {
            return;
        }
        self.blank();
        let start = self.pos;
        match self.peek() {
            Some(open @ (b'{' | b'[')) => {
                self.pos += 1;
                let mut i = 0;
                loop {
                    self.blank();
                    if matches!(self.peek(), Some(b'}' | b']')) {
                        self.pos += 1;
                        break;
                    }
                    let before = self.pos;
                    let child = if open == b'{' {
                        if self.peek() != Some(b'"') {
                            return;
                        }
                        self.string();
                        let key: String = self
                            .bytes
                            .get(before..self.pos)
                            .and_then(|k| serde_json::from_slice(k).ok())
                            .unwrap_or_default();
                        self.blank();
                        if self.peek() != Some(b':') {
                            return;
                        }
                        self.pos += 1;
                        crate::workflow::field_path(path, &key)
                    } else {
                        format!("{path}[{i}]")
                    };
                    self.value(&child, depth + 1);
                    i += 1;
                    self.blank();
                    match self.peek() {
                        Some(b',') => self.pos += 1,
                        Some(b'}' | b']') => {}
                        _ => return,
                    }
                    if self.pos == before {
                        return;
                    }
                }
            }
            Some(b'"') => self.string(),
            Some(_) => {
                while !matches!(
                    self.peek(),
                    None | Some(b',' | b']' | b'}' | b' ' | b'\t' | b'\n' | b'\r')
                ) {
                    self.pos += 1;
                }
            }
            None => return,
        }
        if !path.is_empty() {
            self.map.insert(path, self.index.span(start, self.pos));
        }
    }
}

/// Read a workflow file of either format: `.md` files (`x.pflow.md`) as Markdown,
/// anything else as JSON. Every problem the front end finds, each with its place.
pub fn read_workflow_file(path: &Path) -> Result<Document, Vec<Diagnostic>> {
    if !crate::markdown::is_markdown_path(path) {
        let bytes = read_json_bytes(path).map_err(|d| vec![d])?;
        let doc = parse_json_bytes(&bytes).map_err(|d| vec![d])?;
        return Ok(Document {
            doc,
            format: Format::Json,
            map: None,
            title: None,
            description: None,
            warnings: Vec::new(),
            // It parsed, so it is UTF-8 (and the bytes move, no copy).
            text: String::from_utf8(bytes).unwrap_or_default(),
        });
    }
    let bytes = read_bytes(path).map_err(|d| vec![d])?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| vec![not_utf8(&bytes, &e, "save the workflow as UTF-8 Markdown")])?;
    if text.trim().is_empty() {
        return Err(vec![Diagnostic::error(
            "root",
            "the workflow file is empty",
        )
        .with_hint(
            "a Markdown workflow has a '# Title', a '## Steps' section and '### step' entries",
        )]);
    }
    let parsed = crate::markdown::parse(text)?;
    Ok(Document {
        doc: parsed.ir,
        format: Format::Markdown,
        map: Some(parsed.map),
        title: parsed.title,
        description: parsed.description,
        warnings: parsed.warnings,
        text: text.to_string(),
    })
}

/// Read and parse a workflow file.
pub fn read_json_file(path: &Path) -> Result<Value, Diagnostic> {
    parse_json_bytes(&read_json_bytes(path)?)
}

/// A JSON workflow file's bytes, refused before parsing when it has too many nodes.
fn read_json_bytes(path: &Path) -> Result<Vec<u8>, Diagnostic> {
    let bytes = read_bytes(path)?;
    // A JSON tree costs about fifty times the file: a file with too many nodes is refused
    // after a scan that keeps nothing, before it is parsed.
    if bytes.len() > COUNT_FROM_BYTES {
        if let Some(n) = count_nodes(&bytes).filter(|n| *n > MAX_NODES) {
            return Err(too_many_nodes(n));
        }
    }
    Ok(bytes)
}

/// A workflow file's bytes, within the size limit.
fn read_bytes(path: &Path) -> Result<Vec<u8>, Diagnostic> {
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
        .with_hint("pass the path of a .json or .pflow.md workflow file"));
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
    Ok(bytes)
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
    let text = std::str::from_utf8(bytes)
        .map_err(|e| not_utf8(bytes, &e, "save the workflow as UTF-8 JSON"))?;
    parse_json_text(text)
}

fn not_utf8(bytes: &[u8], e: &std::str::Utf8Error, hint: &str) -> Diagnostic {
    let (line, col) = line_col(bytes.get(..e.valid_up_to()).unwrap_or(bytes));
    Diagnostic::error(
        format!("line {line}, column {col}"),
        format!(
            "the file is not valid UTF-8 text (bad byte at offset {})",
            e.valid_up_to()
        ),
    )
    .with_hint(hint)
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
            // One hash of the key (SipHash, serde_json's map) for the check and the insert.
            match out.entry(key) {
                serde_json::map::Entry::Occupied(o) => {
                    return Err(serde::de::Error::custom(format!(
                        "the key \"{}\" appears twice in one object (the second would silently replace the first)",
                        o.key()
                    )));
                }
                serde_json::map::Entry::Vacant(slot) => {
                    let UniqueKeys(v) = map.next_value()?;
                    slot.insert(v);
                }
            }
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
    fn json_paths_have_their_lines() {
        let text = "\u{feff}{\n  \"nodes\": [\n    {\"id\": \"a\", \"a.b\": [1, {\"x\": \"q\\\"\"}]},\n    2\n  ]\n}";
        let map = json_source_map(text);
        let at = |p: &str| map.get(p).map(|s| (s.line, s.column));
        assert_eq!(at("nodes"), Some((2, 12)));
        assert_eq!(at("nodes[0].id"), Some((3, 12)));
        assert_eq!(at("nodes[0][\"a.b\"][1].x"), Some((3, 34)));
        assert_eq!(at("nodes[1]"), Some((4, 5)));
        // Whatever the text, no panic and no endless loop.
        for bad in ["{\"a\" 1}", "[1 2]", "{\"a\":", "\"open", "[[[[", "{,}"] {
            json_source_map(bad);
        }
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
