//! One mount per CIPHERDIR on a machine: an flock on a lock file kept outside the synced tree
//! (`/run/coffer/<hash of the canonical CIPHERDIR>.lock`), held for the life of the mount.
//!
//! The lock file says who holds it (`pid N`) and, for a mount, where (`mountpoint M`, escaped
//! as in /proc/self/mountinfo). `umount` returns before the serving process has exited and
//! let go of the lock, so a mount (or `fsck --repair`) that finds the lock held by a process
//! whose mount is gone waits for it (up to [`EXIT_WAIT`]) instead of failing; a live mount,
//! or a holder that is not a mount, is refused at once.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::mounts;
use super::MountError;

/// How long a mount waits for the process of an unmounted mount to exit and release the lock.
pub const EXIT_WAIT: Duration = Duration::from_secs(10);
/// How often it looks again.
const POLL: Duration = Duration::from_millis(20);

/// A held mount lock; dropping it releases the lock.
#[derive(Debug)]
pub struct MountLock {
    _file: File,
    path: PathBuf,
}

impl MountLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Candidate directories for lock files, best first.
fn lock_dirs() -> Vec<PathBuf> {
    let mut dirs = vec![PathBuf::from("/run/coffer")];
    if let Some(x) = std::env::var_os("XDG_RUNTIME_DIR") {
        dirs.push(PathBuf::from(x).join("coffer"));
    }
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    dirs.push(std::env::temp_dir().join(format!("coffer-{uid}")));
    dirs
}

/// The lock file name for a canonical CIPHERDIR.
fn lock_name(canonical: &Path) -> String {
    let digest = Sha256::digest(canonical.as_os_str().as_bytes());
    let hex: String = digest.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("{hex}.lock")
}

fn open_in(dir: &Path, name: &str) -> std::io::Result<(File, PathBuf)> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    let path = dir.join(name);
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
        .open(&path)?;
    Ok((f, path))
}

/// Who holds a lock, as its file says.
#[derive(Debug, Default, PartialEq)]
struct Holder {
    pid: Option<u32>,
    /// The mountpoint, escaped as in /proc/self/mountinfo; `None` for a holder that is not a
    /// mount (`fsck --repair`).
    mountpoint: Option<Vec<u8>>,
}

impl Holder {
    fn parse(text: &[u8]) -> Holder {
        let mut h = Holder::default();
        for line in text.split(|&b| b == b'\n') {
            if let Some(p) = line.strip_prefix(b"pid ") {
                h.pid = std::str::from_utf8(p).ok().and_then(|p| p.trim().parse().ok());
            } else if let Some(m) = line.strip_prefix(b"mountpoint ") {
                h.mountpoint = Some(m.to_vec());
            }
        }
        h
    }

    fn read(file: &mut File) -> Holder {
        let mut text = Vec::new();
        let _ = file.rewind().and_then(|()| file.read_to_end(&mut text));
        Holder::parse(&text)
    }

    /// A mount whose mountpoint no longer has a FUSE mount: its process is on its way out.
    fn is_exiting_mount(&self) -> bool {
        self.mountpoint
            .as_deref()
            .is_some_and(|m| !mounts::is_fuse_mounted(m, self.pid))
    }
}

fn try_flock(file: &File) -> std::io::Result<bool> {
    // SAFETY: valid fd; flock has no memory effects.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let e = std::io::Error::last_os_error();
    if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(e)
    }
}

/// Takes the lock for `cipherdir` without mounting (`fsck --repair`), or explains that it is
/// already mounted. A holder whose mount is gone is waited for.
pub fn acquire(cipherdir: &Path) -> Result<MountLock, MountError> {
    acquire_inner(cipherdir, None)
}

/// Takes the lock for a mount of `cipherdir` at `mountpoint` (canonical). A holder whose
/// mount is gone is waited for; a live mount is refused at once.
pub fn acquire_for_mount(cipherdir: &Path, mountpoint: &Path) -> Result<MountLock, MountError> {
    acquire_inner(cipherdir, Some(mountpoint))
}

fn acquire_inner(cipherdir: &Path, mountpoint: Option<&Path>) -> Result<MountLock, MountError> {
    let canonical = cipherdir.canonicalize()?;
    let name = lock_name(&canonical);
    let mut last_err = None;
    for dir in lock_dirs() {
        let (mut file, path) = match open_in(&dir, &name) {
            Ok(x) => x,
            Err(e) => {
                last_err = Some(e);
                continue;
            }
        };
        wait_for(&mut file, &canonical, &path)?;
        // For a human looking at the lock, and for the next mount: what it guards, who
        // holds it, and where it is mounted.
        let _ = file.set_len(0);
        let mut text = format!("{}\npid {}\n", canonical.display(), std::process::id()).into_bytes();
        if let Some(mp) = mountpoint {
            text.extend_from_slice(b"mountpoint ");
            text.extend_from_slice(&mounts::escape(mp.as_os_str().as_bytes()));
            text.push(b'\n');
        }
        let _ = file.rewind().and_then(|()| file.write_all(&text));
        return Ok(MountLock { _file: file, path });
    }
    Err(MountError::Io(
        last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT)),
    ))
}

/// Locks `file`, waiting while (and only while) the holder is a mount whose mountpoint is gone.
fn wait_for(file: &mut File, canonical: &Path, path: &Path) -> Result<(), MountError> {
    let deadline = Instant::now() + EXIT_WAIT;
    loop {
        if try_flock(file)? {
            return Ok(());
        }
        let holder = Holder::read(file);
        if !holder.is_exiting_mount() {
            return Err(MountError::AlreadyMounted {
                cipherdir: canonical.display().to_string(),
                lock: path.to_path_buf(),
            });
        }
        if Instant::now() >= deadline {
            return Err(MountError::HolderNotExiting {
                cipherdir: canonical.display().to_string(),
                lock: path.to_path_buf(),
                pid: holder.pid.unwrap_or(0),
                waited: EXIT_WAIT,
            });
        }
        std::thread::sleep(POLL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_until_released() {
        let tmp = tempfile::tempdir().unwrap();
        let a = acquire(tmp.path()).unwrap();
        let e = acquire(tmp.path()).unwrap_err();
        assert!(matches!(e, MountError::AlreadyMounted { .. }), "{e}");
        assert!(e.to_string().contains("already mounted"), "{e}");
        drop(a);
        acquire(tmp.path()).unwrap();
    }

    #[test]
    fn a_mount_waits_for_a_holder_whose_mount_is_gone() {
        let tmp = tempfile::tempdir().unwrap();
        let gone = tmp.path().join("not-a-mountpoint");
        let a = acquire_for_mount(tmp.path(), &gone).unwrap();
        let holder = Holder::parse(&std::fs::read(a.path()).unwrap());
        assert_eq!(holder.pid, Some(std::process::id()));
        assert!(holder.is_exiting_mount(), "{holder:?}");
        let waiter = {
            let dir = tmp.path().to_path_buf();
            std::thread::spawn(move || acquire_for_mount(&dir, &dir.join("b")).map(|_| ()))
        };
        std::thread::sleep(Duration::from_millis(300));
        assert!(!waiter.is_finished(), "did not wait for the exiting holder");
        drop(a);
        waiter.join().unwrap().unwrap();
        // A holder that is not a mount (fsck --repair) is refused at once.
        let _b = acquire(tmp.path()).unwrap();
        let e = acquire_for_mount(tmp.path(), &gone).unwrap_err();
        assert!(matches!(e, MountError::AlreadyMounted { .. }), "{e}");
    }

    #[test]
    fn holder_lines() {
        let h = Holder::parse(b"/v\npid 42\nmountpoint /m\\040n\n");
        assert_eq!(h.pid, Some(42));
        assert_eq!(h.mountpoint.as_deref(), Some(&b"/m\\040n"[..]));
        assert_eq!(Holder::parse(b"/v\npid 7\n").mountpoint, None);
    }
}
