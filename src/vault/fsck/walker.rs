//! The fsck walk: checks each backing entry of each directory, depth first in backing-name order.

use std::collections::HashSet;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::format::backing_name::{self, classify, BackingName};
use crate::vault::dir::{shorten_rel, Dir};
use crate::vault::error::{Result, VaultError};
use crate::vault::walk::DirChain;
use crate::vault::Vault;

use super::{Damage, DamageKind, FsckReport};

/// One fsck run: walks the vault and collects the report.
pub(super) struct Walker<'a> {
    vault: &'a Vault,
    repair: bool,
    min_temp_age: std::time::Duration,
    pub(super) report: FsckReport,
    progress: &'a mut dyn FnMut(&FsckReport),
    /// The directories being checked, the root first (the top is the one whose entries are
    /// checked now): the walk is a loop over this stack, not a recursion, so that a tree of
    /// any depth fits in a thread's stack; their descriptors are in a [`DirChain`].
    frames: Vec<Frame>,
    /// Plain path of the top directory (its backing path where a name does not decrypt).
    plain: Vec<u8>,
}

/// A directory whose entries are being checked.
struct Frame {
    /// Its backing entries, in backing-name order.
    raw: Vec<crate::vault::RawEntry>,
    names: HashSet<Vec<u8>>,
    /// The next entry to check.
    next: usize,
    /// Backing path, for messages.
    rel: PathBuf,
    /// How the parent's plain path comes back when this directory is done.
    parent_plain: ParentPlain,
}

enum ParentPlain {
    /// Its length (this directory's path extends it).
    Len(usize),
    /// The whole of it (this directory's path replaced it).
    Saved(Vec<u8>),
}

fn lossy(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl<'a> Walker<'a> {
    /// A walker with an empty report.
    pub(super) fn new(
        vault: &'a Vault,
        repair: bool,
        min_temp_age: std::time::Duration,
        progress: &'a mut dyn FnMut(&FsckReport),
    ) -> Self {
        Walker {
            vault,
            repair,
            min_temp_age,
            report: FsckReport::default(),
            progress,
            frames: Vec::new(),
            plain: Vec::new(),
        }
    }

    fn add(&mut self, plain: Option<&[u8]>, rel: &Path, kind: DamageKind, detail: impl Into<String>) {
        self.report.damage.push(Damage {
            plain_path: plain.map(lossy),
            cipher_path: rel.display().to_string(),
            kind,
            blocks: Vec::new(),
            detail: detail.into(),
            repaired: None,
        });
    }

    /// Checks every directory from the top of `chain` down, in backing-name order, each
    /// subdirectory when its name comes (the order of the report).
    pub(super) fn walk(&mut self, chain: &mut DirChain<Dir>) -> Result<()> {
        self.enter(chain, ParentPlain::Len(0))?;
        while let Some(frame) = self.frames.last_mut() {
            let Some(e) = frame.raw.get(frame.next) else {
                (self.progress)(&self.report);
                self.leave(chain);
                continue;
            };
            frame.next += 1;
            let name = e.name.clone();
            let enc = self.vault.params().name_encoding;
            if matches!(classify(&name, enc), BackingName::Config | BackingName::Diriv) {
                continue;
            }
            let dir = match chain.top() {
                Ok(d) => d,
                Err(err) => {
                    // Its descriptor was dropped and it is gone or replaced: the rest of it
                    // cannot be checked.
                    frame.next = frame.raw.len();
                    let rel = frame.rel.clone();
                    let plain = self.plain.clone();
                    self.add(Some(&plain), &rel, DamageKind::Unreadable, err.to_string());
                    continue;
                }
            };
            let names = std::mem::take(&mut frame.names);
            let child = self.item(dir, &name, &names);
            if let Some(f) = self.frames.last_mut() {
                f.names = names;
            }
            if let Some((child, plain)) = child? {
                // Shown by its backing path where its name does not decrypt.
                let shown = plain.unwrap_or_else(|| child.rel.as_os_str().as_bytes().to_vec());
                let parent_plain = if shown.starts_with(&self.plain) {
                    ParentPlain::Len(self.plain.len())
                } else {
                    ParentPlain::Saved(std::mem::take(&mut self.plain))
                };
                self.plain = shown;
                chain
                    .push(&name, child)
                    .map_err(|e| VaultError::io(self.plain_rel(), e))?;
                self.enter(chain, parent_plain)?;
            }
        }
        Ok(())
    }

    /// Backing path of the top frame.
    fn plain_rel(&self) -> PathBuf {
        self.frames.last().map(|f| f.rel.clone()).unwrap_or_default()
    }

    /// Starts on the directory at the top of `chain`: counts it, reports and merges its diriv
    /// copies, lists it.
    fn enter(&mut self, chain: &mut DirChain<Dir>, parent_plain: ParentPlain) -> Result<()> {
        self.report.dirs += 1;
        let dir = chain.top().map_err(|e| VaultError::io(self.plain_rel(), e))?;
        let mut raw = dir.fd.list().map_err(|e| VaultError::io(&dir.rel, e))?;
        if self.diriv_copies(dir, &raw) {
            raw = dir.fd.list().map_err(|e| VaultError::io(&dir.rel, e))?;
        }
        // Backing-name order, so that a report does not depend on the file system's order.
        raw.sort_by(|a, b| a.name.cmp(&b.name));
        let names = raw.iter().map(|e| e.name.clone()).collect();
        self.frames.push(Frame {
            raw,
            names,
            next: 0,
            rel: dir.rel.clone(),
            parent_plain,
        });
        Ok(())
    }

    /// Done with the top directory: back to its parent.
    fn leave(&mut self, chain: &mut DirChain<Dir>) {
        if let Some(f) = self.frames.pop() {
            match f.parent_plain {
                ParentPlain::Len(n) => self.plain.truncate(n),
                ParentPlain::Saved(p) => self.plain = p,
            }
        }
        chain.pop();
    }

    /// Checks one backing entry of `dir`; returns a subdirectory to check next, with its
    /// plain path when its name decrypts.
    fn item(&mut self, dir: &Dir, name: &[u8], names: &HashSet<Vec<u8>>) -> Result<Option<(Dir, Option<Vec<u8>>)>> {
        let rel = dir.rel_child(name);
        if dir.rel.as_os_str().is_empty() && crate::format::conflict::config_copy_marker(name).is_some() {
            self.config_copy(dir, name, &rel);
            return Ok(None);
        }
        match classify(name, self.vault.params().name_encoding) {
            BackingName::Config | BackingName::Diriv => {}
            BackingName::Temp
                if backing_name::parse_link_copy(name).is_some()
                    && self.vault.vault_keys().newest_first().nth(1).is_some() =>
            {
                // The kept new copy of a hard-linked file, while a rekey is under way: the
                // next `coffer rekey` points the file's remaining names at it and removes it.
            }
            BackingName::Temp => {
                let mut repaired = None;
                if self.repair && is_old(&dir.fd, name, self.min_temp_age) {
                    let r = dir.fd.unlink(name).or_else(|_| remove_tree(&dir.fd, name));
                    if r.is_ok() {
                        repaired = Some("removed".to_string());
                    }
                }
                self.add(
                    None,
                    &rel,
                    DamageKind::StrayTemp,
                    "temporary file left by an interrupted operation",
                );
                if let Some(d) = self.report.damage.last_mut() {
                    d.repaired = repaired;
                }
            }
            BackingName::LongSidecar(hash) => {
                let entry = backing_name::long_entry_name(hash);
                let copy_exists = names
                    .iter()
                    .any(|n| n.starts_with(hash.as_bytes()) && n.ends_with(b".long") && n.len() > entry.len());
                if !names.contains(entry.as_bytes()) && !copy_exists {
                    self.orphan(dir, name, &rel, "long-name sidecar without its entry");
                } else if let Err(err) = self.vault.read_sidecar(dir, hash) {
                    self.add(None, &rel, DamageKind::Name, err.to_string());
                }
            }
            BackingName::LinkSidecar(stem) => {
                if !names.contains(stem.as_bytes()) {
                    self.orphan(dir, name, &rel, "symlink-target sidecar without its symlink");
                }
            }
            BackingName::Short(_) | BackingName::Long(_) => return self.entry(dir, name, &rel),
            BackingName::Other => {
                if !crate::format::conflict::is_sync_client_file(name) {
                    return self.other(dir, name, &rel, names);
                }
            }
        }
        Ok(None)
    }

    /// Reports a sync client's conflict copy of `coffer.conf` that names the vault's newest key
    /// epoch: two replicas changed the config (its key slots) at once, and `coffer key merge`
    /// merges them. A copy under another epoch is the other side of a rekey (read by `coffer
    /// rekey`, removed by `rekey --finish`), not reported here.
    fn config_copy(&mut self, dir: &Dir, name: &[u8], rel: &Path) {
        let newest = self.vault.vault_keys().newest().id;
        let detail = match dir.fd.read_small(name, 64 * 1024) {
            Ok(text) => match crate::format::config::Config::parse(&text) {
                Ok(copy) => {
                    let theirs = copy.epochs().ok().flatten().map(|e| e.newest().id);
                    if theirs.is_none() || theirs != newest {
                        return;
                    }
                    "conflict copy of coffer.conf (two replicas changed its key slots at once): `coffer key merge` merges it"
                        .to_string()
                }
                Err(e) => format!("conflict copy of coffer.conf that does not parse ({e})"),
            },
            Err(e) => format!("conflict copy of coffer.conf that cannot be read ({e})"),
        };
        self.add(None, rel, DamageKind::ConfigCopy, detail);
    }

    /// Reports a directory's diriv conflict copies (their IVs widen what decrypts there, gap
    /// G4) and with `repair` merges them. Returns whether the directory changed.
    fn diriv_copies(&mut self, dir: &Dir, raw: &[crate::vault::RawEntry]) -> bool {
        let names: Vec<Vec<u8>> = raw.iter().map(|e| e.name.clone()).collect();
        let copies = crate::vault::merge::diriv_copies(&names);
        if copies.is_empty() {
            return false;
        }
        let what = format!(
            "{} diriv conflict copies (this directory was made on two replicas); --repair renames its entries under coffer.diriv",
            copies.len()
        );
        let plain_dir = self.plain.clone();
        self.add(Some(&plain_dir), &dir.rel, DamageKind::Diriv, what);
        if !self.repair {
            return false;
        }
        let repaired = match self.vault.merge_diriv_copies(dir) {
            Ok(m) if m.left == 0 => Some(format!(
                "merged: {} entries renamed under coffer.diriv, {} copies removed",
                m.renamed, m.removed
            )),
            Ok(m) => {
                log::warn!("{}: {} entries could not be merged", dir.rel.display(), m.left);
                None
            }
            Err(e) => {
                log::warn!("{}: merging diriv copies failed: {e}", dir.rel.display());
                None
            }
        };
        if let Some(d) = self.report.damage.last_mut() {
            d.repaired = repaired;
        }
        true
    }

    /// A name that is not coffer's own spelling: a sync client's conflict copy of an entry
    /// (checked like the entry), of a sidecar or of a diriv (fine while what reads it exists),
    /// or something unknown.
    fn other(
        &mut self,
        dir: &Dir,
        name: &[u8],
        rel: &Path,
        names: &HashSet<Vec<u8>>,
    ) -> Result<Option<(Dir, Option<Vec<u8>>)>> {
        use crate::format::conflict::parse_copy;
        match self.vault.plain_name(dir, name) {
            Ok(Some(_)) => return self.entry(dir, name, rel),
            Ok(None) => {}
            Err(_) => {
                self.add(None, rel, DamageKind::Unknown, "entry coffer does not recognize");
                return Ok(None);
            }
        }
        let enc = self.vault.params().name_encoding;
        let sidecar_of = parse_copy(name, enc)
            .into_iter()
            .find(|c| c.ext == backing_name::NAME_EXT && c.stem.len() == enc.hash_len());
        if let Some(c) = sidecar_of {
            let entry = crate::format::conflict::copy_name(c.stem, c.marker, backing_name::LONG_EXT);
            if !names.contains(entry.as_bytes()) {
                self.orphan(dir, name, rel, "sidecar copy without its entry copy");
            }
        }
        Ok(None)
    }

    fn orphan(&mut self, dir: &Dir, name: &[u8], rel: &Path, what: &str) {
        let repaired = (self.repair && dir.fd.unlink(name).is_ok()).then(|| "removed".to_string());
        self.add(None, rel, DamageKind::OrphanSidecar, what);
        if let Some(d) = self.report.damage.last_mut() {
            d.repaired = repaired;
        }
    }

    /// Checks a user entry; returns it when it is a directory to check next (with its plain
    /// path when its name decrypts).
    fn entry(&mut self, dir: &Dir, backing: &[u8], rel: &Path) -> Result<Option<(Dir, Option<Vec<u8>>)>> {
        let plain = match self.vault.plain_name(dir, backing) {
            Ok(Some(p)) => {
                let mut full = self.plain.clone();
                if !full.is_empty() {
                    full.push(b'/');
                }
                full.extend_from_slice(&p);
                Some(full)
            }
            Ok(None) => return Ok(None),
            Err(err) => {
                self.add(None, rel, DamageKind::Name, err.to_string());
                None
            }
        };
        let st = match dir.fd.stat(backing) {
            Ok(st) => st,
            Err(err) => {
                self.add(plain.as_deref(), rel, DamageKind::Unreadable, err.to_string());
                return Ok(None);
            }
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFDIR => match dir.fd.open_dir(backing) {
                Ok(fd) => match Dir::from_fd(fd, shorten_rel(rel.to_path_buf())) {
                    Ok(child) => {
                        let iv = child.iv;
                        self.xattrs(child.fd.as_raw_fd(), &iv, plain.as_deref(), rel);
                        return Ok(Some((child, plain)));
                    }
                    Err(err) => self.add(plain.as_deref(), rel, DamageKind::Diriv, err.to_string()),
                },
                Err(err) => self.add(plain.as_deref(), rel, DamageKind::Unreadable, err.to_string()),
            },
            libc::S_IFREG => {
                self.report.files += 1;
                self.file(dir, backing, plain.as_deref(), rel);
            }
            libc::S_IFLNK => {
                self.report.symlinks += 1;
                if let Err(err) = self.vault.readlink(dir, backing) {
                    self.add(plain.as_deref(), rel, DamageKind::Symlink, err.to_string());
                }
            }
            _ => {}
        }
        Ok(None)
    }

    fn file(&mut self, dir: &Dir, backing: &[u8], plain: Option<&[u8]>, rel: &Path) {
        let f = match self.vault.open_file(dir, backing, self.repair) {
            Ok(f) => f,
            Err(err) => return self.add(plain, rel, DamageKind::Unreadable, err.to_string()),
        };
        let mut repaired = None;
        if self.repair {
            if let Ok(Some(what)) = f.repair_tail() {
                repaired = Some((DamageKind::Blocks, "crash damage at the end of the file", what));
            }
        }
        let mut verified = f.verify_blocks();
        // Blocks newer than the last block: repaired only when the check found some (the
        // repair reads the whole file).
        if self.repair && repaired.is_none() && matches!(&verified, Ok(c) if !c.ahead.is_empty()) {
            if let Ok(Some(what)) = f.repair_ahead() {
                repaired = Some((DamageKind::MixedVersions, "blocks newer than the last block", what));
                verified = f.verify_blocks();
            }
        }
        match verified {
            Ok(check) => {
                // What was repaired is reported even when damage remains (its own entry, so
                // that the remaining damage still counts as unrepaired).
                if let Some((kind, detail, what)) = repaired {
                    self.add(plain, rel, kind, detail);
                    if let Some(d) = self.report.damage.last_mut() {
                        d.repaired = Some(what);
                    }
                }
                if !check.bad.is_empty() {
                    let n = check.bad.len();
                    self.add(plain, rel, DamageKind::Blocks, format!("{n} damaged block(s)"));
                    if let Some(d) = self.report.damage.last_mut() {
                        d.blocks = check.bad;
                    }
                }
                if let Some(last) = check.order_unchecked {
                    let detail = format!(
                        "order of blocks not checkable: last block {last} does not authenticate, so nothing tells \
                         whether the other blocks belong to one version of the file (a crash tore it, or someone \
                         mixed versions and damaged it); reads serve them unchecked, --repair cannot restore the order"
                    );
                    self.add(plain, rel, DamageKind::OrderNotCheckable, detail);
                }
                if check.sessions_exhausted {
                    let detail = format!(
                        "the last block carries write session {}, the highest: later versions of the file cannot be \
                         told apart; copy the file and replace it with the copy (which gets a new file ID)",
                        crate::format::session::LAST_SESSION
                    );
                    self.add(plain, rel, DamageKind::SessionsExhausted, detail);
                }
                if !check.ahead.is_empty() {
                    let n = check.ahead.len();
                    let detail = format!(
                        "{n} block(s) newer than the last block: an in-place rewrite (sync client) stopped half \
                         way and the file mixes two versions, or a power loss kept a write without its session"
                    );
                    self.add(plain, rel, DamageKind::MixedVersions, detail);
                    if let Some(d) = self.report.damage.last_mut() {
                        d.blocks = check.ahead;
                    }
                }
            }
            Err(err) => self.add(plain, rel, DamageKind::Header, err.to_string()),
        }
        if let Ok(Some(h)) = f.header() {
            self.xattrs(f.backing().as_raw_fd(), &h.file_id, plain, rel);
        }
    }

    fn xattrs(&mut self, fd: std::os::fd::RawFd, owner: &[u8; 16], plain: Option<&[u8]>, rel: &Path) {
        let names = match self.vault.xattr_list(fd, owner) {
            Ok(n) => n,
            Err(err) if err.is_corrupt() => return self.add(plain, rel, DamageKind::Xattr, err.to_string()),
            Err(_) => return,
        };
        for n in names {
            if let Err(err) = self.vault.xattr_get(fd, owner, &n) {
                self.add(plain, rel, DamageKind::Xattr, format!("{}: {err}", lossy(&n)));
            }
        }
    }
}

/// Whether a temp entry is at least `min` old (younger ones may belong to a live operation).
fn is_old(dir: &crate::vault::DirFd, name: &[u8], min: std::time::Duration) -> bool {
    if min.is_zero() {
        return true;
    }
    let Ok(st) = dir.stat(name) else { return false };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    now - st.st_mtime >= min.as_secs() as i64
}

/// Removes a temporary directory tree made by coffer (only diriv and temp files inside).
fn remove_tree(dir: &crate::vault::DirFd, name: &[u8]) -> std::io::Result<()> {
    let child = dir.open_dir(name)?;
    for e in child.list()? {
        child.unlink(&e.name)?;
    }
    dir.rmdir(name)
}
