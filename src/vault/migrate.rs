//! Moving a vault's objects to its newest key epoch (the walk of `coffer rekey`, docs/FORMAT.md
//! §15.7): names are renamed in place to their newest-epoch backing names, each regular file
//! under an older epoch is sealed again into a temporary next to it and renamed over the old
//! one (one write and one rename per file), symlink targets and xattrs are sealed again.
//! A hard-linked file is sealed once, at the first of its names the walk meets; each further
//! name is pointed at the new copy (a link to it under a temporary name, renamed over). The
//! new copy is also kept under a name of its own until the walk ends ([`link_copies`]), so
//! that a walk stopped between two names of the file is finished with the names linked again.
//! Idempotent: a walk that stopped (Ctrl-C, a crash) is finished by walking again, and a walk
//! of a vault whose objects are all under the newest epoch changes nothing.
//!
//! [`link_copies`]: super::link_copies

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsRawFd;

use crate::format::epochs::Layout;
use crate::format::header::FileHeader;

use super::backing::{temp_name, TimeSpec};
use super::dir::{Dir, Entry};
use super::error::{Damage, IoContext, Result, VaultError};
use super::link_copies::LinkCopies;
use super::live::Live;
use super::walk::{walk_fd_budget, DirChain};
use super::{CryptFile, Vault};

/// Plaintext bytes copied per read when a file is sealed again.
const COPY_CHUNK: usize = 1 << 20;

/// What a walk found or did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Migration {
    /// Directories walked.
    pub dirs: u64,
    /// Entries renamed to their newest-epoch backing name.
    pub names: u64,
    /// Regular files sealed again (one backing write and one rename each).
    pub files: u64,
    /// Plaintext bytes of those files.
    pub bytes: u64,
    /// Symlink targets sealed again.
    pub symlinks: u64,
    /// Directories whose xattrs were sealed again.
    pub dir_xattrs: u64,
    /// Further names of hard-linked files, pointed at the file's new copy (no data written).
    pub links: u64,
    /// Objects met twice, under two machines' newest-epoch names (two rekeys at once), whose
    /// older-named copy was equal to the other and removed, or (entries of such a directory)
    /// moved into the other.
    #[serde(default)]
    pub merged: u64,
    /// Objects under an epoch this config does not list (names that open under none of its
    /// keys, files and symlink targets sealed under an epoch ID it lacks): never touched,
    /// each also in `left`.
    pub unlisted: u64,
    /// Objects left under an older epoch, with why (a hard-linked file, a name taken, damage).
    pub left: Vec<String>,
    /// Files of a mounted vault left as they were because they changed, or were opened, while
    /// they were being sealed again: another pass takes them.
    pub changed: u64,
    /// The walk stopped before its end (asked to by [`Live::stop`]).
    pub stopped: bool,
}

impl Migration {
    /// Objects moved (or, in a plan, to move).
    pub fn moved(&self) -> u64 {
        self.names + self.files + self.symlinks + self.dir_xattrs + self.links
    }

    /// Adds the counts of a further pass `m` (what is left is the last pass's to say).
    pub fn add(&mut self, m: &Migration) {
        self.dirs += m.dirs;
        self.names += m.names;
        self.files += m.files;
        self.bytes += m.bytes;
        self.symlinks += m.symlinks;
        self.dir_xattrs += m.dir_xattrs;
        self.links += m.links;
        self.unlisted += m.unlisted;
        self.merged += m.merged;
    }
}

/// Whether the walk acts or only counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Count what is under an older epoch (names, files and their bytes, symlinks, xattrs).
    Plan,
    /// Move it to the newest epoch.
    Move,
}

/// Most hard-linked files whose new copy a walk keeps open while it looks for their other names.
const LINK_GROUPS_MAX: usize = 256;

/// Hard-linked files met so far: by the old inode (device, inode), the new copy and how many
/// names still point at the old one.
#[derive(Default)]
struct Links(HashMap<(u64, u64), LinkGroup>);

struct LinkGroup {
    /// The new copy (`None` in a plan).
    file: Option<File>,
    /// Names of the old inode not met yet.
    left: u64,
}

impl Links {
    /// A hard-linked file (stat `st`) met at its first name: `file` is its new copy, and its
    /// other names are still to come.
    fn start(&mut self, st: &libc::stat, file: Option<File>) {
        let group = LinkGroup {
            file,
            left: st.st_nlink - 1,
        };
        self.0.insert((st.st_dev, st.st_ino), group);
    }
}

/// New copies of a directory's files under temporary names, renamed over the old names in
/// one batch: one `syncfs` makes the whole batch durable before any rename (instead of one
/// `fsync` per file), so a crash leaves each name on its old file or its new one, whole.
struct Pending {
    /// The temporary's name.
    tmp: Vec<u8>,
    /// The name it replaces.
    target: Vec<u8>,
}

/// Most new copies a directory holds under temporary names before they are renamed.
const PENDING_MAX: usize = 512;

struct Frame {
    entries: Vec<Entry>,
    next: usize,
    plain: Vec<u8>,
    pending: Vec<Pending>,
}

impl Vault {
    /// Walks the whole tree and moves (or, with [`Mode::Plan`], counts) every object still
    /// under an older key epoch. `progress` sees the running totals after each object.
    pub fn migrate_to_newest(&self, mode: Mode, progress: &mut dyn FnMut(&Migration)) -> Result<Migration> {
        self.migrate_walk(mode, None, progress, &mut || Ok(()))
    }

    /// [`migrate_to_newest`](Self::migrate_to_newest) that calls `guard` at the start, before
    /// entering each directory and before each batch of renames; an error of `guard` stops the
    /// walk at once with that error, the batches not yet renamed discarded (their temporaries
    /// removed): each object is left as it was or moved, never half way. A rekey's guard is a
    /// [`ConfigWatch`](super::epoch_watch::ConfigWatch).
    pub fn migrate_watched(
        &self,
        mode: Mode,
        progress: &mut dyn FnMut(&Migration),
        guard: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Migration> {
        self.migrate_walk(mode, None, progress, guard)
    }

    /// [`migrate_to_newest`](Self::migrate_to_newest) of a vault that a running mount serves,
    /// moving each object around the mount's own use of it (see [`Live`]). Hard-linked files
    /// are left and reported; files that changed while they were copied are counted in
    /// [`Migration::changed`] for another pass.
    /// `guard` is asked before each object, as in [`migrate_watched`](Self::migrate_watched).
    pub fn migrate_live(
        &self,
        live: &dyn Live,
        progress: &mut dyn FnMut(&Migration),
        guard: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Migration> {
        self.migrate_walk(Mode::Move, Some(live), progress, guard)
    }

    fn migrate_walk(
        &self,
        mode: Mode,
        live: Option<&dyn Live>,
        progress: &mut dyn FnMut(&Migration),
        guard: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Migration> {
        if mode == Mode::Move {
            self.check_writable()?;
        }
        let mut out = Migration::default();
        if self.vault_keys().newest_first().nth(1).is_none() {
            // One epoch: nothing can be under another.
            return Ok(out);
        }
        guard()?;
        let root = self.root_dir()?;
        let mut chain = DirChain::new(root, walk_fd_budget()).at(self.cipherdir())?;
        let mut frames = Vec::new();
        let mut links = Links::default();
        let mut live_links = super::live::LiveLinks::default();
        let mut copies = LinkCopies::scan(self)?;
        self.enter_dir(&mut chain, &mut frames, Vec::new(), mode, live, &mut out)?;
        while let Some(frame) = frames.last_mut() {
            // A walk of a mounted vault has no new copies pending: each file is renamed as
            // soon as it is sealed, so it can stop between any two objects.
            if live.is_some_and(|l| l.stop()) {
                out.stopped = true;
                return Ok(out);
            }
            if live.is_some() {
                // Nothing is pending either: the guard is asked before each object.
                guard()?;
            }
            let Some(e) = frame.entries.get(frame.next).cloned() else {
                if !frame.pending.is_empty() {
                    if let Err(stop) = guard() {
                        self.discard_pending(&mut chain, &mut frames);
                        return Err(stop);
                    }
                }
                let Some(frame) = frames.last_mut() else { break };
                let pending = std::mem::take(&mut frame.pending);
                self.rename_pending(chain.top().at(self.cipherdir())?, pending, &mut out);
                frames.pop();
                chain.pop();
                continue;
            };
            frame.next += 1;
            let mut plain = frame.plain.clone();
            if !plain.is_empty() {
                plain.push(b'/');
            }
            plain.extend_from_slice(&e.plain);
            let dir = chain.top().at(self.cipherdir())?;
            let shown = String::from_utf8_lossy(&plain).into_owned();
            let backing = match self.move_name(dir, &e, mode, live, &mut out) {
                Ok(Some(b)) => b,
                Ok(None) => {
                    out.left.push(format!("{shown}: its newest-epoch name is taken"));
                    continue;
                }
                Err(err) => {
                    out.left.push(format!("{shown}: {err}"));
                    continue;
                }
            };
            let st = match dir.fd.stat(&backing) {
                Ok(st) => st,
                Err(err) => {
                    out.left.push(format!("{shown}: {err}"));
                    continue;
                }
            };
            let done = match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => match dir.open_child(self, &backing) {
                    Ok(child) => {
                        if let Err(stop) = guard() {
                            self.discard_pending(&mut chain, &mut frames);
                            return Err(stop);
                        }
                        let rel = dir.rel_child(&backing);
                        chain.push(&backing, child).at(rel)?;
                        self.enter_dir(&mut chain, &mut frames, plain, mode, live, &mut out)?;
                        Ok(())
                    }
                    Err(err) => Err(err),
                },
                libc::S_IFREG if live.is_some() => match live {
                    Some(l) => self.move_file_live(l, dir, &backing, &st, &mut out, &mut live_links, &mut copies),
                    None => Ok(()),
                },
                libc::S_IFREG => match self.move_file(dir, &backing, &st, mode, &mut out, &mut links, &mut copies) {
                    Ok(Some(p)) => {
                        let Some(frame) = frames.last_mut() else { break };
                        frame.pending.push(p);
                        if frame.pending.len() >= PENDING_MAX {
                            if let Err(stop) = guard() {
                                self.discard_pending(&mut chain, &mut frames);
                                return Err(stop);
                            }
                            let Some(frame) = frames.last_mut() else { break };
                            let pending = std::mem::take(&mut frame.pending);
                            self.rename_pending(chain.top().at(self.cipherdir())?, pending, &mut out);
                        }
                        Ok(())
                    }
                    Ok(None) => Ok(()),
                    Err(e) => Err(e),
                },
                libc::S_IFLNK => self.move_symlink(dir, &backing, mode, live, &mut out),
                _ => Ok(()),
            };
            if let Err(err) = done {
                if matches!(
                    err,
                    VaultError::Corrupt {
                        damage: Damage::EpochUnknown,
                        ..
                    }
                ) {
                    out.unlisted += 1;
                }
                out.left.push(format!("{shown}: {err}"));
            }
            progress(&out);
        }
        if let Some(l) = live {
            // Hard-linked files, once every name of each was met: all names at once.
            self.move_links_live(l, live_links, &mut out, guard, &mut copies)?;
            if out.stopped {
                return Ok(out);
            }
            progress(&out);
        }
        if mode == Mode::Move && copies.any() {
            // The whole tree was walked: every name met points at its file's new copy.
            self.drop_all_link_copies(&mut copies)?;
        }
        let unmet: u64 = links.0.values().map(|g| g.left).sum();
        if unmet > 0 {
            out.left.push(format!(
                "{unmet} names of hard-linked files were not found in the vault: they keep the older epoch"
            ));
        }
        Ok(out)
    }

    /// Lists the directory on top of `chain` and moves its own xattrs.
    fn enter_dir(
        &self,
        chain: &mut DirChain<Dir>,
        frames: &mut Vec<Frame>,
        plain: Vec<u8>,
        mode: Mode,
        live: Option<&dyn Live>,
        out: &mut Migration,
    ) -> Result<()> {
        let dir = chain.top().at(self.cipherdir())?;
        out.dirs += 1;
        let shown = if plain.is_empty() {
            "/".to_string()
        } else {
            String::from_utf8_lossy(&plain).into_owned()
        };
        match self.xattrs_current(dir.fd.as_raw_fd()) {
            Ok(true) => {}
            Ok(false) => {
                if mode == Mode::Move {
                    let reseal = || self.reseal_xattrs(dir.fd.as_raw_fd(), &dir.iv);
                    let done = match live {
                        Some(l) => dir
                            .fd
                            .fstat()
                            .at(&dir.rel)
                            .and_then(|st| l.with_object_locked(&st, &mut |_| reseal())),
                        None => reseal(),
                    };
                    if let Err(err) = done {
                        out.left.push(format!("{shown} (xattrs): {err}"));
                    }
                }
                out.dir_xattrs += 1;
            }
            Err(err) => out.left.push(format!("{shown} (xattrs): {err}")),
        }
        let entries = match self.list_with_unopened(dir) {
            Ok((e, unopened)) => {
                for name in unopened {
                    out.unlisted += 1;
                    out.left.push(format!(
                        "{}: its name opens under no key epoch this config lists (another machine's rekey, or damage)",
                        dir.rel_child(&name).display()
                    ));
                }
                e
            }
            Err(err) => {
                out.left.push(format!("{shown}: {err}"));
                Vec::new()
            }
        };
        frames.push(Frame {
            entries,
            next: 0,
            plain,
            pending: Vec::new(),
        });
        Ok(())
    }

    /// Renames entry `e` of `dir` to its backing name under the newest epoch and the diriv
    /// (long-name and symlink sidecars follow); the backing name it has now. `None`: that name
    /// is taken by another entry.
    fn move_name(
        &self,
        dir: &Dir,
        e: &Entry,
        mode: Mode,
        live: Option<&dyn Live>,
        out: &mut Migration,
    ) -> Result<Option<Vec<u8>>> {
        // A duplicate of another entry's name: when that name's newest-epoch entry is another
        // copy of this object (two rekeys at once, both synced), merge into it while not
        // mounted; else this one is moved under its shown name, as any entry.
        if let Some(base) = &e.dup_of {
            let target = self.cipher_name(dir, base)?;
            if target.entry == e.backing {
                return Ok(Some(e.backing.clone()));
            }
            if mode == Mode::Move
                && live.is_none()
                && dir.fd.stat(&target.entry).is_ok()
                && self.merge_moved_copy(dir, &e.backing, dir, &target.entry, out, 0)?
            {
                return Ok(Some(target.entry));
            }
        }
        let target = self.cipher_name(dir, &e.plain)?;
        if target.entry == e.backing {
            return Ok(Some(e.backing.clone()));
        }
        // A sync client's conflict copy is renamed too: its shown name is kept, and it no
        // longer needs the older epoch's key to be shown.
        if dir.fd.stat(&target.entry).is_ok() {
            return Ok(None);
        }
        out.names += 1;
        if mode == Mode::Plan {
            return Ok(Some(e.backing.clone()));
        }
        match live {
            Some(l) => l.quiet(&mut || self.move_entry(dir, &e.backing, &target))?,
            None => self.move_entry(dir, &e.backing, &target)?,
        }
        Ok(Some(target.entry))
    }

    /// Whether a file with header `h` is sealed under the newest epoch.
    pub(super) fn header_current(&self, h: &FileHeader) -> bool {
        let all_keys = self.vault_keys();
        let newest = all_keys.newest();
        match newest.layout {
            Layout::V3 => newest.id.is_some() && h.epoch_id() == newest.id,
            Layout::V1 => h.epoch_id().is_none(),
        }
    }

    /// Seals regular file `backing` of `dir` again under the newest epoch, into a temporary
    /// renamed over it, keeping holes, size, xattrs, mode, owner and times. A hard-linked file
    /// is sealed once, at its first name, and its new copy kept in `copies`; each further name
    /// is pointed at the new copy, as is each name of a file whose new copy an earlier walk kept.
    #[allow(clippy::too_many_arguments)]
    fn move_file(
        &self,
        dir: &Dir,
        backing: &[u8],
        st: &libc::stat,
        mode: Mode,
        out: &mut Migration,
        links: &mut Links,
        copies: &mut LinkCopies,
    ) -> Result<Option<Pending>> {
        let inode = (st.st_dev, st.st_ino);
        if let Some(group) = links.0.get_mut(&inode) {
            out.links += 1;
            group.left = group.left.saturating_sub(1);
            let done = group.left == 0;
            let mut pending = None;
            if let Some(file) = &group.file {
                let tmp = temp_name().at(&dir.rel)?;
                dir.fd.link_open_file(file, &tmp).at(dir.rel_child(&tmp))?;
                pending = Some(Pending {
                    tmp,
                    target: backing.to_vec(),
                });
            }
            if done {
                links.0.remove(&inode);
            }
            return Ok(pending);
        }
        let old = self.open_file(dir, backing, false)?;
        let Some(h) = old.header()? else {
            // Empty and never written: nothing is sealed in it (and it has no xattrs).
            return Ok(None);
        };
        if self.header_current(&h) {
            return Ok(None);
        }
        if h.epoch_id().is_some_and(|id| self.vault_keys().by_id(id).is_none()) {
            // Another machine's epoch (or another vault's file): left exactly as it is.
            return Err(VaultError::corrupt(dir.rel_child(backing), None, Damage::EpochUnknown));
        }
        let len = old.plain_len()?;
        let linked = st.st_nlink > 1;
        if linked && links.0.len() >= LINK_GROUPS_MAX {
            return Err(VaultError::errno_at(dir.rel_child(backing), libc::EMLINK));
        }
        if mode == Mode::Move {
            // An earlier walk stopped between this file's names: point this one at the copy
            // the other names already have.
            if let Some(kept) = self.kept_link_copy(copies, &old, &h, st)? {
                out.links += 1;
                let tmp = temp_name().at(&dir.rel)?;
                dir.fd.link_open_file(&kept, &tmp).at(dir.rel_child(&tmp))?;
                if linked {
                    links.start(st, Some(kept));
                }
                return Ok(Some(Pending {
                    tmp,
                    target: backing.to_vec(),
                }));
            }
        }
        out.files += 1;
        out.bytes += len;
        if mode == Mode::Plan {
            if linked {
                links.start(st, None);
            }
            return Ok(None);
        }
        let tmp = temp_name().at(&dir.rel)?;
        let made = self.reseal_into(dir, &old, &h, &tmp, st, len).and_then(|new| {
            if linked {
                self.keep_link_copy(copies, &h.file_id, &new)?;
            }
            Ok(new)
        });
        let new = match made {
            Ok(new) => new,
            Err(e) => {
                let _ = dir.fd.unlink(&tmp);
                return Err(e);
            }
        };
        if linked {
            links.start(st, Some(new));
        }
        Ok(Some(Pending {
            tmp,
            target: backing.to_vec(),
        }))
    }

    /// Removes the new copies not yet renamed in every directory of the walk (a walk stopped
    /// by its guard): their objects stay as they were.
    fn discard_pending(&self, chain: &mut DirChain<Dir>, frames: &mut Vec<Frame>) {
        while let Some(frame) = frames.pop() {
            match chain.top() {
                Ok(dir) => {
                    for p in frame.pending {
                        if let Err(e) = dir.fd.unlink(&p.tmp) {
                            log::warn!("{}: {e}", dir.rel_child(&p.tmp).display());
                        }
                    }
                }
                Err(e) => log::warn!("{} new copies left as temporaries: {e}", frame.pending.len()),
            }
            chain.pop();
        }
    }

    /// Renames each new copy of `dir` over the name it replaces, once one `syncfs` has made
    /// them all durable; a copy that cannot take its place is removed and reported.
    fn rename_pending(&self, dir: &Dir, pending: Vec<Pending>, out: &mut Migration) {
        if pending.is_empty() {
            return;
        }
        if let Err(e) = dir.fd.syncfs() {
            for p in pending {
                let _ = dir.fd.unlink(&p.tmp);
                out.left.push(format!("{}: {e}", dir.rel_child(&p.target).display()));
            }
            return;
        }
        for p in pending {
            if let Err(e) = dir.fd.rename(&p.tmp, &dir.fd, &p.target, 0) {
                let _ = dir.fd.unlink(&p.tmp);
                out.left.push(format!("{}: {e}", dir.rel_child(&p.target).display()));
            }
        }
        if let Err(e) = dir.fd.fsync() {
            log::warn!("{}: {e}", dir.rel.display());
        }
    }

    /// Seals `old` (header `h`) again into the new file `tmp` of `dir` (not yet synced: see
    /// [`rename_pending`](Self::rename_pending)); returns it, open.
    pub(super) fn reseal_into(
        &self,
        dir: &Dir,
        old: &CryptFile,
        h: &FileHeader,
        tmp: &[u8],
        st: &libc::stat,
        len: u64,
    ) -> Result<File> {
        let rel = dir.rel_child(tmp);
        let file = dir.fd.open_file(tmp, true, Some(0o600)).at(&rel)?;
        let new = self.crypt_file(file, rel.clone());
        let mut buf = vec![0u8; COPY_CHUNK];
        let mut off = 0;
        while off < len {
            let Some(data) = old.seek_data_hole(off, true)? else {
                break;
            };
            let end = old.seek_data_hole(data, false)?.unwrap_or(len).min(len);
            let mut pos = data;
            while pos < end {
                let want = usize::try_from((end - pos).min(COPY_CHUNK as u64)).unwrap_or(COPY_CHUNK);
                let got = old.read_at(&mut buf[..want], pos)?;
                if got == 0 {
                    break;
                }
                new.write_at(&buf[..got], pos)?;
                pos += got as u64;
            }
            off = end.max(data + 1);
        }
        new.set_len(len)?;
        let old_fd = old.backing().as_raw_fd();
        let names = self.xattr_list(old_fd, &h.file_id)?;
        if !names.is_empty() {
            let nh = new.ensure_header()?;
            for n in names {
                if let Some(v) = self.xattr_get(old_fd, &h.file_id, &n)? {
                    self.xattr_set(new.backing().as_raw_fd(), &nh.file_id, &n, &v, 0)?;
                }
            }
        }
        let f = new.backing();
        std::os::unix::fs::fchown(f, Some(st.st_uid), Some(st.st_gid))
            .or_else(|e| {
                if e.raw_os_error() == Some(libc::EPERM) {
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .at(&rel)?;
        f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(st.st_mode & 0o7777))
            .at(&rel)?;
        let (atime, mtime) = times_of(st);
        dir.fd.utimens(tmp, atime, mtime).at(&rel)?;
        new.backing().try_clone().at(&rel)
    }

    /// Seals symlink `backing`'s target again under the newest epoch.
    fn move_symlink(
        &self,
        dir: &Dir,
        backing: &[u8],
        mode: Mode,
        live: Option<&dyn Live>,
        out: &mut Migration,
    ) -> Result<()> {
        if self.symlink_current(dir, backing)? {
            return Ok(());
        }
        out.symlinks += 1;
        if mode == Mode::Plan {
            return Ok(());
        }
        match live {
            Some(l) => l.quiet(&mut || self.reseal_symlink(dir, backing)),
            None => self.reseal_symlink(dir, backing),
        }
    }
}

/// The access and modification times of `st`.
fn times_of(st: &libc::stat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    )
}
