//! Names, symlink targets and xattrs under key epochs (docs/FORMAT.md §15.4): objects written
//! under a layout-1 epoch stay readable once a layout-3 epoch is added, new objects are sealed
//! under the newest epoch only, and nothing opens under an epoch the vault does not hold.

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use crate::support::epochs;
use coffer::crypto::{KeySet, MasterKey};
use coffer::format::config::VaultParams;
use coffer::format::epochs::{EpochId, Layout};
use coffer::format::names;
use coffer::format::sealed::{xattr_value_aad, SYMLINK_AAD, SYMLINK_OUT_OF_LINE, XATTR_NAME_AD};
use coffer::format::xattr_pack::{PACK3_BACKING_NAME, PACK_BACKING_NAME};
use coffer::vault::backing::{fgetxattr, fsetxattr};
use coffer::vault::fsck::{fsck, DamageKind};
use coffer::vault::{cipher_name_for, unlock, Dir, EpochKeys, KdfCost, Vault, VaultKeys};

const OLD_KEY: [u8; 32] = [0x11; 32];
const NEW_KEY: [u8; 32] = [0x33; 32];
const OLD_ID: EpochId = EpochId([0xe1, 0x01, 0x01, 0x1e]);
const NEW_ID: EpochId = EpochId([0xe3, 0x03, 0x03, 0x3e]);

fn old_epoch() -> EpochKeys {
    epochs::layout1(OLD_KEY, OLD_ID)
}

fn new_epoch() -> EpochKeys {
    epochs::layout3(NEW_KEY, NEW_ID)
}

fn init() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    unlock::init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    tmp
}

/// The vault at `dir` with only the old layout-1 key, as a config-version-1 vault has it.
fn open_old(dir: &Path) -> Vault {
    let keys = VaultKeys::single(KeySet::derive(&MasterKey::from_bytes(OLD_KEY), false));
    Vault::open_with_keys(dir, keys, VaultParams::default(), false).unwrap()
}

fn open_epochs(dir: &Path, list: Vec<EpochKeys>) -> Vault {
    epochs::open_with(dir, list)
}

/// The backing name of xattr `name` under `set`, and its SIV output.
fn xattr_backing(set: &KeySet, name: &[u8]) -> (Vec<u8>, Vec<u8>) {
    let cipher = set.xattr_names.encrypt_name(XATTR_NAME_AD, name);
    (format!("user.coffer.{}", names::encode(&cipher)).into_bytes(), cipher)
}

fn has_xattr(fd: RawFd, backing: &[u8]) -> bool {
    fgetxattr(fd, backing).unwrap().is_some()
}

fn read_all(v: &Vault, dir: &Dir, plain: &[u8]) -> Vec<u8> {
    let (cn, _) = v.lookup(dir, plain).unwrap();
    let f = v.open_file(dir, &cn.entry, false).unwrap();
    let mut buf = vec![0u8; f.plain_len().unwrap() as usize];
    f.read_at(&mut buf, 0).unwrap();
    buf
}

fn read_link(v: &Vault, dir: &Dir, plain: &[u8]) -> Vec<u8> {
    let (cn, _) = v.lookup(dir, plain).unwrap();
    v.readlink(dir, &cn.entry).unwrap()
}

/// The sealed bytes of a backing symlink (inline or out of line).
fn sealed_target(dir: &Dir, entry: &[u8]) -> Vec<u8> {
    let backing = dir.fd.readlink(entry).unwrap();
    if backing == SYMLINK_OUT_OF_LINE.as_bytes() {
        let mut link = entry.to_vec();
        link.extend_from_slice(b".link");
        dir.fd.read_small(&link, 8192).unwrap()
    } else {
        names::decode(&backing).unwrap()
    }
}

fn sorted_names(v: &Vault, dir: &Dir) -> Vec<Vec<u8>> {
    let mut n: Vec<Vec<u8>> = v.list(dir).unwrap().into_iter().map(|e| e.plain).collect();
    n.sort();
    n
}

const LONG_FILE: [u8; 150] = [b'n'; 150];
const LONG_LINK: [u8; 140] = [b's'; 140];

fn big_target() -> Vec<u8> {
    (0..3500).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Writes, under the old epoch only: short and long file names, a directory with a file in
/// it, inline and out-of-line symlink targets (one under a long name), and on `short.txt` a
/// large xattr and seven small ones (the last three packed).
fn write_old_tree(dir: &Path) {
    let v = open_old(dir);
    let root = v.root_dir().unwrap();
    let (f, _) = v.create_file(&root, b"short.txt", 0o600).unwrap();
    f.write_at(b"short content", 0).unwrap();
    let fd = f.backing().as_raw_fd();
    let id = f.header().unwrap().unwrap().file_id;
    v.xattr_set(fd, &id, b"user.big", &[b'b'; 300], 0).unwrap();
    for i in 0..6 {
        v.xattr_set(fd, &id, format!("user.a{i}").as_bytes(), format!("v{i}").as_bytes(), 0)
            .unwrap();
    }
    assert!(
        has_xattr(fd, PACK_BACKING_NAME.as_bytes()),
        "small xattrs formed a pack"
    );
    let (f, cn) = v.create_file(&root, &LONG_FILE, 0o600).unwrap();
    assert!(cn.long.is_some());
    f.write_at(b"long content", 0).unwrap();
    let cn = v.mkdir(&root, b"sub", 0o755).unwrap();
    let sub = root.open_child(&v, &cn.entry).unwrap();
    let (f, _) = v.create_file(&sub, b"inner", 0o600).unwrap();
    f.write_at(b"inner content", 0).unwrap();
    v.xattr_set(sub.fd.as_raw_fd(), &sub.iv, b"user.d", b"dv", 0).unwrap();
    v.symlink(&root, b"ln", b"target").unwrap();
    let cn = v.symlink(&root, b"lnbig", &big_target()).unwrap();
    assert_eq!(sealed_target(&root, &cn.entry).len(), 3500 + 32);
    v.symlink(&root, &LONG_LINK, b"long-link-target").unwrap();
}

/// Everything written under a layout-1 epoch lists, looks up and reads back once a layout-3
/// epoch is the newest; new names, targets and packs are sealed under the new epoch.
#[test]
fn old_epoch_objects_read_and_new_ones_use_the_new_epoch() {
    let tmp = init();
    write_old_tree(tmp.path());
    let v = open_epochs(tmp.path(), vec![old_epoch(), new_epoch()]);
    let (old, new) = (old_epoch(), new_epoch());
    let params = VaultParams::default();
    let root = v.root_dir().unwrap();

    let mut want: Vec<Vec<u8>> = vec![
        b"short.txt".to_vec(),
        LONG_FILE.to_vec(),
        b"sub".to_vec(),
        b"ln".to_vec(),
        b"lnbig".to_vec(),
        LONG_LINK.to_vec(),
    ];
    want.sort();
    assert_eq!(sorted_names(&v, &root), want);
    assert_eq!(read_all(&v, &root, b"short.txt"), b"short content");
    assert_eq!(read_all(&v, &root, &LONG_FILE), b"long content");
    assert_eq!(read_link(&v, &root, b"ln"), b"target");
    assert_eq!(read_link(&v, &root, b"lnbig"), big_target());
    assert_eq!(read_link(&v, &root, &LONG_LINK), b"long-link-target");
    let (cn, _) = v.lookup(&root, b"sub").unwrap();
    assert_eq!(
        cn.entry,
        cipher_name_for(&old.set, &params, &root.iv, b"sub").unwrap().entry
    );
    let sub = root.open_child(&v, &cn.entry).unwrap();
    assert_eq!(sorted_names(&v, &sub), vec![b"inner".to_vec()]);
    assert_eq!(read_all(&v, &sub, b"inner"), b"inner content");
    assert_eq!(
        v.xattr_get(sub.fd.as_raw_fd(), &sub.iv, b"user.d").unwrap().unwrap(),
        b"dv"
    );

    // Names made now are under the new epoch's names key, short and long.
    for plain in [&b"new.txt"[..], &[b'm'; 150][..]] {
        let (_, cn) = v.create_file(&root, plain, 0o600).unwrap();
        let want = cipher_name_for(&new.set, &params, &root.iv, plain).unwrap();
        assert_eq!(cn.entry, want.entry);
        assert_ne!(
            cn.entry,
            cipher_name_for(&old.set, &params, &root.iv, plain).unwrap().entry
        );
        assert_eq!(cn.long.map(|l| l.encoded), want.long.map(|l| l.encoded));
    }
    let cn = v.mkdir(&root, b"newdir", 0o755).unwrap();
    assert_eq!(
        cn.entry,
        cipher_name_for(&new.set, &params, &root.iv, b"newdir").unwrap().entry
    );
    assert_eq!(v.lookup(&root, b"newdir").unwrap().0.entry, cn.entry);

    // New symlink targets carry the new epoch's ID in their nonce, inline and out of line.
    for (plain, target) in [(&b"ln3"[..], b"x".to_vec()), (&b"ln3big"[..], big_target())] {
        let cn = v.symlink(&root, plain, &target).unwrap();
        let sealed = sealed_target(&root, &cn.entry);
        assert_eq!(sealed[..4], NEW_ID.0);
        assert_eq!(v.readlink(&root, &cn.entry).unwrap(), target);
        assert!(old.set.symlinks.open_from_slice(SYMLINK_AAD, &sealed).is_err());
    }

    // A name that exists under the old epoch cannot be made again under the new one.
    let eexist = |r: coffer::vault::Result<()>| assert_eq!(r.unwrap_err().errno(), libc::EEXIST);
    eexist(v.create_file(&root, b"short.txt", 0o600).map(|_| ()));
    eexist(v.create_file(&root, &LONG_FILE, 0o600).map(|_| ()));
    eexist(v.mkdir(&root, b"sub", 0o755).map(|_| ()));
    eexist(v.symlink(&root, b"ln", b"other").map(|_| ()));
    eexist(v.symlink(&root, &LONG_LINK, b"other").map(|_| ()));
    eexist(v.mknod(&root, b"ln", libc::S_IFIFO | 0o600, 0).map(|_| ()));
    let (inner, _) = v.lookup(&sub, b"inner").unwrap();
    eexist(v.link(&sub, &inner.entry, &root, b"short.txt").map(|_| ()));
    assert_eq!(read_all(&v, &root, b"short.txt"), b"short content");
    assert_eq!(read_link(&v, &root, b"ln"), b"target");

    // xattrs of the old epoch: all listed and read.
    let (cn, _) = v.lookup(&root, b"short.txt").unwrap();
    let f = v.open_file(&root, &cn.entry, true).unwrap();
    let fd = f.backing().as_raw_fd();
    let id = f.header().unwrap().unwrap().file_id;
    let mut listed = v.xattr_list(fd, &id).unwrap();
    listed.sort();
    let mut want: Vec<Vec<u8>> = (0..6).map(|i| format!("user.a{i}").into_bytes()).collect();
    want.push(b"user.big".to_vec());
    want.sort();
    assert_eq!(listed, want);
    assert_eq!(v.xattr_get(fd, &id, b"user.big").unwrap().unwrap(), [b'b'; 300]);
    for i in 0..6 {
        let got = v.xattr_get(fd, &id, format!("user.a{i}").as_bytes()).unwrap().unwrap();
        assert_eq!(got, format!("v{i}").as_bytes());
    }

    // A new small xattr rewrites the pack as `user.coffer.pack3`, old entries included.
    v.xattr_set(fd, &id, b"user.a6", b"v6", 0).unwrap();
    assert!(
        !has_xattr(fd, PACK_BACKING_NAME.as_bytes()),
        "the layout-1 pack is gone"
    );
    let pack3 = fgetxattr(fd, PACK3_BACKING_NAME.as_bytes()).unwrap().unwrap();
    assert_eq!(pack3[..4], NEW_ID.0);
    for i in 3..7 {
        let got = v.xattr_get(fd, &id, format!("user.a{i}").as_bytes()).unwrap().unwrap();
        assert_eq!(got, format!("v{i}").as_bytes());
    }

    // Setting an xattr sealed under the old epoch replaces it under the new one.
    let (old_a0, _) = xattr_backing(&old.set, b"user.a0");
    let (new_a0, _) = xattr_backing(&new.set, b"user.a0");
    assert!(has_xattr(fd, &old_a0));
    assert_eq!(
        v.xattr_set(fd, &id, b"user.a0", b"w0", libc::XATTR_CREATE)
            .unwrap_err()
            .errno(),
        libc::EEXIST
    );
    v.xattr_set(fd, &id, b"user.a0", b"w0", libc::XATTR_REPLACE).unwrap();
    assert!(!has_xattr(fd, &old_a0), "the old epoch's copy is gone");
    assert_eq!(fgetxattr(fd, &new_a0).unwrap().unwrap()[..4], NEW_ID.0);
    assert_eq!(v.xattr_get(fd, &id, b"user.a0").unwrap().unwrap(), b"w0");

    // Removing an xattr sealed under the old epoch.
    let (old_a1, _) = xattr_backing(&old.set, b"user.a1");
    v.xattr_remove(fd, &id, b"user.a1").unwrap();
    assert!(!has_xattr(fd, &old_a1));
    assert_eq!(v.xattr_get(fd, &id, b"user.a1").unwrap(), None);
    assert_eq!(v.xattr_remove(fd, &id, b"user.a1").unwrap_err().errno(), libc::ENODATA);

    // One name under both epochs (a crash between writing the new copy and removing the old):
    // the newest wins, it is listed once, and removing it removes both.
    let (old_a2, _) = xattr_backing(&old.set, b"user.a2");
    let (new_a2, cipher) = xattr_backing(&new.set, b"user.a2");
    let mut nonce = [7u8; 16];
    nonce[..4].copy_from_slice(&NEW_ID.0);
    let sealed =
        new.set
            .xattr_values
            .seal_with_nonce_to_vec(&nonce, &xattr_value_aad(Layout::V3, &id, &cipher), b"newer");
    fsetxattr(fd, &new_a2, &sealed, 0).unwrap();
    assert!(has_xattr(fd, &old_a2));
    assert_eq!(v.xattr_get(fd, &id, b"user.a2").unwrap().unwrap(), b"newer");
    let listed = v.xattr_list(fd, &id).unwrap();
    assert_eq!(listed.iter().filter(|n| *n == b"user.a2").count(), 1);
    v.xattr_remove(fd, &id, b"user.a2").unwrap();
    assert!(!has_xattr(fd, &old_a2) && !has_xattr(fd, &new_a2));
    assert_eq!(v.xattr_get(fd, &id, b"user.a2").unwrap(), None);

    // A truncation to 0 (new file ID) reseals every xattr under the new epoch.
    let (old_big, _) = xattr_backing(&old.set, b"user.big");
    assert!(has_xattr(fd, &old_big));
    v.set_len(&f, 0).unwrap();
    let id = f.header().unwrap().unwrap().file_id;
    let mut listed = v.xattr_list(fd, &id).unwrap();
    listed.sort();
    let want: Vec<Vec<u8>> = ["user.a0", "user.a3", "user.a4", "user.a5", "user.a6", "user.big"]
        .iter()
        .map(|n| n.as_bytes().to_vec())
        .collect();
    assert_eq!(listed, want);
    assert_eq!(v.xattr_get(fd, &id, b"user.big").unwrap().unwrap(), [b'b'; 300]);
    assert_eq!(v.xattr_get(fd, &id, b"user.a4").unwrap().unwrap(), b"v4");
    assert!(!has_xattr(fd, &old_big) && !has_xattr(fd, PACK_BACKING_NAME.as_bytes()));

    // A new file's xattrs: singles under the new epoch, then a pack3.
    let (cn, _) = v.lookup(&root, b"new.txt").unwrap();
    let f = v.open_file(&root, &cn.entry, true).unwrap();
    f.write_at(b"n", 0).unwrap();
    let nfd = f.backing().as_raw_fd();
    let nid = f.header().unwrap().unwrap().file_id;
    for i in 0..6 {
        v.xattr_set(nfd, &nid, format!("user.n{i}").as_bytes(), b"nv", 0)
            .unwrap();
    }
    assert!(has_xattr(nfd, &xattr_backing(&new.set, b"user.n0").0));
    assert!(!has_xattr(nfd, PACK_BACKING_NAME.as_bytes()));
    assert!(has_xattr(nfd, PACK3_BACKING_NAME.as_bytes()));
    assert_eq!(v.xattr_list(nfd, &nid).unwrap().len(), 6);

    // Renaming onto a name of the old epoch replaces that entry.
    v.rename(&root, b"new.txt", &root, b"short.txt", 0).unwrap();
    assert_eq!(read_all(&v, &root, b"short.txt"), b"n");
    assert!(v.lookup(&root, b"new.txt").is_err());

    let report = fsck(&v, false, &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
}

/// A vault that holds only the new epoch reads none of the old epoch's names, targets or
/// xattrs: they are not found or are damage (EIO), never other bytes.
#[test]
fn objects_of_an_epoch_the_vault_lacks_do_not_open() {
    let tmp = init();
    write_old_tree(tmp.path());
    let old = old_epoch();
    let params = VaultParams::default();
    let v = open_epochs(tmp.path(), vec![new_epoch()]);
    let root = v.root_dir().unwrap();
    assert!(sorted_names(&v, &root).is_empty());
    assert_eq!(v.lookup(&root, b"short.txt").unwrap_err().errno(), libc::ENOENT);
    assert_eq!(v.lookup(&root, &LONG_FILE).unwrap_err().errno(), libc::ENOENT);
    for plain in [&b"ln"[..], b"lnbig", &LONG_LINK] {
        let entry = cipher_name_for(&old.set, &params, &root.iv, plain).unwrap().entry;
        let e = v.readlink(&root, &entry).unwrap_err();
        assert!(e.is_corrupt(), "{e}");
        assert_eq!(e.errno(), libc::EIO);
    }
    let entry = cipher_name_for(&old.set, &params, &root.iv, b"short.txt")
        .unwrap()
        .entry;
    let f = std::fs::File::open(tmp.path().join(std::str::from_utf8(&entry).unwrap())).unwrap();
    assert!(v.xattr_list(f.as_raw_fd(), &[0; 16]).unwrap().is_empty());
    let report = fsck(&v, false, &mut |_| {}).unwrap();
    // Every entry of the root is reported by its backing path, as any name that opens under
    // no key is.
    let names: Vec<_> = report.damage.iter().filter(|d| d.kind == DamageKind::Name).collect();
    assert!(names.len() >= 6, "{:?}", report.damage);
    assert!(names.iter().all(|d| d.plain_path.is_none()), "{names:?}");
}

/// A layout-3 target whose nonce's epoch bytes are changed opens under no epoch (EIO, and
/// fsck reports it); a layout-1 target whose random nonce starts with the layout-3 epoch's ID
/// still opens under the layout-1 key.
#[test]
fn symlink_nonce_epoch_bytes() {
    let tmp = init();
    let v = open_epochs(tmp.path(), vec![old_epoch(), new_epoch()]);
    let old = old_epoch();
    let params = VaultParams::default();
    let root = v.root_dir().unwrap();

    let cn = v.symlink(&root, b"flip", b"flip-target").unwrap();
    let mut sealed = sealed_target(&root, &cn.entry);
    for i in 0..4 {
        sealed[i] ^= 0x80;
        root.fd.unlink(&cn.entry).unwrap();
        root.fd.symlink(names::encode(&sealed).as_bytes(), &cn.entry).unwrap();
        let e = v.readlink(&root, &cn.entry).unwrap_err();
        assert_eq!(e.errno(), libc::EIO, "byte {i}");
        sealed[i] ^= 0x80;
    }
    sealed[0] ^= 0x80;
    root.fd.unlink(&cn.entry).unwrap();
    root.fd.symlink(names::encode(&sealed).as_bytes(), &cn.entry).unwrap();
    let report = fsck(&v, false, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert_eq!(report.damage[0].kind, DamageKind::Symlink);
    root.fd.unlink(&cn.entry).unwrap();

    let mut nonce = [0x5a; 16];
    nonce[..4].copy_from_slice(&NEW_ID.0);
    let sealed = old
        .set
        .symlinks
        .seal_with_nonce_to_vec(&nonce, SYMLINK_AAD, b"tricky target");
    let entry = cipher_name_for(&old.set, &params, &root.iv, b"tricky").unwrap().entry;
    root.fd.symlink(names::encode(&sealed).as_bytes(), &entry).unwrap();
    assert_eq!(read_link(&v, &root, b"tricky"), b"tricky target");
    assert!(fsck(&v, false, &mut |_| {}).unwrap().is_clean());
}
