//! Cache upkeep and fault tolerance, through the real binary: `pflow cache stats | verify |
//! gc | clear`, the cache lock, and builds that meet corrupt entries, run concurrently or
//! are killed at random moments.

use crate::common;

use common::{
    big_pipeline, counted, files_under, node_line, nodes_with_line, padded, pipeline,
    wait_for_every, BuildResult, Pflow, Workspace,
};
use pflow::cache::pack;
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

fn cache_command(ws: &Workspace, args: &[&str]) -> Pflow {
    ws.pflow()
        .arg("cache")
        .args(args)
        .arg("--cache-dir")
        .arg(ws.cache_dir())
}

/// `pflow cache ARGS --cache-dir <the workspace's cache>`.
fn cache(ws: &Workspace, args: &[&str]) -> Out {
    let out = cache_command(ws, args).output();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `pflow cache ARGS --output-format json`, parsed.
fn cache_json(ws: &Workspace, args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.extend(["--output-format", "json"]);
    let r = cache(ws, &a);
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {r}"))
}

#[track_caller]
fn verify_passes(ws: &Workspace) {
    let r = cache(ws, &["verify"]);
    assert_eq!(r.code, 0, "verify should pass: {r}");
}

fn blobs(ws: &Workspace) -> Vec<PathBuf> {
    files_under(&ws.cache_dir().join("content-v2"))
}

fn segments(ws: &Workspace) -> Vec<PathBuf> {
    files_under(&ws.cache_dir().join("packs"))
}

/// The headers of the cache's intact records.
fn records(ws: &Workspace) -> Vec<pack::Header> {
    pack::headers(ws.cache_dir())
}

fn entry_records(ws: &Workspace) -> usize {
    records(ws)
        .iter()
        .filter(|h| h.kind == pack::Kind::Entry)
        .count()
}

/// Bytes of content and segments on disk, counted by the test.
fn cache_bytes(ws: &Workspace) -> u64 {
    blobs(ws)
        .iter()
        .chain(segments(ws).iter())
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum()
}

/// `pflow cache verify` fails and names each of `paths` (relative to the cache).
#[track_caller]
fn assert_verify_names(ws: &Workspace, paths: &[PathBuf]) {
    let r = cache(ws, &["verify"]);
    assert_eq!(r.code, 1, "{r}");
    for p in paths {
        let rel = p
            .strip_prefix(ws.cache_dir())
            .unwrap()
            .display()
            .to_string();
        assert!(r.stdout.contains(&rel), "verify does not name {rel}: {r}");
    }
}

fn flip_a_byte(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(!bytes.is_empty());
    let i = bytes.len() / 2;
    bytes[i] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

#[test]
fn flipped_blobs_are_named_by_verify_rebuilt_by_the_next_build_and_removed_by_fix() {
    let ws = Workspace::new().workflow(big_pipeline());
    ws.build(&[]).assert_ok();
    let all = blobs(&ws);
    assert!(
        all.len() >= 4,
        "outputs of 3 shell nodes and one file: {all:?}"
    );
    for b in &all {
        flip_a_byte(b);
    }

    assert_verify_names(&ws, &all);

    // The next build is right: it runs again what it cannot trust.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    assert_eq!(ws.read("out/result.txt"), "HELLO");
    assert!(ws.count("gen") >= 2 && ws.count("upper") >= 2, "{r}");

    let fix = cache(&ws, &["verify", "--fix"]);
    assert_eq!(fix.code, 0, "{fix}");
    verify_passes(&ws);
    // And the cache still serves correct results afterwards.
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    let again = ws.build(&[]);
    assert_eq!(again.with_status("ran"), Vec::<String>::new(), "{again}");
}

/// Append to each segment, for every entry record in it, a newer record with `edit`
/// applied to its JSON and its checks made right again (so only the entry's own checks
/// can catch it). Returns how many were written.
fn edit_entries(ws: &Workspace, edit: impl Fn(&mut Value)) -> usize {
    use std::io::Write;
    let mut n = 0;
    for path in segments(ws) {
        let file = std::fs::File::open(&path).unwrap();
        let mut found = Vec::new();
        pack::scan(&file, 0, &mut |f| found.push(f)).unwrap();
        let mut out = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        for f in found {
            let pack::Found::Record { offset, header } = f else {
                continue;
            };
            if header.kind != pack::Kind::Entry {
                continue;
            }
            let payload = pack::read_payload(&file, offset, &header).unwrap();
            let mut v: Value = serde_json::from_slice(&payload).unwrap();
            edit(&mut v);
            let payload = serde_json::to_vec(&v).unwrap();
            let rec = pack::encode(header.kind, header.time + 1, &header.key, &payload).unwrap();
            out.write_all(&rec).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn malformed_but_well_hashed_index_entries_are_misses_not_panics() {
    for (what, edit) in [
        (
            "malformed integrity",
            Box::new(|v: &mut Value| v["integrity"] = json!("sha256-%%%not-base64%%%"))
                as Box<dyn Fn(&mut Value)>,
        ),
        (
            "empty integrity",
            Box::new(|v: &mut Value| v["integrity"] = json!("")),
        ),
        (
            "unreadable manifest",
            Box::new(|v: &mut Value| v["manifest"] = json!({"node": 3})),
        ),
        (
            "wrong output digest",
            Box::new(|v: &mut Value| v["manifest"]["output_digest"] = json!("00".repeat(32))),
        ),
    ] {
        let ws = Workspace::new().workflow(pipeline());
        ws.build(&[]).assert_ok();
        // The newest record for every key is now the damaged one.
        assert!(edit_entries(&ws, |v| edit(v)) > 0);
        // A time limit: a panicking worker could leave the build hanging.
        let r = ws.cmd().start().wait(Duration::from_secs(30));
        r.assert_ok();
        assert_eq!(r.output("result"), "HELLO", "{what}: {r}");
        assert_eq!(ws.read("out/result.txt"), "HELLO", "{what}");
        // Nodes whose values nothing needed (`side`, `save`) still have the damaged entry.
        let v = cache(&ws, &["verify"]);
        assert_eq!(v.code, 1, "{what}: verify must report the entries: {v}");
        let fix = cache(&ws, &["verify", "--fix"]);
        assert_eq!(fix.code, 0, "{what}: {fix}");
        verify_passes(&ws);
        let r = ws.build(&[]);
        r.assert_ok();
        assert_eq!(r.output("result"), "HELLO", "{what}: {r}");
    }
}

#[test]
fn tampered_inline_outputs_are_a_miss_not_a_wrong_result() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    // Small outputs live in the entry's record. Rewrite them (keeping the record's own
    // checks right, as a careful tamperer would): only the entry's integrity can tell.
    let tampered = edit_entries(&ws, |v| {
        if let Some(text) = v["manifest"]["inline"].as_str() {
            v["manifest"]["inline"] =
                json!(text.replace("HELLO", "HACKED").replace("hello", "hacked"));
        }
    });
    assert!(tampered > 0);
    let v = cache(&ws, &["verify"]);
    assert_eq!(v.code, 1, "{v}");
    assert!(v.stdout.contains("inline outputs do not match"), "{v}");
    // Without the last build's record, every value comes from the index.
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO", "{r}");
    assert_eq!(ws.read("out/result.txt"), "HELLO");
    assert!(ws.count("gen") >= 2 && ws.count("upper") >= 2, "{r}");
    // The entries the build wrote again replace the tampered ones.
    verify_passes(&ws);
}

#[test]
fn torn_garbage_and_flipped_records_are_misses_reported_and_fixed() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let segs = segments(&ws);
    assert_eq!(segs.len(), 1, "one build, one segment: {segs:?}");
    let seg = &segs[0];
    let bytes = std::fs::read(seg).unwrap();
    // Flip a byte in the middle of the first record's payload (the first node's result).
    let first = records(&ws)[0];
    let mut flipped = bytes.clone();
    let at = pack::FILE_HEADER.len() + pack::HEADER_LEN + first.len as usize / 2;
    flipped[at] ^= 0x20;
    // Then garbage that looks like the start of a record, and a record cut short (a
    // write torn by a crash).
    let mut junk = b"PFK1".to_vec();
    junk.resize(200, b'?');
    flipped.extend_from_slice(&junk);
    let whole = pack::encode(pack::Kind::Entry, 1, &first.key, b"{}").unwrap();
    flipped.extend_from_slice(&whole[..whole.len() - 1]);
    std::fs::write(seg, &flipped).unwrap();

    let v = cache(&ws, &["verify"]);
    assert_eq!(v.code, 1, "{v}");
    for kind in ["corrupt-record", "torn-record"] {
        assert!(
            v.stdout.contains(kind),
            "verify does not report {kind}: {v}"
        );
    }
    assert!(v.stdout.contains("packs/"), "{v}");
    // Without the last build's record, every node looks itself up: the one whose record
    // was flipped runs again, the rest is reused, and the result is right.
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let b = ws.build(&[]);
    b.assert_ok();
    assert_eq!(b.output("result"), "HELLO");
    let ran: Vec<&Value> = b.doc()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["status"] == "ran")
        .collect();
    assert_eq!(ran.len(), 1, "{b}");
    assert_eq!(ran[0]["reason"], "corrupt entry", "{b}");
    let fix = cache(&ws, &["verify", "--fix"]);
    assert_eq!(fix.code, 0, "{fix}");
    verify_passes(&ws);
    assert_eq!(segments(&ws).len(), 1);
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let again = ws.build(&[]);
    assert_eq!(again.with_status("ran"), Vec::<String>::new(), "{again}");
    assert_eq!(again.output("result"), "HELLO");
}

#[test]
fn a_segment_truncated_mid_record_keeps_the_records_before_the_cut() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let seg = segments(&ws).remove(0);
    let recs = records(&ws);
    assert_eq!(recs.len(), 4, "{recs:?}");
    // Cut the last record in half, as a power cut during its write could.
    let len = std::fs::metadata(&seg).unwrap().len();
    let cut = len - recs[3].record_len() / 2;
    std::fs::OpenOptions::new()
        .write(true)
        .open(&seg)
        .unwrap()
        .set_len(cut)
        .unwrap();
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), "HELLO");
    assert_eq!(
        r.with_status("ran").len(),
        1,
        "only the cut entry is lost: {r}"
    );
    let v = cache(&ws, &["verify"]);
    assert_eq!(v.code, 1, "{v}");
    assert!(v.stdout.contains("torn-record"), "{v}");
    assert_eq!(cache(&ws, &["verify", "--fix"]).code, 0);
    verify_passes(&ws);
}

/// Two chains of short shell steps that meet in `join`; every step counts its runs.
fn slow_workflow(len: usize, sleep: &str) -> Value {
    let mut nodes = Vec::new();
    for chain in ["a", "b"] {
        for i in 1..=len {
            let id = format!("{chain}{i}");
            let mut node = json!({"id": id, "type": "shell", "params": {
                "command": counted(&id, &format!("sleep {sleep}; tr a-z A-Z; echo {id}"))
            }});
            if i > 1 {
                node["params"]["stdin"] = json!(format!("${{{chain}{}.stdout}}", i - 1));
            }
            nodes.push(node);
        }
    }
    nodes.push(json!({"id": "join", "type": "shell", "params": {
        "command": counted("join", "cat; echo joined"),
        "stdin": format!("${{a{len}.stdout}}+${{b{len}.stdout}}")}}));
    nodes.push(json!({"id": "save", "type": "write-file", "params": {
        "file_path": "out/joined.txt", "content": "${join.stdout}"}}));
    json!({"nodes": nodes, "outputs": {"result": {"source": "${join.stdout}"}}})
}

fn slow_nodes(len: usize) -> Vec<String> {
    let mut v: Vec<String> = (1..=len)
        .flat_map(|i| [format!("a{i}"), format!("b{i}")])
        .collect();
    v.push("join".into());
    v
}

#[test]
fn four_concurrent_builds_on_a_fresh_cache_agree_and_leave_it_sound() {
    let ws = Workspace::new().workflow(slow_workflow(4, "0.05"));
    let other = ws.another_folder();
    let started: Vec<_> = (0..4)
        .map(|i| {
            let w = if i % 2 == 0 { &ws } else { &other };
            w.cmd().start()
        })
        .collect();
    let results: Vec<BuildResult> = started
        .into_iter()
        .map(|r| r.wait(Duration::from_secs(30)))
        .collect();
    for r in &results {
        r.assert_ok();
    }
    let first = &results[0].doc()["outputs"];
    assert!(first["result"].as_str().unwrap().contains("joined"));
    for r in &results[1..] {
        assert_eq!(&r.doc()["outputs"], first, "{r}");
    }
    assert_eq!(ws.read("out/joined.txt"), other.read("out/joined.txt"));
    verify_passes(&ws);
    let stats = cache_json(&ws, &["stats"]);
    assert_eq!(stats["entries"], 10, "one entry per node: {stats}");
    // A fifth build reuses everything.
    let fifth = ws.build(&[]);
    fifth.assert_ok();
    assert_eq!(fifth.with_status("ran"), Vec::<String>::new(), "{fifth}");
    assert_eq!(&fifth.doc()["outputs"], first);
}

#[test]
fn builds_killed_at_random_moments_leave_a_sound_cache_and_keep_finished_nodes() {
    let seed = std::env::var("PFLOW_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (PFLOW_TEST_SEED to replay)");
    let mut rng = fastrand::Rng::with_seed(seed);

    let reference = Workspace::new().workflow(slow_workflow(6, "0.01"));
    let expected = reference.build(&[]);
    expected.assert_ok();

    let ws = Workspace::new().workflow(slow_workflow(6, "0.08"));
    // Nodes a killed build reported as finished (their result was stored before that).
    let mut finished: BTreeSet<String> = BTreeSet::new();
    for k in 0..5 {
        let mut run = ws.cmd().text().start();
        // The last one runs long enough to finish a step whatever came before.
        let delay = Duration::from_millis(rng.u64(if k == 4 { 150..300 } else { 20..300 }));
        std::thread::sleep(delay);
        // SIGKILL, which the harness's crash check then expects (and nothing else).
        run.kill();
        let killed = run.wait(Duration::from_secs(10));
        finished.extend(nodes_with_line(&killed.stderr, "ran"));
        eprintln!("killed after {delay:?}; finished so far: {finished:?}");
    }
    // Let shell steps orphaned by the kills end.
    std::thread::sleep(Duration::from_millis(150));
    let nodes = slow_nodes(6);
    let before: Vec<usize> = nodes.iter().map(|n| ws.count(n)).collect();

    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.output("result"), expected.output("result"), "{r}");
    assert_eq!(ws.read("out/joined.txt"), reference.read("out/joined.txt"));
    assert!(
        !finished.is_empty(),
        "no build got anywhere before its kill"
    );
    for (n, b) in nodes.iter().zip(&before) {
        if finished.contains(n) {
            assert_eq!(
                ws.count(n),
                *b,
                "{n} had finished before a kill but ran again: {r}"
            );
            assert_ne!(r.status_of(n), "ran", "{r}");
        }
    }
    verify_passes(&ws);
    // Whatever the kills left behind, gc cleans up and the cache stays sound.
    assert_eq!(cache(&ws, &["gc"]).code, 0);
    verify_passes(&ws);
    let again = ws.build(&[]);
    assert_eq!(again.with_status("ran"), Vec::<String>::new(), "{again}");
}

/// A build killed the moment it says a node ran: that node's result is in the cache, so
/// the next build does not run it again. (Its line used to come from the worker while
/// the result still waited on the thread that stores it, up to a few tens of
/// milliseconds later.)
#[test]
fn a_node_reported_as_ran_is_stored_before_the_line_is_printed() {
    for round in 0..4 {
        let ws = Workspace::new().workflow(json!({"nodes": [
            {"id": "first", "type": "shell",
             "params": {"command": counted("first", "sleep 0.2; echo first")}},
            {"id": "second", "type": "shell",
             "params": {"command": counted("second", "sleep 30; cat"), "stdin": "${first.stdout}"}}
        ]}));
        let mut run = ws.cmd().text().start();
        // Looked at every millisecond: the result used to be stored up to a few tens of
        // milliseconds after the line.
        let said = wait_for_every(Duration::from_secs(20), Duration::from_millis(1), || {
            node_line(&run.stderr_so_far(), "ran", "first").is_some()
        });
        run.kill();
        let killed = run.wait(Duration::from_secs(10));
        assert!(said, "round {round}: never said first ran: {killed}");
        assert_eq!(ws.count("first"), 1);

        let again = ws.build(&["--target", "first"]);
        again.assert_ok();
        assert_eq!(
            ws.count("first"),
            1,
            "round {round}: first ran again after it was reported: {again}"
        );
        assert_ne!(again.status_of("first"), "ran", "{again}");
    }
}

/// A node's line waits for its result to be stored; the lines after it wait too, so
/// they still come in the order the nodes finished (a dependent after what it read).
#[test]
fn lines_held_for_a_store_keep_the_order_nodes_finished_in() {
    for round in 0..3 {
        let ws = Workspace::new().workflow(json!({"nodes": [
            {"id": "first", "type": "shell",
             "params": {"command": counted("first", "sleep 0.2; echo first")}},
            // Stored by its own worker, at once: it writes a file.
            {"id": "second", "type": "write-file",
             "params": {"file_path": "out.txt", "content": "${first.stdout}"}}
        ]}));
        let r = ws.cmd().text().run();
        r.assert_ok();
        let at = |id: &str| node_line(&r.stderr, "ran", id);
        let (a, b) = (at("first"), at("second"));
        assert!(a.is_some() && b.is_some(), "{r}");
        assert!(a < b, "round {round}: second's line before first's: {r}");
    }
}

/// Three steps that all depend on the input `n`.
fn input_workflow() -> Value {
    json!({
        "inputs": {"n": {"type": "string", "required": true}},
        "nodes": [
            // Padded: its outputs are blobs, which gc must remove with their entries.
            {"id": "one", "type": "shell", "params": {"command": counted("one", &padded("echo one-${n}"))}},
            {"id": "two", "type": "shell",
             "params": {"command": counted("two", "tr a-z A-Z"), "stdin": "${one.stdout}"}},
            {"id": "three", "type": "shell",
             "params": {"command": counted("three", "cat; echo ${n}"), "stdin": "${two.stdout}"}}
        ],
        "outputs": {"result": {"source": "${three.stdout}"}}
    })
}

fn expected_for(n: &str) -> String {
    // Shell stdout loses its final newline, so `cat` adds none before the echo.
    format!("ONE-{}{n}", n.to_uppercase())
}

#[test]
fn gc_to_1kb_after_twenty_builds_shrinks_the_cache_and_builds_stay_correct() {
    let ws = Workspace::new().workflow(input_workflow());
    for i in 0..20 {
        let r = ws.build(&[&format!("n=v{i}")]);
        r.assert_ok();
        assert_eq!(r.output("result"), expected_for(&format!("v{i}")).as_str());
    }
    let before = cache_json(&ws, &["stats"]);
    assert_eq!(before["entries"], 60);
    assert_eq!(before["total_bytes"].as_u64().unwrap(), cache_bytes(&ws));

    let gc = cache(&ws, &["gc", "--max-size", "1KB"]);
    assert_eq!(gc.code, 0, "{gc}");
    assert!(gc.stdout.contains("evicted"), "{gc}");
    let after = cache_json(&ws, &["stats"]);
    let bytes = cache_bytes(&ws);
    assert_eq!(after["total_bytes"].as_u64().unwrap(), bytes);
    assert!(bytes <= 1000, "still {bytes} bytes: {gc}");
    assert!(after["entries"].as_u64().unwrap() < 60);
    assert!(after["blobs"].as_u64().unwrap() < before["blobs"].as_u64().unwrap());
    verify_passes(&ws);

    for n in ["v3", "v19", "new"] {
        let r = ws.build(&[&format!("n={n}")]);
        r.assert_ok();
        assert_eq!(r.output("result"), expected_for(n).as_str(), "{r}");
    }
}

#[test]
fn gc_evicts_least_recently_used_and_a_hit_counts_as_a_use() {
    let ws = Workspace::new().workflow(input_workflow());
    let names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for n in names {
        ws.build(&[&format!("n={n}")]).assert_ok();
    }
    // `a` was written first, but used last.
    let hit = ws.build(&["n=a"]);
    assert_eq!(hit.with_status("cached").len(), 3, "{hit}");
    let total = cache_json(&ws, &["stats"])["total_bytes"].as_u64().unwrap();
    // Room for about three of the eight builds.
    let limit = total * 3 / 8;
    let gc = cache_json(&ws, &["gc", "--max-size", &limit.to_string()]);
    assert!(gc["size_after"].as_u64().unwrap() <= limit, "{gc}");
    assert!(gc["evicted"].as_array().unwrap().len() >= 12, "{gc}");

    let a = ws.build(&["n=a"]);
    a.assert_ok();
    assert_eq!(
        a.with_status("ran"),
        Vec::<String>::new(),
        "a was used last: {a}"
    );
    let h = ws.build(&["n=h"]);
    assert_eq!(
        h.with_status("ran"),
        Vec::<String>::new(),
        "h is recent: {h}"
    );
    let b = ws.build(&["n=b"]);
    b.assert_ok();
    assert_eq!(
        b.with_status("ran").len(),
        3,
        "b was least recently used: {b}"
    );
    assert_eq!(b.output("result"), expected_for("b").as_str());
}

#[test]
fn gc_max_age_evicts_what_was_not_used_recently_and_cleans_temp_files() {
    let ws = Workspace::new().workflow(input_workflow());
    ws.build(&["n=old"]).assert_ok();
    std::thread::sleep(Duration::from_millis(1200));
    ws.build(&["n=new"]).assert_ok();
    // Leftovers of interrupted writes.
    let tmp = ws.cache_dir().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::write(tmp.join(".tmpLEFT"), "half a blob").unwrap();
    // ... and of a build record's atomic write, killed before its rename.
    let state_tmp = ws.cache_dir().join("state").join(".pflow-tmp-LEFT");
    std::fs::write(&state_tmp, "half a record").unwrap();

    let gc = cache_json(&ws, &["gc", "--max-age", "1s"]);
    assert_eq!(gc["evicted"].as_array().unwrap().len(), 3, "{gc}");
    assert_eq!(gc["temp_files_removed"], 2, "{gc}");
    assert!(!tmp.join(".tmpLEFT").exists());
    assert!(!state_tmp.exists());
    assert_eq!(cache_json(&ws, &["stats"])["entries"], 3);
    let new = ws.build(&["n=new"]);
    assert_eq!(new.with_status("cached").len(), 3, "{new}");
    let old = ws.build(&["n=old"]);
    assert_eq!(old.with_status("ran").len(), 3, "{old}");
    assert_eq!(old.output("result"), expected_for("old").as_str());
}

#[test]
fn gc_compacts_segments_into_one_without_superseded_records() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    // --force stores every result again, from another process: a second segment whose
    // records supersede the first's.
    ws.build(&["--force"]).assert_ok();
    assert_eq!(segments(&ws).len(), 2);
    assert_eq!(entry_records(&ws), 8);
    let gc = cache_json(&ws, &["gc"]);
    assert_eq!(gc["records_dropped"], 4, "{gc}");
    assert_eq!(gc["segments_compacted"], 2, "{gc}");
    assert_eq!(gc["evicted"].as_array().unwrap().len(), 0, "{gc}");
    assert_eq!(segments(&ws).len(), 1);
    assert_eq!(entry_records(&ws), 4);
    verify_passes(&ws);
    let r = ws.build(&[]);
    assert_eq!(r.with_status("cached").len(), 4, "{r}");
    // Nothing left to compact: a second gc leaves the segment alone.
    let seg = segments(&ws);
    let gc = cache_json(&ws, &["gc"]);
    assert_eq!(gc["segments_compacted"], 0, "{gc}");
    assert_eq!(segments(&ws), seg);
}

/// The stats file is anyone's to edit: figures whose sum passes what a u64 holds are
/// shown at its top (a debug build panicked on the sum).
#[test]
fn stats_whose_sum_overflows_are_shown() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let file = ws.cache_dir().join("build-stats.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    let mut line: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    for field in [
        "hits",
        "misses",
        "time_saved_ms",
        "remote_hits",
        "remote_bytes_down",
    ] {
        line[field] = json!(u64::MAX);
    }
    std::fs::write(&file, format!("{text}{line}\n{line}\n")).unwrap();
    let stats = cache_json(&ws, &["stats"]);
    let recent = &stats["recent_builds"];
    assert_eq!(recent["hits"], json!(u64::MAX), "{stats}");
    assert_eq!(recent["remote"]["bytes_down"], json!(u64::MAX), "{stats}");
    let text = cache(&ws, &["stats"]);
    assert_eq!(text.code, 0, "{text}");
    assert!(
        text.stdout
            .contains(&format!("remote cache: {} hits", u64::MAX)),
        "{text}"
    );
}

/// A script reads the same fields whether or not there was a cache to collect.
#[test]
fn gc_without_a_cache_reports_every_field_as_zero() {
    let empty = Workspace::new();
    let missing = empty.file("no-cache-here");
    let out = empty
        .pflow()
        .args(["cache", "gc", "--output-format", "json", "--cache-dir"])
        .arg(&missing)
        .output();
    assert_eq!(out.status.code(), Some(0));
    let none: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert!(!missing.exists(), "gc creates no cache");
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let some = cache_json(&ws, &["gc"]);
    let fields = |v: &Value| v.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>());
    assert_eq!(fields(&none), fields(&some), "{none}\n{some}");
    for (field, value) in none.as_object().unwrap() {
        assert!(
            value == &json!(0) || value == &json!([]),
            "{field} is {value}"
        );
    }
}

#[test]
fn segments_of_many_builds_are_merged_by_a_later_build() {
    let ws = Workspace::new().workflow(input_workflow());
    let builds = pack::MERGE_AT + 4;
    let mut most = 0;
    for i in 0..builds {
        let r = ws.build(&[&format!("n=v{i}")]);
        r.assert_ok();
        most = most.max(segments(&ws).len());
    }
    // Each build adds a segment; the one whose first lookup finds more than MERGE_AT
    // merges the finished ones, so their number stays bounded.
    assert!(most <= pack::MERGE_AT + 2, "{most} segments at most");
    assert!(segments(&ws).len() < builds, "{:?}", segments(&ws));
    verify_passes(&ws);
    assert_eq!(cache_json(&ws, &["stats"])["entries"], 3 * builds);
    for i in [0, builds / 2, builds - 1] {
        let r = ws.build(&[&format!("n=v{i}")]);
        assert_eq!(r.with_status("cached").len(), 3, "{r}");
        assert_eq!(r.output("result"), expected_for(&format!("v{i}")).as_str());
    }
}

#[test]
fn two_hundred_small_results_take_a_handful_of_files() {
    // Creating inodes is what made cold builds slow after a large cache was deleted:
    // results are records in a segment, not files of their own.
    let nodes: Vec<Value> = (0..200)
        .map(|i| json!({"id": format!("n{i}"), "type": "shell", "params": {"command": format!("echo {i}")}}))
        .collect();
    let ws = Workspace::new().workflow(json!({ "nodes": nodes }));
    ws.build(&[]).assert_ok();
    let files = files_under(ws.cache_dir());
    assert!(
        files.len() < 20,
        "{} files for 200 small results: {files:#?}",
        files.len()
    );
    assert_eq!(cache_json(&ws, &["stats"])["entries"], 200);
    assert_eq!(segments(&ws).len(), 1);
    // And they are all there for the next process.
    std::fs::remove_dir_all(ws.cache_dir().join("state")).unwrap();
    let again = ws.build(&[]);
    assert_eq!(again.stat("cached"), 200, "{again}");
}

#[test]
fn two_builds_writing_one_cache_at_once_lose_nothing() {
    // Two workflows of 60 slow-ish nodes each, built at the same time into one cache,
    // then a workflow with all 120 nodes: every result of both builds is there.
    let part = |prefix: &str| -> Vec<Value> {
        (0..60)
            .map(|i| {
                let id = format!("{prefix}{i}");
                json!({"id": id, "type": "shell",
                       "params": {"command": counted(&id, &format!("sleep 0.0{}; echo {id}", i % 5))}})
            })
            .collect()
    };
    let ws = Workspace::new().workflow(json!({ "nodes": part("a") }));
    let other = ws.another_folder();
    other.set_workflow(&json!({ "nodes": part("b") }));
    let a = ws.cmd().start();
    let b = other.cmd().start();
    a.wait(Duration::from_secs(60)).assert_ok();
    b.wait(Duration::from_secs(60)).assert_ok();
    verify_passes(&ws);
    assert_eq!(segments(&ws).len(), 2, "one segment per writing process");
    assert_eq!(cache_json(&ws, &["stats"])["entries"], 120);
    let mut all = part("a");
    all.extend(part("b"));
    ws.set_workflow(&json!({ "nodes": all }));
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.with_status("ran"), Vec::<String>::new(), "{r}");
    assert_eq!(r.stat("cached"), 120);
}

#[test]
fn an_older_formats_index_is_not_read_and_gc_removes_it() {
    let ws = Workspace::new().workflow(pipeline());
    // What an older pflow left: a cacache bucket (its content does not matter here).
    ws.build(&[]).assert_ok();
    let legacy = ws.cache_dir().join("index-v5/aa/bb");
    std::fs::create_dir_all(&legacy).unwrap();
    std::fs::write(legacy.join("cdef"), "\nhash\t{\"key\":\"pflow/node/00\"}").unwrap();
    let s = cache(&ws, &["stats"]);
    assert!(s.stdout.contains("old index     1 files"), "{s}");
    let v = cache(&ws, &["verify"]);
    assert_eq!(v.code, 0, "an old index is no damage: {v}");
    assert!(v.stdout.contains("no longer read"), "{v}");
    let gc = cache_json(&ws, &["gc"]);
    assert_eq!(gc["legacy_index_files_removed"], 1, "{gc}");
    assert!(!ws.cache_dir().join("index-v5").exists());
    let r = ws.build(&[]);
    assert_eq!(r.with_status("cached").len(), 4, "{r}");
}

/// A workflow whose results the test can count: distinct outputs, one written file.
fn counted_workflow() -> Value {
    json!({
        "nodes": [
            {"id": "x", "type": "shell", "params": {"command": counted("x", "sleep 0.1; echo ex")}},
            {"id": "y", "type": "shell",
             "params": {"command": counted("y", "sleep 0.1; tr a-z A-Z"), "stdin": "${x.stdout}"}},
            {"id": "z", "type": "shell", "params": {"command": counted("z", "sleep 0.1; echo zed")}},
            {"id": "w", "type": "write-file",
             "params": {"file_path": "out/w.txt", "content": "${y.stdout} and ${z.stdout}"}}
        ],
        "outputs": {"result": {"source": "${w.file_path}"}}
    })
}

#[test]
fn stats_counts_entries_blobs_and_bytes() {
    let ws = Workspace::new().workflow(counted_workflow());
    let empty = cache_json(&ws, &["stats"]);
    assert_eq!(empty["entries"], 0, "{empty}");
    ws.build(&[]).assert_ok();
    let s = cache_json(&ws, &["stats"]);
    // Four node results, with small outputs kept inline; one blob: the written file.
    assert_eq!(s["entries"], 4, "{s}");
    assert_eq!(s["blobs"], 1, "{s}");
    assert_eq!(s["blobs"].as_u64().unwrap() as usize, blobs(&ws).len());
    assert_eq!(s["total_bytes"].as_u64().unwrap(), cache_bytes(&ws), "{s}");
    assert!(s["oldest_entry_ms"].as_u64().unwrap() <= s["newest_entry_ms"].as_u64().unwrap());
    // A changed step adds its result and w's; the rest is reused.
    ws.edit_workflow(|doc| {
        doc["nodes"][2]["params"]["command"] = json!(counted("z", "echo zed2"));
    });
    ws.build(&[]).assert_ok();
    let s = cache_json(&ws, &["stats"]);
    assert_eq!(s["entries"], 6, "z and w changed: {s}");
    assert_eq!(s["blobs"], 2, "w wrote new content: {s}");
    let text = cache(&ws, &["stats"]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains("entries       6"), "{text}");
    // clear empties it.
    let c = cache(&ws, &["clear"]);
    assert_eq!(c.code, 0, "{c}");
    assert_eq!(cache_json(&ws, &["stats"])["entries"], 0);
    assert!(blobs(&ws).is_empty() && segments(&ws).is_empty());
    let r = ws.build(&[]);
    assert_eq!(r.with_status("ran").len(), 4, "{r}");
}

/// Needs `cache.record_build(..)` wired into `pflow build`.
#[test]
fn stats_totals_of_recent_builds_match_what_ran_and_what_was_reused() {
    let ws = Workspace::new().workflow(counted_workflow());
    let first = ws.build(&[]);
    first.assert_ok();
    let second = ws.build(&[]);
    assert_eq!(second.with_status("cached").len(), 4, "{second}");
    let s = cache_json(&ws, &["stats"]);
    let b = &s["recent_builds"];
    assert_eq!(b["runs"], 2, "{s}");
    assert_eq!(b["misses"], 4, "{s}");
    assert_eq!(b["hits"], 4, "{s}");
    assert_eq!(b["last"]["hits"], 4, "{s}");
    assert_eq!(b["last"]["misses"], 0, "{s}");
    // x, y and z each sleep 100 ms: reusing them saved at least that.
    let saved = b["last"]["time_saved_ms"].as_u64().unwrap();
    assert!(saved >= 300, "{s}");
    // An edit that prints the same: y re-runs, its dependent w is an early cutoff.
    ws.edit_workflow(|doc| {
        doc["nodes"][1]["params"]["command"] =
            json!(counted("y", "sleep 0.1; tr a-z A-Z # same output"));
    });
    let third = ws.build(&[]);
    assert_eq!(third.with_status("ran"), ["y"], "{third}");
    let s = cache_json(&ws, &["stats"]);
    let last = &s["recent_builds"]["last"];
    assert_eq!(last["misses"], 1, "{s}");
    assert_eq!(last["hits"], 3, "{s}");
    assert_eq!(last["early_cutoffs"], 1, "{s}");
    assert_eq!(s["recent_builds"]["hits"], 7, "{s}");
}

fn hold_lock(ws: &Workspace, exclusive: bool) -> std::fs::File {
    use fs4::fs_std::FileExt;
    std::fs::create_dir_all(ws.cache_dir()).unwrap();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(ws.cache_dir().join(".pflow-lock"))
        .unwrap();
    if exclusive {
        FileExt::lock_exclusive(&f).unwrap();
    } else {
        FileExt::lock_shared(&f).unwrap();
    }
    f
}

#[test]
fn maintenance_waits_for_the_cache_lock_and_says_so() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    // What a running build holds.
    let held = hold_lock(&ws, false);
    let mut gc = cache_command(&ws, &["gc"]).spawn();
    std::thread::sleep(Duration::from_millis(400));
    assert!(gc.is_running(), "gc did not wait for the lock");
    // Stats only reads: it does not wait for builds.
    let t = Instant::now();
    assert_eq!(cache(&ws, &["stats"]).code, 0);
    assert!(t.elapsed() < Duration::from_secs(5));
    drop(held);
    let out = gc.wait();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr.matches("waiting").count(), 1, "{stderr}");
}

/// Needs `cache.lock_shared()` wired into `pflow build`.
#[test]
fn a_build_waits_while_maintenance_holds_the_cache() {
    let ws = Workspace::new().workflow(pipeline());
    let held = hold_lock(&ws, true);
    let run = ws.cmd().start();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(ws.count("gen"), 0, "the build ran under maintenance");
    drop(held);
    let r = run.wait(Duration::from_secs(20));
    r.assert_ok();
    assert_eq!(r.stderr.matches("waiting").count(), 1, "{r}");
    // And maintenance waits for a running build.
    ws.set_workflow(&slow_workflow(4, "0.3"));
    let run = ws.cmd().start();
    assert!(common::wait_for(Duration::from_secs(5), || ws.count("a1") > 0));
    let t = Instant::now();
    let gc = cache(&ws, &["gc"]);
    assert_eq!(gc.code, 0, "{gc}");
    assert!(gc.stderr.contains("waiting"), "{gc}");
    let r = run.wait(Duration::from_secs(20));
    r.assert_ok();
    assert!(t.elapsed() >= Duration::from_millis(500));
    verify_passes(&ws);
}

#[test]
fn bad_sizes_and_ages_are_invalid_arguments() {
    let ws = Workspace::new();
    assert_eq!(cache(&ws, &["gc", "--max-size", "lots"]).code, 2);
    assert_eq!(cache(&ws, &["gc", "--max-age", "soon"]).code, 2);
    // Nothing to do on a cache that does not exist yet.
    assert_eq!(cache(&ws, &["verify"]).code, 0);
    assert_eq!(cache(&ws, &["gc", "--max-size", "1KB"]).code, 0);
}

#[test]
fn maintenance_refuses_a_folder_that_is_not_a_pflow_cache() {
    let ws = Workspace::new();
    for f in [
        "tmp/notes.txt",
        "state/config.toml",
        "explain/a.txt",
        "index-v5/b.txt",
    ] {
        ws.write(f, "mine");
    }
    let attempts: [&[&str]; 3] = [&["clear"], &["gc", "--max-size", "1"], &["verify", "--fix"]];
    for args in attempts {
        for (how, env) in [("--cache-dir .", false), ("PFLOW_CACHE_DIR=.", true)] {
            let mut p = ws.pflow().arg("cache").args(args);
            p = if env {
                p.env("PFLOW_CACHE_DIR", ".")
            } else {
                p.args(["--cache-dir", "."])
            };
            let out = p.output();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} with {how}: {stderr}");
            assert!(stderr.contains("not a pflow cache"), "{stderr}");
            for f in [
                "tmp/notes.txt",
                "state/config.toml",
                "explain/a.txt",
                "index-v5/b.txt",
            ] {
                assert_eq!(ws.read(f), "mine", "{args:?} with {how} touched {f}");
            }
        }
    }
}

#[test]
fn a_build_marks_its_cache_and_maintenance_then_works_on_it() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let tag = std::fs::read_to_string(ws.cache_dir().join("CACHEDIR.TAG")).unwrap();
    assert!(
        tag.starts_with("Signature: 8a477f597d28d172789f06886806bc55"),
        "{tag}"
    );
    let c = cache(&ws, &["clear"]);
    assert_eq!(c.code, 0, "{c}");
    assert!(blobs(&ws).is_empty() && segments(&ws).is_empty());
}

#[test]
fn maintenance_never_runs_without_the_lock() {
    let ws = Workspace::new().workflow(pipeline());
    ws.build(&[]).assert_ok();
    let before = segments(&ws).len();
    assert!(before > 0);
    // A lock that cannot be opened (a directory in its place).
    std::fs::remove_file(ws.cache_dir().join(".pflow-lock")).unwrap();
    std::fs::create_dir(ws.cache_dir().join(".pflow-lock")).unwrap();
    for args in [
        &["clear"][..],
        &["gc", "--max-size", "1"],
        &["verify", "--fix"],
    ] {
        let r = cache(&ws, args);
        assert_eq!(r.code, 1, "{args:?}: {r}");
        assert!(r.stderr.contains("lock"), "{r}");
        assert_eq!(segments(&ws).len(), before, "{args:?} ran without the lock");
    }
}

/// The workflows whose records the cache holds (their files' shared hash stems).
fn record_owners(ws: &Workspace) -> BTreeSet<String> {
    std::fs::read_dir(ws.cache_dir().join("state"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            pflow::cache::layout::record_owner(&name).map(str::to_string)
        })
        .collect()
}

#[test]
fn gc_max_age_removes_the_records_of_workflows_no_build_wrote_for_that_long() {
    let ws = Workspace::new();
    for side in ["a", "b"] {
        let doc = json!({"nodes": [
            {"id": "x", "type": "shell", "params": {"command": format!("echo {side}")}}
        ]});
        ws.write(&format!("{side}/wf.json"), &doc.to_string());
    }
    let build = |side: &str| ws.cmd().workflow_file(format!("{side}/wf.json")).run();
    build("a").assert_ok();
    // a's records were last written 40 days ago; b's now.
    let long_ago = std::time::SystemTime::now() - Duration::from_secs(40 * 24 * 3600);
    let a_owner = record_owners(&ws);
    assert_eq!(a_owner.len(), 1);
    // And its no-op record as pflow before spares named it.
    let stem = a_owner.iter().next().unwrap().clone();
    let legacy = ws.cache_dir().join("state").join(format!("{stem}.noop"));
    std::fs::write(&legacy, "an older record").unwrap();
    for e in std::fs::read_dir(ws.cache_dir().join("state")).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if a_owner.iter().any(|o| name.starts_with(o.as_str())) {
            let f = std::fs::File::options().write(true).open(&path).unwrap();
            f.set_modified(long_ago).unwrap();
        }
    }
    build("b").assert_ok();
    assert_eq!(record_owners(&ws).len(), 2);

    // Without an age, records stay.
    let gc = cache_json(&ws, &["gc"]);
    assert_eq!(gc["workflow_records_removed"], 0, "{gc}");
    assert_eq!(record_owners(&ws).len(), 2);
    let gc = cache_json(&ws, &["gc", "--max-age", "30d"]);
    assert_eq!(gc["workflow_records_removed"], 1, "{gc}");
    let left = record_owners(&ws);
    assert_eq!(left.len(), 1);
    assert!(left.is_disjoint(&a_owner), "a's records went, b's stayed");
    assert!(!legacy.exists());
    // a builds as before (its entry was used recently) and has records again.
    let again = build("a");
    again.assert_ok();
    assert_eq!(again.status_of("x"), "cached", "{again}");
    assert_eq!(record_owners(&ws).len(), 2);
}
