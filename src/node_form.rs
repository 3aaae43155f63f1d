//! The compiled form of a node, as bytes: what validation made of a node's text (its
//! decoded [`Node`] and its [`CompiledNode`]), kept by a build so that an edit reaching
//! most nodes of a large workflow takes the nodes whose text did not change as they were
//! compiled, instead of parsing, decoding and validating them again (`pflow build`'s
//! edit path; the file that holds the forms is [`crate::cache::node_forms`]).
//!
//! A form may also hold what the node's definition puts in its key (its
//! [`KeyParts`]), for the edit to start the node's key from.
//!
//! Only nodes the edit path takes have a form: no batch, no declared reads or writes,
//! not made by expanding a nested workflow; [`encode`] writes nothing (and says `false`)
//! for any other. [`decode`] reads back exactly what [`encode`] wrote, and refuses
//! anything else: a damaged form is `None`, never a panic and never another node.

use crate::cache::table::{put_str, Reader};
use crate::key::KeyParts;
use crate::template::{Index, ParamTemplate, Part, Reference, Step, Template};
use crate::validate::CompiledNode;
use crate::workflow::{CachePolicy, Node};
use serde_json::{Map, Number, Value};
use std::collections::BTreeSet;
use std::time::Duration;

/// How deep a form's values and templates may nest: deeper than any workflow's JSON
/// (whose reader stops at 128 levels), and shallow enough that a damaged form cannot
/// exhaust the stack.
const MAX_DEPTH: usize = 200;

/// `node` as validation compiled it (`cn`), with what its definition puts in its key
/// (`parts`, if that is kept: see [`crate::executor::definition_key`]), in bytes added
/// to `out`; `false`, and nothing added, for a node the edit path does not take.
pub fn encode(node: &Node, cn: &CompiledNode, parts: Option<&KeyParts>, out: &mut Vec<u8>) -> bool {
    if node.batch.is_some()
        || node.scoped
        || !node.reads.is_empty()
        || !node.writes.is_empty()
        || cn.items.is_some()
        || !cn.reads.is_empty()
        || !cn.writes.is_empty()
        || cn.spec.name != node.node_type
    {
        return false;
    }
    let w = out;
    put_str(w, &node.id);
    put_str(w, &node.node_type);
    match &node.purpose {
        None => w.push(0),
        Some(p) => {
            w.push(1);
            put_str(w, p);
        }
    }
    put_len(w, node.params.len());
    for (name, value) in &node.params {
        put_str(w, name);
        put_value(w, value);
    }
    match node.cache {
        CachePolicy::Always => w.push(0),
        CachePolicy::Never => w.push(1),
        CachePolicy::MaxAge(d) => {
            w.push(2);
            w.extend_from_slice(&d.as_secs().to_le_bytes());
            w.extend_from_slice(&d.subsec_nanos().to_le_bytes());
        }
    }
    put_len(w, node.reads_env.len());
    for name in &node.reads_env {
        put_str(w, name);
    }
    put_len(w, cn.params.len());
    for (name, pt) in &cn.params {
        put_str(w, name);
        put_param(w, pt);
    }
    put_len(w, cn.input_refs.len());
    for name in &cn.input_refs {
        put_str(w, name);
    }
    w.push(u8::from(cn.uses_index));
    // The names in one string, then each one's length (two bytes) and digest; none if
    // a name is longer than two bytes tell.
    let fits = |p: &&KeyParts| p.lens().all(|(len, _)| u16::try_from(len).is_ok());
    match parts.filter(fits) {
        None => w.push(0),
        Some(p) => {
            w.push(1);
            put_str(w, p.names());
            put_len(w, p.lens().len());
            for (len, digest) in p.lens() {
                w.extend_from_slice(&(len as u16).to_le_bytes());
                w.extend_from_slice(digest);
            }
        }
    }
    true
}

/// The node, its compiled form and its key's parts that [`encode`] wrote as `bytes`.
pub fn decode(bytes: &[u8]) -> Option<(Node, CompiledNode, Option<KeyParts>)> {
    let r = &mut Reader::new(bytes, 0);
    let id = get_str(r)?;
    let node_type = get_str(r)?;
    let spec = crate::nodes::lookup(&node_type)?;
    let purpose = match byte(r)? {
        0 => None,
        1 => Some(get_str(r)?),
        _ => return None,
    };
    let count = get_len(r)?;
    let mut params = Map::with_capacity(room(count));
    for _ in 0..count {
        let name = get_str(r)?;
        let value = get_value(r, 0)?;
        if params.insert(name, value).is_some() {
            return None;
        }
    }
    let cache = match byte(r)? {
        0 => CachePolicy::Always,
        1 => CachePolicy::Never,
        2 => {
            let secs = r.u64()?;
            let nanos = r.u32()?;
            if nanos >= 1_000_000_000 {
                return None;
            }
            CachePolicy::MaxAge(Duration::new(secs, nanos))
        }
        _ => return None,
    };
    let count = get_len(r)?;
    let mut reads_env = Vec::with_capacity(room(count));
    for _ in 0..count {
        reads_env.push(get_str(r)?);
    }
    let count = get_len(r)?;
    let mut compiled = Vec::with_capacity(room(count));
    for _ in 0..count {
        compiled.push((get_str(r)?, get_param(r, 0)?));
    }
    let count = get_len(r)?;
    let input_refs: BTreeSet<String> = (0..count).map(|_| get_str(r)).collect::<Option<_>>()?;
    let uses_index = match byte(r)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    let parts = match byte(r)? {
        0 => None,
        1 => Some(get_parts(r)?),
        _ => return None,
    };
    if r.remaining() != 0 {
        return None;
    }
    let node = Node {
        id,
        node_type,
        purpose,
        params,
        batch: None,
        cache,
        reads_env,
        reads: Vec::new(),
        writes: Vec::new(),
        scoped: false,
    };
    let cn = CompiledNode {
        spec,
        params: compiled,
        items: None,
        input_refs,
        uses_index,
        reads: Vec::new(),
        writes: Vec::new(),
    };
    Some((node, cn, parts))
}

/// Key parts as [`encode`] wrote them.
fn get_parts(r: &mut Reader<'_>) -> Option<KeyParts> {
    let names = get_str(r)?;
    let count = get_len(r)?;
    let mut lens = Vec::with_capacity(room(count));
    for _ in 0..count {
        lens.push((usize::from(u16::from_le_bytes(r.array()?)), r.array()?));
    }
    KeyParts::of(names, lens)
}

fn put_len(w: &mut Vec<u8>, n: usize) {
    // Nothing a workflow file holds comes near 4 GiB (its size is limited far below).
    w.extend_from_slice(&(n as u32).to_le_bytes());
}

fn put_value(w: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Null => w.push(0),
        Value::Bool(false) => w.push(1),
        Value::Bool(true) => w.push(2),
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                w.push(3);
                w.extend_from_slice(&u.to_le_bytes());
            } else if let Some(i) = n.as_i64() {
                w.push(4);
                w.extend_from_slice(&i.to_le_bytes());
            } else {
                w.push(5);
                w.extend_from_slice(&n.as_f64().unwrap_or(0.0).to_bits().to_le_bytes());
            }
        }
        Value::String(s) => {
            w.push(6);
            put_str(w, s);
        }
        Value::Array(items) => {
            w.push(7);
            put_len(w, items.len());
            for item in items {
                put_value(w, item);
            }
        }
        Value::Object(map) => {
            w.push(8);
            put_len(w, map.len());
            for (k, item) in map {
                put_str(w, k);
                put_value(w, item);
            }
        }
    }
}

fn put_param(w: &mut Vec<u8>, pt: &ParamTemplate) {
    match pt {
        ParamTemplate::Literal(v) => {
            w.push(0);
            put_value(w, v);
        }
        ParamTemplate::Template(t) => {
            w.push(1);
            put_template(w, t);
        }
        ParamTemplate::Array(items) => {
            w.push(2);
            put_len(w, items.len());
            for item in items {
                put_param(w, item);
            }
        }
        ParamTemplate::Object(fields) => {
            w.push(3);
            put_len(w, fields.len());
            for (k, item) in fields {
                put_str(w, k);
                put_param(w, item);
            }
        }
    }
}

fn put_template(w: &mut Vec<u8>, t: &Template) {
    put_len(w, t.parts.len());
    for part in &t.parts {
        match part {
            Part::Text(s) => {
                w.push(0);
                put_str(w, s);
            }
            Part::Ref(r) => {
                w.push(1);
                put_reference(w, r);
            }
        }
    }
}

fn put_reference(w: &mut Vec<u8>, r: &Reference) {
    put_str(w, &r.root);
    put_len(w, r.path.len());
    for step in &r.path {
        match step {
            Step::Key(k) => {
                w.push(0);
                put_str(w, k);
            }
            Step::Index(Index::Literal(i)) => {
                w.push(1);
                w.extend_from_slice(&(*i as u64).to_le_bytes());
            }
            Step::Index(Index::Nested(inner)) => {
                w.push(2);
                put_reference(w, inner);
            }
        }
    }
    w.push(u8::from(r.raw));
}

fn byte(r: &mut Reader<'_>) -> Option<u8> {
    r.take(1)?.first().copied()
}

/// A count of things still to read: never more than the bytes left, each taking at
/// least one, so a damaged count cannot ask for a huge allocation.
fn get_len(r: &mut Reader<'_>) -> Option<usize> {
    let n = r.u32()? as usize;
    (n <= r.remaining()).then_some(n)
}

/// Room to reserve for `n` things read: no more than a few dozen, however many a
/// damaged or forged count claims (each nesting level reserving for the bytes left
/// would reserve gigabytes for one form).
fn room(n: usize) -> usize {
    n.min(32)
}

fn get_str(r: &mut Reader<'_>) -> Option<String> {
    r.str().map(str::to_string)
}

fn get_value(r: &mut Reader<'_>, depth: usize) -> Option<Value> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match byte(r)? {
        0 => Value::Null,
        1 => Value::Bool(false),
        2 => Value::Bool(true),
        3 => Value::Number(r.u64()?.into()),
        4 => Value::Number(i64::from_le_bytes(r.array()?).into()),
        5 => Value::Number(Number::from_f64(f64::from_bits(r.u64()?))?),
        6 => Value::String(get_str(r)?),
        7 => {
            let n = get_len(r)?;
            let mut items = Vec::with_capacity(room(n));
            for _ in 0..n {
                items.push(get_value(r, depth + 1)?);
            }
            Value::Array(items)
        }
        8 => {
            let n = get_len(r)?;
            let mut map = Map::with_capacity(room(n));
            for _ in 0..n {
                let k = get_str(r)?;
                let v = get_value(r, depth + 1)?;
                if map.insert(k, v).is_some() {
                    return None;
                }
            }
            Value::Object(map)
        }
        _ => return None,
    })
}

fn get_param(r: &mut Reader<'_>, depth: usize) -> Option<ParamTemplate> {
    if depth > MAX_DEPTH {
        return None;
    }
    Some(match byte(r)? {
        0 => ParamTemplate::Literal(get_value(r, depth + 1)?),
        1 => ParamTemplate::Template(get_template(r, depth + 1)?),
        2 => {
            let n = get_len(r)?;
            let mut items = Vec::with_capacity(room(n));
            for _ in 0..n {
                items.push(get_param(r, depth + 1)?);
            }
            ParamTemplate::Array(items)
        }
        3 => {
            let n = get_len(r)?;
            let mut fields = Vec::with_capacity(room(n));
            for _ in 0..n {
                fields.push((get_str(r)?, get_param(r, depth + 1)?));
            }
            ParamTemplate::Object(fields)
        }
        _ => return None,
    })
}

fn get_template(r: &mut Reader<'_>, depth: usize) -> Option<Template> {
    let n = get_len(r)?;
    let mut parts = Vec::with_capacity(room(n));
    for _ in 0..n {
        parts.push(match byte(r)? {
            0 => Part::Text(get_str(r)?),
            1 => Part::Ref(get_reference(r, depth + 1)?),
            _ => return None,
        });
    }
    Some(Template { parts })
}

fn get_reference(r: &mut Reader<'_>, depth: usize) -> Option<Reference> {
    if depth > MAX_DEPTH {
        return None;
    }
    let root = get_str(r)?;
    let n = get_len(r)?;
    let mut path = Vec::with_capacity(room(n));
    for _ in 0..n {
        path.push(match byte(r)? {
            0 => Step::Key(get_str(r)?),
            1 => Step::Index(Index::Literal(usize::try_from(r.u64()?).ok()?)),
            2 => Step::Index(Index::Nested(Box::new(get_reference(r, depth + 1)?))),
            _ => return None,
        });
    }
    let raw = match byte(r)? {
        0 => false,
        1 => true,
        _ => return None,
    };
    Some(Reference { root, path, raw })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validated(doc: Value) -> crate::validate::Validated {
        match crate::validate::validate(&doc) {
            Ok(v) => v,
            Err(r) => panic!("{:?}", r.errors),
        }
    }

    /// A workflow whose nodes use every shape a form holds.
    fn varied() -> crate::validate::Validated {
        validated(serde_json::json!({
            "inputs": {"who": {"type": "string", "default": "x"}},
            "nodes": [
                {"id": "a", "type": "echo", "purpose": "the start",
                 "params": {"message": "hi ${who}", "data": {
                     "n": [1, -2, 2.5, 18446744073709551615u64, null, true, false],
                     "s": "${who}", "deep": {"x": [{"y": "z"}]}}},
                 "cache": "90s"},
                {"id": "b", "type": "echo", "reads_env": ["HOME"], "cache": false,
                 "params": {"message": "${a.data.n[1]} ${a.data.deep.x[${a.metadata.count}].y}",
                            "data": ["${a.data|raw}", {"k": "lit $${x}"}]}},
                {"id": "c", "type": "shell", "params": {"command": "echo ${b.data[0]}"}}
            ]
        }))
    }

    #[test]
    fn a_form_decodes_to_the_node_it_was_made_of() {
        let v = varied();
        for (node, cn) in v.workflow.nodes.iter().zip(&v.nodes) {
            let mode = v.workflow.template_mode;
            let parts = crate::executor::definition_key(node, cn, mode, false).parts();
            assert!(parts.is_some(), "no secret in these nodes");
            for kept in [None, parts.as_ref()] {
                let mut bytes = Vec::new();
                assert!(
                    encode(node, cn, kept, &mut bytes),
                    "a plain node has a form"
                );
                let (n2, cn2, parts2) = decode(&bytes).expect("its form decodes");
                assert_eq!(&n2, node);
                assert_eq!(format!("{cn2:?}"), format!("{cn:?}"));
                assert_eq!(parts2.as_ref(), kept);
            }
        }
    }

    #[test]
    fn a_damaged_form_is_refused_without_a_panic() {
        let v = varied();
        let (node, cn) = (&v.workflow.nodes[1], &v.nodes[1]);
        let parts = crate::executor::definition_key(node, cn, v.workflow.template_mode, false);
        let mut bytes = Vec::new();
        assert!(encode(node, cn, parts.parts().as_ref(), &mut bytes));
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_none(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(decode(&longer).is_none());
        // Every byte changed in turn: refused, or a node (never a panic).
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0xff;
            let _ = decode(&b);
        }
    }

    #[test]
    fn a_forged_count_reserves_no_room_for_what_is_not_there() {
        // Objects inside objects, each claiming as many entries as bytes are left:
        // reserving room for them all would take gigabytes before the form is refused.
        let mut b = Vec::new();
        put_str(&mut b, "a");
        put_str(&mut b, "echo");
        b.push(0);
        put_len(&mut b, 1);
        put_str(&mut b, "x");
        let padding = 4 << 20;
        for _ in 0..150 {
            b.push(8);
            b.extend_from_slice(&(padding as u32).to_le_bytes());
            put_str(&mut b, "k");
        }
        b.resize(b.len() + padding, 0);
        assert!(decode(&b).is_none());
    }

    #[test]
    fn a_node_the_edit_path_does_not_take_has_no_form() {
        let v = validated(serde_json::json!({"nodes": [
            {"id": "w", "type": "write-file", "params": {"file_path": "o.txt", "content": "x"}},
            {"id": "b", "type": "echo", "batch": {"items": [1, 2]}, "params": {"message": "${item}"}},
            {"id": "r", "type": "shell", "reads": ["in.txt"], "params": {"command": "true"}}
        ]}));
        for (node, cn) in v.workflow.nodes.iter().zip(&v.nodes).skip(1) {
            let mut bytes = Vec::new();
            assert!(!encode(node, cn, None, &mut bytes), "{}", node.id);
            assert!(bytes.is_empty());
        }
    }
}
