//! A vault synced to two machines, A and B (two copies of one CIPHERDIR here). A runs
//! `coffer rekey` while B is mounted; the sync client brings A's new coffer.conf and
//! coffer.epochs to B. B's mount keeps working with its old keys, and its log says once that
//! the config now has a key epoch the mount does not have; what B writes stays under its old
//! epoch, and A's next `coffer rekey` moves it (needs /dev/fuse).

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use crate::support::{cli as cli_common, common};

use cli_common::{coffer, init_version, passfile, put_file, Unmount};
use common::{fuse_available, wait_for};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The names in backing directory `dir`.
fn names(dir: &Path) -> HashSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect()
}

/// Copies `from` to `to` as a sync client does: into a temporary next to `to`, then renamed.
fn sync_file(from: &Path, to: &Path) {
    let tmp = to.with_file_name(".sync-tmp");
    std::fs::copy(from, &tmp).unwrap();
    std::fs::rename(&tmp, to).unwrap();
}

/// The newest epoch of the config at `v`: (hex ID, seq).
fn newest_epoch(v: &Path) -> (String, u64) {
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    let last = cfg["epochs"].as_array().unwrap().last().unwrap().clone();
    (last["id"].as_str().unwrap().to_string(), last["seq"].as_u64().unwrap())
}

const WARNING: &str = "which this mount does not have (a rekey ran elsewhere)";

fn warnings(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(WARNING))
        .map(str::to_string)
        .collect()
}

#[test]
fn a_mount_warns_once_when_the_synced_config_gains_a_key_epoch_and_keeps_working() {
    if !fuse_available() {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let (a, b) = (t.path().join("a"), t.path().join("b"));
    let pf = passfile(t.path(), "pw", "pw");
    init_version(&a, &pf, "2");
    {
        let vault = coffer::vault::Vault::unlock(&a, None, b"pw", false).unwrap();
        put_file(&vault, b"old.txt", b"written before the rekey\n");
    }
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(status.success());
    let synced_before = names(&b);

    // B is mounted and used.
    let mp = t.path().join("mp");
    std::fs::create_dir(&mp).unwrap();
    let log = t.path().join("b.log");
    let guard = Unmount(mp.clone());
    let out = coffer(&["mount", "--log", s(&log), "--passfile", s(&pf), s(&b), s(&mp)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    std::fs::write(
        mp.join("from-b-before.txt"),
        b"B wrote this before the new config came\n",
    )
    .unwrap();

    // A rekeys (offline); the sync client brings its config to B.
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (new_id, new_seq) = newest_epoch(&a);
    assert_eq!(new_seq, 1);
    sync_file(&a.join("coffer.epochs"), &b.join("coffer.epochs"));
    sync_file(&a.join("coffer.conf"), &b.join("coffer.conf"));
    wait_for(Duration::from_secs(10), "the warning in B's log", || {
        !warnings(&log).is_empty()
    });
    let lines = warnings(&log);
    assert!(
        lines[0].contains(&format!("now has key epoch {new_id} (#1), {WARNING}")),
        "{lines:?}"
    );
    assert!(lines[0].contains("until you unmount and mount again"), "{lines:?}");

    // The same config synced again (a new file, the same epochs): no second warning, after
    // more than two rounds of the watch.
    sync_file(&a.join("coffer.conf"), &b.join("coffer.conf"));
    std::thread::sleep(Duration::from_secs(5));
    assert_eq!(warnings(&log).len(), 1, "{:?}", warnings(&log));

    // B keeps working with its old keys.
    assert_eq!(
        std::fs::read(mp.join("old.txt")).unwrap(),
        b"written before the rekey\n"
    );
    std::fs::write(mp.join("from-b-after.txt"), b"B wrote this after the new config came\n").unwrap();
    assert_eq!(
        std::fs::read(mp.join("from-b-after.txt")).unwrap(),
        b"B wrote this after the new config came\n"
    );
    drop(guard);
    wait_for(Duration::from_secs(5), "B unmounted", || !common::is_mounted(&mp));
    assert_eq!(warnings(&log).len(), 1, "{:?}", warnings(&log));

    // B's new files sync to A; A's next rekey moves them (they are under B's epoch, the older
    // one of A's config), and --finish then goes through.
    let written_on_b: Vec<String> = names(&b)
        .difference(&synced_before)
        .filter(|n| !n.starts_with("coffer."))
        .cloned()
        .collect();
    assert_eq!(written_on_b.len(), 2, "{written_on_b:?}");
    for n in &written_on_b {
        sync_file(&b.join(n), &a.join(n));
    }
    let out = coffer(&["rekey", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("to re-encrypt: 2 files"), "{}", out.stderr);
    let out = coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let mp_a = t.path().join("mp-a");
    std::fs::create_dir(&mp_a).unwrap();
    let _guard_a = Unmount(mp_a.clone());
    let out = coffer(&["mount", "--passfile", s(&pf), s(&a), s(&mp_a)], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for (name, want) in [
        ("old.txt", &b"written before the rekey\n"[..]),
        ("from-b-before.txt", b"B wrote this before the new config came\n"),
        ("from-b-after.txt", b"B wrote this after the new config came\n"),
    ] {
        assert_eq!(std::fs::read(mp_a.join(name)).unwrap(), want, "{name}");
    }
}
