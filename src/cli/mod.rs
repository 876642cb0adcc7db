//! Layer 5: the `coffer` command line. One file per command or concern; `run` dispatches and
//! turns every error into one line on stderr plus a documented exit code.

mod args;
mod cat;
mod daemon;
mod docs;
mod duration;
mod error;
mod export;
mod fsck;
mod fstab;
mod helper;
mod identity;
mod info;
mod init;
mod kept;
mod key;
mod limits;
mod logging;
mod mount;
mod names;
mod open;
mod passwd;
mod password;
mod pin;
mod progress;
mod rekey;
mod rekey_online;
mod rekey_race;
mod reverse;
mod stats;
mod tty;
mod unmount;

use std::ffi::OsString;

use clap::Parser;

pub use coffer::format::names::DEFAULT_LONG_NAME_LIMIT;

/// The config version `coffer init` writes unless told otherwise.
pub const DEFAULT_CONFIG_VERSION: u16 = coffer::format::CONFIG_V3;

use args::{Cli, Command};
use error::{code, CliError, CliResult};

/// Parses the command line, runs the command, and returns the exit code.
pub fn run() -> i32 {
    limits::raise_nofile();
    limits::tune_malloc();
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    if argv.first().is_some_and(|a| helper::is_helper_name(a)) {
        match helper::translate(&argv) {
            Ok(a) => argv = a,
            Err(e) => return report(&e),
        }
    }
    let cli = match Cli::try_parse_from(argv) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { code::USAGE } else { 0 };
        }
    };
    match dispatch(&cli) {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

fn dispatch(cli: &Cli) -> CliResult {
    if !matches!(cli.command, Command::Mount(_) | Command::Reverse(_)) {
        logging::init(cli.verbose, logging::Target::Stderr)?;
    }
    match &cli.command {
        Command::Init(a) => init::run(a),
        Command::Mount(a) => mount::run(a, cli.verbose),
        Command::Unmount(a) => unmount::run(a),
        Command::Passwd(a) => passwd::run(a),
        Command::Rekey(a) => rekey::run(a),
        Command::Key(a) => key::run(a),
        Command::Info(a) => info::run(a),
        Command::Stats(a) => stats::run(a),
        Command::Cat(a) => cat::run(a),
        Command::Export(a) => export::run(a),
        Command::Reverse(a) => reverse::run(a, cli.verbose),
        Command::Fsck(a) => fsck::run(a),
        Command::EncryptName(a) => names::encrypt(a),
        Command::DecryptName(a) => names::decrypt(a),
        Command::Completions(a) => docs::completions(a),
        Command::GenDocs(a) => docs::gen_docs(a),
    }
}

/// Prints `coffer: error: MESSAGE` (and `coffer: hint: ...`) and returns the exit code.
fn report(e: &CliError) -> i32 {
    eprintln!("coffer: error: {}", e.message);
    if let Some(h) = &e.hint {
        eprintln!("coffer: hint: {h}");
    }
    e.code
}
