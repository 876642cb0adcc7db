//! Write sessions of version-2 files (FORMAT.md §5.8), through the library: which session each
//! write seals with, that the last block always carries the newest, that a handle's writes
//! continue one session and fsync / another handle / time start a new one, and what fsck and
//! `--repair` make of blocks newer than the last block. Each case runs for header version 3
//! too (FORMAT.md §15.3: the same rules, the session masked in the nonce).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::support::epochs;
use coffer::format::epochs::EpochId;
use coffer::format::header::{FILE_V1, FILE_V2, FILE_V3};
use coffer::format::offsets::{block_count, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use coffer::format::session::session_of;
use coffer::vault::{CryptFile, VaultError, VaultKeys};

const BLOCK: usize = PLAIN_BLOCK as usize;

/// A layout-1 epoch (header versions 1 and 2) and a newest, layout-3 one (version 3).
fn keys() -> Arc<VaultKeys> {
    Arc::new(
        VaultKeys::from_epochs(vec![
            epochs::layout1([0x33; 32], EpochId([1; 4])),
            epochs::layout3([0x33; 32], EpochId([0x33; 4])),
        ])
        .unwrap(),
    )
}

fn handle(dir: &tempfile::TempDir, keys: &Arc<VaultKeys>, version: u16) -> CryptFile {
    CryptFile::new(crate::support::backing_file(dir), keys.clone(), "f".into(), version)
}

/// The write session in each block's nonce, read through the codec.
fn sessions(dir: &tempfile::TempDir) -> Vec<u32> {
    let f = handle(dir, &keys(), FILE_V1);
    (0..block_count(f.plain_len().unwrap()))
        .map(|b| f.block_session(BlockNo(b)).unwrap())
        .collect()
}

/// Nonce bytes 12..16 of each block, as stored (the session of version 2).
fn raw_sessions(dir: &tempfile::TempDir) -> Vec<u32> {
    let f = crate::support::backing_file(dir);
    let len = f.metadata().unwrap().len();
    let plain = coffer::vault::plain_size_for(len);
    (0..block_count(plain))
        .map(|b| {
            let mut nonce = [0u8; 16];
            f.read_exact_at(&mut nonce, BlockNo(b).cipher_off()).unwrap();
            session_of(&nonce)
        })
        .collect()
}

fn read_all(cf: &CryptFile) -> Result<Vec<u8>, VaultError> {
    let mut buf = vec![0u8; cf.plain_len().unwrap() as usize];
    let n = cf.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

#[test]
fn sessions_follow_handles_fsync_and_the_last_block_carries_the_newest() {
    for version in [FILE_V2, FILE_V3] {
        sessions_follow_handles_fsync_and_the_last_block_carries_the_newest_in(version);
    }
}

fn sessions_follow_handles_fsync_and_the_last_block_carries_the_newest_in(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let a = handle(&dir, &keys, version);
    a.write_at(&vec![1u8; 8 * BLOCK], 0).unwrap();
    assert_eq!(sessions(&dir), vec![1; 8], "a new file starts at session 1");
    // The same handle, at once: the same session, the last block untouched.
    a.write_at(&[2u8; 10], 2 * BLOCK as u64).unwrap();
    assert_eq!(sessions(&dir), vec![1; 8]);
    // After fsync: a new session, the last block resealed with it first.
    a.sync(true).unwrap();
    a.write_at(&[3u8; 10], 3 * BLOCK as u64).unwrap();
    assert_eq!(sessions(&dir), vec![1, 1, 1, 2, 1, 1, 1, 2]);
    // Another handle: a new session again; then the first handle's next write sees the file
    // changed under it and starts a third.
    let b = handle(&dir, &keys, version);
    b.write_at(&[4u8; 10], 0).unwrap();
    assert_eq!(sessions(&dir), vec![3, 1, 1, 2, 1, 1, 1, 3]);
    a.write_at(&[5u8; 10], 5 * BLOCK as u64).unwrap();
    assert_eq!(sessions(&dir), vec![3, 1, 1, 2, 1, 4, 1, 4]);
    // Growth and truncation seal the new last block with the handle's session.
    b.write_at(&[6u8; 10], 9 * BLOCK as u64).unwrap();
    let s = sessions(&dir);
    assert_eq!(s.len(), 10);
    assert_eq!(s[7], 5, "old last block resealed as a middle block");
    assert_eq!(s[8], 0, "a hole");
    assert_eq!(s[9], 5);
    b.set_len(4 * BLOCK as u64 + 7).unwrap();
    assert_eq!(sessions(&dir), vec![3, 1, 1, 2, 5]);
    // Every state above reads back; the content is the model's.
    let mut want = vec![1u8; 8 * BLOCK];
    want[2 * BLOCK..2 * BLOCK + 10].fill(2);
    want[3 * BLOCK..3 * BLOCK + 10].fill(3);
    want[..10].fill(4);
    want.truncate(4 * BLOCK + 7);
    assert_eq!(read_all(&a).unwrap(), want);
    assert!(a.verify_blocks().unwrap().bad.is_empty());
    assert!(a.verify_blocks().unwrap().ahead.is_empty());
}

#[test]
fn a_session_ends_after_a_second() {
    for version in [FILE_V2, FILE_V3] {
        a_session_ends_after_a_second_in(version);
    }
}

fn a_session_ends_after_a_second_in(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let a = handle(&dir, &keys, version);
    a.write_at(&vec![1u8; 3 * BLOCK], 0).unwrap();
    std::thread::sleep(coffer::vault::SESSION_MAX_AGE);
    a.write_at(&[2u8; 1], 0).unwrap();
    assert_eq!(sessions(&dir), vec![2, 1, 2]);
}

#[test]
fn version_1_files_keep_random_nonces() {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let a = handle(&dir, &keys, FILE_V1);
    a.write_at(&vec![1u8; 3 * BLOCK], 0).unwrap();
    let mut header = [0u8; 2];
    crate::support::backing_file(&dir)
        .read_exact_at(&mut header, 0)
        .unwrap();
    assert_eq!(header, [0, 1]);
    // 16 random bytes: the session field is not a small counter (odds of a false failure 3/2^32).
    assert!(raw_sessions(&dir).iter().all(|&s| s > 1), "{:?}", raw_sessions(&dir));
    assert_eq!(sessions(&dir), vec![0; 3], "the codec reads no session from them");
    a.sync(false).unwrap();
    a.write_at(&[2u8; 1], 0).unwrap();
    let mut want = vec![1u8; 3 * BLOCK];
    want[0] = 2;
    assert_eq!(read_all(&a).unwrap(), want);
}

/// A block newer than the last block (the state a power loss can leave: a write kept, its
/// session's resealed last block lost): reads of it fail, fsck names it, --repair reseals the
/// last block and the file reads again.
#[test]
fn blocks_ahead_of_the_last_block_are_reported_and_repaired() {
    for version in [FILE_V2, FILE_V3] {
        blocks_ahead_of_the_last_block_are_reported_and_repaired_in(version);
    }
}

fn blocks_ahead_of_the_last_block_are_reported_and_repaired_in(version: u16) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let a = handle(&dir, &keys, version);
    a.write_at(&vec![1u8; 4 * BLOCK + 100], 0).unwrap();
    let last_off = BlockNo(4).cipher_off();
    let mut old_last = vec![0u8; 100 + 32];
    crate::support::backing_file(&dir)
        .read_exact_at(&mut old_last, last_off)
        .unwrap();
    a.sync(true).unwrap();
    a.write_at(&[2u8; 10], BLOCK as u64).unwrap();
    assert_eq!(sessions(&dir), vec![1, 2, 1, 1, 2]);
    // Put back the session-1 last block.
    crate::support::backing_file(&dir)
        .write_all_at(&old_last, last_off)
        .unwrap();
    let r = handle(&dir, &keys, version);
    let t0 = std::time::Instant::now();
    match read_all(&r) {
        Err(VaultError::Corrupt { block, .. }) => assert_eq!(block, Some(1)),
        other => panic!("expected block 1 to be refused, got {other:?}"),
    }
    assert!(t0.elapsed() < std::time::Duration::from_millis(2000));
    // Reads that do not reach block 1 still work, and so does the last block alone.
    let mut tail = vec![0u8; 2 * BLOCK + 100];
    assert_eq!(r.read_at(&mut tail, 2 * BLOCK as u64).unwrap(), tail.len());
    assert!(tail.iter().all(|&b| b == 1));
    let check = r.verify_blocks().unwrap();
    assert!(check.bad.is_empty());
    assert_eq!(check.ahead, vec![1]);
    assert_eq!(r.verify_all().unwrap(), vec![1]);
    // A new write session cannot start from a last block that blocks ran ahead of? It can: the
    // next session is above the last block's, and may equal the block's; the file then reads
    // again only after --repair, which is what fsck is for.
    let what = r.repair_ahead().unwrap().expect("repaired");
    assert!(what.contains("write session 2"), "{what}");
    assert!(r.verify_blocks().unwrap().ahead.is_empty());
    let mut want = vec![1u8; 4 * BLOCK + 100];
    want[BLOCK..BLOCK + 10].fill(2);
    assert_eq!(read_all(&r).unwrap(), want);
    assert_eq!(r.repair_ahead().unwrap(), None, "nothing left to repair");
}

/// Two versions of a 6-block file (one file ID; bytes 1 in session 1, bytes 2 in session 2);
/// the backing file holds the older one and a reading handle has learnt its last block.
/// Returns the directory, the newer version's backing bytes, the backing file and the reader.
fn two_versions_on_the_older(version: u16) -> (tempfile::TempDir, Vec<u8>, File, CryptFile) {
    let dir = tempfile::tempdir().unwrap();
    let keys = keys();
    let w = handle(&dir, &keys, version);
    w.write_at(&vec![1u8; 6 * BLOCK], 0).unwrap();
    let v1 = std::fs::read(dir.path().join("f")).unwrap();
    w.sync(true).unwrap();
    w.write_at(&vec![2u8; 6 * BLOCK], 0).unwrap();
    let v2 = std::fs::read(dir.path().join("f")).unwrap();
    assert_eq!(v1[..18], v2[..18], "one file ID");
    let f = crate::support::backing_file(&dir);
    f.write_all_at(&v1, 0).unwrap();
    let r = handle(&dir, &keys, version);
    assert_eq!(read_all(&r).unwrap(), vec![1u8; 6 * BLOCK], "r learns session 1");
    (dir, v2, f, r)
}

/// A mix of two versions of one file (the first blocks of the newer, the rest and the last
/// block of the older, as an ascending in-place rewrite leaves it part way) never reads as
/// bytes; once the last block arrives the file reads as the newer version.
#[test]
fn an_in_place_rewrite_part_way_is_refused_until_the_last_block_arrives() {
    for version in [FILE_V2, FILE_V3] {
        an_in_place_rewrite_part_way_is_refused_until_the_last_block_arrives_in(version);
    }
}

fn an_in_place_rewrite_part_way_is_refused_until_the_last_block_arrives_in(version: u16) {
    let (_dir, v2, f, r) = two_versions_on_the_older(version);
    // Ascending rewrite, stopped after 3 blocks and a bit.
    let cut = 18 + 3 * CIPHER_BLOCK as usize + 1000;
    f.write_all_at(&v2[..cut], 0).unwrap();
    let mut buf = vec![0u8; 6 * BLOCK];
    assert!(r.read_at(&mut buf, 0).is_err(), "mixed read returned bytes");
    let mut first = vec![0u8; 2 * BLOCK];
    assert!(
        r.read_at(&mut first, 0).is_err(),
        "new blocks are newer than the old last block"
    );
    let mut old = vec![0u8; 2 * BLOCK];
    assert_eq!(r.read_at(&mut old, 4 * BLOCK as u64).unwrap(), old.len());
    assert_eq!(old, vec![1u8; 2 * BLOCK]);
    f.write_all_at(&v2[cut..], cut as u64).unwrap();
    assert_eq!(read_all(&r).unwrap(), vec![2u8; 6 * BLOCK]);
}

/// A rewrite that has reached the last block and is writing it (the last block torn): a read
/// of the blocks before it, by a handle that knew the old last block, returns the new blocks at
/// once (every block before a last block being written is new), not after a wait and not EIO.
#[test]
fn a_rewrite_writing_the_last_block_reads_the_new_blocks_before_it() {
    for version in [FILE_V2, FILE_V3] {
        a_rewrite_writing_the_last_block_reads_the_new_blocks_before_it_in(version);
    }
}

fn a_rewrite_writing_the_last_block_reads_the_new_blocks_before_it_in(version: u16) {
    let (_dir, v2, f, r) = two_versions_on_the_older(version);
    // Everything up to the middle of the last block is new.
    let cut = 18 + 5 * CIPHER_BLOCK as usize + 2000;
    f.write_all_at(&v2[..cut], 0).unwrap();
    let t0 = std::time::Instant::now();
    let mut head = vec![0u8; 5 * BLOCK];
    assert_eq!(r.read_at(&mut head, 0).unwrap(), head.len());
    assert_eq!(head, vec![2u8; 5 * BLOCK]);
    assert!(
        t0.elapsed() < std::time::Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
    let mut last = vec![0u8; BLOCK];
    assert!(
        r.read_at(&mut last, 5 * BLOCK as u64).is_err(),
        "the torn last block itself fails"
    );
}

/// Version 3 masks the sessions: written in several sessions, no block stores its session in
/// nonce bytes 12..16, and the codec reads each back; version 2 stores them in clear.
#[test]
fn version_3_nonces_carry_no_order() {
    for version in [FILE_V2, FILE_V3] {
        let dir = tempfile::tempdir().unwrap();
        let keys = keys();
        let a = handle(&dir, &keys, version);
        a.write_at(&vec![1u8; 5 * BLOCK], 0).unwrap();
        for b in [3u64, 0, 2] {
            a.sync(true).unwrap();
            a.write_at(&[2u8; 3], b * BLOCK as u64).unwrap();
        }
        let want = vec![3, 1, 4, 2, 4];
        assert_eq!(sessions(&dir), want, "v{version}");
        let raw = raw_sessions(&dir);
        if version == FILE_V2 {
            assert_eq!(raw, want);
        } else {
            // Odds of a false failure: 5/2^32.
            for (b, (&r, &s)) in raw.iter().zip(&want).enumerate() {
                assert_ne!(r, s, "block {b}: session {s} stored in clear");
            }
        }
    }
}
