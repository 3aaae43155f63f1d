//! Taking the corrected workflow out of a model's reply: the first fenced block that
//! parses as a JSON object, else the outermost `{...}` that does. Never panics on any
//! input; returns `None` when there is no JSON object to take.

use serde_json::Value;

/// Extract a workflow object from a reply. A saved-workflow wrapper is unwrapped.
pub fn extract_workflow(reply: &str) -> Option<Value> {
    let candidate = fenced_blocks(reply)
        .into_iter()
        .find_map(parse_object)
        .or_else(|| outermost_object(reply))?;
    match candidate.get("ir") {
        Some(ir @ Value::Object(_)) if candidate.get("nodes").is_none() => Some(ir.clone()),
        _ => Some(candidate),
    }
}

/// The model's one-line explanation: a line starting `Explanation:`, else the first line
/// of prose before the JSON (a model that sends only JSON explains nothing).
pub fn explanation(reply: &str) -> Option<String> {
    let labelled = reply.lines().find_map(|l| {
        let t = l.trim().trim_start_matches(['*', '#', '-', ' ']);
        t.strip_prefix("Explanation:")
            .or_else(|| t.strip_prefix("explanation:"))
            .map(str::trim)
    });
    let before_json = reply
        .split("```")
        .next()
        .unwrap_or("")
        .split('{')
        .next()
        .unwrap_or("");
    let line = labelled.or_else(|| before_json.lines().map(str::trim).find(|l| !l.is_empty()))?;
    let line: String = line.chars().take(300).collect();
    (!line.is_empty()).then_some(line)
}

fn parse_object(text: &str) -> Option<Value> {
    match crate::source::parse_json_text(text.trim()) {
        Ok(v @ Value::Object(_)) => Some(v),
        _ => None,
    }
}

/// Contents of ``` fenced blocks (any info string), in order.
fn fenced_blocks(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find("```") {
        let after = &rest[open + 3..];
        // Skip the info string (e.g. "json") up to the end of the line.
        let body_start = after.find('\n').map(|i| i + 1).unwrap_or(after.len());
        let body = &after[body_start..];
        match body.find("```") {
            Some(close) => {
                out.push(&body[..close]);
                rest = &body[close + 3..];
            }
            None => {
                out.push(body);
                break;
            }
        }
    }
    out
}

/// The widest `{ ... }` span that parses; then narrower ones from each `{`.
fn outermost_object(text: &str) -> Option<Value> {
    let first = text.find('{')?;
    let last = text.rfind('}')?;
    if last > first {
        if let Some(v) = parse_object(&text[first..=last]) {
            return Some(v);
        }
    }
    // Fall back to balanced scanning from each opening brace (bounded work).
    let bytes = text.as_bytes();
    for (start, _) in text.match_indices('{').take(64) {
        let mut depth = 0usize;
        let mut in_str = false;
        let mut escaped = false;
        for (i, &b) in bytes.iter().enumerate().skip(start) {
            if in_str {
                match (escaped, b) {
                    (true, _) => escaped = false,
                    (false, b'\\') => escaped = true,
                    (false, b'"') => in_str = false,
                    _ => {}
                }
                continue;
            }
            match b {
                b'"' => in_str = true,
                b'{' => depth += 1,
                b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        if let Some(v) = parse_object(&text[start..=i]) {
                            return Some(v);
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn takes_a_fenced_block() {
        let r =
            "Here you go:\n```json\n{\"nodes\": [{\"id\": \"a\", \"type\": \"echo\"}]}\n```\nDone.";
        assert_eq!(extract_workflow(r).unwrap()["nodes"][0]["id"], json!("a"));
    }

    #[test]
    fn takes_the_outermost_object_without_fences() {
        let r = "The fix is {\"nodes\": [{\"id\": \"b\", \"params\": {\"x\": \"}\"}}]} as shown.";
        assert_eq!(extract_workflow(r).unwrap()["nodes"][0]["id"], json!("b"));
    }

    #[test]
    fn skips_fenced_blocks_that_are_not_objects() {
        let r = "```sh\necho hi\n```\n```json\n{\"nodes\": []}\n```";
        assert_eq!(extract_workflow(r).unwrap(), json!({"nodes": []}));
    }

    #[test]
    fn unwraps_saved_workflow_wrapper() {
        let r = "```json\n{\"name\": \"x\", \"ir\": {\"nodes\": [1]}}\n```";
        assert_eq!(extract_workflow(r).unwrap(), json!({"nodes": [1]}));
    }

    #[test]
    fn explanations() {
        let r = "Explanation: the API renamed `fullname` to `name`.\n```json\n{}\n```";
        assert_eq!(
            explanation(r).as_deref(),
            Some("the API renamed `fullname` to `name`.")
        );
        assert_eq!(
            explanation("Fixed the field.\n\n```json\n{}\n```").as_deref(),
            Some("Fixed the field.")
        );
        assert_eq!(explanation("```json\n{}\n```"), None);
        assert_eq!(explanation("{\"nodes\": []}"), None);
    }

    #[test]
    fn nothing_to_take() {
        for r in [
            "",
            "no json here",
            "{ not json",
            "```json\n[1,2]\n```",
            "}{",
            "```",
        ] {
            assert!(extract_workflow(r).is_none(), "{r}");
        }
    }
}
