//! `coffer init --reverse`: a new config with the `reverse` flag, kept as a hidden file in
//! PLAINDIR (or wherever `--config` says). PLAINDIR itself is not touched otherwise.

use std::path::{Path, PathBuf};

use crate::crypto::MasterKey;
use crate::format::config::{VaultParams, FLAG_REVERSE};

use super::super::error::{Result, VaultError};
use super::super::unlock::{self, KdfCost};

/// File name of the reverse config inside PLAINDIR (hidden from the view; the view shows it
/// as `coffer.conf`).
pub const REVERSE_CONFIG_NAME: &str = ".coffer.reverse.conf";

/// `PLAINDIR/.coffer.reverse.conf`.
pub fn default_config_path(plaindir: &Path) -> PathBuf {
    plaindir.join(REVERSE_CONFIG_NAME)
}

/// Writes a new reverse config for `plaindir` (at `config` or the default path) and returns
/// the master key (for the recovery key). `params` gets the `reverse` flag added.
pub fn init(
    plaindir: &Path,
    config: Option<&Path>,
    password: &[u8],
    params: &VaultParams,
    cost: KdfCost,
) -> Result<MasterKey> {
    if !std::fs::metadata(plaindir)
        .map_err(|e| VaultError::io(plaindir, e))?
        .is_dir()
    {
        return Err(VaultError::errno_at(plaindir, libc::ENOTDIR));
    }
    let path = config.map_or_else(|| default_config_path(plaindir), Path::to_path_buf);
    if path.symlink_metadata().is_ok() {
        return Err(VaultError::errno_at(&path, libc::EEXIST));
    }
    let mut params = params.clone();
    if !params.has_flag(FLAG_REVERSE) {
        params.feature_flags.push(FLAG_REVERSE.into());
        params.feature_flags.sort();
    }
    params.validate().map_err(|source| VaultError::Config {
        path: path.clone(),
        source,
    })?;
    let master = MasterKey::generate()?;
    unlock::write_new_config(&path, &master, &params, password, cost)?;
    Ok(master)
}

/// `coffer rekey` of a reverse config: a new master key, wrapped under the same password with
/// a fresh salt at the config's KDF cost, written atomically over the config at `path`;
/// returns the new key (for the recovery key). Reverse mode is deterministic, so every file of
/// the view changes with the key; copies made before keep the old key in their `coffer.conf`.
pub fn rekey(path: &Path, password: &[u8]) -> Result<MasterKey> {
    let (cfg, _) = super::read_reverse_config(path)?;
    // Checks the password and the config MAC before anything is replaced.
    unlock::unlock_with_password(&cfg, password)?;
    let cost = KdfCost::of(&cfg);
    let master = MasterKey::generate()?;
    unlock::write_new_config(path, &master, &cfg.params(), password, cost)?;
    Ok(master)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::reverse::read_reverse_config;

    #[test]
    fn writes_flagged_config_once() {
        let tmp = tempfile::tempdir().unwrap();
        let m = init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let (cfg, _) = read_reverse_config(&default_config_path(tmp.path())).unwrap();
        assert!(cfg.params().has_flag(FLAG_REVERSE));
        // Reverse mode stays on config version 1, whatever a forward `init` writes.
        assert_eq!(cfg.format_version, crate::format::CONFIG_V1);
        assert_eq!(unlock::unlock_with_password(&cfg, b"pw").unwrap().expose(), m.expose());
        assert!(init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).is_err());
        // A forward config is refused by reverse mode.
        let fwd = tempfile::tempdir().unwrap();
        unlock::init(fwd.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        assert!(read_reverse_config(&fwd.path().join("coffer.conf")).is_err());
    }

    #[test]
    fn rekey_replaces_the_key_and_keeps_password_flags_and_version() {
        let tmp = tempfile::tempdir().unwrap();
        let path = default_config_path(tmp.path());
        let old = init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let (before, _) = read_reverse_config(&path).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert!(rekey(&path, b"wrong").is_err());
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let new = rekey(&path, b"pw").unwrap();
        assert_ne!(new.expose(), old.expose());
        let (cfg, _) = read_reverse_config(&path).unwrap();
        assert_eq!(cfg.format_version, crate::format::CONFIG_V1);
        assert!(cfg.params().has_flag(FLAG_REVERSE));
        assert_eq!(
            (
                cfg.kdf.as_ref().unwrap().m_kib,
                cfg.kdf.as_ref().unwrap().t,
                cfg.kdf.as_ref().unwrap().p
            ),
            (
                before.kdf.as_ref().unwrap().m_kib,
                before.kdf.as_ref().unwrap().t,
                before.kdf.as_ref().unwrap().p
            )
        );
        assert_ne!(cfg.kdf.as_ref().unwrap().salt, before.kdf.as_ref().unwrap().salt);
        assert_eq!(
            unlock::unlock_with_password(&cfg, b"pw").unwrap().expose(),
            new.expose()
        );
        // A forward vault's config is not a reverse config.
        let fwd = tempfile::tempdir().unwrap();
        unlock::init(fwd.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        assert!(rekey(&fwd.path().join("coffer.conf"), b"pw").is_err());
    }
}
