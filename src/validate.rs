//! Validation: from a JSON document to a checked, compiled workflow.
//!
//! One pass collects every problem (structure, ids, edges, node types, params, templates,
//! cycles), each with its JSON path, so a person or an LLM can fix the whole workflow from
//! one report. The same function checks a repair before it runs. Its product,
//! [`Validated`], carries what execution needs: the DAG, the topological order and each
//! node's params with their templates parsed once.

use crate::diagnostic::{quoted_list, suggestion, Diagnostic, Severity};
use crate::file_pattern::FilePattern;
use crate::graph::{Graph, Link};
use crate::nodes::{self, NodeSpec, OutputKind};
use crate::template::{ParamTemplate, Part, Reference, Step, Template};
use crate::workflow::{field_path, BatchItems, EdgeAction, Workflow};
use serde_json::Value;
use std::cell::{Cell, OnceCell};
use std::collections::{BTreeSet, HashSet};

/// Hard limit on workflow size, so a hostile file fails fast with a clear message.
pub use crate::source::MAX_NODES;

/// A workflow that passed validation, compiled for execution.
#[derive(Debug, Clone)]
pub struct Validated {
    pub workflow: Workflow,
    pub graph: Graph,
    pub order: Vec<usize>,
    pub nodes: Vec<CompiledNode>,
    /// Declared outputs with their parsed `source` templates.
    pub outputs: Vec<(String, Option<Template>)>,
    pub warnings: Vec<Diagnostic>,
    /// The files of the nested workflows expanded into this one ([`crate::nested`]).
    pub nested_files: Vec<std::path::PathBuf>,
    /// The literal values the secret inputs of nested workflows were given: redacted
    /// like the workflow's own secret inputs.
    pub nested_secrets: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct CompiledNode {
    pub spec: &'static NodeSpec,
    /// Params in workflow order, templates parsed.
    pub params: Vec<(String, ParamTemplate)>,
    /// For a batch node: its items, templates parsed.
    pub items: Option<ParamTemplate>,
    /// Workflow inputs this node's templates read.
    pub input_refs: BTreeSet<String>,
    /// Whether the params read `${__index__}` (then an item's position is part of its key).
    pub uses_index: bool,
    /// The node's declared `reads` and `writes`.
    pub reads: Vec<FilePattern>,
    pub writes: Vec<FilePattern>,
}

impl CompiledNode {
    /// The node's secret params (a shell `env`, an HTTP token) whose values come from
    /// templates: what they resolve to is a secret the redactor learns at run time.
    pub fn secret_templates(&self) -> impl Iterator<Item = &ParamTemplate> {
        let spec = self.spec;
        self.params.iter().flat_map(move |(name, pt)| {
            let whole = (spec.secret_params.contains(&name.as_str()) || spec.secret_by_name(name))
                .then_some(pt);
            // A header param's credential fields, one by one.
            let fields = match pt {
                ParamTemplate::Object(fields)
                    if spec.secret_header_params.contains(&name.as_str()) =>
                {
                    fields.as_slice()
                }
                _ => &[],
            };
            let fields = fields
                .iter()
                .filter(|(k, _)| crate::nodes::is_secret_header_name(k))
                .map(|(_, pt)| pt);
            whole
                .into_iter()
                .chain(fields)
                .filter(|pt| !pt.is_literal())
        })
    }
}

/// Every problem found: errors (which stop the workflow) and warnings.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Validated {
    /// Under `--strict`: the warnings marked [`Diagnostic::strict_error`] (values pasted
    /// into shell code) are errors.
    pub fn strict(self) -> Result<Validated, Report> {
        if !self.warnings.iter().any(|w| w.strict_error) {
            return Ok(self);
        }
        let (errors, warnings): (Vec<Diagnostic>, Vec<Diagnostic>) =
            self.warnings.into_iter().partition(|w| w.strict_error);
        let errors = errors
            .into_iter()
            .map(|mut d| {
                d.severity = Severity::Error;
                d
            })
            .collect();
        Err(Report { errors, warnings })
    }
}

/// What a template root names, from one node's point of view.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Root {
    Alias,
    Index,
    Input,
    Node(usize),
    Unknown,
}

struct Names<'a> {
    wf: &'a Workflow,
    ids: foldhash::HashMap<&'a str, usize>,
    /// Node ids, sorted; built on the first error that needs them.
    sorted_ids: OnceCell<Vec<&'a str>>,
    /// Node ids and input names, sorted and deduplicated; built on first use.
    sorted_names: OnceCell<Vec<&'a str>>,
    /// "Did you mean" costs a pass over every name; a workflow with thousands of bad
    /// references gets suggestions for the first few only, so validation stays linear.
    suggestions_left: Cell<usize>,
    /// Edit-distance work (table cells) the searches may still do: with 100,000 long
    /// ids, even a few searches would otherwise take minutes.
    suggestion_work: Cell<u64>,
}

/// How many "did you mean" searches over all names one validation may do.
const SUGGESTION_BUDGET: usize = 100;
/// Edit-distance table cells one validation may fill for "did you mean".
const SUGGESTION_WORK: u64 = 20_000_000;
/// How many names a hint lists before it says how many more there are.
const LISTED_NAMES: usize = 20;

/// `a, b, c` or, for a long list, `a, b, … (and 120 more)`.
fn name_list(names: &[&str]) -> String {
    if names.len() <= LISTED_NAMES {
        names.join(", ")
    } else {
        format!(
            "{}, … (and {} more)",
            names[..LISTED_NAMES].join(", "),
            names.len() - LISTED_NAMES
        )
    }
}

impl<'a> Names<'a> {
    fn classify(&self, root: &str, batch_alias: Option<&str>) -> Root {
        if batch_alias == Some(root) {
            Root::Alias
        } else if batch_alias.is_some() && root == "__index__" {
            Root::Index
        } else if let Some(&i) = self.ids.get(root) {
            Root::Node(i)
        } else if self.wf.inputs.contains_key(root) {
            Root::Input
        } else {
            Root::Unknown
        }
    }

    fn sorted_ids(&self) -> &[&'a str] {
        self.sorted_ids.get_or_init(|| {
            let mut all: Vec<&str> = self.ids.keys().copied().collect();
            all.sort_unstable();
            all
        })
    }

    /// Node ids and input names, sorted.
    fn sorted_names(&self) -> &[&'a str] {
        self.sorted_names.get_or_init(|| {
            let wf: &'a Workflow = self.wf;
            let mut all: Vec<&'a str> = wf
                .nodes
                .iter()
                .map(|n| n.id.as_str())
                .chain(wf.inputs.keys().map(|k| k.as_str()))
                .filter(|n| !n.is_empty())
                .collect();
            all.sort_unstable();
            all.dedup();
            all
        })
    }

    /// "did you mean" among `candidates`, while the budget lasts.
    fn suggest(&self, word: &str, candidates: &[&str]) -> Option<String> {
        let left = self.suggestions_left.get();
        if left == 0 {
            return None;
        }
        self.suggestions_left.set(left - 1);
        let mut work = self.suggestion_work.get();
        let found =
            crate::diagnostic::did_you_mean_within(word, candidates.iter().copied(), &mut work);
        self.suggestion_work.set(work);
        found.map(|c| format!("did you mean '{c}'?"))
    }

    /// A hint for a name that is not a node id: the closest id, or the ids there are.
    fn node_hint(&self, word: &str) -> String {
        self.suggest(word, self.sorted_ids())
            .unwrap_or_else(|| format!("node ids are: {}", name_list(self.sorted_ids())))
    }
}

/// Validate a parsed JSON document.
pub fn validate(doc: &Value) -> Result<Validated, Report> {
    let (wf, errors) = Workflow::from_json(doc);
    let Some(wf) = wf else {
        return Err(Report {
            errors,
            warnings: Vec::new(),
        });
    };
    validate_workflow(wf, errors)
}

/// Validate a decoded workflow, adding to the structural problems already found.
pub fn validate_workflow(wf: Workflow, structural: Vec<Diagnostic>) -> Result<Validated, Report> {
    validate_with_known(wf, structural, &|_| false, Vec::new())
}

/// Validate part of a workflow that passed before: the nodes `known` names (by position)
/// are ones whose results are already known (the edit path of `pflow build`). Such a
/// node is present for what others need of it (its id, type and batch), its own params
/// are not checked or compiled (they may name nodes outside the part) and it depends on
/// nothing.
///
/// `given` holds, by position, nodes compiled before whose text and context are
/// unchanged ([`crate::node_form`]): such a node is taken as it is, not checked or
/// compiled again, and depends on the nodes its templates name.
pub fn validate_with_known(
    wf: Workflow,
    structural: Vec<Diagnostic>,
    known: &dyn Fn(usize) -> bool,
    mut given: Vec<Option<CompiledNode>>,
) -> Result<Validated, Report> {
    let mut errors = structural;
    let mut warnings = Vec::new();

    if wf.nodes.len() > MAX_NODES {
        errors.push(crate::source::too_many_nodes(wf.nodes.len()));
        return Err(Report { errors, warnings });
    }

    // Ids: unique, and distinct from input names.
    let mut ids: foldhash::HashMap<&str, usize> =
        foldhash::HashMap::with_capacity_and_hasher(wf.nodes.len(), Default::default());
    for (i, node) in wf.nodes.iter().enumerate() {
        if node.id.is_empty() {
            continue;
        }
        if let Some(&first) = ids.get(node.id.as_str()) {
            errors.push(
                Diagnostic::error(
                    format!("nodes[{i}].id"),
                    format!("duplicate node id '{}'", node.id),
                )
                .with_hint(format!(
                    "nodes[{first}] already uses it; every node needs its own id"
                )),
            );
        } else {
            ids.insert(&node.id, i);
        }
        if wf.inputs.contains_key(&node.id) {
            errors.push(
                Diagnostic::error(
                    format!("nodes[{i}].id"),
                    format!("node id '{}' is also the name of a workflow input", node.id),
                )
                .with_hint("rename the node or the input so ${...} templates are not ambiguous"),
            );
        }
    }
    let names = Names {
        wf: &wf,
        ids,
        sorted_ids: OnceCell::new(),
        sorted_names: OnceCell::new(),
        suggestions_left: Cell::new(SUGGESTION_BUDGET),
        suggestion_work: Cell::new(SUGGESTION_WORK),
    };

    // Inputs: at most one receives stdin.
    let stdin_inputs: Vec<&str> = wf
        .inputs
        .iter()
        .filter(|(_, s)| s.stdin)
        .map(|(k, _)| k.as_str())
        .collect();
    if stdin_inputs.len() > 1 {
        errors.push(
            Diagnostic::error(
                format!("inputs.{}.stdin", stdin_inputs[1]),
                format!(
                    "more than one input is marked \"stdin\": true ({})",
                    quoted_list(stdin_inputs.iter().copied())
                ),
            )
            .with_hint("only one input can receive piped stdin"),
        );
    }

    if let Some(start) = &wf.start_node {
        if !names.ids.contains_key(start.as_str()) {
            errors.push(
                Diagnostic::error(
                    "start_node",
                    format!("start_node '{start}' is not a node in this workflow"),
                )
                .with_hint(names.node_hint(start)),
            );
        }
    }

    // Edges.
    let mut links: Vec<(usize, usize, Link)> = Vec::new();
    for (i, edge) in wf.edges.iter().enumerate() {
        let mut endpoint = |id: &str, field: &str| match names.ids.get(id) {
            Some(&p) => Some(p),
            None => {
                let hint = names.node_hint(id);
                errors.push(
                    Diagnostic::error(
                        format!("edges[{i}].{field}"),
                        format!("edge refers to node '{id}', which does not exist"),
                    )
                    .with_hint(hint),
                );
                None
            }
        };
        let from = endpoint(&edge.from, "from");
        let to = endpoint(&edge.to, "to");
        if let (Some(f), Some(t)) = (from, to) {
            let link = match edge.action {
                EdgeAction::Default => Link::Edge,
                EdgeAction::Error => Link::ErrorEdge,
            };
            links.push((f, t, link));
        }
    }

    // Nodes: types, params, templates.
    let mut compiled: Vec<Option<CompiledNode>> = Vec::with_capacity(wf.nodes.len());
    for (i, node) in wf.nodes.iter().enumerate() {
        if let Some(cn) = given.get_mut(i).and_then(Option::take) {
            for (_, pt) in &cn.params {
                for r in pt.refs() {
                    if let Root::Node(dep) = names.classify(&r.root, None) {
                        links.push((dep, i, Link::Template));
                    }
                }
            }
            compiled.push(Some(cn));
            continue;
        }
        // Paths are only spelled out for a diagnostic: most nodes never need one.
        let path = NodePath(i);
        let spec = if node.node_type.is_empty() {
            None
        } else {
            let found = match node.scoped {
                true => nodes::nested::lookup(&node.node_type)
                    .or_else(|| nodes::lookup(&node.node_type)),
                false => nodes::lookup(&node.node_type),
            };
            match found {
                Some(s) if std::ptr::eq(s, &nodes::nested::WORKFLOW) => {
                    errors.push(Diagnostic::error(
                        format!("{path}.type"),
                        format!(
                            "workflow node '{}' was not expanded{}",
                            node.id,
                            nodes::unsupported_note(&node.node_type)
                        ),
                    ));
                    None
                }
                Some(s) => Some(s),
                None => {
                    let supported: Vec<&str> = nodes::type_names().collect();
                    let mut hint = format!("supported types: {}", supported.join(", "));
                    if let Some(s) = suggestion(&node.node_type, supported.iter().copied()) {
                        hint = format!("{s} {hint}");
                    }
                    errors.push(
                        Diagnostic::error(
                            format!("{path}.type"),
                            format!(
                                "unknown node type '{}' for node '{}'{}",
                                node.node_type,
                                node.id,
                                nodes::unsupported_note(&node.node_type)
                            ),
                        )
                        .with_hint(hint),
                    );
                    None
                }
            }
        };

        // An internal type's params are whatever expansion gave it.
        if let Some(spec) = spec.filter(|s| !nodes::nested::is_internal(s) && !known(i)) {
            for p in spec.params.iter().filter(|p| p.required) {
                if !node.params.contains_key(p.name)
                    || node.params.get(p.name) == Some(&Value::Null)
                {
                    let mut d = Diagnostic::error(
                        format!("{path}.params.{}", p.name),
                        format!(
                            "node '{}' ({}) is missing required param '{}'",
                            node.id, spec.name, p.name
                        ),
                    );
                    let unknown: Vec<&str> = node
                        .params
                        .keys()
                        .map(|k| k.as_str())
                        .filter(|k| spec.param(k).is_none())
                        .collect();
                    if let Some(similar) = unknown
                        .iter()
                        .find(|k| crate::diagnostic::did_you_mean(k, [p.name]).is_some())
                    {
                        d = d.with_hint(format!("rename '{similar}' to '{}'", p.name));
                    }
                    errors.push(d);
                }
            }
            for (name, value) in &node.params {
                match spec.param(name) {
                    None => {
                        let valid: Vec<&str> = spec.params.iter().map(|p| p.name).collect();
                        let (list, d) = if spec.closed_params {
                            (
                                &mut errors,
                                Diagnostic::error(
                                    field_path(&format!("{path}.params"), name),
                                    format!("'{}' is not a param of {} nodes", name, spec.name),
                                ),
                            )
                        } else {
                            (
                                &mut warnings,
                                Diagnostic::warning(
                                    field_path(&format!("{path}.params"), name),
                                    format!(
                                        "'{}' is not a param of {} nodes and is ignored",
                                        name, spec.name
                                    ),
                                ),
                            )
                        };
                        list.push(d.with_hint(
                            suggestion(name, valid.iter().copied()).unwrap_or_else(|| {
                                format!("{} params: {}", spec.name, valid.join(", "))
                            }),
                        ));
                    }
                    Some(p) => {
                        let is_template = matches!(value, Value::String(s) if s.contains("${"));
                        if !is_template && !value.is_null() && !p.kind.admits(value) {
                            errors.push(Diagnostic::error(
                                field_path(&format!("{path}.params"), name),
                                format!(
                                    "param '{name}' of node '{}' must be {}, found {}",
                                    node.id,
                                    p.kind.describe(),
                                    crate::template::type_name(value)
                                ),
                            ));
                        } else if let (nodes::ParamKind::Bool, Value::String(text), false) =
                            (p.kind, value, is_template)
                        {
                            // Read as a boolean at run time, but a quoted word where JSON
                            // has true and false is usually a slip.
                            let as_bool = nodes::bool_text(text).unwrap_or_default();
                            warnings.push(
                                Diagnostic::warning(
                                    field_path(&format!("{path}.params"), name),
                                    format!(
                                        "param '{name}' of node '{}' is the text \"{text}\", read as {as_bool}",
                                        node.id
                                    ),
                                )
                                .with_hint(format!("write {as_bool} without quotes")),
                            );
                        } else if let Some(why) = p
                            .literal_check
                            .filter(|_| !is_template && !value.is_null())
                            .and_then(|check| check(value))
                        {
                            errors.push(Diagnostic::error(
                                field_path(&format!("{path}.params"), name),
                                format!("{why} (node '{}')", node.id),
                            ));
                        } else if let Some(why) =
                            literal_number(value).and_then(|x| p.out_of_range(x))
                        {
                            errors.push(Diagnostic::error(
                                field_path(&format!("{path}.params"), name),
                                format!("{why} (node '{}')", node.id),
                            ));
                        }
                    }
                }
            }
        }

        if known(i) {
            compiled.push(spec.map(|spec| CompiledNode {
                spec,
                params: Vec::new(),
                items: None,
                input_refs: BTreeSet::new(),
                uses_index: false,
                reads: patterns(&node.reads),
                writes: patterns(&node.writes),
            }));
            continue;
        }
        let alias = node.batch.as_ref().map(|b| b.alias.as_str());
        let mut params = Vec::with_capacity(node.params.len());
        let mut input_refs = BTreeSet::new();
        let mut uses_index = false;
        let mut ok = true;
        for (name, value) in &node.params {
            let ppath = ParamPath { node: i, name };
            let compiled = match node.scoped {
                true => ParamTemplate::compile_scoped(value),
                false => ParamTemplate::compile(value),
            };
            match compiled {
                Ok(pt) => {
                    for r in pt.refs() {
                        let root = names.classify(&r.root, alias);
                        check_reference(r, root, &names, &ppath, spec, alias, &mut errors);
                        match root {
                            Root::Node(dep) => links.push((dep, i, Link::Template)),
                            Root::Input => {
                                input_refs.insert(r.root.clone());
                            }
                            Root::Index => uses_index = true,
                            _ => {}
                        }
                    }
                    if let (Some(spec), ParamTemplate::Template(t)) = (spec, &pt) {
                        shell_warnings(
                            spec,
                            name,
                            t,
                            &names,
                            alias,
                            &ppath,
                            (&mut errors, &mut warnings),
                        );
                    }
                    params.push((name.clone(), pt));
                }
                Err((suffix, e)) => {
                    ok = false;
                    errors.push(
                        Diagnostic::error(format!("{ppath}{suffix}"), e.message)
                            .with_hint("templates look like ${input} or ${node.output}; write $${ for a literal ${"),
                    );
                }
            }
        }

        let items = match node.batch.as_ref().map(|b| &b.items) {
            None => None,
            Some(items) => {
                let ipath = format!("{path}.batch.items");
                let value = match items {
                    BatchItems::Template(t) => Value::String(t.clone()),
                    BatchItems::Inline(v) => Value::Array(v.clone()),
                };
                let compiled = match node.scoped {
                    true => ParamTemplate::compile_scoped(&value),
                    false => ParamTemplate::compile(&value),
                };
                match compiled {
                    Ok(pt) => {
                        for r in pt.refs() {
                            // The items are resolved before any item exists, so the alias
                            // and index are not visible here.
                            let root = names.classify(&r.root, None);
                            check_reference(r, root, &names, &ipath, spec, None, &mut errors);
                            match root {
                                Root::Node(dep) => links.push((dep, i, Link::Template)),
                                Root::Input => {
                                    input_refs.insert(r.root.clone());
                                }
                                _ => {}
                            }
                        }
                        Some(pt)
                    }
                    Err((suffix, e)) => {
                        ok = false;
                        errors.push(Diagnostic::error(format!("{ipath}{suffix}"), e.message));
                        None
                    }
                }
            }
        };

        compiled.push(match (spec, ok) {
            (Some(spec), true) => Some(CompiledNode {
                spec,
                params,
                items,
                input_refs,
                uses_index,
                reads: patterns(&node.reads),
                writes: patterns(&node.writes),
            }),
            _ => None,
        });
    }

    // Outputs.
    let mut outputs = Vec::with_capacity(wf.outputs.len());
    let mut produced_fields: Option<HashSet<&str>> = None;
    for (name, spec) in &wf.outputs {
        let opath = format!("{}.source", field_path("outputs", name));
        let Some(source) = &spec.source else {
            let produced = produced_fields
                .get_or_insert_with(|| {
                    let types: HashSet<&str> =
                        wf.nodes.iter().map(|n| n.node_type.as_str()).collect();
                    types
                        .into_iter()
                        .filter_map(nodes::lookup)
                        .flat_map(|s| s.outputs.iter().map(|o| o.name))
                        .collect()
                })
                .contains(name.as_str());
            if !produced {
                warnings.push(
                    Diagnostic::warning(
                        field_path("outputs", name),
                        format!("output '{name}' has no source and no node produces a field of that name; it will be missing"),
                    )
                    .with_hint("add \"source\": \"${node.field}\""),
                );
            } else {
                warnings.push(
                    Diagnostic::warning(field_path("outputs", name), format!("output '{name}' has no source"))
                        .with_hint(format!("it takes the '{name}' field of the last node that produces one; add \"source\" to be explicit")),
                );
            }
            outputs.push((name.clone(), None));
            continue;
        };
        match Template::parse(source) {
            Ok(t) => {
                for r in t.refs() {
                    let root = names.classify(&r.root, None);
                    check_reference(r, root, &names, &opath, None, None, &mut errors);
                }
                outputs.push((name.clone(), Some(t)));
            }
            Err(e) => errors.push(Diagnostic::error(opath, e.message)),
        }
    }

    // The graph and its order.
    links.extend(crate::file_edges::implied_links(&wf, &mut errors));
    let ids: Vec<String> = wf.nodes.iter().map(|n| n.id.clone()).collect();
    let graph = Graph::new(ids, links);
    let order = match graph.topological_order() {
        Ok(order) => order,
        Err(cycles) => {
            for cycle in cycles {
                errors.push(cycle_diagnostic(&graph, &cycle));
            }
            Vec::new()
        }
    };

    if !errors.is_empty() {
        return Err(Report { errors, warnings });
    }
    let mut nodes: Vec<CompiledNode> = Vec::with_capacity(compiled.len());
    nodes.extend(compiled.into_iter().flatten());
    if nodes.len() != wf.nodes.len() {
        // Unreachable when there are no errors; kept as a guard rather than a panic.
        errors.push(Diagnostic::error(
            "nodes",
            "internal: a node failed to compile without an error",
        ));
        return Err(Report { errors, warnings });
    }
    Ok(Validated {
        workflow: wf,
        graph,
        order,
        nodes,
        outputs,
        warnings,
        nested_files: Vec::new(),
        nested_secrets: Vec::new(),
    })
}

/// Warnings for values a shell param of a `spec` node pastes into its text as code
/// (`--strict` makes them errors): a `|raw` reference, a value inside a here-document
/// with a quoted delimiter, text a second shell parses. Every other value is passed as a
/// variable and cannot change the command ([`crate::shell_text`]). `|raw` elsewhere
/// changes nothing, which is said too.
fn shell_warnings(
    spec: &NodeSpec,
    name: &str,
    t: &Template,
    names: &Names<'_>,
    alias: Option<&str>,
    path: &ParamPath<'_>,
    (errors, warnings): (&mut Vec<Diagnostic>, &mut Vec<Diagnostic>),
) {
    if !spec.shell_params.contains(&name) {
        for r in t.refs().filter(|r| r.raw) {
            warnings.push(
                Diagnostic::warning(
                    path.to_string(),
                    format!("'|raw' in {r} changes nothing outside shell text"),
                )
                .with_hint(format!("write {}", safe_spelling(r))),
            );
        }
        return;
    }
    let mut scanner = crate::shell_text::Scanner::new();
    for part in &t.parts {
        let r = match part {
            Part::Text(text) => {
                scanner.text(text);
                continue;
            }
            Part::Ref(r) => r,
        };
        let spot = scanner.value();
        // `__index__` is a number pflow makes: no one can put code in it. A comment runs
        // nothing.
        if names.classify(&r.root, alias) == Root::Index
            || spot.context == crate::shell_text::Context::Comment
        {
            continue;
        }
        let from = value_origin(r, names, alias);
        let (why, hint) = if r.raw {
            (
                "'|raw' asks for that".to_string(),
                format!(
                    "write {} and pflow passes the value as a variable that cannot change the command",
                    safe_spelling(r)
                ),
            )
        } else if let Some(why) = spot.unsafe_because() {
            let hint = if spot.second_shell.is_some() {
                format!("give it to the inner command as an argument instead, e.g. sh -c 'echo \"$1\"' sh {}", safe_spelling(r))
            } else {
                "write the here-document's delimiter unquoted (<<EOF), where pflow passes the value as a variable".to_string()
            };
            (why, hint)
        } else {
            continue;
        };
        let message = format!(
            "the {name} pastes {r} ({from}) into shell code: {why}, so the value could run commands"
        );
        // A quoted here-document cannot take the value as a variable: the build refuses
        // it (it never pastes a value it was not asked to), so it is an error here too.
        if spot.context == crate::shell_text::Context::LiteralHeredoc && !r.raw {
            errors.push(Diagnostic::error(path.to_string(), message).with_hint(hint));
            continue;
        }
        warnings.push(
            Diagnostic::warning(path.to_string(), message)
                .with_hint(hint)
                .strict_error(),
        );
    }
}

/// `r` without `|raw`.
fn safe_spelling(r: &Reference) -> String {
    format!("${{{}}}", r.path_string())
}

/// Where a reference's value comes from, for a warning.
fn value_origin(r: &Reference, names: &Names<'_>, alias: Option<&str>) -> String {
    match names.classify(&r.root, alias) {
        Root::Input => format!("the input '{}'", r.root),
        Root::Alias => "a batch item".to_string(),
        Root::Node(dep) => {
            let t = &names.wf.nodes[dep].node_type;
            match nodes::lookup(t) {
                Some(spec)
                    if r.first_key()
                        .is_some_and(|k| spec.untrusted_outputs.contains(&k)) =>
                {
                    format!("text an {t} node received")
                }
                _ => format!("an output of node '{}'", r.root),
            }
        }
        Root::Index | Root::Unknown => format!("'{}'", r.root),
    }
}

/// `nodes[i]`, spelled out only when displayed.
#[derive(Clone, Copy)]
struct NodePath(usize);

impl std::fmt::Display for NodePath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "nodes[{}]", self.0)
    }
}

/// `nodes[i].params.<name>` (bracketed when the name needs it), spelled out only when
/// displayed.
#[derive(Clone, Copy)]
struct ParamPath<'a> {
    node: usize,
    name: &'a str,
}

impl std::fmt::Display for ParamPath<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&field_path(
            &format!("nodes[{}].params", self.node),
            self.name,
        ))
    }
}

/// Check one template reference and report what is wrong with it. `spec` is the
/// referring node's type (None for a workflow output or an unknown type).
fn check_reference(
    r: &Reference,
    root: Root,
    names: &Names<'_>,
    path: &dyn std::fmt::Display,
    spec: Option<&NodeSpec>,
    alias: Option<&str>,
    errors: &mut Vec<Diagnostic>,
) {
    match root {
        Root::Alias | Root::Index | Root::Input => {}
        Root::Unknown => {
            let name = r.root.as_str();
            let in_batch_only = name == "__index__" || name == "item";
            let message = if in_batch_only && alias.is_none() {
                format!("template {r}: '{name}' is only defined inside a batch node")
            } else {
                format!("template {r}: '{name}' is not a workflow input or a node id")
            };
            let looks_like_env = r.path.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_');
            let runs_shell = spec.is_some_and(NodeSpec::runs_shell);
            let hint = if looks_like_env || runs_shell && r.path.is_empty() {
                let mut h = format!("if this is a shell variable, write $${{{name}}} (or ${name}) so pflow leaves it to the shell");
                if let Some(env) = spec.filter(|s| s.runs_shell()).and_then(|s| s.env_param) {
                    h.push_str(&format!(
                        "; to pass a value in, use the node's \"{env}\" param"
                    ));
                }
                if let Some(s) = names.suggest(name, names.sorted_names()) {
                    h = format!("{s} Otherwise, {h}");
                }
                h
            } else {
                let avail = names.sorted_names();
                names
                    .suggest(name, avail)
                    .unwrap_or_else(|| format!("inputs and nodes are: {}", name_list(avail)))
            };
            errors.push(Diagnostic::error(path.to_string(), message).with_hint(hint));
        }
        Root::Node(dep) => {
            let target = &names.wf.nodes[dep];
            // A nested workflow's outputs (or inputs) node outputs its params. (None when
            // its workflow failed to load: that is reported on its own.)
            if target.scoped
                && !target.params.is_empty()
                && nodes::nested::lookup(&target.node_type).is_some()
            {
                let fields: Vec<&str> = target.params.keys().map(String::as_str).collect();
                let key = match r.path.first() {
                    Some(Step::Key(k)) => k.as_str(),
                    _ => "",
                };
                if !fields.contains(&key) {
                    let hint = suggestion(key, fields.iter().copied())
                        .unwrap_or_else(|| format!("its outputs: {}", fields.join(", ")));
                    errors.push(
                        Diagnostic::error(
                            path.to_string(),
                            format!(
                                "template {r}: workflow node '{}' has no output '{key}'",
                                target.id
                            ),
                        )
                        .with_hint(hint),
                    );
                }
                return;
            }
            let Some(spec) = nodes::lookup(&target.node_type) else {
                return; // the unknown type is reported on its own
            };
            let field_names = |is_batch: bool| -> Vec<&'static str> {
                if is_batch {
                    BATCH_OUTPUTS.to_vec()
                } else {
                    spec.outputs.iter().map(|o| o.name).collect()
                }
            };
            let is_batch = target.batch.is_some();
            let Some(first) = r.path.first() else {
                errors.push(
                    Diagnostic::error(
                        path.to_string(),
                        format!(
                            "template {r} names node '{}' but not which of its outputs",
                            target.id
                        ),
                    )
                    .with_hint(format!(
                        "write one of: {}",
                        field_names(is_batch)
                            .iter()
                            .map(|f| format!("${{{}.{f}}}", target.id))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )),
                );
                return;
            };
            let Step::Key(key) = first else {
                errors.push(Diagnostic::error(
                    path.to_string(),
                    format!(
                        "template {r}: node '{}' is not an array; name an output first",
                        target.id
                    ),
                ));
                return;
            };
            let unknown = |key: &str, fields: Vec<&'static str>, what: String| {
                Diagnostic::error(
                    path.to_string(),
                    format!("template {r}: {what} does not output '{key}'"),
                )
                .with_hint(
                    suggestion(key, fields.iter().copied())
                        .map(|s| format!("{s} Available outputs: {}", fields.join(", ")))
                        .unwrap_or_else(|| format!("available outputs: {}", fields.join(", "))),
                )
            };
            if is_batch {
                if !BATCH_OUTPUTS.contains(&key.as_str()) {
                    errors.push(unknown(
                        key,
                        BATCH_OUTPUTS.to_vec(),
                        format!("batch node '{}'", target.id),
                    ));
                    return;
                }
                // ${b.results[i].field}: field is an inner output, `item` or `error`.
                if key == "results" {
                    if let (Some(Step::Index(_)), Some(Step::Key(inner))) =
                        (r.path.get(1), r.path.get(2))
                    {
                        let mut fields: Vec<&'static str> =
                            spec.outputs.iter().map(|o| o.name).collect();
                        fields.extend(["item", "error"]);
                        if !spec.open_outputs && !fields.contains(&inner.as_str()) {
                            errors.push(unknown(
                                inner,
                                fields,
                                format!(
                                    "each result of batch node '{}' ({})",
                                    target.id, spec.name
                                ),
                            ));
                        }
                    }
                }
                return;
            }
            match spec.output(key) {
                // Named by what the node returns when it runs (checked then).
                None if spec.open_outputs => {}
                None => errors.push(unknown(
                    key,
                    field_names(false),
                    format!("node '{}' ({})", target.id, spec.name),
                )),
                Some(o) if o.kind == OutputKind::Scalar && r.path.len() > 1 => {
                    errors.push(Diagnostic::error(
                        path.to_string(),
                        format!(
                            "template {r}: '{}.{key}' is a number or boolean and has no fields",
                            target.id
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

/// The outputs of every batch node.
/// Declared paths, parsed (decoding has already reported any that do not parse).
fn patterns(raw: &[String]) -> Vec<FilePattern> {
    raw.iter()
        .filter_map(|p| FilePattern::parse(p).ok())
        .collect()
}

pub const BATCH_OUTPUTS: [&str; 5] = ["results", "count", "success_count", "error_count", "errors"];

fn cycle_diagnostic(graph: &Graph, cycle: &[usize]) -> Diagnostic {
    let mut steps = Vec::new();
    for pair in cycle.windows(2) {
        let links = graph.links_between(pair[0], pair[1]);
        let how = match links.first() {
            Some(Link::Template) => "template",
            Some(Link::ErrorEdge) => "error edge",
            Some(Link::Path) => "file",
            _ => "edge",
        };
        steps.push(format!(
            "'{}' → '{}' ({how})",
            graph.id(pair[0]),
            graph.id(pair[1])
        ));
    }
    let start = cycle.first().copied().unwrap_or(0);
    let members: Vec<&str> = cycle[..cycle.len().saturating_sub(1).max(1)]
        .iter()
        .map(|&i| graph.id(i))
        .collect();
    let message = if cycle.len() == 2 && cycle[0] == cycle[1] {
        format!(
            "node '{}' depends on itself: {}",
            graph.id(start),
            steps.join(", ")
        )
    } else {
        format!(
            "cycle between nodes {}: {}",
            quoted_list(members.iter().copied()),
            steps.join(", ")
        )
    };
    Diagnostic::error(format!("nodes[{start}]"), message)
        .with_hint("a node cannot depend on its own output, directly or through others; remove one of these links")
}

/// A literal number param as its node reads it (a number, or text that spells one).
fn literal_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) if !s.contains("${") => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(doc: Value) -> Vec<Diagnostic> {
        validate(&doc).expect_err("should be invalid").errors
    }

    #[test]
    fn valid_workflow_compiles_in_dependency_order() {
        let v = validate(&json!({
            "inputs": {"name": {"type": "string"}},
            "nodes": [
                {"id": "b", "type": "shell", "params": {"command": "echo ${a.echo} ${name}"}},
                {"id": "a", "type": "echo", "params": {"message": "x"}}
            ]
        }))
        .expect("valid");
        assert_eq!(v.order, vec![1, 0]);
        assert_eq!(v.nodes[0].input_refs, BTreeSet::from(["name".to_string()]));
    }

    #[test]
    fn known_nodes_lend_their_id_and_type_and_nothing_else_is_checked_of_them() {
        let part = |b_message: &str| {
            let doc = json!({"nodes": [
                // Known: reads a node outside the part, and would not validate alone.
                {"id": "a", "type": "echo", "params": {"message": "${outside.echo}", "bogus": 1}},
                {"id": "b", "type": "echo", "params": {"message": b_message}}
            ]});
            let (wf, structural) = Workflow::from_json(&doc);
            validate_with_known(wf.expect("decodes"), structural, &|k| k == 0, Vec::new())
        };
        let v = part("${a.echo}").expect("the part validates");
        assert!(
            v.nodes[0].params.is_empty(),
            "a known node's params are not compiled"
        );
        assert_eq!(
            v.graph.dependencies(0).len(),
            0,
            "a known node reads nothing"
        );
        assert_eq!(v.graph.dependencies(1).len(), 1);
        assert_eq!(v.order, vec![0, 1]);
        assert!(v.warnings.is_empty(), "{:?}", v.warnings);
        // Others are checked against it as always.
        let e = part("${a.stdout}").expect_err("echo has no stdout").errors;
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message.contains("does not output 'stdout'"),
            "{}",
            e[0]
        );
        let e = part("${outside.echo}").expect_err("not in the part").errors;
        assert_eq!(e[0].path, "nodes[1].params.message");
    }

    #[test]
    fn unknown_output_field_suggests() {
        let e = errors(json!({"nodes": [
            {"id": "a", "type": "shell", "params": {"command": "echo"}},
            {"id": "b", "type": "shell", "params": {"command": "echo ${a.stdot}"}}
        ]}));
        assert_eq!(e[0].path, "nodes[1].params.command");
        assert!(e[0].message.contains("does not output 'stdot'"), "{}", e[0]);
        assert!(e[0]
            .hint
            .as_deref()
            .unwrap()
            .contains("did you mean 'stdout'?"));
    }

    #[test]
    fn only_values_pasted_into_shell_code_are_warned() {
        let warned = |command: &str| -> Vec<String> {
            let v = validate(&json!({"inputs": {"name": {"type": "string"}}, "nodes": [
                {"id": "get", "type": "http", "params": {"url": "http://x"}},
                {"id": "use", "type": "shell", "params": {"command": command}}
            ]}))
            .expect("valid");
            v.warnings.iter().map(|w| w.message.clone()).collect()
        };
        // Passed as variables: nothing to say, from any source, in any quoting.
        for safe in [
            "echo ${get.response} \"${name}\" '${get.response.items[0].name}'",
            "cat <<EOF\n${name}\nEOF",
            "echo a # ${name|raw}",
        ] {
            assert_eq!(warned(safe), Vec::<String>::new(), "{safe}");
        }
        let raw = warned("echo ${get.response|raw}");
        assert_eq!(raw.len(), 1, "{raw:?}");
        assert!(
            raw[0].contains("text an http node received") && raw[0].contains("'|raw'"),
            "{raw:?}"
        );
        // A quoted here-document cannot take a variable: an error, as the build refuses it.
        let Err(heredoc) = validate(&json!({"inputs": {"name": {"type": "string"}}, "nodes": [
            {"id": "use", "type": "shell", "params": {"command": "cat <<'EOF'\n${name}\nEOF"}}
        ]})) else {
            panic!("a quoted here-document with a value is valid")
        };
        let m = &heredoc.errors[0].message;
        assert!(
            m.contains("the input 'name'") && m.contains("quoted delimiter"),
            "{m}"
        );
        let arith = warned("echo $((${name} + 1))");
        assert!(arith[0].contains("arithmetic"), "{arith:?}");
        for inner in [
            "X=1 eval \"echo ${name}\"",
            "if eval \"echo ${name}\"; then :; fi",
            "trap \"echo ${name}\" EXIT",
            "sudo ssh host \"ls ${name}\"",
        ] {
            assert_eq!(warned(inner).len(), 1, "{inner}");
        }
        let inner = warned("bash -c \"echo ${get.status_code}\"");
        assert!(inner[0].contains("'bash -c' parses it"), "{inner:?}");
    }

    #[test]
    fn strict_makes_pasted_values_errors_and_keeps_other_warnings() {
        let v = validate(&json!({"inputs": {"name": {"type": "string"}}, "nodes": [
            {"id": "use", "type": "shell", "params": {"command": "echo ${name|raw}"}},
            {"id": "say", "type": "echo", "params": {"message": "${name|raw}"}}
        ]}))
        .expect("valid");
        assert_eq!(v.warnings.len(), 2);
        let Err(report) = v.strict() else {
            panic!("no error under --strict")
        };
        assert_eq!(report.errors.len(), 1);
        assert!(report.errors[0].is_error());
        assert_eq!(report.errors[0].path, "nodes[0].params.command");
        assert_eq!(report.warnings.len(), 1);
        assert!(report.warnings[0]
            .message
            .contains("changes nothing outside shell text"));
    }

    #[test]
    fn shell_variable_gets_escape_hint() {
        let e = errors(
            json!({"nodes": [{"id": "a", "type": "shell", "params": {"command": "echo ${HOME}"}}]}),
        );
        assert!(
            e[0].hint.as_deref().unwrap().contains("$${HOME}"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn template_cycle_names_nodes() {
        let e = errors(json!({"nodes": [
            {"id": "a", "type": "shell", "params": {"command": "echo ${b.stdout}"}},
            {"id": "b", "type": "shell", "params": {"command": "echo ${a.stdout}"}}
        ]}));
        assert!(
            e[0].message.contains("'a'") && e[0].message.contains("'b'"),
            "{}",
            e[0]
        );
        assert!(e[0].message.contains("template"));
    }

    #[test]
    fn collects_many_errors() {
        let e = errors(json!({"nodes": [
            {"id": "a", "type": "nope"},
            {"id": "a", "type": "shell"}
        ], "edges": [{"from": "a", "to": "zz"}]}));
        assert!(e.len() >= 4, "{e:?}");
    }

    #[test]
    fn hints_stay_short_in_large_workflows() {
        let nodes: Vec<Value> = (0..300)
            .map(|i| {
                json!({"id": format!("node{i}"), "type": "echo",
                            "params": {"message": format!("${{gone{i}.echo}}")}})
            })
            .collect();
        let e = errors(json!({"nodes": nodes, "edges": [{"from": "node0", "to": "zzz"}]}));
        assert_eq!(e.len(), 301);
        let edge = e.iter().find(|d| d.path == "edges[0].to").unwrap();
        let hint = edge.hint.as_deref().unwrap();
        assert!(hint.contains("(and 280 more)"), "{hint}");
        // Past the suggestion budget, errors still come with the (short) list of names.
        let last = e
            .iter()
            .find(|d| d.path == "nodes[299].params.message")
            .unwrap();
        assert!(last.hint.as_deref().unwrap().contains("more)"), "{last}");
    }

    #[test]
    fn batch_outputs_and_alias() {
        let v = validate(&json!({"nodes": [
            {"id": "g", "type": "shell", "params": {"command": "echo '[1,2]'"}},
            {"id": "b", "type": "shell", "batch": {"items": "${g.stdout}", "as": "x"},
             "params": {"command": "echo ${x} ${__index__}"}},
            {"id": "c", "type": "shell", "params": {"command": "echo ${b.results[0].stdout} ${b.count}"}}
        ]}));
        let v = v.expect("valid");
        assert!(v.nodes[1].uses_index);
        let e = errors(json!({"nodes": [
            {"id": "b", "type": "shell", "batch": {"items": [1]}, "params": {"command": "echo ${item}"}},
            {"id": "c", "type": "shell", "params": {"command": "echo ${b.stdout} ${item}"}}
        ]}));
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(e[1].message.contains("only defined inside a batch"));
    }

    #[test]
    fn suggestions_stay_cheap_with_long_names() {
        // 20 nodes with 2,000-character ids, each naming a missing node of the same
        // length: edit distances over these took minutes before the work budget.
        let long = "a".repeat(2000);
        let nodes: Vec<Value> = (0..20)
            .map(|i| {
                json!({"id": format!("n{long}{i}"), "type": "echo",
                       "params": {"message": format!("${{m{long}{i}.echo}}")}})
            })
            .collect();
        let start = std::time::Instant::now();
        let e = errors(json!({ "nodes": nodes }));
        assert_eq!(e.len(), 20);
        assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
    }

    #[test]
    fn odd_param_and_output_names_get_bracketed_paths() {
        let r = validate(&json!({
            "nodes": [{"id": "a", "type": "echo", "params": {"": 1, "x.y": "${zz}"}}],
            "outputs": {"a b": {"source": "${a.nope}"}}
        }))
        .unwrap_err();
        let paths: Vec<&str> = r
            .errors
            .iter()
            .chain(&r.warnings)
            .map(|d| d.path.as_str())
            .collect();
        for p in [
            r#"nodes[0].params[""]"#,
            r#"nodes[0].params["x.y"]"#,
            r#"outputs["a b"].source"#,
        ] {
            assert!(paths.contains(&p), "{p} not in {paths:?}");
        }
    }

    /// The exact texts of the shell-related diagnostics, which the node types' declared
    /// facts (shell params, env param, untrusted outputs) now drive.
    #[test]
    fn shell_diagnostics_read_exactly_so() {
        let v = validate(&json!({"nodes": [
            {"id": "get", "type": "http", "params": {"url": "http://x"}},
            {"id": "ask", "type": "llm", "params": {"prompt": "hi"}},
            {"id": "use", "type": "shell", "params": {"command": "echo ${get.response|raw} ${ask.llm_usage}; sh -c 'echo ${ask.response}'",
                                                      "stdin": "${get.response}"}},
            {"id": "say", "type": "echo", "params": {"message": "${get.response}"}}
        ]}))
        .expect("valid");
        let shown: Vec<String> = v
            .warnings
            .iter()
            .map(|w| {
                format!(
                    "{} | {} | {}",
                    w.path,
                    w.message,
                    w.hint.as_deref().unwrap_or("")
                )
            })
            .collect();
        assert_eq!(
            shown,
            [
                "nodes[2].params.command | the command pastes ${get.response|raw} (text an http node received) into shell code: '|raw' asks for that, so the value could run commands | write ${get.response} and pflow passes the value as a variable that cannot change the command",
                "nodes[2].params.command | the command pastes ${ask.response} (text an llm node received) into shell code: 'sh -c' parses it as shell code a second time, so the value could run commands | give it to the inner command as an argument instead, e.g. sh -c 'echo \"$1\"' sh ${ask.response}",
            ]
        );

        let hints = |node_type: &str, params: Value| -> Vec<String> {
            errors(json!({"nodes": [{"id": "a", "type": node_type, "params": params}]}))
                .iter()
                .map(|d| d.hint.clone().unwrap_or_default())
                .collect()
        };
        let shell_hint = "if this is a shell variable, write $${home} (or $home) so pflow leaves it to the shell; to pass a value in, use the node's \"env\" param";
        assert_eq!(
            hints("shell", json!({"command": "echo ${home}"})),
            [shell_hint]
        );
        assert_eq!(
            hints("shell", json!({"command": "echo", "cwd": "${home}"})),
            [shell_hint]
        );
        assert_eq!(
            hints("echo", json!({"message": "${HOME}"})),
            ["if this is a shell variable, write $${HOME} (or $HOME) so pflow leaves it to the shell"]
        );
        assert_eq!(
            hints("echo", json!({"message": "${home}"})),
            ["inputs and nodes are: a"]
        );
    }
}
