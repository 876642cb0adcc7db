//! `coffer mount` through the CLI (needs /dev/fuse): the background mount returns only when
//! ready, read-only and recovery-key mounts, --idle, and the mount.fuse.coffer helper form.

use crate::support::{cli as cli_common, common};

use std::path::{Path, PathBuf};
use std::time::Duration;

use cli_common::{coffer, init_cli, passfile, Unmount};
use common::{fuse_available, is_mounted, wait_for};

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
    wait_for(Duration::from_secs(5), "unmounted", || !is_mounted(&mp));
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
    wait_for(Duration::from_secs(20), "unmounted after --idle 1s", || {
        !is_mounted(&mp)
    });
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
    // `fsck --repair` takes the same lock: right after umount it waits too.
    let st = std::process::Command::new("umount").arg(&mp).status().unwrap();
    assert!(st.success());
    let out = coffer(&["fsck", "--repair", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "fsck --repair right after umount: {}", out.stderr);
    let out = mount();
    assert_eq!(out.code, 0, "{}", out.stderr);
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

/// Runs `script` with sh in a private mount namespace in which /usr/sbin (/sbin) also holds
/// `mount.fuse.coffer` and `mount.coffer` (links to the binary under test), so that mount(8)
/// finds the helper as it does once installed; nothing outside the namespace changes.
/// Returns stdout; panics with stderr when the script fails.
fn with_installed_helper(base: &Path, script: &str) -> String {
    let helpers = base.join("sbin");
    std::fs::create_dir_all(&helpers).unwrap();
    for name in ["mount.fuse.coffer", "mount.coffer"] {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_coffer"), helpers.join(name)).unwrap();
    }
    let full = format!(
        "set -e\nmount -t overlay overlay -o lowerdir={}:/usr/sbin /usr/sbin\n{script}",
        s(&helpers)
    );
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &full])
        .env("LIBMOUNT_FSTAB", base.join("fstab"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "script failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// What mount(8) makes of fstab lines: `dev`/`suid` (which mount(8) consumes) reach the
/// mount, and so do `nodev`/`nosuid` and the atime options; a line without them stays
/// nosuid,nodev; `mount -o remount,ro` is refused with a line that says what to do.
#[test]
fn fstab_options_through_mount8() {
    let Some((t, v, mp, pf, _)) = setup() else { return };
    let (mp2, mp3) = (t.path().join("mp2"), t.path().join("mp3"));
    std::fs::create_dir(&mp2).unwrap();
    std::fs::create_dir(&mp3).unwrap();
    let fstab = format!(
        "{v} {mp} fuse.coffer dev,suid,noatime,passfile={pf},nofail 0 0\n\
         {v} {mp2} coffer nodev,nosuid,strictatime,nodiratime,passfile={pf} 0 0\n\
         {v} {mp3} fuse.coffer passfile={pf} 0 0\n",
        v = s(&v),
        mp = s(&mp),
        mp2 = s(&mp2),
        mp3 = s(&mp3),
        pf = s(&pf)
    );
    std::fs::write(t.path().join("fstab"), fstab).unwrap();
    let script = format!(
        "trap 'for m in {mp} {mp2} {mp3}; do umount -l $m 2>/dev/null || :; done' EXIT\n\
         flags() {{ awk -v m=\"$1\" '$5 == m {{ print $6 }}' /proc/self/mountinfo; }}\n\
         mount {mp}\n\
         echo \"flags1 $(flags {mp})\"\n\
         mknod {mp}/null c 1 3\n\
         if echo x > {mp}/null; then echo dev1 honoured; else echo dev1 refused; fi\n\
         if mount -o remount,ro {mp} 2> {t}/remount.err; then echo remount ok; else echo \"remount failed $?\"; fi\n\
         echo \"remount-err $(cat {t}/remount.err)\"\n\
         echo \"flags1-after $(flags {mp})\"\n\
         umount {mp}\n\
         mount {mp2}\n\
         echo \"flags2 $(flags {mp2})\"\n\
         mknod {mp2}/null2 c 1 3\n\
         if echo x > {mp2}/null2 2>/dev/null; then echo dev2 honoured; else echo dev2 refused; fi\n\
         umount {mp2}\n\
         mount {mp3}\n\
         echo \"flags3 $(flags {mp3})\"\n\
         umount {mp3}\n\
         exit 0\n",
        mp = s(&mp),
        mp2 = s(&mp2),
        mp3 = s(&mp3),
        t = s(t.path())
    );
    let out = with_installed_helper(t.path(), &script);
    let line = |key: &str| -> String {
        out.lines()
            .find_map(|l| l.strip_prefix(key).map(|r| r.trim().to_string()))
            .unwrap_or_else(|| panic!("no `{key}` in:\n{out}"))
    };
    let flags = |key: &str| -> Vec<String> { line(key).split(',').map(str::to_string).collect() };
    let has = |f: &[String], name: &str| f.iter().any(|x| x == name);

    let f1 = flags("flags1 ");
    assert!(
        !has(&f1, "nodev") && !has(&f1, "nosuid"),
        "dev,suid not applied: {f1:?}"
    );
    assert!(has(&f1, "noatime"), "noatime not applied: {f1:?}");
    assert_eq!(line("dev1"), "honoured");
    assert_eq!(line("remount"), "failed 2", "{out}");
    assert_eq!(
        line("remount-err "),
        "coffer: error: remount is not supported; unmount and mount again with -o ro"
    );
    assert_eq!(flags("flags1-after "), f1, "the refused remount changed the mount");

    let f2 = flags("flags2 ");
    assert!(has(&f2, "nodev") && has(&f2, "nosuid"), "{f2:?}");
    assert!(
        has(&f2, "nodiratime") && !has(&f2, "relatime") && !has(&f2, "noatime"),
        "{f2:?}"
    );
    assert_eq!(line("dev2"), "refused");

    // A line that asks for neither keeps coffer's nosuid,nodev and the kernel's relatime.
    let f3 = flags("flags3 ");
    assert!(
        has(&f3, "nodev") && has(&f3, "nosuid") && has(&f3, "relatime"),
        "{f3:?}"
    );
}

/// A vault made before packed xattrs (`block_sessions` only), mounted by `coffer mount`: with
/// the password the daemon adds `xattr_packs` to the config with the first pack; with the
/// recovery key it cannot, and seals every xattr on its own with the config untouched.
#[test]
fn a_cli_mount_adds_xattr_packs_only_when_it_can_rewrite_the_config() {
    use coffer::format::config::{VaultParams, FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS};
    use coffer::format::xattr_pack::PACK_BACKING_NAME;
    if !fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    if !common::user_xattrs_supported(t.path()) {
        eprintln!("the temp dir's file system stores no user xattrs; not run");
        return;
    }
    let old = VaultParams {
        feature_flags: vec![FLAG_BLOCK_SESSIONS.into()],
        ..VaultParams::default()
    };
    let mp = t.path().join("mp");
    std::fs::create_dir(&mp).unwrap();
    let pf = passfile(t.path(), "pw", "pw");
    for by_key in [false, true] {
        let v = t.path().join(format!("v-{by_key}"));
        std::fs::create_dir(&v).unwrap();
        // A vault of config version 1 made before `init` set `xattr_packs`.
        let master = coffer::vault::unlock::init_version(
            &v,
            None,
            b"pw",
            &old,
            coffer::vault::KdfCost::INSECURE_TEST,
            coffer::format::CONFIG_V1,
        )
        .unwrap();
        let key = coffer::format::recovery::encode(master.expose(), &old);
        let conf = std::fs::read(v.join("coffer.conf")).unwrap();
        {
            let _g = Unmount(mp.clone());
            let out = if by_key {
                coffer(
                    &["mount", "--masterkey", s(&v), s(&mp)],
                    Some(format!("{}\n", *key).as_bytes()),
                )
            } else {
                coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None)
            };
            assert_eq!(out.code, 0, "{}", out.stderr);
            let f = mp.join("tagged");
            std::fs::write(&f, b"x").unwrap();
            for i in 0..8 {
                common::set_xattr(&f, &format!("user.n{i}"), b"small", 0).unwrap();
            }
            assert_eq!(common::list_xattr(&f).unwrap().len(), 8);
        }
        wait_for(Duration::from_secs(5), "unmounted", || !is_mounted(&mp));
        let backing: Vec<_> = std::fs::read_dir(&v)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("coffer."))
            .collect();
        assert_eq!(backing.len(), 1, "{backing:?}");
        let packed = common::get_xattr(&backing[0], PACK_BACKING_NAME).is_ok();
        let cfg = coffer::vault::unlock::read_config(&v.join("coffer.conf")).unwrap();
        if by_key {
            assert!(!packed, "a recovery-key mount wrote a pack");
            assert_eq!(std::fs::read(v.join("coffer.conf")).unwrap(), conf);
            assert_eq!(common::list_xattr(&backing[0]).unwrap().len(), 8);
        } else {
            assert!(packed, "no pack written");
            assert_eq!(cfg.feature_flags, [FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS]);
            coffer::vault::unlock::unlock_with_password(&cfg, b"pw").unwrap();
        }
    }
}

/// A flipped byte in a file's xattr pack: the mount answers EIO and the daemon's log line
/// names the file's backing path and the pack.
#[test]
fn a_damaged_xattr_pack_is_logged_with_its_backing_path() {
    use coffer::format::xattr_pack::PACK3_BACKING_NAME;
    let Some((t, v, mp, pf, _)) = setup() else { return };
    if !common::user_xattrs_supported(t.path()) {
        eprintln!("the temp dir's file system stores no user xattrs; not run");
        return;
    }
    let log = t.path().join("daemon.log");
    let _g = Unmount(mp.clone());
    let out = coffer(&["mount", "--log", s(&log), "--passfile", s(&pf), s(&v), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let f = mp.join("tagged");
    std::fs::write(&f, b"x").unwrap();
    for i in 0..8 {
        common::set_xattr(&f, &format!("user.n{i}"), b"small", 0).unwrap();
    }
    let backing: Vec<_> = std::fs::read_dir(&v)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("coffer."))
        .collect();
    assert_eq!(backing.len(), 1, "{backing:?}");
    let b = v.join(&backing[0]);
    let mut sealed = common::get_xattr(&b, PACK3_BACKING_NAME).unwrap();
    sealed[20] ^= 0x40;
    common::set_xattr(&b, PACK3_BACKING_NAME, &sealed, 0).unwrap();

    assert_eq!(common::errno(&common::get_xattr(&f, "user.n7")), Some(libc::EIO));
    wait_for(
        Duration::from_secs(5),
        &format!("a log line ({}) naming {} and the pack", log.display(), backing[0]),
        || {
            std::fs::read_to_string(&log)
                .unwrap_or_default()
                .lines()
                .any(|l| l.contains(&backing[0]) && l.contains("xattr pack"))
        },
    );
}

/// `coffer stats CIPHERDIR` reads the requests a background mount has served, by kind: they
/// grow with what runs through the mount (a lookup per new name, a read for a read), and
/// stats of an unmounted vault is one line.
#[test]
fn stats_count_the_requests_a_mount_served() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let guard = Unmount(mp.clone());
    let out = coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let stats = || -> serde_json::Value {
        let out = coffer(&["stats", s(&v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let before = stats();
    for i in 0..5 {
        std::fs::write(mp.join(format!("f{i}")), b"data").unwrap();
    }
    for i in 0..5 {
        assert_eq!(std::fs::read(mp.join(format!("f{i}"))).unwrap(), b"data");
    }
    let after = stats();
    let grew = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert!(grew("create") >= 5, "{after}");
    assert!(grew("write") >= 5, "{after}");
    assert!(grew("total") >= grew("create") + grew("write"), "{after}");
    let kinds: u64 = after
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "total" | "kernel_cache"))
        .map(|(_, n)| n.as_u64().unwrap())
        .sum();
    assert_eq!(kinds, after["total"].as_u64().unwrap());
    drop(guard);
    let out = coffer(&["stats", s(&v)], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not mounted on this machine"), "{}", out.stderr);
}

/// Requests of the kinds a warm tree needs again (names, attributes, listings, data).
fn repeat_requests(v: &Path) -> u64 {
    let out = coffer(&["stats", s(v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    ["lookup", "getattr", "opendir", "readdir", "readdirplus", "read"]
        .iter()
        .map(|k| st[*k].as_u64().unwrap_or(0))
        .sum()
}

/// Builds a small tree through the mount at `mp`, reads it whole (again after 1.3 s), waits
/// past the 1 s timeouts, and returns how many name, attribute, listing and read requests reading it
/// again (stat, list, read, and a name known to be absent) sent to the daemon.
fn requests_for_a_warm_tree(v: &Path, mp: &Path) -> u64 {
    for d in 0..3 {
        let dir = mp.join(format!("d{d}"));
        std::fs::create_dir(&dir).unwrap();
        for f in 0..20 {
            std::fs::write(dir.join(format!("f{f}")), vec![d as u8; 5000]).unwrap();
        }
    }
    let walk = || {
        for d in 0..3 {
            let dir = mp.join(format!("d{d}"));
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 20);
            for f in 0..20 {
                let p = dir.join(format!("f{f}"));
                assert_eq!(std::fs::metadata(&p).unwrap().len(), 5000);
                assert_eq!(std::fs::read(&p).unwrap(), vec![d as u8; 5000]);
            }
            assert!(std::fs::metadata(dir.join(".gitignore")).is_err());
        }
    };
    walk();
    walk();
    // Names made while their directory was busy got the short timeout: they are looked up
    // again once, with nothing changing, and then get the long one.
    std::thread::sleep(Duration::from_millis(1300));
    walk();
    std::thread::sleep(Duration::from_millis(1300));
    let before = repeat_requests(v);
    walk();
    repeat_requests(v) - before
}

/// Mounts `v` at `mp` in the background with `-v` and `extra` options; returns its stderr,
/// which must contain `says`.
fn mount_saying(v: &Path, mp: &Path, pf: &Path, extra: &[&str], says: &str) -> String {
    let mut args = vec!["mount", "-v", "--passfile", s(pf)];
    args.extend_from_slice(extra);
    args.extend([s(v), s(mp)]);
    let out = coffer(&args, None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(says), "{}", out.stderr);
    out.stderr
}

#[test]
fn with_the_kernel_cache_a_warm_tree_is_read_again_without_asking_the_daemon() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let guard = Unmount(mp.clone());
    // fanotify wherever this process may use it (Linux 5.13 and later), as the mount may.
    let watcher = match coffer::fs::watch::fanotify::Fanotify::init() {
        Ok(_) => "kernel cache: on (CIPHERDIR watched with fanotify)",
        Err(_) => "kernel cache: on (CIPHERDIR watched with inotify; fanotify: ",
    };
    mount_saying(&v, &mp, &pf, &[], watcher);
    let cached = requests_for_a_warm_tree(&v, &mp);
    drop(guard);

    // The same with the cache off: every stat, listing and read asks again.
    let (_t2, v2, mp2, pf2, _) = setup().unwrap();
    let guard = Unmount(mp2.clone());
    mount_saying(
        &v2,
        &mp2,
        &pf2,
        &["--kernel-cache=off"],
        "kernel cache: off (--kernel-cache=off)",
    );
    let uncached = requests_for_a_warm_tree(&v2, &mp2);
    drop(guard);
    eprintln!("repeat requests for 60 files in 3 directories: {cached} cached, {uncached} uncached");
    // Uncached: at least every read and every listing (the listing brings the attributes).
    assert!(uncached >= 63, "the uncached mount should ask again: {uncached}");
    assert!(
        cached <= 2,
        "the kernel cache should answer nearly everything: {cached}"
    );
}

#[test]
fn on_overlayfs_the_kernel_cache_falls_back_to_short_timeouts() {
    if !common::is_root() {
        eprintln!("SKIPPED: mounting an overlayfs needs root");
        return;
    }
    let Some((t, _v, mp, pf, _)) = setup() else { return };
    let layers = t.path().join("layers");
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(layers.join(d)).unwrap();
    }
    let merged = layers.join("merged");
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        s(&layers.join("lower")),
        s(&layers.join("upper")),
        s(&layers.join("work"))
    );
    let st = std::process::Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts, s(&merged)])
        .status()
        .unwrap();
    if !st.success() {
        eprintln!("SKIPPED: overlayfs cannot be mounted here");
        return;
    }
    let _overlay = Unmount(merged.clone());
    let v = merged.join("v");
    init_cli(&v, "pw");
    for (mode, want) in [
        ("auto", "kernel cache: off (CIPHERDIR is on overlayfs"),
        (
            "on",
            "kernel cache: on (--kernel-cache=on) although CIPHERDIR is on overlayfs",
        ),
    ] {
        let guard = Unmount(mp.clone());
        mount_saying(&v, &mp, &pf, &["--kernel-cache", mode], want);
        std::fs::write(mp.join("f"), b"x").unwrap();
        assert_eq!(std::fs::read(mp.join("f")).unwrap(), b"x");
        drop(guard);
    }
}

/// Writes 40 files of 40 KiB in 4 KiB write() calls and one of 1 MiB, through the mount of
/// `v` at `mp`; returns the WRITE requests the daemon got for them (each file closed).
fn write_requests(v: &Path, mp: &Path) -> u64 {
    use std::io::Write;
    let stat = |k: &str| {
        let out = coffer(&["stats", s(v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let st: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        st[k].as_u64().unwrap_or(0)
    };
    let before = stat("write");
    let block: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for f in 0..40 {
        let mut file = std::fs::File::create(mp.join(format!("f{f}"))).unwrap();
        for _ in 0..10 {
            file.write_all(&block).unwrap();
        }
    }
    let mut big = std::fs::File::create(mp.join("big")).unwrap();
    for _ in 0..256 {
        big.write_all(&block).unwrap();
    }
    drop(big);
    stat("write") - before
}

#[test]
fn with_the_writeback_cache_small_writes_reach_the_daemon_merged() {
    let Some((_t, v, mp, pf, _)) = setup() else { return };
    let guard = Unmount(mp.clone());
    mount_saying(
        &v,
        &mp,
        &pf,
        &["--writeback-cache"],
        "writeback cache: on (writes are merged in the page cache",
    );
    let merged = write_requests(&v, &mp);
    drop(guard);
    // What the kernel sent last is stored: a fresh mount reads every byte back.
    let guard = Unmount(mp.clone());
    let out = coffer(&["mount", "--passfile", s(&pf), s(&v), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let block: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
    for f in 0..40 {
        assert_eq!(
            std::fs::read(mp.join(format!("f{f}"))).unwrap(),
            block.repeat(10),
            "f{f}"
        );
    }
    assert_eq!(std::fs::read(mp.join("big")).unwrap(), block.repeat(256));
    let plain = write_requests(&v, &mp);
    drop(guard);
    eprintln!(
        "WRITE requests for 40 files of 10 writes and one of 256: {merged} with the writeback cache, {plain} without"
    );
    assert!(plain >= 40 * 10 + 256, "without it every write() is a request: {plain}");
    assert!(
        merged <= 40 * 2 + 4,
        "with it each file should reach the daemon in one or two writes: {merged}"
    );
}
