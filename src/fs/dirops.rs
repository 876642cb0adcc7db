//! Directory operations: lookup, creating and removing names, rename, links, listings.

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};

use super::attr::{backing_id, kind_of, kind_of_dtype};
use super::core::{stale, CofferFs};
use super::handles::{DirEntry, DirHandle, DirState, NO_HANDLE};
use super::inodes::ROOT;
use super::ops::{Caller, EntryOut};
use crate::vault::{backing, Dir, IoContext, Result, VaultError};

impl CofferFs {
    pub(super) fn do_lookup(&self, parent: u64, name: &[u8]) -> Result<EntryOut> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let (cname, st) = self.vault.lookup(&dir, name)?;
        Ok(self.entry_reply(parent, name, &dir, &cname.entry, &st, true))
    }

    pub(super) fn do_forget(&self, ino: u64, n: u64) {
        let marked = self.marked_dir(ino, n);
        if self.table().forget(ino, n) {
            self.uncache_dir(ino);
            self.listings.lock().unwrap_or_else(|p| p.into_inner()).forget(ino);
            self.forget_watched(ino, marked.as_deref());
            self.memory.freed();
        }
    }

    /// Stats a freshly made `entry` and records it.
    fn made(&self, parent: u64, name: &[u8], dir: &crate::vault::Dir, entry: &[u8], who: Caller) -> Result<EntryOut> {
        self.set_owner(dir, entry, who.uid, who.gid)?;
        let st = dir.fd.stat(entry).at(dir.rel_child(entry))?;
        let out = self.entry(parent, name, dir, entry, &st);
        self.own_change(&st);
        Ok(out)
    }

    pub(super) fn do_mkdir(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> Result<EntryOut> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let pst = dir.fd.fstat().at(&dir.rel)?;
        let mut mode = mode & 0o7777;
        if pst.st_mode & libc::S_ISGID != 0 {
            mode |= libc::S_ISGID;
        }
        let cname = self.with_fds(|| self.vault.mkdir(&dir, name, mode))?;
        if self.chown_to_caller {
            self.set_owner(&dir, &cname.entry, who.uid, who.gid)?;
            // chown may drop the setgid bit; the requested mode stands.
            dir.fd.chmod(&cname.entry, mode).at(dir.rel_child(&cname.entry))?;
        }
        let st = dir.fd.stat(&cname.entry).at(dir.rel_child(&cname.entry))?;
        self.own_change(&st);
        self.own_arrival(parent, &cname);
        Ok(self.entry(parent, name, &dir, &cname.entry, &st))
    }

    pub(super) fn do_mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u32, who: Caller) -> Result<EntryOut> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let cname = self.vault.mknod(&dir, name, mode, u64::from(rdev))?;
        self.own_arrival(parent, &cname);
        self.made(parent, name, &dir, &cname.entry, who)
    }

    pub(super) fn do_symlink(&self, parent: u64, name: &[u8], target: &[u8], who: Caller) -> Result<EntryOut> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let cname = self.vault.symlink(&dir, name, target)?;
        self.own_arrival(parent, &cname);
        self.made(parent, name, &dir, &cname.entry, who)
    }

    pub(super) fn do_link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<EntryOut> {
        let _quiet = self.namespace_gate();
        let from = self.locate(ino)?;
        let to = self.dir(new_parent)?;
        let cname = self.vault.link(&from.dir, &from.entry, &to, new_name)?;
        self.own_arrival(new_parent, &cname);
        let st = to.fd.stat(&cname.entry).at(to.rel_child(&cname.entry))?;
        self.own_change(&st);
        Ok(self.entry(new_parent, new_name, &to, &cname.entry, &st))
    }

    pub(super) fn do_readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let l = self.locate(ino)?;
        self.vault.readlink(&l.dir, &l.entry)
    }

    pub(super) fn do_unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let removed = self.vault.unlink(&dir, name)?;
        self.own_removal(parent, &removed);
        self.table().remove_loc(&(parent, name.to_vec()));
        Ok(())
    }

    pub(super) fn do_rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let removed = self.vault.rmdir(&dir, name)?;
        self.own_removal(parent, &removed);
        if let Some(ino) = self.table().remove_loc(&(parent, name.to_vec())) {
            self.uncache_dir(ino);
        }
        Ok(())
    }

    pub(super) fn do_rename(
        &self,
        parent: u64,
        name: &[u8],
        new_parent: u64,
        new_name: &[u8],
        flags: u32,
    ) -> Result<()> {
        let _quiet = self.namespace_gate();
        let from = self.dir(parent)?;
        let to = self.dir(new_parent)?;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if self.recording().is_some() {
            if let Ok(moved) = self.vault.resolve(&from, name) {
                self.own_removal(parent, &moved);
            }
        }
        let mut dir_over_dir = false;
        if !exchange && flags & libc::RENAME_NOREPLACE == 0 {
            let (_, src) = self.vault.lookup(&from, name)?;
            if let Ok((_, dst)) = self.vault.lookup(&to, new_name) {
                let is_dir = |st: &libc::stat| st.st_mode & libc::S_IFMT == libc::S_IFDIR;
                dir_over_dir = is_dir(&src) && is_dir(&dst) && backing_id(&src) != backing_id(&dst);
            }
        }
        match self.vault.rename(&from, name, &to, new_name, flags) {
            // A directory over an empty directory (plain or RENAME_WHITEOUT): the backing
            // target still holds its diriv (ENOTEMPTY; EEXIST on xfs), so remove it (rmdir
            // checks it is empty in plaintext; if not, the backing's errno is the answer, as
            // the plain file system gives it) and rename again. Only after the backing took
            // the rename up to that check: a rename it refuses (ramfs has no RENAME_WHITEOUT)
            // leaves the target in place.
            Err(e) if dir_over_dir && matches!(e.errno(), libc::ENOTEMPTY | libc::EEXIST) => {
                match self.vault.rmdir(&to, new_name) {
                    // Not empty in plaintext either: the backing's own answer stands.
                    Err(r) if r.errno() == libc::ENOTEMPTY => return Err(e),
                    r => {
                        r?;
                    }
                }
                if let Some(ino) = self.table().remove_loc(&(new_parent, new_name.to_vec())) {
                    self.uncache_dir(ino);
                }
                self.vault.rename(&from, name, &to, new_name, flags)?;
            }
            r => r?,
        }
        let old = (parent, name.to_vec());
        let new = (new_parent, new_name.to_vec());
        let mut table = self.table();
        let replaced = if exchange { None } else { table.at(&new) };
        table.rename(&old, &new, exchange);
        drop(table);
        if let Some(ino) = replaced {
            self.uncache_dir(ino);
        }
        if self.recording().is_some() {
            // A rename changes the moved objects' ctime: the watcher's events must find them
            // as the mount left them.
            let mut moved = vec![(new_parent, &to, new_name)];
            if exchange {
                moved.push((parent, &from, name));
            }
            for (dir_ino, dir, plain) in moved {
                if let Ok((cname, st)) = self.vault.lookup(dir, plain) {
                    self.own_change(&st);
                    self.own_arrival(dir_ino, &cname);
                }
            }
        }
        Ok(())
    }

    /// The listing of directory `ino`: `.`, `..`, then every name that decrypts.
    fn snapshot(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let _quiet = self.namespace_gate();
        let dir = self.dir(ino)?;
        let dev = dir.fd.fstat().at(&dir.rel)?.st_dev;
        let listing = self.with_fds(|| self.vault.list(&dir))?;
        if self.vault.touch_atime().dirs {
            // strictatime: a listing is a read of the directory; a failed touch is only logged.
            if let Err(e) = backing::touch_atime(dir.fd.as_raw_fd()) {
                log::debug!("{}: setting the access time: {e}", dir.rel.display());
            }
        }
        let info = self.node(ino)?;
        let parent = info.locs.first().map_or(ROOT, |l| l.0);
        let mut out = DirEntry::dots(ino, parent, listing.len());
        let mut table = self.table();
        for e in listing {
            let kind = match kind_of_dtype(e.d_type) {
                Some(k) => k,
                None => match dir.fd.stat(&e.backing) {
                    Ok(st) => kind_of(st.st_mode),
                    Err(_) => continue,
                },
            };
            out.push(DirEntry {
                ino: table.number_for((dev, e.ino)),
                kind,
                name: e.plain,
            });
        }
        Ok(out)
    }

    pub(super) fn do_opendir(&self, ino: u64) -> Result<u64> {
        let info = self.node(ino)?;
        if info.fmt != libc::S_IFDIR {
            return Err(VaultError::inode(ino, libc::ENOTDIR));
        }
        // The listing waits for the first read: names made between opendir and readdir show,
        // as on a local file system. Opening the directory now reports what would fail.
        self.dir(ino)?;
        let state = DirState {
            entries: Arc::new(Vec::new()),
            served: false,
        };
        Ok(self.dirs.insert(DirHandle {
            ino,
            state: Mutex::new(state),
        }))
    }

    /// The snapshot of handle `fh` for a read at `offset`: a read at 0 (the first, or a
    /// rewind) lists the directory afresh.
    pub(super) fn do_readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        if fh == NO_HANDLE {
            return self.listing_without_handle(ino, offset);
        }
        let h = self.dirs.get(fh).ok_or_else(|| stale(ino))?;
        let mut state = h.state.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 || !state.served {
            state.entries = Arc::new(self.snapshot(h.ino)?);
        }
        state.served = true;
        Ok(state.entries.clone())
    }

    /// A read of directory `ino` opened without a handle (the kernel cache is on): a read at
    /// 0 lists afresh, a later one continues the listing it started.
    fn listing_without_handle(&self, ino: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        let listings = || self.listings.lock().unwrap_or_else(|p| p.into_inner());
        if offset != 0 {
            if let Some(l) = listings().get(ino) {
                return Ok(l);
            }
        }
        let fresh = Arc::new(self.snapshot(ino)?);
        listings().put(ino, fresh.clone());
        Ok(fresh)
    }

    /// One readdirplus entry: its attributes, counted as a lookup (None if it vanished since
    /// the snapshot). The caller undoes the lookup with `do_forget` if the reply is full.
    pub(super) fn plus_entry(&self, parent: u64, dir: &Dir, e: &DirEntry) -> Option<EntryOut> {
        let entry = self.vault.resolve(dir, &e.name).ok()?.entry;
        let st = dir.fd.stat(&entry).ok()?;
        Some(self.entry(parent, &e.name, dir, &entry, &st))
    }

    pub(super) fn do_releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    pub(super) fn do_fsyncdir(&self, ino: u64) -> Result<()> {
        let dir = self.dir(ino)?;
        dir.fd.fsync().at(&dir.rel)
    }
}
