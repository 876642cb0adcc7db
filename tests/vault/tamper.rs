//! Tamper tests: an attacker with write access to CIPHERDIR edits, moves, swaps or truncates
//! backing bytes. Each edit must give a typed error (never wrong plaintext, never a panic) and
//! leave the untouched blocks readable. What the format cannot detect is pinned at the end.

use crate::support::common;

use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use coffer::format::config::VaultParams;
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::{cipher_size, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use coffer::format::recovery;
use coffer::vault::{unlock, BlockFault, CryptFile, Damage, Dir, KdfCost, Vault, VaultError};

const PW: &[u8] = b"correct horse";
const B: usize = PLAIN_BLOCK as usize;
/// 5 full blocks and a 100-byte last block.
const SIZE: usize = 5 * B + 100;
const BLOCKS: u64 = 6;

struct Env {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    vault: Vault,
    root: Dir,
}

impl Env {
    fn new() -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        unlock::init(&dir, None, PW, &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let vault = Vault::unlock(&dir, None, PW, false).unwrap();
        let root = vault.root_dir().unwrap();
        Env {
            _tmp: tmp,
            dir,
            vault,
            root,
        }
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

    fn open(&self, entry: &[u8]) -> CryptFile {
        self.vault.open_file(&self.root, entry, false).unwrap()
    }
}

fn content(seed: u8) -> Vec<u8> {
    (0..SIZE)
        .map(|i| (i as u8).wrapping_mul(7).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

fn plain_block_len(b: u64) -> usize {
    if b == BLOCKS - 1 {
        100
    } else {
        B
    }
}

/// Reads block `b` of the file.
fn read_block(f: &CryptFile, b: u64) -> Result<Vec<u8>, VaultError> {
    let mut buf = vec![0u8; plain_block_len(b)];
    let n = f.read_at(&mut buf, b * PLAIN_BLOCK)?;
    buf.truncate(n);
    Ok(buf)
}

#[track_caller]
fn assert_corrupt<T: std::fmt::Debug>(r: Result<T, VaultError>, what: &str) -> VaultError {
    match r {
        Err(e) if e.is_corrupt() => {
            assert_eq!(e.errno(), libc::EIO, "{what}: {e}");
            e
        }
        other => panic!("{what}: expected a Corrupt error, got {other:?}"),
    }
}

/// Every block except those in `bad` reads back its original plaintext; those in `bad` fail.
#[track_caller]
fn check_blocks(f: &CryptFile, want: &[u8], bad: &[u64], what: &str) {
    for b in 0..BLOCKS {
        let r = read_block(f, b);
        if bad.contains(&b) {
            let e = assert_corrupt(r, &format!("{what}, block {b}"));
            assert!(
                // About a block, or about the header (a version flipped to 3 names an epoch
                // the vault does not have).
                matches!(
                    e,
                    VaultError::Corrupt { block: Some(_), .. }
                        | VaultError::Corrupt {
                            damage: Damage::Header(_) | Damage::MissingHeader | Damage::EpochUnknown,
                            ..
                        }
                ),
                "{what}: {e}"
            );
        } else {
            let start = b as usize * B;
            let got = r.unwrap_or_else(|e| panic!("{what}: block {b} should still read: {e}"));
            assert!(
                got == want[start..start + plain_block_len(b)],
                "{what}: block {b} changed"
            );
        }
    }
    // A whole-file read never returns wrong plaintext.
    let mut all = vec![0u8; SIZE];
    match f.read_at(&mut all, 0) {
        Ok(n) => assert!(
            bad.is_empty() && n == SIZE && all == want,
            "{what}: whole read succeeded"
        ),
        Err(e) => assert!(!bad.is_empty() && e.is_corrupt(), "{what}: {e}"),
    }
}

/// Byte offsets (in the backing file) of sample positions in the nonce, ciphertext and tag of
/// block `b`, labelled by region.
fn sample_positions(b: u64) -> Vec<(&'static str, u64)> {
    let start = BlockNo(b).cipher_off();
    let len = plain_block_len(b) as u64;
    vec![
        ("nonce", start),
        ("nonce", start + 7),
        ("nonce", start + 15),
        ("ciphertext", start + 16),
        ("ciphertext", start + 16 + len / 2),
        ("ciphertext", start + 16 + len - 1),
        ("tag", start + 16 + len),
        ("tag", start + 16 + len + 8),
        ("tag", start + 16 + len + 15),
    ]
}

#[test]
fn flipped_bytes_in_header_nonce_ciphertext_tag() {
    let env = Env::new();
    let want = content(1);
    let entry = env.file(b"a", &want);
    let path = env.path(&entry);
    let orig = std::fs::read(&path).unwrap();
    assert_eq!(orig.len() as u64, cipher_size(SIZE as u64));
    check_blocks(&env.open(&entry), &want, &[], "untouched");

    let mut cases: Vec<(String, u64, Vec<u64>)> = (0..HEADER_LEN as u64)
        .map(|i| (format!("header byte {i}"), i, (0..BLOCKS).collect()))
        .collect();
    for b in [0, 2, BLOCKS - 1] {
        for (region, pos) in sample_positions(b) {
            cases.push((format!("block {b} {region} at {pos}"), pos, vec![b]));
        }
    }
    for (what, pos, bad) in cases {
        for mask in [0x01u8, 0x80] {
            let mut t = orig.clone();
            t[pos as usize] ^= mask;
            std::fs::write(&path, &t).unwrap();
            check_blocks(&env.open(&entry), &want, &bad, &format!("{what} ^ {mask:#x}"));
        }
    }
    std::fs::write(&path, &orig).unwrap();
    check_blocks(&env.open(&entry), &want, &[], "restored");
}

fn cipher_block(bytes: &[u8], b: u64) -> std::ops::Range<usize> {
    let start = BlockNo(b).cipher_off() as usize;
    start..(start + CIPHER_BLOCK as usize).min(bytes.len())
}

#[test]
fn swapped_and_foreign_blocks_and_headers() {
    let env = Env::new();
    let (want_a, want_b) = (content(1), content(2));
    let (ea, eb) = (env.file(b"a", &want_a), env.file(b"b", &want_b));
    let (pa, pb) = (env.path(&ea), env.path(&eb));
    let (a, bb) = (std::fs::read(&pa).unwrap(), std::fs::read(&pb).unwrap());

    // Swap blocks 1 and 3 of one file.
    let mut t = a.clone();
    let (r1, r3) = (cipher_block(&a, 1), cipher_block(&a, 3));
    t[r1.clone()].copy_from_slice(&a[r3.clone()]);
    t[r3].copy_from_slice(&a[r1]);
    std::fs::write(&pa, &t).unwrap();
    check_blocks(&env.open(&ea), &want_a, &[1, 3], "swapped blocks 1 and 3");

    // Copy block 2 of file b into file a (same position).
    let mut t = a.clone();
    let r2 = cipher_block(&a, 2);
    t[r2.clone()].copy_from_slice(&bb[r2]);
    std::fs::write(&pa, &t).unwrap();
    check_blocks(&env.open(&ea), &want_a, &[2], "block 2 copied from another file");

    // Copy file b's last block over file a's last block (same length, same position).
    let mut t = a.clone();
    let rl = cipher_block(&a, BLOCKS - 1);
    t[rl.clone()].copy_from_slice(&bb[rl]);
    std::fs::write(&pa, &t).unwrap();
    check_blocks(&env.open(&ea), &want_a, &[BLOCKS - 1], "last block from another file");

    // File b's header on file a's blocks.
    let mut t = a.clone();
    t[..HEADER_LEN].copy_from_slice(&bb[..HEADER_LEN]);
    std::fs::write(&pa, &t).unwrap();
    check_blocks(
        &env.open(&ea),
        &want_a,
        &(0..BLOCKS).collect::<Vec<_>>(),
        "foreign header",
    );

    // A middle block moved to the last position (and the file cut there).
    let mut t = a[..BlockNo(2).cipher_off() as usize].to_vec();
    t.extend_from_slice(&a[cipher_block(&a, 0)]);
    std::fs::write(&pa, &t).unwrap();
    let f = env.open(&ea);
    assert_eq!(f.plain_len().unwrap(), 3 * PLAIN_BLOCK);
    assert_corrupt(read_block(&f, 2), "block 0 replayed as block 2");
    std::fs::write(&pa, &a).unwrap();
    check_blocks(&env.open(&ea), &want_a, &[], "restored");
}

/// Truncating at a block boundary is detected by the final flag; truncating mid-block leaves
/// a torn tail that reads refuse to pass over.
#[test]
fn truncation_mid_block_and_at_block_boundary() {
    let env = Env::new();
    let want = content(3);
    let entry = env.file(b"a", &want);
    let path = env.path(&entry);
    let orig = std::fs::read(&path).unwrap();

    let cut = |len: u64| {
        std::fs::write(&path, &orig[..len as usize]).unwrap();
        env.open(&entry)
    };
    // Exactly at block boundaries: the new last block was sealed with final = 0.
    for keep in [1u64, 3, 5] {
        let f = cut(BlockNo(keep).cipher_off());
        assert_eq!(f.plain_len().unwrap(), keep * PLAIN_BLOCK);
        let e = assert_corrupt(read_block(&f, keep - 1), &format!("cut after block {keep}"));
        assert!(
            matches!(
                e,
                VaultError::Corrupt {
                    damage: Damage::Block(BlockFault::NotFinal),
                    ..
                }
            ),
            "{e}"
        );
        let mut all = vec![0u8; SIZE];
        assert_corrupt(f.read_at(&mut all, 0), "whole read after boundary cut");
        if keep > 1 {
            assert_eq!(read_block(&f, 0).unwrap(), want[..B]);
        }
        assert_eq!(f.verify_all().unwrap(), vec![keep - 1]);
    }
    // Mid-block: inside the last block, inside a middle block, inside a nonce / tag.
    let mid_cuts = [
        orig.len() as u64 - 1,
        orig.len() as u64 - 16,
        BlockNo(BLOCKS - 1).cipher_off() + 20,
        BlockNo(2).cipher_off() + 1000,
        BlockNo(2).cipher_off() + 5,
        BlockNo(1).cipher_off() + CIPHER_BLOCK - 1,
        10,
    ];
    for len in mid_cuts {
        let f = cut(len);
        let mut all = vec![0u8; SIZE];
        let r = f.read_at(&mut all, 0);
        assert_corrupt(r, &format!("whole read after cut to {len}"));
        // Reading up to the end of what is left is refused too.
        let end = f.plain_len().unwrap();
        if end > 0 {
            let mut last = vec![0u8; 10];
            assert_corrupt(f.read_at(&mut last, end - 10), &format!("tail read after cut to {len}"));
            // Blocks well before the cut still read.
            if end > PLAIN_BLOCK {
                assert_eq!(read_block(&f, 0).unwrap(), want[..B], "cut to {len}");
            }
        }
        match f.verify_all() {
            Ok(bad) => assert!(!bad.is_empty(), "fsck sees the cut to {len}"),
            Err(e) => assert!(e.is_corrupt(), "cut to {len}: {e}"),
        }
    }
    std::fs::write(&path, &orig).unwrap();
    check_blocks(&env.open(&entry), &want, &[], "restored");
}

/// FORMAT.md G26: after a cut at a block boundary, neither a write that replaces the whole
/// (non-final) last block nor a truncate below it may make the shorter file valid.
#[test]
fn boundary_cut_is_not_hidden_by_a_later_write_or_truncate() {
    let env = Env::new();
    let want = content(9);
    let entry = env.file(b"g26", &want);
    let path = env.path(&entry);
    let orig = std::fs::read(&path).unwrap();
    let cut = BlockNo(3).cipher_off();
    std::fs::write(&path, &orig[..cut as usize]).unwrap();
    let f = env.vault.open_file(&env.root, &entry, true).unwrap();
    let tampered = std::fs::read(&path).unwrap();

    let whole_last = vec![0xAB; B];
    assert_corrupt(
        f.write_at(&whole_last, 2 * PLAIN_BLOCK),
        "write over the whole last block",
    );
    assert_corrupt(
        f.write_at(&vec![0xCD; 3 * B], 2 * PLAIN_BLOCK),
        "write over the last block and past it",
    );
    assert_corrupt(f.set_len(PLAIN_BLOCK + 10), "truncate below the cut-off last block");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        tampered,
        "refused operations changed nothing"
    );
    assert_eq!(f.verify_all().unwrap(), vec![2], "the cut is still reported");

    // Writes that do not replace the last block, and untampered files, work as before.
    f.write_at(b"fine", 10).unwrap();
    assert_eq!(read_block(&f, 0).unwrap()[10..14], *b"fine");
    std::fs::write(&path, &orig).unwrap();
    let f = env.vault.open_file(&env.root, &entry, true).unwrap();
    f.write_at(&[0xEE; 100], 5 * PLAIN_BLOCK).unwrap();
    f.write_at(&whole_last, 4 * PLAIN_BLOCK).unwrap();
    f.set_len(PLAIN_BLOCK + 10).unwrap();
    assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new());
    assert_eq!(f.plain_len().unwrap(), PLAIN_BLOCK + 10);
    // Truncating a damaged file to zero stays possible (a fresh start).
    std::fs::write(&path, &tampered).unwrap();
    let f = env.vault.open_file(&env.root, &entry, true).unwrap();
    f.set_len(0).unwrap();
    assert_eq!(f.plain_len().unwrap(), 0);
}

fn long_name(c: u8) -> Vec<u8> {
    vec![c; 200]
}

#[test]
fn swapped_or_edited_long_name_sidecars() {
    let env = Env::new();
    let (n1, n2) = (long_name(b'x'), long_name(b'y'));
    let c1 = env.vault.cipher_name(&env.root, &n1).unwrap();
    let c2 = env.vault.cipher_name(&env.root, &n2).unwrap();
    let (l1, l2) = (c1.long.clone().expect("long"), c2.long.clone().expect("long"));
    env.file(&n1, b"one");
    env.file(&n2, b"two");
    assert_eq!(env.vault.list(&env.root).unwrap().len(), 2);

    let (s1, s2) = (env.path(&l1.sidecar), env.path(&l2.sidecar));
    let (t1, t2) = (std::fs::read(&s1).unwrap(), std::fs::read(&s2).unwrap());
    // Swap the two sidecars' contents.
    for (p, t) in [(&s1, &t2), (&s2, &t1)] {
        std::fs::remove_file(p).unwrap();
        std::fs::write(p, t).unwrap();
    }
    assert_corrupt(env.vault.plain_name(&env.root, &c1.entry), "swapped sidecar 1");
    assert_corrupt(env.vault.plain_name(&env.root, &c2.entry), "swapped sidecar 2");
    assert!(
        env.vault.list(&env.root).unwrap().is_empty(),
        "no entry shows under a wrong name"
    );
    // The plaintext name still finds the right file (the entry name is the hash of its name).
    let (cn, _) = env.vault.lookup(&env.root, &n1).unwrap();
    let mut buf = [0u8; 3];
    env.open(&cn.entry).read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"one");

    // A sidecar whose content is a valid encoded name of another entry, or garbage.
    std::fs::remove_file(&s1).unwrap();
    std::fs::write(&s1, env.vault.cipher_name(&env.root, b"short").unwrap().entry).unwrap();
    assert_corrupt(
        env.vault.plain_name(&env.root, &c1.entry),
        "foreign short name in sidecar",
    );
    std::fs::remove_file(&s1).unwrap();
    std::fs::write(&s1, b"\xff\x00garbage").unwrap();
    assert_corrupt(env.vault.plain_name(&env.root, &c1.entry), "garbage sidecar");
    // A missing sidecar is an error for that entry only.
    std::fs::remove_file(&s1).unwrap();
    assert!(env.vault.plain_name(&env.root, &c1.entry).is_err());
    std::fs::remove_file(&s2).unwrap();
    std::fs::write(&s2, &t2).unwrap();
    let names: Vec<_> = env
        .vault
        .list(&env.root)
        .unwrap()
        .into_iter()
        .map(|e| e.plain)
        .collect();
    assert_eq!(names, vec![n2]);
}

#[test]
fn renamed_or_edited_short_names_do_not_decrypt() {
    let env = Env::new();
    let e = env.file(b"name.txt", b"x");
    let mut bad = e.clone();
    bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
    std::fs::rename(env.path(&e), env.path(&bad)).unwrap();
    assert_corrupt(env.vault.plain_name(&env.root, &bad), "edited short name");
    assert!(env.vault.list(&env.root).unwrap().is_empty());
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("coffer.conf");
    let mut v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(&p, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

fn flip_b64(s: &str) -> String {
    let mut b = s.as_bytes().to_vec();
    b[2] = if b[2] == b'A' { b'B' } else { b'A' };
    String::from_utf8(b).unwrap()
}

/// Every config field edit makes unlock refuse with a message, never a weakened open; the
/// recovery key also refuses a config whose authenticated fields changed.
#[test]
fn edited_config_fields_refuse_to_unlock() {
    type Edit = (&'static str, Box<dyn Fn(&mut serde_json::Value)>, &'static str);
    let edits: Vec<Edit> = vec![
        (
            "format_version 3",
            Box::new(|v| v["format_version"] = 3.into()),
            "newer",
        ),
        (
            "format_version 2",
            Box::new(|v| v["format_version"] = 2.into()),
            "missing field `vault_id`",
        ),
        (
            "format_version 0",
            Box::new(|v| v["format_version"] = 0.into()),
            "format_version",
        ),
        (
            "feature_flags reverse",
            Box::new(|v| v["feature_flags"] = serde_json::json!(["reverse"])),
            "modified",
        ),
        (
            "feature_flags unknown",
            Box::new(|v| v["feature_flags"] = serde_json::json!(["sparkles"])),
            "sparkles",
        ),
        (
            "long_name_limit in range",
            Box::new(|v| v["long_name_limit"] = 100.into()),
            "modified",
        ),
        (
            "long_name_limit too big",
            Box::new(|v| v["long_name_limit"] = 250.into()),
            "long_name_limit",
        ),
        (
            "name_encoding base32",
            Box::new(|v| v["name_encoding"] = "base32".into()),
            "modified",
        ),
        (
            "name_encoding unknown",
            Box::new(|v| v["name_encoding"] = "rot13".into()),
            "rot13",
        ),
        (
            "kdf algorithm",
            Box::new(|v| v["kdf"]["algorithm"] = "scrypt".into()),
            "scrypt",
        ),
        ("kdf m", Box::new(|v| v["kdf"]["m_kib"] = 16.into()), "modified"),
        ("kdf t", Box::new(|v| v["kdf"]["t"] = 2.into()), "modified"),
        (
            "kdf p",
            Box::new(|v| {
                v["kdf"]["p"] = 2.into();
                v["kdf"]["m_kib"] = 16.into();
            }),
            "modified",
        ),
        (
            "kdf salt",
            Box::new(|v| v["kdf"]["salt"] = flip_b64(v["kdf"]["salt"].as_str().unwrap()).into()),
            "modified",
        ),
        ("kdf salt short", Box::new(|v| v["kdf"]["salt"] = "AAAA".into()), "salt"),
        (
            "wrapped key",
            Box::new(|v| v["wrapped_master_key"] = flip_b64(v["wrapped_master_key"].as_str().unwrap()).into()),
            "password",
        ),
        (
            "mac",
            Box::new(|v| v["config_mac"] = flip_b64(v["config_mac"].as_str().unwrap()).into()),
            "modified",
        ),
        (
            "mac missing bytes",
            Box::new(|v| v["config_mac"] = "AAAA".into()),
            "modified",
        ),
        ("unknown key", Box::new(|v| v["extra"] = true.into()), "extra"),
        (
            "missing key",
            Box::new(|v| {
                v.as_object_mut().unwrap().remove("kdf");
            }),
            "kdf",
        ),
    ];
    for (what, edit, msg) in edits {
        let tmp = tempfile::tempdir().unwrap();
        // Config version 1, whose fields these edits name; config version 2's are edited in
        // src/format/config.rs's tests.
        let master = unlock::init_version(
            tmp.path(),
            None,
            PW,
            &VaultParams::default(),
            KdfCost::INSECURE_TEST,
            coffer::format::CONFIG_V1,
        )
        .unwrap();
        let recovery = recovery::encode(master.expose(), &VaultParams::default());
        let before = std::fs::read(tmp.path().join("coffer.conf")).unwrap();
        edit_config(tmp.path(), edit);
        assert_ne!(before, std::fs::read(tmp.path().join("coffer.conf")).unwrap(), "{what}");
        let e = Vault::unlock(tmp.path(), None, PW, true).expect_err(what);
        let text = e.to_string();
        assert!(
            text.to_lowercase().contains(msg),
            "{what}: message `{text}` lacks `{msg}`"
        );
        // With the recovery key: a config that still parses must fail its MAC (except the
        // wrapped key, which the recovery key does not need).
        if let Ok(cfg) = unlock::read_config(&tmp.path().join("coffer.conf")) {
            let r = unlock::unlock_with_recovery_key(&recovery, Some(&cfg));
            if what == "wrapped key" {
                assert!(r.is_ok(), "{what}");
            } else {
                let e = r.expect_err(what);
                assert!(matches!(e, VaultError::ConfigTampered(_)), "{what}: {e}");
            }
        }
    }
}

#[test]
fn wrong_password_and_huge_kdf_memory() {
    let env = Env::new();
    let e = Vault::unlock(&env.dir, None, b"wrong", true).unwrap_err();
    assert!(matches!(e, VaultError::WrongPassword), "{e}");
    assert!(e.to_string().contains("wrong password"));
    let e = Vault::unlock(&env.dir, None, b"", true).unwrap_err();
    assert!(matches!(e, VaultError::WrongPassword), "{e}");

    // Above 256 MiB (4x the default, which is all init writes) is refused before any work.
    for m in [u32::MAX, 4 * 1024 * 1024 + 1, 1024 * 1024, 256 * 1024 + 1, 0, 7] {
        // Config version 3: the password slot's own KDF section.
        edit_config(&env.dir, |v| v["slots"][0]["kdf"]["m_kib"] = m.into());
        let t0 = Instant::now();
        let e = Vault::unlock(&env.dir, None, PW, true).unwrap_err();
        assert!(t0.elapsed() < Duration::from_secs(2), "m = {m} took {:?}", t0.elapsed());
        let e = e.to_string();
        assert!(
            e.contains("m_kib") || e.contains("more than 4x the default"),
            "m = {m}: {e}"
        );
    }
    for (field, val) in [
        ("t", u32::MAX),
        ("t", 17),
        ("t", 0),
        ("p", u32::MAX),
        ("p", 5),
        ("p", 0),
    ] {
        edit_config(&env.dir, |v| {
            v["slots"][0]["kdf"]["m_kib"] = 8.into();
            v["slots"][0]["kdf"][field] = val.into();
        });
        let e = Vault::unlock(&env.dir, None, PW, true).unwrap_err();
        assert!(e.to_string().contains(field), "{field} = {val}: {e}");
    }
    edit_config(&env.dir, |v| v["slots"][0]["kdf"]["m_kib"] = (1u64 << 32).into());
    assert!(Vault::unlock(&env.dir, None, PW, true).is_err());
    // The most expensive accepted cost (4x the default's memory x passes) is still a
    // wrong-password error (the config MAC is only checked once the key opens), after a
    // bounded wait.
    edit_config(&env.dir, |v| {
        v["slots"][0]["kdf"]["m_kib"] = (256 * 1024).into();
        v["slots"][0]["kdf"]["t"] = 6.into();
        v["slots"][0]["kdf"]["p"] = 4.into();
    });
    let t0 = Instant::now();
    let e = Vault::unlock(&env.dir, None, PW, true).unwrap_err();
    eprintln!("worst accepted KDF cost: {:?}", t0.elapsed());
    assert!(matches!(e, VaultError::WrongPassword), "{e}");
}

fn replace_symlink(path: &Path, target: &[u8]) {
    std::fs::remove_file(path).unwrap();
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), path).unwrap();
}

#[test]
fn symlink_target_tamper() {
    let env = Env::new();
    let a = env.vault.symlink(&env.root, b"la", b"/target/of/a").unwrap().entry;
    let long_target = vec![b'z'; 4095];
    let l = env.vault.symlink(&env.root, b"long", &long_target).unwrap().entry;
    assert_eq!(env.vault.readlink(&env.root, &a).unwrap(), b"/target/of/a");
    assert_eq!(env.vault.readlink(&env.root, &l).unwrap(), long_target);

    let pa = env.path(&a);
    let orig = std::fs::read_link(&pa).unwrap().into_os_string().into_vec();
    for pos in [0, orig.len() / 2, orig.len() - 2] {
        let mut t = orig.clone();
        t[pos] = if t[pos] == b'A' { b'B' } else { b'A' };
        replace_symlink(&pa, &t);
        assert_corrupt(env.vault.readlink(&env.root, &a), &format!("symlink byte {pos}"));
    }
    replace_symlink(&pa, b"not base64 !");
    assert_corrupt(env.vault.readlink(&env.root, &a), "non-base64 target");
    replace_symlink(&pa, b"AAAA");
    assert_corrupt(env.vault.readlink(&env.root, &a), "too short target");
    replace_symlink(&pa, &orig);
    assert_eq!(env.vault.readlink(&env.root, &a).unwrap(), b"/target/of/a");

    // The out-of-line target of a long symlink.
    let mut side = l.clone();
    side.extend_from_slice(b".link");
    let ps = env.path(&side);
    let sealed = std::fs::read(&ps).unwrap();
    for pos in [0, 20, sealed.len() - 1] {
        let mut t = sealed.clone();
        t[pos] ^= 1;
        std::fs::remove_file(&ps).unwrap();
        std::fs::write(&ps, &t).unwrap();
        assert_corrupt(env.vault.readlink(&env.root, &l), &format!("link sidecar byte {pos}"));
    }
    std::fs::remove_file(&ps).unwrap();
    std::fs::write(&ps, &sealed[..40]).unwrap();
    assert_corrupt(env.vault.readlink(&env.root, &l), "cut link sidecar");
    std::fs::remove_file(&ps).unwrap();
    assert!(env.vault.readlink(&env.root, &l).is_err(), "missing link sidecar");
}

#[test]
fn xattr_value_tamper_and_moves() {
    let env = Env::new();
    if !common::user_xattrs_supported(&env.dir) {
        eprintln!("CIPHERDIR's file system stores no user xattrs; not run");
        return;
    }
    let (fa, _) = env.vault.create_file(&env.root, b"a", 0o600).unwrap();
    let (fb, _) = env.vault.create_file(&env.root, b"b", 0o600).unwrap();
    let ida = fa.ensure_header().unwrap().file_id;
    let idb = fb.ensure_header().unwrap().file_id;
    let (fda, fdb) = (fa.backing().as_raw_fd(), fb.backing().as_raw_fd());
    env.vault.xattr_set(fda, &ida, b"user.one", b"value one", 0).unwrap();
    env.vault.xattr_set(fda, &ida, b"user.two", b"value two", 0).unwrap();
    env.vault.xattr_set(fdb, &idb, b"user.one", b"value b", 0).unwrap();

    let backing_names = coffer::vault::backing::flistxattr(fda).unwrap();
    assert_eq!(backing_names.len(), 2);
    let get = |fd, name: &[u8]| coffer::vault::backing::fgetxattr(fd, name).unwrap().unwrap();
    let set = |fd, name: &[u8], v: &[u8]| coffer::vault::backing::fsetxattr(fd, name, v, 0).unwrap();
    let (n1, n2) = (&backing_names[0], &backing_names[1]);
    let (v1, v2) = (get(fda, n1), get(fda, n2));
    let plain1 = env.vault.xattr_get(fda, &ida, b"user.one").unwrap().unwrap();
    assert_eq!(plain1, b"value one");
    // Which backing name is user.one?
    let one_is_n1 = env.vault.xattr_get(fda, &ida, b"user.one").unwrap() == Some(b"value one".to_vec())
        && v1.len() == v2.len()
        && {
            set(fda, n2, b"");
            let r = env.vault.xattr_get(fda, &ida, b"user.one").map(|v| v.is_some());
            set(fda, n2, &v2);
            matches!(r, Ok(true))
        };
    let (one, two, vone, vtwo) = if one_is_n1 {
        (n1, n2, &v1, &v2)
    } else {
        (n2, n1, &v2, &v1)
    };

    // Flipped bytes in the value.
    for pos in [0, 16, vone.len() - 1] {
        let mut t = vone.clone();
        t[pos] ^= 0x40;
        set(fda, one, &t);
        assert_corrupt(
            env.vault.xattr_get(fda, &ida, b"user.one"),
            &format!("xattr byte {pos}"),
        );
    }
    // A value moved to another attribute of the same file.
    set(fda, one, vtwo);
    assert_corrupt(
        env.vault.xattr_get(fda, &ida, b"user.one"),
        "value of user.two under user.one",
    );
    set(fda, one, vone);
    assert_eq!(
        env.vault.xattr_get(fda, &ida, b"user.one").unwrap().unwrap(),
        b"value one"
    );
    // A value moved to another file (same attribute name).
    set(fdb, one, vone);
    assert_corrupt(
        env.vault.xattr_get(fdb, &idb, b"user.one"),
        "user.one moved from file a to b",
    );
    // A value read with the wrong owner id (e.g. after the file's header changed).
    assert_corrupt(env.vault.xattr_get(fda, &idb, b"user.one"), "wrong owner");
    let _ = two;
}

/// Packed xattrs (an object with many): a flipped byte, a pack moved to another file and a
/// pack read under another owner ID all fail authentication; so does a listing.
#[test]
fn packed_xattr_tamper_and_moves() {
    use coffer::format::xattr_pack::{PACK3_BACKING_NAME, PACK_AFTER};
    let env = Env::new();
    if !common::user_xattrs_supported(&env.dir) {
        eprintln!("CIPHERDIR's file system stores no user xattrs; not run");
        return;
    }
    let (fa, _) = env.vault.create_file(&env.root, b"a", 0o600).unwrap();
    let (fb, _) = env.vault.create_file(&env.root, b"b", 0o600).unwrap();
    let ida = fa.ensure_header().unwrap().file_id;
    let idb = fb.ensure_header().unwrap().file_id;
    let (fda, fdb) = (fa.backing().as_raw_fd(), fb.backing().as_raw_fd());
    for i in 0..PACK_AFTER + 3 {
        let n = format!("user.n{i}");
        env.vault
            .xattr_set(fda, &ida, n.as_bytes(), b"packed value", 0)
            .unwrap();
        env.vault.xattr_set(fdb, &idb, n.as_bytes(), b"other value", 0).unwrap();
    }
    let pack = PACK3_BACKING_NAME.as_bytes();
    let get = |fd, name: &[u8]| coffer::vault::backing::fgetxattr(fd, name).unwrap().unwrap();
    let set = |fd, name: &[u8], v: &[u8]| coffer::vault::backing::fsetxattr(fd, name, v, 0).unwrap();
    let sealed = get(fda, pack);
    assert_eq!(coffer::vault::backing::flistxattr(fda).unwrap().len(), PACK_AFTER + 1);
    let last = format!("user.n{}", PACK_AFTER + 2);
    assert_eq!(
        env.vault.xattr_get(fda, &ida, last.as_bytes()).unwrap().unwrap(),
        b"packed value"
    );
    for pos in [0, 16, sealed.len() - 1] {
        let mut t = sealed.clone();
        t[pos] ^= 0x40;
        set(fda, pack, &t);
        assert_corrupt(
            env.vault.xattr_get(fda, &ida, last.as_bytes()),
            &format!("pack byte {pos}"),
        );
        assert_corrupt(env.vault.xattr_list(fda, &ida), &format!("listing, pack byte {pos}"));
    }
    set(fda, pack, &sealed);
    set(fdb, pack, &sealed);
    assert_corrupt(
        env.vault.xattr_get(fdb, &idb, last.as_bytes()),
        "pack moved from file a to b",
    );
    assert_corrupt(env.vault.xattr_get(fda, &idb, last.as_bytes()), "wrong owner");
    assert_eq!(env.vault.xattr_list(fda, &ida).unwrap().len(), PACK_AFTER + 3);
}

// ---- What the format cannot detect (documented in docs/FORMAT.md, pinned here) ----

/// Rolling a whole file back to an older version (header and all blocks) is not detected:
/// nothing outside the file records its current version.
#[test]
fn known_limit_whole_file_rollback() {
    let env = Env::new();
    let entry = env.file(b"a", b"version 1");
    let old = std::fs::read(env.path(&entry)).unwrap();
    let f = env.vault.open_file(&env.root, &entry, true).unwrap();
    f.write_at(b"version 2", 0).unwrap();
    std::fs::write(env.path(&entry), &old).unwrap();
    let mut buf = [0u8; 9];
    env.open(&entry).read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"version 1", "rollback reads as the old version");
}

/// Swapping the contents of two whole files in the same directory (or renaming the backing
/// entries over each other) is not detected: contents are not bound to names.
#[test]
fn known_limit_swapping_whole_files_between_names() {
    let env = Env::new();
    let ea = env.file(b"a", b"contents of a");
    let eb = env.file(b"b", b"contents of b");
    let (pa, pb) = (env.path(&ea), env.path(&eb));
    let tmp = env.dir.join("swap");
    std::fs::rename(&pa, &tmp).unwrap();
    std::fs::rename(&pb, &pa).unwrap();
    std::fs::rename(&tmp, &pb).unwrap();
    let f = env.vault.open_file_path(b"a").unwrap();
    let mut buf = [0u8; 13];
    f.read_at(&mut buf, 0).unwrap();
    assert_eq!(&buf, b"contents of b", "swap reads as the other file");
}

/// Swapping two symlinks' backing targets is not detected either: the target AAD is a constant
/// (like whole-file swaps, the target is not bound to the link's name).
#[test]
fn known_limit_swapping_symlink_targets() {
    let env = Env::new();
    let a = env.vault.symlink(&env.root, b"la", b"/one").unwrap().entry;
    let b = env.vault.symlink(&env.root, b"lb", b"/two").unwrap().entry;
    let ta = std::fs::read_link(env.path(&a)).unwrap().into_os_string().into_vec();
    let tb = std::fs::read_link(env.path(&b)).unwrap().into_os_string().into_vec();
    replace_symlink(&env.path(&a), &tb);
    replace_symlink(&env.path(&b), &ta);
    assert_eq!(env.vault.readlink(&env.root, &a).unwrap(), b"/two");
    assert_eq!(env.vault.readlink(&env.root, &b).unwrap(), b"/one");
}

/// Zeroing a full block before the last block turns it into a hole that reads as zeros: the
/// price of cheap sparse files (src/vault/codec.rs). The last block can never be zeroed so.
#[test]
fn known_limit_zeroed_middle_block_reads_as_hole() {
    let env = Env::new();
    let want = content(4);
    let entry = env.file(b"a", &want);
    let path = env.path(&entry);
    let orig = std::fs::read(&path).unwrap();
    let mut t = orig.clone();
    let r = cipher_block(&orig, 2);
    t[r].fill(0);
    std::fs::write(&path, &t).unwrap();
    let f = env.open(&entry);
    assert_eq!(read_block(&f, 2).unwrap(), vec![0u8; B], "zeroed block reads as zeros");
    assert_eq!(read_block(&f, 1).unwrap(), want[B..2 * B]);
    // The last block zeroed is an error, not a hole.
    let mut t = orig.clone();
    let r = cipher_block(&orig, BLOCKS - 1);
    t[r].fill(0);
    std::fs::write(&path, &t).unwrap();
    assert_corrupt(read_block(&env.open(&entry), BLOCKS - 1), "zeroed last block");
    // A zeroed full block that is the last block (file of exactly 2 blocks) too.
    let e2 = env.file(b"two", &want[..2 * B]);
    let p2 = env.path(&e2);
    let mut t = std::fs::read(&p2).unwrap();
    let r = cipher_block(&t, 1);
    t[r].fill(0);
    std::fs::write(&p2, &t).unwrap();
    let f = env.open(&e2);
    let mut buf = vec![0u8; B];
    assert_corrupt(f.read_at(&mut buf, PLAIN_BLOCK), "zeroed full last block");
}
