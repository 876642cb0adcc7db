//! Key slots through the command line: each kind added, listed, used to unlock (cat, export,
//! a background mount) and removed; a vault made for recipients alone; the tamper cases (a
//! slot added, removed, reordered or its sealed description edited without the key; a
//! substituted wrap); the KDF cost bound; one-line errors for bad input; a rekey that rewraps
//! every slot without its secret.

use std::path::{Path, PathBuf};

use crate::support::cli::{coffer, passfile, recovery_key_from};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// An SSH ed25519 key pair (no passphrase) at `dir/name` and `dir/name.pub`.
fn ssh_key(dir: &Path, name: &str) -> PathBuf {
    let key = dir.join(name);
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "test@coffer", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(st.success());
    key
}

/// An age identity file at `dir/name`; returns (its path, its recipient).
fn age_identity(dir: &Path, name: &str) -> (PathBuf, String) {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let path = dir.join(name);
    std::fs::write(&path, format!("# test identity\n{}\n", id.to_string().expose_secret())).unwrap();
    (path, id.to_public().to_string())
}

fn cat_with(v: &Path, file: &str, how: &[&str]) -> crate::support::cli::Out {
    let mut args = vec!["cat"];
    args.extend_from_slice(how);
    args.extend_from_slice(&[s(v), file]);
    coffer(&args, None)
}

/// `coffer init` of `v` with the password in `pf` (the cheap test KDF).
fn init_with(v: &Path, pf: &Path) {
    ok(
        &coffer(
            &["init", "--insecure-fast-kdf", "--quiet", "--passfile", s(pf), s(v)],
            None,
        ),
        "init",
    );
}

fn ok(out: &crate::support::cli::Out, what: &str) {
    assert_eq!(out.code, 0, "{what}: {}", out.stderr);
}

/// One vault, one slot of each kind: each opens it (cat), the listing shows IDs and kinds
/// without an unlock and labels and recipients after one; removing a slot stops that way in
/// and the last slot cannot go.
#[test]
fn every_slot_kind_adds_lists_unlocks_and_removes() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pf", "first password");
    let pf2 = passfile(t.path(), "pf2", "second password");
    init_with(&v, &pf);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(cfg["format_version"], 3, "{cfg}");
    assert!(cfg.get("kdf").is_none() && cfg.get("wrapped_master_key").is_none());
    {
        let m = coffer::vault::Vault::unlock(&v, None, b"first password", false).unwrap();
        crate::support::cli::put_file(&m, b"f.txt", b"shared secret\n");
    }
    let kf = t.path().join("usb.key");
    std::fs::write(&kf, [7u8; 32]).unwrap();
    let ssh = ssh_key(t.path(), "id_ed25519");
    let (age_id, age_rcpt) = age_identity(t.path(), "age.txt");
    let unlock = ["--passfile", s(&pf)];
    let add = |extra: &[&str]| {
        let mut a = vec!["key", "add", s(&v)];
        a.extend_from_slice(extra);
        a.extend_from_slice(&unlock);
        coffer(&a, None)
    };
    ok(&add(&["--keyfile", s(&kf), "--label", "usb"]), "add key file");
    ok(
        &add(&[
            "--password",
            "--new-passfile",
            s(&pf2),
            "--insecure-fast-kdf",
            "--label",
            "partner",
        ]),
        "add password",
    );
    ok(
        &add(&["--recipient-file", &format!("{}.pub", s(&ssh)), "--label", "laptop"]),
        "add ssh",
    );
    ok(&add(&["--recipient", &age_rcpt, "--label", "phone"]), "add age");
    let dup = add(&["--recipient", &age_rcpt, "--label", "phone"]);
    assert_eq!(dup.code, 2, "a label twice: {}", dup.stderr);
    assert_eq!(
        dup.stderr.lines().next().unwrap(),
        "coffer: error: a key slot is labelled `phone` already"
    );

    let public = coffer(&["key", "list", "--public", s(&v)], None);
    ok(&public, "list --public");
    let text = public.stdout_str();
    for kind in ["password", "keyfile", "ssh-ed25519", "age"] {
        assert!(text.contains(kind), "{text}");
    }
    for secret in ["usb", "partner", "laptop", "phone", "ssh-ed25519 AAAA", "age1"] {
        assert!(!text.contains(secret), "`{secret}` shown without an unlock: {text}");
    }
    // The config itself shows no label or recipient either.
    let raw = std::fs::read_to_string(v.join("coffer.conf")).unwrap();
    for secret in ["usb", "partner", "laptop", "phone", "test@coffer", &age_rcpt] {
        assert!(!raw.contains(secret), "`{secret}` in coffer.conf");
    }
    let listed = coffer(&["key", "list", "--identity", s(&age_id), s(&v)], None);
    ok(&listed, "list");
    let text = listed.stdout_str();
    for shown in ["usb", "partner", "laptop", "phone", &age_rcpt, "ssh-ed25519 AAAA"] {
        assert!(text.contains(shown), "`{shown}` not listed: {text}");
    }
    assert_eq!(text.lines().count(), 6, "header and five slots: {text}");

    // Each way in opens it.
    for how in [
        vec!["--passfile", s(&pf)],
        vec!["--passfile", s(&pf2)],
        vec!["--keyfile", s(&kf)],
        vec!["--identity", s(&ssh)],
        vec!["--identity", s(&age_id)],
    ] {
        let out = cat_with(&v, "f.txt", &how);
        ok(&out, &format!("cat {how:?}"));
        assert_eq!(out.stdout, b"shared secret\n");
    }
    let out_dir = t.path().join("export");
    ok(
        &coffer(&["export", "--identity", s(&ssh), s(&v), s(&out_dir)], None),
        "export with an SSH key",
    );
    assert_eq!(std::fs::read(out_dir.join("f.txt")).unwrap(), b"shared secret\n");

    // Wrong or unknown ways in: one clear line each.
    let other_kf = t.path().join("other.key");
    std::fs::write(&other_kf, [8u8; 32]).unwrap();
    let out = cat_with(&v, "f.txt", &["--keyfile", s(&other_kf)]);
    assert_eq!(out.code, 3);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "coffer: error: no key slot of this vault accepts this key file"
    );
    let (stranger, _) = age_identity(t.path(), "stranger.txt");
    let out = cat_with(&v, "f.txt", &["--identity", s(&stranger)]);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "coffer: error: no key slot of this vault accepts this identity"
    );
    let out = cat_with(&v, "f.txt", &["--identity", s(&pf)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.starts_with("coffer: error: "), "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{}",
        out.stderr
    );
    let sk = "sk-ssh-ed25519@openssh.com AAAAGnNrLXNzaC1lZDI1NTE5QG9wZW5zc2guY29tAAAAIA== k";
    let out = add(&["--recipient", sk]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("FIDO security keys"), "{}", out.stderr);
    let out = add(&["--recipient", "age1notarecipient"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("not an age recipient"), "{}", out.stderr);
    let ecdsa = t.path().join("id_ecdsa");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ecdsa", "-N", "", "-f"])
        .arg(&ecdsa)
        .status()
        .unwrap();
    assert!(st.success());
    let out = add(&["--recipient-file", &format!("{}.pub", s(&ecdsa))]);
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        "coffer: error: SSH keys of type `ecdsa-sha2-nistp256` are not supported: use ssh-ed25519 or ssh-rsa",
        "{}",
        out.stderr
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);

    // A background mount with the key file, an export with the age key.
    if crate::support::common::fuse_available() {
        let m = t.path().join("m");
        std::fs::create_dir(&m).unwrap();
        ok(
            &coffer(&["mount", "--keyfile", s(&kf), s(&v), s(&m)], None),
            "mount with a key file",
        );
        let got = std::fs::read(m.join("f.txt"));
        ok(&coffer(&["unmount", s(&m)], None), "unmount");
        assert_eq!(got.unwrap(), b"shared secret\n");
    }
    let age_out = t.path().join("export-age");
    ok(
        &coffer(&["export", "--identity", s(&age_id), s(&v), s(&age_out)], None),
        "export with the age key",
    );
    assert_eq!(std::fs::read(age_out.join("f.txt")).unwrap(), b"shared secret\n");

    // Remove by label and by ID; the removed way in opens nothing.
    let rm = |which: &str, how: &[&str]| {
        let mut a = vec!["key", "remove", s(&v), which];
        a.extend_from_slice(how);
        coffer(&a, None)
    };
    let out = rm("usb", &["--identity", s(&ssh)]);
    ok(&out, "remove usb");
    assert!(
        out.stderr.contains("coffer rekey"),
        "says what removal means: {}",
        out.stderr
    );
    assert_eq!(cat_with(&v, "f.txt", &["--keyfile", s(&kf)]).code, 3);
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(cfg["removed_slots"].as_array().unwrap().len(), 1, "{cfg}");
    for label in ["partner", "laptop", "phone"] {
        ok(&rm(label, &["--passfile", s(&pf)]), label);
    }
    let out = rm("nothing-like-it", &["--passfile", s(&pf)]);
    assert_eq!(out.code, 2);
    let id = cfg["slots"][0]["id"].as_str().unwrap().to_string();
    let out = rm(&id, &["--passfile", s(&pf)]);
    assert_eq!(out.code, 2, "the last slot stays: {}", out.stderr);
    assert!(out.stderr.contains("last key slot"), "{}", out.stderr);
    ok(
        &cat_with(&v, "f.txt", &["--passfile", s(&pf)]),
        "the first password still opens it",
    );
    assert_eq!(cat_with(&v, "f.txt", &["--identity", s(&ssh)]).code, 3);
}

/// A vault made for an SSH key and an age key alone: no password slot, a recovery key
/// printed; it mounts in the background with the SSH key; a rekey (unlocked with the
/// recovery-key-free identity) is not needed for `key add`, and `rekey` of a vault with a
/// password slot rewraps every slot: after `--finish` each identity still opens it.
#[test]
fn a_vault_for_recipients_alone_mounts_with_an_identity_and_rekey_rewraps_every_slot() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let ssh = ssh_key(t.path(), "id_ed25519");
    let (age_id, age_rcpt) = age_identity(t.path(), "age.txt");
    let out = coffer(
        &[
            "init",
            "--recipient-file",
            &format!("{}.pub", s(&ssh)),
            "--recipient",
            &age_rcpt,
            s(&v),
        ],
        Some(b""),
    );
    ok(&out, "init for recipients");
    let recovery = recovery_key_from(&out.stdout_str());
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    let kinds: Vec<&str> = cfg["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        ["age", "ssh-ed25519"],
        "--recipient first, then --recipient-file"
    );
    // The recovery key opens it too.
    let out = coffer(
        &["cat", "--masterkey", s(&v), "nothing"],
        Some(format!("{recovery}\n").as_bytes()),
    );
    assert!(
        out.stderr.contains("nothing"),
        "the key was accepted, the file is missing: {}",
        out.stderr
    );

    if crate::support::common::fuse_available() {
        let m = t.path().join("m");
        std::fs::create_dir(&m).unwrap();
        ok(
            &coffer(&["mount", "--identity", s(&ssh), s(&v), s(&m)], None),
            "mount with an SSH key",
        );
        std::fs::write(m.join("written.txt"), b"through the mount\n").unwrap();
        ok(&coffer(&["unmount", s(&m)], None), "unmount");
    } else {
        let vault = {
            let cfg = coffer::vault::unlock::read_config(&v.join("coffer.conf")).unwrap();
            let ids = coffer::crypto::read_identities(
                &std::fs::read(&age_id).unwrap(),
                "age.txt",
                coffer::crypto::NoCallbacks,
            )
            .unwrap();
            let (key, _) = coffer::vault::unlock::slots::unlock_any(
                &cfg,
                &coffer::vault::unlock::slots::Credential::Identities(&ids),
            )
            .unwrap();
            let keys = coffer::vault::unlock::vault_keys(&cfg, &key).unwrap();
            coffer::vault::Vault::open_with_keys(&v, keys, cfg.params(), false).unwrap()
        };
        crate::support::cli::put_file(&vault, b"written.txt", b"through the mount\n");
    }
    let out = cat_with(&v, "written.txt", &["--identity", s(&age_id)]);
    ok(&out, "cat with the age key");
    assert_eq!(out.stdout, b"through the mount\n");

    // A rekey of a vault without a password, unlocked with an SSH key: every slot gets the
    // new key, and the lineage names the new epoch.
    ok(
        &coffer(&["rekey", "--identity", s(&ssh), s(&v)], None),
        "rekey with an identity",
    );
    ok(
        &coffer(&["rekey", "--finish", "--identity", s(&age_id), s(&v)], None),
        "finish with another identity",
    );
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    assert_eq!(cfg["epochs"].as_array().unwrap().len(), 1, "{cfg}");
    assert_eq!(cfg["lineage"].as_array().unwrap().len(), 1, "{cfg}");
    assert_eq!(cfg["lineage"][0]["to"], cfg["epochs"][0]["id"]);

    // A password slot, then a rekey through it: every slot gets the new key.
    let pf = passfile(t.path(), "pf", "pw");
    ok(
        &coffer(
            &[
                "key",
                "add",
                s(&v),
                "--password",
                "--new-passfile",
                s(&pf),
                "--insecure-fast-kdf",
                "--identity",
                s(&ssh),
            ],
            None,
        ),
        "add a password",
    );
    let before = std::fs::read(v.join("coffer.conf")).unwrap();
    ok(&coffer(&["rekey", "--passfile", s(&pf), s(&v)], None), "rekey");
    ok(
        &coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None),
        "finish",
    );
    for how in [
        ["--identity", s(&ssh)],
        ["--identity", s(&age_id)],
        ["--passfile", s(&pf)],
    ] {
        let out = cat_with(&v, "written.txt", &how);
        ok(&out, &format!("{how:?} after the rekey"));
        assert_eq!(out.stdout, b"through the mount\n");
    }
    // The old config, with an identity that it lists, opens nothing of the new CIPHERDIR.
    let old = t.path().join("old.conf");
    std::fs::write(&old, &before).unwrap();
    let out = cat_with(
        &v,
        "written.txt",
        &["--config", s(&old), "--identity", s(&ssh), "--accept-config-change"],
    );
    assert_ne!(out.code, 0, "the old config still opened the file: {}", out.stderr);
}

/// Editing the slot list without the key is detected: a slot dropped, two reordered, a
/// description changed, a wrapped key swapped for one made by someone else (a whole new
/// config for the user's own SSH key is the substitution the pin is for, not the MAC).
#[test]
fn slot_lists_edited_without_the_key_are_refused() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pf", "pw");
    let pf2 = passfile(t.path(), "pf2", "pw2");
    init_with(&v, &pf);
    ok(
        &coffer(
            &[
                "key",
                "add",
                s(&v),
                "--password",
                "--new-passfile",
                s(&pf2),
                "--insecure-fast-kdf",
                "--label",
                "b",
                "--passfile",
                s(&pf),
            ],
            None,
        ),
        "add",
    );
    let good: serde_json::Value = serde_json::from_slice(&std::fs::read(v.join("coffer.conf")).unwrap()).unwrap();
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;
    let edits: Vec<(&str, Edit)> = vec![
        (
            "slot dropped",
            Box::new(|c| {
                c["slots"].as_array_mut().unwrap().remove(1);
            }),
        ),
        (
            "slots reordered",
            Box::new(|c| c["slots"].as_array_mut().unwrap().swap(0, 1)),
        ),
        (
            "description edited",
            Box::new(|c| {
                let sealed = c["slots"][1]["sealed"].as_str().unwrap().to_string();
                let mut b = sealed.into_bytes();
                b[20] = if b[20] == b'A' { b'B' } else { b'A' };
                c["slots"][1]["sealed"] = String::from_utf8(b).unwrap().into();
            }),
        ),
        (
            "removed list emptied",
            Box::new(|c| c["removed_slots"] = serde_json::json!(["0badc0de"])),
        ),
        ("cost lowered", Box::new(|c| c["slots"][1]["kdf"]["t"] = 2.into())),
    ];
    for (what, edit) in edits {
        let mut c = good.clone();
        edit(&mut c);
        std::fs::write(v.join("coffer.conf"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
        for p in [&pf, &pf2] {
            let out = cat_with(&v, "x", &["--passfile", s(p)]);
            assert!(
                out.stderr.contains("coffer.conf was modified") || out.code == 3,
                "{what}: opened anyway: {}",
                out.stderr
            );
            assert_ne!(out.code, 0, "{what}");
        }
    }
    // Five default-cost password slots: refused before any KDF runs.
    let mut c = good.clone();
    let slot = c["slots"][0].clone();
    let list = c["slots"].as_array_mut().unwrap();
    list.clear();
    for i in 0..5 {
        let mut s2 = slot.clone();
        s2["id"] = format!("0000000{i}").into();
        s2["kdf"]["m_kib"] = 65536.into();
        s2["kdf"]["t"] = 6.into();
        list.push(s2);
    }
    std::fs::write(v.join("coffer.conf"), serde_json::to_vec_pretty(&c).unwrap()).unwrap();
    let start = std::time::Instant::now();
    let out = cat_with(&v, "x", &["--passfile", s(&pf)]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("more than 4x the default"), "{}", out.stderr);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(2),
        "no KDF ran: {:?}",
        start.elapsed()
    );
}

/// Key substitution: someone who can write CIPHERDIR and knows the user's SSH public key
/// writes a whole new config (same vault ID, a later epoch number, a fresh key wrapped for
/// that SSH key, MAC'd under it). The user's SSH key opens it, but this machine pinned the
/// vault's key: "coffer.conf was replaced", until told to accept it. A real rekey made on
/// another machine (another state directory), finished there, is followed through its signed
/// lineage and opens without a word.
#[test]
fn a_config_substituted_for_the_users_key_is_refused_and_a_real_rekey_elsewhere_is_followed() {
    use coffer::format::epochs::{Epoch, EpochId, Epochs, Layout};
    use coffer::vault::unlock::slots;
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let ssh = ssh_key(t.path(), "id_ed25519");
    let pf = passfile(t.path(), "pf", "pw");
    let pubkey = std::fs::read_to_string(format!("{}.pub", s(&ssh))).unwrap();
    ok(
        &coffer(&["init", "--quiet", "--recipient", pubkey.trim(), s(&v)], Some(b"")),
        "init",
    );
    ok(
        &coffer(
            &[
                "key",
                "add",
                s(&v),
                "--password",
                "--new-passfile",
                s(&pf),
                "--insecure-fast-kdf",
                "--identity",
                s(&ssh),
            ],
            None,
        ),
        "add a password",
    );
    {
        let m = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
        crate::support::cli::put_file(&m, b"f.txt", b"real\n");
    }
    ok(
        &cat_with(&v, "f.txt", &["--identity", s(&ssh)]),
        "first open pins the vault",
    );

    // A real rekey on another machine, finished there: followed here.
    let elsewhere = t.path().join("other-machine-state");
    let env = [("XDG_STATE_HOME", elsewhere.as_os_str())];
    for finish in [false, true] {
        let mut args = vec!["rekey", "--passfile", s(&pf), s(&v)];
        if finish {
            args.insert(1, "--finish");
        }
        ok(
            &crate::support::cli::coffer_env(&args, &env),
            "rekey on the other machine",
        );
    }
    let out = cat_with(&v, "f.txt", &["--identity", s(&ssh)]);
    ok(&out, "a finished rekey from elsewhere is followed");
    assert_eq!(out.stdout, b"real\n");

    // The substitute, built with the library as an attacker would with the format.
    let real = coffer::vault::unlock::read_config(&v.join("coffer.conf")).unwrap();
    let vault = real.vault_id().unwrap();
    let newest = real.epochs().unwrap().unwrap().newest().clone();
    let fake_key = coffer::crypto::MasterKey::generate().unwrap();
    let epochs = Epochs::new(vec![Epoch {
        id: EpochId([9, 9, 9, 9]),
        seq: newest.seq + 1,
        layout: Layout::V3,
        sealed_key: None,
    }])
    .unwrap();
    let recipient = coffer::crypto::SlotRecipient::parse(pubkey.trim()).unwrap();
    let slot = slots::make_slot(
        &fake_key,
        vault,
        slots::fresh_id(&[]).unwrap(),
        &slots::NewSlot::Recipient(recipient),
        None,
    )
    .unwrap();
    let list = coffer::format::config::slots::Slots {
        slots: vec![slot],
        removed: Vec::new(),
    };
    let saved = std::fs::read(v.join("coffer.conf")).unwrap();
    slots::write_v3(
        &v.join("coffer.conf"),
        &real.params(),
        vault,
        &epochs,
        &list,
        &[],
        &fake_key,
    )
    .unwrap();
    let out = cat_with(&v, "f.txt", &["--identity", s(&ssh)]);
    assert_eq!(out.code, 4, "{}", out.stderr);
    assert!(
        out.stderr
            .starts_with("coffer: error: coffer.conf was replaced: its key is not the one this machine has seen"),
        "{}",
        out.stderr
    );
    // With a forged link from the real epoch (signed by a key that is not the epoch's): refused too.
    let forged = coffer::format::config::lineage::Link {
        from: newest.id,
        to: EpochId([9, 9, 9, 9]),
        seq: newest.seq + 1,
        key: coffer::crypto::epoch_verify_key(&fake_key),
        sig: coffer::crypto::epoch_sign(&fake_key, b"anything"),
    };
    slots::write_v3(
        &v.join("coffer.conf"),
        &real.params(),
        vault,
        &epochs,
        &list,
        &[forged],
        &fake_key,
    )
    .unwrap();
    assert_eq!(cat_with(&v, "f.txt", &["--identity", s(&ssh)]).code, 4);
    // Accepted on purpose, it opens (and shows none of the real files' contents).
    let out = cat_with(&v, "f.txt", &["--identity", s(&ssh), "--accept-config-change"]);
    assert_ne!(out.stdout, b"real\n");
    std::fs::write(v.join("coffer.conf"), &saved).unwrap();
}

/// The project's test plugin (`examples/age-plugin-coffertest.rs`), built if this run has not,
/// in a directory of its own to put on PATH.
fn test_plugin_dir(t: &Path) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let built = profile_dir.join("examples").join("age-plugin-coffertest");
    if !built.exists() {
        let st = std::process::Command::new(env!("CARGO"))
            .args(["build", "--quiet", "--example", "age-plugin-coffertest"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .unwrap();
        assert!(st.success(), "building the test plugin");
    }
    let dir = t.join("plugin-bin");
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(&built, dir.join("age-plugin-coffertest")).unwrap();
    dir
}

/// An age plugin slot, through the real plugin protocol: the recipient (`age1coffertest1…`)
/// is wrapped by running `age-plugin-coffertest` from PATH, the identity file
/// (`AGE-PLUGIN-COFFERTEST-1…`) unlocks `cat` and a rekey, and without the plugin on PATH the
/// error says which program is missing, in one line.
#[test]
fn a_plugin_slot_wraps_and_unwraps_through_the_plugin_on_path() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pf", "pw");
    let plugin_dir = test_plugin_dir(t.path());
    let path = format!("{}:{}", plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let env = [("PATH", std::ffi::OsStr::new(&path))];
    let keygen = std::process::Command::new(plugin_dir.join("age-plugin-coffertest"))
        .arg("--keygen")
        .output()
        .unwrap();
    assert!(keygen.status.success());
    let text = String::from_utf8(keygen.stdout).unwrap();
    let recipient = text
        .lines()
        .find_map(|l| l.strip_prefix("# recipient: "))
        .unwrap()
        .to_string();
    let id_file = t.path().join("plugin-identity.txt");
    std::fs::write(&id_file, &text).unwrap();

    init_with(&v, &pf);
    {
        let m = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
        crate::support::cli::put_file(&m, b"f.txt", b"through a plugin\n");
    }
    let add = |env: &[(&str, &std::ffi::OsStr)]| {
        crate::support::cli::coffer_env(
            &[
                "key",
                "add",
                s(&v),
                "--recipient",
                &recipient,
                "--label",
                "token",
                "--passfile",
                s(&pf),
            ],
            env,
        )
    };
    let bare = [("PATH", std::ffi::OsStr::new("/usr/bin:/bin"))];
    let out = add(&bare);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(out.stderr.contains("age-plugin-coffertest"), "{}", out.stderr);
    ok(&add(&env), "add a plugin slot");
    let listed = crate::support::cli::coffer_env(&["key", "list", "--passfile", s(&pf), s(&v)], &env);
    assert!(
        listed.stdout_str().contains("plugin       token"),
        "{}",
        listed.stdout_str()
    );
    assert!(listed.stdout_str().contains(&recipient), "{}", listed.stdout_str());

    let cat = |env: &[(&str, &std::ffi::OsStr)]| {
        crate::support::cli::coffer_env(&["cat", "--identity", s(&id_file), s(&v), "f.txt"], env)
    };
    let out = cat(&env);
    ok(&out, "cat through the plugin");
    assert_eq!(out.stdout, b"through a plugin\n");
    let out = cat(&bare);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("age-plugin-coffertest"), "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().filter(|l| l.contains("error")).count(),
        1,
        "{}",
        out.stderr
    );

    // A rekey wraps the new key for the plugin slot by running the plugin again.
    ok(
        &crate::support::cli::coffer_env(&["rekey", "--passfile", s(&pf), s(&v)], &env),
        "rekey",
    );
    ok(
        &crate::support::cli::coffer_env(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], &env),
        "finish",
    );
    let out = cat(&env);
    ok(&out, "cat through the plugin after the rekey");
    assert_eq!(out.stdout, b"through a plugin\n");
    // Another identity of the same plugin is not this slot's.
    let other = std::process::Command::new(plugin_dir.join("age-plugin-coffertest"))
        .arg("--keygen")
        .output()
        .unwrap();
    let other_file = t.path().join("other-identity.txt");
    std::fs::write(&other_file, other.stdout).unwrap();
    let out = crate::support::cli::coffer_env(&["cat", "--identity", s(&other_file), s(&v), "f.txt"], &env);
    assert_eq!(out.code, 3, "{}", out.stderr);
}

/// Revocation end to end: three slots for two parties (Alice: a password and an SSH key;
/// Bob: an age key). Bob's slot is removed with `--rekey`, then the rekey is finished. On a
/// machine that never saw the vault, Bob's identity opens nothing: not the current config, and
/// with the copy of the old config a sync client's history keeps, no name and no byte of any
/// file. Alice's two ways in still open everything.
#[test]
fn a_removed_identity_opens_nothing_after_rekey_and_finish_even_with_the_old_config() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pf", "alice's password");
    let alice_ssh = ssh_key(t.path(), "alice_ed25519");
    let (bob_id, bob_rcpt) = age_identity(t.path(), "bob.txt");
    init_with(&v, &pf);
    let add = |extra: &[&str]| {
        let mut a = vec!["key", "add", s(&v)];
        a.extend_from_slice(extra);
        a.extend_from_slice(&["--passfile", s(&pf)]);
        coffer(&a, None)
    };
    ok(
        &add(&[
            "--recipient-file",
            &format!("{}.pub", s(&alice_ssh)),
            "--label",
            "alice-laptop",
        ]),
        "alice ssh",
    );
    ok(&add(&["--recipient", &bob_rcpt, "--label", "bob"]), "bob");
    let files = [
        ("alice-notes.txt", &b"alice: the plan for spring\n"[..]),
        ("shared-budget.csv", b"rent,1200\nfood,400\n"),
        ("bob-diary.txt", b"bob: met alice for coffee\n"),
    ];
    {
        let m = coffer::vault::Vault::unlock(&v, None, b"alice's password", false).unwrap();
        for (n, data) in &files {
            crate::support::cli::put_file(&m, n.as_bytes(), data);
        }
    }
    ok(
        &cat_with(&v, "bob-diary.txt", &["--identity", s(&bob_id)]),
        "bob reads before",
    );
    let old_conf = t.path().join("coffer.conf.from-sync-history");
    std::fs::copy(v.join("coffer.conf"), &old_conf).unwrap();

    let out = coffer(&["key", "remove", s(&v), "bob", "--rekey", "--passfile", s(&pf)], None);
    ok(&out, "remove bob with --rekey");
    ok(
        &coffer(&["rekey", "--finish", "--passfile", s(&pf), s(&v)], None),
        "finish",
    );

    // A machine that never saw the vault: its own empty state directory.
    let fresh = t.path().join("fresh-machine-state");
    let env = [("XDG_STATE_HOME", fresh.as_os_str())];
    let run = |args: &[&str]| crate::support::cli::coffer_env(args, &env);
    let out = run(&["cat", "--identity", s(&bob_id), s(&v), "bob-diary.txt"]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("no key slot of this vault accepts this identity"),
        "{}",
        out.stderr
    );
    for (n, data) in &files {
        let out = run(&["cat", "--config", s(&old_conf), "--identity", s(&bob_id), s(&v), n]);
        assert_ne!(out.code, 0, "{n} opened with the old config");
        assert!(out.stdout.is_empty(), "{n}: {:?}", out.stdout);
        assert!(!out.stderr.as_bytes().windows(data.len()).any(|w| w == *data));
    }
    let dump = t.path().join("bob-export");
    let out = run(&[
        "export",
        "--config",
        s(&old_conf),
        "--identity",
        s(&bob_id),
        s(&v),
        s(&dump),
    ]);
    let mut seen = Vec::new();
    if dump.exists() {
        for e in std::fs::read_dir(&dump).unwrap() {
            let e = e.unwrap();
            seen.push(e.file_name().to_string_lossy().into_owned());
            if e.file_type().unwrap().is_file() {
                let bytes = std::fs::read(e.path()).unwrap();
                for (_, data) in &files {
                    assert!(!bytes.windows(data.len()).any(|w| w == *data), "plaintext exported");
                }
            }
        }
    }
    for (n, _) in &files {
        assert!(
            !seen.iter().any(|x| x == n),
            "{n} named in Bob's export: {seen:?} ({})",
            out.stderr
        );
    }
    // Alice's two ways in open everything, on the fresh machine too.
    for how in [["--passfile", s(&pf)], ["--identity", s(&alice_ssh)]] {
        for (n, data) in &files {
            let out = run(&["cat", how[0], how[1], s(&v), n]);
            ok(&out, &format!("{n} with {how:?}"));
            assert_eq!(out.stdout, *data);
        }
    }
}

/// Two replicas change key slots at once and the sync client keeps one side's config as a
/// conflict copy: fsck reports it, `key merge` merges by slot ID (an add on one side and a
/// remove on the other both hold; the removed slot does not come back), the copy goes, and a
/// merge that would leave no slot is refused with nothing changed.
#[test]
fn concurrent_slot_changes_on_two_replicas_merge_by_slot_id() {
    let t = tempfile::tempdir().unwrap();
    let a = t.path().join("a");
    let pf = passfile(t.path(), "pf", "pw");
    let pf2 = passfile(t.path(), "pf2", "pw2");
    ok(
        &coffer(
            &["init", "--insecure-fast-kdf", "--quiet", "--passfile", s(&pf), s(&a)],
            None,
        ),
        "init",
    );
    let (old_id, old_rcpt) = age_identity(t.path(), "old.txt");
    let add = |v: &Path, extra: &[&str]| {
        let mut args = vec!["key", "add", s(v)];
        args.extend_from_slice(extra);
        args.extend_from_slice(&["--passfile", s(&pf)]);
        coffer(&args, None)
    };
    ok(
        &add(&a, &["--recipient", &old_rcpt, "--label", "old-phone"]),
        "add old-phone",
    );
    // Replica B: a copy made by the sync client before the two changes.
    let b = t.path().join("b");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&b)
        .status()
        .unwrap();
    assert!(st.success());
    // A removes the old phone; B, not yet synced, adds a laptop and a second password.
    ok(
        &coffer(&["key", "remove", s(&a), "old-phone", "--passfile", s(&pf)], None),
        "remove on A",
    );
    let (laptop_id, laptop_rcpt) = age_identity(t.path(), "laptop.txt");
    ok(
        &add(&b, &["--recipient", &laptop_rcpt, "--label", "laptop"]),
        "add on B",
    );
    ok(
        &add(
            &b,
            &[
                "--password",
                "--new-passfile",
                s(&pf2),
                "--insecure-fast-kdf",
                "--label",
                "partner",
            ],
        ),
        "add on B",
    );
    // The sync client delivers B's config to A as a conflict copy.
    let copy = a.join("coffer.sync-conflict-20261206-101010-ABCDEFG.conf");
    std::fs::copy(b.join("coffer.conf"), &copy).unwrap();
    let (code, report) = crate::support::cli::fsck_report(&a, &pf, &[]);
    assert_ne!(code, 0, "{report}");
    let kinds: Vec<&str> = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["config_copy"], "{report}");

    let out = coffer(&["key", "merge", s(&a), "--passfile", s(&pf)], None);
    ok(&out, "merge");
    assert!(out.stderr.contains("2 key slots added, 0 removed"), "{}", out.stderr);
    assert!(!copy.exists(), "the merged copy is gone");
    let listed = coffer(&["key", "list", s(&a), "--passfile", s(&pf)], None).stdout_str();
    assert!(listed.contains("laptop") && listed.contains("partner"), "{listed}");
    assert!(!listed.contains("old-phone"), "the removed slot came back: {listed}");
    for how in [
        ["--identity", s(&laptop_id)],
        ["--passfile", s(&pf2)],
        ["--passfile", s(&pf)],
    ] {
        let out = cat_with(&a, "nothing", &how);
        assert!(
            out.stderr.contains("nothing"),
            "{how:?} does not open the merged config: {}",
            out.stderr
        );
    }
    assert_eq!(
        cat_with(&a, "nothing", &["--identity", s(&old_id)]).code,
        3,
        "removed stays removed"
    );
    let (code, report) = crate::support::cli::fsck_report(&a, &pf, &[]);
    assert_eq!(code, 0, "{report}");

    // Each side removes the slot the other kept: the merge would leave none, and is refused.
    let c = t.path().join("c");
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(&a)
        .arg(&c)
        .status()
        .unwrap();
    assert!(st.success());
    let ids = |v: &Path| -> Vec<String> {
        let cfg = coffer::vault::unlock::read_config(&v.join("coffer.conf")).unwrap();
        cfg.slots()
            .unwrap()
            .unwrap()
            .slots
            .iter()
            .map(|s| s.id.to_hex())
            .collect()
    };
    let all = ids(&a);
    assert_eq!(all.len(), 3);
    // A keeps only the first password, C keeps only the laptop.
    for id in &all[1..] {
        ok(
            &coffer(&["key", "remove", s(&a), id, "--passfile", s(&pf)], None),
            "remove on A",
        );
    }
    for id in all.iter().filter(|i| **i != all[1]) {
        ok(
            &coffer(&["key", "remove", s(&c), id, "--identity", s(&laptop_id)], None),
            "remove on C",
        );
    }
    let copy = a.join("coffer.sync-conflict-20261206-111111-ABCDEFG.conf");
    std::fs::copy(c.join("coffer.conf"), &copy).unwrap();
    let before = std::fs::read(a.join("coffer.conf")).unwrap();
    let out = coffer(&["key", "merge", s(&a), "--passfile", s(&pf)], None);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("would leave no key slot"), "{}", out.stderr);
    assert_eq!(std::fs::read(a.join("coffer.conf")).unwrap(), before, "nothing changed");
    assert!(copy.exists());
}

/// `passwd` of a vault with two password slots changes the one the old password opens,
/// keeping its ID and label; the other password still opens it. `passwd --identity` is
/// refused in one line.
#[test]
fn passwd_changes_the_password_slot_that_matched() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let [p1, p2, p3] = ["one", "two", "three"].map(|p| passfile(t.path(), p, &format!("password {p}")));
    init_with(&v, &p1);
    ok(
        &coffer(
            &[
                "key",
                "add",
                s(&v),
                "--password",
                "--new-passfile",
                s(&p2),
                "--insecure-fast-kdf",
                "--label",
                "second",
                "--passfile",
                s(&p1),
            ],
            None,
        ),
        "add a second password",
    );
    let ids = || -> Vec<String> {
        let cfg = coffer::vault::unlock::read_config(&v.join("coffer.conf")).unwrap();
        cfg.slots()
            .unwrap()
            .unwrap()
            .slots
            .iter()
            .map(|s| s.id.to_hex())
            .collect()
    };
    let before = ids();
    ok(
        &coffer(
            &[
                "passwd",
                "--insecure-fast-kdf",
                "--passfile",
                s(&p2),
                "--new-passfile",
                s(&p3),
                s(&v),
            ],
            None,
        ),
        "passwd",
    );
    assert_eq!(ids(), before, "same slots, same IDs");
    for (p, opens) in [(&p1, true), (&p2, false), (&p3, true)] {
        let out = cat_with(&v, "nothing", &["--passfile", s(p)]);
        assert_eq!(out.code != 3, opens, "{}: {}", p.display(), out.stderr);
    }
    let listed = coffer(&["key", "list", "--passfile", s(&p3), s(&v)], None).stdout_str();
    assert!(listed.contains("second"), "the label stays: {listed}");
    let (age_id, _) = age_identity(t.path(), "id.txt");
    let out = coffer(&["passwd", "--identity", s(&age_id), s(&v)], None);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .starts_with("coffer: error: passwd changes the password slot"),
        "{}",
        out.stderr
    );
}

/// A passphrase-protected SSH key: its passphrase comes from --passfile (or the terminal),
/// is asked once however many slots the key is tried against, and a wrong one is one line.
#[test]
fn a_passphrase_protected_ssh_key_opens_with_its_passphrase() {
    let t = tempfile::tempdir().unwrap();
    let v = t.path().join("v");
    let pf = passfile(t.path(), "pf", "pw");
    init_with(&v, &pf);
    let key = t.path().join("id_protected");
    let st = std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "the phrase", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(st.success());
    let (_, other) = age_identity(t.path(), "other.txt");
    for extra in [
        vec!["--recipient", other.as_str()],
        vec!["--recipient-file", &format!("{}.pub", s(&key))],
    ] {
        let mut args = vec!["key", "add", s(&v), "--passfile", s(&pf)];
        args.extend_from_slice(&extra);
        ok(&coffer(&args, None), "add");
    }
    {
        let m = coffer::vault::Vault::unlock(&v, None, b"pw", false).unwrap();
        crate::support::cli::put_file(&m, b"f.txt", b"behind a passphrase\n");
    }
    let phrase = passfile(t.path(), "phrase", "the phrase");
    let out = cat_with(&v, "f.txt", &["--identity", s(&key), "--passfile", s(&phrase)]);
    ok(&out, "cat with the protected key");
    assert_eq!(out.stdout, b"behind a passphrase\n");
    let out = cat_with(&v, "f.txt", &["--identity", s(&key), "--passfile", s(&pf)]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert_eq!(
        out.stderr.lines().next().unwrap(),
        format!("coffer: error: {}: wrong passphrase for the SSH key", key.display())
    );
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}
