//! Extended attributes of an open backing fd.

use std::io;
use std::os::fd::RawFd;

use super::{check, check_size, cstr};

/// `fgetxattr`; None when the attribute does not exist.
pub fn fgetxattr(fd: RawFd, name: &[u8]) -> io::Result<Option<Vec<u8>>> {
    let c = cstr(name)?;
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf is writable for its length.
    let n = unsafe { libc::fgetxattr(fd, c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENODATA) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    buf.truncate(n as usize);
    Ok(Some(buf))
}

/// `fsetxattr` with XATTR_CREATE / XATTR_REPLACE flags passed through.
pub fn fsetxattr(fd: RawFd, name: &[u8], value: &[u8], flags: i32) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: value is readable for its length.
    check(unsafe { libc::fsetxattr(fd, c.as_ptr(), value.as_ptr().cast(), value.len(), flags) }).map(drop)
}

/// `fremovexattr`.
pub fn fremovexattr(fd: RawFd, name: &[u8]) -> io::Result<()> {
    let c = cstr(name)?;
    // SAFETY: valid fd and C string.
    check(unsafe { libc::fremovexattr(fd, c.as_ptr()) }).map(drop)
}

/// `flistxattr`: every attribute name.
pub fn flistxattr(fd: RawFd) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 65536];
    // SAFETY: buf is writable for its length.
    let n = check_size(unsafe { libc::flistxattr(fd, buf.as_mut_ptr().cast(), buf.len()) })?;
    buf.truncate(n);
    Ok(buf
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect())
}
