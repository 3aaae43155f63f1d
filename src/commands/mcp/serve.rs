//! `pflow mcp serve`: pflow as an MCP server over stdio.

use super::super::{Error, Result};

pub fn run() -> Result {
    Err(Error::Invalid(
        "pflow mcp serve is not available yet".into(),
    ))
}
