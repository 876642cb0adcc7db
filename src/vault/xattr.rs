//! Encrypted extended attributes (user.* only), stored as backing xattrs
//! `user.coffer.<SIV(name)>` whose values are bound to the owner's ID and the name, and, once
//! an object has several, small ones packed together in `user.coffer.pack` bound to the owner.

use std::os::fd::RawFd;

use crate::format::names;
use crate::format::sealed::{check_xattr_name, xattr_value_aad, XATTR_BACKING_PREFIX, XATTR_NAME_AD};
use crate::format::xattr_pack::{self, PACK_AFTER, PACK_BACKING_NAME, PACK_PLAIN_MAX};

use super::backing::{fgetxattr, flistxattr, fremovexattr, fsetxattr};
use super::error::{Damage, Result, VaultError};
use super::{CryptFile, Vault};

/// A backing xattr call that failed: its errno, in the context of xattrs (the backing calls
/// fail only with OS errors; anything else would be EIO, as an I/O error without an errno is).
fn backing_err(e: std::io::Error) -> VaultError {
    VaultError::xattr(None, e.raw_os_error().unwrap_or(libc::EIO))
}

impl Vault {
    /// Whether `name` is an xattr name the vault stores (user.*, not too long): the error every
    /// xattr call on a file or directory gives for it otherwise.
    pub fn xattr_check_name(&self, name: &[u8]) -> Result<()> {
        check_xattr_name(name).map_err(|e| match e {
            crate::format::FormatError::NameTooLong => VaultError::xattr(None, libc::ERANGE),
            _ => VaultError::Unsupported("only user.* xattrs are supported"),
        })
    }

    fn xattr_backing_name(&self, name: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        self.xattr_check_name(name)?;
        let cipher = self.keys().xattr_names.encrypt_name(XATTR_NAME_AD, name);
        let backing = format!("{XATTR_BACKING_PREFIX}{}", names::encode(&cipher)).into_bytes();
        Ok((backing, cipher))
    }

    /// The value sealed on its own under `name`'s backing name (None: there is none).
    fn single_get(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<Option<Vec<u8>>> {
        let (backing, cipher) = self.xattr_backing_name(name)?;
        let Some(sealed) = fgetxattr(fd, &backing).map_err(backing_err)? else {
            return Ok(None);
        };
        self.keys()
            .xattr_values
            .open_from_slice(&xattr_value_aad(owner, &cipher), &sealed)
            .map(Some)
            .map_err(|_| VaultError::corrupt_xattrs(Damage::XattrValue { name: name.to_vec() }))
    }

    /// Reads one xattr of the object open at `fd` whose owner ID is `owner`: sealed on its own
    /// (which wins, see [`xattr_set`](Self::xattr_set)) or in the object's pack.
    pub fn xattr_get(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<Option<Vec<u8>>> {
        if let Some(v) = self.single_get(fd, owner, name)? {
            return Ok(Some(v));
        }
        Ok(self
            .read_pack(fd, owner)?
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v))
    }

    /// Sets one xattr (`flags`: XATTR_CREATE / XATTR_REPLACE). A small value goes to the pack
    /// once the object holds [`PACK_AFTER`] separately sealed xattrs (or when the name is
    /// packed already) and the pack has room, if the config has `xattr_packs` or can be given
    /// it now (`flags`); anything else is sealed on its own. A name
    /// moving out of the pack is written on its own first, so a crash between the two writes
    /// leaves the new value visible.
    pub fn xattr_set(&self, fd: RawFd, owner: &[u8; 16], name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        self.check_writable()?;
        if value.len() > crate::format::sealed::XATTR_PLAIN_VALUE_MAX {
            return Err(VaultError::xattr(None, libc::E2BIG));
        }
        let (backing, cipher) = self.xattr_backing_name(name)?;
        let mut pack = self.read_pack(fd, owner)?;
        let packed = pack.iter().position(|(n, _)| n == name);
        let single = fgetxattr(fd, &backing).map_err(backing_err)?.is_some();
        let exists = packed.is_some() || single;
        if flags & libc::XATTR_CREATE != 0 && exists {
            return Err(VaultError::xattr(None, libc::EEXIST));
        }
        if flags & libc::XATTR_REPLACE != 0 && !exists {
            return Err(VaultError::xattr(None, libc::ENODATA));
        }
        // The flag is checked last: a vault without it gains it only when a pack is written.
        let to_pack = !single
            && xattr_pack::packable(name, value)
            && (packed.is_some() || self.single_names(fd)?.len() >= PACK_AFTER)
            && self.flags.ensure_xattr_packs();
        if to_pack {
            let entry = (name.to_vec(), value.to_vec());
            match packed {
                Some(i) => pack[i] = entry,
                None => pack.push(entry),
            }
            if xattr_pack::encoded_len(&pack) <= PACK_PLAIN_MAX {
                return self.write_pack(fd, owner, &pack);
            }
            // No room: seal this one on its own, out of the pack.
            pack.retain(|(n, _)| n != name);
        }
        let sealed = self
            .keys()
            .xattr_values
            .seal_to_vec(&xattr_value_aad(owner, &cipher), value)?;
        fsetxattr(fd, &backing, &sealed, 0).map_err(backing_err)?;
        if packed.is_some() {
            pack.retain(|(n, _)| n != name);
            self.write_pack(fd, owner, &pack)?;
        }
        Ok(())
    }

    /// Removes one xattr (ENODATA when the object has none of that name).
    pub fn xattr_remove(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<()> {
        self.check_writable()?;
        let (backing, _) = self.xattr_backing_name(name)?;
        let single = match fremovexattr(fd, &backing) {
            Ok(()) => true,
            Err(e) if e.raw_os_error() == Some(libc::ENODATA) => false,
            Err(e) => return Err(backing_err(e)),
        };
        let mut pack = self.read_pack(fd, owner)?;
        let before = pack.len();
        pack.retain(|(n, _)| n != name);
        if pack.len() != before {
            return self.write_pack(fd, owner, &pack);
        }
        if single {
            Ok(())
        } else {
            Err(VaultError::xattr(None, libc::ENODATA))
        }
    }

    /// Decrypted names of every coffer xattr on `fd` (undecryptable single names are skipped;
    /// a pack that does not authenticate is an error).
    pub fn xattr_list(&self, fd: RawFd, owner: &[u8; 16]) -> Result<Vec<Vec<u8>>> {
        let mut out = self.single_names(fd)?;
        for (n, _) in self.read_pack(fd, owner)? {
            if !out.contains(&n) {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Decrypted names of the xattrs sealed on their own.
    fn single_names(&self, fd: RawFd) -> Result<Vec<Vec<u8>>> {
        let all = flistxattr(fd).map_err(backing_err)?;
        let mut out = Vec::new();
        for n in all {
            let Some(enc) = n.strip_prefix(XATTR_BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            if n == PACK_BACKING_NAME.as_bytes() {
                continue;
            }
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

    /// The entries of the object's pack (none when it has no pack).
    fn read_pack(&self, fd: RawFd, owner: &[u8; 16]) -> Result<Vec<xattr_pack::Entry>> {
        let sealed = match fgetxattr(fd, PACK_BACKING_NAME.as_bytes()) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if no_xattr_support(e.raw_os_error().unwrap_or(0)) => return Ok(Vec::new()),
            Err(e) => return Err(backing_err(e)),
        };
        let plain = self
            .keys()
            .xattr_values
            .open_from_slice(&xattr_pack::pack_aad(owner), &sealed)
            .map_err(|_| VaultError::corrupt_xattrs(Damage::XattrPackAuth))?;
        xattr_pack::decode(&plain).map_err(|f| VaultError::corrupt_xattrs(Damage::XattrPack(f)))
    }

    /// Replaces the object's pack with `entries` (removes it when there are none).
    fn write_pack(&self, fd: RawFd, owner: &[u8; 16], entries: &[xattr_pack::Entry]) -> Result<()> {
        if entries.is_empty() {
            return self.drop_pack(fd);
        }
        let sealed = self
            .keys()
            .xattr_values
            .seal_to_vec(&xattr_pack::pack_aad(owner), &xattr_pack::encode(entries))?;
        fsetxattr(fd, PACK_BACKING_NAME.as_bytes(), &sealed, 0).map_err(backing_err)
    }

    /// Removes the object's pack, if any.
    fn drop_pack(&self, fd: RawFd) -> Result<()> {
        match fremovexattr(fd, PACK_BACKING_NAME.as_bytes()) {
            Err(e)
                if !matches!(e.raw_os_error(), Some(libc::ENODATA))
                    && !no_xattr_support(e.raw_os_error().unwrap_or(0)) =>
            {
                Err(backing_err(e))
            }
            _ => Ok(()),
        }
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
        let Some(Carried { kept, dropped }) = self.xattrs_to_keep(f)? else {
            return f.set_len(0);
        };
        f.set_len(0)?;
        // Dropped values would never authenticate again (EIO on every read): remove them. The
        // pack is sealed to the old file ID: it goes too, its entries are in `kept`.
        for n in dropped {
            let (backing, _) = self.xattr_backing_name(&n)?;
            match fremovexattr(fd, &backing) {
                Err(e) if e.raw_os_error() != Some(libc::ENODATA) => return Err(backing_err(e)),
                _ => {}
            }
        }
        self.drop_pack(fd)?;
        if !kept.is_empty() {
            let h = f.ensure_header()?;
            for (n, v) in kept {
                self.xattr_set(fd, &h.file_id, &n, &v, 0)?;
            }
        }
        Ok(())
    }

    /// The xattrs of `f` that a truncation to 0 carries over, and the single ones it drops:
    /// None when the backing file system has no xattrs (listing them is EOPNOTSUPP or ENOSYS).
    /// A damaged header, a pack or value that does not authenticate drop what they hold (the
    /// truncation is the user's way out of a damaged file, so damage never blocks it). I/O
    /// errors still stop it.
    fn xattrs_to_keep(&self, f: &CryptFile) -> Result<Option<Carried>> {
        use std::os::fd::AsRawFd;
        let fd = f.backing().as_raw_fd();
        let singles = match self.single_names(fd) {
            Ok(n) => n,
            Err(e) if no_xattr_support(e.errno()) => return Ok(None),
            Err(e) => return Err(e),
        };
        let header = match f.header() {
            Ok(Some(h)) => h,
            Ok(None) => return Ok(Some(Carried::dropping(singles))),
            Err(e) if e.is_corrupt() => {
                log::warn!("{e}: truncated to 0, its xattrs are dropped");
                return Ok(Some(Carried::dropping(singles)));
            }
            Err(e) => return Err(e),
        };
        let mut kept = match self.read_pack(fd, &header.file_id) {
            Ok(p) => p,
            Err(e) if e.is_corrupt() => {
                log::warn!("{}: {e}: dropped by a truncation to 0", f.rel().display());
                Vec::new()
            }
            Err(e) => return Err(e),
        };
        let mut dropped = Vec::new();
        for n in singles {
            match self.single_get(fd, &header.file_id, &n) {
                Ok(Some(v)) => {
                    kept.retain(|(k, _)| k != &n);
                    kept.push((n, v));
                }
                Ok(None) => {}
                Err(e) if e.is_corrupt() => {
                    log::warn!("{}: {e}: dropped by a truncation to 0", f.rel().display());
                    dropped.push(n);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(Some(Carried { kept, dropped }))
    }
}

/// What a truncation to 0 does with a file's xattrs.
struct Carried {
    /// Names and values to reseal under the new file ID.
    kept: Vec<xattr_pack::Entry>,
    /// Names of separately sealed xattrs to remove (they no longer authenticate).
    dropped: Vec<Vec<u8>>,
}

impl Carried {
    /// Nothing kept, `dropped` removed.
    fn dropping(dropped: Vec<Vec<u8>>) -> Carried {
        Carried {
            kept: Vec::new(),
            dropped,
        }
    }
}

/// Whether a backing xattr call's errno means the file system stores no xattrs at all.
fn no_xattr_support(errno: i32) -> bool {
    errno == libc::EOPNOTSUPP || errno == libc::ENOSYS
}
