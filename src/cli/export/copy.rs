//! Copying one exported item: file content (damaged blocks as zeros), symlink, special file, xattrs, metadata.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;

use coffer::format::offsets::PLAIN_BLOCK;
use coffer::vault::backing::fsetxattr;
use coffer::vault::{CryptFile, Dir, DirFd, TimeSpec, VaultError};

use super::Export;
use crate::cli::error::strip_os_error;

/// Bytes read per request (a whole number of blocks).
const CHUNK: usize = 256 * PLAIN_BLOCK as usize;

fn times(st: &libc::stat) -> (TimeSpec, TimeSpec) {
    (
        TimeSpec::At(st.st_atime, st.st_atime_nsec),
        TimeSpec::At(st.st_mtime, st.st_mtime_nsec),
    )
}

impl Export<'_> {
    pub(super) fn file(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
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

    pub(super) fn symlink(&mut self, src: &Dir, entry: &[u8], dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
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

    pub(super) fn special(&mut self, dst: &DirFd, name: &[u8], path: &[u8], st: &libc::stat) {
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
    pub(super) fn finish_dir_meta(&mut self, out: &DirFd, path: &[u8], st: &libc::stat) {
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
    pub(super) fn copy_xattrs(&mut self, src_fd: i32, owner: &[u8; 16], dst_fd: i32, path: &[u8]) {
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
