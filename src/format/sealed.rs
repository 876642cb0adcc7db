//! Layouts of the small sealed objects: symlink targets and xattrs.
//!
//! Each sealed value is `nonce (16) | EAX ciphertext | tag (16)`; these are the AAD builders and
//! size rules. The ciphers themselves are applied by the vault layer through `crypto`.

use super::epochs::Layout;
use super::FormatError;

/// AAD of a symlink target of a layout-1 epoch (§7).
pub const SYMLINK_AAD: &[u8] = b"coffer symlink v1";
/// AAD of a symlink target of a layout-3 epoch (§15.4).
pub const SYMLINK_AAD_V3: &[u8] = b"coffer symlink v3";
/// Bytes of a layout-3 epoch's small sealed object (symlink target, xattr value, pack) that
/// its nonce starts with: the epoch ID; the other 12 are random (§15.4).
pub const NONCE_EPOCH_LEN: usize = 4;

/// AAD of a symlink target of an epoch with `layout`.
pub fn symlink_aad(layout: Layout) -> &'static [u8] {
    match layout {
        Layout::V1 => SYMLINK_AAD,
        Layout::V3 => SYMLINK_AAD_V3,
    }
}
/// Longest backing symlink target Linux stores (PATH_MAX - 1).
pub const SYMLINK_BACKING_MAX: usize = 4095;
/// Longest plaintext symlink target (PATH_MAX - 1).
pub const SYMLINK_PLAIN_MAX: usize = 4095;
/// Backing symlink target meaning "the sealed target is in the `.link` sidecar".
pub const SYMLINK_OUT_OF_LINE: &str = "coffer:link";

/// Prefix of every backing xattr coffer writes.
pub const XATTR_BACKING_PREFIX: &str = "user.coffer.";
/// The only plaintext xattr namespace coffer stores.
pub const XATTR_PLAIN_PREFIX: &[u8] = b"user.";
/// Longest plaintext xattr name (full, with `user.`) whose padded encoding fits XATTR_NAME_MAX (255).
pub const XATTR_PLAIN_NAME_MAX: usize = 159;
/// Longest plaintext xattr value (backing limit 65536 minus nonce and tag).
pub const XATTR_PLAIN_VALUE_MAX: usize = 65536 - 32;
/// SIV associated data for xattr names.
pub const XATTR_NAME_AD: &[u8] = b"coffer xattr name v1";

/// AAD of an xattr value: `"coffer xattr v1" | owner id [16] | encrypted name` (layout 1), with
/// `"coffer xattr v3"` for a layout-3 epoch's value (§15.4). The owner ID is the file ID for
/// files and the diriv for directories; the encrypted name is under the value's epoch.
pub fn xattr_value_aad(layout: Layout, owner_id: &[u8; 16], cipher_name: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(15 + 16 + cipher_name.len());
    aad.extend_from_slice(match layout {
        Layout::V1 => b"coffer xattr v1",
        Layout::V3 => b"coffer xattr v3",
    });
    aad.extend_from_slice(owner_id);
    aad.extend_from_slice(cipher_name);
    aad
}

/// Checks a plaintext xattr name is in `user.` and short enough.
pub fn check_xattr_name(name: &[u8]) -> Result<(), FormatError> {
    if !name.starts_with(XATTR_PLAIN_PREFIX) || name.len() == XATTR_PLAIN_PREFIX.len() || name.contains(&0) {
        return Err(FormatError::InvalidName);
    }
    if name.len() > XATTR_PLAIN_NAME_MAX {
        return Err(FormatError::NameTooLong);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_xattr_name_fits_backing_limit() {
        // Padded to the next multiple of 16 (at least one byte of padding), plus the SIV tag.
        let padded = |n: usize| (n / 16 + 1) * 16;
        let enc = super::super::names::encode(&[0u8; 16 + 160][..16 + padded(XATTR_PLAIN_NAME_MAX)]);
        assert!(XATTR_BACKING_PREFIX.len() + enc.len() <= 255);
        let enc = super::super::names::encode(&[0u8; 16 + 176][..16 + padded(XATTR_PLAIN_NAME_MAX + 1)]);
        assert!(XATTR_BACKING_PREFIX.len() + enc.len() > 255);
    }

    #[test]
    fn layout_3_aads_differ_from_layout_1() {
        assert_eq!(symlink_aad(Layout::V3), b"coffer symlink v3");
        assert_eq!(symlink_aad(Layout::V1), b"coffer symlink v1");
        let (owner, name) = ([9u8; 16], [5u8; 32]);
        let v3 = xattr_value_aad(Layout::V3, &owner, &name);
        assert_eq!(&v3[..15], b"coffer xattr v3");
        assert_eq!(&v3[15..31], &owner);
        assert_eq!(&v3[31..], &name);
        assert_eq!(&xattr_value_aad(Layout::V1, &owner, &name)[..15], b"coffer xattr v1");
    }

    #[test]
    fn xattr_names() {
        assert!(check_xattr_name(b"user.a").is_ok());
        assert!(check_xattr_name(b"user.").is_err());
        assert!(check_xattr_name(b"trusted.a").is_err());
        assert!(check_xattr_name(b"security.selinux").is_err());
    }
}
