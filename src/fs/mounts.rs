//! Reading the mount table (/proc/self/mountinfo, /proc/self/mounts): its octal escapes, and
//! whether a path has a FUSE mount on it now.

/// `bytes` escaped as the kernel escapes mountinfo fields (space, tab, newline and backslash
/// as three-digit octal), so that it compares equal to the field.
pub fn escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for &b in bytes {
        if matches!(b, b' ' | b'\t' | b'\n' | b'\\') {
            out.extend_from_slice(format!("\\{b:03o}").as_bytes());
        } else {
            out.push(b);
        }
    }
    out
}

/// Undoes the mount table's octal escapes (`\040` for a space, also `\011`, `\012`, `\134`).
pub fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let oct = b
            .get(i + 1..i + 4)
            .filter(|d| b[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match oct {
            Some(d) => {
                out.push(d.iter().fold(0u8, |acc, c| acc.wrapping_mul(8).wrapping_add(c - b'0')));
                i += 4;
            }
            None => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    out
}

/// Whether `mountinfo` has a FUSE mount (`fuse`, `fuse.*`, `fuseblk`) at `escaped`.
fn has_fuse_mount(mountinfo: &[u8], escaped: &[u8]) -> bool {
    mountinfo.split(|&b| b == b'\n').any(|line| {
        let Some(sep) = line.windows(3).position(|w| w == b" - ") else {
            return false;
        };
        let (mount, fs) = (&line[..sep], &line[sep + 3..]);
        mount.split(|&b| b == b' ').nth(4) == Some(escaped) && fs.starts_with(b"fuse")
    })
}

/// Whether the mountpoint `escaped` (see [`escape`]) has a FUSE mount now, as process `pid`
/// sees it (its mount namespace may not be ours), else as we do. An unreadable mountinfo
/// counts as mounted (the caller then refuses rather than waits).
pub fn is_fuse_mounted(escaped: &[u8], pid: Option<u32>) -> bool {
    let theirs = pid.and_then(|p| std::fs::read(format!("/proc/{p}/mountinfo")).ok());
    match theirs.map_or_else(|| std::fs::read("/proc/self/mountinfo"), Ok) {
        Ok(info) => has_fuse_mount(&info, escaped),
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_the_kernel() {
        assert_eq!(escape(b"/a b\\c\td\ne"), b"/a\\040b\\134c\\011d\\012e");
        assert_eq!(escape(b"/plain\xff"), b"/plain\xff");
        assert_eq!(unescape("/a\\040b\\134c\\011"), b"/a b\\c\t");
        assert_eq!(unescape("/end\\04"), b"/end\\04");
    }

    #[test]
    fn finds_fuse_mounts_only() {
        let info = b"22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n\
                    90 22 0:50 / /tmp/m\\040x rw,nosuid,nodev,relatime shared:5 - fuse /v rw,user_id=0\n";
        assert!(has_fuse_mount(info, b"/tmp/m\\040x"));
        assert!(!has_fuse_mount(info, b"/"));
        assert!(!has_fuse_mount(info, b"/tmp/m"));
    }
}
