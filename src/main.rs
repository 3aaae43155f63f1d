use clap::Parser;

fn main() {
    let cli = pflow::cli::Cli::parse();
    let code = pflow::cli::run(cli);
    std::process::exit(code);
}
