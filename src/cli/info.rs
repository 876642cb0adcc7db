//! `coffer info`: what the config says, without secrets and without a password.

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
    if let Ok(Some(epochs)) = cfg.epochs() {
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
    println!(
        "password KDF:    {} (memory {} KiB, {} passes, {} lanes)",
        cfg.kdf.algorithm, cfg.kdf.m_kib, cfg.kdf.t, cfg.kdf.p
    );
    Ok(())
}
