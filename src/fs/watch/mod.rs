//! Watching CIPHERDIR, so that the kernel may cache names, attributes, listings and pages for
//! longer than a second and still show a sync client's changes at once.
//!
//! Each backing directory the kernel looks into gets a watch (added before the request reads
//! the backing tree, so no change between the two is missed), and only those: the watch
//! budget is shared with the sync client itself. The watch is a fanotify mark where the
//! mount may use fanotify ([`fanotify`]: its events name the process that made them, so the
//! mount's own are dropped exactly), else an inotify watch (its events name no process: the
//! mount's own are told by the records its requests leave, see [`own`] and `hooks`). A
//! background thread ([`events`]) reads the events, drops the mount's own, maps the rest to
//! plaintext names and inodes and tells the kernel (`inval_entry`, `inval_inode`), see
//! `apply`; under the writeback cache a regular file changed in place gets a new generation
//! at its next lookup instead (`retire`).
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
pub mod fanotify;
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
use super::{KernelCache, Watcher};
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

/// What events name a watched directory by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum WatchId {
    /// An inotify watch descriptor.
    Wd(WatchDescriptor),
    /// A fanotify-marked directory's file handle.
    Key(fanotify::DirKey),
}

/// How the mount watches CIPHERDIR.
enum Backend {
    Inotify(Mutex<Watches>),
    Fanotify(Arc<fanotify::Fanotify>),
}

/// Where the watcher thread reads events from.
pub(super) enum Reader {
    Inotify(Inotify),
    Fanotify(Arc<fanotify::Fanotify>),
}

impl AsRawFd for Reader {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        match self {
            Reader::Inotify(i) => i.as_raw_fd(),
            Reader::Fanotify(f) => f.as_raw_fd(),
        }
    }
}

#[derive(Debug)]
struct Watched {
    id: WatchId,
    /// Events read for this directory so far.
    events: u64,
}

#[derive(Debug, Default)]
struct State {
    by_ino: HashMap<u64, Watched>,
    by_id: HashMap<WatchId, u64>,
    /// Directories that cannot be watched (another file system, a failed watch add).
    unwatched: HashSet<u64>,
    /// Names whose absence the kernel was told to cache, per directory.
    negatives: HashMap<u64, HashSet<Vec<u8>>>,
    negative_count: usize,
}

/// The watch of one mount's CIPHERDIR.
pub struct BackingWatch {
    backend: Backend,
    reader: Mutex<Option<Reader>>,
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
    /// CIPHERDIR is watched, as said; the kernel caches.
    On(Watching),
    /// `--kernel-cache=on` on a file system that cannot be watched (its name).
    Forced(&'static str),
    /// 1 s timeouts, for this reason.
    Off(String),
}

impl std::fmt::Display for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = LONG_TTL.as_secs();
        match self {
            Plan::On(how) => write!(
                f,
                "kernel cache: on (CIPHERDIR watched with {how}): names, attributes and listings kept up to {secs} \
                 s, file pages across opens"
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

/// What watches CIPHERDIR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Watching {
    /// fanotify: the mount's own changes are told by the process that made them.
    Fanotify,
    /// inotify, for this reason: the mount's own changes are told by the state each left.
    Inotify(String),
}

impl std::fmt::Display for Watching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Watching::Fanotify => write!(f, "fanotify"),
            Watching::Inotify(why) => write!(f, "inotify; {why}"),
        }
    }
}

/// What `watcher` watches the CIPHERDIR open as `root` with: fanotify where it may, and can
/// mark `root` (tried with a group of its own, dropped again).
fn watching(root: &impl AsRawFd, watcher: Watcher) -> Watching {
    match watcher {
        Watcher::Inotify => Watching::Inotify("--watcher=inotify".into()),
        Watcher::Auto => match fanotify::Fanotify::init().and_then(|f| f.add(root)) {
            Ok(_) => Watching::Fanotify,
            Err(e) => Watching::Inotify(format!("fanotify: {e}")),
        },
    }
}

/// The plan for a mount of the CIPHERDIR open as `root` in `mode`, watched as `watcher` asks.
pub fn plan(root: &impl AsRawFd, mode: KernelCache, atime: super::Atime, watcher: Watcher) -> Plan {
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
        Ok(None) => Plan::On(watching(root, watcher)),
        Err(e) => Plan::Off(format!("cannot tell CIPHERDIR's file system: {e}")),
    }
}

impl BackingWatch {
    /// The watch for a mount of a CIPHERDIR on device `root_dev` following `plan`, or None
    /// when the mount keeps the short timeouts; says which in the log. `everywhere`
    /// (`--kernel-cache=on`) also watches directories on file systems that cannot be watched.
    /// `root` is CIPHERDIR. With inotify, its change times are probed (see
    /// [`fstype::coarse_change_times`]) unless the mount is `read_only` (it changes nothing).
    pub fn for_mount(
        root: &impl AsRawFd,
        root_dev: u64,
        read_only: bool,
        plan: &Plan,
        everywhere: bool,
    ) -> Option<Arc<Self>> {
        let fanotify = match plan {
            Plan::Off(_) => {
                log::info!("{plan}");
                return None;
            }
            Plan::Forced(_) => false,
            Plan::On(how) => *how == Watching::Fanotify,
        };
        let (backend, reader) = match backend(root, fanotify) {
            Ok(b) => b,
            Err(e) => {
                log::warn!("{}", Plan::Off(format!("inotify is not available: {e}")));
                return None;
            }
        };
        match plan {
            Plan::On(Watching::Fanotify) if matches!(backend, Backend::Inotify(_)) => log::warn!(
                "{}",
                Plan::On(Watching::Inotify("fanotify failed when the mount set it up".into()))
            ),
            Plan::On(_) => log::info!("{plan}"),
            _ => log::warn!("{plan}"),
        }
        let exact = matches!(backend, Backend::Fanotify(_));
        let w = Arc::new(BackingWatch {
            backend,
            reader: Mutex::new(Some(reader)),
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
        if !read_only && !exact {
            w.coarse.learn(root_dev, root, "CIPHERDIR");
        }
        Some(w)
    }

    /// The watch cannot be read: from now on every reply gets the short timeouts (the
    /// kernel's caches were dropped with the last batch).
    fn give_up(&self) {
        log::warn!("{}", Plan::Off("the watch of CIPHERDIR failed".into()));
        // Odd, as while lost events are made up for, and never even again.
        self.resync.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether the events read name the process that made them, so that the mount's own are
    /// dropped as they are read (fanotify). Otherwise (inotify) the mount's requests record
    /// what they change, and the watcher judges each event against those records.
    pub fn exact(&self) -> bool {
        matches!(self.backend, Backend::Fanotify(_))
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
        if let (true, Some(dev), false, false) = (other_fs, dev, self.read_only, self.exact()) {
            self.coarse.learn(dev, &dir.fd, &dir.rel.display().to_string());
        }
        let added = match &self.backend {
            Backend::Inotify(watches) => {
                let path = format!("/proc/self/fd/{}", dir.fd.as_raw_fd());
                let added = watches.lock().unwrap_or_else(|p| p.into_inner()).add(&path, mask());
                added.map(WatchId::Wd)
            }
            Backend::Fanotify(fan) => fan.add(&dir.fd).map(WatchId::Key),
        };
        let mut s = self.state();
        match added {
            Ok(id) => {
                if let Some(old) = s.by_id.insert(id.clone(), ino) {
                    if old != ino {
                        s.by_ino.remove(&old);
                    }
                }
                s.by_ino.insert(ino, Watched { id, events: 0 });
            }
            Err(e) => {
                if e.raw_os_error() == Some(libc::ENOSPC) {
                    if !self.warned_limit.swap(true, Ordering::Relaxed) {
                        let limit = match self.backend {
                            Backend::Inotify(_) => "the inotify watch limit is reached (fs.inotify.max_user_watches)",
                            Backend::Fanotify(_) => "the fanotify mark limit is reached (fs.fanotify.max_user_marks)",
                        };
                        log::warn!(
                            "kernel cache: {limit}; directories past it, first {}, are kept 1 s",
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

    /// Whether directory inode `ino` has a fanotify mark, which only a descriptor of the
    /// directory can remove (see [`unwatch`](Self::unwatch)).
    pub fn marked(&self, ino: u64) -> bool {
        self.exact() && self.state().by_ino.contains_key(&ino)
    }

    /// The kernel forgot directory inode `ino`: its watch goes. A fanotify mark is removed
    /// through `dir`, the directory as it was found before the kernel forgot it (without it,
    /// the mark stays until the directory is deleted or the mount ends; its events are
    /// dropped).
    pub fn unwatch(&self, ino: u64, dir: Option<&Dir>) {
        let mut s = self.state();
        s.unwatched.remove(&ino);
        if let Some(n) = s.negatives.remove(&ino) {
            s.negative_count -= n.len();
        }
        let Some(w) = s.by_ino.remove(&ino) else { return };
        if s.by_id.get(&w.id) == Some(&ino) {
            s.by_id.remove(&w.id);
            // Removed under the state lock: an `ensure` of the same directory in between
            // would find its watch still there (adding it again does nothing), record it, and
            // then lose it to this removal (fanotify says nothing when a mark goes).
            match (&self.backend, w.id) {
                (Backend::Inotify(watches), WatchId::Wd(wd)) => {
                    let _ = watches.lock().unwrap_or_else(|p| p.into_inner()).remove(wd);
                }
                (Backend::Fanotify(fan), WatchId::Key(key)) => {
                    if let Some(d) = dir {
                        if let Err(e) = fan.remove(&d.fd, &key) {
                            log::debug!("kernel cache: mark of {} stays: {e}", d.rel.display());
                        }
                    }
                }
                _ => {}
            }
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

    /// The directory inode of watch `id`, counting one event for it.
    fn event_for(&self, id: &WatchId) -> Option<u64> {
        let mut s = self.state();
        let ino = *s.by_id.get(id)?;
        if let Some(w) = s.by_ino.get_mut(&ino) {
            w.events += 1;
        }
        Some(ino)
    }

    /// The kernel removed watch `id` (its directory was deleted).
    fn dropped(&self, id: &WatchId) {
        let mut s = self.state();
        if let Some(ino) = s.by_id.remove(id) {
            if s.by_ino.get(&ino).is_some_and(|w| &w.id == id) {
                s.by_ino.remove(&ino);
            }
        }
    }

    /// The watch's figures, for `coffer stats`: directories watched, batches of changes
    /// passed on to the kernel, overflows, absences cached.
    pub fn figures(&self) -> serde_json::Value {
        let s = self.state();
        serde_json::json!({
            "watcher": if self.exact() { "fanotify" } else { "inotify" },
            "watched_dirs": s.by_ino.len(),
            "unwatched_dirs": s.unwatched.len(),
            "changes_passed_on": self.foreign.load(Ordering::Relaxed),
            "overflows": self.overflows.load(Ordering::Relaxed),
            "absences_cached": s.negative_count,
        })
    }
}

/// The watch of the CIPHERDIR open as `root`: with fanotify when `fanotify` and it can mark
/// `root`, else with inotify.
fn backend(root: &impl AsRawFd, fanotify: bool) -> std::io::Result<(Backend, Reader)> {
    if fanotify {
        if let Ok(fan) = fanotify::Fanotify::init().and_then(|f| f.add(root).map(|_| f)) {
            let fan = Arc::new(fan);
            return Ok((Backend::Fanotify(fan.clone()), Reader::Fanotify(fan)));
        }
    }
    let inotify = Inotify::init()?;
    Ok((
        Backend::Inotify(Mutex::new(inotify.watches())),
        Reader::Inotify(inotify),
    ))
}
