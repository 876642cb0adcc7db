//! Nothing the mount writes into CIPHERDIR reveals plaintext: every byte of every backing file,
//! every backing name, symlink target and xattr is searched for the plaintext names and a
//! marker string written through the mount.

use crate::support::common;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::Path;

use common::{set_xattr, TestMount};

const MARKER: &[u8] = b"PLAINTEXT-MARKER-7f3a9c";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Every byte CIPHERDIR holds: names, contents, symlink targets, xattr names and values.
fn all_bytes(dir: &Path, out: &mut Vec<u8>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        out.extend_from_slice(e.file_name().as_bytes());
        out.push(b'\n');
        let m = fs::symlink_metadata(&p).unwrap();
        if m.file_type().is_symlink() {
            out.extend_from_slice(fs::read_link(&p).unwrap().as_os_str().as_bytes());
            continue;
        }
        for name in xattr_names(&p) {
            out.extend_from_slice(&name);
            out.extend_from_slice(&xattr_value(&p, &name));
        }
        if m.is_dir() {
            all_bytes(&p, out);
        } else if m.is_file() {
            out.extend_from_slice(&fs::read(&p).unwrap());
        }
    }
}

fn xattr_names(p: &Path) -> Vec<Vec<u8>> {
    let c = common::cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C string, writable buffer.
    let n = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if n <= 0 {
        return Vec::new();
    }
    buf.truncate(n as usize);
    buf.split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn xattr_value(p: &Path, name: &[u8]) -> Vec<u8> {
    let c = common::cpath(p);
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings, writable buffer.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    buf.truncate(r.max(0) as usize);
    buf
}

#[test]
fn cipherdir_reveals_no_plaintext() {
    let Some(mut m) = TestMount::new() else { return };
    let names = [
        "secret-report-alpha".to_string(),
        "hidden-folder-bravo".to_string(),
        format!("long-confidential-charlie-{}", "z".repeat(200)),
        "symlink-delta".to_string(),
    ];
    let mut content = Vec::new();
    for i in 0..500 {
        content.extend_from_slice(MARKER);
        content.extend_from_slice(format!(" line {i}\n").as_bytes());
    }
    fs::write(m.path(&names[0]), &content).unwrap();
    fs::create_dir(m.path(&names[1])).unwrap();
    fs::write(m.path(format!("{}/{}", names[1], names[2])), MARKER).unwrap();
    symlink(std::str::from_utf8(MARKER).unwrap(), m.path(&names[3])).unwrap();
    symlink(
        format!("{}/{}", std::str::from_utf8(MARKER).unwrap(), "x".repeat(3000)),
        m.path("long-link-echo"),
    )
    .unwrap();
    // Without backing xattrs (ramfs) the mount stores none.
    if common::user_xattrs_supported(&m.cipher) {
        set_xattr(&m.path(&names[0]), "user.marker-name-foxtrot", MARKER, 0).unwrap();
        set_xattr(&m.path(&names[1]), "user.marker-name-foxtrot", MARKER, 0).unwrap();
    }
    // A small write, a rewrite in the middle, a rename and a truncate: every path that writes.
    fs::write(m.path("tiny-golf"), MARKER).unwrap();
    fs::rename(m.path("tiny-golf"), m.path("renamed-hotel")).unwrap();
    let f = fs::OpenOptions::new().write(true).open(m.path(&names[0])).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, MARKER, 5000).unwrap();
    f.set_len(9000).unwrap();
    drop(f);
    m.unmount();

    let mut bytes = Vec::new();
    all_bytes(&m.cipher, &mut bytes);
    assert!(bytes.len() > 9000, "CIPHERDIR holds the data");
    assert!(!contains(&bytes, MARKER), "the marker appears in CIPHERDIR");
    for n in
        names
            .iter()
            .map(String::as_str)
            .chain(["long-link-echo", "marker-name-foxtrot", "renamed-hotel", "tiny-golf"])
    {
        let probe = &n.as_bytes()[..n.len().min(24)];
        assert!(!contains(&bytes, probe), "plaintext name {n:?} appears in CIPHERDIR");
    }
    m.remount();
    assert_eq!(fs::read(m.path(&names[0])).unwrap().len(), 9000);
}
