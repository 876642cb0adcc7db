//! What the mount itself changed in CIPHERDIR, so that the watcher can tell its own changes
//! from a sync client's. inotify names no process: a change counts as the mount's own only
//! when the entry's stat still equals the stamp the mount took right after its own change
//! (or, for a removed name, when the mount removed that very name). Anything else is someone
//! else's and invalidates. A lost record costs one needless invalidation, never a stale read.
//!
//! Where change times are coarse (see [`coarse_change_times`](super::fstype::coarse_change_times))
//! a client's same-size write within the clock tick of the mount's own change stats exactly
//! as the mount left the file. A state recorded while its change time could still be shared
//! so is judged [`Judged::Unsure`] and passed on like a client's: the mount's own change
//! then costs one needless invalidation, a client's is never hidden.

use std::collections::HashMap;

use super::super::inodes::BackingId;

/// At most this many records of each kind; past it they are dropped (the next events of
/// those entries then invalidate, which is only slower).
const MAX_RECORDS: usize = 1 << 16;

/// What identifies one state of a backing object without reading it. A directory's times
/// and size change with every name made in it (events its own watch reports), so a
/// directory's stamp is its mode and owner only: what a chmod or chown in its parent's watch
/// changes. Stamps judge changes to an entry in place; an entry arriving under a name (made,
/// or renamed there by anyone) is the mount's own only when the mount recorded that arrival
/// ([`OwnChanges::arrived`]): a rename leaves the stamp as it was on some file systems
/// (ramfs keeps the change time).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    ino: u64,
    mode: u32,
    owner: (u32, u32),
    size: i64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    /// The stamp of `st`.
    pub fn of(st: &libc::stat) -> Stamp {
        let dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        Stamp {
            ino: 0,
            mode: st.st_mode,
            owner: (st.st_uid, st.st_gid),
            size: if dir { 0 } else { st.st_size },
            mtime: if dir { (0, 0) } else { (st.st_mtime, st.st_mtime_nsec) },
            ctime: if dir { (0, 0) } else { (st.st_ctime, st.st_ctime_nsec) },
        }
    }

    /// The stamp of `st` with its inode number (a file replaced under the same name differs).
    pub fn with_inode(st: &libc::stat) -> Stamp {
        Stamp {
            ino: st.st_ino,
            ..Stamp::of(st)
        }
    }
}

/// How the watcher judges a state of a backing object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judged {
    /// As the mount's own last change left it.
    Own,
    /// As the mount left it, but a change by someone else within the same clock tick would
    /// look the same: passed on.
    Unsure,
    /// Not a state the mount recorded.
    Other,
}

/// The mount's own recent changes. Each record carries the number of its recording; once the
/// watcher has read and judged every event queued before a number, the records older than it
/// are dropped ([`retire_before`](Self::retire_before)): a change's events are queued by its
/// syscall, before the change is recorded.
#[derive(Debug, Default)]
pub struct OwnChanges {
    /// The stamp of each object right after the mount last changed it, whether it is
    /// [`Judged::Unsure`], and its number.
    stamps: HashMap<BackingId, (Stamp, bool, u64)>,
    /// Names the mount removed or renamed away: (directory inode, backing entry).
    gone: HashMap<(u64, Vec<u8>), u64>,
    /// Entries the mount made or renamed, under their new names.
    arrived: HashMap<(u64, Vec<u8>), u64>,
    /// The number the next record gets.
    next: u64,
}

impl OwnChanges {
    fn number(&mut self) -> u64 {
        self.next += 1;
        self.next - 1
    }

    /// Records that the mount just changed `backing`, which now stats as `st`; `unsure`: a
    /// change by someone else could still leave the same stat (see [`Judged::Unsure`]).
    pub fn changed(&mut self, backing: BackingId, st: &libc::stat, unsure: bool) {
        if self.stamps.len() >= MAX_RECORDS {
            self.stamps.clear();
        }
        let n = self.number();
        let stamp = Stamp::of(st);
        // The same state recorded again later (a close long after the write) is no surer than
        // when it was first recorded.
        let unsure = unsure || self.stamps.get(&backing).is_some_and(|(s, u, _)| *u && *s == stamp);
        self.stamps.insert(backing, (stamp, unsure, n));
    }

    /// Records that the mount removed `entry` from directory `dir`.
    pub fn removed(&mut self, dir: u64, entry: &[u8]) {
        if self.gone.len() >= MAX_RECORDS {
            self.gone.clear();
        }
        let n = self.number();
        self.gone.insert((dir, entry.to_vec()), n);
    }

    /// Records that the mount made `entry` in `dir`, or renamed something to it.
    pub fn arrived(&mut self, dir: u64, entry: &[u8]) {
        if self.arrived.len() >= MAX_RECORDS {
            self.arrived.clear();
        }
        let n = self.number();
        self.arrived.insert((dir, entry.to_vec()), n);
    }

    /// Whether what is now at `entry` in `dir` got there by the mount (answers once).
    pub fn take_arrived(&mut self, dir: u64, entry: &[u8]) -> bool {
        self.arrived.remove(&(dir, entry.to_vec())).is_some()
    }

    /// Whether `backing`, now statting as `st`, is as the mount left it.
    pub fn judge(&self, backing: BackingId, st: &libc::stat) -> Judged {
        match self.stamps.get(&backing) {
            Some((s, unsure, _)) if *s == Stamp::of(st) => {
                if *unsure {
                    Judged::Unsure
                } else {
                    Judged::Own
                }
            }
            _ => Judged::Other,
        }
    }

    /// Whether the mount removed `entry` from `dir` (each removal answers once).
    pub fn take_removed(&mut self, dir: u64, entry: &[u8]) -> bool {
        self.gone.remove(&(dir, entry.to_vec())).is_some()
    }

    /// The number the next record will get.
    pub fn mark(&self) -> u64 {
        self.next
    }

    /// Drops the records numbered below `mark`: their events have all been judged.
    pub fn retire_before(&mut self, mark: u64) {
        self.stamps.retain(|_, (_, _, n)| *n >= mark);
        self.gone.retain(|_, n| *n >= mark);
        self.arrived.retain(|_, n| *n >= mark);
        if self.stamps.capacity() > 4 * self.stamps.len().max(64) {
            self.stamps.shrink_to_fit();
        }
        if self.gone.capacity() > 4 * self.gone.len().max(64) {
            self.gone.shrink_to_fit();
        }
    }

    /// Forgets everything (after events were lost: nothing may be taken for the mount's own).
    pub fn clear(&mut self) {
        self.stamps.clear();
        self.gone.clear();
        self.arrived.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(size: i64, mtime: i64, ctime_ns: i64) -> libc::stat {
        // SAFETY: stat is plain old data; all-zero is a valid value.
        let mut s: libc::stat = unsafe { std::mem::zeroed() };
        s.st_size = size;
        s.st_mtime = mtime;
        s.st_ctime_nsec = ctime_ns;
        s
    }

    #[test]
    fn only_the_exact_state_the_mount_left_is_its_own() {
        let mut o = OwnChanges::default();
        o.changed((1, 2), &st(10, 5, 7), false);
        assert_eq!(o.judge((1, 2), &st(10, 5, 7)), Judged::Own);
        assert_eq!(o.judge((1, 2), &st(11, 5, 7)), Judged::Other, "size changed since");
        assert_eq!(o.judge((1, 2), &st(10, 6, 7)), Judged::Other, "mtime changed since");
        assert_eq!(
            o.judge((1, 2), &st(10, 5, 8)),
            Judged::Other,
            "ctime changed since (a chmod, a rename)"
        );
        assert_eq!(o.judge((1, 3), &st(10, 5, 7)), Judged::Other, "another object");
        o.clear();
        assert_eq!(o.judge((1, 2), &st(10, 5, 7)), Judged::Other);
    }

    #[test]
    fn a_state_someone_else_could_share_is_never_the_mounts_own() {
        let mut o = OwnChanges::default();
        o.changed((1, 2), &st(10, 5, 7), true);
        assert_eq!(o.judge((1, 2), &st(10, 5, 7)), Judged::Unsure);
        assert_eq!(o.judge((1, 2), &st(10, 5, 8)), Judged::Other);
        o.changed((1, 2), &st(10, 5, 7), false);
        assert_eq!(
            o.judge((1, 2), &st(10, 5, 7)),
            Judged::Unsure,
            "the same state recorded again later"
        );
        o.changed((1, 2), &st(10, 5, 8), false);
        assert_eq!(o.judge((1, 2), &st(10, 5, 8)), Judged::Own, "the newest record counts");
    }

    #[test]
    fn a_directory_stays_the_mounts_own_while_names_are_made_in_it() {
        let mut o = OwnChanges::default();
        let mut d = st(4096, 5, 7);
        d.st_mode = libc::S_IFDIR | 0o755;
        o.changed((1, 9), &d, false);
        let mut later = st(8192, 6, 9);
        later.st_mode = libc::S_IFDIR | 0o755;
        assert_eq!(o.judge((1, 9), &later), Judged::Own);
        later.st_mode = libc::S_IFDIR | 0o700;
        assert_eq!(o.judge((1, 9), &later), Judged::Other, "a chmod by someone else");
    }

    #[test]
    fn records_older_than_a_mark_are_retired() {
        let mut o = OwnChanges::default();
        o.changed((1, 2), &st(1, 1, 1), false);
        o.removed(4, b"a");
        let mark = o.mark();
        o.changed((1, 3), &st(1, 1, 1), false);
        o.retire_before(mark);
        assert_eq!(o.judge((1, 2), &st(1, 1, 1)), Judged::Other);
        assert!(!o.take_removed(4, b"a"));
        assert_eq!(o.judge((1, 3), &st(1, 1, 1)), Judged::Own, "recorded after the mark");
    }

    #[test]
    fn a_removal_answers_once() {
        let mut o = OwnChanges::default();
        o.removed(4, b"abc");
        assert!(!o.take_removed(5, b"abc"));
        assert!(o.take_removed(4, b"abc"));
        assert!(!o.take_removed(4, b"abc"));
    }
}
