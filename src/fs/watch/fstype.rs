//! Which backing file systems can be watched: inotify sees only changes made through the local
//! kernel, so a CIPHERDIR on a network or FUSE file system (or an overlay, whose lower layers
//! change underneath it) keeps the short timeouts. And whether a file system's change times
//! can tell two changes apart that come within one tick of the kernel's clock.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileExt, MetadataExt};

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

/// Whether the file system of directory `dir` may give two changes of one file made within a
/// tick of the kernel's clock (a few milliseconds) the same change time, as every file system
/// did before Linux 6.13 and ramfs still does; on ext4, xfs, btrfs and tmpfs since 6.13 a
/// change after a stat always gets a new change time. Found by changing an unnamed file made
/// in `dir` (O_TMPFILE: it never has a name in the directory, though a watcher of the
/// directory sees its open, writes and close) and statting it after each change, up to 8
/// pairs; a file system that cannot make one counts as coarse, which is only slower.
pub fn coarse_change_times(dir: &impl AsRawFd) -> bool {
    // SAFETY: a valid descriptor and a NUL-terminated path; the result is checked.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c".".as_ptr(),
            libc::O_TMPFILE | libc::O_RDWR | libc::O_CLOEXEC,
            0o600,
        )
    };
    if fd < 0 {
        log::debug!(
            "kernel cache: cannot tell CIPHERDIR's change-time resolution ({}); taken as coarse",
            std::io::Error::last_os_error()
        );
        return true;
    }
    // SAFETY: `fd` was just opened and is owned by nothing else.
    let file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let ctime = |f: &std::fs::File, b: &[u8]| -> Option<(i64, i64)> {
        f.write_at(b, 0).ok()?;
        let m = f.metadata().ok()?;
        Some((m.ctime(), m.ctime_nsec()))
    };
    // A tick may pass between two changes: one equal pair in a few tries tells.
    for _ in 0..8 {
        match (ctime(&file, b"a"), ctime(&file, b"b")) {
            (Some(x), Some(y)) if x != y => continue,
            _ => return true,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn change_times_are_fine_where_multigrain_and_coarse_on_ramfs() {
        let d = std::fs::File::open(std::env::temp_dir()).unwrap();
        let fs = std::process::Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(std::env::temp_dir())
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        // Multigrain change times: Linux 6.13 and later, on these file systems (older kernels
        // may have them backported: nothing is asserted there).
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut v = release.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
        let (major, minor) = (v.next().unwrap_or(0), v.next().unwrap_or(0));
        let multigrain = (major, minor) >= (6, 13);
        match fs.as_str() {
            "ext2/ext3" | "xfs" | "btrfs" | "tmpfs" if multigrain => assert!(!coarse_change_times(&d), "{fs}"),
            "ramfs" => assert!(coarse_change_times(&d)),
            _ => {}
        }
    }

    #[test]
    fn a_local_directory_is_watchable_and_a_fuse_magic_is_not() {
        let d = std::fs::File::open(std::env::temp_dir()).unwrap();
        // /tmp is ext4, tmpfs or similar on every machine the tests run on.
        assert_eq!(unwatchable(&d).unwrap(), None);
        assert!(UNWATCHABLE.iter().any(|(m, _)| *m == 0x6573_5546));
    }
}
