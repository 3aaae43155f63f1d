//! The no-op fast path of `pflow build`: a build that would find nothing to do says so
//! from the workflow's no-op record ([`crate::cache::noop`]) without parsing, validating
//! or keying anything, and prints what the normal build would have printed.
//!
//! The record is written after a successful build in which every node was reused through
//! the build record's fast path, skipped (an error handler whose source succeeded), or
//! ran (or was found in the cache) as a step the edit path accepts: one that works on no
//! file, whose build record, just written, shows it wrote and removed nothing and holds
//! the digest it reported. Every other build removes it before it runs anything. It is
//! used when all of this holds, else the build takes the normal path, which is always
//! right:
//!
//! - the invocation is a plain build ([`plain`]): no `--force`, `--rerun`, `--target`,
//!   `--explain`, `--dry-run`, `--watch`, `--trace`, `--timings`, `--profile`,
//!   `--apply-repairs`, remote cache, or saved workflow;
//! - the fingerprint is the same: the workflow file's bytes (BLAKE3), its path as given,
//!   the inputs as given, `--strict`, `--strict-env`, `--allow-write`, the repair mode,
//!   the cache directory, the working directory, pflow's version and its executable's
//!   identity, every `PFLOW_*` variable (settings files are applied there), `HOME`, and
//!   the variables the workflow's nodes declare (`reads_env`) or their types key on;
//! - the cache's generation (`cache clear`, `gc` and `verify --fix` bump it) and the
//!   build record (which any build that learns something rewrites) are the ones it was
//!   made with, and it is younger than the build record may be trusted and than any
//!   node's `"cache": "<duration>"`;
//! - every file whose content went into a key, that a node wrote, or that must be absent
//!   (a file a node deleted or moved away, a declared read that did not exist) is as it
//!   was, and was last changed well before the recorded build started (see
//!   [`crate::cache::noop::GRANULARITY_NS`]); with repair on, so is the `repairs/` folder;
//! - the declared outputs' values load from the cache and resolve.
//!
//! A workflow with a node that runs on every build (`"cache": false`, a read-only MCP
//! tool), a node of another type than the built-in ones ([`COVERED_TYPES`]: no MCP
//! tool), a node of a nested workflow, a glob in `reads`, an input read from stdin or an
//! output that reads an input is never recorded: it always takes the normal path.
//!
//! The record also keeps the workflow file's identity, only to route: a file written
//! since (another identity) whose record the edit path can use goes there unhashed, as
//! that path compares its bytes with the kept copy anyway; should it turn the file
//! away, this path looks again and hashes it ([`Look`]). A same identity proves nothing.
//!
//! `PFLOW_DEBUG=1` prints, on stderr, whether the record was used (and if not, why) and
//! when a workflow file is parsed. It changes nothing else, so it is left out of the
//! fingerprint.

use super::then::Then;
use super::ExitCode;
use crate::cache::layered::Layered;
use crate::cache::noop::{NodeEnd, NodeEntry, NoopRecord, OutputSource, GRANULARITY_NS};
use crate::cache::records::{BuildState, NodeRecord, GONE, MAX_AGE};
use crate::cache::Cache;
use crate::cli::BuildArgs;
use crate::executor::{HitSource, NodeReport, Outcome, Status};
use crate::fsutil::{stat, FileId};
use crate::key::Key;
use crate::node_texts::{Layout, NodeTexts, Spliced};
use crate::validate::{CompiledNode, Validated};
use crate::workflow::{CachePolicy, Node};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// `PFLOW_DEBUG`: say what the fast path decided, and when a workflow is parsed.
pub const DEBUG_ENV: &str = "PFLOW_DEBUG";

pub fn debugging() -> bool {
    std::env::var_os(DEBUG_ENV).is_some_and(|v| !v.is_empty())
}

/// A `debug:` line on stderr, under `PFLOW_DEBUG`.
pub fn debug(text: impl FnOnce() -> String) {
    if debugging() {
        crate::report::err_line(&format!("debug: {}", text()));
    }
}

/// What both the fast path and the record need to know about a plain build.
pub(super) struct Invocation {
    /// The workflow file.
    pub(super) path: PathBuf,
    pub(super) root: PathBuf,
    /// The name its records are kept under.
    pub(super) name: String,
    pub(super) repair: crate::repair::Mode,
    /// pflow's executable as the build found it at its start: a step that ran may
    /// replace it (a workflow that installs pflow), and the record must not then carry
    /// the new one's identity for what the old one built.
    exe: Option<FileId>,
}

/// The identity of pflow's executable.
fn exe_id() -> Option<FileId> {
    std::env::current_exe().ok().and_then(|p| stat(&p))
}

/// Is this build one the fast path may serve? Why not, if not.
fn plain(args: &BuildArgs) -> Result<Invocation, &'static str> {
    let refused = [
        (args.force, "--force"),
        (!args.rerun.is_empty(), "--rerun"),
        (!args.target.is_empty(), "--target"),
        (args.explain, "--explain"),
        (args.dry_run, "--dry-run"),
        (args.watch, "--watch"),
        (args.trace.is_some(), "--trace"),
        (args.timings.is_some(), "--timings"),
        (args.profile.is_some(), "--profile"),
        (args.apply_repairs, "--apply-repairs"),
        (args.jobs == Some(0), "--jobs 0"),
        (
            args.remote_cache.is_some() || args.remote_cache_write,
            "a remote cache",
        ),
    ];
    if let Some((_, flag)) = refused.iter().find(|(set, _)| *set) {
        return Err(flag);
    }
    match crate::cache::remote::Config::from_args(None, false) {
        Ok(None) => {}
        _ => return Err("a remote cache"),
    }
    let repair = crate::repair::Mode::choose(args.no_repair).map_err(|_| "PFLOW_REPAIR")?;
    // The normal build warns about (or refuses) these.
    match super::conclusion::jobs_given(args) {
        Err(_) => return Err("PFLOW_JOBS"),
        Ok(Some(n)) if n > super::conclusion::MAX_JOBS => return Err("--jobs above the limit"),
        Ok(_) => {}
    }
    if args.max_repair_attempts.is_none()
        && super::conclusion::count_from_env(crate::config::MAX_REPAIR_ATTEMPTS_ENV).is_err()
    {
        return Err("PFLOW_MAX_REPAIR_ATTEMPTS");
    }
    // A file path, not a saved workflow (whose runs are recorded in its file).
    let path = PathBuf::from(&args.workflow);
    if !path.is_file() || crate::store::saved_name(&path).is_some() {
        return Err("not a workflow file");
    }
    let root = super::cache_dir_of(args.cache_dir.as_ref());
    Ok(Invocation {
        name: super::records_name::records_name(&path, &root),
        path,
        root,
        repair,
        exe: exe_id(),
    })
}

/// The fingerprint: the context and the digest of the workflow file's bytes.
pub(super) fn fingerprint(context: &[u8; 32], workflow: &blake3::Hash) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("pflow no-op record fingerprint v2");
    h.update(context);
    h.update(workflow.as_bytes());
    *h.finalize().as_bytes()
}

/// Everything outside the files, but the workflow's own bytes, that decides what a
/// build of this workflow does, hashed as one (the way a key holds a secret: no value,
/// nor the digest of one value alone, is kept). None when pflow's own executable cannot
/// be looked at.
pub(super) fn context(
    args: &BuildArgs,
    inv: &Invocation,
    env_names: &[String],
) -> Option<[u8; 32]> {
    let mut h = blake3::Hasher::new_derive_key("pflow no-op record context v2");
    let mut put = |tag: &str, bytes: &[u8]| {
        for part in [tag.as_bytes(), bytes] {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part);
        }
    };
    // A rebuilt or reinstalled pflow may validate, key or run anything differently.
    put("pflow", &maker()?);
    put("cwd", std::env::current_dir().ok()?.as_os_str().as_bytes());
    put("workflow-arg", args.workflow.as_bytes());
    put("cache-dir", inv.root.as_os_str().as_bytes());
    for p in &args.params {
        put("input", p.as_bytes());
    }
    put("strict", &[u8::from(args.strict)]);
    put("strict-env", &[u8::from(args.strict_env)]);
    for dir in &args.allow_write {
        put("allow-write", dir.as_os_str().as_bytes());
    }
    put("repair", format!("{:?}", inv.repair).as_bytes());
    let mut own: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os()
        .filter(|(k, _)| k.as_bytes().starts_with(b"PFLOW_") && k != DEBUG_ENV)
        .collect();
    own.sort();
    for (k, v) in &own {
        put("env", k.as_bytes());
        put("=", v.as_bytes());
    }
    for name in std::iter::once("HOME").chain(env_names.iter().map(String::as_str)) {
        match std::env::var_os(name) {
            Some(v) => {
                put("env", name.as_bytes());
                put("=", v.as_bytes());
            }
            None => put("unset", name.as_bytes()),
        }
    }
    Some(*h.finalize().as_bytes())
}

fn id_bytes(id: &FileId) -> Vec<u8> {
    let mut out = Vec::with_capacity(56);
    out.extend_from_slice(&id.size.to_le_bytes());
    out.extend_from_slice(&id.mtime_ns.to_le_bytes());
    out.extend_from_slice(&id.ctime_ns.to_le_bytes());
    out.extend_from_slice(&id.ino.to_le_bytes());
    out.extend_from_slice(&id.dev.to_le_bytes());
    out
}

/// BLAKE3 of a file, read in pieces (a big workflow is not held in memory).
fn file_hash(path: &Path) -> Option<blake3::Hash> {
    let file = std::fs::File::open(path).ok()?;
    let mut h = blake3::Hasher::new();
    h.update_reader(file).ok()?;
    Some(h.finalize())
}

/// Does any of the build's outputs hold a value `redactor` hides?
pub(super) fn outputs_hold_a_secret(
    redactor: &crate::secrets::Redactor,
    outcome: &Outcome,
) -> bool {
    outcome.outputs.values().any(|v| redactor.finds_in_value(v))
}

fn now_ns() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

/// What a build started with, for its record: when, and the facts of a plain build.
pub(super) struct Start {
    at_ns: i128,
    pub(super) inv: Option<Invocation>,
    /// The record, when only the workflow's text differs from it and it has what the
    /// edit path needs.
    pub(super) edited: Option<Box<NoopRecord>>,
    /// `edited` was found on the workflow file's identity alone (its bytes were not
    /// hashed): should the edit path turn it away, the file may be unchanged, and the
    /// no-op path looks again, hashing it ([`Look::Bytes`]).
    pub(super) by_identity: bool,
    /// The recorded text's kept copy and layout, when the edit path or the no-op path
    /// turned the record away for a reason that leaves them good.
    pub(super) prior: Option<Prior>,
}

/// The kept copy of the recorded workflow's text and where its nodes are, from a record
/// turned away: by the edit path (the edit reaches most nodes) or by the no-op path for
/// anything but the text (other inputs, a file, the cache). The build's own record then
/// finds the nodes of the new text by reading it as an edit of that copy, and keeps the
/// new text as a splice over it, rather than cutting the whole text into nodes again
/// and writing a copy of all of it: at 10,000 nodes those were about 2% of a build's
/// instructions, which a cold build pays too but a rebuild need not.
pub(super) struct Prior {
    /// The edit path turned the edit away for reaching most nodes (then the build keeps
    /// the nodes' compiled forms for the next such edit).
    pub(super) far: bool,
    pub(super) layout: Layout,
    /// Shared: the edit path holds it while it may still turn the edit away.
    pub(super) kept: std::rc::Rc<crate::cache::kept_text::KeptText>,
}

/// How the no-op path tells that the workflow file changed.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Look {
    /// A file whose identity differs from the record's, with a record the edit path can
    /// use, goes there unhashed (the edit path compares its bytes with the kept copy).
    Identity,
    /// Always by its bytes.
    Bytes,
}

impl Start {
    /// The build goes the normal way, which fills its memory: huge pages (the process
    /// began with small ones, which the no-op and edit paths keep).
    pub(super) fn normal(self) -> Start {
        crate::memory::huge_pages(true);
        self
    }

    /// Is this build one whose record could be used (so worth writing)?
    pub(super) fn may_record(&self) -> bool {
        self.inv.is_some()
    }
}

/// Serve the build from the no-op record if it holds. `Err` carries the facts the normal
/// build then needs for the record it may write.
pub(super) fn serve(
    args: &BuildArgs,
    look: Look,
    started: Instant,
    then: Then,
) -> Result<ExitCode, Start> {
    let at_ns = now_ns();
    let inv = match plain(args) {
        Ok(inv) => inv,
        Err(why) => {
            debug(|| format!("no-op record not used: {why}"));
            return Err(Start {
                at_ns,
                inv: None,
                edited: None,
                by_identity: false,
                prior: None,
            });
        }
    };
    let (edited, by_identity, prior) = match try_serve(args, &inv, look, started, then) {
        Ok(code) => {
            debug(|| "no-op record used: nothing changed".into());
            return Ok(code);
        }
        // The edit path ([`super::edit`]) decides, and says why not.
        Err(Refused::Edited(rec, found)) => (Some(rec), found == Look::Identity, None),
        Err(Refused::Because(why)) => {
            debug(|| format!("no-op record not used: {why}"));
            (None, false, None)
        }
        Err(Refused::Kept(why, rec)) => {
            debug(|| format!("no-op record not used: {why}"));
            // With repair on the build leaves no edit base (`base_for`).
            let prior = (inv.repair == crate::repair::Mode::Off)
                .then(|| prior_of(&inv, *rec))
                .flatten();
            (None, false, prior)
        }
    };
    Err(Start {
        at_ns,
        inv: Some(inv),
        edited,
        by_identity,
        prior,
    })
}

/// The kept copy of the text `rec` was made from and where its nodes are, if it has
/// an edit base that this pflow made (another may have found the nodes otherwise) and
/// the copy is whole.
fn prior_of(inv: &Invocation, mut rec: NoopRecord) -> Option<Prior> {
    let base = rec.take_edit()?;
    if Some(base.maker) != maker() {
        return None;
    }
    let kept = crate::cache::kept_text::load(&inv.root, &inv.name, &base.text)?;
    Some(Prior {
        far: false,
        layout: base.layout,
        kept: std::rc::Rc::new(kept),
    })
}

/// Why the record did not serve a build.
enum Refused {
    /// Only the workflow's text differs, and the record has what the edit path needs;
    /// told by the file's identity alone (unhashed) or by its bytes.
    Edited(Box<NoopRecord>, Look),
    Because(String),
    /// Turned away for another reason than the text (the inputs, a file, the cache), by
    /// a record that is whole: its kept copy of the text may still serve the build's own
    /// record ([`Prior`]).
    Kept(String, Box<NoopRecord>),
}

impl<T: Into<String>> From<T> for Refused {
    fn from(why: T) -> Refused {
        Refused::Because(why.into())
    }
}

fn try_serve(
    args: &BuildArgs,
    inv: &Invocation,
    look: Look,
    started: Instant,
    then: Then,
) -> Result<ExitCode, Refused> {
    let rec = NoopRecord::load(&inv.root, &inv.name).ok_or("no record")?;
    let context =
        context(args, inv, &rec.env_names).ok_or("pflow's executable cannot be looked at")?;
    // A workflow file written since the record (another identity) goes to the edit path
    // without its bytes hashed here first (0.7 ms of an edit at 10,000 nodes): that path
    // compares them with the kept copy. The same identity proves nothing: hashed.
    if look == Look::Identity
        && rec.workflow.is_some()
        && stat(&inv.path) != rec.workflow
        && rec.edit_context() == Some(context)
    {
        return Err(Refused::Edited(Box::new(rec), Look::Identity));
    }
    let digest = file_hash(&inv.path).ok_or("cannot read the workflow")?;
    if fingerprint(&context, &digest) != rec.fingerprint {
        if rec.edit_context() == Some(context) {
            return Err(Refused::Edited(Box::new(rec), Look::Bytes));
        }
        let why = "the workflow, inputs, flags, environment or pflow changed";
        return Err(Refused::Kept(why.into(), Box::new(rec)));
    }
    // From here on as a build: under the lock maintenance waits for. It touches a little
    // of much memory, on the small pages the process began with (`crate::memory`).
    let cache = Layered::new(Cache::new(&inv.root), None);
    let _lock = match holds(args, inv, &rec, &cache) {
        Ok(lock) => lock,
        Err(why) => return Err(Refused::Kept(why, Box::new(rec))),
    };
    let t0 = Instant::now();
    let (nodes, saved) = reports_of(&rec).ok_or("a damaged record")?;
    let outputs = resolve_outputs(&rec, &nodes, cache.local()).ok_or("an output")?;

    // The same lines, figures and document as the normal build.
    let view = super::conclusion::view(args);
    let json_mode = view.json;
    if !json_mode {
        for line in &rec.warnings {
            crate::report::err_line(line);
        }
    }
    let logs = crate::cache::logs::Logs::load(&inv.root, &inv.name);
    let mut progress = crate::report::Progress::new(nodes.len(), view, logs);
    for r in rec.order.iter().filter_map(|&i| nodes.get(i as usize)) {
        progress.finished(r);
    }
    progress.done();
    let outcome = Outcome {
        nodes,
        outputs,
        success: true,
        interrupted: false,
        duration: t0.elapsed(),
        warnings: Vec::new(),
        output_errors: Vec::new(),
        upstream: Vec::new(),
    };
    let run_id = super::conclusion::run_id();
    let tallies = outcome
        .nodes
        .iter()
        .zip(saved)
        .map(|(r, saved_ms)| match r.status {
            Status::Skipped => crate::cache::stats::Tally::Skipped,
            _ => crate::cache::stats::Tally::Hit {
                saved_ms,
                restored: false,
                upstream_ran: false,
            },
        });
    super::conclusion::append_stats(&cache, &outcome, tallies, &run_id);
    super::conclusion::attempt_lines(args, &outcome);
    // The record holds no output with a secret of the build that wrote it (see
    // `qualifies`); pflow's own variables named like secrets are looked for again.
    let code = super::conclusion::conclude(
        args,
        outcome,
        None,
        &rec.warnings,
        &crate::secrets::Redactor::new(Vec::new()),
        started,
        then,
    );
    then.leave(rec);
    Ok(code)
}

/// Does the record still hold (beside its fingerprint)? Then the shared cache lock, under
/// which the build goes on (maintenance waits for it).
pub(super) fn holds(
    args: &BuildArgs,
    inv: &Invocation,
    rec: &NoopRecord,
    cache: &Layered,
) -> Result<crate::cache::lock::CacheLock, String> {
    if crate::cache::now_ms() >= u128::from(rec.valid_until_ms) {
        return Err("it has expired".into());
    }
    if let Some(k) = &args.output_key {
        if !rec.outputs.iter().any(|(name, _)| name == k) {
            return Err(format!("no output '{k}'"));
        }
    }
    let say_wait = &mut |w: &crate::cache::lock::Waiting| crate::report::err_line(&w.to_string());
    let lock = cache
        .local()
        .lock(crate::cache::lock::Mode::Shared, say_wait)
        .map_err(|e| e.to_string())?;
    if crate::cache::layout::generation(&inv.root) != rec.generation {
        return Err("the cache was cleared, collected or fixed".into());
    }
    if BuildState::header(&inv.root, &inv.name) != Some((rec.generation, rec.state_written_ms)) {
        return Err("another build of this workflow recorded something".into());
    }
    if let Some(path) = rec.changed_file() {
        return Err(format!(
            "'{path}' changed (or changed too recently to tell)"
        ));
    }
    Ok(lock)
}

/// Each recorded node's report, in workflow order: what the normal build reports for a
/// node its build record vouches for (or one it skips); and beside each, a reused
/// node's recorded run time (the time the cache saved), as the cache notes a hit.
#[allow(clippy::type_complexity)]
pub(super) fn reports_of(rec: &NoopRecord) -> Option<(Vec<NodeReport>, Vec<Option<u64>>)> {
    let mut out = Vec::with_capacity(rec.node_count());
    crate::memory::prefault(&mut out);
    let mut saved = Vec::with_capacity(rec.node_count());
    for (index, n) in rec.nodes().enumerate() {
        let n = n?;
        let base = NodeReport::new(index, n.id, n.node_type, Status::Cached, 0);
        out.push(match n.end {
            NodeEnd::Cached {
                key,
                digest,
                duration_ms,
            } => {
                saved.push(Some(duration_ms));
                NodeReport {
                    key: Some(Key(key)),
                    digest: Some(blake3::Hash::from_bytes(digest)),
                    reason: "inputs unchanged".into(),
                    source: Some(HitSource::FastPath),
                    ..base
                }
            }
            NodeEnd::Skipped { reason } => {
                saved.push(None);
                NodeReport {
                    status: Status::Skipped,
                    reason: reason.to_string().into(),
                    ..base
                }
            }
        });
    }
    Some((out, saved))
}

/// Node values by id, for an output's template.
struct Values(Vec<(String, Arc<Value>)>);

impl crate::template::Scope for Values {
    fn lookup(&self, root: &str) -> Option<Cow<'_, Value>> {
        self.0
            .iter()
            .find(|(id, _)| id == root)
            .map(|(_, v)| Cow::Borrowed(v.as_ref()))
    }

    fn root_names(&self) -> Vec<String> {
        self.0.iter().map(|(id, _)| id.clone()).collect()
    }
}

/// The declared outputs, from the nodes' cached values, as the normal build resolves
/// them. None when a value cannot be loaded or an output does not resolve: the normal
/// build then says what is wrong (or runs a node whose entry is damaged).
fn resolve_outputs(
    rec: &NoopRecord,
    reports: &[NodeReport],
    cache: &Cache,
) -> Option<Map<String, Value>> {
    let mut outputs = Map::new();
    if rec.outputs.is_empty() {
        return Some(outputs);
    }
    // The entry must hold the value the record's digest names: another build may have
    // stored a new result under the key since (a node whose output varies, run again).
    let load = |index: u32| -> Option<(String, Arc<Value>)> {
        let r = reports.get(index as usize)?;
        let entry = cache.peek(&r.key?)?;
        if Some(entry.output) != r.digest {
            return None;
        }
        Some((r.id.clone(), Arc::new(cache.load_outputs(&entry).ok()?)))
    };
    for (name, source) in &rec.outputs {
        let value = match source {
            OutputSource::Template(text, nodes) => {
                let t = crate::template::Template::parse(text).ok()?;
                let scope = Values(nodes.iter().map(|&i| load(i)).collect::<Option<_>>()?);
                t.resolve(&scope).ok()?
            }
            // The first of the nodes that has the field; one that cannot be loaded is
            // not passed over for an earlier one (the normal build would run it).
            OutputSource::Field(nodes) => {
                let mut found = None;
                for &i in nodes {
                    let (_, v) = load(i)?;
                    if let Some(x) = v.get(name) {
                        found = Some(x.clone());
                        break;
                    }
                }
                found?
            }
        };
        outputs.insert(name.clone(), value);
    }
    Some(outputs)
}

/// The rules a node that runs in a build must meet for the build to leave a record (the
/// edit path's, see `super::edit`): it works on no file and holds no secret, so nothing
/// it did can be too recent to vouch for, or be kept where it must not.
pub(super) fn node_qualifies(node: &Node, cn: &CompiledNode) -> Result<(), String> {
    let spec = cn.spec;
    let why = if node.batch.is_some() {
        "is a batch"
    } else if !cn.reads.is_empty() || !cn.writes.is_empty() {
        "declares reads or writes"
    } else if !spec.reads_files.is_empty()
        || !spec.writes_files.is_empty()
        || !spec.removes_files.is_empty()
    {
        "works on files"
    } else if node.scoped {
        "comes from a nested workflow"
    } else if !spec.literal_secrets(&node.params).is_empty() {
        "holds a secret"
    } else if cn.secret_templates().next().is_some() {
        // What it binds is a secret only a run learns; a build served without running
        // it could not hide that value.
        "binds a value into a secret param"
    } else {
        return Ok(());
    };
    Err(format!("node '{}' {why}", node.id))
}

/// The build record of node `id`, which ran (or was found in the cache) in the build
/// just done with `key`, if the next build may be served from it: it wrote and removed no
/// file (one that new is too recent to vouch for), and it holds the digest the build
/// reported (another build of the workflow may have recorded the node since).
pub(super) fn fresh_record(
    state: &BuildState,
    id: &str,
    key: &Key,
    digest: &blake3::Hash,
) -> Result<NodeRecord, String> {
    let found = recorded(state, id, key, digest)?;
    if !found.written.is_empty() || !found.removed.is_empty() {
        return Err(format!("node '{id}' wrote files"));
    }
    Ok(found)
}

/// The build record of node `id` with `key`, if it holds the digest the build reported.
fn recorded(
    state: &BuildState,
    id: &str,
    key: &Key,
    digest: &blake3::Hash,
) -> Result<NodeRecord, String> {
    let found = state
        .record(id, &key.0)
        .ok_or_else(|| format!("node '{id}' is not in the build record"))?;
    if found.digest != *digest.as_bytes() {
        return Err(format!("node '{id}' was recorded by another build"));
    }
    Ok(found)
}

/// After a normal build: write the no-op record when the next build would find nothing
/// to do and everything it depends on can be vouched for; else leave none. Best effort:
/// a record not written only costs the next build time.
#[allow(clippy::too_many_arguments)]
pub(super) fn record(
    args: &BuildArgs,
    start: &Start,
    v: &Validated,
    workflow_digest: &blake3::Hash,
    warning_lines: &[String],
    redactor: &crate::secrets::Redactor,
    outcome: &Outcome,
    repaired: bool,
    edit_base: EditBaseFn,
) {
    let Some(inv) = &start.inv else {
        return;
    };
    match make_record(
        args,
        inv,
        start.at_ns,
        start.prior.as_ref(),
        v,
        workflow_digest,
        warning_lines,
        redactor,
        outcome,
        repaired,
        edit_base,
    ) {
        Ok(rec) => match rec.save(&inv.root, &inv.name) {
            Ok(()) => debug(|| "no-op record written".into()),
            Err(e) => debug(|| format!("no-op record not written: {e}")),
        },
        Err(why) => debug(|| format!("no-op record not written: {why}")),
    }
}

#[allow(clippy::too_many_arguments)]
fn make_record(
    args: &BuildArgs,
    inv: &Invocation,
    started_ns: i128,
    prior: Option<&Prior>,
    v: &Validated,
    workflow_digest: &blake3::Hash,
    warning_lines: &[String],
    redactor: &crate::secrets::Redactor,
    outcome: &Outcome,
    repaired: bool,
    edit_base: EditBaseFn,
) -> Result<NoopRecord, String> {
    if repaired {
        return Err("a repair took part".into());
    }
    if !outcome.success || outcome.interrupted || crate::interrupt::is_interrupted() {
        return Err("the build did not succeed".into());
    }
    if !outcome.warnings.is_empty() || !outcome.output_errors.is_empty() {
        return Err("the build warned".into());
    }
    let wf = &v.workflow;
    if outcome.nodes.len() != wf.nodes.len() {
        return Err("not every node was built".into());
    }
    // Each node was reused through the build record, or ran (or was found in the cache)
    // and is one the edit path would run: it works on no file, so nothing it did is
    // too recent to vouch for. Its build record, just written, is what the next build
    // would find. The cheap test first.
    let mut fresh = vec![false; wf.nodes.len()];
    for (i, ((r, node), cn)) in outcome
        .nodes
        .iter()
        .zip(&wf.nodes)
        .zip(&v.nodes)
        .enumerate()
    {
        let ok = match r.status {
            Status::Cached if r.source == Some(HitSource::FastPath) => true,
            Status::Skipped => r.key.is_none(),
            Status::Cached | Status::Ran => {
                fresh[i] = r.error.is_none()
                    && !matches!(node.cache, CachePolicy::Never)
                    && node_qualifies(node, cn).is_ok();
                fresh[i]
            }
            _ => false,
        };
        if !ok {
            return Err(format!("node '{}' {}", r.id, r.status.as_str()));
        }
    }
    if wf.inputs.values().any(|i| i.stdin) {
        return Err("an input may come from stdin".into());
    }
    for (node, cn) in wf.nodes.iter().zip(&v.nodes) {
        // Types whose every input is covered above; a type added later is not recorded
        // until someone makes sure of its own.
        if !COVERED_TYPES.iter().any(|s| std::ptr::eq(*s, cn.spec)) || cn.spec.volatile {
            return Err(format!("node '{}' is of type {}", node.id, cn.spec.name));
        }
        // A node of a nested workflow: that workflow's file is read too, and the
        // fingerprint covers only this one.
        if crate::nested::is_nested(&node.id) {
            return Err(format!("node '{}' comes from a nested workflow", node.id));
        }
        if cn.reads.iter().any(|p| p.is_glob()) {
            return Err(format!("node '{}' reads a glob", node.id));
        }
        // A file added under a directory read changes no identity the record holds.
        if cn.reads.iter().any(|p| p.tree_glob().is_some()) {
            return Err(format!("node '{}' reads a directory", node.id));
        }
    }
    // Printed as they are by every build; kept only if they hold nothing secret.
    for text in warning_lines {
        if redactor.scrub(text) != *text {
            return Err("a warning holds a secret".into());
        }
    }
    // Shown redacted, which the no-op could not do: it does not know the secrets.
    if outputs_hold_a_secret(redactor, outcome) {
        return Err("an output holds a secret".into());
    }
    let state = BuildState::load(&inv.root, &inv.name);
    let generation = crate::cache::layout::generation(&inv.root);
    if BuildState::header(&inv.root, &inv.name) != Some((generation, state.written_ms))
        || state.is_empty()
    {
        return Err("no usable build record".into());
    }
    let settled_before_ns = started_ns - GRANULARITY_NS;
    let mut rec = NoopRecord::default();
    rec.generation = generation;
    rec.state_written_ms = state.written_ms;
    rec.valid_until_ms = state.written_ms + MAX_AGE.as_millis() as u64;
    rec.settled_before_ns = settled_before_ns;
    let mut files: Vec<(String, Option<FileId>)> = Vec::new();
    let mut ended_cached = vec![false; wf.nodes.len()];
    for (i, (node, r)) in wf.nodes.iter().zip(&outcome.nodes).enumerate() {
        if r.index != i || (r.executions != 0 && !fresh[i]) || r.error.is_some() {
            return Err(format!("node '{}' ran", node.id));
        }
        let end = match (r.status, r.source, r.key, r.digest) {
            (Status::Cached | Status::Ran, _, Some(key), Some(digest)) if fresh[i] => {
                let found = fresh_record(&state, &node.id, &key, &digest)?;
                outlive_no_entry(&mut rec, &node.cache, found.time_ms);
                ended_cached[i] = true;
                NodeEnd::Cached {
                    key: key.0,
                    digest: *digest.as_bytes(),
                    duration_ms: found.duration_ms,
                }
            }
            (Status::Cached, Some(HitSource::FastPath), Some(key), Some(digest)) => {
                let found = recorded(&state, &node.id, &key, &digest)?;
                outlive_no_entry(&mut rec, &node.cache, found.time_ms);
                for (path, id) in found.written {
                    files.push((path, (id.size != GONE).then_some(id)));
                }
                for p in found.removed {
                    // Kept as text: a name that was not UTF-8 holds stand-ins, and would
                    // name another file, whose absence would vouch for this one's.
                    if p.contains(char::REPLACEMENT_CHARACTER) {
                        return Err(format!("the path '{p}' may not be the file's own"));
                    }
                    files.push((p, None));
                }
                ended_cached[i] = true;
                NodeEnd::Cached {
                    key: key.0,
                    digest: *digest.as_bytes(),
                    duration_ms: found.duration_ms,
                }
            }
            (Status::Skipped, None, None, _) => NodeEnd::Skipped { reason: &r.reason },
            _ => return Err(format!("node '{}' was not reused", node.id)),
        };
        rec.push_node(&NodeEntry {
            id: &node.id,
            node_type: &node.node_type,
            end,
        });
    }
    // Lines in an order the build may have finished them in.
    rec.order = v.order.iter().map(|&i| i as u32).collect();
    // The files keys were made from, as the build record holds them (the build just
    // checked each against its identity), and declared reads that were not there.
    for (p, seen) in &state.reads {
        files.push((expanded(p)?, Some(seen.id)));
    }
    for cn in &v.nodes {
        for p in &cn.reads {
            let path = expanded(p.as_str())?;
            if stat(Path::new(&path)).is_none() {
                files.push((path, None));
            }
        }
    }
    if inv.repair != crate::repair::Mode::Off {
        // A proven patch for this workflow would be replayed before anything runs.
        let dir = crate::cache::layout::repairs_dir(&inv.root);
        files.push((recordable(&dir)?, stat(&dir)));
        // Its patches; not the locks, which a build of a new text adds to.
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.file_name() == crate::repair::lock::LOCKS_DIR {
                continue;
            }
            let path = entry.path();
            files.push((recordable(&path)?, stat(&path)));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup();
    // Each as the build saw it, and settled: a change within the granularity of the
    // build's start could look the same afterwards.
    for (path, id) in &files {
        if !crate::cache::noop::unchanged(Path::new(path), id.as_ref(), settled_before_ns) {
            return Err(format!(
                "'{path}' changed during the build or just before it"
            ));
        }
    }
    rec.files = files;
    for (name, spec) in &wf.outputs {
        let source = match &spec.source {
            Some(text) => {
                let t = crate::template::Template::parse(text)
                    .map_err(|_| format!("output '{name}'"))?;
                let mut nodes: Vec<u32> = Vec::new();
                for r in t.refs() {
                    let j = v
                        .graph
                        .position(&r.root)
                        .ok_or_else(|| format!("output '{name}' reads an input"))?;
                    if !nodes.contains(&(j as u32)) {
                        nodes.push(j as u32);
                    }
                }
                if redactor.scrub(text) != *text {
                    return Err(format!("output '{name}' holds a secret"));
                }
                OutputSource::Template(text.clone(), nodes)
            }
            None => OutputSource::Field(
                v.order
                    .iter()
                    .rev()
                    .copied()
                    .filter(|&i| ended_cached[i] && v.nodes[i].spec.output(name).is_some())
                    .map(|i| i as u32)
                    .collect(),
            ),
        };
        rec.outputs.push((name.clone(), source));
    }
    rec.warnings = warning_lines.to_vec();
    let mut env_names: Vec<String> = wf
        .nodes
        .iter()
        .zip(&v.nodes)
        .flat_map(|(n, cn)| {
            n.reads_env
                .iter()
                .cloned()
                .chain(cn.spec.key_env.iter().map(|s| s.to_string()))
        })
        .collect();
    env_names.sort();
    env_names.dedup();
    if inv.exe.is_none() || exe_id() != inv.exe {
        return Err("pflow's executable changed during the build".into());
    }
    let context = context(args, inv, &env_names).ok_or("pflow's executable cannot be looked at")?;
    rec.fingerprint = fingerprint(&context, workflow_digest);
    rec.workflow = stat(&inv.path);
    rec.env_names = env_names;
    let facts = BaseFacts {
        workflow_digest,
        prior,
        context,
        warning_lines,
        redactor,
    };
    rec.edit = match base_for(inv, v, facts, edit_base) {
        Ok(base) => Some(base),
        Err(why) => {
            debug(|| format!("no edit base: {why}"));
            None
        }
    };
    Ok(rec)
}

/// A record holds no longer than a node's entry (stored at `stored_ms`) may be reused:
/// its `"cache": "<duration>"`.
pub(super) fn outlive_no_entry(rec: &mut NoopRecord, policy: &CachePolicy, stored_ms: u64) {
    if let CachePolicy::MaxAge(max) = policy {
        let until = stored_ms.saturating_add(max.as_millis() as u64);
        rec.valid_until_ms = rec.valid_until_ms.min(until);
    }
}

/// What the edit path makes its base from ([`super::edit::base`]): the workflow as
/// validated, where its nodes are in the file's text (found only once the workflow is
/// known to qualify), the text's BLAKE3 and the record's context.
pub(super) type EditBaseFn = fn(
    &Validated,
    &mut dyn FnMut() -> Result<Layout, String>,
    [u8; 32],
    [u8; 32],
) -> Result<crate::cache::noop::EditBase, String>;

/// What the build knows that decides whether it leaves an edit base.
struct BaseFacts<'a> {
    workflow_digest: &'a blake3::Hash,
    prior: Option<&'a Prior>,
    context: [u8; 32],
    warning_lines: &'a [String],
    redactor: &'a crate::secrets::Redactor,
}

/// Which pflow this is: its version and its executable's identity. The [`context`]
/// holds it, and an edit base names it as its maker. Looked at once a process (a build
/// asks up to three times: the context, a prior record's base, its own base), and the
/// running code is what it names even if the file is replaced meanwhile.
pub(super) fn maker() -> Option<[u8; 32]> {
    static MAKER: std::sync::OnceLock<Option<[u8; 32]>> = std::sync::OnceLock::new();
    *MAKER.get_or_init(|| {
        let mut h = blake3::Hasher::new_derive_key("pflow edit base maker v1");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(&[0]);
        h.update(&id_bytes(&exe_id()?));
        Some(*h.finalize().as_bytes())
    })
}

/// What the edit path needs, when the build allows it.
fn base_for(
    inv: &Invocation,
    v: &Validated,
    BaseFacts {
        workflow_digest,
        prior,
        context,
        warning_lines,
        redactor,
    }: BaseFacts<'_>,
    edit_base: EditBaseFn,
) -> Result<crate::cache::noop::EditBase, String> {
    if inv.repair != crate::repair::Mode::Off {
        return Err("repair is on".into());
    }
    if !warning_lines.is_empty() {
        return Err("the workflow warns".into());
    }
    if crate::markdown::is_markdown_path(&inv.path) {
        return Err("a Markdown workflow".into());
    }
    let digest = *workflow_digest.as_bytes();
    let changed = || "the workflow changed during the build".to_string();
    // The file as the build read it, asked for once the workflow qualifies: as an edit
    // of the kept copy when the edit path turned one away, else whole.
    let mut read = None;
    let mut base = edit_base(
        v,
        &mut || {
            if let Some((edit, edited)) = prior.and_then(|p| read_as_edit(&inv.path, p)) {
                if edit.text().digest() != *workflow_digest {
                    return Err(changed());
                }
                read = Some(Read::Edit(edit));
                return Ok(edited.layout);
            }
            let text = std::fs::read_to_string(&inv.path).map_err(|e| e.to_string())?;
            if blake3::hash(text.as_bytes()) != *workflow_digest {
                return Err(changed());
            }
            let layout = NodeTexts::of(&text)
                .ok_or("not a plain JSON workflow")?
                .layout(&text)
                .ok_or("the workflow is too big")?;
            read = Some(Read::Whole(text));
            Ok(layout)
        },
        digest,
        context,
    )?;
    base.maker = maker().ok_or("pflow's executable cannot be looked at")?;
    // The copy the next build compares an edited text with: a splice over the kept one
    // when the text was read as an edit of it.
    let (text, over, copied) = match &read {
        Some(Read::Edit(edit)) => {
            debug(|| "edit base: the nodes found from the edit's stretch".into());
            // Unchanged, the kept copy is this text already (found by its digest).
            (edit.text(), prior.map(|p| &*p.kept), edit.unchanged())
        }
        Some(Read::Whole(text)) => (Spliced::whole(text.as_bytes()), None, false),
        None => return Err("the workflow was not read".into()),
    };
    if !copied {
        crate::cache::kept_text::save(&inv.root, &inv.name, text, workflow_digest, redactor, over)
            .map_err(|e| e.to_string())?;
    }
    // Only after an edit was turned away for reaching most nodes: the next one like it
    // takes the edit path with them. A build without one pays nothing for them (they
    // cost the 10,000-node chain's build about 7%, their key components included).
    if prior.is_some_and(|p| p.far) {
        save_forms(inv, v, &base, text, redactor);
    }
    Ok(base)
}

/// Keep the compiled forms of the nodes of `v`, whose text is `text`, for an edit that
/// reaches most of them ([`crate::cache::node_forms`]); none when a node has no form or
/// a form holds a secret value (one spelled with escapes in the text, say).
fn save_forms(
    inv: &Invocation,
    v: &Validated,
    base: &crate::cache::noop::EditBase,
    text: Spliced<'_>,
    redactor: &crate::secrets::Redactor,
) {
    let saved = (|| {
        let others = base
            .layout
            .without_nodes(text)
            .ok_or("a node outside the text")?;
        let nodes = v.workflow.nodes.iter();
        let ids = nodes.map(|n| (n.id.as_str(), n.node_type.as_str()));
        let tag = crate::cache::node_forms::tag(&base.maker, &base.context, &others, ids);
        let secrets = !redactor.is_empty();
        let nodes = &v.workflow.nodes;
        let each = |i: usize, was: &mut Vec<u8>, form: &mut Vec<u8>| {
            let (Some(node_text), Some(node), Some(cn)) =
                (base.layout.node(text, i), nodes.get(i), v.nodes.get(i))
            else {
                return false;
            };
            was.extend_from_slice(node_text.as_bytes());
            // What its definition puts in its key, unless a part is sealed (a secret's)
            // or the type's identity is a server's (an MCP tool's, which can change under
            // the same text).
            let parts = cn.spec.identity.is_empty().then(|| {
                crate::executor::definition_key(node, cn, v.workflow.template_mode, false).parts()
            });
            // The text too: a secret value spelled as a number, say, is no string in
            // the form.
            crate::node_form::encode(node, cn, parts.flatten().as_ref(), form)
                && !(secrets && (redactor.finds_in(form) || redactor.finds_in(was)))
        };
        crate::cache::node_forms::save(&inv.root, &inv.name, &tag, nodes.len(), each)
            .map_err(|_| "a node has none, a form holds a secret, or they cannot be written")
    })();
    match saved {
        Ok(()) => debug(|| "node forms written".into()),
        Err(why) => debug(|| format!("no node forms: {why}")),
    }
}

/// How [`base_for`] read the workflow's file.
enum Read<'p> {
    Edit(crate::node_texts::EditRead<'p>),
    Whole(String),
}

/// The workflow file at `path` read as an edit of the kept text of `prior`, and where
/// its nodes are: from the stretch between the bytes it shares with that text at the
/// start and at the end, read again (exact, as for the edit path: outside that stretch
/// the text is the one `prior.layout` was made of). `None` when the file cannot be read
/// or the edit is not one of the nodes' texts only (then the whole text is cut).
fn read_as_edit<'p>(
    path: &Path,
    prior: &'p Prior,
) -> Option<(crate::node_texts::EditRead<'p>, crate::node_texts::Edited)> {
    let file = std::fs::File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    if len > crate::source::max_workflow_bytes() {
        return None;
    }
    let len = usize::try_from(len).ok()?;
    // A first difference outside the nodes array (another workflow of the same file
    // name, say) is turned away there: the comparison below would refuse it anyway.
    let open = prior.layout.open as usize;
    let read =
        crate::node_texts::EditRead::read_unless(&file, len, prior.kept.text(), |at| at <= open)
            .ok()??;
    let edited = read.edited(&prior.layout)?;
    Some((read, edited))
}

/// The node types whose keys and runs depend only on what the record covers (no MCP
/// server, no nested workflow file): the specs themselves, not names that must match.
static COVERED_TYPES: [&crate::nodes::NodeSpec; 9] = {
    use crate::nodes::*;
    [
        &shell::SPEC,
        &read_file::SPEC,
        &write_file::SPEC,
        &copy_file::SPEC,
        &move_file::SPEC,
        &delete_file::SPEC,
        &http::SPEC,
        &llm::SPEC,
        &echo::SPEC,
    ]
};

/// A recorded path as the file system knows it (`~/` is the home folder).
fn expanded(p: &str) -> Result<String, String> {
    recordable(&crate::nodes::read_file::expand_path(p))
}

/// A path as the record keeps it, as text. Not one that is not UTF-8 (under a home
/// folder so named, say): with a stand-in character it would name another file, whose
/// absence would vouch for the real one's.
fn recordable(path: &Path) -> Result<String, String> {
    path.to_str()
        .map(str::to_string)
        .ok_or_else(|| format!("the path {} is not UTF-8", path.display()))
}
