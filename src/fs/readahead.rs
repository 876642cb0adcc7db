//! A larger kernel readahead window for a mount: the kernel starts a FUSE mount at 128 KiB, so
//! a streaming read arrives as 128 KiB requests one after another; with a few MiB it arrives as
//! 1 MiB requests, several in flight, decrypted by several threads while the backing file is
//! read ahead. Readahead only grows for sequential reads, so random reads are unaffected.

use std::path::Path;

/// Readahead window set on a mount, in KiB.
pub const READAHEAD_KB: u32 = 4096;

/// Sets the readahead window of the FUSE mount at `mountpoint` (needs root; otherwise, or on
/// any error, the kernel's default stays and a debug line says why).
pub fn raise(mountpoint: &Path) {
    let r = std::fs::read_to_string("/proc/self/mountinfo").and_then(|info| {
        let dev = device_of(&info, mountpoint).ok_or_else(|| std::io::Error::other("not in mountinfo"))?;
        std::fs::write(format!("/sys/class/bdi/{dev}/read_ahead_kb"), READAHEAD_KB.to_string())
    });
    if let Err(e) = r {
        log::debug!("readahead of {} left at the default: {e}", mountpoint.display());
    }
}

/// The `major:minor` of the last mount at `mountpoint` in a `/proc/self/mountinfo` text (the
/// last one is the top of a stack of mounts there).
fn device_of(mountinfo: &str, mountpoint: &Path) -> Option<String> {
    use std::os::unix::ffi::OsStrExt;
    let want = mountpoint.as_os_str().as_bytes();
    mountinfo.lines().rev().find_map(|line| {
        let f: Vec<&str> = line.split(' ').collect();
        let (dev, at) = (f.get(2)?, f.get(4)?);
        (super::mounts::unescape(at) == want && dev.split(':').count() == 2).then(|| dev.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::device_of;
    use std::path::Path;

    const INFO: &str = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:45 / /tmp/m\\040x rw,nosuid,nodev shared:20 - fuse.coffer /c rw,user_id=0,group_id=0
41 22 0:46 / /tmp/m rw,nosuid,nodev shared:21 - fuse.coffer /c rw,user_id=0,group_id=0
42 41 0:47 / /tmp/m rw,nosuid,nodev shared:22 - fuse.coffer /d rw,user_id=0,group_id=0
";

    #[test]
    fn finds_the_top_mount_at_a_path_with_escapes() {
        assert_eq!(device_of(INFO, Path::new("/tmp/m")).as_deref(), Some("0:47"));
        assert_eq!(device_of(INFO, Path::new("/tmp/m x")).as_deref(), Some("0:45"));
        assert_eq!(device_of(INFO, Path::new("/tmp")), None);
        assert_eq!(device_of("garbage\n\n1 2\n", Path::new("/tmp/m")), None);
    }
}
