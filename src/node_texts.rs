//! A JSON workflow's text cut into the text of each node and a digest of the rest,
//! without building the document: what `pflow build`'s edit path compares with the
//! last build's to find the nodes an edit changed.
//!
//! The whole text is checked as JSON on the way (serde_json's raw values), so text that
//! is not JSON is never cut. It has no opinion on what the parts mean: a workflow whose
//! nodes are not a top-level `"nodes"` array, or with a top-level key twice (which the
//! normal reader refuses), is simply not cut.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The parts of a workflow's text.
#[derive(Debug)]
pub struct NodeTexts<'a> {
    /// Each node's JSON text, in workflow order.
    pub nodes: Vec<&'a str>,
    /// BLAKE3 of every top-level member but `nodes`: names and texts, in order.
    pub rest: [u8; 32],
    /// Those members: each name and its JSON text.
    pub members: Vec<(Cow<'a, str>, &'a str)>,
}

/// The digest a node's text is compared by.
pub fn text_digest(text: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    out.copy_from_slice(&blake3::hash(text.as_bytes()).as_bytes()[..16]);
    out
}

impl<'a> NodeTexts<'a> {
    /// `None` for anything but a JSON object with one top-level `"nodes"` array and no
    /// top-level key twice.
    pub fn of(text: &'a str) -> Option<NodeTexts<'a>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let members = de.deserialize_map(Members).ok()?;
        de.end().ok()?;
        let mut nodes = None;
        let mut rest = blake3::Hasher::new_derive_key("pflow workflow members v1");
        let mut others = Vec::with_capacity(members.len());
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        for (name, value) in &members {
            if !seen.insert(name.as_ref()) {
                return None;
            }
            if name == "nodes" {
                let list: Vec<&'a RawValue> = serde_json::from_str(value.get()).ok()?;
                nodes = Some(list.into_iter().map(RawValue::get).collect());
            } else {
                for part in [name.as_bytes(), value.get().as_bytes()] {
                    rest.update(&(part.len() as u64).to_le_bytes());
                    rest.update(part);
                }
                others.push((name.clone(), value.get()));
            }
        }
        Some(NodeTexts {
            nodes: nodes?,
            rest: *rest.finalize().as_bytes(),
            members: others,
        })
    }
}

type Member<'a> = (Cow<'a, str>, &'a RawValue);

/// A top-level object's members as written, repeated keys included.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<Member<'de>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            out.push((name, map.next_value::<&'de RawValue>()?));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_cut_as_written_and_the_rest_is_one_digest() {
        let text = r#"{"ir_version": "0.1.0", "nodes": [ {"id": "a", "type": "echo"},
            {"id":"b","type":"echo","params":{"message":"${a.x}"}} ], "outputs": {}}"#;
        let t = NodeTexts::of(text).expect("cut");
        assert_eq!(
            t.nodes,
            vec![
                r#"{"id": "a", "type": "echo"}"#,
                r#"{"id":"b","type":"echo","params":{"message":"${a.x}"}}"#
            ]
        );
        let same_rest = r#"{"ir_version": "0.1.0", "nodes": [], "outputs": {}}"#;
        assert_eq!(NodeTexts::of(same_rest).expect("cut").rest, t.rest);
        let other_rest = r#"{"ir_version": "0.1.0", "nodes": [], "outputs": {"o": {}}}"#;
        assert_ne!(NodeTexts::of(other_rest).expect("cut").rest, t.rest);
        assert_ne!(text_digest(t.nodes[0]), text_digest(t.nodes[1]));
    }

    #[test]
    fn what_the_reader_refuses_is_not_cut() {
        for text in [
            r#"{"nodes": [], "nodes": []}"#,
            r#"{"nodes": [{"id": "a"},]}"#,
            r#"{"nodes": [{"id": "a"}] "x": 1}"#,
            r#"{"nodes": [{"id": "a"}]} trailing"#,
            r#"{"ir": {"nodes": []}}"#,
            r#"{"nodes": {}}"#,
            r#"[1, 2]"#,
            "",
        ] {
            assert!(NodeTexts::of(text).is_none(), "{text}");
        }
    }
}
