//! Patch records from arbitrary bytes: parsing never panics, a record survives a round
//! trip through its JSON, and applying one (as recorded, then as if recorded for the
//! workflow, so its operations run) never panics; what it produces can be validated.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pflow::repair::patch;
use serde_json::json;

fuzz_target!(|data: &[u8]| {
    let Ok(mut record) = patch::parse(data) else {
        return;
    };
    let text = serde_json::to_vec(&record).expect("a record serializes");
    let again = patch::parse(&text).ok();
    assert_eq!(again.as_ref(), Some(&record), "round trip changed the record");

    let base = json!({
        "inputs": {"name": {"type": "string", "default": "x"}},
        "nodes": [
            {"id": "a", "type": "echo", "params": {"message": "hi ${name}"}},
            {"id": "b", "type": "shell", "params": {"command": "echo ${a.echo}"}}
        ],
        "outputs": {"o": {"source": "${b.stdout}"}}
    });
    let _ = patch::apply(&record, &base);
    record.base_digest = patch::workflow_digest(&base);
    if let Ok(patched) = patch::apply(&record, &base) {
        let _ = pflow::validate::validate(&patched);
        let _ = patch::unified_diff(&base, &patched);
    }
});
