//! The process-wide free-space figure that tells a growing write whether reserving its backing
//! range first is worth the cost.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Free backing space (beyond twice the bytes a write adds) above which a growing write is not
/// reserved first: running out during that write would need other writers to fill this much
/// at the same moment, and the rollback covers even that.
pub(super) const RESERVE_BELOW_FREE: u64 = 256 << 20;

/// How long a free-space figure is reused.
const ROOM_RECHECK: Duration = Duration::from_millis(500);

/// The last free-space figure, reused for [`ROOM_RECHECK`] while the writes since take less
/// than a quarter of the spare room it showed (a stale "plenty" only skips a reservation; the
/// rollback still covers a write that fails).
static ROOM: RoomCache = RoomCache::new();

/// Whether the backing file system (device `dev`, 0 when unknown) has so much room that
/// reserving `need` bytes before a write is not worth its cost: on ext4 a reserved range
/// becomes unwritten extents that the write must then convert (streaming writes about 20%
/// slower). `measure` gives the free bytes now. Quotas are not seen here; a write that hits
/// one is rolled back like any failed write.
pub(super) fn plenty_of_room(dev: u64, need: u64, measure: impl FnOnce() -> u64) -> bool {
    ROOM.plenty(dev, need, measure)
}

/// One free-space measurement and what was asked of it since.
#[derive(Debug, Clone, Copy)]
struct RoomFigure {
    /// The file system measured.
    dev: u64,
    /// When.
    measured_at: Instant,
    /// Free bytes then.
    free: u64,
    /// Bytes asked for since.
    asked: u64,
}

/// The cache behind [`plenty_of_room`].
pub(super) struct RoomCache {
    figure: Mutex<Option<RoomFigure>>,
}

impl RoomCache {
    pub(super) const fn new() -> Self {
        RoomCache {
            figure: Mutex::new(None),
        }
    }

    pub(super) fn plenty(&self, dev: u64, need: u64, measure: impl FnOnce() -> u64) -> bool {
        let enough = |free: u64, asked: u64| {
            u128::from(free) > u128::from(asked) * 4 + u128::from(need) * 2 + u128::from(RESERVE_BELOW_FREE)
        };
        let mut fig = self.figure.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(f) = fig.as_mut() {
            let asked_now = f.asked.saturating_add(need);
            if f.dev == dev && dev != 0 && f.measured_at.elapsed() < ROOM_RECHECK && enough(f.free, asked_now) {
                f.asked = asked_now;
                return true;
            }
        }
        let free = measure();
        *fig = Some(RoomFigure {
            dev,
            measured_at: Instant::now(),
            free,
            asked: need,
        });
        enough(free, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::{RoomCache, RESERVE_BELOW_FREE};
    use std::cell::Cell;

    #[test]
    fn free_space_figure_is_reused_only_while_plenty_on_the_same_device() {
        let cache = RoomCache::new();
        let measured = Cell::new(0);
        let big = || {
            measured.set(measured.get() + 1);
            RESERVE_BELOW_FREE + (1 << 30)
        };
        assert!(cache.plenty(7, 1 << 20, big));
        assert!(cache.plenty(7, 1 << 20, big));
        assert_eq!(measured.get(), 1, "second check reuses the figure");
        // Another file system is measured afresh.
        assert!(cache.plenty(8, 1 << 20, big));
        assert_eq!(measured.get(), 2);
        // Writes eating into the spare room force a new measurement, which says "not plenty".
        let small = || {
            measured.set(measured.get() + 1);
            RESERVE_BELOW_FREE
        };
        assert!(
            !cache.plenty(8, 200 << 20, small),
            "1 GiB spare, 4 x 200 MiB asked: measure"
        );
        assert_eq!(measured.get(), 3);
        assert!(!cache.plenty(8, 1, small), "a low figure is never reused");
        assert_eq!(measured.get(), 4);
        // Unknown device (0): always measured.
        assert!(cache.plenty(0, 1, big));
        assert!(cache.plenty(0, 1, big));
        assert_eq!(measured.get(), 6);
    }
}
