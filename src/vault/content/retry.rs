//! The public read: attempts of [`read_attempt`](CryptFile::read_attempt) repeated, for a short
//! while, when the backing file is being rewritten by another program.

use std::time::{Duration, Instant};

use crate::vault::error::{Damage, IoContext, Result, VaultError};

use super::read::Attempt;
use super::storage::{ChangeStamp, Storage};
use super::{sizes_of, CryptFile, Sizes};

/// How long a read waits for a backing file being rewritten in place before it fails with EIO:
/// for the last block to catch up (versions 2 and 3), or for a half-written block (any version).
pub(super) const READ_WAIT_MAX: Duration = Duration::from_secs(1);

/// How long a read that met a block which does not authenticate watches the backing file for
/// a writer at work before it reports the damage (only when the file was modified within
/// [`READ_WAIT_MAX`]). A writer on a busy machine can pause several milliseconds between two
/// writes (5 ms here let 3 of 855 reads fail while the machine was compiling), so a file at
/// rest that was damaged within the last second costs its reader up to this much.
const CHANGE_WATCH: Duration = Duration::from_millis(50);

/// The pause between reads of a file with sessions whose blocks run ahead of its last block.
const AHEAD_PAUSE: Duration = Duration::from_millis(5);

impl<S: Storage> CryptFile<S> {
    /// Reads up to `buf.len()` plaintext bytes at `off`; returns the count (0 at or past EOF).
    ///
    /// A backing file ending in a torn partial block (a truncation mid-block, or a write cut
    /// short by a crash) is an error for every read that reaches its end: it must never read
    /// as a silently shorter file. Reads that stop before the end still work.
    ///
    /// Versions 2 and 3: the blocks of one read are blocks of one version of the file. A block newer
    /// than the last block means the file is being rewritten in place (or a rewrite stopped
    /// half way): while the backing file was modified within [`READ_WAIT_MAX`] the read waits
    /// up to that long for the last block to catch up, then fails with EIO (FORMAT.md §5.8).
    ///
    /// Any version: a block that does not authenticate fails the read at once, unless the
    /// backing file was modified within [`READ_WAIT_MAX`] and changes again within
    /// [`CHANGE_WATCH`] (another program writing it right now): then it is read again, for up
    /// to [`READ_WAIT_MAX`].
    pub fn read_at(&self, buf: &mut [u8], off: u64) -> Result<usize> {
        let started = Instant::now();
        // The last block's session learnt after the previous attempt, to check the next one.
        let mut learnt = None;
        // Set once an attempt that used the kept header met a block that does not
        // authenticate: the rest of this read reads the header afresh each attempt.
        let mut fresh_header = false;
        loop {
            // One fstat gives both the sizes the attempt reads with and the change stamp a
            // failed attempt waits to see move on.
            let st = self.storage.stat().at(&self.rel)?;
            let before = Some(st.change);
            let sizes = Sizes {
                dev: st.dev,
                ..sizes_of(st.len)
            };
            let kept = if fresh_header {
                None
            } else {
                self.header_memo.get(st.change)
            };
            let err = match self.read_attempt(buf, off, sizes, st.change, kept, learnt.take()) {
                Ok(Attempt::Done(n)) => return Ok(n),
                // The last block moved on while this read ran: read again, checked against it
                // (a last block that does not authenticate checks nothing: one being written
                // right now has every block before it new already; in a file at rest the
                // unchecked read is recorded).
                Ok(Attempt::Ahead { newest, last_now })
                    if last_now.admits(newest.session) && started.elapsed() < READ_WAIT_MAX =>
                {
                    learnt = Some(last_now);
                    continue;
                }
                Ok(Attempt::Ahead { newest, last_now }) => {
                    let err = self.corrupt(
                        Some(newest.block),
                        Damage::MixedVersions {
                            session: newest.session,
                            last: last_now,
                        },
                    );
                    // Only an in-place rewrite (or a power loss) leaves this: wait for a writer
                    // that was at work within the wait.
                    if started.elapsed() >= READ_WAIT_MAX || !self.modified_within(READ_WAIT_MAX) {
                        return Err(err);
                    }
                    std::thread::sleep(AHEAD_PAUSE);
                    continue;
                }
                // The kept header may be an old version's (a rewrite within the clock's
                // granularity): read it again before the block counts as damaged.
                Err(VaultError::Corrupt { .. }) if kept.is_some() => {
                    self.header_memo.forget();
                    fresh_header = true;
                    continue;
                }
                // Not kept for the next read: it would read the damaged block twice.
                Err(e @ VaultError::Corrupt { .. }) => {
                    self.header_memo.forget();
                    e
                }
                Err(e) => return Err(e),
            };
            // A block that does not authenticate while another program writes the backing file
            // (a sync client rewriting it in place, a block half written): read again once it
            // has moved on. A file at rest fails at once.
            if started.elapsed() >= READ_WAIT_MAX
                || !self.modified_within(READ_WAIT_MAX)
                || !self.changes_within(before, CHANGE_WATCH)
            {
                return Err(err);
            }
        }
    }

    /// The backing file's change stamp (`None` if fstat fails).
    fn change_stamp(&self) -> Option<ChangeStamp> {
        self.storage.stat().ok().map(|st| st.change)
    }

    /// Whether the backing file changes from `before` within `watch` (polled with growing
    /// pauses).
    fn changes_within(&self, before: Option<ChangeStamp>, watch: Duration) -> bool {
        let Some(before) = before else { return false };
        let start = Instant::now();
        let mut pause = Duration::from_micros(500);
        loop {
            if self.change_stamp().is_some_and(|now| now != before) {
                return true;
            }
            if start.elapsed() >= watch {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(8));
        }
    }

    /// Whether the backing file was modified within `window` (a writer may still be at work).
    pub(super) fn modified_within(&self, window: Duration) -> bool {
        self.storage
            .stat()
            .ok()
            .and_then(|st| st.modified)
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < window)
    }
}
