//! How many batch items run at once: items run in parallel by default (up to
//! `max_concurrent`), one at a time with an explicit `"parallel": false`, and `--jobs N`
//! bounds every worker, batch items of several batches together, at N.
//!
//! A loopback server counts the requests it is answering at once. Each request waits
//! until `want` requests are in flight together (or `hold` has passed): a client that runs
//! that many at once is then seen doing so, however slowly its threads start, and one
//! that runs fewer is never seen with more. The assertions are on those counts only.

use crate::stub;

use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use stub::{Project, Reply, Stub};

#[derive(Default)]
struct Gauge {
    now: AtomicUsize,
    max: AtomicUsize,
}

impl Gauge {
    fn max(&self) -> usize {
        self.max.load(Ordering::SeqCst)
    }
}

/// A server that answers `{"path": ...}` and records the most requests in flight at once.
fn gauge_server(want: usize, hold: Duration) -> (Stub, Arc<Gauge>) {
    let gauge = Arc::new(Gauge::default());
    let g = gauge.clone();
    let stub = Stub::start(move |req, _| {
        let now = g.now.fetch_add(1, Ordering::SeqCst) + 1;
        g.max.fetch_max(now, Ordering::SeqCst);
        let until = Instant::now() + hold;
        while g.max.load(Ordering::SeqCst) < want && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(2));
        }
        g.now.fetch_sub(1, Ordering::SeqCst);
        Reply::json(200, &json!({"path": req.path()}))
    });
    (stub, gauge)
}

/// An `http` batch node `id` over `items`, with `batch` fields added.
fn batch_node(id: &str, url: &str, items: usize, batch: Value) -> Value {
    let mut b = json!({"items": (0..items).collect::<Vec<_>>()});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), batch.as_object()) {
        b.extend(extra.clone());
    }
    json!({"id": id, "type": "http", "batch": b,
           "params": {"url": format!("{url}/{id}/${{item}}")}})
}

/// The paths the results hold, in result order.
fn result_paths(results: &Value) -> Vec<String> {
    results
        .as_array()
        .map(|a| {
            a.iter()
                .map(|r| r["response"]["path"].as_str().unwrap_or("?").to_string())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn items_run_in_parallel_by_default_and_keep_their_order() {
    // Without --jobs a batch is not held to the core count: three at once, on any machine.
    let (stub, gauge) = gauge_server(3, Duration::from_secs(5));
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 6, json!({"max_concurrent": 10}))],
        "outputs": {"results": {"source": "${get.results}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert!(gauge.max() >= 3, "at most {} at once: {r}", gauge.max());
    let want: Vec<String> = (0..6).map(|i| format!("/get/{i}")).collect();
    assert_eq!(result_paths(r.output("results")), want, "{r}");
}

#[test]
fn max_concurrent_bounds_a_batch() {
    let (stub, gauge) = gauge_server(3, Duration::from_secs(1));
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 4, json!({"max_concurrent": 2}))],
        "outputs": {"n": {"source": "${get.success_count}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("n"), 4, "{r}");
    assert_eq!(gauge.max(), 2, "{r}");
}

#[test]
fn parallel_false_runs_items_one_at_a_time_in_order() {
    let (stub, gauge) = gauge_server(2, Duration::from_millis(200));
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 3,
                             json!({"parallel": false, "max_concurrent": 10}))],
        "outputs": {"results": {"source": "${get.results}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(gauge.max(), 1, "{r}");
    let arrived: Vec<String> = stub
        .requests()
        .iter()
        .map(|q| q.path().to_string())
        .collect();
    assert_eq!(arrived, ["/get/0", "/get/1", "/get/2"], "{r}");
}

#[test]
fn jobs_bounds_the_workers_of_every_batch_together() {
    // Two independent batches that would each run 10 at once: with --jobs 2 the server
    // never sees more than 2 requests, counting both batches.
    let (stub, gauge) = gauge_server(3, Duration::from_millis(150));
    let wf = json!({
        "nodes": [
            batch_node("a", &stub.url(), 4, json!({"parallel": true, "max_concurrent": 10})),
            batch_node("b", &stub.url(), 4, json!({"parallel": true, "max_concurrent": 10}))
        ],
        "outputs": {"a": {"source": "${a.success_count}"}, "b": {"source": "${b.success_count}"}}
    });
    let r = Project::new().build_value(&wf, &["--jobs", "2"]);
    r.assert_ok();
    assert_eq!(
        (r.output("a"), r.output("b")),
        (&json!(4), &json!(4)),
        "{r}"
    );
    assert!(
        gauge.max() <= 2,
        "{} requests at once with --jobs 2: {r}",
        gauge.max()
    );
    assert_eq!(stub.count(), 8, "{r}");
}

#[test]
fn pflow_jobs_bounds_batch_workers_like_the_flag() {
    let (stub, gauge) = gauge_server(2, Duration::from_millis(150));
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 3,
                             json!({"parallel": true, "max_concurrent": 10}))],
        "outputs": {"n": {"source": "${get.success_count}"}}
    });
    let r = Project::new().env("PFLOW_JOBS", "1").build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("n"), 3, "{r}");
    assert_eq!(gauge.max(), 1, "{r}");
}

// An `http` batch keeps its requests in flight from the node's own thread (no thread per
// item); what a batch does around each item is the same as with workers.

#[test]
fn an_http_batch_sends_a_failed_request_again_up_to_max_retries() {
    // Item 1's first request gets a 503; the second one succeeds.
    let failed_once = Arc::new(AtomicUsize::new(0));
    let f = failed_once.clone();
    let stub = Stub::start(move |req, _| {
        if req.path() == "/get/1" && f.fetch_add(1, Ordering::SeqCst) == 0 {
            return Reply::json(503, &json!({"error": "busy"}));
        }
        Reply::json(200, &json!({"path": req.path()}))
    });
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 3,
                             json!({"max_concurrent": 10, "max_retries": 2}))],
        "outputs": {"results": {"source": "${get.results}"},
                    "failed": {"source": "${get.error_count}"}}
    });
    let r = Project::new().build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("failed"), 0, "{r}");
    assert_eq!(
        result_paths(r.output("results")),
        ["/get/0", "/get/1", "/get/2"],
        "{r}"
    );
    assert_eq!(stub.count(), 4, "{r}");
    assert_eq!(failed_once.load(Ordering::SeqCst), 2, "{r}");
}

#[test]
fn an_http_batch_that_fails_fast_sends_no_further_requests() {
    // Item 0 fails at once; item 1 is already in flight; items 2.. are never sent.
    let stub = Stub::start(|req, _| {
        if req.path() == "/get/0" {
            return Reply::json(404, &json!({"error": "no such item"}));
        }
        Reply::json(200, &json!({"path": req.path()})).after(Duration::from_millis(300))
    });
    let wf = json!({
        "nodes": [batch_node("get", &stub.url(), 20, json!({"max_concurrent": 2}))]
    });
    let r = Project::new().build_value(&wf, &[]);
    let (category, message) = r.failed_with();
    assert_eq!(category, "http", "{r}");
    assert!(message.contains("batch item [0] failed"), "{message}");
    assert!(message.contains("HTTP 404"), "{message}");
    assert_eq!(stub.count(), 2, "{r}");
}

#[test]
fn an_http_batch_that_continues_reports_its_failed_items_without_their_token() {
    // The server echoes the Authorization header in its errors.
    let stub = Stub::start(|req, _| {
        if req.path() == "/get/1" {
            let echo = req.header("authorization").unwrap_or("").to_string();
            return Reply::json(401, &json!({"error": format!("refused: {echo}")}));
        }
        Reply::json(200, &json!({"path": req.path()}))
    });
    let mut node = batch_node(
        "get",
        &stub.url(),
        3,
        json!({"max_concurrent": 10, "error_handling": "continue"}),
    );
    node["params"]["auth_token"] = json!("tok-SECRET-5151");
    let wf = json!({
        "nodes": [node],
        "outputs": {"ok": {"source": "${get.success_count}"},
                    "errors": {"source": "${get.errors}"}}
    });
    let p = Project::new();
    let r = p.build_value(&wf, &[]);
    r.assert_ok();
    assert_eq!(r.output("ok"), 2, "{r}");
    let errors = r.output("errors");
    assert_eq!(errors[0]["index"], 1, "{r}");
    assert!(
        errors[0]["error"]
            .as_str()
            .unwrap_or("")
            .contains("HTTP 401"),
        "{r}"
    );
    assert!(!r.mentions("tok-SECRET-5151"), "the token leaked: {r}");
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some("Bearer tok-SECRET-5151")
    );

    // The good items are cached one by one: the next build sends only the failed one.
    let again = p.build_value(&wf, &[]);
    again.assert_ok();
    assert_eq!(stub.count(), 4, "{again}");
    assert_eq!(stub.requests()[3].path(), "/get/1", "{again}");
}

#[test]
fn ctrl_c_ends_an_http_batch_with_requests_in_flight() {
    // The server holds every request far longer than the test waits.
    let stub = Stub::start(|req, _| {
        Reply::json(200, &json!({"path": req.path()})).after(Duration::from_secs(60))
    });
    let p = Project::new();
    let file = p.write(
        "workflow.json",
        &json!({"nodes": [batch_node("get", &stub.url(), 10, json!({"max_concurrent": 4}))]}),
    );
    let mut running = p.command(&file, &[]).spawn();
    let deadline = Instant::now() + Duration::from_secs(20);
    while stub.count() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(stub.count(), 4, "four requests in flight");
    let sent = Instant::now();
    running.interrupt();
    let r = stub::Run::new(
        running.wait_at_most(Duration::from_secs(20)),
        sent.elapsed(),
    );
    assert_eq!(r.code, 130, "{r}");
    assert!(r.elapsed < Duration::from_secs(20), "{r}");
    assert_eq!(r.json["errors"][0]["category"], "interrupted", "{r}");
    assert_eq!(stub.count(), 4, "no request after Ctrl-C: {r}");
}
