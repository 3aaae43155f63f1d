//! Properties of hostile input and cache keys, checked with proptest in the normal test
//! suite (case counts stay modest so the file runs in seconds).
//!
//! - validation never panics on structured, nearly valid workflows, and every error and
//!   warning has a non-empty path and message;
//! - template resolution never expands `${...}` that arrives inside substituted data, a
//!   whole-value template yields its value unchanged, and a value rendered into text and
//!   parsed back (as a nested param does) is the same JSON value;
//! - node keys ignore cosmetic edits (object key order, whitespace, `purpose`, node order)
//!   and change when a param, an upstream output, a referenced input, a read file, the
//!   node type or the cache policy changes;
//! - canonical output digests are equal for equal JSON values however they were written;
//! - a value templated into shell text never runs, whatever syntax surrounds it;
//! - the Markdown front end never panics and places every error on a line, and an IR it
//!   writes as Markdown reads back as the same IR.
//!
//! Regression inputs found by the fuzz targets (fuzz/) are kept at the end.

use pflow::cache::layered::Layered;
use pflow::cache::Cache;
use pflow::canonical::{output_digest, to_canonical};
use pflow::executor::{execute, MissReasons, Options, Session};
use pflow::template::{render_text, ParamTemplate, Part, Template};
use pflow::validate::validate;
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, HashSet};

// ---------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------

/// Arbitrary JSON, small and of bounded depth.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        short_float().prop_map(Value::from),
        "[a-z0-9 ${}.\\[\\]\"\\\\\n]{0,12}".prop_map(Value::String),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(("[a-z_]{0,6}", inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Floats that even serde_json's default (inexact) parser reads back exactly: at most 11
/// significant digits and a magnitude under 10^14, so that their shortest text, with a
/// `.0` appended, still has a mantissa under 2^53. See `floats_survive_a_text_round_trip`
/// for the full range.
fn short_float() -> impl Strategy<Value = f64> {
    (-99_999_999_999i64..99_999_999_999, -12i32..=3)
        .prop_map(|(m, e)| format!("{m}e{e}").parse::<f64>().unwrap())
}

const IDS: &[&str] = &["a", "b", "c", "fetch", "my-node", "", "1bad", "a b"];
const TYPES: &[&str] = &[
    "echo",
    "shell",
    "read-file",
    "write-file",
    "http",
    "llm",
    "copy-file",
    "mcp-thing",
    "",
];
const FIELDS: &[&str] = &[
    "stdout", "stderr", "echo", "content", "response", "results", "count", "nope", "",
];
const PARAMS: &[&str] = &[
    "command",
    "message",
    "file_path",
    "content",
    "url",
    "prompt",
    "stdin",
    "env",
    "timeout",
    "count",
    "bogus",
];

/// A template-ish string: literal text mixed with references to ids, inputs, the batch
/// alias, bad syntax and shell expansions.
fn arb_template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        "[a-z ]{0,6}",
        (prop::sample::select(IDS), prop::sample::select(FIELDS))
            .prop_map(|(id, f)| format!("${{{id}.{f}}}")),
        (prop::sample::select(IDS), prop::sample::select(FIELDS))
            .prop_map(|(id, f)| format!("${{{id}.{f}[0].x}}")),
        Just("${name}".to_string()),
        Just("${item}".to_string()),
        Just("${__index__}".to_string()),
        Just("${b.results[${__index__}].stdout}".to_string()),
        Just("$${HOME}".to_string()),
        Just("${HOME}".to_string()),
        Just("${#arr[@]}".to_string()),
        Just("${".to_string()),
        Just("${}".to_string()),
        Just("${a..b}".to_string()),
        Just("${a[99999999999999999999999]}".to_string()),
    ];
    prop::collection::vec(piece, 0..4).prop_map(|v| v.concat())
}

fn arb_param_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => arb_template_text().prop_map(Value::String),
        1 => arb_json(),
        1 => prop::collection::vec(arb_template_text().prop_map(Value::String), 0..3)
            .prop_map(Value::Array),
        1 => prop::collection::btree_map("[A-Z]{1,3}", arb_template_text().prop_map(Value::String), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().collect())),
    ]
}

fn arb_batch() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(json!({"items": [1, 2]})),
        Just(json!({"items": "${a.stdout}", "as": "x", "parallel": true})),
        Just(json!({"items": "not a template"})),
        Just(json!({"items": [], "max_concurrent": 0})),
        Just(json!({"items": [1], "error_handling": "later", "as": "9x"})),
        arb_json(),
    ]
}

fn arb_node() -> impl Strategy<Value = Value> {
    (
        prop::option::weighted(0.9, prop::sample::select(IDS)),
        prop::option::weighted(0.9, prop::sample::select(TYPES)),
        prop::collection::vec((prop::sample::select(PARAMS), arb_param_value()), 0..4),
        prop::option::weighted(0.15, arb_batch()),
        prop::option::weighted(
            0.2,
            prop_oneof![
                Just(json!(false)),
                Just(json!("1h")),
                Just(json!("soon")),
                Just(json!(3))
            ],
        ),
        prop::option::weighted(0.1, ("[a-z]{1,8}", arb_json())),
    )
        .prop_map(|(id, ty, params, batch, cache, extra)| {
            let mut m = Map::new();
            if let Some(id) = id {
                m.insert("id".into(), json!(id));
            }
            if let Some(ty) = ty {
                m.insert("type".into(), json!(ty));
            }
            m.insert(
                "params".into(),
                Value::Object(
                    params
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
            );
            if let Some(b) = batch {
                m.insert("batch".into(), b);
            }
            if let Some(c) = cache {
                m.insert("cache".into(), c);
            }
            if let Some((k, v)) = extra {
                m.insert(k, v);
            }
            Value::Object(m)
        })
}

fn arb_workflow_doc() -> impl Strategy<Value = Value> {
    let edge = (
        prop::sample::select(IDS),
        prop::sample::select(IDS),
        prop::option::of(prop::sample::select(&["default", "error", "sometimes"][..])),
    )
        .prop_map(|(f, t, a)| {
            let mut e = json!({"from": f, "to": t});
            if let Some(a) = a {
                e["action"] = json!(a);
            }
            e
        });
    let input = (
        prop::sample::select(&["string", "number", "object", "whatever"][..]),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(ty, required, stdin)| json!({"type": ty, "required": required, "stdin": stdin}),
        );
    (
        prop::collection::vec(prop_oneof![9 => arb_node(), 1 => arb_json()], 0..6),
        prop::collection::vec(edge, 0..4),
        prop::collection::btree_map(
            prop::sample::select(&["name", "a", "", "bad name", "x$"][..]),
            input,
            0..3,
        ),
        prop::collection::btree_map("[a-z]{0,4}", arb_template_text(), 0..3),
        prop::option::weighted(0.1, prop::sample::select(IDS)),
        prop::option::weighted(0.1, ("[a-z_]{0,10}", arb_json())),
        any::<bool>(),
    )
        .prop_map(|(nodes, edges, inputs, outputs, start, extra, wrap)| {
            let mut top = Map::new();
            top.insert("ir_version".into(), json!("0.1.0"));
            top.insert("nodes".into(), Value::Array(nodes));
            top.insert("edges".into(), Value::Array(edges));
            top.insert(
                "inputs".into(),
                Value::Object(
                    inputs
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
            );
            top.insert(
                "outputs".into(),
                Value::Object(
                    outputs
                        .into_iter()
                        .map(|(k, s)| (k, json!({"source": s})))
                        .collect(),
                ),
            );
            if let Some(s) = start {
                top.insert("start_node".into(), json!(s));
            }
            if let Some((k, v)) = extra {
                top.insert(k, v);
            }
            let doc = Value::Object(top);
            if wrap {
                json!({"name": "saved", "ir": doc})
            } else {
                doc
            }
        })
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

fn check_report(doc: &Value) {
    match validate(doc) {
        Ok(v) => {
            assert_eq!(v.order.len(), v.workflow.nodes.len());
            for d in &v.warnings {
                assert!(!d.path.is_empty() && !d.message.is_empty(), "{d:?}");
            }
        }
        Err(report) => {
            assert!(
                !report.errors.is_empty(),
                "an invalid workflow with no errors"
            );
            for d in report.errors.iter().chain(&report.warnings) {
                assert!(!d.path.trim().is_empty(), "empty path: {d:?}");
                assert!(!d.message.trim().is_empty(), "empty message: {d:?}");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn validation_never_panics_and_errors_are_located(doc in arb_workflow_doc()) {
        check_report(&doc);
    }

    #[test]
    fn validation_never_panics_on_arbitrary_json(doc in arb_json()) {
        check_report(&doc);
        check_report(&json!({"nodes": [doc.clone()]}));
        check_report(&json!({"nodes": [{"id": "a", "type": "echo", "params": doc}]}));
    }

    #[test]
    fn parsing_arbitrary_text_never_panics(text in any::<String>(), bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        for r in [pflow::source::parse_json_text(&text), pflow::source::parse_json_bytes(&bytes)] {
            match r {
                Ok(doc) => check_report(&doc),
                Err(d) => prop_assert!(!d.path.is_empty() && !d.message.is_empty()),
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Markdown workflows
// ---------------------------------------------------------------------------------------

/// Text made of the lines a `.pflow.md` file has, in any order, with some noise.
fn arb_markdown_text() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        Just("# Title".to_string()),
        Just("## Steps".to_string()),
        Just("## Inputs".to_string()),
        Just("## Outputs".to_string()),
        Just("### a".to_string()),
        Just("### b".to_string()),
        Just("---".to_string()),
        Just("```".to_string()),
        Just("```shell command".to_string()),
        Just("````yaml batch".to_string()),
        Just("~~~".to_string()),
        Just("- type: shell".to_string()),
        Just("- next: b".to_string()),
        Just("- items:".to_string()),
        Just("    - x".to_string()),
        Just("  k: [1, {a: b}".to_string()),
        Just("* note".to_string()),
        Just(String::new()),
        r#"[a-z:\-"' #`~\[\]{}$]{0,16}"#.prop_map(|s| s),
        any::<String>(),
    ];
    prop::collection::vec(line, 0..24).prop_map(|lines| lines.join("\n"))
}

/// What Markdown adds to or cannot tell apart in an IR, made equal.
fn markdown_comparable(ir: &Value) -> Value {
    let mut ir = ir.clone();
    let placeholder = json!(pflow::markdown::NO_DESCRIPTION);
    if let Some(nodes) = ir.get_mut("nodes").and_then(Value::as_array_mut) {
        for n in nodes.iter_mut().filter_map(Value::as_object_mut) {
            if n.get("purpose") == Some(&placeholder) {
                n.remove("purpose");
            }
            if n.get("params") == Some(&json!({})) {
                n.remove("params");
            }
        }
    }
    for k in ["inputs", "outputs"] {
        if let Some(m) = ir.get_mut(k).and_then(Value::as_object_mut) {
            for spec in m.values_mut().filter_map(Value::as_object_mut) {
                if spec.get("description") == Some(&placeholder) {
                    spec.remove("description");
                }
            }
        }
        if ir.get(k) == Some(&json!({})) {
            if let Some(top) = ir.as_object_mut() {
                top.remove(k);
            }
        }
    }
    if let Some(top) = ir.as_object_mut() {
        top.entry("edges").or_insert_with(|| json!([]));
    }
    if let Some(edges) = ir.get_mut("edges").and_then(Value::as_array_mut) {
        for e in edges.iter_mut().filter_map(Value::as_object_mut) {
            if e.get("action") == Some(&json!("default")) {
                e.remove("action");
            }
        }
        edges.sort_by_key(|e| e.to_string());
    }
    ir
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn markdown_parsing_never_panics_and_errors_have_lines(text in arb_markdown_text()) {
        match pflow::markdown::parse(&text) {
            Ok(parsed) => check_report(&parsed.ir),
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for d in &errors {
                    prop_assert!(!d.path.is_empty() && !d.message.is_empty(), "{d:?}");
                    prop_assert!(d.line.is_some_and(|l| l >= 1), "no line: {d:?}");
                }
            }
        }
    }

    #[test]
    fn an_ir_written_as_markdown_reads_back_as_itself(doc in arb_workflow_doc()) {
        if let Ok(md) = pflow::markdown::to_markdown(&doc, "T", None) {
            let back = pflow::markdown::parse(&md);
            prop_assert!(back.is_ok(), "{:?}\n{md}", back.err());
            if let Ok(parsed) = back {
                prop_assert_eq!(markdown_comparable(&parsed.ir), markdown_comparable(&doc), "{}", md);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Templates
// ---------------------------------------------------------------------------------------

/// One piece of a template: literal text or a reference to scope entry `v0`..`v3`.
#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Ref(usize),
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Data that looks like a template is inserted verbatim: the secret behind `${s}` is
    /// never reached through a value that mentions it.
    #[test]
    fn substituted_data_is_never_expanded(
        values in prop::collection::vec(
            prop::collection::vec(
                prop_oneof![
                    "[a-z ]{0,5}",
                    Just("${s}".to_string()),
                    Just("${s.x}".to_string()),
                    Just("${v0}".to_string()),
                    Just("$${s}".to_string()),
                    Just("${".to_string()),
                ],
                0..4,
            ).prop_map(|p| p.concat()),
            4,
        ),
        pieces in prop::collection::vec(
            prop_oneof![
                "[a-z .:/-]{0,6}".prop_map(Piece::Text),
                (0usize..4).prop_map(Piece::Ref),
            ],
            1..6,
        ),
    ) {
        let mut scope = Map::new();
        scope.insert("s".into(), json!({"x": "LEAKED"}));
        for (i, v) in values.iter().enumerate() {
            scope.insert(format!("v{i}"), json!(v));
        }
        let source: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Ref(i) => format!("${{v{i}}}"),
            })
            .collect();
        let expected: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.clone(),
                Piece::Ref(i) => values[*i].clone(),
            })
            .collect();
        let t = Template::parse(&source).unwrap();
        let got = t.resolve(&scope).unwrap();
        prop_assert_eq!(&got, &json!(expected));
        prop_assert!(!got.as_str().unwrap_or("").contains("LEAKED"));

        // The same through a param value, nested in an object and an array.
        let p = ParamTemplate::compile(&json!({"k": source, "l": [source]})).unwrap();
        let got = p.resolve(&scope).unwrap();
        prop_assert!(!got.to_string().contains("LEAKED"));
    }

    /// A whole-value template keeps its value exactly, whatever the value.
    #[test]
    fn whole_value_template_keeps_the_value(v in arb_json()) {
        let mut scope = Map::new();
        scope.insert("x".into(), v.clone());
        scope.insert("n".into(), json!({"stdout": v.clone()}));
        prop_assert_eq!(Template::parse("${x}").unwrap().resolve(&scope).unwrap(), v.clone());
        prop_assert_eq!(Template::parse("${n.stdout}").unwrap().resolve(&scope).unwrap(), v.clone());
        let top = ParamTemplate::compile(&json!("${x}")).unwrap();
        prop_assert_eq!(top.resolve(&scope).unwrap(), v);
    }

    /// A value rendered into text (as a shell step prints it) and read back by a nested
    /// whole-value template (as a param object does) is the same JSON value.
    #[test]
    fn rendering_then_parsing_preserves_the_value(v in arb_json()) {
        let text = render_text(&v).into_owned();
        let mut scope = Map::new();
        scope.insert("n".into(), json!({"stdout": text}));
        let p = ParamTemplate::compile(&json!({"wrapped": "${n.stdout}"})).unwrap();
        let got = p.resolve(&scope).unwrap();
        match &v {
            // The same JSON value: equal canonical forms (`0.0` renders as `0`).
            Value::Array(_) | Value::Object(_) => prop_assert_eq!(
                pflow::canonical::to_canonical(&got["wrapped"]),
                pflow::canonical::to_canonical(&v)
            ),
            // Primitives stay text: numeric-looking ids keep their type.
            _ => prop_assert_eq!(&got["wrapped"], &json!(render_text(&v))),
        }
        // Walking into the text reaches the same members.
        if let Value::Object(m) = &v {
            for (k, member) in m {
                if pflow::workflow::is_template_name(k) {
                    let t = Template::parse(&format!("${{n.stdout.{k}}}")).unwrap();
                    prop_assert_eq!(
                        pflow::canonical::to_canonical(&t.resolve(&scope).unwrap()),
                        pflow::canonical::to_canonical(member)
                    );
                }
            }
        }
    }

    /// Template source round-trips: parse, render back to source, parse again.
    #[test]
    fn template_source_round_trips(src in arb_template_text()) {
        if let Ok(t) = Template::parse(&src) {
            let again = Template::parse(&t.to_source()).unwrap();
            prop_assert_eq!(&again, &t);
            for part in &t.parts {
                if let Part::Ref(r) = part {
                    let single = Template::parse(&r.to_string()).unwrap();
                    prop_assert_eq!(single.as_single_ref(), Some(r));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Node keys
// ---------------------------------------------------------------------------------------

/// A small build of `echo` and `read-file` nodes, in a temporary folder.
struct KeyLab {
    dir: tempfile::TempDir,
}

impl KeyLab {
    fn new() -> KeyLab {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("data.txt"), "first").unwrap();
        KeyLab { dir }
    }

    fn data_path(&self) -> String {
        self.dir.path().join("data.txt").display().to_string()
    }

    /// Keys by node id, from workflow source text.
    fn keys_of_text(&self, text: &str, inputs: &Map<String, Value>) -> BTreeMap<String, String> {
        let doc = pflow::source::parse_json_text(text).expect("parses");
        self.keys(&doc, inputs)
    }

    fn keys(&self, doc: &Value, inputs: &Map<String, Value>) -> BTreeMap<String, String> {
        let v = validate(doc).unwrap_or_else(|r| panic!("invalid: {:?}\n{doc:#}", r.errors));
        let cache = Layered::new(Cache::new(self.dir.path().join("cache")), None);
        let opts = Options {
            jobs: 2,
            jobs_given: true,
            force: false,
            rerun: HashSet::new(),
            run_id: "props".into(),
            workflow_name: "props.json".into(),
            strict_env: false,
            targets: Vec::new(),
            write_roots: pflow::workspace::WriteRoots::new(&[self.dir.path().to_path_buf()]),
            redactor: Default::default(),
            live: Default::default(),
            reasons: MissReasons::Reported,
            known: Vec::new(),
            parts: Vec::new(),
        };
        let outcome = execute(&v, inputs, &cache, &opts, &Session::default(), &mut |_| {});
        assert!(outcome.success, "{:?}", outcome.nodes);
        outcome
            .nodes
            .iter()
            .map(|r| (r.id.clone(), r.key.expect("every node has a key").hex()))
            .collect()
    }
}

/// A random DAG of echo nodes `n0..nk` (each may read earlier nodes and the inputs), plus
/// `file` (read-file) which `n0` may read.
#[derive(Debug, Clone)]
struct Dag {
    /// For each echo node: its message pieces (text, `Some(j)` = `${nj.echo}`,
    /// input names) and whether it reads the file node.
    nodes: Vec<EchoSpec>,
    purpose_seed: u8,
}

#[derive(Debug, Clone)]
struct EchoSpec {
    text: String,
    deps: Vec<usize>,
    inputs: Vec<&'static str>,
    reads_file: bool,
    count: Option<i64>,
}

fn arb_dag() -> impl Strategy<Value = Dag> {
    (2usize..6)
        .prop_flat_map(|n| {
            let specs: Vec<_> = (0..n)
                .map(|i| {
                    (
                        "[a-z ]{0,8}",
                        prop::collection::vec(0..i.max(1), 0..=i.min(2)),
                        prop::collection::vec(prop::sample::select(&["who", "tone"][..]), 0..2),
                        any::<bool>(),
                        prop::option::of(1i64..4),
                    )
                        .prop_map(
                            move |(text, deps, inputs, reads_file, count)| EchoSpec {
                                text,
                                deps: if i == 0 { Vec::new() } else { deps },
                                inputs,
                                reads_file,
                                count,
                            },
                        )
                })
                .collect();
            (specs, any::<u8>())
        })
        .prop_map(|(nodes, purpose_seed)| Dag {
            nodes,
            purpose_seed,
        })
}

impl Dag {
    fn doc(&self, lab: &KeyLab) -> Value {
        let mut nodes = vec![json!({
            "id": "file",
            "type": "read-file",
            "purpose": format!("read the data {}", self.purpose_seed),
            "params": {"file_path": lab.data_path()}
        })];
        for (i, spec) in self.nodes.iter().enumerate() {
            let mut msg = spec.text.clone();
            for d in &spec.deps {
                msg.push_str(&format!(" ${{n{d}.echo}}"));
            }
            for input in &spec.inputs {
                msg.push_str(&format!(" ${{{input}}}"));
            }
            if spec.reads_file {
                msg.push_str(" ${file.content}");
            }
            let mut params = Map::new();
            params.insert("message".into(), json!(msg));
            if let Some(c) = spec.count {
                params.insert("count".into(), json!(c));
            }
            nodes.push(json!({
                "id": format!("n{i}"),
                "type": "echo",
                "purpose": format!("step {i} of {}", self.purpose_seed),
                "params": params
            }));
        }
        json!({
            "ir_version": "0.1.0",
            "inputs": {
                "who": {"type": "string", "required": false, "default": "ada"},
                "tone": {"type": "string", "required": false, "default": "calm"}
            },
            "nodes": nodes,
            "outputs": {"last": {"source": format!("${{n{}.echo}}", self.nodes.len() - 1)}}
        })
    }

    /// Nodes that read `target` directly or through others (target included).
    fn reached_from(&self, is_source: impl Fn(usize) -> bool) -> HashSet<String> {
        let mut hit: Vec<bool> = Vec::new();
        for (i, spec) in self.nodes.iter().enumerate() {
            let h = is_source(i) || spec.deps.iter().any(|&d| hit[d]);
            hit.push(h);
        }
        hit.iter()
            .enumerate()
            .filter(|(_, h)| **h)
            .map(|(i, _)| format!("n{i}"))
            .collect()
    }
}

fn inputs(who: &str, tone: &str) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("who".into(), json!(who));
    m.insert("tone".into(), json!(tone));
    m
}

/// Every object's keys in reverse order, recursively.
fn reverse_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m.iter().rev() {
                out.insert(k.clone(), reverse_keys(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(reverse_keys).collect()),
        other => other.clone(),
    }
}

/// Which ids have a different key in `b` than in `a`.
fn changed(a: &BTreeMap<String, String>, b: &BTreeMap<String, String>) -> HashSet<String> {
    a.iter()
        .filter(|(id, k)| b.get(*id) != Some(*k))
        .map(|(id, _)| id.clone())
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn keys_ignore_cosmetic_edits(dag in arb_dag(), rotate in 0usize..8) {
        let lab = KeyLab::new();
        let ins = inputs("ada", "calm");
        let doc = dag.doc(&lab);
        let base = lab.keys(&doc, &ins);

        // Key order and whitespace of the file.
        let compact = serde_json::to_string(&reverse_keys(&doc)).unwrap();
        prop_assert_eq!(&lab.keys_of_text(&compact, &ins), &base);
        let pretty = serde_json::to_string_pretty(&doc).unwrap().replace('\n', "\n\t  \r\n");
        prop_assert_eq!(&lab.keys_of_text(&pretty, &ins), &base);

        // Purpose text.
        let mut other = dag.clone();
        other.purpose_seed = dag.purpose_seed.wrapping_add(1);
        prop_assert_eq!(&lab.keys(&other.doc(&lab), &ins), &base);

        // Node order: dependencies are named by templates, not positions.
        let mut shuffled = doc.clone();
        let arr = shuffled["nodes"].as_array_mut().unwrap();
        let len = arr.len();
        arr.rotate_left(rotate % len);
        arr.reverse();
        prop_assert_eq!(&lab.keys(&shuffled, &ins), &base);
    }

    #[test]
    fn keys_change_with_what_can_change_a_result(dag in arb_dag(), pick in any::<prop::sample::Index>()) {
        let lab = KeyLab::new();
        let ins = inputs("ada", "calm");
        let doc = dag.doc(&lab);
        let base = lab.keys(&doc, &ins);
        let k = pick.index(dag.nodes.len());
        let target = format!("n{k}");

        // A param: the node and everything downstream (its output changes).
        let mut edited = dag.clone();
        edited.nodes[k].text.push('!');
        let expect = dag.reached_from(|i| i == k);
        prop_assert_eq!(changed(&base, &lab.keys(&edited.doc(&lab), &ins)), expect.clone());

        // A param that does not change the output (count 1 is the default): the node's own
        // key changes, its dependents are spared by early cutoff.
        let mut doc2 = doc.clone();
        let params = &mut doc2["nodes"][k + 1]["params"];
        params["count"] = json!(params.get("count").and_then(Value::as_i64).map_or(1, |c| if c == 1 { 2 } else { 1 }));
        let got = changed(&base, &lab.keys(&doc2, &ins));
        prop_assert!(got.contains(&target), "{:?}", got);

        // A referenced input: exactly the nodes that read it, and what their outputs reach.
        let keys_who = lab.keys(&doc, &inputs("grace", "calm"));
        prop_assert_eq!(changed(&base, &keys_who), dag.reached_from(|i| dag.nodes[i].inputs.contains(&"who")));

        // A read file: the read-file node, and every node that reads its content.
        std::fs::write(lab.dir.path().join("data.txt"), "second").unwrap();
        let keys_file = lab.keys(&doc, &ins);
        let mut expect_file = dag.reached_from(|i| dag.nodes[i].reads_file);
        expect_file.insert("file".into());
        prop_assert_eq!(changed(&base, &keys_file), expect_file);
        std::fs::write(lab.dir.path().join("data.txt"), "first").unwrap();
        prop_assert_eq!(&lab.keys(&doc, &ins), &base);

        // The cache policy: false, a maximum age, and true (the default, same as absent).
        let mut volatile = doc.clone();
        volatile["nodes"][k + 1]["cache"] = json!(false);
        let kv = lab.keys(&volatile, &ins);
        prop_assert!(changed(&base, &kv).contains(&target));
        let mut aged = doc.clone();
        aged["nodes"][k + 1]["cache"] = json!("1h");
        let ka = lab.keys(&aged, &ins);
        prop_assert!(changed(&base, &ka).contains(&target));
        prop_assert!(changed(&kv, &ka).contains(&target));
        let mut explicit = doc.clone();
        explicit["nodes"][k + 1]["cache"] = json!(true);
        prop_assert_eq!(&lab.keys(&explicit, &ins), &base);
    }
}

#[test]
fn keys_change_with_the_node_type() {
    // read-file and delete-file take the same param; only the type differs.
    let lab = KeyLab::new();
    let ins = Map::new();
    let doc = |ty: &str| {
        json!({"nodes": [
            {"id": "f", "type": ty, "params": {"file_path": lab.data_path()}},
            {"id": "after", "type": "echo", "params": {"message": "done"}}
        ]})
    };
    let read = lab.keys(&doc("read-file"), &ins);
    let delete = lab.keys(&doc("delete-file"), &ins);
    assert_ne!(read["f"], delete["f"]);
    assert_eq!(read["after"], delete["after"]);
}

#[test]
fn keys_change_with_an_upstream_output_and_not_with_its_unchanged_rerun() {
    let lab = KeyLab::new();
    let ins = Map::new();
    let doc = |msg: &str, purpose: &str| {
        json!({"nodes": [
            {"id": "up", "type": "echo", "purpose": purpose, "params": {"message": msg}},
            {"id": "down", "type": "echo", "params": {"message": "got ${up.echo}"}}
        ]})
    };
    let a = lab.keys(&doc("x", "p"), &ins);
    let b = lab.keys(&doc("y", "p"), &ins);
    assert_ne!(a["down"], b["down"]);
    // The same upstream output through a different param: 'x' twice is not 'x'.
    let c = lab.keys(&doc("x", "q"), &ins);
    assert_eq!(a, c);
}

// ---------------------------------------------------------------------------------------
// Canonical digests
// ---------------------------------------------------------------------------------------

/// JSON whose integers can also be written as integral floats (|i| < 2^49, so that
/// `i.0` is read exactly even without serde_json's `float_roundtrip`).
fn arb_intish_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 49)..(1i64 << 49)).prop_map(Value::from),
        any::<String>().prop_map(Value::String),
        short_float()
            .prop_filter("not integral", |f| f.fract() != 0.0)
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// The same value with every integer as a float, and object keys reversed.
fn floaty(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => json!(n.as_f64().unwrap()),
        Value::Array(items) => Value::Array(items.iter().map(floaty).collect()),
        Value::Object(m) => Value::Object(
            m.iter()
                .rev()
                .map(|(k, v)| (k.clone(), floaty(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Source text for `v` with integers written with a fraction or an exponent, and
/// generous whitespace.
fn spaced_text(v: &Value, exp: bool) -> String {
    match v {
        Value::Number(n) if n.is_i64() || n.is_u64() => {
            let i = n.as_i64().unwrap_or(0);
            if exp && i != 0 && i % 100 == 0 {
                format!("{}e2", i / 100)
            } else {
                // Not more zeros: with serde_json's default (inexact) float parsing,
                // "-101238489313667.000" is not read as an integral float.
                format!("{i}.0")
            }
        }
        Value::Array(items) => format!(
            "[ \n{} ]",
            items
                .iter()
                .map(|i| spaced_text(i, exp))
                .collect::<Vec<_>>()
                .join(" ,\t")
        ),
        Value::Object(m) => format!(
            "{{\r\n{} }}",
            m.iter()
                .rev()
                .map(|(k, v)| format!(
                    "{} :  {}",
                    serde_json::to_string(k).unwrap(),
                    spaced_text(v, exp)
                ))
                .collect::<Vec<_>>()
                .join(",\n  ")
        ),
        other => serde_json::to_string(other).unwrap(),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whitespace and the spelling of a number (`100.0`, `1e2`) never change a value's
    /// digest, nor does the order of the top-level output names. An integer written as a
    /// float and members in another order inside a value do: nodes use values as
    /// written (`write-file` keeps `1.0` and the members' order), so a dependent must see
    /// them (see `canonical::to_key_bytes`).
    #[test]
    fn equal_values_have_equal_digests(v in arb_intish_json(), exp in any::<bool>()) {
        let d = output_digest(&v);
        let compact: Value = serde_json::from_str(&serde_json::to_string(&v).unwrap()).unwrap();
        prop_assert_eq!(output_digest(&compact), d);
        if let Value::Object(m) = &v {
            let names_reversed: Value = Value::Object(m.iter().rev().map(|(k, v)| (k.clone(), v.clone())).collect());
            prop_assert_eq!(output_digest(&names_reversed), d);
        }
        // `floaty` and `spaced_text` both write every integer as a float and reverse
        // every object's members: the same value as written, spelled two ways.
        let written = output_digest(&floaty(&v));
        let text = spaced_text(&v, exp);
        let parsed = pflow::source::parse_json_text(&text);
        // Deeply nested values may exceed the parser's depth limit; the rest must parse.
        if let Ok(parsed) = parsed {
            prop_assert_eq!(output_digest(&parsed), written, "{}", text);
        }
        if has_integer(&v) {
            prop_assert_ne!(written, d, "an integer written as a float is another value");
        }
    }

    #[test]
    fn different_values_have_different_digests(a in arb_json(), b in arb_json()) {
        if to_canonical(&a) != to_canonical(&b) {
            prop_assert_ne!(output_digest(&a), output_digest(&b));
        }
        // A value and the same value as text are different outputs.
        prop_assert_ne!(output_digest(&a), output_digest(&json!(a.to_string())));
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    /// A float written out and read back is the same float, so a cached output's digest
    /// still matches when it is loaded. serde_json's default float parsing is not exact
    /// (`2483888783420960001e-227` comes back one ULP off, and `-101238489313667.000` is
    /// not even integral), and then the cache calls the entry corrupt and runs the node
    /// again on every build that needs its value.
    #[test]
    fn floats_survive_a_text_round_trip(f in any::<f64>().prop_filter("finite", |f| f.is_finite())) {
        let v = json!([f]);
        let text = serde_json::to_string(&v).unwrap();
        let back = pflow::source::parse_json_text(&text).unwrap();
        prop_assert_eq!(&back, &v, "{}", text);
        prop_assert_eq!(output_digest(&back), output_digest(&v));
    }
}

/// Spellings of one float share a digest; the integer is written otherwise (`100`, not
/// `100.0`), so it has its own.
#[test]
fn canonical_number_forms() {
    let digest = |f: &str| output_digest(&pflow::source::parse_json_text(f).unwrap());
    let forms = ["100.0", "1e2", "1.00E+2", "100.000", "10000e-2"];
    let digests: HashSet<_> = forms.iter().map(|f| digest(f)).collect();
    assert_eq!(digests.len(), 1, "{forms:?}");
    assert_ne!(digest("100"), digest("100.0"));
    assert_eq!(digest("100"), output_digest(&json!(100)));
    assert_ne!(output_digest(&json!(100)), output_digest(&json!(100.5)));
}

/// Does `v` hold an integer anywhere?
fn has_integer(v: &Value) -> bool {
    match v {
        Value::Number(n) => n.is_i64() || n.is_u64(),
        Value::Array(items) => items.iter().any(has_integer),
        Value::Object(m) => m.values().any(has_integer),
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------
// Values in shell text
// ---------------------------------------------------------------------------------------

/// Pieces of shell syntax a command is made of, around `${v}` templates. No piece makes a
/// quoted here-document or a second shell (`sh -c`, `eval`): those are the spots pflow
/// warns about instead.
const SHELL_PIECES: &[&str] = &[
    "echo ", "'", "\"", "$(", ")", "`", "\\", "${X:-", "}", "$((1+", "))", "#", "\n", "; ",
    " | cat", "<<E\n", "\nE\n", "<<-E\n", "a", " ", "${v}", "${v}", "${v}", "$${v}", "(", "&&",
];

/// A value that runs `touch` wherever it is parsed as code.
const HOSTILE_VALUE: &str =
    "x;touch P\n$(touch P)`touch P`'\";touch P;'\"a[$(touch P)]<<E\ntouch P\nE\n";

struct Single(Value);

impl pflow::template::Scope for Single {
    fn lookup(&self, root: &str) -> Option<std::borrow::Cow<'_, Value>> {
        (root == "v").then(|| std::borrow::Cow::Borrowed(&self.0))
    }
    fn root_names(&self) -> Vec<String> {
        vec!["v".into()]
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Whatever shell text surrounds a template, the value in it never runs: `sh` may
    /// fail on the text, but no `touch` in the value happens.
    #[test]
    fn a_value_in_shell_text_never_runs(pieces in proptest::collection::vec(0..SHELL_PIECES.len(), 1..14)) {
        let text: String = pieces.iter().map(|&i| SHELL_PIECES[i]).collect();
        let Ok(t) = Template::parse(&text) else { return Ok(()) };
        let scope = Single(Value::String(HOSTILE_VALUE.into()));
        let shell = t.resolve_shell(&scope, false).expect("resolves");
        let dir = tempfile::tempdir().unwrap();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&shell.command)
            .envs(shell.vars.iter().map(|(k, v)| (k, v)))
            .current_dir(dir.path())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        let _ = status;
        prop_assert!(!dir.path().join("P").exists(), "ran from {text:?} as {:?}", shell.command);
    }
}

// ---------------------------------------------------------------------------------------
// Edits found by comparing texts
// ---------------------------------------------------------------------------------------

/// Bits of text an edit splices in: JSON's structure, and what could pass for a value.
const SPLICE_PIECES: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    " ",
    "\n",
    "0",
    "1",
    ".5",
    "e5",
    "-",
    "x",
    "\\",
    "\"id\"",
    "\"a\"",
    "{\"id\": \"c\", \"type\": \"echo\"}",
    "null",
    "\u{e9}",
    // Characters that share their first or last bytes with the messages' é and €
    // (C3 A9, E2 82 AC): è C3 A8, ₤ E2 82 A4, ѩ D1 A9, Ⴌ E1 82 AC, so a stretch the
    // old and new texts share can end or start inside a character.
    "\u{e8}",
    "\u{20a4}",
    "\u{469}",
    "\u{10ac}",
];

fn nodes_text(messages: &[String]) -> String {
    let nodes: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| json!({"id": format!("n{i}"), "type": "echo", "params": {"message": m}}))
        .collect();
    serde_json::to_string_pretty(&json!({"ir_version": "0.1.0", "nodes": nodes, "outputs": {}}))
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Whatever stretch of a workflow's text an edit replaces, an edit the comparison
    /// accepts is the one a full cut of the new text sees: the same nodes where they
    /// are, and the changed ones exactly those whose text differs. The old text is
    /// read in three pieces cut anywhere, as a kept copy and its splice are, and the
    /// new one from a file against it, as the edit path reads it.
    #[test]
    fn an_accepted_edit_agrees_with_cutting_the_whole_text(
        messages in proptest::collection::vec("[a-z\u{e9}\u{20ac} ]{0,12}", 1..6),
        at in 0.0..1.0f64,
        cut in 0usize..40,
        pieces in proptest::collection::vec(0..SPLICE_PIECES.len(), 0..5),
        kept_cuts in (0.0..1.0f64, 0.0..1.0f64),
    ) {
        use pflow::node_texts::{edited, EditRead, NodeTexts, Spliced};
        let old = nodes_text(&messages);
        let layout = NodeTexts::of(&old).unwrap().layout(&old).unwrap();
        let mut start = (old.len() as f64 * at) as usize;
        while !old.is_char_boundary(start) { start -= 1; }
        let mut end = (start + cut).min(old.len());
        while !old.is_char_boundary(end) { end += 1; }
        let splice: String = pieces.iter().map(|&i| SPLICE_PIECES[i]).collect();
        let new = format!("{}{}{}", &old[..start], splice, &old[end..]);
        let (i, j) = (
            (old.len() as f64 * kept_cuts.0) as usize,
            (old.len() as f64 * kept_cuts.1) as usize,
        );
        let (i, j) = (i.min(j), i.max(j));
        let b = old.as_bytes();
        let kept = Spliced::of(&b[..i], &b[i..j], &b[j..]);
        prop_assert_eq!(
            edited(kept, &layout, &new),
            edited(Spliced::whole(b), &layout, &new)
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wf.json");
        std::fs::write(&path, &new).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let read = EditRead::read(&file, new.len(), kept);
        prop_assert!(read.is_ok(), "a UTF-8 file not read: {new}");
        let read = read.unwrap();
        let text = read.text();
        let bytes = text.slice(0, text.len());
        prop_assert_eq!(bytes.as_deref(), Some(new.as_bytes()));
        prop_assert_eq!(read.edited(&layout), edited(kept, &layout, &new));
        if let Some(got) = edited(kept, &layout, &new) {
            let cut = NodeTexts::of(&new);
            prop_assert!(cut.is_some(), "accepted text that does not cut: {new}");
            let cut = cut.unwrap();
            prop_assert_eq!(&got.layout, &cut.layout(&new).unwrap());
            let was = NodeTexts::of(&old).unwrap();
            let differ: Vec<usize> = (0..cut.nodes.len()).filter(|&i| cut.nodes[i] != was.nodes[i]).collect();
            prop_assert_eq!(got.changed, differ);
        }
    }

    /// An edit of one node's value is always accepted.
    #[test]
    fn an_edit_of_one_value_is_accepted(
        messages in proptest::collection::vec("[a-z ]{0,12}", 1..6),
        which in any::<proptest::sample::Index>(),
        to in "[a-z\u{e9} ]{0,12}",
    ) {
        let i = which.index(messages.len());
        let mut edited_messages = messages.clone();
        edited_messages[i] = to.clone();
        let (old, new) = (nodes_text(&messages), nodes_text(&edited_messages));
        let layout = pflow::node_texts::NodeTexts::of(&old).unwrap().layout(&old).unwrap();
        let got = pflow::node_texts::edited(
            pflow::node_texts::Spliced::whole(old.as_bytes()),
            &layout,
            &new,
        );
        prop_assert!(got.is_some());
        let expect: Vec<usize> = if messages[i] == to { vec![] } else { vec![i] };
        prop_assert_eq!(got.unwrap().changed, expect);
    }
}

// ---------------------------------------------------------------------------------------
// Regressions found by fuzzing and by the properties above
// ---------------------------------------------------------------------------------------

/// fuzz target `workflow` (crash-a9960269…): an unknown top-level field with an empty
/// name produced an error whose path was empty.
#[test]
fn fuzz_workflow_empty_key_has_a_path() {
    let doc = pflow::source::parse_json_bytes(b"{\n  \"\": []\n}").unwrap();
    check_report(&doc);
    let errors = validate(&doc).unwrap_err().errors;
    assert!(errors.iter().any(|d| d.path == "[\"\"]"), "{errors:?}");
}

/// The `workflow` fuzz target's round-trip check: a batch's `max_retries` was dropped by
/// `Workflow::to_json`.
#[test]
fn fuzz_workflow_to_json_keeps_batch_retries() {
    let doc = json!({"nodes": [{"id": "a", "type": "echo", "params": {"message": "${item}"},
                                "batch": {"items": [1, 2], "max_retries": 4}}]});
    let v = validate(&doc).unwrap();
    let again = validate(&v.workflow.to_json()).unwrap();
    assert_eq!(again.workflow, v.workflow);
}

/// Long names made "did you mean" quadratic in their length: an 81 KB workflow took
/// minutes to validate.
#[test]
fn long_unknown_names_validate_quickly() {
    let long = "q".repeat(3000);
    let nodes: Vec<Value> = (0..30)
        .map(|i| {
            json!({"id": format!("n{long}{i}"), "type": "echo",
                        "params": {"message": format!("${{m{long}{i}.echo}}")}})
        })
        .collect();
    let edges: Vec<Value> = (0..30)
        .map(|i| json!({"from": format!("x{long}{i}"), "to": format!("n{long}{i}")}))
        .collect();
    let start = std::time::Instant::now();
    check_report(&json!({"nodes": nodes, "edges": edges, "start_node": format!("z{long}")}));
    assert!(start.elapsed().as_secs() < 10, "{:?}", start.elapsed());
}
