//! Reverse mode over a folder that is being worked in: a file changed between its lookup and
//! its open is served as it is at open (and the kernel is told its new size); a file changed
//! during a read is served from its reflink copy where the plain filesystem has them (xfs,
//! btrfs);
//! rsync of the view while files are saved editor-style ends with 0 or 24, and with an
//! appending writer on ext4 reports only the appended files; the copies pass fsck and, once
//! the writer stops, a second rsync makes a copy whose forward mount equals the plain folder.

use crate::support::common;
use crate::support::data::bytes;
use crate::support::reverse as reverse_util;

use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::io::{Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use coffer::format::offsets::cipher_size;
use coffer::vault::Vault;
use reverse_util::*;

/// Past the entry and attribute timeout, so the kernel asks again.
fn settle() {
    std::thread::sleep(Duration::from_millis(1300));
}

fn tree(prefix: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::Builder::new().prefix(prefix).tempdir().unwrap();
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    (tmp, plain)
}

/// Checks the copy with the vault's fsck: every file authenticates.
fn assert_fsck_clean(copy: &Path) {
    let v = Vault::unlock(copy, None, PASSWORD, true).expect("unlock copy");
    let report = coffer::vault::fsck::fsck(&v, false, &mut |_| {}).expect("fsck");
    assert!(report.is_clean(), "fsck of the copy: {:?}", report.damage);
    assert!(report.files > 0);
}

#[test]
fn a_file_appended_after_its_lookup_is_served_as_it_is_at_open() {
    if !common::fuse_available() {
        return;
    }
    // Small (read whole at open) and large (read live on ext4, from a copy on xfs).
    for len in [10_000usize, 300_000] {
        appended_after_lookup(len, len / 2);
    }
}

fn appended_after_lookup(len: usize, more: usize) {
    let (tmp, plain) = tree("coffer-revl-");
    let v1 = bytes(1, len);
    std::fs::write(plain.join("f"), &v1).unwrap();
    init_plain(&plain);
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let cname = cipher_path(&plain, b"f");
    let cpath = m.mnt.join(OsStr::from_bytes(&cname));
    // Lookup and getattr: the kernel now holds version 1's size for the attribute timeout.
    assert_eq!(std::fs::metadata(&cpath).unwrap().len(), cipher_size(len as u64));

    let mut v2 = v1.clone();
    v2.extend_from_slice(&bytes(2, more));
    let mut w = std::fs::OpenOptions::new().append(true).open(plain.join("f")).unwrap();
    w.write_all(&v2[len..]).unwrap();
    drop(w);
    let new_size = cipher_size((len + more) as u64);

    let mut f = std::fs::File::open(&cpath).expect("open after a change since the lookup");
    assert_eq!(f.metadata().unwrap().len(), new_size, "fstat on the handle");
    let mut got = Vec::new();
    f.read_to_end(&mut got).expect("read after a change since the lookup");
    assert_eq!(got.len() as u64, new_size);
    drop(f);
    assert_eq!(std::fs::metadata(&cpath).unwrap().len(), new_size, "stat");

    // The bytes read are the encryption of the file as it was at open.
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    for virt in ["coffer.conf", "coffer.diriv"] {
        std::fs::write(copy.join(virt), std::fs::read(m.path(virt)).unwrap()).unwrap();
    }
    std::fs::write(copy.join(OsStr::from_bytes(&cname)), &got).unwrap();
    drop(m);
    let fwd = mount_forward(&copy, &tmp.path().join("fwd"));
    assert!(
        std::fs::read(fwd.path("f")).unwrap() == v2,
        "forward view of the copy ({len} bytes)"
    );
}

#[test]
fn a_file_changed_during_a_read_is_served_from_its_reflink_copy_on_xfs() {
    changed_during_a_read_on("mkfs.xfs");
}

#[test]
fn a_file_changed_during_a_read_is_served_from_its_reflink_copy_on_btrfs() {
    changed_during_a_read_on("mkfs.btrfs");
}

/// A plain folder on a fresh loop filesystem made by `mkfs`: an 8 MiB file rewritten in place
/// and appended to while a reader of its encrypted view has it open.
fn changed_during_a_read_on(mkfs: &str) {
    if !common::fuse_available() {
        return;
    }
    let Some(loopfs) = LoopFs::new(mkfs) else { return };
    let plain = loopfs.mnt.join("plain");
    std::fs::create_dir(&plain).unwrap();
    let big = bytes(11, 8 << 20);
    std::fs::write(plain.join("big"), &big).unwrap();
    init_plain(&plain);
    let names_before: BTreeSet<_> = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let tmp = tempfile::Builder::new().prefix("coffer-revl-").tempdir().unwrap();
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let cpath = m.mnt.join(OsStr::from_bytes(&cipher_path(&plain, b"big")));
    let whole = std::fs::read(&cpath).unwrap();

    let reader = std::fs::File::open(&cpath).unwrap();
    let mut buf = vec![0u8; 4096];
    reader.read_exact_at(&mut buf, 0).unwrap();
    // Rewritten in place and appended to while the reader has it open.
    let w = std::fs::OpenOptions::new().write(true).open(plain.join("big")).unwrap();
    w.write_all_at(b"changed", 6 << 20).unwrap();
    w.write_all_at(b"tail", 8 << 20).unwrap();
    drop(w);
    let mut rest = vec![0u8; 1 << 20];
    reader
        .read_exact_at(&mut rest, 6 << 20)
        .expect("read after a change during the read");
    assert!(rest[..] == whole[6 << 20..7 << 20], "the version at open");
    assert_eq!(reader.metadata().unwrap().len(), whole.len() as u64);
    let mut all = Vec::new();
    (&reader).read_to_end(&mut all).unwrap();
    assert!(all == whole, "the whole version at open");
    // The copy has no name: nothing new in the plain folder.
    let names: BTreeSet<_> = std::fs::read_dir(&plain)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, names_before);
    drop(reader);

    // A new open reads the new version.
    settle();
    let after = std::fs::read(&cpath).unwrap();
    assert_eq!(after.len() as u64, cipher_size((8 << 20) + 4));
    drop(m);
}

/// Saves `data` as `dir/name` the way editors do: a temporary file renamed over it.
fn editor_save(dir: &Path, name: &str, data: &[u8]) {
    let tmp = dir.join(format!(".{name}.swp"));
    std::fs::write(&tmp, data).unwrap();
    std::fs::rename(&tmp, dir.join(name)).unwrap();
}

/// Runs `work` on a thread until the returned guard is stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(mut work: impl FnMut(u64) + Send + 'static) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut k = 0;
            while !s.load(Ordering::SeqCst) {
                work(k);
                k += 1;
                std::thread::sleep(Duration::from_micros(300));
            }
            k
        });
        Writer {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the writer; returns how many steps it made.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().map(|t| t.join().unwrap()).unwrap_or(0)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// After the writer stopped: a second rsync succeeds, the copy passes fsck, and its forward
/// mount equals the plain folder.
fn second_rsync_matches(tmp: &Path, plain: &Path, m: &Mounted, copy: &Path) {
    settle();
    let (code, err) = rsync_status(&m.mnt, copy);
    assert_eq!(code, 0, "rsync after the writer stopped:\n{err}");
    assert_fsck_clean(copy);
    let fwd = mount_forward(copy, &tmp.join("fwd"));
    diff_tree(plain, &fwd.mnt);
}

#[test]
fn rsync_while_files_are_saved_editor_style_ends_with_0_or_24() {
    if !common::fuse_available() {
        return;
    }
    common::require_tool("rsync");
    common::require_tool("diff");
    let (tmp, plain) = tree("coffer-revl-");
    const FILES: u64 = 24;
    // Every save changes the size: rsync's quick check (size and mtime) cannot tell apart two
    // same-size versions saved within one timestamp tick, of a plain folder as of the view.
    let size = |i: u64, k: u64| (1000 + i * 7919 + k * 3) as usize;
    for i in 0..FILES {
        std::fs::write(plain.join(format!("doc-{i}")), bytes(i, size(i, 0))).unwrap();
    }
    init_plain(&plain);
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();

    let dir = plain.clone();
    let writer = Writer::start(move |k| {
        let i = k % FILES;
        editor_save(&dir, &format!("doc-{i}"), &bytes(k + 100, size(i, k)));
    });
    for round in 0..3 {
        let (code, err) = rsync_status(&m.mnt, &copy);
        eprintln!("round {round}: rsync exit {code}");
        assert!(code == 0 || code == 24, "round {round}: rsync exit {code}:\n{err}");
        assert_fsck_clean(&copy);
    }
    let saves = writer.stop();
    assert!(saves > FILES, "the writer saved only {saves} times");
    second_rsync_matches(tmp.path(), &plain, &m, &copy);
}

#[test]
fn rsync_while_a_writer_appends_reports_only_the_appended_files() {
    if !common::fuse_available() {
        return;
    }
    common::require_tool("rsync");
    common::require_tool("diff");
    let (tmp, plain) = tree("coffer-revl-");
    let names: Vec<String> = (0..12).map(|i| format!("data-{i}")).collect();
    for (i, n) in names.iter().enumerate() {
        std::fs::write(plain.join(n), bytes(i as u64, (256 << 10) + i * 65_537)).unwrap();
    }
    let appended = ["data-2", "data-7", "data-11"];
    init_plain(&plain);
    let cnames: Vec<String> = appended
        .iter()
        .map(|n| String::from_utf8(cipher_path(&plain, n.as_bytes())).unwrap())
        .collect();
    let m = mount_reverse(&plain, &tmp.path().join("rev"), &[]);
    let copy = tmp.path().join("copy");
    std::fs::create_dir(&copy).unwrap();

    let dir = plain.clone();
    let writer = Writer::start(move |k| {
        let name = appended[(k % appended.len() as u64) as usize];
        let mut f = std::fs::OpenOptions::new().append(true).open(dir.join(name)).unwrap();
        f.write_all(&bytes(k, 1000)).unwrap();
    });
    for round in 0..3 {
        let (code, err) = rsync_status(&m.mnt, &copy);
        eprintln!("round {round}: rsync exit {code}");
        assert!(code == 0 || code == 23, "round {round}: rsync exit {code}:\n{err}");
        for line in err.lines() {
            let about_appended = cnames.iter().any(|c| line.contains(c.as_str()));
            let summary = line.starts_with("rsync error: some files/attrs were not transferred");
            assert!(
                about_appended || summary,
                "round {round}: unexpected rsync message: {line}\n{err}"
            );
        }
        assert_fsck_clean(&copy);
    }
    writer.stop();
    second_rsync_matches(tmp.path(), &plain, &m, &copy);
}
