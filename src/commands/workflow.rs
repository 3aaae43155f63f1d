//! `pflow workflow save | list | show | delete`: saved workflows.

use super::{load_document, Error, ExitCode, Result};
use crate::cli::{OutputFormat, WorkflowAction};
use serde_json::{json, Value};

pub fn run(action: WorkflowAction) -> Result {
    use crate::store;
    match action {
        WorkflowAction::Save {
            file,
            name,
            description,
            force,
        } => {
            if !store::is_valid_name(&name) {
                let d = store::name_error(&name);
                return Err(Error::invalid(format!(
                    "{} ({})",
                    d.message,
                    d.hint.unwrap_or_default()
                )));
            }
            let (_, document, _) =
                load_document(&file).map_err(|report| Error::diagnostics(&file, report))?;
            let doc = document.doc;
            // A Markdown file's description is its prose under the title.
            let description = description.or(document.description).or_else(|| {
                doc.get("description")
                    .and_then(Value::as_str)
                    .map(String::from)
            });
            match store::save(
                &name,
                &crate::repair::ir_of(&doc),
                description.as_deref(),
                force,
            ) {
                Ok(path) => {
                    crate::report::err_line(&format!("saved '{name}' to {}", path.display()));
                    Ok(ExitCode::Ok)
                }
                Err(e) => Err(Error::Invalid(e)),
            }
        }
        WorkflowAction::List { output_format } => {
            let items: Vec<Value> = store::names()
                .into_iter()
                .filter_map(|n| store::load(&n).ok())
                .map(|d| {
                    json!({
                        "name": d.get("name").cloned().unwrap_or(Value::Null),
                        "description": d.get("description").cloned().unwrap_or(Value::Null),
                        "execution_count": d.pointer("/rich_metadata/execution_count").cloned().unwrap_or(json!(0)),
                        "last_execution_timestamp": d.pointer("/rich_metadata/last_execution_timestamp").cloned().unwrap_or(Value::Null),
                        "last_execution_success": d.pointer("/rich_metadata/last_execution_success").cloned().unwrap_or(Value::Null),
                    })
                })
                .collect();
            match output_format {
                OutputFormat::Json => crate::report::out_line(
                    &serde_json::to_string_pretty(&items).unwrap_or_default(),
                ),
                OutputFormat::Text => {
                    if items.is_empty() {
                        crate::report::err_line(&format!(
                            "no saved workflows in {}",
                            store::workflows_dir().display()
                        ));
                    }
                    for i in &items {
                        let name = i["name"].as_str().unwrap_or("");
                        let desc = i["description"].as_str().unwrap_or("");
                        crate::report::out_line(&format!(
                            "{name:<30} runs: {:<4} {desc}",
                            i["execution_count"]
                        ));
                    }
                }
            }
            Ok(ExitCode::Ok)
        }
        WorkflowAction::Show { name } => match store::load(&name) {
            Ok(doc) => {
                crate::report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
                Ok(ExitCode::Ok)
            }
            Err(e) => Err(Error::Invalid(e)),
        },
        WorkflowAction::Delete { name } => match store::delete(&name) {
            Ok(()) => {
                crate::report::err_line(&format!("deleted '{name}'"));
                Ok(ExitCode::Ok)
            }
            Err(e) => Err(Error::Invalid(e)),
        },
    }
}
