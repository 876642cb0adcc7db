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
mod header_memo;
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

use crate::crypto::{self, ContentKey, FileKeys, NONCE_LEN};
use crate::format::epochs::Layout;
use crate::format::header::{FileHeader, FILE_V3, HEADER_LEN};
use crate::format::offsets::{self, block_of, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};

use super::codec::BlockCodec;
use super::error::{Damage, IoContext, Result, VaultError};
use super::keys::VaultKeys;

pub use notices::Notice;
pub use repair::BlockCheck;
pub use session_rules::SESSION_MAX_AGE;
pub use storage::{ChangeStamp, FileStorage, Storage, StorageStat};

use header_memo::HeaderMemo;
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
    /// Header-version-3 files: the keys of the file ID last seen, derived once (a truncate to
    /// 0 gives the file a new ID, and the next codec derives its keys).
    file_keys: Mutex<Option<([u8; 16], Arc<FileKeys>)>>,
    /// Files with sessions (versions 2 and 3): the write session this handle may continue (see
    /// `begin_write`).
    writer: Mutex<SessionRules>,
    /// Files with sessions: a session the last block carried while this handle was open (0 = none
    /// known yet). Reads check blocks against it; it may lag behind, never run ahead, of a
    /// file rewritten forward (FORMAT.md §5.8).
    known_last: AtomicU32,
    /// The header as the last read found it (reads of a file at rest skip reading it again).
    header_memo: HeaderMemo,
    /// What reads and writes found for the caller to tell once (see [`take_notices`](Self::take_notices)).
    notices: notices::Pending,
}

impl CryptFile<FileStorage> {
    /// Wraps an open backing file. `rel` is its backing path, for error messages; a header this
    /// handle writes gets `new_version` (`FILE_V1`, `FILE_V2`, or `FILE_V3` when the newest
    /// epoch of `keys` has layout 3).
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
            file_keys: Mutex::new(None),
            writer: Mutex::new(SessionRules::default()),
            known_last: AtomicU32::new(0),
            header_memo: HeaderMemo::default(),
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

    /// The block codec of the file with header `h`, handed this file's keys: the shared
    /// content key of the vault's layout-1 epoch for header versions 1 and 2; for version 3 the
    /// file's own keys under the epoch its file ID names. `EpochUnknown` when the vault has no
    /// such epoch.
    fn codec(&self, h: &FileHeader) -> Result<BlockCodec<'_>> {
        let unknown = || self.corrupt(None, Damage::EpochUnknown);
        let Some(epoch_id) = h.epoch_id() else {
            let key = self
                .keys
                .layout1()
                .and_then(|e| e.set.content.shared())
                .ok_or_else(unknown)?;
            return Ok(BlockCodec::for_header(key, h));
        };
        let mut cached = self.file_keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((id, keys)) = &*cached {
            if *id == h.file_id {
                return Ok(BlockCodec::per_file(keys.clone(), h));
            }
        }
        let root = match self.keys.by_id(epoch_id) {
            Some(e) if e.layout == Layout::V3 => match &e.set.content {
                ContentKey::PerFile(root) => root,
                ContentKey::Shared(_) => return Err(unknown()),
            },
            _ => return Err(unknown()),
        };
        let keys = Arc::new(root.file_keys(&h.file_id));
        *cached = Some((h.file_id, keys.clone()));
        Ok(BlockCodec::per_file(keys, h))
    }

    /// The file ID whose keys this handle holds (tests: the cache follows a new header).
    #[cfg(test)]
    fn cached_file_id(&self) -> Option<[u8; 16]> {
        self.file_keys
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|(id, _)| *id)
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

    /// The header, written now with a fresh file ID if the file has none: 16 random bytes, or
    /// for version 3 the newest epoch's ID and 12 random bytes.
    pub fn ensure_header(&self) -> Result<FileHeader> {
        match self.header_or_new()? {
            (h, false) => Ok(h),
            (h, true) => {
                self.storage.write_all_at(&h.encode(), 0).at(&self.rel)?;
                Ok(h)
            }
        }
    }

    /// The file's header, or a new one (`true`) that the caller writes: a file without a
    /// header is empty.
    fn header_or_new(&self) -> Result<(FileHeader, bool)> {
        if let Some(h) = self.header()? {
            return Ok((h, false));
        }
        let mut file_id: [u8; 16] = crypto::random_array()?;
        if self.new_version == FILE_V3 {
            let newest = self.keys.newest();
            let id = newest
                .id
                .filter(|_| newest.layout == Layout::V3)
                .ok_or_else(|| self.corrupt(None, Damage::EpochUnknown))?;
            file_id[..id.0.len()].copy_from_slice(&id.0);
        }
        let h = FileHeader {
            version: self.new_version,
            file_id,
        };
        Ok((h, true))
    }

    /// The write session block `b` carries, read from its nonce through the codec without
    /// authenticating the block (0 for header version 1 and for a hole).
    pub fn block_session(&self, b: BlockNo) -> Result<u32> {
        let h = self.require_header()?;
        let mut nonce = [0u8; NONCE_LEN];
        let n = read_full_at(&self.storage, &mut nonce, b.cipher_off()).at(&self.rel)?;
        if n < NONCE_LEN {
            return Err(self.corrupt(Some(b.0), Damage::Shrank));
        }
        Ok(self.codec(&h)?.session_of(&nonce))
    }

    /// Appends `nonce | ciphertext | tag` of block `b` to `out`, with a fresh nonce carrying
    /// `session` (versions 2 and 3).
    fn seal_fresh(
        &self,
        h: &FileHeader,
        b: BlockNo,
        is_final: bool,
        session: u32,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let codec = self.codec(h)?;
        let nonce = codec.nonce_with_session(crypto::random_array()?, session);
        codec.seal_block(&nonce, b, is_final, plain, out);
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
