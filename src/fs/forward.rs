//! The forward file system ([`CofferFs`]) as [`Ops`]: each operation calls its `do_*` helper
//! (in `dirops`, `fileops`, `attrops`, `xattrops`).

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use fuser::{FileAttr, Generation, INodeNo, Notifier};

use super::attrops::{SetAttr, StatFs};
use super::core::{Activity, CofferFs};
use super::handles::DirEntry;
use super::ops::{not_served, Caller, EntryOut, Features, Ops, PlusSink, WriteMode};
use super::watch::Ticket;
use crate::vault::Result;

impl Ops for CofferFs {
    fn control(
        fs: &Arc<Self>,
        socket: std::path::PathBuf,
        config: std::path::PathBuf,
    ) -> Option<super::control::Control> {
        match super::control::serve(fs.clone(), socket.clone(), config) {
            Ok(c) => Some(c),
            Err(e) => {
                log::warn!(
                    "{}: no control socket ({e}): `coffer rekey` cannot reach this mount",
                    socket.display()
                );
                None
            }
        }
    }

    const FEATURES: Features = Features {
        writes: true,
        readdirplus: true,
    };

    fn watch_backing(fs: &Arc<Self>) -> Option<super::watch::Running> {
        super::watch::events::start(fs)
    }

    fn own_op(&self) -> Option<super::watch::OwnOp> {
        // A watch whose events name their process waits for no request.
        self.recording().map(|w| w.own_op())
    }

    fn change_failed(&self, names: &[(u64, &[u8])], inodes: &[u64]) {
        self.own_change_failed(names, inodes);
    }

    fn pages_unchanged(&self, ino: u64, fh: u64) -> bool {
        self.watch.is_some() && CofferFs::pages_unchanged(self, ino, fh)
    }

    fn entry_ticket(&self, dir: u64) -> Ticket {
        self.ticket(dir)
    }

    fn attr_ticket(&self, ino: u64) -> Ticket {
        CofferFs::attr_ticket(self, ino)
    }

    fn ttl(&self, t: Ticket) -> Duration {
        CofferFs::ttl(self, t)
    }

    fn cache_absence(&self, dir: u64, name: &[u8], t: Ticket) -> Option<Duration> {
        let w = self.watch.as_ref()?;
        let ttl = w.ttl(t);
        (ttl > super::core::TTL && w.note_negative(dir, name)).then_some(ttl)
    }

    fn activity(&self) -> Arc<Activity> {
        self.activity.clone()
    }

    fn writeback_cache(&self) -> bool {
        self.writeback()
    }

    fn writeback_refused(&self) {
        self.writeback_cache.store(false, std::sync::atomic::Ordering::Relaxed);
    }

    fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        CofferFs::notifier_slot(self)
    }

    fn lookup(&self, parent: u64, name: &[u8]) -> Result<EntryOut> {
        self.do_lookup(parent, name)
    }

    fn forget(&self, ino: u64, n: u64) {
        self.do_forget(ino, n);
    }

    fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr> {
        self.do_getattr(ino, fh)
    }

    fn readlink(&self, ino: u64) -> Result<Vec<u8>> {
        self.do_readlink(ino)
    }

    fn open(&self, ino: u64, flags: i32) -> Result<u64> {
        self.do_open(ino, flags)
    }

    fn read(&self, ino: u64, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; size as usize];
        let n = self.do_read(ino, fh, offset, &mut buf)?;
        buf.truncate(n);
        Ok(buf)
    }

    fn read_into(&self, ino: u64, fh: u64, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.do_read(ino, fh, offset, buf)
    }

    fn release(&self, fh: u64) {
        self.do_release(fh);
    }

    fn opendir(&self, ino: u64) -> Result<u64> {
        if self.watch.is_some() {
            // ENOSYS: from now on the kernel opens directories itself, sends no OPENDIR or
            // RELEASEDIR, and caches listings (FOPEN_CACHE_DIR), which the watcher drops
            // when the backing directory changes; reads come without a handle.
            return Err(not_served("opendir"));
        }
        self.do_opendir(ino)
    }

    fn readdir(&self, ino: u64, fh: u64, offset: u64) -> Result<Arc<Vec<DirEntry>>> {
        self.do_readdir(ino, fh, offset)
    }

    fn releasedir(&self, fh: u64) {
        self.do_releasedir(fh);
    }

    fn statfs(&self) -> Result<StatFs> {
        self.do_statfs()
    }

    fn access(&self, ino: u64, mask: i32, who: Caller) -> Result<()> {
        self.do_access(ino, mask, who)
    }

    fn readdirplus(&self, ino: u64, fh: u64, offset: u64, sink: &mut PlusSink<'_>) -> Result<()> {
        let entries = self.do_readdir(ino, fh, offset)?;
        let dir = self.dir(ino)?;
        let self_attr = self.do_getattr(ino, None)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, e) in entries.iter().enumerate().skip(start) {
            let off = i as u64 + 1;
            if e.name == b"." || e.name == b".." {
                // `.` and `..`: the kernel takes no lookup and ignores the attributes.
                let mut attr = self_attr;
                attr.ino = INodeNo(e.ino);
                if sink(off, &e.name, &attr, Generation(0)) {
                    break;
                }
                continue;
            }
            let Some((attr, generation)) = self.plus_entry(ino, &dir, e) else {
                continue;
            };
            if sink(off, &e.name, &attr, generation) {
                // Not sent: take back the lookup it counted.
                self.do_forget(attr.ino.0, 1);
                break;
            }
        }
        Ok(())
    }

    fn flush(&self, _ino: u64, _fh: u64) -> Result<()> {
        // Writes reach the backing file synchronously and nothing is buffered here: ENOSYS
        // tells the kernel to stop sending FLUSH, saving a round trip on every close().
        Err(not_served("flush"))
    }

    fn fsync(&self, ino: u64, fh: u64, datasync: bool) -> Result<()> {
        self.do_fsync(ino, fh, datasync)
    }

    fn fsyncdir(&self, ino: u64) -> Result<()> {
        self.do_fsyncdir(ino)
    }

    fn lseek(&self, ino: u64, fh: u64, offset: i64, whence: i32) -> Result<i64> {
        if self.writeback() {
            // The kernel does not write dirty pages back before asking, so the vault's holes
            // are not the file's: ENOSYS makes it answer from its own size (all data).
            return Err(not_served("lseek"));
        }
        self.do_lseek(ino, fh, offset, whence)
    }

    fn getxattr(&self, ino: u64, name: &[u8]) -> Result<Vec<u8>> {
        self.do_getxattr(ino, name)
    }

    fn listxattr(&self, ino: u64) -> Result<Vec<u8>> {
        self.do_listxattr(ino)
    }

    fn setattr(&self, ino: u64, fh: Option<u64>, s: SetAttr) -> Result<FileAttr> {
        // Records its own change where it stats the result.
        self.do_setattr(ino, fh, s)
    }

    fn mknod(&self, parent: u64, name: &[u8], mode: u32, rdev: u32, who: Caller) -> Result<EntryOut> {
        self.do_mknod(parent, name, mode, rdev, who)
    }

    fn mkdir(&self, parent: u64, name: &[u8], mode: u32, who: Caller) -> Result<EntryOut> {
        self.do_mkdir(parent, name, mode, who)
    }

    fn unlink(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.do_unlink(parent, name)
    }

    fn rmdir(&self, parent: u64, name: &[u8]) -> Result<()> {
        self.do_rmdir(parent, name)
    }

    fn symlink(&self, parent: u64, name: &[u8], target: &[u8], who: Caller) -> Result<EntryOut> {
        self.do_symlink(parent, name, target, who)
    }

    fn rename(&self, parent: u64, name: &[u8], new_parent: u64, new_name: &[u8], flags: u32) -> Result<()> {
        self.do_rename(parent, name, new_parent, new_name, flags)
    }

    fn link(&self, ino: u64, new_parent: u64, new_name: &[u8]) -> Result<EntryOut> {
        self.do_link(ino, new_parent, new_name)
    }

    fn create(&self, parent: u64, name: &[u8], mode: u32, flags: i32, who: Caller) -> Result<(EntryOut, u64)> {
        self.do_create(parent, name, mode, flags, who)
    }

    fn write(&self, ino: u64, fh: u64, offset: u64, data: &[u8], mode: WriteMode) -> Result<u32> {
        // With the writeback cache every write carries the kernel's offset: its size is the
        // file's, dirty pages included, and it resolved O_APPEND against it.
        let append = mode.append && !self.writeback();
        self.do_write(ino, fh, offset, data, append, mode.kill_privs)
            .inspect_err(|_| self.retire_after_failed_writeback(ino))
    }

    fn fallocate(&self, ino: u64, fh: u64, offset: u64, length: u64, mode: i32, who: Caller) -> Result<()> {
        self.do_fallocate(ino, fh, offset, length, mode, who)
            .inspect(|_| self.own_change_ino(ino))
    }

    fn setxattr(&self, ino: u64, name: &[u8], value: &[u8], flags: i32) -> Result<()> {
        self.do_setxattr(ino, name, value, flags)
            .inspect(|_| self.own_change_ino(ino))
    }

    fn removexattr(&self, ino: u64, name: &[u8]) -> Result<()> {
        self.do_removexattr(ino, name).inspect(|_| self.own_change_ino(ino))
    }
}
