//! Batch nodes: each item resolved and run on its own (in parallel up to
//! `max_concurrent` unless `"parallel": false`, workers counted against `--jobs`), each
//! cached under its own key, so editing one item re-runs one item. Results keep the
//! items' order whatever order they finish in.

use super::*;

impl<'a> Shared<'a> {
    pub(super) fn run_batch(
        &self,
        i: usize,
        batch: &BatchConfig,
        scope: NodeScope<'a>,
    ) -> Result<RunResult, NodeError> {
        let cn = &self.v.nodes[i];
        let items = batch_items(cn, &scope)?;
        let mut item_base = self.base_key(i, true);
        // Every item reads the node's declared files.
        if !cn.reads.is_empty() {
            let paths = self.declared_read_paths(i)?;
            self.add_file_components(&mut item_base, &paths);
        }
        let count = items.len();
        let mut item_files: Vec<super::keys::KeyedFiles> = vec![Vec::new(); items.len()];
        let item_keys: Vec<Key> = items
            .iter()
            .enumerate()
            .zip(item_files.iter_mut())
            .map(|((idx, item), keyed)| {
                let mut kb = item_base.clone();
                kb.add_value("item", item);
                if cn.uses_index {
                    kb.add_text("index", &idx.to_string());
                }
                // The item's own files: an edit to one of them re-runs this item alone.
                if !cn.spec.reads_files.is_empty() {
                    let paths = self.item_read_paths(i, &scope, batch, item, idx);
                    *keyed = self.add_file_components(&mut kb, &paths);
                }
                kb.finish()
            })
            .collect();
        // Equal items have equal keys: each distinct key runs once, even in parallel, and
        // its duplicates take its result.
        let mut first_with_key: crate::key::KeyMap<usize> = Default::default();
        let first_of: Vec<usize> = item_keys
            .iter()
            .enumerate()
            .map(|(idx, k)| *first_with_key.entry(*k).or_insert(idx))
            .collect();
        let unique: Vec<usize> = (0..count).filter(|&idx| first_of[idx] == idx).collect();
        // Explicit `"parallel": false` keeps items one at a time, in order (they may rely
        // on each other's side effects); otherwise up to `max_concurrent` at once.
        let limit = if batch.parallel {
            batch.max_concurrent.min(unique.len()).max(1)
        } else {
            1
        };
        let own_files = self.own_files(i);
        let run = ItemRun {
            shared: self,
            i,
            own_files: &own_files,
            batch,
            scope: &scope,
            items: &items,
            item_keys: &item_keys,
            item_files: &item_files,
            unique: &unique,
            results: (0..count).map(|_| Mutex::new(None)).collect(),
            stop: AtomicBool::new(false),
            next: AtomicUsize::new(0),
            cached: AtomicUsize::new(0),
            restored: AtomicUsize::new(0),
            ran: AtomicUsize::new(0),
            spans: Mutex::new(Vec::with_capacity(count)),
            workers: AtomicUsize::new(1),
            limit,
            slow: AtomicBool::new(false),
            small_pages: AtomicBool::new(false),
        };
        match cn.spec.start.filter(|_| limit > 1) {
            // Requests wait on a server, not on this machine: this thread keeps them all
            // in flight on the HTTP runtime (see `drive`).
            Some(start) => run.drive(start),
            // This thread is the first worker; `grow` adds the others while items run.
            None => std::thread::scope(|s| run.work(s)),
        }
        let ItemRun {
            results,
            cached,
            restored,
            ran,
            spans,
            ..
        } = run;

        for idx in 0..count {
            let first = first_of[idx];
            if first != idx {
                let copy = lock(&results[first])
                    .as_ref()
                    .map(|r| r.as_ref().map(|(v, _, _)| v.clone()).map_err(|e| e.clone()));
                if let Some(Ok(_)) = &copy {
                    cached.fetch_add(1, Ordering::SeqCst);
                }
                // A duplicate takes its first's result when that one ends.
                let mut spans = lock(&spans);
                let first_end = spans.iter().find(|s| s.index == first).map(|s| s.end_us);
                if let (Some(end), Some(r)) = (first_end, &copy) {
                    let status = if r.is_ok() {
                        Status::Cached
                    } else {
                        Status::Failed
                    };
                    spans.push(ItemSpan {
                        index: idx,
                        key: item_keys[idx],
                        status,
                        start_us: end,
                        end_us: end,
                    });
                }
                *lock(&results[idx]) = copy.map(|r| r.map(|v| (v, false, Effects::default())));
            }
        }

        let mut spans = spans.into_inner().unwrap_or_else(|p| p.into_inner());
        spans.sort_by_key(|s| s.index);
        lock(&self.item_spans).insert(i, spans);

        let mut result_values = Vec::with_capacity(count);
        let mut errors = Vec::new();
        let mut files = Effects::default();
        let mut first_error: Option<(usize, NodeError)> = None;
        let mut usage: Option<crate::llm::price::TokenUse> = None;
        for (idx, slot) in results.into_iter().enumerate() {
            match slot.into_inner().unwrap_or_else(|p| p.into_inner()) {
                Some(Ok((v, ran, f))) => {
                    if let Some(u) = crate::llm::price::TokenUse::of_outputs(&v).filter(|_| ran) {
                        usage.get_or_insert_with(Default::default).add(&u);
                    }
                    files.extend(f);
                    result_values.push((*v).clone());
                }
                Some(Err(e)) => {
                    let mut entry = Map::new();
                    entry.insert("index".into(), Value::from(idx));
                    entry.insert("item".into(), items[idx].clone());
                    entry.insert("error".into(), Value::String(e.message.clone()));
                    errors.push(Value::Object(entry));
                    let mut failed = e.outputs.clone();
                    failed.insert("item".into(), items[idx].clone());
                    failed.insert("error".into(), Value::String(e.message.clone()));
                    result_values.push(Value::Object(failed));
                    if first_error.is_none() {
                        first_error = Some((idx, e));
                    }
                }
                None => result_values.push(Value::Null),
            }
        }
        let error_count = errors.len();
        let mut agg = Map::new();
        agg.insert("results".into(), Value::Array(result_values));
        agg.insert("count".into(), Value::from(count));
        agg.insert(
            "success_count".into(),
            Value::from(count - error_count - agg_missing(&agg)),
        );
        agg.insert("error_count".into(), Value::from(error_count));
        agg.insert(
            "errors".into(),
            if errors.is_empty() {
                Value::Null
            } else {
                Value::Array(errors)
            },
        );
        if let Some((idx, e)) = first_error {
            if batch.error_handling == ErrorHandling::FailFast || crate::interrupt::is_interrupted()
            {
                let mut err = NodeError::new(
                    e.category,
                    format!("batch item [{idx}] failed: {}", e.message),
                );
                err.status = e.status;
                err.available = e.available;
                let mut outputs = agg.clone();
                if let Some(stderr) = e.outputs.get("stderr") {
                    outputs.insert("stderr".into(), stderr.clone());
                }
                if let Some(code) = e.outputs.get("exit_code") {
                    outputs.insert("exit_code".into(), code.clone());
                }
                return Err(err.with_outputs(outputs));
            }
        }
        if crate::interrupt::is_interrupted() {
            return Err(NodeError::new(ErrorCategory::Interrupted, "interrupted"));
        }
        Ok(RunResult {
            values: Value::Object(agg),
            files,
            executions: ran.load(Ordering::SeqCst) as u32,
            items_cached: cached.load(Ordering::SeqCst),
            items_restored: restored.load(Ordering::SeqCst),
            items_failed: error_count,
            usage,
        })
    }
}

/// What a batch's item workers share while they run.
struct ItemRun<'r, 'a> {
    shared: &'r Shared<'a>,
    i: usize,
    batch: &'r BatchConfig,
    scope: &'r NodeScope<'a>,
    items: &'r [Value],
    item_keys: &'r [Key],
    item_files: &'r [super::keys::KeyedFiles],
    /// What the batch wrote last time (see [`Shared::own_files`]).
    own_files: &'r [(String, String)],
    /// The items that run (the first of each key), in order.
    unique: &'r [usize],
    results: Vec<Mutex<Option<ItemResult>>>,
    stop: AtomicBool,
    /// The next position in `unique` to take.
    next: AtomicUsize,
    cached: AtomicUsize,
    restored: AtomicUsize,
    ran: AtomicUsize,
    spans: Mutex<Vec<ItemSpan>>,
    /// Workers running, the batch node's own thread included.
    workers: AtomicUsize,
    limit: usize,
    /// An item had to run or come from the remote: from then on more workers help. A
    /// batch whose items are all local hits stays on one thread (no threads started
    /// to find that nothing changed).
    slow: AtomicBool,
    /// This batch has turned huge pages off.
    small_pages: AtomicBool,
}

impl<'r, 'a> ItemRun<'r, 'a> {
    /// Take items until none are left (or the batch stops).
    fn work<'s>(&'s self, s: &'s std::thread::Scope<'s, '_>) {
        loop {
            if self.stop.load(Ordering::SeqCst) || crate::interrupt::is_interrupted() {
                break;
            }
            if self.slow.load(Ordering::Relaxed) {
                self.grow(s);
            }
            let Some(&idx) = self.unique.get(self.next.fetch_add(1, Ordering::SeqCst)) else {
                break;
            };
            self.item(idx, s);
        }
    }

    /// Start more workers while the batch may have them, items are left for them and
    /// the job budget has tokens free now. Each holds its token until it runs out of
    /// items; none waits for one (see `budget.rs`).
    fn grow<'s>(&'s self, s: &'s std::thread::Scope<'s, '_>) {
        let mut added = 0;
        loop {
            let n = self.workers.load(Ordering::SeqCst);
            let left = self
                .unique
                .len()
                .saturating_sub(self.next.load(Ordering::SeqCst));
            if n >= self.limit || added >= left {
                return;
            }
            let Some(token) = self.shared.budget.try_take() else {
                return;
            };
            if self
                .workers
                .compare_exchange(n, n + 1, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
            {
                continue;
            }
            if n + 1 > MANY_WORKERS {
                self.small_pages_from_now();
            }
            let spawned = std::thread::Builder::new().spawn_scoped(s, move || {
                let _token = token;
                self.work(s);
                self.workers.fetch_sub(1, Ordering::SeqCst);
            });
            // No thread to be had: the workers there are carry on.
            if spawned.is_err() {
                self.workers.fetch_sub(1, Ordering::SeqCst);
                return;
            }
            added += 1;
        }
    }

    /// Each worker thread gets its own allocator heap, and with transparent huge pages
    /// every heap pins whole 2 MiB pages for a few KB of live data ([`crate::memory`]): a
    /// batch that starts that many turns them off for the rest of the build. Once per
    /// batch, not per process: each build of `--watch` goes the normal way, which turns
    /// them on again.
    fn small_pages_from_now(&self) {
        if !self.small_pages.swap(true, Ordering::Relaxed) {
            crate::memory::huge_pages(false);
        }
    }

    /// Reuse or run item `idx`, keeping its result and span.
    fn item<'s>(&'s self, idx: usize, s: &'s std::thread::Scope<'s, '_>) {
        let sh = self.shared;
        let i = self.i;
        let cn = &sh.v.nodes[i];
        let node = &sh.v.workflow.nodes[i];
        let item_key = self.item_keys[idx];
        let started = sh.elapsed_us();
        if let Some((result, status)) = self.reuse(idx) {
            return self.record(idx, result, status, started);
        }
        // Others take the next items while this one runs.
        self.slow.store(true, Ordering::Relaxed);
        self.grow(s);
        let resolved = self.resolve(idx);
        let live = sh.live_for(i);
        let vars = resolved.as_ref().map(|(_, v)| v.as_slice()).unwrap_or(&[]);
        let intent = cn
            .spec
            .announces_effects
            .then(|| crate::cache::intents::Intent::of(sh.cache.local().root(), &item_key));
        let ctx = RunContext {
            node_id: &node.id,
            node_type: &node.node_type,
            interrupted: &crate::interrupt::INTERRUPTED,
            own_files: self.own_files,
            env: sh.child_env(i, vars),
            write_roots: &sh.opts.write_roots,
            intent: intent.as_ref(),
            live: live.as_deref(),
        };
        let mut attempt = 0;
        let result = loop {
            attempt += 1;
            let r = resolved.clone().and_then(|(p, _)| {
                self.count_run();
                (cn.spec.run)(&p, &ctx)
            });
            match r {
                Ok(out) => {
                    sh.note_kept(&node.id, &out.kept);
                    break self.ran_ok(idx, out, started);
                }
                Err(e) if self.retries(attempt, &e) => continue,
                Err(e) => break Err(e),
            }
        };
        self.record(idx, result, Status::Ran, started);
    }

    /// Item `idx` from the cache (with its status), when it has a readable entry.
    fn reuse(&self, idx: usize) -> Option<(ItemResult, Status)> {
        let sh = self.shared;
        let i = self.i;
        let node = &sh.v.workflow.nodes[i];
        let touches = |p: &str| sh.touches(i, p);
        let ask = Ask {
            key: self.item_keys[idx],
            policy: sh.policy(i),
            forced: sh.forced(i),
            recorded_as: None,
            touches: &touches,
        };
        let Decision::Reuse(hit) = decide(&sh.sources(Mode::Build), &ask) else {
            return None;
        };
        if hit.source == HitSource::Remote {
            self.slow.store(true, Ordering::Relaxed);
        }
        sh.note_kept(&node.id, &hit.kept);
        let values = match (hit.values, &hit.entry) {
            (Some(v), _) => Some(v),
            (None, Some(entry)) => sh.cache.local().load_outputs(entry).ok().map(Arc::new),
            (None, None) => None,
        };
        // An entry whose value cannot be read is a miss: the item runs.
        let v = values?;
        self.cached.fetch_add(1, Ordering::SeqCst);
        let status = if hit.restored.is_empty() {
            Status::Cached
        } else {
            self.restored.fetch_add(1, Ordering::SeqCst);
            Status::Restored
        };
        Some((Ok((v, false, Effects::default())), status))
    }

    /// Item `idx`'s params, its templates resolved against the item.
    fn resolve(&self, idx: usize) -> Result<Resolved, NodeError> {
        let sh = self.shared;
        let cn = &sh.v.nodes[self.i];
        let item_scope = ItemScope::new(self.scope, self.batch, &self.items[idx], idx);
        let mut warnings = Vec::new();
        let resolved = resolve_params(cn, &item_scope, sh.v.workflow.template_mode, &mut warnings);
        sh.note(&sh.v.workflow.nodes[self.i].id, warnings);
        resolved
    }

    /// One attempt at running an item begins.
    fn count_run(&self) {
        self.shared
            .session
            .count(&self.shared.v.workflow.nodes[self.i].id, 1);
        self.ran.fetch_add(1, Ordering::SeqCst);
    }

    /// Is a failed attempt (the `attempt`th) tried again?
    fn retries(&self, attempt: u32, e: &NodeError) -> bool {
        attempt < self.batch.max_retries && e.category != ErrorCategory::Interrupted
    }

    /// Item `idx` ran (it began at `started`): its values, stored in the cache unless a
    /// file it read changed meanwhile.
    fn ran_ok(&self, idx: usize, mut out: NodeOutput, started: u64) -> ItemResult {
        let sh = self.shared;
        let i = self.i;
        let item_key = self.item_keys[idx];
        let effects = Effects::of(&mut out);
        let mut outputs = out.outputs;
        // Items report no links: a file node's write replaces what is at the path.
        written::add_file_digests(&mut outputs, &effects.written, &[])?;
        outputs.insert("item".into(), self.items[idx].clone());
        let v = Value::Object(outputs);
        let d = output_digest(&v);
        let v = Arc::new(v);
        match super::keys::read_other_bytes(&self.item_files[idx], &effects.read, &effects.written)
        {
            None => {
                // Its own run time: what a later hit on it saves.
                let took = Duration::from_micros(sh.elapsed_us().saturating_sub(started));
                sh.store(i, &item_key, &v, &d, &effects, took);
                sh.session.remember(item_key, d, v.clone());
            }
            Some(path) => sh.note(
                &sh.v.workflow.nodes[i].id,
                vec![format!(
                    "'{}' changed while item [{idx}] read it; its result is not cached",
                    path.display()
                )],
            ),
        }
        Ok((v, true, effects))
    }

    /// Keep item `idx`'s result and span; `status` is what a success is reported as.
    fn record(&self, idx: usize, result: ItemResult, status: Status, started: u64) {
        if result.is_err() && self.batch.error_handling == ErrorHandling::FailFast {
            self.stop.store(true, Ordering::SeqCst);
        }
        let status = if result.is_err() {
            Status::Failed
        } else {
            status
        };
        lock(&self.spans).push(ItemSpan {
            index: idx,
            key: self.item_keys[idx],
            status,
            start_us: started,
            end_us: self.shared.elapsed_us(),
        });
        *lock(&self.results[idx]) = Some(result);
    }

    /// A batch of a type whose runs wait on a server (`NodeSpec::start`: `http`), each
    /// started by `start`: this thread keeps up to `limit` requests in flight on the HTTP
    /// runtime (whose two threads drive every connection) and does the rest of each
    /// item itself (cache lookups, params, storing results). No thread per item: 100
    /// requests in flight used to be 100 threads, each started, given its own allocator
    /// heap and woken for its response; on a small machine that delayed the requests.
    ///
    /// Each request in flight past the first holds a job token, as a worker would (see
    /// `budget.rs`), taken only when one is free and given back when no item is left for
    /// it. Responses that arrive together are collected first, and the next requests
    /// sent, before their results are stored: a store never delays a request.
    fn drive(&self, start: crate::nodes::Start) {
        let sh = self.shared;
        let (tx, rx) = mpsc::channel::<(usize, Result<NodeOutput, NodeError>)>();
        let mut flights: HashMap<usize, Flight> = HashMap::new();
        let mut tokens = Vec::new();
        let mut arrived = Vec::new();
        loop {
            let interrupted = crate::interrupt::is_interrupted();
            // Send what may go now.
            while !interrupted && !self.stop.load(Ordering::SeqCst) && flights.len() < self.limit {
                if self.next.load(Ordering::SeqCst) >= self.unique.len() {
                    break;
                }
                if flights.len() > tokens.len() {
                    match sh.budget.try_take() {
                        Some(t) => tokens.push(t),
                        None => break,
                    }
                }
                let Some(&idx) = self.unique.get(self.next.fetch_add(1, Ordering::SeqCst)) else {
                    break;
                };
                let started = sh.elapsed_us();
                if let Some((result, status)) = self.reuse(idx) {
                    self.record(idx, result, status, started);
                    continue;
                }
                match self.resolve(idx) {
                    Ok((params, _)) => {
                        let flight = Flight {
                            params,
                            started,
                            attempt: 0,
                            abort: None,
                        };
                        flights.insert(idx, flight);
                        self.send(start, idx, &mut flights, &tx);
                    }
                    Err(e) => self.record(idx, Err(e), Status::Ran, started),
                }
            }
            if self.limit > MANY_WORKERS {
                // The first requests are out (the runtime and client were set up with
                // huge pages, in few faults); what the connections touch from now on is
                // spread thin over the heaps: 20 MB at peak for 100 requests instead of 34.
                self.small_pages_from_now();
            }
            // Slots with no item left give their tokens back.
            if self.next.load(Ordering::SeqCst) >= self.unique.len()
                || self.stop.load(Ordering::SeqCst)
            {
                tokens.truncate(flights.len().saturating_sub(1));
            }
            // Results whose requests are replaced: stored now.
            for (idx, flight, out) in arrived.drain(..) {
                let Flight { started, .. } = flight;
                let result = self.ran_ok(idx, out, started);
                self.record(idx, result, Status::Ran, started);
            }
            if flights.is_empty() {
                break;
            }
            if interrupted {
                for (idx, flight) in flights.drain() {
                    if let Some(a) = flight.abort {
                        a.abort();
                    }
                    let e = NodeError::new(ErrorCategory::Interrupted, "interrupted");
                    self.record(idx, Err(e), Status::Ran, flight.started);
                }
                break;
            }
            // Wait for a response (waking now and then to notice Ctrl-C), then take all
            // that are in.
            let mut came = match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(m) => vec![m],
                Err(_) => {
                    // A request's task that ended without reporting (it panicked) is a
                    // failed item, not a wait forever. Its report, if any, is in by now.
                    let lost: Vec<usize> = flights
                        .iter()
                        .filter(|(_, f)| f.abort.as_ref().is_some_and(|a| a.is_finished()))
                        .map(|(idx, _)| *idx)
                        .collect();
                    let mut came: Vec<_> = rx.try_iter().collect();
                    for idx in lost {
                        if !came.iter().any(|(i, _)| *i == idx) {
                            let e = NodeError::new(
                                ErrorCategory::Internal,
                                "the request ended without a result",
                            );
                            came.push((idx, Err(e)));
                        }
                    }
                    came
                }
            };
            came.extend(rx.try_iter());
            for (idx, r) in came {
                let Some(mut flight) = flights.remove(&idx) else {
                    continue;
                };
                match r {
                    Ok(out) => arrived.push((idx, flight, out)),
                    Err(e) if self.retries(flight.attempt, &e) => {
                        flight.abort = None;
                        flights.insert(idx, flight);
                        self.send(start, idx, &mut flights, &tx);
                    }
                    Err(e) => self.record(idx, Err(e), Status::Ran, flight.started),
                }
            }
        }
    }

    /// Send (again) the request of item `idx`, whose flight is in `flights`; its
    /// outcome comes back on `tx`.
    fn send(
        &self,
        start: crate::nodes::Start,
        idx: usize,
        flights: &mut HashMap<usize, Flight>,
        tx: &mpsc::Sender<(usize, Result<NodeOutput, NodeError>)>,
    ) {
        let Some(flight) = flights.get_mut(&idx) else {
            return;
        };
        flight.attempt += 1;
        self.count_run();
        let request = start(&flight.params);
        let failed = match request {
            Ok(request) => {
                let back = tx.clone();
                let spawned = crate::http::spawn(async move {
                    let _ = back.send((idx, request.await));
                });
                match spawned {
                    Ok(abort) => {
                        flight.abort = Some(abort);
                        return;
                    }
                    Err(e) => NodeError::new(
                        ErrorCategory::Internal,
                        format!("cannot start the HTTP runtime: {e}"),
                    ),
                }
            }
            Err(e) => e,
        };
        // Bad params or no runtime: the attempt failed without a request.
        let _ = tx.send((idx, Err(failed)));
    }
}

/// A request of a driven batch in flight.
struct Flight {
    params: Map<String, Value>,
    /// When the item began.
    started: u64,
    /// Attempts sent so far.
    attempt: u32,
    abort: Option<tokio::task::AbortHandle>,
}

/// More item workers (or requests in flight) than this in one batch turn huge pages off
/// (see below).
const MANY_WORKERS: usize = 16;

/// What one item's templates see: the node's scope plus the item (and its index).
pub(super) struct ItemScope<'s> {
    base: &'s NodeScope<'s>,
    alias: &'s str,
    item: &'s Value,
    index: Value,
}

impl<'s> ItemScope<'s> {
    pub(super) fn new(
        base: &'s NodeScope<'s>,
        batch: &'s BatchConfig,
        item: &'s Value,
        idx: usize,
    ) -> Self {
        ItemScope {
            base,
            alias: batch.alias.as_str(),
            item,
            index: Value::from(idx),
        }
    }
}

impl Scope for ItemScope<'_> {
    fn lookup(&self, root: &str) -> Option<Cow<'_, Value>> {
        if root == self.alias {
            return Some(Cow::Borrowed(self.item));
        }
        if root == "__index__" {
            return Some(Cow::Borrowed(&self.index));
        }
        self.base.lookup(root)
    }

    fn root_names(&self) -> Vec<String> {
        let mut names = self.base.root_names();
        names.push(self.alias.to_string());
        names
    }
}

/// The items of a batch node, resolved in `scope`.
pub(super) fn batch_items(
    cn: &CompiledNode,
    scope: &NodeScope<'_>,
) -> Result<Vec<Value>, NodeError> {
    let items_value = match &cn.items {
        Some(pt) => pt
            .resolve(scope)
            .map_err(|u| unresolved_error("batch.items", u))?,
        None => Value::Array(Vec::new()),
    };
    match items_value {
        Value::Array(a) => Ok(a),
        Value::String(s) => match crate::template::parse_json_container(&s) {
            Some(Value::Array(a)) => Ok(a),
            _ => Err(NodeError::new(
                ErrorCategory::Template,
                format!(
                    "batch items must be an array, got text that is not a JSON array: {}",
                    crate::template::value_preview(&Value::String(s), 80)
                ),
            )),
        },
        other => Err(NodeError::new(
            ErrorCategory::Template,
            format!(
                "batch items must be an array, got {}",
                crate::template::type_name(&other)
            ),
        )),
    }
}

fn agg_missing(agg: &Map<String, Value>) -> usize {
    agg.get("results")
        .and_then(|r| r.as_array())
        .map(|r| r.iter().filter(|v| v.is_null()).count())
        .unwrap_or(0)
}
