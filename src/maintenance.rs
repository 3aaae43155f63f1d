//! `pflow cache stats | verify | gc | clear`: keeping the cache bounded and trustworthy.

use crate::cli::{CacheAction, OutputFormat, EXIT_FAILED, EXIT_OK};
use std::path::Path;

pub fn command(action: CacheAction, root: &Path, _format: OutputFormat) -> i32 {
    match action {
        CacheAction::Clear => match cacache::clear_sync(root) {
            Ok(()) => {
                eprintln!("cleared {}", root.display());
                EXIT_OK
            }
            Err(e) => {
                eprintln!("error: cannot clear {}: {e}", root.display());
                EXIT_FAILED
            }
        },
        other => {
            eprintln!("error: `pflow cache {other:?}` is not available yet");
            EXIT_FAILED
        }
    }
}
