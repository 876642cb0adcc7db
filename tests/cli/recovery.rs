//! Recovery: the key printed by `init` opens the vault after coffer.conf is lost.

use crate::support::cli as cli_common;

use crate::support::data::bytes;
use cli_common::{coffer, init_cli, passfile, put_file, recovery_key_from};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn recover_with_printed_key_after_config_loss() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let key = init_cli(&v, "pw");
    let vault = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
    let big = bytes(7, 10_000);
    put_file(&vault, b"big.bin", &big);
    put_file(&vault, b"small.txt", b"recover me\n");
    drop(vault);
    std::fs::remove_file(v.join("coffer.conf")).unwrap();

    // Without the config the password path says so.
    let out = coffer(&["cat", s(&v), "small.txt"], Some(b"pw\n"));
    assert_eq!(out.code, 4, "{}", out.stderr);

    let stdin = format!("{key}\n");
    let out = coffer(&["cat", "--masterkey", s(&v), "big.bin"], Some(stdin.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout == big, "big.bin differs after recovery");

    let outdir = t.path().join("out");
    let out = coffer(&["export", "--masterkey", s(&v), s(&outdir)], Some(stdin.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(outdir.join("small.txt")).unwrap(), b"recover me\n");
    assert_eq!(std::fs::read(outdir.join("big.bin")).unwrap(), big);

    // A typo is caught by the checksum.
    let mut typo = key.clone().into_bytes();
    typo[12] = if typo[12] == b'0' { b'1' } else { b'0' };
    let out = coffer(&["cat", "--masterkey", s(&v), "small.txt"], Some(&typo));
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "coffer: error: recovery key is malformed: checksum mismatch (typo?)\n\
         coffer: hint: give the recovery key exactly as `coffer init` printed it (hex groups; dashes and spaces are ignored)\n"
    );

    // Another vault's key (valid checksum) is refused, not shown as an empty vault.
    let other_key = init_cli(&t.path().join("other"), "pw");
    let out = coffer(
        &["cat", "--masterkey", s(&v), "small.txt"],
        Some(format!("{other_key}\n").as_bytes()),
    );
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "coffer: error: wrong recovery key: no file name in the vault root decrypts with it\n"
    );

    // passwd --masterkey writes a new config; the password works again.
    let out = coffer(
        &["passwd", "--masterkey", "--insecure-fast-kdf", s(&v)],
        Some(format!("{key}\nfresh\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(&["cat", s(&v), "small.txt"], Some(b"fresh\n"));
    assert_eq!(
        (out.code, out.stdout.as_slice()),
        (0, &b"recover me\n"[..]),
        "{}",
        out.stderr
    );
}

#[test]
fn masterkey_with_config_present_must_match_it() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let key = init_cli(&v, "pw");
    let other = init_cli(&t.path().join("o"), "pw");
    let out = coffer(
        &["encrypt-name", "--masterkey", s(&v), "x"],
        Some(format!("{key}\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(
        &["encrypt-name", "--masterkey", s(&v), "x"],
        Some(format!("{other}\n").as_bytes()),
    );
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "coffer: error: wrong recovery key: it does not match this vault's coffer.conf\n\
         coffer: hint: if coffer.conf belongs to another vault, move it away and retry\n"
    );
}

/// A config-version-2 vault (`init --config-version 2`): `info` lists its one key epoch, the
/// recovery key is the 116-digit layout 2 and opens the vault (fsck) with and without
/// `coffer.conf`, and `passwd --masterkey` without the config writes a config of the current
/// version (3: one password slot) with the same vault ID and epoch.
#[test]
fn a_version_2_vault_has_an_epoch_and_a_layout_2_recovery_key() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    let out = cli_common::init_version(&v, &pf, "2");
    let key = recovery_key_from(&out.stdout_str());
    assert_eq!(key.chars().filter(char::is_ascii_hexdigit).count(), 116, "{key}");
    let info = coffer(&["info", s(&v)], None).stdout_str();
    assert!(info.contains("format version:  2"), "{info}");
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    let id = cfg["epochs"][0]["id"].as_str().unwrap().to_string();
    assert!(
        info.contains(&format!("key epochs:      {id} (#0, layout 3)")),
        "{info}"
    );
    assert!(
        info.contains(&format!("vault ID:        {}", cfg["vault_id"].as_str().unwrap())),
        "{info}"
    );

    let stdin = format!("{key}\n");
    let out = coffer(&["fsck", "--masterkey", s(&v)], Some(stdin.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::rename(v.join("coffer.conf"), t.path().join("saved.conf")).unwrap();
    let out = coffer(&["fsck", "--masterkey", s(&v)], Some(stdin.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = passfile(t.path(), "new", "new-pw");
    let out = coffer(
        &[
            "passwd",
            "--masterkey",
            "--insecure-fast-kdf",
            "--new-passfile",
            s(&new),
            s(&v),
        ],
        Some(stdin.as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let again: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(again["format_version"], 3);
    assert_eq!(again["vault_id"], cfg["vault_id"]);
    assert_eq!(again["epochs"][0]["id"], cfg["epochs"][0]["id"]);
    let out = coffer(&["fsck", "--passfile", s(&new), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// Runs `coffer fsck` of `v` with `pf` and the pins kept in `state`, plus `extra` flags.
fn fsck_pinned(v: &std::path::Path, pf: &std::path::Path, state: &std::path::Path, extra: &[&str]) -> cli_common::Out {
    let mut args = vec!["fsck", "--passfile", s(pf)];
    args.extend_from_slice(extra);
    args.push(s(v));
    cli_common::coffer_env(&args, &[("XDG_STATE_HOME", state.as_os_str())])
}

#[test]
fn a_config_put_back_from_before_the_newest_epoch_is_refused_until_accepted() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let state = t.path().join("state");
    let pf = passfile(t.path(), "pw", "pw");
    let init = |dir: &std::path::Path, version: &str| {
        cli_common::init_version(dir, &pf, version);
    };
    init(&v, "2");
    let first = std::fs::read(v.join("coffer.conf")).unwrap();
    // The first open pins epoch #0.
    let out = fsck_pinned(&v, &pf, &state, &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let pins: Vec<_> = std::fs::read_dir(state.join("coffer/pins")).unwrap().collect();
    assert_eq!(pins.len(), 1);

    // A new epoch starts; the next open moves the pin to it.
    coffer::vault::rekey::start_epoch(
        &v,
        &coffer::vault::unlock::config_path(&v, None),
        &coffer::vault::unlock::slots::Credential::Password(b"pw"),
    )
    .unwrap();
    let second = std::fs::read(v.join("coffer.conf")).unwrap();
    assert_ne!(first, second);
    assert_eq!(fsck_pinned(&v, &pf, &state, &[]).code, 0);

    // The config from before it, put back (as from a sync client's version history), is refused.
    std::fs::write(v.join("coffer.conf"), &first).unwrap();
    // fsck says it could not run (its code 2); other commands exit with code 4.
    let out = fsck_pinned(&v, &pf, &state, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let cat = cli_common::coffer_env(
        &["cat", "--passfile", s(&pf), s(&v), "any"],
        &[("XDG_STATE_HOME", state.as_os_str())],
    );
    assert_eq!(cat.code, 4, "{}", cat.stderr);
    assert_eq!(cat.stderr, out.stderr);
    assert_eq!(
        out.stderr,
        "coffer: error: coffer.conf was rolled back: its newest key epoch is #0, and this machine has seen #1\n\
         coffer: hint: if you put this coffer.conf back on purpose, pass --accept-config-change once\n"
    );
    // Refused again: a refusal does not move the pin.
    assert_eq!(fsck_pinned(&v, &pf, &state, &[]).code, 2);
    // Accepted once, it is pinned, and then opens without the flag; the newer one then still opens.
    assert_eq!(fsck_pinned(&v, &pf, &state, &["--accept-config-change"]).code, 0);
    assert_eq!(fsck_pinned(&v, &pf, &state, &[]).code, 0);
    std::fs::write(v.join("coffer.conf"), &second).unwrap();
    assert_eq!(fsck_pinned(&v, &pf, &state, &[]).code, 0);

    // Another vault's config (same password) in its place is refused as a replacement.
    let other = t.path().join("other");
    init(&other, "2");
    std::fs::copy(other.join("coffer.conf"), v.join("coffer.conf")).unwrap();
    let out = fsck_pinned(&v, &pf, &state, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("coffer: error: coffer.conf was replaced: it belongs to vault "),
        "{}",
        out.stderr
    );

    // A config version 1 (no epochs) where epochs were seen is a rollback too.
    let old = t.path().join("old");
    init(&old, "1");
    std::fs::copy(old.join("coffer.conf"), v.join("coffer.conf")).unwrap();
    let out = fsck_pinned(&v, &pf, &state, &[]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("coffer: error: coffer.conf was rolled back: it has no key epochs"),
        "{}",
        out.stderr
    );

    // Another machine (another state directory) has no pin and opens the newest config.
    std::fs::write(v.join("coffer.conf"), &second).unwrap();
    assert_eq!(fsck_pinned(&v, &pf, &t.path().join("elsewhere"), &[]).code, 0);

    // The vault deleted and a new one made in its place, of either config version, opens.
    for version in ["1", "2"] {
        std::fs::remove_dir_all(&v).unwrap();
        let out = cli_common::coffer_env(
            &[
                "init",
                "--insecure-fast-kdf",
                "--config-version",
                version,
                "--passfile",
                s(&pf),
                s(&v),
            ],
            &[("XDG_STATE_HOME", state.as_os_str())],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        let out = fsck_pinned(&v, &pf, &state, &[]);
        assert_eq!(out.code, 0, "a new config-version-{version} vault: {}", out.stderr);
    }
}

/// A user without a home directory (a service account: `HOME` names no directory, no
/// `XDG_STATE_HOME`) opens a vault without a pin: no warning, no home made; a home
/// whose state directory cannot be made gets one warning and the vault still opens.
#[test]
fn without_a_home_a_vault_opens_quietly_and_unpinned() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    init_cli(&v, "pw");
    let home = t.path().join("no-such-home");
    let args = ["fsck", "--passfile", s(&pf), s(&v)];
    let out = cli_common::coffer_env(&args, &[("XDG_STATE_HOME", "".as_ref()), ("HOME", home.as_os_str())]);
    let clean = "coffer: checked 0 files, 1 directories, 0 symlinks: clean\n";
    assert_eq!((out.code, out.stderr.as_str()), (0, clean));
    assert!(!home.exists(), "a home was made");

    // A home where `.local` is a file: the state directory cannot be made.
    let home = t.path().join("home");
    std::fs::create_dir(&home).unwrap();
    std::fs::write(home.join(".local"), b"").unwrap();
    let out = cli_common::coffer_env(&args, &[("XDG_STATE_HOME", "".as_ref()), ("HOME", home.as_os_str())]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (warning, rest) = out.stderr.split_once('\n').unwrap();
    assert!(
        warning.starts_with("coffer: warn: cannot record the vault's key epoch in "),
        "{}",
        out.stderr
    );
    assert_eq!(rest, clean);
}
