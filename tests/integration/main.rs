//! The integration tests: each module runs the real `pflow` binary on real files.
//!
//! They are one test crate so that the tree is compiled and linked once for all of them
//! (`cargo test --test integration`, or `cargo test NAME` for one test). Two suites stay
//! crates of their own: `tests/properties.rs` (library internals under proptest) and
//! `tests/memory.rs` (the peak memory of one child, with nothing running beside it).

mod common;
mod stub;

mod build_batch;
mod build_batch_workers;
mod build_cache;
mod build_cli;
mod build_compat;
mod build_declared_files;
mod build_directory;
mod build_edges;
mod build_edit;
mod build_env;
mod build_failures;
mod build_noop;
mod build_output;
mod build_process;
mod build_targets;
mod build_timings;
mod build_watch;
mod cache_maintenance;
mod compat_markdown;
mod compat_network;
mod compat_validate;
mod file_effects;
mod file_identity;
mod format_docs;
mod graph_cli;
mod harness;
mod http_node;
mod http_redirects;
mod limits;
mod llm_node;
mod malformed_patches;
mod markdown_workflows;
mod mcp_serve;
mod mcp_servers;
mod mcp_tools;
mod nested_workflows;
mod remote_cache;
mod remote_limits;
mod repair;
mod repair_trust;
mod saved_workflows;
mod secrets_redacted;
mod settings_files;
mod shell_values;
mod validate_cli;
mod validate_types;
