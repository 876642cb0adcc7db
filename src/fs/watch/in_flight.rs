//! The mount's own changing requests in flight, as the watcher needs to know them: it judges
//! a batch of events only once the requests that may have made them have ended and recorded
//! what they changed (see [`OwnOp`](super::OwnOp)).
//!
//! Each request is counted in the slot of the epoch it started in, with one atomic add: every
//! changing request takes one, so a lock here made the request threads wait on each other.
//! The watcher starts a new epoch when it marks the requests it must wait for.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Epoch slots; a request still in flight this many marks after it started is no longer
/// waited for (the watcher marks once per batch and once per judgment again).
const SLOTS: usize = 64;

/// Counts of the mount's own requests in flight, by the epoch they started in.
#[derive(Debug)]
pub struct InFlight {
    epoch: AtomicU64,
    counts: [AtomicU32; SLOTS],
}

impl Default for InFlight {
    fn default() -> Self {
        InFlight {
            epoch: AtomicU64::new(0),
            counts: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }
}

impl InFlight {
    /// Counts a request in; returns its slot, to give back to [`leave`](Self::leave).
    pub fn enter(&self) -> usize {
        let slot = (self.epoch.load(Ordering::Acquire) % SLOTS as u64) as usize;
        self.counts[slot].fetch_add(1, Ordering::AcqRel);
        slot
    }

    /// The request counted in `slot` ended.
    pub fn leave(&self, slot: usize) {
        self.counts[slot].fetch_sub(1, Ordering::AcqRel);
    }

    /// Whether any request is in flight.
    pub fn any(&self) -> bool {
        self.counts.iter().any(|c| c.load(Ordering::Acquire) > 0)
    }

    /// Starts a new epoch and returns it: the requests that started before are what
    /// [`wait_before`](Self::wait_before) waits for. Only the watcher thread calls it.
    pub fn mark(&self) -> u64 {
        self.epoch.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Waits (at most `max`) until every request that started before epoch `mark` ended.
    pub fn wait_before(&self, mark: u64, max: Duration) {
        let current = (mark % SLOTS as u64) as usize;
        let start = Instant::now();
        loop {
            let busy = self
                .counts
                .iter()
                .enumerate()
                .any(|(i, c)| i != current && c.load(Ordering::Acquire) > 0);
            if !busy || start.elapsed() >= max {
                return;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_waits_for_the_requests_that_started_before_it_only() {
        let f = InFlight::default();
        let before = f.enter();
        let mark = f.mark();
        let after = f.enter();
        assert!(f.any());
        let t = Instant::now();
        f.wait_before(mark, Duration::from_millis(50));
        assert!(
            t.elapsed() >= Duration::from_millis(50),
            "a request from before the mark is waited for"
        );
        f.leave(before);
        let t = Instant::now();
        f.wait_before(mark, Duration::from_secs(5));
        assert!(t.elapsed() < Duration::from_secs(1), "one after the mark is not");
        f.leave(after);
        assert!(!f.any());
    }
}
