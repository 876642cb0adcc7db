//! From a batch of CIPHERDIR events to what the kernel is told: each changed backing entry is
//! checked against the mount's own changes, mapped to its plaintext name, and that name's
//! dentry and inode are invalidated (a whole directory when the name cannot be told). No lock
//! is held while the kernel is told: it may hold a directory lock while it waits for a request.

use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use fuser::INodeNo;
use inotify::EventMask;

use super::events::Batch;
use super::own::Judged;
use super::BackingWatch;
use crate::fs::attr::backing_id;
use crate::fs::core::CofferFs;
use crate::vault::{Dir, Touched};

/// After lost events: how long after the first invalidation of everything a second one runs,
/// for replies that were being built from the old state while the first ran.
const RESYNC_AGAIN: Duration = Duration::from_millis(50);

/// One thing to tell the kernel.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(super) enum Note {
    /// Drop an inode's attributes and cached pages (a directory's: its cached listing).
    Inode(u64),
    /// Drop the dentry (or cached absence) of a name in a directory.
    Entry(u64, Vec<u8>),
}

/// Events that removed a name without one taking its place.
fn removal_only(mask: EventMask) -> bool {
    let gone = EventMask::DELETE | EventMask::MOVED_FROM;
    let came = EventMask::CREATE | EventMask::MOVED_TO | EventMask::MODIFY | EventMask::ATTRIB | EventMask::CLOSE_WRITE;
    mask.intersects(gone) && !mask.intersects(came)
}

/// How long, per batch, states the mount's own requests in flight may still be recording are
/// judged again (see [`own_state`]): a client's change the mount is not making waits at most
/// this long more to be passed on.
const REJUDGE_MAX: Duration = Duration::from_millis(100);

impl CofferFs {
    /// Passes one batch of CIPHERDIR events on to the kernel.
    pub(in crate::fs) fn apply_backing_changes(&self, w: &BackingWatch, batch: Batch) {
        if batch.overflow {
            log::warn!(
                "kernel cache: watch events were lost (queue overflow); invalidating everything the kernel holds"
            );
            self.invalidate_everything(w);
            return;
        }
        let mut notes = Vec::new();
        for dir in &batch.dirs {
            notes.push(Note::Inode(*dir));
        }
        let rejudge_until = Instant::now() + REJUDGE_MAX;
        for ((dir, entry), mask) in &batch.entries {
            self.entry_changed(w, *dir, entry, *mask, !w.exact(), rejudge_until, &mut notes);
        }
        if !notes.is_empty() {
            w.foreign.fetch_add(1, Ordering::Relaxed);
        }
        self.tell_kernel(notes);
    }

    /// What a change of `entry` in directory `dir` invalidates, unless the mount made it
    /// (`judge`: whether that is still to be told, from the mount's records).
    /// `rejudge_until`: how long a state the mount's own requests may still be recording is
    /// judged again (see [`own_state`]).
    #[allow(clippy::too_many_arguments)]
    fn entry_changed(
        &self,
        w: &BackingWatch,
        dir_ino: u64,
        entry: &[u8],
        mask: EventMask,
        judge: bool,
        rejudge_until: Instant,
        notes: &mut Vec<Note>,
    ) {
        let Ok(dir) = self.dir(dir_ino) else {
            // The directory is gone or unreadable: whatever the kernel holds of it goes.
            self.whole_dir(w, dir_ino, notes);
            return;
        };
        if judge {
            match judge_own(w, dir_ino, &dir, entry, mask, rejudge_until) {
                Judged::Own => return,
                Judged::Unsure => {
                    self.pages_changed(&dir, dir_ino, entry, notes);
                    return;
                }
                Judged::Other => {}
            }
        }
        log::debug!(
            "kernel cache: {} changed in CIPHERDIR ({mask:?})",
            dir.rel_child(entry).display()
        );
        if mask.intersects(EventMask::CREATE | EventMask::DELETE | EventMask::MOVED_FROM | EventMask::MOVED_TO) {
            // A name came or went: the directory's cached listing goes. Dropping the name's
            // dentry does not do it when the kernel holds none (a name nobody here looked up).
            notes.push(Note::Inode(dir_ino));
        }
        match self.vault.touched_by(&dir, entry) {
            Touched::Name(plain) => {
                notes.push(Note::Entry(dir_ino, plain.clone()));
                let ino = self.table().at(&(dir_ino, plain.clone()));
                if let Some(ino) = ino {
                    notes.push(Note::Inode(ino));
                    self.retire_cached_file(ino, notes);
                }
                w.forget_negative(dir_ino, &plain);
            }
            Touched::AllNames => {
                self.uncache_dir(dir_ino);
                self.whole_dir(w, dir_ino, notes);
            }
            Touched::Nothing => {}
        }
    }

    /// `entry` of directory `dir_ino` is as the mount left it, but a client's same-size
    /// rewrite within the same clock tick would look the same ([`Judged::Unsure`]): its name,
    /// size and times stand, only the kernel's pages of it go.
    fn pages_changed(&self, dir: &Dir, dir_ino: u64, entry: &[u8], notes: &mut Vec<Note>) {
        log::debug!(
            "kernel cache: {} as the mount left it, but change times here are coarse: its pages are dropped",
            dir.rel_child(entry).display()
        );
        if let Touched::Name(plain) = self.vault.touched_by(dir, entry) {
            if let Some(ino) = self.table().at(&(dir_ino, plain)) {
                notes.push(Note::Inode(ino));
            }
        }
    }

    /// Invalidates directory `dir`, every name known in it and every absence cached in it.
    fn whole_dir(&self, w: &BackingWatch, dir: u64, notes: &mut Vec<Note>) {
        self.retire_cached_files(Some(dir));
        notes.push(Note::Inode(dir));
        for (name, ino) in self.table().children_of(dir) {
            notes.push(Note::Entry(dir, name));
            notes.push(Note::Inode(ino));
        }
        for (d, name) in w.take_negatives(Some(dir)) {
            notes.push(Note::Entry(d, name));
        }
    }

    /// After lost events: replies get the short timeouts while everything the kernel holds is
    /// invalidated, twice, and the mount's own-change records are dropped.
    fn invalidate_everything(&self, w: &BackingWatch) {
        w.overflows.fetch_add(1, Ordering::Relaxed);
        w.resync.fetch_add(1, Ordering::AcqRel);
        w.own().clear();
        self.retire_cached_files(None);
        self.drop_all_kernel_caches(w);
        std::thread::sleep(RESYNC_AGAIN);
        self.drop_all_kernel_caches(w);
        self.dir_cache_clear();
        w.resync.fetch_add(1, Ordering::AcqRel);
    }

    /// The mount changed backing objects outside the requests that answer for them (a rekey
    /// of the mounted vault): under a watch that drops the mount's own events as it reads
    /// them (fanotify), the kernel drops everything it holds of the mount, as after lost
    /// events. Not from a request's thread (see [`tell_kernel`](Self::tell_kernel)).
    pub(in crate::fs) fn own_tree_changed(&self) {
        if let Some(w) = self.exact_watch() {
            self.drop_all_kernel_caches(w);
            self.dir_cache_clear();
        }
    }

    /// Tells the kernel to drop every name, absence, inode attribute, page and listing it
    /// holds of this mount.
    fn drop_all_kernel_caches(&self, w: &BackingWatch) {
        let (nodes, names) = self.table().everything();
        let mut notes: Vec<Note> = nodes.into_iter().map(Note::Inode).collect();
        notes.extend(names.into_iter().map(|(d, n)| Note::Entry(d, n)));
        notes.extend(w.take_negatives(None).into_iter().map(|(d, n)| Note::Entry(d, n)));
        self.tell_kernel(notes);
    }

    /// Sends `notes` (each once); a name or inode the kernel no longer holds is not an error.
    pub(super) fn tell_kernel(&self, mut notes: Vec<Note>) {
        let Some(n) = self.notifier.get() else { return };
        let mut seen = std::collections::HashSet::new();
        notes.retain(|x| seen.insert(x.clone()));
        for note in notes {
            let r = match &note {
                Note::Entry(dir, name) => n.inval_entry(INodeNo(*dir), std::ffi::OsStr::from_bytes(name)),
                Note::Inode(ino) => n.inval_inode(INodeNo(*ino), 0, 0),
            };
            if let Err(e) = r {
                if e.raw_os_error() != Some(libc::ENOENT) {
                    log::debug!("kernel cache: {note:?}: {e}");
                }
            }
        }
    }
}

/// How the change `mask` of `entry` in directory `dir_ino` stands to the mount's own records.
fn judge_own(w: &BackingWatch, dir_ino: u64, dir: &Dir, entry: &[u8], mask: EventMask, until: Instant) -> Judged {
    if removal_only(mask) {
        return own_removal(w, dir_ino, entry);
    }
    let Ok(st) = dir.fd.stat(entry) else {
        return own_removal(w, dir_ino, entry);
    };
    // An entry arriving under a name is the mount's own only if it recorded the arrival (a
    // stamp cannot tell a rename on every file system, nor a directory, whose times change
    // with every name made in it), and is still as the mount left it (events of one batch are
    // merged: a client's write right after the mount made the file comes in the same mask).
    let arrived = mask.intersects(EventMask::CREATE | EventMask::MOVED_TO);
    if arrived && !w.own().take_arrived(dir_ino, entry) {
        return Judged::Other;
    }
    own_state(w, dir_ino, dir, entry, &st, until)
}

/// Whether the mount removed `entry` of directory `dir_ino` itself.
fn own_removal(w: &BackingWatch, dir_ino: u64, entry: &[u8]) -> Judged {
    if w.own().take_removed(dir_ino, entry) {
        Judged::Own
    } else {
        Judged::Other
    }
}

/// How `entry` of directory `dir_ino`, statting as `st`, stands to the mount's own last change
/// of it.
///
/// A state no record matches while requests of the mount's own are in flight is judged again
/// once those have ended, until `until`: one of them may have changed the file and not
/// recorded it yet (while the kernel's writeback streams a file, the next write lands while
/// the watcher judges the last one's events). Its own events come in a later batch, judged
/// after it. A client's change made while the mount changes the same file is taken for the
/// mount's when the mount's record comes after it, in this wait as in any judgment.
fn own_state(w: &BackingWatch, dir_ino: u64, dir: &Dir, entry: &[u8], st: &libc::stat, until: Instant) -> Judged {
    let mut st = *st;
    loop {
        match w.own().judge(backing_id(&st), &st) {
            Judged::Other => {}
            judged => return judged,
        }
        let now = Instant::now();
        if now >= until || !w.own_in_flight() {
            return Judged::Other;
        }
        w.wait_own_before(w.own_mark(), until - now);
        match dir.fd.stat(entry) {
            Ok(now) => st = now,
            // Removed meanwhile: judged as a removal.
            Err(_) if w.own().take_removed(dir_ino, entry) => return Judged::Own,
            Err(_) => return Judged::Other,
        }
    }
}
