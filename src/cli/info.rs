//! `coffer info`: what the config says, without secrets and without a password; while a
//! rekey is under way, how many files are left under each older key epoch.

use coffer::format::config::FLAG_REVERSE;
use coffer::format::epochs::Epochs;
use coffer::vault::epoch_census::{census, EpochCensus, Tally};
use coffer::vault::unlock;

use super::args::InfoArgs;
use super::error::CliResult;
use super::open::read_config;

/// Runs `info`.
pub fn run(args: &InfoArgs) -> CliResult {
    let cfg = read_config(&args.cipherdir, args.config.as_deref())?;
    let path = unlock::config_path(&args.cipherdir, args.config.as_deref());
    let flags = if cfg.feature_flags.is_empty() {
        "(none)".to_string()
    } else {
        cfg.feature_flags.join(", ")
    };
    println!("config:          {}", path.display());
    println!("format version:  {}", cfg.format_version);
    if let Some(id) = &cfg.vault_id {
        println!("vault ID:        {id}");
    }
    let epochs = cfg.epochs().ok().flatten();
    if let Some(epochs) = &epochs {
        let list: Vec<String> = epochs
            .all()
            .iter()
            .rev()
            .map(|e| format!("{} (#{}, layout {})", e.id.to_hex(), e.seq, e.layout.number()))
            .collect();
        println!("key epochs:      {} (newest first)", list.join(", "));
    }
    println!("feature flags:   {flags}");
    println!("name encoding:   {}", cfg.name_encoding);
    println!("long-name limit: {} bytes", cfg.long_name_limit);
    if let Some(kdf) = &cfg.kdf {
        println!(
            "password KDF:    {} (memory {} KiB, {} passes, {} lanes)",
            kdf.algorithm, kdf.m_kib, kdf.t, kdf.p
        );
    }
    if let Ok(Some(slots)) = cfg.slots() {
        let list: Vec<String> = slots
            .slots
            .iter()
            .map(|s| match &s.kdf {
                Some(k) => format!(
                    "{} ({}: {} memory {} KiB, {} passes, {} lanes)",
                    s.id.to_hex(),
                    s.kind.as_str(),
                    k.algorithm,
                    k.m_kib,
                    k.t,
                    k.p
                ),
                None => format!("{} ({})", s.id.to_hex(), s.kind.as_str()),
            })
            .collect();
        println!("key slots:       {}", list.join(", "));
    }
    // Several epochs: a rekey is under way. (A reverse config's CIPHERDIR is plain files.)
    if let Some(epochs) = epochs.filter(|e| e.all().len() > 1) {
        if !cfg.params().has_flag(FLAG_REVERSE) {
            let found = census(&args.cipherdir, &epochs, cfg.params().name_encoding)?;
            print_census(&epochs, &found);
        }
    }
    Ok(())
}

/// One line per epoch, newest first, then the files no listed epoch reads.
fn print_census(epochs: &Epochs, found: &EpochCensus) {
    let newest = epochs.newest().id;
    let mut label = "files by epoch:";
    let mut line = |text: String| {
        println!("{label:<16} {text}");
        label = "";
    };
    for (e, t) in found.epochs.iter().rev() {
        let id = format!("{} (#{})", e.id.to_hex(), e.seq);
        if e.id == newest {
            line(format!("{id}, the rekey target: {}", tally(t)));
        } else {
            line(format!("{id}: {} left to re-encrypt", tally(t)));
        }
    }
    if found.empty.files > 0 {
        line(format!("empty, nothing sealed yet: {} files", found.empty.files));
    }
    if found.unlisted.files > 0 {
        let mut text = format!(
            "under a key epoch this config does not list: {}",
            tally(&found.unlisted)
        );
        if !found.unlisted_ids.is_empty() {
            let ids: Vec<String> = found.unlisted_ids.iter().map(|i| i.to_hex()).collect();
            text.push_str(&format!(" (epochs {})", ids.join(", ")));
        }
        line(text);
    }
    if found.damaged.files > 0 {
        line(format!(
            "no readable header (damaged, see `coffer fsck`): {}",
            tally(&found.damaged)
        ));
    }
    if found.unreadable > 0 {
        line(format!(
            "could not be read: {} entries (each named above)",
            found.unreadable
        ));
    }
    line("file contents only: names, symlink targets and xattrs need the key (`coffer rekey` moves them too)".into());
}

/// "N files, B bytes", with B in KiB/MiB/GiB too from 1 KiB up.
fn tally(t: &Tally) -> String {
    format!("{} files, {}", t.files, size(t.bytes))
}

fn size(bytes: u64) -> String {
    let units = ["KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = None;
    for u in units {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{bytes} bytes ({v:.1} {u})"),
        None => format!("{bytes} bytes"),
    }
}
