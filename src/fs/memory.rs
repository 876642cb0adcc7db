//! Giving memory back: after the kernel forgets many inodes (drop_caches, memory pressure)
//! the freed table entries stay in glibc's free lists unless it is asked to return them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Forgotten nodes between two trims. Fewer left over when the kernel stops forgetting are
/// a few hundred KiB at most. (fuser does not let a file system see the end of a batch of
/// forgets: its `ForgetOne` is private.)
const TRIM_EVERY: u64 = 1024;

/// Counts forgotten nodes since the last trim and trims every [`TRIM_EVERY`].
#[derive(Debug, Default)]
pub struct Trimmer {
    since: AtomicU64,
}

impl Trimmer {
    /// One node was forgotten.
    pub fn freed(&self) {
        if self.since.fetch_add(1, Ordering::Relaxed) + 1 >= TRIM_EVERY {
            self.since.store(0, Ordering::Relaxed);
            trim();
        }
    }
}

/// Returns free heap pages of every arena to the system.
fn trim() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim has no preconditions; it only releases free memory.
    unsafe {
        libc::malloc_trim(0);
    }
}
