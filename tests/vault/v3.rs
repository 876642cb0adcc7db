//! Files of header version 3 through the vault (FORMAT.md §15.3): a CIPHERDIR opened with the
//! keys of one layout-3 epoch writes version-3 files whose file ID starts with the epoch ID;
//! random writes read back as a plain model says; per-file keys refuse a block moved between
//! files; a file under an epoch the vault lacks is EIO; fsck checks them.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::support::epochs;
use coffer::format::config::VaultParams;
use coffer::format::epochs::EpochId;
use coffer::format::header::{FileHeader, FILE_V3, HEADER_LEN};
use coffer::format::offsets::{cipher_size, BlockNo, PLAIN_BLOCK};
use coffer::vault::fsck::{fsck, DamageKind};
use coffer::vault::{unlock, CryptFile, Damage, Dir, KdfCost, Vault, VaultError, VaultKeys};

const B: usize = PLAIN_BLOCK as usize;
const EPOCH: EpochId = EpochId([0xe0, 0xe1, 0xe2, 0xe3]);

/// The keys of a vault whose one epoch, `id`, has layout 3.
fn v3_keys(id: EpochId) -> VaultKeys {
    VaultKeys::from_epochs(vec![epochs::layout3([0x42; 32], id)]).unwrap()
}

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vault: Vault,
    root: Dir,
}

impl Env {
    /// A CIPHERDIR (its layout made by `init`) opened with the keys of epoch [`EPOCH`].
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        unlock::init(&dir, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let vault = Env::open(&dir, EPOCH);
        let root = vault.root_dir().unwrap();
        Env {
            _tmp: tmp,
            dir,
            vault,
            root,
        }
    }

    fn open(dir: &std::path::Path, epoch: EpochId) -> Vault {
        Vault::open_with_keys(dir, v3_keys(epoch), VaultParams::default(), false).unwrap()
    }

    /// Creates a file with `content`; returns its backing entry name.
    fn file(&self, name: &[u8], content: &[u8]) -> Vec<u8> {
        let (f, cn) = self.vault.create_file(&self.root, name, 0o600).unwrap();
        f.write_at(content, 0).unwrap();
        cn.entry
    }

    fn path(&self, entry: &[u8]) -> PathBuf {
        self.dir.join(std::ffi::OsStr::from_bytes(entry))
    }

    fn open_file(&self, entry: &[u8]) -> CryptFile {
        self.vault.open_file(&self.root, entry, true).unwrap()
    }
}

fn read_all(f: &CryptFile) -> Result<Vec<u8>, VaultError> {
    let mut buf = vec![0u8; f.plain_len()? as usize];
    let n = f.read_at(&mut buf, 0)?;
    buf.truncate(n);
    Ok(buf)
}

fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) | 1)
        .collect()
}

fn next_rand(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_writes_to_a_v3_file_match_a_plain_model() {
    let env = Env::new();
    let entry = env.file(b"f", b"");
    let mut model = Vec::new();
    let mut rng = 0x0123_4567_89ab_cdefu64;
    for step in 0..150 {
        // Each step through a new handle now and then: sessions start, the cache is rebuilt.
        let f = env.open_file(&entry);
        for _ in 0..(1 + next_rand(&mut rng) % 3) {
            let r = next_rand(&mut rng);
            if r % 13 == 0 {
                let len = (next_rand(&mut rng) % (10 * B as u64)) as usize;
                f.set_len(len as u64).unwrap();
                model.resize(len, 0);
            } else {
                let off = (next_rand(&mut rng) % (9 * B as u64)) as usize;
                let len = 1 + (next_rand(&mut rng) % (3 * B as u64 + 7)) as usize;
                let data = pattern(len, step as u8);
                f.write_at(&data, off as u64).unwrap();
                if model.len() < off + len {
                    model.resize(off + len, 0);
                }
                model[off..off + len].copy_from_slice(&data);
            }
            if r % 5 == 0 {
                f.sync(false).unwrap();
            }
        }
        assert_eq!(read_all(&f).unwrap(), model, "step {step}");
        let backing_len = std::fs::metadata(env.path(&entry)).unwrap().len();
        let want = if model.is_empty() {
            0
        } else {
            cipher_size(model.len() as u64)
        };
        assert!(backing_len == want || (model.is_empty() && backing_len == HEADER_LEN as u64));
    }
    if model.is_empty() {
        env.open_file(&entry).write_at(b"end", 0).unwrap();
        model = b"end".to_vec();
    }
    let again = env.vault.open_file_path(b"f").unwrap();
    assert_eq!(read_all(&again).unwrap(), model);
    let raw = std::fs::read(env.path(&entry)).unwrap();
    let h = FileHeader::decode(&raw).unwrap();
    assert_eq!(raw[..6], [0, 3, 0xe0, 0xe1, 0xe2, 0xe3]);
    assert_eq!((h.version, h.epoch_id()), (FILE_V3, Some(EPOCH)));
    assert_eq!(again.verify_all().unwrap(), Vec::<u64>::new());
}

/// The same block (number 1) of two version-3 files with the same plaintext: moved from one
/// to the other, it fails authentication (each file has its own key).
#[test]
fn a_block_moved_between_v3_files_fails() {
    let env = Env::new();
    let plain = pattern(3 * B + 20, 5);
    let (a, b) = (env.file(b"a", &plain), env.file(b"b", &plain));
    let from = std::fs::read(env.path(&a)).unwrap();
    let (lo, hi) = (BlockNo(1).cipher_off() as usize, BlockNo(2).cipher_off() as usize);
    std::fs::OpenOptions::new()
        .write(true)
        .open(env.path(&b))
        .unwrap()
        .write_all_at(&from[lo..hi], lo as u64)
        .unwrap();
    let f = env.open_file(&b);
    let e = read_all(&f).unwrap_err();
    assert!(matches!(e, VaultError::Corrupt { block: Some(1), .. }), "{e}");
    assert_eq!(e.errno(), libc::EIO);
    assert_eq!(f.verify_all().unwrap(), vec![1]);
    assert_eq!(read_all(&env.open_file(&a)).unwrap(), plain);
}

/// A version-3 file sealed under an epoch the vault does not have (forgotten by `rekey
/// --finish`, or from another vault): EIO, `EpochUnknown`, and fsck reports it.
#[test]
fn a_v3_file_under_an_epoch_the_vault_lacks_is_eio() {
    let env = Env::new();
    env.file(b"f", &pattern(B + 9, 6));
    // The same CIPHERDIR with the same key under another epoch ID: the names still decrypt
    // (the epoch ID is not in them), the file's epoch is unknown.
    let other = Env::open(&env.dir, EpochId([1, 2, 3, 4]));
    let f = other.open_file_path(b"f").unwrap();
    let e = read_all(&f).unwrap_err();
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
    let report = fsck(&other, false, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(report.damage[0].detail.contains("key epoch"), "{:?}", report.damage);
}

/// fsck of a vault of version-3 files: clean; then one flipped byte in block 2 of one file is
/// reported as that block; a last block put back from an earlier session as `mixed_versions`.
#[test]
fn fsck_checks_v3_files() {
    let env = Env::new();
    let entry = env.file(b"a", &pattern(4 * B + 100, 7));
    env.file(b"b", &pattern(B / 2, 8));
    let report = fsck(&env.vault, false, &mut |_| {}).unwrap();
    assert_eq!(report.files, 2);
    assert!(report.damage.is_empty(), "{:?}", report.damage);

    let path = env.path(&entry);
    let clean = std::fs::read(&path).unwrap();
    let mut bad = clean.clone();
    bad[BlockNo(2).cipher_off() as usize + 100] ^= 0x10;
    std::fs::write(&path, &bad).unwrap();
    let report = fsck(&env.vault, false, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(matches!(report.damage[0].kind, DamageKind::Blocks));
    assert_eq!(report.damage[0].blocks, vec![2]);
    assert_eq!(report.damage[0].plain_path.as_deref(), Some("a"));

    // Block 1 rewritten in a later session, the older last block put back.
    std::fs::write(&path, &clean).unwrap();
    let f = env.open_file(&entry);
    f.write_at(b"newer", B as u64).unwrap();
    let last_off = BlockNo(4).cipher_off() as usize;
    let mut mixed = std::fs::read(&path).unwrap();
    mixed[last_off..].copy_from_slice(&clean[last_off..]);
    std::fs::write(&path, &mixed).unwrap();
    let report = fsck(&env.vault, false, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
    assert!(matches!(report.damage[0].kind, DamageKind::MixedVersions));
    assert_eq!(report.damage[0].blocks, vec![1]);
    let report = fsck(&env.vault, true, &mut |_| {}).unwrap();
    assert!(report.is_clean(), "{:?}", report.damage);
    let mut want = pattern(4 * B + 100, 7);
    want[B..B + 5].copy_from_slice(b"newer");
    assert_eq!(read_all(&env.open_file(&entry)).unwrap(), want);
    assert!(fsck(&env.vault, false, &mut |_| {}).unwrap().damage.is_empty());

    // The last block damaged while the blocks before it authenticate: their order cannot be
    // checked, and fsck says so beside the damaged block.
    let mut torn = std::fs::read(&path).unwrap();
    *torn.last_mut().unwrap() ^= 1;
    std::fs::write(&path, &torn).unwrap();
    let report = fsck(&env.vault, false, &mut |_| {}).unwrap();
    let kinds: Vec<_> = report
        .damage
        .iter()
        .map(|d| (format!("{:?}", d.kind), d.blocks.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("Blocks".to_string(), vec![4]),
            ("OrderNotCheckable".to_string(), vec![])
        ],
        "{:?}",
        report.damage
    );
}
