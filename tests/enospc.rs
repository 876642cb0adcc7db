//! A full backing disk: CIPHERDIR on an 8 MiB tmpfs, filled through the mount. The writer gets
//! ENOSPC, the mount stays up, earlier files are intact, a file whose extension failed keeps
//! its old bytes (including its partial last block), and after deleting the filler fsck is
//! clean. A second test makes the backing write itself fail part way (RLIMIT_FSIZE, no
//! fallocate to catch it first) and checks the rollback. A third fills the disk through a
//! mount with the writeback cache: the error shows at fsync and close, never not at all.

mod support;

use support::{common, daemon, data};

use std::io::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use coffer::format::config::VaultParams;
use coffer::vault::{unlock, KdfCost, Vault};
use common::Scratch;
use daemon::{damaged, Daemon, PASSWORD};
use data::Rng;
use support::cli::{fsck_report, passfile};

fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}

/// Appends `data` and fsyncs. Returns how many bytes the writes took, and the error, if any:
/// on a full disk a write may take part of its bytes and fail on the rest (a short write, as
/// POSIX allows and local file systems do), so the model must add exactly what was taken.
fn append(p: &Path, data: &[u8]) -> (usize, std::io::Result<()>) {
    let mut f = match std::fs::OpenOptions::new().append(true).open(p) {
        Ok(f) => f,
        Err(e) => return (0, Err(e)),
    };
    let mut done = 0;
    while done < data.len() {
        match f.write(&data[done..]) {
            Ok(0) => return (done, Err(std::io::Error::from_raw_os_error(libc::ENOSPC))),
            Ok(n) => done += n,
            Err(e) => return (done, Err(e)),
        }
    }
    (done, f.sync_all())
}

/// A vault on a fresh 8 MiB tmpfs under `t`, mounted with `extra` options: the tmpfs (kept
/// while it lives), CIPHERDIR, the passfile and the running daemon.
fn small_disk_mount(t: &Path, extra: &[&str]) -> (Scratch, std::path::PathBuf, std::path::PathBuf, Daemon) {
    let fs_dir = t.join("small");
    let tmpfs = Scratch::mount(&fs_dir, "tmpfs", "size=8m,mode=0700");
    let cipher = fs_dir.join("cipher");
    let mnt = t.join("mnt");
    std::fs::create_dir(&cipher).unwrap();
    std::fs::create_dir(&mnt).unwrap();
    let pf = passfile(t, "pass", PASSWORD);
    daemon::init(&cipher, &pf);
    let d = Daemon::start_with(&cipher, &mnt, &pf, Duration::from_secs(90), extra);
    (tmpfs, cipher, pf, d)
}

/// fsck of `cipher` finds no damaged file but those in `writing` (the files being written
/// when the disk filled).
fn assert_only_damaged(cipher: &Path, pf: &Path, writing: &[&str]) {
    let (_, report) = fsck_report(cipher, pf, &[]);
    let bad = damaged(&report);
    assert!(
        bad.iter().all(|p| writing.contains(&p.as_str())),
        "only the files being written when the disk filled may be damaged: {report}"
    );
}

#[test]
fn full_backing_disk_gives_enospc_and_damages_nothing() {
    if !common::fuse_available() {
        return;
    }
    let seed = data::seed("COFFER_ENOSPC_SEED");
    let mut rng = Rng::new(seed);
    let t = tempfile::tempdir().unwrap();
    let (_tmpfs, cipher, pf, d) = small_disk_mount(t.path(), &[]);
    let m = |p: &str| d.mnt.join(p);

    // Files written before the disk fills up; "grow*" end in partial blocks.
    let mut kept = Vec::new();
    for (i, len) in [100_000usize, 4096, 1, 300_001].into_iter().enumerate() {
        let data = rng.bytes(len);
        std::fs::write(m(&format!("keep{i}")), &data).unwrap();
        kept.push((format!("keep{i}"), data));
    }
    let mut grow: Vec<(String, Vec<u8>)> = [5000usize, 4096 * 3 + 17, 4095]
        .iter()
        .enumerate()
        .map(|(i, &len)| {
            let data = rng.bytes(len);
            std::fs::write(m(&format!("grow{i}")), &data).unwrap();
            (format!("grow{i}"), data)
        })
        .collect();

    // Fill the disk through the mount.
    let mut filler = std::fs::File::create(m("filler")).unwrap();
    let chunk = rng.bytes(64 * 1024);
    let mut written = 0u64;
    let err = loop {
        match filler.write_all(&chunk).and_then(|()| filler.sync_data()) {
            Ok(()) => written += chunk.len() as u64,
            Err(e) => break e,
        }
        assert!(written < 64 << 20, "8 MiB tmpfs never filled up");
    };
    assert_eq!(errno(&err), libc::ENOSPC, "the writer gets ENOSPC: {err}");
    // Use up the last scraps with small writes too.
    let mut small_errors = 0;
    for _ in 0..200 {
        match filler.write_all(&chunk[..1000]).and_then(|()| filler.sync_data()) {
            Ok(()) => written += 1000,
            Err(e) => {
                assert_eq!(errno(&e), libc::ENOSPC, "{e}");
                small_errors += 1;
            }
        }
    }
    assert!(small_errors > 0);
    eprintln!("filled after {written} bytes");

    // Growing files on a full disk: each attempt fails with ENOSPC or succeeds; the file
    // always holds exactly its old bytes plus the successful appends.
    for round in 0..30 {
        let i = rng.below(grow.len() as u64) as usize;
        let (name, want) = &mut grow[i];
        let len = [1usize, 50, 4000, 4096, 9000, 70_000][rng.below(6) as usize];
        let mut more = rng.bytes(len);
        let (taken, r) = if round % 5 == 4 {
            // Growth by truncate (a sparse extension seals the new last block): all or nothing.
            let r = std::fs::OpenOptions::new()
                .write(true)
                .open(m(name))
                .and_then(|f| f.set_len((want.len() + len) as u64))
                .map(|()| more.iter_mut().for_each(|b| *b = 0));
            (if r.is_ok() { len } else { 0 }, r)
        } else {
            append(&m(name), &more)
        };
        want.extend_from_slice(&more[..taken]);
        if let Err(e) = r {
            assert_eq!(errno(&e), libc::ENOSPC, "{name}: {e}");
        }
        let got = std::fs::read(m(name)).unwrap_or_else(|e| panic!("{name} after a failed write: {e}"));
        assert!(
            got == *want,
            "{name}: content changed by a failed write (round {round})"
        );
    }
    // A new file cannot be written either, and does not break anything.
    let e = std::fs::write(m("new-on-full-disk"), rng.bytes(200_000)).unwrap_err();
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");

    // The mount is alive and the earlier files are intact.
    for (name, data) in kept.iter().chain(grow.iter()) {
        assert!(std::fs::read(m(name)).unwrap() == *data, "{name} intact");
    }
    assert_only_damaged(&cipher, &pf, &["filler", "new-on-full-disk"]);

    drop(filler);
    std::fs::remove_file(m("filler")).unwrap();
    std::fs::remove_file(m("new-on-full-disk")).unwrap();
    let (code, report) = fsck_report(&cipher, &pf, &[]);
    assert_eq!(code, 0, "fsck clean after deleting: {report}");
    std::fs::write(m("after"), b"space again").unwrap();
    assert_eq!(std::fs::read(m("after")).unwrap(), b"space again");
    d.stop();
    let (code, report) = fsck_report(&cipher, &pf, &[]);
    assert_eq!(code, 0, "{report}");
}

/// close(2) of `f`, with its result (std's drop ignores it).
fn close(f: std::fs::File) -> std::io::Result<()> {
    use std::os::fd::IntoRawFd;
    // SAFETY: the descriptor is owned by `f`, given up here and closed once.
    match unsafe { libc::close(f.into_raw_fd()) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

#[test]
fn with_the_writeback_cache_a_full_disk_shows_at_fsync_and_close() {
    if !common::fuse_available() {
        return;
    }
    let mut rng = Rng::new(data::seed("COFFER_ENOSPC_SEED"));
    let t = tempfile::tempdir().unwrap();
    let (_tmpfs, cipher, pf, d) = small_disk_mount(t.path(), &["--writeback-cache"]);
    let m = |p: &str| d.mnt.join(p);
    let kept = rng.bytes(300_001);
    std::fs::write(m("kept"), &kept).unwrap();

    // A file larger than the disk, written without fsync: write() lands in the page cache,
    // so the error must come at close.
    let mut f = std::fs::File::create(m("too-big")).unwrap();
    let chunk = rng.bytes(256 * 1024);
    let mut write_error = None;
    for _ in 0..48 {
        if let Err(e) = f.write_all(&chunk) {
            write_error = Some(e);
            break;
        }
    }
    let closed = close(f);
    eprintln!("write: {write_error:?}, close: {closed:?}");
    let e = write_error
        .or(closed.err())
        .expect("12 MiB on an 8 MiB disk: write or close fails");
    assert_eq!(errno(&e), libc::ENOSPC, "{e}");
    std::fs::remove_file(m("too-big")).unwrap();

    // Filling up with fsync after each write: the error comes at a write or an fsync.
    // Smaller and smaller writes use up the last scraps.
    let mut filler = std::fs::File::create(m("filler")).unwrap();
    let mut written = 0u64;
    for size in [chunk.len(), 16 * 1024, 1024] {
        let err = loop {
            match filler.write_all(&chunk[..size]).and_then(|()| filler.sync_data()) {
                Ok(()) => written += size as u64,
                Err(e) => break e,
            }
            assert!(written < 64 << 20, "8 MiB tmpfs never filled up");
        };
        assert_eq!(errno(&err), libc::ENOSPC, "the writer gets ENOSPC: {err}");
    }
    // A small file on the full disk: its close reports what its writeback could not store.
    let mut small = std::fs::File::create(m("small")).unwrap();
    let r = small.write_all(&chunk[..100_000]).and_then(|()| close(small));
    assert_eq!(r.as_ref().map_err(errno), Err(libc::ENOSPC), "{r:?}");
    // Once closed, the file shows what the vault stored, not the pages it could not store
    // (the release that retires the kernel's inode arrives after close returns).
    let start = std::time::Instant::now();
    let stored = loop {
        let shown = std::fs::read(m("small")).unwrap();
        if shown.len() < 100_000 {
            break shown;
        }
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{} bytes still shown",
            shown.len()
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    eprintln!("what was stored shows {:?} after close", start.elapsed());
    assert_eq!(stored, chunk[..stored.len()]);
    assert_eq!(std::fs::metadata(m("small")).unwrap().len(), stored.len() as u64);

    // The mount is alive, the earlier file intact, only the files being written damaged.
    assert!(std::fs::read(m("kept")).unwrap() == kept, "kept intact");
    assert_only_damaged(&cipher, &pf, &["filler", "small"]);
    drop(filler);
    for n in ["filler", "small"] {
        let _ = std::fs::remove_file(m(n));
    }
    std::fs::write(m("after"), b"space again").unwrap();
    d.stop();
    let (code, report) = fsck_report(&cipher, &pf, &[]);
    assert_eq!(code, 0, "fsck clean after deleting: {report}");
}

/// Child of `failed_backing_write_is_rolled_back`: extends files under a file-size limit.
#[test]
fn rollback_child() {
    let Some(dir) = std::env::var_os("COFFER_ROLLBACK_DIR") else {
        return;
    };
    let dir = Path::new(&dir);
    unlock::init(dir, None, b"pw", &VaultParams::default(), KdfCost::INSECURE_TEST).unwrap();
    let v = Vault::unlock(dir, None, b"pw", false).unwrap();
    let root = v.root_dir().unwrap();
    // SAFETY: the child runs only this test; ignoring SIGXFSZ makes writes past the limit EFBIG.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    let limit = 64 * 1024u64;
    let lim = libc::rlimit {
        rlim_cur: limit,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to an initialized rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &lim) }, 0);
    let mut failures = 0;
    // Old sizes with partial and full last blocks; extensions that cross the limit part way
    // through the resealed old block or the new blocks.
    for (n, old_len) in [5000usize, 4096, 60_000, 61_000, 63_000, 12_289]
        .into_iter()
        .enumerate()
    {
        let name = format!("f{n}");
        let (f, _) = v.create_file(&root, name.as_bytes(), 0o600).unwrap();
        let mut old: Vec<u8> = (0..old_len).map(|i| (i * 7 + n) as u8).collect();
        f.write_at(&old, 0).unwrap();
        let check = |old: &[u8], what: &str| {
            let mut back = vec![0u8; old.len() + 10];
            let got = f.read_at(&mut back, 0).unwrap();
            assert!(back[..got] == *old, "{name}: {what} changed the file");
            assert_eq!(f.verify_all().unwrap(), Vec::<u64>::new(), "{name}: {what}");
        };
        for (off, len) in [(old_len, 70_000), (old_len + 100, 10), (70_000, 1), (old_len - 1, 9000)] {
            let data = vec![0xEE; len];
            if f.write_at(&data, off as u64).is_ok() {
                if old.len() < off + len {
                    old.resize(off + len, 0);
                }
                old[off..off + len].copy_from_slice(&data);
                continue;
            }
            failures += 1;
            check(&old, &format!("failed write of {len} at {off}"));
        }
        assert!(f.set_len(200_000).is_err(), "{name}: growth past the limit");
        check(&old, "failed set_len");
    }
    assert!(failures >= 10, "the limit made writes fail ({failures})");
}

#[test]
fn failed_backing_write_is_rolled_back() {
    let t = tempfile::tempdir().unwrap();
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "rollback_child", "--nocapture", "--test-threads=1"])
        .env("COFFER_ROLLBACK_DIR", t.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("test rollback_child ... ok"), "{text}");
}
