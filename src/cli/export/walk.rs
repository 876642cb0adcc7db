//! The export walk: every directory of the vault in listing order, each entry to its copier.

use std::os::fd::AsRawFd;
use std::path::PathBuf;

use coffer::vault::walk::DirChain;
use coffer::vault::{classify_backing, BackingName, Dir, DirFd};

use super::{Export, Frame};
use crate::cli::error::strip_os_error;

fn join(parent: &[u8], name: &[u8]) -> Vec<u8> {
    if parent.is_empty() {
        name.to_vec()
    } else {
        [parent, b"/", name].concat()
    }
}

impl Export<'_> {
    /// Exports the tree at the top of `src` into the top of `dst`: every entry in listing
    /// order, each subdirectory when it comes.
    pub(super) fn walk(&mut self, src: &mut DirChain<Dir>, dst: &mut DirChain<DirFd>) {
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
}
