//! The one mount helper for FUSE integration tests: a fresh vault mounted in a temp dir, a
//! watchdog that frees a hung mount (aborts the FUSE connection, detaches the mountpoint) so a
//! deadlock fails one test instead of stalling the suite, and a `Drop` that unmounts.
//!
//! Without /dev/fuse every test FAILS with a clear message, unless COFFER_SKIP_FUSE=1.

#![allow(dead_code)]

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use coffer::format::config::VaultParams;
use coffer::fs::{MountHandle, MountOptions};
use coffer::vault::{unlock, KdfCost, Vault};

/// Password of every test vault.
pub const PASSWORD: &[u8] = b"test password";
/// Default watchdog: a test still running after this is treated as hung.
pub const WATCHDOG: Duration = Duration::from_secs(60);

/// Whether FUSE tests can run here; panics with the reason when they cannot and skipping was
/// not asked for.
pub fn fuse_available() -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    if std::env::var_os("COFFER_SKIP_FUSE").is_some_and(|v| v == "1") {
        eprintln!("SKIPPED: /dev/fuse is missing and COFFER_SKIP_FUSE=1");
        return false;
    }
    panic!("FUSE is unavailable (/dev/fuse is missing): these tests need it; set COFFER_SKIP_FUSE=1 to skip them");
}

/// Whether the tests run as root (some checks need privileges an ordinary user lacks).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether the file system holding `dir` stores user.* xattrs (ramfs does not). Probed on a
/// scratch file made and removed in `dir`.
pub fn user_xattrs_supported(dir: &Path) -> bool {
    let probe = tempfile::NamedTempFile::new_in(dir).expect("probe file");
    match set_xattr(probe.path(), "user.coffer-probe", b"1", 0) {
        Ok(()) => true,
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => false,
        Err(e) => panic!("probing user xattrs in {}: {e}", dir.display()),
    }
}

/// Whether the file system holding `dir` reports holes through SEEK_HOLE (ramfs reports
/// every file as one extent of data). Probed on a sparse scratch file made in `dir`.
pub fn holes_reported(dir: &Path) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::fs::FileExt;
    let probe = tempfile::tempfile_in(dir).expect("probe file");
    probe.write_all_at(b"end", 1 << 20).expect("write probe");
    // SAFETY: a valid descriptor.
    let hole = unsafe { libc::lseek(probe.as_raw_fd(), 0, libc::SEEK_HOLE) };
    (0..1 << 20).contains(&hole)
}

/// Fails with a clear message when a program a test needs is missing.
pub fn require_tool(name: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "this test needs `{name}` on PATH (Debian: apt-get install -y {name})"
    );
}

/// Frees a mount that is still in use after a time limit: aborts its FUSE connection (every
/// blocked call fails with ENOTCONN) and detaches the mountpoint.
pub struct Watchdog {
    cancel: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl Watchdog {
    /// Arms the watchdog for the mount at `mountpoint` (fusectl connection `conn`).
    pub fn start(mountpoint: PathBuf, conn: Option<u32>, limit: Duration) -> Watchdog {
        let (cancel, rx) = mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(limit) {
                eprintln!(
                    "WATCHDOG: test still running after {limit:?}; aborting FUSE connection {conn:?} at {}",
                    mountpoint.display()
                );
                if let Some(c) = conn {
                    if let Err(e) = coffer::fs::abort_connection(c) {
                        eprintln!("WATCHDOG: abort failed: {e}");
                    }
                }
                let _ = coffer::fs::unmount(&mountpoint, true);
            }
        });
        Watchdog { cancel, thread }
    }

    /// Disarms it.
    pub fn stop(self) {
        let _ = self.cancel.send(());
        let _ = self.thread.join();
    }
}

/// A mounted test vault.
pub struct TestMount {
    handle: Option<MountHandle>,
    /// The `coffer mount --fg` serving the mount, when it runs apart.
    daemon: Option<super::daemon::Daemon>,
    watchdog: Option<Watchdog>,
    /// The mountpoint.
    pub mnt: PathBuf,
    /// CIPHERDIR.
    pub cipher: PathBuf,
    opts: MountOptions,
    limit: Duration,
    _tmp: tempfile::TempDir,
}

/// Makes a vault in `cipher` (an empty directory).
pub fn init_vault(cipher: &Path) {
    unlock::init(cipher, None, PASSWORD, &VaultParams::default(), KdfCost::INSECURE_TEST).expect("init vault");
}

/// A fresh vault in TMP/c and an empty mountpoint TMP/m, for tests that mount it themselves;
/// TMP goes away with the returned `TempDir`.
pub fn unmounted_vault() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (cipher, mnt) = (tmp.path().join("c"), tmp.path().join("m"));
    std::fs::create_dir(&cipher).expect("mkdir cipher");
    std::fs::create_dir(&mnt).expect("mkdir mnt");
    init_vault(&cipher);
    (tmp, cipher, mnt)
}

/// Mounts `cipher` at `mnt` in background threads; with COFFER_TEST_WRITEBACK=1 (a step of
/// scripts/test runs the POSIX suites so) every such mount has the writeback cache on.
pub fn spawn_mount(cipher: &Path, mnt: &Path, opts: &MountOptions) -> Result<MountHandle, coffer::fs::MountError> {
    let vault = Vault::unlock(cipher, None, PASSWORD, opts.read_only).expect("unlock vault");
    let mut opts = opts.clone();
    opts.writeback_cache |= writeback_run();
    // A test that changes CIPHERDIR under a mount served by its own process plays the sync
    // client from the mount's process: fanotify would tell its changes for the mount's own
    // (they are, by process). Such mounts watch with inotify, which judges by the state each
    // change left; unless COFFER_TEST_WATCHER=fanotify, for suites that play no client.
    // [`TestMount::served_apart`] runs the mount in a process of its own, as users do.
    if !fanotify_run() {
        opts.watcher = coffer::fs::Watcher::Inotify;
    }
    coffer::fs::spawn(vault, mnt, &opts)
}

/// Whether mounts served in the test's own process may watch with fanotify
/// (COFFER_TEST_WATCHER=fanotify).
pub fn fanotify_run() -> bool {
    std::env::var_os("COFFER_TEST_WATCHER").is_some_and(|v| v == "fanotify")
}

/// Whether mounts served apart watch with inotify even where fanotify works
/// (COFFER_TEST_WATCHER=inotify).
pub fn inotify_run() -> bool {
    std::env::var_os("COFFER_TEST_WATCHER").is_some_and(|v| v == "inotify")
}

/// The `coffer mount` options of `opts` (those the tests that mount apart set), with this
/// run's writeback cache and watcher.
fn daemon_args(opts: &MountOptions) -> Vec<&'static str> {
    let mut args = Vec::new();
    match opts.kernel_cache {
        coffer::fs::KernelCache::Auto => {}
        coffer::fs::KernelCache::On => args.push("--kernel-cache=on"),
        coffer::fs::KernelCache::Off => args.push("--kernel-cache=off"),
    }
    if opts.writeback_cache || writeback_run() {
        args.push("--writeback-cache");
    }
    if opts.watcher == coffer::fs::Watcher::Inotify || inotify_run() {
        args.push("--watcher=inotify");
    }
    if opts.read_only {
        args.push("--ro");
    }
    args
}

/// Whether this run mounts with the writeback cache (COFFER_TEST_WRITEBACK=1).
pub fn writeback_run() -> bool {
    std::env::var_os("COFFER_TEST_WRITEBACK").is_some_and(|v| v == "1")
}

impl TestMount {
    /// A fresh vault, mounted with default options; None when FUSE tests are skipped.
    pub fn new() -> Option<TestMount> {
        Self::with(MountOptions::default(), WATCHDOG)
    }

    /// A fresh vault mounted with `opts`, with a watchdog of `limit`.
    pub fn with(opts: MountOptions, limit: Duration) -> Option<TestMount> {
        Self::in_dir(&std::env::temp_dir(), opts, limit)
    }

    /// A fresh vault mounted with default options by a `coffer mount --fg` of its own (see
    /// [`served_apart`](Self::served_apart)).
    pub fn apart() -> Option<TestMount> {
        Self::served_apart(MountOptions::default(), WATCHDOG)
    }

    /// A fresh vault mounted with `opts` by a `coffer mount --fg` of its own (a watchdog of
    /// `limit`), so that this process changes CIPHERDIR as a sync client does: from another
    /// process than the mount's. Only the mount's paths are used then (no [`handle`](Self::handle)).
    pub fn served_apart(opts: MountOptions, limit: Duration) -> Option<TestMount> {
        let mut m = Self::unmounted(&std::env::temp_dir(), opts, limit)?;
        let pf = m._tmp.path().join("pass");
        std::fs::write(&pf, PASSWORD).expect("passfile");
        let d = super::daemon::Daemon::start_with(&m.cipher, &m.mnt, &pf, m.limit, &daemon_args(&m.opts));
        m.mnt = d.mnt.clone();
        m.daemon = Some(d);
        Some(m)
    }

    /// Like [`with`](Self::with), with CIPHERDIR and the mountpoint in a new directory under
    /// `base` (e.g. a tmpfs, where fsync costs nothing).
    pub fn in_dir(base: &Path, opts: MountOptions, limit: Duration) -> Option<TestMount> {
        let mut m = Self::unmounted(base, opts, limit)?;
        m.mount();
        Some(m)
    }

    /// A fresh vault with an empty mountpoint, both in a new directory under `base`.
    fn unmounted(base: &Path, opts: MountOptions, limit: Duration) -> Option<TestMount> {
        if !fuse_available() {
            return None;
        }
        let tmp = tempfile::Builder::new()
            .prefix("coffer-mount-")
            .tempdir_in(base)
            .expect("tempdir");
        let cipher = tmp.path().join("cipher");
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&cipher).expect("mkdir cipher");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        init_vault(&cipher);
        Some(TestMount {
            handle: None,
            daemon: None,
            watchdog: None,
            mnt,
            cipher,
            opts,
            limit,
            _tmp: tmp,
        })
    }

    fn mount(&mut self) {
        let h = spawn_mount(&self.cipher, &self.mnt, &self.opts).expect("mount");
        self.watchdog = Some(Watchdog::start(
            h.mountpoint().to_path_buf(),
            h.connection(),
            self.limit,
        ));
        self.mnt = h.mountpoint().to_path_buf();
        self.handle = Some(h);
    }

    /// `rel` inside the mount.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts and mounts again (checks that data survived in CIPHERDIR).
    pub fn remount(&mut self) {
        self.unmount();
        self.mount();
    }

    /// Unmounts now (panics if it fails).
    pub fn unmount(&mut self) {
        if let Some(h) = self.handle.take() {
            h.unmount().expect("unmount");
        }
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }

    /// The pid of the `coffer mount --fg` serving a mount [served apart](Self::served_apart).
    pub fn daemon_pid(&self) -> Option<u32> {
        self.daemon.as_ref().map(|d| d.pid())
    }

    /// The mount handle.
    pub fn handle(&self) -> &MountHandle {
        self.handle.as_ref().expect("mounted")
    }
}

impl Drop for TestMount {
    fn drop(&mut self) {
        drop(self.handle.take());
        drop(self.daemon.take());
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }
}

/// The errno of a failed call (None for success).
pub fn errno<T>(r: &io::Result<T>) -> Option<i32> {
    r.as_ref().err().map(|e| e.raw_os_error().unwrap_or(-1))
}

/// A path as a C string.
pub fn cpath(p: &Path) -> std::ffi::CString {
    std::ffi::CString::new(p.as_os_str().as_bytes()).expect("no NUL in path")
}

/// Result of a libc call returning -1 on error.
pub fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// lsetxattr.
pub fn set_xattr(p: &Path, name: &str, value: &[u8], flags: i32) -> io::Result<()> {
    let c = cpath(p);
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid C strings and buffer.
    cvt(unsafe { libc::lsetxattr(c.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), flags) }).map(drop)
}

/// lgetxattr.
pub fn get_xattr(p: &Path, name: &str) -> io::Result<Vec<u8>> {
    let c = cpath(p);
    let n = std::ffi::CString::new(name).expect("name");
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C strings; buf writable for its length.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    Ok(buf)
}

/// llistxattr, user.* names only, sorted.
pub fn list_xattr(p: &Path) -> io::Result<Vec<String>> {
    let c = cpath(p);
    let mut buf = vec![0u8; 65536];
    // SAFETY: valid C string; buf writable for its length.
    let r = unsafe { libc::llistxattr(c.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(r as usize);
    let mut v: Vec<String> = buf
        .split(|&b| b == 0)
        .filter(|s| s.starts_with(b"user."))
        .map(|s| String::from_utf8_lossy(s).into_owned())
        .collect();
    v.sort();
    Ok(v)
}

/// lremovexattr.
pub fn remove_xattr(p: &Path, name: &str) -> io::Result<()> {
    let c = cpath(p);
    let n = std::ffi::CString::new(name).expect("name");
    // SAFETY: valid C strings.
    cvt(unsafe { libc::lremovexattr(c.as_ptr(), n.as_ptr()) }).map(drop)
}

/// A file handle as name_to_handle_at(2) fills it: `struct file_handle` with room for
/// MAX_HANDLE_SZ (128) bytes of payload.
#[repr(C)]
pub struct FileHandle {
    bytes: u32,
    kind: i32,
    payload: [u8; 128],
}

/// name_to_handle_at(AT_FDCWD, p, .., flags): the handle the kernel encodes for `p`.
pub fn name_to_handle(p: &Path, flags: i32) -> io::Result<FileHandle> {
    let c = cpath(p);
    let mut h = FileHandle {
        bytes: 128,
        kind: 0,
        payload: [0; 128],
    };
    let mut mount_id: libc::c_int = 0;
    let handle: *mut libc::file_handle = std::ptr::from_mut(&mut h).cast();
    // SAFETY: valid C string; `h` is a file_handle header followed by `bytes` bytes of room.
    cvt(unsafe { libc::name_to_handle_at(libc::AT_FDCWD, c.as_ptr(), handle, &mut mount_id, flags) })?;
    Ok(h)
}

/// open_by_handle_at(fd of `mount`, h, O_RDONLY): the file `h` names.
pub fn open_by_handle(mount: &Path, h: &mut FileHandle) -> io::Result<std::fs::File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    let dir = std::fs::File::open(mount)?;
    let handle: *mut libc::file_handle = std::ptr::from_mut(h).cast();
    // SAFETY: `h` was filled by name_to_handle_at; the returned fd is owned by the File.
    let fd = cvt(unsafe { libc::open_by_handle_at(dir.as_raw_fd(), handle, libc::O_RDONLY) })?;
    // SAFETY: fd is a fresh descriptor nobody else owns.
    Ok(unsafe { std::fs::File::from_raw_fd(fd) })
}

/// A coffer mount exports no file handles (its inode numbers do not survive a daemon
/// restart): name_to_handle_at on `file` fails with EOPNOTSUPP. Asked for an identifier only
/// (AT_HANDLE_FID, as fanotify does) the kernel still encodes one, and opening by it is ESTALE.
pub fn assert_exports_no_file_handles(mnt: &Path, file: &Path) {
    let r = name_to_handle(file, 0);
    assert_eq!(
        errno(&r),
        Some(libc::EOPNOTSUPP),
        "name_to_handle_at {}",
        file.display()
    );
    let mut fid = name_to_handle(file, libc::AT_HANDLE_FID).expect("AT_HANDLE_FID still encodes an identifier");
    let r = open_by_handle(mnt, &mut fid);
    // open_by_handle_at needs CAP_DAC_READ_SEARCH: an ordinary user gets EPERM before the
    // handle is looked at.
    // SAFETY: geteuid has no preconditions.
    let want = if unsafe { libc::geteuid() } == 0 {
        libc::ESTALE
    } else {
        libc::EPERM
    };
    assert_eq!(errno(&r), Some(want), "open_by_handle_at of an AT_HANDLE_FID handle");
}

/// Runs a program in `dir`, failing the test with its output if it fails; returns stdout.
pub fn run<A: AsRef<std::ffi::OsStr> + std::fmt::Debug>(dir: &Path, prog: &str, args: &[A]) -> String {
    let out = std::process::Command::new(prog)
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("{prog}: {e}"));
    assert!(
        out.status.success(),
        "{prog} {args:?} failed: {}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Copies the tree `from` into `to` (made if missing) as `cp -a` does: modes, times, symlinks
/// and xattrs kept, the way a sync client or a backup would deliver it.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(from.join("."))
        .arg(to)
        .status()
        .expect("cp");
    assert!(st.success(), "cp -a {}/. {}", from.display(), to.display());
}

/// Runs `f` on its own thread; fails the test if it has not returned within `limit` (a
/// blocked daemon thread would otherwise hang the test until the watchdog).
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what}: still blocked after {limit:?}"))
}

/// Polls `f` until it returns true, failing the test (with `what`) when `limit` passes first;
/// returns how long it took.
pub fn wait_for(limit: Duration, what: &str, mut f: impl FnMut() -> bool) -> Duration {
    let start = std::time::Instant::now();
    loop {
        if f() {
            return start.elapsed();
        }
        assert!(start.elapsed() < limit, "{what}: not seen within {limit:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether `mp` is a mountpoint now.
pub fn is_mounted(mp: &Path) -> bool {
    let want = mp.to_string_lossy();
    std::fs::read_to_string("/proc/self/mounts")
        .unwrap_or_default()
        .lines()
        .any(|l| l.split(' ').nth(1) == Some(&*want))
}

/// Runs `f` on the mount `m` and on the plain directory `p`; their results (or errnos) must
/// match. Returns the mount's result.
pub fn same<T: PartialEq + std::fmt::Debug>(
    m: &Path,
    p: &Path,
    what: &str,
    f: impl Fn(&Path) -> io::Result<T>,
) -> Option<T> {
    let a = f(m);
    let b = f(p);
    match (&a, &b) {
        (Ok(x), Ok(y)) => assert_eq!(x, y, "{what}: results differ (mount vs plain)"),
        _ => assert_eq!(errno(&a), errno(&b), "{what}: mount gave {a:?}, plain gave {b:?}"),
    }
    a.ok()
}

/// A file system mounted for one test (`mount -t KIND -o OPTS KIND AT`, needs root; or one
/// mounted otherwise, adopted as `Scratch(at)`), lazily unmounted on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    /// Mounts a fresh `kind` at `at` (made if missing).
    pub fn mount(at: &Path, kind: &str, opts: &str) -> Scratch {
        std::fs::create_dir_all(at).unwrap();
        let ok = std::process::Command::new("mount")
            .args(["-t", kind, "-o", opts, kind])
            .arg(at)
            .status()
            .unwrap()
            .success();
        assert!(ok, "mount -t {kind} failed (this test needs root)");
        Scratch(at.to_path_buf())
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// The kernel's limits on queued inotify and fanotify events, lowered while a mount starts
/// (its inotify instance or fanotify group keeps the limit it was made with) and put back on
/// drop.
pub struct SmallQueue(Vec<(&'static str, String)>);

impl SmallQueue {
    const PATHS: [&'static str; 2] = [
        "/proc/sys/fs/inotify/max_queued_events",
        "/proc/sys/fs/fanotify/max_queued_events",
    ];

    /// Sets the limits to `n` (None when it cannot: not root).
    pub fn set(n: u32) -> Option<SmallQueue> {
        let mut q = SmallQueue(Vec::new());
        for path in Self::PATHS {
            // A kernel before 5.13 has no fanotify limit to set (nor unprivileged fanotify).
            let Ok(old) = std::fs::read_to_string(path) else {
                continue;
            };
            std::fs::write(path, n.to_string()).ok()?;
            q.0.push((path, old));
        }
        (!q.0.is_empty()).then_some(q)
    }
}

impl Drop for SmallQueue {
    fn drop(&mut self) {
        for (path, old) in &self.0 {
            let _ = std::fs::write(path, old.trim());
        }
    }
}
