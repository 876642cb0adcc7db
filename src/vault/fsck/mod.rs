//! fsck: walk a vault and authenticate everything — names, diriv files, sidecars, file blocks,
//! symlink targets, xattrs — reporting each damaged item with its plaintext path where known.
//! `repair` fixes only the safe cases and never deletes readable data.

mod report;
mod walker;

pub use report::{Damage, DamageKind, FsckOptions, FsckReport};

use std::path::PathBuf;

use super::error::{Result, VaultError};
use super::walk::{walk_fd_budget, DirChain};
use super::Vault;
use walker::Walker;

/// Checks the whole vault. `repair` fixes safe cases (orphaned sidecars, stray temp files older
/// than a minute, torn or unsealed last blocks); it never deletes readable data. `progress` is
/// called after each directory.
pub fn fsck(vault: &Vault, repair: bool, progress: &mut dyn FnMut(&FsckReport)) -> Result<FsckReport> {
    fsck_with(vault, FsckOptions::new(repair), progress)
}

/// [`fsck`] with explicit options.
pub fn fsck_with(vault: &Vault, opts: FsckOptions, progress: &mut dyn FnMut(&FsckReport)) -> Result<FsckReport> {
    let repair = opts.repair;
    if repair {
        vault.check_writable()?;
    }
    let root = match vault.root_dir() {
        Ok(r) => r,
        Err(err) => {
            let mut report = FsckReport::default();
            report.damage.push(Damage {
                plain_path: Some(String::new()),
                cipher_path: String::new(),
                kind: DamageKind::Diriv,
                blocks: Vec::new(),
                detail: err.to_string(),
                repaired: None,
            });
            return Ok(report);
        }
    };
    let mut chain = DirChain::new(root, walk_fd_budget()).map_err(|e| VaultError::io(PathBuf::new(), e))?;
    let mut w = Walker::new(vault, repair, opts.min_temp_age, progress);
    w.walk(&mut chain)?;
    Ok(w.report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::config::VaultParams;
    use crate::format::session::LAST_SESSION;
    use crate::vault::unlock::{self, KdfCost};

    /// A file whose last block carries the highest write session is reported, with the advice
    /// to copy it; `--repair` leaves it (and the report) as it is, and the file still reads.
    #[test]
    fn a_file_at_the_session_ceiling_is_reported() {
        let t = tempfile::tempdir().unwrap();
        unlock::init(t.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let v = Vault::unlock(t.path(), None, b"pw", false).unwrap();
        let root = v.root_dir().unwrap();
        let (f, _) = v.create_file(&root, b"old", 0o644).unwrap();
        f.write_at(&[7u8; 9000], 0).unwrap();
        let (g, _) = v.create_file(&root, b"young", 0o644).unwrap();
        g.write_at(&[8u8; 9000], 0).unwrap();
        g.reseal_last_with(LAST_SESSION - 1).unwrap();
        let kinds = |r: &FsckReport| r.damage.iter().map(|d| d.kind.clone()).collect::<Vec<_>>();
        assert!(
            fsck(&v, false, &mut |_| {}).unwrap().damage.is_empty(),
            "one below the ceiling"
        );

        f.reseal_last_with(LAST_SESSION).unwrap();
        for repair in [false, true] {
            let report = fsck(&v, repair, &mut |_| {}).unwrap();
            assert_eq!(kinds(&report), [DamageKind::SessionsExhausted], "{report:?}");
            let d = &report.damage[0];
            assert_eq!(d.plain_path.as_deref(), Some("old"));
            assert!(d.detail.contains("write session 4294967295"), "{}", d.detail);
            assert!(d.detail.contains("copy the file"), "{}", d.detail);
            assert!(d.repaired.is_none() && !report.is_clean());
        }
        let mut buf = vec![0u8; 9000];
        assert_eq!(f.read_at(&mut buf, 0).unwrap(), 9000);
        assert_eq!(buf, [7u8; 9000]);
    }
}
