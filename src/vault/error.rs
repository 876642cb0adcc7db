//! The vault layer's error type and its single mapping to errno.

use std::io;
use std::path::PathBuf;

use crate::crypto::CryptoError;
use crate::format::FormatError;

/// Anything that can go wrong reading or writing a vault. Every variant carries its context.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaultError {
    /// A backing syscall failed; keeps its own errno.
    #[error("{}: {source}", path.display())]
    Io {
        /// Backing path (relative to CIPHERDIR) or config path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A block, header, name or sidecar failed authentication or does not parse.
    #[error("{}: {what}{}", path.display(), block.map(|b| format!(" (block {b})")).unwrap_or_default())]
    Corrupt {
        /// Backing path relative to CIPHERDIR.
        path: PathBuf,
        /// Block number, for content blocks.
        block: Option<u64>,
        /// What failed.
        what: String,
    },
    /// A plain file changed while it was read in reverse mode (its size, mtime or ctime moved
    /// between open and a read): not damage; reading it again gives the new version.
    #[error("{}: plain file changed while read (size, mtime or ctime moved); retry", path.display())]
    Changed {
        /// Plain path relative to PLAINDIR.
        path: PathBuf,
    },
    /// A request on an inode the kernel named (and the open handle it named, if any) refused
    /// with an errno: stale, not open, not a directory, not permitted.
    #[error("inode {ino}{}: {}", handle.map(|h| format!(" handle {h}")).unwrap_or_default(), io::Error::from_raw_os_error(*errno))]
    Inode {
        /// The inode number.
        ino: u64,
        /// The file or directory handle.
        handle: Option<u64>,
        /// The errno the request fails with.
        errno: i32,
    },
    /// An xattr request that failed with an errno: refused (no such attribute, exists, too
    /// big) or failed on the backing object; with the attribute's name when it is about it.
    #[error("xattr{}: {}", name.as_ref().map(|n| format!(" {}", String::from_utf8_lossy(n))).unwrap_or_default(), io::Error::from_raw_os_error(*errno))]
    Xattr {
        /// The attribute's name.
        name: Option<Vec<u8>>,
        /// The errno the request fails with.
        errno: i32,
    },
    /// A request the file system does not serve (the kernel then stops sending it).
    #[error("{op}: not served by this file system")]
    NotServed {
        /// The request.
        op: &'static str,
    },
    /// A directory has no `coffer.diriv`; coffer never writes one into an existing directory.
    #[error("{}: directory has no coffer.diriv (not made by coffer, or damaged)", path.display())]
    MissingDiriv {
        /// Backing directory path.
        path: PathBuf,
    },
    /// The password did not unwrap the master key.
    #[error("wrong password (or coffer.conf was modified)")]
    WrongPassword,
    /// The config failed its MAC or its fields do not match the key.
    #[error("coffer.conf was modified: {0}; refusing to open")]
    ConfigTampered(String),
    /// The config could not be parsed or names something this version does not support.
    #[error("{}: {source}", path.display())]
    Config {
        /// Config path.
        path: PathBuf,
        /// Why.
        source: FormatError,
    },
    /// The directory is not a coffer vault.
    #[error("{}: not a coffer vault (no coffer.conf; use --config or --masterkey if it is elsewhere)", .0.display())]
    NotAVault(PathBuf),
    /// A cipher-level failure (KDF bounds, random source).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// A plaintext name or xattr name that coffer refuses.
    #[error("invalid name: {0}")]
    Name(#[from] FormatError),
    /// The operation is refused by design (e.g. a non-user xattr namespace).
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// The vault is read-only (reverse mode, `--ro`).
    #[error("read-only vault")]
    ReadOnly,
}

/// Result alias for the vault layer.
pub type Result<T, E = VaultError> = std::result::Result<T, E>;

impl VaultError {
    /// The errno a FUSE reply should carry. The only error-to-errno mapping in coffer.
    pub fn errno(&self) -> i32 {
        match self {
            VaultError::Io { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            VaultError::Corrupt { .. } | VaultError::MissingDiriv { .. } => libc::EIO,
            VaultError::Changed { .. } => libc::EIO,
            VaultError::Inode { errno, .. } | VaultError::Xattr { errno, .. } => *errno,
            VaultError::NotServed { .. } => libc::ENOSYS,
            VaultError::Name(FormatError::NameTooLong) => libc::ENAMETOOLONG,
            VaultError::Name(FormatError::InvalidName) => libc::EINVAL,
            VaultError::Name(_) => libc::EIO,
            VaultError::Unsupported(_) => libc::EOPNOTSUPP,
            VaultError::ReadOnly => libc::EROFS,
            VaultError::WrongPassword
            | VaultError::ConfigTampered(_)
            | VaultError::Config { .. }
            | VaultError::NotAVault(_) => libc::EIO,
            VaultError::Crypto(CryptoError::Auth) => libc::EIO,
            VaultError::Crypto(_) => libc::EIO,
        }
    }

    /// Wraps an io::Error with its path; a backing entry of the wrong type
    /// ([`NotRegular`](super::backing::NotRegular)) becomes a corruption report.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        if let Some(nr) = source
            .get_ref()
            .and_then(|e| e.downcast_ref::<super::backing::NotRegular>())
        {
            return VaultError::corrupt(path, None, nr.to_string());
        }
        VaultError::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption report.
    pub fn corrupt(path: impl Into<PathBuf>, block: Option<u64>, what: impl Into<String>) -> Self {
        VaultError::Corrupt {
            path: path.into(),
            block,
            what: what.into(),
        }
    }

    /// A corruption found in the xattrs of the object at `rel` (xattr calls work on a
    /// descriptor and know no path) put at that object, `REL: xattr …: what`, so its log line
    /// names the backing path. Any other error is returned as it is.
    pub fn at_object(self, rel: &std::path::Path) -> Self {
        match self {
            VaultError::Corrupt { path, block, what } => VaultError::Corrupt {
                path: if rel.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    rel.to_path_buf()
                },
                block,
                what: format!("{}: {what}", path.display()),
            },
            e => e,
        }
    }

    /// An error carrying only an errno (for checks the vault makes itself, e.g. ENOTEMPTY).
    pub fn errno_at(path: impl Into<PathBuf>, errno: i32) -> Self {
        VaultError::Io {
            path: path.into(),
            source: io::Error::from_raw_os_error(errno),
        }
    }

    /// A request on inode `ino` refused with `errno`.
    pub fn inode(ino: u64, errno: i32) -> Self {
        VaultError::Inode {
            ino,
            handle: None,
            errno,
        }
    }

    /// A request on handle `fh` of inode `ino` refused with `errno`.
    pub fn handle(ino: u64, fh: u64, errno: i32) -> Self {
        VaultError::Inode {
            ino,
            handle: Some(fh),
            errno,
        }
    }

    /// An xattr request refused with `errno` (about attribute `name`, when given).
    pub fn xattr(name: Option<&[u8]>, errno: i32) -> Self {
        VaultError::Xattr {
            name: name.map(<[u8]>::to_vec),
            errno,
        }
    }

    /// Whether this is an authentication/corruption failure (EIO with a log line).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, VaultError::Corrupt { .. } | VaultError::MissingDiriv { .. })
    }

    /// Whether this is a plain file that changed while read (EIO, logged as a change).
    pub fn is_changed(&self) -> bool {
        matches!(self, VaultError::Changed { .. })
    }
}

/// Attaches a path to io errors.
pub trait IoContext<T> {
    /// Maps `Err(io)` to `VaultError::Io { path, .. }`.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::result::Result<T, io::Error> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| VaultError::io(path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_mapping() {
        assert_eq!(
            VaultError::io("x", io::Error::from_raw_os_error(libc::ENOSPC)).errno(),
            libc::ENOSPC
        );
        assert_eq!(VaultError::corrupt("x", Some(3), "tag").errno(), libc::EIO);
        assert_eq!(VaultError::Name(FormatError::NameTooLong).errno(), libc::ENAMETOOLONG);
        assert_eq!(VaultError::ReadOnly.errno(), libc::EROFS);
        let changed = VaultError::Changed { path: "a/f".into() };
        assert_eq!(changed.errno(), libc::EIO);
        assert!(changed.is_changed() && !changed.is_corrupt());
        // Typed context reads as the paths it replaced did.
        let errno_at = |path: &str, errno| VaultError::errno_at(path, errno).to_string();
        assert_eq!(
            VaultError::inode(5, libc::ESTALE).to_string(),
            errno_at("inode 5", libc::ESTALE)
        );
        assert_eq!(
            VaultError::handle(5, 9, libc::EBADF).to_string(),
            errno_at("inode 5 handle 9", libc::EBADF)
        );
        assert_eq!(VaultError::handle(5, 9, libc::EBADF).errno(), libc::EBADF);
        assert_eq!(
            VaultError::xattr(Some(b"user.x"), libc::ENODATA).to_string(),
            errno_at("xattr user.x", libc::ENODATA)
        );
        assert_eq!(
            VaultError::xattr(None, libc::E2BIG).to_string(),
            errno_at("xattr", libc::E2BIG)
        );
        let msg = VaultError::corrupt("a/b", Some(7), "authentication failed").to_string();
        assert_eq!(msg, "a/b: authentication failed (block 7)");
    }
}
