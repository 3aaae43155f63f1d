//! The shared remote cache: Bazel's simple HTTP cache protocol, so that a fleet of CI
//! runners can share results through a server people already run (nginx with WebDAV
//! `PUT`, bazel-remote, S3 or GCS behind a proxy).
//!
//! Two namespaces under the base URL:
//!
//! - `cas/<sha256 hex>`: blobs, addressed by the SHA-256 of their bytes: a node's outputs
//!   (the JSON the local cache keeps) and the content of each file it wrote.
//! - `ac/<node key hex>`: one small JSON document per node key ([`AcEntry`]): the output
//!   digest, the SHA-256 and size of the outputs blob, and for each written file its path,
//!   BLAKE3 digest, SHA-256 and size.
//!
//! Reads: on a local miss the executor asks [`crate::cache::layered::Layered::lookup`],
//! which `GET`s the action entry, then every blob it references, checks each blob's
//! SHA-256 (and the outputs' and files' BLAKE3 digests), and stores the result in the
//! local cache, so the next build hits locally. An entry with a missing blob is a miss
//! (servers evict blobs independently of entries); a corrupt blob is a miss, reported once.
//!
//! Writes happen only when asked (`--remote-cache-write`): after a node ran and its
//! result was stored locally, blobs are `PUT` first (a `HEAD` skips those the server
//! has), then the action entry, so a reader never sees an entry before its blobs.
//!
//! Failures follow [`super::remote_policy`]: the remote cache can only make a build
//! faster, never fail it. Timeouts are short
//! (`PFLOW_REMOTE_CACHE_CONNECT_TIMEOUT_MS`, default 2 s; `PFLOW_REMOTE_CACHE_TIMEOUT_MS`,
//! default 10 s per request), and a body is read as it comes, never past what it may be,
//! and dropped when it arrives slower than `MIN_BYTES_PER_SEC` (`read_capped`).
//!
//! Secrets: the bearer token (`PFLOW_REMOTE_CACHE_TOKEN`) and any user info in the URL
//! are never printed; messages show the URL without user info or query.

use super::remote_policy::{FailurePolicy, Problem};
use super::Manifest;
use crate::http;
use crate::key::Key;
use reqwest::blocking::{Client, RequestBuilder};
use reqwest::{StatusCode, Url};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The `format` of the action entries this version writes and reads.
pub const FORMAT: &str = "pflow-remote-v1";
/// The largest action entry accepted (they are a few hundred bytes).
const MAX_AC_BYTES: u64 = 4 << 20;
/// The largest blob a download accepts (what an entry claims beyond that is a miss).
const MAX_BLOB_BYTES: u64 = 1 << 30;
/// A download slower than this (after the request timeout's head start) is dropped: a
/// server that drips bytes cannot hold a build.
const MIN_BYTES_PER_SEC: u64 = 1 << 20;
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_millis(2000);
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(10_000);

pub const URL_ENV: &str = "PFLOW_REMOTE_CACHE";
pub const WRITE_ENV: &str = "PFLOW_REMOTE_CACHE_WRITE";
pub const TOKEN_ENV: &str = "PFLOW_REMOTE_CACHE_TOKEN";
pub const TIMEOUT_ENV: &str = "PFLOW_REMOTE_CACHE_TIMEOUT_MS";
pub const CONNECT_TIMEOUT_ENV: &str = "PFLOW_REMOTE_CACHE_CONNECT_TIMEOUT_MS";

/// SHA-256 of `bytes` in lowercase hex (cacache's default algorithm is SHA-256).
pub fn sha256_hex(bytes: &[u8]) -> String {
    cacache::Integrity::from(bytes).to_hex().1
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// How to reach the remote cache.
#[derive(Clone)]
pub struct Config {
    /// The base URL, its path ending with `/`.
    pub url: Url,
    pub write: bool,
    pub token: Option<String>,
    pub connect_timeout: Duration,
    pub timeout: Duration,
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("url", &http::display_url(&self.url))
            .field("write", &self.write)
            .field("token", &self.token.as_ref().map(|_| "[redacted]"))
            .field("connect_timeout", &self.connect_timeout)
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn env_nonempty(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

fn env_ms(name: &str, default: Duration) -> Result<Duration, String> {
    match env_nonempty(name) {
        None => Ok(default),
        Some(v) => match v.trim().parse::<u64>() {
            Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
            _ => Err(format!(
                "{name} must be a positive number of milliseconds, got '{v}'"
            )),
        },
    }
}

/// A boolean environment switch: `1`, `true`, `yes`, `on` (any case).
pub fn env_flag(name: &str) -> bool {
    env_nonempty(name).is_some_and(|v| {
        matches!(
            v.trim().to_ascii_lowercase().as_str(),
            "1" | "true" | "yes" | "on"
        )
    })
}

impl Config {
    /// The configuration from `--remote-cache URL` (else `PFLOW_REMOTE_CACHE`),
    /// `--remote-cache-write` (or `PFLOW_REMOTE_CACHE_WRITE=1`), `PFLOW_REMOTE_CACHE_TOKEN`
    /// and the timeout variables. `None` when no URL is given.
    pub fn from_args(url: Option<&str>, write: bool) -> Result<Option<Config>, String> {
        let (text, what) = match url.filter(|u| !u.trim().is_empty()) {
            Some(u) => (u.to_string(), "--remote-cache"),
            None => match env_nonempty(URL_ENV) {
                Some(u) => (u, URL_ENV),
                None => return Ok(None),
            },
        };
        let mut url = http::parse_http_url(&text, what)?;
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Some(Config {
            url,
            write: write || env_flag(WRITE_ENV),
            token: env_nonempty(TOKEN_ENV).map(|t| t.trim().to_string()),
            connect_timeout: env_ms(CONNECT_TIMEOUT_ENV, DEFAULT_CONNECT_TIMEOUT)?,
            timeout: env_ms(TIMEOUT_ENV, DEFAULT_TIMEOUT)?,
        }))
    }
}

/// A blob an action entry references.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct BlobRef {
    pub sha256: String,
    pub size: u64,
}

/// A file a node wrote, as the action entry records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RemoteFile {
    /// As the node wrote it; relative paths stay relative, and a path under the writer's
    /// home directory is kept as `~/…` (restored under the reader's home).
    pub path: String,
    /// BLAKE3 of the content (as in the local manifest).
    pub digest: String,
    pub sha256: String,
    pub size: u64,
    /// Permission bits other than the plain ones (as in the local manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<u32>,
}

/// The document stored under `ac/<node key hex>`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AcEntry {
    pub format: String,
    /// The node key, in hex (the same as the name it is stored under).
    pub key: String,
    pub node: String,
    /// The outputs' digest ([`crate::canonical::output_digest`]).
    pub output_digest: String,
    /// The outputs as JSON (the bytes the local cache keeps).
    pub outputs: BlobRef,
    #[serde(default)]
    pub files: Vec<RemoteFile>,
    pub duration_ms: u64,
    /// When the result was produced (unix ms): `"cache": "<duration>"` ages count from it.
    pub time_ms: u64,
    pub run_id: String,
    /// Files the node took away (portable paths): a reader reuses the result only while
    /// they are absent on its own disk.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
}

/// A verified download: the entry and the bytes of every blob it references.
#[derive(Debug)]
pub struct Download {
    pub entry: AcEntry,
    pub outputs: Vec<u8>,
    /// Each file (its path as it applies on this machine) with its content.
    pub files: Vec<(RemoteFile, Vec<u8>)>,
}

/// What a remote lookup found.
#[derive(Debug)]
pub enum Fetch {
    Hit(Box<Download>),
    /// Nothing there, or the remote is off.
    Miss,
    /// An entry exists but cannot be used (a blob missing or corrupt); why.
    Unusable(String),
}

/// The remote cache's figures since they were last taken (one build attempt).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Counts {
    pub hits: u64,
    pub misses: u64,
    pub bytes_down: u64,
    pub bytes_up: u64,
    /// Action entries uploaded.
    pub uploads: u64,
    /// Failed requests and corrupt downloads.
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    bytes_down: AtomicU64,
    bytes_up: AtomicU64,
    uploads: AtomicU64,
    errors: AtomicU64,
}

/// A request that did not get a usable answer.
enum Failure {
    /// 404: not there.
    NotFound,
    /// The answer was longer than it may be (nothing more was read).
    TooLarge,
    /// Any other problem (already counted, and reported when it switched the remote off).
    Failed,
}

/// The remote cache client, shared by the workers of a build (and its repair attempts).
pub struct Remote {
    cfg: Config,
    client: OnceLock<Result<Client, String>>,
    policy: FailurePolicy,
    /// Blobs the server is known to hold intact (uploaded, found by HEAD, or downloaded).
    present: Mutex<HashSet<String>>,
    /// Blobs the server was caught serving corrupt: uploads replace them, HEAD or not.
    corrupt: Mutex<HashSet<String>>,
    counters: Counters,
}

impl fmt::Debug for Remote {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Remote")
            .field("cfg", &self.cfg)
            .field("active", &self.policy.active())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a download stopped.
enum Read {
    /// More than the cap: the rest was not read.
    TooLarge,
    /// Slower than [`MIN_BYTES_PER_SEC`] after the head start (bytes received).
    TooSlow(u64),
    Failed(std::io::Error),
}

/// Read an answer's body, at most `cap` bytes, into memory as it comes; give up when it
/// is longer, or when it arrives slower than the minimum rate after `head_start` (the
/// budget grows with the bytes that came, not with what the server claims).
fn read_capped(
    mut body: impl std::io::Read,
    cap: u64,
    head_start: Duration,
    started: std::time::Instant,
) -> Result<Vec<u8>, Read> {
    let mut out = Vec::with_capacity(cap.min(1 << 20) as usize);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Read::Failed(e)),
        };
        if out.len() as u64 + n as u64 > cap {
            return Err(Read::TooLarge);
        }
        out.extend_from_slice(&chunk[..n]);
        let received = out.len() as u64;
        let budget =
            head_start + Duration::from_millis(received.saturating_mul(1000) / MIN_BYTES_PER_SEC);
        if started.elapsed() > budget {
            return Err(Read::TooSlow(received));
        }
    }
}

/// Is `path` (as an entry names it) inside the workspace: relative, with no `..`, and
/// not a home-directory (`~`) path?
pub fn inside_workspace(path: &str) -> bool {
    use std::path::Component;
    !path.is_empty()
        && !path.starts_with('~')
        && std::path::Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_) | Component::CurDir))
}

impl Remote {
    pub fn new(cfg: Config) -> Remote {
        Remote {
            policy: FailurePolicy::new(http::display_url(&cfg.url)),
            cfg,
            client: OnceLock::new(),
            present: Mutex::new(HashSet::new()),
            corrupt: Mutex::new(HashSet::new()),
            counters: Counters::default(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    pub fn writes(&self) -> bool {
        self.cfg.write
    }

    /// Still in use (not switched off by failures).
    pub fn active(&self) -> bool {
        self.policy.active()
    }

    /// The warnings produced since the last call (at most one about the server, at most
    /// one about corrupt blobs per process).
    pub fn take_warnings(&self) -> Vec<String> {
        self.policy.take_warnings()
    }

    /// The figures since the last call.
    pub fn take_counts(&self) -> Counts {
        let c = &self.counters;
        Counts {
            hits: c.hits.swap(0, Ordering::Relaxed),
            misses: c.misses.swap(0, Ordering::Relaxed),
            bytes_down: c.bytes_down.swap(0, Ordering::Relaxed),
            bytes_up: c.bytes_up.swap(0, Ordering::Relaxed),
            uploads: c.uploads.swap(0, Ordering::Relaxed),
            errors: c.errors.swap(0, Ordering::Relaxed),
        }
    }

    fn client(&self) -> Option<&Client> {
        let built = self.client.get_or_init(|| {
            let mut b = Client::builder()
                .connect_timeout(self.cfg.connect_timeout)
                .tcp_nodelay(true)
                .timeout(self.cfg.timeout)
                .user_agent(concat!("pflow/", env!("CARGO_PKG_VERSION")));
            // reqwest would send 127.0.0.1 through HTTP_PROXY/ALL_PROXY.
            if http::is_loopback_url(&self.cfg.url) {
                b = b.no_proxy();
            }
            b.build().map_err(|e| http::root_cause(&e))
        });
        match built {
            Ok(c) => Some(c),
            Err(e) => {
                self.switch_off(format!("cannot set up the HTTP client: {e}"));
                None
            }
        }
    }

    /// Stop using the remote for the rest of the process, with one warning.
    fn switch_off(&self, why: String) {
        self.policy.record(Problem::Transport(why));
    }

    /// Count an error answer; the remote goes off after [`super::remote_policy::MAX_FAILURES`].
    fn failed(&self, why: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.policy.record(Problem::Answer(why));
    }

    fn warn_corrupt_once(&self, what: String) {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        self.policy.record(Problem::Corrupt(what));
    }

    fn url_of(&self, rel: &str) -> Option<Url> {
        self.cfg.url.join(rel).ok()
    }

    fn authorized(&self, rb: RequestBuilder) -> RequestBuilder {
        match &self.cfg.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    /// The longest a transfer of at most `cap` bytes may take: the request timeout plus
    /// the time `cap` bytes take at the slowest rate accepted. While reading, the budget
    /// counts only the bytes that actually came ([`read_capped`]).
    fn timeout_for(&self, cap: u64) -> Duration {
        self.cfg.timeout + Duration::from_millis(cap.saturating_mul(1000) / MIN_BYTES_PER_SEC)
    }

    /// Send a request; a transport failure or refused credentials switch the remote off,
    /// other unexpected statuses count towards [`super::remote_policy::MAX_FAILURES`]. 404 is an answer (not
    /// there), not a failure.
    fn send(
        &self,
        what: &str,
        rb: RequestBuilder,
        read_body: Option<u64>,
    ) -> Result<(StatusCode, Vec<u8>), Failure> {
        let started = std::time::Instant::now();
        if !self.active() {
            return Err(Failure::Failed);
        }
        let resp = match self.authorized(rb).send() {
            Ok(r) => r,
            Err(e) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                let why = if e.is_timeout() {
                    format!("{what} timed out")
                } else if e.is_connect() {
                    format!("cannot connect ({})", http::root_cause(&e))
                } else {
                    format!("{what} failed ({})", http::root_cause(&e))
                };
                self.switch_off(why);
                return Err(Failure::Failed);
            }
        };
        let status = resp.status();
        if status == StatusCode::NOT_FOUND {
            return Err(Failure::NotFound);
        }
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            self.counters.errors.fetch_add(1, Ordering::Relaxed);
            self.policy.record(Problem::Refused(format!(
                "{what} was refused (HTTP {}){}",
                status.as_u16(),
                if self.cfg.token.is_some() {
                    " with the token from PFLOW_REMOTE_CACHE_TOKEN"
                } else {
                    "; set PFLOW_REMOTE_CACHE_TOKEN if the server needs a token"
                }
            )));
            return Err(Failure::Failed);
        }
        if !status.is_success() {
            self.failed(format!("{what} answered HTTP {}", status.as_u16()));
            return Err(Failure::Failed);
        }
        let Some(cap) = read_body else {
            return Ok((status, Vec::new()));
        };
        // An answer that says it is too long is not read at all.
        if resp.content_length().is_some_and(|n| n > cap) {
            return Err(Failure::TooLarge);
        }
        match read_capped(resp, cap, self.cfg.timeout, started) {
            Ok(b) => Ok((status, b)),
            Err(Read::TooLarge) => Err(Failure::TooLarge),
            Err(Read::TooSlow(n)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                self.switch_off(format!(
                    "{what} was too slow ({n} bytes in {:.1}s)",
                    started.elapsed().as_secs_f64()
                ));
                Err(Failure::Failed)
            }
            Err(Read::Failed(e)) => {
                self.counters.errors.fetch_add(1, Ordering::Relaxed);
                if e.kind() == std::io::ErrorKind::TimedOut {
                    self.switch_off(format!("{what} timed out"));
                } else {
                    self.failed(format!("{what}: {e}"));
                }
                Err(Failure::Failed)
            }
        }
    }

    /// GET `rel`, reading at most `cap` bytes of its answer.
    fn get(&self, rel: &str, cap: u64) -> Result<Vec<u8>, Failure> {
        let client = self.client().ok_or(Failure::Failed)?;
        let url = self.url_of(rel).ok_or(Failure::Failed)?;
        let rb = client.get(url).timeout(self.timeout_for(cap));
        let (_, body) = self.send(&format!("GET {rel}"), rb, Some(cap))?;
        self.counters
            .bytes_down
            .fetch_add(body.len() as u64, Ordering::Relaxed);
        Ok(body)
    }

    /// The action entry and every blob it references for `key`, verified. `may_touch`
    /// says which files the node may write or take away: an entry naming any other is
    /// refused (whoever can write to the server must not choose what a restore writes).
    pub fn fetch(&self, key: &Key, may_touch: &dyn Fn(&str) -> bool) -> Fetch {
        if !self.active() {
            return Fetch::Miss;
        }
        let hex = key.hex();
        let result = self.fetch_inner(&hex, may_touch);
        match &result {
            Fetch::Hit(_) => self.counters.hits.fetch_add(1, Ordering::Relaxed),
            _ => self.counters.misses.fetch_add(1, Ordering::Relaxed),
        };
        result
    }

    fn fetch_inner(&self, hex: &str, may_touch: &dyn Fn(&str) -> bool) -> Fetch {
        let body = match self.get(&format!("ac/{hex}"), MAX_AC_BYTES) {
            Ok(b) => b,
            Err(Failure::TooLarge) => return Fetch::Unusable("remote entry is too large".into()),
            Err(_) => return Fetch::Miss,
        };
        let entry: AcEntry = match serde_json::from_slice(&body) {
            Ok(e) => e,
            Err(_) => return Fetch::Unusable("remote entry is not a pflow entry".into()),
        };
        if entry.format != FORMAT {
            return Fetch::Unusable(format!(
                "remote entry has format '{}', not {FORMAT}",
                http::truncate_chars(&entry.format, 40)
            ));
        }
        let well_formed = entry.key == hex
            && blake3::Hash::from_hex(&entry.output_digest).is_ok()
            && is_sha256_hex(&entry.outputs.sha256)
            && entry.files.iter().all(|f| {
                is_sha256_hex(&f.sha256)
                    && blake3::Hash::from_hex(&f.digest).is_ok()
                    && !f.path.is_empty()
                    && !f.path.contains('\0')
            })
            && entry
                .removed
                .iter()
                .all(|p| !p.is_empty() && !p.contains('\0'));
        if !well_formed {
            return Fetch::Unusable("remote entry is malformed".into());
        }
        // Anyone who can write to the server could otherwise have a reader write (or
        // delete) files anywhere: an entry may name only files inside the workspace.
        if let Some(bad) = entry
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(entry.removed.iter().map(String::as_str))
            .find(|p| !inside_workspace(p))
        {
            self.warn_corrupt_once(format!(
                "the entry for {} names a file outside the workspace ('{}')",
                http::truncate_chars(&entry.node, 80),
                http::truncate_chars(bad, 200)
            ));
            return Fetch::Unusable("remote entry names a file outside the workspace".into());
        }
        if let Some(bad) = entry
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(entry.removed.iter().map(String::as_str))
            .find(|p| !may_touch(p))
        {
            self.warn_corrupt_once(format!(
                "the entry for {} names a file that node does not write ('{}')",
                http::truncate_chars(&entry.node, 80),
                http::truncate_chars(bad, 200)
            ));
            return Fetch::Unusable("remote entry names a file the node does not write".into());
        }
        let result = self.download(entry);
        if let Fetch::Unusable(_) = &result {
            // HEAD proves a blob exists, not that it is intact: an upload by this process
            // replaces the blobs of an entry that turned out unusable.
            if let Ok(entry) = serde_json::from_slice::<AcEntry>(&body) {
                let mut corrupt = lock(&self.corrupt);
                corrupt.insert(entry.outputs.sha256.clone());
                corrupt.extend(entry.files.iter().map(|f| f.sha256.clone()));
            }
        }
        result
    }

    /// The blobs of a well-formed entry, verified.
    fn download(&self, entry: AcEntry) -> Fetch {
        let node = entry.node.clone();
        let outputs = match self.blob(&entry.outputs, &format!("the outputs of {node}")) {
            Ok(b) => b,
            Err(r) => return r,
        };
        let value: Option<serde_json::Value> = serde_json::from_slice(&outputs).ok();
        let digest_ok = value
            .is_some_and(|v| crate::canonical::output_digest_matches(&v, &entry.output_digest));
        if !digest_ok {
            self.warn_corrupt_once(format!(
                "the outputs of {node} (cas/{}) do not match the entry's output digest",
                entry.outputs.sha256
            ));
            return Fetch::Unusable("remote outputs do not match their digest".into());
        }
        let mut files = Vec::with_capacity(entry.files.len());
        for f in &entry.files {
            let bytes = match self.blob(
                &BlobRef {
                    sha256: f.sha256.clone(),
                    size: f.size,
                },
                &format!("file '{}' of {node}", f.path),
            ) {
                Ok(b) => b,
                Err(r) => return r,
            };
            if blake3::hash(&bytes).to_hex().as_str() != f.digest {
                self.warn_corrupt_once(format!(
                    "file '{}' of {node} (cas/{}) does not match the entry's digest",
                    f.path, f.sha256
                ));
                return Fetch::Unusable("remote file does not match its digest".into());
            }
            files.push((f.clone(), bytes));
        }
        Fetch::Hit(Box::new(Download {
            entry,
            outputs,
            files,
        }))
    }

    /// One blob, checked against its SHA-256 and size.
    fn blob(&self, r: &BlobRef, what: &str) -> Result<Vec<u8>, Fetch> {
        if r.size > MAX_BLOB_BYTES {
            return Err(Fetch::Unusable(format!(
                "remote copy of {what} is larger than pflow downloads ({} bytes)",
                r.size
            )));
        }
        let bytes = match self.get(&format!("cas/{}", r.sha256), r.size) {
            Ok(b) => Some(b),
            // More bytes than the entry says: corrupt, as a hash mismatch is.
            Err(Failure::TooLarge) => None,
            Err(Failure::NotFound) => {
                return Err(Fetch::Unusable(format!(
                    "remote entry incomplete ({what} is missing on the server)"
                )))
            }
            Err(Failure::Failed) => return Err(Fetch::Miss),
        };
        let intact = bytes.filter(|b| b.len() as u64 == r.size && sha256_hex(b) == r.sha256);
        let Some(bytes) = intact else {
            lock(&self.corrupt).insert(r.sha256.clone());
            self.warn_corrupt_once(format!(
                "{what} (cas/{}) does not match its SHA-256",
                r.sha256
            ));
            return Err(Fetch::Unusable(format!(
                "remote copy of {what} is corrupt (SHA-256 mismatch)"
            )));
        };
        lock(&self.present).insert(r.sha256.clone());
        Ok(bytes)
    }

    /// Make sure the server holds `bytes` under `cas/<sha256>`; false when it could not.
    fn put_blob(&self, client: &Client, sha: &str, bytes: Vec<u8>) -> bool {
        let corrupt = lock(&self.corrupt).contains(sha);
        if !corrupt && lock(&self.present).contains(sha) {
            return true;
        }
        let rel = format!("cas/{sha}");
        let Some(url) = self.url_of(&rel) else {
            return false;
        };
        if !corrupt {
            let rb = client.head(url.clone());
            match self.send(&format!("HEAD {rel}"), rb, None) {
                Ok(_) => {
                    lock(&self.present).insert(sha.to_string());
                    return true;
                }
                Err(Failure::NotFound) => {}
                Err(Failure::Failed | Failure::TooLarge) => return false,
            }
        }
        let len = bytes.len() as u64;
        let rb = client
            .put(url)
            .timeout(self.timeout_for(len))
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(bytes);
        match self.send(&format!("PUT {rel}"), rb, None) {
            Ok(_) => {
                self.counters.bytes_up.fetch_add(len, Ordering::Relaxed);
                lock(&self.corrupt).remove(sha);
                lock(&self.present).insert(sha.to_string());
                true
            }
            Err(Failure::NotFound) => {
                self.failed(format!("PUT {rel} answered HTTP 404"));
                false
            }
            Err(Failure::Failed | Failure::TooLarge) => false,
        }
    }

    /// Upload a result: its blobs first, then the action entry. `outputs` is the JSON the
    /// local cache stored; `files` the content of each file of the manifest, in order.
    /// Does nothing unless writing is on. Failures are counted and warned about once.
    pub fn upload(&self, key: &Key, manifest: &Manifest, outputs: Vec<u8>, files: Vec<Vec<u8>>) {
        if !self.cfg.write || !self.active() || files.len() != manifest.files.len() {
            return;
        }
        // Readers refuse such entries: a result that wrote outside the workspace stays
        // on this machine.
        let paths = manifest.files.iter().map(|f| f.path.as_str());
        if !paths
            .chain(manifest.removed.iter().map(String::as_str))
            .all(inside_workspace)
        {
            return;
        }
        let Some(client) = self.client() else {
            return;
        };
        let outputs_ref = BlobRef {
            sha256: sha256_hex(&outputs),
            size: outputs.len() as u64,
        };
        let mut remote_files = Vec::with_capacity(files.len());
        let mut blobs = vec![(outputs_ref.sha256.clone(), outputs)];
        for (rec, bytes) in manifest.files.iter().zip(files) {
            let sha = sha256_hex(&bytes);
            remote_files.push(RemoteFile {
                path: rec.path.clone(),
                digest: rec.digest.clone(),
                sha256: sha.clone(),
                size: bytes.len() as u64,
                mode: rec.mode,
            });
            blobs.push((sha, bytes));
        }
        for (sha, bytes) in blobs {
            if !self.put_blob(client, &sha, bytes) {
                return;
            }
        }
        let entry = AcEntry {
            format: FORMAT.to_string(),
            key: key.hex(),
            node: manifest.node.clone(),
            output_digest: manifest.output_digest.clone(),
            outputs: outputs_ref,
            files: remote_files,
            duration_ms: manifest.duration_ms,
            time_ms: crate::cache::now_ms() as u64,
            run_id: manifest.run_id.clone(),
            removed: manifest.removed.clone(),
        };
        let Ok(body) = serde_json::to_vec(&entry) else {
            return;
        };
        let rel = format!("ac/{}", entry.key);
        let Some(url) = self.url_of(&rel) else {
            return;
        };
        let len = body.len() as u64;
        let rb = client
            .put(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        match self.send(&format!("PUT {rel}"), rb, None) {
            Ok(_) => {
                self.counters.bytes_up.fetch_add(len, Ordering::Relaxed);
                self.counters.uploads.fetch_add(1, Ordering::Relaxed);
            }
            Err(Failure::NotFound) => self.failed(format!("PUT {rel} answered HTTP 404")),
            Err(Failure::Failed | Failure::TooLarge) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The remote cache's settings, its token above all, stay out of children.
    #[test]
    fn remote_settings_never_reach_children() {
        for name in [
            URL_ENV,
            WRITE_ENV,
            TOKEN_ENV,
            TIMEOUT_ENV,
            CONNECT_TIMEOUT_ENV,
        ] {
            assert!(crate::environment::is_withheld(name), "{name}");
        }
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_hex(b"hello"),
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert!(is_sha256_hex(&sha256_hex(b"x")));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(!is_sha256_hex(&"A".repeat(64)));
    }

    #[test]
    fn base_url_gets_a_trailing_slash_and_joins_below_it() {
        let cfg = Config::from_args(Some("http://127.0.0.1:9/cache"), false)
            .unwrap()
            .unwrap();
        assert_eq!(cfg.url.as_str(), "http://127.0.0.1:9/cache/");
        assert_eq!(
            cfg.url.join("ac/ab").unwrap().as_str(),
            "http://127.0.0.1:9/cache/ac/ab"
        );
        assert!(Config::from_args(Some("ftp://x/"), false).is_err());
    }

    #[test]
    fn token_is_not_in_debug_output() {
        let mut cfg = Config::from_args(Some("http://u:pw@127.0.0.1:9/"), false)
            .unwrap()
            .unwrap();
        cfg.token = Some("sekrit-token".into());
        let text = format!("{:?}", Remote::new(cfg));
        assert!(!text.contains("sekrit"), "{text}");
        assert!(!text.contains("pw"), "{text}");
    }

    #[test]
    fn unreachable_server_is_one_warning_and_then_off() {
        // A loopback port that was just free: nothing listens there.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let cfg = Config::from_args(Some(&format!("http://127.0.0.1:{port}/")), true)
            .unwrap()
            .unwrap();
        let r = Remote::new(cfg);
        let key = Key([7; 32]);
        assert!(matches!(r.fetch(&key, &|_| true), Fetch::Miss));
        assert!(!r.active());
        assert!(matches!(r.fetch(&key, &|_| true), Fetch::Miss));
        let w = r.take_warnings();
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("cannot connect"), "{w:?}");
    }

    #[test]
    fn only_paths_inside_the_workspace_are_accepted() {
        for ok in ["out/x.txt", "x", "./a/b", "a/./b"] {
            assert!(inside_workspace(ok), "{ok}");
        }
        for bad in [
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a/..",
            "~/x",
            "~root/x",
            "",
            "//x",
        ] {
            assert!(!inside_workspace(bad), "{bad}");
        }
    }
}
