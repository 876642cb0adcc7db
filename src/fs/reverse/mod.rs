//! Reverse mode over FUSE: a read-only mount of the encrypted view of a plain directory
//! ([`ReverseVault`]). Every write operation fails with EROFS; xattrs are not exposed.
//!
//! Reuses the forward mount's pieces: the inode table ([`Inodes`](super::inodes::Inodes)),
//! stat conversion ([`to_attr`](super::attr::to_attr)), handle tables, and session setup
//! (`session::fuse_config`, `serve`, `spawn_fs`). Files: `nodes` (what each inode stands for),
//! `ops` (the `do_*` helpers), `filesystem` (the fuser trait).

mod filesystem;
mod nodes;
mod ops;

use std::path::Path;

use super::session::{check_mountpoint, fuse_config, serve, spawn_fs, FuseSetup};
use super::{MountError, MountHandle, MountOptions};
use crate::vault::reverse::ReverseVault;

pub use nodes::ReverseFs;

fn prepare(
    vault: ReverseVault,
    mountpoint: &Path,
    opts: &MountOptions,
) -> Result<(ReverseFs, std::path::PathBuf, FuseSetup), MountError> {
    if !Path::new("/dev/fuse").exists() {
        return Err(MountError::NoFuse);
    }
    let mountpoint = check_mountpoint(mountpoint, opts.nonempty)?;
    let fsname = if opts.fsname.is_empty() {
        vault.plaindir().display().to_string()
    } else {
        opts.fsname.clone()
    };
    let config = fuse_config(fsname, true, opts);
    let fs = ReverseFs::new(vault)?;
    Ok((fs, mountpoint, config))
}

/// Mounts the reverse view at `mountpoint` and serves it in the foreground until unmounted
/// (or a signal, or `opts.idle`). Always read-only. `on_ready` runs once the kernel has it.
pub fn mount(
    vault: ReverseVault,
    mountpoint: &Path,
    opts: &MountOptions,
    on_ready: Box<dyn FnOnce() + Send>,
) -> Result<(), MountError> {
    let (fs, mountpoint, config) = prepare(vault, mountpoint, opts)?;
    let activity = fs.activity();
    let slot = fs.notifier_slot();
    serve(
        fs,
        activity,
        &mountpoint,
        &config,
        opts.idle,
        None,
        Some(slot),
        on_ready,
    )
}

/// Mounts the reverse view and serves it from background threads; dropping the handle unmounts.
pub fn spawn(vault: ReverseVault, mountpoint: &Path, opts: &MountOptions) -> Result<MountHandle, MountError> {
    let (fs, mountpoint, config) = prepare(vault, mountpoint, opts)?;
    let slot = fs.notifier_slot();
    spawn_fs(fs, &mountpoint, &config, None, Some(slot))
}
