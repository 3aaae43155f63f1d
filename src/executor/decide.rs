//! Hit or run: the one place that decides whether a node, or a batch item, reuses a
//! result, and why. Builds, `--dry-run` and batch items all ask [`decide`].
//!
//! The order: a result this command already produced (a repair attempt re-running the
//! workflow) wins; then a forced run (`--force`, `--rerun`, `cache: false`); then the
//! last build's record (the fast path: no cache I/O at all); then the cache, local and
//! remote. A probe (`--dry-run`) reads only: no recency mark, no download, no restore.

use crate::cache::layered::{Layered, Lookup, Source};
use crate::cache::records::BuildState;
use crate::cache::{now_ms, Entry, FileState};
use crate::key::{explain_change, explain_sealed_change, Key, Short};
use crate::workflow::CachePolicy;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// Why a node may not reuse a cached result in this build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forced {
    /// `--force`
    All,
    /// `--rerun NODE`
    Node,
    /// `"cache": false`
    NoCache,
    /// A read pflow cannot see into (a read-only MCP tool) and no `cache` maximum age.
    Volatile,
}

/// Where a reused result came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HitSource {
    /// Produced earlier in this command (a repair attempt), kept in memory.
    Memo,
    /// The last build's record vouched for it without a cache lookup.
    FastPath,
    Local,
    /// Downloaded from the remote cache (and now stored locally).
    Remote,
}

/// Why a node runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunReason {
    Forced(Forced),
    /// No entry for this key; no record of an earlier key either.
    New,
    /// No entry for this key; what changed since the recorded key.
    Changed(String),
    /// No entry for this key, and no way to tell what changed.
    NoEntry,
    /// The entry is older than the node's `"cache": "<duration>"`.
    TooOld(Duration),
    /// The entry is damaged (the text says how).
    Corrupt(&'static str),
    /// A file the entry wrote could not be put back.
    CannotRestore(String),
    /// A file the node took away is there again: its effect no longer holds.
    Reappeared(String),
    /// The remote cache had an entry it could not use.
    RemoteUnusable(String),
}

impl fmt::Display for RunReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunReason::Forced(Forced::All) => f.write_str("--force"),
            RunReason::Forced(Forced::Node) => f.write_str("--rerun"),
            RunReason::Forced(Forced::NoCache) => f.write_str("cache: false"),
            RunReason::Forced(Forced::Volatile) => {
                f.write_str("a read-only tool: runs on every build")
            }
            RunReason::New => f.write_str("new"),
            RunReason::Changed(what) => f.write_str(what),
            RunReason::NoEntry => f.write_str("no cache entry"),
            RunReason::TooOld(max) => write!(
                f,
                "cache entry older than {}",
                humantime::format_duration(*max)
            ),
            RunReason::Corrupt(how) => f.write_str(how),
            RunReason::CannotRestore(why) | RunReason::RemoteUnusable(why) => f.write_str(why),
            RunReason::Reappeared(path) => write!(f, "'{path}' exists again"),
        }
    }
}

/// A reused result.
#[derive(Debug)]
pub struct Reuse {
    pub source: HitSource,
    pub digest: blake3::Hash,
    /// At hand for a memo hit; read from the entry when needed otherwise.
    pub values: Option<Arc<Value>>,
    /// The cache entry (local and remote hits); boxed, as slots keep it.
    pub entry: Option<Box<Entry>>,
    /// Files put back from the cache.
    pub restored: Vec<String>,
    /// Files that had been edited by hand, and where each edit was kept.
    pub kept: Vec<(String, std::path::PathBuf)>,
}

impl Reuse {
    /// The reason shown for the reuse.
    pub fn reason(&self) -> std::borrow::Cow<'static, str> {
        match (self.source, self.restored.is_empty()) {
            (HitSource::Memo, _) => "already ran in this command".into(),
            (HitSource::Remote, true) => "inputs unchanged (remote)".into(),
            (HitSource::Remote, false) => {
                format!("restored {} (remote)", self.restored.join(", ")).into()
            }
            (_, true) => "inputs unchanged".into(),
            (_, false) => format!("restored {}", self.restored.join(", ")).into(),
        }
    }
}

#[derive(Debug)]
pub enum Decision {
    Reuse(Reuse),
    Run(RunReason),
}

/// A build uses what it finds; a probe (`--dry-run`) only looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Build,
    Probe,
}

/// What this command produced so far, by key: a node never runs twice for one key, even
/// across repair attempts.
#[derive(Default)]
pub struct Memo {
    results: std::sync::Mutex<crate::key::KeyMap<(blake3::Hash, Arc<Value>)>>,
}

impl Memo {
    pub fn recall(&self, key: &Key) -> Option<(blake3::Hash, Arc<Value>)> {
        self.results.lock().ok()?.get(key).cloned()
    }

    pub fn remember(&self, key: Key, digest: blake3::Hash, values: Arc<Value>) {
        if let Ok(mut m) = self.results.lock() {
            m.insert(key, (digest, values));
        }
    }
}

/// Where a decision looks.
pub struct Sources<'a> {
    pub memo: &'a Memo,
    pub records: &'a BuildState,
    pub cache: &'a Layered,
    /// Files the workflow itself deletes or moves away: a cached writer of such a file
    /// must not bring it back.
    pub consumed: &'a HashSet<String>,
    pub mode: Mode,
    /// Where the build may change files: a file is put back from the cache only there,
    /// as the node itself could write it only there.
    pub write_roots: &'a crate::workspace::WriteRoots,
}

/// The question about one node or item.
pub struct Ask<'a> {
    pub key: Key,
    pub policy: CachePolicy,
    pub forced: Option<Forced>,
    /// The node's id, when the last build's record may vouch for it (not for items).
    pub recorded_as: Option<&'a str>,
    /// The files the node may write or take away, as far as the workflow says (a
    /// downloaded entry naming another is not used).
    pub touches: &'a dyn Fn(&str) -> bool,
}

/// Hit or run, and why.
pub fn decide(src: &Sources<'_>, ask: &Ask<'_>) -> Decision {
    if let Some((digest, values)) = src.memo.recall(&ask.key) {
        return Decision::Reuse(Reuse {
            source: HitSource::Memo,
            digest,
            values: Some(values),
            entry: None,
            restored: Vec::new(),
            kept: Vec::new(),
        });
    }
    if let Some(f) = ask.forced {
        return Decision::Run(RunReason::Forced(f));
    }
    if let Some(id) = ask.recorded_as {
        if let Some((digest, time_ms, duration_ms)) =
            src.records.fast_hit(id, &ask.key.0, src.consumed)
        {
            if fresh(ask.policy, time_ms as u128) {
                if src.mode == Mode::Build {
                    src.cache.local().note_hit(&ask.key, duration_ms);
                }
                return Decision::Reuse(Reuse {
                    source: HitSource::FastPath,
                    digest: blake3::Hash::from_bytes(digest),
                    values: None,
                    entry: None,
                    restored: Vec::new(),
                    kept: Vec::new(),
                });
            }
        }
    }
    let (entry, source) = match lookup(src, ask) {
        Lookup::Hit(entry, source) => (entry, source),
        Lookup::Miss { note: Some(why) } => return Decision::Run(RunReason::RemoteUnusable(why)),
        Lookup::Miss { note: None } => return Decision::Run(RunReason::NoEntry),
        Lookup::Corrupt => return Decision::Run(RunReason::Corrupt("corrupt entry")),
    };
    match usable(src, &entry, ask.policy) {
        Err(reason) => Decision::Run(reason),
        Ok(back) => Decision::Reuse(Reuse {
            source: match source {
                Source::Local => HitSource::Local,
                Source::Remote => HitSource::Remote,
            },
            digest: entry.output,
            values: None,
            entry: Some(entry),
            restored: back.restored,
            kept: back.kept,
        }),
    }
}

/// A probe reads the local index only, and marks nothing.
fn lookup(src: &Sources<'_>, ask: &Ask<'_>) -> Lookup {
    match src.mode {
        Mode::Build => src.cache.lookup(&ask.key, ask.touches),
        Mode::Probe => match src.cache.local().probe(&ask.key) {
            Ok(Some(entry)) => Lookup::Hit(Box::new(entry), Source::Local),
            Ok(None) => Lookup::Miss { note: None },
            Err(_) => Lookup::Corrupt,
        },
    }
}

/// Check an entry: age, outputs at hand, and the files it wrote (restored when a build
/// needs them back). Returns the restored paths.
fn usable(src: &Sources<'_>, entry: &Entry, policy: CachePolicy) -> Result<PutBack, RunReason> {
    if let (false, CachePolicy::MaxAge(max)) = (fresh(policy, entry.time_ms), policy) {
        return Err(RunReason::TooOld(max));
    }
    if !src.cache.local().has_outputs(entry) {
        return Err(RunReason::Corrupt("corrupt entry (outputs missing)"));
    }
    // An effect (a delete, a move) is reused only while it holds.
    if let Some(back) = entry
        .manifest
        .removed
        .iter()
        .find(|p| std::fs::symlink_metadata(p).is_ok())
    {
        return Err(RunReason::Reappeared(back.clone()));
    }
    let mut back = PutBack::default();
    if src.mode == Mode::Probe {
        return Ok(back);
    }
    let mut wanted = Vec::new();
    for rec in &entry.manifest.files {
        match src.cache.local().file_state(rec) {
            FileState::Intact => {}
            // Gone because a later node of this workflow removed it, as it should be.
            FileState::Missing if src.consumed.contains(&rec.path) => {}
            FileState::Missing | FileState::Changed => {
                // Checked for every file before any is put back: the node runs instead
                // (and meets the same refusal, told as its error), nothing half restored.
                src.write_roots
                    .check(std::path::Path::new(&rec.path))
                    .map_err(|why| RunReason::CannotRestore(format!("not restored: {why}")))?;
                wanted.push(rec);
            }
        }
    }
    for rec in wanted {
        // Held (and so checked again) one at a time as it is put back: an entry may
        // have more files than a process may hold folders open.
        let restored = src
            .write_roots
            .hold(std::path::Path::new(&rec.path), true)
            .and_then(|h| h.ok_or_else(|| "its folder went away".to_string()))
            .and_then(|held| {
                let aside = src.cache.local().restore_file(rec, held.at());
                aside
                    .map(|a| a.map(|a| held.shown(&a)))
                    .map_err(|e| e.to_string())
            });
        match restored {
            Ok(aside) => {
                if let Some(aside) = aside {
                    back.kept.push((rec.path.clone(), aside));
                }
                back.restored.push(rec.path.clone());
            }
            Err(e) => {
                // An edit already moved aside is told here, as the node runs instead.
                let mut why = format!("cannot restore {}: {e}", rec.path);
                for (path, aside) in &back.kept {
                    why.push_str(&format!(
                        "; {path} was changed by hand and is kept as {}",
                        aside.display()
                    ));
                }
                return Err(RunReason::CannotRestore(why));
            }
        }
    }
    Ok(back)
}

/// What checking an entry put back.
#[derive(Default)]
struct PutBack {
    restored: Vec<String>,
    kept: Vec<(String, std::path::PathBuf)>,
}

/// Is an entry written at `time_ms` young enough for the node's cache policy?
pub fn fresh(policy: CachePolicy, time_ms: u128) -> bool {
    match policy {
        CachePolicy::MaxAge(max) => now_ms().saturating_sub(time_ms) <= max.as_millis(),
        _ => true,
    }
}

/// A plain miss told in full: what changed since the last build's key, when known.
/// `key_moved`: the key differs from the last build's, so when no recorded digest
/// differs, a sealed (secret) component did; otherwise the entry is simply gone. Asked
/// only then (it is one more record lookup, and most misses have a digest that differs).
pub fn explain_miss(
    previous: Option<&[Short<'_>]>,
    now: &[Short<'_>],
    key_moved: impl FnOnce() -> bool,
) -> RunReason {
    match previous {
        None => RunReason::New,
        Some(old) => match explain_change(old, now) {
            Some(what) => RunReason::Changed(what),
            None => match explain_sealed_change(now).filter(|_| key_moved()) {
                Some(what) => RunReason::Changed(what),
                None => RunReason::NoEntry,
            },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::records::{record_of, StateUpdate};
    use crate::cache::{Cache, NewEntry};
    use serde_json::json;
    use std::path::PathBuf;

    /// A real cache in a temp folder, and the other places a decision looks.
    struct World {
        dir: tempfile::TempDir,
        cache: Layered,
        memo: Memo,
        records: BuildState,
        consumed: HashSet<String>,
        roots: crate::workspace::WriteRoots,
    }

    impl World {
        fn new() -> World {
            let dir = tempfile::tempdir().unwrap();
            let cache = Layered::new(Cache::new(dir.path().join("cache")), None);
            let roots = crate::workspace::WriteRoots::new(&[dir.path().to_path_buf()]);
            World {
                dir,
                cache,
                memo: Memo::default(),
                records: BuildState::default(),
                consumed: HashSet::new(),
                roots,
            }
        }

        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        /// Store a result for `key` that wrote `files` (which must exist now).
        fn store(&self, key: Key, files: &[PathBuf]) -> Entry {
            let outputs = json!({"stdout": "hi"});
            self.cache
                .local()
                .store(NewEntry {
                    key: &key,
                    node: "n",
                    outputs: &outputs,
                    output_digest: &crate::canonical::output_digest(&outputs),
                    files,
                    links: &[],
                    removed: &[],
                    duration_ms: 5,
                    run_id: "r",
                })
                .unwrap()
        }

        fn decide(&self, mode: Mode, ask: &Ask<'_>) -> Decision {
            let src = Sources {
                memo: &self.memo,
                records: &self.records,
                cache: &self.cache,
                consumed: &self.consumed,
                mode,
                write_roots: &self.roots,
            };
            decide(&src, ask)
        }
    }

    fn ask(key: Key) -> Ask<'static> {
        Ask {
            key,
            policy: CachePolicy::Always,
            forced: None,
            recorded_as: None,
            touches: &|_| true,
        }
    }

    fn reuse(d: Decision) -> Reuse {
        match d {
            Decision::Reuse(r) => r,
            Decision::Run(why) => panic!("expected a reuse, got a run: {why}"),
        }
    }

    fn run(d: Decision) -> RunReason {
        match d {
            Decision::Run(why) => why,
            Decision::Reuse(r) => panic!("expected a run, got a reuse from {:?}", r.source),
        }
    }

    #[test]
    fn nothing_stored_runs_and_says_why() {
        let w = World::new();
        assert_eq!(
            run(w.decide(Mode::Build, &ask(Key([1; 32])))),
            RunReason::NoEntry
        );
        let now = [("param:cmd", 0xaa)];
        assert_eq!(explain_miss(None, &now, || true), RunReason::New);
        let before = [("param:cmd", 0xbb)];
        match explain_miss(Some(&before), &now, || true) {
            RunReason::Changed(what) => assert!(what.contains("cmd"), "{what}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_stored_entry_is_a_local_hit() {
        let w = World::new();
        let key = Key([2; 32]);
        let entry = w.store(key, &[]);
        let hit = reuse(w.decide(Mode::Build, &ask(key)));
        assert_eq!(hit.source, HitSource::Local);
        assert_eq!(hit.digest.to_hex().as_str(), entry.manifest.output_digest);
        assert_eq!(hit.reason(), "inputs unchanged");
    }

    #[test]
    fn this_commands_own_result_wins_even_over_force() {
        let w = World::new();
        let key = Key([3; 32]);
        let digest = blake3::hash(b"x");
        w.memo.remember(key, digest, Arc::new(json!({"a": 1})));
        let mut a = ask(key);
        a.forced = Some(Forced::All);
        let hit = reuse(w.decide(Mode::Build, &a));
        assert_eq!((hit.source, hit.digest), (HitSource::Memo, digest));
        assert_eq!(hit.reason(), "already ran in this command");
    }

    #[test]
    fn forced_runs_never_look_at_the_cache() {
        let w = World::new();
        let key = Key([4; 32]);
        w.store(key, &[]);
        for (f, text) in [
            (Forced::All, "--force"),
            (Forced::Node, "--rerun"),
            (Forced::NoCache, "cache: false"),
        ] {
            let mut a = ask(key);
            a.forced = Some(f);
            assert_eq!(run(w.decide(Mode::Build, &a)).to_string(), text);
        }
    }

    #[test]
    fn an_entry_older_than_the_policy_runs() {
        let w = World::new();
        let key = Key([5; 32]);
        let outputs = serde_json::to_vec(&json!({"v": 1})).unwrap();
        let digest = crate::canonical::output_digest(&json!({"v": 1}))
            .to_hex()
            .to_string();
        let old = crate::cache::Imported {
            node: "n".into(),
            output_digest: digest,
            duration_ms: 1,
            run_id: "r".into(),
            time_ms: 1_000,
            outputs,
            files: Vec::new(),
            removed: Vec::new(),
        };
        w.cache.local().import(&key, old).unwrap();
        let mut a = ask(key);
        a.policy = CachePolicy::MaxAge(Duration::from_secs(60));
        assert_eq!(
            run(w.decide(Mode::Build, &a)).to_string(),
            "cache entry older than 1m"
        );
        a.policy = CachePolicy::Always;
        assert_eq!(reuse(w.decide(Mode::Build, &a)).source, HitSource::Local);
    }

    #[test]
    fn a_build_restores_a_deleted_output_and_a_probe_leaves_it() {
        let w = World::new();
        let out = w.path("out.txt");
        std::fs::write(&out, "made by the node").unwrap();
        let key = Key([6; 32]);
        w.store(key, std::slice::from_ref(&out));
        std::fs::remove_file(&out).unwrap();

        let probe = reuse(w.decide(Mode::Probe, &ask(key)));
        assert!(probe.restored.is_empty());
        assert!(!out.exists(), "a probe must not write the workspace");

        let hit = reuse(w.decide(Mode::Build, &ask(key)));
        assert_eq!(hit.restored, vec![out.to_string_lossy().into_owned()]);
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "made by the node");
        assert!(hit.reason().starts_with("restored "));
    }

    #[test]
    fn a_file_the_workflow_deletes_is_not_brought_back() {
        let mut w = World::new();
        let out = w.path("tmp.txt");
        std::fs::write(&out, "intermediate").unwrap();
        let key = Key([7; 32]);
        w.store(key, std::slice::from_ref(&out));
        std::fs::remove_file(&out).unwrap();
        w.consumed.insert(out.to_string_lossy().into_owned());
        let hit = reuse(w.decide(Mode::Build, &ask(key)));
        assert!(hit.restored.is_empty());
        assert!(!out.exists());
    }

    #[test]
    fn a_probe_marks_no_recency_and_no_saved_time() {
        let w = World::new();
        let key = Key([8; 32]);
        w.store(key, &[]);
        let uses = |w: &World| {
            crate::cache::pack::headers(w.cache.local().root())
                .iter()
                .filter(|h| h.key == key && h.kind == crate::cache::pack::Kind::Use)
                .count()
        };
        reuse(w.decide(Mode::Probe, &ask(key)));
        assert_eq!(uses(&w), 0, "a probe recorded a use of the entry");
        assert!(w.cache.local().take_seen().is_empty());

        reuse(w.decide(Mode::Build, &ask(key)));
        w.cache.local().flush_uses();
        assert_eq!(uses(&w), 1, "a build's hit marks the entry used");
        assert_eq!(w.cache.local().take_seen().get(&key), Some(&5));
    }

    #[test]
    fn the_last_builds_record_vouches_for_an_unchanged_key_only() {
        let mut w = World::new();
        let key = Key([9; 32]);
        let entry = w.store(key, &[]);
        let digest = blake3::Hash::from_hex(&entry.manifest.output_digest).unwrap();
        let mut update = StateUpdate::default();
        update
            .nodes
            .insert("n".into(), record_of(&key.0, &digest, &entry).encode());
        let root = w.cache.local().root().to_path_buf();
        BuildState::default().save(&root, "wf.json", &update, crate::cache::delta::Keep::All);
        w.records = BuildState::load(&root, "wf.json");

        let mut a = ask(key);
        a.recorded_as = Some("n");
        assert_eq!(reuse(w.decide(Mode::Build, &a)).source, HitSource::FastPath);
        // Another node's record, or another key, is no voucher.
        a.recorded_as = Some("m");
        assert_eq!(reuse(w.decide(Mode::Build, &a)).source, HitSource::Local);
        let other = Key([10; 32]);
        a.key = other;
        a.recorded_as = Some("n");
        assert_eq!(run(w.decide(Mode::Build, &a)), RunReason::NoEntry);
    }

    #[test]
    fn a_damaged_record_is_a_corrupt_entry() {
        let w = World::new();
        let key = Key([11; 32]);
        w.store(key, &[]);
        let segments = crate::cache::pack::segment_paths(w.cache.local().root()).unwrap();
        assert_eq!(segments.len(), 1);
        // The last byte is the end of the entry's payload.
        let mut bytes = std::fs::read(&segments[0]).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&segments[0], bytes).unwrap();
        assert_eq!(
            run(w.decide(Mode::Build, &ask(key))),
            RunReason::Corrupt("corrupt entry")
        );
    }
}
