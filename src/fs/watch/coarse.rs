//! Which backing file systems have coarse change times (see
//! [`fstype::coarse_change_times`](super::fstype::coarse_change_times)), and whether a state
//! the mount recorded on one could still be shared by someone else's change
//! ([`Judged::Unsure`](super::own::Judged::Unsure)).

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use super::fstype;

/// Where change times are coarse, how long after a change another may still get the same
/// change time: a clock tick at most, or a file system's own time resolution (FAT keeps 2 s).
const WINDOW: Duration = Duration::from_secs(2);

/// Per backing device, whether its change times are coarse.
#[derive(Debug, Default)]
pub struct CoarseTimes {
    by_dev: Mutex<HashMap<u64, bool>>,
    /// Whether any device is coarse (most mounts have none: no lock then).
    any: AtomicBool,
}

impl CoarseTimes {
    /// Probes device `dev`, on which directory `dir` (`what`, for the log) lies, unless it
    /// is known.
    pub fn learn(&self, dev: u64, dir: &impl AsRawFd, what: &str) {
        if self.by_dev.lock().unwrap_or_else(|p| p.into_inner()).contains_key(&dev) {
            return;
        }
        let coarse = fstype::coarse_change_times(dir);
        if coarse {
            log::info!(
                "kernel cache: change times are coarse on the file system of {what} (Linux before 6.13, or a \
                 file system without fine ones): the kernel drops its pages of a file the mount changed there \
                 within the last 2 s"
            );
        }
        self.set(dev, coarse);
    }

    /// Records whether device `dev` is coarse.
    fn set(&self, dev: u64, coarse: bool) {
        if coarse {
            self.any.store(true, Ordering::Release);
        }
        self.by_dev
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(dev, coarse);
    }

    /// Whether a change made by someone else after the mount's own change that left `st`
    /// could stat exactly as `st`: its change time is coarse and recent.
    pub fn unsure(&self, st: &libc::stat) -> bool {
        // A directory's stamp holds no times (see [`Stamp`](super::own::Stamp)): time
        // tells nothing there.
        if !self.any.load(Ordering::Acquire) || st.st_mode & libc::S_IFMT == libc::S_IFDIR {
            return false;
        }
        let coarse = self
            .by_dev
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&st.st_dev)
            .copied()
            .unwrap_or(true);
        if !coarse {
            return false;
        }
        // SAFETY: timespec is plain old data, filled by the call.
        let mut now: libc::timespec = unsafe { std::mem::zeroed() };
        // SAFETY: a valid clock and a valid buffer.
        if unsafe { libc::clock_gettime(libc::CLOCK_REALTIME_COARSE, &mut now) } != 0 {
            return true;
        }
        let ns = |s: i64, n: i64| i128::from(s) * 1_000_000_000 + i128::from(n);
        #[allow(clippy::unnecessary_cast)]
        let age = ns(now.tv_sec as i64, now.tv_nsec as i64) - ns(st.st_ctime as i64, st.st_ctime_nsec as i64);
        age < WINDOW.as_nanos() as i128
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(dev: u64, mode: u32, ctime: i64) -> libc::stat {
        // SAFETY: stat is plain old data; all-zero is a valid value.
        let mut s: libc::stat = unsafe { std::mem::zeroed() };
        s.st_dev = dev;
        s.st_mode = mode;
        s.st_ctime = ctime;
        s
    }

    #[test]
    fn only_a_recent_file_state_on_a_coarse_device_is_unsure() {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let c = CoarseTimes::default();
        c.set(1, true);
        assert!(c.unsure(&st(1, libc::S_IFREG, now)));
        assert!(
            !c.unsure(&st(1, libc::S_IFREG, now - 10)),
            "changed long before it was recorded"
        );
        assert!(!c.unsure(&st(1, libc::S_IFDIR, now)), "a directory");
        let fine = CoarseTimes::default();
        fine.set(1, false);
        assert!(!fine.unsure(&st(1, libc::S_IFREG, now)));
    }
}
