//! Under the writeback cache the kernel keeps its own size and times of each regular file it
//! holds and takes neither from getattr, so dropping its attributes does not show a file a
//! sync client rewrote in place. Such a file's node gets a new generation instead: at the
//! next lookup the kernel retires the inode it holds and builds a new one from the daemon's
//! attributes. A retired inode fails every descriptor on it, so an inode the kernel has open
//! is retired only once its last handle is released (until then the open file keeps the
//! kernel's size, which its own writes may be extending).
//!
//! The same goes for a file whose writeback failed (a full disk): the kernel's pages and size
//! still hold bytes the vault does not, and after the last close the file shows what is
//! stored.

use super::apply::Note;
use super::BackingWatch;
use crate::fs::core::CofferFs;

impl CofferFs {
    /// With the writeback cache on: has the kernel's inode of regular file `ino`, which
    /// someone else changed in CIPHERDIR, retired now (pushing its names onto `notes`) or
    /// when its last handle is released.
    pub(super) fn retire_cached_file(&self, w: &BackingWatch, ino: u64, notes: &mut Vec<Note>) {
        if !self.writeback_cache {
            return;
        }
        if self.files.find(|h| h.ino == ino).is_some() {
            w.retire_later().insert(ino);
            return;
        }
        notes.extend(self.renew(ino));
    }

    /// With the writeback cache on: a write of `ino` failed, so the kernel's pages and size
    /// may hold bytes the vault does not; its inode is retired at its last release.
    pub(in crate::fs) fn retire_after_failed_writeback(&self, ino: u64) {
        if let (true, Some(w)) = (self.writeback_cache, &self.watch) {
            w.retire_later().insert(ino);
        }
    }

    /// The last handle of `ino` may just have been released: a retirement put off for it
    /// runs now.
    pub(in crate::fs) fn retire_after_release(&self, ino: u64) {
        let Some(w) = &self.watch else { return };
        if !self.writeback_cache || self.files.find(|h| h.ino == ino).is_some() {
            return;
        }
        if !w.retire_later().remove(&ino) {
            return;
        }
        log::debug!("kernel cache: inode {ino} changed while open (in CIPHERDIR or by a failed writeback); retired at its last close");
        w.owe(self.renew(ino));
    }

    /// Gives `ino` a new generation; returns the names whose dentries must go.
    fn renew(&self, ino: u64) -> Vec<Note> {
        let mut t = self.table();
        let Some(info) = t.info(ino).filter(|i| i.fmt == libc::S_IFREG) else {
            return Vec::new();
        };
        if !t.renew_generation(ino) {
            return Vec::new();
        }
        info.locs.into_iter().map(|(d, n)| Note::Entry(d, n)).collect()
    }
}
