//! `coffer rekey`: a vault of config version 1 gets a new key epoch, every object moves to it,
//! `--finish` forgets the old key, and then the old coffer.conf (as a sync client's version
//! history keeps it), its password and the old recovery key open nothing any more.

use crate::support::cli as cli_common;

use crate::support::data::bytes;
use cli_common::{coffer, init_version, passfile, put_file, recovery_key_from};

fn s(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn rekey_then_finish_cuts_off_the_old_config_and_the_old_recovery_key() {
    rekey_then_finish("1");
}

/// The same from a vault made in config version 2 (its one epoch of layout 3 is replaced).
#[test]
fn rekey_of_a_version_2_vault_cuts_off_the_old_config_and_the_old_recovery_key() {
    rekey_then_finish("2");
}

fn rekey_then_finish(version: &str) {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    let out = init_version(&v, &pf, version);
    let old_recovery = recovery_key_from(&out.stdout_str());
    let big = bytes(3, 300_000);
    {
        let vault = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
        put_file(&vault, b"big.bin", &big);
        put_file(&vault, b"note.txt", b"kept across the rekey\n");
        let root = vault.root_dir().unwrap();
        vault.mkdir(&root, b"docs", 0o755).unwrap();
        let docs = vault.open_dir_path(b"docs").unwrap();
        let (f, _) = vault.create_file(&docs, b"inner.txt", 0o600).unwrap();
        f.write_at(b"inside docs", 0).unwrap();
        vault.symlink(&root, b"link", b"docs/inner.txt").unwrap();
    }
    let old_conf = std::fs::read(v.join("coffer.conf")).unwrap();
    let cat = |file: &str, extra: &[&str]| {
        let mut a = vec!["cat", "--passfile", s(&pf)];
        a.extend_from_slice(extra);
        a.extend([s(&v), file]);
        coffer(&a, None)
    };

    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new_recovery = recovery_key_from(&out.stdout_str());
    assert_eq!(new_recovery.chars().filter(char::is_ascii_hexdigit).count(), 116);
    assert!(
        out.stderr
            .contains("to re-encrypt: 3 files (300033 bytes), 5 names, 1 symlink targets, 0 directories' xattrs"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("coffer rekey --finish"), "{}", out.stderr);
    assert_eq!(cat("big.bin", &[]).stdout, big);
    assert_eq!(cat("docs/inner.txt", &[]).stdout, b"inside docs");

    // Run again: nothing is left to move.
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("continuing the rekey"), "{}", out.stderr);
    assert!(
        out.stderr.contains("to re-encrypt: 0 files (0 bytes), 0 names"),
        "{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "no new recovery key when continuing");

    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(recovery_key_from(&out.stdout_str()), new_recovery);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(cfg["epochs"].as_array().unwrap().len(), 1, "{cfg}");
    assert_eq!(cfg["epochs"][0]["layout"], 3);
    assert_eq!(cat("note.txt", &[]).stdout, b"kept across the rekey\n");

    // The old config put back: this machine refuses it; accepted, it opens nothing.
    std::fs::write(v.join("coffer.conf"), &old_conf).unwrap();
    let out = cat("note.txt", &[]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("coffer.conf was rolled back"), "{}", out.stderr);
    let out = cat("note.txt", &["--accept-config-change"]);
    assert_ne!(out.code, 0, "the old key read a file: {}", out.stderr);
    assert!(out.stdout.is_empty());

    // Without any config, the old recovery key opens nothing; the new one opens everything.
    std::fs::remove_file(v.join("coffer.conf")).unwrap();
    let out = coffer(
        &["cat", "--masterkey", s(&v), "note.txt"],
        Some(format!("{old_recovery}\n").as_bytes()),
    );
    assert_eq!(out.code, 3, "{}", out.stderr);
    let out = coffer(
        &["cat", "--masterkey", s(&v), "big.bin"],
        Some(format!("{new_recovery}\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, big);
}

/// A replica that had not synced the new config writes a file under the old key: `--finish`
/// refuses while it is there, `coffer.epochs` lets the new recovery key read it without a
/// config, and the next `rekey` moves it. Hard links stay hard links.
#[test]
fn finish_refuses_while_objects_are_left_under_the_old_epoch() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&v, &pf, "1");
    let old_conf = t.path().join("old.conf");
    std::fs::copy(v.join("coffer.conf"), &old_conf).unwrap();
    {
        let vault = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
        put_file(&vault, b"one", b"linked");
        let root = vault.root_dir().unwrap();
        let (cn, _) = vault.lookup(&root, b"one").unwrap();
        vault.link(&root, &cn.entry, &root, b"two").unwrap();
    }
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("to re-encrypt: 1 files (6 bytes), 2 names"),
        "{}",
        out.stderr
    );
    let new_recovery = recovery_key_from(&out.stdout_str());
    let ino = |n: &str| {
        let vault = coffer::vault::Vault::unlock(&v, None, b"pw", true).unwrap();
        let (_, st) = vault.lookup(&vault.root_dir().unwrap(), n.as_bytes()).unwrap();
        (st.st_ino, st.st_nlink)
    };
    assert_eq!(ino("one"), ino("two"), "still one file with two names");
    assert_eq!(ino("one").1, 2);

    // The replica with the old config writes a file under the old key.
    {
        let replica = coffer::vault::Vault::unlock(&v, Some(&old_conf), b"pw", false).unwrap();
        put_file(&replica, b"late.txt", b"written by a replica that had not synced");
    }
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot finish: 1 files (40 bytes), 1 names"),
        "{}",
        out.stderr
    );

    // coffer.epochs is not shown, and it lets the new recovery key reach the old epoch when
    // coffer.conf is lost.
    let outdir = t.path().join("export");
    let out = coffer(&["export", "--passfile", s(&pf), s(&v), s(&outdir)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let mut names: Vec<_> = std::fs::read_dir(&outdir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["late.txt", "one", "two"]);
    let conf = std::fs::read(v.join("coffer.conf")).unwrap();
    std::fs::remove_file(v.join("coffer.conf")).unwrap();
    let with_key = |file: &str| {
        coffer(
            &["cat", "--masterkey", s(&v), file],
            Some(format!("{new_recovery}\n").as_bytes()),
        )
    };
    let out = with_key("late.txt");
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(out.stdout, b"written by a replica that had not synced");
    let epochs = std::fs::read(v.join("coffer.epochs")).unwrap();
    std::fs::remove_file(v.join("coffer.epochs")).unwrap();
    assert_ne!(
        with_key("late.txt").code,
        0,
        "without coffer.epochs the old epoch is out of reach"
    );
    std::fs::write(v.join("coffer.epochs"), &epochs).unwrap();
    // A new config from the recovery key keeps the old epoch too.
    let out = coffer(
        &[
            "passwd",
            "--masterkey",
            "--insecure-fast-kdf",
            "--new-passfile",
            s(&pf),
            s(&v),
        ],
        Some(format!("{new_recovery}\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(cfg["epochs"].as_array().unwrap().len(), 2, "{cfg}");
    assert_ne!(cfg, serde_json::from_slice::<serde_json::Value>(&conf).unwrap());

    // The next rekey moves it; then --finish goes through.
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("continuing the rekey"), "{}", out.stderr);
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (n, want) in [
        ("one", &b"linked"[..]),
        ("two", b"linked"),
        ("late.txt", b"written by a replica that had not synced"),
    ] {
        let out = coffer(&["cat", "--passfile", s(&pf), s(&v), n], None);
        assert_eq!(out.stdout, want, "{}", out.stderr);
    }
}
