//! `coffer fsck` on the command line: clean vault, damaged block, JSON report, exit codes 0/1/2,
//! a 20000-level tree under a low descriptor limit.

use crate::support::cli as cli_common;
use crate::support::data::bytes;

use std::path::Path;

use cli_common::{coffer, coffer_limited, deep_vault_tree, fast_base, init_lib, passfile, put_file, remove_tree_flat};
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::CIPHER_BLOCK;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn fsck_reports_damage_with_plain_path_and_block() {
    let t = tempfile::tempdir().unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    put_file(&v, b"ok.txt", b"fine");
    put_file(&v, b"bad.bin", &bytes(1, 3 * 4096));
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");

    let out = coffer(&["fsck", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        out.stderr,
        "coffer: checked 2 files, 1 directories, 0 symlinks: clean\n"
    );

    let name = coffer(&["encrypt-name", "--passfile", s(&pf), s(&cdir), "bad.bin"], None).stdout_str();
    let backing = cdir.join(name.trim_end());
    let mut data = std::fs::read(&backing).unwrap();
    data[HEADER_LEN + 2 * CIPHER_BLOCK as usize + 30] ^= 1;
    std::fs::write(&backing, data).unwrap();

    let out = coffer(&["fsck", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = out.stdout_str();
    assert!(
        line.starts_with(&format!("bad.bin (backing {}): blocks: ", name.trim_end())),
        "{line}"
    );
    assert!(line.trim_end().ends_with("(blocks 2)"), "{line}");
    assert!(
        out.stderr.contains("coffer: error: 1 damaged items\n"),
        "{}",
        out.stderr
    );

    let out = coffer(&["fsck", "--json", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 1);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j["damage"][0]["plain_path"], "bad.bin");
    assert_eq!(j["damage"][0]["blocks"], serde_json::json!([2]));

    let bad = passfile(t.path(), "bad", "nope");
    let out = coffer(&["fsck", "--passfile", s(&bad), s(&cdir)], None);
    assert_eq!(out.code, 2, "wrong password: fsck could not run");
}

/// The first part of a (possibly huge) output, for assertion messages.
fn head(text: &str) -> String {
    text.chars().take(2000).collect()
}

/// A 20000-level tree checked under RLIMIT_NOFILE 256 (soft and hard). Before, the walk
/// recursed once per level holding a descriptor per level: out of descriptors at level ~250,
/// and out of stack further down.
#[test]
fn fsck_checks_a_20000_level_tree_under_256_descriptors() {
    const DEPTH: usize = 20000;
    let t = tempfile::tempdir_in(fast_base()).unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    deep_vault_tree(&v, DEPTH, b"deep");
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");
    let t0 = std::time::Instant::now();
    let out = coffer_limited(&["fsck", "--passfile", s(&pf), s(&cdir)], 256);
    eprintln!("fsck of {DEPTH} levels: {:?}", t0.elapsed());
    remove_tree_flat(&cdir);
    assert_eq!(out.code, 0, "{}", head(&out.stderr));
    assert_eq!(
        out.stderr,
        format!(
            "coffer: checked 1 files, {} directories, 0 symlinks: clean\n",
            DEPTH + 1
        )
    );
}
