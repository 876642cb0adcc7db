//! POSIX semantics the mount must share with a local file system, each compared with the same
//! steps on a plain directory: truncation on backings without xattrs and of damaged files,
//! permission checks that no open handle bypasses, modes, renames, directory streams, holes,
//! fallocate; and the one documented difference, file handles.

mod support;

use support::common;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use coffer::fs::MountOptions;
use common::{errno, get_xattr, is_root, same, set_xattr, Scratch, TestMount, WATCHDOG};

/// The backing files of a vault's root directory (everything but coffer's own files).
fn backing_files(cipher: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            !n.starts_with("coffer.") && fs::symlink_metadata(p).unwrap().is_file()
        })
        .collect();
    v.sort();
    v
}

/// Writes `f`, truncates it to 0 by O_TRUNC and by truncate(2), and reports what it read back.
fn truncate_steps(dir: &Path) -> io::Result<(u64, u64, Vec<u8>)> {
    let p = dir.join("t");
    fs::write(&p, b"hello world")?;
    // `: > t`
    drop(OpenOptions::new().write(true).truncate(true).open(&p)?);
    let after_otrunc = fs::metadata(&p)?.len();
    fs::write(&p, b"again")?;
    // truncate -s0 t (setattr size 0 without a handle)
    OpenOptions::new().write(true).open(&p)?;
    let c = common::cpath(&p);
    // SAFETY: valid C string.
    common::cvt(unsafe { libc::truncate(c.as_ptr(), 0) })?;
    let after_truncate = fs::metadata(&p)?.len();
    fs::write(&p, b"third")?;
    Ok((after_otrunc, after_truncate, fs::read(&p)?))
}

#[test]
fn truncate_to_zero_on_a_backing_without_xattrs() {
    if !is_root() {
        eprintln!("needs root to mount ramfs; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let _ram = Scratch::mount(&t.path().join("ram"), "ramfs", "mode=0700");
    let plain = t.path().join("ram/plain");
    fs::create_dir(&plain).unwrap();
    let m = TestMount::in_dir(&t.path().join("ram"), MountOptions::default(), WATCHDOG).unwrap();
    // ramfs stores no user xattrs: listing works there but setting fails; the mount must not
    // need them to truncate.
    same(&m.mnt, &plain, "truncate to 0", truncate_steps);
    same(&m.mnt, &plain, "setxattr", |d| {
        set_xattr(&d.join("t"), "user.a", b"1", 0)
    });
}

/// Makes `flistxattr` fail with `errno` in this thread and the threads it starts from now on
/// (the mount's daemon threads): a backing that cannot list xattrs, as sshfs, rclone and other
/// FUSE file systems answer (EOPNOTSUPP; ENOSYS from some).
#[cfg(target_arch = "x86_64")]
fn backing_cannot_list_xattrs(errno: i32) {
    const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;
    let ld = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
    let jeq = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
    let ret = (libc::BPF_RET | libc::BPF_K) as u16;
    let ins = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    // seccomp_data: nr u32 at 0, arch u32 at 4.
    let mut prog = [
        ins(ld, 0, 0, 4),
        ins(jeq, 0, 3, AUDIT_ARCH_X86_64),
        ins(ld, 0, 0, 0),
        ins(jeq, 0, 1, libc::SYS_flistxattr as u32),
        ins(ret, 0, 0, libc::SECCOMP_RET_ERRNO | errno as u32),
        ins(ret, 0, 0, libc::SECCOMP_RET_ALLOW),
    ];
    let fprog = libc::sock_fprog {
        len: prog.len() as u16,
        filter: prog.as_mut_ptr(),
    };
    // SAFETY: plain prctl calls; fprog points to a live filter for the duration of the call.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        let r = libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &fprog as *const _);
        assert_eq!(r, 0, "seccomp: {}", io::Error::last_os_error());
    }
}

#[cfg(target_arch = "x86_64")]
#[test]
fn truncate_to_zero_when_the_backing_cannot_list_xattrs() {
    if !is_root() {
        // The filter needs no_new_privs, under which set-uid fusermount3 cannot mount.
        eprintln!("needs root to install a seccomp filter and still mount; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    // On the plain side the same filter stands for a FUSE backing without xattr support.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for e in [libc::EOPNOTSUPP, libc::ENOSYS] {
            backing_cannot_list_xattrs(e);
            let Some(m) = TestMount::new() else { return };
            tx.send((e, truncate_steps(&m.mnt).map_err(|x| x.raw_os_error())))
                .unwrap();
        }
    })
    .join()
    .unwrap();
    let want = truncate_steps(plain.path()).unwrap();
    for (e, got) in rx.try_iter() {
        assert_eq!(got, Ok(want.clone()), "flistxattr failing with errno {e}");
    }
}

/// Corrupts byte `at` of the only backing file of `m`'s root.
fn damage(m: &TestMount, at: u64) {
    let files = backing_files(&m.cipher);
    assert_eq!(files.len(), 1, "{files:?}");
    let f = OpenOptions::new().read(true).write(true).open(&files[0]).unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at).unwrap();
    f.write_all_at(&[b[0] ^ 0x5a], at).unwrap();
}

#[test]
fn truncate_to_zero_of_a_damaged_file() {
    // Byte 0: the header version (the header does not parse). Byte 5: the file ID (the
    // header parses, the xattr no longer authenticates).
    for at in [0u64, 5] {
        let Some(m) = TestMount::new() else { return };
        let p = m.path("f");
        fs::write(&p, vec![7u8; 10_000]).unwrap();
        // Without backing xattrs (ramfs) the file has none to lose.
        let xattrs = common::user_xattrs_supported(&m.cipher);
        if xattrs {
            set_xattr(&p, "user.k", b"v", 0).unwrap();
        }
        damage(&m, at);
        let mut buf = Vec::new();
        let r = fs::File::open(&p).and_then(|mut f| f.read_to_end(&mut buf));
        assert_eq!(errno(&r), Some(libc::EIO), "byte {at}: the damage is seen");
        // `: > f` leaves nothing damaged to keep: it succeeds as on any file system.
        let f = OpenOptions::new().write(true).truncate(true).open(&p);
        assert!(f.is_ok(), "byte {at}: O_TRUNC of a damaged file: {f:?}");
        drop(f);
        assert_eq!(fs::metadata(&p).unwrap().len(), 0);
        fs::write(&p, b"fresh").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"fresh");
        if xattrs {
            assert_eq!(errno(&get_xattr(&p, "user.k")), Some(libc::ENODATA), "byte {at}");
        }
        // And through truncate(2) after damaging the new header.
        damage(&m, at);
        let c = common::cpath(&p);
        // SAFETY: valid C string.
        let r = common::cvt(unsafe { libc::truncate(c.as_ptr(), 0) });
        assert!(r.is_ok(), "byte {at}: truncate(2) of a damaged file: {r:?}");
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"ok").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"ok");
    }
}

/// Clears CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and CAP_FOWNER from this thread's effective
/// set (capabilities are per thread; threads it starts from now on inherit that): a root
/// thread then meets file modes as an ordinary owner does, and a mount it starts is served
/// by daemon threads that do too, like a user's own mount (owner-only: the kernel leaves the
/// permission checks to the daemon's backing syscalls).
fn drop_file_capabilities() {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy, Default)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const V3: u32 = 0x2008_0522;
    let mut h = Header { version: V3, pid: 0 };
    let mut d = [Data::default(); 2];
    // SAFETY: header and a 2-element data array as capget(2) expects for version 3.
    let r = unsafe { libc::syscall(libc::SYS_capget, &mut h as *mut Header, d.as_mut_ptr()) };
    assert_eq!(r, 0, "capget: {}", io::Error::last_os_error());
    let (dac_override, dac_read_search, fowner) = (1u32, 2u32, 3u32);
    d[0].effective &= !((1 << dac_override) | (1 << dac_read_search) | (1 << fowner));
    // SAFETY: as above, for capset(2) on the calling thread (pid 0).
    let r = unsafe { libc::syscall(libc::SYS_capset, &h as *const Header, d.as_ptr()) };
    assert_eq!(r, 0, "capset: {}", io::Error::last_os_error());
}

/// Creates `f`, keeps it open for appending, makes it read-only, then truncates it and sets
/// an xattr by name: both need write permission, which the open descriptor does not lend.
fn read_only_with_open_writer(dir: &Path) -> Vec<(String, Option<i32>)> {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("ro");
    fs::write(&p, b"data").unwrap();
    let keep = OpenOptions::new().append(true).open(&p).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o444)).unwrap();
    let c = common::cpath(&p);
    // SAFETY: valid C string.
    let trunc = common::cvt(unsafe { libc::truncate(c.as_ptr(), 0) });
    let xattr = set_xattr(&p, "user.x", b"1", 0);
    let size = fs::metadata(&p).unwrap().len();
    // Through the descriptor both are allowed.
    let ftrunc = keep.set_len(1).map(drop);
    drop(keep);
    fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
    vec![
        ("truncate(2)".into(), errno(&trunc)),
        ("setxattr".into(), errno(&xattr)),
        (format!("size {size}"), None),
        ("ftruncate".into(), errno(&ftrunc)),
    ]
}

#[test]
fn an_open_handle_lends_no_write_permission() {
    if !is_root() {
        eprintln!("needs root to drop capabilities per thread; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    let plain_path = plain.path().to_path_buf();
    let (on_mount, on_plain) = std::thread::spawn(move || {
        drop_file_capabilities();
        let m = TestMount::new().unwrap();
        (
            read_only_with_open_writer(&m.mnt),
            read_only_with_open_writer(&plain_path),
        )
    })
    .join()
    .unwrap();
    assert_eq!(on_plain[0].1, Some(libc::EACCES), "the plain side checks: {on_plain:?}");
    assert_eq!(on_mount, on_plain);
}

/// Modes of objects made by a child process whose umask is 0 (mkfifo and mknod without -m
/// pass the umask-masked mode and never chmod afterwards). The character device only as root
/// (mknod of a device needs CAP_MKNOD).
fn made_with_umask_0(dir: &Path) -> Vec<(String, u32)> {
    let (device, names): (&str, &[&str]) = if is_root() {
        ("mknod c c 1 3 && ", &["p", "c", "d", "f"])
    } else {
        ("", &["p", "d", "f"])
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!("umask 0; mkfifo p && {device}mkdir d && : > f"))
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    names
        .iter()
        .map(|n| {
            use std::os::unix::fs::MetadataExt;
            (n.to_string(), fs::symlink_metadata(dir.join(n)).unwrap().mode())
        })
        .collect()
}

#[test]
fn the_daemons_umask_never_narrows_new_modes() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    // The daemon shares this process's umask: make it one that would narrow 0666.
    // SAFETY: umask has no preconditions.
    unsafe { libc::umask(0o022) };
    let on_plain = made_with_umask_0(plain.path());
    assert_eq!(on_plain[0].1 & 0o777, 0o666, "{on_plain:?}");
    assert_eq!(made_with_umask_0(&m.mnt), on_plain);
}

#[test]
fn removexattr_on_a_symlink_is_eperm() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    same(&m.mnt, plain.path(), "user xattrs on a symlink", |d| {
        let l = d.join("l");
        std::os::unix::fs::symlink("target", &l)?;
        Ok((
            errno(&set_xattr(&l, "user.a", b"1", 0)),
            errno(&get_xattr(&l, "user.a")),
            errno(&common::remove_xattr(&l, "user.a")),
        ))
    });
}

/// The backing directory of the only directory in `m`'s root.
fn backing_dir(m: &TestMount) -> PathBuf {
    let dirs: Vec<PathBuf> = fs::read_dir(&m.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| fs::symlink_metadata(p).unwrap().is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn rmdir_of_an_empty_directory_with_crash_leftovers() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    fs::create_dir(m.path("d")).unwrap();
    // What a crash in mkdir, or in an atomic write, leaves behind in the backing directory.
    let b = backing_dir(&m);
    fs::create_dir(b.join(".coffer-tmp-0123456789abcdef")).unwrap();
    fs::write(b.join(".coffer-tmp-0123456789abcdef/coffer.diriv"), [1u8; 16]).unwrap();
    fs::write(b.join(".coffer-tmp-fedcba9876543210"), b"half").unwrap();
    fs::create_dir(plain.path().join("d")).unwrap();
    same(&m.mnt, plain.path(), "listing", |d| {
        Ok(fs::read_dir(d.join("d"))?.count())
    });
    same(&m.mnt, plain.path(), "rmdir", |d| fs::remove_dir(d.join("d")));
    assert!(!b.exists(), "the backing directory is gone");
}

fn rename2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (a, b) = (common::cpath(from), common::cpath(to));
    // SAFETY: valid C strings.
    common::cvt(unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) }).map(drop)
}

/// Sorted names and kinds in `dir` ('d', 'f', 'c' for a whiteout, ...).
fn listing(dir: &Path) -> io::Result<Vec<(String, char)>> {
    use std::os::unix::fs::FileTypeExt;
    let mut v = Vec::new();
    for e in fs::read_dir(dir)? {
        let e = e?;
        let t = e.file_type()?;
        let k = if t.is_dir() {
            'd'
        } else if t.is_char_device() {
            'c'
        } else if t.is_file() {
            'f'
        } else {
            '?'
        };
        v.push((e.file_name().to_string_lossy().into_owned(), k));
    }
    v.sort();
    Ok(v)
}

#[test]
fn a_directory_renamed_over_an_empty_directory() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    for (i, flags) in [0, libc::RENAME_WHITEOUT].into_iter().enumerate() {
        for across in [false, true] {
            let what = format!("flags {flags:#x}, across directories: {across}");
            same(&m.mnt, plain.path(), &what, |root| {
                let top = root.join(format!("r{i}{across}"));
                let (a, b) = (top.join("a"), top.join(if across { "b" } else { "a" }));
                fs::create_dir_all(a.join("src"))?;
                fs::create_dir_all(b.join("dst"))?;
                fs::write(a.join("src/file"), b"inside")?;
                let r = errno(&rename2(&a.join("src"), &b.join("dst"), flags));
                Ok((r, listing(&a)?, listing(&b)?, fs::read(b.join("dst/file")).ok()))
            });
        }
    }
}

/// A 300 MiB xfs image mounted (loop) at `xfs` in the returned directory.
fn xfs_image() -> (tempfile::TempDir, Scratch) {
    common::require_tool("mkfs.xfs");
    let t = tempfile::tempdir().unwrap();
    let img = t.path().join("img");
    fs::File::create(&img).unwrap().set_len(300 << 20).unwrap();
    let at = t.path().join("xfs");
    fs::create_dir(&at).unwrap();
    common::run(t.path(), "mkfs.xfs", &["-q".as_ref(), img.as_os_str()]);
    let args: [&std::ffi::OsStr; 4] = ["-o".as_ref(), "loop".as_ref(), img.as_os_str(), at.as_os_str()];
    common::run(t.path(), "mount", &args);
    (t, Scratch(at))
}

/// A directory renamed over a non-empty one fails as on the backing: EEXIST on xfs (POSIX
/// allows it or ENOTEMPTY).
#[test]
fn a_rename_over_a_non_empty_directory_fails_as_on_xfs() {
    if !is_root() {
        eprintln!("needs root to mount an xfs image; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let (t, _xfs) = xfs_image();
    let plain = t.path().join("xfs/plain");
    fs::create_dir(&plain).unwrap();
    let m = TestMount::in_dir(&t.path().join("xfs"), MountOptions::default(), WATCHDOG).unwrap();
    let got = same(&m.mnt, &plain, "directory over a non-empty directory", |root| {
        fs::create_dir_all(root.join("src"))?;
        fs::create_dir_all(root.join("dst/inner"))?;
        let r = errno(&rename2(&root.join("src"), &root.join("dst"), 0));
        Ok((r, listing(root)?, listing(&root.join("dst"))?))
    });
    assert_eq!(got.map(|g| g.0), Some(Some(libc::EEXIST)), "xfs answers EEXIST");
}

/// On xfs, which stores symlink targets of at most 1023 bytes, targets whose sealed form is
/// longer go out of line as the longest do: they work as on ext4.
#[test]
fn symlink_targets_past_xfs_inline_limit() {
    if !is_root() {
        eprintln!("needs root to mount an xfs image; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let (t, _xfs) = xfs_image();
    let mut m = TestMount::in_dir(&t.path().join("xfs"), MountOptions::default(), WATCHDOG).unwrap();
    let targets: Vec<String> = [735, 736, 1024, 3000].iter().map(|&n| "t".repeat(n)).collect();
    for (i, target) in targets.iter().enumerate() {
        std::os::unix::fs::symlink(target, m.path(format!("l{i}")))
            .unwrap_or_else(|e| panic!("{} bytes: {e}", target.len()));
    }
    // All but the 735-byte target (1023 base64url characters) are out of line.
    let sidecars = fs::read_dir(&m.cipher)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".link"))
        .count();
    assert_eq!(sidecars, 3);
    m.remount();
    for (i, target) in targets.iter().enumerate() {
        let got = fs::read_link(m.path(format!("l{i}"))).unwrap();
        assert_eq!(got.as_os_str().len(), target.len());
        assert_eq!(
            fs::symlink_metadata(m.path(format!("l{i}"))).unwrap().len(),
            target.len() as u64
        );
    }
}

/// A backing that refuses the rename (ramfs has no RENAME_WHITEOUT: EINVAL) leaves the target
/// directory in place, as the same rename on ramfs itself does.
#[test]
fn a_refused_rename_over_an_empty_directory_keeps_it() {
    if !is_root() {
        eprintln!("needs root to mount ramfs; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let _ram = Scratch::mount(&t.path().join("ram"), "ramfs", "mode=0700");
    let plain = t.path().join("ram/plain");
    fs::create_dir(&plain).unwrap();
    let m = TestMount::in_dir(&t.path().join("ram"), MountOptions::default(), WATCHDOG).unwrap();
    let got = same(&m.mnt, &plain, "whiteout rename over an empty directory", |root| {
        fs::create_dir_all(root.join("src"))?;
        fs::create_dir_all(root.join("dst"))?;
        fs::write(root.join("src/file"), b"inside")?;
        let r = errno(&rename2(&root.join("src"), &root.join("dst"), libc::RENAME_WHITEOUT));
        Ok((r, listing(root)?, fs::read(root.join("src/file"))?))
    });
    assert_eq!(
        got.map(|g| g.0),
        Some(Some(libc::EINVAL)),
        "ramfs refuses RENAME_WHITEOUT"
    );
}

/// Every name a libc directory stream yields until its end, `.` and `..` left out, sorted.
fn read_stream(d: *mut libc::DIR) -> Vec<String> {
    let mut v = Vec::new();
    loop {
        // SAFETY: d is a valid DIR*; the entry is read before the next readdir call.
        let e = unsafe { libc::readdir64(d) };
        if e.is_null() {
            break;
        }
        // SAFETY: e points to a valid dirent64.
        let n = unsafe { std::ffi::CStr::from_ptr((*e).d_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        if n != "." && n != ".." {
            v.push(n);
        }
    }
    v.sort();
    v
}

#[test]
fn rewinddir_shows_names_made_after_opendir() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    let streams = |root: &Path| -> io::Result<_> {
        let dir = root.join("d");
        fs::create_dir(&dir)?;
        fs::write(dir.join("before"), b"")?;
        let c = common::cpath(&dir);
        // SAFETY: valid C string.
        let d = unsafe { libc::opendir(c.as_ptr()) };
        if d.is_null() {
            return Err(io::Error::last_os_error());
        }
        // Made after opendir, before the first read.
        fs::write(dir.join("after0"), b"")?;
        let first = read_stream(d);
        fs::write(dir.join("after1"), b"")?;
        // SAFETY: d is a valid DIR*.
        unsafe { libc::rewinddir(d) };
        let second = read_stream(d);
        // Rewinding before reading to the end, too.
        fs::write(dir.join("after2"), b"")?;
        // SAFETY: as above.
        unsafe { libc::rewinddir(d) };
        let third = read_stream(d);
        // SAFETY: d is valid and closed once.
        unsafe { libc::closedir(d) };
        Ok((first, second, third))
    };
    let on_mount = streams(&m.mnt).unwrap();
    let on_plain = streams(plain.path()).unwrap();
    // A name made between opendir and the first read: POSIX leaves it open whether the
    // stream shows it (ext4 does, btrfs does not); the mount lists at the first read, so
    // it does.
    assert_eq!(on_mount.0, ["after0", "before"]);
    assert!(on_plain.0.contains(&"before".to_string()), "{on_plain:?}");
    // After rewinddir every name made before it shows, on any file system.
    assert_eq!((&on_mount.1, &on_mount.2), (&on_plain.1, &on_plain.2));
}

/// Builds a sparse file of `size` bytes with data in `extents` and answers SEEK_DATA and
/// SEEK_HOLE from every offset at and around each extent's edges (offset or errno).
/// One lseek question and answer: offset, whence, resulting offset or errno.
type SeekAnswer = (u64, i32, Result<i64, i32>);

/// A sparse file: name, size, data extents.
type Layout = (&'static str, u64, Vec<(u64, u64)>);

fn seek_answers(path: &Path, size: u64, extents: &[(u64, u64)]) -> io::Result<Vec<SeekAnswer>> {
    use std::os::fd::AsRawFd;
    let f = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
    for &(s, e) in extents {
        f.write_all_at(&vec![0xa5; (e - s) as usize], s)?;
    }
    f.set_len(size)?;
    f.sync_all()?;
    let mut offs = vec![0u64, size - 1];
    for &(s, e) in extents {
        for o in [
            s.saturating_sub(4097),
            s.saturating_sub(1),
            s,
            s + 1,
            e - 1,
            e,
            e + 1,
            e + 4097,
        ] {
            if o < size {
                offs.push(o);
            }
        }
    }
    offs.sort();
    offs.dedup();
    let mut out = Vec::new();
    for o in offs {
        for whence in [libc::SEEK_DATA, libc::SEEK_HOLE] {
            // SAFETY: valid fd.
            let r = unsafe { libc::lseek(f.as_raw_fd(), o as i64, whence) };
            let r = if r < 0 {
                Err(io::Error::last_os_error().raw_os_error().unwrap_or(-1))
            } else {
                Ok(r)
            };
            out.push((o, whence, r));
        }
    }
    Ok(out)
}

#[test]
fn seek_data_and_hole_answer_plaintext_offsets_exactly() {
    if common::writeback_run() {
        eprintln!("with the writeback cache the kernel answers SEEK_HOLE from its size; not run");
        return;
    }
    let Some(m) = TestMount::new() else { return };
    if !common::holes_reported(&m.cipher) {
        // Nothing to compare with: the plain side would call every file data.
        eprintln!("CIPHERDIR's file system reports no holes; not run");
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    const KI: u64 = 1024;
    const MI: u64 = 1024 * KI;
    const GI: u64 = 1024 * MI;
    // Data then a hole; whole 4 KiB blocks, so ext4 answers exactly too. Each file ends in
    // data (coffer always stores a file's last block).
    let layouts: [Layout; 4] = [
        ("64k", MI, vec![(0, 64 * KI), (MI - 4 * KI, MI)]),
        (
            "4m",
            8 * MI,
            vec![
                (4 * KI, 8 * KI),
                (4 * MI - 8 * KI, 4 * MI + 4 * KI),
                (8 * MI - 4 * KI, 8 * MI),
            ],
        ),
        (
            "8g",
            8 * GI + 64 * KI,
            vec![(8 * GI - 4 * KI, 8 * GI + 8 * KI), (8 * GI + 60 * KI, 8 * GI + 64 * KI)],
        ),
        (
            "holes",
            8 * MI,
            vec![(4 * KI, 8 * KI), (16 * KI, 4 * MI - 12 * KI), (8 * MI - 4 * KI, 8 * MI)],
        ),
    ];
    for (name, size, extents) in layouts {
        let answers = same(&m.mnt, plain.path(), name, |d| {
            seek_answers(&d.join(name), size, &extents)
        })
        .unwrap();
        if name == "64k" {
            assert!(answers.contains(&(0, libc::SEEK_HOLE, Ok(65536))), "{answers:?}");
        }
    }
    // A one-block hole between written blocks: its backing bytes sit in file-system blocks
    // its neighbours fill, so only a read tells. SEEK_DATA reads its candidate and is exact;
    // SEEK_HOLE reads only the block it starts in and may answer later (data where there are
    // zeros, which POSIX allows), never earlier.
    let extents = [(0, 4 * KI), (8 * KI, 12 * KI), (20 * KI, 64 * KI)];
    let on_mount = seek_answers(&m.path("small-holes"), 64 * KI, &extents).unwrap();
    let on_plain = seek_answers(&plain.path().join("small-holes"), 64 * KI, &extents).unwrap();
    for (a, b) in on_mount.iter().zip(&on_plain) {
        match a.1 {
            libc::SEEK_DATA => assert_eq!(a, b),
            _ => assert!(a.0 == b.0 && a.2 >= b.2, "mount {a:?}, plain {b:?}"),
        }
    }
    assert!(on_mount.contains(&(4096, libc::SEEK_HOLE, Ok(4096))), "{on_mount:?}");
}

/// fallocate(mode 0) of `[off, off + len)` on `p` (created if missing): the errno, the size
/// after, and the bytes st_blocks counts.
fn fallocate_steps(p: &Path, off: i64, len: i64) -> io::Result<(Option<i32>, u64, u64)> {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::MetadataExt;
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(p)?;
    // SAFETY: valid fd.
    let r = common::cvt(unsafe { libc::fallocate(f.as_raw_fd(), 0, off, len) });
    let md = f.metadata()?;
    Ok((errno(&r), md.len(), md.blocks() * 512))
}

#[test]
fn fallocate_reserves_the_space_or_fails_with_enospc() {
    if !is_root() {
        eprintln!("needs root to mount tmpfs; not run");
        return;
    }
    if !common::fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let _small = Scratch::mount(&t.path().join("small"), "tmpfs", "size=8m,mode=0700");
    let _plain_fs = Scratch::mount(&t.path().join("plain"), "tmpfs", "size=8m,mode=0700");
    let m = TestMount::in_dir(&t.path().join("small"), MountOptions::default(), WATCHDOG).unwrap();
    let (mf, pf) = (m.path("f"), t.path().join("plain/f"));
    fs::write(&mf, b"keep").unwrap();
    fs::write(&pf, b"keep").unwrap();
    // More than the disk holds: ENOSPC, and the file is as it was.
    let (a, b) = (
        fallocate_steps(&mf, 0, 64 << 20).unwrap(),
        fallocate_steps(&pf, 0, 64 << 20).unwrap(),
    );
    assert_eq!(b.0, Some(libc::ENOSPC), "plain: {b:?}");
    assert_eq!((a.0, a.1), (b.0, b.1), "mount {a:?}, plain {b:?}");
    assert_eq!(fs::read(&mf).unwrap(), b"keep");
    // What fits is reserved: st_blocks counts it, and the space is gone from the disk.
    let (a, b) = (
        fallocate_steps(&mf, 0, 4 << 20).unwrap(),
        fallocate_steps(&pf, 0, 4 << 20).unwrap(),
    );
    assert_eq!((a.0, a.1), (None, 4 << 20));
    assert_eq!((a.0, a.1), (b.0, b.1));
    assert!(a.2 >= 4 << 20, "mount st_blocks {} bytes for 4 MiB reserved", a.2);
    assert_eq!(&fs::read(&mf).unwrap()[..4], b"keep");
    // The reserved space is not free any more: another 6 MiB does not fit on either.
    let (a, b) = (
        fallocate_steps(&m.path("g"), 0, 6 << 20).unwrap(),
        fallocate_steps(&t.path().join("plain/g"), 0, 6 << 20).unwrap(),
    );
    assert_eq!((a.0, a.1), (b.0, b.1), "second file: mount {a:?}, plain {b:?}");
}

#[test]
fn fallocate_of_a_large_file_counts_its_blocks() {
    let Some(m) = TestMount::new() else { return };
    let plain = tempfile::tempdir().unwrap();
    let len = (4 << 30) + 4096;
    let a = fallocate_steps(&m.path("big"), 0, len).unwrap();
    let b = fallocate_steps(&plain.path().join("big"), 0, len).unwrap();
    fs::remove_file(m.path("big")).unwrap();
    fs::remove_file(plain.path().join("big")).unwrap();
    assert_eq!((a.0, a.1), (b.0, b.1));
    if let Some(e) = b.0 {
        // ramfs has no fallocate; a small backing has no room: the mount answered the same.
        eprintln!("the backing refuses a {len}-byte fallocate (errno {e}); blocks not compared");
        return;
    }
    assert!(b.2 >= len as u64, "plain {b:?}");
    assert!(a.2 >= len as u64, "mount: {} bytes of blocks for {len} reserved", a.2);
}

#[test]
fn fallocate_by_another_user_clears_set_id_bits() {
    use std::os::unix::fs::PermissionsExt;
    if !is_root() {
        eprintln!("needs root to act as another user; not run");
        return;
    }
    common::require_tool("setpriv");
    common::require_tool("fallocate");
    let opts = MountOptions {
        allow_other: true,
        ..MountOptions::default()
    };
    let Some(m) = TestMount::with(opts, WATCHDOG) else {
        return;
    };
    let plain = tempfile::tempdir().unwrap();
    for d in [m.mnt.parent().unwrap(), plain.path()] {
        fs::set_permissions(d, fs::Permissions::from_mode(0o755)).unwrap();
    }
    same(&m.mnt, plain.path(), "modes after fallocate by nobody", |d| {
        let mut modes = Vec::new();
        for (i, mode) in [0o6666, 0o6676, 0o4777].into_iter().enumerate() {
            let p = d.join(format!("s{i}"));
            fs::write(&p, b"x")?;
            fs::set_permissions(&p, fs::Permissions::from_mode(mode))?;
            let ok = Command::new("setpriv")
                .args([
                    "--reuid=65534",
                    "--regid=65534",
                    "--clear-groups",
                    "fallocate",
                    "-l",
                    "8192",
                ])
                .arg(&p)
                .status()?
                .success();
            use std::os::unix::fs::MetadataExt;
            let md = fs::metadata(&p)?;
            modes.push((ok, md.mode() & 0o7777, md.len()));
        }
        Ok(modes)
    });
}

/// Sets `user.attribute_NN = "value_NN"` for NN in 0..n on a new file; returns how many took
/// (and the first errno), the sorted listing and every value read back.
/// How many xattrs were set, the first errno, the listing, the values.
type XattrOutcome = (usize, Option<i32>, Vec<String>, Vec<Vec<u8>>);

fn many_small_xattrs(dir: &Path, n: usize) -> io::Result<XattrOutcome> {
    let p = dir.join("many");
    fs::write(&p, b"x")?;
    let mut took = 0;
    let mut err = None;
    for i in 0..n {
        match set_xattr(
            &p,
            &format!("user.attribute_{i:02}"),
            format!("value_{i:02}").as_bytes(),
            0,
        ) {
            Ok(()) => took += 1,
            Err(e) => {
                err = e.raw_os_error();
                break;
            }
        }
    }
    let names = common::list_xattr(&p)?;
    let values = names.iter().map(|n| get_xattr(&p, n)).collect::<io::Result<Vec<_>>>()?;
    Ok((took, err, names, values))
}

/// Where the config cannot gain `xattr_packs` (a vault made before it, opened by its recovery
/// key), no pack is written: every xattr is sealed on its own, as before packs, and the
/// backing runs out of xattr space (ENOSPC) long before ext4 itself would.
#[test]
fn without_the_pack_flag_xattrs_stay_single_and_fill_an_ext4_backing() {
    use coffer::format::config::{VaultParams, FLAG_BLOCK_SESSIONS};
    use coffer::vault::{unlock, KdfCost, Vault};
    if !common::fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    if !common::user_xattrs_supported(t.path()) {
        eprintln!("the temp dir's file system stores no user xattrs; not run");
        return;
    }
    if !on_ext4(t.path()) {
        eprintln!("the temp dir is not on ext4, whose xattr room this test measures; not run");
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    let on_plain = many_small_xattrs(plain.path(), 100).unwrap();
    assert_eq!((on_plain.0, on_plain.1), (100, None), "ext4 holds 100");

    let (cipher, mnt) = (t.path().join("cipher"), t.path().join("mnt"));
    fs::create_dir(&cipher).unwrap();
    fs::create_dir(&mnt).unwrap();
    let old = VaultParams {
        feature_flags: vec![FLAG_BLOCK_SESSIONS.into()],
        ..VaultParams::default()
    };
    // A vault of config version 1 made before `init` set `xattr_packs`.
    let master = unlock::init_version(
        &cipher,
        None,
        b"pw",
        &old,
        KdfCost::INSECURE_TEST,
        coffer::format::CONFIG_V1,
    )
    .unwrap();
    let key = coffer::format::recovery::encode(master.expose(), &old);
    let cfg = unlock::read_config(&cipher.join("coffer.conf")).unwrap();
    let (master, params) = unlock::unlock_with_recovery_key(&key, Some(&cfg)).unwrap();
    let v = Vault::open(&cipher, &master, params, false).unwrap();
    let h = coffer::fs::spawn(v, &mnt, &MountOptions::default()).unwrap();
    let (took, err, names, values) = many_small_xattrs(&mnt, 100).unwrap();
    eprintln!("without packs: {took} small xattrs fit, then {err:?}");
    assert_eq!(err, Some(libc::ENOSPC), "{took} took");
    assert!((10..100).contains(&took), "{took} took");
    assert_eq!(names.len(), took);
    assert_eq!(values.len(), took);
    let backing = &backing_files(&cipher)[0];
    let backing_names = common::list_xattr(backing).unwrap();
    assert_eq!(backing_names.len(), took, "one backing xattr per name, no pack");
    assert!(!backing_names
        .iter()
        .any(|n| n == coffer::format::xattr_pack::PACK_BACKING_NAME));
    h.unmount().unwrap();
    assert!(!unlock::read_config(&cipher.join("coffer.conf"))
        .unwrap()
        .params()
        .has_flag(coffer::format::config::FLAG_XATTR_PACKS));
}

#[test]
fn a_hundred_small_xattrs_fit_on_an_ext4_backing() {
    let Some(mut m) = TestMount::new() else { return };
    if !common::user_xattrs_supported(&m.cipher) {
        eprintln!("CIPHERDIR's file system stores no user xattrs; not run");
        return;
    }
    let plain = tempfile::tempdir().unwrap();
    let on_plain = many_small_xattrs(plain.path(), 100).unwrap();
    assert_eq!((on_plain.0, on_plain.1), (100, None), "ext4 holds 100");
    assert_eq!(many_small_xattrs(&m.mnt, 100).unwrap(), on_plain);
    // They survive a remount, a truncation to 0, replacing and removing one.
    m.remount();
    let p = m.path("many");
    assert_eq!(common::list_xattr(&p).unwrap(), on_plain.2);
    fs::write(&p, b"").unwrap();
    assert_eq!(get_xattr(&p, "user.attribute_99").unwrap(), b"value_99");
    set_xattr(&p, "user.attribute_50", b"changed", libc::XATTR_REPLACE).unwrap();
    assert_eq!(get_xattr(&p, "user.attribute_50").unwrap(), b"changed");
    assert_eq!(
        errno(&set_xattr(&p, "user.attribute_50", b"x", libc::XATTR_CREATE)),
        Some(libc::EEXIST)
    );
    common::remove_xattr(&p, "user.attribute_07").unwrap();
    assert_eq!(errno(&get_xattr(&p, "user.attribute_07")), Some(libc::ENODATA));
    assert_eq!(
        errno(&common::remove_xattr(&p, "user.attribute_07")),
        Some(libc::ENODATA)
    );
    assert_eq!(common::list_xattr(&p).unwrap().len(), 99);
    // Nothing of the names or values is in the backing file's xattrs in clear.
    let backing = &backing_files(&m.cipher)[0];
    let names = common::list_xattr(backing).unwrap();
    assert!(names.len() < 10, "packed: {names:?}");
    for n in names {
        let v = get_xattr(backing, &n).unwrap();
        for clear in [&b"attribute"[..], b"value_", b"changed"] {
            assert!(!n.as_bytes().windows(clear.len()).any(|w| w == clear), "{n}");
            assert!(!v.windows(clear.len()).any(|w| w == clear), "{n}");
        }
    }
}

/// Unlike a local file system, the mount hands out no file handles: coffer's inode numbers do
/// not survive a daemon restart, so a handle could not be opened again later (NFS export).
#[test]
fn the_mount_exports_no_file_handles() {
    let Some(m) = TestMount::new() else { return };
    fs::write(m.path("f"), b"linked and alive").unwrap();
    common::assert_exports_no_file_handles(&m.mnt, &m.path("f"));
    fs::create_dir(m.path("d")).unwrap();
    common::assert_exports_no_file_handles(&m.mnt, &m.path("d"));
    assert_eq!(fs::read(m.path("f")).unwrap(), b"linked and alive");
}

/// Whether `dir` lies on ext4 (statfs magic 0xEF53).
fn on_ext4(dir: &std::path::Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).unwrap();
    // SAFETY: an all-zero statfs is a valid out value.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: c is NUL-terminated and st a valid out pointer.
    unsafe { libc::statfs(c.as_ptr(), &mut st) == 0 && st.f_type == 0xEF53 }
}
