//! Which backing file systems can be watched: inotify sees only changes made through the local
//! kernel, so a CIPHERDIR on a network or FUSE file system (or an overlay, whose lower layers
//! change underneath it) keeps the short timeouts.

use std::os::fd::AsRawFd;

/// A backing file system on which inotify misses changes made elsewhere: (f_type, name).
const UNWATCHABLE: &[(i64, &str)] = &[
    (0x6969, "NFS"),
    (0xFF53_4D42, "SMB (cifs)"),
    (0xFE53_4D42, "SMB (smb2)"),
    (0x517B, "SMB (smbfs)"),
    (0x0102_1997, "9p"),
    (0x6573_5546, "FUSE (sshfs, rclone, virtiofs, ...)"),
    (0x794C_7630, "overlayfs"),
    (0x5346_414F, "AFS"),
    (0x6B41_4653, "AFS (kafs)"),
    (0x0BD0_0BD0, "Lustre"),
    (0x4750_4653, "GPFS"),
    (0x0047_504C, "GlusterFS"),
    (0x00C3_6400, "CephFS"),
];

/// Why the file system of `fd` cannot be watched (its name), or None when it can.
pub fn unwatchable(fd: &impl AsRawFd) -> std::io::Result<Option<&'static str>> {
    // SAFETY: statfs is plain old data; fstatfs fills it from a valid descriptor.
    let mut s: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: the descriptor is open for the call; the buffer is a valid statfs.
    if unsafe { libc::fstatfs(fd.as_raw_fd(), &mut s) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)]
    let kind = s.f_type as i64 & 0xFFFF_FFFF;
    Ok(UNWATCHABLE
        .iter()
        .find(|(magic, _)| *magic == kind)
        .map(|(_, name)| *name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_is_watchable_and_a_fuse_magic_is_not() {
        let d = std::fs::File::open(std::env::temp_dir()).unwrap();
        // /tmp is ext4, tmpfs or similar on every machine the tests run on.
        assert_eq!(unwatchable(&d).unwrap(), None);
        assert!(UNWATCHABLE.iter().any(|(m, _)| *m == 0x6573_5546));
    }
}
