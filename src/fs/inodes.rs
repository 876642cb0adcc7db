//! The daemon's inode table: FUSE inode numbers mapped from backing (st_dev, st_ino), their
//! generations, lookup counts and the plaintext names the kernel knows them by.
//!
//! Numbering: an object on the CIPHERDIR's own device keeps its backing inode number (so
//! `readdir`'s d_ino always equals `stat`'s st_ino without allocating anything); objects on
//! other devices, and backing numbers that would collide with the root or the spill range, get
//! numbers from a spill counter, remembered for the life of the mount. The root is always 1.
//! A node is dropped when its lookup count reaches zero (forget / batch_forget); a number that
//! comes back later gets a new generation.
//!
//! A file that an online rekey re-encrypts gets a new backing inode under the same name
//! ([`moved`](Inodes::moved)); it keeps its number (the kernel's inode, the open descriptors
//! and `stat`'s st_ino stay the same), the new backing number is an alias of it, and the old
//! number stays reserved to it, so an object that later reuses the old backing inode number
//! (ext4 hands a freed number to the next file at once: often another file's new copy) is
//! given a spilled number instead. Like spilled numbers, both are kept for the life of the
//! mount (two map entries per moved file), not only while the kernel holds the node: a file
//! the kernel forgets during or after the rekey (the watch of CIPHERDIR drops the names it
//! sees replaced) and looks up again gets the number it showed before, and that number is
//! never given to another file while it lives. A later rekey carries the number on to the
//! file's next copy. Files the kernel held no node of at their first rekey take their new
//! backing number, as after any replacement by a sync client.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use super::watch::own::Stamp;

/// FUSE's root inode number.
pub const ROOT: u64 = 1;
/// First spilled inode number; backing numbers at or above it are spilled too.
const SPILL_BASE: u64 = 1 << 48;

/// A backing object's identity: (st_dev, st_ino).
pub type BackingId = (u64, u64);

/// Where the kernel has seen a node: (parent inode, plaintext name).
pub type Loc = (u64, Vec<u8>);

/// What tells a backing object from a later one that reuses its inode number: its birth time
/// where the backing fs records one (ext4, xfs, btrfs, tmpfs), and whether an open handle pins
/// it (an open file is never reused: its inode lives as long as the descriptor). Backings
/// without birth times (ramfs, NFS, FUSE) fall back to names: a node none of whose known names
/// leads to the object any more, and that no handle holds, seen again under another name, is
/// taken for a reused number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Identity {
    /// Birth time (seconds, nanoseconds), if the backing fs has one.
    pub birth: Option<(i64, u32)>,
    /// An open file handle holds the node.
    pub pinned: bool,
    /// Whether one of the names the node is known by still leads to the object, if that was
    /// looked at (only without birth times; not looked at, a node with known names counts as
    /// still named).
    pub named: Option<bool>,
}

/// One inode the kernel holds.
#[derive(Debug)]
pub struct Node {
    /// Backing identity.
    pub backing: BackingId,
    /// Generation of this number.
    pub generation: u64,
    /// File type bits (`st_mode & S_IFMT`).
    pub fmt: u32,
    /// Outstanding kernel lookups.
    pub lookups: u64,
    /// Names the kernel knows it by (several for hard links).
    pub locs: Vec<Loc>,
    /// Per-inode lock: reads shared, writes and truncates exclusive.
    pub lock: Arc<RwLock<()>>,
    /// Birth time of the backing object, when known.
    pub birth: Option<(i64, u32)>,
    /// Handles the mount has open on it.
    pub open: u32,
    /// Under the writeback cache: the kernel's inode keeps a size and times the vault no
    /// longer has; the next lookup with no handle open gives a new generation.
    pub stale: bool,
    /// With the watch of CIPHERDIR: the backing object's state right after the mount last
    /// changed it.
    pub own_stamp: Option<Stamp>,
}

/// A copy of what an operation needs from a node, taken under the table lock.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Backing identity.
    pub backing: BackingId,
    /// Changes when the inode number is given to another object (a reused backing inode).
    pub generation: u64,
    /// File type bits.
    pub fmt: u32,
    /// Known names.
    pub locs: Vec<Loc>,
    /// The inode lock.
    pub lock: Arc<RwLock<()>>,
}

/// The inode table.
#[derive(Debug)]
pub struct Inodes {
    root_dev: u64,
    root_backing: BackingId,
    nodes: HashMap<u64, Node>,
    by_loc: HashMap<Loc, u64>,
    spill: HashMap<BackingId, u64>,
    /// Backing objects that replaced a file's first one (online rekey): backing -> number.
    aliases: HashMap<BackingId, u64>,
    /// The numbers of moved files, with their current backing (never given out directly).
    reserved: HashMap<u64, BackingId>,
    next_spill: u64,
    next_generation: u64,
}

impl Inodes {
    /// A table holding only the root, whose backing directory is `root`.
    pub fn new(root: BackingId) -> Self {
        let mut nodes = HashMap::new();
        let root_node = Node {
            backing: root,
            generation: 0,
            fmt: libc::S_IFDIR,
            lookups: 1,
            locs: Vec::new(),
            lock: Arc::default(),
            birth: None,
            open: 0,
            stale: false,
            own_stamp: None,
        };
        nodes.insert(ROOT, root_node);
        Inodes {
            root_dev: root.0,
            root_backing: root,
            nodes,
            by_loc: HashMap::new(),
            spill: HashMap::new(),
            aliases: HashMap::new(),
            reserved: HashMap::new(),
            next_spill: SPILL_BASE,
            next_generation: 1,
        }
    }

    /// The inode number of a backing object (stable for the life of the mount).
    pub fn number_for(&mut self, backing: BackingId) -> u64 {
        if backing == self.root_backing {
            return ROOT;
        }
        if let Some(n) = self.alias(backing) {
            return n;
        }
        if let Some(ino) = self.direct(backing) {
            return ino;
        }
        if let Some(&n) = self.spill.get(&backing) {
            return n;
        }
        let n = self.next_spill;
        self.next_spill += 1;
        self.spill.insert(backing, n);
        n
    }

    /// The number an online rekey's moved node gave `backing`.
    fn alias(&self, backing: BackingId) -> Option<u64> {
        if self.aliases.is_empty() {
            return None;
        }
        self.aliases.get(&backing).copied()
    }

    /// `backing`'s own inode number, where it can be the FUSE number: on the CIPHERDIR's
    /// device, outside the root and the spill range, and not reserved by a moved node.
    fn direct(&self, backing: BackingId) -> Option<u64> {
        let (dev, ino) = backing;
        let free = self.reserved.is_empty() || !self.reserved.contains_key(&ino);
        (dev == self.root_dev && ino > ROOT && ino < SPILL_BASE && free).then_some(ino)
    }

    /// Node `ino`'s file now lives in backing object `to` (an online rekey renamed a new copy
    /// over it, `birth`: the copy's birth time): lookups, listings and the rekey's own
    /// checks of `to` find this node, under its old number and generation.
    pub fn moved(&mut self, ino: u64, to: BackingId, birth: Option<(i64, u32)>) {
        if ino == ROOT {
            return;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        let from = std::mem::replace(&mut node.backing, to);
        node.birth = birth;
        self.renumber(from, to, ino);
    }

    /// The file of backing object `from`, of which the kernel holds no node, now lives in `to`
    /// (an online rekey renamed a new copy over it): if an earlier rekey gave `from` its number
    /// (see [`moved`](Self::moved)), `to` keeps that number.
    pub fn moved_unheld(&mut self, from: BackingId, to: BackingId) {
        if let Some(n) = self.alias(from) {
            self.renumber(from, to, n);
        }
    }

    /// Number `ino` now stands for backing `to` instead of `from`, for the life of the mount.
    fn renumber(&mut self, from: BackingId, to: BackingId, ino: u64) {
        // A spilled number goes with the object: the next object on `from` gets another.
        if self.spill.get(&from) == Some(&ino) {
            self.spill.remove(&from);
        }
        if let Some(before) = self.reserved.insert(ino, to) {
            if self.aliases.get(&before) == Some(&ino) {
                self.aliases.remove(&before);
            }
        }
        // `to` reuses the inode of an object an earlier move numbered, gone since: that number
        // names nothing now.
        if let Some(other) = self.aliases.insert(to, ino) {
            if other != ino && self.reserved.get(&other) == Some(&to) {
                self.reserved.remove(&other);
            }
        }
    }

    /// The node of backing object `backing`, if the kernel holds one (no number is made up).
    pub fn node_of(&self, backing: BackingId) -> Option<(u64, NodeInfo)> {
        let ino = self.held(backing)?;
        Some((ino, self.info(ino)?))
    }

    /// The number of the node of `backing`, if the kernel holds one.
    fn held(&self, backing: BackingId) -> Option<u64> {
        let ino = if backing == self.root_backing {
            ROOT
        } else if let Some(n) = self.alias(backing).or_else(|| self.direct(backing)) {
            n
        } else {
            *self.spill.get(&backing)?
        };
        self.nodes.get(&ino).filter(|n| n.backing == backing).map(|_| ino)
    }

    /// Whether a lookup of `backing` under `loc` should bring its [`Identity`]: the node is new
    /// (its birth is recorded), or `loc` is not one of its known names (another link of the
    /// same file, or a new object on a reused backing inode number: the node's names may
    /// not have been seen to go, as when a sync client deleted the file and the watch has not
    /// passed that on yet). A lookup under a name the node is known by needs none, so most
    /// lookups pay nothing for it. Also its number.
    pub fn wants_identity(&mut self, backing: BackingId, loc: &Loc) -> (u64, bool) {
        let ino = self.number_for(backing);
        let wants = ino != ROOT && self.nodes.get(&ino).is_none_or(|n| !n.locs.contains(loc));
        (ino, wants)
    }

    /// Records one more kernel lookup of `backing` under `loc`; returns (inode, generation).
    pub fn remember(&mut self, backing: BackingId, fmt: u32, loc: Loc) -> (u64, u64) {
        self.remember_as(backing, fmt, loc, None, false)
    }

    /// [`remember`](Self::remember) with what tells this object from one that reused its
    /// number (see [`wants_identity`](Self::wants_identity)). `renew_stale`: the reply is a
    /// LOOKUP's (one the kernel surely receives), which renews the generation of a [`stale`]
    /// node that has no handle open.
    ///
    /// [`stale`]: Node::stale
    pub fn remember_as(
        &mut self,
        backing: BackingId,
        fmt: u32,
        loc: Loc,
        id: Option<Identity>,
        renew_stale: bool,
    ) -> (u64, u64) {
        let ino = self.number_for(backing);
        if let Some(&old) = self.by_loc.get(&loc) {
            if old != ino {
                self.drop_loc_of(old, &loc);
            }
        }
        let next_gen = &mut self.next_generation;
        let node = self.nodes.entry(ino).or_insert_with(|| {
            *next_gen += 1;
            Node {
                backing,
                generation: *next_gen,
                fmt,
                lookups: 0,
                locs: Vec::new(),
                lock: Arc::default(),
                birth: id.and_then(|i| i.birth),
                open: 0,
                stale: false,
                own_stamp: None,
            }
        });
        // A node the kernel holds, seen under a name it is not known by: either the backing
        // inode number was reused by a new object (the node's names may have gone without the
        // daemon seeing it: a sync client's delete), or it is the same object through another
        // hard link (or a name a sync client gave it). Birth times tell them apart where the
        // backing has them; an open handle means the same object (its inode cannot be reused
        // while open); otherwise the name rule decides: reused when none of the node's known
        // names leads to the object any more. A new generation makes the kernel retire its old
        // inode (every descriptor on it then fails, every dentry on it is looked up again), so
        // it is given only to a reused number; the same generation would make the new name a
        // second link of the old inode, its old names showing the new object.
        let candidate = ino != ROOT && node.lookups > 0;
        let reused = candidate
            && match (node.birth, id.and_then(|i| i.birth)) {
                (Some(old), Some(new)) => old != new,
                _ => {
                    let pinned = id.is_some_and(|i| i.pinned);
                    let named = id.and_then(|i| i.named).unwrap_or(!node.locs.is_empty());
                    !pinned && !named
                }
            };
        if node.birth.is_none() {
            node.birth = id.and_then(|i| i.birth);
        }
        if node.backing != backing || node.fmt != fmt || reused {
            // The number now names another object (a backing inode number reused).
            *next_gen += 1;
            node.generation = *next_gen;
            node.backing = backing;
            node.fmt = fmt;
            // The old object's names are not this one's.
            for old in node.locs.drain(..) {
                if self.by_loc.get(&old) == Some(&ino) {
                    self.by_loc.remove(&old);
                }
            }
            node.birth = id.and_then(|i| i.birth);
            node.stale = false;
            node.own_stamp = None;
        }
        if renew_stale && node.stale && node.open == 0 {
            *next_gen += 1;
            node.generation = *next_gen;
            node.stale = false;
        }
        if ino != ROOT {
            node.lookups += 1;
            if !node.locs.contains(&loc) {
                node.locs.push(loc.clone());
            }
            self.by_loc.insert(loc, ino);
        }
        (ino, node.generation)
    }

    /// Marks regular file `ino` [`stale`](Node::stale). False for anything else.
    pub fn mark_stale(&mut self, ino: u64) -> bool {
        match self.nodes.get_mut(&ino) {
            Some(n) if n.fmt == libc::S_IFREG => {
                n.stale = true;
                true
            }
            _ => false,
        }
    }

    /// Marks every regular file the kernel holds stale, or those in directory `dir`.
    pub fn mark_all_stale(&mut self, dir: Option<u64>) {
        for n in self.nodes.values_mut() {
            if n.fmt == libc::S_IFREG && dir.is_none_or(|d| n.locs.iter().any(|(p, _)| *p == d)) {
                n.stale = true;
            }
        }
    }

    /// Whether `ino` is marked stale.
    pub fn is_stale(&self, ino: u64) -> bool {
        self.nodes.get(&ino).is_some_and(|n| n.stale)
    }

    /// The mount opened a handle on `ino`.
    pub fn opened(&mut self, ino: u64) {
        if let Some(n) = self.nodes.get_mut(&ino) {
            n.open += 1;
        }
    }

    /// The mount closed a handle on `ino`; returns whether none is left open.
    pub fn closed(&mut self, ino: u64) -> bool {
        match self.nodes.get_mut(&ino) {
            Some(n) => {
                n.open = n.open.saturating_sub(1);
                n.open == 0
            }
            None => true,
        }
    }

    /// Records the state the mount just left `backing` in, if the kernel holds its node.
    pub fn set_own_stamp(&mut self, backing: BackingId, stamp: Stamp) {
        if let Some(n) = self.held(backing).and_then(|ino| self.nodes.get_mut(&ino)) {
            n.own_stamp = Some(stamp);
        }
    }

    /// The state the mount last left `ino`'s backing object in.
    pub fn own_stamp(&self, ino: u64) -> Option<Stamp> {
        self.nodes.get(&ino).and_then(|n| n.own_stamp)
    }

    /// What an operation needs from node `ino`, if the kernel still holds it.
    pub fn info(&self, ino: u64) -> Option<NodeInfo> {
        self.nodes.get(&ino).map(|n| NodeInfo {
            backing: n.backing,
            generation: n.generation,
            fmt: n.fmt,
            locs: n.locs.clone(),
            lock: n.lock.clone(),
        })
    }

    /// The parent of `ino` through its first known name.
    pub fn parent_of(&self, ino: u64) -> Option<u64> {
        self.nodes.get(&ino)?.locs.first().map(|l| l.0)
    }

    /// The parent of `ino` when it is known by exactly one name.
    pub fn sole_parent(&self, ino: u64) -> Option<u64> {
        match self.nodes.get(&ino)?.locs.as_slice() {
            [(parent, _)] => Some(*parent),
            _ => None,
        }
    }

    /// The generation of `ino` (0 when unknown).
    pub fn generation(&self, ino: u64) -> u64 {
        self.nodes.get(&ino).map_or(0, |n| n.generation)
    }

    /// The node currently known under `loc`.
    pub fn at(&self, loc: &Loc) -> Option<u64> {
        self.by_loc.get(loc).copied()
    }

    /// The names known in directory `dir`, with their nodes.
    pub fn children_of(&self, dir: u64) -> Vec<(Vec<u8>, u64)> {
        self.by_loc
            .iter()
            .filter(|((parent, _), _)| *parent == dir)
            .map(|((_, name), &ino)| (name.clone(), ino))
            .collect()
    }

    /// Every node's number, and every known name.
    pub fn everything(&self) -> (Vec<u64>, Vec<Loc>) {
        (
            self.nodes.keys().copied().collect(),
            self.by_loc.keys().cloned().collect(),
        )
    }

    /// Whether [`forget`](Self::forget)`(ino, n)` would drop node `ino`.
    pub fn forgets(&self, ino: u64, n: u64) -> bool {
        ino != ROOT && self.nodes.get(&ino).is_some_and(|node| node.lookups <= n)
    }

    /// Drops `n` lookups; forgets the node at zero. Returns whether it was forgotten.
    pub fn forget(&mut self, ino: u64, n: u64) -> bool {
        if ino == ROOT {
            return false;
        }
        let Some(node) = self.nodes.get_mut(&ino) else {
            return false;
        };
        node.lookups = node.lookups.saturating_sub(n);
        if node.lookups > 0 {
            return false;
        }
        if let Some(node) = self.nodes.remove(&ino) {
            for loc in node.locs {
                if self.by_loc.get(&loc) == Some(&ino) {
                    self.by_loc.remove(&loc);
                }
            }
        }
        // A moved node's number stays its file's (see the module comment).
        self.shrink();
        true
    }

    /// Gives back table space once the kernel forgot most of what it held (a hash map keeps
    /// its peak capacity otherwise): at a quarter full, shrink to twice the entries.
    fn shrink(&mut self) {
        const MIN: usize = 1024;
        if self.nodes.capacity() > MIN && self.nodes.len() * 4 < self.nodes.capacity() {
            self.nodes.shrink_to((self.nodes.len() * 2).max(MIN));
        }
        if self.by_loc.capacity() > MIN && self.by_loc.len() * 4 < self.by_loc.capacity() {
            self.by_loc.shrink_to((self.by_loc.len() * 2).max(MIN));
        }
    }

    /// Nodes held (for tests and logs).
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether only the root is held.
    pub fn is_empty(&self) -> bool {
        self.nodes.len() <= 1
    }

    fn drop_loc_of(&mut self, ino: u64, loc: &Loc) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.locs.retain(|l| l != loc);
        }
        if self.by_loc.get(loc) == Some(&ino) {
            self.by_loc.remove(loc);
        }
    }

    /// The name `loc` is gone (unlink, rmdir, replaced by a rename). Returns the node it named.
    pub fn remove_loc(&mut self, loc: &Loc) -> Option<u64> {
        let ino = self.by_loc.get(loc).copied()?;
        self.drop_loc_of(ino, loc);
        Some(ino)
    }

    /// A rename from `from` to `to` happened (`exchange`: the two swapped).
    pub fn rename(&mut self, from: &Loc, to: &Loc, exchange: bool) {
        let a = self.by_loc.get(from).copied();
        let b = self.by_loc.get(to).copied();
        if let Some(b) = b {
            self.drop_loc_of(b, to);
        }
        if let Some(a) = a {
            self.drop_loc_of(a, from);
            self.add_loc(a, to.clone());
        }
        if exchange {
            if let Some(b) = b {
                self.add_loc(b, from.clone());
            }
        }
    }

    fn add_loc(&mut self, ino: u64, loc: Loc) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            if !node.locs.contains(&loc) {
                node.locs.push(loc.clone());
            }
            self.by_loc.insert(loc, ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loc(p: u64, n: &str) -> Loc {
        (p, n.as_bytes().to_vec())
    }

    #[test]
    fn numbers_are_stable_and_spill() {
        let mut t = Inodes::new((7, 100));
        assert_eq!(t.number_for((7, 100)), ROOT);
        assert_eq!(t.number_for((7, 5)), 5);
        assert_eq!(t.number_for((7, 1)), SPILL_BASE);
        assert_eq!(t.number_for((8, 5)), SPILL_BASE + 1);
        assert_eq!(t.number_for((7, 1)), SPILL_BASE);
        assert_eq!(t.number_for((7, SPILL_BASE)), SPILL_BASE + 2);
    }

    #[test]
    fn a_moved_node_keeps_its_number_when_backing_numbers_are_recycled() {
        let mut t = Inodes::new((7, 100));
        let (held, g_held) = t.remember((7, 10), libc::S_IFREG, loc(ROOT, "held"));
        let (app, g_app) = t.remember((7, 20), libc::S_IFREG, loc(ROOT, "app"));
        // The rekey moves "app" to a new backing inode (30), then "held" to one that reuses
        // app's old number (20), while the kernel holds both.
        t.moved(app, (7, 30), None);
        t.moved(held, (7, 20), None);
        assert_eq!(t.remember((7, 20), libc::S_IFREG, loc(ROOT, "held")), (held, g_held));
        assert_eq!(t.remember((7, 30), libc::S_IFREG, loc(ROOT, "app")), (app, g_app));
        assert_eq!(t.node_of((7, 20)).map(|n| n.0), Some(held));
        assert_eq!(t.node_of((7, 30)).map(|n| n.0), Some(app));
        assert!(t.node_of((7, 10)).is_none());
        // A new object on held's old backing number does not take held's number.
        let fresh = t.number_for((7, 10));
        assert!(fresh >= SPILL_BASE, "{fresh}");
        let (n, _) = t.remember((7, 10), libc::S_IFREG, loc(ROOT, "new"));
        assert_eq!(n, fresh);
        assert_eq!(t.info(held).map(|i| i.backing), Some((7, 20)));
        // Moved again (a second rekey): the first alias goes.
        t.moved(held, (7, 40), None);
        assert_eq!(t.number_for((7, 40)), held);
        assert_ne!(t.number_for((7, 20)), held);
        // Forgotten, the files keep their numbers (the kernel may look them up again).
        assert!(t.forget(held, 2));
        assert_eq!(t.number_for((7, 40)), held);
        assert!(t.forget(app, 2));
        assert_eq!(t.number_for((7, 30)), app);
    }

    /// What a rekey of the mount did with the kernel cache on: f5's new copy took a fresh inode,
    /// f17's new copy took f5's freed one, then the watch dropped both names and the kernel
    /// forgot both nodes. f5 had been seen as 32 just before (its cached attributes); looked up
    /// again, f17 must not get 32, nor f5 another number.
    #[test]
    fn rekeyed_files_keep_their_numbers_after_the_kernel_forgets_them() {
        let mut t = Inodes::new((7, 100));
        let (f5, _) = t.remember((7, 32), libc::S_IFREG, loc(ROOT, "f5"));
        let (f17, _) = t.remember((7, 44), libc::S_IFREG, loc(ROOT, "f17"));
        t.moved(f5, (7, 41), None);
        t.moved(f17, (7, 32), None);
        assert!(t.forget(f17, 1));
        assert!(t.forget(f5, 1));
        assert_eq!(t.remember((7, 32), libc::S_IFREG, loc(ROOT, "f17")).0, f17);
        assert_eq!(t.remember((7, 41), libc::S_IFREG, loc(ROOT, "f5")).0, f5);
        // An object on f17's freed backing number gets neither of them.
        let n = t.number_for((7, 44));
        assert!(n != f5 && n != f17, "{n}");
        // A second rekey while the kernel holds neither: the numbers go on to the new copies.
        assert!(t.forget(f17, 1) && t.forget(f5, 1));
        t.moved_unheld((7, 41), (7, 50));
        t.moved_unheld((7, 32), (7, 41));
        assert_eq!(t.number_for((7, 50)), f5);
        assert_eq!(t.number_for((7, 41)), f17);
        // A file never moved takes its new backing number: nothing to carry.
        t.moved_unheld((7, 60), (7, 61));
        assert_eq!(t.number_for((7, 61)), 61);
    }

    #[test]
    fn a_moved_node_takes_its_spilled_number_with_it() {
        let mut t = Inodes::new((7, 100));
        // On another device: a spilled number.
        let (n, _) = t.remember((8, 5), libc::S_IFREG, loc(ROOT, "other-dev"));
        assert!(n >= SPILL_BASE);
        t.moved(n, (8, 6), None);
        assert_eq!(t.number_for((8, 6)), n);
        // A new object on the freed backing inode is another file.
        assert_ne!(t.number_for((8, 5)), n);
    }

    /// A backing inode an earlier move numbered (its file deleted since), reused by another
    /// file's new copy: the copy keeps its own file's number, and the earlier number, naming
    /// nothing any more, is free for its own backing inode again.
    #[test]
    fn a_moved_files_reused_backing_inode_takes_the_new_files_number() {
        let mut t = Inodes::new((7, 100));
        let (a, _) = t.remember((7, 20), libc::S_IFREG, loc(ROOT, "a"));
        t.moved(a, (7, 21), None);
        assert!(t.forget(a, 1));
        let (b, _) = t.remember((7, 30), libc::S_IFREG, loc(ROOT, "b"));
        t.moved(b, (7, 21), None);
        assert_eq!(t.number_for((7, 21)), b);
        assert_eq!(t.number_for((7, 20)), 20);
    }

    /// A sync client deleted `a` and delivered `b`, whose backing file reused a's inode number,
    /// before the watch passed the deletion on: the daemon still knows the node by "a". `b`
    /// is another object (another birth, or no name of the node leading to it): the number
    /// gets a new generation, so the kernel retires its inode of `a` instead of taking `b`
    /// for a second link of it.
    #[test]
    fn a_new_name_on_a_held_nodes_backing_number_is_told_apart() {
        let mut t = Inodes::new((7, 100));
        let (ino, g1) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "a"), born(10), false);
        assert_eq!(t.wants_identity((7, 5), &loc(ROOT, "a")), (ino, false));
        assert_eq!(t.wants_identity((7, 5), &loc(ROOT, "b")), (ino, true));
        let (_, g2) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "b"), born(11), false);
        assert_ne!(g1, g2, "another birth: another object");
        assert_eq!(t.info(ino).unwrap().locs, vec![loc(ROOT, "b")]);
        assert_eq!(
            t.at(&loc(ROOT, "a")),
            None,
            "the old object's name is not the new one's"
        );
        // A hard link made while the first name is known: same birth, same object.
        let (_, g3) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "c"), born(11), false);
        assert_eq!(g2, g3);
        // Without birth times, the known names decide.
        let (n, g4) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "p"), None, false);
        let named = |named| {
            Some(Identity {
                named: Some(named),
                ..Identity::default()
            })
        };
        let (_, g5) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "link"), named(true), false);
        assert_eq!(g4, g5, "\"p\" still leads to it: a hard link");
        let (_, g6) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "q"), named(false), false);
        assert_ne!(g5, g6, "no known name leads to it: a reused number");
        assert_eq!(t.generation(n), g6);
    }

    #[test]
    fn lookups_forget_and_generations() {
        let mut t = Inodes::new((7, 100));
        let (ino, g1) = t.remember((7, 5), libc::S_IFREG, loc(ROOT, "a"));
        assert_eq!(ino, 5);
        t.remember((7, 5), libc::S_IFREG, loc(ROOT, "a"));
        assert!(!t.forget(5, 1));
        assert!(t.info(5).is_some());
        assert!(t.forget(5, 1));
        assert!(t.info(5).is_none());
        assert_eq!(t.at(&loc(ROOT, "a")), None);
        let (_, g2) = t.remember((7, 5), libc::S_IFREG, loc(ROOT, "b"));
        assert_ne!(g1, g2, "a reused number gets a new generation");
        let (_, g3) = t.remember((7, 5), libc::S_IFDIR, loc(ROOT, "b"));
        assert_ne!(g2, g3, "a number naming another object gets a new generation");
        assert!(!t.forget(ROOT, 10));
    }

    #[test]
    fn a_stale_file_gets_a_new_generation_at_a_lookup_with_no_handle_open() {
        let mut t = Inodes::new((1, 2));
        let loc: Loc = (ROOT, b"f".to_vec());
        let (n, g1) = t.remember_as((1, 10), libc::S_IFREG, loc.clone(), None, true);
        assert!(t.mark_stale(n));
        t.opened(n);
        // Open: every reply keeps the generation (a new one would fail the open file).
        assert_eq!(t.remember_as((1, 10), libc::S_IFREG, loc.clone(), None, true), (n, g1));
        assert!(t.closed(n));
        // Closed: a readdirplus-like reply keeps it, a lookup renews it, once.
        assert_eq!(t.remember_as((1, 10), libc::S_IFREG, loc.clone(), None, false), (n, g1));
        let (n2, g2) = t.remember_as((1, 10), libc::S_IFREG, loc.clone(), None, true);
        assert_eq!(n2, n);
        assert_ne!(g2, g1);
        assert!(!t.is_stale(n));
        assert_eq!(t.remember_as((1, 10), libc::S_IFREG, loc.clone(), None, true), (n, g2));
        // The lookups are all still owed forgets.
        assert!(!t.forget(n, 4));
        assert!(t.forget(n, 1));
        // Only regular files are marked.
        let (d, _) = t.remember((1, 11), libc::S_IFDIR, (ROOT, b"d".to_vec()));
        assert!(!t.mark_stale(d));
        t.mark_all_stale(None);
        assert!(!t.is_stale(d));
    }

    #[test]
    fn a_removed_object_whose_number_returns_gets_a_new_generation() {
        let mut t = Inodes::new((7, 100));
        let (ino, g1) = t.remember((7, 9), libc::S_IFDIR, loc(ROOT, "d"));
        // rmdir: the name is gone, the kernel has not forgotten the inode yet.
        assert_eq!(t.remove_loc(&loc(ROOT, "d")), Some(ino));
        // mkdir elsewhere reuses backing inode 9.
        let (ino2, g2) = t.remember((7, 9), libc::S_IFDIR, loc(ROOT, "e"));
        assert_eq!(ino2, ino);
        assert_ne!(g1, g2);
        // Counts stay the sum of both, as the kernel's forgets will be.
        assert!(!t.forget(ino, 1));
        assert!(t.forget(ino, 1));
        // A second name of a live object does not change its generation.
        let (_, g3) = t.remember((7, 11), libc::S_IFREG, loc(ROOT, "f"));
        let (_, g4) = t.remember((7, 11), libc::S_IFREG, loc(ROOT, "hardlink"));
        assert_eq!(g3, g4);
    }

    fn born(s: i64) -> Option<Identity> {
        Some(Identity {
            birth: Some((s, 0)),
            ..Identity::default()
        })
    }

    #[test]
    fn a_hard_link_seen_after_the_last_known_name_went_is_the_same_object() {
        let mut t = Inodes::new((7, 100));
        let (ino, g1) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "a"), born(10), false);
        assert_eq!(t.remove_loc(&loc(ROOT, "a")), Some(ino));
        // Same birth: the other link of the same file, same generation.
        let (_, g2) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "b"), born(10), false);
        assert_eq!(g1, g2);
        // Another birth under the same number: reused, even with names still known.
        let (_, g3) = t.remember_as((7, 5), libc::S_IFREG, loc(ROOT, "c"), born(11), false);
        assert_ne!(g2, g3);
        // Without birth times: pinned by an open handle, the same object; unpinned, reused.
        let (n, g4) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "p"), None, false);
        t.remove_loc(&loc(ROOT, "p"));
        let pinned = Some(Identity {
            pinned: true,
            ..Identity::default()
        });
        let (_, g5) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "q"), pinned, false);
        assert_eq!(g4, g5);
        t.remove_loc(&loc(ROOT, "q"));
        let (_, g6) = t.remember_as((7, 6), libc::S_IFREG, loc(ROOT, "r"), None, false);
        assert_ne!(g5, g6);
        assert_eq!(t.generation(n), g6);
    }

    #[test]
    fn the_table_shrinks_when_the_kernel_forgets() {
        let mut t = Inodes::new((7, 1 << 40));
        for i in 2..100_002u64 {
            t.remember((7, i), libc::S_IFREG, loc(ROOT, &format!("f{i}")));
        }
        let peak = t.nodes.capacity();
        for i in 2..100_002u64 {
            assert!(t.forget(i, 1));
        }
        assert!(t.is_empty());
        assert!(t.nodes.capacity() < peak / 16, "{} of {peak}", t.nodes.capacity());
        assert!(t.by_loc.capacity() <= 2048, "{}", t.by_loc.capacity());
    }

    #[test]
    fn hard_links_and_renames() {
        let mut t = Inodes::new((7, 100));
        t.remember((7, 5), libc::S_IFREG, loc(ROOT, "a"));
        t.remember((7, 5), libc::S_IFREG, loc(ROOT, "b"));
        assert_eq!(t.info(5).unwrap().locs.len(), 2);
        assert_eq!(t.remove_loc(&loc(ROOT, "a")), Some(5));
        assert_eq!(t.info(5).unwrap().locs, vec![loc(ROOT, "b")]);
        t.remember((7, 6), libc::S_IFREG, loc(ROOT, "c"));
        t.rename(&loc(ROOT, "b"), &loc(ROOT, "c"), false);
        assert_eq!(t.at(&loc(ROOT, "c")), Some(5));
        assert!(t.info(6).unwrap().locs.is_empty());
        t.remember((7, 6), libc::S_IFREG, loc(ROOT, "d"));
        t.rename(&loc(ROOT, "c"), &loc(ROOT, "d"), true);
        assert_eq!(t.at(&loc(ROOT, "c")), Some(6));
        assert_eq!(t.at(&loc(ROOT, "d")), Some(5));
        // A name that now names another object moves to it.
        t.remember((7, 9), libc::S_IFREG, loc(ROOT, "d"));
        assert!(t.info(5).unwrap().locs.is_empty());
    }
}
