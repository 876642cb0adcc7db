//! Moving a vault to its newest key epoch (the walk of `coffer rekey`): every name, file,
//! symlink target and xattr written under a layout-1 epoch reads back the same after the walk
//! with the newest epoch's key alone; holes, sizes, modes and times stay; a second walk finds
//! nothing; a walk stopped half way is finished by walking again; a hard-linked file is left
//! and reported, not split.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::support::epochs;
use coffer::format::config::VaultParams;
use coffer::format::epochs::EpochId;
use coffer::format::header::FILE_V3;
use coffer::vault::migrate::{Migration, Mode};
use coffer::vault::{unlock, Dir, EpochKeys, KdfCost, Vault};

const OLD_KEY: [u8; 32] = [0x21; 32];
const NEW_KEY: [u8; 32] = [0x43; 32];
const OLD_ID: EpochId = EpochId([0xa1, 0x01, 0x01, 0x1a]);
const NEW_ID: EpochId = EpochId([0xa3, 0x03, 0x03, 0x3a]);

fn old_epoch() -> EpochKeys {
    epochs::layout1(OLD_KEY, OLD_ID)
}

fn new_epoch() -> EpochKeys {
    epochs::layout3(NEW_KEY, NEW_ID)
}

fn open(dir: &Path, list: Vec<EpochKeys>) -> Vault {
    epochs::open_with(dir, list)
}

fn write(v: &Vault, dir: &Dir, name: &[u8], parts: &[(u64, &[u8])]) {
    let (f, _) = v.create_file(dir, name, 0o640).unwrap();
    for (off, data) in parts {
        f.write_at(data, *off).unwrap();
    }
}

/// A tree of every kind of object, written with the old epoch alone.
fn populate(cipher: &Path) {
    let v = open(cipher, vec![old_epoch()]);
    let root = v.root_dir().unwrap();
    let long = vec![b'L'; 200];
    write(&v, &root, b"small.txt", &[(0, b"hello, epochs\n")]);
    let blocks: Vec<u8> = (0..20_000u32).map(|i| (i * 7 % 251) as u8).collect();
    write(
        &v,
        &root,
        b"holey.bin",
        &[(0, &blocks), (400_000, b"tail after a hole")],
    );
    write(&v, &root, &long, &[(0, b"a file with a long name")]);
    v.create_file(&root, b"empty", 0o600).unwrap();
    v.symlink(&root, b"short-link", b"small.txt").unwrap();
    let far = format!("{}/target", "d".repeat(3500));
    v.symlink(&root, b"long-link", far.as_bytes()).unwrap();
    v.mkdir(&root, b"sub", 0o750).unwrap();
    let sub = v.open_dir_path(b"sub").unwrap();
    v.mkdir(&sub, b"deeper", 0o700).unwrap();
    let deeper = v.open_dir_path(b"sub/deeper").unwrap();
    write(&v, &deeper, b"inner.txt", &[(0, b"deep inside")]);
    v.symlink(&deeper, &long, b"../../small.txt").unwrap();
    // xattrs: several small ones (a pack forms) and a large one on a file, one on a directory.
    let (cn, _) = v.lookup(&root, b"small.txt").unwrap();
    let f = v.open_file(&root, &cn.entry, true).unwrap();
    let owner = f.ensure_header().unwrap().file_id;
    for i in 0..6 {
        let name = format!("user.tag{i}");
        v.xattr_set(
            f.backing().as_raw_fd(),
            &owner,
            name.as_bytes(),
            format!("value {i}").as_bytes(),
            0,
        )
        .unwrap();
    }
    v.xattr_set(f.backing().as_raw_fd(), &owner, b"user.big", &[9u8; 2000], 0)
        .unwrap();
    v.xattr_set(sub.fd.as_raw_fd(), &sub.iv, b"user.dir-note", b"on a directory", 0)
        .unwrap();
}

/// Everything a user sees: per path, the kind and content (file bytes, link target, xattrs).
fn snapshot(v: &Vault) -> BTreeMap<Vec<u8>, String> {
    let mut out = BTreeMap::new();
    walk(v, &v.root_dir().unwrap(), Vec::new(), &mut out);
    out
}

fn walk(v: &Vault, dir: &Dir, path: Vec<u8>, out: &mut BTreeMap<Vec<u8>, String>) {
    let dir_x = xattrs(v, dir.fd.as_raw_fd(), &dir.iv);
    out.insert([path.clone(), b"/".to_vec()].concat(), format!("dir {dir_x:?}"));
    for e in v.list(dir).unwrap() {
        let p = if path.is_empty() {
            e.plain.clone()
        } else {
            [path.clone(), b"/".to_vec(), e.plain.clone()].concat()
        };
        let st = dir.fd.stat(&e.backing).unwrap();
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => walk(v, &dir.open_child(v, &e.backing).unwrap(), p, out),
            libc::S_IFLNK => {
                out.insert(p, format!("link {:?}", v.readlink(dir, &e.backing).unwrap()));
            }
            _ => {
                let f = v.open_file(dir, &e.backing, false).unwrap();
                let len = f.plain_len().unwrap();
                let mut buf = vec![0u8; len as usize];
                assert_eq!(f.read_at(&mut buf, 0).unwrap() as u64, len);
                let owner = f.header().unwrap().map_or([0; 16], |h| h.file_id);
                let x = xattrs(v, f.backing().as_raw_fd(), &owner);
                out.insert(
                    p,
                    format!("file mode {:o} len {len} {:x?} {x:?}", st.st_mode & 0o7777, &buf),
                );
            }
        }
    }
}

fn xattrs(v: &Vault, fd: i32, owner: &[u8; 16]) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut out = BTreeMap::new();
    for n in v.xattr_list(fd, owner).unwrap() {
        let val = v.xattr_get(fd, owner, &n).unwrap().unwrap();
        out.insert(n, val);
    }
    out
}

fn migrate(v: &Vault, mode: Mode) -> Migration {
    v.migrate_to_newest(mode, &mut |_| {}).unwrap()
}

#[test]
fn a_walk_moves_every_object_to_the_newest_epoch_and_the_old_key_is_no_longer_needed() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path();
    unlock::init(cipher, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    populate(cipher);
    let before = snapshot(&open(cipher, vec![old_epoch()]));
    let both = open(cipher, vec![old_epoch(), new_epoch()]);
    assert_eq!(snapshot(&both), before, "the old objects read with both epochs");
    let (holey_stat, _) = {
        let root = both.root_dir().unwrap();
        let (cn, st) = both.lookup(&root, b"holey.bin").unwrap();
        (st, cn)
    };

    let plan = migrate(&both, Mode::Plan);
    // small, holey, long-named, inner: the empty file has nothing sealed.
    assert_eq!(plan.files, 4, "{plan:?}");
    assert_eq!(plan.bytes, 14 + 400_017 + 23 + 11, "{plan:?}");
    assert_eq!(plan.symlinks, 3, "{plan:?}");
    // Every entry but the root: 5 files, 3 symlinks, 2 directories.
    assert_eq!(plan.names, 10, "{plan:?}");
    assert_eq!(plan.dir_xattrs, 1, "{plan:?}");
    assert!(plan.left.is_empty(), "{plan:?}");
    assert_eq!(snapshot(&both), before, "a plan changes nothing");

    let done = migrate(&both, Mode::Move);
    assert_eq!(
        (done.files, done.bytes, done.symlinks, done.names, done.dir_xattrs),
        (plan.files, plan.bytes, plan.symlinks, plan.names, plan.dir_xattrs)
    );
    assert!(done.left.is_empty(), "{done:?}");
    assert_eq!(migrate(&both, Mode::Plan).moved(), 0, "a second walk finds nothing");

    // The newest epoch alone reads everything, as it was.
    let new_only = open(cipher, vec![new_epoch()]);
    assert_eq!(snapshot(&new_only), before);
    // ... and the old key alone reads nothing any more.
    let old_only = open(cipher, vec![old_epoch()]);
    assert!(old_only.list(&old_only.root_dir().unwrap()).unwrap().is_empty());

    // Files are version 3 of the new epoch; the hole and the times stayed.
    let root = new_only.root_dir().unwrap();
    let (cn, st) = new_only.lookup(&root, b"holey.bin").unwrap();
    let f = new_only.open_file(&root, &cn.entry, false).unwrap();
    let h = f.header().unwrap().unwrap();
    assert_eq!((h.version, h.epoch_id()), (FILE_V3, Some(NEW_ID)));
    assert_eq!(st.st_size, holey_stat.st_size, "same backing size");
    assert!(
        st.st_blocks < holey_stat.st_size / 512,
        "the hole stayed a hole: {} blocks",
        st.st_blocks
    );
    assert_eq!(f.seek_data_hole(0, false).unwrap(), Some(20_480));
    assert_eq!(
        (st.st_mtime, st.st_mtime_nsec),
        (holey_stat.st_mtime, holey_stat.st_mtime_nsec)
    );
    assert_eq!(st.st_mode, holey_stat.st_mode);
}

#[test]
fn a_walk_stopped_half_way_is_finished_by_walking_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path();
    unlock::init(cipher, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    populate(cipher);
    let before = snapshot(&open(cipher, vec![old_epoch()]));
    let both = open(cipher, vec![old_epoch(), new_epoch()]);
    // Stop (as Ctrl-C would) after the first few objects.
    let stopped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        both.migrate_to_newest(Mode::Move, &mut |m| assert!(m.moved() < 4, "stop here"))
    }));
    assert!(stopped.is_err());
    assert_eq!(snapshot(&both), before, "half way, everything reads");
    let rest = migrate(&both, Mode::Plan);
    assert!(rest.moved() > 0 && rest.moved() < 18, "{rest:?}");
    let done = migrate(&both, Mode::Move);
    assert_eq!(done.moved(), rest.moved());
    assert_eq!(snapshot(&open(cipher, vec![new_epoch()])), before);
}

#[test]
fn a_hard_linked_file_is_sealed_once_and_keeps_its_links() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path();
    unlock::init(cipher, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let old = open(cipher, vec![old_epoch()]);
    let root = old.root_dir().unwrap();
    write(&old, &root, b"one", &[(0, b"shared")]);
    old.mkdir(&root, b"sub", 0o700).unwrap();
    let sub = old.open_dir_path(b"sub").unwrap();
    let (cn, _) = old.lookup(&root, b"one").unwrap();
    old.link(&root, &cn.entry, &root, b"two").unwrap();
    old.link(&root, &cn.entry, &sub, b"three").unwrap();
    let before = snapshot(&old);
    let both = open(cipher, vec![old_epoch(), new_epoch()]);
    let plan = migrate(&both, Mode::Plan);
    assert_eq!((plan.files, plan.bytes, plan.links), (1, 6, 2), "{plan:?}");
    let done = migrate(&both, Mode::Move);
    assert_eq!((done.files, done.links), (1, 2), "{done:?}");
    assert!(done.left.is_empty(), "{done:?}");
    assert_eq!(migrate(&both, Mode::Plan).moved(), 0);
    let new_only = open(cipher, vec![new_epoch()]);
    assert_eq!(snapshot(&new_only), before);
    let root = new_only.root_dir().unwrap();
    let sub = new_only.open_dir_path(b"sub").unwrap();
    let inode = |d: &Dir, n: &[u8]| {
        let (_, st) = new_only.lookup(d, n).unwrap();
        (st.st_ino, st.st_nlink)
    };
    let one = inode(&root, b"one");
    assert_eq!(one.1, 3, "the new copy has all three names");
    assert_eq!(inode(&root, b"two"), one);
    assert_eq!(inode(&sub, b"three"), one);
}

/// A vault with file "one" linked as "two" (root) and "sub/three", written with the old epoch
/// alone, and a walk stopped (by its guard) after the names in "sub" were moved but before
/// those in the root were: "sub/three" is on the new copy, "one" and "two" on the old one.
fn stopped_between_the_names_of_a_linked_file(cipher: &Path) -> Vault {
    unlock::init(cipher, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let old = open(cipher, vec![old_epoch()]);
    let root = old.root_dir().unwrap();
    write(&old, &root, b"one", &[(0, b"shared")]);
    write(&old, &root, b"alone", &[(0, b"a file of its own")]);
    old.mkdir(&root, b"sub", 0o700).unwrap();
    let sub = old.open_dir_path(b"sub").unwrap();
    let (cn, _) = old.lookup(&root, b"one").unwrap();
    old.link(&root, &cn.entry, &root, b"two").unwrap();
    old.link(&root, &cn.entry, &sub, b"three").unwrap();
    let both = open(cipher, vec![old_epoch(), new_epoch()]);
    // The guard is asked at the start, before entering "sub", before sub's batch of renames
    // and before the root's: the fourth time it stops the walk.
    let mut asked = 0;
    let stopped = both.migrate_watched(Mode::Move, &mut |_| {}, &mut || {
        asked += 1;
        if asked == 4 {
            Err(coffer::vault::VaultError::Unsupported("stopped by the test"))
        } else {
            Ok(())
        }
    });
    assert!(stopped.is_err(), "{stopped:?}");
    let sub = both.open_dir_path(b"sub").unwrap();
    let root = both.root_dir().unwrap();
    let ino = |d: &Dir, n: &[u8]| both.lookup(d, n).unwrap().1.st_ino;
    assert_ne!(
        ino(&sub, b"three"),
        ino(&root, b"one"),
        "the walk stopped between the names"
    );
    assert_eq!(ino(&root, b"two"), ino(&root, b"one"));
    both
}

/// Names of coffer's temporaries in the root of `cipher`.
fn temporaries(cipher: &Path) -> Vec<String> {
    std::fs::read_dir(cipher)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".coffer-tmp-"))
        .collect()
}

/// A walk stopped between the names of a hard-linked file (a crash, Ctrl-C) leaves the new
/// copy kept under a name of its own; the next walk points the remaining names at it, so the
/// file ends with all its names on one copy again, and the kept copy is gone. fsck of the
/// stopped state reports nothing.
#[test]
fn a_walk_stopped_between_the_names_of_a_hard_linked_file_links_them_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path();
    let both = stopped_between_the_names_of_a_linked_file(cipher);
    let report = coffer::vault::fsck::fsck(&both, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{report:?}");
    let done = migrate(&both, Mode::Move);
    assert!(done.left.is_empty(), "{done:?}");
    assert_eq!((done.files, done.links), (1, 2), "only 'alone' is sealed: {done:?}");
    assert_eq!(migrate(&both, Mode::Plan).moved(), 0);
    assert_eq!(temporaries(cipher), Vec::<String>::new());
    let new_only = open(cipher, vec![new_epoch()]);
    let root = new_only.root_dir().unwrap();
    let sub = new_only.open_dir_path(b"sub").unwrap();
    let inode = |d: &Dir, n: &[u8]| {
        let (_, st) = new_only.lookup(d, n).unwrap();
        (st.st_ino, st.st_nlink)
    };
    let one = inode(&root, b"one");
    assert_eq!(one.1, 3, "one copy with all three names");
    assert_eq!(inode(&root, b"two"), one);
    assert_eq!(inode(&sub, b"three"), one);
    let snap = snapshot(&new_only);
    let shared = format!("{:02x?}", b"shared");
    for n in [&b"one"[..], b"two", b"sub/three"] {
        assert!(snap[n].contains(&shared), "{}: {}", String::from_utf8_lossy(n), snap[n]);
    }
}

/// When, after such a stop, the old copy is written through one of its names, the kept copy
/// no longer matches it: the next walk seals the old copy afresh, and each copy keeps what
/// was written to it (the names stay on two files, as they were since the write).
#[test]
fn a_kept_copy_that_no_longer_matches_is_not_linked_over_new_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path();
    let both = stopped_between_the_names_of_a_linked_file(cipher);
    let root = both.root_dir().unwrap();
    let (cn, _) = both.lookup(&root, b"one").unwrap();
    both.open_file(&root, &cn.entry, true)
        .unwrap()
        .write_at(b"SHARED", 0)
        .unwrap();
    let done = migrate(&both, Mode::Move);
    assert!(done.left.is_empty(), "{done:?}");
    assert_eq!(temporaries(cipher), Vec::<String>::new());
    let new_only = open(cipher, vec![new_epoch()]);
    let root = new_only.root_dir().unwrap();
    let sub = new_only.open_dir_path(b"sub").unwrap();
    let read = |d: &Dir, n: &[u8]| {
        let (cn, _) = new_only.lookup(d, n).unwrap();
        let f = new_only.open_file(d, &cn.entry, false).unwrap();
        let mut buf = vec![0u8; 64];
        let got = f.read_at(&mut buf, 0).unwrap();
        buf.truncate(got);
        buf
    };
    assert_eq!(read(&root, b"one"), b"SHARED");
    assert_eq!(read(&root, b"two"), b"SHARED");
    assert_eq!(read(&sub, b"three"), b"shared");
}
