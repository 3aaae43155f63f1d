//! Packed entries: node results appended to a few segment files (`packs/*.pack`) instead
//! of an index file of their own each.
//!
//! Creating inodes is most of what storing a small result costs, and after a large cache
//! was deleted ext4 makes each new one dear: one file per result spread over thousands
//! of directories made a cold build several times slower right after `pflow cache
//! clear`. So each process that stores anything appends to one segment of its own,
//! created on its first store, and a lookup reads an in-memory index of every segment,
//! built on the first lookup from the record headers alone.
//!
//! A segment is an 8-byte file header, then records, each one `write` call:
//!
//! | bytes | field |
//! |---|---|
//! | 4 | magic `PFK1` |
//! | 1 | kind: 1 an entry, 2 a use (a hit, for `gc`'s recency) |
//! | 3 | zero |
//! | 4 | payload length (little endian) |
//! | 8 | time, unix ms |
//! | 32 | the node key |
//! | 32 | BLAKE3 of the payload |
//! | 8 | the first bytes of BLAKE3 of the 84 bytes above |
//! | n | payload |
//!
//! The header's own check is verified when the index is built, so a damaged header is
//! skipped (scanning resumes at the next magic) and never misread as another key; the
//! payload's is verified on every read, so a damaged or torn record is a miss, never a
//! wrong result. A record cut short at the end of a segment is a record still being
//! written (another build's), read again on a later refresh, or one a crash tore.
//!
//! Concurrency: only the process that created a segment writes to it, and it holds a
//! shared `flock` on it while it may (taken before the segment gets its name), so a
//! finished segment can be told from a live one. Segments are never truncated or
//! rewritten: `gc` and `verify --fix` write the records they keep into a new segment and
//! remove the old ones, under the cache's exclusive lock. Two builds storing the same
//! key leave two records; keys are content-addressed, so either is right, and the newer
//! wins.
//!
//! A finished segment of at least [`INDEXED_FROM`] bytes gets an index
//! (`state/<segment>.index`: how far it covers, then each entry record's key, place and
//! time, then a check), so later processes read that instead of every record
//! header: the headers of 40,000 records, each with its check, were most of what a
//! build's first lookup cost. Its writer writes it when it lets the segment go (the
//! process's [`Packs`] is dropped); a segment a writer left without one (a crash, a
//! kill) gets it from the first process that reads all of it. An index is only a map:
//! every record it points to is read and checked as always, one that does not read back
//! is a miss, and a damaged or foreign index is ignored (the segment is scanned). Its
//! entries are sorted by key, so the first 64 lookups of a process
//! search each index where it lies; only a build that looks up more puts them all in
//! its key map. An edit of a few nodes, or a small workflow in a cache shared with big
//! ones, then does not index every key of every segment for a few lookups. That map is
//! kept on disk ([`super::index_map`]): a later build reads it and maps only the
//! indexes it does not name, instead of every entry of every earlier build again.
//!
//! Each build that stores or uses anything adds a segment, so a build whose first lookup
//! finds [`MERGE_AT`] finished segments of about the same size (`tier`; 32 of the big
//! ones, over 1 MiB) merges those (the ones it can lock exclusively) into one: the
//! newest entry and newest use of each key, the rest dropped. Merging by size, as
//! log-structured stores compact, keeps each record from being rewritten at every
//! merge: the small segments of many small builds merge among themselves, and the big
//! segment of a big build only once many big ones exist (merging everything at 32
//! segments rewrote a 10,000-entry segment every 32 small builds, about 60 ms each
//! time). A segment written whole (a merge, `gc`, `verify --fix`) gets its index at
//! once. A build reading a merged segment at the same time keeps its open file; one
//! that has not opened it yet finds the merged segment on its next refresh.

use super::index_map::Numbered;
use super::key_slots::{KeySlots, MAX_NUMBER};
use super::layout::PACKS_DIR;
use crate::key::{Key, KeyMap};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How a segment's name ends.
pub const EXTENSION: &str = "pack";
/// The first bytes of every segment (the format's version is in it).
pub const FILE_HEADER: &[u8; 8] = b"PFPACK1\n";
/// The first bytes of every record.
pub const MAGIC: &[u8; 4] = b"PFK1";
/// Bytes before a record's payload.
pub const HEADER_LEN: usize = 92;
/// No record is bigger (a header that says more is damaged).
pub const MAX_PAYLOAD: usize = 256 << 20;
/// A miss looks for records other builds appended since, at most this often.
const REFRESH_EVERY: Duration = Duration::from_millis(100);
/// This many finished segments of one small `tier` are merged at a build's first
/// lookup.
pub const MERGE_AT: usize = 8;
/// This many of one big tier (from `BIG_TIER` on): their lookups cost by the entries
/// they hold, which a merge rarely lessens (a big build's keys are mostly new), while
/// the merge itself rewrites them all. So a full big tier is merged only when at least
/// half of its bytes are records the merge drops ([`State::worth_merging`]): use
/// records, of which only each key's newest is kept (a fully cached build of 100,000
/// nodes leaves 9 MB of them). Segments of entries are left to `gc`: every 32 edits at
/// the start of the 10,000-node chain, merging their 32 segments rewrote 150 MB, a
/// 2.7 s build instead of 0.14 s, and dropped nothing.
const MERGE_AT_BIG: usize = 32;
/// A big tier is merged at this many whatever it holds: each segment is a file a build
/// opens and an index it reads, and nothing runs `gc` for the user.
const MERGE_AT_BIG_ANYWAY: usize = 4 * MERGE_AT_BIG;
const BIG_TIER: u32 = 2;
/// The size below which segments are all of the first tier.
const TIER_BASE: u64 = 256 * 1024;

/// A segment's size tier: 0 below `TIER_BASE`, then one more for each fourfold size.
fn tier(len: u64) -> u32 {
    (len / TIER_BASE).checked_ilog(4).map_or(0, |t| t + 1)
}
/// Is a tier of `count` finished segments due for a merge? `worth`: would it drop at
/// least half of their bytes ([`State::worth_merging`]), asked only of a big tier.
fn due(tier: u32, count: usize, worth: impl FnOnce() -> bool) -> bool {
    match tier < BIG_TIER {
        true => count >= MERGE_AT,
        false => count >= MERGE_AT_BIG_ANYWAY || (count >= MERGE_AT_BIG && worth()),
    }
}

/// Bytes read at a time when scanning a segment.
const CHUNK: usize = 1 << 20;
/// Lookups that search the segment indexes where they lie before they go into the key
/// map: an edit of a few nodes looks up a few dozen keys, a build of many looks up one
/// or more per node, and each search costs a binary search per index.
const SEARCHED_LOOKUPS: u32 = 64;
/// A finished segment this big or bigger gets an index (a small one scans faster than
/// its index is written).
pub const INDEXED_FROM: u64 = 64 * 1024;
/// The first bytes of a segment index.
const INDEX_HEADER: &[u8; 8] = b"PFIDX3\n\0";
/// Bytes of an index entry: key, offset, payload length, time.
const INDEX_ENTRY: usize = 32 + 8 + 4 + 8;
/// Where an index's entries start: after its header, how far it covers and their count.
const INDEX_LIST_AT: usize = 8 + 8 + 4;
/// Bytes of an index's trailing check (see [`super::checksum`]: an index is only ever
/// compared with its own check, and BLAKE3 of a 10,000-entry index was half of an edit
/// build's first lookup).
const INDEX_SUM: usize = super::checksum::LEN;

/// An index entry: where an entry record of a segment is.
type Indexed = (Key, u64, u32, u64);

/// A segment's index: how far it covers, and its entry records.
fn encode_index(covered: u64, entries: &[Indexed]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + entries.len() * INDEX_ENTRY + INDEX_SUM);
    out.extend_from_slice(INDEX_HEADER);
    out.extend_from_slice(&covered.to_le_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    // Sorted by key (then place), so that a lookup can search the index where it lies.
    let mut sorted: Vec<&Indexed> = entries.iter().collect();
    sorted.sort_unstable_by(|a, b| key_order(&a.0, &b.0).then(a.1.cmp(&b.1)));
    for (key, offset, len, time) in sorted {
        out.extend_from_slice(&key.0);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&time.to_le_bytes());
    }
    let sum = super::checksum::of(&out);
    out.extend_from_slice(&sum);
    out
}

/// How far an index covers, if it is the one `numbered` names (its trailing check and
/// entry count) and whole for a segment of `size` bytes. Its entries are not checked,
/// nor their order (a search where it lies relies on it): the map that named it was
/// made from it after they were ([`super::index_map`]), and a lookup reads each record
/// it points to and checks it, so damage since can only hide entries.
fn numbered_index(bytes: &[u8], size: u64, numbered: &Numbered) -> Option<u64> {
    let (body, check) = bytes.split_at(bytes.len().checked_sub(INDEX_SUM)?);
    if check != numbered.check {
        return None;
    }
    let (covered, list) = index_body(body, size)?;
    (list.len() / INDEX_ENTRY == numbered.count as usize).then_some(covered)
}

/// An index's text (its check taken off), for a segment of `size` bytes: how far it
/// covers and its list of entries, if its header is an index's, it covers no more than
/// the segment has, and its list is as long as it says.
fn index_body(text: &[u8], size: u64) -> Option<(u64, &[u8])> {
    if text.get(..8)? != INDEX_HEADER {
        return None;
    }
    let covered = u64::from_le_bytes(text.get(8..16)?.try_into().ok()?);
    let count = u32::from_le_bytes(text.get(16..20)?.try_into().ok()?) as usize;
    let list = text.get(INDEX_LIST_AT..)?;
    (covered <= size && list.len() == count.checked_mul(INDEX_ENTRY)?).then_some((covered, list))
}

/// Does an index read as [`decode_index`] would have it (its check, its header, its
/// order)? For one taken on a kept map's word that is then wanted whole.
fn sound_index(u: &SegmentIndex) -> bool {
    decode_index(&u.bytes, u.covered).is_some()
}

/// An index read back, for a segment of `size` bytes: how far it covers and its
/// entries, or `None` unless it is whole, its sum holds, and it covers no more than the
/// segment has.
fn decode_index(bytes: &[u8], size: u64) -> Option<(u64, IndexEntries<'_>)> {
    let (covered, list) = index_body(super::checksum::verified(bytes)?, size)?;
    let entries = IndexEntries { list, covered };
    // All of it holds, in order, or none of it is used.
    let mut last: Option<(Key, u64)> = None;
    let whole = entries.iter().all(|e| {
        let Some((key, offset, _, _)) = e else {
            return false;
        };
        let ordered = last.is_none_or(|(k, o)| key_order(&k, &key).then(o.cmp(&offset)).is_lt());
        last = Some((key, offset));
        ordered
    });
    whole.then_some((covered, entries))
}

/// The entries of an index whose sum held, read as they are walked (no list of them is
/// built). A mapped index's entries are read again whenever a lookup's key bytes match
/// one, for as long as the process runs: an index file is only ever replaced whole (by
/// rename), never written over, and a record it points to is checked as it is read.
struct IndexEntries<'a> {
    list: &'a [u8],
    covered: u64,
}

impl IndexEntries<'_> {
    /// Each entry, `None` for one that points past what the index covers.
    fn iter(&self) -> impl Iterator<Item = Option<Indexed>> + '_ {
        self.list
            .chunks_exact(INDEX_ENTRY)
            .map(|e| index_entry(e, self.covered))
    }
}

/// Keys in byte order, most told apart by their first 8 bytes (a number compare, not a
/// 32-byte one: sorting and checking an index of 10,000 keys took 30M instructions).
fn key_order(a: &Key, b: &Key) -> std::cmp::Ordering {
    let head = |k: &Key| k.0.first_chunk::<8>().map(|h| u64::from_be_bytes(*h));
    head(a).cmp(&head(b)).then_with(|| a.0.cmp(&b.0))
}

/// An index entry's fields, `None` if it points past `covered`.
fn index_entry(e: &[u8], covered: u64) -> Option<Indexed> {
    let key = Key(e.get(..32)?.try_into().ok()?);
    let offset = u64::from_le_bytes(e.get(32..40)?.try_into().ok()?);
    let len = u32::from_le_bytes(e.get(40..44)?.try_into().ok()?);
    let time = u64::from_le_bytes(e.get(44..52)?.try_into().ok()?);
    let end = offset.checked_add(HEADER_LEN as u64 + u64::from(len))?;
    (end <= covered).then_some((key, offset, len, time))
}

/// A segment's index, read: a build that looks up a few keys searches it where it lies
/// (it is sorted) instead of indexing every entry of every segment; past
/// [`SEARCHED_LOOKUPS`] lookups, its entries are numbered into the map ([`Mapped`]).
#[derive(Clone)]
struct SegmentIndex {
    seg: u32,
    /// Its segment's file name (how a kept map names it, [`super::index_map`]).
    name: String,
    /// The whole index file, as `decode_index` accepted it (shared with [`Packs::warm`]).
    bytes: Arc<crate::fsutil::Bytes>,
    covered: u64,
}

impl SegmentIndex {
    fn entries(&self) -> IndexEntries<'_> {
        let end = self.bytes.len().saturating_sub(INDEX_SUM);
        IndexEntries {
            list: self.bytes.get(INDEX_LIST_AT..end).unwrap_or_default(),
            covered: self.covered,
        }
    }

    /// How many entries it holds.
    fn count(&self) -> usize {
        self.entries().list.len() / INDEX_ENTRY
    }

    /// How a kept map names it.
    fn numbered(&self) -> Option<Numbered> {
        let at = self.bytes.len().checked_sub(INDEX_SUM)?;
        Some(Numbered {
            segment: self.name.clone(),
            count: u32::try_from(self.count()).ok()?,
            check: self.bytes.get(at..)?.try_into().ok()?,
        })
    }

    /// The newest entry for `key` in this index.
    fn find(&self, key: &Key) -> Option<Loc> {
        let list = self.entries().list;
        let count = list.len() / INDEX_ENTRY;
        let at = |i: usize| list.get(i * INDEX_ENTRY..(i + 1) * INDEX_ENTRY);
        let first = partition_point(count, |i| {
            at(i)
                .and_then(|e| e.first_chunk::<32>())
                .is_some_and(|k| key_order(&Key(*k), key).is_lt())
        });
        (first..count)
            .map_while(|i| at(i).and_then(|e| index_entry(e, self.covered)))
            .take_while(|(k, ..)| k == key)
            .map(|(_, offset, len, time)| Loc {
                seg: self.seg,
                len,
                offset,
                time,
            })
            .max_by_key(Loc::rank)
    }
}

/// The first of `0..n` for which `before` is false (`before` holds for a prefix).
fn partition_point(n: usize, before: impl Fn(usize) -> bool) -> usize {
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if before(mid) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The entries of the segment indexes a build put in its map ([`KeySlots`]): each
/// index numbers its entries from where the one before ended, and an entry is read
/// from its index (a mapped file) when a slot's 4 key bytes match.
#[derive(Default, Clone)]
struct Mapped {
    slots: KeySlots,
    /// The indexes mapped, each with the number of its first entry.
    indexes: Vec<(u32, SegmentIndex)>,
    /// The number the next index's first entry gets.
    next: u32,
}

impl Mapped {
    /// Is the index of segment `seg` mapped?
    fn holds(&self, seg: u32) -> bool {
        self.indexes.iter().any(|(_, u)| u.seg == seg)
    }

    fn is_empty(&self) -> bool {
        self.indexes.is_empty()
    }

    /// The map kept on disk, of these indexes (the ones it names, in its order).
    fn restored(slots: KeySlots, indexes: Vec<SegmentIndex>) -> Option<Mapped> {
        let mut mapped = Mapped {
            slots,
            ..Mapped::default()
        };
        for u in indexes {
            let count = u32::try_from(u.count()).ok()?;
            let next = mapped
                .next
                .checked_add(count)
                .filter(|n| *n <= MAX_NUMBER)?;
            mapped.indexes.push((mapped.next, u));
            mapped.next = next;
        }
        Some(mapped)
    }

    /// How the kept map names its indexes, in its order.
    fn numbered(&self) -> Option<Vec<Numbered>> {
        self.indexes.iter().map(|(_, u)| u.numbered()).collect()
    }

    /// Put the entries of `indexes` in the map, the newest of each key kept. Indexes
    /// past the numbers a slot holds (4 billion entries) are given back, to be
    /// searched where they lie.
    fn add(&mut self, indexes: Vec<SegmentIndex>) -> Vec<SegmentIndex> {
        let mut left = Vec::new();
        let from = self.indexes.len();
        for u in indexes {
            let next = u32::try_from(u.count())
                .ok()
                .and_then(|c| self.next.checked_add(c))
                .filter(|n| *n <= MAX_NUMBER);
            match next {
                Some(next) => {
                    self.indexes.push((self.next, u));
                    self.next = next;
                }
                None => left.push(u),
            }
        }
        let Some(added) = self.indexes.get(from..) else {
            return left;
        };
        let more = added.iter().map(|(_, u)| u.count()).sum();
        let indexes = &self.indexes;
        let key_of = |n| entry(indexes, n).map(|(k, _)| k);
        let slots = &mut self.slots;
        slots.reserve(more, key_of);
        // Part by part of the slots: each index is sorted by key, and slots follow the
        // keys' order, so each index puts its entries of a part in one run. One index
        // after another, an index of 10,000 entries in a map of 200,000 wrote each to a
        // cache line of its own. The last part takes whatever is left of each index.
        let parts = slots.parts();
        let mut next: Vec<usize> = vec![0; added.len()];
        for part in 0..parts {
            for ((first, u), at) in added.iter().zip(next.iter_mut()) {
                let list = u.entries().list;
                while let Some(e) = list.get(*at * INDEX_ENTRY..(*at + 1) * INDEX_ENTRY) {
                    let entry_at = index_entry(e, u.covered);
                    if let Some((key, ..)) = &entry_at {
                        if slots.part_of(key) > part {
                            break;
                        }
                    }
                    let i = *at;
                    *at += 1;
                    let Some((key, offset, len, time)) = entry_at else {
                        continue;
                    };
                    let loc = Loc {
                        seg: u.seg,
                        len,
                        offset,
                        time,
                    };
                    // The held entry stays if it is newer (see `Loc::rank`).
                    let keep =
                        |held| entry(indexes, held).is_some_and(|(_, h)| h.rank() > loc.rank());
                    slots.insert(&key, *first + i as u32, key_of, keep);
                }
            }
        }
        left
    }

    /// The newest entry for `key` in the mapped indexes.
    fn find(&self, key: &Key) -> Option<Loc> {
        let indexes = &self.indexes;
        let n = self
            .slots
            .find(key, |n| entry(indexes, n).map(|(k, _)| k))?;
        entry(indexes, n).map(|(_, loc)| loc)
    }
}

/// Entry number `n` of the numbered `indexes`: its key and where its record is.
fn entry(indexes: &[(u32, SegmentIndex)], n: u32) -> Option<(Key, Loc)> {
    let at = indexes.partition_point(|(first, _)| *first <= n);
    let (first, u) = indexes.get(at.checked_sub(1)?)?;
    let i = n.checked_sub(*first)? as usize;
    let e = u
        .entries()
        .list
        .get(i * INDEX_ENTRY..(i + 1) * INDEX_ENTRY)?;
    let (key, offset, len, time) = index_entry(e, u.covered)?;
    let loc = Loc {
        seg: u.seg,
        len,
        offset,
        time,
    };
    Some((key, loc))
}

/// What a record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A node result: the payload is its JSON (see `crate::cache`).
    Entry,
    /// The key was used (a lookup hit) at `time`; no payload.
    Use,
}

impl Kind {
    fn byte(self) -> u8 {
        match self {
            Kind::Entry => 1,
            Kind::Use => 2,
        }
    }

    fn of(b: u8) -> Option<Kind> {
        match b {
            1 => Some(Kind::Entry),
            2 => Some(Kind::Use),
            _ => None,
        }
    }
}

/// A record's header, its own check verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub kind: Kind,
    pub len: u32,
    pub time: u64,
    pub key: Key,
    payload_check: [u8; 32],
}

impl Header {
    /// Bytes of the whole record.
    pub fn record_len(&self) -> u64 {
        HEADER_LEN as u64 + self.len as u64
    }

    /// Does `payload` match the check in this header?
    pub fn payload_intact(&self, payload: &[u8]) -> bool {
        payload.len() == self.len as usize
            && *blake3::hash(payload).as_bytes() == self.payload_check
    }
}

/// One record's bytes, header and payload.
pub fn encode(kind: Kind, time: u64, key: &Key, payload: &[u8]) -> io::Result<Vec<u8>> {
    if payload.len() > MAX_PAYLOAD {
        return Err(io::Error::other(format!(
            "a cache entry of {} bytes is too big to store",
            payload.len()
        )));
    }
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[kind.byte(), 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&time.to_le_bytes());
    out.extend_from_slice(&key.0);
    out.extend_from_slice(blake3::hash(payload).as_bytes());
    let check = blake3::hash(&out);
    out.extend_from_slice(&check.as_bytes()[..8]);
    out.extend_from_slice(payload);
    Ok(out)
}

/// The header at the start of `bytes`, if it is whole and intact.
pub fn parse_header(bytes: &[u8]) -> Option<Header> {
    let h = bytes.get(..HEADER_LEN)?;
    if &h[..4] != MAGIC || h[5..8] != [0, 0, 0] {
        return None;
    }
    if blake3::hash(&h[..84]).as_bytes()[..8] != h[84..92] {
        return None;
    }
    let kind = Kind::of(h[4])?;
    let len = u32::from_le_bytes(h[8..12].try_into().ok()?);
    if len as usize > MAX_PAYLOAD || (kind == Kind::Use && len != 0) {
        return None;
    }
    Some(Header {
        kind,
        len,
        time: u64::from_le_bytes(h[12..20].try_into().ok()?),
        key: Key(h[20..52].try_into().ok()?),
        payload_check: h[52..84].try_into().ok()?,
    })
}

/// What scanning a segment finds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// An intact header at `offset` (the payload is checked when it is read).
    Record { offset: u64, header: Header },
    /// Bytes at `offset` that are no record header; scanning resumed at the next magic
    /// (`skipped` bytes later), or stopped.
    Damage { offset: u64, skipped: u64 },
}

/// How far a scan got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// Every byte up to this offset was read; what follows (if anything) is a record
    /// not yet whole: read it again later.
    At(u64),
    /// Damage with no record after it: nothing more of this segment can be read.
    Dead,
}

/// A read window over a file, refilled as the scan moves on.
struct Window<'f> {
    file: &'f File,
    size: u64,
    start: u64,
    buf: Vec<u8>,
}

impl Window<'_> {
    /// Bytes `[off, off + len)`, reading them in when they are not at hand.
    fn get(&mut self, off: u64, len: usize) -> io::Result<&[u8]> {
        let have = off >= self.start && off + len as u64 <= self.start + self.buf.len() as u64;
        if !have {
            let want = len.max(CHUNK).min((self.size - off) as usize).max(len);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, off)?;
            self.start = off;
        }
        let at = (off - self.start) as usize;
        Ok(&self.buf[at..at + len])
    }

    /// The offset of the next magic at or after `from`, if any.
    fn find_magic(&mut self, mut from: u64) -> io::Result<Option<u64>> {
        let finder = memchr::memmem::Finder::new(MAGIC);
        while from + MAGIC.len() as u64 <= self.size {
            let len = ((self.size - from) as usize).min(CHUNK);
            let bytes = self.get(from, len)?;
            if let Some(i) = finder.find(bytes) {
                return Ok(Some(from + i as u64));
            }
            // A magic may straddle the chunk's end.
            from += (len - (MAGIC.len() - 1)).max(1) as u64;
        }
        Ok(None)
    }
}

/// Scan the records of `file` from `from` (a record boundary, or the file header at 0),
/// telling each to `on`. A segment whose file header is wrong is [`ScanEnd::Dead`].
pub fn scan(file: &File, from: u64, on: &mut dyn FnMut(Found)) -> io::Result<ScanEnd> {
    let size = file.metadata()?.len();
    let mut w = Window {
        file,
        size,
        start: 0,
        buf: Vec::new(),
    };
    let mut off = from;
    if off == 0 {
        if size < FILE_HEADER.len() as u64 {
            return Ok(ScanEnd::At(0));
        }
        if w.get(0, FILE_HEADER.len())? != FILE_HEADER {
            return Ok(ScanEnd::Dead);
        }
        off = FILE_HEADER.len() as u64;
    }
    loop {
        if off + HEADER_LEN as u64 > size {
            return Ok(ScanEnd::At(off));
        }
        match parse_header(w.get(off, HEADER_LEN)?) {
            Some(header) => {
                if off + header.record_len() > size {
                    return Ok(ScanEnd::At(off));
                }
                on(Found::Record {
                    offset: off,
                    header,
                });
                off += header.record_len();
            }
            None => match w.find_magic(off + 1)? {
                Some(next) => {
                    on(Found::Damage {
                        offset: off,
                        skipped: next - off,
                    });
                    off = next;
                }
                None => {
                    on(Found::Damage {
                        offset: off,
                        skipped: size - off,
                    });
                    return Ok(ScanEnd::Dead);
                }
            },
        }
    }
}

/// Read and verify one record's payload (its header read again must be `header`).
pub fn read_payload(file: &File, offset: u64, header: &Header) -> Option<Vec<u8>> {
    read_record(file, offset, header.len)
        .filter(|(h, _)| h == header)
        .map(|(_, payload)| payload)
}

/// The record of `len` payload bytes at `offset`, its header and payload verified.
fn read_record(file: &File, offset: u64, len: u32) -> Option<(Header, Vec<u8>)> {
    let mut bytes = vec![0u8; HEADER_LEN + len as usize];
    file.read_exact_at(&mut bytes, offset).ok()?;
    let header = parse_header(&bytes)?;
    let payload = bytes.split_off(HEADER_LEN);
    header.payload_intact(&payload).then_some((header, payload))
}

/// The segment files of a cache directory (names ending in `.pack`), sorted.
pub fn segment_paths(root: &Path) -> io::Result<Vec<PathBuf>> {
    let dir = root.join(PACKS_DIR);
    let rd = match std::fs::read_dir(&dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out: Vec<PathBuf> = rd
        .flatten()
        .map(|e| e.path())
        .filter(|p| is_segment_name(p))
        .collect();
    // By their bytes: one directory's names, so the order `Path`'s own compare gives,
    // without walking components (a refresh in a build's misses sorts them again).
    out.sort_unstable_by(|a, b| a.as_os_str().cmp(b.as_os_str()));
    Ok(out)
}

/// A segment being created (see [`create_segment`]), or left by a process killed then.
pub fn is_hidden_name(p: &Path) -> bool {
    p.file_name()
        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

pub fn is_segment_name(p: &Path) -> bool {
    p.extension().is_some_and(|e| e == EXTENSION)
        && p.file_name()
            .is_some_and(|n| !n.to_string_lossy().starts_with('.'))
}

/// A fresh segment name in `dir`: creation time, process, and a random part.
fn segment_name(dir: &Path) -> PathBuf {
    dir.join(format!(
        "{:013}-{}-{:08x}.{EXTENSION}",
        crate::cache::now_ms(),
        std::process::id(),
        fastrand::u32(..)
    ))
}

/// Create a new, empty segment (its file header written) under a name no other has,
/// holding a shared `flock` on it: it is being written.
pub fn create_segment(root: &Path) -> io::Result<(PathBuf, File)> {
    use std::io::Write;
    let dir = root.join(PACKS_DIR);
    std::fs::create_dir_all(&dir)?;
    loop {
        let path = segment_name(&dir);
        let Some(name) = path.file_name() else {
            return Err(io::Error::other("no segment name"));
        };
        // Locked before it is a segment by name: a merge must never take it for a
        // finished one.
        let hidden = dir.join(format!(".{}", name.to_string_lossy()));
        let mut file = match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&hidden)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        };
        file.lock_shared()?;
        file.write_all(FILE_HEADER)?;
        if path.exists() {
            let _ = std::fs::remove_file(&hidden);
            continue;
        }
        std::fs::rename(&hidden, &path)?;
        return Ok((path, file));
    }
}

/// Write a whole segment at once (the file header, then `records`, already encoded):
/// to a temp file in `tmp/`, synced, then renamed into `packs/`, so a crash leaves
/// either all of it or none. Maintenance uses it to keep what it keeps.
pub fn write_segment(root: &Path, records: &[u8]) -> io::Result<PathBuf> {
    use std::io::Write;
    let tmp_dir = root.join(crate::cache::layout::TMP_DIR);
    std::fs::create_dir_all(&tmp_dir)?;
    let dir = root.join(PACKS_DIR);
    std::fs::create_dir_all(&dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("segment-")
        .tempfile_in(&tmp_dir)?;
    tmp.write_all(FILE_HEADER)?;
    tmp.write_all(records)?;
    tmp.as_file().sync_data()?;
    loop {
        let path = segment_name(&dir);
        if path.exists() {
            continue;
        }
        tmp.persist_noclobber(&path).map_err(|e| e.error)?;
        write_index_of(root, &path, records);
        return Ok(path);
    }
}

/// The index of a segment just written whole from `records` (merge, `gc`, `verify
/// --fix`), if it is big enough: the next build reads it instead of scanning what may
/// be the biggest segment of all. Best effort, as every index.
fn write_index_of(root: &Path, segment: &Path, records: &[u8]) {
    let end = (FILE_HEADER.len() + records.len()) as u64;
    if end < INDEXED_FROM {
        return;
    }
    let mut entries: Vec<Indexed> = Vec::new();
    let mut at = 0usize;
    while let Some(h) = records.get(at..).and_then(parse_header) {
        if h.kind == Kind::Entry {
            entries.push((h.key, (FILE_HEADER.len() + at) as u64, h.len, h.time));
        }
        at += HEADER_LEN + h.len as usize;
    }
    if at == records.len() {
        save_index(root, segment, end, &entries);
    }
}

/// Write the index of `segment`, whole up to `end`, if it is big enough for one (best
/// effort: without it the next process scans). Not synced: its sum refuses a torn one.
fn save_index(root: &Path, segment: &Path, end: u64, entries: &[Indexed]) {
    if end < INDEXED_FROM {
        return;
    }
    let path = super::layout::pack_index_path(root, segment);
    let _ = crate::fsutil::write_atomic_with(&path, &encode_index(end, entries), false);
}

/// The headers of every intact record in the cache's segments, in file order.
pub fn headers(root: &Path) -> Vec<Header> {
    let mut out = Vec::new();
    for path in segment_paths(root).unwrap_or_default() {
        if let Ok(file) = File::open(&path) {
            let _ = scan(&file, 0, &mut |f| {
                if let Found::Record { header, .. } = f {
                    out.push(header);
                }
            });
        }
    }
    out
}

/// Put `loc` in `map` unless the key's entry there is newer. One probe of the map per
/// record (a scan or `map_all` indexes every one).
fn keep_newer(map: &mut KeyMap<Loc>, key: Key, loc: Loc) {
    match map.entry(key) {
        std::collections::hash_map::Entry::Occupied(mut old) => {
            if old.get().rank() <= loc.rank() {
                old.insert(loc);
            }
        }
        std::collections::hash_map::Entry::Vacant(slot) => {
            slot.insert(loc);
        }
    }
}

/// Where a record is.
#[derive(Debug, Clone, Copy)]
struct Loc {
    seg: u32,
    /// Payload bytes.
    len: u32,
    offset: u64,
    time: u64,
}

impl Loc {
    /// Of two entries for one key, the newer wins; at the same time, the later record
    /// (by segment, then place): any order of indexing then gives the same one.
    fn rank(&self) -> (u64, u32, u64) {
        (self.time, self.seg, self.offset)
    }
}

struct Segment {
    path: PathBuf,
    file: Arc<File>,
    /// Scanned up to here (a record boundary); None: damaged beyond reading.
    scanned_to: Option<u64>,
}

/// This process's own segment.
struct Own {
    seg: u32,
    len: u64,
    /// Its entry records, for its index.
    entries: Vec<Indexed>,
}

/// The map kept on disk and the indexes it names, as this process numbers their
/// segments, in its order.
struct KeptMap {
    map: super::index_map::Kept,
    segs: Vec<u32>,
}

#[derive(Default)]
struct State {
    /// Were the segments on disk scanned (at the first lookup)?
    loaded: bool,
    last_refresh: Option<Instant>,
    segments: Vec<Segment>,
    /// Entries of the segments scanned, and of this process's own.
    index: KeyMap<Loc>,
    /// Entries of the segment indexes, in maps made one after another: the map kept
    /// on disk ([`super::index_map`]), [`Packs::warm`]'s of the indexes it does not
    /// name, one of later segments.
    mapped: Vec<Arc<Mapped>>,
    /// Segment indexes read but not in a map yet.
    unmapped: Vec<SegmentIndex>,
    /// The map kept on disk, while not read yet: every index it names was found as
    /// named (and is in `unmapped` meanwhile, searched where it lies).
    kept: Option<KeptMap>,
    /// Lookups so far (each searched `unmapped` while it held any).
    searched: u32,
    /// [`Packs::warm`] is putting these segments' indexes in a map of its own: lookups
    /// search them where they lie meanwhile rather than doing the same.
    warming: bool,
    own: Option<Own>,
    /// This process merged segments: its maps name some that are gone.
    merged: bool,
    /// Writing failed once: this process stores nothing more.
    broken: bool,
}

impl State {
    /// Index the record `header` at `offset` of segment `seg`, if it is an entry at
    /// least as new as the key's indexed one.
    fn insert(&mut self, seg: u32, offset: u64, header: &Header) {
        if header.kind == Kind::Entry {
            self.insert_entry(seg, header.key, offset, header.len, header.time);
        }
    }

    fn insert_entry(&mut self, seg: u32, key: Key, offset: u64, len: u32, time: u64) {
        let loc = Loc {
            seg,
            len,
            offset,
            time,
        };
        keep_newer(&mut self.index, key, loc);
    }

    /// The newest entry for `key` that this process knows of.
    fn find(&mut self, key: &Key, root: &Path) -> Option<Loc> {
        if self.searched > SEARCHED_LOOKUPS && !self.unmapped.is_empty() && !self.warming {
            self.map_all(root);
        }
        let scanned = self.index.get(key).copied();
        self.unmapped
            .iter()
            .filter_map(|u| u.find(key))
            .chain(scanned)
            .chain(self.mapped.iter().filter_map(|m| m.find(key)))
            .max_by_key(Loc::rank)
    }

    /// Keep the map found on disk for when a map is wanted, if every index it names was
    /// found as named; else check the ones found as any other index (a segment whose
    /// index fails is scanned, as this refresh goes on to do).
    fn note_kept(&mut self, map: super::index_map::Kept, named: Vec<Option<u32>>) {
        if named.iter().all(Option::is_some) {
            let segs = named.into_iter().flatten().collect();
            self.kept = Some(KeptMap { map, segs });
            return;
        }
        // The refresh under way scans what fails.
        let _ = self.check_named(named.into_iter().flatten(), sound_index);
    }

    /// Check the indexes of `segs` (in `unmapped`, taken on a kept map's word) as any
    /// other: one that fails leaves `unmapped`, and its segment is to be scanned from
    /// the start (by the refresh under way, or one the caller makes: until then its
    /// entries are not seen, and an older entry of the same key elsewhere would be).
    /// Did one fail? `sound`: does an index check ([`sound_index`], or what a caller found
    /// of it already).
    fn check_named(
        &mut self,
        segs: impl IntoIterator<Item = u32>,
        sound: impl Fn(&SegmentIndex) -> bool,
    ) -> bool {
        let mut failed = false;
        for seg in segs {
            let Some(at) = self.unmapped.iter().position(|u| u.seg == seg) else {
                continue;
            };
            if !self.unmapped.get(at).is_some_and(&sound) {
                self.unmapped.remove(at);
                if let Some(s) = self.segments.get_mut(seg as usize) {
                    s.scanned_to = Some(0);
                }
                failed = true;
            }
        }
        failed
    }

    /// The indexes `kept` names, from `unmapped`, in its order.
    fn named(&self, kept: &KeptMap) -> Option<Vec<SegmentIndex>> {
        let find = |seg: &u32| self.unmapped.iter().find(|u| u.seg == *seg).cloned();
        kept.segs.iter().map(find).collect()
    }

    /// The kept map was wanted and does not read (see [`State::check_named`]): it is
    /// removed, and the next build that maps keeps another.
    fn refuse_kept(&mut self, kept: KeptMap, root: &Path, sound: impl Fn(&SegmentIndex) -> bool) {
        let _ = std::fs::remove_file(super::layout::pack_map_path(root));
        if self.check_named(kept.segs, sound) {
            self.refresh(root);
        }
    }

    /// Put the kept map to use, if one waits.
    fn use_kept(&mut self, root: &Path) {
        let Some(kept) = self.kept.take() else {
            return;
        };
        let restored = self
            .named(&kept)
            .and_then(|named| Mapped::restored(kept.map.slots()?, named));
        match restored {
            Some(mapped) => self.install(Arc::new(mapped)),
            None => self.refuse_kept(kept, root, sound_index),
        }
    }

    /// Put every unmapped index's entries in a map (those the kept map names by
    /// reading it).
    fn map_all(&mut self, root: &Path) {
        self.use_kept(root);
        let mut mapped = Mapped::default();
        self.unmapped = mapped.add(std::mem::take(&mut self.unmapped));
        if !mapped.is_empty() {
            self.mapped.push(Arc::new(mapped));
        }
    }

    /// Take `mapped` as the map of the indexes it holds.
    fn install(&mut self, mapped: Arc<Mapped>) {
        self.unmapped.retain(|u| !mapped.holds(u.seg));
        if !mapped.is_empty() {
            self.mapped.push(mapped);
        }
    }

    /// Every index read, mapped or not.
    fn indexes(&self) -> impl Iterator<Item = &SegmentIndex> {
        let mapped = self
            .mapped
            .iter()
            .flat_map(|m| m.indexes.iter().map(|(_, u)| u));
        self.unmapped.iter().chain(mapped)
    }

    /// Scan new segments and what grew of known ones.
    fn refresh(&mut self, root: &Path) {
        self.last_refresh = Some(Instant::now());
        // The map kept on disk, at the first refresh: later ones find segments other
        // builds wrote since, which it cannot name.
        let kept = match self.loaded {
            false => super::index_map::read(root),
            true => None,
        };
        self.loaded = true;
        let Ok(paths) = segment_paths(root) else {
            return;
        };
        // The indexes the kept map names, found as it names them, in its order.
        let mut named: Vec<Option<u32>> = match &kept {
            Some(k) => vec![None; k.indexes.len()],
            None => Vec::new(),
        };
        for path in paths {
            // As bytes: both are the same directory joined with a name it listed, and
            // `Path`'s own compare walks components (a refresh compares each segment
            // with each known one).
            if self
                .segments
                .iter()
                .any(|s| s.path.as_os_str() == path.as_os_str())
            {
                continue;
            }
            let Ok(file) = File::open(&path) else {
                continue;
            };
            let seg = self.segments.len() as u32;
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let index_path = super::layout::pack_index_path(root, &path);
            let numbered = kept.as_ref().and_then(|k| {
                k.indexes
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.segment == name)
            });
            let index = match numbered {
                // Taken on the kept map's word, its pages left to fault: a search, or
                // the entries the map's slots number, read a few.
                Some((_, n)) => crate::fsutil::read_bytes_sparsely(&index_path)
                    .ok()
                    .and_then(|b| Some((numbered_index(&b, size, n)?, b))),
                None => crate::fsutil::read_bytes(&index_path)
                    .ok()
                    .and_then(|b| Some((decode_index(&b, size)?.0, b))),
            };
            let scanned_to = match index {
                Some((covered, bytes)) => {
                    if let Some(slot) = numbered.and_then(|(at, _)| named.get_mut(at)) {
                        *slot = Some(seg);
                    }
                    self.unmapped.push(SegmentIndex {
                        seg,
                        name,
                        bytes: Arc::new(bytes),
                        covered,
                    });
                    covered
                }
                None => 0,
            };
            self.segments.push(Segment {
                path,
                file: Arc::new(file),
                scanned_to: Some(scanned_to),
            });
        }
        if let Some(kept) = kept {
            self.note_kept(kept, named);
        }
        let own = self.own.as_ref().map(|o| o.seg);
        for i in 0..self.segments.len() {
            if Some(i as u32) == own {
                continue;
            }
            let Some(from) = self.segments[i].scanned_to else {
                continue;
            };
            let file = self.segments[i].file.clone();
            // Read from the start, a segment big enough for an index: what it finds is
            // that index, if the segment is done.
            let indexing = from == 0 && file.metadata().is_ok_and(|m| m.len() >= INDEXED_FROM);
            let mut entries: Vec<Indexed> = Vec::new();
            let end = scan(&file, from, &mut |f| {
                if let Found::Record { offset, header } = f {
                    if indexing && header.kind == Kind::Entry {
                        entries.push((header.key, offset, header.len, header.time));
                    }
                    self.insert(i as u32, offset, &header);
                }
            });
            self.segments[i].scanned_to = match end {
                Ok(ScanEnd::At(at)) => {
                    if indexing {
                        write_index_if_done(root, &self.segments[i], &file, at, &entries);
                    }
                    Some(at)
                }
                Ok(ScanEnd::Dead) | Err(_) => None,
            };
        }
    }
}

/// Read a whole segment: its intact records and their payloads.
pub fn read_records(file: &File) -> Vec<(Header, Vec<u8>)> {
    let mut found = Vec::new();
    let _ = scan(file, 0, &mut |f| {
        if let Found::Record { offset, header } = f {
            found.push((offset, header));
        }
    });
    found
        .into_iter()
        .filter_map(|(offset, header)| Some((header, read_payload(file, offset, &header)?)))
        .collect()
}

/// The records that keep what `records` say: the newest entry of each key, and its
/// newest use when that is later; encoded, in the order of their entries' times.
pub fn distil(records: impl IntoIterator<Item = (Header, Vec<u8>)>) -> Vec<u8> {
    let mut newest: KeyMap<(Header, Vec<u8>)> = KeyMap::default();
    let mut used: KeyMap<u64> = KeyMap::default();
    for (h, payload) in records {
        match h.kind {
            Kind::Use => {
                let t = used.entry(h.key).or_default();
                *t = (*t).max(h.time);
            }
            Kind::Entry => {
                if newest.get(&h.key).is_none_or(|(old, _)| old.time <= h.time) {
                    newest.insert(h.key, (h, payload));
                }
            }
        }
    }
    let mut kept: Vec<(Header, Vec<u8>)> = newest.into_values().collect();
    kept.sort_by_key(|(h, _)| (h.time, h.key));
    let mut out = Vec::new();
    for (h, payload) in kept {
        if let Ok(rec) = encode(Kind::Entry, h.time, &h.key, &payload) {
            out.extend_from_slice(&rec);
        }
        if let Some(&t) = used.get(&h.key).filter(|&&t| t > h.time) {
            if let Ok(rec) = encode(Kind::Use, t, &h.key, &[]) {
                out.extend_from_slice(&rec);
            }
        }
    }
    out
}

impl State {
    /// Would a merge of these segments drop at least half of their bytes? Their entry
    /// records, counted from their indexes, stay (a key's older entries in other
    /// segments would go too, but counting those takes every key); the rest is use
    /// records and damage, most of which goes. A segment whose index was not read
    /// (scanned) counts as all droppable, as before this test.
    /// `segs`: (number, length).
    fn worth_merging(&self, segs: &[(usize, u64)]) -> bool {
        let total: u64 = segs.iter().map(|(_, len)| len).sum();
        let mut kept = 0u64;
        for &(i, _) in segs {
            let index = self.indexes().find(|u| u.seg as usize == i);
            let Some(index) = index else {
                continue;
            };
            for (_, _, len, _) in index.entries().iter().flatten() {
                kept += HEADER_LEN as u64 + u64::from(len);
                if kept.saturating_mul(2) > total {
                    return false;
                }
            }
        }
        true
    }

    /// Merge the segments of the smallest tier that has [`MERGE_AT`] of them into one
    /// (see the module docs). Best effort: what cannot be merged stays as it is.
    fn merge(&mut self, root: &Path) {
        if self.segments.len() < MERGE_AT {
            return;
        }
        let own = self.own.as_ref().map(|o| o.seg as usize);
        let tiers: Vec<(usize, u32, u64)> = self
            .segments
            .iter()
            .enumerate()
            .filter(|(i, _)| Some(*i) != own)
            .filter_map(|(i, seg)| {
                let len = seg.file.metadata().ok()?.len();
                Some((i, tier(len), len))
            })
            .collect();
        let members = |t: u32| tiers.iter().filter(move |(_, tt, _)| *tt == t);
        let Some(full) = (0..=u64::BITS).find(|&t| {
            due(t, members(t).count(), || {
                let segs: Vec<(usize, u64)> = members(t).map(|&(i, _, len)| (i, len)).collect();
                self.worth_merging(&segs)
            })
        }) else {
            return;
        };
        // An exclusive lock on a segment no writer holds, kept until it is removed.
        let claimed: Vec<(usize, File)> = members(full)
            .filter_map(|&(i, _, _)| {
                let f = File::open(&self.segments.get(i)?.path).ok()?;
                f.try_lock().ok()?;
                Some((i, f))
            })
            .collect();
        if claimed.len() < 2 {
            return;
        }
        let body = distil(claimed.iter().flat_map(|(_, f)| read_records(f)));
        let Ok(path) = write_segment(root, &body) else {
            return;
        };
        for (i, _) in &claimed {
            let _ = remove_segment(root, &self.segments[*i].path);
        }
        self.merged = true;
        // What this process indexed stays readable through its open files; the merged
        // segment holds the same records, so it need not be scanned.
        if let Ok(file) = File::open(&path) {
            let len = file.metadata().map(|m| m.len()).ok();
            self.segments.push(Segment {
                path,
                file: Arc::new(file),
                scanned_to: len,
            });
        }
    }
}

/// Write the index of a segment read whole, up to `end`, if it is big enough and done:
/// all of it is records (nothing torn at the end) and no writer holds it. Best effort:
/// without an index the next process scans, as this one did.
fn write_index_if_done(root: &Path, seg: &Segment, file: &File, end: u64, entries: &[Indexed]) {
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    if end != size {
        return;
    }
    // A writer holds a shared lock on its segment while it may append.
    let Ok(probe) = File::open(&seg.path) else {
        return;
    };
    if probe.try_lock().is_ok() {
        save_index(root, &seg.path, end, entries);
    }
}

/// Remove a segment and its index (maintenance, under the exclusive lock, and a
/// build's merge). When the kept map names the segment, the map goes too (every build
/// would read it and then not use it until a big build keeps another); a map that does
/// not name it (a segment without an index, or one indexed since) stays.
pub fn remove_segment(root: &Path, path: &Path) -> io::Result<()> {
    if std::fs::remove_file(super::layout::pack_index_path(root, path)).is_ok() {
        let name = path.file_name().and_then(|n| n.to_str());
        let named = super::index_map::read(root)
            .is_some_and(|k| k.indexes.iter().any(|n| Some(n.segment.as_str()) == name));
        if named {
            let _ = std::fs::remove_file(super::layout::pack_map_path(root));
        }
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

impl Drop for Packs {
    /// This process appends no more: its segment, if big enough, gets its index now
    /// rather than from the next process to read it whole (best effort, as there). Use
    /// records still waiting are written first, a safety net only: a build writes its
    /// own while it holds its lock on the cache, and this may run after that is let go.
    fn drop(&mut self) {
        let _ = self.flush_uses();
        let Ok(st) = self.state.get_mut() else {
            return;
        };
        let Some(own) = st.own.as_ref().filter(|_| !st.broken) else {
            return;
        };
        if let Some(seg) = st.segments.get(own.seg as usize) {
            save_index(&self.root, &seg.path, own.len, &own.entries);
        }
    }
}

/// What a lookup finds.
#[derive(Debug)]
pub enum Got {
    Missing,
    /// The newest record for the key, its payload verified; its time.
    Found {
        payload: Vec<u8>,
        time: u64,
    },
    /// A record for the key that does not read back intact.
    Damaged,
}

/// The packed entries of one cache directory, as this process sees and writes them.
pub struct Packs {
    root: PathBuf,
    state: Mutex<State>,
    /// Held by an append for its whole write, so this process's records follow each
    /// other with no gap, while `state` is held only to find where a record goes and to
    /// put it in the index: a lookup never waits for a write. (Held across the write,
    /// `state` stopped a 10,000-node chain's worker about 500 times a build, each until
    /// the offload thread's write was done and the kernel woke it.)
    writing: Mutex<()>,
    /// Use records not yet written: a hit's mark of recency goes to the segment with
    /// others, in one write every [`USES_AT`] bytes and when the build is done
    /// ([`Packs::flush_uses`]), not in a write of its own (a fully cached build of 10,000
    /// nodes made 10,000 `pwrite`s for them).
    uses: Mutex<Vec<u8>>,
    /// How many entries this process expects to store ([`Packs::expect_entries`]).
    expected: AtomicUsize,
}

/// At most this many entries are made room for ahead (a hint, not a limit; above the
/// 100,000 nodes a workflow may have).
const EXPECTED_AT_MOST: usize = 1 << 17;

/// Buffered use records written at once from this size (about 700 records).
const USES_AT: usize = 64 * 1024;

/// A lock of the writer was poisoned: a thread panicked while it held it.
fn writer_failed() -> io::Error {
    io::Error::other("the cache writer failed earlier")
}

impl std::fmt::Debug for Packs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Packs").field("root", &self.root).finish()
    }
}

impl Packs {
    pub fn new(root: &Path) -> Packs {
        Packs {
            root: root.to_path_buf(),
            state: Mutex::new(State::default()),
            writing: Mutex::new(()),
            uses: Mutex::new(Vec::new()),
            expected: AtomicUsize::new(0),
        }
    }

    /// This process may store up to `n` entries: its first store makes room for them in
    /// the key map and its segment's list, which otherwise grow by doubling under the
    /// lock that lookups take (a growth of the 10,000-node chain's map held it up to
    /// 9 ms on the 2-core VM while the chain's worker waited).
    pub fn expect_entries(&self, n: usize) {
        self.expected
            .store(n.min(EXPECTED_AT_MOST), Ordering::Relaxed);
    }

    /// Do now, on the calling thread, what a build's first lookups would: read the
    /// segments' indexes (merging segments if due) and, with `map`, put their entries in
    /// the key map (those the kept map does not name), and keep the map for later
    /// builds if due ([`Packs::keep_map`]). A build calls it on a thread of its own
    /// while it reads and checks its workflow, when the other cores wait: the edit at
    /// the start of a 10,000-node chain spent 4 to 6 ms of its worker's path on this,
    /// and a build with more earlier builds in its cache more. The map is made without
    /// holding the lock, so a lookup meanwhile searches the indexes where they lie and
    /// never waits for it.
    pub fn warm(&self, map: bool) {
        let (kept, named, all, before, merged) = {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if !st.loaded {
                st.refresh(&self.root);
                st.merge(&self.root);
                // Read ahead of the build's first lookup, which may come much later (a
                // build waits for another's repair of the same workflow, then reuses
                // its results): its first miss looks again, as if nothing was read.
                st.last_refresh = None;
            }
            if !map || st.warming || st.unmapped.is_empty() {
                return;
            }
            st.warming = true;
            let kept = st.kept.take();
            let named = kept.as_ref().and_then(|k| st.named(k));
            (
                kept,
                named,
                st.unmapped.clone(),
                st.mapped.clone(),
                st.merged,
            )
        };
        // The kept map is read and checked here, not under the lock lookups take.
        let restored = kept
            .as_ref()
            .zip(named)
            .and_then(|(k, named)| Mapped::restored(k.map.slots()?, named))
            .map(Arc::new);
        // The rest; if the kept map did not read, the indexes it named too, checked here
        // (those that fail are refused below, on this check).
        let in_kept = |seg: u32| kept.as_ref().is_some_and(|k| k.segs.contains(&seg));
        let failed: Vec<u32> = match &restored {
            Some(_) => Vec::new(),
            None => all
                .iter()
                .filter(|u| in_kept(u.seg) && !sound_index(u))
                .map(|u| u.seg)
                .collect(),
        };
        let todo: Vec<SegmentIndex> = all
            .into_iter()
            .filter(|u| match &restored {
                Some(r) => !r.holds(u.seg),
                None => !failed.contains(&u.seg),
            })
            .collect();
        let mut mapped = Mapped::default();
        // What does not fit stays unmapped there, and is searched.
        let _ = mapped.add(todo);
        let mapped = Arc::new(mapped);
        let refused = kept.is_some() && restored.is_none();
        if let Ok(mut st) = self.state.lock() {
            st.warming = false;
            match (&restored, kept) {
                (Some(r), _) => st.install(r.clone()),
                (None, Some(k)) => st.refuse_kept(k, &self.root, |u| !failed.contains(&u.seg)),
                (None, None) => {}
            }
            st.install(mapped.clone());
        }
        // A map naming the segments this process merged away would not be used; after
        // a kept map that did not read, the next build keeps one of every index.
        if !merged && !refused {
            let layers: Vec<Arc<Mapped>> = restored.into_iter().chain(before).collect();
            self.keep_map(&layers, &mapped);
        }
    }

    /// Write the maps this build has, `before` and then `added` (the indexes the
    /// others do not hold), as one for later builds ([`super::index_map`]), when
    /// `added` holds at least an eighth as many entries as the others: a map of
    /// 200,000 entries is 4 MB to write, and a later build puts the few indexes it does
    /// not name in a map of its own as this one did. After the build's maps are in use:
    /// its lookups do not wait for this.
    fn keep_map(&self, before: &[Arc<Mapped>], added: &Mapped) {
        let held: u64 = before.iter().map(|m| u64::from(m.next)).sum();
        if added.next == 0 || u64::from(added.next).saturating_mul(8) < held {
            return;
        }
        let mut whole;
        let one = match before.split_first() {
            None => added,
            Some((first, rest)) => {
                whole = Mapped::clone(first);
                for m in rest.iter().map(|m| &**m).chain([added]) {
                    let indexes = m.indexes.iter().map(|(_, u)| u.clone()).collect();
                    if !whole.add(indexes).is_empty() {
                        return;
                    }
                }
                &whole
            }
        };
        if let Some(named) = one.numbered() {
            super::index_map::write(&self.root, &named, &one.slots);
        }
    }

    /// The newest entry record for `key`. The first lookup reads every segment's index
    /// (or, without one, its record headers); a miss looks again for records other
    /// builds appended since (at most every `REFRESH_EVERY`).
    pub fn get(&self, key: &Key) -> Got {
        let found = {
            let Ok(mut st) = self.state.lock() else {
                return Got::Missing;
            };
            if !st.loaded {
                st.refresh(&self.root);
                st.merge(&self.root);
            }
            st.searched = st.searched.saturating_add(1);
            let mut loc = st.find(key, &self.root);
            if loc.is_none() && st.last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                st.refresh(&self.root);
                loc = st.find(key, &self.root);
            }
            loc.and_then(|l| st.segments.get(l.seg as usize).map(|s| (s.file.clone(), l)))
        };
        let Some((file, loc)) = found else {
            return Got::Missing;
        };
        // Read again, whole: the header must still be this key's entry.
        match read_record(&file, loc.offset, loc.len) {
            Some((h, payload)) if h.key == *key && h.kind == Kind::Entry && h.time == loc.time => {
                Got::Found {
                    payload,
                    time: loc.time,
                }
            }
            _ => {
                self.check_index_of(loc.seg);
                Got::Damaged
            }
        }
    }

    /// A record was not where an index said: if that index fails its own check (one a
    /// kept map vouched for, its damage not seen when it was read), the map goes, so
    /// that the next process checks every index itself and scans the segment of that
    /// one. Else a garbled entry that outranks the key's newer ones (a time raised)
    /// would be found, and refused, at every build until `gc`.
    fn check_index_of(&self, seg: u32) {
        let Ok(st) = self.state.lock() else {
            return;
        };
        if st.indexes().any(|u| u.seg == seg && !sound_index(u)) {
            let _ = std::fs::remove_file(super::layout::pack_map_path(&self.root));
        }
    }

    /// Append a record to this process's segment (created on the first append) and make
    /// it visible to this process's lookups. A use record waits with others until
    /// [`USES_AT`] bytes of them or [`Packs::flush_uses`] (a lookup never reads them).
    pub fn append(&self, kind: Kind, key: &Key, time: u64, payload: &[u8]) -> io::Result<()> {
        let bytes = encode(kind, time, key, payload)?;
        if kind == Kind::Use {
            let mut uses = self.uses.lock().map_err(|_| writer_failed())?;
            uses.extend_from_slice(&bytes);
            if uses.len() < USES_AT {
                return Ok(());
            }
            let batch = std::mem::take(&mut *uses);
            drop(uses);
            return self.write(&batch, None);
        }
        self.write(&bytes, Some((*key, payload.len() as u32, time)))
    }

    /// Write the use records waiting to be written. Call it once the threads that look
    /// up entries are done (as a build does, under its lock on the cache): a batch one of
    /// them took at [`USES_AT`] may still be being written when this returns.
    pub fn flush_uses(&self) -> io::Result<()> {
        let batch = match self.uses.lock() {
            Ok(mut uses) => std::mem::take(&mut *uses),
            Err(_) => return Err(writer_failed()),
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.write(&batch, None)
    }

    /// Write `bytes` (whole records) at the end of this process's segment; `entry`: the
    /// entry record's key, payload length and time, to index it once it is written.
    fn write(&self, bytes: &[u8], entry: Option<(Key, u32, u64)>) -> io::Result<()> {
        let _writing = self.writing.lock().map_err(|_| writer_failed())?;
        let (seg, len, file) = {
            let mut st = self.state.lock().map_err(|_| writer_failed())?;
            if st.broken {
                return Err(io::Error::other("the cache segment could not be written"));
            }
            if st.own.is_none() {
                let (path, file) = create_segment(&self.root)?;
                let seg = st.segments.len() as u32;
                st.segments.push(Segment {
                    path,
                    file: Arc::new(file),
                    scanned_to: None,
                });
                st.own = Some(Own {
                    seg,
                    len: FILE_HEADER.len() as u64,
                    entries: Vec::new(),
                });
            }
            // Room for the entries this process expects, at its first (a build whose
            // nodes all hit writes only use records, and makes none).
            if entry.is_some() && st.own.as_ref().is_some_and(|o| o.entries.is_empty()) {
                let expected = self.expected.load(Ordering::Relaxed);
                if let Some(own) = st.own.as_mut() {
                    own.entries.reserve(expected);
                }
                st.index.reserve(expected);
            }
            let Some((seg, len)) = st.own.as_ref().map(|o| (o.seg, o.len)) else {
                return Err(io::Error::other("no cache segment"));
            };
            (seg, len, st.segments[seg as usize].file.clone())
        };
        // One write at the end: a crash leaves at worst a torn last record.
        let written = file.write_all_at(bytes, len);
        let mut st = self.state.lock().map_err(|_| writer_failed())?;
        if let Err(e) = written {
            st.broken = true;
            return Err(e);
        }
        if let Some(own) = st.own.as_mut() {
            // `writing` kept every other append out since `len` was read.
            own.len = len + bytes.len() as u64;
            if let Some((key, payload_len, time)) = entry {
                own.entries.push((key, len, payload_len, time));
            }
        }
        if let Some((key, payload_len, time)) = entry {
            st.insert_entry(seg, key, len, payload_len, time);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn key(b: u8) -> Key {
        Key([b; 32])
    }

    fn segment(dir: &Path, records: &[Vec<u8>]) -> PathBuf {
        named_segment(dir, &format!("t{}", fastrand::u32(..)), records)
    }

    fn named_segment(dir: &Path, name: &str, records: &[Vec<u8>]) -> PathBuf {
        let p = dir.join(PACKS_DIR);
        std::fs::create_dir_all(&p).unwrap();
        let path = p.join(format!("{name}.pack"));
        let mut f = File::create(&path).unwrap();
        f.write_all(FILE_HEADER).unwrap();
        for r in records {
            f.write_all(r).unwrap();
        }
        path
    }

    fn found(path: &Path) -> (Vec<Found>, ScanEnd) {
        let f = File::open(path).unwrap();
        let mut out = Vec::new();
        let end = scan(&f, 0, &mut |x| out.push(x)).unwrap();
        (out, end)
    }

    /// A finished segment past [`INDEXED_FROM`]: 200 entries of 400 bytes.
    fn big_segment(dir: &Path) -> PathBuf {
        let records: Vec<Vec<u8>> = (0..200u8)
            .map(|i| encode(Kind::Entry, 1, &key(i), &[i; 400]).unwrap())
            .collect();
        segment(dir, &records)
    }

    fn record_offset(i: u64) -> u64 {
        FILE_HEADER.len() as u64 + i * (HEADER_LEN as u64 + 400)
    }

    fn flip(path: &Path, at: u64) {
        let mut bytes = std::fs::read(path).unwrap();
        bytes[at as usize] ^= 1;
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_big_finished_segment_gets_an_index_that_later_lookups_use() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_segment(dir.path());
        let index = crate::cache::layout::pack_index_path(dir.path(), &path);
        assert!(matches!(
            Packs::new(dir.path()).get(&key(7)),
            Got::Found { .. }
        ));
        assert!(index.exists(), "the first full read writes the index");
        // A header damaged after the index was written: a scan skips the record (a
        // miss); the index still points at it, and reading it back finds the damage.
        flip(&path, record_offset(9) + 30);
        let packs = Packs::new(dir.path());
        assert!(
            matches!(packs.get(&key(9)), Got::Damaged),
            "read through the index"
        );
        assert!(matches!(packs.get(&key(8)), Got::Found { payload, .. } if payload == [8; 400]));
        // An index that does not hold is not used: the segment is scanned again.
        flip(&index, 30);
        assert!(matches!(Packs::new(dir.path()).get(&key(9)), Got::Missing));
        assert!(matches!(
            Packs::new(dir.path()).get(&key(8)),
            Got::Found { .. }
        ));
    }

    #[test]
    fn a_few_lookups_search_the_indexes_where_they_lie_and_more_map_them_with_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        big_segment(dir.path());
        // A second segment with newer entries for the even keys.
        let newer: Vec<Vec<u8>> = (0..200u8)
            .filter(|i| i % 2 == 0)
            .map(|i| encode(Kind::Entry, 2, &key(i), &[i ^ 0xff; 800]).unwrap())
            .collect();
        segment(dir.path(), &newer);
        // The first full read writes both indexes.
        let _ = Packs::new(dir.path()).get(&key(0));
        let paths = segment_paths(dir.path()).unwrap();
        assert_eq!(paths.len(), 2);
        assert!(paths
            .iter()
            .all(|p| crate::cache::layout::pack_index_path(dir.path(), p).exists()));
        let packs = Packs::new(dir.path());
        let expect = |i: u8| match i % 2 {
            0 => vec![i ^ 0xff; 800],
            _ => vec![i; 400],
        };
        for i in 0..200u8 {
            assert!(
                matches!(packs.get(&key(i)), Got::Found { payload, .. } if payload == expect(i)),
                "key {i}"
            );
            let unmapped = packs.state.lock().unwrap().unmapped.len();
            assert_eq!(unmapped, if i < 64 { 2 } else { 0 }, "after lookup {i}");
        }
        assert!(matches!(packs.get(&key(250)), Got::Missing));
    }

    #[test]
    fn mapped_indexes_keep_the_newest_entry_whichever_segment_comes_first() {
        // The newer entries in the first segment by name, then in the last: the map
        // meets the older entry of a key first in one case, second in the other.
        for (newer, older) in [("a", "b"), ("b", "a")] {
            let dir = tempfile::tempdir().unwrap();
            let entries = |time: u64, len: usize, keys: &dyn Fn(u8) -> bool| -> Vec<Vec<u8>> {
                (0..200u8)
                    .filter(|&i| keys(i))
                    .map(|i| encode(Kind::Entry, time, &key(i), &vec![i; len]).unwrap())
                    .collect()
            };
            named_segment(dir.path(), older, &entries(1, 400, &|_| true));
            named_segment(dir.path(), newer, &entries(2, 800, &|i| i % 2 == 0));
            let _ = Packs::new(dir.path()).get(&key(0)); // writes both indexes
            let expect = |i: u8| vec![i; if i.is_multiple_of(2) { 800 } else { 400 }];
            for warm in [false, true] {
                let packs = Packs::new(dir.path());
                if warm {
                    packs.warm(true);
                }
                for round in 0..2 {
                    for i in 0..200u8 {
                        let got = match packs.get(&key(i)) {
                            Got::Found { payload, .. } => payload,
                            other => panic!("key {i}: {other:?}"),
                        };
                        assert_eq!(got, expect(i), "key {i}, {newer} newer, round {round}");
                    }
                }
                assert_eq!(packs.state.lock().unwrap().unmapped.len(), 0, "mapped");
            }
        }
    }

    #[test]
    fn a_map_of_many_parts_holds_every_key_of_every_index_and_the_newest_entry() {
        // 30,000 keys in three indexes: 65,536 slots, put in part by part. Index 1
        // holds every third key of index 0 again, newer; index 2 holds keys of its own.
        let spread = |i: u32| Key(*blake3::hash(&i.to_le_bytes()).as_bytes());
        let index = |seg: u32, keys: &[u32], time: u64| {
            let entries: Vec<Indexed> = keys
                .iter()
                .enumerate()
                .map(|(n, &i)| (spread(i), 8 + 200 * n as u64, 100, time))
                .collect();
            let covered = 8 + 200 * keys.len() as u64;
            SegmentIndex {
                seg,
                name: format!("{seg}.pack"),
                bytes: Arc::new(encode_index(covered, &entries).into()),
                covered,
            }
        };
        let first: Vec<u32> = (0..15_000).collect();
        let again: Vec<u32> = (0..15_000).step_by(3).collect();
        let own: Vec<u32> = (15_000..25_000).collect();
        // The newer index put in after the older one, then before it (its entries
        // are then held already when the older ones come, part by part).
        for newer_first in [false, true] {
            let (older, newer) = (index(0, &first, 1), index(1, &again, 2));
            let indexes = match newer_first {
                false => vec![older, newer, index(2, &own, 1)],
                true => vec![newer, older, index(2, &own, 1)],
            };
            let mut mapped = Mapped::default();
            assert!(mapped.add(indexes).is_empty());
            assert_eq!(mapped.slots.parts(), 4);
            assert_eq!(mapped.slots.len(), 25_000);
            for i in 0..25_000u32 {
                let loc = mapped.find(&spread(i)).unwrap_or_else(|| panic!("key {i}"));
                let seg = match i {
                    15_000.. => 2,
                    _ if i % 3 == 0 => 1,
                    _ => 0,
                };
                assert_eq!(loc.seg, seg, "key {i}, newer first: {newer_first}");
            }
            assert!((25_000..26_000).all(|i| mapped.find(&spread(i)).is_none()));
        }
    }

    /// This process's own entries for key 1 (newer than the big segment's) and key 2
    /// (older).
    fn append_own_newer_and_older(packs: &Packs) {
        packs
            .append(Kind::Entry, &key(1), 5, b"own, newer")
            .unwrap();
        packs
            .append(Kind::Entry, &key(2), 0, b"own, older")
            .unwrap();
    }

    #[test]
    fn warming_maps_the_indexes_off_the_lookup_path_with_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        big_segment(dir.path()); // keys 0..200 at time 1
        let _ = Packs::new(dir.path()).get(&key(0)); // writes its index
        let unmapped = |p: &Packs| p.state.lock().unwrap().unmapped.len();
        let payload_of = |p: &Packs, k: u8| match p.get(&key(k)) {
            Got::Found { payload, .. } => Some(payload),
            _ => None,
        };

        // Without `map` it reads the indexes only, as a first lookup would.
        let packs = Packs::new(dir.path());
        packs.warm(false);
        assert!(packs.state.lock().unwrap().loaded);
        assert_eq!(unmapped(&packs), 1);

        // While a warm-up maps them, lookups search them where they lie, however many.
        packs.state.lock().unwrap().warming = true;
        for i in 0..100u8 {
            assert_eq!(payload_of(&packs, i), Some(vec![i; 400]), "key {i}");
        }
        assert_eq!(unmapped(&packs), 1, "not mapped by the lookups");
        packs.warm(true);
        assert_eq!(unmapped(&packs), 1, "one warm-up at a time");
        packs.state.lock().unwrap().warming = false;

        // What the process learned before the map is in is kept, newest first.
        append_own_newer_and_older(&packs);
        packs.warm(true);
        assert_eq!(unmapped(&packs), 0);
        assert!(!packs.state.lock().unwrap().warming);
        assert_eq!(payload_of(&packs, 1), Some(b"own, newer".to_vec()));
        assert_eq!(payload_of(&packs, 2), Some(vec![2; 400]));
        for i in 3..200u8 {
            assert_eq!(payload_of(&packs, i), Some(vec![i; 400]), "key {i}");
        }
        assert_eq!(payload_of(&packs, 250), None);
    }

    #[test]
    fn what_another_process_stores_after_a_warm_up_is_found_at_once() {
        let dir = tempfile::tempdir().unwrap();
        big_segment(dir.path());
        let _ = Packs::new(dir.path()).get(&key(0)); // writes its index
        let packs = Packs::new(dir.path());
        packs.warm(true);
        // Another build stores a result while this one waits (for a repair lock, say).
        let other = Packs::new(dir.path());
        other.append(Kind::Entry, &key(250), 7, b"theirs").unwrap();
        drop(other);
        assert!(
            matches!(packs.get(&key(250)), Got::Found { payload, .. } if payload == b"theirs"),
            "the first miss after the warm-up looks again"
        );
    }

    #[test]
    fn searched_and_mapped_indexes_agree_with_this_processs_own_entries_and_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        big_segment(dir.path()); // keys 0..200 at time 1
        let _ = Packs::new(dir.path()).get(&key(0)); // writes its index
        let packs = Packs::new(dir.path());
        let payload_of = |k: u8| match packs.get(&key(k)) {
            Got::Found { payload, .. } => Some(payload),
            _ => None,
        };
        assert_eq!(payload_of(250), None, "a miss while the index is searched");
        append_own_newer_and_older(&packs);
        let answers = |payload_of: &dyn Fn(u8) -> Option<Vec<u8>>| {
            (payload_of(1), payload_of(2), payload_of(3))
        };
        let expected = (
            Some(b"own, newer".to_vec()),
            Some(vec![2; 400]),
            Some(vec![3; 400]),
        );
        assert_eq!(answers(&payload_of), expected, "searched");
        assert_eq!(packs.state.lock().unwrap().unmapped.len(), 1);
        for _ in 0..SEARCHED_LOOKUPS {
            let _ = payload_of(4);
        }
        assert_eq!(packs.state.lock().unwrap().unmapped.len(), 0);
        assert_eq!(answers(&payload_of), expected, "mapped");
        // A segment another build finished since, with its index: found on a refresh.
        let later: Vec<Vec<u8>> = (0..100u8)
            .map(|i| encode(Kind::Entry, 7, &key(i.wrapping_add(150)), &[i; 800]).unwrap())
            .collect();
        segment(dir.path(), &later);
        let _ = Packs::new(dir.path()).get(&key(0));
        packs.state.lock().unwrap().last_refresh = None;
        assert_eq!(payload_of(249), Some(vec![99; 800]));
        assert_eq!(
            payload_of(150),
            Some(vec![0; 800]),
            "newer than the first segment's"
        );
    }

    #[test]
    fn an_index_out_of_order_or_of_the_old_format_is_not_used() {
        let entries: Vec<Indexed> = (0..5u8)
            .map(|i| (key(i), 100 * u64::from(i), 10, 1))
            .collect();
        let good = encode_index(1000, &entries);
        assert!(decode_index(&good, 1000).is_some());
        let reindexed = |mut body: Vec<u8>| {
            body.truncate(body.len() - INDEX_SUM);
            let sum = crate::cache::checksum::of(&body);
            body.extend_from_slice(&sum);
            body
        };
        let mut swapped = good.clone();
        let (a, b) = (20, 20 + INDEX_ENTRY);
        let first: Vec<u8> = swapped[a..b].to_vec();
        swapped.copy_within(b..b + INDEX_ENTRY, a);
        swapped[b..b + INDEX_ENTRY].copy_from_slice(&first);
        assert!(
            decode_index(&reindexed(swapped), 1000).is_none(),
            "out of order"
        );
        let mut old = good.clone();
        old[..8].copy_from_slice(b"PFIDX2\n\0");
        assert!(decode_index(&reindexed(old), 1000).is_none(), "old format");
        // Written from entries in any order, an index is sorted.
        let mut backwards = entries.clone();
        backwards.reverse();
        assert_eq!(encode_index(1000, &backwards), good);
    }

    #[test]
    fn records_past_an_index_are_scanned_and_removing_a_segment_removes_its_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = big_segment(dir.path());
        let _ = Packs::new(dir.path()).get(&key(1));
        let index = crate::cache::layout::pack_index_path(dir.path(), &path);
        assert!(index.exists());
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&encode(Kind::Entry, 2, &key(1), b"newer").unwrap())
            .unwrap();
        f.write_all(&encode(Kind::Entry, 2, &key(250), b"later").unwrap())
            .unwrap();
        let packs = Packs::new(dir.path());
        assert!(matches!(packs.get(&key(1)), Got::Found { payload, .. } if payload == b"newer"));
        assert!(matches!(packs.get(&key(250)), Got::Found { .. }));
        remove_segment(dir.path(), &path).unwrap();
        assert!(!path.exists() && !index.exists());
    }

    #[test]
    fn a_segment_gets_its_index_from_its_writer_once_done_and_not_before() {
        let dir = tempfile::tempdir().unwrap();
        let writer = Packs::new(dir.path());
        for i in 0..200u8 {
            writer.append(Kind::Entry, &key(i), 1, &[i; 400]).unwrap();
        }
        let path = segment_paths(dir.path()).unwrap().remove(0);
        let reader = Packs::new(dir.path());
        assert!(matches!(reader.get(&key(3)), Got::Found { .. }));
        let index = crate::cache::layout::pack_index_path(dir.path(), &path);
        assert!(!index.exists(), "its writer may still append");
        drop(writer);
        assert!(index.exists(), "its writer leaves it when done");
        // Read through that index: a damaged header is found as damage (a scan would
        // skip the record as a miss).
        flip(&path, record_offset(3) + 30);
        assert!(matches!(Packs::new(dir.path()).get(&key(3)), Got::Damaged));
        assert!(
            matches!(Packs::new(dir.path()).get(&key(4)), Got::Found { payload, .. } if payload == [4; 400])
        );
    }

    #[test]
    fn records_round_trip_and_the_newest_wins() {
        let dir = tempfile::tempdir().unwrap();
        let old = encode(Kind::Entry, 1, &key(1), b"old").unwrap();
        segment(dir.path(), &[old]);
        let packs = Packs::new(dir.path());
        packs.append(Kind::Entry, &key(1), 2, b"new").unwrap();
        packs.append(Kind::Use, &key(1), 3, b"").unwrap();
        packs.append(Kind::Entry, &key(2), 2, b"two").unwrap();
        match packs.get(&key(1)) {
            Got::Found { payload, time } => {
                assert_eq!((payload.as_slice(), time), (&b"new"[..], 2))
            }
            other => panic!("{other:?}"),
        }
        // Another process sees both segments.
        let other = Packs::new(dir.path());
        assert!(matches!(other.get(&key(2)), Got::Found { payload, .. } if payload == b"two"));
        assert!(matches!(other.get(&key(1)), Got::Found { payload, .. } if payload == b"new"));
        assert!(matches!(other.get(&key(3)), Got::Missing));
    }

    /// Marks of use wait and go to the segment together: none before a flush (or
    /// before [`USES_AT`] bytes of them), all after it, and the drop writes what is left.
    /// An entry appended meanwhile is on disk and found at once.
    #[test]
    fn uses_are_written_together_and_none_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let uses_on_disk = || {
            headers(dir.path())
                .iter()
                .filter(|h| h.kind == Kind::Use)
                .count()
        };
        let packs = Packs::new(dir.path());
        for i in 0..10u8 {
            packs.append(Kind::Use, &key(i), 7, b"").unwrap();
        }
        packs.append(Kind::Entry, &key(100), 7, b"entry").unwrap();
        assert_eq!(uses_on_disk(), 0, "a use written on its own");
        let other = Packs::new(dir.path());
        assert!(matches!(other.get(&key(100)), Got::Found { payload, .. } if payload == b"entry"));
        packs.flush_uses().unwrap();
        assert_eq!(uses_on_disk(), 10);
        // Past the batch size: written without a flush.
        let record = encode(Kind::Use, 7, &key(0), b"").unwrap().len();
        let many = USES_AT / record + 1;
        for i in 0..many {
            packs
                .append(Kind::Use, &key((i % 200) as u8), 8, b"")
                .unwrap();
        }
        assert_eq!(uses_on_disk(), 10 + many);
        for i in 0..5u8 {
            packs.append(Kind::Use, &key(i), 9, b"").unwrap();
        }
        assert_eq!(uses_on_disk(), 10 + many);
        drop(packs);
        assert_eq!(uses_on_disk(), 10 + many + 5);
    }

    /// The entries a build said it would store fit in the room its first store made:
    /// storing them grows neither the key map nor the segment's list (each growth copied
    /// them under the lock lookups take), and every one is found.
    #[test]
    fn expected_entries_are_stored_without_the_map_growing_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        packs.expect_entries(3000);
        let key = |i: u32| Key(*blake3::hash(&i.to_le_bytes()).as_bytes());
        packs.append(Kind::Entry, &key(0), 1, b"first").unwrap();
        let room = |p: &Packs| {
            let st = p.state.lock().unwrap();
            let own = st.own.as_ref().map_or(0, |o| o.entries.capacity());
            (st.index.capacity(), own)
        };
        let first = room(&packs);
        assert!(first.0 >= 3000 && first.1 >= 3000, "{first:?}");
        for i in 1..3000 {
            packs.append(Kind::Entry, &key(i), 1, b"more").unwrap();
        }
        assert_eq!(room(&packs), first);
        for i in [0, 1, 1500, 2999] {
            assert!(matches!(packs.get(&key(i)), Got::Found { .. }), "{i}");
        }
    }

    /// Appends from several threads at once, with lookups between them (a lookup takes
    /// the state lock while a write is under way): each record is found as written,
    /// and the segment holds them one after another, with no gap or damage between.
    #[test]
    fn appends_from_many_threads_follow_each_other_and_lookups_meanwhile_see_whole_records() {
        let dir = tempfile::tempdir().unwrap();
        let packs = Packs::new(dir.path());
        // 200 records of 400 bytes and more: past `INDEXED_FROM`, so the drop writes
        // the segment's index from the entries the appends kept.
        let payload = |t: u8, i: u8| vec![t ^ i; 400 + usize::from(i)];
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let packs = &packs;
                s.spawn(move || {
                    for i in 0..50u8 {
                        let k = Key([t * 64 + i; 32]);
                        packs.append(Kind::Entry, &k, 1, &payload(t, i)).unwrap();
                        let ours = packs.get(&k);
                        assert!(
                            matches!(ours, Got::Found { payload: p, .. } if p == payload(t, i))
                        );
                        // Another thread's key: not yet written, or whole.
                        let theirs = Key([((t + 1) % 4) * 64 + i; 32]);
                        let want = payload((t + 1) % 4, i);
                        match packs.get(&theirs) {
                            Got::Missing => {}
                            Got::Found { payload: p, .. } => assert_eq!(p, want),
                            Got::Damaged => panic!("a record read while being written"),
                        }
                    }
                });
            }
        });
        let segments: Vec<PathBuf> = std::fs::read_dir(dir.path().join(PACKS_DIR))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "pack"))
            .collect();
        assert_eq!(segments.len(), 1);
        let (items, end) = found(&segments[0]);
        assert_eq!(
            end,
            ScanEnd::At(std::fs::metadata(&segments[0]).unwrap().len())
        );
        assert_eq!(items.len(), 200);
        assert!(items.iter().all(|f| matches!(f, Found::Record { .. })));
        drop(packs);
        let index = crate::cache::layout::pack_index_path(dir.path(), &segments[0]);
        assert!(index.exists(), "no index written for the segment");
        let other = Packs::new(dir.path());
        let first = other.get(&Key([0; 32]));
        assert!(matches!(first, Got::Found { payload: p, .. } if p == payload(0, 0)));
        // Read from that index, not by scanning the segment.
        assert_eq!(other.state.lock().unwrap().unmapped.len(), 1);
        for t in 0..4u8 {
            for i in 0..50u8 {
                let got = other.get(&Key([t * 64 + i; 32]));
                assert!(matches!(got, Got::Found { payload: p, .. } if p == payload(t, i)));
            }
        }
    }

    #[test]
    fn a_flipped_payload_byte_is_damage_and_a_flipped_header_byte_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let a = encode(Kind::Entry, 1, &key(1), b"first").unwrap();
        let b = encode(Kind::Entry, 1, &key(2), b"second").unwrap();
        let c = encode(Kind::Entry, 1, &key(3), b"third").unwrap();
        let mut a_bad = a.clone();
        *a_bad.last_mut().unwrap() ^= 1;
        let mut b_bad = b.clone();
        b_bad[30] ^= 1; // inside the key
        let path = segment(dir.path(), &[a_bad, b_bad, c]);
        let (items, end) = found(&path);
        assert_eq!(end, ScanEnd::At(std::fs::metadata(&path).unwrap().len()));
        assert!(matches!(items[0], Found::Record { .. }));
        assert!(matches!(items[1], Found::Damage { .. }));
        assert!(matches!(items[2], Found::Record { header, .. } if header.key == key(3)));
        let packs = Packs::new(dir.path());
        assert!(matches!(packs.get(&key(1)), Got::Damaged));
        assert!(matches!(packs.get(&key(2)), Got::Missing));
        assert!(matches!(packs.get(&key(3)), Got::Found { .. }));
    }

    #[test]
    fn a_torn_last_record_is_not_read_until_it_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let a = encode(Kind::Entry, 1, &key(1), b"whole").unwrap();
        let b = encode(Kind::Entry, 1, &key(2), b"being written").unwrap();
        let path = segment(dir.path(), &[a.clone(), b[..HEADER_LEN + 3].to_vec()]);
        let packs = Packs::new(dir.path());
        assert!(matches!(packs.get(&key(1)), Got::Found { .. }));
        assert!(matches!(packs.get(&key(2)), Got::Missing));
        let (_, end) = found(&path);
        assert_eq!(end, ScanEnd::At((FILE_HEADER.len() + a.len()) as u64));
        // The writer finishes the record: a later lookup (after the refresh interval)
        // finds it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&b[HEADER_LEN + 3..]).unwrap();
        std::thread::sleep(REFRESH_EVERY);
        assert!(matches!(packs.get(&key(2)), Got::Found { .. }));
    }

    #[test]
    fn garbage_and_foreign_files_are_no_records() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(PACKS_DIR);
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("x.pack"), b"not a segment at all, no header").unwrap();
        let mut junk = b"PFK1 and then nothing sensible".to_vec();
        junk.resize(HEADER_LEN * 2, b'z');
        let path = segment(dir.path(), &[junk]);
        let (items, end) = found(&path);
        assert_eq!(end, ScanEnd::Dead);
        assert!(matches!(items[..], [Found::Damage { .. }]));
        assert!(matches!(Packs::new(dir.path()).get(&key(1)), Got::Missing));
        assert!(parse_header(&[0u8; HEADER_LEN]).is_none());
        assert!(parse_header(b"PFK1").is_none());
    }

    #[test]
    fn a_merge_takes_finished_segments_and_leaves_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..MERGE_AT as u8 {
            let a = encode(Kind::Entry, 1, &key(i), b"first").unwrap();
            let b = encode(Kind::Entry, 2, &key(i), b"second").unwrap();
            let u = encode(Kind::Use, 5, &key(i), b"").unwrap();
            segment(dir.path(), &[a, b, u]);
        }
        // A build still writing: its segment is locked.
        let live = Packs::new(dir.path());
        live.append(Kind::Entry, &key(200), 1, b"live").unwrap();
        let live_path = segment_paths(dir.path())
            .unwrap()
            .into_iter()
            .find(|p| !p.file_name().unwrap().to_string_lossy().starts_with('t'))
            .unwrap();

        let reader = Packs::new(dir.path());
        assert!(matches!(reader.get(&key(3)), Got::Found { payload, .. } if payload == b"second"));
        let left = segment_paths(dir.path()).unwrap();
        assert_eq!(left.len(), 2, "{left:?}");
        assert!(left.contains(&live_path));
        // The merged segment keeps the newest entry and the newest use of each key.
        let merged = left.iter().find(|p| **p != live_path).unwrap();
        let recs = read_records(&File::open(merged).unwrap());
        assert_eq!(recs.len(), 2 * MERGE_AT);
        assert!(recs.iter().all(|(h, p)| match h.kind {
            Kind::Entry => p == b"second" && h.time == 2,
            Kind::Use => h.time == 5,
        }));
        // The live writer goes on; a new reader sees everything.
        live.append(Kind::Entry, &key(201), 1, b"later").unwrap();
        let fresh = Packs::new(dir.path());
        for k in [0, MERGE_AT as u8 - 1, 200, 201] {
            assert!(matches!(fresh.get(&key(k)), Got::Found { .. }), "{k}");
        }
    }

    #[test]
    fn segments_merge_with_others_of_their_size_and_a_big_one_is_left_alone() {
        assert_eq!(
            [
                0,
                TIER_BASE - 1,
                TIER_BASE,
                4 * TIER_BASE - 1,
                4 * TIER_BASE
            ]
            .map(tier),
            [0, 0, 1, 1, 2]
        );
        let dir = tempfile::tempdir().unwrap();
        let big: Vec<Vec<u8>> = (0..3u8)
            .map(|i| encode(Kind::Entry, 1, &key(100 + i), &vec![i; TIER_BASE as usize]).unwrap())
            .collect();
        let big = segment(dir.path(), &big);
        let small: Vec<PathBuf> = (0..MERGE_AT as u8 - 1)
            .map(|i| {
                segment(
                    dir.path(),
                    &[encode(Kind::Entry, 1, &key(i), b"s").unwrap()],
                )
            })
            .collect();
        // One fewer small segment than a merge takes: nothing is merged.
        assert!(matches!(
            Packs::new(dir.path()).get(&key(0)),
            Got::Found { .. }
        ));
        assert_eq!(segment_paths(dir.path()).unwrap().len(), MERGE_AT);
        segment(
            dir.path(),
            &[encode(Kind::Entry, 1, &key(50), b"s").unwrap()],
        );
        assert!(matches!(
            Packs::new(dir.path()).get(&key(50)),
            Got::Found { .. }
        ));
        let left = segment_paths(dir.path()).unwrap();
        assert_eq!(left.len(), 2, "the small ones merged: {left:?}");
        assert!(left.contains(&big), "the big one is as it was");
        assert!(small.iter().all(|p| !left.contains(p)));
        let fresh = Packs::new(dir.path());
        for k in [0, 50, 100, 102] {
            assert!(matches!(fresh.get(&key(k)), Got::Found { .. }), "{k}");
        }
    }

    #[test]
    fn a_big_tier_is_due_when_a_merge_would_drop_half_or_it_holds_too_many() {
        let (yes, no) = (|| true, || false);
        assert!(due(0, MERGE_AT, no) && !due(1, MERGE_AT - 1, yes));
        assert!(!due(BIG_TIER, MERGE_AT_BIG, no) && due(BIG_TIER, MERGE_AT_BIG, yes));
        assert!(!due(BIG_TIER + 3, MERGE_AT_BIG - 1, yes));
        assert!(due(BIG_TIER, MERGE_AT_BIG_ANYWAY, no));
        assert!(!due(BIG_TIER, MERGE_AT_BIG_ANYWAY - 1, no));
    }

    #[test]
    fn a_full_big_tier_of_entries_is_left_for_gc_and_one_of_uses_is_merged() {
        // Segments written whole, so each has its index, as a build's big segment does.
        let big_tier = |records: &dyn Fn(u8) -> Vec<u8>| {
            let dir = tempfile::tempdir().unwrap();
            for i in 0..MERGE_AT_BIG as u8 {
                let path = write_segment(dir.path(), &records(i)).unwrap();
                let len = std::fs::metadata(path).unwrap().len();
                assert_eq!(tier(len), BIG_TIER);
            }
            dir
        };
        // Each a build's new entries (as after an edit at the start of a big workflow):
        // a merge would rewrite them all and drop nothing.
        let entries = big_tier(&|i| {
            encode(Kind::Entry, 1, &key(i), &vec![i; 4 * TIER_BASE as usize]).unwrap()
        });
        assert!(matches!(
            Packs::new(entries.path()).get(&key(3)),
            Got::Found { .. }
        ));
        assert_eq!(segment_paths(entries.path()).unwrap().len(), MERGE_AT_BIG);
        // Each a fully cached build's marks of use of the same 100 keys, and an entry:
        // a merge keeps each key's newest use.
        let uses_per_segment = 4 * TIER_BASE as usize / HEADER_LEN + 1;
        let uses = big_tier(&|i| {
            let mut records = encode(Kind::Entry, 1, &key(200 + i), b"e").unwrap();
            for u in 0..uses_per_segment {
                let time = u64::from(i) * 100_000 + u as u64;
                records.extend(encode(Kind::Use, time, &key((u % 100) as u8), &[]).unwrap());
            }
            records
        });
        assert!(matches!(
            Packs::new(uses.path()).get(&key(203)),
            Got::Found { .. }
        ));
        let left = segment_paths(uses.path()).unwrap();
        assert_eq!(left.len(), 1, "merged: {left:?}");
        let fresh = Packs::new(uses.path());
        for i in [200, 231] {
            assert!(matches!(fresh.get(&key(i)), Got::Found { .. }), "{i}");
        }
    }

    #[test]
    fn a_segment_written_whole_gets_its_index_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<u8> = (0..200u8)
            .flat_map(|i| encode(Kind::Entry, 1, &key(i), &[i; 400]).unwrap())
            .collect();
        let path = write_segment(dir.path(), &records).unwrap();
        let index = crate::cache::layout::pack_index_path(dir.path(), &path);
        assert!(index.exists());
        // Read through it: a damaged header is found as damage, not skipped.
        flip(&path, record_offset(5) + 30);
        assert!(matches!(Packs::new(dir.path()).get(&key(5)), Got::Damaged));
        assert!(
            matches!(Packs::new(dir.path()).get(&key(6)), Got::Found { payload, .. } if payload == [6; 400])
        );
    }

    #[test]
    fn a_scan_crosses_chunk_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![b'x'; CHUNK + 17];
        let mut recs = Vec::new();
        for i in 0..5u8 {
            recs.push(encode(Kind::Entry, 1, &key(i), &big[..CHUNK / 3 + i as usize]).unwrap());
        }
        recs.push(encode(Kind::Entry, 1, &key(9), &big).unwrap());
        // Damage whose next magic lies a chunk away.
        let mut junk = vec![0u8; CHUNK + 5];
        junk[..4].copy_from_slice(b"PFK1");
        recs.push(junk);
        recs.push(encode(Kind::Entry, 1, &key(10), b"after").unwrap());
        let path = segment(dir.path(), &recs);
        let (items, _) = found(&path);
        let keys: Vec<u8> = items
            .iter()
            .filter_map(|f| match f {
                Found::Record { header, .. } => Some(header.key.0[0]),
                _ => None,
            })
            .collect();
        assert_eq!(keys, [0, 1, 2, 3, 4, 9, 10]);
        let packs = Packs::new(dir.path());
        assert!(matches!(packs.get(&key(9)), Got::Found { payload, .. } if payload == big));
    }

    fn spread(i: u32) -> Key {
        Key(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    /// A finished segment of an entry for each key of `keys` at `time`, `len` bytes of
    /// payload each ([`payload`]), and its index, written by the first process to read
    /// it whole.
    fn indexed_segment(
        dir: &Path,
        keys: impl IntoIterator<Item = u32>,
        time: u64,
        len: usize,
    ) -> PathBuf {
        let records: Vec<Vec<u8>> = keys
            .into_iter()
            .map(|i| encode(Kind::Entry, time, &spread(i), &payload(i, time, len)).unwrap())
            .collect();
        let path = segment(dir, &records);
        let _ = Packs::new(dir).get(&spread(u32::MAX));
        assert!(super::super::layout::pack_index_path(dir, &path).exists());
        path
    }

    /// The payload of key `i`'s entry at `time`: which entry a lookup found shows.
    fn payload(i: u32, time: u64, len: usize) -> Vec<u8> {
        let mut unit = i.to_le_bytes().to_vec();
        unit.extend_from_slice(&time.to_le_bytes());
        unit.repeat(len / unit.len())
    }

    /// Each key of `0..n`: the payload found, or `None` for a miss.
    fn answers(packs: &Packs, n: u32) -> Vec<Option<Vec<u8>>> {
        (0..n).map(|i| answer(packs, i)).collect()
    }

    fn answer(packs: &Packs, i: u32) -> Option<Vec<u8>> {
        match packs.get(&spread(i)) {
            Got::Found { payload, .. } => Some(payload),
            Got::Missing => None,
            Got::Damaged => panic!("key {i} damaged"),
        }
    }

    /// What a process holds: its maps, the indexes outside them (searched where they
    /// lie), and how many indexes a kept map not read yet names.
    fn held(packs: &Packs) -> (usize, usize, usize) {
        let st = packs.state.lock().unwrap();
        let kept = st.kept.as_ref().map_or(0, |k| k.segs.len());
        (st.mapped.len(), st.unmapped.len(), kept)
    }

    /// A fresh process once it has read the segments (no map made).
    fn read_fresh(dir: &Path) -> (Packs, (usize, usize, usize)) {
        let packs = Packs::new(dir);
        packs.warm(false);
        let held = held(&packs);
        (packs, held)
    }

    /// Keys 0..300 at time 1 in one segment, 200..500 at time 2 in another (the newer
    /// wins for 200..300), and what a lookup of each of 0..600 finds.
    fn two_segments(dir: &Path) -> (PathBuf, PathBuf, Vec<Option<Vec<u8>>>) {
        let a = indexed_segment(dir, 0..300, 1, 300);
        let b = indexed_segment(dir, 200..500, 2, 300);
        let expected = (0..600)
            .map(|i| match i {
                0..200 => Some(payload(i, 1, 300)),
                200..500 => Some(payload(i, 2, 300)),
                _ => None,
            })
            .collect();
        (a, b, expected)
    }

    #[test]
    fn a_map_made_once_is_kept_and_later_processes_look_up_in_it_with_the_same_answers() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, expected) = two_segments(dir.path());
        let map = super::super::layout::pack_map_path(dir.path());
        let (before, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 2, 0), "no map kept yet");
        assert!(!map.exists());
        before.warm(true);
        assert!(map.exists(), "the warm-up keeps the map it made");
        let kept_bytes = std::fs::read(&map).unwrap();
        assert_eq!(held(&before), (1, 0, 0));
        assert_eq!(answers(&before, 600), expected);

        // A process of a few lookups searches the indexes the map names where they lie
        // (keys in both among them: the newer entry wins).
        let (few, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 2, 2), "the kept map found, not read");
        for i in (0..20).chain(190..230) {
            assert_eq!(answer(&few, i), expected[i as usize], "key {i}");
        }
        assert_eq!(held(&few), (0, 2, 2));
        // One of many reads it (a warm-up, or more lookups than a search is for).
        let (warmed, _) = read_fresh(dir.path());
        warmed.warm(true);
        assert_eq!(held(&warmed), (1, 0, 0), "the kept map, made by no one");
        assert_eq!(
            std::fs::read(&map).unwrap(),
            kept_bytes,
            "and kept as it was"
        );
        assert_eq!(answers(&warmed, 600), expected);
        assert_eq!(answers(&few, 600), expected);
        assert_eq!(held(&few), (1, 0, 0));
        // This process's newer entry wins over the kept map's.
        warmed.append(Kind::Entry, &spread(7), 9, b"own").unwrap();
        assert_eq!(answers(&warmed, 8)[7], Some(b"own".to_vec()));
    }

    #[test]
    fn a_kept_map_is_not_used_when_damaged_or_when_an_index_it_names_is_not_there() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, expected) = two_segments(dir.path());
        let map = super::super::layout::pack_map_path(dir.path());
        Packs::new(dir.path()).warm(true);
        let kept = std::fs::read(&map).unwrap();

        // Its slots damaged: found when the map is read, which then is removed.
        flip(&map, kept.len() as u64 - 40);
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 2, 2));
        assert_eq!(answers(&packs, 600), expected);
        assert_eq!(held(&packs), (1, 0, 0), "both indexes mapped again");
        assert!(!map.exists());
        std::fs::write(&map, &kept).unwrap();
        flip(&map, kept.len() as u64 - 40);
        let (packs, _) = read_fresh(dir.path());
        packs.warm(true);
        assert_eq!(held(&packs), (1, 0, 0));
        assert_eq!(answers(&packs, 600), expected);
        assert!(
            !map.exists(),
            "removed, not kept again by the build that found it"
        );

        // Its slots and an index it names damaged (the index's own check intact): that
        // index is refused when the map is, and its segment scanned before the next
        // answer (else keys 200..300 would be found at time 1, in the other segment).
        std::fs::write(&map, &kept).unwrap();
        flip(&map, kept.len() as u64 - 40);
        let b_index = super::super::layout::pack_index_path(dir.path(), &b);
        let b_kept = std::fs::read(&b_index).unwrap();
        flip(&b_index, (INDEX_LIST_AT + 3) as u64);
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 2, 2), "taken on the map's word");
        assert_eq!(answers(&packs, 600), expected);
        // The same, found by a warm-up: the index it refuses is not mapped, and its
        // segment is scanned before the first answer.
        std::fs::write(&map, &kept).unwrap();
        flip(&map, kept.len() as u64 - 40);
        std::fs::write(&b_index, &b_kept).unwrap();
        flip(&b_index, (INDEX_LIST_AT + 3) as u64);
        let (packs, _) = read_fresh(dir.path());
        packs.warm(true);
        assert_eq!(held(&packs), (1, 0, 0), "the other index mapped");
        assert_eq!(answers(&packs, 600), expected);
        std::fs::write(&b_index, &b_kept).unwrap();

        // A name damaged: it names no index there, and the map is not taken.
        std::fs::write(&map, &kept).unwrap();
        flip(&map, 16);
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 2, 0));
        assert_eq!(answers(&packs, 600), expected);

        // An index gone: its segment is scanned (which writes its index again), the map
        // is not used.
        std::fs::write(&map, &kept).unwrap();
        std::fs::remove_file(&b_index).unwrap();
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 1, 0));
        assert_eq!(answers(&packs, 600), expected);
        assert!(b_index.exists());

        // A segment gone (removed by hand, or by a pflow before kept maps): the other's
        // index is checked and searched.
        std::fs::remove_file(&a).unwrap();
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 1, 0));
        let mut only_b: Vec<Option<Vec<u8>>> = expected;
        only_b[..200].fill(None);
        only_b[200..300]
            .iter_mut()
            .zip(200..)
            .for_each(|(p, i)| *p = Some(payload(i, 2, 300)));
        assert_eq!(answers(&packs, 600), only_b);
    }

    #[test]
    fn a_damaged_entry_of_an_index_the_kept_map_vouched_for_is_refused_from_the_next_process_on() {
        let dir = tempfile::tempdir().unwrap();
        let (a, _, expected) = two_segments(dir.path());
        let map = super::super::layout::pack_map_path(dir.path());
        Packs::new(dir.path()).warm(true);
        assert!(map.exists());
        // In the older segment's index, key 250's entry (time 1, b has it at time 2)
        // gets a later time: taken on the map's word and searched where it lies (a
        // build of a few lookups), it outranks b's entry.
        let a_index = super::super::layout::pack_index_path(dir.path(), &a);
        let mut bytes = std::fs::read(&a_index).unwrap();
        let at = (0..300)
            .map(|j| INDEX_LIST_AT + j * INDEX_ENTRY)
            .find(|&at| bytes[at..at + 32] == spread(250).0)
            .unwrap();
        bytes[at + 44..at + 52].copy_from_slice(&100u64.to_le_bytes());
        std::fs::write(&a_index, &bytes).unwrap();

        let (packs, _) = read_fresh(dir.path());
        assert!(matches!(packs.get(&spread(250)), Got::Damaged));
        assert!(!map.exists(), "the map that vouched for the index is gone");
        // The next process checks that index, refuses it and scans its segment.
        let (packs, _) = read_fresh(dir.path());
        assert_eq!(answers(&packs, 600), expected);
    }

    #[test]
    fn removing_a_segment_with_an_index_takes_the_kept_map_and_one_without_leaves_it() {
        let dir = tempfile::tempdir().unwrap();
        let (_, b, _) = two_segments(dir.path());
        let small = segment(
            dir.path(),
            &[encode(Kind::Entry, 1, &key(1), b"x").unwrap()],
        );
        let map = super::super::layout::pack_map_path(dir.path());
        Packs::new(dir.path()).warm(true);
        remove_segment(dir.path(), &small).unwrap();
        assert!(
            map.exists(),
            "a segment without an index is named by no map"
        );
        // Indexed after the map was kept: the map does not name it, and stays.
        let later = indexed_segment(dir.path(), 700..750, 5, 1400);
        remove_segment(dir.path(), &later).unwrap();
        assert!(map.exists(), "a segment the map does not name leaves it");
        remove_segment(dir.path(), &b).unwrap();
        assert!(!map.exists());
    }

    #[test]
    fn a_kept_map_is_made_again_once_the_indexes_it_does_not_name_hold_an_eighth_as_many() {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, mut expected) = two_segments(dir.path()); // 600 entries
        let map = super::super::layout::pack_map_path(dir.path());
        Packs::new(dir.path()).warm(true);
        let kept = std::fs::read(&map).unwrap();

        // 50 more entries (under 75), newer ones for keys 0..10 among them: mapped by
        // the warm-up, not kept.
        indexed_segment(dir.path(), (0..10).chain(600..640), 3, 1400);
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 3, 2));
        packs.warm(true);
        assert_eq!(held(&packs), (2, 0, 0));
        assert_eq!(std::fs::read(&map).unwrap(), kept);
        expected.resize(640, None);
        for i in (0..10).chain(600..640) {
            expected[i as usize] = Some(payload(i, 3, 1400));
        }
        assert_eq!(answers(&packs, 640), expected);

        // 100 (over 75), newer ones for 250..260 among them: the map of all four is
        // kept, and gives the newest entry of each key.
        indexed_segment(dir.path(), (250..260).chain(640..680), 4, 1400);
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 4, 2));
        packs.warm(true);
        assert_ne!(std::fs::read(&map).unwrap(), kept);
        expected.resize(680, None);
        for i in (250..260).chain(640..680) {
            expected[i as usize] = Some(payload(i, 4, 1400));
        }
        let (packs, seen) = read_fresh(dir.path());
        assert_eq!(seen, (0, 4, 4));
        packs.warm(true);
        assert_eq!(held(&packs), (1, 0, 0));
        assert_eq!(answers(&packs, 680), expected);
    }

    #[test]
    fn a_process_that_merged_segments_keeps_no_map_naming_them() {
        let dir = tempfile::tempdir().unwrap();
        let n = MERGE_AT as u32;
        for i in 0..n - 1 {
            indexed_segment(dir.path(), i * 100..i * 100 + 100, 1, 700);
        }
        let map = super::super::layout::pack_map_path(dir.path());
        Packs::new(dir.path()).warm(true);
        assert!(map.exists());
        // One more, with its index (as a merge writes one): enough for a merge, and a
        // map kept now would name the segments it takes.
        let records: Vec<u8> = ((n - 1) * 100..n * 100)
            .flat_map(|i| encode(Kind::Entry, 1, &spread(i), &payload(i, 1, 700)).unwrap())
            .collect();
        write_segment(dir.path(), &records).unwrap();
        let packs = Packs::new(dir.path());
        packs.warm(true);
        assert!(packs.state.lock().unwrap().merged, "the segments were due");
        assert!(!map.exists());
        let expected: Vec<_> = (0..n * 100).map(|i| Some(payload(i, 1, 700))).collect();
        assert_eq!(answers(&Packs::new(dir.path()), n * 100), expected);
    }
}
