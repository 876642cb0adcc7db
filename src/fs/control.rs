//! The control socket of a forward mount: how `coffer rekey` reaches the daemon that serves
//! the vault, so a vault is rekeyed while it stays mounted.
//!
//! A Unix stream socket next to the mount lock (`<lock>.sock`, mode 0600, in a directory of
//! mode 0700) that answers only its own user (or root), checked by SO_PEERCRED. One request
//! line per connection, answered by lines:
//!
//! | request | answer |
//! |---|---|
//! | `adopt HEX` (the newest epoch's key of the config as it is now) | `ok` |
//! | `finish HEX` (the same, after `rekey --finish` wrote a one-epoch config) | `ok` |
//! | `plan` | `done JSON` (a [`Migration`] counted, nothing moved) |
//! | `stats` | `done JSON`: the requests the kernel sent the mount so far, by kind, and `total`; with the kernel cache on, `kernel_cache`: its watch's figures |
//! | `move` | `progress JSON` lines, then `done JSON`; a client that goes away stops the walk; `raced ID` when another machine's rekey made epoch ID (hex, `-`: none) the config's newest |
//!
//! Any failure is answered `error MESSAGE`. `adopt` reads the mount's own config file, opens
//! its epochs with the key and swaps the vault's keys ([`Vault::adopt_keys`]), refusing a
//! config that lacks an epoch the mount reads now.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use zeroize::Zeroizing;

use super::core::CofferFs;
use crate::crypto::MasterKey;
use crate::vault::epoch_watch::ConfigWatch;
use crate::vault::migrate::{Migration, Mode};
use crate::vault::{unlock, Vault, VaultError};

/// How often the accept loop looks at its stop flag.
const POLL: Duration = Duration::from_millis(100);
/// Longest request line.
const MAX_LINE: usize = 256;

/// The control socket's path for the mount lock at `lock`.
pub fn socket_path(lock: &Path) -> PathBuf {
    lock.with_extension("sock")
}

/// A running control socket; dropping it stops the thread and removes the socket.
#[derive(Debug)]
pub struct Control {
    stop: Arc<AtomicBool>,
    path: PathBuf,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Control {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Serves the control socket at `path` for `fs`, whose vault was unlocked from `config`.
pub fn serve(fs: Arc<CofferFs>, path: PathBuf, config: PathBuf) -> std::io::Result<Control> {
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    listener.set_nonblocking(true)?;
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let thread = std::thread::Builder::new()
        .name("coffer-control".into())
        .spawn(move || {
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        if let Err(e) = answer(&fs, &config, stream) {
                            log::debug!("control socket: {e}");
                        }
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(POLL),
                    Err(e) => {
                        log::warn!("control socket: {e}");
                        std::thread::sleep(POLL);
                    }
                }
            }
        })?;
    Ok(Control {
        stop,
        path,
        thread: Some(thread),
    })
}

/// The uid of the process at the other end of `s`.
fn peer_uid(s: &UnixStream) -> std::io::Result<u32> {
    let mut cred = libc::ucred { pid: 0, uid: 0, gid: 0 };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: cred and len are valid out pointers of the sizes given.
    let r = unsafe {
        libc::getsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(cred.uid)
}

fn answer(fs: &CofferFs, config: &Path, stream: UnixStream) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    let uid = peer_uid(&stream)?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let mut out = stream.try_clone()?;
    if uid != me && uid != 0 {
        return writeln!(out, "error this mount belongs to another user");
    }
    let mut line = Zeroizing::new(Vec::new());
    BufReader::new(stream.try_clone()?)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)?;
    let text = std::str::from_utf8(&line).unwrap_or("").trim_end();
    let (cmd, arg) = text.split_once(' ').unwrap_or((text, ""));
    let r = match cmd {
        "adopt" => adopt(fs.vault(), config, arg, false).map(|()| "ok".to_string()),
        "finish" => adopt(fs.vault(), config, arg, true).map(|()| "ok".to_string()),
        "plan" => fs
            .vault()
            .migrate_to_newest(Mode::Plan, &mut |_| {})
            .map_err(|e| e.to_string())
            .and_then(|m| done(&m)),
        "move" => run_move(fs, config, &stream, &mut out),
        "stats" => stats(fs),
        _ => Err(format!("unknown request {:?}", cmd)),
    };
    match r {
        Ok(reply) => writeln!(out, "{reply}"),
        Err(e) => writeln!(out, "error {}", e.replace('\n', " ")),
    }
}

/// `stats`: the requests the kernel sent this mount so far, by kind, and their total.
fn stats(fs: &CofferFs) -> Result<String, String> {
    let counts = fs.activity.requests();
    let total: u64 = counts.iter().map(|(_, n)| n).sum();
    let mut map: serde_json::Map<String, serde_json::Value> =
        counts.into_iter().map(|(k, v)| (k.to_string(), v.into())).collect();
    map.insert("total".into(), total.into());
    if let Some(w) = &fs.watch {
        map.insert("kernel_cache".into(), w.figures());
    }
    serde_json::to_string(&map)
        .map(|j| format!("done {j}"))
        .map_err(|e| e.to_string())
}

fn done(m: &Migration) -> Result<String, String> {
    serde_json::to_string(m)
        .map(|j| format!("done {j}"))
        .map_err(|e| e.to_string())
}

/// `adopt HEX` / `finish HEX`: the vault reads and writes with the epochs of its config as it
/// is now (after `finish`, older epochs are dropped).
fn adopt(vault: &Vault, config: &Path, hex: &str, finish: bool) -> Result<(), String> {
    let raw = Zeroizing::new(
        data_encoding::HEXLOWER_PERMISSIVE
            .decode(hex.as_bytes())
            .map_err(|_| "a key in hex is needed")?,
    );
    let key = MasterKey::from_slice(&raw).ok_or("a key of 32 bytes is needed")?;
    let cfg = unlock::read_config(config).map_err(|e| e.to_string())?;
    let keys = unlock::vault_keys(&cfg, &key).map_err(|e| e.to_string())?;
    if finish {
        vault.forget_older_keys(keys).map_err(|e| e.to_string())?;
    } else {
        vault.adopt_keys(keys).map_err(|e| e.to_string())?;
    }
    log::info!("adopted the key epochs of {}", config.display());
    Ok(())
}

/// `move`: walks the vault in this mount, sending progress; stops when the client goes.
///
/// The walk watches `config` as an offline one does: when another machine's rekey makes
/// another epoch the newest, it stops and answers `raced THEIRS` (the epoch ID in hex, or
/// `-` for a config without epochs).
fn run_move(fs: &CofferFs, config: &Path, stream: &UnixStream, out: &mut UnixStream) -> Result<String, String> {
    let stop = AtomicBool::new(false);
    let mut config_watch = fs
        .vault()
        .vault_keys()
        .newest()
        .id
        .map(|id| ConfigWatch::new(config, id));
    let watch = stream.try_clone().map_err(|e| e.to_string())?;
    let mut last = std::time::Instant::now();
    let m = fs.rekey_live(
        &stop,
        &mut |m| {
            if last.elapsed() < Duration::from_millis(100) {
                return;
            }
            last = std::time::Instant::now();
            let line = serde_json::to_string(m).unwrap_or_default();
            if writeln!(out, "progress {line}").is_err() || client_gone(&watch) {
                stop.store(true, Ordering::Relaxed);
            }
        },
        &mut || config_watch.as_mut().map_or(Ok(()), ConfigWatch::check),
    );
    match m {
        Ok(m) => done(&m),
        Err(VaultError::NewestEpochChanged { theirs, .. }) => {
            log::warn!("coffer.conf names another newest key epoch: another machine's rekey; the walk stopped");
            Ok(format!(
                "raced {}",
                theirs.map_or_else(|| "-".to_string(), |t| t.to_hex())
            ))
        }
        Err(e) => Err(e.to_string()),
    }
}

/// Whether the client closed its end (a read would see end of file).
fn client_gone(s: &UnixStream) -> bool {
    let mut p = libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN | libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, no wait.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}
