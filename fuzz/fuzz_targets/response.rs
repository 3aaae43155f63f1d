//! Decoding untrusted response bytes the way an `http` node's output is consumed.
//!
//! The http node's own body decoding (`decode_body` in src/nodes/http.rs) is private, so
//! this target fuzzes the public decoders that see the same bytes: strict JSON parsing
//! (`source::parse_json_bytes`, what a JSON response goes through), JSON-in-text parsing
//! (`template::parse_json_container`, used when a template walks into `${get.response.x}`)
//! and a template walk through the decoded body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pflow::template::Template;
use serde_json::{json, Map};

fuzz_target!(|data: &[u8]| {
    let parsed = pflow::source::parse_json_bytes(data);
    let text = String::from_utf8_lossy(data);
    let container = pflow::template::parse_json_container(&text);
    if let (Ok(a), Some(b)) = (&parsed, &container) {
        assert_eq!(a, b, "the two decoders disagree");
    }
    // A response that is text holding JSON, as a shell or non-JSON http body would be.
    let mut scope = Map::new();
    scope.insert(
        "get".into(),
        json!({"response": text.as_ref(), "status_code": 200}),
    );
    if let Ok(v) = &parsed {
        scope.insert("parsed".into(), json!({ "response": v }));
        let _ = pflow::canonical::output_digest(v);
    }
    for src in [
        "${get.response.data[0].name}",
        "${get.response.error.message}",
        "got ${get.response} and ${parsed.response}",
        "${parsed.response.items[3]}",
    ] {
        let t = Template::parse(src).expect("fixed templates parse");
        let _ = t.resolve_with_limit(&scope, 1 << 20);
    }
});
