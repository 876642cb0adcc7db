//! The key epochs of a config-version-2 vault (docs/FORMAT.md §15.5): a new vault's first
//! epoch, older epochs' keys sealed under the newest, the config MAC key of either config
//! version, and the ciphers of every epoch a config lists.

use crate::crypto::{self, info, BlockCipher, KeySet, MasterKey, SubKey};
use crate::format::config::{Config, VaultParams, FLAG_REVERSE};
use std::path::Path;

use crate::format::epochs::{
    sealed_key_aad, Epoch, EpochId, Epochs, EpochsFile, Layout, VaultId, EPOCHS_NAME, SEALED_EPOCH_KEY_LEN,
};
use crate::format::recovery::NewestEpoch;
use crate::format::{FormatError, CONFIG_V2};

use super::backing::DirFd;
use super::error::{IoContext, Result, VaultError};
use super::keys::{EpochKeys, VaultKeys};

/// The key of the config MAC: under the master key (`coffer v1 config mac`) in config version
/// 1, under the newest epoch's key (`coffer v3 config mac`) in version 2.
pub fn mac_key(cfg: &Config, key: &MasterKey) -> SubKey<32> {
    if cfg.format_version >= CONFIG_V2 {
        key.derive(info::V3_CONFIG_MAC)
    } else {
        key.derive(info::CONFIG_MAC)
    }
}

/// A new vault's identity and its first epoch (layout 3, sequence 0) with a fresh key.
pub fn first_epoch() -> Result<(VaultId, Epochs, MasterKey)> {
    let vault = VaultId(crypto::random_array()?);
    let epoch = Epoch {
        id: EpochId(crypto::random_array()?),
        seq: 0,
        layout: Layout::V3,
        sealed_key: None,
    };
    let epochs = Epochs::new(vec![epoch]).map_err(tampered)?;
    Ok((vault, epochs, MasterKey::generate()?))
}

fn tampered(e: FormatError) -> VaultError {
    VaultError::ConfigTampered(e.to_string())
}

/// The cipher that seals older epochs' keys under the newest epoch's key.
fn epoch_key_cipher(newest: &MasterKey) -> BlockCipher {
    BlockCipher::new(newest.derive::<32>(info::V3_EPOCH_KEYS).expose())
}

/// Seals `old`'s key under the newest epoch (`newest_id`, key `newest`) of vault `vault`.
pub fn seal_older(
    newest: &MasterKey,
    vault: VaultId,
    newest_id: EpochId,
    old: &Epoch,
    old_key: &MasterKey,
) -> Result<[u8; SEALED_EPOCH_KEY_LEN]> {
    let aad = sealed_key_aad(vault, newest_id, old.id, old.seq, old.layout);
    let sealed = epoch_key_cipher(newest).seal_to_vec(&aad, old_key.expose())?;
    sealed
        .as_slice()
        .try_into()
        .map_err(|_| VaultError::ConfigTampered("sealed epoch key has the wrong length".into()))
}

/// The ciphers of an epoch of `layout` whose key is `key`.
fn key_set(layout: Layout, key: &MasterKey) -> KeySet {
    match layout {
        Layout::V1 => KeySet::derive(key, false),
        Layout::V3 => KeySet::derive_v3(key),
    }
}

/// A config's vault ID and its epochs, each with its key, oldest first.
pub struct OpenedEpochs {
    /// The vault's ID.
    pub vault: VaultId,
    /// Every epoch and its key.
    pub list: Vec<(Epoch, MasterKey)>,
}

/// Every epoch of a config-version-2 config with its key, `newest` being the key its wrap (or
/// a recovery key) gave; `None` for config version 1.
pub fn epoch_keys(cfg: &Config, newest: &MasterKey) -> Result<Option<OpenedEpochs>> {
    let Some(epochs) = cfg.epochs().map_err(tampered)? else {
        return Ok(None);
    };
    let vault = cfg
        .vault_id()
        .ok_or_else(|| VaultError::ConfigTampered("config version 2 without a vault ID".into()))?;
    open_epochs(vault, &epochs, newest).map(Some)
}

/// Every epoch of `epochs` (of vault `vault`) with its key, the newest's being `newest`.
fn open_epochs(vault: VaultId, epochs: &Epochs, newest: &MasterKey) -> Result<OpenedEpochs> {
    let top = epochs.newest();
    let cipher = epoch_key_cipher(newest);
    let mut out = Vec::with_capacity(epochs.all().len());
    for e in epochs.all() {
        let key = match &e.sealed_key {
            None => newest.clone(),
            Some(sealed) => {
                let aad = sealed_key_aad(vault, top.id, e.id, e.seq, e.layout);
                let raw = zeroize::Zeroizing::new(cipher.open_from_slice(&aad, sealed).map_err(|_| {
                    VaultError::ConfigTampered(format!("the key of epoch {} does not open", e.id.to_hex()))
                })?);
                MasterKey::from_slice(&raw)
                    .ok_or_else(|| VaultError::ConfigTampered("an epoch key has the wrong length".into()))?
            }
        };
        out.push((e.clone(), key));
    }
    Ok(OpenedEpochs { vault, list: out })
}

/// The ciphers of opened epochs.
fn keys_of_opened(list: &[(Epoch, MasterKey)]) -> Result<VaultKeys> {
    let out = list
        .iter()
        .map(|(e, key)| EpochKeys {
            id: Some(e.id),
            layout: e.layout,
            set: key_set(e.layout, key),
        })
        .collect();
    VaultKeys::from_epochs(out).ok_or_else(|| VaultError::ConfigTampered("no epochs".into()))
}

/// Writes `coffer.epochs` into `cipherdir` (atomically, mode 0444): vault `vault`'s `epochs`.
pub fn write_epochs_file(cipherdir: &Path, vault: VaultId, epochs: &Epochs) -> Result<()> {
    let body = serde_json::to_vec_pretty(&EpochsFile::new(vault, epochs))
        .map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    DirFd::open_path(cipherdir)
        .and_then(|d| d.write_atomic(EPOCHS_NAME.as_bytes(), &body, 0o444))
        .at(cipherdir.join(EPOCHS_NAME))
}

/// The epochs `coffer.epochs` in `cipherdir` lists with their keys, when it is there, names the
/// vault and the newest epoch of the recovery key whose key is `key`, and every older key in it
/// opens. Anything else is `None` (logged): the recovery key then reaches its own epoch only.
pub fn epochs_from_file(cipherdir: &Path, newest: &NewestEpoch, key: &MasterKey) -> Option<(Epochs, VaultKeys)> {
    let path = cipherdir.join(EPOCHS_NAME);
    let bytes = match DirFd::open_path(cipherdir).and_then(|d| d.read_small(EPOCHS_NAME.as_bytes(), 64 * 1024)) {
        Ok(b) => b,
        Err(e) => {
            if e.raw_os_error() != Some(libc::ENOENT) {
                log::warn!("{}: {e}; older key epochs are not reachable", path.display());
            }
            return None;
        }
    };
    let opened = serde_json::from_slice::<EpochsFile>(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|f| f.checked().map_err(|e| e.to_string()))
        .and_then(|(vault, epochs)| {
            let top = epochs.newest();
            if vault != newest.vault || top.id != newest.id || top.seq != newest.seq {
                return Err("it is of another vault or another newest epoch than the recovery key".into());
            }
            let opened = open_epochs(vault, &epochs, key).map_err(|e| e.to_string())?;
            let keys = keys_of_opened(&opened.list).map_err(|e| e.to_string())?;
            Ok((epochs, keys))
        });
    match opened {
        Ok(v) => Some(v),
        Err(why) => {
            log::warn!("{}: {why}; older key epochs are not reachable", path.display());
            None
        }
    }
}

/// The ciphers of every epoch `cfg` can read, `newest` being the key its wrap (or a recovery
/// key) gave. A config-version-1 config has one epoch: the master key. The config's MAC must
/// have been checked under `newest` before.
pub fn keys_of(cfg: &Config, newest: &MasterKey) -> Result<VaultKeys> {
    let Some(OpenedEpochs { list, .. }) = epoch_keys(cfg, newest)? else {
        let reverse = cfg.params().has_flag(FLAG_REVERSE);
        return Ok(VaultKeys::single(KeySet::derive(newest, reverse)));
    };
    keys_of_opened(&list)
}

/// The ciphers a recovery key gives when the config is lost: its own epoch only (layout 2),
/// or the master key (layout 1). Objects under older epochs stay unreadable.
pub fn keys_without_config(key: &MasterKey, params: &VaultParams, newest: Option<NewestEpoch>) -> VaultKeys {
    match newest {
        Some(n) => VaultKeys::from_epochs(vec![EpochKeys {
            id: Some(n.id),
            layout: Layout::V3,
            set: KeySet::derive_v3(key),
        }])
        .unwrap_or_else(|| unreachable!("one epoch is not an empty list")),
        None => VaultKeys::single(KeySet::derive(key, params.has_flag(FLAG_REVERSE))),
    }
}

/// The newest epoch of a config-version-2 config, as a recovery key names it.
pub fn newest_of(cfg: &Config) -> Result<Option<NewestEpoch>> {
    let Some(epochs) = cfg.epochs().map_err(tampered)? else {
        return Ok(None);
    };
    let vault = cfg
        .vault_id()
        .ok_or_else(|| VaultError::ConfigTampered("config version 2 without a vault ID".into()))?;
    let n = epochs.newest();
    Ok(Some(NewestEpoch {
        vault,
        id: n.id,
        seq: n.seq,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::ContentKey;

    fn config_with(epochs: &Epochs, vault: VaultId) -> Config {
        let mut c = Config::new_v2(&VaultParams::default(), 8, 1, 1, &[1; 32], vault, epochs);
        c.set_wrapped_key(&[0; 64]);
        c.set_mac(&[0; 32]);
        c
    }

    #[test]
    fn older_keys_open_only_under_the_newest_key_and_their_own_fields() {
        let vault = VaultId([7; 8]);
        let old_key = MasterKey::from_bytes([1; 32]);
        let new_key = MasterKey::from_bytes([2; 32]);
        let old = Epoch {
            id: EpochId([1; 4]),
            seq: 0,
            layout: Layout::V1,
            sealed_key: None,
        };
        let newest_id = EpochId([2; 4]);
        let sealed = seal_older(&new_key, vault, newest_id, &old, &old_key).unwrap();
        let list = |sealed: [u8; SEALED_EPOCH_KEY_LEN], seq: u32| {
            Epochs::new(vec![
                Epoch {
                    sealed_key: Some(sealed),
                    seq,
                    ..old.clone()
                },
                Epoch {
                    id: newest_id,
                    seq: 1,
                    layout: Layout::V3,
                    sealed_key: None,
                },
            ])
            .unwrap()
        };
        let keys = keys_of(&config_with(&list(sealed, 0), vault), &new_key).unwrap();
        assert_eq!(keys.len(), 2);
        let v1 = keys.layout1().unwrap();
        assert_eq!(v1.id, Some(EpochId([1; 4])));
        // The layout-1 epoch has the old master key's shared content key.
        let want = KeySet::derive(&old_key, false);
        let nonce = [9u8; 16];
        let seal = |s: &KeySet| s.content.shared().unwrap().seal_with_nonce_to_vec(&nonce, b"", b"x");
        assert_eq!(seal(&v1.set), seal(&want));
        assert!(matches!(keys.newest().set.content, ContentKey::PerFile(_)));
        // Under another key, or with any authenticated field changed, the old key does not open.
        assert!(keys_of(&config_with(&list(sealed, 0), vault), &old_key).is_err());
        assert!(keys_of(&config_with(&list(sealed, 0), VaultId([8; 8])), &new_key).is_err());
        let mut flipped = sealed;
        flipped[20] ^= 1;
        assert!(keys_of(&config_with(&list(flipped, 0), vault), &new_key).is_err());
    }

    #[test]
    fn a_first_epoch_is_layout_3_and_random() {
        let (v1, e1, k1) = first_epoch().unwrap();
        let (v2, e2, k2) = first_epoch().unwrap();
        assert_ne!(v1, v2);
        assert_ne!(e1.newest().id, e2.newest().id);
        assert_ne!(k1.expose(), k2.expose());
        assert_eq!(e1.newest().layout, Layout::V3);
        assert_eq!(e1.newest().seq, 0);
    }
}
