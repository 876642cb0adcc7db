//! Encrypted symlink targets: inline in the backing symlink when they fit, else in a
//! `ENTRY.link` sidecar with the backing symlink pointing at `coffer:link`.

use crate::format::names;
use crate::format::sealed::{SYMLINK_AAD, SYMLINK_BACKING_MAX, SYMLINK_OUT_OF_LINE, SYMLINK_PLAIN_MAX};

use super::dir::{CipherName, Dir};
use super::error::{IoContext, Result, VaultError};
use super::Vault;

impl Vault {
    /// Creates a symlink `plain` -> `target` in `dir`.
    pub fn symlink(&self, dir: &Dir, plain: &[u8], target: &[u8]) -> Result<CipherName> {
        self.check_writable()?;
        if target.is_empty() || target.contains(&0) {
            return Err(VaultError::errno_at(&dir.rel, libc::EINVAL));
        }
        if target.len() > SYMLINK_PLAIN_MAX {
            return Err(VaultError::errno_at(&dir.rel, libc::ENAMETOOLONG));
        }
        let name = self.cipher_name(dir, plain)?;
        // Never touch the target sidecar of an existing entry (EEXIST comes before any write).
        if dir.fd.stat(&name.entry).is_ok() {
            return Err(VaultError::errno_at(dir.rel_child(&name.entry), libc::EEXIST));
        }
        let sealed = self.keys().symlinks.seal_to_vec(SYMLINK_AAD, target)?;
        let encoded = names::encode(&sealed);
        self.write_sidecar(dir, &name)?;
        let rel = dir.rel_child(&name.entry);
        if encoded.len() <= SYMLINK_BACKING_MAX {
            dir.fd.symlink(encoded.as_bytes(), &name.entry).at(&rel)?;
        } else {
            let link = link_sidecar(&name.entry);
            dir.fd.write_atomic(&link, &sealed, 0o444).at(dir.rel_child(&link))?;
            if let Err(e) = dir.fd.symlink(SYMLINK_OUT_OF_LINE.as_bytes(), &name.entry) {
                if e.raw_os_error() != Some(libc::EEXIST) {
                    let _ = dir.fd.unlink(&link);
                }
                return Err(VaultError::io(rel, e));
            }
        }
        Ok(name)
    }

    /// Decrypts the target of backing symlink `entry` in `dir`.
    pub fn readlink(&self, dir: &Dir, entry: &[u8]) -> Result<Vec<u8>> {
        let rel = dir.rel_child(entry);
        let backing = dir.fd.readlink(entry).at(&rel)?;
        let sealed = if backing == SYMLINK_OUT_OF_LINE.as_bytes() {
            let link = link_sidecar(entry);
            dir.fd.read_small(&link, 8192).at(dir.rel_child(&link))?
        } else {
            names::decode(&backing).map_err(|_| VaultError::corrupt(&rel, None, "symlink target is not base64url"))?
        };
        self.keys()
            .symlinks
            .open_from_slice(SYMLINK_AAD, &sealed)
            .map_err(|_| VaultError::corrupt(rel, None, "symlink target does not authenticate"))
    }
}

fn link_sidecar(entry: &[u8]) -> Vec<u8> {
    let mut v = entry.to_vec();
    v.extend_from_slice(b".link");
    v
}
