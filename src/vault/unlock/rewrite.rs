//! Rewriting the config of an unlocked vault: a new feature flag, a new password, new epochs.

use std::path::Path;

use super::slots::Access;
use crate::crypto::MasterKey;
use crate::format::config::{Config, VaultParams, KNOWN_FLAGS};
use crate::vault::error::{Result, VaultError};

use super::{
    check_mac, new_config_v2, read_config, renewed, seal_config, seal_with_kek, unlock_with_password, write_config,
    KdfCost,
};

/// Adds feature flag `flag` to the config at `path`; Ok(false) when it is there already.
/// Every other field stays as it was (comment, version, other flags, limits, KDF and salt);
/// the master key is wrapped again under `kek` (the canonical encoding, its AAD, changed) and
/// the MAC is new. The config on disk must still be the one `kek` was derived for: one that
/// does not verify under `master`, or whose wrap `kek` does not open (the password was changed
/// since), is left alone and refused. Written atomically, mode 0600 (FORMAT.md §3.5).
pub fn add_flag(path: &Path, master: &MasterKey, access: &Access, flag: &str) -> Result<bool> {
    let mut cfg = read_config(path)?;
    check_mac(&cfg, master)?;
    if cfg.params().has_flag(flag) {
        return Ok(false);
    }
    if !KNOWN_FLAGS.contains(&flag) {
        return Err(VaultError::Config {
            path: path.to_path_buf(),
            source: crate::format::FormatError::UnknownFlag(flag.to_string()),
        });
    }
    let kek = match access {
        // Version 3: the slots wrap the key whatever the flags; only the MAC is new.
        _ if cfg.format_version >= crate::format::CONFIG_V3 => {
            let slots = super::slots::slots_of(&cfg)?;
            cfg.feature_flags.push(flag.to_string());
            cfg.feature_flags.sort();
            super::slots::write_slots(path, &cfg, master, &slots)?;
            return Ok(true);
        }
        Access::Kek(k) => k,
        Access::Slot(_) => {
            return Err(VaultError::ConfigTampered(
                "the config lost its key slots since it was unlocked".into(),
            ))
        }
    };
    let canonical = cfg.canonical().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let wrapped = cfg
        .wrapped_key()
        .map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let opened = zeroize::Zeroizing::new(
        kek.cipher()
            .open_from_slice(&canonical, &wrapped)
            .map_err(|_| VaultError::ConfigTampered("the config was rewrapped since it was unlocked".into()))?,
    );
    if opened.as_slice() != master.expose() {
        return Err(VaultError::ConfigTampered("the config wraps another master key".into()));
    }
    cfg.feature_flags.push(flag.to_string());
    cfg.feature_flags.sort();
    seal_with_kek(path, &mut cfg, master, kek)?;
    write_config(path, &cfg)?;
    Ok(true)
}

/// Re-wraps the master key under a new password (and optionally a new KDF cost); atomic.
pub fn change_password(path: &Path, old: &[u8], new: &[u8], cost: Option<KdfCost>) -> Result<()> {
    let cfg = read_config(path)?;
    if cfg.format_version >= crate::format::CONFIG_V3 {
        return super::slots::change_slot_password(path, old, new, cost);
    }
    let master = unlock_with_password(&cfg, old)?;
    let cost = cost.unwrap_or(KdfCost::of(&cfg));
    let mut fresh = renewed(&cfg, cost)?;
    seal_config(path, &mut fresh, &master, new)?;
    write_config(path, &fresh)
}

/// Writes a config-version-2 config at `path` for `epochs`, whose newest key is `newest`,
/// wrapped under `password` with a fresh salt at `cost`; returns it as written.
pub fn write_epochs(
    path: &Path,
    params: &VaultParams,
    cost: KdfCost,
    vault: crate::format::epochs::VaultId,
    epochs: &crate::format::epochs::Epochs,
    newest: &MasterKey,
    password: &[u8],
) -> Result<Config> {
    let mut cfg = new_config_v2(params, cost, vault, epochs)?;
    seal_config(path, &mut cfg, newest, password)?;
    write_config(path, &cfg)?;
    Ok(cfg)
}
