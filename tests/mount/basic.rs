//! Basic FUSE mount behaviour: files, directories, attributes, persistence across remounts.

use crate::support::common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use common::TestMount;

#[test]
fn write_read_list_remount() {
    let Some(mut m) = TestMount::new() else { return };
    fs::write(m.path("hello.txt"), b"hello world").unwrap();
    assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello world");
    assert_eq!(fs::metadata(m.path("hello.txt")).unwrap().len(), 11);
    fs::create_dir(m.path("dir")).unwrap();
    fs::write(m.path("dir/inner"), vec![7u8; 100_000]).unwrap();
    let mut names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, vec!["dir", "hello.txt"]);
    m.remount();
    assert_eq!(fs::read(m.path("hello.txt")).unwrap(), b"hello world");
    assert_eq!(fs::read(m.path("dir/inner")).unwrap(), vec![7u8; 100_000]);
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.path("dir/inner"))
        .unwrap();
    f.seek(SeekFrom::Start(5000)).unwrap();
    f.write_all(b"XYZ").unwrap();
    f.seek(SeekFrom::Start(4999)).unwrap();
    let mut b = [0u8; 5];
    f.read_exact(&mut b).unwrap();
    assert_eq!(&b, &[7, b'X', b'Y', b'Z', 7]);
    let md = fs::metadata(m.path("dir")).unwrap();
    assert!(md.is_dir());
    fs::set_permissions(m.path("hello.txt"), fs::Permissions::from_mode(0o600)).unwrap();
    assert_eq!(fs::metadata(m.path("hello.txt")).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn tampered_block_gives_eio_and_foreign_names_are_skipped() {
    let Some(mut m) = TestMount::new() else { return };
    fs::write(m.path("victim"), vec![3u8; 20_000]).unwrap();
    fs::write(m.path("fine"), b"fine").unwrap();
    m.unmount();
    let vault = coffer::vault::Vault::unlock(&m.cipher, None, common::PASSWORD, false).unwrap();
    let root = vault.root_dir().unwrap();
    let entry = vault.cipher_name(&root, b"victim").unwrap().entry;
    let backing = m.cipher.join(std::ffi::OsStr::from_bytes(&entry));
    let mut raw = fs::read(&backing).unwrap();
    raw[18 + 4128 + 100] ^= 1; // a ciphertext byte of block 1
    fs::write(&backing, &raw).unwrap();
    fs::write(m.cipher.join("not-a-coffer-name.txt"), b"foreign").unwrap();
    m.remount();
    let f = fs::File::open(m.path("victim")).unwrap();
    let mut buf = vec![0u8; 4096];
    use std::os::unix::fs::FileExt;
    f.read_exact_at(&mut buf, 0).unwrap();
    let e = f.read_exact_at(&mut buf, 4096).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    let mut names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(
        names,
        vec!["fine", "victim"],
        "the foreign name is skipped, the listing works"
    );
}

#[test]
fn file_replaced_by_a_sync_client_gets_a_new_inode() {
    let Some(m) = TestMount::new() else { return };
    fs::write(m.path("a"), b"version A").unwrap();
    fs::write(m.path("b"), b"version B, longer").unwrap();
    let old_ino = fs::metadata(m.path("a")).unwrap().ino();
    let mut open_a = fs::File::open(m.path("a")).unwrap();
    // A sync client replaces a's backing file: temp file + rename (a new backing inode).
    let vault = coffer::vault::Vault::unlock(&m.cipher, None, common::PASSWORD, false).unwrap();
    let root = vault.root_dir().unwrap();
    let name = |p: &[u8]| {
        m.cipher
            .join(std::ffi::OsStr::from_bytes(&vault.cipher_name(&root, p).unwrap().entry))
    };
    let tmp = m.cipher.join(".sync-tmp");
    fs::copy(name(b"b"), &tmp).unwrap();
    fs::rename(&tmp, name(b"a")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1300)); // past the 1 s entry/attr TTL
    assert_eq!(fs::read(m.path("a")).unwrap(), b"version B, longer");
    assert_ne!(
        fs::metadata(m.path("a")).unwrap().ino(),
        old_ino,
        "a new backing object, a new inode"
    );
    let mut s = Vec::new();
    open_a.read_to_end(&mut s).unwrap();
    assert_eq!(s, b"version A", "the open handle keeps the file it opened");
}

#[test]
fn directory_without_diriv_is_listed_but_not_written() {
    let Some(m) = TestMount::new() else { return };
    let vault = coffer::vault::Vault::unlock(&m.cipher, None, common::PASSWORD, false).unwrap();
    let root = vault.root_dir().unwrap();
    let entry = vault.cipher_name(&root, b"no-iv").unwrap().entry;
    // A directory that appeared in CIPHERDIR without its coffer.diriv (e.g. half-synced).
    fs::create_dir(m.cipher.join(std::ffi::OsStr::from_bytes(&entry))).unwrap();
    let names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, vec!["no-iv"]);
    let e = fs::write(m.path("no-iv/f"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    assert!(
        !m.cipher
            .join(std::ffi::OsStr::from_bytes(&entry))
            .join("coffer.diriv")
            .exists(),
        "no diriv manufactured"
    );
}

/// CIPHERDIR and the mountpoint live in TMPDIR, on its file system (so `TMPDIR=/on/xfs`
/// runs a suite on xfs), and the test mount removes them when dropped.
#[test]
fn the_test_mount_lives_in_tmpdir_and_cleans_up() {
    let Some(m) = TestMount::new() else { return };
    let tmp = std::env::temp_dir();
    assert!(
        m.cipher.starts_with(&tmp),
        "{} not in {}",
        m.cipher.display(),
        tmp.display()
    );
    assert!(m.mnt.starts_with(&tmp), "{} not in {}", m.mnt.display(), tmp.display());
    let fs_type = |p: &std::path::Path| {
        let mut st: libc::statfs = unsafe { std::mem::zeroed() };
        // SAFETY: valid C string and out pointer.
        common::cvt(unsafe { libc::statfs(common::cpath(p).as_ptr(), &mut st) }).unwrap();
        st.f_type
    };
    assert_eq!(
        fs_type(&m.cipher),
        fs_type(&tmp),
        "CIPHERDIR is on TMPDIR's file system"
    );
    fs::write(m.path("f"), b"data").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    let base = m.cipher.parent().unwrap().to_path_buf();
    drop(m);
    assert!(!base.exists(), "{} left behind", base.display());
}
