//! Watches a mounted vault's config for key epochs the mount does not have: a `coffer rekey`
//! run on another machine, whose new `coffer.conf` a sync client brought here. The mount keeps
//! working (what it writes stays under its own epochs, which the new config still lists until
//! `--finish`), but what was moved to the new epoch cannot be read here: a warning says so,
//! once per new epoch ID, and tells the user to mount again.
//!
//! The check is light: a stat of the config path the mount was started with, compared by
//! (inode, size, mtime, ctime); the config is read and parsed only when that changed. It runs
//! from a background thread every [`CHECK_EVERY`] and at once when poked (after a read fails
//! on an object sealed under an epoch the mount has no key for). Only that one path is read,
//! never a sync client's conflict copy of it; a config that does not parse, or that names
//! another vault, is ignored (debug log). The keys themselves are never touched: the mount's
//! epoch IDs come from the `held` function it is given.

use std::collections::HashSet;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::format::epochs::{Epoch, EpochId, Layout, VaultId};
use crate::vault::unlock;

/// How often the background thread looks at the config.
pub const CHECK_EVERY: Duration = Duration::from_secs(2);

/// The epoch IDs a mount reads with now (see [`VaultKeys::ids`](crate::vault::VaultKeys::ids)).
pub type HeldEpochs = Box<dyn Fn() -> Vec<Option<EpochId>> + Send + Sync>;

/// What identifies one version of the config file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(path: &Path) -> io::Result<Stamp> {
        let m = std::fs::symlink_metadata(path)?;
        Ok(Stamp {
            ino: m.ino(),
            size: m.size(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
        })
    }
}

#[derive(Debug, Default)]
struct Seen {
    /// The config version last looked at (`None`: not yet, or it could not be stat'ed).
    stamp: Option<Stamp>,
    /// The vault ID of the first config that had one.
    vault: Option<VaultId>,
    /// Epochs already warned about.
    warned: HashSet<EpochId>,
}

#[derive(Debug, Default)]
struct Wake {
    poked: bool,
    stop: bool,
}

/// The watch of one mount's config.
pub struct ConfigWatch {
    path: PathBuf,
    held: HeldEpochs,
    seen: Mutex<Seen>,
    wake: Mutex<Wake>,
    bell: Condvar,
}

impl std::fmt::Debug for ConfigWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigWatch")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl ConfigWatch {
    /// A watch of the config at `path` for a mount holding the epochs `held` returns.
    pub fn new(path: PathBuf, held: HeldEpochs) -> Self {
        ConfigWatch {
            path,
            held,
            seen: Mutex::default(),
            wake: Mutex::default(),
            bell: Condvar::new(),
        }
    }

    /// Looks at the config now: when it changed since the last look and lists epochs the mount
    /// does not have and that were not warned about yet, logs one warning naming them and
    /// returns them.
    pub fn check(&self) -> Vec<Epoch> {
        let mut seen = lock(&self.seen);
        let stamp = match Stamp::of(&self.path) {
            Ok(s) => s,
            Err(e) => {
                // Gone for a moment (a sync client replacing it), or unreadable: look again later.
                log::debug!("{}: {e}", self.path.display());
                seen.stamp = None;
                return Vec::new();
            }
        };
        if seen.stamp == Some(stamp) {
            return Vec::new();
        }
        seen.stamp = Some(stamp);
        let cfg = match unlock::read_config(&self.path) {
            Ok(c) => c,
            Err(e) => {
                log::debug!("{}: changed, but ignored: {e}", self.path.display());
                return Vec::new();
            }
        };
        let epochs = match cfg.epochs() {
            Ok(Some(e)) => e,
            Ok(None) => return Vec::new(),
            Err(e) => {
                log::debug!("{}: changed, but its key epochs are ignored: {e}", self.path.display());
                return Vec::new();
            }
        };
        if let Some(id) = cfg.vault_id() {
            match seen.vault {
                Some(v) if v != id => {
                    log::debug!(
                        "{}: changed, but ignored: it is another vault's config (vault ID {})",
                        self.path.display(),
                        id.to_hex()
                    );
                    return Vec::new();
                }
                Some(_) => {}
                None => seen.vault = Some(id),
            }
        }
        let held = (self.held)();
        let has = |e: &Epoch| held.contains(&Some(e.id)) || (e.layout == Layout::V1 && held.contains(&None));
        let new: Vec<Epoch> = epochs
            .all()
            .iter()
            .filter(|e| !has(e) && !seen.warned.contains(&e.id))
            .cloned()
            .collect();
        if new.is_empty() {
            return new;
        }
        seen.warned.extend(new.iter().map(|e| e.id));
        let names: Vec<String> = new.iter().map(|e| format!("{} (#{})", e.id.to_hex(), e.seq)).collect();
        log::warn!(
            "{} now has key epoch{} {}, which this mount does not have (a rekey ran elsewhere): files \
             and names moved to it cannot be read here until you unmount and mount again",
            self.path.display(),
            if new.len() > 1 { "s" } else { "" },
            names.join(", ")
        );
        new
    }

    /// Asks the watching thread to look at the config now (cheap; from any thread).
    pub fn poke(&self) {
        lock(&self.wake).poked = true;
        self.bell.notify_all();
    }

    /// Starts the thread that checks at once, then every `every` and whenever poked, until
    /// the returned guard is dropped.
    pub fn start(self: &Arc<Self>, every: Duration) -> io::Result<Watching> {
        let watch = self.clone();
        let thread = std::thread::Builder::new()
            .name("coffer-config".into())
            .spawn(move || watch.run(every))?;
        Ok(Watching {
            watch: self.clone(),
            thread: Some(thread),
        })
    }

    fn run(&self, every: Duration) {
        loop {
            self.check();
            let deadline = Instant::now() + every;
            let mut w = lock(&self.wake);
            while !w.poked && !w.stop {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                w = self.bell.wait_timeout(w, left).unwrap_or_else(|p| p.into_inner()).0;
            }
            if w.stop {
                return;
            }
            w.poked = false;
        }
    }
}

/// The running watch thread: dropping it stops the thread and waits for it.
#[derive(Debug)]
pub struct Watching {
    watch: Arc<ConfigWatch>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Watching {
    fn drop(&mut self) {
        lock(&self.watch.wake).stop = true;
        self.watch.bell.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::config::VaultParams;
    use crate::vault::{rekey, KdfCost};

    fn init(dir: &Path, version: u16) {
        std::fs::create_dir(dir).unwrap();
        unlock::init_version(
            dir,
            None,
            b"pw",
            &VaultParams::default(),
            KdfCost::INSECURE_TEST,
            version,
        )
        .unwrap();
    }

    fn ids_of(path: &Path) -> Vec<Option<EpochId>> {
        let cfg = unlock::read_config(path).unwrap();
        cfg.epochs()
            .unwrap()
            .map_or(vec![None], |e| e.all().iter().map(|e| Some(e.id)).collect())
    }

    /// Replaces `path` by `text` as a sync client does (temporary, then rename).
    fn replace(path: &Path, text: &[u8]) {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    #[test]
    fn a_new_epoch_is_reported_once_and_broken_or_foreign_configs_are_ignored() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("v");
        init(&v, crate::format::CONFIG_V2);
        let conf = unlock::config_path(&v, None);
        let held = ids_of(&conf);
        let watch = ConfigWatch::new(conf.clone(), Box::new(move || held.clone()));
        assert!(watch.check().is_empty(), "the config the mount opened");
        let opened = std::fs::read(&conf).unwrap();

        // Not parseable (a sync client's half-written download): ignored.
        replace(&conf, b"{\"format_version\": 2, \"kdf\"");
        assert!(watch.check().is_empty());
        // Another vault's config: ignored.
        let other = t.path().join("other");
        init(&other, crate::format::CONFIG_V2);
        let other_conf = unlock::config_path(&other, None);
        rekey::start_epoch(
            &other,
            &other_conf,
            &crate::vault::unlock::slots::Credential::Password(b"pw"),
        )
        .unwrap();
        replace(&conf, &std::fs::read(&other_conf).unwrap());
        assert!(watch.check().is_empty());
        // Gone for a moment.
        std::fs::remove_file(&conf).unwrap();
        assert!(watch.check().is_empty());
        replace(&conf, &opened);
        assert!(watch.check().is_empty());

        let started = rekey::start_epoch(&v, &conf, &crate::vault::unlock::slots::Credential::Password(b"pw")).unwrap();
        let newest = started.config.epochs().unwrap().unwrap().newest().clone();
        let found = watch.check();
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), [newest.id]);
        // Unchanged, rewritten with the same epochs, or the old config back: nothing new.
        assert!(watch.check().is_empty());
        replace(&conf, &std::fs::read(&conf).unwrap());
        assert!(watch.check().is_empty());
        replace(&conf, &opened);
        assert!(watch.check().is_empty());
        // A further rekey adds another one.
        replace(&conf, &started.config.to_json());
        assert!(watch.check().is_empty());
        let third = rekey::start_epoch(&v, &conf, &crate::vault::unlock::slots::Credential::Password(b"pw")).unwrap();
        let found = watch.check();
        let want = third.config.epochs().unwrap().unwrap().newest().id;
        assert_eq!(found.iter().map(|e| e.id).collect::<Vec<_>>(), [want]);
    }

    /// A mount of a config-version-1 vault holds its key without an ID: the converted config
    /// lists that key as its layout-1 epoch, which is not new; only the layout-3 one is.
    #[test]
    fn the_layout_1_epoch_of_a_converted_config_is_the_mounts_own_key() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("v");
        init(&v, crate::format::CONFIG_V1);
        let conf = unlock::config_path(&v, None);
        let watch = ConfigWatch::new(conf.clone(), Box::new(|| vec![None]));
        assert!(watch.check().is_empty());
        let started = rekey::start_epoch(&v, &conf, &crate::vault::unlock::slots::Credential::Password(b"pw")).unwrap();
        let found = watch.check();
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].id, started.config.epochs().unwrap().unwrap().newest().id);
        assert_eq!(found[0].layout, Layout::V3);
    }

    /// The thread checks at once when poked, long before its next turn, and ends when its
    /// guard is dropped.
    #[test]
    fn a_poke_checks_at_once_and_the_thread_ends_with_its_guard() {
        let t = tempfile::tempdir().unwrap();
        let v = t.path().join("v");
        init(&v, crate::format::CONFIG_V2);
        let conf = unlock::config_path(&v, None);
        let held = ids_of(&conf);
        let watch = Arc::new(ConfigWatch::new(conf.clone(), Box::new(move || held.clone())));
        let guard = watch.start(Duration::from_secs(3600)).unwrap();
        // The first check (at start) has seen the config the mount opened.
        let start = Instant::now();
        while lock(&watch.seen).stamp.is_none() {
            assert!(start.elapsed() < Duration::from_secs(5), "no first check");
            std::thread::sleep(Duration::from_millis(10));
        }
        rekey::start_epoch(&v, &conf, &crate::vault::unlock::slots::Credential::Password(b"pw")).unwrap();
        watch.poke();
        let start = Instant::now();
        while lock(&watch.seen).warned.is_empty() {
            assert!(start.elapsed() < Duration::from_secs(5), "the poke was not answered");
            std::thread::sleep(Duration::from_millis(10));
        }
        let start = Instant::now();
        drop(guard);
        assert!(start.elapsed() < Duration::from_secs(5));
        assert_eq!(Arc::strong_count(&watch), 1, "the thread let go of the watch");
    }
}
