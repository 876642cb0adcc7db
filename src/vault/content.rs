//! Encrypted file contents: random-access read, write and truncate over one backing file.
//!
//! Callers serialize `write_at` / `set_len` per backing inode (the FUSE layer holds a per-inode
//! lock); reads may run concurrently with each other.
//!
//! Rules (docs/FORMAT.md, "File contents"):
//! - the last block is sealed with final = 1 and is never a hole, so truncation at a block
//!   boundary is detected;
//! - earlier blocks are sealed with final = 0; final = 1 is tolerated there (a block once
//!   last, left so when writes reach the disk out of order);
//! - an all-zero backing block before the last block is a hole and reads as zeros;
//! - growing a file seals at most two blocks besides the data written (old last, new last).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::crypto::{self, KeySet, OpenJob, SealJob, NONCE_LEN, TAG_LEN};
use crate::format::header::{FileHeader, HEADER_LEN};
use crate::format::offsets::{
    self, block_aad, block_count, block_of, block_plain_len, BlockNo, CIPHER_BLOCK, MAX_PLAIN_SIZE, PLAIN_BLOCK,
};
use crate::format::session;

use super::backing;
use super::error::{IoContext, Result, VaultError};
use super::sessions::WriterSession;

/// Which value of the final flag a block may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FinalRule {
    /// The last block: final = 1, no hole.
    Last,
    /// Any earlier block: final = 0 (or 1 after a crash), hole allowed.
    Middle,
}

/// The sizes of a backing file, read from fstat.
#[derive(Debug, Clone, Copy)]
pub(super) struct Sizes {
    /// Backing device (0 when unknown).
    pub(super) dev: u64,
    /// Backing length.
    pub(super) len: u64,
    pub(super) plain: u64,
    /// The backing file ends in a torn partial block (crash mid-append).
    pub(super) torn: bool,
    /// The backing file has no header yet.
    pub(super) empty: bool,
}

/// One open encrypted file.
#[derive(Debug)]
pub struct CryptFile {
    pub(super) file: File,
    pub(super) keys: Arc<KeySet>,
    pub(super) rel: PathBuf,
    /// Header version given to a file that gets its header through this handle.
    new_version: u16,
    /// Version-2 files: the write session this handle may continue (see `begin_write`).
    pub(super) writer: Mutex<Option<WriterSession>>,
    /// Version-2 files: a session the last block carried while this handle was open (0 = none
    /// known yet). Reads check blocks against it; it may lag behind, never run ahead, of a
    /// file rewritten forward (FORMAT.md §5.8).
    pub(super) known_last: AtomicU32,
}

/// How long a read waits for a backing file being rewritten in place before it fails with EIO:
/// for the last block to catch up (version 2), or for a half-written block (any version).
const READ_WAIT_MAX: Duration = Duration::from_secs(1);

/// A backing file's length, mtime (s, ns) and ctime (s, ns): any write changes it.
type Stamp = (u64, i64, i64, i64, i64);

/// How long a read that met a block which does not authenticate watches the backing file for
/// a writer at work before it reports the damage.
const CHANGE_WATCH: Duration = Duration::from_millis(5);

/// The pause between reads of a version-2 file whose blocks run ahead of its last block.
const AHEAD_PAUSE: Duration = Duration::from_millis(5);

/// The newest write session among the blocks of one read, and where it was.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Newest {
    pub(super) session: u32,
    pub(super) block: u64,
}

/// What one attempt of a version-2 read found.
enum Attempt {
    /// Read `n` bytes, all from one version.
    Done(usize),
    /// A block is newer than the last block known before the read: the file is being rewritten
    /// (or was left so). With the last block's session read again afterwards.
    Ahead(Newest, u32),
}

impl CryptFile {
    /// Wraps an open backing file. `rel` is its backing path, for error messages; a header this
    /// handle writes gets `new_version` (`FILE_V1` or `FILE_V2`).
    pub fn new(file: File, keys: Arc<KeySet>, rel: PathBuf, new_version: u16) -> Self {
        CryptFile {
            file,
            keys,
            rel,
            new_version,
            writer: Mutex::new(None),
            known_last: AtomicU32::new(0),
        }
    }

    /// The backing file.
    pub fn backing(&self) -> &File {
        &self.file
    }

    /// The backing path (relative to CIPHERDIR) used in messages.
    pub fn rel(&self) -> &std::path::Path {
        &self.rel
    }

    /// Replaces the path used in messages (after a rename).
    pub fn set_rel(&mut self, rel: PathBuf) {
        self.rel = rel;
    }

    pub(super) fn corrupt(&self, block: Option<u64>, what: impl Into<String>) -> VaultError {
        VaultError::corrupt(self.rel.clone(), block, what)
    }

    fn sizes(&self) -> Result<Sizes> {
        let md = self.file.metadata().at(&self.rel)?;
        Ok(Sizes {
            dev: std::os::unix::fs::MetadataExt::dev(&md),
            ..sizes_of(md.len())
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
            self.file.set_len(keep).at(&self.rel)?;
            return self.sizes();
        }
        // Cut only when the block before the torn one is sealed as final (a crash while
        // appending after it). Otherwise the file may have been truncated at a block boundary
        // by someone else: refuse, and leave the decision to fsck.
        let h = self.require_header()?;
        let last = block_of(sizes.plain - 1);
        self.read_blocks(&h, last, last, &sizes)?;
        self.file.set_len(offsets::cipher_size(sizes.plain)).at(&self.rel)?;
        self.sizes()
    }

    /// Plaintext size, derived from the backing size (a torn tail is left out).
    pub fn plain_len(&self) -> Result<u64> {
        Ok(self.sizes()?.plain)
    }

    /// Reads the header; `None` for a headerless (empty) file.
    pub fn header(&self) -> Result<Option<FileHeader>> {
        let mut buf = [0u8; HEADER_LEN];
        let n = read_full_at(&self.file, &mut buf, 0).at(&self.rel)?;
        if n == 0 {
            return Ok(None);
        }
        FileHeader::decode(&buf[..n])
            .map(Some)
            .map_err(|e| self.corrupt(None, e.to_string()))
    }

    fn require_header(&self) -> Result<FileHeader> {
        self.header()?.ok_or_else(|| self.corrupt(None, "missing file header"))
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
        self.file.write_all_at(&h.encode(), 0).at(&self.rel)?;
        Ok(h)
    }

    fn rule(b: BlockNo, sizes: &Sizes) -> FinalRule {
        let last = block_count(sizes.plain).saturating_sub(1);
        if b.0 == last {
            FinalRule::Last
        } else {
            FinalRule::Middle
        }
    }

    /// Opens one sealed block into `out` (whose length is the block's plaintext length).
    fn open_block(&self, h: &FileHeader, b: BlockNo, rule: FinalRule, sealed: &[u8], out: &mut [u8]) -> Result<()> {
        if sealed.len() != out.len() + NONCE_LEN + TAG_LEN {
            return Err(self.corrupt(Some(b.0), "short block"));
        }
        if rule == FinalRule::Middle && sealed.len() as u64 == CIPHER_BLOCK && sealed.iter().all(|&x| x == 0) {
            out.fill(0);
            return Ok(());
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let (ct, tag) = rest.split_at(out.len());
        let nonce: &[u8; NONCE_LEN] = nonce.try_into().map_err(|_| self.corrupt(Some(b.0), "nonce"))?;
        let tag: &[u8; TAG_LEN] = tag.try_into().map_err(|_| self.corrupt(Some(b.0), "tag"))?;
        let cipher = &self.keys.content;
        let try_flag = |is_final: bool, out: &mut [u8]| {
            out.copy_from_slice(ct);
            cipher.open(nonce, &h.block_aad(b, is_final), out, tag).is_ok()
        };
        let ok = match rule {
            FinalRule::Last => try_flag(true, out),
            FinalRule::Middle => try_flag(false, out) || try_flag(true, out),
        };
        if ok {
            Ok(())
        } else {
            out.fill(0);
            let what = if rule == FinalRule::Last && try_flag(false, out) {
                out.fill(0);
                "last block is not sealed as final: file truncated at a block boundary"
            } else {
                "block authentication failed"
            };
            Err(self.corrupt(Some(b.0), what))
        }
    }

    /// Appends `nonce | ciphertext | tag` of block `b` to `out`; a version-2 nonce carries
    /// `session`.
    pub(super) fn seal_block(
        &self,
        h: &FileHeader,
        b: BlockNo,
        is_final: bool,
        session: u32,
        plain: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<()> {
        let mut nonce: [u8; NONCE_LEN] = crypto::random_array()?;
        if h.has_sessions() {
            session::stamp(&mut nonce, session);
        }
        let start = out.len();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plain);
        let tag = self
            .keys
            .content
            .seal(&nonce, &h.block_aad(b, is_final), &mut out[start + NONCE_LEN..]);
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Seals in place consecutive `nonce | plain | tag space` blocks, one per `(aad, plain len)`
    /// in `pending`, in one batch (the nonces are already in place; the tags fill the space).
    fn seal_in_place(&self, sealed: &mut [u8], pending: &[([u8; 27], usize)]) -> Result<()> {
        let layout = || VaultError::errno_at(&self.rel, libc::EIO);
        let mut jobs = Vec::with_capacity(pending.len());
        let mut rest = sealed;
        for (aad, len) in pending {
            let (nonce, after) = std::mem::take(&mut rest)
                .split_first_chunk_mut::<NONCE_LEN>()
                .ok_or_else(layout)?;
            let (buf, after) = after.split_at_mut_checked(*len).ok_or_else(layout)?;
            let (tag, after) = after.split_first_chunk_mut::<TAG_LEN>().ok_or_else(layout)?;
            jobs.push(SealJob {
                nonce: &*nonce,
                aad,
                buf,
                tag,
            });
            rest = after;
        }
        self.keys.content.seal_many(&mut jobs);
        Ok(())
    }

    /// Reads and opens blocks `first..=last` of a file with `sizes`, returning their plaintext.
    fn read_blocks(&self, h: &FileHeader, first: BlockNo, last: BlockNo, sizes: &Sizes) -> Result<Vec<u8>> {
        let mut plain = vec![0u8; (span_end(last, sizes) - first.plain_off()) as usize];
        self.read_blocks_into(h, first, last, sizes, &mut plain)?;
        Ok(plain)
    }

    /// Like [`read_blocks`](Self::read_blocks), into `plain`, which is exactly as long as the
    /// plaintext of those blocks; returns the newest write session among them (version 2). The
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
        let n = read_full_at(&self.file, sealed, start).at(&self.rel)?;
        if n < sealed.len() {
            return Err(self.corrupt(
                Some(block_of(first.plain_off() + (n as u64 / CIPHER_BLOCK) * PLAIN_BLOCK).0),
                "file shrank during read",
            ));
        }
        let sealed = &*sealed;
        let opened = self.open_batch(h, first, sizes, sealed, plain);
        let mut c_pos = 0usize;
        let mut p_pos = 0usize;
        let mut newest = Newest::default();
        for b in first.0..=last.0 {
            let b = BlockNo(b);
            let len = block_plain_len(b, sizes.plain) as usize;
            let clen = len + NONCE_LEN + TAG_LEN;
            if h.has_sessions() {
                // A hole's nonce is all zeros: session 0.
                if let Some(nonce) = sealed.get(c_pos..).and_then(|r| r.first_chunk::<NONCE_LEN>()) {
                    let s = session::session_of(nonce);
                    if s > newest.session {
                        newest = Newest { session: s, block: b.0 };
                    }
                }
            }
            if !opened.get((b.0 - first.0) as usize).copied().unwrap_or(false) {
                self.open_block(
                    h,
                    b,
                    Self::rule(b, sizes),
                    &sealed[c_pos..c_pos + clen],
                    &mut plain[p_pos..p_pos + len],
                )?;
            }
            c_pos += clen;
            p_pos += len;
        }
        Ok(newest)
    }

    /// Fast path of `read_blocks`: opens every block of `sealed` (blocks from `first`) that is
    /// not a hole in one batch, with the final flag its position implies. Returns which blocks
    /// opened; the others (holes, a crash-left flag, damage) go through `open_block`, which
    /// applies the rules and names the error.
    fn open_batch(&self, h: &FileHeader, first: BlockNo, sizes: &Sizes, sealed: &[u8], plain: &mut [u8]) -> Vec<bool> {
        let count = plain.len().div_ceil(PLAIN_BLOCK as usize);
        let aads: Vec<_> = (first.0..first.0 + count as u64)
            .map(|b| {
                block_aad(
                    h.version,
                    &h.file_id,
                    BlockNo(b),
                    Self::rule(BlockNo(b), sizes) == FinalRule::Last,
                )
            })
            .collect();
        let mut index = Vec::with_capacity(count);
        let mut jobs = Vec::with_capacity(count);
        let blocks = sealed
            .chunks(CIPHER_BLOCK as usize)
            .zip(plain.chunks_mut(PLAIN_BLOCK as usize));
        for (i, ((blk, out), aad)) in blocks.zip(&aads).enumerate() {
            let may_be_hole = Self::rule(BlockNo(first.0 + i as u64), sizes) != FinalRule::Last;
            let Some((nonce, rest)) = blk.split_first_chunk::<NONCE_LEN>() else {
                continue;
            };
            let Some((ct, tag)) = rest.split_last_chunk::<TAG_LEN>() else {
                continue;
            };
            if ct.len() != out.len() || (may_be_hole && blk.iter().all(|&x| x == 0)) {
                continue;
            }
            out.copy_from_slice(ct);
            index.push(i);
            jobs.push(OpenJob {
                nonce,
                aad,
                buf: out,
                tag,
            });
        }
        let mut opened = vec![false; count];
        for (i, r) in index.into_iter().zip(self.keys.content.open_many(&mut jobs)) {
            opened[i] = r.is_ok();
        }
        opened
    }

    /// Reads up to `buf.len()` plaintext bytes at `off`; returns the count (0 at or past EOF).
    ///
    /// A backing file ending in a torn partial block (a truncation mid-block, or a write cut
    /// short by a crash) is an error for every read that reaches its end: it must never read
    /// as a silently shorter file. Reads that stop before the end still work.
    ///
    /// Version 2: the blocks of one read are blocks of one version of the file. A block newer
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
        loop {
            let before = self.stamp();
            let err = match self.read_attempt(buf, off, learnt.take()) {
                Ok(Attempt::Done(n)) => return Ok(n),
                // The last block moved on while this read ran: read again, checked against it
                // (`u32::MAX`, a last block being written right now, checks nothing: every block
                // before it is already new).
                Ok(Attempt::Ahead(newest, last)) if last >= newest.session && started.elapsed() < READ_WAIT_MAX => {
                    learnt = Some(last);
                    continue;
                }
                Ok(Attempt::Ahead(newest, last)) => {
                    let err = self.corrupt(
                        Some(newest.block),
                        format!(
                            "block sealed in write session {}, after the last block's {last}: the file is being \
                             rewritten in place, or such a rewrite stopped half way (two versions mixed)",
                            newest.session
                        ),
                    );
                    // Only an in-place rewrite (or a power loss) leaves this: wait for a writer
                    // that was at work within the wait.
                    if started.elapsed() >= READ_WAIT_MAX || !self.modified_within(READ_WAIT_MAX) {
                        return Err(err);
                    }
                    std::thread::sleep(AHEAD_PAUSE);
                    continue;
                }
                Err(e @ VaultError::Corrupt { .. }) => e,
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

    /// The backing file's length, modification and change times (`None` if fstat fails).
    fn stamp(&self) -> Option<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = self.file.metadata().ok()?;
        Some((m.len(), m.mtime(), m.mtime_nsec(), m.ctime(), m.ctime_nsec()))
    }

    /// Whether the backing file changes from `before` within `watch` (polled with growing
    /// pauses).
    fn changes_within(&self, before: Option<Stamp>, watch: Duration) -> bool {
        let Some(before) = before else { return false };
        let start = Instant::now();
        let mut pause = Duration::from_micros(500);
        loop {
            if self.stamp().is_some_and(|now| now != before) {
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
    fn modified_within(&self, window: Duration) -> bool {
        self.file
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_none_or(|age| age < window)
    }

    /// One try of [`read_at`](Self::read_at).
    /// `learnt`: the last block's session, read just before this attempt.
    fn read_attempt(&self, buf: &mut [u8], off: u64, learnt: Option<u32>) -> Result<Attempt> {
        let sizes = self.sizes()?;
        if buf.is_empty() {
            return Ok(Attempt::Done(0));
        }
        if sizes.torn && off.saturating_add(buf.len() as u64) >= sizes.plain {
            return Err(self.corrupt(
                Some(block_count(sizes.plain)),
                "file ends in a torn partial block (truncated, or an interrupted write)",
            ));
        }
        if off >= sizes.plain {
            return Ok(Attempt::Done(0));
        }
        let end = (off + buf.len() as u64).min(sizes.plain);
        let h = self.require_header()?;
        let first = block_of(off);
        let last = block_of(end - 1);
        // Version 2: the last block's session is learnt *before* the blocks are read (a read of
        // the last block alone needs none).
        let bound = if h.has_sessions() && first != block_of(sizes.plain - 1) {
            match (learnt, self.known_last.load(Ordering::Relaxed)) {
                (Some(s), _) => s,
                (None, 0) => self.learn_last_session(&h, &sizes)?,
                (None, known) => known,
            }
        } else {
            u32::MAX
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
        if newest.session <= bound {
            return Ok(Attempt::Done(n));
        }
        Ok(Attempt::Ahead(newest, self.learn_last_session(&h, &self.sizes()?)?))
    }

    /// The current plaintext of block `b` (zeros past the old end), padded or cut to `len` bytes.
    fn block_plain(&self, h: &FileHeader, b: BlockNo, sizes: &Sizes, len: usize) -> Result<Vec<u8>> {
        let mut p = if b.0 < block_count(sizes.plain) {
            self.read_blocks(h, b, b, sizes)?
        } else {
            Vec::new()
        };
        p.resize(len, 0);
        Ok(p)
    }

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
        let h = self.ensure_header()?;
        let new_size = end.max(sizes.plain);
        let new_last = block_of(new_size - 1);
        let first = block_of(off);
        let last = block_of(end - 1);
        self.check_replaced_last(&h, &sizes, off, end, new_size)?;
        let reseals_last = sizes.plain == 0 || last >= block_of(sizes.plain - 1);
        let s = self.begin_write(&h, &sizes, reseals_last)?;

        let mut sealed = Vec::with_capacity(((last.0 - first.0 + 1) * CIPHER_BLOCK) as usize);
        let mut scratch = Vec::with_capacity(PLAIN_BLOCK as usize);
        let mut nonces = vec![0u8; (last.0 - first.0 + 1) as usize * NONCE_LEN];
        crypto::random_bytes(&mut nonces)?;
        if h.has_sessions() {
            for nonce in nonces.chunks_exact_mut(NONCE_LEN) {
                if let Some(nonce) = nonce.first_chunk_mut::<NONCE_LEN>() {
                    session::stamp(nonce, s);
                }
            }
        }
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
            pending.push((h.block_aad(b, b == new_last), len));
        }
        drop(scratch);
        self.seal_in_place(&mut sealed, &pending)?;
        // Reseal the old last block (padded, final = 0) before the new blocks go past it: a crash
        // in between leaves a file whose last block opens only as non-final — reported by reads
        // and fsck, and recovered by `fsck --repair` — rather than a short old block in the
        // middle that nothing can read.
        let undo = self.begin_growth(&sizes, new_size, first, (first.cipher_off(), sealed.len() as u64))?;
        let r = self
            .reseal_old_last(&h, &sizes, new_size, first, s)
            .and_then(|()| self.file.write_all_at(&sealed, first.cipher_off()).at(&self.rel));
        let r = self.finish_growth(r, undo);
        // The last block's tag, when this write sealed it (it ends the buffer).
        let last_tag = (last == new_last).then(|| tail_tag(&sealed)).flatten();
        self.end_write(&h, s, new_size, r.is_ok().then_some(last_tag))?;
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

    /// Before a write or truncate that grows the file: reserves the backing ranges it will write
    /// when the backing disk is getting full (`fallocate` with `KEEP_SIZE`, so a full disk fails
    /// here, before any byte changes; skipped with [`RESERVE_BELOW_FREE`] to spare) and
    /// keeps the old backing length and raw last block so that a write failing part way (ENOSPC
    /// on a file system without `fallocate`, EIO) can be rolled back. `None` when not growing.
    fn begin_growth(&self, sizes: &Sizes, new_size: u64, first: BlockNo, range: (u64, u64)) -> Result<Option<Undo>> {
        if new_size <= sizes.plain {
            return Ok(None);
        }
        // The length before this write (a header written for it goes too on a rollback).
        let len = sizes.len;
        let old_last = (sizes.plain > 0).then(|| block_of(sizes.plain - 1));
        let mut ranges = vec![range];
        if let Some(b) = old_last.filter(|&b| b < first) {
            ranges.push((b.cipher_off(), CIPHER_BLOCK));
        }
        let need: u64 = ranges.iter().map(|r| r.1).sum();
        if plenty_of_room(&self.file, sizes.dev, need) {
            ranges.clear();
        }
        for (off, n) in ranges {
            if let Err(e) = reserve(&self.file, off, n) {
                // Give back whatever part of the reservation was made past the end.
                let _ = self.file.set_len(len);
                return Err(VaultError::io(&self.rel, e));
            }
        }
        let tail_off = old_last.map_or(len, |b| b.cipher_off()).min(len);
        let mut tail = vec![0u8; (len - tail_off) as usize];
        let n = read_full_at(&self.file, &mut tail, tail_off).at(&self.rel)?;
        tail.truncate(n);
        Ok(Some(Undo { len, tail_off, tail }))
    }

    /// After a growing write: on failure, puts back the old length and last block (logging if
    /// even that fails) and returns the original error.
    fn finish_growth(&self, r: Result<()>, undo: Option<Undo>) -> Result<()> {
        let (Err(err), Some(u)) = (&r, undo) else { return r };
        let back = self
            .file
            .set_len(u.len)
            .and_then(|()| self.file.write_all_at(&u.tail, u.tail_off));
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
    /// reseal it padded to a full block with final = 0.
    fn reseal_old_last(
        &self,
        h: &FileHeader,
        sizes: &Sizes,
        new_size: u64,
        first_written: BlockNo,
        session: u32,
    ) -> Result<()> {
        if sizes.plain == 0 || new_size <= sizes.plain {
            return Ok(());
        }
        let old_last = block_of(sizes.plain - 1);
        if old_last >= first_written {
            return Ok(());
        }
        let plain = self.block_plain(h, old_last, sizes, PLAIN_BLOCK as usize)?;
        let mut sealed = Vec::with_capacity(CIPHER_BLOCK as usize);
        self.seal_block(h, old_last, false, session, &plain, &mut sealed)?;
        self.file.write_all_at(&sealed, old_last.cipher_off()).at(&self.rel)
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
            return self.file.set_len(0).at(&self.rel);
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
            let mut sealed = Vec::with_capacity(len + 32);
            self.seal_block(&h, new_last, true, s, &plain, &mut sealed)?;
            let r = self
                .file
                .set_len(offsets::cipher_size(new_size))
                .and_then(|()| self.file.write_all_at(&sealed, new_last.cipher_off()))
                .at(&self.rel);
            self.end_write(&h, s, new_size, r.is_ok().then(|| tail_tag(&sealed)))?;
            return r;
        }
        // Growth: the new last block holds old bytes (if it was the old last block) or zeros.
        let plain = self.block_plain(&h, new_last, &sizes, len)?;
        let mut sealed = Vec::with_capacity(len + 32);
        self.seal_block(&h, new_last, true, s, &plain, &mut sealed)?;
        let undo = self.begin_growth(&sizes, new_size, new_last, (new_last.cipher_off(), sealed.len() as u64))?;
        let r = self
            .reseal_old_last(&h, &sizes, new_size, new_last, s)
            .and_then(|()| self.file.write_all_at(&sealed, new_last.cipher_off()).at(&self.rel));
        let r = self.finish_growth(r, undo);
        self.end_write(&h, s, new_size, r.is_ok().then(|| tail_tag(&sealed)))?;
        r
    }

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
        use std::os::fd::AsRawFd;
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
        backing::reserve(self.file.as_raw_fd(), cipher_start, cipher_end - cipher_start).at(&self.rel)
    }

    /// Backing `lseek(whence)` from `cipher_off` (None: nothing found before the end).
    fn backing_seek(&self, cipher_off: u64, whence: libc::c_int) -> Result<Option<u64>> {
        use std::os::fd::AsRawFd;
        backing::seek(self.file.as_raw_fd(), cipher_off, whence).at(&self.rel)
    }

    /// Whether block `b` (not the last) is a hole: its backing bytes are all zero.
    fn is_hole_block(&self, b: BlockNo) -> Result<bool> {
        let mut buf = vec![0u8; CIPHER_BLOCK as usize];
        let n = read_full_at(&self.file, &mut buf, b.cipher_off()).at(&self.rel)?;
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
        let _ = backing::start_writeback(std::os::fd::AsRawFd::as_raw_fd(&self.file), first, end - first);
    }

    /// fsync / fdatasync of the backing file. The next write starts a new write session.
    pub fn sync(&self, data_only: bool) -> Result<()> {
        *self.writer.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if data_only {
            self.file.sync_data()
        } else {
            self.file.sync_all()
        }
        .at(&self.rel)
    }

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
            self.file.set_len(keep).at(&self.rel)?;
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
            return Ok(self.seal_hole_as_last(&h, last, &sizes)?.map(String::from));
        };
        let mut sealed = Vec::with_capacity(CIPHER_BLOCK as usize);
        let s = self.newest_session(&h, &sizes)?;
        self.seal_block(&h, last, true, s, &opened.plain, &mut sealed)?;
        self.file.write_all_at(&sealed, last.cipher_off()).at(&self.rel)?;
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
    fn seal_hole_as_last(&self, h: &FileHeader, last: BlockNo, sizes: &Sizes) -> Result<Option<&'static str>> {
        let len = block_plain_len(last, sizes.plain) as usize;
        let mut raw = vec![0u8; len + NONCE_LEN + TAG_LEN];
        let n = read_full_at(&self.file, &mut raw, last.cipher_off()).at(&self.rel)?;
        if n < raw.len() || raw.iter().any(|&b| b != 0) {
            return Ok(None);
        }
        let mut sealed = Vec::with_capacity(raw.len());
        let s = self.newest_session(h, sizes)?;
        self.seal_block(h, last, true, s, &vec![0u8; len], &mut sealed)?;
        self.file.write_all_at(&sealed, last.cipher_off()).at(&self.rel)?;
        Ok(Some(
            "sealed the last block, a never-written gap left by a crash while the file grew, as zeros",
        ))
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

    /// Authenticates every block (for fsck). Version 2 also checks every block against the
    /// last block's write session.
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
        if let Some(last) = self.last_block(&h, &sizes)?.filter(|_| h.has_sessions()) {
            check.ahead = sessions
                .into_iter()
                .filter(|&(_, s)| s > last.session)
                .map(|(b, _)| b)
                .collect();
        }
        Ok(check)
    }

    /// fsck --repair, version 2: when blocks are newer than the last block, reseals the last
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
        self.seal_block(&h, last.block, last.is_final, newest, &last.plain, &mut sealed)?;
        self.file.write_all_at(&sealed, last.block.cipher_off()).at(&self.rel)?;
        Ok(Some(format!(
            "resealed the last block with write session {newest} (it had {}): blocks were newer than it, \
             left by a power loss during a write, or by an in-place rewrite that stopped half way — then \
             the file mixes two versions; check its content",
            last.session
        )))
    }
}

/// What fsck found in the blocks of one file.
#[derive(Debug, Default)]
pub struct BlockCheck {
    /// Blocks that do not authenticate (a torn tail counts as the block after the last).
    pub bad: Vec<u64>,
    /// Version 2: blocks that authenticate but carry a write session above the last block's:
    /// two versions mixed.
    pub ahead: Vec<u64>,
}

/// Sealed-block buffers kept per thread up to this capacity (a FUSE read is at most 1 MiB).
const SEALED_KEEP: usize = 2 << 20;

thread_local! {
    /// Each thread's buffer for the sealed bytes of a read (no allocation and zeroing per read).
    static SEALED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The tag that ends a sealed buffer.
fn tail_tag(sealed: &[u8]) -> Option<[u8; TAG_LEN]> {
    sealed.last_chunk::<TAG_LEN>().copied()
}

/// Plaintext end of blocks up to `last` in a file with `sizes`.
fn span_end(last: BlockNo, sizes: &Sizes) -> u64 {
    (last.0 + 1).saturating_mul(PLAIN_BLOCK).min(sizes.plain)
}

/// What a growing write needs to put a file back as it was.
struct Undo {
    /// Backing length before the write.
    len: u64,
    /// Backing offset of the old last block (or of the end, for a file without blocks).
    tail_off: u64,
    /// The old last block's backing bytes.
    tail: Vec<u8>,
}

/// Free backing space (beyond twice the bytes a write adds) above which a growing write is not
/// reserved first: running out during that write would need other writers to fill this much
/// at the same moment, and the rollback covers even that.
const RESERVE_BELOW_FREE: u64 = 256 << 20;

/// Whether the backing file system has so much room that reserving `need` bytes before a
/// write is not worth its cost: on ext4 a reserved range becomes unwritten extents that the
/// write must then convert (streaming writes about 20% slower). Quotas are not seen here; a
/// write that hits one is rolled back like any failed write.
fn plenty_of_room(f: &File, dev: u64, need: u64) -> bool {
    ROOM.plenty(dev, need, || free_bytes(f))
}

/// Free bytes on the file system of `f` (0 when unknown).
fn free_bytes(f: &File) -> u64 {
    use std::os::fd::AsRawFd;
    let mut s = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: valid fd; fstatvfs fills the struct when it returns 0.
    if unsafe { libc::fstatvfs(f.as_raw_fd(), s.as_mut_ptr()) } != 0 {
        return 0;
    }
    // SAFETY: fstatvfs returned 0, so `s` is initialised.
    let s = unsafe { s.assume_init() };
    u64::try_from(u128::from(s.f_bavail) * u128::from(s.f_frsize)).unwrap_or(u64::MAX)
}

/// The last free-space figure, reused for [`ROOM_RECHECK`] while the writes since take less
/// than a quarter of the spare room it showed (a stale "plenty" only skips a reservation; the
/// rollback still covers a write that fails).
static ROOM: RoomCache = RoomCache {
    state: std::sync::Mutex::new(None),
};

/// How long a free-space figure is reused.
const ROOM_RECHECK: std::time::Duration = std::time::Duration::from_millis(500);

struct RoomCache {
    /// Which file system, when checked, the free bytes then, and the bytes asked for since.
    state: std::sync::Mutex<Option<(u64, std::time::Instant, u64, u64)>>,
}

impl RoomCache {
    fn plenty(&self, dev: u64, need: u64, measure: impl FnOnce() -> u64) -> bool {
        let enough = |free: u64, used: u64| {
            u128::from(free) > u128::from(used) * 4 + u128::from(need) * 2 + u128::from(RESERVE_BELOW_FREE)
        };
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((on, at, free, used)) = st.as_mut() {
            let used_now = used.saturating_add(need);
            if *on == dev && dev != 0 && at.elapsed() < ROOM_RECHECK && enough(*free, used_now) {
                *used = used_now;
                return true;
            }
        }
        let free = measure();
        *st = Some((dev, std::time::Instant::now(), free, need));
        enough(free, 0)
    }
}

/// Reserves `len` backing bytes at `off` without changing the file size. File systems without
/// `fallocate` are fine (the rollback covers them); only a full disk or quota is an error.
fn reserve(f: &File, off: u64, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(off), Ok(len)) = (libc::off_t::try_from(off), libc::off_t::try_from(len)) else {
        return Ok(());
    };
    // SAFETY: valid fd; fallocate has no memory effects.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), libc::FALLOC_FL_KEEP_SIZE, off, len) };
    if r == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => Err(e),
        _ => Ok(()),
    }
}

/// Plaintext size for a backing length, leaving out a torn tail.
pub(super) fn sizes_of(len: u64) -> Sizes {
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

/// pread until `buf` is full or EOF; returns bytes read.
pub(super) fn read_full_at(f: &File, buf: &mut [u8], off: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::{RoomCache, RESERVE_BELOW_FREE};
    use std::cell::Cell;

    #[test]
    fn free_space_figure_is_reused_only_while_plenty_on_the_same_device() {
        let cache = RoomCache {
            state: std::sync::Mutex::new(None),
        };
        let measured = Cell::new(0);
        let big = || {
            measured.set(measured.get() + 1);
            RESERVE_BELOW_FREE + (1 << 30)
        };
        assert!(cache.plenty(7, 1 << 20, big));
        assert!(cache.plenty(7, 1 << 20, big));
        assert_eq!(measured.get(), 1, "second check reuses the figure");
        // Another file system is measured afresh.
        assert!(cache.plenty(8, 1 << 20, big));
        assert_eq!(measured.get(), 2);
        // Writes eating into the spare room force a new measurement, which says "not plenty".
        let small = || {
            measured.set(measured.get() + 1);
            RESERVE_BELOW_FREE
        };
        assert!(
            !cache.plenty(8, 200 << 20, small),
            "1 GiB spare, 4 x 200 MiB asked: measure"
        );
        assert_eq!(measured.get(), 3);
        assert!(!cache.plenty(8, 1, small), "a low figure is never reused");
        assert_eq!(measured.get(), 4);
        // Unknown device (0): always measured.
        assert!(cache.plenty(0, 1, big));
        assert!(cache.plenty(0, 1, big));
        assert_eq!(measured.get(), 6);
    }
}
