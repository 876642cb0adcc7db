//! Unlocking with a recovery key, and writing a new config for a vault opened by one.

use std::path::Path;

use crate::crypto::MasterKey;
use crate::format::config::{Config, VaultParams};
use crate::format::recovery::{self, NewestEpoch};
use crate::vault::epochs;
use crate::vault::error::{Result, VaultError};
use crate::vault::keys::VaultKeys;

use super::{check_mac, new_config, renewed, seal_config, write_config, KdfCost};

/// Opens with a recovery key. If a config is present its MAC must verify under that key and its
/// parameters win; otherwise the parameters carried in the recovery key are used.
pub fn unlock_with_recovery_key(text: &str, cfg: Option<&Config>) -> Result<(MasterKey, VaultParams)> {
    recovery_unlock(text, cfg, None).map(|u| (u.master, u.params))
}

/// What a recovery key unlocks.
pub struct RecoveryUnlock {
    /// The master key (config version 1) or the newest epoch's key (version 2).
    pub master: MasterKey,
    /// The vault parameters (the config's when present).
    pub params: VaultParams,
    /// The ciphers of every epoch that can be read: all the config lists, or without a
    /// config only the recovery key's own.
    pub keys: VaultKeys,
    /// The epoch a layout-2 recovery key names.
    pub newest: Option<NewestEpoch>,
    /// Without a config: every epoch `coffer.epochs` listed (and opened) for that key.
    pub epochs: Option<crate::format::epochs::Epochs>,
}

/// [`unlock_with_recovery_key`] with the keys of every epoch. A layout-2 recovery key must name
/// the config's newest epoch. Without a config, `coffer.epochs` in `cipherdir` (when given)
/// adds the older epochs it seals under the key's epoch.
pub fn recovery_unlock(text: &str, cfg: Option<&Config>, cipherdir: Option<&Path>) -> Result<RecoveryUnlock> {
    let r = recovery::decode(text).map_err(VaultError::RecoveryKey)?;
    let master = MasterKey::from_slice(&r.key[..]).expect("recovery::decode returns a 32-byte key");
    match cfg {
        Some(cfg) => {
            if (cfg.format_version >= crate::format::CONFIG_V2) != r.newest.is_some() {
                return Err(VaultError::ConfigTampered(
                    "the recovery key is for another config version".into(),
                ));
            }
            check_mac(cfg, &master)?;
            let newest = epochs::newest_of(cfg)?;
            if r.newest.is_some() && r.newest != newest {
                return Err(VaultError::ConfigTampered(
                    "the recovery key names another epoch than the config's newest".into(),
                ));
            }
            Ok(RecoveryUnlock {
                keys: epochs::keys_of(cfg, &master)?,
                params: cfg.params(),
                master,
                newest,
                epochs: None,
            })
        }
        None => {
            let from_file = match (&r.newest, cipherdir) {
                (Some(n), Some(dir)) => epochs::epochs_from_file(dir, n, &master),
                _ => None,
            };
            let (keys, list) = match from_file {
                Some((list, keys)) => (keys, Some(list)),
                None => (epochs::keys_without_config(&master, &r.params, r.newest), None),
            };
            Ok(RecoveryUnlock {
                keys,
                params: r.params,
                master,
                newest: r.newest,
                epochs: list,
            })
        }
    }
}

/// The recovery key of a vault: layout 1 for config version 1, layout 2 (naming the newest
/// epoch) for version 2.
pub fn recovery_key(cfg: &Config, key: &MasterKey) -> Result<zeroize::Zeroizing<String>> {
    Ok(match epochs::newest_of(cfg)? {
        Some(n) => recovery::encode_v2(key.expose(), &cfg.params(), n),
        None => recovery::encode(key.expose(), &cfg.params()),
    })
}

/// Writes a new config with a new password for a vault opened by recovery key: like `old`
/// when it is there (its MAC was checked by [`recovery_unlock`]), else from what the key
/// carries (config version 2: its own epoch only; objects under older epochs need the old
/// config).
pub fn reset_config(
    path: &Path,
    r: &RecoveryUnlock,
    old: Option<&Config>,
    password: &[u8],
    cost: KdfCost,
) -> Result<()> {
    if let Some(old) = old.filter(|c| c.format_version >= crate::format::CONFIG_V3) {
        // Key slots: every slot stays (other people's ways in) and the new password is one
        // more; when that would exceed the slot count or the KDF cost bound, the password
        // slots go and the new one takes their place.
        let mut list = super::slots::slots_of(old)?;
        let vault = super::slots::vault_of(old)?;
        let taken: Vec<_> = list
            .slots
            .iter()
            .map(|s| s.id)
            .chain(list.removed.iter().copied())
            .collect();
        let new = super::slots::NewSlot::Password { password, cost };
        let slot = super::slots::make_slot(&r.master, vault, super::slots::fresh_id(&taken)?, &new, None)?;
        let too_costly = list.slots.iter().map(|s| s.kdf_cost()).sum::<u64>() + slot.kdf_cost()
            > crate::format::config::slots::MAX_TOTAL_KDF_COST;
        if too_costly || list.slots.len() >= crate::format::config::slots::MAX_SLOTS {
            for s in &list.slots {
                if s.kind == crate::format::config::slots::SlotKind::Password {
                    list.removed.push(s.id);
                }
            }
            list.slots
                .retain(|s| s.kind != crate::format::config::slots::SlotKind::Password);
        }
        list.slots.push(slot);
        super::slots::write_slots(path, old, &r.master, &list)?;
        return Ok(());
    }
    let mut cfg = match (old, r.newest) {
        (Some(old), _) => renewed(old, cost)?,
        (None, Some(n)) => {
            let list = match &r.epochs {
                // The epochs coffer.epochs gave: the older ones stay reachable.
                Some(list) => list.clone(),
                None => {
                    let epoch = crate::format::epochs::Epoch {
                        id: n.id,
                        seq: n.seq,
                        layout: crate::format::epochs::Layout::V3,
                        sealed_key: None,
                    };
                    crate::format::epochs::Epochs::new(vec![epoch])
                        .map_err(|e| VaultError::ConfigTampered(e.to_string()))?
                }
            };
            // Config version 3, as `init` writes: one password slot for the new password.
            let new = super::slots::NewSlot::Password { password, cost };
            let slot = super::slots::make_slot(&r.master, n.vault, super::slots::fresh_id(&[])?, &new, None)?;
            let slots = crate::format::config::slots::Slots {
                slots: vec![slot],
                removed: Vec::new(),
            };
            super::slots::write_v3(path, &r.params, n.vault, &list, &slots, &[], &r.master)?;
            return Ok(());
        }
        (None, None) => new_config(&r.params, cost)?,
    };
    seal_config(path, &mut cfg, &r.master, password)?;
    write_config(path, &cfg)
}

/// Writes a new config for a vault opened by recovery key (its config was lost).
pub fn write_new_config(
    path: &Path,
    master: &MasterKey,
    params: &VaultParams,
    password: &[u8],
    cost: KdfCost,
) -> Result<()> {
    let mut cfg = new_config(params, cost)?;
    seal_config(path, &mut cfg, master, password)?;
    write_config(path, &cfg)
}
