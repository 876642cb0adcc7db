//! Extended attributes (user.* only), sealed by the vault and bound to their owner: a file's
//! header ID, or a directory's IV.

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use super::core::CofferFs;
use super::fileops::{fresh, has_no_name, read_lock, unlinked, write_lock};
use super::handles::FileHandle;
use super::inodes::ROOT;
use crate::vault::{CryptFile, Dir, Result, VaultError};

/// What an xattr call works on.
enum Target {
    Dir(Arc<Dir>),
    File(Box<CryptFile>, Arc<std::sync::RwLock<()>>),
    /// An open handle (the object has no name left): its file as it was when found.
    Handle(Arc<CryptFile>, Arc<FileHandle>),
    /// Symlinks and special files: no user xattrs (as on Linux file systems).
    None,
}

fn no_data(what: &[u8]) -> VaultError {
    VaultError::xattr(Some(what), libc::ENODATA)
}

impl Target {
    fn fd(&self) -> Option<RawFd> {
        match self {
            Target::Dir(d) => Some(d.fd.as_raw_fd()),
            Target::File(f, _) => Some(f.backing().as_raw_fd()),
            Target::Handle(f, _) => Some(f.backing().as_raw_fd()),
            Target::None => None,
        }
    }

    /// Backing path of the object, relative to CIPHERDIR (for corruption reports).
    fn rel(&self) -> &std::path::Path {
        match self {
            Target::Dir(d) => &d.rel,
            Target::File(f, _) => f.rel(),
            Target::Handle(f, _) => f.rel(),
            Target::None => std::path::Path::new(""),
        }
    }

    /// An xattr call's corruption report, put at the object (see [`VaultError::at_object`]).
    fn locate<T>(&self, r: Result<T>) -> Result<T> {
        r.map_err(|e| e.at_object(self.rel()))
    }

    fn file(&self) -> Option<(&CryptFile, &std::sync::RwLock<()>)> {
        match self {
            Target::File(f, l) => Some((f, l)),
            Target::Handle(f, h) => Some((f, &h.lock)),
            _ => None,
        }
    }
}

/// Whether the file `f` of a named target was unlinked between its open and the lock now
/// held: an online rekey renamed a new copy over it (under the same lock), or a sync client
/// replaced it. An xattr written there would be lost with it.
fn replaced(t: &Target, f: &CryptFile) -> bool {
    matches!(t, Target::File(..)) && unlinked(f)
}

impl CofferFs {
    fn xattr_target(&self, ino: u64, write: bool) -> Result<Target> {
        let info = self.node(ino)?;
        match info.fmt {
            libc::S_IFDIR => Ok(Target::Dir(self.dir(ino)?)),
            libc::S_IFREG => match self.open_backing(ino, &info, write) {
                Ok(f) => Ok(Target::File(Box::new(f), info.lock)),
                Err(e) if !has_no_name(&e) => Err(e),
                Err(e) => {
                    let h = self.files.find(|h| h.ino == ino && (h.writable || !write)).ok_or(e)?;
                    Ok(Target::Handle(h.file(), h))
                }
            },
            _ if ino == ROOT => Ok(Target::Dir(self.dir(ino)?)),
            _ => Ok(Target::None),
        }
    }

    pub(super) fn do_getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        // The kernel asks for security.capability before every write: a name the vault never
        // stores is refused here, before the backing file is found and opened.
        let info = self.node(ino)?;
        if ino == ROOT || matches!(info.fmt, libc::S_IFDIR | libc::S_IFREG) {
            self.vault.xattr_check_name(name)?;
        }
        let value = fresh(ino, || {
            let t = self.xattr_target(ino, false)?;
            let Some(fd) = t.fd() else { return Ok(Some(None)) };
            Ok(match (&t, t.file()) {
                (Target::Dir(d), _) => Some(t.locate(self.vault.xattr_get(fd, &d.iv, name))?),
                (_, Some((f, lock))) => {
                    let _g = read_lock(lock);
                    if replaced(&t, f) {
                        return Ok(None);
                    }
                    // A file without a header has no xattrs; check the name all the same.
                    let owner = f.header()?.map_or([0u8; 16], |h| h.file_id);
                    Some(t.locate(self.vault.xattr_get(fd, &owner, name))?)
                }
                _ => Some(None),
            })
        })?;
        value.ok_or_else(|| no_data(name))
    }

    pub(super) fn do_setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        fresh(ino, || {
            let t = self.xattr_target(ino, true)?;
            let Some(fd) = t.fd() else {
                return Err(VaultError::inode(ino, libc::EPERM));
            };
            match (&t, t.file()) {
                (Target::Dir(d), _) => {
                    // Packed xattrs are read, changed and written back: one writer at a time.
                    let lock = self.node(ino)?.lock;
                    let _g = write_lock(&lock);
                    t.locate(self.vault.xattr_set(fd, &d.iv, name, value, flags)).map(Some)
                }
                (_, Some((f, lock))) => {
                    let _g = write_lock(lock);
                    if replaced(&t, f) {
                        return Ok(None);
                    }
                    let owner = f.ensure_header()?.file_id;
                    t.locate(self.vault.xattr_set(fd, &owner, name, value, flags)).map(Some)
                }
                _ => Err(VaultError::inode(ino, libc::EPERM)),
            }
        })
    }

    pub(super) fn do_listxattr(&self, ino: u64) -> Result<Vec<u8>> {
        let names = fresh(ino, || {
            let t = self.xattr_target(ino, false)?;
            let Some(fd) = t.fd() else { return Ok(Some(Vec::new())) };
            Ok(Some(match (&t, t.file()) {
                (Target::Dir(d), _) => t.locate(self.vault.xattr_list(fd, &d.iv))?,
                (_, Some((f, lock))) => {
                    let _g = read_lock(lock);
                    if replaced(&t, f) {
                        return Ok(None);
                    }
                    let owner = f.header()?.map_or([0u8; 16], |h| h.file_id);
                    t.locate(self.vault.xattr_list(fd, &owner))?
                }
                _ => Vec::new(),
            }))
        })?;
        let mut out = Vec::new();
        for n in names {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    pub(super) fn do_removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        fresh(ino, || {
            let t = self.xattr_target(ino, true)?;
            let Some(fd) = t.fd() else { return Err(no_data(name)) };
            match (&t, t.file()) {
                (Target::Dir(d), _) => {
                    let lock = self.node(ino)?.lock;
                    let _g = write_lock(&lock);
                    t.locate(self.vault.xattr_remove(fd, &d.iv, name)).map(Some)
                }
                (_, Some((f, lock))) => {
                    let _g = write_lock(lock);
                    if replaced(&t, f) {
                        return Ok(None);
                    }
                    let owner = f.header()?.map_or([0u8; 16], |h| h.file_id);
                    t.locate(self.vault.xattr_remove(fd, &owner, name)).map(Some)
                }
                _ => Err(no_data(name)),
            }
        })
    }
}
