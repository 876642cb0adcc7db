//! Under the writeback cache the kernel keeps its own size and times of each regular file it
//! holds and takes neither from getattr, so dropping its attributes does not show a file a
//! sync client rewrote in place. Such a file's node is marked stale (`Node::stale`) and its
//! dentries are dropped: the kernel's next LOOKUP of it, if the mount has no handle open on
//! it, is answered with a new generation, so the kernel retires the inode it holds and builds
//! a new one from the daemon's attributes. The mark, the open check and the new generation
//! are one step under the inode table's lock.
//!
//! A retired inode fails every descriptor on it, hence the open check: a lookup while the
//! file is open keeps the old generation (the open file keeps the kernel's size, which its
//! own writes may be extending), and the file's dentries are dropped again at its last
//! release. Left: an open that resolved the old inode before the dentry went but reaches the
//! daemon after the renewing lookup fails with EIO, and so does an O_PATH descriptor on it.
//!
//! A file whose writeback failed (a full disk) is marked too: the kernel's pages and size
//! still hold bytes the vault does not, and after its last close it shows what is stored. So
//! are every file after lost watch events and every file of a directory that changed as a
//! whole. Without the watch nothing tells of a client's changes, but the 1 s entry timeout
//! still brings the lookup that retires a file whose writeback failed.

use super::apply::Note;
use crate::fs::core::CofferFs;

impl CofferFs {
    /// With the writeback cache on: marks `ino`, which someone else changed in CIPHERDIR,
    /// stale if it is a regular file, and pushes the dentries of its other names (hard links)
    /// onto `notes`.
    pub(super) fn retire_cached_file(&self, ino: u64, notes: &mut Vec<Note>) {
        if self.writeback() && self.table().mark_stale(ino) {
            notes.extend(self.dentries_of(ino));
        }
    }

    /// With the writeback cache on: marks every regular file the kernel holds stale, or
    /// those in directory `dir`.
    pub(super) fn retire_cached_files(&self, dir: Option<u64>) {
        if self.writeback() {
            self.table().mark_all_stale(dir);
        }
    }

    /// With the writeback cache on: a write of `ino` failed, so the kernel's pages and size
    /// may hold bytes the vault does not.
    pub(in crate::fs) fn retire_after_failed_writeback(&self, ino: u64) {
        if self.writeback() {
            self.table().mark_stale(ino);
        }
    }

    /// The mount's last handle of `ino` was just released: if the file is stale, its
    /// dentries go (sent by the watcher thread: a request's thread must not wait on the
    /// kernel), so the next access looks it up and the lookup retires it.
    pub(in crate::fs) fn retire_after_release(&self, ino: u64) {
        let Some(w) = &self.watch else { return };
        if self.writeback() && self.table().is_stale(ino) {
            log::debug!("kernel cache: inode {ino} went stale while open; retired at its next lookup");
            w.queue(self.dentries_of(ino));
        }
    }

    /// Invalidations of every name the kernel knows `ino` by.
    fn dentries_of(&self, ino: u64) -> Vec<Note> {
        let locs = self.table().info(ino).map(|i| i.locs).unwrap_or_default();
        locs.into_iter().map(|(d, n)| Note::Entry(d, n)).collect()
    }
}
