//! Sealed symlink targets in reverse mode: the same layout as forward mode (inline base64url,
//! or `coffer:link` plus an `ENTRY.link` sidecar when too long), with a nonce from a PRF over
//! (link ID, target) instead of a random one.

use crate::format::names;
use crate::format::sealed::{SYMLINK_AAD, SYMLINK_BACKING_MAX, SYMLINK_OUT_OF_LINE};

use super::super::error::{IoContext, Result};
use super::listing::RDir;
use super::{join_rel, rel_path, ReverseVault};

/// How a plain symlink looks in the vault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherLink {
    /// The backing symlink's target: the encoded sealed target, or `coffer:link`.
    pub backing: Vec<u8>,
    /// The content of the `ENTRY.link` sidecar when the target is out of line.
    pub sidecar: Option<Vec<u8>>,
}

impl ReverseVault {
    /// Seals the target of plain symlink `plain` in `dir`.
    pub fn cipher_link(&self, dir: &RDir, plain: &[u8]) -> Result<CipherLink> {
        let rel = join_rel(&dir.rel, plain);
        let target = dir.fd.readlink(plain).at(rel_path(&rel))?;
        let id = self.prf().file_id(&rel);
        let nonce = self.prf().symlink_nonce(&id, &target);
        let sealed = self
            .keys()
            .symlinks
            .seal_with_nonce_to_vec(&nonce, SYMLINK_AAD, &target);
        let encoded = names::encode(&sealed);
        Ok(if encoded.len() <= SYMLINK_BACKING_MAX {
            CipherLink {
                backing: encoded.into_bytes(),
                sidecar: None,
            }
        } else {
            CipherLink {
                backing: SYMLINK_OUT_OF_LINE.as_bytes().to_vec(),
                sidecar: Some(sealed),
            }
        })
    }
}
