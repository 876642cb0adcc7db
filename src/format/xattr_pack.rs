//! The packed xattr layout (docs/FORMAT.md §8.1): many small xattrs of one object sealed
//! together in one backing xattr, so an object holds as many as a local file system allows
//! (each separately sealed xattr costs ~110 bytes more than its plaintext on ext4).
//!
//! Plaintext: entries `name len u8 | name | value len u16 BE | value`, then zero bytes up to a
//! multiple of [`PACK_PAD`] (a zero name length ends the entries: names are never empty).

use super::epochs::Layout;

/// Backing name of a layout-1 epoch's pack (base64url names of single xattrs are at least 43
/// characters, so it never collides with one).
pub const PACK_BACKING_NAME: &str = "user.coffer.pack";
/// Backing name of a layout-3 epoch's pack (§15.4; not a base64url length either, so an older
/// coffer skips it).
pub const PACK3_BACKING_NAME: &str = "user.coffer.pack3";
/// AAD prefix of a layout-1 epoch's sealed pack: `"coffer xattr pack v1" | owner id [16]`.
pub const PACK_AD: &[u8] = b"coffer xattr pack v1";
/// AAD prefix of a layout-3 epoch's sealed pack: `"coffer xattr pack v3" | owner id [16]`.
pub const PACK3_AD: &[u8] = b"coffer xattr pack v3";

/// Backing name of the pack of an epoch with `layout`.
pub fn pack_backing_name(layout: Layout) -> &'static str {
    match layout {
        Layout::V1 => PACK_BACKING_NAME,
        Layout::V3 => PACK3_BACKING_NAME,
    }
}
/// Longest value kept in the pack; longer ones are sealed on their own.
pub const PACK_VALUE_MAX: usize = 255;
/// Largest pack plaintext (the sealed pack then fits one ext4 4 KiB xattr block with room to
/// spare); past it new xattrs are sealed on their own.
pub const PACK_PLAIN_MAX: usize = 3072;
/// Separately sealed xattrs an object holds before new small ones go to the pack (old
/// objects and objects with few xattrs keep the one-xattr-per-name layout).
pub const PACK_AFTER: usize = 4;
/// The plaintext is zero-padded to a multiple of this, hiding exact name and value lengths.
pub const PACK_PAD: usize = 32;

/// One plaintext xattr: full name (`user.…`) and value.
pub type Entry = (Vec<u8>, Vec<u8>);

/// AAD of the pack (of an epoch with `layout`) of the object whose owner ID is `owner`.
pub fn pack_aad(layout: Layout, owner: &[u8; 16]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(PACK_AD.len() + 16);
    aad.extend_from_slice(match layout {
        Layout::V1 => PACK_AD,
        Layout::V3 => PACK3_AD,
    });
    aad.extend_from_slice(owner);
    aad
}

/// Length of the padded plaintext of `entries`.
pub fn encoded_len(entries: &[Entry]) -> usize {
    let raw: usize = entries.iter().map(|(n, v)| 1 + n.len() + 2 + v.len()).sum();
    raw.div_ceil(PACK_PAD).max(1) * PACK_PAD
}

/// Whether an entry may go into a pack at all.
pub fn packable(name: &[u8], value: &[u8]) -> bool {
    !name.is_empty() && name.len() <= usize::from(u8::MAX) && value.len() <= PACK_VALUE_MAX
}

/// Serializes `entries` (each [`packable`]).
pub fn encode(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(encoded_len(entries));
    for (n, v) in entries {
        out.push(n.len() as u8);
        out.extend_from_slice(n);
        out.extend_from_slice(&(v.len() as u16).to_be_bytes());
        out.extend_from_slice(v);
    }
    out.resize(encoded_len(entries), 0);
    out
}

/// Why a pack plaintext does not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PackFault {
    /// A nonzero byte after the entries.
    #[error("nonzero padding")]
    NonzeroPadding,
    /// An entry's name runs past the end.
    #[error("truncated name")]
    TruncatedName,
    /// An entry's value length runs past the end.
    #[error("truncated value length")]
    TruncatedValueLength,
    /// An entry's value runs past the end.
    #[error("truncated value")]
    TruncatedValue,
    /// Two entries with one name.
    #[error("a name given twice")]
    NameTwice,
}

/// Parses a pack plaintext; refuses truncated entries, a nonzero byte in the padding and a
/// name given twice.
pub fn decode(plain: &[u8]) -> Result<Vec<Entry>, PackFault> {
    let mut out: Vec<Entry> = Vec::new();
    let mut at = 0;
    while at < plain.len() {
        let name_len = usize::from(plain[at]);
        if name_len == 0 {
            if plain[at..].iter().any(|&b| b != 0) {
                return Err(PackFault::NonzeroPadding);
            }
            break;
        }
        let name = plain.get(at + 1..at + 1 + name_len).ok_or(PackFault::TruncatedName)?;
        let len_at = at + 1 + name_len;
        let len = plain.get(len_at..len_at + 2).ok_or(PackFault::TruncatedValueLength)?;
        let value_len = usize::from(u16::from_be_bytes([len[0], len[1]]));
        let value = plain
            .get(len_at + 2..len_at + 2 + value_len)
            .ok_or(PackFault::TruncatedValue)?;
        if out.iter().any(|(n, _)| n == name) {
            return Err(PackFault::NameTwice);
        }
        out.push((name.to_vec(), value.to_vec()));
        at = len_at + 2 + value_len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(n: usize) -> Vec<Entry> {
        (0..n)
            .map(|i| {
                (
                    format!("user.attribute_{i:02}").into_bytes(),
                    format!("value_{i:02}").into_bytes(),
                )
            })
            .collect()
    }

    #[test]
    fn round_trips_and_pads() {
        for n in 0..120 {
            let e = entries(n);
            let enc = encode(&e);
            assert_eq!(enc.len() % PACK_PAD, 0);
            assert_eq!(enc.len(), encoded_len(&e));
            assert_eq!(decode(&enc).unwrap(), e);
        }
        let e = vec![
            (b"user.e".to_vec(), Vec::new()),
            (b"user.big".to_vec(), vec![7u8; PACK_VALUE_MAX]),
        ];
        assert_eq!(decode(&encode(&e)).unwrap(), e);
    }

    #[test]
    fn a_hundred_small_xattrs_fit() {
        assert!(encoded_len(&entries(100)) <= PACK_PLAIN_MAX);
    }

    #[test]
    fn refuses_malformed_packs() {
        let enc = encode(&entries(3));
        let used = 3 * (1 + 17 + 2 + 8);
        assert_eq!(decode(&enc[..used - 1]), Err(PackFault::TruncatedValue));
        assert_eq!(decode(&enc[..20]), Err(PackFault::TruncatedValue));
        assert_eq!(decode(&enc[..19]), Err(PackFault::TruncatedValueLength));
        assert_eq!(decode(&enc[..5]), Err(PackFault::TruncatedName));
        let mut padded = enc.clone();
        *padded.last_mut().unwrap() = 1;
        assert_eq!(decode(&padded), Err(PackFault::NonzeroPadding));
        let mut twice = encode(&entries(1));
        twice.truncate(28);
        twice.extend_from_slice(&twice.clone());
        assert_eq!(decode(&twice), Err(PackFault::NameTwice));
    }
}
