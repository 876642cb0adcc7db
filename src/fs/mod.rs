//! Layer 4: the FUSE filesystem over a [`Vault`](crate::vault::Vault). It never touches a cipher.
//!
//! Cache policy (chosen so that changes a sync client makes in CIPHERDIR show up): with the
//! kernel cache on (the default where CIPHERDIR can be watched, see [`watch`]), entries,
//! attributes and absences of names in watched directories are kept up to 30 s and pages
//! across opens, each dropped by the watcher when the backing tree changes; elsewhere entry
//! and attribute timeouts of 1 s and no `keep_cache`. Always `auto_inval_data` (pages are
//! dropped when size or mtime change) and, unless `--writeback-cache` asks for it, no
//! writeback cache (with it the kernel ignores size and mtime from getattr, see
//! `Ops::writeback_cache`). Never `direct_io` (it breaks mmap). Without the writeback
//! cache, writes reach the backing file before the write call returns. Readahead is raised
//! to a few MiB when running as root (`readahead`).
//!
//! Files: `ops` (the `Result`-returning operations a file system serves, write operations
//! EROFS by default), `adapter` (the one fuser `Filesystem`, over any `Ops`; capability
//! requests), `forward` (the forward file system's `Ops`), [`reverse`] (reverse mode's),
//! [`inodes`] (inode numbers, lookup counts), [`handles`], [`attr`] (stat conversion), `core`
//! (shared state, finding inodes in CIPHERDIR), `dir_cache` (backing directories kept open),
//! `dirops`, `fileops`, `attrops`, `xattrops`, [`session`] (mount, unmount, signals), `lock`,
//! `readahead`, `config_watch` (a warning when the synced config gains a key epoch the mount
//! does not have), [`watch`] (CIPHERDIR's watch, fanotify or inotify, and the kernel cache it allows).

mod adapter;
mod atime;
pub mod attr;
mod attrops;
mod config_watch;
pub mod control;
mod core;
pub mod counts;
mod dir_cache;
mod dirops;
mod fileops;
mod forward;
pub mod handles;
pub mod inodes;
mod live;
mod lock;
mod memory;
pub mod mounts;
mod ops;
mod readahead;
pub mod reverse;
pub mod session;
pub mod watch;
mod xattrops;

use std::path::PathBuf;
use std::time::Duration;

use crate::vault::VaultError;

pub use self::core::CofferFs;

/// Init flag both modes request: the mount exports no file handles. Inode numbers are handed
/// out per daemon run, so a handle taken today could not be opened after a remount; with this
/// flag (FUSE protocol 7.40, `flags2` bit 6, i.e. bit 38 of the 64-bit init flags; kernel 6.9+)
/// `name_to_handle_at` fails with EOPNOTSUPP up front instead of handing out handles that
/// later give ESTALE. NFS export of a mount is not supported: export the backing directory.
pub(crate) const NO_FILE_HANDLES: fuser::InitFlags = fuser::InitFlags::FUSE_NO_EXPORT_SUPPORT;
pub use lock::{acquire as lock_vault, MountLock, EXIT_WAIT as LOCK_EXIT_WAIT};
pub use session::{abort_connection, connection_of, mount, spawn, unmount, MountHandle, Served};

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
    /// When reads update access times.
    pub atime: Atime,
    /// Never update directory access times.
    pub nodiratime: bool,
    /// Allow mounting over a non-empty directory.
    pub nonempty: bool,
    /// fsname shown in /proc/mounts (empty: CIPHERDIR).
    pub fsname: String,
    /// FUSE worker threads (0 = default).
    pub threads: usize,
    /// Unmount after this long without any filesystem request and with no open files.
    pub idle: Option<Duration>,
    /// The config file the vault was unlocked from (`None`: CIPHERDIR/coffer.conf). Forward
    /// mode: watched for key epochs added elsewhere, and read by the control socket through
    /// which `coffer rekey` rekeys the mounted vault.
    pub config: Option<PathBuf>,
    /// Whether the kernel may cache for longer, kept honest by watching CIPHERDIR.
    pub kernel_cache: KernelCache,
    /// How CIPHERDIR is watched for the kernel cache.
    pub watcher: Watcher,
    /// The kernel's writeback cache: writes land in the page cache and reach the daemon
    /// merged, later; the kernel keeps the size and times of files it holds, and a full disk
    /// shows at fsync and close instead of at write.
    pub writeback_cache: bool,
}

/// `--kernel-cache`: whether the kernel keeps names, attributes, listings and pages for longer
/// than a second, each dropped when the watch of CIPHERDIR sees a change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum KernelCache {
    /// On where CIPHERDIR can be watched; off on network and FUSE file systems.
    #[default]
    Auto,
    /// On everywhere (changes made on another machine of a network file system show late).
    On,
    /// Off: 1 s timeouts everywhere, nothing watched.
    Off,
}

/// `--watcher`: what watches CIPHERDIR for the kernel cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Watcher {
    /// fanotify where the mount may use it (Linux 5.13 and later; its events name the process
    /// that made them), else inotify. A change to CIPHERDIR made by the process serving the
    /// mount is then the mount's own, whichever thread made it: a program that serves a mount
    /// in its own process (`spawn`) and also changes that CIPHERDIR behind it, as a sync
    /// client would, must use [`Watcher::Inotify`].
    #[default]
    Auto,
    /// inotify only (the mount's own changes told by the state each left).
    Inotify,
}

/// When reads update access times (the mount(8) options of the same names).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Atime {
    /// `noatime`: never.
    NoAtime,
    /// `relatime`: when the access time is not newer than the modification or change time,
    /// or is a day old.
    #[default]
    RelAtime,
    /// `strictatime`: on every read.
    StrictAtime,
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
    /// This CIPHERDIR is already mounted on this machine.
    #[error("{cipherdir} is already mounted on this machine (lock {} is held by another coffer process); unmount it first", lock.display())]
    AlreadyMounted {
        /// The canonical CIPHERDIR.
        cipherdir: String,
        /// The lock file.
        lock: PathBuf,
    },
    /// The process that served an unmounted mount of this CIPHERDIR still holds its lock.
    #[error("{cipherdir} was unmounted, but its coffer process (pid {pid}) still holds lock {} after {}s; wait for it to exit (a lazily unmounted mount ends when its last file is closed)", lock.display(), waited.as_secs())]
    HolderNotExiting {
        /// The canonical CIPHERDIR.
        cipherdir: String,
        /// The lock file.
        lock: PathBuf,
        /// The holder's pid (0 when unknown).
        pid: u32,
        /// How long the mount waited.
        waited: Duration,
    },
    /// /dev/fuse does not exist.
    #[error("/dev/fuse is missing: FUSE is not available here (load the fuse module, or in a container pass --device /dev/fuse)")]
    NoFuse,
    /// The vault could not be opened for serving.
    #[error("{0}")]
    Vault(#[from] VaultError),
    /// The kernel refused the mount, or the session failed.
    #[error("mount failed: {0}")]
    Io(#[from] std::io::Error),
}
