//! `coffer fsck`: authenticate every name, block, symlink, xattr, diriv and sidecar of a vault
//! and report each damaged item. Its exit codes follow fsck tradition: 0 clean,
//! 1 damage found, 2 could not run.

use coffer::vault::fsck::{fsck_with, Damage, FsckOptions, FsckReport};

use super::args::FsckArgs;
use super::error::{CliError, CliResult};
use super::open::open_vault;
use super::progress::Progress;

/// fsck's exit code when damage remains.
pub const EXIT_DAMAGE: i32 = 1;
/// fsck's exit code when it could not run at all.
pub const EXIT_CANNOT_RUN: i32 = 2;

/// Runs `fsck`, mapping every error that stops it to exit code 2.
pub fn run(args: &FsckArgs) -> CliResult {
    let report = check(args).map_err(|e| CliError {
        code: EXIT_CANNOT_RUN,
        ..e
    })?;
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(j) => println!("{j}"),
            Err(e) => {
                return Err(CliError::new(
                    EXIT_CANNOT_RUN,
                    format!("cannot write the JSON report: {e}"),
                ))
            }
        }
    } else {
        for d in &report.damage {
            println!("{}", describe(d));
        }
    }
    let open: Vec<&Damage> = report.damage.iter().filter(|d| d.repaired.is_none()).collect();
    eprintln!(
        "coffer: checked {} files, {} directories, {} symlinks: {}",
        report.files,
        report.dirs,
        report.symlinks,
        if report.damage.is_empty() {
            "clean".to_string()
        } else {
            format!(
                "{} problems, {} repaired",
                report.damage.len(),
                report.damage.len() - open.len()
            )
        }
    );
    if open.is_empty() {
        Ok(())
    } else {
        let hint = if args.repair {
            "restore the damaged files from a backup"
        } else {
            "--repair fixes the safe cases"
        };
        Err(CliError::new(EXIT_DAMAGE, format!("{} damaged items", open.len())).hint(hint))
    }
}

fn check(args: &FsckArgs) -> CliResult<FsckReport> {
    let vault = open_vault(&args.cipherdir, &args.open, !args.repair)?;
    // --repair holds the mount lock: it refuses a mounted vault, and since no coffer operation
    // can be running, it removes stray temporaries of any age.
    let _lock = if args.repair {
        Some(coffer::fs::lock_vault(vault.cipherdir()).map_err(|e| CliError::new(EXIT_CANNOT_RUN, e.to_string()))?)
    } else {
        None
    };
    let mut opts = FsckOptions::new(args.repair);
    if args.repair {
        opts.min_temp_age = std::time::Duration::ZERO;
    }
    let progress = Progress::spinner();
    let report = fsck_with(&vault, opts, &mut |r: &FsckReport| {
        progress.message(format!("{} files, {} directories checked", r.files, r.dirs));
    })?;
    progress.finish();
    Ok(report)
}

/// One report line: `PLAIN (backing CIPHER): kind: detail`.
fn describe(d: &Damage) -> String {
    let kind = serde_json::to_value(&d.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut line = match &d.plain_path {
        Some(p) if !p.is_empty() => format!("{p} (backing {})", d.cipher_path),
        Some(_) => format!(
            "/ (backing {})",
            if d.cipher_path.is_empty() { "." } else { &d.cipher_path }
        ),
        None => format!("backing {}", d.cipher_path),
    };
    line.push_str(&format!(": {kind}: {}", d.detail));
    if !d.blocks.is_empty() {
        let b: Vec<String> = d.blocks.iter().map(u64::to_string).collect();
        line.push_str(&format!(" (blocks {})", b.join(", ")));
    }
    if let Some(r) = &d.repaired {
        line.push_str(&format!(" [repaired: {r}]"));
    }
    line
}
