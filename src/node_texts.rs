//! Where a JSON workflow's nodes are in its text, and which of them an edit of that text
//! changed, without building the document: what `pflow build`'s edit path starts from.
//!
//! [`NodeTexts::of`] cuts a text into its nodes' texts and the other top-level members,
//! checking the whole text as JSON on the way (serde_json's raw values), so text that is
//! not JSON is never cut. [`Layout`] keeps only where the nodes are. [`edited`] compares
//! an edited text with the one a layout was made from, as `git diff` would find the
//! changed lines: the bytes both share at the start and at the end are unchanged, so
//! only the nodes between those (and the separators around them) are read again. That
//! costs a comparison of the bytes rather than a parse of the whole text, and it is
//! exact: outside the changed stretch the text is byte for byte the one that was cut,
//! and the stretch must again be a list of as many nodes. It has no opinion on what the
//! parts mean: a workflow whose nodes are not a top-level `"nodes"` array, or with a
//! top-level key twice (which the normal reader refuses), is simply not cut.

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// The nodes of a workflow's text.
#[derive(Debug)]
pub struct NodeTexts<'a> {
    /// Each node's JSON text, in workflow order.
    pub nodes: Vec<&'a str>,
    /// The nodes array's text (brackets included).
    pub array: &'a str,
}

/// Where a workflow's nodes are in its text: byte offsets of the nodes array's brackets
/// and of each node's text (start, end), in workflow order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Layout {
    pub open: u32,
    pub close: u32,
    pub nodes: Vec<(u32, u32)>,
}

/// A text held in a few pieces, read as the bytes of one after another: a kept copy of a
/// workflow's text with the splice an edit made to it ([`crate::cache::kept_text`]), or
/// an edited text read as the kept bytes it shares at the start and at the end with the
/// new ones between ([`EditRead`]); compared, hashed and written without first being
/// copied into one buffer. Only the whole is known to be UTF-8: a piece may end inside
/// a character.
#[derive(Debug, Clone, Copy)]
pub struct Spliced<'a> {
    pieces: [&'a [u8]; PIECES],
}

/// Most pieces a [`Spliced`] holds: a kept copy's three, or an edit of one (up to three
/// shared at the start, the new bytes, up to three shared at the end).
const PIECES: usize = 7;

impl<'a> Spliced<'a> {
    /// One text in one piece.
    pub fn whole(text: &'a [u8]) -> Spliced<'a> {
        Spliced::of(text, &[], &[])
    }

    /// `head`, then `mid`, then `tail`.
    pub fn of(head: &'a [u8], mid: &'a [u8], tail: &'a [u8]) -> Spliced<'a> {
        let mut pieces: [&'a [u8]; PIECES] = [&[]; PIECES];
        pieces[..3].copy_from_slice(&[head, mid, tail]);
        Spliced { pieces }
    }

    /// The pieces that hold bytes, in order.
    pub fn pieces(&self) -> impl DoubleEndedIterator<Item = &'a [u8]> + '_ {
        self.pieces.iter().copied().filter(|p| !p.is_empty())
    }

    /// This text, then `next`; `None` if together they are in too many pieces.
    pub fn then(self, next: Spliced<'a>) -> Option<Spliced<'a>> {
        let mut pieces: [&'a [u8]; PIECES] = [&[]; PIECES];
        let mut slots = pieces.iter_mut();
        for piece in self.pieces().chain(next.pieces()) {
            *slots.next()? = piece;
        }
        Some(Spliced { pieces })
    }

    /// Bytes `start..end` as pieces of their own (borrowed, never copied).
    pub fn range(&self, start: usize, end: usize) -> Option<Spliced<'a>> {
        if start > end || end > self.len() {
            return None;
        }
        let mut pieces: [&'a [u8]; PIECES] = [&[]; PIECES];
        let mut at = 0;
        for (slot, piece) in pieces.iter_mut().zip(self.pieces) {
            let (from, to) = (start.max(at), end.min(at + piece.len()));
            if from < to {
                *slot = piece.get(from - at..to - at)?;
            }
            at += piece.len();
        }
        Some(Spliced { pieces })
    }

    /// Bytes `start..end` as text: `None` unless they are whole UTF-8.
    pub fn str_slice(&self, start: usize, end: usize) -> Option<Cow<'a, str>> {
        match self.slice(start, end)? {
            Cow::Borrowed(b) => std::str::from_utf8(b).ok().map(Cow::Borrowed),
            Cow::Owned(v) => String::from_utf8(v).ok().map(Cow::Owned),
        }
    }

    /// BLAKE3 of the whole.
    pub fn digest(&self) -> blake3::Hash {
        let mut h = blake3::Hasher::new();
        for piece in self.pieces() {
            h.update(piece);
        }
        h.finalize()
    }

    pub fn len(&self) -> usize {
        self.pieces.iter().map(|p| p.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The byte at `at`.
    pub fn byte(&self, mut at: usize) -> Option<u8> {
        for piece in self.pieces {
            match piece.get(at) {
                Some(&b) => return Some(b),
                None => at -= piece.len(),
            }
        }
        None
    }

    /// Bytes `start..end`: borrowed when they lie in one piece.
    pub fn slice(&self, start: usize, end: usize) -> Option<Cow<'a, [u8]>> {
        let range = self.range(start, end)?;
        let mut pieces = range.pieces();
        Some(match (pieces.next(), pieces.next()) {
            (None, _) => Cow::Borrowed(&[]),
            (Some(one), None) => Cow::Borrowed(one),
            _ => Cow::Owned(range.pieces().collect::<Vec<_>>().concat()),
        })
    }

    /// How many bytes this and `other` share at the start.
    pub fn common_prefix(&self, other: &[u8]) -> usize {
        let mut at = 0;
        for piece in self.pieces {
            let Some(rest) = other.get(at..) else {
                return at;
            };
            let m = common_prefix(piece, rest);
            at += m;
            if m < piece.len() {
                return at;
            }
        }
        at
    }

    /// How many bytes this and `other`, in pieces too, share at the start.
    pub fn common_prefix_with(&self, other: Spliced<'_>) -> usize {
        let mut at = 0;
        for piece in other.pieces() {
            let Some(rest) = self.range(at, self.len()) else {
                return at;
            };
            let m = rest.common_prefix(piece);
            at += m;
            if m < piece.len() {
                return at;
            }
        }
        at
    }

    /// How many bytes this and `other`, in pieces too, share at the end, at most `limit`.
    pub fn common_suffix_with(&self, other: Spliced<'_>, limit: usize) -> usize {
        let limit = limit.min(other.len()).min(self.len());
        let mut at = 0;
        for piece in other.pieces().rev() {
            let theirs = piece
                .get(piece.len().saturating_sub(limit - at)..)
                .unwrap_or_default();
            let Some(mine) = self.range(0, self.len() - at) else {
                return at;
            };
            let m = mine.common_suffix(theirs, theirs.len());
            at += m;
            if m < piece.len() {
                return at;
            }
        }
        at
    }

    /// How many bytes this and `other` share at the end, at most `limit` (at most
    /// `other`'s length).
    pub fn common_suffix(&self, other: &[u8], limit: usize) -> usize {
        let limit = limit.min(other.len()).min(self.len());
        let mut at = 0;
        for piece in self.pieces.iter().rev() {
            let room = limit - at;
            let mine = piece
                .get(piece.len().saturating_sub(room)..)
                .unwrap_or_default();
            let end = other.len() - at;
            let theirs = other
                .get(end.saturating_sub(mine.len())..end)
                .unwrap_or_default();
            let m = common_prefix_rev(mine, theirs);
            at += m;
            if m < piece.len() {
                return at;
            }
        }
        at
    }
}

/// Which nodes an edit changed, and where the nodes are in the edited text.
#[derive(Debug, PartialEq, Eq)]
pub struct Edited {
    /// Positions of the nodes whose text differs, in order.
    pub changed: Vec<usize>,
    pub layout: Layout,
}

impl<'a> NodeTexts<'a> {
    /// `None` for anything but a JSON object with one top-level `"nodes"` array of at
    /// least one node and no top-level key twice.
    pub fn of(text: &'a str) -> Option<NodeTexts<'a>> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut de = serde_json::Deserializer::from_str(text);
        let members = de.deserialize_map(Members).ok()?;
        de.end().ok()?;
        let mut cut = None;
        let mut seen = std::collections::HashSet::with_capacity(members.len());
        for (name, value) in members {
            if !seen.insert(name) {
                return None;
            }
            if let Member::Nodes(list) = value {
                cut = Some(list);
            }
        }
        let nodes: Vec<&'a str> = cut?.into_iter().map(RawValue::get).collect();
        // The array around them, found from its first and last node (read once, in
        // the pass above; an empty one holds no node to find it by).
        let (first, last) = (nodes.first()?, nodes.last()?);
        const BLANK: [char; 4] = [' ', '\t', '\n', '\r'];
        let offset = |part: &str| (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize);
        let open = text
            .get(..offset(first)?)?
            .trim_end_matches(BLANK)
            .len()
            .checked_sub(1)?;
        let end = offset(last)? + last.len();
        let close = text.len() - text.get(end..)?.trim_start_matches(BLANK).len();
        let array = text.get(open..=close)?;
        (array.starts_with('[') && array.ends_with(']')).then_some(())?;
        Some(NodeTexts { nodes, array })
    }

    /// Where the nodes are in `text`, the text these were cut from. `None` for a text
    /// over 4 GiB (offsets are 32 bits).
    pub fn layout(&self, text: &str) -> Option<Layout> {
        let at = |part: &str| -> Option<u32> {
            let off = (part.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
            (off + part.len() <= text.len()).then_some(())?;
            u32::try_from(off).ok()
        };
        let open = at(self.array)?;
        let close = open.checked_add(u32::try_from(self.array.len().checked_sub(1)?).ok()?)?;
        let nodes = self
            .nodes
            .iter()
            .map(|n| {
                let start = at(n)?;
                Some((start, start.checked_add(u32::try_from(n.len()).ok()?)?))
            })
            .collect::<Option<_>>()?;
        Some(Layout { open, close, nodes })
    }
}

impl Layout {
    /// The node whose text holds byte `at`.
    pub fn node_at(&self, at: usize) -> Option<usize> {
        let at = u32::try_from(at).ok()?;
        let i = self
            .nodes
            .partition_point(|&(start, _)| start <= at)
            .checked_sub(1)?;
        self.nodes
            .get(i)
            .is_some_and(|&(_, end)| at < end)
            .then_some(i)
    }

    /// Node `i`'s text in `text`, the text this layout is of.
    pub fn node<'t>(&self, text: Spliced<'t>, i: usize) -> Option<Cow<'t, str>> {
        let &(start, end) = self.nodes.get(i)?;
        text.str_slice(start as usize, end as usize)
    }

    /// `text` without its nodes: the same document with an empty nodes array.
    pub fn without_nodes(&self, text: Spliced<'_>) -> Option<String> {
        let head = text.str_slice(0, self.open as usize + 1)?;
        let tail = text.str_slice(self.close as usize, text.len())?;
        Some([head, tail].concat())
    }
}

/// A workflow's file read as an edit of the kept text it is compared with: forward a
/// block at a time while it matches the kept text, then back from its end the same
/// way, and only the bytes between those read into memory. The text is then the kept
/// bytes it shares and those ([`EditRead::text`]): an edit of a few bytes in a
/// megabyte-long workflow costs no megabyte-long buffer, whose fresh pages were most of
/// what reading it cost. Each stretch is cut at a character's start, so the text is
/// UTF-8 when the bytes read are.
pub struct EditRead<'a> {
    old: Spliced<'a>,
    /// Bytes shared with `old` at the start.
    prefix: usize,
    /// The bytes between the shared ones.
    mid: Vec<u8>,
    /// Bytes shared with `old` at the end.
    suffix: usize,
}

impl<'a> EditRead<'a> {
    /// Read `file`, of `len` bytes, against `old` (a kept copy: up to three pieces).
    /// An error when the file cannot be read, is not `len` bytes long (it changed
    /// meanwhile) or is not UTF-8.
    pub fn read(file: &std::fs::File, len: usize, old: Spliced<'a>) -> std::io::Result<Self> {
        Self::read_unless(file, len, old, |_| false)?
            .ok_or_else(|| std::io::ErrorKind::InvalidData.into())
    }

    /// [`EditRead::read`], or `None` as soon as the first byte that differs from `old`
    /// is found, if `give_up` says so of its place: the file differs, and what differs
    /// there is enough to turn the edit away (an edit at the start of a big workflow
    /// was otherwise compared to its end only to be turned away).
    pub fn read_unless(
        file: &std::fs::File,
        len: usize,
        old: Spliced<'a>,
        give_up: impl Fn(usize) -> bool,
    ) -> std::io::Result<Option<Self>> {
        use std::os::unix::fs::FileExt;
        const BLOCK: usize = 64 * 1024;
        // So that the text read, in at most seven pieces, always fits.
        if old.pieces().count() > 3 {
            return Err(std::io::ErrorKind::InvalidInput.into());
        }
        let mut buf = vec![0u8; BLOCK.min(len)];
        let old_len = old.len();
        let shared = len.min(old_len);
        let block = |buf: &mut Vec<u8>, at: usize, n: usize| -> std::io::Result<()> {
            let b = buf.get_mut(..n).ok_or(std::io::ErrorKind::InvalidInput)?;
            file.read_exact_at(b, at as u64)
        };
        let mut prefix = 0;
        while prefix < shared {
            let n = BLOCK.min(shared - prefix);
            block(&mut buf, prefix, n)?;
            let rest = old
                .range(prefix, old_len)
                .ok_or(std::io::ErrorKind::InvalidData)?;
            let m = rest.common_prefix(buf.get(..n).unwrap_or_default());
            prefix += m;
            if m < n {
                break;
            }
        }
        if prefix < shared && give_up(prefix) {
            return Ok(None);
        }
        // Where a character starts in `old` (so in the text read, up to there).
        let starts_char = |at: usize| old.byte(at).is_none_or(|b| b & 0xC0 != 0x80);
        // (A kept copy never starts inside a character; a forged one may.)
        while prefix > 0 && !starts_char(prefix) {
            prefix -= 1;
        }
        let room = shared - prefix;
        let mut suffix = 0;
        while suffix < room {
            let n = BLOCK.min(room - suffix);
            block(&mut buf, len - suffix - n, n)?;
            let mine = old
                .range(old_len - suffix - n, old_len - suffix)
                .ok_or(std::io::ErrorKind::InvalidData)?;
            let m = mine.common_suffix(buf.get(..n).unwrap_or_default(), n);
            suffix += m;
            if m < n {
                break;
            }
        }
        while !starts_char(old_len - suffix) {
            suffix -= 1;
        }
        let mut mid = vec![0u8; len - suffix - prefix];
        file.read_exact_at(&mut mid, prefix as u64)?;
        if std::str::from_utf8(&mid).is_err() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        // Nothing past `len`: a file that grew meanwhile is not the one measured.
        if file.read_at(&mut [0u8; 1], len as u64)? != 0 {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
        Ok(Some(EditRead {
            old,
            prefix,
            mid,
            suffix,
        }))
    }

    /// The text read: the kept bytes it shares, and the ones read between them.
    pub fn text(&self) -> Spliced<'_> {
        let old_len = self.old.len();
        let pieces = self.old.range(0, self.prefix).and_then(|head| {
            head.then(Spliced::whole(&self.mid))?
                .then(self.old.range(old_len - self.suffix, old_len)?)
        });
        // Three and one and three pieces always fit (`read` takes no longer `old`); an
        // empty text would only make `edited` refuse the edit.
        pieces.unwrap_or(Spliced::whole(&[]))
    }

    /// Is the text read the kept text, byte for byte?
    pub fn unchanged(&self) -> bool {
        self.mid.is_empty() && self.prefix + self.suffix == self.old.len()
    }

    /// [`edited`] for the text read, from the stretches it shares with the kept text.
    pub fn edited(&self, layout: &Layout) -> Option<Edited> {
        edited_in(self.old, layout, self.text(), self.prefix, self.suffix)
    }
}

/// The nodes an edit of `old` (whose nodes are where `layout` says) into `new` changed,
/// and where the nodes are in `new`. `None` when the edit reaches outside the nodes
/// array, adds or removes a node, or leaves the changed stretch not a list of nodes.
pub fn edited(old: Spliced<'_>, layout: &Layout, new: &str) -> Option<Edited> {
    let n = new.as_bytes();
    let prefix = old.common_prefix(n);
    let suffix = old.common_suffix(n, old.len().min(n.len()) - prefix);
    edited_in(old, layout, Spliced::whole(n), prefix, suffix)
}

/// [`edited`], given that `old` and `new` share `prefix` bytes at the start and `suffix`
/// at the end (or fewer of either: the nodes between are compared byte for byte).
fn edited_in(
    old: Spliced<'_>,
    layout: &Layout,
    n: Spliced<'_>,
    prefix: usize,
    suffix: usize,
) -> Option<Edited> {
    let old_len = old.len();
    if prefix + suffix > old_len.min(n.len()) {
        return None;
    }
    if prefix == old_len && prefix == n.len() {
        return Some(Edited {
            changed: Vec::new(),
            layout: layout.clone(),
        });
    }
    let old_end = old_len - suffix;
    let (open, close) = (layout.open as usize, layout.close as usize);
    if prefix <= open
        || old_end > close
        || old.byte(open) != Some(b'[')
        || old.byte(close) != Some(b']')
    {
        return None;
    }
    let count = layout.nodes.len();
    // Nodes wholly before the changed stretch, and the first wholly after it.
    let a = layout.nodes.partition_point(|&(_, e)| e as usize <= prefix);
    let b = layout
        .nodes
        .partition_point(|&(s, _)| (s as usize) < old_end);
    let b = b.max(a);
    let w0 = match a.checked_sub(1) {
        Some(k) => layout.nodes.get(k)?.1 as usize,
        None => open + 1,
    };
    let w1 = match layout.nodes.get(b) {
        Some(&(s, _)) => s as usize,
        None => close,
    };
    let grow = |x: usize| (x + n.len()).checked_sub(old_len);
    let window = n.str_slice(w0, grow(w1)?)?;
    // The stretch between the unchanged neighbours, with a `0` standing for each, must
    // parse as a list: separators and all.
    let (lead, trail) = (usize::from(a > 0), usize::from(b < count));
    let mut list_text = String::with_capacity(window.len() + 4);
    list_text.push('[');
    if lead == 1 {
        list_text.push('0');
    }
    list_text.push_str(&window);
    if trail == 1 {
        list_text.push('0');
    }
    list_text.push(']');
    let list: Vec<&RawValue> = serde_json::from_str(&list_text).ok()?;
    if list.len() != lead + (b - a) + trail {
        return None;
    }
    let base = list_text.as_ptr() as usize;
    let offset = |v: &RawValue| v.get().as_ptr() as usize - base;
    // Each stand-in must be exactly the `0` put there, not the start of a longer value.
    if lead == 1 && list.first().map(|v| (offset(v), v.get())) != Some((1, "0")) {
        return None;
    }
    if trail == 1 && list.last().map(|v| (offset(v), v.get())) != Some((list_text.len() - 2, "0")) {
        return None;
    }
    let mut nodes = Vec::with_capacity(count);
    nodes.extend_from_slice(layout.nodes.get(..a)?);
    let mut changed = Vec::new();
    for (k, v) in list.iter().skip(lead).take(b - a).enumerate() {
        let start = w0 + offset(v) - 1 - lead;
        let end = start + v.get().len();
        let i = a + k;
        let &(s, e) = layout.nodes.get(i)?;
        let was = old.slice(s as usize, e as usize)?;
        if *was != *v.get().as_bytes() {
            changed.push(i);
        }
        nodes.push((u32::try_from(start).ok()?, u32::try_from(end).ok()?));
    }
    for &(s, e) in layout.nodes.get(b..)? {
        nodes.push((
            u32::try_from(grow(s as usize)?).ok()?,
            u32::try_from(grow(e as usize)?).ok()?,
        ));
    }
    Some(Edited {
        changed,
        layout: Layout {
            open: layout.open,
            close: u32::try_from(grow(close)?).ok()?,
            nodes,
        },
    })
}

/// How many bytes `a` and `b` share at the start (compared a block at a time).
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 128;
    let mut at = 0;
    for (x, y) in a.chunks(BLOCK).zip(b.chunks(BLOCK)) {
        if x == y {
            at += x.len();
        } else {
            return at + x.iter().zip(y).take_while(|(p, q)| p == q).count();
        }
    }
    at
}

/// How many bytes `a` and `b` share at the end.
fn common_prefix_rev(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 128;
    let mut at = 0;
    for (x, y) in a.rchunks(BLOCK).zip(b.rchunks(BLOCK)) {
        if x == y {
            at += x.len();
        } else {
            return at
                + x.iter()
                    .rev()
                    .zip(y.iter().rev())
                    .take_while(|(p, q)| p == q)
                    .count();
        }
    }
    at
}

/// A top-level member: the nodes, cut as they are read, or any other value.
enum Member<'a> {
    Nodes(Vec<&'a RawValue>),
    Other,
}

/// A top-level object's members as written, repeated keys included.
struct Members;

impl<'de> Visitor<'de> for Members {
    type Value = Vec<(Cow<'de, str>, Member<'de>)>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some(name) = map.next_key::<Cow<'de, str>>()? {
            let value = if name == "nodes" {
                Member::Nodes(map.next_value::<Vec<&'de RawValue>>()?)
            } else {
                map.next_value::<&'de RawValue>()?;
                Member::Other
            };
            out.push((name, value));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"{"ir_version": "0.1.0", "nodes": [ {"id": "a", "type": "echo"},
            {"id":"b","type":"echo","params":{"message":"${a.x}"}} ], "outputs": {}}"#;

    fn whole(text: &str) -> Spliced<'_> {
        Spliced::whole(text.as_bytes())
    }

    fn layout(text: &str) -> Layout {
        NodeTexts::of(text)
            .expect("cut")
            .layout(text)
            .expect("laid out")
    }

    /// `text` whole, and cut into three pieces at every pair of places.
    fn splits(text: &str) -> impl Iterator<Item = Spliced<'_>> {
        let b = text.as_bytes();
        let cuts = (0..=b.len()).flat_map(move |i| (i..=b.len()).map(move |j| (i, j)));
        std::iter::once(Spliced::whole(b))
            .chain(cuts.map(move |(i, j)| Spliced::of(&b[..i], &b[i..j], &b[j..])))
    }

    #[test]
    fn a_spliced_text_reads_as_its_pieces_one_after_another() {
        let text = "abcdefghij";
        let other = "abcXefgh-ij";
        for s in splits(text) {
            assert_eq!(s.len(), 10);
            assert_eq!(s.slice(0, 10).as_deref(), Some(text.as_bytes()));
            for i in 0..10 {
                assert_eq!(s.byte(i), Some(text.as_bytes()[i]));
                for j in i..=10 {
                    assert_eq!(s.slice(i, j).as_deref(), Some(&text.as_bytes()[i..j]));
                }
            }
            assert_eq!(s.byte(10), None);
            assert_eq!(s.slice(3, 11), None);
            assert_eq!(s.slice(4, 3), None);
            assert_eq!(s.common_prefix(other.as_bytes()), 3);
            assert_eq!(s.common_prefix(b"abc"), 3);
            assert_eq!(s.common_prefix(text.as_bytes()), 10);
            assert_eq!(s.common_suffix(other.as_bytes(), 10), 2);
            assert_eq!(s.common_suffix(b"zzzzzhij", 10), 3);
            assert_eq!(s.common_suffix(text.as_bytes(), 10), 10);
            assert_eq!(s.common_suffix(text.as_bytes(), 4), 4, "at most the limit");
            assert_eq!(s.common_suffix(b"ij", 10), 2, "at most the other's length");
        }
    }

    #[test]
    fn nodes_are_cut_as_written_and_found_again_by_their_layout() {
        let t = NodeTexts::of(TEXT).expect("cut");
        let nodes = vec![
            r#"{"id": "a", "type": "echo"}"#,
            r#"{"id":"b","type":"echo","params":{"message":"${a.x}"}}"#,
        ];
        assert_eq!(t.nodes, nodes);
        let at = t.layout(TEXT).expect("laid out");
        assert_eq!(
            (0..2).map(|i| at.node(whole(TEXT), i)).collect::<Vec<_>>(),
            nodes
                .into_iter()
                .map(|n| Some(n.into()))
                .collect::<Vec<_>>()
        );
        assert_eq!(
            at.without_nodes(whole(TEXT)).as_deref(),
            Some(r#"{"ir_version": "0.1.0", "nodes": [], "outputs": {}}"#)
        );
        // A byte-order mark is part of the text the offsets count in.
        let marked = format!("\u{feff}{TEXT}");
        assert_eq!(
            layout(&marked).node(whole(&marked), 1),
            at.node(whole(TEXT), 1)
        );
    }

    #[test]
    fn an_edit_inside_nodes_names_the_nodes_it_changed_and_where_all_are_now() {
        let at = layout(TEXT);
        let cases: [(&str, &str, &[usize]); 6] = [
            (
                r#""echo"},"#,
                r#""echo" , "params": {"message": "longer"}},"#,
                &[0],
            ),
            ("${a.x}", "${a.y}", &[1]),
            (r#""a", "type""#, r#""a","type""#, &[0]),
            // Both nodes at once, and the separators between them.
            (
                r#""echo"},
            {"id":"b""#,
                r#""shell"},{"id":"b""#,
                &[0],
            ),
            ("} ], \"outputs", "}\n\n], \"outputs", &[]),
            (r#""echo"}, {"#, r#""echo"}, {"#, &[]),
        ];
        for (from, to, changed) in cases {
            let new = TEXT.replacen(from, to, 1);
            for old in splits(TEXT) {
                let got = edited(old, &at, &new).unwrap_or_else(|| panic!("{to}"));
                assert_eq!(got.changed, changed, "{to}");
                assert_eq!(got.layout, layout(&new), "{to}");
            }
        }
        for old in splits(TEXT) {
            assert_eq!(edited(old, &at, TEXT).map(|e| e.changed), Some(vec![]));
        }
    }

    #[test]
    fn pieces_of_a_spliced_text_are_taken_and_joined_without_changing_a_byte() {
        let text = "abcdefghij";
        for s in splits(text) {
            for i in 0..=10 {
                for j in i..=10 {
                    let r = s.range(i, j).expect("in range");
                    assert_eq!(r.len(), j - i);
                    assert_eq!(r.slice(0, r.len()).as_deref(), Some(&text.as_bytes()[i..j]));
                    let joined = r.then(s.range(j, 10).unwrap()).expect("fits");
                    assert_eq!(
                        joined.slice(0, joined.len()).as_deref(),
                        Some(&text.as_bytes()[i..])
                    );
                }
            }
            assert!(s.range(3, 11).is_none() && s.range(4, 3).is_none());
            assert_eq!(s.digest(), blake3::hash(text.as_bytes()));
            for other in splits("abcXefgh-ij").step_by(7) {
                assert_eq!(s.common_prefix_with(other), 3);
                assert_eq!(s.common_suffix_with(other, 10), 2);
                assert_eq!(s.common_suffix_with(other, 1), 1);
            }
            for same in splits(text).step_by(5) {
                assert_eq!(s.common_prefix_with(same), 10);
                assert_eq!(s.common_suffix_with(same, 10), 10);
                assert_eq!(s.common_suffix_with(same, 4), 4, "at most the limit");
            }
        }
        // Seven pieces at most.
        let b = text.as_bytes();
        let four = Spliced::of(&b[..1], &b[1..2], &b[2..3]).then(Spliced::whole(&b[3..4]));
        let four = four.expect("four pieces fit");
        assert!(four.then(four).is_none(), "eight do not");
        assert_eq!(
            four.then(Spliced::of(&b[4..5], &b[5..6], &b[6..]))
                .map(|s| s.len()),
            Some(10)
        );
        assert_eq!(
            Spliced::whole("é".as_bytes()).str_slice(0, 1),
            None,
            "half a character"
        );
    }

    #[test]
    fn a_place_in_the_text_is_in_the_node_whose_text_holds_it() {
        let at = layout(TEXT);
        let a = TEXT.find(r#"{"id": "a""#).unwrap();
        let b = TEXT.find(r#"{"id":"b""#).unwrap();
        assert_eq!(at.node_at(a), Some(0));
        assert_eq!(at.node_at(TEXT.find(r#""echo"}"#).unwrap()), Some(0));
        assert_eq!(at.node_at(b), Some(1));
        assert_eq!(at.node_at(TEXT.find("${a.x}").unwrap()), Some(1));
        assert_eq!(at.node_at(0), None, "before the nodes");
        assert_eq!(at.node_at(b - 1), None, "between two");
        assert_eq!(
            at.node_at(TEXT.find("outputs").unwrap()),
            None,
            "after them"
        );
        assert_eq!(at.node_at(usize::MAX), None);
    }

    #[test]
    fn reading_gives_up_at_the_first_byte_that_differs_when_asked_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.json");
        let kept = whole(TEXT);
        let asked = std::cell::Cell::new(None);
        let give_up = |at: usize| {
            asked.set(Some(at));
            true
        };
        std::fs::write(&path, TEXT).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let same = EditRead::read_unless(&file, TEXT.len(), kept, give_up).unwrap();
        assert!(same.is_some_and(|r| r.unchanged()));
        assert_eq!(asked.get(), None, "an unchanged file differs nowhere");
        let new = TEXT.replace("${a.x}", "${a.y}");
        std::fs::write(&path, &new).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert!(EditRead::read_unless(&file, new.len(), kept, give_up)
            .unwrap()
            .is_none());
        assert_eq!(asked.get(), Some(TEXT.find("${a.x}").unwrap() + 4));
        let read = EditRead::read_unless(&file, new.len(), kept, |_| false).unwrap();
        let read = read.expect("read on");
        assert_eq!(read.edited(&layout(TEXT)).map(|e| e.changed), Some(vec![1]));
    }

    #[test]
    fn a_file_read_as_an_edit_of_the_kept_text_is_that_file_and_finds_the_same_nodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.json");
        let at = layout(TEXT);
        // Edits inside nodes and around them, and into characters of two and three
        // bytes whose first bytes are the old ones' (the shared bytes end inside them).
        let edits = [
            ("${a.x}", "${a.y}"),
            ("${a.x}", "${a.é}"),
            (
                r#""echo"},"#,
                r#""echo" , "params": {"message": "€ longer"}},"#,
            ),
            ("} ], \"outputs", "}\n\n], \"outputs"),
            (r#""id": "a""#, r#""id": "a""#),
        ];
        let accented = TEXT.replace("${a.x}", "${a.è}");
        let cases: Vec<(String, String)> = edits
            .iter()
            .map(|(from, to)| (TEXT.to_string(), TEXT.replacen(from, to, 1)))
            .chain([(accented.clone(), TEXT.replace("${a.x}", "${a.é}"))])
            .chain([(accented.clone(), accented.replace("è", "ë€"))])
            // And the bytes shared at the end start inside one (è is C3 A8, Ѩ D1 A8).
            .chain([(accented.clone(), accented.replace("è", "Ѩ"))])
            .collect();
        for (old, new) in &cases {
            let at = if old == TEXT { at.clone() } else { layout(old) };
            std::fs::write(&path, new).unwrap();
            let file = std::fs::File::open(&path).unwrap();
            for kept in splits(old).step_by(3) {
                let read = EditRead::read(&file, new.len(), kept).expect("read");
                let got = read.text();
                assert_eq!(got.slice(0, got.len()).as_deref(), Some(new.as_bytes()));
                assert!(std::str::from_utf8(&got.slice(0, got.len()).unwrap()).is_ok());
                assert_eq!(read.edited(&at), edited(kept, &at, new), "{new}");
                assert_eq!(read.unchanged(), old == new, "{new}");
            }
        }
        // A file that ends before the length asked (it changed meanwhile), or is not
        // UTF-8, is an error.
        std::fs::write(&path, TEXT).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let kept = Spliced::whole(TEXT.as_bytes());
        assert!(EditRead::read(&file, TEXT.len() + 1, kept).is_err());
        assert!(
            EditRead::read(&file, TEXT.len() - 1, kept).is_err(),
            "it grew"
        );
        // A kept text in more than three pieces is not one.
        let t = TEXT.as_bytes();
        let four = Spliced::of(&t[..1], &t[1..2], &t[2..3]).then(Spliced::whole(&t[3..]));
        assert!(EditRead::read(&file, TEXT.len(), four.unwrap()).is_err());
        // A kept text that starts inside a character (forged: pflow keeps UTF-8) is
        // read past, not under.
        std::fs::write(&path, "zabc").unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let read = EditRead::read(&file, 4, Spliced::whole(b"\x80abc")).expect("read");
        let got = read.text();
        assert_eq!(got.slice(0, got.len()).as_deref(), Some(&b"zabc"[..]));
        let mut bad = TEXT.as_bytes().to_vec();
        let x = TEXT.find("a.x").unwrap() + 2;
        bad[x] = 0xFF;
        std::fs::write(&path, &bad).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        assert!(EditRead::read(&file, bad.len(), kept).is_err());
    }

    #[test]
    fn an_edit_outside_the_nodes_or_of_their_number_or_not_json_is_refused() {
        let at = layout(TEXT);
        for (from, to) in [
            ("0.1.0", "0.2.0"),
            (r#""outputs": {}"#, r#""outputs": {"o": {}}"#),
            ("} ], ", "}, {\"id\": \"c\", \"type\": \"echo\"} ], "),
            (r#"{"id": "a", "type": "echo"},"#, ""),
            // Text that is not a list of nodes where the nodes were.
            ("\"echo\"},", "\"echo\"}"),
            ("\"echo\"},", "\"echo\"},,"),
            ("} ], ", "}, ], "),
            ("} ], ", "} ]], "),
            // Where a neighbour's stand-in would have read as part of a longer value.
            ("},\n            {\"id\":\"b\"", "}.5,{\"id\":\"b\""),
            ("},\n            {\"id\":\"b\"", "},1{\"id\":\"b\""),
            ("},\n            {\"id\":\"b\"", "}e5,{\"id\":\"b\""),
            ("\"echo\"},", "\"echo\"}, -"),
        ] {
            assert!(TEXT.contains(from), "{from}");
            let new = TEXT.replacen(from, to, 1);
            for old in splits(TEXT) {
                assert_eq!(edited(old, &at, &new), None, "{new}");
            }
        }
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
