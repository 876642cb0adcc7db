//! Backing directories: their IVs and the mapping between plaintext and backing names.

mod mapping;

pub use mapping::Touched;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::crypto::KeySet;
use crate::format::backing_name::{self, DIRIV_LEN, DIRIV_NAME};
use crate::format::config::VaultParams;
use crate::format::conflict;
use crate::format::names::{self, NameEncoding};

use super::backing::DirFd;
use super::error::{Damage, IoContext, Result, VaultError};
use super::Vault;

/// An open backing directory and its IV.
#[derive(Debug)]
pub struct Dir {
    /// The backing directory.
    pub fd: DirFd,
    /// Its `coffer.diriv`, the AD of every name in it.
    pub iv: [u8; DIRIV_LEN],
    /// Backing path relative to CIPHERDIR ("" for the root), for messages.
    pub rel: PathBuf,
    /// IVs from sync-client conflict copies of `coffer.diriv` (sorted): names that fail under
    /// `iv` are tried under these. New names always use `iv`.
    pub alt_ivs: Vec<[u8; DIRIV_LEN]>,
}

/// The backing name(s) of one plaintext name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherName {
    /// The directory entry: the encoded name, or `HASH.long`.
    pub entry: Vec<u8>,
    /// For long names: the sidecar's file name and content.
    pub long: Option<LongName>,
}

/// The sidecar of a long name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongName {
    /// `HASH.name`.
    pub sidecar: Vec<u8>,
    /// The full encoded name it holds.
    pub encoded: String,
}

/// One decrypted directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Plaintext name.
    pub plain: Vec<u8>,
    /// Backing entry name.
    pub backing: Vec<u8>,
    /// Backing inode.
    pub ino: u64,
    /// Backing d_type.
    pub d_type: u8,
    /// For an entry shown as `name (coffer duplicate N)` (another entry decrypts to the same
    /// name and keeps it): that name.
    pub dup_of: Option<Vec<u8>>,
}

impl Dir {
    pub(super) fn open_root(v: &Vault) -> Result<Dir> {
        let fd = v.root_fd().try_clone().at(v.cipherdir())?;
        Dir::from_fd(fd, PathBuf::new())
    }

    /// Wraps an open backing directory, reading its diriv and any conflict copies of it.
    ///
    /// A client that renamed *every* version of `coffer.diriv` (rclone bisync does, on a
    /// directory made on two replicas) leaves only copies: then the smallest of their IVs
    /// encrypts new names (the same choice on every replica that has the same copies) and the
    /// others are tried too. With neither the diriv nor a copy: [`VaultError::MissingDiriv`].
    pub fn from_fd(fd: DirFd, rel: PathBuf) -> Result<Dir> {
        let (iv, alt_ivs) = match read_iv(&fd, &rel) {
            Ok(iv) => {
                let alt = read_copy_ivs(&fd).into_iter().filter(|c| *c != iv).collect();
                (iv, alt)
            }
            Err(e @ VaultError::MissingDiriv { .. }) => {
                let mut copies = read_copy_ivs(&fd).into_iter();
                let Some(first) = copies.next() else { return Err(e) };
                (first, copies.collect())
            }
            Err(e) => return Err(e),
        };
        Ok(Dir { fd, iv, rel, alt_ivs })
    }

    /// Opens a backing subdirectory and reads its IV.
    pub fn open_child(&self, _v: &Vault, backing_name: &[u8]) -> Result<Dir> {
        let rel = shorten_rel(self.rel_child(backing_name));
        let fd = self.fd.open_dir(backing_name).at(&rel)?;
        Dir::from_fd(fd, rel)
    }

    /// The directory's IV, then its alternative IVs: the order in which names are tried.
    pub fn ivs(&self) -> impl Iterator<Item = &[u8; DIRIV_LEN]> {
        std::iter::once(&self.iv).chain(self.alt_ivs.iter())
    }

    /// Backing path of a child, for messages.
    pub fn rel_child(&self, backing_name: &[u8]) -> PathBuf {
        self.rel.join(std::ffi::OsStr::from_bytes(backing_name))
    }
}

/// Longest backing path a [`Dir`] keeps for messages; deeper ones keep their last components
/// behind `…` (a 20000-level tree would otherwise keep a path of half a megabyte per level).
const REL_MAX: usize = 1024;

/// `rel`, or its tail behind `…` when longer than [`REL_MAX`].
pub(crate) fn shorten_rel(rel: PathBuf) -> PathBuf {
    if rel.as_os_str().len() <= REL_MAX {
        return rel;
    }
    let mut tail: Vec<&std::ffi::OsStr> = Vec::new();
    let mut len = 0;
    for c in rel.components().rev() {
        let c = c.as_os_str();
        if len + c.len() + 1 > REL_MAX / 2 && !tail.is_empty() {
            break;
        }
        len += c.len() + 1;
        tail.push(c);
    }
    let mut out = PathBuf::from("…");
    out.extend(tail.into_iter().rev());
    out
}

/// Reads and checks a directory's `coffer.diriv`.
pub fn read_iv(fd: &DirFd, rel: &Path) -> Result<[u8; DIRIV_LEN]> {
    let data = match fd.read_small(DIRIV_NAME.as_bytes(), 64) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(VaultError::MissingDiriv {
                path: rel.to_path_buf(),
            })
        }
        Err(e) => return Err(VaultError::io(rel.join(DIRIV_NAME), e)),
    };
    data.as_slice()
        .try_into()
        .map_err(|_| VaultError::corrupt(rel.join(DIRIV_NAME), None, Damage::DirivLength { len: data.len() }))
}

/// IVs of the sync-client conflict copies of `coffer.diriv` (`coffer<marker>.diriv`), sorted,
/// each once.
fn read_copy_ivs(fd: &DirFd) -> Vec<[u8; DIRIV_LEN]> {
    let Ok(entries) = fd.list() else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries {
        let copies = conflict::parse_copy(&e.name, NameEncoding::Base64Url);
        if !copies.iter().any(|c| c.ext == "diriv") {
            continue;
        }
        if let Ok(data) = fd.read_small(&e.name, 64) {
            if let Ok(iv) = <[u8; DIRIV_LEN]>::try_from(data.as_slice()) {
                if !out.contains(&iv) {
                    out.push(iv);
                }
            }
        }
    }
    out.sort();
    out
}

/// The backing name of `plain` in a directory whose IV is `iv` (validates the plaintext name).
/// Shared by the vault and reverse mode.
pub fn cipher_name_for(keys: &KeySet, params: &VaultParams, iv: &[u8; DIRIV_LEN], plain: &[u8]) -> Result<CipherName> {
    names::check_plain_name(plain)?;
    let enc = params.name_encoding;
    let encoded = enc.encode(&keys.names.encrypt_name(iv, plain));
    if names::is_long(&encoded, params.long_name_limit) {
        let hash = enc.long_hash(&encoded);
        Ok(CipherName {
            entry: backing_name::long_entry_name(&hash).into_bytes(),
            long: Some(LongName {
                sidecar: backing_name::long_sidecar_name(&hash).into_bytes(),
                encoded,
            }),
        })
    } else {
        Ok(CipherName {
            entry: encoded.into_bytes(),
            long: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_keep_their_tail_for_messages() {
        let short = PathBuf::from("a/b/c");
        assert_eq!(shorten_rel(short.clone()), short);
        let mut deep = PathBuf::new();
        for i in 0..2000 {
            deep.push(format!("component{i:05}"));
        }
        let s = shorten_rel(deep);
        let text = s.to_string_lossy().into_owned();
        assert!(text.len() <= REL_MAX, "{}", text.len());
        assert!(text.starts_with("…/"), "{text}");
        assert!(text.ends_with("component01999"), "{text}");
        // Shortening a shortened path's child stays bounded.
        let again = shorten_rel(s.join("next"));
        assert!(again.as_os_str().len() <= REL_MAX);
        assert!(again.ends_with("next"));
    }
}
