//! Pins the exact message and exit code of every user error the CLI reports.

use crate::support::cli as cli_common;

use cli_common::{coffer, init_cli, passfile};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn wrong_password() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "right");
    let bad = passfile(t.path(), "bad", "wrong");
    let out = coffer(&["cat", "--passfile", s(&bad), s(&v), "x"], None);
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr,
        "coffer: error: wrong password\n\
         coffer: hint: passwords are case-sensitive; a lost password can be replaced with `coffer passwd --masterkey`\n"
    );
    // Same from stdin, and through the background mount's readiness pipe.
    let out = coffer(&["info", s(&v)], None);
    assert_eq!(out.code, 0);
    let out = coffer(&["export", s(&v), s(&t.path().join("out"))], Some(b"wrong\n"));
    assert_eq!(out.code, 3, "{}", out.stderr);
    let mp = t.path().join("mp");
    std::fs::create_dir(&mp).unwrap();
    let out = coffer(&["mount", "--passfile", s(&bad), s(&v), s(&mp)], None);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.starts_with("coffer: error: wrong password\n"),
        "{}",
        out.stderr
    );
}

#[test]
fn not_a_vault() {
    let t = tempfile::tempdir().unwrap();
    let out = coffer(&["cat", s(t.path()), "x"], Some(b"pw\n"));
    assert_eq!(out.code, 4);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}: not a coffer vault (no coffer.conf)\n\
             coffer: hint: if its config is kept elsewhere use --config FILE; with the recovery key use --masterkey\n",
            t.path().display()
        )
    );
    let out = coffer(&["info", s(&t.path().join("missing"))], None);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}/missing: No such file or directory\n",
            t.path().display()
        )
    );
}

#[test]
fn init_refuses_non_empty_and_initialized() {
    let t = tempfile::tempdir().unwrap();
    let full = t.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("f"), "x").unwrap();
    let out = coffer(&["init", "--insecure-fast-kdf", s(&full)], Some(b"pw\n"));
    assert_eq!(out.code, 7);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}: directory is not empty\ncoffer: hint: a vault must start in an empty directory\n",
            full.display()
        )
    );
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let out = coffer(&["init", "--insecure-fast-kdf", s(&v)], Some(b"pw\n"));
    assert_eq!(out.code, 7);
    assert_eq!(
        out.stderr,
        format!("coffer: error: {}: already a coffer vault\n", v.display())
    );
}

/// New vaults are config version 2; `--config-version 1` still makes an old-style vault; a
/// reverse config is version 1 and refuses `--config-version 2` before writing anything.
#[test]
fn init_config_versions() {
    let t = tempfile::tempdir().unwrap();
    let version = |dir: &std::path::Path, conf: &str| {
        coffer::vault::unlock::read_config(&dir.join(conf))
            .unwrap()
            .format_version
    };
    let new = t.path().join("new");
    init_cli(&new, "pw");
    assert_eq!(version(&new, "coffer.conf"), 3);
    let old = t.path().join("old");
    let out = coffer(
        &[
            "init",
            "--quiet",
            "--insecure-fast-kdf",
            "--config-version",
            "1",
            s(&old),
        ],
        Some(b"pw\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(version(&old, "coffer.conf"), 1);
    let plain = t.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let args = ["init", "--reverse", "--quiet", "--insecure-fast-kdf", s(&plain)];
    let refused = [&args[..2], &["--config-version", "2"], &args[2..]].concat();
    let out = coffer(&refused, Some(b"pw\n"));
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr, "coffer: error: --reverse writes config version 1 only\n");
    assert_eq!(std::fs::read_dir(&plain).unwrap().count(), 0, "nothing written");
    let out = coffer(&args, Some(b"pw\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(version(&plain, ".coffer.reverse.conf"), 1);
}

#[test]
fn init_prints_recovery_key_unless_quiet() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let key = init_cli(&v, "pw");
    assert!(coffer::format::recovery::decode(&key).is_ok(), "{key}");
    let q = t.path().join("q");
    let out = coffer(&["init", "--quiet", "--insecure-fast-kdf", s(&q)], Some(b"pw\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stdout.is_empty());
    let out = coffer(&["init", "--insecure-fast-kdf", s(&t.path().join("e"))], Some(b"\n"));
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (5, "coffer: error: empty password refused\n")
    );
}

#[test]
fn mountpoint_missing_or_not_empty() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let mp = t.path().join("nomp");
    let out = coffer(&["mount", s(&v), s(&mp)], Some(b"pw\n"));
    assert_eq!(out.code, 7);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {0}: mountpoint does not exist\ncoffer: hint: create it first: mkdir -p {0}\n",
            mp.display()
        )
    );
    std::fs::create_dir(&mp).unwrap();
    std::fs::write(mp.join("x"), "x").unwrap();
    let out = coffer(&["mount", s(&v), s(&mp)], Some(b"pw\n"));
    assert_eq!(out.code, 7);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}: mountpoint is not empty\ncoffer: hint: use an empty directory, or --nonempty to mount over it\n",
            mp.display()
        )
    );
}

fn edited_config(
    t: &std::path::Path,
    v: &std::path::Path,
    edit: impl Fn(&mut serde_json::Value),
) -> std::path::PathBuf {
    let mut c: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    edit(&mut c);
    let p = t.join("edited.conf");
    std::fs::write(&p, serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    p
}

#[test]
fn unknown_feature_flag_and_newer_version() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let cfg = edited_config(t.path(), &v, |c| {
        c["feature_flags"] = serde_json::json!(["time-travel"])
    });
    for cmd in ["info", "cat"] {
        let mut args = vec![cmd, "--config", s(&cfg), s(&v)];
        if cmd == "cat" {
            args.push("x");
        }
        let out = coffer(&args, Some(b"pw\n"));
        assert_eq!(out.code, 4, "{cmd}");
        assert_eq!(
            out.stderr,
            format!(
                "coffer: error: {}: config needs unknown feature flag `time-travel`; upgrade coffer\n",
                cfg.display()
            )
        );
    }
    let cfg = edited_config(t.path(), &v, |c| c["format_version"] = 4.into());
    let out = coffer(&["cat", "--config", s(&cfg), s(&v), "x"], Some(b"pw\n"));
    assert_eq!(out.code, 4);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: {}: vault format version 4 is newer than this coffer supports (3); upgrade coffer\n",
            cfg.display()
        )
    );
    // An edited authenticated field is refused, never a weaker open.
    let cfg = edited_config(t.path(), &v, |c| c["long_name_limit"] = 100.into());
    let out = coffer(&["cat", "--config", s(&cfg), s(&v), "x"], Some(b"pw\n"));
    assert!(out.code == 3 || out.code == 4, "{}", out.stderr);
}

#[test]
fn passfile_missing_and_extpass_failing() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let missing = t.path().join("nope");
    let out = coffer(&["cat", "--passfile", s(&missing), s(&v), "x"], None);
    assert_eq!(out.code, 5);
    assert_eq!(
        out.stderr,
        format!(
            "coffer: error: cannot read passfile {}: No such file or directory\n",
            missing.display()
        )
    );
    let out = coffer(&["cat", "--extpass", "echo oops >&2; exit 4", s(&v), "x"], None);
    assert_eq!(out.code, 5);
    assert_eq!(
        out.stderr,
        "oops\ncoffer: error: extpass command failed (exit status 4)\n"
    );
    let out = coffer(&["cat", s(&v), "x"], Some(b""));
    assert_eq!(out.code, 5);
    assert_eq!(
        out.stderr,
        "coffer: error: no password on stdin\ncoffer: hint: give it on stdin, with --passfile FILE or --extpass CMD\n"
    );
    // extpass that works: first line of its stdout.
    let out = coffer(&["cat", "--extpass", "printf 'pw\\nextra\\n'", s(&v), "x"], None);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "coffer: error: x: no such file or directory in the vault\n");
}

#[test]
fn no_password_argument_exists() {
    let out = coffer(&["cat", "--password", "pw", "v", "x"], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("unexpected argument '--password'"),
        "{}",
        out.stderr
    );
}

#[test]
fn info_shows_parameters_without_secrets() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let out = coffer(&["info", s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let text = out.stdout_str();
    for want in [
        "format version:  3",
        "key epochs:      ",
        ", layout 3) (newest first)\n",
        "feature flags:   block_sessions, xattr_packs\n",
        "name encoding:   base64url",
        "long-name limit: 200 bytes",
        "(password: argon2id memory 8 KiB, 1 passes, 1 lanes)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    let cfg = std::fs::read_to_string(v.join("coffer.conf")).unwrap();
    let c: serde_json::Value = serde_json::from_str(&cfg).unwrap();
    for secret in [&c["slots"][0]["wrapped"], &c["slots"][0]["sealed"], &c["config_mac"]] {
        assert!(!text.contains(secret.as_str().unwrap()), "{secret} printed");
    }
}

#[test]
fn cat_of_directory_and_names_round_trip() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "pw");
    let vault = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
    let root = vault.root_dir().unwrap();
    let d = vault.mkdir(&root, b"docs", 0o755).unwrap();
    let docs = root.open_child(&vault, &d.entry).unwrap();
    let (f, _) = vault.create_file(&docs, b"a.txt", 0o644).unwrap();
    f.write_at(b"hello\n", 0).unwrap();
    let pf = passfile(t.path(), "pw", "pw");
    let out = coffer(&["cat", "--passfile", s(&pf), s(&v), "docs"], None);
    assert_eq!(
        (out.code, out.stderr.as_str()),
        (1, "coffer: error: docs: is a directory\n")
    );
    let out = coffer(&["cat", "--passfile", s(&pf), s(&v), "docs/a.txt"], None);
    assert_eq!((out.code, out.stdout.as_slice()), (0, &b"hello\n"[..]));
    let out = coffer(&["encrypt-name", "--passfile", s(&pf), s(&v), "docs/a.txt"], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let backing = out.stdout_str().trim_end().to_string();
    assert!(v.join(&backing).is_file(), "{backing}");
    assert!(!backing.contains("docs") && !backing.contains("a.txt"));
    // `--`: a base64url name may start with `-`.
    let out = coffer(&["decrypt-name", "--passfile", s(&pf), "--", s(&v), &backing], None);
    assert_eq!(
        (out.code, out.stdout_str().as_str()),
        (0, "docs/a.txt\n"),
        "{}",
        out.stderr
    );
    let abs = v.join(&backing);
    let out = coffer(&["decrypt-name", "--passfile", s(&pf), s(&v), s(&abs)], None);
    assert_eq!(out.stdout_str(), "docs/a.txt\n");
    let out = coffer(&["decrypt-name", "--passfile", s(&pf), s(&v), "coffer.diriv"], None);
    assert_eq!(out.code, 1);
}
