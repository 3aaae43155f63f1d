//! `pflow build`: load, validate, execute with the cache, report.

use crate::cli::BuildArgs;

pub fn run(_args: BuildArgs) -> i32 {
    eprintln!("error: pflow build is not implemented yet");
    2
}
