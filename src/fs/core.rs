//! The state every operation shares, and how an inode is found again in CIPHERDIR: through a
//! name the kernel knows it by, checked against its backing identity.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, RwLock};
use std::time::{Duration, Instant};

use fuser::{FileAttr, Generation, INodeNo, Notifier};

use super::attr::{backing_id, to_attr};
use super::config_watch::ConfigWatch;
use super::dir_cache::{dir_cache_budget, dir_stamp, out_of_fds, CachedDir, DirCache, DIR_REREAD};
use super::handles::{DirHandle, FileHandle, Handles};
use super::inodes::{Identity, Inodes, NodeInfo, ROOT};
use crate::vault::walk::nofile_soft;
use crate::vault::{CryptFile, Dir, IoContext, Notice, Result, Vault, VaultError};

/// Entry and attribute timeout: short, so changes a sync client makes show up quickly.
pub const TTL: Duration = Duration::from_secs(1);

/// When the mount last served a request (for `--idle`).
#[derive(Debug)]
pub struct Activity {
    base: Instant,
    last_ms: AtomicU64,
    open: AtomicUsize,
    requests: super::counts::RequestCounts,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            base: Instant::now(),
            last_ms: AtomicU64::new(0),
            open: AtomicUsize::new(0),
            requests: super::counts::RequestCounts::default(),
        }
    }
}

impl Activity {
    /// Counts a request of kind `r`.
    pub fn add(&self, r: super::counts::Req) {
        self.requests.add(r);
    }

    /// The requests served so far, by kind.
    pub fn requests(&self) -> Vec<(&'static str, u64)> {
        self.requests.snapshot()
    }

    /// Marks a request.
    pub fn touch(&self) {
        let ms = self.base.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// A file was opened.
    pub fn opened(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    /// A file was released.
    pub fn closed(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open file handles.
    pub fn open_files(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// Time since the last request.
    pub fn idle_for(&self) -> Duration {
        let now = self.base.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// An object found through one of its names.
#[derive(Debug)]
pub struct Located {
    /// Its parent directory.
    pub dir: Arc<Dir>,
    /// Backing entry name in `dir`.
    pub entry: Vec<u8>,
    /// Its backing stat.
    pub st: libc::stat,
}

/// The coffer filesystem served over FUSE.
#[derive(Debug)]
pub struct CofferFs {
    pub(super) vault: Vault,
    inodes: Mutex<Inodes>,
    root: Arc<Dir>,
    dir_cache: Mutex<DirCache>,
    pub(super) files: Handles<FileHandle>,
    pub(super) dirs: Handles<DirHandle>,
    /// Listings of directories opened without a handle (see [`super::handles::Listings`]).
    pub(super) listings: Mutex<super::handles::Listings>,
    /// Root with allow_other: new objects belong to the caller.
    pub(super) chown_to_caller: bool,
    pub(super) activity: Arc<Activity>,
    /// Tells the kernel to drop cached attributes; set once the session exists.
    pub(super) notifier: Arc<OnceLock<Notifier>>,
    /// Hands freed memory back to the system after the kernel forgets many inodes.
    pub(super) memory: super::memory::Trimmer,
    /// The notices already logged, per inode: each is logged once per file and mount.
    noticed: Mutex<HashSet<(u64, Notice)>>,
    /// Held shared by every lookup, open, create and namespace change; a rekey of the running
    /// mount holds it exclusively while it renames backing entries (see [`super::live`]).
    gate: RwLock<()>,
    /// Odd while a rekey of the running mount holds the gate exclusively: a backing entry may
    /// already be renamed while its node still names the old object (see
    /// [`wait_for_moves`](Self::wait_for_moves)).
    pub(super) moving: std::sync::atomic::AtomicU64,
    /// Kernel notifications a rekey owes, sent once it holds no lock (the kernel may hold a
    /// directory lock while it waits for a request that waits for one of them).
    pub(super) owed: Mutex<Vec<super::live::Owed>>,
    /// The watch of the vault's config, poked when an object turns out to be sealed under a
    /// key epoch the mount does not have.
    pub(super) config_watch: Option<Arc<ConfigWatch>>,
    /// The watch of CIPHERDIR that lets the kernel cache for longer (None: short timeouts).
    pub(super) watch: Option<Arc<super::watch::BackingWatch>>,
    /// The kernel's writeback cache is on: asked for (`--writeback-cache`, never on a
    /// read-only mount) and granted by the kernel at init.
    pub(super) writeback_cache: std::sync::atomic::AtomicBool,
}

/// How often [`CofferFs::locate_with`] looks again after a miss (waits 0.1, 0.2, 0.4, 0.8 ms).
const LOCATE_RETRIES: u32 = 4;

/// Tells the kernel through `notifier` (once the session set it) to fetch `ino`'s attributes
/// again; cached pages are kept. Shared by the forward and reverse file systems.
pub(super) fn inval_attr(notifier: &OnceLock<Notifier>, ino: u64) {
    if let Some(n) = notifier.get() {
        if let Err(e) = n.inval_inode(INodeNo(ino), -1, 0) {
            log::debug!("invalidating attributes of inode {ino}: {e}");
        }
    }
}

/// ESTALE for an inode that no longer resolves.
pub fn stale(ino: u64) -> VaultError {
    VaultError::inode(ino, libc::ESTALE)
}

impl CofferFs {
    /// Serves `vault`; `chown_to_caller` makes new objects belong to the calling user.
    pub fn new(vault: Vault, chown_to_caller: bool) -> Result<Self> {
        let root = Arc::new(vault.root_dir()?);
        let st = root.fd.fstat().at(vault.cipherdir())?;
        Ok(CofferFs {
            vault,
            inodes: Mutex::new(Inodes::new(backing_id(&st))),
            root,
            dir_cache: Mutex::new(DirCache::new(dir_cache_budget(nofile_soft()))),
            files: Handles::default(),
            dirs: Handles::default(),
            listings: Mutex::default(),
            chown_to_caller,
            activity: Arc::default(),
            notifier: Arc::default(),
            memory: Default::default(),
            noticed: Default::default(),
            gate: RwLock::new(()),
            moving: Default::default(),
            owed: Mutex::default(),
            config_watch: None,
            watch: None,
            writeback_cache: Default::default(),
        })
    }

    /// Logs what reads and writes through `file` (on `ino`) found, each notice once per file
    /// for the life of the mount, however many reads find it again.
    pub(super) fn log_notices(&self, ino: u64, file: &CryptFile) {
        for n in file.take_notices() {
            let new = self.noticed.lock().unwrap_or_else(|p| p.into_inner()).insert((ino, n));
            if new {
                log::warn!("{}: {n}", file.rel().display());
            }
        }
    }

    /// After a request failed with `e`: an object sealed under a key epoch the mount does not
    /// have may mean a rekey ran elsewhere, so the config is looked at now.
    pub(super) fn after_failure(&self, e: &VaultError) {
        if e.is_epoch_unknown() {
            if let Some(w) = &self.config_watch {
                w.poke();
            }
        }
    }

    /// Where the session's notifier goes once the session exists.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Makes the kernel fetch `ino`'s attributes again (cached pages are kept).
    pub(super) fn invalidate_attr(&self, ino: u64) {
        inval_attr(&self.notifier, ino);
    }

    /// A shared hold of the namespace gate (never taken twice by one thread: a rekey waiting
    /// for it exclusively would block the second hold).
    pub(super) fn namespace_gate(&self) -> std::sync::RwLockReadGuard<'_, ()> {
        self.gate.read().unwrap_or_else(|p| p.into_inner())
    }

    /// An exclusive hold of the namespace gate: no lookup, open, create or namespace change
    /// runs until it is dropped.
    pub(super) fn namespace_quiet(&self) -> std::sync::RwLockWriteGuard<'_, ()> {
        self.gate.write().unwrap_or_else(|p| p.into_inner())
    }

    /// The inode table, locked (never held across a syscall).
    pub(super) fn table(&self) -> MutexGuard<'_, Inodes> {
        self.inodes.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cache(&self) -> MutexGuard<'_, DirCache> {
        self.dir_cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f`, which opens descriptors; when the process is out of them, closes cached
    /// directories (half, then all) and tries again. What still fails, fails alone with
    /// EMFILE / ENFILE: the mount keeps serving.
    pub(super) fn with_fds<T>(&self, mut f: impl FnMut() -> Result<T>) -> Result<T> {
        for attempt in 0..3 {
            match f() {
                Err(e) if out_of_fds(&e) && attempt < 2 => {
                    let mut cache = self.cache();
                    let n = if attempt == 0 {
                        cache.map.len().div_ceil(2)
                    } else {
                        cache.map.len()
                    };
                    log::debug!("out of descriptors ({e}); closing {n} cached directories");
                    cache.shed(n);
                }
                r => return r,
            }
        }
        f()
    }

    /// How many backing directories are cached, and the cache's budget (for tests and logs).
    pub fn dir_cache_len(&self) -> (usize, usize) {
        let c = self.cache();
        (c.map.len(), c.max)
    }

    /// Whether the kernel's writeback cache is on.
    pub(super) fn writeback(&self) -> bool {
        self.writeback_cache.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The node `ino`, or ESTALE if the kernel asks about one it forgot.
    pub(super) fn node(&self, ino: u64) -> Result<NodeInfo> {
        self.activity.touch();
        self.table().info(ino).ok_or_else(|| stale(ino))
    }

    /// The root directory.
    pub(super) fn root(&self) -> &Arc<Dir> {
        &self.root
    }

    /// The open backing directory of directory inode `ino`, its IVs re-read when the backing
    /// directory changed since (at most every [`DIR_REREAD`]).
    pub(super) fn dir(&self, ino: u64) -> Result<Arc<Dir>> {
        let hit = self.cache().get(ino).map(|c| (c.dir.clone(), c.stamp, c.checked_at));
        let Some((dir, stamp, checked_at)) = hit else {
            return self.open_dir_ino(ino);
        };
        if checked_at.elapsed() < DIR_REREAD {
            return Ok(dir);
        }
        let st = dir.fd.fstat().at(&dir.rel)?;
        if dir_stamp(&st) == stamp {
            if let Some(c) = self.cache().get(ino).filter(|c| Arc::ptr_eq(&c.dir, &dir)) {
                c.checked_at = Instant::now();
            }
            return Ok(dir);
        }
        let fresh = self.with_fds(|| Dir::from_fd(dir.fd.try_clone().at(&dir.rel)?, dir.rel.clone()))?;
        let fresh = Arc::new(fresh);
        self.store_dir(ino, fresh.clone(), &st);
        Ok(fresh)
    }

    fn store_dir(&self, ino: u64, dir: Arc<Dir>, st: &libc::stat) {
        let c = CachedDir {
            dir,
            stamp: dir_stamp(st),
            checked_at: Instant::now(),
            used: 0,
        };
        self.cache().insert(ino, c);
    }

    /// Opens the backing directory of `ino` and caches it. Ancestors that are not cached are
    /// opened first, from the one nearest the root down, so each is found through a cached
    /// parent: the walk is a loop, never a recursion as deep as the tree (a 20000-level tree
    /// would overflow a FUSE thread's stack).
    fn open_dir_ino(&self, ino: u64) -> Result<Arc<Dir>> {
        for ancestor in self.uncached_ancestors(ino).into_iter().rev() {
            self.open_one_dir(ancestor)?;
        }
        self.open_one_dir(ino)
    }

    /// The ancestors of `ino` up to (not including) the nearest cached one or the root,
    /// nearest first, following each directory's first known name.
    fn uncached_ancestors(&self, ino: u64) -> Vec<u64> {
        let mut chain = Vec::new();
        let mut seen = std::collections::HashSet::new();
        let mut cur = ino;
        loop {
            let Some(parent) = self.table().parent_of(cur) else {
                break;
            };
            if parent == ROOT || self.cache().map.contains_key(&parent) {
                break;
            }
            if !seen.insert(parent) {
                break; // a loop in stale names: locating will fail cleanly
            }
            chain.push(parent);
            cur = parent;
        }
        chain
    }

    /// Opens the backing directory of `ino` through one of its names and caches it.
    fn open_one_dir(&self, ino: u64) -> Result<Arc<Dir>> {
        if ino == ROOT {
            let st = self.root.fd.fstat().at(&self.root.rel)?;
            let dir = Arc::new(
                self.with_fds(|| Dir::from_fd(self.root.fd.try_clone().at(&self.root.rel)?, self.root.rel.clone()))?,
            );
            self.store_dir(ino, dir.clone(), &st);
            return Ok(dir);
        }
        let info = self.node(ino)?;
        if info.fmt != libc::S_IFDIR {
            return Err(VaultError::inode(ino, libc::ENOTDIR));
        }
        let loc = self.locate_with(ino, &info)?;
        let dir = Arc::new(self.with_fds(|| loc.dir.open_child(&self.vault, &loc.entry))?);
        let st = dir.fd.fstat().at(&dir.rel)?;
        if backing_id(&st) != info.backing {
            return Err(stale(ino));
        }
        self.store_dir(ino, dir.clone(), &st);
        Ok(dir)
    }

    /// Drops every cached directory descriptor (their IVs are read again on next use).
    pub(super) fn dir_cache_clear(&self) {
        self.cache().map.clear();
    }

    /// Drops a cached directory descriptor (rmdir, replaced, forgotten).
    pub(super) fn uncache_dir(&self, ino: u64) {
        self.cache().map.remove(&ino);
    }

    /// Finds inode `ino` (not the root) through one of its names.
    pub(super) fn locate(&self, ino: u64) -> Result<Located> {
        let info = self.node(ino)?;
        self.locate_with(ino, &info)
    }

    /// Waits (at most a second) while a rekey of the running mount is between renaming a
    /// backing entry and pointing its node at it: a caller that holds no gate (getattr, xattr
    /// and truncate by path) must not take that moment for a file gone. Callers that hold the
    /// gate never see one.
    pub(super) fn wait_for_moves(&self) {
        use std::sync::atomic::Ordering;
        let start = std::time::Instant::now();
        while self.moving.load(Ordering::Acquire) % 2 == 1 && start.elapsed() < std::time::Duration::from_secs(1) {
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
    }

    /// Like [`locate`](Self::locate) with the node already fetched. A rename or unlink on
    /// another FUSE thread changes the backing tree a moment before the inode table; when no
    /// known name matches, the node is fetched again and the search retried a few times, so a
    /// concurrent rename never shows as ESTALE.
    pub(super) fn locate_with(&self, ino: u64, info: &NodeInfo) -> Result<Located> {
        let mut r = self.locate_once(ino, info);
        let mut named = !info.locs.is_empty();
        for attempt in 0..LOCATE_RETRIES {
            match &r {
                // A node without a known name (unlinked: with the writeback cache the kernel
                // writes a removed file's times back as it evicts it) has nothing to wait for.
                Err(e) if named && matches!(e.errno(), libc::ESTALE | libc::ENOENT) => {}
                _ => return r,
            }
            std::thread::sleep(std::time::Duration::from_micros(100 << attempt));
            self.wait_for_moves();
            let fresh = self.node(ino)?;
            if fresh.generation != info.generation {
                // The number now names another object (its backing inode number was reused,
                // e.g. by a symlink): the caller's object is gone. Locating the new one would
                // open a symlink for an open of a file (ELOOP, seen in scripts/stress).
                return Err(stale(ino));
            }
            named = !fresh.locs.is_empty();
            r = self.locate_once(ino, &fresh);
        }
        r
    }

    fn locate_once(&self, ino: u64, info: &NodeInfo) -> Result<Located> {
        let mut err = None;
        for (parent, name) in &info.locs {
            let dir = match self.dir(*parent) {
                Ok(d) => d,
                Err(e) => {
                    err = Some(e);
                    continue;
                }
            };
            // The usual case first: the entry under the directory's own IV is this object
            // (one stat; `resolve` would stat it too before the check below).
            if let Ok(main) = self.vault.cipher_name(&dir, name) {
                if let Ok(st) = dir.fd.stat(&main.entry) {
                    if backing_id(&st) == info.backing {
                        return Ok(Located {
                            dir,
                            entry: main.entry,
                            st,
                        });
                    }
                }
            }
            let cname = self.vault.resolve(&dir, name)?;
            match dir.fd.stat(&cname.entry) {
                Ok(st) if backing_id(&st) == info.backing => {
                    return Ok(Located {
                        dir,
                        entry: cname.entry,
                        st,
                    });
                }
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {}
                Err(e) => err = Some(VaultError::io(dir.rel_child(&cname.entry), e)),
            }
        }
        Err(err.unwrap_or_else(|| stale(ino)))
    }

    /// Decrypted target length of a symlink (for st_size); None if it does not decrypt.
    pub(super) fn link_len(&self, dir: &Dir, entry: &[u8], st: &libc::stat) -> Option<usize> {
        if st.st_mode & libc::S_IFMT != libc::S_IFLNK {
            return None;
        }
        match self.vault.readlink(dir, entry) {
            Ok(t) => Some(t.len()),
            Err(e) => {
                log::warn!("{e}");
                None
            }
        }
    }

    /// Records an entry reply for `name` in `parent` (one more kernel lookup) and builds it.
    pub(super) fn entry(
        &self,
        parent: u64,
        name: &[u8],
        dir: &Dir,
        entry: &[u8],
        st: &libc::stat,
    ) -> (FileAttr, Generation) {
        self.entry_reply(parent, name, dir, entry, st, false)
    }

    /// [`entry`](Self::entry); `lookup`: the reply is a LOOKUP's, which renews the generation
    /// of a file whose kernel inode is stale (see `watch::retire`).
    pub(super) fn entry_reply(
        &self,
        parent: u64,
        name: &[u8],
        dir: &Dir,
        entry: &[u8],
        st: &libc::stat,
        lookup: bool,
    ) -> (FileAttr, Generation) {
        let link_len = self.link_len(dir, entry, st);
        let backing = backing_id(st);
        let loc = (parent, name.to_vec());
        let (number, wants) = self.table().wants_identity(backing, &loc);
        let id = wants.then(|| {
            let birth = dir.fd.birth(entry).ok().flatten();
            // Only where birth times are missing: a scan of the open handles, then the
            // node's known names.
            let pinned = birth.is_none() && self.files.find(|h| h.ino == number).is_some();
            let named = (birth.is_none() && !pinned).then(|| self.still_named(number, backing));
            Identity { birth, pinned, named }
        });
        let fmt = st.st_mode & libc::S_IFMT;
        let (ino, generation) = self.table().remember_as(backing, fmt, loc, id, lookup);
        (to_attr(ino, st, link_len), Generation(generation))
    }

    /// Whether one of the names node `ino` is known by still leads to backing object `backing`.
    fn still_named(&self, ino: u64, backing: (u64, u64)) -> bool {
        match self.table().info(ino) {
            Some(info) if info.backing == backing && !info.locs.is_empty() => self.locate_once(ino, &info).is_ok(),
            _ => false,
        }
    }

    /// The attributes of `ino` (with `fh`, from the descriptor opened at open()).
    pub(super) fn attr_of(&self, ino: u64, fh: Option<u64>) -> Result<FileAttr> {
        if let Some(h) = fh.and_then(|fh| self.files.get(fh)) {
            let st =
                crate::vault::backing::fstat(std::os::fd::AsRawFd::as_raw_fd(h.file().backing())).at(h.file().rel())?;
            return Ok(to_attr(ino, &st, None));
        }
        if ino == ROOT {
            self.node(ino)?;
            let st = self.root.fd.fstat().at(&self.root.rel)?;
            return Ok(to_attr(ROOT, &st, None));
        }
        match self.locate(ino) {
            Ok(l) => {
                let link_len = self.link_len(&l.dir, &l.entry, &l.st);
                Ok(to_attr(ino, &l.st, link_len))
            }
            Err(e) => {
                // Unlinked or renamed over but still open: answer from an open descriptor.
                if let Some(h) = self.files.find(|h| h.ino == ino) {
                    let fd = std::os::fd::AsRawFd::as_raw_fd(h.file().backing());
                    let st = crate::vault::backing::fstat(fd).at(h.file().rel())?;
                    return Ok(to_attr(ino, &st, None));
                }
                Err(e)
            }
        }
    }

    /// After creating `entry` in `dir`: give it to the caller when serving other users as
    /// root, honouring a setgid parent. Whether it may have changed the entry (its stat is
    /// then taken again).
    pub(super) fn set_owner(&self, dir: &Dir, entry: &[u8], uid: u32, gid: u32) -> Result<bool> {
        if !self.chown_to_caller {
            return Ok(false);
        }
        let pst = dir.fd.fstat().at(&dir.rel)?;
        let gid = if pst.st_mode & libc::S_ISGID != 0 {
            pst.st_gid
        } else {
            gid
        };
        let st = dir.fd.stat(entry).at(dir.rel_child(entry))?;
        dir.fd.chown(entry, uid, gid).at(dir.rel_child(entry))?;
        // chown clears set-id bits on non-directories; put back what the caller asked for.
        let setid = st.st_mode & (libc::S_ISUID | libc::S_ISGID);
        let fmt = st.st_mode & libc::S_IFMT;
        if setid != 0 && fmt != libc::S_IFLNK && fmt != libc::S_IFDIR {
            dir.fd.chmod(entry, st.st_mode & 0o7777).at(dir.rel_child(entry))?;
        }
        Ok(true)
    }
}
