//! Sync-client artefacts in CIPHERDIR: conflict copies of coffer's backing names and the
//! clients' own temp/metadata files.
//!
//! Clients insert a marker before the last `.` of a name (or append it when there is none):
//! Syncthing `.sync-conflict-YYYYMMDD-HHMMSS-DEVICE`, Dropbox ` (… conflicted copy …)`,
//! Nextcloud ` (conflicted copy YYYY-MM-DD HHMMSS)`, ownCloud `_conflict-YYYYMMDD-HHMMSS`,
//! Google Drive ` (1)`, OneDrive `-HOSTNAME`, Seafile ` (SFConflict EMAIL DATE)`. Coffer's backing names are `STEM[.EXT]`
//! with STEM in the name alphabet, so a copy is `STEM<marker>[.EXT]`, and the marker can be
//! carried over to the plaintext name.
//! rclone bisync instead appends its marker after the whole name, extension included (an
//! "end marker"): `NAME..path1` / `NAME..path2` (rclone up to 1.65, which renames *both* sides
//! of a conflict, so no copy keeps the original name) and `NAME.conflictN` (1.66 and later);
//! a copy is then `STEM[.EXT]<marker>`, and the plaintext name gets the marker at its end.

use super::names::NameEncoding;

/// Extensions coffer itself uses (the part after the last `.`).
const COFFER_EXTS: &[&str] = &["long", "name", "link", "diriv"];

/// One way to read a backing name as a conflict copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConflictCopy<'a> {
    /// The original stem (encoded name, long-name hash, or `coffer` for the diriv).
    pub stem: &'a str,
    /// The marker exactly as the client wrote it.
    pub marker: &'a str,
    /// The original extension, without the dot ("" for a short name).
    pub ext: &'a str,
}

impl ConflictCopy<'_> {
    /// The backing name the copy was made from.
    pub fn original(&self) -> String {
        if self.ext.is_empty() {
            self.stem.to_string()
        } else {
            format!("{}.{}", self.stem, self.ext)
        }
    }
}

/// Whether `m` is a marker that clients append after the whole name (rclone bisync).
pub fn is_end_marker(m: &str) -> bool {
    matches!(m, "..path1" | "..path2")
        || m.strip_prefix(".conflict")
            .is_some_and(|n| !n.is_empty() && n.len() <= 4 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Syncthing's `YYYYMMDD-HHMMSS-DEVICE`: 8 digits, 6 digits and the 7-character short device
/// ID (RFC 4648 base32: `A`–`Z`, `2`–`7`). Nothing else: the marker is shown unauthenticated in
/// the plaintext name, so free text is refused (FORMAT.md G32).
fn is_syncthing_stamp(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 8 + 1 + 6 + 1 + 7
        && s.get(..15).is_some_and(is_date_time)
        && b[15] == b'-'
        && b[16..]
            .iter()
            .all(|&c| c.is_ascii_uppercase() || (b'2'..=b'7').contains(&c))
}

/// `YYYYMMDD-HHMMSS` (digits only; the date itself is not checked).
fn is_date_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 15 && b[8] == b'-' && b.iter().enumerate().all(|(i, c)| i == 8 || c.is_ascii_digit())
}

/// Whether `m` looks like a sync client's conflict marker.
pub fn is_marker(m: &str) -> bool {
    if m.is_empty() || m.len() > 120 || m.contains('/') {
        return false;
    }
    if is_end_marker(m) {
        return true;
    }
    if let Some(rest) = m.strip_prefix(".sync-conflict-") {
        return is_syncthing_stamp(rest);
    }
    // ownCloud desktop `_conflict-YYYYMMDD-HHMMSS`.
    if let Some(rest) = m.strip_prefix("_conflict-") {
        return is_date_time(rest);
    }
    if let Some(inner) = m.strip_prefix(" (").and_then(|r| r.strip_suffix(')')) {
        // Google Drive ` (N)`; Dropbox/Nextcloud/ownCloud `… conflicted copy …`. Nothing else:
        // the marker is shown unauthenticated in the plaintext name, so free text is refused.
        // Seafile ` (SFConflict EMAIL YYYY-MM-DD-HH-MM-SS)`.
        let numbered = !inner.is_empty() && inner.len() <= 4 && inner.bytes().all(|b| b.is_ascii_digit());
        let conflicted =
            (inner.contains("conflicted copy") || inner.starts_with("SFConflict ")) && !inner.contains(['(', ')']);
        return numbered || conflicted;
    }
    if let Some(host) = m.strip_prefix('-') {
        return !host.is_empty()
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    }
    false
}

/// Every reading of `name` as `STEM<marker>[.EXT]` (several when a `-` could start a OneDrive
/// marker inside a base64url stem; the caller tries each, and authentication picks the one).
pub fn parse_copy(name: &[u8], enc: NameEncoding) -> Vec<ConflictCopy<'_>> {
    let Ok(s) = std::str::from_utf8(name) else {
        return Vec::new();
    };
    let mut splits: Vec<(&str, &str)> = vec![(s, "")];
    if let Some(p) = s.rfind('.') {
        let ext = &s[p + 1..];
        if COFFER_EXTS.contains(&ext) {
            splits.push((&s[..p], ext));
        }
    }
    let mut out = Vec::new();
    for (body, ext) in splits {
        for (i, _) in body.char_indices().skip(1) {
            let (stem, marker) = body.split_at(i);
            if stem_ok(stem, ext, enc) && is_marker(marker) {
                out.push(ConflictCopy { stem, marker, ext });
            }
        }
    }
    // rclone: `STEM.EXT<end marker>` with one of coffer's extensions.
    for ext in COFFER_EXTS {
        let dot_ext = format!(".{ext}");
        let Some(p) = s.find(&dot_ext) else { continue };
        let (stem, marker) = (&s[..p], &s[p + dot_ext.len()..]);
        if stem_ok(stem, ext, enc) && is_end_marker(marker) {
            out.push(ConflictCopy { stem, marker, ext });
        }
    }
    // Longest stem first: the most likely reading.
    out.sort_by_key(|c| std::cmp::Reverse(c.stem.len()));
    out
}

/// Whether `stem` can start a copy of a coffer name with extension `ext`: `coffer` for the
/// diriv, else a non-empty run of the name alphabet.
fn stem_ok(stem: &str, ext: &str, enc: NameEncoding) -> bool {
    if ext == "diriv" {
        stem == "coffer"
    } else {
        !stem.is_empty() && stem.bytes().all(|b| enc.is_char(b))
    }
}

/// The backing name a client gives its copy of `STEM.EXT` (or of `STEM` when `ext` is empty):
/// `STEM<marker>.EXT`, or `STEM.EXT<marker>` for an end marker (rclone).
pub fn copy_name(stem: &str, marker: &str, ext: &str) -> String {
    match (ext.is_empty(), is_end_marker(marker)) {
        (true, _) => format!("{stem}{marker}"),
        (false, true) => format!("{stem}.{ext}{marker}"),
        (false, false) => format!("{stem}{marker}.{ext}"),
    }
}

/// The plaintext name shown for a conflict copy: the marker goes before the last `.` of the
/// plaintext name (not a leading dot), as the client would have placed it on a plain file; an
/// end marker (rclone) goes at the end.
pub fn plain_with_marker(plain: &[u8], marker: &str) -> Vec<u8> {
    let cut = match plain.iter().rposition(|&b| b == b'.') {
        _ if is_end_marker(marker) => plain.len(),
        Some(p) if p > 0 => p,
        _ => plain.len(),
    };
    let mut out = plain[..cut].to_vec();
    out.extend_from_slice(marker.as_bytes());
    out.extend_from_slice(&plain[cut..]);
    out
}

/// Every reading of a plaintext name as `plain_with_marker(original, marker)`.
/// Works on bytes: a non-UTF-8 name can still carry an (ASCII) marker.
pub fn split_plain(plain: &[u8]) -> Vec<(Vec<u8>, &str)> {
    let mut out = Vec::new();
    let cut = match plain.iter().rposition(|&b| b == b'.') {
        Some(p) if p > 0 => p,
        _ => plain.len(),
    };
    // The marker ends at `cut` (before the extension) or, for a marker holding the last dot
    // (Syncthing on an extension-less name), at the end of the name.
    for end in [cut, plain.len()] {
        for start in 1..end {
            let Ok(marker) = std::str::from_utf8(&plain[start..end]) else {
                continue;
            };
            if is_marker(marker) {
                let mut orig = plain[..start].to_vec();
                orig.extend_from_slice(&plain[end..]);
                if !orig.is_empty() && plain_with_marker(&orig, marker) == plain {
                    out.push((orig, marker));
                }
            }
        }
    }
    out.dedup();
    out
}

/// The marker of a sync client's conflict copy of `coffer.conf` (`coffer<marker>.conf`, or
/// `coffer.conf<end marker>` from rclone), if `name` is one. Such a copy is the other side of
/// two configs written at once (two machines' `coffer rekey`, docs/FORMAT.md §15.7).
pub fn config_copy_marker(name: &[u8]) -> Option<&str> {
    let s = std::str::from_utf8(name).ok()?;
    if let Some(m) = s.strip_prefix("coffer.conf").filter(|m| is_end_marker(m)) {
        return Some(m);
    }
    s.strip_prefix("coffer")?.strip_suffix(".conf").filter(|m| is_marker(m))
}

/// Sync clients' own files in CIPHERDIR, hidden from the mount and never reported as damage.
pub fn is_sync_client_file(name: &[u8]) -> bool {
    let exact: &[&[u8]] = &[
        b".stfolder",
        b".stversions",
        b".stignore",
        b".dropbox",
        b".dropbox.cache",
        b".dropbox.attr",
        b"desktop.ini",
        b"Desktop.ini",
        b"Icon\r",
        b".DS_Store",
        b"Thumbs.db",
        b".sync",
        b".owncloudsync.log",
        b".nextcloudsync.log",
        b".sync_journal.db",
        b".tmp.drivedownload",
        b".tmp.driveupload",
        b"RCLONE_TEST",
    ];
    if exact.contains(&name) {
        return true;
    }
    let starts_ends = |p: &[u8], e: &[u8]| name.starts_with(p) && name.ends_with(e);
    starts_ends(b".syncthing.", b".tmp")
        || starts_ends(b"~syncthing~", b".tmp")
        || starts_ends(b"~", b".tmp")
        || name.starts_with(b".~lock.")
        || name.starts_with(b"._sync_")
        || name.starts_with(b".sync_")
        || name.starts_with(b".owncloudsync")
        || name.starts_with(b".nextcloudsync")
        || name.ends_with(b".partial")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conflict_copies_of_the_config_are_recognised() {
        for (name, marker) in [
            (
                "coffer.sync-conflict-20261206-101010-ABCDEFG.conf",
                ".sync-conflict-20261206-101010-ABCDEFG",
            ),
            ("coffer (conflicted copy).conf", " (conflicted copy)"),
            (
                "coffer (Jo's conflicted copy 2026-12-06).conf",
                " (Jo's conflicted copy 2026-12-06)",
            ),
            ("coffer.conf.conflict1", ".conflict1"),
            ("coffer (1).conf", " (1)"),
        ] {
            assert_eq!(config_copy_marker(name.as_bytes()), Some(marker), "{name}");
        }
        for name in [
            "coffer.conf",
            "coffer.epochs",
            "coffer.diriv",
            "coffer (notes).conf",
            "other (1).conf",
        ] {
            assert_eq!(config_copy_marker(name.as_bytes()), None, "{name}");
        }
    }

    const E: NameEncoding = NameEncoding::Base64Url;

    #[test]
    fn parses_every_client_pattern() {
        let cases: &[(&str, &str, &str, &str)] = &[
            (
                "AbC-d_1.sync-conflict-20261125-101010-ABCDEFG",
                "AbC-d_1",
                ".sync-conflict-20261125-101010-ABCDEFG",
                "",
            ),
            (
                "AbCd (conflicted copy 2026-11-25 101010)",
                "AbCd",
                " (conflicted copy 2026-11-25 101010)",
                "",
            ),
            (
                "AbCd (Jo's conflicted copy 2026-11-25)",
                "AbCd",
                " (Jo's conflicted copy 2026-11-25)",
                "",
            ),
            ("AbCd (1)", "AbCd", " (1)", ""),
            ("AbCd_conflict-20261125-101010", "AbCd", "_conflict-20261125-101010", ""),
            (
                "HASH_conflict-20261125-101010.long",
                "HASH",
                "_conflict-20261125-101010",
                "long",
            ),
            (
                "AbCd (SFConflict jo@example.com 2026-11-25-10-10-10)",
                "AbCd",
                " (SFConflict jo@example.com 2026-11-25-10-10-10)",
                "",
            ),
            ("AbCd-LAPTOP", "AbCd", "-LAPTOP", ""),
            (
                "coffer.sync-conflict-20261125-101010-ABCDEFG.diriv",
                "coffer",
                ".sync-conflict-20261125-101010-ABCDEFG",
                "diriv",
            ),
            ("coffer (1).diriv", "coffer", " (1)", "diriv"),
            // rclone bisync: after the whole name, extension included.
            ("AbCd..path1", "AbCd", "..path1", ""),
            ("AbCd..path2", "AbCd", "..path2", ""),
            ("AbCd.conflict1", "AbCd", ".conflict1", ""),
            ("HASH.long..path2", "HASH", "..path2", "long"),
            ("HASH.name..path1", "HASH", "..path1", "name"),
            ("AbCd.link.conflict2", "AbCd", ".conflict2", "link"),
            ("coffer.diriv..path1", "coffer", "..path1", "diriv"),
            ("HASH (1).long", "HASH", " (1)", "long"),
            (
                "HASH.sync-conflict-20261125-101010-ABCDEFG.name",
                "HASH",
                ".sync-conflict-20261125-101010-ABCDEFG",
                "name",
            ),
        ];
        for (name, stem, marker, ext) in cases {
            let got = parse_copy(name.as_bytes(), E);
            assert!(got.contains(&ConflictCopy { stem, marker, ext }), "{name}: {got:?}");
        }
        // OneDrive ambiguity in base64url: every split is offered, longest stem first.
        let got = parse_copy(b"Ab-Cd-HOST", E);
        assert_eq!(got[0].stem, "Ab-Cd");
        assert!(got.iter().any(|c| c.stem == "Ab"));
        assert!(parse_copy(b"AbCd", E).is_empty());
        // Free text in parentheses is not a marker (it would show as part of a plaintext name).
        assert!(parse_copy(b"AbCd (approved by admin)", E).is_empty());
        assert!(!is_marker(" (12345)"));
        assert!(is_marker(" (12)"));
        assert!(parse_copy(b"coffer.diriv", E).is_empty());
        assert!(parse_copy(b"AbCd..path3", E).is_empty());
        // Syncthing's marker is its exact stamp, not free text.
        assert!(parse_copy(b"AbCd.sync-conflict-approved-by-admin", E).is_empty());
        assert!(parse_copy(b"AbCd.sync-conflict-20261125-101010-ABCDEF1", E).is_empty());
        assert!(!parse_copy(b"AbCd.sync-conflict-20261125-101010-ABCDEF7", E).is_empty());
        assert!(!is_marker("_conflict-2026112-101010"));
        assert!(!is_marker("_conflict-approved-by-admin"));
        assert!(parse_copy(b"AbCd.conflict", E).is_empty());
        assert!(parse_copy(b"HASH.long.conflictX", E).is_empty());
        assert!(parse_copy(b"\xff (1)", E).is_empty());
    }

    #[test]
    fn copy_names_follow_each_clients_placement() {
        assert_eq!(copy_name("HASH", " (1)", "name"), "HASH (1).name");
        assert_eq!(copy_name("HASH", "..path1", "name"), "HASH.name..path1");
        assert_eq!(copy_name("AbCd", ".conflict2", ""), "AbCd.conflict2");
        for name in ["HASH (1).long", "HASH.long..path2", "coffer.diriv.conflict1"] {
            let c = parse_copy(name.as_bytes(), E)
                .into_iter()
                .find(|c| !c.ext.is_empty())
                .expect(name);
            assert_eq!(copy_name(c.stem, c.marker, c.ext), name);
        }
    }

    #[test]
    fn plain_marker_round_trip() {
        let m = ".sync-conflict-20261125-101010-ABCDEFG";
        assert_eq!(
            plain_with_marker(b"report.txt", m),
            format!("report{m}.txt").into_bytes()
        );
        assert_eq!(plain_with_marker(b"Makefile", " (1)"), b"Makefile (1)".to_vec());
        assert_eq!(plain_with_marker(b".bashrc", " (1)"), b".bashrc (1)".to_vec());
        assert_eq!(
            plain_with_marker(b"report.txt", "..path1"),
            b"report.txt..path1".to_vec()
        );
        assert_eq!(plain_with_marker(b"a.b", ".conflict2"), b"a.b.conflict2".to_vec());
        for (plain, marker) in [
            (&b"report.txt"[..], m),
            (b"Makefile", m),
            (b"a.b.c", " (1)"),
            (b".x", "-HOST"),
            (b"report.txt", "..path2"),
            (b"Makefile", "..path1"),
            (b"a.b.c", ".conflict3"),
        ] {
            let shown = plain_with_marker(plain, marker);
            let back = split_plain(&shown);
            assert!(
                back.iter().any(|(o, mk)| o == plain && *mk == marker),
                "{:?}",
                String::from_utf8_lossy(&shown)
            );
        }
    }

    #[test]
    fn sync_files() {
        for n in [
            &b".stfolder"[..],
            b".syncthing.x.tmp",
            b"~abc.tmp",
            b".~lock.x#",
            b"desktop.ini",
            b"Icon\r",
            b"RCLONE_TEST",
            b"AbCd.1a2b3c4d.partial",
        ] {
            assert!(is_sync_client_file(n), "{:?}", String::from_utf8_lossy(n));
        }
        assert!(!is_sync_client_file(b"AbCd"));
        assert!(!is_sync_client_file(b"coffer.diriv"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics(name in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..80)) {
            let _ = parse_copy(&name, E);
            let _ = parse_copy(&name, NameEncoding::Base32);
            let _ = split_plain(&name);
            let _ = is_sync_client_file(&name);
        }
    }
}
