//! `pflow completions SHELL` and `pflow man`: generated from the clap definitions, so
//! they always match the arguments.

use super::{Error, ExitCode, Result};
use clap::CommandFactory;

pub fn completions(shell: clap_complete::Shell) -> Result {
    let mut cmd = crate::cli::Cli::command();
    // Into memory first: `generate` panics when its writer fails (a closed pipe, as
    // `pflow completions bash | head` leaves it), and stdout is written as all output is.
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "pflow", &mut out);
    crate::report::out_text(&String::from_utf8_lossy(&out));
    Ok(ExitCode::Ok)
}

pub fn man() -> Result {
    let cmd = crate::cli::Cli::command();
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .map_err(|e| Error::Failed(format!("cannot render the man page: {e}")))?;
    crate::report::out_line(String::from_utf8_lossy(&out).trim_end());
    Ok(ExitCode::Ok)
}
