//! Layer 4: the FUSE filesystem over a [`Vault`](crate::vault::Vault). It never touches a cipher.
//!
//! (In progress: the mount is being built; see issue 3.)

use std::path::Path;
use std::time::Duration;

use crate::vault::Vault;

/// How to mount.
#[derive(Debug, Clone, Default)]
pub struct MountOptions {
    /// Refuse every write (EROFS).
    pub read_only: bool,
    /// Let other users access the mount (needs root or user_allow_other).
    pub allow_other: bool,
    /// Honour setuid bits (default: nosuid).
    pub suid: bool,
    /// Honour device nodes (default: nodev).
    pub dev: bool,
    /// Allow mounting over a non-empty directory.
    pub nonempty: bool,
    /// fsname shown in /proc/mounts (CIPHERDIR).
    pub fsname: String,
    /// FUSE worker threads (0 = default).
    pub threads: usize,
    /// Unmount after this long without any filesystem request.
    pub idle: Option<Duration>,
}

/// Mount errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// The mountpoint is missing, not a directory, or not empty.
    #[error("{path}: {why}")]
    Mountpoint {
        /// The mountpoint.
        path: String,
        /// Why it is refused.
        why: String,
    },
    /// The kernel refused the mount, or the session failed.
    #[error("mount failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Mounts `vault` at `mountpoint` and serves it until unmounted (or SIGINT/SIGTERM).
/// `on_ready` runs once the kernel has the mount.
pub fn mount(
    _vault: Vault,
    mountpoint: &Path,
    _opts: &MountOptions,
    _on_ready: Box<dyn FnOnce() + Send>,
) -> Result<(), MountError> {
    Err(MountError::Mountpoint { path: mountpoint.display().to_string(), why: "mount not built yet".into() })
}
