//! Layouts of the small sealed objects: symlink targets and xattrs.
//!
//! Each sealed value is `nonce (16) | EAX ciphertext | tag (16)`; these are the AAD builders and
//! size rules. The ciphers themselves are applied by the vault layer through `crypto`.

use super::FormatError;

/// AAD of a symlink target.
pub const SYMLINK_AAD: &[u8] = b"coffer symlink v1";
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

/// AAD of an xattr value: `"coffer xattr v1" | owner id [16] | encrypted name`.
/// The owner ID is the file ID for files and the diriv for directories.
pub fn xattr_value_aad(owner_id: &[u8; 16], cipher_name: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(15 + 16 + cipher_name.len());
    aad.extend_from_slice(b"coffer xattr v1");
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
    fn xattr_names() {
        assert!(check_xattr_name(b"user.a").is_ok());
        assert!(check_xattr_name(b"user.").is_err());
        assert!(check_xattr_name(b"trusted.a").is_err());
        assert!(check_xattr_name(b"security.selinux").is_err());
    }
}
