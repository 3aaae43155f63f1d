//! A sorted table of per-node records, read whole and decoded only where asked.
//!
//! The build records of a 10,000-node workflow hold one record per node, but a build
//! touches few of them: a no-op build checks each one once, and an edit changes a
//! handful. Decoding every record into maps on load and encoding every record again on
//! save cost more than the rest of an edit build, so the records live in one byte buffer,
//! sorted by node id: a lookup is a binary search and a decode of that record alone, and
//! a save copies unchanged records byte for byte, encoding only the new ones.
//!
//! Layout (little-endian): rows of `id_len: u32, id, len: u32, payload`, ids strictly
//! ascending, then their `count: u32` and length in bytes `len: u32` (last, so that a
//! save streams the rows to the file without building it in memory first; both, so that
//! a file torn after a row is not taken for a shorter table). Anything else (a torn or
//! foreign file) fails to parse as a whole; callers then start from an empty table.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasherDefault;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::fsutil::Bytes;

#[derive(Debug, Default)]
pub struct Table {
    bytes: Bytes,
    /// Where each row starts in `bytes`, in id order (4 bytes a row: a table is read
    /// for a few of its rows as often as for all).
    entries: Vec<u32>,
    /// Each entry's position by a hash of its id: a build of many nodes looks up
    /// several records per node, and a binary search's dozen comparisons cost more than
    /// a probe. Made at the [`HASH_AFTER`]th lookup, so that a build that looks up a few
    /// (the edit path) does not hash every id. An id whose hash another took first is
    /// found by the binary search.
    by_hash: OnceLock<HashMap<u64, u32, BuildHasherDefault<crate::key::KeyHasher>>>,
    lookups: AtomicU32,
}

/// Lookups by binary search before the table makes its hash map.
const HASH_AFTER: u32 = 64;

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
    pub fn parse(bytes: impl Into<Bytes>, start: usize) -> Option<Table> {
        let bytes: Bytes = bytes.into();
        let end = bytes.len().checked_sub(8)?;
        if start > end {
            return None;
        }
        let mut trailer = Reader::new(&bytes, end);
        let count = trailer.u32()? as usize;
        if trailer.u32()? as usize != end - start {
            return None;
        }
        let mut r = Reader::new(bytes.get(..end)?, start);
        // Each entry takes at least 8 bytes: a count beyond that is a damaged file, and
        // must not turn into a huge allocation.
        if count > r.remaining() / 8 {
            return None;
        }
        let mut entries = Vec::with_capacity(count);
        let mut prev: &[u8] = &[];
        for i in 0..count {
            let at = u32::try_from(r.offset()).ok()?;
            // An id is only compared as bytes (lookups are by `&str`, so an id that is no
            // UTF-8 is simply never found): not checked here, where every row is read.
            let id = bytes.get(r.sized()?)?;
            r.sized()?;
            if i > 0 && prev >= id {
                return None;
            }
            prev = id;
            entries.push(at);
        }
        if r.remaining() != 0 {
            return None;
        }
        Some(Table {
            bytes,
            entries,
            by_hash: OnceLock::new(),
            lookups: AtomicU32::new(0),
        })
    }

    fn hashed(&self) -> Option<&HashMap<u64, u32, BuildHasherDefault<crate::key::KeyHasher>>> {
        if let Some(map) = self.by_hash.get() {
            return Some(map);
        }
        if self.lookups.fetch_add(1, Ordering::Relaxed) < HASH_AFTER {
            return None;
        }
        Some(self.by_hash.get_or_init(|| {
            let mut map = HashMap::with_capacity_and_hasher(self.entries.len(), Default::default());
            for (i, &at) in self.entries.iter().enumerate() {
                map.entry(id_hash(self.row(at).0)).or_insert(i as u32);
            }
            map
        }))
    }

    /// The id and payload of the row at `at`, and where the row ends (`parse` checked
    /// every row: a bad `at` gives empty ones, never a panic).
    fn row(&self, at: u32) -> (&[u8], &[u8], usize) {
        let mut r = Reader::new(&self.bytes, at as usize);
        let id = r.sized().and_then(|id| self.bytes.get(id));
        let payload = r.sized().and_then(|p| self.bytes.get(p));
        (
            id.unwrap_or_default(),
            payload.unwrap_or_default(),
            r.offset(),
        )
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
            .hashed()
            .and_then(|map| map.get(&id_hash(id)))
            .and_then(|&i| self.entries.get(i as usize))
            .map(|&at| self.row(at))
            .filter(|(found, _, _)| *found == id);
        let (_, payload, _) = match hashed {
            Some(row) => row,
            None => {
                let i = self
                    .entries
                    .binary_search_by(|&at| self.row(at).0.cmp(id))
                    .ok()?;
                self.row(*self.entries.get(i)?)
            }
        };
        Some(payload)
    }

    /// [`Table::merged_into`] a buffer.
    #[cfg(test)]
    pub fn merged(
        &self,
        updates: &BTreeMap<String, Vec<u8>>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> Vec<u8> {
        let added: usize = updates.iter().map(|(id, p)| 8 + id.len() + p.len()).sum();
        let mut out = Vec::with_capacity(self.bytes.len() + added);
        let written = self.merged_into(&mut out, updates, keep);
        debug_assert!(written.is_ok(), "a Vec takes every write");
        out
    }

    /// Write the table that results from this one with `updates` applied to `out`, as it
    /// is made: an updated id gets its new payload, an id only here survives when `keep`
    /// says so. Kept rows are copied as bytes, never decoded.
    pub fn merged_into(
        &self,
        out: &mut impl std::io::Write,
        updates: &BTreeMap<String, Vec<u8>>,
        keep: impl Fn(&[u8]) -> bool,
    ) -> std::io::Result<()> {
        let mut out = Writer {
            out,
            count: 0,
            len: 0,
        };
        let mut new = updates
            .iter()
            .map(|(id, p)| (id.as_bytes(), p.as_slice()))
            .peekable();
        // Kept rows lie back to back in `bytes`: copied a run at a time.
        let mut run: Range<usize> = 0..0;
        for &at in &self.entries {
            let (id, _, row_end) = self.row(at);
            // Updates that sort before this row go first.
            if new.peek().is_some_and(|(nid, _)| *nid < id) {
                out.copy(&self.bytes[std::mem::take(&mut run)])?;
                while let Some(row) = new.next_if(|(nid, _)| *nid < id) {
                    out.row(row)?;
                }
            }
            if let Some(row) = new.next_if(|(nid, _)| *nid == id) {
                out.copy(&self.bytes[std::mem::take(&mut run)])?;
                out.row(row)?;
            } else if keep(id) {
                let row_at = at as usize..row_end;
                if run.end != row_at.start {
                    out.copy(&self.bytes[std::mem::take(&mut run)])?;
                    run = row_at.start..row_at.start;
                }
                run.end = row_at.end;
                out.count += 1;
            }
        }
        out.copy(&self.bytes[run])?;
        for row in new {
            out.row(row)?;
        }
        out.finish()
    }
}

/// A table being encoded row by row (sorted by id, without duplicates): the count goes
/// after the rows.
struct Writer<'w, W: std::io::Write> {
    out: &'w mut W,
    count: u32,
    len: u32,
}

impl<W: std::io::Write> Writer<'_, W> {
    /// Encoded rows copied as they are (the caller counts them).
    fn copy(&mut self, encoded: &[u8]) -> std::io::Result<()> {
        self.len = self.len.wrapping_add(encoded.len() as u32);
        self.out.write_all(encoded)
    }

    fn row(&mut self, (id, payload): (&[u8], &[u8])) -> std::io::Result<()> {
        self.copy(&(id.len() as u32).to_le_bytes())?;
        self.copy(id)?;
        self.copy(&(payload.len() as u32).to_le_bytes())?;
        self.copy(payload)?;
        self.count += 1;
        Ok(())
    }

    fn finish(self) -> std::io::Result<()> {
        self.out.write_all(&self.count.to_le_bytes())?;
        self.out.write_all(&self.len.to_le_bytes())
    }
}

/// Encode rows that are already sorted by id, without duplicates.
#[cfg(test)]
pub fn encode(rows: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size: usize = rows.iter().map(|(id, p)| 8 + id.len() + p.len()).sum();
    let mut out = Vec::with_capacity(size + 8);
    let mut w = Writer {
        out: &mut out,
        count: 0,
        len: 0,
    };
    for row in rows {
        let written = w.row(*row);
        debug_assert!(written.is_ok(), "a Vec takes every write");
    }
    let written = w.finish();
    debug_assert!(written.is_ok(), "a Vec takes every write");
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
        // Found before the map is made, by it once made, and past it by the search.
        let t = table(&refs);
        for (id, payload) in &rows {
            assert_eq!(t.get(id), Some(payload.as_bytes()), "{id}");
        }
        assert!(t.by_hash.get().is_some(), "made after {HASH_AFTER} lookups");
        assert_eq!(t.get("n2000"), None);
        // Every id shares one hash bucket: all but one are found by the search.
        let t = table(&refs);
        let _ = t.by_hash.set([(id_hash(b"n0"), 5)].into_iter().collect());
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
        /// A merge is the table a map of its rows with the updates applied would give,
        /// whatever rows are kept, replaced, added or dropped, and wherever they lie.
        #[test]
        fn a_merge_is_the_map_merge(
            old in proptest::collection::btree_map("[a-e]{1,2}", "[x-z]{0,3}", 0..12),
            updates in proptest::collection::btree_map("[a-e]{1,2}", "[0-2]{0,3}", 0..6),
            dropped in proptest::collection::btree_set("[a-e]{1,2}", 0..6),
        ) {
            let rows: Vec<(&[u8], &[u8])> =
                old.iter().map(|(i, p)| (i.as_bytes(), p.as_bytes())).collect();
            let t = Table::parse(encode(&rows), 0).expect("parses");
            let updates: BTreeMap<String, Vec<u8>> =
                updates.into_iter().map(|(i, p)| (i, p.into_bytes())).collect();
            let keep = |id: &[u8]| !dropped.iter().any(|d| d.as_bytes() == id);
            let mut expect: BTreeMap<Vec<u8>, Vec<u8>> = old
                .iter()
                .filter(|(i, _)| keep(i.as_bytes()))
                .map(|(i, p)| (i.clone().into_bytes(), p.clone().into_bytes()))
                .collect();
            for (i, p) in &updates {
                expect.insert(i.clone().into_bytes(), p.clone());
            }
            let expect_rows: Vec<(&[u8], &[u8])> =
                expect.iter().map(|(i, p)| (i.as_slice(), p.as_slice())).collect();
            proptest::prop_assert_eq!(t.merged(&updates, keep), encode(&expect_rows));
        }

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
        let huge = [
            [1u8; 8].as_slice(),
            &u32::MAX.to_le_bytes(),
            &8u32.to_le_bytes(),
        ]
        .concat();
        assert!(Table::parse(huge, 0).is_none(), "absurd count");
    }
}
