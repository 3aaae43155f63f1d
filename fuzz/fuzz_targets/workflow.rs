//! Workflow parsing and validation from arbitrary bytes: never panics, every error has a
//! path and a message, and a valid workflow survives a round trip through its IR JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let doc = match pflow::source::parse_json_bytes(data) {
        Ok(doc) => doc,
        Err(d) => {
            assert!(!d.path.is_empty() && !d.message.is_empty(), "{d:?}");
            return;
        }
    };
    match pflow::validate::validate(&doc) {
        Err(report) => {
            for d in report.errors.iter().chain(&report.warnings) {
                assert!(!d.path.is_empty(), "empty path: {d:?}");
                assert!(!d.message.is_empty(), "empty message: {d:?}");
            }
        }
        Ok(v) => {
            // What a repair is written back as must decode to the same workflow.
            let again = v.workflow.to_json();
            let (wf, diags) = pflow::workflow::Workflow::from_json(&again);
            assert!(diags.is_empty(), "round trip added problems: {diags:?}");
            assert_eq!(
                wf.as_ref(),
                Some(&v.workflow),
                "round trip changed the workflow"
            );
            assert!(pflow::validate::validate(&again).is_ok());
        }
    }
});
