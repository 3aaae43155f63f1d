//! The command line's arguments, as clap declares them. Nothing here runs: the
//! commands are in [`crate::commands`], one file each.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pflow",
    version,
    about = "Run JSON workflows like a build: a DAG, a content-addressed cache, and LLM repair"
)]
pub struct Cli {
    /// Run as if started in DIR: relative paths (the workflow, files, the default cache
    /// directory, outputs, traces) resolve against it
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// A workflow .json file, or the name of a saved workflow
    pub workflow: String,
    /// Workflow inputs as KEY=VALUE
    pub params: Vec<String>,
    /// Cache directory (default ./.pflow-cache, or PFLOW_CACHE_DIR)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not try to repair a failed build with an LLM
    #[arg(long)]
    pub no_repair: bool,
    /// Ignore cached results (results are still stored)
    #[arg(long)]
    pub force: bool,
    /// Re-run this node even if cached (repeatable)
    #[arg(long, value_name = "NODE")]
    pub rerun: Vec<String>,
    /// Build only this node and what it needs (repeatable)
    #[arg(long, value_name = "NODE")]
    pub target: Vec<String>,
    /// Nodes to run at once (default: the number of cores)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Say why each node ran or was reused
    #[arg(long)]
    pub explain: bool,
    /// Show which nodes would run, without running anything
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output_format: OutputFormat,
    /// Print only this workflow output's value
    #[arg(long, short = 'o', value_name = "NAME")]
    pub output_key: Option<String>,
    /// Write the repaired workflow back to the workflow file
    #[arg(long)]
    pub apply_repairs: bool,
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub max_repair_attempts: u32,
    #[arg(long, value_name = "MODEL")]
    pub repair_model: Option<String>,
    #[arg(long, value_name = "FILE")]
    pub repair_prompt: Option<PathBuf>,
    /// Write a JSON trace of the build (per node times, status, key, digest)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Shared remote cache speaking Bazel's HTTP cache protocol (GET/PUT/HEAD
    /// URL/ac/<key>, URL/cas/<sha256>), consulted on local misses (or PFLOW_REMOTE_CACHE;
    /// bearer token from PFLOW_REMOTE_CACHE_TOKEN)
    #[arg(long, value_name = "URL")]
    pub remote_cache: Option<String>,
    /// Upload results to the remote cache (or PFLOW_REMOTE_CACHE_WRITE=1)
    #[arg(long)]
    pub remote_cache_write: bool,
    /// Children see only PATH, HOME, LANG, TZ, TMPDIR, TERM, USER, the variables their
    /// node declares in "reads_env" and its "env" bindings (or PFLOW_STRICT_ENV=1)
    #[arg(long)]
    pub strict_env: bool,
    /// Refuse to build (exit 2) a workflow that pastes a value into shell code
    /// (`|raw`, quoted here-documents, `sh -c`/`eval`), as `validate --strict` does
    #[arg(long)]
    pub strict: bool,
    /// Let file nodes write, move and delete in DIR too, besides the workspace
    /// (repeatable; or PFLOW_ALLOW_WRITE=DIR:DIR)
    #[arg(long, value_name = "DIR")]
    pub allow_write: Vec<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a workflow: run what changed, reuse the rest
    Build(Box<BuildArgs>),
    /// Check a workflow without running it
    Validate {
        workflow: String,
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
        /// Make warnings about values pasted into shell code (`|raw`, quoted
        /// here-documents, `sh -c`/`eval`) errors
        #[arg(long)]
        strict: bool,
    },
    /// Cache upkeep: stats, verify, gc, clear
    Cache {
        #[command(subcommand)]
        action: CacheAction,
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "text", global = true)]
        output_format: OutputFormat,
    },
    /// Saved workflows: save, list, show, delete
    Workflow {
        #[command(subcommand)]
        action: WorkflowAction,
    },
    /// List the node types: built-in ones and the tools of configured MCP servers
    Nodes {
        #[arg(long)]
        json: bool,
    },
    /// MCP servers: add, list, remove, sync, tools, info; serve pflow itself over MCP
    Mcp {
        #[command(subcommand)]
        action: McpAction,
    },
    /// Recorded repairs: list, show, apply
    Repair {
        #[command(subcommand)]
        action: RepairAction,
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// Print the workflow's DAG
    Graph {
        workflow: String,
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
}

#[derive(Subcommand, Debug, Clone)]
pub enum CacheAction {
    /// Entries, blobs, sizes, and the totals of recent builds
    Stats,
    /// Re-hash every blob and check every entry; exit 1 on any problem
    Verify {
        /// Remove the bad entries and blobs
        #[arg(long)]
        fix: bool,
    },
    /// Evict least-recently-used entries until under the bounds, then drop unreferenced blobs
    Gc {
        /// e.g. 500MB, 2GB
        #[arg(long, value_name = "SIZE")]
        max_size: Option<String>,
        /// e.g. 7d, 12h
        #[arg(long, value_name = "AGE")]
        max_age: Option<String>,
    },
    /// Remove everything in the cache
    Clear,
}

#[derive(Subcommand, Debug)]
pub enum WorkflowAction {
    /// Save a workflow file under a name (validated first)
    Save {
        file: String,
        name: String,
        #[arg(long)]
        description: Option<String>,
        /// Replace an existing saved workflow of that name
        #[arg(long)]
        force: bool,
    },
    /// List saved workflows
    List {
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
    },
    /// Print a saved workflow
    Show { name: String },
    /// Delete a saved workflow
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum McpAction {
    /// Add servers from config files or JSON text (name → server, or {"mcpServers": ...})
    Add {
        #[arg(required = true)]
        sources: Vec<String>,
        /// Replace a server of the same name
        #[arg(long)]
        force: bool,
    },
    /// List the configured servers
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove a server (and its synced tool list)
    Remove {
        name: String,
        /// No error when there is no such server
        #[arg(long)]
        force: bool,
    },
    /// Connect to servers and store their tool lists
    Sync {
        name: Option<String>,
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// List the tools of one server or of all
    Tools {
        server: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Describe one tool: params, types, required, outputs
    Info {
        tool: String,
        #[arg(long)]
        json: bool,
    },
    /// Serve pflow as an MCP server over stdio (for agents)
    Serve,
}

#[derive(Subcommand, Debug)]
pub enum RepairAction {
    /// List recorded repair patches
    List,
    /// Print one patch
    Show { patch: String },
    /// Apply a recorded patch to a workflow file (refuses a patch made for another version)
    Apply {
        patch: String,
        workflow: Option<String>,
    },
}
