//! A file a node reads is the same file only if its identity is: size and mtime, but
//! also its inode, device and change time, which a copy with `cp -p`, `touch -r`, `rsync
//! -t` or untarring cannot put back. Anything else is hashed again.

use crate::common::Workspace;
use serde_json::json;
use std::time::{Duration, SystemTime};

fn reader() -> Workspace {
    Workspace::new().workflow(json!({
        "nodes": [{"id": "read", "type": "read-file", "params": {"file_path": "data.txt"}}],
        "outputs": {"text": {"source": "${read.content}"}}
    }))
}

/// An hour ago: well before any build record, so nothing is re-hashed for being recent.
fn an_hour_ago() -> SystemTime {
    SystemTime::now() - Duration::from_secs(3600)
}

fn set_mtime(ws: &Workspace, rel: &str, t: SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(ws.file(rel))
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[test]
fn a_same_size_edit_with_the_mtime_put_back_is_seen() {
    let ws = reader();
    ws.write("data.txt", "version one");
    let then = an_hour_ago();
    set_mtime(&ws, "data.txt", then);
    assert_eq!(ws.build(&[]).output("text"), "version one");
    assert_eq!(ws.build(&[]).status_of("read"), "cached");

    // Same size, same mtime (as `touch -r` or `cp -p` leave it).
    ws.write("data.txt", "version two");
    set_mtime(&ws, "data.txt", then);
    let r = ws.build(&[]);
    assert_eq!(r.status_of("read"), "ran", "{r}");
    assert_eq!(r.output("text"), "version two");
}

#[test]
fn a_symlink_pointed_at_another_file_of_the_same_size_and_mtime_is_seen() {
    let ws = reader();
    ws.write("a.txt", "content A");
    ws.write("b.txt", "content B");
    let then = an_hour_ago();
    set_mtime(&ws, "a.txt", then);
    set_mtime(&ws, "b.txt", then);
    std::os::unix::fs::symlink("a.txt", ws.file("data.txt")).unwrap();
    assert_eq!(ws.build(&[]).output("text"), "content A");
    assert_eq!(ws.build(&[]).status_of("read"), "cached");

    std::fs::remove_file(ws.file("data.txt")).unwrap();
    std::os::unix::fs::symlink("b.txt", ws.file("data.txt")).unwrap();
    let r = ws.build(&[]);
    assert_eq!(r.status_of("read"), "ran", "{r}");
    assert_eq!(r.output("text"), "content B");
}

#[test]
fn force_keys_what_it_reads_so_each_content_keeps_its_own_result() {
    let ws = reader();
    let then = an_hour_ago();
    let put = |text: &str| {
        ws.write("data.txt", text);
        set_mtime(&ws, "data.txt", then);
    };
    put("content A");
    assert_eq!(ws.build(&[]).output("text"), "content A");
    put("content B");
    let r = ws.build(&["--force"]);
    assert_eq!(r.output("text"), "content B", "{r}");
    // From now on each content gives its own result, whichever was stored last.
    for (text, expect) in [("content A", "content A"), ("content B", "content B")] {
        put(text);
        let r = ws.build(&[]);
        assert_eq!(r.output("text"), expect, "{r}");
        assert_eq!(
            r.status_of("read"),
            "cached",
            "both results are in the cache: {r}"
        );
    }
}

#[test]
fn a_file_swapped_while_builds_run_never_leaves_a_wrong_result() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "read", "type": "read-file", "params": {"file_path": "data.txt"}},
            {"id": "head", "type": "shell", "params": {"command": "head -c 1", "stdin": "${read.content}"}}
        ],
        "outputs": {"first": {"source": "${head.stdout}"}}
    }));
    let contents = ["a".repeat(400_000), "b".repeat(400_000)];
    ws.write("data.txt", &contents[0]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let swapper = {
        let stop = stop.clone();
        let dir = ws.path().to_path_buf();
        let contents = contents.clone();
        std::thread::spawn(move || {
            let mut n = 0usize;
            // Rewritten in place (as an editor or `cat a > data.txt` does), so a reader
            // can see either version, or a mix. Bounded in count.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && n < 50_000 {
                std::fs::write(dir.join("data.txt"), &contents[n % 2]).unwrap();
                n += 1;
            }
        })
    };
    for _ in 0..40 {
        // A read of a half-written file may fail or mix; what matters is what is stored.
        ws.build(&[]);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    swapper.join().unwrap();
    // Whatever was stored meanwhile, each content now gives its own result.
    for (text, first) in [
        (&contents[0], "a"),
        (&contents[1], "b"),
        (&contents[0], "a"),
    ] {
        ws.write("data.txt", text);
        let r = ws.build(&[]);
        assert_eq!(r.output("first"), first, "{r}");
    }
}
