//! The key map of the finished segments' indexes, kept on disk (`state/packs.map`), so
//! that a build that looks up many keys reads it instead of making it.
//!
//! A build that looks up more than a few keys puts every entry of every segment index
//! in a map of its own ([`super::pack`], through [`KeySlots`]): about 64 ns an entry, so
//! a cache holding 22 earlier builds of a 10,000-node workflow cost each build 14 ms of
//! CPU (and the indexes' checks 4 ms more) before its first lookup, the same every
//! time. The map depends only on the indexes it was made from, and an index is never
//! written over (a segment's name is never reused, and its index is only ever the list
//! of its finished records), so a map made once serves every later build while those
//! indexes stand: it names each index it numbered (its segment's file name, its entry
//! count and its trailing check), in the order it numbered them, then the slots.
//!
//! It is only a map: a lookup still reads the entry the slot numbers from its index,
//! compares the whole key, and reads the record and checks it, as with a map made in
//! memory. A map whose own check fails, or that names an index not there as named (a
//! merge, `gc` or `verify --fix` removed its segment), is not used: that build makes
//! the map in memory as before, and writes it here for the next. Written by rename
//! (never over the file another process reads) and not synced: a torn one fails its
//! check.
//!
//! The indexes it names are taken on its word: their trailing check and count must
//! match, but their entries are not checked again (that was 4 ms of the 14), nor their
//! order, on which a search where they lie relies. An index damaged on disk after the
//! map was made can then hide entries (a miss, the node runs again; or an older entry
//! of the same key in another segment, as right as the newer: keys are
//! content-addressed), never give another key's result, as each record is checked.
//! Damage a lookup meets (a record not where the index said) has that index checked
//! whole: one that fails takes the map away (`Packs::check_index_of`), and the next
//! process, without a kept map, refuses it and scans its segment; damage no lookup
//! meets lasts until a merge or `gc` removes the segment.
//!
//! | bytes | field |
//! |---|---|
//! | 8 | `PFMAP1\n\0` |
//! | 4 | indexes named (little endian, as every number) |
//! | each | 2: name length; the name; 4: entry count; 16: the index's trailing check |
//! | 8 | slots |
//! | 8 each | the slots ([`KeySlots::raw`]) |
//! | 16 | check of everything before ([`super::checksum`]) |

use super::checksum;
use super::key_slots::KeySlots;
use super::layout::pack_map_path;
use super::table::Reader;
use std::path::Path;

const HEADER: &[u8; 8] = b"PFMAP1\n\0";

/// An index a map numbered: its entries are numbers `first..first + count`, in the order
/// of the map's list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Numbered {
    /// The file name of its segment.
    pub segment: String,
    pub count: u32,
    /// The index file's own trailing check: another index under the same name (none
    /// should ever be) is not this one.
    pub check: [u8; checksum::LEN],
}

/// A map found on disk: the indexes it names, read at once; its slots, read and
/// checked only when a build needs the map ([`Kept::slots`]). Until then a build
/// searches the indexes it names where they lie, as it does any index, and a build of
/// a few lookups (an edit near the end) never reads the 4 MB of slots: reading,
/// checking and copying them cost such a build 3.7 ms.
#[derive(Debug)]
pub struct Kept {
    bytes: std::sync::Arc<crate::fsutil::Bytes>,
    pub indexes: Vec<Numbered>,
    /// Where the slot count is.
    slots_at: usize,
}

impl Kept {
    /// The slots, read where the file holds them, if the whole file holds its check and
    /// they are a table every probe ends in ([`KeySlots::from_kept`]).
    pub fn slots(&self) -> Option<KeySlots> {
        let body = checksum::verified(&self.bytes)?;
        let mut at = Reader::new(body, self.slots_at);
        let slots = usize::try_from(at.u64()?).ok()?;
        let raw = at.take(slots.checked_mul(8)?)?;
        if at.remaining() != 0 {
            return None;
        }
        KeySlots::from_kept(self.bytes.clone(), at.offset() - raw.len(), slots)
    }
}

/// The map kept in the cache at `root`, if there is one whose list of indexes reads
/// (the rest is checked by [`Kept::slots`]). The names are taken unchecked: an index is
/// only taken on the map's word when its own trailing check is the one named, which
/// damage to the map cannot make up.
pub fn read(root: &Path) -> Option<Kept> {
    let bytes = crate::fsutil::read_bytes_sparsely(&pack_map_path(root)).ok()?;
    let (indexes, slots_at) = names(&bytes)?;
    Some(Kept {
        bytes: std::sync::Arc::new(bytes),
        indexes,
        slots_at,
    })
}

/// Store the map of `indexes` (numbered in that order) and `slots`. Best effort: without
/// it the next build makes the map in memory.
pub fn write(root: &Path, indexes: &[Numbered], slots: &KeySlots) {
    let _ = crate::fsutil::write_atomic_by(&pack_map_path(root), false, |w| {
        let mut w = checksum::Checked::new(w);
        use std::io::Write;
        w.write_all(HEADER)?;
        let count = u32::try_from(indexes.len()).map_err(std::io::Error::other)?;
        w.write_all(&count.to_le_bytes())?;
        for n in indexes {
            let name = u16::try_from(n.segment.len()).map_err(std::io::Error::other)?;
            w.write_all(&name.to_le_bytes())?;
            w.write_all(n.segment.as_bytes())?;
            w.write_all(&n.count.to_le_bytes())?;
            w.write_all(&n.check)?;
        }
        let mut raw = slots.raw().peekable();
        w.write_all(&(raw.len() as u64).to_le_bytes())?;
        // In runs, not a `write` per slot: 4 MB of slots for 220,000 entries.
        let mut run = Vec::with_capacity(64 * 1024);
        while raw.peek().is_some() {
            run.clear();
            for s in raw.by_ref().take(8 * 1024) {
                run.extend_from_slice(&s.to_le_bytes());
            }
            w.write_all(&run)?;
        }
        w.finish()
    });
}

/// The indexes a map names, and where its slot count is.
fn names(bytes: &[u8]) -> Option<(Vec<Numbered>, usize)> {
    let mut at = Reader::new(bytes, 0);
    if at.take(HEADER.len())? != HEADER {
        return None;
    }
    let count = at.u32()?;
    let mut indexes = Vec::new();
    for _ in 0..count {
        let len = u16::from_le_bytes(at.array()?);
        let segment = std::str::from_utf8(at.take(len.into())?).ok()?.to_string();
        let count = at.u32()?;
        let check = at.array()?;
        indexes.push(Numbered {
            segment,
            count,
            check,
        });
    }
    Some((indexes, at.offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(segment: &str, count: u32) -> Numbered {
        Numbered {
            segment: segment.into(),
            count,
            check: [count as u8; checksum::LEN],
        }
    }

    /// A file with a good check around `body` (what anyone who can write the cache can
    /// make).
    fn checked(body: &[u8]) -> Vec<u8> {
        let mut bytes = body.to_vec();
        bytes.extend_from_slice(&checksum::of(body));
        bytes
    }

    /// The slots of a map file's bytes, if they read.
    fn slots_of(bytes: &[u8]) -> Option<KeySlots> {
        let (indexes, slots_at) = names(bytes)?;
        let kept = Kept {
            bytes: std::sync::Arc::new(crate::fsutil::Bytes::Owned(bytes.to_vec())),
            indexes,
            slots_at,
        };
        kept.slots()
    }

    #[test]
    fn a_map_reads_back_as_written_and_its_slots_only_whole_and_sound() {
        let dir = tempfile::tempdir().unwrap();
        let mut raw = vec![0u64; 32];
        raw[3] = (7 << 32) | 1;
        raw[20] = (9 << 32) | 2;
        let indexes = [named("a.pack", 1), named("b.pack", 1)];
        write(
            dir.path(),
            &indexes,
            &KeySlots::from_raw(raw.clone()).unwrap(),
        );
        let back = read(dir.path()).unwrap();
        assert_eq!(back.indexes, indexes);
        assert_eq!(back.slots().unwrap().raw().collect::<Vec<_>>(), raw);

        let bytes = std::fs::read(pack_map_path(dir.path())).unwrap();
        let body = &bytes[..bytes.len() - checksum::LEN];
        let mut torn = bytes.clone();
        torn.pop();
        assert!(slots_of(&torn).is_none(), "torn");
        assert_eq!(names(&torn).unwrap().0, indexes, "its names still read");
        // A good check around what does not hold together.
        let slots_at = body.len() - 32 * 8 - 8;
        let mut huge = body.to_vec();
        huge[slots_at..slots_at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(slots_of(&checked(&huge)).is_none(), "more slots than bytes");
        let mut longer = body.to_vec();
        longer.push(0);
        assert!(
            slots_of(&checked(&longer)).is_none(),
            "bytes after the slots"
        );
        let mut full = body.to_vec();
        full[slots_at + 8..].fill(1);
        assert!(slots_of(&checked(&full)).is_none(), "no empty slot");
        let mut other = body.to_vec();
        other[0] = b'X';
        assert!(names(&other).is_none(), "another format");
        let mut many = body.to_vec();
        many[8..12].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(names(&many).is_none(), "more names than bytes");
    }
}
