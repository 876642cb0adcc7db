//! Mount setup and teardown, for forward and reverse mode alike: checks, the per-CIPHERDIR
//! lock, fuser configuration, serving in the foreground (with SIGINT/SIGTERM and idle unmount)
//! or in background threads.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fuser::{BackgroundSession, Config, MountOption, Session, SessionACL};

use super::adapter::Adapter;
use super::config_watch::{ConfigWatch, Watching, CHECK_EVERY};
use super::core::CofferFs;
use super::lock::{self, MountLock};
use super::ops::Ops;
use super::reverse::ReverseFs;
use super::{atime, Atime, MountError, MountOptions};
use crate::vault::reverse::ReverseVault;
use crate::vault::{unlock, Vault};

/// Event-loop threads when the options leave it open. 8 rather than 4: untar of /usr/include
/// (7.9k files) 12% faster on 2 cores, other workloads within noise (scripts/bench-profile).
const DEFAULT_THREADS: usize = 8;
/// Where fusectl lists live connections.
const CONNECTIONS: &str = "/sys/fs/fuse/connections";

/// Set by SIGINT / SIGTERM.
static SIGNALLED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_sig: libc::c_int) {
    SIGNALLED.store(true, Ordering::SeqCst);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

/// What a mount serves: a vault (forward mode) or the encrypted view of a plain directory
/// (reverse mode).
#[derive(Debug)]
pub enum Served {
    /// A vault, served decrypted.
    Vault(Vault),
    /// A plain directory, served encrypted and read-only.
    Reverse(ReverseVault),
}

impl From<Vault> for Served {
    fn from(v: Vault) -> Self {
        Served::Vault(v)
    }
}

impl From<ReverseVault> for Served {
    fn from(v: ReverseVault) -> Self {
        Served::Reverse(v)
    }
}

/// Everything a mount needs, checked before the kernel is asked.
struct Prepared<T> {
    fs: T,
    mountpoint: PathBuf,
    setup: FuseSetup,
    /// The per-CIPHERDIR lock (forward mode), held until the mount ends.
    lock: Option<MountLock>,
    /// The config the vault was unlocked from (forward mode, when known): enables the
    /// control socket.
    config: Option<PathBuf>,
    /// The watch of the vault's config (forward mode), run while the mount serves.
    watch: Option<Arc<ConfigWatch>>,
}

/// How to ask the kernel for a mount: fuser's configuration, and what is set on the mount
/// after it is made (see `atime`).
#[derive(Debug, Clone)]
struct FuseSetup {
    config: Config,
    atime: Atime,
    nodiratime: bool,
}

fn check_mountpoint(mountpoint: &Path, nonempty: bool) -> Result<PathBuf, MountError> {
    let refuse = |why: String| MountError::Mountpoint {
        path: mountpoint.display().to_string(),
        why,
    };
    let canonical = mountpoint.canonicalize().map_err(|e| refuse(e.to_string()))?;
    let mut entries = std::fs::read_dir(&canonical).map_err(|e| refuse(e.to_string()))?;
    if !nonempty && entries.next().is_some() {
        return Err(refuse(
            "mountpoint is not empty (use --nonempty to mount over it anyway)".into(),
        ));
    }
    Ok(canonical)
}

fn no_fuse() -> Result<(), MountError> {
    if Path::new("/dev/fuse").exists() {
        Ok(())
    } else {
        Err(MountError::NoFuse)
    }
}

fn prepare_vault(mut vault: Vault, mountpoint: &Path, opts: &MountOptions) -> Result<Prepared<CofferFs>, MountError> {
    no_fuse()?;
    let mountpoint = check_mountpoint(mountpoint, opts.nonempty)?;
    let lock = lock::acquire_for_mount(vault.cipherdir(), &mountpoint)?;
    let fsname = if opts.fsname.is_empty() {
        vault.cipherdir().display().to_string()
    } else {
        opts.fsname.clone()
    };
    let read_only = opts.read_only || vault.read_only();
    let (noatime, touch) = atime::backing_policy(opts.atime, opts.nodiratime, read_only);
    vault.set_atime(noatime, touch);
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let config = opts
        .config
        .clone()
        .unwrap_or_else(|| unlock::config_path(vault.cipherdir(), None));
    // The epochs held now: a rekey of this mount (its control socket) adopts new ones.
    let keys = vault.keys_cell();
    let watch = Arc::new(ConfigWatch::new(config.clone(), Box::new(move || keys.load().ids())));
    let mut fs = CofferFs::new(vault, root && opts.allow_other).map_err(MountError::Vault)?;
    fs.config_watch = Some(watch.clone());
    fs.watch_backing(opts.kernel_cache, opts.atime, opts.watcher);
    fs.writeback_cache = (opts.writeback_cache && !read_only).into();
    if fs.writeback() && fs.watch.is_none() {
        log::warn!(
            "writeback cache without a watch of CIPHERDIR: a sync client's in-place change \
             of a file shows only once the kernel forgets the file"
        );
    } else if fs.writeback() {
        log::info!(
            "writeback cache on: writes are merged in the page cache and reach CIPHERDIR \
             when the kernel writes them back"
        );
    }
    let setup = fuse_config(fsname, read_only, opts);
    Ok(Prepared {
        fs,
        mountpoint,
        setup,
        lock: Some(lock),
        config: Some(config),
        watch: Some(watch),
    })
}

/// Reverse mode: always read-only, no lock (the plain directory stays usable as it is).
fn prepare_reverse(
    vault: ReverseVault,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<Prepared<ReverseFs>, MountError> {
    no_fuse()?;
    let mountpoint = check_mountpoint(mountpoint, opts.nonempty)?;
    let fsname = if opts.fsname.is_empty() {
        vault.plaindir().display().to_string()
    } else {
        opts.fsname.clone()
    };
    let setup = fuse_config(fsname, true, opts);
    let fs = ReverseFs::new(vault)?;
    Ok(Prepared {
        fs,
        mountpoint,
        setup,
        lock: None,
        config: None,
        watch: None,
    })
}

/// Mounts `fs`: hands the session's notifier to `slot` and raises the mount's readahead.
fn new_session<T: Ops>(fs: Arc<T>, mountpoint: &Path, setup: &FuseSetup) -> io::Result<Session<Adapter<T>>> {
    let slot = fs.notifier_slot();
    let session = Session::new(Adapter::new(fs), mountpoint, &setup.config)?;
    // On failure the session is dropped, which unmounts.
    atime::apply(mountpoint, setup.atime, setup.nodiratime).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("cannot set the access-time options on the mount: {e}"),
        )
    })?;
    let _ = slot.set(session.notifier());
    super::readahead::raise(mountpoint);
    Ok(session)
}

/// The fuser configuration of a mount.
fn fuse_config(fsname: String, read_only: bool, opts: &MountOptions) -> FuseSetup {
    let mut mount_options = vec![
        MountOption::FSName(fsname),
        MountOption::Subtype("coffer".into()),
        if opts.suid {
            MountOption::Suid
        } else {
            MountOption::NoSuid
        },
        if opts.dev { MountOption::Dev } else { MountOption::NoDev },
    ];
    if read_only {
        mount_options.push(MountOption::RO);
    }
    mount_options.extend(atime::mount_options(opts.atime));
    // Several users: the kernel checks modes. Owner-only read-write mounts leave it to the
    // daemon, which runs as that owner and whose backing syscalls check the same modes (and
    // access() is answered from them): the kernel then skips a GETATTR of the parent before
    // every create and remove (the parent's attributes change with each).
    if opts.allow_other || read_only {
        mount_options.push(MountOption::DefaultPermissions);
    }
    let mut config = Config::default();
    config.mount_options = mount_options;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    config.n_threads = Some(if opts.threads == 0 {
        DEFAULT_THREADS
    } else {
        opts.threads
    });
    config.clone_fd = true;
    FuseSetup {
        config,
        atime: opts.atime,
        nodiratime: opts.nodiratime,
    }
}

/// Unmounts `mountpoint`; when busy and `lazy_if_busy`, detaches it instead.
pub fn unmount(mountpoint: &Path, lazy_if_busy: bool) -> io::Result<()> {
    let c = CString::new(mountpoint.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    // SAFETY: valid C string.
    if unsafe { libc::umount2(c.as_ptr(), 0) } == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EBUSY) if lazy_if_busy => {
            log::warn!("{}: busy; detaching it (lazy unmount)", mountpoint.display());
            // SAFETY: valid C string.
            if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
                Ok(())
            } else {
                Err(io::Error::last_os_error())
            }
        }
        Some(libc::EPERM) => {
            // Not root: the setuid helper unmounts for us.
            let mut last = e;
            for bin in ["fusermount3", "fusermount"] {
                let mut cmd = std::process::Command::new(bin);
                cmd.arg("-u");
                if lazy_if_busy {
                    cmd.arg("-z");
                }
                match cmd.arg(mountpoint).status() {
                    Ok(s) if s.success() => return Ok(()),
                    Ok(s) => last = io::Error::other(format!("{bin} -u failed: {s}")),
                    Err(err) => last = err,
                }
            }
            Err(last)
        }
        _ => Err(e),
    }
}

/// The fusectl connection number of the FUSE mount at `mountpoint`.
pub fn connection_of(mountpoint: &Path) -> io::Result<u32> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(mountpoint)?.dev();
    Ok(libc::minor(dev))
}

/// Aborts FUSE connection `conn` (every pending and future request fails with ENOTCONN),
/// mounting fusectl first when needed. This frees a hung mount.
pub fn abort_connection(conn: u32) -> io::Result<()> {
    let dir = Path::new(CONNECTIONS);
    if std::fs::read_dir(dir).map(|mut d| d.next().is_none()).unwrap_or(true) {
        let none = c"fusectl";
        let target = c"/sys/fs/fuse/connections";
        // SAFETY: valid C strings; a failure (already mounted, no permission) is harmless here.
        unsafe { libc::mount(none.as_ptr(), target.as_ptr(), none.as_ptr(), 0, std::ptr::null()) };
    }
    std::fs::write(dir.join(conn.to_string()).join("abort"), b"1")
}

/// Mounts `served` at `mountpoint` and serves it in the foreground until unmounted (`coffer
/// unmount`, `fusermount3 -u`, SIGINT/SIGTERM/SIGHUP, or `opts.idle` without requests and
/// open files). `on_ready` runs once the kernel has the mount. A non-empty mountpoint is
/// refused unless `opts.nonempty`; a second mount of the same CIPHERDIR on this machine is
/// refused. A reverse view is always read-only.
pub fn mount(
    served: impl Into<Served>,
    mountpoint: &Path,
    opts: &MountOptions,
    on_ready: Box<dyn FnOnce() + Send>,
) -> Result<(), MountError> {
    match served.into() {
        Served::Vault(v) => serve(prepare_vault(v, mountpoint, opts)?, opts.idle, on_ready),
        Served::Reverse(v) => serve(prepare_reverse(v, mountpoint, opts)?, opts.idle, on_ready),
    }
}

/// Serves a prepared mount in the foreground until unmounted, a signal, or `idle` without
/// requests and open files. Its lock is held until the end.
fn serve<T: Ops>(p: Prepared<T>, idle: Option<Duration>, on_ready: Box<dyn FnOnce() + Send>) -> Result<(), MountError> {
    install_signal_handlers();
    let activity = p.fs.activity();
    let mountpoint = p.mountpoint.as_path();
    let fs = Arc::new(p.fs);
    let session = new_session(fs.clone(), mountpoint, &p.setup)?;
    let lock = p.lock;
    let watching = start_watch(p.watch.as_ref());
    let backing_watch = T::watch_backing(&fs);
    match &lock {
        Some(l) => log::info!("mounted {} (lock {})", mountpoint.display(), l.path().display()),
        None => log::info!("mounted {}", mountpoint.display()),
    }
    let control = match (&lock, p.config) {
        (Some(l), Some(config)) => T::control(&fs, super::control::socket_path(l.path()), config),
        _ => None,
    };
    drop(fs);
    // From another thread: on_ready may touch the mount, which needs the loop below serving.
    std::thread::Builder::new()
        .name("coffer-ready".into())
        .spawn(on_ready)?;

    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let stop = stop.clone();
        let mp = mountpoint.to_path_buf();
        std::thread::Builder::new().name("coffer-watch".into()).spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(100));
                let signalled = SIGNALLED.swap(false, Ordering::SeqCst);
                let idle_now = idle.is_some_and(|d| activity.idle_for() >= d && activity.open_files() == 0);
                if signalled || idle_now {
                    let why = if signalled { "signal" } else { "idle timeout" };
                    log::info!("unmounting {} ({why})", mp.display());
                    match unmount(&mp, signalled) {
                        Ok(()) => break,
                        Err(e) => log::warn!("unmount {}: {e}", mp.display()),
                    }
                }
            }
        })?
    };
    let served = session_end(session.run());
    stop.store(true, Ordering::SeqCst);
    let _ = watcher.join();
    drop(backing_watch);
    drop(control);
    drop(watching);
    drop(lock);
    served.map_err(MountError::Io)
}

/// Starts the config watch of a forward mount; a thread that cannot start costs the mount
/// only its warning about key epochs added elsewhere.
fn start_watch(watch: Option<&Arc<ConfigWatch>>) -> Option<Watching> {
    match watch?.start(CHECK_EVERY) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("cannot watch the config for key epochs added elsewhere: {e}");
            None
        }
    }
}

/// The end of a serving loop. ECONNABORTED is how a reader of `/dev/fuse` learns that the
/// connection went away under it (an unmount racing the serving threads of a cloned
/// descriptor, or an abort): the mount is over, which is what the loop waits for.
fn session_end(r: io::Result<()>) -> io::Result<()> {
    match r {
        Err(e) if e.raw_os_error() == Some(libc::ECONNABORTED) => {
            log::debug!("the FUSE connection ended: {e}");
            Ok(())
        }
        r => r,
    }
}

/// How often [`MountHandle`] tries again an unmount that found the mount busy, and how long it
/// waits before each try.
const BUSY_RETRIES: usize = 20;
const BUSY_PAUSE: std::time::Duration = std::time::Duration::from_millis(50);

/// A mount served by background threads; dropping it unmounts.
#[derive(Debug)]
pub struct MountHandle {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    conn: Option<u32>,
    _lock: Option<MountLock>,
    /// Stopped after the unmount (fields drop after [`Drop::drop`]).
    _watching: Option<Watching>,
    /// The watch of CIPHERDIR, stopped after the unmount.
    _backing_watch: Option<super::watch::Running>,
}

impl MountHandle {
    /// The (canonical) mountpoint.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The fusectl connection number (for aborting a hung mount).
    pub fn connection(&self) -> Option<u32> {
        self.conn
    }

    /// Unmounts now, reporting failure.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.shutdown().map_err(MountError::Io)
    }

    fn shutdown(&mut self) -> io::Result<()> {
        let Some(bg) = self.session.take() else { return Ok(()) };
        let mut r = unmount(&self.mountpoint, false);
        // A process forked elsewhere in this one holds copies of its descriptors, some of them
        // files on this mount, until it calls exec: the mount is busy for that moment only.
        for _ in 0..BUSY_RETRIES {
            match &r {
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                    std::thread::sleep(BUSY_PAUSE);
                    r = unmount(&self.mountpoint, false);
                }
                _ => break,
            }
        }
        if let Err(e) = &r {
            // Busy or broken: abort the connection so the serving threads end, then detach.
            log::warn!("unmount {}: {e}; aborting the connection", self.mountpoint.display());
            if let Some(c) = self.conn {
                let _ = abort_connection(c);
            }
            let _ = unmount(&self.mountpoint, true);
        }
        // The unmount's own error says more than the serving threads' (an aborted connection).
        let joined = session_end(bg.join());
        r.and(joined)
    }
}

impl Drop for MountHandle {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::warn!("unmount {}: {e}", self.mountpoint.display());
        }
    }
}

/// Mounts `served` at `mountpoint` (as [`mount`] does) and serves it from background threads
/// (for tests and embedding). Dropping the handle unmounts.
pub fn spawn(served: impl Into<Served>, mountpoint: &Path, opts: &MountOptions) -> Result<MountHandle, MountError> {
    match served.into() {
        Served::Vault(v) => spawn_prepared(prepare_vault(v, mountpoint, opts)?),
        Served::Reverse(v) => spawn_prepared(prepare_reverse(v, mountpoint, opts)?),
    }
}

fn spawn_prepared<T: Ops>(p: Prepared<T>) -> Result<MountHandle, MountError> {
    let fs = Arc::new(p.fs);
    let session = new_session(fs.clone(), &p.mountpoint, &p.setup)?;
    let backing_watch = T::watch_backing(&fs);
    drop(fs);
    let bg = session.spawn()?;
    let watching = start_watch(p.watch.as_ref());
    // Only now: a stat of the mountpoint needs the session serving.
    let conn = connection_of(&p.mountpoint).ok();
    Ok(MountHandle {
        session: Some(bg),
        mountpoint: p.mountpoint,
        conn,
        _lock: p.lock,
        _watching: watching,
        _backing_watch: backing_watch,
    })
}
