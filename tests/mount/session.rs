//! Mount behaviour: one mount per CIPHERDIR, mountpoint checks, mount flags and fsname,
//! read-only mounts, idle unmount through `mount()`, ownership with allow_other, access-time
//! options against ext4, and the watchdog that frees a hung daemon.

use crate::support::common;

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, UNIX_EPOCH};

use coffer::fs::{MountError, MountOptions};
use common::{fuse_available, init_vault, spawn_mount, unmounted_vault, TestMount};

/// The /proc/mounts line of `mnt`, if mounted.
fn mount_line(mnt: &Path) -> Option<String> {
    let mounts = fs::read_to_string("/proc/mounts").unwrap();
    let want = mnt.to_str().unwrap();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1) == Some(want))
        .map(str::to_string)
}

#[test]
fn second_mount_and_nonempty_mountpoint_are_refused() {
    let Some(m) = TestMount::new() else { return };
    let other = tempfile::tempdir().unwrap();
    let e = spawn_mount(&m.cipher, other.path(), &MountOptions::default()).unwrap_err();
    assert!(matches!(e, MountError::AlreadyMounted { .. }), "{e}");
    assert!(e.to_string().contains("already mounted"), "{e}");
    assert!(mount_line(&other.path().canonicalize().unwrap()).is_none());

    let cipher2 = tempfile::tempdir().unwrap();
    init_vault(cipher2.path());
    fs::write(other.path().join("occupied"), b"x").unwrap();
    let e = spawn_mount(cipher2.path(), other.path(), &MountOptions::default()).unwrap_err();
    assert!(
        matches!(e, MountError::Mountpoint { .. }) && e.to_string().contains("not empty"),
        "{e}"
    );
    let opts = MountOptions {
        nonempty: true,
        ..Default::default()
    };
    let h = spawn_mount(cipher2.path(), other.path(), &opts).unwrap();
    assert!(
        !h.mountpoint().join("occupied").exists(),
        "the mount covers the old contents"
    );
    drop(h);
    assert!(other.path().join("occupied").exists(), "unmounted on drop");
    let e = spawn_mount(cipher2.path(), &other.path().join("missing"), &MountOptions::default()).unwrap_err();
    assert!(matches!(e, MountError::Mountpoint { .. }), "{e}");
}

#[test]
fn flags_fsname_and_unmount_on_drop() {
    let Some(mut m) = TestMount::new() else { return };
    let line = mount_line(&m.mnt).expect("mounted");
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields[0], m.cipher.to_str().unwrap(), "fsname is CIPHERDIR: {line}");
    let opts: Vec<&str> = fields[3].split(',').collect();
    for want in ["nosuid", "nodev"] {
        assert!(opts.contains(&want), "{want} missing: {line}");
    }
    // Owner-only: the daemon checks modes (see mount_nonroot), the kernel does not.
    assert!(!opts.contains(&"default_permissions"), "{line}");
    // As root, the mount's readahead window is raised from the kernel's 128 KiB to 4 MiB.
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let dev = fs::metadata(&m.mnt).unwrap().dev();
        let bdi = format!("/sys/class/bdi/{}:{}/read_ahead_kb", libc::major(dev), libc::minor(dev));
        assert_eq!(fs::read_to_string(&bdi).unwrap().trim(), "4096", "{bdi}");
    }
    assert!(!opts.contains(&"allow_other"), "owner-only by default: {line}");
    let mnt = m.mnt.clone();
    m.unmount();
    assert!(mount_line(&mnt).is_none(), "unmounted");
}

#[test]
fn read_only_mount() {
    let Some(mut m) = TestMount::new() else { return };
    fs::write(m.path("f"), b"kept").unwrap();
    m.unmount();
    let opts = MountOptions {
        read_only: true,
        ..Default::default()
    };
    let h = spawn_mount(&m.cipher, &m.mnt, &opts).unwrap();
    let p = h.mountpoint().to_path_buf();
    assert_eq!(fs::read(p.join("f")).unwrap(), b"kept");
    for r in [
        fs::write(p.join("f"), b"x").map(drop),
        fs::write(p.join("new"), b"x").map(drop),
        fs::create_dir(p.join("d")),
        fs::remove_file(p.join("f")),
        fs::set_permissions(p.join("f"), fs::Permissions::from_mode(0o600)),
    ] {
        assert_eq!(r.unwrap_err().raw_os_error(), Some(libc::EROFS));
    }
    assert!(mount_line(&p)
        .unwrap()
        .split(' ')
        .nth(3)
        .unwrap()
        .split(',')
        .any(|o| o == "ro"));
}

#[test]
fn mount_serves_until_idle() {
    if !fuse_available() {
        return;
    }
    let (_tmp, cipher, mnt) = unmounted_vault();
    let vault = coffer::vault::Vault::unlock(&cipher, None, common::PASSWORD, false).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let opts = MountOptions {
        idle: Some(Duration::from_secs(1)),
        ..Default::default()
    };
    let mnt2 = mnt.clone();
    let server =
        std::thread::spawn(move || coffer::fs::mount(vault, &mnt2, &opts, Box::new(move || tx.send(()).unwrap())));
    rx.recv_timeout(Duration::from_secs(20)).expect("on_ready ran");
    let canon = mnt.canonicalize().unwrap();
    assert!(mount_line(&canon).is_some(), "mounted once on_ready runs");
    {
        // An open file keeps an idle mount alive.
        let mut f = fs::File::create(mnt.join("f")).unwrap();
        std::thread::sleep(Duration::from_millis(2500));
        std::io::Write::write_all(&mut f, b"still here").unwrap();
    }
    let start = Instant::now();
    while !server.is_finished() {
        assert!(start.elapsed() < Duration::from_secs(20), "idle mount did not unmount");
        std::thread::sleep(Duration::from_millis(100));
    }
    server.join().unwrap().unwrap();
    assert!(mount_line(&canon).is_none());
    let h = spawn_mount(&cipher, &mnt, &MountOptions::default()).unwrap();
    assert_eq!(fs::read(h.mountpoint().join("f")).unwrap(), b"still here");
}

/// Runs `sh -c script` in `dir` as uid/gid 65534 (nobody).
fn as_nobody(dir: &Path, script: &str) -> std::process::Output {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(script)
        .current_dir("/")
        .env("D", dir)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

#[test]
fn allow_other_and_ownership() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("allow_other_and_ownership needs root (it serves another uid); not run");
        return;
    }
    let opts = MountOptions {
        allow_other: true,
        ..Default::default()
    };
    let Some(m) = TestMount::with(opts, common::WATCHDOG) else {
        return;
    };
    let line = mount_line(&m.mnt).expect("mounted");
    assert!(
        line.contains("default_permissions"),
        "several users: the kernel checks modes: {line}"
    );
    // Other users need to reach the mountpoint through the temp dir.
    fs::set_permissions(m.mnt.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&m.mnt, fs::Permissions::from_mode(0o1777)).unwrap();
    fs::create_dir(m.path("private")).unwrap();
    fs::set_permissions(m.path("private"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::create_dir(m.path("sgid")).unwrap();
    std::os::unix::fs::chown(m.path("sgid"), Some(0), Some(4242)).unwrap();
    fs::set_permissions(m.path("sgid"), fs::Permissions::from_mode(0o2777)).unwrap();
    let out = as_nobody(
        &m.mnt,
        "umask 022; cd \"$D\" && echo hi > file && mkdir dir && ln -s file sl && mkfifo fifo && echo x > sgid/f && mkdir sgid/d",
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for name in ["file", "dir", "sl", "fifo"] {
        let md = fs::symlink_metadata(m.path(name)).unwrap();
        assert_eq!((md.uid(), md.gid()), (65534, 65534), "{name} belongs to its creator");
    }
    assert_eq!(
        fs::metadata(m.path("file")).unwrap().mode() & 0o777,
        0o644,
        "umask honoured"
    );
    let f = fs::metadata(m.path("sgid/f")).unwrap();
    assert_eq!((f.uid(), f.gid()), (65534, 4242), "setgid directory gives its group");
    let d = fs::metadata(m.path("sgid/d")).unwrap();
    assert_eq!(d.gid(), 4242);
    assert!(d.mode() & libc::S_ISGID != 0, "subdirectory of a setgid dir is setgid");
    // EACCES where due.
    let out = as_nobody(&m.mnt, "ls \"$D/private\"");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    let out = as_nobody(&m.mnt, "echo no > \"$D/private/x\"");
    assert!(!out.status.success());
    // The backing objects carry the same owners (what a remount shows).
    let st = fs::metadata(m.path("file")).unwrap();
    assert_eq!(st.uid(), 65534);
    // A write or truncate by another user clears set-ID bits (the daemon does it, told by the
    // kernel's kill-suid flag); root's own writes keep them.
    fs::write(m.path("setid"), b"x").unwrap();
    fs::set_permissions(m.path("setid"), fs::Permissions::from_mode(0o6777)).unwrap();
    fs::OpenOptions::new()
        .append(true)
        .open(m.path("setid"))
        .unwrap()
        .write_all(b"root")
        .unwrap();
    assert_eq!(
        fs::metadata(m.path("setid")).unwrap().mode() & 0o7777,
        0o6777,
        "root keeps them"
    );
    let out = as_nobody(&m.mnt, "echo more >> \"$D/setid\"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        fs::metadata(m.path("setid")).unwrap().mode() & 0o7777,
        0o777,
        "write by a user"
    );
    fs::set_permissions(m.path("setid"), fs::Permissions::from_mode(0o4777)).unwrap();
    let out = as_nobody(&m.mnt, "truncate -s 1 \"$D/setid\"");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        fs::metadata(m.path("setid")).unwrap().mode() & 0o7777,
        0o777,
        "truncate by a user"
    );
    assert_eq!(fs::read(m.path("setid")).unwrap(), b"x");
}

#[test]
fn without_allow_other_other_users_are_refused() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("needs root to run a command as another uid; not run");
        return;
    }
    let Some(m) = TestMount::new() else { return };
    fs::set_permissions(m.mnt.parent().unwrap(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::write(m.path("f"), b"x").unwrap();
    fs::set_permissions(m.path("f"), fs::Permissions::from_mode(0o644)).unwrap();
    let out = as_nobody(&m.mnt, "cat \"$D/f\"");
    assert!(!out.status.success(), "another user read an owner-only mount");
}

/// A file system whose lookups hang until released: a stand-in for a deadlocked daemon.
struct Hung;

static RELEASE: AtomicBool = AtomicBool::new(false);

impl fuser::Filesystem for Hung {
    fn getattr(
        &self,
        _r: &fuser::Request,
        ino: fuser::INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: fuser::ReplyAttr,
    ) {
        let attr = fuser::FileAttr {
            ino,
            size: 0,
            blocks: 0,
            atime: UNIX_EPOCH,
            mtime: UNIX_EPOCH,
            ctime: UNIX_EPOCH,
            crtime: UNIX_EPOCH,
            kind: fuser::FileType::Directory,
            perm: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        };
        reply.attr(&Duration::from_secs(1), &attr);
    }

    fn lookup(&self, _r: &fuser::Request, _p: fuser::INodeNo, _n: &OsStr, reply: fuser::ReplyEntry) {
        while !RELEASE.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        reply.error(fuser::Errno::ENOENT);
    }
}

#[test]
fn watchdog_frees_a_hung_daemon() {
    if !fuse_available() {
        return;
    }
    let mnt = tempfile::tempdir().unwrap();
    let mp = mnt.path().canonicalize().unwrap();
    let session = fuser::spawn_mount(Hung, &mp, &fuser::Config::default()).unwrap();
    let conn = coffer::fs::connection_of(&mp).unwrap();
    let dog = common::Watchdog::start(mp.clone(), Some(conn), Duration::from_secs(2));
    let start = Instant::now();
    let r = fs::metadata(mp.join("anything"));
    let took = start.elapsed();
    let e = r.unwrap_err();
    // An aborted request fails with ECONNABORTED, later ones with ENOTCONN.
    assert!(
        matches!(e.raw_os_error(), Some(libc::ECONNABORTED) | Some(libc::ENOTCONN)),
        "{e}"
    );
    assert!(took < Duration::from_secs(20), "the watchdog took {took:?}");
    RELEASE.store(true, Ordering::SeqCst);
    dog.stop();
    let _ = session.join();
    assert!(mount_line(&mp).is_none(), "detached");
}

/// A bind mount of a plain ext4 directory with the atime flags of the mount under test, as
/// the reference; unmounted on drop.
struct BindRef(std::path::PathBuf);

impl BindRef {
    fn new(src: &Path, dst: &Path, flags: libc::c_ulong) -> BindRef {
        fs::create_dir_all(src).unwrap();
        fs::create_dir_all(dst).unwrap();
        let (s, d) = (common::cpath(src), common::cpath(dst));
        // SAFETY: valid C strings; null type and data are allowed for bind mounts.
        common::cvt(unsafe {
            libc::mount(
                s.as_ptr(),
                d.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        })
        .expect("bind mount");
        let r = BindRef(dst.to_path_buf());
        let remount = libc::MS_REMOUNT | libc::MS_BIND | flags;
        // SAFETY: as above.
        common::cvt(unsafe {
            libc::mount(
                std::ptr::null(),
                d.as_ptr(),
                std::ptr::null(),
                remount,
                std::ptr::null(),
            )
        })
        .expect("remount the bind mount with atime flags");
        r
    }
}

impl Drop for BindRef {
    fn drop(&mut self) {
        let c = common::cpath(&self.0);
        // SAFETY: valid C string.
        unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
    }
}

fn atime_of(p: &Path) -> (i64, i64) {
    let m = fs::metadata(p).unwrap();
    (m.atime(), m.atime_nsec())
}

/// Which of these reads changed the access time: a read of a new file, a second read, running
/// a new script, a listing of a new directory, a second listing.
fn atime_changes(root: &Path) -> Vec<bool> {
    fs::write(root.join("f"), b"data").unwrap();
    fs::write(root.join("s"), b"#!/bin/sh\nexit 0\n").unwrap();
    fs::set_permissions(root.join("s"), fs::Permissions::from_mode(0o755)).unwrap();
    fs::create_dir(root.join("d")).unwrap();
    fs::write(root.join("d/x"), b"x").unwrap();
    // A lookup in the directory a while after it changed is no listing: on ext4 it leaves the
    // access time alone, so the first listing below still updates it under `relatime`.
    std::thread::sleep(Duration::from_millis(300));
    assert!(fs::symlink_metadata(root.join("d/missing")).is_err());
    let pause = || std::thread::sleep(Duration::from_millis(30));
    let changed = |p: &Path, op: &dyn Fn()| {
        pause();
        let before = atime_of(p);
        op();
        atime_of(p) != before
    };
    let f = root.join("f");
    let read = || drop(fs::read(&f).unwrap());
    let run = || assert!(std::process::Command::new(root.join("s")).status().unwrap().success());
    let list = || assert_eq!(fs::read_dir(root.join("d")).unwrap().count(), 1);
    vec![
        changed(&f, &read),
        changed(&f, &read),
        changed(&root.join("s"), &run),
        changed(&root.join("d"), &list),
        changed(&root.join("d"), &list),
    ]
}

/// `noatime`, `relatime` (the default), `strictatime` and `nodiratime` as on ext4: the same
/// reads change the access time through the mount as on an ext4 bind mount with those flags.
#[test]
fn atime_options_behave_as_on_ext4() {
    use coffer::fs::Atime;
    if !common::is_root() {
        eprintln!("needs root for the reference bind mounts; not run");
        return;
    }
    let cases = [
        (
            Atime::NoAtime,
            false,
            libc::MS_NOATIME,
            [false, false, false, false, false],
        ),
        (
            Atime::RelAtime,
            false,
            libc::MS_RELATIME,
            [true, false, true, true, false],
        ),
        (
            Atime::StrictAtime,
            false,
            libc::MS_STRICTATIME,
            [true, true, true, true, true],
        ),
        (
            Atime::RelAtime,
            true,
            libc::MS_RELATIME | libc::MS_NODIRATIME,
            [true, false, true, false, false],
        ),
    ];
    for (atime, nodiratime, flags, want) in cases {
        let opts = MountOptions {
            atime,
            nodiratime,
            ..Default::default()
        };
        let Some(m) = TestMount::with(opts, common::WATCHDOG) else {
            return;
        };
        let line = mount_line(&m.mnt).unwrap();
        let flags_of = |l: &str| {
            l.split(' ')
                .nth(3)
                .unwrap_or("")
                .split(',')
                .map(str::to_string)
                .collect::<Vec<_>>()
        };
        let mount_flags = flags_of(&line);
        let kernel_mode = ["noatime", "relatime"]
            .into_iter()
            .find(|f| mount_flags.iter().any(|m| m == f));
        let want_mode = match atime {
            Atime::NoAtime => Some("noatime"),
            Atime::RelAtime => Some("relatime"),
            Atime::StrictAtime => None,
        };
        assert_eq!(kernel_mode, want_mode, "{line}");
        assert_eq!(mount_flags.iter().any(|m| m == "nodiratime"), nodiratime, "{line}");
        let base = m.cipher.parent().unwrap().to_path_buf();
        let reference = BindRef::new(&base.join("plain"), &base.join("ref"), flags);
        let on_ext4 = atime_changes(&reference.0);
        assert_eq!(on_ext4, want, "ext4 with {atime:?} nodiratime={nodiratime}");
        let through_mount = atime_changes(&m.mnt);
        assert_eq!(through_mount, want, "coffer with {atime:?} nodiratime={nodiratime}");
    }
}
