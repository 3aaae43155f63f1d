//! Template parsing and resolution against arbitrary JSON values.
//!
//! Input: template text, a NUL byte, then JSON for the scope (an object is used as is;
//! anything else is bound as `v` and as `n.stdout`). Resolution runs under a small
//! expansion cap so the fuzzer explores the limit path instead of running out of memory.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pflow::template::{ParamTemplate, Template};
use serde_json::{json, Map, Value};

const LIMIT: usize = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let (tpl, rest) = match data.iter().position(|&b| b == 0) {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let tpl = String::from_utf8_lossy(tpl);
    let value: Value = serde_json::from_slice(rest).unwrap_or(Value::Null);
    let scope: Map<String, Value> = match value {
        Value::Object(m) => m,
        other => {
            let mut m = Map::new();
            m.insert("n".into(), json!({ "stdout": other.clone() }));
            m.insert("v".into(), other);
            m.insert("__index__".into(), json!(0));
            m
        }
    };

    if let Ok(t) = Template::parse(&tpl) {
        // Rendering back to source and parsing again gives the same template.
        let src = t.to_source();
        assert_eq!(Template::parse(&src).as_ref(), Ok(&t), "source {src:?}");
        for r in t.refs() {
            let again = Template::parse(&r.to_string()).expect("a reference re-parses");
            assert_eq!(again.as_single_ref(), Some(r));
        }
        match t.resolve_with_limit(&scope, LIMIT) {
            Ok(Value::String(s)) if t.as_single_ref().is_none() => assert!(s.len() <= LIMIT),
            Ok(_) => {}
            Err(u) => {
                assert!(!u.template.is_empty() && !u.reason.is_empty());
                let _ = u.to_string();
            }
        }
    }

    // The same text as a param value, alone and nested in a container.
    let param = json!({"a": tpl.as_ref(), "b": [tpl.as_ref(), {"c": tpl.as_ref()}]});
    for p in [Value::String(tpl.to_string()), param] {
        if let Ok(pt) = ParamTemplate::compile(&p) {
            let _ = pt.refs();
            let _ = pt.resolve_with_limit(&scope, LIMIT);
        }
    }

    // Previews and container parsing never panic on any value.
    for v in scope.values() {
        let _ = pflow::template::value_preview(v, 60);
        if let Value::String(s) = v {
            let _ = pflow::template::parse_json_container(s);
        }
    }
});
