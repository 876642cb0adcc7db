//! Fuzz-style property tests run in CI: no panic on any input for config parsing, header
//! parsing, block open (CryptFile over arbitrary backing bytes), name decoding, long-name
//! sidecars, recovery keys, symlink targets and xattr values. The same entry points have
//! cargo-fuzz targets in fuzz/ for longer runs.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use crate::support::epochs;
use coffer::format::backing_name::classify;
use coffer::format::config::{Config, VaultParams};
use coffer::format::epochs::EpochId;
use coffer::format::header::FileHeader;
use coffer::format::header::{FILE_V2, FILE_V3};
use coffer::format::names::{self, NameEncoding};
use coffer::format::offsets::CIPHER_BLOCK;
use coffer::format::recovery;
use coffer::vault::{backing, unlock, CryptFile, KdfCost, Vault, VaultKeys};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

const ENCODINGS: [NameEncoding; 2] = [NameEncoding::Base64Url, NameEncoding::Base32];

fn bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..max)
}

/// JSON values that stress the config parser: huge and negative numbers, floats, long strings,
/// wrong types, nesting.
fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<u64>().prop_map(serde_json::Value::from),
        (0u32..300).prop_map(serde_json::Value::from),
        any::<f64>().prop_map(serde_json::Value::from),
        ".{0,40}".prop_map(serde_json::Value::from),
        prop::sample::select(vec!["argon2id", "base64url", "base32", "reverse", "AAAA", ""])
            .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A real config with some fields replaced by arbitrary JSON values (or removed).
fn mutated_config() -> impl Strategy<Value = Vec<u8>> {
    let keys = prop::sample::select(vec![
        "comment",
        "format_version",
        "feature_flags",
        "long_name_limit",
        "name_encoding",
        "kdf",
        "kdf.algorithm",
        "kdf.m_kib",
        "kdf.t",
        "kdf.p",
        "kdf.salt",
        "wrapped_master_key",
        "config_mac",
        "unknown",
    ]);
    prop::collection::vec((keys, prop::option::of(json_value())), 0..4).prop_map(|edits| {
        let mut c = Config::new(&VaultParams::default(), 8, 1, 1, &[7; 32]);
        c.set_wrapped_key(&[1; 64]);
        c.set_mac(&[2; 32]);
        let mut v: serde_json::Value = serde_json::from_slice(&c.to_json()).unwrap();
        for (key, val) in edits {
            let (obj, k) = match key.split_once('.') {
                Some((a, b)) => (v.get_mut(a).and_then(|x| x.as_object_mut()), b),
                None => (v.as_object_mut(), key),
            };
            if let Some(obj) = obj {
                match val {
                    Some(val) => obj.insert(k.to_string(), val),
                    None => obj.remove(k),
                };
            }
        }
        serde_json::to_vec(&v).unwrap()
    })
}

fn exercise_config(text: &[u8]) {
    let Ok(cfg) = Config::parse(text) else { return };
    let _ = cfg.canonical();
    let p = cfg.params();
    let _ = p.validate();
    // What parsed must re-serialize to an equal config.
    assert_eq!(Config::parse(&cfg.to_json()).unwrap(), cfg);
    // Only unlock when the KDF cost is small: bounds allow up to 4 GiB by design.
    if cfg.kdf.as_ref().unwrap().m_kib <= 256 && cfg.kdf.as_ref().unwrap().t <= 2 {
        assert!(
            unlock::unlock_with_password(&cfg, b"pw").is_err(),
            "random wrap must not open"
        );
    }
    let rk = recovery::encode(&[3; 32], &VaultParams::default());
    assert!(
        unlock::unlock_with_recovery_key(&rk, Some(&cfg)).is_err(),
        "random MAC must not verify"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn config_parse_any_bytes(text in bytes(600)) {
        exercise_config(&text);
    }

    #[test]
    fn config_parse_mutated_json(text in mutated_config()) {
        exercise_config(&text);
    }

    #[test]
    fn header_decode(b in bytes(40)) {
        if let Ok(h) = FileHeader::decode(&b) {
            prop_assert_eq!(&h.encode()[..], &b[..18]);
        }
    }

    #[test]
    fn name_decoding_and_classify(b in bytes(300), hash in "[A-Za-z0-9_-]{0,60}") {
        let _ = names::decode(&b);
        for enc in ENCODINGS {
            if let Ok(raw) = enc.decode(&b) {
                let again = enc.encode(&raw);
                prop_assert_eq!(again.as_bytes(), &b[..]);
            }
            let _ = classify(&b, enc);
            let _ = enc.check_sidecar(&hash, &b);
            let _ = enc.check_sidecar(&enc.long_hash(&String::from_utf8_lossy(&b)), &b);
        }
    }

    #[test]
    fn recovery_key_any_text(s in ".{0,120}", hexish in "[0-9a-fA-F -]{70,100}") {
        let _ = recovery::decode(&s);
        let _ = recovery::decode(&hexish);
    }

    /// Structurally valid keys (right length, right checksum) with arbitrary fields.
    #[test]
    fn recovery_key_valid_checksum(body in prop::collection::vec(any::<u8>(), 38), v1 in any::<bool>()) {
        let mut raw = body.clone();
        if v1 {
            raw[0..2].copy_from_slice(&coffer::format::CONFIG_V1.to_be_bytes());
        }
        let check = Sha256::digest(&raw);
        raw.extend_from_slice(&check[..4]);
        let text: String = raw.iter().map(|b| format!("{b:02X}")).collect();
        if let Ok(r) = recovery::decode(&text) {
            prop_assert_eq!(&r.key[..], &raw[6..38]);
            prop_assert!(r.params.validate().is_ok());
            prop_assert!(r.newest.is_none());
        }
    }

    /// Structurally valid layout-2 keys with arbitrary fields.
    #[test]
    fn recovery_key_v2_valid_checksum(body in prop::collection::vec(any::<u8>(), 54), v2 in any::<bool>()) {
        let mut raw = body.clone();
        if v2 {
            raw[0..2].copy_from_slice(&coffer::format::CONFIG_V2.to_be_bytes());
        }
        let check = Sha256::digest(&raw);
        raw.extend_from_slice(&check[..4]);
        let text: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        if let Ok(r) = recovery::decode(&text) {
            prop_assert_eq!(&r.key[..], &raw[22..54]);
            prop_assert!(r.newest.is_some());
        }
    }
}

/// A layout-1 epoch (header version 2) and a newest, layout-3 one (header version 3).
fn keys() -> Arc<VaultKeys> {
    Arc::new(
        VaultKeys::from_epochs(vec![
            epochs::layout1([0x5c; 32], EpochId([1; 4])),
            epochs::layout3([0x5c; 32], EpochId([0x5c; 4])),
        ])
        .unwrap(),
    )
}

/// Backing bytes: arbitrary, or a real encrypted file with bytes flipped, cut or appended.
fn backing_bytes() -> impl Strategy<Value = Vec<u8>> {
    let real = (
        0usize..3 * 4096 + 200,
        prop::sample::select(vec![FILE_V2, FILE_V3]),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        prop::option::of(0usize..3 * CIPHER_BLOCK as usize + 300),
        bytes(40),
    )
        .prop_map(|(len, version, flips, cut, tail)| {
            let tmp = tempfile::tempfile().unwrap();
            let f = CryptFile::new(tmp.try_clone().unwrap(), keys(), "gen".into(), version);
            f.write_at(&vec![0xabu8; len], 0).unwrap();
            let mut b = vec![0u8; tmp.metadata().unwrap().len() as usize];
            tmp.read_exact_at(&mut b, 0).unwrap();
            if !b.is_empty() {
                for (i, x) in flips {
                    let i = i.index(b.len());
                    b[i] ^= x;
                }
            }
            if let Some(c) = cut {
                b.truncate(c);
            }
            b.extend_from_slice(&tail);
            b
        });
    prop_oneof![bytes(2 * CIPHER_BLOCK as usize + 100), real]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// CryptFile over arbitrary backing bytes: every call returns, none panics; a write that
    /// succeeds reads back.
    #[test]
    fn block_open_any_backing(
        b in backing_bytes(),
        reads in prop::collection::vec((0u64..3 * 4096 + 300, 0usize..9000), 1..4),
        write in (0u64..4 * 4096, bytes(5000)),
        new_len in 0u64..4 * 4096,
    ) {
        let tmp = tempfile::tempfile().unwrap();
        tmp.write_all_at(&b, 0).unwrap();
        let f = CryptFile::new(tmp, keys(), "fuzz".into(), FILE_V3);
        let _ = f.plain_len();
        let _ = f.header();
        let _ = f.verify_all();
        for (off, len) in reads {
            let mut buf = vec![0u8; len];
            if let Ok(n) = f.read_at(&mut buf, off) {
                prop_assert!(n <= len);
            }
            let _ = f.seek_data_hole(off, true);
            let _ = f.seek_data_hole(off, false);
        }
        let (off, data) = write;
        if f.write_at(&data, off).is_ok() && !data.is_empty() {
            let mut back = vec![0u8; data.len()];
            if let Ok(n) = f.read_at(&mut back, off) {
                prop_assert_eq!(n, data.len());
                prop_assert!(back == data, "a successful write must read back");
            }
        }
        let _ = f.set_len(new_len);
        let _ = f.repair_tail();
        let _ = f.repair_ahead();
        let _ = f.verify_all();
    }
}

struct VaultEnv {
    _tmp: tempfile::TempDir,
    vault: Vault,
}

fn vault_env() -> VaultEnv {
    vault_env_of(coffer::format::CONFIG_V2)
}

/// A new vault of config version `version` (2: one layout-3 epoch; 1: the old master key).
fn vault_env_of(version: u16) -> VaultEnv {
    let tmp = tempfile::tempdir().unwrap();
    unlock::init_version(
        tmp.path(),
        None,
        b"pw",
        &VaultParams::default(),
        KdfCost::INSECURE_TEST,
        version,
    )
    .unwrap();
    let vault = Vault::unlock(tmp.path(), None, b"pw", false).unwrap();
    VaultEnv { _tmp: tmp, vault }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Backing names and long-name sidecars with arbitrary content: plain_name and list return
    /// errors or skip, never panic, never show a name that did not decrypt.
    #[test]
    fn backing_names_and_sidecars(
        name in prop_oneof![bytes(80), "[A-Za-z0-9_-]{1,220}".prop_map(String::into_bytes)],
        sidecar in bytes(400),
        raw_name in bytes(60),
    ) {
        let env = vault_env();
        let v = &env.vault;
        let root = v.root_dir().unwrap();
        let _ = v.plain_name(&root, &name);
        // A syntactically valid encoded name that is not a real ciphertext.
        let enc = v.params().name_encoding.encode(&raw_name);
        prop_assert!(v.plain_name(&root, enc.as_bytes()).is_err());
        // A long entry with an arbitrary sidecar.
        let hash = v.params().name_encoding.long_hash("whatever");
        let dir = v.cipherdir();
        std::fs::write(dir.join(format!("{hash}.long")), b"").unwrap();
        std::fs::write(dir.join(format!("{hash}.name")), &sidecar).unwrap();
        let long_entry = format!("{hash}.long");
        prop_assert!(v.plain_name(&root, long_entry.as_bytes()).is_err());
        if !name.is_empty() && !name.contains(&b'/') && !name.contains(&0) && name != b"." && name != b".." {
            let _ = std::fs::write(dir.join(std::ffi::OsStr::from_bytes(&name)), b"");
        }
        let listed = v.list(&root).unwrap();
        prop_assert!(listed.is_empty(), "nothing here was made by coffer: {listed:?}");
    }

    /// Backing symlink targets and `.link` sidecars with arbitrary content never authenticate.
    #[test]
    fn symlink_target_decode(
        target in prop::collection::vec(1u8..=255, 1..600),
        sidecar in bytes(300),
    ) {
        let env = vault_env();
        let v = &env.vault;
        let root = v.root_dir().unwrap();
        let dir = v.cipherdir();
        std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), dir.join("L")).unwrap();
        prop_assert!(v.readlink(&root, b"L").is_err());
        std::os::unix::fs::symlink("coffer:link", dir.join("M")).unwrap();
        std::fs::write(dir.join("M.link"), &sidecar).unwrap();
        prop_assert!(v.readlink(&root, b"M").is_err());
    }

    /// Arbitrary backing xattr values (and names) never authenticate and never panic, in a
    /// vault of either config version. Junk under the name of the vault's own pack form
    /// (`user.coffer.pack3` with a layout-3 epoch, `user.coffer.pack` with a layout-1 key) fails
    /// the listing; any other `user.coffer.` name, the other form's included, is skipped.
    #[test]
    fn xattr_values(value in bytes(200), junk_name in "[A-Za-z0-9_-]{1,40}", old in any::<bool>()) {
        let env = vault_env_of(if old { coffer::format::CONFIG_V1 } else { coffer::format::CONFIG_V2 });
        let pack_name = if old { "pack" } else { "pack3" };
        let v = &env.vault;
        let root = v.root_dir().unwrap();
        let (f, _) = v.create_file(&root, b"f", 0o600).unwrap();
        let id = f.ensure_header().unwrap().file_id;
        let fd = f.backing().as_raw_fd();
        v.xattr_set(fd, &id, b"user.a", b"real", 0).unwrap();
        let bname = backing::flistxattr(fd).unwrap().remove(0);
        backing::fsetxattr(fd, &bname, &value, 0).unwrap();
        prop_assert!(v.xattr_get(fd, &id, b"user.a").is_err());
        backing::fsetxattr(fd, format!("user.coffer.{junk_name}").as_bytes(), &value, 0).unwrap();
        let listed = v.xattr_list(fd, &id);
        if junk_name == pack_name {
            // The packed xattrs' name: junk there does not authenticate.
            prop_assert!(listed.is_err(), "{listed:?}");
        } else {
            let listed = listed.unwrap();
            prop_assert!(listed == vec![b"user.a".to_vec()], "{listed:?}");
        }
        backing::fsetxattr(fd, format!("user.coffer.{pack_name}").as_bytes(), &value, 0).unwrap();
        prop_assert!(v.xattr_list(fd, &id).is_err());
        prop_assert!(v.xattr_get(fd, &id, b"user.b").is_err());
    }
}
