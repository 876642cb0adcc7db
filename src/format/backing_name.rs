//! What a backing directory entry is, judged by its name alone.
//!
//! Every name coffer makes is `STEM` or `STEM.EXT`, where STEM is base64url (no `.`) or the word
//! `coffer`. Sync clients put conflict markers before the last `.`, so `STEM<marker>.EXT` is
//! still recognizable (conflict-copy handling lives in the vault layer).

use super::names::NameEncoding;

/// The per-directory IV file.
pub const DIRIV_NAME: &str = "coffer.diriv";
/// Length of a diriv file.
pub const DIRIV_LEN: usize = 16;
/// Extension of a long-name entry (`HASH.long`).
pub const LONG_EXT: &str = "long";
/// Extension of a long-name sidecar (`HASH.name`).
pub const NAME_EXT: &str = "name";
/// Extension of an out-of-line symlink target (`STEM.link`).
pub const LINK_EXT: &str = "link";
/// Prefix of coffer's temporary files and directories (hidden, removed by `fsck --repair`).
pub const TEMP_PREFIX: &str = ".coffer-tmp-";
/// Prefix of the new copy of a hard-linked file that a rekey keeps at the root of CIPHERDIR
/// until every name of the file points at it: `PREFIX` + the old file's ID in hex (32 digits).
/// A temporary by its name.
pub const LINK_COPY_PREFIX: &str = ".coffer-tmp-links-";

/// The kind of a backing directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackingName<'a> {
    /// `coffer.conf` or `coffer.epochs` (meaningful at the root only).
    Config,
    /// `coffer.diriv`.
    Diriv,
    /// An encoded short name.
    Short(&'a str),
    /// `HASH.long`: an entry whose encoded name is in the sidecar.
    Long(&'a str),
    /// `HASH.name`: the sidecar of a long name.
    LongSidecar(&'a str),
    /// `STEM.link`: an out-of-line symlink target for the entry STEM (short name or `HASH.long`).
    LinkSidecar(&'a str),
    /// A coffer temporary file.
    Temp,
    /// Anything else (conflict copies, sync-client temp files, foreign files).
    Other,
}

/// Classifies a backing name (bytes: backing names are ASCII when coffer made them) of a vault
/// whose names use `enc`.
pub fn classify(name: &[u8], enc: NameEncoding) -> BackingName<'_> {
    let Ok(s) = std::str::from_utf8(name) else {
        return BackingName::Other;
    };
    if s == super::config::CONFIG_NAME || s == super::epochs::EPOCHS_NAME {
        return BackingName::Config;
    }
    if s == DIRIV_NAME {
        return BackingName::Diriv;
    }
    if s.starts_with(TEMP_PREFIX) {
        return BackingName::Temp;
    }
    let all_b64 = |t: &str| !t.is_empty() && t.bytes().all(|b| enc.is_char(b));
    let hash_len = enc.hash_len();
    match s.split_once('.') {
        None if all_b64(s) => BackingName::Short(s),
        Some((stem, ext)) if all_b64(stem) => {
            let is_hash = stem.len() == hash_len;
            match ext {
                LONG_EXT if is_hash => BackingName::Long(stem),
                NAME_EXT if is_hash => BackingName::LongSidecar(stem),
                LINK_EXT => BackingName::LinkSidecar(stem),
                "long.link" if is_hash => BackingName::LinkSidecar(&s[..hash_len + 5]),
                _ => BackingName::Other,
            }
        }
        _ => BackingName::Other,
    }
}

/// Backing name of the long-name entry for `hash`.
pub fn long_entry_name(hash: &str) -> String {
    format!("{hash}.{LONG_EXT}")
}

/// Backing name of the sidecar for `hash`.
pub fn long_sidecar_name(hash: &str) -> String {
    format!("{hash}.{NAME_EXT}")
}

/// Backing name of the out-of-line symlink target of entry `entry` (a short name or `HASH.long`).
pub fn link_sidecar_name(entry: &str) -> String {
    format!("{entry}.{LINK_EXT}")
}

/// Backing name of the kept new copy of the hard-linked file whose (old) file ID is `id`.
pub fn link_copy_name(id: &[u8; 16]) -> Vec<u8> {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{LINK_COPY_PREFIX}{hex}").into_bytes()
}

/// The old file ID a kept new copy's backing name stands for; `None` for any other name.
pub fn parse_link_copy(name: &[u8]) -> Option<[u8; 16]> {
    let hex = name.strip_prefix(LINK_COPY_PREFIX.as_bytes())?;
    if hex.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, pair) in hex.chunks(2).enumerate() {
        let s = std::str::from_utf8(pair).ok()?;
        if !s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return None;
        }
        id[i] = u8::from_str_radix(s, 16).ok()?;
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let h = "A".repeat(43);
        fn classify(n: &[u8]) -> BackingName<'_> {
            super::classify(n, NameEncoding::Base64Url)
        }
        assert_eq!(classify(b"coffer.conf"), BackingName::Config);
        assert_eq!(classify(b"coffer.epochs"), BackingName::Config);
        assert_eq!(classify(b"coffer.diriv"), BackingName::Diriv);
        assert_eq!(classify(b"abc-_Z9"), BackingName::Short("abc-_Z9"));
        assert_eq!(classify(format!("{h}.long").as_bytes()), BackingName::Long(&h));
        assert_eq!(classify(format!("{h}.name").as_bytes()), BackingName::LongSidecar(&h));
        assert_eq!(classify(b"abc.link"), BackingName::LinkSidecar("abc"));
        let l = format!("{h}.long.link");
        assert_eq!(classify(l.as_bytes()), BackingName::LinkSidecar(&l[..48]));
        assert_eq!(classify(b".coffer-tmp-123"), BackingName::Temp);
        let id: [u8; 16] = std::array::from_fn(|i| (i * 17) as u8);
        let kept = link_copy_name(&id);
        assert_eq!(classify(&kept), BackingName::Temp);
        assert_eq!(parse_link_copy(&kept), Some(id));
        assert_eq!(parse_link_copy(b".coffer-tmp-links-00"), None);
        assert_eq!(parse_link_copy(b".coffer-tmp-0123456789abcdef0123456789abcdef"), None);
        let mut upper = kept.clone();
        upper[LINK_COPY_PREFIX.len()] = b'G';
        assert_eq!(parse_link_copy(&upper), None);
        assert_eq!(
            classify(b"abc.sync-conflict-20261125-101010-ABCDEFG"),
            BackingName::Other
        );
        assert_eq!(classify(b"abc.long"), BackingName::Other);
        assert_eq!(classify(b"\xff"), BackingName::Other);
        assert_eq!(classify(b""), BackingName::Other);
    }

    #[test]
    fn classifies_base32() {
        let e = NameEncoding::Base32;
        let h = "A".repeat(52);
        assert_eq!(classify(b"ABC234", e), BackingName::Short("ABC234"));
        assert_eq!(classify(b"abc", e), BackingName::Other);
        assert_eq!(classify(format!("{h}.long").as_bytes(), e), BackingName::Long(&h));
        assert_eq!(
            classify(format!("{}.long", "A".repeat(43)).as_bytes(), e),
            BackingName::Other
        );
    }
}
