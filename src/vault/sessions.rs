//! Write sessions of version-2 files (FORMAT.md §5.8): which session a write seals its blocks
//! with, giving the last block that session first, and what readers learn from the last block.
//!
//! Invariant kept by every write: no block carries a session above the last block's. A handle
//! starts a new session (the last block's + 1, the last block resealed with it first) on its
//! first write, after an fsync, after [`SESSION_MAX_AGE`], and whenever the file is not as its
//! previous write left it (another handle or another program wrote); otherwise it continues.

use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::crypto::{NONCE_LEN, TAG_LEN};
use crate::format::header::FileHeader;
use crate::format::offsets::{self, block_count, block_of, block_plain_len, BlockNo};
use crate::format::session;

use super::content::{read_full_at, sizes_of, CryptFile, Sizes};
use super::error::{IoContext, Result};

/// How long one handle keeps writing under one session number: two states of a file that a
/// sync client picks up more than this far apart are always told apart.
pub const SESSION_MAX_AGE: Duration = Duration::from_secs(1);

/// A write session a handle opened on a version-2 file, and the state its last write left.
#[derive(Debug, Clone, Copy)]
pub(super) struct WriterSession {
    session: u32,
    started: Instant,
    /// Backing length after the handle's last write (0 before its first one ends).
    len: u64,
    /// The last block's tag after the handle's last write: the backing file's last 16 bytes.
    last_tag: [u8; TAG_LEN],
    /// The tag `begin_write` gave the last block when it started this session by resealing it
    /// (until the first write of the session ends).
    resealed: Option<[u8; TAG_LEN]>,
}

/// The last block of a file, opened.
pub(super) struct LastBlock {
    pub(super) block: BlockNo,
    pub(super) session: u32,
    pub(super) plain: Vec<u8>,
    pub(super) is_final: bool,
}

impl CryptFile {
    /// Before a write or truncate of a file with `sizes`: the session to seal its blocks with
    /// (0 for version 1). When a new session starts and the operation will not seal the last
    /// block itself (`reseals_last` false), the last block is resealed with it first, so no
    /// block ever runs ahead of it.
    pub(super) fn begin_write(&self, h: &FileHeader, sizes: &Sizes, reseals_last: bool) -> Result<u32> {
        if !h.has_sessions() {
            return Ok(0);
        }
        if sizes.plain == 0 {
            return Ok(session::FIRST_SESSION);
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ws) = *w {
            if ws.started.elapsed() < SESSION_MAX_AGE
                && ws.len == sizes.len
                && self.last_tag(sizes)? == Some(ws.last_tag)
            {
                return Ok(ws.session);
            }
        }
        *w = None;
        let last = self.last_block(h, sizes)?.ok_or_else(|| {
            self.corrupt(
                Some(block_count(sizes.plain) - 1),
                "last block does not authenticate: no write can start a new version (run coffer fsck)",
            )
        })?;
        let s = session::next(last.session);
        let mut resealed = None;
        if !reseals_last {
            let mut sealed = Vec::with_capacity(last.plain.len() + NONCE_LEN + TAG_LEN);
            self.seal_block(h, last.block, last.is_final, s, &last.plain, &mut sealed)?;
            self.file.write_all_at(&sealed, last.block.cipher_off()).at(&self.rel)?;
            resealed = sealed.last_chunk::<TAG_LEN>().copied();
        }
        *w = Some(WriterSession {
            session: s,
            started: Instant::now(),
            len: 0,
            last_tag: [0; TAG_LEN],
            resealed,
        });
        Ok(s)
    }

    /// After a write or truncate under session `s` that left `new_size` plaintext bytes:
    /// remembers what it left so the next write can continue the session. `done` is `None`
    /// when it failed (the next write starts a new session), else the last block's tag if the
    /// operation sealed the last block (else it is the one `begin_write` left, or unchanged).
    pub(super) fn end_write(
        &self,
        h: &FileHeader,
        s: u32,
        new_size: u64,
        done: Option<Option<[u8; TAG_LEN]>>,
    ) -> Result<()> {
        if !h.has_sessions() {
            return Ok(());
        }
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let (Some(sealed_tag), true) = (done, new_size > 0) else {
            *w = None;
            return Ok(());
        };
        let len = offsets::cipher_size(new_size);
        let last_tag = match (sealed_tag, *w) {
            (Some(t), _) => t,
            // This session's first write: the tag begin_write resealed the last block with.
            (
                None,
                Some(WriterSession {
                    session,
                    resealed: Some(t),
                    ..
                }),
            ) if session == s => t,
            // A later write that left the last block alone.
            (None, Some(ws)) if ws.session == s && ws.len != 0 => ws.last_tag,
            // Not known without reading it.
            _ => match self.last_tag(&sizes_of(len))? {
                Some(t) => t,
                None => {
                    *w = None;
                    return Ok(());
                }
            },
        };
        let started = match *w {
            Some(ws) if ws.session == s => ws.started,
            _ => Instant::now(),
        };
        *w = Some(WriterSession {
            session: s,
            started,
            len,
            last_tag,
            resealed: None,
        });
        self.known_last.store(s, Ordering::Relaxed);
        Ok(())
    }

    /// The tag of the last block: the last 16 bytes of a backing file that does not end torn.
    fn last_tag(&self, sizes: &Sizes) -> Result<Option<[u8; TAG_LEN]>> {
        if sizes.plain == 0 || sizes.torn {
            return Ok(None);
        }
        let mut tag = [0u8; TAG_LEN];
        let n = read_full_at(&self.file, &mut tag, sizes.len - TAG_LEN as u64).at(&self.rel)?;
        Ok((n == TAG_LEN).then_some(tag))
    }

    /// The newest session among the blocks that authenticate (at least the first session; 0
    /// for version 1): what a block resealed as the last one by fsck --repair gets.
    pub(super) fn newest_session(&self, h: &FileHeader, sizes: &Sizes) -> Result<u32> {
        if !h.has_sessions() {
            return Ok(0);
        }
        let mut newest = session::FIRST_SESSION;
        let mut plain = vec![0u8; offsets::PLAIN_BLOCK as usize];
        for b in 0..block_count(sizes.plain) {
            let b = BlockNo(b);
            let len = block_plain_len(b, sizes.plain) as usize;
            if let Ok(n) = self.read_blocks_into(h, b, b, sizes, &mut plain[..len]) {
                newest = newest.max(n.session);
            }
        }
        Ok(newest)
    }

    /// Version 2: reads the last block's write session and remembers it; `u32::MAX` when the
    /// last block does not authenticate (torn or damaged: reads of it report that) or the file
    /// has no blocks, so that nothing is checked against it.
    pub(super) fn learn_last_session(&self, h: &FileHeader, sizes: &Sizes) -> Result<u32> {
        Ok(match self.last_block(h, sizes)? {
            Some(l) => {
                self.known_last.store(l.session, Ordering::Relaxed);
                l.session
            }
            None => u32::MAX,
        })
    }

    /// The last block (of the complete ones) with its write session and final flag, opened
    /// whatever its flag; `None` when there is none or it does not authenticate.
    pub(super) fn last_block(&self, h: &FileHeader, sizes: &Sizes) -> Result<Option<LastBlock>> {
        if sizes.plain == 0 {
            return Ok(None);
        }
        let b = block_of(sizes.plain - 1);
        let len = block_plain_len(b, sizes.plain) as usize;
        let mut sealed = vec![0u8; len + NONCE_LEN + TAG_LEN];
        let n = read_full_at(&self.file, &mut sealed, b.cipher_off()).at(&self.rel)?;
        if n < sealed.len() {
            return Ok(None);
        }
        let Some((nonce, rest)) = sealed.split_first_chunk::<NONCE_LEN>() else {
            return Ok(None);
        };
        let Some((ct, tag)) = rest.split_last_chunk::<TAG_LEN>() else {
            return Ok(None);
        };
        let mut plain = ct.to_vec();
        for is_final in [true, false] {
            plain.copy_from_slice(ct);
            let aad = h.block_aad(b, is_final);
            if self.keys.content.open(nonce, &aad, &mut plain, tag).is_ok() {
                return Ok(Some(LastBlock {
                    block: b,
                    session: session::session_of(nonce),
                    plain,
                    is_final,
                }));
            }
        }
        Ok(None)
    }
}
