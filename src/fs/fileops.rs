//! File operations: open/create, read/write under the inode lock, truncate, fallocate, lseek,
//! fsync, release.

use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, RwLockReadGuard, RwLockWriteGuard};

use super::attr::backing_id;
use super::core::{stale, CofferFs};
use super::handles::FileHandle;
use super::inodes::NodeInfo;
use super::ops::{Caller, EntryOut};
use crate::vault::{backing, CryptFile, IoContext, Result, VaultError};

/// Shared hold of an inode lock (poisoning is ignored: the data lives in the backing file).
pub fn read_lock(l: &std::sync::RwLock<()>) -> RwLockReadGuard<'_, ()> {
    l.read().unwrap_or_else(|p| p.into_inner())
}

/// Exclusive hold of an inode lock.
pub fn write_lock(l: &std::sync::RwLock<()>) -> RwLockWriteGuard<'_, ()> {
    l.write().unwrap_or_else(|p| p.into_inner())
}

/// The permission bits of `mode` with set-user-ID cleared, and set-group-ID when the group
/// may execute (what a write or truncate by an unprivileged caller does); None when unchanged.
pub fn without_set_id(mode: u32) -> Option<u32> {
    let mut kill = libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        kill |= libc::S_ISGID;
    }
    (mode & kill != 0).then_some(mode & 0o7777 & !kill)
}

/// Whether `e` says the object has no name left (unlinked, or renamed away while open): only
/// then may a call by name fall back to an open handle. Any other failure (EACCES above all)
/// stands, as an open descriptor lends no permission to calls made by name.
pub fn has_no_name(e: &VaultError) -> bool {
    matches!(e.errno(), libc::ENOENT | libc::ESTALE)
}

/// Like [`without_set_id`] for a caller who may not be in the file's group (`in_group`
/// false): then set-group-ID goes even without group execute, as the kernel does.
pub fn without_set_id_by(mode: u32, in_group: bool) -> Option<u32> {
    if in_group || mode & libc::S_ISGID == 0 {
        return without_set_id(mode);
    }
    Some(mode & 0o7777 & !(libc::S_ISUID | libc::S_ISGID))
}

fn is_write(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY
}

/// How often a call that opened a file by name opens it again after finding it replaced.
const FRESH_TRIES: usize = 3;

/// Runs `op` (a call on node `ino` that opens its file by name, then takes the file's lock)
/// until it gives a result: `None` means the file it opened was replaced by the time it held
/// the lock (a rekey of the mount renamed a new copy over it, or a sync client did), and it
/// runs again on the file there now. A file replaced at every try gives EAGAIN.
pub(super) fn fresh<R>(ino: u64, mut op: impl FnMut() -> Result<Option<R>>) -> Result<R> {
    for _ in 0..FRESH_TRIES {
        if let Some(r) = op()? {
            return Ok(r);
        }
    }
    Err(VaultError::inode(ino, libc::EAGAIN))
}

/// Whether `file` has no name left (it was unlinked or renamed over since it was opened):
/// what is written to it is lost with it.
pub(super) fn unlinked(file: &CryptFile) -> bool {
    backing::fstat(file.backing().as_raw_fd()).is_ok_and(|st| st.st_nlink == 0)
}

impl CofferFs {
    /// The open handle `fh` on `ino`.
    pub(super) fn handle(&self, ino: u64, fh: u64) -> Result<Arc<FileHandle>> {
        self.activity.touch();
        self.files
            .get(fh)
            .filter(|h| h.ino == ino)
            .ok_or_else(|| VaultError::handle(ino, fh, libc::EBADF))
    }

    /// Opens the backing file of `ino` (read-write when `write`), checked to be the same object.
    pub(super) fn open_backing(&self, ino: u64, info: &NodeInfo, write: bool) -> Result<CryptFile> {
        match info.fmt {
            libc::S_IFREG => {}
            libc::S_IFDIR => return Err(VaultError::inode(ino, libc::EISDIR)),
            _ => return Err(VaultError::inode(ino, libc::EINVAL)),
        }
        if write && self.vault.read_only() {
            return Err(VaultError::ReadOnly);
        }
        // Callers without the namespace gate (xattr calls, truncate by path) can meet a rekey
        // of the running mount renaming the entry between the search and the open, or its
        // new copy between the open and the check: looked for again, on fresh node data.
        let mut info = info.clone();
        let mut tries = 0;
        loop {
            let l = self.locate_with(ino, &info)?;
            let opened = self.with_fds(|| self.vault.open_file(&l.dir, &l.entry, write));
            let moved_meanwhile = match &opened {
                Ok(file) => {
                    let st = backing::fstat(file.backing().as_raw_fd()).at(file.rel())?;
                    backing_id(&st) != info.backing
                }
                Err(e) => e.errno() == libc::ENOENT,
            };
            if !moved_meanwhile {
                return opened;
            }
            tries += 1;
            if tries >= 4 {
                return match opened {
                    Ok(_) => Err(stale(ino)),
                    Err(e) => Err(e),
                };
            }
            self.wait_for_moves();
            let fresh = self.node(ino)?;
            if fresh.generation != info.generation {
                return Err(stale(ino));
            }
            info = fresh;
        }
    }

    pub(super) fn do_open(&self, ino: u64, flags: i32) -> Result<u64> {
        let info = self.node(ino)?;
        // Read-write even for O_WRONLY: partial-block rewrites and the header need reads.
        let write = is_write(flags);
        // Opened and registered as one step for a rekey of the running mount: a handle is
        // either there to be pointed at a file's new copy, or opens the new copy.
        let _quiet = self.namespace_gate();
        let file = self
            .open_backing(ino, &info, write)
            .inspect_err(|e| self.after_failure(e))?;
        self.activity.opened();
        let fh = self.files.insert(FileHandle::new(ino, file, info.lock, write));
        self.table().opened(ino);
        Ok(fh)
    }

    pub(super) fn do_create(
        &self,
        parent: u64,
        name: &[u8],
        mode: u32,
        flags: i32,
        who: Caller,
    ) -> Result<(EntryOut, u64)> {
        let quiet = self.namespace_gate();
        let dir = self.dir(parent)?;
        let (file, cname) = match self.with_fds(|| self.vault.create_file(&dir, name, mode)) {
            Ok(made) => made,
            Err(e) if e.errno() == libc::EEXIST && flags & libc::O_EXCL == 0 => {
                drop(quiet);
                return self.create_lost_race(parent, name, flags);
            }
            Err(e) => return Err(e),
        };
        let rel = file.rel().to_path_buf();
        // The daemon's umask must not narrow the mode the kernel already masked.
        let mut st = backing::fstat(file.backing().as_raw_fd()).at(&rel)?;
        let chmod = st.st_mode & 0o7777 != mode & 0o7777;
        if chmod {
            file.backing()
                .set_permissions(std::fs::Permissions::from_mode(mode & 0o7777))
                .at(&rel)?;
        }
        if self.set_owner(&dir, &cname.entry, who.uid, who.gid)? || chmod {
            st = backing::fstat(file.backing().as_raw_fd()).at(&rel)?;
        }
        // After the node exists, so that it keeps the stamp its close is judged by.
        let out = self.entry(parent, name, &dir, &cname.entry, &st);
        self.own_change(&st);
        self.own_arrival(parent, &cname);
        let info = self.node(out.0.ino.0)?;
        self.activity.opened();
        let fh = self.files.insert(FileHandle::new(out.0.ino.0, file, info.lock, true));
        self.table().opened(out.0.ino.0);
        Ok((out, fh))
    }

    /// A create that lost a race with another creator (without O_EXCL): opens what is there.
    fn create_lost_race(&self, parent: u64, name: &[u8], flags: i32) -> Result<(EntryOut, u64)> {
        let out = self.do_lookup(parent, name)?;
        let ino = out.0.ino.0;
        let fh = self.do_open(ino, flags)?;
        if flags & libc::O_TRUNC != 0 {
            self.truncate(ino, Some(fh), 0)?;
        }
        Ok((out, fh))
    }

    /// Reads into `buf` (stale bytes past what is read are left as they are); returns how
    /// many bytes were read.
    pub(super) fn do_read(&self, ino: u64, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let h = self.handle(ino, fh)?;
        let _g = read_lock(&h.lock);
        let read = h.file().read_at(buf, offset);
        self.log_notices(ino, &h.file());
        let n = read.inspect_err(|e| self.after_failure(e))?;
        if self.vault.touch_atime().files {
            // strictatime: the read has been served; a failed touch is only logged.
            if let Err(e) = backing::touch_atime(h.file().backing().as_raw_fd()) {
                log::debug!("{}: setting the access time: {e}", h.file().rel().display());
            }
        }
        Ok(n)
    }

    /// Writes at `offset`, or with `append` at the vault's end of file under the inode lock.
    /// Writes `data` at `offset` (at EOF when `append`); `kill_privs` (a caller without
    /// CAP_FSETID) clears the set-user-ID bit, and set-group-ID when group-executable.
    pub(super) fn do_write(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        data: &[u8],
        append: bool,
        kill_privs: bool,
    ) -> Result<u32> {
        let h = self.handle(ino, fh)?;
        if !h.writable {
            return Err(VaultError::errno_at(h.file().rel(), libc::EBADF));
        }
        let _g = write_lock(&h.lock);
        let off = if append { h.file().plain_len()? } else { offset };
        let had_set_id = kill_privs && {
            let st = backing::fstat(h.file().backing().as_raw_fd()).at(h.file().rel())?;
            without_set_id(st.st_mode).is_some()
        };
        let wrote = h.file().write_at(data, off);
        self.log_notices(ino, &h.file());
        wrote?;
        let kick = h
            .stream
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .wrote(off, data.len() as u64);
        if let Some((from, len)) = kick {
            h.file().start_writeback(from, len);
        }
        if had_set_id {
            // The backing write itself clears them when the daemon is not root.
            let st = backing::fstat(h.file().backing().as_raw_fd()).at(h.file().rel())?;
            if let Some(mode) = without_set_id(st.st_mode) {
                h.file()
                    .backing()
                    .set_permissions(std::fs::Permissions::from_mode(mode))
                    .at(h.file().rel())?;
            }
            // The kernel keeps the old mode cached otherwise (a write only refreshes size/times).
            self.invalidate_attr(ino);
        }
        self.own_change_fd(h.file().backing());
        Ok(data.len() as u32)
    }

    /// Truncates `ino` to `size` plaintext bytes, through `fh` when it is writable.
    pub(super) fn truncate(&self, ino: u64, fh: Option<u64>, size: u64) -> Result<()> {
        if let Some(h) = fh
            .and_then(|fh| self.files.get(fh))
            .filter(|h| h.writable && h.ino == ino)
        {
            let _g = write_lock(&h.lock);
            return self.set_len_of(ino, &h.file(), size);
        }
        let info = self.node(ino)?;
        fresh(ino, || {
            let file = match self.open_backing(ino, &info, true) {
                Ok(f) => f,
                Err(e) if has_no_name(&e) => {
                    // Unlinked but open: truncate through an open writable descriptor.
                    let h = self.files.find(|h| h.ino == ino && h.writable).ok_or(e)?;
                    let _g = write_lock(&h.lock);
                    return self.set_len_of(ino, &h.file(), size).map(Some);
                }
                Err(e) => return Err(e),
            };
            let _g = write_lock(&info.lock);
            if unlinked(&file) {
                return Ok(None);
            }
            self.set_len_of(ino, &file, size).map(Some)
        })
    }

    /// Truncates or grows `file` of `ino` through the vault, logging what it found.
    fn set_len_of(&self, ino: u64, file: &CryptFile, size: u64) -> Result<()> {
        let r = self.vault.set_len(file, size);
        self.log_notices(ino, file);
        r
    }

    pub(super) fn do_release(&self, fh: u64) {
        if let Some(h) = self.files.remove(fh) {
            if h.writable {
                // Closing a descriptor open for writing is an event (IN_CLOSE_WRITE).
                self.own_close(&h);
            }
            if self.table().closed(h.ino) {
                self.retire_after_release(h.ino);
            }
            drop(h);
            self.activity.closed();
        }
    }

    pub(super) fn do_fsync(&self, ino: u64, fh: u64, datasync: bool) -> Result<()> {
        let h = self.handle(ino, fh)?;
        h.file().sync(datasync)
    }

    /// fallocate: mode 0 reserves the backing space of the range (ENOSPC before anything
    /// changes), then grows the file through the vault (the reserved blocks read as holes);
    /// by a caller other than root it clears set-ID bits as a write does. KEEP_SIZE has
    /// nothing to reserve; punching and zeroing ranges are refused.
    pub(super) fn do_fallocate(
        &self,
        ino: u64,
        fh: u64,
        offset: u64,
        length: u64,
        mode: i32,
        who: Caller,
    ) -> Result<()> {
        let h = self.handle(ino, fh)?;
        match mode {
            0 => {
                let end = offset
                    .checked_add(length)
                    .ok_or_else(|| VaultError::errno_at(h.file().rel(), libc::EFBIG))?;
                let _g = write_lock(&h.lock);
                h.file().reserve(offset, length)?;
                if end > h.file().plain_len()? {
                    self.set_len_of(ino, &h.file(), end)?;
                }
                if who.uid != 0 {
                    self.kill_set_id_for(ino, &h, who)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(VaultError::Unsupported("fallocate modes other than 0 and KEEP_SIZE")),
        }
    }

    /// Clears set-user-ID, and set-group-ID when group-executable or when `who` is not in the
    /// file's group (the kernel's rule for a change by a caller without CAP_FSETID).
    fn kill_set_id_for(&self, ino: u64, h: &FileHandle, who: Caller) -> Result<()> {
        let st = backing::fstat(h.file().backing().as_raw_fd()).at(h.file().rel())?;
        if let Some(mode) = without_set_id_by(st.st_mode, st.st_gid == who.gid) {
            h.file()
                .backing()
                .set_permissions(std::fs::Permissions::from_mode(mode))
                .at(h.file().rel())?;
            self.invalidate_attr(ino);
        }
        Ok(())
    }

    /// SEEK_DATA / SEEK_HOLE in plaintext offsets (the kernel answers the other whences).
    pub(super) fn do_lseek(&self, ino: u64, fh: u64, offset: i64, whence: i32) -> Result<i64> {
        let h = self.handle(ino, fh)?;
        let nxio = || VaultError::errno_at(h.file().rel(), libc::ENXIO);
        match whence {
            libc::SEEK_DATA | libc::SEEK_HOLE => {
                let off = u64::try_from(offset).map_err(|_| nxio())?;
                let _g = read_lock(&h.lock);
                match h.file().seek_data_hole(off, whence == libc::SEEK_DATA)? {
                    Some(o) => Ok(o as i64),
                    None => Err(nxio()),
                }
            }
            libc::SEEK_SET => Ok(offset),
            libc::SEEK_END => {
                let _g = read_lock(&h.lock);
                Ok(h.file().plain_len()? as i64 + offset)
            }
            _ => Err(VaultError::errno_at(h.file().rel(), libc::EINVAL)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::without_set_id;

    #[test]
    fn set_id_bits_cleared_as_the_kernel_does() {
        assert_eq!(without_set_id(libc::S_IFREG | 0o4755), Some(0o755));
        assert_eq!(without_set_id(libc::S_IFREG | 0o6755), Some(0o755));
        // Set-group-ID without group execute marks mandatory locking: kept.
        assert_eq!(without_set_id(libc::S_IFREG | 0o2745), None);
        assert_eq!(without_set_id(libc::S_IFREG | 0o6745), Some(0o2745));
        assert_eq!(without_set_id(libc::S_IFREG | 0o755), None);
    }

    #[test]
    fn set_group_id_goes_for_a_caller_outside_the_group() {
        use super::without_set_id_by;
        assert_eq!(without_set_id_by(libc::S_IFREG | 0o6666, true), Some(0o2666));
        assert_eq!(without_set_id_by(libc::S_IFREG | 0o6666, false), Some(0o666));
        assert_eq!(without_set_id_by(libc::S_IFREG | 0o2644, false), Some(0o644));
        assert_eq!(without_set_id_by(libc::S_IFREG | 0o2644, true), None);
        assert_eq!(without_set_id_by(libc::S_IFREG | 0o644, false), None);
    }
}
