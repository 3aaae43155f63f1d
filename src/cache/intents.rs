//! Intents: what an effect is about to do, written down before it does it, so that a
//! build killed between the effect and its cache record does not do it twice. The next
//! run of the same key finds the intent, sees the effect already done, and only records
//! it. One file per key under `intents/`, removed once the result is stored.

use super::layout;
use crate::key::Key;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// An append about to happen: `len` bytes with BLAKE3 `digest` at `offset` of `path`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Append {
    pub path: String,
    pub offset: u64,
    pub len: u64,
    pub digest: String,
}

impl Append {
    /// Is this append already in the file?
    pub fn done(&self) -> bool {
        use std::io::{Read, Seek, SeekFrom};
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return false;
        };
        let Ok(len) = usize::try_from(self.len) else {
            return false;
        };
        let mut bytes = vec![0u8; len];
        f.seek(SeekFrom::Start(self.offset)).is_ok()
            && f.read_exact(&mut bytes).is_ok()
            && blake3::hash(&bytes).to_hex().as_str() == self.digest
    }
}

/// The intent file of one key.
#[derive(Debug, Clone)]
pub struct Intent {
    file: PathBuf,
}

impl Intent {
    pub fn of(root: &Path, key: &Key) -> Intent {
        Intent {
            file: layout::intent_path(root, key),
        }
    }

    /// The append an earlier run of this key announced, if it left one.
    pub fn previous(&self) -> Option<Append> {
        serde_json::from_slice(&std::fs::read(&self.file).ok()?).ok()
    }

    /// Announce an append (durably: it must be on disk before the append is).
    pub fn announce(&self, append: &Append) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(append)?;
        crate::fsutil::write_atomic(&self.file, &bytes)
    }

    /// The result is recorded: the intent is no longer needed.
    pub fn settle(&self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_announced_append_is_known_done_once_it_is_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("run.log");
        std::fs::write(&log, "start\n").unwrap();
        let intent = Intent::of(dir.path(), &Key([3; 32]));
        assert_eq!(intent.previous(), None);
        let append = Append {
            path: log.to_string_lossy().into_owned(),
            offset: 6,
            len: 6,
            digest: blake3::hash(b"built\n").to_hex().to_string(),
        };
        intent.announce(&append).unwrap();
        assert_eq!(intent.previous(), Some(append.clone()));
        assert!(!append.done());
        std::fs::write(&log, "start\nbuilt\nmore\n").unwrap();
        assert!(append.done());
        intent.settle();
        assert_eq!(intent.previous(), None);
    }
}
