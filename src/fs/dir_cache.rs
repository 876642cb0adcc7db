//! The daemon's cache of open backing directories: least recently used evicted, IVs re-read when a directory changes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::vault::{Dir, VaultError};

/// How many backing directory descriptors the daemon keeps open for reuse, at most; fewer
/// when the descriptor limit is low (see [`dir_cache_budget`]).
const DIR_CACHE_MAX: usize = 1024;

/// The directory-descriptor cache's share of the soft descriptor limit: below half of it, so
/// open files, listings and the FUSE device keep the other half.
/// `None` (unlimited or unknown) gives the most.
pub fn dir_cache_budget(nofile_soft: Option<u64>) -> usize {
    let Some(n) = nofile_soft else { return DIR_CACHE_MAX };
    let half = usize::try_from(n / 2).unwrap_or(usize::MAX);
    half.saturating_sub(16).clamp(8, DIR_CACHE_MAX)
}

/// Whether an error is the process or system running out of descriptors.
pub(super) fn out_of_fds(e: &VaultError) -> bool {
    matches!(e.errno(), libc::EMFILE | libc::ENFILE)
}

/// A cached directory whose backing directory changed (a sync client may have replaced its
/// `coffer.diriv` or delivered a conflict copy of it) re-reads its IVs, at most this often.
pub(super) const DIR_REREAD: Duration = Duration::from_millis(250);

/// What tells that a backing directory's entries changed: mtime, ctime and link count.
pub(super) type DirStamp = (i64, i64, i64, i64, u64);

pub(super) fn dir_stamp(st: &libc::stat) -> DirStamp {
    (
        st.st_mtime,
        st.st_mtime_nsec,
        st.st_ctime,
        st.st_ctime_nsec,
        st.st_nlink,
    )
}

/// A backing directory kept open, with the stamp it had when its IVs were read.
#[derive(Debug)]
pub(super) struct CachedDir {
    pub(super) dir: Arc<Dir>,
    pub(super) stamp: DirStamp,
    /// When the stamp was last found current (or the IVs read): within [`DIR_REREAD`] of it
    /// the directory is used without an fstat.
    pub(super) checked_at: Instant,
    /// The cache's use counter at this directory's last use (least recently used go first).
    pub(super) used: u64,
}

/// Open backing directories by inode, least recently used evicted beyond `max`.
#[derive(Debug)]
pub(super) struct DirCache {
    pub(super) map: HashMap<u64, CachedDir>,
    pub(super) max: usize,
    tick: u64,
}

impl DirCache {
    pub(super) fn new(max: usize) -> Self {
        DirCache {
            map: HashMap::new(),
            max,
            tick: 0,
        }
    }

    /// The entry of `ino`, marked as used.
    pub(super) fn get(&mut self, ino: u64) -> Option<&mut CachedDir> {
        self.tick += 1;
        let tick = self.tick;
        let c = self.map.get_mut(&ino)?;
        c.used = tick;
        Some(c)
    }

    pub(super) fn insert(&mut self, ino: u64, mut c: CachedDir) {
        if self.map.len() >= self.max && !self.map.contains_key(&ino) {
            // An eighth at a time, so a walk past the budget pays one scan per max/8 opens.
            self.shed((self.max / 8).max(1));
        }
        self.tick += 1;
        c.used = self.tick;
        self.map.insert(ino, c);
    }

    /// Closes the `n` least recently used directories (those still in use elsewhere stay open
    /// through their other references until those go).
    pub(super) fn shed(&mut self, n: usize) {
        if n >= self.map.len() {
            self.map.clear();
            return;
        }
        let mut ticks: Vec<u64> = self.map.values().map(|c| c.used).collect();
        let (_, &mut cut, _) = ticks.select_nth_unstable(n - 1);
        let mut left = n;
        self.map.retain(|_, c| {
            if left > 0 && c.used <= cut {
                left -= 1;
                false
            } else {
                true
            }
        });
    }
}
