//! Encrypted extended attributes (user.* only), stored as backing xattrs
//! `user.coffer.<SIV(name)>` whose values are bound to the owner's ID and the name.

use std::os::fd::RawFd;

use crate::format::names;
use crate::format::sealed::{check_xattr_name, xattr_value_aad, XATTR_BACKING_PREFIX, XATTR_NAME_AD};

use super::backing::{fgetxattr, flistxattr, fremovexattr, fsetxattr};
use super::error::{Result, VaultError};
use super::{CryptFile, Vault};

impl Vault {
    /// Whether `name` is an xattr name the vault stores (user.*, not too long): the error every
    /// xattr call on a file or directory gives for it otherwise.
    pub fn xattr_check_name(&self, name: &[u8]) -> Result<()> {
        check_xattr_name(name).map_err(|e| match e {
            crate::format::FormatError::NameTooLong => VaultError::errno_at("xattr", libc::ERANGE),
            _ => VaultError::Unsupported("only user.* xattrs are supported"),
        })
    }

    fn xattr_backing_name(&self, name: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        self.xattr_check_name(name)?;
        let cipher = self.keys().xattr_names.encrypt_name(XATTR_NAME_AD, name);
        let backing = format!("{XATTR_BACKING_PREFIX}{}", names::encode(&cipher)).into_bytes();
        Ok((backing, cipher))
    }

    /// Reads one xattr of the object open at `fd` whose owner ID is `owner`.
    pub fn xattr_get(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<Option<Vec<u8>>> {
        let (backing, cipher) = self.xattr_backing_name(name)?;
        let Some(sealed) = fgetxattr(fd, &backing).map_err(|e| VaultError::io("xattr", e))? else {
            return Ok(None);
        };
        self.keys()
            .xattr_values
            .open_from_slice(&xattr_value_aad(owner, &cipher), &sealed)
            .map(Some)
            .map_err(|_| {
                VaultError::corrupt(
                    format!("xattr {}", String::from_utf8_lossy(name)),
                    None,
                    "value does not authenticate",
                )
            })
    }

    /// Sets one xattr (`flags`: XATTR_CREATE / XATTR_REPLACE).
    pub fn xattr_set(&self, fd: RawFd, owner: &[u8; 16], name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        self.check_writable()?;
        if value.len() > crate::format::sealed::XATTR_PLAIN_VALUE_MAX {
            return Err(VaultError::errno_at("xattr", libc::E2BIG));
        }
        let (backing, cipher) = self.xattr_backing_name(name)?;
        let sealed = self
            .keys()
            .xattr_values
            .seal_to_vec(&xattr_value_aad(owner, &cipher), value)?;
        fsetxattr(fd, &backing, &sealed, flags).map_err(|e| VaultError::io("xattr", e))
    }

    /// Removes one xattr.
    pub fn xattr_remove(&self, fd: RawFd, name: &[u8]) -> Result<()> {
        self.check_writable()?;
        let (backing, _) = self.xattr_backing_name(name)?;
        fremovexattr(fd, &backing).map_err(|e| VaultError::io("xattr", e))
    }

    /// Decrypted names of every coffer xattr on `fd` (undecryptable ones are skipped).
    pub fn xattr_list(&self, fd: RawFd) -> Result<Vec<Vec<u8>>> {
        let all = flistxattr(fd).map_err(|e| VaultError::io("xattr", e))?;
        let mut out = Vec::new();
        for n in all {
            let Some(enc) = n.strip_prefix(XATTR_BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            let Ok(raw) = names::decode(enc) else {
                continue;
            };
            match self.keys().xattr_names.decrypt_name(XATTR_NAME_AD, &raw) {
                Ok(plain) => out.push(plain),
                Err(_) => log::warn!("skipping an xattr whose name does not decrypt"),
            }
        }
        Ok(out)
    }

    /// Truncates a file; when it drops to 0 bytes (new file ID on the next write), its xattrs
    /// are resealed under a fresh header so they stay readable.
    pub fn set_len(&self, f: &CryptFile, len: u64) -> Result<()> {
        self.check_writable()?;
        if len != 0 {
            return f.set_len(len);
        }
        use std::os::fd::AsRawFd;
        let fd = f.backing().as_raw_fd();
        let (kept, dropped) = self.xattrs_to_keep(f)?;
        f.set_len(0)?;
        // Dropped values would never authenticate again (EIO on every read): remove them.
        for n in dropped {
            match self.xattr_remove(fd, &n) {
                Err(e) if e.errno() != libc::ENODATA => return Err(e),
                _ => {}
            }
        }
        if !kept.is_empty() {
            let h = f.ensure_header()?;
            for (n, v) in kept {
                self.xattr_set(fd, &h.file_id, &n, &v, 0)?;
            }
        }
        Ok(())
    }

    /// The xattrs of `f` that a truncation to 0 carries over: none when the backing file system
    /// has no xattrs (listing them is EOPNOTSUPP or ENOSYS), none when the header is damaged,
    /// and none of those whose values do not authenticate (the truncation is the user's way
    /// out of a damaged file, so damage never blocks it). I/O errors still stop it.
    /// Returns the kept names and values, and the names of the dropped ones.
    fn xattrs_to_keep(&self, f: &CryptFile) -> Result<(Vec<NameValue>, Vec<Vec<u8>>)> {
        use std::os::fd::AsRawFd;
        let fd = f.backing().as_raw_fd();
        let names = match self.xattr_list(fd) {
            Ok(n) => n,
            Err(e) if no_xattr_support(e.errno()) => return Ok((Vec::new(), Vec::new())),
            Err(e) => return Err(e),
        };
        if names.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let header = match f.header() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok((Vec::new(), Vec::new())),
            Err(e) if e.is_corrupt() => {
                log::warn!("{e}: truncated to 0, its xattrs are dropped");
                return Ok((Vec::new(), names));
            }
            Err(e) => return Err(e),
        };
        let (mut kept, mut dropped) = (Vec::new(), Vec::new());
        for n in names {
            match self.xattr_get(fd, &header.file_id, &n) {
                Ok(Some(v)) => kept.push((n, v)),
                Ok(None) => {}
                Err(e) if e.is_corrupt() => {
                    log::warn!("{}: {e}: dropped by a truncation to 0", f.rel().display());
                    dropped.push(n);
                }
                Err(e) => return Err(e),
            }
        }
        Ok((kept, dropped))
    }
}

/// A plaintext xattr name and value.
type NameValue = (Vec<u8>, Vec<u8>);

/// Whether a backing xattr call's errno means the file system stores no xattrs at all.
fn no_xattr_support(errno: i32) -> bool {
    errno == libc::EOPNOTSUPP || errno == libc::ENOSYS
}
