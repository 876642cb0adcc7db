//! Holes and reservations: `SEEK_DATA` / `SEEK_HOLE` at block granularity mapped through the
//! backing file's own answer, and `fallocate` of a plaintext range.

use crate::format::offsets::{self, block_of, BlockNo, CIPHER_BLOCK};
use crate::vault::error::{IoContext, Result};

use super::storage::{read_full_at, Storage};
use super::CryptFile;

impl<S: Storage> CryptFile<S> {
    /// `SEEK_DATA` (`data = true`) or `SEEK_HOLE` from plaintext offset `off`, at block
    /// granularity, mapped through the backing file's own answer. None = ENXIO.
    pub fn seek_data_hole(&self, off: u64, data: bool) -> Result<Option<u64>> {
        let sizes = self.sizes()?;
        if off >= sizes.plain {
            return Ok(None);
        }
        let last = block_of(sizes.plain - 1);
        let first = block_of(off);
        let found = if data {
            Some(self.next_data_block(first, last)?)
        } else {
            self.next_hole_block(first, last)?
        };
        Ok(Some(found.map_or(sizes.plain, |b| b.plain_off().max(off))))
    }

    /// Reserves the backing space of plaintext `[off, off + len)` (whole blocks; up to the
    /// backing end a file of `off + len` bytes would have when that is past the current end),
    /// without changing the backing size: ENOSPC here leaves the file as it was.
    pub fn reserve(&self, off: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let end = off.saturating_add(len);
        let plain = self.plain_len()?;
        let first = block_of(off);
        let cipher_start = if first.0 == 0 { 0 } else { first.cipher_off() };
        let cipher_end = if end >= plain {
            offsets::cipher_size(end)
        } else {
            block_of(end - 1).cipher_off() + CIPHER_BLOCK
        };
        self.storage
            .reserve(cipher_start, cipher_end - cipher_start)
            .at(&self.rel)
    }

    /// Backing `lseek(whence)` from `cipher_off` (None: nothing found before the end).
    fn backing_seek(&self, cipher_off: u64, whence: libc::c_int) -> Result<Option<u64>> {
        self.storage.seek(cipher_off, whence).at(&self.rel)
    }

    /// Whether block `b` (not the last) is a hole: its backing bytes are all zero.
    fn is_hole_block(&self, b: BlockNo) -> Result<bool> {
        let mut buf = vec![0u8; CIPHER_BLOCK as usize];
        let n = read_full_at(&self.storage, &mut buf, b.cipher_off()).at(&self.rel)?;
        Ok(buf[..n].iter().all(|&x| x == 0))
    }

    /// The first block at or after `b` holding data; the last block always does. A written
    /// block fills its whole backing range, so a block whose range starts in a backing hole
    /// is a hole; one whose start is allocated (a file-system block it shares with a written
    /// neighbour, or a non-sparse copy) is read to tell.
    fn next_data_block(&self, mut b: BlockNo, last: BlockNo) -> Result<BlockNo> {
        while b < last {
            let Some(r) = self.backing_seek(b.cipher_off(), libc::SEEK_DATA)? else {
                return Ok(last);
            };
            let cand = offsets::block_at_cipher_off(r).max(b);
            if cand >= last {
                return Ok(last);
            }
            if r <= cand.cipher_off() && !self.is_hole_block(cand)? {
                return Ok(cand);
            }
            b = BlockNo(cand.0 + 1);
        }
        Ok(last)
    }

    /// The first hole block at or after `b` (None: data up to the end). A block whose backing
    /// range reaches into a backing hole is a hole. Of the fully allocated blocks before it,
    /// only `b` itself is read (a hole whose bytes all sit in file-system blocks shared with
    /// written neighbours is seen only there: reading every block would cost a full read).
    fn next_hole_block(&self, b: BlockNo, last: BlockNo) -> Result<Option<BlockNo>> {
        if b >= last {
            return Ok(None);
        }
        let Some(r) = self.backing_seek(b.cipher_off(), libc::SEEK_HOLE)? else {
            return Ok(None);
        };
        let cand = offsets::block_at_cipher_off(r).max(b);
        if cand > b && self.is_hole_block(b)? {
            return Ok(Some(b));
        }
        Ok((cand < last).then_some(cand))
    }
}
