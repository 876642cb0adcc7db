//! Growing a file safely: the backing ranges a growing write needs are reserved first when the
//! disk is getting full, the old last block is resealed as a middle block before new blocks go
//! past it, and a write that fails part way is rolled back to the old length and last block.

use crate::format::header::FileHeader;
use crate::format::offsets::{block_of, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::vault::error::{IoContext, Result, VaultError};

use super::room::plenty_of_room;
use super::storage::{read_full_at, Storage};
use super::{CryptFile, Sizes};

/// A write or truncate that may grow a file.
pub(super) struct Growth<'a> {
    /// The file before it.
    pub(super) sizes: &'a Sizes,
    /// Plaintext size after it.
    pub(super) new_size: u64,
    /// The first block it writes.
    pub(super) first_written: BlockNo,
    /// Backing bytes it writes from the start of that block (a new file's header, written
    /// with block 0, lies in the same file-system block as block 0's start).
    pub(super) written_len: u64,
}

impl Growth<'_> {
    fn grows(&self) -> bool {
        self.new_size > self.sizes.plain
    }

    /// The old last block, when the file had one.
    fn old_last(&self) -> Option<BlockNo> {
        (self.sizes.plain > 0).then(|| block_of(self.sizes.plain - 1))
    }
}

/// What a growing write needs to put a file back as it was.
pub(super) struct Undo {
    /// Backing length before the write.
    len: u64,
    /// Backing offset of the old last block (or of the end, for a file without blocks).
    tail_off: u64,
    /// The old last block's backing bytes.
    tail: Vec<u8>,
}

/// A range of backing bytes.
#[derive(Debug, Clone, Copy)]
struct CipherRange {
    off: u64,
    len: u64,
}

/// Whether a failed reservation means the write cannot succeed: a full disk or quota. Any
/// other failure (no `fallocate` on this file system, an offset it cannot take) is ignored:
/// the rollback covers the write.
fn is_out_of_room(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT))
}

impl<S: Storage> CryptFile<S> {
    /// Before a write or truncate that grows the file: reserves the backing ranges it will write
    /// when the backing disk is getting full (so a full disk fails here, before any byte
    /// changes; skipped with [`super::room::RESERVE_BELOW_FREE`] to spare) and keeps the old
    /// backing length and raw last block so that a write failing part way (ENOSPC on a file
    /// system without `fallocate`, EIO) can be rolled back. `None` when not growing.
    pub(super) fn begin_growth(&self, g: &Growth<'_>) -> Result<Option<Undo>> {
        if !g.grows() {
            return Ok(None);
        }
        // The length before this write (a header written for it goes too on a rollback).
        let len = g.sizes.len;
        let old_last = g.old_last();
        let mut ranges = vec![CipherRange {
            off: g.first_written.cipher_off(),
            len: g.written_len,
        }];
        if let Some(b) = old_last.filter(|&b| b < g.first_written) {
            ranges.push(CipherRange {
                off: b.cipher_off(),
                len: CIPHER_BLOCK,
            });
        }
        let need: u64 = ranges.iter().map(|r| r.len).sum();
        if plenty_of_room(g.sizes.dev, need, || self.storage.free_bytes()) {
            ranges.clear();
        }
        for r in ranges {
            if let Err(e) = self
                .storage
                .reserve(r.off, r.len)
                .or_else(|e| if is_out_of_room(&e) { Err(e) } else { Ok(()) })
            {
                // Give back whatever part of the reservation was made past the end.
                let _ = self.storage.set_len(len);
                return Err(VaultError::io(&self.rel, e));
            }
        }
        let tail_off = old_last.map_or(len, |b| b.cipher_off()).min(len);
        let mut tail = vec![0u8; (len - tail_off) as usize];
        let n = read_full_at(&self.storage, &mut tail, tail_off).at(&self.rel)?;
        tail.truncate(n);
        Ok(Some(Undo { len, tail_off, tail }))
    }

    /// After a growing write: on failure, puts back the old length and last block (logging if
    /// even that fails) and returns the original error.
    pub(super) fn finish_growth(&self, r: Result<()>, undo: Option<Undo>) -> Result<()> {
        let (Err(err), Some(u)) = (&r, undo) else { return r };
        let back = self
            .storage
            .set_len(u.len)
            .and_then(|()| self.storage.write_all_at(&u.tail, u.tail_off));
        match back {
            Ok(()) => log::warn!("{}: write failed ({err}); file left as it was", self.rel.display()),
            Err(e) => log::error!(
                "{}: write failed ({err}) and could not be undone: {e}",
                self.rel.display()
            ),
        }
        r
    }

    /// When a file grows past its old last block (and that block is not rewritten anyway),
    /// reseal it padded to a full block with final = 0, in write session `session`.
    pub(super) fn reseal_old_last(&self, h: &FileHeader, g: &Growth<'_>, session: u32) -> Result<()> {
        if !g.grows() {
            return Ok(());
        }
        let Some(old_last) = g.old_last().filter(|&b| b < g.first_written) else {
            return Ok(());
        };
        let plain = self.block_plain(h, old_last, g.sizes, PLAIN_BLOCK as usize)?;
        let mut sealed = Vec::with_capacity(CIPHER_BLOCK as usize);
        self.seal_fresh(h, old_last, false, session, &plain, &mut sealed)?;
        self.storage.write_all_at(&sealed, old_last.cipher_off()).at(&self.rel)
    }
}
