// A no-op build of a big workflow allocates tens of MB of small objects. glibc's malloc
// touched each new page one fault at a time (16,500 faults, a third of the run's time on
// 10,000 nodes); mimalloc's segments need about 250.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;

// Small pages from the process's first allocation (the allocator asks the kernel for huge
// ones, and the first touch of each 2 MiB region zeroed all of it: about a tenth of a
// `--version`), until a command that fills its memory asks for them (`pflow::memory`).
// What matters is that it runs before the first heap page is touched: as a constructor,
// before `main` and the runtime's first allocation. `.init_array.00101` sorts before
// the unnumbered constructors (the allocator's own, built by gcc; built by clang it is
// also at 101, and the link puts this crate's first), after glibc's argument capture (at
// 99, which allocates nothing).
#[cfg(target_os = "linux")]
#[used]
#[link_section = ".init_array.00101"]
static SMALL_PAGES_FIRST: extern "C" fn() = small_pages_first;

#[cfg(target_os = "linux")]
extern "C" fn small_pages_first() {
    pflow::memory::small_pages_first();
}

fn main() {
    // A bug must still end with a clear message (and a failed node, not a hang); the
    // default hook's wording is reserved for Rust's own diagnostics.
    std::panic::set_hook(Box::new(|info| {
        let what = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown cause".into());
        let at = info
            .location()
            .map(|l| format!(" ({}:{})", l.file(), l.line()))
            .unwrap_or_default();
        pflow::report::err_line(&format!(
            "error: {}: {what}{at}; please report it",
            pflow::error::INTERNAL_ERROR
        ));
    }));
    let code = match pflow::cli::Cli::try_parse() {
        Ok(cli) => pflow::commands::run(cli),
        Err(e) => pflow::commands::usage_error(e),
    };
    // Everything is written and renamed into place by now, and the records it moved
    // aside are gone once the thread removing them is done (`fsutil::discard`). What is
    // left is the allocator's clean-up at exit, which returned the freed memory of an
    // edit build to the kernel page by page (a twentieth of its time) just before the
    // process ends.
    pflow::fsutil::finish_discards();
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing after this relies on exit handlers.
    unsafe { libc::_exit(code) }
}
