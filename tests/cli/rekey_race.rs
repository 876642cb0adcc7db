//! Two replicas of one CIPHERDIR that run `coffer rekey` before either's new coffer.conf has
//! synced: the run that sees the other's config follows it to its epoch (or, when the other
//! machine also changed the password, stops and says how to reach what it moved), objects of
//! an epoch the config does not list are reported and left alone, and a sync client's
//! conflict copy of coffer.conf lends its keys. Nothing is lost on either side.
//!
//! The race is made deterministic with the debug-build hook `COFFER_TEST_STOP_AFTER_FILES`:
//! replica B's rekey stops itself (SIGSTOP) after sealing that many files, the test "syncs"
//! A's new config into B, and lets B go on (SIGCONT).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::cli::{coffer, fsck_report, init_version, passfile, put_file, recovery_key_from, state_home, Out};
use coffer::vault::Vault;

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The vault's tree: two files in the root and four in each of three directories.
fn tree() -> BTreeMap<String, Vec<u8>> {
    let mut want = BTreeMap::new();
    for f in 0..2 {
        want.insert(format!("root{f}.txt"), format!("root file {f}\n").into_bytes());
    }
    for d in 0..3 {
        for f in 0..4 {
            want.insert(
                format!("d{d}/f{f}.txt"),
                format!("file {f} of directory {d}\n").repeat(50 * (f + 1)).into_bytes(),
            );
        }
    }
    want
}

/// Writes `files` (plaintext path → contents; directories made as needed) into the vault at
/// `cipher`, opened with `pw`.
fn write_files(cipher: &Path, pw: &str, files: &BTreeMap<String, Vec<u8>>) {
    let v = Vault::unlock(cipher, None, pw.as_bytes(), false).unwrap();
    for (path, data) in files {
        match path.rsplit_once('/') {
            None => put_file(&v, path.as_bytes(), data),
            Some((dir, name)) => {
                let parent = match v.open_dir_path(dir.as_bytes()) {
                    Ok(d) => d,
                    Err(_) => {
                        v.mkdir(&v.root_dir().unwrap(), dir.as_bytes(), 0o755).unwrap();
                        v.open_dir_path(dir.as_bytes()).unwrap()
                    }
                };
                let (f, _) = v.create_file(&parent, name.as_bytes(), 0o644).unwrap();
                f.write_at(data, 0).unwrap();
            }
        }
    }
}

/// `cp -a FROM TO`.
fn cp_a(from: &Path, to: &Path) {
    assert!(Command::new("cp")
        .arg("-a")
        .arg(from)
        .arg(to)
        .status()
        .unwrap()
        .success());
}

/// What a sync client does with a file the other side changed: writes it under a temporary
/// name and renames it into place.
fn sync_file(from: &Path, to: &Path) {
    let tmp = to.with_file_name(".syncthing.incoming.tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// Two replicas of one vault (config version 2, password "pw") holding [`tree`]: B a copy of
/// A. Returns (their temporary directory, A, B, the password file, the tree).
fn replicas() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf, BTreeMap<String, Vec<u8>>) {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&a, &pf, "2");
    let want = tree();
    write_files(&a, "pw", &want);
    cp_a(&a, &b);
    (t, a, b, pf, want)
}

/// A's coffer.conf and coffer.epochs replace B's, as a sync client delivers them.
fn sync_config(a: &Path, b: &Path) {
    for name in ["coffer.epochs", "coffer.conf"] {
        sync_file(&a.join(name), &b.join(name));
    }
}

/// The newest epoch ID of the config at `cipher` (8 hex digits).
fn newest_epoch(cipher: &Path) -> String {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(cipher.join("coffer.conf")).unwrap()).unwrap();
    let epochs = cfg["epochs"].as_array().unwrap();
    let newest = epochs.iter().max_by_key(|e| e["seq"].as_u64().unwrap()).unwrap();
    newest["id"].as_str().unwrap().to_string()
}

/// Starts `coffer rekey --passfile PF CIPHER` that stops itself after sealing `files` files.
fn spawn_rekey_stopping(cipher: &Path, pf: &Path, files: u64) -> Child {
    Command::new(env!("CARGO_BIN_EXE_coffer"))
        .args(["rekey", "--passfile", s(pf), s(cipher)])
        .env_remove("RUST_LOG")
        .env("XDG_STATE_HOME", state_home())
        .env("COFFER_TEST_STOP_AFTER_FILES", files.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until `child` has stopped itself (state `T` in /proc).
fn wait_stopped(child: &mut Child) {
    let stat = PathBuf::from(format!("/proc/{}/stat", child.id()));
    let start = Instant::now();
    loop {
        let text = std::fs::read_to_string(&stat).unwrap_or_default();
        // `PID (comm) STATE ...`: the state follows the last `)`.
        if text.rsplit_once(") ").is_some_and(|(_, rest)| rest.starts_with('T')) {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("the rekey ended before its stop point: {status}");
        }
        assert!(start.elapsed() < Duration::from_secs(120), "the rekey never stopped");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lets a stopped `child` go on and collects what it printed.
fn resume(child: Child) -> Out {
    // SAFETY: kill takes no pointers; the pid is our own child, stopped and not yet reaped.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGCONT) }, 0);
    let out = child.wait_with_output().unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: out.stdout,
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Every file of `want` reads back from the vault at `cipher` through `coffer cat`.
fn assert_reads(cipher: &Path, pf: &Path, want: &BTreeMap<String, Vec<u8>>) {
    for (path, data) in want {
        let out = coffer(&["cat", "--passfile", s(pf), s(cipher), path], None);
        assert_eq!(out.code, 0, "{path}: {}", out.stderr);
        assert!(out.stdout == *data, "{path}: other contents");
    }
}

/// The backing path, relative to CIPHERDIR, of the plaintext root entry `name`.
fn backing_of_root_entry(cipher: &Path, pw: &str, name: &str) -> PathBuf {
    let v = Vault::unlock(cipher, None, pw.as_bytes(), true).unwrap();
    let (cn, _) = v.lookup(&v.root_dir().unwrap(), name.as_bytes()).unwrap();
    PathBuf::from(String::from_utf8(cn.entry).unwrap())
}

/// Two replicas A and B of one vault; each writes a file of its own; A's rekey runs to the
/// end while B's is stopped half way; A's new config syncs into B (and A's new file with it);
/// B's run sees it, moves everything, also what it had moved to its own epoch already, to A's
/// epoch, and says so in one line. Every file reads back, fsck is clean, `--finish` succeeds.
#[test]
fn a_rekey_that_sees_another_machines_epoch_moves_everything_to_it() {
    let (_t, a, b, pf, mut want) = replicas();
    let a_only: BTreeMap<_, _> = [("a-only.txt".to_string(), b"written on machine A\n".to_vec())].into();
    let b_only: BTreeMap<_, _> = [("d1/b-only.txt".to_string(), b"written on machine B\n".to_vec())].into();
    write_files(&a, "pw", &a_only);
    write_files(&b, "pw", &b_only);

    let mut on_b = spawn_rekey_stopping(&b, &pf, 10);
    wait_stopped(&mut on_b);
    let b_epoch = newest_epoch(&b);
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let a_epoch = newest_epoch(&a);
    assert_ne!(a_epoch, b_epoch);

    sync_config(&a, &b);
    let entry = backing_of_root_entry(&a, "pw", "a-only.txt");
    sync_file(&a.join(&entry), &b.join(&entry));
    let out = resume(on_b);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = format!(
        "coffer: another machine started a rekey (epoch {a_epoch}); this run moved everything to that epoch instead"
    );
    assert!(out.stderr.lines().any(|l| l == line), "{}", out.stderr);

    want.extend(a_only);
    want.extend(b_only);
    assert_reads(&b, &pf, &want);
    let (code, report) = fsck_report(&b, &pf, &[]);
    assert_eq!(code, 0, "{report}");
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(newest_epoch(&b), a_epoch);
    assert_reads(&b, &pf, &want);
}

/// The same race, where machine A also changed the password: B's run cannot open A's config,
/// so it stops with one error line naming its epoch and the recovery key it printed. Following
/// the hint (a config of B's epoch from that recovery key, next to coffer.conf, then `rekey`
/// with the new password) moves everything to A's epoch; nothing was lost.
#[test]
fn a_rekey_raced_under_another_password_stops_and_its_recovery_key_reaches_what_it_moved() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let pf = passfile(t.path(), "pw", "pw");
    let pf2 = passfile(t.path(), "pw2", "pw2");
    init_version(&a, &pf, "2");
    let want = tree();
    write_files(&a, "pw", &want);
    cp_a(&a, &b);

    let mut on_b = spawn_rekey_stopping(&b, &pf, 10);
    wait_stopped(&mut on_b);
    let b_epoch = newest_epoch(&b);
    let out = coffer(
        &[
            "passwd",
            "--passfile",
            s(&pf),
            "--new-passfile",
            s(&pf2),
            "--insecure-fast-kdf",
            s(&a),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(&["rekey", "--passfile", s(&pf2), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let a_epoch = newest_epoch(&a);

    sync_config(&a, &b);
    let out = resume(on_b);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let b_recovery = recovery_key_from(&out.stdout_str());
    let error = out
        .stderr
        .lines()
        .find(|l| l.contains("another password"))
        .unwrap_or_default();
    assert!(
        error.contains(&format!(
            "another machine started a rekey (epoch {a_epoch}) with another password"
        )) && error.contains(&format!("under key epoch {b_epoch}, which coffer.conf no longer lists"))
            && error.contains("the recovery key printed at the start of this run reads them"),
        "{}",
        out.stderr
    );

    // The hint, followed.
    let copy = b.join("coffer (conflicted copy).conf");
    assert!(out.stderr.contains(s(&copy)), "{}", out.stderr);
    let out = coffer(
        &[
            "passwd",
            "--masterkey",
            "--insecure-fast-kdf",
            "--config",
            s(&copy),
            "--new-passfile",
            s(&pf2),
            s(&b),
        ],
        Some(format!("{b_recovery}\n").as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let out = coffer(&["rekey", "--accept-config-change", "--passfile", s(&pf2), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains(&format!(
            "conflict copy coffer (conflicted copy).conf names epoch {b_epoch}"
        )),
        "{}",
        out.stderr
    );
    std::fs::remove_file(&copy).unwrap();
    assert_reads(&b, &pf2, &want);
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf2), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(newest_epoch(&b), a_epoch);
    assert_reads(&b, &pf2, &want);
}

/// Both rekeys ran to the end; the sync client kept B's coffer.conf and left A's as a
/// conflict copy, and A's new file (under A's epoch) arrived. The next `rekey` on B says
/// which config it uses, reads the copy's epoch with the password and moves that file.
#[test]
fn a_conflict_copy_of_the_config_lends_its_epoch_to_the_next_rekey() {
    let (_t, a, b, pf, mut want) = replicas();
    let a_only: BTreeMap<_, _> = [("a-only.txt".to_string(), b"written on machine A\n".to_vec())].into();
    write_files(&a, "pw", &a_only);
    for v in [&a, &b] {
        let out = coffer(&["rekey", "--passfile", s(&pf), s(v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let a_epoch = newest_epoch(&a);
    let b_epoch = newest_epoch(&b);
    let copy = "coffer.sync-conflict-20261206-101010-ABCDEFG.conf";
    sync_file(&a.join("coffer.conf"), &b.join(copy));
    let entry = backing_of_root_entry(&a, "pw", "a-only.txt");
    sync_file(&a.join(&entry), &b.join(&entry));

    let out = coffer(&["rekey", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let line = format!(
        "coffer: coffer.conf (newest key epoch {b_epoch}) is used; its conflict copy {copy} names epoch {a_epoch}: \
         objects under it are read with that copy's keys and moved too"
    );
    assert!(out.stderr.lines().any(|l| l == line), "{}", out.stderr);
    assert!(
        out.stderr.contains("to re-encrypt: 1 files (21 bytes), 1 names"),
        "{}",
        out.stderr
    );
    want.extend(a_only);
    assert_reads(&b, &pf, &want);
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_reads(&b, &pf, &want);
}

/// Two rekeys that both ended before syncing, and a sync client that keeps no conflict copy:
/// A's config simply replaces B's. B's own objects, moved to B's epoch, stay readable: B's
/// rekey kept its config in the state directory, and the next rekey on B (told to accept the
/// config that replaced its own) reads it and moves them to A's epoch. `--finish` then
/// forgets the kept config.
#[test]
fn a_config_kept_by_this_machines_rekey_reaches_its_objects_when_no_conflict_copy_is_left() {
    let (_t, a, b, pf, mut want) = replicas();
    let a_only: BTreeMap<_, _> = [("a-only.txt".to_string(), b"written on machine A\n".to_vec())].into();
    let b_only: BTreeMap<_, _> = [("d2/b-only.txt".to_string(), b"written on machine B\n".to_vec())].into();
    write_files(&a, "pw", &a_only);
    write_files(&b, "pw", &b_only);
    for v in [&b, &a] {
        let out = coffer(&["rekey", "--passfile", s(&pf), s(v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let a_epoch = newest_epoch(&a);
    let b_epoch = newest_epoch(&b);
    assert_ne!(a_epoch, b_epoch);
    sync_config(&a, &b);
    let entry = backing_of_root_entry(&a, "pw", "a-only.txt");
    sync_file(&a.join(&entry), &b.join(&entry));

    // The pin sees a config without the epoch this machine made.
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&b)], None);
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("rolled back"), "{}", out.stderr);
    let out = coffer(&["rekey", "--accept-config-change", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .lines()
            .any(|l| l.contains("the config kept by this machine's rekey")
                && l.contains(&format!("names epoch {b_epoch}"))),
        "{}",
        out.stderr
    );
    assert_eq!(newest_epoch(&b), a_epoch);
    want.extend(a_only);
    want.extend(b_only);
    assert_reads(&b, &pf, &want);
    let (code, report) = fsck_report(&b, &pf, &[]);
    assert_eq!(code, 0, "{report}");
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_reads(&b, &pf, &want);
    let kept = state_home().join("coffer/configs");
    let left: Vec<_> = std::fs::read_dir(&kept)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    let b_key = {
        use sha2::Digest;
        let c = b.canonicalize().unwrap();
        let d = sha2::Sha256::digest(c.as_os_str().as_encoded_bytes());
        d[..16].iter().map(|x| format!("{x:02x}")).collect::<String>()
    };
    assert!(
        !left.iter().any(|n| n.to_string_lossy().starts_with(&b_key)),
        "{left:?}"
    );
}

/// What a sync client makes of two replicas that both renamed every entry: each directory
/// holds the entries of both (those of `from` missing in `to` are copied in, directories
/// merged by name); `to` keeps its own files where both have one.
fn union_into(from: &Path, to: &Path) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dst = to.join(e.file_name());
        let t = e.file_type().unwrap();
        if t.is_dir() {
            if !dst.exists() {
                std::fs::create_dir(&dst).unwrap();
            }
            union_into(&e.path(), &dst);
        } else if std::fs::symlink_metadata(&dst).is_err() {
            if t.is_symlink() {
                std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &dst).unwrap();
            } else {
                std::fs::copy(e.path(), &dst).unwrap();
            }
        }
    }
}

/// Backing entries under `dir`, recursively (files and directories).
fn backing_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            1 + if e.file_type().unwrap().is_dir() {
                backing_count(&e.path())
            } else {
                0
            }
        })
        .sum()
}

/// Two rekeys at once, and a sync client that delivered both: every file and directory shows
/// twice in B's CIPHERDIR, once under each machine's newest-epoch name, with A's config as a
/// conflict copy. B's next rekey merges each pair (equal files dropped, directories merged
/// entry by entry, A's own file moved in): one copy of everything is left, under B's epoch.
#[test]
fn both_copies_of_objects_moved_by_two_rekeys_are_merged() {
    let (_t, a, b, pf, mut want) = replicas();
    let a_only: BTreeMap<_, _> = [("d1/a-only.txt".to_string(), b"written on machine A\n".to_vec())].into();
    let b_only: BTreeMap<_, _> = [("b-only.txt".to_string(), b"written on machine B\n".to_vec())].into();
    write_files(&a, "pw", &a_only);
    write_files(&b, "pw", &b_only);
    for v in [&a, &b] {
        let out = coffer(&["rekey", "--passfile", s(&pf), s(v)], None);
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let single = backing_count(&b);
    sync_file(
        &a.join("coffer.conf"),
        &b.join("coffer.sync-conflict-20261206-111111-ABCDEFG.conf"),
    );
    union_into(&a, &b);
    assert!(backing_count(&b) > single + 10, "the union doubles the tree");

    let out = coffer(&["rekey", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("copies merged"), "{}", out.stderr);
    want.extend(a_only);
    want.extend(b_only);
    assert_reads(&b, &pf, &want);
    // One copy of everything: the plaintext tree is exactly `want` (no name shown twice).
    let v = Vault::unlock(&b, None, b"pw", true).unwrap();
    let mut shown = Vec::new();
    let mut todo = vec![(v.root_dir().unwrap(), String::new())];
    while let Some((dir, prefix)) = todo.pop() {
        for e in v.list(&dir).unwrap() {
            let name = format!("{prefix}{}", String::from_utf8(e.plain.clone()).unwrap());
            if e.d_type == libc::DT_DIR {
                todo.push((v.open_dir_path(name.as_bytes()).unwrap(), format!("{name}/")));
            } else {
                shown.push(name);
            }
        }
    }
    shown.sort();
    let expected: Vec<String> = want.keys().cloned().collect();
    assert_eq!(shown, expected);
    let (code, report) = fsck_report(&b, &pf, &[]);
    assert_eq!(code, 0, "{report}");
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_reads(&b, &pf, &want);
}

/// A file under another machine's epoch arrives (its name and contents sealed under a key
/// this config does not list): `rekey` reports it and leaves it byte for byte, and `--finish`
/// refuses while it is there.
#[test]
fn objects_under_an_epoch_the_config_does_not_list_are_reported_and_left_alone() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let b = t.path().join("b");
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&a, &pf, "2");
    write_files(&a, "pw", &tree());
    cp_a(&a, &b);
    let b_only: BTreeMap<_, _> = [("b-only.txt".to_string(), b"written on machine B\n".to_vec())].into();
    write_files(&b, "pw", &b_only);
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let entry = backing_of_root_entry(&b, "pw", "b-only.txt");
    let arrived = std::fs::read(b.join(&entry)).unwrap();
    sync_file(&b.join(&entry), &a.join(&entry));

    let out = coffer(&["rekey", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("left: 1 objects under a key epoch this config does not list"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains(s(&entry)), "{}", out.stderr);
    assert_eq!(std::fs::read(a.join(&entry)).unwrap(), arrived);
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("left: 1 objects under a key epoch this config does not list"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read(a.join(&entry)).unwrap(), arrived);
}

/// B's vault is mounted and its rekey runs in the mount; A's rekey syncs in before B's walk
/// starts (B's run stopped there by the test hook). The mount's walk sees coffer.conf name
/// another newest epoch and stops; the run exits with one line naming that epoch and says
/// what to do. Unmounted, `coffer rekey` then moves everything to A's epoch; nothing is lost.
#[test]
fn a_rekey_through_a_mount_stops_when_another_machines_epoch_syncs_in() {
    if !crate::support::common::fuse_available() {
        return;
    }
    let (t, a, b, pf, want) = replicas();
    let mnt = t.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let d = crate::support::daemon::Daemon::start(&b, &mnt, &pf, Duration::from_secs(120));

    let mut on_b = spawn_rekey_stopping(&b, &pf, 0);
    wait_stopped(&mut on_b);
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let a_epoch = newest_epoch(&a);
    sync_config(&a, &b);
    let out = resume(on_b);
    assert_eq!(out.code, 1, "{}", out.stderr);
    let line = format!(
        "coffer: error: another machine started a rekey (key epoch {a_epoch}) while this one ran: the mount stopped re-encrypting"
    );
    assert!(out.stderr.lines().any(|l| l == line), "{}", out.stderr);
    assert!(out.stderr.contains("unmount the vault"), "{}", out.stderr);
    // The mount still serves every file, and what it writes now (under this run's epoch,
    // which coffer.conf no longer lists) stays reachable through the kept config.
    let copies: Vec<_> = std::fs::read_dir(&b)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("coffer (conflicted copy of a stopped rekey to "))
        .collect();
    assert_eq!(copies.len(), 1, "{copies:?}");
    for (path, data) in &want {
        assert!(std::fs::read(d.mnt.join(path)).unwrap() == *data, "{path}");
    }
    let mut want = want;
    want.insert(
        "written-after.txt".into(),
        b"written by the mount after the race\n".to_vec(),
    );
    std::fs::write(d.mnt.join("written-after.txt"), &want["written-after.txt"]).unwrap();
    d.stop();

    // No rollback refusal: the run pinned the config it found.
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains(&copies[0]), "{}", out.stderr);
    assert_eq!(newest_epoch(&b), a_epoch);
    assert_reads(&b, &pf, &want);
    let (code, report) = fsck_report(&b, &pf, &[]);
    assert_eq!(code, 0, "{report}");
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&b)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
}
