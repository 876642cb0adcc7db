//! Freezing a plain file at open. A small one is read whole into memory ([`read_whole`]); a
//! larger one gets a reflink copy (FICLONE) into an unnamed temporary file of
//! the same filesystem (O_TMPFILE in the file's own directory: it never has a name, so no
//! listing of PLAINDIR or of the view shows it, and it is freed when the handle closes). Reads
//! are then served from the copy, so a writer that rewrites or appends to the plain file while
//! it is read does not disturb the reader: it gets the version at open.
//!
//! Filesystems without reflinks (ext4, tmpfs, ...) are remembered by st_dev and larger files
//! there are read live; a change during such a read is reported as [`VaultError::Changed`](super::super::VaultError).

use std::collections::HashSet;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Mutex;

use super::super::backing::{self, DirFd};
use super::super::error::{IoContext, Result, VaultError};
use super::content::same_content;

/// How often the copy is taken again when the plain file changed while it was taken.
const TRIES: usize = 3;
/// Plain files up to this size are frozen by reading them whole at open: no copy to make (a
/// reflink copy costs about 0.1 ms on xfs, ten times an open and read of 8 KiB), and it works
/// on every filesystem.
pub const MEMORY_MAX: u64 = 64 * 1024;

/// A frozen copy of a plain file.
#[derive(Debug)]
pub struct Frozen {
    /// The copy (unnamed, read-write, never changed after it is made).
    pub file: File,
    /// The plain file's stat taken just before the copy: its times are never newer than the
    /// copy's content, so a later incremental backup that compares mtimes sees any change.
    pub before: libc::stat,
}

/// Which filesystems make reflink copies.
#[derive(Debug, Default)]
pub struct Reflinks {
    /// st_dev of filesystems where a copy failed in a way that does not depend on the file.
    unsupported: Mutex<HashSet<u64>>,
}

/// Errors that say "not on this filesystem" rather than "not for this file".
fn fs_lacks_it(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::ENOTTY | libc::EXDEV | libc::EROFS | libc::EISDIR | libc::ENOSYS)
    )
}

fn same_version(a: &libc::stat, b: &libc::stat) -> bool {
    (a.st_size, a.st_mtime, a.st_mtime_nsec, a.st_ctime, a.st_ctime_nsec)
        == (b.st_size, b.st_mtime, b.st_mtime_nsec, b.st_ctime, b.st_ctime_nsec)
}

/// The whole content of `src` (stat `st`, at most [`MEMORY_MAX`] bytes), read at open, with
/// the stat it kept while it was read; None when it kept changing (or grew past the limit).
pub fn read_whole(src: &File, st: &libc::stat, path: &Path) -> Result<Option<(Vec<u8>, libc::stat)>> {
    let mut before = *st;
    for _ in 0..TRIES {
        let Ok(want) = usize::try_from(before.st_size) else {
            return Ok(None);
        };
        if before.st_size as u64 > MEMORY_MAX {
            return Ok(None);
        }
        let mut buf = vec![0u8; want];
        let mut done = 0;
        while done < want {
            match src.read_at(&mut buf[done..], done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(VaultError::io(path, e)),
            }
        }
        let after = backing::fstat(src.as_raw_fd()).at(path)?;
        if done == want && same_content(&before, &after) {
            return Ok(Some((buf, before)));
        }
        before = after;
    }
    Ok(None)
}

impl Reflinks {
    fn lacks(&self, dev: u64) -> bool {
        self.unsupported
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&dev)
    }

    /// Logs why no copy was made and remembers filesystems that cannot make one.
    fn give_up(&self, dev: u64, what: &str, path: &Path, e: &io::Error) {
        if fs_lacks_it(e) {
            log::debug!(
                "{}: no reflink copies on this filesystem ({what}: {e}); reading live",
                path.display()
            );
            self.unsupported.lock().unwrap_or_else(|p| p.into_inner()).insert(dev);
        } else {
            log::debug!("{}: {what}: {e}; reading it live", path.display());
        }
    }

    /// A reflink copy of `src` (stat `st`, in directory `dir`, at `path` for messages), or
    /// None where the filesystem (or this file) cannot have one. A copy is one version of the
    /// file (FICLONE is atomic with writes); it is retaken while the file moves during it, up
    /// to [`TRIES`].
    pub fn freeze(&self, dir: &DirFd, src: &File, st: &libc::stat, path: &Path) -> Result<Option<Frozen>> {
        let mut before = *st;
        if self.lacks(before.st_dev) {
            return Ok(None);
        }
        let mut last = None;
        for _ in 0..TRIES {
            let copy = match dir.open_tmpfile() {
                Ok(f) => f,
                Err(e) => {
                    self.give_up(before.st_dev, "O_TMPFILE", path, &e);
                    return Ok(None);
                }
            };
            if let Err(e) = backing::reflink(copy.as_raw_fd(), src.as_raw_fd()) {
                self.give_up(before.st_dev, "FICLONE", path, &e);
                return Ok(None);
            }
            let after = backing::fstat(src.as_raw_fd()).at(path)?;
            if same_version(&before, &after) {
                return Ok(Some(Frozen { file: copy, before }));
            }
            last = Some(Frozen { file: copy, before });
            before = after;
        }
        Ok(last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_small_file_is_read_whole_and_a_large_one_is_not() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("f");
        std::fs::write(&path, vec![7u8; 5000]).unwrap();
        let f = File::open(&path).unwrap();
        let st = backing::fstat(f.as_raw_fd()).unwrap();
        let (data, at) = read_whole(&f, &st, Path::new("f")).unwrap().unwrap();
        assert_eq!(data, vec![7u8; 5000]);
        assert_eq!(at.st_size, 5000);
        // Told a stale size (it grew since): read again at the size it has.
        let mut stale = st;
        stale.st_size = 10;
        let (data, _) = read_whole(&f, &stale, Path::new("f")).unwrap().unwrap();
        assert_eq!(data.len(), 5000);
        std::fs::write(&path, vec![1u8; MEMORY_MAX as usize + 1]).unwrap();
        let f = File::open(&path).unwrap();
        let st = backing::fstat(f.as_raw_fd()).unwrap();
        assert!(read_whole(&f, &st, Path::new("f")).unwrap().is_none());
    }

    #[test]
    fn a_filesystem_without_reflinks_is_remembered_and_read_live() {
        let tmp = tempfile::tempdir().unwrap();
        File::create(tmp.path().join("f")).unwrap().write_all(b"data").unwrap();
        let f = File::open(tmp.path().join("f")).unwrap();
        let dir = DirFd::open_path(tmp.path()).unwrap();
        let r = Reflinks::default();
        let st = backing::fstat(f.as_raw_fd()).unwrap();
        let dev = st.st_dev;
        match r.freeze(&dir, &f, &st, Path::new("f")).unwrap() {
            // A test machine whose temp dir is on btrfs or xfs.
            Some(frozen) => {
                assert_eq!(
                    std::fs::read(format!("/proc/self/fd/{}", frozen.file.as_raw_fd())).unwrap(),
                    b"data"
                );
                assert!(!r.lacks(dev));
            }
            None => assert!(r.lacks(dev), "not remembered"),
        }
        // Nothing visible is left behind.
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("f")]);
    }
}
