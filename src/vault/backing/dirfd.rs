//! [`DirFd`]: an open backing directory and the `*at` calls made through it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::fd_calls::{fstat, temp_name};
use super::{check, check_size, cstr, single_component, NoAtime, NotRegular, RawEntry, TimeSpec};

/// An open backing directory.
#[derive(Debug)]
pub struct DirFd {
    fd: OwnedFd,
    noatime: NoAtime,
}

/// `openat` with O_NOATIME added when `noatime`; O_NOATIME is refused (EPERM) on a file the
/// caller neither owns nor has CAP_FOWNER for, which is then opened without it.
fn openat_atime(dirfd: RawFd, name: &CString, flags: libc::c_int, mode: u32, noatime: bool) -> io::Result<RawFd> {
    if noatime {
        // SAFETY: valid dirfd and C string.
        match check(unsafe { libc::openat(dirfd, name.as_ptr(), flags | libc::O_NOATIME, mode as libc::c_uint) }) {
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {}
            r => return r,
        }
    }
    // SAFETY: valid dirfd and C string.
    check(unsafe { libc::openat(dirfd, name.as_ptr(), flags, mode as libc::c_uint) })
}

impl AsRawFd for DirFd {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl DirFd {
    /// Opens a directory by path (used for CIPHERDIR itself).
    pub fn open_path(path: &Path) -> io::Result<DirFd> {
        let c = cstr(path.as_os_str().as_bytes())?;
        // SAFETY: c is a valid NUL-terminated string; the returned fd is owned below.
        let fd = check(unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) })?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DirFd {
            fd,
            noatime: NoAtime::default(),
        })
    }

    /// Duplicates the descriptor.
    pub fn try_clone(&self) -> io::Result<DirFd> {
        Ok(DirFd {
            fd: self.fd.try_clone()?,
            noatime: self.noatime,
        })
    }

    /// Sets which opens through this directory, and the directories opened from it, pass
    /// O_NOATIME.
    pub fn set_noatime(&mut self, noatime: NoAtime) {
        self.noatime = noatime;
    }

    /// Opens a subdirectory without following symlinks.
    pub fn open_dir(&self, name: &[u8]) -> io::Result<DirFd> {
        let c = single_component(name)?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid dirfd and C string.
        let fd = check(unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: fd is fresh and owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(DirFd {
            fd,
            noatime: self.noatime,
        })
    }

    /// Opens (or with `create_mode`, creates exclusively) a regular file; never follows symlinks,
    /// never passes O_APPEND or O_TRUNC. Anything but a regular file (a FIFO, socket or device
    /// planted in CIPHERDIR) is refused with [`NotRegular`] instead of blocking the caller: the
    /// open itself is non-blocking, the type is checked with fstat, then O_NONBLOCK is cleared.
    /// An exclusive create makes a new regular file or fails, and needs none of that.
    pub fn open_file(&self, name: &[u8], write: bool, create_mode: Option<u32>) -> io::Result<File> {
        let c = single_component(name)?;
        let mut flags = libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NOCTTY;
        flags |= if write { libc::O_RDWR } else { libc::O_RDONLY };
        if let Some(mode) = create_mode {
            // O_EXCL: a new regular file or EEXIST (never a FIFO that could block the open).
            // O_NOATIME is set afterwards: where the new file is not the caller's (a file
            // system that forces its owner), the kernel refuses it only after making the
            // file, and a retry without it would meet EEXIST and leave that file behind.
            flags |= libc::O_CREAT | libc::O_EXCL;
            // SAFETY: valid dirfd and C string.
            let fd = check(unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags, mode as libc::c_uint) })?;
            // SAFETY: fd is fresh and owned here.
            let file = unsafe { File::from_raw_fd(fd) };
            if self.noatime.files {
                // SAFETY: valid fd; F_SETFL changes only the status flags (none set before);
                // EPERM (not the owner) leaves the file as it is.
                unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, libc::O_NOATIME) };
            }
            return Ok(file);
        }
        let fd = openat_atime(self.as_raw_fd(), &c, flags | libc::O_NONBLOCK, 0, self.noatime.files)?;
        // SAFETY: fd is fresh and owned here.
        let file = unsafe { File::from_raw_fd(fd) };
        let fmt = fstat(file.as_raw_fd())?.st_mode & libc::S_IFMT;
        if fmt != libc::S_IFREG {
            return Err(io::Error::other(NotRegular { fmt }));
        }
        // SAFETY: valid fd; F_SETFL with the access flags kept and O_NONBLOCK dropped.
        let fl = check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_GETFL) })?;
        // SAFETY: as above.
        check(unsafe { libc::fcntl(file.as_raw_fd(), libc::F_SETFL, fl & !libc::O_NONBLOCK) })?;
        Ok(file)
    }

    /// An unnamed file in this directory's filesystem (`O_TMPFILE`, mode 0600): it never has a
    /// name, so no listing shows it, and it is freed when the last descriptor closes.
    pub fn open_tmpfile(&self) -> io::Result<File> {
        let flags = libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC;
        // SAFETY: valid dirfd and C string.
        let fd = check(unsafe { libc::openat(self.as_raw_fd(), c".".as_ptr(), flags, 0o600 as libc::c_uint) })?;
        // SAFETY: fd is fresh and owned here.
        Ok(unsafe { File::from_raw_fd(fd) })
    }

    /// `fstatat(AT_SYMLINK_NOFOLLOW)`.
    pub fn stat(&self, name: &[u8]) -> io::Result<libc::stat> {
        let c = single_component(name)?;
        let mut st = std::mem::MaybeUninit::<libc::stat>::zeroed();
        // SAFETY: st is a valid out pointer.
        check(unsafe { libc::fstatat(self.as_raw_fd(), c.as_ptr(), st.as_mut_ptr(), libc::AT_SYMLINK_NOFOLLOW) })?;
        // SAFETY: fstatat succeeded and filled st.
        Ok(unsafe { st.assume_init() })
    }

    /// The birth time of `name` (statx STX_BTIME, not following symlinks); None where the
    /// backing fs does not record one.
    pub fn birth(&self, name: &[u8]) -> io::Result<Option<(i64, u32)>> {
        let c = single_component(name)?;
        let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
        // SAFETY: valid dirfd, C string and out pointer.
        check(unsafe {
            libc::statx(
                self.as_raw_fd(),
                c.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_DONT_SYNC,
                libc::STATX_BTIME,
                stx.as_mut_ptr(),
            )
        })?;
        // SAFETY: statx succeeded and filled stx.
        let stx = unsafe { stx.assume_init() };
        Ok((stx.stx_mask & libc::STATX_BTIME != 0).then_some((stx.stx_btime.tv_sec, stx.stx_btime.tv_nsec)))
    }

    /// `fstat` of the directory itself.
    pub fn fstat(&self) -> io::Result<libc::stat> {
        fstat(self.as_raw_fd())
    }

    /// `mkdirat`.
    pub fn mkdir(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::mkdirat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// `unlinkat` of a non-directory.
    pub fn unlink(&self, name: &[u8]) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::unlinkat(self.as_raw_fd(), c.as_ptr(), 0) }).map(drop)
    }

    /// `unlinkat(AT_REMOVEDIR)`.
    pub fn rmdir(&self, name: &[u8]) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::unlinkat(self.as_raw_fd(), c.as_ptr(), libc::AT_REMOVEDIR) }).map(drop)
    }

    /// `renameat2` with RENAME_NOREPLACE / RENAME_EXCHANGE flags passed through.
    pub fn rename(&self, old: &[u8], new_dir: &DirFd, new: &[u8], flags: u32) -> io::Result<()> {
        let o = single_component(old)?;
        let n = single_component(new)?;
        // SAFETY: valid dirfds and C strings.
        check(unsafe {
            libc::renameat2(
                self.as_raw_fd(),
                o.as_ptr(),
                new_dir.as_raw_fd(),
                n.as_ptr(),
                flags as libc::c_uint,
            )
        })
        .map(drop)
    }

    /// Gives the open file `file` one more name, `name` in this directory (`linkat` through
    /// `/proc/self/fd`, which needs no capability; the file must still have a name).
    pub fn link_open_file(&self, file: &File, name: &[u8]) -> io::Result<()> {
        let n = single_component(name)?;
        let src = cstr(format!("/proc/self/fd/{}", file.as_raw_fd()).as_bytes())?;
        // SAFETY: valid dirfd and C strings.
        check(unsafe {
            libc::linkat(
                libc::AT_FDCWD,
                src.as_ptr(),
                self.as_raw_fd(),
                n.as_ptr(),
                libc::AT_SYMLINK_FOLLOW,
            )
        })
        .map(drop)
    }

    /// `symlinkat`.
    pub fn symlink(&self, target: &[u8], name: &[u8]) -> io::Result<()> {
        let t = cstr(target)?;
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C strings.
        check(unsafe { libc::symlinkat(t.as_ptr(), self.as_raw_fd(), c.as_ptr()) }).map(drop)
    }

    /// `readlinkat`.
    pub fn readlink(&self, name: &[u8]) -> io::Result<Vec<u8>> {
        let c = single_component(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: buf is writable for its length.
        let n =
            check_size(unsafe { libc::readlinkat(self.as_raw_fd(), c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) })?;
        buf.truncate(n);
        Ok(buf)
    }

    /// `linkat` (no symlink following).
    pub fn link(&self, old: &[u8], new_dir: &DirFd, new: &[u8]) -> io::Result<()> {
        let o = single_component(old)?;
        let n = single_component(new)?;
        // SAFETY: valid dirfds and C strings.
        check(unsafe { libc::linkat(self.as_raw_fd(), o.as_ptr(), new_dir.as_raw_fd(), n.as_ptr(), 0) }).map(drop)
    }

    /// `mknodat`.
    pub fn mknod(&self, name: &[u8], mode: u32, rdev: u64) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::mknodat(self.as_raw_fd(), c.as_ptr(), mode as libc::mode_t, rdev as libc::dev_t) })
            .map(drop)
    }

    /// `fchmodat2(AT_SYMLINK_NOFOLLOW)`: never follows a symlink, even one swapped in after the
    /// caller's stat (a symlink itself gives EOPNOTSUPP, as Linux cannot chmod one). Kernels
    /// before 6.6 lack the call: then [`chmod_nofollow_fallback`](Self::chmod_nofollow_fallback).
    pub fn chmod(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string; fchmodat2 takes (dirfd, path, mode, flags).
        let r = unsafe {
            libc::syscall(
                libc::SYS_fchmodat2,
                self.as_raw_fd(),
                c.as_ptr(),
                mode as libc::c_uint,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if r == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::ENOSYS) => self.chmod_nofollow_fallback(name, mode),
            _ => Err(e),
        }
    }

    /// chmod without following symlinks on kernels without fchmodat2: the entry is pinned
    /// with an `O_PATH | O_NOFOLLOW` descriptor, a symlink is refused (EOPNOTSUPP), and
    /// anything else is changed through `/proc/self/fd` (which names the pinned object itself).
    pub fn chmod_nofollow_fallback(&self, name: &[u8], mode: u32) -> io::Result<()> {
        let c = single_component(name)?;
        let flags = libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC;
        // SAFETY: valid dirfd and C string.
        let fd = check(unsafe { libc::openat(self.as_raw_fd(), c.as_ptr(), flags) })?;
        // SAFETY: fd is fresh and owned here.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        if fstat(fd.as_raw_fd())?.st_mode & libc::S_IFMT == libc::S_IFLNK {
            return Err(io::Error::from_raw_os_error(libc::EOPNOTSUPP));
        }
        let proc = cstr(format!("/proc/self/fd/{}", fd.as_raw_fd()).as_bytes())?;
        // SAFETY: valid C string.
        check(unsafe { libc::chmod(proc.as_ptr(), mode as libc::mode_t) }).map(drop)
    }

    /// `fchownat(AT_SYMLINK_NOFOLLOW)`; `u32::MAX` leaves an id unchanged.
    pub fn chown(&self, name: &[u8], uid: u32, gid: u32) -> io::Result<()> {
        let c = single_component(name)?;
        // SAFETY: valid dirfd and C string.
        check(unsafe { libc::fchownat(self.as_raw_fd(), c.as_ptr(), uid, gid, libc::AT_SYMLINK_NOFOLLOW) }).map(drop)
    }

    /// `utimensat(AT_SYMLINK_NOFOLLOW)`.
    pub fn utimens(&self, name: &[u8], atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
        let c = single_component(name)?;
        let times = [atime.to_libc(), mtime.to_libc()];
        // SAFETY: valid dirfd, C string and a 2-element array.
        check(unsafe { libc::utimensat(self.as_raw_fd(), c.as_ptr(), times.as_ptr(), libc::AT_SYMLINK_NOFOLLOW) })
            .map(drop)
    }

    /// `fchmod` of the directory itself.
    pub fn fchmod(&self, mode: u32) -> io::Result<()> {
        // SAFETY: valid fd.
        check(unsafe { libc::fchmod(self.as_raw_fd(), mode as libc::mode_t) }).map(drop)
    }

    /// `fchown` of the directory itself; `u32::MAX` leaves an id unchanged.
    pub fn fchown(&self, uid: u32, gid: u32) -> io::Result<()> {
        // SAFETY: valid fd.
        check(unsafe { libc::fchown(self.as_raw_fd(), uid, gid) }).map(drop)
    }

    /// `futimens` of the directory itself.
    pub fn futimens(&self, atime: TimeSpec, mtime: TimeSpec) -> io::Result<()> {
        let times = [atime.to_libc(), mtime.to_libc()];
        // SAFETY: valid fd and a 2-element array.
        check(unsafe { libc::futimens(self.as_raw_fd(), times.as_ptr()) }).map(drop)
    }

    /// `fstatvfs` of the file system holding the directory.
    pub fn statvfs(&self) -> io::Result<libc::statvfs> {
        let mut st = std::mem::MaybeUninit::<libc::statvfs>::zeroed();
        // SAFETY: st is a valid out pointer.
        check(unsafe { libc::fstatvfs(self.as_raw_fd(), st.as_mut_ptr()) })?;
        // SAFETY: fstatvfs succeeded.
        Ok(unsafe { st.assume_init() })
    }

    /// `fsync` of the directory.
    pub fn fsync(&self) -> io::Result<()> {
        // SAFETY: valid fd.
        check(unsafe { libc::fsync(self.as_raw_fd()) }).map(drop)
    }

    /// `syncfs` of the filesystem this directory is on: every file written there is durable.
    pub fn syncfs(&self) -> io::Result<()> {
        // SAFETY: valid fd.
        check(unsafe { libc::syncfs(self.as_raw_fd()) }).map(drop)
    }

    /// All entries except `.` and `..`, for coffer's own use (diriv copies, sidecars, fsck):
    /// the listing leaves the directory's access time alone where O_NOATIME is allowed, so
    /// that a later listing by the user updates it as on the backing file system.
    pub fn list(&self) -> io::Result<Vec<RawEntry>> {
        self.list_with(true)
    }

    /// All entries except `.` and `..`, for a listing the user asked for: the access time
    /// follows the mount's policy ([`NoAtime::dirs`]).
    pub fn list_as_read(&self) -> io::Result<Vec<RawEntry>> {
        self.list_with(self.noatime.dirs)
    }

    fn list_with(&self, noatime: bool) -> io::Result<Vec<RawEntry>> {
        // fdopendir takes ownership of its fd: give it a duplicate opened fresh at offset 0.
        let dot = cstr(b".")?;
        let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC;
        let fd = openat_atime(self.as_raw_fd(), &dot, flags, 0, noatime)?;
        // SAFETY: fd is a fresh directory fd; on success the DIR owns it.
        let dir = unsafe { libc::fdopendir(fd) };
        if dir.is_null() {
            let e = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so fd is still ours to close.
            unsafe { libc::close(fd) };
            return Err(e);
        }
        let mut out = Vec::new();
        let result = loop {
            // readdir returns NULL at the end and on error; errno tells them apart.
            // SAFETY: errno location is thread-local and valid.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: dir is a valid DIR*.
            let ent = unsafe { libc::readdir64(dir) };
            if ent.is_null() {
                // SAFETY: as above.
                let errno = unsafe { *libc::__errno_location() };
                break if errno == 0 {
                    Ok(())
                } else {
                    Err(io::Error::from_raw_os_error(errno))
                };
            }
            // SAFETY: ent points to a valid dirent64 until the next readdir call.
            let (name, ino, d_type) = unsafe {
                let e = &*ent;
                (
                    std::ffi::CStr::from_ptr(e.d_name.as_ptr()).to_bytes().to_vec(),
                    e.d_ino,
                    e.d_type,
                )
            };
            if name == b"." || name == b".." {
                continue;
            }
            out.push(RawEntry { name, ino, d_type });
        };
        // SAFETY: dir is valid and closed exactly once.
        unsafe { libc::closedir(dir) };
        result.map(|()| out)
    }

    /// Reads a small file fully, refusing more than `max` bytes.
    pub fn read_small(&self, name: &[u8], max: usize) -> io::Result<Vec<u8>> {
        use std::io::Read;
        let f = self.open_file(name, false, None)?;
        let mut buf = Vec::new();
        f.take(max as u64 + 1).read_to_end(&mut buf)?;
        if buf.len() > max {
            return Err(io::Error::from_raw_os_error(libc::EFBIG));
        }
        Ok(buf)
    }

    /// Writes `data` to `name` atomically: temp file, fsync, rename over, fsync directory.
    pub fn write_atomic(&self, name: &[u8], data: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let tmp = temp_name()?;
        let result = (|| {
            let mut f = self.open_file(&tmp, true, Some(mode))?;
            f.write_all(data)?;
            // The umask may have narrowed the mode; set it exactly.
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(mode))?;
            f.sync_all()?;
            self.rename(&tmp, self, name, 0)?;
            self.fsync()
        })();
        if result.is_err() {
            let _ = self.unlink(&tmp);
        }
        result
    }

    /// Creates `name` with `data` exclusively (fails with EEXIST), fsynced.
    pub fn write_new(&self, name: &[u8], data: &[u8], mode: u32) -> io::Result<()> {
        use std::io::Write;
        let mut f = self.open_file(name, true, Some(mode))?;
        let r = f.write_all(data).and_then(|()| f.sync_all());
        if r.is_err() {
            drop(f);
            let _ = self.unlink(name);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_names_and_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DirFd::open_path(tmp.path()).unwrap();
        assert!(d.open_dir(b"..").is_err());
        assert!(d.open_file(b"a/b", false, None).is_err());
        std::os::unix::fs::symlink("/etc", tmp.path().join("evil")).unwrap();
        let e = d.open_dir(b"evil").unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)),
            "{e}"
        );
        assert!(d.open_file(b"evil", false, None).is_err());
        std::os::unix::fs::symlink("/etc/passwd", tmp.path().join("evilf")).unwrap();
        assert_eq!(
            d.open_file(b"evilf", false, None).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn an_exclusive_create_never_opens_what_is_there() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DirFd::open_path(tmp.path()).unwrap();
        use std::os::unix::ffi::OsStringExt;
        let fifo = CString::new(tmp.path().join("fifo").into_os_string().into_vec()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        std::os::unix::fs::symlink(tmp.path().join("absent"), tmp.path().join("dangling")).unwrap();
        std::fs::write(tmp.path().join("file"), b"kept").unwrap();
        for name in ["fifo", "dangling", "file"] {
            // A FIFO without a writer would block an open that waited for one.
            let e = d.open_file(name.as_bytes(), true, Some(0o600)).unwrap_err();
            assert_eq!(e.raw_os_error(), Some(libc::EEXIST), "{name}");
        }
        assert!(!tmp.path().join("absent").exists(), "the symlink was not followed");
        assert_eq!(std::fs::read(tmp.path().join("file")).unwrap(), b"kept");
        let made = d.open_file(b"new", true, Some(0o640)).unwrap();
        let st = fstat(made.as_raw_fd()).unwrap();
        assert_eq!(st.st_mode & libc::S_IFMT, libc::S_IFREG);
        // SAFETY: valid fd.
        let fl = unsafe { libc::fcntl(made.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(fl & (libc::O_NOATIME | libc::O_NONBLOCK), 0, "{fl:#x}");

        // Under noatime the new file is opened with O_NOATIME too.
        let mut d = d;
        d.set_noatime(NoAtime {
            files: true,
            dirs: false,
        });
        let made = d.open_file(b"quiet", true, Some(0o600)).unwrap();
        // SAFETY: valid fd.
        let fl = unsafe { libc::fcntl(made.as_raw_fd(), libc::F_GETFL) };
        assert_eq!(
            fl & (libc::O_NOATIME | libc::O_ACCMODE),
            libc::O_NOATIME | libc::O_RDWR,
            "{fl:#x}"
        );
    }

    #[test]
    fn chmod_never_follows_a_symlink() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        let d = DirFd::open_path(tmp.path()).unwrap();
        let target = tmp.path().join("target");
        std::fs::write(&target, b"x").unwrap();
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::os::unix::fs::symlink(&target, tmp.path().join("link")).unwrap();
        let mode = || std::fs::metadata(&target).unwrap().permissions().mode() & 0o7777;
        for (what, r) in [
            ("chmod", d.chmod(b"link", 0o6777)),
            ("fallback", d.chmod_nofollow_fallback(b"link", 0o6777)),
        ] {
            assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EOPNOTSUPP), "{what}");
            assert_eq!(mode(), 0o644, "{what} changed the symlink's target");
        }
        d.chmod(b"target", 0o600).unwrap();
        assert_eq!(mode(), 0o600);
        d.chmod_nofollow_fallback(b"target", 0o640).unwrap();
        assert_eq!(mode(), 0o640);
        let fifo = cstr(tmp.path().join("fifo").as_os_str().as_bytes()).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        d.chmod_nofollow_fallback(b"fifo", 0o666).unwrap();
        assert_eq!(d.stat(b"fifo").unwrap().st_mode & 0o7777, 0o666);
    }

    #[test]
    fn atomic_write_and_list() {
        let tmp = tempfile::tempdir().unwrap();
        let d = DirFd::open_path(tmp.path()).unwrap();
        d.write_atomic(b"conf", b"hello", 0o600).unwrap();
        d.write_atomic(b"conf", b"world", 0o600).unwrap();
        assert_eq!(d.read_small(b"conf", 100).unwrap(), b"world");
        let st = d.stat(b"conf").unwrap();
        assert_eq!(st.st_mode & 0o777, 0o600);
        let names: Vec<_> = d.list().unwrap().into_iter().map(|e| e.name).collect();
        assert_eq!(names, vec![b"conf".to_vec()]);
        assert!(d.read_small(b"conf", 3).is_err());
    }
}
