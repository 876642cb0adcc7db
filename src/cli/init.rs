//! `coffer init`: create a vault (or, with `--reverse`, the config of a reverse-mode view)
//! and print its recovery key once.

use std::path::Path;

use coffer::format::config::{VaultParams, CONFIG_NAME, FLAG_BLOCK_SESSIONS, FLAG_REVERSE, FLAG_XATTR_PACKS};
use coffer::format::recovery;
use coffer::vault::reverse::{self, default_config_path};
use coffer::vault::{unlock, KdfCost};

use super::args::InitArgs;
use super::error::{code, CliError, CliResult};
use super::password::{read_secret, Ask, Secret};

/// Runs `init`.
pub fn run(args: &InitArgs) -> CliResult {
    if args.reverse {
        return init_reverse(args);
    }
    let dir = &args.cipherdir;
    check_target(dir, args.config.as_deref())?;
    let flags = vec![FLAG_BLOCK_SESSIONS.into(), FLAG_XATTR_PACKS.into()];
    let master = if args.recipient.is_empty() && args.recipient_file.is_empty() {
        let (params, password, cost) = params_and_password(args, flags, "vault")?;
        create_dir(dir)?;
        unlock::init_version(
            dir,
            args.config.as_deref(),
            &password,
            &params,
            cost,
            args.config_version.unwrap_or(crate::cli::DEFAULT_CONFIG_VERSION),
        )?
    } else {
        // For recipients only: no password slot, nothing asked.
        if args.config_version.is_some_and(|v| v < coffer::format::CONFIG_V3) {
            return Err(CliError::new(code::USAGE, "--recipient needs config version 3"));
        }
        let mut recipients = Vec::new();
        for r in &args.recipient {
            recipients
                .push(coffer::crypto::SlotRecipient::parse(r).map_err(|e| CliError::new(code::USAGE, e.to_string()))?);
        }
        for f in &args.recipient_file {
            recipients.extend(super::key::recipient_from_file(f)?);
        }
        let params = params_only(args, flags)?;
        let slots: Vec<_> = recipients
            .into_iter()
            .map(|r| (unlock::slots::NewSlot::Recipient(r), None))
            .collect();
        create_dir(dir)?;
        unlock::init_with_slots(dir, args.config.as_deref(), &params, &slots)?
    };
    let cfg = unlock::read_config(&unlock::config_path(dir, args.config.as_deref()))?;
    // A new vault where another was: this user's pin of the old one must not refuse it.
    super::pin::start(dir, &cfg, &master);
    if !args.quiet {
        println!("Created a coffer vault in {}.", dir.display());
        print_recovery_key(&unlock::recovery_key(&cfg, &master)?);
        println!("Write it down and keep it offline. It opens this vault without the password or");
        println!("coffer.conf (`coffer mount --masterkey`), even after a password change, so anyone");
        println!("holding it can read everything.");
        println!();
        println!("Mount with: coffer mount {} MOUNTPOINT", dir.display());
    }
    Ok(())
}

/// `coffer init --reverse PLAINDIR`: writes the reverse config (PLAINDIR is left as it is).
fn init_reverse(args: &InitArgs) -> CliResult {
    if args.config_version.is_some_and(|v| v != coffer::format::CONFIG_V1) {
        return Err(CliError::new(
            code::USAGE,
            "--reverse writes config version 1 only".to_string(),
        ));
    }
    let dir = &args.cipherdir;
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(CliError::new(
                code::TARGET,
                format!("{}: not a directory", dir.display()),
            ))
        }
        Err(e) => return Err(CliError::io(dir, &e)),
    }
    let cfg_path = args.config.clone().unwrap_or_else(|| default_config_path(dir));
    if cfg_path.symlink_metadata().is_ok() {
        return Err(CliError::new(
            code::TARGET,
            format!("{}: config file already exists", cfg_path.display()),
        )
        .hint("this directory already has a reverse config; mount it with `coffer reverse`"));
    }
    let (params, password, cost) = params_and_password(args, vec![FLAG_REVERSE.into()], "config")?;
    let master = reverse::init(dir, args.config.as_deref(), &password, &params, cost)?;
    if !args.quiet {
        println!(
            "Created a reverse-mode config for {} in {}.",
            dir.display(),
            cfg_path.display()
        );
        print_recovery_key(&recovery::encode(master.expose(), &params));
        println!("Write it down and keep it offline: it opens every encrypted copy of this folder.");
        println!();
        println!(
            "Show the encrypted view with: coffer reverse {} MOUNTPOINT",
            dir.display()
        );
    }
    Ok(())
}

fn create_dir(dir: &Path) -> CliResult {
    if !dir.exists() {
        std::fs::create_dir(dir).map_err(|e| CliError::io(dir, &e))?;
    }
    Ok(())
}

/// The vault parameters the flags ask for, checked.
fn params_only(args: &InitArgs, feature_flags: Vec<String>) -> CliResult<VaultParams> {
    let params = VaultParams {
        feature_flags,
        long_name_limit: args.long_name_limit,
        name_encoding: args.encoding(),
    };
    params
        .validate()
        .map_err(|e| CliError::new(code::USAGE, format!("--long-name-limit: {e}")))?;
    Ok(params)
}

/// What `init` and `init --reverse` share, in this order: the parameters from the flags
/// (checked before any prompt), the new password, and the KDF cost (`noun`, "vault" or
/// "config", names what `--insecure-fast-kdf` weakens in its warning).
fn params_and_password(
    args: &InitArgs,
    feature_flags: Vec<String>,
    noun: &str,
) -> CliResult<(VaultParams, Secret, KdfCost)> {
    let params = params_only(args, feature_flags)?;
    let password = read_secret(&args.secret, Ask::NewPassword)?;
    let cost = if args.insecure_fast_kdf {
        eprintln!(
            "coffer: warning: --insecure-fast-kdf: this {noun}'s password is cheap to guess; use it for tests only"
        );
        KdfCost::INSECURE_TEST
    } else {
        KdfCost::default()
    };
    Ok((params, password, cost))
}

/// Prints the recovery key block (blank line, title, blank line, the key, blank line).
pub(super) fn print_recovery_key(key: &str) {
    use std::io::Write;
    // The whole line, built once in a wiped buffer: `println!` would pass the key through
    // stdout's buffer, which keeps it after the write. A complete line written while that buffer
    // is empty goes straight to the file descriptor.
    let mut line = zeroize::Zeroizing::new(String::with_capacity(4 + key.len() + 1));
    line.push_str("    ");
    line.push_str(key);
    line.push('\n');
    println!();
    println!("Recovery key (shown only now):");
    println!();
    let mut out = std::io::stdout().lock();
    out.flush()
        .and_then(|()| out.write_all(line.as_bytes()))
        .expect("failed printing to stdout");
    drop(out);
    println!();
}

/// Refuses an already-initialized or non-empty CIPHERDIR, and an existing --config file.
fn check_target(dir: &Path, config: Option<&Path>) -> CliResult {
    if dir.join(CONFIG_NAME).exists() {
        return Err(CliError::new(
            code::TARGET,
            format!("{}: already a coffer vault", dir.display()),
        ));
    }
    if let Some(cfg) = config {
        if cfg.exists() {
            return Err(CliError::new(
                code::TARGET,
                format!("{}: config file already exists", cfg.display()),
            ));
        }
    }
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(
                    CliError::new(code::TARGET, format!("{}: directory is not empty", dir.display()))
                        .hint("a vault must start in an empty directory"),
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => Err(CliError::new(
            code::TARGET,
            format!("{}: not a directory", dir.display()),
        )),
        Err(e) => Err(CliError::io(dir, &e)),
    }
}
