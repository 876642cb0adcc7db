//! `coffer mount` through the CLI (needs /dev/fuse): the background mount returns only when
//! ready, read-only and recovery-key mounts, --idle, and the mount.fuse.coffer helper form.

mod cli_common;
mod common;

use std::path::{Path, PathBuf};

use cli_common::{coffer, init_cli, is_mounted, passfile, wait_for, Unmount};
use common::fuse_available;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn setup() -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf, String)> {
    if !fuse_available() {
        return None;
    }
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let key = init_cli(&v, "pw");
    let mp = t.path().join("mp");
    std::fs::create_dir(&mp).unwrap();
    let pf = passfile(t.path(), "pw", "pw");
    Some((t, v, mp, pf, key))
}

#[test]
fn background_mount_is_ready_on_return_and_unmounts() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let guard = Unmount(mp.clone());
    let out = coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    // Ready means usable right now, with no waiting.
    assert!(is_mounted(&mp));
    std::fs::write(mp.join("hello.txt"), b"through the mount\n").unwrap();
    std::fs::create_dir(mp.join("sub")).unwrap();
    assert_eq!(std::fs::read(mp.join("hello.txt")).unwrap(), b"through the mount\n");
    // The same vault twice on one machine is refused.
    let mp2 = mp.with_file_name("mp2");
    std::fs::create_dir(&mp2).unwrap();
    let _guard2 = Unmount(mp2.clone());
    let out = coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp2)], None);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(
        out.stderr.contains("is already mounted on this machine"),
        "{}",
        out.stderr
    );
    let out = coffer(&["unmount", s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!is_mounted(&mp));
    drop(guard);
    let out = coffer(&["cat", "--passfile", s(&pf), s(&v), "hello.txt"], None);
    assert_eq!(out.stdout, b"through the mount\n");
    // Unmounting again: one clear line.
    let out = coffer(&["unmount", s(&mp)], None);
    assert_eq!(out.code, 1);
    assert!(out.stderr.starts_with("coffer: error: "), "{}", out.stderr);
}

#[test]
fn read_only_mount_with_recovery_key_and_no_config() {
    let Some((_t, v, mp, pf, key)) = setup() else { return };
    {
        let _g = Unmount(mp.clone());
        assert_eq!(coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None).code, 0);
        std::fs::write(mp.join("kept.txt"), b"kept").unwrap();
    }
    assert!(wait_for(5, || !is_mounted(&mp)));
    std::fs::remove_file(v.join("coffer.conf")).unwrap();
    let _g = Unmount(mp.clone());
    let out = coffer(
        &["mount", "--ro", "--masterkey", s(&v), s(&mp)],
        Some(format!("{key}\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(mp.join("kept.txt")).unwrap(), b"kept");
    let e = std::fs::write(mp.join("new.txt"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS));
}

#[test]
fn idle_mount_unmounts_itself() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let _g = Unmount(mp.clone());
    let out = coffer(&["mount", "--idle", "1s", "--passfile", s(&pf), s(&v), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(is_mounted(&mp));
    assert!(wait_for(20, || !is_mounted(&mp)), "still mounted after --idle 1s");
}

#[test]
fn log_file_and_foreground_errors() {
    let Some((t, v, mp, _, _)) = setup() else { return };
    let bad = passfile(t.path(), "bad", "nope");
    let log = t.path().join("coffer.log");
    let out = coffer(
        &["mount", "--fg", "--log", s(&log), "--passfile", s(&bad), s(&v), s(&mp)],
        None,
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(!is_mounted(&mp));
}

#[test]
fn mount_helper_form_for_fstab() {
    let Some((t, v, mp, pf, _)) = setup() else { return };
    let helper = t.path().join("mount.fuse.coffer");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_coffer"), &helper).unwrap();
    let _g = Unmount(mp.clone());
    let opts = format!("rw,passfile={},ro,nofail,_netdev,x-systemd.automount", s(&pf));
    let out = std::process::Command::new(&helper)
        .args([s(&v), s(&mp), "-o", &opts])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(is_mounted(&mp));
    let e = std::fs::write(mp.join("x"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "ro option not applied");
    let out = std::process::Command::new(&helper)
        .args([s(&v), s(&mp), "-o", "bogus"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "coffer: error: unknown mount option `bogus`\n"
    );
}

/// `umount MNT` returns before the background process has exited and released the vault's
/// lock; an immediate `coffer mount` (a script, `mount -a`) must wait for it, not fail.
#[test]
fn mount_right_after_umount_succeeds() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let _g = Unmount(mp.clone());
    let mount = || coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None);
    let out = mount();
    assert_eq!(out.code, 0, "{}", out.stderr);
    for round in 0..10 {
        std::fs::write(mp.join("round"), format!("{round}")).unwrap();
        let st = std::process::Command::new("umount").arg(&mp).status().unwrap();
        assert!(st.success(), "round {round}: umount failed");
        let out = mount();
        assert_eq!(out.code, 0, "round {round}: {}", out.stderr);
        assert_eq!(std::fs::read_to_string(mp.join("round")).unwrap(), format!("{round}"));
    }
    // A live mount is still refused, at once and with the clear message.
    let mp2 = mp.with_file_name("mp2");
    std::fs::create_dir(&mp2).unwrap();
    let _g2 = Unmount(mp2.clone());
    let started = std::time::Instant::now();
    let out = coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp2)], None);
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(
        out.stderr.contains("is already mounted on this machine"),
        "{}",
        out.stderr
    );
    assert!(
        started.elapsed() < coffer::fs::LOCK_EXIT_WAIT / 2,
        "a live mount was waited for ({:?})",
        started.elapsed()
    );
    assert!(!is_mounted(&mp2));
}
