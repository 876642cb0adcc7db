//! Log setup: stderr (foreground and one-shot commands), `--log FILE`, or syslog for the
//! background mount. Level from `-v` counts; `RUST_LOG` overrides.

use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::Mutex;

use log::{LevelFilter, Log, Metadata, Record};

use super::error::{CliError, CliResult};

/// Where log lines go.
#[derive(Debug)]
pub enum Target<'a> {
    /// Standard error.
    Stderr,
    /// Appended to a file.
    File(&'a Path),
    /// The local syslog socket (`/dev/log`), dropped silently when there is none.
    Syslog,
}

fn level(verbose: u8) -> LevelFilter {
    match verbose {
        0 => LevelFilter::Warn,
        1 => LevelFilter::Info,
        2 => LevelFilter::Debug,
        _ => LevelFilter::Trace,
    }
}

/// Installs the logger. Call once.
pub fn init(verbose: u8, target: Target<'_>) -> CliResult {
    let mut b = env_logger::Builder::new();
    b.filter_level(level(verbose));
    if let Ok(spec) = std::env::var("RUST_LOG") {
        b.parse_filters(&spec);
    }
    match target {
        Target::Stderr => {
            b.format(|f, r| writeln!(f, "coffer: {}: {}", r.level().as_str().to_lowercase(), r.args()));
        }
        Target::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::io(path, &e))?;
            b.target(env_logger::Target::Pipe(Box::new(file)));
        }
        Target::Syslog => {
            let filter = b.build();
            let max = filter.filter();
            let logger = Syslog {
                filter,
                sock: Mutex::new(UnixDatagram::unbound().ok()),
                pid: std::process::id(),
            };
            // A second init is a programming error; ignore rather than panic.
            if log::set_boxed_logger(Box::new(logger)).is_ok() {
                log::set_max_level(max);
            }
            return Ok(());
        }
    }
    let _ = b.try_init();
    Ok(())
}

/// A minimal RFC 3164 client for `/dev/log` (facility daemon).
struct Syslog {
    filter: env_logger::Logger,
    sock: Mutex<Option<UnixDatagram>>,
    pid: u32,
}

impl Log for Syslog {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        self.filter.enabled(m)
    }

    fn log(&self, r: &Record<'_>) {
        if !self.filter.matches(r) {
            return;
        }
        let severity = match r.level() {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            log::Level::Info => 6,
            log::Level::Debug | log::Level::Trace => 7,
        };
        const DAEMON: u8 = 3 << 3;
        let line = format!("<{}>coffer[{}]: {}", DAEMON | severity, self.pid, r.args());
        if let Ok(guard) = self.sock.lock() {
            if let Some(s) = guard.as_ref() {
                let _ = s.send_to(line.as_bytes(), "/dev/log");
            }
        }
    }

    fn flush(&self) {}
}
