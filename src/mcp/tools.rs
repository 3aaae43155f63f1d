//! The tools each server offers, synced into `$PFLOW_HOME/mcp-tools/<server>.json` so
//! validating a workflow needs no server. A list synced from another configuration of
//! the server (its digest differs) is stale: the next lookup syncs again.

use super::client::{self, Identity};
use super::config::{self, Server};
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A server's synced tools.
#[derive(Debug, Clone)]
pub struct ToolList {
    pub server: String,
    pub config_digest: String,
    pub identity: Identity,
    pub tools: Vec<Tool>,
}

/// One tool, as the server described it.
#[derive(Debug, Clone)]
pub struct Tool {
    pub name: String,
    pub description: String,
    pub input_schema: Value,
    pub output_schema: Option<Value>,
    /// `readOnlyHint: true`: the tool changes nothing.
    pub read_only: bool,
    /// The tool as listed, for `pflow mcp info` and the key's schema digest.
    pub raw: Value,
}

impl Tool {
    pub fn from_json(v: &Value) -> Option<Tool> {
        let name = v.get("name")?.as_str()?.to_string();
        Some(Tool {
            name,
            description: v
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
            input_schema: v
                .get("inputSchema")
                .cloned()
                .unwrap_or_else(|| json!({"type": "object"})),
            output_schema: v.get("outputSchema").cloned(),
            read_only: v
                .pointer("/annotations/readOnlyHint")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            raw: v.clone(),
        })
    }

    /// The digest of what the tool accepts and promises: a changed schema is a new tool.
    pub fn schema_digest(&self) -> String {
        let facts = json!({"input": self.input_schema, "output": self.output_schema,
                           "read_only": self.read_only});
        blake3::hash(crate::canonical::to_canonical(&facts).as_slice())
            .to_hex()
            .to_string()
    }

    /// The required params and every param's schema, in schema order.
    pub fn params(&self) -> Vec<(String, &Value, bool)> {
        let required: Vec<&str> = self
            .input_schema
            .get("required")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        self.input_schema
            .get("properties")
            .and_then(Value::as_object)
            .map(|props| {
                props
                    .iter()
                    .map(|(k, v)| (k.clone(), v, required.contains(&k.as_str())))
                    .collect()
            })
            .unwrap_or_default()
    }
}

fn lists_dir() -> PathBuf {
    crate::environment::pflow_home().join("mcp-tools")
}

fn list_file(server: &str) -> PathBuf {
    lists_dir().join(format!("{server}.json"))
}

/// The stored list of `server`, whatever configuration it came from.
pub fn stored(server: &str) -> Option<ToolList> {
    let text = std::fs::read_to_string(list_file(server)).ok()?;
    let v: Value = serde_json::from_str(&text).ok()?;
    Some(ToolList {
        server: server.to_string(),
        config_digest: v.get("config_digest")?.as_str()?.to_string(),
        identity: Identity {
            name: v.pointer("/server_info/name")?.as_str()?.to_string(),
            version: v.pointer("/server_info/version")?.as_str()?.to_string(),
        },
        tools: v
            .get("tools")?
            .as_array()?
            .iter()
            .filter_map(Tool::from_json)
            .collect(),
    })
}

/// Connect to `server`, list its tools, and store the list.
pub fn sync(server: &Server) -> Result<ToolList, String> {
    let (identity, tools) = client::list_tools(server)
        .map_err(|e| format!("cannot list the tools of MCP server '{}': {e}", server.name))?;
    let raw: Vec<Value> = tools
        .iter()
        .filter_map(|t| serde_json::to_value(t).ok())
        .collect();
    let doc = json!({
        "config_digest": server.config_digest(),
        "server_info": {"name": identity.name, "version": identity.version},
        "tools": raw,
    });
    let path = list_file(&server.name);
    std::fs::create_dir_all(lists_dir())
        .map_err(|e| format!("cannot create {}: {e}", lists_dir().display()))?;
    crate::fsutil::write_atomic(
        &path,
        serde_json::to_string_pretty(&doc)
            .unwrap_or_default()
            .as_bytes(),
    )
    .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(ToolList {
        server: server.name.clone(),
        config_digest: server.config_digest(),
        identity,
        tools: raw.iter().filter_map(Tool::from_json).collect(),
    })
}

/// `server`'s tools, synced first when there is no list or it came from another
/// configuration.
pub fn current(server: &Server) -> Result<ToolList, String> {
    match stored(&server.name) {
        Some(list) if list.config_digest == server.config_digest() => Ok(list),
        _ => sync(server),
    }
}

/// Forget a server's list (it was removed).
pub fn forget(server: &str) {
    let _ = std::fs::remove_file(list_file(server));
}

/// A node type naming a tool of a configured server.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// `mcp-<server>-<tool>`, whatever spelling the workflow used.
    pub canonical: String,
    pub server: Server,
    pub identity: Identity,
    pub tool: Tool,
}

/// Why a type that looks like an MCP tool is not one.
#[derive(Debug, Clone)]
pub enum Unresolved {
    /// Not an MCP spelling at all.
    NotMcp,
    /// No configured server matches.
    NoServer { configured: Vec<String> },
    /// The server is there; it has no such tool.
    NoTool {
        server: String,
        tool: String,
        tools: Vec<String>,
    },
    /// The server could not be asked for its tools, or the config is unreadable.
    Unavailable(String),
}

/// Which server and tool `t` names: `mcp-<server>-<tool>`, `<server>-<tool>`, or the
/// bare tool name when exactly one configured server has it.
pub fn resolve(t: &str) -> Result<Resolved, Unresolved> {
    let servers = config::load().map_err(Unresolved::Unavailable)?;
    let explicit = t.strip_prefix("mcp-");
    let spelled = explicit.unwrap_or(t);
    // The longest server name that prefixes the type wins (`test-http` over `test`).
    let mut candidates: Vec<(&Server, &str)> = servers
        .values()
        .filter_map(|s| {
            let rest = spelled.strip_prefix(s.name.as_str())?.strip_prefix('-')?;
            (!rest.is_empty()).then_some((s, rest))
        })
        .collect();
    candidates.sort_by_key(|(s, _)| std::cmp::Reverse(s.name.len()));
    let mut first_missing = None;
    for (server, tool) in &candidates {
        let list = current(server).map_err(Unresolved::Unavailable)?;
        if let Some(found) = list.tools.iter().find(|x| x.name == *tool) {
            return Ok(Resolved {
                canonical: format!("mcp-{}-{}", server.name, found.name),
                server: (*server).clone(),
                identity: list.identity.clone(),
                tool: found.clone(),
            });
        }
        if first_missing.is_none() {
            first_missing = Some(Unresolved::NoTool {
                server: server.name.clone(),
                tool: tool.to_string(),
                tools: list.tools.iter().map(|x| x.name.clone()).collect(),
            });
        }
    }
    if let Some(m) = first_missing {
        return Err(m);
    }
    if explicit.is_none() {
        // A bare tool name: only from lists already synced (validation of a workflow of
        // built-in types must not start every configured server).
        let mut hits = Vec::new();
        for server in servers.values() {
            if let Some(list) =
                stored(&server.name).filter(|l| l.config_digest == server.config_digest())
            {
                if let Some(found) = list.tools.iter().find(|x| x.name == t) {
                    hits.push((server.clone(), list.identity.clone(), found.clone()));
                }
            }
        }
        if hits.len() == 1 {
            if let Some((server, identity, tool)) = hits.pop() {
                return Ok(Resolved {
                    canonical: format!("mcp-{}-{}", server.name, tool.name),
                    server,
                    identity,
                    tool,
                });
            }
        }
        return Err(Unresolved::NotMcp);
    }
    Err(Unresolved::NoServer {
        configured: servers.keys().cloned().collect(),
    })
}

/// Every configured server with its synced list (or why there is none), for listings.
pub fn all() -> Result<BTreeMap<String, (Server, Option<ToolList>)>, String> {
    let servers = config::load()?;
    Ok(servers
        .into_iter()
        .map(|(k, s)| {
            let list = stored(&k).filter(|l| l.config_digest == s.config_digest());
            (k, (s, list))
        })
        .collect())
}
