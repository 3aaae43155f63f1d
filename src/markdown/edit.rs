//! Writing a change of the IR (a repair) back into a `.pflow.md` file, touching only the
//! text of the values that changed: every heading, sentence, blank line and the other
//! values stay as the author wrote them. Each changed value is found by its place in
//! the file's source map; a one-line item gets the new value's one-line form, a fenced
//! block its new content. The result must read back as exactly the new IR, or there is
//! no edit (the caller keeps the patch instead of rewriting the file).

use json_patch::PatchOperation;
use serde_json::Value;

/// `text` (which reads as `old`) changed so that it reads as `new`; `None` when only
/// values were not changed (a node added or removed) or the text cannot hold the result.
pub fn edit(text: &str, old: &Value, new: &Value) -> Option<String> {
    let parsed = super::parse(text).ok()?;
    if parsed.ir != *old {
        return None;
    }
    let mut edits: Vec<(usize, usize, String)> = Vec::new();
    for op in json_patch::diff(old, new).iter() {
        let PatchOperation::Replace(r) = op else {
            return None;
        };
        let path = diagnostic_path(old, &r.path.to_string())?;
        let span = parsed.map.get(&path)?;
        let current = text.get(span.start..span.end)?;
        // A block's content starts a line; an item's value follows `key: `.
        let in_block = text[..span.start].ends_with('\n');
        let replacement = if in_block {
            block_content(&r.value, current)?
        } else {
            super::write::inline(&r.value)?
        };
        edits.push((span.start, span.end, replacement));
    }
    edits.sort_by_key(|(start, _, _)| std::cmp::Reverse(*start));
    let mut out = text.to_string();
    let mut limit = usize::MAX;
    for (start, end, replacement) in edits {
        if end > limit {
            return None;
        }
        out.replace_range(start..end, &replacement);
        limit = start;
    }
    let back = super::parse(&out).ok()?;
    (back.ir == *new).then_some(out)
}

/// The new content of a fenced block: text as it is (ending as the old content did),
/// anything else as YAML.
fn block_content(v: &Value, current: &str) -> Option<String> {
    let mut s = match v {
        Value::String(s) => s.clone(),
        other => super::write::yaml_text(other)?,
    };
    if s.contains("```") || s.contains("~~~") {
        return None;
    }
    let ends = current.ends_with('\n');
    if ends && !s.ends_with('\n') {
        s.push('\n');
    } else if !ends {
        while s.ends_with('\n') {
            s.pop();
        }
    }
    Some(s)
}

/// A JSON Pointer into `doc` spelled as diagnostics (and source maps) spell paths:
/// `/nodes/0/params/command` is `nodes[0].params.command`.
fn diagnostic_path(doc: &Value, pointer: &str) -> Option<String> {
    let mut out = String::new();
    let mut at = doc;
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match at {
            Value::Array(items) => {
                let i: usize = token.parse().ok()?;
                out.push_str(&format!("[{i}]"));
                at = items.get(i)?;
            }
            Value::Object(m) => {
                out = crate::workflow::field_path(&out, &token);
                at = m.get(&token)?;
            }
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "# Demo\n\nShows things.\n\n## Steps\n\n### get\n\nGets a user.\n\n- type: shell\n- command: echo '{\"user\": {\"name\": \"Ada\"}}'\n\n### show\n\nShows the name.\n\n- type: shell\n\n```shell command\necho Hello ${get.stdout.user.fullname}\n```\n";

    #[test]
    fn only_the_changed_values_text_changes() {
        let old = super::super::parse(DOC).unwrap().ir;
        let mut new = old.clone();
        new["nodes"][1]["params"]["command"] = "echo Hello ${get.stdout.user.name}".into();
        let edited = edit(DOC, &old, &new).expect("an edit");
        assert_eq!(edited, DOC.replace("user.fullname", "user.name"));
        new["nodes"][0]["params"]["command"] = "echo hi".into();
        let edited = edit(DOC, &old, &new).expect("an edit");
        assert!(edited.contains("- command: echo hi\n"), "{edited}");
        assert!(edited.contains("Gets a user.\n\n- type: shell"), "{edited}");
    }

    #[test]
    fn a_structural_change_is_no_edit() {
        let old = super::super::parse(DOC).unwrap().ir;
        let mut new = old.clone();
        new["nodes"].as_array_mut().unwrap().pop();
        assert_eq!(edit(DOC, &old, &new), None);
    }
}
