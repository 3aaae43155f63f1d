//! The shared remote cache (Bazel's HTTP cache protocol) against a real nginx with WebDAV
//! `PUT`, as users run it. Each test starts its own nginx (Debian's `nginx-core`) on a
//! free loopback port, with a config, root, logs and temp dirs in a temp dir, and kills it
//! when done. Without nginx these tests fail: `.ci/run` installs it.
//!
//! Executions are counted with side-effect files in each workspace (`common::counted`).

use crate::common;

use common::{counted, BuildResult, Workspace};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

const TOKEN: &str = "s3cret-t0ken-for-tests";

/// The nginx binary, or a failure saying how to get it.
fn nginx_bin() -> PathBuf {
    let in_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("nginx"))
            .find(|p| p.is_file())
    });
    in_path
        .or_else(|| {
            ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and the remote cache tests need a real one: \
                 install Debian's nginx-core (`apt-get install -y nginx-core`; .ci/run does this)"
            )
        })
}

/// A private nginx serving `<tmp>/root` on a loopback port.
struct Nginx {
    dir: TempDir,
    child: Option<Child>,
    port: u16,
}

/// What the server does under `/pflow/`.
enum Mode {
    /// WebDAV PUT, as the README suggests.
    Dav,
    /// WebDAV PUT, only with `Authorization: Bearer TOKEN`.
    DavWithToken,
    /// WebDAV PUT, only with HTTP basic auth `pflow:BASIC_PASSWORD`.
    DavWithBasicAuth,
    /// Every request fails with 500.
    Broken,
}

const BASIC_PASSWORD: &str = "basic-pw-for-tests";

impl Nginx {
    fn start(mode: Mode) -> Nginx {
        let bin = nginx_bin();
        let dir = tempfile::tempdir().expect("temp dir for nginx");
        for sub in ["root", "body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let location = match mode {
            Mode::Dav => "dav_methods PUT; create_full_put_path on;".to_string(),
            Mode::DavWithToken => format!(
                "if ($http_authorization != \"Bearer {TOKEN}\") {{ return 401; }}\n\
                 dav_methods PUT; create_full_put_path on;"
            ),
            Mode::DavWithBasicAuth => {
                let users = dir.path().join("htpasswd");
                std::fs::write(&users, format!("pflow:{{PLAIN}}{BASIC_PASSWORD}\n")).unwrap();
                format!(
                    "auth_basic \"pflow\"; auth_basic_user_file {};\n\
                     dav_methods PUT; create_full_put_path on;",
                    users.display()
                )
            }
            Mode::Broken => "return 500;".to_string(),
        };
        let mut last_error = String::new();
        for _ in 0..5 {
            let port = free_port();
            let d = dir.path().display();
            let conf = format!(
                "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
                 error_log {d}/error.log;\nevents {{ worker_connections 64; }}\n\
                 http {{\n  access_log {d}/access.log;\n  client_body_temp_path {d}/body;\n\
                 proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
                 uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
                 client_max_body_size 64m;\n\
                 server {{\n    listen 127.0.0.1:{port};\n    root {d}/root;\n\
                 location /pflow/ {{\n      {location}\n    }}\n  }}\n}}\n"
            );
            let conf_path = dir.path().join("nginx.conf");
            std::fs::write(&conf_path, conf).unwrap();
            let mut child = Command::new(&bin)
                .arg("-p")
                .arg(dir.path())
                .arg("-e")
                .arg(dir.path().join("error.log"))
                .arg("-c")
                .arg(&conf_path)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
            let deadline = Instant::now() + Duration::from_secs(5);
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    let out = child.wait_with_output().unwrap();
                    last_error = format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stderr),
                        std::fs::read_to_string(dir.path().join("error.log")).unwrap_or_default()
                    );
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Nginx {
                        dir,
                        child: Some(child),
                        port,
                    };
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    last_error = "nginx did not listen within 5s".into();
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        panic!("nginx would not start: {last_error}");
    }

    /// The base URL builds are given (with a path prefix, as users often have).
    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/pflow", self.port)
    }

    /// The files the server holds under `ac/` or `cas/`.
    fn files(&self, ns: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let dir = self.dir.path().join("root/pflow").join(ns);
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    out.push(e.path());
                }
            }
        }
        out.sort();
        out
    }

    /// Everything under the server's root (files only).
    fn all_files(&self) -> Vec<PathBuf> {
        fn walk(p: &Path, out: &mut Vec<PathBuf>) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.path().is_dir() {
                        walk(&e.path(), out);
                    } else {
                        out.push(e.path());
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.dir.path().join("root"), &mut out);
        out
    }

    fn access_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("access.log")).unwrap_or_default()
    }

    /// The requests of a method in the access log.
    fn requests(&self, method: &str) -> usize {
        let needle = format!("\"{method} ");
        self.access_log()
            .lines()
            .filter(|l| l.contains(&needle))
            .count()
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
    }
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    l.local_addr().unwrap().port()
}

/// The common pipeline (gen → upper → save, and `side`) plus a volatile node.
fn pipeline() -> Value {
    let mut doc = common::pipeline();
    if let Some(nodes) = doc["nodes"].as_array_mut() {
        nodes.push(json!({"id": "clock", "type": "shell", "cache": false,
                          "params": {"command": counted("clock", "echo tick")}}));
    }
    doc
}

/// A build in `ws` with extra arguments and environment (JSON mode unless `text`).
fn build(ws: &Workspace, args: &[&str], env: &[(&str, &str)], text: bool) -> BuildResult {
    let mut b = ws.cmd().args(args);
    if text {
        b = b.text();
    }
    for (k, v) in env {
        b = b.env(k, v);
    }
    b.run()
}

fn warnings(r: &BuildResult) -> Vec<String> {
    r.doc()["warnings"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|w| w.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn remote_warnings(r: &BuildResult) -> Vec<String> {
    warnings(r)
        .into_iter()
        .filter(|w| w.contains("remote cache"))
        .collect()
}

/// `pflow cache stats --output-format json` for a workspace's cache.
fn cache_stats(ws: &Workspace) -> Value {
    let out = ws
        .pflow()
        .args(["cache", "stats", "--output-format", "json", "--cache-dir"])
        .arg(ws.cache_dir())
        .output();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_fresh_workspace_reuses_everything_from_the_remote_and_restores_written_files() {
    let nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();

    let a = Workspace::new().workflow(pipeline());
    let ra = build(
        &a,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    );
    ra.assert_ok();
    assert_eq!(ra.with_status("ran").len(), 5, "{ra}");
    assert!(remote_warnings(&ra).is_empty(), "{ra}");
    // Blobs, then entries; nothing for the `cache: false` node.
    let entries = nginx.files("ac");
    assert_eq!(
        entries.len(),
        4,
        "one entry per cacheable node: {entries:?}"
    );
    for e in &entries {
        let doc: Value = serde_json::from_slice(&std::fs::read(e).unwrap()).unwrap();
        assert_eq!(doc["format"], "pflow-remote-v1");
        assert_ne!(doc["node"], "clock", "a cache: false node was uploaded");
        assert_eq!(
            e.file_name().unwrap().to_str().unwrap(),
            doc["key"].as_str().unwrap()
        );
        let blob = nginx
            .dir
            .path()
            .join("root/pflow/cas")
            .join(doc["outputs"]["sha256"].as_str().unwrap());
        assert!(blob.is_file(), "outputs blob of {} missing", doc["node"]);
    }
    assert!(nginx.requests("PUT") >= 4);

    // Workspace B: another folder, its own empty local cache, the same server.
    let b = Workspace::new().workflow(pipeline());
    let puts_before = nginx.requests("PUT");
    let rb = build(&b, &["--remote-cache", &url], &[], false);
    rb.assert_ok();
    for id in ["gen", "upper", "save", "side"] {
        assert_eq!(rb.executions_of(id), 0, "{id} ran in B: {rb}");
        assert!(
            rb.reason_of(id).ends_with("(remote)"),
            "{id}: {}",
            rb.reason_of(id)
        );
    }
    assert_eq!(rb.status_of("save"), "restored", "{rb}");
    assert_eq!(
        rb.executions_of("clock"),
        1,
        "cache: false runs every build"
    );
    for id in ["gen", "upper", "side"] {
        assert_eq!(b.count(id), 0, "{id} executed in B");
    }
    assert_eq!(b.read("out/result.txt"), "HELLO");
    assert_eq!(rb.output("result"), a.read("out/result.txt").as_str());
    assert_eq!(
        nginx.requests("PUT"),
        puts_before,
        "B uploaded without the write flag"
    );
    assert!(remote_warnings(&rb).is_empty(), "{rb}");

    // The remote hit was stored locally: the next build asks the server nothing.
    let gets_before = nginx.requests("GET");
    let rb2 = build(&b, &["--remote-cache", &url], &[], false);
    rb2.assert_ok();
    assert_eq!(rb2.with_status("cached").len(), 4, "{rb2}");
    assert!(!rb2.reason_of("gen").contains("remote"), "{rb2}");
    assert_eq!(
        nginx.requests("GET"),
        gets_before,
        "B asked the server again"
    );

    // `pflow cache stats` counts the remote hits and bytes.
    let stats = cache_stats(&b);
    let remote = &stats["recent_builds"]["remote"];
    assert_eq!(remote["hits"], 4, "{stats}");
    assert!(remote["bytes_down"].as_u64().unwrap() > 0, "{stats}");
    assert_eq!(remote["uploads"], 0, "{stats}");

    // Text mode: --explain and the summary line tell remote hits from local ones.
    let c = Workspace::new().workflow(pipeline());
    let rc = build(&c, &["--remote-cache", &url, "--explain"], &[], true);
    rc.assert_ok();
    assert!(
        rc.stderr.contains("inputs unchanged (remote)"),
        "{}",
        rc.stderr
    );
    assert!(
        rc.stderr.contains("4 reused from the remote cache"),
        "{}",
        rc.stderr
    );
}

#[test]
fn a_corrupt_blob_on_the_server_is_a_miss_reported_once_and_the_node_runs_again() {
    let nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();
    let a = Workspace::new().workflow(pipeline());
    build(
        &a,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    )
    .assert_ok();

    // Damage every blob the server holds (same size where possible, so only the hash
    // can tell).
    let blobs = nginx.files("cas");
    assert!(blobs.len() >= 4, "{blobs:?}");
    for p in &blobs {
        let mut bytes = std::fs::read(p).unwrap();
        if bytes.is_empty() {
            bytes.push(b'!');
        } else {
            for b in bytes.iter_mut() {
                *b = b.wrapping_add(1);
            }
        }
        std::fs::write(p, bytes).unwrap();
    }

    let b = Workspace::new().workflow(pipeline());
    let rb = build(&b, &["--remote-cache", &url, "--explain"], &[], false);
    rb.assert_ok();
    for id in ["gen", "upper", "side"] {
        assert_eq!(rb.status_of(id), "ran", "{rb}");
        assert_eq!(b.count(id), 1, "{id}");
    }
    assert_eq!(rb.status_of("save"), "ran", "{rb}");
    assert!(
        rb.reason_of("gen").contains("corrupt"),
        "{}",
        rb.reason_of("gen")
    );
    assert_eq!(b.read("out/result.txt"), "HELLO");
    assert_eq!(rb.output("result"), "HELLO");
    let w = remote_warnings(&rb);
    assert_eq!(w.len(), 1, "reported once: {w:?}");
    assert!(w[0].contains("SHA-256"), "{w:?}");

    // A writer replaces the corrupt blobs even though HEAD says they are there.
    let c = Workspace::new().workflow(pipeline());
    let rc = build(
        &c,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    );
    rc.assert_ok();
    let d = Workspace::new().workflow(pipeline());
    let rd = build(&d, &["--remote-cache", &url], &[], false);
    rd.assert_ok();
    for id in ["gen", "upper", "side", "save"] {
        assert_eq!(rd.executions_of(id), 0, "{id}: {rd}");
    }
    assert!(remote_warnings(&rd).is_empty(), "{rd}");
}

#[test]
fn a_stopped_server_costs_one_warning_and_little_time() {
    let mut nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();
    nginx.stop();

    // Many independent nodes, each of which would ask the server.
    let mut nodes: Vec<Value> = (0..12)
        .map(|i| {
            json!({"id": format!("n{i}"), "type": "shell",
                        "params": {"command": counted(&format!("n{i}"), &format!("echo {i}"))}})
        })
        .collect();
    nodes.push(json!({"id": "save", "type": "write-file",
                      "params": {"file_path": "out.txt", "content": "${n0.stdout}"}}));
    let doc = json!({"nodes": nodes});

    let local = Workspace::new().workflow(doc.clone());
    let rl = build(&local, &[], &[], false);
    rl.assert_ok();

    let ws = Workspace::new().workflow(doc);
    let r = build(
        &ws,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    );
    r.assert_ok();
    assert_eq!(r.with_status("ran").len(), 13, "{r}");
    let w = remote_warnings(&r);
    assert_eq!(w.len(), 1, "one warning: {:?}", warnings(&r));
    assert!(w[0].contains("cannot connect"), "{w:?}");
    assert!(w[0].contains("local cache only"), "{w:?}");
    assert!(
        r.elapsed < rl.elapsed + Duration::from_secs(3),
        "remote-off build took {:?}, local {:?}",
        r.elapsed,
        rl.elapsed
    );
    // Text mode: the warning is printed once too.
    let ws2 = Workspace::new().workflow(json!({"nodes": [
        {"id": "a", "type": "shell", "params": {"command": "echo a"}},
        {"id": "b", "type": "shell", "params": {"command": "echo b"}}
    ]}));
    let rt = build(&ws2, &["--remote-cache", &url], &[], true);
    rt.assert_ok();
    assert_eq!(
        rt.stderr.matches("remote cache").count(),
        1,
        "{}",
        rt.stderr
    );
}

#[test]
fn a_failing_server_is_dropped_after_a_few_errors() {
    let nginx = Nginx::start(Mode::Broken);
    let nodes: Vec<Value> = (0..10)
        .map(|i| {
            json!({"id": format!("n{i}"), "type": "shell",
                        "params": {"command": format!("echo {i}")}})
        })
        .collect();
    let ws = Workspace::new().workflow(json!({"nodes": nodes}));
    let r = build(
        &ws,
        &[
            "--remote-cache",
            &nginx.url(),
            "--remote-cache-write",
            "-j",
            "1",
        ],
        &[],
        false,
    );
    r.assert_ok();
    let w = remote_warnings(&r);
    assert_eq!(w.len(), 1, "{:?}", warnings(&r));
    assert!(w[0].contains("HTTP 500"), "{w:?}");
    let asked = nginx.access_log().lines().count();
    assert!(asked <= 3, "kept asking a failing server: {asked} requests");
}

#[test]
fn without_the_write_flag_nothing_is_uploaded() {
    let nginx = Nginx::start(Mode::Dav);
    let ws = Workspace::new().workflow(pipeline());
    let r = build(&ws, &["--remote-cache", &nginx.url()], &[], false);
    r.assert_ok();
    assert_eq!(r.with_status("ran").len(), 5, "{r}");
    assert!(nginx.requests("GET") >= 4, "{}", nginx.access_log());
    assert_eq!(nginx.requests("PUT"), 0, "{}", nginx.access_log());
    assert!(nginx.all_files().is_empty(), "{:?}", nginx.all_files());
    assert!(remote_warnings(&r).is_empty(), "{r}");
    // PFLOW_REMOTE_CACHE alone reads too, and still writes nothing.
    let ws2 = Workspace::new().workflow(pipeline());
    build(&ws2, &[], &[("PFLOW_REMOTE_CACHE", &nginx.url())], false).assert_ok();
    assert_eq!(nginx.requests("PUT"), 0);
    assert!(nginx.requests("GET") >= 8);
}

#[test]
fn a_bearer_token_from_the_environment_is_sent_and_never_printed() {
    let nginx = Nginx::start(Mode::DavWithToken);
    let url = nginx.url();
    let env = [
        ("PFLOW_REMOTE_CACHE", url.as_str()),
        ("PFLOW_REMOTE_CACHE_WRITE", "1"),
        ("PFLOW_REMOTE_CACHE_TOKEN", TOKEN),
    ];
    let a = Workspace::new().workflow(pipeline());
    let ra = build(&a, &[], &env, false);
    ra.assert_ok();
    assert!(remote_warnings(&ra).is_empty(), "{ra}");
    assert_eq!(nginx.files("ac").len(), 4);

    // Without the token: refused, one warning, the build still succeeds locally.
    let b = Workspace::new().workflow(pipeline());
    let rb = build(&b, &["--remote-cache", &url], &[], true);
    rb.assert_ok();
    assert_eq!(
        rb.stderr.matches("remote cache").count(),
        1,
        "{}",
        rb.stderr
    );
    assert!(rb.stderr.contains("HTTP 401"), "{}", rb.stderr);
    assert_eq!(b.count("gen"), 1);

    // A wrong token is refused and not shown either.
    let c = Workspace::new().workflow(pipeline());
    let rc = build(
        &c,
        &["--remote-cache", &url],
        &[("PFLOW_REMOTE_CACHE_TOKEN", "wrong-token-value")],
        true,
    );
    rc.assert_ok();
    assert!(!rc.stderr.contains("wrong-token-value"), "{}", rc.stderr);

    // With it: everything comes from the server.
    let e = Workspace::new().workflow(pipeline());
    let re = build(&e, &["--explain"], &[env[0], env[2]], true);
    re.assert_ok();
    assert_eq!(e.count("gen"), 0, "{}", re.stderr);
    assert!(re.stderr.contains("(remote)"), "{}", re.stderr);
    for r in [&ra, &rb, &rc, &re] {
        assert!(
            !r.stdout.contains(TOKEN) && !r.stderr.contains(TOKEN),
            "{r}"
        );
    }
}

#[test]
fn a_bad_remote_url_is_an_invalid_argument() {
    let ws = Workspace::new().workflow(pipeline());
    let r = build(
        &ws,
        &["--remote-cache", "ftp://example.com/cache"],
        &[],
        false,
    );
    r.assert_code(2);
    assert_eq!(ws.count("gen"), 0);
}

#[test]
fn basic_auth_in_the_url_works_and_is_never_printed() {
    let nginx = Nginx::start(Mode::DavWithBasicAuth);
    let with_auth = nginx
        .url()
        .replacen("http://", &format!("http://pflow:{BASIC_PASSWORD}@"), 1);
    let a = Workspace::new().workflow(pipeline());
    let ra = build(
        &a,
        &["--remote-cache", &with_auth, "--remote-cache-write"],
        &[],
        true,
    );
    ra.assert_ok();
    assert!(!ra.stderr.contains("remote cache"), "{}", ra.stderr);
    assert_eq!(nginx.files("ac").len(), 4);

    let b = Workspace::new().workflow(pipeline());
    let rb = build(&b, &["--remote-cache", &with_auth, "--explain"], &[], true);
    rb.assert_ok();
    assert_eq!(b.count("gen"), 0, "{}", rb.stderr);
    assert!(rb.stderr.contains("(remote)"), "{}", rb.stderr);

    // A wrong password: one warning, without the URL's user info.
    let wrong = nginx
        .url()
        .replacen("http://", "http://pflow:not-the-pw@", 1);
    let c = Workspace::new().workflow(pipeline());
    let rc = build(&c, &["--remote-cache", &wrong], &[], true);
    rc.assert_ok();
    assert_eq!(
        rc.stderr.matches("remote cache").count(),
        1,
        "{}",
        rc.stderr
    );
    for r in [&ra, &rb, &rc] {
        for secret in [BASIC_PASSWORD, "not-the-pw"] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "{r}"
            );
        }
    }
}

#[test]
fn a_remote_entry_naming_a_file_outside_the_workspace_is_a_miss_and_writes_nothing() {
    let nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();
    let a = Workspace::new().workflow(pipeline());
    build(
        &a,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    )
    .assert_ok();
    // The entry of `save`, which writes out/result.txt.
    let entry_of_save = nginx
        .files("ac")
        .into_iter()
        .find(|p| {
            let doc: Value = serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap();
            doc["node"] == "save"
        })
        .expect("the entry of save is on the server");
    let original: Value = serde_json::from_slice(&std::fs::read(&entry_of_save).unwrap()).unwrap();

    let outside = tempfile::tempdir().unwrap();
    let abs = outside.path().join("abs.txt");
    let planted_paths = [
        (abs.to_string_lossy().into_owned(), "outside the workspace"),
        ("../outside.txt".to_string(), "outside the workspace"),
        ("~/home.txt".to_string(), "outside the workspace"),
        // Inside the workspace, but not a file that node writes: a user's file.
        ("notes.txt".to_string(), "does not write"),
    ];
    for (planted, why) in planted_paths {
        let mut doc = original.clone();
        doc["files"][0]["path"] = json!(planted);
        std::fs::write(&entry_of_save, serde_json::to_vec(&doc).unwrap()).unwrap();

        let b = Workspace::new().workflow(pipeline());
        let r = build(&b, &["--remote-cache", &url, "--explain"], &[], false);
        r.assert_ok();
        assert_eq!(r.status_of("save"), "ran", "{planted}: {r}");
        assert!(r.reason_of("save").contains(why), "{r}");
        assert!(!b.exists("notes.txt"), "{planted}: a user's file written");
        assert_eq!(
            r.status_of("gen"),
            "cached",
            "the other entries are still used: {r}"
        );
        assert_eq!(b.read("out/result.txt"), "HELLO");
        assert!(!abs.exists(), "{planted}: written outside");
        assert!(
            !b.path().join("../outside.txt").exists(),
            "{planted}: written outside"
        );
        assert!(
            !b.home_dir().join("home.txt").exists(),
            "{planted}: written in the home"
        );
        let w = remote_warnings(&r);
        assert_eq!(w.len(), 1, "{planted}: one warning: {w:?}");
        assert!(w[0].contains(&planted), "{w:?}");
    }
}

/// A file restored from the remote has the permission bits it was made with.
#[test]
fn a_file_from_the_remote_keeps_its_permission_bits() {
    use std::os::unix::fs::PermissionsExt;
    let nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();
    let wf = json!({"nodes": [{"id": "gen", "type": "shell", "writes": ["run.sh"],
        "params": {"command": counted("gen", "printf 'echo ok' > run.sh; chmod 750 run.sh")}}]});
    let a = Workspace::new().workflow(wf.clone());
    build(
        &a,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    )
    .assert_ok();
    let b = Workspace::new().workflow(wf);
    let rb = build(&b, &["--remote-cache", &url], &[], false);
    rb.assert_ok();
    assert_eq!(b.count("gen"), 0, "{rb}");
    let mode = std::fs::metadata(b.path().join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o750, "{rb}");
}

/// A symbolic link a step makes stays in the local cache: where a link from a remote
/// points is no one's check (it could lead a later reader to any file), so its entry is
/// not sent, and a fresh workspace runs the step.
#[test]
fn an_entry_with_a_link_is_not_sent_to_the_remote() {
    let nginx = Nginx::start(Mode::Dav);
    let url = nginx.url();
    let wf = json!({"nodes": [
        {"id": "gen", "type": "shell", "writes": ["a.txt", "latest"],
         "params": {"command": counted("gen", "echo a > a.txt; ln -sf a.txt latest")}},
        {"id": "plain", "type": "shell", "writes": ["b.txt"],
         "params": {"command": counted("plain", "echo b > b.txt")}}]});
    let a = Workspace::new().workflow(wf.clone());
    build(
        &a,
        &["--remote-cache", &url, "--remote-cache-write"],
        &[],
        false,
    )
    .assert_ok();
    let b = Workspace::new().workflow(wf);
    let rb = build(&b, &["--remote-cache", &url], &[], false);
    rb.assert_ok();
    assert_eq!((b.count("gen"), b.count("plain")), (1, 0), "{rb}");
    assert!(std::fs::symlink_metadata(b.path().join("latest"))
        .unwrap()
        .file_type()
        .is_symlink());
}
