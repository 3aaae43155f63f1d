//! pflow runs JSON workflows the way a build system runs a build.
//!
//! Data flows one way: a workflow file is read ([`source`]) and decoded into the IR
//! ([`workflow`]); [`validate`] checks it, parses its templates ([`template`]) and builds
//! the DAG ([`graph`]); the executor runs nodes ([`nodes`]) in dependency order, in
//! parallel, consulting the content-addressed cache before each one; [`report`] prints
//! what happened. A node's cache key is a BLAKE3 hash over everything that can change its
//! result (its type, static params, the output digests of its dependencies, the inputs and
//! files it reads), so a build after an edit re-runs exactly what the edit reaches.

// `NodeError` carries a failed node's partial outputs (stdout, stderr, exit code) by
// design; failures are rare and off the hot path, so its size is not worth boxing.
#![allow(clippy::result_large_err)]

pub mod build;
pub mod cache;
pub mod canonical;
pub mod cli;
pub mod diagnostic;
pub mod error;
pub mod executor;
pub mod graph;
pub mod inputs;
pub mod interrupt;
pub mod key;
pub mod llm;
pub mod maintenance;
pub mod nodes;
pub mod remote;
pub mod render;
pub mod repair;
pub mod report;
pub mod secrets;
pub mod source;
pub mod state;
pub mod store;
pub mod table;
pub mod template;
pub mod validate;
pub mod workflow;
