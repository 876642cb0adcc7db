//! Sync-client conflict copies made directly in CIPHERDIR, seen, read, renamed and deleted
//! through a real FUSE mount: every client's pattern for a short name, a long name (with and
//! without a copy of its sidecar) and a directory; duplicates; sync-client files hidden.

use crate::support::common;
use crate::support::sync as sync_util;

use std::fs;
use std::os::unix::ffi::OsStrExt;

use common::{copy_tree, TestMount};
use sync_util::{names, Backing};

/// (client, marker) as each client writes it into a name.
const MARKERS: &[(&str, &str)] = &[
    ("syncthing", ".sync-conflict-20261125-101010-ABCDEFG"),
    ("dropbox", " (Jo's conflicted copy 2026-11-25)"),
    ("nextcloud", " (conflicted copy 2026-11-25 101010)"),
    ("gdrive", " (1)"),
    ("onedrive", "-LAPTOP"),
    ("seafile", " (SFConflict jo@example.com 2026-11-25-10-10-10)"),
    ("owncloud", "_conflict-20261125-101010"),
];

/// A plaintext name long enough for the long-name form (over 134 bytes at the default limit).
fn long_name() -> String {
    format!("{}.txt", "a-long-plaintext-name-".repeat(7))
}

/// The plaintext name a copy shows as: the marker before the last `.` (not a leading one).
fn shown(plain: &str, marker: &str) -> String {
    match plain.rfind('.') {
        Some(p) if p > 0 => format!("{}{marker}{}", &plain[..p], &plain[p..]),
        _ => format!("{plain}{marker}"),
    }
}

/// The backing name a client gives a copy of `entry`: marker before the last `.`.
fn copy_name(entry: &str, marker: &str) -> String {
    match entry.rfind('.') {
        Some(p) => format!("{}{marker}{}", &entry[..p], &entry[p..]),
        None => format!("{entry}{marker}"),
    }
}

#[test]
fn every_client_pattern_for_short_long_and_directory_names() {
    let Some(m) = TestMount::new() else { return };
    let long = long_name();
    fs::write(m.path("report.txt"), b"original short").unwrap();
    fs::write(m.path(&long), b"original long").unwrap();
    fs::create_dir(m.path("photos")).unwrap();
    fs::write(m.path("photos/cat.jpg"), b"meow").unwrap();
    let b = Backing::open(&m.cipher);
    let short_e = b.entry("", "report.txt");
    let long_e = b.entry("", &long);
    assert!(long_e.ends_with(".long"), "{long_e}");
    let hash = long_e.trim_end_matches(".long").to_string();
    let dir_e = b.entry("", "photos");

    for (i, (client, marker)) in MARKERS.iter().enumerate() {
        // The other replica's version of each object, as the client stores it.
        let c = &m.cipher;
        fs::copy(c.join(&short_e), c.join(copy_name(&short_e, marker))).unwrap();
        fs::copy(c.join(&long_e), c.join(copy_name(&long_e, marker))).unwrap();
        if i % 2 == 0 {
            // Some clients also make a copy of the sidecar (it was written on both sides).
            let side = format!("{hash}.name");
            fs::copy(c.join(&side), c.join(copy_name(&side, marker))).unwrap();
        }
        copy_tree(&c.join(&dir_e), &c.join(copy_name(&dir_e, marker)));
        eprintln!("{client}: copies made");
    }
    // Past the entry TTL of the root listing the kernel may hold.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let listed = names(&m.mnt);
    for (client, marker) in MARKERS {
        for (plain, content) in [
            ("report.txt", &b"original short"[..]),
            (long.as_str(), b"original long"),
        ] {
            let want = shown(plain, marker);
            assert!(listed.contains(&want), "{client}: {want:?} not in {listed:?}");
            assert_eq!(fs::read(m.path(&want)).unwrap(), content, "{client}: {want}");
        }
        let d = shown("photos", marker);
        assert!(listed.contains(&d), "{client}: {d:?} not in {listed:?}");
        assert_eq!(names(&m.path(&d)), vec!["cat.jpg"], "{client}");
        assert_eq!(fs::read(m.path(&d).join("cat.jpg")).unwrap(), b"meow");
    }
    // Exactly the originals plus one of each per client: sidecar copies stay hidden.
    assert_eq!(listed.len(), 3 + 3 * MARKERS.len(), "{listed:?}");
    // fsck checks the copies like the entries and reports nothing.
    let report = coffer::vault::fsck::fsck(&b.vault, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
    assert_eq!(
        report.files,
        3 + 3 * MARKERS.len() as u64,
        "originals, copies and the files in the directory copies"
    );

    // Rename some, delete the rest, through the mount.
    for (i, (client, marker)) in MARKERS.iter().enumerate() {
        let s = shown("report.txt", marker);
        let l = shown(&long, marker);
        let d = shown("photos", marker);
        if i % 2 == 0 {
            fs::rename(m.path(&s), m.path(format!("kept-{client}.txt"))).unwrap();
            fs::rename(m.path(&l), m.path(format!("kept-long-{client}.txt"))).unwrap();
            fs::rename(m.path(&d), m.path(format!("kept-dir-{client}"))).unwrap();
            assert_eq!(
                fs::read(m.path(format!("kept-{client}.txt"))).unwrap(),
                b"original short"
            );
            assert_eq!(
                fs::read(m.path(format!("kept-long-{client}.txt"))).unwrap(),
                b"original long"
            );
            assert_eq!(fs::read(m.path(format!("kept-dir-{client}/cat.jpg"))).unwrap(), b"meow");
        } else {
            fs::remove_file(m.path(&s)).unwrap();
            fs::remove_file(m.path(&l)).unwrap();
            fs::remove_dir_all(m.path(&d)).unwrap();
        }
    }
    let mut want: Vec<String> = vec!["photos".into(), "report.txt".into(), long.clone()];
    for (i, (client, _)) in MARKERS.iter().enumerate() {
        if i % 2 == 0 {
            want.push(format!("kept-{client}.txt"));
            want.push(format!("kept-long-{client}.txt"));
            want.push(format!("kept-dir-{client}"));
        }
    }
    want.sort();
    assert_eq!(names(&m.mnt), want);
    // The originals still read, and nothing coffer does not know is left behind.
    assert_eq!(fs::read(m.path(&long)).unwrap(), b"original long");
    let report = coffer::vault::fsck::fsck(&b.vault, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
}

#[test]
fn deleting_a_long_original_keeps_the_sidecar_its_copy_needs() {
    let Some(m) = TestMount::new() else { return };
    let long = long_name();
    fs::write(m.path(&long), b"v1").unwrap();
    let b = Backing::open(&m.cipher);
    let e = b.entry("", &long);
    let marker = " (1)";
    // The client copied only the entry (the sidecar did not conflict).
    fs::copy(m.cipher.join(&e), m.cipher.join(copy_name(&e, marker))).unwrap();
    let copy = shown(&long, marker);
    common::wait_for(sync_util::SHOW_WITHIN, "copy listed", || names(&m.mnt).contains(&copy));
    fs::remove_file(m.path(&long)).unwrap();
    assert_eq!(names(&m.mnt), vec![copy.clone()]);
    assert_eq!(fs::read(m.path(&copy)).unwrap(), b"v1");
    // Renaming the copy to a short name and back to the long name leaves no orphan.
    fs::rename(m.path(&copy), m.path("short")).unwrap();
    fs::rename(m.path("short"), m.path(&long)).unwrap();
    assert_eq!(fs::read(m.path(&long)).unwrap(), b"v1");
    let report = coffer::vault::fsck::fsck(&b.vault, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
}

#[test]
fn a_copy_edited_through_the_mount_is_its_own_file() {
    let Some(m) = TestMount::new() else { return };
    fs::write(m.path("notes.md"), b"mine").unwrap();
    let b = Backing::open(&m.cipher);
    let e = b.entry("", "notes.md");
    let marker = ".sync-conflict-20261125-101010-ABCDEFG";
    fs::copy(m.cipher.join(&e), m.cipher.join(copy_name(&e, marker))).unwrap();
    let copy = shown("notes.md", marker);
    common::wait_for(sync_util::SHOW_WITHIN, "copy listed", || names(&m.mnt).contains(&copy));
    fs::write(m.path(&copy), b"theirs, edited").unwrap();
    assert_eq!(fs::read(m.path(&copy)).unwrap(), b"theirs, edited");
    assert_eq!(fs::read(m.path("notes.md")).unwrap(), b"mine");
    // A new file cannot be created under a name that only a copy may have.
    let e2 = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(m.path(&copy))
        .unwrap_err();
    assert_eq!(e2.raw_os_error(), Some(libc::EEXIST));
}

#[test]
fn sync_client_files_are_hidden_and_not_errors() {
    let Some(m) = TestMount::new() else { return };
    fs::write(m.path("a"), b"x").unwrap();
    fs::create_dir(m.path("d")).unwrap();
    let b = Backing::open(&m.cipher);
    let sub = b.dir("d");
    let junk: &[&[u8]] = &[
        b".stfolder",
        b".stignore",
        b".syncthing.AbCd.tmp",
        b"~syncthing~AbCd.tmp",
        b".dropbox",
        b".dropbox.cache",
        b"desktop.ini",
        b"Icon\r",
        b"~AbCd.tmp",
        b".~lock.AbCd#",
        b".DS_Store",
    ];
    for dir in [&m.cipher, &sub] {
        for n in junk {
            let p = dir.join(std::ffi::OsStr::from_bytes(n));
            if n.ends_with(b"stversions") || n == b".dropbox.cache" || n == b".stfolder" {
                fs::create_dir(&p).unwrap();
            } else {
                fs::write(&p, b"client data").unwrap();
            }
        }
    }
    fs::create_dir(m.cipher.join(".stversions")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(names(&m.mnt), vec!["a", "d"]);
    assert!(names(&m.path("d")).is_empty());
    for n in junk {
        let e = fs::metadata(m.mnt.join(std::ffi::OsStr::from_bytes(n))).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT), "{:?}", String::from_utf8_lossy(n));
    }
    let report = coffer::vault::fsck::fsck(&b.vault, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
    // rmdir works although the backing directory still holds the client's files.
    fs::remove_dir(m.path("d")).unwrap();
    assert_eq!(names(&m.mnt), vec!["a"]);
}

#[test]
fn conflict_copies_of_symlinks_with_out_of_line_targets() {
    let Some(m) = TestMount::new() else { return };
    let target = "t".repeat(3500); // stored out of line, in ENTRY.link
    let long = long_name();
    std::os::unix::fs::symlink(&target, m.path("link")).unwrap();
    std::os::unix::fs::symlink(&target, m.path(&long)).unwrap();
    let b = Backing::open(&m.cipher);
    let c = &m.cipher;
    let short_e = b.entry("", "link");
    let long_e = b.entry("", &long);
    let cp = |from: &str, to: String| {
        let t = fs::read_link(c.join(from)).unwrap();
        std::os::unix::fs::symlink(t, c.join(to)).unwrap();
    };
    // Syncthing copied the symlink and its target sidecar; Google Drive only the symlink.
    let (st, gd) = (MARKERS[0].1, MARKERS[3].1);
    for (e, ext_link) in [
        (&short_e, format!("{short_e}.link")),
        (&long_e, format!("{long_e}.link")),
    ] {
        cp(e, copy_name(e, st));
        cp(e, copy_name(e, gd));
        fs::copy(c.join(&ext_link), c.join(copy_name(&ext_link, st))).unwrap();
    }
    // rclone bisync puts its marker after the whole name, extension included.
    let rc = "..path1";
    for (e, ext_link) in [
        (&short_e, format!("{short_e}.link")),
        (&long_e, format!("{long_e}.link")),
    ] {
        cp(e, format!("{e}{rc}"));
        fs::copy(c.join(&ext_link), c.join(format!("{ext_link}{rc}"))).unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let listed = names(&m.mnt);
    assert_eq!(listed.len(), 8, "{listed:?}");
    for plain in ["link", long.as_str()] {
        let at_end = format!("{plain}{rc}");
        assert!(listed.contains(&at_end), "{at_end} not in {listed:?}");
        assert_eq!(
            fs::read_link(m.path(&at_end)).unwrap().as_os_str().len(),
            3500,
            "{at_end}"
        );
        for marker in [st, gd] {
            let shown = shown(plain, marker);
            assert!(listed.contains(&shown), "{shown} not in {listed:?}");
            assert_eq!(
                fs::read_link(m.path(&shown)).unwrap().as_os_str().len(),
                3500,
                "{shown}"
            );
        }
    }
    let report = coffer::vault::fsck::fsck(&b.vault, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
}
