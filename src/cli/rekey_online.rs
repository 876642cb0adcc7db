//! `coffer rekey` of a mounted vault: the walk runs in the mount's daemon, reached through
//! its control socket (`coffer::fs::control`); this side unlocks, writes the config, hands
//! the daemon the new epoch's key and shows the plan and the progress.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;

use coffer::crypto::MasterKey;
use coffer::format::epochs::EpochId;
use coffer::vault::migrate::Migration;
use zeroize::Zeroizing;

use super::error::{code, CliError, CliResult};
use super::progress::Progress;

/// One connection to a mount's control socket.
pub struct Daemon<'a> {
    socket: &'a Path,
}

impl<'a> Daemon<'a> {
    /// The daemon behind `socket`.
    pub fn new(socket: &'a Path) -> Self {
        Daemon { socket }
    }

    fn connect(&self) -> CliResult<UnixStream> {
        UnixStream::connect(self.socket).map_err(|e| {
            CliError::new(
                code::OTHER,
                format!("cannot reach the mount's daemon at {}: {e}", self.socket.display()),
            )
            .hint(
                "the vault is mounted by a coffer that cannot rekey it online: unmount it and run `coffer rekey` again",
            )
        })
    }

    /// The requests the kernel sent the mount so far, by kind (JSON, with `total`).
    pub fn stats(&self) -> CliResult<String> {
        let line = self.ask(b"stats", &mut |_| {})?;
        line.strip_prefix("done ").map(str::to_string).ok_or_else(|| {
            CliError::new(
                code::OTHER,
                format!("unexpected answer from the mount's daemon: {line}"),
            )
        })
    }

    /// Sends `request`; returns the answer's lines, passing each `progress` line to `seen`.
    fn ask(&self, request: &[u8], seen: &mut dyn FnMut(Migration)) -> CliResult<String> {
        let mut s = self.connect()?;
        s.write_all(request)
            .and_then(|()| s.write_all(b"\n"))
            .map_err(|e| CliError::new(code::OTHER, format!("mount daemon: {e}")))?;
        for line in BufReader::new(s).lines() {
            let line = line.map_err(|e| CliError::new(code::OTHER, format!("mount daemon: {e}")))?;
            if let Some(j) = line.strip_prefix("progress ") {
                if let Ok(m) = serde_json::from_str(j) {
                    seen(m);
                }
            } else if let Some(e) = line.strip_prefix("error ") {
                return Err(CliError::new(code::OTHER, format!("the mount's daemon refused: {e}")));
            } else {
                return Ok(line);
            }
        }
        Err(CliError::new(code::OTHER, "the mount's daemon closed the connection"))
    }

    /// The daemon reads and writes with the config's epochs from now on (`finish`: drops
    /// the older ones); `key` is the config's newest epoch key.
    pub fn adopt(&self, key: &MasterKey, finish: bool) -> CliResult<()> {
        let verb = if finish { "finish" } else { "adopt" };
        let hex = Zeroizing::new(data_encoding::HEXLOWER.encode(key.expose()));
        let mut req = Zeroizing::new(Vec::with_capacity(verb.len() + 1 + hex.len()));
        req.extend_from_slice(verb.as_bytes());
        req.push(b' ');
        req.extend_from_slice(hex.as_bytes());
        self.ask(&req, &mut |_| {}).map(|_| ())
    }

    /// A count of what is left under older epochs.
    pub fn plan(&self) -> CliResult<Migration> {
        done(self.ask(b"plan", &mut |_| {})?)
    }

    /// Moves everything to the newest epoch, showing a progress bar over `bytes`.
    pub fn move_all(&self, bytes: u64) -> CliResult<Moved> {
        let bar = Progress::bytes(bytes);
        let mut shown = 0;
        let r = self.ask(b"move", &mut |m| {
            bar.inc(m.bytes.saturating_sub(shown));
            shown = m.bytes;
        });
        bar.finish();
        let line = r?;
        if let Some(theirs) = line.strip_prefix("raced ") {
            return Ok(Moved::Raced(EpochId::from_hex(theirs)));
        }
        done(line).map(Moved::Done)
    }
}

/// How the mount's walk ended.
pub enum Moved {
    /// It went through (what it moved, what it left).
    Done(Migration),
    /// It stopped: coffer.conf names another newest epoch now (`None`: none).
    Raced(Option<EpochId>),
}

fn done(line: String) -> CliResult<Migration> {
    line.strip_prefix("done ")
        .and_then(|j| serde_json::from_str(j).ok())
        .ok_or_else(|| CliError::new(code::OTHER, format!("the mount's daemon answered {line:?}")))
}
