//! The figures of each build run, appended as one JSON line to `build-stats.jsonl`
//! (`pflow cache stats` sums them). The executor hands over one plain [`Tally`] per
//! node; this module knows nothing of how the build was run.

use super::layout;
use super::remote::Counts;
use serde::{Deserialize, Serialize};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

/// The stats file is trimmed to its newer half when it grows past this.
const STATS_MAX_BYTES: u64 = 256 * 1024;

/// How one node of a build ended, as the stats count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tally {
    /// Reused from the cache (`restored`: its written files had to be put back).
    /// `upstream_ran`: a dependency ran, so this is an early cutoff. `saved_ms`: the
    /// recorded run time of the entry found, when the cache noted one.
    Hit {
        saved_ms: Option<u64>,
        restored: bool,
        upstream_ran: bool,
    },
    /// Reused from this command's own memory (an earlier repair attempt): not counted.
    Memo,
    Ran,
    Failed,
    Skipped,
}

/// The figures of one build run, as appended to the stats file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct BuildStats {
    pub run_id: String,
    /// When the run ended (unix ms).
    pub time_ms: u64,
    pub nodes: u64,
    /// Nodes reused from the cache (`cached` or `restored`).
    pub hits: u64,
    /// Nodes that ran.
    pub misses: u64,
    /// Hits with at least one dependency that ran: reused because the upstream's output
    /// did not change.
    pub early_cutoffs: u64,
    /// Hits for which written files had to be restored.
    pub restored: u64,
    pub failed: u64,
    pub skipped: u64,
    /// Sum of the recorded run times of the hits.
    pub time_saved_ms: u64,
    pub duration_ms: u64,
    pub success: bool,
    /// Remote cache figures (zero when no remote cache was used): entries downloaded,
    /// lookups that found nothing usable, bytes moved, entries uploaded, failed requests
    /// and corrupt downloads.
    #[serde(default)]
    pub remote_hits: u64,
    #[serde(default)]
    pub remote_misses: u64,
    #[serde(default)]
    pub remote_bytes_down: u64,
    #[serde(default)]
    pub remote_bytes_up: u64,
    #[serde(default)]
    pub remote_uploads: u64,
    #[serde(default)]
    pub remote_errors: u64,
}

impl BuildStats {
    /// The figures of one run, from how each of its nodes ended.
    pub fn tally(
        run_id: &str,
        duration_ms: u64,
        success: bool,
        nodes: impl IntoIterator<Item = Tally>,
    ) -> BuildStats {
        let mut s = BuildStats {
            run_id: run_id.to_string(),
            time_ms: super::now_ms() as u64,
            duration_ms,
            success,
            ..BuildStats::default()
        };
        for t in nodes {
            s.nodes += 1;
            match t {
                Tally::Memo => {}
                Tally::Hit {
                    saved_ms,
                    restored,
                    upstream_ran,
                } => {
                    s.hits += 1;
                    s.restored += u64::from(restored);
                    s.early_cutoffs += u64::from(upstream_ran);
                    // Run times come from entries a remote may have sent.
                    s.time_saved_ms = s.time_saved_ms.saturating_add(saved_ms.unwrap_or(0));
                }
                Tally::Ran => s.misses += 1,
                Tally::Failed => s.failed += 1,
                Tally::Skipped => s.skipped += 1,
            }
        }
        s
    }

    /// Add the remote cache's figures for the same run.
    pub fn with_remote(mut self, c: Counts) -> BuildStats {
        self.remote_hits = c.hits;
        self.remote_misses = c.misses;
        self.remote_bytes_down = c.bytes_down;
        self.remote_bytes_up = c.bytes_up;
        self.remote_uploads = c.uploads;
        self.remote_errors = c.errors;
        self
    }
}

/// Append one record to the stats file, trimming it to its newer half when it has
/// grown past a bound. Writers serialize on an exclusive lock of the file itself.
pub fn append(root: &Path, stats: &BuildStats) -> std::io::Result<()> {
    use fs4::fs_std::FileExt;
    std::fs::create_dir_all(root)?;
    let mut line = serde_json::to_vec(stats)?;
    line.push(b'\n');
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(layout::stats_path(root))?;
    FileExt::lock_exclusive(&file)?;
    let len = file.seek(SeekFrom::End(0))?;
    if len + line.len() as u64 > STATS_MAX_BYTES {
        let mut all = Vec::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_end(&mut all)?;
        let half = all.len() / 2;
        let cut = all[half..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|p| half + p + 1)
            .unwrap_or(all.len());
        let mut kept = all[cut..].to_vec();
        kept.extend_from_slice(&line);
        file.set_len(0)?;
        file.seek(SeekFrom::Start(0))?;
        file.write_all(&kept)?;
    } else {
        // A torn last line (a killed writer) must not swallow this one.
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::End(-1))?;
            file.read_exact(&mut last)?;
            if last[0] != b'\n' {
                file.write_all(b"\n")?;
            }
        }
        file.write_all(&line)?;
    }
    file.flush()?;
    let _ = FileExt::unlock(&file);
    Ok(())
}

/// The build records in the stats file, oldest first (damaged lines are skipped).
pub fn recorded(root: &Path) -> Vec<BuildStats> {
    std::fs::read(layout::stats_path(root))
        .map(|bytes| {
            bytes
                .split(|b| *b == b'\n')
                .filter_map(|l| serde_json::from_slice(l).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memo_hits_are_not_cache_hits_and_saved_time_comes_from_seen_entries() {
        let nodes = [
            Tally::Hit {
                saved_ms: Some(40),
                restored: true,
                upstream_ran: true,
            },
            Tally::Hit {
                saved_ms: None,
                restored: false,
                upstream_ran: false,
            },
            Tally::Memo,
            Tally::Ran,
            Tally::Failed,
            Tally::Skipped,
        ];
        let s = BuildStats::tally("r", 7, false, nodes);
        assert_eq!((s.nodes, s.hits, s.restored, s.early_cutoffs), (6, 2, 1, 1));
        assert_eq!((s.misses, s.failed, s.skipped), (1, 1, 1));
        assert_eq!(s.time_saved_ms, 40);
    }

    #[test]
    fn appended_records_read_back_after_a_torn_line() {
        let dir = tempfile::tempdir().unwrap();
        let one = BuildStats {
            run_id: "one".into(),
            ..BuildStats::default()
        };
        append(dir.path(), &one).unwrap();
        std::fs::OpenOptions::new()
            .append(true)
            .open(layout::stats_path(dir.path()))
            .unwrap()
            .write_all(b"{\"run_id\": \"tor")
            .unwrap();
        let two = BuildStats {
            run_id: "two".into(),
            ..BuildStats::default()
        };
        append(dir.path(), &two).unwrap();
        let ids: Vec<String> = recorded(dir.path()).into_iter().map(|s| s.run_id).collect();
        assert_eq!(ids, ["one", "two"]);
    }
}
