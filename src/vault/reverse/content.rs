//! File contents in reverse mode: the cipher bytes of a plain file, sealed on demand.
//!
//! Layout exactly as forward mode (`header | block 0 | block 1 | ...`, blocks framed and sealed
//! by the same codec, [`super::super::codec`], final flag on the last block, an empty file is
//! the header alone). No holes: zero blocks are sealed like any other. The header's file ID is the path PRF; each block's nonce is the nonce PRF over
//! (file ID, block number, final flag, the whole plaintext block).
//!
//! A file is served as it is at open, whatever the kernel was told at lookup. It is frozen at
//! open where that is cheap ([`super::frozen`]): a small file is read whole, a larger one gets
//! a reflink copy where the plain filesystem makes them (btrfs, xfs). Elsewhere it is read live: a read maps its cipher range to the plaintext
//! blocks it needs, reads only those, then checks that the plain file still has the size,
//! mtime and ctime it had at open; if not, the read fails with [`VaultError::Changed`] (EIO)
//! so a copy never mixes two versions of a file.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::crypto::ContentKey;
use crate::format::header::{FileHeader, FILE_V1, HEADER_LEN};
use crate::format::offsets::{self, block_count, BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};

use super::super::backing::{self, DirFd};
use super::super::codec::BlockCodec;
use super::super::error::{IoContext, Result, VaultError};
use super::super::keys::VaultKeys;
use super::frozen;
use super::listing::{set_size, RDir};
use super::prf::Prf;
use super::{join_rel, rel_path, ReverseVault};

/// Sealed blocks kept per open file (a read that ends mid-block is usually followed by one
/// that starts in the same block).
const CACHE_BLOCKS: usize = 4;
/// Reads of at least this many blocks are sealed on two threads.
const PARALLEL_MIN_BLOCKS: u64 = 16;

/// What must not change while a file is read: identity, size, mtime and ctime. `size` is
/// the cipher size (a bijection of the plain size).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    /// st_dev of the plain file.
    pub dev: u64,
    /// st_ino of the plain file.
    pub ino: u64,
    /// Cipher size.
    pub size: u64,
    /// mtime (s, ns).
    pub mtime: (i64, i64),
    /// ctime (s, ns).
    pub ctime: (i64, i64),
}

impl Snapshot {
    /// From a cipher-side stat (as [`ReverseVault::stat`] returns it).
    pub fn of_cipher(st: &libc::stat) -> Self {
        Snapshot {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }

    /// From the plain file's own stat.
    pub fn of_plain(st: &libc::stat) -> Self {
        Snapshot {
            size: offsets::cipher_size(st.st_size as u64),
            ..Snapshot::of_cipher(st)
        }
    }
}

/// Where the plaintext of an open file is read from.
#[derive(Debug)]
enum Source {
    /// The plain file itself (checked after each read).
    Live(File),
    /// Its reflink copy taken at open.
    Copy(File),
    /// Its whole content, read at open (small files).
    Memory(Vec<u8>),
}

/// One plain file opened for reading its cipher bytes.
#[derive(Debug)]
pub struct ReverseFile {
    source: Source,
    /// The cipher-side stat of the version served (times of the plain file, cipher size).
    stat: libc::stat,
    snap: Snapshot,
    /// `file`'s own stat at open, compared at each read (see [`same_content`]).
    check: libc::stat,
    plain_size: u64,
    header: [u8; HEADER_LEN],
    id: [u8; 16],
    keys: Arc<VaultKeys>,
    prf: Arc<Prf>,
    rel: PathBuf,
    cache: Mutex<Vec<(u64, Arc<Vec<u8>>)>>,
}

impl ReverseVault {
    /// Opens plain file `plain` of `dir` as it is now (frozen where the filesystem allows).
    pub fn open_file(&self, dir: &RDir, plain: &[u8]) -> Result<ReverseFile> {
        let rel = join_rel(&dir.rel, plain);
        let path = rel_path(&rel);
        // Checked before opening: an open of a FIFO without a writer would block (G31).
        let pre = dir.fd.stat(plain).at(&path)?;
        if pre.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(VaultError::errno_at(path, libc::EINVAL));
        }
        let live = dir.fd.open_file(plain, false, None).at(&path)?;
        let st = backing::fstat(live.as_raw_fd()).at(&path)?;
        if st.st_mode & libc::S_IFMT != libc::S_IFREG {
            return Err(VaultError::errno_at(path, libc::EINVAL));
        }
        let (source, mut stat, check) = self.freeze(&dir.fd, live, st, &path)?;
        let plain_size = stat.st_size as u64;
        set_size(&mut stat, offsets::cipher_size(plain_size));
        let id = self.prf().file_id(&rel);
        Ok(ReverseFile {
            source,
            stat,
            snap: Snapshot::of_cipher(&stat),
            check,
            plain_size,
            // Version 1: nonces are derived, and a read-only view has no write sessions.
            header: FileHeader {
                version: FILE_V1,
                file_id: id,
            }
            .encode(),
            id,
            keys: self.vault_keys().clone(),
            prf: self.prf().clone(),
            rel: path,
            cache: Mutex::new(Vec::with_capacity(CACHE_BLOCKS)),
        })
    }
}

/// Whether a plain file (stat `now` of the descriptor opened when it was `at_open`) still
/// holds the content it had then: same size and mtime, and the same ctime unless the link
/// count moved with it. ctime catches an in-place edit whose mtime was put back (`touch -r`,
/// `cp -p`); a rename over the file or its unlink (an editor saving a new version) sets ctime
/// and changes the link count, without touching the content being read.
pub fn same_content(at_open: &libc::stat, now: &libc::stat) -> bool {
    let times = |st: &libc::stat| (st.st_size, st.st_mtime, st.st_mtime_nsec);
    let ctime = |st: &libc::stat| (st.st_ctime, st.st_ctime_nsec);
    times(at_open) == times(now) && (ctime(at_open) == ctime(now) || at_open.st_nlink != now.st_nlink)
}

impl ReverseVault {
    /// Freezes `live` (stat `st`) where possible: read whole when small, else a reflink copy.
    /// Returns the source, the plain-side stat of the version served, and the stat its reads
    /// are checked against.
    fn freeze(&self, dir: &DirFd, live: File, st: libc::stat, path: &Path) -> Result<(Source, libc::stat, libc::stat)> {
        // An empty file is the header alone: nothing to freeze.
        if st.st_size == 0 {
            return Ok((Source::Live(live), st, st));
        }
        if st.st_size as u64 <= frozen::MEMORY_MAX {
            if let Some((data, at)) = frozen::read_whole(&live, &st, path)? {
                return Ok((Source::Memory(data), at, at));
            }
        }
        match self.reflinks.freeze(dir, &live, &st, path)? {
            Some(f) => {
                let own = backing::fstat(f.file.as_raw_fd()).at(path)?;
                let mut stat = f.before;
                stat.st_size = own.st_size;
                Ok((Source::Copy(f.file), stat, own))
            }
            None => Ok((Source::Live(live), st, st)),
        }
    }
}

fn changed(path: PathBuf) -> VaultError {
    VaultError::Changed { path }
}

impl ReverseFile {
    /// The snapshot taken at open (of the version served).
    pub fn snapshot(&self) -> Snapshot {
        self.snap
    }

    /// The cipher-side stat of the version served: the plain file's stat at open, with the
    /// cipher size.
    pub fn stat(&self) -> libc::stat {
        self.stat
    }

    /// Whether reads come from a version frozen at open (a reflink copy, or the content read
    /// whole) rather than from the live plain file.
    pub fn is_frozen(&self) -> bool {
        !matches!(self.source, Source::Live(_))
    }

    /// The cipher size.
    pub fn cipher_len(&self) -> u64 {
        self.snap.size
    }

    /// The file ID (from the path).
    pub fn file_id(&self) -> [u8; 16] {
        self.id
    }

    fn check_unchanged(&self) -> Result<()> {
        let file = match &self.source {
            Source::Live(f) | Source::Copy(f) => f,
            Source::Memory(_) => return Ok(()),
        };
        let st = backing::fstat(file.as_raw_fd()).at(&self.rel)?;
        if !same_content(&self.check, &st) {
            return Err(changed(self.rel.clone()));
        }
        Ok(())
    }

    fn cached(&self, b: u64) -> Option<Arc<Vec<u8>>> {
        let c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        c.iter().find(|(n, _)| *n == b).map(|(_, v)| v.clone())
    }

    fn remember(&self, b: u64, sealed: Arc<Vec<u8>>) {
        let mut c = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if c.iter().any(|(n, _)| *n == b) {
            return;
        }
        if c.len() >= CACHE_BLOCKS {
            c.remove(0);
        }
        c.push((b, sealed));
    }

    /// Seals block `b` (`plain` is its whole plaintext) with the nonce PRF's nonce over it and
    /// appends `nonce | ct | tag` to `out`.
    fn seal(&self, b: u64, plain: &[u8], out: &mut Vec<u8>) {
        let b = BlockNo(b);
        let is_final = b.0 + 1 == block_count(self.plain_size);
        let nonce = self.prf.block_nonce(&self.id, b, is_final, plain);
        let key = match &self.keys.newest().set.content {
            ContentKey::Shared(c) => c,
            // ReverseVault derives its one key set with `KeySet::derive`, which shares a key.
            ContentKey::PerFile(_) => unreachable!("a reverse key set has one content key"),
        };
        BlockCodec::new(key, FILE_V1, self.id).seal_block(&nonce, b, is_final, plain, out);
    }

    /// Reads plaintext blocks `lo..=hi` (the last one may be short).
    fn read_plain(&self, lo: u64, hi: u64) -> Result<Vec<u8>> {
        let start = lo * PLAIN_BLOCK;
        let end = ((hi + 1) * PLAIN_BLOCK).min(self.plain_size);
        let file = match &self.source {
            Source::Live(f) | Source::Copy(f) => f,
            Source::Memory(m) => {
                let part = m.get(start as usize..end as usize);
                return part.map(<[u8]>::to_vec).ok_or_else(|| changed(self.rel.clone()));
            }
        };
        let mut buf = vec![0u8; (end - start) as usize];
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], start + done as u64) {
                Ok(0) => return Err(changed(self.rel.clone())),
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(VaultError::io(self.rel.clone(), e)),
            }
        }
        Ok(buf)
    }

    /// Seals blocks `lo..=hi` whose plaintext is `plain`, appending them to `out`.
    fn seal_range(&self, lo: u64, plain: &[u8], out: &mut Vec<u8>) {
        let n = plain.len().div_ceil(PLAIN_BLOCK as usize) as u64;
        if n >= PARALLEL_MIN_BLOCKS {
            let half = (n / 2) as usize * PLAIN_BLOCK as usize;
            let (a, b) = plain.split_at(half);
            let mut second = Vec::with_capacity(b.len() + (n as usize) * 32);
            std::thread::scope(|s| {
                s.spawn(|| self.seal_serial(lo + n / 2, b, &mut second));
                self.seal_serial(lo, a, out);
            });
            out.extend_from_slice(&second);
        } else {
            self.seal_serial(lo, plain, out);
        }
    }

    fn seal_serial(&self, lo: u64, plain: &[u8], out: &mut Vec<u8>) {
        for (i, chunk) in plain.chunks(PLAIN_BLOCK as usize).enumerate() {
            self.seal(lo + i as u64, chunk, out);
        }
    }

    /// Cipher bytes `[cipher_off, cipher_off + len)` (shorter at the end of the file).
    pub fn read_at(&self, cipher_off: u64, len: usize) -> Result<Vec<u8>> {
        let total = self.snap.size;
        if cipher_off >= total || len == 0 {
            return Ok(Vec::new());
        }
        let end = cipher_off.saturating_add(len as u64).min(total);
        let mut out = Vec::with_capacity((end - cipher_off) as usize);
        let h = HEADER_LEN as u64;
        if cipher_off < h {
            out.extend_from_slice(&self.header[cipher_off as usize..end.min(h) as usize]);
        }
        if end <= h {
            return Ok(out);
        }
        let body_off = cipher_off.max(h) - h;
        let body_end = end - h;
        let first = body_off / CIPHER_BLOCK;
        let last = (body_end - 1) / CIPHER_BLOCK;
        let head = self.cached(first);
        let tail = if last > first { self.cached(last) } else { None };
        let lo = first + u64::from(head.is_some());
        let hi = if tail.is_some() { last - 1 } else { last };
        // Blocks first..=last sealed, starting at body offset first * CIPHER_BLOCK.
        let mut sealed = Vec::with_capacity(((last - first + 1) * CIPHER_BLOCK) as usize);
        if let Some(hb) = &head {
            sealed.extend_from_slice(hb);
        }
        if lo <= hi {
            let plain = self.read_plain(lo, hi)?;
            self.check_unchanged()?;
            self.seal_range(lo, &plain, &mut sealed);
        } else {
            self.check_unchanged()?;
        }
        if let Some(tb) = &tail {
            sealed.extend_from_slice(tb);
        }
        let base = first * CIPHER_BLOCK;
        let from = (body_off - base) as usize;
        let to = ((body_end - base) as usize).min(sealed.len());
        out.extend_from_slice(&sealed[from..to]);
        // Keep the boundary blocks: the next sequential read starts in the last one.
        let block_at = |b: u64| {
            let s = ((b - first) * CIPHER_BLOCK) as usize;
            let e = (s + CIPHER_BLOCK as usize).min(sealed.len());
            Arc::new(sealed[s..e].to_vec())
        };
        if tail.is_none() && body_end < ((last + 1) * CIPHER_BLOCK).min(total - h) {
            self.remember(last, block_at(last));
        }
        if head.is_none() && body_off > first * CIPHER_BLOCK {
            self.remember(first, block_at(first));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vault::reverse::listing::tests::setup;
    use crate::vault::CryptFile;

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Reads the whole cipher file in `chunk`-byte reads.
    fn cipher_of(f: &ReverseFile, chunk: usize) -> Vec<u8> {
        let mut out = Vec::new();
        loop {
            let part = f.read_at(out.len() as u64, chunk).unwrap();
            if part.is_empty() {
                return out;
            }
            out.extend_from_slice(&part);
        }
    }

    #[test]
    fn content_changes_are_told_from_renames_and_unlinks() {
        // SAFETY: an all-zero stat is a valid value.
        let mut open: libc::stat = unsafe { std::mem::zeroed() };
        (open.st_size, open.st_mtime, open.st_ctime, open.st_nlink) = (100, 5, 5, 1);
        let with = |f: &dyn Fn(&mut libc::stat)| {
            let mut st = open;
            f(&mut st);
            same_content(&open, &st)
        };
        assert!(with(&|_| {}));
        assert!(!with(&|st| st.st_size = 101), "size");
        assert!(!with(&|st| st.st_mtime_nsec = 1), "mtime");
        assert!(!with(&|st| st.st_ctime = 6), "ctime alone: edit with mtime put back");
        assert!(
            with(&|st| (st.st_ctime, st.st_nlink) = (6, 0)),
            "unlinked or renamed over"
        );
        assert!(
            !with(&|st| (st.st_ctime, st.st_nlink, st.st_mtime) = (6, 0, 6)),
            "written after unlink"
        );
    }

    #[test]
    fn forward_reads_what_reverse_seals() {
        let sizes = [0usize, 1, 4095, 4096, 4097, 8192, 70_000, 200_000];
        let files: Vec<(Vec<u8>, Vec<u8>)> = sizes
            .iter()
            .map(|&n| (format!("f{n}").into_bytes(), pattern(n)))
            .collect();
        let refs: Vec<(&[u8], &[u8])> = files.iter().map(|(a, b)| (a.as_slice(), b.as_slice())).collect();
        let (_tmp, v) = setup(&refs, &[]);
        let root = v.root_dir().unwrap();
        let out = tempfile::tempdir().unwrap();
        for (name, data) in &files {
            let f = v.open_file(&root, name).unwrap();
            let whole = cipher_of(&f, 1 << 20);
            assert_eq!(whole.len() as u64, offsets::cipher_size(data.len() as u64));
            // Odd read sizes give the same bytes (cache and block boundaries).
            for chunk in [1usize, 17, 4128, 4129, 131072] {
                if data.len() < 100_000 || chunk > 4000 {
                    assert_eq!(
                        cipher_of(&f, chunk),
                        whole,
                        "{} chunk {chunk}",
                        String::from_utf8_lossy(name)
                    );
                }
            }
            // A second open gives identical bytes.
            assert_eq!(cipher_of(&v.open_file(&root, name).unwrap(), 65536), whole);
            // The forward reader opens it with the same (reverse) key set.
            let p = out
                .path()
                .join(std::ffi::OsStr::new(std::str::from_utf8(name).unwrap()));
            std::fs::write(&p, &whole).unwrap();
            let cf = CryptFile::new(
                std::fs::File::open(&p).unwrap(),
                v.vault_keys().clone(),
                p.clone(),
                FILE_V1,
            );
            let mut back = vec![0u8; data.len() + 10];
            let mut got = 0;
            while got < data.len() {
                let n = cf.read_at(&mut back[got..], got as u64).unwrap();
                assert!(n > 0);
                got += n;
            }
            assert_eq!(&back[..got], &data[..]);
        }
    }

    #[test]
    fn only_the_edited_block_changes_and_a_change_mid_read_is_reported() {
        // Past frozen::MEMORY_MAX, so that on ext4 it is read live.
        let data = pattern(20 * 4096 + 100);
        let (tmp, v) = setup(&[(b"f", &data)], &[]);
        let root = v.root_dir().unwrap();
        let before = cipher_of(&v.open_file(&root, b"f").unwrap(), 1 << 20);
        let mut edited = data.clone();
        edited[2 * 4096 + 5] ^= 1;
        let f = v.open_file(&root, b"f").unwrap();
        let first = f.read_at(0, 100).unwrap();
        std::fs::write(tmp.path().join("f"), &edited).unwrap();
        if f.is_frozen() {
            // A temp dir on btrfs or xfs: the version at open, from its copy.
            assert_eq!(f.read_at(100, 100).unwrap(), before[100..200]);
        } else {
            let err = f.read_at(100, 100).unwrap_err();
            assert!(err.is_changed(), "{err:?}");
            assert_eq!(err.errno(), libc::EIO, "{err}");
        }
        assert_eq!(first, before[..100]);
        let after = cipher_of(&v.open_file(&root, b"f").unwrap(), 1 << 20);
        let blk = |c: &[u8], b: usize| c[18 + b * 4128..(18 + (b + 1) * 4128).min(c.len())].to_vec();
        for b in 0..21 {
            assert_eq!(blk(&before, b) == blk(&after, b), b != 2, "block {b}");
        }
    }
}
