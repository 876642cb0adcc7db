//! Encrypted symlink targets: inline in the backing symlink when they fit, else in a
//! `ENTRY.link` sidecar with the backing symlink pointing at `coffer:link`.

use crate::format::epochs::Layout;
use crate::format::names;
use crate::format::sealed::{symlink_aad, SYMLINK_BACKING_MAX, SYMLINK_OUT_OF_LINE, SYMLINK_PLAIN_MAX};

use super::backing::{temp_name, TimeSpec};
use super::dir::{CipherName, Dir};
use super::error::{Damage, IoContext, Result, VaultError};
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
        let name = self.new_cipher_name(dir, plain)?;
        // Never touch the target sidecar of an existing entry (EEXIST comes before any write).
        if dir.fd.stat(&name.entry).is_ok() {
            return Err(VaultError::errno_at(dir.rel_child(&name.entry), libc::EEXIST));
        }
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        let sealed = newest.seal_small(&newest.set.symlinks, symlink_aad(newest.layout), target)?;
        let encoded = names::encode(&sealed);
        self.write_sidecar(dir, &name)?;
        let rel = dir.rel_child(&name.entry);
        let inline = if encoded.len() <= SYMLINK_BACKING_MAX {
            match dir.fd.symlink(encoded.as_bytes(), &name.entry) {
                Ok(()) => true,
                // xfs stores targets of at most 1023 bytes: a longer one goes out of line.
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => false,
                Err(e) => return Err(VaultError::io(rel, e)),
            }
        } else {
            false
        };
        if !inline {
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
        let sealed = self.sealed_target(dir, entry)?;
        self.open_symlink(&sealed)
            .ok_or_else(|| VaultError::corrupt(dir.rel_child(entry), None, Damage::SymlinkAuth))
    }

    /// The sealed target of backing symlink `entry`: inline, or from its `.link` sidecar.
    fn sealed_target(&self, dir: &Dir, entry: &[u8]) -> Result<Vec<u8>> {
        let rel = dir.rel_child(entry);
        let backing = dir.fd.readlink(entry).at(&rel)?;
        if backing == SYMLINK_OUT_OF_LINE.as_bytes() {
            self.read_link_sidecar(dir, entry)
        } else {
            names::decode(&backing).map_err(|_| VaultError::corrupt(&rel, None, Damage::SymlinkEncoding))
        }
    }

    /// Whether the target of backing symlink `entry` is sealed under the newest epoch.
    pub(super) fn symlink_current(&self, dir: &Dir, entry: &[u8]) -> Result<bool> {
        let sealed = self.sealed_target(dir, entry)?;
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        Ok(newest.may_have_sealed(&sealed)
            && newest
                .set
                .symlinks
                .open_from_slice(symlink_aad(newest.layout), &sealed)
                .is_ok())
    }

    /// Seals the target of backing symlink `entry` again under the newest epoch: an
    /// out-of-line target by replacing its sidecar, an inline one by a new symlink under a
    /// temporary name renamed over it (with the old one's times). Atomic either way.
    pub(super) fn reseal_symlink(&self, dir: &Dir, entry: &[u8]) -> Result<()> {
        let target = self.readlink(dir, entry)?;
        let rel = dir.rel_child(entry);
        let st = dir.fd.stat(entry).at(&rel)?;
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        let sealed = newest.seal_small(&newest.set.symlinks, symlink_aad(newest.layout), &target)?;
        let link = link_sidecar(entry);
        if dir.fd.readlink(entry).at(&rel)? == SYMLINK_OUT_OF_LINE.as_bytes() {
            return dir.fd.write_atomic(&link, &sealed, 0o444).at(dir.rel_child(&link));
        }
        let encoded = names::encode(&sealed);
        let tmp = temp_name().at(&dir.rel)?;
        let inline = encoded.len() <= SYMLINK_BACKING_MAX
            && match dir.fd.symlink(encoded.as_bytes(), &tmp) {
                Ok(()) => true,
                Err(e) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => false,
                Err(e) => return Err(VaultError::io(dir.rel_child(&tmp), e)),
            };
        if !inline {
            dir.fd.write_atomic(&link, &sealed, 0o444).at(dir.rel_child(&link))?;
            dir.fd
                .symlink(SYMLINK_OUT_OF_LINE.as_bytes(), &tmp)
                .at(dir.rel_child(&tmp))?;
        }
        let times = [
            TimeSpec::At(st.st_atime, st.st_atime_nsec),
            TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
        ];
        let moved = dir
            .fd
            .utimens(&tmp, times[0], times[1])
            .and_then(|()| dir.fd.rename(&tmp, &dir.fd, entry, 0));
        if let Err(e) = moved {
            let _ = dir.fd.unlink(&tmp);
            return Err(VaultError::io(rel, e));
        }
        Ok(())
    }

    /// Opens a sealed target: under the layout-3 epoch its nonce names, if any and if that
    /// works, else under the layout-1 epoch (whose random nonce may start with any 4 bytes,
    /// docs/FORMAT.md §15.4). `None`: it authenticates under neither.
    fn open_symlink(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let keys = self.vault_keys();
        if let Some(e) = keys.v3_epoch_of(sealed) {
            if let Ok(target) = e.set.symlinks.open_from_slice(symlink_aad(Layout::V3), sealed) {
                return Some(target);
            }
        }
        let e = keys.layout1()?;
        e.set.symlinks.open_from_slice(symlink_aad(Layout::V1), sealed).ok()
    }
}

impl Vault {
    /// The sealed out-of-line target of `entry`: `ENTRY.link`; for a sync client's conflict
    /// copy of a symlink (`ORIG<marker>`) whose own sidecar is missing, the client's copy of the
    /// original's sidecar (`ORIG<marker>.link`, for long names `HASH.long<marker>.link`), else the
    /// original's `ORIG.link`.
    fn read_link_sidecar(&self, dir: &Dir, entry: &[u8]) -> Result<Vec<u8>> {
        let link = link_sidecar(entry);
        let err = match dir.fd.read_small(&link, 8192) {
            Ok(sealed) => return Ok(sealed),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => e,
            Err(e) => return Err(VaultError::io(dir.rel_child(&link), e)),
        };
        for c in crate::format::conflict::parse_copy(entry, self.params().name_encoding) {
            if !c.ext.is_empty() && c.ext != crate::format::backing_name::LONG_EXT {
                continue;
            }
            let orig = c.original();
            let copy = crate::format::conflict::copy_name(&orig, c.marker, "link");
            for cand in [copy, format!("{orig}.link")] {
                if let Ok(sealed) = dir.fd.read_small(cand.as_bytes(), 8192) {
                    return Ok(sealed);
                }
            }
        }
        Err(VaultError::io(dir.rel_child(&link), err))
    }
}

fn link_sidecar(entry: &[u8]) -> Vec<u8> {
    let mut v = entry.to_vec();
    v.extend_from_slice(b".link");
    v
}
