//! Recorded repairs: RFC 6902 JSON Patch files under `<cache-dir>/repairs/`.
//!
//! A record names the digest of the workflow it applies to and the error signatures it
//! fixed, so the same broken workflow failing the same way replays it without asking a
//! model, and `pflow repair apply` can refuse a patch meant for another workflow.

use super::context::Signature;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PatchRecord {
    pub version: u32,
    /// Digest of the canonical workflow the patch applies to.
    pub base_digest: String,
    pub repaired_digest: String,
    /// The workflow file as it was named on the command line (for `repair apply`).
    pub workflow: String,
    pub model: String,
    pub created_at: String,
    pub errors: Vec<Signature>,
    pub patch: json_patch::Patch,
}

/// Digest of a workflow's IR, independent of formatting and key order.
pub fn workflow_digest(ir: &Value) -> String {
    crate::canonical::value_digest(ir).to_hex().to_string()
}

pub fn repairs_dir(cache_root: &Path) -> PathBuf {
    cache_root.join("repairs")
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

/// Record a repair; returns the patch file's path.
pub fn record(
    cache_root: &Path,
    workflow: &str,
    base: &Value,
    repaired: &Value,
    errors: &[Signature],
    model: &str,
) -> std::io::Result<PathBuf> {
    let base_digest = workflow_digest(base);
    let record = PatchRecord {
        version: 1,
        base_digest: base_digest.clone(),
        repaired_digest: workflow_digest(repaired),
        workflow: workflow.to_string(),
        model: model.to_string(),
        created_at: now_rfc3339(),
        errors: errors.to_vec(),
        patch: json_patch::diff(base, repaired),
    };
    let stamp = record.created_at.replace([':', '-'], "");
    let name = format!(
        "{}-{}.json",
        stamp.trim_end_matches('Z'),
        &base_digest[..12]
    );
    let path = repairs_dir(cache_root).join(name);
    let bytes = serde_json::to_vec_pretty(&record).map_err(std::io::Error::other)?;
    crate::fsutil::write_atomic(&path, &bytes)?;
    Ok(path)
}

pub fn load(path: &Path) -> Result<PatchRecord, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read patch '{}': {e}", path.display()))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("'{}' is not a pflow repair patch: {e}", path.display()))
}

/// All recorded patches, oldest first.
pub fn list(cache_root: &Path) -> Vec<(PathBuf, PatchRecord)> {
    let mut out: Vec<(PathBuf, PatchRecord)> = std::fs::read_dir(repairs_dir(cache_root))
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter_map(|p| load(&p).ok().map(|r| (p, r)))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// A recorded repair for this exact workflow and failure, newest first.
pub fn find_replay(
    cache_root: &Path,
    base: &Value,
    errors: &[Signature],
) -> Option<(PathBuf, PatchRecord)> {
    let digest = workflow_digest(base);
    list(cache_root)
        .into_iter()
        .rev()
        .find(|(_, r)| r.base_digest == digest && r.errors == errors)
}

/// Apply a record to a workflow; refuses when the workflow is not the one it was made for.
pub fn apply(record: &PatchRecord, base: &Value) -> Result<Value, String> {
    let digest = workflow_digest(base);
    if digest != record.base_digest {
        return Err(format!(
            "this patch was recorded for a different version of the workflow (its base digest is {}, the workflow's is {}); it was not applied",
            &record.base_digest[..12.min(record.base_digest.len())],
            &digest[..12]
        ));
    }
    let mut doc = base.clone();
    json_patch::patch(&mut doc, &record.patch)
        .map_err(|e| format!("the patch does not apply: {e}"))?;
    Ok(doc)
}

/// A unified diff of two workflows, pretty-printed.
pub fn unified_diff(old: &Value, new: &Value) -> String {
    let a = serde_json::to_string_pretty(old).unwrap_or_default() + "\n";
    let b = serde_json::to_string_pretty(new).unwrap_or_default() + "\n";
    similar::TextDiff::from_lines(&a, &b)
        .unified_diff()
        .context_radius(3)
        .header("workflow", "repaired")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn records_replays_and_refuses_other_bases() {
        let dir = tempfile::tempdir().unwrap();
        let base =
            json!({"nodes": [{"id": "a", "type": "shell", "params": {"command": "ech hi"}}]});
        let fixed =
            json!({"nodes": [{"id": "a", "type": "shell", "params": {"command": "echo hi"}}]});
        let sig = vec![Signature {
            node: "a".into(),
            category: "shell".into(),
            message: "x".into(),
        }];
        let path = record(dir.path(), "wf.json", &base, &fixed, &sig, "m").unwrap();
        assert!(path.starts_with(dir.path().join("repairs")));
        let (_, rec) = find_replay(dir.path(), &base, &sig).expect("replay found");
        assert_eq!(apply(&rec, &base).unwrap(), fixed);
        assert!(find_replay(dir.path(), &fixed, &sig).is_none());
        let err = apply(&rec, &fixed).unwrap_err();
        assert!(err.contains("different version"), "{err}");
        assert!(
            unified_diff(&base, &fixed).contains("+      \"params\": {")
                || unified_diff(&base, &fixed).contains("echo hi")
        );
    }
}
