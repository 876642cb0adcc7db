//! The `coffer` command (the CLI lives in `cli/`; the library in `lib.rs`).

mod cli;

fn main() {
    std::process::exit(cli::run());
}
