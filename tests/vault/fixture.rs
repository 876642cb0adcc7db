//! Opens the frozen vaults in tests/fixtures — vault-v1 (no feature flags, header-version-1
//! files) and vault-v2 (`block_sessions`, header-version-2 files, several write sessions) —
//! and checks every name, byte, symlink target and xattr against their manifest, so a change
//! that breaks either format fails CI.
//!
//! Each fixture was made once by `scripts/make-fixture NAME` (password "coffer fixture NAME",
//! KDF cost INSECURE_TEST). Git does not store xattrs: vault-NAME.xattrs holds the backing
//! xattrs, which this test puts back on a copy of the fixture before opening it.

use crate::support::vectors::{hex, to_hex};
use crate::support::{self, common};

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use coffer::format::backing_name::{classify, BackingName};
use coffer::format::config::FLAG_BLOCK_SESSIONS;
use coffer::format::offsets::{block_count, BlockNo};
use coffer::format::session::session_of;
use coffer::vault::{backing, unlock, Dir, Vault};
use common::copy_tree;
use sha2::{Digest, Sha256};

/// The frozen fixtures of config version 1: name, header version of their files.
const FIXTURES: [(&str, u16); 2] = [("v1", 1), ("v2", 2)];
/// Every frozen fixture: those, vault-v3 (config version 2, one layout-3 key epoch) and
/// vault-slots (config version 3: key slots; header version 3 files).
const ALL_FIXTURES: [(&str, u16); 4] = [("v1", 1), ("v2", 2), ("v3", 3), ("slots", 3)];

fn password(name: &str) -> Vec<u8> {
    format!("coffer fixture {name}").into_bytes()
}

/// A writable copy of fixture `name` with its backing xattrs restored.
fn fixture_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vault");
    copy_tree(&support::fixtures().join(format!("vault-{name}")), &dir);
    let xattrs = std::fs::read_to_string(support::fixtures().join(format!("vault-{name}.xattrs"))).unwrap();
    for line in xattrs.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        let f: Vec<&str> = line.split('\t').collect();
        let path = dir.join(std::ffi::OsStr::from_bytes(&hex(f[0])));
        let file = std::fs::File::open(&path).unwrap();
        backing::fsetxattr(file.as_raw_fd(), &hex(f[1]), &hex(f[2]), 0).unwrap();
    }
    (tmp, dir)
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

/// What the walk saw of the files' format: header versions, and the newest write session.
#[derive(Default)]
struct Seen {
    versions: std::collections::BTreeSet<u16>,
    newest_session: u32,
}

/// Walks the vault and writes manifest lines in the format scripts/make-fixture uses.
fn walk(v: &Vault, dir: &Dir, parent: &[u8], out: &mut Vec<String>, seen: &mut Seen) {
    for raw in dir.fd.list().unwrap() {
        let kind = classify(&raw.name, v.params().name_encoding);
        assert!(
            !matches!(kind, BackingName::Other | BackingName::Temp),
            "unexpected backing entry {raw:?}"
        );
    }
    let entries = v.list(dir).unwrap();
    for e in entries {
        let path = join(parent, &e.plain);
        let st = dir.fd.stat(&e.backing).unwrap();
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => {
                out.push(format!("d\t{}", to_hex(&path)));
                let child = dir.open_child(v, &e.backing).unwrap();
                walk(v, &child, &path, out, seen);
            }
            libc::S_IFLNK => {
                let t = v.readlink(dir, &e.backing).unwrap();
                out.push(format!(
                    "l\t{}\t{}\t{}",
                    to_hex(&path),
                    t.len(),
                    to_hex(&Sha256::digest(&t))
                ));
            }
            libc::S_IFREG => {
                let f = v.open_file(dir, &e.backing, false).unwrap();
                let size = f.plain_len().unwrap();
                let mut buf = vec![0u8; size as usize];
                assert_eq!(f.read_at(&mut buf, 0).unwrap() as u64, size);
                assert_eq!(
                    f.verify_all().unwrap(),
                    Vec::<u64>::new(),
                    "{}",
                    String::from_utf8_lossy(&path)
                );
                out.push(format!(
                    "f\t{}\t{}\t{}",
                    to_hex(&path),
                    size,
                    to_hex(&Sha256::digest(&buf))
                ));
                if let Some(h) = f.header().unwrap() {
                    seen.versions.insert(h.version);
                    if h.has_sessions() {
                        for b in 0..block_count(size) {
                            let mut nonce = [0u8; 16];
                            let n =
                                std::os::unix::fs::FileExt::read_at(f.backing(), &mut nonce, BlockNo(b).cipher_off());
                            assert_eq!(n.unwrap(), 16);
                            seen.newest_session = seen.newest_session.max(session_of(&nonce));
                        }
                    }
                }
                let fd = f.backing().as_raw_fd();
                let owner = f.header().unwrap().map_or([0u8; 16], |h| h.file_id);
                for name in v.xattr_list(fd, &owner).unwrap() {
                    let id = f.header().unwrap().expect("a file with xattrs has a header").file_id;
                    let val = v.xattr_get(fd, &id, &name).unwrap().unwrap();
                    out.push(format!("x\t{}\t{}\t{}", to_hex(&path), to_hex(&name), to_hex(&val)));
                }
            }
            m => panic!("unexpected file type {m:o}"),
        }
    }
}

fn manifest(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(support::fixtures().join(format!("vault-{name}.manifest"))).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(String::from)
        .collect()
}

#[test]
fn fixture_vaults_open_and_every_byte_matches() {
    for (name, version) in ALL_FIXTURES {
        let (_tmp, dir) = fixture_copy(name);
        let v = Vault::unlock(&dir, None, &password(name), true).unwrap();
        let mut got = Vec::new();
        let mut seen = Seen::default();
        walk(&v, &v.root_dir().unwrap(), b"", &mut got, &mut seen);
        got.sort();
        let want = manifest(name);
        assert!(want.len() >= 20, "manifest too small");
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g, w, "vault-{name}");
        }
        assert_eq!(got, want, "vault-{name}");
        assert_eq!(
            seen.versions.into_iter().collect::<Vec<_>>(),
            vec![version],
            "vault-{name}"
        );
        if version == 2 {
            assert!(
                seen.newest_session > 1,
                "vault-v2 holds files written in several sessions"
            );
        }
    }
    // The fixtures hold the same plaintext.
    assert_eq!(manifest("v1"), manifest("v2"));
    assert_eq!(manifest("v1"), manifest("v3"));
    assert_eq!(manifest("v1"), manifest("slots"));
}

#[test]
fn fixture_covers_what_issue_2_asks_for() {
    let want = manifest("v2");
    let has = |prefix: &str, pred: &dyn Fn(&[&str]) -> bool| {
        want.iter().any(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            f[0] == prefix && pred(&f)
        })
    };
    for size in ["0", "1", "4095", "4096", "4097", "1048576"] {
        assert!(has("f", &|f| f[2] == size), "a {size}-byte file");
    }
    assert!(has("f", &|f| hex(f[1]).len() >= 200), "a long name");
    assert!(
        has("f", &|f| std::str::from_utf8(&hex(f[1])).is_err()),
        "a non-UTF-8 name"
    );
    assert!(has("l", &|f| f[2] == "4095"), "a 4095-byte symlink target");
    assert!(has("l", &|f| f[2] != "4095"), "a short symlink");
    assert!(has("x", &|_| true), "an xattr");
    assert!(
        has("d", &|f| hex(f[1]).iter().filter(|&&c| c == b'/').count() >= 2),
        "nested dirs"
    );
    assert!(has("f", &|f| hex(f[1]) == b"sparse"), "a sparse file");
    let total: u64 = walk_size(&support::fixtures());
    // Four frozen vaults of about 1.2 MB each and the fsck fixtures.
    assert!(total < 6 << 20, "fixtures are {total} bytes");
}

fn walk_size(p: &Path) -> u64 {
    let md = std::fs::symlink_metadata(p).unwrap();
    if md.is_dir() {
        std::fs::read_dir(p)
            .unwrap()
            .map(|e| walk_size(&e.unwrap().path()))
            .sum()
    } else {
        md.len()
    }
}

#[test]
fn fixture_config_and_recovery_key() {
    for (name, version) in FIXTURES {
        let (_tmp, dir) = fixture_copy(name);
        let cfg = unlock::read_config(&dir.join("coffer.conf")).unwrap();
        assert_eq!(cfg.format_version, 1);
        assert_eq!(
            (
                cfg.kdf.as_ref().unwrap().m_kib,
                cfg.kdf.as_ref().unwrap().t,
                cfg.kdf.as_ref().unwrap().p
            ),
            (8, 1, 1)
        );
        assert_eq!(cfg.long_name_limit, 200);
        assert_eq!(cfg.name_encoding, "base64url");
        let flags: &[&str] = if version == 2 { &[FLAG_BLOCK_SESSIONS] } else { &[] };
        assert_eq!(cfg.feature_flags, flags, "vault-{name}");
        let by_pw = unlock::unlock_with_password(&cfg, &password(name)).unwrap();
        let text = std::fs::read_to_string(support::fixtures().join(format!("vault-{name}.recovery"))).unwrap();
        let (by_key, params) = unlock::unlock_with_recovery_key(text.trim(), Some(&cfg)).unwrap();
        assert_eq!(by_pw.expose(), by_key.expose());
        assert_eq!(params, cfg.params());
        // Without the config, the recovery key alone carries the parameters (flags included).
        let (_, alone) = unlock::unlock_with_recovery_key(text.trim(), None).unwrap();
        assert_eq!(alone, cfg.params());
        let other = if name == "v1" { "v2" } else { "v1" };
        assert!(matches!(
            Vault::unlock(&dir, None, &password(other), true),
            Err(coffer::vault::VaultError::WrongPassword)
        ));
    }
}

/// The frozen fixtures are still writable by this version: append to a file (which keeps its
/// header version), read back; in vault-v2 the write starts a new session.
#[test]
fn fixture_accepts_writes() {
    for (name, version) in ALL_FIXTURES {
        let (_tmp, dir) = fixture_copy(name);
        let v = Vault::unlock(&dir, None, &password(name), false).unwrap();
        let root = v.root_dir().unwrap();
        let cn = v.cipher_name(&root, b"size-4095").unwrap();
        let f = v.open_file(&root, &cn.entry, true).unwrap();
        let mut before = vec![0u8; 4095];
        f.read_at(&mut before, 0).unwrap();
        f.write_at(b"more", 4095).unwrap();
        let mut after = vec![0u8; 4099];
        assert_eq!(f.read_at(&mut after, 0).unwrap(), 4099);
        assert_eq!(&after[..4095], &before[..]);
        assert_eq!(&after[4095..], b"more");
        assert_eq!(f.header().unwrap().unwrap().version, version);
        assert!(f.verify_all().unwrap().is_empty());
        // A new file in either vault gets the vault's header version.
        let (g, _) = v.create_file(&root, b"new", 0o644).unwrap();
        g.write_at(b"x", 0).unwrap();
        assert_eq!(g.header().unwrap().unwrap().version, version, "vault-{name}");
    }
}

/// Mounts `v` at `mnt`, sets xattrs `user.n0..` (`count`) on `rel` and reads them back, then
/// unmounts; returns the config's bytes after the first `PACK_AFTER` (all sealed on their own).
fn set_xattrs_through_a_mount(v: Vault, mnt: &Path, rel: &str, count: usize, conf: &Path) -> Vec<u8> {
    use coffer::format::xattr_pack::PACK_AFTER;
    std::fs::create_dir_all(mnt).unwrap();
    let h = coffer::fs::spawn(v, mnt, &coffer::fs::MountOptions::default()).unwrap();
    let f = mnt.join(rel);
    let mut conf_after_singles = Vec::new();
    for i in 0..count {
        common::set_xattr(&f, &format!("user.n{i}"), format!("value {i}").as_bytes(), 0).unwrap();
        if i + 1 == PACK_AFTER {
            conf_after_singles = std::fs::read(conf).unwrap();
        }
    }
    for i in 0..count {
        let want = format!("value {i}").into_bytes();
        assert_eq!(common::get_xattr(&f, &format!("user.n{i}")).unwrap(), want);
    }
    h.unmount().unwrap();
    conf_after_singles
}

/// Whether the backing file of `rel` (in the vault's root) holds a pack.
fn has_pack(dir: &Path, password: &[u8], rel: &[u8]) -> bool {
    use coffer::format::xattr_pack::PACK_BACKING_NAME;
    let v = Vault::unlock(dir, None, password, true).unwrap();
    let cn = v.cipher_name(&v.root_dir().unwrap(), rel).unwrap();
    let f = std::fs::File::open(dir.join(std::ffi::OsStr::from_bytes(&cn.entry))).unwrap();
    backing::fgetxattr(f.as_raw_fd(), PACK_BACKING_NAME.as_bytes())
        .unwrap()
        .is_some()
}

/// vault-v2 was made before packed xattrs (`block_sessions` only). Mounted with the password,
/// it gains `xattr_packs` with its first pack, not before; every other config field stays;
/// the password and the old recovery key still open it, and every xattr reads back after a
/// remount.
#[test]
fn an_old_fixture_gains_xattr_packs_with_its_first_pack() {
    use coffer::format::config::FLAG_XATTR_PACKS;
    if !common::fuse_available() {
        return;
    }
    let (tmp, dir) = fixture_copy("v2");
    if !common::user_xattrs_supported(&dir) {
        eprintln!("the temp dir's file system stores no user xattrs; not run");
        return;
    }
    let conf = dir.join("coffer.conf");
    let frozen = std::fs::read(support::fixtures().join("vault-v2/coffer.conf")).unwrap();
    assert_eq!(std::fs::read(&conf).unwrap(), frozen);
    let before = unlock::read_config(&conf).unwrap();
    assert!(!before.params().has_flag(FLAG_XATTR_PACKS));

    let v = Vault::unlock(&dir, None, &password("v2"), false).unwrap();
    let after_singles = set_xattrs_through_a_mount(v, &tmp.path().join("mnt"), "size-4095", 8, &conf);
    assert_eq!(after_singles, frozen, "the config changed before a pack was needed");
    assert!(has_pack(&dir, &password("v2"), b"size-4095"));

    let after = unlock::read_config(&conf).unwrap();
    assert_eq!(after.feature_flags, [FLAG_BLOCK_SESSIONS, FLAG_XATTR_PACKS]);
    let unchanged = coffer::format::config::Config {
        feature_flags: before.feature_flags.clone(),
        wrapped_master_key: before.wrapped_master_key.clone(),
        config_mac: before.config_mac.clone(),
        ..after.clone()
    };
    assert_eq!(unchanged, before, "only the flags, the wrap and the MAC may change");
    let by_pw = unlock::unlock_with_password(&after, &password("v2")).unwrap();
    let text = std::fs::read_to_string(support::fixtures().join("vault-v2.recovery")).unwrap();
    let (by_key, params) = unlock::unlock_with_recovery_key(text.trim(), Some(&after)).unwrap();
    assert_eq!(by_pw.expose(), by_key.expose());
    assert!(params.has_flag(FLAG_XATTR_PACKS));

    // Reopened read-only, every xattr is there (eight names on top of the file's own).
    let v = Vault::unlock(&dir, None, &password("v2"), true).unwrap();
    assert!(v.has_xattr_packs());
    let mnt = tmp.path().join("mnt");
    let h = coffer::fs::spawn(v, &mnt, &coffer::fs::MountOptions::default()).unwrap();
    let names = common::list_xattr(&mnt.join("size-4095")).unwrap();
    for i in 0..8 {
        assert!(names.contains(&format!("user.n{i}")), "{names:?}");
        let want = format!("value {i}").into_bytes();
        assert_eq!(
            common::get_xattr(&mnt.join("size-4095"), &format!("user.n{i}")).unwrap(),
            want
        );
    }
    h.unmount().unwrap();
    assert_eq!(
        std::fs::read(support::fixtures().join("vault-v2/coffer.conf")).unwrap(),
        frozen,
        "the frozen fixture itself is never written"
    );
}

/// Opened by the recovery key, the config cannot be rewritten (nothing derives its key-wrap
/// key): vault-v2 writes no pack, every xattr is sealed on its own as before, and the config
/// stays byte-identical.
#[test]
fn an_old_fixture_opened_by_recovery_key_writes_no_pack() {
    if !common::fuse_available() {
        return;
    }
    let (tmp, dir) = fixture_copy("v2");
    if !common::user_xattrs_supported(&dir) {
        eprintln!("the temp dir's file system stores no user xattrs; not run");
        return;
    }
    let conf = dir.join("coffer.conf");
    let frozen = std::fs::read(&conf).unwrap();
    let cfg = unlock::read_config(&conf).unwrap();
    let text = std::fs::read_to_string(support::fixtures().join("vault-v2.recovery")).unwrap();
    let (master, params) = unlock::unlock_with_recovery_key(text.trim(), Some(&cfg)).unwrap();
    let v = Vault::open(&dir, &master, params, false).unwrap();
    set_xattrs_through_a_mount(v, &tmp.path().join("mnt"), "size-4095", 8, &conf);
    assert_eq!(std::fs::read(&conf).unwrap(), frozen);
    assert!(!has_pack(&dir, &password("v2"), b"size-4095"));
}

/// Migration: each frozen fixture, rekeyed (a layout-1 epoch for its key, a layout-3 one on
/// top), walked to the new epoch and finished, holds every name, byte, target and xattr of its
/// manifest in header-version-3 files, and opens with its password alone.
#[test]
fn the_fixtures_rekey_to_the_new_format_and_keep_every_byte() {
    use coffer::vault::migrate::Mode;
    use coffer::vault::rekey::{self, Finish};
    for (name, _) in FIXTURES {
        let (_tmp, dir) = fixture_copy(name);
        let conf = dir.join("coffer.conf");
        rekey::start_epoch(
            &dir,
            &conf,
            &coffer::vault::unlock::slots::Credential::Password(&password(name)),
        )
        .unwrap();
        let v = Vault::unlock(&dir, None, &password(name), false).unwrap();
        let done = v.migrate_to_newest(Mode::Move, &mut |_| {}).unwrap();
        assert!(done.left.is_empty() && done.files > 0, "vault-{name}: {done:?}");
        assert!(matches!(
            rekey::finish(
                &conf,
                &coffer::vault::unlock::slots::Credential::Password(&password(name)),
                &v
            )
            .unwrap(),
            Finish::Done(_)
        ));
        drop(v);
        let cfg = unlock::read_config(&conf).unwrap();
        assert_eq!(cfg.epochs().unwrap().unwrap().all().len(), 1, "vault-{name}");
        let v = Vault::unlock(&dir, None, &password(name), true).unwrap();
        let mut got = Vec::new();
        let mut seen = Seen::default();
        walk(&v, &v.root_dir().unwrap(), b"", &mut got, &mut seen);
        got.sort();
        assert_eq!(got, manifest(name), "vault-{name}");
        assert_eq!(seen.versions.into_iter().collect::<Vec<_>>(), vec![3], "vault-{name}");
    }
}

/// vault-v3: config version 2 with one layout-3 epoch; its password and its layout-2 recovery
/// key (with and without the config) open the same epoch; its files are header version 3 of
/// that epoch.
#[test]
fn fixture_v3_config_and_recovery_key() {
    use coffer::format::epochs::Layout;
    let (_tmp, dir) = fixture_copy("v3");
    let cfg = unlock::read_config(&dir.join("coffer.conf")).unwrap();
    assert_eq!(cfg.format_version, 2);
    let epochs = cfg.epochs().unwrap().unwrap();
    assert_eq!(epochs.all().len(), 1);
    assert_eq!(epochs.newest().layout, Layout::V3);
    let by_pw = unlock::unlock_with_password(&cfg, &password("v3")).unwrap();
    let text = std::fs::read_to_string(support::fixtures().join("vault-v3.recovery")).unwrap();
    assert_eq!(text.trim().chars().filter(char::is_ascii_hexdigit).count(), 116);
    let with = unlock::recovery_unlock(text.trim(), Some(&cfg), None).unwrap();
    assert_eq!(with.master.expose(), by_pw.expose());
    let alone = unlock::recovery_unlock(text.trim(), None, None).unwrap();
    assert_eq!(alone.master.expose(), by_pw.expose());
    assert_eq!(alone.newest.map(|n| n.id), Some(epochs.newest().id));
    let v = Vault::unlock(&dir, None, &password("v3"), true).unwrap();
    let root = v.root_dir().unwrap();
    let cn = v.cipher_name(&root, b"size-4095").unwrap();
    let h = v.open_file(&root, &cn.entry, false).unwrap().header().unwrap().unwrap();
    assert_eq!(h.epoch_id(), Some(epochs.newest().id));
}

/// vault-slots: config version 3 with a password, a key-file and an age slot; each opens the
/// same epoch and every byte of the manifest; the recovery key opens it with and without the
/// config; the slot list is what the fixture was made with.
#[test]
fn fixture_slots_open_with_every_slot() {
    use coffer::vault::unlock::slots::{describe, unlock_any, Credential};
    let (_tmp, dir) = fixture_copy("slots");
    let cfg = unlock::read_config(&dir.join("coffer.conf")).unwrap();
    assert_eq!(cfg.format_version, 3);
    let key_file = std::fs::read(support::fixtures().join("vault-slots.keyfile")).unwrap();
    let age_text = std::fs::read(support::fixtures().join("vault-slots.age")).unwrap();
    let ids = coffer::crypto::read_identities(&age_text, "vault-slots.age", coffer::crypto::NoCallbacks).unwrap();
    let pw = password("slots");
    let by = |c: Credential| unlock_any(&cfg, &c).unwrap().0;
    let key = by(Credential::Password(&pw));
    assert_eq!(by(Credential::KeyFile(&key_file)).expose(), key.expose());
    assert_eq!(by(Credential::Identities(&ids)).expose(), key.expose());
    let labels: Vec<(String, Option<String>)> = describe(&cfg, &key)
        .unwrap()
        .into_iter()
        .map(|v| (v.slot.kind.as_str().to_string(), v.info.label))
        .collect();
    assert_eq!(
        labels,
        [
            ("password".to_string(), None),
            ("keyfile".to_string(), Some("usb".to_string())),
            ("age".to_string(), Some("phone".to_string()))
        ]
    );
    let text = std::fs::read_to_string(support::fixtures().join("vault-slots.recovery")).unwrap();
    let alone = unlock::recovery_unlock(text.trim(), None, None).unwrap();
    assert_eq!(alone.master.expose(), key.expose());
    let with = unlock::recovery_unlock(text.trim(), Some(&cfg), None).unwrap();
    assert_eq!(with.master.expose(), key.expose());
    let keys = unlock::vault_keys(&cfg, &key).unwrap();
    let v = coffer::vault::Vault::open_with_keys(&dir, keys, cfg.params(), true).unwrap();
    let mut got = Vec::new();
    let mut seen = Seen::default();
    walk(&v, &v.root_dir().unwrap(), b"", &mut got, &mut seen);
    got.sort();
    assert_eq!(got, manifest("slots"));
}
