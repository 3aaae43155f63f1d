//! The command line: argument parsing and dispatch. Each command's logic lives in the
//! module named after its concept; this file only wires arguments to it and maps results
//! to exit codes (0 ok, 1 the workflow failed, 2 bad input, 130 interrupted).

use crate::diagnostic::Diagnostic;
use crate::source;
use crate::validate::{self, Report, Validated};
use clap::{Parser, Subcommand, ValueEnum};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
pub const EXIT_INTERRUPTED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "pflow",
    version,
    about = "Run JSON workflows like a build: a DAG, a content-addressed cache, and LLM repair"
)]
pub struct Cli {
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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Build a workflow: run what changed, reuse the rest
    Build(BuildArgs),
    /// Check a workflow without running it
    Validate {
        workflow: String,
        #[arg(long, value_enum, default_value = "text")]
        output_format: OutputFormat,
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

/// A command line clap rejected: its message (exit 2), or help and version (exit 0).
/// When the caller asked for JSON output, the error is one JSON document on stdout, so
/// scripts and agents always get something to parse.
pub fn usage_error(e: clap::Error) -> i32 {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return EXIT_OK;
    }
    let args: Vec<String> = std::env::args().collect();
    let wants_json = args.iter().any(|a| a == "--output-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output-format" && w[1] == "json");
    if wants_json {
        let text = e.to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ");
        let doc = json!({
            "success": false, "outputs": {}, "nodes": [],
            "errors": [{"node": null, "category": "validation", "path": "arguments",
                        "message": message,
                        "repairable": false}],
            "repair": null,
            "stats": {"total": 0, "ran": 0, "cached": 0, "restored": 0, "failed": 0, "skipped": 0},
            "duration_ms": 0,
        });
        crate::report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
    } else {
        let _ = e.print();
    }
    EXIT_INVALID
}

pub fn run(cli: Cli) -> i32 {
    match cli.command {
        Command::Build(args) => crate::build::run(args),
        Command::Validate {
            workflow,
            output_format,
        } => validate_command(&workflow, output_format),
        Command::Graph { workflow, format } => graph_command(&workflow, format),
        Command::Workflow { action } => workflow_command(action),
        Command::Cache {
            action,
            cache_dir,
            output_format,
        } => crate::maintenance::command(
            action,
            &crate::build::cache_dir(cache_dir.as_ref()),
            output_format,
        ),
        Command::Repair { action, cache_dir } => {
            let root = crate::build::cache_dir(cache_dir.as_ref());
            match action {
                RepairAction::List => crate::repair::commands::list(&root),
                RepairAction::Show { patch } => crate::repair::commands::show(&root, &patch),
                RepairAction::Apply { patch, workflow } => {
                    crate::repair::commands::apply(&root, &patch, workflow.as_deref())
                }
            }
        }
    }
}

/// Where a workflow argument points: an existing file, else a saved workflow's file.
pub fn resolve_workflow_path(arg: &str) -> Result<PathBuf, Diagnostic> {
    let path = Path::new(arg);
    // A file wins over a saved workflow of the same name; a directory does not.
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    match crate::store::resolve(arg) {
        Ok(saved) => Ok(saved),
        // Let reading the path say what is wrong with it (a directory, unreadable...).
        Err(_) if path.exists() => Ok(path.to_path_buf()),
        Err(d) => Err(d),
    }
}

/// Read, parse and validate a workflow argument. On failure, the report.
pub fn load(arg: &str) -> Result<(Value, Validated), Report> {
    load_path(arg).map(|(_, doc, v)| (doc, v))
}

/// Like [`load`], also returning the file the argument resolved to.
pub fn load_path(arg: &str) -> Result<(PathBuf, Value, Validated), Report> {
    let fail = |d: Diagnostic| Report {
        errors: vec![d],
        warnings: Vec::new(),
    };
    let path = resolve_workflow_path(arg).map_err(fail)?;
    let doc = source::read_json_file(&path).map_err(fail)?;
    let validated = validate::validate(&doc)?;
    Ok((path, doc, validated))
}

pub fn print_diagnostics(file: &str, report: &Report) {
    for d in &report.errors {
        crate::report::err_line(&format!("error: {file}: {}: {}", d.path, d.message));
        if let Some(h) = &d.hint {
            crate::report::err_line(&format!("  hint: {h}"));
        }
    }
    for d in &report.warnings {
        crate::report::err_line(&format!("warning: {file}: {}: {}", d.path, d.message));
        if let Some(h) = &d.hint {
            crate::report::err_line(&format!("  hint: {h}"));
        }
    }
}

pub fn diagnostics_json(ds: &[Diagnostic]) -> Value {
    serde_json::to_value(ds).unwrap_or(Value::Array(Vec::new()))
}

fn validate_command(arg: &str, format: OutputFormat) -> i32 {
    let result = load(arg);
    let (report, nodes) = match &result {
        Ok((_, v)) => (
            Report {
                errors: Vec::new(),
                warnings: v.warnings.clone(),
            },
            v.workflow.nodes.len(),
        ),
        Err(r) => (r.clone(), 0),
    };
    match format {
        OutputFormat::Json => {
            let doc = json!({
                "valid": report.errors.is_empty(),
                "errors": diagnostics_json(&report.errors),
                "warnings": diagnostics_json(&report.warnings),
            });
            crate::report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => {
            print_diagnostics(arg, &report);
            if report.errors.is_empty() {
                crate::report::out_line(&format!(
                    "{arg}: valid ({nodes} node{})",
                    if nodes == 1 { "" } else { "s" }
                ));
            } else {
                let n = report.errors.len();
                crate::report::err_line(&format!(
                    "{arg}: invalid ({n} error{})",
                    if n == 1 { "" } else { "s" }
                ));
            }
        }
    }
    if report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    }
}

fn graph_command(arg: &str, format: GraphFormat) -> i32 {
    match load(arg) {
        Ok((_, v)) => {
            let text = match format {
                GraphFormat::Mermaid => crate::render::mermaid(&v),
                GraphFormat::Dot => crate::render::dot(&v),
            };
            print!("{text}");
            EXIT_OK
        }
        Err(report) => {
            print_diagnostics(arg, &report);
            EXIT_INVALID
        }
    }
}

fn workflow_command(action: WorkflowAction) -> i32 {
    use crate::store;
    let fail = |msg: String| {
        crate::report::err_line(&format!("error: {msg}"));
        EXIT_INVALID
    };
    match action {
        WorkflowAction::Save {
            file,
            name,
            description,
            force,
        } => {
            if !store::is_valid_name(&name) {
                let d = store::name_error(&name);
                return fail(format!("{} ({})", d.message, d.hint.unwrap_or_default()));
            }
            let (doc, _) = match load(&file) {
                Ok(x) => x,
                Err(report) => {
                    print_diagnostics(&file, &report);
                    return EXIT_INVALID;
                }
            };
            let description = description.or_else(|| {
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
                    EXIT_OK
                }
                Err(e) => fail(e),
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
            EXIT_OK
        }
        WorkflowAction::Show { name } => match store::load(&name) {
            Ok(doc) => {
                crate::report::out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
                EXIT_OK
            }
            Err(e) => fail(e),
        },
        WorkflowAction::Delete { name } => match store::delete(&name) {
            Ok(()) => {
                crate::report::err_line(&format!("deleted '{name}'"));
                EXIT_OK
            }
            Err(e) => fail(e),
        },
    }
}
