//! Extracting a workflow from an arbitrary LLM reply: never panics, returns an object,
//! and whatever it returns can be validated.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let reply = String::from_utf8_lossy(data);
    if let Some(v) = pflow::repair::reply::extract_workflow(&reply) {
        assert!(v.is_object(), "{v}");
        let _ = pflow::validate::validate(&v);
    }
});
