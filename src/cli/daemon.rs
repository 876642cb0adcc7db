//! Backgrounding without fork(): `coffer mount` (and `coffer reverse`) re-executes itself as
//! `coffer mount --fg --daemon-child ...`, hands over the secret on the child's stdin and reads
//! one readiness line from the child's stdout:
//!
//! - `note<TAB>TEXT` (any number, before the others) — a line the parent prints to stderr
//!   (with `-v`: which kernel cache mode the mount runs in);
//! - `ready` — the kernel has the mount; the parent exits 0;
//! - `fail<TAB>CODE<TAB>MESSAGE<TAB>HINT` — the parent prints the error and exits CODE;
//! - end of file — the child died; the parent reports its exit status.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

use super::error::{code, CliError, CliResult};
use super::logging::{self, Target};

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
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    loop {
        line.clear();
        let _ = reader.read_line(&mut line);
        match line.trim_end_matches('\n').strip_prefix("note\t") {
            Some(note) => eprintln!("{note}"),
            None => break,
        }
    }
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

/// In the child: a line for the user before the mount is ready (`-v`).
pub fn report_note(text: &str) {
    send(&format!("note\t{}\n", text.replace(['\t', '\n'], " ")));
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
