//! Reverse mode: a deterministic, read-only encrypted view of a plain directory, in the coffer
//! format, usable without FUSE (docs/FORMAT.md, "Reverse mode").
//!
//! The view of PLAINDIR is an ordinary coffer vault: `coffer.conf` (the reverse config, flag
//! `reverse`) at the root, a virtual `coffer.diriv` in every directory, encrypted names (long
//! ones as `HASH.long` with a virtual `HASH.name`), encrypted symlink targets (long ones in a
//! virtual `ENTRY.link`), and file contents sealed block by block exactly like forward mode.
//! Everything is deterministic: file IDs and directory IVs come from a keyed PRF over the
//! relative path, every nonce from a keyed PRF over the plaintext it seals (see [`prf`]).
//!
//! Files: [`prf`] (the PRFs), [`exclude`] (`--exclude`), `init` (new reverse config),
//! `listing` (cipher names, directory listings, lookups), `content` (sealing file contents on
//! demand), `frozen` (reflink copies taken at open), `symlink` (sealed targets).

mod content;
pub mod exclude;
mod frozen;
mod init;
mod listing;
pub mod prf;
mod symlink;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::crypto::{KeySet, MasterKey};
use crate::format::config::{Config, VaultParams, FLAG_REVERSE};
use crate::format::FormatError;

use super::backing::DirFd;
use super::error::{IoContext, Result, VaultError};
use super::keys::VaultKeys;
use super::unlock;

pub use content::{ReverseFile, Snapshot};
pub use exclude::Excludes;
pub use init::{default_config_path, init, rekey, REVERSE_CONFIG_NAME};
pub use listing::{CipherEntry, RDir, Target};
pub use prf::Prf;
pub use symlink::CipherLink;

/// An unlocked reverse view of PLAINDIR.
#[derive(Debug)]
pub struct ReverseVault {
    plaindir: PathBuf,
    root: DirFd,
    keys: Arc<VaultKeys>,
    prf: Arc<Prf>,
    params: VaultParams,
    config_bytes: Arc<Vec<u8>>,
    /// mtime of the config file, given to the virtual files whose content never changes.
    config_time: (i64, i64),
    /// Relative path of the config file when it lies inside PLAINDIR (never shown).
    hidden: Option<Vec<u8>>,
    excludes: Excludes,
    /// Which filesystems make reflink copies (files are frozen at open there).
    reflinks: frozen::Reflinks,
}

/// Reads the raw bytes of a reverse config and parses them; refuses a config without `reverse`.
pub fn read_reverse_config(path: &Path) -> Result<(Config, Vec<u8>)> {
    let bytes = std::fs::read(path).map_err(|e| {
        if e.raw_os_error() == Some(libc::ENOENT) {
            VaultError::NotAVault(path.parent().unwrap_or(path).to_path_buf())
        } else {
            VaultError::io(path, e)
        }
    })?;
    let cfg = Config::parse(&bytes).map_err(|source| VaultError::Config {
        path: path.to_path_buf(),
        source,
    })?;
    if !cfg.params().has_flag(FLAG_REVERSE) {
        return Err(VaultError::Config {
            path: path.to_path_buf(),
            source: FormatError::BadValue {
                field: "feature_flags",
                why: "not a reverse-mode config (no `reverse` flag); create one with `coffer init --reverse`".into(),
            },
        });
    }
    Ok((cfg, bytes))
}

impl ReverseVault {
    /// Unlocks the reverse view of `plaindir` with a password; the config is `config` or
    /// `PLAINDIR/.coffer.reverse.conf`.
    pub fn unlock(plaindir: &Path, config: Option<&Path>, password: &[u8], excludes: Excludes) -> Result<Self> {
        let path = config.map_or_else(|| default_config_path(plaindir), Path::to_path_buf);
        let (cfg, bytes) = read_reverse_config(&path)?;
        let master = unlock::unlock_with_password(&cfg, password)?;
        Self::open(plaindir, &master, &cfg, bytes, &path, excludes)
    }

    /// Opens the view with an unlocked master key. `config_bytes` is shown as `coffer.conf`.
    pub fn open(
        plaindir: &Path,
        master: &MasterKey,
        cfg: &Config,
        config_bytes: Vec<u8>,
        config_path: &Path,
        excludes: Excludes,
    ) -> Result<Self> {
        let params = cfg.params();
        if !params.has_flag(FLAG_REVERSE) {
            return Err(VaultError::Unsupported(
                "reverse mode needs a config with the `reverse` flag",
            ));
        }
        let root = DirFd::open_path(plaindir).at(plaindir)?;
        let config_time = match std::fs::metadata(config_path) {
            Ok(m) => {
                use std::os::unix::fs::MetadataExt;
                (m.mtime(), m.mtime_nsec())
            }
            Err(_) => (0, 0),
        };
        Ok(ReverseVault {
            plaindir: plaindir.to_path_buf(),
            root,
            keys: Arc::new(VaultKeys::single(KeySet::derive(master, true))),
            prf: Arc::new(Prf::new(master)),
            params,
            config_bytes: Arc::new(config_bytes),
            config_time,
            hidden: hidden_rel(plaindir, config_path),
            excludes,
            reflinks: frozen::Reflinks::default(),
        })
    }

    /// PLAINDIR.
    pub fn plaindir(&self) -> &Path {
        &self.plaindir
    }

    /// The reverse key set.
    pub fn keys(&self) -> &KeySet {
        &self.keys.newest().set
    }

    /// The reverse key set as the forward reader takes it (one layout-1 epoch).
    pub fn vault_keys(&self) -> &Arc<VaultKeys> {
        &self.keys
    }

    /// The PRFs.
    pub fn prf(&self) -> &Arc<Prf> {
        &self.prf
    }

    /// Format parameters (flags, long-name limit, name encoding).
    pub fn params(&self) -> &VaultParams {
        &self.params
    }

    /// The bytes shown as `coffer.conf`.
    pub fn config_bytes(&self) -> &Arc<Vec<u8>> {
        &self.config_bytes
    }

    /// The root of PLAINDIR.
    pub fn root_fd(&self) -> &DirFd {
        &self.root
    }

    /// Whether the plain object at relative path `rel` is left out of the view.
    pub fn is_hidden(&self, rel: &[u8]) -> bool {
        self.hidden.as_deref() == Some(rel) || self.excludes.is_excluded(rel)
    }
}

/// `a` + `/` + `b` (or `b` when `a` is the root).
pub fn join_rel(a: &[u8], b: &[u8]) -> Vec<u8> {
    if a.is_empty() {
        return b.to_vec();
    }
    let mut v = Vec::with_capacity(a.len() + 1 + b.len());
    v.extend_from_slice(a);
    v.push(b'/');
    v.extend_from_slice(b);
    v
}

/// A relative plaintext path as a `PathBuf`, for messages.
pub fn rel_path(rel: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(rel))
}

/// The config's path relative to PLAINDIR when it lies inside it.
fn hidden_rel(plaindir: &Path, config: &Path) -> Option<Vec<u8>> {
    let dir = plaindir.canonicalize().ok()?;
    let parent = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let parent = parent.canonicalize().ok()?;
    let name = config.file_name()?;
    let sub = parent.strip_prefix(&dir).ok()?;
    Some(sub.join(name).as_os_str().as_bytes().to_vec())
}
