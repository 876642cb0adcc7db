//! Write sessions (header versions 2 and 3), the acting half: what [`SessionRules`] decides, done on
//! the backing file (the last block resealed to start a session, its tag read to check one can
//! continue), and what readers learn from the last block.

use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::crypto::TAG_LEN;
use crate::format::header::FileHeader;
use crate::format::offsets::{self, block_count, block_of, block_plain_len, BlockNo};
use crate::format::session;
use crate::vault::codec::{sealed_len, tail_tag};
use crate::vault::error::{Damage, IoContext, Result};

use super::notices::Notice;
use super::read::LastSession;
use super::retry::READ_WAIT_MAX;
use super::session_rules::{SessionRules, Start, Tag, TagAfter, WriteOutcome};
use super::storage::{read_full_at, Storage};
use super::{sizes_of, CryptFile, Sizes};

/// The last block of a file, opened.
pub(super) struct LastBlock {
    pub(super) block: BlockNo,
    pub(super) session: u32,
    pub(super) plain: Vec<u8>,
    pub(super) is_final: bool,
}

impl<S: Storage> CryptFile<S> {
    fn rules(&self) -> std::sync::MutexGuard<'_, SessionRules> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Before a write or truncate of a file with `sizes`: the session to seal its blocks with
    /// (0 for version 1). When a new session starts and the operation will not seal the last
    /// block itself (`seals_last` false), the last block is resealed with it first, so no
    /// block ever runs ahead of it.
    pub(super) fn begin_write(&self, h: &FileHeader, sizes: &Sizes, seals_last: bool) -> Result<u32> {
        if !h.has_sessions() {
            return Ok(0);
        }
        if sizes.plain == 0 {
            return Ok(session::FIRST_SESSION);
        }
        let mut rules = self.rules();
        if let Some(c) = rules.may_continue(Instant::now(), sizes.len) {
            if self.last_tag(sizes)? == Some(c.last_tag) {
                return Ok(c.session);
            }
        }
        rules.forget();
        let last = self
            .last_block(h, sizes)?
            .ok_or_else(|| self.corrupt(Some(block_count(sizes.plain) - 1), Damage::LastBlockAuth))?;
        let start = SessionRules::start(last.session, seals_last);
        if session::exhausted(start.session()) {
            self.notices.record(Notice::SessionsExhausted);
        }
        let resealed = match start {
            Start::Session(_) => None,
            Start::ResealLastWith(s) => {
                let mut sealed = Vec::with_capacity(sealed_len(last.plain.len()));
                self.seal_fresh(h, last.block, last.is_final, s, &last.plain, &mut sealed)?;
                self.storage
                    .write_all_at(&sealed, last.block.cipher_off())
                    .at(&self.rel)?;
                tail_tag(&sealed)
            }
        };
        rules.started(start.session(), Instant::now(), resealed);
        Ok(start.session())
    }

    /// After a write or truncate under session `s` that left `new_size` plaintext bytes:
    /// remembers what it left so the next write can continue the session.
    pub(super) fn end_write(&self, h: &FileHeader, s: u32, new_size: u64, outcome: WriteOutcome) -> Result<()> {
        if !h.has_sessions() {
            return Ok(());
        }
        let mut rules = self.rules();
        if outcome == WriteOutcome::Failed || new_size == 0 {
            rules.forget();
            return Ok(());
        }
        let len = offsets::cipher_size(new_size);
        let last_tag = match rules.tag_after(s, outcome) {
            TagAfter::Known(t) => t,
            TagAfter::ReadIt => match self.last_tag(&sizes_of(len))? {
                Some(t) => t,
                None => {
                    rules.forget();
                    return Ok(());
                }
            },
        };
        rules.finished(s, Instant::now(), len, last_tag);
        self.known_last.store(s, Ordering::Relaxed);
        Ok(())
    }

    /// After an fsync: the next write starts a new session.
    pub(super) fn end_session(&self) {
        self.rules().forget();
    }

    /// The tag of the last block: the last 16 bytes of a backing file that does not end torn.
    fn last_tag(&self, sizes: &Sizes) -> Result<Option<Tag>> {
        if sizes.plain == 0 || sizes.torn {
            return Ok(None);
        }
        let mut tag: Tag = Default::default();
        let n = read_full_at(&self.storage, &mut tag, sizes.len - TAG_LEN as u64).at(&self.rel)?;
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

    /// Versions 2 and 3: reads the last block's write session and remembers it; `Unknown` when the
    /// last block does not authenticate (torn or damaged: reads of it report that) or the file
    /// has no blocks, so that nothing is checked against it.
    pub(super) fn learn_last(&self, h: &FileHeader, sizes: &Sizes) -> Result<LastSession> {
        Ok(match self.last_block(h, sizes)? {
            Some(l) => {
                self.known_last.store(l.session, Ordering::Relaxed);
                LastSession::Known(l.session)
            }
            None => LastSession::Unknown,
        })
    }

    /// After a read served blocks unchecked because the last block does not authenticate: a
    /// file at rest is recorded as [`Notice::OrderNotCheckable`] (a last block torn while
    /// another program rewrites the file is not: it is whole again in a moment).
    pub(super) fn served_unchecked(&self) {
        if !self.modified_within(READ_WAIT_MAX) {
            self.notices.record(Notice::OrderNotCheckable);
        }
    }

    /// Versions 2 and 3, more than one block: the number of the last block when it does not
    /// authenticate, so that reads cannot check that the other blocks belong to one version of
    /// the file (FORMAT.md §5.8); `None` otherwise (and for version 1). Reads the last block
    /// only: whether any other block authenticates (else there is nothing to order) is the
    /// caller's to know.
    pub fn order_unchecked(&self) -> Result<Option<u64>> {
        let sizes = self.sizes()?;
        let Some(h) = self.header()?.filter(FileHeader::has_sessions) else {
            return Ok(None);
        };
        self.order_unchecked_in(&h, &sizes)
    }

    pub(super) fn order_unchecked_in(&self, h: &FileHeader, sizes: &Sizes) -> Result<Option<u64>> {
        let n = block_count(sizes.plain);
        if !h.has_sessions() || n < 2 || self.last_block(h, sizes)?.is_some() {
            return Ok(None);
        }
        Ok(Some(n - 1))
    }

    /// Tests: reseals the last block with session `s` (as `s` sessions would have left it).
    #[cfg(test)]
    pub(crate) fn reseal_last_with(&self, s: u32) -> Result<()> {
        let h = self.require_header()?;
        let last = self
            .last_block(&h, &self.sizes()?)?
            .expect("a last block that authenticates");
        let mut sealed = Vec::new();
        self.seal_fresh(&h, last.block, last.is_final, s, &last.plain, &mut sealed)?;
        self.storage
            .write_all_at(&sealed, last.block.cipher_off())
            .at(&self.rel)?;
        self.end_session();
        Ok(())
    }

    /// The last block (of the complete ones) with its write session and final flag, opened
    /// whatever its flag; `None` when there is none or it does not authenticate.
    pub(super) fn last_block(&self, h: &FileHeader, sizes: &Sizes) -> Result<Option<LastBlock>> {
        if sizes.plain == 0 {
            return Ok(None);
        }
        let b = block_of(sizes.plain - 1);
        let len = block_plain_len(b, sizes.plain) as usize;
        let mut sealed = vec![0u8; sealed_len(len)];
        let n = read_full_at(&self.storage, &mut sealed, b.cipher_off()).at(&self.rel)?;
        if n < sealed.len() {
            return Ok(None);
        }
        let codec = self.codec(h)?;
        Ok(codec.open_either_flag(b, &sealed).map(|o| LastBlock {
            block: b,
            session: codec.session_of(&o.nonce),
            plain: o.plain,
            is_final: o.is_final,
        }))
    }
}
