//! The conditions of users' machines that a root CI on ext4 does not have: hostile entries in
//! CIPHERDIR (FIFOs where coffer expects files), low descriptor limits, deep trees, names that
//! go while a file is open, and memory after the kernel forgets inodes.

mod common;

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use common::TestMount;

/// Runs `f` on its own thread; fails the test if it has not returned within `limit` (a
/// blocked daemon thread would otherwise hang the test until the watchdog).
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: still blocked after {limit:?}"))
}

fn mkfifo(p: &Path) {
    let c = CString::new(p.as_os_str().as_bytes()).unwrap();
    // SAFETY: valid C string.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0, "mkfifo {}", p.display());
}

/// The backing directories directly in `dir` (encrypted names).
fn backing_subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    v.sort();
    v
}

#[test]
fn a_fifo_where_coffer_expects_a_file_is_damage_not_a_hang() {
    let Some(mut m) = TestMount::new() else { return };
    std::fs::create_dir(m.path("d")).unwrap();
    std::fs::write(m.path("d/f"), b"hello").unwrap();
    let long = "L".repeat(200);
    std::fs::write(m.path(&long), b"long").unwrap();
    let dirs = backing_subdirs(&m.cipher);
    assert_eq!(dirs.len(), 1);
    // The directory's IV becomes a FIFO.
    let diriv = dirs[0].join("coffer.diriv");
    std::fs::remove_file(&diriv).unwrap();
    mkfifo(&diriv);
    // The long name's sidecar becomes a FIFO.
    let sidecar = std::fs::read_dir(&m.cipher)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".name"))
        .expect("a long-name sidecar");
    std::fs::remove_file(&sidecar).unwrap();
    mkfifo(&sidecar);
    m.remount();

    // Eight listings at once: before the fix each blocked a daemon thread for good.
    let mut waits = Vec::new();
    for _ in 0..8 {
        let d = m.path("d");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(std::fs::read_dir(&d).and_then(|it| it.collect::<Result<Vec<_>, _>>()));
        });
        waits.push(rx);
    }
    for rx in waits {
        let r = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("listing a directory whose diriv is a FIFO blocked");
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EIO));
    }
    // The listing cannot read the long name's sidecar: the entry is left out (a lookup by
    // the name itself needs no sidecar and still finds the file).
    let root = m.path("");
    let names = within(Duration::from_secs(10), "root listing", move || {
        std::fs::read_dir(root)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect::<Vec<_>>()
    });
    assert!(!names.iter().any(|n| n.len() == 200), "{names:?}");
    let lp = m.path(&long);
    let r = within(Duration::from_secs(10), "long-name read", move || std::fs::read(lp));
    assert_eq!(r.unwrap(), b"long");
    // The mount still serves everything else.
    std::fs::write(m.path("g"), b"ok").unwrap();
    assert_eq!(std::fs::read(m.path("g")).unwrap(), b"ok");

    // Offline tools: fsck reports both entries as damaged and returns.
    let cipher = m.cipher.clone();
    let report = within(Duration::from_secs(20), "fsck", move || {
        let v = coffer::vault::Vault::unlock(&cipher, None, common::PASSWORD, true).unwrap();
        coffer::vault::fsck::fsck(&v, false, &mut |_| {}).unwrap()
    });
    assert!(!report.is_clean());
    let text = format!("{report:?}");
    assert!(text.contains("FIFO"), "{text}");
}
