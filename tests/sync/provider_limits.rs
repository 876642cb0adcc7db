//! Provider limits chosen at init: `coffer init --longname-max N` and `--case-insensitive`,
//! checked by mounting the vault and looking at the names on both sides.

use crate::support::common;
use crate::support::sync as sync_util;

use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::process::Command;

use coffer::format::config::Config;
use common::{fuse_available, PASSWORD};
use sync_util::Mounted;

/// Runs `coffer init ARGS CIPHERDIR`; returns (exit code, stderr).
fn init(cipher: &Path, args: &[&str]) -> (i32, String) {
    let pass = cipher.with_file_name("pass");
    fs::write(&pass, [PASSWORD, b"\n"].concat()).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_coffer"))
        .arg("init")
        .args(args)
        .args(["--quiet", "--insecure-fast-kdf", "--passfile"])
        .arg(&pass)
        .arg(cipher)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A vault made by `coffer init ARGS`, mounted.
fn mounted(args: &[&str]) -> Option<Mounted> {
    if !fuse_available() {
        return None;
    }
    let tmp = tempfile::tempdir().unwrap();
    let cipher = tmp.path().join("cipher");
    let (code, err) = init(&cipher, args);
    assert_eq!(code, 0, "init {args:?}: {err}");
    Some(Mounted::start(tmp, cipher))
}

fn config(cipher: &Path) -> Config {
    Config::parse(&fs::read(cipher.join("coffer.conf")).unwrap()).unwrap()
}

/// Backing names in CIPHERDIR (recursively, relative names only).
fn backing_names(dir: &Path, out: &mut Vec<String>) {
    for e in fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = String::from_utf8_lossy(e.file_name().as_bytes()).into_owned();
        if name != "coffer.diriv" || dir.join("coffer.conf").exists() {
            out.push(name);
        }
        if e.file_type().unwrap().is_dir() {
            backing_names(&e.path(), out);
        }
    }
}

/// Writes files named `len` bytes long for each length, and returns their names.
fn write_names(m: &Mounted, lens: &[usize]) -> Vec<String> {
    let mut made = Vec::new();
    for &n in lens {
        let digits = n.to_string();
        let name = format!("{digits}{}", "x".repeat(n - digits.len()));
        assert_eq!(name.len(), n);
        fs::write(m.mnt.join(&name), name.as_bytes()).unwrap();
        made.push(name);
    }
    made
}

/// Checks the long-name limit with names of every length 1..=255: every backing name fits
/// `limit` (+ 5 for coffer's own suffixes), the short form is used right up to the limit, and
/// every name lists and reads back. Returns the longest plaintext name stored in short form.
fn check_limit(m: &Mounted, limit: usize) -> usize {
    let lens: Vec<usize> = (1..=255).collect();
    let names = write_names(m, &lens);
    let mut listed: Vec<String> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| String::from_utf8_lossy(e.unwrap().file_name().as_bytes()).into_owned())
        .collect();
    listed.sort();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listed, want);
    for n in &names {
        assert_eq!(fs::read(m.mnt.join(n)).unwrap(), n.as_bytes());
    }
    let mut backing = Vec::new();
    backing_names(&m.cipher, &mut backing);
    let shorts: Vec<&String> = backing.iter().filter(|b| !b.contains('.')).collect();
    let longs = backing.iter().filter(|b| b.ends_with(".long")).count();
    assert_eq!(shorts.len() + longs, 255, "{backing:?}");
    for b in &backing {
        assert!(b.len() <= limit + 5, "{b} ({} bytes) over limit {limit} + 5", b.len());
    }
    let longest = shorts.iter().map(|b| b.len()).max().unwrap_or(0);
    assert!(
        longest <= limit && longest + 22 > limit,
        "the short form is used up to the limit {limit}: longest short entry {longest}"
    );
    eprintln!("limit {limit}: names up to {} bytes are short", shorts.len());
    shorts.len()
}

#[test]
fn longname_max_143() {
    let Some(m) = mounted(&["--longname-max", "143"]) else {
        return;
    };
    assert_eq!(config(&m.cipher).long_name_limit, 143);
    let short = check_limit(&m, 143);
    assert!((70..=91).contains(&short), "{short}");
}

#[test]
fn longname_max_200_for_onedrive() {
    let Some(m) = mounted(&["--longname-max", "200"]) else {
        return;
    };
    assert_eq!(config(&m.cipher).long_name_limit, 200);
    let short = check_limit(&m, 200);
    assert!((110..=134).contains(&short), "{short}");
}

#[test]
fn case_insensitive_vault_has_upper_case_base32_names() {
    let Some(m) = mounted(&["--case-insensitive"]) else {
        return;
    };
    assert_eq!(config(&m.cipher).name_encoding, "base32");
    fs::write(m.mnt.join("Report.txt"), b"upper").unwrap();
    fs::write(m.mnt.join("report.txt"), b"lower").unwrap();
    fs::create_dir(m.mnt.join("Photos")).unwrap();
    fs::write(m.mnt.join("Photos/a"), b"a").unwrap();
    fs::write(m.mnt.join("Photos/A"), b"A").unwrap();
    symlink_and_long(&m);
    let mut backing = Vec::new();
    backing_names(&m.cipher, &mut backing);
    let mut folded: Vec<String> = backing.iter().map(|b| b.to_ascii_lowercase()).collect();
    folded.sort();
    folded.dedup();
    assert_eq!(
        folded.len(),
        backing.len(),
        "two backing names differ only in case: {backing:?}"
    );
    for b in &backing {
        let stem = b.split('.').next().unwrap();
        if b == "coffer.conf" || b == "coffer.diriv" {
            continue;
        }
        assert!(
            stem.bytes()
                .all(|c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c)),
            "{b} is not base32"
        );
    }
    assert_eq!(fs::read(m.mnt.join("Report.txt")).unwrap(), b"upper");
    assert_eq!(fs::read(m.mnt.join("report.txt")).unwrap(), b"lower");
    assert_eq!(fs::read(m.mnt.join("Photos/A")).unwrap(), b"A");
}

fn symlink_and_long(m: &Mounted) {
    std::os::unix::fs::symlink("Report.txt", m.mnt.join("link")).unwrap();
    assert_eq!(fs::read_link(m.mnt.join("link")).unwrap(), Path::new("Report.txt"));
    // base32 at the default limit 200: about 109 bytes short, 110 long.
    let names = write_names(m, &[105, 109, 110, 115, 255]);
    for n in &names {
        assert_eq!(fs::read(m.mnt.join(n)).unwrap(), n.as_bytes());
    }
}

#[test]
fn limits_are_checked_and_authenticated() {
    let tmp = tempfile::tempdir().unwrap();
    let c = tmp.path().join("c");
    for bad in [
        &["--longname-max", "300"][..],
        &["--longname-max", "47"],
        &["--case-insensitive", "--longname-max", "50"],
    ] {
        let (code, err) = init(&c, bad);
        assert_eq!(code, 2, "{bad:?} accepted: {err}");
        assert!(err.contains("long-name-limit"), "{bad:?}: {err}");
    }
    let (code, err) = init(&c, &["--case-insensitive", "--name-encoding", "base64url"]);
    assert_eq!(code, 2, "conflicting options accepted: {err}");
    let (code, err) = init(&c, &["--case-insensitive", "--longname-max", "143"]);
    assert_eq!(code, 0, "{err}");
    // Both live in the authenticated config: editing either makes the vault refuse to open.
    let text = fs::read_to_string(c.join("coffer.conf")).unwrap();
    for (from, to) in [("\"base32\"", "\"base64url\""), ("143", "144")] {
        fs::write(c.join("coffer.conf"), text.replace(from, to)).unwrap();
        let e = coffer::vault::Vault::unlock(&c, None, PASSWORD, true).unwrap_err();
        assert!(e.to_string().contains("modified"), "{from} -> {to}: {e}");
    }
}
