//! How many regular files (and backing bytes) are sealed under each key epoch of a config,
//! read from their headers alone: no key is needed, so `coffer info` can show how far a
//! rekey got without a password (docs/FORMAT.md §15.7). Names, symlink targets and xattrs
//! need the key to be placed under an epoch and are not counted here.
//!
//! The walk is iterative and keeps its directory descriptors within the walk budget
//! ([`DirChain`]); every open is `*at` with `O_NOFOLLOW`, so a symlink is never followed; an
//! entry that vanishes, turns out to be something other than a regular file or directory, or
//! is not an entry at all (coffer's own files, sidecars, temporaries, sync clients' files) is
//! left out.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::format::backing_name::{classify, BackingName, LONG_EXT};
use crate::format::conflict;
use crate::format::epochs::{Epoch, EpochId, Epochs, Layout};
use crate::format::header::{FileHeader, HeaderFault, HEADER_LEN};
use crate::format::names::NameEncoding;

use super::backing::{DirFd, NotRegular, RawEntry};
use super::error::{Result, VaultError};
use super::walk::{walk_fd_budget, DirChain};

/// Files and their backing bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Regular files (a hard-linked file once).
    pub files: u64,
    /// Their backing sizes (header and tags included).
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.files += 1;
        self.bytes += bytes;
    }
}

/// Most epoch IDs not in the config that a census names.
pub const UNLISTED_IDS_MAX: usize = 8;

/// What a census found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EpochCensus {
    /// Each epoch of the config, oldest first, with the files sealed under it.
    pub epochs: Vec<(Epoch, Tally)>,
    /// Empty files: no header, nothing sealed (they take the newest epoch at their first write).
    pub empty: Tally,
    /// Files whose header names an epoch the config does not list: a version-3 epoch ID not
    /// in it, version 1 or 2 without a layout-1 epoch in it, or an unknown header version.
    pub unlisted: Tally,
    /// Up to [`UNLISTED_IDS_MAX`] of the unlisted epoch IDs found.
    pub unlisted_ids: BTreeSet<EpochId>,
    /// Files too short to hold a header, or with an all-zero file ID: damaged (`coffer fsck`).
    pub damaged: Tally,
    /// Entries that could not be opened, read or listed (each logged as a warning).
    pub unreadable: u64,
    /// Directories walked, the root included.
    pub dirs: u64,
}

/// Under which epoch a file is, from the start of its backing bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderEpoch {
    /// The epoch at this index of the config's list (oldest first).
    Listed(usize),
    /// An empty file.
    Empty,
    /// An epoch the config does not list (`None`: a header version without epochs, 1 or 2
    /// with no layout-1 epoch listed, or an unknown one).
    Unlisted(Option<EpochId>),
    /// Shorter than a header, or an all-zero file ID.
    Damaged,
}

/// Places a file whose backing bytes start with `start` (all of them, or at least
/// [`HEADER_LEN`]) under one of `epochs`: header version 3 by the epoch ID in its file ID,
/// versions 1 and 2 under the layout-1 epoch. Pure.
pub fn header_epoch(start: &[u8], epochs: &Epochs) -> HeaderEpoch {
    if start.is_empty() {
        return HeaderEpoch::Empty;
    }
    let h = match FileHeader::decode(start) {
        Ok(h) => h,
        Err(HeaderFault::Version { .. }) => return HeaderEpoch::Unlisted(None),
        Err(_) => return HeaderEpoch::Damaged,
    };
    let list = epochs.all();
    let found = match h.epoch_id() {
        Some(id) => list.iter().position(|e| e.id == id && e.layout == Layout::V3),
        None => list.iter().position(|e| e.layout == Layout::V1),
    };
    match found {
        Some(i) => HeaderEpoch::Listed(i),
        None => HeaderEpoch::Unlisted(h.epoch_id()),
    }
}

/// Whether backing name `name` is a vault entry (a file, directory or symlink the mount
/// shows): a short or long name, or a sync client's conflict copy of one. Coffer's own files
/// (config, diriv, sidecars, temporaries) and sync clients' files are not.
fn is_entry(name: &[u8], enc: NameEncoding) -> bool {
    match classify(name, enc) {
        BackingName::Short(_) | BackingName::Long(_) => true,
        BackingName::Other => {
            !conflict::is_sync_client_file(name)
                && conflict::parse_copy(name, enc)
                    .iter()
                    .any(|c| c.ext.is_empty() || c.ext == LONG_EXT)
        }
        BackingName::Config
        | BackingName::Diriv
        | BackingName::LongSidecar(_)
        | BackingName::LinkSidecar(_)
        | BackingName::Temp => false,
    }
}

/// Whether an open or stat failed because the entry is gone or is not what was asked for
/// (a symlink refused by `O_NOFOLLOW`, a FIFO, a file where a directory was): left out.
fn left_out(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR | libc::EISDIR)
    ) || e.get_ref().is_some_and(|inner| inner.is::<NotRegular>())
}

struct Frame {
    entries: Vec<RawEntry>,
    next: usize,
    rel: PathBuf,
}

/// One census: the config's epochs, the totals so far, the hard-linked files met.
struct Census<'a> {
    epochs: &'a Epochs,
    out: EpochCensus,
    linked: HashSet<(u64, u64)>,
}

/// Counts the regular files of the vault at `cipherdir` (names encoded with `enc`) under each
/// of `epochs` (see [`EpochCensus`]). Fails only when CIPHERDIR itself cannot be opened or
/// listed; anything below it that cannot be read is counted as unreadable and logged.
pub fn census(cipherdir: &Path, epochs: &Epochs, enc: NameEncoding) -> Result<EpochCensus> {
    let at_root = |e| VaultError::io(cipherdir, e);
    let mut root = DirFd::open_path(cipherdir).map_err(at_root)?;
    root.set_noatime(super::NoAtime {
        files: true,
        dirs: true,
    });
    let entries = root.list().map_err(at_root)?;
    let mut chain = DirChain::new(root, walk_fd_budget()).map_err(at_root)?;
    let mut c = Census {
        epochs,
        out: EpochCensus {
            epochs: epochs.all().iter().map(|e| (e.clone(), Tally::default())).collect(),
            empty: Tally::default(),
            unlisted: Tally::default(),
            unlisted_ids: BTreeSet::new(),
            damaged: Tally::default(),
            unreadable: 0,
            dirs: 1,
        },
        linked: HashSet::new(),
    };
    let mut frames = vec![Frame {
        entries,
        next: 0,
        rel: PathBuf::new(),
    }];
    while let Some(frame) = frames.last_mut() {
        let Some(e) = frame.entries.get(frame.next) else {
            frames.pop();
            chain.pop();
            continue;
        };
        frame.next += 1;
        if !is_entry(&e.name, enc) {
            continue;
        }
        let rel = frame.rel.join(std::ffi::OsStr::from_bytes(&e.name));
        let dir = match chain.top() {
            Ok(d) => d,
            Err(err) => {
                // Its descriptor was dropped and it is gone or replaced: skip the rest of it.
                c.unreadable(&frame.rel, &err);
                frame.next = frame.entries.len();
                continue;
            }
        };
        let fmt = match e.d_type {
            libc::DT_DIR => libc::S_IFDIR,
            libc::DT_REG => libc::S_IFREG,
            libc::DT_UNKNOWN => match dir.stat(&e.name) {
                Ok(st) => st.st_mode & libc::S_IFMT,
                Err(err) if left_out(&err) => continue,
                Err(err) => {
                    c.unreadable(&rel, &err);
                    continue;
                }
            },
            _ => continue,
        };
        match fmt {
            libc::S_IFREG => match dir.open_file(&e.name, false, None) {
                Ok(f) => c.file(&f, &rel),
                Err(err) if left_out(&err) => {}
                Err(err) => c.unreadable(&rel, &err),
            },
            libc::S_IFDIR => {
                let child = match dir.open_dir(&e.name) {
                    Ok(d) => d,
                    Err(err) if left_out(&err) => continue,
                    Err(err) => {
                        c.unreadable(&rel, &err);
                        continue;
                    }
                };
                let entries = match child.list() {
                    Ok(l) => l,
                    Err(err) => {
                        c.unreadable(&rel, &err);
                        continue;
                    }
                };
                let name = e.name.clone();
                if let Err(err) = chain.push(&name, child) {
                    c.unreadable(&rel, &err);
                    continue;
                }
                c.out.dirs += 1;
                frames.push(Frame { entries, next: 0, rel });
            }
            _ => {}
        }
    }
    Ok(c.out)
}

impl Census<'_> {
    fn unreadable(&mut self, rel: &Path, err: &std::io::Error) {
        log::warn!("{}: {err}", rel.display());
        self.out.unreadable += 1;
    }

    /// Counts the open regular file `f` (backing path `rel`) under the epoch of its header.
    fn file(&mut self, f: &File, rel: &Path) {
        let st = match super::backing::fstat(std::os::fd::AsRawFd::as_raw_fd(f)) {
            Ok(st) => st,
            Err(err) => return self.unreadable(rel, &err),
        };
        if st.st_nlink > 1 && !self.linked.insert((st.st_dev, st.st_ino)) {
            // Another name of a file counted already.
            return;
        }
        let mut start = [0u8; HEADER_LEN];
        let mut got = 0;
        while got < HEADER_LEN {
            match f.read_at(&mut start[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => {}
                Err(err) => return self.unreadable(rel, &err),
            }
        }
        let bytes = u64::try_from(st.st_size).unwrap_or(0);
        let out = &mut self.out;
        match header_epoch(&start[..got], self.epochs) {
            HeaderEpoch::Listed(i) => {
                if let Some((_, t)) = out.epochs.get_mut(i) {
                    t.add(bytes);
                }
            }
            HeaderEpoch::Empty => out.empty.add(bytes),
            HeaderEpoch::Unlisted(id) => {
                out.unlisted.add(bytes);
                if let Some(id) = id {
                    if out.unlisted_ids.len() < UNLISTED_IDS_MAX {
                        out.unlisted_ids.insert(id);
                    }
                }
            }
            HeaderEpoch::Damaged => out.damaged.add(bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::header::{FILE_V1, FILE_V2, FILE_V3};

    fn epoch(id: u8, seq: u32, layout: Layout, newest: bool) -> Epoch {
        Epoch {
            id: EpochId([id; 4]),
            seq,
            layout,
            sealed_key: (!newest).then_some([0u8; crate::format::epochs::SEALED_EPOCH_KEY_LEN]),
        }
    }

    fn header(version: u16, first: [u8; 4]) -> Vec<u8> {
        let mut file_id = [7u8; 16];
        file_id[..4].copy_from_slice(&first);
        FileHeader { version, file_id }.encode().to_vec()
    }

    #[test]
    fn headers_are_placed_under_their_epochs() {
        let converted = Epochs::new(vec![
            epoch(1, 0, Layout::V1, false),
            epoch(2, 1, Layout::V3, false),
            epoch(3, 2, Layout::V3, true),
        ])
        .unwrap();
        let place = |b: &[u8]| header_epoch(b, &converted);
        assert_eq!(place(&header(FILE_V1, [9; 4])), HeaderEpoch::Listed(0));
        assert_eq!(place(&header(FILE_V2, [9; 4])), HeaderEpoch::Listed(0));
        assert_eq!(place(&header(FILE_V3, [2; 4])), HeaderEpoch::Listed(1));
        assert_eq!(place(&header(FILE_V3, [3; 4])), HeaderEpoch::Listed(2));
        // The layout-1 epoch's ID in a version-3 header is not that epoch's (it has no
        // version-3 files).
        assert_eq!(
            place(&header(FILE_V3, [1; 4])),
            HeaderEpoch::Unlisted(Some(EpochId([1; 4])))
        );
        assert_eq!(
            place(&header(FILE_V3, [0xde; 4])),
            HeaderEpoch::Unlisted(Some(EpochId([0xde; 4])))
        );
        assert_eq!(place(&header(4, [2; 4])), HeaderEpoch::Unlisted(None));
        assert_eq!(place(&header(0, [2; 4])), HeaderEpoch::Unlisted(None));
        assert_eq!(place(b""), HeaderEpoch::Empty);
        assert_eq!(place(&header(FILE_V3, [2; 4])[..17]), HeaderEpoch::Damaged);
        assert_eq!(place(&[0, 3]), HeaderEpoch::Damaged);
        let mut zero = header(FILE_V1, [0; 4]);
        zero[2..].fill(0);
        assert_eq!(place(&zero), HeaderEpoch::Damaged);

        // No layout-1 epoch: versions 1 and 2 are under a key the config does not list.
        let fresh = Epochs::new(vec![epoch(2, 1, Layout::V3, false), epoch(3, 2, Layout::V3, true)]).unwrap();
        assert_eq!(
            header_epoch(&header(FILE_V1, [9; 4]), &fresh),
            HeaderEpoch::Unlisted(None)
        );
        assert_eq!(header_epoch(&header(FILE_V3, [2; 4]), &fresh), HeaderEpoch::Listed(0));
    }

    #[test]
    fn only_entries_are_counted() {
        let enc = NameEncoding::Base64Url;
        let h = "A".repeat(43);
        assert!(is_entry(b"abc-_Z9", enc));
        assert!(is_entry(format!("{h}.long").as_bytes(), enc));
        assert!(is_entry(b"abc.sync-conflict-20261125-101010-ABCDEFG", enc));
        for own in [
            "coffer.conf".to_string(),
            "coffer.epochs".into(),
            "coffer.diriv".into(),
            format!("{h}.name"),
            "abc.link".into(),
            ".coffer-tmp-123".into(),
            ".DS_Store".into(),
            "notes.txt".into(),
        ] {
            assert!(!is_entry(own.as_bytes(), enc), "{own}");
        }
    }
}
