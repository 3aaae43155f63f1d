//! The command line's arguments, as clap declares them. Nothing here runs: the
//! commands are in [`crate::commands`], one file each.

use clap::{Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "pflow",
    version,
    long_version = LONG_VERSION,
    after_help = ENVIRONMENT,
    about = "Run JSON workflows like a build: a DAG, a content-addressed cache, and LLM repair"
)]
pub struct Cli {
    /// Run as if started in DIR: relative paths (the workflow, files, the default cache
    /// directory, outputs, traces) resolve against it
    #[arg(short = 'C', value_name = "DIR", global = true)]
    pub directory: Option<PathBuf>,
    /// Colour: auto (on a terminal, unless NO_COLOR is set; CLICOLOR_FORCE forces it),
    /// always or never
    #[arg(long, value_enum, default_value = "auto", global = true)]
    pub color: ColorWhen,
    #[command(subcommand)]
    pub command: Command,
}

/// `pflow --version`: the release, and the formats a cache or a remote must match.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncache keys: engine version 1 (a shared cache needs the same)",
    "\nremote entries: pflow-remote-v1"
);

/// The variables pflow reads, for `pflow --help`.
const ENVIRONMENT: &str = "\
Environment (a flag wins; pflow.toml and the user config.toml can set these too, see pflow config):
  PFLOW_CACHE_DIR            the cache directory (--cache-dir)
  PFLOW_JOBS                 steps run at once, batch items too (--jobs)
  PFLOW_REPAIR               on, replay or off (--no-repair)
  PFLOW_REPAIR_MODEL         the repair model (--repair-model)
  PFLOW_MAX_REPAIR_ATTEMPTS  repair attempts per build (--max-repair-attempts)
  PFLOW_LLM_MODEL            the default model of llm nodes
  PFLOW_LLM_PRICES           model prices, USD per million tokens: model=IN/OUT;...
  PFLOW_REMOTE_CACHE         the remote cache URL (--remote-cache)
  PFLOW_REMOTE_CACHE_WRITE   upload to the remote cache (--remote-cache-write)
  PFLOW_REMOTE_CACHE_TOKEN   the remote cache's bearer token
  PFLOW_STRICT_ENV           strict child environments (--strict-env)
  PFLOW_ALLOW_WRITE          more folders file nodes may change (--allow-write)
  PFLOW_HOME                 where saved workflows and MCP servers live (default ~/.pflow)
  PFLOW_CONFIG               the user settings file
  PFLOW_WATCH_POLL           --watch polls (1: every 500 ms, or N ms) instead of inotify
  PFLOW_DEBUG                1: say on stderr whether the no-op record served a build, and when a workflow is parsed
  ANTHROPIC_API_KEY, ANTHROPIC_BASE_URL, OPENAI_API_KEY, OPENAI_BASE_URL   LLM providers";

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorWhen {
    Auto,
    Always,
    Never,
}

/// `--output-logs`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputLogs {
    /// Every step's stdout and stderr, replayed from the cache for reused steps
    Full,
    /// The output of steps that ran in this build
    New,
    /// Failures, and the stderr of steps that wrote to it (replayed when reused)
    Errors,
    /// No step output
    None,
}

/// `pflow convert --to`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ConvertFormat {
    /// The IR as JSON
    Json,
    /// A .pflow.md Markdown workflow
    Md,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Mermaid,
    Dot,
}

#[derive(clap::Args, Debug, Clone)]
pub struct BuildArgs {
    /// A workflow .json or .pflow.md file, or the name of a saved workflow
    pub workflow: String,
    /// Workflow inputs as KEY=VALUE
    pub params: Vec<String>,
    /// Workflow inputs from a JSON object in FILE, before those given as KEY=VALUE
    /// (kept off the command line, which other users of the machine can read)
    #[arg(long, value_name = "FILE")]
    pub inputs_file: Option<PathBuf>,
    /// Cache directory (or PFLOW_CACHE_DIR; default ./.pflow-cache)
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Do not try to repair a failed build with an LLM (or PFLOW_REPAIR=off)
    #[arg(long)]
    pub no_repair: bool,
    /// For CI: exit 1 when the build succeeds only through a repair (fix the file in
    /// review), and refuse (exit 2) a workflow that pastes a value into shell code
    /// (`|raw`, quoted here-documents, `sh -c`/`eval`), as `validate --strict` does
    #[arg(long)]
    pub strict: bool,
    /// Ignore cached results (results are still stored)
    #[arg(long)]
    pub force: bool,
    /// Re-run this node even if cached (repeatable)
    #[arg(long, value_name = "NODE")]
    pub rerun: Vec<String>,
    /// Build only this node and what it needs (repeatable)
    #[arg(long, value_name = "NODE")]
    pub target: Vec<String>,
    /// Nodes and batch items to run at once, all together (default: PFLOW_JOBS, else
    /// the number of cores for nodes and each batch's max_concurrent for its items)
    #[arg(long, short = 'j', value_name = "N")]
    pub jobs: Option<usize>,
    /// Say why each node ran or was reused
    #[arg(long)]
    pub explain: bool,
    /// Which steps' output to show under their lines
    #[arg(long, value_enum, default_value = "errors")]
    pub output_logs: OutputLogs,
    /// A line and the output of every step, also on large builds (--output-logs full)
    #[arg(long, short = 'v')]
    pub verbose: bool,
    /// Print only outputs (stdout) and errors
    #[arg(long, short = 'q', conflicts_with = "verbose")]
    pub quiet: bool,
    /// Show which nodes would run, without running anything
    #[arg(long)]
    pub dry_run: bool,
    /// text: progress and a summary on stderr, outputs on stdout; json: one document on
    /// stdout, also on failure
    #[arg(long, value_enum, default_value = "text")]
    pub output_format: OutputFormat,
    /// Print only this workflow output's value
    #[arg(long, short = 'o', value_name = "NAME")]
    pub output_key: Option<String>,
    /// Write the repaired workflow back to the workflow file
    #[arg(long)]
    pub apply_repairs: bool,
    /// Repair attempts per build (default: PFLOW_MAX_REPAIR_ATTEMPTS, else 3)
    #[arg(long, value_name = "N")]
    pub max_repair_attempts: Option<u32>,
    /// The model that repairs a failed build: anthropic/MODEL or openai/MODEL (or
    /// PFLOW_REPAIR_MODEL)
    #[arg(long, value_name = "MODEL")]
    pub repair_model: Option<String>,
    /// A prompt template for repair instead of the bundled prompts/repair.md
    #[arg(long, value_name = "FILE")]
    pub repair_prompt: Option<PathBuf>,
    /// Write a JSON trace of the build (per node times, status, key, digest)
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write an HTML page of where the time went (default: under the cache directory;
    /// the path is printed)
    #[arg(long, value_name = "FILE", num_args = 0..=1, require_equals = true)]
    pub timings: Option<Option<PathBuf>>,
    /// Write the build's timeline in Chrome's trace event format (Perfetto,
    /// chrome://tracing)
    #[arg(long, value_name = "FILE")]
    pub profile: Option<PathBuf>,
    /// Build, then build again whenever a file the workflow reads changes (Ctrl-C stops)
    #[arg(long)]
    pub watch: bool,
    /// In watch mode, also ask the repair model (recorded repairs are always replayed)
    #[arg(long, requires = "watch")]
    pub watch_repair: bool,
    /// Shared remote cache speaking Bazel's HTTP cache protocol (GET/PUT/HEAD
    /// URL/ac/KEY, URL/cas/SHA256), consulted on local misses (or PFLOW_REMOTE_CACHE;
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
        /// A workflow file (.json), or the name of a saved workflow
        workflow: String,
        /// text for people, json for programs (one document on stdout)
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
        /// The cache directory (or PFLOW_CACHE_DIR; default ./.pflow-cache)
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
        /// text for people, json for programs (one document on stdout)
        #[arg(long, value_enum, default_value = "text", global = true)]
        output_format: OutputFormat,
    },
    /// Saved workflows: save, list, show, delete
    Workflow {
        #[command(subcommand)]
        action: WorkflowAction,
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
        /// The cache directory whose repairs/ to use (or PFLOW_CACHE_DIR)
        #[arg(long, value_name = "DIR", global = true)]
        cache_dir: Option<PathBuf>,
    },
    /// Print the workflow's DAG
    Graph {
        /// A workflow file (.json), or the name of a saved workflow
        workflow: String,
        /// mermaid (for Markdown) or dot (for Graphviz)
        #[arg(long, value_enum, default_value = "mermaid")]
        format: GraphFormat,
    },
    /// Write a workflow as JSON or as Markdown (.pflow.md), with the same IR
    Convert {
        /// A .json or .pflow.md file, or the name of a saved workflow
        workflow: String,
        /// The format to write: json (the IR) or md (a .pflow.md file)
        #[arg(long, value_enum)]
        to: ConvertFormat,
        /// Write to FILE instead of stdout
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// List the node types, or describe one: its params and outputs
    Nodes {
        /// A node type, e.g. shell
        node_type: Option<String>,
        /// text for people, json for programs (one document on stdout)
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
    },
    /// Print the workflow format as a JSON Schema (point "$schema" at a saved copy)
    Schema,
    /// Show what a node printed (stdout and stderr tails) in the workflow's last build
    Log {
        /// A workflow file (.json), or the name of a saved workflow
        workflow: String,
        /// The node's id
        node: String,
        /// The cache directory (or PFLOW_CACHE_DIR; default ./.pflow-cache)
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
    },
    /// Show each setting's value and where it comes from (pflow.toml, the user's
    /// config.toml, the environment)
    Config {
        /// text for people, json for programs (one document on stdout)
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
    },
    /// Print a completion script: pflow completions bash > ~/.local/share/bash-completion/completions/pflow
    Completions {
        /// The shell to complete for
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): pflow man > pflow.1
    Man,
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
        /// e.g. 7d, 12h: also removes the records of workflows no build wrote for that long
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
        /// The workflow file to save
        file: String,
        /// The name to build it by (`pflow build NAME`)
        name: String,
        /// What it does, shown by `workflow list` (default: the file's own description)
        #[arg(long)]
        description: Option<String>,
        /// Replace an existing saved workflow of that name
        #[arg(long)]
        force: bool,
    },
    /// List saved workflows
    List {
        /// text for people, json for programs (one document on stdout)
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
    },
    /// Print a saved workflow
    Show {
        /// The saved workflow's name
        name: String,
    },
    /// Delete a saved workflow
    Delete {
        /// The saved workflow's name
        name: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum McpAction {
    /// Add servers from config files or JSON text (name → server, or {"mcpServers": ...})
    Add {
        /// Config files, or JSON text, each holding one or more servers
        #[arg(required = true)]
        sources: Vec<String>,
        /// Replace a server of the same name
        #[arg(long)]
        force: bool,
    },
    /// List the configured servers
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Remove a server (and its synced tool list)
    Remove {
        /// The server's name
        name: String,
        /// No error when there is no such server
        #[arg(long)]
        force: bool,
    },
    /// Connect to servers and store their tool lists
    Sync {
        /// One server (default: all)
        name: Option<String>,
        /// Every configured server (the default)
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// List the tools of one server or of all
    Tools {
        /// One server (default: all)
        server: Option<String>,
        /// Print JSON
        #[arg(long)]
        json: bool,
    },
    /// Describe one tool: params, types, required, outputs
    Info {
        /// The tool's node type (mcp-SERVER-TOOL, SERVER-TOOL or the bare tool name)
        tool: String,
        /// Print JSON
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
    Show {
        /// A patch file, as `repair list` shows it
        patch: String,
    },
    /// Apply a recorded patch to a workflow file (refuses a patch made for another version)
    Apply {
        /// A patch file, as `repair list` shows it
        patch: String,
        /// The workflow to change (default: the one the patch was made for)
        workflow: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The texts name the real formats and every variable a settings file can set.
    #[test]
    fn version_and_environment_texts_match_the_code() {
        assert!(LONG_VERSION.contains(&format!(
            "engine version {}",
            crate::key::ENGINE_CACHE_VERSION
        )));
        assert!(LONG_VERSION.contains(crate::cache::remote::FORMAT));
        for s in crate::config::SETTINGS {
            assert!(ENVIRONMENT.contains(s.env), "{} is not in --help", s.env);
        }
    }

    #[test]
    fn every_argument_has_help() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for a in cmd.get_arguments() {
                let id = a.get_id().as_str();
                if a.get_help().is_none() && !["help", "version"].contains(&id) {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                if sub.get_about().is_none() {
                    missing.push(format!("{path} {} (no about)", sub.get_name()));
                }
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "pflow",
            &mut missing,
        );
        assert!(missing.is_empty(), "no help text: {missing:#?}");
    }
}
