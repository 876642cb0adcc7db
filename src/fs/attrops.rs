//! Attribute operations: getattr, setattr (truncate, chmod, chown, utimens), statfs, access.

use std::os::unix::fs::PermissionsExt;
use std::time::SystemTime;

use fuser::{FileAttr, FileType, TimeOrNow};

use super::attr::{self, from_fuser_time};
use super::core::CofferFs;
use super::fileops::{has_no_name, without_set_id};
use super::inodes::ROOT;
use super::ops::Caller;
use crate::format::offsets::{CIPHER_BLOCK, PLAIN_BLOCK};
use crate::vault::{IoContext, Result, TimeSpec, VaultError};

/// What a setattr asks for.
#[derive(Debug, Default, Clone, Copy)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New plaintext size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<TimeOrNow>,
    /// New modification time.
    pub mtime: Option<TimeOrNow>,
    /// The caller lacks CAP_FSETID: a truncate clears set-ID bits (with HANDLE_KILLPRIV_V2
    /// that is the daemon's job).
    pub kill_privs: bool,
}

fn spec(t: Option<TimeOrNow>) -> TimeSpec {
    match t {
        None => TimeSpec::Omit,
        Some(TimeOrNow::Now) => TimeSpec::Now,
        Some(TimeOrNow::SpecificTime(t)) => {
            let (s, ns) = from_fuser_time(t);
            TimeSpec::At(s, ns)
        }
    }
}

fn system_time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => {
            let (s, ns) = from_fuser_time(t);
            attr::system_time(s, ns)
        }
    }
}

/// Statfs values (plaintext view of the backing file system).
#[derive(Debug, Clone, Copy)]
pub struct StatFs {
    /// Total blocks.
    pub blocks: u64,
    /// Free blocks.
    pub bfree: u64,
    /// Blocks free for unprivileged users.
    pub bavail: u64,
    /// Total inodes.
    pub files: u64,
    /// Free inodes.
    pub ffree: u64,
    /// Block size.
    pub bsize: u32,
    /// Longest plaintext name.
    pub namelen: u32,
    /// Fragment size.
    pub frsize: u32,
}

impl CofferFs {
    pub(super) fn do_getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr> {
        self.attr_of(ino, fh)
    }

    pub(super) fn do_setattr(&self, ino: u64, fh: Option<u64>, mut s: SetAttr) -> Result<FileAttr> {
        let info = self.node(ino)?;
        if self.vault.read_only() {
            return Err(VaultError::ReadOnly);
        }
        if let Some(size) = s.size {
            self.truncate(ino, fh, size)?;
            if s.kill_privs && s.mode.is_none() && info.fmt == libc::S_IFREG {
                let perm = u32::from(self.attr_of(ino, fh)?.perm);
                s.mode = without_set_id(perm);
            }
        }
        let owner = s.uid.is_some() || s.gid.is_some();
        let times = s.atime.is_some() || s.mtime.is_some();
        if s.mode.is_none() && !owner && !times {
            if s.size.is_some() {
                self.own_change_ino(ino);
            }
            return self.attr_of(ino, fh);
        }
        if s.mode.is_some() && info.fmt == libc::S_IFLNK {
            return Err(VaultError::Unsupported("chmod of a symlink"));
        }
        let (uid, gid) = (s.uid.unwrap_or(u32::MAX), s.gid.unwrap_or(u32::MAX));
        if ino == ROOT {
            let d = self.root();
            if owner {
                d.fd.fchown(uid, gid).at(&d.rel)?;
            }
            if let Some(m) = s.mode {
                d.fd.fchmod(m & 0o7777).at(&d.rel)?;
            }
            if times {
                d.fd.futimens(spec(s.atime), spec(s.mtime)).at(&d.rel)?;
            }
            self.own_change_fd(&d.fd);
            return self.attr_of(ino, fh);
        }
        match self.locate_with(ino, &info) {
            Ok(l) => {
                let rel = l.dir.rel_child(&l.entry);
                if owner {
                    l.dir.fd.chown(&l.entry, uid, gid).at(&rel)?;
                }
                if let Some(m) = s.mode {
                    l.dir.fd.chmod(&l.entry, m & 0o7777).at(&rel)?;
                }
                if times {
                    l.dir.fd.utimens(&l.entry, spec(s.atime), spec(s.mtime)).at(&rel)?;
                }
                // The new attributes through the name just used, when it is still this object
                // (the same stat records the change as the mount's own).
                if let Ok(st) = self.stat_own_change(&l.dir.fd, &l.entry, Some(info.backing)) {
                    if fh.is_none() && attr::backing_id(&st) == info.backing {
                        let link_len = self.link_len(&l.dir, &l.entry, &st);
                        return Ok(attr::to_attr(ino, &st, link_len));
                    }
                }
            }
            Err(e) if !has_no_name(&e) => return Err(e),
            Err(e) => {
                // No name left (unlinked while open): change it through an open descriptor.
                let h = self.files.find(|h| h.ino == ino).ok_or(e)?;
                let file = h.file();
                let f = file.backing();
                let rel = file.rel();
                if owner {
                    std::os::unix::fs::fchown(f, s.uid, s.gid).at(rel)?;
                }
                if let Some(m) = s.mode {
                    f.set_permissions(std::fs::Permissions::from_mode(m & 0o7777)).at(rel)?;
                }
                if times {
                    let mut t = std::fs::FileTimes::new();
                    if let Some(a) = s.atime {
                        t = t.set_accessed(system_time(a));
                    }
                    if let Some(m) = s.mtime {
                        t = t.set_modified(system_time(m));
                    }
                    f.set_times(t).at(rel)?;
                }
                self.own_change_fd(f);
            }
        }
        self.attr_of(ino, fh)
    }

    pub(super) fn do_statfs(&self) -> Result<StatFs> {
        self.activity.touch();
        let d = self.root();
        let v = d.fd.statvfs().at(self.vault.cipherdir())?;
        // Each 4096-byte plaintext block takes 4128 bytes of backing space.
        let scale = |n: u64| (u128::from(n) * u128::from(PLAIN_BLOCK) / u128::from(CIPHER_BLOCK)) as u64;
        Ok(StatFs {
            blocks: scale(v.f_blocks),
            bfree: scale(v.f_bfree),
            bavail: scale(v.f_bavail),
            files: v.f_files,
            ffree: v.f_ffree,
            bsize: v.f_bsize as u32,
            namelen: crate::format::names::NAME_MAX as u32,
            frsize: v.f_frsize as u32,
        })
    }

    /// access(): asked only without default_permissions (owner-only read-write mounts);
    /// answered from the object's mode and owner as the kernel would (EROFS for W_OK on a
    /// read-only vault).
    pub(super) fn do_access(&self, ino: u64, mask: i32, who: Caller) -> Result<()> {
        let attr = self.attr_of(ino, None)?;
        if mask & libc::W_OK != 0 && self.vault.read_only() {
            return Err(VaultError::ReadOnly);
        }
        let in_group = attr.gid == who.gid || (who.uid == geteuid() && supplementary_groups().contains(&attr.gid));
        let dir = attr.kind == FileType::Directory;
        if may_access(u32::from(attr.perm), dir, attr.uid, in_group, who.uid, mask) {
            Ok(())
        } else {
            Err(VaultError::inode(ino, libc::EACCES))
        }
    }
}

fn geteuid() -> u32 {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() }
}

/// The daemon's supplementary groups (it runs as the mount's owner).
fn supplementary_groups() -> Vec<u32> {
    let mut groups = vec![0 as libc::gid_t; 256];
    // SAFETY: the buffer holds `groups.len()` entries.
    let n = unsafe { libc::getgroups(groups.len() as libc::c_int, groups.as_mut_ptr()) };
    groups.truncate(usize::try_from(n).unwrap_or(0));
    groups
}

/// Whether `uid` (in the object's group when `in_group`) may access an object with permission
/// bits `perm` owned by `owner` for `mask` (R_OK|W_OK|X_OK, or F_OK): owner, group or other
/// bits; root may read and write anything and execute what has an x bit (or is a directory).
fn may_access(perm: u32, dir: bool, owner: u32, in_group: bool, uid: u32, mask: i32) -> bool {
    let want = (mask & (libc::R_OK | libc::W_OK | libc::X_OK)) as u32;
    if uid == 0 {
        return want & libc::X_OK as u32 == 0 || dir || perm & 0o111 != 0;
    }
    let bits = if uid == owner {
        perm >> 6
    } else if in_group {
        perm >> 3
    } else {
        perm
    } & 7;
    bits & want == want
}

#[cfg(test)]
mod tests {
    use super::may_access;

    const R: i32 = libc::R_OK;
    const W: i32 = libc::W_OK;
    const X: i32 = libc::X_OK;

    #[test]
    fn access_follows_owner_group_other_bits() {
        assert!(may_access(0o640, false, 1000, false, 1000, R | W));
        assert!(!may_access(0o440, false, 1000, false, 1000, W));
        assert!(!may_access(0o640, false, 1000, false, 1000, X));
        assert!(may_access(0o640, false, 1, true, 1000, R));
        assert!(!may_access(0o640, false, 1, true, 1000, W));
        assert!(!may_access(0o640, false, 1, false, 1000, R));
        assert!(may_access(0o000, false, 1, false, 1000, libc::F_OK));
        // The owner's bits decide even when "other" would allow more.
        assert!(!may_access(0o077, false, 1000, true, 1000, R));
    }

    #[test]
    fn root_reads_and_writes_anything_but_executes_only_x_files() {
        assert!(may_access(0o000, false, 1000, false, 0, R | W));
        assert!(!may_access(0o644, false, 1000, false, 0, X));
        assert!(may_access(0o744, false, 1000, false, 0, X));
        assert!(may_access(0o000, true, 1000, false, 0, X));
    }
}
