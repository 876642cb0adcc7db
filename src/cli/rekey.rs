//! `coffer rekey`: starts a new key epoch and re-encrypts every object still under an older
//! one (a plan first, then a progress bar); run again, it continues where it stopped.
//! `--finish` forgets the older epochs' keys once nothing is left under them.

use coffer::crypto::MasterKey;
use coffer::format::config::{Config, FLAG_REVERSE};
use coffer::format::epochs::EpochId;
use coffer::vault::epoch_watch::ConfigWatch;
use coffer::vault::migrate::{Migration, Mode};
use coffer::vault::rekey::{self, Finish};
use coffer::vault::{reverse, unlock, Vault, VaultError};

use super::args::RekeyArgs;
use super::error::{code, CliError, CliResult};
use super::identity::read_given;
use super::init::print_recovery_key;
use super::kept;
use super::open::{check_cipherdir, read_config};
use super::password::{read_secret, Ask};
use super::pin;
use super::progress::Progress;
use super::rekey_online::{Daemon, Moved};
use super::rekey_race as race;
use coffer::vault::unlock::slots::Credential;

/// Runs `rekey`.
pub fn run(args: &RekeyArgs) -> CliResult {
    check_cipherdir(&args.cipherdir)?;
    if args.open.masterkey {
        return Err(CliError::new(
            code::USAGE,
            "rekey needs the password: the new key epoch is wrapped under it",
        )
        .hint("set a password from the recovery key first: coffer passwd --masterkey CIPHERDIR"));
    }
    if let Some(path) = reverse_config(args) {
        return rekey_reverse(args, &path);
    }
    // Mounted on this machine: the walk runs in the mount's daemon (it renames and replaces
    // backing files that the mount holds open); else here, under the mount lock.
    let (_lock, daemon_socket) = match coffer::fs::lock_vault(&args.cipherdir) {
        Ok(l) => (Some(l), None),
        Err(coffer::fs::MountError::AlreadyMounted { lock, .. }) => {
            (None, Some(coffer::fs::control::socket_path(&lock)))
        }
        Err(e) => return Err(CliError::new(code::OTHER, e.to_string())),
    };
    let path = unlock::config_path(&args.cipherdir, args.open.config.as_deref());
    let cfg = read_config(&args.cipherdir, args.open.config.as_deref())?;
    let given = read_given(&args.open)?;
    let cred = given.credential();
    let (key, _) = unlock::slots::unlock_any(&cfg, &cred)?;
    pin::check(&args.cipherdir, &cfg, Some(&key), args.open.accept_config_change)?;
    let epochs = epoch_count(&cfg)?;

    if let Some(socket) = daemon_socket {
        return online(args, &Daemon::new(&socket), &path, cfg, key, &cred, epochs);
    }

    if args.finish {
        let vault = open_all(args, &cfg, &key)?;
        return match rekey::finish(&path, &cred, &vault)? {
            Finish::Done(done) => {
                kept::forget(&args.cipherdir);
                if epochs > 1 {
                    eprintln!("coffer: the older key epochs are forgotten: their passwords and recovery keys open nothing here any more.");
                    print_recovery_key(&unlock::recovery_key(&done, &key)?);
                } else {
                    eprintln!("coffer: the vault has one key epoch: nothing to finish.");
                }
                Ok(())
            }
            Finish::Refused(left) => Err(refuse_finish(&left)),
        };
    }

    let (cfg, key) = if epochs > 1 {
        eprintln!("coffer: continuing the rekey to the newest key epoch");
        (cfg, key)
    } else {
        let started = rekey::start_epoch(&args.cipherdir, &path, &cred)?;
        pin::check(&args.cipherdir, &started.config, Some(&started.key), false)?;
        kept::keep(&args.cipherdir, &started.config);
        eprintln!("coffer: a new key epoch started; objects move to it now.");
        print_recovery_key(&unlock::recovery_key(&started.config, &started.key)?);
        (started.config, started.key)
    };
    let (done, lost_to) = walk(args, &path, &cred, cfg, key)?;
    report(&done, lost_to)
}

/// The config to rekey when it is a reverse-mode one: `--config FILE` with the `reverse` flag,
/// or, without `--config`, `PLAINDIR/.coffer.reverse.conf` where no `coffer.conf` is.
fn reverse_config(args: &RekeyArgs) -> Option<std::path::PathBuf> {
    let path = match args.open.config.as_deref() {
        Some(explicit) => explicit.to_path_buf(),
        None if !unlock::config_path(&args.cipherdir, None).exists() => reverse::default_config_path(&args.cipherdir),
        None => return None,
    };
    let cfg = unlock::read_config(&path).ok()?;
    cfg.params().has_flag(FLAG_REVERSE).then_some(path)
}

/// Rekey of a reverse config: a new master key under the same password. Reverse mode is
/// deterministic, so the whole view changes; nothing is walked or moved.
fn rekey_reverse(args: &RekeyArgs, path: &std::path::Path) -> CliResult {
    if args.finish {
        eprintln!("coffer: a reverse-mode config has one key: nothing to finish.");
        return Ok(());
    }
    let password = read_secret(&args.open.secret, Ask::Password)?;
    let key = reverse::rekey(path, &password)?;
    let cfg = unlock::read_config(path)?;
    eprintln!(
        "coffer: {} has a new master key. Every file of the encrypted view changes with it, so the next \
         backup of the view copies everything again; copies made before keep the old key (in their own \
         coffer.conf), and the old password and recovery key still open those copies.",
        path.display()
    );
    eprintln!("coffer: a reverse view mounted now still shows the old key: unmount it and run `coffer reverse` again.");
    print_recovery_key(&unlock::recovery_key(&cfg, &key)?);
    Ok(())
}

/// What a walk did, and whether anything stayed behind (an error then); `lost_to`: the epoch
/// of another machine's rekey this run followed.
fn report(done: &Migration, lost_to: Option<EpochId>) -> CliResult {
    eprintln!("coffer: re-encrypted {}", describe(done));
    if done.stopped {
        return Err(CliError::new(code::OTHER, "the rekey stopped before its end")
            .hint("run `coffer rekey` again to move the rest"));
    }
    if done.changed > 0 {
        eprintln!(
            "coffer: {} files changed while they were being re-encrypted, in every pass, and were left",
            done.changed
        );
    }
    if !done.left.is_empty() || done.changed > 0 {
        for l in &done.left {
            eprintln!("coffer: left under an older key epoch: {l}");
        }
        return Err(CliError::new(
            code::OTHER,
            format!(
                "{} objects stay under an older key epoch",
                done.left.len() as u64 + done.changed
            ),
        )
        .hint("`coffer rekey --finish` refuses until they are moved: fix what is named above and run `coffer rekey` again"));
    }
    match lost_to {
        Some(theirs) => eprintln!(
            "coffer: another machine started a rekey (epoch {}); this run moved everything to that epoch instead",
            theirs.to_hex()
        ),
        None => eprintln!(
            "coffer: every object is under the new key epoch. Once every copy of this vault has synced, \
             run `coffer rekey --finish` to forget the older keys."
        ),
    }
    Ok(())
}

/// The finish refusal: what is left, named.
fn refuse_finish(left: &Migration) -> CliError {
    for l in &left.left {
        eprintln!("coffer: left under an older key epoch: {l}");
    }
    CliError::new(
        code::OTHER,
        format!("cannot finish: {} under an older key epoch", describe(left)),
    )
    .hint("run `coffer rekey` (without --finish) to move them first")
}

/// Rekey of a vault mounted on this machine: this process unlocks and writes the config; the
/// mount's daemon adopts the new epoch and walks the vault.
fn online(
    args: &RekeyArgs,
    daemon: &Daemon<'_>,
    path: &std::path::Path,
    cfg: Config,
    key: coffer::crypto::MasterKey,
    cred: &Credential,
    epochs: usize,
) -> CliResult {
    eprintln!("coffer: the vault is mounted: its daemon re-encrypts it while it stays in use");
    if args.finish {
        if epochs == 1 {
            eprintln!("coffer: the vault has one key epoch: nothing to finish.");
            return Ok(());
        }
        daemon.adopt(&key, false)?;
        let left = daemon.plan()?;
        if left.moved() > 0 || !left.left.is_empty() {
            return Err(refuse_finish(&left));
        }
        let done = rekey::forget_older(path, cred, &args.cipherdir)?;
        daemon.adopt(&key, true)?;
        kept::forget(&args.cipherdir);
        eprintln!(
            "coffer: the older key epochs are forgotten: their passwords and recovery keys open nothing here any more."
        );
        print_recovery_key(&unlock::recovery_key(&done, &key)?);
        return Ok(());
    }
    let (cfg, key) = if epochs > 1 {
        eprintln!("coffer: continuing the rekey to the newest key epoch");
        (cfg, key)
    } else {
        let started = rekey::start_epoch(&args.cipherdir, path, cred)?;
        pin::check(&args.cipherdir, &started.config, Some(&started.key), false)?;
        kept::keep(&args.cipherdir, &started.config);
        eprintln!("coffer: a new key epoch started; objects move to it now.");
        print_recovery_key(&unlock::recovery_key(&started.config, &started.key)?);
        (started.config, started.key)
    };
    daemon.adopt(&key, false)?;
    let plan = daemon.plan()?;
    eprintln!("coffer: to re-encrypt: {}", describe(&plan));
    // The test hook's stop point of a walk in the mount: before it starts (N = 0).
    race::test_stop_point(0);
    match daemon.move_all(plan.bytes)? {
        Moved::Done(done) => report(&done, None),
        Moved::Raced(theirs) => Err(raced_online(args, path, &cfg, cred, theirs)),
    }
}

/// The mount's walk stopped because coffer.conf now names another machine's newest epoch
/// `theirs`. What this run's epoch sealed (moved objects, and files the mount wrote since
/// it adopted the epoch) must stay reachable: this run's config `ours` is kept beside
/// coffer.conf as a conflict copy, which the next `coffer rekey` reads (and a sync client
/// carries to the other machines), and coffer.conf is pinned when it opens with the password.
fn raced_online(
    args: &RekeyArgs,
    path: &std::path::Path,
    ours: &Config,
    cred: &Credential,
    theirs: Option<EpochId>,
) -> CliError {
    let Ok(Some(our_id)) = race::newest_id(ours) else {
        return CliError::new(code::OTHER, "the mount's walk stopped: coffer.conf changed");
    };
    let copy = args.cipherdir.join(format!(
        "coffer (conflicted copy of a stopped rekey to {}).conf",
        our_id.to_hex()
    ));
    if let Err(e) = unlock::write_config(&copy, ours) {
        return CliError::from(e).hint(format!(
            "objects sealed under key epoch {} are read only with this run's config or its recovery key",
            our_id.to_hex()
        ));
    }
    if let Err(e) = race::follow(&args.cipherdir, path, ours, cred, our_id, theirs) {
        return e;
    }
    let theirs = theirs.map_or_else(|| "-".to_string(), EpochId::to_hex);
    CliError::new(
        code::OTHER,
        format!(
            "another machine started a rekey (key epoch {theirs}) while this one ran: the mount stopped re-encrypting"
        ),
    )
    .hint(format!(
        "this run's config is kept as {}; unmount the vault on this machine and run `coffer rekey` there: \
         it moves everything to key epoch {theirs}",
        copy.display()
    ))
}

/// Most times one run follows `coffer.conf` to another machine's newest epoch.
const FOLLOW_MAX: usize = 8;

/// Plans and walks, moving every object to the newest epoch of `cfg` (newest key `key`, the
/// config at `path`): also those under the epochs of its conflict copies that open with
/// `password`. When another machine's rekey syncs in during the walk, follows it: walks again
/// toward its epoch, this run's keys held as older ones. The walk's totals and, if it
/// followed another machine's rekey, that rekey's epoch.
fn walk(
    args: &RekeyArgs,
    path: &std::path::Path,
    cred: &Credential,
    mut cfg: Config,
    mut key: MasterKey,
) -> CliResult<(Migration, Option<EpochId>)> {
    let mut held = Vec::new();
    race::read_copies(&args.cipherdir, &cfg, cred, &mut held);
    let mut lost_to = None;
    for _ in 0..FOLLOW_MAX {
        let Some(ours) = race::newest_id(&cfg)? else {
            return Err(CliError::new(code::NOT_A_VAULT, "config refused: it has no key epochs"));
        };
        let vault = race::open_with_held(&args.cipherdir, &cfg, &key, &held)?;
        let plan = vault.migrate_to_newest(Mode::Plan, &mut |_| {})?;
        eprintln!("coffer: to re-encrypt: {}", describe(&plan));
        let bar = Progress::bytes(plan.bytes);
        let mut shown = 0;
        let mut watch = ConfigWatch::new(path, ours);
        let walked = vault
            .migrate_watched(
                Mode::Move,
                &mut |m: &Migration| {
                    bar.inc(m.bytes.saturating_sub(shown));
                    shown = m.bytes;
                    race::test_stop_point(m.files);
                },
                &mut || watch.check(),
            )
            .and_then(|done| watch.check().map(|()| done));
        bar.finish();
        match walked {
            // Entries merged into a copy the walk had passed already are moved by one more
            // pass.
            Ok(mut done) if done.merged > 0 && !done.stopped => {
                eprintln!(
                    "coffer: merged {} copies of objects that two rekeys had moved",
                    done.merged
                );
                let again = vault.migrate_watched(Mode::Move, &mut |_| {}, &mut || watch.check())?;
                let left = again.left.clone();
                done.add(&again);
                (done.left, done.changed, done.stopped) = (left, again.changed, again.stopped);
                return Ok((done, lost_to));
            }
            Ok(done) => return Ok((done, lost_to)),
            Err(VaultError::NewestEpochChanged { ours, theirs }) => {
                let (new_cfg, new_key) = race::follow(&args.cipherdir, path, &cfg, cred, ours, theirs)?;
                if let Some(t) = theirs {
                    eprintln!(
                        "coffer: coffer.conf now names key epoch {} (another machine's rekey): moving everything to it instead",
                        t.to_hex()
                    );
                }
                lost_to = theirs;
                held.push(race::Held { config: cfg, key });
                (cfg, key) = (new_cfg, new_key);
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(CliError::new(
        code::OTHER,
        format!("coffer.conf changed {FOLLOW_MAX} times during the rekey: stopped"),
    )
    .hint("let the sync client settle, then run `coffer rekey` again"))
}

/// How many key epochs the config lists (1 for config version 1).
fn epoch_count(cfg: &Config) -> CliResult<usize> {
    let epochs = cfg
        .epochs()
        .map_err(|e| CliError::new(code::NOT_A_VAULT, format!("config refused: {e}")))?;
    Ok(epochs.map_or(1, |e| e.all().len()))
}

/// The vault opened with the keys of every epoch the config holds, writable.
fn open_all(args: &RekeyArgs, cfg: &Config, key: &coffer::crypto::MasterKey) -> CliResult<Vault> {
    let keys = unlock::vault_keys(cfg, key)?;
    Ok(Vault::open_with_keys(&args.cipherdir, keys, cfg.params(), false)?)
}

/// "N files (X bytes), M names, K symlink targets, D directories' xattrs[, L more hard
/// links][; left: U objects under a key epoch this config does not list]".
fn describe(m: &Migration) -> String {
    let mut out = format!(
        "{} files ({} bytes), {} names, {} symlink targets, {} directories' xattrs",
        m.files, m.bytes, m.names, m.symlinks, m.dir_xattrs
    );
    if m.links > 0 {
        out.push_str(&format!(", {} more names of hard-linked files", m.links));
    }
    if m.merged > 0 {
        out.push_str(&format!(", {} copies merged", m.merged));
    }
    if m.unlisted > 0 {
        out.push_str(&format!(
            "; left: {} objects under a key epoch this config does not list",
            m.unlisted
        ));
    }
    out
}
