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
//! ascending, then where each row starts (`u32`s, from the first row's start), then
//! their `count: u32` and the rows' length in bytes `len: u32` (last, so that a save
//! streams the rows to the file without building it in memory first; both, so that a
//! file torn after a row is not taken for a shorter table). A parse reads the trailer
//! and the row starts, never the rows: an edit's build looks up a dozen rows of a
//! megabyte table, and reading them all to find where each starts was most of the
//! table's cost (the file is mapped, so the rows not looked up are never read in).
//! What a parse cannot see without reading the rows (a row that is not one, rows that
//! overlap, ids out of order) a lookup meets: it gives a row only under the id written
//! in it, so a damaged table can hide rows; and a save copies only the sound rows (whole,
//! apart, in order), so the next table is sound again. A torn or foreign file fails to
//! parse as a whole; callers then start from an empty table.

use std::collections::BTreeMap;
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

use crate::fsutil::Bytes;

#[derive(Debug, Default)]
pub struct Table {
    bytes: Bytes,
    /// Where the rows start in `bytes` and end (where the row starts are).
    rows: Range<usize>,
    /// How many rows.
    count: usize,
    /// Each row found by a hash of its id: a build of many nodes looks up several
    /// records per node, and a binary search's dozen comparisons cost more than a
    /// probe. Made at the [`HASH_AFTER`]th lookup, so that a build that looks up a few
    /// (the edit path) does not hash every id.
    slots: OnceLock<Slots>,
    lookups: AtomicU32,
}

/// The rows by the hash of their ids, open addressing with linear probing. A slot holds
/// what a lookup needs to pass over a row without reading it: a hash map's control
/// bytes, its bucket, the entry list and then the row were four cache misses a lookup
/// (a third of a worker's extra time in an edit near the start of a 10,000-node chain),
/// a slot is one, and a slot whose payload does not start as asked (the fast path's
/// key) is the only one.
#[derive(Debug)]
struct Slots {
    slots: Vec<Slot>,
    mask: usize,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    /// The id hash's high half (its low bits chose the slot).
    check: u32,
    /// Where the row starts; [`EMPTY`] for no row.
    at: u32,
    /// The payload's first 8 bytes (fewer: zero-padded).
    lead: u64,
}

/// No row starts here: a row takes at least 8 bytes and a table ends with 8 more.
const EMPTY: u32 = u32::MAX;

/// Lookups by binary search before the table makes its slots.
const HASH_AFTER: u32 = 64;

/// FNV-1a of an id: ids are short, and any spread of them is good enough here (a
/// collision costs a binary search, never a wrong record).
fn id_hash(id: &[u8]) -> u64 {
    id.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// A payload's first 8 bytes as a number (fewer: zero-padded), as a slot keeps them.
fn lead(payload: &[u8]) -> u64 {
    let mut first = [0u8; 8];
    let n = payload.len().min(8);
    first[..n].copy_from_slice(&payload[..n]);
    u64::from_le_bytes(first)
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

    /// A u32 length, then that many bytes of UTF-8 ([`put_str`]).
    pub fn str(&mut self) -> Option<&'a str> {
        let len = self.u32()? as usize;
        std::str::from_utf8(self.take(len)?).ok()
    }

    /// A u32 length, then that many bytes: where they are.
    pub fn sized(&mut self) -> Option<Range<usize>> {
        let len = self.u32()? as usize;
        let start = self.at;
        self.take(len)?;
        Some(start..self.at)
    }
}

/// `s` as [`Reader::str`] reads it: its length as a u32, then its bytes.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
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
        let len = trailer.u32()? as usize;
        // Each row takes at least 8 bytes: a count beyond that is a damaged file, and
        // must not turn into a huge allocation.
        if count > len / 8 || start.checked_add(len)?.checked_add(count.checked_mul(4)?)? != end {
            return None;
        }
        let table = Table {
            rows: start..start + len,
            count,
            bytes,
            slots: OnceLock::new(),
            lookups: AtomicU32::new(0),
        };
        // The row starts rise within the rows, the first at their start: 4 bytes a row,
        // a hundredth of what the rows take.
        let mut prev = None;
        for at in table.starts() {
            let fits = prev.map_or(at as usize == start, |p| p < at);
            if !fits || at as usize >= table.rows.end {
                return None;
            }
            prev = Some(at);
        }
        (count > 0 || len == 0).then_some(table)
    }

    /// Where each row starts in `bytes`, in id order.
    fn starts(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.count).map_while(|i| self.start_of(i))
    }

    /// Where row `i` starts.
    fn start_of(&self, i: usize) -> Option<u32> {
        let at = self.rows.end.checked_add(i.checked_mul(4)?)?;
        let c: [u8; 4] = self.bytes.get(at..at + 4)?.try_into().ok()?;
        Some(u32::from_le_bytes(c).wrapping_add(self.rows.start as u32))
    }

    fn hashed(&self) -> Option<&Slots> {
        if let Some(slots) = self.slots.get() {
            return Some(slots);
        }
        if self.lookups.fetch_add(1, Ordering::Relaxed) < HASH_AFTER {
            return None;
        }
        Some(self.slots.get_or_init(|| self.make_slots()))
    }

    /// Make the slots now, on the calling thread, if `lookups` to come would have them
    /// made (at the [`HASH_AFTER`]th, on whichever thread asks: a build's worker running
    /// a node) and the table has as many rows. A lookup meanwhile searches the rows, or
    /// waits for the slots.
    pub fn hash_ahead(&self, lookups: usize) {
        let enough = HASH_AFTER as usize;
        if lookups >= enough && self.count >= enough {
            self.slots.get_or_init(|| self.make_slots());
        }
    }

    fn make_slots(&self) -> Slots {
        // At most three quarters full: a miss ends at an empty slot within a cache
        // line or two, and the slots are fresh memory, which a fuller table needs
        // less of.
        let size = (self.count + self.count / 3 + 1)
            .next_power_of_two()
            .max(16);
        let mask = size - 1;
        let empty = Slot {
            check: 0,
            at: EMPTY,
            lead: 0,
        };
        let mut slots = vec![empty; size];
        for at in self.starts() {
            let Some((id, payload, _)) = self.row(at) else {
                continue;
            };
            let h = id_hash(id);
            let mut i = h as usize & mask;
            while slots[i].at != EMPTY {
                i = (i + 1) & mask;
            }
            slots[i] = Slot {
                check: (h >> 32) as u32,
                at,
                lead: lead(payload),
            };
        }
        Slots { slots, mask }
    }

    /// The id and payload of the row at `at`, and where the row ends; `None` where a
    /// damaged table has no whole row.
    fn row(&self, at: u32) -> Option<(&[u8], &[u8], usize)> {
        let rows = self.bytes.get(..self.rows.end)?;
        let mut r = Reader::new(rows, at as usize);
        let id = rows.get(r.sized()?)?;
        let payload = rows.get(r.sized()?)?;
        Some((id, payload, r.offset()))
    }

    pub fn len(&self) -> usize {
        self.count
    }

    /// Every row's id and payload, in id order (of a damaged table, only the rows that
    /// are whole, apart and in order, as a save copies them).
    pub fn rows(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.sound_rows().map(|(_, id, payload, _)| (id, payload))
    }

    /// Each row as a save copies it: where it starts, its id, its payload and where it
    /// ends. Of a damaged table only the rows that are whole, start after the last one
    /// taken ends and sort after it: what a parse once checked of every row. So a save
    /// of a damaged table is a sound one, an id kept twice (the second out of order)
    /// keeps only its first row, and rows that overlap are not copied again and again.
    fn sound_rows(&self) -> impl Iterator<Item = (u32, &[u8], &[u8], usize)> + '_ {
        let mut last: Option<(&[u8], usize)> = None;
        self.starts().filter_map(move |at| {
            let (id, payload, end) = self.row(at)?;
            if last.is_some_and(|(prev, prev_end)| (at as usize) < prev_end || id <= prev) {
                return None;
            }
            last = Some((id, end));
            Some((at, id, payload, end))
        })
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The payload recorded for `id`.
    pub fn get(&self, id: &str) -> Option<&[u8]> {
        self.find(id.as_bytes(), None)
    }

    /// The payload recorded for `id` when it starts with `lead` (the fast path asks for
    /// a node's record only if it is for the node's key). Once the table has its slots,
    /// a row whose id has `id`'s hash but whose payload starts otherwise is taken for
    /// `id`'s without being read: two ids with one 64-bit hash can then make this miss
    /// a row that matches, but it never gives one that does not.
    pub fn get_leading(&self, id: &str, lead: &[u8; 8]) -> Option<&[u8]> {
        let payload = self.find(id.as_bytes(), Some(u64::from_le_bytes(*lead)))?;
        payload.starts_with(lead).then_some(payload)
    }

    fn find(&self, id: &[u8], leading: Option<u64>) -> Option<&[u8]> {
        let Some(Slots { slots, mask }) = self.hashed() else {
            let (mut lo, mut hi) = (0, self.count);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                let (found, payload, _) = self.row(self.start_of(mid)?)?;
                match found.cmp(id) {
                    std::cmp::Ordering::Less => lo = mid + 1,
                    std::cmp::Ordering::Greater => hi = mid,
                    std::cmp::Ordering::Equal => return Some(payload),
                }
            }
            return None;
        };
        let h = id_hash(id);
        let check = (h >> 32) as u32;
        let mut i = h as usize & mask;
        loop {
            let slot = slots.get(i)?;
            if slot.at == EMPTY {
                return None;
            }
            if slot.check == check {
                if leading.is_some_and(|l| l != slot.lead) {
                    return None;
                }
                if let Some((found, payload, _)) = self.row(slot.at) {
                    if found == id {
                        return Some(payload);
                    }
                }
            }
            i = (i + 1) & mask;
        }
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
        let mut out = Writer::new(out);
        let mut new = updates
            .iter()
            .map(|(id, p)| (id.as_bytes(), p.as_slice()))
            .peekable();
        // Kept rows lie back to back in `bytes`: copied a run at a time.
        let mut run: Range<usize> = 0..0;
        for (at, id, _, row_end) in self.sound_rows() {
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
                // It will start where the run so far ends.
                out.row_starts(run.len());
                run.end = row_at.end;
            }
        }
        out.copy(&self.bytes[run])?;
        for row in new {
            out.row(row)?;
        }
        out.finish()
    }
}

/// A table being encoded row by row (sorted by id, without duplicates): where each row
/// starts and their count go after the rows.
struct Writer<'w, W: std::io::Write> {
    out: &'w mut W,
    /// Where each row starts, from the first's start.
    starts: Vec<u8>,
    len: u32,
}

impl<'w, W: std::io::Write> Writer<'w, W> {
    fn new(out: &'w mut W) -> Self {
        Writer {
            out,
            starts: Vec::new(),
            len: 0,
        }
    }

    /// Encoded rows copied as they are (the caller says where each starts:
    /// [`Writer::row_starts`]).
    fn copy(&mut self, encoded: &[u8]) -> std::io::Result<()> {
        self.len = self.len.wrapping_add(encoded.len() as u32);
        self.out.write_all(encoded)
    }

    /// The next row starts `after` bytes after what is written so far.
    fn row_starts(&mut self, after: usize) {
        let at = self.len.wrapping_add(after as u32);
        self.starts.extend_from_slice(&at.to_le_bytes());
    }

    fn row(&mut self, (id, payload): (&[u8], &[u8])) -> std::io::Result<()> {
        self.row_starts(0);
        self.copy(&(id.len() as u32).to_le_bytes())?;
        self.copy(id)?;
        self.copy(&(payload.len() as u32).to_le_bytes())?;
        self.copy(payload)
    }

    fn finish(self) -> std::io::Result<()> {
        let count = (self.starts.len() / 4) as u32;
        self.out.write_all(&self.starts)?;
        self.out.write_all(&count.to_le_bytes())?;
        self.out.write_all(&self.len.to_le_bytes())
    }
}

/// Encode rows that are already sorted by id, without duplicates.
#[cfg(test)]
pub fn encode(rows: &[(&[u8], &[u8])]) -> Vec<u8> {
    let size: usize = rows.iter().map(|(id, p)| 8 + id.len() + p.len()).sum();
    let mut out = Vec::with_capacity(size + 4 * rows.len() + 8);
    let mut w = Writer::new(&mut out);
    for row in rows {
        let written = w.row(*row);
        debug_assert!(written.is_ok(), "a Vec takes every write");
    }
    let written = w.finish();
    debug_assert!(written.is_ok(), "a Vec takes every write");
    out
}

/// A table of these rows (sorted by id, without duplicates), for tests.
#[cfg(test)]
pub fn of_rows(rows: &[(&str, &str)]) -> Table {
    let rows: Vec<(&[u8], &[u8])> = rows
        .iter()
        .map(|(i, p)| (i.as_bytes(), p.as_bytes()))
        .collect();
    Table::parse(encode(&rows), 0).expect("parses")
}

#[cfg(test)]
mod tests {
    use super::of_rows as table;
    use super::*;

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
    fn every_row_is_found_before_and_after_the_slots_are_made() {
        // 2,000 ids in 4,096 slots: many share a first slot and are found further on.
        let mut rows: Vec<(String, String)> = (0..2000)
            .map(|i| (format!("n{i}"), format!("payload {i}")))
            .collect();
        rows.sort();
        let refs: Vec<(&str, &str)> = rows.iter().map(|(i, p)| (i.as_str(), p.as_str())).collect();
        let t = table(&refs);
        for round in ["by the search", "by the slots"] {
            for (id, payload) in &rows {
                assert_eq!(t.get(id), Some(payload.as_bytes()), "{id} {round}");
            }
            for absent in ["n2000", "n", "", "n0 "] {
                assert_eq!(t.get(absent), None, "{absent} {round}");
            }
        }
        let slots = t.slots.get().expect("made after {HASH_AFTER} lookups");
        let first: std::collections::HashSet<usize> = rows
            .iter()
            .map(|(id, _)| id_hash(id.as_bytes()) as usize & slots.mask)
            .collect();
        assert!(
            first.len() < rows.len(),
            "some ids were found past their first slot"
        );
    }

    #[test]
    fn slots_made_ahead_find_every_row_from_the_first_lookup_and_a_small_table_gets_none() {
        let rows: Vec<(String, String)> = {
            let mut r: Vec<_> = (0..300)
                .map(|i| (format!("n{i}"), format!("p{i}")))
                .collect();
            r.sort();
            r
        };
        let refs: Vec<(&str, &str)> = rows.iter().map(|(i, p)| (i.as_str(), p.as_str())).collect();
        let t = table(&refs);
        t.hash_ahead(HASH_AFTER as usize - 1);
        assert!(t.slots.get().is_none(), "too few lookups to come");
        t.hash_ahead(rows.len());
        assert!(t.slots.get().is_some(), "made before any lookup");
        for (id, payload) in &rows {
            assert_eq!(t.get(id), Some(payload.as_bytes()), "{id}");
        }
        assert_eq!(t.get("n300"), None);
        let small = table(&refs[..HASH_AFTER as usize - 1]);
        small.hash_ahead(rows.len());
        assert!(
            small.slots.get().is_none(),
            "searched: too few rows to hash"
        );
        assert_eq!(small.get("n0"), Some(&b"p0"[..]));
    }

    #[test]
    fn a_row_is_given_by_its_lead_only_when_its_payload_starts_with_it() {
        let t = table(&[("a", "12345678 and more"), ("b", "1234"), ("c", "")]);
        for round in ["by the search", "by the slots"] {
            assert_eq!(
                t.get_leading("a", b"12345678"),
                Some(&b"12345678 and more"[..]),
                "{round}"
            );
            assert_eq!(t.get_leading("a", b"12345679"), None, "{round}");
            // Shorter than a lead: never given, even if its bytes are a prefix.
            assert_eq!(t.get_leading("b", b"1234\0\0\0\0"), None, "{round}");
            assert_eq!(t.get_leading("c", &[0; 8]), None, "{round}");
            assert_eq!(t.get_leading("d", b"12345678"), None, "{round}");
            for _ in 0..HASH_AFTER {
                let _ = t.get("a");
            }
        }
        assert!(t.slots.get().is_some());
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
    fn a_table_whose_rows_are_damaged_hides_rows_but_never_gives_one_for_another_id() {
        // Parsing reads no row: ids out of order, repeated, or a row start that points
        // into another row are met by lookups, which compare the id they find.
        for rows in [
            vec![(&b"b"[..], &b"1"[..]), (b"a", b"2")],
            vec![(b"a", b"1"), (b"a", b"2")],
            vec![(b"a", b"1"), (b"b", b"2"), (b"c", b"3")],
        ] {
            let mut bytes = encode(&rows);
            let count = rows.len();
            let starts = bytes.len() - 8 - 4 * count;
            if count == 3 {
                // The second row's start moved to the middle of the first row.
                bytes[starts + 4] = 2;
            }
            let t = Table::parse(bytes, 0).expect("the row starts rise");
            for _ in 0..2 * HASH_AFTER {
                for (id, payload) in [("a", "1"), ("a", "2"), ("b", "1"), ("b", "2"), ("c", "3")] {
                    if let Some(got) = t.get(id) {
                        assert!(
                            rows.iter().any(|(i, p)| *i == id.as_bytes() && *p == got),
                            "{id} gave {got:?}, no row of its own ({payload})"
                        );
                    }
                }
            }
            // A save of it is a table again, of whole rows only.
            let saved = Table::parse(t.merged(&BTreeMap::new(), |_| true), 0).expect("parses");
            for (id, payload) in saved.rows() {
                assert!(
                    rows.contains(&(id, payload)),
                    "{id:?} {payload:?} in {rows:?}"
                );
            }
        }
    }

    #[test]
    fn a_save_of_a_damaged_table_keeps_its_sound_rows_only() {
        // Ids out of order: a save of an update to "a" keeps one "a", the new one, and
        // every lookup then finds it (a binary search over the old order found the
        // stale row).
        let out_of_order = encode(&[(b"c", b"3"), (b"a", b"old"), (b"d", b"4"), (b"e", b"5")]);
        let t = Table::parse(out_of_order, 0).expect("parses");
        let update: BTreeMap<String, Vec<u8>> = [("a".to_string(), b"new".to_vec())].into();
        let saved = Table::parse(t.merged(&update, |_| true), 0).expect("parses");
        let ids: Vec<&[u8]> = saved.rows().map(|(id, _)| id).collect();
        assert_eq!(ids, vec![&b"a"[..], b"c", b"d", b"e"]);
        for _ in 0..2 * HASH_AFTER {
            assert_eq!(saved.get("a"), Some(&b"new"[..]));
        }
        // Rows that overlap (each starts 9 bytes after the last and runs to the end):
        // a save copies the first, not each of them again.
        let m = 200u32;
        let len = 9 * m;
        let mut bytes = Vec::new();
        for k in 0..m {
            bytes.extend_from_slice(&1u32.to_le_bytes());
            bytes.push(k as u8 + 1);
            bytes.extend_from_slice(&(len - 9 * k - 9).to_le_bytes());
        }
        for k in 0..m {
            bytes.extend_from_slice(&(9 * k).to_le_bytes());
        }
        bytes.extend_from_slice(&m.to_le_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        let size = bytes.len();
        let t = Table::parse(bytes, 0).expect("the row starts rise");
        let saved = t.merged(&BTreeMap::new(), |_| true);
        assert!(saved.len() <= size, "{} bytes from {size}", saved.len());
        assert_eq!(Table::parse(saved, 0).expect("parses").len(), 1);
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
        // A row start out of place: the index no longer rises, or starts past the rows.
        let starts = good.len() - 8 - 8;
        let mut swapped = good.clone();
        swapped.copy_within(starts..starts + 4, starts + 4);
        assert!(Table::parse(swapped, 0).is_none(), "row starts not rising");
        let mut past = good.clone();
        past[starts + 4] = 200;
        assert!(Table::parse(past, 0).is_none(), "a row start past the rows");
        let huge = [
            [1u8; 8].as_slice(),
            &u32::MAX.to_le_bytes(),
            &8u32.to_le_bytes(),
        ]
        .concat();
        assert!(Table::parse(huge, 0).is_none(), "absurd count");
    }
}
