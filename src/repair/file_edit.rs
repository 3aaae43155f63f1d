//! Writing a repair into the user's workflow file without reformatting it: only the text
//! of the values that changed is replaced; every other byte (indentation, key order,
//! line breaks, a final newline) stays as the author wrote it.
//!
//! The file's text is scanned once for the byte span of every JSON value, by JSON
//! Pointer. Each change of the repair (an RFC 6902 diff) names the value to rewrite: the
//! value itself when it was replaced, its container when something was added or removed.
//! Those spans are replaced by the new values, and the result must parse to exactly the
//! repaired document; if it does not (or the text cannot be scanned), the whole document
//! is written pretty-printed instead, as before.

use json_patch::PatchOperation;
use serde_json::Value;
use std::collections::BTreeMap;

/// `text` (which parses to `old`) changed so that it parses to `new`, touching only the
/// changed values; `None` when that cannot be done.
pub fn edit(text: &str, old: &Value, new: &Value) -> Option<String> {
    let body = text.strip_prefix('\u{feff}').unwrap_or(text);
    let offset = text.len() - body.len();
    let spans = Scanner::spans(body)?;
    let mut targets: Vec<String> = Vec::new();
    for op in json_patch::diff(old, new).iter() {
        let path = op.path().to_string();
        let target = match op {
            PatchOperation::Replace(_) => path,
            _ => parent(&path)?,
        };
        targets.push(target);
    }
    targets.sort();
    targets.dedup();
    // An edit inside another edited value is part of it.
    let outer: Vec<&String> = targets
        .iter()
        .filter(|t| {
            !targets
                .iter()
                .any(|o| o != *t && (o.is_empty() || t.starts_with(&format!("{o}/"))))
        })
        .collect();
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for t in outer {
        let &(start, end) = spans.get(t.as_str())?;
        let value = new.pointer(t)?;
        let indent = line_indent(body, start);
        edits.push((start, end, render(value, &indent)));
    }
    edits.sort_by_key(|e| std::cmp::Reverse(e.0));
    let mut out = body.to_string();
    for (start, end, replacement) in edits {
        out.replace_range(start..end, &replacement);
    }
    let check: Value = serde_json::from_str(&out).ok()?;
    if check != *new {
        return None;
    }
    Some(format!("{}{out}", &text[..offset]))
}

fn parent(path: &str) -> Option<String> {
    path.rfind('/').map(|i| path[..i].to_string())
}

/// The whitespace that begins the line `at` is on.
fn line_indent(text: &str, at: usize) -> String {
    let line_start = text[..at].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..at]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// A value as JSON text: scalars compact, containers pretty-printed and indented to sit
/// on the line where the old value began.
fn render(v: &Value, indent: &str) -> String {
    match v {
        Value::Array(_) | Value::Object(_) => {
            let pretty = serde_json::to_string_pretty(v).unwrap_or_default();
            pretty.replace('\n', &format!("\n{indent}"))
        }
        _ => serde_json::to_string(v).unwrap_or_default(),
    }
}

/// Byte spans of every value in a JSON text, by JSON Pointer.
struct Scanner<'a> {
    b: &'a [u8],
    text: &'a str,
    i: usize,
    spans: BTreeMap<String, (usize, usize)>,
    depth: usize,
}

impl<'a> Scanner<'a> {
    fn spans(text: &'a str) -> Option<BTreeMap<String, (usize, usize)>> {
        let mut s = Scanner {
            b: text.as_bytes(),
            text,
            i: 0,
            spans: BTreeMap::new(),
            depth: 0,
        };
        s.value(String::new())?;
        s.ws();
        (s.i == s.b.len()).then_some(s.spans)
    }

    fn ws(&mut self) {
        while self.i < self.b.len() && matches!(self.b[self.i], b' ' | b'\t' | b'\n' | b'\r') {
            self.i += 1;
        }
    }

    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn value(&mut self, pointer: String) -> Option<()> {
        self.ws();
        let start = self.i;
        match self.peek()? {
            b'{' => {
                self.depth += 1;
                if self.depth > 200 {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b'}' {
                    self.i += 1;
                } else {
                    loop {
                        self.ws();
                        let (ks, ke) = self.string()?;
                        let key: String = serde_json::from_str(&self.text[ks..ke]).ok()?;
                        self.ws();
                        if self.peek()? != b':' {
                            return None;
                        }
                        self.i += 1;
                        let escaped = key.replace('~', "~0").replace('/', "~1");
                        self.value(format!("{pointer}/{escaped}"))?;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b'}' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
            }
            b'[' => {
                self.depth += 1;
                if self.depth > 200 {
                    return None;
                }
                self.i += 1;
                self.ws();
                if self.peek()? == b']' {
                    self.i += 1;
                } else {
                    let mut n = 0usize;
                    loop {
                        self.value(format!("{pointer}/{n}"))?;
                        n += 1;
                        self.ws();
                        match self.peek()? {
                            b',' => self.i += 1,
                            b']' => {
                                self.i += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                self.depth -= 1;
            }
            b'"' => {
                self.string()?;
            }
            _ => {
                while self.i < self.b.len()
                    && !matches!(
                        self.b[self.i],
                        b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'
                    )
                {
                    self.i += 1;
                }
                if self.i == start {
                    return None;
                }
            }
        }
        self.spans.insert(pointer, (start, self.i));
        Some(())
    }

    /// A string token's span, quotes included.
    fn string(&mut self) -> Option<(usize, usize)> {
        let start = self.i;
        if self.peek()? != b'"' {
            return None;
        }
        self.i += 1;
        loop {
            match self.peek()? {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    return Some((start, self.i));
                }
                _ => self.i += 1,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HAND: &str = "{\n  \"nodes\": [\n    {\"id\": \"get\",   \"type\": \"shell\",\n     \"params\": {\"command\": \"echo hi\"}},\n\n    {\"id\": \"show\", \"type\": \"shell\", \"params\": {\"command\": \"echo ${get.stdout.fullname}\"}}\n  ],\n  \"outputs\": {\"o\": {\"source\": \"${show.stdout}\"}}   \n}\n";

    #[test]
    fn only_the_changed_value_changes() {
        let old: Value = serde_json::from_str(HAND).unwrap();
        let mut new = old.clone();
        new["nodes"][1]["params"]["command"] = json!("echo ${get.stdout.name}");
        let out = edit(HAND, &old, &new).unwrap();
        assert_eq!(out, HAND.replace("get.stdout.fullname", "get.stdout.name"));
    }

    #[test]
    fn added_and_removed_values_rewrite_only_their_container() {
        let old: Value = serde_json::from_str(HAND).unwrap();
        let mut new = old.clone();
        new["nodes"][0]["params"]["timeout"] = json!(5);
        let out = edit(HAND, &old, &new).unwrap();
        assert_eq!(serde_json::from_str::<Value>(&out).unwrap(), new);
        assert!(out.starts_with("{\n  \"nodes\": [\n    {\"id\": \"get\",   \"type\": \"shell\",\n     \"params\": {\n"), "{out}");
        assert!(
            out.ends_with("\"outputs\": {\"o\": {\"source\": \"${show.stdout}\"}}   \n}\n"),
            "{out}"
        );
        // Escapes in keys and values, and a byte order mark, survive.
        let text = "\u{feff}{\"a/b\": \"x\\\"y\", \"n\": [1, 2]}";
        let old: Value = serde_json::from_str(&text[3..]).unwrap();
        let new = json!({"a/b": "x\"y", "n": [1, 3]});
        assert_eq!(
            edit(text, &old, &new).unwrap(),
            "\u{feff}{\"a/b\": \"x\\\"y\", \"n\": [1, 3]}"
        );
    }

    #[test]
    fn text_that_cannot_be_scanned_gives_none() {
        assert!(edit("{\"a\": }", &json!({}), &json!({"a": 1})).is_none());
    }
}
