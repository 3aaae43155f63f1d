//! Writing an IR as a `.pflow.md` file that reads back to the same IR.
//!
//! Each value is written in the plainest form that reads back to itself: a one-line
//! `- key: value`, a fenced block for text of several lines, a `yaml NAME` block for
//! objects and arrays. Every choice is checked by reading it back, so what cannot be
//! written faithfully is an error naming it, never a silent change. The one thing added
//! is prose: the format requires a sentence for every entry, and an IR without one gets
//! [`NO_DESCRIPTION`].

use super::{scalar, NODE_FIELDS, TOP_FIELDS};
use serde_json::{Map, Value};

/// The prose written for an entry whose IR has no description or purpose.
pub const NO_DESCRIPTION: &str = "No description.";

/// Node fields written as something other than `- key: value` params.
const NODE_OWN: &[&str] = &["id", "type", "purpose", "params", "batch"];

/// The IR `ir` (a bare workflow object) as Markdown, under `# title`.
pub fn to_markdown(ir: &Value, title: &str, description: Option<&str>) -> Result<String, String> {
    let Value::Object(top) = ir else {
        return Err("the workflow is not a JSON object".into());
    };
    let mut out = String::new();
    let mut front = Map::new();
    for (k, v) in top {
        match k.as_str() {
            "nodes" | "edges" | "inputs" | "outputs" => {}
            k if TOP_FIELDS.contains(&k) => {
                front.insert(k.to_string(), v.clone());
            }
            other => return Err(format!("the workflow field '{other}' has no Markdown form")),
        }
    }
    if !front.is_empty() {
        let yaml = yaml_text(&Value::Object(front.clone()))
            .ok_or("the front matter cannot be written as YAML")?;
        out.push_str("---\n");
        out.push_str(&yaml);
        out.push_str("---\n\n");
    }
    out.push_str(&format!("# {}\n\n", one_line(title)));
    out.push_str(&prose(description.unwrap_or(NO_DESCRIPTION)));

    if let Some(inputs) = top.get("inputs").filter(|v| !is_empty(v)) {
        out.push_str("## Inputs\n\n");
        named(&mut out, inputs, "inputs")?;
    }
    let Some(Value::Array(nodes)) = top.get("nodes") else {
        return Err("'nodes' is not an array of nodes".into());
    };
    if nodes.is_empty() {
        return Err("the workflow has no nodes, and '## Steps' needs at least one".into());
    }
    let ids: Vec<&str> = nodes
        .iter()
        .map(|n| n.get("id").and_then(Value::as_str).unwrap_or(""))
        .collect();
    let routes = routes(top.get("edges"), &ids)?;
    out.push_str("## Steps\n\n");
    for (i, node) in nodes.iter().enumerate() {
        step(&mut out, node, i, &ids, &routes[i])?;
    }
    if let Some(outputs) = top.get("outputs").filter(|v| !is_empty(v)) {
        out.push_str("## Outputs\n\n");
        named(&mut out, outputs, "outputs")?;
    }
    while out.ends_with("\n\n") {
        out.pop();
    }
    Ok(out)
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Each node's outgoing edges: (action, targets), default first.
type Routes = Vec<Vec<(String, Vec<String>)>>;

fn routes(edges: Option<&Value>, ids: &[&str]) -> Result<Routes, String> {
    let mut out: Routes = vec![Vec::new(); ids.len()];
    let edges = match edges {
        None | Some(Value::Null) => return Ok(out),
        Some(Value::Array(e)) => e,
        Some(_) => return Err("'edges' is not an array of edges".into()),
    };
    for (k, e) in edges.iter().enumerate() {
        let Value::Object(m) = e else {
            return Err(format!("edges[{k}] is not an edge object"));
        };
        if let Some(extra) = m
            .keys()
            .find(|k| !["from", "to", "action"].contains(&k.as_str()))
        {
            return Err(format!(
                "edges[{k}] has a field '{extra}', which has no Markdown form"
            ));
        }
        let (Some(Value::String(from)), Some(Value::String(to))) = (m.get("from"), m.get("to"))
        else {
            return Err(format!(
                "edges[{k}] needs string 'from' and 'to' to be written in Markdown"
            ));
        };
        let action = match m.get("action") {
            None => "default",
            Some(Value::String(a)) if !a.is_empty() && !a.contains(char::is_whitespace) => a,
            Some(other) => {
                return Err(format!(
                    "edges[{k}] has an action {other}, which has no Markdown form"
                ))
            }
        };
        let Some(i) = ids.iter().position(|id| id == from) else {
            return Err(format!("edges[{k}] starts at '{from}', which is no node: Markdown writes an edge under the node it leaves"));
        };
        if to == "end" {
            return Err(format!(
                "edges[{k}] goes to a node named 'end', which Markdown reads as no edge"
            ));
        }
        if to.is_empty() || to.trim() != to {
            return Err(format!(
                "edges[{k}] goes to '{to}', which Markdown cannot name"
            ));
        }
        let route = &mut out[i];
        match route.iter_mut().find(|(a, _)| a == action) {
            Some((_, targets)) => targets.push(to.clone()),
            None => route.push((action.to_string(), vec![to.clone()])),
        }
    }
    for r in &mut out {
        r.sort_by_key(|(a, _)| a != "default");
    }
    Ok(out)
}

fn step(
    out: &mut String,
    node: &Value,
    i: usize,
    ids: &[&str],
    route: &[(String, Vec<String>)],
) -> Result<(), String> {
    let Value::Object(m) = node else {
        return Err(format!("nodes[{i}] is not a node object"));
    };
    let id = heading_id(ids[i]).ok_or(format!(
        "nodes[{i}] has an id that cannot be a Markdown heading"
    ))?;
    if let Some(extra) = m
        .keys()
        .find(|k| !NODE_OWN.contains(&k.as_str()) && !NODE_FIELDS.contains(&k.as_str()))
    {
        return Err(format!(
            "nodes[{i}] has a field '{extra}', which has no Markdown form"
        ));
    }
    out.push_str(&format!("### {id}\n\n"));
    let purpose = match m.get("purpose") {
        Some(Value::String(p)) => p.as_str(),
        None => NO_DESCRIPTION,
        Some(_) => return Err(format!("nodes[{i}].purpose is not text")),
    };
    out.push_str(&prose(purpose));
    let mut items = String::new();
    let mut blocks = String::new();
    let at = |k: &str| format!("nodes[{i}].{k}");
    if let Some(t) = m.get("type") {
        value(&mut items, &mut blocks, "type", t, false)
            .map_err(|e| format!("{}: {e}", at("type")))?;
    }
    match m.get("params") {
        None | Some(Value::Null) => {}
        Some(Value::Object(params)) => {
            for (k, v) in params {
                let reserved =
                    NODE_FIELDS.contains(&k.as_str()) || k == "next" || k.starts_with("on-");
                if reserved {
                    return Err(format!("nodes[{i}].params.{k}: a param named '{k}' has no Markdown form (the name is a node field there)"));
                }
                value(&mut items, &mut blocks, k, v, true)
                    .map_err(|e| format!("nodes[{i}].params.{k}: {e}"))?;
            }
        }
        Some(_) => return Err(format!("nodes[{i}].params is not an object")),
    }
    for k in NODE_FIELDS.iter().filter(|k| **k != "type") {
        if let Some(v) = m.get(*k) {
            value(&mut items, &mut blocks, k, v, *k == "batch")
                .map_err(|e| format!("{}: {e}", at(k)))?;
        }
    }
    // Document order gives each node an edge to the next; say where that is not so. The
    // parser joins no two steps of one id that way, so such a follower is no follower.
    let follower = ids.get(i + 1).copied().filter(|f| *f != ids[i]);
    let defaults: &[String] = route
        .iter()
        .find(|(a, _)| a == "default")
        .map_or(&[], |(_, t)| t.as_slice());
    match (defaults, follower) {
        ([only], Some(f)) if only == f => {}
        ([], None) => {}
        ([], Some(_)) => items.push_str("- next: end\n"),
        ([one], _) => items.push_str(&format!(
            "- next: {}\n",
            inline(&Value::String(one.clone())).ok_or("an edge target cannot be written")?
        )),
        (many, _) => items.push_str(&format!("- next: {}\n", flow(many)?)),
    }
    for (action, targets) in route.iter().filter(|(a, _)| a != "default") {
        let v = match targets.as_slice() {
            [one] => {
                inline(&Value::String(one.clone())).ok_or("an edge target cannot be written")?
            }
            many => flow(many)?,
        };
        items.push_str(&format!("- on-{action}: {v}\n"));
    }
    if !items.is_empty() {
        out.push_str(&items);
        out.push('\n');
    }
    out.push_str(&blocks);
    Ok(())
}

fn flow(targets: &[String]) -> Result<String, String> {
    let v = Value::Array(targets.iter().cloned().map(Value::String).collect());
    let text = serde_json::to_string(&v).map_err(|e| e.to_string())?;
    (scalar::coerce(&text).ok() == Some(v))
        .then_some(text)
        .ok_or_else(|| "edge targets cannot be written".into())
}

/// `## Inputs` / `## Outputs` entries.
fn named(out: &mut String, v: &Value, what: &str) -> Result<(), String> {
    let Value::Object(m) = v else {
        return Err(format!("'{what}' is not an object"));
    };
    for (name, spec) in m {
        let id = heading_id(name).ok_or(format!(
            "{what}: the name '{name}' cannot be a Markdown heading"
        ))?;
        let Value::Object(spec) = spec else {
            return Err(format!("{what}.{name} is not an object"));
        };
        out.push_str(&format!("### {id}\n\n"));
        let description = match spec.get("description") {
            Some(Value::String(d)) => d.as_str(),
            None => NO_DESCRIPTION,
            Some(_) => return Err(format!("{what}.{name}.description is not text")),
        };
        out.push_str(&prose(description));
        let mut items = String::new();
        let mut blocks = String::new();
        for (k, v) in spec.iter().filter(|(k, _)| *k != "description") {
            value(&mut items, &mut blocks, k, v, true)
                .map_err(|e| format!("{what}.{name}.{k}: {e}"))?;
        }
        if !items.is_empty() {
            out.push_str(&items);
            out.push('\n');
        }
        out.push_str(&blocks);
    }
    Ok(())
}

/// A heading text that reads back as `id`.
fn heading_id(id: &str) -> Option<&str> {
    (!id.is_empty() && id.trim() == id && !id.contains(['\n', '\r']) && !id.ends_with('#'))
        .then_some(id)
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        "Workflow".into()
    } else {
        s
    }
}

/// Prose lines as the reader takes them back: trimmed, without blank lines, and not
/// starting like an item, a heading or a fence.
fn prose(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let hashes = line.chars().take_while(|c| *c == '#').count();
        let heading = (1..=3).contains(&hashes)
            && line[hashes..]
                .chars()
                .next()
                .is_none_or(char::is_whitespace);
        let starts_block = heading
            || line.starts_with("- ")
            || line == "-"
            || line.starts_with("```")
            || line.starts_with("~~~");
        if starts_block {
            out.push('\\');
        }
        out.push_str(line);
        out.push('\n');
    }
    if out.is_empty() {
        out.push_str(NO_DESCRIPTION);
        out.push('\n');
    }
    out.push('\n');
    out
}

/// One value: a fenced block for text of several lines and (where blocks may stand)
/// for objects and arrays; else a one-line item that reads back as it.
fn value(
    items: &mut String,
    blocks: &mut String,
    key: &str,
    v: &Value,
    block_ok: bool,
) -> Result<(), String> {
    let inline_key = !key.is_empty() && !key.contains(':') && !key.contains(char::is_whitespace);
    let block_key = block_ok && !key.is_empty() && !key.contains(char::is_whitespace);
    if block_key {
        match v {
            Value::String(s) if s.contains('\n') && !s.contains('\r') => {
                let fence = fence_for(s);
                blocks.push_str(&format!("{fence}text {key}\n{s}\n{fence}\n\n"));
                return Ok(());
            }
            Value::Array(_) | Value::Object(_) => {
                if let Some(yaml) = yaml_text(v) {
                    let fence = fence_for(&yaml);
                    blocks.push_str(&format!("{fence}yaml {key}\n{yaml}{fence}\n\n"));
                    return Ok(());
                }
            }
            _ => {}
        }
    }
    match inline(v).filter(|_| inline_key) {
        Some(text) => {
            items.push_str(&format!("- {key}: {text}\n"));
            Ok(())
        }
        None => Err(format!(
            "the value of '{key}' cannot be written in Markdown"
        )),
    }
}

/// One-line text that reads back as `v`.
pub(super) fn inline(v: &Value) -> Option<String> {
    let plain = match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string(other).ok()?,
    };
    let candidates = [plain, serde_json::to_string(v).ok()?];
    candidates.into_iter().find(|c| {
        !c.contains(['\n', '\r']) && c.trim() == c && scalar::coerce(c).ok().as_ref() == Some(v)
    })
}

/// YAML that reads back as `v` from a fenced block: block-style YAML, else JSON (which
/// is YAML too). A block's content reaches the reader without its last line breaks, so a
/// literal scalar ending in one (`|`, `|2+`) would lose it: JSON spells it instead.
pub(super) fn yaml_text(v: &Value) -> Option<String> {
    let reads_back = |text: &str| {
        serde_yaml_ng::from_str::<Value>(text.trim_end_matches('\n')).is_ok_and(|back| back == *v)
    };
    let yaml = serde_yaml_ng::to_string(v).ok()?;
    if reads_back(&yaml) {
        return Some(yaml);
    }
    let json = serde_json::to_string_pretty(v).ok()? + "\n";
    reads_back(&json).then_some(json)
}

/// A backtick fence longer than any run of backticks in `s`.
fn fence_for(s: &str) -> String {
    let mut longest = 0;
    let mut run = 0;
    for c in s.chars() {
        run = if c == '`' { run + 1 } else { 0 };
        longest = longest.max(run);
    }
    "`".repeat(longest.max(2) + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_ir_reads_back_as_itself() {
        let ir = json!({
            "strict_env": true,
            "inputs": {"name": {"type": "string", "required": false, "default": "yes", "description": "Who."}},
            "nodes": [
                {"id": "a", "type": "shell", "purpose": "Greets.", "params": {"command": "echo a: b # c\n```\nx", "timeout": 30, "env": {"N": "${name}"}, "flag": "true"}},
                {"id": "b", "type": "echo", "params": {"message": " padded "}, "cache": false, "batch": {"items": [1, 2], "as": "n"}},
                {"id": "c", "type": "echo", "purpose": "Handles."}
            ],
            "edges": [{"from": "a", "to": "b"}, {"from": "a", "to": "c", "action": "error"}],
            "outputs": {"out": {"source": "${b.results}", "description": "All."}}
        });
        let md = to_markdown(&ir, "T", None).unwrap();
        let back = crate::markdown::parse(&md).unwrap_or_else(|e| panic!("{e:?}\n{md}"));
        let mut want = ir.clone();
        want["nodes"][1]["purpose"] = json!(NO_DESCRIPTION);
        assert_eq!(back.ir, want, "{md}");
    }

    /// Markdown joins two steps of one id by no implicit edge (the parser reports the
    /// duplicate instead of a cycle), so an edge between them must be written out.
    #[test]
    fn two_steps_of_one_id_keep_the_edge_between_them() {
        for edges in [json!([{"from": "a", "to": "a"}]), json!([])] {
            let ir = json!({
                "nodes": [{"id": "a", "type": "echo"}, {"id": "a", "type": "echo"}],
                "edges": edges,
            });
            let md = to_markdown(&ir, "T", None).unwrap();
            let back = crate::markdown::parse(&md).unwrap_or_else(|e| panic!("{e:?}\n{md}"));
            assert_eq!(back.ir["edges"], ir["edges"], "{md}");
        }
    }

    #[test]
    fn what_has_no_form_is_an_error() {
        let err = to_markdown(
            &json!({"nodes": [{"id": "a", "type": "echo", "params": {"next": 1}}]}),
            "T",
            None,
        )
        .unwrap_err();
        assert!(err.contains("params.next"), "{err}");
        let err = to_markdown(
            &json!({"nodes": [{"id": "a", "type": "echo"}], "edges": [{"from": "x", "to": "a"}]}),
            "T",
            None,
        )
        .unwrap_err();
        assert!(err.contains("edges[0]"), "{err}");
    }
}
