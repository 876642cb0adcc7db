//! Encrypted file contents: random-access read, write and truncate over one backing file.
//!
//! Callers serialize `write_at` / `set_len` per backing inode (the FUSE layer holds a per-inode
//! lock); reads may run concurrently with each other.
//!
//! Rules (docs/FORMAT.md, "File contents"), the per-block ones kept by [`super::codec`]:
//! - the last block is sealed with final = 1 and is never a hole, so truncation at a block
//!   boundary is detected;
//! - earlier blocks are sealed with final = 0; final = 1 is tolerated there (a block once
//!   last, left so when writes reach the disk out of order);
//! - an all-zero backing block before the last block is a hole and reads as zeros;
//! - growing a file seals at most two blocks besides the data written (old last, new last).
//!
//! One file per job: [`read`] (blocks to plaintext), [`retry`] (the timed wait for a file
//! being rewritten), [`write`](mod@write), [`growth`] (reservation and rollback), [`room`] (the
//! free-space figure), [`holes`] (SEEK_DATA / SEEK_HOLE, reservations), [`repair`] (fsck), the
//! session rules ([`session_rules`]) and what acts on them ([`sessions`]), and the [`storage`]
//! behind it all; [`notices`] are what the caller should tell the user once.

mod growth;
mod holes;
#[cfg(test)]
mod mem_storage;
mod notices;
mod read;
mod repair;
mod retry;
mod room;
mod session_rules;
mod sessions;
mod storage;
#[cfg(test)]
mod tests;
mod write;

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, Mutex};

use crate::crypto::{self, NONCE_LEN};
use crate::format::header::{FileHeader, HEADER_LEN};
use crate::format::offsets::{self, block_of, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::format::session;

use super::codec::BlockCodec;
use super::error::{Damage, IoContext, Result, VaultError};
use super::keys::VaultKeys;

pub use notices::Notice;
pub use repair::BlockCheck;
pub use session_rules::SESSION_MAX_AGE;
pub use storage::{ChangeStamp, FileStorage, Storage, StorageStat};

use session_rules::SessionRules;
use storage::read_full_at;

/// The sizes of a backing file, read from fstat.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    /// Backing device (0 when unknown).
    dev: u64,
    /// Backing length.
    len: u64,
    plain: u64,
    /// The backing file ends in a torn partial block (crash mid-append).
    torn: bool,
    /// The backing file has no header yet.
    empty: bool,
}

/// One open encrypted file, over its backing storage (the backing `File` unless a test says
/// otherwise).
#[derive(Debug)]
pub struct CryptFile<S: Storage = FileStorage> {
    storage: S,
    keys: Arc<VaultKeys>,
    rel: PathBuf,
    /// Header version given to a file that gets its header through this handle.
    new_version: u16,
    /// Version-2 files: the write session this handle may continue (see `begin_write`).
    writer: Mutex<SessionRules>,
    /// Version-2 files: a session the last block carried while this handle was open (0 = none
    /// known yet). Reads check blocks against it; it may lag behind, never run ahead, of a
    /// file rewritten forward (FORMAT.md §5.8).
    known_last: AtomicU32,
    /// What reads and writes found for the caller to tell once (see [`take_notices`](Self::take_notices)).
    notices: notices::Pending,
}

impl CryptFile<FileStorage> {
    /// Wraps an open backing file. `rel` is its backing path, for error messages; a header this
    /// handle writes gets `new_version` (`FILE_V1` or `FILE_V2`).
    pub fn new(file: File, keys: Arc<VaultKeys>, rel: PathBuf, new_version: u16) -> Self {
        Self::with_storage(FileStorage::new(file), keys, rel, new_version)
    }

    /// The backing file.
    pub fn backing(&self) -> &File {
        self.storage.file()
    }
}

impl<S: Storage> CryptFile<S> {
    /// Wraps backing storage (see [`new`](CryptFile::new)).
    pub fn with_storage(storage: S, keys: Arc<VaultKeys>, rel: PathBuf, new_version: u16) -> Self {
        CryptFile {
            storage,
            keys,
            rel,
            new_version,
            writer: Mutex::new(SessionRules::default()),
            known_last: AtomicU32::new(0),
            notices: notices::Pending::default(),
        }
    }

    /// What reads and writes through this handle found since the last call: each at most once
    /// per call, however many reads found it. The caller logs them (once per file).
    pub fn take_notices(&self) -> Vec<Notice> {
        self.notices.take()
    }

    /// The backing storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The backing path (relative to CIPHERDIR) used in messages.
    pub fn rel(&self) -> &std::path::Path {
        &self.rel
    }

    /// Replaces the path used in messages (after a rename).
    pub fn set_rel(&mut self, rel: PathBuf) {
        self.rel = rel;
    }

    fn corrupt(&self, block: Option<u64>, damage: Damage) -> VaultError {
        VaultError::corrupt(self.rel.clone(), block, damage)
    }

    /// The block codec of the file with header `h`, handed this file's content key: the
    /// shared key of the vault's layout-1 epoch for file header versions 1 and 2.
    fn codec(&self, h: &FileHeader) -> Result<BlockCodec<'_>> {
        let key = self
            .keys
            .layout1()
            .and_then(|e| e.set.content.shared())
            .ok_or_else(|| self.corrupt(None, Damage::EpochUnknown))?;
        Ok(BlockCodec::for_header(key, h))
    }

    fn sizes(&self) -> Result<Sizes> {
        let st = self.storage.stat().at(&self.rel)?;
        Ok(Sizes {
            dev: st.dev,
            ..sizes_of(st.len)
        })
    }

    /// Before a write: drop a torn tail (it cannot be read anyway) so new blocks land on a clean
    /// block boundary. Returns the sizes after the cut.
    fn cut_torn_tail(&self) -> Result<Sizes> {
        let sizes = self.sizes()?;
        if !sizes.torn {
            return Ok(sizes);
        }
        log::warn!(
            "{}: dropping a torn partial block at the end before writing",
            self.rel.display()
        );
        if sizes.plain == 0 {
            let keep = if self.header().is_ok() { HEADER_LEN as u64 } else { 0 };
            self.storage.set_len(keep).at(&self.rel)?;
            return self.sizes();
        }
        // Cut only when the block before the torn one is sealed as final (a crash while
        // appending after it). Otherwise the file may have been truncated at a block boundary
        // by someone else: refuse, and leave the decision to fsck.
        let h = self.require_header()?;
        let last = block_of(sizes.plain - 1);
        self.read_blocks(&h, last, last, &sizes)?;
        self.storage.set_len(offsets::cipher_size(sizes.plain)).at(&self.rel)?;
        self.sizes()
    }

    /// Plaintext size, derived from the backing size (a torn tail is left out).
    pub fn plain_len(&self) -> Result<u64> {
        Ok(self.sizes()?.plain)
    }

    /// Reads the header; `None` for a headerless (empty) file.
    pub fn header(&self) -> Result<Option<FileHeader>> {
        let mut buf = [0u8; HEADER_LEN];
        let n = read_full_at(&self.storage, &mut buf, 0).at(&self.rel)?;
        if n == 0 {
            return Ok(None);
        }
        FileHeader::decode(&buf[..n])
            .map(Some)
            .map_err(|fault| self.corrupt(None, Damage::Header(fault)))
    }

    fn require_header(&self) -> Result<FileHeader> {
        self.header()?.ok_or_else(|| self.corrupt(None, Damage::MissingHeader))
    }

    /// The header, written now with a fresh random file ID if the file has none.
    pub fn ensure_header(&self) -> Result<FileHeader> {
        if let Some(h) = self.header()? {
            return Ok(h);
        }
        let h = FileHeader {
            version: self.new_version,
            file_id: crypto::random_array()?,
        };
        self.storage.write_all_at(&h.encode(), 0).at(&self.rel)?;
        Ok(h)
    }

    /// A fresh nonce for a block of the file with header `h` sealed in write session
    /// `session` (version 2 carries it; version 1 is all random).
    fn fresh_nonce(h: &FileHeader, session: u32) -> Result<[u8; NONCE_LEN]> {
        let mut nonce: [u8; NONCE_LEN] = crypto::random_array()?;
        if h.has_sessions() {
            session::set_nonce_session(&mut nonce, session);
        }
        Ok(nonce)
    }

    /// Appends `nonce | ciphertext | tag` of block `b` to `out`, with a fresh nonce carrying
    /// `session` in version 2.
    fn seal_fresh(
        &self,
        h: &FileHeader,
        b: BlockNo,
        is_final: bool,
        session: u32,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let nonce = Self::fresh_nonce(h, session)?;
        self.codec(h)?.seal_block(&nonce, b, is_final, plain, out);
        Ok(())
    }

    /// Starts writing back the backing bytes of plaintext `[off, off + len)` without waiting:
    /// a streaming writer's data then reaches the disk while it writes instead of all at its
    /// fsync. Failures are ignored (only timing depends on it).
    pub fn start_writeback(&self, off: u64, len: u64) {
        if len == 0 {
            return;
        }
        let first = block_of(off).cipher_off();
        let end = block_of(off.saturating_add(len - 1))
            .cipher_off()
            .saturating_add(CIPHER_BLOCK);
        let _ = self.storage.start_writeback(first, end - first);
    }

    /// fsync / fdatasync of the backing file. The next write starts a new write session.
    pub fn sync(&self, data_only: bool) -> Result<()> {
        self.end_session();
        self.storage.sync(data_only).at(&self.rel)
    }
}

/// Plaintext size for a backing length, leaving out a torn tail.
fn sizes_of(len: u64) -> Sizes {
    match offsets::plain_size(len) {
        Ok(plain) => Sizes {
            dev: 0,
            len,
            plain,
            torn: false,
            empty: len == 0,
        },
        Err(_) if len < HEADER_LEN as u64 => Sizes {
            dev: 0,
            len,
            plain: 0,
            torn: true,
            empty: false,
        },
        Err(_) => {
            let full = (len - HEADER_LEN as u64) / CIPHER_BLOCK;
            Sizes {
                dev: 0,
                len,
                plain: full * PLAIN_BLOCK,
                torn: true,
                empty: false,
            }
        }
    }
}

/// Plaintext size for a backing file length (what getattr reports).
pub fn plain_size_for(backing_len: u64) -> u64 {
    sizes_of(backing_len).plain
}
