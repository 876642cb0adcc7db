//! Reverse mode over real FUSE mounts: rsync the view, open the copy forward and compare with
//! the plain tree; incremental rsync touches only changed files; two mounts give identical
//! ciphertext; writes fail with EROFS; excludes and the hidden config are not shown; a
//! 5000-level plain tree under a low descriptor limit.

use crate::support::cli as cli_common;
use crate::support::common;
use crate::support::data::bytes;
use crate::support::reverse as reverse_util;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

use reverse_util::*;

fn setup() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if !common::fuse_available() {
        return None;
    }
    common::require_tool("rsync");
    common::require_tool("diff");
    let tmp = tempfile::Builder::new().prefix("coffer-rev-").tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    build_tree(&plain);
    init_plain(&plain);
    Some((tmp, plain))
}

#[test]
fn rsync_copy_opens_forward_and_incremental_rsync_moves_only_changes() {
    let Some((tmp, plain)) = setup() else { return };
    let copy = tmp.path().join("copy");
    {
        let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
        let names: BTreeSet<Vec<u8>> = std::fs::read_dir(&m.mnt)
            .unwrap()
            .map(|e| e.unwrap().file_name().as_bytes().to_vec())
            .collect();
        assert!(names.contains(b"coffer.conf".as_slice()));
        assert!(names.contains(b"coffer.diriv".as_slice()));
        assert!(!names.iter().any(|n| n.starts_with(b".coffer")), "{names:?}");
        assert!(names.iter().any(|n| n.ends_with(b".long")));
        assert!(names.iter().any(|n| n.ends_with(b".name")));
        assert!(names.iter().any(|n| n.ends_with(b".link")));
        std::fs::create_dir(&copy).unwrap();
        rsync(&m.mnt, &copy, &[]);
    }
    {
        let f = mount_forward(&copy, &tmp.path().join("fwd"));
        diff_tree(&plain, &f.mnt);
        assert_eq!(std::fs::read_link(f.path("far-link")).unwrap().as_os_str().len(), 4000);
    }
    let before = snapshot(&copy);

    // Modify one, add one, delete one.
    let modified = b"a/sibling".as_slice();
    let added = b"a/b/new-file".as_slice();
    let deleted = b"block".as_slice();
    std::fs::write(plain.join("a/sibling"), bytes(99, 12_345)).unwrap();
    std::fs::write(plain.join("a/b/new-file"), b"new").unwrap();
    let deleted_cipher = cipher_path(&plain, deleted);
    std::fs::remove_file(plain.join("block")).unwrap();

    let out = {
        let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
        rsync(&m.mnt, &copy, &["--itemize-changes"])
    };
    let after = snapshot(&copy);
    let mod_c = cipher_path(&plain, modified);
    let add_c = cipher_path(&plain, added);
    let mut sent: BTreeSet<Vec<u8>> = BTreeSet::new();
    let mut gone: BTreeSet<Vec<u8>> = BTreeSet::new();
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("*deleting   ") {
            gone.insert(rest.as_bytes().to_vec());
        } else if line.starts_with(">f") {
            sent.insert(line.as_bytes()[12..].to_vec());
        }
    }
    assert_eq!(
        sent,
        BTreeSet::from([mod_c.clone(), add_c.clone()]),
        "rsync output:\n{out}"
    );
    assert_eq!(gone, BTreeSet::from([deleted_cipher.clone()]), "rsync output:\n{out}");
    // Byte level: every other file of the copy is untouched.
    for (k, v) in &before {
        if *k == mod_c || *k == deleted_cipher {
            continue;
        }
        assert_eq!(after.get(k), Some(v), "{}", String::from_utf8_lossy(k));
    }
    assert_ne!(after.get(&mod_c), before.get(&mod_c));
    assert!(after.contains_key(&add_c) && !after.contains_key(&deleted_cipher));
    assert_eq!(after.len(), before.len());

    let f = mount_forward(&copy, &tmp.path().join("fwd"));
    diff_tree(&plain, &f.mnt);
}

#[test]
fn two_mounts_give_identical_ciphertext() {
    let Some((tmp, plain)) = setup() else { return };
    let a = mount_reverse(&plain, &tmp.path().join("rev1"), &[]);
    let b = mount_reverse(&plain, &tmp.path().join("rev2"), &[]);
    let sa = snapshot(&a.mnt);
    let sb = snapshot(&b.mnt);
    assert!(sa.len() > 15, "{}", sa.len());
    assert_eq!(sa, sb);
    drop(a);
    // And a mount after an unmount (fresh keys derived again from the config).
    let c = mount_reverse(&plain, &tmp.path().join("rev1"), &[]);
    assert_eq!(snapshot(&c.mnt), sb);
}

#[test]
fn writes_fail_with_erofs() {
    let Some((tmp, plain)) = setup() else { return };
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let any_file = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().unwrap().is_file() && e.file_name() != "coffer.conf")
        .unwrap()
        .path();
    let erofs = |r: std::io::Result<()>, what: &str| {
        assert_eq!(common::errno(&r), Some(libc::EROFS), "{what}: {r:?}");
    };
    erofs(std::fs::write(m.path("new"), b"x"), "create");
    erofs(std::fs::create_dir(m.path("newdir")), "mkdir");
    erofs(std::fs::remove_file(&any_file), "unlink");
    erofs(std::fs::rename(&any_file, m.path("renamed")), "rename");
    erofs(
        std::fs::OpenOptions::new().append(true).open(&any_file).map(drop),
        "open for append",
    );
    erofs(
        std::fs::set_permissions(&any_file, std::os::unix::fs::PermissionsExt::from_mode(0o600)),
        "chmod",
    );
    erofs(std::os::unix::fs::symlink("x", m.path("sl")), "symlink");
    erofs(common::set_xattr(&any_file, "user.a", b"1", 0), "setxattr");
    erofs(std::fs::remove_file(m.path("coffer.conf")), "unlink conf");
    assert_eq!(common::list_xattr(&any_file).unwrap(), Vec::<String>::new());
    // The plain tree is untouched.
    assert!(!plain.join("new").exists());
}

#[test]
fn excludes_and_hidden_config_are_not_shown() {
    let Some((tmp, plain)) = setup() else { return };
    std::fs::write(plain.join("scratch.tmp"), b"tmp").unwrap();
    std::fs::write(plain.join("a/b/x.tmp"), b"tmp").unwrap();
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &["*.tmp", "/a/b/c"]);
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    rsync(&m.mnt, &copy, &[]);
    drop(m);
    let f = mount_forward(&copy, &tmp.path().join("fwd"));
    let seen = snapshot(&f.mnt);
    assert!(!seen.contains_key(b"scratch.tmp".as_slice()));
    assert!(!seen.contains_key(b"a/b/x.tmp".as_slice()));
    assert!(!seen.contains_key(b"a/b/c".as_slice()));
    assert!(seen.contains_key(b"a/b".as_slice()));
    assert!(!seen.keys().any(|k| k.starts_with(b".coffer")));
    assert_eq!(seen.get(OsStr::new("one").as_bytes()), Some(&Obj::File(b"x".to_vec())));
}

/// Makes `depth` nested directories `d` in `top` (mkdirat on descriptors: the path is too
/// long for one call) and a file `leaf` in the deepest.
fn deep_plain_tree(top: &std::path::Path, depth: usize) {
    let mut fd = cli_common::open_deep(top, "d", 0);
    let d = std::ffi::CString::new("d").unwrap();
    for _ in 0..depth {
        // SAFETY: valid descriptor and C string.
        assert_eq!(
            unsafe { libc::mkdirat(std::os::fd::AsRawFd::as_raw_fd(&fd), d.as_ptr(), 0o755) },
            0
        );
        fd = open_below(&fd, b"d");
    }
    let leaf = std::ffi::CString::new("leaf").unwrap();
    let flags = libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC;
    // SAFETY: as above.
    let f = unsafe { libc::openat(std::os::fd::AsRawFd::as_raw_fd(&fd), leaf.as_ptr(), flags, 0o644) };
    assert!(f >= 0, "{}", std::io::Error::last_os_error());
    // SAFETY: f is ours.
    unsafe { libc::close(f) };
}

/// Opens directory `name` below `dir`.
fn open_below(dir: &std::os::fd::OwnedFd, name: &[u8]) -> std::os::fd::OwnedFd {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(name).unwrap();
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: valid descriptor and C string.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), flags) };
    assert!(
        fd >= 0,
        "{}: {}",
        String::from_utf8_lossy(name),
        std::io::Error::last_os_error()
    );
    // SAFETY: fd is fresh.
    unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) }
}

/// The names in the directory open at `dir`, each with whether it is a directory.
fn list_fd(dir: &std::os::fd::OwnedFd) -> Vec<(Vec<u8>, bool)> {
    let p = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(dir));
    std::fs::read_dir(p)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().as_bytes().to_vec(), e.file_type().unwrap().is_dir())
        })
        .collect()
}

/// A plain folder 5000 levels deep, shown by `coffer reverse` running under RLIMIT_NOFILE 256
/// (soft and hard): every level is listed on the way down and the deepest directory lists
/// its file. Before, each directory the daemon opened was reopened from the root (all the
/// levels above it again) and up to 1024 of them were kept open: the walk ran out of
/// descriptors.
#[test]
fn a_5000_level_plain_tree_lists_at_the_bottom_under_256_descriptors() {
    const DEPTH: usize = 5000;
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("coffer-rev-").tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    deep_plain_tree(&plain, DEPTH);
    init_plain(&plain);
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let pf = tmp.path().join("pw");
    std::fs::write(&pf, [PASSWORD, b"\n"].concat()).unwrap();
    let guard = cli_common::Unmount(mnt.clone());
    let args = [
        OsStr::new("reverse"),
        OsStr::new("--passfile"),
        pf.as_os_str(),
        plain.as_os_str(),
        mnt.as_os_str(),
    ];
    let out = cli_common::coffer_limited(&args, 256);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let t0 = std::time::Instant::now();
    let mut fd = cli_common::open_deep(&mnt, "d", 0);
    for level in 0..DEPTH {
        let names = list_fd(&fd);
        let dirs: Vec<&Vec<u8>> = names.iter().filter(|(_, d)| *d).map(|(n, _)| n).collect();
        assert_eq!(dirs.len(), 1, "level {level}: {names:?}");
        fd = open_below(&fd, dirs[0]);
    }
    let mut bottom: Vec<(Vec<u8>, bool)> = list_fd(&fd);
    bottom.sort();
    assert_eq!(bottom.len(), 2, "{bottom:?}");
    assert!(bottom.contains(&(b"coffer.diriv".to_vec(), false)), "{bottom:?}");
    assert!(bottom.iter().all(|(_, d)| !d), "{bottom:?}");
    eprintln!("{DEPTH} levels listed through the reverse mount: {:?}", t0.elapsed());
    drop(fd);
    drop(guard);
    cli_common::remove_tree_flat(&plain);
}

#[test]
fn the_view_exports_no_file_handles() {
    let Some((tmp, plain)) = setup() else { return };
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let any_file = std::fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap())
        .find(|e| e.file_type().unwrap().is_file() && e.file_name() != "coffer.conf")
        .unwrap()
        .path();
    common::assert_exports_no_file_handles(&m.mnt, &any_file);
}
