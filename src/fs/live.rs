//! A rekey of the running mount: the mount's side of [`Live`]. The walk runs in the daemon
//! (asked for through the control socket); while it seals a file again the file's inode lock
//! is held exclusively, and while it renames backing entries the namespace gate is, so no
//! lookup, open or namespace change sees a half-moved entry and no write lands in a file
//! that is being replaced. Open handles of a replaced file are pointed at its new copy and
//! its node at the new backing inode (the kernel's inode and its number stay; the number
//! stays the file's after the kernel forgets the node, see [`super::inodes`]); the kernel is
//! told to drop the cached attributes once no lock is held.

use std::fs::File;
use std::sync::atomic::{AtomicBool, Ordering};

use super::attr::backing_id;
use super::core::CofferFs;
use super::fileops::write_lock;
use crate::vault::live::Live;
use crate::vault::migrate::Migration;
use crate::vault::{IoContext, Result};

/// A kernel notification owed by a rekey: the node of a replaced file (its cached attributes:
/// the new copy's change time and blocks).
#[derive(Debug)]
pub struct Owed {
    ino: u64,
}

/// A rekey walk running in this mount, stopped when `stop` is set.
pub struct LiveRekey<'a> {
    fs: &'a CofferFs,
    stop: &'a AtomicBool,
}

impl CofferFs {
    /// Moves every object of the served vault to its newest key epoch (which the vault must
    /// have adopted), around the mount's own use of them; `progress` sees the running totals.
    /// Passes are repeated (at most three) while files changed under the walk.
    /// `guard` is asked before each object; its error stops the walk (a
    /// [`ConfigWatch`](crate::vault::epoch_watch::ConfigWatch): another machine's rekey).
    pub fn rekey_live(
        &self,
        stop: &AtomicBool,
        progress: &mut dyn FnMut(&Migration),
        guard: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Migration> {
        let live = LiveRekey { fs: self, stop };
        let mut total = Migration::default();
        for _ in 0..3 {
            let pass = self.vault.migrate_live(
                &live,
                &mut |m| {
                    let mut shown = total.clone();
                    shown.add(m);
                    progress(&shown);
                },
                guard,
            );
            // The walk renamed and replaced backing objects from this process, which a watch
            // of fanotify takes for the mount's own and drops; the kernel may hold their old
            // names, inode numbers (in cached listings) and attributes.
            self.own_tree_changed();
            let pass = pass?;
            let again = pass.changed > 0 && !pass.stopped;
            total.add(&pass);
            total.left = pass.left;
            total.changed = pass.changed;
            total.stopped = pass.stopped;
            if !again {
                break;
            }
        }
        Ok(total)
    }

    /// The served vault (for the control socket: plans and key changes).
    pub fn vault(&self) -> &crate::vault::Vault {
        &self.vault
    }

    fn send_owed(&self) {
        let owed = std::mem::take(&mut *self.owed.lock().unwrap_or_else(|p| p.into_inner()));
        for o in owed {
            self.invalidate_attr(o.ino);
        }
    }
}

impl Live for LiveRekey<'_> {
    fn with_object_locked(&self, st: &libc::stat, f: &mut dyn FnMut(bool) -> Result<()>) -> Result<()> {
        let node = self.fs.table().node_of(backing_id(st));
        let r = match node {
            Some((_, info)) => {
                let _g = write_lock(&info.lock);
                f(true)
            }
            None => f(false),
        };
        self.fs.send_owed();
        r
    }

    fn knows(&self, st: &libc::stat) -> bool {
        self.fs.table().node_of(backing_id(st)).is_some()
    }

    fn quiet(&self, f: &mut dyn FnMut() -> Result<()>) -> Result<()> {
        let _g = self.fs.namespace_quiet();
        // Odd while entries are renamed ahead of the inode table (see `wait_for_moves`).
        self.fs.moving.fetch_add(1, Ordering::AcqRel);
        let r = f();
        self.fs.moving.fetch_add(1, Ordering::AcqRel);
        r
    }

    fn replacing<'a>(&'a self, old: &libc::stat, new: &File) -> Result<Box<dyn FnOnce() + 'a>> {
        let id = backing_id(old);
        let node = self.fs.table().node_of(id);
        let fd = std::os::fd::AsRawFd::as_raw_fd(new);
        let to =
            backing_id(&crate::vault::backing::fstat(fd).at(format!("the new copy of backing inode {}", old.st_ino))?);
        let Some((ino, _)) = node else {
            // The number an earlier rekey kept for the file goes on to its new copy.
            return Ok(Box::new(move || self.fs.table().moved_unheld(id, to)));
        };
        let handles = self.fs.files.all(|h| h.ino == ino);
        let mut swaps = Vec::with_capacity(handles.len());
        for h in handles {
            let file = h.file();
            let dup = new.try_clone().at(file.rel())?;
            swaps.push((h, self.fs.vault.crypt_file(dup, file.rel().to_path_buf())));
        }
        let birth = crate::vault::backing::fbirth(fd).ok().flatten();
        Ok(Box::new(move || {
            for (h, file) in swaps {
                h.replace_file(file);
            }
            // The node now stands for the new copy: same number and generation, so the
            // kernel's inode and every descriptor on it stay valid.
            self.fs.table().moved(ino, to, birth);
            self.fs
                .owed
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Owed { ino });
        }))
    }

    fn stop(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
