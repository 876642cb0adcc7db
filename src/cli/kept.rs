//! Configs a rekey on this machine wrote, kept in the user's state directory
//! (`$XDG_STATE_HOME/coffer/configs/<hash of CIPHERDIR>-<epoch>.conf`, mode 0600 in a 0700
//! directory) until `rekey --finish`. When two machines rekey at once and the sync client keeps
//! no conflict copy of `coffer.conf` (the other machine's config simply replaces this one's),
//! the objects this machine moved to its own epoch stay readable: the next `coffer rekey` here
//! reads the kept config like a conflict copy and moves them on. A kept config holds exactly
//! what `coffer.conf` held (the keys wrapped under the password), nothing more.

use std::path::{Path, PathBuf};

use coffer::format::config::Config;
use coffer::vault::unlock;

use super::pin::{cipherdir_key, state_dir};

fn dir() -> Option<PathBuf> {
    Some(state_dir()?.join("configs"))
}

/// Keeps `cfg`, just written as the config of `cipherdir` by a rekey; a failure is a warning.
pub fn keep(cipherdir: &Path, cfg: &Config) {
    let Some(dir) = dir() else { return };
    let Some(epoch) = cfg.epochs().ok().flatten().map(|e| e.newest().id.to_hex()) else {
        return;
    };
    let made = {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)
    };
    let path = dir.join(format!("{}-{epoch}.conf", cipherdir_key(cipherdir)));
    if let Err(e) = made
        .map_err(|e| e.to_string())
        .and_then(|()| unlock::write_config(&path, cfg).map_err(|e| e.to_string()))
    {
        log::warn!("cannot keep a copy of the new config in {}: {e}", dir.display());
    }
}

/// The configs kept for `cipherdir`, sorted by name.
pub fn kept(cipherdir: &Path) -> Vec<PathBuf> {
    let Some(dir) = dir() else { return Vec::new() };
    let prefix = format!("{}-", cipherdir_key(cipherdir));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.starts_with(&prefix) && n.ends_with(".conf")
        })
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// `rekey --finish` went through: the kept configs of `cipherdir` (older epochs' keys) go.
pub fn forget(cipherdir: &Path) {
    for p in kept(cipherdir) {
        if let Err(e) = std::fs::remove_file(&p) {
            log::warn!("cannot remove the kept config {}: {e}", p.display());
        }
    }
}
