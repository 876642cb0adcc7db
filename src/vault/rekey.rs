//! `coffer rekey`, its first step: a new key epoch (docs/FORMAT.md §15.7). The new epoch's key
//! is wrapped under the same password, every older epoch's key is sealed under it, and a
//! config-version-1 vault becomes config version 2 with its master key as a layout-1 epoch.
//! Objects stay where they are: they are read under their own epoch until moved (`migrate`);
//! `finish` then forgets the older epochs' keys.

use std::path::Path;

use crate::crypto::{self, MasterKey};
use crate::format::config::lineage::{link_message, Link, MAX_LINKS};
use crate::format::config::{Config, FLAG_REVERSE};
use crate::format::epochs::{Epoch, EpochId, Epochs, Layout, VaultId, MAX_EPOCHS};

use super::epochs::{epoch_keys, seal_older, write_epochs_file};
use super::error::{Result, VaultError};
use super::migrate::{Migration, Mode};
use super::unlock::slots::{self as key_slots, Credential};
use super::unlock::{self, KdfCost};
use super::Vault;

/// What starting an epoch wrote.
pub struct NewEpoch {
    /// The new epoch's key (for the recovery key print-out).
    pub key: MasterKey,
    /// The config as written.
    pub config: Config,
}

/// Starts a new key epoch in the config at `path` of the vault at `cipherdir`, unlocked with
/// `password` (which stays the password): `coffer.epochs` is written first, then the config.
/// Refused when the config already lists [`MAX_EPOCHS`].
pub fn start_epoch(cipherdir: &Path, path: &Path, cred: &Credential) -> Result<NewEpoch> {
    let cfg = unlock::read_config(path)?;
    if cfg.params().has_flag(FLAG_REVERSE) {
        // Key epochs are for vaults; a reverse config gets a new key by `reverse::rekey`.
        return Err(VaultError::Unsupported(
            "a reverse-mode config has no key epochs (rekey it with `coffer rekey PLAINDIR`)",
        ));
    }
    let (current, _) = unlock::slots::unlock_any(&cfg, cred)?;
    let (vault, old) = match epoch_keys(&cfg, &current)? {
        Some(opened) => (opened.vault, opened.list),
        // Config version 1: its master key becomes the first epoch, of layout 1.
        None => {
            let epoch = Epoch {
                id: EpochId(crypto::random_array()?),
                seq: 0,
                layout: Layout::V1,
                sealed_key: None,
            };
            (VaultId(crypto::random_array()?), vec![(epoch, current.clone())])
        }
    };
    if old.len() >= MAX_EPOCHS {
        return Err(VaultError::Unsupported(
            "the config lists 16 key epochs already: run `coffer rekey --finish` first",
        ));
    }
    let mut id = EpochId(crypto::random_array()?);
    while old.iter().any(|(e, _)| e.id == id) {
        id = EpochId(crypto::random_array()?);
    }
    let seq = old.iter().map(|(e, _)| e.seq).max().unwrap_or(0) + 1;
    let key = MasterKey::generate()?;
    let mut list = Vec::with_capacity(old.len() + 1);
    for (e, k) in &old {
        let sealed = seal_older(&key, vault, id, e, k)?;
        list.push(Epoch {
            sealed_key: Some(sealed),
            ..e.clone()
        });
    }
    list.push(Epoch {
        id,
        seq,
        layout: Layout::V3,
        sealed_key: None,
    });
    let epochs = Epochs::new(list).map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    // Every slot gets the new key: a version-3 config's from the recipients its slots
    // describe, an older config's password becomes a slot at its own KDF cost.
    let slots = if cfg.format_version >= crate::format::CONFIG_V3 {
        key_slots::rewrap_all(&current, &key, vault, &key_slots::slots_of(&cfg)?)?
    } else {
        let Credential::Password(password) = cred else {
            return Err(VaultError::KeySlot(
                "a vault with a password only is rekeyed with its password".into(),
            ));
        };
        let new = key_slots::NewSlot::Password {
            password,
            cost: KdfCost::of(&cfg),
        };
        let slot = key_slots::make_slot(&key, vault, key_slots::fresh_id(&[])?, &new, None)?;
        crate::format::config::slots::Slots {
            slots: vec![slot],
            removed: Vec::new(),
        }
    };
    // The epoch that was newest signs the new one (the lineage a machine's pin follows).
    let mut links = cfg.links().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let (was_newest, _) = old
        .iter()
        .max_by_key(|(e, _)| e.seq)
        .ok_or_else(|| VaultError::ConfigTampered("no epochs".into()))?;
    let new_vk = crypto::epoch_verify_key(&key);
    let msg = link_message(vault, was_newest.id, id, seq, &new_vk);
    links.push(Link {
        from: was_newest.id,
        to: id,
        seq,
        key: new_vk,
        sig: crypto::epoch_sign(&current, &msg),
    });
    if links.len() > MAX_LINKS {
        links.drain(..links.len() - MAX_LINKS);
    }
    write_epochs_file(cipherdir, vault, &epochs)?;
    let config = key_slots::write_v3(path, &cfg.params(), vault, &epochs, &slots, &links, &key)?;
    Ok(NewEpoch { key, config })
}

/// What `rekey --finish` found.
pub enum Finish {
    /// The older epochs' keys are gone from the config (written as returned).
    Done(Config),
    /// Objects are still under an older epoch (or could not be checked): nothing was written.
    Refused(Migration),
}

/// `coffer rekey --finish`: once a walk of `vault` (opened with every epoch of the config at
/// `path`) finds nothing under an older epoch, writes the config with the newest epoch alone.
/// A config with one epoch is left as it is.
pub fn finish(path: &Path, cred: &Credential, vault: &Vault) -> Result<Finish> {
    let cfg = unlock::read_config(path)?;
    let (newest_key, _) = unlock::slots::unlock_any(&cfg, cred)?;
    let Some(opened) = epoch_keys(&cfg, &newest_key)? else {
        return Ok(Finish::Done(cfg));
    };
    if opened.list.len() == 1 {
        return Ok(Finish::Done(cfg));
    }
    let left = vault.migrate_to_newest(Mode::Plan, &mut |_| {})?;
    if left.moved() > 0 || !left.left.is_empty() {
        return Ok(Finish::Refused(left));
    }
    forget_older(path, cred, vault.cipherdir()).map(Finish::Done)
}

/// The last step of `rekey --finish`, once a walk found nothing under an older epoch: writes
/// `coffer.epochs` and the config at `path` with the newest epoch alone. A config with one
/// epoch is left as it is.
pub fn forget_older(path: &Path, cred: &Credential, cipherdir: &Path) -> Result<Config> {
    let cfg = unlock::read_config(path)?;
    let (newest_key, _) = unlock::slots::unlock_any(&cfg, cred)?;
    let Some(opened) = epoch_keys(&cfg, &newest_key)? else {
        return Ok(cfg);
    };
    let Some((newest, _)) = opened.list.iter().max_by_key(|(e, _)| e.seq) else {
        return Ok(cfg);
    };
    if opened.list.len() == 1 {
        return Ok(cfg);
    }
    let epochs = Epochs::new(vec![Epoch {
        sealed_key: None,
        ..newest.clone()
    }])
    .map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    write_epochs_file(cipherdir, opened.vault, &epochs)?;
    if cfg.format_version >= crate::format::CONFIG_V3 {
        // The slots wrap the newest key already.
        let slots = key_slots::slots_of(&cfg)?;
        let links = cfg.links().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
        return key_slots::write_v3(path, &cfg.params(), opened.vault, &epochs, &slots, &links, &newest_key);
    }
    let Credential::Password(password) = cred else {
        return Err(VaultError::KeySlot(
            "a vault with a password only is rekeyed with its password".into(),
        ));
    };
    let cost = KdfCost::of(&cfg);
    unlock::write_epochs(path, &cfg.params(), cost, opened.vault, &epochs, &newest_key, password)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::config::VaultParams;
    use crate::vault::Vault;

    /// A config-version-1 vault gains a layout-1 epoch for its old key and a layout-3 one on
    /// top; its files (written before) still read; the old config, kept aside, still opens with
    /// the old password but knows nothing of the new epoch; a second rekey seals both older
    /// keys under the third.
    #[test]
    fn a_version_1_vault_gets_epochs_and_keeps_its_files() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        let master = unlock::init_version(
            dir,
            None,
            b"pw",
            &VaultParams::default(),
            KdfCost::INSECURE_TEST,
            crate::format::CONFIG_V1,
        )
        .unwrap();
        let path = unlock::config_path(dir, None);
        {
            let v = Vault::unlock(dir, None, b"pw", false).unwrap();
            let root = v.root_dir().unwrap();
            let (f, _) = v.create_file(&root, b"old.txt", 0o644).unwrap();
            f.write_at(b"written under the old key", 0).unwrap();
        }
        let saved = std::fs::read(&path).unwrap();

        let first = start_epoch(dir, &path, &Credential::Password(b"pw")).unwrap();
        assert_eq!(first.config.format_version, crate::format::CONFIG_V3);
        let epochs = first.config.epochs().unwrap().unwrap();
        assert_eq!(epochs.all().len(), 2);
        assert_eq!(epochs.all()[0].layout, Layout::V1);
        assert_eq!(epochs.newest().layout, Layout::V3);
        let cfg = unlock::read_config(&path).unwrap();
        assert_eq!(cfg, first.config);
        let newest = unlock::unlock_with_password(&cfg, b"pw").unwrap();
        assert_eq!(newest.expose(), first.key.expose());
        let keys = unlock::vault_keys(&cfg, &newest).unwrap();
        let v1 = keys.layout1().unwrap();
        let want = crate::crypto::KeySet::derive(&master, false);
        let nonce = [3u8; 16];
        let seal = |s: &crate::crypto::KeySet| s.content.shared().unwrap().seal_with_nonce_to_vec(&nonce, b"", b"x");
        assert_eq!(seal(&v1.set), seal(&want), "the layout-1 epoch is the old master key");
        let v = Vault::unlock(dir, None, b"pw", true).unwrap();
        let root = v.root_dir().unwrap();
        let entry = root
            .fd
            .list()
            .unwrap()
            .into_iter()
            .find(|e| ![&b"coffer.diriv"[..], b"coffer.conf", b"coffer.epochs"].contains(&e.name.as_slice()))
            .unwrap()
            .name;
        let f = v.open_file(&root, &entry, false).unwrap();
        let mut buf = vec![0u8; 64];
        let n = f.read_at(&mut buf, 0).unwrap();
        assert_eq!(&buf[..n], b"written under the old key");

        // The old config still opens with the old password, to the old master key only.
        let old_cfg = Config::parse(&saved).unwrap();
        let old_master = unlock::unlock_with_password(&old_cfg, b"pw").unwrap();
        assert_eq!(old_master.expose(), master.expose());
        assert_ne!(old_master.expose(), first.key.expose());

        let second = start_epoch(dir, &path, &Credential::Password(b"pw")).unwrap();
        let epochs = second.config.epochs().unwrap().unwrap();
        assert_eq!(epochs.all().len(), 3);
        assert_eq!(epochs.newest().seq, 2);
        assert_eq!(second.config.vault_id, first.config.vault_id);
        let cfg = unlock::read_config(&path).unwrap();
        let keys = unlock::vault_keys(&cfg, &second.key).unwrap();
        assert_eq!(keys.len(), 3);
        // The first epoch's key is now sealed under the second's: the first key alone opens
        // nothing of this config.
        assert!(unlock::vault_keys(&cfg, &first.key).is_err());
        assert!(matches!(
            start_epoch(dir, &path, &Credential::Password(b"wrong")),
            Err(VaultError::WrongPassword)
        ));
    }
}
