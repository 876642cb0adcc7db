//! Every operation through the mount, compared with the same call on a plain directory
//! (results and errno), plus the mount-specific behaviour (plaintext sizes, holes, fallocate).

use crate::support::common;

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{symlink, DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use common::{cpath, cvt, get_xattr, list_xattr, remove_xattr, same, set_xattr, TestMount};

fn setup() -> Option<(TestMount, tempfile::TempDir)> {
    let m = TestMount::new()?;
    let plain = tempfile::Builder::new().prefix("coffer-plain-").tempdir().unwrap();
    Some((m, plain))
}

fn rename2(from: &Path, to: &Path, flags: u32) -> io::Result<()> {
    let (a, b) = (cpath(from), cpath(to));
    // SAFETY: valid C strings.
    cvt(unsafe { libc::renameat2(libc::AT_FDCWD, a.as_ptr(), libc::AT_FDCWD, b.as_ptr(), flags) }).map(drop)
}

fn utimens(p: &Path, times: [libc::timespec; 2], flags: i32) -> io::Result<()> {
    let c = cpath(p);
    // SAFETY: valid C string and array.
    cvt(unsafe { libc::utimensat(libc::AT_FDCWD, c.as_ptr(), times.as_ptr(), flags) }).map(drop)
}

fn ts(sec: i64, nsec: i64) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

/// The metadata a local file system and the mount must agree on.
fn meta(p: &Path) -> io::Result<(u32, u64, u64, u32, u32)> {
    let m = fs::symlink_metadata(p)?;
    let size = if m.is_dir() { 0 } else { m.len() };
    Ok((m.mode(), size, m.nlink(), m.uid(), m.gid()))
}

#[test]
fn files_create_open_truncate_append() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    same(mr, pr, "create", |r| fs::write(r.join("f"), b"0123456789"));
    same(mr, pr, "O_EXCL on existing", |r| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(r.join("f"))
            .map(drop)
    });
    same(mr, pr, "open missing", |r| fs::read(r.join("nope")));
    same(mr, pr, "open dir for write", |r| {
        OpenOptions::new().write(true).open(r.join(".")).map(drop)
    });
    same(mr, pr, "read", |r| fs::read(r.join("f")));
    same(mr, pr, "O_APPEND", |r| {
        let mut f = OpenOptions::new().append(true).open(r.join("f"))?;
        f.write_all(b"abc")?;
        f.write_all(b"def")?;
        fs::read(r.join("f"))
    });
    same(mr, pr, "O_TRUNC", |r| {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(r.join("f"))?
            .write_all(b"xy")?;
        fs::read(r.join("f"))
    });
    same(mr, pr, "truncate grow", |r| {
        OpenOptions::new().write(true).open(r.join("f"))?.set_len(10_000)?;
        Ok((fs::read(r.join("f"))?, meta(&r.join("f"))?.1))
    });
    same(mr, pr, "truncate shrink", |r| {
        OpenOptions::new().write(true).open(r.join("f"))?.set_len(4097)?;
        fs::read(r.join("f"))
    });
    same(mr, pr, "write past end leaves a hole", |r| {
        let f = OpenOptions::new().read(true).write(true).open(r.join("f"))?;
        f.write_all_at(b"tail", 20_000)?;
        let mut buf = vec![0u8; 20_004];
        f.read_exact_at(&mut buf, 0)?;
        Ok(buf)
    });
    same(mr, pr, "truncate to 0 then write", |r| {
        let mut f = OpenOptions::new().read(true).write(true).open(r.join("f"))?;
        f.set_len(0)?;
        f.write_all(b"fresh")?;
        fs::read(r.join("f"))
    });
    same(mr, pr, "read on write-only fd", |r| {
        let mut f = OpenOptions::new().write(true).open(r.join("f"))?;
        let mut b = [0u8; 2];
        f.read(&mut b).map(drop)
    });
    same(mr, pr, "partial-block rewrite through O_WRONLY", |r| {
        let f = OpenOptions::new().write(true).open(r.join("f"))?;
        f.write_all_at(b"E", 2)?;
        fs::read(r.join("f"))
    });
    same(mr, pr, "create with mode 0640", |r| {
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o640)
            .open(r.join("g"))?;
        meta(&r.join("g"))
    });
    same(mr, pr, "fsync", |r| {
        OpenOptions::new().write(true).open(r.join("g"))?.sync_all()
    });
    same(mr, pr, "fdatasync", |r| {
        OpenOptions::new().write(true).open(r.join("g"))?.sync_data()
    });
    same(mr, pr, "seek end", |r| File2::open(r.join("f"))?.seek(SeekFrom::End(0)));
    // Big write crossing many blocks and the 1 MiB request size.
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    same(mr, pr, "big write", |r| {
        fs::write(r.join("big"), &big)?;
        Ok(fs::read(r.join("big"))? == big)
    });
}

type File2 = fs::File;

#[test]
fn directories_and_names() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    same(mr, pr, "mkdir", |r| fs::create_dir(r.join("d")));
    same(mr, pr, "mkdir existing", |r| fs::create_dir(r.join("d")));
    same(mr, pr, "mkdir in missing", |r| fs::create_dir(r.join("x/y")));
    same(mr, pr, "file in dir", |r| fs::write(r.join("d/f"), b"1"));
    same(mr, pr, "rmdir non-empty", |r| fs::remove_dir(r.join("d")));
    same(mr, pr, "rmdir file", |r| fs::remove_dir(r.join("d/f")));
    same(mr, pr, "unlink dir", |r| fs::remove_file(r.join("d")));
    same(mr, pr, "unlink missing", |r| fs::remove_file(r.join("d/none")));
    same(mr, pr, "mkdir through file", |r| fs::create_dir(r.join("d/f/z")));
    same(mr, pr, "unlink", |r| fs::remove_file(r.join("d/f")));
    same(mr, pr, "rmdir empty", |r| fs::remove_dir(r.join("d")));
    for mode in [0o000, 0o555, 0o700, 0o1777, 0o2755] {
        same(mr, pr, &format!("mkdir mode {mode:o}"), |r| {
            let d = r.join(format!("m{mode:o}"));
            fs::DirBuilder::new().mode(mode).create(&d)?;
            // The kernel applied the umask before us; compare the result either way.
            Ok(fs::metadata(&d)?.mode() & 0o7777)
        });
    }
    // Open the closed ones again, or an ordinary user's temp-dir cleanup cannot remove them.
    for r in [mr, pr] {
        for closed in ["m0", "m555"] {
            fs::set_permissions(r.join(closed), fs::Permissions::from_mode(0o755)).unwrap();
        }
    }
    // Names: long (past the long-name limit), 255 bytes, too long, odd bytes.
    let long = "L".repeat(255);
    same(mr, pr, "255-byte name", |r| fs::write(r.join(&long), b"long"));
    same(mr, pr, "read 255-byte name", |r| fs::read(r.join(&long)));
    same(mr, pr, "256-byte name", |r| fs::write(r.join("L".repeat(256)), b""));
    let odd = std::ffi::OsStr::new("sp ace,é\u{1F600}\t");
    same(mr, pr, "odd name", |r| fs::write(r.join(odd), b"odd"));
    let raw = <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"bad\xff\xfeutf8");
    same(mr, pr, "non-UTF-8 name", |r| fs::write(r.join(raw), b"raw"));
    same(mr, pr, "listing", |r| {
        let mut v: Vec<_> = fs::read_dir(r)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        v.sort();
        Ok(v)
    });
    // Many entries: readdir must return each exactly once.
    same(mr, pr, "1500 entries", |r| {
        fs::create_dir(r.join("many"))?;
        for i in 0..1500 {
            fs::write(r.join(format!("many/entry-with-a-longish-name-{i:05}")), b"")?;
        }
        let mut v: Vec<_> = fs::read_dir(r.join("many"))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        let n = v.len();
        v.sort();
        v.dedup();
        Ok((n, v.len()))
    });
    same(mr, pr, "dir nlink", |r| {
        fs::create_dir_all(r.join("n/a"))?;
        fs::create_dir_all(r.join("n/b"))?;
        Ok(fs::metadata(r.join("n"))?.nlink())
    });
}

#[test]
fn renames() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    let long_a = "a".repeat(230);
    let long_b = "b".repeat(240);
    for r in [mr, pr] {
        fs::write(r.join("f1"), b"one").unwrap();
        fs::write(r.join("f2"), b"two").unwrap();
        fs::create_dir(r.join("d1")).unwrap();
        fs::create_dir(r.join("d2")).unwrap();
        fs::create_dir(r.join("full")).unwrap();
        fs::write(r.join("full/x"), b"x").unwrap();
        fs::write(r.join(&long_a), b"long a").unwrap();
    }
    same(mr, pr, "rename over file", |r| {
        fs::rename(r.join("f1"), r.join("f2"))?;
        fs::read(r.join("f2"))
    });
    same(mr, pr, "old name gone", |r| fs::read(r.join("f1")));
    same(mr, pr, "file over dir", |r| fs::rename(r.join("f2"), r.join("d1")));
    same(mr, pr, "dir over file", |r| fs::rename(r.join("d1"), r.join("f2")));
    same(mr, pr, "dir over non-empty dir", |r| {
        fs::rename(r.join("d1"), r.join("full"))
    });
    same(mr, pr, "dir over empty dir", |r| fs::rename(r.join("d1"), r.join("d2")));
    same(mr, pr, "dir into itself", |r| {
        fs::rename(r.join("d2"), r.join("d2/sub"))
    });
    same(mr, pr, "missing source", |r| fs::rename(r.join("nope"), r.join("x")));
    same(mr, pr, "long to long", |r| {
        fs::rename(r.join(&long_a), r.join(&long_b))?;
        fs::read(r.join(&long_b))
    });
    same(mr, pr, "long to short", |r| {
        fs::rename(r.join(&long_b), r.join("short"))?;
        fs::read(r.join("short"))
    });
    same(mr, pr, "NOREPLACE onto existing", |r| {
        rename2(&r.join("short"), &r.join("f2"), libc::RENAME_NOREPLACE)
    });
    same(mr, pr, "NOREPLACE onto free", |r| {
        rename2(&r.join("short"), &r.join(&long_a), libc::RENAME_NOREPLACE)?;
        fs::read(r.join(&long_a))
    });
    same(mr, pr, "EXCHANGE long and short", |r| {
        rename2(&r.join(&long_a), &r.join("f2"), libc::RENAME_EXCHANGE)?;
        Ok((fs::read(r.join(&long_a))?, fs::read(r.join("f2"))?))
    });
    same(mr, pr, "EXCHANGE file and dir", |r| {
        rename2(&r.join("f2"), &r.join("full"), libc::RENAME_EXCHANGE)?;
        Ok((fs::read(r.join("full"))?, fs::read(r.join("f2/x"))?))
    });
    same(mr, pr, "EXCHANGE with missing", |r| {
        rename2(&r.join("f2"), &r.join("nothing"), libc::RENAME_EXCHANGE)
    });
    same(mr, pr, "rename across dirs", |r| {
        fs::create_dir(r.join("t"))?;
        fs::rename(r.join("full"), r.join("t/moved"))?;
        fs::read(r.join("t/moved"))
    });
    same(mr, pr, "listing after renames", |r| {
        let mut v: Vec<_> = fs::read_dir(r)?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        v.sort();
        Ok(v)
    });
    // Editors: write a temp file, rename it over the original, while the original is open.
    same(mr, pr, "save via rename with the old file open", |r| {
        fs::write(r.join("doc"), b"version 1")?;
        let mut old = fs::File::open(r.join("doc"))?;
        fs::write(r.join(".doc.swp"), b"version 2")?;
        fs::rename(r.join(".doc.swp"), r.join("doc"))?;
        let mut s = Vec::new();
        old.read_to_end(&mut s)?;
        Ok((s, fs::read(r.join("doc"))?))
    });
}

#[test]
fn links_symlinks_nodes() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    same(mr, pr, "hard link", |r| {
        fs::write(r.join("orig"), b"shared")?;
        fs::hard_link(r.join("orig"), r.join("lnk"))?;
        let a = fs::metadata(r.join("orig"))?;
        let b = fs::metadata(r.join("lnk"))?;
        Ok((a.nlink(), a.ino() == b.ino()))
    });
    same(mr, pr, "write through one link, read the other", |r| {
        OpenOptions::new().append(true).open(r.join("lnk"))?.write_all(b"!")?;
        fs::read(r.join("orig"))
    });
    same(mr, pr, "link onto existing", |r| {
        fs::hard_link(r.join("orig"), r.join("lnk"))
    });
    same(mr, pr, "link a dir", |r| {
        fs::create_dir(r.join("dd"))?;
        fs::hard_link(r.join("dd"), r.join("dd2"))
    });
    same(mr, pr, "unlink one link", |r| {
        fs::remove_file(r.join("orig"))?;
        Ok((fs::read(r.join("lnk"))?, fs::metadata(r.join("lnk"))?.nlink()))
    });
    same(mr, pr, "chmod through remaining link", |r| {
        fs::set_permissions(r.join("lnk"), fs::Permissions::from_mode(0o604))?;
        Ok(fs::metadata(r.join("lnk"))?.mode())
    });
    same(mr, pr, "symlink", |r| {
        symlink("target/path", r.join("sl"))?;
        Ok((fs::read_link(r.join("sl"))?, fs::symlink_metadata(r.join("sl"))?.len()))
    });
    // xfs holds targets of at most 1023 bytes (the mount up to 4095 on any backing, see
    // mount_semantics::symlink_targets_past_xfs_inline_limit): there the long target is one
    // the plain side holds too.
    let long_target = ["t/".repeat(1500), "t/".repeat(500)]
        .into_iter()
        .find(|t| {
            symlink(t, pr.join("probe"))
                .and_then(|()| fs::remove_file(pr.join("probe")))
                .is_ok()
        })
        .unwrap();
    same(mr, pr, "long symlink target", |r| {
        symlink(&long_target, r.join("sl-long"))?;
        Ok((
            fs::read_link(r.join("sl-long"))?,
            fs::symlink_metadata(r.join("sl-long"))?.len(),
        ))
    });
    same(mr, pr, "symlink followed", |r| {
        symlink("lnk", r.join("to-lnk"))?;
        fs::read(r.join("to-lnk"))
    });
    same(mr, pr, "symlink onto existing", |r| symlink("x", r.join("lnk")));
    same(mr, pr, "readlink of a file", |r| fs::read_link(r.join("lnk")));
    same(mr, pr, "rename symlink with long target", |r| {
        fs::rename(r.join("sl-long"), r.join("sl-long-2"))?;
        fs::read_link(r.join("sl-long-2"))
    });
    same(mr, pr, "unlink symlink", |r| fs::remove_file(r.join("sl-long-2")));
    same(mr, pr, "fifo", |r| {
        let c = cpath(&r.join("fifo"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o644, 0) })?;
        Ok(fs::symlink_metadata(r.join("fifo"))?.mode())
    });
    same(mr, pr, "mknod regular", |r| {
        let c = cpath(&r.join("reg"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFREG | 0o600, 0) })?;
        Ok((fs::read(r.join("reg"))?, fs::metadata(r.join("reg"))?.mode()))
    });
    same(mr, pr, "socket node", |r| {
        let c = cpath(&r.join("sock"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFSOCK | 0o600, 0) })?;
        Ok(fs::symlink_metadata(r.join("sock"))?.mode())
    });
    same(mr, pr, "char device (nodev: cannot be opened)", |r| {
        let c = cpath(&r.join("null"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | 0o666, libc::makedev(1, 3)) })?;
        let md = fs::symlink_metadata(r.join("null"))?;
        Ok((md.mode(), md.rdev()))
    });
    // Without CAP_MKNOD neither side made the device (`same` saw EPERM on both).
    if common::is_root() {
        assert_eq!(
            fs::File::open(mr.join("null")).unwrap_err().raw_os_error(),
            Some(libc::EACCES),
            "devices are not honoured on a nodev mount"
        );
    }
    same(mr, pr, "fifo round trip", |r| {
        let p = r.join("fifo");
        let w = std::thread::spawn(move || fs::write(p, b"through a pipe"));
        let got = fs::read(r.join("fifo"))?;
        w.join().unwrap()?;
        Ok(got)
    });
}

#[test]
fn attributes() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    for r in [mr, pr] {
        fs::write(r.join("f"), b"data").unwrap();
        symlink("f", r.join("s")).unwrap();
        fs::create_dir(r.join("d")).unwrap();
    }
    for mode in [0o000, 0o4755, 0o644, 0o777] {
        same(mr, pr, &format!("chmod {mode:o}"), |r| {
            fs::set_permissions(r.join("f"), fs::Permissions::from_mode(mode))?;
            meta(&r.join("f"))
        });
    }
    same(mr, pr, "chmod dir", |r| {
        fs::set_permissions(r.join("d"), fs::Permissions::from_mode(0o711))?;
        meta(&r.join("d"))
    });
    same(mr, pr, "chown", |r| {
        std::os::unix::fs::chown(r.join("f"), Some(1234), Some(5678))?;
        meta(&r.join("f"))
    });
    same(mr, pr, "lchown symlink", |r| {
        std::os::unix::fs::lchown(r.join("s"), Some(42), Some(43))?;
        let m = fs::symlink_metadata(r.join("s"))?;
        Ok((m.uid(), m.gid(), fs::metadata(r.join("f"))?.uid()))
    });
    same(mr, pr, "utimens exact", |r| {
        utimens(
            &r.join("f"),
            [ts(1_000_000_000, 123_456_789), ts(1_500_000_000, 987_654_321)],
            0,
        )?;
        let m = fs::metadata(r.join("f"))?;
        Ok((m.atime(), m.atime_nsec(), m.mtime(), m.mtime_nsec()))
    });
    same(mr, pr, "utimens before the epoch", |r| {
        utimens(&r.join("f"), [ts(-5, 0), ts(-100_000, 500)], 0)?;
        let m = fs::metadata(r.join("f"))?;
        Ok((m.atime(), m.mtime(), m.mtime_nsec()))
    });
    same(mr, pr, "utimens OMIT", |r| {
        utimens(&r.join("f"), [ts(7, 7), ts(0, libc::UTIME_OMIT)], 0)?;
        let m = fs::metadata(r.join("f"))?;
        Ok((m.atime(), m.mtime(), m.mtime_nsec()))
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mt = |r: &Path| -> io::Result<bool> {
        utimens(&r.join("f"), [ts(0, libc::UTIME_OMIT), ts(0, libc::UTIME_NOW)], 0)?;
        Ok((fs::metadata(r.join("f"))?.mtime() - now).abs() < 5)
    };
    same(mr, pr, "utimens NOW", mt);
    same(mr, pr, "utimens NOFOLLOW on symlink", |r| {
        utimens(&r.join("s"), [ts(11, 1), ts(22, 2)], libc::AT_SYMLINK_NOFOLLOW)?;
        let s = fs::symlink_metadata(r.join("s"))?;
        Ok((s.mtime(), s.mtime_nsec(), fs::metadata(r.join("f"))?.mtime() == 22))
    });
    same(mr, pr, "write updates mtime", |r| {
        utimens(&r.join("f"), [ts(1, 0), ts(1, 0)], 0)?;
        OpenOptions::new().write(true).open(r.join("f"))?.write_all(b"x")?;
        Ok((fs::metadata(r.join("f"))?.mtime() - now).abs() < 5)
    });
    same(mr, pr, "stat missing", |r| fs::metadata(r.join("missing")).map(drop));
    same(mr, pr, "access", |r| {
        let c = cpath(&r.join("f"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::access(c.as_ptr(), libc::R_OK | libc::W_OK) }).map(drop)
    });
    same(mr, pr, "access missing", |r| {
        let c = cpath(&r.join("zzz"));
        // SAFETY: valid C string.
        cvt(unsafe { libc::access(c.as_ptr(), libc::F_OK) }).map(drop)
    });
    // statfs: sensible values from the backing file system (ramfs reports no blocks at all).
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let mut backing: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid C strings and out pointers.
    cvt(unsafe { libc::statvfs(cpath(mr).as_ptr(), &mut st) }).unwrap();
    cvt(unsafe { libc::statvfs(cpath(&m.cipher).as_ptr(), &mut backing) }).unwrap();
    assert!(
        (st.f_blocks > 0 || backing.f_blocks == 0) && st.f_bavail <= st.f_blocks,
        "{}/{}",
        st.f_bavail,
        st.f_blocks
    );
    assert_eq!(st.f_namemax, 255);
    assert!(
        st.f_flag & libc::ST_NOSUID != 0 && st.f_flag & libc::ST_NODEV != 0,
        "nosuid,nodev by default"
    );
    // Sizes are plaintext sizes.
    fs::write(mr.join("sized"), vec![1u8; 10_000]).unwrap();
    assert_eq!(fs::metadata(mr.join("sized")).unwrap().len(), 10_000);
}

#[test]
fn xattrs() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    if !common::user_xattrs_supported(&m.cipher) {
        // The mount stores xattrs in its backing's: it refuses them as its backing does.
        same(mr, pr, "setxattr without backing xattrs", |r| {
            fs::write(r.join("f"), b"data")?;
            set_xattr(&r.join("f"), "user.one", b"1", 0)
        });
        eprintln!("CIPHERDIR's file system stores no user xattrs; the rest not run");
        return;
    }
    for r in [mr, pr] {
        fs::write(r.join("f"), b"data").unwrap();
        fs::create_dir(r.join("d")).unwrap();
        fs::write(r.join("empty"), b"").unwrap();
        symlink("f", r.join("s")).unwrap();
    }
    for obj in ["f", "d", "empty"] {
        same(mr, pr, &format!("{obj}: set/get"), |r| {
            set_xattr(&r.join(obj), "user.one", b"value 1", 0)?;
            set_xattr(&r.join(obj), "user.two", &[0u8, 1, 2, 255], 0)?;
            get_xattr(&r.join(obj), "user.one")
        });
        same(mr, pr, &format!("{obj}: list"), |r| list_xattr(&r.join(obj)));
        same(mr, pr, &format!("{obj}: XATTR_CREATE on existing"), |r| {
            set_xattr(&r.join(obj), "user.one", b"x", libc::XATTR_CREATE)
        });
        same(mr, pr, &format!("{obj}: XATTR_REPLACE on missing"), |r| {
            set_xattr(&r.join(obj), "user.none", b"x", libc::XATTR_REPLACE)
        });
        same(mr, pr, &format!("{obj}: replace"), |r| {
            set_xattr(&r.join(obj), "user.one", b"replaced", libc::XATTR_REPLACE)?;
            get_xattr(&r.join(obj), "user.one")
        });
        same(mr, pr, &format!("{obj}: get missing"), |r| {
            get_xattr(&r.join(obj), "user.missing")
        });
        same(mr, pr, &format!("{obj}: remove"), |r| {
            remove_xattr(&r.join(obj), "user.two")?;
            list_xattr(&r.join(obj))
        });
        same(mr, pr, &format!("{obj}: remove missing"), |r| {
            remove_xattr(&r.join(obj), "user.two")
        });
        same(mr, pr, &format!("{obj}: empty value"), |r| {
            set_xattr(&r.join(obj), "user.empty", b"", 0)?;
            get_xattr(&r.join(obj), "user.empty")
        });
    }
    same(mr, pr, "user xattr on symlink", |r| {
        set_xattr(&r.join("s"), "user.x", b"1", 0)
    });
    same(mr, pr, "xattrs survive writes", |r| {
        fs::write(r.join("f"), b"new content that is longer")?;
        get_xattr(&r.join("f"), "user.one")
    });
    same(mr, pr, "xattrs survive truncate to 0 and rewrite", |r| {
        OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(r.join("f"))?
            .write_all(b"again")?;
        get_xattr(&r.join("f"), "user.one")
    });
    same(mr, pr, "xattrs follow renames", |r| {
        fs::rename(r.join("f"), r.join("f-renamed"))?;
        get_xattr(&r.join("f-renamed"), "user.one")
    });
    // Size probe then exact buffer, and ERANGE for a short buffer.
    let c = cpath(&mr.join("d"));
    let n = std::ffi::CString::new("user.one").unwrap();
    // SAFETY: valid C strings, null buffer with size 0 is the size probe.
    let size = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), std::ptr::null_mut(), 0) };
    assert_eq!(size, 8);
    let mut small = [0u8; 3];
    // SAFETY: buffer writable for its length.
    let r = unsafe { libc::getxattr(c.as_ptr(), n.as_ptr(), small.as_mut_ptr().cast(), small.len()) };
    assert_eq!((r, io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ERANGE)));
    // Namespaces other than user.* are refused, not stored. Without CAP_SYS_ADMIN the kernel
    // refuses trusted.* itself (EPERM, as on ext4) before asking the mount.
    let e = set_xattr(&mr.join("d"), "trusted.x", b"1", 0).unwrap_err();
    let refused = if common::is_root() {
        libc::EOPNOTSUPP
    } else {
        libc::EPERM
    };
    assert_eq!(e.raw_os_error(), Some(refused), "{e}");
    // Values survive a remount.
    drop(plain);
    let mut m = m;
    m.remount();
    assert_eq!(get_xattr(&m.path("d"), "user.one").unwrap(), b"replaced");
    assert_eq!(get_xattr(&m.path("f-renamed"), "user.one").unwrap(), b"replaced");
}

#[test]
fn open_files_survive_unlink_and_rename() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    same(mr, pr, "unlinked file stays usable", |r| {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(r.join("u"))?;
        f.write_all(b"before")?;
        fs::remove_file(r.join("u"))?;
        f.write_all(b" after")?;
        f.seek(SeekFrom::Start(0))?;
        let mut s = String::new();
        f.read_to_string(&mut s)?;
        let md = f.metadata()?;
        f.set_len(3)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        Ok((s, md.len(), md.nlink(), f.metadata()?.len(), f.metadata()?.mode()))
    });
    same(mr, pr, "renamed file stays usable", |r| {
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(r.join("a"))?;
        f.write_all(b"one")?;
        fs::create_dir(r.join("sub"))?;
        fs::rename(r.join("a"), r.join("sub/b"))?;
        f.write_all(b" two")?;
        Ok((fs::read(r.join("sub/b"))?, f.metadata()?.len()))
    });
    same(mr, pr, "open dir survives rmdir of a sibling", |r| {
        fs::create_dir(r.join("x"))?;
        fs::create_dir(r.join("y"))?;
        let it = fs::read_dir(r)?;
        fs::remove_dir(r.join("y"))?;
        Ok(it.count() > 0)
    });
}

#[test]
fn holes_fallocate_lseek() {
    let Some(m) = TestMount::new() else { return };
    if !common::holes_reported(&m.cipher) {
        eprintln!("CIPHERDIR's file system reports no holes; not run");
        return;
    }
    let p = m.path("sparse");
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&p)
        .unwrap();
    f.write_all_at(b"head", 0).unwrap();
    f.write_all_at(b"tail", 10 * 4096 + 100).unwrap();
    let fd = f.as_raw_fd();
    // SAFETY: valid fd.
    let seek = |off: i64, whence: i32| unsafe { libc::lseek(fd, off, whence) };
    assert_eq!(seek(0, libc::SEEK_DATA), 0);
    if common::writeback_run() {
        // The written bytes may still be dirty pages the vault has not seen: the kernel
        // answers from its own size, the whole file being data.
        assert_eq!(seek(0, libc::SEEK_HOLE), 10 * 4096 + 104);
        assert_eq!(seek(10 * 4096 + 104, libc::SEEK_DATA), -1);
        assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::ENXIO));
        fallocate_checks(&f, &p);
        return;
    }
    // Holes are found at block granularity (a partly allocated backing block counts as data).
    let h = seek(0, libc::SEEK_HOLE);
    assert!((4096..10 * 4096).contains(&h) && h % 4096 == 0, "first hole at {h}");
    let d = seek(h, libc::SEEK_DATA);
    assert!(d > h && d <= 10 * 4096 + 100, "data again at {d}");
    let mut gap = vec![1u8; (d - h) as usize];
    f.read_exact_at(&mut gap, h as u64).unwrap();
    assert!(gap.iter().all(|&b| b == 0), "the reported hole reads as zeros");
    assert_eq!(seek(10 * 4096 + 50, libc::SEEK_HOLE), 10 * 4096 + 104, "EOF is a hole");
    assert_eq!(seek(10 * 4096 + 104, libc::SEEK_DATA), -1);
    assert_eq!(io::Error::last_os_error().raw_os_error(), Some(libc::ENXIO));
    let mut hole = vec![1u8; 4096];
    f.read_exact_at(&mut hole, 4 * 4096).unwrap();
    assert!(hole.iter().all(|&b| b == 0));
    fallocate_checks(&f, &p);
}

/// fallocate on `f` (at `p`, holding "head" at 0 and "tail" at 41060): mode 0 grows the file
/// (reads as zeros), KEEP_SIZE keeps it, the rest is refused.
fn fallocate_checks(f: &fs::File, p: &Path) {
    let fd = f.as_raw_fd();
    // SAFETY: valid fd.
    let falloc = |mode: i32, off: i64, len: i64| cvt(unsafe { libc::fallocate(fd, mode, off, len) });
    falloc(0, 0, 100_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    falloc(libc::FALLOC_FL_KEEP_SIZE, 0, 200_000).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000);
    falloc(0, 0, 50).unwrap();
    assert_eq!(f.metadata().unwrap().len(), 100_000, "fallocate never shrinks");
    for mode in [
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_ZERO_RANGE,
    ] {
        let e = falloc(mode, 0, 4096).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EOPNOTSUPP), "mode {mode:#x}: {e}");
    }
    let mut all = Vec::new();
    fs::File::open(p).unwrap().read_to_end(&mut all).unwrap();
    assert_eq!(all.len(), 100_000);
    assert_eq!(&all[..4], b"head");
    assert_eq!(&all[10 * 4096 + 100..10 * 4096 + 104], b"tail");
    assert!(all[4..10 * 4096 + 100].iter().all(|&b| b == 0));
    assert!(all[10 * 4096 + 104..].iter().all(|&b| b == 0));
}

#[test]
fn mmap_write_and_read() {
    let Some((m, plain)) = setup() else { return };
    let (mr, pr) = (m.mnt.as_path(), plain.path());
    same(mr, pr, "mmap", |r| {
        let p = r.join("mapped");
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&p)?;
        let len = 3 * 4096 + 123;
        f.set_len(len as u64)?;
        // SAFETY: mapping a file we own with its length; unmapped below.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                f.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: ptr is valid for len bytes until munmap.
        let map = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
        for (i, b) in map.iter_mut().enumerate() {
            *b = (i % 253) as u8;
        }
        // SAFETY: valid mapping.
        cvt(unsafe { libc::msync(ptr, len, libc::MS_SYNC) })?;
        let seen_by_read = fs::read(&p)?;
        let sum: u64 = map.iter().map(|&b| u64::from(b)).sum();
        // SAFETY: valid mapping, unmapped once.
        unsafe { libc::munmap(ptr, len) };
        drop(f);
        Ok((seen_by_read, sum, fs::read(&p)?.len()))
    });
    // And mapping a file written with write(2): the pages show the plaintext.
    let mut mm = m;
    fs::write(mm.path("w"), b"written plainly").unwrap();
    mm.remount();
    let f = fs::File::open(mm.path("w")).unwrap();
    // SAFETY: read-only private mapping of 15 bytes.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            15,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            f.as_raw_fd(),
            0,
        )
    };
    assert_ne!(ptr, libc::MAP_FAILED);
    // SAFETY: valid for 15 bytes.
    let s = unsafe { std::slice::from_raw_parts(ptr.cast::<u8>(), 15) }.to_vec();
    // SAFETY: valid mapping.
    unsafe { libc::munmap(ptr, 15) };
    assert_eq!(s, b"written plainly");
}

/// Names, symlink targets and xattrs under key epochs (docs/FORMAT.md §15.4) through a mount:
/// what a layout-1 epoch wrote reads back once a layout-3 epoch is the newest, a name of the
/// old epoch cannot be created again, and new objects work beside the old ones.
#[test]
fn epoch_names_symlinks_and_xattrs() {
    use coffer::crypto::{KeySet, MasterKey};
    use coffer::format::config::VaultParams;
    use coffer::format::epochs::{EpochId, Layout};
    use coffer::fs::MountOptions;
    use coffer::vault::{EpochKeys, Vault, VaultKeys};

    if !common::fuse_available() {
        return;
    }
    let (_tmp, cipher, mnt) = common::unmounted_vault();
    let old = || EpochKeys {
        id: Some(EpochId([1; 4])),
        layout: Layout::V1,
        set: KeySet::derive(&MasterKey::from_bytes([0x11; 32]), false),
    };
    let open = |epochs: Vec<EpochKeys>| {
        Vault::open_with_keys(
            &cipher,
            VaultKeys::from_epochs(epochs).unwrap(),
            VaultParams::default(),
            false,
        )
        .unwrap()
    };
    let xattrs = common::user_xattrs_supported(&cipher);

    let h = coffer::fs::spawn(open(vec![old()]), &mnt, &MountOptions::default()).unwrap();
    fs::write(mnt.join("old.txt"), b"old data").unwrap();
    fs::create_dir(mnt.join("old dir")).unwrap();
    symlink("old target", mnt.join("old link")).unwrap();
    if xattrs {
        set_xattr(&mnt.join("old.txt"), "user.old", b"old value", 0).unwrap();
    }
    h.unmount().unwrap();

    let new = EpochKeys {
        id: Some(EpochId([3; 4])),
        layout: Layout::V3,
        set: KeySet::derive_v3(&MasterKey::from_bytes([0x33; 32])),
    };
    let h = coffer::fs::spawn(open(vec![old(), new]), &mnt, &MountOptions::default()).unwrap();
    let mut names: Vec<_> = fs::read_dir(&mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["old dir", "old link", "old.txt"]);
    assert_eq!(fs::read(mnt.join("old.txt")).unwrap(), b"old data");
    assert_eq!(fs::read_link(mnt.join("old link")).unwrap(), Path::new("old target"));
    let again = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(mnt.join("old.txt"));
    assert_eq!(common::errno(&again), Some(libc::EEXIST));
    assert_eq!(common::errno(&fs::create_dir(mnt.join("old dir"))), Some(libc::EEXIST));
    symlink("new target", mnt.join("new link")).unwrap();
    assert_eq!(fs::read_link(mnt.join("new link")).unwrap(), Path::new("new target"));
    fs::rename(mnt.join("old.txt"), mnt.join("renamed.txt")).unwrap();
    assert_eq!(fs::read(mnt.join("renamed.txt")).unwrap(), b"old data");
    if xattrs {
        let f = mnt.join("renamed.txt");
        assert_eq!(get_xattr(&f, "user.old").unwrap(), b"old value");
        set_xattr(&f, "user.new", b"new value", 0).unwrap();
        set_xattr(&f, "user.old", b"replaced", 0).unwrap();
        let mut listed = list_xattr(&f).unwrap();
        listed.sort();
        assert_eq!(listed, ["user.new", "user.old"]);
        assert_eq!(get_xattr(&f, "user.old").unwrap(), b"replaced");
        remove_xattr(&f, "user.old").unwrap();
        assert_eq!(common::errno(&get_xattr(&f, "user.old")), Some(libc::ENODATA));
    }
    h.unmount().unwrap();
}
