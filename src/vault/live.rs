//! Rekey of a vault that a running mount serves (docs/FORMAT.md §15.7): the walk of
//! [`migrate`](super::migrate) asks the mount, through [`Live`], to hold back what would race
//! it. A file is sealed again under the mount's lock of it (reads, writes and truncates
//! through the mount wait), its new copy made durable, then, while no open, lookup or
//! namespace change runs, renamed over the old one, and every open handle of the old file is
//! pointed at the new one: a process that keeps a file open across the rekey writes into the
//! new copy.

use std::fs::File;
use std::os::unix::ffi::OsStrExt;

use std::collections::HashMap;
use std::path::PathBuf;

use super::backing::{temp_name, DirFd};
use super::dir::Dir;
use super::error::{IoContext, Result, VaultError};
use super::link_copies::LinkCopies;
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

/// Most names of one hard-linked file a walk of a mounted vault moves together.
const MAX_LINK_NAMES: usize = 64;

/// One name of a hard-linked file met by the walk.
struct LinkName {
    /// Its directory's backing path (for messages, and to open it again).
    dir: PathBuf,
    /// The directory's (st_dev, st_ino) when it was met: the path is trusted only while it
    /// still leads there.
    dir_id: (u64, u64),
    /// The backing name.
    name: Vec<u8>,
}

/// The names met of one hard-linked file under an older epoch.
struct LinkGroup {
    st: libc::stat,
    names: Vec<LinkName>,
}

/// The hard-linked files a walk of a mounted vault met, by backing (st_dev, st_ino).
#[derive(Default)]
pub(super) struct LiveLinks(HashMap<(u64, u64), LinkGroup>);

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
    /// takes it); a hard-linked file is only noted in `links`: it is moved once all its names
    /// were met ([`move_links_live`](Self::move_links_live)).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn move_file_live(
        &self,
        live: &dyn Live,
        dir: &Dir,
        backing: &[u8],
        st: &libc::stat,
        out: &mut Migration,
        links: &mut LiveLinks,
        copies: &mut LinkCopies,
    ) -> Result<()> {
        let rel = dir.rel_child(backing);
        if st.st_nlink > 1 {
            let old = self.open_file(dir, backing, false)?;
            if old.header()?.is_some_and(|h| !self.header_current(&h)) {
                let at = dir.fd.fstat().at(&dir.rel)?;
                let group = links.0.entry((st.st_dev, st.st_ino)).or_insert_with(|| LinkGroup {
                    st: *st,
                    names: Vec::new(),
                });
                if group.names.len() < MAX_LINK_NAMES {
                    group.names.push(LinkName {
                        dir: dir.rel.clone(),
                        dir_id: (at.st_dev, at.st_ino),
                        name: backing.to_vec(),
                    });
                }
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
            let Some(NewCopy {
                file: new,
                tmp,
                len,
                id,
                reused,
            }) = self.durable_copy(dir, backing, &now, copies)?
            else {
                return Ok(());
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
                Ok(()) => {
                    if reused {
                        // The file's last name on its old copy now points at the kept one.
                        self.drop_link_copy(copies, &id);
                    }
                    moved = Some(len);
                }
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

/// A file's new copy under a temporary name beside the name it replaces, durable.
struct NewCopy {
    /// Open read-write.
    file: File,
    /// The temporary's name.
    tmp: Vec<u8>,
    /// The plaintext length.
    len: u64,
    /// The old file's ID.
    id: [u8; 16],
    /// Whether this is a copy an earlier walk kept ([`LinkCopies`]), linked under `tmp`.
    reused: bool,
}

impl Vault {
    /// The file `name` of `dir` (stat `now`) sealed again under the newest epoch into a
    /// temporary beside it, made durable, or the copy an earlier walk stopped between the
    /// file's names kept for it. `None` when nothing is to move (no header, or already
    /// current). On failure the temporary is gone.
    fn durable_copy(
        &self,
        dir: &Dir,
        name: &[u8],
        now: &libc::stat,
        copies: &mut LinkCopies,
    ) -> Result<Option<NewCopy>> {
        let old = self.open_file(dir, name, false)?;
        let Some(h) = old.header()? else { return Ok(None) };
        if self.header_current(&h) {
            return Ok(None);
        }
        let len = old.plain_len()?;
        let tmp = temp_name().at(&dir.rel)?;
        if let Some(kept) = self.kept_link_copy(copies, &old, &h, now)? {
            dir.fd.link_open_file(&kept, &tmp).at(dir.rel_child(&tmp))?;
            return Ok(Some(NewCopy {
                file: kept,
                tmp,
                len,
                id: h.file_id,
                reused: true,
            }));
        }
        let made = self.reseal_into(dir, &old, &h, &tmp, now, len).and_then(|new| {
            new.sync_all().at(dir.rel_child(&tmp))?;
            Ok(new)
        });
        match made {
            Ok(file) => Ok(Some(NewCopy {
                file,
                tmp,
                len,
                id: h.file_id,
                reused: false,
            })),
            Err(e) => {
                let _ = dir.fd.unlink(&tmp);
                Err(e)
            }
        }
    }

    /// Moves each hard-linked file of `links` whose every name the walk met: sealed once under
    /// the mount's lock of it, then, while nothing runs through the mount, each name pointed
    /// at the new copy (a link to it under a temporary name in the name's directory, renamed
    /// over the name), the directories made durable and the mount's handles and node pointed
    /// at it. A file with names the walk did not meet (outside the vault, or more than
    /// [`MAX_LINK_NAMES`]) is left and reported; one that changed meanwhile is counted in
    /// [`Migration::changed`] for another pass. `guard` is asked before each file.
    pub(super) fn move_links_live(
        &self,
        live: &dyn Live,
        links: LiveLinks,
        out: &mut Migration,
        guard: &mut dyn FnMut() -> Result<()>,
        copies: &mut LinkCopies,
    ) -> Result<()> {
        for (_, group) in links.0 {
            if live.stop() {
                out.stopped = true;
                return Ok(());
            }
            guard()?;
            let first = group.names[0]
                .dir
                .join(std::ffi::OsStr::from_bytes(&group.names[0].name));
            if group.names.len() as u64 != group.st.st_nlink {
                out.left.push(format!(
                    "{}: {} of its {} hard links are in the vault; it is moved only when all are",
                    first.display(),
                    group.names.len(),
                    group.st.st_nlink
                ));
                continue;
            }
            match self.move_link_group_live(live, &group, copies) {
                Ok(Some(len)) => {
                    out.files += 1;
                    out.bytes += len;
                    out.links += group.names.len() as u64 - 1;
                }
                Ok(None) => {}
                Err(e) if e.errno() == libc::EAGAIN => out.changed += 1,
                Err(e) => out.left.push(format!("{}: {e}", first.display())),
            }
        }
        Ok(())
    }

    /// One group of [`move_links_live`](Self::move_links_live): the moved plaintext length,
    /// `None` when nothing was to move, EAGAIN when the file or a name changed meanwhile.
    /// The new copy is kept in `copies` until every name points at it.
    fn move_link_group_live(&self, live: &dyn Live, group: &LinkGroup, copies: &mut LinkCopies) -> Result<Option<u64>> {
        let mut dirs: Vec<Dir> = Vec::with_capacity(group.names.len());
        for n in &group.names {
            let dir = if n.dir.as_os_str().is_empty() {
                self.root_dir()?
            } else {
                let fd = DirFd::open_path(&self.cipherdir().join(&n.dir)).at(&n.dir)?;
                Dir::from_fd(fd, n.dir.clone())?
            };
            let at = dir.fd.fstat().at(&n.dir)?;
            if (at.st_dev, at.st_ino) != n.dir_id {
                return Err(VaultError::errno_at(n.dir.clone(), libc::EAGAIN));
            }
            dirs.push(dir);
        }
        let (d0, name0) = (&dirs[0], group.names[0].name.as_slice());
        let rel0 = d0.rel_child(name0);
        let mut moved = None;
        live.with_object_locked(&group.st, &mut |held| {
            let now = d0.fd.stat(name0).at(&rel0)?;
            if now.st_ino != group.st.st_ino || now.st_dev != group.st.st_dev {
                return Err(VaultError::errno_at(rel0.clone(), libc::EAGAIN));
            }
            let Some(NewCopy {
                file: new,
                tmp: tmp0,
                len,
                id,
                reused,
            }) = self.durable_copy(d0, name0, &now, copies)?
            else {
                return Ok(());
            };
            if !reused {
                if let Err(e) = self.keep_link_copy(copies, &id, &new) {
                    let _ = d0.fd.unlink(&tmp0);
                    return Err(e);
                }
            }
            // A temporary link to the new copy beside each further name.
            let mut temps = vec![tmp0.clone()];
            let mut made = Ok(());
            for (dir, n) in dirs.iter().zip(&group.names).skip(1) {
                let made_one = temp_name().at(&dir.rel).and_then(|t| {
                    dir.fd.link_open_file(&new, &t).at(dir.rel_child(&n.name))?;
                    Ok(t)
                });
                match made_one {
                    Ok(t) => temps.push(t),
                    Err(e) => {
                        made = Err(e);
                        break;
                    }
                }
            }
            let unlink_temps = |temps: &[Vec<u8>]| {
                for (dir, t) in dirs.iter().zip(temps) {
                    let _ = dir.fd.unlink(t);
                }
            };
            if let Err(e) = made {
                unlink_temps(&temps);
                if !reused {
                    self.drop_link_copy(copies, &id);
                }
                return Err(e);
            }
            for dir in dirs.iter().skip(1) {
                if let Err(e) = dir.fd.fsync() {
                    log::warn!("{}: {e}", dir.rel.display());
                }
            }
            let mut renamed = false;
            let swapped = live.quiet(&mut || {
                for (dir, n) in dirs.iter().zip(&group.names) {
                    let cur = dir.fd.stat(&n.name).at(dir.rel_child(&n.name))?;
                    if (!held && live.knows(&now)) || !unchanged(&cur, &now) {
                        return Err(VaultError::errno_at(dir.rel_child(&n.name), libc::EAGAIN));
                    }
                }
                let commit = live.replacing(&now, &new)?;
                // From here every name moves; a failure leaves the names already moved on the
                // new copy, which stays kept: the next pass points the rest at it.
                for ((dir, n), t) in dirs.iter().zip(&group.names).zip(&temps) {
                    dir.fd.rename(t, &dir.fd, &n.name, 0).at(dir.rel_child(&n.name))?;
                    renamed = true;
                }
                commit();
                for dir in &dirs {
                    if let Err(e) = dir.fd.fsync() {
                        log::warn!("{}: {e}", dir.rel.display());
                    }
                }
                Ok(())
            });
            match swapped {
                Ok(()) => {
                    self.drop_link_copy(copies, &id);
                    moved = Some(len);
                    Ok(())
                }
                Err(e) => {
                    unlink_temps(&temps);
                    if !renamed && !reused {
                        // No name points at the new copy: the next pass seals the file afresh.
                        self.drop_link_copy(copies, &id);
                    }
                    Err(e)
                }
            }
        })?;
        Ok(moved)
    }
}
