//! `coffer passwd`: the old password stops working, the new one opens the same data.

use crate::support::cli as cli_common;

use cli_common::{coffer, init_cli, passfile, put_file};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn passwd_rewraps_and_keeps_data() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    init_cli(&v, "old-pw");
    let vault = coffer::vault::Vault::unlock(&v, None, b"old-pw", false).unwrap();
    put_file(&vault, b"note.txt", b"kept across passwd\n");
    drop(vault);
    let old = passfile(t.path(), "old", "old-pw");
    let new = passfile(t.path(), "new", "new-pw");
    let wrong = passfile(t.path(), "wrong", "nope");

    let out = coffer(
        &["passwd", "--passfile", s(&wrong), "--new-passfile", s(&new), s(&v)],
        None,
    );
    assert_eq!(out.code, 3, "{}", out.stderr);

    let out = coffer(
        &["passwd", "--passfile", s(&old), "--new-passfile", s(&new), s(&v)],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.starts_with("coffer: password changed.\n"), "{}", out.stderr);
    assert!(out.stderr.contains("version history"), "{}", out.stderr);
    assert!(
        out.stderr.contains("still opens this vault with the OLD password"),
        "{}",
        out.stderr
    );

    let out = coffer(&["cat", "--passfile", s(&old), s(&v), "note.txt"], None);
    assert_eq!(out.code, 3, "old password still works: {}", out.stderr);
    let out = coffer(&["cat", "--passfile", s(&new), s(&v), "note.txt"], None);
    assert_eq!(
        (out.code, out.stdout.as_slice()),
        (0, &b"kept across passwd\n"[..]),
        "{}",
        out.stderr
    );

    // Both passwords on stdin, one per line; and the KDF cost is kept.
    let out = coffer(&["passwd", s(&v)], Some(b"new-pw\nthird-pw\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(&["cat", s(&v), "note.txt"], Some(b"third-pw\n"));
    assert_eq!(out.stdout, b"kept across passwd\n");
    let out = coffer(&["info", s(&v)], None);
    assert!(
        out.stdout_str().contains("memory 8 KiB, 1 passes"),
        "{}",
        out.stdout_str()
    );
}

#[test]
fn passwd_with_separate_config() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let cfg = t.path().join("outside.conf");
    let pf = passfile(t.path(), "pw", "pw");
    let out = coffer(
        &[
            "init",
            "--quiet",
            "--insecure-fast-kdf",
            "--passfile",
            s(&pf),
            "--config",
            s(&cfg),
            s(&v),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(cfg.is_file());
    assert!(!v.join("coffer.conf").exists(), "config must stay out of CIPHERDIR");
    let out = coffer(&["info", s(&v)], None);
    assert_eq!(out.code, 4);
    let new = passfile(t.path(), "new", "pw2");
    let out = coffer(
        &[
            "passwd",
            "--config",
            s(&cfg),
            "--passfile",
            s(&pf),
            "--new-passfile",
            s(&new),
            s(&v),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(
        &["encrypt-name", "--config", s(&cfg), "--passfile", s(&new), s(&v), "x"],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
}
