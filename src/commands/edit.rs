//! The edit path of `pflow build`: after an edit to a few nodes of a workflow whose
//! no-op record holds everything else, build only what the edit reaches, without
//! parsing, validating or keying the rest (as Bazel's Skyframe keeps its graph between
//! builds, here the record stands in for it).
//!
//! The record ([`crate::cache::noop::EditBase`]) keeps where each node is in the
//! workflow's text (a copy of which is kept beside it) and the nodes each one reads.
//! When only the workflow's text differs from the recorded build (the context, the files
//! and the cache are as the record says: [`super::noop::holds`]), the edited text is
//! compared with the copy ([`crate::node_texts::edited`]): only the stretch between
//! the bytes both share at the start and at the end is read again, and an edit outside
//! the nodes, or one that adds or removes a node, is not for this path. The file is
//! compared as it is read ([`crate::node_texts::EditRead`]), so only that stretch is
//! held in memory: the rest of the text is the copy's bytes. The part of the
//! workflow built is the changed nodes, everything downstream of them, and, as nodes
//! whose results are known (the record vouches for them), every node those read and
//! every node a declared output reads. That part is validated as a workflow of its own
//! (known nodes only lend their id and type), then executed, and the other nodes are
//! reported from the record, as the no-op path does.
//!
//! Why that is the build a full one would be: a node whose text and whose context (ids,
//! types, inputs, settings: the other members) are unchanged validates and compiles as
//! it did; its dependencies are those recorded, so the part holds everything each of
//! its nodes reads; each node the edit reaches is keyed and decided as always. Only
//! workflows whose validity and graph come from node texts alone are recorded for this
//! ([`qualifies`]): no `edges`, no `start_node`, no batch, no file types or declared
//! reads and writes (whose paths imply edges between nodes), no validation warning, no
//! literal secret in any node (the redactor needs every one), outputs with sources, and
//! no repair (a failed build would want a model). An edited node must keep its id and
//! type and meet the same rules. Anything else takes the normal path, which is always
//! right.
//!
//! An edit that reaches more than half the nodes gains nothing from the part: it is
//! turned away, and the normal build it takes keeps the nodes' compiled forms
//! ([`crate::node_form`], [`crate::cache::node_forms`]). From then on such an edit takes
//! this path: each reached node whose text is byte for byte the one a form was made
//! from is taken as compiled, the rest are parsed, and only the part's own checks run
//! (the forms are bound to this pflow, the record's context, the text outside the nodes
//! and every node's id and type, on which a node's compiling depends besides its text).
//! A build the first edit of that size does not follow never pays for forms.
//!
//! After a successful build whose nodes wrote no files, the record is rewritten for the
//! edited workflow, so the next build is a no-op again (or another edit).

use super::noop::{debug, Invocation, Start};
use super::then::Then;
use super::ExitCode;
use crate::cache::kept_text::KeptText;
use crate::cache::layered::Layered;
use crate::cache::noop::{EditBase, NodeEnd, NodeEntry, NoopRecord, OutputSource};
use crate::cache::records::{BuildState, MAX_AGE};
use crate::cache::stats::Tally;
use crate::cache::Cache;
use crate::cli::BuildArgs;
use crate::executor::{self, Known, NodeReport, Options, Session, Status};
use crate::node_texts::{EditRead, Layout, Spliced};
use crate::template::ParamTemplate;
use crate::validate::Validated;
use crate::workflow::Workflow;
use serde_json::Value;
use std::collections::HashMap;
use std::time::Instant;

/// How deep an edited node's JSON may nest: read alone, it has two levels more room
/// than in the file, whose reader stops at 128.
const MAX_DEPTH: usize = 120;

/// May a workflow, as validated, be recorded for the edit path? Why not, if not.
pub(super) fn qualifies(v: &Validated) -> Result<(), String> {
    let wf = &v.workflow;
    if !wf.edges.is_empty() {
        return Err("it has edges".into());
    }
    if wf.start_node.is_some() {
        return Err("it has a start_node".into());
    }
    if let Some((name, _)) = v.outputs.iter().find(|(_, t)| t.is_none()) {
        return Err(format!("output '{name}' has no source"));
    }
    // A secret input's default is in the text whatever value this build gave the input,
    // and spelled as JSON (escaped, or not a string at all), where a search for the
    // secret values may not find it: such a text is never copied.
    let secret_default = |(name, spec): &(&String, &crate::workflow::InputSpec)| {
        wf.is_secret_input(name) && spec.default.as_ref().is_some_and(|d| !d.is_null())
    };
    if let Some((name, _)) = wf.inputs.iter().find(secret_default) {
        return Err(format!("secret input '{name}' has a default"));
    }
    for (i, (node, cn)) in wf.nodes.iter().zip(&v.nodes).enumerate() {
        super::noop::node_qualifies(node, cn)?;
        if v.graph
            .dependencies(i)
            .iter()
            .any(|(_, l)| *l != crate::graph::Link::Template)
        {
            return Err(format!("node '{}' has a dependency by path", node.id));
        }
    }
    Ok(())
}

/// The edit base for a workflow just built, whose file's text hashes to `digest` and has
/// its nodes where `layout` says (asked once the workflow qualifies).
pub(super) fn base(
    v: &Validated,
    layout: &mut dyn FnMut() -> Result<Layout, String>,
    digest: [u8; 32],
    context: [u8; 32],
) -> Result<EditBase, String> {
    qualifies(v)?;
    let layout = layout()?;
    let n = layout.nodes.len();
    if n != v.workflow.nodes.len() {
        return Err("its nodes are not where the edit path looks".into());
    }
    let mut base = EditBase::with_capacity(context, digest, layout, 2 * n);
    for i in 0..n {
        let mut deps: Vec<u32> = v
            .graph
            .dependencies(i)
            .iter()
            .map(|(j, _)| *j as u32)
            .collect();
        deps.sort_unstable();
        deps.dedup();
        base.push(&deps);
    }
    Ok(base)
}

fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The node ids an edited node's params name.
fn roots(node: &Value) -> Vec<String> {
    let Some(Value::Object(params)) = node.get("params") else {
        return Vec::new();
    };
    params
        .values()
        .filter_map(|v| ParamTemplate::compile(v).ok())
        .flat_map(|pt| {
            pt.refs()
                .into_iter()
                .map(|r| r.root.clone())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The nodes the edit reaches (those in `changed` and every node downstream), in one
/// pass over the nodes in the order the recorded build finished them, in which each
/// node comes after the nodes it reads: no index of the nodes that read each node is
/// built (its fresh memory was a fifth of a millisecond at 10,000 nodes). `None` when
/// the order is not such an order of all the nodes.
fn reach_in_order(base: &EditBase, changed: &[usize], order: &[u32]) -> Option<Vec<bool>> {
    let n = base.len();
    if order.len() != n {
        return None;
    }
    let mut reached = vec![false; n];
    for &c in changed {
        *reached.get_mut(c)? = true;
    }
    let mut seen = vec![false; n];
    for &i in order {
        let i = i as usize;
        if *seen.get(i)? {
            return None;
        }
        let mut reaches = *reached.get(i)?;
        for &d in base.deps(i) {
            if !*seen.get(d as usize)? {
                return None;
            }
            reaches |= *reached.get(d as usize)?;
        }
        *reached.get_mut(i)? = reaches;
        *seen.get_mut(i)? = true;
    }
    Some(reached)
}

/// The nodes the edit of `changed` reaches: [`reach_in_order`], or for a record whose
/// order does not serve, [`reach_by_dependents`].
fn reach(base: &EditBase, changed: &[usize], order: &[u32]) -> Vec<bool> {
    reach_in_order(base, changed, order).unwrap_or_else(|| reach_by_dependents(base, changed))
}

/// [`reach_in_order`] for any record: from each changed node down through the nodes
/// that read it.
fn reach_by_dependents(base: &EditBase, changed: &[usize]) -> Vec<bool> {
    let below = Dependents::of(base);
    let mut reached = vec![false; base.len()];
    let mut stack: Vec<usize> = changed.to_vec();
    while let Some(i) = stack.pop() {
        match reached.get_mut(i) {
            Some(r) if !*r => *r = true,
            _ => continue,
        }
        stack.extend(below.of_node(i).iter().map(|&d| d as usize));
    }
    reached
}

/// For each node, the nodes that read it: flat, as the base keeps dependencies.
struct Dependents {
    list: Vec<u32>,
    starts: Vec<u32>,
}

impl Dependents {
    fn of(base: &EditBase) -> Dependents {
        let n = base.len();
        let mut starts = vec![0u32; n + 1];
        for i in 0..n {
            for &d in base.deps(i) {
                if let Some(c) = starts.get_mut(d as usize + 1) {
                    *c += 1;
                }
            }
        }
        for i in 0..n {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut list = vec![0u32; starts[n] as usize];
        for i in 0..n {
            for &d in base.deps(i) {
                if let Some(at) = fill.get_mut(d as usize) {
                    if let Some(slot) = list.get_mut(*at as usize) {
                        *slot = i as u32;
                    }
                    *at += 1;
                }
            }
        }
        Dependents { list, starts }
    }

    fn of_node(&self, i: usize) -> &[u32] {
        match (self.starts.get(i), self.starts.get(i + 1)) {
            (Some(&a), Some(&b)) => self.list.get(a as usize..b as usize).unwrap_or_default(),
            _ => &[],
        }
    }
}

/// Build the edited workflow if the no-op record found it edited and the edit path can;
/// else give the start back (without the record) for the normal build.
pub(super) fn serve(
    args: &BuildArgs,
    mut start: Start,
    started: Instant,
    then: Then,
) -> Result<ExitCode, Start> {
    let (Some(rec), Some(inv)) = (start.edited.take(), start.inv.as_ref()) else {
        return Err(start);
    };
    let mut differs = false;
    match try_serve(
        args,
        inv,
        *rec,
        started,
        then,
        &mut differs,
        &mut start.prior,
    ) {
        Ok(code) => Ok(code),
        Err(why) => {
            // Its bytes were found to differ from the recorded text's: the no-op path
            // need not hash them to learn that.
            if differs {
                start.by_identity = false;
            }
            debug(|| {
                format!("no-op record not used: the workflow changed, and the edit path is not for it: {why}")
            });
            Err(start)
        }
    }
}

/// Build the edited workflow from the record `rec` if the edit path can; `Err` says why
/// not, before anything ran (but for a record damaged past its check, found only as
/// the part is built). `differs`: set once the file's bytes are found to differ
/// from the recorded text's. `prior`: set when an edit that reaches most nodes is
/// turned away, for the normal build's record ([`super::noop::Prior`]).
fn try_serve(
    args: &BuildArgs,
    inv: &Invocation,
    mut rec: NoopRecord,
    started: Instant,
    then: Then,
    differs: &mut bool,
    prior: &mut Option<super::noop::Prior>,
) -> Result<ExitCode, String> {
    let base = rec.take_edit().ok_or("no edit base")?;
    let n = rec.node_count();
    if base.len() != n {
        return Err("a damaged record".into());
    }
    let kept = crate::cache::kept_text::load(&inv.root, &inv.name, &base.text)
        .ok_or("no copy of the recorded workflow")?;
    let kept = std::rc::Rc::new(kept);
    let file = std::fs::File::open(&inv.path).map_err(|_| "cannot read the workflow")?;
    let size = file
        .metadata()
        .map_err(|_| "cannot read the workflow")?
        .len();
    if size > crate::source::max_workflow_bytes() {
        return Err("the workflow is over the size limit".into());
    }
    // The compiled forms of the nodes, for an edit that reaches most of them: looked
    // for once such an edit is found (their tag is checked once the text is read).
    let forms = std::cell::OnceCell::new();
    let has_forms = || {
        forms
            .get_or_init(|| {
                crate::cache::node_forms::load_any(&inv.root, &inv.name).filter(|f| f.len() == n)
            })
            .is_some()
    };
    // The first byte that differs lies in a node whose change alone reaches more than
    // half of them: no need to read on to learn what else changed. Past the node's
    // first byte: a difference there may be only space put before the node.
    let too_far = std::cell::Cell::new(None);
    // Read on past such a node because the forms are kept: should the edit path turn
    // the edit away after all, the normal build still gets what it would have.
    let on_forms = std::cell::Cell::new(false);
    let first_reaches_too_far = |at: usize| {
        let Some(i) = base.layout.node_at(at) else {
            return false;
        };
        if base
            .layout
            .nodes
            .get(i)
            .is_none_or(|&(start, _)| start as usize >= at)
        {
            return false;
        }
        let count = reach(&base, &[i], &rec.order)
            .iter()
            .filter(|&&r| r)
            .count();
        let far = count * 2 > n;
        too_far.set((far && !has_forms()).then_some(count));
        on_forms.set(on_forms.get() || far);
        too_far.get().is_some()
    };
    // What the normal build gets when the edit is turned away for reaching most nodes:
    // the kept copy and where its nodes are, and word to keep the forms.
    let turned_away = || super::noop::Prior {
        far: true,
        layout: base.layout.clone(),
        kept: std::rc::Rc::clone(&kept),
    };
    let read = EditRead::read_unless(&file, size as usize, kept.text(), first_reaches_too_far)
        .map_err(|_| "cannot read the workflow, or it is not UTF-8")?;
    let Some(read) = read else {
        *differs = true;
        let count = too_far.get().unwrap_or(n);
        *prior = Some(turned_away());
        return Err(format!("the edit reaches at least {count} of {n} nodes"));
    };
    drop(file);
    if on_forms.get() {
        *prior = Some(turned_away());
    }
    *differs = !read.unchanged();
    let text = read.text();
    let edit = read
        .edited(&base.layout)
        .ok_or("the edit reaches outside the nodes, adds or removes one, or is not JSON")?;
    let crate::node_texts::Edited { changed, layout } = edit;
    let node_text = |i: usize| layout.node(text, i).ok_or("a node outside the text");

    // What the edit reaches: the changed nodes and everything downstream.
    let reached = reach(&base, &changed, &rec.order);
    let reached_count = reached.iter().filter(|&&r| r).count();
    if reached_count * 2 > n {
        if prior.is_none() {
            *prior = Some(turned_away());
        }
        if !has_forms() {
            return Err(format!("the edit reaches {reached_count} of {n} nodes"));
        }
    }
    // It keeps the small pages the process began with (`crate::memory`): the records are
    // mapped and their saves small, so an edit touches a little of many regions. An
    // edit that reaches a quarter of the nodes or more fills memory as a full build
    // does, and takes huge pages as one (it faulted in ten times as many small pages).
    let local = Cache::new(&inv.root);
    if reached_count * 4 > n {
        crate::memory::huge_pages(true);
        // Its nodes look the cache up: its indexes are read beside the part's making,
        // as the normal build reads them beside the workflow's parsing.
        local.warm_aside(true);
    }
    // What the part reads besides: the recorded dependencies of unchanged nodes, the
    // nodes an edited one names now, and the outputs' nodes.
    let mut edited: HashMap<usize, Value> = HashMap::new();
    for &c in &changed {
        let value = crate::source::parse_json_text(&node_text(c)?)
            .map_err(|_| "an edited node is not valid JSON")?;
        if depth(&value) > MAX_DEPTH {
            return Err("an edited node nests deeply".into());
        }
        edited.insert(c, value);
    }
    // The other members, as the edit left them (it did not reach them).
    let others = layout.without_nodes(text).ok_or("a damaged record")?;
    let Value::Object(doc) =
        crate::source::parse_json_text(&others).map_err(|_| "the other members do not parse")?
    else {
        return Err("not a JSON object".into());
    };
    // Where each node's entry is in the record, found without decoding them all.
    let spans = rec.node_spans().ok_or("a damaged record")?;
    let entry = |i: usize| {
        spans
            .get(i)
            .and_then(|s| rec.node_at(s))
            .ok_or("a damaged record")
    };
    // The nodes the edited ones name, found by id (ids are unique): among the nodes
    // they read before the edit, as most edits keep those, else in a pass over all.
    let mut named: std::collections::HashSet<String> = edited.values().flat_map(roots).collect();
    // An input is no node (the recorded workflow validated, and neither its inputs nor
    // any node's id changed).
    if let Some(Value::Object(inputs)) = doc.get("inputs") {
        named.retain(|name| !inputs.contains_key(name));
    }
    let mut in_part = reached.clone();
    for &c in &changed {
        for &d in base.deps(c) {
            if named.remove(entry(d as usize)?.id) {
                in_part[d as usize] = true;
            }
        }
    }
    if !named.is_empty() {
        for (j, slot) in in_part.iter_mut().enumerate() {
            if named.contains(entry(j)?.id) {
                *slot = true;
            }
        }
    }
    for i in (0..n).filter(|&i| reached[i] && !edited.contains_key(&i)) {
        for &d in base.deps(i) {
            in_part[d as usize] = true;
        }
    }
    for (_, source) in &rec.outputs {
        if let OutputSource::Template(_, nodes) = source {
            for &j in nodes {
                *in_part.get_mut(j as usize).ok_or("a damaged record")? = true;
            }
        }
    }
    let part: Vec<usize> = (0..n).filter(|&i| in_part[i]).collect();
    // The record's entries of the part's nodes, in the part's order.
    let entries: Vec<NodeEntry<'_>> = part.iter().map(|&i| entry(i)).collect::<Result<_, _>>()?;

    // The compiled forms, if they were made in this context: of this pflow, for these
    // other members and these ids and types (the edited nodes keep theirs).
    let forms = match forms.into_inner().flatten() {
        Some(f) => {
            let ids = (0..n).map(|j| entry(j).map(|e| (e.id, e.node_type)));
            let ids = ids.collect::<Result<Vec<_>, _>>()?;
            let maker = super::noop::maker().ok_or("pflow's executable cannot be looked at")?;
            let tag =
                crate::cache::node_forms::tag(&maker, &base.context, &others, ids.into_iter());
            f.bound_to(&tag).then_some(f)
        }
        None => None,
    };
    if forms.is_none() && reached_count * 2 > n {
        return Err("the kept node forms are of another build".into());
    }
    // The part as a workflow of its own: the other members as they are, and its nodes,
    // each reached one whose text is unchanged as compiled before when it can be.
    let mut nodes = Vec::with_capacity(part.len());
    let mut given = Vec::with_capacity(if forms.is_some() { part.len() } else { 0 });
    // What the definitions of the nodes taken as compiled put in their keys.
    let mut key_parts = Vec::with_capacity(given.capacity());
    let mut structural = Vec::new();
    for (k, &i) in part.iter().enumerate() {
        let value = match edited.remove(&i) {
            Some(v) => v,
            None => {
                let text = node_text(i)?;
                let form = forms
                    .as_ref()
                    .filter(|_| reached[i])
                    .and_then(|f| f.form(i, text.as_bytes()))
                    .and_then(crate::node_form::decode);
                if let Some((node, cn, parts)) = form {
                    nodes.push(node);
                    given.push(Some(cn));
                    key_parts.push(parts);
                    continue;
                }
                crate::source::parse_json_text(&text)
                    .map_err(|_| "a recorded node no longer parses")?
            }
        };
        nodes.push(crate::workflow::decode_node(
            &value,
            &format!("nodes[{k}]"),
            &mut structural,
        ));
        if forms.is_some() {
            given.push(None);
            key_parts.push(None);
        }
    }
    let from_forms = given.iter().filter(|g| g.is_some()).count();
    let with_parts = key_parts.iter().filter(|p| p.is_some()).count();
    let (wf, more) = Workflow::with_nodes(&Value::Object(doc), nodes);
    let wf = wf.ok_or("the edited workflow does not decode")?;
    if !structural.is_empty() || !more.is_empty() {
        return Err("the edited workflow does not decode cleanly".into());
    }
    let v = crate::validate::validate_with_known(
        wf,
        structural,
        &|k| part.get(k).is_some_and(|&i| !reached[i]),
        given,
    )
    .map_err(|_| "the edited nodes do not validate")?;
    if !v.warnings.is_empty() {
        return Err("the edited nodes warn".into());
    }
    for (k, _) in part.iter().enumerate().filter(|(_, &i)| reached[i]) {
        let (node, cn, was) = (&v.workflow.nodes[k], &v.nodes[k], &entries[k]);
        if node.id != was.id || node.node_type != was.node_type {
            return Err(format!("node '{}' changed its id or type", was.id));
        }
        super::noop::node_qualifies(node, cn)?;
        if !node.reads_env.iter().all(|e| rec.env_names.contains(e)) {
            return Err(format!("node '{}' reads another variable", node.id));
        }
    }
    let assignments =
        crate::inputs::parse_assignments(&args.params).map_err(|_| "the inputs do not parse")?;
    let inputs = crate::inputs::resolve(&v.workflow, &assignments, None)
        .map_err(|_| "the inputs do not resolve")?;

    // From here on as a build: under the lock maintenance waits for.
    let cache = Layered::new(local, None);
    let _lock = super::noop::holds(args, inv, &rec, &cache)?;
    // The known nodes' values, loaded now: a node outside the edit is never run here
    // (its params are not even compiled), so one whose entry is gone or damaged sends
    // the build to the normal path before anything ran.
    let known: Vec<Option<Known>> = part
        .iter()
        .zip(&entries)
        .map(|(&i, entry)| match (reached[i], &entry.end) {
            (true, _) => Ok(None),
            (false, NodeEnd::Cached { key, digest, .. }) => {
                let key = crate::key::Key(*key);
                let entry = cache
                    .local()
                    .peek(&key)
                    .ok_or("a known node's entry is gone")?;
                // The result the record names, not another stored under the key since.
                if entry.output.as_bytes() != digest {
                    return Err("a known node's entry holds another result");
                }
                let values = cache
                    .local()
                    .load_outputs(&entry)
                    .map_err(|_| "a known node's entry is damaged")?;
                Ok(Some(Known {
                    key,
                    digest: blake3::Hash::from_bytes(*digest),
                    values: std::sync::Arc::new(values),
                }))
            }
            (false, NodeEnd::Skipped { .. }) => Err("a node it reads was skipped"),
        })
        .collect::<Result<_, &str>>()?;
    debug(|| {
        format!(
            "edit path used: {} node(s) changed, {} to build, {} of them as compiled before \
             ({} with their key components)",
            changed.len(),
            reached_count,
            from_forms,
            with_parts
        )
    });
    crate::cache::noop::forget(&inv.root, &inv.name);
    // Built here from now on: no normal build follows.
    *prior = None;
    // Checked by the no-op record's own test of the invocation.
    let given_jobs = super::conclusion::jobs_given(args).ok().flatten();
    let mut opts = Options {
        jobs: super::conclusion::jobs_or_cores(given_jobs),
        jobs_given: given_jobs.is_some(),
        force: false,
        rerun: Default::default(),
        run_id: super::conclusion::run_id(),
        workflow_name: inv.name.clone(),
        strict_env: args.strict_env || crate::environment::strict_from_env(),
        targets: Vec::new(),
        write_roots: crate::workspace::WriteRoots::new(&args.allow_write)
            .closing(&inv.root, &crate::cache::layout::CACHE_NAMES),
        redactor: crate::secrets::Redactor::new(super::conclusion::secret_values(&v, &inputs)),
        live: executor::LiveOutput::default(),
        reasons: super::conclusion::miss_reasons(args),
        known,
        parts: key_parts,
    };
    let (live, sink) = super::conclusion::live_lines(args, &opts.redactor);
    opts.live = sink;
    let view = super::conclusion::view(args);
    // The edited text's digest, for the next record, is hashed on a thread of its own
    // while this one builds (a megabyte at 10,000 nodes, half a millisecond); the other
    // nodes' reports are made and their lines told on another (3 ms at 10,000 nodes,
    // as long as the build of a few nodes, which uses one core of two). The built
    // nodes' lines are told after those.
    // An edit that reaches every node builds the whole workflow: no recorded report is
    // told or kept, and its lines are told as they come.
    let every = part.len() == n && reached_count == n;
    let others = || {
        let logs = crate::cache::logs::Logs::load(&inv.root, &inv.name);
        let mut progress = crate::report::Progress::new(n, view, logs);
        if every {
            return Some((Vec::new(), vec![None; n], progress));
        }
        let (merged, saved) = super::noop::reports_of(&rec)?;
        for r in rec.order.iter().filter_map(|&i| merged.get(i as usize)) {
            if !reached[r.index] {
                progress.finished(r);
            }
        }
        Some((merged, saved, progress))
    };
    let (outcome, mut merged, saved, mut progress, digest) = std::thread::scope(|s| {
        let hashing = std::thread::Builder::new().spawn_scoped(s, move || text.digest());
        let (mut made, mut reporting) = match every {
            true => (Some(others()), None),
            false => (
                None,
                std::thread::Builder::new().spawn_scoped(s, others).ok(),
            ),
        };
        let session = Session::default();
        let part_reached = |k: usize| part.get(k).is_some_and(|&i| reached[i]);
        // The part's events wait for the other nodes' lines, then go straight to the
        // progress: looked at whenever the build idles, so that a part that runs long
        // shows its lines and progress as a full build does.
        let mut told: Vec<Told> = Vec::new();
        let outcome = executor::execute(&v, &inputs, &cache, &opts, &session, &mut |ev| {
            let idle = matches!(ev, executor::Event::Idle);
            if idle && made.is_none() && reporting.as_ref().is_some_and(|h| h.is_finished()) {
                made = reporting.take().and_then(|h| h.join().ok());
            }
            if let (Some(Some((_, _, progress))), true) = (made.as_mut(), told.is_empty()) {
                match ev {
                    executor::Event::Started(k) if part_reached(k) => {
                        progress.started(v.graph.id(k))
                    }
                    executor::Event::Finished(r) if part_reached(r.index) => progress.finished(r),
                    executor::Event::Idle => progress.flush(),
                    _ => {}
                }
                return;
            }
            told.extend(match ev {
                executor::Event::Started(k) if part_reached(k) => Some(Told::Started(k)),
                executor::Event::Finished(r) if part_reached(r.index) => {
                    Some(Told::Finished(Box::new(r.clone())))
                }
                _ => None,
            });
            if let Some(Some((_, _, progress))) = made.as_mut() {
                for t in told.drain(..) {
                    t.tell(progress, &v);
                }
                if idle {
                    progress.flush();
                }
            }
        });
        let reported = match made {
            Some(reported) => reported,
            None => match reporting.map(|h| h.join()) {
                Some(Ok(reported)) => reported,
                _ => others(),
            },
        };
        // Only a record damaged past its check fails here, after the part was built
        // (its results are stored: the normal build that follows finds them).
        let (merged, saved, mut progress) = reported.ok_or("a damaged record")?;
        for t in told {
            t.tell(&mut progress, &v);
        }
        let digest = match hashing.map(|h| h.join()) {
            Ok(Ok(digest)) => digest,
            _ => text.digest(),
        };
        Ok::<_, String>((outcome, merged, saved, progress, digest))
    })?;
    if let Some(sink) = &live {
        sink.finish();
    }
    progress.done();
    super::conclusion::keep_printed(progress, &outcome, &inv.root, &inv.name);
    let seen = cache.local().take_seen();
    let part_tallies: Vec<Tally> = super::conclusion::tallies(&v, &outcome, &seen).collect();
    // The part's reports in their places among the recorded ones, and its tallies.
    let mut outcome = outcome;
    let reports = std::mem::take(&mut outcome.nodes);
    // Each built node's tally, by its place in the workflow (sorted by it below), so
    // the others' are told apart by a walk, not a lookup each.
    let mut ran: Vec<(usize, Tally)> = Vec::with_capacity(reports.len());
    if every {
        // The part is the workflow, node for node.
        merged = Vec::with_capacity(n);
        for (r, tally) in reports.into_iter().zip(part_tallies) {
            ran.push((r.index, tally));
            merged.push(r);
        }
        merged.sort_unstable_by_key(|r| r.index);
    } else {
        for (r, tally) in reports.into_iter().zip(part_tallies) {
            let Some(&i) = part.get(r.index).filter(|&&i| reached[i]) else {
                continue;
            };
            if let Some(slot) = merged.get_mut(i) {
                *slot = NodeReport { index: i, ..r };
                ran.push((i, tally));
            }
        }
    }
    outcome.nodes = merged;
    ran.sort_unstable_by_key(|(i, _)| *i);
    // The others' as the no-op counts them.
    let mut built = ran.iter().peekable();
    let tallies = saved.iter().zip(&outcome.nodes).map(|(saved_ms, r)| {
        let ran = built.next_if(|(i, _)| *i == r.index).map(|(_, t)| t);
        match (ran, r.status) {
            (Some(t), _) => *t,
            (None, Status::Skipped) => Tally::Skipped,
            (None, _) => Tally::Hit {
                saved_ms: *saved_ms,
                restored: false,
                upstream_ran: false,
            },
        }
    });
    super::conclusion::append_stats(&cache, &outcome, tallies, &opts.run_id);
    super::conclusion::attempt_lines(args, &outcome);
    let next = Next {
        rec: &rec,
        spans: &spans,
        base,
        layout,
        part: &part,
        reached: &reached,
        v: &v,
        text,
        digest,
        kept: &kept,
        redactor: &opts.redactor,
    };
    match next.record(inv, &outcome) {
        Ok(()) => debug(|| "no-op record written".into()),
        Err(why) => debug(|| format!("no-op record not written: {why}")),
    }
    // The edit path is for workflows that do not warn (see `super::noop`).
    let code = super::conclusion::conclude(args, outcome, None, &[], &opts.redactor, started, then);
    drop(entries);
    then.leave((rec, kept, v, forms));
    Ok(code)
}

/// What the record of the edited workflow is made from.
struct Next<'a> {
    rec: &'a NoopRecord,
    /// Where each node's entry is in `rec`.
    spans: &'a crate::cache::noop::NodeSpans,
    base: EditBase,
    /// Where the nodes are in the edited text.
    layout: crate::node_texts::Layout,
    part: &'a [usize],
    reached: &'a [bool],
    v: &'a Validated,
    text: Spliced<'a>,
    /// `text`'s BLAKE3.
    digest: blake3::Hash,
    /// The copy of the recorded workflow's text the edit was found in.
    kept: &'a KeptText,
    redactor: &'a crate::secrets::Redactor,
}

impl Next<'_> {
    /// The record for the edited workflow, after a build that succeeded and wrote no
    /// file: the old one with the reached nodes' new keys, texts and dependencies.
    fn record(self, inv: &Invocation, outcome: &executor::Outcome) -> Result<(), String> {
        if !outcome.success || outcome.interrupted || crate::interrupt::is_interrupted() {
            return Err("the build did not succeed".into());
        }
        if !outcome.warnings.is_empty() || !outcome.output_errors.is_empty() {
            return Err("the build warned".into());
        }
        if super::noop::outputs_hold_a_secret(self.redactor, outcome) {
            return Err("an output holds a secret".into());
        }
        let state = BuildState::load(&inv.root, &inv.name);
        let generation = crate::cache::layout::generation(&inv.root);
        if generation != self.rec.generation
            || BuildState::header(&inv.root, &inv.name) != Some((generation, state.written_ms))
        {
            return Err("no usable build record".into());
        }
        let mut next = NoopRecord::default();
        let digest = self.digest;
        next.fingerprint = super::noop::fingerprint(&self.base.context, &digest);
        next.generation = generation;
        next.state_written_ms = state.written_ms;
        next.valid_until_ms = self
            .rec
            .valid_until_ms
            .min(state.written_ms + MAX_AGE.as_millis() as u64);
        next.settled_before_ns = self.rec.settled_before_ns;
        next.workflow = crate::fsutil::stat(&inv.path);
        next.env_names = self.rec.env_names.clone();
        next.files = self.rec.files.clone();
        next.outputs = self.rec.outputs.clone();
        // The order its lines are printed in: as this build finished them, the nodes it
        // did not reach (which read none it reached) first.
        next.order = self
            .rec
            .order
            .iter()
            .copied()
            .filter(|&i| !self.reached.get(i as usize).copied().unwrap_or(true))
            .chain(
                self.v
                    .order
                    .iter()
                    .filter_map(|&k| self.part.get(k))
                    .filter(|&&i| self.reached[i])
                    .map(|&i| i as u32),
            )
            .collect();
        // The old base with the edited text's digest and layout, and the reached nodes'
        // dependencies: changed in place, not copied node by node.
        let mut base = self.base;
        base.text = *digest.as_bytes();
        base.layout = self.layout;
        // The new record's nodes: runs of the old one's, and the reached nodes encoded
        // anew between them (written as they are, not copied together first).
        if outcome.nodes.len() != self.rec.node_count() || self.spans.len() != outcome.nodes.len() {
            return Err("a damaged record".into());
        }
        let old = self.rec.encoded();
        let mut fresh: Vec<Vec<u8>> = Vec::new();
        let mut plan: Vec<Piece> = Vec::with_capacity(2 * self.part.len() + 1);
        let mut kept_from = 0;
        for (i, r) in outcome
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| self.reached.get(*i) == Some(&true))
        {
            let span = self.spans.get(i).ok_or("a damaged record")?;
            if span.start > kept_from {
                plan.push(Piece::Kept(kept_from..span.start));
            }
            kept_from = span.end;
            let entry = self.rec.node_at(span).ok_or("a damaged record")?;
            let (Some(key), Some(digest)) = (r.key, r.digest) else {
                return Err(format!("node '{}' has no result", r.id));
            };
            if !matches!(r.status, Status::Cached | Status::Ran) {
                return Err(format!("node '{}' {}", r.id, r.status.as_str()));
            }
            let found = super::noop::fresh_record(&state, &r.id, &key, &digest)?;
            // Its place in the part (which is in workflow order), and its
            // dependencies there.
            let k = self
                .part
                .binary_search(&i)
                .map_err(|_| "a node outside the part")?;
            let node = self
                .v
                .workflow
                .nodes
                .get(k)
                .ok_or("a node outside the part")?;
            super::noop::outlive_no_entry(&mut next, &node.cache, found.time_ms);
            plan.push(Piece::Fresh(fresh.len()));
            fresh.push(crate::cache::noop::encode_node(&NodeEntry {
                id: entry.id,
                node_type: entry.node_type,
                end: NodeEnd::Cached {
                    key: key.0,
                    digest: *digest.as_bytes(),
                    duration_ms: found.duration_ms,
                },
            }));
            let mut deps: Vec<u32> = self
                .v
                .graph
                .dependencies(k)
                .iter()
                .filter_map(|(j, _)| self.part.get(*j).map(|&d| d as u32))
                .collect();
            deps.sort_unstable();
            deps.dedup();
            base.set_deps(i, &deps).ok_or("a damaged record")?;
        }
        if self.spans.end() > kept_from {
            plan.push(Piece::Kept(kept_from..self.spans.end()));
        }
        let pieces: Vec<&[u8]> = plan
            .into_iter()
            .map(|p| match p {
                Piece::Kept(run) => old.get(run).unwrap_or_default(),
                Piece::Fresh(k) => fresh.get(k).map(|e| &e[..]).unwrap_or_default(),
            })
            .collect();
        // The files the old record covers are still as it saw them.
        if let Some(path) = self.rec.changed_file() {
            return Err(format!("'{path}' changed during the build"));
        }
        next.edit = Some(base);
        crate::cache::kept_text::save(
            &inv.root,
            &inv.name,
            self.text,
            &digest,
            self.redactor,
            Some(self.kept),
        )
        .map_err(|e| e.to_string())?;
        let count = self.rec.node_count() as u32;
        next.save_with(&inv.root, &inv.name, count, &pieces)
            .map_err(|e| e.to_string())
    }
}

/// What the executor told of a built node while the other nodes' lines were made.
enum Told {
    Started(usize),
    Finished(Box<NodeReport>),
}

impl Told {
    fn tell(self, progress: &mut crate::report::Progress, v: &Validated) {
        match self {
            Told::Started(k) => progress.started(v.graph.id(k)),
            Told::Finished(r) => progress.finished(&r),
        }
    }
}

/// A piece of the edited workflow's record: a run of the old record's encoded nodes
/// (where they are in it), or a node encoded anew (its place among the fresh ones).
enum Piece {
    Kept(std::ops::Range<usize>),
    Fresh(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base of `deps.len()` nodes, node i reading `deps[i]`.
    fn base_of(deps: &[&[u32]]) -> EditBase {
        let layout = crate::node_texts::Layout {
            open: 0,
            close: 10 * deps.len() as u32 + 10,
            nodes: (0..deps.len() as u32)
                .map(|i| (10 * i + 1, 10 * i + 5))
                .collect(),
        };
        let mut base = EditBase::with_capacity([0; 32], [0; 32], layout, 0);
        for d in deps {
            base.push(d);
        }
        base
    }

    #[test]
    fn reach_in_the_recorded_order_is_reach_through_the_readers() {
        // 1 reads 0, 3 reads 1, 5 reads 3, 2 reads 0 and 4.
        let base = base_of(&[&[], &[0], &[0, 4], &[1], &[], &[3]]);
        let order = [4, 0, 1, 2, 3, 5];
        assert_eq!(
            reach_by_dependents(&base, &[1]),
            [false, true, false, true, false, true]
        );
        for changed in [vec![0], vec![1], vec![4], vec![2, 4], vec![5], vec![]] {
            assert_eq!(
                reach_in_order(&base, &changed, &order),
                Some(reach_by_dependents(&base, &changed)),
                "changed {changed:?}"
            );
        }
        // An order in which a node comes before one it reads, or that leaves one out or
        // has one twice, is not used.
        assert_eq!(reach_in_order(&base, &[0], &[1, 0, 2, 3, 4, 5]), None);
        assert_eq!(reach_in_order(&base, &[0], &[0, 1, 2, 3, 4]), None);
        assert_eq!(reach_in_order(&base, &[0], &[4, 0, 1, 1, 3, 5]), None);
        assert_eq!(reach_in_order(&base, &[9], &order), None, "no such node");
        let loops = base_of(&[&[0]]);
        assert_eq!(
            reach_in_order(&loops, &[], &[0]),
            None,
            "a node that reads itself"
        );
    }
}
