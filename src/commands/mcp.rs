//! `pflow mcp add|list|remove|sync|tools|info|serve`: the MCP servers pflow calls, and
//! pflow as a server for agents ([`serve`]).

use super::{Error, ExitCode, Result};
use crate::cli::McpAction;
use crate::mcp::config::{self, Server, Transport};
use crate::mcp::tools;
use crate::report::out_line;
use serde_json::{json, Value};

pub mod serve;

pub fn run(action: McpAction) -> Result {
    match action {
        McpAction::Add { sources, force } => add(&sources, force),
        McpAction::List { json } => list(json),
        McpAction::Remove { name, force } => remove(&name, force),
        McpAction::Sync { name, all } => sync(name.as_deref(), all),
        McpAction::Tools { server, json } => list_tools(server.as_deref(), json),
        McpAction::Info { tool, json } => info(&tool, json),
        McpAction::Serve => serve::run(),
    }
}

/// A source: a file's path, else JSON text.
fn read_source(src: &str) -> Result<Value> {
    let path = std::path::Path::new(src);
    let (text, what) = if !src.trim_start().starts_with('{') && path.exists() {
        let t = std::fs::read_to_string(path)
            .map_err(|e| Error::Invalid(format!("cannot read {src}: {e}")))?;
        (t, src.to_string())
    } else {
        (src.to_string(), "the JSON given".to_string())
    };
    serde_json::from_str(&text).map_err(|e| {
        if what == "the JSON given" && !src.trim_start().starts_with('{') {
            Error::Invalid(format!("'{src}': no such file, and not JSON"))
        } else {
            Error::Invalid(format!("{what} is not valid JSON: {e}"))
        }
    })
}

fn add(sources: &[String], force: bool) -> Result {
    let mut servers = config::load().map_err(Error::Invalid)?;
    let mut added = Vec::new();
    for src in sources {
        let doc = read_source(src)?;
        let new = config::servers_of(&doc).map_err(|e| Error::Invalid(format!("{src}: {e}")))?;
        if new.is_empty() {
            return Err(Error::Invalid(format!("{src}: no servers in it")));
        }
        for s in new {
            if !force && servers.get(&s.name).is_some_and(|old| old.raw != s.raw) {
                return Err(Error::Invalid(format!(
                    "MCP server '{}' is already configured differently (use --force to replace it)",
                    s.name
                )));
            }
            added.push(s.name.clone());
            servers.insert(s.name.clone(), s);
        }
    }
    config::save(&servers).map_err(Error::Failed)?;
    for name in added {
        out_line(&format!("added MCP server '{name}'"));
    }
    Ok(ExitCode::Ok)
}

/// What a server runs, without any `env` or `headers` values (they may hold secrets).
fn describe(s: &Server) -> Value {
    match &s.transport {
        Transport::Stdio { command, args, env } => json!({
            "name": s.name, "transport": "stdio", "command": command, "args": args,
            "env": env.keys().collect::<Vec<_>>(),
        }),
        Transport::Http { url, headers } => json!({
            "name": s.name, "transport": "http", "url": url,
            "headers": headers.keys().collect::<Vec<_>>(),
        }),
    }
}

fn list(as_json: bool) -> Result {
    let all = tools::all().map_err(Error::Invalid)?;
    if as_json {
        let items: Vec<Value> = all
            .values()
            .map(|(s, l)| {
                let mut d = describe(s);
                d["tools"] = l
                    .as_ref()
                    .map(|l| json!(l.tools.len()))
                    .unwrap_or(Value::Null);
                d
            })
            .collect();
        out_line(&serde_json::to_string_pretty(&json!({ "servers": items })).unwrap_or_default());
        return Ok(ExitCode::Ok);
    }
    if all.is_empty() {
        out_line("no MCP servers configured (add one with `pflow mcp add`)");
    }
    for (name, (s, l)) in &all {
        let what = match &s.transport {
            Transport::Stdio { command, args, .. } => {
                format!("stdio: {command} {}", args.join(" "))
            }
            Transport::Http { url, .. } => format!("http: {url}"),
        };
        let tools = match l {
            Some(l) => format!("{} tools", l.tools.len()),
            None => "not synced".into(),
        };
        out_line(&format!("{name}  {}  ({tools})", what.trim_end()));
    }
    Ok(ExitCode::Ok)
}

fn remove(name: &str, force: bool) -> Result {
    let mut servers = config::load().map_err(Error::Invalid)?;
    if servers.remove(name).is_none() {
        if force {
            return Ok(ExitCode::Ok);
        }
        return Err(Error::Invalid(format!("no MCP server named '{name}'")));
    }
    config::save(&servers).map_err(Error::Failed)?;
    tools::forget(name);
    out_line(&format!("removed MCP server '{name}'"));
    Ok(ExitCode::Ok)
}

fn sync(name: Option<&str>, _all: bool) -> Result {
    let servers = config::load().map_err(Error::Invalid)?;
    let chosen: Vec<&Server> = match name {
        Some(n) => vec![servers
            .get(n)
            .ok_or_else(|| Error::Invalid(format!("no MCP server named '{n}'")))?],
        None => servers.values().collect(),
    };
    let mut failed = Vec::new();
    for s in chosen {
        match tools::sync(s) {
            Ok(l) => out_line(&format!("synced '{}': {} tools", s.name, l.tools.len())),
            Err(e) => {
                crate::report::err_line(&format!("error: {e}"));
                failed.push(s.name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(ExitCode::Ok)
    } else {
        Err(Error::Failed(format!(
            "could not sync: {}",
            failed.join(", ")
        )))
    }
}

fn list_tools(server: Option<&str>, as_json: bool) -> Result {
    let servers = config::load().map_err(Error::Invalid)?;
    if let Some(n) = server {
        if !servers.contains_key(n) {
            return Err(Error::Invalid(format!("no MCP server named '{n}'")));
        }
    }
    let mut rows = Vec::new();
    for s in servers
        .values()
        .filter(|s| server.is_none_or(|n| n == s.name))
    {
        let list = tools::current(s).map_err(Error::Failed)?;
        for t in list.tools {
            rows.push((format!("mcp-{}-{}", s.name, t.name), t));
        }
    }
    if as_json {
        let items: Vec<Value> = rows
            .iter()
            .map(|(node, t)| {
                json!({"node_type": node, "name": t.name, "description": t.description,
                                    "read_only": t.read_only})
            })
            .collect();
        out_line(&serde_json::to_string_pretty(&json!({ "tools": items })).unwrap_or_default());
    } else {
        for (node, t) in &rows {
            let first = t.description.lines().next().unwrap_or("");
            let ro = if t.read_only { " [read-only]" } else { "" };
            out_line(&format!("{node}{ro}  {first}"));
        }
    }
    Ok(ExitCode::Ok)
}

fn info(tool: &str, as_json: bool) -> Result {
    let r = tools::resolve(tool).map_err(|_| {
        let why = crate::nodes::mcp::why_unknown(tool)
            .unwrap_or_else(|| "not a tool of a configured MCP server".into());
        Error::Invalid(format!("'{tool}': {why}"))
    })?;
    let params: Vec<Value> = r
        .tool
        .params()
        .into_iter()
        .map(|(name, schema, required)| {
            json!({"name": name, "type": schema.get("type").cloned().unwrap_or(Value::Null),
                   "required": required,
                   "description": schema.get("description").cloned().unwrap_or(Value::Null)})
        })
        .collect();
    let outputs = vec![
        "result".to_string(),
        format!("{}_{}_result", r.server.name, r.tool.name),
    ];
    if as_json {
        let doc = json!({"node_type": r.canonical, "server": r.server.name, "tool": r.tool.name,
                         "description": r.tool.description, "read_only": r.tool.read_only,
                         "params": params, "outputs": outputs,
                         "input_schema": r.tool.input_schema});
        out_line(&serde_json::to_string_pretty(&doc).unwrap_or_default());
        return Ok(ExitCode::Ok);
    }
    out_line(&r.canonical);
    if !r.tool.description.is_empty() {
        out_line(&format!("  {}", r.tool.description.replace('\n', "\n  ")));
    }
    out_line(if r.tool.read_only {
        "  read-only: runs on every build; unchanged results keep dependents cached"
    } else {
        "  an effect: runs once per key"
    });
    out_line("params:");
    for p in &params {
        let ty = match &p["type"] {
            Value::String(s) => s.clone(),
            Value::Null => "any".into(),
            other => other.to_string(),
        };
        let req = if p["required"] == json!(true) {
            "required"
        } else {
            "optional"
        };
        let desc = p["description"].as_str().unwrap_or("");
        let line = format!(
            "  {} ({ty}, {req}) {desc}",
            p["name"].as_str().unwrap_or("")
        );
        out_line(line.trim_end());
    }
    out_line(&format!(
        "outputs: {} (and an object result's top-level fields)",
        outputs.join(", ")
    ));
    Ok(ExitCode::Ok)
}
