//! `coffer export`: a tree made through the library comes back byte for byte, with modes,
//! times, symlinks, long and non-UTF-8 names and xattrs; damage is reported, the rest exported.

use crate::support::cli as cli_common;
use crate::support::data::bytes;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use cli_common::{coffer, coffer_limited, deep_vault_tree, fast_base, init_lib, open_deep, passfile, remove_tree_flat};
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::CIPHER_BLOCK;
use coffer::vault::{Dir, TimeSpec, Vault};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

const MTIME: (i64, i64) = (1_600_000_000, 123_456_789);

fn file(v: &Vault, dir: &Dir, name: &[u8], data: &[u8], mode: u32) {
    let (f, cname) = v.create_file(dir, name, mode).unwrap();
    if !data.is_empty() {
        f.write_at(data, 0).unwrap();
    }
    dir.fd
        .utimens(&cname.entry, TimeSpec::At(MTIME.0, 0), TimeSpec::At(MTIME.0, MTIME.1))
        .unwrap();
}

fn sizes() -> Vec<(String, Vec<u8>)> {
    [0usize, 1, 4095, 4096, 4097, 1 << 20]
        .iter()
        .map(|&n| (format!("size-{n}"), bytes(n as u64 + 1, n)))
        .collect()
}

#[test]
fn export_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    let root = v.root_dir().unwrap();
    for (name, data) in sizes() {
        file(&v, &root, name.as_bytes(), &data, 0o640);
    }
    let long_name = vec![b'L'; 230];
    file(&v, &root, &long_name, b"long name content", 0o600);
    file(&v, &root, b"caf\xe9-latin1.bin", b"not utf-8 name", 0o644);
    file(&v, &root, b"run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    let sub = v.mkdir(&root, b"sub", 0o750).unwrap();
    let sub_dir = root.open_child(&v, &sub.entry).unwrap();
    file(&v, &sub_dir, b"nested.txt", b"nested\n", 0o644);
    let deeper = v.mkdir(&sub_dir, b"empty-dir", 0o700).unwrap();
    v.symlink(&root, b"link", b"sub/nested.txt").unwrap();
    v.symlink(&root, b"dangling", b"/nowhere/at/all").unwrap();
    // An xattr, where the backing filesystem stores user xattrs.
    let (xf, _) = v.create_file(&root, b"with-xattr", 0o644).unwrap();
    xf.write_at(b"x", 0).unwrap();
    let id = xf.header().unwrap().unwrap().file_id;
    let xattr_ok = {
        use std::os::fd::AsRawFd;
        v.xattr_set(xf.backing().as_raw_fd(), &id, b"user.color", b"blue", 0)
            .is_ok()
    };
    // Directory times last (creating entries touches them).
    sub_dir
        .fd
        .utimens(&deeper.entry, TimeSpec::At(MTIME.0, 0), TimeSpec::At(MTIME.0, 5))
        .unwrap();
    root.fd
        .utimens(&sub.entry, TimeSpec::At(MTIME.0, 0), TimeSpec::At(MTIME.0 + 1, 7))
        .unwrap();
    drop(v);

    let out_dir = t.path().join("out");
    let pf = passfile(t.path(), "pw", "pw");
    let out = coffer(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("exported 11 files, 2 directories, 2 symlinks"),
        "{}",
        out.stderr
    );

    let mut names: Vec<Vec<u8>> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().as_bytes().to_vec())
        .collect();
    names.sort();
    let mut want: Vec<Vec<u8>> = sizes().into_iter().map(|(n, _)| n.into_bytes()).collect();
    want.extend([
        long_name.clone(),
        b"caf\xe9-latin1.bin".to_vec(),
        b"run.sh".to_vec(),
        b"sub".to_vec(),
        b"link".to_vec(),
        b"dangling".to_vec(),
        b"with-xattr".to_vec(),
    ]);
    want.sort();
    assert_eq!(names, want);

    for (name, data) in sizes() {
        let p = out_dir.join(&name);
        assert!(std::fs::read(&p).unwrap() == data, "{name} differs");
        let m = std::fs::metadata(&p).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o640, "{name}");
        assert_eq!((m.mtime(), m.mtime_nsec()), MTIME, "{name}");
    }
    assert_eq!(
        std::fs::read(out_dir.join(OsStr::from_bytes(&long_name))).unwrap(),
        b"long name content"
    );
    assert_eq!(
        std::fs::read(out_dir.join(OsStr::from_bytes(b"caf\xe9-latin1.bin"))).unwrap(),
        b"not utf-8 name"
    );
    assert_eq!(
        std::fs::metadata(out_dir.join("run.sh")).unwrap().permissions().mode() & 0o7777,
        0o755
    );
    assert_eq!(std::fs::read(out_dir.join("sub/nested.txt")).unwrap(), b"nested\n");
    let sub_meta = std::fs::metadata(out_dir.join("sub")).unwrap();
    assert_eq!(sub_meta.permissions().mode() & 0o7777, 0o750);
    assert_eq!((sub_meta.mtime(), sub_meta.mtime_nsec()), (MTIME.0 + 1, 7));
    let empty = out_dir.join("sub/empty-dir");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(std::fs::metadata(&empty).unwrap().mtime_nsec(), 5);
    assert_eq!(
        std::fs::read_link(out_dir.join("link")).unwrap(),
        Path::new("sub/nested.txt")
    );
    assert_eq!(
        std::fs::read_link(out_dir.join("dangling")).unwrap(),
        Path::new("/nowhere/at/all")
    );
    if xattr_ok {
        use std::os::fd::AsRawFd;
        let f = std::fs::File::open(out_dir.join("with-xattr")).unwrap();
        let got = coffer::vault::backing::fgetxattr(f.as_raw_fd(), b"user.color").unwrap();
        assert_eq!(got.as_deref(), Some(&b"blue"[..]));
    } else {
        eprintln!("note: the temp filesystem has no user xattrs; xattr export not checked");
    }

    // A non-empty OUTDIR is refused unless --force.
    let out = coffer(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], None);
    assert_eq!(out.code, 7);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}: directory is not empty\ncoffer: hint: use an empty directory, or --force to export into it anyway\n",
            out_dir.display()
        )
    );
}

#[test]
fn export_reports_damage_and_exports_the_rest() {
    let t = tempfile::tempdir().unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    let root = v.root_dir().unwrap();
    let three_blocks = bytes(3, 3 * 4096);
    file(&v, &root, b"good.txt", b"fine\n", 0o644);
    file(&v, &root, b"bad.bin", &three_blocks, 0o644);
    file(&v, &root, b"bad-header.txt", b"header will break", 0o644);
    let sub = v.mkdir(&root, b"sub", 0o755).unwrap();
    let sub_dir = root.open_child(&v, &sub.entry).unwrap();
    file(&v, &sub_dir, b"also-good.txt", b"also fine\n", 0o644);
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");

    let backing = |plain: &str| {
        let out = coffer(&["encrypt-name", "--passfile", s(&pf), s(&cdir), plain], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
        cdir.join(out.stdout_str().trim_end())
    };
    let flip = |path: &Path, off: u64| {
        let mut data = std::fs::read(path).unwrap();
        data[off as usize] ^= 0x40;
        std::fs::write(path, data).unwrap();
    };
    flip(&backing("bad.bin"), HEADER_LEN as u64 + CIPHER_BLOCK + 40);
    flip(&backing("bad-header.txt"), 0);

    let out_dir = t.path().join("out");
    let out = coffer(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], None);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("coffer: damaged: bad.bin: blocks 1 failed authentication; exported as zeros\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("coffer: damaged: bad-header.txt: "),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .ends_with("coffer: error: 2 damaged items (listed above); everything else was exported\n"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(out_dir.join("good.txt")).unwrap(), b"fine\n");
    assert_eq!(
        std::fs::read(out_dir.join("sub/also-good.txt")).unwrap(),
        b"also fine\n"
    );
    assert!(!out_dir.join("bad-header.txt").exists());
    let got = std::fs::read(out_dir.join("bad.bin")).unwrap();
    assert_eq!(got.len(), three_blocks.len());
    assert!(got[..4096] == three_blocks[..4096], "block 0 must survive");
    assert!(got[4096..8192].iter().all(|&b| b == 0), "block 1 must be zeros");
    assert!(got[8192..] == three_blocks[8192..], "block 2 must survive");

    // cat of the damaged file: one line, exit 6.
    let out = coffer(&["cat", "--passfile", s(&pf), s(&cdir), "bad.bin"], None);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(out.stderr.starts_with("coffer: error: damaged: "), "{}", out.stderr);
    assert!(out.stderr.contains("(block 1)"), "{}", out.stderr);
}

/// The first part of a (possibly huge) output, for assertion messages.
fn head(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// The content of `name` in the directory open at `dir`.
fn read_at(dir: &std::os::fd::OwnedFd, name: &str) -> Vec<u8> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid descriptor and C string; the new descriptor is owned by the File.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    assert!(fd >= 0, "{name}: {}", std::io::Error::last_os_error());
    // SAFETY: fd is fresh.
    let mut f = unsafe { std::fs::File::from_raw_fd(fd) };
    let mut data = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut data).unwrap();
    data
}

/// A 20000-level tree exported under RLIMIT_NOFILE 256 (soft and hard): the file at the
/// bottom comes out at the bottom of a 20000-level output tree. Before, the walk recursed
/// once per level holding two descriptors per level.
#[test]
fn export_of_a_20000_level_tree_under_256_descriptors() {
    const DEPTH: usize = 20000;
    let t = tempfile::tempdir_in(fast_base()).unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    deep_vault_tree(&v, DEPTH, b"deep");
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");
    let out_dir = t.path().join("out");
    let t0 = std::time::Instant::now();
    let out = coffer_limited(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], 256);
    eprintln!("export of {DEPTH} levels: {:?}", t0.elapsed());
    remove_tree_flat(&cdir);
    assert_eq!(out.code, 0, "{}", head(&out.stderr));
    assert!(
        out.stderr
            .contains(&format!("exported 1 files, {DEPTH} directories, 0 symlinks (4 bytes)")),
        "{}",
        head(&out.stderr)
    );
    let bottom = open_deep(&out_dir, "d", DEPTH);
    assert_eq!(read_at(&bottom, "file"), b"deep");
    drop(bottom);
    remove_tree_flat(&out_dir);
}

/// 30 branches of 100 nested directories, a file in each (3000 directories, 3000 files),
/// checked and exported under RLIMIT_NOFILE 64: a directory whose descriptor the walk
/// dropped on the way down is opened again for the entries after its subdirectory. Before,
/// both ran out of descriptors (one or two per level).
#[test]
fn a_3000_directory_tree_is_checked_and_exported_under_64_descriptors() {
    const BRANCHES: usize = 30;
    const LEVELS: usize = 100;
    let t = tempfile::tempdir_in(fast_base()).unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    let root = v.root_dir().unwrap();
    for b in 0..BRANCHES {
        let name = v.mkdir(&root, format!("b{b}").as_bytes(), 0o755).unwrap();
        let mut dir = root.open_child(&v, &name.entry).unwrap();
        for l in 0..LEVELS {
            file(&v, &dir, b"f", format!("{b}/{l}").as_bytes(), 0o644);
            if l + 1 < LEVELS {
                let name = v.mkdir(&dir, b"d", 0o755).unwrap();
                dir = dir.open_child(&v, &name.entry).unwrap();
            }
        }
    }
    drop(root);
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");
    let t0 = std::time::Instant::now();
    let out = coffer_limited(&["fsck", "--passfile", s(&pf), s(&cdir)], 64);
    eprintln!("fsck of {BRANCHES}x{LEVELS} levels: {:?}", t0.elapsed());
    assert_eq!(out.code, 0, "{}", head(&out.stderr));
    let n = BRANCHES * LEVELS;
    assert_eq!(
        out.stderr,
        format!("coffer: checked {n} files, {} directories, 0 symlinks: clean\n", n + 1)
    );
    let out_dir = t.path().join("out");
    let t0 = std::time::Instant::now();
    let out = coffer_limited(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], 64);
    eprintln!("export of {BRANCHES}x{LEVELS} levels: {:?}", t0.elapsed());
    assert_eq!(out.code, 0, "{}", head(&out.stderr));
    assert!(
        out.stderr
            .contains(&format!("exported {n} files, {n} directories, 0 symlinks")),
        "{}",
        head(&out.stderr)
    );
    for b in 0..BRANCHES {
        let mut p = out_dir.join(format!("b{b}"));
        for l in 0..LEVELS {
            assert_eq!(std::fs::read(p.join("f")).unwrap(), format!("{b}/{l}").as_bytes());
            p.push("d");
        }
        assert!(!p.exists(), "{}", p.display());
    }
}

/// A file whose last block does not authenticate, mixing two versions: export writes what
/// reads (the newer block 1 among the older blocks, zeros for the last block) and marks the file
/// twice, for the damaged block and for the order it could not check.
#[test]
fn export_marks_a_file_whose_order_it_cannot_check() {
    use crate::fsck::{mixed_file, MIXED_LEN};
    let t = tempfile::tempdir().unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    mixed_file(&v, &cdir, b"mixed.bin", true, true);
    mixed_file(&v, &cdir, b"fine.bin", false, false);
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");
    let out_dir = t.path().join("out");
    let out = coffer(&["export", "--passfile", s(&pf), s(&cdir), s(&out_dir)], None);
    assert_eq!(out.code, 6, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("coffer: damaged: mixed.bin: blocks 4 failed authentication; exported as zeros\n"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("coffer: damaged: mixed.bin: order of blocks not checkable: last block 4 does not authenticate"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("fine.bin"), "{}", out.stderr);
    assert!(
        out.stderr
            .ends_with("coffer: error: 2 damaged items (listed above); everything else was exported\n"),
        "{}",
        out.stderr
    );
    let older = bytes(7, MIXED_LEN);
    let got = std::fs::read(out_dir.join("mixed.bin")).unwrap();
    assert_eq!(got[..4096], older[..4096]);
    assert_eq!(got[4096..4106], [0xee; 10], "the newer block 1, as read");
    assert_eq!(got[8192..4 * 4096], older[8192..4 * 4096]);
    assert!(got[4 * 4096..].iter().all(|&b| b == 0));
    assert_eq!(std::fs::read(out_dir.join("fine.bin")).unwrap(), older);
}
