//! The rollback pin: for each CIPHERDIR this user has opened, the vault ID and the newest key
//! epoch seen (docs/FORMAT.md §15.8), with that epoch's public signing key (config version 3,
//! §16.2). A config that lacks that epoch — an older `coffer.conf` put back from a sync
//! client's version history, one from before the vault had epochs, or one of another vault —
//! or whose key neither is that epoch's nor descends from it by signed rekeys (a whole config
//! made for the user's public key by someone who can write CIPHERDIR), is refused unless the
//! user accepts it; accepting pins it.
//!
//! Pins live in `$XDG_STATE_HOME/coffer/pins/` (else `~/.local/state/coffer/pins/`), one small
//! JSON file per CIPHERDIR, named by a hash of its canonical path. They hold no secret.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use coffer::crypto::MasterKey;
use coffer::format::config::Config;

use super::error::{code, CliError, CliResult};

/// What a pin remembers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pin {
    vault_id: String,
    seq: u32,
    epoch: String,
    /// The epoch's public signing key, hex (config version 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    key: Option<String>,
}

/// Where the pins live, if this user has a state directory: `$XDG_STATE_HOME` (made if
/// missing), else `~/.local/state` when the home directory exists. A user without a home
/// (`HOME` unset or naming no directory, as service accounts have) has no pins: that is the
/// account's setup, not a fault, so it is not warned about on every command; a home whose
/// state directory cannot be written is.
fn pin_dir() -> Option<PathBuf> {
    Some(state_dir()?.join("pins"))
}

/// `$XDG_STATE_HOME/coffer` (else `~/.local/state/coffer`), as for [`pin_dir`].
pub(super) fn state_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => {
            let home = PathBuf::from(std::env::var_os("HOME").filter(|v| !v.is_empty())?);
            if !home.is_dir() {
                return None;
            }
            home.join(".local/state")
        }
    };
    Some(base.join("coffer"))
}

fn pin_file(dir: &Path, cipherdir: &Path) -> PathBuf {
    dir.join(format!("{}.json", cipherdir_key(cipherdir)))
}

/// A name for `cipherdir` in the state directory: a hash of its canonical path.
pub(super) fn cipherdir_key(cipherdir: &Path) -> String {
    let canonical = std::fs::canonicalize(cipherdir).unwrap_or_else(|_| cipherdir.to_path_buf());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

/// What the config says about itself, as a pin would record it (`None` for config version 1),
/// with the newest epoch's public signing key when its key `newest` is known (version 3).
fn pin_of(cfg: &Config, newest: Option<&MasterKey>) -> Option<Pin> {
    let epochs = cfg.epochs().ok()??;
    let top = epochs.newest();
    let key = newest
        .filter(|_| cfg.format_version >= coffer::format::CONFIG_V3)
        .map(|k| hex(&coffer::crypto::epoch_verify_key(k)));
    Some(Pin {
        vault_id: cfg.vault_id.clone()?,
        seq: top.seq,
        epoch: top.id.to_hex(),
        key,
    })
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Checks `cfg`, the config of `cipherdir` (whose newest key, once unlocked, is `newest`),
/// against this user's pin and moves the pin forward to it. `accept` lets a config through
/// that the pin refuses, and pins it.
pub fn check(cipherdir: &Path, cfg: &Config, newest: Option<&MasterKey>, accept: bool) -> CliResult {
    let Some(dir) = pin_dir() else {
        log::debug!("no state directory: the config is not checked against a pin");
        return Ok(());
    };
    let file = pin_file(&dir, cipherdir);
    let pinned: Option<Pin> = std::fs::read(&file).ok().and_then(|b| serde_json::from_slice(&b).ok());
    let mut now = pin_of(cfg, newest);
    if let (Some(old), false) = (&pinned, accept) {
        let refuse = |why: String| {
            Err(CliError::new(code::NOT_A_VAULT, why)
                .hint("if you put this coffer.conf back on purpose, pass --accept-config-change once"))
        };
        match &now {
            None => {
                return refuse(format!(
                "coffer.conf was rolled back: it has no key epochs, and this machine has seen epoch #{} of this vault",
                old.seq
            ))
            }
            Some(n) if n.vault_id != old.vault_id => {
                return refuse(format!(
                    "coffer.conf was replaced: it belongs to vault {}, and this machine has seen vault {} here",
                    n.vault_id, old.vault_id
                ))
            }
            Some(n) if n.seq < old.seq || (n.seq == old.seq && n.epoch != old.epoch) => {
                return refuse(format!(
                    "coffer.conf was rolled back: its newest key epoch is #{}, and this machine has seen #{}",
                    n.seq, old.seq
                ))
            }
            Some(_) => {}
        }
        // Version 3: the key itself must be the pinned epoch's or descend from it.
        if let (Some(pinned_key), Some(key)) = (old.key.as_deref().and_then(unhex32), newest) {
            let pinned_epoch = coffer::format::epochs::EpochId::from_hex(&old.epoch);
            let follows = match pinned_epoch {
                // The pinned epoch itself (any config version: a config rewritten from the
                // recovery key may be version 2): its key must be the pinned one.
                Some(e) if Some(&e.to_hex()) == now.as_ref().map(|n| &n.epoch) => {
                    coffer::crypto::epoch_verify_key(key) == pinned_key
                }
                Some(e) if cfg.format_version >= coffer::format::CONFIG_V3 => {
                    coffer::vault::unlock::slots::descends_from(cfg, e, &pinned_key, key)?
                }
                _ => false,
            };
            if !follows {
                return refuse(format!(
                    "coffer.conf was replaced: its key is not the one this machine has seen for vault {}, \
                     and no signed rekey leads from that one to it",
                    old.vault_id
                ));
            }
        }
    }
    if let (Some(n), Some(old)) = (now.as_mut(), &pinned) {
        // Unlocked without the key (the pin's key stays until a key is known).
        if n.key.is_none() && n.epoch == old.epoch {
            n.key.clone_from(&old.key);
        }
    }
    let Some(now) = now else {
        if accept && pinned.is_some() {
            let _ = std::fs::remove_file(&file);
        }
        return Ok(());
    };
    if pinned.as_ref() != Some(&now) {
        if let Err(e) = write_pin(&dir, &file, &now) {
            log::warn!("cannot record the vault's key epoch in {}: {e}", dir.display());
        }
    }
    Ok(())
}

/// A vault was just made at `cipherdir` with config `cfg`: its pin replaces whatever this user
/// had pinned there (a vault deleted and made again in the same place), or goes for config
/// version 1.
pub fn start(cipherdir: &Path, cfg: &Config, key: &MasterKey) {
    let Some(dir) = pin_dir() else { return };
    let file = pin_file(&dir, cipherdir);
    let result = match pin_of(cfg, Some(key)) {
        Some(pin) => write_pin(&dir, &file, &pin),
        None => match std::fs::remove_file(&file) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        },
    };
    if let Err(e) = result {
        log::warn!("cannot record the new vault's key epoch in {}: {e}", dir.display());
    }
}

fn write_pin(dir: &Path, file: &Path, pin: &Pin) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let body = serde_json::to_vec(pin).map_err(std::io::Error::other)?;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    std::io::Write::write_all(&mut f, &body)?;
    f.sync_all()?;
    std::fs::rename(&tmp, file)
}
