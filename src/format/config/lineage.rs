//! The lineage of a config-version-3 vault (docs/FORMAT.md §16.2): for each rekey, the new
//! epoch's public signing key signed by the epoch before it. Covered by the config MAC; what
//! it proves does not rest on the MAC: a machine follows the signatures from the epoch it
//! pinned.

use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use base64::Engine;
use serde::{Deserialize, Serialize};

use crate::format::epochs::{EpochId, VaultId};
use crate::format::FormatError;

/// Most links a config keeps (the oldest go first): a machine that last saw the vault more
/// than this many rekeys ago is asked to accept the config.
pub const MAX_LINKS: usize = 64;
/// Length of an epoch's public signing key.
pub const LINK_KEY_LEN: usize = 32;
/// Length of a link's signature.
pub const LINK_SIG_LEN: usize = 64;

/// One link as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkEntry {
    /// The signing epoch's ID (8 hex digits).
    pub from: String,
    /// The signed epoch's ID.
    pub to: String,
    /// The signed epoch's sequence number.
    pub seq: u32,
    /// The signed epoch's public signing key (base64).
    pub key: String,
    /// The signature (base64).
    pub sig: String,
}

/// A checked link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    /// The signing epoch.
    pub from: EpochId,
    /// The signed epoch.
    pub to: EpochId,
    /// The signed epoch's sequence number.
    pub seq: u32,
    /// The signed epoch's public signing key.
    pub key: [u8; LINK_KEY_LEN],
    /// `from`'s signature of [`link_message`].
    pub sig: [u8; LINK_SIG_LEN],
}

fn bad(why: impl Into<String>) -> FormatError {
    FormatError::BadValue {
        field: "lineage",
        why: why.into(),
    }
}

fn fixed<const N: usize>(s: &str) -> Result<[u8; N], FormatError> {
    let v = B64.decode(s).map_err(|_| bad("not base64"))?;
    v.as_slice()
        .try_into()
        .map_err(|_| bad(format!("{} bytes, need {N}", v.len())))
}

impl LinkEntry {
    /// The checked link.
    pub fn check(&self) -> Result<Link, FormatError> {
        let id = |s: &str| EpochId::from_hex(s).ok_or_else(|| bad(format!("`{s}` is not an epoch ID")));
        Ok(Link {
            from: id(&self.from)?,
            to: id(&self.to)?,
            seq: self.seq,
            key: fixed(&self.key)?,
            sig: fixed(&self.sig)?,
        })
    }
}

impl Link {
    /// As stored.
    pub fn to_entry(&self) -> LinkEntry {
        LinkEntry {
            from: self.from.to_hex(),
            to: self.to.to_hex(),
            seq: self.seq,
            key: B64.encode(self.key),
            sig: B64.encode(self.sig),
        }
    }
}

/// What the epoch `from` signs for its successor: `"coffer lineage\0" | vault_id[8] | from[4]
/// | to[4] | seq u32 | key[32]`.
pub fn link_message(vault: VaultId, from: EpochId, to: EpochId, seq: u32, key: &[u8; LINK_KEY_LEN]) -> Vec<u8> {
    let mut m = b"coffer lineage\0".to_vec();
    m.extend_from_slice(&vault.0);
    m.extend_from_slice(&from.0);
    m.extend_from_slice(&to.0);
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(key);
    m
}

/// The checked links of a config (at most [`MAX_LINKS`]).
pub fn check_links(entries: &[LinkEntry]) -> Result<Vec<Link>, FormatError> {
    if entries.len() > MAX_LINKS {
        return Err(bad(format!("{} links, at most {MAX_LINKS}", entries.len())));
    }
    entries.iter().map(LinkEntry::check).collect()
}

/// Appends `nlinks u8 | (from[4] | to[4] | seq u32 | key[32] | sig[64])*` to the canonical
/// encoding.
pub fn canonical_into(links: &[Link], out: &mut Vec<u8>) {
    out.push(links.len().min(MAX_LINKS) as u8);
    for l in links.iter().take(MAX_LINKS) {
        out.extend_from_slice(&l.from.0);
        out.extend_from_slice(&l.to.0);
        out.extend_from_slice(&l.seq.to_be_bytes());
        out.extend_from_slice(&l.key);
        out.extend_from_slice(&l.sig);
    }
}
