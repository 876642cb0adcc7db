//! Round trips of names, long names, symlinks, hard links, renames and xattrs through the
//! vault, checking after each step that no sidecar is orphaned or missing.

use std::os::fd::AsRawFd;

use coffer::format::backing_name::{classify, BackingName};
use coffer::format::config::VaultParams;
use coffer::format::names::{NameEncoding, DEFAULT_LONG_NAME_LIMIT};
use coffer::vault::{unlock, Dir, KdfCost, Vault, VaultError};

const RENAME_EXCHANGE: u32 = libc::RENAME_EXCHANGE;
const RENAME_NOREPLACE: u32 = libc::RENAME_NOREPLACE;

fn vault(enc: NameEncoding) -> (tempfile::TempDir, Vault) {
    let tmp = tempfile::tempdir().unwrap();
    let params = VaultParams {
        name_encoding: enc,
        ..VaultParams::default()
    };
    unlock::init(tmp.path(), None, b"pw", &params, KdfCost::INSECURE_TEST).unwrap();
    let v = Vault::unlock(tmp.path(), None, b"pw", false).unwrap();
    (tmp, v)
}

/// Every long entry has its sidecar, every sidecar its entry; returns the sorted plain names.
#[track_caller]
fn consistent(v: &Vault, dir: &Dir) -> Vec<Vec<u8>> {
    let enc = v.params().name_encoding;
    let raw: Vec<Vec<u8>> = dir.fd.list().unwrap().into_iter().map(|e| e.name).collect();
    let has = |n: &str| raw.iter().any(|r| r == n.as_bytes());
    for r in &raw {
        match classify(r, enc) {
            BackingName::Long(h) => assert!(has(&format!("{h}.name")), "long entry {h} has no sidecar"),
            BackingName::LongSidecar(h) => assert!(has(&format!("{h}.long")), "orphan sidecar {h}.name"),
            BackingName::LinkSidecar(e) => assert!(has(e), "orphan link sidecar of {e}"),
            BackingName::Other | BackingName::Temp => panic!("stray backing entry {}", String::from_utf8_lossy(r)),
            _ => {}
        }
    }
    let mut names: Vec<Vec<u8>> = v.list(dir).unwrap().into_iter().map(|e| e.plain).collect();
    names.sort();
    names
}

fn read_all(v: &Vault, dir: &Dir, plain: &[u8]) -> Vec<u8> {
    let (cn, _) = v.lookup(dir, plain).unwrap();
    let f = v.open_file(dir, &cn.entry, false).unwrap();
    let mut buf = vec![0u8; f.plain_len().unwrap() as usize];
    f.read_at(&mut buf, 0).unwrap();
    buf
}

/// The plaintext length at which names switch to the long form, per encoding (default limit
/// 200): names are padded to the next multiple of 16 (at least one byte), so base64url of
/// 16 + padded(n) bytes fits in 200 chars up to n = 127, base32 up to n = 95.
#[test]
fn long_name_switch_and_name_limits() {
    for (enc, last_short) in [(NameEncoding::Base64Url, 127usize), (NameEncoding::Base32, 95)] {
        let (_t, v) = vault(enc);
        let root = v.root_dir().unwrap();
        assert_eq!(v.params().long_name_limit, DEFAULT_LONG_NAME_LIMIT);
        for n in [1, last_short - 1, last_short, last_short + 1, last_short + 2, 254, 255] {
            let name = vec![b'n'; n];
            let cn = v.cipher_name(&root, &name).unwrap();
            assert_eq!(cn.long.is_some(), n > last_short, "{enc:?} name of {n} bytes");
            assert!(cn.entry.len() <= DEFAULT_LONG_NAME_LIMIT as usize, "{enc:?} {n}");
            let (f, _) = v.create_file(&root, &name, 0o600).unwrap();
            f.write_at(&n.to_be_bytes(), 0).unwrap();
        }
        let names = consistent(&v, &root);
        assert_eq!(names.len(), 7);
        assert_eq!(read_all(&v, &root, &[b'n'; 255]), 255usize.to_be_bytes());
        let e = v.create_file(&root, &[b'n'; 256], 0o600).unwrap_err();
        assert_eq!(e.errno(), libc::ENAMETOOLONG, "{e}");
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            let e = v.create_file(&root, bad, 0o600).unwrap_err();
            assert_eq!(e.errno(), libc::EINVAL, "{bad:?}: {e}");
        }
        assert_eq!(
            v.create_file(&root, &[b'n'; 1], 0o600).unwrap_err().errno(),
            libc::EEXIST
        );
    }
}

#[test]
fn non_utf8_and_odd_names_round_trip() {
    let (_t, v) = vault(NameEncoding::Base64Url);
    let root = v.root_dir().unwrap();
    let names: Vec<Vec<u8>> = vec![
        b"\xff\xfe\xfd".to_vec(),
        b"\x80".to_vec(),
        b"line\nbreak".to_vec(),
        b" leading space".to_vec(),
        b"...".to_vec(),
        b"coffer.conf".to_vec(),
        b"coffer.diriv".to_vec(),
        b".coffer-tmp-0000".to_vec(),
        b"x.sync-conflict-20261125-101010-ABCDEFG".to_vec(),
        [&b"\xc3\x28"[..], &[0xe2; 200]].concat(),
    ];
    for (i, n) in names.iter().enumerate() {
        let (f, _) = v.create_file(&root, n, 0o600).unwrap();
        f.write_at(&[i as u8], 0).unwrap();
    }
    let mut want = names.clone();
    want.sort();
    assert_eq!(consistent(&v, &root), want);
    for (i, n) in names.iter().enumerate() {
        assert_eq!(read_all(&v, &root, n), [i as u8], "{n:?}");
    }
}

/// Renames between short and long names, across directories, with NOREPLACE and EXCHANGE.
#[test]
fn rename_matrix_keeps_sidecars_in_step() {
    let (_t, v) = vault(NameEncoding::Base64Url);
    let root = v.root_dir().unwrap();
    let sub_cn = v.mkdir(&root, &[b'D'; 180], 0o755).unwrap();
    assert!(sub_cn.long.is_some());
    let sub = root.open_child(&v, &sub_cn.entry).unwrap();
    let short = |c: u8| vec![c; 10];
    let long = |c: u8| vec![c; 200];
    let mk = |d: &Dir, n: &[u8], body: &[u8]| {
        let (f, _) = v.create_file(d, n, 0o600).unwrap();
        f.write_at(body, 0).unwrap();
    };
    mk(&root, &short(b'a'), b"A");
    mk(&root, &long(b'b'), b"B");
    // short -> long, long -> short, long -> long, across directories.
    v.rename(&root, &short(b'a'), &root, &long(b'c'), 0).unwrap();
    assert_eq!(consistent(&v, &root), vec![vec![b'D'; 180], long(b'b'), long(b'c')]);
    v.rename(&root, &long(b'b'), &root, &short(b'd'), 0).unwrap();
    v.rename(&root, &long(b'c'), &sub, &long(b'e'), 0).unwrap();
    assert_eq!(consistent(&v, &root), vec![vec![b'D'; 180], short(b'd')]);
    assert_eq!(consistent(&v, &sub), vec![long(b'e')]);
    assert_eq!(read_all(&v, &sub, &long(b'e')), b"A");
    assert_eq!(read_all(&v, &root, &short(b'd')), b"B");
    // Rename onto itself is a no-op that keeps the sidecar.
    v.rename(&sub, &long(b'e'), &sub, &long(b'e'), 0).unwrap();
    assert_eq!(consistent(&v, &sub), vec![long(b'e')]);
    // Replace an existing long target; NOREPLACE refuses.
    mk(&sub, &long(b'f'), b"F");
    let e = v
        .rename(&sub, &long(b'e'), &sub, &long(b'f'), RENAME_NOREPLACE)
        .unwrap_err();
    assert_eq!(e.errno(), libc::EEXIST);
    assert_eq!(consistent(&v, &sub), vec![long(b'e'), long(b'f')]);
    v.rename(&sub, &long(b'e'), &sub, &long(b'f'), 0).unwrap();
    assert_eq!(consistent(&v, &sub), vec![long(b'f')]);
    assert_eq!(read_all(&v, &sub, &long(b'f')), b"A");
    // Exchange a long name in sub with a short one in root.
    v.rename(&sub, &long(b'f'), &root, &short(b'd'), RENAME_EXCHANGE)
        .unwrap();
    assert_eq!(read_all(&v, &sub, &long(b'f')), b"B");
    assert_eq!(read_all(&v, &root, &short(b'd')), b"A");
    assert_eq!(consistent(&v, &sub), vec![long(b'f')]);
    // Unlink and rmdir clean up their sidecars.
    v.unlink(&sub, &long(b'f')).unwrap();
    assert!(consistent(&v, &sub).is_empty());
    drop(sub);
    v.rmdir(&root, &[b'D'; 180]).unwrap();
    assert_eq!(consistent(&v, &root), vec![short(b'd')]);
}

/// Symlink targets switch from inline to a `.link` sidecar when the encoded target would not
/// fit PATH_MAX; both forms survive rename, exchange, unlink and hard links.
#[test]
fn symlink_targets_inline_and_out_of_line() {
    let (_t, v) = vault(NameEncoding::Base64Url);
    let root = v.root_dir().unwrap();
    // base64url(16 + n + 16) <= 4095  <=>  n <= 3039.
    for n in [1usize, 3038, 3039, 3040, 4094, 4095] {
        let target: Vec<u8> = (0..n).map(|i| b'a' + (i % 26) as u8).collect();
        let name = format!("l{n}");
        let cn = v.symlink(&root, name.as_bytes(), &target).unwrap();
        let mut link = cn.entry.clone();
        link.extend_from_slice(b".link");
        assert_eq!(root.fd.stat(&link).is_ok(), n > 3039, "target of {n} bytes");
        assert_eq!(v.readlink(&root, &cn.entry).unwrap(), target, "{n}");
    }
    let e = v.symlink(&root, b"too-long", &[b'x'; 4096]).unwrap_err();
    assert_eq!(e.errno(), libc::ENAMETOOLONG);
    assert_eq!(v.symlink(&root, b"empty", b"").unwrap_err().errno(), libc::EINVAL);
    consistent(&v, &root);

    let target = vec![b'/'; 4000];
    v.symlink(&root, &[b'L'; 200], &target).unwrap();
    v.rename(&root, &[b'L'; 200], &root, b"moved", 0).unwrap();
    let (cn, _) = v.lookup(&root, b"moved").unwrap();
    assert_eq!(v.readlink(&root, &cn.entry).unwrap(), target);
    v.rename(&root, b"moved", &root, b"l1", RENAME_EXCHANGE).unwrap();
    let (cn, _) = v.lookup(&root, b"l1").unwrap();
    assert_eq!(v.readlink(&root, &cn.entry).unwrap(), target);
    let (cn, _) = v.lookup(&root, b"moved").unwrap();
    assert_eq!(v.readlink(&root, &cn.entry).unwrap(), b"a");
    consistent(&v, &root);

    // A hard link to a symlink with an out-of-line target reads the same target.
    let (old, _) = v.lookup(&root, b"l4095").unwrap();
    let hl = v.link(&root, &old.entry, &root, b"hard").unwrap();
    let want: Vec<u8> = (0..4095).map(|i| b'a' + (i % 26) as u8).collect();
    assert_eq!(v.readlink(&root, &hl.entry).unwrap(), want);
    v.unlink(&root, b"l4095").unwrap();
    assert_eq!(
        v.readlink(&root, &hl.entry).unwrap(),
        want,
        "the other name still reads"
    );
    v.unlink(&root, b"hard").unwrap();
    consistent(&v, &root);
}

/// xattrs survive a truncation to 0 (new file ID) and the next write; directories use their
/// diriv as owner ID.
#[test]
fn xattrs_follow_truncation_and_directories() {
    let (_t, v) = vault(NameEncoding::Base64Url);
    let root = v.root_dir().unwrap();
    let (f, _) = v.create_file(&root, b"f", 0o600).unwrap();
    f.write_at(b"data", 0).unwrap();
    let fd = f.backing().as_raw_fd();
    let id = f.header().unwrap().unwrap().file_id;
    v.xattr_set(fd, &id, b"user.k", b"v", 0).unwrap();
    v.set_len(&f, 0).unwrap();
    let id2 = f.header().unwrap().expect("resealed xattrs keep a header").file_id;
    assert_ne!(id, id2);
    assert_eq!(v.xattr_get(fd, &id2, b"user.k").unwrap().unwrap(), b"v");
    f.write_at(b"new", 0).unwrap();
    assert_eq!(f.header().unwrap().unwrap().file_id, id2);
    assert_eq!(v.xattr_get(fd, &id2, b"user.k").unwrap().unwrap(), b"v");
    assert_eq!(v.xattr_list(fd, &id2).unwrap(), vec![b"user.k".to_vec()]);
    v.xattr_remove(fd, &id2, b"user.k").unwrap();
    assert_eq!(v.xattr_get(fd, &id2, b"user.k").unwrap(), None);
    assert!(matches!(
        v.xattr_set(fd, &id2, b"trusted.x", b"v", 0),
        Err(VaultError::Unsupported(_))
    ));

    let cn = v.mkdir(&root, b"d", 0o755).unwrap();
    let d = root.open_child(&v, &cn.entry).unwrap();
    let dfd = d.fd.as_raw_fd();
    v.xattr_set(dfd, &d.iv, b"user.dir", b"dv", 0).unwrap();
    assert_eq!(v.xattr_get(dfd, &d.iv, b"user.dir").unwrap().unwrap(), b"dv");
    assert!(v.xattr_get(dfd, &id2, b"user.dir").is_err());
}
