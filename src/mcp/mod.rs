//! MCP (Model Context Protocol): the servers a user configured, the one connection per
//! server a command keeps, and the tool lists synced from them. Built on the official
//! SDK (`rmcp`). Tools become node types in [`crate::nodes::mcp`]; `pflow mcp serve`
//! (pflow as a server) is in [`crate::commands`], above the executor it drives.

pub mod client;
pub mod config;
pub mod tools;
