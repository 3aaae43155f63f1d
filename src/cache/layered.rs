//! The local cache and the remote one, composed: a lookup asks the local cache, then (on
//! a miss or a damaged local entry) the remote, keeps a verified download as an ordinary
//! local entry (with the time it was produced, so `"cache": "<duration>"` ages stay
//! right), and says where the hit came from. Uploads go to the remote when it writes.

use super::remote::{Download, Fetch, Remote};
use super::{Cache, Entry, Imported, ImportedFile, Manifest};
use crate::key::Key;
use serde_json::Value;
use std::sync::Arc;

/// Where a hit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Local,
    /// Downloaded from the remote cache (and now stored locally).
    Remote,
}

/// What [`Layered::push`] did with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Push {
    /// Handed to the remote (which uploads it in the background).
    Sent,
    /// No remote to write to, or nothing readable to send.
    NotSent,
    /// Kept local: it holds a secret value.
    HeldBack,
}

/// The answer to a [`Layered::lookup`].
#[derive(Debug)]
pub enum Lookup {
    /// Boxed: an entry is ten times the size of the other answers, and a hit keeps it.
    Hit(Box<Entry>, Source),
    /// Nothing usable. `note`: the remote had an entry it could not use, and why.
    Miss { note: Option<String> },
    /// Only a damaged local entry, and nothing from the remote.
    Corrupt,
}

#[derive(Debug, Clone)]
pub struct Layered {
    local: Cache,
    remote: Option<Arc<Remote>>,
}

impl Layered {
    pub fn new(local: Cache, remote: Option<Arc<Remote>>) -> Layered {
        Layered { local, remote }
    }

    pub fn local(&self) -> &Cache {
        &self.local
    }

    /// The local entry for `key`, else the remote's, if it names only files the node
    /// may touch (see [`Remote::fetch`]).
    pub fn lookup(&self, key: &Key, may_touch: &dyn Fn(&str) -> bool) -> Lookup {
        let local = self.local.lookup(key);
        if let Ok(Some(entry)) = local {
            return Lookup::Hit(Box::new(entry), Source::Local);
        }
        let not_here = || match local {
            Err(_) => Lookup::Corrupt,
            Ok(_) => Lookup::Miss { note: None },
        };
        let Some(remote) = self.remote.as_ref().filter(|r| r.active()) else {
            return not_here();
        };
        match remote.fetch(key, may_touch) {
            Fetch::Hit(dl) => match self.local.import(key, imported(*dl)) {
                Ok(Some(entry)) => Lookup::Hit(Box::new(entry), Source::Remote),
                Ok(None) | Err(_) => not_here(),
            },
            Fetch::Miss => not_here(),
            Fetch::Unusable(why) => match not_here() {
                Lookup::Miss { .. } => Lookup::Miss { note: Some(why) },
                other => other,
            },
        }
    }

    /// Does a stored result go to the remote too (one configured for writing, still in
    /// use)? Each upload is a few blocking requests.
    pub fn uploads(&self) -> bool {
        self.uploading().is_some()
    }

    /// The remote a stored result goes to, if any.
    fn uploading(&self) -> Option<&Arc<Remote>> {
        self.remote.as_ref().filter(|r| r.writes() && r.active())
    }

    /// Upload a result just stored locally, when the remote is configured for writing.
    /// `outputs` are the values given to [`Cache::store`]; the files' content is read
    /// back from the local cache (verified). Best effort: problems become remote warnings.
    /// A result whose values or files hold a secret value stays local: a shared remote is
    /// read by every machine and person with its URL.
    pub fn push(
        &self,
        key: &Key,
        manifest: &Manifest,
        outputs: &Value,
        secrets: &crate::secrets::Redactor,
    ) -> Push {
        let Some(remote) = self.uploading() else {
            return Push::NotSent;
        };
        let Ok(bytes) = serde_json::to_vec(outputs) else {
            return Push::NotSent;
        };
        let Some(files) = self.local.written_files(manifest) else {
            return Push::NotSent;
        };
        // In the values as well as in their JSON, where a secret with a quote, a
        // backslash or a control character in it is escaped (and not found as it is).
        if secrets.finds_in(&bytes)
            || secrets.finds_in_value(outputs)
            || files.iter().any(|f| secrets.finds_in(f))
        {
            return Push::HeldBack;
        }
        remote.upload(key, manifest, bytes, files);
        Push::Sent
    }

    /// The warnings the remote produced since the last call.
    pub fn take_warnings(&self) -> Vec<String> {
        self.remote
            .as_ref()
            .map(|r| r.take_warnings())
            .unwrap_or_default()
    }

    /// The remote's figures since the last call (zero without a remote).
    pub fn take_remote_counts(&self) -> super::remote::Counts {
        self.remote
            .as_ref()
            .map(|r| r.take_counts())
            .unwrap_or_default()
    }
}

/// Permission bits another machine recorded, as this one takes them: never writable by
/// others than the owner, always readable and writable by the owner (a file it cannot
/// read would fail its check and be put back on every build).
fn from_elsewhere(mode: u32) -> u32 {
    (mode & 0o755) | 0o600
}

/// A verified download as the local cache takes it.
fn imported(dl: Download) -> Imported {
    Imported {
        node: dl.entry.node,
        output_digest: dl.entry.output_digest,
        duration_ms: dl.entry.duration_ms,
        run_id: dl.entry.run_id,
        time_ms: dl.entry.time_ms,
        outputs: dl.outputs,
        removed: dl.entry.removed,
        files: dl
            .files
            .into_iter()
            .map(|(f, bytes)| ImportedFile {
                path: f.path,
                digest: f.digest,
                bytes,
                mode: f.mode.map(from_elsewhere),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn modes_from_elsewhere_are_tamed() {
        assert_eq!(super::from_elsewhere(0o4777), 0o755);
        assert_eq!(super::from_elsewhere(0o000), 0o600);
        assert_eq!(super::from_elsewhere(0o750), 0o750);
        assert_eq!(super::from_elsewhere(0o664), 0o644);
    }
}
