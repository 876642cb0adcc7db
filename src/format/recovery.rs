//! The recovery key: the master key plus the vault parameters needed without the config.
//!
//! Bytes: `config version u16 | long_name_limit u16 | flags u8 (bit 0 = reverse, bit 1 = block_sessions,
//! bit 2 = xattr_packs) |
//! name encoding u8 (0 = base64url, 1 = base32) | master key [32] | check [4]` (check = first 4 bytes of SHA-256 of the rest), written as
//! lowercase hex in dash-separated groups of 8 characters.

use sha2::{Digest, Sha256};

use super::config::{VaultParams, FLAG_BLOCK_SESSIONS, FLAG_REVERSE, FLAG_XATTR_PACKS};
use super::names::NameEncoding;
use super::{FormatError, FORMAT_VERSION};

const BODY_LEN: usize = 2 + 2 + 1 + 1 + 32;
const TOTAL_LEN: usize = BODY_LEN + 4;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Writes the recovery key for `master` and `params`.
pub fn encode(master: &[u8; 32], params: &VaultParams) -> zeroize::Zeroizing<String> {
    let mut raw = zeroize::Zeroizing::new([0u8; TOTAL_LEN]);
    raw[0..2].copy_from_slice(&FORMAT_VERSION.to_be_bytes());
    raw[2..4].copy_from_slice(&params.long_name_limit.to_be_bytes());
    raw[4] = u8::from(params.has_flag(FLAG_REVERSE))
        | u8::from(params.has_flag(FLAG_BLOCK_SESSIONS)) << 1
        | u8::from(params.has_flag(FLAG_XATTR_PACKS)) << 2;
    raw[5] = params.name_encoding.id();
    raw[6..BODY_LEN].copy_from_slice(master);
    let check = Sha256::digest(&raw[..BODY_LEN]);
    raw[BODY_LEN..].copy_from_slice(&check[..4]);
    let mut out = zeroize::Zeroizing::new(String::with_capacity(TOTAL_LEN * 2 + TOTAL_LEN / 4));
    for (i, b) in raw.iter().enumerate() {
        if i > 0 && i % 4 == 0 {
            out.push('-');
        }
        // Digit by digit into the pre-sized buffer: no temporary string, no reallocation.
        out.push(char::from(HEX_DIGITS[usize::from(b >> 4)]));
        out.push(char::from(HEX_DIGITS[usize::from(b & 15)]));
    }
    out
}

/// Parses a recovery key (whitespace and dashes ignored, any case).
pub fn decode(text: &str) -> Result<(zeroize::Zeroizing<[u8; 32]>, VaultParams), FormatError> {
    // Pre-sized and never grown (a grown Vec leaves its old copy in freed heap).
    let mut hex = zeroize::Zeroizing::new(Vec::with_capacity(TOTAL_LEN * 2));
    let mut too_long = false;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'-') {
        if hex.len() == TOTAL_LEN * 2 {
            too_long = true;
            break;
        }
        hex.push(b);
    }
    if too_long || hex.len() != TOTAL_LEN * 2 {
        return Err(FormatError::BadRecoveryKey("wrong length (expected 84 hex digits)"));
    }
    let mut raw = zeroize::Zeroizing::new([0u8; TOTAL_LEN]);
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| FormatError::BadRecoveryKey("not hex"))?;
        raw[i] = u8::from_str_radix(s, 16).map_err(|_| FormatError::BadRecoveryKey("not hex"))?;
    }
    let check = Sha256::digest(&raw[..BODY_LEN]);
    if check[..4] != raw[BODY_LEN..] {
        return Err(FormatError::BadRecoveryKey("checksum mismatch (typo?)"));
    }
    let version = u16::from_be_bytes([raw[0], raw[1]]);
    if version > FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            found: version.into(),
            supported: FORMAT_VERSION,
        });
    }
    if version != FORMAT_VERSION {
        return Err(FormatError::BadRecoveryKey("unknown format version"));
    }
    if raw[4] & !7 != 0 {
        return Err(FormatError::BadRecoveryKey("unknown flag bits"));
    }
    // Sorted, as in the config.
    let mut feature_flags = Vec::new();
    if raw[4] & 2 != 0 {
        feature_flags.push(FLAG_BLOCK_SESSIONS.to_string());
    }
    if raw[4] & 1 != 0 {
        feature_flags.push(FLAG_REVERSE.to_string());
    }
    if raw[4] & 4 != 0 {
        feature_flags.push(FLAG_XATTR_PACKS.to_string());
    }
    let name_encoding = NameEncoding::from_id(raw[5]).ok_or(FormatError::BadRecoveryKey("unknown name encoding"))?;
    let params = VaultParams {
        feature_flags,
        long_name_limit: u16::from_be_bytes([raw[2], raw[3]]),
        name_encoding,
    };
    params.validate()?;
    let mut key = zeroize::Zeroizing::new([0u8; 32]);
    key.copy_from_slice(&raw[6..BODY_LEN]);
    Ok((key, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_typo() {
        let p = VaultParams {
            feature_flags: vec![FLAG_REVERSE.into()],
            long_name_limit: 150,
            name_encoding: NameEncoding::Base32,
        };
        let s = encode(&[0x5a; 32], &p);
        let (k, q) = decode(&s).unwrap();
        assert_eq!(*k, [0x5a; 32]);
        assert_eq!(q, p);
        for flags in [
            vec![],
            vec![FLAG_BLOCK_SESSIONS.into()],
            vec![FLAG_BLOCK_SESSIONS.into(), FLAG_REVERSE.into()],
            vec![FLAG_BLOCK_SESSIONS.into(), FLAG_XATTR_PACKS.into()],
            vec![FLAG_XATTR_PACKS.into()],
        ] {
            let p = VaultParams {
                feature_flags: flags,
                ..VaultParams::default()
            };
            assert_eq!(decode(&encode(&[1; 32], &p)).unwrap().1, p);
        }
        assert_eq!(decode(&s.to_uppercase().replace('-', " ")).unwrap().1, p);
        let mut typo = s.to_string();
        let c = if typo.as_bytes()[10] == b'0' { "1" } else { "0" };
        typo.replace_range(10..11, c);
        assert!(decode(&typo).is_err());
        assert!(decode("zz").is_err());
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,120}") {
            let _ = decode(&s);
        }
    }
}
