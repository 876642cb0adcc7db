//! `coffer rekey` of a mounted vault: the mount's daemon re-encrypts it while processes keep
//! files open and write to them; nothing written before, during or after is lost, and
//! `--finish` leaves the vault under one epoch.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::support::cli::{coffer, init_version, passfile};
use crate::support::common::fuse_available;
use crate::support::daemon::Daemon;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The key epochs `coffer info` lists.
fn epochs(v: &Path) -> String {
    let out = coffer(&["info", s(v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    out.stdout_str()
        .lines()
        .find(|l| l.starts_with("key epochs:"))
        .unwrap_or("")
        .to_string()
}

#[test]
fn a_mounted_vault_is_rekeyed_while_a_file_stays_open_and_is_written() {
    if !fuse_available() {
        return;
    }
    for version in ["1", "2"] {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("v");
        let pf = passfile(t.path(), "pw", "pw");
        assert_eq!(init_version(&v, &pf, version).code, 0);
        let mnt = t.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        let d = Daemon::start(&v, &mnt, &pf, Duration::from_secs(120));
        let m = d.mnt.clone();

        // A tree, a symlink and an xattr, written under the first epoch.
        let mut model = Vec::new();
        std::fs::create_dir_all(m.join("docs/deep")).unwrap();
        for i in 0..40 {
            let p = if i % 3 == 0 {
                format!("docs/deep/f{i}")
            } else {
                format!("f{i}")
            };
            let data = crate::support::data::bytes(i, 1000 + i as usize * 2500);
            std::fs::write(m.join(&p), &data).unwrap();
            model.push((p, data));
        }
        std::os::unix::fs::symlink("docs/deep/f0", m.join("link")).unwrap();
        let c = std::ffi::CString::new(m.join("f1").to_str().unwrap()).unwrap();
        // SAFETY: valid C strings and buffer.
        let r = unsafe { libc::setxattr(c.as_ptr(), c"user.tag".as_ptr(), b"kept".as_ptr().cast(), 4, 0) };
        assert_eq!(r, 0, "{}", std::io::Error::last_os_error());

        // A file held open for writing across the rekey, and one appended to throughout.
        let mut held = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(m.join("held.log"))
            .unwrap();
        held.write_all(b"before the rekey\n").unwrap();
        held.sync_all().unwrap();
        let held_ino = held.metadata().unwrap().ino();
        let stop = Arc::new(AtomicBool::new(false));
        let writer = {
            let stop = stop.clone();
            let path = m.join("appended.log");
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .unwrap();
                let mut n = 0u32;
                while !stop.load(Ordering::Relaxed) {
                    f.write_all(format!("line {n}\n").as_bytes()).unwrap();
                    n += 1;
                    if n % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                }
                n
            })
        };
        std::thread::sleep(Duration::from_millis(100));

        let before = epochs(&v);
        let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
        assert_eq!(out.code, 0, "version {version}: {}", out.stderr);
        assert!(out.stderr.contains("the vault is mounted"), "{}", out.stderr);
        assert_ne!(epochs(&v), before, "a new epoch was started");

        // The handle opened before the rekey writes on, into the file's new copy.
        held.write_all(b"after the rekey\n").unwrap();
        held.sync_all().unwrap();
        held.seek(SeekFrom::Start(0)).unwrap();
        let mut through_handle = String::new();
        held.read_to_string(&mut through_handle).unwrap();
        assert_eq!(through_handle, "before the rekey\nafter the rekey\n");
        // The file kept open keeps its inode number: the kernel's inode, and every
        // descriptor on it, stay valid.
        assert_eq!(held.metadata().unwrap().ino(), held_ino);
        assert_eq!(std::fs::metadata(m.join("held.log")).unwrap().ino(), held_ino);
        drop(held);
        assert_eq!(
            std::fs::read_to_string(m.join("held.log")).unwrap(),
            "before the rekey\nafter the rekey\n",
            "a new open sees what the old handle wrote"
        );
        // No two files share an inode number: a backing inode number freed by the rekey and
        // given to another file's new copy must not make the two one inode.
        let mut seen = std::collections::BTreeMap::new();
        for p in model
            .iter()
            .map(|(p, _)| p.as_str())
            .chain(["held.log", "appended.log"])
        {
            let md = std::fs::symlink_metadata(m.join(p)).unwrap();
            if let Some(other) = seen.insert(md.ino(), p) {
                panic!(
                    "version {version}: {p} and {other} have the same inode number {}\ndaemon log:\n{}",
                    md.ino(),
                    d.log_text()
                );
            }
        }
        for (p, data) in &model {
            assert_eq!(std::fs::metadata(m.join(p)).unwrap().len(), data.len() as u64, "{p}");
        }
        stop.store(true, Ordering::Relaxed);
        let lines = writer.join().unwrap();
        let text = std::fs::read_to_string(m.join("appended.log")).unwrap();
        let want: String = (0..lines).map(|n| format!("line {n}\n")).collect();
        assert_eq!(text.len(), want.len(), "version {version}: appended lines lost");
        assert!(text == want, "version {version}: appended file differs");

        for (p, data) in &model {
            assert_eq!(&std::fs::read(m.join(p)).unwrap(), data, "{p}");
        }
        assert_eq!(std::fs::read_link(m.join("link")).unwrap(), Path::new("docs/deep/f0"));
        let mut buf = [0u8; 16];
        // SAFETY: valid C strings and buffer.
        let n = unsafe { libc::getxattr(c.as_ptr(), c"user.tag".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(&buf[..n.max(0) as usize], b"kept");

        // Everything is under the new epoch: --finish, still mounted, forgets the old one.
        let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
        assert_eq!(out.code, 0, "version {version}: {}", out.stderr);
        std::fs::write(m.join("after-finish"), b"written under the only epoch").unwrap();
        assert_eq!(
            std::fs::read(m.join("after-finish")).unwrap(),
            b"written under the only epoch"
        );
        d.stop();

        // Offline: one epoch, fsck clean, every file as written.
        assert_eq!(epochs(&v).matches('#').count(), 1, "{}", epochs(&v));
        let out = coffer(&["fsck", "--passfile", s(&pf), s(&v)], None);
        assert_eq!(out.code, 0, "{}{}", out.stdout_str(), out.stderr);
        for (p, data) in &model {
            let out = coffer(&["cat", "--passfile", s(&pf), s(&v), p], None);
            assert_eq!(out.code, 0, "{}", out.stderr);
            assert_eq!(&out.stdout, data, "{p}");
        }
        let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
        assert!(out.stderr.contains("one key epoch"), "{}", out.stderr);
    }
}

/// Sets `user.n` of `path` to `value`.
fn set_n(path: &std::ffi::CStr, value: &[u8]) -> std::io::Result<()> {
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(path.as_ptr(), c"user.n".as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// `user.n` of `path`.
fn get_n(path: &std::ffi::CStr) -> Vec<u8> {
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::getxattr(path.as_ptr(), c"user.n".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert!(n >= 0, "{:?}: {}", path, std::io::Error::last_os_error());
    buf[..n as usize].to_vec()
}

/// xattrs set and truncates by path without pause while the mount rekeys the files: a call that
/// opened a file before its new copy was renamed over it waits for the file's lock, then
/// works on the file there now; the last value set on each file is what it has afterwards,
/// through the mount and after a remount.
#[test]
fn xattrs_and_truncates_during_a_rekey_of_the_mount_are_kept() {
    if !fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    assert_eq!(init_version(&v, &pf, "2").code, 0);
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let d = Daemon::start(&v, &mnt, &pf, Duration::from_secs(120));
    let files: Vec<std::ffi::CString> = (0..24)
        .map(|i| {
            let p = d.mnt.join(format!("f{i}"));
            std::fs::write(&p, crate::support::data::bytes(i, 200_000)).unwrap();
            std::ffi::CString::new(p.to_str().unwrap()).unwrap()
        })
        .collect();
    let stop = Arc::new(AtomicBool::new(false));
    let setters: Vec<_> = (0..2)
        .map(|k| {
            let stop = stop.clone();
            let mine: Vec<std::ffi::CString> = files.iter().skip(k).step_by(2).cloned().collect();
            std::thread::spawn(move || {
                let mut last = vec![Vec::new(); mine.len()];
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    for (i, p) in mine.iter().enumerate() {
                        let value = format!("{k}-{n}").into_bytes();
                        if let Err(e) = set_n(p, &value) {
                            return Err(format!("setxattr {p:?}: {e}"));
                        }
                        last[i] = value;
                        n += 1;
                    }
                }
                Ok((mine, last))
            })
        })
        .collect();
    // And files truncated by path (no open handle) to ever new lengths.
    let cut: Vec<std::path::PathBuf> = (0..6)
        .map(|i| {
            let p = d.mnt.join(format!("t{i}"));
            std::fs::write(&p, crate::support::data::bytes(100 + i, 300_000)).unwrap();
            p
        })
        .collect();
    let cutter = {
        let stop = stop.clone();
        let cut = cut.clone();
        std::thread::spawn(move || {
            let mut len = vec![0u64; cut.len()];
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for (i, p) in cut.iter().enumerate() {
                    n += 1;
                    len[i] = 1000 + (n * 7919) % 250_000;
                    let c = std::ffi::CString::new(p.to_str().unwrap()).unwrap();
                    // SAFETY: a valid C string.
                    let r = unsafe { libc::truncate(c.as_ptr(), len[i] as libc::off_t) };
                    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
                }
            }
            len
        })
    };
    std::thread::sleep(Duration::from_millis(100));
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    stop.store(true, Ordering::Relaxed);
    let lens = cutter.join().unwrap();
    for (p, len) in cut.iter().zip(&lens) {
        assert_eq!(std::fs::metadata(p).unwrap().len(), *len, "{p:?}");
        let data = std::fs::read(p).unwrap();
        assert_eq!(data.len() as u64, *len, "{p:?}");
    }
    let mut want = Vec::new();
    for h in setters {
        let (mine, last) = h
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{e}\ndaemon log:\n{}", d.log_text()));
        want.extend(mine.into_iter().zip(last));
    }
    for (p, value) in &want {
        assert_eq!(get_n(p), *value, "{p:?} through the mount");
    }
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    d.stop();
    let d = Daemon::start(&v, &mnt, &pf, Duration::from_secs(120));
    for (p, value) in &want {
        assert_eq!(get_n(p), *value, "{p:?} after a remount");
    }
    d.stop();
}

/// Hard-linked files are rekeyed by the mount too: each is sealed once and all its names,
/// in several directories, are pointed at the new copy together; they stay one file (one
/// inode, its link count, writes through one name seen through the others, a descriptor
/// held open across the rekey writing into it), and `--finish` then succeeds.
#[test]
fn hard_linked_files_are_rekeyed_by_the_mount() {
    if !fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    assert_eq!(init_version(&v, &pf, "1").code, 0);
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let d = Daemon::start(&v, &mnt, &pf, Duration::from_secs(120));
    let m = d.mnt.clone();
    std::fs::create_dir_all(m.join("a/b")).unwrap();
    std::fs::create_dir(m.join("c")).unwrap();
    let data = crate::support::data::bytes(7, 150_000);
    std::fs::write(m.join("a/one"), &data).unwrap();
    std::fs::hard_link(m.join("a/one"), m.join("a/b/two")).unwrap();
    std::fs::hard_link(m.join("a/one"), m.join("c/three")).unwrap();
    std::fs::write(m.join("a/pair"), b"two names").unwrap();
    std::fs::hard_link(m.join("a/pair"), m.join("pair2")).unwrap();
    let c = std::ffi::CString::new(m.join("c/three").to_str().unwrap()).unwrap();
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::setxattr(c.as_ptr(), c"user.tag".as_ptr(), b"linked".as_ptr().cast(), 6, 0) };
    assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
    let mut held = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.join("a/b/two"))
        .unwrap();
    let ino = held.metadata().unwrap().ino();

    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("left under"), "{}", out.stderr);

    held.seek(SeekFrom::Start(0)).unwrap();
    held.write_all(b"WRITTEN THROUGH A HELD DESCRIPTOR").unwrap();
    held.sync_all().unwrap();
    let mut want = data.clone();
    want[..33].copy_from_slice(b"WRITTEN THROUGH A HELD DESCRIPTOR");
    for p in ["a/one", "a/b/two", "c/three"] {
        let md = std::fs::metadata(m.join(p)).unwrap();
        assert_eq!((md.ino(), md.nlink()), (ino, 3), "{p}");
        assert!(std::fs::read(m.join(p)).unwrap() == want, "{p}");
    }
    std::fs::write(m.join("pair2"), b"changed through the second name").unwrap();
    assert_eq!(
        std::fs::read(m.join("a/pair")).unwrap(),
        b"changed through the second name"
    );
    drop(held);
    let mut buf = [0u8; 16];
    // SAFETY: valid C strings and buffer.
    let n = unsafe { libc::getxattr(c.as_ptr(), c"user.tag".as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    assert_eq!(&buf[..n.max(0) as usize], b"linked");

    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    d.stop();
    assert_eq!(epochs(&v).matches('#').count(), 1, "{}", epochs(&v));
    let out = coffer(&["fsck", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}{}", out.stdout_str(), out.stderr);
    let d = Daemon::start(&v, &mnt, &pf, Duration::from_secs(120));
    let a = std::fs::metadata(d.mnt.join("a/one")).unwrap();
    let b = std::fs::metadata(d.mnt.join("c/three")).unwrap();
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 3), "still one file after a remount");
    assert!(std::fs::read(d.mnt.join("c/three")).unwrap() == want);
    d.stop();
}
