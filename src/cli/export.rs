//! `coffer export`: decrypt a whole vault into a plain tree (the restore path for backups and
//! machines without FUSE). Damaged items are reported and skipped (damaged blocks become zeros);
//! everything else is exported.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use coffer::format::names::NameEncoding;
use coffer::format::offsets::PLAIN_BLOCK;
use coffer::vault::backing::fsetxattr;
use coffer::vault::walk::{walk_fd_budget, DirChain};
use coffer::vault::{
    classify_backing, plain_size_for, BackingName, CryptFile, Dir, DirFd, RawEntry, TimeSpec, Vault, VaultError,
};

use super::args::ExportArgs;
use super::error::{code, strip_os_error, CliError, CliResult};
use super::open::open_vault;
use super::progress::Progress;

/// Bytes read per request (a whole number of blocks).
const CHUNK: usize = 256 * PLAIN_BLOCK as usize;

/// What the walk found.
#[derive(Debug, Default)]
struct Tally {
    files: u64,
    dirs: u64,
    links: u64,
    bytes: u64,
    damaged: u64,
    failed: u64,
}

/// Shared state of one export.
struct Export<'a> {
    vault: &'a Vault,
    progress: Progress,
    tally: Tally,
    as_root: bool,
    /// The directories being exported, the root first: the walk is a loop over this stack,
    /// not a recursion, so that a tree of any depth fits in the stack; their descriptors (in
    /// the vault and in OUTDIR) are in two [`DirChain`]s.
    frames: Vec<Frame>,
    /// Plaintext path of the top directory.
    plain: Vec<u8>,
}

/// A directory whose entries are being exported.
struct Frame {
    /// Its backing entries, in listing order.
    entries: Vec<RawEntry>,
    /// The next entry to export.
    next: usize,
    /// Backing path, for messages.
    rel: PathBuf,
    /// Length of the parent's plaintext path.
    parent_len: usize,
    /// A subdirectory's backing stat (its output's owner, mode and times are set once its
    /// children are done); `None` for the root.
    meta: Option<libc::stat>,
}

/// Runs `export`.
pub fn run(args: &ExportArgs) -> CliResult {
    prepare_outdir(&args.outdir, args.force)?;
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let out = DirFd::open_path(&args.outdir).map_err(|e| CliError::io(&args.outdir, &e))?;
    let root = vault.root_dir()?;
    let budget = walk_fd_budget() / 2;
    let total = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        backing_bytes(&root.fd, vault.params().name_encoding, budget)
    } else {
        0
    };
    // SAFETY: geteuid has no preconditions and cannot fail.
    let as_root = unsafe { libc::geteuid() } == 0;
    let mut ex = Export {
        vault: &vault,
        progress: Progress::bytes(total),
        tally: Tally::default(),
        as_root,
        frames: Vec::new(),
        plain: Vec::new(),
    };
    let mut src = DirChain::new(root, budget).map_err(|e| CliError::io(&args.cipherdir, &e))?;
    let mut dst = DirChain::new(out, budget).map_err(|e| CliError::io(&args.outdir, &e))?;
    ex.walk(&mut src, &mut dst);
    ex.progress.finish();
    let t = &ex.tally;
    eprintln!(
        "coffer: exported {} files, {} directories, {} symlinks ({} bytes) to {}",
        t.files,
        t.dirs,
        t.links,
        t.bytes,
        args.outdir.display()
    );
    if t.failed > 0 {
        return Err(CliError::new(
            code::OTHER,
            format!("{} items could not be written; see the lines above", t.failed),
        ));
    }
    if t.damaged > 0 {
        return Err(CliError::new(
            code::DAMAGED,
            format!(
                "{} damaged items (listed above); everything else was exported",
                t.damaged
            ),
        ));
    }
    Ok(())
}

/// Creates OUTDIR if missing; refuses a non-empty one unless `force`.
fn prepare_outdir(outdir: &Path, force: bool) -> CliResult {
    match std::fs::read_dir(outdir) {
        Ok(mut it) => {
            if it.next().is_some() && !force {
                return Err(
                    CliError::new(code::TARGET, format!("{}: directory is not empty", outdir.display()))
                        .hint("use an empty directory, or --force to export into it anyway"),
                );
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir(outdir).map_err(|e| CliError::io(outdir, &e))
        }
        Err(e) => Err(CliError::io(outdir, &e)),
    }
}

/// Sum of plaintext file sizes, from backing sizes alone (for the progress bar). Directories
/// that cannot be opened count nothing.
fn backing_bytes(root: &DirFd, enc: NameEncoding, max_fds: usize) -> u64 {
    let Ok(mut chain) = root.try_clone().and_then(|r| DirChain::new(r, max_fds)) else {
        return 0;
    };
    // The entries of each directory on the path, each with the next one to look at.
    let mut stack = vec![(chain.top().and_then(|d| d.list()).unwrap_or_default(), 0usize)];
    let mut sum = 0;
    while let Some((entries, next)) = stack.last_mut() {
        let Some(e) = entries.get(*next) else {
            stack.pop();
            chain.pop();
            continue;
        };
        *next += 1;
        if !matches!(
            classify_backing(&e.name, enc),
            BackingName::Short(_) | BackingName::Long(_) | BackingName::Other
        ) {
            continue;
        }
        let name = e.name.clone();
        let Ok(dir) = chain.top() else {
            *next = entries.len();
            continue;
        };
        let Ok(st) = dir.stat(&name) else { continue };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => sum += plain_size_for(st.st_size as u64),
            libc::S_IFDIR => {
                let Ok(child) = dir.open_dir(&name) else { continue };
                let entries = child.list().unwrap_or_default();
                if chain.push(&name, child).is_ok() {
                    stack.push((entries, 0));
                }
            }
            _ => {}
        }
    }
    sum
}

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

fn times(st: &libc::stat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    )
}

impl Export<'_> {
    fn damaged(&mut self, what: &[u8], why: impl std::fmt::Display) {
        self.tally.damaged += 1;
        self.progress
            .println(&format!("coffer: damaged: {}: {why}", String::from_utf8_lossy(what)));
    }

    fn failed(&mut self, what: &[u8], why: impl std::fmt::Display) {
        self.tally.failed += 1;
        self.progress.println(&format!(
            "coffer: cannot export {}: {why}",
            String::from_utf8_lossy(what)
        ));
    }

    fn warn(&self, what: &[u8], why: impl std::fmt::Display) {
        self.progress
            .println(&format!("coffer: warning: {}: {why}", String::from_utf8_lossy(what)));
    }

    /// Exports the tree at the top of `src` into the top of `dst`: every entry in listing
    /// order, each subdirectory when it comes.
    fn walk(&mut self, src: &mut DirChain<Dir>, dst: &mut DirChain<DirFd>) {
        self.enter(src, 0, None);
        let enc = self.vault.params().name_encoding;
        while let Some(frame) = self.frames.last_mut() {
            let Some(e) = frame.entries.get(frame.next) else {
                self.leave(src, dst);
                continue;
            };
            frame.next += 1;
            let entry = e.name.clone();
            // Coffer's own files show as nothing (no descriptor needed to skip them).
            if matches!(
                classify_backing(&entry, enc),
                BackingName::Config
                    | BackingName::Diriv
                    | BackingName::LongSidecar(_)
                    | BackingName::LinkSidecar(_)
                    | BackingName::Temp
            ) {
                continue;
            }
            let (sdir, ddir) = match (src.top(), dst.top()) {
                (Ok(s), Ok(d)) => (s, d),
                (Err(err), _) | (_, Err(err)) => {
                    // Its descriptor was dropped and it is gone or replaced: the rest of it
                    // cannot be exported.
                    frame.next = frame.entries.len();
                    let why = format!("cannot open {} again: {}", frame.rel.display(), strip_os_error(&err));
                    let plain = self.plain.clone();
                    self.failed(&plain, why);
                    continue;
                }
            };
            let name = match self.vault.plain_name(sdir, &entry) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                // Not made by coffer and not a sync-client conflict copy: a foreign file.
                Err(_) if classify_backing(&entry, enc) == BackingName::Other => {
                    let shown = sdir.rel_child(&entry).into_os_string().into_encoded_bytes();
                    self.warn(&shown, "not a coffer name (foreign file in CIPHERDIR); not exported");
                    continue;
                }
                Err(err) => {
                    self.damaged(&sdir.rel_child(&entry).into_os_string().into_encoded_bytes(), err);
                    continue;
                }
            };
            let path = join(&self.plain, &name);
            let st = match sdir.fd.stat(&entry) {
                Ok(st) => st,
                Err(err) => {
                    self.failed(&path, strip_os_error(&err));
                    continue;
                }
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => {
                    if let Some((child, out)) = self.subdir(sdir, &entry, ddir, &name, &path) {
                        self.descend(src, dst, (&entry, child), (&name, out), path, st);
                    }
                }
                libc::S_IFREG => self.file(sdir, &entry, ddir, &name, &path, &st),
                libc::S_IFLNK => self.symlink(sdir, &entry, ddir, &name, &path, &st),
                _ => self.special(ddir, &name, &path, &st),
            }
        }
    }

    /// Lists the directory at the top of `src` (a directory that cannot be listed is still
    /// left with its xattrs and metadata).
    fn enter(&mut self, src: &mut DirChain<Dir>, parent_len: usize, meta: Option<libc::stat>) {
        let (entries, rel) = match src.top() {
            Ok(d) => match d.fd.list() {
                Ok(e) => (e, d.rel.clone()),
                Err(e) => {
                    let why = format!("cannot list {}: {}", d.rel.display(), strip_os_error(&e));
                    let plain = self.plain.clone();
                    self.failed(&plain, why);
                    (Vec::new(), d.rel.clone())
                }
            },
            Err(e) => {
                let plain = self.plain.clone();
                self.failed(&plain, strip_os_error(&e));
                (Vec::new(), PathBuf::new())
            }
        };
        self.frames.push(Frame {
            entries,
            next: 0,
            rel,
            parent_len,
            meta,
        });
    }

    /// Steps into a subdirectory opened by [`subdir`](Self::subdir).
    fn descend(
        &mut self,
        src: &mut DirChain<Dir>,
        dst: &mut DirChain<DirFd>,
        (entry, child): (&[u8], Dir),
        (name, out): (&[u8], DirFd),
        path: Vec<u8>,
        st: libc::stat,
    ) {
        if let Err(e) = src.push(entry, child) {
            return self.failed(&path, strip_os_error(&e));
        }
        if let Err(e) = dst.push(name, out) {
            src.pop();
            return self.failed(&path, strip_os_error(&e));
        }
        let parent_len = std::mem::replace(&mut self.plain, path).len();
        self.enter(src, parent_len, Some(st));
    }

    /// Done with the top directory: its xattrs onto its output, then back to its parent and
    /// the directory's owner, mode and times.
    fn leave(&mut self, src: &mut DirChain<Dir>, dst: &mut DirChain<DirFd>) {
        let Some(frame) = self.frames.pop() else { return };
        let path = if frame.meta.is_some() {
            self.plain.clone()
        } else {
            b".".to_vec()
        };
        match (src.top(), dst.top()) {
            (Ok(s), Ok(d)) => {
                let iv = s.iv;
                self.copy_xattrs(s.fd.as_raw_fd(), &iv, d.as_raw_fd(), &path);
                if let Some(st) = &frame.meta {
                    self.finish_dir_meta(d, &path, st);
                }
            }
            (Err(e), _) | (_, Err(e)) => self.failed(&path, strip_os_error(&e)),
        }
        src.pop();
        dst.pop();
        self.plain.truncate(frame.parent_len);
    }

    /// Opens subdirectory `entry` of `src` and makes its output in `dst`.
    fn subdir(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8]) -> Option<(Dir, DirFd)> {
        let child = match src.open_child(self.vault, entry) {
            Ok(c) => c,
            Err(err) if err.is_corrupt() => {
                self.damaged(path, err);
                return None;
            }
            Err(err) => {
                self.failed(path, err);
                return None;
            }
        };
        if let Err(e) = dst.mkdir(name, 0o700) {
            self.failed(path, strip_os_error(&e));
            return None;
        }
        let out = match dst.open_dir(name) {
            Ok(d) => d,
            Err(e) => {
                self.failed(path, strip_os_error(&e));
                return None;
            }
        };
        self.tally.dirs += 1;
        Some((child, out))
    }

    fn file(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
        let f = match self.vault.open_file(src, entry, false) {
            Ok(f) => f,
            Err(err) => return self.failed(path, err),
        };
        let header = match f.header() {
            Ok(h) => h,
            Err(err) => return self.damaged(path, format!("{err}; file not exported")),
        };
        let out = match dst.open_file(name, true, Some(0o600)) {
            Ok(o) => o,
            Err(e) => return self.failed(path, strip_os_error(&e)),
        };
        let bad = match self.copy_content(&f, &out) {
            Ok(bad) => bad,
            Err(err) => {
                drop(out);
                let _ = dst.unlink(name);
                return self.failed(path, err);
            }
        };
        if !bad.is_empty() {
            let list: Vec<String> = bad.iter().map(u64::to_string).collect();
            self.damaged(
                path,
                format!("blocks {} failed authentication; exported as zeros", list.join(", ")),
            );
        }
        // Only when a block before the last was exported: otherwise there is nothing to order.
        match f.order_unchecked() {
            Ok(Some(last)) if (bad.len() as u64) <= last => self.damaged(
                path,
                format!(
                    "order of blocks not checkable: last block {last} does not authenticate, so blocks of two \
                     versions of the file may be mixed; the others exported as read"
                ),
            ),
            Ok(_) => {}
            Err(err) => self.warn(path, format!("cannot check the order of blocks: {err}")),
        }
        if let Some(h) = header {
            self.copy_xattrs(f.backing().as_raw_fd(), &h.file_id, out.as_raw_fd(), path);
        }
        if let Err(e) = out.sync_all() {
            self.failed(path, strip_os_error(&e));
        }
        self.tally.files += 1;
        self.finish_meta(dst, name, path, st, true);
    }

    /// Copies the plaintext; returns the numbers of blocks that failed authentication (written
    /// as zeros). Holes stay holes.
    fn copy_content(&mut self, f: &CryptFile, out: &File) -> Result<Vec<u64>, String> {
        let size = f.plain_len().map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; CHUNK];
        let mut bad = Vec::new();
        let mut off = 0u64;
        while off < size {
            // Skip holes (block granularity).
            match f.seek_data_hole(off, true) {
                Ok(Some(next)) if next > off => {
                    self.progress.inc(next.min(size) - off);
                    off = next;
                    continue;
                }
                Ok(None) => {
                    self.progress.inc(size - off);
                    break;
                }
                _ => {}
            }
            let want = (size - off).min(CHUNK as u64) as usize;
            let chunk = &mut buf[..want];
            match f.read_at(chunk, off) {
                Ok(n) if n == want => {}
                Ok(n) => return Err(format!("file shrank while reading (got {n} of {want} bytes at {off})")),
                Err(e) if e.is_corrupt() => self.read_blockwise(f, chunk, off, &mut bad)?,
                Err(e) => return Err(e.to_string()),
            }
            if chunk.iter().any(|&b| b != 0) {
                out.write_all_at(chunk, off).map_err(|e| strip_os_error(&e))?;
            }
            self.progress.inc(want as u64);
            self.tally.bytes += want as u64;
            off += want as u64;
        }
        out.set_len(size).map_err(|e| strip_os_error(&e))?;
        Ok(bad)
    }

    /// Re-reads a chunk block by block, zeroing the blocks that fail.
    fn read_blockwise(&self, f: &CryptFile, chunk: &mut [u8], off: u64, bad: &mut Vec<u64>) -> Result<(), String> {
        for (i, block) in chunk.chunks_mut(PLAIN_BLOCK as usize).enumerate() {
            let b_off = off + i as u64 * PLAIN_BLOCK;
            match f.read_at(block, b_off) {
                Ok(_) => {}
                Err(e) if e.is_corrupt() => {
                    block.fill(0);
                    bad.push(b_off / PLAIN_BLOCK);
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    }

    fn symlink(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
        let target = match self.vault.readlink(src, entry) {
            Ok(t) => t,
            Err(err) if err.is_corrupt() => return self.damaged(path, err),
            Err(err) => return self.failed(path, err),
        };
        if let Err(e) = dst.symlink(&target, name) {
            return self.failed(path, strip_os_error(&e));
        }
        self.tally.links += 1;
        self.finish_meta(dst, name, path, st, false);
    }

    fn special(&mut self, dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
        match dst.mknod(name, st.st_mode, st.st_rdev) {
            Ok(()) => self.finish_meta(dst, name, path, st, true),
            Err(e) => self.warn(path, format!("special file not exported: {}", strip_os_error(&e))),
        }
    }

    /// Owner (as root), mode and times; times last, after the content and children.
    fn finish_meta(&mut self, dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat, chmod: bool) {
        if self.as_root {
            if let Err(e) = dst.chown(name, st.st_uid, st.st_gid) {
                self.warn(path, format!("cannot keep the owner: {}", strip_os_error(&e)));
            }
        }
        if chmod {
            if let Err(e) = dst.chmod(name, st.st_mode & 0o7777) {
                self.warn(path, format!("cannot keep the mode: {}", strip_os_error(&e)));
            }
        }
        let (atime, mtime) = times(st);
        if let Err(e) = dst.utimens(name, atime, mtime) {
            self.warn(path, format!("cannot keep the times: {}", strip_os_error(&e)));
        }
    }

    /// [`finish_meta`](Self::finish_meta) of an exported directory, through its own
    /// descriptor (its parent's may be closed in a deep tree).
    fn finish_dir_meta(&mut self, out: &DirFd, path: &[u8], st: &libc::stat) {
        if self.as_root {
            if let Err(e) = out.fchown(st.st_uid, st.st_gid) {
                self.warn(path, format!("cannot keep the owner: {}", strip_os_error(&e)));
            }
        }
        if let Err(e) = out.fchmod(st.st_mode & 0o7777) {
            self.warn(path, format!("cannot keep the mode: {}", strip_os_error(&e)));
        }
        let (atime, mtime) = times(st);
        if let Err(e) = out.futimens(atime, mtime) {
            self.warn(path, format!("cannot keep the times: {}", strip_os_error(&e)));
        }
    }

    /// Decrypts the xattrs of the object at `src_fd` (owner id `owner`) onto `dst_fd`.
    fn copy_xattrs(&mut self, src_fd: i32, owner: &[u8; 16], dst_fd: i32, path: &[u8]) {
        let names = match self.vault.xattr_list(src_fd, owner) {
            Ok(n) => n,
            Err(err @ VaultError::Corrupt { .. }) => return self.damaged(path, err),
            Err(err) => return self.warn(path, format!("cannot list xattrs: {err}")),
        };
        for n in names {
            match self.vault.xattr_get(src_fd, owner, &n) {
                Ok(Some(v)) => {
                    if let Err(e) = fsetxattr(dst_fd, &n, &v, 0) {
                        self.warn(
                            path,
                            format!("xattr {} not kept: {}", String::from_utf8_lossy(&n), strip_os_error(&e)),
                        );
                    }
                }
                Ok(None) => {}
                Err(err @ VaultError::Corrupt { .. }) => self.damaged(path, err),
                Err(err) => self.warn(path, format!("xattr {}: {err}", String::from_utf8_lossy(&n))),
            }
        }
    }
}
