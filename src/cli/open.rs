//! Opening a vault for a command: config first (so "not a vault" comes before any prompt),
//! then the password or the recovery key.

use std::path::Path;

use coffer::format::config::Config;
use coffer::vault::flags::ConfigWriter;
use coffer::vault::{classify_backing, unlock, BackingName, Vault, VaultError};

use super::args::OpenArgs;
use super::error::{code, CliError, CliResult};
use super::identity::read_given;
use super::password::{read_secret, Ask};
use super::pin;

/// Checks that CIPHERDIR is an existing directory.
pub fn check_cipherdir(cipherdir: &Path) -> CliResult {
    match std::fs::metadata(cipherdir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(CliError::new(
            code::NOT_A_VAULT,
            format!("{}: not a directory", cipherdir.display()),
        )),
        Err(e) => Err(CliError::io(cipherdir, &e)),
    }
}

/// Reads the config of a vault (refusing a newer format, unknown flags, ...).
pub fn read_config(cipherdir: &Path, config: Option<&Path>) -> CliResult<Config> {
    check_cipherdir(cipherdir)?;
    Ok(unlock::read_config(&unlock::config_path(cipherdir, config))?)
}

/// Opens a vault with the password or, with `--masterkey`, the recovery key.
pub fn open_vault(cipherdir: &Path, args: &OpenArgs, read_only: bool) -> CliResult<Vault> {
    if args.masterkey {
        return open_with_recovery_key(cipherdir, args, read_only);
    }
    let cfg = read_config(cipherdir, args.config.as_deref())?;
    let given = read_given(args)?;
    let (master, access) = unlock::slots::unlock_any(&cfg, &given.credential())?;
    pin::check(cipherdir, &cfg, Some(&master), args.accept_config_change)?;
    let keys = unlock::vault_keys(&cfg, &master)?;
    let mut vault = Vault::open_with_keys(cipherdir, keys, cfg.params(), read_only)?;
    let path = unlock::config_path(cipherdir, args.config.as_deref());
    vault.allow_config_updates(ConfigWriter::new(path, master, access));
    Ok(vault)
}

/// The recovery-key path: the config is optional (it may be lost); if present its MAC must
/// verify under the key.
fn open_with_recovery_key(cipherdir: &Path, args: &OpenArgs, read_only: bool) -> CliResult<Vault> {
    check_cipherdir(cipherdir)?;
    let cfg = match unlock::read_config(&unlock::config_path(cipherdir, args.config.as_deref())) {
        Ok(c) => Some(c),
        Err(VaultError::NotAVault(_)) if args.config.is_none() => {
            log::info!("no coffer.conf: using the format parameters in the recovery key");
            None
        }
        Err(e) => return Err(e.into()),
    };
    let text = read_secret(&args.secret, Ask::RecoveryKey)?;
    let text = std::str::from_utf8(&text).map_err(|_| bad_key("it is not text"))?;
    let unlocked = match unlock::recovery_unlock(text, cfg.as_ref(), Some(cipherdir)) {
        Ok(v) => v,
        Err(VaultError::ConfigTampered(_)) => {
            return Err(bad_key("it does not match this vault's coffer.conf")
                .hint("if coffer.conf belongs to another vault, move it away and retry"))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(cfg) = &cfg {
        pin::check(cipherdir, cfg, Some(&unlocked.master), args.accept_config_change)?;
    }
    let vault = Vault::open_with_keys(cipherdir, unlocked.keys, unlocked.params, read_only)?;
    if cfg.is_none() {
        check_key_decrypts_root(&vault)?;
    }
    Ok(vault)
}

fn bad_key(why: &str) -> CliError {
    CliError::new(code::WRONG_PASSWORD, format!("wrong recovery key: {why}"))
}

/// Without a config nothing authenticates the key up front: a wrong key would show an empty
/// vault. Refuse when the root holds coffer names and none of them decrypts.
fn check_key_decrypts_root(vault: &Vault) -> CliResult {
    let root = vault.root_dir()?;
    let raw = root.fd.list().map_err(|e| CliError::io(vault.cipherdir(), &e))?;
    let mut named = 0;
    for e in raw {
        if matches!(
            classify_backing(&e.name, vault.params().name_encoding),
            BackingName::Short(_) | BackingName::Long(_)
        ) {
            named += 1;
            if let Ok(Some(_)) = vault.plain_name(&root, &e.name) {
                return Ok(());
            }
        }
    }
    if named == 0 {
        Ok(())
    } else {
        Err(bad_key("no file name in the vault root decrypts with it"))
    }
}
