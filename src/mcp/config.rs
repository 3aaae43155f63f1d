//! The servers file, `$PFLOW_HOME/mcp-servers.json`: name → server, in the shape the
//! original pflow and Claude Desktop use (`{"mcpServers": {NAME: {...}}}`).
//!
//! A server is stdio (`command`, `args`, `env`) or streamable HTTP (`"type": "http"`,
//! `url`, `headers`). `${VAR}` and `${VAR:-default}` in `env` and `headers` stay in the
//! file as written and expand only when pflow connects, so a token lives in the
//! environment, never in the file, a key, a tool list or anything shown.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// How long one tool call may take, unless the server sets `"timeout"` (seconds).
pub const DEFAULT_TIMEOUT_SECS: f64 = 30.0;
/// How many calls one server gets at once, unless it sets `"max_concurrent"`.
pub const DEFAULT_MAX_CONCURRENT: usize = 8;

/// One configured server.
#[derive(Debug, Clone, PartialEq)]
pub struct Server {
    pub name: String,
    pub transport: Transport,
    pub timeout_secs: f64,
    pub max_concurrent: usize,
    /// The configuration as written (unexpanded): what its tool list is checked against.
    pub raw: Value,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Transport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

pub fn servers_file() -> PathBuf {
    crate::environment::pflow_home().join("mcp-servers.json")
}

/// A server name: letters, digits, `_` and `-`, at most 64 characters.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.starts_with('-')
}

impl Server {
    /// Read one server's configuration; what is wrong with it, if anything.
    pub fn from_json(name: &str, v: &Value) -> Result<Server, String> {
        if !is_valid_name(name) {
            return Err(format!(
                "server name '{name}' must be letters, digits, '_' or '-' (at most 64)"
            ));
        }
        let Some(map) = v.as_object() else {
            return Err(format!("server '{name}' must be an object"));
        };
        let kind = map.get("type").and_then(Value::as_str).unwrap_or("");
        let transport = match (kind, map.get("url"), map.get("command")) {
            ("http" | "streamable-http" | "streamableHttp", _, _) | ("", Some(_), None) => {
                let url = text(map, "url", name)?
                    .ok_or_else(|| format!("server '{name}': an HTTP server needs a \"url\""))?;
                if !(url.starts_with("http://") || url.starts_with("https://")) {
                    return Err(format!(
                        "server '{name}': url must start with http:// or https://"
                    ));
                }
                Transport::Http {
                    url,
                    headers: string_map(map, "headers", name)?,
                }
            }
            ("" | "stdio", _, _) => {
                let command = text(map, "command", name)?
                    .filter(|c| !c.trim().is_empty())
                    .ok_or_else(|| {
                        format!("server '{name}': a stdio server needs a \"command\"")
                    })?;
                let args = match map.get("args") {
                    None | Some(Value::Null) => Vec::new(),
                    Some(Value::Array(a)) => a
                        .iter()
                        .map(|x| {
                            x.as_str().map(str::to_string).ok_or_else(|| {
                                format!("server '{name}': every \"args\" entry must be a string")
                            })
                        })
                        .collect::<Result<_, _>>()?,
                    Some(_) => {
                        return Err(format!(
                            "server '{name}': \"args\" must be an array of strings"
                        ))
                    }
                };
                Transport::Stdio {
                    command,
                    args,
                    env: string_map(map, "env", name)?,
                }
            }
            (other, _, _) => {
                return Err(format!(
                    "server '{name}': unknown \"type\" '{other}' (use \"stdio\" or \"http\")"
                ))
            }
        };
        let timeout_secs = match map.get("timeout") {
            None | Some(Value::Null) => DEFAULT_TIMEOUT_SECS,
            Some(t) => t
                .as_f64()
                .filter(|t| *t > 0.0 && *t <= crate::http::MAX_REQUEST_SECS)
                .ok_or_else(|| {
                    format!("server '{name}': \"timeout\" must be seconds, 0 to 86400")
                })?,
        };
        let max_concurrent = match map.get("max_concurrent") {
            None | Some(Value::Null) => DEFAULT_MAX_CONCURRENT,
            Some(n) => n
                .as_u64()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| format!("server '{name}': \"max_concurrent\" must be 1 to 256"))?
                as usize,
        };
        Ok(Server {
            name: name.to_string(),
            transport,
            timeout_secs,
            max_concurrent,
            raw: v.clone(),
        })
    }

    /// A digest of the configuration as written: a tool list synced from another
    /// configuration is stale.
    pub fn config_digest(&self) -> String {
        blake3::hash(crate::canonical::to_canonical(&self.raw).as_slice())
            .to_hex()
            .to_string()
    }
}

fn text(map: &Map<String, Value>, field: &str, name: &str) -> Result<Option<String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(format!("server '{name}': \"{field}\" must be a string")),
    }
}

fn string_map(
    map: &Map<String, Value>,
    field: &str,
    name: &str,
) -> Result<BTreeMap<String, String>, String> {
    match map.get(field) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                Value::Number(n) => Ok((k.clone(), n.to_string())),
                Value::Bool(b) => Ok((k.clone(), b.to_string())),
                _ => Err(format!("server '{name}': \"{field}.{k}\" must be a string")),
            })
            .collect(),
        Some(_) => Err(format!(
            "server '{name}': \"{field}\" must be an object of strings"
        )),
    }
}

/// The servers of a document in either shape: `{"mcpServers": {...}}` or name → server.
pub fn servers_of(doc: &Value) -> Result<Vec<Server>, String> {
    let map = match doc.get("mcpServers") {
        Some(inner) => inner,
        None => doc,
    };
    let Some(map) = map.as_object() else {
        return Err(
            "expected an object of servers (name → server) or {\"mcpServers\": {...}}".into(),
        );
    };
    map.iter().map(|(k, v)| Server::from_json(k, v)).collect()
}

/// The configured servers, by name (none when the file does not exist).
pub fn load() -> Result<BTreeMap<String, Server>, String> {
    let path = servers_file();
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    };
    let doc: Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not valid JSON: {e}", path.display()))?;
    let servers = servers_of(&doc).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(servers.into_iter().map(|s| (s.name.clone(), s)).collect())
}

/// Write the servers file (atomically), in the `mcpServers` shape.
pub fn save(servers: &BTreeMap<String, Server>) -> Result<(), String> {
    let inner: Map<String, Value> = servers
        .iter()
        .map(|(k, s)| (k.clone(), s.raw.clone()))
        .collect();
    let doc = serde_json::json!({ "mcpServers": inner });
    let path = servers_file();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    crate::fsutil::write_atomic(&path, text.as_bytes())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// `${VAR}` and `${VAR:-default}` in `text`, from the environment. An unset variable
/// without a default is an error naming it (a server started without its token fails
/// later and less clearly).
pub fn expand(text: &str) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            out.push_str(&rest[start..]);
            return Ok(out);
        };
        let inner = &after[..end];
        let (var, default) = match inner.split_once(":-") {
            Some((v, d)) => (v, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(var).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {var} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn both_shapes_read_the_same_servers() {
        let plain = json!({"fs": {"command": "npx", "args": ["-y", "x"]}});
        let claude = json!({"mcpServers": plain.clone()});
        assert_eq!(servers_of(&plain).unwrap(), servers_of(&claude).unwrap());
    }

    #[test]
    fn http_servers_need_a_url_and_stdio_ones_a_command() {
        assert!(Server::from_json("a", &json!({"type": "http"})).is_err());
        assert!(Server::from_json("a", &json!({"args": []})).is_err());
        let s = Server::from_json("a", &json!({"url": "http://127.0.0.1:1/mcp"})).unwrap();
        assert!(matches!(s.transport, Transport::Http { .. }));
        assert!(Server::from_json("a b", &json!({"command": "x"})).is_err());
    }

    #[test]
    fn expansion_uses_the_environment_then_the_default() {
        std::env::set_var("PFLOW_MCP_TEST_SET", "v1");
        std::env::remove_var("PFLOW_MCP_TEST_UNSET");
        assert_eq!(expand("a ${PFLOW_MCP_TEST_SET} b").unwrap(), "a v1 b");
        assert_eq!(expand("${PFLOW_MCP_TEST_UNSET:-dflt}").unwrap(), "dflt");
        assert_eq!(expand("${PFLOW_MCP_TEST_SET:-dflt}").unwrap(), "v1");
        let e = expand("Bearer ${PFLOW_MCP_TEST_UNSET}").unwrap_err();
        assert!(e.contains("PFLOW_MCP_TEST_UNSET"), "{e}");
    }
}
