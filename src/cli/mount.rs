//! `coffer mount`: checks, then either serves in the foreground (`--fg`) or starts the
//! background process (see `daemon`) and returns once the mount is ready.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use coffer::fs::{self, MountError, MountOptions};

use super::args::MountArgs;
use super::daemon;
use super::error::{code, CliError, CliResult};
use super::logging::{self, Target};
use super::open::{open_vault, read_config};
use super::password::{read_secret, Ask};

/// Runs `mount`.
pub fn run(args: &MountArgs, verbose: u8) -> CliResult {
    if args.daemon_child {
        return daemon::run_child(args.log.as_deref(), verbose, "mount ready", |on_ready| {
            if verbose > 0 {
                daemon::report_note(&kernel_cache_plan(args, &args.cipherdir));
                if args.writeback_cache && !args.ro {
                    daemon::report_note(WRITEBACK_NOTE);
                }
            }
            serve(args, &args.cipherdir, &args.mountpoint, on_ready)
        });
    }
    let mountpoint = check_mountpoint(&args.mountpoint, args.nonempty)?;
    let cipherdir = absolute(&args.cipherdir)?;
    if args.fg {
        let target = args.log.as_deref().map_or(Target::Stderr, Target::File);
        logging::init(verbose, target)?;
        return serve(args, &cipherdir, &mountpoint, Box::new(|| log::info!("mount ready")));
    }
    start(args, &cipherdir, &mountpoint, verbose)
}

/// Starts the background process (`mount --fg --daemon-child ...`) and waits until ready.
fn start(args: &MountArgs, cipherdir: &Path, mountpoint: &Path, verbose: u8) -> CliResult {
    // Same order as a foreground open: "not a vault" comes before any prompt.
    let mut masterkey = args.open.masterkey;
    let secret = if args.open.identity.is_some() || args.open.keyfile.is_some() {
        // The identity is used here, where its passphrase or plugin can ask the user; the
        // background process gets the newest epoch's key, as a recovery key, on its stdin.
        let cfg = read_config(cipherdir, args.open.config.as_deref())?;
        let given = super::identity::read_given(&args.open)?;
        let (key, _) = coffer::vault::unlock::slots::unlock_any(&cfg, &given.credential())?;
        masterkey = true;
        let text = coffer::vault::unlock::recovery_key(&cfg, &key)?;
        zeroize::Zeroizing::new(text.as_bytes().to_vec())
    } else {
        let ask = if args.open.masterkey {
            Ask::RecoveryKey
        } else {
            read_config(cipherdir, args.open.config.as_deref())?;
            Ask::Password
        };
        read_secret(&args.open.secret, ask)?
    };
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(code::OTHER, format!("cannot find the coffer executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--fg").arg("--daemon-child");
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    let flags = [
        (args.ro, "--ro"),
        (args.allow_other, "--allow-other"),
        (args.nonempty, "--nonempty"),
        (args.suid, "--suid"),
        (args.dev, "--dev"),
        (args.nodiratime, "--nodiratime"),
        (args.writeback_cache, "--writeback-cache"),
        (masterkey, "--masterkey"),
        (args.open.accept_config_change, "--accept-config-change"),
    ];
    cmd.args(flags.iter().filter(|(on, _)| *on).map(|(_, f)| f));
    if let Some(mode) = clap::ValueEnum::to_possible_value(&args.atime) {
        cmd.arg("--atime").arg(mode.get_name());
    }
    if let Some(mode) = clap::ValueEnum::to_possible_value(&args.kernel_cache) {
        cmd.arg("--kernel-cache").arg(mode.get_name());
    }
    if let Some(w) = clap::ValueEnum::to_possible_value(&args.watcher) {
        cmd.arg("--watcher").arg(w.get_name());
    }
    if let Some(idle) = args.idle {
        cmd.arg("--idle").arg(idle.as_secs().to_string());
    }
    if let Some(cfg) = &args.open.config {
        cmd.arg("--config").arg(absolute(cfg)?);
    }
    if let Some(log) = &args.log {
        cmd.arg("--log").arg(absolute(log)?);
    }
    cmd.arg("--").arg(cipherdir).arg(mountpoint);
    daemon::launch(cmd, &secret)
}

/// What `-v` says of `--writeback-cache`.
const WRITEBACK_NOTE: &str =
    "writeback cache: on (writes are merged in the page cache; a full disk shows at fsync and close)";

/// What `-v` says of the kernel cache the mount of `cipherdir` will run with.
fn kernel_cache_plan(args: &MountArgs, cipherdir: &Path) -> String {
    match std::fs::File::open(cipherdir) {
        Ok(root) => {
            fs::watch::plan(&root, args.kernel_cache.into(), args.atime.into(), args.watcher.into()).to_string()
        }
        Err(e) => format!("kernel cache: cannot tell ({}: {e})", cipherdir.display()),
    }
}

/// Unlocks and serves until unmounted.
fn serve(args: &MountArgs, cipherdir: &Path, mountpoint: &Path, on_ready: Box<dyn FnOnce() + Send>) -> CliResult {
    let vault = open_vault(cipherdir, &args.open, args.ro)?;
    let opts = MountOptions {
        read_only: args.ro,
        allow_other: args.allow_other,
        suid: args.suid,
        dev: args.dev,
        atime: args.atime.into(),
        nodiratime: args.nodiratime,
        nonempty: args.nonempty,
        fsname: cipherdir.display().to_string(),
        threads: 0,
        idle: args.idle,
        config: args.open.config.clone(),
        kernel_cache: args.kernel_cache.into(),
        watcher: args.watcher.into(),
        writeback_cache: args.writeback_cache && !args.ro,
    };
    log::info!("mounting {} at {}", cipherdir.display(), mountpoint.display());
    fs::mount(vault, mountpoint, &opts, on_ready).map_err(mount_error)?;
    log::info!("unmounted {}", mountpoint.display());
    let _ = std::io::stderr().flush();
    Ok(())
}

/// The CLI error for a failed mount (forward or reverse): a refused mountpoint or a CIPHERDIR
/// mounted already is the target's fault.
pub fn mount_error(e: MountError) -> CliError {
    match e {
        MountError::Mountpoint { path, why } => CliError::new(code::TARGET, format!("{path}: {why}")),
        e @ (MountError::AlreadyMounted { .. } | MountError::HolderNotExiting { .. }) => {
            CliError::new(code::TARGET, e.to_string())
        }
        other => CliError::new(code::OTHER, other.to_string()),
    }
}

/// An absolute form of a path (the daemon runs in `/`).
pub fn absolute(p: &Path) -> CliResult<PathBuf> {
    std::path::absolute(p).map_err(|e| CliError::io(p, &e))
}

/// The mountpoint must be an existing directory, empty unless `--nonempty`.
pub fn check_mountpoint(mp: &Path, nonempty: bool) -> CliResult<PathBuf> {
    let meta = match std::fs::metadata(mp) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(
                CliError::new(code::TARGET, format!("{}: mountpoint does not exist", mp.display()))
                    .hint(format!("create it first: mkdir -p {}", mp.display())),
            );
        }
        Err(e) => return Err(CliError::io(mp, &e)),
    };
    if !meta.is_dir() {
        return Err(CliError::new(
            code::TARGET,
            format!("{}: mountpoint is not a directory", mp.display()),
        ));
    }
    let mut entries = std::fs::read_dir(mp).map_err(|e| CliError::io(mp, &e))?;
    if !nonempty && entries.next().is_some() {
        return Err(
            CliError::new(code::TARGET, format!("{}: mountpoint is not empty", mp.display()))
                .hint("use an empty directory, or --nonempty to mount over it"),
        );
    }
    absolute(mp)
}
