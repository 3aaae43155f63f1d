//! `pflow convert WORKFLOW --to json|md`: the same IR in the other format.
//!
//! Converting reads the file's syntax only (it does not validate: a workflow for node
//! types this pflow lacks converts too). JSON is written as the bare IR; Markdown as a
//! `.pflow.md` that reads back to the same IR, or an error naming what has no Markdown
//! form.

use super::{resolve_workflow_path, Error, ExitCode, Result};
use crate::cli::ConvertFormat;
use crate::source::{self, Format};
use serde_json::Value;
use std::path::Path;

pub fn run(arg: &str, to: ConvertFormat, output: Option<&Path>) -> Result {
    let path = resolve_workflow_path(arg).map_err(|d| Error::diagnostic(arg, d))?;
    let document = source::read_workflow_file(&path).map_err(|errors| {
        Error::diagnostics(
            arg,
            crate::validate::Report {
                errors,
                warnings: Vec::new(),
            },
        )
    })?;
    let ir = crate::repair::ir_of(&document.doc);
    let text = match to {
        ConvertFormat::Json => {
            let mut t =
                serde_json::to_string_pretty(&ir).map_err(|e| Error::Failed(e.to_string()))?;
            t.push('\n');
            t
        }
        ConvertFormat::Md => {
            let (title, description) = match document.format {
                Format::Markdown => (document.title.clone(), document.description.clone()),
                Format::Json => (
                    text_field(&document.doc, "name"),
                    text_field(&document.doc, "description"),
                ),
            };
            let title = title.unwrap_or_else(|| title_of(&path));
            let mut t =
                crate::markdown::to_markdown(&ir, &title, description.as_deref()).map_err(|e| {
                    Error::invalid(format!("{arg}: cannot be written as Markdown: {e}"))
                })?;
            t.push('\n');
            t
        }
    };
    match output {
        None => crate::report::out_text(&text),
        Some(out) => crate::fsutil::write_atomic(out, text.as_bytes())
            .map_err(|e| Error::Failed(format!("cannot write {}: {e}", out.display())))?,
    }
    Ok(ExitCode::Ok)
}

fn text_field(doc: &Value, key: &str) -> Option<String> {
    doc.get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(String::from)
}

/// `release-notes` for `release-notes.json` or `release-notes.pflow.md`.
fn title_of(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = [".pflow.md", ".md", ".json"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(&name);
    if stem.is_empty() {
        "Workflow".into()
    } else {
        stem.to_string()
    }
}
