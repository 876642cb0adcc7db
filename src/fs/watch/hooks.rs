//! What the file system's requests tell the watch and ask of it: tickets and timeouts for
//! replies, whether an open may keep cached pages, and the records of the mount's own
//! changes (see [`own`](super::own)), taken where each change is made.

use std::os::fd::AsRawFd;
use std::time::Duration;

use super::apply::Note;
use super::own::{OwnChanges, Stamp};
use super::{BackingWatch, Ticket};
use crate::fs::attr::backing_id;
use crate::fs::core::{CofferFs, TTL};
use crate::fs::handles::FileHandle;
use crate::fs::inodes::{BackingId, ROOT};
use crate::vault::{backing, CipherName, Dir, DirFd};

impl CofferFs {
    /// Sets up the watch of CIPHERDIR for `mode` and `atime` (before the mount serves).
    pub(in crate::fs) fn watch_backing(
        &mut self,
        mode: crate::fs::KernelCache,
        atime: crate::fs::Atime,
        watcher: crate::fs::Watcher,
    ) {
        let dev = self.root().fd.fstat().map_or(0, |st| st.st_dev);
        let plan = super::plan(&self.root().fd, mode, atime, watcher);
        self.watch = BackingWatch::for_mount(
            &self.root().fd,
            dev,
            self.vault.read_only(),
            &plan,
            mode == crate::fs::KernelCache::On,
        );
    }

    /// The ticket of a request in directory `dir` (see [`Ticket`]); the
    /// directory is watched first if it is not yet.
    pub(in crate::fs) fn ticket(&self, dir: u64) -> Ticket {
        let Some(w) = &self.watch else { return Ticket::NONE };
        if let Some(t) = w.ticket(dir) {
            return t;
        }
        match self.dir(dir) {
            Ok(d) => w.ensure(dir, &d),
            Err(_) => return Ticket::NONE,
        }
        w.ticket(dir).unwrap_or(Ticket::NONE)
    }

    /// The ticket for `ino`'s attributes: through the directory of its first known name
    /// (the root's own watch for the root). A file with several links keeps the short
    /// timeout: a change through a name in an unwatched directory would not be seen.
    pub(in crate::fs) fn attr_ticket(&self, ino: u64) -> Ticket {
        if self.watch.is_none() {
            return Ticket::NONE;
        }
        if ino == ROOT {
            return self.ticket(ROOT);
        }
        // The table's lock must be released before `ticket`, which may open the parent's
        // backing directory and look up its ancestors in the table.
        let parent = self.table().sole_parent(ino);
        match parent {
            Some(parent) => self.ticket(parent),
            None => Ticket::NONE,
        }
    }

    /// The timeout of a reply whose request took ticket `t`.
    pub(in crate::fs) fn ttl(&self, t: Ticket) -> Duration {
        self.watch.as_ref().map_or(TTL, |w| w.ttl(t))
    }

    /// Whether the pages the kernel caches for `ino` may be kept by an open through `fh`: the
    /// backing file is as it was at the previous open. Otherwise the kernel drops them at this
    /// open, so that pages of an old version never mix with reads of the new one, whatever
    /// the watcher has reported yet.
    pub(in crate::fs) fn pages_unchanged(&self, ino: u64, fh: u64) -> bool {
        let Some(w) = &self.watch else { return false };
        let Some(h) = self.files.get(fh) else { return false };
        let Ok(st) = backing::fstat(h.file().backing().as_raw_fd()) else {
            return false;
        };
        w.pages_unchanged(ino, &st)
    }

    /// The backing directory of `ino` when a fanotify mark is on it and the kernel's forget
    /// of `n` lookups drops the node: to be found before the forget is applied, for
    /// [`forget_watched`](Self::forget_watched).
    pub(in crate::fs) fn marked_dir(&self, ino: u64, n: u64) -> Option<std::sync::Arc<Dir>> {
        let w = self.watch.as_ref()?;
        if !w.marked(ino) || !self.table().forgets(ino, n) {
            return None;
        }
        self.dir(ino).ok()
    }

    /// The kernel forgot `ino`: what the watch keeps of it goes (a fanotify mark through
    /// `dir`, see [`marked_dir`](Self::marked_dir)).
    pub(in crate::fs) fn forget_watched(&self, ino: u64, dir: Option<&Dir>) {
        if let Some(w) = &self.watch {
            w.forget_pages(ino);
            w.unwatch(ino, dir);
        }
    }

    /// The watch, when it judges events by the records the mount's requests leave (inotify);
    /// a watch whose events name their process (fanotify) needs none.
    pub(in crate::fs) fn recording(&self) -> Option<&std::sync::Arc<BackingWatch>> {
        self.watch.as_ref().filter(|w| !w.exact())
    }

    /// The watch, when its events name their process (fanotify): it drops every change this
    /// process makes, so what the requests cannot vouch for must be told to the kernel.
    pub(in crate::fs) fn exact_watch(&self) -> Option<&std::sync::Arc<BackingWatch>> {
        self.watch.as_ref().filter(|w| w.exact())
    }

    /// Records that the mount itself just changed the backing object statting as `st`.
    pub(in crate::fs) fn own_change(&self, st: &libc::stat) {
        if let Some(w) = self.recording() {
            self.record_own(w, &mut w.own(), st);
        }
    }

    /// Records `st` in `own` (the records of watch `w`) and as its node's last own stamp.
    fn record_own(&self, w: &BackingWatch, own: &mut OwnChanges, st: &libc::stat) {
        own.changed(backing_id(st), st, w.unsure(st));
        self.table().set_own_stamp(backing_id(st), Stamp::of(st));
    }

    /// Records that the mount itself just changed the backing file open as `fd`.
    ///
    /// Records of a file that requests change at once (a write and the kernel's SETATTR of
    /// its times, under the writeback cache) take their stat under the records' lock, so they
    /// land in the order they stat: the last record is of the newest state. A stat taken
    /// before the lock could be recorded after a newer one, and the watcher would take the
    /// mount's own change for a client's.
    pub(in crate::fs) fn own_change_fd(&self, fd: &impl std::os::fd::AsRawFd) {
        if let Some(w) = self.recording() {
            let mut own = w.own();
            if let Ok(st) = backing::fstat(fd.as_raw_fd()) {
                self.record_own(w, &mut own, &st);
            }
        }
    }

    /// A handle open for writing is being closed, an event (IN_CLOSE_WRITE) of its own. It is
    /// the mount's own only while the file is as the mount last left it (through any handle
    /// or name): a sync client's change between the mount's last change and this
    /// (asynchronous) release must not be taken for the mount's. A file the mount never
    /// changed gets no record: its close costs one needless invalidation. Stat and judgment
    /// are one step under the records' lock, as in [`own_change_fd`](Self::own_change_fd).
    pub(in crate::fs) fn own_close(&self, h: &FileHandle) {
        let Some(w) = self.recording() else { return };
        let mut own = w.own();
        let Ok(st) = backing::fstat(h.file().backing().as_raw_fd()) else {
            return;
        };
        let last = self.table().own_stamp(h.ino);
        if last == Some(Stamp::of(&st)) {
            self.record_own(w, &mut own, &st);
        } else {
            log::debug!(
                "kernel cache: {} changed since the mount last wrote it; its close is not taken for the mount's own",
                h.file().rel().display()
            );
        }
    }

    /// Records that the mount itself changed node `ino` (through its name). The name is found
    /// first; its stat is taken again under the records' lock, as in
    /// [`own_change_fd`](Self::own_change_fd).
    pub(in crate::fs) fn own_change_ino(&self, ino: u64) {
        if self.recording().is_none() {
            return;
        }
        if let Ok(l) = self.locate(ino) {
            let _ = self.stat_own_change(&l.dir.fd, &l.entry, None);
        }
    }

    /// Stats `entry` of backing directory `dir`, which the mount itself just changed, and
    /// records the stat as its own change when it is still the object `backing` (any object
    /// when None): one step under the records' lock, as in
    /// [`own_change_fd`](Self::own_change_fd), and the stat a reply needs anyway.
    pub(in crate::fs) fn stat_own_change(
        &self,
        dir: &DirFd,
        entry: &[u8],
        backing: Option<BackingId>,
    ) -> std::io::Result<libc::stat> {
        let Some(w) = self.recording() else {
            return dir.stat(entry);
        };
        let mut own = w.own();
        let st = dir.stat(entry)?;
        if backing.is_none_or(|b| b == backing_id(&st)) {
            self.record_own(w, &mut own, &st);
        }
        Ok(st)
    }

    /// A changing request of the mount's own failed, perhaps half way: under a watch that
    /// drops the mount's own events as they are read (fanotify), whatever the kernel holds of
    /// `names` (directory inode, plaintext name), their directories and `inodes` is dropped, as
    /// the watch would drop a client's change. (Under inotify, a change is the mount's own
    /// only once the request recorded it, which a failed request does not.)
    pub(in crate::fs) fn own_change_failed(&self, names: &[(u64, &[u8])], inodes: &[u64]) {
        let Some(w) = self.exact_watch() else { return };
        let mut notes = Vec::new();
        for (dir, name) in names {
            notes.push(Note::Entry(*dir, name.to_vec()));
            notes.push(Note::Inode(*dir));
            w.forget_negative(*dir, name);
        }
        notes.extend(inodes.iter().map(|i| Note::Inode(*i)));
        w.queue(notes);
    }

    /// Records that the mount itself made or moved something to backing name `name` (and
    /// its long-name sidecar) of directory `parent`.
    pub(in crate::fs) fn own_arrival(&self, parent: u64, name: &CipherName) {
        if let Some(w) = self.recording() {
            let mut own = w.own();
            own.arrived(parent, &name.entry);
            if let Some(l) = &name.long {
                own.arrived(parent, &l.sidecar);
            }
        }
    }

    /// Records that the mount itself removed backing name `name` (and its long-name sidecar)
    /// from directory `parent`.
    pub(in crate::fs) fn own_removal(&self, parent: u64, name: &CipherName) {
        if let Some(w) = self.recording() {
            let mut own = w.own();
            own.removed(parent, &name.entry);
            if let Some(l) = &name.long {
                own.removed(parent, &l.sidecar);
            }
        }
    }
}
