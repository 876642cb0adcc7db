//! Backgrounding without fork(): `coffer mount` re-executes itself as
//! `coffer mount --fg --daemon-child ...`, hands over the secret on the child's stdin and reads
//! one readiness line from the child's stdout:
//!
//! - `ready` — the kernel has the mount; the parent exits 0;
//! - `fail<TAB>CODE<TAB>MESSAGE<TAB>HINT` — the parent prints the error and exits CODE;
//! - end of file — the child died; the parent reports its exit status.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::args::MountArgs;
use super::error::{code, CliError, CliResult};
use super::logging::{self, Target};
use super::open::read_config;
use super::password::{read_secret, Ask};

/// Starts the background mount and waits for its readiness line.
pub fn start(args: &MountArgs, cipherdir: &Path, mountpoint: &Path, verbose: u8) -> CliResult {
    // Same order as a foreground open: "not a vault" comes before any prompt.
    let ask = if args.open.masterkey {
        Ask::RecoveryKey
    } else {
        read_config(cipherdir, args.open.config.as_deref())?;
        Ask::Password
    };
    let secret = read_secret(&args.open.secret, ask)?;
    let exe = std::env::current_exe()
        .map_err(|e| CliError::new(code::OTHER, format!("cannot find the coffer executable: {e}")))?;
    let mut cmd = Command::new(exe);
    cmd.arg("mount").arg("--fg").arg("--daemon-child");
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    let flags = [
        (args.ro, "--ro"),
        (args.allow_other, "--allow-other"),
        (args.nonempty, "--nonempty"),
        (args.suid, "--suid"),
        (args.dev, "--dev"),
        (args.nodiratime, "--nodiratime"),
        (args.open.masterkey, "--masterkey"),
    ];
    cmd.args(flags.iter().filter(|(on, _)| *on).map(|(_, f)| f));
    if let Some(mode) = clap::ValueEnum::to_possible_value(&args.atime) {
        cmd.arg("--atime").arg(mode.get_name());
    }
    if let Some(idle) = args.idle {
        cmd.arg("--idle").arg(idle.as_secs().to_string());
    }
    if let Some(cfg) = &args.open.config {
        cmd.arg("--config").arg(super::mount::absolute(cfg)?);
    }
    if let Some(log) = &args.log {
        cmd.arg("--log").arg(super::mount::absolute(log)?);
    }
    cmd.arg("--").arg(cipherdir).arg(mountpoint);
    launch(cmd, &secret)
}

/// Starts `cmd` (a `--fg --daemon-child` re-execution of coffer), hands it `secret` on stdin
/// and waits for its readiness line (shared by `mount` and `reverse`).
pub fn launch(mut cmd: Command, secret: &[u8]) -> CliResult {
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| CliError::new(code::OTHER, format!("cannot start the mount process: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows up as the child's own error on the readiness pipe.
        let _ = stdin.write_all(secret).and_then(|()| stdin.write_all(b"\n"));
    }
    let Some(stdout) = child.stdout.take() else {
        return Err(CliError::new(code::OTHER, "no readiness pipe to the mount process"));
    };
    let mut line = String::new();
    let _ = BufReader::new(stdout).read_line(&mut line);
    match parse_report(line.trim_end_matches('\n')) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) => {
            let _ = child.wait();
            Err(e)
        }
        None => {
            let status = child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
            Err(CliError::new(
                code::OTHER,
                format!("the mount process ended before the mount was ready ({status})"),
            )
            .hint("run with --fg -v to see why"))
        }
    }
}

/// The background process (shared by `mount` and `reverse`): leaves the terminal's session,
/// logs to `log` (syslog when none), then runs `serve`, handing it a callback that logs
/// `ready_msg` and reports "ready"; a failure is logged and reported on the readiness pipe.
pub fn run_child(
    log: Option<&Path>,
    verbose: u8,
    ready_msg: &'static str,
    serve: impl FnOnce(Box<dyn FnOnce() + Send>) -> CliResult,
) -> CliResult {
    // SAFETY: setsid has no preconditions; it detaches us from the terminal's session so a
    // closed terminal does not hang up the mount. Failure (already a leader) is harmless.
    unsafe { libc::setsid() };
    let _ = std::env::set_current_dir("/");
    let target = log.map_or(Target::Syslog, Target::File);
    let result = logging::init(verbose, target).and_then(|()| {
        serve(Box::new(move || {
            log::info!("{ready_msg}");
            report_ready();
        }))
    });
    if let Err(e) = &result {
        log::error!("{}", e.message);
        report_failure(e);
    }
    result
}

/// Parses a readiness line: `Some(Ok)` for ready, `Some(Err)` for a reported failure.
fn parse_report(line: &str) -> Option<CliResult> {
    if line == "ready" {
        return Some(Ok(()));
    }
    let mut parts = line.strip_prefix("fail\t")?.splitn(3, '\t');
    let code = parts.next()?.parse().ok()?;
    let message = parts.next()?.to_string();
    let hint = parts.next().filter(|h| !h.is_empty()).map(str::to_string);
    Some(Err(CliError { code, message, hint }))
}

fn send(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(line.as_bytes()).and_then(|()| out.flush());
}

/// In the child: the mount is ready.
pub fn report_ready() {
    send("ready\n");
}

/// In the child: the mount failed before becoming ready.
pub fn report_failure(e: &CliError) {
    let clean = |s: &str| s.replace(['\t', '\n'], " ");
    let hint = e.hint.as_deref().map(clean).unwrap_or_default();
    send(&format!("fail\t{}\t{}\t{hint}\n", e.code, clean(&e.message)));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports() {
        assert!(matches!(parse_report("ready"), Some(Ok(()))));
        let e = parse_report("fail\t3\twrong password\tcheck it").unwrap().unwrap_err();
        assert_eq!(
            (e.code, e.message.as_str(), e.hint.as_deref()),
            (3, "wrong password", Some("check it"))
        );
        let e = parse_report("fail\t1\tboom\t").unwrap().unwrap_err();
        assert_eq!(e.hint, None);
        assert!(parse_report("").is_none());
        assert!(parse_report("garbage").is_none());
    }
}
