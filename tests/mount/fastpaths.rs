//! The mount's fast paths answer exactly as the slow paths they skip: xattr names the
//! vault never stores, cached file headers after the file changes underneath.

use crate::support::common;

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{cpath, TestMount};

fn get_xattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let c = cpath(p);
    let n = CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: valid C strings; the buffer is writable for its length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

fn errno_of(r: io::Result<Vec<u8>>) -> Option<i32> {
    r.err().and_then(|e| e.raw_os_error())
}

#[test]
fn xattr_names_outside_user_are_refused_without_the_file() {
    let Some(m) = TestMount::new() else { return };
    fs::write(m.path("f"), b"data").unwrap();
    fs::write(m.path("empty"), b"").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    symlink("f", m.path("l")).unwrap();
    // Without CAP_SYS_ADMIN the kernel answers trusted.* reads itself (ENODATA, as on ext4).
    let trusted = if common::is_root() {
        libc::EOPNOTSUPP
    } else {
        libc::ENODATA
    };
    // A missing user.* name: as the backing answers (ramfs stores none: EOPNOTSUPP).
    let missing = if common::user_xattrs_supported(&m.cipher) {
        libc::ENODATA
    } else {
        libc::EOPNOTSUPP
    };
    for obj in ["f", "empty", "d", ""] {
        let p = m.path(obj);
        // What the kernel asks before every write.
        assert_eq!(
            errno_of(get_xattr(&p, "security.capability")),
            Some(libc::EOPNOTSUPP),
            "{obj}"
        );
        assert_eq!(errno_of(get_xattr(&p, "trusted.x")), Some(trusted), "{obj}");
        assert_eq!(errno_of(get_xattr(&p, "user.missing")), Some(missing), "{obj}");
        let long = format!("user.{}", "x".repeat(250));
        assert_eq!(errno_of(get_xattr(&p, &long)), Some(libc::ERANGE), "{obj}");
    }
    // Symlinks have no xattrs at all: every name is ENODATA, as before.
    assert_eq!(
        errno_of(get_xattr(&m.path("l"), "security.capability")),
        Some(libc::ENODATA)
    );
    // A file still being written keeps working (one capability probe per write).
    let mut data = Vec::new();
    for i in 0..64u32 {
        let chunk = vec![i as u8; 3000];
        data.extend_from_slice(&chunk);
        let mut f = fs::OpenOptions::new().append(true).open(m.path("f")).unwrap();
        io::Write::write_all(&mut f, &chunk).unwrap();
    }
    let got = fs::read(m.path("f")).unwrap();
    assert_eq!(&got[..4], b"data");
    assert_eq!(&got[4..], &data[..]);
}

#[test]
fn setattr_replies_with_the_new_attributes() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let Some(m) = TestMount::new() else { return };
    let f = m.path("f");
    fs::write(&f, b"hello world").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    for (p, mode) in [(&f, 0o640), (&m.path("d"), 0o705)] {
        fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
        // The kernel keeps the attributes of the setattr reply for the TTL: they must be new.
        assert_eq!(fs::metadata(p).unwrap().mode() & 0o7777, mode);
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_007);
        fs::File::options().read(true).open(p).unwrap().set_modified(t).unwrap();
        assert_eq!(fs::metadata(p).unwrap().mtime(), 1_000_000_007);
        let c = cpath(p);
        let ts = [
            libc::timespec { tv_sec: 5, tv_nsec: 0 },
            libc::timespec {
                tv_sec: 1_000_000_009,
                tv_nsec: 0,
            },
        ];
        // SAFETY: valid C string and two timespecs.
        assert_eq!(
            unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), ts.as_ptr(), 0) },
            0
        );
        let md = fs::metadata(p).unwrap();
        assert_eq!((md.atime(), md.mtime()), (5, 1_000_000_009));
    }
    // Truncate by path: size and content agree at once.
    let c = cpath(&f);
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::truncate(c.as_ptr(), 5) }, 0);
    assert_eq!(fs::metadata(&f).unwrap().len(), 5);
    assert_eq!(fs::read(&f).unwrap(), b"hello");
    // A name replaced underneath (as a sync client does) answers for the new object.
    fs::write(m.path("g"), b"other").unwrap();
    fs::rename(m.path("g"), &f).unwrap();
    fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(&f).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::read(&f).unwrap(), b"other");
}
