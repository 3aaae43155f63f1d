//! Engine benchmarks: a fully cached build of a large workflow (the no-op rebuild a
//! user pays for on every `pflow build`), and the per-node cost of a cache hit.
//!
//! Run: `cargo bench --bench engine`. Figures are reported in the README.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use pflow::cache::Cache;
use pflow::executor::{execute, Options, Session};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

/// A layered DAG of `n` pure `echo` nodes: node i reads nodes i-1 and i/2.
fn layered(n: usize) -> Value {
    let nodes: Vec<Value> = (0..n)
        .map(|i| {
            // Reference small values so the benchmark measures the engine, not string growth.
            let message = if i == 0 {
                "root".to_string()
            } else {
                format!("{i}:${{n{}.metadata.count}}:${{n{}.metadata.count}}", i - 1, i / 2)
            };
            json!({"id": format!("n{i}"), "type": "echo", "params": {"message": message, "count": 1}})
        })
        .collect();
    json!({"ir_version": "0.1.0", "nodes": nodes})
}

fn options(name: &str) -> Options {
    Options {
        jobs: 2,
        force: false,
        rerun: HashSet::new(),
        run_id: "bench".into(),
        workflow_name: name.into(),
    }
}

fn bench_cached_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("cached_build");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let doc = layered(n);
        let validated = pflow::validate::validate(&doc).expect("valid benchmark workflow");
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Cache::new(dir.path().join("cache"));
        let inputs = Map::new();
        let opts = options("bench.json");
        // Warm the cache once.
        let first = execute(&validated, &inputs, &cache, &opts, &Session::default(), &mut |_| {});
        assert!(first.success);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let out = execute(&validated, &inputs, &cache, &opts, &Session::default(), &mut |_| {});
                assert!(out.success);
            })
        });
    }
    group.finish();
}

fn bench_single_hit(c: &mut Criterion) {
    let doc = json!({"nodes": [{"id": "a", "type": "echo", "params": {"message": "x"}}]});
    let validated = pflow::validate::validate(&doc).expect("valid");
    let dir = tempfile::tempdir().expect("temp dir");
    let cache = Cache::new(dir.path().join("cache"));
    let inputs = Map::new();
    let opts = options("one.json");
    execute(&validated, &inputs, &cache, &opts, &Session::default(), &mut |_| {});
    c.bench_function("per_node_cached_hit", |b| {
        b.iter(|| execute(&validated, &inputs, &cache, &opts, &Session::default(), &mut |_| {}))
    });
}

criterion_group!(benches, bench_cached_build, bench_single_hit);
criterion_main!(benches);
