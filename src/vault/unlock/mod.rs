//! Creating a vault, unlocking its master key (password or recovery key), changing the
//! password and adding a feature flag. The config is written atomically with mode 0600.
//! Recovery-key unlocking is in `with_recovery`, rewriting an unlocked vault's config in `rewrite`.

mod rewrite;
pub mod slots;
mod with_recovery;

pub use rewrite::{add_flag, change_password, write_epochs};
pub use with_recovery::{
    recovery_key, recovery_unlock, reset_config, unlock_with_recovery_key, write_new_config, RecoveryUnlock,
};

use std::path::{Path, PathBuf};

use crate::crypto::{self, KdfParams, Kek, MasterKey};
use crate::format::backing_name::{DIRIV_LEN, DIRIV_NAME, TEMP_PREFIX};
use crate::format::config::{Config, VaultParams, CONFIG_NAME};

use super::backing::DirFd;
use super::epochs;
use super::error::{IoContext, Result, VaultError};
use super::keys::VaultKeys;

/// Argon2id cost for a new config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KdfCost {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Passes.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl Default for KdfCost {
    fn default() -> Self {
        KdfCost {
            m_kib: KdfParams::DEFAULT_M_KIB,
            t: KdfParams::DEFAULT_T,
            p: KdfParams::DEFAULT_P,
        }
    }
}

impl KdfCost {
    /// The cheapest accepted cost (m = 8 KiB, t = 1): for tests only, never a default.
    pub const INSECURE_TEST: KdfCost = KdfCost { m_kib: 8, t: 1, p: 1 };

    /// The cost of a config's password KDF (config versions 1 and 2), else the default.
    pub fn of(cfg: &Config) -> KdfCost {
        cfg.kdf.as_ref().map_or_else(KdfCost::default, KdfCost::of_section)
    }

    /// The cost a KDF section names.
    pub fn of_section(k: &crate::format::config::KdfSection) -> KdfCost {
        KdfCost {
            m_kib: k.m_kib,
            t: k.t,
            p: k.p,
        }
    }
}

/// Where the config of a vault lives: `CIPHERDIR/coffer.conf` unless given.
pub fn config_path(cipherdir: &Path, explicit: Option<&Path>) -> PathBuf {
    explicit
        .map(Path::to_path_buf)
        .unwrap_or_else(|| cipherdir.join(CONFIG_NAME))
}

fn split_parent(path: &Path) -> Result<(DirFd, Vec<u8>)> {
    use std::os::unix::ffi::OsStrExt;
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| VaultError::errno_at(path, libc::EINVAL))?
        .as_bytes()
        .to_vec();
    Ok((DirFd::open_path(parent).at(parent)?, name))
}

/// Reads and parses a config file.
pub fn read_config(path: &Path) -> Result<Config> {
    let (dir, name) = split_parent(path)?;
    let text = dir.read_small(&name, 64 * 1024).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            VaultError::NotAVault(path.parent().unwrap_or(path).to_path_buf())
        } else {
            VaultError::io(path, e)
        }
    })?;
    Config::parse(&text).map_err(|source| VaultError::Config {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes a config atomically (temp, fsync, rename, fsync dir) with mode 0600.
pub fn write_config(path: &Path, cfg: &Config) -> Result<()> {
    let (dir, name) = split_parent(path)?;
    dir.write_atomic(&name, &cfg.to_json(), 0o600).at(path)
}

/// Seals `cfg` (to be written at `path`) under `password`.
fn seal_config(path: &Path, cfg: &mut Config, master: &MasterKey, password: &[u8]) -> Result<()> {
    let kdf = password_kdf(cfg).map_err(|e| match e {
        VaultError::ConfigTampered(why) => VaultError::Config {
            path: path.to_path_buf(),
            source: crate::format::FormatError::ConfigSyntax(why),
        },
        other => other,
    })?;
    let kek = crypto::derive_kek(password, &kdf)?;
    seal_with_kek(path, cfg, master, &kek)
}

/// The password KDF of a config version 1 or 2 (its one `kdf` section).
fn password_kdf(cfg: &Config) -> Result<KdfParams> {
    let section = cfg.kdf().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    slots::kdf_params(section)
}

/// Wraps `master` under `kek` with `cfg`'s canonical encoding as AAD and sets the config MAC
/// (`cfg` is to be written at `path`).
fn seal_with_kek(path: &Path, cfg: &mut Config, master: &MasterKey, kek: &Kek) -> Result<()> {
    let canonical = cfg.canonical().map_err(|source| VaultError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    let wrapped = kek.cipher().seal_to_vec(&canonical, master.expose())?;
    cfg.set_wrapped_key(&wrapped);
    cfg.set_mac(&crypto::config_mac(&epochs::mac_key(cfg, master), &canonical));
    Ok(())
}

fn new_config_v2(
    params: &VaultParams,
    cost: KdfCost,
    vault: crate::format::epochs::VaultId,
    list: &crate::format::epochs::Epochs,
) -> Result<Config> {
    let v1 = new_config(params, cost)?;
    let salt = v1.salt().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    Ok(Config::new_v2(params, cost.m_kib, cost.t, cost.p, &salt, vault, list))
}

fn new_config(params: &VaultParams, cost: KdfCost) -> Result<Config> {
    let salt: [u8; 32] = crypto::random_array()?;
    let cfg = Config::new(params, cost.m_kib, cost.t, cost.p, &salt);
    KdfParams {
        m_kib: cost.m_kib,
        t: cost.t,
        p: cost.p,
        salt: salt.to_vec(),
    }
    .check()?;
    Ok(cfg)
}

/// Creates a vault of config version 3 (one layout-3 key epoch, one password slot) in `cipherdir` (must exist and
/// be empty, or hold only what an interrupted `init` leaves): writes the root diriv and the
/// config. Returns the epoch's key (for the recovery key print-out).
pub fn init(
    cipherdir: &Path,
    config: Option<&Path>,
    password: &[u8],
    params: &VaultParams,
    cost: KdfCost,
) -> Result<MasterKey> {
    init_version(cipherdir, config, password, params, cost, crate::format::CONFIG_V3)
}

/// [`init`] of a vault of config version `version`: 1 (one master key), 2 (key epochs: the
/// returned key is the first epoch's) or 3 (key epochs and a password slot).
pub fn init_version(
    cipherdir: &Path,
    config: Option<&Path>,
    password: &[u8],
    params: &VaultParams,
    cost: KdfCost,
    version: u16,
) -> Result<MasterKey> {
    if version >= crate::format::CONFIG_V3 {
        return init_with_slots(
            cipherdir,
            config,
            params,
            &[(slots::NewSlot::Password { password, cost }, None)],
        );
    }
    let (dir, cfg_path) = prepare_init(cipherdir, config, params)?;
    let (master, mut cfg) = if version >= crate::format::CONFIG_V2 {
        let (vault, list, key) = epochs::first_epoch()?;
        (key, new_config_v2(params, cost, vault, &list)?)
    } else {
        (MasterKey::generate()?, new_config(params, cost)?)
    };
    seal_config(&cfg_path, &mut cfg, &master, password)?;
    write_root_diriv(&dir, cipherdir)?;
    write_config(&cfg_path, &cfg)?;
    Ok(master)
}

/// What every `init` checks and clears first: the parameters, no config yet at its path, and
/// nothing in CIPHERDIR but what an interrupted `init` leaves. The root's descriptor and the
/// config's path.
fn prepare_init(cipherdir: &Path, config: Option<&Path>, params: &VaultParams) -> Result<(DirFd, PathBuf)> {
    params.validate().map_err(|source| VaultError::Config {
        path: cipherdir.to_path_buf(),
        source,
    })?;
    let dir = DirFd::open_path(cipherdir).at(cipherdir)?;
    let cfg_path = config_path(cipherdir, config);
    if cfg_path.exists() {
        return Err(VaultError::errno_at(&cfg_path, libc::EEXIST));
    }
    clear_interrupted_init(&dir, cipherdir)?;
    Ok((dir, cfg_path))
}

/// The root's diriv, made durable before the config that makes CIPHERDIR a vault.
fn write_root_diriv(dir: &DirFd, cipherdir: &Path) -> Result<()> {
    let iv: [u8; DIRIV_LEN] = crypto::random_array()?;
    dir.write_new(DIRIV_NAME.as_bytes(), &iv, 0o444)
        .at(cipherdir.join(DIRIV_NAME))?;
    dir.fsync().at(cipherdir)
}

/// Creates a vault of config version 3 (one layout-3 key epoch) whose key slots are
/// `new_slots` (at least one; a vault made for recipients alone has no password slot): writes
/// the root diriv and the config. Returns the epoch's key (for the recovery key print-out).
pub fn init_with_slots(
    cipherdir: &Path,
    config: Option<&Path>,
    params: &VaultParams,
    new_slots: &[(slots::NewSlot, Option<String>)],
) -> Result<MasterKey> {
    let (dir, cfg_path) = prepare_init(cipherdir, config, params)?;
    let (vault, epochs, key) = epochs::first_epoch()?;
    let mut made = Vec::with_capacity(new_slots.len());
    for (new, label) in new_slots {
        let taken: Vec<_> = made.iter().map(|s: &crate::format::config::slots::Slot| s.id).collect();
        made.push(slots::make_slot(
            &key,
            vault,
            slots::fresh_id(&taken)?,
            new,
            label.clone(),
        )?);
    }
    let list = crate::format::config::slots::Slots {
        slots: made,
        removed: Vec::new(),
    };
    write_root_diriv(&dir, cipherdir)?;
    slots::write_v3(&cfg_path, params, vault, &epochs, &list, &[], &key)?;
    Ok(key)
}

/// Refuses a non-empty CIPHERDIR, except for what an `init` interrupted before its config
/// leaves (the root `coffer.diriv`, a config temp file): no entry is encrypted under that diriv
/// yet, so both are removed and `init` starts again (FORMAT.md G10).
fn clear_interrupted_init(dir: &DirFd, cipherdir: &Path) -> Result<()> {
    let entries = dir.list().at(cipherdir)?;
    let leftover = |name: &[u8]| name == DIRIV_NAME.as_bytes() || name.starts_with(TEMP_PREFIX.as_bytes());
    if !entries.iter().all(|e| leftover(&e.name)) {
        return Err(VaultError::errno_at(cipherdir, libc::ENOTEMPTY));
    }
    for e in &entries {
        // A directory (or anything unlink refuses) was not left by init: not empty after all.
        dir.unlink(&e.name)
            .map_err(|_| VaultError::errno_at(cipherdir, libc::ENOTEMPTY))?;
    }
    if !entries.is_empty() {
        log::warn!(
            "{}: removed what an interrupted init left ({} entries)",
            cipherdir.display(),
            entries.len()
        );
    }
    Ok(())
}

fn check_mac(cfg: &Config, master: &MasterKey) -> Result<()> {
    let canonical = cfg.canonical().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let mac = cfg.mac().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    crypto::verify_config_mac(&epochs::mac_key(cfg, master), &canonical, &mac)
        .map_err(|_| VaultError::ConfigTampered("config MAC does not match the master key".into()))
}

/// Unwraps the master key (config version 3: the newest epoch's key, through a password
/// slot) with the password and checks the config MAC.
pub fn unlock_with_password(cfg: &Config, password: &[u8]) -> Result<MasterKey> {
    slots::unlock_any(cfg, &slots::Credential::Password(password)).map(|(master, _)| master)
}

/// [`unlock_with_password`], also returning the key-encryption key the password derives for
/// this config: with it a mount re-wraps the master key when it adds a feature flag
/// ([`add_flag`]) without keeping the password.
pub fn unlock_with_password_kek(cfg: &Config, password: &[u8]) -> Result<(MasterKey, Kek)> {
    let kek = crypto::derive_kek(password, &password_kdf(cfg)?)?;
    let canonical = cfg.canonical().map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let wrapped = cfg
        .wrapped_key()
        .map_err(|e| VaultError::ConfigTampered(e.to_string()))?;
    let raw = zeroize::Zeroizing::new(
        kek.cipher()
            .open_from_slice(&canonical, &wrapped)
            .map_err(|_| VaultError::WrongPassword)?,
    );
    let master = MasterKey::from_slice(&raw)
        .ok_or_else(|| VaultError::ConfigTampered("wrapped key has the wrong length".into()))?;
    check_mac(cfg, &master)?;
    Ok((master, kek))
}

/// The ciphers of every epoch of `cfg`, whose wrap gave `newest` (see [`unlock_with_password`]).
pub fn vault_keys(cfg: &Config, newest: &MasterKey) -> Result<VaultKeys> {
    epochs::keys_of(cfg, newest)
}

/// A config like `old` (parameters and, in config version 2, vault ID and epochs) with a new
/// salt and KDF cost, wrap and MAC still to be set.
fn renewed(old: &Config, cost: KdfCost) -> Result<Config> {
    match (
        old.vault_id(),
        old.epochs().map_err(|e| VaultError::ConfigTampered(e.to_string()))?,
    ) {
        (Some(vault), Some(list)) => new_config_v2(&old.params(), cost, vault, &list),
        _ => new_config(&old.params(), cost),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::recovery;

    #[test]
    fn init_unlock_passwd() {
        let tmp = tempfile::tempdir().unwrap();
        let m = init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let path = config_path(tmp.path(), None);
        let cfg = read_config(&path).unwrap();
        assert_eq!(unlock_with_password(&cfg, b"pw").unwrap().expose(), m.expose());
        assert!(matches!(
            unlock_with_password(&cfg, b"nope"),
            Err(VaultError::WrongPassword)
        ));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        change_password(&path, b"pw", b"new", None).unwrap();
        let cfg = read_config(&path).unwrap();
        assert!(matches!(
            unlock_with_password(&cfg, b"pw"),
            Err(VaultError::WrongPassword)
        ));
        assert_eq!(unlock_with_password(&cfg, b"new").unwrap().expose(), m.expose());
        // second init refused
        assert!(init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).is_err());
    }

    /// Config version 2: one layout-3 epoch; a password change keeps the vault ID and the
    /// epochs; the layout-2 recovery key opens it with and without the config and names its
    /// epoch; a layout-1 key or one of another epoch is refused against the config.
    #[test]
    fn version_2_init_unlock_passwd_and_recovery() {
        use crate::crypto::ContentKey;
        use crate::format::epochs::Layout;
        let tmp = tempfile::tempdir().unwrap();
        let p = VaultParams::default();
        let key = init_version(
            tmp.path(),
            None,
            b"pw",
            &p,
            KdfCost::INSECURE_TEST,
            crate::format::CONFIG_V2,
        )
        .unwrap();
        let path = config_path(tmp.path(), None);
        let cfg = read_config(&path).unwrap();
        assert_eq!(cfg.format_version, crate::format::CONFIG_V2);
        let (got, _) = unlock_with_password_kek(&cfg, b"pw").unwrap();
        assert_eq!(got.expose(), key.expose());
        let keys = vault_keys(&cfg, &got).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys.newest().layout, Layout::V3);
        assert!(matches!(keys.newest().set.content, ContentKey::PerFile(_)));
        assert_eq!(keys.newest().id, cfg.epochs().unwrap().map(|e| e.newest().id));
        assert!(matches!(
            unlock_with_password(&cfg, b"nope"),
            Err(VaultError::WrongPassword)
        ));

        change_password(&path, b"pw", b"new", None).unwrap();
        let after = read_config(&path).unwrap();
        assert_eq!(after.vault_id, cfg.vault_id);
        assert_eq!(after.epochs, cfg.epochs);
        assert_ne!(after.kdf.as_ref().unwrap().salt, cfg.kdf.as_ref().unwrap().salt);
        assert_eq!(unlock_with_password(&after, b"new").unwrap().expose(), key.expose());

        let text = recovery_key(&after, &key).unwrap();
        let with = recovery_unlock(&text, Some(&after), None).unwrap();
        assert_eq!(with.master.expose(), key.expose());
        assert_eq!(with.newest, epochs::newest_of(&after).unwrap());
        let without = recovery_unlock(&text, None, None).unwrap();
        assert_eq!(without.keys.newest().id, keys.newest().id);
        assert_eq!(without.params, after.params());
        // A layout-1 key of the same bytes does not fit a version-2 config.
        let v1 = recovery::encode(key.expose(), &after.params());
        assert!(matches!(
            recovery_unlock(&v1, Some(&after), None),
            Err(VaultError::ConfigTampered(_))
        ));
        // A layout-2 key naming another epoch is refused too.
        let mut other = epochs::newest_of(&after).unwrap().unwrap();
        other.seq += 1;
        let wrong = recovery::encode_v2(key.expose(), &after.params(), other);
        assert!(matches!(
            recovery_unlock(&wrong, Some(&after), None),
            Err(VaultError::ConfigTampered(_))
        ));

        // A new password from the recovery key, with the config lost: still version 2, same IDs.
        std::fs::remove_file(&path).unwrap();
        reset_config(&path, &without, None, b"third", KdfCost::INSECURE_TEST).unwrap();
        let reset = read_config(&path).unwrap();
        assert_eq!(reset.vault_id, cfg.vault_id);
        assert_eq!(reset.epochs().unwrap().unwrap().newest().id, keys.newest().id.unwrap());
        assert_eq!(unlock_with_password(&reset, b"third").unwrap().expose(), key.expose());
    }

    /// A vault made before `xattr_packs` gains the flag: only the flag list, the wrap and the
    /// MAC change; the password and the master key still open it; a second add writes nothing.
    #[test]
    fn add_flag_keeps_every_other_field() {
        use crate::format::config::{FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS};
        let tmp = tempfile::tempdir().unwrap();
        let old = VaultParams {
            feature_flags: vec![FLAG_BLOCK_SESSIONS.into()],
            ..VaultParams::default()
        };
        // A config-version-2 vault with password "pw" and `old`'s flags in `dir`.
        let init_v2 = |dir: &std::path::Path| {
            init_version(dir, None, b"pw", &old, KdfCost::INSECURE_TEST, crate::format::CONFIG_V2).unwrap()
        };
        let m = init_v2(tmp.path());
        let path = config_path(tmp.path(), None);
        let before = read_config(&path).unwrap();
        let (master, kek) = unlock_with_password_kek(&before, b"pw").unwrap();
        let kek = slots::Access::Kek(kek);
        assert!(add_flag(&path, &master, &kek, FLAG_XATTR_PACKS).unwrap());
        let after = read_config(&path).unwrap();
        assert_eq!(after.feature_flags, [FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS]);
        assert_ne!(after.wrapped_master_key, before.wrapped_master_key);
        assert_ne!(after.config_mac, before.config_mac);
        let same = Config {
            feature_flags: before.feature_flags.clone(),
            wrapped_master_key: before.wrapped_master_key.clone(),
            config_mac: before.config_mac.clone(),
            ..after.clone()
        };
        assert_eq!(
            same, before,
            "a field other than the flags, the wrap and the MAC changed"
        );
        assert_eq!(unlock_with_password(&after, b"pw").unwrap().expose(), m.expose());
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);

        let bytes = std::fs::read(&path).unwrap();
        assert!(!add_flag(&path, &master, &kek, FLAG_XATTR_PACKS).unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            bytes,
            "nothing written for a flag already set"
        );
        assert!(add_flag(&path, &master, &kek, "time-travel").is_err());

        // The password changed since the mount unlocked: its KEK no longer opens the wrap, and
        // the config is left alone.
        let tmp2 = tempfile::tempdir().unwrap();
        init_v2(tmp2.path());
        let path2 = config_path(tmp2.path(), None);
        let (master2, kek2) = unlock_with_password_kek(&read_config(&path2).unwrap(), b"pw").unwrap();
        let kek2 = slots::Access::Kek(kek2);
        change_password(&path2, b"pw", b"new", None).unwrap();
        let bytes2 = std::fs::read(&path2).unwrap();
        assert!(add_flag(&path2, &master2, &kek2, FLAG_XATTR_PACKS).is_err());
        assert_eq!(std::fs::read(&path2).unwrap(), bytes2);
        // Another vault's master key: refused too.
        assert!(add_flag(&path2, &master, &kek, FLAG_XATTR_PACKS).is_err());

        // Version 3: the slots wrap the key whatever the flags: only the flags and the MAC
        // change, and the password still opens it.
        let tmp3 = tempfile::tempdir().unwrap();
        let m3 = init(tmp3.path(), None, b"pw", &old, KdfCost::INSECURE_TEST).unwrap();
        let path3 = config_path(tmp3.path(), None);
        let before = read_config(&path3).unwrap();
        let (master3, access) = slots::unlock_any(&before, &slots::Credential::Password(b"pw")).unwrap();
        assert!(add_flag(&path3, &master3, &access, FLAG_XATTR_PACKS).unwrap());
        let after = read_config(&path3).unwrap();
        assert_eq!(after.feature_flags, [FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS]);
        let same = Config {
            feature_flags: before.feature_flags.clone(),
            config_mac: before.config_mac.clone(),
            ..after.clone()
        };
        assert_eq!(same, before);
        assert_eq!(unlock_with_password(&after, b"pw").unwrap().expose(), m3.expose());
    }

    /// FORMAT.md G10: an init interrupted after the root diriv (and maybe a config temp file)
    /// can be run again; anything else in CIPHERDIR still makes it refuse.
    #[test]
    fn init_again_after_an_interrupted_init() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join(DIRIV_NAME), [7u8; DIRIV_LEN]).unwrap();
        std::fs::write(tmp.path().join(".coffer-tmp-0123456789abcdef"), b"{").unwrap();
        let m = init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let cfg = read_config(&config_path(tmp.path(), None)).unwrap();
        assert_eq!(unlock_with_password(&cfg, b"pw").unwrap().expose(), m.expose());
        assert_ne!(std::fs::read(tmp.path().join(DIRIV_NAME)).unwrap(), [7u8; DIRIV_LEN]);
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "{names:?}");

        let other = tempfile::tempdir().unwrap();
        std::fs::write(other.path().join(DIRIV_NAME), [7u8; DIRIV_LEN]).unwrap();
        std::fs::write(other.path().join("notes.txt"), b"mine").unwrap();
        let err = init(
            other.path(),
            None,
            b"pw",
            &VaultParams::default(),
            KdfCost::INSECURE_TEST,
        )
        .unwrap_err();
        assert_eq!(err.errno(), libc::ENOTEMPTY);
        assert!(other.path().join(DIRIV_NAME).exists(), "nothing removed when refusing");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join(".coffer-tmp-0123456789abcdef")).unwrap();
        assert!(init(dir.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).is_err());
    }
}
