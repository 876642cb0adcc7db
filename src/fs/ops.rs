//! The operations a coffer file system serves, as methods returning `Result`: the seam between
//! the one fuser adapter ([`Adapter`](super::adapter::Adapter)) and the forward
//! ([`CofferFs`](super::CofferFs)) and reverse ([`ReverseFs`](super::reverse::ReverseFs)) file
//! systems. Write operations default to EROFS, so a read-only file system leaves them out;
//! operations it does not serve at all default to ENOSYS, which makes the kernel stop asking.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fuser::{FileAttr, Generation, Notifier};

use super::attrops::{SetAttr, StatFs};
use super::core::{Activity, TTL};
use super::handles::DirEntry;
use super::watch::Ticket;
use crate::vault::{Result, VaultError};

/// An entry reply: attributes and generation.
pub type EntryOut = (FileAttr, Generation);

/// Where READDIRPLUS entries go, one call each: (offset of the next entry, name, attributes,
/// generation). Returns true when the reply is full and the entry was not sent.
pub type PlusSink<'a> = dyn FnMut(u64, &[u8], &FileAttr, Generation) -> bool + 'a;

/// Who is asking (for ownership of new objects, and access checks).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    /// Calling uid.
    pub uid: u32,
    /// Calling gid.
    pub gid: u32,
}

/// How a write request asks to be written.
#[derive(Debug, Clone, Copy)]
pub struct WriteMode {
    /// O_APPEND: the data lands at the vault's end of file, whatever the offset.
    pub append: bool,
    /// The kernel asks for the set-id bits to be cleared (HANDLE_KILLPRIV_V2).
    pub kill_privs: bool,
}

/// The kernel features a file system asks for at init, beyond those every coffer mount asks
/// for (see the adapter's `init`, the one place capabilities are requested).
#[derive(Debug, Clone, Copy)]
pub struct Features {
    /// Large writes (max_write 1 MiB) and HANDLE_KILLPRIV_V2: the file system clears set-id
    /// bits itself on write and truncate.
    pub writes: bool,
    /// READDIRPLUS (chosen by the kernel per listing): listings carry attributes.
    pub readdirplus: bool,
}

/// ENOSYS for a request the file system does not serve.
pub(super) fn not_served(op: &'static str) -> VaultError {
    VaultError::NotServed { op }
}

/// A coffer file system, request by request. Inodes, handles and offsets are the kernel's.
pub trait Ops: Send + Sync + 'static {
    /// What this file system asks the kernel for at init.
    const FEATURES: Features;

    /// The request tracker (for `--idle`).
    fn activity(&self) -> Arc<Activity>;

    /// Whether the kernel's writeback cache is asked for. With it, writes reach the daemon
    /// when the kernel writes its dirty pages back (merged, with their own offsets, O_APPEND
    /// already resolved against the kernel's size), the kernel keeps the size and times of
    /// the regular files it holds rather than taking them from getattr, and an error such as
    /// ENOSPC reaches the program at fsync or close.
    fn writeback_cache(&self) -> bool {
        false
    }

    /// The kernel did not grant the writeback cache asked for: from now on
    /// [`writeback_cache`](Self::writeback_cache) says no.
    fn writeback_refused(&self) {}

    /// Where the session's notifier goes once the session exists.
    fn notifier_slot(&self) -> Arc<OnceLock<Notifier>>;

    /// Serves the mount's control socket at `socket` (forward mode: `coffer rekey` of the
    /// mounted vault, unlocked from `config`); kept until the mount ends. None: no socket.
    fn control(
        _fs: &Arc<Self>,
        _socket: std::path::PathBuf,
        _config: std::path::PathBuf,
    ) -> Option<super::control::Control> {
        None
    }

    /// Starts watching the backing tree (forward mode, kernel cache on); kept until the mount
    /// ends. None: nothing is watched and every reply keeps the short timeouts.
    fn watch_backing(_fs: &Arc<Self>) -> Option<super::watch::Running> {
        None
    }

    /// Marks a request that changes the backing tree as the mount's own while it runs.
    fn own_op(&self) -> Option<super::watch::OwnOp> {
        None
    }

    /// A request that changes the backing tree failed, perhaps half way (a file made and its
    /// mode not set, a name removed and its long-name sidecar not): what the kernel holds of
    /// `names` (directory inode, plaintext name) and their directories, and of `inodes`, is
    /// dropped if the watch would not pass the change on (see `BackingWatch::exact`).
    fn change_failed(&self, _names: &[(u64, &[u8])], _inodes: &[u64]) {}

    /// Whether an open of `ino` (handle `fh`) may keep the pages the kernel caches for it.
    fn pages_unchanged(&self, _ino: u64, _fh: u64) -> bool {
        false
    }

    /// Taken before a request that replies with entries of directory `dir`: their timeout is
    /// [`ttl`](Self::ttl) of it, afterwards.
    fn entry_ticket(&self, _dir: u64) -> Ticket {
        Ticket::NONE
    }

    /// Taken before a request that replies with the attributes of `ino`.
    fn attr_ticket(&self, _ino: u64) -> Ticket {
        Ticket::NONE
    }

    /// The entry or attribute timeout of a reply whose request took ticket `t`.
    fn ttl(&self, _t: Ticket) -> Duration {
        TTL
    }

    /// How long the kernel may cache that `name` is absent from `dir` (the request took `t`);
    /// None: it may not (the lookup fails with ENOENT).
    fn cache_absence(&self, _dir: u64, _name: &[u8], _t: Ticket) -> Option<Duration> {
        None
    }

    /// Looks `name` up in directory `parent`; counts a lookup of what it finds.
    fn lookup(&self, parent: u64, name: &[u8]) -> Result<EntryOut>;

    /// Drops `n` lookups of `ino`.
    fn forget(&self, ino: u64, n: u64);

    /// The attributes of `ino` (as open handle `fh` sees them, when given).
    fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr>;

    /// A symlink's target.
    fn readlink(&self, ino: u64) -> Result<Vec<u8>>;

    /// Opens `ino` with open(2) `flags`; returns the handle.
    fn open(&self, ino: u64, flags: i32) -> Result<u64>;

    /// Reads up to `size` bytes at `offset` through handle `fh`.
    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>>;

    /// Like [`read`](Self::read), into `buf` (as many bytes as it holds at most); returns how
    /// many were read. The adapter reads through this with a buffer it keeps per thread.
    fn read_into(&self, ino: u64, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let data = self.read(ino, fh, offset, u32::try_from(buf.len()).unwrap_or(u32::MAX))?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }

    /// Closes file handle `fh`.
    fn release(&self, fh: u64);

    /// Opens directory `ino`; returns the handle.
    fn opendir(&self, ino: u64) -> Result<u64>;

    /// The listing of handle `fh` for a read at `offset`: every entry, `.` and `..` first (the
    /// adapter skips the first `offset`).
    fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>>;

    /// Closes directory handle `fh`.
    fn releasedir(&self, fh: u64);

    /// Statistics of the file system.
    fn statfs(&self) -> Result<StatFs>;

    /// access(2) of `ino` for `who` with `mask`.
    fn access(&self, ino: u64, mask: i32, who: Caller) -> Result<()>;

    /// The listing of handle `fh` past `offset` with each entry's attributes, fed to `sink`
    /// until it is full; each entry sent counts as a lookup (only with `FEATURES.readdirplus`).
    fn readdirplus(&self, _ino: u64, _fh: u64, _offset: u64, _sink: &mut PlusSink<'_>) -> Result<()> {
        Err(not_served("readdirplus"))
    }

    /// FLUSH at each close of a handle.
    fn flush(&self, _ino: u64, _fh: u64) -> Result<()> {
        Ok(())
    }

    /// fsync(2) of handle `fh`.
    fn fsync(&self, _ino: u64, _fh: u64, _datasync: bool) -> Result<()> {
        Ok(())
    }

    /// fsync(2) of a directory.
    fn fsyncdir(&self, _ino: u64) -> Result<()> {
        Err(not_served("fsyncdir"))
    }

    /// lseek(2) with SEEK_DATA / SEEK_HOLE (others the kernel answers itself).
    fn lseek(&self, _ino: u64, _fh: u64, _offset: i64, _whence: i32) -> Result<i64> {
        Err(not_served("lseek"))
    }

    /// One xattr's value.
    fn getxattr(&self, _ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        Err(VaultError::xattr(Some(name), libc::ENODATA))
    }

    /// The xattr names, each NUL-terminated.
    fn listxattr(&self, _ino: u64) -> Result<Vec<u8>> {
        Ok(Vec::new())
    }

    /// Changes attributes (chmod, chown, truncate, utimes).
    fn setattr(&self, _ino: u64, _fh: Option<u64>, _s: SetAttr) -> Result<FileAttr> {
        Err(VaultError::ReadOnly)
    }

    /// Makes a special file or regular file `name` in `parent`.
    fn mknod(&self, _parent: u64, _name: &[u8], _mode: u32, _rdev: u32, _who: Caller) -> Result<EntryOut> {
        Err(VaultError::ReadOnly)
    }

    /// Makes directory `name` in `parent`.
    fn mkdir(&self, _parent: u64, _name: &[u8], _mode: u32, _who: Caller) -> Result<EntryOut> {
        Err(VaultError::ReadOnly)
    }

    /// Removes the non-directory `name` from `parent`.
    fn unlink(&self, _parent: u64, _name: &[u8]) -> Result<()> {
        Err(VaultError::ReadOnly)
    }

    /// Removes the empty directory `name` from `parent`.
    fn rmdir(&self, _parent: u64, _name: &[u8]) -> Result<()> {
        Err(VaultError::ReadOnly)
    }

    /// Makes symlink `name` in `parent` pointing at `target`.
    fn symlink(&self, _parent: u64, _name: &[u8], _target: &[u8], _who: Caller) -> Result<EntryOut> {
        Err(VaultError::ReadOnly)
    }

    /// Renames `name` in `parent` to `new_name` in `new_parent` (renameat2 `flags`).
    fn rename(&self, _parent: u64, _name: &[u8], _new_parent: u64, _new_name: &[u8], _flags: u32) -> Result<()> {
        Err(VaultError::ReadOnly)
    }

    /// Makes a hard link of `ino` named `new_name` in `new_parent`.
    fn link(&self, _ino: u64, _new_parent: u64, _new_name: &[u8]) -> Result<EntryOut> {
        Err(VaultError::ReadOnly)
    }

    /// Creates and opens `name` in `parent`; returns the entry and the handle.
    fn create(&self, _parent: u64, _name: &[u8], _mode: u32, _flags: i32, _who: Caller) -> Result<(EntryOut, u64)> {
        Err(VaultError::ReadOnly)
    }

    /// Writes `data` at `offset` through handle `fh`; returns how much was written.
    fn write(&self, _ino: u64, _fh: u64, _offset: u64, _data: &[u8], _mode: WriteMode) -> Result<u32> {
        Err(VaultError::ReadOnly)
    }

    /// fallocate(2) through handle `fh`.
    fn fallocate(&self, _ino: u64, _fh: u64, _offset: u64, _length: u64, _mode: i32, _who: Caller) -> Result<()> {
        Err(VaultError::ReadOnly)
    }

    /// Sets one xattr (`flags`: XATTR_CREATE / XATTR_REPLACE).
    fn setxattr(&self, _ino: u64, _name: &[u8], _value: &[u8], _flags: i32) -> Result<()> {
        Err(VaultError::ReadOnly)
    }

    /// Removes one xattr.
    fn removexattr(&self, _ino: u64, _name: &[u8]) -> Result<()> {
        Err(VaultError::ReadOnly)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file system that serves only what `Ops` requires (every inode stale).
    struct Bare;

    fn stale() -> VaultError {
        VaultError::inode(2, libc::ESTALE)
    }

    impl Ops for Bare {
        const FEATURES: Features = Features {
            writes: false,
            readdirplus: false,
        };
        fn activity(&self) -> Arc<Activity> {
            Arc::default()
        }
        fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
            Arc::default()
        }
        fn lookup(&self, _: u64, _: &[u8]) -> Result<EntryOut> {
            Err(stale())
        }
        fn forget(&self, _: u64, _: u64) {}
        fn getattr(&self, _: u64, _: Option<u64>) -> Result<FileAttr> {
            Err(stale())
        }
        fn readlink(&self, _: u64) -> Result<Vec<u8>> {
            Err(stale())
        }
        fn open(&self, _: u64, _: i32) -> Result<u64> {
            Err(stale())
        }
        fn read(&self, _: u64, _: u64, _: u64, _: u32) -> Result<Vec<u8>> {
            Err(stale())
        }
        fn release(&self, _: u64) {}
        fn opendir(&self, _: u64) -> Result<u64> {
            Err(stale())
        }
        fn readdir(&self, _: u64, _: u64, _: u64) -> Result<Arc<Vec<DirEntry>>> {
            Err(stale())
        }
        fn releasedir(&self, _: u64) {}
        fn statfs(&self) -> Result<StatFs> {
            Err(stale())
        }
        fn access(&self, _: u64, _: i32, _: Caller) -> Result<()> {
            Err(stale())
        }
    }

    fn errno<T>(r: Result<T>) -> i32 {
        r.err().map_or(0, |e| e.errno())
    }

    #[test]
    fn write_operations_default_to_erofs() {
        let (fs, who) = (Bare, Caller { uid: 0, gid: 0 });
        let write = WriteMode {
            append: false,
            kill_privs: false,
        };
        let set = SetAttr {
            mode: Some(0o600),
            uid: None,
            gid: None,
            size: None,
            atime: None,
            mtime: None,
            kill_privs: false,
        };
        let refused = [
            errno(fs.setattr(2, None, set)),
            errno(fs.mknod(1, b"n", libc::S_IFREG | 0o600, 0, who)),
            errno(fs.mkdir(1, b"d", 0o700, who)),
            errno(fs.unlink(1, b"f")),
            errno(fs.rmdir(1, b"d")),
            errno(fs.symlink(1, b"l", b"t", who)),
            errno(fs.rename(1, b"a", 1, b"b", 0)),
            errno(fs.link(2, 1, b"b")),
            errno(fs.create(1, b"f", 0o600, libc::O_WRONLY, who)),
            errno(fs.write(2, 3, 0, b"x", write)),
            errno(fs.fallocate(2, 3, 0, 1, 0, who)),
            errno(fs.setxattr(2, b"user.a", b"v", 0)),
            errno(fs.removexattr(2, b"user.a")),
        ];
        assert_eq!(refused, [libc::EROFS; 13]);
    }

    #[test]
    fn other_defaults() {
        let fs = Bare;
        // Not served: the kernel stops asking.
        assert_eq!(errno(fs.fsyncdir(1)), libc::ENOSYS);
        assert_eq!(errno(fs.lseek(2, 3, 0, libc::SEEK_DATA)), libc::ENOSYS);
        assert_eq!(errno(fs.readdirplus(1, 3, 0, &mut |_, _, _, _| false)), libc::ENOSYS);
        // Nothing buffered, nothing to sync; no xattrs.
        assert!(fs.flush(2, 3).is_ok() && fs.fsync(2, 3, false).is_ok());
        assert_eq!(errno(fs.getxattr(2, b"user.a")), libc::ENODATA);
        assert_eq!(fs.listxattr(2).ok(), Some(Vec::new()));
    }
}
