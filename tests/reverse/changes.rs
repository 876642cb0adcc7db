//! Reverse mode while the plain tree changes under a live mount: an in-place edit with the
//! mtime restored (touch -r) changes exactly that block's nonce; a file that changes while it
//! is read gives EIO; a fresh open after the change reads the new content.

use crate::support::common;
use crate::support::data::bytes;
use crate::support::reverse as reverse_util;

use std::ffi::OsStr;
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use reverse_util::*;

const HEADER: usize = 18;
const CBLOCK: usize = 4128;

fn nonces(cipher: &[u8]) -> Vec<Vec<u8>> {
    cipher[HEADER..].chunks(CBLOCK).map(|b| b[..16].to_vec()).collect()
}

/// Past the entry and attribute timeout, so the kernel asks again.
fn settle() {
    std::thread::sleep(Duration::from_millis(1300));
}

#[test]
fn in_place_edit_with_restored_mtime_changes_only_that_blocks_nonce() {
    if !common::fuse_available() {
        return;
    }
    common::require_tool("touch");
    let tmp = tempfile::Builder::new().prefix("coffer-revc-").tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let data = bytes(7, 6 * 4096 + 300);
    std::fs::write(plain.join("f"), &data).unwrap();
    std::fs::write(plain.join("ref"), b"").unwrap();
    common::run(
        Path::new("."),
        "touch",
        &[
            OsStr::new("-r"),
            plain.join("f").as_os_str(),
            plain.join("ref").as_os_str(),
        ],
    );
    init_plain(&plain);
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let cname = cipher_path(&plain, b"f");
    let cpath = m.mnt.join(OsStr::from_bytes(&cname));
    let before = std::fs::read(&cpath).unwrap();
    assert_eq!(before.len(), HEADER + 6 * CBLOCK + 300 + 32);

    // Overwrite one byte of block 3 in place, then put the old mtime back.
    let f = std::fs::OpenOptions::new().write(true).open(plain.join("f")).unwrap();
    f.write_all_at(&[data[3 * 4096 + 10] ^ 0x55], 3 * 4096 + 10).unwrap();
    drop(f);
    common::run(
        Path::new("."),
        "touch",
        &[
            OsStr::new("-r"),
            plain.join("ref").as_os_str(),
            plain.join("f").as_os_str(),
        ],
    );
    settle();
    let after = std::fs::read(&cpath).unwrap();
    assert_eq!(after.len(), before.len());
    let (nb, na) = (nonces(&before), nonces(&after));
    for b in 0..nb.len() {
        assert_eq!(nb[b] != na[b], b == 3, "nonce of block {b}");
    }
    // The header (file ID from the path) and every other block are byte-identical.
    assert_eq!(before[..HEADER], after[..HEADER]);
    for b in [0usize, 1, 2, 4, 5, 6] {
        let r = HEADER + b * CBLOCK..(HEADER + (b + 1) * CBLOCK).min(before.len());
        assert_eq!(before[r.clone()], after[r], "block {b}");
    }
    // Editing the byte back restores the old block exactly (deterministic, content-bound).
    let f = std::fs::OpenOptions::new().write(true).open(plain.join("f")).unwrap();
    f.write_all_at(&[data[3 * 4096 + 10]], 3 * 4096 + 10).unwrap();
    drop(f);
    settle();
    assert_eq!(std::fs::read(&cpath).unwrap(), before);
}

#[test]
fn a_file_changing_during_a_read_gives_eio() {
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::Builder::new().prefix("coffer-revc-").tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    std::fs::write(plain.join("big"), bytes(11, 8 << 20)).unwrap();
    init_plain(&plain);
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let cpath = m.mnt.join(OsStr::from_bytes(&cipher_path(&plain, b"big")));
    let reader = std::fs::File::open(&cpath).unwrap();
    let mut buf = vec![0u8; 4096];
    reader.read_exact_at(&mut buf, 0).unwrap();

    // Same size, new content in place: only mtime/ctime move.
    let mut w = std::fs::OpenOptions::new().write(true).open(plain.join("big")).unwrap();
    w.write_all(b"changed").unwrap();
    drop(w);
    let r = reader.read_exact_at(&mut buf, 6 << 20);
    assert_eq!(common::errno(&r), Some(libc::EIO), "{r:?}");

    // Growing the file is caught too.
    drop(reader);
    settle();
    let reader = std::fs::File::open(&cpath).unwrap();
    reader.read_exact_at(&mut buf, 0).unwrap();
    let mut w = std::fs::OpenOptions::new()
        .append(true)
        .open(plain.join("big"))
        .unwrap();
    w.write_all(b"tail").unwrap();
    drop(w);
    let r = reader.read_exact_at(&mut buf, 5 << 20);
    assert_eq!(common::errno(&r), Some(libc::EIO), "{r:?}");
    drop(reader);

    // After the change settles, a new open reads a consistent copy that opens forward.
    settle();
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    common::require_tool("rsync");
    rsync(&m.mnt, &copy, &[]);
    drop(m);
    let f = mount_forward(&copy, &tmp.path().join("fwd"));
    assert_eq!(
        std::fs::read(f.path("big")).unwrap(),
        std::fs::read(plain.join("big")).unwrap()
    );
}

/// FORMAT.md G31: opening a FIFO through the library fails at once with EINVAL instead of
/// blocking until a writer appears.
#[test]
fn library_open_of_a_fifo_fails_without_blocking() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    init_plain(&plain);
    let fifo = plain.join("pipe");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let v = coffer::vault::reverse::ReverseVault::unlock(
        &plain,
        None,
        PASSWORD,
        coffer::vault::reverse::Excludes::default(),
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let root = v.root_dir().unwrap();
        let _ = tx.send(v.open_file(&root, b"pipe").map(drop).map_err(|e| e.errno()));
    });
    let r = rx.recv_timeout(Duration::from_secs(3));
    if r.is_err() {
        // Unblock the stuck open so the test process can end.
        let _ = std::fs::OpenOptions::new().write(true).open(&fifo);
    }
    assert_eq!(r.expect("open of a FIFO blocked"), Err(libc::EINVAL));
}
