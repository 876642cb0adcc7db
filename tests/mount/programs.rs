//! Real programs on the mount: git, tar, cp -a, sqlite3. A missing program fails the test with
//! the package to install; it never passes silently.

use crate::support::common;

use std::fs;
use std::path::Path;

use common::{require_tool, run, TestMount};

/// A small source tree with nested dirs, a symlink, an executable and a binary file.
fn make_tree(root: &Path) {
    fs::create_dir_all(root.join("src/deep/er")).unwrap();
    fs::write(root.join("README"), b"readme\n").unwrap();
    fs::write(root.join("src/main.c"), b"int main(void) { return 0; }\n").unwrap();
    fs::write(
        root.join("src/deep/er/data.bin"),
        (0..70_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>(),
    )
    .unwrap();
    fs::write(root.join("src/deep/empty"), b"").unwrap();
    let exe = root.join("run.sh");
    fs::write(&exe, b"#!/bin/sh\necho hi\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&exe, fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.c", root.join("link")).unwrap();
    fs::write(root.join(format!("long-{}", "n".repeat(230))), b"long name\n").unwrap();
}

#[test]
fn git_init_add_commit_log() {
    require_tool("git");
    let Some(m) = TestMount::new() else { return };
    let repo = m.path("repo");
    fs::create_dir(&repo).unwrap();
    make_tree(&repo);
    let git = |args: &[&str]| {
        let mut a = vec![
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@e",
            "-c",
            "init.defaultBranch=main",
        ];
        a.extend_from_slice(args);
        run(&repo, "git", &a)
    };
    git(&["init", "-q"]);
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "first"]);
    fs::write(repo.join("README"), b"changed\n").unwrap();
    git(&["commit", "-q", "-am", "second"]);
    let log = git(&["log", "--oneline"]);
    assert_eq!(log.lines().count(), 2, "{log}");
    git(&["fsck", "--strict"]);
    assert_eq!(git(&["status", "--porcelain"]), "");
    git(&["checkout", "-q", "HEAD~1"]);
    assert_eq!(fs::read(repo.join("README")).unwrap(), b"readme\n");
    git(&["gc", "-q"]);
    git(&["fsck"]);
}

#[test]
fn tar_round_trip_and_cp_a() {
    require_tool("tar");
    require_tool("cp");
    require_tool("diff");
    let Some(m) = TestMount::new() else { return };
    let outside = tempfile::tempdir().unwrap();
    let src = outside.path().join("src");
    fs::create_dir(&src).unwrap();
    make_tree(&src);
    // tar from outside into the mount, then out again; diff -r both ways.
    let archive = outside.path().join("a.tar");
    run(
        outside.path(),
        "tar",
        &["-cf", archive.to_str().unwrap(), "-C", src.to_str().unwrap(), "."],
    );
    let x = m.path("x");
    fs::create_dir(&x).unwrap();
    run(
        outside.path(),
        "tar",
        &["-xpf", archive.to_str().unwrap(), "-C", x.to_str().unwrap()],
    );
    run(
        outside.path(),
        "diff",
        &["-r", "--no-dereference", src.to_str().unwrap(), x.to_str().unwrap()],
    );
    let archive2 = m.path("b.tar");
    run(
        outside.path(),
        "tar",
        &["-cf", archive2.to_str().unwrap(), "-C", x.to_str().unwrap(), "."],
    );
    let back = outside.path().join("back");
    fs::create_dir(&back).unwrap();
    run(
        outside.path(),
        "tar",
        &["-xpf", archive2.to_str().unwrap(), "-C", back.to_str().unwrap()],
    );
    run(
        outside.path(),
        "diff",
        &["-r", "--no-dereference", src.to_str().unwrap(), back.to_str().unwrap()],
    );
    // cp -a preserves modes, times, links, xattrs.
    let y = m.path("y");
    run(
        outside.path(),
        "cp",
        &["-a", src.to_str().unwrap(), y.to_str().unwrap()],
    );
    run(
        outside.path(),
        "diff",
        &["-r", "--no-dereference", src.to_str().unwrap(), y.to_str().unwrap()],
    );
    let y2 = m.path("y2");
    run(outside.path(), "cp", &["-a", y.to_str().unwrap(), y2.to_str().unwrap()]);
    run(
        outside.path(),
        "diff",
        &["-r", "--no-dereference", y.to_str().unwrap(), y2.to_str().unwrap()],
    );
    use std::os::unix::fs::MetadataExt;
    let (a, b) = (
        fs::metadata(src.join("run.sh")).unwrap(),
        fs::metadata(y2.join("run.sh")).unwrap(),
    );
    assert_eq!(
        (a.mode(), a.mtime(), a.mtime_nsec()),
        (b.mode(), b.mtime(), b.mtime_nsec())
    );
}

#[test]
fn sqlite_transactions() {
    require_tool("sqlite3");
    let Some(mut m) = TestMount::new() else { return };
    let dir = m.path("db");
    fs::create_dir(&dir).unwrap();
    let sql = |q: &str| run(&m.path("db"), "sqlite3", &["test.db", q]);
    sql("CREATE TABLE t(id INTEGER PRIMARY KEY, v TEXT); PRAGMA journal_mode=WAL;");
    for i in 0..20 {
        sql(&format!(
            "BEGIN; INSERT INTO t(v) SELECT '{i}-' || hex(randomblob(200)) FROM (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x<50) SELECT x FROM c); COMMIT;"
        ));
    }
    sql("BEGIN; DELETE FROM t WHERE id % 3 = 0; ROLLBACK;");
    assert_eq!(sql("SELECT count(*) FROM t;").trim(), "1000");
    sql("PRAGMA journal_mode=DELETE; VACUUM;");
    assert_eq!(sql("PRAGMA integrity_check;").trim(), "ok");
    m.remount();
    let out = run(
        &m.path("db"),
        "sqlite3",
        &["test.db", "SELECT count(*), count(DISTINCT v) FROM t;"],
    );
    assert_eq!(out.trim(), "1000|1000");
}
