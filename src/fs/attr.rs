//! Backing `stat` → FUSE attributes: plaintext sizes, the daemon's inode numbers, file kinds.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::vault::plain_size_for;

/// The file type of `st_mode`.
pub fn kind_of(mode: u32) -> FileType {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => FileType::Directory,
        libc::S_IFLNK => FileType::Symlink,
        libc::S_IFIFO => FileType::NamedPipe,
        libc::S_IFSOCK => FileType::Socket,
        libc::S_IFCHR => FileType::CharDevice,
        libc::S_IFBLK => FileType::BlockDevice,
        _ => FileType::RegularFile,
    }
}

/// The file type of a backing `d_type` (None for DT_UNKNOWN).
pub fn kind_of_dtype(d_type: u8) -> Option<FileType> {
    Some(match d_type {
        libc::DT_DIR => FileType::Directory,
        libc::DT_LNK => FileType::Symlink,
        libc::DT_FIFO => FileType::NamedPipe,
        libc::DT_SOCK => FileType::Socket,
        libc::DT_CHR => FileType::CharDevice,
        libc::DT_BLK => FileType::BlockDevice,
        libc::DT_REG => FileType::RegularFile,
        _ => return None,
    })
}

/// The backing identity (st_dev, st_ino) of a stat.
pub fn backing_id(st: &libc::stat) -> (u64, u64) {
    (st.st_dev, st.st_ino)
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    let nsec = nsec.clamp(0, 999_999_999) as u32;
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec)
    }
}

/// The plaintext size of an object: regular files from their backing length, symlinks from
/// their decrypted target (`link_len`), everything else as the backing reports it.
pub fn plain_size(st: &libc::stat, link_len: Option<usize>) -> u64 {
    match st.st_mode & libc::S_IFMT {
        libc::S_IFREG => plain_size_for(st.st_size as u64),
        libc::S_IFLNK => link_len.map_or(st.st_size as u64, |l| l as u64),
        _ => st.st_size as u64,
    }
}

/// FUSE attributes for inode `ino` from a backing stat.
pub fn to_attr(ino: u64, st: &libc::stat, link_len: Option<usize>) -> FileAttr {
    FileAttr {
        ino: INodeNo(ino),
        size: plain_size(st, link_len),
        blocks: st.st_blocks as u64,
        atime: time(st.st_atime, st.st_atime_nsec),
        mtime: time(st.st_mtime, st.st_mtime_nsec),
        ctime: time(st.st_ctime, st.st_ctime_nsec),
        crtime: UNIX_EPOCH,
        kind: kind_of(st.st_mode),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: st.st_nlink as u32,
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        blksize: st.st_blksize as u32,
        flags: 0,
    }
}

/// Seconds and nanoseconds since the epoch (negative before it).
pub fn epoch_parts(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(e) => {
            let d = e.duration();
            let (s, ns) = (d.as_secs() as i64, i64::from(d.subsec_nanos()));
            if ns == 0 {
                (-s, 0)
            } else {
                (-s - 1, 1_000_000_000 - ns)
            }
        }
    }
}

/// Seconds and nanoseconds of a time fuser 0.18 decoded from the kernel. Its decoder maps
/// `(-s, ns)` to `EPOCH - (s + ns)` instead of `EPOCH - s + ns`; this undoes exactly that, so
/// pre-epoch times set with utimensat come out as the caller gave them.
pub fn from_fuser_time(t: SystemTime) -> (i64, i64) {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => (d.as_secs() as i64, i64::from(d.subsec_nanos())),
        Err(e) => (-(e.duration().as_secs() as i64), i64::from(e.duration().subsec_nanos())),
    }
}

/// A [`SystemTime`] from seconds and nanoseconds since the epoch.
pub fn system_time(sec: i64, nsec: i64) -> SystemTime {
    time(sec, nsec)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_kinds() {
        // SAFETY: an all-zero stat is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFREG | 0o640;
        st.st_size = 18 + 4096 + 32 + 10 + 32;
        st.st_mtime = 5;
        st.st_mtime_nsec = 7;
        let a = to_attr(9, &st, None);
        assert_eq!(a.size, 4106);
        assert_eq!(a.perm, 0o640);
        assert_eq!(a.kind, FileType::RegularFile);
        assert_eq!(a.mtime, UNIX_EPOCH + Duration::new(5, 7));
        st.st_mode = libc::S_IFLNK | 0o777;
        assert_eq!(to_attr(9, &st, Some(3)).size, 3);
        assert_eq!(kind_of_dtype(libc::DT_UNKNOWN), None);
    }

    #[test]
    fn epoch_round_trip() {
        for (s, ns) in [(0i64, 0i64), (5, 7), (-1, 500), (-3, 0)] {
            assert_eq!(epoch_parts(time(s, ns)), (s, ns));
        }
    }
}
