//! The reverse mount's operations ([`Ops`]): lookup, attributes, readlink, open/read/release,
//! directory listings, statfs, access. Every write operation keeps the trait's EROFS; xattrs
//! keep its "none" (ENODATA, an empty list).

use std::sync::{Arc, Mutex, OnceLock};

use fuser::{FileAttr, FileType, Generation, Notifier};

use super::super::attr::{kind_of_dtype, to_attr};
use super::super::attrops::StatFs;
use super::super::core::Activity;
use super::super::handles::{DirEntry, DirHandle, DirState};
use super::super::inodes::ROOT;
use super::super::ops::{Caller, EntryOut, Features, Ops};
use super::nodes::{identity, Node, OpenFile, ReverseFs};
use crate::vault::reverse::{Snapshot, Target};
use crate::vault::{IoContext, Result, VaultError};

/// FUSE attributes from a cipher-side stat: the size is already the vault's; regular files
/// show one link (each hard link is its own file in the vault).
fn attr(ino: u64, st: &libc::stat) -> FileAttr {
    let mut a = to_attr(ino, st, None);
    a.size = st.st_size as u64;
    a.blocks = st.st_blocks as u64;
    if st.st_mode & libc::S_IFMT == libc::S_IFREG {
        a.nlink = 1;
    }
    a
}

impl ReverseFs {
    /// Whether `ino` is a directory (by the file type the inode table recorded).
    fn is_dir(&self, ino: u64) -> bool {
        ino == ROOT || self.table().info(ino).is_some_and(|i| i.fmt == libc::S_IFDIR)
    }

    /// The cipher-side stat of `node` now (and remembers it).
    fn stat_node(&self, ino: u64, node: &Node) -> Result<libc::stat> {
        if ino == ROOT {
            return self.vault.root_fd().fstat().at(self.vault.plaindir());
        }
        let dir = self.dir(&node.dir_rel)?;
        let st = self.vault.stat(&dir, &node.target)?;
        *node.snap.lock().unwrap_or_else(|p| p.into_inner()) = Some(Snapshot::of_cipher(&st));
        Ok(st)
    }

    /// The cipher-side stat of the version an open handle of `ino` serves.
    fn open_version(&self, ino: u64, fh: Option<u64>) -> Option<libc::stat> {
        let own = fh.and_then(|fh| self.files.get(fh));
        let own = own.filter(|f| matches!(&**f, OpenFile::Plain { ino: i, .. } if *i == ino));
        let h = own.or_else(|| {
            self.files
                .find(|f| matches!(f, OpenFile::Plain { ino: i, .. } if *i == ino))
        })?;
        match &*h {
            OpenFile::Plain { file, .. } => Some(file.stat()),
            OpenFile::Virtual(_) => None,
        }
    }

    /// The listing of directory `ino`: `.`, `..`, then the cipher entries.
    fn snapshot(&self, ino: u64) -> Result<Vec<DirEntry>> {
        let node = self.node(ino)?;
        let rel = node.rel();
        let dir = self.dir(&rel)?;
        let dev = dir.fd.fstat().at(crate::vault::reverse::rel_path(&rel))?.st_dev;
        let listing = self.vault.list(&dir)?;
        let parent = self
            .table()
            .info(ino)
            .and_then(|i| i.locs.first().map(|l| l.0))
            .unwrap_or(ROOT);
        let mut out = DirEntry::dots(ino, parent, listing.len());
        let mut table = self.table();
        for e in listing {
            let kind = kind_of_dtype(e.d_type).unwrap_or(FileType::RegularFile);
            let id = match &e.target {
                Target::Plain(_) => (dev, e.ino),
                other => {
                    // SAFETY: an all-zero stat is a valid value; only the target matters here.
                    let st: libc::stat = unsafe { std::mem::zeroed() };
                    identity(&rel, other, &st)
                }
            };
            out.push(DirEntry {
                ino: table.number_for(id),
                kind,
                name: e.name,
            });
        }
        Ok(out)
    }
}

impl Ops for ReverseFs {
    const FEATURES: Features = Features {
        writes: false,
        readdirplus: false,
    };

    fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        ReverseFs::notifier_slot(self)
    }

    fn forget(&self, ino: u64, n: u64) {
        self.drop_lookups(ino, n);
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<EntryOut> {
        let pnode = self.node(parent)?;
        if !self.is_dir(parent) {
            return Err(VaultError::inode(parent, libc::ENOTDIR));
        }
        let dir_rel = pnode.rel();
        let dir = self.dir(&dir_rel)?;
        let entry = self.vault.lookup(&dir, name)?;
        let st = self.vault.stat(&dir, &entry.target)?;
        let (ino, generation) = self.remember(parent, name, &dir_rel, entry.target, &st);
        Ok((attr(ino, &st), Generation(generation)))
    }

    /// The attributes of `ino`: while a plain file of it is open, those of the version the
    /// handle serves (handle `fh` when given, else any), so the size a reader sees (fstat, or
    /// the kernel's own check before a read) is the size it will read.
    fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr> {
        let node = self.node(ino)?;
        if let Some(st) = self.open_version(ino, fh) {
            return Ok(attr(ino, &st));
        }
        let st = self.stat_node(ino, &node)?;
        Ok(attr(ino, &st))
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        let node = self.node(ino)?;
        match &node.target {
            Target::Plain(p) if ino != ROOT => {
                let dir = self.dir(&node.dir_rel)?;
                Ok(self.vault.cipher_link(&dir, p)?.backing)
            }
            _ => Err(VaultError::inode(ino, libc::EINVAL)),
        }
    }

    fn open(&self, ino: u64, flags: i32) -> Result<u64> {
        if flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0 {
            return Err(VaultError::ReadOnly);
        }
        let node = self.node(ino)?;
        if ino == ROOT {
            return Err(VaultError::inode(ino, libc::EISDIR));
        }
        let dir = self.dir(&node.dir_rel)?;
        let (file, seen) = match &node.target {
            Target::Plain(p) => {
                let file = self.vault.open_file(&dir, p)?;
                let now = file.snapshot();
                let seen = node.snap.lock().unwrap_or_else(|pe| pe.into_inner()).replace(now);
                (
                    OpenFile::Plain {
                        ino,
                        file: Box::new(file),
                    },
                    seen.map(|s| (s, now)),
                )
            }
            other => (
                OpenFile::Virtual(Arc::new(self.vault.virtual_content(&dir, other)?)),
                None,
            ),
        };
        self.activity.opened();
        let fh = self.files.insert(file);
        // Changed since the kernel last heard of it: served as it is now, and the kernel is told
        // before this open returns, so its next size check asks again (and gets this version).
        if let Some((seen, now)) = seen.filter(|(seen, now)| seen != now) {
            log::debug!("inode {ino}: plain file changed since its lookup; serving it as it is at open");
            self.invalidate_attr(ino);
            if (seen.dev, seen.ino) != (now.dev, now.ino) {
                self.invalidate_entries(ino);
            }
        }
        Ok(fh)
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        self.activity.touch();
        let f = self
            .files
            .get(fh)
            .ok_or_else(|| VaultError::handle(ino, fh, libc::EBADF))?;
        match &*f {
            OpenFile::Plain { file, .. } => file.read_at(offset, size as usize),
            OpenFile::Virtual(bytes) => {
                let start = (offset.min(bytes.len() as u64)) as usize;
                let end = start.saturating_add(size as usize).min(bytes.len());
                Ok(bytes[start..end].to_vec())
            }
        }
    }

    fn release(&self, fh: u64) {
        if self.files.remove(fh).is_some() {
            self.activity.closed();
        }
    }

    fn opendir(&self, ino: u64) -> Result<u64> {
        self.node(ino)?;
        if !self.is_dir(ino) {
            return Err(VaultError::inode(ino, libc::ENOTDIR));
        }
        let entries = self.snapshot(ino)?;
        Ok(self.dirs.insert(DirHandle {
            ino,
            state: Mutex::new(DirState {
                entries: Arc::new(entries),
                served: false,
            }),
        }))
    }

    /// The snapshot of handle `fh` for a read at `offset` (a read at 0 after others rewinds).
    fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        let h = self
            .dirs
            .get(fh)
            .ok_or_else(|| VaultError::handle(ino, fh, libc::EBADF))?;
        let mut state = h.state.lock().unwrap_or_else(|p| p.into_inner());
        if offset == 0 && state.served {
            state.entries = Arc::new(self.snapshot(h.ino)?);
        }
        state.served = true;
        Ok(state.entries.clone())
    }

    fn releasedir(&self, fh: u64) {
        self.dirs.remove(fh);
    }

    fn statfs(&self) -> Result<StatFs> {
        self.activity.touch();
        let v = self.vault.root_fd().statvfs().at(self.vault.plaindir())?;
        Ok(StatFs {
            blocks: v.f_blocks,
            bfree: v.f_bfree,
            bavail: v.f_bavail,
            files: v.f_files,
            ffree: v.f_ffree,
            bsize: v.f_bsize as u32,
            namelen: crate::format::names::NAME_MAX as u32,
            frsize: v.f_frsize as u32,
        })
    }

    fn access(&self, ino: u64, mask: i32, _who: Caller) -> Result<()> {
        self.node(ino)?;
        if mask & libc::W_OK != 0 {
            return Err(VaultError::ReadOnly);
        }
        Ok(())
    }
}
