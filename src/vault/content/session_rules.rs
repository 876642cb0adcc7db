//! The write-session rules of files with sessions (header versions 2 and 3, FORMAT.md §5.8) as a value: which session a
//! handle's next write continues or starts, and what it remembers after the write. It decides;
//! the file acts (reads the last block's tag or session, reseals the last block).
//!
//! Invariant kept by every write: no block carries a session above the last block's. A handle
//! starts a new session (the last block's + 1, the last block resealed with it first) on its
//! first write, after an fsync, after [`SESSION_MAX_AGE`], and whenever the file is not as its
//! previous write left it (another handle or another program wrote); otherwise it continues.

use std::time::{Duration, Instant};

use crate::crypto::TAG_LEN;
use crate::format::session;

/// How long one handle keeps writing under one session number: two states of a file that a
/// sync client picks up more than this far apart are always told apart.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(1);

/// A block's tag: the last [`TAG_LEN`] bytes of its sealed form.
pub(super) type Tag = [u8; TAG_LEN];

/// What the file looked like after a handle's last write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LeftAs {
    /// Backing length.
    len: u64,
    /// The last block's tag: the backing file's last 16 bytes.
    last_tag: Tag,
}

/// A write session a handle holds on a file with sessions (versions 2 and 3).
#[derive(Debug, Clone, Copy)]
struct HeldSession {
    session: u32,
    started: Instant,
    /// The state the handle's last write left (`None` before its first write ends).
    left: Option<LeftAs>,
    /// The tag the last block was resealed with when this session started (until the first
    /// write of the session ends).
    resealed: Option<Tag>,
}

/// The session a write may continue, if the last block still has the tag this handle left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ContinueIf {
    /// The session to continue.
    pub(super) session: u32,
    /// The tag the last block must still have.
    pub(super) last_tag: Tag,
}

/// How a write that cannot continue a session starts one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Start {
    /// Seal with `session`; the operation seals the last block itself.
    Session(u32),
    /// Reseal the last block with `session` first, then seal with it.
    ResealLastWith(u32),
}

impl Start {
    /// The session the write seals with.
    pub(super) fn session(self) -> u32 {
        match self {
            Start::Session(s) | Start::ResealLastWith(s) => s,
        }
    }
}

/// How a write or truncate ended, for the session it ran under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WriteOutcome {
    /// It failed: the next write starts a new session.
    Failed,
    /// It sealed the last block, which now has this tag.
    SealedLast(Tag),
    /// It left the last block as it was (or as the session's start resealed it).
    KeptLast,
}

/// Where the last block's tag after a write comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TagAfter {
    /// Known without reading.
    Known(Tag),
    /// Read it from the backing file.
    ReadIt,
}

/// The session state of one handle (none held: the next write starts a session).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SessionRules {
    held: Option<HeldSession>,
}

impl SessionRules {
    /// Forgets the held session (after an fsync, a failed write, or a file not as left).
    pub(super) fn forget(&mut self) {
        self.held = None;
    }

    /// At `now`, on a backing file of length `len`: the session a write may continue, provided
    /// the last block still has the returned tag (read only when asked, it costs a read).
    pub(super) fn may_continue(&self, now: Instant, len: u64) -> Option<ContinueIf> {
        let h = self.held?;
        let left = h.left?;
        (now.saturating_duration_since(h.started) < SESSION_MAX_AGE && left.len == len).then_some(ContinueIf {
            session: h.session,
            last_tag: left.last_tag,
        })
    }

    /// A new session after the last block's `last_session`; `op_seals_last`: the operation
    /// seals the last block itself.
    pub(super) fn start(last_session: u32, op_seals_last: bool) -> Start {
        let s = session::next(last_session);
        if op_seals_last {
            Start::Session(s)
        } else {
            Start::ResealLastWith(s)
        }
    }

    /// Holds session `s`, started at `now`; `resealed` is the last block's tag if it was
    /// resealed to start it.
    pub(super) fn started(&mut self, s: u32, now: Instant, resealed: Option<Tag>) {
        self.held = Some(HeldSession {
            session: s,
            started: now,
            left: None,
            resealed,
        });
    }

    /// After a successful write under session `s`: where the last block's tag comes from.
    pub(super) fn tag_after(&self, s: u32, outcome: WriteOutcome) -> TagAfter {
        match (outcome, self.held) {
            (WriteOutcome::SealedLast(t), _) => TagAfter::Known(t),
            // This session's first write: the tag its start resealed the last block with.
            (
                _,
                Some(HeldSession {
                    session,
                    resealed: Some(t),
                    ..
                }),
            ) if session == s => TagAfter::Known(t),
            // A later write that left the last block alone.
            (
                _,
                Some(HeldSession {
                    session,
                    left: Some(left),
                    ..
                }),
            ) if session == s => TagAfter::Known(left.last_tag),
            _ => TagAfter::ReadIt,
        }
    }

    /// After a successful write under session `s` at `now` that left a backing file of `len`
    /// bytes whose last block has `last_tag`: the next write may continue from here.
    pub(super) fn finished(&mut self, s: u32, now: Instant, len: u64, last_tag: Tag) {
        let started = match self.held {
            Some(h) if h.session == s => h.started,
            _ => now,
        };
        self.held = Some(HeldSession {
            session: s,
            started,
            left: Some(LeftAs { len, last_tag }),
            resealed: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T1: Tag = [1; TAG_LEN];
    const T2: Tag = [2; TAG_LEN];

    #[test]
    fn a_handle_continues_only_the_file_it_left_within_the_age() {
        let t0 = Instant::now();
        let mut r = SessionRules::default();
        assert_eq!(r.may_continue(t0, 100), None, "nothing held");
        assert_eq!(SessionRules::start(4, false), Start::ResealLastWith(5));
        assert_eq!(SessionRules::start(4, true), Start::Session(5));
        assert_eq!(SessionRules::start(u32::MAX, true).session(), u32::MAX, "saturates");
        r.started(5, t0, Some(T1));
        // Before the first write ends nothing can be continued.
        assert_eq!(r.may_continue(t0, 100), None);
        assert_eq!(
            r.tag_after(5, WriteOutcome::KeptLast),
            TagAfter::Known(T1),
            "the resealed tag"
        );
        assert_eq!(r.tag_after(5, WriteOutcome::SealedLast(T2)), TagAfter::Known(T2));
        assert_eq!(
            r.tag_after(6, WriteOutcome::KeptLast),
            TagAfter::ReadIt,
            "another session"
        );
        r.finished(5, t0, 100, T1);
        assert_eq!(
            r.may_continue(t0 + Duration::from_millis(10), 100),
            Some(ContinueIf {
                session: 5,
                last_tag: T1
            })
        );
        assert_eq!(r.may_continue(t0, 101), None, "someone changed the length");
        assert_eq!(r.may_continue(t0 + SESSION_MAX_AGE, 100), None, "too old");
        // A later write that keeps the last block knows its tag; the start time stays.
        assert_eq!(r.tag_after(5, WriteOutcome::KeptLast), TagAfter::Known(T1));
        r.finished(5, t0 + Duration::from_millis(900), 200, T2);
        assert_eq!(
            r.may_continue(t0 + SESSION_MAX_AGE, 200),
            None,
            "age counts from the start"
        );
        r.forget();
        assert_eq!(r.may_continue(t0, 200), None);
        assert_eq!(r.tag_after(5, WriteOutcome::KeptLast), TagAfter::ReadIt);
    }
}
