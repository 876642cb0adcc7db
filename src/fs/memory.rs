//! Giving memory back: after the kernel forgets many inodes (drop_caches, memory pressure)
//! the freed table entries stay in glibc's free lists unless it is asked to return them.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

/// Forgotten nodes after which the heap is trimmed at once, while forgets keep coming.
const TRIM_EVERY: u64 = 1024;
/// How long forgets must pause before what they freed is trimmed. (fuser does not let a file
/// system see the end of a batch of forgets: its `ForgetOne` is private.)
const SETTLE: Duration = Duration::from_millis(200);

#[derive(Debug, Default)]
struct Counts {
    /// Nodes forgotten since the last trim.
    since: AtomicU64,
}

/// Counts forgotten nodes and trims the heap every [`TRIM_EVERY`] of them, and once more
/// when they stop (from a thread started at the first forget, ending with the file system).
#[derive(Debug, Default)]
pub struct Trimmer {
    counts: Arc<Counts>,
    settler: OnceLock<()>,
}

impl Trimmer {
    /// One node was forgotten.
    pub fn freed(&self) {
        if self.counts.since.fetch_add(1, Ordering::Relaxed) + 1 >= TRIM_EVERY {
            self.counts.since.store(0, Ordering::Relaxed);
            trim();
        }
        self.settler.get_or_init(|| spawn_settler(Arc::downgrade(&self.counts)));
    }
}

fn spawn_settler(counts: Weak<Counts>) {
    let spawned = std::thread::Builder::new().name("coffer-trim".into()).spawn(move || {
        let mut last = 0;
        while let Some(c) = counts.upgrade() {
            let now = c.since.load(Ordering::Relaxed);
            if now > 0 && now == last {
                c.since.store(0, Ordering::Relaxed);
                trim();
            }
            last = c.since.load(Ordering::Relaxed);
            drop(c);
            std::thread::sleep(SETTLE);
        }
    });
    if let Err(e) = spawned {
        log::debug!("no thread to trim the heap after forgets: {e}");
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
