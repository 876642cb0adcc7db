//! Both copies of a moved object (docs/FORMAT.md §15.7): when two machines' rekeys ran at once
//! and the sync client delivered both, one object shows twice in a directory, once under each
//! machine's newest-epoch name. The walk meets the copy whose name is under an older epoch
//! (`ours`) and finds its newest-epoch name taken (`theirs`): equal files and symlinks are one
//! object, and `ours` goes; directories are merged entry by entry (an entry missing in
//! `theirs` is moved in, one present in both is merged the same way) and the emptied copy is
//! removed. Anything that differs stays where it is and is reported, as before.

use crate::format::backing_name::{classify, BackingName};

use super::backing::temp_name;
use super::dir::Dir;
use super::error::{IoContext, Result};
use super::merge::diriv_copies;
use super::migrate::Migration;
use super::Vault;

/// Bytes compared at a time.
const CHUNK: usize = 1 << 20;

/// Deepest directory merge (the walk itself goes deeper; a merge this deep is left).
const DEPTH_MAX: usize = 64;

impl Vault {
    /// Merges `ours` (in `od`) into `theirs` (in `td`), the same object moved by two rekeys
    /// (`depth`: directories above, 0 for the walk's own call). Returns whether `ours` is
    /// gone (everything it held is in `theirs` now).
    pub(super) fn merge_moved_copy(
        &self,
        od: &Dir,
        ours: &[u8],
        td: &Dir,
        theirs: &[u8],
        out: &mut Migration,
        depth: usize,
    ) -> Result<bool> {
        let ost = od.fd.stat(ours).at(od.rel_child(ours))?;
        let tst = td.fd.stat(theirs).at(td.rel_child(theirs))?;
        let same = match (ost.st_mode & libc::S_IFMT, tst.st_mode & libc::S_IFMT) {
            (libc::S_IFREG, libc::S_IFREG) => ost.st_nlink == 1 && self.same_contents(od, ours, td, theirs)?,
            (libc::S_IFLNK, libc::S_IFLNK) => self.readlink(od, ours)? == self.readlink(td, theirs)?,
            (libc::S_IFDIR, libc::S_IFDIR) if depth < DEPTH_MAX => {
                let o = od.open_child(self, ours)?;
                let t = td.open_child(self, theirs)?;
                if !self.merge_dirs(&o, &t, out, depth + 1)? {
                    return Ok(false);
                }
                return self.remove_emptied(od, ours, &o);
            }
            _ => false,
        };
        if same {
            od.fd.unlink(ours).at(od.rel_child(ours))?;
            self.remove_sidecars(od, ours)?;
            out.merged += 1;
        }
        Ok(same)
    }

    /// Moves or merges every entry of `o` into `t`; whether nothing of `o` is left.
    fn merge_dirs(&self, o: &Dir, t: &Dir, out: &mut Migration, depth: usize) -> Result<bool> {
        let mut all = true;
        for e in self.list(o)? {
            let target = self.cipher_name(t, e.dup_of.as_ref().unwrap_or(&e.plain))?;
            if t.fd.stat(&target.entry).is_ok() {
                all &= self.merge_moved_copy(o, &e.backing, t, &target.entry, out, depth)?;
            } else {
                self.move_entry_to(o, &e.backing, t, &target)?;
                out.merged += 1;
            }
        }
        Ok(all)
    }

    /// Removes directory `name` of `parent` (open as `dir`) when it holds nothing but coffer's
    /// own files (its diriv, diriv copies, temporaries); whether it went.
    fn remove_emptied(&self, parent: &Dir, name: &[u8], dir: &Dir) -> Result<bool> {
        let entries = dir.fd.list().at(&dir.rel)?;
        let names: Vec<Vec<u8>> = entries.iter().map(|e| e.name.clone()).collect();
        let copies = diriv_copies(&names);
        let own = |n: &[u8]| {
            matches!(
                classify(n, self.params().name_encoding),
                BackingName::Diriv | BackingName::Temp
            ) || copies.iter().any(|c| c.as_slice() == n)
        };
        if !entries.iter().all(|e| own(&e.name)) {
            return Ok(false);
        }
        // Out of sight first: a crash from here on leaves a stray temporary (which fsck
        // --repair removes), never a directory without its diriv.
        let tmp = temp_name().at(&parent.rel)?;
        parent.fd.rename(name, &parent.fd, &tmp, 0).at(parent.rel_child(name))?;
        self.remove_sidecars(parent, name)?;
        for e in &entries {
            dir.fd.unlink(&e.name).at(dir.rel_child(&e.name))?;
        }
        parent.fd.rmdir(&tmp).at(parent.rel_child(&tmp))?;
        Ok(true)
    }

    /// Whether regular files `a` (in `ad`) and `b` (in `bd`) hold the same plaintext.
    fn same_contents(&self, ad: &Dir, a: &[u8], bd: &Dir, b: &[u8]) -> Result<bool> {
        let fa = self.open_file(ad, a, false)?;
        let fb = self.open_file(bd, b, false)?;
        let len = fa.plain_len()?;
        if len != fb.plain_len()? {
            return Ok(false);
        }
        let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
        let mut off = 0u64;
        while off < len {
            let n = fa.read_at(&mut x, off)?;
            let m = fb.read_at(&mut y, off)?;
            if n == 0 || n != m || x[..n] != y[..m] {
                return Ok(false);
            }
            off += n as u64;
        }
        Ok(true)
    }
}
