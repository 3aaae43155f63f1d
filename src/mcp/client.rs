//! Connections to MCP servers: one per server per command, opened on first use, shared
//! by every node and batch item that calls the server, closed when the command ends.
//!
//! Nodes run on the executor's threads and call in synchronously; the protocol runs on
//! one small tokio runtime owned by the pool. Each server gets a semaphore, so parallel
//! nodes and batch items are multiplexed over its one connection without flooding it.
//! A stdio server runs in its own process group, registered with [`crate::interrupt`],
//! so Ctrl-C stops it with the build's other children.

use super::config::{expand, Server, Transport};
use rmcp::model::{CallToolRequestParams, Tool};
use rmcp::service::RunningService;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// What a server says about itself when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub version: String,
}

/// Why a call did not produce a tool result.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The server could not be started or reached (or the connection broke).
    Connect(String),
    /// No answer within the server's timeout (seconds).
    Timeout(f64),
    /// The server answered with a protocol error; `invalid_params` when it refused the
    /// arguments (something a workflow edit can fix).
    Protocol {
        invalid_params: bool,
        message: String,
    },
    Interrupted,
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Connect(m) => f.write_str(m),
            CallError::Timeout(s) => write!(f, "no answer within {s} s"),
            CallError::Protocol { message, .. } => f.write_str(message),
            CallError::Interrupted => f.write_str("interrupted"),
        }
    }
}

struct Conn {
    service: RunningService<RoleClient, ()>,
    limit: tokio::sync::Semaphore,
    identity: Identity,
    /// The server's process group (stdio), registered for Ctrl-C.
    pgid: Option<i32>,
}

type Slot = Arc<tokio::sync::OnceCell<Result<Arc<Conn>, String>>>;

struct Pool {
    rt: tokio::runtime::Runtime,
    conns: Mutex<HashMap<String, Slot>>,
}

static POOL: OnceLock<Option<Pool>> = OnceLock::new();

fn pool() -> Result<&'static Pool, CallError> {
    POOL.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pflow-mcp")
            .enable_all()
            .build()
            .ok()?;
        Some(Pool {
            rt,
            conns: Mutex::new(HashMap::new()),
        })
    })
    .as_ref()
    .ok_or_else(|| CallError::Connect("cannot start the MCP runtime".into()))
}

/// The last bytes a server wrote to stderr, for a message when it fails to start.
type StderrTail = Arc<Mutex<String>>;
const STDERR_TAIL: usize = 2000;

async fn connect(server: &Server) -> Result<Conn, String> {
    let name = &server.name;
    let (service, pgid, tail) = match &server.transport {
        Transport::Stdio { command, args, env } => {
            let mut cmd = tokio::process::Command::new(command);
            cmd.args(args);
            // pflow's own variables and provider credentials stay with pflow, as for a
            // shell node; the server's `env` is what it gets on top.
            crate::environment::ChildEnv::LOOSE.apply(cmd.as_std_mut());
            for (k, v) in env {
                let value = expand(v).map_err(|e| format!("MCP server '{name}': env {k}: {e}"))?;
                cmd.env(k, value);
            }
            cmd.process_group(0);
            let (proc, stderr) = rmcp::transport::TokioChildProcess::builder(cmd)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .map_err(|e| format!("MCP server '{name}': cannot start '{command}': {e}"))?;
            let pgid = proc.id().map(|p| p as i32);
            if let Some(p) = pgid {
                crate::interrupt::register(p);
            }
            let tail: StderrTail = Arc::default();
            if let Some(mut err) = stderr {
                let tail = tail.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = err.read(&mut buf).await {
                        if n == 0 {
                            break;
                        }
                        if let Ok(mut t) = tail.lock() {
                            t.push_str(&String::from_utf8_lossy(&buf[..n]));
                            if t.len() > STDERR_TAIL * 2 {
                                let cut = t.len() - STDERR_TAIL;
                                let cut =
                                    (cut..t.len()).find(|&i| t.is_char_boundary(i)).unwrap_or(0);
                                t.drain(..cut);
                            }
                        }
                    }
                });
            }
            let service = match ().serve(proc).await {
                Ok(s) => s,
                Err(e) => {
                    if let Some(p) = pgid {
                        crate::interrupt::kill_group(p);
                        crate::interrupt::unregister(p);
                    }
                    // Give the stderr reader a moment to collect why the server quit.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    let said = tail
                        .lock()
                        .map(|t| t.trim().to_string())
                        .unwrap_or_default();
                    let said = if said.is_empty() {
                        String::new()
                    } else {
                        format!("; it said: {}", last_chars(&said, 500))
                    };
                    return Err(format!("MCP server '{name}' did not start: {e}{said}"));
                }
            };
            (service, pgid, Some(tail))
        }
        Transport::Http { url, headers } => {
            use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
            let mut map = HashMap::new();
            for (k, v) in headers {
                let value =
                    expand(v).map_err(|e| format!("MCP server '{name}': header {k}: {e}"))?;
                let hn = reqwest_header_name(k)
                    .ok_or_else(|| format!("MCP server '{name}': invalid header name '{k}'"))?;
                let hv = http_header_value(&value).ok_or_else(|| {
                    format!("MCP server '{name}': invalid value for header '{k}'")
                })?;
                map.insert(hn, hv);
            }
            let config =
                StreamableHttpClientTransportConfig::with_uri(url.as_str()).custom_headers(map);
            let transport = rmcp::transport::StreamableHttpClientTransport::from_config(config);
            let service = ().serve(transport).await.map_err(|e| {
                format!(
                    "MCP server '{name}' at {url} could not be reached: {}",
                    transport_cause(&e.to_string())
                )
            })?;
            (service, None, None)
        }
    };
    let _ = tail;
    let identity = service
        .peer_info()
        .and_then(|i| i.server_info.clone())
        .map(|i| Identity {
            name: i.name,
            version: i.version,
        })
        .unwrap_or(Identity {
            name: name.clone(),
            version: String::new(),
        });
    Ok(Conn {
        service,
        limit: tokio::sync::Semaphore::new(server.max_concurrent),
        identity,
        pgid,
    })
}

/// The cause in a transport error's text, without the SDK's type names around it
/// ("Send message error Transport [rmcp::...<...>] error: Client error: X" → "X").
fn transport_cause(text: &str) -> &str {
    let after = text.rsplit_once("] error: ").map_or(text, |(_, rest)| rest);
    after.strip_prefix("Client error: ").unwrap_or(after)
}

fn reqwest_header_name(k: &str) -> Option<http::HeaderName> {
    http::HeaderName::from_bytes(k.as_bytes()).ok()
}

fn http_header_value(v: &str) -> Option<http::HeaderValue> {
    let mut hv = http::HeaderValue::from_str(v).ok()?;
    hv.set_sensitive(true);
    Some(hv)
}

fn last_chars(s: &str, n: usize) -> &str {
    let start = s.len().saturating_sub(n);
    let start = (start..s.len())
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[start..]
}

/// Block on `fut` on the pool's runtime, giving up when the user interrupts.
fn run<T>(
    p: &Pool,
    fut: impl std::future::Future<Output = Result<T, CallError>>,
) -> Result<T, CallError> {
    p.rt.block_on(async {
        tokio::select! {
            r = fut => r,
            _ = async {
                while !crate::interrupt::is_interrupted() {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            } => Err(CallError::Interrupted),
        }
    })
}

/// The connection to `server`, opened on first use (once, however many callers wait).
async fn conn(p: &Pool, server: &Server) -> Result<Arc<Conn>, CallError> {
    let slot: Slot = {
        let mut conns = p
            .conns
            .lock()
            .map_err(|_| CallError::Connect("MCP pool poisoned".into()))?;
        conns.entry(server.name.clone()).or_default().clone()
    };
    let got = slot
        .get_or_init(|| async { connect(server).await.map(Arc::new) })
        .await;
    got.clone().map_err(CallError::Connect)
}

/// The server's identity and its tools (all pages).
pub fn list_tools(server: &Server) -> Result<(Identity, Vec<Tool>), CallError> {
    let p = pool()?;
    let timeout = Duration::from_secs_f64(server.timeout_secs);
    run(p, async {
        let c = conn(p, server).await?;
        let tools = tokio::time::timeout(timeout, c.service.list_all_tools())
            .await
            .map_err(|_| CallError::Timeout(server.timeout_secs))?
            .map_err(|e| service_error(&server.name, e))?;
        Ok((c.identity.clone(), tools))
    })
}

/// Call `tool` with `args`; the result as the JSON the server sent.
pub fn call(server: &Server, tool: &str, args: Map<String, Value>) -> Result<Value, CallError> {
    let p = pool()?;
    let timeout = Duration::from_secs_f64(server.timeout_secs);
    run(p, async {
        let c = conn(p, server).await?;
        let _permit = c
            .limit
            .acquire()
            .await
            .map_err(|_| CallError::Connect("MCP connection closed".into()))?;
        let params = CallToolRequestParams::new(tool.to_string()).with_arguments(args);
        let result = tokio::time::timeout(timeout, c.service.call_tool(params))
            .await
            .map_err(|_| CallError::Timeout(server.timeout_secs))?
            .map_err(|e| service_error(&server.name, e))?;
        serde_json::to_value(&result)
            .map_err(|e| CallError::Connect(format!("MCP server '{}': {e}", server.name)))
    })
}

fn service_error(name: &str, e: rmcp::ServiceError) -> CallError {
    match e {
        rmcp::ServiceError::McpError(data) => CallError::Protocol {
            invalid_params: data.code == rmcp::model::ErrorCode::INVALID_PARAMS,
            message: data.message.to_string(),
        },
        rmcp::ServiceError::Timeout { timeout } => CallError::Timeout(timeout.as_secs_f64()),
        other => CallError::Connect(format!("MCP server '{name}': {other}")),
    }
}

/// Close every connection: stdio servers get their stdin closed and time to exit (then
/// a kill), HTTP sessions are ended. Called once when a command ends, failed or not.
pub fn shutdown() {
    let Some(Some(p)) = POOL.get() else { return };
    let slots: Vec<Slot> = match p.conns.lock() {
        Ok(mut c) => c.drain().map(|(_, s)| s).collect(),
        Err(_) => return,
    };
    p.rt.block_on(async {
        for slot in slots {
            let Ok(slot) = Arc::try_unwrap(slot) else {
                continue;
            };
            if let Some(Ok(conn)) = slot.into_inner() {
                let pgid = conn.pgid;
                if let Ok(conn) = Arc::try_unwrap(conn) {
                    let _ =
                        tokio::time::timeout(Duration::from_secs(5), conn.service.cancel()).await;
                }
                if let Some(pg) = pgid {
                    // Whatever the server started is part of its group: nothing outlives the build.
                    crate::interrupt::kill_group(pg);
                    crate::interrupt::unregister(pg);
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn transport_errors_keep_their_cause_only() {
        let text = "Send message error Transport [rmcp::transport::worker::WorkerTransport<X<Y>>] error: Client error: error sending request for url (http://127.0.0.1:1/mcp), when send initialize request";
        assert_eq!(
            super::transport_cause(text),
            "error sending request for url (http://127.0.0.1:1/mcp), when send initialize request"
        );
        assert_eq!(super::transport_cause("plain"), "plain");
    }
}
