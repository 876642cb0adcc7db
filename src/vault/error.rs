//! The vault layer's error type and its single mapping to errno.

use std::io;
use std::path::PathBuf;

pub use super::damage::Damage;
use crate::crypto::CryptoError;
use crate::format::epochs::EpochId;
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
    #[error(
        "{}{damage}{}",
        path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default(),
        block.map(|b| format!(" (block {b})")).unwrap_or_default()
    )]
    Corrupt {
        /// Backing path relative to CIPHERDIR; `None` for damage found through a descriptor
        /// (xattrs) until [`at_object`](VaultError::at_object) puts it at its object.
        path: Option<PathBuf>,
        /// Block number, for content blocks.
        block: Option<u64>,
        /// What is wrong.
        damage: Damage,
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
    /// No key slot of the vault accepts the key file or identity given.
    #[error("no key slot of this vault accepts this {0}")]
    NoSlotAccepts(&'static str),
    /// A key slot could not be made, changed or opened (a malformed recipient, a missing
    /// plugin, the last way in), said in one line.
    #[error("{0}")]
    KeySlot(String),
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
    /// A recovery key that does not parse, or that names a format this version does not read.
    #[error("recovery key: {0}")]
    RecoveryKey(FormatError),
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
    /// A rekey walk stopped because `coffer.conf` no longer names the epoch it moves objects
    /// to as its newest (another machine's rekey synced in): nothing of the current batch was
    /// renamed.
    #[error("coffer.conf changed during the rekey: its newest key epoch is {} now, not {}", theirs.map_or_else(|| "none".to_string(), |t| t.to_hex()), ours.to_hex())]
    NewestEpochChanged {
        /// The epoch the walk was moving objects to.
        ours: EpochId,
        /// The newest epoch coffer.conf names now (`None`: a config without key epochs).
        theirs: Option<EpochId>,
    },
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
            VaultError::NewestEpochChanged { .. } => libc::ESTALE,
            VaultError::WrongPassword
            | VaultError::NoSlotAccepts(_)
            | VaultError::KeySlot(_)
            | VaultError::ConfigTampered(_)
            | VaultError::Config { .. }
            | VaultError::RecoveryKey(_)
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
            return VaultError::corrupt(path, None, Damage::NotRegular(*nr));
        }
        VaultError::Io {
            path: path.into(),
            source,
        }
    }

    /// A corruption report on the backing object at `path` (block `block` of its content).
    pub fn corrupt(path: impl Into<PathBuf>, block: Option<u64>, damage: Damage) -> Self {
        VaultError::Corrupt {
            path: Some(path.into()),
            block,
            damage,
        }
    }

    /// A corruption found in the xattrs of an object open at a descriptor (whose path the
    /// xattr calls do not know; see [`at_object`](Self::at_object)).
    pub fn corrupt_xattrs(damage: Damage) -> Self {
        VaultError::Corrupt {
            path: None,
            block: None,
            damage,
        }
    }

    /// A corruption found in the xattrs of the object at `rel` put at that object,
    /// `REL: xattr …: what`, so its log line names the backing path. Any other error is
    /// returned as it is.
    pub fn at_object(self, rel: &std::path::Path) -> Self {
        match self {
            VaultError::Corrupt {
                path: None,
                block,
                damage,
            } => VaultError::Corrupt {
                path: Some(if rel.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    rel.to_path_buf()
                }),
                block,
                damage,
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

    /// Whether an object is sealed under a key epoch the vault has no key for.
    pub fn is_epoch_unknown(&self) -> bool {
        matches!(
            self,
            VaultError::Corrupt {
                damage: Damage::EpochUnknown,
                ..
            }
        )
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
    use crate::format::header::HeaderFault;
    use crate::format::xattr_pack::PackFault;
    use crate::vault::backing::NotRegular;
    use crate::vault::codec::BlockFault;

    #[test]
    fn errno_mapping() {
        assert_eq!(
            VaultError::io("x", io::Error::from_raw_os_error(libc::ENOSPC)).errno(),
            libc::ENOSPC
        );
        assert_eq!(
            VaultError::corrupt("x", Some(3), Damage::Block(BlockFault::Auth)).errno(),
            libc::EIO
        );
        assert_eq!(VaultError::Name(FormatError::NameTooLong).errno(), libc::ENAMETOOLONG);
        assert_eq!(VaultError::ReadOnly.errno(), libc::EROFS);
        let changed = VaultError::NewestEpochChanged {
            ours: EpochId([1; 4]),
            theirs: Some(EpochId([2; 4])),
        };
        assert_eq!(changed.errno(), libc::ESTALE);
        assert_eq!(
            changed.to_string(),
            "coffer.conf changed during the rekey: its newest key epoch is 02020202 now, not 01010101"
        );
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
        let msg = VaultError::corrupt("a/b", Some(7), Damage::Block(BlockFault::Auth)).to_string();
        assert_eq!(msg, "a/b: block authentication failed (block 7)");
    }

    /// The text and errno of every kind of damage, as logs, fsck reports and export print them.
    #[test]
    fn damage_texts() {
        let cases: Vec<(Damage, &str)> = vec![
            (Damage::DirivLength { len: 3 }, "diriv has 3 bytes, need 16"),
            (Damage::NameEncoding, "backing name is not a coffer name"),
            (Damage::NameAuth, "name does not decrypt"),
            (Damage::NameInvalid, "decrypted name is invalid"),
            (Damage::SidecarHash, "sidecar does not match its hash"),
            (Damage::NotCofferName, "not a coffer name"),
            (Damage::SymlinkEncoding, "symlink target is not base64url"),
            (Damage::SymlinkAuth, "symlink target does not authenticate"),
            (
                Damage::XattrValue {
                    name: b"user.x".to_vec(),
                },
                "xattr user.x: value does not authenticate",
            ),
            (Damage::XattrPackAuth, "xattr pack: packed xattrs do not authenticate"),
            (
                Damage::XattrPack(PackFault::TruncatedValue),
                "xattr pack: packed xattrs are malformed: truncated value",
            ),
            (
                Damage::Header(HeaderFault::Short { len: 10 }),
                "bad file header: 10 bytes, need 18",
            ),
            (
                Damage::Header(HeaderFault::Version { version: 9 }),
                "bad file header: version 9, expected 1, 2 or 3",
            ),
            (
                Damage::Header(HeaderFault::ZeroFileId),
                "bad file header: all-zero file id",
            ),
            (Damage::MissingHeader, "missing file header"),
            (Damage::Block(BlockFault::Short), "short block"),
            (
                Damage::Block(BlockFault::NotFinal),
                "last block is not sealed as final: file truncated at a block boundary",
            ),
            (Damage::Block(BlockFault::Auth), "block authentication failed"),
            (
                Damage::TornTail,
                "file ends in a torn partial block (truncated, or an interrupted write)",
            ),
            (Damage::Shrank, "file shrank during read"),
            (
                Damage::LastBlockAuth,
                "last block does not authenticate: no write can start a new version (run coffer fsck)",
            ),
            (
                Damage::MixedVersions {
                    session: 3,
                    last: crate::vault::damage::LastSession::Known(2),
                },
                "block sealed in write session 3, after the last block's 2: the file is being rewritten in \
                 place, or such a rewrite stopped half way (two versions mixed)",
            ),
            (
                Damage::EpochUnknown,
                "sealed under a key epoch this vault does not have (its key was removed by `coffer rekey \
                 --finish`, or the object comes from another vault)",
            ),
            (
                Damage::NotRegular(NotRegular { fmt: libc::S_IFIFO }),
                "not a regular file (a FIFO): damaged entry",
            ),
        ];
        for (damage, text) in cases {
            assert_eq!(damage.to_string(), text);
            let e = VaultError::corrupt("d/f", None, damage.clone());
            assert_eq!(e.to_string(), format!("d/f: {text}"));
            assert_eq!(e.errno(), libc::EIO);
            assert!(e.is_corrupt());
            assert_eq!(e.is_epoch_unknown(), damage == Damage::EpochUnknown);
            let e = VaultError::corrupt("d/f", Some(4), damage.clone());
            assert_eq!(e.to_string(), format!("d/f: {text} (block 4)"));
        }
        // Xattr damage is found through a descriptor: no path until it is put at its object.
        let e = VaultError::corrupt_xattrs(Damage::XattrPackAuth);
        assert_eq!(e.to_string(), "xattr pack: packed xattrs do not authenticate");
        assert_eq!(e.errno(), libc::EIO);
        let at = e.at_object(std::path::Path::new("d/f"));
        assert_eq!(at.to_string(), "d/f: xattr pack: packed xattrs do not authenticate");
        let root = VaultError::corrupt_xattrs(Damage::XattrValue {
            name: b"user.y".to_vec(),
        })
        .at_object(std::path::Path::new(""));
        assert_eq!(root.to_string(), ".: xattr user.y: value does not authenticate");
        // A recovery key that does not parse reads as it did when it was put at a path.
        let key = VaultError::RecoveryKey(FormatError::BadRecoveryKey("checksum mismatch (typo?)"));
        assert_eq!(
            key.to_string(),
            "recovery key: recovery key is malformed: checksum mismatch (typo?)"
        );
        assert_eq!(key.errno(), libc::EIO);
        // A backing entry of the wrong type, met by an open, is reported as damage.
        let nr = io::Error::other(NotRegular { fmt: libc::S_IFSOCK });
        let e = VaultError::io("d/s", nr);
        assert_eq!(e.to_string(), "d/s: not a regular file (a socket): damaged entry");
        assert_eq!(e.errno(), libc::EIO);
        assert!(e.is_corrupt());
    }
}
