//! `pflow repair list | show PATCH | apply PATCH [WORKFLOW]`: recorded repairs.

use super::{Error, ExitCode, Result};
use crate::cli::RepairAction;
use crate::repair::patch;
use crate::repair::placeholder::Placeholders;
use std::path::{Path, PathBuf};

pub fn run(action: RepairAction, cache_root: &Path) -> Result {
    match action {
        RepairAction::List => list(cache_root),
        RepairAction::Show { patch } => show(cache_root, &patch),
        RepairAction::Apply { patch, workflow } => apply(cache_root, &patch, workflow.as_deref()),
    }
}

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

fn list(cache_root: &Path) -> Result {
    let records = patch::list(cache_root);
    if records.is_empty() {
        crate::report::err_line(&format!(
            "no recorded repairs in {}",
            patch::repairs_dir(cache_root).display()
        ));
        return Ok(ExitCode::Ok);
    }
    for (path, r) in records {
        let fixed: Vec<String> = r
            .errors
            .iter()
            .map(|e| format!("{} ({})", e.node, e.category))
            .collect();
        let state = match (&r.demoted, r.proven) {
            (Some(_), _) => "demoted",
            (None, true) => "proven",
            (None, false) => "unproven",
        };
        crate::report::out_line(&format!(
            "{}  {}  {}  {state}  fixed: {}",
            path.display(),
            r.created_at,
            r.workflow,
            fixed.join(", ")
        ));
    }
    Ok(ExitCode::Ok)
}

fn show(cache_root: &Path, arg: &str) -> Result {
    let path = locate(cache_root, arg);
    match patch::load(&path) {
        Ok(r) => {
            crate::report::out_line(&serde_json::to_string_pretty(&r).unwrap_or_default());
            Ok(ExitCode::Ok)
        }
        Err(e) => Err(Error::invalid(e.to_string())),
    }
}

fn apply(cache_root: &Path, arg: &str, workflow: Option<&str>) -> Result {
    let path = locate(cache_root, arg);
    let record = patch::load(&path).map_err(|e| Error::invalid(e.to_string()))?;
    let target = PathBuf::from(workflow.unwrap_or(&record.workflow));
    let doc = crate::source::read_workflow_file(&target)
        .map_err(|d| {
            let why = d.first().map(|d| d.message.clone()).unwrap_or_default();
            Error::invalid(format!("{}: {why}", target.display()))
        })?
        .doc;
    let ir = crate::repair::ir_of(&doc);
    // Patches hold secrets as placeholders: apply to the workflow in that form, then put
    // its own secrets back.
    let secrets = Placeholders::collect(&ir, &serde_json::Map::new());
    let hidden = secrets.hide(&ir);
    if patch::workflow_digest(&hidden) == record.repaired_digest {
        crate::report::err_line(&format!(
            "{} is already applied to {}; nothing to do",
            path.display(),
            target.display()
        ));
        return Ok(ExitCode::Ok);
    }
    let mut repaired = patch::apply(&record, &hidden)
        .map_err(|e| Error::invalid(format!("{}: {e}", target.display())))?;
    secrets.reveal(&mut repaired).map_err(|e| {
        Error::invalid(format!(
            "{}: the patch cannot be applied here: {e}",
            target.display()
        ))
    })?;
    if let Err(report) = crate::nested::validate(&repaired, &super::origin_of(&target)) {
        super::print_diagnostics(&target.display().to_string(), &report);
        return Err(Error::invalid(format!(
            "the patched workflow is invalid; {} was not changed",
            target.display()
        )));
    }
    crate::repair::apply_to_file(&target, &doc, &repaired)
        .map_err(|e| Error::invalid(format!("cannot write {}: {e}", target.display())))?;
    crate::report::err_text(&patch::unified_diff(&hidden, &secrets.hide(&repaired)));
    crate::report::err_line(&format!(
        "applied {} to {}",
        path.display(),
        target.display()
    ));
    Ok(ExitCode::Ok)
}
