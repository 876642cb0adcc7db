//! Rekey of a vault that a running mount serves (docs/FORMAT.md §15.7): the walk of
//! [`migrate`](super::migrate) asks the mount, through [`Live`], to hold back what would race
//! it. A file is sealed again under the mount's lock of it (reads, writes and truncates
//! through the mount wait), its new copy made durable, then, while no open, lookup or
//! namespace change runs, renamed over the old one, and every open handle of the old file is
//! pointed at the new one: a process that keeps a file open across the rekey writes into the
//! new copy.

use std::fs::File;

use super::backing::temp_name;
use super::dir::Dir;
use super::error::{IoContext, Result, VaultError};
use super::migrate::Migration;
use super::Vault;

/// What a walk of a mounted vault needs from the mount (implemented by the FUSE layer).
pub trait Live {
    /// Runs `f` holding the mount's lock of the backing object `st` (its reads, writes,
    /// truncates and xattr calls through the mount wait). `f` is told whether the mount knew
    /// the object (had a node for it) when the lock was taken.
    fn with_object_locked(&self, st: &libc::stat, f: &mut dyn FnMut(bool) -> Result<()>) -> Result<()>;
    /// Whether the mount knows the backing object `st` now (could have opened it).
    fn knows(&self, st: &libc::stat) -> bool;
    /// Runs `f` while no lookup, open, create or namespace change runs through the mount.
    fn quiet(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()>;
    /// Called inside [`quiet`](Live::quiet) before the file `old` is renamed over by `new`
    /// (open, read-write): prepares what may fail (a descriptor of `new` for each open handle
    /// of `old`) and returns the step, run right after the rename, that points those handles
    /// at `new` and cannot fail.
    fn replacing<'a>(&'a self, old: &libc::stat, new: &File) -> Result<Box<dyn FnOnce() + 'a>>;
    /// Whether the walk should stop at the next object (the client went away).
    fn stop(&self) -> bool;
}

/// Whether `a` and `b` are the same backing object, unchanged: same inode, size, and
/// modification and change times (any write through the mount changes the change time).
pub(super) fn unchanged(a: &libc::stat, b: &libc::stat) -> bool {
    (
        a.st_dev,
        a.st_ino,
        a.st_size,
        a.st_mtime,
        a.st_mtime_nsec,
        a.st_ctime,
        a.st_ctime_nsec,
    ) == (
        b.st_dev,
        b.st_ino,
        b.st_size,
        b.st_mtime,
        b.st_mtime_nsec,
        b.st_ctime,
        b.st_ctime_nsec,
    )
}

impl Vault {
    /// Seals regular file `backing` of `dir` (stat `st`) again under the newest epoch while a
    /// mount serves the vault. A file that changed or was opened through the mount while it
    /// was being copied is left as it was and counted in [`Migration::changed`] (the next pass
    /// takes it); a hard-linked file is left and reported (its other names could be written
    /// through meanwhile).
    pub(super) fn move_file_live(
        &self,
        live: &dyn Live,
        dir: &Dir,
        backing: &[u8],
        st: &libc::stat,
        out: &mut Migration,
    ) -> Result<()> {
        let rel = dir.rel_child(backing);
        if st.st_nlink > 1 {
            let old = self.open_file(dir, backing, false)?;
            if old.header()?.is_some_and(|h| !self.header_current(&h)) {
                out.left.push(format!(
                    "{}: a hard-linked file is moved only while the vault is not mounted",
                    rel.display()
                ));
            }
            return Ok(());
        }
        let mut moved = None;
        let mut changed = false;
        live.with_object_locked(st, &mut |held| {
            let now = dir.fd.stat(backing).at(&rel)?;
            if now.st_ino != st.st_ino || now.st_dev != st.st_dev {
                changed = true;
                return Ok(());
            }
            let old = self.open_file(dir, backing, false)?;
            let Some(h) = old.header()? else { return Ok(()) };
            if self.header_current(&h) {
                return Ok(());
            }
            let len = old.plain_len()?;
            let tmp = temp_name().at(&dir.rel)?;
            let made = self.reseal_into(dir, &old, &h, &tmp, &now, len).and_then(|new| {
                new.sync_all().at(dir.rel_child(&tmp))?;
                Ok(new)
            });
            let new = match made {
                Ok(new) => new,
                Err(e) => {
                    let _ = dir.fd.unlink(&tmp);
                    return Err(e);
                }
            };
            let swapped = live.quiet(&mut || {
                let cur = dir.fd.stat(backing).at(&rel)?;
                if (!held && live.knows(&now)) || !unchanged(&cur, &now) {
                    return Err(VaultError::errno_at(rel.clone(), libc::EAGAIN));
                }
                let commit = live.replacing(&now, &new)?;
                dir.fd.rename(&tmp, &dir.fd, backing, 0).at(&rel)?;
                commit();
                // The rename is made durable before anything is written to the new copy
                // through a handle: a crash must not bring back the old file after an
                // fsync of the new one.
                if let Err(e) = dir.fd.fsync() {
                    log::warn!("{}: {e}", dir.rel.display());
                }
                Ok(())
            });
            match swapped {
                Ok(()) => moved = Some(len),
                Err(e) => {
                    let _ = dir.fd.unlink(&tmp);
                    if e.errno() == libc::EAGAIN {
                        changed = true;
                    } else {
                        return Err(e);
                    }
                }
            }
            Ok(())
        })?;
        if let Some(len) = moved {
            out.files += 1;
            out.bytes += len;
        } else if changed {
            out.changed += 1;
        }
        Ok(())
    }
}
