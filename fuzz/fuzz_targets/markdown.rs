//! The `.pflow.md` front end from arbitrary text: never panics, every error has a path,
//! a message and a line, and an IR it reads is written back as Markdown that reads back
//! as the same IR (prose aside: a line of it that Markdown would read as a heading or an
//! item, as inside an HTML block, is escaped).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let parsed = match pflow::markdown::parse(text) {
        Ok(p) => p,
        Err(errors) => {
            for d in &errors {
                assert!(!d.path.is_empty() && !d.message.is_empty(), "{d:?}");
                assert!(d.line.is_some(), "no line: {d:?}");
            }
            return;
        }
    };
    let _ = pflow::validate::validate(&parsed.ir);
    if let Ok(md) = pflow::markdown::to_markdown(&parsed.ir, "T", None) {
        let again = pflow::markdown::parse(&md).unwrap_or_else(|e| panic!("{e:?}\n{md}"));
        assert_eq!(without_prose(&again.ir), without_prose(&parsed.ir), "{md}");
    }
});

fn without_prose(ir: &serde_json::Value) -> serde_json::Value {
    let mut ir = ir.clone();
    if let Some(nodes) = ir.get_mut("nodes").and_then(|n| n.as_array_mut()) {
        for n in nodes.iter_mut().filter_map(|n| n.as_object_mut()) {
            n.remove("purpose");
        }
    }
    for k in ["inputs", "outputs"] {
        if let Some(m) = ir.get_mut(k).and_then(|m| m.as_object_mut()) {
            for spec in m.values_mut().filter_map(|s| s.as_object_mut()) {
                spec.remove("description");
            }
        }
    }
    ir
}
