//! Writing: `write_at` (read-modify-write of partly covered blocks, one sealing batch) and
//! `set_len` (truncate or extend).

use crate::crypto::{self, NONCE_LEN, TAG_LEN};
use crate::format::header::{FileHeader, HEADER_LEN};
use crate::format::offsets::{self, block_of, block_plain_len, BlockNo, CIPHER_BLOCK, MAX_PLAIN_SIZE, PLAIN_BLOCK};
use crate::vault::codec::{sealed_len, tail_tag, BlockCodec, PendingBlock};
use crate::vault::error::{IoContext, Result, VaultError};

use super::growth::Growth;
use super::session_rules::WriteOutcome;
use super::storage::Storage;
use super::{CryptFile, Sizes};

/// The session outcome of an operation that ended with `r`, having sealed the last block into
/// `sealed` (whose tail is then its tag) or not.
fn outcome(r: &Result<()>, sealed_last: Option<&[u8]>) -> WriteOutcome {
    match (r, sealed_last.and_then(tail_tag)) {
        (Err(_), _) => WriteOutcome::Failed,
        (Ok(()), Some(tag)) => WriteOutcome::SealedLast(tag),
        (Ok(()), None) => WriteOutcome::KeptLast,
    }
}

impl<S: Storage> CryptFile<S> {
    /// Writes `data` at plaintext offset `off`, growing the file (with holes) as needed.
    pub fn write_at(&self, data: &[u8], off: u64) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let end = off
            .checked_add(data.len() as u64)
            .filter(|&e| e <= MAX_PLAIN_SIZE)
            .ok_or_else(|| VaultError::errno_at(&self.rel, libc::EFBIG))?;
        let sizes = self.cut_torn_tail()?;
        let first = block_of(off);
        let (h, mut new_header) = self.header_or_new()?;
        if new_header && first.0 != 0 {
            self.storage.write_all_at(&h.encode(), 0).at(&self.rel)?;
            new_header = false;
        }
        let new_size = end.max(sizes.plain);
        let new_last = block_of(new_size - 1);
        let last = block_of(end - 1);
        self.check_replaced_last(&h, &sizes, off, end, new_size)?;
        let seals_last = sizes.plain == 0 || last >= block_of(sizes.plain - 1);
        let s = self.begin_write(&h, &sizes, seals_last)?;

        let mut sealed = Vec::with_capacity(((last.0 - first.0 + 1) * CIPHER_BLOCK) as usize);
        let mut scratch = Vec::with_capacity(PLAIN_BLOCK as usize);
        let codec = self.codec(&h)?;
        let nonces = fresh_nonces(&codec, s, (last.0 - first.0 + 1) as usize)?;
        let mut pending = Vec::with_capacity((last.0 - first.0 + 1) as usize);
        for (b, nonce) in (first.0..=last.0).zip(nonces.chunks_exact(NONCE_LEN)) {
            let b = BlockNo(b);
            let len = block_plain_len(b, new_size) as usize;
            let b_start = b.plain_off();
            let lo = off.max(b_start);
            let hi = end.min(b_start + len as u64);
            let covered = lo == b_start && hi == b_start + len as u64;
            let src = &data[(lo - off) as usize..(hi - off) as usize];
            let plain = if covered {
                src
            } else {
                scratch = self.block_plain(&h, b, &sizes, len)?;
                scratch[(lo - b_start) as usize..(hi - b_start) as usize].copy_from_slice(src);
                &scratch
            };
            // nonce | plain | tag space, sealed below in one batch.
            sealed.extend_from_slice(nonce);
            sealed.extend_from_slice(plain);
            sealed.extend_from_slice(&[0; TAG_LEN]);
            pending.push(PendingBlock {
                aad: codec.aad(b, b == new_last),
                plain_len: len,
            });
        }
        drop(scratch);
        codec
            .seal_batch(&mut sealed, &pending)
            .map_err(|_| VaultError::errno_at(&self.rel, libc::EIO))?;
        // Reseal the old last block (padded, final = 0) before the new blocks go past it: a crash
        // in between leaves a file whose last block opens only as non-final — reported by reads
        // and fsck, and recovered by `fsck --repair` — rather than a short old block in the
        // middle that nothing can read.
        let growth = Growth {
            sizes: &sizes,
            new_size,
            first_written: first,
            written_len: sealed.len() as u64,
        };
        let undo = self.begin_growth(&growth)?;
        let r = self.reseal_old_last(&h, &growth, s).and_then(|()| {
            if new_header {
                // A new file's header and its first blocks in one write (block 0 follows
                // the header).
                let mut all = Vec::with_capacity(HEADER_LEN + sealed.len());
                all.extend_from_slice(&h.encode());
                all.extend_from_slice(&sealed);
                self.storage.write_all_at(&all, 0).at(&self.rel)
            } else {
                self.storage.write_all_at(&sealed, first.cipher_off()).at(&self.rel)
            }
        });
        let r = self.finish_growth(r, undo);
        // The last block's tag, when this write sealed it (it ends the buffer).
        self.end_write(&h, s, new_size, outcome(&r, (last == new_last).then_some(&sealed[..])))?;
        r
    }

    /// A write that replaces the whole old last block would seal over it without reading it:
    /// authenticate it first (as the last block: final flag set), so that a file cut at a block
    /// boundary is reported rather than silently made valid (FORMAT.md G26).
    fn check_replaced_last(&self, h: &FileHeader, sizes: &Sizes, off: u64, end: u64, new_size: u64) -> Result<()> {
        if sizes.plain == 0 {
            return Ok(());
        }
        let old_last = block_of(sizes.plain - 1);
        let start = old_last.plain_off();
        if off <= start && end >= start + block_plain_len(old_last, new_size) {
            self.read_blocks(h, old_last, old_last, sizes)?;
        }
        Ok(())
    }

    /// Truncates or extends to `new_size` plaintext bytes. Growth leaves holes and seals at most
    /// two blocks; truncation to 0 drops the header (a new file ID comes with the next write).
    pub fn set_len(&self, new_size: u64) -> Result<()> {
        if new_size > MAX_PLAIN_SIZE {
            return Err(VaultError::errno_at(&self.rel, libc::EFBIG));
        }
        let sizes = self.cut_torn_tail()?;
        if new_size == sizes.plain {
            return Ok(());
        }
        if new_size == 0 {
            return self.storage.set_len(0).at(&self.rel);
        }
        let h = self.ensure_header()?;
        let new_last = block_of(new_size - 1);
        let len = block_plain_len(new_last, new_size) as usize;
        // Either way the new last block is sealed by this call.
        let s = self.begin_write(&h, &sizes, true)?;
        if new_size < sizes.plain {
            let old_last = block_of(sizes.plain - 1);
            if new_last < old_last {
                // The old last block is dropped unread otherwise: a cut at a block boundary
                // (its final flag unset) would go unreported (FORMAT.md G26).
                self.read_blocks(&h, old_last, old_last, &sizes)?;
            }
            let plain = self.block_plain(&h, new_last, &sizes, len)?;
            let mut sealed = Vec::with_capacity(sealed_len(len));
            self.seal_fresh(&h, new_last, true, s, &plain, &mut sealed)?;
            let r = self
                .storage
                .set_len(offsets::cipher_size(new_size))
                .and_then(|()| self.storage.write_all_at(&sealed, new_last.cipher_off()))
                .at(&self.rel);
            self.end_write(&h, s, new_size, outcome(&r, Some(&sealed)))?;
            return r;
        }
        // Growth: the new last block holds old bytes (if it was the old last block) or zeros.
        let plain = self.block_plain(&h, new_last, &sizes, len)?;
        let mut sealed = Vec::with_capacity(sealed_len(len));
        self.seal_fresh(&h, new_last, true, s, &plain, &mut sealed)?;
        let growth = Growth {
            sizes: &sizes,
            new_size,
            first_written: new_last,
            written_len: sealed.len() as u64,
        };
        let undo = self.begin_growth(&growth)?;
        let r = self
            .reseal_old_last(&h, &growth, s)
            .and_then(|()| self.storage.write_all_at(&sealed, new_last.cipher_off()).at(&self.rel));
        let r = self.finish_growth(r, undo);
        self.end_write(&h, s, new_size, outcome(&r, Some(&sealed)))?;
        r
    }
}

/// `count` fresh nonces, one after the other, carrying `session` (versions 2 and 3).
fn fresh_nonces(codec: &BlockCodec<'_>, session: u32, count: usize) -> Result<Vec<u8>> {
    let mut nonces = vec![0u8; count * NONCE_LEN];
    crypto::random_bytes(&mut nonces)?;
    for nonce in nonces.chunks_exact_mut(NONCE_LEN) {
        if let Some(nonce) = nonce.first_chunk_mut::<NONCE_LEN>() {
            *nonce = codec.nonce_with_session(*nonce, session);
        }
    }
    Ok(nonces)
}
