//! The cipher names of a plain directory: listing it as the vault would look, finding the plain
//! object behind a cipher name, and the cipher-side `stat` of every kind of entry.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::format::backing_name::{self, classify, BackingName, DIRIV_NAME};
use crate::format::config::CONFIG_NAME;
use crate::format::offsets;

use super::super::backing::DirFd;
use super::super::dir::{cipher_name_for, CipherName};
use super::super::error::{IoContext, Result, VaultError};
use super::{join_rel, rel_path, ReverseVault};

/// An open plain directory with its derived IV.
#[derive(Debug)]
pub struct RDir {
    /// The plain directory.
    pub fd: DirFd,
    /// Its path relative to PLAINDIR ("" for the root).
    pub rel: Vec<u8>,
    /// Its IV: PRF over `rel`.
    pub iv: [u8; 16],
    /// `HASH` of every long cipher name seen here → plain name (rebuilt on a miss).
    long_names: Mutex<HashMap<String, Vec<u8>>>,
}

/// What a cipher name stands for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// The plain object with this name in the directory.
    Plain(Vec<u8>),
    /// `coffer.conf` (root only).
    Config,
    /// `coffer.diriv`.
    Diriv,
    /// `HASH.name` of the plain entry with this (long) name.
    NameSidecar(Vec<u8>),
    /// `ENTRY.link` of the plain symlink with this name (target too long to inline).
    LinkSidecar(Vec<u8>),
}

impl Target {
    /// Whether this is one of the virtual files (not a plain object).
    pub fn is_virtual(&self) -> bool {
        !matches!(self, Target::Plain(_))
    }
}

/// One entry of a cipher directory listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherEntry {
    /// The cipher (backing) name.
    pub name: Vec<u8>,
    /// What it stands for.
    pub target: Target,
    /// `d_type` (DT_REG for virtual files).
    pub d_type: u8,
    /// The plain inode number (0 for virtual files).
    pub ino: u64,
}

fn enoent(rel: &[u8]) -> VaultError {
    VaultError::errno_at(rel_path(rel), libc::ENOENT)
}

fn fmt_to_dtype(mode: u32) -> u8 {
    match mode & libc::S_IFMT {
        libc::S_IFDIR => libc::DT_DIR,
        libc::S_IFLNK => libc::DT_LNK,
        libc::S_IFIFO => libc::DT_FIFO,
        libc::S_IFSOCK => libc::DT_SOCK,
        libc::S_IFCHR => libc::DT_CHR,
        libc::S_IFBLK => libc::DT_BLK,
        _ => libc::DT_REG,
    }
}

impl ReverseVault {
    /// The root of the view.
    pub fn root_dir(&self) -> Result<RDir> {
        let fd = self.root_fd().try_clone().at(self.plaindir())?;
        Ok(self.rdir(fd, Vec::new()))
    }

    fn rdir(&self, fd: DirFd, rel: Vec<u8>) -> RDir {
        RDir {
            fd,
            iv: self.prf().dir_iv(&rel),
            rel,
            long_names: Mutex::new(HashMap::new()),
        }
    }

    /// Opens plain subdirectory `plain` of `dir` (ENOENT when it is excluded).
    pub fn open_child(&self, dir: &RDir, plain: &[u8]) -> Result<RDir> {
        let rel = join_rel(&dir.rel, plain);
        if self.is_hidden(&rel) {
            return Err(enoent(&rel));
        }
        let fd = dir.fd.open_dir(plain).at(rel_path(&rel))?;
        Ok(self.rdir(fd, rel))
    }

    /// Opens the plain directory at relative path `rel` (`a/b`).
    pub fn open_dir_path(&self, rel: &[u8]) -> Result<RDir> {
        self.open_dir_below(&self.root_dir()?, rel)
    }

    /// Opens the plain directory at `tail` below `base` (`tail` relative to it), one
    /// component at a time without following symlinks (ENOENT at an excluded one). The IV is
    /// derived once, for the directory opened.
    pub fn open_dir_below(&self, base: &RDir, tail: &[u8]) -> Result<RDir> {
        let mut rel = base.rel.clone();
        let mut fd: Option<DirFd> = None;
        for comp in tail.split(|&c| c == b'/').filter(|c| !c.is_empty() && *c != b".") {
            rel = join_rel(&rel, comp);
            if self.is_hidden(&rel) {
                return Err(enoent(&rel));
            }
            let from = fd.as_ref().unwrap_or(&base.fd);
            fd = Some(from.open_dir(comp).at(rel_path(&rel))?);
        }
        let fd = match fd {
            Some(fd) => fd,
            None => base.fd.try_clone().at(rel_path(&rel))?,
        };
        Ok(self.rdir(fd, rel))
    }

    /// The cipher name of plain entry `plain` in `dir`.
    pub fn cipher_name(&self, dir: &RDir, plain: &[u8]) -> Result<CipherName> {
        cipher_name_for(self.keys(), self.params(), &dir.iv, plain)
    }

    /// The cipher listing of `dir`, sorted by cipher name: every visible plain entry (with its
    /// `HASH.name` and `ENTRY.link` sidecars), `coffer.diriv`, and at the root `coffer.conf`.
    pub fn list(&self, dir: &RDir) -> Result<Vec<CipherEntry>> {
        let raw = dir.fd.list().at(rel_path(&dir.rel))?;
        let mut out = Vec::with_capacity(raw.len() + 2);
        let mut longs = HashMap::new();
        for e in raw {
            if self.is_hidden(&join_rel(&dir.rel, &e.name)) {
                continue;
            }
            let cname = match self.cipher_name(dir, &e.name) {
                Ok(c) => c,
                Err(err) => {
                    log::warn!("{}: skipped: {err}", rel_path(&join_rel(&dir.rel, &e.name)).display());
                    continue;
                }
            };
            let d_type = if e.d_type == libc::DT_UNKNOWN {
                match dir.fd.stat(&e.name) {
                    Ok(st) => fmt_to_dtype(st.st_mode),
                    Err(_) => continue,
                }
            } else {
                e.d_type
            };
            if d_type == libc::DT_LNK {
                if let Ok(link) = self.cipher_link(dir, &e.name) {
                    if link.sidecar.is_some() {
                        out.push(CipherEntry {
                            name: backing_name::link_sidecar_name(&String::from_utf8_lossy(&cname.entry)).into_bytes(),
                            target: Target::LinkSidecar(e.name.clone()),
                            d_type: libc::DT_REG,
                            ino: 0,
                        });
                    }
                }
            }
            if let Some(long) = &cname.long {
                out.push(CipherEntry {
                    name: long.sidecar.clone(),
                    target: Target::NameSidecar(e.name.clone()),
                    d_type: libc::DT_REG,
                    ino: 0,
                });
                longs.insert(stem_of(&long.sidecar), e.name.clone());
            }
            out.push(CipherEntry {
                name: cname.entry,
                target: Target::Plain(e.name),
                d_type,
                ino: e.ino,
            });
        }
        out.push(CipherEntry {
            name: DIRIV_NAME.as_bytes().to_vec(),
            target: Target::Diriv,
            d_type: libc::DT_REG,
            ino: 0,
        });
        if dir.rel.is_empty() {
            out.push(CipherEntry {
                name: CONFIG_NAME.as_bytes().to_vec(),
                target: Target::Config,
                d_type: libc::DT_REG,
                ino: 0,
            });
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        *dir.long_names.lock().unwrap_or_else(|p| p.into_inner()) = longs;
        Ok(out)
    }

    /// The plain name behind long-name hash `hash` in `dir`.
    fn long_plain(&self, dir: &RDir, hash: &str) -> Result<Vec<u8>> {
        let cached = dir
            .long_names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned();
        if let Some(p) = cached {
            return Ok(p);
        }
        self.list(dir)?;
        dir.long_names
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(hash)
            .cloned()
            .ok_or_else(|| enoent(&dir.rel))
    }

    /// The plain entry shown under cipher entry name `cipher` (a short name or `HASH.long`).
    fn plain_of_entry(&self, dir: &RDir, cipher: &[u8]) -> Result<Vec<u8>> {
        let enc = self.params().name_encoding;
        let plain = match classify(cipher, enc) {
            BackingName::Short(s) => {
                let raw = enc.decode(s.as_bytes()).map_err(|_| enoent(&dir.rel))?;
                self.keys()
                    .names
                    .decrypt_name(&dir.iv, &raw)
                    .map_err(|_| enoent(&dir.rel))?
            }
            BackingName::Long(hash) => self.long_plain(dir, hash)?,
            _ => return Err(enoent(&dir.rel)),
        };
        // One spelling per name: a long name is not reachable through its short form.
        let cname = self.cipher_name(dir, &plain).map_err(|_| enoent(&dir.rel))?;
        let rel = join_rel(&dir.rel, &plain);
        if cname.entry != cipher || self.is_hidden(&rel) {
            return Err(enoent(&rel));
        }
        Ok(plain)
    }

    /// Finds what cipher name `cipher` stands for in `dir` (ENOENT if nothing).
    pub fn lookup(&self, dir: &RDir, cipher: &[u8]) -> Result<CipherEntry> {
        let enc = self.params().name_encoding;
        let target = match classify(cipher, enc) {
            BackingName::Config if dir.rel.is_empty() && cipher == CONFIG_NAME.as_bytes() => Target::Config,
            BackingName::Diriv => Target::Diriv,
            BackingName::Short(_) | BackingName::Long(_) => Target::Plain(self.plain_of_entry(dir, cipher)?),
            BackingName::LongSidecar(hash) => {
                let plain = self.long_plain(dir, hash)?;
                let entry = backing_name::long_entry_name(hash);
                self.plain_of_entry(dir, entry.as_bytes())?;
                Target::NameSidecar(plain)
            }
            BackingName::LinkSidecar(stem) => {
                let plain = self.plain_of_entry(dir, stem.as_bytes())?;
                let link = self.cipher_link(dir, &plain)?;
                if link.sidecar.is_none() {
                    return Err(enoent(&dir.rel));
                }
                Target::LinkSidecar(plain)
            }
            _ => return Err(enoent(&dir.rel)),
        };
        let (d_type, ino) = match &target {
            Target::Plain(p) => {
                let st = dir.fd.stat(p).at(rel_path(&join_rel(&dir.rel, p)))?;
                (fmt_to_dtype(st.st_mode), st.st_ino)
            }
            _ => (libc::DT_REG, 0),
        };
        Ok(CipherEntry {
            name: cipher.to_vec(),
            target,
            d_type,
            ino,
        })
    }

    /// The content of a virtual file.
    pub fn virtual_content(&self, dir: &RDir, target: &Target) -> Result<Vec<u8>> {
        match target {
            Target::Config => Ok(self.config_bytes().to_vec()),
            Target::Diriv => Ok(dir.iv.to_vec()),
            Target::NameSidecar(plain) => match self.cipher_name(dir, plain)?.long {
                Some(l) => Ok(l.encoded.into_bytes()),
                None => Err(enoent(&dir.rel)),
            },
            Target::LinkSidecar(plain) => self.cipher_link(dir, plain)?.sidecar.ok_or_else(|| enoent(&dir.rel)),
            Target::Plain(p) => Err(VaultError::errno_at(rel_path(&join_rel(&dir.rel, p)), libc::EINVAL)),
        }
    }

    /// The cipher-side `stat` of `target` in `dir`: a plain object's lstat with the size it has
    /// in the vault (regular files: their cipher size; symlinks: the length of the backing
    /// target); virtual files are read-only regular files owned like `dir`. st_nlink is the
    /// plain one: hard links have different ciphertexts (the file ID comes from the path), so a
    /// view should show each as its own file with one link.
    pub fn stat(&self, dir: &RDir, target: &Target) -> Result<libc::stat> {
        match target {
            Target::Plain(p) => {
                let rel = join_rel(&dir.rel, p);
                let mut st = dir.fd.stat(p).at(rel_path(&rel))?;
                match st.st_mode & libc::S_IFMT {
                    libc::S_IFREG => {
                        let size = offsets::cipher_size(st.st_size as u64);
                        set_size(&mut st, size);
                    }
                    libc::S_IFLNK => {
                        let link = self.cipher_link(dir, p)?;
                        set_size(&mut st, link.backing.len() as u64);
                    }
                    _ => {}
                }
                Ok(st)
            }
            _ => {
                let content = self.virtual_content(dir, target)?;
                let mut st = dir.fd.fstat().at(rel_path(&dir.rel))?;
                st.st_mode = libc::S_IFREG | 0o444;
                st.st_nlink = 1;
                set_size(&mut st, content.len() as u64);
                let (s, ns) = match target {
                    Target::LinkSidecar(p) => {
                        let lst = dir.fd.stat(p).at(rel_path(&join_rel(&dir.rel, p)))?;
                        (lst.st_mtime, lst.st_mtime_nsec)
                    }
                    // Content fixed for the life of the vault.
                    _ => self.config_time,
                };
                st.st_mtime = s;
                st.st_mtime_nsec = ns;
                st.st_ctime = s;
                st.st_ctime_nsec = ns;
                st.st_atime = s;
                st.st_atime_nsec = ns;
                Ok(st)
            }
        }
    }
}

/// Sets a stat's size and block count to `size` (a cipher size).
pub(super) fn set_size(st: &mut libc::stat, size: u64) {
    st.st_size = size as libc::off_t;
    st.st_blocks = size.div_ceil(512) as libc::blkcnt_t;
}

/// `HASH` of `HASH.name`.
fn stem_of(sidecar: &[u8]) -> String {
    let s = String::from_utf8_lossy(sidecar);
    s.split('.').next().unwrap_or_default().to_string()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::format::config::VaultParams;
    use crate::vault::reverse::{init, Excludes};
    use crate::vault::KdfCost;
    use std::os::unix::ffi::OsStrExt;

    pub(crate) fn setup(files: &[(&[u8], &[u8])], excludes: &[&str]) -> (tempfile::TempDir, ReverseVault) {
        let tmp = tempfile::tempdir().unwrap();
        for (name, data) in files {
            let p = tmp.path().join(std::ffi::OsStr::from_bytes(name));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, data).unwrap();
        }
        init(tmp.path(), None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
        let v = ReverseVault::unlock(tmp.path(), None, b"pw", Excludes::new(excludes).unwrap()).unwrap();
        (tmp, v)
    }

    #[test]
    fn listing_round_trips_through_lookup() {
        let long = vec![b'L'; 180];
        let (tmp, v) = setup(
            &[(b"a.txt", b"x"), (&long, b"y"), (b"skip.tmp", b"z"), (b"d/e", b"")],
            &["*.tmp"],
        );
        std::os::unix::fs::symlink("a.txt", tmp.path().join("ln")).unwrap();
        std::os::unix::fs::symlink("T".repeat(3500), tmp.path().join("far")).unwrap();
        let root = v.root_dir().unwrap();
        let list = v.list(&root).unwrap();
        let targets: Vec<&Target> = list.iter().map(|e| &e.target).collect();
        assert!(targets.contains(&&Target::Config));
        assert!(targets.contains(&&Target::Diriv));
        assert!(targets.contains(&&Target::NameSidecar(long.clone())));
        assert!(targets.contains(&&Target::LinkSidecar(b"far".to_vec())));
        assert!(!targets.contains(&&Target::Plain(b"skip.tmp".to_vec())));
        assert!(!targets.contains(&&Target::Plain(b".coffer.reverse.conf".to_vec())));
        // plain entries: a.txt, long, d, ln, far
        assert_eq!(list.iter().filter(|e| !e.target.is_virtual()).count(), 5);
        for e in &list {
            let found = v.lookup(&root, &e.name).unwrap();
            assert_eq!(found, *e);
            v.stat(&root, &e.target).unwrap();
        }
        assert!(v.lookup(&root, b"nonsense").is_err());
        let skip = v.cipher_name(&root, b"skip.tmp").unwrap();
        assert_eq!(v.lookup(&root, &skip.entry).unwrap_err().errno(), libc::ENOENT);
        // Same listing again (deterministic), and the child dir has another IV.
        assert_eq!(v.list(&v.root_dir().unwrap()).unwrap(), list);
        let d = v.open_child(&root, b"d").unwrap();
        assert_ne!(d.iv, root.iv);
        assert!(v.list(&d).unwrap().iter().all(|e| e.target != Target::Config));
        let st = v.stat(&root, &Target::Plain(b"a.txt".to_vec())).unwrap();
        assert_eq!(st.st_size, 51);
    }
}
