//! The check a record carries to tell that it was read back as written: torn by a
//! crash, cut short or damaged on disk, it is refused and rebuilt.
//!
//! A checksum, not an identity: content is named by BLAKE3 everywhere (keys, digests,
//! the workflow's fingerprint), and a record is only ever compared with its own check.
//! XXH3's 128 bits catch damage as surely for that and cost a fraction of BLAKE3 per byte:
//! the no-op and edit records of a 10,000-node workflow are a megabyte each, read on
//! every build and written after every edit.

use std::io::Write;
use xxhash_rust::xxh3::Xxh3Default;

/// Bytes of a check.
pub const LEN: usize = 16;

/// A writer that passes its bytes on and checks them as they go: [`Checked::finish`]
/// writes their check after them.
pub struct Checked<W: Write> {
    out: W,
    check: Xxh3Default,
}

impl<W: Write> Checked<W> {
    pub fn new(out: W) -> Checked<W> {
        Checked {
            out,
            check: Xxh3Default::new(),
        }
    }

    /// Write the check of everything written so far.
    pub fn finish(mut self) -> std::io::Result<()> {
        let check = self.check.digest128().to_le_bytes();
        self.out.write_all(&check)
    }
}

impl<W: Write> Write for Checked<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        self.check.update(buf.get(..n).unwrap_or_default());
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// The check of `bytes`.
pub fn of(bytes: &[u8]) -> [u8; LEN] {
    xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes()
}

/// What comes before the check `bytes` end with, if that check holds.
pub fn verified(bytes: &[u8]) -> Option<&[u8]> {
    let (body, check) = bytes.split_at(bytes.len().checked_sub(LEN)?);
    (of(body) == *check).then_some(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_check_as_the_whole_and_any_change_shows() {
        let text = b"a record of some length, written in pieces".repeat(50);
        let mut written = Vec::new();
        let mut w = Checked::new(&mut written);
        for piece in text.chunks(37) {
            w.write_all(piece).unwrap();
        }
        w.finish().unwrap();
        assert_eq!(written.len(), text.len() + LEN);
        assert_eq!(written[text.len()..], of(&text));
        assert_eq!(verified(&written), Some(&text[..]));
        let mut damaged = written.clone();
        damaged[1000] ^= 1;
        assert_eq!(verified(&damaged), None);
        assert_eq!(verified(&written[..written.len() - 1]), None);
        assert_eq!(verified(&written[..LEN - 1]), None, "shorter than a check");
    }
}
