//! Helpers shared by the sync tests (tests/sync/): a mounted test vault, backing names of
//! plaintext paths, polling a mount until a change shows, listing names.

#![allow(dead_code)]

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use coffer::fs::{MountHandle, MountOptions};
use coffer::vault::Vault;

use super::common::{spawn_mount, Watchdog, WATCHDOG};

/// How long a change made in CIPHERDIR may take to show in the mount: the 1 s entry/attribute
/// TTL plus slack for a loaded machine.
pub const SHOW_WITHIN: Duration = Duration::from_millis(2500);

/// The vault in `TMP/cipher`, mounted at `TMP/mnt` under a watchdog; unmounted on drop.
pub struct Mounted {
    handle: Option<MountHandle>,
    watchdog: Option<Watchdog>,
    /// CIPHERDIR.
    pub cipher: PathBuf,
    /// The mountpoint.
    pub mnt: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Mounted {
    /// Mounts the vault in `cipher` (inside `tmp`) with default options at a new `TMP/mnt`.
    pub fn start(tmp: tempfile::TempDir, cipher: PathBuf) -> Mounted {
        let mnt = tmp.path().join("mnt");
        std::fs::create_dir(&mnt).expect("mkdir mnt");
        let h = spawn_mount(&cipher, &mnt, &MountOptions::default()).expect("mount");
        let w = Watchdog::start(h.mountpoint().to_path_buf(), h.connection(), WATCHDOG);
        Mounted {
            handle: Some(h),
            watchdog: Some(w),
            cipher,
            mnt,
            _tmp: tmp,
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.handle.take());
        if let Some(w) = self.watchdog.take() {
            w.stop();
        }
    }
}

/// The vault behind a mount, opened a second time (library only) to compute backing names.
pub struct Backing {
    /// The vault.
    pub vault: Vault,
    /// CIPHERDIR.
    pub cipher: PathBuf,
}

impl Backing {
    /// Opens the vault in `cipher` with the test password.
    pub fn open(cipher: &Path) -> Backing {
        let vault = Vault::unlock(cipher, None, super::common::PASSWORD, false).expect("unlock");
        Backing {
            vault,
            cipher: cipher.to_path_buf(),
        }
    }

    /// Backing path of plaintext directory `dir` ("" for the root).
    pub fn dir(&self, dir: &str) -> PathBuf {
        let d = self.vault.open_dir_path(dir.as_bytes()).expect("open dir");
        self.cipher.join(&d.rel)
    }

    /// Backing entry name of `name` in plaintext directory `dir` (the name a new entry gets).
    pub fn entry(&self, dir: &str, name: &str) -> String {
        let d = self.vault.open_dir_path(dir.as_bytes()).expect("open dir");
        let c = self.vault.cipher_name(&d, name.as_bytes()).expect("cipher name");
        String::from_utf8(c.entry).expect("ascii")
    }

    /// Full backing path of `name` in plaintext directory `dir`.
    pub fn path(&self, dir: &str, name: &str) -> PathBuf {
        self.dir(dir).join(self.entry(dir, name))
    }
}

/// Sorted names in a directory (lossy UTF-8).
pub fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .map(|e| String::from_utf8_lossy(e.expect("entry").file_name().as_bytes()).into_owned())
        .collect();
    v.sort();
    v
}

/// Copies a file to `to` the way sync clients deliver one: a temporary next to it, then rename.
pub fn replace_via_temp(data: &[u8], to: &Path) {
    let tmp = to.with_file_name(".syncthing.incoming.tmp");
    std::fs::write(&tmp, data).expect("write temp");
    std::fs::rename(&tmp, to).expect("rename over");
}
