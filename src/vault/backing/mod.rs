//! The one place coffer makes syscalls on CIPHERDIR: `*at` calls relative to directory fds,
//! always with O_NOFOLLOW / AT_SYMLINK_NOFOLLOW, so a symlink planted in CIPHERDIR can never
//! make coffer touch a file outside it.

mod dirfd;
mod fd_calls;
mod xattr;

pub use dirfd::DirFd;
pub use fd_calls::{
    fbirth, fstat, is_plain_component, reflink, reserve, seek, start_writeback, temp_name, touch_atime,
};
pub use xattr::{fgetxattr, flistxattr, fremovexattr, fsetxattr};

use std::ffi::CString;
use std::io;

/// Converts a name to a C string; a NUL inside is EINVAL.
fn cstr(name: &[u8]) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

fn check_size(ret: libc::ssize_t) -> io::Result<usize> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret as usize)
    }
}

/// Refuses names that would escape the directory (`..`, `/`) before any syscall sees them.
fn single_component(name: &[u8]) -> io::Result<CString> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    cstr(name)
}

/// A backing entry coffer expected to be a regular file is something else (a FIFO, socket or
/// device node): a damaged entry, never something to block on. Carried inside an `io::Error`
/// so every caller attaches its path the usual way; the vault layer reports it as damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not a regular file (a {}): damaged entry", fmt_name(*fmt))]
pub struct NotRegular {
    /// `st_mode & S_IFMT` of what was found.
    pub fmt: u32,
}

/// A file type's name for messages.
pub fn fmt_name(fmt: u32) -> &'static str {
    match fmt {
        libc::S_IFIFO => "FIFO",
        libc::S_IFSOCK => "socket",
        libc::S_IFCHR => "character device",
        libc::S_IFBLK => "block device",
        libc::S_IFDIR => "directory",
        libc::S_IFLNK => "symlink",
        _ => "special file",
    }
}

/// One raw entry of a backing directory.
#[derive(Debug, Clone)]
pub struct RawEntry {
    /// Backing name.
    pub name: Vec<u8>,
    /// Backing inode number.
    pub ino: u64,
    /// `d_type` (DT_REG, DT_DIR, DT_LNK, ..., DT_UNKNOWN).
    pub d_type: u8,
}

/// A time for [`DirFd::utimens`].
#[derive(Debug, Clone, Copy)]
pub enum TimeSpec {
    /// Leave unchanged (UTIME_OMIT).
    Omit,
    /// Current time (UTIME_NOW).
    Now,
    /// Seconds and nanoseconds since the epoch.
    At(i64, i64),
}

impl TimeSpec {
    fn to_libc(self) -> libc::timespec {
        match self {
            TimeSpec::Omit => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_OMIT,
            },
            TimeSpec::Now => libc::timespec {
                tv_sec: 0,
                tv_nsec: libc::UTIME_NOW,
            },
            TimeSpec::At(s, ns) => libc::timespec {
                tv_sec: s as libc::time_t,
                tv_nsec: ns as _,
            },
        }
    }
}

/// Which opens through a [`DirFd`] (and through the directories opened from it) pass
/// O_NOATIME, so that the mount's `noatime` / `nodiratime` hold for the backing files too.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAtime {
    /// Regular files.
    pub files: bool,
    /// Directory listings.
    pub dirs: bool,
}
