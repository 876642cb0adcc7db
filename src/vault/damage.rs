//! The kinds of damage a corruption report names ([`VaultError::Corrupt`](super::VaultError::Corrupt)).

use super::backing::NotRegular;
use super::codec::BlockFault;
use crate::format::backing_name::DIRIV_LEN;
use crate::format::header::HeaderFault;
use crate::format::xattr_pack::PackFault;

/// What is wrong with a damaged entry, file or xattr: the kind of a
/// [`VaultError::Corrupt`](super::VaultError::Corrupt).
/// Its text is what damage reports (logs, fsck, export) print after the path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Damage {
    /// `coffer.diriv` is not [`DIRIV_LEN`] bytes long.
    #[error("diriv has {len} bytes, need {}", DIRIV_LEN)]
    DirivLength {
        /// Bytes it has.
        len: usize,
    },
    /// A short backing name or a sidecar's text is not in the vault's name encoding.
    #[error("backing name is not a coffer name")]
    NameEncoding,
    /// A backing name decrypts under none of the directory's IVs.
    #[error("name does not decrypt")]
    NameAuth,
    /// A backing name decrypts to a name coffer refuses (empty, `.`, `..`, `/`, NUL).
    #[error("decrypted name is invalid")]
    NameInvalid,
    /// A long name's sidecar does not hash to its entry's name.
    #[error("sidecar does not match its hash")]
    SidecarHash,
    /// A backing entry that is neither coffer's nor a sync client's copy of one.
    #[error("not a coffer name")]
    NotCofferName,
    /// A symlink's backing target is not base64url.
    #[error("symlink target is not base64url")]
    SymlinkEncoding,
    /// A symlink's target does not authenticate.
    #[error("symlink target does not authenticate")]
    SymlinkAuth,
    /// A separately sealed xattr value does not authenticate.
    #[error("xattr {}: value does not authenticate", String::from_utf8_lossy(name))]
    XattrValue {
        /// The attribute's (plaintext) name.
        name: Vec<u8>,
    },
    /// An object's xattr pack does not authenticate.
    #[error("xattr pack: packed xattrs do not authenticate")]
    XattrPackAuth,
    /// An object's xattr pack authenticates but does not parse.
    #[error("xattr pack: packed xattrs are malformed: {0}")]
    XattrPack(PackFault),
    /// The file header does not parse.
    #[error("bad file header: {0}")]
    Header(HeaderFault),
    /// A file with content blocks but no header.
    #[error("missing file header")]
    MissingHeader,
    /// A content block does not open.
    #[error("{0}")]
    Block(BlockFault),
    /// The backing file ends in a torn partial block.
    #[error("file ends in a torn partial block (truncated, or an interrupted write)")]
    TornTail,
    /// The backing file got shorter while a read ran.
    #[error("file shrank during read")]
    Shrank,
    /// Version 2: the last block does not authenticate, so no write session can start.
    #[error("last block does not authenticate: no write can start a new version (run coffer fsck)")]
    LastBlockAuth,
    /// Version 2: a block sealed in a later write session than the last block's.
    #[error(
        "block sealed in write session {session}, after the last block's {last}: the file is being \
         rewritten in place, or such a rewrite stopped half way (two versions mixed)"
    )]
    MixedVersions {
        /// The block's write session.
        session: u32,
        /// The last block's write session.
        last: LastSession,
    },
    /// An object sealed under a key epoch the vault has no key for.
    #[error(
        "sealed under a key epoch this vault does not have (its key was removed by `coffer rekey --finish`, \
         or the object comes from another vault)"
    )]
    EpochUnknown,
    /// A backing entry coffer expected to be a regular file is something else.
    #[error("{0}")]
    NotRegular(NotRegular),
}

/// The last block's write session as a read learnt it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LastSession {
    /// The last block authenticates and carries this session.
    Known(u32),
    /// The last block does not authenticate (torn or damaged): nothing can be checked
    /// against it.
    Unknown,
}

impl std::fmt::Display for LastSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LastSession::Known(s) => write!(f, "{s}"),
            LastSession::Unknown => f.write_str("(none: it does not authenticate)"),
        }
    }
}
