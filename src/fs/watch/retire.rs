//! Under the writeback cache the kernel keeps its own size and times of each regular file it
//! holds and takes neither from getattr, so dropping its attributes does not show a file a
//! sync client rewrote in place. Such a file is marked stale, and its dentries are dropped:
//! the kernel's next lookup of it is answered with a new generation, so the kernel retires
//! the inode it holds and builds a new one from the daemon's attributes.
//!
//! A retired inode fails every descriptor on it, so the generation changes only while the
//! mount has no handle open on the file; a lookup meanwhile keeps the old one (the open file
//! keeps the kernel's size, which its own writes may be extending), and the file's dentries
//! are dropped again at its last release. What is left is a lookup racing an open that has
//! resolved the old inode but not reached the daemon yet: that open fails with EIO.
//!
//! The same goes for a file whose writeback failed (a full disk): the kernel's pages and size
//! still hold bytes the vault does not, and after the last close the file shows what is
//! stored.

use super::apply::Note;
use super::BackingWatch;
use crate::fs::core::CofferFs;

impl CofferFs {
    /// With the writeback cache on: marks the kernel's inode of `ino`, a regular file someone
    /// else changed in CIPHERDIR, for retirement, and pushes the dentries of its other names
    /// (hard links) onto `notes`.
    pub(super) fn retire_cached_file(&self, w: &BackingWatch, ino: u64, notes: &mut Vec<Note>) {
        if !self.writeback_cache {
            return;
        }
        w.stale_sizes().insert(ino);
        notes.extend(self.dentries_of(ino));
    }

    /// With the writeback cache on: a write of `ino` failed, so the kernel's pages and size
    /// may hold bytes the vault does not; its inode is retired after its last release.
    pub(in crate::fs) fn retire_after_failed_writeback(&self, ino: u64) {
        if let (true, Some(w)) = (self.writeback_cache, &self.watch) {
            w.stale_sizes().insert(ino);
        }
    }

    /// The last handle of `ino` may just have been released: if its inode is marked for
    /// retirement, its dentries go (sent by the watcher thread), so the next access looks it
    /// up and the lookup retires it.
    pub(in crate::fs) fn retire_after_release(&self, ino: u64) {
        let Some(w) = &self.watch else { return };
        if !self.writeback_cache || !w.stale_sizes().contains(&ino) || self.is_open(ino) {
            return;
        }
        log::debug!("kernel cache: inode {ino} changed while open (in CIPHERDIR or by a failed writeback); retired at its next lookup");
        w.owe(self.dentries_of(ino));
    }

    /// The generation to answer a lookup of `ino` with: a new one when its kernel inode is
    /// marked for retirement and the mount has no handle open on it.
    pub(in crate::fs) fn generation_for_lookup(&self, ino: u64, generation: u64) -> u64 {
        let Some(w) = &self.watch else { return generation };
        if !self.writeback_cache || !w.stale_sizes().contains(&ino) || self.is_open(ino) {
            return generation;
        }
        w.stale_sizes().remove(&ino);
        let mut t = self.table();
        if t.info(ino).is_some_and(|i| i.fmt == libc::S_IFREG) && t.renew_generation(ino) {
            return t.generation(ino);
        }
        generation
    }

    fn is_open(&self, ino: u64) -> bool {
        self.files.find(|h| h.ino == ino).is_some()
    }

    /// Invalidations of every name the kernel knows `ino` by.
    fn dentries_of(&self, ino: u64) -> Vec<Note> {
        let locs = self.table().info(ino).map(|i| i.locs).unwrap_or_default();
        locs.into_iter().map(|(d, n)| Note::Entry(d, n)).collect()
    }
}
