//! One mount per CIPHERDIR on a machine: an flock on a lock file kept outside the synced tree
//! (`/run/coffer/<hash of the canonical CIPHERDIR>.lock`), held for the life of the mount.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::MountError;

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

/// Takes the lock for `cipherdir`, or explains that it is already mounted.
pub fn acquire(cipherdir: &Path) -> Result<MountLock, MountError> {
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
        // SAFETY: valid fd; flock has no memory effects.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(MountError::AlreadyMounted {
                    cipherdir: canonical.display().to_string(),
                    lock: path,
                });
            }
            return Err(MountError::Io(e));
        }
        // For a human looking at the lock: what it guards and who holds it.
        let _ = file.set_len(0);
        let _ = writeln!(file, "{}\npid {}", canonical.display(), std::process::id());
        return Ok(MountLock { _file: file, path });
    }
    Err(MountError::Io(
        last_err.unwrap_or_else(|| std::io::Error::from_raw_os_error(libc::ENOENT)),
    ))
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
}
