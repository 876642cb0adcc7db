//! fsck against committed, deliberately broken vaults (tests/fixtures/fsck-*/vault): the JSON
//! report of `coffer fsck`, of `fsck --repair` and of a second check must equal the committed
//! `report.json`, `repair.json` and `after.json` byte for byte, with exit codes 0 clean / 1
//! damage. `scripts/make-fsck-fixtures` rebuilds the fixtures (the `make_fixtures` test below,
//! which also checks that each report names exactly the planted damage).

use crate::support::{self, common};

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use coffer::format::config::VaultParams;
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::CIPHER_BLOCK;
use coffer::vault::{unlock, Dir, KdfCost, Vault};
use common::copy_tree;
use support::cli::fsck_json;

const PASSWORD: &str = "fixture password";
const CASES: &[&str] = &["clean", "content", "names", "dirs", "sessions"];

/// Runs `coffer fsck --json [extra]` on `dir`; returns (exit code, stdout).
fn fsck(dir: &Path, extra: &[&str]) -> (i32, String) {
    let pf = dir.with_extension("pass");
    std::fs::write(&pf, format!("{PASSWORD}\n")).unwrap();
    let out = fsck_json(dir, &pf, extra);
    assert!(out.code == 0 || out.code == 1, "fsck could not run: {}", out.stderr);
    (out.code, String::from_utf8(out.stdout).unwrap())
}

/// The (plain path or cipher path, kind, blocks, repaired?) of each finding, for the checks
/// that do not depend on random names.
fn summary(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let who = match d["plain_path"].as_str() {
                Some(p) => p.to_string(),
                None => format!("[{}]", d["cipher_path"].as_str().unwrap().rsplit('/').next().unwrap()),
            };
            let mut s = format!("{who} {}", d["kind"].as_str().unwrap());
            if let Some(b) = d["blocks"].as_array() {
                s += &format!(" {b:?}");
            }
            if d.get("repaired").is_some() {
                s += " repaired";
            }
            s
        })
        .collect()
}

/// Planted damage of each case, as `summary` shows it, sorted: (check, repair, after repair).
fn expected(case: &str) -> [Vec<&'static str>; 3] {
    let mut e = expected_unsorted(case);
    e.iter_mut().for_each(|v| v.sort());
    e
}

fn expected_unsorted(case: &str) -> [Vec<&'static str>; 3] {
    match case {
        "clean" => [vec![], vec![], vec![]],
        "content" => [
            vec![
                "boundary.bin blocks [Number(1)]",
                "flipped.bin blocks [Number(1)]",
                "short-header.bin header",
                "swapped-header.bin blocks [Number(0), Number(1)]",
                "torn.bin blocks [Number(2)]",
            ],
            vec![
                "boundary.bin blocks repaired",
                "flipped.bin blocks [Number(1)]",
                "short-header.bin blocks repaired",
                "swapped-header.bin blocks [Number(0), Number(1)]",
                "torn.bin blocks repaired",
            ],
            vec![
                "flipped.bin blocks [Number(1)]",
                "swapped-header.bin blocks [Number(0), Number(1)]",
            ],
        ],
        "names" => [
            vec![
                "[.coffer-tmp-crashed] stray_temp",
                "[README.txt] unknown",
                "[orphan] orphan_sidecar",
                "[no-sidecar] name",
                "[edited-sidecar] name",
                "[edited-sidecar] name",
                "[bad-short] name",
                "[orphan-link] orphan_sidecar",
            ],
            vec![
                "[.coffer-tmp-crashed] stray_temp repaired",
                "[README.txt] unknown",
                "[orphan] orphan_sidecar repaired",
                "[no-sidecar] name",
                "[edited-sidecar] name",
                "[edited-sidecar] name",
                "[bad-short] name",
                "[orphan-link] orphan_sidecar repaired",
            ],
            vec![
                "[README.txt] unknown",
                "[no-sidecar] name",
                "[edited-sidecar] name",
                "[edited-sidecar] name",
                "[bad-short] name",
            ],
        ],
        "sessions" => [
            vec![
                "mixed.bin mixed_versions [Number(0), Number(1), Number(2)]",
                "rolled-back-last.bin mixed_versions [Number(0)]",
            ],
            vec![
                "mixed.bin mixed_versions repaired",
                "rolled-back-last.bin mixed_versions repaired",
            ],
            vec![],
        ],
        "dirs" => [
            vec!["no-diriv diriv", "sub/lost-link symlink", "sub/tampered-link symlink"],
            vec!["no-diriv diriv", "sub/lost-link symlink", "sub/tampered-link symlink"],
            vec!["no-diriv diriv", "sub/lost-link symlink", "sub/tampered-link symlink"],
        ],
        _ => unreachable!(),
    }
}

/// Names whose backing name is random get a stable label in `summary`: the report's cipher
/// names are replaced by these labels before comparing.
fn labels(dir: &Path) -> Vec<(String, String)> {
    let p = dir.join("labels.txt");
    let Ok(text) = std::fs::read_to_string(p) else {
        return Vec::new();
    };
    text.lines()
        .filter_map(|l| l.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

/// `summary` with labels for random names, sorted (the report is in backing-name order).
fn labelled(summary: Vec<String>, labels: &[(String, String)]) -> Vec<String> {
    let mut v: Vec<String> = summary
        .into_iter()
        .map(|mut s| {
            for (cipher, label) in labels {
                s = s.replace(&format!("[{cipher}]"), &format!("[{label}]"));
            }
            s
        })
        .collect();
    v.sort();
    v
}

/// Runs the three checks on a copy of `vault`; returns the three (code, JSON) pairs.
fn run_case(vault: &Path) -> [(i32, String); 3] {
    let t = tempfile::tempdir().unwrap();
    let copy = t.path().join("vault");
    copy_tree(vault, &copy);
    let check = fsck(&copy, &[]);
    let repair = fsck(&copy, &["--repair"]);
    let after = fsck(&copy, &[]);
    [check, repair, after]
}

const FILES: [&str; 3] = ["report.json", "repair.json", "after.json"];

#[test]
fn fixtures_give_the_exact_reports() {
    for case in CASES {
        let dir = support::fixtures().join(format!("fsck-{case}"));
        assert!(
            dir.join("vault").is_dir(),
            "missing fixture {} (scripts/make-fsck-fixtures)",
            dir.display()
        );
        let got = run_case(&dir.join("vault"));
        let want = expected(case);
        for (i, (code, json)) in got.iter().enumerate() {
            let committed = std::fs::read_to_string(dir.join(FILES[i])).unwrap();
            assert_eq!(json, &committed, "fsck-{case}: {} differs", FILES[i]);
            assert_eq!(
                labelled(summary(json), &labels(&dir)),
                want[i],
                "fsck-{case}: {}",
                FILES[i]
            );
            let open = i == 1 && want[1].iter().any(|s| !s.ends_with("repaired"));
            let expect_code = i32::from(if i == 1 { open } else { !want[i].is_empty() });
            assert_eq!(*code, expect_code, "fsck-{case}: exit code of {}", FILES[i]);
        }
    }
}

#[test]
fn fsck_cannot_run_is_exit_2() {
    let t = tempfile::tempdir().unwrap();
    let dir = t.path().join("vault");
    copy_tree(&support::fixtures().join("fsck-clean/vault"), &dir);
    let run = |args: &[&str], pw: &str| {
        let pf = t.path().join("pw");
        std::fs::write(&pf, format!("{pw}\n")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_coffer"))
            .arg("fsck")
            .args(args)
            .arg("--passfile")
            .arg(&pf)
            .arg(&dir)
            .output()
            .unwrap()
            .status
            .code()
    };
    assert_eq!(run(&[], "wrong"), Some(2), "wrong password");
    assert_eq!(run(&[], PASSWORD), Some(0));
    std::fs::remove_file(dir.join("coffer.conf")).unwrap();
    assert_eq!(run(&[], PASSWORD), Some(2), "not a vault");
    assert_eq!(run(&["--repair"], PASSWORD), Some(2));
}

// ---------------------------------------------------------------------------------------------
// The generator (scripts/make-fsck-fixtures).

fn backing(dir: &Path, entry: &[u8]) -> PathBuf {
    dir.join(std::ffi::OsStr::from_bytes(entry))
}

fn put(v: &Vault, d: &Dir, name: &[u8], data: &[u8]) -> Vec<u8> {
    let (f, cn) = v.create_file(d, name, 0o644).unwrap();
    if !data.is_empty() {
        f.write_at(data, 0).unwrap();
    }
    cn.entry
}

fn data(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// Builds case `case` in `c` (an initialized vault); returns labels for random names.
fn build(case: &str, c: &Path) -> Vec<(String, String)> {
    let v = Vault::unlock(c, None, PASSWORD.as_bytes(), false).unwrap();
    let root = v.root_dir().unwrap();
    let mut labels = Vec::new();
    let mut label = |entry: &[u8], l: &str| labels.push((String::from_utf8(entry.to_vec()).unwrap(), l.to_string()));
    match case {
        "clean" => {
            put(&v, &root, b"empty", b"");
            put(&v, &root, b"three-blocks.bin", &data(1, 3 * 4096 + 7));
            put(&v, &root, "long name ".repeat(15).as_bytes(), b"long");
            v.mkdir(&root, b"dir", 0o755).unwrap();
            let d = v.open_dir_path(b"dir").unwrap();
            put(&v, &d, b"inner", b"inner file");
            v.symlink(&d, b"short-link", b"../empty").unwrap();
            v.symlink(&d, b"long-link", &vec![b'x'; 3500]).unwrap();
        }
        "content" => {
            let e = put(&v, &root, b"flipped.bin", &data(2, 3 * 4096));
            let p = backing(c, &e);
            let mut raw = std::fs::read(&p).unwrap();
            raw[HEADER_LEN + CIPHER_BLOCK as usize + 40] ^= 0x10;
            std::fs::write(&p, raw).unwrap();
            // An append interrupted after 20 of its bytes reached the disk.
            let e = put(&v, &root, b"torn.bin", &data(3, 2 * 4096));
            let p = backing(c, &e);
            let mut raw = std::fs::read(&p).unwrap();
            raw.extend_from_slice(&[0xA5; 20]);
            std::fs::write(&p, raw).unwrap();
            // Cut at a block boundary: the new last block is not sealed as final.
            let e = put(&v, &root, b"boundary.bin", &data(4, 3 * 4096));
            let p = backing(c, &e);
            let raw = std::fs::read(&p).unwrap();
            std::fs::write(&p, &raw[..HEADER_LEN + 2 * CIPHER_BLOCK as usize]).unwrap();
            // The header of another file of the same size.
            let a = put(&v, &root, b"swapped-header.bin", &data(5, 5000));
            let b = put(&v, &root, b"donor.bin", &data(6, 5000));
            let (pa, pb) = (backing(c, &a), backing(c, &b));
            let mut ra = std::fs::read(&pa).unwrap();
            let rb = std::fs::read(&pb).unwrap();
            ra[..HEADER_LEN].copy_from_slice(&rb[..HEADER_LEN]);
            std::fs::write(&pa, ra).unwrap();
            // A header cut short (a crash during the very first write).
            let e = put(&v, &root, b"short-header.bin", b"x");
            let p = backing(c, &e);
            let raw = std::fs::read(&p).unwrap();
            std::fs::write(&p, &raw[..10]).unwrap();
        }
        "names" => {
            // Orphan long-name sidecar: the entry is gone.
            let cn = v
                .cipher_name(&root, "orphaned long name ".repeat(10).as_bytes())
                .unwrap();
            let side = cn.long.unwrap();
            std::fs::write(backing(c, &side.sidecar), side.encoded.as_bytes()).unwrap();
            label(&side.sidecar, "orphan");
            // A long entry whose sidecar was deleted.
            let e = put(&v, &root, "sidecar deleted ".repeat(10).as_bytes(), b"data");
            let cn = v.cipher_name(&root, "sidecar deleted ".repeat(10).as_bytes()).unwrap();
            std::fs::remove_file(backing(c, &cn.long.unwrap().sidecar)).unwrap();
            label(&e, "no-sidecar");
            // A long entry whose sidecar was edited.
            let e = put(&v, &root, "sidecar edited ".repeat(10).as_bytes(), b"data");
            let cn = v.cipher_name(&root, "sidecar edited ".repeat(10).as_bytes()).unwrap();
            let side = cn.long.unwrap();
            let mut text = side.encoded.into_bytes();
            text[5] = if text[5] == b'A' { b'B' } else { b'A' };
            std::fs::write(backing(c, &side.sidecar), text).unwrap();
            label(&e, "edited-sidecar");
            label(&side.sidecar, "edited-sidecar");
            // A short name that does not decrypt (valid base64url, wrong SIV).
            let e = put(&v, &root, b"renamed", b"data");
            let mut bad = e.clone();
            bad[3] = if bad[3] == b'A' { b'B' } else { b'A' };
            std::fs::rename(backing(c, &e), backing(c, &bad)).unwrap();
            label(&bad, "bad-short");
            // A temp file left by a crash, a foreign file, an orphan symlink-target sidecar.
            std::fs::write(c.join(".coffer-tmp-crashed"), b"half a sidecar").unwrap();
            std::fs::write(c.join("README.txt"), b"not coffer's").unwrap();
            let cn = v.cipher_name(&root, b"gone symlink").unwrap();
            let mut link = cn.entry.clone();
            link.extend_from_slice(b".link");
            std::fs::write(backing(c, &link), b"whatever").unwrap();
            label(&link, "orphan-link");
            put(&v, &root, b"fine", b"fine");
        }
        "sessions" => {
            // Version-2 files (the vault has block_sessions). An in-place rewrite that stopped
            // after 3 of 6 blocks: the new blocks are newer than the old last block.
            let (f, e) = v.create_file(&root, b"mixed.bin", 0o644).unwrap();
            f.write_at(&data(7, 6 * 4096), 0).unwrap();
            let old = std::fs::read(backing(c, &e.entry)).unwrap();
            f.sync(true).unwrap();
            f.write_at(&data(8, 6 * 4096), 0).unwrap();
            let mut raw = std::fs::read(backing(c, &e.entry)).unwrap();
            let cut = HEADER_LEN + 3 * CIPHER_BLOCK as usize;
            raw[cut..].copy_from_slice(&old[cut..]);
            std::fs::write(backing(c, &e.entry), raw).unwrap();
            // The last block put back to its older version after a later write to block 0.
            let (f, e) = v.create_file(&root, b"rolled-back-last.bin", 0o644).unwrap();
            f.write_at(&data(9, 2 * 4096 + 100), 0).unwrap();
            let old = std::fs::read(backing(c, &e.entry)).unwrap();
            f.sync(true).unwrap();
            f.write_at(b"newer", 0).unwrap();
            let mut raw = std::fs::read(backing(c, &e.entry)).unwrap();
            let last = HEADER_LEN + 2 * CIPHER_BLOCK as usize;
            raw[last..].copy_from_slice(&old[last..]);
            std::fs::write(backing(c, &e.entry), raw).unwrap();
            // A file written in three sessions, as it should be.
            let (f, _) = v.create_file(&root, b"fine.bin", 0o644).unwrap();
            for (i, seed) in [10u8, 11, 12].into_iter().enumerate() {
                f.write_at(&data(seed, 4096), i as u64 * 4096).unwrap();
                f.sync(true).unwrap();
            }
        }
        "dirs" => {
            let cn = v.mkdir(&root, b"no-diriv", 0o755).unwrap();
            let d = v.open_dir_path(b"no-diriv").unwrap();
            put(&v, &d, b"kept so git keeps the directory", b"x");
            std::fs::remove_file(backing(c, &cn.entry).join("coffer.diriv")).unwrap();
            let scn = v.mkdir(&root, b"sub", 0o755).unwrap();
            let sub = v.open_dir_path(b"sub").unwrap();
            let sdir = backing(c, &scn.entry);
            let t = v.symlink(&sub, b"tampered-link", b"/some/target").unwrap();
            let p = backing(&sdir, &t.entry);
            let mut target = std::fs::read_link(&p).unwrap().into_os_string().into_vec();
            target[4] = if target[4] == b'A' { b'B' } else { b'A' };
            std::fs::remove_file(&p).unwrap();
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&target), &p).unwrap();
            let l = v.symlink(&sub, b"lost-link", &vec![b'y'; 3500]).unwrap();
            let mut side = l.entry.clone();
            side.extend_from_slice(b".link");
            std::fs::remove_file(backing(&sdir, &side)).unwrap();
            v.symlink(&sub, b"fine-link", b"fine").unwrap();
        }
        _ => unreachable!(),
    }
    labels
}

use std::os::unix::ffi::OsStringExt;

/// Rebuilds tests/fixtures/fsck-*; run by scripts/make-fsck-fixtures.
#[test]
#[ignore = "rebuilds the committed fixtures: scripts/make-fsck-fixtures"]
fn make_fixtures() {
    assert!(
        std::env::var_os("COFFER_MAKE_FSCK_FIXTURES").is_some(),
        "run scripts/make-fsck-fixtures"
    );
    // COFFER_FSCK_CASES=a,b rebuilds only those cases.
    let only = std::env::var("COFFER_FSCK_CASES").ok();
    let wanted = |case: &str| only.as_deref().is_none_or(|o| o.split(',').any(|c| c == case));
    for case in CASES.iter().filter(|c| wanted(c)) {
        let dir = support::fixtures().join(format!("fsck-{case}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let t = tempfile::tempdir().unwrap();
        let c = t.path().join("vault");
        std::fs::create_dir(&c).unwrap();
        // The committed fixtures are vaults of config version 1.
        unlock::init_version(
            &c,
            None,
            PASSWORD.as_bytes(),
            &VaultParams::default(),
            KdfCost::INSECURE_TEST,
            coffer::format::CONFIG_V1,
        )
        .unwrap();
        let labels = build(case, &c);
        copy_tree(&c, &dir.join("vault"));
        let text: String = labels.iter().map(|(a, b)| format!("{a} {b}\n")).collect();
        if !text.is_empty() {
            std::fs::write(dir.join("labels.txt"), text).unwrap();
        }
        let got = run_case(&dir.join("vault"));
        for (i, (_, json)) in got.iter().enumerate() {
            std::fs::write(dir.join(FILES[i]), json).unwrap();
            assert_eq!(
                labelled(summary(json), &labels),
                expected(case)[i],
                "fsck-{case}: {}",
                FILES[i]
            );
        }
    }
}
