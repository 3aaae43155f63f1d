//! The check a record carries to tell that it was read back as written: torn by a
//! crash, cut short or damaged on disk, it is refused and rebuilt.
//!
//! A checksum, not an identity: content is named by BLAKE3 everywhere (keys, digests,
//! the workflow's fingerprint), and a record is only ever compared with its own check.
//! XXH3's 128 bits catch damage as surely for that and cost a fraction of BLAKE3 per byte:
//! the no-op and edit records of a 10,000-node workflow are a megabyte each, read on
//! every build and written after every edit.

use xxhash_rust::xxh3::Xxh3Default;

/// Bytes of a check.
pub const LEN: usize = 16;

/// A check computed over pieces written one after another.
pub struct Check(Xxh3Default);

impl Check {
    pub fn new() -> Check {
        Check(Xxh3Default::new())
    }

    pub fn update(&mut self, piece: &[u8]) {
        self.0.update(piece);
    }

    pub fn finish(&self) -> [u8; LEN] {
        self.0.digest128().to_le_bytes()
    }
}

impl Default for Check {
    fn default() -> Check {
        Check::new()
    }
}

/// The check of `bytes`.
pub fn of(bytes: &[u8]) -> [u8; LEN] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_check_as_the_whole_and_any_change_shows() {
        let text = b"a record of some length, written in pieces".repeat(50);
        let mut c = Check::new();
        for piece in text.chunks(37) {
            c.update(piece);
        }
        assert_eq!(c.finish(), of(&text));
        let mut damaged = text.clone();
        damaged[1000] ^= 1;
        assert_ne!(of(&damaged), of(&text));
        assert_ne!(of(&text[..text.len() - 1]), of(&text));
    }
}
