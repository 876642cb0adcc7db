//! Plaintext name rules, base64url name encoding and the long-name scheme.
//!
//! A name is encrypted with AES-SIV (AD = parent diriv) and written as unpadded base64url
//! (or, for case-insensitive backends, unpadded upper-case base32).
//! Encoded names longer than the vault's long-name limit are stored as `HASH.long`
//! (HASH = SHA-256 of the encoded name in the same encoding: 43 chars base64url, 52 base32)
//! with the encoded name in `HASH.name`.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine;
use sha2::{Digest, Sha256};

use super::FormatError;

/// Longest plaintext name (Linux NAME_MAX).
pub const NAME_MAX: usize = 255;
/// Room kept for a sync client's conflict marker (e.g. `.sync-conflict-20261125-101010-ABCDEFG`
/// is 38 bytes; Nextcloud's ` (conflicted copy 2026-11-25 101010)` is 36).
pub const CONFLICT_MARKER_ROOM: usize = 45;
/// Longest suffix coffer appends to a stem (`.link`, `.long`, `.name`).
pub const LONGEST_SUFFIX: usize = 5;
/// Highest long-name limit: stem + suffix + marker must stay within NAME_MAX.
pub const MAX_LONG_NAME_LIMIT: u16 = (NAME_MAX - CONFLICT_MARKER_ROOM - LONGEST_SUFFIX) as u16;
/// Lowest long-name limit for base64url: the long form itself (43 + 5 bytes) must fit under it.
pub const MIN_LONG_NAME_LIMIT: u16 = (HASH_LEN + LONGEST_SUFFIX) as u16;
/// Default long-name limit for new vaults (below the maximum to leave slack for longer markers).
pub const DEFAULT_LONG_NAME_LIMIT: u16 = 200;
/// Length of the base64url SHA-256 hash used by long names.
pub const HASH_LEN: usize = 43;
/// Length of the base32 SHA-256 hash used by long names.
pub const HASH_LEN_BASE32: usize = 52;

/// How encrypted entry names are spelled in the backing directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum NameEncoding {
    /// Unpadded base64url (RFC 4648 §5): the default, shortest.
    #[default]
    Base64Url,
    /// Unpadded upper-case base32 (RFC 4648 §6): for case-insensitive backends.
    Base32,
}

impl NameEncoding {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            NameEncoding::Base64Url => "base64url",
            NameEncoding::Base32 => "base32",
        }
    }

    /// Parses the config spelling.
    pub fn from_name(s: &str) -> Option<Self> {
        match s {
            "base64url" => Some(NameEncoding::Base64Url),
            "base32" => Some(NameEncoding::Base32),
            _ => None,
        }
    }

    /// Id used by the recovery key.
    pub fn id(self) -> u8 {
        match self {
            NameEncoding::Base64Url => 0,
            NameEncoding::Base32 => 1,
        }
    }

    /// Inverse of [`id`](Self::id).
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(NameEncoding::Base64Url),
            1 => Some(NameEncoding::Base32),
            _ => None,
        }
    }

    /// Encodes raw bytes.
    pub fn encode(self, raw: &[u8]) -> String {
        match self {
            NameEncoding::Base64Url => encode(raw),
            NameEncoding::Base32 => data_encoding::BASE32_NOPAD.encode(raw),
        }
    }

    /// Decodes, refusing anything not in canonical form.
    pub fn decode(self, encoded: &[u8]) -> Result<Vec<u8>, FormatError> {
        match self {
            NameEncoding::Base64Url => decode(encoded),
            NameEncoding::Base32 => {
                if encoded.is_empty() || !encoded.iter().all(|&b| self.is_char(b)) {
                    return Err(FormatError::BadEncoding);
                }
                let raw = data_encoding::BASE32_NOPAD
                    .decode(encoded)
                    .map_err(|_| FormatError::BadEncoding)?;
                if data_encoding::BASE32_NOPAD.encode(&raw).as_bytes() != encoded {
                    return Err(FormatError::BadEncoding);
                }
                Ok(raw)
            }
        }
    }

    /// Whether `b` belongs to the alphabet.
    pub fn is_char(self, b: u8) -> bool {
        match self {
            NameEncoding::Base64Url => is_b64url_char(b),
            NameEncoding::Base32 => b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b),
        }
    }

    /// Length of a long-name hash stem.
    pub fn hash_len(self) -> usize {
        match self {
            NameEncoding::Base64Url => HASH_LEN,
            NameEncoding::Base32 => HASH_LEN_BASE32,
        }
    }

    /// Lowest allowed long-name limit (the long form `HASH.long` must fit under it).
    pub fn min_long_name_limit(self) -> u16 {
        (self.hash_len() + LONGEST_SUFFIX) as u16
    }

    /// The hash stem of a long name: SHA-256 of the encoded name, in this encoding.
    pub fn long_hash(self, encoded: &str) -> String {
        self.encode(&Sha256::digest(encoded.as_bytes()))
    }

    /// Checks that a sidecar's content (the full encoded name) matches the hash in its name.
    pub fn check_sidecar(self, hash: &str, content: &[u8]) -> Result<String, FormatError> {
        let text = std::str::from_utf8(content).map_err(|_| FormatError::BadEncoding)?;
        self.decode(text.as_bytes())?;
        if self.long_hash(text) != hash {
            return Err(FormatError::BadEncoding);
        }
        Ok(text.to_string())
    }
}

/// Checks a plaintext name: not empty, not `.` or `..`, no `/` or NUL, at most 255 bytes.
pub fn check_plain_name(name: &[u8]) -> Result<(), FormatError> {
    if name.is_empty() || name == b"." || name == b".." || name.contains(&b'/') || name.contains(&0) {
        return Err(FormatError::InvalidName);
    }
    if name.len() > NAME_MAX {
        return Err(FormatError::NameTooLong);
    }
    Ok(())
}

/// base64url (no padding) of an encrypted name.
pub fn encode(cipher_name: &[u8]) -> String {
    B64URL.encode(cipher_name)
}

/// Inverse of [`encode`]; refuses anything that is not canonical unpadded base64url.
pub fn decode(encoded: &[u8]) -> Result<Vec<u8>, FormatError> {
    if encoded.is_empty() || !encoded.iter().all(|&b| is_b64url_char(b)) {
        return Err(FormatError::BadEncoding);
    }
    let raw = B64URL.decode(encoded).map_err(|_| FormatError::BadEncoding)?;
    // Refuse non-canonical encodings (trailing bits set) so one name has one spelling.
    if B64URL.encode(&raw).as_bytes() != encoded {
        return Err(FormatError::BadEncoding);
    }
    Ok(raw)
}

/// Whether `b` is in the base64url alphabet.
pub fn is_b64url_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Whether an encoded name needs the long-name scheme under `limit`.
pub fn is_long(encoded: &str, limit: u16) -> bool {
    encoded.len() > usize::from(limit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name_rules() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
            assert!(check_plain_name(bad).is_err());
        }
        assert!(check_plain_name(&[b'x'; 255]).is_ok());
        assert!(matches!(check_plain_name(&[b'x'; 256]), Err(FormatError::NameTooLong)));
        assert!(check_plain_name(b"\xff\xfe non-utf8").is_ok());
    }

    #[test]
    fn encoding_is_canonical() {
        for n in 0..80 {
            let raw: Vec<u8> = (0..n).map(|i| (i * 37) as u8).collect();
            let e = encode(&raw);
            if n > 0 {
                assert_eq!(decode(e.as_bytes()).unwrap(), raw);
            }
        }
        assert!(decode(b"AB=").is_err());
        assert!(decode(b"AB+").is_err());
        assert!(decode(b"AB").is_err() || decode(b"AB").unwrap().len() == 1);
        // "AB" has nonzero trailing bits; "AA" is canonical.
        assert!(decode(b"AB").is_err());
        assert!(decode(b"AA").is_ok());
    }

    #[test]
    fn limits_leave_room_for_conflict_markers() {
        let max_name = usize::from(MAX_LONG_NAME_LIMIT) + LONGEST_SUFFIX + CONFLICT_MARKER_ROOM;
        assert!(max_name <= NAME_MAX);
        assert_eq!(NameEncoding::Base64Url.long_hash("abc").len(), HASH_LEN);
        assert_eq!(NameEncoding::Base32.long_hash("abc").len(), HASH_LEN_BASE32);
        assert!(usize::from(NameEncoding::Base32.min_long_name_limit()) <= usize::from(MAX_LONG_NAME_LIMIT));
        const { assert!(DEFAULT_LONG_NAME_LIMIT <= MAX_LONG_NAME_LIMIT) };
        const { assert!(DEFAULT_LONG_NAME_LIMIT >= MIN_LONG_NAME_LIMIT) };
    }

    #[test]
    fn sidecar_must_match_hash() {
        for e in [NameEncoding::Base64Url, NameEncoding::Base32] {
            let enc = e.encode(&[7u8; 200]);
            let h = e.long_hash(&enc);
            assert_eq!(e.check_sidecar(&h, enc.as_bytes()).unwrap(), enc);
            let other = e.encode(&[8u8; 200]);
            assert!(e.check_sidecar(&h, other.as_bytes()).is_err());
            assert!(e.check_sidecar(&h, b"\xff").is_err());
        }
    }

    #[test]
    fn base32_is_single_case_and_canonical() {
        let e = NameEncoding::Base32;
        for n in 1..60 {
            let raw: Vec<u8> = (0..n).map(|i| (i * 91 + 7) as u8).collect();
            let s = e.encode(&raw);
            assert!(s.bytes().all(|b| e.is_char(b)), "{s}");
            assert_eq!(e.decode(s.as_bytes()).unwrap(), raw);
            assert!(e.decode(s.to_lowercase().as_bytes()).is_err() || s.to_lowercase() == s);
        }
    }

    proptest::proptest! {
        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            let _ = decode(&bytes);
            let _ = NameEncoding::Base32.decode(&bytes);
            let _ = NameEncoding::Base64Url.check_sidecar("x", &bytes);
            let _ = NameEncoding::Base32.check_sidecar("x", &bytes);
        }
    }
}
