//! CryptFile's batched block sealing and opening (write_at / read_at over many blocks): every
//! block on disk opens on its own with the AAD its position implies, and the batch read falls
//! back correctly for holes, a crash-left final flag in the middle, and damaged blocks.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use coffer::crypto::{KeySet, MasterKey};
use coffer::format::header::{FileHeader, FILE_V2, HEADER_LEN};
use coffer::format::offsets::{block_aad, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use coffer::vault::{CryptFile, VaultError, VaultKeys};

const BLOCK: usize = PLAIN_BLOCK as usize;
const CBLOCK: usize = CIPHER_BLOCK as usize;

fn keys() -> Arc<VaultKeys> {
    Arc::new(VaultKeys::single(KeySet::derive(
        &MasterKey::from_bytes([0x5a; 32]),
        false,
    )))
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// A version-2 nonce: `fill` in the 12 random bytes, then write session `s`.
fn session_nonce(fill: u8, s: u32) -> [u8; 16] {
    let mut n = [fill; 16];
    n[12..].copy_from_slice(&s.to_be_bytes());
    n
}

fn read_all(cf: &CryptFile) -> Vec<u8> {
    let mut buf = vec![0u8; cf.plain_len().unwrap() as usize];
    assert_eq!(cf.read_at(&mut buf, 0).unwrap(), buf.len());
    buf
}

/// Each backing block opens alone with BlockCipher::open and AAD (file id, block, final).
fn check_blocks_independently(file: &File, keys: &VaultKeys, plain: &[u8]) {
    let keys = &keys.newest().set;
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0).unwrap();
    let h = FileHeader::decode(&header).unwrap();
    assert_eq!(h.version, FILE_V2);
    let count = plain.len().div_ceil(BLOCK);
    for b in 0..count {
        let len = BLOCK.min(plain.len() - b * BLOCK);
        let mut sealed = vec![0u8; len + 32];
        file.read_exact_at(&mut sealed, BlockNo(b as u64).cipher_off()).unwrap();
        let nonce: [u8; 16] = sealed[..16].try_into().unwrap();
        let tag: [u8; 16] = sealed[16 + len..].try_into().unwrap();
        let mut buf = sealed[16..16 + len].to_vec();
        let aad = block_aad(h.version, &h.file_id, BlockNo(b as u64), b + 1 == count);
        keys.content
            .shared()
            .unwrap()
            .open(&nonce, &aad, &mut buf, &tag)
            .unwrap();
        assert_eq!(buf, &plain[b * BLOCK..b * BLOCK + len], "block {b}");
    }
}

#[test]
fn large_write_and_read_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let cf = CryptFile::new(crate::support::backing_file(&dir), keys.clone(), "f".into(), FILE_V2);
    // 1 MiB + 100 bytes in one write: 257 blocks, the last one short.
    let data = pattern(1, 256 * BLOCK + 100);
    cf.write_at(&data, 0).unwrap();
    assert_eq!(read_all(&cf), data);
    check_blocks_independently(cf.backing(), &keys, &data);

    // Unaligned reads of every shape across the batch.
    for (off, len) in [
        (1, 9000),
        (4095, 2),
        (4096 * 7 + 5, 4096 * 65),
        (0, 256 * BLOCK + 100),
        (100, 3),
    ] {
        let mut buf = vec![0u8; len];
        let n = cf.read_at(&mut buf, off as u64).unwrap();
        let end = (off + len).min(data.len());
        assert_eq!(n, end - off);
        assert_eq!(&buf[..n], &data[off..end], "read at {off} len {len}");
    }

    // An unaligned overwrite in the middle (read-modify-write at both ends) and growth.
    let mut model = data.clone();
    let patch = pattern(9, 50 * BLOCK + 77);
    let off = 3 * BLOCK + 1000;
    cf.write_at(&patch, off as u64).unwrap();
    model[off..off + patch.len()].copy_from_slice(&patch);
    let tail = pattern(4, 3 * BLOCK);
    cf.write_at(&tail, model.len() as u64 + 10).unwrap();
    model.resize(model.len() + 10, 0);
    model.extend_from_slice(&tail);
    assert_eq!(read_all(&cf), model);
    check_blocks_independently(cf.backing(), &keys, &model);
}

#[test]
fn batch_read_over_holes() {
    let dir = tempfile::tempdir().unwrap();
    let cf = CryptFile::new(crate::support::backing_file(&dir), keys(), "f".into(), FILE_V2);
    let a = pattern(2, BLOCK);
    let b = pattern(3, BLOCK + 10);
    cf.write_at(&a, 0).unwrap();
    cf.write_at(&b, 20 * BLOCK as u64).unwrap();
    let mut model = a.clone();
    model.resize(20 * BLOCK, 0);
    model.extend_from_slice(&b);
    assert_eq!(read_all(&cf), model);
}

/// A middle block sealed with final = 1 (left by a crash while growing) is accepted inside a
/// batch read; a damaged block fails the whole read with its block number.
#[test]
fn batch_read_fallbacks_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let cf = CryptFile::new(crate::support::backing_file(&dir), keys.clone(), "f".into(), FILE_V2);
    let data = pattern(5, 10 * BLOCK);
    cf.write_at(&data, 0).unwrap();
    let file = cf.backing();
    let mut header = [0u8; HEADER_LEN];
    file.read_exact_at(&mut header, 0).unwrap();
    let h = FileHeader::decode(&header).unwrap();
    assert_eq!(h.version, FILE_V2);

    // Reseal block 4 as final = 1.
    let aad = block_aad(h.version, &h.file_id, BlockNo(4), true);
    let sealed = keys.newest().set.content.shared().unwrap().seal_with_nonce_to_vec(
        &session_nonce(7, 1),
        &aad,
        &data[4 * BLOCK..5 * BLOCK],
    );
    file.write_all_at(&sealed, BlockNo(4).cipher_off()).unwrap();
    assert_eq!(read_all(&cf), data);

    // Damage one byte of block 6's ciphertext.
    let pos = BlockNo(6).cipher_off() + 100;
    let mut byte = [0u8; 1];
    file.read_exact_at(&mut byte, pos).unwrap();
    file.write_all_at(&[byte[0] ^ 0x20], pos).unwrap();
    let mut buf = vec![0u8; data.len()];
    match cf.read_at(&mut buf, 0) {
        Err(VaultError::Corrupt { block, .. }) => assert_eq!(block, Some(6)),
        other => panic!("expected a corrupt block 6, got {other:?}"),
    }
    // Reads that do not reach block 6 still work.
    let mut head = vec![0u8; 6 * BLOCK];
    assert_eq!(cf.read_at(&mut head, 0).unwrap(), head.len());
    assert_eq!(head, &data[..6 * BLOCK]);
    let mut tail = vec![0u8; 3 * BLOCK];
    assert_eq!(cf.read_at(&mut tail, 7 * BLOCK as u64).unwrap(), tail.len());
    assert_eq!(tail, &data[7 * BLOCK..]);

    // The last block sealed as non-final (truncation at a block boundary) is refused.
    let aad = block_aad(h.version, &h.file_id, BlockNo(9), false);
    let sealed = keys.newest().set.content.shared().unwrap().seal_with_nonce_to_vec(
        &session_nonce(8, 1),
        &aad,
        &data[9 * BLOCK..],
    );
    file.write_all_at(&sealed, BlockNo(9).cipher_off()).unwrap();
    let mut tail = vec![0u8; 2 * BLOCK];
    match cf.read_at(&mut tail, 8 * BLOCK as u64) {
        Err(VaultError::Corrupt { block, .. }) => assert_eq!(block, Some(9)),
        other => panic!("expected a corrupt block 9, got {other:?}"),
    }
    assert_eq!(file.metadata().unwrap().len(), HEADER_LEN as u64 + 10 * CBLOCK as u64);
}
