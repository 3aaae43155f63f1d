//! Validation benchmark: parse and validate 1,000- and 10,000-node workflows, the first
//! step of every `pflow build`, `pflow validate` and every repair check.
//!
//! The workflow is a layered DAG of shell nodes: node i's command reads `${n{i-1}.stdout}`
//! and `${n{i/2}.stdout}`, so there are about 20,000 template links to resolve, check and
//! order.
//!
//! Run: `cargo bench --bench validate`.

use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::{json, Value};
use std::hint::black_box;

const NODES: usize = 10_000;

/// The workflow as JSON text, as it would be read from disk.
fn layered_text(n: usize) -> String {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            let command = if i == 0 {
                "echo start".to_string()
            } else {
                format!(
                    "echo {i} ${{n{}.stdout}} ${{n{}.stdout}} | wc -c",
                    i - 1,
                    i / 2
                )
            };
            json!({"id": format!("n{i}"), "type": "shell", "params": {"command": command}})
        })
        .collect();
    let doc = json!({
        "ir_version": "0.1.0",
        "nodes": nodes,
        "outputs": {"last": {"source": format!("${{n{}.stdout}}", n - 1)}}
    });
    serde_json::to_string_pretty(&doc).expect("serialize")
}

/// The same size, but every node has a problem: a reference to a missing node, a
/// dangling edge, and an output without a source. Error reporting (hints, "did you mean")
/// must stay linear too.
fn broken_doc(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            json!({"id": format!("n{i}"), "type": "shell",
                   "params": {"command": format!("echo ${{missing{i}.stdout}}")}})
        })
        .collect();
    let edges: Vec<Value> = (0..n)
        .map(|i| json!({"from": format!("n{i}"), "to": format!("gone{i}")}))
        .collect();
    let outputs: serde_json::Map<String, Value> = (0..n)
        .map(|i| (format!("out{i}"), json!({"description": "no source"})))
        .collect();
    json!({"nodes": nodes, "edges": edges, "outputs": outputs})
}

fn bench_validate(c: &mut Criterion) {
    let mut group = c.benchmark_group("validate");
    group.sample_size(20);
    for n in [1_000usize, NODES] {
        let text = layered_text(n);
        // The benchmark is only meaningful if the workflow is valid.
        let doc: Value = serde_json::from_str(&text).expect("parse");
        let v =
            pflow::validate::validate(&doc).unwrap_or_else(|r| panic!("invalid: {:?}", r.errors));
        assert_eq!(v.order.len(), n);
        group.bench_function(format!("parse_{n}_nodes"), |b| {
            b.iter(|| {
                let doc: Value = serde_json::from_str(black_box(&text)).expect("parse");
                black_box(doc)
            })
        });
        group.bench_function(format!("validate_{n}_nodes"), |b| {
            b.iter(|| black_box(pflow::validate::validate(black_box(&doc)).is_ok()))
        });
        group.bench_function(format!("parse_and_validate_{n}_nodes"), |b| {
            b.iter(|| {
                let doc: Value = serde_json::from_str(black_box(&text)).expect("parse");
                black_box(pflow::validate::validate(&doc).is_ok())
            })
        });
    }
    let broken = broken_doc(NODES);
    let errors = pflow::validate::validate(&broken)
        .err()
        .map_or(0, |r| r.errors.len());
    assert_eq!(errors, 2 * NODES);
    group.bench_function("validate_10k_broken_nodes", |b| {
        b.iter(|| black_box(pflow::validate::validate(black_box(&broken)).is_err()))
    });
    group.finish();
}

criterion_group!(benches, bench_validate);
criterion_main!(benches);
