//! The one fuser `Filesystem`, over any [`Ops`]: each method converts the request's arguments,
//! calls its operation and replies. Errors become errnos only through `VaultError::errno()`;
//! corruption is logged once here with its path. The kernel features every mount asks for are
//! requested in one place, `init`.

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::SystemTime;

use fuser::{
    AccessFlags, BsdFileFlags, Errno, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig,
    LockOwner, OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus,
    ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

use super::attrops::SetAttr;
use super::core::TTL;
use super::counts::Req;
use super::watch::Ticket;
use std::sync::Arc;
use std::time::Duration;

use super::ops::{Caller, Ops, WriteMode};
use crate::vault::VaultError;

/// Largest read buffer a serving thread keeps between requests (random reads reuse it; a
/// streaming read's larger buffer is freed after its request).
const READ_BUF_KEEP: usize = 128 * 1024;

thread_local! {
    /// The buffer a serving thread reads into: zeroed once when it grows, not per request.
    static READ_BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// Serves `T` to the kernel, counting each request in its activity.
#[derive(Debug)]
pub struct Adapter<T: Ops>(Arc<T>, Arc<super::core::Activity>);

impl<T: Ops> Adapter<T> {
    /// Serves `ops` (shared with what serves beside the mount, e.g. its control socket).
    pub fn new(ops: Arc<T>) -> Self {
        let activity = ops.activity();
        Adapter(ops, activity)
    }
}

/// Logs an error (corruption loudly, a plain file changed mid-read as a warning: it is not
/// damage, a retry reads the new version) and maps it to its errno.
fn errno(op: &str, e: VaultError) -> Errno {
    if e.is_changed() {
        log::warn!("{op}: {e}");
    } else if e.is_corrupt() {
        log::error!("{op}: {e}");
    } else {
        log::debug!("{op}: {e}");
    }
    Errno::from_i32(e.errno())
}

fn caller(req: &Request) -> Caller {
    Caller {
        uid: req.uid(),
        gid: req.gid(),
    }
}

/// Tells `ops` when `r`, the result of a request changing `names` (directory, name) and
/// `inodes`, is a failure (see [`Ops::change_failed`]).
fn if_failed<T: Ops, R>(ops: &T, r: &Result<R, VaultError>, names: &[(INodeNo, &OsStr)], inodes: &[INodeNo]) {
    if r.is_err() {
        let names: Vec<(u64, &[u8])> = names.iter().map(|(d, n)| (d.0, n.as_bytes())).collect();
        let inodes: Vec<u64> = inodes.iter().map(|i| i.0).collect();
        ops.change_failed(&names, &inodes);
    }
}

fn ok_or_reply(r: Result<(), VaultError>, op: &str, reply: ReplyEmpty) {
    match r {
        Ok(()) => reply.ok(),
        Err(e) => reply.error(errno(op, e)),
    }
}

/// The timeout of `attr` in a reply whose request took ticket `t`. A file with several links
/// keeps the short one: a change through a name in an unwatched directory would not be seen.
fn attr_ttl<T: Ops>(ops: &T, t: Ticket, attr: &fuser::FileAttr) -> Duration {
    if attr.kind != fuser::FileType::Directory && attr.nlink > 1 {
        return TTL;
    }
    ops.ttl(t)
}

fn entry_or_reply<T: Ops>(
    ops: &T,
    t: Ticket,
    r: Result<super::ops::EntryOut, VaultError>,
    op: &str,
    reply: ReplyEntry,
) {
    match r {
        Ok((attr, generation)) => reply.entry(&attr_ttl(ops, t, &attr), &attr, generation),
        Err(e) => reply.error(errno(op, e)),
    }
}

/// FOPEN_KEEP_CACHE when a request that took ticket `t` may keep the file's cached pages.
fn keep_cache<T: Ops>(ops: &T, t: Ticket) -> FopenFlags {
    if ops.ttl(t) > TTL {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

/// FOPEN_KEEP_CACHE when the file is as it was when its cached pages were read.
fn pages_kept<T: Ops>(ops: &T, ino: u64, fh: u64) -> FopenFlags {
    if ops.pages_unchanged(ino, fh) {
        FopenFlags::FOPEN_KEEP_CACHE
    } else {
        FopenFlags::empty()
    }
}

/// The attributes of a negative entry reply (inode 0: only its timeout counts).
fn absent_attr() -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// Sends a size probe, the data, or ERANGE when it does not fit `size`.
fn xattr_reply(r: Result<Vec<u8>, VaultError>, op: &str, size: u32, reply: ReplyXattr) {
    match r {
        Ok(v) if size == 0 => reply.size(v.len() as u32),
        Ok(v) if v.len() > size as usize => reply.error(Errno::ERANGE),
        Ok(v) => reply.data(&v),
        Err(e) => reply.error(errno(op, e)),
    }
}

impl<T: Ops> Filesystem for Adapter<T> {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        let features = T::FEATURES;
        if features.writes {
            if let Err(nearest) = config.set_max_write(MAX_WRITE) {
                let _ = config.set_max_write(nearest);
            }
        }
        // The kernel offers its maximum readahead; keep it (setting u32::MAX yields that value).
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_background(64);
        // No writeback cache unless asked for (the kernel would ignore size and mtime from
        // getattr, hiding a sync client's in-place rewrites, and a full disk would show only
        // at fsync and close); auto_inval_data drops cached pages when size or mtime change.
        // Neither mode exports file handles (see NO_FILE_HANDLES).
        let mut wanted = InitFlags::FUSE_AUTO_INVAL_DATA | InitFlags::FUSE_PARALLEL_DIROPS | super::NO_FILE_HANDLES;
        if features.writes {
            // The daemon clears set-id bits itself (writes carry a flag), so the kernel stops
            // asking getxattr("security.capability") and getattr before every write and chown.
            wanted |= InitFlags::FUSE_HANDLE_KILLPRIV_V2;
        }
        if features.writes && self.0.writeback_cache() {
            if config.capabilities().contains(InitFlags::FUSE_WRITEBACK_CACHE) {
                wanted |= InitFlags::FUSE_WRITEBACK_CACHE;
            } else {
                log::warn!("the kernel offers no writeback cache: writes reach CIPHERDIR before write() returns");
                self.0.writeback_refused();
            }
        }
        if features.readdirplus {
            wanted |= InitFlags::FUSE_DO_READDIRPLUS | InitFlags::FUSE_READDIRPLUS_AUTO;
        }
        let _ = config.add_capabilities(wanted & config.capabilities());
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.1.add(Req::Lookup);
        let t = self.0.entry_ticket(parent.0);
        match self.0.lookup(parent.0, name.as_bytes()) {
            Err(e) if e.errno() == libc::ENOENT => match self.0.cache_absence(parent.0, name.as_bytes(), t) {
                // Inode 0: the kernel caches that the name is absent, for the timeout.
                Some(ttl) => reply.entry(&ttl, &absent_attr(), Generation(0)),
                None => reply.error(errno("lookup", e)),
            },
            r => entry_or_reply(&*self.0, t, r, "lookup", reply),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.1.add(Req::Forget);
        self.0.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        self.1.add(Req::Getattr);
        let t = self.0.attr_ticket(ino.0);
        match self.0.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(attr) => reply.attr(&attr_ttl(&*self.0, t, &attr), &attr),
            Err(e) => reply.error(errno("getattr", e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.1.add(Req::Setattr);
        let _own = self.0.own_op();
        let s = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime,
            mtime,
            kill_privs: size.is_some() && req.uid() != 0,
        };
        let t = self.0.attr_ticket(ino.0);
        let r = self.0.setattr(ino.0, fh.map(|f| f.0), s);
        if_failed(&*self.0, &r, &[], &[ino]);
        match r {
            Ok(attr) => reply.attr(&attr_ttl(&*self.0, t, &attr), &attr),
            Err(e) => reply.error(errno("setattr", e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        self.1.add(Req::Readlink);
        match self.0.readlink(ino.0) {
            Ok(t) => reply.data(&t),
            Err(e) => reply.error(errno("readlink", e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        rdev: u32,
        reply: ReplyEntry,
    ) {
        self.1.add(Req::Mknod);
        let _own = self.0.own_op();
        let t = self.0.entry_ticket(parent.0);
        let r = self.0.mknod(parent.0, name.as_bytes(), mode, rdev, caller(req));
        if_failed(&*self.0, &r, &[(parent, name)], &[]);
        entry_or_reply(&*self.0, t, r, "mknod", reply);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        self.1.add(Req::Mkdir);
        let _own = self.0.own_op();
        let t = self.0.entry_ticket(parent.0);
        let r = self.0.mkdir(parent.0, name.as_bytes(), mode, caller(req));
        if_failed(&*self.0, &r, &[(parent, name)], &[]);
        entry_or_reply(&*self.0, t, r, "mkdir", reply);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.1.add(Req::Unlink);
        let _own = self.0.own_op();
        let r = self.0.unlink(parent.0, name.as_bytes());
        if_failed(&*self.0, &r, &[(parent, name)], &[]);
        ok_or_reply(r, "unlink", reply);
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.1.add(Req::Rmdir);
        let _own = self.0.own_op();
        let r = self.0.rmdir(parent.0, name.as_bytes());
        if_failed(&*self.0, &r, &[(parent, name)], &[]);
        ok_or_reply(r, "rmdir", reply);
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        self.1.add(Req::Symlink);
        let _own = self.0.own_op();
        let target = target.as_os_str().as_bytes();
        let t = self.0.entry_ticket(parent.0);
        let r = self.0.symlink(parent.0, link_name.as_bytes(), target, caller(req));
        if_failed(&*self.0, &r, &[(parent, link_name)], &[]);
        entry_or_reply(&*self.0, t, r, "symlink", reply);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        self.1.add(Req::Rename);
        let _own = self.0.own_op();
        let r = self
            .0
            .rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), flags.bits());
        if_failed(&*self.0, &r, &[(parent, name), (newparent, newname)], &[]);
        ok_or_reply(r, "rename", reply);
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        self.1.add(Req::Link);
        let _own = self.0.own_op();
        let t = self.0.entry_ticket(newparent.0);
        let r = self.0.link(ino.0, newparent.0, newname.as_bytes());
        if_failed(&*self.0, &r, &[(newparent, newname)], &[ino]);
        entry_or_reply(&*self.0, t, r, "link", reply);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        self.1.add(Req::Open);
        // Never direct_io (it breaks mmap). The page cache is kept across opens only while
        // the file's directory is watched (a change made in CIPHERDIR drops it); otherwise the
        // kernel drops it at open.
        let t = self.0.attr_ticket(ino.0);
        match self.0.open(ino.0, flags.0) {
            Ok(fh) => {
                let keep = keep_cache(&*self.0, t) & pages_kept(&*self.0, ino.0, fh);
                reply.opened(FileHandle(fh), keep)
            }
            Err(e) => reply.error(errno("open", e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.1.add(Req::Read);
        READ_BUF.with(|cell| {
            let Ok(mut buf) = cell.try_borrow_mut() else {
                let mut own = vec![0u8; size as usize];
                return match self.0.read_into(ino.0, fh.0, offset, &mut own) {
                    Ok(n) => reply.data(&own[..n]),
                    Err(e) => reply.error(errno("read", e)),
                };
            };
            let size = size as usize;
            if buf.len() < size {
                buf.resize(size, 0);
            }
            match self.0.read_into(ino.0, fh.0, offset, &mut buf[..size]) {
                Ok(n) => reply.data(&buf[..n]),
                Err(e) => reply.error(errno("read", e)),
            }
            if buf.len() > READ_BUF_KEEP {
                *buf = Vec::new();
            }
        });
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.1.add(Req::Write);
        let _own = self.0.own_op();
        // O_APPEND (as set now, fcntl may change it) lands at the vault's EOF; page-cache
        // writeback (mmap) always carries its own offset.
        let mode = WriteMode {
            append: flags.0 & libc::O_APPEND != 0 && !write_flags.contains(WriteFlags::FUSE_WRITE_CACHE),
            kill_privs: write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID),
        };
        match self.0.write(ino.0, fh.0, offset, data, mode) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno("write", e)),
        }
    }

    fn flush(&self, _req: &Request, ino: INodeNo, fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        self.1.add(Req::Flush);
        ok_or_reply(self.0.flush(ino.0, fh.0), "flush", reply);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.1.add(Req::Release);
        // Only a handle open for writing changes CIPHERDIR at its close: the watcher need not
        // wait for the releases of readers.
        let _own = (flags.0 & libc::O_ACCMODE != libc::O_RDONLY).then(|| self.0.own_op());
        self.0.release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        self.1.add(Req::Fsync);
        ok_or_reply(self.0.fsync(ino.0, fh.0, datasync), "fsync", reply);
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.1.add(Req::Opendir);
        match self.0.opendir(ino.0) {
            Ok(fh) => reply.opened(FileHandle(fh), FopenFlags::empty()),
            Err(e) => reply.error(errno("opendir", e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.1.add(Req::Readdir);
        let entries = match self.0.readdir(ino.0, fh.0, offset) {
            Ok(e) => e,
            Err(e) => return reply.error(errno("readdir", e)),
        };
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(start) {
            if reply.add(INodeNo(e.ino), i as u64 + 1, e.kind, OsStr::from_bytes(&e.name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.1.add(Req::Readdirplus);
        let t = self.0.entry_ticket(ino.0);
        let ops = &*self.0;
        let r = ops.readdirplus(ino.0, fh.0, offset, &mut |off, name, attr, generation| {
            reply.add(
                attr.ino,
                off,
                OsStr::from_bytes(name),
                &attr_ttl(ops, t, attr),
                attr,
                generation,
            )
        });
        match r {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno("readdirplus", e)),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.1.add(Req::Releasedir);
        self.0.releasedir(fh.0);
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.1.add(Req::Fsyncdir);
        ok_or_reply(self.0.fsyncdir(ino.0), "fsyncdir", reply);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.1.add(Req::Statfs);
        match self.0.statfs() {
            Ok(s) => reply.statfs(
                s.blocks, s.bfree, s.bavail, s.files, s.ffree, s.bsize, s.namelen, s.frsize,
            ),
            Err(e) => reply.error(errno("statfs", e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        self.1.add(Req::Setxattr);
        let _own = self.0.own_op();
        ok_or_reply(self.0.setxattr(ino.0, name.as_bytes(), value, flags), "setxattr", reply);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        self.1.add(Req::Getxattr);
        xattr_reply(self.0.getxattr(ino.0, name.as_bytes()), "getxattr", size, reply);
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.1.add(Req::Listxattr);
        xattr_reply(self.0.listxattr(ino.0), "listxattr", size, reply);
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.1.add(Req::Removexattr);
        let _own = self.0.own_op();
        ok_or_reply(self.0.removexattr(ino.0, name.as_bytes()), "removexattr", reply);
    }

    fn access(&self, req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        self.1.add(Req::Access);
        ok_or_reply(self.0.access(ino.0, mask.bits(), caller(req)), "access", reply);
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        self.1.add(Req::Create);
        let _own = self.0.own_op();
        let t = self.0.entry_ticket(parent.0);
        let r = self.0.create(parent.0, name.as_bytes(), mode, flags, caller(req));
        if_failed(&*self.0, &r, &[(parent, name)], &[]);
        match r {
            Ok(((attr, generation), fh)) => {
                let ttl = attr_ttl(&*self.0, t, &attr);
                let keep = keep_cache(&*self.0, t) & pages_kept(&*self.0, attr.ino.0, fh);
                reply.created(&ttl, &attr, generation, FileHandle(fh), keep)
            }
            Err(e) => reply.error(errno("create", e)),
        }
    }

    fn fallocate(
        &self,
        req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        self.1.add(Req::Fallocate);
        let _own = self.0.own_op();
        ok_or_reply(
            self.0.fallocate(ino.0, fh.0, offset, length, mode, caller(req)),
            "fallocate",
            reply,
        );
    }

    fn lseek(&self, _req: &Request, ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        self.1.add(Req::Lseek);
        match self.0.lseek(ino.0, fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno("lseek", e)),
        }
    }
}
