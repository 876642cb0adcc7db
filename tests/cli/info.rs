//! `coffer info` while a rekey is under way: without a password, it counts the files left
//! under each key epoch from their headers (a hard-linked file once), never follows a symlink
//! nor opens a FIFO, and counts apart empty files and files under an epoch the config does
//! not list. Once `coffer rekey` has moved everything, the older epoch shows 0 files; a vault
//! with one epoch gets no counts at all.

use std::path::Path;

use crate::support::cli as cli_common;
use crate::support::data::bytes;
use cli_common::{coffer, init_version, passfile, put_file};
use coffer::vault::Vault;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The epochs of the config at `v`, oldest first: (hex ID, seq).
fn epochs(v: &Path) -> Vec<(String, u64)> {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    cfg["epochs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["seq"].as_u64().unwrap()))
        .collect()
}

fn info(v: &Path) -> String {
    let out = coffer(&["info", s(v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    out.stdout_str()
}

/// A backing file header: version (u16 BE) | file ID, whose first 4 bytes are `epoch`.
fn header(version: u16, epoch: [u8; 4]) -> Vec<u8> {
    let mut h = version.to_be_bytes().to_vec();
    h.extend_from_slice(&epoch);
    h.extend_from_slice(&[0x5a; 12]);
    h
}

#[test]
fn info_counts_files_left_under_an_older_epoch_of_a_converted_vault() {
    files_left_by_epoch("1");
}

#[test]
fn info_counts_files_left_under_an_older_epoch_of_a_version_2_vault() {
    files_left_by_epoch("2");
}

fn files_left_by_epoch(version: &str) {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&v, &pf, version);
    // Four files with contents (one in a subdirectory, one with two names) and an empty one.
    let mut backing_bytes = 0u64;
    {
        let vault = Vault::unlock(&v, None, b"pw", false).unwrap();
        let root = vault.root_dir().unwrap();
        put_file(&vault, b"big.bin", &bytes(1, 300_000));
        put_file(&vault, b"note.txt", b"under the first key\n");
        put_file(&vault, b"one", b"linked");
        put_file(&vault, b"empty", b"");
        let (cn, _) = vault.lookup(&root, b"one").unwrap();
        vault.link(&root, &cn.entry, &root, b"two").unwrap();
        vault.mkdir(&root, b"docs", 0o755).unwrap();
        let docs = vault.open_dir_path(b"docs").unwrap();
        let (f, _) = vault.create_file(&docs, b"inner.txt", 0o600).unwrap();
        f.write_at(b"inside docs", 0).unwrap();
        for name in [&b"big.bin"[..], b"note.txt", b"one"] {
            backing_bytes += vault.lookup(&root, name).unwrap().1.st_size as u64;
        }
        backing_bytes += vault.lookup(&docs, b"inner.txt").unwrap().1.st_size as u64;
        assert_eq!(vault.lookup(&root, b"empty").unwrap().1.st_size, 0);
    }
    let one_epoch = info(&v);
    assert!(!one_epoch.contains("files by epoch"), "{one_epoch}");

    // A new epoch, as `coffer rekey` starts it, with nothing moved yet.
    let conf = v.join("coffer.conf");
    coffer::vault::rekey::start_epoch(&v, &conf, &coffer::vault::unlock::slots::Credential::Password(b"pw")).unwrap();
    let list = epochs(&v);
    assert_eq!(list.len(), 2, "{list:?}");
    let (old, new) = (&list[0].0, &list[1].0);
    assert_eq!((list[0].1, list[1].1), (0, 1));

    // What no listed epoch reads: a file sealed under another vault's epoch and one with an
    // unknown header version (both under names that look like entries). Left out: a symlink
    // to a directory of headers outside the vault, a symlink to a file, a FIFO, coffer's own
    // temporaries and a sync client's file.
    std::fs::write(v.join("QUFBQUFBQUFBQUFBQUFBQQ"), header(3, [0xde, 0xad, 0xbe, 0xef])).unwrap();
    std::fs::write(
        v.join("QkJCQkJCQkJCQkJCQkJCQg"),
        [header(9, [1; 4]), vec![0; 4]].concat(),
    )
    .unwrap();
    let outside = t.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    for i in 0..3 {
        std::fs::write(outside.join(format!("Q0NDQ0NDQ0NDQ0NDQ0NDQ{i}")), header(1, [7; 4])).unwrap();
    }
    std::os::unix::fs::symlink(&outside, v.join("RERERERERERERERERERERA")).unwrap();
    std::os::unix::fs::symlink(outside.join("Q0NDQ0NDQ0NDQ0NDQ0NDQ0"), v.join("RUVFRUVFRUVFRUVFRUVFRQ")).unwrap();
    let fifo = std::ffi::CString::new(s(&v.join("RkZGRkZGRkZGRkZGRkZGRg"))).unwrap();
    // SAFETY: a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    std::fs::write(v.join(".coffer-tmp-1"), header(1, [7; 4])).unwrap();
    std::fs::write(v.join(".DS_Store"), header(1, [7; 4])).unwrap();

    let old_layout = if version == "1" { 1 } else { 3 };
    let shown = info(&v);
    let human = format!("{:.1} KiB", backing_bytes as f64 / 1024.0);
    for want in [
        format!("key epochs:      {new} (#1, layout 3), {old} (#0, layout {old_layout}) (newest first)\n"),
        format!("files by epoch:  {new} (#1), the rekey target: 0 files, 0 bytes\n"),
        format!("                 {old} (#0): 4 files, {backing_bytes} bytes ({human}) left to re-encrypt\n"),
        "                 empty, nothing sealed yet: 1 files\n".to_string(),
        "                 under a key epoch this config does not list: 2 files, 40 bytes (epochs deadbeef)\n".into(),
        "                 file contents only: names, symlink targets and xattrs need the key".into(),
    ] {
        assert!(shown.contains(&want), "want {want:?} in:\n{shown}");
    }
    assert!(
        !shown.contains("damaged") && !shown.contains("could not be read"),
        "{shown}"
    );

    // `coffer rekey` continues the rekey and moves everything coffer can read; it exits 1, as
    // the planted files under an epoch the config does not list stay (and are named).
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(out.stderr.contains("does not list"), "{}", out.stderr);
    assert!(out.stderr.contains("continuing the rekey"), "{}", out.stderr);
    let shown = info(&v);
    assert!(
        shown.contains(&format!("{old} (#0): 0 files, 0 bytes left to re-encrypt\n")),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("{new} (#1), the rekey target: 4 files, ")),
        "{shown}"
    );
    assert!(
        shown.contains("under a key epoch this config does not list: 2 files, 40 bytes"),
        "{shown}"
    );

    // The planted files keep `--finish` from forgetting the older epoch, and info still
    // counts them.
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let shown = info(&v);
    assert!(shown.contains("files by epoch"), "{shown}");
    let _ = new;
}

/// A tree deeper than the descriptor limit is walked whole: the census keeps its directory
/// descriptors within the walk budget (RLIMIT_NOFILE 24 here, 300 levels).
#[test]
fn info_walks_a_tree_deeper_than_the_descriptor_limit() {
    let t = tempfile::tempdir_in(cli_common::fast_base()).unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&v, &pf, "2");
    {
        let vault = Vault::unlock(&v, None, b"pw", false).unwrap();
        cli_common::deep_vault_tree(&vault, 300, b"at the bottom");
        put_file(&vault, b"top.txt", b"at the top");
    }
    coffer::vault::rekey::start_epoch(
        &v,
        &v.join("coffer.conf"),
        &coffer::vault::unlock::slots::Credential::Password(b"pw"),
    )
    .unwrap();
    let old = &epochs(&v)[0].0;
    let out = cli_common::coffer_limited(&["info", s(&v)], 24);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let shown = out.stdout_str();
    assert!(shown.contains(&format!("{old} (#0): 2 files, ")), "{shown}");
    assert!(!shown.contains("could not be read"), "{shown}");
    cli_common::remove_tree_flat(&v);
}
