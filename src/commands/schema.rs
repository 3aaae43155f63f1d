//! `pflow schema`: the workflow format as a JSON Schema ([`crate::schema`]).

use super::{ExitCode, Result};

pub fn run() -> Result {
    let schema = crate::schema::workflow_schema();
    crate::report::out_line(&serde_json::to_string_pretty(&schema).unwrap_or_default());
    Ok(ExitCode::Ok)
}
