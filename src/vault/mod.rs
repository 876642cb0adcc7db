//! Layer 3: the backing directory. Encrypted files, directories with their IVs, names (short
//! and long), symlinks and xattrs — everything the mount, the offline tools and fsck need,
//! without FUSE.

pub mod backing;
mod codec;
mod content;
mod damage;
mod dir;
mod entries;
pub mod epoch_census;
pub mod epoch_watch;
pub mod epochs;
mod error;
pub mod flags;
pub mod fsck;
pub mod keys;
mod link_copies;
pub mod live;
mod merge;
pub mod migrate;
pub mod rekey;
mod rekey_merge;
pub mod reverse;
mod symlink;
pub mod unlock;
pub mod walk;
mod xattr;

use arc_swap::ArcSwap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::format::backing_name::BackingName;
pub use backing::{DirFd, NoAtime, RawEntry, TimeSpec};
pub use codec::BlockFault;
pub use content::{
    plain_size_for, BlockCheck, ChangeStamp, CryptFile, FileStorage, Notice, Storage, StorageStat, SESSION_MAX_AGE,
};
pub use dir::{cipher_name_for, CipherName, Dir, Entry, Touched};
pub use error::{Damage, IoContext, Result, VaultError};
pub use keys::{EpochKeys, VaultKeys};
pub use merge::DirivMerge;
pub use unlock::KdfCost;

/// Classifies a backing name (bytes) of a vault whose names use `enc`: coffer's own files,
/// short and long names, sidecars, temporaries, or anything else. Tools outside this layer
/// ask here rather than parse backing names themselves.
pub fn classify_backing(name: &[u8], enc: NameEncoding) -> BackingName<'_> {
    crate::format::backing_name::classify(name, enc)
}

use crate::crypto::{KeySet, MasterKey};
use crate::format::config::{VaultParams, FLAG_BLOCK_SESSIONS, FLAG_REVERSE};
use crate::format::epochs::Layout;
use crate::format::header::{FILE_V1, FILE_V2, FILE_V3};
use crate::format::names::NameEncoding;

/// An unlocked vault.
#[derive(Debug)]
pub struct Vault {
    cipherdir: PathBuf,
    root: DirFd,
    /// Swapped whole when a rekey of a running mount adopts a new epoch ([`Vault::adopt_keys`]);
    /// every reader takes the set current at its start and keeps it to its end.
    keys: Arc<ArcSwap<VaultKeys>>,
    params: VaultParams,
    flags: flags::LiveFlags,
    read_only: bool,
    touch_atime: Touch,
}

/// Which reads through a mount set the backing access time themselves (`strictatime`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Touch {
    /// Reads of regular files.
    pub files: bool,
    /// Directory listings.
    pub dirs: bool,
}

/// The newest epoch's ciphers of one moment, kept alive by the caller.
pub struct NewestKeys(Arc<VaultKeys>);

impl std::ops::Deref for NewestKeys {
    type Target = KeySet;

    fn deref(&self) -> &KeySet {
        &self.0.newest().set
    }
}

impl Vault {
    /// Opens CIPHERDIR with an unlocked master key and the vault's parameters.
    pub fn open(cipherdir: &Path, master: &MasterKey, params: VaultParams, read_only: bool) -> Result<Vault> {
        let keys = VaultKeys::single(KeySet::derive(master, params.has_flag(FLAG_REVERSE)));
        Vault::open_with_keys(cipherdir, keys, params, read_only)
    }

    /// Opens CIPHERDIR with the keys of every epoch the vault can read.
    pub fn open_with_keys(cipherdir: &Path, keys: VaultKeys, params: VaultParams, read_only: bool) -> Result<Vault> {
        let root = DirFd::open_path(cipherdir).at(cipherdir)?;
        let keys = Arc::new(ArcSwap::from_pointee(keys));
        Ok(Vault {
            cipherdir: cipherdir.to_path_buf(),
            root,
            keys,
            flags: flags::LiveFlags::new(&params),
            params,
            read_only,
            touch_atime: Touch::default(),
        })
    }

    /// Unlocks with a password from the config at `config` (default `CIPHERDIR/coffer.conf`).
    pub fn unlock(cipherdir: &Path, config: Option<&Path>, password: &[u8], read_only: bool) -> Result<Vault> {
        let path = unlock::config_path(cipherdir, config);
        if config.is_none() && !cipherdir.is_dir() {
            return Err(VaultError::io(
                cipherdir,
                std::io::Error::from_raw_os_error(libc::ENOENT),
            ));
        }
        let cfg = unlock::read_config(&path)?;
        let (master, access) = unlock::slots::unlock_any(&cfg, &unlock::slots::Credential::Password(password))?;
        let keys = unlock::vault_keys(&cfg, &master)?;
        let mut v = Vault::open_with_keys(cipherdir, keys, cfg.params(), read_only)?;
        v.allow_config_updates(flags::ConfigWriter::new(path, master, access));
        Ok(v)
    }

    /// Lets the vault add feature flags to its config when a write needs one (a vault unlocked
    /// with the password; ignored when read-only). Without it, writes that would need a new
    /// flag take the older layout.
    pub fn allow_config_updates(&mut self, writer: flags::ConfigWriter) {
        if !self.read_only {
            self.flags.set_writer(writer);
        }
    }

    /// Whether the config has `xattr_packs` now (set at unlock, or added by a write since).
    pub fn has_xattr_packs(&self) -> bool {
        self.flags.has_xattr_packs()
    }

    /// CIPHERDIR.
    pub fn cipherdir(&self) -> &Path {
        &self.cipherdir
    }

    /// The backing root directory fd.
    pub fn root_fd(&self) -> &DirFd {
        &self.root
    }

    /// The ciphers of the newest epoch: everything written now is sealed with them.
    pub fn keys(&self) -> NewestKeys {
        NewestKeys(self.keys.load_full())
    }

    /// Reads and writes with `keys` from now on: the keys of a config a rekey wrote while this
    /// vault is mounted. Refused unless `keys` holds every epoch the vault has now (with the
    /// same keys), so no object readable before becomes unreadable. Handles opened before keep
    /// the keys they were opened with; objects are written under the new newest epoch.
    pub fn adopt_keys(&self, keys: VaultKeys) -> Result<()> {
        if !self.keys.load().covered_by(&keys) {
            return Err(VaultError::ConfigTampered(
                "the new config does not hold every key epoch this vault reads now".into(),
            ));
        }
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Reads and writes with `keys` from now on, dropping the epochs it lacks: the keys of the
    /// config `rekey --finish` wrote while this vault is mounted. Refused unless the newest
    /// epoch stays the same.
    pub fn forget_older_keys(&self, keys: VaultKeys) -> Result<()> {
        if !self.keys.load().same_newest(&keys) {
            return Err(VaultError::ConfigTampered(
                "the new config's newest key epoch is not the one this vault writes with".into(),
            ));
        }
        self.keys.store(Arc::new(keys));
        Ok(())
    }

    /// Where the vault's keys are kept: whoever holds it sees the keys a rekey adopts later
    /// (the mount's watch of its config compares epoch IDs with them).
    pub fn keys_cell(&self) -> Arc<ArcSwap<VaultKeys>> {
        self.keys.clone()
    }

    /// The ciphers of every epoch the vault can read (the set current now: a rekey of a
    /// running mount may adopt a newer one meanwhile).
    pub fn vault_keys(&self) -> Arc<VaultKeys> {
        self.keys.load_full()
    }

    /// Format parameters (flags, long-name limit) as unlocked; a flag added since shows in
    /// [`has_xattr_packs`](Self::has_xattr_packs).
    pub fn params(&self) -> &VaultParams {
        &self.params
    }

    /// Whether writes are refused.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// How reads treat the backing access times: which opens pass O_NOATIME, and which reads
    /// set the access time themselves (see [`Vault::touch_atime`]; never when read-only).
    pub fn set_atime(&mut self, noatime: NoAtime, touch: Touch) {
        self.root.set_noatime(noatime);
        self.touch_atime = if self.read_only { Touch::default() } else { touch };
    }

    /// Which reads through a mount set the backing access time (`strictatime`).
    pub fn touch_atime(&self) -> Touch {
        self.touch_atime
    }

    fn check_writable(&self) -> Result<()> {
        if self.read_only {
            Err(VaultError::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The root directory (opened fresh, its diriv read).
    pub fn root_dir(&self) -> Result<Dir> {
        Dir::open_root(self)
    }

    /// Walks a plaintext path (`a/b/c`, relative to the vault root) to its directory.
    pub fn open_dir_path(&self, plain_path: &[u8]) -> Result<Dir> {
        let mut dir = self.root_dir()?;
        for comp in plain_path.split(|&c| c == b'/').filter(|c| !c.is_empty() && *c != b".") {
            let name = self.resolve(&dir, comp)?;
            dir = dir.open_child(self, &name.entry)?;
        }
        Ok(dir)
    }

    /// Opens the encrypted file at a plaintext path for reading (offline tools).
    pub fn open_file_path(&self, plain_path: &[u8]) -> Result<CryptFile> {
        let (parent, name) = match plain_path.iter().rposition(|&c| c == b'/') {
            Some(i) => (&plain_path[..i], &plain_path[i + 1..]),
            None => (&b""[..], plain_path),
        };
        let dir = self.open_dir_path(parent)?;
        let cname = self.resolve(&dir, name)?;
        self.open_file(&dir, &cname.entry, false)
    }

    /// Opens a backing file of `dir` as an encrypted file (read-write unless `write` is false).
    pub fn open_file(&self, dir: &Dir, backing_name: &[u8], write: bool) -> Result<CryptFile> {
        let rel = dir.rel_child(backing_name);
        let write = write && !self.read_only;
        let f = match dir.fd.open_file(backing_name, write, None) {
            Err(e) if write && e.raw_os_error() == Some(libc::EACCES) => {
                open_write_only_file(dir, backing_name).unwrap_or(Err(e)).at(&rel)?
            }
            r => r.at(&rel)?,
        };
        Ok(self.crypt_file(f, rel))
    }

    /// Wraps an open backing file; files that get their header through it are version 3 when
    /// the newest epoch has layout 3, else version 2 in vaults with the `block_sessions` flag,
    /// else version 1.
    pub(crate) fn crypt_file(&self, f: std::fs::File, rel: PathBuf) -> CryptFile {
        let keys = self.vault_keys();
        let version = if keys.newest().layout == Layout::V3 {
            FILE_V3
        } else if self.params.has_flag(FLAG_BLOCK_SESSIONS) {
            FILE_V2
        } else {
            FILE_V1
        };
        CryptFile::new(f, keys, rel, version)
    }
}

/// A write-only file (e.g. mode 0200) that the daemon owns: coffer needs read access too
/// (partial blocks are read-modify-written, the header is read), so it adds u+r for the
/// moment of the open and puts the mode back. None when this does not apply.
fn open_write_only_file(dir: &Dir, name: &[u8]) -> Option<std::io::Result<std::fs::File>> {
    let st = dir.fd.stat(name).ok()?;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    if st.st_uid != euid || st.st_mode & libc::S_IFMT != libc::S_IFREG || st.st_mode & 0o400 != 0 {
        return None;
    }
    let mode = st.st_mode & 0o7777;
    Some((|| {
        dir.fd.chmod(name, mode | 0o400)?;
        let opened = dir.fd.open_file(name, true, None);
        let restored = dir.fd.chmod(name, mode);
        let f = opened?;
        restored?;
        Ok(f)
    })())
}
