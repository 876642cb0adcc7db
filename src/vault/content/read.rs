//! Reading blocks: backing bytes through the codec into plaintext, and one attempt of a read
//! with the check of versions 2 and 3 that its blocks belong to one version of the file.

use std::sync::atomic::Ordering;

use crate::crypto::NONCE_LEN;
use crate::format::header::FileHeader;
use crate::format::offsets::{self, block_count, block_of, block_plain_len, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::vault::codec::{sealed_len, FinalRule};
use crate::vault::error::{Damage, IoContext, Result};

use super::storage::{read_full_at, ChangeStamp, Storage};
use super::{CryptFile, Sizes};

/// The newest write session among the blocks of one read, and where it was.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Newest {
    pub(super) session: u32,
    pub(super) block: u64,
}

pub(super) use crate::vault::damage::LastSession;

impl LastSession {
    /// Whether a block sealed in session `s` may be read beside this last block.
    pub(super) fn admits(self, s: u32) -> bool {
        match self {
            LastSession::Known(last) => s <= last,
            LastSession::Unknown => true,
        }
    }
}

/// What one attempt of a read found.
pub(super) enum Attempt {
    /// Read `n` bytes, all from one version.
    Done(usize),
    /// Versions 2 and 3: a block is newer than the last block known before the read: the file is
    /// being rewritten (or was left so).
    Ahead {
        /// The newest block read.
        newest: Newest,
        /// The last block's session, read again afterwards.
        last_now: LastSession,
    },
}

/// Sealed-block buffers kept per thread up to this capacity (a FUSE read is at most 1 MiB).
const SEALED_KEEP: usize = 2 << 20;

thread_local! {
    /// Each thread's buffer for the sealed bytes of a read (no allocation and zeroing per read).
    static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Plaintext end of blocks up to `last` in a file with `sizes`.
pub(super) fn span_end(last: BlockNo, sizes: &Sizes) -> u64 {
    (last.0 + 1).saturating_mul(PLAIN_BLOCK).min(sizes.plain)
}

/// The last block of a file with `sizes` (block 0 for an empty one).
fn file_last(sizes: &Sizes) -> BlockNo {
    BlockNo(block_count(sizes.plain).saturating_sub(1))
}

impl<S: Storage> CryptFile<S> {
    /// One try of [`read_at`](Self::read_at), on a backing file with `sizes` that statted as
    /// `stamp`. `kept`: the header kept for that stamp, if any (else it is read and kept).
    /// `learnt`: the last block's session, read just before this attempt.
    pub(super) fn read_attempt(
        &self,
        buf: &mut [u8],
        off: u64,
        sizes: Sizes,
        stamp: ChangeStamp,
        kept: Option<FileHeader>,
        learnt: Option<LastSession>,
    ) -> Result<Attempt> {
        if buf.is_empty() {
            return Ok(Attempt::Done(0));
        }
        if sizes.torn && off.saturating_add(buf.len() as u64) >= sizes.plain {
            return Err(self.corrupt(Some(block_count(sizes.plain)), Damage::TornTail));
        }
        if off >= sizes.plain {
            return Ok(Attempt::Done(0));
        }
        let end = (off + buf.len() as u64).min(sizes.plain);
        let h = match kept {
            Some(h) => h,
            None => {
                let h = self.require_header()?;
                self.header_memo.keep(stamp, h);
                h
            }
        };
        let first = block_of(off);
        let last = block_of(end - 1);
        // Versions 2 and 3: the last block's session is learnt *before* the blocks are read (a read of
        // the last block alone needs none). When the last block does not authenticate, the
        // other blocks are served unchecked (a crash tears at worst the block being written).
        let check = if h.has_sessions() && first != block_of(sizes.plain - 1) {
            Some(match (learnt, self.known_last.load(Ordering::Relaxed)) {
                (Some(l), _) => l,
                (None, 0) => self.learn_last(&h, &sizes)?,
                (None, known) => LastSession::Known(known),
            })
        } else {
            None
        };
        let skip = (off - first.plain_off()) as usize;
        let n = (end - off) as usize;
        let newest = if skip == 0 && span_end(last, &sizes) == end {
            // Whole blocks (the kernel's page-aligned reads): open them straight into `buf`.
            self.read_blocks_into(&h, first, last, &sizes, &mut buf[..n])?
        } else {
            let mut plain = vec![0u8; (span_end(last, &sizes) - first.plain_off()) as usize];
            let newest = self.read_blocks_into(&h, first, last, &sizes, &mut plain)?;
            buf[..n].copy_from_slice(&plain[skip..skip + n]);
            newest
        };
        match check {
            Some(LastSession::Unknown) => self.served_unchecked(),
            Some(last) if !last.admits(newest.session) => {
                return Ok(Attempt::Ahead {
                    newest,
                    last_now: self.learn_last(&h, &self.sizes()?)?,
                })
            }
            _ => {}
        }
        Ok(Attempt::Done(n))
    }

    /// The current plaintext of block `b` (zeros past the old end), padded or cut to `len` bytes.
    pub(super) fn block_plain(&self, h: &FileHeader, b: BlockNo, sizes: &Sizes, len: usize) -> Result<Vec<u8>> {
        let mut p = if b.0 < block_count(sizes.plain) {
            self.read_blocks(h, b, b, sizes)?
        } else {
            Vec::new()
        };
        p.resize(len, 0);
        Ok(p)
    }

    /// Reads and opens blocks `first..=last` of a file with `sizes`, returning their plaintext.
    pub(super) fn read_blocks(&self, h: &FileHeader, first: BlockNo, last: BlockNo, sizes: &Sizes) -> Result<Vec<u8>> {
        let mut plain = vec![0u8; (span_end(last, sizes) - first.plain_off()) as usize];
        self.read_blocks_into(h, first, last, sizes, &mut plain)?;
        Ok(plain)
    }

    /// Like [`read_blocks`](Self::read_blocks), into `plain`, which is exactly as long as the
    /// plaintext of those blocks; returns the newest write session among them (versions 2 and 3). The
    /// sealed bytes go through a per-thread buffer.
    pub(super) fn read_blocks_into(
        &self,
        h: &FileHeader,
        first: BlockNo,
        last: BlockNo,
        sizes: &Sizes,
        plain: &mut [u8],
    ) -> Result<Newest> {
        SEALED.with(|cell| match cell.try_borrow_mut() {
            Ok(mut buf) => {
                let r = self.read_blocks_with(h, first, last, sizes, plain, &mut buf);
                if buf.capacity() > SEALED_KEEP {
                    *buf = Vec::new();
                }
                r
            }
            Err(_) => self.read_blocks_with(h, first, last, sizes, plain, &mut Vec::new()),
        })
    }

    fn read_blocks_with(
        &self,
        h: &FileHeader,
        first: BlockNo,
        last: BlockNo,
        sizes: &Sizes,
        plain: &mut [u8],
        sealed: &mut Vec<u8>,
    ) -> Result<Newest> {
        let start = first.cipher_off();
        let plain_end = span_end(last, sizes);
        debug_assert_eq!(plain.len() as u64, plain_end - first.plain_off());
        let cipher_end = offsets::cipher_size(plain_end);
        let want = (cipher_end - start) as usize;
        // Stale bytes from an earlier read are overwritten below or make the read fail.
        sealed.resize(want, 0);
        let sealed = &mut sealed[..want];
        let n = read_full_at(&self.storage, sealed, start).at(&self.rel)?;
        if n < sealed.len() {
            return Err(self.corrupt(
                Some(block_of(first.plain_off() + (n as u64 / CIPHER_BLOCK) * PLAIN_BLOCK).0),
                Damage::Shrank,
            ));
        }
        let sealed = &*sealed;
        let codec = self.codec(h)?;
        let file_last = file_last(sizes);
        let opened = codec.open_batch(first, file_last, sealed, plain);
        let mut c_pos = 0usize;
        let mut p_pos = 0usize;
        let mut newest = Newest::default();
        for b in first.0..=last.0 {
            let b = BlockNo(b);
            let len = block_plain_len(b, sizes.plain) as usize;
            let clen = sealed_len(len);
            if h.has_sessions() {
                // A hole's nonce is all zeros: session 0.
                if let Some(nonce) = sealed.get(c_pos..).and_then(|r| r.first_chunk::<NONCE_LEN>()) {
                    let s = codec.session_of(nonce);
                    if s > newest.session {
                        newest = Newest { session: s, block: b.0 };
                    }
                }
            }
            if !opened.get((b.0 - first.0) as usize).copied().unwrap_or(false) {
                codec
                    .open_block(
                        b,
                        FinalRule::of(b, file_last),
                        &sealed[c_pos..c_pos + clen],
                        &mut plain[p_pos..p_pos + len],
                    )
                    .map_err(|fault| self.corrupt(Some(b.0), Damage::Block(fault)))?;
            }
            c_pos += clen;
            p_pos += len;
        }
        Ok(newest)
    }
}
