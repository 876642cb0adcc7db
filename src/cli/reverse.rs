//! `coffer reverse`: a read-only encrypted view of a plain directory (set up by
//! `coffer init --reverse`), served in the foreground (`--fg`) or by a background process
//! (see `daemon`).

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use coffer::fs::{self, MountOptions};
use coffer::vault::reverse::{default_config_path, read_reverse_config, Excludes, ReverseVault};
use coffer::vault::unlock;

use super::args::ReverseArgs;
use super::daemon;
use super::error::{code, CliError, CliResult};
use super::logging::{self, Target};
use super::mount::{absolute, check_mountpoint, mount_error};
use super::password::{read_secret, Ask};

/// Runs `reverse`.
pub fn run(args: &ReverseArgs, verbose: u8) -> CliResult {
    if args.open.identity.is_some() || args.open.keyfile.is_some() {
        return Err(CliError::new(
            code::USAGE,
            "a reverse-mode config has a password only: --identity and --keyfile do not open it",
        ));
    }
    if args.daemon_child {
        return daemon::run_child(args.log.as_deref(), verbose, "reverse mount ready", |on_ready| {
            serve(args, &args.plaindir, &args.mountpoint, on_ready)
        });
    }
    let mountpoint = check_mountpoint(&args.mountpoint, false)?;
    let plaindir = absolute(&args.plaindir)?;
    excludes(args)?;
    if args.fg {
        let target = args.log.as_deref().map_or(Target::Stderr, Target::File);
        logging::init(verbose, target)?;
        return serve(
            args,
            &plaindir,
            &mountpoint,
            Box::new(|| log::info!("reverse mount ready")),
        );
    }
    start(args, &plaindir, &mountpoint, verbose)
}

fn excludes(args: &ReverseArgs) -> CliResult<Excludes> {
    let pats: Vec<&[u8]> = args.exclude.iter().map(|p| p.as_bytes()).collect();
    Excludes::new(&pats).map_err(|e| CliError::new(code::USAGE, format!("--exclude: {e}")))
}

fn config_path(args: &ReverseArgs, plaindir: &Path) -> PathBuf {
    args.open
        .config
        .clone()
        .unwrap_or_else(|| default_config_path(plaindir))
}

/// Starts the background process (`reverse --fg --daemon-child ...`) and waits until ready.
fn start(args: &ReverseArgs, plaindir: &Path, mountpoint: &Path, verbose: u8) -> CliResult {
    // "Not a reverse config" comes before any prompt.
    read_reverse_config(&config_path(args, plaindir))?;
    let ask = if args.open.masterkey {
        Ask::RecoveryKey
    } else {
        Ask::Password
    };
    let secret = read_secret(&args.open.secret, ask)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(code::OTHER, format!("cannot find the coffer executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("reverse").arg("--fg").arg("--daemon-child");
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    if args.allow_other {
        cmd.arg("--allow-other");
    }
    if args.open.masterkey {
        cmd.arg("--masterkey");
    }
    if let Some(idle) = args.idle {
        cmd.arg("--idle").arg(idle.as_secs().to_string());
    }
    cmd.arg("--config").arg(absolute(&config_path(args, plaindir))?);
    if let Some(log) = &args.log {
        cmd.arg("--log").arg(absolute(log)?);
    }
    for p in &args.exclude {
        cmd.arg("--exclude").arg(p);
    }
    cmd.arg("--").arg(plaindir).arg(mountpoint);
    daemon::launch(cmd, &secret)
}

/// Unlocks the reverse config (password or recovery key) and opens the view.
fn open(args: &ReverseArgs, plaindir: &Path) -> CliResult<ReverseVault> {
    let path = config_path(args, plaindir);
    let (cfg, bytes) = read_reverse_config(&path)?;
    let master = if args.open.masterkey {
        let text = read_secret(&args.open.secret, Ask::RecoveryKey)?;
        let text = std::str::from_utf8(&text)
            .map_err(|_| CliError::new(code::WRONG_PASSWORD, "wrong recovery key: it is not text"))?;
        unlock::unlock_with_recovery_key(text, Some(&cfg))?.0
    } else {
        let password = read_secret(&args.open.secret, Ask::Password)?;
        unlock::unlock_with_password(&cfg, &password)?
    };
    Ok(ReverseVault::open(
        plaindir,
        &master,
        &cfg,
        bytes,
        &path,
        excludes(args)?,
    )?)
}

/// Unlocks and serves until unmounted.
fn serve(args: &ReverseArgs, plaindir: &Path, mountpoint: &Path, on_ready: Box<dyn FnOnce() + Send>) -> CliResult {
    let vault = open(args, plaindir)?;
    let opts = MountOptions {
        read_only: true,
        allow_other: args.allow_other,
        fsname: plaindir.display().to_string(),
        idle: args.idle,
        ..MountOptions::default()
    };
    log::info!("reverse-mounting {} at {}", plaindir.display(), mountpoint.display());
    fs::mount(vault, mountpoint, &opts, on_ready).map_err(mount_error)?;
    log::info!("unmounted {}", mountpoint.display());
    let _ = std::io::stderr().flush();
    Ok(())
}
