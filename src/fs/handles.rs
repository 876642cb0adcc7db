//! Open file and directory handles: the numbers handed to the kernel at open/opendir and what
//! they stand for (a backing descriptor opened at open time, a directory snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use fuser::FileType;

use crate::vault::CryptFile;

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The inode it was opened on.
    pub ino: u64,
    /// The backing file, opened at open(); stays usable after rename or unlink.
    pub file: CryptFile,
    /// The inode's lock.
    pub lock: Arc<RwLock<()>>,
    /// Whether the backing descriptor is writable.
    pub writable: bool,
}

/// One entry of a directory snapshot.
#[derive(Debug, Clone)]
pub struct DirEntry {
    /// Inode number reported as d_ino.
    pub ino: u64,
    /// File type.
    pub kind: FileType,
    /// Plaintext name.
    pub name: Vec<u8>,
}

impl DirEntry {
    /// A listing's first two entries, `.` (`ino`) and `..` (`parent`), with room for `more`.
    pub fn dots(ino: u64, parent: u64, more: usize) -> Vec<DirEntry> {
        let mut out = Vec::with_capacity(more + 2);
        for (ino, name) in [(ino, &b"."[..]), (parent, &b".."[..])] {
            out.push(DirEntry {
                ino,
                kind: FileType::Directory,
                name: name.to_vec(),
            });
        }
        out
    }
}

/// An open directory: the listing taken at opendir (or at a rewind), indexed by offset.
#[derive(Debug)]
pub struct DirHandle {
    /// The directory's inode.
    pub ino: u64,
    /// The snapshot and whether it has been read.
    pub state: Mutex<DirState>,
}

/// The listing of an open directory.
#[derive(Debug)]
pub struct DirState {
    /// The snapshot (`.` and `..` first), indexed by offset - 1.
    pub entries: Arc<Vec<DirEntry>>,
    /// Whether a read has happened (a later read at offset 0 is a rewind: list afresh).
    pub served: bool,
}

/// A table of handles of one kind.
#[derive(Debug)]
pub struct Handles<T> {
    map: Mutex<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Default for Handles<T> {
    fn default() -> Self {
        Handles {
            map: Mutex::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }
}

impl<T> Handles<T> {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<T>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stores `h`; returns its number.
    pub fn insert(&self, h: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.map().insert(fh, Arc::new(h));
        fh
    }

    /// The handle numbered `fh`.
    pub fn get(&self, fh: u64) -> Option<Arc<T>> {
        self.map().get(&fh).cloned()
    }

    /// Removes handle `fh`.
    pub fn remove(&self, fh: u64) -> Option<Arc<T>> {
        self.map().remove(&fh)
    }

    /// Number of open handles.
    pub fn count(&self) -> usize {
        self.map().len()
    }

    /// Some open handle satisfying `pred` (e.g. one on a given inode).
    pub fn find(&self, pred: impl Fn(&T) -> bool) -> Option<Arc<T>> {
        self.map().values().find(|h| pred(h)).cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_get_remove() {
        let h: Handles<u32> = Handles::default();
        let a = h.insert(10);
        let b = h.insert(20);
        assert_ne!(a, b);
        assert_eq!(*h.get(a).unwrap(), 10);
        assert_eq!(h.count(), 2);
        assert_eq!(*h.find(|v| *v == 20).unwrap(), 20);
        assert!(h.remove(a).is_some());
        assert!(h.get(a).is_none());
        assert_eq!(h.count(), 1);
    }
}
