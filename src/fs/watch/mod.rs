//! Watching CIPHERDIR, so that the kernel may cache names, attributes, listings and pages for
//! longer than a second and still show a sync client's changes at once.
//!
//! Each backing directory the kernel looks into gets an inotify watch (added before the
//! request reads the backing tree, so no change between the two is missed), and only those:
//! the watch budget is shared with the sync client itself. A background thread ([`events`])
//! reads the events, drops the mount's own (see [`own`], recorded by the requests through
//! `hooks`), maps the rest to plaintext names and inodes and tells the kernel (`inval_entry`,
//! `inval_inode`), see `apply`; under the writeback cache a regular file changed in place
//! gets a new generation at its next lookup instead (`retire`).
//!
//! Replies carry the long timeouts only while their directory is watched and no event of it
//! arrived during the request: a [`Ticket`] taken before the request is checked after it, so a
//! reply built from a backing state that changed meanwhile gets the short timeout. After lost
//! events (IN_Q_OVERFLOW) everything the kernel holds is invalidated and replies stay short
//! until that is done. Directories on file systems whose changes inotify cannot see (see
//! [`fstype`]) and those whose watch could not be added keep the short timeouts.

mod apply;
mod coarse;
pub mod events;
pub mod fstype;
mod hooks;
mod in_flight;
pub mod own;
mod retire;

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use inotify::{Inotify, WatchDescriptor, WatchMask, Watches};

use super::core::TTL;
use super::KernelCache;
use crate::vault::Dir;

pub use events::Running;

/// Entry, attribute and negative-entry timeout of a watched directory.
pub const LONG_TTL: Duration = Duration::from_secs(30);

/// Most names kept per mount whose absence the kernel caches (each must be told when the name
/// appears); past it, absences get the short timeout.
const MAX_NEGATIVES: usize = 1 << 16;

/// The events a directory watch asks for.
fn mask() -> WatchMask {
    WatchMask::CREATE
        | WatchMask::DELETE
        | WatchMask::MODIFY
        | WatchMask::ATTRIB
        | WatchMask::CLOSE_WRITE
        | WatchMask::MOVED_FROM
        | WatchMask::MOVED_TO
        | WatchMask::DELETE_SELF
        | WatchMask::MOVE_SELF
        | WatchMask::ONLYDIR
        | WatchMask::EXCL_UNLINK
}

/// What a reply's timeout depends on: its directory's watch and event count when the request
/// started. `Ticket::NONE` gives the short timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ticket(Option<(u64, u64, u64)>);

impl Ticket {
    /// No watch: the short timeout.
    pub const NONE: Ticket = Ticket(None);
}

#[derive(Debug)]
struct Watched {
    wd: WatchDescriptor,
    /// Events read for this directory so far.
    events: u64,
}

#[derive(Debug, Default)]
struct State {
    by_ino: HashMap<u64, Watched>,
    by_wd: HashMap<WatchDescriptor, u64>,
    /// Directories that cannot be watched (another file system, a failed watch add).
    unwatched: HashSet<u64>,
    /// Names whose absence the kernel was told to cache, per directory.
    negatives: HashMap<u64, HashSet<Vec<u8>>>,
    negative_count: usize,
}

/// The watch of one mount's CIPHERDIR.
pub struct BackingWatch {
    watches: Mutex<Watches>,
    reader: Mutex<Option<Inotify>>,
    state: Mutex<State>,
    own: Mutex<own::OwnChanges>,
    /// Odd while lost events are being made up for.
    resync: AtomicU64,
    root_dev: u64,
    /// `--kernel-cache=on`: watch file systems that would otherwise keep the short timeouts.
    forced: bool,
    warned_limit: AtomicBool,
    /// Batches of events that made the kernel drop something (for `coffer stats`).
    pub(super) foreign: AtomicU64,
    /// Times inotify lost events (queue overflow) and everything was invalidated.
    pub(super) overflows: AtomicU64,
    /// Per file inode, the backing state its cached pages were read from (see
    /// [`pages_unchanged`](Self::pages_unchanged)).
    page_stamps: Mutex<HashMap<u64, own::Stamp>>,
    /// The mount's own changing requests in flight (see [`OwnOp`]).
    in_flight: in_flight::InFlight,
    /// Which backing devices have coarse change times; probed when a device's first
    /// directory is watched.
    coarse: coarse::CoarseTimes,
    /// A read-only mount: no change of its own to judge, so no file system is probed.
    read_only: bool,
    /// Notifications a request owes the kernel, sent by the watcher thread (a request's own
    /// thread must not wait on the kernel: it may hold a directory lock while it waits for a
    /// request).
    queued: Mutex<Vec<apply::Note>>,
}

/// At most this many kernel notifications wait for the watcher thread.
const MAX_QUEUED: usize = 1 << 16;

/// How long the watcher waits for the mount's own requests that were in flight when it read
/// a batch of events (past it, their events may count as someone else's: one needless
/// invalidation).
pub(super) const OWN_WAIT: Duration = Duration::from_secs(1);

/// One of the mount's own changing requests, in flight until dropped. The watcher does not
/// judge events read while it was in flight until it ends and has recorded what it changed.
#[derive(Debug)]
pub struct OwnOp {
    watch: Arc<BackingWatch>,
    slot: usize,
}

impl Drop for OwnOp {
    fn drop(&mut self) {
        self.watch.in_flight.leave(self.slot);
    }
}

impl std::fmt::Debug for BackingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackingWatch")
            .field("root_dev", &self.root_dev)
            .finish_non_exhaustive()
    }
}

/// Whether a mount runs with the kernel cache, and why (shown by the mount's log and by
/// `coffer mount -v`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// CIPHERDIR is watched; the kernel caches.
    On,
    /// `--kernel-cache=on` on a file system that cannot be watched (its name).
    Forced(&'static str),
    /// 1 s timeouts, for this reason.
    Off(String),
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = LONG_TTL.as_secs();
        match self {
            Plan::On => write!(
                f,
                "kernel cache: on (CIPHERDIR watched with inotify): names, attributes and listings kept up to \
                 {secs} s, file pages across opens"
            ),
            Plan::Forced(fs) => write!(
                f,
                "kernel cache: on (--kernel-cache=on) although CIPHERDIR is on {fs}: changes made on other \
                 machines may show up to {secs} s late"
            ),
            Plan::Off(why) => write!(f, "kernel cache: off ({why}): names and attributes kept 1 s"),
        }
    }
}

/// The plan for a mount of the CIPHERDIR open as `root` in `mode`.
pub fn plan(root: &impl AsRawFd, mode: KernelCache, atime: super::Atime) -> Plan {
    if mode == KernelCache::Off {
        return Plan::Off("--kernel-cache=off".into());
    }
    if atime == super::Atime::StrictAtime {
        // Every read must reach the daemon to set the access time, and every stat show it.
        return Plan::Off("strictatime".into());
    }
    match fstype::unwatchable(root) {
        Ok(Some(fs)) if mode == KernelCache::Auto => Plan::Off(format!(
            "CIPHERDIR is on {fs}, where inotify misses changes made elsewhere; --kernel-cache=on overrides"
        )),
        Ok(Some(fs)) => Plan::Forced(fs),
        Ok(None) => Plan::On,
        Err(e) => Plan::Off(format!("cannot tell CIPHERDIR's file system: {e}")),
    }
}

impl BackingWatch {
    /// The watch for a mount of a CIPHERDIR on device `root_dev` following `plan`, or None
    /// when the mount keeps the short timeouts; says which in the log. `everywhere`
    /// (`--kernel-cache=on`) also watches directories on file systems that cannot be watched.
    /// `root` is CIPHERDIR, whose change times are probed (see
    /// [`fstype::coarse_change_times`]) unless the mount is `read_only` (it changes nothing).
    pub fn for_mount(
        root: &impl AsRawFd,
        root_dev: u64,
        read_only: bool,
        plan: &Plan,
        everywhere: bool,
    ) -> Option<Arc<Self>> {
        match plan {
            Plan::Off(_) => {
                log::info!("{plan}");
                return None;
            }
            Plan::Forced(_) => log::warn!("{plan}"),
            Plan::On => {}
        }
        let inotify = match Inotify::init() {
            Ok(i) => i,
            Err(e) => {
                log::warn!("{}", Plan::Off(format!("inotify is not available: {e}")));
                return None;
            }
        };
        if *plan == Plan::On {
            log::info!("{plan}");
        }
        let w = Arc::new(BackingWatch {
            watches: Mutex::new(inotify.watches()),
            reader: Mutex::new(Some(inotify)),
            state: Mutex::default(),
            own: Mutex::default(),
            resync: AtomicU64::new(0),
            root_dev,
            forced: everywhere,
            warned_limit: AtomicBool::new(false),
            foreign: AtomicU64::new(0),
            overflows: AtomicU64::new(0),
            page_stamps: Mutex::default(),
            in_flight: in_flight::InFlight::default(),
            coarse: coarse::CoarseTimes::default(),
            read_only,
            queued: Mutex::default(),
        });
        if !read_only {
            w.coarse.learn(root_dev, root, "CIPHERDIR");
        }
        Some(w)
    }

    /// Queues `notes` for the watcher thread to send (after the batch it is judging, if any,
    /// else within one poll interval); past
    /// [`MAX_QUEUED`] the oldest are dropped (a dropped dentry invalidation only delays a
    /// retirement to the entry's timeout).
    fn queue(&self, notes: Vec<apply::Note>) {
        let mut queued = self.queued.lock().unwrap_or_else(|p| p.into_inner());
        queued.extend(notes);
        if queued.len() > MAX_QUEUED {
            let extra = queued.len() - MAX_QUEUED;
            queued.drain(..extra);
        }
    }

    /// The notes queued by [`queue`](Self::queue), taken.
    fn take_queued(&self) -> Vec<apply::Note> {
        std::mem::take(&mut *self.queued.lock().unwrap_or_else(|p| p.into_inner()))
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a change made by someone else after the mount's own change that left `st`
    /// could stat exactly as `st` (see [`own::Judged::Unsure`]).
    pub fn unsure(&self, st: &libc::stat) -> bool {
        self.coarse.unsure(st)
    }

    /// The mount's own recent changes.
    pub fn own(&self) -> MutexGuard<'_, own::OwnChanges> {
        self.own.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Marks one of the mount's own changing requests in flight.
    pub fn own_op(self: &Arc<Self>) -> OwnOp {
        OwnOp {
            watch: self.clone(),
            slot: self.in_flight.enter(),
        }
    }

    /// Whether any of the mount's own changing requests is in flight.
    fn own_in_flight(&self) -> bool {
        self.in_flight.any()
    }

    /// Marks the own requests in flight now: those [`wait_own_before`](Self::wait_own_before)
    /// waits for. Only the watcher thread calls it.
    fn own_mark(&self) -> u64 {
        self.in_flight.mark()
    }

    /// Waits (at most `max`) until every own request in flight at `mark` ended.
    fn wait_own_before(&self, mark: u64, max: Duration) {
        self.in_flight.wait_before(mark, max);
    }

    /// The ticket of a request in directory `dir`; None when `dir` is not watched yet.
    pub fn ticket(&self, dir: u64) -> Option<Ticket> {
        let resync = self.resync.load(Ordering::Acquire);
        if resync % 2 == 1 {
            return Some(Ticket::NONE);
        }
        let s = self.state();
        if let Some(w) = s.by_ino.get(&dir) {
            return Some(Ticket(Some((dir, w.events, resync))));
        }
        s.unwatched.contains(&dir).then_some(Ticket::NONE)
    }

    /// The timeout of a reply whose request took `t`: long only if nothing changed since.
    pub fn ttl(&self, t: Ticket) -> Duration {
        let Some((dir, events, resync)) = t.0 else { return TTL };
        if self.resync.load(Ordering::Acquire) != resync {
            return TTL;
        }
        match self.state().by_ino.get(&dir) {
            Some(w) if w.events == events => LONG_TTL,
            _ => TTL,
        }
    }

    /// Watches the backing directory `dir` of directory inode `ino` (once).
    pub fn ensure(&self, ino: u64, dir: &Dir) {
        {
            let s = self.state();
            if s.by_ino.contains_key(&ino) || s.unwatched.contains(&ino) {
                return;
            }
        }
        let dev = dir.fd.fstat().map(|st| st.st_dev).ok();
        let other_fs = dev != Some(self.root_dev);
        if !self.forced && other_fs {
            if let Ok(Some(fs)) = fstype::unwatchable(&dir.fd) {
                log::info!("kernel cache: off below {} (on {fs}): kept 1 s", dir.rel.display());
                self.state().unwatched.insert(ino);
                return;
            }
        }
        if let (true, Some(dev), false) = (other_fs, dev, self.read_only) {
            self.coarse.learn(dev, &dir.fd, &dir.rel.display().to_string());
        }
        let path = format!("/proc/self/fd/{}", dir.fd.as_raw_fd());
        let added = self
            .watches
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(&path, mask());
        let mut s = self.state();
        match added {
            Ok(wd) => {
                if let Some(old) = s.by_wd.insert(wd.clone(), ino) {
                    if old != ino {
                        s.by_ino.remove(&old);
                    }
                }
                s.by_ino.insert(ino, Watched { wd, events: 0 });
            }
            Err(e) => {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    if !self.warned_limit.swap(true, Ordering::Relaxed) {
                        log::warn!(
                            "kernel cache: the inotify watch limit is reached (fs.inotify.max_user_watches); \
                             directories past it, first {}, are kept 1 s",
                            dir.rel.display()
                        );
                    }
                } else {
                    log::info!(
                        "kernel cache: off for {}: cannot watch it ({e}): kept 1 s",
                        dir.rel.display()
                    );
                }
                s.unwatched.insert(ino);
            }
        }
    }

    /// Whether file inode `ino`, whose backing file stats as `st` at an open, is as at the
    /// previous open (then the kernel may keep its cached pages); records it either way.
    pub fn pages_unchanged(&self, ino: u64, st: &libc::stat) -> bool {
        let now = own::Stamp::with_inode(st);
        let mut stamps = self.page_stamps.lock().unwrap_or_else(|p| p.into_inner());
        stamps.insert(ino, now) == Some(now)
    }

    /// The kernel forgot inode `ino`: its page stamp goes.
    pub fn forget_pages(&self, ino: u64) {
        let mut stamps = self.page_stamps.lock().unwrap_or_else(|p| p.into_inner());
        stamps.remove(&ino);
        // After the kernel forgot many files, hand the table's memory back.
        if stamps.capacity() > 4 * stamps.len().max(256) {
            stamps.shrink_to_fit();
        }
    }

    /// The kernel forgot directory inode `ino`: its watch goes.
    pub fn unwatch(&self, ino: u64) {
        let mut s = self.state();
        s.unwatched.remove(&ino);
        if let Some(n) = s.negatives.remove(&ino) {
            s.negative_count -= n.len();
        }
        let Some(w) = s.by_ino.remove(&ino) else { return };
        if s.by_wd.get(&w.wd) == Some(&ino) {
            s.by_wd.remove(&w.wd);
            drop(s);
            let _ = self.watches.lock().unwrap_or_else(|p| p.into_inner()).remove(w.wd);
        }
    }

    /// Records that the kernel may cache the absence of `name` in `dir` (returns false when
    /// too many are cached already: then it must not).
    pub fn note_negative(&self, dir: u64, name: &[u8]) -> bool {
        let mut s = self.state();
        if s.negative_count >= MAX_NEGATIVES {
            return false;
        }
        if s.negatives.entry(dir).or_default().insert(name.to_vec()) {
            s.negative_count += 1;
        }
        true
    }

    /// Forgets the cached absence of `name` in `dir`.
    fn forget_negative(&self, dir: u64, name: &[u8]) {
        let mut s = self.state();
        if let Some(set) = s.negatives.get_mut(&dir) {
            if set.remove(name) {
                s.negative_count -= 1;
            }
        }
    }

    /// Takes every cached absence in `dir` (all directories when None).
    fn take_negatives(&self, dir: Option<u64>) -> Vec<(u64, Vec<u8>)> {
        let mut s = self.state();
        let taken: Vec<(u64, HashSet<Vec<u8>>)> = match dir {
            Some(d) => s.negatives.remove(&d).map(|n| (d, n)).into_iter().collect(),
            None => s.negatives.drain().collect(),
        };
        let n: usize = taken.iter().map(|(_, set)| set.len()).sum();
        s.negative_count -= n;
        taken
            .into_iter()
            .flat_map(|(d, set)| set.into_iter().map(move |name| (d, name)))
            .collect()
    }

    /// The directory inode of watch `wd`, counting one event for it.
    fn event_for(&self, wd: &WatchDescriptor) -> Option<u64> {
        let mut s = self.state();
        let ino = *s.by_wd.get(wd)?;
        if let Some(w) = s.by_ino.get_mut(&ino) {
            w.events += 1;
        }
        Some(ino)
    }

    /// The kernel removed watch `wd` (its directory was deleted).
    fn dropped(&self, wd: &WatchDescriptor) {
        let mut s = self.state();
        if let Some(ino) = s.by_wd.remove(wd) {
            if s.by_ino.get(&ino).is_some_and(|w| &w.wd == wd) {
                s.by_ino.remove(&ino);
            }
        }
    }

    /// The watch's figures, for `coffer stats`: directories watched, batches of changes
    /// passed on to the kernel, overflows, absences cached.
    pub fn figures(&self) -> serde_json::Value {
        let s = self.state();
        serde_json::json!({
            "watched_dirs": s.by_ino.len(),
            "unwatched_dirs": s.unwatched.len(),
            "changes_passed_on": self.foreign.load(Ordering::Relaxed),
            "overflows": self.overflows.load(Ordering::Relaxed),
            "absences_cached": s.negative_count,
        })
    }
}
