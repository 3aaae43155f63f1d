//! `pflow validate WORKFLOW`: every problem in a workflow, without running it.

use super::{diagnostics_json, load, print_diagnostics, ExitCode, Result};
use crate::cli::OutputFormat;
use crate::validate::Report;
use serde_json::json;

pub fn run(arg: &str, format: OutputFormat, strict: bool) -> Result {
    let result = load(arg).and_then(|(doc, v)| match strict {
        true => v.strict().map(|v| (doc, v)),
        false => Ok((doc, v)),
    });
    let (report, nodes) = match &result {
        Ok((_, v)) => (
            Report {
                errors: Vec::new(),
                warnings: v.warnings.clone(),
            },
            v.workflow.nodes.len(),
        ),
        Err(r) => (r.clone(), 0),
    };
    match format {
        OutputFormat::Json => {
            let doc = json!({
                "valid": report.errors.is_empty(),
                "errors": diagnostics_json(&report.errors),
                "warnings": diagnostics_json(&report.warnings),
            });
            crate::report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => {
            print_diagnostics(arg, &report);
            if report.errors.is_empty() {
                crate::report::out_line(&format!(
                    "{arg}: valid ({nodes} node{})",
                    if nodes == 1 { "" } else { "s" }
                ));
            } else {
                let n = report.errors.len();
                crate::report::err_line(&format!(
                    "{arg}: invalid ({n} error{})",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
    Ok(if report.errors.is_empty() {
        ExitCode::Ok
    } else {
        ExitCode::Invalid
    })
}
