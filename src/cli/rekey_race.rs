//! `coffer rekey` racing another machine's (docs/FORMAT.md §15.7): the keys of configs this
//! run holds besides `coffer.conf` (a sync client's conflict copy of it, or the config this
//! run started with before another machine's synced in), and what to do when the walk's
//! watch sees `coffer.conf` name another newest epoch.

use std::path::{Path, PathBuf};

use coffer::crypto::MasterKey;
use coffer::format::config::Config;
use coffer::format::conflict;
use coffer::format::epochs::EpochId;
use coffer::vault::unlock::slots::Credential;
use coffer::vault::{unlock, Vault, VaultError, VaultKeys};

use super::error::{code, CliError, CliResult};
use super::pin;

/// A config whose keys this run holds, though `coffer.conf` is another: its objects are read
/// with them and moved to `coffer.conf`'s newest epoch.
pub struct Held {
    /// The config.
    pub config: Config,
    /// The key its wrap gave.
    pub key: MasterKey,
}

/// The newest epoch of a config (`None`: config version 1).
pub fn newest_id(cfg: &Config) -> CliResult<Option<EpochId>> {
    let epochs = cfg
        .epochs()
        .map_err(|e| CliError::new(code::NOT_A_VAULT, format!("config refused: {e}")))?;
    Ok(epochs.map(|e| e.newest().id))
}

/// The sync clients' conflict copies of `coffer.conf` in `cipherdir`, sorted by name.
pub fn config_copies(cipherdir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(cipherdir) else {
        return Vec::new();
    };
    let mut out: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .filter(|e| conflict::config_copy_marker(e.file_name().as_encoded_bytes()).is_some())
        .map(|e| e.path())
        .collect();
    out.sort();
    out
}

/// Reads the conflict copies of `coffer.conf` (`cfg`, the one used) and the configs this
/// machine's rekeys kept (`super::kept`): a copy of this vault that opens with `password` and
/// names a newest epoch `cfg` lacks is the other side of two rekeys at once, and its keys join
/// `held`. One line per copy says what was done with it.
pub fn read_copies(cipherdir: &Path, cfg: &Config, cred: &Credential, held: &mut Vec<Held>) {
    let ours = newest_id(cfg).ok().flatten();
    let listed = |id: EpochId| {
        cfg.epochs()
            .ok()
            .flatten()
            .is_some_and(|e| e.all().iter().any(|x| x.id == id))
    };
    let copies = config_copies(cipherdir).into_iter().map(|p| (p, false));
    for (path, kept) in copies.chain(super::kept::kept(cipherdir).into_iter().map(|p| (p, true))) {
        let (shown, what, is_a) = if kept {
            (
                path.display().to_string(),
                "the config kept by this machine's rekey",
                "a kept config",
            )
        } else {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (name, "its conflict copy", "a conflict copy of coffer.conf")
        };
        let copy = match unlock::read_config(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("coffer: {shown}, {is_a}, is not read: {e}");
                continue;
            }
        };
        if copy.vault_id.is_none() || copy.vault_id != cfg.vault_id {
            eprintln!("coffer: {shown}, {is_a}, is not read: it is not this vault's config");
            continue;
        }
        let Ok(Some(theirs)) = newest_id(&copy) else { continue };
        if listed(theirs) {
            continue;
        }
        let ours = ours.map_or_else(|| "none".to_string(), EpochId::to_hex);
        match unlock::slots::unlock_any(&copy, cred) {
            Ok((key, _)) => {
                eprintln!(
                    "coffer: coffer.conf (newest key epoch {ours}) is used; {what} {shown} names epoch {}: \
                     objects under it are read with that copy's keys and moved too",
                    theirs.to_hex()
                );
                held.push(Held { config: copy, key });
            }
            Err(e) => eprintln!(
                "coffer: coffer.conf (newest key epoch {ours}) is used; {what} {shown} names epoch {} \
                 but is not read ({e}): objects under that epoch are left as they are",
                theirs.to_hex()
            ),
        }
    }
}

/// The vault opened writable with the keys of `cfg` (newest `key`) and, as older epochs, those
/// of every held config.
pub fn open_with_held(cipherdir: &Path, cfg: &Config, key: &MasterKey, held: &[Held]) -> CliResult<Vault> {
    let mut keys: VaultKeys = unlock::vault_keys(cfg, key)?;
    for h in held {
        keys = keys.with_older(unlock::vault_keys(&h.config, &h.key)?);
    }
    Ok(Vault::open_with_keys(cipherdir, keys, cfg.params(), false)?)
}

/// After the walk saw `coffer.conf` at `path` name epoch `theirs` instead of `ours`: that
/// config, opened with `password` and pinned, when it is this vault's (the vault ID of `was`,
/// the config this run had). Otherwise an error saying where the objects this run moved are
/// and how to reach them.
pub fn follow(
    cipherdir: &Path,
    path: &Path,
    was: &Config,
    cred: &Credential,
    ours: EpochId,
    theirs: Option<EpochId>,
) -> CliResult<(Config, MasterKey)> {
    let lost = |why: String| {
        CliError::new(
            code::OTHER,
            format!(
                "{why}: objects this run moved are under key epoch {}, which coffer.conf no longer lists; \
                 the recovery key printed at the start of this run reads them",
                ours.to_hex()
            ),
        )
    };
    let Some(theirs) = theirs else {
        return Err(
            lost("coffer.conf was replaced during the rekey by one without key epochs".into())
                .hint("put this run's config back with `coffer passwd --masterkey CIPHERDIR` and that recovery key"),
        );
    };
    let cfg = unlock::read_config(path)?;
    if cfg.vault_id != was.vault_id {
        return Err(lost(
            "coffer.conf was replaced during the rekey by another vault's".into(),
        ));
    }
    match unlock::slots::unlock_any(&cfg, cred) {
        Ok((key, _)) => {
            pin::check(cipherdir, &cfg, Some(&key), true)?;
            Ok((cfg, key))
        }
        Err(VaultError::WrongPassword) => {
            let copy = cipherdir.join("coffer (conflicted copy).conf");
            Err(lost(format!(
                "another machine started a rekey (epoch {}) with another password",
                theirs.to_hex()
            ))
            .hint(format!(
                "keep that recovery key; `coffer passwd --masterkey --config '{}' {}` with it writes a config of \
                 that epoch (give it coffer.conf's password as the new one), then \
                 `coffer rekey --accept-config-change {}` with coffer.conf's password moves them to epoch {}",
                copy.display(),
                cipherdir.display(),
                cipherdir.display(),
                theirs.to_hex()
            )))
        }
        Err(e) => Err(e.into()),
    }
}

/// A test hook (debug builds only): with `COFFER_TEST_STOP_AFTER_FILES=N` the run stops itself
/// (SIGSTOP) once, when N files have been sealed again, so that a test can make another
/// machine's rekey sync in at a chosen point of the walk and then let it go on (SIGCONT). A
/// rekey of a mounted vault stops there only with N = 0, before the mount's walk starts.
#[cfg(debug_assertions)]
pub fn test_stop_point(files: u64) {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOPPED: AtomicBool = AtomicBool::new(false);
    let Some(n) = std::env::var("COFFER_TEST_STOP_AFTER_FILES")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    else {
        return;
    };
    if files >= n && !STOPPED.swap(true, Ordering::Relaxed) {
        // SAFETY: raise takes no pointers; the process stops until a SIGCONT.
        unsafe { libc::raise(libc::SIGSTOP) };
    }
}

/// Release builds have no test hook.
#[cfg(not(debug_assertions))]
pub fn test_stop_point(_files: u64) {}
