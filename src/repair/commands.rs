//! `pflow repair list | show PATCH | apply PATCH [WORKFLOW]`.

use super::patch;
use crate::cli::{EXIT_INVALID, EXIT_OK};
use std::path::{Path, PathBuf};

/// A patch argument: a path, or a file name inside the repairs directory.
fn locate(cache_root: &Path, arg: &str) -> PathBuf {
    let p = PathBuf::from(arg);
    if p.exists() {
        return p;
    }
    let in_dir = patch::repairs_dir(cache_root).join(arg);
    if in_dir.exists() {
        return in_dir;
    }
    if arg.ends_with(".json") {
        in_dir
    } else {
        patch::repairs_dir(cache_root).join(format!("{arg}.json"))
    }
}

pub fn list(cache_root: &Path) -> i32 {
    let records = patch::list(cache_root);
    if records.is_empty() {
        crate::report::err_line(&format!(
            "no recorded repairs in {}",
            patch::repairs_dir(cache_root).display()
        ));
        return EXIT_OK;
    }
    for (path, r) in records {
        let fixed: Vec<String> = r
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.node, e.category))
            .collect();
        crate::report::out_line(&format!(
            "{}  {}  {}  fixed: {}",
            path.display(),
            r.created_at,
            r.workflow,
            fixed.join(", ")
        ));
    }
    EXIT_OK
}

pub fn show(cache_root: &Path, arg: &str) -> i32 {
    let path = locate(cache_root, arg);
    match patch::load(&path) {
        Ok(r) => {
            crate::report::out_line(&serde_json::to_string_pretty(&r).unwrap_or_default());
            EXIT_OK
        }
        Err(e) => {
            crate::report::err_line(&format!("error: {e}"));
            EXIT_INVALID
        }
    }
}

pub fn apply(cache_root: &Path, arg: &str, workflow: Option<&str>) -> i32 {
    let path = locate(cache_root, arg);
    let record = match patch::load(&path) {
        Ok(r) => r,
        Err(e) => {
            crate::report::err_line(&format!("error: {e}"));
            return EXIT_INVALID;
        }
    };
    let target = PathBuf::from(workflow.unwrap_or(&record.workflow));
    let doc = match crate::source::read_json_file(&target) {
        Ok(d) => d,
        Err(d) => {
            crate::report::err_line(&format!("error: {}: {}", target.display(), d.message));
            return EXIT_INVALID;
        }
    };
    let ir = super::ir_of(&doc);
    let repaired = match patch::apply(&record, &ir) {
        Ok(r) => r,
        Err(e) => {
            crate::report::err_line(&format!("error: {}: {e}", target.display()));
            return EXIT_INVALID;
        }
    };
    if let Err(report) = crate::validate::validate(&repaired) {
        crate::cli::print_diagnostics(&target.display().to_string(), &report);
        crate::report::err_line(&format!(
            "error: the patched workflow is invalid; {} was not changed",
            target.display()
        ));
        return EXIT_INVALID;
    }
    if let Err(e) = super::apply_to_file(&target, &doc, &repaired) {
        crate::report::err_line(&format!("error: cannot write {}: {e}", target.display()));
        return EXIT_INVALID;
    }
    crate::report::err_text(&patch::unified_diff(&ir, &repaired));
    crate::report::err_line(&format!(
        "applied {} to {}",
        path.display(),
        target.display()
    ));
    EXIT_OK
}
