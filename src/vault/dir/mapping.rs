//! Between plaintext and backing names in a directory: encrypting, decrypting, resolving, listing.

use std::path::Path;

use crate::crypto::KeySet;
use crate::format::backing_name::{self, classify, BackingName, DIRIV_LEN};
use crate::format::conflict;
use crate::format::names;
use crate::vault::backing::RawEntry;
use crate::vault::error::{Damage, IoContext, Result, VaultError};
use crate::vault::keys::VaultKeys;
use crate::vault::Vault;

use super::{cipher_name_for, CipherName, Dir, Entry};

/// What a change to one backing entry changes in its directory's plaintext view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touched {
    /// The entry of this plaintext name.
    Name(Vec<u8>),
    /// Possibly any name (new IVs, a name that does not decrypt, a conflict copy of a sidecar).
    AllNames,
    /// Nothing shown (coffer's temp files and config, sync clients' own files).
    Nothing,
}

/// Marker shown for the second and later entries that decrypt to the same name.
const DUP_MARK: &[u8] = b"(coffer duplicate";

impl Vault {
    /// The backing name of `plain` in `dir` for a new entry (validates the plaintext name).
    pub fn cipher_name(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        self.cipher_name_in(&self.keys(), &dir.iv, plain)
    }

    /// The backing name of `plain` under one epoch's names key and one IV.
    fn cipher_name_in(&self, keys: &KeySet, iv: &[u8; DIRIV_LEN], plain: &[u8]) -> Result<CipherName> {
        cipher_name_for(keys, self.params(), iv, plain)
    }

    /// Every (epoch, IV) pair a name of `dir` may be sealed under, in the order they are tried:
    /// the newest epoch first, within an epoch the directory's IV first (docs/FORMAT.md §15.4).
    fn name_keys<'a>(
        keys: &'a VaultKeys,
        dir: &'a Dir,
    ) -> impl Iterator<Item = (&'a KeySet, &'a [u8; DIRIV_LEN])> + 'a {
        keys.newest_first()
            .flat_map(move |e| dir.ivs().map(move |iv| (&e.set, iv)))
    }

    /// The backing name of `plain` for a new entry in `dir`, or EEXIST when `plain` is already
    /// there under an older epoch's key (a new entry would otherwise duplicate it). A vault
    /// with one epoch pays nothing for the check.
    pub(in crate::vault) fn new_cipher_name(&self, dir: &Dir, plain: &[u8]) -> Result<CipherName> {
        let name = self.cipher_name(dir, plain)?;
        if let Some(old) = self.older_epoch_entry(dir, plain)? {
            return Err(VaultError::errno_at(dir.rel_child(&old.entry), libc::EEXIST));
        }
        Ok(name)
    }

    /// The existing entry of `plain` in `dir` under an epoch older than the newest (under the
    /// diriv or an alternative IV), if any.
    pub(in crate::vault) fn older_epoch_entry(&self, dir: &Dir, plain: &[u8]) -> Result<Option<CipherName>> {
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
        let keys = self.vault_keys();
        let plain = Self::name_keys(&keys, dir)
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

    /// What a change to the backing entry `backing` of `dir` (made by someone else: a sync
    /// client) changes in the plaintext view of `dir`.
    pub fn touched_by(&self, dir: &Dir, backing: &[u8]) -> Touched {
        match classify(backing, self.params().name_encoding) {
            // New IVs: every name of the directory may read differently.
            BackingName::Diriv => Touched::AllNames,
            // The sidecar of `HASH.long` (a client may bring it after the entry).
            BackingName::LongSidecar(hash) => {
                let entry = format!("{hash}.{}", backing_name::LONG_EXT);
                match self.plain_name(dir, entry.as_bytes()) {
                    Ok(Some(p)) => Touched::Name(p),
                    Ok(None) => Touched::Nothing,
                    Err(_) => Touched::AllNames,
                }
            }
            // A symlink's out-of-line target: the symlink's size changes with it.
            BackingName::LinkSidecar(stem) => match self.plain_name(dir, stem.as_bytes()) {
                Ok(Some(p)) => Touched::Name(p),
                Ok(None) | Err(_) => Touched::Nothing,
            },
            BackingName::Config | BackingName::Temp => Touched::Nothing,
            BackingName::Short(_) | BackingName::Long(_) | BackingName::Other => match self.plain_name(dir, backing) {
                Ok(Some(p)) => Touched::Name(p),
                // A sync client's own temp or marker file changes nothing shown.
                Ok(None) if conflict::is_sync_client_file(backing) => Touched::Nothing,
                // A copy of coffer's own files (a diriv's conflict copy lends its IV), or a
                // name that does not decrypt (yet): read the whole directory again.
                Ok(None) | Err(_) => Touched::AllNames,
            },
        }
    }

    /// The plaintext name of a sync-client conflict copy (`Ok(None)` for copies of coffer's own
    /// files and for the clients' temp files).
    fn conflict_plain_name(&self, dir: &Dir, backing: &[u8], rel: &Path) -> Result<Option<Vec<u8>>> {
        if conflict::is_sync_client_file(backing)
            || conflict::config_copy_marker(backing).is_some()
            || self.is_long_link_copy(backing)
        {
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
        self.resolve_stat(dir, plain).map(|(name, _)| name)
    }

    /// [`resolve`](Self::resolve), with the result of lstat-ing the main name when that is
    /// the answer (what it was found or not found by; a lookup needs no second stat).
    fn resolve_stat(&self, dir: &Dir, plain: &[u8]) -> Result<(CipherName, Option<std::io::Result<libc::stat>>)> {
        let main = self.cipher_name(dir, plain)?;
        let main_st = dir.fd.stat(&main.entry);
        if main_st.is_ok() {
            return Ok((main, Some(main_st)));
        }
        // The first pair is the newest epoch under the diriv: `main`, looked at already.
        let all = self.vault_keys();
        for (keys, iv) in Self::name_keys(&all, dir).skip(1) {
            let n = self.cipher_name_in(keys, iv, plain)?;
            if dir.fd.stat(&n.entry).is_ok() {
                return Ok((n, None));
            }
        }
        for (orig, marker) in conflict::split_plain(plain) {
            if names::check_plain_name(&orig).is_err() {
                continue;
            }
            for (keys, iv) in Self::name_keys(&all, dir) {
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
                    return Ok((
                        CipherName {
                            entry: candidate,
                            long: None,
                        },
                        None,
                    ));
                }
            }
        }
        if let Some(dup) = self.resolve_duplicate(dir, plain)? {
            return Ok((dup, None));
        }
        Ok((main, Some(main_st)))
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

    /// Like [`list_quietly`](Self::list_quietly), also returning the backing names of the
    /// entries skipped because their name opens under no epoch's key (another machine's key
    /// epoch, or damage): a rekey reports them instead of passing them over.
    pub(in crate::vault) fn list_with_unopened(&self, dir: &Dir) -> Result<(Vec<Entry>, Vec<Vec<u8>>)> {
        let mut unopened = Vec::new();
        let entries = self.decrypt_listing_into(dir, dir.fd.list().at(&dir.rel)?, &mut unopened)?;
        Ok((entries, unopened))
    }

    fn decrypt_listing(&self, dir: &Dir, raw: Vec<RawEntry>) -> Result<Vec<Entry>> {
        self.decrypt_listing_into(dir, raw, &mut Vec::new())
    }

    fn decrypt_listing_into(
        &self,
        dir: &Dir,
        mut raw: Vec<RawEntry>,
        unopened: &mut Vec<Vec<u8>>,
    ) -> Result<Vec<Entry>> {
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
                        dup_of: None,
                    })
                }
                Ok(None) => {}
                Err(err) => {
                    if matches!(
                        err,
                        VaultError::Corrupt {
                            damage: Damage::NameAuth,
                            ..
                        }
                    ) {
                        unopened.push(e.name);
                    }
                    log::warn!("skipping entry: {err}")
                }
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
                e.dup_of = Some(plain.clone());
            }
        }
        Ok(out)
    }

    /// The existing entry for `plain` under the diriv or a conflict copy's IV, under any
    /// epoch (no markers).
    fn resolve_direct(&self, dir: &Dir, plain: &[u8]) -> Option<Vec<u8>> {
        let all = self.vault_keys();
        let found = Self::name_keys(&all, dir).find_map(|(keys, iv)| {
            let n = self.cipher_name_in(keys, iv, plain).ok()?;
            dir.fd.stat(&n.entry).ok().map(|_| n.entry)
        });
        found
    }

    /// Finds the backing entry shown as `plain` in `dir` and stats it (lstat semantics).
    pub fn lookup(&self, dir: &Dir, plain: &[u8]) -> Result<(CipherName, libc::stat)> {
        let (name, st) = self.resolve_stat(dir, plain)?;
        let st = match st {
            Some(st) => st,
            None => dir.fd.stat(&name.entry),
        };
        let st = st.at(dir.rel_child(&name.entry))?;
        Ok((name, st))
    }
}
