//! `coffer fsck` on the command line: clean vault, damaged block, JSON report, exit codes 0/1/2,
//! a 20000-level tree under a low descriptor limit.

use crate::support::cli as cli_common;
use crate::support::data::bytes;

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use cli_common::{coffer, coffer_limited, deep_vault_tree, fast_base, init_lib, passfile, put_file, remove_tree_flat};
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::{BlockNo, CIPHER_BLOCK};
use coffer::vault::Vault;

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
    let text = out.stdout_str();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let line = lines[0];
    assert!(
        line.starts_with(&format!("bad.bin (backing {}): blocks: ", name.trim_end())),
        "{line}"
    );
    assert!(line.ends_with("(blocks 2)"), "{line}");
    // Block 2 is the last: the order of the others cannot be checked (version 2).
    assert!(
        lines[1].starts_with(&format!(
            "bad.bin (backing {}): order_not_checkable: order of blocks not checkable: last block 2 ",
            name.trim_end()
        )),
        "{text}"
    );
    assert!(
        out.stderr.contains("coffer: error: 2 damaged items\n"),
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

/// Plaintext length of the files [`mixed_file`] makes: four whole blocks and 100 bytes.
pub(crate) const MIXED_LEN: usize = 4 * 4096 + 100;

/// Makes `name` at the vault root, a header-version-2 file of [`MIXED_LEN`] bytes (seed 7),
/// and returns its backing path. With `mix`, its backing file then holds two versions of it as
/// an in-place rewrite that stopped half way leaves them: block 1 of a newer version (bytes
/// 0xee at its start, written in a later session) before the older version's last block. With
/// `break_last`, one byte of its last block is flipped.
pub(crate) fn mixed_file(v: &Vault, cdir: &Path, name: &[u8], mix: bool, break_last: bool) -> PathBuf {
    put_file(v, name, &bytes(7, MIXED_LEN));
    let root = v.root_dir().unwrap();
    let entry = v.cipher_name(&root, name).unwrap().entry;
    let backing = cdir.join(std::ffi::OsStr::from_bytes(&entry));
    let older = std::fs::read(&backing).unwrap();
    let last_off = BlockNo(4).cipher_off() as usize;
    let mut bytes_now = older.clone();
    if mix {
        // Another handle: a new write session, the last block resealed with it first.
        let f = v.open_file(&root, &entry, true).unwrap();
        f.write_at(&[0xee; 10], 4096).unwrap();
        drop(f);
        bytes_now = std::fs::read(&backing).unwrap();
        bytes_now[last_off..].copy_from_slice(&older[last_off..]);
    }
    if break_last {
        bytes_now[last_off + 40] ^= 0x40;
    }
    std::fs::write(&backing, bytes_now).unwrap();
    backing
}

/// (plain path, kind, blocks, repaired) of each finding of a JSON report, sorted.
fn findings(j: &serde_json::Value) -> Vec<(String, String, Vec<u64>, bool)> {
    let mut v: Vec<_> = j["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["plain_path"].as_str().unwrap_or("?").to_string(),
                d["kind"].as_str().unwrap().to_string(),
                d["blocks"]
                    .as_array()
                    .map(|b| b.iter().map(|x| x.as_u64().unwrap()).collect())
                    .unwrap_or_default(),
                !d["repaired"].is_null(),
            )
        })
        .collect();
    v.sort();
    v
}

/// Blocks of two versions mixed (one newer than the last block) and the last block damaged:
/// reads cannot check the order, and fsck says so beside the damaged block, with and without
/// --repair (which cannot restore the order). A single-version file with a damaged last block
/// gets the same finding; a mix whose last block authenticates stays `mixed_versions`; a
/// one-block file has no order to check; an undamaged file stays clean.
#[test]
fn fsck_reports_an_order_it_cannot_check() {
    let t = tempfile::tempdir().unwrap();
    let cdir = t.path().join("v");
    let v = init_lib(&cdir, "pw");
    mixed_file(&v, &cdir, b"fine.bin", false, false);
    let mixed = mixed_file(&v, &cdir, b"mixed.bin", true, true);
    mixed_file(&v, &cdir, b"mixed-intact.bin", true, false);
    mixed_file(&v, &cdir, b"torn.bin", false, true);
    put_file(&v, b"small.bin", &bytes(8, 300));
    let root = v.root_dir().unwrap();
    let small = cdir.join(std::ffi::OsStr::from_bytes(
        &v.cipher_name(&root, b"small.bin").unwrap().entry,
    ));
    let mut raw = std::fs::read(&small).unwrap();
    raw[HEADER_LEN + 40] ^= 0x40;
    std::fs::write(&small, raw).unwrap();
    drop(v);
    let pf = passfile(t.path(), "pw", "pw");

    let order = |name: &str| (name.to_string(), "order_not_checkable".to_string(), vec![], false);
    let blocks = |name: &str, b: u64| (name.to_string(), "blocks".to_string(), vec![b], false);
    let want = vec![
        (
            "mixed-intact.bin".to_string(),
            "mixed_versions".to_string(),
            vec![1],
            false,
        ),
        blocks("mixed.bin", 4),
        order("mixed.bin"),
        blocks("small.bin", 0),
        blocks("torn.bin", 4),
        order("torn.bin"),
    ];
    let out = coffer(&["fsck", "--json", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings(&j), want);

    let out = coffer(&["fsck", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let text = out.stdout_str();
    let line = text
        .lines()
        .find(|l| l.starts_with("mixed.bin ") && l.contains("order_not_checkable"))
        .unwrap_or_else(|| panic!("no order line:\n{text}"));
    assert!(
        line.contains("order of blocks not checkable: last block 4 does not authenticate"),
        "{line}"
    );
    assert!(
        out.stderr.contains("coffer: error: 6 damaged items\n"),
        "{}",
        out.stderr
    );

    // --repair: the mix whose last block authenticates is resealed; the damaged last blocks
    // stay damaged and their order stays unchecked (nothing tells the versions apart).
    let before = std::fs::read(&mixed).unwrap();
    let out = coffer(&["fsck", "--repair", "--json", "--passfile", s(&pf), s(&cdir)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut want_repaired = want.clone();
    want_repaired[0] = (
        "mixed-intact.bin".to_string(),
        "mixed_versions".to_string(),
        vec![],
        true,
    );
    assert_eq!(findings(&j), want_repaired);
    assert_eq!(std::fs::read(&mixed).unwrap(), before, "--repair leaves it as it was");
}
