//! `coffer key list|add|remove`: the vault's key slots (docs/FORMAT.md §16).

use std::path::Path;

use coffer::crypto::SlotRecipient;
use coffer::format::config::Config;
use coffer::vault::unlock::{self, slots, KdfCost};

use super::args::{
    KeyAddArgs, KeyArgs, KeyCmd, KeyListArgs, KeyMergeArgs, KeyRemoveArgs, KeyUnlockArgs, RekeyArgs, SecretArgs,
};
use super::error::{code, CliError, CliResult};
use super::identity::{read_given, read_key_file};
use super::open::read_config;
use super::password::{read_secret, Ask};
use super::pin;

/// Runs a `key` subcommand.
pub fn run(args: &KeyArgs) -> CliResult {
    match &args.cmd {
        KeyCmd::List(a) => list(a),
        KeyCmd::Add(a) => add(a),
        KeyCmd::Remove(a) => remove(a),
        KeyCmd::Merge(a) => merge(a),
    }
}

fn merge(a: &KeyMergeArgs) -> CliResult {
    let path = unlock::config_path(&a.cipherdir, a.unlock.config.as_deref());
    let (mut cfg, key, _) = unlock_for(&a.cipherdir, &a.unlock)?;
    let copies = super::rekey_race::config_copies(&a.cipherdir);
    if copies.is_empty() {
        eprintln!("coffer: no conflict copy of coffer.conf to merge");
        return Ok(());
    }
    for copy_path in copies {
        let shown = copy_path
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let copy = match unlock::read_config(&copy_path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coffer: {shown}: not read ({e}); left as it is");
                continue;
            }
        };
        match slots::merge_copy(&cfg, &key, &copy)? {
            (Some(merged), slots::Merged::Merged { added, removed }) => {
                cfg = slots::write_slots(&path, &cfg, &key, &merged)?;
                std::fs::remove_file(&copy_path).map_err(|e| CliError::io(&copy_path, &e))?;
                eprintln!("coffer: merged {shown}: {added} key slots added, {removed} removed; the copy is gone");
            }
            _ => eprintln!(
                "coffer: {shown}: another key epoch (a rekey on the other replica) or another vault; left for `coffer rekey`"
            ),
        }
    }
    Ok(())
}

/// The config, then the key it opens with what the user gave (checked against this machine's
/// pin), and the password if that was the way in.
fn unlock_for(
    cipherdir: &Path,
    u: &KeyUnlockArgs,
) -> CliResult<(Config, coffer::crypto::MasterKey, Option<super::password::Secret>)> {
    let open = u.open_args();
    let cfg = read_config(cipherdir, open.config.as_deref())?;
    let given = read_given(&open)?;
    let (key, _) = slots::unlock_any(&cfg, &given.credential())?;
    pin::check(cipherdir, &cfg, Some(&key), u.accept_config_change)?;
    let password = given.password().map(|p| zeroize::Zeroizing::new(p.to_vec()));
    Ok((cfg, key, password))
}

fn list(a: &KeyListArgs) -> CliResult {
    if a.public {
        let cfg = read_config(&a.cipherdir, a.unlock.config.as_deref())?;
        let Some(list) = cfg
            .slots()
            .map_err(|e| CliError::new(code::NOT_A_VAULT, format!("coffer.conf: {e}")))?
        else {
            println!(
                "no key slots: this vault has one password (config version {})",
                cfg.format_version
            );
            return Ok(());
        };
        println!("{:<10} KIND", "ID");
        for s in &list.slots {
            println!("{:<10} {}", s.id.to_hex(), s.kind.as_str());
        }
        return Ok(());
    }
    let (cfg, key, _) = unlock_for(&a.cipherdir, &a.unlock)?;
    if cfg.format_version < coffer::format::CONFIG_V3 {
        println!(
            "no key slots: this vault has one password (config version {})",
            cfg.format_version
        );
        return Ok(());
    }
    println!("{:<10} {:<12} {:<16} {:<11} RECIPIENT", "ID", "KIND", "LABEL", "ADDED");
    for v in slots::describe(&cfg, &key)? {
        let recipient = match v.slot.kind {
            // A password's or key file's own public key says nothing useful.
            coffer::format::config::slots::SlotKind::Password | coffer::format::config::slots::SlotKind::KeyFile => {
                "-".to_string()
            }
            _ => v.info.recipient.clone(),
        };
        println!(
            "{:<10} {:<12} {:<16} {:<11} {}",
            v.slot.id.to_hex(),
            v.slot.kind.as_str(),
            v.info.label.as_deref().unwrap_or("-"),
            date(v.info.created),
            recipient
        );
    }
    Ok(())
}

/// `YYYY-MM-DD` (UTC) of a Unix time.
fn date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

fn parse_recipient(text: &str) -> CliResult<SlotRecipient> {
    SlotRecipient::parse(text).map_err(|e| CliError::new(code::USAGE, e.to_string()))
}

/// The first recipient line of `path` (comments and blank lines skipped).
pub fn recipient_from_file(path: &Path) -> CliResult<Vec<SlotRecipient>> {
    let text = std::fs::read_to_string(path).map_err(|e| CliError::io(path, &e))?;
    let out: Vec<SlotRecipient> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(parse_recipient)
        .collect::<CliResult<_>>()?;
    if out.is_empty() {
        return Err(CliError::new(
            code::USAGE,
            format!("{}: holds no recipient", path.display()),
        ));
    }
    Ok(out)
}

fn add(a: &KeyAddArgs) -> CliResult {
    // What to add is checked before anything is asked.
    let recipient = match (&a.recipient, &a.recipient_file) {
        (Some(r), _) => Some(parse_recipient(r)?),
        (None, Some(f)) => {
            let mut all = recipient_from_file(f)?;
            if all.len() > 1 {
                return Err(CliError::new(
                    code::USAGE,
                    format!(
                        "{}: holds {} recipients; add them one at a time",
                        f.display(),
                        all.len()
                    ),
                ));
            }
            all.pop()
        }
        _ => None,
    };
    let key_file = a.keyfile.as_deref().map(read_key_file).transpose()?;
    let path = unlock::config_path(&a.cipherdir, a.unlock.config.as_deref());
    let (cfg, key, password) = unlock_for(&a.cipherdir, &a.unlock)?;
    let new_password;
    let new = if let Some(r) = recipient {
        slots::NewSlot::Recipient(r)
    } else if let Some(k) = &key_file {
        slots::NewSlot::KeyFile(k)
    } else {
        let src = SecretArgs {
            passfile: a.new_passfile.clone(),
            extpass: None,
        };
        new_password = read_secret(&src, Ask::NewPassword)?;
        let cost = if a.insecure_fast_kdf {
            KdfCost::INSECURE_TEST
        } else {
            KdfCost::default()
        };
        slots::NewSlot::Password {
            password: &new_password,
            cost,
        }
    };
    let kind = match &new {
        slots::NewSlot::Password { .. } => "password",
        slots::NewSlot::KeyFile(_) => "key file",
        slots::NewSlot::Recipient(r) => r.kind(),
    };
    let id = slots::add_slot(
        &path,
        &cfg,
        &key,
        password.as_deref().map(|p| &p[..]),
        &new,
        a.label.clone(),
    )?;
    eprintln!("coffer: added key slot {} ({kind})", id.to_hex());
    if cfg.format_version < coffer::format::CONFIG_V3 {
        eprintln!("coffer: the config is now version 3 (key slots); coffer before this version cannot open it");
    }
    Ok(())
}

fn remove(a: &KeyRemoveArgs) -> CliResult {
    let path = unlock::config_path(&a.cipherdir, a.unlock.config.as_deref());
    let (cfg, key, _) = unlock_for(&a.cipherdir, &a.unlock)?;
    let id = slots::remove_slot(&path, &cfg, &key, &a.slot)?;
    eprintln!("coffer: removed key slot {}", id.to_hex());
    if a.rekey {
        eprintln!(
            "coffer: its holder can no longer open this coffer.conf; a rekey starts now so that they cannot read\n\
             what is written from here on, even with an older copy of coffer.conf"
        );
        super::rekey::run(&RekeyArgs {
            cipherdir: a.cipherdir.clone(),
            open: a.unlock.open_args(),
            finish: false,
        })?;
        eprintln!(
            "coffer: once every replica has synced, `coffer rekey --finish {}` forgets the old key: until then an\n\
             older coffer.conf still opens the files not yet moved",
            a.cipherdir.display()
        );
        return Ok(());
    }
    eprintln!(
        "coffer: its holder can no longer open this coffer.conf, but can still read what they copied and,\n\
         until a rekey finishes, open files with an older copy of coffer.conf: run `coffer rekey {0}` and\n\
         `coffer rekey --finish {0}` to cut them off",
        a.cipherdir.display()
    );
    Ok(())
}
