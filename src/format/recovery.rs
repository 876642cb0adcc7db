//! The recovery key: the master key (config version 1) or the newest epoch's key (config
//! version 2), with the vault parameters needed without the config.
//!
//! Layout 1 (config version 1): `config version u16 | long_name_limit u16 | flags u8 (bit 0 =
//! reverse, bit 1 = block_sessions, bit 2 = xattr_packs) | name encoding u8 (0 = base64url,
//! 1 = base32) | master key [32] | check [4]`, 42 bytes.
//! Layout 2 (config version 2, docs/FORMAT.md §15.6): the same first 6 bytes, then `vault ID
//! [8] | newest epoch ID [4] | its sequence number u32 | its key [32] | check [4]`, 58 bytes.
//! The check is the first 4 bytes of SHA-256 of the rest. Written as lowercase hex in
//! dash-separated groups of 8 characters.

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::config::{VaultParams, FLAG_BLOCK_SESSIONS, FLAG_REVERSE, FLAG_XATTR_PACKS};
use super::epochs::{EpochId, VaultId};
use super::names::NameEncoding;
use super::{FormatError, CONFIG_V1, CONFIG_V2, FORMAT_VERSION};

const PARAMS_LEN: usize = 2 + 2 + 1 + 1;
const V1_BODY_LEN: usize = PARAMS_LEN + 32;
const V2_BODY_LEN: usize = PARAMS_LEN + 8 + 4 + 4 + 32;
const CHECK_LEN: usize = 4;
const MAX_LEN: usize = V2_BODY_LEN + CHECK_LEN;
const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// The newest epoch a layout-2 recovery key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewestEpoch {
    /// The vault's ID.
    pub vault: VaultId,
    /// The epoch's ID.
    pub id: EpochId,
    /// The epoch's sequence number.
    pub seq: u32,
}

/// A parsed recovery key.
pub struct Recovery {
    /// The master key (layout 1) or the newest epoch's key (layout 2).
    pub key: Zeroizing<[u8; 32]>,
    /// The vault parameters it carries.
    pub params: VaultParams,
    /// Layout 2: the vault and the epoch the key belongs to.
    pub newest: Option<NewestEpoch>,
}

fn params_bytes(params: &VaultParams, version: u16, out: &mut [u8]) {
    out[0..2].copy_from_slice(&version.to_be_bytes());
    out[2..4].copy_from_slice(&params.long_name_limit.to_be_bytes());
    out[4] = u8::from(params.has_flag(FLAG_REVERSE))
        | u8::from(params.has_flag(FLAG_BLOCK_SESSIONS)) << 1
        | u8::from(params.has_flag(FLAG_XATTR_PACKS)) << 2;
    out[5] = params.name_encoding.id();
}

/// Writes `raw` (body then room for the check) as dashed lowercase hex, the check filled in.
fn finish(raw: &mut [u8]) -> Zeroizing<String> {
    let body = raw.len() - CHECK_LEN;
    let check = Sha256::digest(&raw[..body]);
    raw[body..].copy_from_slice(&check[..CHECK_LEN]);
    let mut out = Zeroizing::new(String::with_capacity(raw.len() * 2 + raw.len() / 4));
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

/// Writes the layout-1 recovery key for `master` and `params` (config version 1).
pub fn encode(master: &[u8; 32], params: &VaultParams) -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; V1_BODY_LEN + CHECK_LEN]);
    params_bytes(params, CONFIG_V1, &mut raw[..PARAMS_LEN]);
    raw[PARAMS_LEN..V1_BODY_LEN].copy_from_slice(master);
    finish(&mut raw[..])
}

/// Writes the layout-2 recovery key for the newest epoch's `key` (config version 2).
pub fn encode_v2(key: &[u8; 32], params: &VaultParams, newest: NewestEpoch) -> Zeroizing<String> {
    let mut raw = Zeroizing::new([0u8; V2_BODY_LEN + CHECK_LEN]);
    params_bytes(params, CONFIG_V2, &mut raw[..PARAMS_LEN]);
    let mut at = PARAMS_LEN;
    raw[at..at + 8].copy_from_slice(&newest.vault.0);
    at += 8;
    raw[at..at + 4].copy_from_slice(&newest.id.0);
    at += 4;
    raw[at..at + 4].copy_from_slice(&newest.seq.to_be_bytes());
    at += 4;
    raw[at..at + 32].copy_from_slice(key);
    finish(&mut raw[..])
}

/// Parses a recovery key of either layout (whitespace and dashes ignored, any case).
pub fn decode(text: &str) -> Result<Recovery, FormatError> {
    // Pre-sized and never grown (a grown Vec leaves its old copy in freed heap).
    let mut hex = Zeroizing::new(Vec::with_capacity(MAX_LEN * 2));
    let mut too_long = false;
    for b in text.bytes().filter(|b| !b.is_ascii_whitespace() && *b != b'-') {
        if hex.len() == MAX_LEN * 2 {
            too_long = true;
            break;
        }
        hex.push(b);
    }
    let len = hex.len() / 2;
    if too_long || hex.len() % 2 != 0 || (len != V1_BODY_LEN + CHECK_LEN && len != MAX_LEN) {
        return Err(FormatError::BadRecoveryKey(
            "wrong length (expected 84 hex digits, or 116 for config version 2)",
        ));
    }
    let mut raw = Zeroizing::new([0u8; MAX_LEN]);
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).map_err(|_| FormatError::BadRecoveryKey("not hex"))?;
        raw[i] = u8::from_str_radix(s, 16).map_err(|_| FormatError::BadRecoveryKey("not hex"))?;
    }
    let body = len - CHECK_LEN;
    let check = Sha256::digest(&raw[..body]);
    if check[..CHECK_LEN] != raw[body..len] {
        return Err(FormatError::BadRecoveryKey("checksum mismatch (typo?)"));
    }
    let version = u16::from_be_bytes([raw[0], raw[1]]);
    if version > FORMAT_VERSION {
        return Err(FormatError::NewerVersion {
            found: version.into(),
            supported: FORMAT_VERSION,
        });
    }
    let layout_len = match version {
        CONFIG_V1 => V1_BODY_LEN,
        CONFIG_V2 => V2_BODY_LEN,
        _ => return Err(FormatError::BadRecoveryKey("unknown format version")),
    };
    if body != layout_len {
        return Err(FormatError::BadRecoveryKey("wrong length for its format version"));
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
    let mut key = Zeroizing::new([0u8; 32]);
    let newest = if version == CONFIG_V2 {
        let mut vault = [0u8; 8];
        vault.copy_from_slice(&raw[PARAMS_LEN..PARAMS_LEN + 8]);
        let mut id = [0u8; 4];
        id.copy_from_slice(&raw[PARAMS_LEN + 8..PARAMS_LEN + 12]);
        let seq = u32::from_be_bytes([
            raw[PARAMS_LEN + 12],
            raw[PARAMS_LEN + 13],
            raw[PARAMS_LEN + 14],
            raw[PARAMS_LEN + 15],
        ]);
        key.copy_from_slice(&raw[PARAMS_LEN + 16..V2_BODY_LEN]);
        Some(NewestEpoch {
            vault: VaultId(vault),
            id: EpochId(id),
            seq,
        })
    } else {
        key.copy_from_slice(&raw[PARAMS_LEN..V1_BODY_LEN]);
        None
    };
    Ok(Recovery { key, params, newest })
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
        let r = decode(&s).unwrap();
        assert_eq!(*r.key, [0x5a; 32]);
        assert_eq!(r.params, p);
        assert!(r.newest.is_none());
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
            assert_eq!(decode(&encode(&[1; 32], &p)).unwrap().params, p);
        }
        assert_eq!(decode(&s.to_uppercase().replace('-', " ")).unwrap().params, p);
        let mut typo = s.to_string();
        let c = if typo.as_bytes()[10] == b'0' { "1" } else { "0" };
        typo.replace_range(10..11, c);
        assert!(decode(&typo).is_err());
        assert!(decode("zz").is_err());
    }

    #[test]
    fn layout_2_round_trips_and_is_pinned() {
        let p = VaultParams {
            feature_flags: vec![],
            ..VaultParams::default()
        };
        let newest = NewestEpoch {
            vault: VaultId([1, 2, 3, 4, 5, 6, 7, 8]),
            id: EpochId([0xe0, 0xe1, 0xe2, 0xe3]),
            seq: 5,
        };
        let s = encode_v2(&[0x11; 32], &p, newest);
        assert_eq!(s.len(), 116 + 14, "{}", *s);
        let r = decode(&s).unwrap();
        assert_eq!(*r.key, [0x11; 32]);
        assert_eq!(r.params, p);
        assert_eq!(r.newest, Some(newest));
        // The check: first 4 bytes of SHA-256 of the 54-byte body (Python's hashlib).
        assert_eq!(&s[..], V2_PINNED);
        // A layout-1 key stays a layout-1 key.
        assert!(decode(&encode(&[0x11; 32], &p)).unwrap().newest.is_none());
        // The version field must match the length.
        let mut wrong = s.replace('-', "");
        wrong.replace_range(0..4, "0001");
        assert!(decode(&wrong).is_err());
    }

    const V2_PINNED: &str = "000200c8-00000102-03040506-0708e0e1-e2e30000-00051111-11111111-11111111-11111111-11111111-11111111-11111111-11111111-1111cd7d-5321";

    proptest::proptest! {
        #[test]
        fn never_panics(s in ".{0,120}") {
            let _ = decode(&s);
        }
    }
}
