//! Merging a directory's diriv conflict copies (`fsck --repair`): every entry named under a
//! copy's IV is renamed to its shown plaintext name under `coffer.diriv`'s IV, then the copies
//! are removed, so that no other IV is tried for names in that directory any more.

use crate::format::backing_name::{self, DIRIV_NAME};
use crate::format::conflict;

use super::dir::{CipherName, Dir};
use super::entries::RENAME_NOREPLACE;
use super::error::{IoContext, Result};
use super::Vault;

/// What a merge did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DirivMerge {
    /// Entries renamed under `coffer.diriv`'s IV.
    pub renamed: usize,
    /// Diriv conflict copies removed.
    pub removed: usize,
    /// Entries that could not be renamed (their target name exists); the copies are then kept.
    pub left: usize,
}

/// The diriv conflict copies (`coffer<marker>.diriv`) among `names`.
pub fn diriv_copies(names: &[Vec<u8>]) -> Vec<Vec<u8>> {
    names
        .iter()
        .filter(|n| n.as_slice() != DIRIV_NAME.as_bytes())
        .filter(|n| {
            conflict::parse_copy(n, crate::format::names::NameEncoding::Base64Url)
                .iter()
                .any(|c| c.ext == "diriv")
        })
        .cloned()
        .collect()
}

fn with_ext(entry: &[u8], ext: &str) -> Vec<u8> {
    let mut v = entry.to_vec();
    v.push(b'.');
    v.extend_from_slice(ext.as_bytes());
    v
}

impl Vault {
    /// Renames backing entry `from` of `dir` to `target` (which must not exist), sidecars with
    /// it: the long-name sidecar is written first; an out-of-line symlink target gets its new
    /// name as a second link before the entry moves, and loses the old one after; stale
    /// long-name sidecars are pruned. Stopped at any point, every name still reads.
    pub(super) fn move_entry(&self, dir: &Dir, from: &[u8], target: &CipherName) -> Result<()> {
        self.move_entry_to(dir, from, dir, target)
    }

    /// [`move_entry`](Self::move_entry) into another directory `to` (`target` named under
    /// its IV).
    pub(super) fn move_entry_to(&self, dir: &Dir, from: &[u8], to: &Dir, target: &CipherName) -> Result<()> {
        self.write_sidecar(to, target)?;
        let old_link = with_ext(from, backing_name::LINK_EXT);
        let new_link = with_ext(&target.entry, backing_name::LINK_EXT);
        let has_link = dir.fd.stat(&old_link).is_ok();
        if has_link {
            match dir.fd.link(&old_link, &to.fd, &new_link) {
                Err(e) if e.raw_os_error() != Some(libc::EEXIST) => {
                    return Err(e).at(to.rel_child(&new_link));
                }
                _ => {}
            }
        }
        dir.fd
            .rename(from, &to.fd, &target.entry, RENAME_NOREPLACE)
            .at(to.rel_child(&target.entry))?;
        if has_link {
            match dir.fd.unlink(&old_link) {
                Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e).at(dir.rel_child(&old_link)),
                _ => {}
            }
        }
        self.remove_sidecars(dir, from)
    }

    /// Renames every entry of `dir` that only decrypts under a diriv conflict copy's IV to its
    /// shown name under `coffer.diriv`'s IV (long-name and symlink sidecars follow), then
    /// removes the copies. Shown names do not change. Copies stay if any entry could not move.
    pub fn merge_diriv_copies(&self, dir: &Dir) -> Result<DirivMerge> {
        self.check_writable()?;
        let mut out = DirivMerge::default();
        let raw: Vec<Vec<u8>> = dir.fd.list().at(&dir.rel)?.into_iter().map(|e| e.name).collect();
        let copies = diriv_copies(&raw);
        if copies.is_empty() {
            return Ok(out);
        }
        if !raw.iter().any(|n| n.as_slice() == DIRIV_NAME.as_bytes()) {
            // Only copies (every version renamed by the client): the IV the directory uses for
            // new names becomes coffer.diriv again, before anything moves under it.
            dir.fd
                .write_new(DIRIV_NAME.as_bytes(), &dir.iv, 0o444)
                .at(dir.rel.join(DIRIV_NAME))?;
            dir.fd.fsync().at(&dir.rel)?;
        }
        let main_only = Dir {
            fd: dir.fd.try_clone().at(&dir.rel)?,
            iv: dir.iv,
            rel: dir.rel.clone(),
            alt_ivs: Vec::new(),
        };
        for e in self.list_quietly(dir)? {
            if matches!(self.plain_name(&main_only, &e.backing), Ok(Some(_))) {
                continue;
            }
            let target = self.cipher_name(dir, &e.plain)?;
            // Taken under the newest epoch, or under an older one (still under the diriv).
            if dir.fd.stat(&target.entry).is_ok() || self.older_epoch_entry(&main_only, &e.plain)?.is_some() {
                log::warn!(
                    "{}: cannot merge {:?}: its name under coffer.diriv is taken",
                    dir.rel.display(),
                    String::from_utf8_lossy(&e.plain)
                );
                out.left += 1;
                continue;
            }
            self.move_entry(dir, &e.backing, &target)?;
            out.renamed += 1;
        }
        if out.left == 0 {
            for c in copies {
                dir.fd.unlink(&c).at(dir.rel_child(&c))?;
                out.removed += 1;
            }
            dir.fd.fsync().at(&dir.rel)?;
        }
        Ok(out)
    }
}
