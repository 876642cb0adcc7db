//! Sync-client conflict copies, diriv conflicts and client temp files, at the vault layer.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use coffer::format::config::VaultParams;
use coffer::vault::{unlock, KdfCost, Vault};

fn new_vault(dir: &Path, limit: u16) -> Vault {
    let params = VaultParams {
        long_name_limit: limit,
        ..VaultParams::default()
    };
    let m = unlock::init(dir, None, b"pw", &params, KdfCost::INSECURE_TEST).unwrap();
    Vault::open(dir, &m, params, false).unwrap()
}

fn write(v: &Vault, path: &[u8], data: &[u8]) -> Vec<u8> {
    let (parent, name) = match path.iter().rposition(|&c| c == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&b""[..], path),
    };
    let dir = v.open_dir_path(parent).unwrap();
    let (f, cname) = v.create_file(&dir, name, 0o644).unwrap();
    f.write_at(data, 0).unwrap();
    cname.entry
}

fn read(v: &Vault, path: &[u8]) -> Vec<u8> {
    let f = v.open_file_path(path).unwrap();
    let mut buf = vec![0u8; f.plain_len().unwrap() as usize];
    let n = f.read_at(&mut buf, 0).unwrap();
    buf.truncate(n);
    buf
}

fn names(v: &Vault, dir: &[u8]) -> Vec<String> {
    let d = v.open_dir_path(dir).unwrap();
    let mut n: Vec<String> = v
        .list(&d)
        .unwrap()
        .into_iter()
        .map(|e| String::from_utf8_lossy(&e.plain).into_owned())
        .collect();
    n.sort();
    n
}

#[test]
fn every_client_pattern_shows_as_a_readable_file() {
    let tmp = tempfile::tempdir().unwrap();
    let v = new_vault(tmp.path(), 200);
    let entry = write(&v, b"report.txt", b"original");
    let other = tmp.path().join("other");
    std::fs::create_dir(&other).unwrap();
    // A second version of the same file: encrypt under the same name in a scratch vault? No:
    // copy the backing file and then overwrite the original through the vault.
    let e = String::from_utf8(entry.clone()).unwrap();
    let markers = [
        ".sync-conflict-20261125-101010-ABCDEFG",
        " (conflicted copy 2026-11-25 101010)",
        " (Jo's conflicted copy 2026-11-25)",
        " (1)",
        "-LAPTOP",
    ];
    for m in markers {
        std::fs::copy(tmp.path().join(&e), tmp.path().join(format!("{e}{m}"))).unwrap();
    }
    let f = v.open_file_path(b"report.txt").unwrap();
    drop(f);
    let shown = names(&v, b"");
    for m in markers {
        let want = format!("report{m}.txt");
        assert!(shown.contains(&want), "{want} not in {shown:?}");
        assert_eq!(read(&v, want.as_bytes()), b"original", "{want}");
    }
    // Rename and delete through the vault.
    let root = v.root_dir().unwrap();
    v.rename(&root, b"report (1).txt", &root, b"kept.txt", 0).unwrap();
    assert_eq!(read(&v, b"kept.txt"), b"original");
    v.unlink(&root, b"report-LAPTOP.txt").unwrap();
    let shown = names(&v, b"");
    assert!(!shown.contains(&"report-LAPTOP.txt".to_string()));
    assert!(!shown.contains(&"report (1).txt".to_string()));
    assert!(shown.contains(&"kept.txt".to_string()));
}

#[test]
fn long_name_conflict_copies_and_sidecar_copies() {
    let tmp = tempfile::tempdir().unwrap();
    let v = new_vault(tmp.path(), 60);
    let long = "a-rather-long-name-that-will-need-the-long-name-scheme.txt";
    let entry = String::from_utf8(write(&v, long.as_bytes(), b"L")).unwrap();
    assert!(entry.ends_with(".long"), "{entry}");
    let hash = entry.trim_end_matches(".long");
    let m = ".sync-conflict-20261125-101010-ABCDEFG";
    std::fs::copy(tmp.path().join(&entry), tmp.path().join(format!("{hash}{m}.long"))).unwrap();
    // The client also made a copy of the sidecar: it must stay hidden.
    std::fs::copy(
        tmp.path().join(format!("{hash}.name")),
        tmp.path().join(format!("{hash}{m}.name")),
    )
    .unwrap();
    let shown = names(&v, b"");
    let want = format!("a-rather-long-name-that-will-need-the-long-name-scheme{m}.txt");
    let mut expect = vec![long.to_string(), want.clone()];
    expect.sort();
    assert_eq!(shown, expect);
    assert_eq!(read(&v, want.as_bytes()), b"L");
    // Deleting the original keeps the sidecar the copy still needs.
    let root = v.root_dir().unwrap();
    v.unlink(&root, long.as_bytes()).unwrap();
    assert_eq!(read(&v, want.as_bytes()), b"L");
}

#[test]
fn diriv_conflict_keeps_every_file_visible() {
    let tmp = tempfile::tempdir().unwrap();
    let v = new_vault(tmp.path(), 200);
    let root = v.root_dir().unwrap();
    let dname = v.mkdir(&root, b"shared", 0o755).unwrap();
    write(&v, b"shared/from-a.txt", b"A");
    // Replica B made the same directory with another IV and a file in it; the sync client
    // merged both trees and kept B's diriv as a conflict copy.
    let d = tmp.path().join(std::ffi::OsStr::from_bytes(&dname.entry));
    let scratch = tempfile::tempdir().unwrap();
    std::fs::write(scratch.path().join("iv"), [7u8; 16]).unwrap();
    std::fs::copy(d.join("coffer.diriv"), scratch.path().join("a-iv")).unwrap();
    std::fs::set_permissions(
        d.join("coffer.diriv"),
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(d.join("coffer.diriv"), [7u8; 16]).unwrap();
    write(&v, b"shared/from-b.txt", b"B");
    // Now the conflict: coffer.diriv is A's again and B's is the copy.
    std::fs::copy(scratch.path().join("a-iv"), d.join("coffer.diriv")).unwrap();
    std::fs::write(d.join("coffer.sync-conflict-20261125-101010-ABCDEFG.diriv"), [7u8; 16]).unwrap();
    assert_eq!(names(&v, b"shared"), vec!["from-a.txt", "from-b.txt"]);
    assert_eq!(read(&v, b"shared/from-b.txt"), b"B");
    assert_eq!(read(&v, b"shared/from-a.txt"), b"A");
    // Both replicas created the same name under their own IV: both shown, disambiguated.
    std::fs::write(d.join("coffer.diriv"), [7u8; 16]).unwrap();
    write(&v, b"shared/from-a.txt", b"A2");
    std::fs::copy(scratch.path().join("a-iv"), d.join("coffer.diriv")).unwrap();
    let shown = names(&v, b"shared");
    assert_eq!(
        shown,
        vec!["from-a (coffer duplicate 1).txt", "from-a.txt", "from-b.txt"]
    );
    let dup = read(&v, b"shared/from-a (coffer duplicate 1).txt");
    let plain = read(&v, b"shared/from-a.txt");
    let mut both = vec![dup, plain];
    both.sort();
    assert_eq!(both, vec![b"A".to_vec(), b"A2".to_vec()]);
    // rmdir succeeds once only coffer's leftovers (diriv and its copy) remain.
    let dir = v.open_dir_path(b"shared").unwrap();
    for n in names(&v, b"shared") {
        v.unlink(&dir, n.as_bytes()).unwrap();
    }
    assert!(names(&v, b"shared").is_empty());
    v.rmdir(&root, b"shared").unwrap();
}

#[test]
fn sync_client_files_are_hidden_and_not_damage() {
    let tmp = tempfile::tempdir().unwrap();
    let v = new_vault(tmp.path(), 200);
    write(&v, b"a", b"x");
    for n in [".stfolder", ".syncthing.abc.tmp", "desktop.ini", ".~lock.x#", "~x.tmp"] {
        std::fs::write(tmp.path().join(n), b"junk").unwrap();
    }
    assert_eq!(names(&v, b""), vec!["a"]);
    let report = coffer::vault::fsck::fsck(&v, false, &mut |_| {}).unwrap();
    assert!(report.damage.is_empty(), "{:?}", report.damage);
    std::fs::write(tmp.path().join("unknown!"), b"junk").unwrap();
    let report = coffer::vault::fsck::fsck(&v, false, &mut |_| {}).unwrap();
    assert_eq!(report.damage.len(), 1, "{:?}", report.damage);
}

#[test]
fn rename_onto_another_hard_link_of_the_same_file_is_a_no_op() {
    let tmp = tempfile::tempdir().unwrap();
    let v = new_vault(tmp.path(), 60);
    let long = "a-long-name-so-that-the-sidecar-scheme-is-used-for-this-entry.txt";
    let entry = write(&v, long.as_bytes(), b"data");
    let root = v.root_dir().unwrap();
    v.link(&root, &entry, &root, b"short").unwrap();
    v.rename(&root, long.as_bytes(), &root, b"short", 0).unwrap();
    assert_eq!(names(&v, b""), vec![long.to_string(), "short".to_string()]);
    assert_eq!(read(&v, long.as_bytes()), b"data");
}
