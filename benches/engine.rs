//! Engine benchmarks: a fully cached build of a large workflow (the no-op rebuild a
//! user pays for on every `pflow build`), and the per-node cost of a cache hit.
//!
//! Run: `cargo bench --bench engine`. Figures are reported in the README.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use pflow::cache::layered::Layered;
use pflow::cache::Cache;
use pflow::executor::{execute, MissReasons, Options, Outcome, Session};
use pflow::validate::Validated;
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

/// One build with no inputs and no progress reporting, as a fresh command would run it.
fn build(v: &Validated, cache: &Layered, opts: &Options) -> Outcome {
    execute(
        v,
        &Map::new(),
        cache,
        opts,
        &Session::default(),
        &mut |_| {},
    )
}

fn options(name: &str) -> Options {
    Options {
        jobs: 2,
        jobs_given: true,
        force: false,
        rerun: HashSet::new(),
        run_id: "bench".into(),
        workflow_name: name.into(),
        strict_env: false,
        targets: Vec::new(),
        write_roots: Default::default(),
        redactor: Default::default(),
        live: Default::default(),
        reasons: MissReasons::Reported,
        known: Vec::new(),
        parts: Vec::new(),
    }
}

fn bench_cached_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("cached_build");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let doc = layered(n);
        let validated = pflow::validate::validate(&doc).expect("valid benchmark workflow");
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Layered::new(Cache::new(dir.path().join("cache")), None);
        let opts = options("bench.json");
        // Warm the cache once.
        let first = build(&validated, &cache, &opts);
        assert!(first.success);
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                let out = build(&validated, &cache, &opts);
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
    let cache = Layered::new(Cache::new(dir.path().join("cache")), None);
    let opts = options("one.json");
    build(&validated, &cache, &opts);
    c.bench_function("per_node_cached_hit", |b| {
        b.iter(|| build(&validated, &cache, &opts))
    });
}

/// One node near the end edited (a new value each iteration, so it is never cached):
/// the no-op cost plus that node and what it reaches.
fn bench_edited_build(c: &mut Criterion) {
    let mut group = c.benchmark_group("one_node_edited_build");
    group.sample_size(10);
    for n in [1_000usize, 10_000] {
        let doc = layered(n);
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = Layered::new(Cache::new(dir.path().join("cache")), None);
        let opts = options("edited.json");
        let v = pflow::validate::validate(&doc).expect("valid");
        build(&v, &cache, &opts);
        let mut counter = 0u64;
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter_batched(
                || {
                    counter += 1;
                    let mut edited = doc.clone();
                    edited["nodes"][n - 10]["params"]["prefix"] = json!(format!("v{counter}"));
                    pflow::validate::validate(&edited).expect("valid")
                },
                |v| {
                    let out = build(&v, &cache, &opts);
                    assert!(out.success);
                    // Returned, so that freeing the workflow is not timed (as in
                    // `cached_build`, which reuses one; the CLI never frees it).
                    v
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

/// Computing node keys: the per-node work every build does before deciding anything
/// (components named as the executor names them, without building strings).
fn bench_key_computation(c: &mut Criterion) {
    let mut group = c.benchmark_group("key_computation");
    for n in [1_000usize, 10_000] {
        let nodes: Vec<(String, String, Value)> = (0..n)
            .map(|i| {
                let params =
                    json!({"command": format!("echo {i} ${{n{}.stdout}}", i / 2), "timeout": 30});
                (format!("n{i}"), format!("n{}", i / 2), params)
            })
            .collect();
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                nodes
                    .iter()
                    .map(|(id, dep, p)| {
                        let mut kb = pflow::key::KeyBuilder::new();
                        kb.add_text("id", id);
                        kb.add_text("type", "shell@1");
                        if let Some(obj) = p.as_object() {
                            for (k, v) in obj {
                                kb.add_value(("param", k.as_str()), v);
                            }
                        }
                        kb.add_digest(("dep", dep.as_str()), [7; 32]);
                        kb.finish()
                    })
                    .count()
            })
        });
    }
    group.finish();
}

/// Hashing a large file a `read-file` node reads (memory-mapped, multi-threaded).
fn bench_file_hashing(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.bin");
    let size = 64 * 1024 * 1024;
    let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
    std::fs::write(&path, &data).expect("write");
    let mut group = c.benchmark_group("file_hashing");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(size as u64));
    group.bench_function("64MiB", |b| {
        b.iter(|| pflow::fsutil::file_digest(&path).expect("hash"))
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_cached_build,
    bench_single_hit,
    bench_edited_build,
    bench_key_computation,
    bench_file_hashing
);
criterion_main!(benches);
