//! Edges implied by paths, as make and ninja imply them: a node that reads a file (or a
//! glob matching it) that another node writes depends on that writer. A file has one
//! writer: two nodes writing the same path are an error naming both.
//!
//! What a node reads and writes: its declared `reads` and `writes`, and the literal values
//! of its type's file params (`read-file`'s `file_path`, `copy-file`'s `source_path` and
//! `dest_path`, ...). A file a node takes away (`delete-file`'s `file_path`, `move-file`'s
//! `source_path`) counts as read: the node comes after the file's writer, or it could run
//! first and the file outlive it. A path built by a template is known only when the node
//! runs, so it implies nothing; declare it to get the edge.

use crate::diagnostic::Diagnostic;
use crate::file_pattern::FilePattern;
use crate::graph::Link;
use crate::nodes;
use crate::workflow::{field_path, Workflow};
use std::collections::HashMap;

/// One path a node reads or writes, and where the workflow says so.
struct Use {
    node: usize,
    pattern: FilePattern,
    /// The JSON path of the declaration (spelled out only for a diagnostic).
    at: At,
}

#[derive(Clone, Copy)]
enum At {
    Declared(&'static str, usize),
    Param(&'static str),
}

impl Use {
    fn json_path(&self) -> String {
        match self.at {
            At::Declared(field, k) => format!("nodes[{}].{field}[{k}]", self.node),
            At::Param(p) => field_path(&format!("nodes[{}].params", self.node), p),
        }
    }
}

/// Every path each node reads (or writes, with `writes`), in workflow order.
fn uses(wf: &Workflow, writes: bool) -> Vec<Use> {
    let mut out = Vec::new();
    for (i, node) in wf.nodes.iter().enumerate() {
        let (field, declared) = if writes {
            ("writes", &node.writes)
        } else {
            ("reads", &node.reads)
        };
        for (k, raw) in declared.iter().enumerate() {
            if let Ok(pattern) = FilePattern::parse(raw) {
                out.push(Use {
                    node: i,
                    pattern,
                    at: At::Declared(field, k),
                });
            }
        }
        let Some(spec) = nodes::lookup(&node.node_type) else {
            continue;
        };
        let params: &[&[&'static str]] = if writes {
            &[spec.writes_files]
        } else {
            &[spec.reads_files, spec.removes_files]
        };
        for &p in params.iter().copied().flatten() {
            let Some(raw) = node.params.get(p).and_then(|v| v.as_str()) else {
                continue;
            };
            if let Ok(pattern) = FilePattern::parse(raw) {
                out.push(Use {
                    node: i,
                    pattern,
                    at: At::Param(p),
                });
            }
        }
    }
    out
}

/// The links paths imply, `(writer, reader, Link::Path)`; two writers of one path are
/// reported in `errors`. Literal paths are matched through a map, so a workflow of many
/// file nodes costs a lookup per path; only globs are compared pairwise.
pub fn implied_links(wf: &Workflow, errors: &mut Vec<Diagnostic>) -> Vec<(usize, usize, Link)> {
    let writers = uses(wf, true);
    if writers.is_empty() {
        return Vec::new();
    }
    let ids = |i: usize| wf.nodes[i].id.as_str();

    // The one-writer rule.
    let mut literal: HashMap<&str, usize> = HashMap::new();
    // The same writers in workflow order, so diagnostics come out in a stable order.
    let mut literal_order: Vec<usize> = Vec::new();
    let mut globs: Vec<usize> = Vec::new();
    let mut reported: Vec<(usize, usize)> = Vec::new();
    for (k, w) in writers.iter().enumerate() {
        let mut clash = |first: &Use| {
            if first.node == w.node || reported.contains(&(first.node, w.node)) {
                return;
            }
            reported.push((first.node, w.node));
            errors.push(
                Diagnostic::error(
                    w.json_path(),
                    format!(
                        "nodes '{}' and '{}' both write '{}'",
                        ids(first.node),
                        ids(w.node),
                        if first.pattern.is_glob() {
                            w.pattern.as_str()
                        } else {
                            first.pattern.as_str()
                        }
                    ),
                )
                .with_hint(format!(
                    "a file has one writer ({} declares it); write to different paths, or let one node write it",
                    first.json_path()
                )),
            );
        };
        if w.pattern.is_glob() {
            for &j in literal_order.iter().chain(globs.iter()) {
                if writers[j].pattern.overlaps(&w.pattern) {
                    clash(&writers[j]);
                }
            }
            globs.push(k);
        } else {
            if let Some(&j) = literal.get(w.pattern.as_str()) {
                clash(&writers[j]);
            }
            for &j in &globs {
                if writers[j].pattern.overlaps(&w.pattern) {
                    clash(&writers[j]);
                }
            }
            if !literal.contains_key(w.pattern.as_str()) {
                literal.insert(w.pattern.as_str(), k);
                literal_order.push(k);
            }
        }
    }

    // Readers depend on the writers of what they read.
    let mut links = Vec::new();
    for r in uses(wf, false) {
        let mut link = |w: &Use| {
            if w.node != r.node {
                links.push((w.node, r.node, Link::Path));
            }
        };
        if r.pattern.is_glob() {
            for w in &writers {
                if r.pattern.overlaps(&w.pattern) {
                    link(w);
                }
            }
        } else {
            if let Some(&j) = literal.get(r.pattern.as_str()) {
                link(&writers[j]);
            }
            for &j in &globs {
                if writers[j].pattern.overlaps(&r.pattern) {
                    link(&writers[j]);
                }
            }
        }
    }
    links
}

#[cfg(test)]
mod tests {
    use crate::graph::Link;
    use serde_json::json;

    fn path_links(doc: serde_json::Value) -> Vec<(String, String)> {
        let v = crate::validate::validate(&doc).unwrap_or_else(|r| panic!("{:?}", r.errors));
        let mut out: Vec<(String, String)> = v
            .graph
            .links()
            .filter(|(_, _, l)| *l == Link::Path)
            .map(|(f, t, _)| (v.graph.id(f).to_string(), v.graph.id(t).to_string()))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn file_node_params_imply_edges_and_templated_paths_do_not() {
        let links = path_links(json!({
            "inputs": {"p": {"type": "string", "default": "t.txt"}},
            "nodes": [
                {"id": "read", "type": "read-file", "params": {"file_path": "./data/a.txt"}},
                {"id": "copy", "type": "copy-file", "params": {"source_path": "src.txt", "dest_path": "data/a.txt"}},
                {"id": "write", "type": "write-file", "params": {"file_path": "src.txt", "content": "x"}},
                {"id": "templated", "type": "write-file", "params": {"file_path": "${p}", "content": "y"}},
                {"id": "scan", "type": "shell", "reads": ["data/*.txt", "t.txt"], "params": {"command": "true"}},
                {"id": "self", "type": "shell", "reads": ["s.txt"], "writes": ["s.txt"], "params": {"command": "true"}}
            ]
        }));
        let want = [("copy", "read"), ("copy", "scan"), ("write", "copy")];
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(links, want);
    }

    #[test]
    fn one_writer_per_path_and_each_clash_reported_once() {
        let doc = json!({"nodes": [
            {"id": "a", "type": "write-file", "writes": ["x.txt"], "params": {"file_path": "x.txt", "content": "1"}},
            {"id": "b", "type": "shell", "writes": ["x.txt", "*.txt"], "params": {"command": "true"}},
            {"id": "c", "type": "shell", "writes": ["y.txt"], "params": {"command": "true"}}
        ]});
        let errors = crate::validate::validate(&doc).unwrap_err().errors;
        let messages: Vec<&str> = errors.iter().map(|d| d.message.as_str()).collect();
        assert_eq!(
            messages,
            [
                "nodes 'a' and 'b' both write 'x.txt'",
                "nodes 'b' and 'c' both write 'y.txt'"
            ],
            "{errors:?}"
        );
        assert_eq!(errors[0].path, "nodes[1].writes[0]");
    }
}
