//! Nested workflows: a `workflow` node's child becomes part of the parent's graph.
//!
//! A node `{"id": "run", "type": "workflow", "params": {"workflow_ref": "./child.json",
//! "param_mapping": {...}, "output_mapping": {...}}}` is expanded before validation into
//! ordinary nodes, so that each child node is cached on its own and an edit inside the
//! child re-runs only what it reaches, on both sides of the boundary:
//!
//! - `run/@inputs` (internal type `workflow-inputs`) resolves `param_mapping` in the
//!   parent, filling in the child's defaults: each child input is one of its outputs;
//! - every child node `step` becomes `run/step`, its templates renamed: `${step.x}` reads
//!   `${run/step.x}`, a child input `${text}` reads `${run/@inputs.text}`;
//! - `run` itself (internal type `workflow-outputs`) waits for every child node and holds
//!   the child's declared outputs under the names `output_mapping` gives them (all of
//!   them, under their own names, without one), so the parent's `${run.x}` and its edges
//!   from `run` work as written. Edges into `run` go to `run/@inputs`, so the whole child
//!   runs after them.
//!
//! The child is validated on its own first, so its problems are reported in its own
//! terms (with its file's line numbers); renaming happens on parsed templates, never on
//! raw text, so a value reaches a shell command exactly as it would in the child.

use crate::diagnostic::{quoted_list, Diagnostic, Severity};
use crate::template::{Reference, Step, Template};
use crate::validate::{validate_workflow, Report, Validated, MAX_NODES};
use crate::workflow::{
    is_template_name, BatchItems, Edge, EdgeAction, Node, TemplateMode, Workflow,
};
use serde_json::{Map, Value};
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The node type that runs another workflow.
pub const TYPE: &str = "workflow";
/// How deep workflows may nest unless a node says otherwise (`max_depth`).
pub const MAX_DEPTH_DEFAULT: u64 = 10;

/// A `workflow` node as written (not the outputs node an expansion left).
fn is_workflow_node(node: &Node) -> bool {
    node.node_type == TYPE && !node.scoped
}

/// The top-level workflow node a node id belongs to: `run` for `run/step` (and for
/// `run/inner/step`), the id itself for a node the workflow wrote.
pub fn owner(id: &str) -> &str {
    id.split('/').next().unwrap_or(id)
}

/// Did expanding a nested workflow make this node (`run/step`, `run/@inputs`)?
pub fn is_nested(id: &str) -> bool {
    owner(id) != id
}

/// The id of the node that hands a nested workflow its inputs.
pub fn inputs_id(node: &str) -> String {
    format!("{node}/@inputs")
}

/// Where a workflow's references to other workflows are found.
pub struct Origin<'a> {
    /// The directory a relative `workflow_ref` starts from: the referring file's.
    pub dir: PathBuf,
    /// A saved workflow's file, by name.
    pub saved: &'a dyn Fn(&str) -> Result<PathBuf, Diagnostic>,
}

/// Decode a document, expand its nested workflows and validate the result.
pub fn validate(doc: &Value, origin: &Origin<'_>) -> Result<Validated, Report> {
    let (wf, errors) = Workflow::from_json(doc);
    let Some(wf) = wf else {
        return Err(Report {
            errors,
            warnings: Vec::new(),
        });
    };
    let budget = Cell::new(MAX_NODES);
    let at = Depth {
        now: 0,
        limit: u64::MAX,
    };
    check(wf, errors, origin, &mut Vec::new(), at, &budget)
}

/// The workflow-wide settings a nested workflow's nodes run under: its parent's.
#[derive(Debug, Clone, Copy)]
struct Settings {
    strict_env: bool,
    mode: TemplateMode,
}

/// How deep a workflow is, and how deep the `max_depth` of the workflow nodes above it
/// let it go.
#[derive(Debug, Clone, Copy)]
struct Depth {
    now: u64,
    limit: u64,
}

/// Expand `wf` (at `depth`, inside the files on `stack`) and validate it.
fn check(
    wf: Workflow,
    mut errors: Vec<Diagnostic>,
    origin: &Origin<'_>,
    stack: &mut Vec<PathBuf>,
    depth: Depth,
    budget: &Cell<usize>,
) -> Result<Validated, Report> {
    if !wf.nodes.iter().any(is_workflow_node) {
        return validate_workflow(wf, errors);
    }
    let written = wf.nodes.len();
    let mut ex = Expansion {
        errors: Vec::new(),
        warnings: Vec::new(),
        owners: Vec::new(),
        files: Vec::new(),
        secrets: Vec::new(),
        budget,
    };
    let wf = ex.expand(wf, origin, stack, depth);
    errors.append(&mut ex.errors);
    let owners = std::mem::take(&mut ex.owners);
    let relabel = |d: Diagnostic| relabel(d, written, &owners);
    let mut warnings = ex.warnings;
    match validate_workflow(wf, errors) {
        Ok(mut v) => {
            v.nested_files = ex.files;
            v.nested_secrets = ex.secrets;
            warnings.extend(
                std::mem::take(&mut v.warnings)
                    .into_iter()
                    .filter_map(relabel),
            );
            v.warnings = warnings;
            Ok(v)
        }
        Err(report) => {
            warnings.extend(report.warnings.into_iter().filter_map(relabel));
            Err(Report {
                errors: report.errors.into_iter().filter_map(relabel).collect(),
                warnings,
            })
        }
    }
}

/// Who a node expansion added (at `nodes[written + k]`) belongs to: the workflow node
/// at `.0`, through its param `.1`; `.2` names the child (empty for the inputs node,
/// whose params are the mapping's entries).
type Owner = (usize, &'static str, String);

/// Point a diagnostic about a node expansion added at the workflow node it came from.
/// Warnings about child nodes were reported when the child was validated on its own.
fn relabel(d: Diagnostic, written: usize, owners: &[Owner]) -> Option<Diagnostic> {
    let Some((k, tail)) = d
        .path
        .strip_prefix("nodes[")
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(index, tail)| Some((index.parse::<usize>().ok()?, tail)))
    else {
        return Some(d);
    };
    let Some((owner, param, label)) = k.checked_sub(written).and_then(|k| owners.get(k)) else {
        return Some(d);
    };
    if d.severity == Severity::Warning && !label.is_empty() {
        return None;
    }
    let (path, message) = match (label.is_empty(), tail.strip_prefix(".params.")) {
        (true, Some(p)) => (
            format!("nodes[{owner}].params.{param}.{p}"),
            d.message.clone(),
        ),
        (true, None) => (format!("nodes[{owner}].params.{param}"), d.message.clone()),
        (false, _) => (
            format!("nodes[{owner}].params.{param}"),
            format!("in nested workflow {label}: {}", d.message),
        ),
    };
    Some(Diagnostic {
        path,
        message,
        line: None,
        column: None,
        ..d
    })
}

/// A child's problem, said at the workflow node that names it.
fn wrap(d: Diagnostic, at: &str, label: &str) -> Diagnostic {
    let line = d.line.map(|l| format!(" (line {l})")).unwrap_or_default();
    Diagnostic {
        path: at.to_string(),
        message: format!(
            "in nested workflow {label}, {}{line}: {}",
            d.path, d.message
        ),
        line: None,
        column: None,
        ..d
    }
}

struct Expansion<'b> {
    errors: Vec<Diagnostic>,
    warnings: Vec<Diagnostic>,
    owners: Vec<Owner>,
    /// The files of the children expanded, theirs included.
    files: Vec<PathBuf>,
    /// Literal values given to the children's secret inputs, theirs included.
    secrets: Vec<String>,
    /// Nodes the whole expansion may still make before the workflow is too large.
    budget: &'b Cell<usize>,
}

/// A child, loaded and decoded.
struct Child {
    workflow: Workflow,
    structural: Vec<Diagnostic>,
    /// How messages name it: the path as written, or which saved or inline workflow.
    label: String,
    /// Where its own nested workflows are found.
    dir: PathBuf,
    /// For cycle detection: its file, canonical (an inline child has none).
    file: Option<PathBuf>,
    /// Its file, to place diagnostics on its lines.
    document: Option<crate::source::Document>,
}

/// What a workflow node becomes besides itself.
struct Parts {
    /// The child nodes nothing in the child comes before.
    roots: Vec<String>,
    inputs: Node,
    nodes: Vec<Node>,
    edges: Vec<Edge>,
    /// The outputs node's params.
    outputs: Map<String, Value>,
    label: String,
    source: &'static str,
    mapping: &'static str,
}

impl Expansion<'_> {
    /// Expand every `workflow` node of `wf`: the nodes expansion adds go after the
    /// written ones, so every written node and edge keeps its position (and its path in
    /// diagnostics).
    fn expand(
        &mut self,
        mut wf: Workflow,
        origin: &Origin<'_>,
        stack: &mut Vec<PathBuf>,
        depth: Depth,
    ) -> Workflow {
        let written = wf.nodes.len();
        let mut added: Vec<Node> = Vec::new();
        let mut added_edges: Vec<Edge> = Vec::new();
        // Workflow nodes, and those of them whose child was expanded.
        let mut workflow_nodes: HashSet<String> = HashSet::new();
        let mut expanded: HashMap<String, Vec<String>> = HashMap::new();
        for i in 0..written {
            if !is_workflow_node(&wf.nodes[i]) {
                continue;
            }
            let at = format!("nodes[{i}]");
            let parent = Settings {
                strict_env: wf.strict_env,
                mode: wf.template_mode,
            };
            let parts = self.parts(&wf.nodes[i], &at, origin, stack, depth, parent);
            let node = &mut wf.nodes[i];
            workflow_nodes.insert(node.id.clone());
            // Whatever went wrong, the node stays, as an outputs node: references to it
            // raise no second error.
            node.params = Map::new();
            node.batch = None;
            node.scoped = true;
            let Some(mut parts) = parts else {
                continue;
            };
            node.params = std::mem::take(&mut parts.outputs);
            expanded.insert(node.id.clone(), std::mem::take(&mut parts.roots));
            self.owners.push((i, parts.mapping, String::new()));
            for _ in &parts.nodes {
                self.owners.push((i, parts.source, parts.label.clone()));
            }
            added.push(parts.inputs);
            added.append(&mut parts.nodes);
            added_edges.append(&mut parts.edges);
        }
        // Into a workflow node: before its child starts.
        for (k, e) in wf.edges.iter_mut().enumerate() {
            if let Some(roots) = expanded.get(&e.to) {
                added_edges.extend(roots.iter().map(|r| edge(&e.from, r, e.action)));
                e.to = inputs_id(&e.to);
            }
            let edge = &*e;
            // The child's failures are its nodes': the parent cannot route them yet.
            if workflow_nodes.contains(&edge.from) && edge.action == EdgeAction::Error {
                self.errors.push(
                    Diagnostic::error(
                        format!("edges[{k}].action"),
                        format!(
                            "an error edge from the workflow node '{}' is not supported",
                            edge.from
                        ),
                    )
                    .with_hint("put the error edge on a node inside the nested workflow"),
                );
            }
        }
        wf.nodes.append(&mut added);
        wf.edges.append(&mut added_edges);
        wf
    }

    /// Load, check and rename the child of workflow node `node` (at `at`).
    fn parts(
        &mut self,
        node: &Node,
        at: &str,
        origin: &Origin<'_>,
        stack: &mut Vec<PathBuf>,
        depth: Depth,
        parent: Settings,
    ) -> Option<Parts> {
        let errors_before = self.errors.len();
        self.check_node(node, at);
        let params = &node.params;
        let (mapping_param, mapping) = match (params.get("param_mapping"), params.get("inputs")) {
            (Some(_), Some(_)) => {
                self.errors.push(Diagnostic::error(
                    format!("{at}.params.inputs"),
                    "give the child's inputs once: 'param_mapping' or 'inputs', not both",
                ));
                ("param_mapping", Map::new())
            }
            (Some(m), None) => ("param_mapping", self.object(m, at, "param_mapping")),
            (None, Some(m)) => ("inputs", self.object(m, at, "inputs")),
            (None, None) => ("param_mapping", Map::new()),
        };
        let output_mapping = params
            .get("output_mapping")
            .map(|m| self.object(m, at, "output_mapping"));
        let max_depth = match params.get("max_depth") {
            None | Some(Value::Null) => MAX_DEPTH_DEFAULT,
            Some(v) => match v.as_u64().filter(|&d| d >= 1) {
                Some(d) => d,
                None => {
                    self.errors.push(Diagnostic::error(
                        format!("{at}.params.max_depth"),
                        format!("max_depth must be a whole number of at least 1, found {v}"),
                    ));
                    MAX_DEPTH_DEFAULT
                }
            },
        };
        // A node's max_depth holds for everything below it too.
        let limit = depth.limit.min(max_depth);
        if depth.now + 1 > limit {
            self.errors.push(
                Diagnostic::error(
                    format!("{at}.type"),
                    format!(
                        "workflow node '{}' nests workflows deeper than max_depth ({limit})",
                        node.id
                    ),
                )
                .with_hint("a workflow that runs itself, directly or not, never ends; raise max_depth if the depth is meant"),
            );
            return None;
        }
        let (source, child) = self.load(node, at, origin)?;
        if let Some(file) = &child.file {
            if let Some(first) = stack.iter().position(|f| f == file) {
                let chain: Vec<String> = stack[first..]
                    .iter()
                    .chain([file])
                    .map(|f| f.display().to_string())
                    .collect();
                self.errors.push(Diagnostic::error(
                    format!("{at}.params.{source}"),
                    format!(
                        "nested workflows refer to each other in a circle: {}",
                        chain.join(" -> ")
                    ),
                ));
                return None;
            }
        }

        // The child on its own (checked even when the node has problems: one report
        // names them all), expanded and validated in its own terms.
        let Child {
            mut workflow,
            structural,
            label,
            dir,
            file,
            document,
        } = child;
        // A child that declares no inputs takes the mapping's names as its inputs, as the
        // original pflow put them in the child's store.
        if workflow.inputs.is_empty() {
            for name in mapping.keys() {
                let spec = crate::workflow::InputSpec {
                    ty: None,
                    required: true,
                    default: None,
                    description: None,
                    stdin: false,
                    secret: false,
                };
                workflow.inputs.insert(name.clone(), spec);
            }
        }
        let pushed = file.is_some();
        let document_file = file.clone();
        if let Some(f) = file {
            stack.push(f);
        }
        let child_origin = Origin {
            dir,
            saved: origin.saved,
        };
        let checked = check(
            workflow,
            structural,
            &child_origin,
            stack,
            Depth {
                now: depth.now + 1,
                limit,
            },
            self.budget,
        );
        if pushed {
            stack.pop();
        }
        let here = format!("{at}.params.{source}");
        if let Some(f) = &document_file {
            self.files.push(f.clone());
        }
        let (errors, warnings, child) = match checked {
            Ok(mut v) => {
                self.files.append(&mut v.nested_files);
                self.secrets.append(&mut v.nested_secrets);
                (Vec::new(), std::mem::take(&mut v.warnings), Some(v))
            }
            Err(r) => (r.errors, r.warnings, None),
        };
        let (mut errors, mut warnings) = (errors, warnings);
        if let Some(doc) = &document {
            doc.place(&mut errors, &mut warnings);
        }
        self.errors
            .extend(errors.into_iter().map(|d| wrap(d, &here, &label)));
        self.warnings
            .extend(warnings.into_iter().map(|d| wrap(d, &here, &label)));
        let child = child?;
        // The child's nodes run under the parent's settings: refuse what would loosen
        // the child's.
        let loosened = [
            (
                child.workflow.strict_env && !parent.strict_env,
                "\"strict_env\": true",
            ),
            (
                child.workflow.template_mode == TemplateMode::Strict
                    && parent.mode == TemplateMode::Permissive,
                "strict template resolution",
            ),
        ];
        for (_, what) in loosened.iter().filter(|(yes, _)| *yes) {
            self.errors.push(
                Diagnostic::error(
                    here.clone(),
                    format!(
                        "nested workflow {label} asks for {what}, which this workflow does not"
                    ),
                )
                .with_hint("its nodes run under this workflow's settings: set the same here"),
            );
        }
        if self.errors.len() > errors_before {
            return None;
        }
        if self.budget.get() < child.workflow.nodes.len() + 1 {
            self.errors
                .push(crate::source::too_many_nodes(MAX_NODES + 1));
            return None;
        }
        self.budget
            .set(self.budget.get() - child.workflow.nodes.len() - 1);
        self.rename(
            node,
            at,
            child,
            mapping_param,
            mapping,
            output_mapping,
            source,
            label,
        )
    }

    /// What may not be set on a workflow node.
    fn check_node(&mut self, node: &Node, at: &str) {
        // The original pflow's params, and the 0.16 spellings `workflow` and `inputs`.
        let params: Vec<&str> = crate::nodes::nested::WORKFLOW
            .params
            .iter()
            .map(|p| p.name)
            .collect();
        for name in node.params.keys() {
            if !params.contains(&name.as_str()) {
                let hint = crate::diagnostic::suggestion(name, params.iter().copied())
                    .unwrap_or_else(|| format!("workflow params: {}", params.join(", ")));
                // Ignored, as other types' unknown params are.
                self.warnings.push(
                    Diagnostic::warning(
                        crate::workflow::field_path(&format!("{at}.params"), name),
                        format!("'{name}' is not a param of workflow nodes and is ignored"),
                    )
                    .with_hint(hint),
                );
            }
        }
        let unsupported = [
            ("batch", node.batch.is_some()),
            ("cache", node.cache != crate::workflow::CachePolicy::Always),
            ("reads_env", !node.reads_env.is_empty()),
            ("reads", !node.reads.is_empty()),
            ("writes", !node.writes.is_empty()),
        ];
        for (field, set) in unsupported {
            if set {
                self.errors.push(
                    Diagnostic::error(
                        format!("{at}.{field}"),
                        format!(
                            "'{field}' is not supported on a workflow node ('{}')",
                            node.id
                        ),
                    )
                    .with_hint("set it on the nodes of the nested workflow it concerns"),
                );
            }
        }
        match node.params.get("storage_mode") {
            None | Some(Value::Null) => {}
            Some(Value::String(m)) if m == "mapped" || m == "isolated" => {}
            Some(other) => self.errors.push(
                Diagnostic::error(
                    format!("{at}.params.storage_mode"),
                    format!("storage_mode {other} is not supported"),
                )
                .with_hint("a nested workflow sees only the inputs param_mapping gives it (\"mapped\", the default, or \"isolated\")"),
            ),
        }
        match node.params.get("error_action") {
            None | Some(Value::Null) => {}
            Some(Value::String(a)) if a == "error" => {}
            Some(other) => self.errors.push(
                Diagnostic::error(
                    format!("{at}.params.error_action"),
                    format!("error_action {other} is not supported"),
                )
                .with_hint("a failure in the nested workflow fails the build like any node's; handle it with an error edge inside the nested workflow"),
            ),
        }
    }

    /// A mapping param's object (an error for anything else).
    fn object(&mut self, v: &Value, at: &str, param: &str) -> Map<String, Value> {
        match v {
            Value::Object(m) => m.clone(),
            Value::Null => Map::new(),
            other => {
                self.errors.push(Diagnostic::error(
                    format!("{at}.params.{param}"),
                    format!(
                        "{param} must be an object, found {}",
                        crate::template::type_name(other)
                    ),
                ));
                Map::new()
            }
        }
    }

    /// The child a workflow node names, and the param that names it.
    fn load(
        &mut self,
        node: &Node,
        at: &str,
        origin: &Origin<'_>,
    ) -> Option<(&'static str, Child)> {
        let given: Vec<&'static str> = ["workflow_ref", "workflow_name", "workflow_ir", "workflow"]
            .into_iter()
            .filter(|p| node.params.get(*p).is_some_and(|v| !v.is_null()))
            .collect();
        let source = match given.as_slice() {
            [one] => *one,
            [] => {
                self.errors.push(
                    Diagnostic::error(
                        format!("{at}.params"),
                        format!("workflow node '{}' names no workflow to run", node.id),
                    )
                    .with_hint("give one of workflow_ref (a file, relative to this one), workflow_name (a saved workflow) or workflow_ir (the workflow itself)"),
                );
                return None;
            }
            [_, second, ..] => {
                self.errors.push(Diagnostic::error(
                    format!("{at}.params.{second}"),
                    format!(
                        "workflow node '{}' names its workflow more than once ({})",
                        node.id,
                        quoted_list(given.iter().copied())
                    ),
                ));
                return None;
            }
        };
        let here = format!("{at}.params.{source}");
        let value = node.params.get(source)?;
        if source == "workflow_ir" {
            let Value::Object(_) = value else {
                self.errors.push(Diagnostic::error(
                    here,
                    format!(
                        "workflow_ir must be a workflow object, found {}",
                        crate::template::type_name(value)
                    ),
                ));
                return None;
            };
            let (workflow, structural) = Workflow::from_json(value);
            let label = format!("workflow_ir of '{}'", node.id);
            let Some(workflow) = workflow else {
                self.errors
                    .extend(structural.into_iter().map(|d| wrap(d, &here, &label)));
                return None;
            };
            let child = Child {
                workflow,
                structural,
                label,
                dir: origin.dir.clone(),
                file: None,
                document: None,
            };
            return Some((source, child));
        }
        let Some(name) = value.as_str().filter(|s| !s.trim().is_empty()) else {
            self.errors.push(Diagnostic::error(
                here,
                format!(
                    "{source} must be a non-empty string, found {}",
                    crate::template::type_name(value)
                ),
            ));
            return None;
        };
        if name.contains("${") {
            self.errors.push(
                Diagnostic::error(here, format!("{source} '{name}' is a template"))
                    .with_hint("the nested workflow is part of the build graph, so it must be known before anything runs: name it literally"),
            );
            return None;
        }
        let by_name = source == "workflow_name"
            || (source == "workflow"
                && !crate::markdown::is_markdown_path(Path::new(name))
                && !name.ends_with(".json")
                && !name.contains('/'));
        let (path, label) = if by_name {
            match (origin.saved)(name) {
                Ok(p) => (p, format!("saved workflow '{name}'")),
                Err(d) => {
                    self.errors.push(Diagnostic { path: here, ..d });
                    return None;
                }
            }
        } else {
            match find_file(name, &origin.dir) {
                Some(p) => (p, name.to_string()),
                None => {
                    self.errors.push(
                        Diagnostic::error(
                            here,
                            format!("nested workflow file '{name}' does not exist"),
                        )
                        .with_hint(format!(
                            "a relative path starts from the directory of the workflow that names it ({})",
                            origin.dir.display()
                        )),
                    );
                    return None;
                }
            }
        };
        let document = match crate::source::read_workflow_file(&path) {
            Ok(d) => d,
            Err(errors) => {
                self.errors
                    .extend(errors.into_iter().map(|d| wrap(d, &here, &label)));
                return None;
            }
        };
        let (workflow, mut structural) = Workflow::from_json(&document.doc);
        let Some(workflow) = workflow else {
            document.place(&mut structural, &mut []);
            self.errors
                .extend(structural.into_iter().map(|d| wrap(d, &here, &label)));
            return None;
        };
        let child = Child {
            workflow,
            structural,
            label,
            dir: path
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| origin.dir.clone()),
            file: Some(std::fs::canonicalize(&path).unwrap_or(path)),
            document: Some(document),
        };
        Some((source, child))
    }

    /// The child's nodes, renamed into the parent; its inputs and outputs node.
    #[allow(clippy::too_many_arguments)]
    fn rename(
        &mut self,
        node: &Node,
        at: &str,
        child: Validated,
        mapping_param: &'static str,
        mapping: Map<String, Value>,
        output_mapping: Option<Map<String, Value>>,
        source: &'static str,
        label: String,
    ) -> Option<Parts> {
        let cw = &child.workflow;
        let errors_before = self.errors.len();
        // The mapping gives declared inputs, and every input the child needs.
        for name in mapping.keys() {
            if !cw.inputs.contains_key(name) {
                let declared: Vec<&str> = cw.inputs.keys().map(String::as_str).collect();
                let hint = crate::diagnostic::suggestion(name, declared.iter().copied())
                    .unwrap_or_else(|| match declared.is_empty() {
                        true => format!("{label} declares no inputs"),
                        false => format!("its inputs: {}", declared.join(", ")),
                    });
                self.errors.push(
                    Diagnostic::error(
                        crate::workflow::field_path(&format!("{at}.params.{mapping_param}"), name),
                        format!("'{name}' is not an input of nested workflow {label}"),
                    )
                    .with_hint(hint),
                );
            }
        }
        let missing: Vec<&str> = cw
            .inputs
            .iter()
            .filter(|(name, spec)| {
                spec.required && spec.default.is_none() && !mapping.contains_key(name.as_str())
            })
            .map(|(name, _)| name.as_str())
            .collect();
        if !missing.is_empty() {
            self.errors.push(
                Diagnostic::error(
                    format!("{at}.params.{mapping_param}"),
                    format!(
                        "nested workflow {label} needs input(s) {} that workflow node '{}' does not give",
                        quoted_list(missing.iter().copied()),
                        node.id
                    ),
                )
                .with_hint(format!("add them to {mapping_param}")),
            );
        }
        let exposed: Vec<(String, String)> = match &output_mapping {
            None => cw.outputs.keys().map(|k| (k.clone(), k.clone())).collect(),
            Some(m) => m
                .iter()
                .filter_map(|(from, to)| {
                    let place = crate::workflow::field_path(&format!("{at}.params.output_mapping"), from);
                    if !cw.outputs.contains_key(from) {
                        let declared: Vec<&str> = cw.outputs.keys().map(String::as_str).collect();
                        self.errors.push(
                            Diagnostic::error(
                                place,
                                format!("'{from}' is not an output of nested workflow {label}"),
                            )
                            .with_hint(match declared.is_empty() {
                                true => format!("{label} declares no outputs"),
                                false => format!("its outputs: {}", declared.join(", ")),
                            }),
                        );
                        return None;
                    }
                    match to.as_str().filter(|t| is_template_name(t)) {
                        Some(t) => Some((from.clone(), t.to_string())),
                        None => {
                            self.errors.push(Diagnostic::error(
                                place,
                                format!("output_mapping maps '{from}' to {to}, which is not a name a template can read"),
                            ));
                            None
                        }
                    }
                })
                .collect(),
        };
        if self.errors.len() > errors_before {
            return None;
        }

        let id = &node.id;
        let prefix = format!("{id}/");
        let inputs = inputs_id(id);
        let ids: HashSet<&str> = cw.nodes.iter().map(|n| n.id.as_str()).collect();
        let renamed = |r: &mut Reference, alias: Option<&str>| {
            if alias == Some(r.root.as_str()) || (alias.is_some() && r.root == "__index__") {
                return;
            }
            if ids.contains(r.root.as_str()) {
                r.root = format!("{prefix}{}", r.root);
            } else if cw.inputs.contains_key(&r.root) {
                let name = std::mem::replace(&mut r.root, inputs.clone());
                r.path.insert(0, Step::Key(name));
            }
        };

        let mut nodes = Vec::with_capacity(cw.nodes.len());
        let mut edges = Vec::new();
        for n in &cw.nodes {
            let alias = n.batch.as_ref().map(|b| b.alias.clone());
            let mut f = |r: &mut Reference| renamed(r, alias.as_deref());
            let params = n
                .params
                .iter()
                .map(|(k, v)| (k.clone(), rewrite(v, n.scoped, &mut f)))
                .collect();
            let batch = n.batch.clone().map(|mut b| {
                // The items are resolved before any item exists: no alias there.
                let mut g = |r: &mut Reference| renamed(r, None);
                b.items = match b.items {
                    BatchItems::Template(t) => {
                        BatchItems::Template(rewrite_text(&t, n.scoped, &mut g))
                    }
                    BatchItems::Inline(items) => BatchItems::Inline(
                        items.iter().map(|v| rewrite(v, n.scoped, &mut g)).collect(),
                    ),
                };
                b
            });
            let mut paths = |list: &[String]| -> Vec<String> {
                list.iter()
                    .map(|p| rewrite_text(p, n.scoped, &mut f))
                    .collect()
            };
            let (reads, writes) = (paths(&n.reads), paths(&n.writes));
            nodes.push(Node {
                id: format!("{prefix}{}", n.id),
                params,
                batch,
                reads,
                writes,
                scoped: true,
                ..n.clone()
            });
            // The workflow node is done when every child node is.
            edges.push(edge(&format!("{prefix}{}", n.id), id, EdgeAction::Default));
        }
        for e in &cw.edges {
            edges.push(edge(
                &format!("{prefix}{}", e.from),
                &format!("{prefix}{}", e.to),
                e.action,
            ));
        }
        edges.push(edge(&inputs, id, EdgeAction::Default));

        // The inputs node: the mapping as written in the parent, the child's defaults for
        // the rest.
        let mut keep = |_: &mut Reference| {};
        let inputs_params: Map<String, Value> = cw
            .inputs
            .iter()
            .map(|(name, spec)| {
                let value = match mapping.get(name) {
                    Some(v) => rewrite(v, node.scoped, &mut keep),
                    None => spec.default.as_ref().map(escape).unwrap_or(Value::Null),
                };
                (name.clone(), value)
            })
            .collect();
        // A secret input's literal value (declared secret or named so) is a secret here.
        for (name, value) in &inputs_params {
            if let (true, Value::String(text)) = (cw.is_secret_input(name), value) {
                if !text.is_empty() && !text.contains("${") {
                    self.secrets.push(text.clone());
                }
            }
        }
        let inputs_node = Node {
            id: inputs.clone(),
            node_type: crate::nodes::nested::INPUTS.name.to_string(),
            purpose: None,
            params: inputs_params,
            batch: None,
            cache: crate::workflow::CachePolicy::Always,
            reads_env: Vec::new(),
            reads: Vec::new(),
            writes: Vec::new(),
            scoped: true,
        };

        // The outputs node: each exposed output's source, renamed; an output without a
        // source is the field of the last node that produces one.
        let mut outputs = Map::new();
        let mut f = |r: &mut Reference| renamed(r, None);
        for (from, to) in exposed {
            let Some(spec) = cw.outputs.get(&from) else {
                continue;
            };
            let value = match &spec.source {
                Some(s) => rewrite(&Value::String(s.clone()), false, &mut f),
                None => {
                    let producer = child.order.iter().rev().copied().find(|&k| {
                        child
                            .nodes
                            .get(k)
                            .is_some_and(|c| c.spec.output(&from).is_some())
                    });
                    match producer.and_then(|k| cw.nodes.get(k)) {
                        Some(p) => Value::String(format!("${{{prefix}{}.{from}}}", p.id)),
                        None => continue,
                    }
                }
            };
            outputs.insert(to, value);
        }
        // Where the child starts: what the parent orders before the workflow node comes
        // before these (and counts in their keys, as it did in the node's).
        let roots = (0..cw.nodes.len())
            .filter(|&k| child.graph.dependencies(k).is_empty())
            .map(|k| format!("{prefix}{}", child.graph.id(k)))
            .collect();
        Some(Parts {
            roots,
            inputs: inputs_node,
            nodes,
            edges,
            outputs,
            label,
            source,
            mapping: mapping_param,
        })
    }
}

fn edge(from: &str, to: &str, action: EdgeAction) -> Edge {
    Edge {
        from: from.to_string(),
        to: to.to_string(),
        action,
    }
}

/// `value` with every reference changed by `f`, written back as template text. Text
/// that is not a template (a shell's `${x/a/b}`) comes back escaped (`$${`), so the
/// scoped parse of the result reads it as text again.
fn rewrite(value: &Value, scoped: bool, f: &mut dyn FnMut(&mut Reference)) -> Value {
    match value {
        Value::String(s) => Value::String(rewrite_text(s, scoped, f)),
        Value::Array(items) => Value::Array(items.iter().map(|v| rewrite(v, scoped, f)).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), rewrite(v, scoped, f)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// [`rewrite`] for one text.
fn rewrite_text(s: &str, scoped: bool, f: &mut dyn FnMut(&mut Reference)) -> String {
    if !s.contains("${") {
        return s.to_string();
    }
    let parsed = match scoped {
        true => Template::parse_scoped(s),
        false => Template::parse(s),
    };
    match parsed {
        Ok(mut t) => {
            t.map_refs(f);
            t.to_source()
        }
        // Validated already: a bad template does not get here.
        Err(_) => s.to_string(),
    }
}

/// A literal (an input's default) as param text: a `${` in it is not a template.
fn escape(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.replace("${", "$${")),
        Value::Array(items) => Value::Array(items.iter().map(escape).collect()),
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), escape(v))).collect()),
        other => other.clone(),
    }
}

/// A `workflow_ref`: relative to the referring file's directory; failing that (a path
/// not starting with `./` or `../`), relative to the current directory, as the original
/// pflow resolved paths of workflows it read without a file.
fn find_file(name: &str, dir: &Path) -> Option<PathBuf> {
    let written = Path::new(name);
    let candidates = match written.is_absolute() {
        true => vec![written.to_path_buf()],
        false => {
            let mut c = vec![dir.join(written)];
            if !name.starts_with("./") && !name.starts_with("../") {
                c.push(written.to_path_buf());
            }
            c
        }
    };
    candidates.into_iter().find(|p| p.is_file())
}
