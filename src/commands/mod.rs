//! The commands, one file each. Each turns its typed arguments into work and returns an
//! [`ExitCode`] or an [`Error`]; [`run`] is the one place that prints an error and picks
//! the exit code.

pub mod build;
pub mod cache;
pub mod completions;
mod conclusion;
pub mod config;
pub mod convert;
mod edit;
mod error;
pub mod graph;
pub mod log;
pub mod mcp;
pub mod nodes;
mod noop;
mod records_name;
pub mod repair;
pub mod schema;
mod then;
pub mod validate;
pub mod watch;
pub mod workflow;

pub use error::{Error, ExitCode, Result};

use crate::cli::{Cli, Command};
use crate::diagnostic::Diagnostic;
use crate::report::color;
use crate::source;
use crate::validate::{Report, Validated};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Run a parsed command line; the process's exit code.
pub fn run(cli: Cli) -> i32 {
    crate::report::color::decide(match cli.color {
        crate::cli::ColorWhen::Auto => crate::report::color::When::Auto,
        crate::cli::ColorWhen::Always => crate::report::color::When::Always,
        crate::cli::ColorWhen::Never => crate::report::color::When::Never,
    });
    // First, before anything reads a path: every relative path then means DIR's.
    if let Some(dir) = &cli.directory {
        if let Err(message) = enter(dir) {
            return invalid_arguments(&message);
        }
    }
    // Then the settings files, into the environment, before anything reads it.
    let env_before: Vec<(&str, Option<String>)> = crate::config::SETTINGS
        .iter()
        .map(|s| {
            let set = std::env::var_os(s.env).map(|v| v.to_string_lossy().into_owned());
            (s.env, set)
        })
        .collect();
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let files = match crate::config::load(&cwd) {
        Ok(files) => files,
        Err(e) => return invalid_arguments(&e.to_string()),
    };
    if let Some(warning) = files.apply() {
        crate::report::err_line(&warning);
    }
    // The process began with small pages (`main.rs`); a build chooses its own (its
    // no-op and edit paths keep them, the normal path turns huge pages on), every other
    // command runs as it always did.
    if !matches!(cli.command, Command::Build(_)) {
        crate::memory::huge_pages(true);
    }
    let mut command = cli.command;
    if let Command::Build(args) = &mut command {
        if let Err(message) = take_inputs_file(args) {
            return invalid_arguments(&message);
        }
    }
    let result = match command {
        Command::Build(args) if args.watch => watch::run(*args),
        Command::Build(args) => build::once(&args, build::Then::Exit),
        Command::Validate {
            workflow,
            output_format,
            strict,
        } => validate::run(&workflow, output_format, strict),
        Command::Graph { workflow, format } => graph::run(&workflow, format),
        Command::Convert {
            workflow,
            to,
            output,
        } => convert::run(&workflow, to, output.as_deref()),
        Command::Workflow { action } => workflow::run(action),
        Command::Cache {
            action,
            cache_dir,
            output_format,
        } => cache::run(action, &cache_dir_of(cache_dir.as_ref()), output_format),
        Command::Repair { action, cache_dir } => {
            repair::run(action, &cache_dir_of(cache_dir.as_ref()))
        }
        Command::Mcp { action } => mcp::run(action),
        Command::Nodes {
            node_type,
            output_format,
        } => nodes::run(node_type.as_deref(), output_format),
        Command::Schema => schema::run(),
        Command::Log {
            workflow,
            node,
            cache_dir,
        } => log::run(&workflow, &node, &cache_dir_of(cache_dir.as_ref())),
        Command::Config { output_format } => {
            let before = |name: &str| {
                env_before
                    .iter()
                    .find(|(n, _)| *n == name)
                    .and_then(|(_, v)| v.clone())
            };
            config::run(&files.effective(&before), output_format)
        }
        Command::Completions { shell } => completions::completions(shell),
        Command::Man => completions::man(),
    };
    // MCP servers a command started stop with it, whether it succeeded or not.
    crate::mcp::client::shutdown();
    finish(result).as_i32()
}

/// Print what stopped a command, if anything; its exit code.
fn finish(result: Result) -> ExitCode {
    let err = match result {
        Ok(code) => return code,
        Err(e) => e,
    };
    match &err {
        Error::Invalid(message) | Error::Failed(message) => {
            crate::report::err_line(&format!("{} {message}", color::error("error:")))
        }
        Error::Diagnostics { file, report } => print_diagnostics(file, report),
        Error::Document { json, .. } => {
            crate::report::out_line(&serde_json::to_string_pretty(json).unwrap_or_default())
        }
    }
    err.code()
}

/// `-C DIR`: make DIR the working directory.
fn enter(dir: &Path) -> std::result::Result<(), String> {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => return Err(format!("-C {shown}: not a directory")),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(format!("-C {shown}: no such directory"))
        }
        Err(e) => return Err(format!("-C {shown}: {e}")),
    }
    std::env::set_current_dir(dir).map_err(|e| format!("-C {shown}: cannot enter it: {e}"))
}

/// The cache directory: `--cache-dir`, else `PFLOW_CACHE_DIR`, else `./.pflow-cache`.
pub fn cache_dir_of(arg: Option<&PathBuf>) -> PathBuf {
    arg.cloned()
        .or_else(|| {
            std::env::var_os(crate::config::CACHE_DIR_ENV)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(".pflow-cache"))
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
        return ExitCode::Ok.as_i32();
    }
    if wants_json() {
        let text = e.to_string();
        let message = text
            .lines()
            .next()
            .unwrap_or("invalid arguments")
            .trim_start_matches("error: ");
        print_arguments_document(message);
    } else {
        let _ = e.print();
    }
    ExitCode::Invalid.as_i32()
}

/// Did the command line ask for JSON output? (Read from the raw arguments: clap may
/// not have got that far.)
fn wants_json() -> bool {
    // Not `std::env::args`, which panics at an argument that is not UTF-8.
    let args: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    args.iter().any(|a| a == "--output-format=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output-format" && w[1] == "json")
}

/// Arguments that parse but cannot be used: the message (or its JSON document), exit 2.
/// `--inputs-file`: its inputs become KEY=VALUE params ahead of those given (a later
/// one wins, as on the command line), so every path of a build sees one list. Text as it
/// is, any other value as its JSON.
fn take_inputs_file(args: &mut crate::cli::BuildArgs) -> std::result::Result<(), String> {
    let Some(path) = args.inputs_file.take() else {
        return Ok(());
    };
    let shown = path.display();
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read the inputs file '{shown}': {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("the inputs file '{shown}' is not valid JSON: {e}"))?;
    let serde_json::Value::Object(inputs) = doc else {
        return Err(format!(
            "the inputs file '{shown}' must hold a JSON object of NAME: value"
        ));
    };
    let mut params: Vec<String> = inputs
        .into_iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            other => format!("{k}={other}"),
        })
        .collect();
    params.append(&mut args.params);
    args.params = params;
    Ok(())
}

fn invalid_arguments(message: &str) -> i32 {
    if wants_json() {
        print_arguments_document(message);
    } else {
        crate::report::err_line(&format!("error: {message}"));
    }
    ExitCode::Invalid.as_i32()
}

/// One JSON document for an argument error, shaped as a failed build's.
fn print_arguments_document(message: &str) {
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
}

/// Where a workflow argument points: an existing file, else a saved workflow's file.
pub fn resolve_workflow_path(arg: &str) -> std::result::Result<PathBuf, Diagnostic> {
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
pub fn load(arg: &str) -> std::result::Result<(Value, Validated), Report> {
    load_path(arg).map(|(_, doc, v)| (doc, v))
}

/// Like [`load`], also returning the file the argument resolved to.
pub fn load_path(arg: &str) -> std::result::Result<(PathBuf, Value, Validated), Report> {
    load_document(arg).map(|(path, d, v)| (path, d.doc, v))
}

/// Like [`load_path`], with all the front end read (a Markdown file's title and where
/// each part is). Diagnostics are placed on the file's lines where it knows them.
pub fn load_document(
    arg: &str,
) -> std::result::Result<(PathBuf, source::Document, Validated), Report> {
    let path = resolve_workflow_path(arg).map_err(|d| Report {
        errors: vec![d],
        warnings: Vec::new(),
    })?;
    noop::debug(|| format!("parsing {}", path.display()));
    let document = source::read_workflow_file(&path).map_err(|errors| Report {
        errors,
        warnings: Vec::new(),
    })?;
    let place = |report: &mut Report| {
        document.place(&mut report.errors, &mut report.warnings);
    };
    match crate::nested::validate(&document.doc, &origin_of(&path)) {
        Ok(mut validated) => {
            let mut report = Report {
                errors: Vec::new(),
                warnings: document.warnings.clone(),
            };
            report.warnings.append(&mut validated.warnings);
            place(&mut report);
            validated.warnings = report.warnings;
            Ok((path, document, validated))
        }
        Err(mut report) => {
            report
                .warnings
                .splice(0..0, document.warnings.iter().cloned());
            place(&mut report);
            Err(report)
        }
    }
}

/// Where the nested workflows of the workflow file at `path` are found.
pub fn origin_of(path: &Path) -> crate::nested::Origin<'static> {
    crate::nested::Origin {
        dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
        saved: &crate::store::resolve,
    }
}

pub fn print_diagnostics(file: &str, report: &Report) {
    let labelled = [
        (color::error("error:"), &report.errors),
        (color::warning("warning:"), &report.warnings),
    ];
    for (label, ds) in labelled {
        for d in ds {
            crate::report::err_line(&format!(
                "{label} {file}:{} {}: {}",
                d.place(),
                d.path,
                d.message
            ));
            if let Some(h) = &d.hint {
                crate::report::err_line(&format!("  hint: {h}"));
            }
        }
    }
}

pub fn diagnostics_json(ds: &[Diagnostic]) -> Value {
    serde_json::to_value(ds).unwrap_or(Value::Array(Vec::new()))
}
