//! What reads and writes find that a user should hear about once per file, not once per call:
//! the content layer records it on the handle, the caller (the mount) takes it and decides when
//! to tell.

use std::fmt;
use std::sync::atomic::{AtomicU8, Ordering};

/// Something worth one log line per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Notice {
    /// Versions 2 and 3, a file at rest: a read was served without the check that its blocks belong
    /// to one version, because the last block does not authenticate (FORMAT.md §5.8).
    OrderNotCheckable,
    /// Versions 2 and 3: a write started a write session at the ceiling,
    /// [`LAST_SESSION`](crate::format::session::LAST_SESSION); later versions of the file can
    /// no longer be told apart.
    SessionsExhausted,
}

impl Notice {
    const ALL: [Notice; 2] = [Notice::OrderNotCheckable, Notice::SessionsExhausted];

    fn bit(self) -> u8 {
        match self {
            Notice::OrderNotCheckable => 1,
            Notice::SessionsExhausted => 2,
        }
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Notice::OrderNotCheckable => "order of blocks not checkable: last block does not authenticate",
            Notice::SessionsExhausted => {
                "write sessions exhausted (the last block carries the highest): later versions of this file \
                 cannot be told apart; copy the file (the copy gets a new file ID)"
            }
        })
    }
}

/// Notices recorded on a handle and not taken yet.
#[derive(Debug, Default)]
pub(super) struct Pending(AtomicU8);

impl Pending {
    pub(super) fn record(&self, n: Notice) {
        self.0.fetch_or(n.bit(), Ordering::Relaxed);
    }

    /// The notices recorded since the last call (a load, no write, when there are none).
    pub(super) fn take(&self) -> Vec<Notice> {
        if self.0.load(Ordering::Relaxed) == 0 {
            return Vec::new();
        }
        let bits = self.0.swap(0, Ordering::Relaxed);
        Notice::ALL.into_iter().filter(|n| bits & n.bit() != 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn taken_once() {
        let p = Pending::default();
        assert!(p.take().is_empty());
        p.record(Notice::SessionsExhausted);
        p.record(Notice::OrderNotCheckable);
        p.record(Notice::OrderNotCheckable);
        assert_eq!(p.take(), Notice::ALL);
        assert!(p.take().is_empty());
    }
}
