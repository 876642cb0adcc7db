//! Reading what unlocks a vault besides the password: a key file (its bytes) and identity
//! files (age identities, SSH private keys; a passphrase-protected key asks on the terminal).

use std::path::Path;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use coffer::crypto;
use coffer::vault::unlock::slots::Credential;

use super::args::OpenArgs;
use super::error::{code, CliError, CliResult};
use super::password::{read_secret, Ask, Secret};

/// Most bytes read from a key file or an identity file.
const MAX_KEY_FILE: u64 = 1 << 20;

/// What the user gave to unlock with.
pub enum Given {
    /// The password (prompt, --passfile or --extpass).
    Password(Secret),
    /// A key file's bytes.
    KeyFile(Secret),
    /// Identities from an identity file.
    Identities(Vec<Box<dyn age::Identity>>),
}

impl Given {
    /// As the vault layer takes it.
    pub fn credential(&self) -> Credential<'_> {
        match self {
            Given::Password(p) => Credential::Password(p),
            Given::KeyFile(k) => Credential::KeyFile(k),
            Given::Identities(ids) => Credential::Identities(ids),
        }
    }

    /// The password, when that is what was given.
    pub fn password(&self) -> Option<&[u8]> {
        match self {
            Given::Password(p) => Some(p),
            _ => None,
        }
    }
}

/// Reads `--keyfile FILE` or `--identity FILE`, else the password.
pub fn read_given(args: &OpenArgs) -> CliResult<Given> {
    if let Some(f) = &args.keyfile {
        return read_key_file(f).map(Given::KeyFile);
    }
    if let Some(f) = &args.identity {
        // --passfile / --extpass with --identity: the passphrase of a protected SSH key.
        let passphrase = if args.secret.passfile.is_some() || args.secret.extpass.is_some() {
            let p = read_secret(&args.secret, Ask::Password)?;
            let text = std::str::from_utf8(&p)
                .map_err(|_| CliError::new(code::PASSWORD_INPUT, "the SSH key's passphrase is not UTF-8 text"))?;
            Some(std::sync::Arc::new(Zeroizing::new(text.to_string())))
        } else {
            None
        };
        return read_identity_file(f, passphrase).map(Given::Identities);
    }
    read_secret(&args.secret, Ask::Password).map(Given::Password)
}

/// The bytes of a key file (at least 16, at most 1 MiB).
pub fn read_key_file(path: &Path) -> CliResult<Secret> {
    let bytes = read_small(path)?;
    if bytes.len() < 16 {
        return Err(CliError::new(
            code::USAGE,
            format!(
                "{}: a key file needs at least 16 bytes (it has {})",
                path.display(),
                bytes.len()
            ),
        )
        .hint("make one with: head -c 32 /dev/urandom > FILE"));
    }
    Ok(bytes)
}

fn read_small(path: &Path) -> CliResult<Secret> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| CliError::io(path, &e))?;
    let mut out = Zeroizing::new(Vec::new());
    f.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| CliError::io(path, &e))?;
    if out.len() as u64 > MAX_KEY_FILE {
        return Err(CliError::new(
            code::USAGE,
            format!("{}: larger than 1 MiB, not a key or identity file", path.display()),
        ));
    }
    Ok(out)
}

/// The identities of an age identity file or an SSH private key; a protected SSH key's
/// passphrase is `passphrase`, else asked on the terminal.
pub fn read_identity_file(
    path: &Path,
    passphrase: Option<std::sync::Arc<Zeroizing<String>>>,
) -> CliResult<Vec<Box<dyn age::Identity>>> {
    let text = read_small(path)?;
    crypto::read_identities(&text, &path.display().to_string(), TtyCallbacks { passphrase })
        .map_err(|e| CliError::new(code::USAGE, e.to_string()))
}

/// Answers what an identity needs (an SSH key's passphrase, a plugin's PIN): the passphrase
/// given with `--passfile` or `--extpass`, else a question on the terminal.
#[derive(Clone)]
pub struct TtyCallbacks {
    passphrase: Option<std::sync::Arc<Zeroizing<String>>>,
}

impl age::Callbacks for TtyCallbacks {
    fn display_message(&self, message: &str) {
        eprintln!("{message}");
    }

    fn confirm(&self, message: &str, yes: &str, no: Option<&str>) -> Option<bool> {
        let choices = match no {
            Some(n) => format!("[{yes}/{n}]"),
            None => format!("[{yes}]"),
        };
        let answer = super::tty::prompt_hidden(&format!("{message} {choices}: "), 64).ok()?;
        let answer = String::from_utf8_lossy(&answer).trim().to_string();
        Some(answer.is_empty() || answer.eq_ignore_ascii_case(yes))
    }

    fn request_public_string(&self, description: &str) -> Option<String> {
        let answer = super::tty::prompt_hidden(&format!("{description}: "), 1024).ok()?;
        Some(String::from_utf8_lossy(&answer).into_owned())
    }

    fn request_passphrase(&self, description: &str) -> Option<SecretString> {
        if let Some(p) = &self.passphrase {
            return Some(SecretString::from(p.as_str().to_string()));
        }
        let answer = super::tty::prompt_hidden(&format!("{description}: "), 1024).ok()?;
        let text = std::str::from_utf8(&answer).ok()?;
        Some(SecretString::from(text.to_string()))
    }
}
