//! fsck: authenticating every block of a file, and `--repair` of the cases that are safe to
//! repair (a torn tail, a last block not sealed as final, blocks ahead of the last block).

use crate::format::header::FileHeader;
use crate::format::offsets::{self, block_count, block_of, block_plain_len, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::format::session;
use crate::vault::codec::sealed_len;
use crate::vault::error::{IoContext, Result};

use super::storage::{read_full_at, Storage};
use super::{CryptFile, Sizes};

/// What fsck found in the blocks of one file.
#[derive(Debug, Default)]
pub struct BlockCheck {
    /// Blocks that do not authenticate (a torn tail counts as the block after the last).
    pub bad: Vec<u64>,
    /// Versions 2 and 3: blocks that authenticate but carry a write session above the last block's:
    /// two versions mixed.
    pub ahead: Vec<u64>,
    /// Versions 2 and 3: the last block (its number) does not authenticate while some block before it
    /// does, so nothing tells whether the other blocks belong to one version; reads serve them
    /// unchecked.
    pub order_unchecked: Option<u64>,
    /// Versions 2 and 3: the last block carries
    /// [`LAST_SESSION`](crate::format::session::LAST_SESSION): no session is left above it, so
    /// later versions of the file cannot be told apart (a copy of the file starts again).
    pub sessions_exhausted: bool,
}

impl<S: Storage> CryptFile<S> {
    /// fsck --repair of the safe cases: a torn partial tail left by a crash is cut off, and a
    /// last block that authenticates but is not sealed as final (a crash between extending and
    /// resealing) is resealed as final. Returns what was done, if anything.
    pub fn repair_tail(&self) -> Result<Option<String>> {
        let sizes = self.sizes()?;
        if sizes.torn {
            if self.cut_torn_tail().is_ok() {
                return Ok(Some(
                    "cut a torn partial block at the end (left by a crash while appending)".into(),
                ));
            }
            // The block before the torn tail is not final: cut, then reseal below.
            let keep = if sizes.plain == 0 {
                0
            } else {
                offsets::cipher_size(sizes.plain)
            };
            self.storage.set_len(keep).at(&self.rel)?;
            let cut = "cut a torn partial block at the end";
            return Ok(Some(match self.repair_tail()? {
                Some(then) => format!("{cut}; {then}"),
                None => cut.into(),
            }));
        }
        if sizes.plain == 0 {
            return Ok(None);
        }
        let h = self.require_header()?;
        let last = block_of(sizes.plain - 1);
        if self.read_blocks(&h, last, last, &sizes).is_ok() {
            return Ok(None);
        }
        // It does not open as final: as a middle block (any flag), or not at all.
        let Some(opened) = self.last_block(&h, &sizes)? else {
            return self.seal_hole_as_last(&h, last, &sizes);
        };
        let mut sealed = Vec::with_capacity(CIPHER_BLOCK as usize);
        let s = self.newest_session(&h, &sizes)?;
        self.seal_fresh(&h, last, true, s, &opened.plain, &mut sealed)?;
        self.storage.write_all_at(&sealed, last.cipher_off()).at(&self.rel)?;
        Ok(Some(
            "resealed the last block as final: it was sealed as a middle block, left by a crash while \
             the file grew — or by someone truncating the file at a block boundary; check its end"
                .into(),
        ))
    }

    /// fsck --repair: a last block that is a hole (all-zero backing bytes) is left when a crash
    /// tore the first block of a write that began past the old end, with blocks skipped in
    /// between (FORMAT.md G30). The skipped range reads as zeros, so the hole becomes a zero
    /// block sealed as final; anything else at the end is left to the report.
    /// Versions 2 and 3: the order of the blocks before it could not be checked, and the new last
    /// block gets the newest session, so the message says so.
    fn seal_hole_as_last(&self, h: &FileHeader, last: BlockNo, sizes: &Sizes) -> Result<Option<String>> {
        let len = block_plain_len(last, sizes.plain) as usize;
        let mut raw = vec![0u8; sealed_len(len)];
        let n = read_full_at(&self.storage, &mut raw, last.cipher_off()).at(&self.rel)?;
        if n < raw.len() || raw.iter().any(|&b| b != 0) {
            return Ok(None);
        }
        let mut sealed = Vec::with_capacity(raw.len());
        let s = self.newest_session(h, sizes)?;
        self.seal_fresh(h, last, true, s, &vec![0u8; len], &mut sealed)?;
        self.storage.write_all_at(&sealed, last.cipher_off()).at(&self.rel)?;
        let sealed = "sealed the last block, a never-written gap left by a crash while the file grew, as zeros";
        Ok(Some(if h.has_sessions() && last.0 > 0 {
            format!(
                "{sealed}, with the newest write session; the order of the blocks before it was not checkable \
                 and is not checked now (had someone zeroed the block, the file may mix two versions): check its \
                 content"
            )
        } else {
            sealed.to_string()
        }))
    }

    /// Authenticates every block; returns the numbers of the damaged ones and of those newer
    /// than the last block, together and sorted (see [`verify_blocks`](Self::verify_blocks)).
    pub fn verify_all(&self) -> Result<Vec<u64>> {
        let check = self.verify_blocks()?;
        let mut all = check.bad;
        all.extend(check.ahead);
        all.sort_unstable();
        Ok(all)
    }

    /// Authenticates every block (for fsck). Versions 2 and 3 also check every block against the
    /// last block's write session, or says that it cannot, and whether that session is the
    /// last there is.
    pub fn verify_blocks(&self) -> Result<BlockCheck> {
        let sizes = self.sizes()?;
        let mut check = BlockCheck::default();
        if sizes.plain == 0 {
            if !sizes.empty {
                self.require_header()?;
            }
            return Ok(check);
        }
        let h = self.require_header()?;
        let mut sessions = Vec::new();
        let mut plain = vec![0u8; PLAIN_BLOCK as usize];
        for b in 0..block_count(sizes.plain) {
            let len = block_plain_len(BlockNo(b), sizes.plain) as usize;
            match self.read_blocks_into(&h, BlockNo(b), BlockNo(b), &sizes, &mut plain[..len]) {
                Ok(newest) => sessions.push((b, newest.session)),
                Err(_) => check.bad.push(b),
            }
        }
        if sizes.torn {
            check.bad.push(block_count(sizes.plain));
        }
        if !h.has_sessions() {
            return Ok(check);
        }
        match self.last_block(&h, &sizes)? {
            Some(last) => {
                check.ahead = sessions
                    .into_iter()
                    .filter(|&(_, s)| s > last.session)
                    .map(|(b, _)| b)
                    .collect();
                check.sessions_exhausted = session::exhausted(last.session);
            }
            // Only when a block before it authenticates: otherwise there is nothing to order.
            None if sessions.iter().any(|&(b, _)| b + 1 < block_count(sizes.plain)) => {
                check.order_unchecked = self.order_unchecked_in(&h, &sizes)?;
            }
            None => {}
        }
        Ok(check)
    }

    /// fsck --repair, versions 2 and 3: when blocks are newer than the last block, reseals the last
    /// block with the newest session among them, so the file reads again. They are left by a
    /// power loss that kept a write but not its session's resealed last block, or by an
    /// in-place rewrite that stopped half way (then the file mixes two versions; nothing can
    /// tell the two apart, as with G2).
    /// Call it only when [`verify_blocks`](Self::verify_blocks) found such blocks: it reads
    /// the whole file.
    pub fn repair_ahead(&self) -> Result<Option<String>> {
        let sizes = self.sizes()?;
        let Some(h) = self.header()?.filter(FileHeader::has_sessions) else {
            return Ok(None);
        };
        let Some(last) = self.last_block(&h, &sizes)? else {
            return Ok(None);
        };
        let newest = self.newest_session(&h, &sizes)?;
        if newest <= last.session {
            return Ok(None);
        }
        let mut sealed = Vec::with_capacity(CIPHER_BLOCK as usize);
        self.seal_fresh(&h, last.block, last.is_final, newest, &last.plain, &mut sealed)?;
        self.storage
            .write_all_at(&sealed, last.block.cipher_off())
            .at(&self.rel)?;
        Ok(Some(format!(
            "resealed the last block with write session {newest} (it had {}): blocks were newer than it, \
             left by a power loss during a write, or by an in-place rewrite that stopped half way — then \
             the file mixes two versions; check its content",
            last.session
        )))
    }
}
