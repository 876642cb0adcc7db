//! Vaults opened with chosen key epochs (a layout-1 one, as a config-version-1 vault has, and
//! layout-3 ones), for the tests of names, files and rekey under several epochs.

use std::path::Path;

use coffer::crypto::{KeySet, MasterKey};
use coffer::format::config::VaultParams;
use coffer::format::epochs::{EpochId, Layout};
use coffer::vault::{EpochKeys, Vault, VaultKeys};

/// A layout-1 epoch `id` with key `key`.
pub fn layout1(key: [u8; 32], id: EpochId) -> EpochKeys {
    EpochKeys {
        id: Some(id),
        layout: Layout::V1,
        set: KeySet::derive(&MasterKey::from_bytes(key), false),
    }
}

/// A layout-3 epoch `id` with key `key`.
pub fn layout3(key: [u8; 32], id: EpochId) -> EpochKeys {
    EpochKeys {
        id: Some(id),
        layout: Layout::V3,
        set: KeySet::derive_v3(&MasterKey::from_bytes(key)),
    }
}

/// The vault at `dir` (made by `unlock::init`) opened writable with `epochs`, oldest first.
pub fn open_with(dir: &Path, epochs: Vec<EpochKeys>) -> Vault {
    Vault::open_with_keys(
        dir,
        VaultKeys::from_epochs(epochs).unwrap(),
        VaultParams::default(),
        false,
    )
    .unwrap()
}
