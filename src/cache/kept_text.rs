//! The copy of a workflow's text that the edit path compares an edited text with (the
//! text an [`super::noop::EditBase`] is about), kept beside the no-op record.
//!
//! It is kept as a base, a whole copy (`state/<name>.text`), and after an edit as a
//! splice over that base (`state/<name>.text.delta`): the bytes the edited text shares
//! with the base at its start and at its end are named by their lengths, and only the
//! stretch between them is written. An edit of a 10,000-node workflow then writes a
//! few hundred bytes instead of copying its megabyte again (removing the old copy and
//! writing the new one took 2 ms of a 28 ms edit build). Once the stretch grows past
//! an eighth of the base (edits far apart, or a reformatted file), the whole text is
//! written as the new base.
//!
//! Each file ends with its BLAKE3 digest of the text it stands for and a check
//! ([`super::checksum`]); a splice also names its base's digest. A torn or damaged
//! file, or a splice over another base (a whole copy written since), is not used, and
//! the edit path declines: the build takes the normal path, which is always right.
//! Neither is synced, as no record is. Never a text that holds a secret value (an
//! input's default named like a token): the cache directory is shared and uploaded.

use super::checksum;
use super::layout::{record_path, Record};
use crate::fsutil::Bytes;
use crate::node_texts::Spliced;
use std::io::Write;
use std::path::{Path, PathBuf};

/// The splice file's first bytes.
const SPLICE_MAGIC: &[u8; 8] = b"PFSPLC1\n";

/// A splice up to this long is kept as one, whatever the base's size.
const SPLICE_MIN_ROOM: usize = 64 * 1024;

/// A kept copy of a workflow's text ([`load`]): its base, and the splice over it when
/// the text differs from the base.
pub struct KeptText {
    base: Bytes,
    base_len: usize,
    splice: Option<Splice>,
}

/// Where a splice file puts its stretch: the base's first `head` bytes, the file's
/// bytes `mid`, the base from `tail` on.
struct Splice {
    bytes: Bytes,
    head: usize,
    mid: std::ops::Range<usize>,
    tail: usize,
}

impl KeptText {
    /// The text, in its pieces.
    pub fn text(&self) -> Spliced<'_> {
        let base = self.base.get(..self.base_len).unwrap_or_default();
        match &self.splice {
            None => Spliced::whole(base),
            Some(s) => Spliced::of(
                base.get(..s.head).unwrap_or_default(),
                s.bytes.get(s.mid.clone()).unwrap_or_default(),
                base.get(s.tail..).unwrap_or_default(),
            ),
        }
    }

    /// The base's text and the digest it was written with.
    fn base(&self) -> (&[u8], &[u8]) {
        let text = self.base.get(..self.base_len).unwrap_or_default();
        let digest = self
            .base
            .get(self.base_len..self.base_len + 32)
            .unwrap_or_default();
        (text, digest)
    }
}

/// Keep `text` (whose BLAKE3 is `digest`) as workflow `name`'s copy: as a splice over
/// the base of `over` (the copy the build compared with) when the two differ in a short
/// enough stretch, else whole.
pub fn save(
    root: &Path,
    name: &str,
    text: Spliced<'_>,
    digest: &blake3::Hash,
    secrets: &crate::secrets::Redactor,
    over: Option<&KeptText>,
) -> std::io::Result<()> {
    if holds_secret(secrets, text) {
        return Err(std::io::Error::other("the workflow's text holds a secret"));
    }
    if let Some(kept) = over {
        let (base, base_digest) = kept.base();
        let whole = Spliced::whole(base);
        let head = whole.common_prefix_with(text);
        let tail_len = whole.common_suffix_with(text, base.len().min(text.len()) - head);
        let mid = text.slice(head, text.len() - tail_len).unwrap_or_default();
        if mid.len() <= SPLICE_MIN_ROOM.max(base.len() / 8) {
            return crate::fsutil::replace_record(&path(root, name, Record::TextSplice), |w| {
                let mut w = checksum::Checked::new(w);
                w.write_all(SPLICE_MAGIC)?;
                w.write_all(base_digest)?;
                w.write_all(&(head as u64).to_le_bytes())?;
                w.write_all(&((base.len() - tail_len) as u64).to_le_bytes())?;
                w.write_all(&(mid.len() as u64).to_le_bytes())?;
                w.write_all(&mid)?;
                w.write_all(digest.as_bytes())?;
                w.finish()
            });
        }
    }
    crate::fsutil::replace_record(&path(root, name, Record::Text), |w| {
        let mut w = checksum::Checked::new(w);
        for piece in text.pieces() {
            w.write_all(piece)?;
        }
        w.write_all(digest.as_bytes())?;
        w.finish()
    })?;
    // Its splice names the base just replaced: never used again.
    let _ = crate::fsutil::remove_record(&path(root, name, Record::TextSplice));
    Ok(())
}

/// Does `text` hold a secret value, in a piece or across where two meet?
fn holds_secret(secrets: &crate::secrets::Redactor, text: Spliced<'_>) -> bool {
    if text.pieces().any(|p| secrets.finds_in(p)) {
        return true;
    }
    // One of them that runs across where two pieces meet lies within `reach` of it.
    let reach = secrets.longest().saturating_sub(1);
    if reach == 0 {
        return false;
    }
    let mut at = 0;
    for piece in text.pieces() {
        at += piece.len();
        if at == text.len() {
            break;
        }
        let seam = text.slice(at.saturating_sub(reach), (at + reach).min(text.len()));
        if seam.is_some_and(|s| secrets.finds_in(&s)) {
            return true;
        }
    }
    false
}

/// The kept copy of workflow `name`'s text, if it is whole and the one hashing to
/// `digest` (so also UTF-8, as the text it was copied from was). Checks are verified,
/// not digests: hashing the text again with BLAKE3 cost as much as the rest of reading
/// it.
pub fn load(root: &Path, name: &str, digest: &[u8; 32]) -> Option<KeptText> {
    let base = crate::fsutil::read_bytes(&path(root, name, Record::Text)).ok()?;
    let body = checksum::verified(&base)?;
    let base_len = body.len().checked_sub(32)?;
    let base_digest = body.get(base_len..)?;
    if base_digest == digest {
        return Some(KeptText {
            base,
            base_len,
            splice: None,
        });
    }
    let splice = load_splice(root, name, base_digest, base_len, digest)?;
    Some(KeptText {
        base,
        base_len,
        splice: Some(splice),
    })
}

/// The splice over the base whose digest is `base_digest` (of `base_len` bytes) that
/// makes the text hashing to `digest`, if it is whole.
fn load_splice(
    root: &Path,
    name: &str,
    base_digest: &[u8],
    base_len: usize,
    digest: &[u8; 32],
) -> Option<Splice> {
    let bytes = crate::fsutil::read_bytes(&path(root, name, Record::TextSplice)).ok()?;
    let body = checksum::verified(&bytes)?;
    let mut r = super::table::Reader::new(body, 0);
    if r.take(SPLICE_MAGIC.len())? != SPLICE_MAGIC || r.take(32)? != base_digest {
        return None;
    }
    let head = usize::try_from(r.u64()?).ok()?;
    let tail = usize::try_from(r.u64()?).ok()?;
    let mid_len = usize::try_from(r.u64()?).ok()?;
    let mid_at = r.offset();
    r.take(mid_len)?;
    if r.take(32)? != digest || r.offset() != body.len() || head > tail || tail > base_len {
        return None;
    }
    Some(Splice {
        head,
        mid: mid_at..mid_at + mid_len,
        tail,
        bytes,
    })
}

fn path(root: &Path, name: &str, record: Record) -> PathBuf {
    record_path(root, name, record)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn none() -> crate::secrets::Redactor {
        crate::secrets::Redactor::new(Vec::new())
    }

    fn w(text: &str) -> Spliced<'_> {
        Spliced::whole(text.as_bytes())
    }

    fn text_of(kept: &KeptText) -> Vec<u8> {
        let t = kept.text();
        t.slice(0, t.len()).unwrap().into_owned()
    }

    #[test]
    fn a_kept_text_is_used_only_whole_and_for_the_digest_asked() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"{"nodes": [{"id": "a", "type": "echo"}]}"#;
        let digest = blake3::hash(text.as_bytes());
        save(dir.path(), "wf.json", w(text), &digest, &none(), None).unwrap();
        let kept = load(dir.path(), "wf.json", digest.as_bytes()).expect("kept");
        assert_eq!(text_of(&kept), text.as_bytes());
        let other = blake3::hash(b"another text");
        assert!(load(dir.path(), "wf.json", other.as_bytes()).is_none());
        let path = path(dir.path(), "wf.json", Record::Text);
        let bytes = std::fs::read(&path).unwrap();
        for cut in [1, 20, bytes.len() - 1] {
            std::fs::write(&path, &bytes[..bytes.len() - cut]).unwrap();
            assert!(
                load(dir.path(), "wf.json", digest.as_bytes()).is_none(),
                "torn by {cut}"
            );
        }
        let mut damaged = bytes.clone();
        damaged[3] ^= 0x20;
        std::fs::write(&path, &damaged).unwrap();
        assert!(
            load(dir.path(), "wf.json", digest.as_bytes()).is_none(),
            "damaged"
        );
        let secret = crate::secrets::Redactor::new(vec!["echo".into()]);
        assert!(save(dir.path(), "wf.json", w(text), &digest, &secret, None).is_err());
    }

    /// A workflow-like text of `n` nodes, each node of `edited` saying its word.
    fn workflow(n: usize, edited: &[(usize, &str)]) -> String {
        let nodes: Vec<String> = (0..n)
            .map(|i| {
                let m = edited
                    .iter()
                    .find(|(at, _)| *at == i)
                    .map_or("same", |(_, word)| word);
                format!(r#"{{"id": "n{i}", "type": "echo", "params": {{"message": "{m}"}}}}"#)
            })
            .collect();
        format!(r#"{{"nodes": [{}]}}"#, nodes.join(", "))
    }

    #[test]
    fn an_edit_is_kept_as_a_splice_over_the_base_and_read_back_as_the_edited_text() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let (first, second, third) = (
            workflow(2000, &[]),
            workflow(2000, &[(1500, "changed")]),
            // Another node as well: the splice over the base spans both.
            workflow(2000, &[(1490, "again, longer"), (1500, "changed")]),
        );
        let d1 = blake3::hash(first.as_bytes());
        save(root, "wf.json", w(&first), &d1, &none(), None).unwrap();
        let base_file = std::fs::read(path(root, "wf.json", Record::Text)).unwrap();
        // Each edit compares with the copy the one before kept.
        let mut was = load(root, "wf.json", d1.as_bytes()).unwrap();
        for text in [&second, &third] {
            let d = blake3::hash(text.as_bytes());
            save(root, "wf.json", w(text), &d, &none(), Some(&was)).unwrap();
            let splice = std::fs::read(path(root, "wf.json", Record::TextSplice)).unwrap();
            assert!(splice.len() < text.len() / 8, "{} bytes", splice.len());
            assert_eq!(
                std::fs::read(path(root, "wf.json", Record::Text)).unwrap(),
                base_file,
                "the base is left as it was"
            );
            was = load(root, "wf.json", d.as_bytes()).expect("kept as a splice");
            assert_eq!(text_of(&was), text.as_bytes());
            assert!(load(root, "wf.json", d1.as_bytes()).is_some(), "the base");
        }
        let d3 = blake3::hash(third.as_bytes());

        // A splice torn, damaged (a byte of its stretch), or over a base written since
        // is not used.
        let splice_file = path(root, "wf.json", Record::TextSplice);
        let bytes = std::fs::read(&splice_file).unwrap();
        for cut in [1, 17, bytes.len() - 1] {
            std::fs::write(&splice_file, &bytes[..bytes.len() - cut]).unwrap();
            assert!(
                load(root, "wf.json", d3.as_bytes()).is_none(),
                "torn by {cut}"
            );
        }
        let mut damaged = bytes.clone();
        let in_stretch = bytes.len() - checksum::LEN - 32 - 1;
        damaged[in_stretch] ^= 1;
        std::fs::write(&splice_file, &damaged).unwrap();
        assert!(load(root, "wf.json", d3.as_bytes()).is_none(), "damaged");
        std::fs::write(&splice_file, &bytes).unwrap();
        assert!(load(root, "wf.json", d3.as_bytes()).is_some());
        let other = workflow(2000, &[(7, "other")]);
        let d4 = blake3::hash(other.as_bytes());
        save(root, "wf.json", w(&other), &d4, &none(), None).unwrap();
        assert!(!splice_file.exists(), "a whole save removes the splice");
        std::fs::write(&splice_file, &bytes).unwrap();
        assert!(
            load(root, "wf.json", d3.as_bytes()).is_none(),
            "a splice over an older base"
        );
        assert!(load(root, "wf.json", d4.as_bytes()).is_some());
    }

    #[test]
    fn a_text_in_pieces_is_kept_as_the_same_bytes_and_a_secret_across_two_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let text = workflow(50, &[(20, "hunter2-secret")]);
        let d = blake3::hash(text.as_bytes());
        let b = text.as_bytes();
        let at = text.find("hunter2").unwrap();
        // Cut inside the secret, at every place, and into more than two pieces.
        let secret = crate::secrets::Redactor::new(vec!["hunter2-secret".into()]);
        for cut in at + 1..at + 14 {
            let pieces = Spliced::of(&b[..cut], &b[cut..cut + 1], &b[cut + 1..]);
            assert!(
                save(root, "wf.json", pieces, &d, &secret, None).is_err(),
                "{cut}"
            );
        }
        let tiny = Spliced::of(&b[..at + 3], &b[at + 3..at + 4], &b[at + 4..at + 5])
            .then(Spliced::of(&b[at + 5..at + 6], &b[at + 6..], &[]))
            .unwrap();
        assert!(save(root, "wf.json", tiny, &d, &secret, None).is_err());
        // Without secrets, pieces are kept as the bytes they make.
        save(root, "wf.json", tiny, &d, &none(), None).unwrap();
        let kept = load(root, "wf.json", d.as_bytes()).expect("kept");
        assert_eq!(text_of(&kept), b);
        let edit = text.replace("hunter2-secret", "edited");
        let e = edit.as_bytes();
        let de = blake3::hash(e);
        let pieces = Spliced::of(&e[..at], &e[at..at + 6], &e[at + 6..]);
        save(root, "wf.json", pieces, &de, &none(), Some(&kept)).unwrap();
        assert!(
            path(root, "wf.json", Record::TextSplice).exists(),
            "as a splice"
        );
        let kept = load(root, "wf.json", de.as_bytes()).expect("kept");
        assert_eq!(text_of(&kept), e);
    }

    #[test]
    fn a_splice_whose_check_holds_but_whose_stretch_lies_outside_its_base_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let base = workflow(10, &[]);
        let d1 = blake3::hash(base.as_bytes());
        save(root, "wf.json", w(&base), &d1, &none(), None).unwrap();
        let wanted = *blake3::hash(b"the text it claims").as_bytes();
        let splice = |head: u64, tail: u64| {
            let mut body = SPLICE_MAGIC.to_vec();
            body.extend_from_slice(d1.as_bytes());
            body.extend_from_slice(&head.to_le_bytes());
            body.extend_from_slice(&tail.to_le_bytes());
            body.extend_from_slice(&3u64.to_le_bytes());
            body.extend_from_slice(b"mid");
            body.extend_from_slice(&wanted);
            let check = checksum::of(&body);
            body.extend_from_slice(&check);
            std::fs::write(path(root, "wf.json", Record::TextSplice), body).unwrap();
        };
        let len = base.len() as u64;
        splice(4, 8);
        assert!(
            load(root, "wf.json", &wanted).is_some(),
            "a well-formed one is read"
        );
        for (head, tail) in [
            (8, 4),
            (4, len + 1),
            (len + 1, len + 2),
            (u64::MAX, u64::MAX),
        ] {
            splice(head, tail);
            assert!(load(root, "wf.json", &wanted).is_none(), "{head}..{tail}");
        }
    }

    #[test]
    fn a_text_far_from_its_base_is_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let first = workflow(3000, &[]);
        let d1 = blake3::hash(first.as_bytes());
        save(root, "wf.json", w(&first), &d1, &none(), None).unwrap();
        let was = load(root, "wf.json", d1.as_bytes()).unwrap();
        // Edits at both ends: the stretch between them is nearly all of it.
        let far = workflow(3000, &[(0, "start")])
            .replace(r#""n2999", "type": "echo""#, r#""n2999", "type": "echo" "#);
        assert_ne!(far, first);
        let d2 = blake3::hash(far.as_bytes());
        save(root, "wf.json", w(&far), &d2, &none(), Some(&was)).unwrap();
        assert!(!path(root, "wf.json", Record::TextSplice).exists());
        let kept = load(root, "wf.json", d2.as_bytes()).expect("whole");
        assert_eq!(text_of(&kept), far.as_bytes());
        assert!(load(root, "wf.json", d1.as_bytes()).is_none(), "replaced");
    }
}
