//! Open file and directory handles: the numbers handed to the kernel at open/opendir and what
//! they stand for (a backing descriptor opened at open time, a directory snapshot).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use arc_swap::ArcSwap;
use fuser::FileType;

use crate::vault::CryptFile;

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The inode it was opened on.
    pub ino: u64,
    /// The backing file, opened at open(); stays usable after rename or unlink. A rekey of the
    /// running mount replaces it with the file's new copy (under the inode lock held
    /// exclusively, so no read or write through the handle runs meanwhile).
    file: ArcSwap<CryptFile>,
    /// The inode's lock.
    pub lock: Arc<RwLock<()>>,
    /// Whether the backing descriptor is writable.
    pub writable: bool,
    /// The sequential run the handle is writing (for early writeback).
    pub stream: Mutex<WriteStream>,
}

impl FileHandle {
    /// A handle of `ino` on `file`.
    pub fn new(ino: u64, file: CryptFile, lock: Arc<RwLock<()>>, writable: bool) -> Self {
        FileHandle {
            ino,
            file: ArcSwap::from_pointee(file),
            lock,
            writable,
            stream: Mutex::default(),
        }
    }

    /// The backing file now.
    pub fn file(&self) -> Arc<CryptFile> {
        self.file.load_full()
    }

    /// Points the handle at `file` (a rekey's new copy of the same contents).
    pub fn replace_file(&self, file: CryptFile) {
        self.file.store(Arc::new(file));
    }
}

/// A run of back-to-back writes through one handle: `[start, end)` written, `[start, kicked)`
/// already handed to writeback.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStream {
    /// Where the run's unkicked part starts.
    pub kicked: u64,
    /// Where the run ends (the next sequential write starts here).
    pub end: u64,
}

/// How much a sequential writer writes before its data is handed to writeback.
pub const WRITEBACK_CHUNK: u64 = 8 << 20;

impl WriteStream {
    /// Records a write of `len` bytes at `off`; returns the range to start writing back, if a
    /// sequential run has gathered [`WRITEBACK_CHUNK`] bytes since the last one.
    pub fn wrote(&mut self, off: u64, len: u64) -> Option<(u64, u64)> {
        let end = off.saturating_add(len);
        if off != self.end {
            *self = WriteStream { kicked: off, end };
            return None;
        }
        self.end = end;
        if end - self.kicked < WRITEBACK_CHUNK {
            return None;
        }
        let range = (self.kicked, end - self.kicked);
        self.kicked = end;
        Some(range)
    }
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

/// An open directory: the listing taken at its first read (or at a rewind), indexed by offset.
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
    /// Whether `entries` holds a listing yet (taken by the first read; every read at offset 0,
    /// the start or a rewind, lists afresh).
    pub served: bool,
}

/// The handle number of a directory the kernel opened without asking (handles start at 1).
pub const NO_HANDLE: u64 = 0;

/// The listings served to directories the kernel opened without asking (with the kernel
/// cache on it opens them itself, and caches what it reads): the latest few, by directory
/// inode, so that a listing read in several requests is one snapshot.
#[derive(Debug, Default)]
pub struct Listings {
    recent: std::collections::VecDeque<(u64, Arc<Vec<DirEntry>>)>,
}

impl Listings {
    /// How many listings are kept (a listing read in several requests by several readers at
    /// once); each holds every name of its directory.
    const KEPT: usize = 8;

    /// The listing of `ino` last served, if kept.
    pub fn get(&self, ino: u64) -> Option<Arc<Vec<DirEntry>>> {
        self.recent.iter().find(|(i, _)| *i == ino).map(|(_, l)| l.clone())
    }

    /// Drops the listing of `ino` (the kernel forgot the directory).
    pub fn forget(&mut self, ino: u64) {
        self.recent.retain(|(i, _)| *i != ino);
    }

    /// Keeps `listing` as the latest of `ino`.
    pub fn put(&mut self, ino: u64, listing: Arc<Vec<DirEntry>>) {
        self.recent.retain(|(i, _)| *i != ino);
        if self.recent.len() >= Self::KEPT {
            self.recent.pop_front();
        }
        self.recent.push_back((ino, listing));
    }
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

    /// Every open handle satisfying `pred`.
    pub fn all(&self, pred: impl Fn(&T) -> bool) -> Vec<Arc<T>> {
        self.map().values().filter(|h| pred(h)).cloned().collect()
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

    #[test]
    fn only_sequential_runs_are_handed_to_writeback_in_chunks() {
        let mut s = WriteStream::default();
        let mb = 1 << 20;
        let mut kicked = Vec::new();
        for i in 0..20 {
            kicked.extend(s.wrote(i * mb, mb));
        }
        assert_eq!(kicked, vec![(0, WRITEBACK_CHUNK), (WRITEBACK_CHUNK, WRITEBACK_CHUNK)]);
        // A jump starts a new run: nothing is kicked until it has gathered a chunk again.
        assert_eq!(s.wrote(100 * mb, mb), None);
        for i in 101..107 {
            assert_eq!(s.wrote(i * mb, mb), None);
        }
        assert_eq!(s.wrote(107 * mb, mb), Some((100 * mb, WRITEBACK_CHUNK)));
        // Random 4 KiB writes never trigger it.
        let mut r = WriteStream::default();
        for i in 0..10_000u64 {
            assert_eq!(r.wrote((i * 7919 % 5000) * 8192, 4096), None);
        }
    }
}
