//! The frozen diriv-conflict fixture, tests/fixtures/sync-diriv-conflict: directory `shared`
//! was made on two replicas; the sync client kept B's `coffer.diriv` and A's as the conflict
//! copy `coffer.sync-conflict-20261125-101010-AAAAAAA.diriv`. Entries made under either IV
//! (short, long, a subdirectory, the same name on both sides) all show through a mount, new
//! names go under `coffer.diriv`, and fsck finds nothing wrong.
//!
//! Regenerate (only if the format changes): `COFFER_REGEN_SYNC_FIXTURE=1 cargo test --test
//! sync_fixture -- --ignored`.

use crate::support::common;
use crate::support::sync as sync_util;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use coffer::format::config::VaultParams;
use coffer::vault::fsck::DamageKind;
use coffer::vault::{unlock, KdfCost, Vault};
use common::PASSWORD;
use sync_util::{names, Mounted};

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sync-diriv-conflict");
const COPY: &str = "coffer.sync-conflict-20261125-101010-AAAAAAA.diriv";
const LONG: &str = "a-name-long-enough-to-need-the-long-name-form-under-the-default-limit-of-two-hundred-encoded-characters-made-on-replica-a-with-some-more-words.txt";
const IV_B: [u8; 16] = *b"replica B's IV!!";

/// What `shared` shows: (name, content; None for the subdirectory).
fn expected() -> Vec<(String, Option<&'static [u8]>)> {
    let mut v: Vec<(String, Option<&[u8]>)> = vec![
        ("from-a.txt".into(), Some(b"made on A")),
        ("from-b.txt".into(), Some(b"made on B")),
        (LONG.into(), Some(b"long, from A")),
        ("same.txt".into(), Some(b"same name, B's file")),
        ("same (coffer duplicate 1).txt".into(), Some(b"same name, A's file")),
        ("sub-a".into(), None),
    ];
    v.sort();
    v
}

#[test]
#[ignore = "regenerates the committed fixture"]
fn regenerate_fixture() {
    if std::env::var_os("COFFER_REGEN_SYNC_FIXTURE").is_none() {
        return;
    }
    let out = Path::new(FIXTURE);
    let _ = fs::remove_dir_all(out);
    fs::create_dir_all(out).unwrap();
    // The committed fixture is a vault of config version 1, opened with its master key.
    let m = unlock::init_version(
        out,
        None,
        PASSWORD,
        &VaultParams::default(),
        KdfCost::INSECURE_TEST,
        coffer::format::CONFIG_V1,
    )
    .unwrap();
    let v = Vault::open(out, &m, VaultParams::default(), false).unwrap();
    let root = v.root_dir().unwrap();
    v.mkdir(&root, b"shared", 0o755).unwrap();
    let put = |dir: &[u8], name: &[u8], data: &[u8]| {
        let d = v.open_dir_path(dir).unwrap();
        let (f, _) = v.create_file(&d, name, 0o644).unwrap();
        f.write_at(data, 0).unwrap();
    };
    // Replica A's entries, under A's IV.
    put(b"shared", b"from-a.txt", b"made on A");
    put(b"shared", LONG.as_bytes(), b"long, from A");
    put(b"shared", b"same.txt", b"same name, A's file");
    let shared = v.open_dir_path(b"shared").unwrap();
    let long = v.cipher_name(&shared, LONG.as_bytes()).unwrap();
    assert!(long.long.is_some(), "LONG must need the long-name form");
    v.mkdir(&shared, b"sub-a", 0o755).unwrap();
    put(b"shared/sub-a", b"inner.txt", b"inside A's subdirectory");
    // The client's merge: B's diriv wins, A's becomes the conflict copy; then B's entries.
    let dir = out.join(&shared.rel);
    let iv_a = fs::read(dir.join("coffer.diriv")).unwrap();
    fs::write(dir.join(COPY), &iv_a).unwrap();
    fs::remove_file(dir.join("coffer.diriv")).unwrap();
    fs::write(dir.join("coffer.diriv"), IV_B).unwrap();
    put(b"shared", b"from-b.txt", b"made on B");
    put(b"shared", b"same.txt", b"same name, B's file");
}

/// A copy of the fixture, mounted.
fn mounted() -> Option<Mounted> {
    if !common::fuse_available() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path().join("cipher");
    common::copy_tree(Path::new(FIXTURE), &cipher);
    Some(Mounted::start(tmp, cipher))
}

#[test]
fn fixture_shows_every_entry_of_both_replicas() {
    let Some(m) = mounted() else { return };
    let shared = m.mnt.join("shared");
    let want: Vec<String> = expected().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names(&shared), want);
    for (name, content) in expected() {
        if let Some(c) = content {
            assert_eq!(fs::read(shared.join(&name)).unwrap(), c, "{name}");
        }
    }
    assert_eq!(names(&shared.join("sub-a")), vec!["inner.txt"]);
    assert_eq!(
        fs::read(shared.join("sub-a/inner.txt")).unwrap(),
        b"inside A's subdirectory"
    );
    // fsck checks every entry and reports only the diriv copy (gap G4), which --repair merges.
    let v = Vault::unlock(&m.cipher, None, PASSWORD, true).unwrap();
    let report = coffer::vault::fsck::fsck(&v, false, &mut |_| {}).unwrap();
    assert_eq!(report.files, 6);
    assert_eq!(report.damage.len(), 1, "{:#?}", report.damage);
    assert_eq!(report.damage[0].kind, DamageKind::Diriv);
    assert_eq!(report.damage[0].plain_path.as_deref(), Some("shared"));
}

/// Plaintext tree of a vault read through the library: path -> content (None for directories).
fn tree(v: &Vault, dir: &[u8], out: &mut Vec<(Vec<u8>, Option<Vec<u8>>)>) {
    let d = v.open_dir_path(dir).unwrap();
    for e in v.list(&d).unwrap() {
        let mut p = dir.to_vec();
        if !p.is_empty() {
            p.push(b'/');
        }
        p.extend_from_slice(&e.plain);
        if e.d_type == libc::DT_DIR {
            out.push((p.clone(), None));
            tree(v, &p, out);
        } else {
            let f = v.open_file_path(&p).unwrap();
            let mut buf = vec![0u8; f.plain_len().unwrap() as usize];
            f.read_at(&mut buf, 0).unwrap();
            out.push((p, Some(buf)));
        }
    }
    out.sort();
}

#[test]
fn fsck_repair_merges_the_diriv_copy_without_changing_what_shows() {
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path().join("cipher");
    common::copy_tree(Path::new(FIXTURE), &cipher);
    let v = Vault::unlock(&cipher, None, PASSWORD, false).unwrap();
    let mut before = Vec::new();
    tree(&v, b"", &mut before);
    let report = coffer::vault::fsck::fsck(&v, true, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:#?}", report.damage);
    let fixed = report.damage[0].repaired.as_deref().unwrap_or_default();
    assert!(
        fixed.contains("4 entries renamed") && fixed.contains("1 copies removed"),
        "{fixed}"
    );
    let mut after = Vec::new();
    tree(&v, b"", &mut after);
    assert_eq!(before, after, "the same names with the same contents");
    let d = v.open_dir_path(b"shared").unwrap();
    assert!(d.alt_ivs.is_empty());
    assert!(!cipher.join(&d.rel).join(COPY).exists());
    let report = coffer::vault::fsck::fsck(&v, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:#?}", report.damage);
    // Every name now decrypts under coffer.diriv alone.
    for e in v.list(&d).unwrap() {
        assert_eq!(v.cipher_name(&d, &e.plain).unwrap().entry, e.backing);
    }
}

#[test]
fn new_and_renamed_names_go_under_the_kept_diriv() {
    let Some(m) = mounted() else { return };
    let shared = m.mnt.join("shared");
    let v = Vault::unlock(&m.cipher, None, PASSWORD, false).unwrap();
    let d = v.open_dir_path(b"shared").unwrap();
    let dir = m.cipher.join(&d.rel);
    assert_eq!(fs::read(dir.join("coffer.diriv")).unwrap(), IV_B);
    let under_b = |plain: &str| {
        let c = coffer::vault::cipher_name_for(&v.keys(), v.params(), &IV_B, plain.as_bytes()).unwrap();
        dir.join(std::ffi::OsStr::from_bytes(&c.entry))
    };
    fs::write(shared.join("new.txt"), b"new").unwrap();
    assert!(under_b("new.txt").exists());
    fs::rename(shared.join("from-a.txt"), shared.join("moved.txt")).unwrap();
    assert!(
        under_b("moved.txt").exists(),
        "a renamed entry is re-encrypted under coffer.diriv"
    );
    assert_eq!(fs::read(shared.join("moved.txt")).unwrap(), b"made on A");
    // Renaming the duplicate away resolves it; deleting works for names under either IV.
    fs::rename(
        shared.join("same (coffer duplicate 1).txt"),
        shared.join("same-from-a.txt"),
    )
    .unwrap();
    assert_eq!(
        fs::read(shared.join("same-from-a.txt")).unwrap(),
        b"same name, A's file"
    );
    assert_eq!(fs::read(shared.join("same.txt")).unwrap(), b"same name, B's file");
    fs::remove_file(shared.join(LONG)).unwrap();
    fs::remove_dir_all(shared.join("sub-a")).unwrap();
    assert_eq!(
        names(&shared),
        vec!["from-b.txt", "moved.txt", "new.txt", "same-from-a.txt", "same.txt"]
    );
    // Emptied, the directory goes away along with both diriv files.
    for n in names(&shared) {
        fs::remove_file(shared.join(n)).unwrap();
    }
    fs::remove_dir(&shared).unwrap();
    assert!(!dir.exists());
}
