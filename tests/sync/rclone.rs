//! A second real sync client: rclone bisync (Debian's rclone 1.60) between two CIPHERDIRs, each
//! mounted. Edits, new files, deletes and directories made through one mount reach the other;
//! a file edited on both sides becomes rclone's two conflict copies `NAME..path1` and
//! `NAME..path2` (rclone renames *both*, so no copy keeps the original name), and both mounts
//! show them as `report.txt..path1` / `report.txt..path2` with each side's bytes, for short and
//! long names: nothing becomes invisible. Skipped when rclone is not installed.

use crate::support::common;
use crate::support::sync as sync_util;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::wait_for;
use sync_util::{names, Mounted, SHOW_WITHIN};

fn rclone_available() -> bool {
    Command::new("rclone")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `rclone bisync A B` with its state in `work`; `first` makes the initial listing.
fn bisync(a: &Path, b: &Path, work: &Path, first: bool) {
    let mut cmd = Command::new("rclone");
    cmd.arg("bisync")
        .arg(a)
        .arg(b)
        .arg("--workdir")
        .arg(work)
        .arg("--config")
        .arg(work.join("rclone.conf"));
    if first {
        cmd.arg("--resync");
    }
    let out = cmd.output().expect("run rclone");
    assert!(
        out.status.success(),
        "rclone bisync failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A plaintext name long enough for the long-name form.
fn long_name() -> String {
    format!("{}.txt", "a-long-plaintext-name-".repeat(7))
}

#[test]
fn rclone_bisync_between_two_mounted_replicas_loses_nothing() {
    if !common::fuse_available() {
        return;
    }
    if !rclone_available() {
        eprintln!("rclone not installed; not run (scripts/test installs it)");
        return;
    }
    let ta = tempfile::tempdir().unwrap();
    let tb = tempfile::tempdir().unwrap();
    let work = tempfile::tempdir().unwrap();
    let (ca, cb) = (ta.path().join("cipher"), tb.path().join("cipher"));
    fs::create_dir(&ca).unwrap();
    fs::create_dir(&cb).unwrap();
    common::init_vault(&ca);
    let long = long_name();
    {
        // Initial content, then the first sync makes B a replica of A.
        let a = Mounted::start(tempfile::tempdir().unwrap(), ca.clone());
        fs::write(a.mnt.join("report.txt"), b"original").unwrap();
        fs::write(a.mnt.join(&long), b"long original").unwrap();
        fs::write(a.mnt.join("keep.txt"), b"unchanged").unwrap();
        fs::write(a.mnt.join("gone.txt"), b"to be deleted").unwrap();
        fs::create_dir(a.mnt.join("docs")).unwrap();
        fs::write(a.mnt.join("docs/inner.txt"), b"inner").unwrap();
    }
    bisync(&ca, &cb, work.path(), true);

    // Mountpoints in their own temp dirs: ta and tb (the CIPHERDIRs) outlive the mounts.
    let a = Mounted::start(tempfile::tempdir().unwrap(), ca.clone());
    let b = Mounted::start(tempfile::tempdir().unwrap(), cb.clone());
    assert_eq!(fs::read(b.mnt.join("docs/inner.txt")).unwrap(), b"inner");
    assert_eq!(fs::read(b.mnt.join(&long)).unwrap(), b"long original");

    // One-sided changes on each side, and the same two files edited on both.
    fs::write(a.mnt.join("new-on-a.txt"), b"from a").unwrap();
    fs::write(a.mnt.join("docs/added.txt"), b"added on a").unwrap();
    fs::remove_file(b.mnt.join("gone.txt")).unwrap();
    fs::create_dir(b.mnt.join("made-on-b")).unwrap();
    fs::write(b.mnt.join("made-on-b/x"), b"x from b").unwrap();
    // bisync compares size and mtime: make the two edits differ in both.
    fs::write(a.mnt.join("report.txt"), b"edited on A").unwrap();
    fs::write(a.mnt.join(&long), b"long edited on A").unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    fs::write(b.mnt.join("report.txt"), b"B's edit, longer").unwrap();
    fs::write(b.mnt.join(&long), b"long: B's edit, longer").unwrap();
    // The same directory made on both sides: two different dirivs for one backing directory.
    fs::create_dir(a.mnt.join("both")).unwrap();
    fs::write(a.mnt.join("both/from-a"), b"a").unwrap();
    fs::create_dir(b.mnt.join("both")).unwrap();
    fs::write(b.mnt.join("both/from-b"), b"b").unwrap();
    bisync(&ca, &cb, work.path(), false);

    for (side, m) in [("A", &a), ("B", &b)] {
        let want = |name: &str, data: &[u8]| {
            let p = m.mnt.join(name);
            wait_for(SHOW_WITHIN, &format!("{side}: {name}"), || {
                fs::read(&p).ok().as_deref() == Some(data)
            });
        };
        want("new-on-a.txt", b"from a");
        want("docs/added.txt", b"added on a");
        want("made-on-b/x", b"x from b");
        want("keep.txt", b"unchanged");
        want("both/from-a", b"a");
        want("both/from-b", b"b");
        want("report.txt..path1", b"edited on A");
        want("report.txt..path2", b"B's edit, longer");
        want(&format!("{long}..path1"), b"long edited on A");
        want(&format!("{long}..path2"), b"long: B's edit, longer");
        let gone = m.mnt.join("gone.txt");
        wait_for(SHOW_WITHIN, &format!("{side}: gone.txt deleted"), || !gone.exists());
        let listed = names(&m.mnt);
        assert!(!listed.contains(&"report.txt".to_string()), "{side}: {listed:?}");
        assert_eq!(
            listed.len(),
            9,
            "{side}: exactly the expected entries, nothing hidden or doubled: {listed:?}"
        );
    }
    // The copies are ordinary files: keep A's edit under the original name, drop the other.
    fs::rename(a.mnt.join("report.txt..path1"), a.mnt.join("report.txt")).unwrap();
    fs::remove_file(a.mnt.join("report.txt..path2")).unwrap();
    fs::rename(a.mnt.join(format!("{long}..path2")), a.mnt.join(&long)).unwrap();
    fs::remove_file(a.mnt.join(format!("{long}..path1"))).unwrap();
    assert_eq!(fs::read(a.mnt.join("report.txt")).unwrap(), b"edited on A");
    assert_eq!(fs::read(a.mnt.join(&long)).unwrap(), b"long: B's edit, longer");
    // New names in the directory with two dirivs work on both sides and reach the other side.
    fs::write(a.mnt.join("both/later-a"), b"la").unwrap();
    fs::write(b.mnt.join("both/later-b"), b"lb").unwrap();
    bisync(&ca, &cb, work.path(), false);
    for (side, m) in [("A", &a), ("B", &b)] {
        for (n, d) in [
            ("from-a", &b"a"[..]),
            ("from-b", b"b"),
            ("later-a", b"la"),
            ("later-b", b"lb"),
        ] {
            let p = m.mnt.join("both").join(n);
            wait_for(SHOW_WITHIN, &format!("{side}: both/{n}"), || {
                fs::read(&p).ok().as_deref() == Some(d)
            });
        }
    }
    let p = b.mnt.join("report.txt");
    wait_for(SHOW_WITHIN, "B: resolved report.txt", || {
        fs::read(&p).ok().as_deref() == Some(&b"edited on A"[..])
    });
    let listed = names(&b.mnt);
    assert!(
        !listed.iter().any(|n| n.contains("..path")),
        "B after resolving: {listed:?}"
    );
    // fsck finds only the directory made on both sides (no sidecar or other file left over).
    let fsck = |c: &Path, repair: bool| {
        coffer::vault::fsck::fsck_with(
            &coffer::vault::Vault::unlock(c, None, common::PASSWORD, !repair).unwrap(),
            coffer::vault::fsck::FsckOptions::new(repair),
            &mut |_| {},
        )
        .unwrap()
    };
    for c in [&ca, &cb] {
        let report = fsck(c, false);
        let kinds: Vec<_> = report
            .damage
            .iter()
            .map(|d| (d.plain_path.clone(), d.kind.clone()))
            .collect();
        assert_eq!(
            kinds,
            vec![(Some("both".to_string()), coffer::vault::fsck::DamageKind::Diriv)],
            "{}: {report:?}",
            c.display()
        );
    }
    // Repairing one replica merges the directory under one IV; the next sync carries it over.
    drop((a, b));
    let repaired = fsck(&ca, true);
    assert!(repaired.is_clean(), "{repaired:?}");
    bisync(&ca, &cb, work.path(), false);
    for c in [&ca, &cb] {
        let report = fsck(c, false);
        assert!(report.damage.is_empty(), "{}: {report:?}", c.display());
    }
    let b = Mounted::start(tempfile::tempdir().unwrap(), cb.clone());
    for (n, d) in [
        ("from-a", &b"a"[..]),
        ("from-b", b"b"),
        ("later-a", b"la"),
        ("later-b", b"lb"),
    ] {
        assert_eq!(
            fs::read(b.mnt.join("both").join(n)).unwrap(),
            d,
            "B after the merge: both/{n}"
        );
    }
}
