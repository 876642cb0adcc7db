//! The thread that reads CIPHERDIR's events (fanotify's or inotify's). Events are gathered for
//! [`SETTLE`] after the first (a sync client's replace is a create, writes and a rename; with
//! inotify, the mount's own change records its stamp right after the syscall), merged per
//! entry, then handed to the file system to map and pass on to the kernel. fanotify's events
//! made by this process are the mount's own and dropped as they are read.

use std::collections::{HashMap, HashSet};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use inotify::{EventMask, Inotify};

use super::fanotify::{self, Fanotify};
use super::{BackingWatch, Reader, WatchId, OWN_WAIT};
use crate::fs::core::CofferFs;

/// How long events are gathered after the first one of a batch.
const SETTLE: Duration = Duration::from_millis(10);
/// Longest a batch gathers while events keep coming.
const MAX_GATHER: Duration = Duration::from_millis(50);
/// How often the thread looks whether the mount ended.
const POLL_MS: i32 = 250;

/// What one batch of events changed.
#[derive(Debug, Default)]
pub struct Batch {
    /// Events were lost: everything the kernel holds may be stale.
    pub overflow: bool,
    /// Changes to entries: (directory inode, backing entry) with the merged event kinds.
    pub entries: HashMap<(u64, Vec<u8>), EventMask>,
    /// Directories whose own attributes changed, or which were deleted or moved.
    pub dirs: HashSet<u64>,
    /// The watch cannot be read (any more): after this batch the mount keeps the short
    /// timeouts.
    pub failed: bool,
}

impl Batch {
    /// The watch cannot be read (`why`): everything the kernel holds is dropped with this
    /// batch, and the mount keeps the short timeouts after it.
    fn fail(&mut self, why: std::fmt::Arguments<'_>) {
        log::warn!("kernel cache: {why}; invalidating everything");
        self.overflow = true;
        self.failed = true;
    }

    fn is_empty(&self) -> bool {
        !self.overflow && self.entries.is_empty() && self.dirs.is_empty()
    }
}

/// The running watcher thread; stopped and joined on drop.
#[derive(Debug)]
pub struct Running {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts reading the events of `fs`'s watch (None when it has none, or it already runs).
pub fn start(fs: &Arc<CofferFs>) -> Option<Running> {
    let watch = fs.watch.clone()?;
    let reader = watch.reader.lock().unwrap_or_else(|p| p.into_inner()).take()?;
    let stop = Arc::new(AtomicBool::new(false));
    let weak = Arc::downgrade(fs);
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("coffer-watch".into())
        .spawn(move || run(weak, watch, reader, flag));
    match thread {
        Ok(t) => Some(Running { stop, thread: Some(t) }),
        Err(e) => {
            log::warn!("kernel cache: cannot start the watcher thread ({e})");
            None
        }
    }
}

fn run(fs: Weak<CofferFs>, watch: Arc<BackingWatch>, mut reader: Reader, stop: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 64 * 1024];
    // Taken here, in the process that serves the mount (it may have forked since the watch
    // was set up).
    let own_pid = std::process::id() as i32;
    while !stop.load(Ordering::SeqCst) {
        // Every change recorded before now has its events queued already: once they are read
        // and judged (or there are none), those records can go.
        let recorded = watch.own().mark();
        send_queued(&fs, &watch);
        if !readable(&reader, POLL_MS) {
            watch.own().retire_before(recorded);
            continue;
        }
        let mut batch = Batch::default();
        let first = Instant::now();
        loop {
            match &mut reader {
                Reader::Inotify(i) => drain(i, &mut buf, &watch, &mut batch),
                Reader::Fanotify(f) => drain_fanotify(f, &mut buf, own_pid, &watch, &mut batch),
            }
            if first.elapsed() >= MAX_GATHER {
                break;
            }
            std::thread::sleep(SETTLE);
            if !readable(&reader, 0) {
                break;
            }
        }
        // Every event read so far was made by a syscall of a request that had started before
        // this point: the batch is judged once those requests have ended.
        let mark = watch.own_mark();
        if !batch.is_empty() {
            // fanotify's events of the mount's own were dropped as they were read.
            if !watch.exact() {
                watch.wait_own_before(mark, OWN_WAIT);
            }
            let Some(fs) = fs.upgrade() else { return };
            let failed = batch.failed;
            fs.apply_backing_changes(&watch, batch);
            if failed {
                watch.give_up();
                return;
            }
        }
        watch.own().retire_before(recorded);
    }
}

/// Sends what requests queued for the kernel (see [`BackingWatch::queue`]).
fn send_queued(fs: &Weak<CofferFs>, watch: &BackingWatch) {
    let notes = watch.take_queued();
    if notes.is_empty() {
        return;
    }
    if let Some(fs) = fs.upgrade() {
        fs.tell_kernel(notes);
    }
}

/// Whether the watch's descriptor has events within `ms` milliseconds.
fn readable(reader: &Reader, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: reader.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, ms) > 0 && p.revents & libc::POLLIN != 0 }
}

/// Reads every queued event into `batch`.
fn drain(reader: &mut Inotify, buf: &mut [u8], watch: &BackingWatch, batch: &mut Batch) {
    loop {
        let events = match reader.read_events(buf) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) => return batch.fail(format_args!("reading inotify events: {e}")),
        };
        let mut any = false;
        for ev in events {
            any = true;
            if ev.mask.contains(EventMask::Q_OVERFLOW) {
                batch.overflow = true;
                continue;
            }
            let id = WatchId::Wd(ev.wd);
            if ev.mask.contains(EventMask::IGNORED) {
                watch.dropped(&id);
                continue;
            }
            let Some(dir) = watch.event_for(&id) else { continue };
            match ev.name {
                Some(name) => {
                    use std::os::unix::ffi::OsStrExt;
                    *batch
                        .entries
                        .entry((dir, name.as_bytes().to_vec()))
                        .or_insert(EventMask::empty()) |= ev.mask;
                }
                None => {
                    batch.dirs.insert(dir);
                }
            }
        }
        if !any {
            return;
        }
    }
}

/// Reads every queued fanotify event into `batch`, leaving out those this process (`own_pid`)
/// made.
fn drain_fanotify(reader: &Fanotify, buf: &mut [u8], own_pid: i32, watch: &BackingWatch, batch: &mut Batch) {
    loop {
        let n = match reader.read(buf) {
            Ok(0) => return,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return batch.fail(format_args!("reading fanotify events: {e}")),
        };
        let events = match fanotify::parse(&buf[..n]) {
            Ok(e) => e,
            Err(fanotify::Malformed) => {
                return batch.fail(format_args!("a fanotify event this build cannot read"));
            }
        };
        for ev in events {
            if ev.overflow {
                batch.overflow = true;
                continue;
            }
            let Some(key) = ev.dir else { continue };
            let id = WatchId::Key(key);
            let changes = EventMask::from_bits_truncate(ev.changes);
            if ev.name.is_none() && changes.contains(EventMask::DELETE_SELF) {
                // The kernel drops the mark with the directory, whoever deleted it.
                let dir = watch.event_for(&id);
                watch.dropped(&id);
                if let (Some(dir), false) = (dir, ev.pid == own_pid) {
                    batch.dirs.insert(dir);
                }
                continue;
            }
            if ev.pid == own_pid {
                continue;
            }
            let Some(dir) = watch.event_for(&id) else { continue };
            match ev.name {
                Some(name) => {
                    *batch.entries.entry((dir, name)).or_insert(EventMask::empty()) |= changes;
                }
                None => {
                    batch.dirs.insert(dir);
                }
            }
        }
    }
}
