//! The options of a mount's own /etc/fstab line, for the mount(8) helper: mount(8) consumes
//! `dev` and `suid` (they only clear a kernel flag) and never passes them on, so the helper
//! looks them up where the user wrote them. The file is `$LIBMOUNT_FSTAB` when set (as for
//! mount(8)), else /etc/fstab.

use std::path::Path;

/// Undoes the octal escapes of fstab fields (`\040` for a space).
fn unescape(field: &str) -> Vec<u8> {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) if b[i] == b'\\' => {
                out.push((d[0] - b'0').wrapping_mul(64) + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

fn same_path(a: &[u8], b: &[u8]) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let canon = |p: &[u8]| std::fs::canonicalize(std::ffi::OsStr::from_bytes(p)).ok();
    a == b || canon(a).is_some_and(|x| Some(x) == canon(b))
}

/// The options of the last line of `fstab` whose mountpoint is `target`, preferring lines
/// whose source is also `source`.
fn options_in(fstab: &str, source: &[u8], target: &[u8]) -> Option<Vec<String>> {
    let mut by_target = None;
    let mut by_both = None;
    for line in fstab.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [spec, file, _type, opts, ..] = fields[..] else {
            continue;
        };
        if spec.starts_with('#') || !same_path(&unescape(file), target) {
            continue;
        }
        let opts: Vec<String> = opts.split(',').map(str::to_string).collect();
        if same_path(&unescape(spec), source) {
            by_both = Some(opts.clone());
        }
        by_target = Some(opts);
    }
    by_both.or(by_target)
}

/// The fstab options of the mount of `source` at `target`, if it has an fstab line.
pub fn options_of(source: &Path, target: &Path) -> Option<Vec<String>> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::env::var_os("LIBMOUNT_FSTAB").unwrap_or_else(|| "/etc/fstab".into());
    let text = std::fs::read_to_string(path).ok()?;
    options_in(&text, source.as_os_str().as_bytes(), target.as_os_str().as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_line_of_a_mount() {
        let fstab = "# comment /x\n\
                     /dev/vda / ext4 defaults 0 1\n\
                     /v/a /mnt/p\\040q fuse.coffer dev,passfile=/pw 0 0\n\
                     /v/b /mnt/p\\040q fuse.coffer suid 0 0\n";
        let got = |s: &str, t: &str| options_in(fstab, s.as_bytes(), t.as_bytes());
        assert_eq!(got("/v/a", "/mnt/p q"), Some(vec!["dev".into(), "passfile=/pw".into()]));
        assert_eq!(got("/v/c", "/mnt/p q"), Some(vec!["suid".into()]));
        assert_eq!(got("/v/a", "/mnt/other"), None);
        assert_eq!(unescape(r"/a\040b\134c\04"), b"/a b\\c\\04");
    }
}
