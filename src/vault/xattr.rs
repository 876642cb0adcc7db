//! Encrypted extended attributes (user.* only), stored as backing xattrs
//! `user.coffer.<SIV(name)>` whose values are bound to the owner's ID and the name, and, once
//! an object has several, small ones packed together in `user.coffer.pack` (`.pack3` under a
//! layout-3 epoch) bound to the owner. Names and packs are written under the newest epoch and
//! read under every epoch, newest first (docs/FORMAT.md §8, §15.4).

use std::os::fd::RawFd;

use crate::format::epochs::Layout;
use crate::format::names;
use crate::format::sealed::{check_xattr_name, xattr_value_aad, XATTR_BACKING_PREFIX, XATTR_NAME_AD};
use crate::format::xattr_pack::{
    self, pack_aad, pack_backing_name, PACK3_BACKING_NAME, PACK_AFTER, PACK_BACKING_NAME, PACK_PLAIN_MAX,
};

use super::backing::{fgetxattr, flistxattr, fremovexattr, fsetxattr};
use super::error::{Damage, Result, VaultError};
use super::keys::EpochKeys;
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

    /// The backing name of xattr `name` under the newest epoch, and the SIV output it encodes.
    fn xattr_backing_name(&self, name: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
        self.xattr_check_name(name)?;
        Ok(xattr_backing_name_in(self.vault_keys().newest(), name))
    }

    /// The value sealed on its own under `name`'s backing name of an epoch, the newest epoch
    /// that has one (None: there is none).
    fn single_get(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<Option<Vec<u8>>> {
        self.xattr_check_name(name)?;
        for e in self.vault_keys().newest_first() {
            let (backing, cipher) = xattr_backing_name_in(e, name);
            let Some(sealed) = fgetxattr(fd, &backing).map_err(backing_err)? else {
                continue;
            };
            let aad = xattr_value_aad(e.layout, owner, &cipher);
            return e
                .may_have_sealed(&sealed)
                .then(|| e.set.xattr_values.open_from_slice(&aad, &sealed).ok())
                .flatten()
                .map(Some)
                .ok_or_else(|| VaultError::corrupt_xattrs(Damage::XattrValue { name: name.to_vec() }));
        }
        Ok(None)
    }

    /// The backing names under which `name` is sealed on its own on `fd`, one per epoch that
    /// has it (newest first).
    fn single_backings(&self, fd: RawFd, name: &[u8]) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for e in self.vault_keys().newest_first() {
            let (backing, _) = xattr_backing_name_in(e, name);
            if fgetxattr(fd, &backing).map_err(backing_err)?.is_some() {
                out.push(backing);
            }
        }
        Ok(out)
    }

    /// Removes `name` sealed on its own, under every epoch; whether there was one.
    fn remove_singles(&self, fd: RawFd, name: &[u8]) -> Result<bool> {
        let mut removed = false;
        for e in self.vault_keys().newest_first() {
            let (backing, _) = xattr_backing_name_in(e, name);
            match fremovexattr(fd, &backing) {
                Ok(()) => removed = true,
                Err(e) if e.raw_os_error() == Some(libc::ENODATA) => {}
                Err(e) => return Err(backing_err(e)),
            }
        }
        Ok(removed)
    }

    /// Whether packs may be written. A layout-1 vault may once its config has `xattr_packs`
    /// or can be given it now; a layout-3 newest epoch always may: config version 2, the only
    /// config with layout-3 epochs, implies packs (docs/FORMAT.md §15.4).
    fn may_write_packs(&self) -> bool {
        self.vault_keys().newest().layout == Layout::V3 || self.flags.ensure_xattr_packs()
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
        let singles = self.single_backings(fd, name)?;
        let single = !singles.is_empty();
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
            && self.may_write_packs();
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
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        let aad = xattr_value_aad(newest.layout, owner, &cipher);
        let sealed = newest.seal_small(&newest.set.xattr_values, &aad, value)?;
        fsetxattr(fd, &backing, &sealed, 0).map_err(backing_err)?;
        // The same name under an older epoch is shadowed by the new one now: it goes.
        for old in singles.iter().filter(|b| **b != backing) {
            match fremovexattr(fd, old) {
                Err(e) if e.raw_os_error() != Some(libc::ENODATA) => return Err(backing_err(e)),
                _ => {}
            }
        }
        if packed.is_some() {
            pack.retain(|(n, _)| n != name);
            self.write_pack(fd, owner, &pack)?;
        }
        Ok(())
    }

    /// Removes one xattr (ENODATA when the object has none of that name).
    pub fn xattr_remove(&self, fd: RawFd, owner: &[u8; 16], name: &[u8]) -> Result<()> {
        self.check_writable()?;
        self.xattr_check_name(name)?;
        let single = self.remove_singles(fd, name)?;
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

    /// Whether every coffer xattr on `fd` is sealed under the newest epoch (names that open
    /// under no epoch are damage, not older: they do not count).
    pub(super) fn xattrs_current(&self, fd: RawFd) -> Result<bool> {
        let keys = self.vault_keys();
        let newest = keys.newest();
        let all = match flistxattr(fd) {
            Ok(all) => all,
            Err(e) if no_xattr_support(e.raw_os_error().unwrap_or(0)) => return Ok(true),
            Err(e) => return Err(backing_err(e)),
        };
        for n in all {
            let Some(enc) = n.strip_prefix(XATTR_BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            if n == PACK_BACKING_NAME.as_bytes() {
                if newest.layout != Layout::V1 {
                    return Ok(false);
                }
                continue;
            }
            if n == PACK3_BACKING_NAME.as_bytes() {
                let sealed = fgetxattr(fd, &n).map_err(backing_err)?.unwrap_or_default();
                if newest.layout != Layout::V3 || !newest.may_have_sealed(&sealed) {
                    return Ok(false);
                }
                continue;
            }
            let Ok(raw) = names::decode(enc) else {
                continue;
            };
            let opens = |e: &EpochKeys| e.set.xattr_names.decrypt_name(XATTR_NAME_AD, &raw).is_ok();
            if !opens(newest) && keys.newest_first().skip(1).any(opens) {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Seals every xattr of the object at `fd` (owner ID `owner`) again under the newest
    /// epoch: each is set anew, which removes its copies under older epochs and rewrites a
    /// pack in the newest form.
    pub(super) fn reseal_xattrs(&self, fd: RawFd, owner: &[u8; 16]) -> Result<()> {
        for n in self.xattr_list(fd, owner)? {
            if let Some(v) = self.xattr_get(fd, owner, &n)? {
                self.xattr_set(fd, owner, &n, &v, 0)?;
            }
        }
        Ok(())
    }

    /// Decrypted names of the xattrs sealed on their own.
    fn single_names(&self, fd: RawFd) -> Result<Vec<Vec<u8>>> {
        let all = flistxattr(fd).map_err(backing_err)?;
        let mut out = Vec::new();
        for n in all {
            let Some(enc) = n.strip_prefix(XATTR_BACKING_PREFIX.as_bytes()) else {
                continue;
            };
            if n == PACK_BACKING_NAME.as_bytes() || n == PACK3_BACKING_NAME.as_bytes() {
                continue;
            }
            let Ok(raw) = names::decode(enc) else {
                continue;
            };
            let plain = self
                .vault_keys()
                .newest_first()
                .find_map(|e| e.set.xattr_names.decrypt_name(XATTR_NAME_AD, &raw).ok());
            match plain {
                // One name under two epochs (a crash between writing the new and removing the
                // old) is listed once.
                Some(plain) if out.contains(&plain) => {}
                Some(plain) => out.push(plain),
                None => log::warn!("skipping an xattr whose name does not decrypt"),
            }
        }
        Ok(out)
    }

    /// The entries of the object's packs (none when it has none): the newest epoch's form
    /// first, then the entries of the other form whose names it does not hold.
    fn read_pack(&self, fd: RawFd, owner: &[u8; 16]) -> Result<Vec<xattr_pack::Entry>> {
        let mut out: Vec<xattr_pack::Entry> = Vec::new();
        for layout in self.pack_layouts() {
            for (n, v) in self.read_pack_form(fd, owner, layout)? {
                if !out.iter().any(|(k, _)| *k == n) {
                    out.push((n, v));
                }
            }
        }
        Ok(out)
    }

    /// The pack forms this vault reads, the newest epoch's first: `user.coffer.pack3` when it
    /// has a layout-3 epoch, `user.coffer.pack` when it has a layout-1 epoch.
    fn pack_layouts(&self) -> Vec<Layout> {
        let keys = self.vault_keys();
        let mut out = vec![keys.newest().layout];
        if let Some(e) = keys.newest_first().find(|e| e.layout != out[0]) {
            out.push(e.layout);
        }
        out
    }

    /// The entries of the object's pack of one form (none when it has none). A layout-3 pack
    /// opens under the epoch its nonce names, a layout-1 pack under the layout-1 epoch.
    fn read_pack_form(&self, fd: RawFd, owner: &[u8; 16], layout: Layout) -> Result<Vec<xattr_pack::Entry>> {
        let sealed = match fgetxattr(fd, pack_backing_name(layout).as_bytes()) {
            Ok(Some(s)) => s,
            Ok(None) => return Ok(Vec::new()),
            Err(e) if no_xattr_support(e.raw_os_error().unwrap_or(0)) => return Ok(Vec::new()),
            Err(e) => return Err(backing_err(e)),
        };
        let keys = self.vault_keys();
        let epoch = match layout {
            Layout::V3 => keys.v3_epoch_of(&sealed),
            Layout::V1 => keys.layout1(),
        };
        let plain = epoch
            .and_then(|e| {
                e.set
                    .xattr_values
                    .open_from_slice(&pack_aad(layout, owner), &sealed)
                    .ok()
            })
            .ok_or_else(|| VaultError::corrupt_xattrs(Damage::XattrPackAuth))?;
        xattr_pack::decode(&plain).map_err(|f| VaultError::corrupt_xattrs(Damage::XattrPack(f)))
    }

    /// Replaces the object's pack with `entries` (removes it when there are none), in the
    /// newest epoch's form; a pack of the other form goes after it (its entries were read
    /// into `entries` by [`read_pack`](Self::read_pack)).
    fn write_pack(&self, fd: RawFd, owner: &[u8; 16], entries: &[xattr_pack::Entry]) -> Result<()> {
        if entries.is_empty() {
            return self.drop_pack(fd);
        }
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        let aad = pack_aad(newest.layout, owner);
        let sealed = newest.seal_small(&newest.set.xattr_values, &aad, &xattr_pack::encode(entries))?;
        fsetxattr(fd, pack_backing_name(newest.layout).as_bytes(), &sealed, 0).map_err(backing_err)?;
        for other in self.pack_layouts().into_iter().skip(1) {
            self.drop_pack_form(fd, other)?;
        }
        Ok(())
    }

    /// Removes the object's packs, if any.
    fn drop_pack(&self, fd: RawFd) -> Result<()> {
        for layout in self.pack_layouts() {
            self.drop_pack_form(fd, layout)?;
        }
        Ok(())
    }

    /// Removes the object's pack of one form, if any.
    fn drop_pack_form(&self, fd: RawFd, layout: Layout) -> Result<()> {
        match fremovexattr(fd, pack_backing_name(layout).as_bytes()) {
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
            self.remove_singles(fd, &n)?;
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

/// The backing name of xattr `name` under epoch `e`, and the SIV output it encodes.
fn xattr_backing_name_in(e: &EpochKeys, name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cipher = e.set.xattr_names.encrypt_name(XATTR_NAME_AD, name);
    let backing = format!("{XATTR_BACKING_PREFIX}{}", names::encode(&cipher)).into_bytes();
    (backing, cipher)
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
