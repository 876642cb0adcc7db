//! Fault cases of encrypted file contents on in-memory storage: torn writes, a full disk, a
//! failed reservation, an in-place rewriter racing a read, and every state a kill -9 can leave
//! between (and inside) the writes of one operation.

use std::sync::Arc;

use crate::crypto::{KeySet, MasterKey, NONCE_LEN};
use crate::format::epochs::{EpochId, Layout};
use crate::format::header::{FileHeader, FILE_V1, FILE_V2, FILE_V3, HEADER_LEN};
use crate::format::offsets::{block_count, cipher_size, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use crate::format::session;
use crate::vault::{Damage, EpochKeys, VaultError, VaultKeys};

use super::mem_storage::{MemOp, MemStorage};
use super::CryptFile;

const B: usize = PLAIN_BLOCK as usize;

/// The layout-3 epoch that seals version-3 files in these tests.
const EPOCH: EpochId = EpochId([0xe0, 0xe1, 0xe2, 0xe3]);

/// A vault in the middle of a rekey: a layout-1 epoch (files of header versions 1 and 2) and
/// the newest, layout-3 epoch [`EPOCH`] (version 3).
fn keys() -> Arc<VaultKeys> {
    let master = MasterKey::from_bytes([3; 32]);
    let epochs = vec![
        EpochKeys {
            id: Some(EpochId([1; 4])),
            layout: Layout::V1,
            set: KeySet::derive(&master, false),
        },
        EpochKeys {
            id: Some(EPOCH),
            layout: Layout::V3,
            set: KeySet::derive_v3(&master),
        },
    ];
    Arc::new(VaultKeys::from_epochs(epochs).unwrap())
}

fn on(bytes: Vec<u8>, version: u16) -> CryptFile<MemStorage> {
    CryptFile::with_storage(MemStorage::new(bytes), keys(), "f".into(), version)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

/// A file of `version` holding `plain`.
fn file_with(version: u16, plain: &[u8]) -> CryptFile<MemStorage> {
    let f = on(Vec::new(), version);
    f.write_at(plain, 0).unwrap();
    f
}

fn read_all(f: &CryptFile<impl super::Storage>) -> Result<Vec<u8>, VaultError> {
    let mut buf = vec![0u8; f.plain_len()? as usize + 10];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

/// The plaintext of block `b` of `plain` (empty past the end).
fn block_of(plain: &[u8], b: usize) -> &[u8] {
    plain.get(b * B..((b + 1) * B).min(plain.len())).unwrap_or(&[])
}

/// The session in the nonce of block `b` of a backing file, read through the codec.
fn session_at(bytes: &[u8], b: u64) -> u32 {
    on(bytes.to_vec(), FILE_V1).block_session(BlockNo(b)).unwrap()
}

/// Nonce bytes 12..16 of block `b` of a backing file, as stored.
fn raw_session_at(bytes: &[u8], b: u64) -> u32 {
    let off = BlockNo(b).cipher_off() as usize;
    session::session_of(bytes[off..off + NONCE_LEN].try_into().unwrap())
}

#[test]
fn writes_read_back_in_the_documented_sizes() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        let f = on(Vec::new(), version);
        let mut model = Vec::new();
        for (off, len, seed) in [
            (0, 10, 1),
            (5, 3 * B, 2),
            (2 * B + 7, 100, 3),
            (6 * B + 1, B, 4),
            (B - 1, 2, 5),
        ] {
            let data = pattern(len, seed);
            f.write_at(&data, off as u64).unwrap();
            if model.len() < off + len {
                model.resize(off + len, 0);
            }
            model[off..off + len].copy_from_slice(&data);
            assert_eq!(read_all(&f).unwrap(), model, "v{version} after {off}+{len}");
            assert_eq!(f.storage().bytes().len() as u64, cipher_size(model.len() as u64));
        }
        f.set_len(3 * B as u64 + 5).unwrap();
        model.truncate(3 * B + 5);
        assert_eq!(read_all(&f).unwrap(), model);
        assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new());
    }
}

#[test]
fn a_handle_keeps_its_session_until_an_fsync() {
    for version in [FILE_V2, FILE_V3] {
        a_handle_keeps_its_session_until_an_fsync_in(version);
    }
}

fn a_handle_keeps_its_session_until_an_fsync_in(version: u16) {
    let f = file_with(version, &pattern(3 * B, 1));
    let first = session_at(&f.storage().bytes(), 2);
    f.write_at(b"x", 0).unwrap();
    f.write_at(b"y", B as u64).unwrap();
    let bytes = f.storage().bytes();
    assert_eq!((session_at(&bytes, 0), session_at(&bytes, 1)), (first, first));
    f.sync(true).unwrap();
    f.write_at(b"z", 0).unwrap();
    let bytes = f.storage().bytes();
    assert_eq!(session_at(&bytes, 0), first + 1);
    assert_eq!(session_at(&bytes, 2), first + 1, "the last block resealed first");
    // Another program writing the file makes the handle start a new session too.
    let other = on(f.storage().bytes(), version);
    other.write_at(b"w", 0).unwrap();
    f.storage().replace(other.storage().bytes());
    f.write_at(b"v", B as u64).unwrap();
    assert_eq!(session_at(&f.storage().bytes(), 1), first + 3);
    let got = read_all(&f).unwrap();
    assert_eq!((got[0], got[B]), (b'w', b'v'));
}

#[test]
fn a_torn_growing_write_is_rolled_back() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        let old = pattern(2 * B + B / 2, 7);
        let f = file_with(version, &old);
        let before = f.storage().bytes();
        f.storage().tear_next_write(100);
        let e = f.write_at(&pattern(2 * B, 8), old.len() as u64).unwrap_err();
        assert_eq!(e.errno(), libc::EIO);
        assert_eq!(f.storage().bytes(), before, "old length and last block back");
        assert_eq!(read_all(&f).unwrap(), old);
        f.write_at(b"more", old.len() as u64).unwrap();
        assert_eq!(read_all(&f).unwrap(), [&old[..], b"more"].concat());
    }
}

#[test]
fn a_new_files_first_write_carries_its_header() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        // From block 0: the header and the blocks in one write at offset 0.
        let f = on(Vec::new(), version);
        f.storage().record();
        let plain = pattern(2 * B + 100, 3);
        f.write_at(&plain, 0).unwrap();
        let ops = f.storage().recorded();
        assert_eq!(ops.len(), 1, "{ops:?}");
        let MemOp::Write { off, bytes } = &ops[0] else {
            panic!("{ops:?}")
        };
        assert_eq!((*off, bytes.len() as u64), (0, cipher_size(plain.len() as u64)));
        assert_eq!(FileHeader::decode(&bytes[..HEADER_LEN]).unwrap().version, version);
        assert_eq!(read_all(&f).unwrap(), plain);

        // From a later block: the header first, on its own (the blocks do not follow it).
        let f = on(Vec::new(), version);
        f.storage().record();
        f.write_at(b"late", 2 * B as u64).unwrap();
        let ops = f.storage().recorded();
        assert!(
            matches!(&ops[0], MemOp::Write { off: 0, bytes } if bytes.len() == HEADER_LEN),
            "{ops:?}"
        );
        assert_eq!(read_all(&f).unwrap(), [&vec![0; 2 * B][..], b"late"].concat());

        // Part of block 0 only: still one write, the rest of the block zeros.
        let f = on(Vec::new(), version);
        f.storage().record();
        f.write_at(b"x", 100).unwrap();
        assert!(matches!(&f.storage().recorded()[..], [MemOp::Write { off: 0, .. }]));
        assert_eq!(read_all(&f).unwrap(), [&[0; 100][..], b"x"].concat());

        // Torn, or the disk full: nothing is left, not even a header without blocks.
        for fail in [
            (|f: &CryptFile<MemStorage>| f.storage().tear_next_write(HEADER_LEN + 10)) as fn(&_),
            |f| f.storage().run_out_at(Some(HEADER_LEN as u64 + 10)),
        ] {
            let f = on(Vec::new(), version);
            fail(&f);
            assert!(f.write_at(&plain, 0).is_err());
            f.storage().run_out_at(None);
            assert!(f.storage().bytes().is_empty(), "{:?}", f.storage().bytes().len());
            f.write_at(b"again", 0).unwrap();
            assert_eq!(read_all(&f).unwrap(), b"again");
        }
    }
}

#[test]
fn a_torn_last_block_costs_that_block_only() {
    let old = pattern(3 * B + 300, 9);
    let f = file_with(FILE_V1, &old);
    // An in-place rewrite of the last block torn half way (no growth: nothing to roll back).
    f.storage().tear_next_write(150);
    assert!(f.write_at(&pattern(300, 10), 3 * B as u64).is_err());
    assert_eq!(f.verify_all().unwrap(), vec![3]);
    let mut buf = vec![0u8; 3 * B];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 3 * B);
    assert_eq!(buf, old[..3 * B]);
    assert!(f.read_at(&mut buf[..10], 3 * B as u64).unwrap_err().is_corrupt());
}

#[test]
fn a_torn_tail_fails_reads_reaching_it_and_is_cut_by_repair() {
    let old = pattern(2 * B, 11);
    let f = file_with(FILE_V1, &old);
    let mut bytes = f.storage().bytes();
    bytes.extend_from_slice(&[0xab; 20]);
    f.storage().replace(bytes);
    assert_eq!(f.plain_len().unwrap(), 2 * B as u64);
    let mut buf = vec![0u8; B];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), B);
    let e = f.read_at(&mut buf, B as u64).unwrap_err();
    assert!(
        matches!(
            e,
            VaultError::Corrupt {
                damage: Damage::TornTail,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(f.verify_all().unwrap(), vec![2]);
    assert!(f
        .repair_tail()
        .unwrap()
        .unwrap()
        .starts_with("cut a torn partial block"));
    assert_eq!(read_all(&f).unwrap(), old);
}

#[test]
fn enospc_during_growth_leaves_old_content_and_length() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        // Appending right after the end, and past it (the old last block resealed first).
        for gap in [0, 3 * B] {
            let old = pattern(B + B / 2, 12);
            let f = file_with(version, &old);
            let before = f.storage().bytes();
            f.storage().run_out_at(Some(before.len() as u64 + 3000));
            let e = f.write_at(&pattern(4 * B, 13), (old.len() + gap) as u64).unwrap_err();
            assert_eq!(e.errno(), libc::ENOSPC, "v{version} gap {gap}");
            assert_eq!(f.storage().bytes(), before, "v{version} gap {gap}");
            assert_eq!(read_all(&f).unwrap(), old);
            // set_len growth too.
            assert_eq!(f.set_len(20 * B as u64).unwrap_err().errno(), libc::ENOSPC);
            assert_eq!(f.storage().bytes(), before);
            f.storage().run_out_at(None);
            f.write_at(b"ok", (old.len() + gap) as u64).unwrap();
            assert_eq!(read_all(&f).unwrap().len(), old.len() + gap + 2);
        }
    }
}

#[test]
fn a_failed_reservation_changes_nothing() {
    let old = pattern(B + 5, 14);
    let f = file_with(FILE_V2, &old);
    let before = f.storage().bytes();
    // Little free space: growing writes reserve first.
    f.storage().set_free(0);
    f.storage().fail_reserve(Some(libc::ENOSPC));
    f.storage().record();
    let e = f.write_at(&pattern(3 * B, 15), old.len() as u64).unwrap_err();
    assert_eq!(e.errno(), libc::ENOSPC);
    assert_eq!(f.storage().bytes(), before);
    assert!(
        f.storage()
            .recorded()
            .iter()
            .all(|op| *op == MemOp::SetLen(before.len() as u64)),
        "no byte written: {:?}",
        f.storage().recorded()
    );
    assert_eq!(f.reserve(0, 10 * B as u64).unwrap_err().errno(), libc::ENOSPC);
    // A quota is a full disk too; a file system without fallocate is not.
    f.storage().fail_reserve(Some(libc::EDQUOT));
    assert_eq!(f.set_len(10 * B as u64).unwrap_err().errno(), libc::EDQUOT);
    assert_eq!(f.storage().bytes(), before);
    f.storage().fail_reserve(Some(libc::EOPNOTSUPP));
    f.write_at(b"grown", old.len() as u64).unwrap();
    assert_eq!(read_all(&f).unwrap(), [&old[..], b"grown"].concat());
}

/// `old` rewritten in place as `new` by another writer with the same file: the backing bytes.
fn rewritten(old: &CryptFile<MemStorage>, version: u16, new: &[u8]) -> Vec<u8> {
    let other = on(old.storage().bytes(), version);
    other.write_at(new, 0).unwrap();
    other.storage().bytes()
}

#[test]
fn a_header_kept_from_an_earlier_read_never_serves_another_version() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        let (a, b) = (pattern(3 * B + 10, 20), pattern(3 * B + 10, 21));
        let f = file_with(version, &a);
        assert_eq!(read_all(&f).unwrap(), a);
        // Another file of the same length (another file ID) written over it, and the clock
        // did not move: the stamp is the one the header was kept at.
        let other = file_with(version, &b);
        f.storage().replace_unstamped(other.storage().bytes());
        assert_eq!(read_all(&f).unwrap(), b, "v{version}");
        // Damage is still damage, with the header kept as well as read afresh.
        let mut bytes = f.storage().bytes();
        let at = (HEADER_LEN as u64 + CIPHER_BLOCK + 40) as usize;
        bytes[at] ^= 1;
        f.storage().replace_unstamped(bytes);
        f.storage().set_modified(Some(std::time::SystemTime::UNIX_EPOCH)); // at rest
        for _ in 0..2 {
            let mut buf = vec![0u8; B];
            let err = f.read_at(&mut buf, B as u64).unwrap_err();
            assert!(matches!(err, VaultError::Corrupt { .. }), "v{version}: {err:?}");
        }
    }
}

#[test]
fn a_read_racing_an_inplace_rewrite_sees_one_version() {
    for chunk in [700usize, 1500, CIPHER_BLOCK as usize] {
        for version in [FILE_V2, FILE_V3] {
            let (a, b) = (pattern(4 * B + 100, 16), pattern(4 * B + 100, 17));
            let f = file_with(version, &a);
            let target = rewritten(&f, version, &b);
            // Every backing read first lets the rewriter copy the next `chunk` bytes, in ascending
            // order, as rsync --inplace or a sync client does.
            let copy = target.clone();
            f.storage().rewrite_during_reads(move |reads, bytes| {
                let from = (reads as usize * chunk).min(copy.len());
                let to = (from + chunk).min(copy.len());
                bytes[from..to].copy_from_slice(&copy[from..to]);
                from < to
            });
            let got = read_all(&f).unwrap();
            assert!(got == a || got == b, "v{version} chunk {chunk}: a mix of two versions");
            assert_eq!(read_all(&f).unwrap(), b, "v{version} chunk {chunk}");
            assert_eq!(f.storage().bytes(), target);
        }
    }
}

#[test]
fn a_half_written_block_is_read_again_once_the_writer_moved_on() {
    let (a, b) = (pattern(3 * B, 18), pattern(3 * B, 19));
    let f = file_with(FILE_V1, &a);
    let target = rewritten(&f, FILE_V1, &b);
    let mid = BlockNo(1).cipher_off() as usize;
    f.storage().rewrite_during_reads(move |reads, bytes| match reads {
        // The first attempt meets block 1 half written...
        0 => {
            bytes[mid..mid + 2000].copy_from_slice(&target[mid..mid + 2000]);
            true
        }
        // ...and a later one the whole new version.
        3 => {
            bytes.copy_from_slice(&target);
            true
        }
        _ => false,
    });
    assert_eq!(read_all(&f).unwrap(), b);
    // At rest, damage fails the read.
    let mut bytes = f.storage().bytes();
    bytes[mid + 50] ^= 1;
    let g = on(bytes, FILE_V1);
    assert!(read_all(&g).unwrap_err().is_corrupt());
}

/// One operation run on `old`, stopped by a kill -9 after each prefix of its writes (and
/// inside each write): every block of every state reads as its old or new content; only
/// blocks the operation wrote (or added past the old end) may fail to read.
fn check_every_stop(version: u16, old: &[u8], op: impl Fn(&CryptFile<MemStorage>), new: &[u8]) {
    let f = file_with(version, old);
    let start = f.storage().bytes();
    f.storage().record();
    op(&f);
    assert_eq!(read_all(&f).unwrap(), new, "the operation itself");
    let ops = f.storage().recorded();
    assert!(!ops.is_empty());
    let blocks = block_count(old.len().max(new.len()) as u64) as usize;
    let old_blocks = block_count(old.len() as u64) as usize;
    let touched = |b: usize| {
        let (lo, hi) = (BlockNo(b as u64).cipher_off(), BlockNo(b as u64 + 1).cipher_off());
        ops.iter().any(|op| match op {
            MemOp::Write { off, bytes } => *off < hi && off + bytes.len() as u64 > lo,
            MemOp::SetLen(_) => false,
        })
    };
    for k in 0..=ops.len() {
        let mut keeps = vec![None];
        if let Some(MemOp::Write { bytes, .. }) = ops.get(k) {
            keeps.extend([0, 1, 16, 40, bytes.len() / 2, bytes.len().saturating_sub(1)].map(Some));
            keeps.extend((1..bytes.len() / CIPHER_BLOCK as usize + 1).map(|i| Some(i * CIPHER_BLOCK as usize + 20)));
        }
        for keep in keeps {
            let mut state = start.clone();
            for done in &ops[..k] {
                done.apply(&mut state, None);
            }
            if let (Some(op), Some(_)) = (ops.get(k), keep) {
                op.apply(&mut state, keep);
            }
            let g = on(state, version);
            for b in 0..blocks {
                let mut buf = vec![0u8; B];
                match g.read_at(&mut buf, (b * B) as u64) {
                    Ok(n) => assert!(
                        buf[..n] == *block_of(old, b) || buf[..n] == *block_of(new, b),
                        "v{version} after {k} writes (+{keep:?} bytes): block {b} is neither old nor new"
                    ),
                    Err(e) => assert!(
                        touched(b) || b >= old_blocks,
                        "v{version} after {k} writes (+{keep:?} bytes): block {b}, never written, fails: {e}"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_kill9_between_writes_leaves_each_block_old_or_new() {
    for version in [FILE_V1, FILE_V2, FILE_V3] {
        let old = pattern(5 * B + 300, 20);
        // In place, across block edges.
        let data = pattern(2 * B + 10, 21);
        let mut new = old.clone();
        new[B + 5..B + 5 + data.len()].copy_from_slice(&data);
        check_every_stop(version, &old, |f| f.write_at(&data, B as u64 + 5).unwrap(), &new);
        // Appending right after the end.
        let tail = pattern(3 * B, 22);
        let new = [&old[..], &tail[..]].concat();
        check_every_stop(version, &old, |f| f.write_at(&tail, old.len() as u64).unwrap(), &new);
        // Past the end, leaving a hole (the old last block resealed as a middle block first).
        let mut new = old.clone();
        new.resize(8 * B, 0);
        new.extend_from_slice(&tail);
        check_every_stop(version, &old, |f| f.write_at(&tail, 8 * B as u64).unwrap(), &new);
        // Truncation, and growth by set_len.
        check_every_stop(
            version,
            &old,
            |f| f.set_len(2 * B as u64 + 7).unwrap(),
            &old[..2 * B + 7],
        );
        let mut new = old.clone();
        new.resize(7 * B + 1, 0);
        check_every_stop(version, &old, |f| f.set_len(7 * B as u64 + 1).unwrap(), &new);
    }
}

#[test]
fn the_backing_file_and_memory_agree() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f");
    let backing = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .unwrap();
    let disk = CryptFile::new(backing, keys(), "f".into(), FILE_V2);
    let mem = on(Vec::new(), FILE_V2);
    let steps: [(u64, usize); 5] = [
        (0, 5000),
        (3 * B as u64 + 1, 200),
        (9 * B as u64, 10),
        (17, 2 * B),
        (12 * B as u64, 1),
    ];
    for (i, (off, len)) in steps.into_iter().enumerate() {
        let data = pattern(len, i as u8);
        disk.write_at(&data, off).unwrap();
        mem.write_at(&data, off).unwrap();
        assert_eq!(read_all(&disk).unwrap(), read_all(&mem).unwrap(), "step {i}");
        assert_eq!(
            disk.backing().metadata().unwrap().len(),
            mem.storage().bytes().len() as u64
        );
    }
    disk.set_len(5 * B as u64 + 3).unwrap();
    mem.set_len(5 * B as u64 + 3).unwrap();
    assert_eq!(read_all(&disk).unwrap(), read_all(&mem).unwrap());
    disk.sync(false).unwrap();
    assert_eq!(disk.verify_all().unwrap(), Vec::<u64>::new());
    // The memory storage has no holes; the file's are found through SEEK_DATA / SEEK_HOLE.
    assert_eq!(mem.seek_data_hole(0, false).unwrap(), Some(5 * B as u64 + 3));
    assert_eq!(disk.seek_data_hole(B as u64, true).unwrap(), Some(B as u64));
}

/// The file as another program left it: `bytes`, last modified a minute ago (at rest).
fn at_rest(f: &CryptFile<MemStorage>, bytes: Vec<u8>) {
    f.storage().replace(bytes);
    let minute_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(60);
    f.storage().set_modified(Some(minute_ago));
}

/// Backing bytes of a version-2 file of `plain` after another handle wrote `0xee` at the start
/// of block 1 (a later session), with the older version's last block put back: two versions
/// mixed, block 1 newer than the last block.
fn mixed(version: u16, plain: &[u8]) -> Vec<u8> {
    let f = file_with(version, plain);
    let older = f.storage().bytes();
    let other = on(older.clone(), version);
    other.write_at(&[0xee; 10], B as u64).unwrap();
    let mut bytes = other.storage().bytes();
    let last = BlockNo(block_count(plain.len() as u64) - 1).cipher_off() as usize;
    bytes[last..].copy_from_slice(&older[last..]);
    bytes
}

/// Two versions mixed and the last block damaged: reads serve the other blocks as before
/// (unchecked, the mix included) and fail on the last block; fsck's check says the order could
/// not be checked; a file at rest records the notice, one being written does not.
#[test]
fn a_damaged_last_block_leaves_the_order_unchecked_and_says_so() {
    for version in [FILE_V2, FILE_V3] {
        a_damaged_last_block_leaves_the_order_unchecked_in(version);
    }
}

fn a_damaged_last_block_leaves_the_order_unchecked_in(version: u16) {
    let plain = pattern(4 * B + 100, 20);
    let mut bytes = mixed(version, &plain);
    let f = on(bytes.clone(), version);
    at_rest(&f, bytes.clone());
    let check = f.verify_blocks().unwrap();
    assert_eq!((check.bad, check.ahead, check.order_unchecked), (vec![], vec![1], None));
    assert!(
        read_all(&f).is_err(),
        "the mix is refused while the last block authenticates"
    );
    assert!(f.take_notices().is_empty());

    bytes[BlockNo(4).cipher_off() as usize + 40] ^= 0x40;
    let f = on(bytes.clone(), version);
    f.storage().replace(bytes.clone());
    let mut head = vec![0u8; 4 * B];
    assert_eq!(f.read_at(&mut head, 0).unwrap(), 4 * B);
    assert!(
        f.take_notices().is_empty(),
        "a file modified just now may be being rewritten"
    );
    at_rest(&f, bytes);
    for _ in 0..3 {
        assert_eq!(f.read_at(&mut head, 0).unwrap(), 4 * B);
    }
    let mut want = plain[..4 * B].to_vec();
    want[B..B + 10].fill(0xee);
    assert_eq!(head, want, "served as before: the mix, unchecked");
    assert!(f.read_at(&mut head[..10], 4 * B as u64).unwrap_err().is_corrupt());
    assert_eq!(f.take_notices(), vec![super::Notice::OrderNotCheckable]);
    assert!(f.take_notices().is_empty());
    let check = f.verify_blocks().unwrap();
    assert_eq!(
        (check.bad, check.ahead, check.order_unchecked),
        (vec![4], vec![], Some(4))
    );
    assert_eq!(f.order_unchecked().unwrap(), Some(4));
    assert_eq!(f.verify_all().unwrap(), vec![4]);
    assert_eq!(f.repair_tail().unwrap(), None, "--repair cannot restore the order");
}

/// A handle that learnt the last block's session from the older version, then meets the mix
/// with a damaged last block: the block newer than what it knew sends it to the last block
/// again, which does not authenticate; it serves the mix as a fresh handle would, and records
/// the notice all the same.
#[test]
fn a_handle_that_knew_the_last_block_records_the_unchecked_order_too() {
    for version in [FILE_V2, FILE_V3] {
        let plain = pattern(4 * B + 100, 25);
        let mut bytes = mixed(version, &plain);
        bytes[BlockNo(4).cipher_off() as usize + 40] ^= 0x40;
        let older = file_with(version, &plain).storage().bytes();
        let f = on(older.clone(), version);
        at_rest(&f, older);
        let mut head = vec![0u8; 4 * B];
        assert_eq!(f.read_at(&mut head, 0).unwrap(), 4 * B, "learns session 1");
        at_rest(&f, bytes);
        assert_eq!(f.read_at(&mut head, 0).unwrap(), 4 * B);
        assert_eq!(head[B..B + 10], [0xee; 10], "served as before: the mix, unchecked");
        assert_eq!(f.take_notices(), vec![super::Notice::OrderNotCheckable]);
    }
}

/// One version, its last block torn (a crash while it was rewritten) or intact: as before,
/// apart from the order report of the torn one. A one-block file has no order to check, and a
/// version-1 file none to report.
#[test]
fn a_torn_last_block_of_one_version_costs_that_block_and_is_reported() {
    let plain = pattern(3 * B + 300, 21);
    let f = file_with(FILE_V2, &plain);
    at_rest(&f, f.storage().bytes());
    assert_eq!(read_all(&f).unwrap(), plain);
    let check = f.verify_blocks().unwrap();
    assert_eq!(
        (check.bad, check.order_unchecked, check.sessions_exhausted),
        (vec![], None, false)
    );
    assert!(f.take_notices().is_empty());

    f.storage().tear_next_write(150);
    assert!(f.write_at(&pattern(300, 22), 3 * B as u64).is_err());
    // A reader that has not learnt the last block's session before.
    let f = on(f.storage().bytes(), FILE_V2);
    at_rest(&f, f.storage().bytes());
    let mut buf = vec![0u8; 3 * B];
    assert_eq!(f.read_at(&mut buf, 0).unwrap(), 3 * B);
    assert_eq!(buf, plain[..3 * B]);
    assert!(f.read_at(&mut buf[..10], 3 * B as u64).unwrap_err().is_corrupt());
    assert_eq!(f.take_notices(), vec![super::Notice::OrderNotCheckable]);
    let check = f.verify_blocks().unwrap();
    assert_eq!((check.bad, check.order_unchecked), (vec![3], Some(3)));

    // Every block damaged (a header from another file): nothing left to order.
    let f = file_with(FILE_V2, &plain);
    let mut bytes = f.storage().bytes();
    bytes[2..18].copy_from_slice(&[0x5a; 16]);
    let f = on(bytes.clone(), FILE_V2);
    at_rest(&f, bytes);
    assert!(f.read_at(&mut buf, 0).is_err());
    let check = f.verify_blocks().unwrap();
    assert_eq!((check.bad, check.order_unchecked), (vec![0, 1, 2, 3], None));
    assert!(f.take_notices().is_empty(), "nothing was served unchecked");

    for version in [FILE_V1, FILE_V2] {
        let len = if version == FILE_V1 { 3 * B + 300 } else { 300 };
        let f = file_with(version, &pattern(len, 23));
        let mut bytes = f.storage().bytes();
        *bytes.last_mut().unwrap() ^= 1;
        at_rest(&f, bytes);
        assert!(read_all(&f).is_err());
        let check = f.verify_blocks().unwrap();
        assert_eq!(check.order_unchecked, None, "v{version}");
        assert_eq!(f.order_unchecked().unwrap(), None, "v{version}");
        assert!(f.take_notices().is_empty(), "v{version}");
    }
}

/// The session counter's ceiling: a last block one below it lets one more session start, which
/// is recorded for the caller to log; fsck's check then reports it; writes keep working, at the
/// ceiling.
#[test]
fn the_last_session_is_reported_not_silent() {
    for version in [FILE_V2, FILE_V3] {
        the_last_session_is_reported_in(version);
    }
}

fn the_last_session_is_reported_in(version: u16) {
    let plain = pattern(2 * B + 10, 24);
    let f = file_with(version, &plain);
    // The last block one below the ceiling (as 2^32 − 2 sessions would have left it).
    f.reseal_last_with(session::LAST_SESSION - 1).unwrap();
    assert!(!f.verify_blocks().unwrap().sessions_exhausted);
    f.write_at(b"a", 0).unwrap();
    let bytes = f.storage().bytes();
    assert_eq!(
        (session_at(&bytes, 0), session_at(&bytes, 2)),
        (session::LAST_SESSION, session::LAST_SESSION)
    );
    assert_eq!(f.take_notices(), vec![super::Notice::SessionsExhausted]);
    assert!(f.verify_blocks().unwrap().sessions_exhausted);
    // Later sessions stay at the ceiling, each start recorded again (the caller logs once).
    f.sync(true).unwrap();
    f.write_at(b"b", B as u64).unwrap();
    assert_eq!(f.take_notices(), vec![super::Notice::SessionsExhausted]);
    let mut want = plain.clone();
    want[0] = b'a';
    want[B] = b'b';
    assert_eq!(read_all(&f).unwrap(), want);
}

/// A small deterministic generator for the random-write tests.
fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// Version 3: random writes and truncates read back as a plain model says, and every block
/// authenticates under the file's own keys.
#[test]
fn v3_random_writes_match_a_plain_model() {
    let f = on(Vec::new(), FILE_V3);
    let mut model: Vec<u8> = Vec::new();
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for step in 0..120 {
        let r = next_rand(&mut rng);
        if r % 11 == 0 {
            let len = (next_rand(&mut rng) % (9 * B as u64)) as usize;
            f.set_len(len as u64).unwrap();
            model.resize(len, 0);
        } else {
            let off = (next_rand(&mut rng) % (8 * B as u64)) as usize;
            let len = 1 + (next_rand(&mut rng) % (3 * B as u64)) as usize;
            let data = pattern(len, step as u8);
            f.write_at(&data, off as u64).unwrap();
            if model.len() < off + len {
                model.resize(off + len, 0);
            }
            model[off..off + len].copy_from_slice(&data);
        }
        if r % 7 == 0 {
            f.sync(true).unwrap();
        }
        assert_eq!(read_all(&f).unwrap(), model, "step {step}");
        let want_len = if model.is_empty() {
            0
        } else {
            cipher_size(model.len() as u64)
        };
        assert_eq!(f.storage().bytes().len() as u64, want_len, "step {step}");
    }
    assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new());
    let h = f.header().unwrap().unwrap();
    assert_eq!((h.version, h.epoch_id()), (FILE_V3, Some(EPOCH)));
}

/// Version 3 hides the write sessions: nonce bytes 12..16 are masked, and only the codec reads
/// them back as the sessions the rules gave.
#[test]
fn v3_raw_nonces_carry_no_order() {
    let f = file_with(FILE_V3, &pattern(4 * B + 10, 30));
    for (i, b) in [0u64, 2, 1, 3].into_iter().enumerate() {
        f.sync(true).unwrap();
        f.write_at(&[i as u8 + 1; 5], b * B as u64).unwrap();
    }
    let bytes = f.storage().bytes();
    // Session 1 wrote the file; each later write started a session and resealed the last
    // block first: block 0 in session 2, block 2 in 3, block 1 in 4, block 3 in 5.
    let want = [2u32, 4, 3, 5, 5];
    for (b, &s) in want.iter().enumerate() {
        assert_eq!(session_at(&bytes, b as u64), s, "block {b}");
        assert_ne!(
            raw_session_at(&bytes, b as u64),
            s,
            "block {b}: session stored in clear"
        );
    }
    // The same file as version 2 stores them in clear.
    let g = file_with(FILE_V2, &pattern(4 * B + 10, 30));
    g.sync(true).unwrap();
    g.write_at(b"x", 0).unwrap();
    let bytes = g.storage().bytes();
    assert_eq!((raw_session_at(&bytes, 0), session_at(&bytes, 0)), (2, 2));
}

/// Version 3: each file has its own key, so a block copied from another file (same epoch,
/// same block number) fails authentication.
#[test]
fn v3_a_block_copied_from_another_file_fails() {
    let plain = pattern(3 * B, 31);
    let a = file_with(FILE_V3, &plain);
    let b = file_with(FILE_V3, &plain);
    let mut bytes = b.storage().bytes();
    let (lo, hi) = (BlockNo(1).cipher_off() as usize, BlockNo(2).cipher_off() as usize);
    bytes[lo..hi].copy_from_slice(&a.storage().bytes()[lo..hi]);
    let g = on(bytes, FILE_V3);
    assert_eq!(g.verify_all().unwrap(), vec![1]);
    let e = read_all(&g).unwrap_err();
    assert!(matches!(e, VaultError::Corrupt { block: Some(1), .. }), "{e}");
    assert_eq!(e.errno(), libc::EIO);
}

/// Version 3: a file whose epoch the vault does not have is refused as `EpochUnknown` (EIO).
#[test]
fn v3_a_file_under_an_unknown_epoch_is_refused() {
    let f = file_with(FILE_V3, &pattern(B + 7, 32));
    let mut bytes = f.storage().bytes();
    bytes[2..6].copy_from_slice(&[9, 9, 9, 9]);
    let g = on(bytes, FILE_V3);
    for e in [read_all(&g).unwrap_err(), g.write_at(b"x", 0).unwrap_err()] {
        assert!(
            matches!(
                e,
                VaultError::Corrupt {
                    damage: Damage::EpochUnknown,
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(e.errno(), libc::EIO);
    }
    // A version-1 file in a vault without a layout-1 epoch, likewise.
    let v1 = file_with(FILE_V1, b"one").storage().bytes();
    let only_v3 = VaultKeys::from_epochs(vec![EpochKeys {
        id: Some(EPOCH),
        layout: Layout::V3,
        set: KeySet::derive_v3(&MasterKey::from_bytes([3; 32])),
    }])
    .unwrap();
    let g = CryptFile::with_storage(MemStorage::new(v1), Arc::new(only_v3), "f".into(), FILE_V3);
    assert!(matches!(
        read_all(&g).unwrap_err(),
        VaultError::Corrupt {
            damage: Damage::EpochUnknown,
            ..
        }
    ));
}

/// Version 3: the keys are derived once per file ID and follow the new file ID a truncate to
/// 0 gives the file.
#[test]
fn v3_the_cached_keys_follow_a_new_file_id() {
    let f = file_with(FILE_V3, &pattern(2 * B, 33));
    let first = f.header().unwrap().unwrap();
    assert_eq!(f.cached_file_id(), Some(first.file_id));
    assert_eq!(first.file_id[..4], EPOCH.0);
    f.set_len(0).unwrap();
    assert!(f.header().unwrap().is_none());
    let plain = pattern(B + 3, 34);
    f.write_at(&plain, 0).unwrap();
    let second: FileHeader = f.header().unwrap().unwrap();
    assert_ne!(second.file_id, first.file_id);
    assert_eq!(second.file_id[..4], EPOCH.0);
    assert_eq!(read_all(&f).unwrap(), plain);
    assert_eq!(f.cached_file_id(), Some(second.file_id));
    // A handle that read the old file reads the new one (its cache is keyed by file ID).
    let g = on(f.storage().bytes(), FILE_V3);
    assert_eq!(read_all(&g).unwrap(), plain);
    assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new());
}

/// Version 3: `--repair` of the crash states reseals with the file's own keys and the newest
/// session — a file cut at a block boundary (last block not final), a torn tail, and a last
/// block that is a hole.
#[test]
fn v3_repairs_reseal_under_the_files_keys() {
    let plain = pattern(3 * B, 35);
    let f = file_with(FILE_V3, &plain);
    f.sync(true).unwrap();
    f.write_at(b"s2", 0).unwrap();
    let mut want = plain.clone();
    want[..2].copy_from_slice(b"s2");

    // Cut at a block boundary: block 1 becomes the last, sealed as a middle block.
    let mut bytes = f.storage().bytes();
    bytes.truncate(cipher_size(2 * B as u64) as usize);
    let g = on(bytes, FILE_V3);
    let check = g.verify_blocks().unwrap();
    // Block 0 (session 2) is also newer than the new last block (session 1).
    assert_eq!((check.bad, check.ahead), (vec![1], vec![0]));
    let done = g.repair_tail().unwrap().unwrap();
    assert!(done.starts_with("resealed the last block as final"), "{done}");
    assert_eq!(read_all(&g).unwrap(), want[..2 * B]);
    let bytes = g.storage().bytes();
    assert_eq!(
        (session_at(&bytes, 0), session_at(&bytes, 1)),
        (2, 2),
        "the newest session"
    );

    // A torn tail after a final last block is cut.
    let mut torn = f.storage().bytes();
    torn.extend_from_slice(&[0x77; 20]);
    let g = on(torn, FILE_V3);
    assert_eq!(g.verify_all().unwrap(), vec![3]);
    assert!(g
        .repair_tail()
        .unwrap()
        .unwrap()
        .starts_with("cut a torn partial block"));
    assert_eq!(read_all(&g).unwrap(), want);

    // A last block that is a hole (a torn growing write): sealed as zeros.
    let mut holed = f.storage().bytes();
    let last = BlockNo(2).cipher_off() as usize;
    holed[last..].fill(0);
    let g = on(holed, FILE_V3);
    assert_eq!(g.verify_all().unwrap(), vec![2]);
    let done = g.repair_tail().unwrap().unwrap();
    assert!(done.contains("with the newest write session"), "{done}");
    let mut zeroed = want.clone();
    zeroed[2 * B..].fill(0);
    assert_eq!(read_all(&g).unwrap(), zeroed);
    assert_eq!(session_at(&g.storage().bytes(), 2), 2);
    assert_eq!(g.verify_all().unwrap(), Vec::<u64>::new());
}
