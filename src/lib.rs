//! pflow runs JSON and Markdown workflows the way a build system runs a build.
//!
//! Data flows one way, and every import points down this list. At the bottom are the
//! primitives everything shares: [`error`] and [`diagnostic`] (what went wrong, and
//! where; [`source_map`] places it on a line of the file), [`canonical`] and [`key`] (digests and node keys), [`fsutil`] (atomic writes,
//! file digests), [`file_pattern`] (declared paths and globs), [`http`] (client
//! plumbing), [`interrupt`], [`secrets`] and [`environment`] (what a child process may
//! see), [`shell_text`] (where a value lands in a shell command). Above them, storage:
//! [`cache`] keeps node results, build and no-op records, stats and the remote cache, and knows
//! nothing of workflows or the terminal. Then the language: a workflow file is read
//! ([`source`], with [`markdown`] for `.pflow.md` files; [`node_texts`] cuts a JSON
//! one into its nodes' texts for the edit path) and decoded into the IR
//! ([`workflow`]), whose templates ([`template`]) and node types ([`nodes`], with the LLM
//! client [`llm`] and the MCP client [`mcp`]) it names, described as a JSON Schema by
//! [`schema`]; [`nested`] expands the workflows a workflow runs into its own graph, and [`validate`] checks
//! it and builds the DAG ([`graph`], with the edges paths imply: [`file_edges`]); [`inputs`] binds the user's values. The
//! [`executor`] runs the DAG in parallel, deciding for each node in one place whether it
//! reuses a cached result or runs; [`report`] and [`render`] show what happened, and
//! [`timeline`] keeps its events for [`timings`] (an HTML page) and [`profile`] (Chrome's
//! trace format), and [`watched`] is what `--watch` watches;
//! [`repair`] asks a model to fix a failed build, and [`store`] keeps saved workflows. At
//! the top, [`cli`] declares the arguments, [`config`] reads the settings files, and
//! [`commands`] runs them, one file per subcommand, with one error type and one place
//! that prints it.
//!
//! A node's cache key is a BLAKE3 hash over everything that can change its result (its
//! type, static params, the output digests of its dependencies, the inputs and files it
//! reads), so a build after an edit re-runs exactly what the edit reaches.

// `NodeError` carries a failed node's partial outputs (stdout, stderr, exit code) by
// design; failures are rare and off the hot path, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod cache;
pub mod canonical;
pub mod cli;
pub mod commands;
pub mod config;
pub mod diagnostic;
pub mod environment;
pub mod error;
pub mod executor;
pub mod file_edges;
pub mod file_pattern;
pub mod fsutil;
pub mod graph;
pub mod http;
pub mod inputs;
pub mod interrupt;
pub mod key;
pub mod llm;
pub mod markdown;
pub mod mcp;
pub mod memory;
pub mod nested;
pub mod node_form;
pub mod node_texts;
pub mod nodes;
pub mod profile;
pub mod render;
pub mod repair;
pub mod report;
pub mod schema;
pub mod secrets;
pub mod shell_text;
pub mod source;
pub mod source_map;
pub mod store;
pub mod template;
pub mod timeline;
pub mod timings;
pub mod validate;
pub mod watched;
pub mod workflow;
pub mod workspace;
