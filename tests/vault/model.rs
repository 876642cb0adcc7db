//! Model-based tests of encrypted file contents: random write_at / set_len / read_at sequences
//! against a `Vec<u8>`, sparse growth far past 4 GiB, and SEEK_DATA / SEEK_HOLE against the
//! hole policy (an all-zero backing block before the last block reads as zeros).

use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use coffer::format::config::VaultParams;
use coffer::format::offsets::{cipher_size, PLAIN_BLOCK};
use coffer::vault::{unlock, CryptFile, Dir, KdfCost, Vault};
use proptest::prelude::*;

const B: u64 = PLAIN_BLOCK;

struct Fixture {
    _tmp: tempfile::TempDir,
    vault: Vault,
    root: Dir,
    plain: Vec<u8>,
    entry: Vec<u8>,
    made: u64,
}

impl Fixture {
    fn new() -> (Fixture, CryptFile) {
        let tmp = tempfile::tempdir().unwrap();
        unlock::init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let vault = Vault::unlock(tmp.path(), None, b"pw", false).unwrap();
        let root = vault.root_dir().unwrap();
        let (f, name) = vault.create_file(&root, b"model", 0o600).unwrap();
        (
            Fixture {
                _tmp: tmp,
                vault,
                root,
                plain: b"model".to_vec(),
                entry: name.entry,
                made: 0,
            },
            f,
        )
    }

    /// Replaces the file with a fresh empty one (cheaper than a new vault per case: vault
    /// creation fsyncs, which dominates on a busy disk).
    fn fresh(&mut self) -> CryptFile {
        self.vault.unlink(&self.root, &self.plain).unwrap();
        self.made += 1;
        self.plain = format!("model-{}", self.made).into_bytes();
        let (f, name) = self.vault.create_file(&self.root, &self.plain, 0o600).unwrap();
        self.entry = name.entry;
        f
    }

    fn reopen(&self) -> CryptFile {
        self.vault.open_file(&self.root, &self.entry, true).unwrap()
    }
}

/// Deterministic, non-zero-heavy data for a write.
fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

#[derive(Debug, Clone)]
enum Op {
    Write { off: u64, len: usize, seed: u8 },
    SetLen(u64),
    Read { off: u64, len: usize },
    Seek { off: u64 },
    Reopen,
}

/// Offsets that cluster around block edges (k*4096 - 1, k*4096, k*4096 + 1), plus anything.
fn offset() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => (0u64..8, -1i64..=1).prop_map(|(k, d)| (k * B).saturating_add_signed(d)),
        2 => 0u64..8 * B,
        1 => (8u64..48, -1i64..=1).prop_map(|(k, d)| (k * B).saturating_add_signed(d)),
        1 => Just(0u64),
    ]
}

fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        2 => prop::sample::select(vec![1usize, 4095, 4096, 4097, 8191, 8192, 8193]),
        3 => 0usize..10_000,
        1 => 1usize..64,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (offset(), length(), any::<u8>()).prop_map(|(off, len, seed)| Op::Write { off, len, seed }),
        2 => offset().prop_map(Op::SetLen),
        1 => Just(Op::SetLen(0)),
        3 => (offset(), length()).prop_map(|(off, len)| Op::Read { off, len }),
        1 => offset().prop_map(|off| Op::Seek { off }),
        1 => Just(Op::Reopen),
    ]
}

fn check_backing_size(f: &CryptFile, model: &[u8]) {
    let backing = f.backing().metadata().unwrap().len();
    let plain = model.len() as u64;
    assert!(
        backing == cipher_size(plain) || (plain == 0 && backing == 0),
        "backing {backing} for plain {plain}"
    );
    assert_eq!(f.plain_len().unwrap(), plain);
}

/// SEEK_DATA / SEEK_HOLE answers must never hide data: everything skipped is zeros.
fn check_seek(f: &CryptFile, model: &[u8], off: u64) {
    let len = model.len() as u64;
    let data = f.seek_data_hole(off, true).unwrap();
    let hole = f.seek_data_hole(off, false).unwrap();
    if off >= len {
        assert_eq!(data, None, "SEEK_DATA at/after EOF is ENXIO");
        assert_eq!(hole, None, "SEEK_HOLE at/after EOF is ENXIO");
        return;
    }
    let d = data.expect("data before EOF: the last block is never a hole");
    assert!(d >= off && d < len, "SEEK_DATA {off} -> {d} (len {len})");
    assert!(
        model[off as usize..d as usize].iter().all(|&x| x == 0),
        "SEEK_DATA {off} skipped data up to {d}"
    );
    let h = hole.unwrap();
    assert!(h >= off && h <= len, "SEEK_HOLE {off} -> {h} (len {len})");
    if h < len {
        // A reported hole is at least the rest of its block and reads as zeros.
        let end = ((h / B + 1) * B).min(len);
        assert!(
            model[h as usize..end as usize].iter().all(|&x| x == 0),
            "SEEK_HOLE {off} -> {h} is not zeros"
        );
        assert!(h / B < (len - 1) / B, "the last block is never a hole");
    }
}

fn run(fx: &mut Fixture, ops: &[Op]) {
    let mut f = fx.fresh();
    let mut model: Vec<u8> = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        match *op {
            Op::Write { off, len, seed } => {
                let d = data(seed, len);
                f.write_at(&d, off).unwrap();
                if len > 0 {
                    let end = off as usize + len;
                    if model.len() < end {
                        model.resize(end, 0);
                    }
                    model[off as usize..end].copy_from_slice(&d);
                }
            }
            Op::SetLen(n) => {
                fx.vault.set_len(&f, n).unwrap();
                model.resize(n as usize, 0);
            }
            Op::Read { off, len } => {
                let mut buf = vec![0xeeu8; len];
                let n = f.read_at(&mut buf, off).unwrap();
                let want = model.get(off as usize..).map_or(&[][..], |t| &t[..t.len().min(len)]);
                assert_eq!(n, want.len(), "op {i}: read count at {off}+{len}");
                assert!(buf[..n] == *want, "op {i}: read bytes at {off}+{len}");
            }
            Op::Seek { off } => check_seek(&f, &model, off),
            Op::Reopen => f = fx.reopen(),
        }
        check_backing_size(&f, &model);
    }
    let mut all = vec![0u8; model.len() + 10];
    let n = fx.reopen().read_at(&mut all, 0).unwrap();
    assert_eq!(n, model.len());
    assert!(all[..n] == model[..], "final contents differ");
    assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new());
}

/// Thousands of random op sequences; one vault for all of them, a fresh file per case.
#[test]
fn contents_follow_the_model() {
    let fx = std::cell::RefCell::new(Fixture::new().0);
    let config = ProptestConfig {
        cases: 4000,
        max_shrink_iters: 4000,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(op(), 1..24), |ops| {
        run(&mut fx.borrow_mut(), &ops);
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

#[test]
fn hand_picked_sequences() {
    use Op::*;
    let fx = &mut Fixture::new().0;
    run(
        fx,
        &[
            Write {
                off: 4095,
                len: 2,
                seed: 1,
            },
            Read { off: 4094, len: 4 },
        ],
    );
    run(
        fx,
        &[
            Write {
                off: 10 * B,
                len: 1,
                seed: 2,
            },
            Seek { off: 0 },
            Read { off: 0, len: 50_000 },
        ],
    );
    run(
        fx,
        &[
            Write {
                off: 0,
                len: 3 * B as usize,
                seed: 3,
            },
            SetLen(0),
            Write {
                off: 5,
                len: 1,
                seed: 4,
            },
        ],
    );
    run(
        fx,
        &[
            Write {
                off: 0,
                len: 100,
                seed: 5,
            },
            SetLen(2 * B),
            Reopen,
            SetLen(B + 1),
            SetLen(B),
            SetLen(4097),
        ],
    );
    run(
        fx,
        &[
            SetLen(40 * B + 3),
            Seek { off: 0 },
            Seek { off: 20 * B },
            Write {
                off: 39 * B,
                len: 9000,
                seed: 6,
            },
        ],
    );
    run(
        fx,
        &[
            Write {
                off: 0,
                len: 0,
                seed: 0,
            },
            SetLen(0),
            Read { off: 0, len: 1 },
            Seek { off: 0 },
        ],
    );
}

/// A truncation to 0 gets a new file ID on the next write (old blocks cannot be replayed).
#[test]
fn truncate_to_zero_renews_file_id() {
    let (fx, f) = Fixture::new();
    f.write_at(b"hello", 0).unwrap();
    let id1 = f.header().unwrap().unwrap().file_id;
    fx.vault.set_len(&f, 0).unwrap();
    assert_eq!(f.backing().metadata().unwrap().len(), 0);
    f.write_at(b"x", 0).unwrap();
    assert_ne!(f.header().unwrap().unwrap().file_id, id1);
}

const GIB: u64 = 1 << 30;

/// A write at 5 GiB and set_len(100 GiB) cost a few blocks, not gigabytes of zeros.
#[test]
fn huge_sparse_offsets_are_cheap() {
    let (fx, f) = Fixture::new();
    let t0 = Instant::now();
    let off = 5 * GIB + 123;
    f.write_at(b"far away", off).unwrap();
    assert_eq!(f.plain_len().unwrap(), off + 8);
    fx.vault.set_len(&f, 100 * GIB).unwrap();
    assert_eq!(f.plain_len().unwrap(), 100 * GIB);
    // Block numbers above 2^20 (5 GiB is block 1310720; 100 GiB - 1 is block 26214399).
    let mut buf = [0u8; 8];
    f.read_at(&mut buf, off).unwrap();
    assert_eq!(&buf, b"far away");
    let mut tail = [0xffu8; 10];
    assert_eq!(f.read_at(&mut tail, 100 * GIB - 5).unwrap(), 5);
    assert_eq!(&tail[..5], &[0u8; 5]);
    // The hole reads as zeros, including around the 2^20-block mark and the old tail.
    for at in [0, 4 * GIB - 1, (1 << 20) * B - 3, off - 4096, off + 8, 50 * GIB] {
        let mut z = vec![0xffu8; 8192];
        assert_eq!(f.read_at(&mut z, at).unwrap(), 8192);
        let (lo, hi) = (off.saturating_sub(at) as usize, (off + 8).saturating_sub(at) as usize);
        for (i, &x) in z.iter().enumerate() {
            if !(lo..hi).contains(&i) {
                assert_eq!(x, 0, "byte {} not zero", at + i as u64);
            }
        }
    }
    // Overwrite across the 2^20 block boundary and read it back.
    let edge = (1 << 20) * B - 2;
    f.write_at(b"edge", edge).unwrap();
    let mut e = [0u8; 4];
    f.read_at(&mut e, edge).unwrap();
    assert_eq!(&e, b"edge");
    assert!(t0.elapsed() < Duration::from_secs(10), "took {:?}", t0.elapsed());
    let md = f.backing().metadata().unwrap();
    assert_eq!(md.len(), cipher_size(100 * GIB));
    assert!(
        md.blocks() * 512 < 1 << 20,
        "backing file allocates {} bytes",
        md.blocks() * 512
    );
    assert_eq!(fx.reopen().plain_len().unwrap(), 100 * GIB);
}

#[test]
fn writes_past_the_maximum_size_are_efbig() {
    let (_fx, f) = Fixture::new();
    let e = f.write_at(b"x", u64::MAX - 1).unwrap_err();
    assert_eq!(e.errno(), libc::EFBIG);
    assert_eq!(f.set_len(u64::MAX).unwrap_err().errno(), libc::EFBIG);
}

/// SEEK_DATA / SEEK_HOLE on a file with one big hole: the hole is reported (block
/// granularity), data is never skipped, the last block is never a hole.
#[test]
fn seek_data_and_hole_follow_the_hole_policy() {
    let (fx, f) = Fixture::new();
    f.write_at(&[7u8; 100], 0).unwrap();
    f.write_at(&[9u8; 10], 1000 * B).unwrap();
    let len = 1000 * B + 10;
    assert_eq!(f.seek_data_hole(0, true).unwrap(), Some(0));
    let h = f.seek_data_hole(0, false).unwrap().unwrap();
    assert!((B..=2 * B).contains(&h), "hole after block 0 starts at {h}");
    let d = f.seek_data_hole(5 * B, true).unwrap().unwrap();
    assert!((990 * B..=1000 * B).contains(&d), "SEEK_DATA from the hole -> {d}");
    assert_eq!(f.seek_data_hole(1000 * B, false).unwrap(), Some(len));
    assert_eq!(f.seek_data_hole(1000 * B + 3, true).unwrap(), Some(1000 * B + 3));
    assert_eq!(f.seek_data_hole(len, true).unwrap(), None);
    assert_eq!(f.seek_data_hole(len, false).unwrap(), None);
    let mut z = vec![0xffu8; (d - h) as usize];
    f.read_at(&mut z, h).unwrap();
    assert!(z.iter().all(|&x| x == 0));

    // A fully written file has no hole before EOF.
    let (fx2, g) = Fixture::new();
    g.write_at(&vec![1u8; 10 * B as usize + 5], 0).unwrap();
    assert_eq!(g.seek_data_hole(0, false).unwrap(), Some(10 * B + 5));
    assert_eq!(g.seek_data_hole(3 * B + 1, true).unwrap(), Some(3 * B + 1));
    drop((fx, fx2));

    // Growth by set_len leaves a hole up to the (sealed, data) last block.
    let (fx3, s) = Fixture::new();
    s.write_at(b"a", 0).unwrap();
    fx3.vault.set_len(&s, 64 * B).unwrap();
    let h = s.seek_data_hole(0, false).unwrap().unwrap();
    assert!(h <= 2 * B, "{h}");
    let d = s.seek_data_hole(h, true).unwrap().unwrap();
    assert!((60 * B..64 * B).contains(&d), "{d}");
}
