//! The compiled forms of a workflow's nodes ([`crate::node_form`]), kept beside its
//! no-op record (`state/<name>.forms`) by the build that left the edit base, for an edit
//! that reaches most of the nodes: it takes each node whose text it finds unchanged
//! from here instead of parsing and validating it again.
//!
//! The file holds a 32-byte tag the writer binds the forms to (which pflow compiled
//! them, and in what context: see `commands::edit`), then for each node the text it was
//! compiled from and its form, and ends with a check ([`super::checksum`]). A form is
//! only ever used for a node whose text is byte for byte the one beside it, in a build
//! whose tag is the file's. The texts are kept whole rather than as digests: comparing
//! a hundred bytes costs a fraction of hashing them (BLAKE3 of each node's text was
//! half as much work as decoding the forms). Torn, damaged or of another tag, the file is
//! not used and the build parses every node and works out every key, which is always
//! right. Not synced, as no record is.

use super::checksum;
use super::layout::{record_path, Record};
use crate::fsutil::Bytes;
use std::io::Write;
use std::ops::Range;
use std::path::Path;

/// The file's first bytes (2: each form may hold its node's key components).
const MAGIC: &[u8; 8] = b"PFFORM2\n";

/// The forms of a workflow's nodes, as [`load`] found them.
pub struct NodeForms {
    bytes: Bytes,
    tag: [u8; 32],
    /// Where each node's text is, and where its form is.
    nodes: Vec<(Range<usize>, Range<usize>)>,
}

impl NodeForms {
    /// Are they bound to `tag`?
    pub fn bound_to(&self, tag: &[u8; 32]) -> bool {
        self.tag == *tag
    }

    /// How many nodes the file has forms of.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s form, if it was compiled from `text`.
    pub fn form(&self, i: usize, text: &[u8]) -> Option<&[u8]> {
        let (was, form) = self.nodes.get(i)?;
        (self.bytes.get(was.clone())? == text).then(|| self.bytes.get(form.clone()))?
    }
}

/// What the compiled forms of a workflow's nodes are bound to: which pflow compiled
/// them, the record's context, the workflow's text outside its nodes, and each node's
/// id and type. A node whose own text is unchanged compiles as it did when these are
/// unchanged too (see `commands::edit`).
pub fn tag<'a>(
    maker: &[u8; 32],
    context: &[u8; 32],
    others: &str,
    nodes: impl ExactSizeIterator<Item = (&'a str, &'a str)>,
) -> [u8; 32] {
    // One buffer hashed once: BLAKE3 costs hundreds of instructions a call.
    let mut all = Vec::with_capacity(others.len() + 24 * nodes.len() + 80);
    let mut text = |t: &str| {
        all.extend_from_slice(&(t.len() as u64).to_le_bytes());
        all.extend_from_slice(t.as_bytes());
    };
    text(others);
    for (id, node_type) in nodes {
        text(id);
        text(node_type);
    }
    let mut h = blake3::Hasher::new_derive_key("pflow node forms v1");
    h.update(maker);
    h.update(context);
    h.update(&all);
    *h.finalize().as_bytes()
}

/// Keep the forms of `count` nodes as workflow `name`'s, bound to `tag`: `form(i, text,
/// form)` puts node `i`'s text and its form in the two empty buffers, or says `false`
/// (then none are kept). Each is written as it is made: no buffer of them all, whose
/// fresh pages cost more than making them.
pub fn save(
    root: &Path,
    name: &str,
    tag: &[u8; 32],
    count: usize,
    mut form: impl FnMut(usize, &mut Vec<u8>, &mut Vec<u8>) -> bool,
) -> std::io::Result<()> {
    let n = u32::try_from(count).map_err(std::io::Error::other)?;
    crate::fsutil::replace_record(&record_path(root, name, Record::Forms), |w| {
        let mut w = checksum::Checked::new(w);
        w.write_all(MAGIC)?;
        w.write_all(tag)?;
        w.write_all(&n.to_le_bytes())?;
        let (mut text, mut buf) = (Vec::with_capacity(1024), Vec::with_capacity(1024));
        for i in 0..count {
            text.clear();
            buf.clear();
            if !form(i, &mut text, &mut buf) {
                return Err(std::io::Error::other("a node has no form"));
            }
            for piece in [&text, &buf] {
                let len = u32::try_from(piece.len()).map_err(std::io::Error::other)?;
                w.write_all(&len.to_le_bytes())?;
                w.write_all(piece)?;
            }
        }
        w.finish()
    })
}

/// Workflow `name`'s forms, if the file is whole (whatever they are bound to: see
/// [`NodeForms::bound_to`]).
pub fn load_any(root: &Path, name: &str) -> Option<NodeForms> {
    let bytes = crate::fsutil::read_bytes(&record_path(root, name, Record::Forms)).ok()?;
    let body_len = checksum::verified(&bytes)?.len();
    let body = bytes.get(..body_len)?;
    let mut r = super::table::Reader::new(body, 0);
    if r.take(MAGIC.len())? != MAGIC {
        return None;
    }
    let tag = r.array()?;
    let count = r.u32()? as usize;
    // Each node takes 8 bytes at least: a damaged count asks for no more room than that.
    let mut nodes = Vec::with_capacity(count.min(r.remaining() / 8));
    for _ in 0..count {
        let text = r.sized()?;
        nodes.push((text, r.sized()?));
    }
    if r.remaining() != 0 {
        return None;
    }
    Some(NodeForms { bytes, tag, nodes })
}

/// Forget workflow `name`'s forms (a build that goes the normal way: it leaves new ones
/// or none).
pub fn forget(root: &Path, name: &str) {
    let _ = crate::fsutil::remove_record(&record_path(root, name, Record::Forms));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(dir: &Path, tag: &[u8; 32]) {
        let forms = [(&b"{\"id\": 1}"[..], &b"first"[..]), (b"{}", b"")];
        save(dir, "wf", tag, forms.len(), |i, text, buf| {
            text.extend_from_slice(forms[i].0);
            buf.extend_from_slice(forms[i].1);
            true
        })
        .expect("saved");
    }

    #[test]
    fn forms_are_bound_to_their_maker_context_other_members_ids_and_types() {
        let nodes = [("a", "echo"), ("b", "shell")];
        let tag = |maker: u8, context: u8, others: &str, nodes: &[(&'static str, &'static str)]| {
            tag(&[maker; 32], &[context; 32], others, nodes.iter().copied())
        };
        let one = tag(1, 2, "{\"nodes\":[]}", &nodes);
        assert_eq!(one, tag(1, 2, "{\"nodes\":[]}", &nodes));
        for other in [
            tag(9, 2, "{\"nodes\":[]}", &nodes),
            tag(1, 9, "{\"nodes\":[]}", &nodes),
            tag(1, 2, "{\"nodes\": []}", &nodes),
            tag(1, 2, "{\"nodes\":[]}", &[("a", "echo"), ("b", "echo")]),
            tag(1, 2, "{\"nodes\":[]}", &[("a", "echo"), ("c", "shell")]),
            tag(1, 2, "{\"nodes\":[]}", &[("a", "echo")]),
            // Where one id ends and the next begins counts.
            tag(1, 2, "{\"nodes\":[]}", &[("ae", "cho"), ("b", "shell")]),
        ] {
            assert_ne!(one, other);
        }
    }

    #[test]
    fn a_form_is_given_for_its_own_text_and_tag_only() {
        let dir = tempfile::tempdir().expect("dir");
        saved(dir.path(), &[7; 32]);
        let forms = load_any(dir.path(), "wf").expect("loads");
        assert!(forms.bound_to(&[7; 32]) && !forms.bound_to(&[8; 32]));
        assert_eq!(forms.len(), 2);
        assert_eq!(forms.form(0, b"{\"id\": 1}"), Some(&b"first"[..]));
        assert_eq!(forms.form(1, b"{}"), Some(&b""[..]));
        assert_eq!(forms.form(0, b"{\"id\": 2}"), None, "another text");
        assert_eq!(forms.form(0, b"{\"id\": 1} "), None, "another text");
        assert_eq!(forms.form(2, b"{}"), None, "no such node");
        forget(dir.path(), "wf");
        assert!(load_any(dir.path(), "wf").is_none(), "forgotten");
    }

    #[test]
    fn a_node_without_a_form_leaves_none() {
        let dir = tempfile::tempdir().expect("dir");
        saved(dir.path(), &[7; 32]);
        let refused = save(dir.path(), "wf", &[7; 32], 2, |i, _, _| i == 0);
        assert!(refused.is_err());
        assert!(load_any(dir.path(), "wf").is_none());
    }

    #[test]
    fn a_damaged_file_is_not_used() {
        let dir = tempfile::tempdir().expect("dir");
        saved(dir.path(), &[7; 32]);
        let path = record_path(dir.path(), "wf", Record::Forms);
        let whole = std::fs::read(&path).expect("read");
        for i in [0, 9, 45, whole.len() - 1] {
            let mut b = whole.clone();
            b[i] ^= 1;
            std::fs::write(&path, &b).expect("write");
            assert!(load_any(dir.path(), "wf").is_none(), "byte {i} changed");
        }
        std::fs::write(&path, &whole[..whole.len() - 3]).expect("write");
        assert!(load_any(dir.path(), "wf").is_none(), "cut short");
    }
}
