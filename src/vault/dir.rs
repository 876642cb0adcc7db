//! Backing directories: their IVs and the mapping between plaintext and backing names.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::crypto::KeySet;
use crate::format::backing_name::{self, classify, BackingName, DIRIV_LEN, DIRIV_NAME};
use crate::format::config::VaultParams;
use crate::format::conflict;
use crate::format::names::{self, NameEncoding};

/// Marker shown for the second and later entries that decrypt to the same name.
const DUP_MARK: &[u8] = b"(coffer duplicate";

use super::backing::{DirFd, RawEntry};
use super::error::{Damage, IoContext, Result, VaultError};
use super::Vault;

/// An open backing directory and its IV.
#[derive(Debug)]
pub struct Dir {
    /// The backing directory.
    pub fd: DirFd,
    /// Its `coffer.diriv`, the AD of every name in it.
    pub iv: [u8; DIRIV_LEN],
    /// Backing path relative to CIPHERDIR ("" for the root), for messages.
    pub rel: PathBuf,
    /// IVs from sync-client conflict copies of `coffer.diriv` (sorted): names that fail under
    /// `iv` are tried under these. New names always use `iv`.
    pub alt_ivs: Vec<[u8; DIRIV_LEN]>,
}

/// The backing name(s) of one plaintext name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CipherName {
    /// The directory entry: the encoded name, or `HASH.long`.
    pub entry: Vec<u8>,
    /// For long names: the sidecar's file name and content.
    pub long: Option<LongName>,
}

/// The sidecar of a long name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LongName {
    /// `HASH.name`.
    pub sidecar: Vec<u8>,
    /// The full encoded name it holds.
    pub encoded: String,
}

/// One decrypted directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Plaintext name.
    pub plain: Vec<u8>,
    /// Backing entry name.
    pub backing: Vec<u8>,
    /// Backing inode.
    pub ino: u64,
    /// Backing d_type.
    pub d_type: u8,
}

impl Dir {
    pub(super) fn open_root(v: &Vault) -> Result<Dir> {
        let fd = v.root_fd().try_clone().at(v.cipherdir())?;
        Dir::from_fd(fd, PathBuf::new())
    }

    /// Wraps an open backing directory, reading its diriv and any conflict copies of it.
    ///
    /// A client that renamed *every* version of `coffer.diriv` (rclone bisync does, on a
    /// directory made on two replicas) leaves only copies: then the smallest of their IVs
    /// encrypts new names (the same choice on every replica that has the same copies) and the
    /// others are tried too. With neither the diriv nor a copy: [`VaultError::MissingDiriv`].
    pub fn from_fd(fd: DirFd, rel: PathBuf) -> Result<Dir> {
        let (iv, alt_ivs) = match read_iv(&fd, &rel) {
            Ok(iv) => {
                let alt = read_copy_ivs(&fd).into_iter().filter(|c| *c != iv).collect();
                (iv, alt)
            }
            Err(e @ VaultError::MissingDiriv { .. }) => {
                let mut copies = read_copy_ivs(&fd).into_iter();
                let Some(first) = copies.next() else { return Err(e) };
                (first, copies.collect())
            }
            Err(e) => return Err(e),
        };
        Ok(Dir { fd, iv, rel, alt_ivs })
    }

    /// Opens a backing subdirectory and reads its IV.
    pub fn open_child(&self, _v: &Vault, backing_name: &[u8]) -> Result<Dir> {
        let rel = shorten_rel(self.rel_child(backing_name));
        let fd = self.fd.open_dir(backing_name).at(&rel)?;
        Dir::from_fd(fd, rel)
    }

    /// The directory's IV, then its alternative IVs: the order in which names are tried.
    pub fn ivs(&self) -> impl Iterator<Item = &[u8; DIRIV_LEN]> {
        std::iter::once(&self.iv).chain(self.alt_ivs.iter())
    }

    /// Backing path of a child, for messages.
    pub fn rel_child(&self, backing_name: &[u8]) -> PathBuf {
        self.rel.join(std::ffi::OsStr::from_bytes(backing_name))
    }
}

/// Longest backing path a [`Dir`] keeps for messages; deeper ones keep their last components
/// behind `…` (a 20000-level tree would otherwise keep a path of half a megabyte per level).
const REL_MAX: usize = 1024;

/// `rel`, or its tail behind `…` when longer than [`REL_MAX`].
pub(crate) fn shorten_rel(rel: PathBuf) -> PathBuf {
    if rel.as_os_str().len() <= REL_MAX {
        return rel;
    }
    let mut tail: Vec<&std::ffi::OsStr> = Vec::new();
    let mut len = 0;
    for c in rel.components().rev() {
        let c = c.as_os_str();
        if len + c.len() + 1 > REL_MAX / 2 && !tail.is_empty() {
            break;
        }
        len += c.len() + 1;
        tail.push(c);
    }
    let mut out = PathBuf::from("…");
    out.extend(tail.into_iter().rev());
    out
}

/// Reads and checks a directory's `coffer.diriv`.
pub fn read_iv(fd: &DirFd, rel: &Path) -> Result<[u8; DIRIV_LEN]> {
    let data = match fd.read_small(DIRIV_NAME.as_bytes(), 64) {
        Ok(d) => d,
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
            return Err(VaultError::MissingDiriv {
                path: rel.to_path_buf(),
            })
        }
        Err(e) => return Err(VaultError::io(rel.join(DIRIV_NAME), e)),
    };
    data.as_slice()
        .try_into()
        .map_err(|_| VaultError::corrupt(rel.join(DIRIV_NAME), None, Damage::DirivLength { len: data.len() }))
}

/// IVs of the sync-client conflict copies of `coffer.diriv` (`coffer<marker>.diriv`), sorted,
/// each once.
fn read_copy_ivs(fd: &DirFd) -> Vec<[u8; DIRIV_LEN]> {
    let Ok(entries) = fd.list() else { return Vec::new() };
    let mut out = Vec::new();
    for e in entries {
        let copies = conflict::parse_copy(&e.name, NameEncoding::Base64Url);
        if !copies.iter().any(|c| c.ext == "diriv") {
            continue;
        }
        if let Ok(data) = fd.read_small(&e.name, 64) {
            if let Ok(iv) = <[u8; DIRIV_LEN]>::try_from(data.as_slice()) {
                if !out.contains(&iv) {
                    out.push(iv);
                }
            }
        }
    }
    out.sort();
    out
}

/// The backing name of `plain` in a directory whose IV is `iv` (validates the plaintext name).
/// Shared by the vault and reverse mode.
pub fn cipher_name_for(keys: &KeySet, params: &VaultParams, iv: &[u8; DIRIV_LEN], plain: &[u8]) -> Result<CipherName> {
    names::check_plain_name(plain)?;
    let enc = params.name_encoding;
    let encoded = enc.encode(&keys.names.encrypt_name(iv, plain));
    if names::is_long(&encoded, params.long_name_limit) {
        let hash = enc.long_hash(&encoded);
        Ok(CipherName {
            entry: backing_name::long_entry_name(&hash).into_bytes(),
            long: Some(LongName {
                sidecar: backing_name::long_sidecar_name(&hash).into_bytes(),
                encoded,
            }),
        })
    } else {
        Ok(CipherName {
            entry: encoded.into_bytes(),
            long: None,
        })
    }
}

impl Vault {
    /// The backing name of `plain` in `dir` for a new entry (validates the plaintext name).
    pub fn cipher_name(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        self.cipher_name_in(self.keys(), &dir.iv, plain)
    }

    /// The backing name of `plain` under one epoch's names key and one IV.
    fn cipher_name_in(&self, keys: &KeySet, iv: &[u8; DIRIV_LEN], plain: &[u8]) -> Result<CipherName> {
        cipher_name_for(keys, self.params(), iv, plain)
    }

    /// Every (epoch, IV) pair a name of `dir` may be sealed under, in the order they are tried:
    /// the newest epoch first, within an epoch the directory's IV first (docs/FORMAT.md §15.4).
    fn name_keys<'a>(&'a self, dir: &'a Dir) -> impl Iterator<Item = (&'a KeySet, &'a [u8; DIRIV_LEN])> + 'a {
        self.vault_keys()
            .newest_first()
            .flat_map(move |e| dir.ivs().map(move |iv| (&e.set, iv)))
    }

    /// The backing name of `plain` for a new entry in `dir`, or EEXIST when `plain` is already
    /// there under an older epoch's key (a new entry would otherwise duplicate it). A vault
    /// with one epoch pays nothing for the check.
    pub(super) fn new_cipher_name(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        let name = self.cipher_name(dir, plain)?;
        if let Some(old) = self.older_epoch_entry(dir, plain)? {
            return Err(VaultError::errno_at(dir.rel_child(&old.entry), libc::EEXIST));
        }
        Ok(name)
    }

    /// The existing entry of `plain` in `dir` under an epoch older than the newest (under the
    /// diriv or an alternative IV), if any.
    pub(super) fn older_epoch_entry(&self, dir: &Dir, plain: &[u8]) -> Result<Option<CipherName>> {
        for e in self.vault_keys().newest_first().skip(1) {
            for iv in dir.ivs() {
                let old = self.cipher_name_in(&e.set, iv, plain)?;
                if dir.fd.stat(&old.entry).is_ok() {
                    return Ok(Some(old));
                }
            }
        }
        Ok(None)
    }

    /// The backing name of `plain` in `dir` under the diriv: the existing entry's, under the
    /// newest epoch that has one, else the name a new entry would get. Alternative IVs and
    /// conflict copies are not looked at (see [`resolve`](Self::resolve) for that).
    pub fn cipher_name_existing(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        let main = self.cipher_name(dir, plain)?;
        if dir.fd.stat(&main.entry).is_ok() {
            return Ok(main);
        }
        for e in self.vault_keys().newest_first().skip(1) {
            let old = self.cipher_name_in(&e.set, &dir.iv, plain)?;
            if dir.fd.stat(&old.entry).is_ok() {
                return Ok(old);
            }
        }
        Ok(main)
    }

    /// Decrypts an encoded name (the text of a short entry or a sidecar).
    fn decrypt_encoded(&self, dir: &Dir, encoded: &[u8], rel: &Path) -> Result<Vec<u8>> {
        let raw = self
            .params()
            .name_encoding
            .decode(encoded)
            .map_err(|_| VaultError::corrupt(rel, None, Damage::NameEncoding))?;
        let plain = self
            .name_keys(dir)
            .find_map(|(keys, iv)| keys.names.decrypt_name(iv, &raw).ok())
            .ok_or_else(|| VaultError::corrupt(rel, None, Damage::NameAuth))?;
        names::check_plain_name(&plain).map_err(|_| VaultError::corrupt(rel, None, Damage::NameInvalid))?;
        Ok(plain)
    }

    /// Reads and checks the sidecar of long entry `hash`.
    pub fn read_sidecar(&self, dir: &Dir, hash: &str) -> Result<String> {
        let name = backing_name::long_sidecar_name(hash);
        let rel = dir.rel_child(name.as_bytes());
        let data = dir.fd.read_small(name.as_bytes(), 4096).at(&rel)?;
        self.params()
            .name_encoding
            .check_sidecar(hash, &data)
            .map_err(|_| VaultError::corrupt(&rel, None, Damage::SidecarHash))
    }

    /// The plaintext name of a backing entry: `Ok(None)` for coffer's own files and sidecars,
    /// `Err` when the name should be a user entry but does not decrypt.
    pub fn plain_name(&self, dir: &Dir, backing: &[u8]) -> Result<Option<Vec<u8>>> {
        let rel = dir.rel_child(backing);
        match classify(backing, self.params().name_encoding) {
            // A OneDrive marker (`-HOST`) keeps a short name in the base64url alphabet.
            BackingName::Short(enc) => match self.decrypt_encoded(dir, enc.as_bytes(), &rel) {
                Ok(p) => Ok(Some(p)),
                Err(e) => self.conflict_plain_name(dir, backing, &rel).map_err(|_| e),
            },
            BackingName::Long(hash) => {
                let enc = self.read_sidecar(dir, hash)?;
                self.decrypt_encoded(dir, enc.as_bytes(), &rel).map(Some)
            }
            BackingName::Config
            | BackingName::Diriv
            | BackingName::LongSidecar(_)
            | BackingName::LinkSidecar(_)
            | BackingName::Temp => Ok(None),
            BackingName::Other => self.conflict_plain_name(dir, backing, &rel),
        }
    }

    /// The plaintext name of a sync-client conflict copy (`Ok(None)` for copies of coffer's own
    /// files and for the clients' temp files).
    fn conflict_plain_name(&self, dir: &Dir, backing: &[u8], rel: &Path) -> Result<Option<Vec<u8>>> {
        if conflict::is_sync_client_file(backing) || self.is_long_link_copy(backing) {
            return Ok(None);
        }
        for c in conflict::parse_copy(backing, self.params().name_encoding) {
            let plain = match c.ext {
                "" => self.decrypt_encoded(dir, c.stem.as_bytes(), rel),
                "long" => self
                    .read_copy_sidecar(dir, c.stem, c.marker)
                    .and_then(|enc| self.decrypt_encoded(dir, enc.as_bytes(), rel)),
                _ => return Ok(None),
            };
            if let Ok(p) = plain {
                let shown = conflict::plain_with_marker(&p, c.marker);
                if names::check_plain_name(&shown).is_ok() {
                    return Ok(Some(shown));
                }
            }
        }
        Err(VaultError::corrupt(rel, None, Damage::NotCofferName))
    }

    /// Whether `backing` is a client's copy `HASH.long<marker>.link` of a long-name symlink's
    /// out-of-line target (hidden like the sidecar it copies).
    fn is_long_link_copy(&self, backing: &[u8]) -> bool {
        let enc = self.params().name_encoding;
        let entry_len = enc.hash_len() + ".long".len();
        let Some(entry) = backing
            .get(..entry_len)
            .filter(|e| matches!(classify(e, enc), BackingName::Long(_)))
        else {
            return false;
        };
        let Ok(rest) = std::str::from_utf8(&backing[entry.len()..]) else {
            return false;
        };
        match rest.strip_suffix(".link") {
            // `HASH.long<marker>.link` (the marker before the extension).
            Some(marker) => !marker.is_empty() && conflict::is_marker(marker),
            // rclone: `HASH.long.link<marker>`, after the whole name.
            None => rest.strip_prefix(".link").is_some_and(conflict::is_end_marker),
        }
    }

    /// The sidecar of a conflict copy `HASH<marker>.long`: its own copy if the client made one,
    /// else the original `HASH.name`.
    fn read_copy_sidecar(&self, dir: &Dir, hash: &str, marker: &str) -> Result<String> {
        let copy = conflict::copy_name(hash, marker, backing_name::NAME_EXT);
        match dir.fd.read_small(copy.as_bytes(), 4096) {
            Ok(data) => self
                .params()
                .name_encoding
                .check_sidecar(hash, &data)
                .map_err(|_| VaultError::corrupt(dir.rel_child(copy.as_bytes()), None, Damage::SidecarHash)),
            Err(_) => self.read_sidecar(dir, hash),
        }
    }

    /// The backing entry that shows as `plain` in `dir`: the entry under the diriv, else under
    /// a conflict copy's IV, else a sync-client conflict copy or duplicate shown under that
    /// name. Each is looked for under every epoch's names key, newest first. When none exists,
    /// the name a new entry would get (newest epoch, the diriv).
    pub fn resolve(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        let main = self.cipher_name(dir, plain)?;
        if dir.fd.stat(&main.entry).is_ok() {
            return Ok(main);
        }
        // The first pair is the newest epoch under the diriv: `main`, looked at already.
        for (keys, iv) in self.name_keys(dir).skip(1) {
            let n = self.cipher_name_in(keys, iv, plain)?;
            if dir.fd.stat(&n.entry).is_ok() {
                return Ok(n);
            }
        }
        for (orig, marker) in conflict::split_plain(plain) {
            if names::check_plain_name(&orig).is_err() {
                continue;
            }
            for (keys, iv) in self.name_keys(dir) {
                let o = self.cipher_name_in(keys, iv, &orig)?;
                let candidate = match &o.long {
                    None => {
                        let mut e = o.entry.clone();
                        e.extend_from_slice(marker.as_bytes());
                        e
                    }
                    Some(_) => {
                        let hash = &o.entry[..o.entry.len() - backing_name::LONG_EXT.len() - 1];
                        let hash = String::from_utf8_lossy(hash);
                        conflict::copy_name(&hash, marker, backing_name::LONG_EXT).into_bytes()
                    }
                };
                if dir.fd.stat(&candidate).is_ok() {
                    return Ok(CipherName {
                        entry: candidate,
                        long: None,
                    });
                }
            }
        }
        if let Some(dup) = self.resolve_duplicate(dir, plain)? {
            return Ok(dup);
        }
        Ok(main)
    }

    fn resolve_duplicate(&self, dir: &Dir, plain: &[u8]) -> Result<Option<CipherName>> {
        if !plain.windows(DUP_MARK.len()).any(|w| w == DUP_MARK) {
            return Ok(None);
        }
        Ok(self
            .list_quietly(dir)?
            .into_iter()
            .find(|e| e.plain == plain)
            .map(|e| CipherName {
                entry: e.backing,
                long: None,
            }))
    }

    /// Decrypted listing of `dir`. Entries that do not decrypt are skipped with a warning;
    /// conflict copies show with their marker; two entries with the same plaintext name (names
    /// made under two diriv copies) are both shown, the later ones (in backing-name order) as
    /// `name (coffer duplicate N)`.
    ///
    /// This is a read of the directory by the user: its access time follows the mount's
    /// policy. Coffer's own lookups use [`list_quietly`](Self::list_quietly).
    pub fn list(&self, dir: &Dir) -> Result<Vec<Entry>> {
        self.decrypt_listing(dir, dir.fd.list_as_read().at(&dir.rel)?)
    }

    /// Like [`list`](Self::list), leaving the directory's access time alone where the backing
    /// file system lets it (a lookup or merge is no read of the directory by the user).
    pub fn list_quietly(&self, dir: &Dir) -> Result<Vec<Entry>> {
        self.decrypt_listing(dir, dir.fd.list().at(&dir.rel)?)
    }

    fn decrypt_listing(&self, dir: &Dir, mut raw: Vec<RawEntry>) -> Result<Vec<Entry>> {
        raw.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out: Vec<Entry> = Vec::with_capacity(raw.len());
        let mut count = std::collections::HashMap::<Vec<u8>, usize>::new();
        for e in raw {
            match self.plain_name(dir, &e.name) {
                Ok(Some(plain)) => {
                    *count.entry(plain.clone()).or_insert(0) += 1;
                    out.push(Entry {
                        plain,
                        backing: e.name,
                        ino: e.ino,
                        d_type: e.d_type,
                    })
                }
                Ok(None) => {}
                Err(err) => log::warn!("skipping entry: {err}"),
            }
        }
        // The entry `resolve` finds keeps the name; the others are numbered in backing order.
        for (plain, n) in count {
            if n < 2 {
                continue;
            }
            let primary = self.resolve_direct(dir, &plain);
            let mut k = 0;
            for e in out.iter_mut().filter(|e| e.plain == plain) {
                if Some(&e.backing) == primary.as_ref() {
                    continue;
                }
                k += 1;
                let mark = format!(" {} {k})", String::from_utf8_lossy(DUP_MARK));
                e.plain = conflict::plain_with_marker(&plain, &mark);
            }
        }
        Ok(out)
    }

    /// The existing entry for `plain` under the diriv or a conflict copy's IV, under any
    /// epoch (no markers).
    fn resolve_direct(&self, dir: &Dir, plain: &[u8]) -> Option<Vec<u8>> {
        self.name_keys(dir).find_map(|(keys, iv)| {
            let n = self.cipher_name_in(keys, iv, plain).ok()?;
            dir.fd.stat(&n.entry).ok().map(|_| n.entry)
        })
    }

    /// Finds the backing entry shown as `plain` in `dir` and stats it (lstat semantics).
    pub fn lookup(&self, dir: &Dir, plain: &[u8]) -> Result<(CipherName, libc::stat)> {
        let name = self.resolve(dir, plain)?;
        let st = dir.fd.stat(&name.entry).at(dir.rel_child(&name.entry))?;
        Ok((name, st))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_paths_keep_their_tail_for_messages() {
        let short = PathBuf::from("a/b/c");
        assert_eq!(shorten_rel(short.clone()), short);
        let mut deep = PathBuf::new();
        for i in 0..2000 {
            deep.push(format!("component{i:05}"));
        }
        let s = shorten_rel(deep);
        let text = s.to_string_lossy().into_owned();
        assert!(text.len() <= REL_MAX, "{}", text.len());
        assert!(text.starts_with("…/"), "{text}");
        assert!(text.ends_with("component01999"), "{text}");
        // Shortening a shortened path's child stays bounded.
        let again = shorten_rel(s.join("next"));
        assert!(again.as_os_str().len() <= REL_MAX);
        assert!(again.ends_with("next"));
    }
}
