//! `coffer stats CIPHERDIR` (hidden): the FUSE requests this machine's mount of the vault has
//! served, by kind, from its control socket; benchmarks read it before and after a workload.

use super::args::StatsArgs;
use super::error::{code, CliError, CliResult};
use super::rekey_online::Daemon;

/// Runs `stats`.
pub fn run(args: &StatsArgs) -> CliResult {
    let socket = match coffer::fs::lock_vault(&args.cipherdir) {
        Err(coffer::fs::MountError::AlreadyMounted { lock, .. }) => coffer::fs::control::socket_path(&lock),
        Ok(_) => {
            return Err(CliError::new(
                code::USAGE,
                format!("{}: not mounted on this machine", args.cipherdir.display()),
            ))
        }
        Err(e) => return Err(CliError::new(code::OTHER, e.to_string())),
    };
    println!("{}", Daemon::new(&socket).stats()?);
    Ok(())
}
