//! `pflow graph WORKFLOW`: the DAG as Mermaid or DOT.

use super::{load, Error, ExitCode, Result};
use crate::cli::GraphFormat;

pub fn run(arg: &str, format: GraphFormat) -> Result {
    let (_, v) = load(arg).map_err(|report| Error::diagnostics(arg, report))?;
    let text = match format {
        GraphFormat::Mermaid => crate::render::mermaid(&v),
        GraphFormat::Dot => crate::render::dot(&v),
    };
    crate::report::out_text(&text);
    Ok(ExitCode::Ok)
}
