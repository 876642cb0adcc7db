//! New copies of hard-linked files that a rekey keeps under a name of their own at the root of
//! CIPHERDIR (docs/FORMAT.md §15.7) until every name of the file points at them. A walk that
//! stops between two names of one file (Ctrl-C, kill -9, a crash) leaves some names on the
//! old copy and some on the new one; the next walk finds the new copy by the old file's ID and
//! points the remaining names at it instead of sealing another copy, so the names end up as
//! one file again. A kept copy is used only while it still matches the old file (same length,
//! modification time and xattrs): once either side was written through the names it holds,
//! the two are different files and each keeps its own writes.

use std::collections::HashSet;
use std::fs::File;
use std::os::fd::AsRawFd;

use crate::format::backing_name::{link_copy_name, parse_link_copy};
use crate::format::header::FileHeader;

use super::dir::Dir;
use super::error::{IoContext, Result};
use super::{CryptFile, Vault};

/// The kept copies a walk found at its start, by the old file's ID, with the root directory
/// they live in.
pub(super) struct LinkCopies {
    root: Dir,
    ids: HashSet<[u8; 16]>,
}

impl LinkCopies {
    /// The kept copies in the root of `vault`.
    pub(super) fn scan(vault: &Vault) -> Result<Self> {
        let root = vault.root_dir()?;
        let ids = root
            .fd
            .list()
            .at(&root.rel)?
            .iter()
            .filter_map(|e| parse_link_copy(&e.name))
            .collect();
        Ok(LinkCopies { root, ids })
    }

    /// Whether any kept copy was found.
    pub(super) fn any(&self) -> bool {
        !self.ids.is_empty()
    }
}

impl Vault {
    /// The kept new copy of the old file `old` (header `h`, stat `st`), open read-write, when
    /// one exists and still matches it; a kept copy that no longer matches, or is not sealed
    /// under the newest epoch, is removed (the old file is then sealed afresh).
    pub(super) fn kept_link_copy(
        &self,
        copies: &mut LinkCopies,
        old: &CryptFile,
        h: &FileHeader,
        st: &libc::stat,
    ) -> Result<Option<File>> {
        if !copies.ids.contains(&h.file_id) {
            return Ok(None);
        }
        let name = link_copy_name(&h.file_id);
        let root = &copies.root;
        let rel = root.rel_child(&name);
        let file = match root.fd.open_file(&name, true, None) {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                copies.ids.remove(&h.file_id);
                return Ok(None);
            }
            Err(e) => return Err(e).at(&rel),
        };
        let kept = self.crypt_file(file, rel.clone());
        if self.kept_matches(&kept, old, h, st)? {
            return kept.backing().try_clone().at(&rel).map(Some);
        }
        log::info!(
            "{}: the old copy or the kept new copy of a hard-linked file changed since a rekey was stopped; \
             the old copy is sealed again on its own",
            old.rel().display()
        );
        root.fd.unlink(&name).at(&rel)?;
        copies.ids.remove(&h.file_id);
        Ok(None)
    }

    /// Whether kept copy `kept` holds what the old file `old` holds: sealed under the newest
    /// epoch, same plaintext length, same modification time (the walk copied it along, and a
    /// write through either sets it anew) and the same xattrs.
    fn kept_matches(&self, kept: &CryptFile, old: &CryptFile, h: &FileHeader, st: &libc::stat) -> Result<bool> {
        let Some(kh) = kept.header()? else { return Ok(false) };
        if !self.header_current(&kh) || kept.plain_len()? != old.plain_len()? {
            return Ok(false);
        }
        let kst = super::backing::fstat(kept.backing().as_raw_fd()).at(kept.rel())?;
        if (kst.st_mtime, kst.st_mtime_nsec) != (st.st_mtime, st.st_mtime_nsec) {
            return Ok(false);
        }
        let (kfd, ofd) = (kept.backing().as_raw_fd(), old.backing().as_raw_fd());
        let mut kept_names = self.xattr_list(kfd, &kh.file_id)?;
        let mut old_names = self.xattr_list(ofd, &h.file_id)?;
        kept_names.sort();
        old_names.sort();
        if kept_names != old_names {
            return Ok(false);
        }
        for n in &old_names {
            if self.xattr_get(kfd, &kh.file_id, n)? != self.xattr_get(ofd, &h.file_id, n)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Keeps `new`, the new copy of the hard-linked file whose old file ID is `id`, at the
    /// root: its contents made durable first, then the name, so that a kept copy found after
    /// a crash is whole.
    pub(super) fn keep_link_copy(&self, copies: &mut LinkCopies, id: &[u8; 16], new: &File) -> Result<()> {
        let name = link_copy_name(id);
        let root = &copies.root;
        let rel = root.rel_child(&name);
        new.sync_all().at(&rel)?;
        match root.fd.unlink(&name) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
            Err(e) => return Err(e).at(&rel),
        }
        root.fd.link_open_file(new, &name).at(&rel)?;
        root.fd.fsync().at(&root.rel)?;
        copies.ids.insert(*id);
        Ok(())
    }

    /// Removes the kept copy for old file ID `id` (every name points at the new copy now).
    pub(super) fn drop_link_copy(&self, copies: &mut LinkCopies, id: &[u8; 16]) {
        let name = link_copy_name(id);
        if let Err(e) = copies.root.fd.unlink(&name) {
            if e.raw_os_error() != Some(libc::ENOENT) {
                log::warn!("{}: {e}", copies.root.rel_child(&name).display());
            }
        }
        copies.ids.remove(id);
    }

    /// Removes every kept copy in the root: called once a walk went through the whole tree,
    /// when each name it met points at its file's new copy.
    pub(super) fn drop_all_link_copies(&self, copies: &mut LinkCopies) -> Result<()> {
        let root = &copies.root;
        let mut removed = false;
        for e in root.fd.list().at(&root.rel)? {
            if parse_link_copy(&e.name).is_some() {
                match root.fd.unlink(&e.name) {
                    Ok(()) => removed = true,
                    Err(err) => log::warn!("{}: {err}", root.rel_child(&e.name).display()),
                }
            }
        }
        copies.ids.clear();
        if removed {
            root.fd.fsync().at(&root.rel)?;
        }
        Ok(())
    }
}
