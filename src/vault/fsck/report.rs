//! What fsck reports ([`FsckReport`], one [`Damage`] per finding) and how it runs ([`FsckOptions`]).

use serde::Serialize;

/// What is wrong with one item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum DamageKind {
    /// Content blocks fail authentication (see `blocks`).
    Blocks,
    /// The file header is missing or invalid.
    Header,
    /// A backing name does not decrypt (or its long-name sidecar is missing or wrong).
    Name,
    /// A directory has no (or a bad) coffer.diriv.
    Diriv,
    /// A long-name or link sidecar whose entry is gone.
    OrphanSidecar,
    /// A symlink target does not authenticate.
    Symlink,
    /// An xattr value does not authenticate.
    Xattr,
    /// A coffer temporary file left by an interrupted operation.
    StrayTemp,
    /// A backing entry coffer does not know (not a sync-client file).
    Unknown,
    /// The item could not be read at all (I/O error).
    Unreadable,
    /// Blocks authenticate but are newer than the file's last block (versions 2 and 3): two
    /// versions mixed (see `blocks`).
    MixedVersions,
    /// The last block does not authenticate while a block before it does (versions 2 and 3),
    /// so nothing tells whether the other blocks belong to one version; reads serve them
    /// unchecked. Reported beside the damaged block; `--repair` cannot restore the order.
    /// JSON: `order_not_checkable`.
    OrderNotCheckable,
    /// A sync client's conflict copy of `coffer.conf` under the vault's newest key epoch (two
    /// replicas changed its key slots at once): `coffer key merge` merges it. JSON:
    /// `config_copy`.
    ConfigCopy,
    /// The last block carries the highest write session (versions 2 and 3): later versions of
    /// the file cannot be told apart. A copy of the file gets a new file ID and starts again.
    /// JSON: `sessions_exhausted`.
    SessionsExhausted,
}

/// One finding.
#[derive(Debug, Clone, Serialize)]
pub struct Damage {
    /// Plaintext path, when the names up to it decrypt.
    pub plain_path: Option<String>,
    /// Backing path relative to CIPHERDIR.
    pub cipher_path: String,
    /// What is wrong.
    pub kind: DamageKind,
    /// Damaged block numbers (for `Blocks`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocks: Vec<u64>,
    /// Human detail.
    pub detail: String,
    /// What `--repair` did about it, if anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired: Option<String>,
}

/// The whole report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FsckReport {
    /// Regular files checked.
    pub files: u64,
    /// Directories checked.
    pub dirs: u64,
    /// Symlinks checked.
    pub symlinks: u64,
    /// Findings.
    pub damage: Vec<Damage>,
}

impl FsckReport {
    /// Whether anything unrepaired was found.
    pub fn is_clean(&self) -> bool {
        self.damage.iter().all(|d| d.repaired.is_some())
    }
}

/// How fsck runs.
#[derive(Debug, Clone, Copy)]
pub struct FsckOptions {
    /// Fix the safe cases.
    pub repair: bool,
    /// `--repair` removes coffer temporaries only when they are at least this old: younger ones
    /// may belong to an operation still running. Zero when the caller holds the mount lock.
    pub min_temp_age: std::time::Duration,
}

impl FsckOptions {
    /// Check only, or repair leaving temporaries younger than a minute alone.
    pub fn new(repair: bool) -> Self {
        FsckOptions {
            repair,
            min_temp_age: std::time::Duration::from_secs(60),
        }
    }
}
