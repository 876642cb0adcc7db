//! Calls on an open backing fd: stat, reflink, writeback, space reservation, hole seeking; and temporary names.

use std::ffi::OsStr;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;

use super::{check, single_component, TimeSpec};

/// A fresh hidden temporary name (`.coffer-tmp-` + 16 hex digits).
pub fn temp_name() -> io::Result<Vec<u8>> {
    let r: [u8; 8] = crate::crypto::random_array().map_err(|e| io::Error::other(e.to_string()))?;
    let hex: String = r.iter().map(|b| format!("{b:02x}")).collect();
    Ok(format!("{}{hex}", crate::format::backing_name::TEMP_PREFIX).into_bytes())
}

/// Sets the access time of the open file `fd` to now (and, as any utimensat, its change
/// time): what a read does on a `strictatime` mount.
pub fn touch_atime(fd: RawFd) -> io::Result<()> {
    let times = [TimeSpec::Now.to_libc(), TimeSpec::Omit.to_libc()];
    // SAFETY: valid fd and a two-element timespec array.
    check(unsafe { libc::futimens(fd, times.as_ptr()) }).map(drop)
}

/// `fstat` of any fd.
pub fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
    // SAFETY: st is a valid out pointer.
    check(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded.
    Ok(unsafe { st.assume_init() })
}

/// The birth time of the object open at `fd` (statx STX_BTIME); None where the backing fs does
/// not record one.
pub fn fbirth(fd: RawFd) -> io::Result<Option<(i64, u32)>> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: valid fd, an empty C string with AT_EMPTY_PATH, and a valid out pointer.
    check(unsafe {
        libc::statx(
            fd,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH | libc::AT_STATX_DONT_SYNC,
            libc::STATX_BTIME,
            stx.as_mut_ptr(),
        )
    })?;
    // SAFETY: statx succeeded and filled stx.
    let stx = unsafe { stx.assume_init() };
    Ok((stx.stx_mask & libc::STATX_BTIME != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)))
}

/// Makes `dst` share all of `src`'s extents (`ioctl(FICLONE)`): an instant copy of `src` as it
/// is now, which later writes to `src` do not change. EOPNOTSUPP, EXDEV or EINVAL where the
/// filesystem has no reflinks.
pub fn reflink(dst: RawFd, src: RawFd) -> io::Result<()> {
    // SAFETY: plain ioctl on caller-owned fds; FICLONE takes the source fd as its argument.
    check(unsafe { libc::ioctl(dst, libc::FICLONE, src) }).map(drop)
}

/// Starts writeback of the dirty pages of `[off, off + len)` of `fd` without waiting for it
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`): no durability promise, only an earlier start.
pub fn start_writeback(fd: RawFd, off: u64, len: u64) -> io::Result<()> {
    let (off, len) = (
        libc::off64_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
        libc::off64_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?,
    );
    // SAFETY: plain syscall on a caller-owned fd.
    check(unsafe { libc::sync_file_range(fd, off, len, libc::SYNC_FILE_RANGE_WRITE) }).map(drop)
}

/// `fallocate(FALLOC_FL_KEEP_SIZE)`: reserves `[off, off + len)` of a backing file without
/// changing its size (ENOSPC when the disk cannot hold it).
pub fn reserve(fd: RawFd, off: u64, len: u64) -> io::Result<()> {
    let conv = |v: u64| libc::off_t::try_from(v).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG));
    let (off, len) = (conv(off)?, conv(len)?);
    // SAFETY: plain syscall on a caller-owned fd; no memory is passed.
    check(unsafe { libc::fallocate(fd, libc::FALLOC_FL_KEEP_SIZE, off, len) }).map(drop)
}

/// `lseek(SEEK_DATA / SEEK_HOLE)` of a backing file from `off`; None for ENXIO (no data at or
/// after `off`, or `off` at or past the end).
pub fn seek(fd: RawFd, off: u64, whence: libc::c_int) -> io::Result<Option<u64>> {
    let off = libc::off_t::try_from(off).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: plain syscall on a caller-owned fd; no memory is passed.
    let r = unsafe { libc::lseek(fd, off, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::ENXIO) {
            Ok(None)
        } else {
            Err(e)
        };
    }
    Ok(Some(r as u64))
}

/// Whether a path's final component is a plain name (helper for CLI path handling).
pub fn is_plain_component(name: &OsStr) -> bool {
    single_component(name.as_bytes()).is_ok()
}
