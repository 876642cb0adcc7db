//! Where an encrypted file's backing bytes live: a small trait, and its implementation over
//! the backing `File`. Knows nothing of blocks or keys.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::time::SystemTime;

use crate::vault::backing;

/// What any write to the backing file changes: its length, modification and change times.
/// Two equal stamps taken apart mean nobody wrote in between (as far as the clock tells).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangeStamp {
    /// Backing length.
    pub len: u64,
    /// Modification time (s, ns).
    pub mtime: (i64, i64),
    /// Change time (s, ns).
    pub ctime: (i64, i64),
}

/// One look at the backing file (one fstat).
#[derive(Debug, Clone, Copy)]
pub struct StorageStat {
    /// Backing device (0 when unknown): the identity the free-space figure is kept for.
    pub dev: u64,
    /// Backing length.
    pub len: u64,
    /// Length and times: what a writer changes.
    pub change: ChangeStamp,
    /// Modification time, where known.
    pub modified: Option<SystemTime>,
}

/// The operations an encrypted file needs from its backing bytes.
pub trait Storage: Send + Sync + fmt::Debug {
    /// One read at `off` (may return fewer bytes than asked; 0 at the end).
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize>;
    /// Writes all of `buf` at `off` (an error may leave a prefix written).
    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// Identity, length and change stamp.
    fn stat(&self) -> io::Result<StorageStat>;
    /// Cuts or extends (with zeros) to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// fsync (`data_only`: fdatasync).
    fn sync(&self, data_only: bool) -> io::Result<()>;
    /// Reserves `[off, off + len)` without changing the length (`fallocate` with `KEEP_SIZE`).
    fn reserve(&self, off: u64, len: u64) -> io::Result<()>;
    /// Free bytes where the storage lives (0 when unknown).
    fn free_bytes(&self) -> u64;
    /// `lseek(SEEK_DATA / SEEK_HOLE)` from `off`; None when nothing is found before the end.
    fn seek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>>;
    /// Starts writing back `[off, off + len)` without waiting (only timing depends on it).
    fn start_writeback(&self, off: u64, len: u64) -> io::Result<()>;
}

/// Reads until `buf` is full or the end; returns the bytes read.
pub fn read_full_at<S: Storage + ?Sized>(s: &S, buf: &mut [u8], off: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match s.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// The backing file of a mount or an offline tool.
#[derive(Debug)]
pub struct FileStorage(File);

impl FileStorage {
    /// Wraps an open backing file.
    pub fn new(file: File) -> Self {
        FileStorage(file)
    }

    /// The backing file.
    pub fn file(&self) -> &File {
        &self.0
    }
}

impl Storage for FileStorage {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<usize> {
        self.0.read_at(buf, off)
    }

    fn write_all_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.0.write_all_at(buf, off)
    }

    fn stat(&self) -> io::Result<StorageStat> {
        let m = self.0.metadata()?;
        Ok(StorageStat {
            dev: m.dev(),
            len: m.len(),
            change: ChangeStamp {
                len: m.len(),
                mtime: (m.mtime(), m.mtime_nsec()),
                ctime: (m.ctime(), m.ctime_nsec()),
            },
            modified: m.modified().ok(),
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }

    fn sync(&self, data_only: bool) -> io::Result<()> {
        if data_only {
            self.0.sync_data()
        } else {
            self.0.sync_all()
        }
    }

    fn reserve(&self, off: u64, len: u64) -> io::Result<()> {
        backing::reserve(self.0.as_raw_fd(), off, len)
    }

    fn free_bytes(&self) -> u64 {
        let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: valid fd; fstatvfs fills the struct when it returns 0.
        if unsafe { libc::fstatvfs(self.0.as_raw_fd(), s.as_mut_ptr()) } != 0 {
            return 0;
        }
        // SAFETY: fstatvfs returned 0, so `s` is initialised.
        let s = unsafe { s.assume_init() };
        u64::try_from(u128::from(s.f_bavail) * u128::from(s.f_frsize)).unwrap_or(u64::MAX)
    }

    fn seek(&self, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
        backing::seek(self.0.as_raw_fd(), off, whence)
    }

    fn start_writeback(&self, off: u64, len: u64) -> io::Result<()> {
        backing::start_writeback(self.0.as_raw_fd(), off, len)
    }
}
