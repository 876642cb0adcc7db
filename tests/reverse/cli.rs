//! `coffer init --reverse` and `coffer reverse` end to end through the binary: background mount,
//! copy, `coffer cat` of the copy, recovery key, wrong password, forward config refused.

use crate::support::cli as cli_common;
use crate::support::common;

use std::ffi::OsStr;
use std::path::Path;

use cli_common::{coffer, passfile, recovery_key_from, Unmount};

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

fn reverse(plain: &Path, mnt: &Path, extra: &[&OsStr]) -> cli_common::Out {
    let mut args: Vec<&OsStr> = vec![os("reverse")];
    args.extend_from_slice(extra);
    args.push(plain.as_os_str());
    args.push(mnt.as_os_str());
    coffer(&args, None)
}

#[test]
fn init_reverse_mount_copy_and_read_back() {
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(plain.join("docs")).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(plain.join("docs/a.txt"), b"hello reverse").unwrap();
    let pf = passfile(tmp.path(), "pw", "secret words");
    let init_args = [
        os("init"),
        os("--reverse"),
        os("--insecure-fast-kdf"),
        os("--passfile"),
        pf.as_os_str(),
        plain.as_os_str(),
    ];
    let init = coffer(&init_args, None);
    assert_eq!(init.code, 0, "{}", init.stderr);
    let key = recovery_key_from(&init.stdout_str());
    assert!(plain.join(".coffer.reverse.conf").is_file());
    let again = coffer(&init_args, None);
    assert_eq!(again.code, 7, "{}", again.stderr);

    // Wrong password: reported by the background process, exit code 3, nothing mounted.
    let bad = passfile(tmp.path(), "bad", "nope");
    let out = reverse(&plain, &mnt, &[os("--passfile"), bad.as_os_str()]);
    assert_eq!(out.code, 3, "{}", out.stderr);

    let out = reverse(
        &plain,
        &mnt,
        &[os("--passfile"), pf.as_os_str(), os("--exclude"), os("*.tmp")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let guard = Unmount(mnt.clone());
    assert!(mnt.join("coffer.conf").is_file());
    assert!(mnt.join("coffer.diriv").is_file());
    let copy = tmp.path().join("copy");
    cli_common_copy(&mnt, &copy);
    drop(guard);

    let cat = coffer(
        &[
            os("cat"),
            os("--passfile"),
            pf.as_os_str(),
            copy.as_os_str(),
            os("docs/a.txt"),
        ],
        None,
    );
    assert_eq!(cat.code, 0, "{}", cat.stderr);
    assert_eq!(cat.stdout, b"hello reverse");

    // `coffer export` of the copy restores the plain tree (the hidden config is not part of it).
    let out_dir = tmp.path().join("restored");
    let export = coffer(
        &[
            os("export"),
            os("--passfile"),
            pf.as_os_str(),
            copy.as_os_str(),
            out_dir.as_os_str(),
        ],
        None,
    );
    assert_eq!(export.code, 0, "{}", export.stderr);
    assert_eq!(std::fs::read(out_dir.join("docs/a.txt")).unwrap(), b"hello reverse");
    let mut names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, vec![std::ffi::OsString::from("docs")]);

    // The recovery key opens the reverse config too.
    let kf = passfile(tmp.path(), "key", &key);
    let out = reverse(&plain, &mnt, &[os("--masterkey"), os("--passfile"), kf.as_os_str()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let _guard = Unmount(mnt.clone());
    assert!(mnt.join("coffer.conf").is_file());
}

/// `cp -a SRC COPY`.
fn cli_common_copy(src: &Path, copy: &Path) {
    common::run(
        Path::new("/"),
        "cp",
        &["-a", &format!("{}/.", src.display()), &copy.display().to_string()],
    );
}

#[test]
fn a_forward_config_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let vault = tmp.path().join("vault");
    std::fs::create_dir(&vault).unwrap();
    cli_common::init_cli(&vault, "pw");
    let plain = tmp.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let pf = passfile(tmp.path(), "pw", "pw");
    let cfg = vault.join("coffer.conf");
    let out = reverse(
        &plain,
        &mnt,
        &[os("--config"), cfg.as_os_str(), os("--passfile"), pf.as_os_str()],
    );
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(out.stderr.contains("reverse"), "{}", out.stderr);
    // No config at all: also "not a vault".
    let out = reverse(&plain, &mnt, &[os("--passfile"), pf.as_os_str()]);
    assert_eq!(out.code, 4, "{}", out.stderr);
}

/// Every regular file under `root` (relative name, bytes).
fn files(root: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                todo.push(e.path());
            } else if t.is_file() {
                let rel = e.path().strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

#[test]
fn rekey_of_a_reverse_config_changes_every_file_of_the_view() {
    if !common::fuse_available() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain");
    let mnt = tmp.path().join("mnt");
    std::fs::create_dir_all(plain.join("docs")).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    std::fs::write(plain.join("docs/a.txt"), b"hello reverse").unwrap();
    std::fs::write(plain.join("big.bin"), vec![7u8; 20_000]).unwrap();
    let pf = passfile(tmp.path(), "pw", "secret words");
    let init = coffer(
        &[
            os("init"),
            os("--reverse"),
            os("--insecure-fast-kdf"),
            os("--passfile"),
            pf.as_os_str(),
            plain.as_os_str(),
        ],
        None,
    );
    assert_eq!(init.code, 0, "{}", init.stderr);
    let old_key = passfile(tmp.path(), "old-key", &recovery_key_from(&init.stdout_str()));
    let view = |copy: &Path| {
        let out = reverse(&plain, &mnt, &[os("--passfile"), pf.as_os_str()]);
        assert_eq!(out.code, 0, "{}", out.stderr);
        let guard = Unmount(mnt.clone());
        cli_common_copy(&mnt, copy);
        drop(guard);
    };
    let before = tmp.path().join("before");
    view(&before);
    let plain_entries = || {
        let mut n: Vec<_> = std::fs::read_dir(&plain)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        n.sort();
        n
    };
    let entries = plain_entries();

    // Wrong password: refused, the config untouched.
    let conf = plain.join(".coffer.reverse.conf");
    let conf_bytes = std::fs::read(&conf).unwrap();
    let bad = passfile(tmp.path(), "bad", "nope");
    let out = coffer(
        &[os("rekey"), os("--passfile"), bad.as_os_str(), plain.as_os_str()],
        None,
    );
    assert_ne!(out.code, 0, "{}", out.stderr);
    assert_eq!(std::fs::read(&conf).unwrap(), conf_bytes);

    let out = coffer(
        &[os("rekey"), os("--passfile"), pf.as_os_str(), plain.as_os_str()],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.contains("copies everything again"), "{}", out.stderr);
    let new_key = passfile(tmp.path(), "new-key", &recovery_key_from(&out.stdout_str()));
    let finish = coffer(
        &[
            os("rekey"),
            os("--finish"),
            os("--passfile"),
            pf.as_os_str(),
            plain.as_os_str(),
        ],
        None,
    );
    assert_eq!(finish.code, 0, "{}", finish.stderr);
    // Only the config changed in PLAINDIR, and it is still a reverse config of version 1.
    assert_eq!(plain_entries(), entries);
    let info = coffer(&[os("info"), os("--config"), conf.as_os_str(), plain.as_os_str()], None);
    assert_eq!(info.code, 0, "{}", info.stderr);
    assert!(
        info.stdout_str().contains("format version:  1"),
        "{}",
        info.stdout_str()
    );

    let after = tmp.path().join("after");
    view(&after);
    let (old, new) = (files(&before), files(&after));
    assert_eq!(old.len(), new.len());
    for (name, bytes) in &new {
        assert!(
            !old.values().any(|b| b == bytes),
            "{} of the new view repeats a file of the old one",
            name.display()
        );
        assert!(!old.contains_key(name) || name.ends_with("coffer.diriv") || name.ends_with("coffer.conf"));
    }
    // Each copy opens with the password and with its own recovery key only.
    let cat = |copy: &Path, extra: &[&OsStr]| {
        let mut args = vec![os("cat")];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[copy.as_os_str(), os("docs/a.txt")]);
        coffer(&args, None)
    };
    for copy in [&before, &after] {
        let out = cat(copy, &[os("--passfile"), pf.as_os_str()]);
        assert_eq!(out.stdout, b"hello reverse", "{}", out.stderr);
    }
    let m = os("--masterkey");
    assert_eq!(
        cat(&before, &[m, os("--passfile"), old_key.as_os_str()]).stdout,
        b"hello reverse"
    );
    assert_eq!(
        cat(&after, &[m, os("--passfile"), new_key.as_os_str()]).stdout,
        b"hello reverse"
    );
    assert_ne!(cat(&after, &[m, os("--passfile"), old_key.as_os_str()]).code, 0);
    assert_ne!(cat(&before, &[m, os("--passfile"), new_key.as_os_str()]).code, 0);
}
