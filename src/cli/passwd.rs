//! `coffer passwd`: re-wrap the master key under a new password (atomic config replace), or
//! with `--masterkey` set a new password from the recovery key.

use coffer::vault::{unlock, KdfCost, VaultError};

use super::args::{PasswdArgs, SecretArgs};
use super::error::{code, CliError, CliResult};
use super::open::{check_cipherdir, read_config};
use super::password::{read_secret, Ask};

const HISTORY_WARNING: &str = "\
Note: an old coffer.conf may survive in your sync client's or provider's version history
(and in backups), and it still opens this vault with the OLD password. If the old password
leaked, changing it is not enough: run `coffer rekey`, then `coffer rekey --finish`.";

/// Runs `passwd`.
pub fn run(args: &PasswdArgs) -> CliResult {
    let path = unlock::config_path(&args.cipherdir, args.open.config.as_deref());
    let new_src = SecretArgs {
        passfile: args.new_passfile.clone(),
        extpass: args.new_extpass.clone(),
    };
    if args.open.masterkey {
        return reset_with_recovery_key(args, &new_src);
    }
    if args.open.identity.is_some() || args.open.keyfile.is_some() {
        return Err(CliError::new(
            code::USAGE,
            "passwd changes the password slot that the old password opens: give that password",
        )
        .hint(
            "to add a password with an identity or a key file: coffer key add CIPHERDIR --password --identity FILE",
        ));
    }
    let cfg = read_config(&args.cipherdir, args.open.config.as_deref())?;
    let old = read_secret(&args.open.secret, Ask::Password)?;
    // Check the old password before asking for a new one.
    unlock::unlock_with_password(&cfg, &old)?;
    let new = read_secret(&new_src, Ask::NewPassword)?;
    unlock::change_password(&path, &old, &new, cost(args))?;
    eprintln!("coffer: password changed.");
    eprintln!("{HISTORY_WARNING}");
    Ok(())
}

/// The KDF cost of the new wrap: the vault's own unless `--insecure-fast-kdf`.
fn cost(args: &PasswdArgs) -> Option<KdfCost> {
    if args.insecure_fast_kdf {
        eprintln!("coffer: warning: --insecure-fast-kdf: the new password is cheap to guess; use it for tests only");
        Some(KdfCost::INSECURE_TEST)
    } else {
        None
    }
}

/// Writes a fresh config from the recovery key (the old one, if present, must match the key).
fn reset_with_recovery_key(args: &PasswdArgs, new_src: &SecretArgs) -> CliResult {
    check_cipherdir(&args.cipherdir)?;
    let path = unlock::config_path(&args.cipherdir, args.open.config.as_deref());
    let cfg = match unlock::read_config(&path) {
        Ok(c) => Some(c),
        Err(VaultError::NotAVault(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let text = read_secret(&args.open.secret, Ask::RecoveryKey)?;
    let text = std::str::from_utf8(&text)
        .map_err(|_| CliError::new(code::WRONG_PASSWORD, "wrong recovery key: it is not text"))?;
    let unlocked = match unlock::recovery_unlock(text, cfg.as_ref(), Some(&args.cipherdir)) {
        Ok(v) => v,
        Err(VaultError::ConfigTampered(_)) => {
            return Err(CliError::new(
                code::WRONG_PASSWORD,
                "wrong recovery key: it does not match this vault's coffer.conf",
            ))
        }
        Err(e) => return Err(e.into()),
    };
    let new = read_secret(new_src, Ask::NewPassword)?;
    let kdf = if args.insecure_fast_kdf {
        KdfCost::INSECURE_TEST
    } else {
        KdfCost::default()
    };
    unlock::reset_config(&path, &unlocked, cfg.as_ref(), &new, kdf)?;
    eprintln!(
        "coffer: new password set from the recovery key ({} written).",
        path.display()
    );
    eprintln!("{HISTORY_WARNING}");
    Ok(())
}
