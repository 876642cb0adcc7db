//! The block codec: framing (`nonce | ciphertext | tag`), associated data, and seal/open of one
//! content block or of a batch over slices. Pure: no I/O and no randomness; the keys and the
//! nonce's random bytes are handed in. Forward and reverse mode seal through the same code.
//!
//! The codec alone reads and writes the write session in nonce bytes 12..16
//! ([`session_of`](BlockCodec::session_of), [`nonce_with_session`](BlockCodec::nonce_with_session)):
//! header version 1 carries none, version 2 carries it as it is (`format::session`), version 3
//! XORs it with the file's session mask (docs/FORMAT.md §15.3).
//!
//! Rules (docs/FORMAT.md, "File contents"): the last block is sealed with final = 1 and is never
//! a hole; earlier blocks are sealed with final = 0, tolerate final = 1 (a block once last, left
//! so when writes reach the disk out of order), and read as zeros when all their backing bytes
//! are zero (a hole).

use std::sync::Arc;

use crate::crypto::{BlockCipher, FileKeys, OpenJob, SealJob, NONCE_LEN, SESSION_NONCE_RANDOM_LEN, TAG_LEN};
use crate::format::header::{FileHeader, FILE_V2, FILE_V3};
use crate::format::offsets::{block_aad, BlockNo, BLOCK_AAD_LEN, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::format::session;

/// Which value of the final flag a block may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinalRule {
    /// The last block: final = 1, no hole.
    Last,
    /// Any earlier block: final = 0 (or 1 after a crash), hole allowed.
    Middle,
}

impl FinalRule {
    /// The rule for block `b` of a file whose last block is `file_last`.
    pub fn of(b: BlockNo, file_last: BlockNo) -> Self {
        if b == file_last {
            FinalRule::Last
        } else {
            FinalRule::Middle
        }
    }
}

/// Why one block did not open.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BlockFault {
    /// The sealed bytes are not as long as the block's plaintext plus nonce and tag.
    #[error("short block")]
    Short,
    /// The last block authenticates only as a middle block: the file was cut at a block boundary.
    #[error("last block is not sealed as final: file truncated at a block boundary")]
    NotFinal,
    /// The block does not authenticate.
    #[error("block authentication failed")]
    Auth,
}

/// One block of a batch sealed in place: its associated data and plaintext length.
#[derive(Debug, Clone, Copy)]
pub struct PendingBlock {
    /// The block's associated data ([`BlockCodec::aad`]).
    pub aad: [u8; BLOCK_AAD_LEN],
    /// Plaintext bytes of the block.
    pub plain_len: usize,
}

/// A buffer handed to [`BlockCodec::seal_batch`] is not laid out as its blocks say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayoutError;

/// A block opened whatever its final flag.
#[derive(Debug)]
pub struct OpenedBlock {
    /// Its plaintext.
    pub plain: Vec<u8>,
    /// The final flag it was sealed with.
    pub is_final: bool,
    /// Its nonce (versions 2 and 3 carry the write session: [`BlockCodec::session_of`]).
    pub nonce: [u8; NONCE_LEN],
}

/// Backing bytes of a block holding `plain_len` plaintext bytes.
pub const fn sealed_len(plain_len: usize) -> usize {
    NONCE_LEN + plain_len + TAG_LEN
}

/// The tag that ends a sealed buffer.
pub fn tail_tag(sealed: &[u8]) -> Option<[u8; TAG_LEN]> {
    sealed.last_chunk::<TAG_LEN>().copied()
}

/// The keys a codec seals with.
#[derive(Clone)]
enum CodecKeys<'k> {
    /// The content key every file of a layout-1 epoch shares (header versions 1 and 2).
    Shared(&'k BlockCipher),
    /// The file's own content key and session mask (header version 3).
    PerFile(Arc<FileKeys>),
}

/// The blocks of one file under its content key.
#[derive(Clone)]
pub struct BlockCodec<'k> {
    keys: CodecKeys<'k>,
    version: u16,
    file_id: [u8; 16],
}

impl std::fmt::Debug for BlockCodec<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockCodec")
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl<'k> BlockCodec<'k> {
    /// The codec of a file with header version `version` (1 or 2) and ID `file_id`, sealing
    /// with the shared content key `key`.
    pub fn new(key: &'k BlockCipher, version: u16, file_id: [u8; 16]) -> Self {
        BlockCodec {
            keys: CodecKeys::Shared(key),
            version,
            file_id,
        }
    }

    /// The codec of the file with header `h` (version 1 or 2), under the shared key `key`.
    pub fn for_header(key: &'k BlockCipher, h: &FileHeader) -> Self {
        Self::new(key, h.version, h.file_id)
    }

    /// The codec of the header-version-3 file with header `h`, under its own keys (derived
    /// from the epoch's root and `h.file_id`).
    pub fn per_file(keys: Arc<FileKeys>, h: &FileHeader) -> Self {
        debug_assert_eq!(h.version, FILE_V3);
        BlockCodec {
            keys: CodecKeys::PerFile(keys),
            version: h.version,
            file_id: h.file_id,
        }
    }

    fn key(&self) -> &BlockCipher {
        match &self.keys {
            CodecKeys::Shared(k) => k,
            CodecKeys::PerFile(k) => &k.content,
        }
    }

    /// The write session a block nonce carries: version 2 as it is, version 3 unmasked; 0 for
    /// version 1 (no sessions) and for an all-zero nonce (a hole, whatever the version: a
    /// drawn version-3 nonce is all zeros with probability 2^-96).
    pub fn session_of(&self, nonce: &[u8; NONCE_LEN]) -> u32 {
        if *nonce == [0; NONCE_LEN] {
            return 0;
        }
        match (&self.keys, self.version) {
            (CodecKeys::PerFile(k), _) => session::session_of(nonce) ^ k.mask.mask(random_part(nonce)),
            (CodecKeys::Shared(_), FILE_V2) => session::session_of(nonce),
            (CodecKeys::Shared(_), _) => 0,
        }
    }

    /// The nonce of a block sealed in write session `session`, from 16 fresh random bytes:
    /// version 1 uses them as they are; versions 2 and 3 keep the first 12 and put the session
    /// in the last 4 (version 3 XORed with the mask of the first 12).
    pub fn nonce_with_session(&self, random: [u8; NONCE_LEN], session: u32) -> [u8; NONCE_LEN] {
        let mut nonce = random;
        match (&self.keys, self.version) {
            (CodecKeys::PerFile(k), _) => {
                session::set_nonce_session(&mut nonce, session ^ k.mask.mask(random_part(&random)));
            }
            (CodecKeys::Shared(_), FILE_V2) => session::set_nonce_session(&mut nonce, session),
            (CodecKeys::Shared(_), _) => {}
        }
        nonce
    }

    /// Associated data of block `b`.
    pub fn aad(&self, b: BlockNo, is_final: bool) -> [u8; BLOCK_AAD_LEN] {
        block_aad(self.version, &self.file_id, b, is_final)
    }

    /// Appends `nonce | ciphertext | tag` of block `b` to `out`.
    pub fn seal_block(&self, nonce: &[u8; NONCE_LEN], b: BlockNo, is_final: bool, plain: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(nonce);
        out.extend_from_slice(plain);
        let tag = self
            .key()
            .seal(nonce, &self.aad(b, is_final), &mut out[start + NONCE_LEN..]);
        out.extend_from_slice(&tag);
    }

    /// Seals in place consecutive `nonce | plain | tag space` blocks, one per entry of
    /// `pending`, in one batch (the nonces are in place; the tags fill the space).
    pub fn seal_batch(&self, sealed: &mut [u8], pending: &[PendingBlock]) -> Result<(), LayoutError> {
        let mut jobs = Vec::with_capacity(pending.len());
        let mut rest = sealed;
        for p in pending {
            let (nonce, after) = std::mem::take(&mut rest)
                .split_first_chunk_mut::<NONCE_LEN>()
                .ok_or(LayoutError)?;
            let (buf, after) = after.split_at_mut_checked(p.plain_len).ok_or(LayoutError)?;
            let (tag, after) = after.split_first_chunk_mut::<TAG_LEN>().ok_or(LayoutError)?;
            jobs.push(SealJob {
                nonce: &*nonce,
                aad: &p.aad,
                buf,
                tag,
            });
            rest = after;
        }
        self.key().seal_many(&mut jobs);
        Ok(())
    }

    /// Opens one sealed block `b` into `out` (whose length is the block's plaintext length).
    /// On failure `out` is zeroed.
    pub fn open_block(&self, b: BlockNo, rule: FinalRule, sealed: &[u8], out: &mut [u8]) -> Result<(), BlockFault> {
        if sealed.len() != sealed_len(out.len()) {
            return Err(BlockFault::Short);
        }
        if rule == FinalRule::Middle && is_hole(sealed) {
            out.fill(0);
            return Ok(());
        }
        let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>().ok_or(BlockFault::Short)?;
        let (ct, tag) = rest.split_last_chunk::<TAG_LEN>().ok_or(BlockFault::Short)?;
        let try_flag = |is_final: bool, out: &mut [u8]| {
            out.copy_from_slice(ct);
            self.key().open(nonce, &self.aad(b, is_final), out, tag).is_ok()
        };
        let ok = match rule {
            FinalRule::Last => try_flag(true, out),
            FinalRule::Middle => try_flag(false, out) || try_flag(true, out),
        };
        if ok {
            return Ok(());
        }
        out.fill(0);
        let fault = if rule == FinalRule::Last && try_flag(false, out) {
            BlockFault::NotFinal
        } else {
            BlockFault::Auth
        };
        out.fill(0);
        Err(fault)
    }

    /// Opens block `b` whatever its final flag (final tried first); `None` when it does not
    /// authenticate or is not framed as a block.
    pub fn open_either_flag(&self, b: BlockNo, sealed: &[u8]) -> Option<OpenedBlock> {
        let (nonce, rest) = sealed.split_first_chunk::<NONCE_LEN>()?;
        let (ct, tag) = rest.split_last_chunk::<TAG_LEN>()?;
        let mut plain = ct.to_vec();
        for is_final in [true, false] {
            plain.copy_from_slice(ct);
            if self.key().open(nonce, &self.aad(b, is_final), &mut plain, tag).is_ok() {
                return Some(OpenedBlock {
                    plain,
                    is_final,
                    nonce: *nonce,
                });
            }
        }
        None
    }

    /// Fast path of a multi-block read: opens every block of `sealed` (blocks from `first`,
    /// of a file whose last block is `file_last`) that is not a hole in one batch, with the
    /// final flag its position implies, into `plain`. Returns which blocks opened; the others
    /// (holes, a crash-left flag, damage) go through [`open_block`](Self::open_block), which
    /// applies the rules and names the fault.
    pub fn open_batch(&self, first: BlockNo, file_last: BlockNo, sealed: &[u8], plain: &mut [u8]) -> Vec<bool> {
        let count = plain.len().div_ceil(PLAIN_BLOCK as usize);
        let aads: Vec<_> = (first.0..first.0 + count as u64)
            .map(|b| self.aad(BlockNo(b), BlockNo(b) == file_last))
            .collect();
        let mut index = Vec::with_capacity(count);
        let mut jobs = Vec::with_capacity(count);
        let blocks = sealed
            .chunks(CIPHER_BLOCK as usize)
            .zip(plain.chunks_mut(PLAIN_BLOCK as usize));
        for (i, ((blk, out), aad)) in blocks.zip(&aads).enumerate() {
            let may_be_hole = FinalRule::of(BlockNo(first.0 + i as u64), file_last) == FinalRule::Middle;
            let Some((nonce, rest)) = blk.split_first_chunk::<NONCE_LEN>() else {
                continue;
            };
            let Some((ct, tag)) = rest.split_last_chunk::<TAG_LEN>() else {
                continue;
            };
            if ct.len() != out.len() || (may_be_hole && is_hole(blk)) {
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
        for (i, r) in index.into_iter().zip(self.key().open_many(&mut jobs)) {
            opened[i] = r.is_ok();
        }
        opened
    }
}

/// The random first 12 bytes of a nonce that carries a session.
fn random_part(nonce: &[u8; NONCE_LEN]) -> &[u8; SESSION_NONCE_RANDOM_LEN] {
    let Some(random) = nonce.first_chunk::<SESSION_NONCE_RANDOM_LEN>() else {
        unreachable!("a nonce is longer than its random part");
    };
    random
}

/// Whether `sealed` is a full block of zeros: a hole (never written).
fn is_hole(sealed: &[u8]) -> bool {
    sealed.len() as u64 == CIPHER_BLOCK && sealed.iter().all(|&x| x == 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{FileKeyRoot, MasterKey};
    use crate::format::header::{FILE_V1, FILE_V2};

    fn key() -> BlockCipher {
        BlockCipher::new(&[7; 32])
    }

    fn sealed(c: &BlockCodec<'_>, b: u64, is_final: bool, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        c.seal_block(&[b as u8 ^ 0x5a; NONCE_LEN], BlockNo(b), is_final, plain, &mut out);
        out
    }

    #[test]
    fn framing_is_nonce_ciphertext_tag_over_the_block_aad() {
        let k = key();
        let c = BlockCodec::new(&k, FILE_V2, [3; 16]);
        let nonce = [9; NONCE_LEN];
        let mut out = vec![0xee];
        c.seal_block(&nonce, BlockNo(5), true, b"hello", &mut out);
        let expect = k.seal_with_nonce_to_vec(&nonce, &block_aad(FILE_V2, &[3; 16], BlockNo(5), true), b"hello");
        assert_eq!(out[0], 0xee, "appends");
        assert_eq!(out[1..], expect[..]);
        assert_eq!(out.len() - 1, sealed_len(5));
        assert_eq!(tail_tag(&out), expect.last_chunk::<TAG_LEN>().copied());
    }

    #[test]
    fn open_applies_the_final_flag_rules() {
        let k = key();
        let c = BlockCodec::new(&k, FILE_V1, [1; 16]);
        let mut out = [0u8; 4];
        let last = sealed(&c, 2, true, b"tail");
        let mid = sealed(&c, 2, false, b"tail");
        assert_eq!(c.open_block(BlockNo(2), FinalRule::Last, &last, &mut out), Ok(()));
        assert_eq!(&out, b"tail");
        // A middle block tolerates final = 1 (left by writes reaching the disk out of order).
        assert_eq!(c.open_block(BlockNo(2), FinalRule::Middle, &last, &mut out), Ok(()));
        assert_eq!(c.open_block(BlockNo(2), FinalRule::Middle, &mid, &mut out), Ok(()));
        assert_eq!(
            c.open_block(BlockNo(2), FinalRule::Last, &mid, &mut out),
            Err(BlockFault::NotFinal)
        );
        assert_eq!(out, [0; 4], "zeroed on failure");
        // Another block number, file or length.
        assert_eq!(
            c.open_block(BlockNo(3), FinalRule::Middle, &mid, &mut out),
            Err(BlockFault::Auth)
        );
        let other = BlockCodec::new(&k, FILE_V1, [2; 16]);
        assert_eq!(
            other.open_block(BlockNo(2), FinalRule::Middle, &mid, &mut out),
            Err(BlockFault::Auth)
        );
        assert_eq!(
            c.open_block(BlockNo(2), FinalRule::Middle, &mid, &mut [0u8; 3]),
            Err(BlockFault::Short)
        );
        for i in 0..last.len() {
            let mut bad = last.clone();
            bad[i] ^= 1;
            assert!(
                c.open_block(BlockNo(2), FinalRule::Last, &bad, &mut out).is_err(),
                "byte {i}"
            );
        }
        let either = c.open_either_flag(BlockNo(2), &mid).unwrap();
        assert_eq!((either.plain.as_slice(), either.is_final), (&b"tail"[..], false));
        assert!(c.open_either_flag(BlockNo(1), &mid).is_none());
    }

    #[test]
    fn a_zero_block_is_a_hole_only_before_the_last() {
        let k = key();
        let c = BlockCodec::new(&k, FILE_V1, [1; 16]);
        let zeros = vec![0u8; CIPHER_BLOCK as usize];
        let mut out = vec![1u8; PLAIN_BLOCK as usize];
        assert_eq!(c.open_block(BlockNo(0), FinalRule::Middle, &zeros, &mut out), Ok(()));
        assert!(out.iter().all(|&x| x == 0));
        assert_eq!(
            c.open_block(BlockNo(0), FinalRule::Last, &zeros, &mut out),
            Err(BlockFault::Auth)
        );
        // A short zero block is no hole.
        assert_eq!(
            c.open_block(BlockNo(0), FinalRule::Middle, &zeros[..40], &mut out[..8]),
            Err(BlockFault::Auth)
        );
    }

    #[test]
    fn batches_match_single_blocks() {
        let k = key();
        let c = BlockCodec::new(&k, FILE_V2, [4; 16]);
        let lens = [PLAIN_BLOCK as usize, PLAIN_BLOCK as usize, PLAIN_BLOCK as usize, 100];
        let plain: Vec<u8> = (0..lens.iter().sum::<usize>()).map(|i| (i % 253) as u8).collect();
        let file_last = BlockNo(13);
        let (mut batch, mut pending, mut single) = (Vec::new(), Vec::new(), Vec::new());
        let mut at = 0;
        for (i, &len) in lens.iter().enumerate() {
            let b = BlockNo(10 + i as u64);
            let nonce = [i as u8; NONCE_LEN];
            batch.extend_from_slice(&nonce);
            batch.extend_from_slice(&plain[at..at + len]);
            batch.extend_from_slice(&[0; TAG_LEN]);
            pending.push(PendingBlock {
                aad: c.aad(b, b == file_last),
                plain_len: len,
            });
            c.seal_block(&nonce, b, b == file_last, &plain[at..at + len], &mut single);
            at += len;
        }
        c.seal_batch(&mut batch, &pending).unwrap();
        assert_eq!(batch, single);
        assert_eq!(c.seal_batch(&mut batch[..100], &pending), Err(LayoutError));
        // One hole in the middle and one damaged block: the batch leaves both to open_block.
        let mut damaged = single.clone();
        let cb = CIPHER_BLOCK as usize;
        damaged[cb..2 * cb].fill(0);
        damaged[2 * cb + 20] ^= 1;
        let mut out = vec![0u8; plain.len()];
        let opened = c.open_batch(BlockNo(10), file_last, &damaged, &mut out);
        assert_eq!(opened, [true, false, false, true]);
        assert_eq!(out[..PLAIN_BLOCK as usize], plain[..PLAIN_BLOCK as usize]);
        assert_eq!(out[3 * PLAIN_BLOCK as usize..], plain[3 * PLAIN_BLOCK as usize..]);
        let mut out = vec![0u8; plain.len()];
        assert_eq!(c.open_batch(BlockNo(10), file_last, &single, &mut out), [true; 4]);
        assert_eq!(out, plain);
    }

    #[test]
    fn sessions_are_plain_in_v2_masked_in_v3_and_absent_in_v1() {
        let k = key();
        let random = [0x11; NONCE_LEN];
        let v1 = BlockCodec::new(&k, FILE_V1, [1; 16]);
        assert_eq!(v1.nonce_with_session(random, 7), random);
        assert_eq!(v1.session_of(&random), 0);
        let v2 = BlockCodec::new(&k, FILE_V2, [1; 16]);
        let n2 = v2.nonce_with_session(random, 7);
        assert_eq!(n2[..12], random[..12]);
        assert_eq!(n2[12..], [0, 0, 0, 7]);
        assert_eq!(v2.session_of(&n2), 7);
        let h = FileHeader {
            version: FILE_V3,
            file_id: [0xe0; 16],
        };
        let keys = Arc::new(FileKeyRoot::derive(&MasterKey::from_bytes([2; 32])).file_keys(&h.file_id));
        let mask = keys.mask.mask(&[0x11; 12]);
        let v3 = BlockCodec::per_file(keys, &h);
        for s in [1, 7, u32::MAX] {
            let n3 = v3.nonce_with_session(random, s);
            assert_eq!(n3[..12], random[..12]);
            assert_eq!(n3[12..], (s ^ mask).to_be_bytes());
            assert_eq!(v3.session_of(&n3), s);
        }
        // A hole's nonce is all zeros: session 0 in every version.
        for c in [&v1, &v2, &v3] {
            assert_eq!(c.session_of(&[0; NONCE_LEN]), 0);
        }
        // Sealed under the file's own key, not the shared one.
        let mut out = Vec::new();
        v3.seal_block(&random, BlockNo(0), true, b"x", &mut out);
        let mut plain = [0u8; 1];
        assert_eq!(v3.open_block(BlockNo(0), FinalRule::Last, &out, &mut plain), Ok(()));
        let shared = BlockCodec::new(&k, FILE_V3, h.file_id);
        assert_eq!(
            shared.open_block(BlockNo(0), FinalRule::Last, &out, &mut plain),
            Err(BlockFault::Auth)
        );
    }
}
