//! The CLI's error: one line for the user, an optional hint, and a documented exit code.

use std::fmt;
use std::path::Path;

use coffer::crypto::CryptoError;
use coffer::format::FormatError;
use coffer::vault::VaultError;

/// Exit codes (documented in `--help` and README.md).
pub mod code {
    /// Other errors.
    pub const OTHER: i32 = 1;
    /// Usage errors (clap uses 2 as well).
    pub const USAGE: i32 = 2;
    /// Wrong password or recovery key.
    pub const WRONG_PASSWORD: i32 = 3;
    /// Not a vault, or its config is refused.
    pub const NOT_A_VAULT: i32 = 4;
    /// The password could not be read.
    pub const PASSWORD_INPUT: i32 = 5;
    /// Damaged data.
    pub const DAMAGED: i32 = 6;
    /// A target directory or file refused.
    pub const TARGET: i32 = 7;
}

/// An error as the user sees it.
#[derive(Debug)]
pub struct CliError {
    /// Exit code.
    pub code: i32,
    /// One line, no trailing period needed.
    pub message: String,
    /// What to do about it, if there is something useful to say.
    pub hint: Option<String>,
}

/// Result alias for commands.
pub type CliResult<T = ()> = Result<T, CliError>;

impl CliError {
    /// An error with a code and message.
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        CliError {
            code,
            message: message.into(),
            hint: None,
        }
    }

    /// Adds a hint line.
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// An I/O error on a path (code 1).
    pub fn io(path: &Path, e: &std::io::Error) -> Self {
        CliError::new(code::OTHER, format!("{}: {}", path.display(), strip_os_error(e)))
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `No such file or directory (os error 2)` → `No such file or directory`.
pub fn strip_os_error(e: &std::io::Error) -> String {
    strip_os_error_text(e.to_string())
}

fn strip_os_error_text(s: String) -> String {
    match s.find(" (os error ") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}

impl From<VaultError> for CliError {
    fn from(e: VaultError) -> Self {
        match e {
            VaultError::WrongPassword => CliError::new(code::WRONG_PASSWORD, "wrong password")
                .hint("passwords are case-sensitive; a lost password can be replaced with `coffer passwd --masterkey`"),
            VaultError::NoSlotAccepts(what) => CliError::new(
                code::WRONG_PASSWORD,
                format!("no key slot of this vault accepts this {what}"),
            )
            .hint("`coffer key list CIPHERDIR` shows the vault's slots; the recovery key opens it with --masterkey"),
            VaultError::KeySlot(why) => CliError::new(code::USAGE, why),
            VaultError::NotAVault(ref p) => CliError::new(
                code::NOT_A_VAULT,
                format!("{}: not a coffer vault (no coffer.conf)", p.display()),
            )
            .hint("if its config is kept elsewhere use --config FILE; with the recovery key use --masterkey"),
            VaultError::MissingDiriv { ref path } if path.as_os_str().is_empty() => CliError::new(
                code::NOT_A_VAULT,
                "not a coffer vault (its root has no coffer.diriv)".to_string(),
            ),
            VaultError::ConfigTampered(why) => CliError::new(
                code::NOT_A_VAULT,
                format!("coffer.conf was modified ({why}); refusing to open"),
            )
            .hint("restore coffer.conf from a backup, or open with the recovery key: --masterkey"),
            VaultError::Config { path, source } => config_error(&path.display(), &source),
            VaultError::RecoveryKey(source) => config_error(&"recovery key", &source),
            VaultError::Crypto(e @ CryptoError::KdfBounds { .. }) => {
                CliError::new(code::NOT_A_VAULT, format!("config refused: {e}"))
            }
            VaultError::Io { path, source } => CliError::io(&path, &source),
            // Context and errno, read as an I/O error on a path is.
            e @ (VaultError::Inode { .. } | VaultError::Xattr { .. }) => {
                CliError::new(code::OTHER, strip_os_error_text(e.to_string()))
            }
            e if e.is_corrupt() => CliError::new(code::DAMAGED, format!("damaged: {e}"))
                .hint("run `coffer export` to rescue everything else"),
            e => CliError::new(code::OTHER, e.to_string()),
        }
    }
}

/// A config (or recovery key, `at`) refused: a malformed recovery key is a wrong password.
fn config_error(at: &dyn fmt::Display, source: &FormatError) -> CliError {
    match source {
        FormatError::BadRecoveryKey(_) => CliError::new(code::WRONG_PASSWORD, source.to_string()).hint(
            "give the recovery key exactly as `coffer init` printed it (hex groups; dashes and spaces are ignored)",
        ),
        _ => CliError::new(code::NOT_A_VAULT, format!("{at}: {source}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use coffer::vault::{BlockFault, Damage};

    #[test]
    fn codes() {
        assert_eq!(CliError::from(VaultError::WrongPassword).code, code::WRONG_PASSWORD);
        assert_eq!(
            CliError::from(VaultError::NotAVault("x".into())).code,
            code::NOT_A_VAULT
        );
        assert_eq!(
            CliError::from(VaultError::corrupt("a", Some(1), Damage::Block(BlockFault::Auth))).code,
            code::DAMAGED
        );
        let io = VaultError::errno_at("p", libc::ENOENT);
        assert_eq!(CliError::from(io).message, "p: No such file or directory");
        let stale = CliError::from(VaultError::inode(7, libc::ESTALE));
        assert_eq!(
            (stale.code, stale.message.as_str()),
            (code::OTHER, "inode 7: Stale file handle")
        );
    }
}
