//! Watching `coffer.conf` during a rekey walk: the walk moves objects to one epoch, and stops
//! when the config no longer names that epoch as its newest (another machine's rekey synced
//! in; docs/FORMAT.md §15.7). A check costs one `stat`; the config is parsed only when its
//! inode, size or times moved.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::format::epochs::EpochId;

use super::error::{Result, VaultError};
use super::unlock;

/// What a `stat` of the config showed: a change of any of these means it was rewritten.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> Option<Stamp> {
        let m = std::fs::metadata(path).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

/// The config at one path, expected to name one epoch as its newest.
#[derive(Debug)]
pub struct ConfigWatch {
    path: PathBuf,
    target: EpochId,
    seen: Option<Stamp>,
}

impl ConfigWatch {
    /// Watches the config at `path`, whose newest epoch a walk moves objects to: `target`.
    pub fn new(path: &Path, target: EpochId) -> ConfigWatch {
        ConfigWatch {
            path: path.to_path_buf(),
            target,
            seen: None,
        }
    }

    /// `Err(NewestEpochChanged)` when the config now names another newest epoch (or none).
    /// A config that is missing or does not parse (a sync client half way through replacing
    /// it) is looked at again at the next check.
    pub fn check(&mut self) -> Result<()> {
        let Some(now) = Stamp::of(&self.path) else {
            log::debug!(
                "{}: not there during the rekey walk; looked at again later",
                self.path.display()
            );
            self.seen = None;
            return Ok(());
        };
        if self.seen == Some(now) {
            return Ok(());
        }
        let theirs = match unlock::read_config(&self.path).and_then(|c| {
            c.epochs()
                .map_err(|e| VaultError::ConfigTampered(e.to_string()))
                .map(|e| e.map(|e| e.newest().id))
        }) {
            Ok(t) => t,
            Err(e) => {
                log::debug!(
                    "{}: not read during the rekey walk ({e}); looked at again later",
                    self.path.display()
                );
                return Ok(());
            }
        };
        if theirs != Some(self.target) {
            return Err(VaultError::NewestEpochChanged {
                ours: self.target,
                theirs,
            });
        }
        self.seen = Some(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::config::VaultParams;
    use crate::vault::unlock::KdfCost;

    /// The watch passes while the config names the target, and stops once another config with
    /// another newest epoch is put in its place (and a config of the same epoch written again
    /// is no change).
    #[test]
    fn a_config_with_another_newest_epoch_stops_the_walk() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        for d in [a.path(), b.path()] {
            unlock::init(d, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        }
        let newest = |d: &Path| {
            let cfg = unlock::read_config(&unlock::config_path(d, None)).unwrap();
            cfg.epochs().unwrap().unwrap().newest().id
        };
        let (ours, other) = (newest(a.path()), newest(b.path()));
        let path = unlock::config_path(a.path(), None);
        let mut watch = ConfigWatch::new(&path, ours);
        watch.check().unwrap();
        let same = std::fs::read(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        watch.check().unwrap();
        std::fs::write(&path, &same).unwrap();
        watch.check().unwrap();
        std::fs::copy(unlock::config_path(b.path(), None), &path).unwrap();
        match watch.check() {
            Err(VaultError::NewestEpochChanged { ours: o, theirs }) => {
                assert_eq!(o, ours);
                assert_eq!(theirs, Some(other));
            }
            other => panic!("{other:?}"),
        }
        std::fs::write(&path, b"{ not json").unwrap();
        watch.check().unwrap();
    }
}
