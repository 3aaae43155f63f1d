//! Saved workflows: `$PFLOW_HOME/workflows/<name>.json`, with run metadata (and the
//! original pflow's `<name>.pflow.md`, read as they are).
//!
//! Every change is a read-modify-write under an exclusive lock on a sibling lock file,
//! written to a temp file in the same directory and renamed into place: concurrent runs
//! never lose a count and a crash never leaves a half-written file.

use crate::diagnostic::{did_you_mean, Diagnostic};
use crate::secrets::REDACTED;
use fs4::fs_std::FileExt;
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

pub const MAX_NAME_LEN: usize = 50;

pub fn home() -> PathBuf {
    crate::environment::pflow_home()
}

pub fn workflows_dir() -> PathBuf {
    home().join("workflows")
}

/// `^[a-z0-9]+(-[a-z0-9]+)*$`, at most 50 characters.
pub fn is_valid_name(name: &str) -> bool {
    name.len() <= MAX_NAME_LEN
        && !name.is_empty()
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

pub fn name_error(name: &str) -> Diagnostic {
    Diagnostic::error("name", format!("'{name}' is not a valid workflow name")).with_hint(format!(
        "names use lowercase letters, digits and single hyphens (like 'daily-report'), at most {MAX_NAME_LEN} characters"
    ))
}

pub fn path_of(name: &str) -> PathBuf {
    workflows_dir().join(format!("{name}.json"))
}

/// Where the original pflow keeps a saved workflow: `<name>.pflow.md`, read as it is
/// (run by name, listed and shown; its run metadata is not tracked).
pub fn markdown_path_of(name: &str) -> PathBuf {
    workflows_dir().join(format!("{name}.pflow.md"))
}

/// Names of all saved workflows, sorted.
pub fn names() -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(workflows_dir())
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let stem = file
                .strip_suffix(".json")
                .or_else(|| file.strip_suffix(".pflow.md"))?;
            is_valid_name(stem).then(|| stem.to_string())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// A workflow argument that is not a file: the saved workflow of that name.
pub fn resolve(arg: &str) -> Result<PathBuf, Diagnostic> {
    let looks_like_path = arg.contains('/') || arg.ends_with(".json") || arg.ends_with(".md");
    if !looks_like_path && is_valid_name(arg) {
        for p in [path_of(arg), markdown_path_of(arg)] {
            if p.exists() {
                return Ok(p);
            }
        }
    }
    let all = names();
    let mut d = Diagnostic::error(
        "root",
        if looks_like_path || all.is_empty() {
            format!("workflow file '{arg}' does not exist")
        } else {
            format!("'{arg}' is neither a workflow file nor a saved workflow")
        },
    );
    if let Some(close) = did_you_mean(arg, all.iter().map(|s| s.as_str())) {
        d = d.with_hint(format!("did you mean the saved workflow '{close}'?"));
    } else if !all.is_empty() && !looks_like_path {
        d = d.with_hint(format!("saved workflows: {}", all.join(", ")));
    }
    Err(d)
}

/// Is this path a saved workflow (so its metadata should be updated after a run)?
pub fn saved_name(path: &Path) -> Option<String> {
    let dir = workflows_dir();
    let parent = path.parent()?;
    if parent.canonicalize().ok()? != dir.canonicalize().ok()? {
        return None;
    }
    let stem = path.file_stem()?.to_str()?;
    is_valid_name(stem).then(|| stem.to_string())
}

fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// Run `f` on the saved document under the exclusive lock, writing the result atomically.
fn modify(
    name: &str,
    f: impl FnOnce(Option<Value>) -> Result<Value, String>,
) -> Result<(), String> {
    let dir = workflows_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let lock_path = dir.join(format!(".{name}.lock"));
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| format!("cannot open lock {}: {e}", lock_path.display()))?;
    lock.lock_exclusive()
        .map_err(|e| format!("cannot lock {}: {e}", lock_path.display()))?;
    let path = path_of(name);
    let current = match std::fs::read(&path) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| format!("{} is corrupt: {e}", path.display()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let next = f(current)?;
    let mut bytes = serde_json::to_vec_pretty(&next).map_err(|e| e.to_string())?;
    bytes.push(b'\n');
    let result = crate::fsutil::write_atomic(&path, &bytes)
        .map_err(|e| format!("cannot write {}: {e}", path.display()));
    let _ = FileExt::unlock(&lock);
    result
}

/// Save a workflow document (bare IR or wrapper) under `name`.
pub fn save(
    name: &str,
    ir: &Value,
    description: Option<&str>,
    force: bool,
) -> Result<PathBuf, String> {
    modify(name, |current| {
        let now = now_rfc3339();
        match current {
            Some(_) if !force => Err(format!(
                "a saved workflow named '{name}' already exists; use --force to replace it"
            )),
            existing => {
                let created = existing
                    .as_ref()
                    .and_then(|e| e.get("created_at").cloned())
                    .unwrap_or_else(|| Value::String(now.clone()));
                Ok(json!({
                    "name": name,
                    "description": description.unwrap_or(""),
                    "ir": ir,
                    "created_at": created,
                    "updated_at": now,
                    "rich_metadata": {
                        "execution_count": 0,
                        "last_execution_timestamp": null,
                        "last_execution_success": null,
                        "last_execution_params": null,
                        "last_execution_duration_ms": null,
                    }
                }))
            }
        }
    })?;
    Ok(path_of(name))
}

/// Record a run of a saved workflow. The params `is_secret` names are redacted whole,
/// and any secret value `redactor` knows is scrubbed from the others.
pub fn record_run(
    name: &str,
    params: &[(String, String)],
    is_secret: &dyn Fn(&str) -> bool,
    redactor: &crate::secrets::Redactor,
    success: bool,
    duration_ms: u64,
) -> Result<(), String> {
    modify(name, |current| {
        let mut doc = current.ok_or_else(|| format!("saved workflow '{name}' disappeared"))?;
        let mut redacted = Map::new();
        for (k, v) in params {
            let value = if is_secret(k) {
                REDACTED.to_string()
            } else {
                redactor.scrub(v)
            };
            redacted.insert(k.clone(), Value::String(value));
        }
        let obj = doc
            .as_object_mut()
            .ok_or("saved workflow is not an object")?;
        let meta = obj.entry("rich_metadata").or_insert_with(|| json!({}));
        if !meta.is_object() {
            *meta = json!({});
        }
        if let Some(m) = meta.as_object_mut() {
            let count = m
                .get("execution_count")
                .and_then(Value::as_u64)
                .unwrap_or(0)
                .saturating_add(1);
            m.insert("execution_count".into(), json!(count));
            m.insert("last_execution_timestamp".into(), json!(now_rfc3339()));
            m.insert("last_execution_success".into(), json!(success));
            m.insert("last_execution_params".into(), Value::Object(redacted));
            m.insert("last_execution_duration_ms".into(), json!(duration_ms));
        }
        Ok(doc)
    })
}

/// Replace the IR of a saved workflow (for `--apply-repairs`).
pub fn update_ir(name: &str, ir: &Value) -> Result<(), String> {
    modify(name, |current| {
        let mut doc = current.ok_or_else(|| format!("saved workflow '{name}' disappeared"))?;
        if let Some(obj) = doc.as_object_mut() {
            obj.insert("ir".into(), ir.clone());
            obj.insert("updated_at".into(), json!(now_rfc3339()));
        }
        Ok(doc)
    })
}

/// "no saved workflow named X", with the closest saved name when there is one.
fn not_found(name: &str) -> String {
    let names = names();
    match crate::diagnostic::suggestion(name, names.iter().map(String::as_str)) {
        Some(hint) => format!("no saved workflow named '{name}' ({hint})"),
        None => format!("no saved workflow named '{name}'"),
    }
}

pub fn delete(name: &str) -> Result<(), String> {
    let path = match (path_of(name), markdown_path_of(name)) {
        (json, md) if !json.exists() && md.exists() => md,
        (json, _) => json,
    };
    std::fs::remove_file(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => not_found(name),
        _ => format!("cannot delete {}: {e}", path.display()),
    })?;
    let _ = std::fs::remove_file(workflows_dir().join(format!(".{name}.lock")));
    Ok(())
}

/// Read a saved workflow document.
pub fn load(name: &str) -> Result<Value, String> {
    let path = path_of(name);
    let md = markdown_path_of(name);
    if !path.exists() && md.exists() {
        return load_markdown(name, &md);
    }
    let bytes = std::fs::read(&path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => not_found(name),
        _ => format!("cannot read {}: {e}", path.display()),
    })?;
    serde_json::from_slice(&bytes).map_err(|e| format!("{} is corrupt: {e}", path.display()))
}

/// A saved `.pflow.md` as the wrapper a JSON one is: name, description and IR.
fn load_markdown(name: &str, path: &Path) -> Result<Value, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let parsed = crate::markdown::parse(&text).map_err(|errors| {
        let first = errors
            .first()
            .map(|d| format!("{}: {}", d.place(), d.message));
        format!(
            "{} is not a valid workflow: {}",
            path.display(),
            first.unwrap_or_default()
        )
    })?;
    Ok(json!({
        "name": name,
        "description": parsed.description.unwrap_or_default(),
        "ir": parsed.ir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_rule() {
        for ok in ["a", "daily-report", "x1-2y", &"a".repeat(50)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "A",
            "a_b",
            "-a",
            "a-",
            "a--b",
            "a b",
            "a.json",
            &"a".repeat(51),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
