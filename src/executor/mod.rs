//! The executor: run a validated workflow as a build.
//!
//! The main thread walks the DAG: when all of a node's dependencies are done it decides
//! whether the node may run (a failed dependency skips it; an `error` edge runs it only
//! when its source failed) and hands it to a rayon pool of `--jobs` threads. A worker
//! computes the node key from its dependencies' output *digests* (no values are loaded to
//! decide a hit), consults the per-command memo and the cache, and only on a miss loads
//! the upstream values, resolves templates and runs the node. Results flow back over a
//! channel; the main thread alone schedules, so there is no shared work queue to race on.
//!
//! A cached value that turns out corrupt when it is finally needed is not an error: the
//! node that produced it is run again on the spot (once, under its slot's lock).
//!
//! The parts: [`mod@decide`] (hit or run, and why), `keys.rs` (what goes into a key),
//! `recorder.rs` (what the last build saw and what this one learns), `batch.rs` (items
//! run and cached one by one), `budget.rs` (how `--jobs` bounds node runs and batch
//! item workers together), `plan.rs` (`--dry-run`), `targets.rs` (the nodes
//! `--target` selects), `written.rs` (the files a node wrote: declared outputs checked,
//! their digests in its outputs); this file schedules the nodes and keeps each one's slot
//! (its key, digest, value and report).

mod batch;
mod budget;
pub mod decide;
mod keys;
mod offload;
mod plan;
mod recorder;
mod secret_sources;
mod targets;
mod written;

pub use decide::HitSource;
pub use keys::definition_key;
pub use plan::{plan, Action, PlanStep};
pub use targets::{count as selected_count, selected};

use crate::cache::layered::Layered;
use crate::cache::records::{decode_explain, encode_explain};
use crate::cache::Entry;
use crate::canonical::output_digest;
use crate::error::{ErrorCategory, NodeError};
use crate::graph::Link;
use crate::key::{Key, KeyBuilder};
use crate::nodes::{NodeOutput, RunContext};
use crate::template::{ParamTemplate, Part, Scope, Template, Unresolved};
use crate::validate::{CompiledNode, Validated};
use crate::workflow::{BatchConfig, CachePolicy, ErrorHandling, TemplateMode};
use decide::{decide, Ask, Decision, Forced, Mode, Sources};
use offload::{LateReason, Offload};
use serde::Serialize;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct Options {
    /// Worker threads for node runs.
    pub jobs: usize,
    /// `jobs` was given (`--jobs`, `PFLOW_JOBS`, a settings file): then it bounds
    /// everything that runs at once, batch item workers included (`budget.rs`).
    pub jobs_given: bool,
    pub force: bool,
    pub rerun: HashSet<String>,
    pub run_id: String,
    /// The name the workflow's records go by in the cache (`cache::layout::records_name`).
    pub workflow_name: String,
    /// `--strict-env` or `PFLOW_STRICT_ENV=1` (a workflow's `"strict_env": true` adds to it).
    pub strict_env: bool,
    /// `--target`: build these nodes and what they need; empty builds everything.
    pub targets: Vec<String>,
    /// Where file nodes may write besides the workspace (`--allow-write`).
    pub write_roots: crate::workspace::WriteRoots,
    /// Secret values, replaced in every error, reason and warning the build reports.
    pub redactor: crate::secrets::Redactor,
    /// `-v`: where commands' output goes as it arrives, besides being collected.
    pub live: LiveOutput,
    /// When a miss is explained (what changed since the last build that decided the
    /// node).
    pub reasons: MissReasons,
    /// Results known before the build, by node position (the edit path of `pflow
    /// build`, for the nodes an edit does not reach); empty in every other build.
    pub known: Vec<Option<Known>>,
    /// What each node's definition puts in its key, worked out before the build, by node
    /// position (the edit path, for the nodes it takes as compiled before: see
    /// [`definition_key`]); empty, or `None` for a node, and the build works them out.
    pub parts: Vec<Option<crate::key::KeyParts>>,
}

/// When the build tells why a node that missed runs. Working it out (the last build's
/// explain record read and compared) cost as much as storing the node's result, and a
/// text build without `--explain` shows no reason of a node that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MissReasons {
    /// `--explain`: as each node finishes, for its line.
    Live,
    /// By the end of the build, for a report that shows them (JSON, `--trace`,
    /// `--timings`, `--profile`): on the offload thread (`offload.rs`).
    Reported,
    /// Never: the report says only that no entry was found. Each node's explain record
    /// is kept all the same, so the next build that shows reasons explains against it.
    Unread,
}

/// A node's result known before the build: the node is reported cached under `key`
/// with these values, and never keyed or run (its params may not even be compiled).
/// Its build record stays as it is (a build of part of a workflow forgets no other
/// node's).
#[derive(Debug, Clone)]
pub struct Known {
    pub key: Key,
    pub digest: blake3::Hash,
    pub values: Arc<Value>,
}

/// A sink for output as commands print it: (node id, bytes, is stdout). The sink
/// redacts and prints; nodes only hand bytes over.
#[derive(Clone, Default)]
pub struct LiveOutput(pub Option<Arc<LiveSink>>);

pub type LiveSink = dyn Fn(&str, &[u8], bool) + Send + Sync;

impl std::fmt::Debug for LiveOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "LiveOutput(on)"
        } else {
            "LiveOutput(off)"
        })
    }
}

/// What survives across the repair attempts of one command: results already produced
/// (a node never runs twice for the same key) and how often each node's body ran.
#[derive(Default)]
pub struct Session {
    memo: decide::Memo,
    executions: Mutex<foldhash::HashMap<String, u32>>,
}

impl Session {
    pub fn executions(&self, id: &str) -> u32 {
        self.executions
            .lock()
            .map(|m| m.get(id).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    fn count(&self, id: &str, n: u32) {
        if let Ok(mut m) = self.executions.lock() {
            *m.entry(id.to_string()).or_insert(0) += n;
        }
    }

    fn remember(&self, key: Key, digest: blake3::Hash, values: Arc<Value>) {
        self.memo.remember(key, digest, values);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ran,
    Cached,
    Restored,
    Failed,
    Skipped,
}

impl Status {
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Restored => "restored",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
        }
    }
}

#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node's position in the workflow (and in its graph).
    pub index: usize,
    pub id: String,
    /// A built-in type's name is not allocated per node (a no-op reports every node).
    pub node_type: Cow<'static, str>,
    pub status: Status,
    pub executions: u32,
    pub duration: Duration,
    pub key: Option<Key>,
    pub digest: Option<blake3::Hash>,
    /// Most reasons are one of a few fixed texts ("inputs unchanged" for every hit of a
    /// no-op): those are not allocated per node.
    pub reason: Cow<'static, str>,
    /// Boxed: a report is kept per node, and most have none.
    pub error: Option<Box<NodeError>>,
    /// A failure routed to an error handler.
    pub handled: bool,
    /// Where a reused result came from (None when the node ran, failed or was skipped).
    pub source: Option<HitSource>,
    /// What the node printed when it ran or failed in this build (tails, redacted).
    /// Boxed, as `usage`: most nodes have neither, and a report is kept per node.
    pub log: Option<Box<crate::cache::logs::NodeLog>>,
    /// The model tokens it used when it ran in this build (an `llm` node's `llm_usage`).
    pub usage: Option<Box<crate::llm::price::TokenUse>>,
    /// When it started and ended, in microseconds since the build started (the one
    /// clock `--trace`, `--timings` and `--profile` all read).
    pub start_us: u64,
    pub end_us: u64,
    /// For a batch node, each item's own interval and status (in item order; items
    /// that never started are left out).
    pub items: Vec<ItemSpan>,
    /// What it printed was not streamed to `-v` as it came: it feeds a secret, which is
    /// known (and redacted) only once the node is done. Its log is shown under its line.
    pub unstreamed: bool,
}

impl NodeReport {
    /// A report of node `index` with this status at `at_us`, nothing else known yet.
    pub fn new(index: usize, id: &str, node_type: &str, status: Status, at_us: u64) -> Self {
        NodeReport {
            index,
            id: id.to_string(),
            node_type: match crate::nodes::type_names().find(|t| *t == node_type) {
                Some(name) => Cow::Borrowed(name),
                None => Cow::Owned(node_type.to_string()),
            },
            status,
            executions: 0,
            duration: Duration::ZERO,
            key: None,
            digest: None,
            reason: Cow::Borrowed(""),
            error: None,
            handled: false,
            source: None,
            log: None,
            usage: None,
            start_us: at_us,
            end_us: at_us,
            items: Vec::new(),
            unstreamed: false,
        }
    }
}

/// One batch item's interval and status, on the build's clock.
#[derive(Debug, Clone)]
pub struct ItemSpan {
    pub index: usize,
    pub key: Key,
    pub status: Status,
    pub start_us: u64,
    pub end_us: u64,
}

#[derive(Debug, Clone)]
pub struct Outcome {
    /// One report per node the build covers, in workflow order (with `--target`, only
    /// the selected nodes' reports).
    pub nodes: Vec<NodeReport>,
    pub outputs: Map<String, Value>,
    pub success: bool,
    pub interrupted: bool,
    pub duration: Duration,
    pub warnings: Vec<String>,
    /// Declared outputs that could not be resolved, by name: they fail the build (and a
    /// repair may fix their `source`).
    pub output_errors: Vec<(String, NodeError)>,
    /// For each unhandled failure, the outputs of the nodes it depends on, as
    /// (failed node, dependency, values): what a repair shows the shapes of.
    pub upstream: Vec<(String, String, Arc<Value>)>,
}

/// Progress notifications for the reporter.
pub enum Event<'a> {
    Started(usize),
    Finished(&'a NodeReport),
    /// Nothing happened for a moment: a good time to flush output.
    Idle,
}

#[derive(Default)]
struct SlotState {
    /// Decided by the recorded build state, without reading the cache index.
    fast: bool,
    success: bool,
    digest: Option<blake3::Hash>,
    values: Option<Arc<Value>>,
    /// Boxed: most slots never hold one (fast hits), and a slot per node adds up.
    entry: Option<Box<Entry>>,
    key: Option<Key>,
    /// The key's explain record (`--explain`; saved only if something changed).
    explained: Option<Vec<u8>>,
    /// Why the node missed, when the offload thread tells it: it replaces the report's
    /// reason when the build ends.
    late_reason: LateReason,
    /// The node's result waits on the offload thread to be stored: its line is held
    /// back until it is, so that a node reported as run is one a build killed right
    /// after does not run again.
    storing: bool,
    /// Its values, read when they were needed, are not the result its dependents' keys
    /// were made from (its entry held another, or was unusable and it ran again).
    moved: bool,
    report: Option<NodeReport>,
}

struct Shared<'a> {
    v: &'a Validated,
    inputs: &'a Map<String, Value>,
    cache: &'a Layered,
    opts: &'a Options,
    session: &'a Session,
    slots: Vec<Mutex<SlotState>>,
    /// Dependencies of each node, each with all the ways it is linked.
    deps: Vec<Vec<(usize, Vec<Link>)>>,
    /// Nodes referenced only by `batch.items` (not part of an item's key).
    items_only_deps: Vec<HashSet<usize>>,
    /// The nodes this build covers (`--target`); `None`: all of them.
    selected: Option<Vec<bool>>,
    /// Files the workflow itself deletes or moves away (`delete-file`, `move-file`
    /// sources): a cached writer of such a file must not bring it back.
    consumed: HashSet<String>,
    /// What the last build saw, and what this one learns for the next.
    recorder: recorder::Recorder,
    warnings: Mutex<Vec<String>>,
    /// Some slot's `moved` is set: only then does a node that ran look at its
    /// dependencies' (a lock each, on every run).
    any_moved: AtomicBool,
    /// Each batch node's item intervals, kept by `run_batch` (also when the batch
    /// fails) until its report takes them.
    item_spans: Mutex<HashMap<usize, Vec<ItemSpan>>>,
    /// Nodes whose results were kept from the remote because they hold a secret.
    held_back: Mutex<Vec<String>>,
    /// For each node, the references to its values that other nodes bind into secret
    /// params (almost always none): what those resolve to is learned as a secret the
    /// moment the node's result is known, before anything shows it.
    secret_refs: HashMap<usize, Vec<secret_sources::SecretSource<'a>>>,
    /// What node runs and batch item workers take turns from.
    budget: budget::Budget,
    /// Where nodes hand work off (see `offload.rs`); closed until just before the
    /// offload thread starts and once it is told to finish: then a node does its own.
    offload: offload::Queue,
    start: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Run the workflow. `events` is called from the main thread only.
pub fn execute(
    v: &Validated,
    inputs: &Map<String, Value>,
    cache: &Layered,
    opts: &Options,
    session: &Session,
    events: &mut dyn FnMut(Event<'_>),
) -> Outcome {
    let n = v.workflow.nodes.len();
    let shared = Shared::new(v, inputs, cache, opts, session);
    let covered = selected_count(v, shared.selected.as_deref());

    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(opts.jobs.max(1))
        .thread_name(|i| format!("pflow-worker-{i}"))
        .build();
    let pool = match pool {
        Ok(p) => p,
        Err(e) => {
            lock(&shared.warnings).push(format!(
                "cannot start worker threads ({e}); running one at a time"
            ));
            match rayon::ThreadPoolBuilder::new().num_threads(1).build() {
                Ok(p) => p,
                Err(_) => return fail_all(&shared, "cannot start a worker thread"),
            }
        }
    };

    // A selection holds the upstream of each of its nodes: only its own dependents are
    // ever scheduled.
    let mut dependents: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in (0..n).filter(|&i| shared.covers(i)) {
        for (j, _) in &shared.deps[i] {
            dependents[*j].push(i);
        }
    }
    let (tx, rx) = mpsc::channel::<Msg>();
    let sched = Sched {
        remaining: (0..n)
            .map(|i| AtomicUsize::new(shared.deps[i].len()))
            .collect(),
        dependents,
        tx,
        unfinished: AtomicUsize::new(covered),
        reporter: std::thread::current(),
    };

    // The nodes this build decides: the edit path's known ones are only reported.
    let deciding = (0..n)
        .filter(|&i| shared.covers(i) && !matches!(opts.known.get(i), Some(Some(_))))
        .count();
    // About an entry per node (a batch stores its items' too: this is only a hint).
    cache.local().expect_entries(deciding);
    shared.offload.open();
    let mut held = VecDeque::new();
    let stored = || {
        let _ = sched.tx.send(Msg::Stored);
    };
    std::thread::scope(|threads| {
        let offload = std::thread::Builder::new()
            .name("pflow-offload".into())
            .spawn_scoped(threads, || shared.do_offloaded(&stored, deciding));
        // Told to finish when the pool is done: it does what it was handed first.
        let _finish = shared.offload.closing();
        if offload.is_err() {
            shared.offload.close();
        }
        run_pool(&pool, &shared, &sched, &rx, covered, &mut held, events);
    });
    // The offload thread has stored everything it was handed; the hits' marks of
    // recency wait to be written together.
    cache.local().flush_uses();
    for i in held {
        report_finished(&lock(&shared.slots[i]), events);
    }

    let outcome = shared.finish();
    // What the build is done with, milliseconds to free at 10,000 nodes, which it need
    // not wait for: the last build's records, loaded to decide and explain, and each
    // node's slot (a hit's entry, a few allocations made by the worker that looked it
    // up: 3 ms on the main thread after a build of the chain whose every node was a hit)
    // and dependency lists.
    crate::memory::free_later((
        shared.recorder,
        shared.slots,
        shared.deps,
        shared.items_only_deps,
    ));
    outcome
}

/// Start the nodes that wait for nothing, then report what the workers say until every
/// covered node has finished.
fn run_pool(
    pool: &rayon::ThreadPool,
    shared: &Shared<'_>,
    sched: &Sched,
    rx: &mpsc::Receiver<Msg>,
    covered: usize,
    held: &mut VecDeque<usize>,
    events: &mut dyn FnMut(Event<'_>),
) {
    let v = shared.v;
    pool.in_place_scope(|scope| {
        for &i in &v.order {
            if shared.deps[i].is_empty() && shared.covers(i) {
                scope.spawn(move |s| on_ready(s, shared, sched, i));
            }
        }
        // The main thread only reports; workers schedule each other. It wakes on a
        // short tick and takes whatever messages arrived, rather than waking for each:
        // on 2 cores, those wake-ups (two per node) competed with the workers and the
        // commands they run. The worker that finishes the last node wakes it at once.
        let mut finished = 0usize;
        while finished < covered {
            let mut any = false;
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        finished += deliver(msg, shared, held, events);
                        any = true;
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        finished = covered;
                        break;
                    }
                }
            }
            if finished >= covered {
                break;
            }
            if !any {
                events(Event::Idle);
            }
            std::thread::park_timeout(REPORT_TICK);
        }
    });
}

impl<'a> Shared<'a> {
    fn new(
        v: &'a Validated,
        inputs: &'a Map<String, Value>,
        cache: &'a Layered,
        opts: &'a Options,
        session: &'a Session,
    ) -> Shared<'a> {
        let n = v.workflow.nodes.len();
        let deps = grouped_dependencies(v);
        // Only batch nodes have items; the sets are built for those alone.
        let items_only_deps = (0..n)
            .map(|i| {
                let cn = &v.nodes[i];
                let Some(items) = cn.items.as_ref() else {
                    return HashSet::new();
                };
                let from_params: HashSet<&str> = cn
                    .params
                    .iter()
                    .flat_map(|(_, p)| p.refs())
                    .map(|r| r.root.as_str())
                    .collect();
                let edge_deps: HashSet<usize> = deps[i]
                    .iter()
                    .filter(|(_, links)| links.iter().any(|l| *l != Link::Template))
                    .map(|(j, _)| *j)
                    .collect();
                items
                    .refs()
                    .iter()
                    .filter_map(|r| v.graph.position(&r.root))
                    .filter(|j| !edge_deps.contains(j) && !from_params.contains(v.graph.id(*j)))
                    .collect()
            })
            .collect();

        let secret_refs = secret_sources::sources(v, inputs, &opts.redactor);

        let recorder = recorder::Recorder::load(
            cache.local().root().to_path_buf(),
            opts.workflow_name.clone(),
        );
        Shared {
            secret_refs,
            v,
            inputs,
            cache,
            opts,
            session,
            slots: (0..n).map(|_| Mutex::new(SlotState::default())).collect(),
            deps,
            items_only_deps,
            selected: targets::selected(v, &opts.targets),
            consumed: consumed_paths(v, &recorder, cache),
            recorder,
            warnings: Mutex::new(Vec::new()),
            any_moved: AtomicBool::new(false),
            item_spans: Mutex::new(HashMap::new()),
            held_back: Mutex::new(Vec::new()),
            budget: budget::Budget::new(opts.jobs_given.then_some(opts.jobs)),
            offload: offload::Queue::default(),
            start: Instant::now(),
        }
    }
}

/// Paths (as file records name them) that nodes of the workflow take away (each type's
/// `removes_files` params), so that a cached writer of such a file does not bring it
/// back. A literal path is known now. A templated one is known from the last build: what
/// that node removed then, as long as its params are as they were (its templates then
/// resolve to the same paths whenever the writers upstream are reused; a writer that
/// runs writes the file anyway). Not a file another node reads.
fn consumed_paths(
    v: &Validated,
    recorder: &recorder::Recorder,
    cache: &Layered,
) -> HashSet<String> {
    let mut out = HashSet::new();
    for (n, cn) in v.workflow.nodes.iter().zip(&v.nodes) {
        let mut templated = false;
        for value in cn
            .spec
            .removes_files
            .iter()
            .filter_map(|p| n.params.get(*p))
        {
            match value.as_str() {
                Some(p) if !p.contains("${") => {
                    out.insert(
                        crate::nodes::read_file::expand_path(p)
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
                _ => templated = true,
            }
        }
        if templated && params_unchanged(n, cn.spec, recorder) {
            let last = recorder
                .previous_key(&n.id)
                .and_then(|k| cache.local().peek(&k));
            if let Some(entry) = last {
                out.extend(entry.manifest.removed);
            }
        }
    }
    // A file another node reads must be there when that node runs: its writer, reused,
    // puts it back, and the remover takes it away again (a reader that found it gone
    // would fail on every build after the first).
    out.retain(|path| !read_by_a_node(v, path));
    out
}

/// Does a node of the workflow read `path` (a literal path param of its type, or its
/// declared `reads`), other than to take it away?
fn read_by_a_node(v: &Validated, path: &str) -> bool {
    v.workflow.nodes.iter().zip(&v.nodes).any(|(n, cn)| {
        let literal = cn
            .spec
            .reads_files
            .iter()
            .filter(|p| !cn.spec.removes_files.contains(p))
            .filter_map(|p| n.params.get(*p).and_then(Value::as_str))
            .filter(|p| !p.contains("${"))
            .any(|p| crate::nodes::read_file::expand_path(p).to_string_lossy() == path);
        literal || cn.reads.iter().any(|pattern| pattern.matches(path))
    })
}

/// Are node `n`'s params those its last recorded key was built from? (Built as its key
/// builds them; a sealed param cannot be compared, so it never counts as unchanged.)
fn params_unchanged(
    n: &crate::workflow::Node,
    spec: &crate::nodes::NodeSpec,
    recorder: &recorder::Recorder,
) -> bool {
    let Some(old) = recorder.previous_preimage(&n.id) else {
        return false;
    };
    let mut kb = KeyBuilder::new();
    for (name, value) in &n.params {
        if keys::add_param(&mut kb, spec, name, value) {
            return false;
        }
    }
    let params = |p: &crate::key::Preimage| -> Vec<(String, String)> {
        p.iter()
            .filter(|(k, _)| k.starts_with("param:"))
            .map(|(k, d)| (k.clone(), d.clone()))
            .collect()
    };
    params(&old) == params(&kb.preimage())
}

/// Report one message; returns how many nodes it finished (0 or 1). A finished node
/// whose result is still being stored is `held` until it is, and so is every node that
/// finishes after it meanwhile: the lines keep the order the nodes finished in (a
/// dependent after what it read).
fn deliver(
    msg: Msg,
    shared: &Shared<'_>,
    held: &mut VecDeque<usize>,
    events: &mut dyn FnMut(Event<'_>),
) -> usize {
    match msg {
        Msg::Started(i) => {
            events(Event::Started(i));
            0
        }
        Msg::Finished(i) => {
            let st = lock(&shared.slots[i]);
            if st.storing || !held.is_empty() {
                held.push_back(i);
            } else {
                report_finished(&st, events);
            }
            1
        }
        Msg::Stored => {
            // The held lines up to the first node still being stored.
            while let Some(&i) = held.front() {
                let st = lock(&shared.slots[i]);
                if st.storing {
                    break;
                }
                report_finished(&st, events);
                drop(st);
                held.pop_front();
            }
            0
        }
    }
}

/// Tell a finished node's report. The slot is done: no worker writes it again, so
/// holding its lock while the reporter prints costs nothing and saves a copy per node.
fn report_finished(st: &SlotState, events: &mut dyn FnMut(Event<'_>)) {
    if let Some(report) = st.report.as_ref() {
        events(Event::Finished(report));
    }
}

/// Each node's dependencies, each with all the ways it is linked.
fn grouped_dependencies(v: &Validated) -> Vec<Vec<(usize, Vec<Link>)>> {
    (0..v.workflow.nodes.len())
        .map(|i| {
            let mut pairs: Vec<(usize, Link)> = v.graph.dependencies(i);
            // Stable: the links to one dependency keep their order.
            pairs.sort_by_key(|(j, _)| *j);
            let mut grouped: Vec<(usize, Vec<Link>)> = Vec::with_capacity(pairs.len());
            for (j, link) in pairs {
                match grouped.last_mut() {
                    Some((k, links)) if *k == j => links.push(link),
                    _ => grouped.push((j, vec![link])),
                }
            }
            grouped
        })
        .collect()
}

enum Msg {
    Started(usize),
    Finished(usize),
    /// The offload thread stored a result (or gave up on it).
    Stored,
}

/// How long the reporting thread sleeps between looks at the workers' messages.
const REPORT_TICK: Duration = Duration::from_millis(5);

/// Shared scheduling state: how many dependencies each node still waits for.
struct Sched {
    remaining: Vec<AtomicUsize>,
    dependents: Vec<Vec<usize>>,
    tx: mpsc::Sender<Msg>,
    /// Nodes not finished yet; the worker that takes it to 0 wakes the reporter.
    unfinished: AtomicUsize,
    reporter: std::thread::Thread,
}

/// Node `i` has all its dependencies done: run or skip it on this worker, then hand
/// its newly ready dependents to the pool, but for one, which this worker runs next
/// itself. A chain so stays on one thread: spawning each next node would wake an idle
/// worker for every node (in a 10,000-node chain that cost more time in futex and
/// sched_yield calls than the nodes took).
fn on_ready<'s>(scope: &rayon::Scope<'s>, shared: &'s Shared<'s>, sched: &'s Sched, i: usize) {
    let mut next = Some(i);
    while let Some(i) = next.take() {
        run_one(shared, sched, i);
        for &d in &sched.dependents[i] {
            if sched.remaining[d].fetch_sub(1, Ordering::AcqRel) == 1 {
                if let Some(other) = next.replace(d) {
                    scope.spawn(move |s| on_ready(s, shared, sched, other));
                }
            }
        }
    }
}

/// Run or skip node `i`, and say so.
fn run_one(shared: &Shared<'_>, sched: &Sched, i: usize) {
    let skip = if crate::interrupt::is_interrupted() {
        Some("interrupted before it started".to_string())
    } else {
        gate(shared, i)
    };
    match skip {
        Some(reason) => {
            shared.skip(i, reason);
        }
        None => {
            let _token = shared.budget.take();
            let _ = sched.tx.send(Msg::Started(i));
            // A bug in one node must not hang the build: it becomes that node's failure.
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.process(i)));
            if run.is_err() {
                shared.internal_failure(i);
            }
        }
    }
    let _ = sched.tx.send(Msg::Finished(i));
    if sched.unfinished.fetch_sub(1, Ordering::AcqRel) == 1 {
        sched.reporter.unpark();
    }
}

fn fail_all(shared: &Shared<'_>, msg: &str) -> Outcome {
    for i in (0..shared.slots.len()).filter(|&i| shared.covers(i)) {
        shared.skip(i, msg.to_string());
    }
    shared.finish()
}

/// Should node `i` be skipped? Decided from its dependencies' outcomes.
fn gate(shared: &Shared<'_>, i: usize) -> Option<String> {
    for (j, links) in &shared.deps[i] {
        let st = lock(&shared.slots[*j]);
        let id = shared.v.graph.id(*j);
        let status = st.report.as_ref().map(|r| r.status);
        if status == Some(Status::Skipped) {
            return Some(format!("upstream {id} was skipped"));
        }
        let via_error_edge = links.contains(&Link::ErrorEdge);
        if via_error_edge && st.success {
            return Some(format!(
                "{id} succeeded, so its error handler is not needed"
            ));
        }
        if !via_error_edge && !st.success {
            return Some(format!("upstream {id} failed"));
        }
    }
    None
}

/// What a node's templates can see.
struct NodeScope<'a> {
    inputs: &'a Map<String, Value>,
    nodes: Roots<'a>,
}

impl Scope for NodeScope<'_> {
    fn lookup(&self, root: &str) -> Option<Cow<'_, Value>> {
        if let Some(v) = self.nodes.get(root) {
            return Some(Cow::Borrowed(v.as_ref()));
        }
        self.inputs.get(root).map(Cow::Borrowed)
    }

    fn root_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inputs.keys().cloned().collect();
        names.extend(self.nodes.ids().map(str::to_string));
        names
    }
}

/// The node values a scope holds, by node id: sorted, and searched by halves. A node's
/// scope holds its dependencies' values, most often one or two, and was a hash map: an
/// id copied and hashed (SipHash) for each, and hashed again for each template that
/// reads one, about 4% of the worker's instructions on the 10,000-node chain.
struct Roots<'a>(Vec<(&'a str, Arc<Value>)>);

impl<'a> Roots<'a> {
    /// These values, one per id (of two for one id, either: a node has one value).
    fn new(mut values: Vec<(&'a str, Arc<Value>)>) -> Roots<'a> {
        values.sort_unstable_by(|a, b| a.0.cmp(b.0));
        values.dedup_by(|a, b| a.0 == b.0);
        Roots(values)
    }

    fn get(&self, id: &str) -> Option<&Arc<Value>> {
        let at = self.0.binary_search_by(|(k, _)| (*k).cmp(id)).ok()?;
        self.0.get(at).map(|(_, v)| v)
    }

    fn ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.0.iter().map(|(k, _)| *k)
    }
}

fn unresolved_error(param: &str, u: Unresolved) -> NodeError {
    let mut e = NodeError::new(ErrorCategory::Template, format!("param '{param}': {u}"));
    e.available = u.available;
    e
}

/// Every param resolved, and the variables a shell command's text refers to.
type Resolved = (Map<String, Value>, Vec<(String, String)>);

/// Resolve every param. In permissive mode an unresolved template stays as literal text
/// and a warning is recorded. Shell text gets its values as variables
/// ([`crate::template::Template::resolve_shell`]).
fn resolve_params(
    cn: &CompiledNode,
    scope: &dyn Scope,
    mode: TemplateMode,
    warnings: &mut Vec<String>,
) -> Result<Resolved, NodeError> {
    let mut out = Map::with_capacity(cn.params.len());
    let mut vars = Vec::new();
    for (name, pt) in &cn.params {
        if let (ParamTemplate::Template(t), true) =
            (pt, cn.spec.shell_params.contains(&name.as_str()))
        {
            let text = match t.resolve_shell(scope, false) {
                Ok(text) => text,
                Err(u) if mode == TemplateMode::Permissive && !u.over_limit => {
                    warnings.push(format!(
                        "param '{name}': {u} (left as text: permissive mode)"
                    ));
                    t.resolve_shell(scope, true)
                        .map_err(|u| unresolved_error(name, u))?
                }
                Err(u) => return Err(unresolved_error(name, u)),
            };
            out.insert(name.clone(), Value::String(text.command));
            vars.extend(text.vars);
            continue;
        }
        let value = match pt.resolve(scope) {
            Ok(v) => v,
            Err(u) if mode == TemplateMode::Permissive && !u.over_limit => {
                warnings.push(format!(
                    "param '{name}': {u} (left as text: permissive mode)"
                ));
                resolve_permissive(pt, scope).map_err(|u| unresolved_error(name, u))?
            }
            Err(u) => return Err(unresolved_error(name, u)),
        };
        out.insert(name.clone(), value);
    }
    Ok((out, vars))
}

/// Permissive mode: unresolved references stay as their literal `${...}` text. The
/// expansion cap still holds.
fn resolve_permissive(pt: &ParamTemplate, scope: &dyn Scope) -> Result<Value, Unresolved> {
    Ok(match pt {
        ParamTemplate::Literal(v) => v.clone(),
        ParamTemplate::Template(t) => match t.resolve(scope) {
            Ok(v) => v,
            Err(u) if u.over_limit => return Err(u),
            Err(_) => {
                let cap = crate::template::max_template_bytes();
                let mut s = String::new();
                for part in &t.parts {
                    match part {
                        Part::Text(x) => s.push_str(x),
                        Part::Ref(r) => match crate::template::resolve_reference(r, scope) {
                            Ok(v) => s.push_str(&crate::template::render_text(&v)),
                            Err(_) => s.push_str(&r.to_string()),
                        },
                    }
                    if s.len() > cap {
                        return Err(Unresolved {
                            template: t.to_source(),
                            resolved_prefix: String::new(),
                            reason: format!(
                                "expanding it would produce more than {cap} bytes of text, the limit for one value (set PFLOW_MAX_TEMPLATE_BYTES to change it)"
                            ),
                            available: Vec::new(),
                            over_limit: true,
                        });
                    }
                }
                Value::String(s)
            }
        },
        ParamTemplate::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| resolve_permissive(i, scope))
                .collect::<Result<_, _>>()?,
        ),
        ParamTemplate::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, v)| Ok((k.clone(), resolve_permissive(v, scope)?)))
                .collect::<Result<_, Unresolved>>()?,
        ),
    })
}

/// One batch item: its values, whether it ran, and the files it wrote.
type ItemResult = Result<(Arc<Value>, bool, Effects), NodeError>;

/// What a run did to files: written (kept with the result and restored on a hit), and
/// taken away (a hit needs them still absent).
#[derive(Debug, Default)]
struct Effects {
    written: Vec<std::path::PathBuf>,
    /// Those of `written` that are symbolic links the node made (kept as links).
    links: Vec<std::path::PathBuf>,
    removed: Vec<std::path::PathBuf>,
    /// Files read, with the digest of the bytes used.
    read: Vec<(std::path::PathBuf, blake3::Hash)>,
}

impl Effects {
    fn of(out: &mut NodeOutput) -> Effects {
        Effects {
            written: std::mem::take(&mut out.files_written),
            links: Vec::new(),
            removed: std::mem::take(&mut out.files_removed),
            read: std::mem::take(&mut out.files_read),
        }
    }

    fn extend(&mut self, other: Effects) {
        self.written.extend(other.written);
        self.links.extend(other.links);
        self.removed.extend(other.removed);
        self.read.extend(other.read);
    }
}

/// The result of running a node body (or all of a batch's items).
struct RunResult {
    values: Value,
    files: Effects,
    executions: u32,
    /// For batches: items served from the cache, and files restored for them.
    items_cached: usize,
    items_restored: usize,
    /// For batches with `error_handling: continue`: items that failed. Such a result is
    /// not cached as a whole (a failure is never reused); its good items are, one by one.
    items_failed: usize,
    /// For batches: the model tokens of the items that ran (not those served from the
    /// cache, whose results are in `values` too).
    usage: Option<crate::llm::price::TokenUse>,
}

impl<'a> Shared<'a> {
    /// Does this build cover node `i` (`--target`)?
    fn covers(&self, i: usize) -> bool {
        self.selected
            .as_ref()
            .is_none_or(|s| s.get(i).copied().unwrap_or(false))
    }

    fn elapsed_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Record an internal error (a bug in pflow) as node `i`'s failure.
    fn internal_failure(&self, i: usize) {
        let node = &self.v.workflow.nodes[i];
        let t = self.elapsed_us();
        let mut st = lock(&self.slots[i]);
        st.success = false;
        st.late_reason = LateReason::None;
        st.report = Some(NodeReport {
            executions: self.session.executions(&node.id),
            key: st.key,
            reason: "internal error".into(),
            error: Some(Box::new(NodeError::new(
                ErrorCategory::Internal,
                format!(
                    "{} while running this node (please report it)",
                    crate::error::INTERNAL_ERROR
                ),
            ))),
            ..NodeReport::new(i, &node.id, &node.node_type, Status::Failed, t)
        });
    }

    fn skip(&self, i: usize, reason: impl Into<Cow<'static, str>>) -> NodeReport {
        let node = &self.v.workflow.nodes[i];
        let t = self.elapsed_us();
        let report = NodeReport {
            executions: self.session.executions(&node.id),
            reason: reason.into(),
            ..NodeReport::new(i, &node.id, &node.node_type, Status::Skipped, t)
        };
        let mut st = lock(&self.slots[i]);
        st.success = false;
        st.report = Some(report.clone());
        report
    }

    /// A node's values, loading them from the cache (or re-running the node when the
    /// cached copy is corrupt).
    fn values(&self, j: usize) -> Result<Arc<Value>, NodeError> {
        let mut st = lock(&self.slots[j]);
        if let Some(v) = &st.values {
            return Ok(v.clone());
        }
        if st.entry.is_none() && st.fast {
            // A fast hit was decided without the index; its value is read from there now,
            // without marking a use (as the hit itself did not: the record's age limit
            // sees to recency).
            if let Some(key) = st.key {
                st.entry = self.cache.local().peek(&key).map(Box::new);
            }
            // Another build may have stored a new result under the key since (a node
            // whose output varies, run again): its dependents were keyed with the old
            // one's digest, so nothing made from these values is stored under their keys.
            let stored = st.entry.as_ref().map(|e| e.output);
            if let (Some(output), Some(digest)) = (stored, st.digest) {
                if output != digest {
                    let id = self.v.graph.id(j);
                    lock(&self.warnings).push(format!(
                        "{id}: its cache entry holds another result than this workflow's last build recorded (stored since by another build); what its dependents take from the record may be older (build with --rerun {id} to bring them in line)"
                    ));
                    st.moved = true;
                    self.any_moved.store(true, Ordering::Relaxed);
                    st.digest = Some(output);
                    // Recorded as what the cache holds, so the next build keys its
                    // dependents from it.
                    if let Some(rep) = st.report.as_mut() {
                        rep.digest = Some(output);
                    }
                    if let (Some(key), Some(entry)) = (st.key, st.entry.as_deref()) {
                        self.recorder.entry(id, &key, &output, entry);
                    }
                }
            }
        }
        if st.entry.is_some() || st.fast {
            let loaded = match &st.entry {
                Some(entry) => self.cache.local().load_outputs(entry),
                None => Err(crate::cache::CacheError(
                    "its index entry is gone or damaged".into(),
                )),
            };
            match loaded {
                Ok(v) => {
                    let v = Arc::new(v);
                    st.values = Some(v.clone());
                    return Ok(v);
                }
                Err(e) => {
                    let id = self.v.graph.id(j).to_string();
                    lock(&self.warnings).push(format!(
                        "cache entry for {id} is unusable ({e}); running {id} again"
                    ));
                    let key = st.key;
                    let t0 = Instant::now();
                    let result = self.run_body(j, key);
                    let mut report = st.report.clone();
                    match result {
                        Ok(r) => {
                            let digest = output_digest(&r.values);
                            let values = Arc::new(r.values);
                            if let Some(key) = key.filter(|_| r.items_failed == 0) {
                                self.store(j, &key, &values, &digest, &r.files, t0.elapsed());
                                self.session.remember(key, digest, values.clone());
                            }
                            st.values = Some(values.clone());
                            if st.digest.is_some_and(|d| d != digest) {
                                st.moved = true;
                                self.any_moved.store(true, Ordering::Relaxed);
                            }
                            st.digest = Some(digest);
                            if let Some(rep) = report.as_mut() {
                                rep.status = Status::Ran;
                                rep.reason = "corrupt entry".into();
                                rep.executions = self.session.executions(&id);
                                rep.digest = Some(digest);
                            }
                            st.report = report;
                            return Ok(values);
                        }
                        Err(e) => {
                            return Err(NodeError::new(
                                e.category,
                                format!("upstream {id} had to run again (its cache entry was corrupt) and failed: {}", e.message),
                            ))
                        }
                    }
                }
            }
        }
        Err(NodeError::new(
            ErrorCategory::Internal,
            format!(
                "internal: the values of {} are not available",
                self.v.graph.id(j)
            ),
        ))
    }

    /// The scope for node `i`: all the node values its templates may read.
    fn scope_for(&self, i: usize) -> Result<NodeScope<'a>, NodeError> {
        let mut nodes = Vec::with_capacity(self.deps[i].len());
        for (j, _) in &self.deps[i] {
            // Error handlers see their failed source's partial outputs.
            let st_ok = {
                let st = lock(&self.slots[*j]);
                st.values.is_some() || st.entry.is_some() || st.fast
            };
            if st_ok {
                nodes.push((self.v.graph.id(*j), self.values(*j)?));
            }
        }
        Ok(NodeScope {
            inputs: self.inputs,
            nodes: Roots::new(nodes),
        })
    }

    fn store(
        &self,
        i: usize,
        key: &Key,
        values: &Value,
        digest: &blake3::Hash,
        files: &Effects,
        took: Duration,
    ) -> Option<Entry> {
        let id = self.v.graph.id(i);
        match self.cache.local().store(crate::cache::NewEntry {
            key,
            node: id,
            outputs: values,
            output_digest: digest,
            files: &files.written,
            links: &files.links,
            removed: &files.removed,
            duration_ms: took.as_millis() as u64,
            run_id: &self.opts.run_id,
        }) {
            Ok(entry) => {
                if self.v.nodes[i].spec.announces_effects {
                    crate::cache::intents::Intent::of(self.cache.local().root(), key).settle();
                }
                if self.policy(i) != CachePolicy::Never {
                    let pushed = match self.feeds_a_secret(i) {
                        true if self.cache.uploads() => crate::cache::layered::Push::HeldBack,
                        _ => self
                            .cache
                            .push(key, &entry.manifest, values, &self.opts.redactor),
                    };
                    if pushed == crate::cache::layered::Push::HeldBack {
                        lock(&self.held_back).push(id.to_string());
                    }
                }
                Some(entry)
            }
            Err(e) => {
                lock(&self.warnings).push(format!("could not cache the result of {id}: {e}"));
                None
            }
        }
    }

    /// Record node `i`'s stored result, so that the next build's fast path covers what
    /// just ran too.
    fn record(&self, i: usize, key: &Key, digest: &blake3::Hash, stored: Option<&Entry>) {
        if let Some(entry) = stored.filter(|_| self.policy(i) != CachePolicy::Never) {
            self.recorder
                .entry(&self.v.workflow.nodes[i].id, key, digest, entry);
        }
    }

    /// The offload thread: do each piece of work handed to it, until told to finish;
    /// `stored` hears of each result stored.
    /// `deciding`: how many nodes the build decides (keys, looks up, runs).
    fn do_offloaded(&self, stored: &dyn Fn(), deciding: usize) {
        // Each node the build decides looks up its record once at least: made here, the
        // records' slots are not made on the first chain's path (about 1 ms at 10,000
        // nodes), while this thread has nothing else to do yet. An edit of a few nodes
        // looks up a few, by search, and makes none.
        self.recorder.last().hash_ahead(deciding);
        // Part of a workflow (the edit path): its edited nodes miss, and explaining
        // them reads the explain records. Read them now, while the workers start,
        // rather than after the first miss (the build then waited for this thread).
        if !self.opts.known.is_empty() {
            self.recorder.load_explain();
        }
        self.offload.take_all(|job| {
            let i = job.node();
            let is_store = matches!(job, Offload::Store { .. });
            let catch = |f: &mut dyn FnMut()| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_ok()
            };
            let done = match job {
                Offload::Store {
                    i,
                    key,
                    values,
                    digest,
                    took,
                } => catch(&mut || {
                    let stored = self.store(i, &key, &values, &digest, &Effects::default(), took);
                    self.record(i, &key, &digest, stored.as_ref());
                }),
                Offload::Explain { i, key, now } => {
                    let mut why = None;
                    let done = catch(&mut || {
                        // Tests only: a bug in pflow while a miss is explained here.
                        if cfg!(debug_assertions)
                            && std::env::var_os("PFLOW_TEST_PANIC_IN_EXPLAIN")
                                .is_some_and(|id| id == self.v.graph.id(i))
                        {
                            panic!("PFLOW_TEST_PANIC_IN_EXPLAIN");
                        }
                        let parts = decode_explain(&now).unwrap_or_default();
                        why = Some(self.explain_miss(self.v.graph.id(i), &key, &parts));
                    });
                    let mut st = lock(&self.slots[i]);
                    if let (Some(why), LateReason::Awaited) = (why, &st.late_reason) {
                        st.late_reason = LateReason::Told(why.to_string());
                    }
                    // Kept whatever happened above: the next build explains against it.
                    st.explained = Some(now);
                    done
                }
            };
            if !done {
                let id = self.v.graph.id(i);
                lock(&self.warnings).push(format!(
                    "could not cache or explain the result of {id}: an internal error"
                ));
            }
            if is_store {
                lock(&self.slots[i]).storing = false;
                stored();
            }
        });
    }

    /// Process node `i` on a worker thread: key, hit or run, record.
    fn process(&self, i: usize) {
        let start_us = self.elapsed_us();
        let t0 = Instant::now();
        let node = &self.v.workflow.nodes[i];
        let mut report = NodeReport::new(i, &node.id, &node.node_type, Status::Ran, start_us);
        let outcome = self.decide_and_run(i, &mut report);
        let mut st = lock(&self.slots[i]);
        report.duration = t0.elapsed();
        report.end_us = self.elapsed_us();
        report.executions = self.session.executions(&node.id);
        report.unstreamed = self.feeds_a_secret(i);
        if node.batch.is_some() {
            report.items = lock(&self.item_spans).remove(&i).unwrap_or_default();
        }
        match outcome {
            Ok((digest, values, entry)) => {
                self.learn_from_result(i, &values, report.key, &entry);
                if report.status == Status::Ran {
                    // A batch's usage counts only the items that ran (set by the run).
                    if self.v.workflow.nodes[i].batch.is_none() {
                        report.usage = values
                            .as_deref()
                            .and_then(crate::llm::price::TokenUse::of_outputs)
                            .map(Box::new);
                    }
                    report.log = values
                        .as_deref()
                        .and_then(Value::as_object)
                        .and_then(|o| {
                            crate::cache::logs::NodeLog::of(o, |t| self.opts.redactor.scrub(t))
                        })
                        .map(Box::new);
                }
                st.success = true;
                st.digest = Some(digest);
                st.values = values;
                st.entry = entry.map(Box::new);
                report.digest = Some(digest);
            }
            Err(e) => {
                // What a failed node printed may feed an error handler's secret param.
                if !e.outputs.is_empty() && self.feeds_a_secret(i) {
                    self.learn_fed_secrets(i, &Arc::new(Value::Object(e.outputs.clone())));
                }
                st.success = false;
                report.status = Status::Failed;
                report.handled = self
                    .v
                    .graph
                    .dependents(i)
                    .iter()
                    .any(|(_, l)| *l == Link::ErrorEdge);
                report.log =
                    crate::cache::logs::NodeLog::of(&e.outputs, |t| self.opts.redactor.scrub(t))
                        .map(Box::new);
                if !e.outputs.is_empty() {
                    let mut partial = e.outputs.clone();
                    partial.insert("error".into(), Value::String(e.message.clone()));
                    let v = Value::Object(partial);
                    st.digest = Some(output_digest(&v));
                    st.values = Some(Arc::new(v));
                }
                // A command may print a secret it was given (or found in its
                // environment): what is reported never shows it.
                let mut e = e;
                e.message = self.opts.redactor.scrub(&e.message);
                if report.reason.is_empty() {
                    report.reason = e.message.clone().into();
                }
                report.reason = self.opts.redactor.scrub(&report.reason).into();
                report.error = Some(Box::new(e));
            }
        }
        st.key = report.key;
        st.report = Some(report);
    }

    #[allow(clippy::type_complexity)]
    fn decide_and_run(
        &self,
        i: usize,
        report: &mut NodeReport,
    ) -> Result<(blake3::Hash, Option<Arc<Value>>, Option<Entry>), NodeError> {
        let node = &self.v.workflow.nodes[i];
        self.learn_secrets(i);
        if let Some(Some(k)) = self.opts.known.get(i) {
            report.key = Some(k.key);
            report.status = Status::Cached;
            report.reason = "inputs unchanged".into();
            report.source = Some(HitSource::FastPath);
            lock(&self.slots[i]).key = Some(k.key);
            return Ok((k.digest, Some(k.values.clone()), None));
        }
        let mut kb = self.base_key(i, false);
        let mut scope: Option<NodeScope<'a>> = None;
        let mut keyed = keys::KeyedFiles::new();
        if !self.v.nodes[i].spec.reads_files.is_empty() || !self.v.nodes[i].reads.is_empty() {
            // A path built from upstream values (or a batch's items) needs those values;
            // most are literals.
            let needs_scope = node.batch.is_some()
                || self.v.nodes[i].spec.reads_files.iter().any(|p| {
                    self.v.nodes[i]
                        .params
                        .iter()
                        .any(|(n, pt)| n == p && !pt.is_literal())
                });
            if needs_scope {
                scope = Some(self.scope_for(i)?);
            }
            let paths = self.key_read_paths(i, scope.as_ref())?;
            keyed = self.add_file_components(&mut kb, &paths);
        }
        let key = kb.finish();
        report.key = Some(key);
        lock(&self.slots[i]).key = Some(key);

        let touches = |p: &str| self.touches(i, p);
        let ask = Ask {
            key,
            policy: self.policy(i),
            forced: self.forced(i),
            recorded_as: Some(&node.id),
            touches: &touches,
        };
        let reason = match decide(&self.sources(Mode::Build), &ask) {
            Decision::Reuse(hit) => {
                self.note_kept(&node.id, &hit.kept);
                report.status = if hit.restored.is_empty() {
                    Status::Cached
                } else {
                    Status::Restored
                };
                report.reason = hit.reason();
                report.source = Some(hit.source);
                match hit.source {
                    // Same key, same preimage: the explain record already holds it.
                    HitSource::FastPath => lock(&self.slots[i]).fast = true,
                    HitSource::Memo => {}
                    HitSource::Local | HitSource::Remote => {
                        self.recorder.changed();
                        lock(&self.slots[i]).explained = Some(encode_explain(&kb.short()));
                        if let Some(entry) = &hit.entry {
                            self.recorder.entry(&node.id, &key, &hit.digest, entry);
                        }
                    }
                }
                return Ok((hit.digest, hit.values, hit.entry.map(|e| *e)));
            }
            Decision::Run(reason) => reason,
        };
        self.recorder.changed();
        let short = kb.short();
        let explained = encode_explain(&short);
        // The explain record goes into the slot here, or, handed off with the miss, on
        // the offload thread once it is read there. A batch's reason is built on its
        // miss's, so a reported one is told at once.
        let when = match self.opts.reasons {
            MissReasons::Reported if node.batch.is_some() => MissReasons::Live,
            when => when,
        };
        let (reason, explained) = match reason {
            decide::RunReason::NoEntry if when == MissReasons::Live => {
                (self.explain_miss(&node.id, &key, &short), Some(explained))
            }
            decide::RunReason::NoEntry if when == MissReasons::Reported => {
                // Awaited before the offload thread can tell it.
                lock(&self.slots[i]).late_reason = LateReason::Awaited;
                let job = Offload::Explain {
                    i,
                    key,
                    now: explained,
                };
                match self.offload.hand_off(job) {
                    Ok(()) => (decide::RunReason::NoEntry, None),
                    Err(job) => {
                        lock(&self.slots[i]).late_reason = LateReason::None;
                        // `hand_off` gives back the job it was given.
                        let explained = match job {
                            Offload::Explain { now, .. } => Some(now),
                            Offload::Store { .. } => None,
                        };
                        (self.explain_miss(&node.id, &key, &short), explained)
                    }
                }
            }
            // Unread: a miss stays "no cache entry".
            other => (other, Some(explained)),
        };
        if let Some(explained) = explained {
            lock(&self.slots[i]).explained = Some(explained);
        }
        report.reason = reason.to_string().into();
        report.status = Status::Ran;

        // Tests only: a bug in pflow while the node runs, after its miss was handed off.
        if cfg!(debug_assertions)
            && std::env::var_os("PFLOW_TEST_PANIC_IN_NODE").is_some_and(|id| id == *node.id)
        {
            panic!("PFLOW_TEST_PANIC_IN_NODE");
        }
        let mut result = self.run_body(i, Some(key))?;
        report.usage = result.usage.take().map(Box::new);
        if result.executions == 0 && result.items_cached > 0 {
            report.status = if result.items_restored > 0 {
                Status::Restored
            } else {
                Status::Cached
            };
            report.reason = format!("all {} items cached", result.items_cached).into();
        } else if node.batch.is_some() && result.items_cached > 0 {
            report.reason = format!(
                "{} ({} item(s) ran, {} cached)",
                report.reason, result.executions, result.items_cached
            )
            .into();
        }
        let digest = output_digest(&result.values);
        let values = Arc::new(result.values);
        let unstable = keys::read_other_bytes(&keyed, &result.files.read, &result.files.written);
        // An upstream node whose values turned out not to be the ones its digest (which
        // this key was made from) names: this result is not the one the key names.
        let moved = self
            .any_moved
            .load(Ordering::Relaxed)
            .then(|| {
                self.deps[i]
                    .iter()
                    .find(|(j, _)| lock(&self.slots[*j]).moved)
                    .map(|(j, _)| self.v.graph.id(*j))
            })
            .flatten();
        if result.items_failed > 0 {
            report.reason =
                format!("{} ({} item(s) failed)", report.reason, result.items_failed).into();
        } else if let Some(up) = moved {
            lock(&self.warnings).push(format!(
                "{}: upstream {up} gave another result than its key was made from; its result is not cached",
                node.id
            ));
        } else if let Some(path) = unstable {
            // Stored under this key, the result would answer for content it never saw.
            lock(&self.warnings).push(format!(
                "{}: '{}' changed while it was read; its result is not cached",
                node.id,
                path.display()
            ));
        } else {
            let took = report_duration(report, self);
            let files = &result.files;
            // Uploads stay with the workers: one thread would send them one at a time.
            let touches_nothing = files.written.is_empty()
                && files.removed.is_empty()
                && !self.v.nodes[i].spec.announces_effects
                && !self.cache.uploads();
            // Marked before the hand-off, which the offload thread may finish at once.
            let handed_off = touches_nothing && {
                lock(&self.slots[i]).storing = true;
                let work = Offload::Store {
                    i,
                    key,
                    values: values.clone(),
                    digest,
                    took,
                };
                let taken = self.offload.hand_off(work).is_ok();
                if !taken {
                    lock(&self.slots[i]).storing = false;
                }
                taken
            };
            if !handed_off {
                let stored = self.store(i, &key, &values, &digest, files, took);
                self.record(i, &key, &digest, stored.as_ref());
            }
            self.session.remember(key, digest, values.clone());
        }
        Ok((digest, Some(values), None))
    }

    /// Node `i`'s cache policy: as written, except that a volatile type (a read pflow
    /// cannot see into) runs on every build unless the node gives a maximum age.
    fn policy(&self, i: usize) -> CachePolicy {
        match self.v.workflow.nodes[i].cache {
            CachePolicy::Always if self.v.nodes[i].spec.volatile => CachePolicy::Never,
            written => written,
        }
    }

    /// Why node `i` may not reuse a cached result in this build, if it may not.
    fn forced(&self, i: usize) -> Option<Forced> {
        let node = &self.v.workflow.nodes[i];
        if self.opts.force {
            Some(Forced::All)
        } else if self.opts.rerun.contains(&node.id) {
            Some(Forced::Node)
        } else if node.cache == CachePolicy::Never {
            Some(Forced::NoCache)
        } else if self.policy(i) == CachePolicy::Never {
            Some(Forced::Volatile)
        } else {
            None
        }
    }

    /// May node `i` write or take away `path` (as an entry names it)? Only what the
    /// workflow says it does: its declared `writes`, and the literal paths of its type's
    /// file params. A path a template gives is known only when the node runs.
    fn touches(&self, i: usize, path: &str) -> bool {
        let (node, cn) = (&self.v.workflow.nodes[i], &self.v.nodes[i]);
        let path = crate::file_pattern::normalize(path);
        if cn.writes.iter().any(|w| w.matches(&path)) {
            return true;
        }
        cn.spec
            .writes_files
            .iter()
            .chain(cn.spec.removes_files)
            .filter_map(|p| node.params.get(*p)?.as_str())
            .filter(|p| !p.contains("${"))
            .any(|p| {
                let given = crate::nodes::read_file::expand_path(p);
                crate::file_pattern::normalize(&given.to_string_lossy()) == path
            })
    }

    /// Why node `id` misses with `key`, told against the last build's record of it.
    fn explain_miss(
        &self,
        id: &str,
        key: &Key,
        now: &[crate::key::Short<'_>],
    ) -> decide::RunReason {
        let moved = || self.recorder.previous_key(id).is_some_and(|k| k != *key);
        let old = self.recorder.previous_explain(id).and_then(decode_explain);
        decide::explain_miss(old.as_deref(), now, moved)
    }

    /// Where decisions look, for a build or a probe.
    fn sources(&self, mode: Mode) -> Sources<'_> {
        Sources {
            memo: &self.session.memo,
            records: self.recorder.last(),
            cache: self.cache,
            consumed: &self.consumed,
            mode,
            write_roots: &self.opts.write_roots,
        }
    }

    /// Run node `i` (all its items for a batch). Counts executions in the session.
    fn run_body(&self, i: usize, key: Option<Key>) -> Result<RunResult, NodeError> {
        let cn = &self.v.nodes[i];
        let node = &self.v.workflow.nodes[i];
        let scope = self.scope_for(i)?;
        let links_before = self.links_before(i);
        if let Some(batch) = &node.batch {
            let mut result = self.run_batch(i, batch, scope)?;
            // Each item's own files are in its outputs; the declared ones go at the top.
            let mut declared = Vec::new();
            let links = self.declared_writes_and_links(i, &mut declared, &links_before)?;
            if let Value::Object(values) = &mut result.values {
                written::add_file_digests(values, &declared, &links)?;
            }
            for f in declared {
                if !result.files.written.contains(&f) {
                    result.files.written.push(f);
                }
            }
            result.files.links.extend(links);
            return Ok(result);
        }
        let mut warnings = Vec::new();
        let (params, vars) =
            resolve_params(cn, &scope, self.v.workflow.template_mode, &mut warnings)?;
        let live = self.live_for(i);
        self.note(&node.id, warnings);
        let own_files = self.own_files(i);
        let intent = key
            .filter(|_| cn.spec.announces_effects)
            .map(|k| crate::cache::intents::Intent::of(self.cache.local().root(), &k));
        let ctx = RunContext {
            node_id: &node.id,
            node_type: &node.node_type,
            interrupted: &crate::interrupt::INTERRUPTED,
            own_files: &own_files,
            env: self.child_env(i, &vars),
            write_roots: &self.opts.write_roots,
            intent: intent.as_ref(),
            live: live.as_deref(),
        };
        self.session.count(&node.id, 1);
        let mut out: NodeOutput = (cn.spec.run)(&params, &ctx)?;
        self.note_kept(&node.id, &out.kept);
        let links = self.declared_writes_and_links(i, &mut out.files_written, &links_before)?;
        written::add_file_digests(&mut out.outputs, &out.files_written, &links)?;
        let mut files = Effects::of(&mut out);
        files.links = links;
        Ok(RunResult {
            values: Value::Object(out.outputs),
            files,
            executions: 1,
            items_cached: 0,
            usage: None,
            items_restored: 0,
            items_failed: 0,
        })
    }

    /// What node `i` wrote in its last recorded build, as (path, BLAKE3 hex): files it
    /// may overwrite unless someone changed them since. Only a type that writes files
    /// asks: reading the old entry is an index read per node, as much as the rest of a
    /// small node's run.
    pub(super) fn own_files(&self, i: usize) -> Vec<(String, String)> {
        let cn = &self.v.nodes[i];
        let Some(entry) = Some(())
            .filter(|_| !cn.spec.writes_files.is_empty())
            .and_then(|_| self.recorder.previous_key(&self.v.workflow.nodes[i].id))
            .and_then(|k| self.cache.local().peek(&k))
        else {
            return Vec::new();
        };
        if self.v.workflow.nodes[i].batch.is_none() {
            let files = entry.manifest.files.into_iter();
            return files.map(|f| (f.path, f.digest)).collect();
        }
        // A batch's entry keeps the files of the items that ran in that build; each
        // item's outputs name the digests of all it wrote, hits included. A path two
        // items wrote with other content is no one item's: the next would find the
        // first's and take it for an edit.
        let Ok(value) = self.cache.local().load_outputs(&entry) else {
            return Vec::new();
        };
        let mut seen: std::collections::BTreeMap<String, Option<String>> = Default::default();
        let from_items = value
            .get("results")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|r| r.get(written::FILE_DIGESTS).and_then(Value::as_object))
            .flatten()
            // Named portably there (`~/…`), as the node used them here.
            .filter_map(|(p, d)| {
                let path = crate::nodes::read_file::expand_path(p);
                Some((path.to_string_lossy().into_owned(), d.as_str()?.to_string()))
            });
        let from_entry = entry.manifest.files.into_iter().map(|f| (f.path, f.digest));
        for (path, digest) in from_items.chain(from_entry) {
            seen.entry(path)
                .and_modify(|d| {
                    if d.as_deref() != Some(digest.as_str()) {
                        *d = None;
                    }
                })
                .or_insert(Some(digest));
        }
        seen.into_iter()
            .filter_map(|(p, d)| Some((p, d?)))
            .collect()
    }

    /// This node's share of the `-v` sink.
    fn live_for(&self, i: usize) -> Option<Box<crate::nodes::Live>> {
        if self.feeds_a_secret(i) {
            return None;
        }
        let sink = self.opts.live.0.clone()?;
        let id = self.v.graph.id(i).to_string();
        Some(Box::new(move |bytes: &[u8], is_out: bool| {
            sink(&id, bytes, is_out)
        }))
    }

    /// What node `i`'s child processes may see.
    fn child_env<'v>(
        &self,
        i: usize,
        values: &'v [(String, String)],
    ) -> crate::environment::ChildEnv<'v>
    where
        'a: 'v,
    {
        crate::environment::ChildEnv {
            declared: &self.v.workflow.nodes[i].reads_env,
            strict: self.strict_env(),
            values,
        }
    }

    /// Strict mode, by flag, environment or the workflow's own setting.
    fn strict_env(&self) -> bool {
        self.opts.strict_env || self.v.workflow.strict_env
    }

    /// Tell where hand edits of restored files were kept.
    fn note_kept(&self, id: &str, kept: &[(String, std::path::PathBuf)]) {
        self.note(
            id,
            kept.iter()
                .map(|(path, aside)| {
                    format!(
                        "{path} was changed by hand; your version is kept as {} and the built file is in its place",
                        aside.display()
                    )
                })
                .collect(),
        );
    }

    fn note(&self, id: &str, warnings: Vec<String>) {
        if !warnings.is_empty() {
            let mut w = lock(&self.warnings);
            w.extend(warnings.into_iter().map(|m| format!("{id}: {m}")));
        }
    }

    /// Collect the reports, resolve the declared outputs, save the explain records.
    fn finish(&self) -> Outcome {
        let v = self.v;
        let interrupted = crate::interrupt::is_interrupted();
        let mut success = !interrupted;
        for (i, slot) in self.slots.iter().enumerate() {
            if !self.covers(i) {
                continue;
            }
            // `skip` takes the slot's lock itself, so this one is released first.
            let reached = match &lock(slot).report {
                Some(r) => {
                    success &= r.status != Status::Failed || r.handled;
                    true
                }
                None => false,
            };
            if !reached {
                self.skip(i, "not reached");
            }
        }

        let mut outputs = Map::new();
        let mut output_errors = Vec::new();
        let mut warnings = std::mem::take(&mut *lock(&self.warnings));
        warnings.extend(self.cache.take_warnings());
        let mut held_back = std::mem::take(&mut *lock(&self.held_back));
        if !held_back.is_empty() {
            held_back.sort();
            held_back.dedup();
            warnings.push(format!(
                "not uploaded to the remote cache, because they hold a secret value: {}",
                held_back.join(", ")
            ));
        }
        for w in &mut warnings {
            *w = self.opts.redactor.scrub(w);
        }
        if success {
            for (name, source) in &v.outputs {
                match source {
                    // An output of nodes this build does not cover is left out.
                    Some(t)
                        if t.refs().any(|r| {
                            v.graph.position(&r.root).is_some_and(|j| !self.covers(j))
                        }) => {}
                    Some(t) => match self.resolve_output(t) {
                        Ok(val) => {
                            outputs.insert(name.clone(), val);
                        }
                        Err(mut e) => {
                            e.message = self
                                .opts
                                .redactor
                                .scrub(&format!("output '{name}': {}", e.message));
                            output_errors.push((name.clone(), e));
                        }
                    },
                    None => {
                        // No source: the field of that name from the last node producing it.
                        let found =
                            v.order
                                .iter()
                                .rev()
                                .filter(|&&i| self.covers(i))
                                .find_map(|&i| {
                                    v.nodes[i].spec.output(name)?;
                                    let ok = lock(&self.slots[i]).success;
                                    if !ok {
                                        return None;
                                    }
                                    self.values(i).ok()?.get(name).cloned()
                                });
                        match found {
                            Some(val) => {
                                outputs.insert(name.clone(), val);
                            }
                            // Without a source an output is a description (as in
                            // pflow's own examples): nothing to resolve, nothing to fail.
                            None => warnings.push(format!(
                                "output '{name}' has no source and no node produced it"
                            )),
                        }
                    }
                }
            }
        }
        // Loading values for the outputs may have warned (an unusable entry run again).
        let late: Vec<String> = std::mem::take(&mut *lock(&self.warnings));
        warnings.extend(late.iter().map(|w| self.opts.redactor.scrub(w)));
        // Taken only now: loading values above (after a corrupt entry) may update reports.
        // Sized first: grown by doubling, the 2.4 MB of 10,000 reports were copied and
        // faulted in again at each step (about 5% of a cold build of 10,000 nodes).
        let mut nodes: Vec<NodeReport> = Vec::with_capacity(self.slots.len());
        for (i, slot) in self.slots.iter().enumerate() {
            if self.covers(i) {
                let (taken, late) = {
                    let mut st = lock(slot);
                    (st.report.take(), std::mem::take(&mut st.late_reason))
                };
                let mut report = taken.unwrap_or_else(|| self.skip(i, "not reached"));
                if let LateReason::Told(why) = late {
                    // A failed node's reason is scrubbed, as when it is told at once.
                    report.reason = match report.status {
                        Status::Failed => self.opts.redactor.scrub(&why).into(),
                        _ => why.into(),
                    };
                }
                nodes.push(report);
            }
        }

        let mut upstream = Vec::new();
        for r in nodes
            .iter()
            .filter(|r| r.status == Status::Failed && !r.handled)
        {
            if r.index >= v.graph.len() {
                continue;
            }
            for (j, _) in v.graph.dependencies(r.index) {
                if lock(&self.slots[j]).success {
                    if let Ok(values) = self.values(j) {
                        upstream.push((r.id.clone(), v.graph.id(j).to_string(), values));
                    }
                }
            }
        }

        // Only what was decided anew is encoded; the rest is copied byte for byte.
        // Collected, not inserted one by one: the map is built at once from the sorted
        // rows (10,000 inserts were most of saving the records).
        let decided = || {
            self.slots
                .iter()
                .enumerate()
                .filter_map(|(i, slot)| {
                    let record = lock(slot).explained.take()?;
                    Some((self.v.graph.id(i).to_string(), record))
                })
                .collect::<BTreeMap<_, _>>()
        };
        if self.opts.known.is_empty() {
            self.recorder.save(decided, self.slots.len(), |id: &[u8]| {
                std::str::from_utf8(id).is_ok_and(|id| self.v.graph.position(id).is_some())
            });
        } else {
            // Part of a workflow: the records of the nodes outside it stay.
            self.recorder.save(decided, usize::MAX / 4, |_| true);
        }
        Outcome {
            nodes,
            outputs,
            success: success && output_errors.is_empty(),
            interrupted,
            duration: self.start.elapsed(),
            warnings,
            output_errors,
            upstream,
        }
    }

    fn resolve_output(&self, t: &Template) -> Result<Value, NodeError> {
        let mut nodes: Vec<(&'a str, Arc<Value>)> = Vec::new();
        for r in t.refs() {
            if let Some(j) = self.v.graph.position(&r.root) {
                if !nodes.iter().any(|(id, _)| *id == r.root) {
                    let ok = lock(&self.slots[j]).success;
                    if !ok {
                        return Err(NodeError::new(
                            ErrorCategory::Template,
                            format!("node {} did not succeed", r.root),
                        ));
                    }
                    nodes.push((self.v.graph.id(j), self.values(j)?));
                }
            }
        }
        let scope = NodeScope {
            inputs: self.inputs,
            nodes: Roots::new(nodes),
        };
        t.resolve(&scope).map_err(|u| {
            let mut e = NodeError::new(ErrorCategory::Template, u.to_string());
            e.available = u.available;
            e
        })
    }
}

fn report_duration(report: &NodeReport, shared: &Shared<'_>) -> Duration {
    Duration::from_micros(shared.elapsed_us().saturating_sub(report.start_us))
}
