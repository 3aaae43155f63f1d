//! Batches over every node type: file nodes (`read-file`, `copy-file`, …) take their
//! path from the item, and each item's key covers the content of its own files, so an
//! edit to one of N files re-runs one item.

use crate::common;

use common::Workspace;
use serde_json::{json, Value};

fn contents(r: &common::BuildResult) -> Vec<String> {
    r.output("all")
        .as_array()
        .expect("results are an array")
        .iter()
        .map(|x| x["content"].as_str().expect("content is text").to_string())
        .collect()
}

#[test]
fn a_batch_of_read_file_runs_and_an_edit_reruns_one_item() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [{
            "id": "read", "type": "read-file",
            "batch": {"items": ["docs/a.md", "docs/b.md", "docs/c.md"], "as": "p"},
            "params": {"file_path": "${p}"}
        }],
        "outputs": {"all": {"source": "${read.results}"}}
    }));
    for name in ["a", "b", "c"] {
        ws.write(&format!("docs/{name}.md"), &format!("text of {name}"));
    }
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(contents(&r), ["text of a", "text of b", "text of c"]);
    assert_eq!(r.executions_of("read"), 3);

    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.status_of("read"), "cached", "{r}");
    assert_eq!(r.executions_of("read"), 0);

    ws.write("docs/b.md", "b, edited");
    let r = ws.build(&["--explain"]);
    r.assert_ok();
    assert_eq!(contents(&r), ["text of a", "b, edited", "text of c"]);
    assert_eq!(r.executions_of("read"), 1, "{r}");
    assert!(r.reason_of("read").contains("docs/b.md"), "{r}");

    let r = ws.build(&[]);
    assert_eq!(r.status_of("read"), "cached", "{r}");
}

#[test]
fn a_batch_of_copy_file_follows_each_source() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "list", "type": "shell", "params": {"command": "echo '[\"a.txt\",\"b.txt\"]'"}},
            {"id": "copy", "type": "copy-file",
             "batch": {"items": "${list.stdout}"},
             "params": {"source_path": "in/${item}", "dest_path": "out/${item}", "overwrite": true}}
        ]
    }));
    ws.write("in/a.txt", "one");
    ws.write("in/b.txt", "two");
    ws.build(&[]).assert_ok();
    assert_eq!(
        (ws.read("out/a.txt"), ws.read("out/b.txt")),
        ("one".into(), "two".into())
    );

    ws.write("in/a.txt", "one, edited");
    let r = ws.build(&[]);
    r.assert_ok();
    assert_eq!(r.executions_of("copy"), 1, "{r}");
    assert_eq!(ws.read("out/a.txt"), "one, edited");
    assert_eq!(ws.read("out/b.txt"), "two");
}

/// Every node type runs in a batch, its params resolved with the item in scope.
#[test]
fn every_node_type_runs_in_a_batch() {
    let ws = Workspace::new().workflow(json!({
        "nodes": [
            {"id": "write", "type": "write-file", "batch": {"items": ["x", "y"]},
             "params": {"file_path": "w/${item}.txt", "content": "w ${item}"}},
            {"id": "read", "type": "read-file", "batch": {"items": ["x", "y"]},
             "params": {"file_path": "w/${item}.txt"}},
            {"id": "copy", "type": "copy-file", "batch": {"items": ["x", "y"]},
             "params": {"source_path": "w/${item}.txt", "dest_path": "c/${item}.txt"}},
            {"id": "move", "type": "move-file", "batch": {"items": ["x", "y"]},
             "params": {"source_path": "c/${item}.txt", "dest_path": "m/${item}.txt"}},
            {"id": "delete", "type": "delete-file", "batch": {"items": ["x", "y"]},
             "params": {"file_path": "m/${item}.txt"}},
            {"id": "echo", "type": "echo", "batch": {"items": ["x", "y"]},
             "params": {"message": "${item}"}},
            {"id": "sh", "type": "shell", "batch": {"items": ["x", "y"]},
             "params": {"command": "echo ${item}"}}
        ],
        "edges": [
            {"from": "write", "to": "read"}, {"from": "read", "to": "copy"},
            {"from": "copy", "to": "move"}, {"from": "move", "to": "delete"}
        ],
        "outputs": {"read": {"source": "${read.results}"}}
    }));
    let r = ws.build(&[]);
    r.assert_ok();
    let read: Vec<&str> = r
        .output("read")
        .as_array()
        .expect("array")
        .iter()
        .map(|x| x["content"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(read, ["w x", "w y"]);
    for id in ["write", "read", "copy", "move", "delete", "echo", "sh"] {
        assert_eq!(r.node(id)["status"], Value::from("ran"), "{id}: {r}");
    }
    assert!(!ws.exists("m/x.txt") && !ws.exists("c/x.txt"));
}
