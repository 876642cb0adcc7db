//! Block and offset conversions between plaintext and backing (cipher) files. Pure math.
//!
//! Backing file: `header (18) | block 0 | block 1 | ...`; each block is
//! `nonce (16) | ciphertext (1..=4096) | tag (16)`. Only the last block may be short.
//! An empty plaintext file is a 0-byte backing file (no header) or a header alone.

use super::header::HEADER_LEN;
use super::FormatError;

/// Plaintext bytes per block.
pub const PLAIN_BLOCK: u64 = 4096;
/// Per-block overhead: nonce (16) + tag (16).
pub const BLOCK_OVERHEAD: u64 = 32;
/// Backing bytes of one full block.
pub const CIPHER_BLOCK: u64 = PLAIN_BLOCK + BLOCK_OVERHEAD;
/// Largest plaintext size coffer accepts (keeps every backing offset below i64::MAX).
pub const MAX_PLAIN_SIZE: u64 = (i64::MAX as u64 / CIPHER_BLOCK - 1) * PLAIN_BLOCK;

/// A block number (0-based) within one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BlockNo(pub u64);

impl BlockNo {
    /// Backing offset where this block starts.
    pub fn cipher_off(self) -> u64 {
        HEADER_LEN as u64 + self.0 * CIPHER_BLOCK
    }

    /// Plaintext offset where this block starts.
    pub fn plain_off(self) -> u64 {
        self.0 * PLAIN_BLOCK
    }
}

/// The block holding plaintext offset `plain_off`.
pub fn block_of(plain_off: u64) -> BlockNo {
    BlockNo(plain_off / PLAIN_BLOCK)
}

/// Plaintext size of a backing file of `cipher_size` bytes.
pub fn plain_size(cipher_size: u64) -> Result<u64, FormatError> {
    let header = HEADER_LEN as u64;
    if cipher_size == 0 {
        return Ok(0);
    }
    if cipher_size < header {
        return Err(FormatError::BadCipherSize(cipher_size));
    }
    let body = cipher_size - header;
    let full = body / CIPHER_BLOCK;
    let rest = body % CIPHER_BLOCK;
    match rest {
        0 => Ok(full * PLAIN_BLOCK),
        r if r <= BLOCK_OVERHEAD => Err(FormatError::BadCipherSize(cipher_size)),
        r => Ok(full * PLAIN_BLOCK + r - BLOCK_OVERHEAD),
    }
}

/// Backing size of a file holding `plain_size` bytes (with a header; 0 maps to the header alone).
pub fn cipher_size(plain_size: u64) -> u64 {
    let full = plain_size / PLAIN_BLOCK;
    let rest = plain_size % PLAIN_BLOCK;
    let tail = if rest == 0 { 0 } else { rest + BLOCK_OVERHEAD };
    HEADER_LEN as u64 + full * CIPHER_BLOCK + tail
}

/// Number of blocks a file of `plain_size` bytes has.
pub fn block_count(plain_size: u64) -> u64 {
    plain_size.div_ceil(PLAIN_BLOCK)
}

/// Plaintext length of block `b` in a file of `plain_size` bytes (0 if past the end).
pub fn block_plain_len(b: BlockNo, plain_size: u64) -> u64 {
    plain_size.saturating_sub(b.plain_off()).min(PLAIN_BLOCK)
}

/// The first block whose backing bytes start at or after backing offset `cipher_off`
/// (used to map SEEK_DATA / SEEK_HOLE answers back to plaintext).
pub fn block_at_cipher_off(cipher_off: u64) -> BlockNo {
    let header = HEADER_LEN as u64;
    BlockNo(cipher_off.saturating_sub(header) / CIPHER_BLOCK)
}

/// Length of a block's associated data.
pub const BLOCK_AAD_LEN: usize = 2 + 16 + 8 + 1; // header version u16 BE | file id [16] | block no u64 BE | final u8

/// Associated data of block `b`: `header version u16 BE | file id [16] | block no u64 BE | final u8`.
pub fn block_aad(version: u16, file_id: &[u8; 16], b: BlockNo, is_final: bool) -> [u8; BLOCK_AAD_LEN] {
    let mut aad = [0u8; BLOCK_AAD_LEN];
    aad[0..2].copy_from_slice(&version.to_be_bytes());
    aad[2..18].copy_from_slice(file_id);
    aad[18..26].copy_from_slice(&b.0.to_be_bytes());
    aad[26] = u8::from(is_final);
    aad
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worked_sizes_from_format_md() {
        assert_eq!(cipher_size(0), 18);
        assert_eq!(cipher_size(1), 51);
        assert_eq!(cipher_size(4096), 18 + 4128);
        assert_eq!(cipher_size(4097), 18 + 4128 + 33);
        assert_eq!(cipher_size(1 << 20), 18 + 256 * 4128);
        assert_eq!(plain_size(0).unwrap(), 0);
    }

    #[test]
    fn round_trip_every_size_to_20000() {
        for p in 0..=20000u64 {
            let c = cipher_size(p);
            assert_eq!(plain_size(c).unwrap(), p, "plain {p}");
            assert_eq!(block_count(p), (c - 18).div_ceil(CIPHER_BLOCK), "plain {p}");
            let last_len: u64 = (0..block_count(p)).map(|b| block_plain_len(BlockNo(b), p)).sum();
            assert_eq!(last_len, p);
        }
    }

    #[test]
    fn around_block_edges_and_huge_sizes() {
        for k in [
            1u64,
            2,
            255,
            256,
            1 << 20,
            (1 << 20) + 1,
            1 << 30,
            MAX_PLAIN_SIZE / PLAIN_BLOCK - 1,
        ] {
            for d in [-2i64, -1, 0, 1, 2] {
                let p = (k * PLAIN_BLOCK).wrapping_add_signed(d);
                assert_eq!(plain_size(cipher_size(p)).unwrap(), p, "{p}");
            }
        }
        // 5 GiB is block 1310720, above 2^20.
        assert_eq!(block_of(5 << 30), BlockNo(1_310_720));
        assert_eq!(BlockNo(1_310_720).cipher_off(), 18 + 1_310_720 * 4128);
    }

    #[test]
    fn impossible_sizes_are_errors() {
        let mut bad = 0;
        for c in 0..=30000u64 {
            match plain_size(c) {
                Ok(p) if c == 0 => assert_eq!(p, 0),
                Ok(p) => assert_eq!(cipher_size(p), c, "backing {c}"),
                Err(_) => bad += 1,
            }
        }
        // 1..=17 (short header) and 1..=32 bytes of overhead past each block boundary.
        assert!(bad > 17);
        for c in 1..18 {
            assert!(plain_size(c).is_err());
        }
        for r in 1..=32 {
            assert!(plain_size(18 + r).is_err());
            assert!(plain_size(18 + CIPHER_BLOCK + r).is_err());
        }
    }

    #[test]
    fn aad_layout() {
        let aad = block_aad(1, &[0xaa; 16], BlockNo(0x0102030405060708), true);
        assert_eq!(&aad[0..2], &[0, 1]);
        assert_eq!(&aad[2..18], &[0xaa; 16]);
        assert_eq!(&aad[18..26], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(aad[26], 1);
    }
}
