//! `pflow cache stats | verify | gc | clear`: keeping the cache bounded and trustworthy.
//!
//! cacache has no verify, gc or locking of its own, so this module reads its on-disk
//! layout directly (see `crate::cache`): index buckets under `index-v5/` (lines
//! `<sha256 of json>\t<json>`, the newest line for a key wins, a null integrity is a
//! removal) and content blobs under `content-v2/<algo>/<aa>/<bb>/<rest of hex digest>`,
//! whose path *is* their integrity.
//!
//! `verify`, `gc` and `clear` hold the cache's exclusive lock (builds hold it shared), so
//! they never rewrite a bucket or delete a blob under a running build. Buckets are
//! rewritten atomically (a temp file in `tmp/`, renamed over the bucket) with their
//! modification time kept, since that time is the entry's recency for LRU eviction.

use super::{Error, ExitCode};
use crate::cache::layout::{
    self, bucket_path, bump_generation, content_path, read_bucket, BucketLine, IndexRecord,
    CONTENT_DIR, INDEX_DIR, LEGACY_EXPLAIN_DIR, OWN_DIRS, RECORDS_DIR, STATS_FILE, TMP_DIR,
};
use crate::cache::lock::{self, CacheLock, Mode};
use crate::cache::Manifest;
use crate::cli::{CacheAction, OutputFormat};
use crate::report::{err_line, out_line};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

pub fn run(action: CacheAction, root: &Path, format: OutputFormat) -> super::Result {
    let json = format == OutputFormat::Json;
    let removes = match &action {
        CacheAction::Stats => false,
        CacheAction::Verify { fix } => *fix,
        CacheAction::Gc { .. } | CacheAction::Clear => true,
    };
    // Maintenance deletes by pflow's own names (tmp/, state/, ...), which a project may
    // use too: it works only on a directory that a build marked as its cache.
    if removes && !layout::is_pflow_cache(root) && !layout::holds_nothing(root) {
        return Err(Error::Invalid(format!(
            "{} is not a pflow cache directory (it has no {} written by pflow); nothing was \
             changed. Check --cache-dir and PFLOW_CACHE_DIR; a build marks the cache it uses",
            root.display(),
            layout::TAG_FILE
        )));
    }
    Ok(match action {
        CacheAction::Stats => stats(root, json),
        CacheAction::Verify { fix } => verify(root, fix, json),
        CacheAction::Gc { max_size, max_age } => {
            let max_size = match max_size.as_deref().map(parse_size).transpose() {
                Ok(s) => s,
                Err(e) => return Err(Error::Invalid(e)),
            };
            let max_age = match max_age.as_deref().map(parse_age).transpose() {
                Ok(a) => a,
                Err(e) => return Err(Error::Invalid(e)),
            };
            gc(root, max_size, max_age, json)
        }
        CacheAction::Clear => clear(root, json),
    })
}

/// `500MB`, `1KB`, `2GiB`, `1024` (bytes). K/M/G/T are powers of 1000, Ki/Mi/Gi/Ti of 1024.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let bad = || format!("invalid size '{text}' (examples: 500MB, 1KB, 2GiB, 4096)");
    let n: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" => 1e3,
        "m" | "mb" => 1e6,
        "g" | "gb" => 1e9,
        "t" | "tb" => 1e12,
        "ki" | "kib" => 1024.0,
        "mi" | "mib" => 1024.0 * 1024.0,
        "gi" | "gib" => 1024.0 * 1024.0 * 1024.0,
        "ti" | "tib" => 1024.0 * 1024.0 * 1024.0 * 1024.0,
        _ => return Err(bad()),
    };
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult).round() as u64)
}

/// `7d`, `12h`, `30m`, `500ms` (humantime).
pub fn parse_age(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid age '{text}' ({e}; examples: 7d, 12h, 30min)"))
}

pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn format_time(ms: u128) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(ms as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

fn mtime_ms(meta: &std::fs::Metadata) -> u128 {
    meta.modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// A path relative to the cache root, for messages.
fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

// ---------------------------------------------------------------------------------------
// Scanning the cache
// ---------------------------------------------------------------------------------------

struct Bucket {
    path: PathBuf,
    mtime_ms: u128,
    size: u64,
    lines: Vec<BucketLine>,
}

struct Blob {
    size: u64,
    /// None: the file is not where a blob could be (a stray file).
    integrity: Option<cacache::Integrity>,
}

/// The current entry of a key: the newest intact line for it.
struct Live {
    bucket: usize,
    line: usize,
    record: IndexRecord,
    /// Last write or hit (unix ms): the bucket's mtime, or the entry's time if later.
    recency_ms: u128,
    /// The outputs blob, unless the outputs are inline (or the integrity is malformed).
    outputs_blob: Option<PathBuf>,
    /// The outputs blob and the blobs of written files.
    blobs: Vec<PathBuf>,
    manifest: Option<Manifest>,
    /// Why the entry cannot be used, as far as the index alone tells.
    broken: Option<String>,
}

impl Live {
    fn node(&self) -> String {
        self.manifest
            .as_ref()
            .map(|m| m.node.clone())
            .or_else(|| {
                self.record
                    .metadata
                    .get("node")
                    .and_then(|n| n.as_str())
                    .map(String::from)
            })
            .unwrap_or_default()
    }

    fn line_bytes(&self, buckets: &[Bucket]) -> u64 {
        match &buckets[self.bucket].lines[self.line] {
            BucketLine::Valid { raw, .. } | BucketLine::Corrupt { raw, .. } => raw.len() as u64 + 1,
        }
    }

    fn describe(&self) -> String {
        let node = self.node();
        if node.is_empty() {
            format!("entry {}", self.record.key)
        } else {
            format!("entry {} (node {node})", self.record.key)
        }
    }
}

#[derive(Default)]
struct Scan {
    buckets: Vec<Bucket>,
    blobs: BTreeMap<PathBuf, Blob>,
    tmp_files: Vec<(PathBuf, u64)>,
    /// Files or directories that could not be read.
    unreadable: Vec<(PathBuf, String)>,
    live: Vec<Live>,
}

impl Scan {
    fn content_bytes(&self) -> u64 {
        self.blobs.values().map(|b| b.size).sum()
    }

    fn index_bytes(&self) -> u64 {
        self.buckets.iter().map(|b| b.size).sum()
    }
}

/// Every regular file under `dir` (no symlinks followed), with its metadata.
fn walk(dir: &Path, errors: &mut Vec<(PathBuf, String)>) -> Vec<(PathBuf, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push((d.clone(), e.to_string()));
                continue;
            }
        };
        for e in rd.flatten() {
            let p = e.path();
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.is_dir() => stack.push(p),
                Ok(m) => out.push((p, m)),
                Err(err) => errors.push((p, err.to_string())),
            }
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The integrity a content path stands for, if it is a well-formed one.
fn integrity_of_path(root: &Path, p: &Path) -> Option<cacache::Integrity> {
    let parts: Vec<String> = p
        .strip_prefix(root.join(CONTENT_DIR))
        .ok()?
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let [algo, a, b, rest] = &parts[..] else {
        return None;
    };
    let algorithm: cacache::Algorithm = algo.parse().ok()?;
    let hex = format!("{a}{b}{rest}");
    if a.len() != 2 || b.len() != 2 || hex.len() % 2 != 0 {
        return None;
    }
    let sri = cacache::Integrity::from_hex(&hex, algorithm).ok()?;
    // The round trip must give this very path (e.g. upper-case hex would not).
    (content_path(root, &sri)? == p).then_some(sri)
}

fn scan(root: &Path) -> Scan {
    let mut s = Scan::default();
    for (path, meta) in walk(&root.join(CONTENT_DIR), &mut s.unreadable) {
        let integrity = integrity_of_path(root, &path);
        s.blobs.insert(
            path,
            Blob {
                size: meta.len(),
                integrity,
            },
        );
    }
    s.tmp_files = walk(&root.join(TMP_DIR), &mut s.unreadable)
        .into_iter()
        .map(|(p, m)| (p, m.len()))
        .collect();
    // Temp files of pflow's own atomic writes (build records, explain records, repair
    // patches) left by a killed process. `explain/` is where older versions kept them.
    let own = OWN_DIRS;
    for (p, m) in own
        .iter()
        .flat_map(|d| walk(&root.join(d), &mut s.unreadable))
    {
        if p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".pflow-tmp-"))
        {
            s.tmp_files.push((p, m.len()));
        }
    }
    for (path, meta) in walk(&root.join(INDEX_DIR), &mut s.unreadable) {
        match read_bucket(&path) {
            Ok(lines) => s.buckets.push(Bucket {
                path,
                mtime_ms: mtime_ms(&meta),
                size: meta.len(),
                lines,
            }),
            Err(e) => s.unreadable.push((path, e.to_string())),
        }
    }
    // The current entry of each key.
    let mut live = Vec::new();
    for (bi, bucket) in s.buckets.iter().enumerate() {
        let mut newest: BTreeMap<&str, usize> = BTreeMap::new();
        for (li, line) in bucket.lines.iter().enumerate() {
            if let BucketLine::Valid { record, .. } = line {
                newest.insert(&record.key, li);
            }
        }
        for (_, li) in newest {
            let BucketLine::Valid { record, .. } = &bucket.lines[li] else {
                continue;
            };
            let Some(integrity) = &record.integrity else {
                continue; // removed
            };
            let mut broken = None;
            let mut blobs = Vec::new();
            let outputs_blob = integrity
                .parse::<cacache::Integrity>()
                .ok()
                .and_then(|sri| content_path(root, &sri));
            if outputs_blob.is_none() {
                broken = Some(format!("malformed integrity '{integrity}'"));
            }
            let mut manifest = None;
            if record.key.starts_with("pflow/node/") {
                match serde_json::from_value::<Manifest>(record.metadata.clone()) {
                    Ok(m) => {
                        for f in &m.files {
                            match f
                                .integrity
                                .parse::<cacache::Integrity>()
                                .ok()
                                .and_then(|sri| content_path(root, &sri))
                            {
                                Some(p) => blobs.push(p),
                                None => {
                                    broken =
                                        Some(format!("malformed integrity for file '{}'", f.path))
                                }
                            }
                        }
                        if blake3::Hash::from_hex(&m.output_digest).is_err() {
                            broken = Some("malformed output digest in the manifest".into());
                        }
                        manifest = Some(m);
                    }
                    Err(e) => broken = Some(format!("unreadable manifest ({e})")),
                }
            }
            // Inline outputs have no blob of their own.
            let inline = manifest.as_ref().is_some_and(|m| m.inline.is_some());
            let outputs_blob = outputs_blob.filter(|_| !inline);
            if let Some(p) = &outputs_blob {
                blobs.insert(0, p.clone());
            }
            live.push(Live {
                bucket: bi,
                line: li,
                record: record.clone(),
                recency_ms: bucket.mtime_ms.max(record.time),
                outputs_blob,
                blobs,
                manifest,
                broken,
            });
        }
    }
    s.live = live;
    s
}

/// Lines to keep for each bucket that changes, written atomically; a bucket left with no
/// line is deleted. The bucket's mtime (its entry's recency) is kept.
fn rewrite_buckets(
    root: &Path,
    scan: &Scan,
    keep: &BTreeMap<usize, Vec<usize>>,
) -> Result<(usize, usize), String> {
    let mut rewritten = 0;
    let mut dropped = 0;
    for (bi, bucket) in scan.buckets.iter().enumerate() {
        let kept = keep.get(&bi).map(|v| v.as_slice()).unwrap_or(&[]);
        if kept.len() == bucket.lines.len() {
            continue;
        }
        dropped += bucket.lines.len() - kept.len();
        rewritten += 1;
        if kept.is_empty() {
            std::fs::remove_file(&bucket.path)
                .or_else(ignore_not_found)
                .map_err(|e| format!("cannot remove {}: {e}", bucket.path.display()))?;
            continue;
        }
        write_bucket(root, bucket, kept)
            .map_err(|e| format!("cannot rewrite {}: {e}", bucket.path.display()))?;
    }
    Ok((rewritten, dropped))
}

fn write_bucket(root: &Path, bucket: &Bucket, kept: &[usize]) -> std::io::Result<()> {
    let tmp_dir = root.join(TMP_DIR);
    std::fs::create_dir_all(&tmp_dir)?;
    let mut tmp = tempfile::Builder::new()
        .prefix("bucket-")
        .tempfile_in(&tmp_dir)?;
    for &li in kept {
        let raw = match &bucket.lines[li] {
            BucketLine::Valid { raw, .. } | BucketLine::Corrupt { raw, .. } => raw,
        };
        tmp.write_all(b"\n")?;
        tmp.write_all(raw)?;
    }
    tmp.as_file().sync_data()?;
    if let Ok(meta) = std::fs::metadata(&bucket.path) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
    let mtime = UNIX_EPOCH + Duration::from_millis(bucket.mtime_ms as u64);
    tmp.as_file().set_modified(mtime)?;
    tmp.persist(&bucket.path).map_err(|e| e.error)?;
    Ok(())
}

fn ignore_not_found(e: std::io::Error) -> std::io::Result<()> {
    if e.kind() == std::io::ErrorKind::NotFound {
        Ok(())
    } else {
        Err(e)
    }
}

/// Remove empty directories under `dir` (not `dir` itself).
fn prune_empty_dirs(dir: &Path) {
    fn inner(d: &Path) -> bool {
        let Ok(rd) = std::fs::read_dir(d) else {
            return false;
        };
        let mut empty = true;
        for e in rd.flatten() {
            let p = e.path();
            let is_dir = std::fs::symlink_metadata(&p).is_ok_and(|m| m.is_dir());
            if is_dir && inner(&p) {
                let _ = std::fs::remove_dir(&p);
            } else {
                empty = false;
            }
        }
        empty
    }
    inner(dir);
}

fn generation_bump(root: &Path) {
    if let Err(e) = bump_generation(root) {
        err_line(&format!("warning: cannot update the cache generation: {e}"));
    }
}

/// The exclusive lock, or the exit code of a command that must not go on without it
/// (a build could be writing).
fn take_lock(root: &Path) -> Result<CacheLock, ExitCode> {
    lock::acquire(root, Mode::Exclusive, &mut |w| err_line(&w.to_string())).map_err(|e| {
        err_line(&format!("error: {e}; nothing was changed"));
        ExitCode::Failed
    })
}

// ---------------------------------------------------------------------------------------
// stats
// ---------------------------------------------------------------------------------------

fn stats(root: &Path, json: bool) -> ExitCode {
    // Read-only: a shared lock keeps gc from changing things while we count.
    let _lock = if root.is_dir() {
        lock::acquire(root, Mode::Shared, &mut |w| err_line(&w.to_string())).ok()
    } else {
        None
    };
    let s = scan(root);
    let entries = s.live.len();
    let oldest = s.live.iter().map(|l| l.record.time).min();
    let newest = s.live.iter().map(|l| l.record.time).max();
    let builds = crate::cache::stats::recorded(root);
    let mut runs = BTreeSet::new();
    let (mut hits, mut misses, mut cutoffs, mut restored, mut failed, mut saved) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for b in &builds {
        runs.insert(b.run_id.clone());
        hits += b.hits;
        misses += b.misses;
        cutoffs += b.early_cutoffs;
        restored += b.restored;
        failed += b.failed;
        saved += b.time_saved_ms;
    }
    let mut remote = RemoteTotals::default();
    for b in &builds {
        remote.add(b);
    }
    let last = builds.last();
    if json {
        let doc = json!({
            "cache_dir": root.display().to_string(),
            "entries": entries,
            "blobs": s.blobs.len(),
            "content_bytes": s.content_bytes(),
            "index_bytes": s.index_bytes(),
            "total_bytes": s.content_bytes() + s.index_bytes(),
            "buckets": s.buckets.len(),
            "temp_files": s.tmp_files.len(),
            "oldest_entry": oldest.map(format_time),
            "newest_entry": newest.map(format_time),
            "oldest_entry_ms": oldest.map(|t| t as u64),
            "newest_entry_ms": newest.map(|t| t as u64),
            "recent_builds": {
                "runs": runs.len(),
                "records": builds.len(),
                "hits": hits,
                "misses": misses,
                "early_cutoffs": cutoffs,
                "restored": restored,
                "failed": failed,
                "time_saved_ms": saved,
                "remote": remote.json(),
                "last": last,
            },
        });
        out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        return ExitCode::Ok;
    }
    out_line(&format!("cache {}", root.display()));
    out_line(&format!("  entries       {entries}"));
    out_line(&format!(
        "  blobs         {} ({})",
        s.blobs.len(),
        format_bytes(s.content_bytes())
    ));
    out_line(&format!(
        "  index         {} buckets ({})",
        s.buckets.len(),
        format_bytes(s.index_bytes())
    ));
    out_line(&format!(
        "  total         {}",
        format_bytes(s.content_bytes() + s.index_bytes())
    ));
    if let (Some(o), Some(n)) = (oldest, newest) {
        out_line(&format!("  oldest entry  {}", format_time(o)));
        out_line(&format!("  newest entry  {}", format_time(n)));
    }
    if !s.tmp_files.is_empty() {
        out_line(&format!(
            "  temp files    {} (left by interrupted writes; `pflow cache gc` removes them)",
            s.tmp_files.len()
        ));
    }
    if builds.is_empty() {
        out_line("recent builds: none recorded");
    } else {
        out_line(&format!(
            "recent builds ({} run{}): {hits} hits, {misses} misses, {cutoffs} early cutoffs, {restored} restored, time saved {}",
            runs.len(),
            if runs.len() == 1 { "" } else { "s" },
            humantime::format_duration(Duration::from_millis(saved))
        ));
        if remote.used() {
            out_line(&format!("  {}", remote.text()));
        }
        if let Some(b) = last {
            out_line(&format!(
                "  last build: {} hits, {} misses, {} early cutoffs, time saved {} ({})",
                b.hits,
                b.misses,
                b.early_cutoffs,
                humantime::format_duration(Duration::from_millis(b.time_saved_ms)),
                format_time(b.time_ms as u128)
            ));
            let mut last_remote = RemoteTotals::default();
            last_remote.add(b);
            if last_remote.used() {
                out_line(&format!("    {}", last_remote.text()));
            }
        }
    }
    ExitCode::Ok
}

/// The remote cache figures of recorded builds, summed.
#[derive(Default)]
struct RemoteTotals {
    hits: u64,
    misses: u64,
    bytes_down: u64,
    bytes_up: u64,
    uploads: u64,
    errors: u64,
}

impl RemoteTotals {
    fn add(&mut self, b: &crate::cache::stats::BuildStats) {
        self.hits += b.remote_hits;
        self.misses += b.remote_misses;
        self.bytes_down += b.remote_bytes_down;
        self.bytes_up += b.remote_bytes_up;
        self.uploads += b.remote_uploads;
        self.errors += b.remote_errors;
    }

    fn used(&self) -> bool {
        self.hits + self.misses + self.uploads + self.errors + self.bytes_up + self.bytes_down > 0
    }

    fn json(&self) -> Value {
        json!({"hits": self.hits, "misses": self.misses, "bytes_down": self.bytes_down,
               "bytes_up": self.bytes_up, "uploads": self.uploads, "errors": self.errors})
    }

    fn text(&self) -> String {
        format!(
            "remote cache: {} hits, {} misses, {} downloaded, {} uploads ({}), {} errors",
            self.hits,
            self.misses,
            format_bytes(self.bytes_down),
            self.uploads,
            format_bytes(self.bytes_up),
            self.errors
        )
    }
}

// ---------------------------------------------------------------------------------------
// verify
// ---------------------------------------------------------------------------------------

struct Problem {
    kind: &'static str,
    /// The file concerned, relative to the cache root.
    path: String,
    key: Option<String>,
    node: Option<String>,
    message: String,
}

impl Problem {
    fn json(&self) -> Value {
        json!({"kind": self.kind, "path": self.path, "key": self.key,
               "node": self.node, "message": self.message})
    }
}

#[derive(Default)]
struct Findings {
    problems: Vec<Problem>,
    /// Blobs to delete (corrupt or stray).
    bad_blobs: BTreeSet<PathBuf>,
    /// Lines to drop, per bucket.
    bad_lines: BTreeMap<usize, BTreeSet<usize>>,
    blobs_checked: usize,
    entries_checked: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum BlobState {
    Intact,
    Corrupt,
    Unreadable,
}

fn check(root: &Path, s: &Scan) -> Findings {
    let mut f = Findings::default();
    // Every blob: re-hash and compare with the integrity its path stands for.
    let mut state: HashMap<&Path, BlobState> = HashMap::new();
    for (path, blob) in &s.blobs {
        f.blobs_checked += 1;
        let Some(sri) = &blob.integrity else {
            f.problems.push(Problem {
                kind: "stray-file",
                path: rel(root, path),
                key: None,
                node: None,
                message: "a file where no blob can be (its path is not an integrity)".into(),
            });
            f.bad_blobs.insert(path.clone());
            continue;
        };
        let st = match std::fs::read(path) {
            Ok(bytes) if sri.check(&bytes).is_ok() => BlobState::Intact,
            Ok(_) => BlobState::Corrupt,
            Err(_) => BlobState::Unreadable,
        };
        if st != BlobState::Intact {
            f.problems.push(Problem {
                kind: "corrupt-blob",
                path: rel(root, path),
                key: None,
                node: None,
                message: format!(
                    "blob {sri} {}",
                    if st == BlobState::Corrupt {
                        "does not match its hash"
                    } else {
                        "cannot be read"
                    }
                ),
            });
            f.bad_blobs.insert(path.clone());
        }
        state.insert(path, st);
    }
    for (p, e) in &s.unreadable {
        f.problems.push(Problem {
            kind: "unreadable",
            path: rel(root, p),
            key: None,
            node: None,
            message: format!("cannot be read: {e}"),
        });
    }
    // Every index line: intact, and in the bucket its key names.
    for (bi, bucket) in s.buckets.iter().enumerate() {
        for (li, line) in bucket.lines.iter().enumerate() {
            match line {
                BucketLine::Corrupt { line, .. } => {
                    f.problems.push(Problem {
                        kind: "corrupt-index-line",
                        path: rel(root, &bucket.path),
                        key: None,
                        node: None,
                        message: format!(
                            "index line {line} is damaged (its hash does not match or it is not an entry)"
                        ),
                    });
                    f.bad_lines.entry(bi).or_default().insert(li);
                }
                BucketLine::Valid { record, .. } => {
                    if bucket_path(root, &record.key) != bucket.path {
                        f.problems.push(Problem {
                            kind: "misplaced-entry",
                            path: rel(root, &bucket.path),
                            key: Some(record.key.clone()),
                            node: None,
                            message: format!(
                                "index line {} for {} is in another key's bucket",
                                li + 1,
                                record.key
                            ),
                        });
                        f.bad_lines.entry(bi).or_default().insert(li);
                    }
                }
            }
        }
    }
    // Every current entry: its outputs blob and its files' blobs present and intact, and
    // the outputs match the digest the manifest records.
    for live in &s.live {
        f.entries_checked += 1;
        let bucket = &s.buckets[live.bucket];
        let mut why: Vec<String> = Vec::new();
        if let Some(b) = &live.broken {
            why.push(b.clone());
        }
        let blob_problem = |p: &Path| -> Option<&'static str> {
            match state.get(p) {
                None => Some("missing"),
                Some(BlobState::Intact) => None,
                Some(_) => Some("corrupt"),
            }
        };
        if let Some(text) = live.manifest.as_ref().and_then(|m| m.inline.as_ref()) {
            let intact = live
                .record
                .integrity
                .as_ref()
                .and_then(|i| i.parse::<cacache::Integrity>().ok())
                .is_some_and(|sri| crate::cache::inline_intact(&sri, text));
            let matches = serde_json::from_str::<Value>(text).ok().is_some_and(|v| {
                live.manifest.as_ref().is_some_and(|m| {
                    crate::canonical::output_digest(&v).to_hex().as_str() == m.output_digest
                })
            });
            if !intact {
                why.push("inline outputs do not match the entry's integrity".into());
            } else if !matches {
                why.push("outputs do not match the digest in the manifest".into());
            }
        }
        if let Some(out) = &live.outputs_blob {
            match blob_problem(out) {
                Some(what) => why.push(format!(
                    "outputs blob {} is {what}",
                    live.record.integrity.as_deref().unwrap_or("")
                )),
                None => {
                    if let Some(m) = &live.manifest {
                        let ok = std::fs::read(out)
                            .ok()
                            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                            .is_some_and(|v| {
                                crate::canonical::output_digest(&v).to_hex().as_str()
                                    == m.output_digest
                            });
                        if !ok {
                            why.push("outputs do not match the digest in the manifest".into());
                        }
                    }
                }
            }
        }
        if let Some(m) = &live.manifest {
            for rec in &m.files {
                let Some(p) = rec
                    .integrity
                    .parse::<cacache::Integrity>()
                    .ok()
                    .and_then(|sri| content_path(root, &sri))
                else {
                    continue; // already reported as broken
                };
                if let Some(what) = blob_problem(&p) {
                    why.push(format!(
                        "blob {} of written file '{}' is {what}",
                        rec.integrity, rec.path
                    ));
                }
            }
        }
        if !why.is_empty() {
            f.problems.push(Problem {
                kind: "bad-entry",
                path: rel(root, &bucket.path),
                key: Some(live.record.key.clone()),
                node: Some(live.node()).filter(|n| !n.is_empty()),
                message: format!("{}: {}", live.describe(), why.join("; ")),
            });
            // Drop every line of the key: an older line would only come back to life.
            let lines = f.bad_lines.entry(live.bucket).or_default();
            for (li, line) in bucket.lines.iter().enumerate() {
                if let BucketLine::Valid { record, .. } = line {
                    if record.key == live.record.key {
                        lines.insert(li);
                    }
                }
            }
        }
    }
    f
}

fn verify(root: &Path, fix: bool, json: bool) -> ExitCode {
    if !root.is_dir() {
        if json {
            out_line(
                &serde_json::to_string_pretty(
                    &json!({"ok": true, "problems": [], "entries": 0, "blobs": 0}),
                )
                .unwrap_or_default(),
            );
        } else {
            err_line(&format!(
                "no cache at {}: nothing to verify",
                root.display()
            ));
        }
        return ExitCode::Ok;
    }
    let _lock = match take_lock(root) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let s = scan(root);
    let f = check(root, &s);
    let mut fixed = json!(null);
    let mut fix_error = None;
    let mut clean_after_fix = false;
    if fix && !f.problems.is_empty() {
        generation_bump(root);
        let mut blobs_removed = 0;
        for p in &f.bad_blobs {
            if std::fs::remove_file(p).or_else(ignore_not_found).is_ok() {
                blobs_removed += 1;
            }
        }
        let keep: BTreeMap<usize, Vec<usize>> = s
            .buckets
            .iter()
            .enumerate()
            .map(|(bi, b)| {
                let bad = f.bad_lines.get(&bi);
                let kept = (0..b.lines.len())
                    .filter(|li| !bad.is_some_and(|set| set.contains(li)))
                    .collect();
                (bi, kept)
            })
            .collect();
        let entries_removed = f.problems.iter().filter(|p| p.kind == "bad-entry").count();
        match rewrite_buckets(root, &s, &keep) {
            Ok((buckets, lines)) => {
                fixed = json!({"blobs_removed": blobs_removed, "entries_removed": entries_removed,
                               "buckets_rewritten": buckets, "lines_removed": lines});
            }
            Err(e) => fix_error = Some(e),
        }
        prune_empty_dirs(&root.join(INDEX_DIR));
        prune_empty_dirs(&root.join(CONTENT_DIR));
        let again = check(root, &scan(root));
        clean_after_fix = again.problems.is_empty() && fix_error.is_none();
    }
    if json {
        let doc = json!({
            "ok": f.problems.is_empty() || clean_after_fix,
            "entries": f.entries_checked,
            "blobs": f.blobs_checked,
            "problems": f.problems.iter().map(|p| p.json()).collect::<Vec<_>>(),
            "fixed": fixed,
            "temp_files": s.tmp_files.len(),
        });
        out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for p in &f.problems {
            out_line(&format!("{}: {} — {}", p.kind, p.path, p.message));
        }
        out_line(&format!(
            "verify: {} entries, {} blobs checked: {}",
            f.entries_checked,
            f.blobs_checked,
            match f.problems.len() {
                0 => "no problems".to_string(),
                1 => "1 problem".to_string(),
                n => format!("{n} problems"),
            }
        ));
        if !s.tmp_files.is_empty() {
            out_line(&format!(
                "note: {} leftover temp file(s) from interrupted writes (`pflow cache gc` removes them)",
                s.tmp_files.len()
            ));
        }
        if fix && !f.problems.is_empty() {
            if let Some(e) = &fix_error {
                err_line(&format!("error: {e}"));
            }
            if !fixed.is_null() {
                out_line(&format!(
                    "fixed: removed {} bad entr{}, {} blob(s), {} index line(s) in {} bucket(s)",
                    fixed["entries_removed"],
                    if fixed["entries_removed"] == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    fixed["blobs_removed"],
                    fixed["lines_removed"],
                    fixed["buckets_rewritten"]
                ));
            }
            out_line(if clean_after_fix {
                "verify: the cache is sound now"
            } else {
                "verify: problems remain after --fix"
            });
        } else if !f.problems.is_empty() {
            out_line("run `pflow cache verify --fix` to remove them");
        }
    }
    if f.problems.is_empty() || clean_after_fix {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    }
}

// ---------------------------------------------------------------------------------------
// gc
// ---------------------------------------------------------------------------------------

/// Why `gc` evicts an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Eviction {
    /// Unreadable, or a blob it needs is gone.
    Broken,
    /// Older than `--max-age`.
    Age,
    /// Least recently used, while the cache is over `--max-size`.
    Size,
}

impl Eviction {
    /// The JSON `reason`.
    fn as_str(self) -> &'static str {
        match self {
            Eviction::Broken => "broken",
            Eviction::Age => "age",
            Eviction::Size => "size",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Eviction::Broken => "broken",
            Eviction::Age => "older than --max-age",
            Eviction::Size => "least recently used",
        }
    }
}

fn gc(root: &Path, max_size: Option<u64>, max_age: Option<Duration>, json: bool) -> ExitCode {
    if !root.is_dir() {
        if json {
            out_line(
                &serde_json::to_string_pretty(
                    &json!({"evicted": [], "size_before": 0, "size_after": 0}),
                )
                .unwrap_or_default(),
            );
        } else {
            err_line(&format!(
                "no cache at {}: nothing to collect",
                root.display()
            ));
        }
        return ExitCode::Ok;
    }
    let _lock = match take_lock(root) {
        Ok(l) => l,
        Err(code) => return code,
    };

    // 1. Leftover temp files (nothing is being written: we hold the exclusive lock).
    let s = scan(root);
    let size_before = s.content_bytes() + s.index_bytes();
    let entries_before = s.live.len();
    let mut temp_removed = 0usize;
    let mut temp_bytes = 0u64;
    for (p, size) in &s.tmp_files {
        if std::fs::remove_file(p).is_ok() {
            temp_removed += 1;
            temp_bytes += size;
        }
    }

    // 2. Decide which entries stay. Broken ones go first, then those past the age, then
    //    the least recently used until the cache fits.
    let mut evicted: Vec<(usize, Eviction)> = Vec::new();
    let mut alive: Vec<usize> = Vec::new();
    let now = crate::cache::now_ms();
    for (i, l) in s.live.iter().enumerate() {
        let missing = l.blobs.iter().any(|b| !s.blobs.contains_key(b));
        if l.broken.is_some() || missing {
            evicted.push((i, Eviction::Broken));
        } else if max_age.is_some_and(|a| now.saturating_sub(l.recency_ms) > a.as_millis()) {
            evicted.push((i, Eviction::Age));
        } else {
            alive.push(i);
        }
    }
    let mut refs: HashMap<&Path, usize> = HashMap::new();
    for &i in &alive {
        for b in unique(&s.live[i].blobs) {
            *refs.entry(b).or_insert(0) += 1;
        }
    }
    let blob_size = |p: &Path| s.blobs.get(p).map(|b| b.size).unwrap_or(0);
    let mut size: u64 = refs.keys().map(|p| blob_size(p)).sum::<u64>()
        + alive
            .iter()
            .map(|&i| s.live[i].line_bytes(&s.buckets))
            .sum::<u64>();
    if let Some(max) = max_size {
        alive.sort_by_key(|&i| (s.live[i].recency_ms, s.live[i].record.time));
        let mut keep_from = 0;
        while size > max && keep_from < alive.len() {
            let i = alive[keep_from];
            keep_from += 1;
            size -= s.live[i].line_bytes(&s.buckets);
            for b in unique(&s.live[i].blobs) {
                if let Some(n) = refs.get_mut(b) {
                    *n -= 1;
                    if *n == 0 {
                        refs.remove(b);
                        size -= blob_size(b);
                    }
                }
            }
            evicted.push((i, Eviction::Size));
        }
        alive.drain(..keep_from);
    }

    // Anything that remembers entries outside the index must look again.
    let removes_blobs = s.blobs.keys().any(|p| !refs.contains_key(p.as_path()));
    if !evicted.is_empty() || removes_blobs {
        generation_bump(root);
    }

    // 3. Compact the index: each surviving key keeps its newest line only.
    let mut keep: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for &i in &alive {
        keep.entry(s.live[i].bucket)
            .or_default()
            .push(s.live[i].line);
    }
    for v in keep.values_mut() {
        v.sort();
    }
    let (buckets_rewritten, lines_dropped) = match rewrite_buckets(root, &s, &keep) {
        Ok(x) => x,
        Err(e) => {
            err_line(&format!("error: {e}"));
            return ExitCode::Failed;
        }
    };

    // 4. Blobs no surviving entry references.
    let mut blobs_removed = 0usize;
    let mut blob_bytes = 0u64;
    for (p, b) in &s.blobs {
        if !refs.contains_key(p.as_path()) && std::fs::remove_file(p).is_ok() {
            blobs_removed += 1;
            blob_bytes += b.size;
        }
    }
    prune_empty_dirs(&root.join(INDEX_DIR));
    prune_empty_dirs(&root.join(CONTENT_DIR));
    prune_empty_dirs(&root.join(TMP_DIR));

    let after = scan(root);
    let size_after = after.content_bytes() + after.index_bytes();
    let count = |why: Eviction| evicted.iter().filter(|(_, w)| *w == why).count();
    if json {
        let list: Vec<Value> = evicted
            .iter()
            .map(|(i, why)| {
                let l = &s.live[*i];
                json!({"key": l.record.key, "node": l.node(), "reason": why.as_str(),
                       "last_used": format_time(l.recency_ms)})
            })
            .collect();
        let doc = json!({
            "evicted": list,
            "entries_before": entries_before,
            "entries_after": after.live.len(),
            "blobs_removed": blobs_removed,
            "blob_bytes_removed": blob_bytes,
            "temp_files_removed": temp_removed,
            "temp_bytes_removed": temp_bytes,
            "buckets_rewritten": buckets_rewritten,
            "index_lines_dropped": lines_dropped,
            "size_before": size_before,
            "size_after": size_after,
        });
        out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        for (i, why) in &evicted {
            let l = &s.live[*i];
            out_line(&format!(
                "evicted {} ({}; last used {})",
                l.describe(),
                why.describe(),
                format_time(l.recency_ms)
            ));
        }
        out_line(&format!(
            "gc: evicted {} entr{} ({} least recently used, {} too old, {} broken); removed {} blob(s) ({}), {} temp file(s) ({}); compacted {} bucket(s) ({} line(s) dropped)",
            evicted.len(),
            if evicted.len() == 1 { "y" } else { "ies" },
            count(Eviction::Size),
            count(Eviction::Age),
            count(Eviction::Broken),
            blobs_removed,
            format_bytes(blob_bytes),
            temp_removed,
            format_bytes(temp_bytes),
            buckets_rewritten,
            lines_dropped
        ));
        out_line(&format!(
            "gc: {} entries, {} → {}",
            after.live.len(),
            format_bytes(size_before),
            format_bytes(size_after)
        ));
    }
    ExitCode::Ok
}

fn unique(v: &[PathBuf]) -> BTreeSet<&Path> {
    v.iter().map(|p| p.as_path()).collect()
}

// ---------------------------------------------------------------------------------------
// clear
// ---------------------------------------------------------------------------------------

/// Remove what the cache holds (index, content, temp files, explain and build-state
/// records, build stats). Only pflow's own names are removed, so a `--cache-dir` pointed
/// at the wrong folder loses nothing else; recorded repairs (`repairs/`) are kept, and so
/// is the lock file and the generation number (bumped).
fn clear(root: &Path, json: bool) -> ExitCode {
    if !root.is_dir() {
        if json {
            out_line(
                &serde_json::to_string_pretty(&json!({"cleared": false, "entries": 0, "bytes": 0}))
                    .unwrap_or_default(),
            );
        } else {
            err_line(&format!("no cache at {}: nothing to clear", root.display()));
        }
        return ExitCode::Ok;
    }
    let _lock = match take_lock(root) {
        Ok(l) => l,
        Err(code) => return code,
    };
    let s = scan(root);
    let bytes = s.content_bytes() + s.index_bytes();
    let mut failed = Vec::new();
    // Kept (and bumped, never reset): a reset would make old build records valid again.
    generation_bump(root);
    for name in [
        INDEX_DIR,
        CONTENT_DIR,
        TMP_DIR,
        LEGACY_EXPLAIN_DIR,
        RECORDS_DIR,
        crate::cache::layout::TIMINGS_DIR,
    ] {
        let p = root.join(name);
        if let Err(e) = std::fs::remove_dir_all(&p).or_else(ignore_not_found) {
            failed.push(format!("{}: {e}", p.display()));
        }
    }
    if let Err(e) = std::fs::remove_file(root.join(STATS_FILE)).or_else(ignore_not_found) {
        failed.push(format!("{STATS_FILE}: {e}"));
    }
    if json {
        let doc = json!({"cleared": failed.is_empty(), "entries": s.live.len(),
                         "blobs": s.blobs.len(), "bytes": bytes, "errors": failed});
        out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else if failed.is_empty() {
        err_line(&format!(
            "cleared {} ({} entries, {} blobs, {})",
            root.display(),
            s.live.len(),
            s.blobs.len(),
            format_bytes(bytes)
        ));
    } else {
        for f in &failed {
            err_line(&format!("error: cannot remove {f}"));
        }
    }
    if failed.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1KB"), Ok(1000));
        assert_eq!(parse_size("500MB"), Ok(500_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 * 1024 * 1024 * 1024));
        assert_eq!(parse_size("1.5k"), Ok(1500));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert!(parse_size("5 parsecs").is_err());
    }

    #[test]
    fn ages() {
        assert_eq!(parse_age("7d"), Ok(Duration::from_secs(7 * 86400)));
        assert_eq!(parse_age("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_age("soon").is_err());
    }
}
