//! Tampering under a live mount, and fsck beside it: a modified block gives EIO on exactly the
//! reads that touch it, a swapped header is refused, a deleted diriv or long-name sidecar is
//! reported by `coffer fsck` (run while mounted) and never brings the mount down, and a last
//! block that does not authenticate is logged once, and so is a write at the session ceiling.

use crate::support::cli::fsck_json;
use crate::support::common;

use std::fs;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};
use std::time::{Duration, SystemTime};

use coffer::format::header::HEADER_LEN;
use coffer::format::offsets::CIPHER_BLOCK;
use coffer::vault::Vault;
use common::{TestMount, PASSWORD};

const B: u64 = 4096;

fn content(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13).wrapping_add(seed) ^ (i >> 12) as u8)
        .collect()
}

/// Backing path of a plaintext path of the vault under `m`.
fn backing(m: &TestMount, plain: &[u8]) -> PathBuf {
    let v = Vault::unlock(&m.cipher, None, PASSWORD, true).unwrap();
    let (dir, name) = match plain.iter().rposition(|&c| c == b'/') {
        Some(i) => (v.open_dir_path(&plain[..i]).unwrap(), &plain[i + 1..]),
        None => (v.root_dir().unwrap(), plain),
    };
    let cn = v.cipher_name(&dir, name).unwrap();
    m.cipher.join(&dir.rel).join(std::ffi::OsStr::from_bytes(&cn.entry))
}

fn sidecar(m: &TestMount, plain: &[u8]) -> PathBuf {
    let v = Vault::unlock(&m.cipher, None, PASSWORD, true).unwrap();
    let cn = v.cipher_name(&v.root_dir().unwrap(), plain).unwrap();
    m.cipher.join(std::ffi::OsStr::from_bytes(&cn.long.unwrap().sidecar))
}

/// `coffer fsck --json [extra]` on the vault; returns (exit code, report).
fn fsck(m: &TestMount, extra: &[&str]) -> (i32, serde_json::Value) {
    let pf = m.cipher.parent().unwrap().join("passfile");
    fs::write(&pf, [PASSWORD, b"\n"].concat()).unwrap();
    let out = fsck_json(&m.cipher, &pf, extra);
    let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.code, report)
}

/// (plain path, kind, blocks) of each finding, sorted.
fn findings(report: &serde_json::Value) -> Vec<(String, String, Vec<u64>)> {
    let mut v: Vec<_> = report["damage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["plain_path"].as_str().unwrap_or("?").to_string(),
                d["kind"].as_str().unwrap().to_string(),
                d["blocks"]
                    .as_array()
                    .map(|b| b.iter().map(|x| x.as_u64().unwrap()).collect())
                    .unwrap_or_default(),
            )
        })
        .collect();
    v.sort();
    v
}

fn flip(path: &Path, at: usize) {
    let mut raw = fs::read(path).unwrap();
    raw[at] ^= 0x40;
    fs::write(path, raw).unwrap();
}

/// Reads `len` bytes at `off`; Ok(bytes) or the errno.
fn pread(f: &fs::File, off: u64, len: usize) -> Result<Vec<u8>, i32> {
    let mut buf = vec![0u8; len];
    let mut done = 0;
    while done < len {
        match f.read_at(&mut buf[done..], off + done as u64) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) => return Err(e.raw_os_error().unwrap_or(-1)),
        }
    }
    buf.truncate(done);
    Ok(buf)
}

#[test]
fn modified_block_fails_exactly_the_reads_that_touch_it() {
    let Some(mut m) = TestMount::new() else { return };
    let size = 6 * B as usize + 100; // blocks 0..=6
    let want = content(1, size);
    fs::write(m.path("victim"), &want).unwrap();
    fs::write(m.path("hdr-a"), content(2, 10_000)).unwrap();
    fs::write(m.path("hdr-b"), content(3, 10_000)).unwrap();
    m.unmount();
    // A ciphertext byte of block 2, and hdr-b's header put on hdr-a.
    flip(&backing(&m, b"victim"), HEADER_LEN + 2 * CIPHER_BLOCK as usize + 500);
    let (pa, pb) = (backing(&m, b"hdr-a"), backing(&m, b"hdr-b"));
    let mut ra = fs::read(&pa).unwrap();
    ra[..HEADER_LEN].copy_from_slice(&fs::read(&pb).unwrap()[..HEADER_LEN]);
    fs::write(&pa, ra).unwrap();
    m.remount();

    let f = fs::File::open(m.path("victim")).unwrap();
    let bad = 2 * B..3 * B;
    // Whole blocks in an order that makes readahead cross the bad block, then spans and bytes.
    let mut reads: Vec<(u64, usize)> = [3, 0, 1, 2, 4, 5, 6].iter().map(|&b| (b * B, B as usize)).collect();
    reads.extend([
        (4000, 200),
        (2 * B - 1, 1),
        (2 * B - 10, 20),
        (2 * B, 1),
        (3 * B - 1, 1),
        (3 * B - 5, 10),
        (3 * B, 1),
        (B, 3 * B as usize),
        (3 * B, 4 * B as usize),
        (0, size),
    ]);
    for (off, len) in reads {
        let got = pread(&f, off, len);
        let end = (off + len as u64).min(size as u64);
        if off < bad.end && end > bad.start {
            assert_eq!(got, Err(libc::EIO), "read of {len} at {off} touches block 2");
        } else {
            assert_eq!(
                got.as_deref(),
                Ok(&want[off as usize..end as usize]),
                "read of {len} at {off} does not touch block 2"
            );
        }
    }
    drop(f);

    let a = fs::File::open(m.path("hdr-a")).unwrap();
    for (off, len) in [(0, 1), (5000, 10), (9999, 1), (0, 10_000)] {
        assert_eq!(
            pread(&a, off, len),
            Err(libc::EIO),
            "swapped header: read {len} at {off}"
        );
    }
    assert_eq!(
        fs::read(m.path("hdr-b")).unwrap(),
        content(3, 10_000),
        "the donor is intact"
    );

    let (code, report) = fsck(&m, &[]);
    assert_eq!(code, 1, "fsck while mounted: damage found");
    assert_eq!(
        findings(&report),
        vec![
            ("hdr-a".into(), "blocks".into(), vec![0, 1, 2]),
            ("victim".into(), "blocks".into(), vec![2]),
        ]
    );
    assert_eq!(
        fs::read(m.path("hdr-b")).unwrap().len(),
        10_000,
        "the mount is still fine"
    );
}

#[test]
fn deleted_diriv_and_sidecar_are_reported_and_the_mount_survives() {
    let Some(m) = TestMount::new() else { return };
    let long = "a long file name ".repeat(10);
    fs::create_dir(m.path("d")).unwrap();
    fs::write(m.path("d/f"), b"inside").unwrap();
    fs::write(m.path(&long), b"long named").unwrap();
    fs::write(m.path("plain"), b"untouched").unwrap();
    let (code, _) = fsck(&m, &[]);
    assert_eq!(code, 0, "clean while mounted");

    fs::remove_file(backing(&m, b"d").join("coffer.diriv")).unwrap();
    fs::remove_file(sidecar(&m, long.as_bytes())).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1200)); // past the entry/attr TTL

    // The mount may still hold d's IV from before (then d keeps working) or not (then EIO):
    // either is fine, as long as nothing else breaks.
    let listed = fs::read_dir(m.path("d")).and_then(|it| it.collect::<Result<Vec<_>, _>>());
    let created = fs::write(m.path("d/new"), b"x");
    for (what, r) in [("listing d", listed.map(drop)), ("creating in d", created)] {
        if let Err(e) = r {
            assert_eq!(e.raw_os_error(), Some(libc::EIO), "{what}: {e}");
        }
    }
    let names: Vec<_> = fs::read_dir(&m.mnt).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(
        !names.iter().any(|n| n.as_bytes() == long.as_bytes()),
        "the long name cannot be shown"
    );
    // A lookup by name does not need the sidecar (the entry name is the hash of the name).
    assert_eq!(fs::read(m.path(&long)).unwrap(), b"long named");
    assert_eq!(fs::read(m.path("plain")).unwrap(), b"untouched");
    fs::write(m.path("after"), b"the mount still writes").unwrap();
    assert_eq!(fs::read(m.path("after")).unwrap(), b"the mount still writes");

    let (code, report) = fsck(&m, &[]);
    assert_eq!(code, 1);
    let f = findings(&report);
    assert_eq!(f.len(), 2, "{report:#}");
    assert_eq!(f[0], ("?".into(), "name".into(), vec![]), "{report:#}");
    assert_eq!(f[1], ("d".into(), "diriv".into(), vec![]), "{report:#}");
    let detail = report["damage"].to_string();
    assert!(detail.contains("coffer.diriv") && detail.contains(".name"), "{detail}");

    let (code, _) = fsck(&m, &["--repair"]);
    assert_eq!(code, 2, "--repair refuses a mounted vault");
    assert_eq!(fs::read(m.path("after")).unwrap(), b"the mount still writes");
}

/// `tagged` with `PACK_AFTER` xattrs sealed on their own (user.s*) and four more in its pack
/// (user.p*), then one byte of the sealed pack flipped in the backing xattr, under the mount.
fn file_with_a_damaged_pack(m: &TestMount) {
    use coffer::format::xattr_pack::{PACK3_BACKING_NAME, PACK_AFTER};
    fs::write(m.path("tagged"), b"tagged file").unwrap();
    for i in 0..PACK_AFTER {
        common::set_xattr(&m.path("tagged"), &format!("user.s{i}"), b"on its own", 0).unwrap();
    }
    for i in 0..4 {
        common::set_xattr(&m.path("tagged"), &format!("user.p{i}"), b"packed", 0).unwrap();
    }
    let b = backing(m, b"tagged");
    let mut sealed = common::get_xattr(&b, PACK3_BACKING_NAME).expect("the file has a pack");
    assert_eq!(
        common::list_xattr(&b).unwrap().len(),
        PACK_AFTER + 1,
        "singles and one pack"
    );
    sealed[20] ^= 0x40;
    common::set_xattr(&b, PACK3_BACKING_NAME, &sealed, 0).unwrap();
}

#[test]
fn a_damaged_xattr_pack_reads_as_eio() {
    let Some(m) = TestMount::new() else { return };
    if !common::user_xattrs_supported(&m.cipher) {
        eprintln!("CIPHERDIR's file system stores no user xattrs; not run");
        return;
    }
    file_with_a_damaged_pack(&m);
    let f = m.path("tagged");
    assert_eq!(common::errno(&common::get_xattr(&f, "user.p3")), Some(libc::EIO));
    assert_eq!(common::errno(&common::list_xattr(&f)), Some(libc::EIO));
    // What is sealed on its own still reads; so does the content.
    assert_eq!(common::get_xattr(&f, "user.s0").unwrap(), b"on its own");
    assert_eq!(fs::read(&f).unwrap(), b"tagged file");
}

#[test]
fn fsck_reports_a_damaged_xattr_pack() {
    let Some(m) = TestMount::new() else { return };
    if !common::user_xattrs_supported(&m.cipher) {
        eprintln!("CIPHERDIR's file system stores no user xattrs; not run");
        return;
    }
    fs::write(m.path("clean"), b"no xattrs").unwrap();
    file_with_a_damaged_pack(&m);
    let (code, report) = fsck(&m, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(
        findings(&report),
        vec![("tagged".into(), "xattr".into(), vec![])],
        "{report:#}"
    );
    let detail = report["damage"][0].to_string();
    assert!(detail.contains("pack"), "{detail}");
}

/// The warn lines logged in this test binary (its mounts run in it), captured from the first
/// call on.
fn captured_log() -> &'static Mutex<Vec<String>> {
    static LINES: Mutex<Vec<String>> = Mutex::new(Vec::new());
    struct Capture;
    impl log::Log for Capture {
        fn enabled(&self, m: &log::Metadata) -> bool {
            m.level() <= log::Level::Warn
        }
        fn log(&self, r: &log::Record) {
            if self.enabled(r.metadata()) {
                LINES
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(r.args().to_string());
            }
        }
        fn flush(&self) {}
    }
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&Capture).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Warn);
    });
    &LINES
}

/// A version-2 file at rest whose last block does not authenticate: the mount serves the other
/// blocks as before and logs once, with the backing path, that their order cannot be checked
/// (not once per read, nor per open); fsck beside it reports the same.
#[test]
fn an_order_that_cannot_be_checked_is_logged_once_per_file() {
    let log = captured_log();
    let Some(mut m) = TestMount::new() else { return };
    let size = 4 * B as usize + 100;
    let want = content(4, size);
    fs::write(m.path("torn"), &want).unwrap();
    m.unmount();
    let path = backing(&m, b"torn");
    flip(&path, HEADER_LEN + 4 * CIPHER_BLOCK as usize + 40);
    // At rest: a file modified within the last second may be being rewritten right now.
    let minute_ago = SystemTime::now() - Duration::from_secs(60);
    fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(minute_ago)
        .unwrap();
    m.remount();

    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    for _ in 0..4 {
        let f = fs::File::open(m.path("torn")).unwrap();
        for b in 0..4 {
            let got = pread(&f, b * B, B as usize);
            assert_eq!(got.as_deref(), Ok(&want[(b * B) as usize..((b + 1) * B) as usize]));
        }
        assert_eq!(pread(&f, 4 * B, 10), Err(libc::EIO));
        // Drop the cached pages, so that the next round reaches the mount again.
        // SAFETY: a valid descriptor; the call only drops clean cached pages.
        unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    }
    let lines: Vec<String> = log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.contains(&name))
        .cloned()
        .collect();
    let failed_reads = lines.iter().filter(|l| l.contains("(block 4)")).count();
    assert!(failed_reads >= 4, "every round reached the mount: {lines:#?}");
    let order: Vec<&String> = lines.iter().filter(|l| l.contains("order")).collect();
    assert_eq!(
        order,
        [&format!(
            "{name}: order of blocks not checkable: last block does not authenticate"
        )],
        "{lines:#?}"
    );

    let (code, report) = fsck(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&report),
        vec![
            ("torn".into(), "blocks".into(), vec![4]),
            ("torn".into(), "order_not_checkable".into(), vec![]),
        ]
    );
}

/// Reseals the last block of the file at `path` (whose plaintext is `plain`) with write
/// session `s`, as `s` sessions would have left it: under the shared content key with the
/// session in clear for header version 2, under the file's own key with the session masked
/// for header version 3.
fn reseal_last_with(m: &TestMount, path: &Path, plain: &[u8], s: u32) {
    use coffer::crypto::ContentKey;
    use coffer::format::header::{FileHeader, FILE_V2, FILE_V3};
    use coffer::format::offsets::{block_aad, BlockNo};
    let v = Vault::unlock(&m.cipher, None, PASSWORD, true).unwrap();
    let raw = fs::read(path).unwrap();
    let h = FileHeader::decode(&raw[..HEADER_LEN]).unwrap();
    let last = (plain.len() as u64 - 1) / B;
    let aad = block_aad(h.version, &h.file_id, BlockNo(last), true);
    let mut nonce = [0x5au8; 16];
    let block = &plain[(last * B) as usize..];
    let sealed = match &v.keys().content {
        ContentKey::Shared(key) => {
            assert_eq!(h.version, FILE_V2);
            coffer::format::session::set_nonce_session(&mut nonce, s);
            key.seal_with_nonce_to_vec(&nonce, &aad, block)
        }
        ContentKey::PerFile(root) => {
            assert_eq!(h.version, FILE_V3);
            let keys = root.file_keys(&h.file_id);
            let random: [u8; 12] = nonce[..12].try_into().unwrap();
            nonce[12..].copy_from_slice(&(s ^ keys.mask.mask(&random)).to_be_bytes());
            keys.content.seal_with_nonce_to_vec(&nonce, &aad, block)
        }
    };
    let f = fs::File::options().write(true).open(path).unwrap();
    f.write_all_at(&sealed, BlockNo(last).cipher_off()).unwrap();
}

/// A file one session below the ceiling: the write that starts the last session is logged,
/// once, however many sessions start there after it; fsck then reports the file.
#[test]
fn a_write_at_the_session_ceiling_is_logged_once() {
    use coffer::format::session::LAST_SESSION;
    let log = captured_log();
    let Some(mut m) = TestMount::new() else { return };
    let mut want = content(5, 2 * B as usize + 10);
    fs::write(m.path("old"), &want).unwrap();
    m.unmount();
    let path = backing(&m, b"old");
    reseal_last_with(&m, &path, &want, LAST_SESSION - 1);
    m.remount();
    let (code, _) = fsck(&m, &[]);
    assert_eq!(code, 0, "one below the ceiling is fine");

    for round in 0..3u8 {
        let f = fs::File::options().write(true).open(m.path("old")).unwrap();
        f.write_all_at(&[round], 0).unwrap();
        f.sync_all().unwrap();
        want[0] = round;
    }
    assert_eq!(fs::read(m.path("old")).unwrap(), want);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    let lines: Vec<String> = log
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|l| l.contains(&name))
        .cloned()
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert!(
        lines[0].starts_with(&format!("{name}: write sessions exhausted")),
        "{lines:#?}"
    );

    let (code, report) = fsck(&m, &[]);
    assert_eq!(code, 1);
    assert_eq!(
        findings(&report),
        vec![("old".into(), "sessions_exhausted".into(), vec![])]
    );
}
