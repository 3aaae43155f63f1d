//! A sorted table of per-node records, read whole and decoded only where asked.
//!
//! The build records of a 10,000-node workflow hold one record per node, but a build
//! touches few of them: a no-op build checks each one once, and an edit changes a
//! handful. Decoding every record into maps on load and encoding every record again on
//! save cost more than the rest of an edit build, so the records live in one byte buffer,
//! sorted by node id: a lookup is a binary search and a decode of that record alone, and
//! a save copies unchanged records byte for byte, encoding only the new ones.
//!
//! Layout (little-endian): `count: u32`, then `count` times `id_len: u32, id, len: u32,
//! payload`, ids strictly ascending. Anything else (a torn or foreign file) fails to
//! parse as a whole; callers then start from an empty table.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::ops::Range;

#[derive(Debug, Default)]
pub struct Table {
    bytes: Vec<u8>,
    /// (id, payload) ranges into `bytes`, in id order.
    entries: Vec<(Range<usize>, Range<usize>)>,
    /// Each entry's position by a hash of its id: an edit looks up several records per
    /// node, and a binary search's dozen comparisons cost more than a probe. An id
    /// whose hash another took first is found by the binary search.
    by_hash: HashMap<u64, u32, BuildHasherDefault<crate::key::KeyHasher>>,
}

/// FNV-1a of an id: ids are short, and any spread of them is good enough here (a
/// collision costs a binary search, never a wrong record).
fn id_hash(id: &[u8]) -> u64 {
    id.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Reads little-endian numbers and byte runs off a slice, front to back. Every read
/// checks the length first, so damaged input gives `None`, never a panic. Shared by the
/// table and the records stored in it.
pub struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    /// Read `bytes` from position `at`.
    pub fn new(bytes: &'a [u8], at: usize) -> Reader<'a> {
        Reader { bytes, at }
    }

    /// Where the next read starts.
    pub fn offset(&self) -> usize {
        self.at
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.at)
    }

    pub fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let piece = self.bytes.get(self.at..self.at.checked_add(n)?)?;
        self.at += n;
        Some(piece)
    }

    pub fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    pub fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_le_bytes)
    }

    pub fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_le_bytes)
    }

    pub fn i128(&mut self) -> Option<i128> {
        self.array().map(i128::from_le_bytes)
    }

    /// A u32 length, then that many bytes: where they are.
    pub fn sized(&mut self) -> Option<Range<usize>> {
        let len = self.u32()? as usize;
        let start = self.at;
        self.take(len)?;
        Some(start..self.at)
    }
}

impl Table {
    /// Parse the table that starts at `start` in `bytes` and runs to its end.
    pub fn parse(bytes: Vec<u8>, start: usize) -> Option<Table> {
        let mut r = Reader::new(&bytes, start);
        let count = r.u32()? as usize;
        // Each entry takes at least 8 bytes: a count beyond that is a damaged file, and
        // must not turn into a huge allocation.
        if count > r.remaining() / 8 {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        for _ in 0..count {
            let id = r.sized()?;
            let payload = r.sized()?;
            std::str::from_utf8(&bytes[id.clone()]).ok()?;
            if let Some((prev, _)) = entries.last() {
                let prev: &Range<usize> = prev;
                if bytes[prev.clone()] >= bytes[id.clone()] {
                    return None;
                }
            }
            entries.push((id, payload));
        }
        if r.remaining() != 0 {
            return None;
        }
        let mut by_hash = HashMap::with_capacity_and_hasher(entries.len(), Default::default());
        for (i, (id, _)) in entries.iter().enumerate() {
            by_hash
                .entry(id_hash(&bytes[id.clone()]))
                .or_insert(i as u32);
        }
        Some(Table {
            bytes,
            entries,
            by_hash,
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The payload recorded for `id`.
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        let id = id.as_bytes();
        let hashed = self
            .by_hash
            .get(&id_hash(id))
            .and_then(|&i| self.entries.get(i as usize))
            .filter(|(r, _)| &self.bytes[r.clone()] == id);
        let (_, payload) = match hashed {
            Some(entry) => entry,
            None => {
                let i = self
                    .entries
                    .binary_search_by(|(r, _)| self.bytes[r.clone()].cmp(id))
                    .ok()?;
                &self.entries[i]
            }
        };
        Some(&self.bytes[payload.clone()])
    }

    /// Encode the table that results from this one with `updates` applied: an updated id
    /// gets its new payload, an id only here survives when `keep` says so. Kept rows are
    /// copied as bytes, never decoded.
    pub fn merged(
        &self,
        updates: &BTreeMap<String, Vec<u8>>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        let mut rows: Vec<(&[u8], &[u8])> = Vec::with_capacity(self.entries.len() + updates.len());
        let mut new = updates
            .iter()
            .map(|(id, p)| (id.as_bytes(), p.as_slice()))
            .peekable();
        for (id, payload) in &self.entries {
            let (id, payload) = (&self.bytes[id.clone()], &self.bytes[payload.clone()]);
            while let Some(row) = new.next_if(|(nid, _)| *nid < id) {
                rows.push(row);
            }
            if let Some(row) = new.next_if(|(nid, _)| *nid == id) {
                rows.push(row);
            } else if keep(id) {
                rows.push((id, payload));
            }
        }
        rows.extend(new);
        encode(&rows)
    }
}

/// Encode rows that are already sorted by id, without duplicates.
pub fn encode(rows: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size: usize = rows.iter().map(|(id, p)| 8 + id.len() + p.len()).sum();
    let mut out = Vec::with_capacity(4 + size);
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    for (id, payload) in rows {
        out.extend_from_slice(&(id.len() as u32).to_le_bytes());
        out.extend_from_slice(id);
        out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        out.extend_from_slice(payload);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str)]) -> Table {
        let rows: Vec<(&[u8], &[u8])> = rows
            .iter()
            .map(|(i, p)| (i.as_bytes(), p.as_bytes()))
            .collect();
        Table::parse(encode(&rows), 0).expect("parses")
    }

    #[test]
    fn lookups_find_each_record() {
        let t = table(&[("a", "1"), ("b", ""), ("n10", "ten"), ("n9", "nine")]);
        assert_eq!(t.len(), 4);
        assert_eq!(t.get("a"), Some(&b"1"[..]));
        assert_eq!(t.get("b"), Some(&b""[..]));
        assert_eq!(t.get("n9"), Some(&b"nine"[..]));
        assert_eq!(t.get("n10"), Some(&b"ten"[..]));
        assert_eq!(t.get("c"), None);
        assert_eq!(t.get(""), None);
    }

    #[test]
    fn ids_whose_hashes_collide_are_both_found() {
        // Only the first of two ids with one hash is found by it: the second must be
        // found all the same.
        let mut rows: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("n{i}"), format!("{i}")))
            .collect();
        rows.sort();
        let refs: Vec<(&str, &str)> = rows.iter().map(|(i, p)| (i.as_str(), p.as_str())).collect();
        let mut t = table(&refs);
        let first = t.by_hash.clone();
        // Every id now shares one hash bucket: all but one are found by the search.
        t.by_hash = [(id_hash(b"n0"), 5)].into_iter().collect();
        for (id, payload) in &rows {
            assert_eq!(t.get(id), Some(payload.as_bytes()), "{id}");
        }
        t.by_hash = first;
        for (id, payload) in &rows {
            assert_eq!(t.get(id), Some(payload.as_bytes()), "{id}");
        }
        assert_eq!(t.get("n2000"), None);
    }

    #[test]
    fn merge_replaces_adds_and_drops() {
        let t = table(&[("a", "old a"), ("c", "old c"), ("e", "old e")]);
        let updates: BTreeMap<String, Vec<u8>> = [("b", "new b"), ("c", "new c"), ("f", "new f")]
            .iter()
            .map(|(i, p)| (i.to_string(), p.as_bytes().to_vec()))
            .collect();
        let merged = Table::parse(t.merged(&updates, |id| id != b"e"), 0).expect("parses");
        let all: Vec<(&str, &[u8])> = ["a", "b", "c", "e", "f"]
            .iter()
            .filter_map(|id| merged.get(id).map(|p| (*id, p)))
            .collect();
        assert_eq!(
            all,
            vec![
                ("a", &b"old a"[..]),
                ("b", &b"new b"[..]),
                ("c", &b"new c"[..]),
                ("f", &b"new f"[..])
            ]
        );
    }

    proptest::proptest! {
        /// Whatever is in the file (a torn write, another version, garbage), parsing
        /// and looking up never panic.
        #[test]
        fn any_bytes_parse_or_are_refused(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300), id in "[a-c]{0,2}") {
            if let Some(t) = Table::parse(bytes, 0) {
                let _ = t.get(&id);
                let _ = Table::parse(t.merged(&BTreeMap::new(), |_| true), 0).expect("re-parses");
            }
        }
    }

    #[test]
    fn damaged_tables_do_not_parse() {
        let good = encode(&[(b"a", b"1"), (b"b", b"2")]);
        assert!(Table::parse(good.clone(), 0).is_some());
        for cut in 0..good.len() {
            assert!(
                Table::parse(good[..cut].to_vec(), 0).is_none(),
                "torn at {cut}"
            );
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(Table::parse(longer, 0).is_none(), "trailing bytes");
        let unsorted = encode(&[(b"b", b"1"), (b"a", b"2")]);
        assert!(Table::parse(unsorted, 0).is_none(), "out of order");
        let dup = encode(&[(b"a", b"1"), (b"a", b"2")]);
        assert!(Table::parse(dup, 0).is_none(), "duplicate id");
        let huge = u32::MAX.to_le_bytes().to_vec();
        assert!(Table::parse(huge, 0).is_none(), "absurd count");
    }
}
