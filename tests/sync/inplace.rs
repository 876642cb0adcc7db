//! G33 (FORMAT.md §5.8): versions of ONE coffer file (same file ID) rewritten in place under a
//! live mount, as rsync --inplace does. With `block_sessions` a read returns one whole version or
//! fails, never blocks of two versions; without it (the controls) mixed reads are seen, which
//! shows the tests can fail. Library tests pin the same rule on hand-made mixes, without FUSE.
//! The vaults are of config version 1, whose files (header versions 1 and 2) carry the write
//! session in clear; the same rules under header version 3, whose sessions are masked, are
//! tested in tests/vault/sessions.rs.

use crate::support::common;
use crate::support::sync as sync_util;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use coffer::format::config::{VaultParams, FLAG_BLOCK_SESSIONS};
use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::{BlockNo, CIPHER_BLOCK, PLAIN_BLOCK};
use coffer::format::session::session_of;
use coffer::format::CONFIG_V1;
use coffer::vault::{unlock, KdfCost, Vault, VaultError};

use common::{require_tool, PASSWORD};
use sync_util::{Backing, Mounted};

/// Full blocks of the file.
const BLOCKS: usize = 16;
const BLOCK: usize = PLAIN_BLOCK as usize;
/// 64 KiB: one O_DIRECT read of it is one FUSE request (checked with the kernel's
/// fuse_request_send tracepoint: as many FUSE_READs as reads).
const PLAIN_LEN: usize = BLOCKS * BLOCK;
/// Versions after version 0 for the rewriter below.
const VERSIONS: u8 = 50;
/// Bytes per write of the in-place rewriter: a quarter of a cipher block, ~1000 bytes. Three of
/// four chunk ends tear a block (it fails authentication until the next chunk); every fourth
/// ends on a block boundary, leaving whole blocks of two versions: the state a client leaves
/// between two writes whose boundaries meet block boundaries (rsync, which skips unchanged
/// ranges, does that: see the rsync tests). With chunk ends only inside blocks, no state of the
/// file would mix versions without a torn block, and the control could not see a mix.
const CHUNK: usize = CIPHER_BLOCK as usize / 4;
/// Pause between two chunk writes of the rewriter.
const CHUNK_PAUSE: Duration = Duration::from_micros(200);
/// Pause between two versions.
const VERSION_PAUSE: Duration = Duration::from_millis(10);

/// The byte that fills the blocks version `k` wrote (never 0).
fn fill(k: u8) -> u8 {
    k + 1
}

/// How each version is written through the mount (one open/write/close: one write session).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    /// The whole file in one write.
    Whole,
    /// Two blocks apart, neither the last (rsync then writes each changed run with one write:
    /// these two, and in version-2 files the resealed last block).
    Partial,
}

/// Plaintext blocks version `k` (>= 1) writes.
fn written_blocks(kind: Kind, k: u8) -> Vec<usize> {
    let k = usize::from(k);
    match kind {
        Kind::Whole => (0..BLOCKS).collect(),
        Kind::Partial => vec![(k * 3) % 7, 8 + (k * 5) % 7],
    }
}

/// Plaintext of versions 0..=count: version 0 all `fill(0)`; version k the one before with the
/// blocks it writes filled with `fill(k)`.
fn plaintexts(kind: Kind, count: u8) -> Vec<Vec<u8>> {
    let mut v = vec![vec![fill(0); PLAIN_LEN]];
    for k in 1..=count {
        let mut p = v[usize::from(k) - 1].clone();
        for b in written_blocks(kind, k) {
            p[b * BLOCK..(b + 1) * BLOCK].fill(fill(k));
        }
        v.push(p);
    }
    v
}

/// Which version `data` is exactly; else what it holds, block by block (the version whose fill
/// each block has; `a/b` for a block that is not one fill).
fn which_version(data: &[u8], plains: &[Vec<u8>]) -> Result<u8, String> {
    if let Some(k) = plains.iter().position(|p| p == data) {
        return Ok(k as u8);
    }
    let blocks: Vec<String> = data
        .chunks(BLOCK)
        .map(|b| match b.iter().all(|&x| x == b[0]) {
            true => format!("{}", b[0].wrapping_sub(1)),
            false => format!("{}/{}", b[0].wrapping_sub(1), b[b.len() - 1].wrapping_sub(1)),
        })
        .collect();
    Err(format!("{} bytes, fills by block [{}]", data.len(), blocks.join(" ")))
}

/// Vault parameters with or without `block_sessions`.
fn params(sessions: bool) -> VaultParams {
    let mut p = VaultParams::default();
    if !sessions {
        p.feature_flags.retain(|f| f != FLAG_BLOCK_SESSIONS);
    }
    p
}

/// Makes a vault of config version 1 in `dir`, with or without `block_sessions`.
fn init_v1(dir: &Path, sessions: bool) {
    unlock::init_version(
        dir,
        None,
        PASSWORD,
        &params(sessions),
        KdfCost::INSECURE_TEST,
        CONFIG_V1,
    )
    .unwrap();
}

/// The write session in the nonce of block `b` of backing bytes (version-2 files).
fn session(backing: &[u8], b: usize) -> u32 {
    let off = BlockNo(b as u64).cipher_off() as usize;
    session_of(backing[off..off + 16].try_into().unwrap())
}

/// Byte ranges where `to` differs from `from` (gaps under 64 equal bytes are written anyway,
/// as rsync writes a literal run whole), ascending.
fn differing_ranges(from: &[u8], to: &[u8]) -> Vec<(usize, usize)> {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for i in (0..to.len()).filter(|&i| from.get(i) != Some(&to[i])) {
        match ranges.last_mut() {
            Some(r) if i - r.1 < 64 => r.1 = i + 1,
            _ => ranges.push((i, i + 1)),
        }
    }
    ranges
}

/// Rewrites the backing file `path` from `from` to `to` in place as rsync --inplace does: the
/// existing file opened without truncation, only differing ranges written, ascending, in
/// `CHUNK`-byte writes with a pause after each; the length set at the end.
fn rewrite_in_place(path: &Path, from: &[u8], to: &[u8]) {
    let f = fs::OpenOptions::new().write(true).open(path).unwrap();
    for (start, end) in differing_ranges(from, to) {
        let mut pos = start;
        while pos < end {
            let next = (pos + CHUNK).min(end);
            f.write_all_at(&to[pos..next], pos as u64).unwrap();
            pos = next;
            std::thread::sleep(CHUNK_PAUSE);
        }
    }
    if from.len() != to.len() {
        f.set_len(to.len() as u64).unwrap();
    }
}

/// Reads the whole plaintext file in ONE read request: O_DIRECT bypasses the page cache, so the
/// kernel sends the read to coffer as it is (64 KiB fits one FUSE request), and coffer reads
/// the backing blocks with one pread. A fresh open each time: a new handle knows nothing.
fn read_direct(path: &Path) -> std::io::Result<Vec<u8>> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)?;
    let mut raw = vec![0u8; PLAIN_LEN + 4096];
    let start = raw.as_ptr().align_offset(4096);
    let buf = &mut raw[start..start + PLAIN_LEN];
    let n = f.read_at(buf, 0)?;
    Ok(buf[..n].to_vec())
}

/// What the reader saw.
#[derive(Debug, Default)]
struct Seen {
    reads: u32,
    versions: BTreeSet<u8>,
    mixed: u32,
    mixed_examples: Vec<String>,
    /// errno -> count.
    errors: BTreeMap<i32, u32>,
    slowest: Duration,
}

impl Seen {
    fn eio(&self) -> u32 {
        self.errors.get(&libc::EIO).copied().unwrap_or(0)
    }

    /// Errors other than EIO (none expected).
    fn other_errors(&self) -> Vec<i32> {
        self.errors.keys().copied().filter(|&e| e != libc::EIO).collect()
    }
}

/// Reads `path` with [`read_direct`] in a loop until `stop`.
fn reader(path: PathBuf, plains: Vec<Vec<u8>>, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<Seen> {
    std::thread::spawn(move || {
        let mut seen = Seen::default();
        while !stop.load(Ordering::Relaxed) {
            let t = Instant::now();
            let r = read_direct(&path);
            seen.slowest = seen.slowest.max(t.elapsed());
            seen.reads += 1;
            match r.as_deref().map(|d| which_version(d, &plains)) {
                Ok(Ok(k)) => {
                    seen.versions.insert(k);
                }
                Ok(Err(what)) => {
                    seen.mixed += 1;
                    if seen.mixed_examples.len() < 5 {
                        seen.mixed_examples.push(what);
                    }
                }
                Err(e) => *seen.errors.entry(e.raw_os_error().unwrap_or(-1)).or_default() += 1,
            }
        }
        seen
    })
}

/// A vault holding one file, "hot", whose backing versions 0..=count were written through a
/// mount (same file ID), with version 0 put back in CIPHERDIR.
struct Versions {
    work: tempfile::TempDir,
    cipher: PathBuf,
    /// The backing file of "hot".
    backing: PathBuf,
    /// Plaintext of each version.
    plains: Vec<Vec<u8>>,
    /// Backing bytes of each version.
    bytes: Vec<Vec<u8>>,
}

fn make_versions(sessions: bool, kind: Kind, count: u8) -> Versions {
    let work = tempfile::Builder::new().prefix("coffer-inplace-").tempdir().unwrap();
    let cipher = work.path().join("cipher");
    fs::create_dir(&cipher).unwrap();
    init_v1(&cipher, sessions);
    let b = Backing::open(&cipher);
    assert_eq!(b.vault.params().has_flag(FLAG_BLOCK_SESSIONS), sessions);
    let plains = plaintexts(kind, count);
    let m = Mounted::start(tempfile::tempdir().unwrap(), cipher.clone());
    let plain = m.mnt.join("hot");
    fs::write(&plain, &plains[0]).unwrap();
    let backing = b.path("", "hot");
    let mut bytes = vec![fs::read(&backing).unwrap()];
    for k in 1..=count {
        let f = fs::OpenOptions::new().write(true).open(&plain).unwrap();
        match kind {
            Kind::Whole => f.write_all_at(&plains[usize::from(k)], 0).unwrap(),
            Kind::Partial => {
                for b in written_blocks(kind, k) {
                    f.write_all_at(&[fill(k); BLOCK], (b * BLOCK) as u64).unwrap();
                }
            }
        }
        if k % 2 == 0 {
            f.sync_all().unwrap();
        }
        drop(f);
        bytes.push(fs::read(&backing).unwrap());
    }
    assert!(fs::read(&plain).unwrap() == plains[usize::from(count)]);
    drop(m);

    let want_len = HEADER_LEN + BLOCKS * CIPHER_BLOCK as usize;
    let header_version = if sessions { 2 } else { 1 };
    for (k, v) in bytes.iter().enumerate() {
        assert_eq!(v.len(), want_len, "version {k}: backing length");
        assert_eq!(
            v[..HEADER_LEN],
            bytes[0][..HEADER_LEN],
            "version {k}: another header (file ID)"
        );
        assert_eq!(v[..2], [0, header_version], "version {k}: header version");
    }
    if sessions {
        // Each open/write/close was one write session, above the one before; no block is
        // newer than the last block, and the blocks a version wrote carry its session.
        let last: Vec<u32> = bytes.iter().map(|v| session(v, BLOCKS - 1)).collect();
        for (k, v) in bytes.iter().enumerate().skip(1) {
            let all: Vec<u32> = (0..BLOCKS).map(|b| session(v, b)).collect();
            assert!(all.iter().all(|&s| s <= last[k]), "version {k}: sessions {all:?}");
            for b in written_blocks(kind, k as u8) {
                assert_eq!(all[b], last[k], "version {k}: block {b} of sessions {all:?}");
            }
        }
        assert!(last.windows(2).all(|w| w[0] < w[1]), "sessions do not rise: {last:?}");
    }
    fs::write(&backing, &bytes[0]).unwrap();
    Versions {
        work,
        cipher,
        backing,
        plains,
        bytes,
    }
}

/// Mounts `v`'s vault, runs a reader of "hot" while `rewrite(k)` brings the backing file from
/// version k-1 to version k in place for k in 1..=`last`, and returns what the reader saw.
/// Checks that O_DIRECT is in force before, and that the mount reads version `last` after.
fn rewrite_under_reader(v: &Versions, last: u8, mut rewrite: impl FnMut(u8)) -> Seen {
    let m = Mounted::start(tempfile::tempdir().unwrap(), v.cipher.clone());
    let plain = m.mnt.join("hot");
    {
        let f = fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECT)
            .open(&plain)
            .expect("O_DIRECT open on the coffer mount");
        // SAFETY: fcntl on an open descriptor.
        let flags = unsafe { libc::fcntl(std::os::fd::AsRawFd::as_raw_fd(&f), libc::F_GETFL) };
        assert!(flags & libc::O_DIRECT != 0, "O_DIRECT was dropped: flags {flags:#o}");
    }
    assert_eq!(which_version(&read_direct(&plain).unwrap(), &v.plains), Ok(0));
    let ino = fs::metadata(&v.backing).unwrap().ino();

    let stop = Arc::new(AtomicBool::new(false));
    let r = reader(plain.clone(), v.plains.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    for k in 1..=last {
        rewrite(k);
        std::thread::sleep(VERSION_PAUSE);
    }
    let took = t.elapsed();
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let seen = r.join().unwrap();
    eprintln!(
        "{last} in-place rewrites in {took:?}: {} reads, {} versions seen, {} mixed, errors {:?}, slowest read {:?}",
        seen.reads,
        seen.versions.len(),
        seen.mixed,
        seen.errors,
        seen.slowest
    );
    for e in &seen.mixed_examples {
        eprintln!("  mixed read: {e}");
    }

    assert_eq!(
        fs::metadata(&v.backing).unwrap().ino(),
        ino,
        "the backing file was replaced, not rewritten in place"
    );
    assert!(
        fs::read(&v.backing).unwrap() == v.bytes[usize::from(last)],
        "the backing file is not version {last}"
    );
    assert_eq!(which_version(&read_direct(&plain).unwrap(), &v.plains), Ok(last));
    assert!(
        fs::read(&plain).unwrap() == v.plains[usize::from(last)],
        "buffered read"
    );
    seen
}

/// Versions 1..=VERSIONS, each the whole file, applied by [`rewrite_in_place`].
fn whole_rewrites(sessions: bool) -> Seen {
    let v = make_versions(sessions, Kind::Whole, VERSIONS);
    rewrite_under_reader(&v, VERSIONS, |k| {
        rewrite_in_place(&v.backing, &v.bytes[usize::from(k) - 1], &v.bytes[usize::from(k)]);
    })
}

#[test]
fn block_sessions_inplace_rewrites_never_read_mixed() {
    if !common::fuse_available() {
        return;
    }
    let seen = whole_rewrites(true);
    assert_eq!(seen.mixed, 0, "reads mixed two versions: {:?}", seen.mixed_examples);
    assert!(
        seen.versions.len() >= 5,
        "the reader saw too few versions to have run during the rewrites: {:?}",
        seen.versions
    );
    assert!(seen.reads >= 100, "too few reads: {}", seen.reads);
    assert!(
        seen.other_errors().is_empty(),
        "errors other than EIO: {:?}",
        seen.errors
    );
    // Reads wait for the rewrite to reach the last block instead of failing, also when they
    // catch a block half written (it fails authentication until the next chunk lands).
    assert_eq!(
        seen.eio(),
        0,
        "{} of {} reads failed with EIO during in-place rewrites instead of waiting",
        seen.eio(),
        seen.reads
    );
}

/// The control: the same rewrites in a vault without `block_sessions` (header version 1) give
/// reads that mix versions. Without it the test above could pass for lack of any mix.
#[test]
fn without_block_sessions_inplace_rewrites_read_mixed() {
    if !common::fuse_available() {
        return;
    }
    let mut mixed = 0;
    for attempt in 1..=3 {
        let seen = whole_rewrites(false);
        eprintln!("control attempt {attempt}: {} mixed reads", seen.mixed);
        mixed += seen.mixed;
        if mixed > 0 {
            break;
        }
    }
    assert!(
        mixed > 0,
        "no mixed read in a vault without block_sessions: the test cannot see a mix"
    );
}

/// Real rsync --inplace (delta transfer, rate-limited) of saved backing versions onto the live
/// backing file. Each version changed two blocks; rsync skips the unchanged ranges (lseek) and
/// writes each changed run in one write, with the rate limit's pause (~100 ms) between runs.
/// (A whole-file change of a 64 KiB file would land in ONE write: rsync buffers 256 KiB, so
/// the reader would see no intermediate state.)
fn rsync_rewrites(sessions: bool) -> Seen {
    require_tool("rsync");
    const LAST: u8 = 6;
    let v = make_versions(sessions, Kind::Partial, LAST);
    let saved = v.work.path().join("saved");
    fs::create_dir(&saved).unwrap();
    for (k, bytes) in v.bytes.iter().enumerate() {
        fs::write(saved.join(format!("v{k}")), bytes).unwrap();
    }
    let target = v.backing.to_str().unwrap().to_string();
    rewrite_under_reader(&v, LAST, |k| {
        let src = saved.join(format!("v{k}"));
        common::run(
            &saved,
            "rsync",
            &[
                "--inplace",
                "--no-whole-file",
                "--ignore-times",
                "--bwlimit=64",
                src.to_str().unwrap(),
                &target,
            ],
        );
    })
}

#[test]
fn real_rsync_inplace_never_reads_mixed() {
    if !common::fuse_available() {
        return;
    }
    let seen = rsync_rewrites(true);
    assert_eq!(seen.mixed, 0, "reads mixed two versions: {:?}", seen.mixed_examples);
    assert!(seen.versions.len() >= 3, "versions seen: {:?}", seen.versions);
    assert!(
        seen.other_errors().is_empty(),
        "errors other than EIO: {:?}",
        seen.errors
    );
    assert_eq!(seen.eio(), 0, "reads failed with EIO instead of waiting for rsync");
}

/// The control for real rsync: a version-1 file is read mixed between rsync's writes.
#[test]
fn without_block_sessions_real_rsync_reads_mixed() {
    if !common::fuse_available() {
        return;
    }
    let seen = rsync_rewrites(false);
    assert!(
        seen.mixed > 0,
        "no mixed read of a version-1 file under rsync --inplace"
    );
}

/// A vault (library only) with one file "f" written as version 0 by one handle, then as
/// version 1 by another (same file ID, a later write session); backing bytes of both.
struct LibFile {
    _tmp: tempfile::TempDir,
    vault: Vault,
    backing: PathBuf,
    v0: Vec<u8>,
    v1: Vec<u8>,
}

fn lib_file(sessions: bool) -> LibFile {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    init_v1(&dir, sessions);
    let vault = Vault::unlock(&dir, None, PASSWORD, false).unwrap();
    let root = vault.root_dir().unwrap();
    let (f, name) = vault.create_file(&root, b"f", 0o600).unwrap();
    f.write_at(&[fill(0); PLAIN_LEN], 0).unwrap();
    drop(f);
    let backing = dir.join(&root.rel).join(std::ffi::OsStr::from_bytes(&name.entry));
    let v0 = fs::read(&backing).unwrap();
    let f = vault.open_file(&root, &name.entry, true).unwrap();
    f.write_at(&[fill(1); PLAIN_LEN], 0).unwrap();
    drop(f);
    let v1 = fs::read(&backing).unwrap();
    assert_eq!(v0[..HEADER_LEN], v1[..HEADER_LEN], "same file ID");
    assert_eq!(v0[..2], [0, if sessions { 2 } else { 1 }]);
    if sessions {
        let (s0, s1) = (session(&v0, 0), session(&v1, 0));
        assert!(s1 > s0, "version 1's session {s1} is not above version 0's {s0}");
        for b in 0..BLOCKS {
            assert_eq!((session(&v0, b), session(&v1, b)), (s0, s1), "block {b}");
        }
    }
    LibFile {
        _tmp: tmp,
        vault,
        backing,
        v0,
        v1,
    }
}

/// Backing bytes: blocks below `split` from `new`, the header and the rest from `old`.
fn mix(old: &[u8], new: &[u8], split: usize) -> Vec<u8> {
    let cut = BlockNo(split as u64).cipher_off() as usize;
    let mut m = old.to_vec();
    m[HEADER_LEN..cut].copy_from_slice(&new[HEADER_LEN..cut]);
    m
}

/// Reads `len` bytes at `off` of "f" through a new handle; returns the result and the time.
fn lib_read(l: &LibFile, off: usize, len: usize) -> (Result<Vec<u8>, VaultError>, Duration) {
    let f = l.vault.open_file_path(b"f").unwrap();
    let mut buf = vec![0u8; len];
    let t = Instant::now();
    let r = f.read_at(&mut buf, off as u64).map(|n| buf[..n].to_vec());
    (r, t.elapsed())
}

#[track_caller]
fn assert_eio(r: &Result<Vec<u8>, VaultError>) {
    assert!(
        r.as_ref().is_err_and(|e| e.is_corrupt() && e.errno() == libc::EIO),
        "{r:?}"
    );
}

#[test]
fn library_half_rewritten_file_fails_after_waiting() {
    let l = lib_file(true);
    let half = BLOCKS / 2;
    let half_done = mix(&l.v0, &l.v1, half);
    // Half of the blocks new, the rest (with the last block) old, just written: rsync is busy
    // half way. A read waits for the last block, up to 1 s, then fails.
    fs::write(&l.backing, &half_done).unwrap();
    let (r, t) = lib_read(&l, 0, PLAIN_LEN);
    match r {
        Err(ref e @ VaultError::Corrupt { block: Some(b), .. }) => {
            assert!(b < half as u64, "error names block {b}, not a new one: {e}");
            assert_eq!(e.errno(), libc::EIO);
            eprintln!("whole-file read failed after {t:?}: {e}");
        }
        other => panic!("a read of a half-rewritten file gave {other:?}"),
    }
    assert!(
        t >= Duration::from_millis(900),
        "failed after {t:?}, without waiting for the rewrite"
    );
    assert!(t < Duration::from_secs(5), "waited {t:?}");
    // Now unchanged for 1 s: a rewrite that stopped half way. Reads with new blocks fail at once.
    let (r, t) = lib_read(&l, 0, half * BLOCK);
    assert_eio(&r);
    assert!(t < Duration::from_millis(500), "took {t:?}");
    // Only old blocks: one version, read at once.
    let (r, t) = lib_read(&l, half * BLOCK, (BLOCKS - half) * BLOCK);
    assert_eq!(r.unwrap(), vec![fill(0); (BLOCKS - half) * BLOCK]);
    assert!(t < Duration::from_millis(500), "took {t:?}");
    let (r, _) = lib_read(&l, (BLOCKS - 1) * BLOCK, BLOCK);
    assert_eq!(r.unwrap(), vec![fill(0); BLOCK]);
    // Written again (busy again): a read of the new blocks alone waits too, then fails.
    fs::write(&l.backing, &half_done).unwrap();
    let (r, t) = lib_read(&l, 0, half * BLOCK);
    assert_eio(&r);
    assert!(t >= Duration::from_millis(900), "failed after {t:?}");

    // The rewrite reached the last block: version 1 whole, at once.
    fs::write(&l.backing, &l.v1).unwrap();
    let (r, t) = lib_read(&l, 0, PLAIN_LEN);
    assert!(r.unwrap() == [fill(1); PLAIN_LEN]);
    assert!(t < Duration::from_millis(500), "took {t:?}");
}

#[test]
fn library_rewrite_that_catches_up_is_read_whole() {
    // A read that finds a rewrite in progress waits; when the last block arrives within the
    // wait it returns the new version, not an error and not a mix.
    let l = lib_file(true);
    fs::write(&l.backing, mix(&l.v0, &l.v1, BLOCKS / 2)).unwrap();
    let f = l.vault.open_file_path(b"f").unwrap();
    let backing = l.backing.clone();
    let v1 = l.v1.clone();
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        fs::OpenOptions::new()
            .write(true)
            .open(&backing)
            .unwrap()
            .write_all_at(&v1[HEADER_LEN..], HEADER_LEN as u64)
            .unwrap();
    });
    let mut buf = vec![0u8; PLAIN_LEN];
    let t = Instant::now();
    let n = f.read_at(&mut buf, 0).unwrap();
    let t = t.elapsed();
    writer.join().unwrap();
    assert!(buf[..n] == [fill(1); PLAIN_LEN], "{:?}", which_version(&buf[..n], &[]));
    assert!(
        t >= Duration::from_millis(250) && t < Duration::from_secs(2),
        "read took {t:?}"
    );
}

/// Known limits, pinned: a version-1 file (vault without the flag) reads the same mix back as
/// data; and in any file a mix whose NEW blocks include the last block (a rewrite that runs
/// backwards, not rsync's ascending order) reads back mixed.
#[test]
fn library_known_limits_v1_files_and_backward_rewrites() {
    let half = BLOCKS / 2;
    let mut want = vec![fill(1); half * BLOCK];
    want.resize(PLAIN_LEN, fill(0));
    let l = lib_file(false);
    fs::write(&l.backing, mix(&l.v0, &l.v1, half)).unwrap();
    let (r, t) = lib_read(&l, 0, PLAIN_LEN);
    assert!(r.unwrap() == want, "version-1 file: the mix reads back as data");
    assert!(t < Duration::from_millis(500));

    let l = lib_file(true);
    // Old blocks first, new blocks (and the last) after: no block is above the last's.
    fs::write(&l.backing, mix(&l.v1, &l.v0, half)).unwrap();
    let (r, _) = lib_read(&l, 0, PLAIN_LEN);
    let mut want = vec![fill(0); half * BLOCK];
    want.resize(PLAIN_LEN, fill(1));
    assert!(
        r.unwrap() == want,
        "a backward rewrite is not detected (§5.8 covers ascending ones)"
    );
}
