//! What each inode of the reverse mount stands for (a plain object or a virtual file, found
//! by the plain path of its directory), the inode identities handed to the shared inode table,
//! a short-lived cache of open plain directories, and telling the kernel that what it cached
//! about an inode is out of date.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::hash::{Hash, Hasher};
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Instant;

use fuser::{INodeNo, Notifier};

use super::super::attr::backing_id;
use super::super::core::{Activity, TTL};
use super::super::handles::{DirHandle, Handles};
use super::super::inodes::{BackingId, Inodes, ROOT};
use crate::vault::reverse::{join_rel, RDir, ReverseFile, ReverseVault, Snapshot, Target};
use crate::vault::walk::nofile_soft;
use crate::vault::{IoContext, Result, VaultError};

/// Most directory descriptors kept for reuse (each for at most the attribute timeout); fewer
/// under a low descriptor limit (see [`dir_cache_max`]).
const DIR_CACHE_MAX: usize = 1024;
/// How many of a directory's closest ancestors [`ReverseFs::dir`] looks for in the cache.
const ANCESTORS_TRIED: usize = 8;
/// Tag in the st_dev half of identities that do not come from a plain (dev, ino).
const TAG_DEV: u64 = 0xC0FF_EE00_0000_0000;
/// Identity kind: a virtual file.
const KIND_VIRTUAL: u64 = 1;
/// Identity kind: a hard-linked regular file (one identity per path).
const KIND_LINKED: u64 = 2;

/// Open plain directories by relative path, with when they were opened.
type DirCache = HashMap<Vec<u8>, (Instant, Arc<RDir>)>;

/// One inode the kernel holds.
#[derive(Debug)]
pub struct Node {
    /// Plain path of the directory holding it ("" for the root and entries of the root).
    pub dir_rel: Vec<u8>,
    /// What it is; the root is `Plain("")`.
    pub target: Target,
    /// The cipher-side stat last reported to the kernel (regular files).
    pub snap: Mutex<Option<Snapshot>>,
}

impl Node {
    /// Plain path of the object itself (for directories: the directory to open).
    pub fn rel(&self) -> Vec<u8> {
        match &self.target {
            Target::Plain(p) if !p.is_empty() => join_rel(&self.dir_rel, p),
            _ => self.dir_rel.clone(),
        }
    }
}

/// An open file of the reverse mount.
#[derive(Debug)]
pub enum OpenFile {
    /// A plain file of inode `ino`, sealed on demand.
    Plain {
        /// The inode it was opened through.
        ino: u64,
        /// The version served.
        file: Box<ReverseFile>,
    },
    /// A virtual file's content.
    Virtual(Arc<Vec<u8>>),
}

/// The reverse-mode filesystem.
#[derive(Debug)]
pub struct ReverseFs {
    pub(super) vault: ReverseVault,
    inodes: Mutex<Inodes>,
    nodes: Mutex<HashMap<u64, Arc<Node>>>,
    dirs_open: Mutex<DirCache>,
    /// Most entries of `dirs_open`.
    dir_cache_max: usize,
    pub(super) files: Handles<OpenFile>,
    pub(super) dirs: Handles<DirHandle>,
    pub(super) activity: Arc<Activity>,
    /// Tells the kernel to drop cached attributes and entries; set once the session exists.
    notifier: Arc<OnceLock<Notifier>>,
}

/// The directory cache's share of a soft descriptor limit `nofile_soft`: a quarter, so that
/// open files and the kernel's requests have the rest.
fn dir_cache_max(nofile_soft: Option<u64>) -> usize {
    match nofile_soft {
        Some(n) => usize::try_from(n / 4).unwrap_or(DIR_CACHE_MAX).clamp(8, DIR_CACHE_MAX),
        None => DIR_CACHE_MAX,
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hash64(parts: &[&[u8]]) -> u64 {
    let mut h = DefaultHasher::new();
    for p in parts {
        p.hash(&mut h);
    }
    h.finish()
}

/// The identity of an object for the inode table: plain (dev, ino) where that is unique to
/// one path, else a tagged hash of the path.
pub fn identity(dir_rel: &[u8], target: &Target, st: &libc::stat) -> BackingId {
    match target {
        Target::Plain(p) => {
            let is_reg = st.st_mode & libc::S_IFMT == libc::S_IFREG;
            if is_reg && st.st_nlink > 1 {
                (TAG_DEV | KIND_LINKED, hash64(&[dir_rel, p]))
            } else {
                backing_id(st)
            }
        }
        other => {
            let (kind, name): (&[u8], &[u8]) = match other {
                Target::Config => (b"c", b""),
                Target::Diriv => (b"d", b""),
                Target::NameSidecar(p) => (b"n", p),
                Target::LinkSidecar(p) => (b"l", p),
                Target::Plain(p) => (b"p", p),
            };
            (TAG_DEV | KIND_VIRTUAL, hash64(&[dir_rel, kind, name]))
        }
    }
}

impl ReverseFs {
    /// Serves `vault`.
    pub fn new(vault: ReverseVault) -> Result<Self> {
        let st = vault.root_fd().fstat().at(vault.plaindir())?;
        let mut nodes = HashMap::new();
        nodes.insert(
            ROOT,
            Arc::new(Node {
                dir_rel: Vec::new(),
                target: Target::Plain(Vec::new()),
                snap: Mutex::new(None),
            }),
        );
        Ok(ReverseFs {
            vault,
            inodes: Mutex::new(Inodes::new(backing_id(&st))),
            nodes: Mutex::new(nodes),
            dirs_open: Mutex::new(HashMap::new()),
            dir_cache_max: dir_cache_max(nofile_soft()),
            files: Handles::default(),
            dirs: Handles::default(),
            activity: Arc::default(),
            notifier: Arc::default(),
        })
    }

    /// Where the session's notifier goes once the session exists.
    pub fn notifier_slot(&self) -> Arc<OnceLock<Notifier>> {
        self.notifier.clone()
    }

    /// Makes the kernel fetch `ino`'s attributes again (before its next use of the size).
    pub(super) fn invalidate_attr(&self, ino: u64) {
        super::super::core::inval_attr(&self.notifier, ino);
    }

    /// Makes the kernel look up every name of `ino` again (its path now holds another plain
    /// file). Sent from its own thread: the kernel takes the parent directory's lock for it,
    /// which a request this thread is part of might hold.
    pub(super) fn invalidate_entries(&self, ino: u64) {
        let Some(n) = self.notifier.get().cloned() else { return };
        let locs = self.table().info(ino).map(|i| i.locs).unwrap_or_default();
        if locs.is_empty() {
            return;
        }
        let spawned = std::thread::Builder::new().name("coffer-inval".into()).spawn(move || {
            for (parent, name) in locs {
                if let Err(e) = n.inval_entry(INodeNo(parent), OsStr::from_bytes(&name)) {
                    log::debug!("invalidating entry of inode {ino}: {e}");
                }
            }
        });
        if let Err(e) = spawned {
            log::debug!("invalidating entries of inode {ino}: {e}");
        }
    }

    pub(super) fn table(&self) -> MutexGuard<'_, Inodes> {
        lock(&self.inodes)
    }

    /// The node `ino`, or ESTALE.
    pub(super) fn node(&self, ino: u64) -> Result<Arc<Node>> {
        self.activity.touch();
        lock(&self.nodes)
            .get(&ino)
            .cloned()
            .ok_or_else(|| VaultError::inode(ino, libc::ESTALE))
    }

    /// Records a lookup of `name` in `parent`; returns (inode, generation).
    pub(super) fn remember(
        &self,
        parent: u64,
        name: &[u8],
        dir_rel: &[u8],
        target: Target,
        st: &libc::stat,
    ) -> (u64, u64) {
        let id = identity(dir_rel, &target, st);
        let (ino, generation) = self
            .table()
            .remember(id, st.st_mode & libc::S_IFMT, (parent, name.to_vec()));
        let node = Arc::new(Node {
            dir_rel: dir_rel.to_vec(),
            target,
            snap: Mutex::new(Some(Snapshot::of_cipher(st))),
        });
        lock(&self.nodes).insert(ino, node);
        (ino, generation)
    }

    /// Drops `n` lookups of `ino`.
    pub(super) fn drop_lookups(&self, ino: u64, n: u64) {
        if self.table().forget(ino, n) {
            lock(&self.nodes).remove(&ino);
        }
    }

    /// The open plain directory at `rel` (cached for at most the attribute timeout, so a
    /// renamed or replaced directory is seen again soon). A directory not cached is opened
    /// from its nearest cached ancestor among the closest few (a lookup's parent usually is),
    /// else from the root: a walk down a deep tree opens one directory per level, not all the
    /// levels above it again.
    pub(super) fn dir(&self, rel: &[u8]) -> Result<Arc<RDir>> {
        if let Some(d) = self.cached_dir(rel) {
            return Ok(d);
        }
        let d = match self.cached_ancestor(rel) {
            Some((base, tail)) => self.vault.open_dir_below(&base, tail)?,
            None => self.vault.open_dir_path(rel)?,
        };
        let d = Arc::new(d);
        let mut cache = lock(&self.dirs_open);
        if cache.len() >= self.dir_cache_max {
            cache.retain(|_, (at, _)| at.elapsed() < TTL);
            while cache.len() >= self.dir_cache_max {
                let Some(oldest) = cache.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| k.clone()) else {
                    break;
                };
                cache.remove(&oldest);
            }
        }
        cache.insert(rel.to_vec(), (Instant::now(), d.clone()));
        Ok(d)
    }

    fn cached_dir(&self, rel: &[u8]) -> Option<Arc<RDir>> {
        let cache = lock(&self.dirs_open);
        let (at, d) = cache.get(rel)?;
        (at.elapsed() < TTL).then(|| d.clone())
    }

    /// The nearest of `rel`'s closest [`ANCESTORS_TRIED`] ancestors that is cached, with the
    /// rest of `rel` below it.
    fn cached_ancestor<'r>(&self, rel: &'r [u8]) -> Option<(Arc<RDir>, &'r [u8])> {
        let mut end = rel.len();
        for _ in 0..ANCESTORS_TRIED {
            end = rel[..end].iter().rposition(|&c| c == b'/')?;
            if let Some(d) = self.cached_dir(&rel[..end]) {
                return Some((d, &rel[end + 1..]));
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        // SAFETY: an all-zero stat is a valid value.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        st.st_dev = 5;
        st.st_ino = 9;
        st.st_nlink = 1;
        st.st_mode = libc::S_IFREG;
        let a = Target::Plain(b"a".to_vec());
        assert_eq!(identity(b"", &a, &st), (5, 9));
        st.st_nlink = 2;
        let linked = identity(b"", &a, &st);
        assert_ne!(linked, identity(b"", &Target::Plain(b"b".to_vec()), &st));
        assert_eq!(linked.0 & TAG_DEV, TAG_DEV);
        assert_ne!(identity(b"", &Target::Diriv, &st), identity(b"x", &Target::Diriv, &st));
        assert_ne!(
            identity(b"", &Target::NameSidecar(b"a".to_vec()), &st),
            identity(b"", &Target::LinkSidecar(b"a".to_vec()), &st)
        );
    }
}
