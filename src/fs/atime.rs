//! The kernel side of a mount's access-time policy: `noatime` is a flag of the FUSE mount
//! itself (fuser passes MS_NOATIME); `strictatime` and `nodiratime`, which fuser cannot pass,
//! are set on the mount right after it is made, with mount_setattr(2).
//!
//! The kernel forwards no access time to the daemon: after a read it only forgets its cached
//! atime, and the next getattr reports the backing file's. What the backing file records is
//! therefore the daemon's part ([`backing_policy`]): `noatime` (and a read-only mount) opens
//! backing files and listings with O_NOATIME, `nodiratime` listings; `strictatime` opens files
//! with O_NOATIME and sets the access time on each read itself (which, as any utimensat, also
//! sets the change time); `relatime` leaves it to the backing file system, which on a
//! `relatime` backing mount applies the same rule to the same times.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use fuser::MountOption;

use super::Atime;
use crate::vault::{NoAtime, Touch};

// From <linux/mount.h>.
const MOUNT_ATTR_ATIME_MASK: u64 = 0x70; // MOUNT_ATTR__ATIME
const MOUNT_ATTR_NOATIME: u64 = 0x10;
const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
const MOUNT_ATTR_NODIRATIME: u64 = 0x80;

/// `struct mount_attr` (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// The fuser options for `atime` (only `noatime` has one).
pub(crate) fn mount_options(atime: Atime) -> Vec<MountOption> {
    match atime {
        Atime::NoAtime => vec![MountOption::NoAtime],
        Atime::RelAtime | Atime::StrictAtime => Vec::new(),
    }
}

/// How the daemon's reads treat backing access times: which opens pass O_NOATIME, and whether
/// each read sets the access time.
pub(crate) fn backing_policy(atime: Atime, nodiratime: bool, read_only: bool) -> (NoAtime, Touch) {
    let never = NoAtime {
        files: true,
        dirs: true,
    };
    match atime {
        _ if read_only => (never, Touch::default()),
        Atime::NoAtime => (never, Touch::default()),
        Atime::RelAtime => (
            NoAtime {
                files: false,
                dirs: nodiratime,
            },
            Touch::default(),
        ),
        Atime::StrictAtime => (
            never,
            Touch {
                files: true,
                dirs: !nodiratime,
            },
        ),
    }
}

/// The mount_setattr(2) change `(set, clear)` still needed after mounting, if any.
fn attrs_after_mount(atime: Atime, nodiratime: bool) -> Option<(u64, u64)> {
    let (mut set, mut clear) = match atime {
        Atime::StrictAtime => (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK),
        Atime::NoAtime | Atime::RelAtime => (0, 0),
    };
    if nodiratime {
        set |= MOUNT_ATTR_NODIRATIME;
        if clear == 0 && atime == Atime::NoAtime {
            // Setting an atime bit needs the whole atime field cleared.
            (set, clear) = (set | MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK);
        }
    }
    (set != 0).then_some((set, clear))
}

/// Sets what [`mount_options`] could not on the mount at `mountpoint`.
pub(crate) fn apply(mountpoint: &Path, atime: Atime, nodiratime: bool) -> io::Result<()> {
    let Some((attr_set, attr_clr)) = attrs_after_mount(atime, nodiratime) else {
        return Ok(());
    };
    let c = CString::new(mountpoint.as_os_str().as_bytes()).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))?;
    let attr = MountAttr {
        attr_set,
        attr_clr,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: valid C string and a fully initialised mount_attr of the size passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c.as_ptr(),
            0,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_fuser_cannot_pass_is_set_afterwards() {
        assert_eq!(attrs_after_mount(Atime::RelAtime, false), None);
        assert_eq!(attrs_after_mount(Atime::NoAtime, false), None);
        assert_eq!(
            attrs_after_mount(Atime::StrictAtime, false),
            Some((MOUNT_ATTR_STRICTATIME, MOUNT_ATTR_ATIME_MASK))
        );
        assert_eq!(
            attrs_after_mount(Atime::RelAtime, true),
            Some((MOUNT_ATTR_NODIRATIME, 0))
        );
        assert_eq!(
            attrs_after_mount(Atime::NoAtime, true),
            Some((MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOATIME, MOUNT_ATTR_ATIME_MASK))
        );
        assert_eq!(mount_options(Atime::NoAtime), vec![MountOption::NoAtime]);
    }
}
