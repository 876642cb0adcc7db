//! Reading passwords and recovery keys: no-echo prompt on a terminal, `--passfile`, `--extpass`,
//! or a line of stdin. Never from a command-line argument; never logged.

use std::io::{BufRead, IsTerminal, Read};
use std::path::Path;
use std::process::{Command, Stdio};

use zeroize::Zeroizing;

use super::args::SecretArgs;
use super::error::{code, strip_os_error, CliError, CliResult};

/// A password or recovery key in memory; zeroed on drop.
pub type Secret = Zeroizing<Vec<u8>>;

/// The longest password or recovery key accepted, in bytes.
pub const MAX_SECRET: usize = 4096;

/// How much of a passfile, an extpass command's output or stdin is read: its first line is
/// the secret. Buffers are sized for it up front and never grow, because a grown `Vec` leaves
/// its old copy in freed heap.
const READ_LIMIT: usize = 64 * 1024;

/// What the secret is for: decides the prompt and whether a terminal asks twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ask {
    /// An existing password.
    Password,
    /// A new password (terminal: asked twice).
    NewPassword,
    /// A recovery key.
    RecoveryKey,
}

impl Ask {
    fn prompt(self) -> &'static str {
        match self {
            Ask::Password => "Password: ",
            Ask::NewPassword => "New password: ",
            Ask::RecoveryKey => "Recovery key: ",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Ask::RecoveryKey => "recovery key",
            _ => "password",
        }
    }
}

/// Reads one secret from the first source given: --passfile, --extpass, the terminal, stdin.
pub fn read_secret(src: &SecretArgs, ask: Ask) -> CliResult<Secret> {
    let secret = if let Some(file) = &src.passfile {
        from_passfile(file)?
    } else if let Some(cmd) = &src.extpass {
        from_extpass(cmd)?
    } else if std::io::stdin().is_terminal() {
        from_terminal(ask)?
    } else {
        from_stdin(ask)?
    };
    if secret.len() > MAX_SECRET {
        return Err(CliError::new(
            code::PASSWORD_INPUT,
            format!("{} longer than {MAX_SECRET} bytes refused", ask.what()),
        ));
    }
    if secret.is_empty() {
        return Err(CliError::new(
            code::PASSWORD_INPUT,
            format!("empty {} refused", ask.what()),
        ));
    }
    Ok(secret)
}

/// The first line of `bytes`, without its line ending.
fn first_line(bytes: &[u8]) -> Secret {
    let end = bytes.iter().position(|&b| b == b'\n').unwrap_or(bytes.len());
    let mut line = &bytes[..end];
    if line.last() == Some(&b'\r') {
        line = &line[..line.len() - 1];
    }
    Zeroizing::new(line.to_vec())
}

fn from_passfile(file: &Path) -> CliResult<Secret> {
    let mut buf = Zeroizing::new(Vec::with_capacity(READ_LIMIT + 1));
    std::fs::File::open(file)
        .and_then(|f| f.take(READ_LIMIT as u64).read_to_end(&mut buf))
        .map_err(|e| {
            CliError::new(
                code::PASSWORD_INPUT,
                format!("cannot read passfile {}: {}", file.display(), strip_os_error(&e)),
            )
        })?;
    Ok(first_line(&buf))
}

fn from_extpass(cmd: &str) -> CliResult<Secret> {
    let run_err = |e: std::io::Error| {
        CliError::new(
            code::PASSWORD_INPUT,
            format!("cannot run extpass command: {}", strip_os_error(&e)),
        )
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .stdin(Stdio::inherit())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(run_err)?;
    let mut stdout = Zeroizing::new(Vec::with_capacity(READ_LIMIT + 1));
    let read = match child.stdout.take() {
        Some(mut pipe) => (&mut pipe)
            .take(READ_LIMIT as u64)
            .read_to_end(&mut stdout)
            // The rest is read and dropped, so the command does not die of a closed pipe.
            .and_then(|_| std::io::copy(&mut pipe, &mut std::io::sink())),
        None => Ok(0),
    };
    let status = child.wait().map_err(run_err)?;
    read.map_err(run_err)?;
    if !status.success() {
        let why = match status.code() {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal".to_string(),
        };
        return Err(CliError::new(
            code::PASSWORD_INPUT,
            format!("extpass command failed ({why})"),
        ));
    }
    Ok(first_line(&stdout))
}

fn from_terminal(ask: Ask) -> CliResult<Secret> {
    let tty_err = |e: std::io::Error| {
        CliError::new(
            code::PASSWORD_INPUT,
            format!("cannot read from the terminal: {}", strip_os_error(&e)),
        )
    };
    let first = super::tty::prompt_hidden(ask.prompt(), MAX_SECRET).map_err(tty_err)?;
    // A password that will be refused anyway (empty or too long) is not asked for again.
    if ask == Ask::NewPassword && (1..=MAX_SECRET).contains(&first.len()) {
        let again = super::tty::prompt_hidden("Repeat new password: ", MAX_SECRET).map_err(tty_err)?;
        if *again != *first {
            return Err(CliError::new(code::PASSWORD_INPUT, "the passwords do not match"));
        }
    }
    Ok(first)
}

fn from_stdin(ask: Ask) -> CliResult<Secret> {
    let mut line = Zeroizing::new(Vec::with_capacity(READ_LIMIT + 1));
    let n = std::io::stdin()
        .lock()
        .take(READ_LIMIT as u64)
        .read_until(b'\n', &mut line)
        .map_err(|e| {
            CliError::new(
                code::PASSWORD_INPUT,
                format!("cannot read the {} from stdin: {}", ask.what(), strip_os_error(&e)),
            )
        })?;
    if n == 0 {
        return Err(
            CliError::new(code::PASSWORD_INPUT, format!("no {} on stdin", ask.what()))
                .hint("give it on stdin, with --passfile FILE or --extpass CMD"),
        );
    }
    Ok(first_line(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_strips_endings() {
        assert_eq!(&first_line(b"pw\nrest")[..], b"pw");
        assert_eq!(&first_line(b"pw\r\n")[..], b"pw");
        assert_eq!(&first_line(b"pw")[..], b"pw");
        assert_eq!(&first_line(b"\n")[..], b"");
    }

    #[test]
    fn passfile_and_extpass() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, "secret\nignored\n").unwrap();
        let src = SecretArgs {
            passfile: Some(f),
            extpass: None,
        };
        assert_eq!(&read_secret(&src, Ask::Password).unwrap()[..], b"secret");
        let src = SecretArgs {
            passfile: Some(dir.path().join("missing")),
            extpass: None,
        };
        assert_eq!(read_secret(&src, Ask::Password).unwrap_err().code, code::PASSWORD_INPUT);
        let src = SecretArgs {
            passfile: None,
            extpass: Some("printf 'abc\\ndef'".into()),
        };
        assert_eq!(&read_secret(&src, Ask::Password).unwrap()[..], b"abc");
        let src = SecretArgs {
            passfile: None,
            extpass: Some("exit 3".into()),
        };
        assert_eq!(
            read_secret(&src, Ask::Password).unwrap_err().message,
            "extpass command failed (exit status 3)"
        );
        let src = SecretArgs {
            passfile: None,
            extpass: Some("true".into()),
        };
        assert_eq!(
            read_secret(&src, Ask::Password).unwrap_err().message,
            "empty password refused"
        );
    }

    #[test]
    fn over_long_secret_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("p");
        std::fs::write(&f, vec![b'x'; MAX_SECRET]).unwrap();
        let src = SecretArgs {
            passfile: Some(f.clone()),
            extpass: None,
        };
        assert_eq!(read_secret(&src, Ask::Password).unwrap().len(), MAX_SECRET);
        std::fs::write(&f, vec![b'x'; MAX_SECRET + 1]).unwrap();
        let err = read_secret(&src, Ask::Password).unwrap_err();
        assert_eq!(err.code, code::PASSWORD_INPUT);
        assert_eq!(err.message, "password longer than 4096 bytes refused");
        let src = SecretArgs {
            passfile: None,
            extpass: Some("head -c 200000 /dev/zero | tr '\\0' y".into()),
        };
        assert_eq!(
            read_secret(&src, Ask::RecoveryKey).unwrap_err().message,
            "recovery key longer than 4096 bytes refused"
        );
    }
}
