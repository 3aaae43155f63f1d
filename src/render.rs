//! Drawing the DAG as Mermaid or Graphviz DOT (`pflow graph`).

use crate::graph::Link;
use crate::validate::Validated;
use std::fmt::Write;

fn links(v: &Validated) -> Vec<(usize, usize, Link)> {
    let mut all: Vec<(usize, usize, Link)> = v.graph.links().collect();
    all.sort();
    // A template link beside an explicit edge between the same nodes adds nothing, and a
    // link implied by a path beside any other adds nothing either.
    let implicit = |l: Link| matches!(l, Link::Template | Link::Path);
    all.iter()
        .copied()
        .filter(|&(f, t, l)| {
            let stronger = |l2: Link| match l {
                Link::Template => !implicit(l2),
                Link::Path => l2 != Link::Path,
                _ => false,
            };
            !all.iter()
                .any(|&(f2, t2, l2)| f2 == f && t2 == t && stronger(l2))
        })
        .collect()
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

pub fn mermaid(v: &Validated) -> String {
    let mut out = String::from("flowchart TD\n");
    for (i, node) in v.workflow.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "    n{i}[\"{}<br/><i>{}</i>\"]",
            escape_mermaid(&node.id),
            escape_mermaid(&node.node_type)
        );
    }
    let mut error_links = Vec::new();
    let mut path_links = Vec::new();
    for (k, (f, t, link)) in links(v).into_iter().enumerate() {
        match link {
            Link::Edge => {
                let _ = writeln!(out, "    n{f} --> n{t}");
            }
            Link::Template => {
                let _ = writeln!(out, "    n{f} -.->|data| n{t}");
            }
            Link::ErrorEdge => {
                let _ = writeln!(out, "    n{f} -- error --> n{t}");
                error_links.push(k);
            }
            Link::Path => {
                let _ = writeln!(out, "    n{f} -.->|file| n{t}");
                path_links.push(k);
            }
        }
    }
    for k in path_links {
        let _ = writeln!(out, "    linkStyle {k} stroke:#888,stroke-dasharray:2 2");
    }
    for k in error_links {
        let _ = writeln!(
            out,
            "    linkStyle {k} stroke:#d33,stroke-width:2px,stroke-dasharray:6 3"
        );
    }
    out
}

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

pub fn dot(v: &Validated) -> String {
    let mut out = String::from("digraph workflow {\n    rankdir=TB;\n    node [shape=box, style=rounded, fontname=\"Helvetica\"];\n");
    for (i, node) in v.workflow.nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "    n{i} [label=\"{}\\n({})\"];",
            escape_dot(&node.id),
            escape_dot(&node.node_type)
        );
    }
    for (f, t, link) in links(v) {
        let style = match link {
            Link::Edge => "",
            Link::Template => " [style=dashed, label=\"data\"]",
            Link::ErrorEdge => " [color=red, fontcolor=red, style=bold, label=\"error\"]",
            Link::Path => " [style=dotted, color=gray40, label=\"file\"]",
        };
        let _ = writeln!(out, "    n{f} -> n{t}{style};");
    }
    out.push_str("}\n");
    out
}
