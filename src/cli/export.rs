//! `coffer export`: decrypt a whole vault into a plain tree (the restore path for backups and
//! machines without FUSE). Damaged items are reported and skipped (damaged blocks become zeros);
//! everything else is exported.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use coffer::format::backing_name::{classify, BackingName};
use coffer::format::names::NameEncoding;
use coffer::format::offsets::PLAIN_BLOCK;
use coffer::vault::backing::fsetxattr;
use coffer::vault::{plain_size_for, CryptFile, Dir, DirFd, TimeSpec, Vault, VaultError};

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
}

/// Runs `export`.
pub fn run(args: &ExportArgs) -> CliResult {
    prepare_outdir(&args.outdir, args.force)?;
    let vault = open_vault(&args.cipherdir, &args.open, true)?;
    let out = DirFd::open_path(&args.outdir).map_err(|e| CliError::io(&args.outdir, &e))?;
    let root = vault.root_dir()?;
    let total = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        backing_bytes(&root.fd, vault.params().name_encoding)
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
    };
    ex.dir(&root, &out, b"");
    ex.copy_xattrs(root.fd.as_raw_fd(), &root.iv, out.as_raw_fd(), b".");
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

/// Sum of plaintext file sizes, from backing sizes alone (for the progress bar).
fn backing_bytes(dir: &DirFd, enc: NameEncoding) -> u64 {
    let Ok(entries) = dir.list() else { return 0 };
    let mut sum = 0;
    for e in entries {
        if !matches!(
            classify(&e.name, enc),
            BackingName::Short(_) | BackingName::Long(_) | BackingName::Other
        ) {
            continue;
        }
        let Ok(st) = dir.stat(&e.name) else { continue };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG => sum += plain_size_for(st.st_size as u64),
            libc::S_IFDIR => {
                if let Ok(child) = dir.open_dir(&e.name) {
                    sum += backing_bytes(&child, enc);
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

    /// Exports every entry of `src` into `dst`; `plain` is the plaintext path of `src`.
    fn dir(&mut self, src: &Dir, dst: &DirFd, plain: &[u8]) {
        let entries = match src.fd.list() {
            Ok(e) => e,
            Err(e) => {
                return self.failed(
                    plain,
                    format!("cannot list {}: {}", src.rel.display(), strip_os_error(&e)),
                )
            }
        };
        let enc = self.vault.params().name_encoding;
        for e in entries {
            let name = match self.vault.plain_name(src, &e.name) {
                Ok(Some(n)) => n,
                Ok(None) => continue,
                // Not made by coffer and not a sync-client conflict copy: a foreign file.
                Err(_) if classify(&e.name, enc) == BackingName::Other => {
                    let shown = src.rel_child(&e.name).into_os_string().into_encoded_bytes();
                    self.warn(&shown, "not a coffer name (foreign file in CIPHERDIR); not exported");
                    continue;
                }
                Err(err) => {
                    self.damaged(&src.rel_child(&e.name).into_os_string().into_encoded_bytes(), err);
                    continue;
                }
            };
            let path = join(plain, &name);
            let st = match src.fd.stat(&e.name) {
                Ok(st) => st,
                Err(err) => {
                    self.failed(&path, strip_os_error(&err));
                    continue;
                }
            };
            match st.st_mode & libc::S_IFMT {
                libc::S_IFDIR => self.subdir(src, &e.name, dst, &name, &path, &st),
                libc::S_IFREG => self.file(src, &e.name, dst, &name, &path, &st),
                libc::S_IFLNK => self.symlink(src, &e.name, dst, &name, &path, &st),
                _ => self.special(dst, &name, &path, &st),
            }
        }
    }

    fn subdir(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
        let child = match src.open_child(self.vault, entry) {
            Ok(c) => c,
            Err(err) if err.is_corrupt() => return self.damaged(path, err),
            Err(err) => return self.failed(path, err),
        };
        if let Err(e) = dst.mkdir(name, 0o700) {
            return self.failed(path, strip_os_error(&e));
        }
        let out = match dst.open_dir(name) {
            Ok(d) => d,
            Err(e) => return self.failed(path, strip_os_error(&e)),
        };
        self.tally.dirs += 1;
        self.dir(&child, &out, path);
        self.copy_xattrs(child.fd.as_raw_fd(), &child.iv, out.as_raw_fd(), path);
        self.finish_meta(dst, name, path, st, true);
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
