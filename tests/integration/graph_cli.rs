//! `pflow graph`: the DAG as Graphviz DOT (checked by rendering it with the real `dot`)
//! and as Mermaid (checked for structure). `fixtures/pipeline.json` has explicit edges, a
//! template-only link (`read_csv` → `by_region`) and an error edge (`count_rows` →
//! `count_failed`).
//!
//! Graphviz is a test dependency (`apt-get install graphviz`); without `dot` the DOT test
//! fails rather than skips.

use crate::common::Pflow;
use std::collections::HashMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const PIPELINE: &str = "fixtures/pipeline.json";

/// (id, type) of every node in fixtures/pipeline.json.
const PIPELINE_NODES: &[(&str, &str)] = &[
    ("write_csv", "write-file"),
    ("read_csv", "read-file"),
    ("count_rows", "shell"),
    ("count_failed", "shell"),
    ("by_region", "shell"),
];

fn pflow(args: &[&str]) -> Output {
    Pflow::new()
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn graph(file: &str, format: &str) -> String {
    let out = pflow(&["graph", file, "--format", format]);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "pflow graph {file} --format {format} failed:\n{stderr}"
    );
    text(&out.stdout)
}

/// DOT: node name (`n0`) → label text (`write_csv\n(write-file)`).
fn dot_nodes(dot: &str) -> HashMap<String, String> {
    dot.lines()
        .map(str::trim)
        .filter(|l| !l.contains("->") && l.contains("[label=\""))
        .filter_map(|l| {
            let (name, rest) = l.split_once(" [label=\"")?;
            let label = rest.split_once("\"]")?.0;
            Some((name.to_string(), label.to_string()))
        })
        .collect()
}

/// DOT: edges as (from id, to id, attributes).
fn dot_edges(dot: &str, names: &HashMap<String, String>) -> Vec<(String, String, String)> {
    let id_of = |n: &str| -> String {
        let label = names
            .get(n)
            .unwrap_or_else(|| panic!("edge names undeclared node {n}:\n{dot}"));
        label.split("\\n").next().unwrap_or_default().to_string()
    };
    dot.lines()
        .map(str::trim)
        .filter_map(|l| {
            let (from, rest) = l.split_once(" -> ")?;
            let rest = rest.trim_end_matches(';');
            let (to, attrs) = match rest.split_once(' ') {
                Some((to, attrs)) => (to, attrs.to_string()),
                None => (rest, String::new()),
            };
            Some((id_of(from), id_of(to), attrs))
        })
        .collect()
}

fn find_dot() -> String {
    let candidates = ["dot", "/usr/bin/dot", "/usr/local/bin/dot"];
    for c in candidates {
        if Command::new(c)
            .arg("-V")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            return c.to_string();
        }
    }
    panic!(
        "Graphviz `dot` is not installed, so the DOT output cannot be checked. \
         Install it (Debian/Ubuntu: `apt-get install -y graphviz`) and run the test again."
    );
}

#[test]
fn dot_output_renders_with_graphviz() {
    let dot = graph(PIPELINE, "dot");
    let exe = find_dot();
    let mut child = Command::new(&exe)
        .arg("-Tsvg")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dot");
    child
        .stdin
        .take()
        .expect("dot stdin")
        .write_all(dot.as_bytes())
        .expect("write to dot");
    let out = child.wait_with_output().expect("wait for dot");
    // Graphviz writes '-' in text as an entity.
    let svg = text(&out.stdout).replace("&#45;", "-");
    assert!(
        out.status.success(),
        "dot -Tsvg rejected the graph ({:?}):\n{}\n--- input:\n{dot}",
        out.status.code(),
        text(&out.stderr)
    );
    assert!(
        text(&out.stderr).trim().is_empty(),
        "dot warned:\n{}\n--- input:\n{dot}",
        text(&out.stderr)
    );
    assert!(svg.contains("<svg"), "no <svg in dot's output:\n{svg}");
    for (id, ty) in PIPELINE_NODES {
        assert!(svg.contains(id), "the SVG lacks node {id}");
        assert!(svg.contains(&format!("({ty})")), "the SVG lacks type {ty}");
    }
    // The error edge is drawn in red.
    assert!(svg.contains("stroke=\"red\""), "no red edge in the SVG");
}

#[test]
fn dot_boxes_have_id_and_type_and_error_edges_stand_out() {
    let dot = graph(PIPELINE, "dot");
    assert!(dot.trim_start().starts_with("digraph"), "{dot}");
    let names = dot_nodes(&dot);
    assert_eq!(names.len(), PIPELINE_NODES.len(), "{dot}");
    for (id, ty) in PIPELINE_NODES {
        let label = format!("{id}\\n({ty})");
        assert!(
            names.values().any(|l| *l == label),
            "no box labelled {label:?}:\n{dot}"
        );
    }
    let edges = dot_edges(&dot, &names);
    let find = |from: &str, to: &str| -> &str {
        let matching: Vec<&(String, String, String)> = edges
            .iter()
            .filter(|(f, t, _)| f == from && t == to)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "{from} -> {to} should be drawn once:\n{dot}"
        );
        &matching[0].2
    };
    // Explicit edges: plain. The template edge read_csv -> count_rows duplicates an
    // explicit edge and is not drawn twice.
    assert_eq!(find("write_csv", "read_csv"), "", "{dot}");
    assert_eq!(find("read_csv", "count_rows"), "", "{dot}");
    // A link that exists only through a template: dashed.
    assert!(
        find("read_csv", "by_region").contains("style=dashed"),
        "{dot}"
    );
    // The error edge: red, and labelled.
    let error = find("count_rows", "count_failed");
    assert!(error.contains("color=red"), "{dot}");
    assert!(error.contains("label=\"error\""), "{dot}");
    // Nothing else is red.
    let red = edges
        .iter()
        .filter(|(_, _, a)| a.contains("color=red"))
        .count();
    assert_eq!(red, 1, "{dot}");
    assert_eq!(edges.len(), 4, "{dot}");
}

#[test]
fn mermaid_has_every_node_and_styles_the_error_edge() {
    let mermaid = graph(PIPELINE, "mermaid");
    let mut lines = mermaid.lines();
    let first = lines.next().unwrap_or_default();
    assert!(first.starts_with("flowchart"), "{mermaid}");

    // Node declarations: `nK["id<br/><i>type</i>"]`.
    let mut node_names: HashMap<String, String> = HashMap::new();
    for line in mermaid.lines().skip(1).map(str::trim) {
        if let Some((name, rest)) = line.split_once("[\"") {
            let label = rest.trim_end_matches("\"]");
            node_names.insert(name.to_string(), label.to_string());
        }
    }
    assert_eq!(node_names.len(), PIPELINE_NODES.len(), "{mermaid}");
    for (id, ty) in PIPELINE_NODES {
        let label = format!("{id}<br/><i>{ty}</i>");
        assert!(
            node_names.values().any(|l| *l == label),
            "no node labelled {label:?}:\n{mermaid}"
        );
    }
    let name_of = |id: &str| -> String {
        node_names
            .iter()
            .find(|(_, l)| l.starts_with(&format!("{id}<br/>")))
            .map(|(n, _)| n.clone())
            .unwrap_or_else(|| panic!("no node {id}:\n{mermaid}"))
    };

    // Links, in order; linkStyle refers to them by position.
    let links: Vec<&str> = mermaid
        .lines()
        .map(str::trim)
        .filter(|l| l.contains("-->") || l.contains("-.->"))
        .collect();
    assert_eq!(links.len(), 4, "{mermaid}");
    let error_line = format!(
        "{} -- error --> {}",
        name_of("count_rows"),
        name_of("count_failed")
    );
    let error_pos = links
        .iter()
        .position(|l| *l == error_line)
        .unwrap_or_else(|| panic!("no line {error_line:?}:\n{mermaid}"));
    let template_line = format!(
        "{} -.->|data| {}",
        name_of("read_csv"),
        name_of("by_region")
    );
    assert!(links.contains(&template_line.as_str()), "{mermaid}");
    let style = format!("linkStyle {error_pos} ");
    let styled: Vec<&str> = mermaid
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("linkStyle"))
        .collect();
    assert_eq!(styled.len(), 1, "{mermaid}");
    assert!(
        styled[0].starts_with(&style) && styled[0].contains("stroke:"),
        "the error edge (link {error_pos}) is not the styled one:\n{mermaid}"
    );
}

#[test]
fn default_format_is_mermaid() {
    let out = pflow(&["graph", "fixtures/hello.json"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(s.starts_with("flowchart"), "{s}");
    for part in ["greet", "shout", "shell"] {
        assert!(s.contains(part), "{s}");
    }
    // The explicit edge and the template link are the same dependency: one line.
    assert_eq!(s.matches("-->").count(), 1, "{s}");
}

#[test]
fn graph_of_an_invalid_workflow_exits_2_with_the_diagnostics() {
    for format in ["mermaid", "dot"] {
        let out = pflow(&[
            "graph",
            "fixtures/invalid/cycle-edges.json",
            "--format",
            format,
        ]);
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains("cycle"), "{stderr}");
        assert!(text(&out.stdout).trim().is_empty(), "{}", text(&out.stdout));
    }
}

#[test]
fn graph_rejects_an_unknown_format() {
    let out = pflow(&["graph", PIPELINE, "--format", "png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("png"));
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(PIPELINE)
        .exists());
}
