//! Basic FUSE mount behaviour: files, directories, attributes, persistence across remounts.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
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
