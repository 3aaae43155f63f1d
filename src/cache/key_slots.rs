//! Node keys to numbers, 8 bytes a key: the map a build looks cache keys up in once it
//! looks up many ([`super::pack`] numbers the entries of the segment indexes and keeps
//! the entries themselves where they lie, in the mapped index files).
//!
//! Open addressing with linear probing, at most three quarters of the slots full (a
//! miss reads a cache line or two of slots before an empty one). A slot holds the
//! number and 4 bytes of its key (after the first 8, which chose the slot), so that a
//! lookup passes over the slots of other keys without reading their entries; only when
//! those 4 bytes match does it ask for the number's key. A hash map of the keys and
//! the places of their records took about seven times the memory, all of it fresh
//! memory that the kernel zeroes (figures in the README's "An edit near the start").

use crate::key::Key;

#[derive(Debug, Default, Clone)]
pub struct KeySlots {
    /// 0: empty; else the key's bytes 8..12 (high half) and the number + 1.
    slots: Vec<u64>,
    /// Or the slots of a map kept on disk, read where they lie (`slots` is then empty)
    /// until a number is put in: copying them was most of reading a kept map (32 MB of
    /// fresh memory for a cache of a hundred builds of 10,000 nodes).
    kept: Option<Kept>,
    /// Slots in use.
    filled: usize,
}

/// Slots as a kept map's file holds them: `count` of them from byte `at`, 8 bytes each,
/// little endian.
#[derive(Debug, Clone)]
struct Kept {
    bytes: std::sync::Arc<crate::fsutil::Bytes>,
    at: usize,
    count: usize,
}

impl Kept {
    fn slot(&self, i: usize) -> Option<u64> {
        let from = self.at.checked_add(i.checked_mul(8)?)?;
        let bytes = self.bytes.get(from..from.checked_add(8)?)?;
        Some(u64::from_le_bytes(bytes.try_into().ok()?))
    }
}

/// Slots of a part (see [`KeySlots::part_of`]): 128 KB.
const PART_SLOTS: usize = 16 * 1024;

/// The largest number a slot holds.
pub const MAX_NUMBER: u32 = u32::MAX - 1;

impl KeySlots {
    /// Numbers held.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// How many slots there are.
    fn count(&self) -> usize {
        self.kept.as_ref().map_or(self.slots.len(), |k| k.count)
    }

    /// Slot `i`.
    fn slot(&self, i: usize) -> Option<u64> {
        match &self.kept {
            Some(k) => k.slot(i),
            None => self.slots.get(i).copied(),
        }
    }

    /// Kept slots copied to change them.
    fn own(&mut self) {
        if let Some(k) = self.kept.take() {
            self.slots = (0..k.count).map(|i| k.slot(i).unwrap_or(0)).collect();
        }
    }

    /// Make room for `more` numbers, placing the ones held again if the slots grow
    /// (`key_of` tells a number's key).
    pub fn reserve(&mut self, more: usize, key_of: impl Fn(u32) -> Option<Key>) {
        self.own();
        let n = self.filled.saturating_add(more);
        let size = n.saturating_add(n / 3 + 1).next_power_of_two().max(16);
        if size <= self.slots.len() {
            return;
        }
        let old = std::mem::replace(&mut self.slots, vec![0; size]);
        self.filled = 0;
        let mask = size - 1;
        for slot in old.into_iter().filter(|s| *s != 0) {
            let Some(key) = number(slot).and_then(&key_of) else {
                continue;
            };
            let (mut i, _) = place(&key, mask);
            while self.slots.get(i).is_some_and(|s| *s != 0) {
                i = (i + 1) & mask;
            }
            if let Some(s) = self.slots.get_mut(i) {
                *s = slot;
                self.filled += 1;
            }
        }
    }

    /// Hold `n` (at most [`MAX_NUMBER`]) for `key`, unless a number is held for it that
    /// `keep(held)` says stays. Call [`KeySlots::reserve`] first: a full map takes
    /// nothing.
    pub fn insert(
        &mut self,
        key: &Key,
        n: u32,
        key_of: impl Fn(u32) -> Option<Key>,
        keep: impl Fn(u32) -> bool,
    ) {
        if n > MAX_NUMBER {
            return;
        }
        self.own();
        let full = self.full();
        let Some(mask) = self.slots.len().checked_sub(1) else {
            return;
        };
        let (mut i, tag) = place(key, mask);
        let new = (u64::from(tag) << 32) | u64::from(n + 1);
        loop {
            let Some(slot) = self.slots.get_mut(i) else {
                return;
            };
            if *slot == 0 {
                if !full {
                    *slot = new;
                    self.filled += 1;
                }
                return;
            }
            if (*slot >> 32) as u32 == tag {
                if let Some(held) = number(*slot) {
                    if key_of(held).as_ref() == Some(key) {
                        if !keep(held) {
                            *slot = new;
                        }
                        return;
                    }
                }
            }
            i = (i + 1) & mask;
        }
    }

    /// Which run of [`PART_SLOTS`] slots `key`'s first slot lies in, below
    /// [`KeySlots::parts`]: entries put in the map part by part write to a few hundred
    /// KB at a time, which the CPU's caches hold.
    pub fn part_of(&self, key: &Key) -> usize {
        self.count()
            .checked_sub(1)
            .map_or(0, |mask| place(key, mask).0 / PART_SLOTS)
    }

    /// How many parts [`KeySlots::part_of`] divides the slots into (one for fewer
    /// than [`PART_SLOTS`]).
    pub fn parts(&self) -> usize {
        (self.count() / PART_SLOTS).max(1)
    }

    /// The slots as they are, to keep on disk ([`super::index_map`]).
    pub fn raw(&self) -> impl ExactSizeIterator<Item = u64> + '_ {
        (0..self.count()).map(|i| self.slot(i).unwrap_or(0))
    }

    /// Slots kept by [`KeySlots::raw`], if they can be: none, or a power of two of them
    /// from 16, at most three quarters in use (a probe ends at an empty slot; a full table never would).
    pub fn from_raw(slots: Vec<u64>) -> Option<KeySlots> {
        let filled = slots.iter().filter(|s| **s != 0).count();
        let n = slots.len();
        let shaped = n == 0 || (n >= 16 && n.is_power_of_two() && filled <= n - n / 4);
        shaped.then_some(KeySlots {
            slots,
            kept: None,
            filled,
        })
    }

    /// [`KeySlots::from_raw`] of the `count` slots that `bytes` holds from byte `at`
    /// ([`KeySlots::raw`], little endian), read where they lie.
    pub fn from_kept(
        bytes: std::sync::Arc<crate::fsutil::Bytes>,
        at: usize,
        count: usize,
    ) -> Option<KeySlots> {
        let raw = bytes.get(at..at.checked_add(count.checked_mul(8)?)?)?;
        let filled = raw
            .chunks_exact(8)
            .map(|s| u64::from_le_bytes(s.try_into().unwrap_or_default()))
            .filter(|&s| s != 0)
            .count();
        let shaped =
            count == 0 || (count >= 16 && count.is_power_of_two() && filled <= count - count / 4);
        shaped.then_some(KeySlots {
            slots: Vec::new(),
            kept: Some(Kept { bytes, at, count }),
            filled,
        })
    }

    /// Three quarters of the slots are in use (an empty slot ends every probe).
    fn full(&self) -> bool {
        self.filled >= self.slots.len() - self.slots.len() / 4
    }

    /// The number held for `key`.
    pub fn find(&self, key: &Key, key_of: impl Fn(u32) -> Option<Key>) -> Option<u32> {
        let mask = self.count().checked_sub(1)?;
        let (mut i, tag) = place(key, mask);
        loop {
            let slot = self.slot(i)?;
            if slot == 0 {
                return None;
            }
            if (slot >> 32) as u32 == tag {
                let n = number(slot)?;
                if key_of(n).as_ref() == Some(key) {
                    return Some(n);
                }
            }
            i = (i + 1) & mask;
        }
    }
}

/// A key's first slot and the 4 bytes after its first 8 that a slot keeps. The slot is
/// the top bits of the key's first 8 bytes read as a big-endian number (keys are BLAKE3
/// digests, spread evenly), so slots follow the keys' byte order: the entries of a
/// segment index, sorted by key, go into the map one after another through its slots
/// instead of each to a random one (a cache miss each, most of putting 400,000 keys in
/// the map).
fn place(key: &Key, mask: usize) -> (usize, u32) {
    let head = key
        .0
        .first_chunk::<8>()
        .map_or(0, |b| u64::from_be_bytes(*b));
    let bits = mask.count_ones();
    let slot = head.checked_shr(64 - bits).unwrap_or(0) as usize & mask;
    let tag = key.0.get(8..12).and_then(|b| b.try_into().ok());
    (slot, tag.map_or(0, u32::from_le_bytes))
}

/// The number a slot in use holds.
fn number(slot: u64) -> Option<u32> {
    (slot as u32).checked_sub(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys that share their first 12 bytes (the slot and the kept 4 bytes) and differ
    /// after, so every lookup must read the number's key to tell them apart.
    fn alike(i: u32) -> Key {
        let mut k = [7u8; 32];
        k[28..].copy_from_slice(&i.to_le_bytes());
        Key(k)
    }

    fn spread(i: u32) -> Key {
        Key(*blake3::hash(&i.to_le_bytes()).as_bytes())
    }

    #[test]
    fn finds_each_key_it_holds_and_no_other_across_growth() {
        for make in [alike as fn(u32) -> Key, spread] {
            let keys: Vec<Key> = (0..450).map(make).collect();
            let key_of = |n: u32| keys.get(n as usize).copied();
            let mut slots = KeySlots::default();
            // Grown at each of three steps, so held numbers are placed again.
            for (step, part) in keys.chunks(150).enumerate() {
                slots.reserve(part.len(), key_of);
                assert_eq!(slots.slots.len(), [256, 512, 1024][step]);
                for (j, k) in part.iter().enumerate() {
                    slots.insert(k, (step * 150 + j) as u32, key_of, |_| false);
                }
            }
            assert_eq!(slots.len(), 450);
            for (n, k) in keys.iter().enumerate() {
                assert_eq!(slots.find(k, key_of), Some(n as u32));
            }
            assert_eq!(slots.find(&make(1000), key_of), None);
        }
    }

    #[test]
    fn keys_at_the_end_of_the_slots_wrap_to_the_start_in_any_order() {
        // Eight keys whose first slot is the last of 16, and one more like them not put
        // in: probing runs past the end to slot 0 and on.
        let at_end = |i: u8| {
            let mut k = [0xff; 32];
            k[31] = i;
            Key(k)
        };
        let keys: Vec<Key> = (0..8).map(at_end).collect();
        let key_of = |n: u32| keys.get(n as usize).copied();
        for order in [[0, 1, 2, 3, 4, 5, 6, 7], [7, 3, 5, 0, 6, 2, 4, 1]] {
            let mut slots = KeySlots::default();
            slots.reserve(8, key_of);
            assert_eq!(slots.slots.len(), 16);
            for n in order {
                slots.insert(&keys[n], n as u32, key_of, |_| false);
            }
            for n in 0..8u32 {
                assert_eq!(slots.find(&keys[n as usize], key_of), Some(n));
            }
            assert_eq!(slots.find(&at_end(8), key_of), None);
        }
    }

    #[test]
    fn slots_and_parts_follow_the_keys_order() {
        let mut keys: Vec<Key> = (0..2000).map(spread).collect();
        keys.sort_by_key(|k| k.0);
        for bits in 4..=20 {
            let size = 1usize << bits;
            let slots = KeySlots {
                slots: vec![0; size],
                kept: None,
                filled: 0,
            };
            let parts = slots.parts();
            let placed: Vec<usize> = keys.iter().map(|k| place(k, size - 1).0).collect();
            assert!(placed.windows(2).all(|w| w[0] <= w[1]), "{size} slots");
            assert!(placed.iter().all(|&p| p < size));
            let part: Vec<usize> = keys.iter().map(|k| slots.part_of(k)).collect();
            assert!(part.windows(2).all(|w| w[0] <= w[1]));
            assert!(
                part.iter().all(|&p| p < parts),
                "{size} slots, {parts} parts"
            );
        }
    }

    #[test]
    fn a_key_held_twice_keeps_the_number_keep_chooses() {
        // Numbers 0 and 1 are the same key; `keep` keeps the larger number.
        let keys = [spread(1), spread(1), spread(2)];
        let key_of = |n: u32| keys.get(n as usize).copied();
        let mut slots = KeySlots::default();
        slots.reserve(3, key_of);
        slots.insert(&keys[1], 1, key_of, |_| false);
        slots.insert(&keys[0], 0, key_of, |held| held > 0);
        slots.insert(&keys[2], 2, key_of, |_| false);
        assert_eq!(slots.len(), 2);
        assert_eq!(slots.find(&keys[0], key_of), Some(1));
        slots.insert(&keys[0], 0, key_of, |_| false);
        assert_eq!(slots.find(&keys[0], key_of), Some(0));
    }

    #[test]
    fn an_empty_or_full_map_finds_nothing_and_takes_nothing() {
        let key_of = |_: u32| Some(spread(0));
        let mut slots = KeySlots::default();
        assert_eq!(slots.find(&spread(0), key_of), None);
        slots.insert(&spread(0), 0, key_of, |_| false);
        assert_eq!(slots.len(), 0, "no room reserved");
        // Number 40 is key 0 again.
        let keys: Vec<Key> = (0..40).map(spread).chain([spread(0)]).collect();
        let key_of = |n: u32| keys.get(n as usize).copied();
        slots.reserve(8, key_of);
        for (n, k) in keys.iter().enumerate().take(40) {
            slots.insert(k, n as u32, key_of, |_| false);
        }
        assert_eq!(slots.len(), 12, "three quarters of the 16 slots");
        assert_eq!(slots.find(&keys[39], key_of), None);
        // Full, it still takes a newer number for a key it holds.
        slots.insert(&keys[40], 40, key_of, |_| false);
        assert_eq!(slots.find(&keys[0], key_of), Some(40));
        assert_eq!(slots.len(), 12);
    }

    /// Slots holding the first `held` of `keys`, each numbered by its place, with room
    /// for all of them.
    fn holding(keys: &[Key], held: usize) -> KeySlots {
        let key_of = |n: u32| keys.get(n as usize).copied();
        let mut slots = KeySlots::default();
        slots.reserve(keys.len(), key_of);
        for (n, k) in keys.iter().take(held).enumerate() {
            slots.insert(k, n as u32, key_of, |_| false);
        }
        slots
    }

    #[test]
    fn slots_read_where_a_kept_map_holds_them_find_the_same_and_are_copied_once_changed() {
        let keys: Vec<Key> = (0..100).map(spread).collect();
        let key_of = |n: u32| keys.get(n as usize).copied();
        let made = holding(&keys, 90);
        // As a map file holds them: after some other bytes, not on an 8-byte boundary.
        let mut file = vec![7u8; 3];
        file.extend(made.raw().flat_map(u64::to_le_bytes));
        let bytes = std::sync::Arc::new(crate::fsutil::Bytes::Owned(file));
        let count = made.raw().len();
        let mut kept = KeySlots::from_kept(bytes.clone(), 3, count).unwrap();
        assert_eq!(kept.len(), 90);
        assert_eq!(
            kept.raw().collect::<Vec<_>>(),
            made.raw().collect::<Vec<_>>()
        );
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(kept.find(k, key_of), (n < 90).then_some(n as u32));
        }
        // A number put in changes a copy of them.
        kept.insert(&keys[95], 95, key_of, |_| false);
        assert_eq!(kept.find(&keys[95], key_of), Some(95));
        assert_eq!(kept.len(), 91);
        // Past the bytes, or in a shape a probe might not end in: refused.
        assert!(KeySlots::from_kept(bytes.clone(), 4, count).is_none());
        let full = std::sync::Arc::new(crate::fsutil::Bytes::Owned(vec![1; 16 * 8]));
        assert!(KeySlots::from_kept(full, 0, 16).is_none());
    }

    #[test]
    fn kept_slots_are_taken_back_only_in_a_shape_every_probe_ends_in() {
        let keys: Vec<Key> = (0..100).map(spread).collect();
        let key_of = |n: u32| keys.get(n as usize).copied();
        let slots = holding(&keys, keys.len());
        let back = KeySlots::from_raw(slots.raw().collect()).unwrap();
        assert_eq!(back.len(), 100);
        for (n, k) in keys.iter().enumerate() {
            assert_eq!(back.find(k, key_of), Some(n as u32));
        }
        assert_eq!(back.find(&spread(500), key_of), None);

        assert!(KeySlots::from_raw(Vec::new()).is_some_and(|s| s.is_empty()));
        assert!(
            KeySlots::from_raw(vec![0; 24]).is_none(),
            "not a power of two"
        );
        assert!(
            KeySlots::from_raw(vec![1; 8]).is_none(),
            "too few to leave one empty"
        );
        // Full: a probe for a key not held would never meet an empty slot.
        assert!(KeySlots::from_raw(vec![1; 16]).is_none());
        let mut most = vec![1; 12];
        most.resize(16, 0);
        assert!(KeySlots::from_raw(most.clone()).is_some(), "three quarters");
        most[12] = 1;
        assert!(KeySlots::from_raw(most).is_none());
    }
}
