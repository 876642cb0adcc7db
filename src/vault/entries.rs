//! Creating, linking, renaming and removing directory entries, keeping long-name sidecars and
//! out-of-line symlink targets in step with their entries.

use crate::crypto;
use crate::format::backing_name::{self, classify, BackingName, DIRIV_LEN, DIRIV_NAME};

use super::backing::temp_name;
use super::dir::{CipherName, Dir};
use super::error::{IoContext, Result, VaultError};
use super::{CryptFile, Vault};

/// renameat2 flag: fail if the target exists.
pub const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;
/// renameat2 flag: swap source and target.
pub const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;

fn ignore_enoent(r: std::io::Result<()>) -> std::io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other,
    }
}

impl Vault {
    /// Writes the sidecar of a long name (atomic; its content is fixed by its name, so an
    /// existing one is simply replaced by identical bytes).
    pub(super) fn write_sidecar(&self, dir: &Dir, name: &CipherName) -> Result<()> {
        if let Some(long) = &name.long {
            dir.fd
                .write_atomic(&long.sidecar, long.encoded.as_bytes(), 0o444)
                .at(dir.rel_child(&long.sidecar))?;
        }
        Ok(())
    }

    /// Removes the sidecars that belong to backing entry `entry` (long name, link target), once
    /// it is gone.
    pub(super) fn remove_sidecars(&self, dir: &Dir, entry: &[u8]) -> Result<()> {
        if let Some(hash) = self.long_hash_of(entry) {
            self.prune_long_sidecars(dir, &hash)?;
        }
        self.remove_link_sidecar(dir, entry)
    }

    /// The long-name hash of `HASH.long` or of a sync client's copy of it, `HASH<marker>.long`.
    pub(super) fn long_hash_of(&self, entry: &[u8]) -> Option<String> {
        let enc = self.params().name_encoding;
        if let BackingName::Long(hash) = classify(entry, enc) {
            return Some(hash.to_string());
        }
        crate::format::conflict::parse_copy(entry, enc)
            .into_iter()
            .find(|c| c.ext == backing_name::LONG_EXT && c.stem.len() == enc.hash_len())
            .map(|c| c.stem.to_string())
    }

    /// After an entry with long-name hash `hash` went away: removes the sidecars that no
    /// remaining entry reads. `HASH.name` serves `HASH.long` and every conflict copy
    /// `HASH<marker>.long` that has no sidecar copy `HASH<marker>.name` of its own.
    pub(super) fn prune_long_sidecars(&self, dir: &Dir, hash: &str) -> Result<()> {
        use crate::format::conflict::{copy_name, is_end_marker, is_marker};
        let split = |name: &[u8], ext: &str| -> Option<String> {
            let s = std::str::from_utf8(name).ok()?.strip_prefix(hash)?;
            // `HASH<marker>.EXT`, or rclone's `HASH.EXT<marker>`.
            let before = s.strip_suffix(ext).and_then(|m| m.strip_suffix('.'));
            let after = s
                .strip_prefix('.')
                .and_then(|m| m.strip_prefix(ext))
                .filter(|m| is_end_marker(m));
            let marker = before.or(after)?;
            (marker.is_empty() || is_marker(marker)).then(|| marker.to_string())
        };
        let listing = dir.fd.list().at(&dir.rel)?;
        let names: std::collections::HashSet<&[u8]> = listing.iter().map(|e| e.name.as_slice()).collect();
        let sidecar = |marker: &str| copy_name(hash, marker, backing_name::NAME_EXT);
        let entry = |marker: &str| copy_name(hash, marker, backing_name::LONG_EXT);
        let main_needed = names
            .iter()
            .filter_map(|n| split(n, backing_name::LONG_EXT))
            .any(|marker| marker.is_empty() || !names.contains(sidecar(&marker).as_bytes()));
        for n in &names {
            let Some(marker) = split(n, backing_name::NAME_EXT) else {
                continue;
            };
            let needed = if marker.is_empty() {
                main_needed
            } else {
                names.contains(entry(&marker).as_bytes())
            };
            if !needed {
                ignore_enoent(dir.fd.unlink(n)).at(dir.rel_child(n))?;
            }
        }
        Ok(())
    }

    fn remove_link_sidecar(&self, dir: &Dir, entry: &[u8]) -> Result<()> {
        let Ok(e) = std::str::from_utf8(entry) else {
            return Ok(());
        };
        let l = backing_name::link_sidecar_name(e);
        ignore_enoent(dir.fd.unlink(l.as_bytes())).at(dir.rel_child(l.as_bytes()))
    }

    /// Creates a regular file exclusively (EEXIST if present) and opens it read-write.
    pub fn create_file(&self, dir: &Dir, plain: &[u8], mode: u32) -> Result<(CryptFile, CipherName)> {
        self.check_writable()?;
        let name = self.new_cipher_name(dir, plain)?;
        self.write_sidecar(dir, &name)?;
        let rel = dir.rel_child(&name.entry);
        let f = dir.fd.open_file(&name.entry, true, Some(mode & 0o7777)).at(&rel)?;
        Ok((self.crypt_file(f, rel), name))
    }

    /// Creates a directory: made under a temporary name, its diriv written and fsynced, then
    /// renamed into place and given `mode` — so no directory is ever visible without its IV.
    pub fn mkdir(&self, dir: &Dir, plain: &[u8], mode: u32) -> Result<CipherName> {
        self.check_writable()?;
        let name = self.new_cipher_name(dir, plain)?;
        let tmp = temp_name().at(&dir.rel)?;
        let tmp_rel = dir.rel_child(&tmp);
        dir.fd.mkdir(&tmp, 0o700).at(&tmp_rel)?;
        let made = (|| {
            let child = dir.fd.open_dir(&tmp).at(&tmp_rel)?;
            let iv: [u8; DIRIV_LEN] = crypto::random_array()?;
            child
                .write_new(DIRIV_NAME.as_bytes(), &iv, 0o444)
                .at(tmp_rel.join(DIRIV_NAME))?;
            child.fsync().at(&tmp_rel)?;
            self.write_sidecar(dir, &name)?;
            dir.fd
                .rename(&tmp, &dir.fd, &name.entry, RENAME_NOREPLACE)
                .at(dir.rel_child(&name.entry))?;
            Ok(())
        })();
        if let Err(e) = made {
            if let Ok(child) = dir.fd.open_dir(&tmp) {
                let _ = child.unlink(DIRIV_NAME.as_bytes());
            }
            let _ = dir.fd.rmdir(&tmp);
            return Err(e);
        }
        dir.fd
            .chmod(&name.entry, mode & 0o7777)
            .at(dir.rel_child(&name.entry))?;
        // No fsync of the parent: like create, rename and unlink, the new entry is durable once
        // the caller fsyncs the parent (fsyncdir). The two fsyncs above are what keep a crash
        // from ever showing the directory without its diriv.
        Ok(name)
    }

    /// mknod of a regular file, fifo, socket or device.
    pub fn mknod(&self, dir: &Dir, plain: &[u8], mode: u32, rdev: u64) -> Result<CipherName> {
        self.check_writable()?;
        let name = self.new_cipher_name(dir, plain)?;
        self.write_sidecar(dir, &name)?;
        let rel = dir.rel_child(&name.entry);
        dir.fd.mknod(&name.entry, mode, rdev).at(&rel)?;
        // The kernel applied the caller's umask already; the daemon's own must not narrow
        // the mode further.
        let st = dir.fd.stat(&name.entry).at(&rel)?;
        if st.st_mode & 0o7777 != mode & 0o7777 {
            dir.fd.chmod(&name.entry, mode & 0o7777).at(&rel)?;
        }
        Ok(name)
    }

    /// Hard link of backing entry `old_entry` in `old_dir` as `new_plain` in `new_dir`.
    pub fn link(&self, old_dir: &Dir, old_entry: &[u8], new_dir: &Dir, new_plain: &[u8]) -> Result<CipherName> {
        self.check_writable()?;
        let name = self.new_cipher_name(new_dir, new_plain)?;
        // An out-of-line symlink target is named after its entry: the new name needs its own
        // copy, or the hard link would read as a symlink without a target.
        let old_link = link_name(old_entry);
        let new_link = link_name(&name.entry);
        let sealed_target = match old_dir.fd.read_small(&old_link, 8192) {
            Ok(sealed) => Some(sealed),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => None,
            Err(e) => return Err(VaultError::io(old_dir.rel_child(&old_link), e)),
        };
        if let Some(sealed) = &sealed_target {
            // Never overwrite the target sidecar of an existing entry.
            if new_dir.fd.stat(&name.entry).is_ok() {
                return Err(VaultError::errno_at(new_dir.rel_child(&name.entry), libc::EEXIST));
            }
            new_dir
                .fd
                .write_atomic(&new_link, sealed, 0o444)
                .at(new_dir.rel_child(&new_link))?;
        }
        self.write_sidecar(new_dir, &name)?;
        let r = old_dir
            .fd
            .link(old_entry, &new_dir.fd, &name.entry)
            .at(new_dir.rel_child(&name.entry));
        if let Err(e) = r {
            if e.errno() != libc::EEXIST {
                let _ = self.remove_sidecars_if_unused(new_dir, &name);
                if sealed_target.is_some() {
                    let _ = new_dir.fd.unlink(&new_link);
                }
            }
            return Err(e);
        }
        Ok(name)
    }

    fn remove_sidecars_if_unused(&self, dir: &Dir, name: &CipherName) -> Result<()> {
        if dir.fd.stat(&name.entry).is_err() {
            if let Some(l) = &name.long {
                ignore_enoent(dir.fd.unlink(&l.sidecar)).at(dir.rel_child(&l.sidecar))?;
            }
        }
        Ok(())
    }

    /// Removes a non-directory and its sidecars; returns the backing name it removed.
    pub fn unlink(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        self.check_writable()?;
        let name = self.resolve(dir, plain)?;
        dir.fd.unlink(&name.entry).at(dir.rel_child(&name.entry))?;
        self.remove_sidecars(dir, &name.entry)?;
        Ok(name)
    }

    /// Removes a directory that holds nothing but coffer's own files (diriv, temp files);
    /// returns the backing name it removed. Undecryptable or foreign entries make it fail
    /// with ENOTEMPTY and a log line.
    pub fn rmdir(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        self.check_writable()?;
        let name = self.resolve(dir, plain)?;
        let rel = dir.rel_child(&name.entry);
        let child = dir.fd.open_dir(&name.entry).at(&rel)?;
        let entries = child.list().at(&rel)?;
        let mut leftovers = Vec::new();
        for e in &entries {
            match classify(&e.name, self.params().name_encoding) {
                BackingName::Diriv => {}
                BackingName::Temp => leftovers.push(e.name.clone()),
                _ => {
                    if self.is_leftover(&e.name) {
                        leftovers.push(e.name.clone());
                    } else {
                        if !matches!(
                            classify(&e.name, self.params().name_encoding),
                            BackingName::Short(_) | BackingName::Long(_)
                        ) {
                            log::warn!(
                                "rmdir {}: not empty, holds {:?} which coffer cannot show",
                                rel.display(),
                                String::from_utf8_lossy(&e.name)
                            );
                        }
                        return Err(VaultError::errno_at(&rel, libc::ENOTEMPTY));
                    }
                }
            }
        }
        for l in &leftovers {
            remove_leftover(&child, l);
        }
        // Park the diriv in the parent while removing, so a failed rmdir can put it back.
        let parked = temp_name().at(&dir.rel)?;
        let has_iv = child.rename(DIRIV_NAME.as_bytes(), &dir.fd, &parked, 0).is_ok();
        if let Err(e) = dir.fd.rmdir(&name.entry) {
            if has_iv {
                let _ = dir.fd.rename(&parked, &child, DIRIV_NAME.as_bytes(), 0);
            }
            return Err(VaultError::io(rel, e));
        }
        if has_iv {
            let _ = dir.fd.unlink(&parked);
        }
        self.remove_sidecars(dir, &name.entry)?;
        Ok(name)
    }

    /// Whether a backing name inside a directory being removed is a leftover coffer may delete:
    /// its temp files, sync-client temp/metadata files, conflict copies of the diriv.
    fn is_leftover(&self, backing: &[u8]) -> bool {
        use crate::format::conflict;
        matches!(classify(backing, self.params().name_encoding), BackingName::Temp)
            || conflict::is_sync_client_file(backing)
            || conflict::parse_copy(backing, self.params().name_encoding)
                .iter()
                .any(|c| c.ext == "diriv")
    }

    /// rename / renameat2 with RENAME_NOREPLACE or RENAME_EXCHANGE. The new sidecar is written
    /// before the rename and the old one removed after; symlink target sidecars move along.
    pub fn rename(&self, from_dir: &Dir, from: &[u8], to_dir: &Dir, to: &[u8], flags: u32) -> Result<()> {
        self.check_writable()?;
        let a = self.resolve(from_dir, from)?;
        let b = self.resolve(to_dir, to)?;
        if flags & RENAME_EXCHANGE != 0 {
            self.write_sidecar(from_dir, &a)?;
            self.write_sidecar(to_dir, &b)?;
        } else {
            self.write_sidecar(to_dir, &b)?;
        }
        if flags & RENAME_EXCHANGE == 0 {
            // POSIX: renaming one hard link onto another of the same file does nothing (and
            // must not remove the source's sidecars).
            if let (Ok(sa), Ok(sb)) = (from_dir.fd.stat(&a.entry), to_dir.fd.stat(&b.entry)) {
                if (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino) {
                    return Ok(());
                }
            }
        }
        let a_link = link_name(&a.entry);
        let b_link = link_name(&b.entry);
        let a_has_link = from_dir.fd.stat(&a_link).is_ok();
        let b_has_link = to_dir.fd.stat(&b_link).is_ok();
        from_dir
            .fd
            .rename(&a.entry, &to_dir.fd, &b.entry, flags)
            .at(to_dir.rel_child(&b.entry))?;
        if flags & RENAME_EXCHANGE != 0 {
            // Both names stay in use; only the link sidecars follow their objects.
            match (a_has_link, b_has_link) {
                (true, true) => from_dir.fd.rename(&a_link, &to_dir.fd, &b_link, RENAME_EXCHANGE),
                (true, false) => from_dir.fd.rename(&a_link, &to_dir.fd, &b_link, 0),
                (false, true) => to_dir.fd.rename(&b_link, &from_dir.fd, &a_link, 0),
                (false, false) => Ok(()),
            }
            .at(to_dir.rel_child(&b_link))?;
            return Ok(());
        }
        if a.entry == b.entry && from_dir.rel == to_dir.rel {
            return Ok(());
        }
        if a_has_link {
            from_dir
                .fd
                .rename(&a_link, &to_dir.fd, &b_link, 0)
                .at(to_dir.rel_child(&b_link))?;
        } else if b_has_link {
            ignore_enoent(to_dir.fd.unlink(&b_link)).at(to_dir.rel_child(&b_link))?;
        }
        if let Some(hash) = self.long_hash_of(&a.entry) {
            self.prune_long_sidecars(from_dir, &hash)?;
        }
        Ok(())
    }
}

fn link_name(entry: &[u8]) -> Vec<u8> {
    let mut v = entry.to_vec();
    v.extend_from_slice(b".");
    v.extend_from_slice(backing_name::LINK_EXT.as_bytes());
    v
}

/// Removes a crash leftover `name` of `dir` (best effort): a file, or a temporary directory
/// holding nothing but its diriv and temporary files (what a crash inside mkdir leaves). A
/// temporary directory holding anything else is kept, and the rmdir then reports ENOTEMPTY.
fn remove_leftover(dir: &super::backing::DirFd, name: &[u8]) {
    if dir.unlink(name).is_ok() {
        return;
    }
    let Ok(sub) = dir.open_dir(name) else { return };
    let Ok(inner) = sub.list() else { return };
    let temp = backing_name::TEMP_PREFIX.as_bytes();
    let removable = |e: &super::backing::RawEntry| {
        (e.name == DIRIV_NAME.as_bytes() || e.name.starts_with(temp)) && e.d_type != libc::DT_DIR
    };
    if inner.iter().all(removable) {
        for e in &inner {
            let _ = sub.unlink(&e.name);
        }
    }
    let _ = dir.rmdir(name);
}
