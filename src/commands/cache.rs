//! `pflow cache stats | verify | gc | clear`: keeping the cache bounded and trustworthy.
//!
//! The cache (see `crate::cache`) is node entries appended to segment files under
//! `packs/` (records with a checked header and payload; the newest entry record of a
//! key wins, and use records mark its hits), and cacache blobs under
//! `content-v2/<algo>/<aa>/<bb>/<rest of hex digest>`, whose path *is* their integrity.
//! cacache has no verify, gc or locking of its own, so this module reads both directly.
//!
//! `verify`, `gc` and `clear` hold the cache's exclusive lock (builds hold it shared), so
//! they never remove a segment or a blob under a running build. They never edit a
//! segment either: what they keep goes into a new one (written in `tmp/`, synced, then
//! renamed into `packs/`), and then the old ones are removed. A crash in between leaves
//! entries twice, which is harmless.

use super::{Error, ExitCode};
use crate::cache::layout::{
    self, bump_generation, content_path, CONTENT_DIR, LEGACY_EXPLAIN_DIR, LEGACY_INDEX_DIR,
    OWN_DIRS, PACKS_DIR, RECORDS_DIR, STATS_FILE, TMP_DIR,
};
use crate::cache::lock::{self, CacheLock, Mode};
use crate::cache::pack::{self, Found, Header, Kind, ScanEnd};
use crate::cache::{Manifest, Packed};
use crate::cli::{CacheAction, OutputFormat};
use crate::key::{Key, KeyMap};
use crate::report::{err_line, out_line};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
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

/// A time from a cache file as RFC 3339, or as milliseconds past 1970 when it is past
/// what that can write (the year 9999: a file edited by hand, a clock far off).
fn format_time(ms: u128) -> String {
    use std::fmt::Write;
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX));
    let mut out = String::new();
    match write!(out, "{}", humantime::format_rfc3339_seconds(t)) {
        Ok(()) => out,
        Err(_) => format!("{ms} ms after 1970"),
    }
}

/// A path relative to the cache root, for messages.
fn rel(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).display().to_string()
}

// ---------------------------------------------------------------------------------------
// Scanning the cache
// ---------------------------------------------------------------------------------------

/// A record of a segment.
struct Record {
    offset: u64,
    header: Header,
    /// The payload, when it matches its check.
    payload: Option<Vec<u8>>,
}

struct Segment {
    path: PathBuf,
    size: u64,
    records: Vec<Record>,
    /// Bytes that are no record: (offset, length).
    damage: Vec<(u64, u64)>,
    /// Where a record cut short at the end begins.
    torn: Option<u64>,
    /// Not a segment at all: its file header is wrong.
    foreign: bool,
}

struct Blob {
    size: u64,
    /// None: the file is not where a blob could be (a stray file).
    integrity: Option<cacache::Integrity>,
}

/// The current entry of a key: its newest intact entry record.
struct Live {
    segment: usize,
    record: usize,
    key: Key,
    /// When the entry was written (unix ms).
    time_ms: u128,
    /// Last write or hit (unix ms): its newest use record, or its write if later.
    recency_ms: u128,
    integrity: Option<String>,
    /// The outputs blob, unless the outputs are inline (or the integrity is malformed).
    outputs_blob: Option<PathBuf>,
    /// The outputs blob and the blobs of written files.
    blobs: Vec<PathBuf>,
    manifest: Option<Manifest>,
    /// Why the entry cannot be used, as far as its record alone tells.
    broken: Option<String>,
}

impl Live {
    fn node(&self) -> String {
        self.manifest
            .as_ref()
            .map(|m| m.node.clone())
            .unwrap_or_default()
    }

    /// Bytes it takes in a segment: its record, and a use record when it was used
    /// after it was written.
    fn bytes(&self, segments: &[Segment]) -> u64 {
        let own = segments[self.segment].records[self.record]
            .header
            .record_len();
        own + if self.recency_ms > self.time_ms {
            pack::HEADER_LEN as u64
        } else {
            0
        }
    }

    fn describe(&self) -> String {
        let node = self.node();
        if node.is_empty() {
            format!("entry {}", self.key.hex())
        } else {
            format!("entry {} (node {node})", self.key.hex())
        }
    }
}

#[derive(Default)]
struct Scan {
    segments: Vec<Segment>,
    /// Files under `packs/` that are no segment by their name.
    stray: Vec<(PathBuf, u64)>,
    blobs: BTreeMap<PathBuf, Blob>,
    tmp_files: Vec<(PathBuf, u64)>,
    /// Files or directories that could not be read.
    unreadable: Vec<(PathBuf, String)>,
    live: Vec<Live>,
    /// Files and bytes of the index older versions kept (no longer read).
    legacy_files: usize,
    legacy_bytes: u64,
}

impl Scan {
    fn content_bytes(&self) -> u64 {
        self.blobs.values().map(|b| b.size).sum()
    }

    fn index_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size).sum::<u64>()
            + self.stray.iter().map(|(_, n)| n).sum::<u64>()
    }

    fn records(&self) -> usize {
        self.segments.iter().map(|s| s.records.len()).sum()
    }

    /// Is there anything in `packs/` that a compaction would leave out?
    fn untidy(&self) -> bool {
        self.segments.len() > 1
            || !self.stray.is_empty()
            || self
                .segments
                .iter()
                .any(|s| s.foreign || s.torn.is_some() || !s.damage.is_empty())
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

/// Read one segment whole: every record (payloads checked), damage, a torn end.
fn read_segment(path: PathBuf, size: u64) -> std::io::Result<Segment> {
    let file = std::fs::File::open(&path)?;
    let mut seg = Segment {
        path,
        size,
        records: Vec::new(),
        damage: Vec::new(),
        torn: None,
        foreign: false,
    };
    let mut head = [0u8; pack::FILE_HEADER.len()];
    if size >= head.len() as u64 {
        use std::os::unix::fs::FileExt;
        file.read_exact_at(&mut head, 0)?;
        if &head != pack::FILE_HEADER {
            seg.foreign = true;
            return Ok(seg);
        }
    }
    let mut found = Vec::new();
    let end = pack::scan(&file, 0, &mut |f| found.push(f))?;
    for f in found {
        match f {
            Found::Record { offset, header } => {
                let payload = pack::read_payload(&file, offset, &header);
                seg.records.push(Record {
                    offset,
                    header,
                    payload,
                });
            }
            Found::Damage { offset, skipped } => seg.damage.push((offset, skipped)),
        }
    }
    if let ScanEnd::At(at) = end {
        if at < size {
            seg.torn = Some(at);
        }
    }
    Ok(seg)
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
    for (_, meta) in walk(&root.join(LEGACY_INDEX_DIR), &mut s.unreadable) {
        s.legacy_files += 1;
        s.legacy_bytes += meta.len();
    }
    for (path, meta) in walk(&root.join(PACKS_DIR), &mut s.unreadable) {
        let direct = path.parent() == Some(root.join(PACKS_DIR).as_path());
        if direct && pack::is_hidden_name(&path) {
            // A segment a killed build was creating.
            s.tmp_files.push((path, meta.len()));
            continue;
        }
        if !direct || !pack::is_segment_name(&path) {
            s.stray.push((path, meta.len()));
            continue;
        }
        match read_segment(path.clone(), meta.len()) {
            Ok(seg) => s.segments.push(seg),
            Err(e) => s.unreadable.push((path, e.to_string())),
        }
    }
    // The current entry of each key: its newest intact entry record; and its newest use.
    let mut newest: KeyMap<(usize, usize)> = KeyMap::default();
    let mut used: KeyMap<u64> = KeyMap::default();
    for (si, seg) in s.segments.iter().enumerate() {
        for (ri, r) in seg.records.iter().enumerate() {
            if r.payload.is_none() {
                continue;
            }
            let key = r.header.key;
            match r.header.kind {
                Kind::Use => {
                    let t = used.entry(key).or_default();
                    *t = (*t).max(r.header.time);
                }
                Kind::Entry => {
                    let newer = newest.get(&key).is_none_or(|&(s2, r2)| {
                        s.segments[s2].records[r2].header.time <= r.header.time
                    });
                    if newer {
                        newest.insert(key, (si, ri));
                    }
                }
            }
        }
    }
    let mut current: Vec<(Key, (usize, usize))> = newest.into_iter().collect();
    current.sort_by_key(|(k, _)| *k);
    for (key, (si, ri)) in current {
        let r = &s.segments[si].records[ri];
        let time_ms = r.header.time as u128;
        let recency_ms = used.get(&key).map_or(0, |&t| t as u128).max(time_ms);
        let mut live = Live {
            segment: si,
            record: ri,
            key,
            time_ms,
            recency_ms,
            integrity: None,
            outputs_blob: None,
            blobs: Vec::new(),
            manifest: None,
            broken: None,
        };
        let packed = r.payload.as_deref().map(serde_json::from_slice::<Packed>);
        match packed {
            Some(Ok(p)) => {
                live.outputs_blob = p
                    .integrity
                    .parse::<cacache::Integrity>()
                    .ok()
                    .and_then(|sri| content_path(root, &sri));
                if live.outputs_blob.is_none() {
                    live.broken = Some(format!("malformed integrity '{}'", p.integrity));
                }
                for f in &p.manifest.files {
                    match f
                        .integrity
                        .parse::<cacache::Integrity>()
                        .ok()
                        .and_then(|sri| content_path(root, &sri))
                    {
                        Some(b) => live.blobs.push(b),
                        None => {
                            live.broken = Some(format!("malformed integrity for file '{}'", f.path))
                        }
                    }
                }
                if blake3::Hash::from_hex(&p.manifest.output_digest).is_err() {
                    live.broken = Some("malformed output digest in the manifest".into());
                }
                // Inline outputs have no blob of their own.
                if p.manifest.inline.is_some() {
                    live.outputs_blob = None;
                }
                if let Some(b) = &live.outputs_blob {
                    live.blobs.insert(0, b.clone());
                }
                live.integrity = Some(p.integrity);
                live.manifest = Some(p.manifest);
            }
            Some(Err(e)) => live.broken = Some(format!("unreadable entry ({e})")),
            None => continue,
        }
        s.live.push(live);
    }
    s
}

/// Keep the entries `keep` (indices into `scan.live`), each with its recency, in one
/// new segment, and remove every segment and stray file the scan saw. Returns the
/// number of records dropped (superseded, evicted, damaged, uses merged).
fn compact(root: &Path, scan: &Scan, keep: &[usize]) -> Result<usize, String> {
    let mut body = Vec::new();
    let mut written = 0;
    for &i in keep {
        let l = &scan.live[i];
        let r = &scan.segments[l.segment].records[l.record];
        let Some(payload) = &r.payload else {
            continue;
        };
        let mut add = |kind: Kind, time: u128, payload: &[u8]| -> Result<(), String> {
            let rec = pack::encode(kind, time as u64, &l.key, payload)
                .map_err(|e| format!("cannot encode an entry: {e}"))?;
            body.extend_from_slice(&rec);
            written += 1;
            Ok(())
        };
        add(Kind::Entry, l.time_ms, payload)?;
        if l.recency_ms > l.time_ms {
            add(Kind::Use, l.recency_ms, &[])?;
        }
    }
    if written > 0 {
        pack::write_segment(root, &body)
            .map_err(|e| format!("cannot write a new segment in {}: {e}", root.display()))?;
    }
    for p in scan.segments.iter().map(|s| &s.path) {
        pack::remove_segment(root, p).map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
    }
    for (p, _) in &scan.stray {
        std::fs::remove_file(p)
            .or_else(ignore_not_found)
            .map_err(|e| format!("cannot remove {}: {e}", p.display()))?;
    }
    Ok(scan.records().saturating_sub(written))
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
    let oldest = s.live.iter().map(|l| l.time_ms).min();
    let newest = s.live.iter().map(|l| l.time_ms).max();
    let builds = crate::cache::stats::recorded(root);
    let mut runs = BTreeSet::new();
    let (mut hits, mut misses, mut cutoffs, mut restored, mut failed, mut saved) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for b in &builds {
        runs.insert(b.run_id.clone());
        // Figures from a file anyone can edit: a sum past u64 stays at its top.
        hits = hits.saturating_add(b.hits);
        misses = misses.saturating_add(b.misses);
        cutoffs = cutoffs.saturating_add(b.early_cutoffs);
        restored = restored.saturating_add(b.restored);
        failed = failed.saturating_add(b.failed);
        saved = saved.saturating_add(b.time_saved_ms);
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
            "segments": s.segments.len(),
            "legacy_index_files": s.legacy_files,
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
        "  index         {} segment{} ({})",
        s.segments.len(),
        if s.segments.len() == 1 { "" } else { "s" },
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
    if s.legacy_files > 0 {
        out_line(&format!(
            "  old index     {} files ({}; an older format, no longer read: `pflow cache gc` removes them)",
            s.legacy_files,
            format_bytes(s.legacy_bytes)
        ));
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
        self.hits = self.hits.saturating_add(b.remote_hits);
        self.misses = self.misses.saturating_add(b.remote_misses);
        self.bytes_down = self.bytes_down.saturating_add(b.remote_bytes_down);
        self.bytes_up = self.bytes_up.saturating_add(b.remote_bytes_up);
        self.uploads = self.uploads.saturating_add(b.remote_uploads);
        self.errors = self.errors.saturating_add(b.remote_errors);
    }

    fn used(&self) -> bool {
        // Not their sum, which a hand-edited file can make overflow.
        [
            self.hits,
            self.misses,
            self.uploads,
            self.errors,
            self.bytes_up,
            self.bytes_down,
        ]
        .iter()
        .any(|&n| n > 0)
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
    /// Entries (indices into the scan's `live`) to drop.
    bad_entries: BTreeSet<usize>,
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
    let problem = |kind, path: &Path, key: Option<&Key>, message: String| Problem {
        kind,
        path: rel(root, path),
        key: key.map(Key::hex),
        node: None,
        message,
    };
    for (p, _) in &s.stray {
        f.problems.push(problem(
            "stray-file",
            p,
            None,
            "a file where only segments can be (its name does not end in .pack)".into(),
        ));
    }
    // Every segment: its records whole and intact.
    for seg in &s.segments {
        if seg.foreign {
            f.problems.push(problem(
                "corrupt-segment",
                &seg.path,
                None,
                "not a pflow segment (its file header is wrong)".into(),
            ));
        }
        for (offset, len) in &seg.damage {
            f.problems.push(problem(
                "corrupt-record",
                &seg.path,
                None,
                format!("{len} bytes at offset {offset} are no intact record"),
            ));
        }
        for r in seg.records.iter().filter(|r| r.payload.is_none()) {
            f.problems.push(problem(
                "corrupt-record",
                &seg.path,
                Some(&r.header.key),
                format!("the record at offset {} does not match its check", r.offset),
            ));
        }
        if let Some(at) = seg.torn {
            f.problems.push(problem(
                "torn-record",
                &seg.path,
                None,
                format!("the record at offset {at} is cut short (an interrupted write)"),
            ));
        }
    }
    // Every current entry: its outputs blob and its files' blobs present and intact, and
    // the outputs match the digest the manifest records.
    for (i, live) in s.live.iter().enumerate() {
        f.entries_checked += 1;
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
        let digest_matches = |v: &Value| {
            live.manifest
                .as_ref()
                .is_some_and(|m| crate::canonical::output_digest_matches(v, &m.output_digest))
        };
        if let Some(text) = live.manifest.as_ref().and_then(|m| m.inline.as_ref()) {
            let intact = live
                .integrity
                .as_ref()
                .and_then(|i| i.parse::<cacache::Integrity>().ok())
                .is_some_and(|sri| crate::cache::inline_intact(&sri, text));
            let matches = serde_json::from_str::<Value>(text)
                .ok()
                .is_some_and(|v| digest_matches(&v));
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
                    live.integrity.as_deref().unwrap_or("")
                )),
                None => {
                    let ok = std::fs::read(out)
                        .ok()
                        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
                        .is_some_and(|v| digest_matches(&v));
                    if !ok {
                        why.push("outputs do not match the digest in the manifest".into());
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
                path: rel(root, &s.segments[live.segment].path),
                key: Some(live.key.hex()),
                node: Some(live.node()).filter(|n| !n.is_empty()),
                message: format!("{}: {}", live.describe(), why.join("; ")),
            });
            f.bad_entries.insert(i);
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
        // Every sound entry goes into a new segment; the old ones, with whatever was
        // damaged in them, go.
        let keep: Vec<usize> = (0..s.live.len())
            .filter(|i| !f.bad_entries.contains(i))
            .collect();
        match compact(root, &s, &keep) {
            Ok(dropped) => {
                fixed = json!({"blobs_removed": blobs_removed,
                               "entries_removed": f.bad_entries.len(),
                               "segments_rewritten": s.segments.len(),
                               "records_dropped": dropped});
            }
            Err(e) => fix_error = Some(e),
        }
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
            "legacy_index_files": s.legacy_files,
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
        if s.legacy_files > 0 {
            out_line(&format!(
                "note: {} file(s) of an older cache format in {LEGACY_INDEX_DIR}/ are no longer read (`pflow cache gc` removes them)",
                s.legacy_files
            ));
        }
        if fix && !f.problems.is_empty() {
            if let Some(e) = &fix_error {
                err_line(&format!("error: {e}"));
            }
            if !fixed.is_null() {
                out_line(&format!(
                    "fixed: removed {} bad entr{}, {} blob(s), {} record(s) in {} segment(s)",
                    fixed["entries_removed"],
                    if fixed["entries_removed"] == 1 {
                        "y"
                    } else {
                        "ies"
                    },
                    fixed["blobs_removed"],
                    fixed["records_dropped"],
                    fixed["segments_rewritten"]
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

/// What `pflow cache gc --output-format json` prints: every field, also when there is
/// no cache to collect (all zero then).
#[derive(serde::Serialize, Default)]
struct GcReport {
    evicted: Vec<Value>,
    entries_before: usize,
    entries_after: usize,
    blobs_removed: usize,
    blob_bytes_removed: u64,
    temp_files_removed: usize,
    temp_bytes_removed: u64,
    /// Workflows whose records went (each a few files), not files.
    workflow_records_removed: usize,
    workflow_record_bytes_removed: u64,
    segments_compacted: usize,
    /// Records of the segments that compaction did not keep.
    records_dropped: usize,
    legacy_index_files_removed: usize,
    size_before: u64,
    size_after: u64,
}

fn gc(root: &Path, max_size: Option<u64>, max_age: Option<Duration>, json: bool) -> ExitCode {
    if !root.is_dir() {
        if json {
            let doc = GcReport::default();
            out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
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
    // The no-op records kept as spares to be written over (`cache::spare`): a build
    // makes do without them.
    for (p, size) in crate::cache::spare::all(root) {
        if std::fs::remove_file(p).is_ok() {
            temp_removed += 1;
            temp_bytes += size;
        }
    }

    // The records of workflows no build has written for as long as an entry may go
    // unused: their projects are no longer built here (or were moved or renamed).
    let (workflows_removed, workflow_bytes) = match max_age {
        Some(age) => crate::cache::records::remove_unbuilt(root, age, std::time::SystemTime::now()),
        None => (0, 0),
    };

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
    let segment_header = pack::FILE_HEADER.len() as u64;
    let mut size: u64 = refs.keys().map(|p| blob_size(p)).sum::<u64>()
        + alive
            .iter()
            .map(|&i| s.live[i].bytes(&s.segments))
            .sum::<u64>()
        + if alive.is_empty() { 0 } else { segment_header };
    if let Some(max) = max_size {
        alive.sort_by_key(|&i| (s.live[i].recency_ms, s.live[i].time_ms));
        let mut keep_from = 0;
        while size > max && keep_from < alive.len() {
            let i = alive[keep_from];
            keep_from += 1;
            size -= s.live[i].bytes(&s.segments);
            for b in unique(&s.live[i].blobs) {
                if let Some(n) = refs.get_mut(b) {
                    *n -= 1;
                    if *n == 0 {
                        refs.remove(b);
                        size -= blob_size(b);
                    }
                }
            }
            if keep_from == alive.len() {
                size -= segment_header;
            }
            evicted.push((i, Eviction::Size));
        }
        alive.drain(..keep_from);
    }

    // Anything that remembers entries outside the segments must look again.
    let removes_blobs = s.blobs.keys().any(|p| !refs.contains_key(p.as_path()));
    if !evicted.is_empty() || removes_blobs || s.legacy_files > 0 {
        generation_bump(root);
    }

    // 3. Compact the segments into one: each surviving key keeps its newest record and
    //    its newest use. Nothing to do when there is one clean segment of exactly that.
    alive.sort_by_key(|&i| (s.live[i].time_ms, s.live[i].key));
    let wanted: usize = alive
        .iter()
        .map(|&i| 1 + usize::from(s.live[i].recency_ms > s.live[i].time_ms))
        .sum();
    let (segments_compacted, records_dropped) = if s.untidy() || s.records() != wanted {
        match compact(root, &s, &alive) {
            Ok(dropped) => (s.segments.len(), dropped),
            Err(e) => {
                err_line(&format!("error: {e}"));
                return ExitCode::Failed;
            }
        }
    } else {
        (0, 0)
    };
    // The index older versions kept: no longer read.
    if s.legacy_files > 0 {
        if let Err(e) = std::fs::remove_dir_all(root.join(LEGACY_INDEX_DIR)) {
            err_line(&format!(
                "warning: cannot remove {}: {e}",
                root.join(LEGACY_INDEX_DIR).display()
            ));
        }
    }

    // 4. Blobs no surviving entry references.
    let mut blobs_removed = 0usize;
    let mut blob_bytes = 0u64;
    for (p, b) in &s.blobs {
        if !refs.contains_key(p.as_path()) && std::fs::remove_file(p).is_ok() {
            blobs_removed += 1;
            blob_bytes += b.size;
        }
    }
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
                json!({"key": l.key.hex(), "node": l.node(), "reason": why.as_str(),
                       "last_used": format_time(l.recency_ms)})
            })
            .collect();
        let doc = GcReport {
            evicted: list,
            entries_before,
            entries_after: after.live.len(),
            blobs_removed,
            blob_bytes_removed: blob_bytes,
            temp_files_removed: temp_removed,
            temp_bytes_removed: temp_bytes,
            workflow_records_removed: workflows_removed,
            workflow_record_bytes_removed: workflow_bytes,
            segments_compacted,
            records_dropped,
            legacy_index_files_removed: s.legacy_files,
            size_before,
            size_after,
        };
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
            "gc: evicted {} entr{} ({} least recently used, {} too old, {} broken); removed {} blob(s) ({}), {} temp file(s) ({}); compacted {} segment(s) into {} ({} record(s) dropped)",
            evicted.len(),
            if evicted.len() == 1 { "y" } else { "ies" },
            count(Eviction::Size),
            count(Eviction::Age),
            count(Eviction::Broken),
            blobs_removed,
            format_bytes(blob_bytes),
            temp_removed,
            format_bytes(temp_bytes),
            segments_compacted,
            after.segments.len(),
            records_dropped
        ));
        if s.legacy_files > 0 {
            out_line(&format!(
                "gc: removed the older format's index ({LEGACY_INDEX_DIR}/, {} file(s))",
                s.legacy_files
            ));
        }
        if workflows_removed > 0 {
            out_line(&format!(
                "gc: removed the records of {workflows_removed} workflow(s) no build wrote for that long ({})",
                format_bytes(workflow_bytes)
            ));
        }
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

/// Remove what the cache holds (segments, content, temp files, the older format's
/// index, explain and build-state records, build stats). Only pflow's own names are
/// removed, so a `--cache-dir` pointed at the wrong folder loses nothing else; recorded
/// repairs (`repairs/`) are kept, and so is the lock file and the generation number
/// (bumped).
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
        PACKS_DIR,
        LEGACY_INDEX_DIR,
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

    /// A time past the year 9999 (a file edited by hand) is shown, not a panic.
    #[test]
    fn any_time_is_shown() {
        assert_eq!(format_time(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            format_time(253_402_300_800_000),
            "253402300800000 ms after 1970"
        );
        assert!(format_time(u128::MAX).ends_with(" ms after 1970"));
    }

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
